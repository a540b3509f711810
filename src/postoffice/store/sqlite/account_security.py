"""Account security (docs/decisions/0052): the TOTP second factor (columns accounts.totp_secret/totp_step),
recovery codes and app passwords by their SHA-256, recent logins (at most LOGIN_HISTORY per account); the
account's identities; storage used per account. `Account.two_factor` is read with the account (it is not
in the directory snapshot, which only resolves addresses).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from postoffice.store.api import (
    LOGIN_HISTORY,
    AlreadyExists,
    AppPassword,
    ChangeEvent,
    Identity,
    LoginEvent,
    NotFound,
    SecondFactor,
)
from postoffice.store.sqlite.base import SqliteBase

_APP_COLUMNS = "id, account_id, name, created, last_used, last_protocol, last_client"
_IDENTITY_COLUMNS = "id, account_id, address, name, signature, reply_to, is_default"


def _app_password(row: Sequence[Any]) -> AppPassword:
    return AppPassword(int(row[0]), int(row[1]), str(row[2]), float(row[3]), row[4], str(row[5]), str(row[6]))


def _identity(row: Sequence[Any]) -> Identity:
    identity_id, account_id, address, name, signature, reply_to, default = row
    return Identity(int(identity_id), int(account_id), address, name, signature, reply_to, bool(default))


def _require_account(conn: sqlite3.Connection, account_id: int) -> None:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account with id {account_id}")


class AccountSecurityMixin(SqliteBase):
    async def second_factor(self, account_id: int) -> SecondFactor | None:
        def q(conn: sqlite3.Connection) -> SecondFactor | None:
            row = conn.execute(
                "SELECT totp_secret, totp_step, (SELECT count(*) FROM recovery_codes WHERE account_id = ?) "
                "FROM accounts WHERE id = ? AND totp_secret IS NOT NULL",
                (account_id, account_id),
            ).fetchone()
            return None if row is None else SecondFactor(str(row[0]), int(row[1]), int(row[2]))

        return await self._read(q)

    async def set_second_factor(
        self, account_id: int, secret: str | None, recovery_code_hashes: Sequence[str] = ()
    ) -> None:
        codes = list(dict.fromkeys(recovery_code_hashes))

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            _require_account(conn, account_id)
            conn.execute(  # the same secret again (new recovery codes) keeps its last step: no replays
                "UPDATE accounts SET totp_secret = ?, "
                "totp_step = CASE WHEN totp_secret IS ? THEN totp_step ELSE 0 END WHERE id = ?",
                (secret, secret, account_id),
            )
            conn.execute("DELETE FROM recovery_codes WHERE account_id = ?", (account_id,))
            if secret is not None:
                conn.executemany(
                    "INSERT INTO recovery_codes (account_id, code_hash) VALUES (?, ?)",
                    [(account_id, code) for code in codes],
                )

        await self._write(tx)

    async def use_totp_step(self, account_id: int, step: int) -> bool:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> bool:
            cursor = conn.execute(
                "UPDATE accounts SET totp_step = ? "
                "WHERE id = ? AND totp_secret IS NOT NULL AND totp_step < ?",
                (step, account_id, step),
            )
            return cursor.rowcount > 0

        return await self._write(tx)

    async def use_recovery_code(self, account_id: int, code_hash: str) -> bool:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> bool:
            cursor = conn.execute(
                "DELETE FROM recovery_codes WHERE account_id = ? AND code_hash = ?", (account_id, code_hash)
            )
            return cursor.rowcount > 0

        return await self._write(tx)

    async def add_app_password(
        self, account_id: int, name: str, password_hash: str, now: float
    ) -> AppPassword:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> AppPassword:
            _require_account(conn, account_id)
            try:
                cursor = conn.execute(
                    "INSERT INTO app_passwords (account_id, name, password_hash, created) "
                    "VALUES (?, ?, ?, ?)",
                    (account_id, name, password_hash, now),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"an app password named {name!r} exists") from exc
            return AppPassword(int(cursor.lastrowid or 0), account_id, name, now)

        return await self._write(tx)

    async def list_app_passwords(self, account_id: int) -> list[AppPassword]:
        def q(conn: sqlite3.Connection) -> list[AppPassword]:
            rows = conn.execute(
                f"SELECT {_APP_COLUMNS} FROM app_passwords WHERE account_id = ? ORDER BY name, id",  # noqa: S608
                (account_id,),
            )
            return [_app_password(row) for row in rows]

        return await self._read(q)

    async def find_app_password(self, account_id: int, password_hash: str) -> AppPassword | None:
        def q(conn: sqlite3.Connection) -> AppPassword | None:
            row = conn.execute(
                f"SELECT {_APP_COLUMNS} FROM app_passwords WHERE account_id = ? AND password_hash = ?",  # noqa: S608
                (account_id, password_hash),
            ).fetchone()
            return None if row is None else _app_password(row)

        return await self._read(q)

    async def app_password_used(self, password_id: int, now: float, protocol: str, client: str) -> None:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            conn.execute(
                "UPDATE app_passwords SET last_used = ?, last_protocol = ?, last_client = ? WHERE id = ?",
                (now, protocol, client, password_id),
            )

        await self._write(tx)

    async def remove_app_password(self, account_id: int, password_id: int) -> bool:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> bool:
            cursor = conn.execute(
                "DELETE FROM app_passwords WHERE account_id = ? AND id = ?", (account_id, password_id)
            )
            return cursor.rowcount > 0

        return await self._write(tx)

    async def record_login(self, account_id: int, event: LoginEvent) -> None:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            _require_account(conn, account_id)
            cursor = conn.execute(
                "INSERT INTO login_events (account_id, time, protocol, client, result, method) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (account_id, event.time, event.protocol, event.client, event.result, event.method),
            )
            # Only the newest LOGIN_HISTORY: the one that fell out now (ids grow with every insert).
            conn.execute(
                "DELETE FROM login_events WHERE account_id = ? AND id <= ("
                "SELECT id FROM login_events WHERE account_id = ? AND id < ? "
                "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (account_id, account_id, cursor.lastrowid, LOGIN_HISTORY - 1),
            )

        await self._write(tx)

    async def recent_logins(self, account_id: int, limit: int = 50) -> list[LoginEvent]:
        def q(conn: sqlite3.Connection) -> list[LoginEvent]:
            rows = conn.execute(
                "SELECT time, protocol, client, result, method FROM login_events WHERE account_id = ? "
                "ORDER BY id DESC LIMIT ?",
                (account_id, max(0, limit)),
            )
            return [LoginEvent(float(t), str(p), str(c), str(r), str(m)) for t, p, c, r, m in rows]

        return await self._read(q)

    async def list_identities(self, account_id: int) -> list[Identity]:
        def q(conn: sqlite3.Connection) -> list[Identity]:
            rows = conn.execute(
                f"SELECT {_IDENTITY_COLUMNS} FROM identities WHERE account_id = ? "  # noqa: S608
                "ORDER BY is_default DESC, address, name, id",
                (account_id,),
            )
            return [_identity(row) for row in rows]

        return await self._read(q)

    async def save_identity(self, identity: Identity) -> Identity:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> Identity:
            _require_account(conn, identity.account_id)
            values = (
                identity.address,
                identity.name,
                identity.signature,
                identity.reply_to,
                int(identity.default),
            )
            if identity.id == 0:
                cursor = conn.execute(
                    "INSERT INTO identities (address, name, signature, reply_to, is_default, account_id) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (*values, identity.account_id),
                )
                identity_id = int(cursor.lastrowid or 0)
            else:
                cursor = conn.execute(
                    "UPDATE identities SET address = ?, name = ?, signature = ?, reply_to = ?, "
                    "is_default = ? WHERE id = ? AND account_id = ?",
                    (*values, identity.id, identity.account_id),
                )
                if cursor.rowcount == 0:
                    raise NotFound(f"no identity {identity.id}")
                identity_id = identity.id
            if identity.default:
                conn.execute(
                    "UPDATE identities SET is_default = 0 WHERE account_id = ? AND id != ?",
                    (identity.account_id, identity_id),
                )
            row = conn.execute(
                f"SELECT {_IDENTITY_COLUMNS} FROM identities WHERE id = ?",  # noqa: S608
                (identity_id,),
            ).fetchone()
            return _identity(row)

        return await self._write(tx)

    async def remove_identity(self, account_id: int, identity_id: int) -> bool:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> bool:
            cursor = conn.execute(
                "DELETE FROM identities WHERE account_id = ? AND id = ?", (account_id, identity_id)
            )
            return cursor.rowcount > 0

        return await self._write(tx)

    async def storage_used(self) -> dict[int, int]:
        def q(conn: sqlite3.Connection) -> dict[int, int]:
            rows = conn.execute("SELECT account_id, sum(total_size) FROM mailboxes GROUP BY account_id")
            return {int(account_id): int(size or 0) for account_id, size in rows}

        return await self._read(q)
