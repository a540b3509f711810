"""Store operations IMAP needs: mailbox create/delete/rename, subscriptions, status, \\Recent, APPEND,
COPY/MOVE, and the schema migration from version 1."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from importlib import resources
from pathlib import Path

import pytest

from postoffice.message import parse_message
from postoffice.store import AlreadyExists, ChangeEvent, LimitExceeded, NotFound, StoreError, open_store
from postoffice.store.sqlite import SCHEMA_VERSION


def raw(subject: str) -> bytes:
    return f"From: a@example.org\r\nSubject: {subject}\r\n\r\nbody {subject}\r\n".encode()


def run(path: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        store = open_store(path)
        try:
            await store.add_domain("example.test")
            account = await store.add_account("demo@example.test", "hash")
            await scenario(store, account.id)
        finally:
            await store.close()

    asyncio.run(main())


async def append(store, mailbox_id: int, subject: str, flags=(), when=None):  # type: ignore[no-untyped-def]
    data = raw(subject)
    return await store.append(mailbox_id, io.BytesIO(data), parse_message(io.BytesIO(data)), flags, when)


def test_create_delete_and_uidvalidity_never_repeats(tmp_path: Path) -> None:
    async def scenario(store, account_id: int) -> None:  # type: ignore[no-untyped-def]
        work = await store.create_mailbox(account_id, "Work/")
        assert work.name == "Work" and work.uidnext == 1 and work.subscribed is False
        with pytest.raises(AlreadyExists):
            await store.create_mailbox(account_id, "Work")
        with pytest.raises(AlreadyExists):
            await store.create_mailbox(account_id, "Other Sent", special_use="\\Sent")
        with pytest.raises(StoreError):
            await store.create_mailbox(account_id, "a//b")
        child = await store.create_mailbox(account_id, "Work/2026")
        await append(store, work.id, "one")
        await store.delete_mailbox(account_id, "Work")
        assert await store.get_mailbox(account_id, "Work") is None
        assert await store.get_mailbox(account_id, "Work/2026") == child  # children survive
        again = await store.create_mailbox(account_id, "Work")
        assert again.uidvalidity not in (work.uidvalidity, child.uidvalidity)
        with pytest.raises(StoreError):
            await store.delete_mailbox(account_id, "inbox")
        with pytest.raises(NotFound):
            await store.delete_mailbox(account_id, "Nope")

    run(tmp_path / "s.sqlite3", scenario)


def test_rename_moves_the_hierarchy_and_keeps_uidvalidity(tmp_path: Path) -> None:
    async def scenario(store, account_id: int) -> None:  # type: ignore[no-untyped-def]
        a = await store.create_mailbox(account_id, "A")
        ab = await store.create_mailbox(account_id, "A/B")
        await store.create_mailbox(account_id, "AB")  # not below A
        await append(store, ab.id, "kept")
        await store.rename_mailbox(account_id, "A", "Z")
        names = {m.name for m in await store.list_mailboxes(account_id)}
        assert {"Z", "Z/B", "AB"} <= names and "A" not in names and "A/B" not in names
        zb = await store.get_mailbox(account_id, "Z/B")
        assert zb is not None and zb.uidvalidity == ab.uidvalidity and zb.messages == 1
        z = await store.get_mailbox(account_id, "Z")
        assert z is not None and z.uidvalidity == a.uidvalidity
        with pytest.raises(AlreadyExists):
            await store.rename_mailbox(account_id, "Z", "AB")
        with pytest.raises(StoreError):
            await store.rename_mailbox(account_id, "Z", "Z/B/C")

    run(tmp_path / "s.sqlite3", scenario)


def test_renaming_inbox_moves_its_messages_and_leaves_it_empty(tmp_path: Path) -> None:
    async def scenario(store, account_id: int) -> None:  # type: ignore[no-untyped-def]
        inbox = await store.get_mailbox(account_id, "INBOX")
        await append(store, inbox.id, "one", ["\\Seen"], 1_600_000_000.0)
        await append(store, inbox.id, "two")
        await store.rename_mailbox(account_id, "INBOX", "Old Inbox")
        old = await store.get_mailbox(account_id, "Old Inbox")
        emptied = await store.get_mailbox(account_id, "INBOX")
        assert emptied is not None and emptied.messages == 0 and emptied.uidnext == 3
        assert old is not None and old.messages == 2 and old.uidvalidity != inbox.uidvalidity
        first, second = await store.list_messages(old.id)
        assert first.flags == {"\\Seen"} and first.internaldate == 1_600_000_000.0
        assert await store.read_content(second.content_id) == raw("two")

    run(tmp_path / "s.sqlite3", scenario)


def test_subscriptions_are_names(tmp_path: Path) -> None:
    async def scenario(store, account_id: int) -> None:  # type: ignore[no-untyped-def]
        assert await store.list_subscriptions(account_id) == sorted(
            ["INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"]
        )
        await store.set_subscribed(account_id, "Not/There", True)
        await store.set_subscribed(account_id, "Junk", False)
        await store.set_subscribed(account_id, "Junk", False)
        subs = await store.list_subscriptions(account_id)
        assert "Not/There" in subs and "Junk" not in subs
        junk = await store.get_mailbox(account_id, "Junk")
        assert junk is not None and junk.subscribed is False

    run(tmp_path / "s.sqlite3", scenario)


def test_mailbox_and_subscription_limits_are_checked_in_the_transaction(tmp_path: Path) -> None:
    """docs/decisions/0021: the count is read in the transaction that adds, so concurrent CREATEs cannot go
    over it; without a limit nothing is counted."""

    async def scenario(store, account_id: int) -> None:  # type: ignore[no-untyped-def]
        # a new account has 6 mailboxes (INBOX, Drafts, Sent, Trash, Junk, Archive), all subscribed
        results = await asyncio.gather(
            *(store.create_mailbox(account_id, f"m{i}", max_mailboxes=8) for i in range(5)),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 2
        assert all(isinstance(r, LimitExceeded) for r in results if isinstance(r, BaseException))
        assert len(await store.list_mailboxes(account_id)) == 8
        with pytest.raises(LimitExceeded, match="at most 8 mailboxes"):
            await store.rename_mailbox(account_id, "INBOX", "Old", max_mailboxes=8)  # would make a mailbox
        await store.rename_mailbox(account_id, "Junk", "Spam", max_mailboxes=8)  # makes none
        await store.create_mailbox(account_id, "m9")  # no limit given: none applies
        await store.set_subscribed(account_id, "x", True, max_subscriptions=7)
        with pytest.raises(LimitExceeded, match="at most 7 subscriptions"):
            await store.set_subscribed(account_id, "y", True, max_subscriptions=7)
        await store.set_subscribed(account_id, "x", True, max_subscriptions=7)  # already there: no change
        await store.set_subscribed(account_id, "x", False, max_subscriptions=7)
        await store.set_subscribed(account_id, "y", True, max_subscriptions=7)
        assert len(await store.list_subscriptions(account_id)) == 7

    run(tmp_path / "s.sqlite3", scenario)


def test_status_counts_unseen_recent_and_keywords(tmp_path: Path) -> None:
    async def scenario(store, account_id: int) -> None:  # type: ignore[no-untyped-def]
        inbox = await store.get_mailbox(account_id, "INBOX")
        await append(store, inbox.id, "seen", ["\\Seen", "$Work"])
        await append(store, inbox.id, "new", ["$Later"])
        await append(store, inbox.id, "new2")
        status = await store.mailbox_status(inbox.id)
        assert (status.mailbox.messages, status.unseen, status.first_unseen_uid, status.recent) == (
            3,
            2,
            2,
            3,
        )
        assert status.keywords == ("$Later", "$Work")
        assert status.highest_modseq > 0
        assert await store.claim_recent(inbox.id) == 1  # the first session gets all three as \Recent
        assert await store.claim_recent(inbox.id) == 4  # the next one gets none of them
        await append(store, inbox.id, "later")
        assert (await store.mailbox_status(inbox.id)).recent == 1
        assert await store.claim_recent(inbox.id) == 4

    run(tmp_path / "s.sqlite3", scenario)


def test_copy_and_move_keep_flags_share_content_and_notify(tmp_path: Path) -> None:
    async def scenario(store, account_id: int) -> None:  # type: ignore[no-untyped-def]
        events: list[ChangeEvent] = []
        store.subscribe(account_id, events.append)
        inbox = await store.get_mailbox(account_id, "INBOX")
        archive = await store.get_mailbox(account_id, "Archive")
        await append(store, inbox.id, "a", ["\\Flagged", "$X"], 1_500_000_000.0)
        await append(store, inbox.id, "b")
        await append(store, inbox.id, "c")
        assert await store.copy_messages(inbox.id, [3, 1, 99], archive.id) == [(1, 1), (3, 2)]
        copied = await store.list_messages(archive.id)
        assert copied[0].flags == {"\\Flagged", "$X"} and copied[0].internaldate == 1_500_000_000.0
        originals = await store.list_messages(inbox.id)
        assert copied[0].content_id == originals[0].content_id
        assert await store.copy_messages(inbox.id, [2], archive.id, move=True) == [(2, 3)]
        assert [m.uid for m in await store.list_messages(inbox.id)] == [1, 3]
        # the shared content survives expunging one copy
        await store.expunge(inbox.id, [1])
        assert await store.read_content(copied[0].content_id) == raw("a")
        await asyncio.sleep(0)
        kinds = [(e.kind, e.mailbox_id, e.uids) for e in events]
        assert ("added", archive.id, (1, 2)) in kinds
        assert ("expunged", inbox.id, (2,)) in kinds

    run(tmp_path / "s.sqlite3", scenario)


def test_a_version_1_store_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    schema = resources.files("postoffice.store").joinpath("schema.sql").read_text()
    # Build a version-1 store: today's schema minus what version 2 added.
    conn = sqlite3.connect(path)
    for statement in schema.split(";\n"):
        if statement.strip() and "CREATE TABLE subscriptions" not in statement:
            conn.execute(statement.replace("    recent_uid     INTEGER NOT NULL DEFAULT 0,", ""))
    conn.execute("INSERT INTO meta VALUES ('schema_version', 1), ('next_uidvalidity', 1000)")
    conn.execute("INSERT INTO domains (name, created) VALUES ('example.test', 0)")
    conn.execute(
        "INSERT INTO accounts (address, domain_id, password_hash, created) "
        "VALUES ('d@example.test', 1, 'h', 0)"
    )
    conn.execute(
        "INSERT INTO mailboxes (account_id, name, uidvalidity, subscribed) VALUES (1, 'INBOX', 999, 1)"
    )
    conn.execute(
        "INSERT INTO mailboxes (account_id, name, uidvalidity, subscribed) VALUES (1, 'Old', 998, 0)"
    )
    conn.commit()
    conn.close()

    async def main() -> None:
        store = open_store(path)
        try:
            assert await store.list_subscriptions(1) == ["INBOX"]
            inbox = await store.get_mailbox(1, "INBOX")
            assert inbox is not None and (await store.mailbox_status(inbox.id)).recent == 0
        finally:
            await store.close()

    asyncio.run(main())
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    conn.close()
