"""DNS blocklists (RFC 5782) asked about the clients of port 25 (docs/decisions/0089): the query names, what
an answer means, and the lookups with their cache.

Implementation notes
- The query name (RFC 5782 section 2.1): the four octets of an IPv4 address in reverse order in front of the
  zone (192.0.2.99 in bl.example: 99.2.0.192.bl.example); for IPv6 (section 2.4) the 32 nibbles of the
  address in reverse order, each a label. An IPv4-mapped IPv6 address is asked as the IPv4 address it maps.
- An answer (section 2.1): a listed address has an A record in 127.0.0.0/8, usually 127.0.0.2 (different
  values can name sublists) and a TXT record saying why. Not every A record is a listing: 127.0.0.1 is never
  one (section 5: a list must not list it; URIBL-style lists answer it to a refused query), and Spamhaus
  answers 127.255.255.252-255 (127.255.255.0/24 here) for a query it refused (one from a public resolver,
  too many queries, a mistyped zone). Those, and answers outside 127.0.0.0/8 (a lapsed zone whose domain
  now answers everything), are "untrusted": not a listing, logged as a warning (at most once per zone per
  WARN_INTERVAL) so that the administrator fixes the resolver or the zone.
- NXDOMAIN or no A records: not listed. A failure (SERVFAIL, a timeout, no server) or no answer within
  `timeout`: not listed either, and logged: a slow or broken blocklist never stops mail.
- For a listing, the TXT record at the same name is asked within the same deadline; its text (printable
  ASCII, at most MAX_REASON characters) goes into the refusal, so that the client's operator learns where
  to ask for removal.
- Results are cached per (zone, address): listings for their TTL bounded to MIN_TTL..MAX_TTL, "not listed"
  for CLEAR_TTL, failures and untrusted answers for FAILED_TTL (a dead zone is not asked again by every
  connection), at most MAX_ENTRIES (the least recently added go first). The resolver's own cache (dnspython's)
  cannot bound TTLs, keeps no NXDOMAIN without an SOA and no failures, so these verdicts are kept here and
  the resolver asks without a cache. Concurrent connections from one address share one lookup per zone.
- A lookup lives only as long as a session waits for it: when the last session sharing it leaves (the client
  hung up), it is cancelled (its socket closed) and fills no cache. At most `max_in_flight` lookups
  (MAX_IN_FLIGHT by default) are in flight at once: beyond that an address is "not listed" by that zone
  (not cached, a warning at most once per WARN_INTERVAL), so that clients connecting and hanging up from
  ever new addresses (an IPv6 /64 has plenty) cannot make the server hold an unbounded number of queries.
- A scoped address (fe80::1%eth0) is asked without its scope, an IPv4-mapped one as its IPv4 address
  (`client_address`).
- Nothing here decides what a listing does: `postoffice.spam.screen` (the SMTP side) and the spam stage do.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import dns.rrset

from postoffice.net.dns import DnsTemporaryFailure, NoSuchDomain

log = logging.getLogger("postoffice.spam")

#: Bounds of the time a listing is kept (its TTL, within these), seconds.
MIN_TTL = 60.0
MAX_TTL = 3600.0
#: Seconds a "not listed" is kept.
CLEAR_TTL = 300.0
#: Seconds a failure or an untrusted answer is kept.
FAILED_TTL = 60.0
#: Results kept at most.
MAX_ENTRIES = 10_000
#: Characters of a TXT reason kept at most.
MAX_REASON = 200
#: Seconds between two warnings about the same zone.
WARN_INTERVAL = 600.0
#: Lookups (one zone, one address) in flight at most (module notes).
MAX_IN_FLIGHT = 500

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
#: Answers that say the query was refused, not that the address is listed (module notes).
_REFUSAL_CODES = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("127.255.255.0/24"))

Status = Literal["listed", "clear", "untrusted", "failed"]


@dataclass(frozen=True)
class ZoneResult:
    """What one zone said about one address: `listed` (with the A records' `codes` and the TXT `reason`),
    `clear`, `untrusted` (an answer that is no listing: `codes` says which) or `failed` (`reason`: how)."""

    zone: str
    status: Status
    codes: tuple[str, ...] = ()
    reason: str = ""


class Resolver(Protocol):
    """What the lookups need of `postoffice.net.dns.DnsResolver`."""

    async def query(self, name: str, rdtype: str) -> dns.rrset.RRset | None: ...


def client_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address a client at `ip` is judged by: an IPv4-mapped IPv6 address as its IPv4 address, an IPv6
    address without its scope (fe80::1%eth0 as fe80::1). ValueError when `ip` is no IP address."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(int(address))
    return address


def query_name(ip: str, zone: str) -> str:
    """The name asked about `ip` in `zone` (module notes; RFC 5782 sections 2.1 and 2.4), without the final
    dot. ValueError when `ip` is no IP address."""
    address = client_address(ip)
    if isinstance(address, ipaddress.IPv4Address):
        labels = str(address).split(".")
    else:
        labels = list(address.exploded.replace(":", ""))
    return ".".join(reversed(labels)) + "." + zone


def address_of(name: str, zone: str) -> str:
    """The address a query name asks about (the inverse of `query_name`); ValueError when `name` is no query
    name of `zone`."""
    suffix = "." + zone
    if not name.endswith(suffix):
        raise ValueError(f"{name!r} is not in {zone!r}")
    labels = name[: -len(suffix)].split(".")[::-1]
    if len(labels) == 4:
        return str(ipaddress.IPv4Address(".".join(labels)))
    if len(labels) == 32 and all(len(label) == 1 for label in labels):
        text = "".join(labels)
        return str(ipaddress.IPv6Address(":".join(text[i : i + 4] for i in range(0, 32, 4))))
    raise ValueError(f"{name!r} names no address")


def interpret(addresses: Iterable[str]) -> tuple[Status, tuple[str, ...]]:
    """What the A records of a query name say (module notes): ("listed", the listing codes) when any is a
    listing; else ("untrusted", the codes) when there are any; else ("clear", ())."""
    listed: list[str] = []
    other: list[str] = []
    for text in addresses:
        try:
            address = ipaddress.IPv4Address(text)
        except ValueError:
            other.append(text)
            continue
        if address in _LOOPBACK and not any(address in codes for codes in _REFUSAL_CODES):
            listed.append(str(address))
        else:
            other.append(str(address))
    if listed:
        return "listed", tuple(sorted(set(listed), key=ipaddress.IPv4Address))
    if other:
        return "untrusted", tuple(sorted(set(other)))
    return "clear", ()


def reason_text(strings: Iterable[bytes]) -> str:
    """A TXT record's strings as one line for an SMTP reply: printable ASCII (other octets "?", control
    characters white space), white space collapsed, at most MAX_REASON characters."""
    text = b"".join(strings).decode("ascii", "replace").replace("\ufffd", "?")
    cleaned = "".join(c if " " <= c <= "~" else " " for c in text)
    return " ".join(cleaned.split())[:MAX_REASON]


def listed_zones(results: Sequence[ZoneResult]) -> tuple[str, ...]:
    """The zones that list the client, in the order asked."""
    return tuple(r.zone for r in results if r.status == "listed")


class _Shared:
    """A lookup in flight and the number of checks waiting for it."""

    __slots__ = ("task", "waiting")

    def __init__(self, task: asyncio.Task[ZoneResult]) -> None:
        self.task = task
        self.waiting = 0


class DnsblChecker:
    """Asks every zone about an address at once, with the cache, the deadline and the bounds of the module
    notes."""

    def __init__(
        self,
        zones: Sequence[str],
        resolver: Resolver,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.zones = tuple(zones)
        self.resolver = resolver
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self._clock = clock
        self._cache: collections.OrderedDict[tuple[str, str], tuple[float, ZoneResult]] = (
            collections.OrderedDict()
        )
        self._pending: dict[tuple[str, str], _Shared] = {}
        self._warned: dict[str, float] = {}

    @property
    def in_flight(self) -> int:
        """The lookups in flight now."""
        return len(self._pending)

    async def check(self, ip: str) -> list[ZoneResult]:
        """Every zone's result for `ip`, in the order of `zones`; never raises for DNS (failures are results).
        Cancelling it leaves the lookups it shares with other checks running; the ones only it waited for
        are cancelled."""
        if not self.zones:
            return []
        joined = [self._join(zone, ip) for zone in self.zones]
        try:
            return list(await asyncio.gather(*(asyncio.shield(future) for future in joined)))
        finally:
            for zone, future in zip(self.zones, joined, strict=True):
                self._leave((zone, ip), future)

    def _join(self, zone: str, ip: str) -> asyncio.Future[ZoneResult]:
        """The result of `zone` for `ip`: cached, a lookup in flight (shared), a new one, or "failed" when
        too many are in flight."""
        key = (zone, ip)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            return _done(cached[1])
        shared = self._pending.get(key)
        if shared is None:
            if len(self._pending) >= self.max_in_flight:
                self._warn_busy(zone, ip)
                return _done(ZoneResult(zone, "failed", reason=f"{self.max_in_flight} lookups in flight"))
            shared = _Shared(asyncio.ensure_future(self._lookup(zone, ip)))
            self._pending[key] = shared
            shared.task.add_done_callback(lambda task: self._forget(key, task))
        shared.waiting += 1
        return shared.task

    def _leave(self, key: tuple[str, str], future: asyncio.Future[ZoneResult]) -> None:
        """A check no longer waits for `future`: the lookup is cancelled when no other check does."""
        shared = self._pending.get(key)
        if shared is None or shared.task is not future:
            return  # a cached or refused result, or a lookup that ended
        shared.waiting -= 1
        if shared.waiting <= 0:
            del self._pending[key]
            shared.task.cancel()

    def _forget(self, key: tuple[str, str], task: asyncio.Task[ZoneResult]) -> None:
        shared = self._pending.get(key)
        if shared is not None and shared.task is task:
            del self._pending[key]

    def _keep(self, zone: str, ip: str, result: ZoneResult, ttl: float) -> None:
        self._cache[(zone, ip)] = (self._clock() + ttl, result)
        self._cache.move_to_end((zone, ip))
        while len(self._cache) > MAX_ENTRIES:
            self._cache.popitem(last=False)

    async def _lookup(self, zone: str, ip: str) -> ZoneResult:
        result, ttl = await self._ask(zone, ip)
        self._keep(zone, ip, result, ttl)
        if result.status in ("untrusted", "failed"):
            self._warn(zone, ip, result)
        elif result.status == "listed":
            log.info(
                "dnsbl %s lists %s (%s)%s",
                zone,
                ip,
                ",".join(result.codes),
                f": {result.reason}" if result.reason else "",
            )
        return result

    async def _ask(self, zone: str, ip: str) -> tuple[ZoneResult, float]:
        try:
            name = query_name(ip, zone)
        except ValueError:
            return ZoneResult(zone, "clear"), CLEAR_TTL
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            async with asyncio.timeout_at(deadline):
                rrset = await self.resolver.query(name, "A")
        except NoSuchDomain:
            return ZoneResult(zone, "clear"), CLEAR_TTL
        except DnsTemporaryFailure as exc:
            return ZoneResult(zone, "failed", reason=exc.text), FAILED_TTL
        except TimeoutError:
            return ZoneResult(zone, "failed", reason=f"no answer within {self.timeout:g} s"), FAILED_TTL
        if rrset is None:
            return ZoneResult(zone, "clear"), CLEAR_TTL
        status, codes = interpret(str(rdata) for rdata in rrset)
        if status != "listed":
            return ZoneResult(zone, status, codes), (CLEAR_TTL if status == "clear" else FAILED_TTL)
        ttl = min(max(float(rrset.ttl), MIN_TTL), MAX_TTL)
        reason = ""
        try:
            async with asyncio.timeout_at(deadline):
                texts = await self.resolver.query(name, "TXT")
            if texts is not None:
                reason = reason_text(getattr(next(iter(texts)), "strings", ()))
        except (NoSuchDomain, DnsTemporaryFailure, TimeoutError):
            pass  # the listing stands without its reason
        return ZoneResult(zone, "listed", codes, reason), ttl

    def _warn_busy(self, zone: str, ip: str) -> None:
        """Too many lookups in flight: a warning at most once per WARN_INTERVAL (for all zones)."""
        if self._may_warn(""):
            log.warning(
                "dnsbl: %d lookups in flight, %s not looked up in %s: treated as not listed",
                self.max_in_flight,
                ip,
                zone,
            )
        else:
            log.debug("dnsbl %s: %s not looked up (too many lookups in flight)", zone, ip)

    def _may_warn(self, key: str) -> bool:
        now = self._clock()
        if now - self._warned.get(key, -WARN_INTERVAL) < WARN_INTERVAL:
            return False
        self._warned[key] = now
        return True

    def _warn(self, zone: str, ip: str, result: ZoneResult) -> None:
        """A warning about `zone`, at most one per WARN_INTERVAL (else a debug line)."""
        if not self._may_warn(zone):
            log.debug("dnsbl %s: %s for %s", zone, result.status, ip)
            return
        if result.status == "untrusted":
            log.warning(
                "dnsbl %s answered %s for %s: a refused query or no blocklist answer, treated as not listed "
                "(is the resolver a public one? is the zone right?)",
                zone,
                ",".join(result.codes),
                ip,
            )
        else:
            log.warning("dnsbl %s: lookup for %s failed (%s), treated as not listed", zone, ip, result.reason)


def _done(result: ZoneResult) -> asyncio.Future[ZoneResult]:
    done: asyncio.Future[ZoneResult] = asyncio.get_running_loop().create_future()
    done.set_result(result)
    return done
