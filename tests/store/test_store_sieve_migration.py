"""Schema 27 (Sieve, docs/decisions/0082): a version 26 store gets `sieve_scripts`, `sieve_vacation` and its
version counter, and scripts work on it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from postoffice.store import SieveLimits, open_store
from postoffice.store.sqlite import SCHEMA_VERSION


def test_a_version_26_store_gets_the_sieve_tables(tmp_path: Path) -> None:
    path = tmp_path / "v26.sqlite3"

    async def make() -> None:
        store = open_store(path)
        try:
            await store.add_domain("example.test")
            await store.add_account("demo@example.test", "hash")
        finally:
            await store.close()

    asyncio.run(make())
    conn = sqlite3.connect(path)
    conn.executescript(
        "DROP TABLE sieve_scripts; DROP TABLE sieve_vacation; DROP TABLE sieve_duplicates; "
        "DELETE FROM meta WHERE key = 'next_sieve_version';"
        "UPDATE meta SET value = 26 WHERE key = 'schema_version';"
    )
    conn.commit()
    conn.close()

    async def use() -> tuple[int, int, bool]:
        store = open_store(path)
        try:
            demo = await store.get_account("demo@example.test")
            assert demo is not None
            limits = SieveLimits(4, 1000, 1000)
            first = await store.put_sieve_script(demo.id, "main", "keep;", limits)
            second = await store.put_sieve_script(demo.id, "main", "discard;", limits)
            await store.activate_sieve_script(demo.id, "main")
            active = await store.active_sieve_scripts([demo.id])
            return first.version, second.version, active[demo.id].text == "discard;"
        finally:
            await store.close()

    first, second, active = asyncio.run(use())
    assert (first, second, active) == (1, 2, True)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    conn.close()
