"""The SQLite side of `MailStore.changes_since` (whose answers are in tests/store/contract): the index on
(mailbox, modseq) it reads through, and its migration (schema version 4)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from postoffice.store import MailStore, open_store
from postoffice.store.sqlite import SCHEMA_VERSION
from tests.store.test_store_mailboxes import append, run


def test_changes_since_uses_the_modseq_index(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"

    async def scenario(store: MailStore, account_id: int) -> None:
        inbox = await store.get_mailbox(account_id, "INBOX")
        assert inbox is not None
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

    async def scenario(store: MailStore, account_id: int) -> None:
        inbox = await store.get_mailbox(account_id, "INBOX")
        assert inbox is not None
        await append(store, inbox.id, "one")

    run(path, scenario)
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX messages_modseq")
    conn.execute("UPDATE meta SET value = 3 WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    async def check(store: MailStore, account_id: int) -> None:
        inbox = await store.get_mailbox(account_id, "INBOX")
        assert inbox is not None
        changes = await store.changes_since(inbox.id, 0)
        assert [m.uid for m in changes.messages] == [1]

    async def main() -> None:
        store = open_store(path)
        try:
            account = await store.get_account("demo@example.test")
            assert account is not None
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
