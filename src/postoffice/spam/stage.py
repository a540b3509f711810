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
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from postoffice.delivery.plan import DeliveryPlan, Message, Refusal
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


def result_fields(verdict: Verdict, junk_score: float) -> list[tuple[str, str]]:
    """The header fields that say what rspamd found (name, value), top first."""
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
    """The delivery stage (see the module notes)."""

    name = "spam"

    def __init__(self, settings: SpamConfig, client: RspamdClient, hostname: str) -> None:
        self.settings = settings
        self.client = client
        self.hostname = hostname

    async def run(self, message: Message, plan: DeliveryPlan) -> None:
        origin = plan.origin
        kept = [r for r in plan.recipients if r.action == "deliver"]
        if origin.kind != "mx" or not kept:
            return
        settings = self.settings
        size = message.parsed.size
        if size > settings.max_scan_size:
            log.info("delivery id=%s: %d octets, not scanned for spam", origin.id or "-", size)
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
        if verdict.score >= settings.junk_score:
            for recipient in kept:
                recipient.file_into("Junk", special_use="\\Junk")
        if settings.add_headers:
            fields = result_fields(verdict, settings.junk_score)
            for recipient in kept:
                for name, value in reversed(fields):  # each goes on top: the first ends up first
                    recipient.prepend_header(name, value)


def make_stage(config: Config, store: MailStore) -> SpamStage | None:
    """The stage for this configuration (`delivery.stages.STAGES`); None without `[spam] rspamd_url`."""
    settings = config.spam
    if not settings.rspamd_url:
        return None
    client = RspamdClient(settings.rspamd_url, timeout=settings.timeout)
    return SpamStage(settings, client, config.server.hostname)
