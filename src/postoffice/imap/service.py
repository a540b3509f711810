"""The IMAP service (143 with STARTTLS, 993 with implicit TLS; RFC 9051, RFC 3501, RFC 8314).

Registered in `postoffice.protocols`; see `postoffice.net.service` for what a service declares. The session
(`postoffice.imap.session`) is imported only when a listener is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from postoffice.imap.settings import ImapConfig
from postoffice.net.service import Service, ServiceContext, StandardPort

if TYPE_CHECKING:
    from postoffice.net.listener import Connection, Handler

_SAME_WITH_TLS = "same, TLS from the first byte (RFC 8314)"


def _factory(imap: ImapConfig, ctx: ServiceContext) -> Handler:
    from postoffice.imap.session import ImapSettings, serve_imap

    cfg = ctx.config
    settings = ImapSettings(
        hostname=cfg.server.hostname,
        autologout=imap.autologout,
        idle_timeout=imap.idle_timeout,
        append_limit=imap.append_limit,
        max_mailboxes=imap.max_mailboxes,
        max_mailbox_name_length=imap.max_mailbox_name_length,
        max_mailbox_depth=imap.max_mailbox_depth,
        max_keyword_length=imap.max_keyword_length,
        max_mailbox_keywords=imap.max_mailbox_keywords,
        spool_dir=cfg.store.spool_dir,
    )
    store, authenticator = ctx.store, ctx.authenticator

    async def handle(conn: Connection) -> None:
        await serve_imap(conn, store=store, authenticator=authenticator, settings=settings)

    return handle


async def refuse(conn: Connection, reason: str) -> None:
    """Over the caps: an untagged BYE as the greeting (RFC 9051 section 7.1.5)."""
    from postoffice.imap.session import refuse_imap_connection

    await refuse_imap_connection(conn, reason)


IMAP: Service[ImapConfig] = Service(
    name="imap",
    purpose="mail programs read and organise mail on the server",
    ports=(
        StandardPort("imap", 143, "starttls"),
        StandardPort("imaps", 993, "implicit", purpose=_SAME_WITH_TLS),
    ),
    settings=ImapConfig,
    factory=_factory,
    refuse=refuse,
    pool="imap",
    caps=ImapConfig,
)
