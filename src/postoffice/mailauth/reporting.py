"""Counting what the daily reports say (docs/decisions/0058): DMARC results of mail received (RFC 9990) and
TLS results of mail sent (RFC 8460).

Implementation notes
- `ReportCounter.add` is called on the hot paths (every message received on port 25, every outbound
  connection): it only adds to a dict in memory. A task writes the sums to the store every
  `FLUSH_INTERVAL` seconds (one transaction for all of them: `MailStore.add_report_counts` adds up, so
  several processes or nodes can count the same lines), and when the server stops. A crash loses at most
  that long's counts: reports are statistics, the mail itself is never at stake.
- Memory is bounded: past `MAX_LINES` distinct lines waiting, a flush is started at once, and lines beyond
  `MAX_LINES * 2` are dropped (and the drop is logged) until it ends.
- Days are UTC (RFC 9990 and RFC 8460 report UTC days).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import json
import logging
import time
from collections.abc import Callable, Mapping

from postoffice.store import MailStore, ReportCount

log = logging.getLogger("postoffice.reports")

FLUSH_INTERVAL = 60.0
MAX_LINES = 10_000


def utc_day(timestamp: float) -> str:
    """The UTC day of a time, as YYYY-MM-DD."""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d")


def canonical(value: Mapping[str, object]) -> str:
    """The JSON text of a report line or policy, the same for equal values."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class ReportCounter:
    def __init__(
        self,
        store: MailStore,
        *,
        clock: Callable[[], float] = time.time,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self.store = store
        self.clock = clock
        self.flush_interval = flush_interval
        self._counts: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
        self._policies: dict[tuple[str, str, str], str] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._dropped = 0
        self._flushing = asyncio.Lock()

    def add(
        self, kind: str, domain: str, line: Mapping[str, object], policy: Mapping[str, object] | None = None
    ) -> None:
        """Count one more of `line` in the `kind` report about `domain` for today; `policy` (when given) is
        the policy that report goes with (the newest one counted is kept)."""
        day = utc_day(self.clock())
        key = (kind, day, domain.lower(), canonical(line))
        if key not in self._counts and len(self._counts) >= MAX_LINES * 2:
            self._dropped += 1
            return
        self._counts[key] += 1
        if self._task is None:
            self.start()
        if policy is not None:
            self._policies[(kind, day, domain.lower())] = canonical(policy)
        if len(self._counts) >= MAX_LINES:
            self._wake.set()

    def pending(self) -> int:
        """Distinct lines not written yet (tests)."""
        return len(self._counts)

    async def flush(self) -> None:
        """Write what was counted to the store. On a store error the counts are kept for the next flush."""
        async with self._flushing:
            counts, policies = self._counts, self._policies
            if not counts:
                return
            self._counts, self._policies = collections.Counter(), {}
            batch = [
                ReportCount(kind, day, domain, key, count, policies.get((kind, day, domain), ""))
                for (kind, day, domain, key), count in counts.items()
            ]
            try:
                await self.store.add_report_counts(batch)
            except Exception:
                log.exception("reports: counts could not be written; kept for the next try")
                self._counts.update(counts)
                for report, policy in policies.items():
                    self._policies.setdefault(report, policy)
                return
            if self._dropped:
                log.warning("reports: %d report lines were dropped (too many at once)", self._dropped)
                self._dropped = 0

    def start(self) -> None:
        """Start the periodic flush (done by the first `add`; it runs on the loop that called it)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="report-counter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()
