"""Reports other servers send about our domains (docs/decisions/0058): DMARC aggregate reports (RFC 9990)
and SMTP TLS reports (RFC 8460) arriving by mail are read, kept in the store as summaries (the admin's
"Reports" page, `postoffice reports`), and the message that carried them is filed read.

Implementation notes
- A delivery stage after authentication, for mail from other servers (port 25) to a postmaster address of
  ours: the address the DNS records we suggest publish as rua for both kinds (directory/dns_records.py).
  Other mail costs one look at the recipients' addresses.
- The message is read whole (at most MAX_REPORT_MESSAGE octets; reports are compressed) and taken apart in a
  worker thread (`report_mail.extract_reports`, bounded decompression, safe XML). A message with no
  report in it is delivered as any other.
- Each report is kept once per (kind, reporter, report id): reporters often send one report twice. The
  summary is written when the stage runs, before the message's own commit: a delivery that fails after
  it leaves the summary, and the retry finds it kept already. That is the one exception to "stages store
  nothing" (decision 0040), and harmless for the same reason.
- Only reports about a domain of ours are kept: anyone can mail postmaster, and a report about another
  domain is nobody's business here (its message is delivered as any other mail).
- The copy of a message that carried at least one report about our domains starts \\Seen, in the account's
  "Reports" folder when it has one (INBOX otherwise): a summary replaces reading the XML.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from postoffice.delivery.plan import DeliveryPlan, Message
from postoffice.mailauth.report_mail import DmarcIncoming, TlsRptIncoming, extract_reports
from postoffice.store import ReceivedReport

if TYPE_CHECKING:
    from postoffice.store import MailStore

log = logging.getLogger("postoffice.reports")

#: Largest message read for reports.
MAX_REPORT_MESSAGE = 20 * 1024 * 1024
#: The local part that receives reports.
REPORT_MAILBOX = "postmaster"
#: Rows kept in one report's summary (the largest sources first).
SUMMARY_ROWS = 200


def _read(source: IO[bytes], size: int) -> bytes:
    source.seek(0)
    return source.read(size)


def dmarc_summary(report: DmarcIncoming) -> dict[str, Any]:
    """What the admin sees of a DMARC aggregate report: totals, and rows by source address."""
    aggregate = report.report
    rows: list[dict[str, Any]] = []
    passed = failed = 0
    for record in aggregate.records:
        ok = record.evaluated.dkim == "pass" or record.evaluated.spf == "pass"
        if ok:
            passed += record.count
        else:
            failed += record.count
        rows.append(
            {
                "ip": record.source_ip,
                "count": record.count,
                "disposition": record.evaluated.disposition,
                "dkim": record.evaluated.dkim,
                "spf": record.evaluated.spf,
                "header_from": record.header_from,
            }
        )
    rows.sort(key=lambda row: -int(row["count"]))
    policy = aggregate.policy
    return {
        "policy": {"domain": policy.domain, "p": policy.p, "sp": policy.sp, "adkim": policy.adkim},
        "pass": passed,
        "fail": failed,
        "rows": rows[:SUMMARY_ROWS],
        "rows_total": len(rows),
        "errors": list(aggregate.errors),
    }


def tlsrpt_summary(report: TlsRptIncoming) -> dict[str, Any]:
    """What the admin sees of a TLS report: per policy, sessions that succeeded and failed, and why."""
    policies: list[dict[str, Any]] = [
        {
            "type": result.policy.policy_type,
            "domain": result.policy.policy_domain,
            "ok": result.total_successful_session_count,
            "failed": result.total_failure_session_count,
            "failures": [
                {
                    "result": detail.result_type,
                    "mx": detail.receiving_mx_hostname or "",
                    "ip": detail.receiving_ip or detail.sending_mta_ip or "",
                    "count": detail.failed_session_count,
                }
                for detail in result.failure_details[:SUMMARY_ROWS]
            ],
            "failures_total": len(result.failure_details),
        }
        for result in report.report.policies
    ]
    return {
        "ok": sum(p["ok"] for p in policies),
        "failed": sum(p["failed"] for p in policies),
        "policies": policies,
    }


class ReportIntake:
    name = "report-intake"

    def __init__(self, store: MailStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def run(self, message: Message, plan: DeliveryPlan) -> None:
        if plan.origin.kind != "mx":
            return
        targets = [
            recipient
            for recipient in plan.recipients
            if any(address.rpartition("@")[0].lower() == REPORT_MAILBOX for address in recipient.addresses)
        ]
        size = message.parsed.size
        if not targets or size > MAX_REPORT_MESSAGE:
            return
        extracted = await asyncio.to_thread(lambda: extract_reports(_read(message.source, size)))
        for error in extracted.errors:
            log.info("reports: id=%s: a report part could not be read: %s", plan.origin.id or "-", error)
        kept = ours_found = 0
        ours = {d.name for d in await self.store.list_domains()}
        for found in extracted.reports:
            if isinstance(found, DmarcIncoming):
                domain = found.report.policy.domain
                stored = ReceivedReport(
                    0,
                    "dmarc",
                    found.report.org_name,
                    found.report.report_id,
                    domain,
                    float(found.report.begin),
                    float(found.report.end),
                    self.clock(),
                    json.dumps(dmarc_summary(found), ensure_ascii=False),
                )
            else:
                tls = found.report
                domains = {p.policy.policy_domain for p in tls.policies}
                stored = ReceivedReport(
                    0,
                    "tlsrpt",
                    tls.organization_name,
                    tls.report_id,
                    ", ".join(sorted(domains)),
                    tls.start.timestamp(),
                    tls.end.timestamp(),
                    self.clock(),
                    json.dumps(tlsrpt_summary(found), ensure_ascii=False),
                )
            about = {d.strip().lower().rstrip(".") for d in stored.domain.split(",")}
            if not about & ours:  # anyone can mail postmaster: only reports about our domains are kept
                log.info(
                    "reports: id=%s: a %s report about %s, not a domain of ours, is not kept",
                    plan.origin.id or "-",
                    stored.kind,
                    stored.domain,
                )
                continue
            ours_found += 1
            added = await self.store.add_received_report(stored)
            kept += added is not None
            log.info(
                "reports: id=%s: %s report %s from %s about %s%s",
                plan.origin.id or "-",
                stored.kind,
                stored.report_id,
                stored.reporter,
                stored.domain,
                "" if added is not None else " (had it already)",
            )
        if ours_found:
            for recipient in targets:
                recipient.add_flags(["\\Seen"])
                recipient.file_into("Reports")


def make_stage(config: Any, store: MailStore) -> ReportIntake | None:
    """The stage (`delivery.stages.STAGES`), unless [mailauth] read_reports is off; it costs a look at the
    recipients per message."""
    return ReportIntake(store) if config.mailauth.read_reports else None
