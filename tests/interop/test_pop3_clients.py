"""Real POP3 clients from Debian (`make deps` installs them) against a real server: fetchmail, getmail6
and curl, over STLS on the pop3 port and implicit TLS on pop3s, keeping and deleting. Each retrieves mail
delivered over SMTP; the retrieved bytes are compared with what the store holds, and the store is checked
independently."""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import DataDir, ServerProcess, make_data_dir
from tests.integration.mailcheck import inbox_messages

pytestmark = pytest.mark.interop

DEMO = "demo@example.test"
DEMO_PW = "demo-secret-pw"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: `make deps` installs it")
    return path


def deliver_two(server: ServerProcess, data: DataDir) -> list[bytes]:
    """Two messages (one with a line that starts with a dot) delivered over SMTP; returns what was stored."""
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=60) as smtp:
        for n, body in enumerate(["plain body\r\n", "first\r\n.leading dot\r\n..two dots\r\nlast\r\n"]):
            smtp.sendmail(
                "sender@remote.test",
                [DEMO],
                f"From: sender@remote.test\r\nTo: {DEMO}\r\nSubject: interop {n}\r\n"
                f"Message-ID: <interop{n}@remote.test>\r\n\r\n{body}".encode(),
            )
    stored = [data for _, data in inbox_messages(data.root, DEMO)]
    assert len(stored) == 2
    return stored


def as_crlf(delivered: bytes) -> bytes:
    """Local delivery (MDA, Maildir) writes LF line ends; the store holds CRLF."""
    return delivered.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture
def world_writable_dir() -> Iterator[Path]:
    """getmail refuses to deliver as root; it delivers as `nobody` then, who must be able to write here."""
    path = Path(tempfile.mkdtemp(prefix="pop3-interop-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- fetchmail


def fetchmail(
    server: ServerProcess, data: DataDir, home: Path, *, implicit_tls: bool, keep: bool
) -> list[bytes]:
    binary = need("fetchmail")
    out = home / "out"
    out.mkdir(parents=True)
    port = server.port("pop3s" if implicit_tls else "pop3")
    # Without `ssl` but with sslproto, fetchmail requires STLS (it refuses to go on in plaintext).
    tls = "ssl" if implicit_tls else 'sslproto "tls1.2+"'
    rc = home / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        f"poll localhost via 127.0.0.1 with proto POP3 port {port}\n"
        f'  user "{DEMO}" there with password "{DEMO_PW}" is "{os.environ.get("USER", "root")}" here\n'
        f'  {tls} sslcertck sslcertfile "{data.root / "tls" / "cert.pem"}" sslcommonname "localhost"\n'
        f"  {'keep' if keep else 'nokeep'} no rewrite\n"
        f'  mda "cat > {out}/msg.$$"\n'
    )
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(home), FETCHMAILHOME=str(home))
    proc = subprocess.run(
        [binary, "-f", str(rc), "--invisible", "-v", "--nodetach"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if not implicit_tls:
        assert "POP3> STLS" in proc.stdout + proc.stderr
    return sorted(as_crlf(path.read_bytes()) for path in out.iterdir())


def test_fetchmail_with_stls_keeps_mail(server: ServerProcess, data_dir: DataDir, tmp_path: Path) -> None:
    stored = deliver_two(server, data_dir)
    assert fetchmail(server, data_dir, tmp_path / "fm", implicit_tls=False, keep=True) == sorted(stored)
    assert [data for _, data in inbox_messages(data_dir.root, DEMO)] == stored


def test_fetchmail_over_pop3s_deletes_mail(server: ServerProcess, data_dir: DataDir, tmp_path: Path) -> None:
    stored = deliver_two(server, data_dir)
    assert fetchmail(server, data_dir, tmp_path / "fm", implicit_tls=True, keep=False) == sorted(stored)
    assert inbox_messages(data_dir.root, DEMO) == []


# ----------------------------------------------------------------------------------------------- getmail6


def getmail(
    port: int, data: DataDir, home: Path, *, retriever: str, delete: bool, check: bool = True
) -> tuple[list[bytes], str]:
    binary = need("getmail")
    maildir = home / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for path in [home, *home.rglob("*")]:
        path.chmod(0o777)
    user = "user = nobody\n" if os.geteuid() == 0 else ""
    rc = home / "getmailrc"
    rc.write_text(
        "[retriever]\n"
        f"type = {retriever}\nserver = localhost\nport = {port}\n"
        f"username = {DEMO}\npassword = {DEMO_PW}\n"
        + (f"ca_certs = {data.root / 'tls' / 'cert.pem'}\n" if "SSL" in retriever else "")
        + f"\n[destination]\ntype = Maildir\npath = {maildir}/\n{user}"
        f"\n[options]\ndelete = {'true' if delete else 'false'}\nread_all = true\n"
        "delivered_to = false\nreceived = false\nverbose = 2\n"
    )
    proc = subprocess.run(
        [binary, "--rcfile", str(rc), "--getmaildir", str(home)], capture_output=True, text=True, timeout=120
    )
    output = proc.stdout + proc.stderr
    if check:
        assert proc.returncode == 0, output
    return sorted(as_crlf(path.read_bytes()) for path in (maildir / "new").iterdir()), output


def test_getmail_over_pop3s_keeps_mail(
    server: ServerProcess, data_dir: DataDir, world_writable_dir: Path
) -> None:
    stored = deliver_two(server, data_dir)
    got, _ = getmail(
        server.port("pop3s"), data_dir, world_writable_dir, retriever="SimplePOP3SSLRetriever", delete=False
    )
    assert got == sorted(stored)
    assert [data for _, data in inbox_messages(data_dir.root, DEMO)] == stored


def test_getmail_over_pop3s_deletes_mail(
    server: ServerProcess, data_dir: DataDir, world_writable_dir: Path
) -> None:
    stored = deliver_two(server, data_dir)
    got, _ = getmail(
        server.port("pop3s"), data_dir, world_writable_dir, retriever="SimplePOP3SSLRetriever", delete=True
    )
    assert got == sorted(stored)
    assert inbox_messages(data_dir.root, DEMO) == []


def test_getmail_without_tls_is_refused_by_default_and_works_when_allowed(
    server: ServerProcess, data_dir: DataDir, world_writable_dir: Path, tmp_path: Path
) -> None:
    # getmail6 has no STLS for POP3 (its SimplePOP3Retriever speaks plaintext only): by default the server
    # refuses the password, with a hint; a server configured with allow_plaintext_auth lets it in.
    deliver_two(server, data_dir)
    got, output = getmail(
        server.port("pop3"),
        data_dir,
        world_writable_dir / "refused",
        retriever="SimplePOP3Retriever",
        delete=True,
        check=False,
    )
    assert got == []
    assert "Plaintext authentication disallowed" in output
    assert len(inbox_messages(data_dir.root, DEMO)) == 2

    plain = make_data_dir(tmp_path / "plain")
    config = plain.config.read_text()
    plain.config.write_text(
        re.sub(r"(?m)^allow_plaintext_auth = false$", "allow_plaintext_auth = true", config)
    )
    plain_server = ServerProcess(plain).start()
    try:
        stored = deliver_two(plain_server, plain)
        got, _ = getmail(
            plain_server.port("pop3"),
            plain,
            world_writable_dir / "allowed",
            retriever="SimplePOP3Retriever",
            delete=True,
        )
        assert got == sorted(stored)
        assert inbox_messages(plain.root, DEMO) == []
    finally:
        assert plain_server.stop() == 0


# ---------------------------------------------------------------------------------------------------- curl


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [need("curl"), "-sS", "-u", f"{DEMO}:{DEMO_PW}", *args], capture_output=True, timeout=120
    )


def test_curl_with_stls_lists_and_retrieves(server: ServerProcess, data_dir: DataDir) -> None:
    stored = deliver_two(server, data_dir)
    cacert = str(data_dir.root / "tls" / "cert.pem")
    url = f"pop3://localhost:{server.port('pop3')}/"
    listing = curl("--ssl-reqd", "--cacert", cacert, "--connect-to", "localhost::127.0.0.1:", url)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.decode().splitlines() == [f"{i + 1} {len(m)}" for i, m in enumerate(stored)]
    for number, expected in enumerate(stored, 1):
        got = curl(
            "--ssl-reqd", "--cacert", cacert, "--connect-to", "localhost::127.0.0.1:", f"{url}{number}"
        )
        assert got.returncode == 0, got.stderr
        assert got.stdout == expected  # curl un-stuffs the dots and keeps CRLF
    assert len(inbox_messages(data_dir.root, DEMO)) == 2


def test_curl_over_pop3s_retrieves_and_deletes(server: ServerProcess, data_dir: DataDir) -> None:
    stored = deliver_two(server, data_dir)
    cacert = str(data_dir.root / "tls" / "cert.pem")
    url = f"pop3s://localhost:{server.port('pop3s')}/"
    via = ("--connect-to", "localhost::127.0.0.1:")
    got = curl("--cacert", cacert, *via, f"{url}2")
    assert got.returncode == 0, got.stderr
    assert got.stdout == stored[1]
    deleted = curl("--cacert", cacert, *via, "-X", "DELE", "-I", f"{url}2")
    assert deleted.returncode == 0, deleted.stderr
    assert [data for _, data in inbox_messages(data_dir.root, DEMO)] == stored[:1]


def test_curl_sends_no_password_before_stls(server: ServerProcess, data_dir: DataDir) -> None:
    # Without --ssl-reqd, curl reads CAPA: no USER and no SASL before STLS, so it never sends the password.
    deliver_two(server, data_dir)
    got = curl("-v", f"pop3://127.0.0.1:{server.port('pop3')}/1")
    assert got.returncode != 0
    assert b"> USER" not in got.stderr
    assert b"> AUTH" not in got.stderr
    assert b"> PASS" not in got.stderr
    assert len(inbox_messages(data_dir.root, DEMO)) == 2
