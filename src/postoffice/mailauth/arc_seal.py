"""ARC sealing (RFC 8617 section 5.1): the ARC set a forward of ours adds on top of a message it received (an
alias to an outside address; later Sieve redirects), so that the next hop can trust the authentication results
we saw even though forwarding breaks SPF and may break DKIM. Validation of an arriving chain is
`mailauth.arc`; this module only writes. Pure: bytes in, header fields out, no I/O (blocking CPU work:
hashing and the key operation, which `arc_seal_async` runs in a worker thread).

Implementation notes
- One set per call (RFC 8617 section 4.2), instance i=N one more than the highest instance of the message's
  ARC fields, read as the validator reads them (dkimpy's `ARC.INSTANCE_RE` on the relaxed field), so the
  number we write is the one a validator expects:
  - ARC-Authentication-Results (section 4.1.1): `i=N; <authserv-id>; <results>`, `results` being the resinfo
    of our own Authentication-Results field (the combined results of our ADMD, section 4.1.1), copied as
    given (comments kept) after unfolding, and folded again at white space; "none" when empty (RFC 8601
    section 2.2's no-result).
  - ARC-Message-Signature (section 4.1.2): a DKIM signature without v=, with i=N: c=relaxed/relaxed, t= the
    sealing time, no x= and no l=, h= the fields of SEALED_FIELDS the message has (each occurrence, From once
    more so that a From added later breaks it, as `dkim_sign` does) including every DKIM-Signature (section
    4.1.2 SHOULD); never Authentication-Results nor an ARC field (section 4.1.2 MUST NOT), which are not in
    the list.
  - ARC-Seal (section 4.1.3): i, cv, a, d, s, t and b, no h=; it signs, relaxed, the fields of every set in
    increasing instance order, each set as AAR, AMS, AS, the new AS with b= empty (section 5.1.1); when cv is
    fail, only the new set, "as if this newest ARC Set was the only set present" (section 5.1.2).
  - The fields are returned AS, AMS, AAR: each is prepended as it is made (AAR first, then the AMS above it,
    then the seal above both), so the newest set stands on top, its seal first, as dkimpy and Mail::DKIM's
    sealers write it too. The caller prepends the returned bytes unchanged.
- cv= (section 5.1.1 / 4.4): `chain` is the caller's result of validating the arriving chain
  (`arc.verify_chain`: none, pass or fail). A message without ARC fields is always sealed cv=none (i=1 can
  say nothing else). When the newest arriving seal already says cv=fail the chain ended at that hop (section
  5.1: a sealer does not continue a chain whose most recent AS reflects a failure; section 5.2: validators
  stop there), so nothing is added; a chain that fails only in our validation (a body changed after the last
  seal, a bad signature) is sealed cv=fail by us, the hop that detected it (section 5.1.2). No set beyond
  i=50 (section 4.2.1): a message that has 50 already is not sealed. Inconsistent calls (cv=none on a message
  that has sets, pass on a chain that is not complete) are not sealed, nor is any other `chain` (temperror,
  permerror): section 5.2.1 makes every validation failure, DNS included, permanent, so a caller that follows
  it passes "fail" for those (the authentication stage's `plan.arc_chain` does); one that passes them through
  leaves the chain as it arrived for the next hop to judge.
- The key: one of the domain's DKIM keys (`store.DkimKey`, docs/decisions/0056); the record is the DKIM key
  record (section 4.1.3: s= and d= as for DKIM). RSA is the safer choice and `sealing_key`'s: ARC verifiers
  that know Ed25519 (RFC 8463) are few. dkimpy validates ARC with rsa-sha256 only (its ARC_HASH_ALGORITHMS),
  so our own `mailauth.arc` fails an Ed25519 seal, and Debian 12's Mail::DKIM calls it "invalid (unsupported
  algorithm)"; a seal a verifier cannot check fails the chain there. Ed25519 seals are written correctly all
  the same (they validate with dkimpy once it is told the algorithm: tests/mailauth/test_arc_seal.py).
- Why not `dkim.arc_sign`: it needs the `authres` package at run time (without it, a NameError), builds the
  AAR by parsing our Authentication-Results with authres and writing it again (comments dropped) and takes cv
  from its arc= result; `arc_sign` ignores its `signature_algorithm` and signs rsa-sha256 only, its key parser
  reads RSA keys only (an Ed25519 PEM is "unparsable"), and its RSA is pure Python (about 9 ms per signature
  holding the GIL, two per seal; docs/decisions/0056). So, as `dkim_sign` does for DKIM, dkimpy does the
  message work (`rfc822_parse`, relaxed canonicalisation, `select_headers`) and `cryptography` (OpenSSL) the
  key operation; the fields are laid out here with b= on a line of its own, so that the text hashed is the
  field as written with b= empty (RFC 6376 section 3.7). A seal of a small message with an RSA-2048 key costs
  about 3 ms of CPU here (two OpenSSL signatures, GIL released), against about 29 ms through `arc_sign`.
- Never raises: a message that cannot be read, a key that cannot be loaded or any other failure gives b"" with
  a warning on the "postoffice.mailauth" logger (never the key's text); the forward then goes unsealed.

Not done here: deciding when to seal (the forwarding code), trusting or reporting chains (`mailauth.arc`),
keys of their own for ARC (the DKIM keys are used), and RFC 8617 section 7.2's header.oldest-pass bookkeeping
beyond copying the caller's results.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from dkim.canonicalization import CanonicalizationPolicy

from postoffice.mailauth.arc import MAX_INSTANCES
from postoffice.mailauth.dkim_keys import SIGNATURE_ALGORITHM
from postoffice.mailauth.dkim_sign import SIGNED_FIELDS
from postoffice.mailauth.dkim_verify import signature_tag

if TYPE_CHECKING:
    from postoffice.store import DkimKey

log = logging.getLogger("postoffice.mailauth")

#: Header fields the ARC-Message-Signature covers when present (RFC 6376 section 5.4.1's recommendation, as
#: `dkim_sign.SIGNED_FIELDS`, plus DKIM-Signature: RFC 8617 section 4.1.2).
SEALED_FIELDS: tuple[str, ...] = (*SIGNED_FIELDS, "dkim-signature")
#: The cv= values (RFC 8617 section 4.1.3).
CHAIN_VALUES = ("none", "pass", "fail")
#: Longest line of a field we write where it can be folded (RFC 5322 section 2.1.1 recommends 78).
FOLD_AT = 76
#: Characters of a signature per line of b=.
B_LINE = 72

_RELAXED = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_AAR, _AMS, _AS = b"ARC-Authentication-Results", b"ARC-Message-Signature", b"ARC-Seal"
_ARC_NAMES = (_AAR.lower(), _AMS.lower(), _AS.lower())
#: An authserv-id as we write it: an RFC 2045 token (RFC 8601 section 2.2), UTF-8 allowed.
_AUTHSERV_ID = re.compile(r'[^\x00-\x20\x7f()<>@,;:\\"/\[\]?=]+')
_FOLD = re.compile(r"\r\n(?=[ \t])")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
Field = tuple[bytes, bytes]  # (name, value as after the colon, CRLF-terminated lines), as dkimpy reads it
Piece = tuple[bytes, bytes]  # what stands before a piece of a field on its line (b" " or b""), the piece


@dataclass(frozen=True)
class SealingKey:
    """One of a domain's DKIM keys (`store.DkimKey`) as ARC uses it: d=, s=, the algorithm ("rsa" or
    "ed25519") and the private key (PEM, PKCS #8, as `DkimKey.private_key`; never in the repr)."""

    domain: str
    selector: str
    algorithm: str
    private_key: str = field(repr=False)


def sealing_key(keys: Sequence[DkimKey]) -> SealingKey | None:
    """The key to seal with among one domain's `keys`: its active RSA key, else None (no seal). Not Ed25519,
    though `arc_seal` can sign with it: ARC verifiers do not know it (dkimpy, so our own validator, and Debian
    12's Mail::DKIM among them: module notes), and a seal they cannot check fails the whole chain, which is
    worse than no seal."""
    for key in keys:
        if key.state == "active" and key.private_key and key.algorithm == "rsa":
            return SealingKey(key.domain, key.selector, key.algorithm, key.private_key)
    return None


def arc_seal(
    message: bytes,
    *,
    key: SealingKey,
    authserv_id: str,
    results: str,
    chain: str,
    now: float | None = None,
) -> bytes:
    """The ARC set (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results, CRLF-terminated, in the
    order to prepend them) that seals `message` (the whole message as it will be forwarded, CRLF line ends,
    earlier ARC sets and our Authentication-Results included) with `key`. `results`: the resinfo of our
    Authentication-Results (everything after "authserv-id;"); it should carry the same arc= result as
    `chain`, the cv= to write ("none", "pass" or "fail": our validation of the arriving chain). `now`: the
    t= (default: the clock). b"" when the message is not to be sealed or cannot be (module notes; logged).
    Blocking (hashing, the key operation); never raises."""
    try:
        return _seal(message, key, authserv_id, results, chain, time.time() if now is None else now)
    except Exception as exc:  # an odd message or key: the forward goes unsealed, never lost
        log.warning("arc: sealing as d=%s s=%s failed; not sealed: %s", key.domain, key.selector, exc)
        return b""


async def arc_seal_async(
    message: bytes,
    *,
    key: SealingKey,
    authserv_id: str,
    results: str,
    chain: str,
    now: float | None = None,
) -> bytes:
    """`arc_seal` in a worker thread: the event loop never hashes a body or signs."""
    return await asyncio.to_thread(
        arc_seal, message, key=key, authserv_id=authserv_id, results=results, chain=chain, now=now
    )


def _seal(message: bytes, key: SealingKey, authserv_id: str, results: str, chain: str, now: float) -> bytes:
    if chain not in CHAIN_VALUES:
        log.warning("arc: not sealed: the chain's result is %r, not none, pass or fail", chain)
        return b""
    if not _AUTHSERV_ID.fullmatch(authserv_id):
        log.warning("arc: not sealed: %r is not an authserv-id", authserv_id)
        return b""
    headers, body = dkim.rfc822_parse(message)
    if not any(name.lower() == b"from" for name, _value in headers):
        log.warning("arc: not sealed: the message has no From field (RFC 6376 section 5.4)")
        return b""
    sets = _arc_sets(headers)
    newest = max(sets, default=0)
    instance = newest + 1
    if instance > MAX_INSTANCES:
        log.info("arc: not sealed: the message has %d ARC sets (RFC 8617 section 4.2.1: at most 50)", newest)
        return b""
    if newest == 0:
        if chain != "none":
            log.warning("arc: the message has no ARC set but the chain is %r: sealed cv=none", chain)
        cv = "none"
    else:
        newest_seals = sets[newest].get(_AS.lower(), [])
        if any(signature_tag(value, b"cv").lower() == "fail" for _name, value in newest_seals):
            log.info(
                "arc: not sealed: i=%d says cv=fail: the chain ended there (RFC 8617 section 5.1)", newest
            )
            return b""
        if chain == "none":
            log.warning("arc: not sealed: the message has %d ARC sets but the chain is none", newest)
            return b""
        if chain == "pass" and not _complete(sets, newest):
            log.warning("arc: not sealed: the chain is pass but its sets are not complete and unique")
            return b""
        cv = chain
    private = _private_key(key.private_key, key.algorithm)
    algorithm = SIGNATURE_ALGORITHM[key.algorithm].encode()
    common = [b"d=" + key.domain.encode("ascii"), b"s=" + key.selector.encode("ascii"), b"t=%d" % int(now)]

    aar = (_AAR, b" " + _fold(_words(_aar_text(instance, authserv_id, results)), len(_AAR) + 2) + b"\r\n")

    present = [name.lower() for name, _value in headers]
    included = [name for name in (n.encode() for n in SEALED_FIELDS) for _ in range(present.count(name))]
    included.append(b"from")
    canonical = _RELAXED.canonicalize_headers(headers)
    signed_fields = b"".join(name + b":" + value for name, value in dkim.select_headers(canonical, included))
    body_hash = base64.b64encode(hashlib.sha256(_RELAXED.canonicalize_body(body)).digest())
    ams_tags = _tags([b"i=%d" % instance, b"a=" + algorithm, b"c=relaxed/relaxed", *common])
    ams_tags += [*_header_list(included), *_tags([b"bh=" + body_hash])]
    ams = _signed(_AMS, ams_tags, signed_fields, private)

    scope: list[Field] = []
    if cv == "pass":  # section 5.1.1: every earlier set, oldest first; cv=fail: only ours (5.1.2)
        for n in range(1, newest + 1):
            scope += [sets[n][name][0] for name in _ARC_NAMES]
    scope += [aar, ams]
    sealed = b"".join(name + b":" + value for name, value in _RELAXED.canonicalize_headers(scope))
    seal_tags = _tags([b"i=%d" % instance, b"cv=" + cv.encode(), b"a=" + algorithm, *common])
    seal = _signed(_AS, seal_tags, sealed, private)
    return b"".join(name + b":" + value for name, value in (seal, ams, aar))


def _arc_sets(headers: Sequence[Field]) -> dict[int, dict[bytes, list[Field]]]:
    """The message's ARC fields by instance and lowercase name, as written (module notes: the instance as
    dkimpy's validator reads it). An instance too long to be a number counts as beyond the limit."""
    sets: dict[int, dict[bytes, list[Field]]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower not in _ARC_NAMES:
            continue
        [(_canonical_name, canonical_value)] = _RELAXED.canonicalize_headers([(name, value)])
        match = dkim.ARC.INSTANCE_RE.search(canonical_value)
        if match is None:
            continue
        digits = match.group(1)
        instance = int(digits) if len(digits) <= 4 else MAX_INSTANCES + 1
        sets.setdefault(instance, {}).setdefault(lower, []).append((name, value))
    return sets


def _complete(sets: dict[int, dict[bytes, list[Field]]], newest: int) -> bool:
    """Every instance 1..newest has exactly one field of each ARC name (RFC 8617 section 4.2.1)."""
    return all(
        n in sets and all(len(sets[n].get(name, [])) == 1 for name in _ARC_NAMES)
        for n in range(1, newest + 1)
    )


@functools.lru_cache(maxsize=32)
def _private_key(pem: str, algorithm: str) -> PrivateKey:
    """The loaded key (kept: loading an RSA key checks it, milliseconds); ValueError when it is not one of
    `algorithm` (its text is never in the message)."""
    loaded = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if algorithm == "rsa" and isinstance(loaded, rsa.RSAPrivateKey):
        return loaded
    if algorithm == "ed25519" and isinstance(loaded, ed25519.Ed25519PrivateKey):
        return loaded
    raise ValueError(f"the key is not an {algorithm!r} key")


def _aar_text(instance: int, authserv_id: str, results: str) -> bytes:
    """`i=N; authserv-id; results` on one line: the caller's folding undone, line breaks and other control
    characters that are not folding (which would end the field) made spaces."""
    payload = _CONTROL.sub(" ", _FOLD.sub("", results))
    payload = re.sub(r"[ \t]+", " ", payload).strip() or "none"
    return f"i={instance}; {authserv_id}; {payload}".encode()


def _fold(pieces: Sequence[Piece], first: int) -> bytes:
    """The pieces on lines of at most FOLD_AT characters where they allow it, each line after the first
    starting with a space (RFC 5322 section 2.2.3 folding); `first`: the characters before them on the first
    line. A piece whose separator is a space is folded in its place, so unfolding gives the text back."""
    out = b""
    width = first
    for separator, text in pieces:
        before = separator if out else b""
        if out and width + len(before) + len(text) > FOLD_AT:
            out += b"\r\n " + text
            width = 1 + len(text)
        else:
            out += before + text
            width += len(before) + len(text)
    return out


def _words(text: bytes) -> list[Piece]:
    return [(b" ", word) for word in text.split(b" ")]


def _tags(tags: Sequence[bytes]) -> list[Piece]:
    """Tags "name=value;" with FWS between them (RFC 6376 section 3.2)."""
    return [(b" ", tag + b";") for tag in tags]


def _header_list(names: Sequence[bytes]) -> list[Piece]:
    """h=, foldable after each colon (FWS is allowed there: RFC 6376 section 3.5)."""
    pieces = [(b"", name + b":") for name in names]
    pieces[-1] = (b"", names[-1] + b";")
    return [(b" ", b"h=" + pieces[0][1]), *pieces[1:]]


def _signed(name: bytes, tags: Sequence[Piece], hashed: bytes, private: PrivateKey) -> Field:
    """The field `name` with `tags` and b= the signature of `hashed` (the canonical fields it covers) followed
    by the field itself, relaxed, with b= empty and no line end (RFC 6376 section 3.7)."""
    head = b" " + _fold(tags, len(name) + 1) + b"\r\n b="
    [(canonical_name, canonical_value)] = _RELAXED.canonicalize_headers([(name, head)])
    data = hashed + canonical_name + b":" + canonical_value.rstrip(b"\r\n")
    if isinstance(private, rsa.RSAPrivateKey):
        signature = private.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:  # RFC 8463 section 3: Ed25519 (PureEdDSA) over the SHA-256 hash
        signature = private.sign(hashlib.sha256(data).digest())
    b64 = base64.b64encode(signature)
    lines = [b64[i : i + B_LINE] for i in range(0, len(b64), B_LINE)]
    return name, head + b"\r\n  ".join(lines) + b"\r\n"
