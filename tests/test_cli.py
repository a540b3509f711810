"""The `postoffice` console script, run as a real process: exit codes, output, and what it leaves on disk."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import os
import re
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.config import config_sections, render_default_config, standard_listeners
from postoffice.net.tls import generate_self_signed
from postoffice.store import ReceivedReport, ReportCount
from postoffice.transfer.mbox import MboxrdWriter, envelope_sender, mailbox_directory, maildir_info
from tests.support.dns_server import DnsServer, Zones

POSTOFFICE = str(Path(sys.executable).parent / "postoffice")


def run(
    *args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("POSTOFFICE_CONFIG", "POSTOFFICE_DEBUG")}
    environment.update(env or {})
    return subprocess.run(
        [POSTOFFICE, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def run_bytes(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    environment = {k: v for k, v in os.environ.items() if k != "POSTOFFICE_CONFIG"}
    return subprocess.run([POSTOFFICE, *args], cwd=cwd, capture_output=True, env=environment, timeout=120)


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr


@pytest.fixture
def config_only(tmp_path: Path) -> Path:
    """A data directory with config and certificate but no store (for the commands that need no store)."""
    root = tmp_path / "data"
    generate_self_signed("mail.example.test", root / "tls" / "cert.pem", root / "tls" / "key.pem")
    (root / "postoffice.toml").write_text(render_default_config("mail.example.test", "example.test"))
    return root / "postoffice.toml"


# -- commands without a store --------------------------------------------------------------------------------


def test_check_config_accepts_a_good_config_and_prints_warnings(config_only: Path, tmp_path: Path) -> None:
    config_only.write_text(
        config_only.read_text()
        .replace("relay_networks = []\n", "")
        .replace("[queue]\n", '[queue]\ntrusted_networks = ["10.0.0.0/8"]\n')
    )
    proc = run("check-config", "--config", str(config_only), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "configuration OK" in proc.stdout
    assert "warning: queue.trusted_networks: renamed to relay_networks in [smtp]" in proc.stdout


def test_check_config_prints_every_problem_with_its_key_and_exits_2(
    config_only: Path, tmp_path: Path
) -> None:
    text = config_only.read_text()
    text = text.replace("max_recipients = 1000", "max_recipents = 1000").replace(
        "port = 25\n", "port = 99999\n"
    )
    config_only.write_text(text)
    proc = run("check-config", "--config", str(config_only), cwd=tmp_path)
    assert proc.returncode == 2
    assert 'smtp.max_recipents: unknown setting (hint: did you mean "max_recipients"?)' in proc.stderr
    assert "listeners.smtp.port: must be between 1 and 65535, got 99999" in proc.stderr
    assert_no_traceback(proc)


def test_a_toml_syntax_error_names_the_line_and_exits_2(config_only: Path, tmp_path: Path) -> None:
    config_only.write_text("[server]\nhostname = mail.example.test\n")
    proc = run("check-config", "--config", str(config_only), cwd=tmp_path)
    assert proc.returncode == 2
    assert "line 2" in proc.stderr
    assert_no_traceback(proc)


def test_a_missing_config_file_exits_2_with_a_hint(tmp_path: Path) -> None:
    proc = run("ports", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "config file not found" in proc.stderr
    assert "postoffice init" in proc.stderr


def test_config_defaults_to_data_postoffice_toml_in_the_working_directory(
    config_only: Path, tmp_path: Path
) -> None:
    proc = run("check-config", cwd=tmp_path)  # config_only is tmp_path/data/postoffice.toml
    assert proc.returncode == 0, proc.stderr
    assert str(config_only) in proc.stdout


def test_config_comes_from_the_environment_variable(config_only: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere.toml"
    config_only.rename(moved)
    moved.write_text(moved.read_text().replace('"tls/', '"data/tls/'))
    proc = run("check-config", cwd=tmp_path, env={"POSTOFFICE_CONFIG": str(moved)})
    assert proc.returncode == 0, proc.stderr
    assert str(moved) in proc.stdout


def test_config_option_works_before_and_after_the_command(config_only: Path, tmp_path: Path) -> None:
    assert run("--config", str(config_only), "ports", cwd=tmp_path).returncode == 0
    assert run("ports", "--config", str(config_only), cwd=tmp_path).returncode == 0


def test_ports_shows_every_listener_with_status_and_purpose(config_only: Path, tmp_path: Path) -> None:
    proc = run("ports", "--config", str(config_only), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ADDRESS", "PORT", "PROTOCOL", "TLS", "ENABLED", "STATUS", "PURPOSE"]
    rows = {line.split()[0]: line for line in lines[1:12]}
    assert re.search(
        r"^smtp\s+0\.0\.0\.0\s+25\s+smtp\s+starttls\s+yes\s+ready\s+other mail servers", rows["smtp"]
    )
    assert re.search(r"465\s+submission\s+implicit\s+yes\s+ready\s+same, TLS", rows["submissions"])
    assert re.search(r"443\s+http\s+implicit\s+yes\s+ready\s+webmail in a browser", rows["https"])
    assert re.search(r"109\s+pop2\s+none\s+no\s+disabled\s+the legacy protocol; off by default", rows["pop2"])
    assert "redirects to https" in rows["http"]
    assert "pop2: POP2 (RFC 937) has no TLS" in proc.stdout
    assert "allow_plaintext_auth" in proc.stdout


PORTS_OF_THE_DEFAULT_CONFIG = """\
NAME         ADDRESS  PORT  PROTOCOL     TLS       ENABLED  STATUS    PURPOSE
smtp         0.0.0.0  25    smtp         starttls  yes      ready     other mail servers deliver mail to us
submission   0.0.0.0  587   submission   starttls  yes      ready     users' mail programs send mail
submissions  0.0.0.0  465   submission   implicit  yes      ready     same, TLS from the first byte (RFC 8314)
pop3         0.0.0.0  110   pop3         starttls  yes      ready     mail programs download mail
pop3s        0.0.0.0  995   pop3         implicit  yes      ready     same, TLS from the first byte (RFC 8314)
imap         0.0.0.0  143   imap         starttls  yes      ready     mail programs read and organise mail \
on the server
imaps        0.0.0.0  993   imap         implicit  yes      ready     same, TLS from the first byte (RFC 8314)
pop2         0.0.0.0  109   pop2         none      no       disabled  the legacy protocol; off by default
managesieve  0.0.0.0  4190  managesieve  starttls  yes      ready     mail programs manage their filters \
(Sieve scripts)
http         0.0.0.0  80    http         none      yes      ready     webmail (redirects to https)
https        0.0.0.0  443   http         implicit  yes      ready     webmail in a browser

pop2: POP2 (RFC 937) has no TLS and sends passwords in clear, so it is off by default; enabling it on an \
address other than loopback also needs [auth] allow_plaintext_auth = true.

webmail: https://mail.example.test/
"""


def test_ports_output_is_what_it_was_before_the_protocol_registry(config_only: Path, tmp_path: Path) -> None:
    """Issue 10: the listener table comes from the registered services (postoffice.protocols); the output,
    recorded before that change, stays the same to the byte but for the web's rows, built since (issue 11)."""
    proc = run("ports", "--config", str(config_only), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == PORTS_OF_THE_DEFAULT_CONFIG


def test_check_config_warns_about_a_renamed_setting_and_accepts_it(config_only: Path, tmp_path: Path) -> None:
    text = config_only.read_text()
    text = text.replace("relay_networks = []\n", "").replace(
        "[queue]\n", '[queue]\ntrusted_networks = ["10.0.0.0/8"]\n'
    )
    config_only.write_text(text)
    proc = run("check-config", "--config", str(config_only), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (
        "warning: queue.trusted_networks: renamed to relay_networks in [smtp]; the old name still works "
        "(hint: write it as relay_networks in [smtp] instead)" in proc.stdout
    )


def test_run_with_a_bad_config_exits_2_without_starting(config_only: Path, tmp_path: Path) -> None:
    text = config_only.read_text()
    start = text.index("[listeners.smtp]")
    bad = text[:start] + text[start:].replace('tls = "starttls"', 'tls = "sometimes"', 1)
    config_only.write_text(bad)
    proc = run("run", "--config", str(config_only), cwd=tmp_path)
    assert proc.returncode == 2
    assert "listeners.smtp.tls" in proc.stderr
    assert_no_traceback(proc)


def test_store_commands_refuse_a_store_that_does_not_exist(config_only: Path, tmp_path: Path) -> None:
    proc = run("domain", "list", "--config", str(config_only), cwd=tmp_path)
    assert proc.returncode == 1
    assert "no store at" in proc.stderr
    assert not (config_only.parent / "store").exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run(cwd=tmp_path).returncode == 2
    assert run("frobnicate", cwd=tmp_path).returncode == 2
    assert run("export", "--format", "tar", "a@b.test", cwd=tmp_path).returncode == 2


def test_python_dash_m_postoffice_runs_the_same_cli(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "postoffice", "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("postoffice ")


# -- init ----------------------------------------------------------------------------------------------------


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """`postoffice init` in tmp_path/data; returns the config path."""
    proc = run("init", "--data-dir", str(tmp_path / "data"), "--domain", "example.test", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "data" / "postoffice.toml"


def po(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = run("--config", str(config), *args, cwd=config.parent.parent, stdin=stdin)
    assert_no_traceback(proc)
    return proc


def test_init_creates_the_data_directory(tmp_path: Path) -> None:
    root = tmp_path / "data"
    proc = run(
        "init", "--data-dir", str(root), "--domain", "Example.TEST", "--demo-user", "demo", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "tls" / "key.pem").stat().st_mode) == 0o600
    assert (root / "tls" / "cert.pem").is_file()
    assert (root / "store" / "mail.sqlite3").is_file()
    assert (root / "spool").is_dir()
    text = (root / "postoffice.toml").read_text()
    assert 'hostname = "mail.example.test"' in text
    match = re.search(r"^demo@example\.test password: (\S+)$", proc.stdout, re.MULTILINE)
    assert match, proc.stdout
    config = root / "postoffice.toml"
    assert po(config, "check-config").returncode == 0
    assert po(config, "domain", "list").stdout.split() == ["example.test"]
    assert po(config, "user", "list").stdout.split() == ["demo@example.test"]
    assert stored_password_matches(config, "demo@example.test", match.group(1))


def test_a_fresh_init_checks_without_a_warning(data: Path) -> None:
    """Issue 9: the default config enabled the http and https listeners while they were not built, so every
    check-config and run printed two warnings. Now they are built and on."""
    proc = po(data, "check-config")
    assert proc.returncode == 0, proc.stderr
    assert "configuration OK" in proc.stdout
    assert "warning" not in proc.stdout + proc.stderr
    text = data.read_text()
    assert "is not built in this version" not in text
    doc = tomllib.loads(text)
    assert doc["listeners"]["https"]["enabled"] is True


def test_init_writes_every_declared_setting_and_listener(data: Path) -> None:
    doc = tomllib.loads(data.read_text())
    assert {name: set(table) for name, table in doc.items() if name != "listeners"} == {
        spec.name: {item.name for item in spec.settings} for spec in config_sections()
    }
    assert set(doc["listeners"]) == set(standard_listeners())


def test_init_refuses_to_overwrite_an_existing_config_unless_forced(data: Path, tmp_path: Path) -> None:
    before = data.read_text()
    proc = run("init", "--data-dir", str(data.parent), "--domain", "other.test", cwd=tmp_path)
    assert proc.returncode == 1
    assert "exists already" in proc.stderr
    assert "--force" in proc.stderr
    assert data.read_text() == before
    proc = run("init", "--data-dir", str(data.parent), "--domain", "other.test", "--force", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'hostname = "mail.other.test"' in data.read_text()
    assert po(data, "domain", "list").stdout.split() == ["example.test", "other.test"]


def test_init_with_port_offset_and_address(tmp_path: Path) -> None:
    root = tmp_path / "data"
    proc = run(
        "init",
        "--data-dir",
        str(root),
        "--domain",
        "example.test",
        "--port-offset",
        "10000",
        "--address",
        "127.0.0.1",
        "--hostname",
        "mx.example.test",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    ports = po(root / "postoffice.toml", "ports").stdout
    found = sorted(int(m) for m in re.findall(r"^\S+\s+127\.0\.0\.1\s+(\d+)\s", ports, re.MULTILINE))
    assert found == sorted([10025, 10587, 10465, 10110, 10995, 10143, 10993, 10109, 14190, 8080, 8443])
    assert "webmail: https://mx.example.test:8443/" in ports
    assert 'hostname = "mx.example.test"' in (root / "postoffice.toml").read_text()


@pytest.mark.parametrize(
    "extra",
    [
        ["--domain", "not a domain"],
        ["--domain", "x.test", "--address", "any"],
        ["--domain", "x.test", "--port-offset", "65000"],
        ["--domain", "x.test", "--demo-user", "no body"],
    ],
)
def test_init_rejects_bad_arguments_with_exit_2_and_creates_nothing(tmp_path: Path, extra: list[str]) -> None:
    proc = run("init", "--data-dir", str(tmp_path / "data"), *extra, cwd=tmp_path)
    assert proc.returncode == 2
    assert_no_traceback(proc)
    assert not (tmp_path / "data").exists()


# -- domains, users, aliases, mailboxes ----------------------------------------------------------------------


def stored_password_matches(config: Path, address: str, password: str) -> bool:
    from postoffice.config import load_config
    from postoffice.directory.passwords import verify_password
    from postoffice.store import open_store

    async def check() -> bool:
        store = open_store(load_config(config).store.path)
        try:
            account = await store.get_account(address)
            assert account is not None
            return verify_password(account.password_hash, password)
        finally:
            await store.close()

    return asyncio.run(check())


def test_domain_add_list_remove(data: Path) -> None:
    assert po(data, "domain", "add", "Other.Test.").returncode == 0
    assert po(data, "domain", "add", "bücher.example").returncode == 0
    assert po(data, "domain", "list").stdout.split() == [
        "example.test",
        "other.test",
        "xn--bcher-kva.example",
    ]
    duplicate = po(data, "domain", "add", "other.test")
    assert duplicate.returncode == 1
    assert "exists already" in duplicate.stderr
    assert po(data, "domain", "remove", "other.test").returncode == 0
    assert "other.test" not in po(data, "domain", "list").stdout
    assert po(data, "domain", "remove", "other.test").returncode == 1
    assert po(data, "domain", "add", "bad_domain!").returncode == 2


def test_domain_with_accounts_cannot_be_removed(data: Path) -> None:
    assert po(data, "user", "add", "a@example.test").returncode == 0
    proc = po(data, "domain", "remove", "example.test")
    assert proc.returncode == 1
    assert "example.test" in proc.stderr


def test_user_add_prints_a_generated_password_once(data: Path) -> None:
    proc = po(data, "user", "add", "Alice@Example.test")
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"^alice@example\.test password: (\S{20})$", proc.stdout, re.MULTILINE)
    assert match, proc.stdout
    assert stored_password_matches(data, "alice@example.test", match.group(1))


def test_user_add_reads_the_password_from_stdin(data: Path) -> None:
    proc = po(data, "user", "add", "bob@example.test", "--password-stdin", stdin="s3cret pass\n")
    assert proc.returncode == 0, proc.stderr
    assert "password:" not in proc.stdout
    assert stored_password_matches(data, "bob@example.test", "s3cret pass")
    assert po(data, "user", "add", "carol@example.test", "--password-stdin", stdin="").returncode == 2


def test_user_add_in_a_domain_not_served_fails(data: Path) -> None:
    proc = po(data, "user", "add", "x@elsewhere.test")
    assert proc.returncode == 1
    assert "elsewhere.test" in proc.stderr
    assert po(data, "user", "add", "no-at-sign").returncode == 2
    assert po(data, "user", "add", "a@example.test").returncode == 0
    assert (
        po(data, "user", "add", "A@example.test").returncode == 1
    )  # exists (addresses are case-insensitive)


def test_the_admin_role_and_disabled_accounts(data: Path) -> None:
    """`user add --admin`, `user admin grant|revoke`, `user disable|enable`, `user list --long`; the last
    admin keeps the role and cannot be disabled or removed."""
    assert po(data, "user", "add", "boss@example.test", "--admin").returncode == 0
    assert po(data, "user", "add", "staff@example.test").returncode == 0
    listed = po(data, "user", "list", "--long").stdout
    assert re.search(r"boss@example\.test\s+admin", listed)
    assert not re.search(r"staff@example\.test\s+admin", listed)
    refused = po(data, "user", "admin", "revoke", "boss@example.test")
    assert refused.returncode == 1
    assert "only admin" in refused.stderr
    assert po(data, "user", "disable", "boss@example.test").returncode == 1
    assert po(data, "user", "remove", "boss@example.test").returncode == 1
    assert po(data, "user", "admin", "grant", "staff@example.test").returncode == 0
    assert po(data, "user", "admin", "revoke", "boss@example.test").returncode == 0
    assert po(data, "user", "disable", "boss@example.test").returncode == 0
    listed = po(data, "user", "list", "--long").stdout
    assert re.search(r"boss@example\.test\s+disabled", listed)
    assert re.search(r"staff@example\.test\s+admin", listed)
    assert po(data, "user", "enable", "boss@example.test").returncode == 0
    assert "disabled" not in po(data, "user", "list", "--long").stdout
    assert po(data, "user", "admin", "grant", "nobody@example.test").returncode == 1


def test_plus_addressing_per_domain(data: Path) -> None:
    assert po(data, "domain", "plus-addressing", "example.test", "off").returncode == 0
    assert po(data, "domain", "list").stdout.split("\n")[0] == "example.test  (plus-addressing off)"
    assert po(data, "domain", "plus-addressing", "example.test", "on").returncode == 0
    assert po(data, "domain", "list").stdout.split() == ["example.test"]
    assert po(data, "domain", "plus-addressing", "nowhere.test", "off").returncode == 1
    assert po(data, "domain", "plus-addressing", "example.test", "maybe").returncode == 2


def test_dns_records_to_publish_and_the_check_of_what_dns_has(data: Path) -> None:
    """`dns records DOMAIN` prints zone-file lines; once DNS serves exactly those, `dns check DOMAIN` finds
    every one right (exit 0), through the configured nameservers; a record gone wrong makes it exit 1 and say
    what it found. A domain not served here is an error."""
    printed = po(data, "dns", "records", "example.test")
    assert printed.returncode == 0, printed.stderr
    published = [line.split(None, 3) for line in printed.stdout.splitlines() if not line.startswith(";")]
    assert ["example.test.", "IN", "MX", "10 mail.example.test."] in published
    assert ["example.test.", "IN", "TXT", '"v=spf1 mx ~all"'] in published
    assert ["_imaps._tcp.example.test.", "IN", "SRV", "0 1 993 mail.example.test."] in published
    # MTA-STS (RFC 8461: the policy the https listener serves) and TLS reports (RFC 8460) to postmaster
    (sts,) = [line for line in published if line[0] == "_mta-sts.example.test."]
    assert (sts[2], sts[3][:13]) == ("TXT", '"v=STSv1; id=')
    assert ["mta-sts.example.test.", "IN", "CNAME", "mail.example.test."] in published
    tlsrpt = ["_smtp._tls.example.test.", "IN", "TXT", '"v=TLSRPTv1; rua=mailto:postmaster@example.test"']
    assert tlsrpt in published
    assert "not yet" not in printed.stdout
    # the DKIM keys `init` made, in zone-file form (docs/decisions/0056)
    dkim = [line for line in published if line[0].endswith("._domainkey.example.test.")]
    assert [(line[1], line[2]) for line in dkim] == [("IN", "TXT")] * 2
    assert dkim[0][3].startswith('"v=DKIM1; k=rsa; p=MII')
    assert dkim[1][3].startswith('"v=DKIM1; k=ed25519; p=')
    zones = Zones([(name, kind, value) for name, _class, kind, value in published])
    zones.add("mail.example.test.", "A", "192.0.2.1")
    with DnsServer(zones) as server:
        text = data.read_text()
        assert "nameservers = []\n" in text
        assert "dns_port = 53\n" in text
        data.write_text(
            text.replace("nameservers = []\n", 'nameservers = ["127.0.0.1"]\n').replace(
                "dns_port = 53\n", f"dns_port = {server.port}\n"
            )
        )
        right = po(data, "dns", "check", "Example.Test")
        assert right.returncode == 0, right.stdout + right.stderr
        assert re.search(r"^ok\s+MX\s+example\.test\.\s+10 mail\.example\.test\.$", right.stdout, re.M)
        assert "17 ok, 0 missing, 0 wrong, 0 DNS errors" in right.stdout
        assert re.search(r"^ok\s+TXT\s+_mta-sts\.example\.test\.\s+\"v=STSv1; id=", right.stdout, re.M)
        assert re.search(
            r"^ok\s+TXT\s+po\d{6}e\._domainkey\.example\.test\.\s+\"v=DKIM1; k=ed25519", right.stdout, re.M
        )
        zones.add("example.test.", "TXT", '"v=spf1 a -all"')  # a second SPF record
        zones.clear("_dmarc.example.test.")
        wrong = po(data, "dns", "check", "example.test")
    assert wrong.returncode == 1
    assert re.search(r"^wrong\s+TXT\s+example\.test\.\s+\"v=spf1 mx ~all\"$", wrong.stdout, re.M)
    assert "found: v=spf1 a -all" in wrong.stdout
    assert "Several SPF records" in wrong.stdout
    assert re.search(r"^missing\s+TXT\s+_dmarc\.example\.test\.", wrong.stdout, re.M)
    assert "15 ok, 1 missing, 1 wrong, 0 DNS errors" in wrong.stdout
    other = po(data, "dns", "check", "other.test")
    assert other.returncode == 1
    assert "other.test is not a domain served here" in other.stderr
    assert po(data, "dns", "records", "not a domain").returncode == 2


def _zone_records(text: str) -> list[tuple[str, str, str]]:
    """The zone-file lines of a command's output as (name, type, rdata) for the test DNS server."""
    lines = [line.split(None, 3) for line in text.splitlines() if line and not line.startswith(";")]
    return [(name, kind, value) for name, _class, kind, value in lines]


def test_dkim_keys_made_rotated_activated_once_in_dns_and_retired(data: Path) -> None:
    """`postoffice dkim` (docs/decisions/0056): `init` made a pair; `generate` keeps it; `rotate` makes a
    pending pair that `activate` refuses to switch to until DNS serves its records (through the configured
    nameservers), then the old pair retires; `retire` waits for the retiring period unless forced; `domain
    add` makes keys and `domain remove` takes them away. No private key is ever printed."""
    outputs: list[str] = []

    def dkim(*args: str, code: int = 0) -> str:
        proc = po(data, "dkim", *args)
        assert proc.returncode == code, proc.stdout + proc.stderr
        outputs.append(proc.stdout + proc.stderr)
        return proc.stdout + proc.stderr

    def rows(*args: str) -> list[tuple[str, str, str]]:
        return [(r[1], r[2], r[3]) for r in (line.split() for line in dkim("list", *args).splitlines()[1:])]

    first = rows()
    assert [(algorithm, state) for _s, algorithm, state in first] == [
        ("rsa", "active"),
        ("ed25519", "active"),
    ]
    assert all(re.fullmatch(r"po\d{6}[re]", selector) for selector, _a, _s in first)
    assert "has DKIM keys already" in dkim("generate", "example.test")
    records = _zone_records(dkim("records", "example.test"))
    assert [name for name, _t, _v in records] == [f"{s}._domainkey.example.test." for s, _a, _st in first]

    rotated = dkim("rotate", "example.test")
    assert "postoffice dkim activate example.test" in rotated
    new = _zone_records(rotated)
    assert len(new) == 2
    assert [state for _s, _a, state in rows("example.test")] == ["active", "active", "pending", "pending"]
    zones = Zones(records)
    with DnsServer(zones) as server:
        text = data.read_text()
        data.write_text(
            text.replace("nameservers = []\n", 'nameservers = ["127.0.0.1"]\n').replace(
                "dns_port = 53\n", f"dns_port = {server.port}\n"
            )
        )
        refused = dkim("activate", "example.test", code=1)
        assert "DNS does not have the new keys' records yet" in refused
        assert re.search(r"^missing\s+po\d{6}r2\._domainkey\.example\.test\.", refused, re.M)
        assert [state for _s, _a, state in rows()] == ["active", "active", "pending", "pending"]
        for record in new:
            zones.add(*record)
        activated = dkim("activate", "example.test")
        checked = po(data, "dns", "check", "example.test").stdout
    assert "signs with po" in activated
    assert "remove their records after" in activated
    assert [state for _s, _a, state in rows()] == ["retiring", "retiring", "active", "active"]
    assert re.search(r"^ok\s+TXT\s+po\d{6}r2\._domainkey\.example\.test\.", checked, re.M)
    assert re.search(r"^ok\s+TXT\s+po\d{6}e\._domainkey\.example\.test\.", checked, re.M)  # retiring
    assert "retires until" in dkim("retire", "example.test", code=1)
    removed = dkim("retire", "example.test", "--force")
    assert "delete their DNS records" in removed
    assert [state for _s, _a, state in rows()] == ["active", "active"]
    assert [state for _s, _a, state in rows("--all")] == ["removed", "removed", "active", "active"]
    assert "no retiring DKIM keys" in dkim("retire", "example.test")
    assert "no new DKIM keys to activate" in dkim("activate", "example.test", "--force", code=1)

    added = po(data, "domain", "add", "other.test")
    assert "DKIM keys: po" in added.stdout
    assert [state for _s, _a, state in rows("other.test")] == ["active", "active"]
    assert po(data, "domain", "remove", "other.test").returncode == 0
    assert "no DKIM keys for other.test" in dkim("list", "other.test")
    assert "is not a domain served here" in dkim("records", "other.test", code=1)
    assert dkim("generate", "not a domain", code=2)

    # a domain of a store from before DKIM signing (added without keys): told how, and `generate` makes them
    async def add_bare() -> None:
        from postoffice.config import load_config
        from postoffice.store import open_store

        store = open_store(load_config(data).store.path)
        try:
            await store.add_domain("bare.test")
        finally:
            await store.close()

    asyncio.run(add_bare())
    hint = "no DKIM keys: `postoffice dkim generate bare.test` makes them"
    assert hint in po(data, "dns", "records", "bare.test").stdout
    assert "made DKIM keys for bare.test" in dkim("generate", "bare.test")
    assert hint not in po(data, "dns", "records", "bare.test").stdout
    assert not any("PRIVATE KEY" in output for output in outputs)


def test_user_list_passwd_remove(data: Path) -> None:
    po(data, "domain", "add", "other.test")
    for address in ("b@example.test", "a@example.test", "c@other.test"):
        assert po(data, "user", "add", address).returncode == 0
    assert sorted(po(data, "user", "list").stdout.split()) == [
        "a@example.test",
        "b@example.test",
        "c@other.test",
    ]
    assert po(data, "user", "list", "--domain", "other.test").stdout.split() == ["c@other.test"]
    assert po(data, "user", "passwd", "a@example.test", "--password-stdin", stdin="new-pw\n").returncode == 0
    assert stored_password_matches(data, "a@example.test", "new-pw")
    proc = po(data, "user", "passwd", "a@example.test")
    generated = re.search(r"password: (\S+)", proc.stdout)
    assert generated
    assert stored_password_matches(data, "a@example.test", generated.group(1))
    assert po(data, "user", "remove", "a@example.test").returncode == 0
    assert "a@example.test" not in po(data, "user", "list").stdout
    assert po(data, "user", "remove", "a@example.test").returncode == 1
    assert po(data, "user", "passwd", "nobody@example.test").returncode == 1


def test_alias_add_list_remove_with_catch_all(data: Path) -> None:
    po(data, "user", "add", "a@example.test")
    po(data, "user", "add", "b@example.test")
    assert po(data, "alias", "add", "Team@example.test", "a@example.test", "B@example.test").returncode == 0
    assert po(data, "alias", "add", "@Example.test", "a@example.test").returncode == 0
    listing = po(data, "alias", "list").stdout
    assert "team@example.test -> a@example.test, b@example.test" in listing
    assert "postmaster@example.test -> a@example.test" in listing  # made with the domain's first account
    assert "@example.test -> a@example.test" in listing
    assert po(data, "alias", "add", "@example.test", "b@example.test").returncode == 1  # exists
    assert po(data, "alias", "add", "x@elsewhere.test", "a@example.test").returncode == 1
    assert po(data, "alias", "remove", "@example.test").returncode == 0
    assert "@example.test ->" not in po(data, "alias", "list").stdout.replace("postmaster@", "").replace(
        "team@", ""
    )
    assert po(data, "alias", "remove", "@example.test").returncode == 1


def test_mailbox_list_shows_the_default_mailboxes(data: Path) -> None:
    po(data, "user", "add", "a@example.test")
    proc = po(data, "mailbox", "list", "a@example.test")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["MAILBOX", "MESSAGES", "SIZE"]
    assert {line.split()[0] for line in lines[1:]} == {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"}
    assert all(line.split()[1:] == ["0", "0"] for line in lines[1:])
    assert po(data, "mailbox", "list", "nobody@example.test").returncode == 1


# -- export --------------------------------------------------------------------------------------------------

MESSAGES = [
    (
        b"Return-Path: <sender@remote.test>\r\nFrom: Sender <sender@remote.test>\r\nTo: a@example.test\r\n"
        b"Subject: one\r\n\r\nFrom the start of a line.\r\n>From quoted once.\r\n>>From twice.\r\n"
        b"Not From here.\r\n\r\nFrom\r\n"
    ),
    b"From: Other <other@remote.test>\r\nSubject: two\r\n\r\nplain body\r\n",
    b"Subject: no sender at all\r\n\r\nbody\r\n\r\n\r\n",
]
INTERNALDATES = [1_700_000_000, 1_700_000_100, 1_700_000_200]
FLAGS: list[tuple[str, ...]] = [
    ("\\Seen", "\\Flagged", "$Important"),
    (),
    ("\\Answered", "\\Deleted", "\\Draft"),
]


def deliver(
    config: Path,
    address: str,
    mailbox: str = "INBOX",
    messages: list[bytes] = MESSAGES,
    dates: list[int] = INTERNALDATES,
    flags: list[tuple[str, ...]] = FLAGS,
) -> None:
    """Deliver through the store API directly (no SMTP), parsed with postoffice.message.parse_message."""
    from postoffice.config import load_config
    from postoffice.message import parse_message
    from postoffice.store import open_store

    async def put() -> None:
        store = open_store(load_config(config).store.path)
        try:
            account = await store.get_account(address)
            assert account is not None
            for raw, when, message_flags in zip(messages, dates, flags, strict=True):
                source = io.BytesIO(raw)
                parsed = parse_message(source)
                await store.deliver(source, parsed, [account.id], mailbox, message_flags, when)
        finally:
            await store.close()

    asyncio.run(put())


def read_mboxrd(data: bytes) -> list[tuple[bytes, bytes]]:
    """(From line, message) pairs, unquoting >From lines; the blank separator line is left out."""
    messages: list[tuple[bytes, list[bytes]]] = []
    for line in data.splitlines(keepends=True):
        if line.startswith(b"From "):  # mboxrd quotes every other line that starts so
            if messages:
                assert messages[-1][1].pop() == b"\n"  # the blank separator line
            messages.append((line, []))
            continue
        if re.match(rb">+From ", line):
            line = line[1:]
        messages[-1][1].append(line)
    if messages:
        assert messages[-1][1].pop() == b"\n"
    return [(from_line, b"".join(lines)) for from_line, lines in messages]


@pytest.fixture
def mail(data: Path) -> Path:
    po(data, "user", "add", "a@example.test")
    deliver(data, "a@example.test")
    deliver(data, "a@example.test", "Archive")
    return data


def test_export_mbox_is_byte_exact_mboxrd(mail: Path, tmp_path: Path) -> None:
    out = tmp_path / "inbox.mbox"
    proc = po(mail, "export", "a@example.test", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert b"\n>From the start of a line.\r\n>>From quoted once.\r\n>>>From twice.\r\n" in data
    messages = read_mboxrd(data)
    assert [m for _, m in messages] == MESSAGES
    expected_senders = ["sender@remote.test", "other@remote.test", "MAILER-DAEMON"]
    for (from_line, _), sender, when in zip(messages, expected_senders, INTERNALDATES, strict=True):
        assert from_line == f"From {sender} {time.asctime(time.gmtime(when))}\n".encode()


def test_export_mbox_to_stdout_equals_the_file(mail: Path, tmp_path: Path) -> None:
    out = tmp_path / "inbox.mbox"
    po(mail, "export", "a@example.test", "--mailbox", "Archive", "--output", str(out))
    proc = run_bytes("--config", str(mail), "export", "a@example.test", "--mailbox", "Archive", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout == out.read_bytes()


def test_export_maildir_writes_every_mailbox_with_flags_and_dates(mail: Path, tmp_path: Path) -> None:
    out = tmp_path / "maildir"
    proc = po(mail, "export", "a@example.test", "--format", "maildir", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"]
    )
    for name in ("INBOX", "Archive"):
        for sub in ("cur", "new", "tmp"):
            assert (out / name / sub).is_dir()
        files = sorted((out / name / "cur").iterdir(), key=lambda p: p.stat().st_mtime)
        assert [p.read_bytes() for p in files] == MESSAGES
        assert [int(p.stat().st_mtime) for p in files] == INTERNALDATES
        for path, when, info in zip(files, INTERNALDATES, ["FS", "", "DRT"], strict=True):
            assert re.fullmatch(rf"{when}\.\d+_\d+\.postoffice:2,{info}", path.name), path.name
        assert not list((out / name / "tmp").iterdir())
    assert not list((out / "Sent" / "cur").iterdir())


def test_export_streams_a_large_message_byte_exact(data: Path, tmp_path: Path) -> None:
    """Over 1 MiB the store streams content in chunks; quoting must not depend on where chunks end."""
    po(data, "user", "add", "a@example.test")
    body = b"".join(
        b"From line %d\r\n>From %d\r\n" % (i, i) + b"x" * (i % 997) + b"\r\n" for i in range(3000)
    )
    big = b"From: big@remote.test\r\nSubject: big\r\n\r\n" + body
    assert len(big) > 1024 * 1024
    deliver(data, "a@example.test", messages=[big], dates=[1_700_000_000], flags=[()])
    out = tmp_path / "big.mbox"
    assert po(data, "export", "a@example.test", "--output", str(out)).returncode == 0
    assert read_mboxrd(out.read_bytes()) == [
        (f"From big@remote.test {time.asctime(time.gmtime(1_700_000_000))}\n".encode(), big)
    ]
    maildir = tmp_path / "maildir"
    assert (
        po(data, "export", "a@example.test", "--format", "maildir", "--output", str(maildir)).returncode == 0
    )
    [path] = (maildir / "INBOX" / "cur").iterdir()
    assert path.read_bytes() == big


def test_export_one_mailbox_as_maildir(mail: Path, tmp_path: Path) -> None:
    out = tmp_path / "maildir"
    assert (
        po(
            mail,
            "export",
            "a@example.test",
            "--format",
            "maildir",
            "--mailbox",
            "Archive",
            "--output",
            str(out),
        ).returncode
        == 0
    )
    assert [p.name for p in out.iterdir()] == ["Archive"]


def test_export_errors(data: Path, tmp_path: Path) -> None:
    po(data, "user", "add", "a@example.test")
    assert po(data, "export", "a@example.test", "--format", "maildir").returncode == 2  # needs --output
    assert po(data, "export", "nobody@example.test").returncode == 1
    proc = po(data, "export", "a@example.test", "--mailbox", "Nope", "--output", str(tmp_path / "x"))
    assert proc.returncode == 1
    assert "Nope" in proc.stderr


# -- export building blocks ----------------------------------------------------------------------------------


def mboxrd(message: bytes, chunks: list[int]) -> bytes:
    out = io.BytesIO()
    writer = MboxrdWriter(out)
    start = 0
    for size in chunks:
        writer.feed(message[start : start + size])
        start += size
    writer.feed(message[start:])
    writer.finish()
    return out.getvalue()


def unquote(data: bytes) -> bytes:
    return re.sub(rb"(?m)^>(>*From )", rb"\1", data)


_lines = st.lists(
    st.sampled_from(
        [b"From x", b">From y", b">>From ", b"From", b">>>", b"Fro", b"text", b"", b" From z", b">"]
    ),
    max_size=12,
)


@given(
    lines=_lines,
    ending=st.sampled_from([b"\n", b"\r\n"]),
    chunks=st.lists(st.integers(min_value=0, max_value=9), max_size=20),
)
def test_mboxrd_quoting_is_reversible_and_independent_of_chunking(
    lines: list[bytes], ending: bytes, chunks: list[int]
) -> None:
    message = ending.join(lines) + ending if lines else b""
    whole = mboxrd(message, [])
    assert mboxrd(message, chunks) == whole
    if message:
        assert unquote(whole) == message
    assert not re.search(rb"(?m)^From ", whole)


def test_mboxrd_adds_a_final_newline_when_the_message_has_none() -> None:
    assert mboxrd(b"Subject: x\r\n\r\nno newline", [3]) == b"Subject: x\r\n\r\nno newline\n"


def test_envelope_sender_prefers_return_path_then_from() -> None:
    assert envelope_sender(b"Return-Path: <a@b.test>\r\nFrom: c@d.test\r\n") == "a@b.test"
    assert envelope_sender(b"Return-Path: <>\r\nFrom: C <c@d.test>\r\n") == "c@d.test"
    assert envelope_sender(b"Subject: x\r\n") == "MAILER-DAEMON"
    assert envelope_sender(b"From: undisclosed\r\n") == "MAILER-DAEMON"


def test_maildir_info_letters_are_in_ascii_order_without_keywords() -> None:
    flags = frozenset({"\\Seen", "\\Draft", "\\Answered", "\\Flagged", "\\Deleted", "$Junk", "\\Recent"})
    assert maildir_info(flags) == "DFRST"
    assert maildir_info(frozenset()) == ""


def test_mailbox_directory_never_leaves_the_export_root(tmp_path: Path) -> None:
    assert mailbox_directory(tmp_path, "INBOX") == tmp_path / "INBOX"
    assert mailbox_directory(tmp_path, "Lists/python") == tmp_path / "Lists" / "python"
    for name in ("..", "../etc", "a/../../b", "/abs"):
        assert tmp_path in mailbox_directory(tmp_path, name).resolve().parents


# -- storage quota and sending limit (docs/decisions/0053) ---------------------------------------------------


def test_user_quota_and_send_limit_are_set_listed_and_checked(data: Path) -> None:
    """`user quota ADDRESS SIZE` (K/M/G/T are powers of 1024; 0 or none: no limit), `user send-limit ADDRESS
    N` (0 or default: the server's), and `user list --long` with storage used, quota and sending limit."""
    from postoffice.config import load_config
    from postoffice.message import parse_message
    from postoffice.store import open_store

    assert po(data, "user", "add", "demo@example.test").returncode == 0
    assert po(data, "user", "add", "other@example.test").returncode == 0

    async def fill() -> None:
        store = open_store(load_config(data).store.path)
        try:
            account = await store.get_account("demo@example.test")
            assert account is not None
            raw = b"Subject: big\r\n\r\n" + b"x" * (3 * 1024 * 1024) + b"\r\n"
            await store.deliver(io.BytesIO(raw), parse_message(io.BytesIO(raw)), [account.id])
        finally:
            await store.close()

    asyncio.run(fill())
    quota = po(data, "user", "quota", "Demo@Example.test", "500M")
    assert quota.returncode == 0, quota.stderr
    assert quota.stdout.strip() == "demo@example.test: storage quota 500 MB (524288000 octets)"
    limit = po(data, "user", "send-limit", "demo@example.test", "20")
    assert limit.stdout.strip() == "demo@example.test: sending limit 20 messages per hour"
    listed = po(data, "user", "list", "--long").stdout
    assert re.search(r"^ADDRESS\s+ROLE\s+STATE\s+CREATED\s+USED\s+QUOTA\s+SEND LIMIT$", listed, re.M)
    assert re.search(r"^demo@example\.test\s+\S+ \S+\s+3 MB\s+500 MB\s+20/h$", listed, re.M), listed
    assert re.search(r"^other@example\.test\s+\S+ \S+\s+0 B\s+none\s+default$", listed, re.M), listed

    assert po(data, "user", "quota", "demo@example.test", "none").stdout.strip() == (
        "demo@example.test: storage quota none"
    )
    assert po(data, "user", "send-limit", "demo@example.test", "default").returncode == 0
    listed = po(data, "user", "list", "--long").stdout
    assert re.search(r"^demo@example\.test\s+\S+ \S+\s+3 MB\s+none\s+default$", listed, re.M), listed
    bad = po(data, "user", "quota", "demo@example.test", "lots")
    assert bad.returncode == 2
    assert "not a size: 'lots'" in bad.stderr
    assert po(data, "user", "send-limit", "demo@example.test", "many").returncode == 2
    assert po(data, "user", "quota", "nobody@example.test", "1G").returncode == 1


# -- reports received and sent (docs/decisions/0058) ---------------------------------------------------------


def _store_reports(
    config: Path, received: Sequence[ReceivedReport] = (), counts: Sequence[ReportCount] = ()
) -> list[int]:
    """Keep `received` as reports that arrived (their ids, in order) and add `counts` to the reports to send,
    through the store API as the server does."""
    from postoffice.config import load_config
    from postoffice.store import open_store

    async def put() -> list[int]:
        store = open_store(load_config(config).store.path)
        try:
            ids = []
            for report in received:
                kept = await store.add_received_report(report)
                assert kept is not None
                ids.append(kept.id)
            await store.add_report_counts(counts)
            return ids
        finally:
            await store.close()

    return asyncio.run(put())


def _received_dmarc(received: float) -> ReceivedReport:
    """A DMARC report about example.test with one source that passes and one that fails, summarised as the
    delivery stage summarises it."""
    from postoffice.mailauth.dmarc_reports import (
        AggregateReport,
        PolicyEvaluated,
        PolicyPublished,
        ReportRecord,
    )
    from postoffice.mailauth.report_intake import dmarc_summary
    from postoffice.mailauth.report_mail import DmarcIncoming

    report = AggregateReport(
        org_name="google.com",
        email="noreply-dmarc-support@google.com",
        report_id="5717107811868587391",
        begin=1706832000,  # 2024-02-02, a whole UTC day
        end=1706918399,
        policy=PolicyPublished(domain="example.test", p="quarantine"),
        records=(
            ReportRecord(
                "192.0.2.10", 7, PolicyEvaluated("pass", "pass", "fail"), header_from="example.test"
            ),
            ReportRecord("2001:db8::42", 2, PolicyEvaluated("quarantine", "fail", "fail"), "example.test"),
        ),
    )
    summary = json.dumps(dmarc_summary(DmarcIncoming(report, None)))
    return ReceivedReport(
        0, "dmarc", "google.com", report.report_id, "example.test", 1706832000, 1706918400, received, summary
    )


def _received_tls(received: float) -> ReceivedReport:
    """A TLS report about other.test over two days: one STARTTLS failure among its sessions."""
    from postoffice.mailauth.report_intake import tlsrpt_summary
    from postoffice.mailauth.report_mail import TlsRptIncoming
    from postoffice.mailauth.tlsrpt import FailureDetail, PolicyResult, TlsPolicy, TlsReport

    start = datetime.datetime(2024, 3, 1, tzinfo=datetime.UTC)
    report = TlsReport(
        organization_name="Mail Sender Inc.",
        start=start,
        end=start + datetime.timedelta(days=2),
        contact_info="tlsrpt@sender.example",
        report_id="2024-03-01.other.test@sender.example",
        policies=(
            PolicyResult(
                policy=TlsPolicy(policy_type="no-policy-found", policy_domain="other.test"),
                total_successful_session_count=20,
                total_failure_session_count=1,
                failure_details=(
                    FailureDetail(
                        "starttls-not-supported",
                        1,
                        receiving_mx_hostname="mx.other.test",
                        receiving_ip="192.0.2.7",
                    ),
                ),
            ),
        ),
    )
    summary = json.dumps(tlsrpt_summary(TlsRptIncoming(report, None)))
    return ReceivedReport(
        0,
        "tlsrpt",
        report.organization_name,
        report.report_id,
        "other.test",
        start.timestamp(),
        report.end.timestamp(),
        received,
        summary,
    )


def test_reports_list_and_show_with_no_report_received(data: Path) -> None:
    listed = po(data, "reports", "list")
    assert (listed.returncode, listed.stdout) == (0, "no reports received\n")
    missing = po(data, "reports", "show", "7")
    assert (missing.returncode, missing.stdout, missing.stderr) == (
        1,
        "",
        "postoffice: no report with id 7\n",
    )
    assert po(data, "reports", "list", "--kind", "spam").returncode == 2
    assert po(data, "reports", "show", "seven").returncode == 2


def test_reports_list_and_show_print_the_summaries(data: Path) -> None:
    """`reports list` prints one line per report, newest first, with its pass and fail counts (--kind,
    --domain and --limit choose); `reports show ID` prints the sources of a DMARC report and the failures of a
    TLS report."""
    dmarc_id, tls_id = _store_reports(data, [_received_dmarc(1_710_000_000), _received_tls(1_710_000_100)])
    listed = po(data, "reports", "list")
    assert listed.returncode == 0, listed.stderr
    assert [re.split(r"\s{2,}", line) for line in listed.stdout.splitlines()] == [
        ["ID", "KIND", "DOMAIN", "FROM", "PERIOD", "MESSAGES"],
        [str(tls_id), "TLS", "other.test", "Mail Sender Inc.", "2024-03-01..2024-03-02", "20 ok, 1 failed"],
        [str(dmarc_id), "DMARC", "example.test", "google.com", "2024-02-02", "7 pass, 2 fail"],
    ]
    assert f"\n{dmarc_id} " not in po(data, "reports", "list", "--kind", "tls").stdout
    dmarc_only = po(data, "reports", "list", "--kind", "dmarc").stdout
    assert re.search(rf"^{dmarc_id}\s+DMARC\s+example\.test\s", dmarc_only, re.M)
    assert "TLS" not in dmarc_only
    assert "google.com" not in po(data, "reports", "list", "--domain", "other.test").stdout
    assert po(data, "reports", "list", "--domain", "nowhere.test").stdout == "no reports received\n"
    newest = po(data, "reports", "list", "--limit", "1").stdout.splitlines()
    assert len(newest) == 2
    assert newest[1].startswith(f"{tls_id} ")

    dmarc = po(data, "reports", "show", str(dmarc_id))
    assert dmarc.returncode == 0, dmarc.stderr
    lines = dmarc.stdout.splitlines()
    assert lines[:3] == [
        "DMARC aggregate report 5717107811868587391",
        "  from google.com, about example.test, 2024-02-02",
        "  policy p=quarantine; 7 pass, 2 fail",
    ]
    assert [line.split() for line in lines[3:]] == [
        ["SOURCE", "COUNT", "DISPOSITION", "DKIM", "SPF", "FROM"],
        ["192.0.2.10", "7", "pass", "pass", "fail", "example.test"],
        ["2001:db8::42", "2", "quarantine", "fail", "fail", "example.test"],
    ]
    tls = po(data, "reports", "show", str(tls_id))
    assert tls.stdout.splitlines() == [
        "TLS report 2024-03-01.other.test@sender.example",
        "  from Mail Sender Inc., about other.test, 2024-03-01..2024-03-02",
        "  policy no-policy-found for other.test: 20 ok, 1 failed",
        "    1 x starttls-not-supported at mx.other.test [192.0.2.7]",
    ]


def test_reports_send_with_nothing_due_queues_nothing(data: Path) -> None:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    line = '{"dkim":"pass","disposition":"pass","header_from":"example.com","ip":"192.0.2.1","spf":"pass"}'
    _store_reports(data, counts=[ReportCount("dmarc", today, "example.com", line)])  # today is not over
    sent = po(data, "reports", "send")
    assert (sent.returncode, sent.stdout) == (0, "0 reports queued\n")
    assert po(data, "queue", "list").stdout.splitlines()[-1].startswith("0 messages")


def test_reports_send_queues_the_reports_of_finished_days_dkim_signed(data: Path) -> None:
    """What was counted for yesterday goes now: the DMARC report to its rua (in the policy domain: no DNS
    check needed), the TLS report to the rua of the domain's _smtp._tls record, both from postmaster@ our
    domain and DKIM-signed like the reports the server sends by itself; then they are forgotten."""
    from postoffice.config import load_config
    from postoffice.mailauth.report_mail import DmarcIncoming, TlsRptIncoming, extract_reports
    from postoffice.store import open_store

    yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    dmarc_line = json.dumps(
        {
            "ip": "192.0.2.1",
            "disposition": "none",
            "dkim": "fail",
            "spf": "pass",
            "reasons": [],
            "header_from": "example.com",
            "envelope_from": "example.com",
            "auth_dkim": [],
            "auth_spf": ["example.com", "mfrom", "pass"],
        }
    )
    policy = json.dumps({"domain": "example.com", "p": "none", "rua": ["mailto:dmarc@example.com!10m"]})
    tls_line = json.dumps(
        {
            "type": "no-policy-found",
            "policy": [],
            "mx": "mx.example.net",
            "ip": "192.0.2.25",
            "result": "",
            "detail": "",
        }
    )
    _store_reports(
        data,
        counts=[
            ReportCount("dmarc", yesterday, "example.com", dmarc_line, 4, policy),
            ReportCount("tlsrpt", yesterday, "example.net", tls_line, 9),
        ],
    )
    zones = Zones([("_smtp._tls.example.net.", "TXT", '"v=TLSRPTv1; rua=mailto:tls@example.net"')])
    with DnsServer(zones) as server:
        data.write_text(
            data.read_text()
            .replace("nameservers = []\n", 'nameservers = ["127.0.0.1"]\n')
            .replace("dns_port = 53\n", f"dns_port = {server.port}\n")
        )
        sent = po(data, "reports", "send")
        assert (sent.returncode, sent.stdout) == (0, "2 reports queued\n"), sent.stderr
        again = po(data, "reports", "send")
    assert again.stdout == "0 reports queued\n"  # sent once: forgotten

    async def queued() -> list[tuple[str, list[str], bytes]]:
        store = open_store(load_config(data).store.path)
        try:
            return [
                (m.sender, [r.address for r in m.recipients], await store.queue_read(m.id))
                for m in await store.queue_list()
            ]
        finally:
            await store.close()

    messages = sorted(asyncio.run(queued()), key=lambda m: m[1])
    assert [(sender, to) for sender, to, _ in messages] == [
        ("postmaster@example.test", ["dmarc@example.com"]),
        ("postmaster@example.test", ["tls@example.net"]),
    ]
    for _sender, _to, raw in messages:
        assert raw.startswith(b"DKIM-Signature:"), raw[:200]
        assert b" d=example.test;" in raw.split(b"\r\n\r\n", 1)[0]
    ((dmarc,), (tls,)) = (extract_reports(raw).reports for _sender, _to, raw in messages)
    assert isinstance(dmarc, DmarcIncoming)
    assert (dmarc.report.policy.domain, [r.count for r in dmarc.report.records]) == ("example.com", [4])
    assert isinstance(tls, TlsRptIncoming)
    assert [p.total_successful_session_count for p in tls.report.policies] == [9]
