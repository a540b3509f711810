"""Lockouts that outlive a restart and can be lifted by the administrator (docs/decisions/0027).

`LockoutJournal` connects a `LoginGuard` (in memory, on the event loop: the hot path of every login) with the
store's `login_guard` table:
- `load()` at server start restores the lockouts (and the trusted pairs that bypass account lockouts) that
  have not ended, and deletes those that have.
- The guard hands every lockout that begins to `record`, which only queues it; one task writes the queue to
  the store (the store's writer thread, off the event loop), batching what arrives while a write is running.
  A store error is logged; the lockout still holds in memory.
- `postoffice auth unlock` (another process) deletes rows, after which the store's
  `login_guard_generation()` changes (how is the backend's business: SQLite replaces a marker file). On a
  lockout hit the authenticator calls `refresh()`: the generation is compared (one stat() with SQLite), and
  only when it changed is the table read. A lockout this journal wrote whose row is gone has been lifted:
  the guard forgets it. A lockout whose row is still queued is never lifted this way (the unlock cannot
  have seen it).

Invariants
- Nothing here runs on a login that is not locked out, except queueing the entries of a lockout that begins.
- Times in the store are Unix times; the guard converts its monotonic clock when it makes an entry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from postoffice.auth.guard import MAX_ENTRIES, LoginGuard, printable_for_log
from postoffice.store import LOGIN_LOCKOUT_KINDS, LoginGuardEntry, MailStore, StoreError

log = logging.getLogger("postoffice.auth")

_Key = tuple[str, str, str]  # (kind, client, account)


def _key(entry: LoginGuardEntry) -> _Key:
    return (entry.kind, entry.client, entry.account)


class LockoutJournal:
    def __init__(
        self, store: MailStore, guard: LoginGuard, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._guard = guard
        self._wall_clock = wall_clock
        self._queue: list[LoginGuardEntry] = []
        self._writer: asyncio.Task[None] | None = None
        #: lockouts whose rows this process wrote (or loaded): key -> Unix time they end
        self._written: dict[_Key, float] = {}
        self._generation: object = None
        self._refreshing: asyncio.Lock | None = None
        guard.journal = self.record

    async def load(self) -> None:
        """Restore what the store kept (server start); entries that have ended are deleted."""
        now = self._wall_clock()
        self._generation = self._store.login_guard_generation()
        entries = await self._store.login_guard_entries(now)
        self._guard.restore(entries)
        for entry in entries:
            if entry.kind in LOGIN_LOCKOUT_KINDS:
                self._written[_key(entry)] = entry.until
        await self._store.login_guard_save([], now)
        locks = sum(1 for e in entries if e.kind in LOGIN_LOCKOUT_KINDS)
        if locks:
            log.info("restored %d lockout%s from the store", locks, "" if locks == 1 else "s")

    def record(self, entries: list[LoginGuardEntry]) -> None:
        """Queue entries for the store (called by the guard on the event loop; never waits)."""
        self._queue.extend(entries)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def flush(self) -> None:
        """Wait until everything queued so far is written (or has failed and been logged)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self._store.login_guard_save(batch, self._wall_clock())
            except (StoreError, OSError) as exc:
                log.error("cannot keep %d lockout entries in the store: %s", len(batch), exc)
                continue
            for entry in batch:
                if entry.kind in LOGIN_LOCKOUT_KINDS:
                    self._written.pop(_key(entry), None)  # re-inserted: the dict stays in write order
                    self._written[_key(entry)] = entry.until
            self._bound_written()

    def _bound_written(self) -> None:
        """Keep the record of written lockouts within the guard's own bound (three tables of MAX_ENTRIES):
        ended ones go first, then the oldest (the guard drops its oldest too), down to three quarters so that
        the scan is rare."""
        limit = 3 * MAX_ENTRIES
        if len(self._written) <= limit:
            return
        now = self._wall_clock()
        for key in [key for key, until in self._written.items() if until <= now]:
            del self._written[key]
        while len(self._written) > limit * 3 // 4:
            del self._written[next(iter(self._written))]

    async def refresh(self) -> bool:
        """After a lockout hit: when an unlock happened since the last look, lift in memory what it lifted
        in the store. True when anything was lifted (check again)."""
        if self._store.login_guard_generation() == self._generation:
            return False
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            generation = self._store.login_guard_generation()
            if generation == self._generation:
                return False  # another login's refresh did it meanwhile
            now = self._wall_clock()
            try:
                stored = {_key(e) for e in await self._store.login_guard_entries(now)}
            except StoreError as exc:
                log.error("cannot read the lockouts from the store: %s", exc)
                return False
            self._generation = generation
            queued = {_key(e) for e in self._queue}
            lifted = 0
            for key, until in list(self._written.items()):
                if until <= now:
                    del self._written[key]
                elif key not in stored and key not in queued:
                    del self._written[key]
                    if self._guard.lift(*key):
                        lifted += 1
                        kind, client, account = key
                        log.warning(
                            "lockout lifted kind=%s client=%s account=%s (postoffice auth unlock)",
                            kind,
                            printable_for_log(client or "-"),
                            printable_for_log(account or "-"),
                        )
            return lifted > 0

    def tracked(self) -> int:
        """Written lockouts remembered for `refresh` (for tests and diagnostics)."""
        return len(self._written)

    async def close(self) -> None:
        await self.flush()
