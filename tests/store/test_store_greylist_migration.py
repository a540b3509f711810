"""Schema 28 (greylisting, docs/decisions/0089): a version 27 store gets the `greylist` table, and greylisting
records are kept in it; each save forgets at most a batch of the expired ones."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from postoffice.store import GreylistEntry, open_store
from postoffice.store.sqlite import SCHEMA_VERSION
from postoffice.store.sqlite.greylist import PRUNE_BATCH


def test_a_version_27_store_gets_the_greylist_table(tmp_path: Path) -> None:
    path = tmp_path / "v27.sqlite3"

    async def make() -> None:
        store = open_store(path)
        try:
            await store.add_domain("example.test")
        finally:
            await store.close()

    asyncio.run(make())
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE greylist; UPDATE meta SET value = 27 WHERE key = 'schema_version';")
    conn.commit()
    conn.close()
    record = GreylistEntry('t "192.0.2.0/24" "a@b.example" "demo@example.test"', 1.0, 0, 1.0, 400.0)

    async def use() -> dict[str, GreylistEntry]:
        store = open_store(path)
        try:
            await store.greylist_save([record], 2.0)
            return await store.greylist_entries([record.key], 2.0)
        finally:
            await store.close()

    assert asyncio.run(use()) == {record.key: record}
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    assert SCHEMA_VERSION == 28
    index = conn.execute("SELECT name FROM sqlite_master WHERE name = 'greylist_expires'").fetchone()
    assert index is not None
    conn.close()


def test_one_save_forgets_at_most_a_batch_of_expired_records_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "mail.sqlite3"
    expired = [GreylistEntry(f"t {n}", 0.0, 0, 0.0, 10.0 + n) for n in range(PRUNE_BATCH + 5)]

    async def scenario() -> list[tuple[float | None, int]]:
        store = open_store(path)
        try:
            await store.greylist_save(expired, 0.0)
            left = []
            for _ in range(2):
                await store.greylist_save([], 1e6)
                conn = sqlite3.connect(path)
                left.append(conn.execute("SELECT min(expires), count(*) FROM greylist").fetchone())
                conn.close()
            return left
        finally:
            await store.close()

    assert asyncio.run(scenario()) == [(10.0 + PRUNE_BATCH, 5), (None, 0)]
