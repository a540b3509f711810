"""Greylisting (RFC 6647) of mail from other servers at RCPT (docs/decisions/0089): which triplet a recipient
makes, what its records say (`decide`, no I/O), and the records kept in the store (`Greylist`).

Implementation notes
- The triplet is the client's network, the envelope sender and the recipient ("SMTP command greylisting"
  at RCPT in RFC 6647's terms). The network, not the address: an IPv4 client by its /24 and an IPv6 client
  by its /64, because a sending service retries from another address of the same pool, and an IPv6 host
  can take any address of its /64. Sender and recipient are compared without case. The null sender
  (bounces, DSNs) is greylisted by the same triplet with "<>" as the sender: a legitimate bounce comes
  from a queue that retries, and forged bounces (backscatter) are a large part of what greylisting stops.
- A new triplet is answered 451 4.7.1 and recorded (first seen now). A retry before `delay` has passed is
  answered the same and changes nothing (an early retry does not restart the clock). A retry after it, and
  before `retry_window` more has passed, passes: the triplet is recorded as passed and stays known until
  `expiry` after its last message. Later, the waiting record has expired and the triplet starts again.
- Automatic allowlist: each triplet that passes counts for its client network; from `auto_allowlist`
  passes on (0: never) the network's mail is not greylisted until `expiry` after its last message. A
  server that retried properly that often has shown that it is a real mail server.
- A record's expiry is pushed forward at most once per REFRESH seconds, so that a known correspondent's
  messages read the store but seldom write it.
- Clients on `exempt` networks are never greylisted; neither are authenticated or relaying clients (the SMTP
  side asks only for port 25 sessions that do not relay).
- The clock is injectable (`clock`): the tests move time instead of sleeping.
- The store failing (a read or a write) lets the recipient pass, with a warning: greylisting delays mail,
  it never refuses it because of our own trouble.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from postoffice.store import GreylistEntry, MailStore, StoreError

log = logging.getLogger("postoffice.spam")

#: Seconds between two writes that only push a known record's expiry forward.
REFRESH = 3600.0

Outcome = Literal["new", "early", "passed", "known", "allowlisted", "exempt", "unavailable"]


@dataclass(frozen=True)
class GreylistPolicy:
    """The `[spam] greylist_*` settings, in seconds."""

    delay: float
    retry_window: float
    expiry: float
    auto_allowlist: int


@dataclass(frozen=True)
class GreylistDecision:
    """What one RCPT gets: `accept`, or a refusal for `retry_after` seconds more; `outcome` names the case
    (module notes); `writes`: the records to save."""

    accept: bool
    outcome: Outcome
    retry_after: float = 0.0
    writes: tuple[GreylistEntry, ...] = ()


def client_network(ip: str) -> str:
    """The network a client address counts in: its /24 (IPv4; an IPv4-mapped IPv6 address as its IPv4
    address) or /64 (IPv6). ValueError when `ip` is no address."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if isinstance(address, ipaddress.IPv4Address) else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def triplet_key(network: str, sender: str, recipient: str) -> str:
    """The store key of a triplet: "t", the network, sender ("<>" for the null sender) and recipient in
    lower case, each quoted (JSON strings: no sender or recipient can run into the next part)."""
    parts = [network, sender.lower() or "<>", recipient.lower()]
    return "t " + " ".join(json.dumps(part, ensure_ascii=False) for part in parts)


def client_key(network: str) -> str:
    """The store key of a client network's count of passed triplets."""
    return "c " + json.dumps(network)


def decide(
    now: float,
    policy: GreylistPolicy,
    key: str,
    triplet: GreylistEntry | None,
    network_key: str,
    network: GreylistEntry | None,
) -> GreylistDecision:
    """The decision for the triplet `key` from its record and its network's (`network_key`; None: none, or
    expired at `now`; module notes). No I/O: the caller reads the records and saves `writes`."""
    expiry = policy.expiry
    if network is not None and 0 < policy.auto_allowlist <= network.passes and network.expires > now:
        refresh = _refreshed(network, now, expiry)
        return GreylistDecision(True, "allowlisted", writes=refresh)
    if triplet is not None and triplet.expires > now:
        if triplet.passes > 0:
            return GreylistDecision(True, "known", writes=_refreshed(triplet, now, expiry))
        waited = now - triplet.first_seen
        if waited < policy.delay:
            return GreylistDecision(False, "early", retry_after=policy.delay - waited)
        counted = GreylistEntry(
            network_key,
            network.first_seen if network is not None else now,
            (network.passes if network is not None else 0) + 1,
            now,
            now + expiry,
        )
        passed = GreylistEntry(key, triplet.first_seen, 1, now, now + expiry)
        return GreylistDecision(True, "passed", writes=(passed, counted))
    waiting = GreylistEntry(key, now, 0, now, now + policy.delay + policy.retry_window)
    return GreylistDecision(False, "new", retry_after=policy.delay, writes=(waiting,))


def _refreshed(entry: GreylistEntry, now: float, expiry: float) -> tuple[GreylistEntry, ...]:
    if now - entry.last_seen < REFRESH:
        return ()
    return (GreylistEntry(entry.key, entry.first_seen, entry.passes, now, now + expiry),)


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

    def is_exempt(self, ip: str) -> bool:
        """Whether the client at `ip` is never greylisted (an exempt network, or no IP address at all)."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.exempt)

    async def check(self, ip: str, sender: str, recipient: str) -> GreylistDecision:
        """The decision for this RCPT, its records saved."""
        if self.is_exempt(ip):
            return GreylistDecision(True, "exempt")
        network = client_network(ip)
        keys = (triplet_key(network, sender, recipient), client_key(network))
        now = self.clock()
        try:
            found = await self.store.greylist_entries(keys, now)
            decision = decide(now, self.policy, keys[0], found.get(keys[0]), keys[1], found.get(keys[1]))
            if decision.writes:
                await self.store.greylist_save(decision.writes, now)
        except StoreError as exc:
            log.warning("greylist: the store failed (%s): <%s> from %s passes", exc, recipient, ip)
            return GreylistDecision(True, "unavailable")
        return decision
