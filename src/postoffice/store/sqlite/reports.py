"""MTA-STS policies and reports (docs/decisions/0057, 0058): the tables mta_sts_policies, report_counts,
report_policies and received_reports; and the installation's named secrets (meta "secret:NAME", base64; the
SRS key of forwarding, docs/decisions/0059). Report lines are counted with one upsert each, so that concurrent
writers (the inbound checks and the queue) add up instead of overwriting each other.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
import sqlite3
from collections.abc import Sequence
from typing import Any

from postoffice.store.api import (
    ChangeEvent,
    PendingReport,
    ReceivedReport,
    ReportCount,
    StoredStsPolicy,
)
from postoffice.store.sqlite.base import SqliteBase

_RECEIVED = "id, kind, reporter, report_id, domain, begin, end, received, summary FROM received_reports"


def _received(r: Sequence[Any]) -> ReceivedReport:
    return ReceivedReport(int(r[0]), r[1], r[2], r[3], r[4], float(r[5]), float(r[6]), float(r[7]), r[8])


class ReportsMixin(SqliteBase):
    async def server_secret(self, name: str) -> bytes:
        key = f"secret:{name}"

        def q(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else base64.b64decode(row[0])

        found = await self._read(q)
        if found is not None:
            return found
        made = base64.b64encode(secrets.token_bytes(32)).decode()

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> bytes:
            # another process may have made it meanwhile: the first one made is kept
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, made))
            return base64.b64decode(
                conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
            )

        return await self._write(tx)

    async def mta_sts_policy(self, domain: str) -> StoredStsPolicy | None:
        def q(conn: sqlite3.Connection) -> StoredStsPolicy | None:
            row = conn.execute(
                "SELECT domain, policy_id, policy, fetched FROM mta_sts_policies WHERE domain = ?", (domain,)
            ).fetchone()
            return None if row is None else StoredStsPolicy(row[0], row[1], row[2], float(row[3]))

        return await self._read(q)

    async def save_mta_sts_policy(self, policy: StoredStsPolicy) -> None:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO mta_sts_policies (domain, policy_id, policy, fetched) "
                "VALUES (?, ?, ?, ?)",
                (policy.domain, policy.policy_id, policy.policy, policy.fetched),
            )

        await self._write(tx)

    async def add_report_counts(self, counts: Sequence[ReportCount]) -> None:
        if not counts:
            return

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            conn.executemany(
                "INSERT INTO report_counts (kind, day, domain, key, count) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, day, domain, key) DO UPDATE SET count = count + excluded.count",
                [(c.kind, c.day, c.domain, c.key, c.count) for c in counts],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO report_policies (kind, day, domain, policy) VALUES (?, ?, ?, ?)",
                [(c.kind, c.day, c.domain, c.policy) for c in counts if c.policy],
            )

        await self._write(tx)

    async def pending_reports(self, before_day: str) -> list[PendingReport]:
        def q(conn: sqlite3.Connection) -> list[PendingReport]:
            rows = conn.execute(
                "SELECT c.kind, c.day, c.domain, coalesce(p.policy, ''), c.key, c.count FROM report_counts c "
                "LEFT JOIN report_policies p ON p.kind = c.kind AND p.day = c.day AND p.domain = c.domain "
                "WHERE c.day < ? ORDER BY c.kind, c.day, c.domain, c.key",
                (before_day,),
            )
            reports: dict[tuple[str, str, str], tuple[str, list[tuple[str, int]]]] = {}
            for kind, day, domain, policy, key, count in rows:
                reports.setdefault((kind, day, domain), (policy, []))[1].append((key, int(count)))
            return [
                PendingReport(kind, day, domain, policy, tuple(lines))
                for (kind, day, domain), (policy, lines) in reports.items()
            ]

        return await self._read(q)

    async def remove_report(self, kind: str, day: str, domain: str) -> None:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            key = (kind, day, domain)
            conn.execute("DELETE FROM report_counts WHERE kind = ? AND day = ? AND domain = ?", key)
            conn.execute("DELETE FROM report_policies WHERE kind = ? AND day = ? AND domain = ?", key)

        await self._write(tx)

    async def add_received_report(self, report: ReceivedReport) -> ReceivedReport | None:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> ReceivedReport | None:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO received_reports (kind, reporter, report_id, domain, begin, end, "
                "received, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    report.kind,
                    report.reporter,
                    report.report_id,
                    report.domain,
                    report.begin,
                    report.end,
                    report.received,
                    report.summary,
                ),
            )
            if cursor.rowcount == 0:
                return None
            return dataclasses.replace(report, id=int(cursor.lastrowid or 0))

        return await self._write(tx)

    async def received_report(self, report_id: int) -> ReceivedReport | None:
        def q(conn: sqlite3.Connection) -> ReceivedReport | None:
            row = conn.execute(f"SELECT {_RECEIVED} WHERE id = ?", (report_id,)).fetchone()
            return None if row is None else _received(row)

        return await self._read(q)

    async def received_reports(
        self, *, kind: str | None = None, domain: str | None = None, limit: int = 100
    ) -> list[ReceivedReport]:
        def q(conn: sqlite3.Connection) -> list[ReceivedReport]:
            where, args = [], []
            if kind is not None:
                where.append("kind = ?")
                args.append(kind)
            if domain is not None:
                where.append("domain = ?")
                args.append(domain)
            clause = f"WHERE {' AND '.join(where)} " if where else ""
            rows = conn.execute(
                f"SELECT {_RECEIVED} {clause}ORDER BY received DESC, id DESC LIMIT ?", (*args, max(0, limit))
            )
            return [
                ReceivedReport(int(r[0]), r[1], r[2], r[3], r[4], float(r[5]), float(r[6]), float(r[7]), r[8])
                for r in rows
            ]

        return await self._read(q)
