"""The spam stage of the delivery pipeline (docs/decisions/0086): rspamd's score decides what happens to a
message from another server.

Implementation notes
- Only deliveries of kind "mx" are scanned: submitted mail is the users' own, relaying clients are trusted by
  configuration, and the queue's local deliveries (bounces) were written by this server.
- The stage runs after the authentication stage and before Sieve: rspamd gets the message as received, and
  the recipients' scripts see the result in the header fields (`header`, and `spamtest` later).
- score >= `[spam] reject_score`: every copy is refused with 550 5.7.1, which is the SMTP reply at the end of
  DATA: the sender's server, not we, tells its user. score >= `junk_score`: every copy goes into the
  recipient's mailbox with the \\Junk attribute (its Junk, whatever its name; INBOX when it has none).
  Otherwise nothing changes. With `add_headers`, X-Spam-Status, X-Spam-Score and X-Spamd-Result (the
  symbols, highest score first) go on top of every copy that is delivered; one text for all recipients.
- rspamd not answering (not running, slower than `[spam] timeout`, an answer that is not its protocol's):
  `on_failure = "accept"` delivers the message unfiltered and logs a warning (never refused or lost because
  the filter broke); `"tempfail"` refuses it with 451 4.7.1 so that the sender tries again. A message larger
  than `max_scan_size` is delivered without a scan.
- Without rspamd (docs/decisions/0089), with `[spam] builtin_filter`: the built-in verdict
  (`postoffice.spam.builtin`: the authentication results as data, `DeliveryPlan.authentication`, and the
  DNSBL listings the SMTP session found)
  gives the score instead, judged by `junk_score` only (it never refuses), with the same X-Spam-* fields.
  The stage is then built only when it has something to judge by ([mailauth] verify, or DNSBL zones).
- A client listed by a DNS blocklist under `dnsbl_action = "junk"` (`Origin.dnsbl`): every copy goes into
  Junk, with rspamd too (whatever its score, unless it refuses the message) and when it is not scanned.
- The score and `junk_score` go into the plan (`DeliveryPlan.spam_score`) for Sieve's spamtest (RFC 5235,
  docs/decisions/0090), rspamd's or the built-in one; a message not scanned has none.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from postoffice.delivery.plan import DeliveryPlan, Message, RecipientPlan, Refusal
from postoffice.spam.builtin import builtin_verdict
from postoffice.spam.rspamd import RspamdClient, RspamdError, ScanRequest, Verdict

if TYPE_CHECKING:
    from postoffice.config import Config
    from postoffice.spam.settings import SpamConfig
    from postoffice.store import MailStore

log = logging.getLogger("postoffice.spam")

SPAM_REJECTED = Refusal(550, "5.7.1", "Message rejected as spam", "spam")
FILTER_UNAVAILABLE = Refusal(451, "4.7.1", "The spam filter is unavailable, try again later", "spam")
#: Octets of X-Spamd-Result at most (the symbols with the highest scores are kept).
MAX_RESULT = 900


def result_fields(verdict: Verdict, junk_score: float, *, spam: bool | None = None) -> list[tuple[str, str]]:
    """The header fields that say what the filter found (name, value), top first. `spam`: whether it is
    spam when not by the score alone (a DNSBL listing under `dnsbl_action = "junk"`)."""
    if spam is None:
        spam = verdict.score >= junk_score
    symbols = sorted(verdict.symbols.items(), key=lambda item: (-abs(item[1]), item[0]))
    parts: list[str] = []
    size = 0
    for name, score in symbols:
        part = f"{name}({score:.2f})"
        if size + len(part) > MAX_RESULT:
            break
        parts.append(part)
        size += len(part) + 4
    summary = f"{spam}; {verdict.score:.2f} / {junk_score:.2f}"
    return [
        ("X-Spam-Status", f"{'Yes' if spam else 'No'}, score={verdict.score:.2f} required={junk_score:.2f}"),
        ("X-Spam-Score", f"{verdict.score:.2f}"),
        ("X-Spamd-Result", summary + (";\r\n\t" + ",\r\n\t".join(parts) if parts else "")),
    ]


class SpamStage:
    """The delivery stage (see the module notes); `client` None: the built-in verdict instead of rspamd."""

    name = "spam"

    def __init__(self, settings: SpamConfig, client: RspamdClient | None, hostname: str) -> None:
        self.settings = settings
        self.client = client
        self.hostname = hostname

    async def run(self, message: Message, plan: DeliveryPlan) -> None:
        origin = plan.origin
        kept = [r for r in plan.recipients if r.action == "deliver"]
        if origin.kind != "mx" or not kept:
            return
        settings = self.settings
        listed_junk = bool(origin.dnsbl) and settings.dnsbl_action == "junk"
        if self.client is None:
            self._builtin(plan, kept, listed_junk)
            return
        size = message.parsed.size
        if size > settings.max_scan_size:
            log.info("delivery id=%s: %d octets, not scanned for spam", origin.id or "-", size)
            if listed_junk:
                _into_junk(kept)
            return
        request = ScanRequest(
            client_ip=origin.client_ip,
            helo=origin.helo,
            sender=plan.envelope.sender,
            recipients=[a for r in kept for a in r.addresses],
            queue_id=origin.id,
            hostname=self.hostname,
        )
        try:
            verdict = await self.client.check(message.source, size, request)
        except RspamdError as exc:
            if settings.on_failure == "tempfail":
                log.warning("delivery id=%s: spam filter failed (%s): refused for now", origin.id or "-", exc)
                for recipient in kept:
                    recipient.reject(FILTER_UNAVAILABLE)
            else:
                log.warning(
                    "delivery id=%s: spam filter failed (%s): delivered unfiltered", origin.id or "-", exc
                )
                if listed_junk:
                    _into_junk(kept)
            return
        log.info(
            "delivery id=%s: spam score %.2f (rspamd: %s)",
            origin.id or "-",
            verdict.score,
            verdict.action or "-",
        )
        if verdict.score >= settings.reject_score:
            for recipient in kept:
                recipient.reject(SPAM_REJECTED)
            return
        plan.spam_score = (verdict.score, settings.junk_score)  # for Sieve's spamtest (RFC 5235)
        junk = verdict.score >= settings.junk_score or listed_junk
        if junk:
            _into_junk(kept)
        if settings.add_headers:
            _add_fields(kept, result_fields(verdict, settings.junk_score, spam=junk))

    def _builtin(self, plan: DeliveryPlan, kept: list[RecipientPlan], listed_junk: bool) -> None:
        settings = self.settings
        origin = plan.origin
        verdict = builtin_verdict(plan.authentication, origin.dnsbl)
        plan.spam_score = (verdict.score, settings.junk_score)  # for Sieve's spamtest (RFC 5235)
        junk = verdict.score >= settings.junk_score or listed_junk
        log.info(
            "delivery id=%s: built-in spam score %.2f (%s)%s",
            origin.id or "-",
            verdict.score,
            ",".join(verdict.symbols) or "-",
            ": into Junk" if junk else "",
        )
        if junk:
            _into_junk(kept)
        if settings.add_headers:
            _add_fields(kept, result_fields(verdict, settings.junk_score, spam=junk))


def _into_junk(kept: list[RecipientPlan]) -> None:
    for recipient in kept:
        recipient.file_into("Junk", special_use="\\Junk")


def _add_fields(kept: list[RecipientPlan], fields: list[tuple[str, str]]) -> None:
    for recipient in kept:
        for name, value in reversed(fields):  # each goes on top: the first ends up first
            recipient.prepend_header(name, value)


def make_stage(config: Config, store: MailStore) -> SpamStage | None:
    """The stage for this configuration (`delivery.stages.STAGES`): with rspamd when `[spam] rspamd_url` is
    set; else the built-in verdict when `builtin_filter` is on and it has something to judge by (the
    authentication results of [mailauth] verify, or DNSBL zones); else None."""
    settings = config.spam
    if settings.rspamd_url:
        client = RspamdClient(settings.rspamd_url, timeout=settings.timeout)
        return SpamStage(settings, client, config.server.hostname)
    if settings.builtin_filter and (config.mailauth.verify or settings.dnsbl_zones):
        return SpamStage(settings, None, config.server.hostname)
    return None
