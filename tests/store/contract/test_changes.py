"""Contract: change notifications (`subscribe`, `subscribe_queue`): every committed change of an account
reaches its subscribers on the event loop, after the commit (a read from the callback sees it), before the
write that made it returns, in commit order; nothing for a write that failed; unsubscribe stops them; one
failing subscriber does not keep the event from the others."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from postoffice.store import (
    ChangeEvent,
    MailStore,
    MetadataLimits,
    NotFound,
    OutboundMessage,
    OutboundRecipient,
)
from tests.store.contract.harness import Backend, accounts, append, covers, deliver, inbox_of, message

S = MailStore


@covers(S.subscribe)
def test_every_change_of_an_account_is_published_in_commit_order(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        events: list[ChangeEvent] = []
        store.subscribe(demo, events.append)
        inbox, archive = await inbox_of(store, demo), await inbox_of(store, demo, "Archive")

        def kinds() -> list[tuple[str, int, tuple[int, ...]]]:
            return [(e.kind, e.mailbox_id, e.uids) for e in events]

        await deliver(store, message("1"), [demo, other])
        assert kinds() == [("added", inbox, (1,))]  # before the write returned; not other's copy
        await append(store, inbox, "2")
        await store.store_flags(inbox, [1, 2], ["\\Seen"], "add")
        await store.store_flags(inbox, [1], ["\\Seen"], "add")  # no change, no event
        await store.copy_messages(inbox, [1], archive, move=True)
        await store.expunge(inbox, [2])
        work = await store.create_mailbox(demo, "Work")
        await store.rename_mailbox(demo, "Work", "Play")
        await store.delete_mailbox(demo, "Play")
        assert kinds() == [
            ("added", inbox, (1,)),
            ("added", inbox, (2,)),
            ("flags", inbox, (1, 2)),
            ("added", archive, (1,)),
            ("expunged", inbox, (1,)),
            ("expunged", inbox, (2,)),
            ("mailbox", work.id, ()),
            ("mailbox", work.id, ()),
            ("mailbox", work.id, ()),
        ]
        assert [e.extra for e in events[-3:]] == [
            {"created": "Work"},
            {"renamed": ("Work", "Play")},
            {"deleted": "Play"},
        ]
        message_events = [e for e in events if e.kind != "mailbox"]
        assert all(e.account_id == demo for e in events)
        assert [e.modseq for e in message_events] == sorted(e.modseq for e in message_events)
        assert len({e.modseq for e in message_events}) == len(message_events)
        count = len(events)
        with pytest.raises(NotFound):
            await store.store_flags(999_999, [1], ["\\Seen"], "add")
        with pytest.raises(NotFound):
            await deliver(store, message(), [demo], mailbox="Nope")
        assert len(events) == count  # a failed write publishes nothing

    backend.run(scenario)


@covers(S.subscribe)
def test_a_subscriber_reading_the_store_sees_the_change_it_is_told_of(backend: Backend) -> None:
    """Published after the commit: another store object (another connection, another process's view)
    already reads the new message when the subscriber runs."""

    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        reader = backend.open()
        seen: list[asyncio.Task[list[int]]] = []

        async def read_uids() -> list[int]:
            return [m.uid for m in await reader.list_messages(inbox)]

        # the read starts from the callback, as an IDLE session's does; it is awaited before the next write
        store.subscribe(demo, lambda event: seen.append(asyncio.ensure_future(read_uids())))
        try:
            for n in range(1, 4):
                await deliver(store, message(str(n)), [demo])
                assert len(seen) == n
                assert await seen[-1] == list(range(1, n + 1))
        finally:
            await reader.close()

    backend.run(scenario)


@covers(S.subscribe, S.subscribe_queue)
def test_unsubscribe_stops_and_a_failing_subscriber_does_not_stop_the_others(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        first: list[int] = []
        second: list[int] = []

        def broken(event: ChangeEvent) -> None:
            raise RuntimeError("a subscriber's bug")

        store.subscribe(demo, broken)
        stop_first = store.subscribe(demo, lambda e: first.append(e.uids[0]))
        store.subscribe(demo, lambda e: second.append(e.uids[0]))
        await append(store, inbox, "a")
        stop_first()
        stop_first()  # twice is harmless
        await append(store, inbox, "b")
        assert (first, second) == ([1], [1, 2])
        woken: list[str] = []
        stop_queue = store.subscribe_queue(lambda: woken.append("queue"))
        store.subscribe_queue(lambda: (_ for _ in ()).throw(RuntimeError("bug")))
        store.subscribe_queue(lambda: woken.append("other"))
        out = OutboundMessage("demo@example.test", [OutboundRecipient("x@remote.example")])
        await store.enqueue(b"data\r\n", 6, out)
        stop_queue()
        await store.enqueue(b"data\r\n", 6, out)
        assert woken == ["queue", "other", "other"]

    backend.run(scenario)


@covers(S.subscribe_queue)
def test_the_queue_runner_is_woken_by_what_queues_or_makes_due_and_only_by_that(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        woken: list[int] = []
        store.subscribe_queue(lambda: woken.append(len(woken)))
        account_events: list[ChangeEvent] = []
        store.subscribe(demo, account_events.append)
        later = OutboundMessage(
            "demo@example.test", [OutboundRecipient("x@remote.example")], next_attempt=time.time() + 3600
        )
        queue_id = await store.enqueue(b"data\r\n", 6, later)
        assert len(woken) == 1
        assert account_events == []
        await deliver(store, message(), [demo])
        assert len(woken) == 1
        assert await store.queue_retry(queue_id) == 1
        assert len(woken) == 2
        await store.queue_delete(queue_id)
        assert await store.queue_retry() == 0  # nothing became due: no wake-up
        assert len(woken) == 2

    backend.run(scenario)


@covers(S.subscribe, S.set_subscribed, S.set_metadata)
def test_subscriptions_and_annotations_that_change_are_published(backend: Backend) -> None:
    """IMAP NOTIFY's SubscriptionChange and Mailbox/ServerMetadataChange (decision 0072): one event per
    change, none for a write that changes nothing."""

    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        limits = MetadataLimits(max_value_size=1024, max_entries=10, max_account_octets=100_000)
        events: list[ChangeEvent] = []
        store.subscribe(demo, events.append)
        await store.set_subscribed(demo, "Work", True)
        await store.set_subscribed(demo, "Work", True)  # already: nothing
        await store.set_subscribed(demo, "Work", False)
        await store.set_subscribed(demo, "Work", False)  # not any more: nothing
        await store.set_metadata(demo, inbox, {"/private/comment": b"a", "/shared/x": None}, limits)
        await store.set_metadata(demo, inbox, {"/private/comment": b"a"}, limits)  # the same value
        await store.set_metadata(demo, None, {"/shared/comment": b"b"}, limits)
        await store.set_metadata(demo, None, {"/shared/comment": None}, limits)
        assert [(e.kind, e.mailbox_id, e.extra) for e in events] == [
            ("subscription", 0, {"name": "Work", "subscribed": True}),
            ("subscription", 0, {"name": "Work", "subscribed": False}),
            ("metadata", inbox, {"entries": ("/private/comment",)}),
            ("metadata", 0, {"entries": ("/shared/comment",)}),
            ("metadata", 0, {"entries": ("/shared/comment",)}),
        ]

    backend.run(scenario)


@covers(S.subscribe, S.set_acl, S.delete_acl)
def test_acl_changes_reach_the_owner_and_the_accounts_whose_rights_they_change(backend: Backend) -> None:
    """IMAP NOTIFY follows the rights on shared mailboxes (RFC 5465 5.9, decision 0077): an entry that changes
    is published to the owner's subscribers and to the grantee's, or for "anyone" to every account of the
    domain; no event for a write that changes nothing, nor for another domain's accounts."""

    async def scenario(store: MailStore) -> None:
        owner, fred, ann = await accounts(store, "owner", "fred", "ann")
        (stranger,) = await accounts(store, "stranger", domain="elsewhere.test")
        inbox = await inbox_of(store, owner)
        events: list[tuple[int, int]] = []

        def listener(account: int) -> Callable[[ChangeEvent], None]:
            return lambda event: events.append((account, event.mailbox_id))

        for account in (owner, fred, ann, stranger):
            store.subscribe(account, listener(account))

        def heard() -> set[int]:
            found = {account for account, mailbox_id in events if mailbox_id == inbox}
            events.clear()
            return found

        await store.set_acl(inbox, "fred@example.test", "lr")
        assert heard() == {owner, fred}
        await store.set_acl(inbox, "fred@example.test", "lr", "add")  # no change
        assert heard() == set()
        await store.set_acl(inbox, "anyone", "l")
        assert heard() == {owner, fred, ann}
        assert await store.delete_acl(inbox, "fred@example.test") is True
        assert heard() == {owner, fred}
        assert await store.delete_acl(inbox, "fred@example.test") is False
        assert heard() == set()

    backend.run(scenario)


@covers(S.subscribe_all, S.copy_messages)
def test_subscribe_all_hears_every_account_and_copies_say_where_they_came_from(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        heard: list[ChangeEvent] = []
        unsubscribe = store.subscribe_all(heard.append)
        inbox, junk = await inbox_of(store, demo), await inbox_of(store, demo, "Junk")
        await deliver(store, message("1"), [demo, other])
        assert sorted(e.account_id for e in heard) == sorted([demo, other])
        assert all("copied_from" not in e.extra for e in heard)  # new mail, not a move
        heard.clear()
        await store.copy_messages(inbox, [1], junk, move=True)
        added = [e for e in heard if e.kind == "added"]
        assert [(e.mailbox_id, e.extra) for e in added] == [(junk, {"copied_from": inbox, "moved": True})]
        await store.copy_messages(junk, [1], inbox)
        assert heard[-1].extra == {"copied_from": junk, "moved": False}
        unsubscribe()
        count = len(heard)
        await deliver(store, message("2"), [other])
        assert len(heard) == count

    backend.run(scenario)
