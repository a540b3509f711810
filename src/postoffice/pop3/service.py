"""The POP3 service (110 with STLS, 995 with implicit TLS; RFC 1939, RFC 2595, RFC 8314).

Registered in `postoffice.protocols`; see `postoffice.net.service` for what a service declares. POP3 and POP2
share the `[pop3]` section, one pool of connection caps ("pop") and the maildrop locks (one session per
maildrop across both protocols). The glue in `postoffice.pop3.server` is imported only when a listener is
built.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from postoffice.net.service import Service, ServiceContext, StandardPort
from postoffice.pop3.settings import Pop3Config

if TYPE_CHECKING:
    from postoffice.net.listener import Connection, Handler
    from postoffice.pop3.locks import MaildropLocks

_SAME_WITH_TLS = "same, TLS from the first byte (RFC 8314)"


def maildrop_locks(ctx: ServiceContext) -> MaildropLocks:
    """The maildrop locks every POP3 and POP2 listener of the server shares."""
    from postoffice.pop3.locks import MaildropLocks

    return ctx.shared("pop.maildrop_locks", MaildropLocks)


def _factory(settings: Pop3Config, ctx: ServiceContext) -> Handler:
    from postoffice.pop3.server import serve_pop3

    hostname = ctx.config.server.hostname
    store, authenticator, locks = ctx.store, ctx.authenticator, maildrop_locks(ctx)

    async def handle(conn: Connection) -> None:
        await serve_pop3(
            conn,
            hostname=hostname,
            store=store,
            authenticator=authenticator,
            config=settings,
            locks=locks,
        )

    return handle


async def refuse_pop_connection(conn: Connection, reason: str) -> None:
    """Over the connection caps: one negative greeting line (RFC 2449 [SYS/TEMP]; POP2 clients read "-")."""
    with contextlib.suppress(Exception):
        await conn.write(f"-ERR [SYS/TEMP] {reason}, try again later\r\n".encode())


POP3: Service[Pop3Config] = Service(
    name="pop3",
    purpose="mail programs download mail",
    ports=(
        StandardPort("pop3", 110, "starttls"),
        StandardPort("pop3s", 995, "implicit", purpose=_SAME_WITH_TLS),
    ),
    settings=Pop3Config,
    factory=_factory,
    refuse=refuse_pop_connection,
    pool="pop",
    caps=Pop3Config,
)
