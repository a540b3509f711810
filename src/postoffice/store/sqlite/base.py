"""The plumbing every part of the SQLite store shares: reads on a small thread pool (each thread with its own
read-only connection, inside a read transaction: a consistent WAL snapshot), writes through the writer
thread (`writer`), large blobs streamed on a connection of their own, and change notifications published
on the event loop after the commit that made the change (`subscribe`, `subscribe_queue`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from postoffice.store.api import (
    AlreadyExists,
    ChangeEvent,
    MailStore,
    NotFound,
    StoreError,
    StoreFull,
)
from postoffice.store.changes import ChangeBus
from postoffice.store.search import register_functions
from postoffice.store.space import DiskSpace, is_disk_full
from postoffice.store.sqlite.connection import connect
from postoffice.store.sqlite.writer import Writer

if TYPE_CHECKING:
    from postoffice.message import ParsedMessage
    from postoffice.store.api import OutboundMessage, QueuedMessage, RecipientResult


T = TypeVar("T")

#: How long a read on the event loop's thread (`_read_small`) waits for a busy database before it hands the
#: read to a reader thread instead (SQLite's readers in WAL mode wait only in rare cases, such as a recovery).
LOOP_READ_BUSY_MS = 20


#: Reads of at most this many rows by their keys (the kept renderings of a page of messages) are small enough
#: for `_read_few` to run them on the event loop.
SMALL_READ_ROWS = 64


class ReadTooLarge(Exception):
    """Raised by a read given to `_read_small` that finds more rows than should be read on the event loop."""


class SqliteBase(MailStore):
    """What every part of the SQLite store shares: the writer thread, the reader threads with their read-only
    connections, and the change subscribers (a `ChangeBus`). The parts (`directory`, `login_guard`,
    `mailboxes`, `messages`, `queue`) are mixins of this class, assembled into `SqliteMailStore` (`store`),
    which sets these attributes when it opens."""

    _path: Path
    _space: DiskSpace
    _writer: Writer
    _readers: concurrent.futures.ThreadPoolExecutor
    _local: threading.local
    _reader_connections: list[sqlite3.Connection]
    _reader_lock: threading.Lock
    _closed: bool
    #: unseen count per mailbox id, with the mailbox state it was counted at (`unseen_counts`)
    _unseen_cache: dict[int, tuple[tuple[int, ...], int]]
    #: mailbox id -> the highest UID a `claim_recent` transaction claimed (written by the writer thread)
    _recent_claimed: dict[int, int]
    #: the subscribers; the writer hands it each commit's events (`ChangeBus.publish_threadsafe`)
    _change_bus: ChangeBus

    if TYPE_CHECKING:
        # `delivery` (commit_delivery) writes contents with the row steps of `messages` and queue rows with
        # those of `queue`, inside its own request.
        def _insert_content(
            self,
            conn: sqlite3.Connection,
            source: IO[bytes],
            parsed: ParsedMessage,
            parsed_json: str,
            refcount: int,
        ) -> int: ...

        @staticmethod
        def _enqueue_rows(
            conn: sqlite3.Connection,
            events: list[ChangeEvent],
            source: IO[bytes],
            size: int,
            outbound: OutboundMessage,
            now: float | None = None,
        ) -> int: ...

        @classmethod
        def _record_rows(
            cls, conn: sqlite3.Connection, queue_id: int, results: Sequence[RecipientResult], *, bounces: bool
        ) -> None: ...

        @classmethod
        def _queued_messages(cls, conn: sqlite3.Connection, ids: Sequence[int]) -> list[QueuedMessage]: ...

        @staticmethod
        def _delete_queued(conn: sqlite3.Connection, queue_id: int) -> bool: ...

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.stop()
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self._readers.shutdown(wait=True)
        with self._reader_lock:
            for conn in self._reader_connections:
                conn.close()
            self._reader_connections.clear()

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # check_same_thread=False only so that close() can close it; it is used by this thread alone
            conn = connect(self._path, readonly=True, check_same_thread=False)
            register_functions(conn)
            self._local.conn = conn
            with self._reader_lock:
                self._reader_connections.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreError("the store is closed")

        def run() -> T:
            conn = self._reader()
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, run)

    def _loop_reader(self) -> sqlite3.Connection:
        """The read connection of the thread that runs the event loop (a thread's own, as the readers')."""
        conn: sqlite3.Connection | None = getattr(self._local, "loop_conn", None)
        if conn is None:
            conn = connect(self._path, readonly=True, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {LOOP_READ_BUSY_MS}")
            register_functions(conn)
            self._local.loop_conn = conn
            with self._reader_lock:
                self._reader_connections.append(conn)
        return conn

    async def _read_small(
        self,
        fn: Callable[[sqlite3.Connection], T],
        whole: Callable[[sqlite3.Connection], T] | None = None,
        *,
        single: bool = False,
    ) -> T:
        """A read of a few indexed rows, run at once on the event loop's thread: for such a read the hop to a
        reader thread and back (a queue, a future, a wake-up of the loop) costs more CPU than the read, and
        adds its latency to every command (bench/imap_sync_stress.py: most commands end with one such read).
        `fn` raises ReadTooLarge when it finds more than it should read here; then `whole` (or `fn`) runs on a
        reader thread, as it does when the database is busy (never longer than LOOP_READ_BUSY_MS here).
        `single`: `fn` runs one statement, which SQLite reads from one snapshot by itself, so no transaction
        is opened around it (BEGIN and COMMIT cost as much as the read of one message)."""
        if self._closed:
            raise StoreError("the store is closed")
        conn = self._loop_reader()
        if not single:
            try:
                conn.execute("BEGIN")
            except sqlite3.OperationalError:
                return await self._read(whole or fn)
        try:
            return fn(conn)
        except ReadTooLarge:
            pass
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        finally:
            if not single:
                conn.execute("COMMIT")
        return await self._read(whole or fn)

    async def _read_few(self, fn: Callable[[sqlite3.Connection], T], rows: int) -> T:
        """`fn` on the event loop (`_read_small`) when it reads at most SMALL_READ_ROWS rows by key, else on a
        reader thread. `fn` reads its rows in one statement per 500 keys or more, so on the event loop it runs
        one statement (`_read_small`'s `single`)."""
        if rows <= SMALL_READ_ROWS:
            return await self._read_small(fn, single=True)
        return await self._read(fn)

    async def _write(
        self,
        fn: Callable[[sqlite3.Connection, list[ChangeEvent]], T],
        *,
        grows: int | None = None,
        durable: bool = True,
    ) -> T:
        """Run `fn` in the writer's next transaction. `grows`: the message octets it adds, admitted against
        the free disk space first (docs/decisions/0030); None for writes that add no message. `durable=False`:
        the answer may come before the commit is fsynced (flag changes and \\Recent claims: decision 0074;
        greylisting records: decision 0089; a killed process loses nothing of it, a power loss may)."""
        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        self._change_bus.loop = loop
        future = self._writer.submit(fn, grows, durable=durable)
        try:
            result: T = await asyncio.wrap_future(future, loop=loop)
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(str(exc)) from exc
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                raise StoreFull(str(exc)) from exc
            raise StoreError(str(exc)) from exc
        return result

    async def has_room(self, size: int) -> bool:
        """Whether a message of `size` octets would be admitted now (SMTP asks at MAIL, RFC 1870 SIZE)."""

        def q(conn: sqlite3.Connection) -> bool:
            return self._space.fits(conn, size)  # makes the reserve again first when there is room

        return await self._read(q)

    def subscribe(self, account_id: int, callback: Callable[[ChangeEvent], None]) -> Callable[[], None]:
        return self._change_bus.subscribe(account_id, callback)

    def subscribe_all(self, callback: Callable[[ChangeEvent], None]) -> Callable[[], None]:
        return self._change_bus.subscribe_all(callback)

    def subscribe_queue(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self._change_bus.subscribe_queue(callback)

    def stats(self) -> dict[str, int]:
        return {
            "commits": self._writer.commits,
            "unsynced_commits": self._writer.unsynced_commits,
            "write_requests": self._writer.requests,
            "failed_commits": self._writer.failed_commits,
            "reserve_releases": self._writer.reserve_releases,
            "checkpoint_retries": self._writer.checkpoint_retries,
        }

    async def _stream_blob(self, table: str, rowid: int, chunk_size: int) -> AsyncIterator[bytes]:
        """A large blob in chunks, with incremental blob I/O on a connection of its own (one read
        transaction, so the bytes are consistent however long the consumer takes)."""
        loop = asyncio.get_running_loop()
        conn = await loop.run_in_executor(
            self._readers, lambda: connect(self._path, readonly=True, check_same_thread=False)
        )
        try:
            await loop.run_in_executor(self._readers, conn.execute, "BEGIN")
            try:
                blob = await loop.run_in_executor(
                    self._readers, lambda: conn.blobopen(table, "data", rowid, readonly=True)
                )
            except sqlite3.OperationalError:
                raise NotFound(f"no {table} row {rowid}") from None
            try:
                while True:
                    chunk = await loop.run_in_executor(self._readers, blob.read, chunk_size)
                    if not chunk:
                        break
                    yield chunk
            finally:
                blob.close()
        finally:
            await loop.run_in_executor(self._readers, conn.close)
