"""ARC (RFC 8617): chains sealed with dkimpy's `arc_sign` by a "mailing list" whose key is on a DNS server on
loopback, validated by `mailauth.arc` through our resolver; and end to end, a real server whose
`[mailauth] trusted_arc_sealers` lets a trusted list's mail through a sender's p=reject (decision 0054)."""

from __future__ import annotations

import base64
import smtplib
import socket
from collections.abc import Iterator

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from postoffice.mailauth.arc import ArcResult, ArcVerifier, verify_chain
from postoffice.mailauth.results import format_results, read_results
from postoffice.net.dns import DnsResolver
from tests.integration.harness import DataDir, ServerProcess, make_data_dir
from tests.mailauth.test_mailauth_server import (
    RECORDS,
    message,
    our_results,
    send,
    signed,
    stored,
    txt,
)
from tests.support.dns_server import DnsServer, Zones
from tests.support.mail import run_bounded
from tests.web.conftest import set_settings

LIST_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
LIST_PEM = LIST_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
)
LIST_PUBLIC = base64.b64encode(
    LIST_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
LIST_RECORD = txt(f"v=DKIM1; k=rsa; p={LIST_PUBLIC}")

ARC_RECORDS = [
    # two mailing lists (one trusted by the server below, one not) and a forwarder, all sealing with one key
    ("lists.example.", "TXT", txt("v=spf1 ip4:127.0.0.1 -all")),
    ("arc._domainkey.lists.example.", "TXT", LIST_RECORD),
    ("other-list.example.", "TXT", txt("v=spf1 ip4:127.0.0.1 -all")),
    ("arc._domainkey.other-list.example.", "TXT", LIST_RECORD),
    ("arc._domainkey.forwarder.example.", "TXT", LIST_RECORD),
]


def seal(raw: bytes, domain: str, arc_result: str = "") -> bytes:
    """`raw` as the list `domain` passes it on: its own Authentication-Results (which dkimpy copies into
    ARC-Authentication-Results; its arc= gives the seal's cv), then a new ARC set above it."""
    stamp = f"Authentication-Results: {domain}; dkim=pass header.d=sender.example; dmarc=pass"
    if arc_result:
        stamp += f"; arc={arc_result}"
    with_results = f"{stamp}\r\n".encode() + raw
    fields = dkim.arc_sign(with_results, b"arc", domain.encode(), LIST_PEM, domain.encode())
    assert fields, "dkimpy sealed nothing"
    return b"".join(fields) + with_results


def through_list(subject: str, domain: str) -> bytes:
    """A message DKIM-signed by sender.example (p=reject), then changed by a list (a subject tag and a
    footer: the signatures break) and sealed by it."""
    original = signed(message("Ann <ann@sender.example>", subject))
    head, body = original.split(b"\r\n\r\n", 1)
    changed = head + b"\r\nList-Id: <talk." + domain.encode() + b">\r\n\r\n" + body + b"-- \r\nthe list\r\n"
    return seal(changed, domain)


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    with DnsServer(Zones(RECORDS + ARC_RECORDS)) as dns_server:
        yield dns_server.port


@pytest.fixture(scope="module")
def resolver(dns_port: int) -> DnsResolver:
    return DnsResolver(["127.0.0.1"], port=dns_port, timeout=1, lifetime=2)


# -- the validator ----------------------------------------------------------------------------------------


def test_a_chain_sealed_by_a_list_passes_with_its_sealer(resolver: DnsResolver) -> None:
    result = verify_chain(through_list("unit pass", "lists.example"), resolver)
    assert result == ArcResult("pass", 1, ("lists.example",), "", oldest_pass=1)
    assert result.newest_sealer == "lists.example"


def test_a_second_sealer_is_the_newest_and_the_chain_still_passes(resolver: DnsResolver) -> None:
    twice = seal(through_list("unit twice", "lists.example"), "forwarder.example", arc_result="pass")
    result = verify_chain(twice, resolver)
    assert (result.result, result.instances) == ("pass", 2)
    assert result.sealers == ("lists.example", "forwarder.example")
    assert result.newest_sealer == "forwarder.example"
    assert result.oldest_pass == 1


def test_a_message_changed_after_sealing_fails(resolver: DnsResolver) -> None:
    sealed = through_list("unit broken", "lists.example")
    result = verify_chain(sealed.replace(b"Hello.", b"Hello, changed."), resolver)
    assert result.result == "fail"
    assert result.sealers == ("lists.example",)
    assert "did not validate" in result.reason
    assert result.oldest_pass == 0


def test_a_seal_that_says_the_chain_failed_ends_it(resolver: DnsResolver) -> None:
    first = through_list("unit cv fail", "lists.example")
    result = verify_chain(seal(first, "forwarder.example", arc_result="fail"), resolver)
    assert result.result == "fail"


def test_a_message_without_arc_fields_is_none(resolver: DnsResolver) -> None:
    assert verify_chain(signed(message("ann@sender.example", "unit none")), resolver) == ArcResult(
        "none", 0, (), ""
    )


def test_a_missing_key_fails_and_rsa_sha1_is_not_accepted(resolver: DnsResolver) -> None:
    unknown = through_list("unit no key", "lists.example").replace(b"d=lists.example", b"d=nokey.example")
    assert verify_chain(unknown, resolver).result == "fail"
    sealed = through_list("unit sha1", "lists.example")
    sha1 = sealed.replace(b"a=rsa-sha256", b"a=rsa-sha1", 1)
    result = verify_chain(sha1, resolver)
    assert (result.result, result.reason) == ("fail", "rsa-sha1 is not accepted (RFC 8301)")


def test_dns_that_does_not_answer_is_a_temporary_error() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        resolver = DnsResolver(["127.0.0.1"], port=silent.getsockname()[1], timeout=0.2, lifetime=0.4)
        result = verify_chain(through_list("unit timeout", "lists.example"), resolver)
    finally:
        silent.close()
    assert result.result == "temperror"
    assert "timed out" in result.reason
    assert result.sealers == ("lists.example",)


def test_the_verifier_runs_in_its_threads_and_skips_unsealed_mail(resolver: DnsResolver) -> None:
    verifier = ArcVerifier(resolver, threads=2)
    try:
        assert run_bounded(verifier.verify(message("a@sender.example", "x"))).result == "none"
        assert run_bounded(verifier.verify(through_list("unit thread", "lists.example"))).result == "pass"
    finally:
        verifier.close()


def test_the_results_field_records_the_chain_as_rfc_8617_section_7_2_says() -> None:
    arc = ArcResult("pass", 2, ("lists.example", "forwarder.example"), "", oldest_pass=1)
    value = format_results(
        "mx.test",
        iprev=None,
        spf=[],
        dkim=[],
        dmarc=("fail", "sender.example", ""),
        arc=arc,
        remote_ip="192.0.2.1",
    )
    assert "arc=pass (sealed by i=1 lists.example, i=2 forwarder.example) smtp.remote-ip=192.0.2.1" in value
    assert "header.oldest-pass=1" in value
    assert read_results(value)["arc"] == "pass"


# -- end to end ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, dns_port: int
) -> Iterator[tuple[DataDir, ServerProcess]]:
    data = make_data_dir(tmp_path_factory.mktemp("arc") / "data")
    set_settings(data, "queue", nameservers=["127.0.0.1"], dns_port=dns_port)
    set_settings(data, "mailauth", verify=True, trusted_arc_sealers=["lists.example"])
    process = ServerProcess(data).start()
    try:
        yield data, process
    finally:
        process.stop()


@pytest.mark.integration
def test_a_trusted_lists_sealed_message_overrides_the_senders_reject_policy(
    server: tuple[DataDir, ServerProcess],
) -> None:
    data, process = server
    send(process, "talk-bounces@lists.example", through_list("trusted list", "lists.example"))
    parsed = stored(data, process, "INBOX", "trusted list")
    (field,) = our_results(parsed)
    results = read_results(field)
    assert (results["dkim"], results["arc"], results["dmarc"]) == ("fail", "pass", "fail")
    assert "sealed by i=1 lists.example" in field
    assert "smtp.remote-ip=127.0.0.1" in field
    assert "policy=reject overridden by local_policy: ARC sealed by trusted lists.example" in field
    assert "disposition=deliver-arc-override" in process.log()
    # the built-in spam verdict scores neither the overridden DMARC failure nor the broken signature
    symbols = str(parsed["X-Spamd-Result"])
    assert "IPREV_FAIL" in symbols
    assert "DMARC_FAIL" not in symbols
    assert "R_DKIM_REJECT" not in symbols


@pytest.mark.integration
def test_an_untrusted_lists_sealed_message_is_refused_by_the_senders_policy(
    server: tuple[DataDir, ServerProcess],
) -> None:
    _, process = server
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(process, "talk-bounces@other-list.example", through_list("untrusted list", "other-list.example"))
    assert refused.value.smtp_code == 550
    assert b"DMARC" in refused.value.smtp_error


@pytest.mark.integration
def test_a_chain_broken_after_sealing_fails_and_the_policy_applies(
    server: tuple[DataDir, ServerProcess],
) -> None:
    _, process = server
    sealed = through_list("broken chain", "lists.example")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(process, "talk-bounces@lists.example", sealed.replace(b"Hello.", b"Hello, changed."))
    assert refused.value.smtp_code == 550
    assert "arc=fail:lists.example" in process.log()


@pytest.mark.integration
def test_a_message_without_arc_fields_records_arc_none(server: tuple[DataDir, ServerProcess]) -> None:
    data, process = server
    send(process, "ann@sender.example", signed(message("Ann <ann@sender.example>", "no arc")))
    (field,) = our_results(stored(data, process, "INBOX", "no arc"))
    assert read_results(field) == {
        "iprev": "fail",
        "spf": "pass",
        "dkim": "pass",
        "arc": "none",
        "dmarc": "pass",
    }
