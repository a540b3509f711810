"""The ManageSieve service (port 4190 with STARTTLS; RFC 5804).

Registered in `postoffice.protocols`; see `postoffice.net.service` for what a service declares. The glue in
`postoffice.managesieve.server` is imported only when a listener is built.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from postoffice.managesieve.settings import ManageSieveConfig
from postoffice.net.service import Service, ServiceContext, StandardPort

if TYPE_CHECKING:
    from postoffice.net.listener import Connection, Handler


def _factory(settings: ManageSieveConfig, ctx: ServiceContext) -> Handler:
    from postoffice.managesieve.server import serve_managesieve

    hostname = ctx.config.server.hostname
    store, authenticator, sieve = ctx.store, ctx.authenticator, ctx.config.sieve

    async def handle(conn: Connection) -> None:
        await serve_managesieve(
            conn, hostname=hostname, store=store, authenticator=authenticator, config=settings, sieve=sieve
        )

    return handle


async def _refuse(conn: Connection, reason: str) -> None:
    """Over the connection caps: BYE with TRYLATER (RFC 5804 section 1.3) instead of the greeting."""
    with contextlib.suppress(Exception):
        await conn.write(f'BYE (TRYLATER) "{reason}, try again later"\r\n'.encode())


MANAGESIEVE: Service[ManageSieveConfig] = Service(
    name="managesieve",
    purpose="mail programs manage their filters (Sieve scripts)",
    ports=(StandardPort("managesieve", 4190, "starttls"),),
    settings=ManageSieveConfig,
    factory=_factory,
    refuse=_refuse,
    pool="managesieve",
    caps=ManageSieveConfig,
)
