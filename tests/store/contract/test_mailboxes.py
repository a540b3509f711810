"""Contract: mailboxes of an account (RFC 9051 6.3): create, delete, rename with the hierarchy (INBOX moves
its messages, 6.3.6), subscriptions, the limits checked in the transaction (docs/decisions/0021), STATUS
counts and the \\Recent claim."""

from __future__ import annotations

import asyncio

import pytest

from postoffice.store import AlreadyExists, LimitExceeded, MailStore, NotFound, StoreError
from tests.store.contract.harness import Backend, accounts, append, covers, deliver, inbox_of, message

S = MailStore


@covers(S.create_mailbox, S.delete_mailbox, S.get_mailbox, S.list_mailboxes)
def test_create_and_delete_mailboxes(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        work = await store.create_mailbox(account, "Work/")
        assert work.name == "Work"
        assert work.uidnext == 1
        assert work.subscribed is False
        assert await store.get_mailbox(account, "Work") == work
        assert (await store.get_mailbox(account, "inbox")) == await store.get_mailbox(account, "INBOX")
        assert await store.get_mailbox(account, "work") is None  # only INBOX is case-insensitive
        with pytest.raises(AlreadyExists):
            await store.create_mailbox(account, "Work")
        with pytest.raises(AlreadyExists):
            await store.create_mailbox(account, "Other Sent", special_use="\\Sent")
        for bad in ("a//b", "/lead", ""):
            with pytest.raises(StoreError):
                await store.create_mailbox(account, bad)
        child = await store.create_mailbox(account, "Work/2026")
        await append(store, work.id, "one")
        assert [m.name for m in await store.list_mailboxes(account)][:1] == ["INBOX"]  # INBOX first
        await store.delete_mailbox(account, "Work")
        assert await store.get_mailbox(account, "Work") is None
        assert await store.get_mailbox(account, "Work/2026") == child  # children survive
        with pytest.raises(StoreError):
            await store.delete_mailbox(account, "inbox")
        with pytest.raises(NotFound):
            await store.delete_mailbox(account, "Nope")

    backend.run(scenario)


@covers(S.rename_mailbox)
def test_rename_moves_the_hierarchy_and_keeps_uidvalidity(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        a = await store.create_mailbox(account, "A")
        ab = await store.create_mailbox(account, "A/B")
        await store.create_mailbox(account, "AB")  # not below A
        await append(store, ab.id, "kept")
        await store.rename_mailbox(account, "A", "Z")
        names = {m.name for m in await store.list_mailboxes(account)}
        assert {"Z", "Z/B", "AB"} <= names
        assert "A" not in names
        assert "A/B" not in names
        zb = await store.get_mailbox(account, "Z/B")
        assert zb is not None
        assert zb.uidvalidity == ab.uidvalidity
        assert zb.messages == 1
        assert zb.id == ab.id
        z = await store.get_mailbox(account, "Z")
        assert z is not None
        assert z.uidvalidity == a.uidvalidity
        with pytest.raises(AlreadyExists):
            await store.rename_mailbox(account, "Z", "AB")
        with pytest.raises(StoreError):
            await store.rename_mailbox(account, "Z", "Z/B/C")
        with pytest.raises(StoreError):
            await store.rename_mailbox(account, "Z", "INBOX")
        with pytest.raises(NotFound):
            await store.rename_mailbox(account, "Nope", "Other")

    backend.run(scenario)


@covers(S.rename_mailbox)
def test_renaming_inbox_moves_its_messages_and_leaves_it_empty(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        inbox = await store.get_mailbox(account, "INBOX")
        assert inbox is not None
        await append(store, inbox.id, "one", ["\\Seen"], 1_600_000_000.0)
        await append(store, inbox.id, "two")
        await store.rename_mailbox(account, "INBOX", "Old Inbox")
        old = await store.get_mailbox(account, "Old Inbox")
        emptied = await store.get_mailbox(account, "INBOX")
        assert emptied is not None
        assert emptied.messages == 0
        assert emptied.uidnext == 3
        assert old is not None
        assert old.messages == 2
        assert old.uidvalidity != inbox.uidvalidity
        first, second = await store.list_messages(old.id)
        assert first.flags == {"\\Seen"}
        assert first.internaldate == 1_600_000_000.0
        assert await store.read_content(second.content_id) == message("two", "body two\r\n")
        assert (await store.changes_since(inbox.id, 0)).expunged == [1, 2]

    backend.run(scenario)


@covers(S.set_subscribed, S.list_subscriptions)
def test_subscriptions_are_names(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        assert await store.list_subscriptions(account) == sorted(
            ["INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"]
        )
        await store.set_subscribed(account, "Not/There", True)
        await store.set_subscribed(account, "Junk", False)
        await store.set_subscribed(account, "Junk", False)
        await store.set_subscribed(account, "inbox", True)  # INBOX once, whatever the case
        subs = await store.list_subscriptions(account)
        assert "Not/There" in subs
        assert "Junk" not in subs
        assert subs.count("INBOX") == 1
        junk = await store.get_mailbox(account, "Junk")
        assert junk is not None
        assert junk.subscribed is False

    backend.run(scenario)


@covers(S.create_mailbox, S.rename_mailbox, S.set_subscribed)
def test_mailbox_and_subscription_limits_are_checked_in_the_transaction(backend: Backend) -> None:
    """docs/decisions/0021: the count is read in the transaction that adds, so concurrent CREATEs cannot go
    over it; without a limit nothing is counted."""

    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        # a new account has 6 mailboxes (INBOX, Drafts, Sent, Trash, Junk, Archive), all subscribed
        results = await asyncio.gather(
            *(store.create_mailbox(account, f"m{i}", max_mailboxes=8) for i in range(5)),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 2
        assert all(isinstance(r, LimitExceeded) for r in results if isinstance(r, BaseException))
        assert len(await store.list_mailboxes(account)) == 8
        with pytest.raises(LimitExceeded, match="at most 8 mailboxes"):
            await store.rename_mailbox(account, "INBOX", "Old", max_mailboxes=8)  # would make a mailbox
        await store.rename_mailbox(account, "Junk", "Spam", max_mailboxes=8)  # makes none
        await store.create_mailbox(account, "m9")  # no limit given: none applies
        await store.set_subscribed(account, "x", True, max_subscriptions=7)
        with pytest.raises(LimitExceeded, match="at most 7 subscriptions"):
            await store.set_subscribed(account, "y", True, max_subscriptions=7)
        await store.set_subscribed(account, "x", True, max_subscriptions=7)  # already there: no change
        await store.set_subscribed(account, "x", False, max_subscriptions=7)
        await store.set_subscribed(account, "y", True, max_subscriptions=7)
        assert len(await store.list_subscriptions(account)) == 7

    backend.run(scenario)


@covers(S.mailbox_status, S.claim_recent)
def test_status_counts_unseen_recent_and_keywords(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        inbox = await inbox_of(store, account)
        await append(store, inbox, "seen", ["\\Seen", "$Work"])
        await append(store, inbox, "new", ["$Later"])
        await append(store, inbox, "new2")
        status = await store.mailbox_status(inbox)
        assert (status.mailbox.messages, status.unseen, status.first_unseen_uid, status.recent) == (
            3,
            2,
            2,
            3,
        )
        assert status.keywords == ("$Later", "$Work")
        assert status.highest_modseq > 0
        assert await store.claim_recent(inbox) == 1  # the first session gets all three as \Recent
        assert await store.claim_recent(inbox) == 4  # the next one gets none of them
        await append(store, inbox, "later")
        assert (await store.mailbox_status(inbox)).recent == 1
        assert await store.claim_recent(inbox) == 4
        assert (await store.mailbox_status(inbox)).recent == 0
        with pytest.raises(NotFound):
            await store.mailbox_status(999_999)
        with pytest.raises(NotFound):
            await store.claim_recent(999_999)

    backend.run(scenario)


@covers(S.claim_recent)
def test_claim_recent_up_to_answers_for_the_uids_asked_about(backend: Backend) -> None:
    """`up_to`: each session asks about the new UIDs it saw; only the first one gets them as \\Recent, also
    when the store answers a later one without a write; a deleted mailbox's claims do not pass to a new
    mailbox that is given the same id."""

    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        inbox = await inbox_of(store, account)
        for n in range(3):
            await append(store, inbox, f"m{n}")
        assert await store.claim_recent(inbox, up_to=3) == 1  # the first session: all three
        assert await store.claim_recent(inbox, up_to=3) > 3  # every later one: none of them
        assert await store.claim_recent(inbox, up_to=2) > 2
        await append(store, inbox, "m3")
        assert await store.claim_recent(inbox, up_to=4) == 4  # the new one goes to the first who asks
        assert await store.claim_recent(inbox, up_to=4) > 4
        assert await store.claim_recent(inbox) == 5
        assert (await store.mailbox_status(inbox)).recent == 0

        # the last-created mailbox deleted: a new one may get its id; its messages are \Recent again
        box = await store.create_mailbox(account, "Short-lived")
        for n in range(2):
            await append(store, box.id, f"s{n}")
        assert await store.claim_recent(box.id, up_to=2) == 1
        await store.delete_mailbox(account, "Short-lived")
        again = await store.create_mailbox(account, "Again")
        for n in range(2):
            await append(store, again.id, f"a{n}")
        assert await store.claim_recent(again.id, up_to=2) == 1
        assert await store.claim_recent(again.id, up_to=2) == 3

    backend.run(scenario)


@covers(S.unseen_counts)
def test_unseen_counts_per_mailbox_of_one_account(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        for n in range(5):
            await deliver(store, message(f"m{n}"), [demo], flags=["\\Seen"] if n < 2 else [])
        await deliver(store, message("theirs"), [other])
        inbox = await inbox_of(store, demo)
        archive = await store.get_mailbox(demo, "Archive")
        assert archive is not None
        assert await store.unseen_counts(demo) == {inbox: 3}
        await store.copy_messages(inbox, [3], archive.id, move=True)
        await store.store_flags(inbox, [4], ["\\Seen"], "add")
        await store.store_flags(inbox, [1], ["\\Seen"], "remove")
        assert await store.unseen_counts(demo) == {inbox: 2, archive.id: 1}
        assert (await store.mailbox_status(inbox)).unseen == 2
        assert await store.unseen_counts(other) == {await inbox_of(store, other): 1}
        assert await store.unseen_counts(999_999) == {}
        # every kind of change is seen at the next count (a backend may keep counts between changes)
        await store.store_flags(archive.id, [1], ["\\Seen"], "add")
        assert await store.unseen_counts(demo) == {inbox: 2}
        await store.store_flags(inbox, [2], ["\\Seen"], "remove")
        assert await store.unseen_counts(demo) == {inbox: 3}
        await store.store_flags(inbox, [1, 2], ["\\Deleted"], "add")
        await store.expunge_deleted(inbox)
        assert await store.unseen_counts(demo) == {inbox: 1}
        await deliver(store, message("m5"), [demo])
        assert await store.unseen_counts(demo) == {inbox: 2}
        cli = backend.open()  # another process's change (the CLI, another node)
        try:
            await cli.store_flags(inbox, [5], ["\\Seen"], "add")
        finally:
            await cli.close()
        assert await store.unseen_counts(demo) == {inbox: 1}

    backend.run(scenario)
