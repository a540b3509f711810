"""Storage quotas on the delivery paths and the per-account sending limit (docs/decisions/0053), through real
SMTP sessions on real sockets (smtplib), the real store and the queue runner: 452 4.2.2 for a full mailbox
at RCPT and at the end of data, 552 5.2.2 for a message larger than the whole quota, a DSN for a refused
recipient among accepted ones, the server's own DSNs delivered over quota, queued mail kept pending."""

from __future__ import annotations

import io
import smtplib

from postoffice.delivery.submission import SendingLimiter
from postoffice.message import parse_message
from postoffice.store import OutboundMessage, OutboundRecipient
from tests.delivery.harness import DEMO, OTHER, PASSWORD, THIRD, Harness, MakeHarness, message

SENDER = "someone@remote.example"


def fill(h: Harness, address: str, octets: int) -> None:
    """Give the account a message of about `octets` octets."""
    raw = message("filler") + b"x" * octets + b"\r\n"
    h.call(h.store.deliver(io.BytesIO(raw), parse_message(io.BytesIO(raw)), [h.ids[address]]))


def set_quota(h: Harness, address: str, quota: int) -> None:
    h.call(h.store.update_account(address, quota=quota))


def test_a_full_mailbox_is_refused_at_rcpt_and_the_other_recipients_get_the_message(
    make: MakeHarness,
) -> None:
    h = make()
    fill(h, OTHER, 5000)
    set_quota(h, OTHER, 4000)  # lowered below what it keeps: over quota now
    with smtplib.SMTP("127.0.0.1", h.smtp("mx"), timeout=30) as client:
        client.ehlo()
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(DEMO)[0] == 250
        assert client.rcpt(OTHER) == (
            452,
            b"4.2.2 <other@example.test>: Mailbox full: the recipient is over its storage quota",
        )
        assert client.data(message("to both", to=OTHER))[0] == 250
    assert len(h.messages(DEMO)) == 1
    assert len(h.messages(OTHER)) == 1  # only the filler
    assert h.call(h.store.queue_list()) == []  # refused at RCPT: the client keeps it, no DSN from us


def test_a_declared_size_larger_than_the_whole_quota_gets_552_at_rcpt(make: MakeHarness) -> None:
    h = make()
    set_quota(h, OTHER, 10_000)
    with smtplib.SMTP("127.0.0.1", h.smtp("mx"), timeout=30) as client:
        client.ehlo()
        assert client.mail(SENDER, ["SIZE=20000"])[0] == 250
        code, text = client.rcpt(OTHER)
        assert (code, text[:5]) == (552, b"5.2.2")
        assert b"larger than the recipient's storage quota" in text
        assert client.rcpt(DEMO)[0] == 250  # others are not limited
        client.rset()
        assert client.mail(SENDER, ["SIZE=5000"])[0] == 250
        assert client.rcpt(OTHER)[0] == 250  # fits


def test_the_end_of_data_refuses_what_rcpt_could_not_know(make: MakeHarness) -> None:
    """Without SIZE the recipient is accepted at RCPT; the message itself is what counts: 452 4.2.2 when it
    would take the account over its quota, 552 5.2.2 when it is larger than the whole quota. Nothing is
    stored either way."""
    h = make()
    fill(h, OTHER, 3000)
    set_quota(h, OTHER, 6000)
    port = h.smtp("mx")
    for size, expected in ((4000, (452, b"4.2.2")), (7000, (552, b"5.2.2"))):
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo()
            assert client.mail(SENDER)[0] == 250
            assert client.rcpt(OTHER)[0] == 250
            code, text = client.data(message(f"{size} octets", to=OTHER) + b"y" * size + b"\r\n")
            assert (code, text[:5]) == expected
            assert text.endswith(b"storage quota")
    assert len(h.messages(OTHER)) == 1  # only the filler
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:  # a small one still fits
        assert client.sendmail(SENDER, [OTHER], message("small", to=OTHER)) == {}
    assert len(h.messages(OTHER)) == 2


def test_a_message_too_large_for_one_recipient_among_others_is_reported_to_the_sender(
    make: MakeHarness,
) -> None:
    h = make()
    set_quota(h, OTHER, 2000)
    raw = message("big", to=OTHER) + b"z" * 3000 + b"\r\n"
    with smtplib.SMTP("127.0.0.1", h.smtp("mx"), timeout=30) as client:
        client.ehlo()
        assert client.mail(SENDER)[0] == 250  # no SIZE (smtplib's sendmail would declare it: 552 at RCPT)
        assert client.rcpt(DEMO)[0] == 250
        assert client.rcpt(OTHER)[0] == 250
        assert client.data(raw)[0] == 250
    assert len(h.messages(DEMO)) == 1
    assert h.messages(OTHER) == []
    (dsn,) = h.call(h.store.queue_list())
    assert dsn.sender == ""
    assert [r.address for r in dsn.recipients] == [SENDER]
    report = h.call(h.store.queue_read(dsn.id))
    assert b"Final-Recipient: rfc822; other@example.test" in report
    assert b"Status: 5.2.2" in report


def test_the_servers_own_dsn_reaches_a_full_mailbox_but_queued_mail_waits(make: MakeHarness) -> None:
    """A DSN to a local user is delivered over quota (a refusal would lose it: nobody bounces a bounce);
    other queued mail for a full mailbox stays pending with 452 4.2.2 and is tried again later."""
    h = make()
    fill(h, OTHER, 5000)
    set_quota(h, OTHER, 1000)
    report = message("Undelivered Mail Returned to Sender", sender="MAILER-DAEMON@mx.example.test", to=OTHER)
    h.call(h.store.enqueue(report, len(report), OutboundMessage("", [OutboundRecipient(OTHER)])))
    queued = message("queued for a full mailbox", sender=DEMO, to=OTHER)
    queue_id = h.call(h.store.enqueue(queued, len(queued), OutboundMessage(DEMO, [OutboundRecipient(OTHER)])))
    h.run_queue()
    subjects = [parse_message(io.BytesIO(h.content(m))).subject for m in h.messages(OTHER)]
    assert subjects == ["filler", "Undelivered Mail Returned to Sender"]
    waiting = h.call(h.store.queue_get(queue_id))
    assert waiting is not None
    (recipient,) = waiting.recipients
    assert (recipient.status, recipient.last_code, recipient.last_enhanced) == ("pending", 452, "4.2.2")


def test_submission_to_a_full_local_mailbox_is_refused_at_rcpt(make: MakeHarness) -> None:
    h = make()
    fill(h, OTHER, 5000)
    set_quota(h, OTHER, 1000)
    with smtplib.SMTP("127.0.0.1", h.smtp("submission"), timeout=30) as client:
        client.login(DEMO, PASSWORD)
        assert client.mail(DEMO)[0] == 250
        assert client.rcpt(OTHER)[0] == 452
        assert client.rcpt("friend@remote.example")[0] == 250
        assert client.data(message("out", sender=DEMO, to="friend@remote.example"))[0] == 250
    (queued,) = h.call(h.store.queue_list())
    assert [r.address for r in queued.recipients] == ["friend@remote.example"]


def test_an_accounts_own_sending_limit_replaces_the_servers_either_way(make: MakeHarness) -> None:
    """Server limit 1 message per hour; DEMO may send 3 (its own limit), OTHER the server's 1, and THIRD,
    limited to 1 while the server allows 5, only 1."""
    h = make()
    h.policy.limiter = SendingLimiter(1)
    h.call(h.store.update_account(DEMO, send_limit=3))
    h.call(h.store.update_account(THIRD, send_limit=1))
    port = h.smtp("submission")

    def sent(address: str) -> int:
        count = 0
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.login(address, PASSWORD)
            for n in range(6):
                code, text = client.mail(address)
                if code != 250:
                    assert (code, text) == (450, b"4.7.1 Sending limit reached, try again later")
                    return count
                assert client.rcpt(DEMO)[0] == 250
                assert client.data(message(f"n{n}", sender=address))[0] == 250
                count += 1
        return count

    assert sent(DEMO) == 3
    assert sent(OTHER) == 1
    h.policy.limiter = SendingLimiter(5)
    assert sent(THIRD) == 1
    assert sent(OTHER) == 5
