"""The SQLite store's migration to schema version 16 (account security, quotas, identities: decisions 0052,
0053)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from postoffice.store import Identity, LoginEvent, SecondFactor, open_store
from postoffice.store.sqlite import SCHEMA_VERSION

NOW = 1_800_000_000.0


def test_a_version_15_store_gets_the_account_security_tables_with_everything_off(tmp_path: Path) -> None:
    """The migration to 16: new columns with "off" defaults (no TOTP, no quota, the default sending limit) and
    new tables; the accounts keep working. (SQLite only: a schema migration is the backend's own.)"""
    path = tmp_path / "v15.sqlite3"

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
        DROP TABLE recovery_codes; DROP TABLE app_passwords; DROP TABLE login_events; DROP TABLE identities;
        ALTER TABLE accounts DROP COLUMN totp_secret; ALTER TABLE accounts DROP COLUMN totp_step;
        ALTER TABLE accounts DROP COLUMN quota; ALTER TABLE accounts DROP COLUMN send_limit;
        UPDATE meta SET value = 15 WHERE key = 'schema_version';
        """
    )
    conn.commit()
    conn.close()

    async def check() -> None:
        store = open_store(path)
        try:
            account = await store.get_account("demo@example.test")
            assert account is not None
            assert (account.two_factor, account.quota, account.send_limit) == (False, 0, 0)
            await store.add_app_password(account.id, "Phone", "1" * 64, NOW)
            await store.record_login(account.id, LoginEvent(NOW, "imap", "::1", "ok"))
            await store.save_identity(Identity(0, account.id, "demo@example.test"))
            await store.set_second_factor(account.id, "SECRET", ["a" * 64])
            assert await store.second_factor(account.id) == SecondFactor("SECRET", 0, 1)
        finally:
            await store.close()

    asyncio.run(check())
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    conn.close()
