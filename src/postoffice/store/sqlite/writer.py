"""The single writer thread: group commit of everything that queued up.

Every write is a function queued to this thread. It takes everything that has queued up (at most
MAX_BATCH), runs each request inside its own SAVEPOINT (a failing request is rolled back alone), and COMMITs
once for the batch. While one batch is being fsynced the next one queues, so under concurrent load there are
fewer commits (fsyncs) than messages. A request's future resolves only after its batch committed, and the
change events of a batch are published after its COMMIT and before its futures resolve. A full disk
(docs/decisions/0030): the reserve is released and the requests that failed for space run again, alone.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from postoffice.plural import counted
from postoffice.store.api import ChangeEvent, StoreError, StoreFull
from postoffice.store.space import Admission, DiskSpace, is_disk_full
from postoffice.store.sqlite.connection import connect

log = logging.getLogger("postoffice.store")

#: Largest batch the writer commits at once.
MAX_BATCH = 256


class _WriteRequest:
    __slots__ = ("fn", "future", "grows")

    def __init__(self, fn: Callable[[sqlite3.Connection, list[ChangeEvent]], Any], grows: int | None) -> None:
        self.fn = fn
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        #: message octets the request adds (admitted against the free space first), None: it adds none
        self.grows = grows


@dataclasses.dataclass
class _Attempt:
    """One transaction over some requests: what each request gave, and whether the commit happened."""

    outcomes: list[tuple[_WriteRequest, Any, BaseException | None]]
    #: the requests that failed for lack of disk space (SQLITE_FULL), all of them when the transaction was
    #: lost: worth running again once the reserve has given its space back
    out_of_space: list[_WriteRequest]


class Writer(threading.Thread):
    """The single writer thread: group commit of everything that queued up."""

    def __init__(self, path: Path, publish: Callable[[list[ChangeEvent]], None], space: DiskSpace) -> None:
        super().__init__(name="postoffice-store-writer", daemon=True)
        self._path = path
        self._publish = publish
        self._space = space
        self._queue: queue.SimpleQueue[_WriteRequest | None] = queue.SimpleQueue()
        self.commits = 0
        self.requests = 0
        self.failed_commits = 0
        self.reserve_releases = 0
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    def submit(
        self, fn: Callable[[sqlite3.Connection, list[ChangeEvent]], Any], grows: int | None = None
    ) -> concurrent.futures.Future[Any]:
        if not self.is_alive():
            raise StoreError("the store is closed")
        request = _WriteRequest(fn, grows)
        self._queue.put(request)
        return request.future

    def stop(self) -> None:
        self._queue.put(None)

    def run(self) -> None:
        try:
            conn = connect(self._path)
        except BaseException as exc:  # reported by the thread that waits for startup
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                self._run_batch(conn, batch)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("checkpoint at close failed: %s", exc)
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_WriteRequest]) -> None:
        batch = [request for request in batch if request.future.set_running_or_notify_cancel()]
        self.requests += len(batch)
        results: dict[int, tuple[Any, BaseException | None]] = {}
        attempt = self._attempt(conn, batch)
        for request, result, error in attempt.outcomes:
            results[id(request)] = (result, error)
        if attempt.out_of_space:
            self._space.tight = True
        if attempt.out_of_space and self._space.release_reserve():
            # Decision 0030: the reserve makes room for what frees space; growing writes are refused from
            # now until the disk has room for the reserve again (Admission remakes it then).
            self.reserve_releases += 1
            log.error(
                "the disk holding %s is full: released the %d-byte reserve %s so that deletions can go on; "
                "new mail is refused until there is free space again",
                self._path,
                self._space.reserve,
                self._space.reserve_path,
            )
            # one transaction each: a request that fails again (larger than the reserve) fails alone
            for retry in attempt.out_of_space:
                for request, result, error in self._attempt(conn, [retry]).outcomes:
                    results[id(request)] = (result, error)
        if self._space.tight:
            self._truncate_wal(conn)
        for request in batch:
            result, error = results[id(request)]
            if error is not None:
                request.future.set_exception(error)
            else:
                request.future.set_result(result)

    def _attempt(self, conn: sqlite3.Connection, requests: list[_WriteRequest]) -> _Attempt:
        """Run `requests` in one transaction, each in its own savepoint; commit; publish the events."""
        outcomes: list[tuple[_WriteRequest, Any, BaseException | None]] = []
        events: list[ChangeEvent] = []
        out_of_space: list[_WriteRequest] = []

        def void(exc: BaseException, why: str) -> _Attempt:
            """Nothing of the transaction is stored: every request fails with `exc`'s reason."""
            self.failed_commits += 1
            log.error("%s, %s rolled back: %s", why, counted(len(requests), "request"), exc)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            full = is_disk_full(exc)
            error: StoreError = (StoreFull if full else StoreError)(f"{why}: {exc}")
            error.__cause__ = exc
            return _Attempt([(r, None, error) for r in requests], list(requests) if full else [])

        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return void(exc, "cannot begin a transaction")
        admission = Admission(self._space, conn)
        for request in requests:
            own_events: list[ChangeEvent] = []
            try:
                conn.execute("SAVEPOINT request")
            except sqlite3.Error as exc:
                return void(exc, "cannot open a savepoint")
            try:
                if request.grows is not None:
                    admission.admit(request.grows)
                result = request.fn(conn, own_events)
            except BaseException as exc:
                if not conn.in_transaction:
                    # SQLite rolled the whole transaction back (it does for SQLITE_FULL, IOERR and NOMEM
                    # outside a statement journal): the requests before this one are gone too.
                    return void(exc, "transaction rolled back by SQLite")
                try:
                    conn.execute("ROLLBACK TO request")
                    conn.execute("RELEASE request")
                except sqlite3.Error as rollback_error:
                    return void(rollback_error, "rollback to a savepoint failed")
                outcomes.append((request, None, exc))
                if is_disk_full(exc):
                    out_of_space.append(request)
            else:
                try:
                    conn.execute("RELEASE request")
                except sqlite3.Error as exc:
                    return void(exc, "cannot release a savepoint")
                outcomes.append((request, result, None))
                events.extend(own_events)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            return void(exc, "commit failed")
        self.commits += 1
        if events:
            self._publish(events)
        return _Attempt(outcomes, out_of_space)

    def _truncate_wal(self, conn: sqlite3.Connection) -> None:
        """While space is tight: copy the WAL into the database and truncate it, so that freed pages are
        reusable and the WAL's size is back on the filesystem. Readers are not waited for (busy_timeout 0):
        a checkpoint that cannot finish now finishes after a later commit."""
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                conn.execute("PRAGMA busy_timeout = 30000")
        except sqlite3.Error as exc:
            log.debug("checkpoint while space is tight: %s", exc)
