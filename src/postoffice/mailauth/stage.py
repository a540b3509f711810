"""The authentication stage of the delivery pipeline (docs/decisions/0054): for mail from other servers
(port 25), iprev, SPF, DKIM, ARC and DMARC, one Authentication-Results field (RFC 8601) for every
recipient, and the sender domain's DMARC policy applied, unless a trusted ARC sealer vouches for the message.

Implementation notes
- Only deliveries of kind "mx" are checked: submissions are authenticated by their login, the queue's local
  deliveries were checked when they arrived, relaying clients are trusted by configuration.
- iprev, SPF, DKIM and ARC run at the same time (none needs another's result); DMARC then needs SPF's and
  DKIM's.
  A check that fails unexpectedly gives `temperror` and a log line: the message is still delivered (never
  lost because a check broke), with the result saying so.
- DMARC `fail` under the policy `reject`: every copy is rejected with 550 5.7.1 (the SMTP reply at the end
  of DATA; [mailauth] dmarc_reject = "quarantine" files it into Junk instead); under `quarantine`: into
  Junk. `none`, and every other result (temperror included): delivered as usual, with the results in the
  field.
- The ARC override (RFC 8617 section 7.2.1, RFC 7960's local policy override): a DMARC `fail` whose policy
  would apply is delivered as usual when the ARC chain validates (arc=pass) and its newest sealer (the d= of
  the highest-instance ARC-Seal) is in [mailauth] trusted_arc_sealers: that domain vouches that the message
  was authenticated when it reached it, and was changed (a list's footer) only by it. The field keeps
  dmarc=fail with a comment saying the policy was overridden and by whom; the DMARC aggregate report records
  the disposition as "none" with the override reason "trusted_forwarder" (RFC 9990's PolicyOverrideType).
  Only the newest sealer counts: an older one vouches for nothing we can check ourselves.
- Forged fields: an arriving Authentication-Results field with our authserv-id is removed before delivery
  (RFC 8601 section 5); the message without it replaces the received one for every later stage and the
  commit (`DeliveryPlan.message`). That is rare and costs a copy of the message; the common case costs
  reading the header section once.
- The body is read for DKIM only when the message has a DKIM-Signature field.
- SPF and iprev need only the client, HELO and MAIL FROM: the SMTP session tells the pipeline at MAIL
  (`sender_known`), the checks start then and run while the client sends DATA. Their results are kept for
  RECENT_SECONDS by (address) for iprev and (address, HELO, MAIL FROM) for SPF, so the next message of the
  same sender on the same connection (or another one) does not ask again; DNS TTLs are longer than that.
  DMARC's evaluation is kept the same way by its inputs (From domain, SPF result and domain, the DKIM pass
  domains): a sender's next message with the same results is not evaluated again.
- DMARC aggregate reports (RFC 9990, docs/decisions/0058): each message whose DMARC record asks for them
  (rua=) is counted as one line of the record domain's report of the day (`mailauth.reporting`): the
  client's address, the disposition applied, the aligned DKIM and SPF results and the checks' results.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import IO, TYPE_CHECKING, Generic, TypeVar

from postoffice.delivery.plan import AuthenticationSummary, DeliveryPlan, Message, Refusal
from postoffice.directory.dns_records import server_resolver
from postoffice.mailauth.arc import ArcResult, ArcVerifier
from postoffice.mailauth.dkim_verify import DkimResult, DkimVerifier
from postoffice.mailauth.dmarc import DmarcRecord, DmarcResult, check_dmarc, from_domain_of
from postoffice.mailauth.iprev import IprevResult, check_iprev
from postoffice.mailauth.reporting import ReportCounter
from postoffice.mailauth.results import claims_our_id, format_results, results_summary
from postoffice.mailauth.settings import MailAuthConfig
from postoffice.mailauth.spf import SpfChecker, SpfOutcome, SpfResult
from postoffice.message import PARSE_INLINE_LIMIT, parse_message
from postoffice.message.headers import iter_fields
from postoffice.net.dns import DnsResolver

if TYPE_CHECKING:
    from postoffice.config import Config
    from postoffice.store import MailStore

log = logging.getLogger("postoffice.mailauth")

T = TypeVar("T")

#: Octets of a header section read at most (a longer one is read no further: its fields are not checked).
MAX_HEADER = 1024 * 1024

#: No ARC set in the message.
NO_ARC = ArcResult("none", 0, (), "")

DMARC_REJECTED = Refusal(
    550,
    "5.7.1",
    "Rejected by the sender domain's DMARC policy: the message is not authenticated by its From domain",
    "dmarc",
)


def _read(source: IO[bytes], size: int) -> bytes:
    source.seek(0)
    return source.read(size)


def _header_section(source: IO[bytes], size: int) -> bytes:
    source.seek(0)
    head = bytearray()
    while len(head) < min(size, MAX_HEADER):
        chunk = source.read(min(64 * 1024, size - len(head)))
        if not chunk:
            break
        head += chunk
        end = head.find(b"\r\n\r\n")
        if end >= 0:
            return bytes(head[: end + 2])
    return bytes(head[:MAX_HEADER])


#: The fields the stage reads: From (DMARC's author domain) and Authentication-Results (forged ones).
_READ_FIELDS = frozenset({b"from", b"authentication-results"})


def _fields(header: bytes) -> list[tuple[str, str]]:
    """(name, unfolded value) of each From and Authentication-Results field, read as the MIME parser reads
    them (UTF-8 header bytes, RFC 6532, stay readable: they must, for the From domain DMARC judges). The
    others (a DKIM signature is the longest) are not unfolded and decoded for nothing."""
    return [(name, value) for name, value, _codec in iter_fields(header, only=_READ_FIELDS)]


#: Seconds a check's result (iprev, SPF) is used again for the same client and sender.
RECENT_SECONDS = 60.0
#: Results kept at most (the oldest go first).
RECENT_MAX = 10_000


class RecentChecks(Generic[T]):
    """Checks started or finished less than RECENT_SECONDS ago, by key, as tasks (one check per key)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tasks: dict[Hashable, tuple[float, asyncio.Task[T]]] = {}

    def get(self, key: Hashable, start: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        now = self._clock()
        found = self._tasks.get(key)
        if found is not None and now - found[0] < RECENT_SECONDS:
            return found[1]
        if len(self._tasks) >= RECENT_MAX:
            self._tasks = {k: v for k, v in self._tasks.items() if now - v[0] < RECENT_SECONDS}
            while len(self._tasks) >= RECENT_MAX:
                del self._tasks[next(iter(self._tasks))]
        task = asyncio.ensure_future(start())
        self._tasks[key] = (now, task)
        return task


class AuthenticationStage:
    name = "authentication"

    def __init__(
        self,
        settings: MailAuthConfig,
        hostname: str,
        resolver: DnsResolver,
        counter: ReportCounter | None = None,
    ) -> None:
        self.settings = settings
        self.counter = counter
        self.hostname = hostname
        self.resolver = resolver
        self.spf = SpfChecker(resolver, receiver=hostname, threads=settings.check_threads)
        self.dkim = DkimVerifier(resolver, threads=settings.check_threads, processes=settings.dkim_processes)
        self.arc = ArcVerifier(resolver, threads=settings.check_threads)
        self.trusted_arc_sealers = frozenset(settings.trusted_arc_sealers)
        self._iprev: RecentChecks[IprevResult] = RecentChecks()
        self._spf: RecentChecks[SpfOutcome] = RecentChecks()
        self._dmarc: RecentChecks[DmarcResult | None] = RecentChecks()

    def sender_known(self, kind: str, client_ip: str | None, helo: str | None, sender: str) -> None:
        """At MAIL (`DeliveryPipeline.sender_known`): start iprev and SPF for mail from other servers."""
        if kind == "mx":
            self._iprev_of(client_ip or "")
            self._spf_of(client_ip or "", helo or "", sender)

    def _iprev_of(self, ip: str) -> asyncio.Task[IprevResult]:
        return self._iprev.get(
            ip,
            lambda: self._safely(
                "iprev", check_iprev(self.resolver, ip), partial(IprevResult, "temperror", ip, "", "")
            ),
        )

    def _spf_of(self, ip: str, helo: str, sender: str) -> asyncio.Task[SpfOutcome]:
        return self._spf.get(
            (ip, helo, sender),
            lambda: self._safely("SPF", self.spf.check(ip=ip, helo=helo, mail_from=sender), _spf_broke),
        )

    def close(self) -> None:
        self.spf.close()
        self.dkim.close()
        self.arc.close()

    async def aclose(self) -> None:
        """At shutdown: the report counts reach the store, then the checkers stop."""
        if self.counter is not None:
            await self.counter.stop()
        self.close()

    async def run(self, message: Message, plan: DeliveryPlan) -> None:
        origin = plan.origin
        if origin.kind != "mx" or not plan.recipients:
            return
        size = message.parsed.size
        header = (
            _header_section(message.source, size)
            if size <= PARSE_INLINE_LIMIT
            else await asyncio.to_thread(_header_section, message.source, size)
        )
        fields = _fields(header)
        ip, helo = origin.client_ip or "", origin.helo or ""
        lowered = header.lower()
        signed = b"dkim-signature" in lowered
        sealed = b"arc-seal" in lowered or b"arc-message-signature" in lowered
        data = await self._message_bytes(message) if signed or sealed else None
        # iprev and SPF are tasks started at MAIL (usually done by now); DKIM and ARC run beside them
        arc_task = (
            asyncio.ensure_future(self._safely("ARC", self.arc.verify(data), _arc_broke))
            if sealed and data is not None
            else None
        )
        dkim: list[DkimResult] = []
        if signed and data is not None:
            dkim = await self._safely("DKIM", self._verify_dkim(data), list)
        iprev = await self._iprev_of(ip)
        spf = await self._spf_of(ip, helo, plan.envelope.sender)
        arc = await arc_task if arc_task is not None else NO_ARC
        from_domain = from_domain_of([value for name, value in fields if name.lower() == "from"])
        dmarc: DmarcResult | None = None
        if from_domain:
            passes = [d.domain for d in dkim if d.result == "pass"]
            # the same inputs, the same result while the DNS answers last: one evaluation per RECENT_SECONDS
            key = (from_domain, spf.mail_from.result, spf.mail_from.domain, tuple(sorted(passes)))
            dmarc = await self._dmarc.get(
                key,
                lambda: self._safely(
                    "DMARC",
                    check_dmarc(
                        self.resolver,
                        from_domain=from_domain,
                        spf_result=spf.mail_from.result,
                        spf_domain=spf.mail_from.domain,
                        dkim_passes=passes,
                    ),
                    lambda: None,
                ),
            )
        overriding = self._overriding_sealer(dmarc, arc)
        identities = [("smtp.mailfrom", spf.mail_from)]
        if spf.helo is not None:
            identities.append(("smtp.helo", spf.helo))
        spf_entries = [(r.result, prop, r.domain, r.explanation) for prop, r in identities]
        dmarc_entry = _dmarc_entry(dmarc, from_domain, fields, overriding)
        value = format_results(
            self.hostname,
            iprev=iprev,
            spf=spf_entries,
            dkim=dkim,
            dmarc=dmarc_entry,
            arc=arc,
            remote_ip=ip,
        )
        forged = [
            value
            for name, value in fields
            if name.lower() == "authentication-results" and claims_our_id(value, self.hostname)
        ]
        if forged:
            plan.message = await self._without_our_results(message, len(header))
        for recipient in plan.recipients:
            recipient.prepend_header("Authentication-Results", value)
        # for the ARC seal of forwarded copies (delivery/forwarding.py; RFC 8617 section 5.1.1's cv)
        plan.authentication_results = value
        plan.arc_chain = {"pass": "pass", "none": "none"}.get(arc.result, "fail")
        from_values = [value for name, value in fields if name.lower() == "from"]
        several_authors = from_domain is None and any("@" in value for value in from_values)
        disposition = self._apply_policy(dmarc, plan, several_authors, overriding)
        # the results as data for the spam stage (decision 0089), which must not score what was overridden
        plan.authentication = AuthenticationSummary(
            results_summary(iprev=iprev, spf=spf_entries, dkim=dkim, dmarc=dmarc_entry, arc=arc),
            arc_override=disposition == "deliver-arc-override",
        )
        if dmarc is not None and dmarc.record is not None and dmarc.record.rua and self.counter is not None:
            self.counter.add(
                "dmarc",
                dmarc.record_domain,
                dmarc_report_line(dmarc, ip, plan.envelope.sender, spf.mail_from, dkim, disposition),
                dmarc_report_policy(dmarc, dmarc.record),
            )
        log.info(
            "authentication id=%s client=%s iprev=%s spf=%s dkim=%s arc=%s dmarc=%s from=%s disposition=%s%s",
            origin.id or "-",
            ip,
            iprev.result,
            spf.mail_from.result,
            ",".join(f"{d.result}:{d.domain}" for d in dkim) or "none",
            f"{arc.result}:{','.join(arc.sealers)}" if arc.sealers else arc.result,
            dmarc.result if dmarc is not None else "none",
            from_domain or "-",
            disposition,
            f" forged_results_removed={len(forged)}" if forged else "",
        )

    def _overriding_sealer(self, dmarc: DmarcResult | None, arc: ArcResult) -> str:
        """The trusted sealer whose chain overrides `dmarc`'s policy ("" when none does; module notes)."""
        if dmarc is None or dmarc.result != "fail" or dmarc.policy == "none" or arc.result != "pass":
            return ""
        return arc.newest_sealer if arc.newest_sealer in self.trusted_arc_sealers else ""

    def _apply_policy(
        self, dmarc: DmarcResult | None, plan: DeliveryPlan, several_authors: bool, overriding_sealer: str
    ) -> str:
        if several_authors:
            # DMARC cannot judge a From with several domains (RFC 9989 section 11.5 leaves it to the
            # receiver): a forger could hide a protected domain beside their own, so it goes into Junk.
            for recipient in plan.recipients:
                recipient.file_into("Junk", special_use="\\Junk")
            return "quarantine"
        if dmarc is None or dmarc.result != "fail" or dmarc.policy == "none":
            return "deliver"
        if overriding_sealer:
            return "deliver-arc-override"
        if dmarc.policy == "reject" and self.settings.dmarc_reject == "reject":
            for recipient in plan.recipients:
                recipient.reject(DMARC_REJECTED)
            return "reject"
        for recipient in plan.recipients:
            recipient.file_into("Junk", special_use="\\Junk")
        return "quarantine"

    async def _message_bytes(self, message: Message) -> bytes:
        """The whole message (for DKIM and ARC)."""
        size = message.parsed.size
        if size <= PARSE_INLINE_LIMIT:
            return _read(message.source, size)
        return await asyncio.to_thread(_read, message.source, size)

    async def _verify_dkim(self, data: bytes) -> list[DkimResult]:
        return list(await self.dkim.verify(data))

    async def _safely(self, what: str, check: Awaitable[T], broke: Callable[[], T]) -> T:
        try:
            return await check
        except Exception as exc:  # a bug or a library's surprise: the message is still delivered
            log.error("authentication: the %s check failed: %s", what, exc, exc_info=exc)
            return broke()

    async def _without_our_results(self, message: Message, header_length: int) -> Message:
        """The message without the Authentication-Results fields that claim our authserv-id."""

        def rewrite() -> Message:
            source = message.source
            source.seek(0)
            head = source.read(header_length)
            kept: list[bytes] = []
            for field_bytes in _split_fields(head):
                name, _, value = field_bytes.partition(b":")
                if name.strip().lower() == b"authentication-results" and claims_our_id(
                    value.decode("utf-8", "replace"), self.hostname
                ):
                    continue
                kept.append(field_bytes)
            spool = tempfile.SpooledTemporaryFile(max_size=PARSE_INLINE_LIMIT)  # noqa: SIM115 - kept open
            spool.write(b"".join(kept))
            while chunk := source.read(1024 * 1024):
                spool.write(chunk)
            spool.seek(0)
            return Message(spool, parse_message(spool))

        return await asyncio.to_thread(rewrite)


def _split_fields(head: bytes) -> list[bytes]:
    """The header section's fields, each with its continuation lines and CRLFs, in order."""
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _spf_broke() -> SpfOutcome:
    return SpfOutcome(None, SpfResult("temperror", "", "the check failed"))


def dmarc_report_line(
    dmarc: DmarcResult,
    ip: str,
    sender: str,
    spf: SpfResult,
    dkim: list[DkimResult],
    disposition: str,
) -> dict[str, object]:
    """One line of an aggregate report (RFC 9990 section 3, the `record` element) for one message."""
    record = dmarc.record
    applied = {"reject": "reject", "quarantine": "quarantine"}.get(disposition, "none")
    if dmarc.result == "pass":
        applied = "pass"  # RFC 9990's ActionDispositionType: no policy applied, DMARC passed
    reasons = []
    if disposition == "deliver-arc-override":
        reasons.append("trusted_forwarder")
    elif dmarc.result == "fail" and record is not None and record.testing:
        reasons.append("policy_test_mode")
    return {
        "ip": ip,
        "disposition": applied,
        "dkim": "pass" if dmarc.dkim_aligned else "fail",
        "spf": "pass" if dmarc.spf_aligned else "fail",
        "reasons": reasons,
        "header_from": dmarc.from_domain,
        "envelope_from": sender.rpartition("@")[2].lower() if sender else "",
        "auth_dkim": [[d.domain, d.selector, d.result] for d in dkim if d.domain],
        "auth_spf": [spf.domain, "mfrom", spf.result],
    }


def dmarc_report_policy(dmarc: DmarcResult, record: DmarcRecord) -> dict[str, object]:
    """The policy published (RFC 9990's `policy_published`) and where reports go."""
    return {
        "domain": dmarc.record_domain,
        "p": record.policy or "none",
        "sp": record.subdomain_policy or "",
        "np": record.nonexistent_policy or "",
        "adkim": record.adkim,
        "aspf": record.aspf,
        "testing": "y" if record.testing else "n",
        "rua": list(record.rua),
    }


def _arc_broke() -> ArcResult:
    return ArcResult("temperror", 0, (), "the check failed")


def _dmarc_entry(
    dmarc: DmarcResult | None, from_domain: str | None, fields: list[tuple[str, str]], overriding_sealer: str
) -> tuple[str, str, str] | None:
    if dmarc is not None and overriding_sealer:
        why = f"policy={dmarc.policy} overridden by local_policy: ARC sealed by trusted {overriding_sealer}"
        return dmarc.result, dmarc.from_domain, f"{dmarc.reason}; {why}" if dmarc.reason else why
    if dmarc is not None:
        return dmarc.result, dmarc.from_domain, dmarc.reason
    if from_domain is None and any(name.lower() == "from" for name, _ in fields):
        return "permerror", "", "not exactly one author domain in From"
    if from_domain:
        return "temperror", from_domain, "the check failed"
    return None


def make_stage(config: Config, store: MailStore) -> AuthenticationStage | None:
    """The stage for this configuration (`delivery.stages.STAGES`); None when [mailauth] verify is off."""
    settings = config.mailauth
    if not settings.verify:
        return None
    resolver = server_resolver(config, cache_size=settings.dns_cache_size)
    counter = ReportCounter(store) if settings.send_reports else None
    return AuthenticationStage(settings, config.server.hostname, resolver, counter)
