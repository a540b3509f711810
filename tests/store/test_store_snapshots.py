"""The SQLite store's snapshot cache (an unchanged mailbox gives the very same snapshot object, shared by
every session) and the backfill of the kept ENVELOPE / BODYSTRUCTURE (schema version 5). What snapshots and
the kept forms must be, for every backend, is tests/store/contract/test_messages.py."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.message import imap_forms
from postoffice.store import MailStore, open_store
from postoffice.store.api import MailboxInfo, MailboxSnapshot, MessageInfo, build_snapshot
from postoffice.store.sqlite import SCHEMA_VERSION
from postoffice.store.sqlite.columns import columns_to_flags
from postoffice.store.sqlite.messages import snapshot_of_rows
from tests.store.test_store_mailboxes import append, run

_ROW = st.tuples(
    st.integers(0, 31),  # the system-flag bits
    st.sampled_from(["", "$Work", "$Later $Work", "Junk"]),
    st.integers(1, 10**6),  # content id
    st.integers(0, 10**7),  # size
    st.floats(0, 4e9, allow_nan=False),  # internal date
    st.integers(1, 10**6),  # MODSEQ
)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(_ROW, max_size=40), highest=st.integers(0, 2 * 10**6))
def test_the_columnar_full_read_makes_the_snapshot_build_snapshot_makes(
    rows: list[tuple[int, str, int, int, float, int]], highest: int
) -> None:
    """`snapshot_of_rows` (the first SELECT of a large mailbox) is `build_snapshot` of the same rows."""
    info = MailboxInfo(7, 1, "INBOX", None, 42, len(rows) + 1, len(rows), 0, True)
    table = [(uid, *row[:2], row[2], row[3], row[4], row[5]) for uid, row in enumerate(rows, start=3)]
    messages = [
        MessageInfo(0, 7, uid, columns_to_flags(bits, kw), date, size, modseq, cid)
        for uid, bits, kw, cid, size, date, modseq in table
    ]
    expected = build_snapshot(info, max([highest, *(m.modseq for m in messages)]), messages)
    made = snapshot_of_rows(info, highest, table)
    for field in dataclasses.fields(MailboxSnapshot):  # compared by identity (eq=False): field by field
        assert getattr(made, field.name) == getattr(expected, field.name), field.name
    assert [type(x) for x in made.flags] == [frozenset] * len(rows)


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
