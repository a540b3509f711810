"""Disk space for the SQLite store: refuse new mail before the disk is full, and keep a reserve so that
deleting mail works whenever it fills up anyway, every time (docs/decisions/0030-disk-full.md).

Implementation notes
- Two kinds of writes. Growing writes add message bytes (delivery, submission, APPEND, COPY/MOVE, the
  outbound queue, DSNs); every other write (flags, \\Recent, expunge, mailbox and account removal, queue
  results) is small or frees space and is never refused for space: a user must always be able to delete.
- What a growing write takes, per message of `size` octets (measured, see the decision): its WAL frames
  (`wal_bytes`: every page it changes, about 20 pages for the rows and indexes of even the smallest
  message), for the moment of the commit, and its lasting growth of the database file (`growth_bytes`: the
  bytes, the search text, its trigram index), less what free pages inside the database absorb.
- Admission: a growing write is refused (`StoreFull`) unless the reserve is whole, its lasting growth
  leaves `min_free` bytes free on the store's filesystem, and its WAL frames and growth together fit what
  is free. The WAL is transient (while space is tight it is truncated after every commit), like the spool:
  it may use the `min_free` margin for the moment of a commit. The growth the next checkpoint owes the
  database file (pages committed to the WAL beyond the file's end) is counted as used: a checkpoint must
  always have room, or the WAL can never be reset and every later write, deletions included, needs new
  space (seen: a 6 MiB disk with a 4 MiB WAL stuck for good).
- The reserve: a file of up to `reserve` bytes (`<store>.reserve`, allocated, not sparse). When a write
  fails with SQLITE_FULL all the same (another program filled the disk, or an estimate was low), the writer
  checkpoints the WAL, gives back all of the reserve but a quarter (kept for the checkpoint after the
  retry: a deletion can grow the database file), logs an error, and runs each failed request once more in
  a transaction of its own: growing ones are refused now, the others use the space given back. The
  reserve is made again as soon as the filesystem has room (after every batch of writes, at every
  admission question, and every `RESERVE_RETRY_SECONDS` while it is short): whole when its size and a
  margin (`RESERVE_MARGIN`, or a 16th of the reserve when less) are free, else in part from what is free
  above the margin, grown to its size later. So a second, third... full disk finds a reserve again, even
  when nothing was freed in between: a deletion frees pages inside the database, and the WAL space it used
  comes back when the WAL is truncated. New mail waits until the reserve is whole: the reserve comes
  before mail. The file is the state, so the CLI and the server share it.
- Free pages inside the database count as room for new mail: SQLite reuses them before it grows the file.
  While space is tight the writer truncates the WAL after each commit (`PRAGMA wal_checkpoint(TRUNCATE)`,
  without waiting for readers), so that the space a deletion frees reaches the free pages and the WAL's own
  size returns to the filesystem.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from postoffice.store.api import StoreError, StoreFull

log = logging.getLogger("postoffice.store")

#: SQLite's primary result code for "database or disk is full".
SQLITE_FULL = 13
#: Estimated bytes a stored message adds per byte of its size, to the WAL and to the database file alike:
#: the message itself, its search text and the trigram index of that text (measured 2.1x for 1 MB of
#: varied text, 2.5x for 200 KB, 2.6x for 20 KB, before the fixed part below).
FOOTPRINT_FACTOR = 3
#: WAL frames of a delivery whatever its size: the pages of the rows and indexes it changes (measured 78 to
#: 82 KB for a message of 39 octets, 20 pages of 4 KiB).
WAL_OVERHEAD = 96 * 1024
#: Lasting growth of the database file whatever the size: rows and index entries (measured 0 to 12 KiB).
GROWTH_OVERHEAD = 16 * 1024
#: Below this much room (after `min_free`), space is tight: the WAL is truncated after every commit.
TIGHT_ROOM = 32 * 1024 * 1024
#: Free bytes a reserve made again in part leaves on the filesystem (at most; a 16th of the reserve when that
#: is less): the small writes (flags, \\Recent) go through on them without taking the reserve.
RESERVE_MARGIN = 256 * 1024
#: While the reserve is short, the writer tries to make it whole at least this often (seconds).
RESERVE_RETRY_SECONDS = 1.0
DEFAULT_MIN_FREE = 100 * 1024 * 1024
DEFAULT_RESERVE = 16 * 1024 * 1024
_CHUNK = 1024 * 1024
#: Seconds a reserve found whole is trusted without looking at the file again.
HELD_RECHECK = 1.0


def is_disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL (an extended code has it in the low byte), or ENOSPC from the file system."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF == SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def wal_bytes(size: int) -> int:
    """Estimated WAL bytes the commit of a message of `size` octets writes."""
    return FOOTPRINT_FACTOR * max(size, 0) + WAL_OVERHEAD


def growth_bytes(size: int) -> int:
    """Estimated bytes of database pages a message of `size` octets takes for good (free pages or new)."""
    return FOOTPRINT_FACTOR * max(size, 0) + GROWTH_OVERHEAD


@dataclasses.dataclass(frozen=True)
class Cost:
    """What a message takes from the filesystem: `peak` bytes for the moment of its commit (the WAL's
    frames and the file's growth), `lasting` bytes for good, and `reused` bytes of free database pages."""

    peak: int
    lasting: int
    reused: int


def cost(size: int, free_pages: int) -> Cost:
    """What a message of `size` octets takes, free pages of `free_pages` bytes absorbing its growth first:
    its pages go to the WAL, and at the checkpoint into free pages or onto the end of the database file."""
    growth = growth_bytes(size)
    reused = min(growth, max(free_pages, 0))
    lasting = growth - reused
    return Cost(wal_bytes(size) + lasting, lasting, reused)


@dataclasses.dataclass
class Room:
    """What growing writes may still take: `peak` bytes of the filesystem for the moment of a commit,
    `lasting` bytes of it for good (what leaves `min_free`), and `free_pages` bytes of free database pages.
    Negative: none."""

    peak: int
    lasting: int
    free_pages: int

    def fits(self, needed: Cost) -> bool:
        return needed.peak <= self.peak and needed.lasting <= self.lasting

    def take(self, needed: Cost) -> None:
        self.peak -= needed.peak  # the frames of one transaction are all in the WAL until its commit
        self.lasting -= needed.lasting
        self.free_pages -= needed.reused


class DiskSpace:
    """The space policy of one store file. Its state is on disk (the reserve file); a lock keeps the
    threads of one process (the writer, a reader answering `has_room`) from changing that file at once."""

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
        self._lock = threading.Lock()
        #: set by the writer while the failed requests run again on the space the reserve gave back: the
        #: reserve is not made again meanwhile (not even by a reader thread answering `has_room`)
        self.retrying = False
        #: the reserve was short when last looked at: its coming back whole is logged
        self._short = False
        #: `reserve_held` found it whole: trusted until this monotonic time without a stat (the writer asks
        #: for every batch); every change made here clears it
        self._held_until = 0.0

    # -- the file system -------------------------------------------------------------------------------------
    def free(self) -> int:
        """Bytes an unprivileged process may still allocate on the store's filesystem."""
        try:
            st = os.statvfs(self.db_path.parent)
        except OSError as exc:
            raise StoreError(f"cannot measure the free space of {self.db_path.parent}: {exc}") from exc
        return st.f_bavail * st.f_frsize

    def checkpoint_debt(self, conn: sqlite3.Connection | None) -> int:
        """Bytes the next checkpoint adds to the database file: committed pages beyond its current end."""
        if conn is None:
            return 0
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
    def reserve_size(self) -> int:
        """Bytes of the reserve file as it is (0: there is none)."""
        try:
            return os.stat(self.reserve_path).st_size
        except OSError:
            return 0

    def reserve_held(self) -> bool:
        """The reserve file is there, whole, at the configured size (a whole reserve is looked at again after
        HELD_RECHECK seconds, or at once after this object changed it)."""
        if self.reserve == 0:
            return True
        now = time.monotonic()
        if now < self._held_until:
            return True
        held = self.reserve_size() == self.reserve
        if held:
            self._held_until = now + HELD_RECHECK
        return held

    def make_reserve(self, conn: sqlite3.Connection | None = None) -> bool:
        """Make the reserve whole, or as large as the filesystem allows above the margin (and above what
        the next checkpoint owes the database, when `conn` tells); True when it is whole. A reserve of
        another size (a changed setting) is cut down to size; at a setting of 0 it is removed."""
        with self._lock:
            self._held_until = 0.0
            if self.reserve == 0:
                self.release_reserve_file()
                return True
            have = self.reserve_size()
            if self.retrying:
                return have == self.reserve
            if have > self.reserve:
                try:
                    os.truncate(self.reserve_path, self.reserve)
                except OSError as exc:
                    log.warning("cannot resize the disk reserve %s: %s", self.reserve_path, exc)
                    return False
                return True
            if have < self.reserve:
                margin = min(RESERVE_MARGIN, self.reserve // 16)
                available = self.free() - self.checkpoint_debt(conn) - margin
                target = min(self.reserve, have + max(available, 0))
                if target > have and not self._grow_reserve(have, target):
                    target = have
                if target < self.reserve:
                    if not self._short:
                        log.debug(
                            "disk reserve %s at %d of %d bytes", self.reserve_path, target, self.reserve
                        )
                    self._short = True
                    return False
                if self._short:
                    log.warning(
                        "disk space is back: the %d-byte reserve %s is whole again",
                        self.reserve,
                        self.reserve_path,
                    )
            self._short = False
            return True

    def _grow_reserve(self, have: int, target: int) -> bool:
        """Allocate the reserve file from `have` to `target` bytes (blocks, not a sparse file); on failure it
        is left at `have`."""
        try:
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            if not is_disk_full(exc):
                log.warning("cannot create the disk reserve %s: %s", self.reserve_path, exc)
            return False
        try:
            try:
                os.posix_fallocate(fd, have, target - have)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                # no fallocate here: write the bytes (random, so that a compressing filesystem allocates
                # them too)
                os.lseek(fd, have, os.SEEK_SET)
                written = have
                while written < target:
                    written += os.write(fd, os.urandom(min(_CHUNK, target - written)))
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, have)  # give back what a failed allocation took
            except OSError:
                pass
            if not is_disk_full(exc):
                log.warning("cannot allocate the disk reserve %s: %s", self.reserve_path, exc)
            return False
        finally:
            os.close(fd)
        return True

    def release_reserve(self, keep: int = 0) -> int:
        """Give back the reserve but `keep` bytes of it (0: delete the file); the bytes given back."""
        with self._lock:
            self._held_until = 0.0
            have = self.reserve_size()
            if have <= keep:
                return 0
            try:
                if keep > 0:
                    os.truncate(self.reserve_path, keep)
                elif not self.release_reserve_file():
                    return 0
            except OSError as exc:
                log.error("cannot release the disk reserve %s: %s", self.reserve_path, exc)
                return 0
            self._short = True
            return have - keep

    def release_reserve_file(self) -> bool:
        self._held_until = 0.0
        try:
            os.unlink(self.reserve_path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("cannot delete the disk reserve %s: %s", self.reserve_path, exc)
            return False
        return True

    # -- admission -------------------------------------------------------------------------------------------
    def room(self, conn: sqlite3.Connection) -> Room:
        """What growing writes may take now. The reserve comes first: it is made again (whole or in part)
        when there is room, and while it is not whole there is no room for mail."""
        if not self.reserve_held() and not self.make_reserve(conn):
            return Room(-1, -1, 0)
        free = self.free() - self.checkpoint_debt(conn)
        return Room(free, free - self.min_free, self.free_pages(conn))

    def fits(self, conn: sqlite3.Connection, size: int) -> bool:
        """Whether a message of `size` octets would be admitted now."""
        room = self.room(conn)
        return room.fits(cost(size, room.free_pages))


class Admission:
    """The growing writes of one transaction, charged against the room measured at the first of them."""

    def __init__(self, space: DiskSpace, conn: sqlite3.Connection) -> None:
        self._space = space
        self._conn = conn
        self._room: Room | None = None

    def admit(self, size: int) -> None:
        """Raise StoreFull unless a write of a message of `size` octets fits."""
        if self._room is None:
            self._room = self._space.room(self._conn)
            self._space.tight = self._room.lasting < TIGHT_ROOM
        needed = cost(size, self._room.free_pages)
        if not self._room.fits(needed):
            self._space.tight = True
            if not self._space.reserve_held():
                raise StoreFull("not enough disk space: the disk reserve is not whole")
            raise StoreFull(
                f"not enough disk space: {max(self._room.lasting, 0)} bytes of room above the "
                f"{self._space.min_free}-byte minimum and {max(self._room.peak, 0)} free, this write may "
                f"need {needed.lasting} for good and {needed.peak} while it commits"
            )
        self._room.take(needed)
