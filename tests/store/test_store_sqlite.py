"""What the SQLite backend adds to the store contract (tests/store/contract): group commit (concurrent
writes share commits; a transaction that `submit` or `queue_record` makes is one commit) and the tombstone
rows that `changes_since` reads."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import time
from pathlib import Path

import pytest

from postoffice.message import parse_message
from postoffice.store import (
    GeneratedMessage,
    MailStore,
    NotFound,
    OutboundMessage,
    OutboundRecipient,
    RecipientResult,
    open_store,
)
from postoffice.store.api import AppendItem


def message(subject: str = "hello", body: str = "body text\r\n") -> bytes:
    return f"From: a@example.org\r\nTo: demo@example.test\r\nSubject: {subject}\r\n\r\n{body}".encode()


async def deliver(store: MailStore, raw: bytes, account_ids: list[int], mailbox: str = "INBOX") -> object:
    return await store.deliver(io.BytesIO(raw), parse_message(io.BytesIO(raw)), account_ids, mailbox)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "mail.sqlite3"


async def setup_accounts(store: MailStore, *names: str) -> list[int]:
    await store.add_domain("example.test")
    return [(await store.add_account(f"{n}@example.test", "hash")).id for n in names]


def test_concurrent_deliveries_share_commits_and_a_failing_request_fails_alone(store_path: Path) -> None:
    async def main() -> None:
        store = open_store(store_path)
        try:
            (demo,) = await setup_accounts(store, "demo")
            before = store.stats()["commits"]
            results = await asyncio.gather(
                *(deliver(store, message(f"m{i}"), [demo]) for i in range(64)),
                deliver(store, message("bad"), [demo], mailbox="NoSuchBox"),
                return_exceptions=True,
            )
            assert isinstance(results[-1], NotFound)
            assert all(isinstance(r, list) for r in results[:-1])
            assert store.stats()["commits"] - before < 64
            assert store.stats()["write_requests"] >= 65
        finally:
            await store.close()

    asyncio.run(main())


def test_flag_changes_and_recent_claims_alone_commit_without_fsync_and_others_with_it(
    store_path: Path,
) -> None:
    """Decision 0074: a batch of nothing but flag changes and \\Recent claims is committed with
    `synchronous = NORMAL`; an APPEND, EXPUNGE or delivery always with FULL (the PRAGMA is read back from
    the writer's connection through the request itself)."""

    async def main() -> None:
        store = open_store(store_path)
        try:
            (demo,) = await setup_accounts(store, "demo")
            await deliver(store, message("m1"), [demo])
            inbox = await store.get_mailbox(demo, "INBOX")
            assert inbox is not None
            writer = store._writer  # type: ignore[attr-defined]

            def synchronous(conn: sqlite3.Connection, events: list[object]) -> int:
                return int(conn.execute("PRAGMA synchronous").fetchone()[0])

            before = store.stats()["unsynced_commits"]
            await store.store_flags(inbox.id, [1], ["\\Seen"], "add")
            await store.claim_recent(inbox.id)
            assert store.stats()["unsynced_commits"] - before == 2
            # the next durable request finds FULL (2) again; alone, a non-durable one finds NORMAL (1)
            durable = await asyncio.wrap_future(writer.submit(synchronous))
            lax = await asyncio.wrap_future(writer.submit(synchronous, durable=False))
            assert (durable, lax) == (2, 1)
            before = store.stats()["unsynced_commits"]
            await deliver(store, message("m2"), [demo])
            await store.expunge(inbox.id, [1])
            assert store.stats()["unsynced_commits"] == before
            # mixed in one batch with a delivery, a flag change is committed with the fsync
            stats = store.stats()
            await asyncio.gather(
                *(deliver(store, message(f"x{i}"), [demo]) for i in range(8)),
                *(store.store_flags(inbox.id, [2], ["$K"], "add" if i % 2 else "remove") for i in range(8)),
            )
            after = store.stats()
            commits = after["commits"] - stats["commits"]
            assert commits < 16  # they shared commits
            assert after["unsynced_commits"] - stats["unsynced_commits"] < commits
        finally:
            await store.close()

    asyncio.run(main())


def test_reading_the_last_changes_costs_the_same_however_many_old_expunges_there_are(
    store_path: Path,
) -> None:
    """Each IMAP command ends with `changes_since` from the MODSEQ the session has seen: it must read the
    changes after it by the MODSEQ indexes, not every tombstone or message of the mailbox (SQLite's planner
    walked the tombstones' primary key for ORDER BY uid). Measured in SQLite virtual-machine steps."""

    async def main() -> None:
        store = open_store(store_path)
        try:
            (demo,) = await setup_accounts(store, "demo")
            inbox = await store.get_mailbox(demo, "INBOX")
            assert inbox is not None
            for start in range(0, 3000, 500):
                await store.append_many(
                    inbox.id,
                    [
                        AppendItem(io.BytesIO(raw), parse_message(io.BytesIO(raw)))
                        for raw in map(message, map(str, range(start, start + 500)))
                    ],
                )
            await store.expunge(inbox.id, range(1, 2901))  # 2,900 tombstones, 100 messages left
            base = (await store.changes_since(inbox.id, 0)).highest_modseq
            await store.store_flags(inbox.id, [2950], ["\\Seen"], "add")
            await store.expunge(inbox.id, [2990])
            steps = [0]

            def count() -> int:
                steps[0] += 1
                return 0

            conn = sqlite3.connect(store_path)
            try:
                conn.set_progress_handler(count, 1)
                changes = store._changes(conn, inbox.id, base, base + 2, 0)  # type: ignore[attr-defined]
            finally:
                conn.close()
            assert [m.uid for m in changes.messages] == [2950]
            assert changes.expunged == [2990]
            assert steps[0] < 1000, steps[0]  # a walk over the 2,900 old tombstones takes well over 10,000
        finally:
            await store.close()

    asyncio.run(main())


def test_submit_and_a_recorded_failure_with_its_dsn_are_one_commit_each(store_path: Path) -> None:
    async def main() -> None:
        store = open_store(store_path)
        try:
            (demo,) = await setup_accounts(store, "demo")
            raw = message("both")
            out = OutboundMessage("demo@example.test", [OutboundRecipient("a@remote.example")])
            commits = store.stats()["commits"]
            result = await store.submit(io.BytesIO(raw), parse_message(io.BytesIO(raw)), [demo], out)
            assert store.stats()["commits"] == commits + 1
            assert result.queue_id is not None
            assert len(result.copies) == 1
            queued = await store.queue_get(result.queue_id)
            assert queued is not None
            dsn = GeneratedMessage(
                b"report\r\n", OutboundMessage("", [OutboundRecipient("demo@example.test")])
            )
            failed = RecipientResult(queued.recipients[0].id, "failed", 550, attempted_at=time.time())
            await store.queue_record(result.queue_id, [failed], bounces=[dsn])
            assert store.stats()["commits"] == commits + 2
        finally:
            await store.close()

    asyncio.run(main())


def test_expunge_leaves_tombstone_rows_at_a_later_modseq(store_path: Path) -> None:
    async def main() -> tuple[int, int, int]:
        store = open_store(store_path)
        try:
            demo, other = await setup_accounts(store, "demo", "other")
            await deliver(store, message("shared"), [demo, other])
            inbox, other_inbox = (
                await store.get_mailbox(demo, "INBOX"),
                await store.get_mailbox(other, "INBOX"),
            )
            assert inbox is not None
            assert other_inbox is not None
            (msg,) = await store.list_messages(inbox.id)
            await store.expunge(inbox.id, [1])
            await store.expunge(other_inbox.id, [1])
            return inbox.id, other_inbox.id, msg.modseq
        finally:
            await store.close()

    inbox_id, other_id, modseq = asyncio.run(main())
    conn = sqlite3.connect(store_path)
    tomb = conn.execute("SELECT mailbox_id, uid, modseq FROM tombstones ORDER BY mailbox_id").fetchall()
    conn.close()
    assert [(t[0], t[1]) for t in tomb] == [(inbox_id, 1), (other_id, 1)]
    assert all(t[2] > modseq for t in tomb)
