"""Disk-full scenarios of the SQLite store, run by test_store_disk_full.py inside a small filesystem of their
own (tests/support/small_disk.py): `python -m tests.store.disk_full_scenarios NAME DIRECTORY` prints what it
observed as one JSON object, and the test asserts on it.

They run in a process of their own because SQLite cannot reach the small filesystem from outside its mount
namespace (it resolves /proc/PID/root)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import sqlite3
import string
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from postoffice.message import parse_message
from postoffice.store import MailStore, StoreError, StoreFull, open_store
from postoffice.store.space import is_disk_full
from postoffice.store.sqlite.store import SqliteMailStore

KIB = 1024
MIB = 1024 * 1024


def message(i: int, size: int, varied: bool = False) -> bytes:
    """One line repeated, or (`varied`) text of random words, whose search index is realistic."""
    head = f"From: a@example.org\r\nTo: demo@example.test\r\nSubject: m{i}\r\n\r\n".encode()
    if not varied:
        line = f"message {i} line of text\r\n".encode()
        return head + line * (size // len(line))
    rng = random.Random(i)
    body = bytearray()
    while len(body) < size:
        words = ("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(10))
        body += " ".join(words).encode() + b"\r\n"
    return head + bytes(body)


async def deliver(
    store: MailStore, account_id: int, i: int, size: int = 100 * KIB, varied: bool = False
) -> str:
    raw = message(i, size, varied)
    try:
        await store.deliver(io.BytesIO(raw), parse_message(io.BytesIO(raw)), [account_id])
    except StoreFull:
        return "full"
    except StoreError as exc:
        return f"error: {exc}"
    return "ok"


def fill(directory: Path, leave: int = 0, name: str = "filler") -> Path:
    """Take the free space of the filesystem but about `leave` bytes."""
    path = directory / name
    with open(path, "wb", buffering=0) as f:
        for block in (b"\0" * 65536, b"\0" * 4096):
            try:
                while True:
                    st = os.statvfs(directory)
                    if st.f_bavail * st.f_frsize < leave + len(block):
                        break
                    f.write(block)
            except OSError:
                break
    return path


def free(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def check(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    try:
        return {
            "integrity": conn.execute("PRAGMA integrity_check").fetchone()[0],
            "uids": [r[0] for r in conn.execute("SELECT uid FROM messages ORDER BY mailbox_id, uid")],
        }
    finally:
        conn.close()


async def result(awaitable: Awaitable[Any]) -> Any:
    """The value, or the name of the StoreError subclass it raised."""
    try:
        value = await awaitable
    except StoreError as exc:
        return type(exc).__name__
    return value


async def setup(store: MailStore) -> tuple[int, int]:
    await store.add_domain("example.test")
    account = await store.add_account("demo@example.test", "hash")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    return account.id, inbox.id


async def filled_by_another_program(directory: Path) -> dict[str, Any]:
    """A few messages, then another program takes every free byte: the reserve gives deletions their room."""
    db = directory / "store" / "mail.sqlite3"
    reserve = db.with_name("mail.sqlite3.reserve")
    store = open_store(db, min_free_space=256 * KIB, disk_reserve=1 * MIB)
    seen: dict[str, Any] = {"reserve_at_open": file_size(reserve)}
    account_id, inbox_id = await setup(store)
    seen["delivered"] = [await deliver(store, account_id, i) for i in range(4)]
    filler = fill(directory)
    seen["free_when_full"] = free(directory)
    seen["deliver_when_full"] = await deliver(store, account_id, 10)
    seen["has_room_when_full"] = await store.has_room(1000)
    seen["claim_recent"] = await result(store.claim_recent(inbox_id))
    seen["reserve_after_claim"] = file_size(reserve)
    seen["store_flags"] = await result(store.store_flags(inbox_id, [1, 2], ["\\Deleted"], "add")) is not None
    seen["expunge_deleted"] = await result(store.expunge_deleted(inbox_id))
    seen["expunge"] = await result(store.expunge(inbox_id, [3]))
    seen["deliver_still_full"] = await deliver(store, account_id, 11)
    filler.unlink()
    seen["has_room_after"] = await store.has_room(1000)
    seen["deliver_after"] = await deliver(store, account_id, 12)
    seen["reserve_after"] = file_size(reserve)
    seen["stats"] = store.stats()
    await store.close()
    seen.update(check(db))
    return seen


async def filled_by_mail(directory: Path) -> dict[str, Any]:
    """Only deliveries fill the disk: they are refused while `min_free_space` is still free, deleting mail
    works and makes room that deliveries use again, and the reserve is never needed."""
    db = directory / "store" / "mail.sqlite3"
    min_free = 1 * MIB
    store = open_store(db, min_free_space=min_free, disk_reserve=1 * MIB)
    seen: dict[str, Any] = {}
    account_id, inbox_id = await setup(store)
    outcomes = []
    lowest_free = free(directory)
    for i in range(1000):
        outcome = await deliver(store, account_id, i)
        lowest_free = min(lowest_free, free(directory))
        outcomes.append(outcome)
        if outcome != "ok":
            break
    seen["accepted"] = outcomes.count("ok")
    seen["last"] = outcomes[-1]
    seen["lowest_free"] = lowest_free
    seen["min_free"] = min_free
    seen["has_room_when_refused"] = await store.has_room(100 * KIB)
    seen["claim_recent"] = await result(store.claim_recent(inbox_id))
    half = list(range(1, seen["accepted"] // 2 + 1))
    seen["store_flags"] = await result(store.store_flags(inbox_id, half, ["\\Deleted"], "add")) is not None
    seen["expunged"] = await result(store.expunge_deleted(inbox_id))
    seen["wal_after_expunge"] = file_size(db.with_name("mail.sqlite3-wal"))
    seen["has_room_after_expunge"] = await store.has_room(100 * KIB)
    seen["deliver_after_expunge"] = [await deliver(store, account_id, 2000 + i) for i in range(3)]
    seen["stats"] = store.stats()
    await store.close()
    seen.update(check(db))
    return seen


async def lost_transaction(directory: Path) -> dict[str, Any]:
    """Three requests in one batch; the middle one fails with SQLITE_FULL, and SQLite rolls the whole
    transaction back. What each caller is told must match what is stored."""
    db = directory / "store" / "mail.sqlite3"
    store = open_store(db, min_free_space=0, disk_reserve=1 * MIB)
    account_id, _ = await setup(store)
    fill(directory, leave=512 * KIB)
    go = threading.Event()

    def subscribe(name: str) -> Callable[[sqlite3.Connection, list[Any]], None]:
        def fn(conn: sqlite3.Connection, events: list[Any]) -> None:
            conn.execute("INSERT INTO subscriptions (account_id, name) VALUES (?, ?)", (account_id, name))

        return fn

    def blocker(conn: sqlite3.Connection, events: list[Any]) -> None:
        go.wait(60)
        subscribe("first")(conn, events)

    def huge(conn: sqlite3.Connection, events: list[Any]) -> None:
        # one row, no statement journal: SQLITE_FULL rolls back the transaction, not just the statement
        conn.execute("INSERT INTO content_data (id, data) VALUES (999999, zeroblob(?))", (64 * MIB,))

    assert isinstance(store, SqliteMailStore)
    writer = store._writer  # the writer thread itself, to batch raw requests
    # queued while the writer waits in `blocker`: "a", huge and "c" share a batch (with "first", or after it)
    futures = [writer.submit(fn) for fn in (blocker, subscribe("a"), huge, subscribe("c"))]
    go.set()
    told = []
    for future in futures:
        try:
            await asyncio.wrap_future(future)
            told.append("ok")
        except Exception as exc:
            told.append("full" if isinstance(exc, StoreFull) or is_disk_full(exc) else f"error: {exc}")
    stats = store.stats()
    await store.close()
    conn = sqlite3.connect(db)
    try:
        names = {
            r[0] for r in conn.execute("SELECT name FROM subscriptions WHERE name IN ('first', 'a', 'c')")
        }
        huge_stored = conn.execute("SELECT count(*) FROM content_data WHERE id = 999999").fetchone()[0]
    finally:
        conn.close()
    return {
        "told": told,
        "stored": ["first" in names, "a" in names, bool(huge_stored), "c" in names],
        "stats": stats,
    }


async def directory_change_on_a_full_disk(directory: Path) -> dict[str, Any]:
    """The CLI removes an alias on a full disk: the commit goes through on the reserve, and the directory
    marker (how the server learns of the change) moves on although no new marker file can be written."""
    db = directory / "store" / "mail.sqlite3"
    marker = db.with_name("mail.sqlite3.directory")
    store = open_store(db, min_free_space=0, disk_reserve=1 * MIB)
    await setup(store)
    await store.add_alias("info@example.test", ["demo@example.test"])
    before = marker.stat()
    fill(directory)
    seen: dict[str, Any] = {"remove_alias": await result(store.remove_alias("info@example.test"))}
    # the reserve's space went to the commit's WAL frames... and what is left to another program
    fill(directory, leave=0)
    seen["free"] = free(directory)
    assert isinstance(store, SqliteMailStore)
    seen["touch"] = await result(asyncio.to_thread(store._touch_directory_marker))
    after = marker.stat()
    seen["marker_changed"] = (after.st_ino, after.st_mtime_ns) != (before.st_ino, before.st_mtime_ns)
    seen["aliases"] = [a.source for a in await store.list_aliases()]
    await store.close()
    return seen


async def full_again_and_again(directory: Path) -> dict[str, Any]:
    """Another program fills the disk three times, nothing freed in between: after each event the reserve
    is made again (in part: there is less room than before), so flags, expunge and the removal of a mailbox
    work every time. Then the filler goes: the reserve is whole again and a tiny message is stored."""
    db = directory / "store" / "mail.sqlite3"
    reserve = db.with_name("mail.sqlite3.reserve")
    store = open_store(db, min_free_space=256 * KIB, disk_reserve=1 * MIB)
    account_id, inbox_id = await setup(store)
    for name in ("Empty0", "Empty1", "Empty2"):
        await store.create_mailbox(account_id, name)
    seen: dict[str, Any] = {
        "delivered": [await deliver(store, account_id, i) for i in range(8)],
        "events": [],
    }
    fillers = []
    for event in range(3):
        fillers.append(fill(directory, name=f"filler{event}"))
        uid = 2 * event + 1
        seen["events"].append(
            {
                "free": free(directory),
                "reserve": file_size(reserve),
                "deliver": await deliver(store, account_id, 100 + event),
                "flag": await result(store.store_flags(inbox_id, [uid], ["\\Deleted"], "add")) is not None,
                "expunge_deleted": await result(store.expunge_deleted(inbox_id)),
                "unflag": await result(store.store_flags(inbox_id, [8], ["\\Seen"], "remove")) is not None,
                "delete_mailbox": await result(store.delete_mailbox(account_id, f"Empty{event}")),
                "expunge": await result(store.expunge(inbox_id, [uid + 1])),
                "reserve_after": file_size(reserve),
            }
        )
    seen["has_room_while_full"] = await store.has_room(30)
    for filler in fillers:
        filler.unlink()
    # any write makes the reserve whole again, before mail asks for room
    await store.store_flags(inbox_id, [8], ["\\Seen"], "add")
    seen["reserve_after"] = file_size(reserve)
    seen["has_room_after"] = await store.has_room(30)
    seen["tiny"] = await deliver(store, account_id, 999, size=0)  # the header alone: 68 octets
    seen["stats"] = store.stats()
    seen["mailboxes"] = [m.name for m in await store.list_mailboxes(account_id)]
    await store.close()
    seen.update(check(db))
    return seen


async def wal_gives_room_without_reserve(directory: Path) -> dict[str, Any]:
    """No reserve; a reader held the WAL back, so it holds committed frames no checkpoint could take. The
    disk fills; an expunge fails for space, the WAL is checkpointed and truncated, and the expunge runs
    again on the space that gave back."""
    db = directory / "store" / "mail.sqlite3"
    store = open_store(db, min_free_space=0, disk_reserve=0)
    account_id, inbox_id = await setup(store)
    for i in range(4):
        await deliver(store, account_id, i)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM messages").fetchone()  # a snapshot no checkpoint may overwrite
    for i in range(100):
        await store.store_flags(inbox_id, [1, 2, 3, 4], ["\\Seen"], "remove" if i % 2 else "add")
    wal = db.with_name("mail.sqlite3-wal")
    seen: dict[str, Any] = {"wal_held": file_size(wal)}
    reader.execute("COMMIT")
    reader.close()
    fill(directory)
    seen["free"] = free(directory)
    seen["expunge"] = await result(store.expunge(inbox_id, [1]))
    seen["wal_after"] = file_size(wal)
    seen["stats"] = store.stats()
    await store.close()
    seen.update(check(db))
    return seen


async def expunge_in_steps(directory: Path) -> dict[str, Any]:
    """One EXPUNGE that needs more WAL than the reserve and the free space: removed in several transactions,
    every message of it."""
    db = directory / "store" / "mail.sqlite3"
    store = open_store(db, min_free_space=0, disk_reserve=2 * MIB)
    account_id, inbox_id = await setup(store)
    seen: dict[str, Any] = {
        "delivered": [await deliver(store, account_id, i, varied=True) for i in range(24)]
    }
    await store.store_flags(inbox_id, range(1, 25), ["\\Deleted"], "add")
    fill(directory)
    seen["expunged"] = await result(store.expunge_deleted(inbox_id))
    seen["stats"] = store.stats()
    await store.close()
    seen.update(check(db))
    return seen


async def expunge_stops_at_a_message_too_large(directory: Path) -> dict[str, Any]:
    """An expunge in steps reaches a message whose removal alone needs more than the disk gives: it fails,
    the messages removed before it stay removed, and their change events say so."""
    db = directory / "store" / "mail.sqlite3"
    store = open_store(db, min_free_space=0, disk_reserve=256 * KIB)
    account_id, inbox_id = await setup(store)
    seen: dict[str, Any] = {
        "delivered": [await deliver(store, account_id, i, size=2 * KIB) for i in range(3)]
    }
    # Latin-1 letters at random: about as many distinct trigrams as characters, so removing it from the
    # search index writes megabytes of delete entries
    rng = random.Random(3)
    noise = bytes(rng.randrange(0xC0, 0x100) for _ in range(512 * KIB))
    raw = b"From: a@example.org\r\nSubject: noise\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n"
    raw += b"\r\n".join(noise[i : i + 76] for i in range(0, len(noise), 76)) + b"\r\n"
    try:
        await store.deliver(io.BytesIO(raw), parse_message(io.BytesIO(raw)), [account_id])
        seen["delivered"].append("ok")
    except StoreError as exc:
        seen["delivered"].append(repr(exc))
    events: list[Any] = []
    store.subscribe(account_id, events.append)
    fill(directory)
    seen["expunge"] = await result(store.expunge(inbox_id, [1, 2, 3, 4]))
    # (each step's events were dispatched on the loop before its write returned)
    seen["events"] = [list(e.uids) for e in events if e.kind == "expunged"]
    seen["stats"] = store.stats()
    await store.close()
    seen.update(check(db))
    return seen


SCENARIOS = {
    "directory_change_on_a_full_disk": directory_change_on_a_full_disk,
    "filled_by_another_program": filled_by_another_program,
    "expunge_in_steps": expunge_in_steps,
    "expunge_stops_at_a_message_too_large": expunge_stops_at_a_message_too_large,
    "filled_by_mail": filled_by_mail,
    "full_again_and_again": full_again_and_again,
    "lost_transaction": lost_transaction,
    "wal_gives_room_without_reserve": wal_gives_room_without_reserve,
}


def main() -> None:
    name, directory = sys.argv[1], Path(sys.argv[2])
    (directory / "store").mkdir(parents=True, exist_ok=True)
    print(json.dumps(asyncio.run(SCENARIOS[name](directory))))


if __name__ == "__main__":
    main()
