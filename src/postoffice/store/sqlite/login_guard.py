"""Lockouts kept across restarts (docs/decisions/0027): table login_guard, and the marker file
`<store>.lockouts` replaced after every unlock, whose (inode, mtime) is `login_guard_generation`, so a server
running on the store (another process) notices an unlock on its next lockout hit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence

from postoffice.store.api import LOGIN_GUARD_KINDS, ChangeEvent, LoginGuardEntry
from postoffice.store.sqlite.base import SqliteBase
from postoffice.store.sqlite.markers import ChangeMarker

#: Unlocking a client or an account ends its own lockouts and the pairs it is in.
_UNLOCK = {
    "client": "DELETE FROM login_guard WHERE kind IN ('client', 'pair') AND client = ? "
    "RETURNING kind, client, account, until, since",
    "account": "DELETE FROM login_guard WHERE kind IN ('account', 'pair') AND account = ? "
    "RETURNING kind, client, account, until, since",
}


class LoginGuardMixin(SqliteBase):
    _lockouts_marker: ChangeMarker

    async def login_guard_entries(self, now: float) -> list[LoginGuardEntry]:
        def q(conn: sqlite3.Connection) -> list[LoginGuardEntry]:
            rows = conn.execute(
                "SELECT kind, client, account, until, since FROM login_guard WHERE until > ? "
                "ORDER BY kind, client, account",
                (now,),
            )
            return [LoginGuardEntry(r[0], r[1], r[2], float(r[3]), float(r[4])) for r in rows]

        return await self._read(q)

    async def login_guard_save(self, entries: Sequence[LoginGuardEntry], now: float) -> None:
        rows = [(e.kind, e.client, e.account, e.until, e.since) for e in entries]
        for entry in entries:
            if entry.kind not in LOGIN_GUARD_KINDS:
                raise ValueError(f"not a login guard kind: {entry.kind!r}")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            conn.execute("DELETE FROM login_guard WHERE until <= ?", (now,))
            conn.executemany(
                "INSERT OR REPLACE INTO login_guard (kind, client, account, until, since) "
                "VALUES (?, ?, ?, ?, ?)",
                [row for row in rows if row[3] > now],
            )

        await self._write(tx)

    async def login_guard_unlock(
        self, *, client: str | None = None, account: str | None = None
    ) -> list[LoginGuardEntry]:
        if (client is None) == (account is None):
            raise ValueError("unlock a client or an account")
        kind, value = ("client", client) if client is not None else ("account", account)

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> list[LoginGuardEntry]:
            rows = conn.execute(_UNLOCK[kind], (value,)).fetchall()
            now = time.time()  # rows that had ended are cleaned up too, but were no lockout to report
            entries = [LoginGuardEntry(r[0], r[1], r[2], float(r[3]), float(r[4])) for r in rows]
            return sorted((e for e in entries if e.until > now), key=lambda e: (e.kind, e.client, e.account))

        deleted = await self._write(tx)
        if deleted:
            await asyncio.get_running_loop().run_in_executor(self._readers, self._touch_lockouts_marker)
        return deleted

    def _touch_lockouts_marker(self) -> None:
        self._lockouts_marker.touch()

    def login_guard_generation(self) -> object:
        return self._lockouts_marker.generation()
