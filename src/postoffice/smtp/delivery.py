"""Outbound SMTP: hand messages to one destination's servers over one connection (issue 5, outbound half).

`deliver(hosts, messages, ...)` is one delivery attempt: it finds a server among `hosts` (from
`postoffice.smtp.mx.MxResolver.destinations`, or a configured smarthost) that accepts a connection and EHLO,
runs one mail transaction per message over that single connection and returns one outcome per recipient.
It holds no queue state: retry schedules, bounces and DSNs are the queue runner's (docs/decisions/0018).

What it implements
- RFC 5321: the client side of sections 3.3 (MAIL, RCPT, DATA), 3.8/4.1.1.5 (RSET after an abandoned
  transaction), 4.2 (reply classes), 4.5.2 (dot-stuffing), 2.3.8 (CRLF only on the wire), 4.5.3.2
  (timeouts, shortened, see `deliver`), 5.1 (try the addresses in order; a failed connection moves on), 6.1
  (a connection lost after the final dot leaves the message temporary: it may arrive twice, never lost).
- RFC 3207 STARTTLS: "opportunistic" (unauthenticated TLS whenever offered, plaintext otherwise or after a
  failed handshake, like Postfix's "may" level), "required" (verified TLS or no delivery) or "none".
- RFC 1870 SIZE (SIZE= on MAIL; a message over the announced limit is not sent: 552 5.3.4).
- RFC 6152 8BITMIME (BODY=8BITMIME; an 8-bit message to a server without it is not downgraded but returned:
  554 5.6.3).
- RFC 6531 SMTPUTF8 (internationalized addresses or headers need it: 553 5.6.7 for a non-ASCII address, 554
  5.6.9 for UTF-8 headers only; the IDN domain of an ASCII local part is sent as A-labels without it).
- RFC 3461 DSN (RET/ENVID on MAIL, NOTIFY/ORCPT on RCPT, only when the server offers DSN).
- RFC 4954 AUTH for smarthosts (only over TLS, unless TLS is "none").
- Per-host TLS requirements (`HostTls`, from the policy layer `postoffice.mailauth.transport`: DANE, RFC
  7672, and MTA-STS, RFC 8461): TLS mandatory for that host, a context, and a check of the peer's
  certificate chain after the handshake (the TLSA match, or the WebPKI check of an MTA-STS policy in
  "testing" mode, which is reported but not enforced). Every connection that got as far as EHLO is
  reported to `on_tls` (`TlsSession`: TLS or not, and the RFC 8460 result type of a failure), for TLS
  reporting.
- RFC 8689 REQUIRETLS: a message with `require_tls` is sent with the MAIL parameter, only over TLS to a
  server that offers it (`required_extension` skips the hosts that do not; the caller chooses hosts whose
  certificate is authenticated).
- Not done: PIPELINING (commands wait for their reply; simpler, and the time goes into DATA anyway),
  CHUNKING, BINARYMIME.

Invariants
- Every network step is bounded: TCP connect and greeting by `connect_timeout`, each command reply (and the
  STARTTLS handshake) by `command_timeout`, each flushed block of message data and the reply after the final
  dot by `data_timeout`. Nothing waits for the peer without a timeout.
- Every recipient of every message gets exactly one outcome, whatever happens; the function raises only on
  programming errors (bad arguments), never because of the network or the remote server.
- `RecipientOutcome.enhanced`, when present, has the class of `status` (2 delivered, 4 temporary, 5
  permanent): a remote "554 5.7.1" greeting (skipped like a refused connection) becomes "4.7.1" when it
  was the last address tried, because the attempt is deferred, not failed. `code` and `text` stay the
  remote's.
- Message data is streamed in `CHUNK_SIZE` pieces, dot-stuffed on the fly, with flow control: neither the
  message nor its stuffed copy is held in memory as a whole (beyond what the caller passes in as bytes).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import re
import ssl
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import aiosmtplib
from aiosmtplib import SMTPResponse

from postoffice.smtp.address import AddressSyntaxError, parse_forward_path, parse_reverse_path
from postoffice.smtp.mx import DnsError, Host, PermanentDnsError, to_a_label
from postoffice.smtp.xtext import encode_xtext

__all__ = [
    "CHUNK_SIZE",
    "ChunkSource",
    "HostTls",
    "OutcomeStatus",
    "OutgoingMessage",
    "OutgoingRecipient",
    "RecipientOutcome",
    "TlsPolicy",
    "TlsSession",
    "deliver",
    "outcomes_for_dns_error",
    "peer_chain",
    "unverified_context",
]

TlsPolicy = Literal["opportunistic", "required", "none"]
OutcomeStatus = Literal["delivered", "temporary", "permanent"]
ChunkSource = Callable[[], AsyncIterable[bytes]]
"""Called once when the message is sent (never for a message that is not sent); yields its bytes in pieces."""

CHUNK_SIZE = 64 * 1024
QUIT_TIMEOUT = 10.0

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_NOTIFY = re.compile(r"NEVER|(?:SUCCESS|FAILURE|DELAY)(?:,(?:SUCCESS|FAILURE|DELAY))*", re.IGNORECASE)
_ADDR_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_LINE_END = re.compile(rb"\r\n|\r|\n")
_DOT_AT_LINE_START = re.compile(rb"\n\.")


# -- data model ----------------------------------------------------------------------------------------------


@dataclass
class OutgoingRecipient:
    """`address` as in the envelope (no angle brackets; U-labels or A-labels). `notify`: the RFC 3461 NOTIFY
    value ("NEVER" or a comma list of SUCCESS, FAILURE, DELAY). `orcpt`: "addr-type;address", decoded (not
    xtext), e.g. "rfc822;bob@example.org"."""

    address: str
    notify: str | None = None
    orcpt: str | None = None


@dataclass
class OutgoingMessage:
    """`sender`: the reverse path without brackets, "" for the null sender (bounces). `data`: the message with
    CRLF line ends, as bytes or a `ChunkSource`. `size`: its length in octets (for SIZE=). `eight_bit`: it
    has 8-bit body content (BODY=8BITMIME was used, or it was found so). `smtputf8`: it needs SMTPUTF8 (it
    was received with the SMTPUTF8 parameter: UTF-8 headers). `envid` (decoded, not xtext) and `ret` ("FULL"
    or "HDRS") are the RFC 3461 MAIL parameters."""

    sender: str
    recipients: list[OutgoingRecipient]
    data: bytes | ChunkSource
    size: int
    eight_bit: bool = False
    smtputf8: bool = False
    envid: str | None = None
    ret: str | None = None
    require_tls: bool = (
        False  # RFC 8689 REQUIRETLS: sent with the MAIL parameter (the caller chose the hosts)
    )


@dataclass
class RecipientOutcome:
    """What happened to one recipient. `code`/`enhanced`/`text` are the remote server's reply when
    `remote_reply` is true (for a DSN's "Diagnostic-Code: smtp; <code> <enhanced> <text>"), otherwise this
    client's own finding (connection refused, SIZE exceeded, ...). `remote_mta`: the host name we talked to
    (or tried last). `remote_dsn`: the server offered DSN and got NOTIFY/ORCPT, so a delivered recipient that
    asked for NOTIFY=SUCCESS needs no "relayed" notice from us (RFC 3461 section 6.2.3.1)."""

    address: str
    status: OutcomeStatus
    code: int
    enhanced: str | None
    text: str
    remote_mta: str | None
    remote_reply: bool = False
    remote_dsn: bool = False


@dataclass(frozen=True)
class HostTls:
    """What one host's TLS must be. `required`: no delivery to it without TLS (and no plaintext fallback).
    `context`: the TLS context (None: a verifying one against the host name when `required`, else the
    opportunistic one). `check`: called with the peer's certificate chain (DER, leaf first) after the
    handshake; None when it passes, else (RFC 8460 result type, text). `enforce`: a failed check ends the
    attempt (4.7.5); False: it is only reported (MTA-STS "testing")."""

    required: bool
    context: ssl.SSLContext | None = None
    check: Callable[[list[bytes]], tuple[str, str] | None] | None = None
    enforce: bool = True
    server_name: str | None = None  # the TLS SNI instead of the host name (DANE: the TLSA base domain)


@dataclass(frozen=True)
class TlsSession:
    """One connection's TLS, for TLS reporting (RFC 8460): `failure` is None when TLS was used and passed
    every check, else its result type (section 4.3: "starttls-not-supported", "certificate-host-mismatch",
    "certificate-expired", "certificate-not-trusted", "validation-failure", ...), with `text`. `enforced`: the
    failure stopped the delivery to this host."""

    host: Host
    address: str
    tls: bool
    failure: str | None = None
    text: str = ""
    enforced: bool = False


def outcomes_for_dns_error(message: OutgoingMessage, error: DnsError) -> list[RecipientOutcome]:
    """The outcomes when `MxResolver.destinations` failed: permanent or temporary for every recipient."""
    status: OutcomeStatus = "permanent" if isinstance(error, PermanentDnsError) else "temporary"
    return [
        RecipientOutcome(r.address, status, error.code, error.enhanced, error.text, None)
        for r in message.recipients
    ]


@dataclass
class _Result:
    """A reply or a local finding, before it is attached to recipients."""

    code: int
    enhanced: str | None
    text: str
    remote_reply: bool
    remote_mta: str | None = None

    @classmethod
    def reply(cls, code: int, message: str, remote_mta: str | None) -> _Result:
        """Split a reply's text (aiosmtplib joins lines with "\\n") into the enhanced code and the text."""
        lines = [line.strip() for line in message.split("\n")]
        match = _ENHANCED.match(lines[0]) if lines else None
        enhanced = match.group(0) if match else None
        if enhanced:
            lines = [line[len(enhanced) :].strip() if line.startswith(enhanced) else line for line in lines]
        return cls(code, enhanced, " ".join(line for line in lines if line), True, remote_mta)

    def outcome(self, address: str, status: OutcomeStatus, remote_dsn: bool = False) -> RecipientOutcome:
        enhanced = self.enhanced
        digit = {"delivered": "2", "temporary": "4", "permanent": "5"}[status]
        if enhanced and enhanced[0] != digit:
            enhanced = digit + enhanced[1:]
        return RecipientOutcome(
            address, status, self.code, enhanced, self.text, self.remote_mta, self.remote_reply, remote_dsn
        )


def _status_for(code: int) -> OutcomeStatus:
    """RFC 5321 section 4.2.1: 2yz done, 5yz permanent; 4yz and anything unexpected: try again later."""
    if 200 <= code < 300:
        return "delivered"
    if 500 <= code < 600:
        return "permanent"
    return "temporary"


class _AttemptFailed(Exception):
    """This address gave no usable session; `result` says why (the outcome if it was the last one)."""

    def __init__(self, result: _Result) -> None:
        super().__init__(result.text)
        self.result = result


class _TlsHandshakeFailed(Exception):
    """Opportunistic TLS failed after STARTTLS was accepted; the caller retries in plaintext."""


class _Broken(Exception):
    """The connection cannot carry more commands; recipients without an outcome are temporary."""

    def __init__(self, result: _Result) -> None:
        super().__init__(result.text)
        self.result = result


# -- TLS contexts --------------------------------------------------------------------------------------------


@functools.cache
def unverified_context() -> ssl.SSLContext:
    """Encryption without authentication (RFC 7435 opportunistic security): any certificate is accepted, as
    an MX host's certificate is seldom verifiable and plaintext would be the alternative. For the same
    reason the cipher list stays Python's default, CBC suites included (docs/decisions/0029); our own
    listeners offer AEAD only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@functools.cache
def _verifying_context() -> ssl.SSLContext:
    return ssl.create_default_context()  # system CAs, hostname checked against the MX/smarthost name


# -- message data --------------------------------------------------------------------------------------------


class _DotStuffer:
    """RFC 5321 section 4.5.2 transparency and section 2.3.8 line ends, incrementally over chunks: bare CR
    and bare LF become CRLF, a line starting with "." gets one more, and the end is CRLF "." CRLF. A CR at
    the end of a chunk is held back until the next chunk shows whether an LF follows."""

    def __init__(self) -> None:
        self._held_cr = False
        self._at_line_start = True

    def feed(self, chunk: bytes) -> bytes:
        if self._held_cr:
            chunk = b"\r" + chunk
            self._held_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._held_cr = True
        if not chunk:
            return b""
        out = _DOT_AT_LINE_START.sub(b"\n..", _LINE_END.sub(b"\r\n", chunk))
        if self._at_line_start and out.startswith(b"."):
            out = b"." + out
        self._at_line_start = out.endswith(b"\n")
        return out

    def finish(self) -> bytes:
        tail = b""
        if self._held_cr:
            tail, self._at_line_start = b"\r\n", True
        if not self._at_line_start:
            tail += b"\r\n"
        return tail + b".\r\n"


async def _chunks(data: bytes | ChunkSource) -> AsyncGenerator[bytes, None]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        for start in range(0, len(view), CHUNK_SIZE):
            yield bytes(view[start : start + CHUNK_SIZE])
        return
    iterator = aiter(data())
    try:
        async for chunk in iterator:
            yield chunk
    finally:  # the source may hold a store read open: close it now, not when garbage collected
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


# -- envelope encoding ---------------------------------------------------------------------------------------


def _split(address: str) -> tuple[str, str]:
    local, at, domain = address.rpartition("@")
    return (local, domain) if at else (address, "")


def _needs_utf8(address: str) -> bool:
    """A non-ASCII local part can only travel with SMTPUTF8; a non-ASCII domain can go as A-labels."""
    return not _split(address)[0].isascii()


def _ascii_domain(address: str) -> str:
    local, domain = _split(address)
    if not domain or domain.isascii() or domain.startswith("["):
        return address
    return f"{local}@{to_a_label(domain)}"


def _hang_up(smtp: aiosmtplib.SMTP, transport: asyncio.BaseTransport | None = None) -> None:
    """Close now. aiosmtplib's close() starts a TLS close_notify exchange that can outlive the call (30 s
    when the peer does not answer); after QUIT/221 or a failure there is nothing left to protect."""
    transport = transport or smtp.transport
    smtp.close()
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()


# -- the session ---------------------------------------------------------------------------------------------


@dataclass
class _Settings:
    helo_name: str
    port: int
    tls: TlsPolicy
    tls_context: ssl.SSLContext | None
    connect_timeout: float
    command_timeout: float
    data_timeout: float
    auth: tuple[str, str] | None
    local_address: str | None
    host_tls: Callable[[Host], HostTls | None] | None = None
    on_tls: Callable[[TlsSession], None] | None = None
    required_extension: str | None = None

    def report(self, session: TlsSession) -> None:
        if self.on_tls is not None:
            self.on_tls(session)


class _Session:
    """One established connection (after EHLO, STARTTLS and AUTH) to `host` at `address`."""

    def __init__(
        self, smtp: aiosmtplib.SMTP, host: Host, address: str, settings: _Settings, tls: bool
    ) -> None:
        self.smtp = smtp
        self.host = host
        self.address = address
        self.settings = settings
        self.tls = tls
        self.broken: _Result | None = None

    @property
    def where(self) -> str:
        return f"{self.host.name}[{self.address}]"

    def _lost(self, doing: str, exc: BaseException) -> _Broken:
        _hang_up(self.smtp)
        if isinstance(exc, (TimeoutError, aiosmtplib.SMTPTimeoutError)):
            text = f"conversation with {self.where} timed out while {doing}"
        else:
            text = f"lost connection with {self.where} while {doing}"
        self.broken = _Result(421, "4.4.2", text, False, self.host.name)
        return _Broken(self.broken)

    async def command(self, doing: str, *args: bytes) -> SMTPResponse:
        try:
            response = await self.smtp.execute_command(*args, timeout=self.settings.command_timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise self._lost(doing, exc) from exc
        if response.code == 421 or not self.smtp.is_connected:  # RFC 5321 3.8: the server is closing
            _hang_up(self.smtp)
            self.broken = _Result.reply(response.code, response.message, self.host.name)
        return response

    async def _write(self, data: bytes, doing: str, *, drain: bool = True) -> None:
        protocol = self.smtp.protocol
        try:
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("connection lost")
            protocol.write(data)
            # aiosmtplib offers no public flow control for raw writes; its protocol has the stdlib
            # StreamWriter mechanism (docs/decisions/0018). Without it, everything would be buffered.
            drain_helper = getattr(protocol, "_drain_helper", None)
            if drain and drain_helper is not None:
                async with asyncio.timeout(self.settings.data_timeout):  # not wait_for (decision 0045)
                    await drain_helper()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise self._lost(doing, exc) from exc

    async def _send_data(self, message: OutgoingMessage) -> SMTPResponse:
        """The message body after 354, then the reply to the final dot."""
        stuffer = _DotStuffer()
        source = _chunks(message.data)
        try:
            while True:
                try:
                    chunk = await source.__anext__()
                except StopAsyncIteration:
                    break
                except Exception as exc:  # the store failed: the only way to abort DATA is to hang up
                    _hang_up(self.smtp)
                    text = f"connection to {self.where} closed after a local error in an earlier message"
                    self.broken = _Result(421, "4.4.2", text, False, self.host.name)
                    local = _Result(451, "4.3.0", f"local error reading the message: {exc}", False)
                    raise _Broken(local) from exc
                out = stuffer.feed(chunk)
                if out:
                    await self._write(out, "sending message body")
        finally:
            await source.aclose()
        # No drain before reading: a reply that arrived while we waited would be discarded by aiosmtplib
        # (it accepts data only while a reply is awaited). The last piece is at most one chunk.
        await self._write(stuffer.finish(), "sending end of data", drain=False)
        protocol = self.smtp.protocol
        try:
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("connection lost")
            response = await protocol.read_response(timeout=self.settings.data_timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise self._lost("waiting for the reply to end of data", exc) from exc
        if response.code == 421:
            _hang_up(self.smtp)
            self.broken = _Result.reply(response.code, response.message, self.host.name)
        return response

    async def transfer(self, message: OutgoingMessage) -> list[RecipientOutcome]:
        """One mail transaction; one outcome per recipient, in order."""
        smtp, name = self.smtp, self.host.name
        outcomes: list[RecipientOutcome | None] = [None] * len(message.recipients)
        dsn = smtp.supports_extension("dsn")

        def fail_all(result: _Result, status: OutcomeStatus) -> list[RecipientOutcome]:
            return [
                o or result.outcome(r.address, status)
                for o, r in zip(outcomes, message.recipients, strict=True)
            ]

        def local(code: int, enhanced: str, text: str) -> _Result:
            return _Result(code, enhanced, text, False, name)

        # Local decisions first: nothing is sent for a message that this server cannot take.
        try:
            if message.sender:
                parse_reverse_path(f"<{message.sender}>")
        except AddressSyntaxError as exc:
            return fail_all(local(553, "5.1.7", f"bad sender address {message.sender!r}: {exc}"), "permanent")
        utf8 = (
            message.smtputf8
            or _needs_utf8(message.sender)
            or any(_needs_utf8(r.address) for r in message.recipients)
        )
        if utf8 and not smtp.supports_extension("smtputf8"):
            if message.smtputf8 or _needs_utf8(message.sender):
                enhanced, why = (
                    ("5.6.7", "the sender address is not ASCII")
                    if _needs_utf8(message.sender)
                    else ("5.6.9", "the message has UTF-8 headers")
                )
                text = f"{why} and {name} does not support SMTPUTF8 (RFC 6531 section 3.4)"
                return fail_all(local(553 if enhanced == "5.6.7" else 554, enhanced, text), "permanent")
            for i, recipient in enumerate(message.recipients):
                if _needs_utf8(recipient.address):
                    text = f"the recipient address is not ASCII and {name} does not support SMTPUTF8"
                    outcomes[i] = local(553, "5.6.7", text).outcome(recipient.address, "permanent")
            utf8 = False
        size_limit = smtp.esmtp_extensions.get("size", "")
        if size_limit.isdigit() and int(size_limit) > 0 and message.size > int(size_limit):
            text = f"message size {message.size} exceeds the size limit {size_limit} of {name}"
            return fail_all(local(552, "5.3.4", text), "permanent")
        if message.eight_bit and not smtp.supports_extension("8bitmime"):
            text = f"the message has 8-bit content and {name} does not support 8BITMIME (RFC 6152)"
            return fail_all(local(554, "5.6.3", text), "permanent")

        encoding = "utf-8" if utf8 else "ascii"
        try:
            sender = message.sender if utf8 else _ascii_domain(message.sender)
        except PermanentDnsError as exc:
            return fail_all(local(553, "5.1.7", f"bad sender address: {exc.text}"), "permanent")
        mail_args = [b"MAIL", b"FROM:<" + sender.encode(encoding) + b">"]
        if smtp.supports_extension("size") and message.size > 0:
            mail_args.append(b"SIZE=%d" % message.size)
        if message.eight_bit or (message.smtputf8 and smtp.supports_extension("8bitmime")):
            mail_args.append(b"BODY=8BITMIME")
        if utf8:
            mail_args.append(b"SMTPUTF8")
        if message.require_tls:
            if not (self.tls and smtp.supports_extension("requiretls")):  # RFC 8689 section 4.2.1
                text = f"REQUIRETLS support required: {name} does not offer REQUIRETLS over TLS"
                return fail_all(local(550, "5.7.30", text), "permanent")
            mail_args.append(b"REQUIRETLS")
        if dsn and message.ret and message.ret.upper() in ("FULL", "HDRS"):
            mail_args.append(b"RET=" + message.ret.upper().encode())
        if dsn and message.envid:
            mail_args.append(b"ENVID=" + encode_xtext(message.envid).encode())

        rcpt_args: list[tuple[int, list[bytes]]] = []
        for i, recipient in enumerate(message.recipients):
            if outcomes[i] is not None:
                continue
            try:
                parse_forward_path(f"<{recipient.address}>")
                address = recipient.address if utf8 else _ascii_domain(recipient.address)
            except (AddressSyntaxError, PermanentDnsError) as exc:
                text = f"bad recipient address {recipient.address!r}: {exc}"
                outcomes[i] = local(553, "5.1.3", text).outcome(recipient.address, "permanent")
                continue
            args = [b"RCPT", b"TO:<" + address.encode(encoding) + b">"]
            if dsn and recipient.notify and _NOTIFY.fullmatch(recipient.notify):
                args.append(b"NOTIFY=" + recipient.notify.upper().encode())
            if dsn and recipient.orcpt:
                addr_type, _, original = recipient.orcpt.partition(";")
                if _ADDR_TYPE.fullmatch(addr_type) and original and original.isascii():
                    args.append(f"ORCPT={addr_type};{encode_xtext(original)}".encode())
            rcpt_args.append((i, args))
        if not rcpt_args:
            return fail_all(local(554, "5.0.0", "no valid recipients"), "permanent")

        accepted: list[int] = []
        try:
            reply = await self.command("sending MAIL FROM", *mail_args)
            if reply.code // 100 != 2:
                return fail_all(_Result.reply(reply.code, reply.message, name), _status_for(reply.code))
            for i, args in rcpt_args:
                reply = await self.command("sending RCPT TO", *args)
                status = _status_for(reply.code)
                result = _Result.reply(reply.code, reply.message, name)
                if status == "delivered":
                    accepted.append(i)
                else:
                    outcomes[i] = result.outcome(message.recipients[i].address, status)
                if self.broken:
                    return fail_all(self.broken, "temporary")
            if not accepted:
                await self.command("sending RSET", b"RSET")  # RFC 5321 4.1.1.5: abandon the transaction
                return fail_all(local(554, "5.0.0", "no recipient accepted"), "permanent")
            reply = await self.command("sending DATA", b"DATA")
            if reply.code != 354:
                refused = fail_all(_Result.reply(reply.code, reply.message, name), _status_for(reply.code))
                if not self.broken:
                    await self.command("sending RSET", b"RSET")
                return refused
            reply = await self._send_data(message)
        except _Broken as exc:
            return fail_all(exc.result, "temporary")
        result = _Result.reply(reply.code, reply.message, name)
        status = _status_for(reply.code)
        for i in accepted:
            outcomes[i] = result.outcome(message.recipients[i].address, status, remote_dsn=dsn)
        return fail_all(result, status)  # every recipient has an outcome by now

    async def close(self) -> None:
        transport = self.smtp.transport
        try:
            if self.smtp.is_connected and self.broken is None:
                await self.smtp.quit(timeout=min(self.settings.command_timeout, QUIT_TIMEOUT))
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            _hang_up(self.smtp, transport)


def _server_name(host: Host, address: str) -> str:
    """The TLS server name: the MX or smarthost name, or the IP address for an address literal."""
    return address if host.name.startswith("[") else host.name


async def _open(host: Host, address: str, settings: _Settings, *, try_tls: bool) -> _Session:
    """Connect, EHLO (HELO if EHLO is refused with 5xx), STARTTLS and EHLO again, AUTH; or _AttemptFailed."""
    where = f"{host.name}[{address}]:{settings.port}"

    def failed(code: int, enhanced: str, text: str) -> _AttemptFailed:
        return _AttemptFailed(_Result(code, enhanced, text, False, host.name))

    def remote(exc: aiosmtplib.SMTPResponseException) -> _AttemptFailed:
        return _AttemptFailed(_Result.reply(exc.code, exc.message, host.name))

    smtp = aiosmtplib.SMTP(
        hostname=address,
        port=settings.port,
        local_hostname=settings.helo_name,
        source_address=(settings.local_address, 0) if settings.local_address else None,
        timeout=settings.command_timeout,
        start_tls=False,
    )
    try:
        try:
            await smtp.connect(timeout=settings.connect_timeout)
        except aiosmtplib.SMTPConnectResponseError as exc:  # greeting other than 220 (RFC 5321 3.1)
            raise remote(exc) from exc
        except aiosmtplib.SMTPConnectTimeoutError as exc:
            raise failed(421, "4.4.1", f"connect to {where}: timed out") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            errno = cause.errno if isinstance(cause, OSError) else None
            detail = os.strerror(errno) if errno else str(cause)  # "Connection refused"
            raise failed(421, "4.4.1", f"connect to {where}: {detail}") from exc

        async def hello() -> None:
            try:
                await smtp.ehlo(hostname=settings.helo_name, timeout=settings.command_timeout)
            except aiosmtplib.SMTPHeloError as exc:
                if not (500 <= exc.code < 600 and smtp.is_connected):
                    raise remote(exc) from exc
                try:  # RFC 5321 3.2: a server that does not know EHLO may still take HELO
                    await smtp.helo(hostname=settings.helo_name, timeout=settings.command_timeout)
                except aiosmtplib.SMTPResponseException as helo_exc:
                    raise remote(helo_exc) from helo_exc

        try:
            await hello()
            tls = False
            policy = settings.host_tls(host) if settings.host_tls is not None else None
            required = settings.tls == "required" or (policy is not None and policy.required)
            offered = smtp.supports_extension("starttls")
            if settings.tls != "none" and try_tls and offered:
                context = policy.context if policy is not None and policy.context else settings.tls_context
                if context is None:
                    if required:
                        context = await asyncio.to_thread(_verifying_context)  # reads the CA file
                    else:
                        context = unverified_context()
                try:
                    sni = policy.server_name if policy is not None and policy.server_name else None
                    await smtp.starttls(
                        server_hostname=sni or _server_name(host, address),
                        tls_context=context,
                        timeout=settings.command_timeout,
                    )
                except aiosmtplib.SMTPResponseException as exc:  # STARTTLS refused (454): still plaintext
                    if required or not smtp.is_connected:
                        settings.report(
                            TlsSession(host, address, False, "starttls-not-supported", str(exc), required)
                        )
                        raise remote(exc) from exc
                except (aiosmtplib.SMTPException, ssl.SSLError, OSError, TimeoutError) as exc:
                    _hang_up(smtp)
                    result_type = _handshake_result_type(exc)
                    settings.report(TlsSession(host, address, False, result_type, str(exc), required))
                    if required:
                        raise failed(421, "4.7.5", f"TLS handshake with {where} failed: {exc}") from exc
                    raise _TlsHandshakeFailed(str(exc)) from exc
                else:
                    tls = True
                    problem = None
                    if policy is not None and policy.check is not None:
                        problem = policy.check(peer_chain(smtp.transport))
                    if problem is not None:
                        result_type, text = problem
                        enforced = policy is not None and policy.enforce
                        settings.report(TlsSession(host, address, True, result_type, text, enforced))
                        if enforced:
                            raise failed(421, "4.7.5", f"TLS with {where} is not authenticated: {text}")
                    else:
                        settings.report(TlsSession(host, address, True))
                    await hello()  # RFC 3207 4.2: forget what was learned before TLS
            needed = settings.required_extension
            if needed and not (tls and smtp.supports_extension(needed.lower())):
                # the next host may offer it (RFC 8689 section 4.2.1: REQUIRETLS)
                raise failed(550, "5.7.30", f"{needed} support required: {where} does not offer it over TLS")
            if required and not tls:
                if not offered:
                    text = f"TLS is required, but {where} did not offer STARTTLS"
                    settings.report(TlsSession(host, address, False, "starttls-not-supported", text, True))
                raise failed(421, "4.7.4", f"TLS is required, but {where} did not offer STARTTLS")
            if not tls and settings.tls != "none" and not offered:
                text = f"{where} did not offer STARTTLS"
                settings.report(TlsSession(host, address, False, "starttls-not-supported", text))
            if settings.auth is not None:
                if not tls and settings.tls != "none":
                    raise failed(421, "4.7.4", f"not sending credentials to {where} without TLS")
                if not smtp.supports_extension("auth"):
                    raise failed(421, "4.7.4", f"{where} does not offer AUTH")
                try:
                    await smtp.login(*settings.auth, timeout=settings.command_timeout)
                except aiosmtplib.SMTPResponseException as exc:
                    raise remote(exc) from exc
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            what = "timed out" if isinstance(exc, (TimeoutError, aiosmtplib.SMTPTimeoutError)) else "lost"
            text = f"conversation with {where} {what} before the first transaction: {exc}"
            raise failed(421, "4.4.2", text) from exc
        except aiosmtplib.SMTPException as exc:
            raise failed(421, "4.4.2", f"session with {where} failed: {exc}") from exc
    except BaseException:
        _hang_up(smtp)
        raise
    return _Session(smtp, host, address, settings, tls)


def _handshake_result_type(exc: BaseException) -> str:
    """The RFC 8460 section 4.3 result type of a failed TLS handshake."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_CERT_HAS_EXPIRED
        return {62: "certificate-host-mismatch", 10: "certificate-expired"}.get(
            cause.verify_code, "certificate-not-trusted"
        )
    return "validation-failure"


def _der(certificate: object) -> bytes:
    if isinstance(certificate, bytes):
        return certificate
    encoding = getattr(ssl, "_ssl").ENCODING_DER  # noqa: B009 - the internal module's constant
    return bytes(certificate.public_bytes(encoding))  # type: ignore[attr-defined]


def peer_chain(transport: asyncio.BaseTransport | None) -> list[bytes]:
    """The certificate chain the peer sent (DER, leaf first); only the leaf where Python cannot tell more."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return []
    for holder in (ssl_object, getattr(ssl_object, "_sslobj", None)):
        method = getattr(holder, "get_unverified_chain", None)  # public in 3.13, internal in 3.10-3.12
        if method is None:
            continue
        try:
            chain = method()
        except (ssl.SSLError, ValueError, AttributeError):
            continue
        if chain:
            return [_der(certificate) for certificate in chain]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _family_matches(address: str, local_address: str | None) -> bool:
    if local_address is None:
        return True
    try:
        return ipaddress.ip_address(address).version == ipaddress.ip_address(local_address).version
    except ValueError:  # a host name (smarthost configured by name): let the connect decide
        return True


async def _connect(
    hosts: Sequence[Host], settings: _Settings, max_attempts: int
) -> tuple[_Session | None, _Result]:
    """RFC 5321 section 5.1: the addresses in order until one gives a session; or the last failure."""
    last = _Result(421, "4.4.1", "no address to deliver to", False, hosts[0].name if hosts else None)
    tried: set[str] = set()
    for host in hosts:
        for address in host.addresses:
            if address in tried or not _family_matches(address, settings.local_address):
                continue
            if len(tried) >= max_attempts:
                return None, last
            tried.add(address)
            try:
                try:
                    return await _open(host, address, settings, try_tls=True), last
                except _TlsHandshakeFailed:  # opportunistic: a fresh connection without STARTTLS
                    return await _open(host, address, settings, try_tls=False), last
            except _AttemptFailed as exc:
                last = exc.result
    return None, last


async def deliver(
    hosts: Sequence[Host],
    messages: Sequence[OutgoingMessage],
    *,
    helo_name: str,
    port: int = 25,
    tls: TlsPolicy = "opportunistic",
    tls_context: ssl.SSLContext | None = None,
    connect_timeout: float = 60.0,
    command_timeout: float = 120.0,
    data_timeout: float = 300.0,
    auth: tuple[str, str] | None = None,
    local_address: str | None = None,
    max_attempts: int = 10,
    host_tls: Callable[[Host], HostTls | None] | None = None,
    on_tls: Callable[[TlsSession], None] | None = None,
    required_extension: str | None = None,
) -> list[list[RecipientOutcome]]:
    """Deliver `messages` (all for the destination `hosts`) over one connection; one outcome list per
    message, one outcome per recipient in order.

    The addresses of `hosts` are tried in order (each address once, at most `max_attempts`) until one accepts
    the connection and EHLO; a refused or timed-out connection, a greeting other than 220, a failed EHLO/HELO,
    TLS required but unavailable, or a failed AUTH moves on to the next. If all fail, every recipient is
    "temporary" with the last failure. A connection lost during a transaction makes that message's open
    recipients and all later messages temporary.

    `tls`: "opportunistic" uses STARTTLS when offered, without verifying the certificate (unless
    `tls_context` says otherwise) and falls back to plaintext on a new connection when the handshake fails;
    "required" verifies the certificate against the host name (system CAs, or `tls_context`) and does not
    deliver without TLS; "none" never uses TLS. `auth` (smarthost) is (username, password), sent only over TLS
    unless `tls` is "none". Timeouts (RFC 5321 4.5.3.2 suggests 5 minutes for the greeting, MAIL and RCPT, 2
    for DATA, 3 per data block and 10 after the final dot; these defaults are shorter):
    `connect_timeout` TCP connect plus greeting, `command_timeout` each command reply and the TLS handshake,
    `data_timeout` each flushed data block and the reply to the final dot. `local_address` binds the source
    address (addresses of the other IP version are skipped). `host_tls` gives each host's own TLS
    requirement (`HostTls`; None: as `tls` says); `on_tls` is told of each connection's TLS (`TlsSession`).
    `required_extension` (REQUIRETLS): a host that does not offer it after TLS is skipped; when the last
    host tried lacked it, the outcome is permanent (5.7.30)."""
    if tls not in ("opportunistic", "required", "none"):
        raise ValueError(f"tls must be 'opportunistic', 'required' or 'none', not {tls!r}")
    if not helo_name.isascii() or not helo_name or any(c.isspace() for c in helo_name):
        raise ValueError(f"helo_name must be an ASCII host name, not {helo_name!r}")
    if local_address is not None:
        ipaddress.ip_address(local_address)  # ValueError for a typo, not a failed delivery
    if not any(m.recipients for m in messages):
        return [[] for _ in messages]
    settings = _Settings(
        helo_name,
        port,
        tls,
        tls_context,
        connect_timeout,
        command_timeout,
        data_timeout,
        auth,
        local_address,
        host_tls,
        on_tls,
        required_extension,
    )
    session, failure = await _connect(hosts, settings, max_attempts)
    if session is None:
        status: OutcomeStatus = "permanent" if failure.enhanced == "5.7.30" else "temporary"
        return [[failure.outcome(r.address, status) for r in m.recipients] for m in messages]
    results: list[list[RecipientOutcome]] = []
    try:
        for message in messages:
            if session.broken is not None:
                results.append([session.broken.outcome(r.address, "temporary") for r in message.recipients])
            elif message.recipients:
                results.append(await session.transfer(message))
            else:
                results.append([])
    finally:
        await session.close()
    return results
