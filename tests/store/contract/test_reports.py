"""Contract: the MTA-STS policy cache and the report tables (docs/decisions/0057, 0058): a policy per domain,
replaced by the newer; report lines that add up across calls and store objects (processes), listed per
report before a day and forgotten per report; received reports kept once per reporter and id."""

from __future__ import annotations

from postoffice.store import (
    MailStore,
    PendingReport,
    ReceivedReport,
    ReportCount,
    StoredStsPolicy,
)
from tests.store.contract.harness import Backend, covers

S = MailStore


@covers(S.server_secret)
def test_a_named_secret_is_made_once_and_the_same_for_every_process(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        first = await store.server_secret("srs")
        assert len(first) == 32
        assert await store.server_secret("srs") == first
        assert await store.server_secret("other") != first
        second = backend.open()
        try:
            assert await second.server_secret("srs") == first
        finally:
            await second.close()

    backend.run(scenario)


@covers(S.mta_sts_policy, S.save_mta_sts_policy)
def test_an_mta_sts_policy_is_kept_per_domain_and_replaced(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        assert await store.mta_sts_policy("example.org") is None
        first = StoredStsPolicy("example.org", "20260101", "version: STSv1\r\nmode: testing\r\n", 100.0)
        await store.save_mta_sts_policy(first)
        await store.save_mta_sts_policy(StoredStsPolicy("other.org", "x", "p", 5.0))
        assert await store.mta_sts_policy("example.org") == first
        newer = StoredStsPolicy("example.org", "20260202", "version: STSv1\r\nmode: enforce\r\n", 200.0)
        await store.save_mta_sts_policy(newer)
        second = backend.open()
        try:
            assert await second.mta_sts_policy("example.org") == newer
            assert await second.mta_sts_policy("other.org") == StoredStsPolicy("other.org", "x", "p", 5.0)
        finally:
            await second.close()

    backend.run(scenario)


@covers(S.add_report_counts, S.pending_reports, S.remove_report)
def test_report_lines_add_up_and_are_listed_per_report(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_report_counts([])
        await store.add_report_counts(
            [
                ReportCount("dmarc", "2026-12-01", "example.org", '{"ip":"192.0.2.1"}', 2, '{"p":"none"}'),
                ReportCount("dmarc", "2026-12-01", "example.org", '{"ip":"192.0.2.2"}'),
                ReportCount("tlsrpt", "2026-12-01", "example.org", '{"result":""}', 5),
                ReportCount("dmarc", "2026-12-02", "example.org", '{"ip":"192.0.2.1"}'),
            ]
        )
        second = backend.open()  # another process counts the same lines
        try:
            await second.add_report_counts(
                [ReportCount("dmarc", "2026-12-01", "example.org", '{"ip":"192.0.2.1"}', 3, '{"p":"reject"}')]
            )
        finally:
            await second.close()
        assert await store.pending_reports("2026-12-01") == []
        assert await store.pending_reports("2026-12-02") == [
            PendingReport(
                "dmarc",
                "2026-12-01",
                "example.org",
                '{"p":"reject"}',  # the policy last recorded
                (('{"ip":"192.0.2.1"}', 5), ('{"ip":"192.0.2.2"}', 1)),
            ),
            PendingReport("tlsrpt", "2026-12-01", "example.org", "", (('{"result":""}', 5),)),
        ]
        assert [r.day for r in await store.pending_reports("2026-12-03")] == [
            "2026-12-01",
            "2026-12-02",
            "2026-12-01",
        ]
        await store.remove_report("dmarc", "2026-12-01", "example.org")
        left = await store.pending_reports("2026-12-03")
        assert [(r.kind, r.day) for r in left] == [("dmarc", "2026-12-02"), ("tlsrpt", "2026-12-01")]
        assert left[0].policy == ""  # the removed report's policy went with it, not the next day's
        await store.add_report_counts([ReportCount("dmarc", "2026-12-01", "example.org", "{}")])
        again = await store.pending_reports("2026-12-02")
        assert again[0] == PendingReport("dmarc", "2026-12-01", "example.org", "", (("{}", 1),))

    backend.run(scenario)


@covers(S.add_received_report, S.received_reports, S.received_report)
def test_received_reports_are_kept_once_and_listed_newest_first(backend: Backend) -> None:
    def report(reporter: str, report_id: str, received: float, kind: str = "dmarc") -> ReceivedReport:
        return ReceivedReport(0, kind, reporter, report_id, "example.test", 10.0, 20.0, received, '{"n":1}')

    async def scenario(store: MailStore) -> None:
        assert await store.received_reports() == []
        first = await store.add_received_report(report("google.com", "r1", 100.0))
        assert first is not None
        assert first.id > 0
        assert await store.add_received_report(report("google.com", "r1", 101.0)) is None  # sent twice
        other = await store.add_received_report(report("outlook.com", "r1", 200.0))
        tls = await store.add_received_report(report("google.com", "r1", 300.0, "tlsrpt"))
        assert other is not None
        assert tls is not None
        assert await store.received_reports() == [tls, other, first]
        assert await store.received_reports(kind="dmarc") == [other, first]
        assert await store.received_reports(kind="dmarc", limit=1) == [other]
        assert await store.received_reports(domain="nowhere.test") == []
        assert await store.received_reports(domain="example.test", kind="tlsrpt") == [tls]
        assert await store.received_report(other.id) == other
        assert await store.received_report(tls.id + 1000) is None

    backend.run(scenario)
