"""The SMTP services: `smtp` (port 25: mail for our domains, and relaying for `[smtp] relay_networks`) and
`submission` (587 with STARTTLS, 465 with implicit TLS: users' mail programs, RFC 6409, RFC 8314).

Registered in `postoffice.protocols`; see `postoffice.net.service` for what a service declares. Both count in
one pool of connection caps (`[smtp] max_connections`, `max_connections_per_ip`), and every submission
listener shares one hourly sending limiter per account. The glue in `postoffice.smtp.server` is imported
only when a listener is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from postoffice.net.service import Service, ServiceContext, StandardPort
from postoffice.smtp.settings import SmtpConfig, SubmissionConfig

if TYPE_CHECKING:
    from postoffice.net.listener import Connection, Handler

_SAME_WITH_TLS = "same, TLS from the first byte (RFC 8314)"


def _handler(ctx: ServiceContext, mode: str) -> Handler:
    from postoffice.delivery.pipeline import shared_pipeline
    from postoffice.delivery.submission import shared_policy
    from postoffice.smtp.server import SmtpServerSettings, SmtpSession
    from postoffice.spam.screen import shared_screen

    cfg = ctx.config
    smtp, submission = cfg.smtp, cfg.submission
    settings = SmtpServerSettings(
        hostname=cfg.server.hostname,
        spool_dir=cfg.store.spool_dir,
        max_message_size=smtp.max_message_size,
        max_recipients=smtp.max_recipients,
        command_timeout=smtp.command_timeout,
        data_timeout=smtp.data_timeout,
        max_errors=smtp.max_errors,
        mode=mode,
        max_messages_per_hour=submission.max_messages_per_hour,
        max_recipients_per_message=submission.max_recipients_per_message,
        received_client_address=submission.received_client_address,
        trusted_networks=smtp.relay_networks,
    )
    store, authenticator = ctx.store, ctx.authenticator
    pipeline = shared_pipeline(ctx)
    policy = shared_policy(ctx)
    screen = shared_screen(ctx) if mode == "mx" else None  # DNSBL and greylisting (decision 0089)

    async def handle(conn: Connection) -> None:
        await SmtpSession(
            conn,
            settings,
            store,
            authenticator=authenticator,
            pipeline=pipeline,
            policy=policy,
            screen=screen,
        ).run()

    return handle


def _inbound(settings: SmtpConfig, ctx: ServiceContext) -> Handler:
    return _handler(ctx, "mx")


def _submission(settings: SubmissionConfig, ctx: ServiceContext) -> Handler:
    return _handler(ctx, "submission")


async def refuse(conn: Connection, reason: str) -> None:
    """Over the caps: 421 instead of the greeting (RFC 5321 section 3.1)."""
    from postoffice.smtp.server import refuse_connection

    await refuse_connection(conn, reason)


SMTP: Service[SmtpConfig] = Service(
    name="smtp",
    purpose="other mail servers deliver mail to us",
    ports=(StandardPort("smtp", 25, "starttls"),),
    settings=SmtpConfig,
    factory=_inbound,
    refuse=refuse,
    pool="smtp",
    caps=SmtpConfig,
    login=False,  # port 25 has no login: no login deadline, and every session stays evictable
)

SUBMISSION: Service[SubmissionConfig] = Service(
    name="submission",
    purpose="users' mail programs send mail",
    ports=(
        StandardPort("submission", 587, "starttls"),
        StandardPort("submissions", 465, "implicit", purpose=_SAME_WITH_TLS),
    ),
    settings=SubmissionConfig,
    factory=_submission,
    refuse=refuse,
    pool="smtp",
    caps=SmtpConfig,
)
