"""Content ids are never given twice (IMAP OBJECTID's EMAILID, RFC 8474; docs/decisions/0062): new ids come
from a counter, also after the newest content was deleted (SQLite's own rowids would give its id again), and
a version 18 store gets the counter from its contents."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from postoffice.store import MetadataLimits, open_store
from postoffice.store.sqlite import SCHEMA_VERSION
from tests.store.contract.harness import accounts, deliver, inbox_of, message


async def _deliver_and_expunge_the_newest(path: Path) -> tuple[int, int]:
    """(the content id of the newest message, expunged; the content id of the next one delivered)."""
    store = open_store(path)
    try:
        (demo,) = await accounts(store, "demo") if not await store.list_domains() else [1]
        inbox = await inbox_of(store, demo)
        await deliver(store, message("one"), [demo])
        await deliver(store, message("two"), [demo])
        newest = (await store.list_messages(inbox))[-1]
        await store.store_flags(inbox, [newest.uid], ["\\Deleted"], "add")
        await store.expunge_deleted(inbox)
        await deliver(store, message("three"), [demo])
        latest = (await store.list_messages(inbox))[-1]
        return newest.content_id, latest.content_id
    finally:
        await store.close()


def test_a_deleted_contents_id_is_never_given_again(tmp_path: Path) -> None:
    expunged, next_one = asyncio.run(_deliver_and_expunge_the_newest(tmp_path / "store.sqlite3"))
    assert next_one > expunged


def test_a_version_18_store_counts_on_from_its_contents(tmp_path: Path) -> None:
    path = tmp_path / "v18.sqlite3"
    first_expunged, _ = asyncio.run(_deliver_and_expunge_the_newest(path))
    conn = sqlite3.connect(path)
    highest = conn.execute("SELECT max(id) FROM contents").fetchone()[0]
    conn.executescript(
        "DELETE FROM meta WHERE key = 'next_content_id';"
        "UPDATE meta SET value = 18 WHERE key = 'schema_version';"
    )
    conn.commit()
    conn.close()
    expunged, next_one = asyncio.run(_deliver_and_expunge_the_newest(path))
    assert expunged > highest  # the counter started above every content there was
    assert next_one > expunged > first_expunged
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_version_19_store_gets_save_dates_from_the_internal_dates(tmp_path: Path) -> None:
    """Schema 20 (IMAP SAVEDATE, RFC 8514): the messages already there get their internal date."""
    path = tmp_path / "v19.sqlite3"
    asyncio.run(_deliver_and_expunge_the_newest(path))
    conn = sqlite3.connect(path)
    conn.executescript(
        "ALTER TABLE messages DROP COLUMN savedate; UPDATE meta SET value = 19 WHERE key = 'schema_version';"
    )
    conn.commit()
    conn.close()

    async def dates() -> list[tuple[float, float]]:
        store = open_store(path)
        try:
            inbox = await inbox_of(store, 1)
            return [(m.internaldate, m.savedate) for m in await store.list_messages(inbox)]
        finally:
            await store.close()

    found = asyncio.run(dates())
    assert len(found) == 2
    assert all(internal == saved for internal, saved in found)


def test_a_version_20_store_gets_the_sort_fields_of_its_contents(tmp_path: Path) -> None:
    """Schema 21 (IMAP SORT and THREAD, RFC 5256): content_sort is filled from the stored structures."""
    path = tmp_path / "v20.sqlite3"
    asyncio.run(_deliver_and_expunge_the_newest(path))
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE content_sort; UPDATE meta SET value = 20 WHERE key = 'schema_version';")
    conn.commit()
    conn.close()

    async def fields() -> list[tuple[str, str]]:
        store = open_store(path)
        try:
            inbox = await inbox_of(store, 1)
            ids = [m.content_id for m in await store.list_messages(inbox)]
            found = await store.sort_fields(ids)
            return [(found[i].subject, found[i].from_mailbox) for i in ids]
        finally:
            await store.close()

    found = asyncio.run(fields())
    assert len(found) == 2
    assert all(subject and sender for subject, sender in found)


def test_a_version_21_store_gets_the_metadata_table(tmp_path: Path) -> None:
    """Schema 22 (IMAP METADATA, RFC 5464): a store without the table gets it, empty, and annotations work."""
    path = tmp_path / "v21.sqlite3"
    asyncio.run(_deliver_and_expunge_the_newest(path))
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE metadata; UPDATE meta SET value = 21 WHERE key = 'schema_version';")
    conn.commit()
    conn.close()

    async def annotate() -> dict[str, bytes]:
        store = open_store(path)
        try:
            inbox = await inbox_of(store, 1)
            limits = MetadataLimits(max_value_size=100, max_entries=10, max_account_octets=1000)
            await store.set_metadata(1, inbox, {"/private/comment": b"kept"}, limits)
            return await store.get_metadata(1, inbox, ["/private/comment"])
        finally:
            await store.close()

    assert asyncio.run(annotate()) == {"/private/comment": b"kept"}
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_version_22_store_dates_its_tombstones_from_the_upgrade(tmp_path: Path) -> None:
    """Schema 23 (decision 0069): the expunge records there are count from the upgrade (none is pruned at
    once), and mailboxes start without a horizon."""
    path = tmp_path / "v22.sqlite3"
    asyncio.run(_deliver_and_expunge_the_newest(path))
    conn = sqlite3.connect(path)
    conn.executescript(
        "ALTER TABLE tombstones DROP COLUMN expunged_at; ALTER TABLE mailboxes DROP COLUMN vanished_horizon; "
        "UPDATE meta SET value = 22 WHERE key = 'schema_version';"
    )
    conn.commit()
    conn.close()
    before = time.time()

    async def prune() -> tuple[int, int, list[int] | None]:
        store = open_store(path)
        try:
            inbox = await inbox_of(store, 1)
            kept = await store.prune_tombstones(before - 86400)
            gone = await store.prune_tombstones(time.time() + 1)
            return kept, gone, (await store.changes_since(inbox, 0)).present
        finally:
            await store.close()

    kept, gone, present = asyncio.run(prune())
    assert (kept, gone) == (0, 1)
    assert present is not None
    assert len(present) == 2


def test_a_version_25_store_gets_what_thread_references_links_from_each_stored_header(tmp_path: Path) -> None:
    """Schema 26 (decision 0079): content_sort.refs held the ids of References and In-Reply-To merged, each
    once; the migration rewrites them from the stored header as RFC 5256's REFERENCES step 1.A reads them."""
    path = tmp_path / "v25.sqlite3"
    reply = (
        b"From: a@example.org\r\nSubject: Re: x\r\nMessage-ID: <c@x>\r\n"
        b"In-Reply-To: <other@x>\r\nReferences: <a@x> <b@x>\r\n <a@x>\r\n\r\nbody\r\n"
    )
    only_in_reply_to = b"From: a@example.org\r\nSubject: x\r\nIn-Reply-To: <p@x> <q@x>\r\n\r\nbody\r\n"

    async def fill() -> None:
        store = open_store(path)
        try:
            (demo,) = await accounts(store, "demo")
            await deliver(store, reply, [demo])
            await deliver(store, only_in_reply_to, [demo])
        finally:
            await store.close()

    asyncio.run(fill())
    conn = sqlite3.connect(path)
    conn.executescript(
        "UPDATE content_sort SET refs = 'old'; UPDATE meta SET value = 25 WHERE key = 'schema_version';"
    )
    conn.commit()
    conn.close()

    async def references() -> list[tuple[str, ...]]:
        store = open_store(path)
        try:
            inbox = await inbox_of(store, 1)
            ids = [m.content_id for m in await store.list_messages(inbox)]
            found = await store.sort_fields(ids)
            return [found[i].references for i in ids]
        finally:
            await store.close()

    assert asyncio.run(references()) == [("<a@x>", "<b@x>", "<a@x>"), ("<p@x>",)]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    conn.close()


# The schema 26 migration reads each stored header as delivery does (decision 0079; found by a review).


def _refs_fresh_then_migrated(
    path: Path, raws: list[bytes]
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    async def fill() -> list[tuple[str, ...]]:
        store = open_store(path)
        try:
            (demo,) = await accounts(store, "demo")
            for raw in raws:
                await deliver(store, raw, [demo])
            inbox = await inbox_of(store, demo)
            ids = [m.content_id for m in await store.list_messages(inbox)]
            found = await store.sort_fields(ids)
            return [found[i].references for i in ids]
        finally:
            await store.close()

    fresh = asyncio.run(fill())
    conn = sqlite3.connect(path)
    conn.executescript("UPDATE meta SET value = 25 WHERE key = 'schema_version';")
    conn.commit()
    conn.close()

    async def read() -> list[tuple[str, ...]]:
        store = open_store(path)
        try:
            inbox = await inbox_of(store, 1)
            ids = [m.content_id for m in await store.list_messages(inbox)]
            found = await store.sort_fields(ids)
            return [found[i].references for i in ids]
        finally:
            await store.close()

    return fresh, asyncio.run(read())


def test_migration_keeps_utf8_message_ids_as_delivery_does(tmp_path: Path) -> None:
    parent = "From: a@example.org\r\nSubject: plan\r\nMessage-ID: <ü@x>\r\n\r\nbody\r\n".encode()
    reply = (
        "From: b@example.org\r\nSubject: other\r\nMessage-ID: <r@x>\r\n"
        "In-Reply-To: <ü@x>\r\nReferences: <root@x> <ü@x>\r\n\r\nbody\r\n"
    ).encode()
    fresh, migrated = _refs_fresh_then_migrated(tmp_path / "v25.sqlite3", [parent, reply])
    assert fresh == [(), ("<root@x>", "<ü@x>")]
    assert migrated == fresh


@pytest.mark.parametrize(
    "header",
    [
        b"X-Broken line without a colon\r\nReferences: <a@x> <b@x>\r\n",
        b"In-Reply-To: <q@x>\r\nReferences : <a@x> <b@x>\r\n",
    ],
    ids=["line-without-colon", "obs-space-before-colon"],
)
def test_migration_reads_references_as_delivery_does(tmp_path: Path, header: bytes) -> None:
    raw = b"From: a@example.org\r\nSubject: x\r\nMessage-ID: <c@x>\r\n" + header + b"\r\nbody\r\n"
    fresh, migrated = _refs_fresh_then_migrated(tmp_path / "v25.sqlite3", [raw])
    assert fresh == [("<a@x>", "<b@x>")]
    assert migrated == fresh


def test_migration_reads_only_the_header_of_a_large_message(tmp_path: Path) -> None:
    path = tmp_path / "v25.sqlite3"
    big = 64 * 1024 * 1024

    async def fill() -> None:
        store = open_store(path)
        try:
            (demo,) = await accounts(store, "demo")
            await deliver(
                store,
                b"From: a@example.org\r\nSubject: x\r\nReferences: <a@x>\r\n\r\nbody\r\n",
                [demo],
            )
        finally:
            await store.close()

    asyncio.run(fill())
    conn = sqlite3.connect(path)
    (head,) = conn.execute("SELECT data FROM content_data").fetchone()
    conn.execute("UPDATE content_data SET data = CAST(? || zeroblob(?) AS BLOB)", (bytes(head), big))
    assert conn.execute("SELECT typeof(data), length(data) FROM content_data").fetchone()[0] == "blob"
    conn.execute("UPDATE meta SET value = 25 WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    script = textwrap.dedent(
        f"""
        import asyncio
        from postoffice.store import open_store
        def hwm_kb():  # this process's peak RSS (VmHWM: per address space, not inherited like ru_maxrss)
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        before = hwm_kb()
        async def main():
            store = open_store({str(path)!r})
            await store.close()
        asyncio.run(main())
        print((hwm_kb() - before) // 1024)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr
    grown_mb = int(out.stdout.strip().splitlines()[-1])
    assert grown_mb < 40, f"opening (migrating) the store grew the process by {grown_mb} MB"
