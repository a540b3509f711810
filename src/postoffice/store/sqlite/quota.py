"""Storage quotas in the SQLite store (docs/decisions/0053).

What counts: the octets of every message row of every mailbox of the account (`mailboxes.total_size`, kept
by every append, copy and expunge; a copy counts again although its content is shared), as
`storage_used` reports them. Messages flagged \\Deleted count until they are expunged.

- `check_quota_room` runs inside the transaction of the writes that add mail at the account's own request
  (APPEND, MULTIAPPEND, COPY: `messages`), on the single writer thread, so concurrent sessions cannot go
  over the quota together. A quota of 0 costs one primary-key probe of `accounts`.
- `quota_usage` answers the delivery pipeline before a delivery: the quotas come from the directory
  snapshot (reloaded after every directory change, `update_account` included), so a delivery to accounts
  without a quota costs no I/O; only accounts with one get one read of their mailboxes' sizes. The
  delivery commits later, in another transaction: concurrent deliveries may each overshoot by one message.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING

from postoffice.store.api import QuotaUse, quota_refusal
from postoffice.store.sqlite.base import SqliteBase

if TYPE_CHECKING:
    from postoffice.store.sqlite.directory import DirectorySnapshot


def account_quota(conn: sqlite3.Connection, account_id: int) -> int:
    """The account's quota in octets (0: none, or no such account)."""
    row = conn.execute("SELECT quota FROM accounts WHERE id = ?", (account_id,)).fetchone()
    return int(row[0]) if row is not None else 0


def account_used(conn: sqlite3.Connection, account_id: int) -> int:
    """The octets the account's mailboxes hold now."""
    row = conn.execute(
        "SELECT coalesce(sum(total_size), 0) FROM mailboxes WHERE account_id = ?", (account_id,)
    ).fetchone()
    return int(row[0])


def check_quota_room(conn: sqlite3.Connection, account_id: int, adding: int, largest: int | None) -> None:
    """OverQuota (`quota_refusal`) when storing `adding` more octets, the largest message `largest`, would
    take the account over its quota; in the caller's transaction (module notes)."""
    quota = account_quota(conn, account_id)
    if quota <= 0:
        return
    refusal = quota_refusal(quota, account_used(conn, account_id), adding, largest)
    if refusal is not None:
        raise refusal


class QuotaMixin(SqliteBase):
    if TYPE_CHECKING:

        async def _directory_snapshot(self) -> DirectorySnapshot: ...

    async def quota_usage(self, account_ids: Iterable[int]) -> dict[int, QuotaUse]:
        snapshot = await self._directory_snapshot()
        limited = {a: snapshot.quotas[a] for a in account_ids if a in snapshot.quotas}
        if not limited:
            return {}

        def q(conn: sqlite3.Connection) -> dict[int, QuotaUse]:
            marks = ", ".join("?" * len(limited))
            used = {
                int(account_id): int(size)
                for account_id, size in conn.execute(
                    "SELECT account_id, coalesce(sum(total_size), 0) FROM mailboxes "  # noqa: S608
                    f"WHERE account_id IN ({marks}) GROUP BY account_id",
                    tuple(limited),
                )
            }
            return {a: QuotaUse(a, quota, used.get(a, 0)) for a, quota in limited.items()}

        return await self._read(q)
