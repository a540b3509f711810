"""Submission policy (RFC 6409 on port 587, RFC 8314 on port 465): what an authenticated user may send.

Implementation notes (docs/decisions/0019-submission-and-queue-runner.md,
0024-submission-originator-fields.md)
- Sender ownership: the envelope sender, and every address of the From, Sender, Resent-From and
  Resent-Sender fields (read strictly by `smtp.originator`, including addresses written in their display
  names and comments), must be addresses the account owns: an address that the directory resolves to this
  account and to no other (its own address, plus-addressing of it, an alias or a catch-all whose only target
  it is). A list alias with several targets is owned by none of them. Otherwise 553 5.7.1 (RFC 6409 section
  6.1 lets the MSA refuse a sender it cannot authorise); so is a message without exactly one From, or whose
  originator fields cannot be parsed.
- Sending limits per account, in this process's memory: messages per hour (a sliding window of 3,600 s) and
  recipients per message. A restart forgets the window; that is accepted (the limit is a brake against a
  stolen password, not accounting).
- Header fixes (RFC 6409 section 8): a message without Date or Message-ID gets one; the Received header names
  the authenticated submission but not the client's IP address unless `received_client_address` is set, and
  nothing else is added that identifies the client.
"""

from __future__ import annotations

import collections
import email.utils
import secrets
import time
from collections.abc import Callable
from typing import Any

from postoffice.directory.resolver import normalize_address
from postoffice.message import ParsedMessage
from postoffice.smtp.originator import Claim
from postoffice.store import Account, MailStore


class SendingLimiter:
    """Messages per hour per account: a sliding window of the times of accepted messages."""

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

    def allowed(self, account_id: int) -> bool:
        """True when the account may send one more message now."""
        return len(self._window(account_id)) < self.per_hour

    def record(self, account_id: int) -> None:
        self._window(account_id).append(self._clock())


async def owns(store: MailStore, account_id: int, address: str) -> bool:
    """True when `address` reaches this account and only it (see the module notes)."""
    if not address or "@" not in address:
        return False
    resolution = await store.resolve_recipient(normalize_address(address))
    return resolution.status == "local" and resolution.account_ids == [account_id] and not resolution.remote


async def unowned_claim(
    store: MailStore, account: Account, claims: list[Claim]
) -> tuple[int, str, str] | None:
    """The refusal for the first claim (`smtp.originator.read_claims`) the account does not own, or None."""
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
        return 553, "5.7.1", text
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
