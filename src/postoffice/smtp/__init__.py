"""SMTP: the sans-IO protocol core (`postoffice.smtp.protocol`), envelope path parsing
(`postoffice.smtp.address`) and, beside them, the asyncio glue, inbound/submission policy, queue and delivery.

The protocol core's event model and the contract with the glue are described in the docstring of
`postoffice.smtp.protocol`; the DATA/BDAT line-ending policy in docs/decisions/0004-smtp-line-policy.md.
"""

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
