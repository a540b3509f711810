"""Sending the daily reports (docs/decisions/0058): DMARC aggregate reports (RFC 9990) about the mail we
received, and SMTP TLS reports (RFC 8460) about the mail we sent, from what `mailauth.reporting` counted.

Implementation notes
- Once an hour (and soon after start) every report of a finished UTC day is made and queued through the
  outbound queue like any message of ours (DKIM-signed by `DeliveryPipeline.sign_generated` when the From
  domain has keys), then forgotten in the store. Queueing and forgetting are two transactions: a crash
  between them sends that report twice, never loses it silently; the report id is made from the domain,
  the day and our name (`report_mail.make_report_id`), so a report sent again has the same id, as RFC 9990
  asks.
- DMARC: the report goes to the `mailto:` URIs of the policy record's rua (as seen that day), without any
  `!size` suffix. A URI whose domain is not the policy domain's (or its organizational domain's) is used
  only when that domain agrees, by a TXT record `<policy domain>._report._dmarc.<its domain>` starting
  with `v=DMARC1` (RFC 9990 section 3 / RFC 9989 "external destinations"); at most MAX_RUA destinations.
- TLS-RPT: the `_smtp._tls` TXT record of the recipient domain is looked up when the report is sent; no
  record, no report. `mailto:` URIs get the report by mail, `https:` URIs by an HTTPS POST
  (`mailauth/report_post.py`, RFC 8460 section 5.4), each once.
- The reporter: org_name is the server's host name; the contact address and the envelope sender are
  `[mailauth] report_from`, by default postmaster@ the served domain the host name belongs to (or the
  first served domain).
- Only one node should send (issue 16 will elect one); today there is one.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import datetime
import gzip
import json
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import dns.name

from postoffice.mailauth import dmarc_reports, report_mail, tlsrpt
from postoffice.mailauth.report_post import ReportPostError, post_report
from postoffice.mailauth.reporting import utc_day
from postoffice.net.dns import DnsResolver, DnsTemporaryFailure, NoSuchDomain
from postoffice.store import MailStore, OutboundMessage, OutboundRecipient, PendingReport

if TYPE_CHECKING:
    from postoffice.delivery.pipeline import DeliveryPipeline

log = logging.getLogger("postoffice.reports")

#: Seconds between looks for reports to send.
SEND_INTERVAL = 3600.0
#: Seconds after start before the first look.
FIRST_LOOK = 60.0
#: Destinations of one report at most (a record listing more is cut).
MAX_RUA = 5
#: DKIM signatures listed per report line at most (RFC 9990 section 2.4 allows 100).
MAX_DKIM = 10


def day_bounds(day: str) -> tuple[int, int]:
    """The first and last second of a UTC day (YYYY-MM-DD)."""
    start = calendar.timegm(time.strptime(day, "%Y-%m-%d"))
    return start, start + 86399


def mailto_addresses(uris: Sequence[str]) -> list[str]:
    """The addresses of the mailto: URIs (RFC 6068), without a `!size` suffix or `?` parameters."""
    addresses = []
    for uri in uris:
        if not uri.lower().startswith("mailto:"):
            continue
        address = uri[7:].split("?", 1)[0].split("!", 1)[0].strip()
        if "@" in address and address not in addresses:
            addresses.append(address)
    return addresses[:MAX_RUA]


class ReportSender:
    def __init__(
        self,
        store: MailStore,
        pipeline: DeliveryPipeline | None,
        resolver: DnsResolver,
        *,
        hostname: str,
        report_from: str = "",
        clock: Callable[[], float] = time.time,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.store = store
        #: TLS for the https: destinations of TLS reports (certificates checked; [queue] tls_ca_file)
        self.context = context
        self.pipeline = pipeline
        self.resolver = resolver
        self.hostname = hostname
        self.report_from = report_from
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="report-sender")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        await asyncio.sleep(FIRST_LOOK)
        while True:
            try:
                await self.send_due()
            except Exception:
                log.exception("reports: sending failed; trying again in an hour")
            await asyncio.sleep(SEND_INTERVAL)

    async def send_due(self) -> int:
        """Queue every report of a day before today; returns how many messages were queued."""
        pending = await self.store.pending_reports(utc_day(self.clock()))
        if not pending:
            return 0
        sender = await self._sender()
        queued = 0
        for report in pending:
            try:
                if report.kind == "dmarc":
                    queued += await self._send_dmarc(report, sender)
                elif report.kind == "tlsrpt":
                    queued += await self._send_tlsrpt(report, sender)
            except DnsTemporaryFailure as exc:  # kept for the next look
                log.info(
                    "reports: %s report for %s of %s waits: %s", report.kind, report.domain, report.day, exc
                )
                continue
            except Exception:
                log.exception(
                    "reports: the %s report for %s of %s is dropped", report.kind, report.domain, report.day
                )
            await self.store.remove_report(report.kind, report.day, report.domain)
        return queued

    async def _sender(self) -> str:
        if self.report_from:
            return self.report_from
        domains = [d.name for d in await self.store.list_domains()]
        host = self.hostname.lower().rstrip(".")
        own = [d for d in domains if host == d or host.endswith("." + d)]
        chosen = max(own, key=len) if own else (domains[0] if domains else host)
        return f"postmaster@{chosen}"

    async def _queue(self, data: bytes, sender: str, to: str) -> None:
        if self.pipeline is not None:
            data = await self.pipeline.sign_generated(data)
        await self.store.enqueue(data, len(data), OutboundMessage(sender, [OutboundRecipient(to)]))

    # -- DMARC -----------------------------------------------------------------------------------------------
    async def _send_dmarc(self, pending: PendingReport, sender: str) -> int:
        policy = json.loads(pending.policy) if pending.policy else {}
        destinations = [
            a for a in mailto_addresses(policy.get("rua", [])) if await self._may_receive(pending.domain, a)
        ]
        if not destinations:
            log.info(
                "reports: no destination accepts the DMARC report for %s of %s", pending.domain, pending.day
            )
            return 0
        report = self.dmarc_report(pending, policy, sender)
        for to in destinations:
            data = report_mail.dmarc_report_message(
                report,
                from_address=sender,
                to_address=to,
                submitter=sender.rpartition("@")[2],
                date=datetime.datetime.fromtimestamp(self.clock(), datetime.UTC),
            )
            await self._queue(data, sender, to)
        log.info(
            "reports: DMARC report for %s of %s (%d lines) queued to %s",
            pending.domain,
            pending.day,
            len(report.records),
            ", ".join(destinations),
        )
        return len(destinations)

    def dmarc_report(
        self, pending: PendingReport, policy: dict[str, Any], sender: str
    ) -> dmarc_reports.AggregateReport:
        begin, end = day_bounds(pending.day)
        records = []
        for key, count in pending.lines:
            line = json.loads(key)
            dkim_auth = tuple(
                dmarc_reports.DkimAuth(domain, selector, result)
                for domain, selector, result in line.get("auth_dkim", [])[:MAX_DKIM]
            )
            spf_domain, spf_scope, spf_result = line.get("auth_spf", ["", "mfrom", "none"])
            records.append(
                dmarc_reports.ReportRecord(
                    source_ip=line["ip"],
                    count=count,
                    evaluated=dmarc_reports.PolicyEvaluated(
                        line["disposition"],
                        line["dkim"],
                        line["spf"],
                        tuple(dmarc_reports.PolicyOverrideReason(r) for r in line.get("reasons", [])),
                    ),
                    header_from=line["header_from"],
                    envelope_from=line.get("envelope_from", ""),
                    dkim=dkim_auth,
                    spf=(dmarc_reports.SpfAuth(spf_domain or line["header_from"], spf_result, spf_scope),),
                )
            )
        published = dmarc_reports.PolicyPublished(
            domain=policy.get("domain", pending.domain),
            p=policy.get("p", "none"),
            sp=policy.get("sp") or None,
            np=policy.get("np") or None,
            adkim=policy.get("adkim", "r"),
            aspf=policy.get("aspf", "r"),
            testing=policy.get("testing", "n"),
            discovery_method="treewalk",
        )
        return dmarc_reports.AggregateReport(
            org_name=self.hostname,
            email=sender,
            report_id=report_mail.make_report_id(pending.domain, begin, self.hostname),
            begin=begin,
            end=end,
            policy=published,
            records=tuple(records),
            generator="Postoffice",
        )

    async def _may_receive(self, policy_domain: str, address: str) -> bool:
        """RFC 9989's external destination check: a report about `policy_domain` goes to `address` when
        its domain is the policy domain's or the other domain publishes its agreement."""
        target = address.rpartition("@")[2].lower().rstrip(".")
        domain = policy_domain.lower().rstrip(".")
        if target == domain or target.endswith("." + domain) or domain.endswith("." + target):
            return True
        try:
            name = dns.name.from_text(f"{domain}._report._dmarc.{target}")
            rrset = await self.resolver.query(name, "TXT")
        except NoSuchDomain:
            return False
        except (DnsTemporaryFailure, dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel):
            return False
        if rrset is None:
            return False
        for rdata in rrset:
            text = b"".join(rdata.strings).decode("ascii", "replace").strip()
            if text.lower().startswith("v=dmarc1"):
                return True
        return False

    # -- TLS-RPT ---------------------------------------------------------------------------------------------
    async def _send_tlsrpt(self, pending: PendingReport, sender: str) -> int:
        try:
            rrset = await self.resolver.query(f"_smtp._tls.{pending.domain}", "TXT")
        except NoSuchDomain:
            rrset = None
        strings = [b"".join(rdata.strings).decode("ascii", "replace") for rdata in rrset or ()]
        record = tlsrpt.select_tlsrpt_record(strings)
        try:
            uris = tlsrpt.parse_tlsrpt_record(record) if record is not None else []
        except tlsrpt.TlsRptError:
            uris = []
        destinations = mailto_addresses(uris)
        posts = [uri for uri in uris if uri.lower().startswith("https:")][:MAX_RUA]
        if not destinations and not posts:
            return 0  # the domain asks for no reports
        report = self.tls_report(pending, sender)
        sent = 0
        if posts:
            body = gzip.compress(tlsrpt.build_tlsrpt_json(report), mtime=0)
            context = self.context or ssl.create_default_context()
            for uri in posts:
                try:
                    status = await post_report(uri, body, resolver=self.resolver, context=context)
                except ReportPostError as exc:
                    log.info(
                        "reports: TLS report for %s of %s not posted to %s: %s",
                        pending.domain,
                        pending.day,
                        uri,
                        exc,
                    )
                    continue
                sent += 1
                log.info(
                    "reports: TLS report for %s of %s posted to %s: HTTP %d",
                    pending.domain,
                    pending.day,
                    uri,
                    status,
                )
        for to in destinations:
            data = report_mail.tlsrpt_report_message(
                report,
                from_address=sender,
                to_address=to,
                submitter=sender.rpartition("@")[2],
                date=datetime.datetime.fromtimestamp(self.clock(), datetime.UTC),
                policy_domain=pending.domain,
            )
            await self._queue(data, sender, to)
        if destinations:
            log.info(
                "reports: TLS report for %s of %s queued to %s",
                pending.domain,
                pending.day,
                ", ".join(destinations),
            )
        return sent + len(destinations)

    def tls_report(self, pending: PendingReport, sender: str) -> tlsrpt.TlsReport:
        begin, end = day_bounds(pending.day)
        policies: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
        for key, count in pending.lines:
            line = json.loads(key)
            entry = policies.setdefault(
                (line["type"], tuple(line["policy"])),
                {"mx": [], "ok": 0, "failed": 0, "details": {}},
            )
            if line["mx"] not in entry["mx"]:
                entry["mx"].append(line["mx"])
            if line["result"]:
                entry["failed"] += count
                detail_key = (line["result"], line["mx"], line["ip"], line["detail"])
                entry["details"][detail_key] = entry["details"].get(detail_key, 0) + count
            else:
                entry["ok"] += count
        results = []
        for (kind, strings), entry in policies.items():
            results.append(
                tlsrpt.PolicyResult(
                    policy=tlsrpt.TlsPolicy(
                        policy_type=kind,
                        policy_domain=pending.domain,
                        policy_strings=strings,
                        mx_hosts=_sts_mx_patterns(strings) if kind == "sts" else (),
                    ),
                    total_successful_session_count=entry["ok"],
                    total_failure_session_count=entry["failed"],
                    failure_details=tuple(
                        tlsrpt.FailureDetail(
                            result_type=result,
                            receiving_mx_hostname=mx or None,
                            receiving_ip=ip or None,
                            failed_session_count=n,
                            failure_reason_code=detail or None,
                        )
                        for (result, mx, ip, detail), n in entry["details"].items()
                    ),
                )
            )
        return tlsrpt.TlsReport(
            organization_name=self.hostname,
            start=datetime.datetime.fromtimestamp(begin, datetime.UTC),
            end=datetime.datetime.fromtimestamp(end + 1, datetime.UTC),
            contact_info=sender,
            report_id=report_mail.make_report_id(pending.domain, begin, self.hostname),
            policies=tuple(results),
        )


def _sts_mx_patterns(strings: Sequence[str]) -> tuple[str, ...]:
    """The mx patterns of an MTA-STS policy's lines (RFC 8460 section 4.4's mx-host)."""
    return tuple(
        line.split(":", 1)[1].strip() for line in strings if line.split(":", 1)[0].strip().lower() == "mx"
    )
