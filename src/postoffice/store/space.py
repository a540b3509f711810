"""Disk space for the SQLite store: refuse new mail before the disk is full, and keep a reserve so that
deleting mail works when it fills up anyway (docs/decisions/0030-disk-full.md).

Implementation notes
- Two kinds of writes. Growing writes add message bytes (delivery, submission, APPEND, COPY/MOVE, the
  outbound queue, DSNs); every other write (flags, \\Recent, expunge, mailbox and account removal, queue
  results) is small or frees space and is never refused for space: a user must always be able to delete.
- Admission: a growing write is refused (`StoreFull`) when what it may add would leave less than `min_free`
  bytes free on the store's filesystem. What it may add is counted twice (its pages go to the WAL first and
  to the database file at the next checkpoint) at `FOOTPRINT_FACTOR` times the message size (the bytes, the
  search text and its trigram index), less what free pages inside the database absorb at the checkpoint.
  The growth the next checkpoint owes the database file (pages committed to the WAL beyond the file's end)
  is counted as used: a checkpoint must always have room, or the WAL can never be reset and every later
  write, deletions included, needs new space (seen: a 6 MiB disk with a 4 MiB WAL stuck for good).
- The reserve: a file of `reserve` bytes (`<store>.reserve`, fully allocated) made at open. When a write
  fails with SQLITE_FULL all the same (another program filled the disk, or an estimate was low), the writer
  deletes the reserve, logs an error, and runs each failed request once more in a transaction of its own:
  growing ones are refused now (the reserve is remade only when the filesystem has room for it twice over
  and for `min_free` besides), the others use the space the reserve gave back. The file is the state, so
  the CLI and the server share it.
- Free pages inside the database count as room for new mail: SQLite reuses them before it grows the file.
  While space is tight the writer truncates the WAL after each commit (`PRAGMA wal_checkpoint(TRUNCATE)`,
  without waiting for readers), so that the space a deletion frees reaches the free pages and the WAL's own
  size returns to the filesystem.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from pathlib import Path

from postoffice.store.api import StoreError, StoreFull

log = logging.getLogger("postoffice.store")

#: SQLite's primary result code for "database or disk is full".
SQLITE_FULL = 13
#: Estimated bytes a stored message adds per byte of its size: the message itself, its search text and the
#: trigram index of that text (measured: about 2x for large messages, up to 5x for small ones of plain text).
FOOTPRINT_FACTOR = 3
#: Added to every estimate: rows, index entries, the IMAP renderings.
FOOTPRINT_OVERHEAD = 32 * 1024
#: Below this much room (after `min_free`), space is tight: the WAL is truncated after every commit.
TIGHT_ROOM = 32 * 1024 * 1024
DEFAULT_MIN_FREE = 100 * 1024 * 1024
DEFAULT_RESERVE = 16 * 1024 * 1024
_CHUNK = 1024 * 1024


def is_disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL (an extended code has it in the low byte), or ENOSPC from the file system."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF == SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def footprint(size: int) -> int:
    """Estimated bytes a message of `size` octets adds to the database."""
    return FOOTPRINT_FACTOR * max(size, 0) + FOOTPRINT_OVERHEAD


class DiskSpace:
    """The space policy of one store file; thread-safe in the sense that its only state is on disk."""

    def __init__(
        self, db_path: Path, *, min_free: int = DEFAULT_MIN_FREE, reserve: int = DEFAULT_RESERVE
    ) -> None:
        if min_free < 0 or reserve < 0:
            raise ValueError("min_free and reserve are byte counts, 0 or more")
        self.db_path = db_path
        self.reserve_path = db_path.with_name(db_path.name + ".reserve")
        self.min_free = min_free
        self.reserve = reserve
        #: the room was small, or a write failed for lack of space: the writer truncates the WAL after each
        #: commit (written by the writer thread only; cleared when a growing write finds ample room)
        self.tight = False

    # -- the file system -------------------------------------------------------------------------------------
    def free(self) -> int:
        """Bytes an unprivileged process may still allocate on the store's filesystem."""
        try:
            st = os.statvfs(self.db_path.parent)
        except OSError as exc:
            raise StoreError(f"cannot measure the free space of {self.db_path.parent}: {exc}") from exc
        return st.f_bavail * st.f_frsize

    def checkpoint_debt(self, conn: sqlite3.Connection) -> int:
        """Bytes the next checkpoint adds to the database file: committed pages beyond its current end."""
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        try:
            on_disk = os.stat(self.db_path).st_size
        except OSError:
            on_disk = 0
        return max(0, pages * page_size - on_disk)

    @staticmethod
    def free_pages(conn: sqlite3.Connection) -> int:
        """Bytes of free pages inside the database, reused before the file grows."""
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        return int(conn.execute("PRAGMA freelist_count").fetchone()[0]) * page_size

    # -- the reserve -----------------------------------------------------------------------------------------
    def reserve_held(self) -> bool:
        """The reserve file is there, at the configured size (a changed setting makes it anew)."""
        if self.reserve == 0:
            return True
        try:
            return os.stat(self.reserve_path).st_size == self.reserve
        except OSError:
            return False

    def make_reserve(self) -> bool:
        """Allocate the reserve file (blocks, not a sparse file); False when there is no room for it."""
        if self.reserve == 0:
            self.release_reserve_file()  # the setting went to 0: a reserve of an earlier size goes
            return True
        if self.reserve_held():
            return True
        self.release_reserve_file()  # one of another size (a changed setting): its space counts
        tmp = self.reserve_path.with_name(self.reserve_path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                try:
                    os.posix_fallocate(fd, 0, self.reserve)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    # no fallocate here: write the bytes (random, so that a compressing filesystem
                    # allocates them too)
                    written = 0
                    while written < self.reserve:
                        written += os.write(fd, os.urandom(min(_CHUNK, self.reserve - written)))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.reserve_path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if not is_disk_full(exc):
                log.warning("cannot create the disk reserve %s: %s", self.reserve_path, exc)
            return False
        return True

    def release_reserve(self) -> bool:
        """Delete the reserve; True when there was one to give back."""
        return self.reserve > 0 and self.release_reserve_file()

    def release_reserve_file(self) -> bool:
        try:
            os.unlink(self.reserve_path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("cannot delete the disk reserve %s: %s", self.reserve_path, exc)
            return False
        return True

    # -- admission -------------------------------------------------------------------------------------------
    def room(self, conn: sqlite3.Connection, *, remake: bool = True) -> tuple[int, int]:
        """(bytes growing writes may still take from the filesystem, bytes of free pages in the database).
        Without the reserve, its size is kept free first, and with `remake` the reserve is made again when
        there is room for it. Negative: no room at all."""
        room = self.free() - self.checkpoint_debt(conn) - self.min_free
        if not self.reserve_held():
            # twice its size: remaking it must not take back at once the space its release gave
            if room < 2 * self.reserve or (remake and not self.make_reserve()):
                return -1, 0
            if remake:
                log.warning(
                    "disk space is back: the %d-byte reserve %s is in place again",
                    self.reserve,
                    self.reserve_path,
                )
            room -= self.reserve
        return room, self.free_pages(conn)


def cost(size: int, free_pages: int) -> tuple[int, int]:
    """(bytes of filesystem, bytes of free database pages) a message of `size` octets takes: its pages go
    to the WAL, and at the checkpoint into free pages or onto the end of the database file."""
    need = footprint(size)
    reused = min(need, max(free_pages, 0))
    return need + (need - reused), reused


class Admission:
    """The growing writes of one transaction, charged against the room measured at the first of them."""

    def __init__(self, space: DiskSpace, conn: sqlite3.Connection) -> None:
        self._space = space
        self._conn = conn
        self._room: int | None = None
        self._free_pages = 0

    def admit(self, size: int) -> None:
        """Raise StoreFull unless a write of a message of `size` octets fits."""
        if self._room is None:
            self._room, self._free_pages = self._space.room(self._conn)
            self._space.tight = self._room < TIGHT_ROOM
        needed, reused = cost(size, self._free_pages)
        if needed > self._room:
            self._space.tight = True
            raise StoreFull(
                f"not enough disk space: {max(self._room, 0)} bytes of room above the "
                f"{self._space.min_free}-byte minimum, this write may need {needed}"
            )
        self._room -= needed
        self._free_pages -= reused
