"""The reports' way through the server (docs/decisions/0058): lines counted in memory and summed in a real
store, the daily DMARC and TLS reports built from them and queued to the addresses the DNS server on loopback
names (external destinations only when they agree), and reports arriving at postmaster summarised by the
delivery stage."""

from __future__ import annotations

import asyncio
import calendar
import datetime
import gzip
import io
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.delivery.plan import DeliveryPlan, Envelope, Message, Origin, Recipient, initial_plan
from postoffice.mailauth.report_intake import ReportIntake
from postoffice.mailauth.report_mail import DmarcIncoming, TlsRptIncoming, extract_reports
from postoffice.mailauth.report_sender import ReportSender, day_bounds, mailto_addresses
from postoffice.mailauth.reporting import ReportCounter, utc_day
from postoffice.mailauth.tlsrpt import parse_tlsrpt_json
from postoffice.message import parse_message
from postoffice.net.dns import DnsResolver
from postoffice.store import MailStore, ReportCount, open_store
from tests.mailauth.test_report_mail import _dmarc_mail, _tls_mail
from tests.support.dane_certs import make_ca, make_server, write_chain
from tests.support.dns_server import DnsServer, Zones

NOW = calendar.timegm((2026, 12, 2, 9, 0, 0))  # reports of 2026-12-01 are due
YESTERDAY = "2026-12-01"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    zones = Zones(
        [
            ("sender.test._report._dmarc.thirdparty.test.", "TXT", '"v=DMARC1"'),
            ("_smtp._tls.dest.test.", "TXT", '"v=TLSRPTv1; rua=mailto:tls@dest.test,https://r.dest.test/x"'),
            ("_smtp._tls.https-only.test.", "TXT", '"v=TLSRPTv1; rua=https://r.https-only.test/x"'),
        ]
    )
    server = DnsServer(zones).start()
    try:
        yield server
    finally:
        server.stop()


def run_with_store(tmp_path: Path, scenario: object) -> None:
    async def main() -> None:
        store = open_store(tmp_path / "store.sqlite3")
        try:
            await store.add_domain("example.test")
            await scenario(store)  # type: ignore[operator]
        finally:
            await store.close()

    asyncio.run(main())


def sender_for(store: MailStore, dns: DnsServer) -> ReportSender:
    resolver = DnsResolver(["127.0.0.1"], port=dns.port, timeout=2, lifetime=4)
    return ReportSender(store, None, resolver, hostname="mx.example.test", clock=lambda: NOW)


def test_counts_are_kept_in_memory_and_written_summed_when_flushed(tmp_path: Path) -> None:
    async def scenario(store: MailStore) -> None:
        counter = ReportCounter(store, clock=lambda: NOW, flush_interval=3600)
        for _ in range(3):
            counter.add("dmarc", "Sender.TEST", {"ip": "192.0.2.1"}, {"p": "none"})
        counter.add("dmarc", "sender.test", {"ip": "192.0.2.2"}, {"p": "reject"})
        counter.add("tlsrpt", "dest.test", {"result": ""})
        assert counter.pending() == 3
        assert await store.pending_reports("2999-01-01") == []  # nothing written before the flush
        await counter.stop()  # stopping flushes
        assert counter.pending() == 0
        reports = await store.pending_reports("2999-01-01")
        assert [(r.kind, r.day, r.domain, r.policy, r.lines) for r in reports] == [
            (
                "dmarc",
                "2026-12-02",
                "sender.test",
                '{"p":"reject"}',
                (('{"ip":"192.0.2.1"}', 3), ('{"ip":"192.0.2.2"}', 1)),
            ),
            ("tlsrpt", "2026-12-02", "dest.test", "", (('{"result":""}', 1),)),
        ]

    run_with_store(tmp_path, scenario)


def test_the_days_and_addresses_of_reports() -> None:
    assert utc_day(NOW) == "2026-12-02"
    begin, end = day_bounds(YESTERDAY)
    assert (utc_day(begin), utc_day(end), utc_day(end + 1)) == (YESTERDAY, YESTERDAY, "2026-12-02")
    assert mailto_addresses(
        [
            "mailto:a@x.test!10m",
            "https://r.test/",
            "MAILTO:b@y.test?subject=x",
            "mailto:a@x.test",
            "mailto:nobody",
        ]
    ) == ["a@x.test", "b@y.test"]


DMARC_POLICY = (
    '{"domain":"sender.test","p":"reject","sp":"","np":"","adkim":"r","aspf":"s","testing":"n",'
    '"rua":["mailto:dmarc@sender.test!10m","mailto:agg@thirdparty.test","mailto:no@elsewhere.test"]}'
)


def dmarc_line(ip: str, disposition: str, dkim: str, spf: str) -> str:
    return (
        f'{{"auth_dkim":[["sender.test","s1","{dkim}"]],"auth_spf":["sender.test","mfrom","{spf}"],'
        f'"dkim":"{dkim}","disposition":"{disposition}","envelope_from":"sender.test",'
        f'"header_from":"sender.test","ip":"{ip}","reasons":[],"spf":"{spf}"}}'
    )


def test_a_dmarc_report_goes_to_the_rua_addresses_that_may_receive_it(tmp_path: Path, dns: DnsServer) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_report_counts(
            [
                ReportCount(
                    "dmarc",
                    YESTERDAY,
                    "sender.test",
                    dmarc_line("192.0.2.1", "pass", "pass", "pass"),
                    7,
                    DMARC_POLICY,
                ),
                ReportCount(
                    "dmarc", YESTERDAY, "sender.test", dmarc_line("198.51.100.9", "reject", "fail", "fail"), 2
                ),
                ReportCount(
                    "dmarc", "2026-12-02", "sender.test", dmarc_line("192.0.2.1", "pass", "pass", "pass")
                ),
            ]
        )
        sender = sender_for(store, dns)
        assert await sender.send_due() == 2
        queued = await store.queue_list()
        assert sorted(r.address for m in queued for r in m.recipients) == [
            "agg@thirdparty.test",
            "dmarc@sender.test",
        ]
        assert {m.sender for m in queued} == {"postmaster@example.test"}  # the served domain's postmaster
        data = await store.queue_read(queued[0].id)
        found = extract_reports(data)
        assert found.errors == ()
        (incoming,) = found.reports
        assert isinstance(incoming, DmarcIncoming)
        report = incoming.report
        assert (report.org_name, report.email) == ("mx.example.test", "postmaster@example.test")
        assert (report.begin, report.end) == day_bounds(YESTERDAY)
        assert (report.policy.domain, report.policy.p, report.policy.aspf) == ("sender.test", "reject", "s")
        rows = sorted(
            (r.source_ip, r.count, r.evaluated.disposition, r.evaluated.dkim) for r in report.records
        )
        assert rows == [("192.0.2.1", 7, "pass", "pass"), ("198.51.100.9", 2, "reject", "fail")]
        left = await store.pending_reports("2999-01-01")
        assert [(r.day, r.lines[0][1]) for r in left] == [("2026-12-02", 1)]  # today's waits
        assert await sender.send_due() == 0

    run_with_store(tmp_path, scenario)


def test_a_tls_report_goes_to_the_domains_mailto_rua_and_none_without_a_record(
    tmp_path: Path, dns: DnsServer
) -> None:
    def line(mx: str, ip: str, result: str, detail: str = "") -> str:
        return (
            f'{{"detail":"{detail}","ip":"{ip}","mx":"{mx}",'
            f'"policy":["version: STSv1","mode: enforce","mx: mx.dest.test","max_age: 86400"],'
            f'"result":"{result}","type":"sts"}}'
        )

    async def scenario(store: MailStore) -> None:
        await store.add_report_counts(
            [
                ReportCount("tlsrpt", YESTERDAY, "dest.test", line("mx.dest.test", "192.0.2.5", ""), 40),
                ReportCount(
                    "tlsrpt",
                    YESTERDAY,
                    "dest.test",
                    line("mx.dest.test", "192.0.2.5", "certificate-expired", "expired on 2026-11-30"),
                    2,
                ),
                ReportCount(
                    "tlsrpt",
                    YESTERDAY,
                    "dest.test",
                    '{"detail":"certificate not accepted","ip":"","mx":"","policy":[],'
                    '"result":"sts-webpki-invalid","type":"sts"}',
                    3,
                ),
                ReportCount("tlsrpt", YESTERDAY, "quiet.test", line("mx.quiet.test", "192.0.2.6", ""), 5),
                ReportCount("tlsrpt", YESTERDAY, "https-only.test", line("mx.h.test", "192.0.2.7", ""), 5),
            ]
        )
        sender = sender_for(store, dns)
        assert await sender.send_due() == 1
        (queued,) = await store.queue_list()
        assert [r.address for r in queued.recipients] == ["tls@dest.test"]
        (incoming,) = extract_reports(await store.queue_read(queued.id)).reports
        assert isinstance(incoming, TlsRptIncoming)
        policy, unfetched = incoming.report.policies
        assert (unfetched.policy.policy_type, unfetched.total_failure_session_count) == ("sts", 3)
        assert [(d.result_type, d.receiving_mx_hostname) for d in unfetched.failure_details] == [
            ("sts-webpki-invalid", None)
        ]
        assert (policy.policy.policy_type, policy.policy.policy_domain) == ("sts", "dest.test")
        assert policy.policy.mx_hosts == ("mx.dest.test",)
        assert (policy.total_successful_session_count, policy.total_failure_session_count) == (40, 2)
        (failure,) = policy.failure_details
        assert (failure.result_type, failure.receiving_ip, failure.failed_session_count) == (
            "certificate-expired",
            "192.0.2.5",
            2,
        )
        assert incoming.report.start == datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
        assert await store.pending_reports("2999-01-01") == []  # the ones without a destination are dropped

    run_with_store(tmp_path, scenario)


def plan_for(raw: bytes, rcpt: str, account_id: int) -> tuple[Message, DeliveryPlan]:
    message = Message(io.BytesIO(raw), parse_message(io.BytesIO(raw)))
    origin = Origin("mx", "192.0.2.9", "mx.google.test")
    return message, initial_plan(Envelope("reports@google.test"), origin, [Recipient(rcpt, (account_id,))])


def test_reports_arriving_at_postmaster_are_summarised_once_and_the_message_filed_read(
    tmp_path: Path,
) -> None:
    async def scenario(store: MailStore) -> None:
        account = await store.add_account("postmaster@example.test", "hash")
        stage = ReportIntake(store, clock=lambda: NOW)
        message, plan = plan_for(_dmarc_mail(), "postmaster@example.test", account.id)
        await stage.run(message, plan)  # about example.com, not a domain of ours: not kept, not filed
        assert plan.recipients[0].flags == set()
        assert await store.received_reports() == []
        await store.add_domain("example.com")
        await store.add_domain("example.net")
        for raw in (_dmarc_mail(to_address="postmaster@example.test"), _tls_mail(), _dmarc_mail()):
            message, plan = plan_for(raw, "postmaster@example.test", account.id)
            await stage.run(message, plan)
            (recipient,) = plan.recipients
            assert recipient.flags == {"\\Seen"}
            assert recipient.mailbox == "Reports"
        kept = await store.received_reports()
        assert [(r.kind, r.received) for r in kept] == [
            ("tlsrpt", NOW),
            ("dmarc", NOW),
        ]  # the second DMARC: a copy
        dmarc = kept[1]
        assert dmarc.domain == "example.com"
        assert '"pass"' in dmarc.summary

        other = await store.add_account("demo@example.test", "hash")
        message, plan = plan_for(_dmarc_mail(), "demo@example.test", other.id)
        await stage.run(message, plan)
        assert plan.recipients[0].flags == set()
        message, plan = plan_for(b"Subject: hi\r\n\r\nno report\r\n", "postmaster@example.test", account.id)
        await stage.run(message, plan)
        assert plan.recipients[0].mailbox == "INBOX"
        assert len(await store.received_reports()) == 2

    run_with_store(tmp_path, scenario)


class ReportReceiver:
    """An HTTPS endpoint on 127.0.0.1 that keeps each request (head, body) and answers `status`."""

    def __init__(self, context: ssl.SSLContext, status: int = 200) -> None:
        self.context = context
        self.status = status
        self.requests: list[tuple[bytes, bytes]] = []
        self.port = 0

    async def __aenter__(self) -> ReportReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            self.requests.append((head, await reader.readexactly(length)))
            writer.write(
                f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        finally:
            writer.close()


def test_a_tls_report_is_posted_to_an_https_rua(tmp_path: Path, dns: DnsServer) -> None:
    """RFC 8460 section 5.4: the gzip-compressed JSON in a POST, Content-Type application/tlsrpt+gzip, with
    the server's certificate checked; a refusing endpoint (HTTP 500) is logged and not counted."""
    ca = make_ca("Report CA")
    leaf = make_server(["reports.post.test"], ca)
    cert, key = write_chain(tmp_path, leaf, ca)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))

    async def scenario(store: MailStore) -> None:
        async with ReportReceiver(server_side) as good, ReportReceiver(server_side, 500) as bad:
            dns.zones.add("reports.post.test.", "A", "127.0.0.1")
            uris = f"https://reports.post.test:{good.port}/v1/tlsrpt,https://reports.post.test:{bad.port}/"
            dns.zones.add("_smtp._tls.post.test.", "TXT", f'"v=TLSRPTv1; rua={uris}"')
            key_json = (
                '{"detail":"","ip":"192.0.2.8","mx":"mx.post.test","policy":[],"result":"",'
                '"type":"no-policy-found"}'
            )
            await store.add_report_counts([ReportCount("tlsrpt", YESTERDAY, "post.test", key_json, 9)])
            sender = sender_for(store, dns)
            sender.context = client
            assert await sender.send_due() == 1
        ((head, body),) = good.requests
        assert head.startswith(b"POST /v1/tlsrpt HTTP/1.1\r\n")
        assert b"content-type: application/tlsrpt+gzip" in head.lower()
        report = parse_tlsrpt_json(gzip.decompress(body))
        assert report.policies[0].total_successful_session_count == 9
        assert len(bad.requests) == 1  # tried, refused, not counted
        assert await store.queue_list() == []  # no mailto: destination: nothing queued
        assert await store.pending_reports("2999-01-01") == []

    run_with_store(tmp_path, scenario)


def test_a_tls_reports_summary_keeps_the_first_failures_and_counts_them_all() -> None:
    from postoffice.mailauth.report_intake import SUMMARY_ROWS, tlsrpt_summary
    from postoffice.mailauth.tlsrpt import FailureDetail, PolicyResult, TlsPolicy, TlsReport

    start = datetime.datetime(2024, 3, 1, tzinfo=datetime.UTC)
    failures = tuple(
        FailureDetail("certificate-expired", 1, receiving_mx_hostname=f"mx{n}.example.test")
        for n in range(205)
    )
    report = TlsReport(
        organization_name="Sender",
        start=start,
        end=start + datetime.timedelta(days=1),
        contact_info="tlsrpt@sender.example",
        report_id="many",
        policies=(
            PolicyResult(TlsPolicy("no-policy-found", "example.test"), 0, 205, failure_details=failures),
        ),
    )
    (policy,) = tlsrpt_summary(TlsRptIncoming(report, None))["policies"]
    assert len(policy["failures"]) == SUMMARY_ROWS
    assert policy["failures"][0]["mx"] == "mx0.example.test"
    assert (policy["failed"], policy["failures_total"]) == (205, 205)
