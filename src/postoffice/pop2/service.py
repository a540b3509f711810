"""The POP2 service (RFC 937, port 109): no TLS, passwords in clear, so off by default.

Registered in `postoffice.protocols`; see `postoffice.net.service` for what a service declares. POP2 shares
the `[pop3]` section, the "pop" pool of connection caps and the maildrop locks with POP3. The glue in
`postoffice.pop2.server` is imported only when a listener is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from postoffice.net.service import Service, ServiceContext, StandardPort
from postoffice.pop3.service import maildrop_locks, refuse_pop_connection
from postoffice.pop3.settings import Pop3Config

if TYPE_CHECKING:
    from postoffice.net.listener import Connection, Handler


def _factory(settings: Pop3Config, ctx: ServiceContext) -> Handler:
    from postoffice.pop2.server import serve_pop2

    hostname = ctx.config.server.hostname
    store, authenticator, locks = ctx.store, ctx.authenticator, maildrop_locks(ctx)

    async def handle(conn: Connection) -> None:
        await serve_pop2(
            conn,
            hostname=hostname,
            store=store,
            authenticator=authenticator,
            config=settings,
            locks=locks,
        )

    return handle


POP2: Service[Pop3Config] = Service(
    name="pop2",
    purpose="the legacy protocol; off by default",
    ports=(StandardPort("pop2", 109, "none", enabled=False),),
    settings=Pop3Config,
    factory=_factory,
    refuse=refuse_pop_connection,
    pool="pop",
    caps=Pop3Config,
    tls_modes=("none",),
    tls_problem=("POP2 has no TLS (RFC 937 defines none)", 'set tls = "none"'),
    cleartext=True,
    label="POP2",
    note=(
        "POP2 (RFC 937) has no TLS and sends passwords in clear, so it is off by default; enabling it on an "
        "address other than loopback also needs [auth] allow_plaintext_auth = true"
    ),
    file_note=(
        "POP2 (RFC 937) has no TLS and sends passwords in clear; enabling it on an address",
        "other than loopback also needs [auth] allow_plaintext_auth = true",
    ),
)
