"""Greylisting records kept across restarts (RFC 6647, docs/decisions/0089): table greylist, one row per key.

Implementation notes
- The store only keeps and forgets: which keys exist, what they mean and when a record passes is
  `postoffice.spam.greylist`'s. A read is of three keys (the triplet and its client network's two counts),
  so it runs on the event loop (`_read_few`), as the other reads of a few rows by key. Its SQLite errors
  are raised as StoreError, as the writes' are.
- Every save forgets at most PRUNE_BATCH expired rows, oldest first (the index on `expires`): the table stays
  as large as the records still in force, and no one write pays for a long downtime's backlog at once.
- Saves are committed without waiting for the fsync (`durable=False`, as flag changes are: decision 0074):
  a greylisting record lost to a power cut costs the sender one more delay; a restart loses nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from postoffice.store.api import ChangeEvent, GreylistEntry, StoreError
from postoffice.store.sqlite.base import SqliteBase

#: Expired rows forgotten per save at most.
PRUNE_BATCH = 1000


class GreylistMixin(SqliteBase):
    async def greylist_entries(self, keys: Sequence[str], now: float) -> dict[str, GreylistEntry]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}

        def q(conn: sqlite3.Connection) -> dict[str, GreylistEntry]:
            marks = ", ".join("?" * len(wanted))
            rows = conn.execute(
                "SELECT key, first_seen, passes, last_seen, expires FROM greylist "  # noqa: S608 - marks
                f"WHERE key IN ({marks}) AND expires > ?",
                (*wanted, now),
            )
            return {
                str(r[0]): GreylistEntry(str(r[0]), float(r[1]), int(r[2]), float(r[3]), float(r[4]))
                for r in rows
            }

        try:
            return await self._read_few(q, len(wanted))
        except sqlite3.Error as exc:  # the caller lets the recipient pass on a StoreError (decision 0089)
            raise StoreError(str(exc)) from exc

    async def greylist_save(self, entries: Sequence[GreylistEntry], now: float) -> None:
        rows = [(e.key, e.first_seen, e.passes, e.last_seen, e.expires) for e in entries]

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            conn.execute(
                "DELETE FROM greylist WHERE key IN "
                "(SELECT key FROM greylist WHERE expires <= ? ORDER BY expires LIMIT ?)",
                (now, PRUNE_BATCH),
            )
            conn.executemany(
                "INSERT OR REPLACE INTO greylist (key, first_seen, passes, last_seen, expires) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )

        await self._write(tx, durable=False)  # decision 0089: a lost record costs a delay, not mail
