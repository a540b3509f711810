"""SMTP glue: a connection, the sans-IO protocol core, the spool and the delivery pipeline: inbound mail on
port 25 (RFC 5321) and submission on ports 587 and 465 (RFC 6409, RFC 8314).

Implementation notes
- The protocol core (`postoffice.smtp.protocol`) decides everything about the wire format; this module only
  moves bytes, answers the core's decisions (recipients, end of message) and hands mail to the delivery
  pipeline (`postoffice.delivery`, docs/decisions/0040), which every path that adds mail shares.
- Inbound policy (port 25): recipients are resolved at RCPT time by the pipeline (`DeliveryPipeline.resolve`):
  unknown local user 550 5.1.1, a domain we do not serve 554 5.7.1 (never an open relay). Each account gets
  one copy, however many recipients resolve to it. A local recipient whose account is over its storage
  quota gets 452 4.2.2 at RCPT already (552 5.2.2 when the declared SIZE is larger than the whole quota;
  `DeliveryPipeline.room_for`, docs/decisions/0053), in submission too; the end of data checks again.
- The message streams into a spool file (memory for the first MiB, then an unlinked temporary file in the
  spool directory), with Return-Path and Received prepended (RFC 5321 section 4.4). At the end of data it is
  parsed once and handed to the pipeline, which runs the delivery stages and commits every copy (and the
  queue entry for remote recipients) in one store transaction; the 250 is sent only after that commit
  (durable). A refusal the stages make for every recipient, or a temporary one for any, is the reply
  instead, and nothing is stored; recipients refused while others are accepted get a DSN (decision 0040).
- Any store failure (I/O error) or failing stage answers 451 4.3.0 and leaves nothing half-written visible:
  the store transaction is rolled back as a whole. The session and the server go on. Short of disk space
  (docs/decisions/0030) the answer is 452 4.3.1 (RFC 5321 section 4.2.3 "insufficient system storage",
  RFC 3463 X.3.1 "mail system full"), at MAIL already when the store says it has no room for the declared
  SIZE (RFC 1870 section 6.1).
- The connection loop is `net.driver.LineSession`'s (shared with POP3 and POP2, docs/decisions/0034): replies
  are flushed when the core needs more input, so pipelined commands (RFC 2920) are answered in one write;
  STARTTLS drops plaintext pipelined behind it (CVE-2011-0411).
- One log line per transaction: id, client, TLS, sender, recipients, size, result, duration. The result of
  a message handed to the queue says so, with the queue id ("250 queued (queue id=17)"); the queue stores
  this transaction's id with the message and logs it with every delivery attempt.
- Submission (`mode = "submission"`, docs/decisions/0019): AUTH PLAIN/LOGIN through the shared
  `Authenticator` (offered after TLS only, unless plaintext is allowed); MAIL needs AUTH (530 5.7.0). The
  rest is the submission policy service (`postoffice.delivery.submission`, docs/decisions/0024, 0041),
  asked at each step so that the client learns early: at MAIL the per-account hourly limit (450 4.7.1) and
  the envelope sender's ownership (553 5.7.1), at RCPT the recipients per message (452 4.5.3), at the end
  of data the From, Sender and Resent-* addresses (553 5.7.1) and the Date and Message-ID fields to add
  when missing; its refusals are sent as they are. Recipients in our domains are resolved at RCPT (550
  5.1.1 for unknown users) and get their copy in the same store transaction that queues the message for
  the remote recipients, with their DSN parameters (RFC 3461). The Received header names the client's
  address only when configured.
- Timeouts (docs/decisions/0028): `command_timeout` is a deadline per command line and `data_timeout` one
  for the message data that bytes received extend at `[limits] min_data_rate` (`Connection.read`), so a
  client trickling a byte at a time is cut off with 421 4.4.2. Submission must log in within
  `[limits] login_timeout` (421 4.4.2); a pre-login session closed to make room gets 421 4.7.0.
- Port 25 relays for `[smtp] relay_networks` only (`trusted_networks` here; empty by default): their
  remote recipients are queued as in submission, without the ownership checks.
- DNS blocklists and greylisting (docs/decisions/0089) on port 25, for clients that do not relay: the
  `InboundScreen` (`postoffice.spam.screen`) starts the client's DNSBL lookups when it connects; at RCPT a
  listing refuses the recipient (554 5.7.1; not postmaster@ nor abuse@) before it is resolved, and a
  greylisted triplet gets 451 4.7.1 after it was (after `spam.screen.MAX_GREYLISTED` of them the session
  ends with 421 4.7.0); the zones that list the client travel with the message (`Origin.dnsbl`) to the spam
  stage.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import itertools
import logging
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from postoffice.auth import Authenticator
from postoffice.auth.sasl import mechanism_names
from postoffice.delivery.pipeline import DeliveryError, DeliveryOutcome, DeliveryPipeline
from postoffice.delivery.plan import Envelope, Kind, Message, Origin, Recipient, Refusal
from postoffice.delivery.submission import SendingLimiter, SubmissionPolicy
from postoffice.message import PARSE_INLINE_LIMIT, ParsedMessage, parse_message
from postoffice.net.driver import Ending, LineSession
from postoffice.net.listener import Connection, ConnectionClosedError
from postoffice.net.tls import received_tls_comment
from postoffice.smtp import protocol as p
from postoffice.smtp.address import trace_helo
from postoffice.store import Account, MailStore, StoreError, StoreFull

if TYPE_CHECKING:
    from postoffice.spam.screen import ClientChecks, InboundScreen

log = logging.getLogger("postoffice.smtp")

#: Messages up to this size stay in memory while being received; larger ones spill to the spool directory.
SPOOL_MEMORY = 1024 * 1024
#: Received data is written to a spilled spool file in batches of this size, off the event loop.
SPOOL_BATCH = 256 * 1024


@dataclass
class SmtpServerSettings:
    hostname: str
    spool_dir: Path
    max_message_size: int = 50 * 1024 * 1024
    max_recipients: int = 1000
    command_timeout: float = 300.0
    data_timeout: float = 180.0
    max_errors: int = 20
    #: "mx": port 25, mail for our domains (and relay for `trusted_networks`); "submission": 587/465
    mode: str = "mx"
    max_messages_per_hour: int = 500
    max_recipients_per_message: int = 100
    received_client_address: bool = False
    trusted_networks: tuple[str, ...] = ()

    def trusts(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net, strict=False) for net in self.trusted_networks)


@dataclass
class Transaction:
    id: str
    started: float
    sender: str
    params: dict[str, str | None]
    recipients: list[str] = field(default_factory=list)
    #: the accepted recipients as the delivery pipeline resolved them (local accounts, or remote)
    targets: list[Recipient] = field(default_factory=list)
    remote: bool = False  # some recipient is remote (queued)
    spool: IO[bytes] | None = None
    pending: list[bytes] = field(default_factory=list)
    pending_size: int = 0
    size: int = 0
    #: where the client's message starts in the spool (after the trace fields we prepend)
    message_start: int = 0
    #: the id of the queued message for the remote recipients, once stored
    queue_id: int | None = None
    failed: str | None = None


_ID_PREFIX = f"{int(time.time()) & 0xFFFFFFFF:08X}{secrets.randbelow(0xFFF):03X}"
_id_counter = itertools.count(1)


def _new_id() -> str:
    """A transaction id unique across restarts: start time and a random salt, then a counter."""
    return f"{_ID_PREFIX}{next(_id_counter):06X}"


class SmtpSession(LineSession[p.SmtpServerProtocol]):
    """One SMTP session: the connection loop is `net.driver.LineSession`'s; this class answers the core's
    events and says the protocol's goodbyes."""

    def __init__(
        self,
        conn: Connection,
        settings: SmtpServerSettings,
        store: MailStore,
        *,
        authenticator: Authenticator | None = None,
        limiter: SendingLimiter | None = None,
        pipeline: DeliveryPipeline | None = None,
        policy: SubmissionPolicy | None = None,
        screen: InboundScreen | None = None,
    ) -> None:
        self.conn = conn
        self.settings = settings
        self.store = store
        self.authenticator = authenticator
        self.pipeline = pipeline or DeliveryPipeline(store, hostname=settings.hostname)
        self.submission = settings.mode == "submission"
        # the submission policy (decision 0041) is for submission sessions only, even when shared
        self.policy: SubmissionPolicy | None = None
        if self.submission:
            self.policy = policy or SubmissionPolicy(
                store,
                hostname=settings.hostname,
                limiter=limiter,
                max_recipients=settings.max_recipients_per_message,
            )
        self.relay = self.submission or settings.trusts(conn.peer_ip)
        self.origin_kind: Kind = "submission" if self.submission else "relay" if self.relay else "mx"
        # DNSBL and greylisting: port 25 clients that do not relay (decision 0089); lookups start in run()
        self.screen = screen if self.origin_kind == "mx" else None
        self.client_checks: ClientChecks | None = None
        self.account: Account | None = None
        self.helo = ""
        self.extended = False
        self.txn: Transaction | None = None
        self.in_data = False
        # AUTH before TLS only where the authenticator allows passwords without TLS (decision 0035)
        plaintext = authenticator is not None and authenticator.plaintext_allowed(False)
        self.proto = p.SmtpServerProtocol(
            p.SmtpSettings(
                hostname=settings.hostname,
                max_message_size=settings.max_message_size,
                max_recipients=settings.max_recipients,
                max_errors=settings.max_errors,
                starttls_available=conn.starttls_available,
                auth_mechanisms=mechanism_names() if self.submission and authenticator is not None else (),
                auth_requires_tls=not plaintext,
                # DSN is offered where the queue honours it: submission and relaying. Port 25 delivers
                # locally and sends no success reports, so it does not advertise DSN (RFC 3461 section 5).
                dsn=self.relay,
            ),
            tls_active=conn.tls_active,
            channel_binding=conn.channel_binding,
        )

    async def run(self) -> None:
        if self.screen is not None:
            self.client_checks = self.screen.connected(self.conn.peer_ip)
        self.proto.greeting()
        try:
            await self.drive()
        except ConnectionClosedError:
            pass
        finally:
            self._end_transaction("connection closed")
            if self.client_checks is not None:
                self.client_checks.close()

    # ------------------------------------------------------------------------------- net.driver hooks

    def read_timeout(self) -> tuple[float, bool]:
        # A deadline per command (and for the message data), not per read: net.listener
        if self.in_data:
            return self.settings.data_timeout, False
        return self.settings.command_timeout, self.txn is None

    def goodbye(self, ending: Ending, timeout: float) -> None:
        ip = self.conn.peer_ip
        if ending is Ending.SHUTDOWN:
            self.proto.close(421, "4.3.2", "Service shutting down, try again later")
        elif ending is Ending.EVICTED:
            log.info("smtp client %s: closed to make room for other clients", ip)
            self.proto.close(421, "4.7.0", "Too many connections, closing this one; try again later")
        elif ending is Ending.LOGIN_TIMEOUT:
            log.info("smtp client %s: no login within the login timeout", ip)
            self.proto.close(421, "4.4.2", "Login took too long, closing connection")
        else:
            # RFC 5321 section 4.5.3.2: the server may close after its timeout; say why first
            log.info("smtp client %s: timeout after %.0f s", ip, timeout)
            self.proto.close(421, "4.4.2", "Timeout exceeded, closing connection")

    def connection_lost(self) -> None:
        if self.in_data or self.txn is not None:
            log.info("smtp client %s: timeout or reset in a transaction", self.conn.peer_ip)

    def tls_started(self) -> None:
        self.helo = ""
        self.account = None  # RFC 3207 4.2: everything from before TLS is forgotten
        self._end_transaction("STARTTLS")

    async def internal_error(self, event: p.Event, exc: Exception) -> None:
        log.error(
            "smtp client %s: internal error handling %s",
            self.conn.peer_ip,
            type(event).__name__,
            exc_info=exc,
        )
        self._internal_error()

    async def handle(self, event: p.Event) -> None:
        proto = self.proto
        if isinstance(event, p.MessageData):
            await self._spool(event.data)
        elif isinstance(event, p.Hello):
            self.helo = event.name
            self.extended = event.extended
            self._end_transaction("new EHLO")
            proto.accept()
        elif isinstance(event, p.Authenticate):
            await self._authenticate(event)
        elif isinstance(event, p.ScramSecretNeeded):
            if self.authenticator is None:
                raise RuntimeError("AUTH in a session without an authenticator, which offers no AUTH")
            proto.scram_secret(
                await self.authenticator.scram_secret(event.username, client_ip=self.conn.peer_ip)
            )
        elif isinstance(event, p.MailFrom):
            self._end_transaction("new MAIL")
            if await self._sender_refused(event) or await self._no_room(event):
                return
            self.txn = Transaction(_new_id(), time.monotonic(), event.address, dict(event.params))
            self.pipeline.sender_known(self.origin_kind, self.conn.peer_ip, self.helo, event.address)
            proto.accept()
        elif isinstance(event, p.RcptTo):
            await self._recipient(event)
        elif isinstance(event, p.MessageStart):
            self._start_message()
        elif isinstance(event, p.MessageComplete):
            await self._complete()
        elif isinstance(event, p.MessageAborted):
            self._end_transaction(f"aborted: {event.reason}", result=event.reason)
        elif isinstance(event, p.Reset):
            self._end_transaction("RSET")
        elif isinstance(event, (p.Quit, p.ConnectionClosed)):
            self._end_transaction("connection closed" if isinstance(event, p.ConnectionClosed) else "QUIT")

    def _internal_error(self) -> None:
        """The one place where an unexpected exception becomes a reply (the traceback goes to the log only):
        451 4.3.0 to the decision the client waits for, so it tries again later; with none pending (or in a
        STARTTLS handshake) the session's state is unknown, so 421 and close."""
        proto = self.proto
        pending = proto.pending
        if pending is not None and not isinstance(pending, p.StartTls):
            proto.reject(451, "4.3.0", "Local error in processing, try again later")
            if isinstance(pending, p.MessageComplete):
                self._end_transaction("internal error", result="451 internal error")
            elif isinstance(pending, p.MailFrom):
                self._end_transaction("internal error")  # the core started no transaction either
        else:
            proto.close(421, "4.3.0", "Local error in processing, closing connection")
            self._end_transaction("internal error", result="421 internal error")

    def _policy(self) -> SubmissionPolicy:
        """The submission policy, which every submission session has (`__init__`)."""
        policy = self.policy
        if policy is None:
            raise RuntimeError("a submission session without its submission policy")
        return policy

    async def _authenticate(self, event: p.Authenticate) -> None:
        """RFC 4954 through the shared login path (lockouts and delays as for IMAP and POP3)."""
        authenticator = self.authenticator
        if authenticator is None:
            raise RuntimeError("AUTH in a session without an authenticator, which offers no AUTH")
        if event.scram is not None:
            result = await authenticator.scram_finish(
                protocol="smtp",
                client_ip=self.conn.peer_ip,
                outcome=event.scram,
                mechanism=event.mechanism,
                tls=self.conn.tls_active,
            )
        elif event.credentials is not None:
            result = await authenticator.login_sasl(
                protocol="smtp",
                client_ip=self.conn.peer_ip,
                credentials=event.credentials,
                mechanism=event.mechanism,
                tls=self.conn.tls_active,
            )
        else:
            raise RuntimeError("an Authenticate event without credentials or a SCRAM outcome")
        if result.ok and result.account is not None:
            self.account = result.account
            self.conn.mark_logged_in()
            self.proto.accept()
        elif result.status in ("locked-out", "unavailable"):
            self.proto.reject(454, "4.7.0", "Temporary authentication failure, try again later")
        else:
            self.proto.reject(535, "5.7.8", "Authentication credentials invalid")

    async def _sender_refused(self, event: p.MailFrom) -> bool:
        """Submission policy at MAIL (RFC 6409): AUTH first, then the policy's limit and sender ownership.
        True when the command was rejected."""
        if not self.submission:
            return False
        account = self.account
        if account is None:
            self.proto.reject(530, "5.7.0", "Authentication required")
            return True
        policy = self._policy()
        try:
            refusal = await policy.check_sender(account, event.address)
        except StoreError as exc:
            log.error("smtp submission: sender lookup failed: %s", exc)
            self.proto.reject(451, "4.3.0", "Temporary local problem, try again later")
            return True
        if refusal is not None:
            self.proto.reject(*refusal.reply)
            return True
        return False

    async def _no_room(self, event: p.MailFrom) -> bool:
        """452 4.3.1 at MAIL when the store would refuse the message for lack of disk space (RFC 1870 section
        6.1: a temporary lack of storage for the declared SIZE; decision 0030): the client keeps it and tries
        again later, before it sends the bytes. True when the command was rejected."""
        size = event.params.get("SIZE") or "0"
        try:
            room = await self.store.has_room(int(size))
        except StoreError as exc:  # the check is a hint; the delivery itself decides
            log.warning("smtp: free space check failed: %s", exc)
            return False
        if room:
            return False
        log.warning("smtp client %s: MAIL refused, the store is short of disk space", self.conn.peer_ip)
        self.proto.reject(452, "4.3.1", "Insufficient system storage, try again later")
        return True

    async def _recipient(self, event: p.RcptTo) -> None:
        txn = self.txn
        if txn is None:
            raise RuntimeError("RCPT outside a transaction: the protocol core asks only inside one")
        params = event.params
        screen, checks = self.screen, self.client_checks
        if screen is not None and checks is not None:
            listed = await screen.recipient_refused(checks, event.address)
            if listed is not None:
                self.proto.reject(listed.code, listed.enhanced, f"<{event.address}>: {listed.text}")
                return
        try:
            # submission or a trusted network may relay: a foreign recipient is queued for its server
            resolved = await self.pipeline.resolve(
                event.address,
                relay=self.relay,
                orcpt=params.get("ORCPT"),
                notify=params.get("NOTIFY"),
                sender=txn.sender,
            )
            if isinstance(resolved, Recipient) and not resolved.remote:
                # a full mailbox is refused here, for its recipient alone (452 4.2.2; decision 0053)
                declared = txn.params.get("SIZE") or ""
                size = int(declared) if declared.isdigit() else 0
                resolved = await self.pipeline.room_for(resolved, size) or resolved
        except StoreError as exc:
            log.error("smtp %s: recipient lookup failed: %s", txn.id, exc)
            self.proto.reject(451, "4.3.0", "Temporary local problem, try again later")
            return
        if self.policy is not None and (refusal := self.policy.check_recipients(len(txn.recipients))):
            self.proto.reject(*refusal.reply)
        elif isinstance(resolved, Refusal):
            self.proto.reject(resolved.code, resolved.enhanced, f"<{event.address}>: {resolved.text}")
        elif (
            screen is not None
            and checks is not None
            and (grey := await screen.greylisted(checks, txn.sender, event.address)) is not None
        ):
            self.proto.reject(grey.code, grey.enhanced, f"<{event.address}>: {grey.text}")
            if checks.too_many_greylisted:  # each new pair is a record: no session tries them on and on
                log.info("smtp client %s: too many greylisted recipients, closing", self.conn.peer_ip)
                self.proto.close(421, "4.7.0", "Too many greylisted recipients, try again later")
        else:
            txn.recipients.append(event.address)
            txn.targets.append(resolved)
            txn.remote = txn.remote or resolved.remote
            self.proto.accept()

    def _trace_headers(self, txn: Transaction) -> bytes:
        conn = self.conn
        protocol = "ESMTP" if self.extended else "SMTP"
        if "SMTPUTF8" in {k.upper() for k in txn.params}:
            protocol = "UTF8SMTP"
        if conn.tls_active:
            protocol += "S"
        if self.account is not None:
            protocol += "A"  # RFC 3848: authenticated
        helo = self.helo or "unknown"
        # RFC 8314 4.3: the TLS version and cipher, in the comment form Postfix writes
        comment = received_tls_comment(conn.writer.get_extra_info("ssl_object")) if conn.tls_active else ""
        tls = f"\r\n\t{comment}" if comment else ""
        recipient = f"\r\n\tfor <{txn.recipients[0]}>" if len(txn.recipients) == 1 else ""
        date = email.utils.format_datetime(email.utils.localtime())
        if self.submission and not self.settings.received_client_address:
            # RFC 6409 8 / privacy: a submitted message does not carry the user's address or HELO name
            source = "Received: from authenticated user"
        else:
            # a HELO name that is not a domain or address literal is not copied into the header (it could
            # forge a hop: "EHLO x) by evil (...; date"); its address then stands as the From-domain
            shown = trace_helo(helo)
            if shown is not None:
                source = f"Received: from {shown} ([{conn.peer_ip}])"
            else:
                ip = conn.peer_ip
                literal = f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
                hint = "".join(
                    c if c.isascii() and (c.isalnum() or c in ".-_:[]") else "?" for c in helo[:64]
                )
                source = f"Received: from {literal} ([{ip}] helo={hint})"
        received = (
            f"{source}\r\n"
            f"\tby {self.settings.hostname} (Postoffice) with {protocol} id {txn.id}{tls}{recipient};\r\n"
            f"\t{date}\r\n"
        )
        if self.relay and txn.remote:
            # Return-Path is for final delivery (RFC 5321 4.4): not on a message that leaves through the queue
            return received.encode("utf-8", "surrogateescape")
        return f"Return-Path: <{txn.sender}>\r\n".encode() + received.encode("utf-8", "surrogateescape")

    def _start_message(self) -> None:
        txn = self.txn
        if txn is None:
            raise RuntimeError("DATA outside a transaction: the protocol core starts one only after RCPT")
        self.in_data = True
        txn.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY, dir=str(self.settings.spool_dir))  # noqa: SIM115
        header = self._trace_headers(txn)
        txn.spool.write(header)
        txn.size = txn.message_start = len(header)

    async def _spool(self, data: bytes) -> None:
        txn = self.txn
        if txn is None or txn.spool is None or txn.failed:
            return
        txn.size += len(data)
        try:
            if txn.size <= SPOOL_MEMORY:  # still in memory: the spool spills to disk only past SPOOL_MEMORY
                txn.spool.write(data)
                return
            txn.pending.append(data)
            txn.pending_size += len(data)
            if txn.pending_size >= SPOOL_BATCH:
                await self._flush_spool(txn)
        except OSError as exc:
            log.error("smtp %s: spool write failed: %s", txn.id, exc)
            txn.failed = f"spool write failed: {exc}"

    async def _flush_spool(self, txn: Transaction) -> None:
        if not txn.pending or txn.spool is None:
            return
        batch = b"".join(txn.pending)
        txn.pending.clear()
        txn.pending_size = 0
        await asyncio.to_thread(txn.spool.write, batch)

    async def _complete(self) -> None:
        txn = self.txn
        self.in_data = False
        if txn is None or txn.spool is None:
            self.proto.reject(451, "4.3.0", "Local error in processing")
            return
        outcome = None
        try:
            if txn.failed is None:
                await self._flush_spool(txn)
                spool = txn.spool
                spool.flush()
                parsed = await self._parse(spool, txn.size)
                refusal, outcome = await self._deliver(txn, spool, parsed)
                if refusal is not None:
                    self.proto.reject(*refusal.reply)
                    self._end_transaction("refused", result=f"{refusal.code} {refusal.text}")
                    return
        except StoreFull as exc:  # decision 0030: nothing was stored
            log.error("smtp %s: not stored, disk space: %s", txn.id, exc)
            self.proto.reject(452, "4.3.1", "Insufficient system storage, try again later")
            self._end_transaction("failed", result=f"452 {exc}")
            return
        except (StoreError, DeliveryError, OSError) as exc:
            log.error("smtp %s: delivery failed: %s", txn.id, exc)
            txn.failed = str(exc)
        if txn.failed is not None or outcome is None:
            self.proto.reject(
                451, "4.3.0", "Local error in processing, message not accepted; try again later"
            )
            self._end_transaction("failed", result=f"451 {txn.failed}")
        else:
            self.proto.accept(f"OK queued as {txn.id}")
            if outcome.queue_id is None:
                result = "250 delivered"
            else:  # the queue's own log lines carry "queue id=N" and this transaction's id
                local = "delivered locally, " if outcome.copies else ""
                result = f"250 {local}queued (queue id={outcome.queue_id})"
            if outcome.reported:
                result += f", {outcome.reported} refused (reported to the sender)"
            self._end_transaction("delivered", result=result)

    @staticmethod
    async def _parse(spool: IO[bytes], size: int) -> ParsedMessage:
        spool.seek(0)
        if size <= PARSE_INLINE_LIMIT:
            return parse_message(spool)
        return await asyncio.to_thread(parse_message, spool)

    async def _deliver(
        self, txn: Transaction, spool: IO[bytes], parsed: ParsedMessage
    ) -> tuple[Refusal | None, DeliveryOutcome | None]:
        """The end of data: for submission the policy's verdict on the message (its originator fields; Date
        and Message-ID when missing), then the delivery pipeline (local copies and the queue entry for the
        remote recipients in one store transaction). Returns the refusal, or the delivery's outcome."""
        account = self.account
        params = txn.params
        smtputf8 = "SMTPUTF8" in params
        extra = b""
        if self.submission and account is not None:
            decision = await self._policy().check_message(
                account, spool, parsed, start=txn.message_start, smtputf8=smtputf8
            )
            if decision.refusal is not None:
                return decision.refusal, None
            extra = decision.header_fields
        if extra:
            spool, parsed = await self._prepend(spool, extra)
        envelope = Envelope(
            txn.sender,
            envid=params.get("ENVID"),
            ret=params.get("RET"),
            smtputf8=smtputf8,
            eight_bit=(params.get("BODY") or "").upper() == "8BITMIME" or smtputf8,
            require_tls="REQUIRETLS" in params,
        )
        conn = self.conn
        listed = await self.client_checks.listed() if self.client_checks is not None else ()
        origin = Origin(self.origin_kind, conn.peer_ip, self.helo, conn.tls_active, account, txn.id, listed)
        try:
            outcome = await self.pipeline.deliver(Message(spool, parsed), envelope, txn.targets, origin)
        finally:
            if extra:
                spool.close()
        if outcome.refusal is not None:
            return outcome.refusal, None
        txn.queue_id = outcome.queue_id
        if self.submission and account is not None:
            self._policy().sent(account)
        return None, outcome

    async def _prepend(self, spool: IO[bytes], extra: bytes) -> tuple[IO[bytes], ParsedMessage]:
        """A new spool with `extra` header fields after the trace fields, and its parse (the copy runs in a
        thread: a large spool is a file)."""

        def copy() -> IO[bytes]:
            spool.seek(0)
            head = spool.read(64 * 1024)
            # after our own Return-Path/Received lines (they start the spool), before the message's header
            cut = 0
            while head.startswith((b"Return-Path:", b"Received:", b"\t", b" "), cut):
                end = head.find(b"\r\n", cut)
                if end < 0:
                    break
                cut = end + 2
            out = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - the caller closes it
                max_size=SPOOL_MEMORY, dir=str(self.settings.spool_dir)
            )
            out.write(head[:cut] + extra + head[cut:])
            while chunk := spool.read(1024 * 1024):
                out.write(chunk)
            out.flush()
            return out

        out = await asyncio.to_thread(copy)
        return out, await SmtpSession._parse(out, out.tell())

    def _end_transaction(self, why: str, result: str | None = None) -> None:
        txn = self.txn
        self.in_data = False
        if txn is None:
            return
        self.txn = None
        if txn.spool is not None:
            try:
                txn.spool.close()
            except OSError:
                pass
        if result is None and not txn.recipients:
            return  # a MAIL FROM that went nowhere is not worth a line
        log.info(
            "smtp id=%s client=%s tls=%s from=<%s> to=%s size=%d result=%r duration=%.3fs",
            txn.id,
            self.conn.peer_ip,
            self.conn.tls_info or "no",
            txn.sender,
            ",".join(f"<{r}>" for r in txn.recipients) or "-",
            txn.size,
            result or why,
            time.monotonic() - txn.started,
        )


async def refuse_connection(conn: Connection, reason: str) -> None:
    """A connection over the limits: RFC 5321 section 3.1 allows 421 instead of the greeting."""
    try:
        await conn.write(f"421 4.7.0 {reason}, try again later\r\n".encode())
    except ConnectionClosedError:
        pass
