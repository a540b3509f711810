"""`MailStore.snapshot` (the shared, cached column view SELECT uses), `advance_snapshot`, `read_range`, the
ENVELOPE / BODYSTRUCTURE renderings kept at delivery (schema version 5) and `expunge_deleted`."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap import fetch
from postoffice.message import parse_message
from postoffice.store import MailStore, NotFound, open_store
from postoffice.store.api import MailboxSnapshot, build_snapshot
from postoffice.store.sqlite import SCHEMA_VERSION
from tests.store.test_store_mailboxes import append, run


def columns(snapshot: MailboxSnapshot) -> tuple[object, ...]:
    return (
        list(snapshot.uids),
        list(snapshot.flags),
        list(snapshot.content_ids),
        list(snapshot.sizes),
        list(snapshot.internaldates),
        snapshot.unseen,
        snapshot.first_unseen_uid,
        snapshot.mailbox.messages,
        snapshot.mailbox.uidnext,
    )


async def fresh(store: MailStore, mailbox_id: int) -> MailboxSnapshot:
    status = await store.mailbox_status(mailbox_id)
    return build_snapshot(status.mailbox, 0, await store.list_messages(mailbox_id))


FLAG_SETS = st.lists(st.sampled_from(["\\Seen", "\\Deleted", "\\Flagged", "$Work", "$Later"]), max_size=3)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), FLAG_SETS),
        st.tuples(
            st.just("flags"),
            st.lists(st.integers(1, 40), max_size=5),
            FLAG_SETS,
            st.sampled_from(["add", "remove", "replace"]),
        ),
        st.tuples(st.just("expunge"), st.lists(st.integers(1, 40), max_size=5)),
        st.tuples(st.just("move"), st.lists(st.integers(1, 40), max_size=3)),
        st.tuples(st.just("snapshot")),
    ),
    max_size=25,
)


@settings(max_examples=40)
@given(operations=OPERATIONS)
def test_a_cached_snapshot_advanced_by_changes_equals_one_read_from_scratch(
    tmp_path_factory: object, operations: list[tuple[object, ...]]
) -> None:
    path = tmp_path_factory.mktemp("snap") / "s.sqlite3"  # type: ignore[attr-defined]

    async def scenario(store: MailStore, account_id: int) -> None:
        inbox = await store.get_mailbox(account_id, "INBOX")
        archive = await store.get_mailbox(account_id, "Archive")
        assert inbox is not None and archive is not None
        for i in range(5):
            await append(store, inbox.id, f"start {i}", ["\\Seen"] if i % 2 else [])
        held = [await store.snapshot(inbox.id)]
        for n, op in enumerate(operations):
            if op[0] == "append":
                await append(store, inbox.id, f"m{n}", op[1])
            elif op[0] == "flags":
                await store.store_flags(inbox.id, op[1], op[2], op[3])  # type: ignore[arg-type]
            elif op[0] == "expunge":
                await store.expunge(inbox.id, op[1])  # type: ignore[arg-type]
            elif op[0] == "move":
                await store.copy_messages(inbox.id, op[1], archive.id, move=True)  # type: ignore[arg-type]
            else:
                held.append(await store.snapshot(inbox.id))
        cached = await store.snapshot(inbox.id)
        assert columns(cached) == columns(await fresh(store, inbox.id))
        keywords = {f for flags in cached.flags for f in flags if not f.startswith("\\")}
        assert keywords <= cached.keywords  # keywords only accumulate
        # Snapshots handed out earlier never change (sessions share them).
        for old in held:
            assert len(old.uids) == len(old.flags) == len(old.content_ids)

    run(path, scenario)


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
        assert second is not first and second.unseen == 2 and second.first_unseen_uid == 1
        assert first.unseen == 3  # the old one is untouched
        assert list(second.uids) == [1, 2, 3] and second.modseq > first.modseq

    run(tmp_path / "s.sqlite3", scenario)


def test_a_deleted_and_recreated_mailbox_is_not_served_from_the_old_snapshot(tmp_path: Path) -> None:
    async def scenario(store: MailStore, account_id: int) -> None:
        work = await store.create_mailbox(account_id, "Work")
        await append(store, work.id, "old")
        old = await store.snapshot(work.id)
        await store.delete_mailbox(account_id, "Work")
        again = await store.create_mailbox(account_id, "Work")
        snapshot = await store.snapshot(again.id)
        assert snapshot.mailbox.uidvalidity != old.mailbox.uidvalidity
        assert list(snapshot.uids) == []

    run(tmp_path / "s.sqlite3", scenario)


HARD = (
    b"From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\r\nTo: undisclosed-recipients:;\r\n"
    b"Subject: caf\xc3\xa9\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
    b"Content-Type: text/plain; name*0*=utf-8''caf%C3%A9; name*1=.txt\r\n\r\nhi\r\n--b--\r\n"
)


def test_renderings_kept_at_delivery_equal_rendering_the_parse(tmp_path: Path) -> None:
    async def scenario(store: MailStore, account_id: int) -> None:
        inbox = await store.get_mailbox(account_id, "INBOX")
        assert inbox is not None
        parsed = parse_message(io.BytesIO(HARD))
        copy = await store.append(inbox.id, io.BytesIO(HARD), parsed)
        (message,) = await store.list_messages(inbox.id)
        assert message.uid == copy.uid
        rendering = (await store.imap_renderings([message.content_id, 999_999]))[message.content_id]
        assert rendering.envelope == fetch.envelope(parsed.envelope, utf8=False)
        assert rendering.bodystructure == fetch.bodystructure(parsed.body, extended=True, utf8=False)
        # 8-bit header text: quoted in UTF-8 for UTF8=ACCEPT sessions, a literal otherwise
        assert rendering.envelope_utf8 == fetch.envelope(parsed.envelope, utf8=True) != rendering.envelope
        assert list(await store.imap_renderings([999_999])) == []
        await store.store_flags(inbox.id, [message.uid], ["\\Deleted"], "add")
        assert await store.expunge_deleted(inbox.id) == [message.uid]
        assert await store.imap_renderings([message.content_id]) == {}  # went with the content

    run(tmp_path / "s.sqlite3", scenario)


def test_expunge_deleted_removes_only_deleted_messages_of_the_given_uids(tmp_path: Path) -> None:
    async def scenario(store: MailStore, account_id: int) -> None:
        inbox = await store.get_mailbox(account_id, "INBOX")
        assert inbox is not None
        for i in range(6):
            await append(store, inbox.id, f"m{i}", ["\\Deleted"] if i % 2 == 0 else [])
        assert await store.expunge_deleted(inbox.id, [1, 2, 3, 4]) == [1, 3]
        assert [m.uid for m in await store.list_messages(inbox.id)] == [2, 4, 5, 6]
        assert await store.expunge_deleted(inbox.id, []) == []
        assert await store.expunge_deleted(inbox.id) == [5]
        changes = await store.changes_since(inbox.id, 0)
        assert changes.expunged == [1, 3, 5]

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
                assert renderings[m.content_id].envelope == fetch.envelope(parsed.envelope, utf8=False)
        finally:
            await store.close()

    asyncio.run(check())
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        assert version == SCHEMA_VERSION >= 5
    finally:
        conn.close()


def test_read_range_returns_part_of_a_message(tmp_path: Path) -> None:
    async def scenario(store: MailStore, account_id: int) -> None:
        inbox = await store.get_mailbox(account_id, "INBOX")
        assert inbox is not None
        await append(store, inbox.id, "ranged")
        (message,) = await store.list_messages(inbox.id)
        whole = await store.read_content(message.content_id)
        assert await store.read_range(message.content_id, 6, 10) == whole[6:16]
        assert await store.read_range(message.content_id, len(whole) - 3, 100) == whole[-3:]
        assert await store.read_range(message.content_id, len(whole) + 5, 10) == b""
        assert await store.read_range(message.content_id, 0, 0) == b""
        with pytest.raises(NotFound):
            await store.read_range(999_999, 0, 10)

    run(tmp_path / "s.sqlite3", scenario)
