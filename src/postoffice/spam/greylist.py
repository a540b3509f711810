"""Greylisting (RFC 6647) of mail from other servers at RCPT (docs/decisions/0089): which triplet a recipient
makes, what its records say (`decide`, no I/O), and the records kept in the store (`Greylist`).

Implementation notes
- The triplet is the client's network, the envelope sender and the recipient ("SMTP command greylisting"
  at RCPT in RFC 6647's terms). The network, not the address: an IPv4 client by its /24 and an IPv6 client
  by its /64, because a sending service retries from another address of the same pool, and an IPv6 host
  can take any address of its /64. Sender and recipient are compared without case. The null sender
  (bounces, DSNs) is greylisted by the same triplet with "<>" as the sender: a legitimate bounce comes
  from a queue that retries, and forged bounces (backscatter) are a large part of what greylisting stops.
- The store keeps a triplet as its network and a hash of its sender and recipient (`triplet_key`): a record
  has a fixed size whatever the addresses, and the addresses are not kept.
- A new triplet is answered 451 4.7.1 and recorded (first seen now). A retry before `delay` has passed is
  answered the same and changes nothing (an early retry does not restart the clock). A retry after it, and
  before `retry_window` more has passed, passes: the triplet is recorded as passed and stays known until
  `expiry` after its last message. Later, the waiting record has expired and the triplet starts again.
- Records per client network are bounded: a network's new triplets are counted (its "p" record) over a
  window of `delay + retry_window` from the first one, the time a waiting triplet is kept; from
  `max_pending` on (MAX_PENDING) a new triplet of that network is answered 451 4.7.1 and not recorded
  ("limited") until the window ends. So at most twice `max_pending` waiting triplets of one network are
  ever kept, however fast its clients try new sender and recipient pairs. (The SMTP side ends a session
  after a few greylisted recipients: `postoffice.spam.screen`.)
- Automatic allowlist: triplets that pass count for their client network, at most once per `delay` (a
  message retried to many recipients is one delivery, not many: postgrey counts so too); from
  `auto_allowlist` counted passes on (0: never) the network's mail is not greylisted until `expiry` after
  its last message. A server that retried properly that often has shown that it is a real mail server.
- A record's expiry is pushed forward at most once per REFRESH seconds (or half the expiry when that is
  shorter), so that a known correspondent's messages read the store but seldom write it.
- The records of one network are read, decided on and written by one check at a time (a lock per network
  in this process): two connections of one sender passing at once count once, and the counts lose no
  update.
- Clients on `exempt` networks are never greylisted; neither are authenticated or relaying clients (the SMTP
  side asks only for port 25 sessions that do not relay).
- The clock is injectable (`clock`): the tests move time instead of sleeping.
- The store failing (a read or a write) lets the recipient pass, with a warning: greylisting delays mail,
  it never refuses it because of our own trouble.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from postoffice.spam.dnsbl import client_address
from postoffice.store import GreylistEntry, MailStore, StoreError

log = logging.getLogger("postoffice.spam")

#: Seconds between two writes that only push a known record's expiry forward (at most half the expiry).
REFRESH = 3600.0
#: New triplets of one client network recorded per window at most (module notes).
MAX_PENDING = 100

Outcome = Literal["new", "early", "limited", "passed", "known", "allowlisted", "exempt", "unavailable"]


@dataclass(frozen=True)
class GreylistPolicy:
    """The `[spam] greylist_*` settings, in seconds, and the bound on a network's waiting triplets."""

    delay: float
    retry_window: float
    expiry: float
    auto_allowlist: int
    max_pending: int = MAX_PENDING


@dataclass(frozen=True)
class GreylistDecision:
    """What one RCPT gets: `accept`, or a refusal for `retry_after` seconds more; `outcome` names the case
    (module notes); `writes`: the records to save."""

    accept: bool
    outcome: Outcome
    retry_after: float = 0.0
    writes: tuple[GreylistEntry, ...] = ()


@dataclass(frozen=True)
class GreylistKeys:
    """The store keys one RCPT reads: its triplet's, its network's count of passes (`network`) and of new
    triplets (`pending`)."""

    triplet: str
    network: str
    pending: str

    @classmethod
    def of(cls, network: str, sender: str, recipient: str) -> GreylistKeys:
        return cls(triplet_key(network, sender, recipient), client_key(network), pending_key(network))

    def every(self) -> tuple[str, str, str]:
        return self.triplet, self.network, self.pending


def client_network(ip: str) -> str:
    """The network a client address counts in: its /24 (IPv4; an IPv4-mapped IPv6 address as its IPv4
    address) or /64 (IPv6, without a scope). ValueError when `ip` is no address."""
    address = client_address(ip)
    prefix = 24 if isinstance(address, ipaddress.IPv4Address) else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def triplet_key(network: str, sender: str, recipient: str) -> str:
    """The store key of a triplet: "t", the network (quoted) and a hash (128 bits of SHA-256, hex) of the
    sender ("<>" for the null sender) and the recipient in lower case, quoted so that no sender or
    recipient can run into the other."""
    pair = json.dumps([sender.lower() or "<>", recipient.lower()], ensure_ascii=False)
    digest = hashlib.sha256(pair.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"t {json.dumps(network)} {digest}"


def client_key(network: str) -> str:
    """The store key of a client network's count of passed triplets."""
    return "c " + json.dumps(network)


def pending_key(network: str) -> str:
    """The store key of a client network's count of new triplets in the current window."""
    return "p " + json.dumps(network)


def decide(
    now: float, policy: GreylistPolicy, keys: GreylistKeys, records: Mapping[str, GreylistEntry]
) -> GreylistDecision:
    """The decision for the triplet of `keys` from the `records` of its keys (a key without one: none, or
    expired at `now`; module notes). No I/O: the caller reads the records and saves `writes`."""
    triplet, network, pending = (_live(records.get(key), now) for key in keys.every())
    expiry = policy.expiry
    if network is not None and 0 < policy.auto_allowlist <= network.passes:
        return GreylistDecision(True, "allowlisted", writes=_refreshed(network, now, expiry))
    if triplet is not None:
        if triplet.passes > 0:
            return GreylistDecision(True, "known", writes=_refreshed(triplet, now, expiry))
        waited = now - triplet.first_seen
        if waited < policy.delay:
            return GreylistDecision(False, "early", retry_after=policy.delay - waited)
        passed = GreylistEntry(keys.triplet, triplet.first_seen, 1, now, now + expiry)
        if network is not None and now - network.last_seen < policy.delay:
            return GreylistDecision(True, "passed", writes=(passed,))  # this delivery counted already
        counted = GreylistEntry(
            keys.network,
            network.first_seen if network is not None else now,
            (network.passes if network is not None else 0) + 1,
            now,
            now + expiry,
        )
        return GreylistDecision(True, "passed", writes=(passed, counted))
    if pending is not None and pending.passes >= policy.max_pending:
        return GreylistDecision(False, "limited", retry_after=policy.delay)
    window = policy.delay + policy.retry_window
    waiting = GreylistEntry(keys.triplet, now, 0, now, now + window)
    if pending is None:
        pending = GreylistEntry(keys.pending, now, 0, now, now + window)
    count = GreylistEntry(keys.pending, pending.first_seen, pending.passes + 1, now, pending.expires)
    return GreylistDecision(False, "new", retry_after=policy.delay, writes=(waiting, count))


def _live(entry: GreylistEntry | None, now: float) -> GreylistEntry | None:
    return entry if entry is not None and entry.expires > now else None


def _refreshed(entry: GreylistEntry, now: float, expiry: float) -> tuple[GreylistEntry, ...]:
    if now - entry.last_seen < min(REFRESH, expiry / 2):
        return ()
    return (GreylistEntry(entry.key, entry.first_seen, entry.passes, now, now + expiry),)


class _NetworkLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Greylist:
    """Greylisting with the records in the store (module notes)."""

    def __init__(
        self,
        store: MailStore,
        policy: GreylistPolicy,
        *,
        exempt: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.policy = policy
        self.exempt = tuple(ipaddress.ip_network(net, strict=False) for net in exempt)
        self.clock = clock
        self._locks: dict[str, _NetworkLock] = {}

    def is_exempt(self, ip: str) -> bool:
        """Whether the client at `ip` is never greylisted (an exempt network, or no IP address at all)."""
        try:
            address = client_address(ip)
        except ValueError:
            return True
        return any(address in network for network in self.exempt)

    async def check(self, ip: str, sender: str, recipient: str) -> GreylistDecision:
        """The decision for this RCPT, its records saved."""
        if self.is_exempt(ip):
            return GreylistDecision(True, "exempt")
        network = client_network(ip)
        keys = GreylistKeys.of(network, sender, recipient)
        async with self._one_at_a_time(network):
            now = self.clock()
            try:
                found = await self.store.greylist_entries(keys.every(), now)
                decision = decide(now, self.policy, keys, found)
                if decision.writes:
                    await self.store.greylist_save(decision.writes, now)
            except StoreError as exc:
                log.warning("greylist: the store failed (%s): <%s> from %s passes", exc, recipient, ip)
                return GreylistDecision(True, "unavailable")
        return decision

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, network: str) -> AsyncIterator[None]:
        """The records of `network` for this check alone (module notes)."""
        held = self._locks.get(network)
        if held is None:
            held = self._locks[network] = _NetworkLock()
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if held.users == 0:
                del self._locks[network]
