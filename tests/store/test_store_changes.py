"""`MailStore.changes_since`: what changed in a mailbox after a MODSEQ (new messages, flag changes, expunges),
which a selected IMAP session reads instead of the whole mailbox; and the index it uses (schema version 4)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from postoffice.store import NotFound, open_store
from postoffice.store.sqlite import SCHEMA_VERSION
from tests.store.test_store_mailboxes import append, run


def test_changes_since_reports_new_changed_and_expunged_messages(tmp_path: Path) -> None:
    async def scenario(store, account_id: int) -> None:  # type: ignore[no-untyped-def]
        inbox = await store.get_mailbox(account_id, "INBOX")
        other = await store.get_mailbox(account_id, "Archive")
        for i in range(20):
            await append(store, inbox.id, f"m{i}")
        everything = await store.changes_since(inbox.id, 0)
        assert [m.uid for m in everything.messages] == list(range(1, 21))
        assert everything.expunged == []
        assert everything.highest_modseq == max(m.modseq for m in everything.messages)
        assert everything.messages == await store.list_messages(inbox.id)
        base = everything.highest_modseq

        nothing = await store.changes_since(inbox.id, base)
        assert nothing.messages == [] and nothing.expunged == [] and nothing.highest_modseq == base

        await store.store_flags(inbox.id, [7, 3], ["\\Flagged"], "add")
        await append(store, other.id, "elsewhere")  # another mailbox: not a change of INBOX
        await store.expunge(inbox.id, [5, 12])
        await append(store, inbox.id, "new", ["\\Seen"])
        changes = await store.changes_since(inbox.id, base)
        assert [(m.uid, m.flags) for m in changes.messages] == [
            (3, frozenset({"\\Flagged"})),
            (7, frozenset({"\\Flagged"})),
            (21, frozenset({"\\Seen"})),
        ]
        assert changes.expunged == [5, 12]
        listed = await store.list_messages(inbox.id)
        assert changes.highest_modseq == max(m.modseq for m in listed)
        assert all(m in listed for m in changes.messages)

        # Only what came after the MODSEQ: the expunge is older than the last append.
        later = await store.changes_since(inbox.id, changes.highest_modseq - 1)
        assert [m.uid for m in later.messages] == [21] and later.expunged == []

        # A flag change back to what it was is still a change (a new MODSEQ); a no-op STORE is not.
        await store.store_flags(inbox.id, [3], ["\\Flagged"], "remove")
        await store.store_flags(inbox.id, [4], ["\\Flagged"], "remove")
        again = await store.changes_since(inbox.id, changes.highest_modseq)
        assert [(m.uid, m.flags) for m in again.messages] == [(3, frozenset())]
        assert again.highest_modseq > changes.highest_modseq

        # MOVE out of the mailbox is an expunge of the source; the target sees new messages.
        pairs = await store.copy_messages(inbox.id, [1, 2], other.id, move=True)
        moved = await store.changes_since(inbox.id, again.highest_modseq)
        assert moved.messages == [] and moved.expunged == [1, 2]
        target = await store.changes_since(other.id, again.highest_modseq)
        assert [m.uid for m in target.messages] == [new for _, new in pairs]

        with pytest.raises(NotFound):
            await store.changes_since(999_999, 0)

    run(tmp_path / "s.sqlite3", scenario)


def test_changes_since_uses_the_modseq_index(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"

    async def scenario(store, account_id: int) -> None:  # type: ignore[no-untyped-def]
        inbox = await store.get_mailbox(account_id, "INBOX")
        await append(store, inbox.id, "one")

    run(path, scenario)
    conn = sqlite3.connect(path)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "messages_modseq" in names
        plan = " ".join(
            str(r[-1])
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT uid FROM messages "
                "WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                (1, 5),
            )
        )
        assert "messages_modseq" in plan
    finally:
        conn.close()


def test_a_version_3_store_gets_the_modseq_index(tmp_path: Path) -> None:
    path = tmp_path / "v3.sqlite3"

    async def scenario(store, account_id: int) -> None:  # type: ignore[no-untyped-def]
        inbox = await store.get_mailbox(account_id, "INBOX")
        await append(store, inbox.id, "one")

    run(path, scenario)
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX messages_modseq")
    conn.execute("UPDATE meta SET value = 3 WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    async def check(store, account_id: int) -> None:  # type: ignore[no-untyped-def]
        inbox = await store.get_mailbox(account_id, "INBOX")
        changes = await store.changes_since(inbox.id, 0)
        assert [m.uid for m in changes.messages] == [1]

    async def main() -> None:
        store = open_store(path)
        try:
            account = await store.get_account("demo@example.test")
            await check(store, account.id)
        finally:
            await store.close()

    asyncio.run(main())
    conn = sqlite3.connect(path)
    try:
        assert (
            conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
            == SCHEMA_VERSION
            >= 4
        )
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "messages_modseq" in names
    finally:
        conn.close()
