"""The web service: webmail on HTTPS (443) and HTTP (80) redirecting to it (docs/decisions/0046).

Registered in `postoffice.protocols`. Served by uvicorn on sockets the listener layer binds
(`postoffice.web.server`); the application is `postoffice.web.app`, imported only when a listener starts.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from postoffice.net.service import Service, ServiceContext, StandardPort
from postoffice.web.settings import WebConfig

if TYPE_CHECKING:
    from postoffice.net.listener import AppListener, ListenerSpec
    from postoffice.web.server import ConnectionCounter


def _counter(settings: WebConfig, ctx: ServiceContext) -> ConnectionCounter:
    """The one connection counter of the http and https listeners."""
    from postoffice.web.server import ConnectionCounter

    return ctx.shared(
        "web.connections",
        lambda: ConnectionCounter(settings.max_connections, settings.max_connections_per_ip),
    )


def _app(
    settings: WebConfig, ctx: ServiceContext, spec: ListenerSpec
) -> Callable[[list[socket.socket]], Awaitable[AppListener]]:
    from postoffice.web.app import build_app, build_redirect_app
    from postoffice.web.server import WebListener

    counter = _counter(settings, ctx)
    if spec.tls == "implicit":
        if ctx.tls is None:
            raise RuntimeError(f"listener {spec.name}: TLS without a certificate")
        ssl_context = ctx.tls.dispatching_context()
        app = ctx.shared("web.app", lambda: build_app(ctx, settings))
    else:
        ssl_context = None
        app = build_redirect_app(ctx)

    async def start(sockets: list[socket.socket]) -> AppListener:
        if spec.tls == "implicit":  # where port 80 sends browsers
            ports: dict[str, int] = ctx.shared("web.ports", dict)
            ports["https"] = int(sockets[0].getsockname()[1])
        listener = WebListener(
            spec.name,
            app,
            sockets,
            ssl_context=ssl_context,
            counter=counter,
            keep_alive_timeout=settings.keep_alive_timeout,
            request_head_timeout=settings.request_timeout,
            max_head_size=settings.max_request_header_size,
            stopping=ctx.shared("web.stopping", asyncio.Event),
        )
        await listener.start()
        return listener

    return start


HTTP: Service[WebConfig] = Service(
    name="http",
    purpose="webmail in a browser",
    ports=(
        StandardPort("http", 80, "none", purpose="webmail (redirects to https)", offset_port=8080),
        StandardPort("https", 443, "implicit", offset_port=8443),
    ),
    settings=WebConfig,
    app=_app,
    tls_modes=("none", "implicit"),
    tls_problem=("HTTP has no STARTTLS", 'use tls = "implicit" (https) or "none"'),
)
