"""The SQLite store's migration to schema version 18: the MTA-STS policy cache and the report tables
(docs/decisions/0057, 0058)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from postoffice.store import OutboundMessage, OutboundRecipient, ReportCount, StoredStsPolicy, open_store
from postoffice.store.sqlite import SCHEMA_VERSION


def test_a_version_17_store_gets_the_report_tables_empty_and_the_requiretls_column(tmp_path: Path) -> None:
    path = tmp_path / "v17.sqlite3"

    async def fill() -> None:
        store = open_store(path)
        try:
            await store.add_domain("example.test")
        finally:
            await store.close()

    asyncio.run(fill())
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        DROP TABLE mta_sts_policies; DROP TABLE report_counts; DROP TABLE report_policies;
        DROP INDEX received_reports_received; DROP TABLE received_reports;
        ALTER TABLE queue_messages DROP COLUMN require_tls;
        UPDATE meta SET value = 17 WHERE key = 'schema_version';
        """
    )
    conn.commit()
    conn.close()

    async def check() -> None:
        store = open_store(path)
        try:
            assert await store.mta_sts_policy("example.org") is None
            assert await store.pending_reports("2999-01-01") == []
            assert await store.received_reports() == []
            await store.save_mta_sts_policy(StoredStsPolicy("example.org", "id1", "version: STSv1", 1.0))
            await store.add_report_counts([ReportCount("tlsrpt", "2026-12-01", "example.org", "{}")])
            assert len(await store.pending_reports("2999-01-01")) == 1
            assert (await store.list_domains())[0].name == "example.test"
            outbound = OutboundMessage(
                "a@example.test", [OutboundRecipient("b@example.org")], require_tls=True
            )
            queued = await store.queue_get(await store.enqueue(b"Subject: x\r\n\r\n", 14, outbound))
            assert queued is not None
            assert queued.require_tls
        finally:
            await store.close()

    asyncio.run(check())
    conn = sqlite3.connect(path)
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert version == SCHEMA_VERSION  # and on through the later migrations
    conn.close()
