"""The Sender Rewriting Scheme for forwarded mail (docs/decisions/0059): the envelope sender of a message we
forward becomes an address of ours, so that SPF at the next hop checks our server (which is authorised) and
a bounce comes back to us, to be sent on to the original sender.

What it implements: the SRS0 form of Shevek's scheme ("Sender Rewriting Scheme", libsrs2 / Mail::SRS, as
Postfix's postsrsd and Exim write it): `SRS0=HHHH=TT=domain=local@forwarding-domain`, with
- TT: the day (days since the epoch, modulo 1024) in two base32 characters (RFC 4648 alphabet);
- HHHH: the first four characters of the base64 HMAC-SHA1, under the installation's secret
  (`MailStore.server_secret("srs")`), of TT, the domain and the local part, all lowercased, and compared
  without regard to case on the way back (some servers lowercase local parts).

And the SRS1 form, for an envelope sender that is another forwarder's SRS0 address already (libsrs2's
"guarded" scheme): `SRS1=HHHH=first-forwarder==HHHH=TT=domain=local@forwarding-domain`, where
`first-forwarder` is the domain of that SRS0 address and the part after it is the SRS0 local part without
its "SRS0" (the separator kept, hence the "=="). HHHH here is our hash of those two, without a time stamp.
A further forwarder of an SRS1 address writes SRS1 again with its own hash and the same two parts, so the
address does not grow along a chain; a bounce to an SRS1 address of ours goes straight to the first
forwarder's SRS0 address, which only that forwarder can read.

Choices
- The null sender is never rewritten (there is nothing to return to), nor a sender in one of our domains
  (our SPF covers it already).
- `reverse` accepts an SRS0 address for `MAX_AGE_DAYS` days (21, libsrs2's default) and either form only
  with a valid hash: nobody can use our domain to send mail to an address of their choice. Only bounces
  (the null sender) are taken for SRS addresses (the SMTP session checks that). SRS1 carries no time
  stamp of ours: the first forwarder's SRS0 inside it has one, and that forwarder checks it.
- The "=" separator variants ("+" and "-") of other implementations are read, never written.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

__all__ = ["MAX_AGE_DAYS", "SrsError", "forward", "is_srs", "reverse"]

MAX_AGE_DAYS = 21
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_SRS0 = re.compile(r"^SRS0[=+-]([^=]+)=([^=]{2})=([^=]+)=(.+)$", re.IGNORECASE)
_SRS0_TAG = re.compile(r"^SRS0(?=[=+-])", re.IGNORECASE)
#: SRS1: our hash, the first forwarder's domain, then the SRS0 local part's rest (from its separator on)
_SRS1 = re.compile(r"^SRS1[=+-]([^=]+)=([^=]+)=([=+-].+)$", re.IGNORECASE)


class SrsError(ValueError):
    """Not an SRS address of ours that may be used now."""


def is_srs(local: str) -> bool:
    """The local part looks like an SRS0 or SRS1 address (whether it is valid is `reverse`'s question)."""
    return _SRS0.match(local) is not None or _SRS1.match(local) is not None


def _day(now: float) -> int:
    return int(now // 86400) % 1024


def _stamp(day: int) -> str:
    return _BASE32[day >> 5] + _BASE32[day & 31]


def _hash(secret: bytes, *parts: str) -> str:
    # over the lowercased parts, as libsrs2 does: a hop that changes the case keeps the address valid
    digest = hmac.new(secret, "".join(parts).lower().encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()[:4]


def forward(sender: str, forwarder: str, secret: bytes, *, now: float | None = None) -> str:
    """The envelope sender for forwarding a message from `sender` through our domain `forwarder`: SRS0, or
    SRS1 when `sender` is an SRS address already (the module notes)."""
    local, at, domain = sender.rpartition("@")
    if not at or not local or not domain:
        raise SrsError(f"not an address: {sender!r}")
    domain = domain.lower()
    chained = _SRS1.match(local)
    if chained is not None:  # another forwarder's SRS1: the same two parts, our hash
        first, rest = chained.group(2).lower(), chained.group(3)
        return f"SRS1={_hash(secret, first, rest)}={first}={rest}@{forwarder}"
    if _SRS0.match(local) is not None:  # another forwarder's SRS0: SRS1 pointing at it
        rest = _SRS0_TAG.sub("", local, count=1)
        return f"SRS1={_hash(secret, domain, rest)}={domain}={rest}@{forwarder}"
    stamp = _stamp(_day(time.time() if now is None else now))
    return f"SRS0={_hash(secret, stamp, domain, local)}={stamp}={domain}={local}@{forwarder}"


def reverse(local: str, secret: bytes, *, now: float | None = None) -> str:
    """Where a bounce to our SRS local part `local` goes: the original sender of an SRS0 address, the first
    forwarder's SRS0 address of an SRS1 one. SrsError when it is neither, its hash is wrong, or (SRS0) it
    is older than MAX_AGE_DAYS."""
    chained = _SRS1.match(local)
    if chained is not None:
        given, first, rest = chained.groups()
        if not _same_hash(given, _hash(secret, first.lower(), rest)):
            raise SrsError("the SRS address's hash is wrong")
        return f"SRS0{rest}@{first.lower()}"
    match = _SRS0.match(local)
    if match is None:
        raise SrsError("not an SRS address")
    given, stamp, domain, original = match.groups()
    if not _same_hash(given, _hash(secret, stamp.upper(), domain.lower(), original)):
        raise SrsError("the SRS address's hash is wrong")
    try:
        day = _BASE32.index(stamp[0].upper()) << 5 | _BASE32.index(stamp[1].upper())
    except ValueError:
        raise SrsError("the SRS address's time stamp is not base32") from None
    age = (_day(time.time() if now is None else now) - day) % 1024
    if age > MAX_AGE_DAYS:
        raise SrsError(f"the SRS address is {age} days old")
    return f"{original}@{domain}"


def _same_hash(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.lower().encode(), expected.lower().encode())
