"""Conversations in the SQLite store (docs/decisions/0047): every message row carries its `thread_id`,
given at delivery by `rows.thread_for`; the index messages_thread (thread_id, mailbox_id, uid) finds a
conversation's messages in a folder, and the (mailbox_id, uid) index walks a folder newest first.

A page of conversations is found by walking the folder from its newest message down and keeping the first
message of each conversation met (its head); a page below the first skips the conversations with a message at
or above its bound (one index probe each), so a page costs in proportion to the messages it shows, not to the
folder.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Sequence

from postoffice.store.api import MessageInfo, ThreadSummary
from postoffice.store.sqlite.base import SqliteBase
from postoffice.store.sqlite.rows import MESSAGE_COLUMNS, message_info

#: Ids put in one IN (...) list.
_CHUNK = 500


def _heads_below(conn: sqlite3.Connection, mailbox_id: int, before: int | None, limit: int) -> list[int]:
    bound = (1 << 62) if before is None else before
    seen: set[int] = set()
    heads: list[int] = []
    rows = conn.execute(
        "SELECT thread_id, uid FROM messages WHERE mailbox_id = ? AND uid < ? ORDER BY uid DESC",
        (mailbox_id, bound),
    )
    for thread_id, uid in rows:
        if thread_id in seen:
            continue
        if thread_id:  # 0: a message of no conversation (a backend's default), alone
            seen.add(thread_id)
            if (
                before is not None
                and conn.execute(
                    "SELECT 1 FROM messages WHERE thread_id = ? AND mailbox_id = ? AND uid >= ? LIMIT 1",
                    (thread_id, mailbox_id, before),
                ).fetchone()
            ):
                continue  # its head is on a newer page
        heads.append(int(uid))
        if len(heads) >= limit:
            break
    return heads


def _heads_above(conn: sqlite3.Connection, mailbox_id: int, after: int, limit: int) -> list[int]:
    """The `limit` lowest heads above `after`: walking up from it, a conversation first met at UID u has its
    head at u or higher (one probe finds it), and every head at or below the UID reached has been met."""
    seen: set[int] = set()
    pending: list[int] = []  # heads met, not yet reached by the walk (a heap)
    heads: list[int] = []
    rows = conn.execute(
        "SELECT thread_id, uid FROM messages WHERE mailbox_id = ? AND uid > ? ORDER BY uid",
        (mailbox_id, after),
    )
    for thread_id, uid in rows:
        while pending and pending[0] < uid and len(heads) < limit:
            heads.append(heapq.heappop(pending))
        if len(heads) >= limit:
            break
        if thread_id in seen:
            continue
        head = int(uid)
        if thread_id:
            seen.add(thread_id)
            head = int(
                conn.execute(
                    "SELECT max(uid) FROM messages WHERE thread_id = ? AND mailbox_id = ?",
                    (thread_id, mailbox_id),
                ).fetchone()[0]
            )
        heapq.heappush(pending, head)
    while pending and len(heads) < limit:
        heads.append(heapq.heappop(pending))
    return heads


class ThreadsMixin(SqliteBase):
    async def conversations(
        self, mailbox_id: int, *, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> list[MessageInfo]:
        def q(conn: sqlite3.Connection) -> list[MessageInfo]:
            if limit <= 0:
                return []
            if after is None:
                heads = _heads_below(conn, mailbox_id, before, limit)
            else:
                heads = _heads_above(conn, mailbox_id, after, limit)
            marks = ",".join("?" * len(heads))
            sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid IN ({marks})"  # noqa: S608
            found = [message_info(r) for r in conn.execute(sql, (mailbox_id, *heads))]
            return sorted(found, key=lambda m: m.uid, reverse=True)

        return await self._read(q)

    async def thread_summaries(
        self, account_id: int, thread_ids: Sequence[int], mailbox_ids: Sequence[int]
    ) -> dict[int, ThreadSummary]:
        threads = sorted({t for t in thread_ids if t})

        def q(conn: sqlite3.Connection) -> dict[int, ThreadSummary]:
            owned = _owned(conn, account_id, mailbox_ids)
            if not owned:
                return {}
            found: dict[int, ThreadSummary] = {}
            boxes = ",".join("?" * len(owned))
            for start in range(0, len(threads), _CHUNK):
                chunk = threads[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                # \\Seen is bit 1 and \\Flagged bit 4 of flags (columns.FLAG_BITS); only "?" marks put in
                sql = (
                    "SELECT thread_id, count(*), sum(flags & 1 = 0), sum(flags & 4 != 0) FROM messages "  # noqa: S608
                    f"WHERE thread_id IN ({marks}) AND mailbox_id IN ({boxes}) GROUP BY thread_id"
                )
                for thread_id, count, unseen, flagged in conn.execute(sql, (*chunk, *owned)):
                    found[int(thread_id)] = ThreadSummary(int(count), int(unseen), int(flagged))
            return found

        return await self._read(q)

    async def thread_messages(
        self,
        account_id: int,
        thread_ids: Sequence[int],
        mailbox_ids: Sequence[int] | None = None,
        limit: int = 1000,
    ) -> list[MessageInfo]:
        threads = sorted({t for t in thread_ids if t})[:_CHUNK]

        def q(conn: sqlite3.Connection) -> list[MessageInfo]:
            if mailbox_ids is None:
                owned = [
                    int(r[0])
                    for r in conn.execute("SELECT id FROM mailboxes WHERE account_id = ?", (account_id,))
                ]
            else:
                owned = _owned(conn, account_id, mailbox_ids)
            if not owned or not threads or limit <= 0:
                return []
            marks = ",".join("?" * len(threads))
            boxes = ",".join("?" * len(owned))
            sql = (
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE thread_id IN ({marks}) "  # noqa: S608
                f"AND mailbox_id IN ({boxes}) ORDER BY internaldate DESC, id DESC LIMIT ?"
            )
            found = [message_info(r) for r in conn.execute(sql, (*threads, *owned, limit))]
            found.reverse()
            return found

        return await self._read(q)


def _owned(conn: sqlite3.Connection, account_id: int, mailbox_ids: Sequence[int]) -> list[int]:
    """Those of `mailbox_ids` that are the account's (a request never reaches another account's mail)."""
    wanted = sorted(set(mailbox_ids))[:_CHUNK]
    if not wanted:
        return []
    marks = ",".join("?" * len(wanted))
    sql = f"SELECT id FROM mailboxes WHERE account_id = ? AND id IN ({marks})"  # noqa: S608
    return [int(r[0]) for r in conn.execute(sql, (account_id, *wanted))]
