"""The delivery pipeline (postoffice.delivery, docs/decisions/0040) with real stages, a real store and real
SMTP sessions: what a stage does for one recipient only (folder, keyword, header field, rejection), that
every path that adds mail goes through it (port 25, submission, relaying, the queue's local deliveries),
atomicity (a failing stage or a failing commit leaves nothing), and the empty chain."""

from __future__ import annotations

import io
import smtplib
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path

import pytest

from postoffice.delivery.pipeline import DeliveryError, DeliveryPipeline
from postoffice.delivery.plan import (
    DeliveryPlan,
    Envelope,
    Message,
    Origin,
    Recipient,
    RecipientPlan,
    Refusal,
)
from postoffice.delivery.stages import STAGES, StageRegistration, build_stages
from postoffice.message import parse_message
from postoffice.store import OutboundMessage, OutboundRecipient, StoreError
from tests.delivery.harness import (
    DEMO,
    HOSTNAME,
    OTHER,
    PASSWORD,
    THIRD,
    FunctionStage,
    MakeHarness,
    as_message,
    message,
)

REFUSED = Refusal(550, "5.7.1", "Rejected by the recipient's filter: go away", "sieve")


class _NoChecks:
    """The part of a Config the registered stages read, with every stage switched off."""

    class mailauth:  # the attribute name of Config
        verify = False
        sign = False
        read_reports = False

    class sieve:
        enabled = False

    class spam:
        rspamd_url = ""
        builtin_filter = False
        dnsbl_zones = ()


NO_CHECKS = _NoChecks()


def only(account_id: int, action: Callable[[RecipientPlan], object]) -> FunctionStage:
    """A stage that applies `action(recipient_plan)` to one account's copy."""

    def fn(message: Message, plan: DeliveryPlan) -> None:
        recipient = plan.account(account_id)
        if recipient is not None:
            action(recipient)

    return FunctionStage("only", fn)


def test_a_stage_files_one_recipient_into_a_folder_with_a_keyword_and_a_header_field_of_its_own(
    make: MakeHarness,
) -> None:
    h = make()
    other = h.ids[OTHER]
    h.call(h.store.create_mailbox(other, "Lists/dev"))

    def filed(recipient: RecipientPlan) -> None:
        recipient.file_into("Lists/dev")
        recipient.add_flags(["$Filed", "\\Flagged"])
        recipient.prepend_header("X-Filed", "by a test\r\n\tstage")

    h.pipeline.stages = (only(other, filed),)
    port = h.smtp("mx")
    raw = message("filed")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        assert client.sendmail("someone@remote.example", [DEMO, OTHER, THIRD], raw) == {}
    (to_demo,) = h.messages(DEMO)
    (to_third,) = h.messages(THIRD)
    assert h.messages(OTHER) == []
    (to_other,) = h.messages(OTHER, "Lists/dev")
    assert to_demo.content_id == to_third.content_id != to_other.content_id  # one content per text
    assert not to_demo.flags
    assert to_other.flags == {"$Filed", "\\Flagged"}
    shared, own = h.content(to_demo), h.content(to_other)
    assert own == b"X-Filed: by a test\r\n\tstage\r\n" + shared
    assert shared.endswith(raw)
    assert b"X-Filed" not in shared
    assert to_other.size == len(own)
    assert message_from_bytes(own)["X-Filed"] == "by a test\r\n\tstage"
    parsed = h.call(h.store.get_parsed(to_other.content_id))
    assert parsed.size == len(own)
    assert parsed.subject == "filed"


def test_the_header_field_of_one_recipient_is_what_imap_fetch_serves_for_that_copy(tmp_path: Path) -> None:
    """FETCH reads the copy's own text: RFC822.SIZE, the header (with the field on top), the body at its
    offset (BODY[TEXT], BODYSTRUCTURE's sizes come from the text's own parse)."""
    from postoffice.imap.settings import ImapSettings
    from tests.imap.transcript import DEMO as IMAP_DEMO
    from tests.imap.transcript import OTHER as IMAP_OTHER
    from tests.imap.transcript import ImapHarness

    imap = ImapHarness(tmp_path, ImapSettings(hostname="localhost", spool_dir=tmp_path))
    try:
        demo, other = imap.account_ids[IMAP_DEMO], imap.account_ids[IMAP_OTHER]

        def headed(recipient: RecipientPlan) -> None:
            recipient.prepend_header("Authentication-Results", f"{HOSTNAME}; spf=pass")

        pipeline = DeliveryPipeline(imap.store, [only(demo, headed)], hostname=HOSTNAME)
        raw = message("fetched", to=IMAP_DEMO)
        imap.call(
            pipeline.deliver(
                as_message(raw),
                Envelope("someone@remote.example"),
                [Recipient(IMAP_DEMO, (demo,)), Recipient(IMAP_OTHER, (other,))],
                Origin("mx"),
            )
        )
        field = f"Authentication-Results: {HOSTNAME}; spf=pass\r\n".encode()
        for user, expected in ((IMAP_DEMO, field + raw), (IMAP_OTHER, raw)):
            client = imap.imaps(user)
            client.select("INBOX")
            typ, data = client.fetch("1", "(RFC822.SIZE BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[])")
            assert typ == "OK"
            parts = {item[0].split(b" ")[-2]: item[1] for item in data if isinstance(item, tuple)}
            assert parts[b"BODY[]"] == expected
            assert parts[b"BODY[HEADER]"] == expected[: expected.index(b"\r\n\r\n") + 4]
            assert parts[b"BODY[TEXT]"] == b"body of fetched\r\n"
            first = data[0]
            assert isinstance(first, tuple)
            assert f"RFC822.SIZE {len(expected)}".encode() in first[0]
            client.logout()
    finally:
        imap.stop()


def test_a_stage_rejects_one_recipient_the_others_get_the_message_and_the_sender_a_dsn(
    make: MakeHarness,
) -> None:
    """After DATA there is one reply: accepted (the others are delivered) and a DSN for the refused recipient,
    queued in the same transaction (decision 0040, as Postfix does)."""
    h = make()
    h.pipeline.stages = (only(h.ids[OTHER], lambda r: r.reject(REFUSED)),)
    port = h.smtp("mx")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        assert client.sendmail("someone@remote.example", [DEMO, OTHER], message("half")) == {}
    assert len(h.messages(DEMO)) == 1
    assert h.messages(OTHER) == []
    (dsn,) = h.call(h.store.queue_list())
    assert dsn.sender == ""
    assert [r.address for r in dsn.recipients] == ["someone@remote.example"]
    report = h.call(h.store.queue_read(dsn.id))
    assert b"Final-Recipient: rfc822; other@example.test" in report
    assert b"Action: failed" in report
    assert b"Status: 5.7.1" in report
    assert b"Rejected by the recipient's filter: go away" in report
    assert b"Subject: half" in report  # the original's header (RET=HDRS by default)


def test_when_every_recipient_is_refused_the_reply_is_the_refusal_and_nothing_is_stored(
    make: MakeHarness,
) -> None:
    h = make()

    def reject_all(message: Message, plan: DeliveryPlan) -> None:
        for recipient in plan.recipients:
            recipient.reject(REFUSED)

    h.pipeline.stages = (FunctionStage("reject all", reject_all),)
    port = h.smtp("mx")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail("someone@remote.example")
        client.rcpt(DEMO)
        client.rcpt(OTHER)
        assert client.data(message("nobody")) == (550, b"5.7.1 Rejected by the recipient's filter: go away")
    assert h.messages(DEMO) == []
    assert h.messages(OTHER) == []
    assert h.call(h.store.queue_list()) == []  # the client was told: no DSN


def test_a_temporary_refusal_of_one_recipient_defers_the_whole_message(make: MakeHarness) -> None:
    """Nothing is stored, so the client's retry cannot give the others a second copy."""
    h = make()
    full = Refusal(452, "4.2.2", "Mailbox full, try again later", "quota")
    h.pipeline.stages = (only(h.ids[OTHER], lambda r: r.reject(full)),)
    port = h.smtp("mx")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail("someone@remote.example")
        client.rcpt(DEMO)
        client.rcpt(OTHER)
        assert client.data(message("later")) == (452, b"4.2.2 Mailbox full, try again later")
    assert h.messages(DEMO) == []
    assert h.messages(OTHER) == []
    assert h.call(h.store.queue_list()) == []


def test_a_discarded_copy_is_accepted_silently(make: MakeHarness) -> None:
    h = make()
    h.pipeline.stages = (only(h.ids[DEMO], lambda r: r.discard()),)
    port = h.smtp("mx")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        assert client.sendmail("someone@remote.example", [DEMO], message("gone")) == {}
    assert h.messages(DEMO) == []
    assert h.call(h.store.queue_list()) == []


def test_a_failing_stage_fails_the_whole_delivery_and_stores_nothing(make: MakeHarness) -> None:
    h = make()

    def broken(message: Message, plan: DeliveryPlan) -> None:
        plan.recipients[0].add_flags(["$Half"])
        raise RuntimeError("spam scorer unreachable")

    h.pipeline.stages = (broken_stage := FunctionStage("spam", broken),)
    port = h.smtp("mx")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail("someone@remote.example")
        client.rcpt(DEMO)
        code, text = client.data(message("broken"))
        assert code == 451
        assert text.startswith(b"4.3.0")
        assert client.noop()[0] == 250  # the session goes on
    assert broken_stage.calls
    assert h.messages(DEMO) == []
    with pytest.raises(DeliveryError, match="stage spam failed"):
        h.call(
            h.pipeline.deliver(
                as_message(message("direct")),
                Envelope("a@remote.example"),
                [Recipient(DEMO, (h.ids[DEMO],))],
                Origin("mx"),
            )
        )
    assert h.messages(DEMO) == []


def test_a_commit_that_fails_leaves_neither_the_copies_nor_the_queue_entry(make: MakeHarness) -> None:
    """A real store error in the one transaction (the account removed between planning and commit): the
    other recipient's copy and the queued message for the remote recipient are rolled back with it."""
    h = make()
    third = h.ids[THIRD]

    class RemoveThird:
        name = "race"

        async def run(self, message: Message, plan: DeliveryPlan) -> None:
            await h.store.remove_account(THIRD)

    h.pipeline.stages = (RemoveThird(),)
    with pytest.raises(StoreError):
        h.call(
            h.pipeline.deliver(
                as_message(message("atomic", sender=DEMO)),
                Envelope(DEMO),
                [
                    Recipient(OTHER, (h.ids[OTHER],)),
                    Recipient(THIRD, (third,)),
                    Recipient("x@remote.example"),
                ],
                Origin("submission"),
            )
        )
    assert h.messages(OTHER) == []
    assert h.call(h.store.queue_list()) == []


@pytest.mark.parametrize("kind", ["mx", "submission", "relay", "queue"])
def test_every_path_that_adds_mail_goes_through_the_stages(make: MakeHarness, kind: str) -> None:
    """Port 25, submission (local copy and the queue entry in one commit), relaying for relay_networks,
    and the queue's local deliveries all run the chain and commit what it planned."""
    h = make()
    stage = only(h.ids[OTHER], lambda r: r.add_flags(["$Staged"]))
    h.pipeline.stages = (stage,)
    sender = DEMO if kind == "submission" else "someone@remote.example"
    raw = message(f"via {kind}", sender=sender, to=OTHER)
    if kind == "queue":
        out = OutboundMessage(sender, [OutboundRecipient(OTHER)])
        h.call(h.store.enqueue(raw, len(raw), out))
        h.run_queue()
        assert h.call(h.store.queue_list()) == []  # delivered and recorded together
    else:
        port = h.smtp(
            "submission" if kind == "submission" else "mx",
            relay_networks=("127.0.0.0/8",) * (kind == "relay"),
        )
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            if kind == "submission":
                client.login(DEMO, PASSWORD)
            recipients = [OTHER] if kind == "mx" else [OTHER, "x@remote.example"]
            assert client.sendmail(sender, recipients, raw) == {}
        if kind != "mx":
            (queued,) = h.call(h.store.queue_list())
            assert [r.address for r in queued.recipients] == ["x@remote.example"]
    (copy,) = h.messages(OTHER)
    assert copy.flags == {"$Staged"}
    assert h.content(copy).endswith(raw)
    assert [o.kind for o in stage.calls] == [kind]


def test_a_queued_message_refused_by_a_stage_fails_that_recipient_with_a_dsn(make: MakeHarness) -> None:
    h = make()
    h.pipeline.stages = (only(h.ids[OTHER], lambda r: r.reject(REFUSED)),)
    raw = message("queued", sender=DEMO)
    h.call(
        h.store.enqueue(
            raw, len(raw), OutboundMessage(DEMO, [OutboundRecipient(OTHER), OutboundRecipient(THIRD)])
        )
    )
    h.run_queue()
    assert h.messages(OTHER) == []
    assert len(h.messages(THIRD)) == 1
    (dsn,) = h.call(h.store.queue_list())  # the original is gone (all final), its DSN is queued
    assert dsn.sender == ""
    assert [r.address for r in dsn.recipients] == [DEMO]
    report = h.call(h.store.queue_read(dsn.id))
    assert b"Final-Recipient: rfc822; other@example.test" in report
    assert b"go away" in report


def test_a_queued_message_refused_temporarily_stays_pending_and_nothing_is_stored(
    make: MakeHarness,
) -> None:
    h = make()
    full = Refusal(452, "4.2.2", "Mailbox full", "quota")
    h.pipeline.stages = (only(h.ids[OTHER], lambda r: r.reject(full)),)
    raw = message("later", sender=DEMO)
    queue_id = h.call(
        h.store.enqueue(
            raw, len(raw), OutboundMessage(DEMO, [OutboundRecipient(OTHER), OutboundRecipient(THIRD)])
        )
    )
    h.run_queue()
    assert h.messages(OTHER) == []
    assert h.messages(THIRD) == []
    queued = h.call(h.store.queue_get(queue_id))
    assert queued is not None
    assert [(r.status, r.attempts, r.last_code) for r in queued.recipients] == [("pending", 1, 452)] * 2


def test_the_empty_chain_delivers_the_message_as_received_once_per_account(make: MakeHarness) -> None:
    h = make()
    assert [registration.name for registration in STAGES] == [
        "authentication",
        "report-intake",
        "dkim-signing",
        "spam",
        "sieve",
    ]
    assert build_stages(NO_CHECKS, h.store) == ()  # every stage switched off: all left out
    assert h.pipeline.stages == ()
    raw = message("plain")
    outcome = h.call(
        h.pipeline.deliver(
            as_message(raw),
            Envelope("a@remote.example"),
            [Recipient(DEMO, (h.ids[DEMO],)), Recipient("alias", (h.ids[DEMO], h.ids[OTHER]))],
            Origin("mx"),
        )
    )
    assert outcome.refusal is None
    assert outcome.queue_id is None
    assert outcome.reported == 0
    assert [c.account_id for c in outcome.copies] == [h.ids[DEMO], h.ids[OTHER]]
    (a,), (b,) = h.messages(DEMO), h.messages(OTHER)
    assert h.content(a) == h.content(b) == raw
    assert a.content_id == b.content_id
    assert not a.flags


def test_the_chain_is_the_registry_in_order_without_the_stages_switched_off(make: MakeHarness) -> None:
    h = make()
    first, third = FunctionStage("first", lambda m, p: None), FunctionStage("third", lambda m, p: None)
    registry = [
        StageRegistration("first", lambda config, store: first),
        StageRegistration("off", lambda config, store: None),
        StageRegistration("third", lambda config, store: third if config == "on" else None),
    ]
    assert build_stages("on", h.store, registry) == (first, third)
    assert build_stages("off", h.store, registry) == (first,)


def test_stages_run_in_order_and_a_later_one_sees_what_an_earlier_one_planned(make: MakeHarness) -> None:
    h = make()
    seen: list[str] = []

    def spam(message: Message, plan: DeliveryPlan) -> None:
        for r in plan.recipients:
            r.prepend_header("X-Spam", "yes")
            r.file_into("Junk", special_use="\\Junk")

    def sieve(message: Message, plan: DeliveryPlan) -> None:
        seen.extend(f"{r.special_use}:{r.header_fields[0]!r}" for r in plan.recipients)
        plan.recipients[0].prepend_header("X-Sieve", "kept")
        plan.recipients[0].file_into("INBOX")

    h.pipeline.stages = (FunctionStage("spam", spam), FunctionStage("sieve", sieve))
    raw = message("ordered")
    h.call(
        h.pipeline.deliver(
            as_message(raw),
            Envelope("a@remote.example"),
            [Recipient(DEMO, (h.ids[DEMO],)), Recipient(OTHER, (h.ids[OTHER],))],
            Origin("mx"),
        )
    )
    assert seen == ["\\Junk:b'X-Spam: yes\\r\\n'"] * 2
    (inbox,) = h.messages(DEMO)
    (junk,) = h.messages(OTHER, "Junk")
    assert h.content(inbox) == b"X-Sieve: kept\r\nX-Spam: yes\r\n" + raw  # each field on top of the last
    assert h.content(junk) == b"X-Spam: yes\r\n" + raw
    parsed = parse_message(io.BytesIO(h.content(inbox)))
    assert parsed.subject == "ordered"


def test_the_submission_policy_applies_to_submission_sessions_only(make: MakeHarness) -> None:
    """The listeners share one policy object; port 25 must not take its recipient limit (or anything)."""
    h = make()
    h.policy.max_recipients = 2
    with smtplib.SMTP("127.0.0.1", h.smtp("mx"), timeout=30) as client:
        assert client.sendmail("someone@remote.example", [DEMO, OTHER, THIRD], message("many")) == {}
    with smtplib.SMTP("127.0.0.1", h.smtp("submission"), timeout=30) as client:
        client.login(DEMO, PASSWORD)
        client.mail(DEMO)
        assert client.rcpt(DEMO)[0] == 250
        assert client.rcpt(OTHER)[0] == 250
        assert client.rcpt(THIRD) == (452, b"4.5.3 Too many recipients for one message")


def test_a_queued_message_whose_stage_fails_stays_pending_with_backoff(make: MakeHarness) -> None:
    h = make()

    def broken(message: Message, plan: DeliveryPlan) -> None:
        raise RuntimeError("spam scorer unreachable")

    h.pipeline.stages = (FunctionStage("spam", broken),)
    raw = message("retry", sender=DEMO)
    queue_id = h.call(h.store.enqueue(raw, len(raw), OutboundMessage(DEMO, [OutboundRecipient(OTHER)])))
    h.run_queue()
    queued = h.call(h.store.queue_get(queue_id))
    assert queued is not None
    assert h.messages(OTHER) == []
    (recipient,) = queued.recipients
    assert (recipient.status, recipient.attempts, recipient.last_code) == ("pending", 1, 451)
    assert recipient.last_attempt is not None
    assert recipient.next_attempt > recipient.last_attempt  # not again at once
