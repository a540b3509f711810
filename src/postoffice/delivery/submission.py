"""Submission policy (RFC 6409 on port 587, RFC 8314 on port 465; later the webmail and JMAP): what an
authenticated user may send, as one service every submitting front end calls (docs/decisions/0019, 0024,
0041).

Implementation notes
- Sender ownership: the envelope sender, and every address of the From, Sender, Resent-From and
  Resent-Sender fields (read strictly by `postoffice.delivery.originator`, including addresses written in
  their display names and comments), must be addresses the account owns: an address that the directory
  resolves to this account and to no other (its own address, plus-addressing of it, an alias or a catch-all
  whose only target it is). A list alias with several targets is owned by none of them. Otherwise 553 5.7.1
  (RFC 6409 section 6.1 lets the MSA refuse a sender it cannot authorise); so is a message without exactly
  one From, or whose originator fields cannot be parsed (554 5.6.0 for a malformed header block).
- Sending limits per account, in this process's memory: messages per hour (a sliding window of 3,600 s,
  450 4.7.1; the account's own `send_limit` when it has one, else the server's `[submission]
  max_messages_per_hour`: docs/decisions/0053; read with the account at login, so an SMTP session keeps
  the limit it logged in with) and recipients per message (452 4.5.3). A restart forgets the window; that
  is accepted (the limit is a brake against a stolen password, not accounting). A message counts once it is
  stored (`sent`).
- Header fixes (RFC 6409 section 8): a message without Date or Message-ID gets one; the caller puts the
  fields at the top of the message's own header (SMTP: below its trace fields). What identifies the client
  (the Received field) is the front end's business.
- The interface has no protocol types: a refusal is a `Refusal` (code, enhanced status, text and a
  `reason` named after JMAP's EmailSubmission errors, RFC 8621 section 7.5), which SMTP sends as its reply
  and the webmail and JMAP map to theirs. SMTP asks at each step of its dialogue (`check_sender` at MAIL,
  `check_recipients` at RCPT, `check_message` at the end of data), so that a client learns early;
  front ends with the whole message at once call `check`. Store errors propagate (a temporary failure).
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from postoffice.delivery.originator import Claim, OriginatorRefused, read_claims
from postoffice.delivery.plan import Refusal
from postoffice.directory.resolver import normalize_address
from postoffice.message import PARSE_INLINE_LIMIT, ParsedMessage
from postoffice.store import Account, MailStore

if TYPE_CHECKING:
    from postoffice.net.service import ServiceContext

log = logging.getLogger("postoffice.submission")

#: `Refusal.reason` values, after RFC 8621 section 7.5's EmailSubmission/set errors.
FORBIDDEN_MAIL_FROM = "forbiddenMailFrom"
FORBIDDEN_FROM = "forbiddenFrom"
FORBIDDEN_TO_SEND = "forbiddenToSend"
TOO_MANY_RECIPIENTS = "tooManyRecipients"
INVALID_EMAIL = "invalidEmail"

OVER_LIMIT = Refusal(450, "4.7.1", "Sending limit reached, try again later", FORBIDDEN_TO_SEND)
TOO_MANY = Refusal(452, "4.5.3", "Too many recipients for one message", TOO_MANY_RECIPIENTS)


class SendingLimiter:
    """Messages per hour per account: a sliding window of the times of accepted messages. `per_hour` is the
    server's limit; an account's own (`Account.send_limit`, nonzero) replaces it for that account."""

    WINDOW = 3600.0

    def __init__(self, per_hour: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_hour = per_hour
        self._clock = clock
        self._sent: dict[int, collections.deque[float]] = {}

    def _window(self, account_id: int) -> collections.deque[float]:
        sent = self._sent.setdefault(account_id, collections.deque())
        horizon = self._clock() - self.WINDOW
        while sent and sent[0] <= horizon:
            sent.popleft()
        return sent

    def allowed(self, account_id: int, per_hour: int = 0) -> bool:
        """True when the account may send one more message now; `per_hour`: the account's own limit (0: the
        server's)."""
        return len(self._window(account_id)) < (per_hour or self.per_hour)

    def record(self, account_id: int) -> None:
        self._window(account_id).append(self._clock())


@dataclass(frozen=True)
class SubmissionDecision:
    """The verdict on a message: `refusal`, or accepted with `header_fields` (CRLF-terminated, b"" for
    none) to add at the top of the message's header."""

    refusal: Refusal | None = None
    header_fields: bytes = b""

    @property
    def accepted(self) -> bool:
        return self.refusal is None


class SubmissionPolicy:
    """What an authenticated account may send (the module notes). One per server: the limiter it holds is
    shared by every submitting front end."""

    def __init__(
        self,
        store: MailStore,
        *,
        hostname: str,
        limiter: SendingLimiter | None = None,
        max_recipients: int = 100,
    ) -> None:
        self.store = store
        self.hostname = hostname
        self.limiter = limiter
        self.max_recipients = max_recipients

    async def check(
        self,
        account: Account,
        sender: str,
        recipients: int,
        source: IO[bytes],
        parsed: ParsedMessage,
        *,
        start: int = 0,
        smtputf8: bool = False,
    ) -> SubmissionDecision:
        """The whole policy at once, for a front end that has the whole message (the webmail, JMAP): the
        limit and the envelope sender, the number of recipients, then `check_message`."""
        refusal = await self.check_sender(account, sender)
        if refusal is None and recipients > self.max_recipients:
            refusal = TOO_MANY
        if refusal is not None:
            return SubmissionDecision(refusal)
        return await self.check_message(account, source, parsed, start=start, smtputf8=smtputf8)

    async def check_sender(self, account: Account, sender: str) -> Refusal | None:
        """The hourly limit, then the envelope sender (SMTP: at MAIL)."""
        if self.limiter is not None and not self.limiter.allowed(account.id, account.send_limit):
            log.warning("submission: account %s is over its hourly sending limit", account.address)
            return OVER_LIMIT
        if not await owns(self.store, account.id, sender):
            text = f"<{sender}>: Sender address not owned by {account.address}"
            return Refusal(553, "5.7.1", text, FORBIDDEN_MAIL_FROM)
        return None

    def check_recipients(self, accepted: int) -> Refusal | None:
        """One more recipient after `accepted` ones (SMTP: at RCPT)."""
        return TOO_MANY if accepted >= self.max_recipients else None

    async def check_message(
        self,
        account: Account,
        source: IO[bytes],
        parsed: ParsedMessage,
        *,
        start: int = 0,
        smtputf8: bool = False,
    ) -> SubmissionDecision:
        """The originator fields of the message at offset `start` of `source` (read in a thread when the
        message is large: its header block may be too), then the Date and Message-ID fixes."""
        try:
            if parsed.size <= PARSE_INLINE_LIMIT:
                claims = read_claims(source, start, smtputf8=smtputf8)
            else:
                claims = await asyncio.to_thread(read_claims, source, start, smtputf8=smtputf8)
        except OriginatorRefused as refused:
            code, enhanced, text = refused.reply
            reason = INVALID_EMAIL if enhanced == "5.6.0" else FORBIDDEN_FROM
            return SubmissionDecision(Refusal(code, enhanced, text, reason))
        refusal = await unowned_claim(self.store, account, claims)
        if refusal is not None:
            return SubmissionDecision(refusal)
        return SubmissionDecision(None, missing_headers(parsed, self.hostname))

    def sent(self, account: Account) -> None:
        """The account's message was stored: it counts against the hourly limit."""
        if self.limiter is not None:
            self.limiter.record(account.id)


def shared_policy(context: ServiceContext) -> SubmissionPolicy:
    """The server's one policy (made on first use): the SMTP submission listeners and the webmail share it,
    and with it the hourly sending limit of each account."""

    def make() -> SubmissionPolicy:
        submission = context.config.submission
        return SubmissionPolicy(
            context.store,
            hostname=context.config.server.hostname,
            limiter=SendingLimiter(submission.max_messages_per_hour),
            max_recipients=submission.max_recipients_per_message,
        )

    return context.shared("delivery.submission_policy", make)


async def owns(store: MailStore, account_id: int, address: str) -> bool:
    """True when `address` reaches this account and only it (see the module notes)."""
    if not address or "@" not in address:
        return False
    resolution = await store.resolve_recipient(normalize_address(address))
    return resolution.status == "local" and resolution.account_ids == [account_id] and not resolution.remote


async def unowned_claim(store: MailStore, account: Account, claims: list[Claim]) -> Refusal | None:
    """The refusal for the first claim (`read_claims`) the account does not own, or None."""
    checked: dict[str, bool] = {}
    for claim in claims:
        key = normalize_address(claim.address)
        if key not in checked:
            checked[key] = await owns(store, account.id, claim.address)
        if checked[key]:
            continue
        if claim.mentioned:
            text = (
                f"{claim.field} header field shows <{claim.address}> in a display name or comment; "
                f"that address is not owned by {account.address}"
            )
        else:
            text = f"{claim.field} address <{claim.address}> not owned by {account.address}"
        return Refusal(553, "5.7.1", text, FORBIDDEN_FROM)
    return None


def missing_headers(parsed: ParsedMessage, hostname: str, now: float | None = None) -> bytes:
    """Date and Message-ID header fields for a message that lacks them (RFC 6409 section 8.2, 8.3), CRLF
    terminated; b"" when it has both."""
    envelope: list[Any] = parsed.envelope if isinstance(parsed.envelope, list) else []
    date = envelope[0] if envelope else None
    message_id = envelope[9] if len(envelope) > 9 else None
    lines: list[str] = []
    if not date:
        lines.append("Date: " + email.utils.formatdate(now, localtime=True))
    if not message_id:
        lines.append(f"Message-ID: <{int(time.time())}.{secrets.token_hex(8)}@{hostname}>")
    return "".join(line + "\r\n" for line in lines).encode()
