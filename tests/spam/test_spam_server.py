"""The built-in spam checks in the real server (docs/decisions/0089), configured as an administrator would in
`[spam]`: a DNS blocklist and the senders' SPF and DMARC records on a DNS server on loopback, mail over SMTP
from 127.0.0.1 (not listed) and 127.0.0.2 (listed), what was stored read back over IMAP; and greylisting
records that survive a restart of the server."""

from __future__ import annotations

import email
import email.policy
import imaplib
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import DataDir, ServerProcess, make_data_dir
from tests.support.dns_server import DnsServer, Zones
from tests.web.conftest import set_settings

pytestmark = pytest.mark.integration

DEMO = "demo@example.test"
POSTMASTER = "postmaster@example.test"  # `postoffice init` makes it demo's alias

RECORDS = [
    # a domain that asks for quarantine, and one that asks for nothing; neither lets us send its mail
    ("shop.example.", "TXT", '"v=spf1 -all"'),
    ("_dmarc.shop.example.", "TXT", '"v=DMARC1; p=quarantine"'),
    ("news.example.", "TXT", '"v=spf1 -all"'),
    ("_dmarc.news.example.", "TXT", '"v=DMARC1; p=none"'),
    # a sender whose SPF lists the loopback clients
    ("good.example.", "TXT", '"v=spf1 ip4:127.0.0.0/8 -all"'),
    # the blocklist: 127.0.0.2, RFC 5782's test entry
    ("2.0.0.127.bl.test.", "A", "127.0.0.2"),
    ("2.0.0.127.bl.test.", "TXT", '"test entry"'),
    ("bl.test.", "TXT", '"a blocklist"'),
]


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    with DnsServer(Zones(RECORDS)) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, dns_server: DnsServer
) -> Iterator[tuple[DataDir, ServerProcess]]:
    data = make_data_dir(tmp_path_factory.mktemp("spam") / "data")
    set_settings(data, "queue", nameservers=["127.0.0.1"], dns_port=dns_server.port)
    set_settings(data, "mailauth", verify=True)
    set_settings(data, "spam", dnsbl_zones=["bl.test"], dnsbl_exempt=[])
    process = ServerProcess(data).start()
    try:
        yield data, process
    finally:
        process.stop()


def message(sender: str, subject: str, to: str = DEMO) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n\r\nHello.\r\n"
    ).encode()


def send(
    process: ServerProcess, sender: str, subject: str, source: str = "127.0.0.1", to: str = DEMO
) -> None:
    with smtplib.SMTP(
        "127.0.0.1",
        process.port("smtp"),
        local_hostname="client.test",
        source_address=(source, 0),
        timeout=30,
    ) as smtp:
        smtp.sendmail(sender, [to], message(sender, subject, to))


def stored(data: DataDir, process: ServerProcess, subject: str) -> dict[str, email.message.EmailMessage]:
    """The copies of demo's with this subject, by mailbox (INBOX, Junk)."""
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    found: dict[str, email.message.EmailMessage] = {}
    with imaplib.IMAP4_SSL("localhost", process.port("imaps"), ssl_context=context, timeout=30) as imap:
        imap.login(DEMO, data.passwords[DEMO])
        for mailbox in ("INBOX", "Junk"):
            imap.select(mailbox, readonly=True)
            _, numbers = imap.search(None, "SUBJECT", f'"{subject}"')
            for number in numbers[0].split():
                _, parts = imap.fetch(number, "(BODY.PEEK[])")
                raw = parts[0]
                assert isinstance(raw, tuple)
                parsed = email.message_from_bytes(raw[1], policy=email.policy.default)
                assert isinstance(parsed, email.message.EmailMessage)
                assert mailbox not in found, (mailbox, subject)
                found[mailbox] = parsed
    return found


def test_a_dmarc_quarantine_failure_lands_in_junk_with_the_built_in_verdict(
    server: tuple[DataDir, ServerProcess],
) -> None:
    data, process = server
    send(process, "offers@shop.example", "cheap offers")
    copies = stored(data, process, "cheap offers")
    assert list(copies) == ["Junk"]
    junk = copies["Junk"]
    assert junk["X-Spam-Status"] == "Yes, score=7.00 required=6.00"
    symbols = {part.strip(",;") for part in str(junk["X-Spamd-Result"]).split()}
    assert symbols >= {"R_SPF_FAIL(4.00)", "DMARC_FAIL(2.00)", "IPREV_FAIL(1.00)"}


def test_an_spf_failure_the_domain_asks_no_policy_for_goes_to_junk_by_its_score(
    server: tuple[DataDir, ServerProcess],
) -> None:
    data, process = server
    send(process, "letter@news.example", "our newsletter")
    copies = stored(data, process, "our newsletter")
    assert list(copies) == ["Junk"]  # DMARC p=none leaves it to us: SPF fail 4, DMARC fail 2, iprev fail 1
    assert copies["Junk"]["X-Spam-Status"].startswith("Yes, score=7.00")


def test_authenticated_mail_from_a_client_not_listed_reaches_the_inbox(
    server: tuple[DataDir, ServerProcess],
) -> None:
    data, process = server
    send(process, "ann@good.example", "lunch")
    copies = stored(data, process, "lunch")
    assert list(copies) == ["INBOX"]
    assert copies["INBOX"]["X-Spam-Status"] == "No, score=1.00 required=6.00"  # iprev: no PTR on loopback


def test_a_listed_client_is_refused_but_reaches_postmaster(server: tuple[DataDir, ServerProcess]) -> None:
    data, process = server
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(process, "ann@good.example", "from a listed host", source="127.0.0.2")
    code, text = refused.value.recipients[DEMO]
    assert code == 554
    assert text.decode() == (
        f"5.7.1 <{DEMO}>: Service unavailable; client [127.0.0.2] blocked using bl.test; test entry"
    )
    send(process, "ann@good.example", "delisting request", source="127.0.0.2", to=POSTMASTER)
    copies = stored(data, process, "delisting request")
    assert list(copies) == ["INBOX"]
    assert copies["INBOX"]["X-Spam-Status"] == "No, score=4.00 required=6.00"  # RBL 3, iprev 1
    assert "RBL_BL_TEST(3.00)" in str(copies["INBOX"]["X-Spamd-Result"])
    assert stored(data, process, "from a listed host") == {}
    assert "dnsbl bl.test lists 127.0.0.2 (127.0.0.2): test entry" in process.log()


def test_greylisting_records_survive_a_restart(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path / "data")
    # no delay: the first try of a triplet is refused, every retry after it passes, so only the record kept
    # across the restart can let the second try through
    set_settings(data, "spam", greylisting=True, greylist_delay=0, greylist_exempt=[])

    def attempt(process: ServerProcess) -> tuple[int, bytes]:
        with smtplib.SMTP(
            "127.0.0.1", process.port("smtp"), local_hostname="client.test", timeout=30
        ) as smtp:
            smtp.ehlo()
            smtp.mail("ann@remote.example")
            reply = smtp.rcpt(DEMO)
            if reply[0] == 250:
                smtp.data(message("ann@remote.example", "after greylisting"))
            return reply

    process = ServerProcess(data).start()
    try:
        assert attempt(process) == (451, f"4.7.1 <{DEMO}>: Greylisted, try again in 1 second".encode())
    finally:
        assert process.stop() == 0
    process = ServerProcess(data).start()
    try:
        assert attempt(process)[0] == 250
        assert list(stored(data, process, "after greylisting")) == ["INBOX"]
        assert "greylist client=127.0.0.1 from=<ann@remote.example> to=<demo@example.test>: passed" in (
            process.log()
        )
    finally:
        assert process.stop() == 0
