"""The outbound queue runner: delivers what `MailStore.submit` / `enqueue` queued, retries, bounces.

Implementation notes (docs/decisions/0017 the queue, 0018 delivery, 0019 this runner)
- One task on the event loop. It wakes when something is queued (`MailStore.subscribe_queue`), when a
  delivery finishes, and at least every POLL_INTERVAL seconds (at most one pass per PASS_GAP), asks the store
  for the messages that are due and not in flight (`queue_due`), groups their due
  recipients by domain and starts one delivery task per domain and batch (one SMTP connection carries every
  message of the batch, RFC 5321 section 5's "one connection per destination"), at most `max_deliveries` at
  once and `max_per_destination` per domain. A message in flight is not started again.
- Routing: a recipient in a domain we serve is delivered to its mailbox through the delivery pipeline
  (`postoffice.delivery`: bounces to our own users; the copies commit with the results); every other
  domain goes to its MX hosts (`smtp.mx`), or all of them to the smarthost.
- Results (`queue_record`, one transaction per message and batch): 2xx delivered; 5xx (and a permanent DNS
  answer: null MX, no such domain) failed; 4xx and connection failures stay pending with the next attempt
  after first_retry * 2^(attempts - 1), at most max_retry_interval; a recipient still failing temporarily
  after max_age expires (status 4.4.7).
- DSNs (RFC 3461, RFC 3464 via `smtp.dsn`): never for a message from the null sender (RFC 5321 4.5.5); on
  failure or expiry unless NOTIFY=NEVER or NOTIFY without FAILURE; one "delayed" notice after
  delay_warning_after when NOTIFY allows DELAY (or has no NOTIFY); a success notice for NOTIFY=SUCCESS when
  the remote did not take the DSN request over itself ("relayed" then, RFC 3461 6.2.3.1, else "delivered"
  for local delivery). The DSN is queued in the same transaction as the result that caused it, so a crash
  neither loses nor duplicates it; it is addressed from the null sender, and DKIM-signed by the pipeline's
  `sign_generated` when the host name is in one of our domains (docs/decisions/0056).
- Stopping cancels deliveries in flight; their recipients stay pending and are tried again after a restart.
  A remote server that accepted a message whose result was not recorded yet gets it again then (RFC 5321
  section 6.1 accepts such duplicates; nothing acknowledged is lost).
- Logs: one line per recipient and attempt, with the queue id and the id of the SMTP transaction that
  submitted the message (`smtp_id`, the `id=` of the submission's log line); the queue's length and oldest
  age every STATS_INTERVAL seconds while it is not empty.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import io
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from postoffice.delivery.forwarding import looping_forwards
from postoffice.delivery.pipeline import MAIL_LOOP, DeliveryError, DeliveryPipeline
from postoffice.delivery.plan import Envelope, Message, Origin, Recipient, Refusal, initial_plan
from postoffice.mailauth.reporting import ReportCounter
from postoffice.mailauth.transport import Destination, TransportSecurity, build_transport, dane_enabled
from postoffice.message import PARSE_INLINE_LIMIT, parse_message
from postoffice.message.headers import iter_fields
from postoffice.net.dns import DnsResolver
from postoffice.plural import counted
from postoffice.smtp import dsn as dsn_mod
from postoffice.smtp.delivery import (
    HostTls,
    OutcomeStatus,
    OutgoingMessage,
    OutgoingRecipient,
    RecipientOutcome,
    TlsSession,
    deliver,
    outcomes_for_dns_error,
)
from postoffice.smtp.mx import DnsError, Host, MxResolver
from postoffice.smtp.protocol import parse_notify, parse_orcpt
from postoffice.smtp.settings import QueueConfig
from postoffice.smtp.xtext import decode_xtext
from postoffice.store import MailStore, NotFound
from postoffice.store.api import (
    GeneratedMessage,
    OutboundMessage,
    OutboundRecipient,
    QueuedMessage,
    QueuedRecipient,
    QueueUpdate,
    RecipientResult,
)

if TYPE_CHECKING:
    from postoffice.config import Config

log = logging.getLogger("postoffice.queue")

#: Seconds between looks at the queue when nothing wakes the runner.
POLL_INTERVAL = 5.0
#: How long stop() waits for the runner and its deliveries to end once cancelled.
STOP_TIMEOUT = 10.0
#: Seconds between two passes at least (wake-ups in between are folded into the next pass).
PASS_GAP = 0.05
#: Seconds between log lines about the queue's length and age.
STATS_INTERVAL = 300.0
#: Messages asked from the store per look.
DUE_BATCH = 500
#: Messages sent over one connection at most.
MESSAGES_PER_CONNECTION = 50
#: A DSN includes the whole original (RET=FULL) only up to this size; the header otherwise.
DSN_FULL_LIMIT = 1024 * 1024
#: The result of a local delivery whose stages failed (the delivery pipeline logs why).
STAGE_FAILED = Refusal(451, "4.3.0", "Local delivery failed, will try again", "temporary")


@dataclass
class _Item:
    message: QueuedMessage
    recipients: list[QueuedRecipient]


@dataclass
class _Route:
    """How one group of messages goes: the hosts, port and TLS of the attempt, and what refuses it."""

    hosts: list[Host] = field(default_factory=list)
    port: int = 25
    tls: str = "opportunistic"
    context: ssl.SSLContext | None = None
    auth: tuple[str, str] | None = None
    host_tls: Callable[[Host], HostTls | None] | None = None
    on_tls: Callable[[TlsSession], None] | None = None
    refusal: tuple[int, str, str] | None = None

    def with_destination(self, destination: Destination) -> _Route:
        return dataclasses.replace(
            self, hosts=destination.hosts, host_tls=destination.host_tls, refusal=destination.refusal
        )

    def with_host_tls(self, host_tls: Callable[[Host], HostTls | None]) -> _Route:
        return dataclasses.replace(self, host_tls=host_tls)

    def refused(self, refusal: tuple[int, str, str]) -> _Route:
        return dataclasses.replace(self, refusal=refusal)


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _notify(recipient: QueuedRecipient) -> frozenset[str] | None:
    if not recipient.notify:
        return None
    try:
        return parse_notify(recipient.notify)
    except ValueError:
        return None


def _wants(recipient: QueuedRecipient, what: str) -> bool:
    """RFC 3461 4.1: without NOTIFY, failures (and, at our choice, delays) are reported; NEVER nothing."""
    notify = _notify(recipient)
    if notify is None:
        return what in ("FAILURE", "DELAY")
    return what in notify


class QueueRunner:
    def __init__(
        self,
        store: MailStore,
        *,
        hostname: str,
        config: QueueConfig,
        resolver: MxResolver | None = None,
        clock: Callable[[], float] = time.time,
        pipeline: DeliveryPipeline | None = None,
        transport: TransportSecurity | None = None,
    ) -> None:
        self.store = store
        self.transport = transport
        self.hostname = hostname
        self.pipeline = pipeline or DeliveryPipeline(store, hostname=hostname)
        self.config = config
        self.resolver = resolver or MxResolver(
            list(config.nameservers) or None, port=config.dns_port, local_names=[hostname]
        )
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._in_flight: set[tuple[int, str]] = set()
        self._slots = asyncio.Semaphore(config.max_deliveries)
        self._per_domain: dict[str, asyncio.Semaphore] = collections.defaultdict(
            lambda: asyncio.Semaphore(config.max_per_destination)
        )
        self._unsubscribe: Callable[[], None] | None = None
        self._last_stats = 0.0
        # (message, domain) -> when its delivery finished: a pass whose read of the queue began before that
        # must not start it again (the read may still show it pending)
        self._finished: dict[tuple[int, str], float] = {}

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._unsubscribe = self.store.subscribe_queue(self.wake)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="queue-runner")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        try:
            await self._stop()
        finally:
            if self.transport is not None and self.transport.counter is not None:
                await self.transport.counter.stop()  # the TLS report counts reach the store

    async def _stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = [t for t in (self._task, *self._jobs) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task that does not end when cancelled must not keep the server from stopping.
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            if pending:
                log.warning("queue runner: %s did not end when cancelled", counted(len(pending), "task"))
        self._task = None

    async def idle(self) -> None:
        """Wait until no delivery is in flight (tests and benchmarks)."""
        while self._jobs:
            await asyncio.gather(*list(self._jobs), return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_once()
                await self._log_stats()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("queue runner: a pass failed; trying again shortly")
            # asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for loses a cancellation that
            # arrives as the event is set (a delivery ending as the server stops), and stop() then waits
            # for ever (docs/decisions/0045).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_INTERVAL):
                    await self._wake.wait()
            # Wake-ups come with every submission: one pass per PASS_GAP at most, so a busy submission
            # listener does not make the runner read the queue for each message.
            await asyncio.sleep(PASS_GAP)

    async def _log_stats(self) -> None:
        now = self.clock()
        if now - self._last_stats < STATS_INTERVAL:
            return
        self._last_stats = now
        stats = await self.store.queue_stats()
        if stats.messages:
            oldest = now - (stats.oldest_created or now)
            log.info(
                "queue: %s, %s pending, oldest %.0f s",
                counted(stats.messages, "message"),
                counted(stats.recipients_pending, "recipient"),
                oldest,
            )

    # -- one pass --------------------------------------------------------------------------------------------
    async def run_once(self) -> int:
        """Start deliveries for everything due now; returns how many delivery tasks were started."""
        now = self.clock()
        read_started = time.monotonic()
        in_flight = {message_id for message_id, _ in self._in_flight}
        due = await self.store.queue_due(now, DUE_BATCH, exclude=in_flight)
        self._finished = {k: t for k, t in self._finished.items() if t > read_started - 60.0}
        by_domain: dict[str, list[_Item]] = collections.defaultdict(list)
        for message in due:
            groups: dict[str, list[QueuedRecipient]] = collections.defaultdict(list)
            for recipient in message.pending:
                if recipient.next_attempt <= now:
                    groups[_domain(recipient.address)].append(recipient)
            for domain, recipients in groups.items():
                key = (message.id, domain)
                if key in self._in_flight or self._finished.get(key, 0.0) > read_started:
                    continue  # in flight, or finished after this read began: the read is out of date
                self._in_flight.add((message.id, domain))
                by_domain[domain].append(_Item(message, recipients))
        started = 0
        for domain, items in by_domain.items():
            for start in range(0, len(items), MESSAGES_PER_CONNECTION):
                batch = items[start : start + MESSAGES_PER_CONNECTION]
                task = asyncio.get_running_loop().create_task(self._deliver_batch(domain, batch))
                self._jobs.add(task)
                task.add_done_callback(self._jobs.discard)
                started += 1
        return started

    async def _deliver_batch(self, domain: str, items: list[_Item]) -> None:
        try:
            async with self._slots, self._per_domain[domain]:
                resolution = await self.store.resolve_recipient(items[0].recipients[0].address)
                if resolution.status != "foreign":
                    for item in items:
                        await self._deliver_locally(item)
                else:
                    await self._deliver_remote(domain, items)
        except asyncio.CancelledError:
            raise
        except NotFound as exc:  # deleted meanwhile (`postoffice queue delete`)
            log.info("queue: delivery to %s: %s", domain, exc)
        except Exception:
            log.exception("queue: delivery to %s failed unexpectedly; the recipients stay pending", domain)
        finally:
            finished = time.monotonic()
            for item in items:
                self._in_flight.discard((item.message.id, domain))
                self._finished[(item.message.id, domain)] = finished
            self.wake()  # more may be due (a pass takes at most DUE_BATCH messages)

    async def _deliver_remote(self, domain: str, items: list[_Item]) -> None:
        """One attempt for `items`, all to `domain`: the route (smarthost, or the MX hosts with the
        transport security of `self.transport`), then one connection per group of messages that need the
        same TLS: the usual ones, those whose sender relaxed the recipient's policy (TLS-Required: No,
        RFC 8689 section 3) and those that require authenticated TLS (REQUIRETLS)."""
        cfg = self.config
        route = _Route(port=cfg.delivery_port, tls=cfg.tls)
        destination: Destination | None = None
        try:
            if cfg.smarthost:
                route.hosts = [Host(cfg.smarthost, 0, await self._smarthost_addresses())]
                route.port, route.tls = (
                    cfg.smarthost_port,
                    ("none" if cfg.smarthost_tls == "none" else "required"),
                )
                if cfg.smarthost_username:
                    route.auth = (cfg.smarthost_username, cfg.smarthost_password)
                if cfg.smarthost_ca_file:  # verified against these CAs instead of the system's
                    route.context = await asyncio.to_thread(
                        ssl.create_default_context, cafile=cfg.smarthost_ca_file
                    )
            else:
                route.hosts = await self.resolver.destinations(domain)
                if self.transport is not None and route.tls == "opportunistic":
                    destination = await self.transport.destination(domain, route.hosts)
                    route.on_tls = self.transport.reporter(domain, destination)
        except DnsError as error:
            for item in items:
                await self._record(item, outcomes_for_dns_error(self._outgoing(item), error))
            return
        strict = [item for item in items if item.message.require_tls]
        usual = [item for item in items if not item.message.require_tls]
        relaxed: list[_Item] = []
        if destination is not None and destination.enforced:
            relaxed = [item for item in usual if await self._tls_optional(item)]
            usual = [item for item in usual if item not in relaxed]
        if usual:
            if destination is None:
                await self._send(usual, route)
            else:
                await self._send(usual, route.with_destination(destination))
        if relaxed:  # the MX hosts as DNS gave them, opportunistic TLS, still reported
            await self._send(relaxed, route)
        if strict:
            await self._send(
                strict, await self._strict_route(route, destination), required_extension="REQUIRETLS"
            )

    async def _strict_route(self, route: _Route, destination: Destination | None) -> _Route:
        """RFC 8689 section 4.2.1 for REQUIRETLS messages: only hosts whose name is vouched for (DNSSEC or
        an MTA-STS policy naming them) over TLS with an authenticated certificate (DANE or WebPKI)."""
        if route.tls == "none":
            return route.refused((550, "5.7.30", "REQUIRETLS support required, and TLS is switched off here"))
        if route.tls == "required":  # the smarthost, or every host, verified already
            return route
        if self.transport is None or destination is None:
            return route.with_host_tls(lambda host: HostTls(True))  # verified against the host name
        return route.with_destination(await self.transport.strict(destination))

    async def _send(self, items: list[_Item], route: _Route, required_extension: str | None = None) -> None:
        cfg = self.config
        messages = [self._outgoing(item) for item in items]
        if route.refusal is not None:
            code, enhanced, text = route.refusal
            status: OutcomeStatus = "permanent" if code >= 500 else "temporary"
            outcomes = [
                [RecipientOutcome(r.address, status, code, enhanced, text, None) for r in m.recipients]
                for m in messages
            ]
        else:
            outcomes = await deliver(
                route.hosts,
                messages,
                helo_name=self.hostname,
                port=route.port,
                tls=route.tls,  # type: ignore[arg-type]
                tls_context=route.context,
                connect_timeout=cfg.connect_timeout,
                command_timeout=cfg.command_timeout,
                data_timeout=max(cfg.command_timeout, 600.0),
                auth=route.auth,
                host_tls=route.host_tls,
                on_tls=route.on_tls,
                required_extension=required_extension,
            )
        for item, results in zip(items, outcomes, strict=True):
            await self._record(item, results)

    async def _tls_optional(self, item: _Item) -> bool:
        """The message has "TLS-Required: No" (RFC 8689 section 3): its sender asks that the recipient's
        MTA-STS or DANE policy not stop it (TLS is still used when offered). Ignored with REQUIRETLS."""
        try:
            head = await self._head(item.message.id)
        except NotFound:
            return False
        return any(
            name.lower() == "tls-required" and value.strip().lower() == "no"
            for name, value, _codec in iter_fields(head)
        )

    async def _smarthost_addresses(self) -> list[str]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.config.smarthost, self.config.smarthost_port, proto=6)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    def _outgoing(self, item: _Item) -> OutgoingMessage:
        message = item.message
        store = self.store

        def chunks() -> AsyncIterator[bytes]:
            return store.queue_open(message.id)

        envid = None
        if message.envid:
            with contextlib.suppress(ValueError):
                envid = decode_xtext(message.envid)
        recipients = []
        for r in item.recipients:
            orcpt = None
            if r.orcpt:
                with contextlib.suppress(ValueError):
                    kind, address = parse_orcpt(r.orcpt)
                    orcpt = f"{kind};{address}"
            recipients.append(OutgoingRecipient(r.address, r.notify, orcpt))
        return OutgoingMessage(
            sender=message.sender,
            recipients=recipients,
            data=chunks,
            size=message.size,
            eight_bit=message.eight_bit,
            smtputf8=message.smtputf8,
            envid=envid,
            ret=message.ret,
            require_tls=message.require_tls,
        )

    async def _deliver_locally(self, item: _Item) -> None:
        """Recipients in our own domains (bounces to our users, relayed mail for them), through the delivery
        pipeline: the copies and the results go into one store transaction, so a crash cannot deliver a
        message twice. A stage's permanent refusal fails its recipient (a DSN says why); a temporary one
        leaves every local recipient of the message pending, nothing stored (docs/decisions/0040)."""
        queued = item.message
        data = await self.store.queue_read(queued.id)
        # a message of any size may come back (a bounce with RET=FULL, relayed mail): parse it off the loop
        # unless it is small, as the SMTP glue does
        if len(data) <= PARSE_INLINE_LIMIT:
            parsed = parse_message(io.BytesIO(data))
        else:
            parsed = await asyncio.to_thread(parse_message, io.BytesIO(data))
        message = Message(io.BytesIO(data), parsed)
        local: dict[int, Recipient] = {}
        for recipient in item.recipients:
            resolved = await self.pipeline.resolve(
                recipient.address,
                relay=True,
                orcpt=recipient.orcpt,
                notify=recipient.notify,
                sender=queued.sender,
            )
            if isinstance(resolved, Recipient) and not resolved.remote:
                local[recipient.id] = resolved
        envelope = Envelope(
            queued.sender,
            queued.envid,
            queued.ret,
            smtputf8=queued.smtputf8,
            eight_bit=queued.eight_bit,
            require_tls=queued.require_tls,
        )
        origin = Origin("queue", id=queued.smtp_id)
        try:
            plan = await self.pipeline.plan(message, envelope, list(local.values()), origin)
        except DeliveryError:  # a stage failed: a temporary failure, tried again with the usual backoff
            plan = initial_plan(envelope, origin, [])
            deferred: Refusal | None = STAGE_FAILED
        else:
            deferred = plan.temporary_refusal()
        looped = await looping_forwards(message, plan) if deferred is None else []
        refused = {o.address: o.refusal for o in plan.outcomes() if o.result == "rejected"}
        for forward in looped:  # the address whose forward would loop fails (its local copies are kept)
            refused.setdefault(forward.via, MAIL_LOOP)
        outcomes: list[RecipientOutcome] = []
        for recipient in item.recipients:
            address = recipient.address
            refusal = deferred if recipient.id in local and deferred is not None else refused.get(address)
            if recipient.id not in local:
                outcome = RecipientOutcome(
                    address, "permanent", 550, "5.1.1", "no such user here", self.hostname
                )
            elif refusal is not None:
                outcome = RecipientOutcome(
                    address,
                    "permanent" if refusal.permanent else "temporary",
                    refusal.code,
                    refusal.enhanced,
                    refusal.text,
                    self.hostname,
                )
            else:
                outcome = RecipientOutcome(
                    address, "delivered", 250, "2.0.0", "delivered to mailbox", self.hostname
                )
            outcomes.append(outcome)
        if deferred is not None:  # nothing is stored: every local recipient is tried again later
            await self._record(item, outcomes)
            return
        results, bounces = await self._results(item, outcomes, local=bool(local))
        await self.pipeline.commit(message, plan, generated=bounces, record=QueueUpdate(queued.id, results))

    # -- results and DSNs ------------------------------------------------------------------------------------
    def _next_attempt(self, now: float, attempts: int) -> float:
        cfg = self.config
        doubling: int = 2 ** max(attempts - 1, 0)  # typeshed: int ** int is Any (a negative power is a float)
        return now + min(cfg.first_retry * doubling, cfg.max_retry_interval)

    async def _record(self, item: _Item, outcomes: Sequence[RecipientOutcome]) -> None:
        """Record the results of a remote delivery attempt, with the DSNs they cause, in one transaction."""
        results, bounces = await self._results(item, outcomes, local=False)
        await self.store.queue_record(item.message.id, results, bounces=bounces)

    async def _results(
        self, item: _Item, outcomes: Sequence[RecipientOutcome], *, local: bool
    ) -> tuple[list[RecipientResult], list[GeneratedMessage]]:
        """The queue's results for one attempt at `item` and the DSNs they cause (`local`: delivered to our
        own mailboxes, so a success report says "delivered" rather than "relayed")."""
        cfg = self.config
        message = item.message
        now = self.clock()
        results: list[RecipientResult] = []
        reports: list[dsn_mod.DsnRecipient] = []
        for recipient, outcome in zip(item.recipients, outcomes, strict=True):
            diagnostic = f"smtp; {outcome.code} {outcome.enhanced or ''} {outcome.text}".replace("  ", " ")
            common = {
                "recipient_id": recipient.id,
                "code": outcome.code,
                "enhanced": outcome.enhanced,
                "text": outcome.text,
                "remote_mta": outcome.remote_mta,
                "attempted_at": now,
            }
            status = outcome.status
            if status == "delivered":
                results.append(RecipientResult(status="delivered", **common))  # type: ignore[arg-type]
                if _wants(recipient, "SUCCESS") and not outcome.remote_dsn:
                    action = "delivered" if local else "relayed"
                    reports.append(self._report(recipient, action, "2.0.0", outcome, diagnostic, now))
            elif status == "permanent":
                results.append(RecipientResult(status="failed", **common))  # type: ignore[arg-type]
                if _wants(recipient, "FAILURE"):
                    code = outcome.enhanced or "5.0.0"
                    reports.append(self._report(recipient, "failed", code, outcome, diagnostic, now))
            elif now - message.created >= cfg.max_age:
                results.append(RecipientResult(status="expired", **common))  # type: ignore[arg-type]
                if _wants(recipient, "FAILURE"):
                    reports.append(self._report(recipient, "failed", "4.4.7", outcome, diagnostic, now))
            else:
                warn = (
                    cfg.delay_warning_after > 0
                    and not recipient.delay_warned
                    and now - message.created >= cfg.delay_warning_after
                    and _wants(recipient, "DELAY")
                    and bool(message.sender)
                )
                results.append(
                    RecipientResult(
                        status="pending",
                        next_attempt=self._next_attempt(now, recipient.attempts + 1),
                        delay_warned=True if warn else None,
                        **common,  # type: ignore[arg-type]
                    )
                )
                if warn:
                    report = self._report(
                        recipient, "delayed", outcome.enhanced or "4.0.0", outcome, diagnostic, now
                    )
                    reports.append(report)
            log.info(
                "queue id=%d smtp_id=%s from=<%s> to=<%s> relay=%s result=%s (%s %s)",
                message.id,
                message.smtp_id or "-",
                message.sender,
                recipient.address,
                outcome.remote_mta or "-",
                results[-1].status,
                outcome.code,
                outcome.text,
            )
        bounces: list[GeneratedMessage] = []
        if reports and message.sender:
            bounces.append(await self._dsn(message, reports, now))
        return results, bounces

    def _report(
        self,
        recipient: QueuedRecipient,
        action: str,
        status: str,
        outcome: RecipientOutcome,
        diagnostic: str,
        now: float,
    ) -> dsn_mod.DsnRecipient:
        return dsn_mod.DsnRecipient(
            final_recipient=recipient.address,
            original_recipient=recipient.orcpt,
            action=action,
            status=status,
            diagnostic_code=diagnostic if outcome.code else None,
            remote_mta=outcome.remote_mta,
            last_attempt_date=now,
            will_retry_until=(now + self.config.max_age) if action == "delayed" else None,
        )

    async def _dsn(
        self, message: QueuedMessage, reports: list[dsn_mod.DsnRecipient], now: float
    ) -> GeneratedMessage:
        if message.size <= DSN_FULL_LIMIT:
            original = await self.store.queue_read(message.id)
        else:
            original = await self._head(message.id)
        data = dsn_mod.build_dsn(
            reporting_mta=self.hostname,
            original_sender=message.sender,
            original=original,
            envid=message.envid,
            # RFC 8689 section 5: the notice about a REQUIRETLS message goes without TLS guarantees, so it
            # does not carry the message's content
            ret="HDRS" if message.require_tls else message.ret,
            arrival_date=message.created,
            recipients=reports,
            now=now,
            message_id_domain=self.hostname,
            smtputf8=message.smtputf8,
        )
        data = await self.pipeline.sign_generated(data)  # DKIM, as for submitted mail (decision 0056)
        outbound = OutboundMessage(
            sender="",  # RFC 3461 6.2 / RFC 5321 4.5.5: a DSN comes from the null sender
            recipients=[OutboundRecipient(message.sender, notify="NEVER")],
            smtputf8=not message.sender.isascii(),
            eight_bit=not data.isascii(),
        )
        return GeneratedMessage(data, outbound)

    async def _head(self, queue_id: int) -> bytes:
        """The header of a large queued message (enough for a DSN with RET=HDRS)."""
        head = bytearray()
        async for chunk in self.store.queue_open(queue_id):
            head += chunk
            end = head.find(b"\r\n\r\n")
            if end >= 0:
                return bytes(head[: end + 4])
            if len(head) > DSN_FULL_LIMIT:
                break
        return bytes(head)


def queue_runner(config: Config, store: MailStore, pipeline: DeliveryPipeline) -> QueueRunner:
    """The server's queue runner: MX lookups through a DNSSEC-aware resolver when DANE is on, and the
    transport security of `[queue]` (DANE, MTA-STS, TLS report counts; docs/decisions/0057)."""
    cfg = config.queue
    nameservers = list(cfg.nameservers) or None
    hostname = config.server.hostname
    # one resolver for the MX, TLSA and MTA-STS lookups; DNSSEC-aware when DANE is on
    dns = DnsResolver(nameservers, port=cfg.dns_port, dnssec=dane_enabled(cfg.dane, cfg.nameservers))
    counter = ReportCounter(store) if config.mailauth.send_reports else None
    transport = build_transport(cfg, store, counter, dns)
    return QueueRunner(
        store,
        hostname=hostname,
        config=cfg,
        resolver=MxResolver(local_names=[hostname], resolver=dns),
        pipeline=pipeline,
        transport=transport,
    )
