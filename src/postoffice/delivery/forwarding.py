"""Forwarding: the copies of a delivery that go to outside addresses its aliases name (docs/decisions/0059).

Implementation notes
- Each copy forwarded is a message of its own in the outbound queue, written in the same transaction as the
  delivery's other copies (`Delivery.forwards`), one per domain of ours it was forwarded through (the
  domain of the alias address), to every outside target reached through that domain.
- Its bytes: the message as received (our Received field on top), without a Return-Path field (that is
  for final delivery, RFC 5321 section 4.4), with our Authentication-Results field, and, when the forwarding
  domain has DKIM keys and [mailauth] arc_seal is on, an ARC set (RFC 8617 section 5.1: the results we saw,
  a message signature and a seal with cv= from our validation of the chain it came with), so that the
  next hop can trust what we checked even where forwarding breaks SPF and a list's footer broke DKIM.
- Its envelope sender: rewritten by SRS ([mailauth] srs, `delivery.srs`) so that SPF at the next hop checks
  our server, not the original sender's; a bounce to the SRS address comes back to us and is sent on to the
  original sender (the pipeline's `resolve`). The null sender stays null (a bounce forwarded); a sender of
  our own domains is not rewritten (our SPF covers it).
- Loops (RFC 5321 section 6.3: counting Received fields "has proven to be an effective ... method of
  detecting loops"): a message that has passed MAX_HOPS hosts already is not forwarded again
  (`looping_forwards`, before the commit). Postfix's hopcount_limit is the same 50. The local copies are
  kept; the sender is told of the forwarding address that failed as of any recipient refused after DATA
  (a DSN with 554 5.4.6, naming the address the sender used, not where it leads); when nothing else is left
  of the delivery the reply to DATA is that refusal. `Forwarder.messages` checks again, as the last guard.
- REQUIRETLS (RFC 8689 section 4.1: "If the message is being locally aliased and redistributed to multiple
  addresses, all instances of the message MUST be tagged in the same manner") carries over to forwards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from postoffice.delivery import srs
from postoffice.delivery.plan import DeliveryPlan, Forward, Message, Rewrite, header_field
from postoffice.message import PARSE_INLINE_LIMIT
from postoffice.store import GeneratedMessage, OutboundMessage, OutboundRecipient

if TYPE_CHECKING:
    from postoffice.store import MailStore

log = logging.getLogger("postoffice.delivery")

#: Received fields a message may have for us to forward it once more (Postfix: hopcount_limit).
MAX_HOPS = 50
#: The field a Sieve redirect puts on the copy it sends: the address whose script redirected it.
REDIRECTED_FROM = "X-Sieve-Redirected-From"


def _read(source: IO[bytes], size: int) -> bytes:
    source.seek(0)
    return source.read(size)


def without_return_path(data: bytes) -> bytes:
    """The message without the Return-Path fields at its top (RFC 5321 section 4.4: final delivery's)."""
    while data[:12].lower() == b"return-path:":
        end = data.find(b"\r\n")
        while end >= 0 and data[end + 2 : end + 3] in (b" ", b"\t"):  # folded
            end = data.find(b"\r\n", end + 2)
        if end < 0:
            return data
        data = data[end + 2 :]
    return data


def received_fields(data: bytes) -> int:
    """How many Received fields the header section of `data` has."""
    end = data.find(b"\r\n\r\n")
    head = b"\r\n" + (data if end < 0 else data[: end + 2]).lower()
    return head.count(b"\r\nreceived:")


def _header_section(source: IO[bytes], size: int) -> bytes:
    source.seek(0)
    head = source.read(min(size, MAX_LOOP_HEADER))
    end = head.find(b"\r\n\r\n")
    return head if end < 0 else head[: end + 4]


async def _reading(read: Callable[[IO[bytes], int], bytes], message: Message) -> bytes:
    """`read(source, size)` of the message: here when it is small, in a thread when it is large."""
    size = message.parsed.size
    if size <= PARSE_INLINE_LIMIT:
        return read(message.source, size)
    return await asyncio.to_thread(read, message.source, size)


#: Octets of the header section read for the loop check at most (50 Received fields fit well within).
MAX_LOOP_HEADER = 256 * 1024


async def looping_forwards(message: Message, plan: DeliveryPlan) -> list[Forward]:
    """The forwards of `plan` that would continue a mail loop (the module notes: MAX_HOPS Received fields
    already), taken out of the plan; [] when there are none."""
    if not plan.forwards:
        return []
    hops = received_fields(await _reading(_header_section, message))
    if hops < MAX_HOPS:
        return []
    looped, plan.forwards = plan.forwards, []
    log.warning(
        "delivery id=%s: not forwarded to %s: %d Received fields, a mail loop (RFC 5321 6.3)",
        plan.origin.id or "-",
        ", ".join(f"<{f.target}>" for f in looped),
        hops,
    )
    return looped


class Forwarder:
    """Makes the queued forwards of a delivery (see the module notes)."""

    def __init__(
        self,
        store: MailStore,
        hostname: str,
        *,
        srs_on: bool = True,
        seal: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.hostname = hostname
        self.srs_on = srs_on
        self.seal = seal
        self.clock = clock

    async def messages(self, message: Message, plan: DeliveryPlan) -> list[GeneratedMessage]:
        """The forwards of `plan` as messages to queue (none when it has none). Store errors propagate."""
        if not plan.forwards or await looping_forwards(message, plan):  # the last guard (module notes)
            return []
        raw = await _reading(_read, message)
        data = without_return_path(raw)
        if plan.authentication_results:
            data = header_field("Authentication-Results", plan.authentication_results) + data
        by_domain: dict[tuple[str, str, Rewrite | None], list[str]] = {}
        for forward in plan.forwards:
            redirected = forward.via if forward.redirect else ""
            key = (forward.via.rpartition("@")[2].lower(), redirected, forward.rewrite)
            by_domain.setdefault(key, []).append(forward.target)
        ours = {d.name for d in await self.store.list_domains()}
        envelope = plan.envelope
        made = []
        for (domain, redirected, rewrite), targets in by_domain.items():
            sender = envelope.sender
            sender_domain = sender.rpartition("@")[2].lower()
            if self.srs_on and sender and sender_domain not in ours:
                try:
                    sender = srs.forward(
                        sender, domain, await self.store.server_secret("srs"), now=self.clock()
                    )
                except srs.SrsError:
                    pass  # not an address SRS can carry: forwarded with the sender as it came
            text = data
            if rewrite is not None:  # a header a Sieve script edited (it holds our trace fields already)
                text = without_return_path(rewrite.head + raw[rewrite.replaces :])
            if redirected:  # RFC 5228 section 4.2's loop control, Pigeonhole's field: who redirected it
                text = header_field(REDIRECTED_FROM, redirected) + text
            sealed = await self._sealed(text, domain, plan) if self.seal else text
            outbound = OutboundMessage(
                sender=sender,
                recipients=[OutboundRecipient(target) for target in targets],
                smtputf8=envelope.smtputf8,
                eight_bit=envelope.eight_bit,
                smtp_id=plan.origin.id,
                require_tls=envelope.require_tls,
            )
            made.append(GeneratedMessage(sealed, outbound))
            log.info(
                "delivery id=%s: forwarded through %s to %s, sender <%s>%s",
                plan.origin.id or "-",
                domain,
                ", ".join(f"<{t}>" for t in targets),
                sender,
                " ARC-sealed" if sealed is not text else "",
            )
        return made

    async def _sealed(self, data: bytes, domain: str, plan: DeliveryPlan) -> bytes:
        """`data` with our ARC set on top, when the domain (or a parent of it) has DKIM keys."""
        keys = [k for k in await self.store.dkim_keys(domain) if k.state == "active"]
        if not keys:
            return data
        from postoffice.mailauth.arc_seal import arc_seal_async, sealing_key  # dkimpy: loaded when used

        key = sealing_key(keys)
        if key is None:
            return data
        value = plan.authentication_results
        results = value.split(";", 1)[1].strip() if ";" in value else "none"
        seal = await arc_seal_async(
            data, key=key, authserv_id=self.hostname, results=results, chain=plan.arc_chain
        )
        return seal + data if seal else data
