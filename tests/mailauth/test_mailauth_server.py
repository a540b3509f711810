"""Sender authentication end to end (decision 0054): a real server whose resolver is a DNS server on loopback
holding the senders' SPF, DKIM and DMARC records; messages over SMTP on port 25 from 127.0.0.1; what is
stored read back over IMAP."""

from __future__ import annotations

import base64
import email
import email.policy
import imaplib
import smtplib
import ssl
from collections.abc import Iterator

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from postoffice.mailauth.results import read_results
from tests.integration.harness import DataDir, ServerProcess, make_data_dir
from tests.support.dns_server import DnsServer, Zones
from tests.web.conftest import set_settings

pytestmark = pytest.mark.integration

DEMO = "demo@example.test"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = RSA_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
)
ED_KEY = ed25519.Ed25519PrivateKey.generate()
ED_SEED = base64.b64encode(ED_KEY.private_bytes_raw())
ED_PUBLIC = base64.b64encode(ED_KEY.public_key().public_bytes_raw()).decode()


def txt(text: str) -> str:
    return " ".join(f'"{text[i : i + 200]}"' for i in range(0, len(text), 200))


def rsa_record() -> str:
    der = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


RECORDS = [
    # a well-run sender: SPF for the loopback client, RSA and Ed25519 keys, p=reject
    ("sender.example.", "TXT", txt("v=spf1 ip4:127.0.0.1 -all")),
    ("rsa._domainkey.sender.example.", "TXT", txt(rsa_record())),
    ("ed._domainkey.sender.example.", "TXT", txt(f"v=DKIM1; k=ed25519; p={ED_PUBLIC}")),
    ("_dmarc.sender.example.", "TXT", txt("v=DMARC1; p=reject")),
    # a bank whose name is forged: its SPF does not list us, p=reject
    ("bank.example.", "TXT", txt("v=spf1 ip4:192.0.2.1 -all")),
    ("_dmarc.bank.example.", "TXT", txt("v=DMARC1; p=reject")),
    # a domain that asks for quarantine
    ("shop.example.", "TXT", txt("v=spf1 -all")),
    ("_dmarc.shop.example.", "TXT", txt("v=DMARC1; p=quarantine")),
    ("evil.example.", "TXT", txt("v=spf1 +all")),
]
ZONES = Zones(RECORDS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataDir, ServerProcess]]:
    with DnsServer(ZONES) as dns_server:
        data = make_data_dir(tmp_path_factory.mktemp("mailauth") / "data")
        set_settings(data, "queue", nameservers=["127.0.0.1"], dns_port=dns_server.port)
        set_settings(data, "mailauth", verify=True)
        process = ServerProcess(data).start()
        try:
            yield data, process
        finally:
            process.stop()


def message(sender: str, subject: str, extra: str = "") -> bytes:
    return (
        f"{extra}From: {sender}\r\nTo: {DEMO}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n\r\nHello.\r\n"
    ).encode()


def signed(raw: bytes) -> bytes:
    raw = bytes(dkim.sign(raw, b"rsa", b"sender.example", RSA_PEM)) + raw
    return (
        bytes(dkim.sign(raw, b"ed", b"sender.example", ED_SEED, signature_algorithm=b"ed25519-sha256")) + raw
    )


def send(process: ServerProcess, mail_from: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", process.port("smtp"), local_hostname="client.test", timeout=30) as smtp:
        smtp.sendmail(mail_from, [DEMO], raw)


def stored(data: DataDir, process: ServerProcess, mailbox: str, subject: str) -> email.message.EmailMessage:
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    with imaplib.IMAP4_SSL("localhost", process.port("imaps"), ssl_context=context, timeout=30) as imap:
        imap.login(DEMO, data.passwords[DEMO])
        imap.select(mailbox, readonly=True)
        _, found = imap.search(None, "SUBJECT", f'"{subject}"')
        numbers = found[0].split()
        assert len(numbers) == 1, (mailbox, subject, numbers)
        _, parts = imap.fetch(numbers[0], "(BODY.PEEK[])")
    raw = parts[0]
    assert isinstance(raw, tuple)
    parsed = email.message_from_bytes(raw[1], policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def our_results(parsed: email.message.EmailMessage) -> list[str]:
    return [str(v) for v in parsed.get_all("authentication-results", []) if str(v).startswith("localhost;")]


def test_a_sender_that_passes_spf_dkim_and_dmarc_lands_in_the_inbox_with_the_results(
    server: tuple[DataDir, ServerProcess],
) -> None:
    data, process = server
    send(process, "ann@sender.example", signed(message("Ann <ann@sender.example>", "all pass")))
    parsed = stored(data, process, "INBOX", "all pass")
    (field,) = our_results(parsed)
    assert read_results(field) == {
        "iprev": "fail",
        "spf": "pass",
        "dkim": "pass",
        "arc": "none",
        "dmarc": "pass",
    }
    assert "smtp.mailfrom=sender.example" in field
    assert "header.a=ed25519-sha256" in field
    assert "header.a=rsa-sha256" in field
    assert field.count("dkim=pass") == 2
    assert "header.from=sender.example" in field
    assert "authentication id=" in process.log()


def test_a_forged_from_of_a_reject_domain_is_refused_at_the_end_of_data(
    server: tuple[DataDir, ServerProcess],
) -> None:
    _, process = server
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(process, "spoofer@evil.example", message("Bank <security@bank.example>", "your account"))
    assert refused.value.smtp_code == 550
    assert b"5.7.1" in refused.value.smtp_error
    assert b"DMARC" in refused.value.smtp_error


def test_a_quarantine_failure_lands_in_junk(server: tuple[DataDir, ServerProcess]) -> None:
    data, process = server
    send(process, "offers@shop.example", message("Shop <offers@shop.example>", "cheap offers"))
    parsed = stored(data, process, "Junk", "cheap offers")
    (field,) = our_results(parsed)
    assert read_results(field)["dmarc"] == "fail"
    assert read_results(field)["spf"] == "fail"


def test_results_claiming_our_name_are_removed_and_other_servers_are_kept(
    server: tuple[DataDir, ServerProcess],
) -> None:
    data, process = server
    forged = (
        "Authentication-Results: localhost; spf=pass smtp.mailfrom=bank.example; dmarc=pass\r\n"
        "Authentication-Results: other.example; spf=pass smtp.mailfrom=sender.example\r\n"
    )
    send(process, "ann@sender.example", signed(message("ann@sender.example", "forged results", forged)))
    parsed = stored(data, process, "INBOX", "forged results")
    fields = [str(v) for v in parsed.get_all("authentication-results", [])]
    assert len(our_results(parsed)) == 1
    assert read_results(our_results(parsed)[0])["dmarc"] == "pass"
    assert not any("bank.example" in f for f in fields)
    assert any(f.startswith("other.example;") for f in fields)
    assert "forged_results_removed=1" in process.log()


def test_a_helo_name_cannot_add_results(server: tuple[DataDir, ServerProcess]) -> None:
    """A bounce (MAIL FROM:<>) whose EHLO argument is `x;dkim=pass;dmarc=pass`, with a signature that fails:
    the HELO text is no smtp.mailfrom of ours, neither the webmail's reading of our field nor the built-in
    spam verdict sees a DKIM or DMARC pass, and both score the message as the same bounce from a proper
    HELO name."""
    data, process = server
    for helo, subject in (("client.test", "bounce control"), ("x;dkim=pass;dmarc=pass", "bounce injected")):
        raw = message("mailer-daemon@evil.example", subject)
        raw = bytes(dkim.sign(raw, b"rsa", b"evil.example", RSA_PEM)) + raw  # no key published: fails
        with smtplib.SMTP("127.0.0.1", process.port("smtp"), local_hostname=helo, timeout=30) as smtp:
            smtp.sendmail("", [DEMO], raw)
    control = stored(data, process, "INBOX", "bounce control")
    injected = stored(data, process, "INBOX", "bounce injected")
    (field,) = our_results(injected)
    assert "dkim=pass" not in field  # the null sender's identity would be the HELO's: none, not written
    assert "smtp.mailfrom" not in field
    assert (read_results(field)["dkim"], read_results(field)["dmarc"]) == ("permerror", "none")
    for parsed in (control, injected):
        assert "R_DKIM_REJECT" in str(parsed["X-Spamd-Result"])
    assert str(control["X-Spam-Score"]) == str(injected["X-Spam-Score"])


def test_mail_without_a_from_domain_policy_and_several_authors(server: tuple[DataDir, ServerProcess]) -> None:
    data, process = server
    send(process, "x@evil.example", message("x@evil.example", "no dmarc record"))
    parsed = stored(data, process, "INBOX", "no dmarc record")
    assert read_results(our_results(parsed)[0]) == {
        "iprev": "fail",
        "spf": "pass",
        "dkim": "none",
        "arc": "none",
        "dmarc": "none",
    }
    send(process, "x@evil.example", message("security@bank.example, x@evil.example", "two authors"))
    parsed = stored(data, process, "Junk", "two authors")
    assert read_results(our_results(parsed)[0])["dmarc"] == "permerror"


def uid_of(data: DataDir, process: ServerProcess, mailbox: str, subject: str) -> int:
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    with imaplib.IMAP4_SSL("localhost", process.port("imaps"), ssl_context=context, timeout=30) as imap:
        imap.login(DEMO, data.passwords[DEMO])
        imap.select(mailbox, readonly=True)
        _, found = imap.uid("SEARCH", "SUBJECT", f'"{subject}"')
        (uid,) = found[0].split()
        return int(uid)


def test_the_webmail_marks_a_verified_sender_and_warns_on_a_failed_one(
    server: tuple[DataDir, ServerProcess],
) -> None:
    import re

    from tests.web.client import WebClient

    data, process = server
    send(process, "ann@sender.example", signed(message("Ann <ann@sender.example>", "webmail verified")))
    send(process, "offers@shop.example", message("Shop <offers@shop.example>", "webmail suspicious"))
    web = WebClient.of(process, data)
    assert web.login(DEMO, data.passwords[DEMO]).status == 303
    folders = web.get("/").header("location")
    page = web.get(folders).text
    inbox = int(folders.rsplit("/", 1)[1])
    junk_link = re.search(r'href="/box/(\d+)"[^>]*>\s*<span class="folder-icon junk"', page)
    assert junk_link is not None
    verified = web.get(f"/box/{inbox}/{uid_of(data, process, 'INBOX', 'webmail verified')}").text
    assert 'class="badge verified"' in verified
    assert "sender.example, authenticated this message" in verified
    assert "forged-warning" not in verified
    suspicious = web.get(
        f"/box/{junk_link.group(1)}/{uid_of(data, process, 'Junk', 'webmail suspicious')}"
    ).text
    assert "forged-warning" in suspicious
    assert 'class="badge verified"' not in suspicious


def test_a_utf8_from_domain_is_judged_not_taken_for_several_authors(
    server: tuple[DataDir, ServerProcess],
) -> None:
    """RFC 6532 header bytes: the From domain is read as the MIME parser reads it (IDNA), so DMARC looks it up
    and the message is not filed as one with several author domains."""
    data, process = server
    ascii_part = message("ann@example.invalid", "utf8 author").split(b"\r\n", 1)[1]
    send(process, "x@evil.example", "From: Ann <ann@bücher.example>\r\n".encode() + ascii_part)
    parsed = stored(data, process, "INBOX", "utf8 author")  # not Junk
    assert read_results(our_results(parsed)[0])["dmarc"] == "none"  # looked up: no record there
