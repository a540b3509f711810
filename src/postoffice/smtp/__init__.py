"""SMTP: the sans-IO protocol core (`postoffice.smtp.protocol`), envelope path parsing
(`postoffice.smtp.address`) and, beside them, the asyncio glue, inbound/submission policy, queue and delivery.

The protocol core's event model and the contract with the glue are described in the docstring of
`postoffice.smtp.protocol`; the DATA/BDAT line-ending policy in docs/decisions/0004-smtp-line-policy.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from postoffice.smtp.protocol import (
        DATA_CHUNK_SIZE,
        ConnectionClosed,
        Envelope,
        Event,
        Hello,
        MailFrom,
        MessageAborted,
        MessageComplete,
        MessageData,
        MessageStart,
        Quit,
        RcptTo,
        Reset,
        SmtpServerProtocol,
        SmtpSettings,
        SmtpUsageError,
        StartTls,
    )

__all__ = [
    "DATA_CHUNK_SIZE",
    "ConnectionClosed",
    "Envelope",
    "Event",
    "Hello",
    "MailFrom",
    "MessageAborted",
    "MessageComplete",
    "MessageData",
    "MessageStart",
    "Quit",
    "RcptTo",
    "Reset",
    "SmtpServerProtocol",
    "SmtpSettings",
    "SmtpUsageError",
    "StartTls",
]


def __getattr__(name: str) -> Any:
    """The protocol core's names, imported on first use (PEP 562): the config imports
    postoffice.smtp.settings and .service, which must not load the protocol core."""
    if name in __all__:
        from postoffice.smtp import protocol

        return getattr(protocol, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
