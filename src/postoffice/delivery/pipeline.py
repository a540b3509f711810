"""The one local-delivery pipeline: recipients -> per-recipient plan -> stages -> one store transaction
(docs/decisions/0040).

Implementation notes
- Every path that adds mail to mailboxes from outside goes through `DeliveryPipeline`: port 25, submission
  (local copies and the queue entry for remote recipients), relaying for `relay_networks`, and the queue's
  local deliveries (DSNs and queued mail for our own users). IMAP APPEND is not a delivery (the user puts a
  message where they choose; no stage may refile or reject it) and stays a store call; so will the
  webmail's Sent copy.
- `resolve` is the recipient policy every caller shares: an address of ours that reaches accounts is a
  local recipient, an unknown one is refused (550 5.1.1), one in a domain we do not serve is a remote
  recipient where the caller may relay and refused otherwise (554 5.7.1, never an open relay).
- `plan` builds the initial plan (`postoffice.delivery.plan`) and runs the stages in order; `commit` writes
  the plan with ONE `MailStore.commit_delivery` call, so in one transaction: every kept copy with its own
  mailbox, flags and keywords, the queue entry for the remote recipients, a DSN for refused recipients,
  and (for the queue) the results of the queued message it completes. A stage that raises fails the whole
  delivery (`DeliveryError`, temporary: nothing is stored); so does a store error.
- Header fields a stage adds for one recipient make different bytes for that recipient: the pipeline makes
  one text per distinct prefix (the prefix, then the message; its parse derived from the message's when
  `message.parser.with_prefix` can, else parsed again, in a thread when large) and the
  store keeps one content per text, shared by the copies that name it. The copies of recipients without
  such fields share the message as received, as before; no text is made when no stage adds a field.
- Refusals after the message was received (SMTP has one reply after DATA; docs/decisions/0040):
  a temporary refusal of any copy defers the whole delivery (that refusal is the reply, nothing is stored,
  the client or the queue tries every recipient again later, so nobody gets a copy twice); when every
  recipient was refused permanently the first refusal is the reply and nothing is stored; otherwise the
  message is accepted and the permanently refused recipients are reported in a DSN to the sender, queued in
  the same transaction (not for the null sender, not when NOTIFY excludes FAILURE), as Postfix does.
  Discarded copies are accepted silently (RFC 5228 section 4.4).
- Storage quotas (`postoffice.delivery.quota`, docs/decisions/0053) are the plan's last step, after every
  stage, in every pipeline: a copy its account's quota refuses is rejected like a stage's rejection (452
  4.2.2, or 552 5.2.2 for a message larger than the whole quota); the server's own DSNs are exempt.
  `room_for` gives SMTP the same answer at RCPT.
- The DSNs the pipeline and the queue runner write themselves go through `sign_generated` before they are
  queued: DKIM-signed like submitted mail (docs/decisions/0056).
- Forwarding (docs/decisions/0059): an address whose aliases lead outside resolves to a local recipient with
  `forwards`; the commit queues the forwarded copies (`delivery.forwarding`: SRS sender, ARC seal) in the
  same transaction; a forward that would continue a mail loop is not made, and reported like a recipient
  refused after DATA (554 5.4.6). An SRS address of ours (a bounce of something we forwarded) resolves to
  a forward to the original sender, for the null sender only (550 5.7.1 otherwise) and only with a valid,
  recent hash.
- With no stages the pipeline adds a few small objects per message to the SMTP hot path, and a lookup of the
  recipients' quotas in memory (no I/O for accounts without one).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, NamedTuple, cast

from postoffice.delivery import srs
from postoffice.delivery.forwarding import Forwarder, looping_forwards
from postoffice.delivery.plan import (
    REFUSED,
    DeliveryPlan,
    Envelope,
    Message,
    Origin,
    Recipient,
    RecipientPlan,
    Refusal,
    Rewrite,
    initial_plan,
)
from postoffice.delivery.quota import apply_quotas, recipient_room
from postoffice.delivery.stages import SignsGenerated, Stage, build_stages
from postoffice.message import PARSE_INLINE_LIMIT, parse_message
from postoffice.message.parser import with_prefix
from postoffice.smtp import dsn as dsn_mod
from postoffice.store import (
    DeliveredCopy,
    Delivery,
    GeneratedMessage,
    MailStore,
    MessageText,
    NewCopy,
    OutboundMessage,
    OutboundRecipient,
    QueuedMessage,
    QueueUpdate,
    StoreError,
)

if TYPE_CHECKING:
    from postoffice.net.service import ServiceContext

log = logging.getLogger("postoffice.delivery")

#: A DSN about refused recipients returns the whole message (RET=FULL) only up to this size; else its header.
DSN_FULL_LIMIT = 1024 * 1024

UNKNOWN = Refusal(550, "5.1.1", "Recipient address rejected: no such user here", "unknown")
SRS_BOUNCES_ONLY = Refusal(550, "5.7.1", "This address takes only delivery status notifications", "srs")
RELAY_DENIED = Refusal(554, "5.7.1", "Relay access denied", "relay")
#: A forward not made because the message has passed too many hosts (RFC 3463 5.4.6: routing loop detected).
MAIL_LOOP = Refusal(
    554, "5.4.6", "Mail loop: the message has passed too many hosts to be forwarded again", "loop"
)


class DeliveryError(Exception):
    """A stage failed: the delivery as a whole failed temporarily and stored nothing."""


class DeliveryOutcome(NamedTuple):
    """What a delivery did. `refusal`: nothing was stored, and this is the answer for the whole message
    (every recipient refused, or one refused temporarily). Otherwise the copies, the id of the queued
    message for remote recipients, and how many refused recipients a DSN queued with it reports."""

    refusal: Refusal | None = None
    copies: Sequence[DeliveredCopy] = ()
    queue_id: int | None = None
    reported: int = 0
    recorded: QueuedMessage | None = None


class DeliveryPipeline:
    """Resolve, plan, run the stages, commit (see the module notes). One per server, shared by every SMTP
    session and the queue runner."""

    def __init__(
        self,
        store: MailStore,
        stages: Sequence[Stage] = (),
        *,
        hostname: str,
        clock: Callable[[], float] = time.time,
        forwarder: Forwarder | None = None,
    ) -> None:
        self.store = store
        self.stages = tuple(stages)
        self.hostname = hostname
        self.clock = clock
        self.forwarder = forwarder or Forwarder(store, hostname, clock=clock)

    async def resolve(
        self,
        address: str,
        *,
        relay: bool,
        orcpt: str | None = None,
        notify: str | None = None,
        sender: str | None = None,
    ) -> Recipient | Refusal:
        """The recipient `address` as this server delivers it, or why not (the module notes). `sender`:
        the envelope sender, when known (an SRS address of ours takes only the null sender's mail). Store
        errors propagate (a temporary failure for the caller)."""
        resolution = await self.store.resolve_recipient(address)
        if resolution.status == "foreign":
            return Recipient(address, (), orcpt, notify) if relay else RELAY_DENIED
        local = address.rpartition("@")[0]
        if srs.is_srs(local):  # a bounce of a message we forwarded: to its original sender (decision 0059)
            if sender:
                return SRS_BOUNCES_ONLY
            secret = await self.store.server_secret("srs")
            try:
                original = srs.reverse(local, secret, now=self.clock())
                first = original.rpartition("@")[0]
                if srs.is_srs(first) and (await self.store.resolve_recipient(original)).status != "foreign":
                    # an SRS1 address leading to an SRS0 address of ours (we forwarded it first): on to its
                    # sender at once, not through the queue to ourselves
                    original = srs.reverse(first, secret, now=self.clock())
            except srs.SrsError:
                return UNKNOWN
            return Recipient(address, (), orcpt, notify, forwards=(original,))
        if resolution.status != "local" or not (resolution.account_ids or resolution.remote):
            return UNKNOWN
        forwards = tuple(resolution.remote)
        return Recipient(address, tuple(resolution.account_ids), orcpt, notify, forwards)

    async def plan(
        self, message: Message, envelope: Envelope, recipients: Sequence[Recipient], origin: Origin
    ) -> DeliveryPlan:
        """The initial plan, amended by every stage in order, then by the storage quotas. DeliveryError when
        a stage fails, or the quotas cannot be read."""
        plan = initial_plan(envelope, origin, recipients)
        for stage in self.stages:
            try:
                await stage.run(plan.message or message, plan)
            except Exception as exc:
                log.error("delivery id=%s: stage %s failed", origin.id or "-", stage.name, exc_info=exc)
                raise DeliveryError(f"delivery stage {stage.name} failed: {exc}") from exc
        try:
            await apply_quotas(self.store, plan.message or message, plan)
        except StoreError as exc:
            log.error("delivery id=%s: reading the storage quotas failed: %s", origin.id or "-", exc)
            raise DeliveryError(f"reading the storage quotas failed: {exc}") from exc
        return plan

    def sender_known(self, kind: str, client_ip: str | None, helo: str | None, sender: str) -> None:
        """Tell the stages a transaction's sender at MAIL, before its message arrives: a stage with a
        `sender_known` method may start work that needs only these (the authentication stage's SPF and
        iprev, RFC 7208 section 2.4), so that it runs while the client sends DATA."""
        for stage in self.stages:
            early = getattr(stage, "sender_known", None)
            if early is not None:
                early(kind, client_ip, helo, sender)

    async def close(self) -> None:
        """At shutdown, after the listeners: each stage that holds something (`aclose`, else `close`)
        releases it (report counts are written, worker processes end)."""
        for stage in self.stages:
            aclose = getattr(stage, "aclose", None)
            close = getattr(stage, "close", None)
            try:
                if aclose is not None:
                    await aclose()
                elif close is not None:
                    close()
            except Exception:
                log.exception("delivery: stage %s did not close cleanly", getattr(stage, "name", stage))

    async def sign_generated(self, data: bytes) -> bytes:
        """A message this server wrote itself (a DSN), as it is to be queued: finished by the stages that
        handle such messages (`stages.SignsGenerated`: DKIM signing), in order. Never raises."""
        for stage in self.stages:
            if isinstance(stage, SignsGenerated):
                data = await stage.sign_generated(data)
        return data

    async def room_for(self, recipient: Recipient, size: int = 0) -> Refusal | None:
        """The storage quota's early answer for a resolved recipient and a message of about `size` octets
        (SMTP: at RCPT, with the declared SIZE; `delivery.quota.recipient_room`); the end of data decides
        again. Store errors propagate."""
        return await recipient_room(self.store, recipient, size)

    async def deliver(
        self, message: Message, envelope: Envelope, recipients: Sequence[Recipient], origin: Origin
    ) -> DeliveryOutcome:
        """Plan, run the stages and commit in one store transaction (the module notes say what refusals
        do). Durable when it returns without a refusal. DeliveryError, StoreError (StoreFull: no room),
        OSError (reading the message) when it fails: then nothing is stored."""
        plan = await self.plan(message, envelope, recipients, origin)
        message = plan.message or message  # as the stages left it
        looped = await looping_forwards(message, plan)
        refused = plan.refused()
        generated: tuple[GeneratedMessage, ...] = ()
        reported = 0
        if refused or looped:
            temporary = plan.temporary_refusal()
            if temporary is not None:
                return DeliveryOutcome(temporary)
            if len(refused) == len(plan.recipients) and not plan.outbound and not plan.forwards:
                return DeliveryOutcome((refused[0].refusal or REFUSED) if refused else MAIL_LOOP)
            failures = [(r.addresses[0], r.refusal or REFUSED) for r in refused]
            failures.extend((via, MAIL_LOOP) for via in dict.fromkeys(f.via for f in looped))
            report = await self._refusal_report(message, plan, failures)
            if report is not None:
                generated, reported = (report[0],), report[1]
        result = await self.commit(message, plan, generated=generated)
        return DeliveryOutcome(None, result.copies, result.queue_id, reported)

    async def commit(
        self,
        message: Message,
        plan: DeliveryPlan,
        *,
        generated: Sequence[GeneratedMessage] = (),
        record: QueueUpdate | None = None,
    ) -> DeliveryOutcome:
        """Write the plan (every kept copy, the queue entry for `plan.outbound`), `generated` messages and
        `record` with one `MailStore.commit_delivery` call: one transaction, all or nothing."""
        message = plan.message or message
        texts = [MessageText(message.source, message.parsed)]
        by_prefix: dict[Rewrite, int] = {}

        async def text_of(rewrite: Rewrite) -> int:
            found = by_prefix.get(rewrite)
            if found is None:
                found = by_prefix[rewrite] = len(texts)
                texts.append(await _prefixed(message, rewrite.head, rewrite.replaces))
            return found

        copies: list[NewCopy] = []
        for recipient in plan.recipients:
            if recipient.action != "deliver":
                continue
            text = 0
            if recipient.rewrite is not None:
                text = await text_of(recipient.rewrite)
            elif recipient.header_fields:
                text = await text_of(Rewrite(recipient.prefix, 0))
            copies.append(_copy(recipient, text))
            for t in recipient.also:
                own = text if t.rewrite is None else await text_of(t.rewrite)
                flags = tuple(sorted(t.flags))
                copies.append(
                    NewCopy(recipient.account_id, own, t.mailbox, t.special_use, flags, or_inbox=True)
                )
        for sent in plan.sent_copies:  # RFC 8580: what Sieve sent, into the account's mailbox
            texts.append(MessageText(io.BytesIO(sent.data), parse_message(io.BytesIO(sent.data))))
            copies.append(
                NewCopy(
                    sent.account_id,
                    len(texts) - 1,
                    sent.target.mailbox,
                    sent.target.special_use,
                    tuple(sorted(sent.target.flags)),
                    or_inbox=True,
                )
            )
        outbound = None
        if plan.outbound:
            envelope, origin = plan.envelope, plan.origin
            outbound = OutboundMessage(
                sender=envelope.sender,
                recipients=list(plan.outbound),
                envid=envelope.envid,
                ret=envelope.ret,
                account_id=origin.account.id if origin.account is not None else None,
                smtputf8=envelope.smtputf8,
                eight_bit=envelope.eight_bit,
                smtp_id=origin.id,
                require_tls=envelope.require_tls,
            )
        forwards = await self.forwarder.messages(message, plan)
        generated = [
            *generated,
            *[GeneratedMessage(await self.sign_generated(n.data), n.outbound) for n in plan.notifications],
        ]
        vacations = [  # signed as the server's other messages are (docs/decisions/0056)
            reply._replace(
                message=GeneratedMessage(
                    await self.sign_generated(reply.message.data), reply.message.outbound
                )
            )
            for reply in plan.vacations
        ]
        result = await self.store.commit_delivery(
            Delivery(
                texts,
                copies,
                outbound,
                generated,
                record,
                forwards=forwards,
                vacations=vacations,
                notices=plan.notices,
                duplicates=plan.duplicates,
            )
        )
        return DeliveryOutcome(None, result.copies, result.queue_id, recorded=result.recorded)

    async def _refusal_report(
        self, message: Message, plan: DeliveryPlan, refused: list[tuple[str, Refusal]]
    ) -> tuple[GeneratedMessage, int] | None:
        """A DSN to the sender about the recipients refused permanently (address, refusal), and how many it
        reports; None when nobody is to be told (the null sender, NOTIFY without FAILURE)."""
        envelope = plan.envelope
        if not envelope.sender:
            return None
        now = self.clock()
        params = {r.address: r for r in plan.envelope_recipients}
        reports: list[dsn_mod.DsnRecipient] = []
        for address, refusal in refused:
            rcpt = params.get(address)
            log.info(
                "delivery id=%s from=<%s> to=<%s> refused: %d %s %s",
                plan.origin.id or "-",
                envelope.sender,
                address,
                refusal.code,
                refusal.enhanced,
                refusal.text,
            )
            if rcpt is not None and not _wants_failure(rcpt.notify):
                continue
            reports.append(
                dsn_mod.DsnRecipient(
                    final_recipient=address,
                    original_recipient=rcpt.orcpt if rcpt is not None else None,
                    action="failed",
                    status=refusal.enhanced,
                    diagnostic_code=f"smtp; {refusal.code} {refusal.enhanced} {refusal.text}",
                    remote_mta=self.hostname,
                    last_attempt_date=now,
                )
            )
        if not reports:
            return None
        full = (envelope.ret or "").upper() == "FULL" and message.parsed.size <= DSN_FULL_LIMIT
        original = await _original(message, full=full)
        data = dsn_mod.build_dsn(
            reporting_mta=self.hostname,
            original_sender=envelope.sender,
            original=original,
            envid=envelope.envid,
            ret=envelope.ret,
            arrival_date=now,
            recipients=reports,
            now=now,
            message_id_domain=self.hostname,
            smtputf8=envelope.smtputf8,
        )
        data = await self.sign_generated(data)
        outbound = OutboundMessage(
            sender="",  # RFC 3461 6.2 / RFC 5321 4.5.5: a DSN comes from the null sender
            recipients=[OutboundRecipient(envelope.sender, notify="NEVER")],
            smtputf8=not envelope.sender.isascii(),
            eight_bit=not data.isascii(),
        )
        return GeneratedMessage(data, outbound), len(reports)


def shared_pipeline(context: ServiceContext) -> DeliveryPipeline:
    """The server's one pipeline, with the stages its configuration switches on (made on first use; every
    listener and the queue runner share it)."""

    def make() -> DeliveryPipeline:
        config = context.config
        stages = build_stages(config, context.store)
        hostname = config.server.hostname
        forwarder = Forwarder(
            context.store, hostname, srs_on=config.mailauth.srs, seal=config.mailauth.arc_seal
        )
        return DeliveryPipeline(context.store, stages, hostname=hostname, forwarder=forwarder)

    return context.shared("delivery.pipeline", make)


def _copy(recipient: RecipientPlan, text: int) -> NewCopy:
    if recipient.mailbox == "INBOX" and recipient.special_use is None and not recipient.flags:
        return NewCopy(recipient.account_id, text)  # what no stage changed: the common case, kept cheap
    # a target a stage chose falls back to INBOX when it does not exist (RFC 5228 section 4.1)
    chosen = recipient.special_use is not None or recipient.mailbox.upper() != "INBOX"
    return NewCopy(
        recipient.account_id,
        text,
        recipient.mailbox,
        recipient.special_use,
        tuple(sorted(recipient.flags)),
        or_inbox=chosen,
    )


def _wants_failure(notify: str | None) -> bool:
    """RFC 3461 section 4.1: failures are reported unless NOTIFY names other conditions only, or NEVER."""
    if not notify:
        return True
    return "FAILURE" in {word.strip().upper() for word in notify.split(",")}


async def _prefixed(message: Message, prefix: bytes, replaces: int = 0) -> MessageText:
    """The text of a copy with header fields of its own: `prefix`, then the message (without its first
    `replaces` octets: a header a Sieve script rewrote), and its parse."""
    prefixed = PrefixedSource(prefix, message.source, message.parsed.size - replaces, replaces)
    source = cast(IO[bytes], prefixed)  # a binary file object: read and seek are all that is used
    # the common case (fields on top, nothing replaced): the parse derived, no second parse
    derived = with_prefix(message.parsed, prefix) if not replaces else None
    if derived is not None:
        return MessageText(source, derived)
    if prefixed.size <= PARSE_INLINE_LIMIT:
        parsed = parse_message(source)
    else:
        parsed = await asyncio.to_thread(parse_message, source)
    return MessageText(source, parsed)


async def _original(message: Message, *, full: bool) -> bytes:
    """The message (`full`) or its header section, for a DSN."""

    def read() -> bytes:
        source = message.source
        source.seek(0)
        if full:
            return source.read(message.parsed.size)
        head = bytearray()
        while len(head) <= DSN_FULL_LIMIT:
            chunk = source.read(64 * 1024)
            if not chunk:
                break
            head += chunk
            end = head.find(b"\r\n\r\n")
            if end >= 0:
                return bytes(head[: end + 4])
        return bytes(head)

    if message.parsed.size <= PARSE_INLINE_LIMIT:
        return read()
    return await asyncio.to_thread(read)


class PrefixedSource(io.RawIOBase):
    """`prefix` followed by `size` octets of `base` from its octet `skip` on, read-only and seekable, without
    copying `base` (the spool may be large). Each read seeks `base` first: other readers may move it between
    reads. Reads return as much as asked unless the end is reached (the store reads sizes exactly)."""

    def __init__(self, prefix: bytes, base: IO[bytes], size: int, skip: int = 0) -> None:
        super().__init__()
        self._prefix = prefix
        self._base = base
        self._skip = skip
        self.size = len(prefix) + size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._pos + offset
        elif whence == io.SEEK_END:
            position = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise ValueError("negative seek position")
        self._pos = position
        return position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), max(self.size - self._pos, 0))
        done = 0
        head = len(self._prefix)
        if self._pos < head and wanted:
            part = self._prefix[self._pos : self._pos + wanted]
            view[: len(part)] = part
            done = len(part)
        if done < wanted:
            base = self._base
            base.seek(self._pos + done - head + self._skip)
            while done < wanted:
                chunk = base.read(wanted - done)
                if not chunk:
                    break
                view[done : done + len(chunk)] = chunk
                done += len(chunk)
        self._pos += done
        return done
