"""The checks of port 25 before a message is received (docs/decisions/0089): DNS blocklists (RFC 5782), asked
at the connection and applied at RCPT, and greylisting (RFC 6647) at RCPT. The SMTP session asks; this module
answers with refusals (`postoffice.delivery.plan.Refusal`) and knows nothing of the protocol.

Implementation notes
- Only sessions of port 25 that do not relay ask (the SMTP session's origin "mx"): submission (587, 465) is
  authenticated, `[smtp] relay_networks` are trusted by configuration. Clients on `[spam] dnsbl_exempt`
  networks are not looked up, those on `greylist_exempt` not greylisted (by default both are loopback,
  private and link-local networks).
- The lookups start when the client connects (`connected`) and run while it says hello; RCPT waits for what
  is left of them, at most `[spam] dnsbl_timeout` from the connection. A listing is applied at RCPT, not at
  the greeting: RFC 5321 section 4.5.1 requires postmaster to be accepted, so postmaster@ (and the bare
  "postmaster"), and abuse@ (RFC 2142), are still accepted from a listed client, so that its operator can
  ask about the listing; every other recipient gets 554 5.7.1 naming the blocklist, with its reason text
  (RFC 5321 section 3.1 would allow a 554 greeting instead, which refuses postmaster too).
- Under `dnsbl_action = "junk"` nothing is refused: the listed zones reach the spam stage with the message
  (`Origin.dnsbl`), which files it into Junk.
- Greylisting runs for a recipient the pipeline accepted (after the DNSBL check and the resolution: unknown
  users and relaying attempts get their own permanent answers, and leave no records). Its answer is
  451 4.7.1 with the seconds to wait. A session counts its greylisted recipients (`ClientChecks.greylisted`):
  from MAX_GREYLISTED on, the SMTP session ends with 421 4.7.0 (`too_many_greylisted`), so that one session
  cannot go on trying new sender and recipient pairs (each a record) at its command rate; a real server
  retries the rest later. The store's records are bounded per client network too (`Greylist`).
- A session that ends (the client hung up) cancels its DNSBL lookups; those that other sessions from the
  same address wait for go on (`DnsblChecker.check`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import TYPE_CHECKING

from postoffice.delivery.plan import Refusal
from postoffice.net.dns import DnsResolver
from postoffice.plural import counted
from postoffice.spam.dnsbl import DnsblChecker, ZoneResult, client_address, listed_zones
from postoffice.spam.greylist import Greylist, GreylistPolicy

if TYPE_CHECKING:
    from postoffice.config import Config
    from postoffice.net.service import ServiceContext
    from postoffice.spam.settings import SpamConfig
    from postoffice.store import MailStore

log = logging.getLogger("postoffice.spam")

#: Greylisted recipients after which a session is ended (module notes).
MAX_GREYLISTED = 20

#: Local parts still reached from a listed client: RFC 5321 section 4.5.1 (postmaster), RFC 2142 (abuse).
ALWAYS_REACHABLE = frozenset({"postmaster", "abuse"})


def always_reachable(address: str) -> bool:
    """Whether `address` is postmaster@ or abuse@ some domain, or the bare "postmaster" (any case)."""
    if "@" not in address:
        return address.lower() == "postmaster"  # RFC 5321 section 4.1.1.3: "Postmaster" with no domain
    return address.rpartition("@")[0].lower() in ALWAYS_REACHABLE


def listing_refusal(client_ip: str, listing: ZoneResult) -> Refusal:
    """554 5.7.1 naming the blocklist, and its reason when it gave one."""
    text = f"Service unavailable; client [{client_ip}] blocked using {listing.zone}"
    if listing.reason:
        text += f"; {listing.reason}"
    return Refusal(554, "5.7.1", text, "dnsbl")


class ClientChecks:
    """One connection's checks: its DNSBL lookups (a task of the session's own; None when not looked up) and
    the number of its recipients that were greylisted."""

    def __init__(self, ip: str, lookups: asyncio.Task[list[ZoneResult]] | None) -> None:
        self.ip = ip
        self._lookups = lookups
        self.greylisted = 0

    async def dnsbl_results(self) -> list[ZoneResult]:
        """Every zone's result (empty when the client is not looked up, or the lookups broke)."""
        if self._lookups is None:
            return []
        try:
            return await self._lookups
        except Exception as exc:  # a bug, not DNS (whose failures are results): the client is not listed
            log.error("dnsbl: the lookups for %s failed", self.ip, exc_info=exc)
            self._lookups = None
            return []

    async def listed(self) -> tuple[str, ...]:
        """The zones that list the client."""
        return listed_zones(await self.dnsbl_results())

    @property
    def too_many_greylisted(self) -> bool:
        """Whether the session has had MAX_GREYLISTED recipients greylisted: it is to be ended (421)."""
        return self.greylisted >= MAX_GREYLISTED

    def close(self) -> None:
        """At the end of the session: its own task ends, and the lookups no other session waits for."""
        if self._lookups is not None and not self._lookups.done():
            self._lookups.cancel()
        elif self._lookups is not None:
            with contextlib.suppress(asyncio.CancelledError):
                self._lookups.exception()  # retrieved: no "never retrieved" warning


class InboundScreen:
    """The DNSBL and greylisting checks of port 25 (module notes); one per server, shared by its sessions."""

    def __init__(
        self,
        *,
        dnsbl: DnsblChecker | None = None,
        dnsbl_action: str = "reject",
        dnsbl_exempt: tuple[str, ...] = (),
        greylist: Greylist | None = None,
    ) -> None:
        self.dnsbl = dnsbl
        self.dnsbl_action = dnsbl_action
        self.dnsbl_exempt = tuple(ipaddress.ip_network(net, strict=False) for net in dnsbl_exempt)
        self.greylist = greylist

    def connected(self, ip: str) -> ClientChecks:
        """A client connected to port 25 (and does not relay): its DNSBL lookups start."""
        if self.dnsbl is None or not self.dnsbl.zones or self._dnsbl_exempt(ip):
            return ClientChecks(ip, None)
        return ClientChecks(ip, asyncio.ensure_future(self.dnsbl.check(ip)))

    def _dnsbl_exempt(self, ip: str) -> bool:
        try:
            address = client_address(ip)
        except ValueError:
            return True
        return any(address in network for network in self.dnsbl_exempt)

    async def recipient_refused(self, client: ClientChecks, address: str) -> Refusal | None:
        """Before the recipient is resolved: the DNSBL refusal under `dnsbl_action = "reject"`, unless the
        recipient is postmaster or abuse."""
        if self.dnsbl_action != "reject" or always_reachable(address):
            return None
        for result in await client.dnsbl_results():
            if result.status == "listed":
                return listing_refusal(client.ip, result)
        return None

    async def greylisted(self, client: ClientChecks, sender: str, address: str) -> Refusal | None:
        """For a recipient the pipeline accepted: 451 4.7.1 while its triplet is greylisted (counted in
        `client.greylisted`)."""
        if self.greylist is None:
            return None
        decision = await self.greylist.check(client.ip, sender, address)
        if decision.accept:
            if decision.outcome in ("passed", "allowlisted"):
                outcome = decision.outcome
                log.info("greylist client=%s from=<%s> to=<%s>: %s", client.ip, sender, address, outcome)
            return None
        client.greylisted += 1
        wait = max(1, round(decision.retry_after))
        log.info(
            "greylist client=%s from=<%s> to=<%s>: %s, 451 for %d s more",
            client.ip,
            sender,
            address,
            decision.outcome,
            wait,
        )
        return Refusal(451, "4.7.1", f"Greylisted, try again in {counted(wait, 'second')}", "greylisted")


def make_screen(config: Config, store: MailStore) -> InboundScreen | None:
    """The screen for this configuration; None when `[spam]` has neither DNSBL zones nor greylisting."""
    settings: SpamConfig = config.spam
    if not settings.dnsbl_zones and not settings.greylisting:
        return None
    dnsbl = None
    if settings.dnsbl_zones:
        timeout = settings.dnsbl_timeout
        resolver = DnsResolver(
            list(config.queue.nameservers) or None,
            port=config.queue.dns_port,
            timeout=min(timeout, 2.0),
            lifetime=timeout,
        )
        dnsbl = DnsblChecker(settings.dnsbl_zones, resolver, timeout=timeout)
    greylist = None
    if settings.greylisting:
        policy = GreylistPolicy(
            delay=settings.greylist_delay,
            retry_window=settings.greylist_retry_window,
            expiry=settings.greylist_expiry,
            auto_allowlist=settings.greylist_auto_allowlist,
        )
        greylist = Greylist(store, policy, exempt=settings.greylist_exempt)
    return InboundScreen(
        dnsbl=dnsbl,
        dnsbl_action=settings.dnsbl_action,
        dnsbl_exempt=settings.dnsbl_exempt,
        greylist=greylist,
    )


def shared_screen(context: ServiceContext) -> InboundScreen | None:
    """The server's one screen (made on first use; every port 25 listener shares it and its caches)."""
    return context.shared("spam.screen", lambda: make_screen(context.config, context.store))
