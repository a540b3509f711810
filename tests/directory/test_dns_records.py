"""The DNS records a domain publishes (`directory.dns_records`, docs/decisions/0051): what is expected from
the configuration, and the check against a real DNS server on loopback (`tests.support.dns_server`): right,
missing, wrong (several SPF records, a null MX, SRV records elsewhere, ...) and DNS failures (SERVFAIL, a
server that never answers)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from postoffice.config import Config, load_config
from postoffice.directory.dns_records import (
    DnsRecord,
    RecordCheck,
    Text,
    check_records,
    expected_records,
    not_yet,
    zone_lines,
)
from postoffice.mailauth.mtasts import parse_policy, policy_id, render_policy
from postoffice.net.dns import DnsResolver
from postoffice.net.tls import generate_self_signed
from postoffice.store import DkimKey
from tests.support.dns_server import DnsServer, Zones
from tests.support.mail import run_bounded

pytestmark = pytest.mark.timeout(60)

HOST = "mail.example.test"
#: The id of the policy the standard configuration publishes (RFC 8461: mode testing, the host, a week).
STS_ID = policy_id(render_policy("testing", [HOST], 604800))


class FailingZones(Zones):
    """Zones whose server answers SERVFAIL for every name under `servfail.test` (a broken authority)."""

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        if query.question and query.question[0].name.to_text().endswith("servfail.test."):
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        return super().answer(wire)


def srv(label: str, domain: str, value: str) -> tuple[str, str, str]:
    return (f"{label}._tcp.{domain}.", "SRV", value)


ZONES = FailingZones(
    [
        (f"{HOST}.", "A", "192.0.2.1"),
        (f"{HOST}.", "AAAA", "2001:db8::1"),
        # good.test: everything right (another MX beside ours, our SRV with other priorities, TXT in pieces)
        ("good.test.", "MX", "10 mail.example.test."),
        ("good.test.", "MX", "20 backup.example.net."),
        ("good.test.", "TXT", '"v=spf1 " "mx ~all"'),
        ("good.test.", "TXT", '"site-verification=abc"'),
        ("_dmarc.good.test.", "TXT", '"v=DMARC1; p=reject; rua=mailto:postmaster@good.test"'),
        srv("_submissions", "good.test", "0 1 465 mail.example.test."),
        srv("_submission", "good.test", "5 0 587 mail.example.test."),
        srv("_imaps", "good.test", "0 1 993 mail.example.test."),
        srv("_imap", "good.test", "10 1 143 MAIL.example.test."),
        srv("_pop3s", "good.test", "20 1 995 mail.example.test."),
        srv("_pop3", "good.test", "30 1 110 mail.example.test."),
        ("autoconfig.good.test.", "CNAME", "mail.example.test."),
        ("autodiscover.good.test.", "A", "192.0.2.1"),
        srv("_autodiscover", "good.test", "0 1 443 mail.example.test."),
        ("_mta-sts.good.test.", "TXT", f'"v=STSv1;" "id={STS_ID}"'),
        ("_mta-sts.good.test.", "TXT", '"v=spf1 -all"'),  # not an STS record: ignored
        ("mta-sts.good.test.", "CNAME", "mail.example.test."),
        ("_smtp._tls.good.test.", "TXT", '"v=TLSRPTv1;rua=mailto:postmaster@good.test"'),
        # bad.test: each record present and wrong
        ("bad.test.", "MX", "10 mx.elsewhere.example."),
        ("bad.test.", "TXT", '"v=spf1 mx -all"'),
        ("bad.test.", "TXT", '"v=spf1 a -all"'),
        ("_dmarc.bad.test.", "TXT", '"v=DMARC1; rua=mailto:reports@bad.test"'),
        srv("_submissions", "bad.test", "0 1 465 mail.elsewhere.example."),
        srv("_submission", "bad.test", "0 1 2525 mail.example.test."),
        srv("_imaps", "bad.test", "0 0 0 ."),
        ("autoconfig.bad.test.", "A", "198.51.100.7"),
        ("autodiscover.bad.test.", "CNAME", "gone.bad.test."),
        ("_mta-sts.bad.test.", "TXT", '"v=STSv1; id=20160831085700Z"'),
        ("_smtp._tls.bad.test.", "TXT", '"v=TLSRPTv1; rua=mailto:tls@reports.example"'),
        # the rules of MTA-STS and TLS reporting records
        ("_mta-sts.twosts.test.", "TXT", f'"v=STSv1; id={STS_ID}"'),
        ("_mta-sts.twosts.test.", "TXT", '"v=STSv1; id=other"'),
        ("_mta-sts.badsts.test.", "TXT", f'"v=STSv1 id={STS_ID}"'),
        ("_mta-sts.notsts.test.", "TXT", f'"v=STSv10; id={STS_ID}"'),
        ("_smtp._tls.tworpt.test.", "TXT", '"v=TLSRPTv1; rua=mailto:postmaster@tworpt.test"'),
        ("_smtp._tls.tworpt.test.", "TXT", '"v=TLSRPTv1; rua=mailto:other@tworpt.test"'),
        # one record each, for the rules of SPF, DMARC and MX
        ("nullmx.test.", "MX", "0 ."),
        ("spfnone.test.", "TXT", '"v=spf1 -all"'),
        ("spfevery.test.", "TXT", '"v=spf1 +all"'),
        ("spfsoft.test.", "TXT", '"v=spf1 ~mx ?a -all"'),
        ("spfredirect.test.", "TXT", '"v=spf1 redirect=_spf.example.net"'),
        ("spfip.test.", "TXT", '"v=spf1 ip4:192.0.2.0/24 -all"'),
        ("spfv2.test.", "TXT", '"v=spf10 mx -all"'),
        ("_dmarc.twodmarc.test.", "TXT", '"v=DMARC1; p=none"'),
        ("_dmarc.twodmarc.test.", "TXT", '"v=DMARC1; p=reject"'),
        ("_dmarc.notdmarc.test.", "TXT", '"v=spf1 mx -all"'),
        ("_dmarc.badpolicy.test.", "TXT", '"v=DMARC1; p=maybe"'),
        # DKIM (docs/decisions/0056): dkim.test's keys as published, right and wrong
        ("r1._domainkey.dkim.test.", "TXT", '"v=DKIM1; k=rsa; p=' + "A" * 200 + '" "' + "A" * 192 + '"'),
        ("e1._domainkey.dkim.test.", "TXT", '"v=DKIM1; k=ed25519; p=EEEE"'),
        ("e2._domainkey.dkim.test.", "TXT", '"v=DKIM1; k=ed25519; p=OTHER"'),
        ("e3._domainkey.dkim.test.", "TXT", '"v=DKIM1; k=ed25519; p="'),
        ("e4._domainkey.dkim.test.", "TXT", '"v=DKIM1; k=rsa; p=EEEE"'),
        ("e5._domainkey.dkim.test.", "TXT", '"v=DKIM1; k=ed25519; p=EEEE"'),
        ("e5._domainkey.dkim.test.", "TXT", '"k=ed25519; p=OLD"'),
        ("e6._domainkey.dkim.test.", "TXT", '"v=DKIM2; k=ed25519; p=EEEE"'),  # not a DKIM1 key record
        ("e7._domainkey.dkim.test.", "TXT", '"k=ed25519; t=s; p= EE EE "'),  # no v=, white space in p=
        # nopop.test, for a server without POP3: one record right, one pointing at a host
        srv("_pop3s", "nopop.test", "0 0 0 ."),
        srv("_pop3", "nopop.test", "0 1 110 mail.example.test."),
    ]
)


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    with DnsServer(ZONES) as server:
        yield server.port


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tls")
    generate_self_signed(HOST, root / "cert.pem", root / "key.pem")
    return root / "cert.pem", root / "key.pem"


def make_config(tmp_path: Path, tls_files: tuple[Path, Path], extra: str = "") -> Config:
    """The standard listeners on their standard ports at HOST, changed by `extra` (TOML)."""
    cert, key = tls_files
    path = tmp_path / "postoffice.toml"
    path.write_text(
        f'[server]\nhostname = "{HOST}"\n[tls]\ncertificate = "{cert}"\nprivate_key = "{key}"\n' + extra
    )
    (tmp_path / "store").mkdir(exist_ok=True)
    return load_config(path)


def resolver(port: int) -> DnsResolver:
    return DnsResolver(["127.0.0.1"], port=port, timeout=2, lifetime=4)


def check(config: Config, domain: str, port: int) -> dict[tuple[str, str], RecordCheck]:
    checks = run_bounded(check_records(expected_records(config, domain), resolver(port)))
    return {(c.record.type, c.record.name.removesuffix(f"{domain}.")): c for c in checks}


def statuses(checks: dict[tuple[str, str], RecordCheck]) -> dict[tuple[str, str], str]:
    return {key: c.status for key, c in checks.items()}


# -- what is published ---------------------------------------------------------------------------------------


def test_the_standard_listeners_publish_mx_spf_dmarc_every_srv_and_the_setup_names(
    tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    records = expected_records(make_config(tmp_path, tls_files), "Example.Test")
    assert [(r.name, r.type, r.value) for r in records] == [
        ("example.test.", "MX", "10 mail.example.test."),
        ("example.test.", "TXT", "v=spf1 mx ~all"),
        ("_dmarc.example.test.", "TXT", "v=DMARC1; p=none; rua=mailto:postmaster@example.test"),
        ("_submissions._tcp.example.test.", "SRV", "0 1 465 mail.example.test."),
        ("_submission._tcp.example.test.", "SRV", "10 1 587 mail.example.test."),
        ("_imaps._tcp.example.test.", "SRV", "0 1 993 mail.example.test."),
        ("_imap._tcp.example.test.", "SRV", "10 1 143 mail.example.test."),
        ("_pop3s._tcp.example.test.", "SRV", "20 1 995 mail.example.test."),
        ("_pop3._tcp.example.test.", "SRV", "30 1 110 mail.example.test."),
        ("autoconfig.example.test.", "CNAME", "mail.example.test."),
        ("autodiscover.example.test.", "CNAME", "mail.example.test."),
        ("_autodiscover._tcp.example.test.", "SRV", "0 1 443 mail.example.test."),
        ("_mta-sts.example.test.", "TXT", f"v=STSv1; id={STS_ID}"),
        ("mta-sts.example.test.", "CNAME", "mail.example.test."),
        ("_smtp._tls.example.test.", "TXT", "v=TLSRPTv1; rua=mailto:postmaster@example.test"),
    ]
    assert all(str(r.purpose) for r in records)
    assert str(records[-3].purpose) == (
        "MTA-STS (RFC 8461), mode testing; the id changes whenever the policy does."
    )
    assert not_yet("example.test") == []  # DKIM: the keys' records below


def test_services_not_offered_get_the_root_target_and_bound_ports_win(
    tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    config = make_config(
        tmp_path,
        tls_files,
        "[listeners.pop3]\nenabled = false\n[listeners.pop3s]\nenabled = false\n"
        '[listeners.imap]\ntls = "none"\n'  # no TLS: never advertised
        "[listeners.http]\nenabled = false\n[listeners.https]\nenabled = false\n",
    )
    records = {r.name: r.value for r in expected_records(config, "example.test", {"imaps": ("::", 10993)})}
    assert records["_pop3s._tcp.example.test."] == "0 0 0 ."
    assert records["_pop3._tcp.example.test."] == "0 0 0 ."
    assert records["_imap._tcp.example.test."] == "0 0 0 ."
    assert records["_imaps._tcp.example.test."] == "0 1 10993 mail.example.test."
    # no web listener: nothing answers autoconfig or Autodiscover, so no names point here for them
    assert not any("autoconfig" in name or "autodiscover" in name for name in records)


def test_the_spf_record_names_the_smarthost(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    by_name = make_config(tmp_path, tls_files, '[queue]\nsmarthost = "relay.example.net"\n')
    assert expected_records(by_name, "example.test")[1].value == "v=spf1 mx a:relay.example.net ~all"
    by_address = make_config(tmp_path, tls_files, '[queue]\nsmarthost = "2001:db8::25"\n')
    assert expected_records(by_address, "example.test")[1].value == "v=spf1 mx ip6:2001:db8::25 ~all"


def test_zone_lines_quote_txt_values(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    lines = zone_lines(
        expected_records(make_config(tmp_path, tls_files), "example.test"), not_yet("example.test")
    )
    assert any(line.split() == ["example.test.", "IN", "TXT", '"v=spf1', "mx", '~all"'] for line in lines)
    assert any(line.split() == ["example.test.", "IN", "MX", "10", "mail.example.test."] for line in lines)
    assert any(
        line.split() == ["_mta-sts.example.test.", "IN", "TXT", '"v=STSv1;', f'id={STS_ID}"']
        for line in lines
    )
    assert "not yet" not in "\n".join(lines)
    assert DnsRecord("a.", "TXT", 'say "hi"', Text("hi"), "spf").published == '"say \\"hi\\""'


def test_the_mta_sts_policy_and_its_records_follow_the_settings(
    tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    """The id is the served policy's (RFC 8461 section 3.1: it changes with the policy): another mode or mx
    gives another id; "off", or no HTTPS listener to serve the policy, publishes no MTA-STS records."""

    def sts(extra: str) -> dict[str, str]:
        records = expected_records(make_config(tmp_path, tls_files, extra), "example.test")
        return {r.name: r.value for r in records if "mta-sts" in r.name or "_smtp._tls" in r.name}

    enforce = sts('[mta_sts]\nmode = "enforce"\nmx = ["mail.example.test", "*.backup.example.test"]\n')
    text = render_policy("enforce", [HOST, "*.backup.example.test"], 604800)
    assert parse_policy(text).mx == ("mail.example.test", "*.backup.example.test")
    assert enforce["_mta-sts.example.test."] == f"v=STSv1; id={policy_id(text)}"
    assert enforce["_mta-sts.example.test."] != f"v=STSv1; id={STS_ID}"
    assert sts("[mta_sts]\nmax_age = 86400\n")["_mta-sts.example.test."] != f"v=STSv1; id={STS_ID}"
    assert sts('[mta_sts]\nmode = "off"\n') == {}
    assert sts("[listeners.https]\nenabled = false\n") == {}
    assert set(sts("[listeners.http]\nenabled = false\n")) == {
        "_mta-sts.example.test.",
        "mta-sts.example.test.",
        "_smtp._tls.example.test.",
    }


# -- the check -----------------------------------------------------------------------------------------------


def test_records_that_are_right(tmp_path: Path, tls_files: tuple[Path, Path], dns_port: int) -> None:
    ZONES.queries.clear()
    checks = check(make_config(tmp_path, tls_files), "good.test", dns_port)
    assert statuses(checks) == {key: "ok" for key in checks}
    assert len(checks) == 15
    assert checks[("TXT", "")].found == ("v=spf1 mx ~all",)  # the pieces joined; other TXT records ignored
    # each name and type is asked once, however many records need it (the host's addresses: twice)
    assert len(ZONES.queries) == len(set(ZONES.queries))


def test_records_that_are_missing(tmp_path: Path, tls_files: tuple[Path, Path], dns_port: int) -> None:
    checks = check(make_config(tmp_path, tls_files), "empty.test", dns_port)
    assert statuses(checks) == {key: "missing" for key in checks}
    assert all(c.found == () for c in checks.values())


def test_records_that_are_wrong_say_what_was_found(
    tmp_path: Path, tls_files: tuple[Path, Path], dns_port: int
) -> None:
    checks = check(make_config(tmp_path, tls_files), "bad.test", dns_port)
    assert statuses(checks) == {
        ("MX", ""): "wrong",
        ("TXT", ""): "wrong",
        ("TXT", "_dmarc."): "wrong",
        ("SRV", "_submissions._tcp."): "wrong",
        ("SRV", "_submission._tcp."): "wrong",
        ("SRV", "_imaps._tcp."): "wrong",
        ("SRV", "_imap._tcp."): "missing",
        ("SRV", "_pop3s._tcp."): "missing",
        ("SRV", "_pop3._tcp."): "missing",
        ("CNAME", "autoconfig."): "wrong",
        ("CNAME", "autodiscover."): "wrong",
        ("SRV", "_autodiscover._tcp."): "missing",
        ("TXT", "_mta-sts."): "wrong",
        ("CNAME", "mta-sts."): "missing",
        ("TXT", "_smtp._tls."): "wrong",
    }

    def detail(key: tuple[str, str]) -> str:
        text = checks[key].detail
        assert text is not None, key
        return str(text)

    assert checks[("MX", "")].found == ("10 mx.elsewhere.example.",)
    assert detail(("MX", "")) == "No MX record names mail.example.test."
    assert sorted(checks[("TXT", "")].found) == ["v=spf1 a -all", "v=spf1 mx -all"]
    assert "Several SPF records" in detail(("TXT", ""))
    assert "p= tag" in detail(("TXT", "_dmarc."))
    assert checks[("SRV", "_submissions._tcp.")].found == ("0 1 465 mail.elsewhere.example.",)
    assert detail(("SRV", "_submission._tcp.")) == "Expected mail.example.test port 587."
    assert detail(("SRV", "_imaps._tcp.")) == "Says the service is not offered, but it runs here."
    assert checks[("CNAME", "autoconfig.")].found == ("198.51.100.7",)
    assert (
        detail(("CNAME", "autoconfig.")) == "Not the addresses of mail.example.test (192.0.2.1, 2001:db8::1)."
    )
    assert detail(("CNAME", "autodiscover.")) == "A CNAME to gone.bad.test, which has no address."
    assert checks[("TXT", "_mta-sts.")].found == ("v=STSv1; id=20160831085700Z",)
    assert detail(("TXT", "_mta-sts.")) == (
        f"Not the id of the policy served now ({STS_ID}): senders that have the old one keep it."
    )
    assert checks[("TXT", "_smtp._tls.")].found == ("v=TLSRPTv1; rua=mailto:tls@reports.example",)
    assert detail(("TXT", "_smtp._tls.")) == ("Expected v=TLSRPTv1; rua=mailto:postmaster@bad.test.")


@pytest.mark.parametrize(
    ("domain", "name", "status", "detail"),
    [
        ("twosts.test", "_mta-sts.", "wrong", "Several MTA-STS records: senders use none of them"),
        ("badsts.test", "_mta-sts.", "wrong", "Not a valid MTA-STS record (RFC 8461 section 3.1)."),
        ("notsts.test", "_mta-sts.", "missing", None),  # "v=STSv10" is not an STS record
        ("tworpt.test", "_smtp._tls.", "wrong", "Several TLS reporting records: senders use none of them"),
    ],
)
def test_what_makes_mta_sts_and_tls_reporting_records_right(
    tmp_path: Path,
    tls_files: tuple[Path, Path],
    dns_port: int,
    domain: str,
    name: str,
    status: str,
    detail: str | None,
) -> None:
    result = check(make_config(tmp_path, tls_files), domain, dns_port)[("TXT", name)]
    assert result.status == status
    if detail is None:
        assert (result.detail, result.found) == (None, ())
    else:
        assert str(result.detail).startswith(detail)
        assert result.found


@pytest.mark.parametrize(
    ("domain", "status", "detail"),
    [
        ("spfnone.test", "wrong", "The SPF record lets no host send"),
        ("spfsoft.test", "wrong", "The SPF record lets no host send"),
        ("spfevery.test", "wrong", "The SPF record lets every host send (+all)."),
        ("spfredirect.test", "ok", None),
        ("spfip.test", "ok", None),
        ("spfv2.test", "missing", None),  # "v=spf10" is not an SPF record (RFC 7208 section 4.5)
    ],
)
def test_what_makes_an_spf_record_right(
    tmp_path: Path, tls_files: tuple[Path, Path], dns_port: int, domain: str, status: str, detail: str | None
) -> None:
    result = check(make_config(tmp_path, tls_files), domain, dns_port)[("TXT", "")]
    assert result.status == status
    if detail is None:
        assert result.detail is None
    else:
        assert str(result.detail).startswith(detail)


@pytest.mark.parametrize(
    ("domain", "status", "detail"),
    [
        (
            "twodmarc.test",
            "wrong",
            "Several DMARC records: receivers apply none of them (RFC 7489 section 6.6.3).",
        ),
        ("notdmarc.test", "missing", None),
        ("badpolicy.test", "wrong", "The DMARC record has no p= tag of none, quarantine or reject."),
    ],
)
def test_what_makes_a_dmarc_record_right(
    tmp_path: Path, tls_files: tuple[Path, Path], dns_port: int, domain: str, status: str, detail: str | None
) -> None:
    result = check(make_config(tmp_path, tls_files), domain, dns_port)[("TXT", "_dmarc.")]
    assert (result.status, str(result.detail) if result.detail else None) == (status, detail)


def test_a_null_mx_is_wrong(tmp_path: Path, tls_files: tuple[Path, Path], dns_port: int) -> None:
    result = check(make_config(tmp_path, tls_files), "nullmx.test", dns_port)[("MX", "")]
    assert (result.status, result.found) == ("wrong", ("0 .",))
    assert "RFC 7505" in str(result.detail)


def test_a_service_not_offered_is_right_only_with_the_root_target(
    tmp_path: Path, tls_files: tuple[Path, Path], dns_port: int
) -> None:
    config = make_config(
        tmp_path, tls_files, "[listeners.pop3]\nenabled = false\n[listeners.pop3s]\nenabled = false\n"
    )
    checks = check(config, "nopop.test", dns_port)
    assert checks[("SRV", "_pop3s._tcp.")].status == "ok"
    assert checks[("SRV", "_pop3._tcp.")].status == "wrong"
    assert (
        str(checks[("SRV", "_pop3._tcp.")].detail)
        == "Points at a server, but this service does not run here."
    )


def test_servfail_is_an_error_with_the_reason(
    tmp_path: Path, tls_files: tuple[Path, Path], dns_port: int
) -> None:
    checks = check(make_config(tmp_path, tls_files), "servfail.test", dns_port)
    assert statuses(checks) == {key: "error" for key in checks}
    assert all("no nameserver answered" in str(c.detail) for c in checks.values())


def test_a_resolver_that_never_answers_is_an_error_not_a_missing_record(
    tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        config = make_config(tmp_path, tls_files)
        never = DnsResolver(["127.0.0.1"], port=silent.getsockname()[1], timeout=0.2, lifetime=0.5)
        # every lookup at once: the whole check takes one lifetime, well inside the bound
        checks = run_bounded(check_records(expected_records(config, "good.test"), never), timeout=5)
    finally:
        silent.close()
    assert {c.status for c in checks} == {"error"}
    assert all("timed out" in str(c.detail) for c in checks)


# -- DKIM (docs/decisions/0056) ------------------------------------------------------------------------------

NOW = 1_800_000_000.0


def dkim_key(selector: str, public: str, algorithm: str = "ed25519", state: str = "active") -> DkimKey:
    return DkimKey(0, "dkim.test", selector, algorithm, public, "PRIVATE", state, NOW, NOW)


def test_the_keys_that_are_published_come_after_dmarc_with_what_each_is_for(
    tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    keys = [
        dkim_key("old", "OLD", state="retiring"),
        dkim_key("gone", "GONE", state="removed"),
        dkim_key("r1", "A" * 392, "rsa"),
        dkim_key("e1", "EEEE"),
        dkim_key("next", "NEXT", state="pending"),
        DkimKey(0, "other.test", "x", "rsa", "X", "P", "active", NOW, NOW),  # another domain's
    ]
    records = expected_records(make_config(tmp_path, tls_files), "dkim.test", dkim=keys)
    dkim = [r for r in records if r.kind == "dkim"]
    assert records[3:6] == dkim[:3]  # after MX, SPF and DMARC
    assert [(r.name, r.type, r.value) for r in dkim] == [
        ("old._domainkey.dkim.test.", "TXT", "v=DKIM1; k=ed25519; p=OLD"),
        ("r1._domainkey.dkim.test.", "TXT", "v=DKIM1; k=rsa; p=" + "A" * 392),
        ("e1._domainkey.dkim.test.", "TXT", "v=DKIM1; k=ed25519; p=EEEE"),
        ("next._domainkey.dkim.test.", "TXT", "v=DKIM1; k=ed25519; p=NEXT"),
    ]
    # NOW + the queue's 5 days + 2 days of margin
    assert str(dkim[0].purpose) == (
        "DKIM: a retired Ed25519 key; keep it for mail still on its way until 2027-01-22."
    )
    assert str(dkim[1].purpose) == "DKIM: the RSA key that signs the domain's mail now (RFC 6376)."
    assert (
        str(dkim[3].purpose)
        == "DKIM: a new Ed25519 key, not signing until postoffice dkim activate dkim.test."
    )
    # a value longer than a DNS character-string is written as several (RFC 1035 section 3.3)
    assert dkim[1].published == '"v=DKIM1; k=rsa; p=' + "A" * 237 + '" "' + "A" * 155 + '"'
    assert dkim[2].published == '"v=DKIM1; k=ed25519; p=EEEE"'


@pytest.mark.parametrize(
    ("selector", "key", "status", "detail"),
    [
        ("r1", ("rsa", "A" * 392), "ok", None),  # two strings, joined
        ("e1", ("ed25519", "EEEE"), "ok", None),
        ("e7", ("ed25519", "EEEE"), "ok", None),
        ("e2", ("ed25519", "EEEE"), "wrong", "Another public key is published at this name."),
        ("e3", ("ed25519", "EEEE"), "wrong", "The published key is revoked (an empty p=)."),
        ("e4", ("ed25519", "EEEE"), "wrong", "The record is for a key of type rsa, not ed25519."),
        ("e5", ("ed25519", "EEEE"), "wrong", "Several DKIM key records at this name: receivers may use any"),
        ("e6", ("ed25519", "EEEE"), "missing", None),
        ("e9", ("ed25519", "EEEE"), "missing", None),
    ],
)
def test_what_makes_a_dkim_record_right(
    tmp_path: Path,
    tls_files: tuple[Path, Path],
    dns_port: int,
    selector: str,
    key: tuple[str, str],
    status: str,
    detail: str | None,
) -> None:
    config = make_config(tmp_path, tls_files)
    records = [r for r in expected_records(config, "dkim.test", dkim=[dkim_key(selector, key[1], key[0])])]
    (dkim,) = [r for r in records if r.kind == "dkim"]
    (result,) = run_bounded(check_records([dkim], resolver(dns_port)))
    assert result.status == status
    if detail is None:
        assert result.detail is None
    else:
        assert str(result.detail).startswith(detail)
    if status == "wrong":
        assert result.found
