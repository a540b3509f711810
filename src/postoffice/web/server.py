"""The web listeners: uvicorn's HTTP/1.1 protocol (h11) serving an ASGI app on the server's event loop, on
sockets bound by the listener layer before the privilege drop (docs/decisions/0046).

Implementation notes
- No HTTP parsing here: uvicorn's `H11Protocol` (over the h11 parser) does it. This module adds what uvicorn
  leaves to a front proxy and a mail server must not: connection caps (total and per client, IPv6 per /64,
  the same client keys as the mail listeners), and a deadline for the request head. uvicorn starts its
  keep-alive timer only after a response, so a client that connects and sends nothing, or sends its header
  fields one byte a minute, would hold a connection for ever; here a connection that has no request in
  progress `request_head_timeout` seconds after it opened or after its last response is closed.
- HTTPS uses a context that hands each handshake to the current server context (`TlsContexts.
  dispatching_context`), so SIGHUP reloads the certificate for the web as for the mail listeners.
- Shutdown: stop accepting, let responses in progress end (live-update streams end themselves when
  `shutting_down` is set), close what is left after the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from postoffice.auth.guard import client_key
from postoffice.net.listener import share_tls_read_buffer

log = logging.getLogger("postoffice.web")

#: ASGI application (starlette.types.ASGIApp without importing starlette here).
App = Callable[..., Any]


class ConnectionCounter:
    """Open connections of one web pool, in total and per client key."""

    def __init__(self, max_connections: int, max_connections_per_ip: int) -> None:
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.total = 0
        self.per_client: dict[str, int] = {}

    def admit(self, ip: str) -> str | None:
        key = client_key(ip)
        if self.total >= self.max_connections:
            return "too many connections"
        if self.per_client.get(key, 0) >= self.max_connections_per_ip:
            return "too many connections from your address"
        self.total += 1
        self.per_client[key] = self.per_client.get(key, 0) + 1
        return None

    def leave(self, ip: str) -> None:
        key = client_key(ip)
        self.total -= 1
        left = self.per_client.get(key, 1) - 1
        if left:
            self.per_client[key] = left
        else:
            self.per_client.pop(key, None)


_BUSY_TEXT = b"Too busy, try again later.\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 10\r\n"
    b"connection: close\r\ncontent-length: " + str(len(_BUSY_TEXT)).encode() + b"\r\n\r\n" + _BUSY_TEXT
)


class _Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with the caps and the request-head deadline (module notes)."""

    counter: ConnectionCounter
    head_timeout: float

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        self._peer_ip = str(peer[0]) if peer else ""
        refused = self.counter.admit(self._peer_ip)
        self._admitted = refused is None
        super().connection_made(transport)
        if refused is not None:
            log.info("web: refused %s: %s", self._peer_ip, refused)
            transport.write(_BUSY)
            transport.close()
            return
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm_head_deadline()
        share_tls_read_buffer(transport)  # 256 KiB less per HTTPS connection (postoffice.net.listener notes)

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_deadline_passed)

    def _head_deadline_passed(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # no request in progress: none came in time
            with contextlib.suppress(Exception):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if getattr(self, "_admitted", False):
            self._admitted = False
            self.counter.leave(self._peer_ip)
        deadline = getattr(self, "_head_deadline", None)
        if deadline is not None:
            deadline.cancel()


class WebListener:
    """One HTTP or HTTPS listener (its sockets) serving one ASGI app."""

    def __init__(
        self,
        name: str,
        app: App,
        sockets: list[socket.socket],
        *,
        ssl_context: ssl.SSLContext | None,
        counter: ConnectionCounter,
        keep_alive_timeout: float,
        request_head_timeout: float,
        max_head_size: int,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.name = name
        self.stopping = stopping
        self.sockets = sockets
        self.ssl_context = ssl_context
        self.config = uvicorn.Config(
            app,
            lifespan="off",
            http="h11",
            ws="none",
            interface="asgi3",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=True,
            proxy_headers=False,
            timeout_keep_alive=int(max(1, keep_alive_timeout)),
            h11_max_incomplete_event_size=max_head_size,
        )
        self.config.load()
        self.state = ServerState()
        self.counter = counter
        self.head_timeout = request_head_timeout
        self._servers: list[asyncio.Server] = []
        self._date_task: asyncio.Task[None] | None = None

    def _protocol(self) -> asyncio.Protocol:
        protocol = _Protocol(config=self.config, server_state=self.state, app_state={})
        protocol.counter = self.counter
        protocol.head_timeout = self.head_timeout
        return protocol

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._refresh_headers()
        for sock in self.sockets:
            server = await loop.create_server(self._protocol, sock=sock, ssl=self.ssl_context, backlog=512)
            self._servers.append(server)
        self._date_task = loop.create_task(self._tick(), name=f"web-{self.name}-date")

    def _refresh_headers(self) -> None:
        from email.utils import formatdate

        self.state.default_headers = [(b"date", formatdate(usegmt=True).encode())]

    async def _tick(self) -> None:
        while True:  # the Date field, once a second (uvicorn's main loop does this when it runs the server)
            await asyncio.sleep(1)
            self._refresh_headers()

    def stop_accepting(self) -> None:
        if self.stopping is not None:
            self.stopping.set()  # live-update streams end
        for server in self._servers:
            server.close()
        for protocol in list(self.state.connections):
            protocol.shutdown()  # idle keep-alive connections close; a response in progress ends its cycle

    async def wait_closed(self, grace: float) -> None:
        """Wait up to `grace` seconds for responses in progress to end, then drop every connection left.
        A connection already closing (its response sent; over TLS, waiting for the client's close_notify,
        which asyncio waits 30 s for) does not hold the shutdown up."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                # polled: uvicorn's connection set signals nothing when it changes
                while any(not p.transport.is_closing() for p in self.state.connections):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        for protocol in list(self.state.connections):
            with contextlib.suppress(Exception):
                protocol.transport.abort()
        for task in list(self.state.tasks):
            task.cancel()
        if self._date_task is not None:
            self._date_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._date_task
        for server in self._servers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await server.wait_closed()
