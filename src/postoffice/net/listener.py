"""Listeners and connections shared by every protocol: implicit TLS, STARTTLS, connection limits, shutdown.

Implementation notes
- Every listener accepts plain TCP; an implicit-TLS listener (RFC 8314) starts the TLS handshake at once with
  the *current* server context, so a certificate reloaded on SIGHUP applies to the next connection.
- STARTTLS (RFC 3207, RFC 2595, RFC 9051): `Connection.start_tls()` first discards every byte that arrived
  before the upgrade and has not been consumed (CVE-2011-0411: plaintext pipelined behind STARTTLS must never
  be read as if it had come over TLS), then hands the socket to the TLS layer without yielding to the event
  loop in between.
- Limits (docs/decisions/0028): per service (smtp, pop, imap), a global cap and a per-client cap on
  concurrent connections; a client is an IPv4 address or an IPv6 /64, as the login guard counts them
  (`auth.guard.client_key`). A connection that has not logged in is "pre-login" (every port-25 session is);
  one that has, never counts as a candidate for eviction. When a new connection finds a cap reached, a
  pre-login connection that is waiting on its client (a read, a write, a TLS handshake) is closed to make
  room: for the per-client cap, that client's oldest; for the global cap, the oldest of the client holding
  the most pre-login connections. The evicted session says its protocol's goodbye (`Evicted`). Only when no
  such connection exists is the new one handed to the protocol's `refuse` callback (which sends its "too
  busy" reply) and closed. So idle connections from a few addresses cannot lock everybody out, and
  sessions that logged in are never touched.
- Deadlines (RFC 5321 section 4.5.3.2: timeouts are per command): a read waits at most until the current
  command's deadline, which starts at the first read after the server's last write (its reply to the
  previous command, or the greeting) and lies `timeout` seconds later. Later reads of the same command keep
  it, except that every byte received moves it 1/`min_data_rate` seconds later, never to more than
  `timeout` from now (Postfix's smtpd_per_request_deadline and smtpd_min_data_rate): a client sending one
  byte every few seconds cannot hold a connection, a slow but steady upload is not cut. Before login, reads,
  writes and the TLS handshake also end at the login deadline (`login_timeout` after the connection
  opened; none on port 25, which has no login): `LoginTimeout`.
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
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from postoffice.auth.guard import client_key
from postoffice.net.tls import describe_tls
from postoffice.net.tls_exporter import tls_exporter
from postoffice.plural import counted

log = logging.getLogger("postoffice.net")

HANDSHAKE_TIMEOUT = 30.0
READ_CHUNK = 65536
#: Octets a compressed connection's read gives at most (a small message of a client can expand 1000-fold).
INFLATED_CHUNK = 4 * READ_CHUNK
#: Bytes per second that move a command's deadline by one second ([limits] min_data_rate's default).
DEFAULT_MIN_DATA_RATE = 500.0
#: Seconds an evicted connection's goodbye may take to be written.
GOODBYE_TIMEOUT = 5.0


class _TlsReadBuffer(threading.local):
    """The read buffer of every TLS connection of this thread's event loop (see the module notes). Per thread:
    `recv_into` releases the GIL, so loops in two threads must not read into the same buffer."""

    buffer: bytearray | None = None
    view: memoryview | None = None


_tls_read_buffer = _TlsReadBuffer()


def _share_tls_read_buffer(writer: asyncio.StreamWriter) -> None:
    share_tls_read_buffer(writer.transport)


def share_tls_read_buffer(transport: asyncio.BaseTransport) -> None:
    """Replace the TLS connection's own read buffer with the thread's shared one, where that is safe: on a
    selector event loop, which reads into the buffer and hands the bytes to the TLS layer in one call. For
    any transport after its handshake (the mail listeners' and the web's)."""
    if not isinstance(asyncio.get_running_loop(), asyncio.selector_events.BaseSelectorEventLoop):
        return
    protocol = getattr(transport, "_ssl_protocol", None)
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
    """The command's deadline passed; the session may say goodbye before closing."""


class LoginTimeout(ReadTimeout):
    """The client did not log in within the listener's login timeout; the session may say goodbye."""


class Evicted(ConnectionClosedError):
    """The connection had not logged in and was closed to make room for a new one (module notes); the
    session may say goodbye (a write then waits at most GOODBYE_TIMEOUT)."""


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
        *,
        login_timeout: float | None = None,
        min_data_rate: float = DEFAULT_MIN_DATA_RATE,
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
        #: DEFLATE both ways once a protocol turned it on (IMAP COMPRESS, RFC 4978; `start_compression`)
        self._deflate: zlib._Compress | None = None
        self._inflate: zlib._Decompress | None = None
        self._loop = asyncio.get_running_loop()
        self.opened = self._loop.time()
        #: Loop time by which the client must have logged in; None on port 25 and after the login.
        self.login_deadline: float | None = None if login_timeout is None else self.opened + login_timeout
        self.logged_in = False
        self.evicted = False
        self.min_data_rate = min_data_rate
        #: The current command's deadline (loop time); None until the first read after a write.
        self._command_deadline: float | None = None
        # The waits in progress, so that a shutdown or an eviction can end them at once.
        self._read_wait: asyncio.Timeout | None = None
        self._read_idle = False
        self._other_wait: asyncio.Timeout | None = None  # a write or a TLS handshake
        self._handshake_failed = False

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

    def channel_binding(self) -> bytes | None:
        """The connection's tls-exporter channel binding (RFC 9266) when it can be had: TLS 1.3 only
        (`postoffice.net.tls_exporter`); None otherwise."""
        if not self.tls_active:
            return None
        return tls_exporter(self.writer.get_extra_info("ssl_object"))

    def mark_logged_in(self) -> None:
        """The client logged in: no login deadline any more, and the connection is never evicted."""
        self.logged_in = True
        self.login_deadline = None

    @property
    def evictable(self) -> bool:
        """Pre-login and waiting on the client (not in the middle of our own work, such as a delivery)."""
        waiting = self._read_wait is not None or self._other_wait is not None
        return waiting and not self.logged_in and not self.evicted

    def evict(self) -> None:
        """Close this pre-login connection to make room: the wait it is in ends now with `Evicted`."""
        self.evicted = True
        for wait in (self._read_wait, self._other_wait):
            if wait is not None:
                wait.reschedule(self._loop.time())

    def _until(self, when: float) -> tuple[float, bool]:
        """`when`, or the login deadline if that comes first; and whether it does."""
        login = self.login_deadline
        if login is not None and login < when:
            return login, True
        return when, False

    # `timeout` is the command's budget, kept across reads: no caller's asyncio.timeout could say it
    async def read(self, timeout: float, *, idle: bool = False) -> bytes:  # noqa: ASYNC109
        """Up to READ_CHUNK bytes (INFLATED_CHUNK when compressed); b"" when the peer closed.

        `timeout` is per command, not per read (module notes): the first read after a write starts the
        deadline; bytes received move it later at `min_data_rate`, never beyond `timeout` from now. Raises
        ReadTimeout (LoginTimeout when the login deadline came first), Evicted, or ConnectionClosedError on
        a reset. `idle` marks a wait between transactions: a shutdown interrupts it at once
        (ShutdownRequested)."""
        if self.evicted:
            raise Evicted("evicted")
        if idle and self.shutting_down.is_set():
            raise ShutdownRequested()
        inflate = self._inflate
        if inflate is not None:
            return await self._read_inflated(inflate, timeout, idle)
        return await self._read_raw(timeout, idle)

    async def _read_inflated(
        self,
        inflate: zlib._Decompress,
        timeout: float,  # noqa: ASYNC109 - the command's budget, as `read`'s
        idle: bool,
    ) -> bytes:
        """`read` of a compressed connection: at most INFLATED_CHUNK octets at a time, however far the
        client's data expands (what is not taken yet waits, compressed, for the next read)."""
        while True:
            pending = inflate.unconsumed_tail
            if pending:
                data = pending
            else:
                data = await self._read_raw(timeout, idle)
                if not data:
                    return b""
            try:
                out = inflate.decompress(data, INFLATED_CHUNK)
            except zlib.error as exc:
                raise ConnectionClosedError(f"compressed data not valid: {exc}") from exc
            if out:
                return out
            if inflate.eof:
                return b""  # the client ended its compressed stream: nothing more can come

    def start_compression(self) -> None:
        """Compress what is written and decompress what is read from now on: raw DEFLATE (RFC 1951), as
        IMAP COMPRESS=DEFLATE wants it (RFC 4978 section 4). The compressor uses a 4 KiB window and a
        small memory level, about 24 KiB; the decompressor must accept the client's 32 KiB window."""
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -12, 5)
        self._inflate = zlib.decompressobj(-15)

    async def _read_raw(self, timeout: float, idle: bool) -> bytes:  # noqa: ASYNC109
        if self._command_deadline is None:
            self._command_deadline = self._loop.time() + timeout
        when, login_first = self._until(self._command_deadline)
        try:
            async with asyncio.timeout_at(when) as deadline:
                self._read_wait, self._read_idle = deadline, idle
                try:
                    data = await self.reader.read(READ_CHUNK)
                finally:
                    self._read_wait = None
        except TimeoutError as exc:
            if self.evicted:
                raise Evicted("evicted") from exc
            if idle and self.shutting_down.is_set():
                raise ShutdownRequested() from exc
            if login_first:
                raise LoginTimeout("login timeout") from exc
            raise ReadTimeout("timeout") from exc
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            raise ConnectionClosedError(str(exc)) from exc
        # A write may have ended the command meanwhile (IMAP IDLE writes while a read is pending).
        if data and self.min_data_rate > 0 and self._command_deadline is not None:
            earned = self._command_deadline + len(data) / self.min_data_rate
            self._command_deadline = min(earned, self._loop.time() + timeout)
        return data

    def interrupt_idle(self) -> None:
        """Called at shutdown: end an idle wait now (the session then says goodbye)."""
        if self._read_wait is not None and self._read_idle:
            self._read_wait.reschedule(self._loop.time())

    # `timeout` is combined with the login deadline and eviction, which decide the error: not a caller's
    async def write(self, data: bytes, timeout: float = 300.0) -> None:  # noqa: ASYNC109
        """Send `data`, waiting at most `timeout` for the peer to take it (less before login, see `read`).
        A write answers the client, so the next read starts a new command deadline."""
        if not data:
            return
        deflate = self._deflate
        if deflate is not None:  # each write flushed whole, so the client can read every response now
            data = deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH)
        self._command_deadline = None
        try:
            self.writer.write(data)
            transport = self.writer.transport
            if not transport.get_write_buffer_size() and not transport.is_closing():
                return  # the socket took all of it (the usual answer): nothing to wait for, no timer to set
            when, login_first = self._until(
                self._loop.time() + (min(timeout, GOODBYE_TIMEOUT) if self.evicted else timeout)
            )
            async with asyncio.timeout_at(when) as deadline:
                self._other_wait = deadline
                try:
                    await self.writer.drain()
                finally:
                    self._other_wait = None
        except TimeoutError as exc:
            if self.evicted:
                raise Evicted("evicted while writing") from exc
            if login_first:
                raise LoginTimeout("login timeout while writing") from exc
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
        when, _ = self._until(self._loop.time() + HANDSHAKE_TIMEOUT)
        try:
            async with asyncio.timeout_at(when) as deadline:
                self._other_wait = deadline
                try:
                    await self.writer.start_tls(context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
                except BaseException:
                    # asyncio closed the socket under the TLS layer: the stream never learns it is closed
                    self._handshake_failed = True
                    raise
                finally:
                    self._other_wait = None
        except TimeoutError as exc:
            if self.evicted:
                raise Evicted("evicted during the TLS handshake") from exc
            raise ConnectionClosedError("TLS handshake timed out") from exc
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            raise ConnectionClosedError(f"TLS handshake failed: {exc}") from exc
        _share_tls_read_buffer(self.writer)
        self.tls_active = True
        self.tls_info = describe_tls(self.writer.get_extra_info("ssl_object"))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        if self._handshake_failed:
            return  # nothing to wait for (and wait_closed would wait its full 5 s)
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
    """Caps shared by the listeners of one service (e.g. smtp: ports 25, 587 and 465; pop: 110, 995 and 109),
    with room made by evicting pre-login connections (module notes, docs/decisions/0028)."""

    def __init__(self, name: str, max_connections: int, max_connections_per_ip: int) -> None:
        self.name = name
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.total = 0
        #: Per client (IPv4 address or IPv6 /64): its connections, oldest first.
        self.clients: dict[str, dict[Connection, None]] = {}
        self.evictions = 0

    def admit(self, conn: Connection) -> str | None:
        """Count `conn` in, evicting a pre-login connection when a cap is reached; the reason it is refused
        (over a cap with nothing to evict), or None. Either way `leave(conn)` must follow."""
        key = client_key(conn.peer_ip)
        mine = self.clients.setdefault(key, {})
        reason = None
        # `_evict` makes room and says whether it could (short-circuit: only when a cap is reached)
        full = len(mine) >= self.max_connections_per_ip
        if full and not self._evict(self._victim([key]), "too many connections from the client"):
            reason = "too many connections from your address"
        full = self.total >= self.max_connections
        if reason is None and full and not self._evict(self._victim(self.clients), "too many connections"):
            reason = "too many connections"
        mine[conn] = None
        self.total += 1
        return reason

    def leave(self, conn: Connection) -> None:
        """Count `conn` out (idempotent: an evicted connection was counted out when it was chosen)."""
        key = client_key(conn.peer_ip)
        mine = self.clients.get(key)
        if mine is None or conn not in mine:
            return
        del mine[conn]
        self.total -= 1
        if not mine:
            del self.clients[key]

    def _victim(self, keys: Iterable[str]) -> Connection | None:
        """The evictable connection of the client (among `keys`) with the most pre-login connections; of
        that client's, the oldest."""
        best: Connection | None = None
        best_rank: tuple[int, float] | None = None
        for key in keys:
            conns = self.clients[key]
            candidates = [conn for conn in conns if conn.evictable]
            if not candidates:
                continue
            pre_login = sum(1 for conn in conns if not conn.logged_in)
            rank = (-pre_login, candidates[0].opened)
            if best_rank is None or rank < best_rank:
                best, best_rank = candidates[0], rank
        return best

    def _evict(self, victim: Connection | None, why: str) -> bool:
        if victim is None:
            return False
        log.info(
            "%s: %s; closing a connection from %s that has not logged in (open %.0f s)",
            self.name,
            why,
            victim.peer_ip,
            asyncio.get_running_loop().time() - victim.opened,
        )
        self.leave(victim)
        victim.evict()
        self.evictions += 1
        return True


Handler = Callable[[Connection], Awaitable[None]]
Refuser = Callable[[Connection, str], Awaitable[None]]


class AppListener(Protocol):
    """A listener served by a server of its own (the web's), on sockets the listener layer bound."""

    def stop_accepting(self) -> None: ...

    async def wait_closed(self, grace: float) -> None: ...


def bind_sockets(address: str, port: int) -> list[socket.socket]:
    """Listening sockets for `address` ("" or "*": every address, IPv4 and IPv6) and `port`, bound as
    asyncio's start_server binds them (SO_REUSEADDR, IPv6 sockets v6-only); not yet listening."""
    host = None if address in ("", "*") else address
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(f"no address to listen on for {address!r}")
    return sockets


class ListenerGroup:
    """All listening sockets of the server, with shared connection accounting."""

    def __init__(
        self,
        tls_context: Callable[[], ssl.SSLContext | None],
        *,
        min_data_rate: float = DEFAULT_MIN_DATA_RATE,
    ) -> None:
        self._tls_context = tls_context
        self.min_data_rate = min_data_rate
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[Connection] = set()
        self.shutting_down = asyncio.Event()
        self.bound: dict[str, tuple[str, int]] = {}
        self._apps: list[AppListener] = []

    @property
    def active_connections(self) -> int:
        return len(self._tasks)

    async def bind(
        self,
        spec: ListenerSpec,
        handler: Handler,
        refuse: Refuser,
        limits: ConnectionLimits,
        *,
        login_timeout: float | None = None,
    ) -> None:
        """Bind the socket now (so privileges can be dropped afterwards) and start accepting.

        `login_timeout`: seconds a client has from connecting to logging in (None: no login, port 25)."""
        listener_spec = spec

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is None:  # asyncio runs start_server's coroutine callback as a task: never
                raise RuntimeError("a connection callback ran outside a task")
            self._tasks.add(task)
            conn = Connection(
                reader,
                writer,
                listener_spec,
                self._context_for(listener_spec),
                self.shutting_down,
                login_timeout=login_timeout,
                min_data_rate=self.min_data_rate,
            )
            ip = conn.peer_ip
            over_limit = limits.admit(conn)
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
                limits.leave(conn)  # the session is over; closing the socket may still take a moment
                await conn.close()
                self._tasks.discard(task)
                self._connections.discard(conn)

        host: str | None = None if spec.address in ("", "*") else spec.address
        server = await asyncio.start_server(
            on_connect, host=host, port=spec.port, reuse_address=True, family=socket.AF_UNSPEC, backlog=512
        )
        self._servers.append(server)
        self._listening(spec, server.sockets[0])

    async def bind_app(
        self, spec: ListenerSpec, start: Callable[[list[socket.socket]], Awaitable[AppListener]]
    ) -> None:
        """Bind the sockets of a listener served by another server (the web's ASGI server) now, before the
        privilege drop, and let `start` serve them; its stop and wait join the other listeners'."""
        sockets = bind_sockets(spec.address, spec.port)
        try:
            app = await start(sockets)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self._apps.append(app)
        self._listening(spec, sockets[0])

    def _listening(self, spec: ListenerSpec, sock: socket.socket) -> None:
        sockname = sock.getsockname()
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
        for app in self._apps:
            app.stop_accepting()
        for conn in list(self._connections):
            conn.interrupt_idle()

    async def wait_closed(self, grace: float) -> None:
        """Wait up to `grace` seconds for sessions to end, then cancel the rest."""
        if self._apps:
            await asyncio.gather(*(app.wait_closed(grace) for app in self._apps), return_exceptions=True)
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
