"""SMTP glue: a connection, the sans-IO protocol core, the spool and the store (RFC 5321 inbound on port 25).

Implementation notes
- The protocol core (`postoffice.smtp.protocol`) decides everything about the wire format; this module only
  moves bytes, answers the core's decisions (recipients, end of message) and stores mail.
- Inbound policy (port 25): recipients are resolved at RCPT time: unknown local user 550 5.1.1, a domain we
  do not serve 554 5.7.1 (never an open relay). Each account gets one copy, however many recipients resolve
  to it.
- The message streams into a spool file (memory for the first MiB, then an unlinked temporary file in the
  spool directory), with Return-Path and Received prepended (RFC 5321 section 4.4). At the end of data it is
  parsed once and delivered to every recipient in one store transaction; the 250 is sent only after that
  commit (durable).
- Any store failure (disk full, I/O error) answers 451 4.3.0 and leaves nothing half-written visible: the
  store transaction is rolled back as a whole. The session and the server go on.
- Replies are flushed when the core needs more input, so pipelined commands (RFC 2920) are answered in one
  write.
- One log line per transaction: id, client, TLS, sender, recipients, size, result, duration.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import logging
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from postoffice.message import parse_message
from postoffice.net.listener import Connection, ConnectionClosedError, ReadTimeout, ShutdownRequested
from postoffice.smtp import protocol as p
from postoffice.store import MailStore, StoreError

log = logging.getLogger("postoffice.smtp")

#: Messages up to this size stay in memory while being received; larger ones spill to the spool directory.
SPOOL_MEMORY = 1024 * 1024
#: Messages up to this size are parsed on the event loop (a few hundred microseconds); larger ones in a
#: thread.
PARSE_INLINE_LIMIT = 256 * 1024
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


@dataclass
class Transaction:
    id: str
    started: float
    sender: str
    params: dict[str, str | None]
    recipients: list[str] = field(default_factory=list)
    account_ids: list[int] = field(default_factory=list)
    spool: IO[bytes] | None = None
    pending: list[bytes] = field(default_factory=list)
    pending_size: int = 0
    size: int = 0
    failed: str | None = None


_ID_PREFIX = f"{int(time.time()) & 0xFFFFFFFF:08X}{secrets.randbelow(0xFFF):03X}"
_id_counter = itertools.count(1)


def _new_id() -> str:
    """A transaction id unique across restarts: start time and a random salt, then a counter."""
    return f"{_ID_PREFIX}{next(_id_counter):06X}"


class SmtpSession:
    def __init__(self, conn: Connection, settings: SmtpServerSettings, store: MailStore) -> None:
        self.conn = conn
        self.settings = settings
        self.store = store
        self.helo = ""
        self.extended = False
        self.txn: Transaction | None = None
        self.in_data = False
        self.proto = p.SmtpServerProtocol(
            p.SmtpSettings(
                hostname=settings.hostname,
                max_message_size=settings.max_message_size,
                max_recipients=settings.max_recipients,
                max_errors=settings.max_errors,
                starttls_available=conn.starttls_available,
            ),
            tls_active=conn.tls_active,
        )

    async def run(self) -> None:
        self.proto.greeting()
        try:
            await self._loop()
        except ShutdownRequested:
            self.proto.close(421, "4.3.2", "Service shutting down, try again later")
            await self._say_goodbye()
        except ConnectionClosedError:
            pass
        finally:
            self._end_transaction("connection closed")

    async def _say_goodbye(self) -> None:
        try:
            await self.conn.write(self.proto.data_to_send())
        except ConnectionClosedError:
            pass

    async def _loop(self) -> None:
        proto = self.proto
        while True:
            event = proto.next_event()
            if event is None:
                out = proto.data_to_send()
                if out:
                    await self.conn.write(out)
                if proto.closed:
                    return
                idle = self.txn is None and not self.in_data
                timeout = self.settings.data_timeout if self.in_data else self.settings.command_timeout
                try:
                    data = await self.conn.read(timeout, idle=idle)
                except ReadTimeout:
                    # RFC 5321 section 4.5.3.2: the server may close after its timeout; say why first
                    log.info("smtp client %s: timeout after %.0f s", self.conn.peer_ip, timeout)
                    proto.close(
                        421, "4.4.2", f"{self.settings.hostname} Timeout exceeded, closing connection"
                    )
                    await self._say_goodbye()
                    return
                except ConnectionClosedError:
                    if self.in_data or self.txn is not None:
                        log.info("smtp client %s: timeout or reset in a transaction", self.conn.peer_ip)
                    proto.receive_data(b"")
                    continue
                proto.receive_data(data)
                continue
            await self._handle(event)
            if isinstance(event, (p.Quit, p.ConnectionClosed)):
                out = proto.data_to_send()
                if out:
                    try:
                        await self.conn.write(out)
                    except ConnectionClosedError:
                        pass
                return

    async def _handle(self, event: p.Event) -> None:
        proto = self.proto
        if isinstance(event, p.MessageData):
            await self._spool(event.data)
        elif isinstance(event, p.Hello):
            self.helo = event.name
            self.extended = event.extended
            self._end_transaction("new EHLO")
            proto.accept()
        elif isinstance(event, p.MailFrom):
            self._end_transaction("new MAIL")
            self.txn = Transaction(_new_id(), time.monotonic(), event.address, dict(event.params))
            proto.accept()
        elif isinstance(event, p.RcptTo):
            await self._recipient(event)
        elif isinstance(event, p.MessageStart):
            self._start_message()
        elif isinstance(event, p.MessageComplete):
            await self._complete()
        elif isinstance(event, p.MessageAborted):
            self._end_transaction(f"aborted: {event.reason}", result=event.reason)
        elif isinstance(event, p.StartTls):
            out = proto.data_to_send()
            await self.conn.write(out)
            await self.conn.start_tls()
            self.helo = ""
            self._end_transaction("STARTTLS")
            proto.tls_started()
        elif isinstance(event, p.Reset):
            self._end_transaction("RSET")
        elif isinstance(event, (p.Quit, p.ConnectionClosed)):
            self._end_transaction("connection closed" if isinstance(event, p.ConnectionClosed) else "QUIT")

    async def _recipient(self, event: p.RcptTo) -> None:
        txn = self.txn
        assert txn is not None, "the protocol core only asks about RCPT inside a transaction"
        try:
            resolution = await self.store.resolve_recipient(event.address)
        except StoreError as exc:
            log.error("smtp %s: recipient lookup failed: %s", txn.id, exc)
            self.proto.reject(451, "4.3.0", "Temporary local problem, try again later")
            return
        if resolution.status == "foreign":
            self.proto.reject(554, "5.7.1", f"<{event.address}>: Relay access denied")
        elif resolution.status != "local" or not resolution.account_ids:
            self.proto.reject(
                550, "5.1.1", f"<{event.address}>: Recipient address rejected: no such user here"
            )
        else:
            txn.recipients.append(event.address)
            for account_id in resolution.account_ids:
                if account_id not in txn.account_ids:
                    txn.account_ids.append(account_id)
            self.proto.accept()

    def _trace_headers(self, txn: Transaction) -> bytes:
        conn = self.conn
        protocol = "ESMTP" if self.extended else "SMTP"
        if "SMTPUTF8" in {k.upper() for k in txn.params}:
            protocol = "UTF8SMTP"
        if conn.tls_active:
            protocol += "S"
        helo = self.helo or "unknown"
        tls = f"\r\n\t(using {conn.tls_info})" if conn.tls_active else ""
        recipient = f"\r\n\tfor <{txn.recipients[0]}>" if len(txn.recipients) == 1 else ""
        date = email.utils.format_datetime(email.utils.localtime())
        received = (
            f"Received: from {helo} ([{conn.peer_ip}])\r\n"
            f"\tby {self.settings.hostname} (Postoffice) with {protocol} id {txn.id}{tls}{recipient};\r\n"
            f"\t{date}\r\n"
        )
        return f"Return-Path: <{txn.sender}>\r\n".encode() + received.encode("utf-8", "surrogateescape")

    def _start_message(self) -> None:
        txn = self.txn
        assert txn is not None
        self.in_data = True
        txn.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY, dir=str(self.settings.spool_dir))  # noqa: SIM115
        header = self._trace_headers(txn)
        txn.spool.write(header)
        txn.size = len(header)

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
        try:
            if txn.failed is None:
                await self._flush_spool(txn)
                spool = txn.spool
                spool.flush()
                if txn.size <= PARSE_INLINE_LIMIT:
                    parsed = parse_message(spool)
                else:
                    parsed = await asyncio.to_thread(parse_message, spool)
                await self.store.deliver(spool, parsed, txn.account_ids)
        except (StoreError, OSError) as exc:
            log.error("smtp %s: delivery failed: %s", txn.id, exc)
            txn.failed = str(exc)
        if txn.failed is not None:
            self.proto.reject(
                451, "4.3.0", "Local error in processing, message not accepted; try again later"
            )
            self._end_transaction("failed", result=f"451 {txn.failed}")
        else:
            self.proto.accept(f"OK queued as {txn.id}")
            self._end_transaction("delivered", result="250 delivered")

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
