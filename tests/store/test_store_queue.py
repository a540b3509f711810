"""The SQLite store's migrations of the outbound queue: the queue tables (schema version 5 -> 6) and queue ids
that continue after the highest one (7 -> 8). What the queue must do is tests/store/contract/test_queue.py."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from postoffice.message import parse_message
from postoffice.store import (
    MailStore,
    OutboundMessage,
    OutboundRecipient,
    QueueStats,
    SubmitResult,
    open_store,
)
from postoffice.store.sqlite import MIGRATIONS, SCHEMA_VERSION


def message(subject: str = "hello", body: str = "body text\r\n") -> bytes:
    return f"From: demo@example.test\r\nTo: x@remote.example\r\nSubject: {subject}\r\n\r\n{body}".encode()


def outbound(
    *addresses: str,
    sender: str = "demo@example.test",
    next_attempt: float | None = None,
    account_id: int | None = None,
    eight_bit: bool = False,
    smtp_id: str | None = None,
) -> OutboundMessage:
    recipients = [OutboundRecipient(a) for a in addresses or ("x@remote.example",)]
    return OutboundMessage(
        sender,
        recipients,
        account_id=account_id,
        eight_bit=eight_bit,
        next_attempt=next_attempt,
        smtp_id=smtp_id,
    )


def run(path: Path, scenario: Callable[[MailStore], Awaitable[None]]) -> None:
    async def main() -> None:
        store = open_store(path)
        try:
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(main())


async def demo_account(store: MailStore) -> int:
    await store.add_domain("example.test")
    return (await store.add_account("demo@example.test", "hash")).id


async def submit(
    store: MailStore, raw: bytes, account_ids: list[int], out: OutboundMessage | None
) -> SubmitResult:
    return await store.submit(io.BytesIO(raw), parse_message(io.BytesIO(raw)), account_ids, out)


def test_a_version_5_store_gets_the_queue_tables(tmp_path: Path) -> None:
    path = tmp_path / "v5.sqlite3"

    async def fill(store: MailStore) -> None:
        account_id = await demo_account(store)
        await submit(store, message("old mail"), [account_id], None)

    run(path, fill)
    conn = sqlite3.connect(path)
    for table in ("queue_recipients", "queue_data", "queue_messages"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("UPDATE meta SET value = 5 WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    async def check(store: MailStore) -> None:
        account = await store.get_account("demo@example.test")
        assert account is not None
        inbox = await store.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        assert inbox.messages == 1
        assert await store.queue_stats() == QueueStats(0, 0, None)
        result = await submit(store, message("new mail"), [account.id], outbound(account_id=account.id))
        assert result.queue_id is not None
        assert len(await store.queue_due(time.time(), 10)) == 1

    run(path, check)
    conn = sqlite3.connect(path)
    try:
        assert (
            conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
            == SCHEMA_VERSION
        )
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"queue_recipients_due", "queue_recipients_message", "queue_messages_created"} <= indexes
    finally:
        conn.close()


def test_a_version_7_store_continues_queue_ids_after_its_highest(tmp_path: Path) -> None:
    """The version 8 migration: the counter starts after the highest id in the queue, the column is added."""
    path = tmp_path / "v7.sqlite3"

    async def fill(store: MailStore) -> None:
        await demo_account(store)

    run(path, fill)
    conn = sqlite3.connect(path)
    for table in ("queue_recipients", "queue_data", "queue_messages"):
        conn.execute(f"DROP TABLE {table}")
    for statement in MIGRATIONS[5]:  # the queue tables as version 6 had them
        assert isinstance(statement, str)
        conn.execute(statement)
    for queue_id in (2, 3):  # id 1 was delivered and deleted
        conn.execute(
            "INSERT INTO queue_messages (id, sender, created, size) VALUES (?, 'demo@example.test', 0, 1)",
            (queue_id,),
        )
        conn.execute("INSERT INTO queue_data (id, data) VALUES (?, x'41')", (queue_id,))
        conn.execute(
            "INSERT INTO queue_recipients (message_id, address, next_attempt) "
            "VALUES (?, 'x@remote.example', 0)",
            (queue_id,),
        )
    conn.execute("DELETE FROM meta WHERE key = 'next_queue_id'")
    conn.execute("UPDATE meta SET value = 7 WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    async def check(store: MailStore) -> None:
        assert [(m.id, m.smtp_id) for m in await store.queue_list()] == [(2, None), (3, None)]
        raw = message("new")
        new_id = await store.enqueue(raw, len(raw), outbound(smtp_id="ABC"))
        assert new_id == 4
        queued = await store.queue_get(new_id)
        assert queued is not None
        assert queued.smtp_id == "ABC"
        for queue_id in (2, 3, 4):
            await store.queue_delete(queue_id)
        assert await store.enqueue(raw, len(raw), outbound()) == 5

    run(path, check)
