"""Listeners and connections shared by every protocol: implicit TLS, STARTTLS, connection limits, shutdown.

Implementation notes
- Every listener accepts plain TCP; an implicit-TLS listener (RFC 8314) starts the TLS handshake at once with
  the *current* server context, so a certificate reloaded on SIGHUP applies to the next connection.
- STARTTLS (RFC 3207, RFC 2595, RFC 9051): `Connection.start_tls()` first discards every byte that arrived
  before the upgrade and has not been consumed (CVE-2011-0411: plaintext pipelined behind STARTTLS must never
  be read as if it had come over TLS), then hands the socket to the TLS layer without yielding to the event
  loop in between.
- Limits: a global cap and a per-client-IP cap on concurrent connections. A connection over a cap is handed
  to the protocol's `refuse` callback (which sends its protocol's "too busy" reply) and closed.
- Graceful shutdown: `stop_accepting()` closes the listening sockets; `shutting_down` is set so that idle
  sessions end themselves at once while transactions in flight may finish; `wait_closed(grace)` then cancels
  what is left.
- Memory per connection: asyncio's TLS layer (`asyncio.sslproto.SSLProtocol`, CPython 3.11+) gives every
  connection its own 256 KiB bytearray that the socket is read into (see cpython issue #109534), which made an
  idle IMAP connection over TLS cost about 290 KiB instead of under 40 KiB. On a selector event loop the bytes
  are copied out of that buffer (into the connection's incoming `ssl.MemoryBIO`) in the same call that read
  them, so after the handshake the connection is switched to one buffer shared by every connection of the
  thread (`_share_tls_read_buffer`). Each handshake in flight still has its own (asyncio allocates it first);
  docs/benchmarks.md "IMAP: idle connections" has the numbers. Other event loops, and asyncio versions without
  those attributes, are left as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from postoffice.net.tls import describe_tls
from postoffice.plural import counted

log = logging.getLogger("postoffice.net")

HANDSHAKE_TIMEOUT = 30.0
READ_CHUNK = 65536


class _TlsReadBuffer(threading.local):
    """The read buffer of every TLS connection of this thread's event loop (see the module notes). Per thread:
    `recv_into` releases the GIL, so loops in two threads must not read into the same buffer."""

    buffer: bytearray | None = None
    view: memoryview | None = None


_tls_read_buffer = _TlsReadBuffer()


def _share_tls_read_buffer(writer: asyncio.StreamWriter) -> None:
    """Replace the TLS connection's own read buffer with the thread's shared one, where that is safe: on a
    selector event loop, which reads into the buffer and hands the bytes to the TLS layer in one call."""
    if not isinstance(asyncio.get_running_loop(), asyncio.selector_events.BaseSelectorEventLoop):
        return
    protocol = getattr(writer.transport, "_ssl_protocol", None)
    own = getattr(protocol, "_ssl_buffer", None)
    if not isinstance(own, bytearray) or not hasattr(protocol, "_ssl_buffer_view"):
        return
    shared = _tls_read_buffer
    if shared.buffer is None or len(shared.buffer) < len(own):
        shared.buffer = bytearray(len(own))
        shared.view = memoryview(shared.buffer)
    protocol._ssl_buffer = shared.buffer  # type: ignore[union-attr]
    protocol._ssl_buffer_view = shared.view  # type: ignore[union-attr]


class ConnectionClosedError(Exception):
    """The peer went away, or the connection timed out."""


class ReadTimeout(ConnectionClosedError):
    """The peer sent nothing for the protocol's timeout; the session may say goodbye before closing."""


class ShutdownRequested(Exception):
    """The server is shutting down and the session was idle: say goodbye and close."""


class Connection:
    """One client connection, with the few operations every protocol needs."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        listener: ListenerSpec,
        context: Callable[[], ssl.SSLContext | None],
        shutting_down: asyncio.Event,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.listener = listener
        self._context = context
        self.shutting_down = shutting_down
        peer = writer.get_extra_info("peername") or ("unknown", 0)
        self.peer_host: str = str(peer[0])
        self.peer_port: int = int(peer[1]) if len(peer) > 1 else 0
        sock = writer.get_extra_info("sockname") or ("unknown", 0)
        self.local_host: str = str(sock[0])
        self.local_port: int = int(sock[1]) if len(sock) > 1 else 0
        self.tls_active = False
        self.tls_info = ""
        self._idle_timeout: asyncio.Timeout | None = None

    @property
    def peer_ip(self) -> str:
        """The client address without IPv4-mapped IPv6 decoration."""
        try:
            ip = ipaddress.ip_address(self.peer_host)
        except ValueError:
            return self.peer_host
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ip)

    @property
    def starttls_available(self) -> bool:
        return not self.tls_active and self._context() is not None

    async def read(self, timeout: float, *, idle: bool = False) -> bytes:
        """Up to READ_CHUNK bytes; b"" when the peer closed. Raises ConnectionClosedError on timeout/reset.

        `idle` marks a wait between transactions: a shutdown interrupts it at once (ShutdownRequested)."""
        if idle and self.shutting_down.is_set():
            raise ShutdownRequested()
        try:
            async with asyncio.timeout(timeout) as deadline:
                if idle:
                    self._idle_timeout = deadline
                try:
                    return await self.reader.read(READ_CHUNK)
                finally:
                    self._idle_timeout = None
        except TimeoutError as exc:
            if idle and self.shutting_down.is_set():
                raise ShutdownRequested() from exc
            raise ReadTimeout("timeout") from exc
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            raise ConnectionClosedError(str(exc)) from exc

    def interrupt_idle(self) -> None:
        """Called at shutdown: end an idle wait now (the session then says goodbye)."""
        if self._idle_timeout is not None:
            self._idle_timeout.reschedule(asyncio.get_running_loop().time())

    async def write(self, data: bytes, timeout: float = 300.0) -> None:
        if not data:
            return
        try:
            self.writer.write(data)
            async with asyncio.timeout(timeout):
                await self.writer.drain()
        except TimeoutError as exc:
            raise ConnectionClosedError("write timeout") from exc
        except (ConnectionError, ssl.SSLError, OSError, RuntimeError) as exc:
            raise ConnectionClosedError(str(exc)) from exc

    async def start_tls(self) -> None:
        """Upgrade to TLS (server side). Input received before the upgrade is discarded (CVE-2011-0411)."""
        context = self._context()
        if context is None:
            raise ConnectionClosedError("no TLS context")
        # The StreamReader may hold plaintext the peer sent behind the upgrade command. Drop it; nothing
        # yields to the event loop between this and the transport switch inside start_tls, so no new
        # plaintext slips in.
        buffered = getattr(self.reader, "_buffer", None)
        if isinstance(buffered, bytearray) and buffered:
            log.info(
                "discarding %s pipelined before the TLS upgrade from %s",
                counted(len(buffered), "byte"),
                self.peer_ip,
            )
            buffered.clear()
        try:
            await self.writer.start_tls(context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (ConnectionError, ssl.SSLError, OSError, TimeoutError) as exc:
            raise ConnectionClosedError(f"TLS handshake failed: {exc}") from exc
        _share_tls_read_buffer(self.writer)
        self.tls_active = True
        self.tls_info = describe_tls(self.writer.get_extra_info("ssl_object"))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.writer.wait_closed()


@dataclass(frozen=True)
class ListenerSpec:
    name: str
    protocol: str
    address: str
    port: int
    tls: str  # "none" | "starttls" | "implicit"


class ConnectionLimits:
    """Caps shared by the listeners of one service (e.g. smtp: port 25; pop: 110, 995 and 109)."""

    def __init__(self, name: str, max_connections: int, max_connections_per_ip: int) -> None:
        self.name = name
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.total = 0
        self.per_ip: dict[str, int] = {}

    def enter(self, ip: str) -> str | None:
        """Count the connection in; the reason it is over a cap, or None."""
        self.total += 1
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        if self.total > self.max_connections:
            return "too many connections"
        if self.per_ip[ip] > self.max_connections_per_ip:
            return "too many connections from your address"
        return None

    def leave(self, ip: str) -> None:
        self.total -= 1
        self.per_ip[ip] -= 1
        if not self.per_ip[ip]:
            del self.per_ip[ip]


Handler = Callable[[Connection], Awaitable[None]]
Refuser = Callable[[Connection, str], Awaitable[None]]


class ListenerGroup:
    """All listening sockets of the server, with shared connection accounting."""

    def __init__(self, tls_context: Callable[[], ssl.SSLContext | None]) -> None:
        self._tls_context = tls_context
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[Connection] = set()
        self.shutting_down = asyncio.Event()
        self.bound: dict[str, tuple[str, int]] = {}

    @property
    def active_connections(self) -> int:
        return len(self._tasks)

    async def bind(
        self, spec: ListenerSpec, handler: Handler, refuse: Refuser, limits: ConnectionLimits
    ) -> None:
        """Bind the socket now (so privileges can be dropped afterwards) and start accepting."""
        listener_spec = spec

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            conn = Connection(
                reader, writer, listener_spec, self._context_for(listener_spec), self.shutting_down
            )
            ip = conn.peer_ip
            over_limit = limits.enter(ip)
            self._connections.add(conn)
            try:
                if listener_spec.tls == "implicit":
                    try:
                        await conn.start_tls()
                    except ConnectionClosedError as exc:
                        log.info("%s: TLS handshake with %s failed: %s", listener_spec.name, ip, exc)
                        return
                if over_limit is not None:
                    log.info("%s: refused %s: %s", listener_spec.name, ip, over_limit)
                    await refuse(conn, over_limit)
                else:
                    await handler(conn)
            except (ConnectionClosedError, ShutdownRequested):
                pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: session with %s failed", listener_spec.name, ip)
            finally:
                limits.leave(ip)  # the session is over; closing the socket may still take a moment
                await conn.close()
                self._tasks.discard(task)
                self._connections.discard(conn)

        host: str | None = None if spec.address in ("", "*") else spec.address
        server = await asyncio.start_server(
            on_connect, host=host, port=spec.port, reuse_address=True, family=socket.AF_UNSPEC, backlog=512
        )
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        self.bound[spec.name] = (str(sockname[0]), int(sockname[1]))
        log.info(
            "%s listening on %s port %d (%s, tls=%s)",
            spec.name,
            sockname[0],
            sockname[1],
            spec.protocol,
            spec.tls,
        )

    def _context_for(self, spec: ListenerSpec) -> Callable[[], ssl.SSLContext | None]:
        if spec.tls == "none":
            return lambda: None
        return self._tls_context

    def stop_accepting(self) -> None:
        self.shutting_down.set()
        for server in self._servers:
            server.close()
        for conn in list(self._connections):
            conn.interrupt_idle()

    async def wait_closed(self, grace: float) -> None:
        """Wait up to `grace` seconds for sessions to end, then cancel the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "cancelled %s still running after %.0f s", counted(len(pending), "session"), grace
                )
                await asyncio.wait(pending, timeout=5)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
