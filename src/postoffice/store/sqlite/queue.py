"""The outbound queue in the SQLite store (docs/decisions/0017): queue_messages, queue_recipients, and the
bytes in queue_data (written and streamed like content_data).

- The rows of a queued message (`_enqueue_rows`) and of its delivery results (`_record_rows`) are written
  inside the requests of `enqueue` and of `commit_delivery` (`delivery.py`: local copies, the queue entry,
  results and the DSNs they caused in one request, so in one savepoint: all or nothing). A final recipient
  status never changes again (the whole request is refused), so results applied twice cannot queue a DSN
  twice. Queue subscribers are called after the commit, like change subscribers.
- Queue ids come from meta.next_queue_id (version 8), which only grows, so an id names one message for the
  life of the installation (an INTEGER PRIMARY KEY alone would reuse the highest id once it is deleted,
  and an emptied queue would start again at 1). A queued message keeps the id of the SMTP transaction that
  submitted it (`smtp_id`), so its delivery can be followed from the submission's log line.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from typing import IO, Any

from postoffice.store.api import (
    FINAL_STATUSES,
    ChangeEvent,
    NotFound,
    OutboundMessage,
    QueuedMessage,
    QueuedRecipient,
    QueueStats,
    RecipientResult,
    StoreError,
    check_outbound,
)
from postoffice.store.sqlite.base import SqliteBase
from postoffice.store.sqlite.connection import STREAM_THRESHOLD, write_blob


def _queued_recipient(r: Sequence[Any]) -> QueuedRecipient:
    """From a row of SqliteMailStore._QUEUE_RECIPIENT_SQL (message_id first)."""
    return QueuedRecipient(
        id=int(r[1]),
        address=r[2],
        orcpt=r[3],
        notify=r[4],
        status=r[5],
        attempts=int(r[6]),
        next_attempt=float(r[7]),
        first_attempt=r[8],
        last_attempt=r[9],
        last_code=r[10],
        last_enhanced=r[11],
        last_text=r[12],
        remote_mta=r[13],
        delay_warned=bool(r[14]),
    )


def _queued_message(row: Sequence[Any], recipients: Iterable[QueuedRecipient]) -> QueuedMessage:
    """From a row of SqliteMailStore._QUEUE_MESSAGE_SQL."""
    return QueuedMessage(
        id=int(row[0]),
        sender=row[1],
        envid=row[2],
        ret=row[3],
        account_id=row[4],
        created=float(row[5]),
        size=int(row[6]),
        smtputf8=bool(row[7]),
        eight_bit=bool(row[8]),
        recipients=tuple(recipients),
        smtp_id=row[9],
        require_tls=bool(row[10]),
    )


class QueueMixin(SqliteBase):
    async def enqueue(self, source: IO[bytes] | bytes, size: int, outbound: OutboundMessage) -> int:
        check_outbound(outbound)
        stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> int:
            return self._enqueue_rows(conn, events, stream, size, outbound)

        return await self._write(tx, grows=size)

    @staticmethod
    def _enqueue_rows(
        conn: sqlite3.Connection,
        events: list[ChangeEvent],
        source: IO[bytes],
        size: int,
        outbound: OutboundMessage,
        now: float | None = None,
    ) -> int:
        """The message, its bytes and one row per recipient; a "queue" event for the runner."""
        now = time.time() if now is None else now
        due = now if outbound.next_attempt is None else outbound.next_attempt
        counter = conn.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'next_queue_id' RETURNING value - 1"
        ).fetchone()
        if counter is None:
            raise StoreError("the store has no queue id counter (meta.next_queue_id)")
        queue_id = int(
            conn.execute(
                "INSERT INTO queue_messages (id, sender, envid, ret, account_id, created, size, smtputf8, "
                "eight_bit, smtp_id, require_tls) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    int(counter[0]),
                    outbound.sender,
                    outbound.envid,
                    None if outbound.ret is None else outbound.ret.upper(),
                    outbound.account_id,
                    now,
                    size,
                    int(outbound.smtputf8),
                    int(outbound.eight_bit),
                    outbound.smtp_id,
                    int(outbound.require_tls),
                ),
            ).fetchone()[0]
        )
        write_blob(conn, "queue_data", queue_id, source, size)
        conn.executemany(
            "INSERT INTO queue_recipients (message_id, address, orcpt, notify, next_attempt) "
            "VALUES (?, ?, ?, ?, ?)",
            [(queue_id, r.address, r.orcpt, r.notify, due) for r in outbound.recipients],
        )
        events.append(ChangeEvent("queue", 0, 0, (queue_id,)))
        return queue_id

    _QUEUE_MESSAGE_SQL = (
        "SELECT id, sender, envid, ret, account_id, created, size, smtputf8, eight_bit, smtp_id, require_tls "
        "FROM queue_messages"
    )

    _QUEUE_RECIPIENT_SQL = (
        "SELECT message_id, id, address, orcpt, notify, status, attempts, next_attempt, first_attempt, "
        "last_attempt, last_code, last_enhanced, last_text, remote_mta, delay_warned FROM queue_recipients"
    )

    @classmethod
    def _queued_messages(cls, conn: sqlite3.Connection, ids: Sequence[int]) -> list[QueuedMessage]:
        """The messages with these ids (those that exist), in the order given, with all their recipients."""
        rows: dict[int, Sequence[Any]] = {}
        recipients: dict[int, list[QueuedRecipient]] = {}
        for start in range(0, len(ids), 500):  # stay below SQLite's bound-parameter limit
            batch = list(ids[start : start + 500])
            marks = ",".join("?" * len(batch))
            for row in conn.execute(cls._QUEUE_MESSAGE_SQL + f" WHERE id IN ({marks})", batch):
                rows[int(row[0])] = row
            for r in conn.execute(
                cls._QUEUE_RECIPIENT_SQL + f" WHERE message_id IN ({marks}) ORDER BY id", batch
            ):
                recipients.setdefault(int(r[0]), []).append(_queued_recipient(r))
        return [
            _queued_message(row, recipients.get(queue_id, []))
            for queue_id in ids
            if (row := rows.get(queue_id)) is not None
        ]

    async def queue_due(self, now: float, limit: int, exclude: Collection[int] = ()) -> list[QueuedMessage]:
        skip = json.dumps(sorted(exclude))

        def q(conn: sqlite3.Connection) -> list[QueuedMessage]:
            ids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT id FROM queue_messages WHERE id IN (SELECT message_id FROM queue_recipients "
                    "WHERE status = 'pending' AND next_attempt <= ?) "
                    "AND id NOT IN (SELECT value FROM json_each(?)) ORDER BY created, id LIMIT ?",
                    (now, skip, max(limit, 0)),
                )
            ]
            return self._queued_messages(conn, ids)

        return await self._read(q)

    async def queue_get(self, queue_id: int) -> QueuedMessage | None:
        def q(conn: sqlite3.Connection) -> QueuedMessage | None:
            found = self._queued_messages(conn, [queue_id])
            return found[0] if found else None

        return await self._read(q)

    async def queue_list(self) -> list[QueuedMessage]:
        def q(conn: sqlite3.Connection) -> list[QueuedMessage]:
            ids = [int(r[0]) for r in conn.execute("SELECT id FROM queue_messages ORDER BY created, id")]
            return self._queued_messages(conn, ids)

        return await self._read(q)

    async def queue_read(self, queue_id: int) -> bytes:
        def q(conn: sqlite3.Connection) -> bytes:
            row = conn.execute("SELECT data FROM queue_data WHERE id = ?", (queue_id,)).fetchone()
            if row is None:
                raise NotFound(f"no queued message {queue_id}")
            return bytes(row[0])

        return await self._read(q)

    async def queue_open(self, queue_id: int, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        def size_of(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT size FROM queue_messages WHERE id = ?", (queue_id,)).fetchone()
            if row is None:
                raise NotFound(f"no queued message {queue_id}")
            return int(row[0])

        size = await self._read(size_of)
        if size <= STREAM_THRESHOLD:
            data = await self.queue_read(queue_id)
            for offset in range(0, len(data), chunk_size):
                yield data[offset : offset + chunk_size]
            return
        async for chunk in self._stream_blob("queue_data", queue_id, chunk_size):
            yield chunk

    @classmethod
    def _record_rows(
        cls, conn: sqlite3.Connection, queue_id: int, results: Sequence[RecipientResult], *, bounces: bool
    ) -> None:
        """Delivery results of a queued message (`Delivery.record`): a final status never changes again, so
        results applied twice cannot queue a DSN twice (the whole request fails)."""
        row = conn.execute("SELECT sender FROM queue_messages WHERE id = ?", (queue_id,)).fetchone()
        if row is None:
            raise NotFound(f"no queued message {queue_id}")
        if bounces and row[0] == "":
            raise StoreError(f"queued message {queue_id} has the null sender: it gets no DSN")
        for r in results:
            current = conn.execute(
                "SELECT status FROM queue_recipients WHERE id = ? AND message_id = ?",
                (r.recipient_id, queue_id),
            ).fetchone()
            if current is None:
                raise NotFound(f"queued message {queue_id} has no recipient {r.recipient_id}")
            if current[0] in FINAL_STATUSES:
                raise StoreError(
                    f"recipient {r.recipient_id} of queued message {queue_id} is {current[0]} already"
                )
            attempted = r.attempted_at is not None
            conn.execute(
                "UPDATE queue_recipients SET status = ?, attempts = attempts + ?, "
                "first_attempt = coalesce(first_attempt, ?), last_attempt = coalesce(?, last_attempt), "
                "next_attempt = coalesce(?, next_attempt), delay_warned = coalesce(?, delay_warned), "
                # a new attempt replaces the last reply (even with "none"); else only what is given
                "last_code = CASE WHEN ? THEN ? ELSE coalesce(?, last_code) END, "
                "last_enhanced = CASE WHEN ? THEN ? ELSE coalesce(?, last_enhanced) END, "
                "last_text = CASE WHEN ? THEN ? ELSE coalesce(?, last_text) END, "
                "remote_mta = CASE WHEN ? THEN ? ELSE coalesce(?, remote_mta) END "
                "WHERE id = ?",
                (
                    r.status,
                    int(attempted),
                    r.attempted_at,
                    r.attempted_at,
                    r.next_attempt,
                    None if r.delay_warned is None else int(r.delay_warned),
                    *(attempted, r.code, r.code),
                    *(attempted, r.enhanced, r.enhanced),
                    *(attempted, r.text, r.text),
                    *(attempted, r.remote_mta, r.remote_mta),
                    r.recipient_id,
                ),
            )

    @staticmethod
    def _delete_queued(conn: sqlite3.Connection, queue_id: int) -> bool:
        conn.execute("DELETE FROM queue_recipients WHERE message_id = ?", (queue_id,))
        conn.execute("DELETE FROM queue_data WHERE id = ?", (queue_id,))
        return conn.execute("DELETE FROM queue_messages WHERE id = ?", (queue_id,)).rowcount > 0

    async def queue_delete(self, queue_id: int) -> bool:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> bool:
            return self._delete_queued(conn, queue_id)

        return await self._write(tx)

    async def queue_retry(self, queue_id: int | None = None) -> int:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> int:
            now = time.time()
            if queue_id is None:
                conn.execute(
                    "UPDATE queue_recipients SET next_attempt = ? "
                    "WHERE status = 'pending' AND next_attempt > ?",
                    (now, now),
                )
                count = conn.execute("SELECT count(*) FROM queue_recipients WHERE status = 'pending'")
            else:
                if conn.execute("SELECT 1 FROM queue_messages WHERE id = ?", (queue_id,)).fetchone() is None:
                    raise NotFound(f"no queued message {queue_id}")
                conn.execute(
                    "UPDATE queue_recipients SET next_attempt = ? "
                    "WHERE status = 'pending' AND next_attempt > ? AND message_id = ?",
                    (now, now, queue_id),
                )
                count = conn.execute(
                    "SELECT count(*) FROM queue_recipients WHERE status = 'pending' AND message_id = ?",
                    (queue_id,),
                )
            due = int(count.fetchone()[0])
            if due:
                events.append(ChangeEvent("queue", 0, 0, () if queue_id is None else (queue_id,)))
            return due

        return await self._write(tx)

    async def queue_stats(self) -> QueueStats:
        def q(conn: sqlite3.Connection) -> QueueStats:
            messages, oldest = conn.execute("SELECT count(*), min(created) FROM queue_messages").fetchone()
            pending = conn.execute(
                "SELECT count(*) FROM queue_recipients WHERE status = 'pending'"
            ).fetchone()[0]
            return QueueStats(int(messages), int(pending), None if oldest is None else float(oldest))

        return await self._read(q)
