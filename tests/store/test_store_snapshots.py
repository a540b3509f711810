"""The SQLite store's snapshot cache (an unchanged mailbox gives the very same snapshot object, shared by
every session) and the backfill of the kept ENVELOPE / BODYSTRUCTURE (schema version 5). What snapshots and
the kept forms must be, for every backend, is tests/store/contract/test_messages.py."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from postoffice.message import imap_forms
from postoffice.store import MailStore, open_store
from postoffice.store.sqlite import SCHEMA_VERSION
from tests.store.test_store_mailboxes import append, run


def test_an_unchanged_mailbox_gives_the_same_snapshot_object(tmp_path: Path) -> None:
    async def scenario(store: MailStore, account_id: int) -> None:
        inbox = await store.get_mailbox(account_id, "INBOX")
        assert inbox is not None
        for i in range(3):
            await append(store, inbox.id, f"m{i}")
        first = await store.snapshot(inbox.id)
        assert await store.snapshot(inbox.id) is first
        await store.store_flags(inbox.id, [2], ["\\Seen"], "add")
        second = await store.snapshot(inbox.id)
        assert second is not first
        assert second.unseen == 2
        assert second.first_unseen_uid == 1
        assert first.unseen == 3  # the old one is untouched
        assert list(second.uids) == [1, 2, 3]
        assert second.modseq > first.modseq

    run(tmp_path / "s.sqlite3", scenario)


def test_a_version_4_store_gets_its_renderings_backfilled(tmp_path: Path) -> None:
    path = tmp_path / "v4.sqlite3"

    async def scenario(store: MailStore, account_id: int) -> None:
        inbox = await store.get_mailbox(account_id, "INBOX")
        assert inbox is not None
        await append(store, inbox.id, "one")
        await append(store, inbox.id, "two")

    run(path, scenario)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE content_imap")
    conn.execute("UPDATE meta SET value = 4 WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    async def check() -> None:
        store = open_store(path)
        try:
            account = await store.get_account("demo@example.test")
            assert account is not None
            inbox = await store.get_mailbox(account.id, "INBOX")
            assert inbox is not None
            messages = await store.list_messages(inbox.id)
            renderings = await store.imap_renderings([m.content_id for m in messages])
            assert len(renderings) == 2
            for m in messages:
                parsed = await store.get_parsed(m.content_id)
                assert renderings[m.content_id].envelope == imap_forms.envelope(parsed.envelope, utf8=False)
        finally:
            await store.close()

    asyncio.run(check())
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        assert version == SCHEMA_VERSION >= 5
    finally:
        conn.close()
