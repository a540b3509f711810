"""Contract: `commit_delivery`, the one write of a whole delivery (`postoffice.delivery` commits every plan
through it; docs/decisions/0040): copies with their own text, mailbox, flags and keywords; texts shared by
the copies that name them and stored once; special-use targets and the INBOX fallback; the queue entry,
generated DSNs and the results of a queued message in the same transaction; all or nothing."""

from __future__ import annotations

import io
import time

import pytest

from postoffice.store import (
    ChangeEvent,
    Delivery,
    GeneratedMessage,
    MailStore,
    MessageText,
    NewCopy,
    NotFound,
    OutboundMessage,
    OutboundRecipient,
    QueueUpdate,
    RecipientResult,
    StoreError,
)
from tests.store.contract.harness import Backend, accounts, covers, inbox_of, message, parse

S = MailStore


def text(raw: bytes) -> MessageText:
    return MessageText(io.BytesIO(raw), parse(raw))


def remote(*addresses: str, sender: str = "demo@example.test") -> OutboundMessage:
    return OutboundMessage(sender, [OutboundRecipient(a) for a in addresses])


@covers(S.commit_delivery, S.list_messages, S.read_content)
def test_each_copy_has_its_own_text_mailbox_flags_and_keywords_and_shared_texts_are_stored_once(
    backend: Backend,
) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other, third = await accounts(store, "demo", "other", "third")
        await store.create_mailbox(demo, "Lists/dev")
        raw = message("shared")
        prefixed = b"X-Spam-Score: 5.1\r\n" + raw
        events: list[ChangeEvent] = []
        for account_id in (demo, other, third):
            store.subscribe(account_id, events.append)
        result = await store.commit_delivery(
            Delivery(
                [text(raw), text(prefixed)],
                [
                    NewCopy(demo, 0, "Lists/dev", flags=("\\Flagged", "$label1")),
                    NewCopy(other, 1, special_use="\\Junk", flags=("Junk",)),
                    NewCopy(third, 0),
                ],
                internaldate=1_700_000_000.0,
            )
        )
        lists = await store.get_mailbox(demo, "Lists/dev")
        junk = await store.get_mailbox(other, "Junk")
        assert lists is not None
        assert junk is not None
        third_inbox = await inbox_of(store, third)
        assert [(c.account_id, c.mailbox_id, c.uid) for c in result.copies] == [
            (demo, lists.id, 1),
            (other, junk.id, 1),
            (third, third_inbox, 1),
        ]
        assert result.queue_id is None
        assert result.recorded is None
        (in_lists,) = await store.list_messages(lists.id)
        (in_junk,) = await store.list_messages(junk.id)
        (in_inbox,) = await store.list_messages(third_inbox)
        assert in_lists.flags == {"\\Flagged", "$label1"}
        assert in_junk.flags == {"Junk"}
        assert not in_inbox.flags
        assert {m.internaldate for m in (in_lists, in_junk, in_inbox)} == {1_700_000_000.0}
        assert await store.read_content(in_lists.content_id) == raw
        assert await store.read_content(in_junk.content_id) == prefixed
        assert (in_lists.size, in_junk.size) == (len(raw), len(prefixed))
        assert in_lists.content_id == in_inbox.content_id != in_junk.content_id  # one content per text
        parsed = await store.get_parsed(in_junk.content_id)
        assert parsed.size == len(prefixed)
        assert parsed.subject == "shared"
        assert [(e.kind, e.account_id, e.uids) for e in events] == [
            ("added", demo, (1,)),
            ("added", other, (1,)),
            ("added", third, (1,)),
        ]

    backend.run(scenario)


@covers(S.commit_delivery)
def test_a_missing_target_falls_back_to_inbox_only_when_the_copy_allows_it(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        await store.delete_mailbox(other, "Junk")
        raw = message("fallback")
        result = await store.commit_delivery(
            Delivery(
                [text(raw)],
                [
                    NewCopy(demo, mailbox="No/such", or_inbox=True),
                    NewCopy(other, special_use="\\Junk", mailbox="Junk", or_inbox=True),
                    NewCopy(demo, mailbox="inbox"),  # INBOX by any case
                ],
            )
        )
        demo_inbox, other_inbox = await inbox_of(store, demo), await inbox_of(store, other)
        assert [(c.mailbox_id, c.uid) for c in result.copies] == [
            (demo_inbox, 1),
            (other_inbox, 1),
            (demo_inbox, 2),
        ]
        with pytest.raises(NotFound):  # strict: the whole delivery fails, the first copy is not kept
            await store.commit_delivery(
                Delivery([text(raw)], [NewCopy(demo), NewCopy(other, mailbox="No/such")])
            )
        assert [m.uid for m in await store.list_messages(demo_inbox)] == [1, 2]
        assert len(await store.list_messages(other_inbox)) == 1

    backend.run(scenario)


@covers(S.commit_delivery, S.queue_get, S.queue_read, S.queue_list)
def test_copies_the_queue_entry_and_generated_messages_commit_together_or_not_at_all(
    backend: Backend,
) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        raw, variant = message("both"), b"X-Extra: 1\r\n" + message("both")
        dsn = GeneratedMessage(b"Subject: report\r\n\r\nreport\r\n", remote("demo@example.test", sender=""))
        sealed = b"ARC-Seal: i=1\r\n" + raw
        forward = GeneratedMessage(sealed, remote("fwd@elsewhere.example", sender="SRS0=h=TT=b.example=a@x"))
        woken: list[bool] = []
        store.subscribe_queue(lambda: woken.append(True))
        result = await store.commit_delivery(
            Delivery(
                [text(raw), text(variant)],
                [NewCopy(demo, 1)],
                remote("x@remote.example"),
                [dsn],
                forwards=[forward],
            )
        )
        assert result.queue_id is not None
        assert woken
        assert await store.queue_read(result.queue_id) == raw  # texts[0] is what leaves
        (stored,) = await store.list_messages(await inbox_of(store, demo))
        assert await store.read_content(stored.content_id) == variant
        queued = await store.queue_list()
        assert [(q.sender, [r.address for r in q.recipients]) for q in queued] == [
            ("demo@example.test", ["x@remote.example"]),
            ("", ["demo@example.test"]),
            ("SRS0=h=TT=b.example=a@x", ["fwd@elsewhere.example"]),  # a forward: its own text and sender
        ]
        assert await store.queue_read(queued[2].id) == sealed
        before = [q.id for q in queued]
        short = message("short", "x" * 5000)
        with pytest.raises(StoreError):  # the second text's source ends early: nothing of it is stored
            await store.commit_delivery(
                Delivery(
                    [text(raw), MessageText(io.BytesIO(short[:-50]), parse(short))],
                    [NewCopy(demo, 0), NewCopy(demo, 1)],
                    remote("y@remote.example"),
                    [dsn],
                    forwards=[forward],
                )
            )
        assert [q.id for q in await store.queue_list()] == before
        assert len(await store.list_messages(await inbox_of(store, demo))) == 1

    backend.run(scenario)


@covers(S.commit_delivery)
def test_a_recorded_result_and_its_copies_commit_together_and_a_final_recipient_refuses_both(
    backend: Backend,
) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        raw = message("bounce for a local user")
        first = await store.enqueue(raw, len(raw), remote("demo@example.test", "gone@example.test"))
        queued = await store.queue_get(first)
        assert queued is not None
        ok, gone = queued.recipients
        now = time.time()
        results = [
            RecipientResult(ok.id, "delivered", 250, "2.0.0", "delivered", attempted_at=now),
            RecipientResult(gone.id, "failed", 550, "5.1.1", "no such user", attempted_at=now),
        ]
        dsn = GeneratedMessage(b"Subject: failed\r\n\r\nx\r\n", remote("demo@example.test", sender=""))
        result = await store.commit_delivery(
            Delivery(
                [text(raw)],
                [NewCopy(demo, flags=("\\Seen",))],
                generated=[dsn],
                record=QueueUpdate(first, results, keep=True),
            )
        )
        assert result.recorded is not None
        assert [r.status for r in result.recorded.recipients] == ["delivered", "failed"]
        assert [m.sender for m in await store.queue_list()] == ["demo@example.test", ""]  # kept, and the DSN
        inbox = await inbox_of(store, demo)
        (copy,) = await store.list_messages(inbox)
        assert copy.flags == {"\\Seen"}
        with pytest.raises(StoreError):  # final already: no second copy, no second DSN
            await store.commit_delivery(
                Delivery(
                    [text(raw)], [NewCopy(demo)], generated=[dsn], record=QueueUpdate(first, results[:1])
                )
            )
        assert len(await store.list_messages(inbox)) == 1
        assert len(await store.queue_list()) == 2
        with pytest.raises(NotFound):
            await store.commit_delivery(
                Delivery([text(raw)], [NewCopy(demo)], record=QueueUpdate(999_999, []))
            )
        assert len(await store.list_messages(inbox)) == 1
        # every recipient final and not kept: the queued message goes in the same transaction
        second = await store.enqueue(raw, len(raw), remote("demo@example.test"))
        again = await store.queue_get(second)
        assert again is not None
        (only,) = again.recipients
        done = await store.commit_delivery(
            Delivery(
                [text(raw)],
                [NewCopy(demo)],
                record=QueueUpdate(second, [RecipientResult(only.id, "delivered")]),
            )
        )
        assert done.recorded is not None
        assert done.recorded.id == second
        assert await store.queue_get(second) is None
        assert len(await store.list_messages(inbox)) == 2

    backend.run(scenario)


@covers(S.commit_delivery)
def test_what_no_backend_may_write_is_refused_before_anything_is_written(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        raw = message()
        with pytest.raises(ValueError, match="text 1"):
            await store.commit_delivery(Delivery([text(raw)], [NewCopy(demo), NewCopy(demo, 1)]))
        with pytest.raises(ValueError, match="null sender"):
            await store.commit_delivery(
                Delivery(
                    [text(raw)], [NewCopy(demo)], generated=[GeneratedMessage(raw, remote("a@b.example"))]
                )
            )
        with pytest.raises(ValueError, match="at least one recipient"):
            await store.commit_delivery(Delivery([text(raw)], [NewCopy(demo)], remote()))
        with pytest.raises(ValueError, match="queue status"):
            await store.commit_delivery(Delivery([], record=QueueUpdate(1, [RecipientResult(1, "bogus")])))
        assert await store.list_messages(await inbox_of(store, demo)) == []
        assert (await store.commit_delivery(Delivery([text(raw)]))).copies == []  # nothing to do
        assert await store.list_messages(await inbox_of(store, demo)) == []

    backend.run(scenario)
