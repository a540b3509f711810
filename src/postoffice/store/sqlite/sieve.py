"""Sieve scripts and vacation replies in the SQLite store (RFC 5228, ManageSieve RFC 5804; decision 0082).

Table `sieve_scripts` (schema 27): one row per script, (account_id, name) unique, at most one active per
account (the partial unique index `sieve_scripts_active`). Table `sieve_vacation`: when the last vacation
reply went from an account to a sender with a handle (written by `commit_delivery`, `VacationReply`).

Implementation notes
- Every change runs as one request of the single writer thread, so the checks of `SieveLimits` and the
  change are one transaction: two clients at once cannot go over a limit together.
- A new text takes a new `version` from the meta counter `next_sieve_version` (never reused, also across
  scripts and after a deletion): a delivery caches checked scripts by (id, version), and an error is reported
  to the account once per version (`error_reported`, set by `commit_delivery` with the report).
- Activation moves the active mark in one transaction (the old script's first, for the unique index).
- `sieve_duplicates` holds what duplicate tests (RFC 7352) saw, written by `commit_delivery` with the
  delivery (`DuplicateMark`); expired rows are replaced when seen again.
- The rows of an account go with it (`DirectoryMixin.remove_account`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from postoffice.store.api import (
    AlreadyExists,
    ChangeEvent,
    NotFound,
    SieveLimits,
    SieveQuotaExceeded,
    SieveScript,
    SieveScriptActive,
)
from postoffice.store.sqlite.base import SqliteBase

_COLUMNS = (
    "s.id, s.account_id, s.name, s.script, s.active, s.version, s.changed, s.error_reported, a.address "
    "FROM sieve_scripts s JOIN accounts a ON a.id = s.account_id"
)


def _script(row: Sequence[Any]) -> SieveScript:
    script_id, account_id, name, text, active, version, changed, reported, address = row
    return SieveScript(
        int(script_id),
        int(account_id),
        name,
        text,
        bool(active),
        int(version),
        float(changed),
        bool(reported),
        address,
    )


def _octets(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _next_version(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "UPDATE meta SET value = value + 1 WHERE key = 'next_sieve_version' RETURNING value - 1"
    ).fetchone()
    return int(row[0])


class SieveMixin(SqliteBase):
    async def list_sieve_scripts(self, account_id: int) -> list[SieveScript]:
        def q(conn: sqlite3.Connection) -> list[SieveScript]:
            rows = conn.execute(f"SELECT {_COLUMNS} WHERE s.account_id = ? ORDER BY s.name", (account_id,))
            return [_script(row) for row in rows]

        return await self._read(q)

    async def get_sieve_script(self, account_id: int, name: str) -> SieveScript | None:
        def q(conn: sqlite3.Connection) -> SieveScript | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} WHERE s.account_id = ? AND s.name = ?", (account_id, name)
            ).fetchone()
            return None if row is None else _script(row)

        return await self._read_small(q, single=True)

    async def put_sieve_script(
        self, account_id: int, name: str, text: str, limits: SieveLimits
    ) -> SieveScript:
        size = _octets(text)
        if size > limits.max_script_octets:
            raise SieveQuotaExceeded(
                f"a script may have at most {limits.max_script_octets} octets", kind="maxsize"
            )

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> SieveScript:
            if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
                raise NotFound(f"no account {account_id}")
            others = [
                (row[0], _octets(row[1]))
                for row in conn.execute(
                    "SELECT name, script FROM sieve_scripts WHERE account_id = ? AND name != ?",
                    (account_id, name),
                )
            ]
            exists = conn.execute(
                "SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, name)
            ).fetchone()
            if exists is None and len(others) + 1 > limits.max_scripts:
                raise SieveQuotaExceeded(
                    f"an account may have at most {limits.max_scripts} scripts", kind="maxscripts"
                )
            if sum(octets for _name, octets in others) + size > limits.max_account_octets:
                raise SieveQuotaExceeded(
                    f"an account's scripts may have at most {limits.max_account_octets} octets together",
                    kind="quota",
                )
            version, now = _next_version(conn), time.time()
            conn.execute(
                "INSERT INTO sieve_scripts (account_id, name, script, active, version, changed) "
                "VALUES (?, ?, ?, 0, ?, ?) ON CONFLICT (account_id, name) DO UPDATE SET "
                "script = excluded.script, version = excluded.version, changed = excluded.changed, "
                "error_reported = 0",
                (account_id, name, text, version, now),
            )
            row = conn.execute(
                f"SELECT {_COLUMNS} WHERE s.account_id = ? AND s.name = ?", (account_id, name)
            ).fetchone()
            return _script(row)

        return await self._write(tx)

    async def rename_sieve_script(self, account_id: int, old: str, new: str) -> None:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            row = conn.execute(
                "SELECT id FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, old)
            ).fetchone()
            if row is None:
                raise NotFound(f"no script {old}")
            if old == new:
                return
            taken = conn.execute(
                "SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, new)
            ).fetchone()
            if taken is not None:
                raise AlreadyExists(f"a script {new} exists already")
            conn.execute(
                "UPDATE sieve_scripts SET name = ?, changed = ? WHERE id = ?", (new, time.time(), row[0])
            )

        await self._write(tx)

    async def delete_sieve_script(self, account_id: int, name: str) -> None:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            row = conn.execute(
                "SELECT id, active FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, name)
            ).fetchone()
            if row is None:
                raise NotFound(f"no script {name}")
            if row[1]:
                raise SieveScriptActive(f"the script {name} is active")
            conn.execute("DELETE FROM sieve_scripts WHERE id = ?", (row[0],))

        await self._write(tx)

    async def activate_sieve_script(self, account_id: int, name: str | None) -> None:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            chosen = None
            if name is not None:
                row = conn.execute(
                    "SELECT id FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, name)
                ).fetchone()
                if row is None:
                    raise NotFound(f"no script {name}")
                chosen = row[0]
            conn.execute(
                "UPDATE sieve_scripts SET active = 0 WHERE account_id = ? AND active = 1 AND id IS NOT ?",
                (account_id, chosen),
            )
            if chosen is not None:
                conn.execute("UPDATE sieve_scripts SET active = 1 WHERE id = ?", (chosen,))

        await self._write(tx)

    async def sieve_duplicates_seen(self, account_id: int, keys: Sequence[str], now: float) -> set[str]:
        wanted = list(dict.fromkeys(keys))[:500]

        def q(conn: sqlite3.Connection) -> set[str]:
            marks = ", ".join("?" * len(wanted))
            rows = conn.execute(
                f"SELECT key FROM sieve_duplicates WHERE account_id = ? AND expires > ? AND key IN ({marks})",  # noqa: S608 - placeholders only
                (account_id, now, *wanted),
            )
            return {row[0] for row in rows}

        return await self._read_small(q, single=True) if wanted else set()

    async def active_sieve_scripts(self, account_ids: Sequence[int]) -> dict[int, SieveScript]:
        wanted = list(dict.fromkeys(account_ids))

        def q(conn: sqlite3.Connection) -> dict[int, SieveScript]:
            marks = ", ".join("?" * len(wanted))
            rows = conn.execute(
                f"SELECT {_COLUMNS} WHERE s.active = 1 AND s.account_id IN ({marks})",
                wanted,
            )
            return {script.account_id: script for script in map(_script, rows)}

        if not wanted:
            return {}
        if len(wanted) > 500:  # a bound-parameter list of this size at most per statement
            found: dict[int, SieveScript] = {}
            for start in range(0, len(wanted), 500):
                found.update(await self.active_sieve_scripts(wanted[start : start + 500]))
            return found
        return await self._read_small(q, single=True)
