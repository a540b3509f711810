"""ARC (RFC 8617): validation of the Authenticated Received Chain of a message arriving on port 25, so that
mail a mailing list or a forwarder changed (and so broke its DKIM signature and its DMARC result) can be
trusted when a sealer we trust vouches for what it saw (the stage's override, docs/decisions/0054).

Implementation notes
- dkimpy validates the chain (`dkim.ARC.verify`, RFC 8617 section 5.2): every ARC set complete and unique
  per instance, the newest ARC-Message-Signature valid, every ARC-Seal valid, cv=none on instance 1 and
  cv=pass on every later one. We add what it does not check: at most MAX_INSTANCES sets (section 4.2.1),
  and no rsa-sha1 in any seal or message signature (RFC 8301 section 3.1, as for DKIM: section 4.1 of RFC
  8617 takes its algorithms from DKIM). RSA keys under 1024 bits are refused by dkimpy (`minkey`, RFC 8301
  section 3.2): the signature does not validate, so the chain fails.
- Results (RFC 8617 section 4.4, with RFC 8601's temperror/permerror): `none` without ARC fields; `pass`;
  `fail` for a chain that does not validate, including one whose newest seal says cv=fail (section 5.2
  step 2: the chain ended there); `temperror` when a key could not be fetched (DNS failure) and the chain
  did not validate; `permerror` when dkimpy cannot read the message at all.
- Keys are fetched through our resolver (`DnsResolver.query_sync`, its TTL cache) with dkim_verify's
  `KeyLookup`, which remembers a temporary failure. dkimpy blocks: the check runs in a small thread pool.
- `sealers`: the d= of each ARC-Seal, oldest (i=1) first, as the fields say, read even when the chain fails
  (for the log and the Authentication-Results comment). Only a `pass` result makes them mean anything: the
  newest one is then the domain that vouches for the message as it arrived here.
- `oldest_pass`: the lowest instance from which every ARC-Message-Signature up to the newest still
  validates (RFC 8617 section 7.2's `header.oldest-pass`; 0 when the chain did not pass).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from dataclasses import dataclass
from typing import Any

import dkim

from postoffice.mailauth.dkim_verify import DKIMPY_LOG, MIN_RSA_BITS, KeyLookup, signature_tag
from postoffice.net.dns import DnsResolver

log = logging.getLogger("postoffice.mailauth")

#: The highest instance number an ARC set may have (RFC 8617 section 4.2.1).
MAX_INSTANCES = 50


@dataclass(frozen=True)
class ArcResult:
    result: str  # pass | fail | none | temperror | permerror
    instances: int  # the highest i= of the ARC fields (0: none)
    sealers: tuple[str, ...]  # d= of each ARC-Seal, oldest first, lowercase
    reason: str  # why, for the log and the A-R comment ("" for pass and none)
    oldest_pass: int = 0  # RFC 8617 section 7.2 header.oldest-pass (0 unless pass)

    @property
    def newest_sealer(self) -> str:
        return self.sealers[-1] if self.sealers else ""


def verify_chain(message: bytes, resolver: DnsResolver) -> ArcResult:
    """The ARC result of `message` (blocking: DNS and hashing)."""
    try:
        arc = dkim.ARC(message, logger=DKIMPY_LOG, minkey=MIN_RSA_BITS, timeout=5)
        instances, fields = arc.sorted_arc_headers()
    except Exception as exc:  # dkimpy could not split the message into header fields and body
        return ArcResult("permerror", 0, (), f"the message cannot be read: {exc}")
    if instances == 0:
        return ArcResult("none", 0, (), "")
    seals: dict[int, str] = {}
    for instance, (name, value) in sorted(fields, key=lambda item: item[0]):
        if name.lower() == b"arc-seal":
            seals.setdefault(instance, signature_tag(value, b"d").lower())
    sealers = tuple(seals[i] for i in sorted(seals))

    def result(outcome: str, reason: str = "", oldest_pass: int = 0) -> ArcResult:
        return ArcResult(outcome, instances, sealers, reason, oldest_pass)

    if instances > MAX_INSTANCES:
        return result("fail", f"more than {MAX_INSTANCES} ARC sets (RFC 8617 section 4.2.1)")
    if any(
        signature_tag(value, b"a").lower() == "rsa-sha1"
        for _, (name, value) in fields
        if name.lower() != b"arc-authentication-results"
    ):
        return result("fail", "rsa-sha1 is not accepted (RFC 8301)")
    lookup = KeyLookup(resolver)
    try:
        status, checked, why = arc.verify(dnsfunc=lookup)
    except Exception as exc:  # a dkimpy surprise on odd input must not lose the message
        log.warning("ARC validation failed unexpectedly: %s", exc)
        return result("permerror", "the chain could not be validated")
    if status == dkim.CV_Pass:
        return result("pass", "", _oldest_pass(checked))
    if lookup.temporary:
        return result("temperror", f"key lookup: {lookup.temporary}")
    if status == dkim.CV_None:  # dkimpy found no set it could number
        return result("none")
    return result("fail", str(why))


def _oldest_pass(checked: list[dict[str, Any]]) -> int:
    """The lowest instance from which every AMS up to the newest validates (`checked` is newest first)."""
    oldest = 0
    for entry in checked:
        if not entry.get("ams-valid"):
            break
        oldest = int(entry["instance"])
    return oldest


class ArcVerifier:
    """Validates chains off the event loop, in a pool of `threads` threads."""

    def __init__(self, resolver: DnsResolver, *, threads: int = 4) -> None:
        self.resolver = resolver
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="postoffice-arc"
        )

    async def verify(self, message: bytes) -> ArcResult:
        head = message[: message.find(b"\r\n\r\n") + 1 or len(message)].lower()
        if b"arc-seal" not in head and b"arc-message-signature" not in head:
            return ArcResult("none", 0, (), "")  # nothing to hand to a thread
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, verify_chain, message, self.resolver)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
