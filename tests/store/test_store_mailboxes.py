"""The SQLite store's migration from schema version 1 (mailboxes and subscriptions; what mailboxes must do
is tests/store/contract/test_mailboxes.py), and helpers the other SQLite tests share."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from pathlib import Path

from postoffice.message import parse_message
from postoffice.store import DeliveredCopy, MailStore, open_store
from postoffice.store.sqlite import SCHEMA_VERSION


def raw(subject: str) -> bytes:
    return f"From: a@example.org\r\nSubject: {subject}\r\n\r\nbody {subject}\r\n".encode()


def run(path: Path, scenario: Callable[[MailStore, int], Awaitable[None]]) -> None:
    async def main() -> None:
        store = open_store(path)
        try:
            await store.add_domain("example.test")
            account = await store.add_account("demo@example.test", "hash")
            await scenario(store, account.id)
        finally:
            await store.close()

    asyncio.run(main())


async def append(
    store: MailStore,
    mailbox_id: int,
    subject: str,
    flags: Iterable[str] = (),
    when: float | None = None,
) -> DeliveredCopy:
    data = raw(subject)
    return await store.append(mailbox_id, io.BytesIO(data), parse_message(io.BytesIO(data)), flags, when)


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
            assert inbox is not None
            assert (await store.mailbox_status(inbox.id)).recent == 0
        finally:
            await store.close()

    asyncio.run(main())
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    conn.close()
