"""Web sessions (docs/decisions/0046): table web_sessions, keyed by the SHA-256 of the browser's token; and
per-account preferences (table account_settings)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from postoffice.store.api import PASSWORD_DERIVED_SETTING, ChangeEvent, NotFound, WebSession
from postoffice.store.sqlite.base import SqliteBase

_COLUMNS = "id, account_id, csrf, created, last_seen, expires, client, user_agent"


def _session(row: Sequence[Any]) -> WebSession:
    return WebSession(
        str(row[0]), int(row[1]), str(row[2]), float(row[3]), float(row[4]), float(row[5]), row[6], row[7]
    )


class WebSessionsMixin(SqliteBase):
    async def account_settings(self, account_id: int, prefix: str = "") -> dict[str, str]:
        def q(conn: sqlite3.Connection) -> dict[str, str]:
            rows = conn.execute(
                "SELECT key, value FROM account_settings WHERE account_id = ? AND substr(key, 1, ?) = ?",
                (account_id, len(prefix), prefix),
            )
            return {str(key): str(value) for key, value in rows}

        return await self._read(q)

    async def set_account_setting(self, account_id: int, key: str, value: str | None) -> None:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
                raise NotFound(f"no account with id {account_id}")
            if value is None:
                conn.execute(
                    "DELETE FROM account_settings WHERE account_id = ? AND key = ?", (account_id, key)
                )
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO account_settings (account_id, key, value) VALUES (?, ?, ?)",
                    (account_id, key, value),
                )

        await self._write(tx)

    async def set_password_derived(self, account_id: int, password_hash: str, value: str) -> bool:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> bool:
            cur = conn.execute(
                "INSERT OR REPLACE INTO account_settings (account_id, key, value) "
                "SELECT id, ?, ? FROM accounts WHERE id = ? AND password_hash = ?",
                (PASSWORD_DERIVED_SETTING, value, account_id, password_hash),
            )
            return cur.rowcount > 0

        return await self._write(tx)

    async def web_session_create(self, session: WebSession) -> None:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (session.account_id,)).fetchone() is None:
                raise NotFound(f"no account with id {session.account_id}")
            conn.execute("DELETE FROM web_sessions WHERE expires <= ?", (session.created,))
            conn.execute(
                f"INSERT INTO web_sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - constant columns
                (
                    session.id,
                    session.account_id,
                    session.csrf,
                    session.created,
                    session.last_seen,
                    session.expires,
                    session.client,
                    session.user_agent,
                ),
            )

        await self._write(tx)

    async def web_session_get(self, session_id: str, now: float, idle_timeout: float) -> WebSession | None:
        def q(conn: sqlite3.Connection) -> WebSession | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM web_sessions s WHERE id = ? AND expires > ? AND last_seen > ? "  # noqa: S608 - constant columns
                "AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = s.account_id)",
                (session_id, now, now - idle_timeout),
            ).fetchone()
            return None if row is None else _session(row)

        return await self._read(q)

    async def web_session_touch(self, session_id: str, now: float) -> None:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            conn.execute(
                "UPDATE web_sessions SET last_seen = max(last_seen, ?) WHERE id = ?", (now, session_id)
            )

        await self._write(tx)

    async def web_session_delete(self, session_id: str) -> bool:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> bool:
            return conn.execute("DELETE FROM web_sessions WHERE id = ?", (session_id,)).rowcount > 0

        return await self._write(tx)

    async def web_sessions_list(self, account_id: int, now: float) -> list[WebSession]:
        def q(conn: sqlite3.Connection) -> list[WebSession]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM web_sessions WHERE account_id = ? AND expires > ? "  # noqa: S608 - constant columns
                "ORDER BY created DESC, id",
                (account_id, now),
            )
            return [_session(row) for row in rows]

        return await self._read(q)

    async def web_sessions_end(self, account_id: int, *, keep: str | None = None) -> int:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> int:
            cursor = conn.execute(
                "DELETE FROM web_sessions WHERE account_id = ? AND id IS NOT ?", (account_id, keep)
            )
            return cursor.rowcount

        return await self._write(tx)
