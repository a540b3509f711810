"""DKIM verification (RFC 6376) of every signature of a received message, RSA and Ed25519 (RFC 8463), with
dkimpy doing the cryptography and the canonicalisation, and our resolver doing the DNS.

Implementation notes
- Each DKIM-Signature field is verified on its own (RFC 6376 section 6.1: a verifier may check any or all;
  DMARC needs the result of each signing domain), up to MAX_SIGNATURES; the message is read once and parsed
  by dkimpy once per message. dkimpy is blocking: it runs in a small thread pool, never on the event loop.
- The key is fetched with `DnsResolver.query_sync` (the server's resolver settings and its TTL cache): a
  missing key (NXDOMAIN, no TXT) is `permerror` (RFC 6376 section 6.1.2: PERMFAIL, "no key for
  signature"); a DNS failure is `temperror` (TEMPFAIL). dkimpy reports both as "not verified": the lookup
  function records which it was.
- Results, in RFC 8601 section 2.7.1's terms: `pass`; `fail` when the body hash or the signature does not
  verify; `policy` when the signature verifies as far as dkimpy goes but is not acceptable here: rsa-sha1
  (RFC 8301 section 3.1: verifiers MUST NOT consider it valid) or an RSA key shorter than 1024 bits (RFC
  8301 section 3.2); `permerror` for a malformed signature or key, a missing key; `temperror` for DNS.
  `neutral` is not used. No signature at all is reported by the caller as `dkim=none`.
- Where: a worker process by default ([mailauth] dkim_processes): the hashing and the RSA arithmetic then run
  on another core instead of under the server's GIL (bench/smtp_load.py --auth measured it). The worker is
  spawned (never forked from a threaded server), makes its own resolver from the same settings, and asks
  Linux to kill it when the server process ends however it ends (PR_SET_PDEATHSIG), so none outlives it.
- `header.b` in the Authentication-Results field is the first 12 characters of the signature's b= (RFC 6008),
  so that several signatures of one domain can be told apart.
- The RSA check itself is OpenSSL's (`cryptography`), put in place of dkimpy's pure-Python one
  (`dkim.RSASSA_PKCS1_v1_5_verify`, the name dkimpy's verifier calls) when this module is imported: the
  same RSASSA-PKCS1-v1_5 check of the digest dkimpy computed, about 0.05 ms instead of 0.5 ms (its
  integer-to-bytes conversion is pure Python); dkimpy still parses, canonicalises and hashes.
- Two more of dkimpy's module functions are wrapped for speed, each falling back to dkimpy's own: its
  message split (`rfc822_parse` splits the whole message into lines with a regular expression to join the
  body again; for a message whose every LF follows a CR, as SMTP gives, only the header section is split)
  and its key parse (`load_pk_from_dns` parses the key record's ASN.1 in pure Python for every signature;
  the parse is kept per (name, record) in a small LRU, the record itself still comes from DNS each time,
  through the TTL cache).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import functools
import logging
import multiprocessing
import os
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dkim
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from postoffice.net.dns import DnsResolver, DnsTemporaryFailure, NoSuchDomain


def _openssl_rsa_verify(digest: Any, signature: bytes, public_key: dict[str, int]) -> bool:
    """dkimpy's `RSASSA_PKCS1_v1_5_verify(hash, signature, public_key)`, by OpenSSL: `digest` is the hashlib
    object of the signed data, `public_key` dkimpy's {"modulus", "publicExponent"}; True when it verifies."""
    algorithm = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}.get(digest.name)  # noqa: S303 - RFC 8301 refuses it later
    if algorithm is None:
        return False
    try:
        key = rsa.RSAPublicNumbers(public_key["publicExponent"], public_key["modulus"]).public_key()
        key.verify(signature, digest.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm))
    except (InvalidSignature, ValueError, TypeError, KeyError, OverflowError):
        return False
    return True


_dkimpy_rfc822_parse = dkim.rfc822_parse


def _rfc822_parse(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """dkimpy's `rfc822_parse`, splitting only the header section when every LF follows a CR."""
    end = message.find(b"\r\n\r\n")
    if end <= 0 or message.startswith(b"\r\n") or message.count(b"\n") != message.count(b"\r\n"):
        return _dkimpy_rfc822_parse(message)  # type: ignore[no-any-return]
    headers, _empty = _dkimpy_rfc822_parse(message[: end + 4])
    return headers, message[end + 4 :]


@functools.lru_cache(maxsize=1024)
def _evaluate_pk(name: bytes, record: bytes) -> Any:
    return dkim.evaluate_pk(name, record)


def _load_pk_from_dns(name: bytes, dnsfunc: Any = dkim.get_txt, timeout: int = 5) -> Any:
    """dkimpy's `load_pk_from_dns`, with the parsed key kept per (name, record)."""
    record = dnsfunc(name, timeout=timeout)
    if not isinstance(record, bytes):
        return dkim.evaluate_pk(name, record)  # None or odd: dkimpy says what that means
    return _evaluate_pk(name, record)


dkim.RSASSA_PKCS1_v1_5_verify = _openssl_rsa_verify  # module notes: the names dkimpy's verify calls
dkim.rfc822_parse = _rfc822_parse
dkim.load_pk_from_dns = _load_pk_from_dns

log = logging.getLogger("postoffice.mailauth")
#: dkimpy's own log lines (every missing key is an "error" there): kept quiet, our results say it all.
DKIMPY_LOG = logging.getLogger("postoffice.mailauth.dkimpy")
DKIMPY_LOG.setLevel(logging.CRITICAL)

#: Signatures verified per message at most (each costs a DNS lookup and a hash of the body).
MAX_SIGNATURES = 10
#: Shortest RSA key accepted (RFC 8301 section 3.2).
MIN_RSA_BITS = 1024


@dataclass(frozen=True)
class DkimResult:
    result: str  # pass | fail | policy | permerror | temperror
    domain: str  # d=, lowercase ("" when the signature could not be read)
    selector: str  # s=
    algorithm: str  # a=
    signature_start: str  # the first characters of b= (RFC 6008 header.b)
    reason: str  # why, for the log and the A-R comment ("" for pass)


class KeyLookup:
    """dkimpy's `dnsfunc`: TXT records through our resolver, remembering a temporary failure (DKIM and ARC,
    mailauth/arc.py)."""

    def __init__(self, resolver: DnsResolver) -> None:
        self.resolver = resolver
        self.temporary = ""
        self.key: bytes | None = None  # the key record found (None: none was)
        self.name = ""

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        self.name = text
        try:
            answer = self.resolver.query_sync(text, "TXT")
        except NoSuchDomain:
            return None
        except DnsTemporaryFailure as exc:
            self.temporary = exc.text
            raise dkim.DnsTimeoutError(exc.text) from None
        except ValueError:  # not a name DNS can be asked about
            return None
        if answer is None:
            return None
        for record in answer:
            self.key = b"".join(record.strings)
            return self.key
        return None


def signature_tag(signature: bytes, name: bytes) -> str:
    match = re.search(rb"(?:^|;)\s*" + name + rb"\s*=\s*([^;]*)", signature)
    if match is None:
        return ""
    return re.sub(rb"\s+", b"", match.group(1)).decode("ascii", "replace")


def verify_signatures(message: bytes, resolver: DnsResolver) -> list[DkimResult]:
    """Every DKIM signature of `message` (blocking: DNS and hashing); [] when it has none."""
    try:
        verifier = dkim.DKIM(message, logger=DKIMPY_LOG, minkey=MIN_RSA_BITS, timeout=5)
    except Exception as exc:  # dkimpy could not split the message into header fields and body
        log.info("DKIM: the message cannot be read for verification: %s", exc)
        return []
    fields = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    results = []
    for index, value in enumerate(fields[:MAX_SIGNATURES]):
        results.append(_verify_one(verifier, index, value, resolver))
    return results


def _verify_one(verifier: dkim.DKIM, index: int, value: bytes, resolver: DnsResolver) -> DkimResult:
    domain = signature_tag(value, b"d").lower()
    selector = signature_tag(value, b"s")
    algorithm = signature_tag(value, b"a").lower()
    start = signature_tag(value, b"b")[:12]

    def result(outcome: str, reason: str = "") -> DkimResult:
        return DkimResult(outcome, domain, selector, algorithm, start, reason)

    if algorithm == "rsa-sha1":
        return result("policy", "rsa-sha1 is not accepted (RFC 8301)")
    lookup = KeyLookup(resolver)
    try:
        verified = verifier.verify(idx=index, dnsfunc=lookup)
    except dkim.KeyFormatError as exc:
        text = str(exc)
        if "too small" in text:
            return result("policy", f"the key is shorter than {MIN_RSA_BITS} bits (RFC 8301)")
        return result("permerror", f"bad key: {text}")
    except dkim.ValidationError as exc:
        text = str(exc)
        if "body hash mismatch" in text:
            return result("fail", "body hash did not verify")
        return result("permerror", f"bad signature: {text}")
    except dkim.DKIMException as exc:
        return result("permerror", f"bad signature: {exc}")
    except Exception as exc:  # a dkimpy bug on odd input must not lose the message
        log.warning("DKIM verification of a %s signature failed unexpectedly: %s", domain or "?", exc)
        return result("permerror", "the signature could not be verified")
    if verified:
        return result("pass")
    if lookup.temporary:
        return result("temperror", f"key lookup: {lookup.temporary}")
    if lookup.key is None:
        return result("permerror", f"no key for the signature at {lookup.name or '?'}")
    try:  # dkimpy answers "not verified" for a malformed key too: tell the two apart
        dkim.evaluate_pk(lookup.name, lookup.key)
    except Exception as exc:
        return result("permerror", f"bad key: {exc}")
    return result("fail", "signature did not verify")


class DkimVerifier:
    """Verifies messages off the event loop (see the module notes): in `processes` worker processes when
    there are any (the hashing and RSA arithmetic then use another core instead of holding this process's
    GIL), else in a pool of `threads` threads. A worker process makes its own resolver with the same settings
    (and its own cache)."""

    def __init__(self, resolver: DnsResolver, *, threads: int = 4, processes: int = 0) -> None:
        self.resolver = resolver
        self._pool: concurrent.futures.Executor
        if processes > 0:
            args, kwargs = resolver.arguments
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=processes,
                mp_context=multiprocessing.get_context("spawn"),  # never fork a threaded server
                initializer=_start_worker,
                initargs=(args, kwargs, os.getpid()),
            )
            self._in_process = False
        else:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=threads, thread_name_prefix="postoffice-dkim"
            )
            self._in_process = True

    async def verify(self, message: bytes) -> Sequence[DkimResult]:
        if b"dkim-signature" not in message[: message.find(b"\r\n\r\n") + 1 or len(message)].lower():
            return []  # no signature: nothing to hand to a worker
        loop = asyncio.get_running_loop()
        if self._in_process:
            return await loop.run_in_executor(self._pool, verify_signatures, message, self.resolver)
        return await loop.run_in_executor(self._pool, _verify_in_worker, message)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


_WORKER_RESOLVER: DnsResolver | None = None


def _start_worker(args: tuple[Sequence[str] | None], kwargs: dict[str, Any], parent: int) -> None:
    global _WORKER_RESOLVER
    _die_with(parent)
    _WORKER_RESOLVER = DnsResolver(*args, **kwargs)


def _die_with(parent: int) -> None:
    """Ask Linux to end this worker when the server process ends, however it ends (kill -9 included:
    PR_SET_PDEATHSIG), so that no worker outlives it; and end now if it has ended already."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:
        os._exit(0)


def _verify_in_worker(message: bytes) -> list[DkimResult]:
    if _WORKER_RESOLVER is None:
        raise RuntimeError("a DKIM worker process without its resolver")
    return verify_signatures(message, _WORKER_RESOLVER)
