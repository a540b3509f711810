"""The single writer thread: group commit of everything that queued up.

Every write is a function queued to this thread. It takes everything that has queued up (at most
MAX_BATCH), runs each request inside its own SAVEPOINT (a failing request is rolled back alone), and COMMITs
once for the batch. While one batch is being fsynced the next one queues, so under concurrent load there are
fewer commits (fsyncs) than messages. A batch of nothing but requests submitted with `durable=False` (flag
changes, \\Recent claims: docs/decisions/0074) commits without the fsync (`PRAGMA synchronous = NORMAL`: in
WAL mode the commit is in the WAL, written but not synced; a killed process loses nothing, a power loss may
lose such a batch, never a later durable one, whose fsync covers every frame before it); any other batch
commits with `synchronous = FULL`. A request's future resolves only after its batch committed, and the
change events of a batch are published after its COMMIT and before its futures resolve. A full disk
(docs/decisions/0030): the WAL is checkpointed and truncated, most of the reserve is given back, and the
requests that failed for space run again, alone (those that add mail stay refused); after every batch (and
every `RESERVE_RETRY_SECONDS` while idle) the reserve is made again as far as the filesystem has room, so
that the next full disk finds one too.
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
from postoffice.store.space import RESERVE_RETRY_SECONDS, Admission, DiskSpace, is_disk_full
from postoffice.store.sqlite.connection import connect

log = logging.getLogger("postoffice.store")

#: Largest batch the writer commits at once.
MAX_BATCH = 256
#: When a write finds the disk full, all of the reserve but this part of it goes to running it again; the
#: part is for the checkpoint after it (given when that fails for space).
CHECKPOINT_SHARE = 4


class _WriteRequest:
    __slots__ = ("durable", "fn", "future", "grows")

    def __init__(
        self, fn: Callable[[sqlite3.Connection, list[ChangeEvent]], Any], grows: int | None, durable: bool
    ) -> None:
        self.fn = fn
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        #: message octets the request adds (admitted against the free space first), None: it adds none
        self.grows = grows
        #: False: the request's future may resolve before its commit reached the disk (decision 0074)
        self.durable = durable


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
        self._wal = path.with_name(path.name + "-wal")
        self._publish = publish
        self._space = space
        self._queue: queue.SimpleQueue[_WriteRequest | None] = queue.SimpleQueue()
        self.commits = 0
        self.requests = 0
        self.failed_commits = 0
        self.reserve_releases = 0
        #: requests run again after a checkpoint gave back WAL space, with no reserve to release
        self.checkpoint_retries = 0
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        #: the connection's `PRAGMA synchronous` (`connect` sets FULL)
        self._synchronous = "FULL"
        #: commits made without an fsync (batches of requests that are not durable)
        self.unsynced_commits = 0

    def submit(
        self,
        fn: Callable[[sqlite3.Connection, list[ChangeEvent]], Any],
        grows: int | None = None,
        *,
        durable: bool = True,
    ) -> concurrent.futures.Future[Any]:
        if not self.is_alive():
            raise StoreError("the store is closed")
        request = _WriteRequest(fn, grows, durable)
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
                try:
                    # while the reserve is short, look for room for it now and then even when nothing is
                    # written: the next full disk must find it
                    first = self._queue.get(
                        timeout=None if self._space.reserve_held() else RESERVE_RETRY_SECONDS
                    )
                except queue.Empty:
                    self._make_reserve(conn)
                    continue
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
            if not self._truncate_wal(conn, wait=True) and _size(self._wal) > 0:
                log.warning("checkpoint at close did not finish: the WAL stays until the next open")
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
            # Decision 0030: a WAL that a checkpoint can cut back makes room (the rolled-back frames of the
            # failed attempt, committed frames a reader held back), and so does the reserve, for what frees
            # space (growing writes are refused until it is whole again). A part of the reserve is kept for
            # the checkpoint after the retry: a deletion can grow the database file (FTS5 writes its merged
            # segments before it frees the old ones), and a checkpoint without room for that growth can
            # never reset the WAL.
            # Growing requests are not run again: that space is for deletions (they stay refused).
            retries = [request for request in attempt.out_of_space if request.grows is None]
            wal_freed = self._truncate_wal(conn)
            if retries:
                self._space.retrying = True
                try:
                    released = self._release_reserve(keep=self._space.reserve_size() // CHECKPOINT_SHARE)
                    if not released and wal_freed:
                        self.checkpoint_retries += 1
                    if released or wal_freed:
                        # one transaction each: a request that fails again (larger than the space) fails alone
                        for retry in retries:
                            for request, result, error in self._attempt(conn, [retry]).outcomes:
                                results[id(request)] = (result, error)
                finally:
                    self._space.retrying = False
        if self._space.tight:
            self._truncate_wal(conn)
        if not self._space.reserve_held():
            self._make_reserve(conn)
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

        synchronous = "FULL" if any(request.durable for request in requests) else "NORMAL"
        try:
            if synchronous != self._synchronous:
                conn.execute(f"PRAGMA synchronous = {synchronous}")
                self._synchronous = synchronous
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
        if synchronous != "FULL":
            self.unsynced_commits += 1
        if events:
            self._publish(events)
        return _Attempt(outcomes, out_of_space)

    def _release_reserve(self, keep: int = 0) -> bool:
        released = self._space.release_reserve(keep)
        if released:
            self.reserve_releases += 1
            log.error(
                "the disk holding %s is full: released %d bytes of the reserve %s so that deletions can go "
                "on; new mail is refused until there is free space again",
                self._path,
                released,
                self._space.reserve_path,
            )
        return released > 0

    def _make_reserve(self, conn: sqlite3.Connection) -> None:
        try:
            self._space.make_reserve(conn)
        except (StoreError, sqlite3.Error) as exc:  # cannot measure: the next batch tries again
            log.warning("cannot make the disk reserve again: %s", exc)

    def _truncate_wal(self, conn: sqlite3.Connection, *, wait: bool = False) -> bool:
        """Copy the WAL into the database and truncate it, so that freed pages are reusable and the WAL's
        size is back on the filesystem (while space is tight, and at close). Readers are not waited for
        unless `wait` (busy_timeout 0): a checkpoint that cannot finish now finishes after a later commit.
        A checkpoint that finds no room for the database file's growth gets the reserve's. True when the
        WAL got smaller."""
        before = _size(self._wal)
        for attempt in range(2):
            try:
                if not wait:
                    conn.execute("PRAGMA busy_timeout = 0")
                try:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                finally:
                    conn.execute("PRAGMA busy_timeout = 30000")
            except sqlite3.Error as exc:
                if attempt == 0 and is_disk_full(exc) and self._release_reserve():
                    continue
                log.debug("checkpoint: %s", exc)
            break
        return _size(self._wal) < before


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
