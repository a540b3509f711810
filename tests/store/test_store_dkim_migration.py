"""The SQLite store's migration to schema version 17: the DKIM keys table (docs/decisions/0056)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from postoffice.store import DkimKey, open_store
from postoffice.store.sqlite import SCHEMA_VERSION

NOW = 1_800_000_000.0


def test_a_version_16_store_gets_the_dkim_keys_table_empty(tmp_path: Path) -> None:
    """The migration to 17 adds the table only: the domains keep working and have no keys until `postoffice
    dkim generate` makes them. (SQLite only: a schema migration is the backend's own.)"""
    path = tmp_path / "v16.sqlite3"

    async def fill() -> None:
        store = open_store(path)
        try:
            await store.add_domain("example.test")
            await store.add_account("demo@example.test", "hash")
        finally:
            await store.close()

    asyncio.run(fill())
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        DROP INDEX dkim_keys_current; DROP TABLE dkim_keys;
        UPDATE meta SET value = 16 WHERE key = 'schema_version';
        """
    )
    conn.commit()
    conn.close()

    async def check() -> None:
        store = open_store(path)
        try:
            assert await store.dkim_keys() == []
            assert await store.get_account("demo@example.test") is not None
            key = DkimKey(0, "example.test", "s", "ed25519", "PUB", "PRIV", "active", NOW, NOW)
            (added,) = await store.add_dkim_keys([key])
            assert await store.dkim_keys("example.test") == [added]
        finally:
            await store.close()

    asyncio.run(check())
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    index = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'dkim_keys_current'").fetchone()[0]
    assert "WHERE state IN ('pending', 'active')" in index
    conn.close()
