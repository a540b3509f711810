"""DKIM signing of outbound mail (RFC 6376 section 5; Ed25519: RFC 8463): the delivery stage for mail our
users submit (ports 587/465, the webmail) or a `relay_networks` client relays, and the signing of the
messages the server writes itself (DSNs). Keys: `mailauth.dkim_keys`, docs/decisions/0056.

Implementation notes
- What is signed: a message that leaves, for at least one remote recipient; its local recipients get the
  signed text too (the plan's message). Mail that stays here is not signed: no receiver elsewhere would
  verify it, and signing costs about 1.5 ms of CPU per message (RSA: 1.2 ms), a third of what the server
  spends on a submission otherwise (bench/submission_load.py).
- Who signs: the domain of the message's one From address (RFC 5322 section 3.6.2; a From field with
  several domains, or several From fields, is not signed), when it is one of ours with active keys, else
  the nearest of our domains it is a subdomain of (a DSN's MAILER-DAEMON@mail.example.test is signed by
  example.test: aligned for DMARC's relaxed mode, RFC 9989). Nothing else is signed: mail from port 25 and
  the queue's local deliveries never (what others sent us is not ours to vouch for; a forward keeps the
  original signatures and would need ARC, RFC 8617).
- What is signed (RFC 6376 section 5.4): the fields of SIGNED_FIELDS the message has, each occurrence, and
  From once more than it occurs, so that a From added later breaks the signature (section 8.15,
  "oversigning"); c=relaxed/relaxed (section 3.4: survives re-folding and trailing white space); no l=
  (section 8.2: a signed prefix lets anyone append content); t= the signing time and no x=: an expiry
  shorter than our queue's max_age would fail mail delivered late, and a key's retirement bounds a
  signature's life instead (docs/decisions/0056).
- Both signatures are computed over the message as it is (neither signs the other, h= has no
  DKIM-Signature) and prepended, RSA on top (`dkim_keys.ALGORITHMS`).
- dkimpy does the message work: the split into header fields and body (`rfc822_parse`), the relaxed
  canonicalisation of both, the choice of field instances (`select_headers`). The private-key operation is
  `cryptography`'s (OpenSSL): dkimpy's own RSA is pure Python, about 9 ms per signature holding the GIL (the
  event loop stalls for 4 ms at a time even from a thread), against 1 ms in OpenSSL with the GIL released.
  The signature field is laid out here (RFC 6376 section 3.5), with b= on a line of its own, so that the
  text hashed is exactly the field as written with b= empty (section 3.7).
- Signing runs in a small thread pool, never on the event loop (hashing a large body, the RSA operation).
- The active keys are read from the store and kept for KEY_TTL seconds (a key made or rotated by the
  command line, another process, signs within that time; the keys it replaces stay published far longer);
  loaded private keys are kept by key id. A failure to sign (no readable key, a store error) leaves the
  message unsigned with an error in the log: never a lost or refused message.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, cast

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from dkim.canonicalization import CanonicalizationPolicy

from postoffice.delivery.pipeline import PrefixedSource
from postoffice.delivery.plan import DeliveryPlan, Message
from postoffice.mailauth.dkim_keys import SIGNATURE_ALGORITHM, load_private_key, signing_keys
from postoffice.mailauth.dmarc import from_domain_of
from postoffice.message import PARSE_INLINE_LIMIT, parse_message
from postoffice.message.parser import with_prefix

if TYPE_CHECKING:
    from postoffice.config import Config
    from postoffice.store import DkimKey, MailStore

log = logging.getLogger("postoffice.mailauth")

#: The header fields signed when present (RFC 6376 section 5.4.1's list, less those mail systems rewrite).
SIGNED_FIELDS: tuple[str, ...] = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "reply-to",
    "sender",
)
#: The kinds of delivery whose messages are signed (module notes).
SIGNED_KINDS = frozenset({"submission", "relay"})
#: Seconds the active keys read from the store are used before they are read again.
KEY_TTL = 60.0
#: Longest line of the signature field before b= (RFC 5322 section 2.1.1 recommends 78).
FOLD_AT = 76
#: Characters of the signature per line of b=.
B_LINE = 72

_RELAXED = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_NAME = b"DKIM-Signature"

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKey:
    """An active key, ready to sign: its d=, s=, algorithm ("rsa" or "ed25519") and the loaded private key."""

    domain: str
    selector: str
    algorithm: str
    private: PrivateKey


@dataclass(frozen=True)
class Signed:
    """What signing a message gave: the DKIM-Signature fields to put on top (CRLF-terminated), and who
    signed (d= and each s=)."""

    fields: bytes
    domain: str
    selectors: tuple[str, ...]


def _fold_tags(tags: Sequence[bytes], first: int) -> bytes:
    """The tags "name=value;" on lines of at most FOLD_AT characters where they fit (FWS between tags,
    RFC 6376 section 3.2); `first`: the characters the first line has before them."""
    lines: list[bytes] = []
    line = b""
    used = first
    for tag in tags:
        piece = tag + b";"
        if line and used + len(line) + 1 + len(piece) > FOLD_AT:
            lines.append(line)
            line, used = piece, 1
        else:
            line = line + b" " + piece if line else piece
    lines.append(line)
    return b"\r\n ".join(lines)


def _header_list(names: Sequence[bytes]) -> bytes:
    """h= folded after a colon where a line would grow too long (FWS is allowed there: section 3.5)."""
    lines: list[bytes] = []
    line = b"h="
    for n, name in enumerate(names):
        piece = name + (b":" if n < len(names) - 1 else b"")
        if len(line) + len(piece) > FOLD_AT - 2 and line != b"h=":
            lines.append(line)
            line = b""
        line += piece
    lines.append(line)
    return b"\r\n ".join(lines)


def sign_message(message: bytes, keys: Sequence[SigningKey], now: float) -> bytes:
    """The DKIM-Signature fields (CRLF-terminated, in the order of `keys`, the first on top) of `message`
    (its octets as they will be sent, CRLF line ends) for each key (module notes). Blocking. ValueError when
    the message has no header field to sign (no From)."""
    headers, body = dkim.rfc822_parse(message)
    present = [name.lower() for name, _value in headers]
    if b"from" not in present:
        raise ValueError("a message without a From field is not signed")
    names = [name.encode() for name in SIGNED_FIELDS]
    included = [name for name in names for _ in range(present.count(name))] + [b"from"]
    canonical = _RELAXED.canonicalize_headers(headers)
    hashed_fields = b"".join(name + b":" + value for name, value in dkim.select_headers(canonical, included))
    body_hash = base64.b64encode(hashlib.sha256(_RELAXED.canonicalize_body(body)).digest())
    fields: list[bytes] = []
    for key in keys:
        tags = [
            b"v=1",
            b"a=" + SIGNATURE_ALGORITHM[key.algorithm].encode(),
            b"c=relaxed/relaxed",
            b"d=" + key.domain.encode("ascii"),
            b"s=" + key.selector.encode("ascii"),
            b"t=%d" % int(now),
            _header_list(included),
            b"bh=" + body_hash,
        ]
        # b= starts a line of its own: the text hashed is the field as written, with b= empty (section 3.7)
        head = b" " + _fold_tags(tags, len(_NAME) + 1) + b"\r\n b="
        [(name, value)] = _RELAXED.canonicalize_headers([(_NAME, head)])
        data = hashed_fields + name + b":" + value.rstrip(b"\r\n")
        private = key.private
        if isinstance(private, rsa.RSAPrivateKey):
            signature = private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:  # RFC 8463 section 3: Ed25519 (PureEdDSA) over the SHA-256 hash
            signature = private.sign(hashlib.sha256(data).digest())
        b64 = base64.b64encode(signature)
        lines = [b64[i : i + B_LINE] for i in range(0, len(b64), B_LINE)]
        fields.append(_NAME + b":" + head + b"\r\n  ".join(lines) + b"\r\n")
    return b"".join(fields)


def from_domain(message: bytes) -> str | None:
    """The domain of the message's one From address (A-labels, lowercase), None when there is not exactly
    one From field with one domain."""
    head = message[: message.find(b"\r\n\r\n") + 2] if b"\r\n\r\n" in message else message
    try:
        headers, _body = dkim.rfc822_parse(head + b"\r\n")
    except Exception:  # not a message dkimpy can read: not signed
        return None
    values = [value.decode("utf-8", "replace") for name, value in headers if name.lower() == b"from"]
    return from_domain_of([value.replace("\r\n", "") for value in values])


def signing_domain(domain: str, active: Mapping[str, Sequence[SigningKey]]) -> str | None:
    """`domain` when it has active keys, else its nearest parent that has (module notes); None."""
    labels = domain.split(".")
    for n in range(len(labels) - 1):
        candidate = ".".join(labels[n:])
        if active.get(candidate):
            return candidate
    return None


class DkimSigner:
    """Signs with the active keys of our domains (module notes). One per server; `close` at the end."""

    def __init__(
        self,
        store: MailStore,
        *,
        threads: int = 2,
        ttl: float = KEY_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="postoffice-dkim-sign"
        )
        self._active: dict[str, tuple[SigningKey, ...]] = {}
        self._loaded: dict[int, SigningKey] = {}
        self._read_at: float | None = None
        self._reading: asyncio.Lock | None = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def forget(self) -> None:
        """Read the keys from the store again before the next signature (a key was just made or rotated)."""
        self._read_at = None

    async def _active_keys(self) -> dict[str, tuple[SigningKey, ...]]:
        now = time.monotonic()
        if self._read_at is not None and now - self._read_at < self.ttl:
            return self._active
        if self._reading is None:
            self._reading = asyncio.Lock()
        async with self._reading:  # one read for every message that finds the keys out of date
            if self._read_at is not None and time.monotonic() - self._read_at < self.ttl:
                return self._active
            stored = await self.store.dkim_keys()
            by_domain: dict[str, list[DkimKey]] = {}
            for key in stored:
                by_domain.setdefault(key.domain, []).append(key)
            loaded: dict[int, SigningKey] = {}
            active: dict[str, tuple[SigningKey, ...]] = {}
            loop = asyncio.get_running_loop()
            for domain, keys in by_domain.items():
                ready: list[SigningKey] = []
                for key in signing_keys(keys):
                    found = self._loaded.get(key.id)
                    if found is None:
                        try:
                            private = await loop.run_in_executor(self._pool, load_private_key, key)
                        except ValueError as exc:
                            log.error("dkim: the key %s of %s cannot be used: %s", key.selector, domain, exc)
                            continue
                        found = SigningKey(key.domain, key.selector, key.algorithm, private)
                    loaded[key.id] = found
                    ready.append(found)
                if ready:
                    active[domain] = tuple(ready)
            self._loaded, self._active, self._read_at = loaded, active, time.monotonic()
            return active

    async def sign(self, message: bytes) -> Signed | None:
        """The signatures of `message` by the domain its From names (module notes); None when it is not ours
        or has no active key. Errors propagate (the callers log them and go on unsigned)."""
        active = await self._active_keys()
        if not active:
            return None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._sign, message, active, self.clock())

    @staticmethod
    def _sign(message: bytes, active: Mapping[str, Sequence[SigningKey]], now: float) -> Signed | None:
        author = from_domain(message)
        if author is None:
            return None
        domain = signing_domain(author, active)
        if domain is None:
            return None
        keys = active[domain]
        return Signed(sign_message(message, keys, now), domain, tuple(key.selector for key in keys))

    async def sign_generated(self, data: bytes) -> bytes:
        """A message this server wrote (a DSN) with our signatures on top when its From is ours; as it was
        when not, or when signing fails (logged)."""
        try:
            signed = await self.sign(data)
        except Exception as exc:
            log.error("dkim: signing a generated message failed; it goes unsigned: %s", exc, exc_info=exc)
            return data
        if signed is None:
            return data
        log.info("dkim: signed a generated message d=%s s=%s", signed.domain, ",".join(signed.selectors))
        return signed.fields + data


def _read(source: IO[bytes], size: int) -> bytes:
    source.seek(0)
    return source.read(size)


class SigningStage:
    """The delivery stage that signs (module notes): after "authentication" in `delivery.stages.STAGES`."""

    name = "dkim-signing"

    def __init__(self, signer: DkimSigner) -> None:
        self.signer = signer

    def close(self) -> None:
        self.signer.close()

    async def run(self, message: Message, plan: DeliveryPlan) -> None:
        if plan.origin.kind not in SIGNED_KINDS or not plan.outbound:
            return  # a message that stays here has no receiver elsewhere to verify it
        size = message.parsed.size
        data = (
            _read(message.source, size)
            if size <= PARSE_INLINE_LIMIT
            else await asyncio.to_thread(_read, message.source, size)
        )
        try:
            signed = await self.signer.sign(data)
        except Exception as exc:  # never a lost or refused message because signing broke
            log.error(
                "dkim: signing id=%s failed; it goes unsigned: %s", plan.origin.id or "-", exc, exc_info=exc
            )
            return
        if signed is None:
            return
        source = cast(IO[bytes], PrefixedSource(signed.fields, message.source, size))
        total = len(signed.fields) + size
        parsed = with_prefix(message.parsed, signed.fields)  # no second parse, as a rule
        if parsed is None:
            parsed = (
                parse_message(source)
                if total <= PARSE_INLINE_LIMIT
                else await asyncio.to_thread(parse_message, source)
            )
        plan.message = Message(source, parsed)
        log.info(
            "dkim: signed id=%s d=%s s=%s", plan.origin.id or "-", signed.domain, ",".join(signed.selectors)
        )

    async def sign_generated(self, data: bytes) -> bytes:
        return await self.signer.sign_generated(data)


def make_stage(config: Config, store: MailStore) -> SigningStage | None:
    """The stage for this configuration (`delivery.stages.STAGES`); None when [mailauth] sign is off."""
    if not config.mailauth.sign:
        return None
    return SigningStage(DkimSigner(store))
