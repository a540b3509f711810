"""Bugs a review found in the Sieve delivery stage (src/postoffice/sieve/stage.py), through real SMTP into the
real store: hostile subjects and script fields never block delivery, message ids stay msg-ids, one copy per
mailbox however it is named, UTF-8 addresses written as UTF-8, and redirects that come round are kept."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.delivery.pipeline import DeliveryPipeline
from postoffice.delivery.plan import DeliveryPlan, Message
from postoffice.sieve.stage import SieveStage
from tests.delivery.harness import DEMO, HOSTNAME, OTHER, FunctionStage, Harness, message
from tests.sieve.test_sieve_delivery import SENDER, activate, send, subjects, vacation_reply


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    harness.pipeline = DeliveryPipeline(
        harness.store, [SieveStage(harness.store, HOSTNAME)], hostname=HOSTNAME
    )
    yield harness
    harness.stop()


def raw_message(subject_field: bytes, *, message_id: bytes = b"<m1@remote.example>") -> bytes:
    return (
        b"From: "
        + SENDER.encode()
        + b"\r\nTo: "
        + DEMO.encode()
        + b"\r\n"
        + subject_field
        + b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: "
        + message_id
        + b"\r\n\r\nbody\r\n"
    )


def test_encoded_subject_with_crlf_does_not_fail_the_delivery_of_a_vacation_user(h: Harness) -> None:
    # Anyone can send this: the decoded Subject holds CR LF, "Auto: " + it is put into a header of the reply,
    # email raises ValueError, the stage fails and the whole delivery is answered 451 (for every recipient),
    # again on every retry: the message is never delivered.
    activate(h, DEMO, 'require "vacation"; vacation "away";')
    raw = raw_message(b"Subject: =?utf-8?q?hi=0D=0ABcc:_victim@else.example?=\r\n")
    send(h, raw, to=(DEMO, OTHER))  # raises SMTPDataError 451 today
    assert len(subjects(h, DEMO)) == 1
    assert len(subjects(h, OTHER)) == 1


def test_a_vacation_subject_with_a_line_break_keeps_the_message(h: Harness) -> None:
    # The script compiles (PUTSCRIPT accepts it), but the reply cannot be made: decision 0082 says a failing
    # script never loses mail (implicit keep + notice); today every message to the account gets 451.
    activate(h, DEMO, 'require "vacation"; vacation :subject "Away\r\nuntil Monday" "away";')
    with smtplib.SMTP("127.0.0.1", h.smtp("mx")) as smtp:
        refused = smtp.sendmail(SENDER, [DEMO], message("hello"))
    assert refused == {}
    assert "hello" in subjects(h, DEMO)


def test_vacation_in_reply_to_keeps_a_long_message_id_as_a_msg_id(h: Harness) -> None:
    # RFC 5230 section 5.8 / RFC 5322 section 3.6.4: In-Reply-To and References hold the original msg-id.
    # An 80-octet Message-ID (ordinary for Outlook/Exchange) is written as RFC 2047 encoded-words instead.
    activate(h, DEMO, 'require "vacation"; vacation "away";')
    mid = "<AM6PR07MB5590A1B2C3D4E5F6A7B8C9D0E1F2A3B4@AM6PR07MB5590.eurprd07.prod.outlook.com>"
    send(h, raw_message(b"Subject: hi\r\n", message_id=mid.encode()))
    ((entry, reply),) = vacation_reply(h)
    assert str(reply["In-Reply-To"]).strip() == mid
    head = h.call(h.store.queue_read(entry.id)).partition(b"\r\n\r\n")[0]
    assert b"=?" not in head, head.decode()  # as stored, not as the test's parser writes it again


def test_keep_and_fileinto_of_the_same_junk_mailbox_store_one_copy(tmp_path: Path) -> None:
    # RFC 5228 section 2.10.3 and decision 0082 ("each mailbox once"): an earlier stage left the copy in
    # Junk by special use; the script's fileinto "Junk" names the same mailbox by name, and two copies go
    # into Junk (_place tells ("Junk", "\\Junk") and ("Junk", None) apart).
    def junk(message: Message, plan: DeliveryPlan) -> None:
        for recipient in plan.recipients:
            recipient.file_into("Junk", special_use="\\Junk")

    harness = Harness(tmp_path)
    try:
        harness.pipeline = DeliveryPipeline(
            harness.store,
            [FunctionStage("spam", junk), SieveStage(harness.store, HOSTNAME)],
            hostname=HOSTNAME,
        )
        activate(harness, DEMO, 'require ["fileinto", "copy"]; fileinto :copy "Junk";')
        send(harness, message("spammy"))
        assert subjects(harness, DEMO, "Junk") == ["spammy"]
    finally:
        harness.stop()


def test_vacation_to_an_smtputf8_sender_names_it_in_to(h: Harness) -> None:
    # The reply is queued as SMTPUTF8 (smtputf8=True) but written with policy SMTP (utf8=False): the sender's
    # non-ASCII local part becomes "=?utf-8?q?j=C3=B6rg?=@..." in To:, an encoded-word inside an addr-spec,
    # which RFC 2047 section 5 forbids (RFC 6532: the header carries UTF-8 as is).
    activate(h, DEMO, 'require "vacation"; vacation "away";')
    sender = "jörg@sender.example"
    raw = (
        f"From: {sender}\r\nTo: {DEMO}\r\nSubject: hi\r\nMessage-ID: <u8@sender.example>\r\n\r\nbody\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", h.smtp("mx")) as smtp:
        smtp.sendmail(sender, [DEMO], raw, mail_options=["SMTPUTF8"])
    ((entry, _reply),) = vacation_reply(h)
    assert [r.address for r in entry.recipients] == [sender]
    data = h.call(h.store.queue_read(entry.id))
    assert b"=?utf-8?" not in data.split(b"\r\n\r\n")[0], data.split(b"\r\n\r\n")[0].decode()


def test_redirects_between_two_local_accounts_do_not_loop_forever(h: Harness) -> None:
    # RFC 5228 section 4.2 (loop control) / decision 0059's MAX_HOPS: each redirect to a local address is
    # queued as a forward whose bytes are the message as first received, and the queue's local delivery adds
    # no Received field, so the hop count never grows: the message goes round DEMO -> OTHER -> DEMO ...
    # once per queue pass, forever (a new queue entry every time), and is never stored nor bounced.
    activate(h, DEMO, f'redirect "{OTHER}";')
    activate(h, OTHER, f'redirect "{DEMO}";')
    send(h, message("ping-pong"))
    for _ in range(60):  # MAX_HOPS is 50
        if not h.call(h.store.queue_list()):
            break
        h.run_queue()
    assert h.call(h.store.queue_list()) == []
