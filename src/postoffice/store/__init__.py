"""The one mailbox-store API that SMTP, POP3, IMAP, the web UI and the CLI use.

Implementation notes
- Protocol code imports only this module: `open_store`, `MailStore` and the dataclasses below. SQLite
  specifics live in `postoffice.store.sqlite` so that another backend (PostgreSQL) can be added behind the
  same API.
- Every method is a coroutine; blocking work runs off the event loop.
- Writes are durable when the coroutine returns (group commit, fsync of the WAL).
- Errors: `StoreError` (and subclasses) for anything a caller should map to a protocol reply.
- The outbound queue (docs/decisions/0017) lives in the same database: `submit` stores the local copies and
  the queued message in one transaction; `queue_record` stores delivery results with the DSNs they cause in
  one.
"""

from __future__ import annotations

from postoffice.store.api import (
    DEFAULT_MAILBOXES,
    FINAL_STATUSES,
    QUEUE_STATUSES,
    SYSTEM_FLAGS,
    Account,
    Alias,
    AlreadyExists,
    ChangeEvent,
    DeliveredCopy,
    Domain,
    GeneratedMessage,
    LimitExceeded,
    LocalCopy,
    MailboxChanges,
    MailboxInfo,
    MailboxStatus,
    MailStore,
    MessageInfo,
    NotFound,
    OutboundMessage,
    OutboundRecipient,
    PathLike,
    QueuedMessage,
    QueuedRecipient,
    QueueStats,
    RecipientResult,
    StoreError,
    SubmitResult,
)
from postoffice.store.criteria import All, And, Criteria, Date, HasFlag, Not, Or, Size, Text, UidIn


def open_store(path: PathLike) -> MailStore:
    """Open (creating schema when missing) the SQLite store at `path`. Call `await store.close()` when
    done."""
    from postoffice.store.sqlite import SqliteMailStore

    return SqliteMailStore(path)


__all__ = [
    "DEFAULT_MAILBOXES",
    "FINAL_STATUSES",
    "QUEUE_STATUSES",
    "SYSTEM_FLAGS",
    "Account",
    "Alias",
    "All",
    "AlreadyExists",
    "And",
    "ChangeEvent",
    "Criteria",
    "Date",
    "DeliveredCopy",
    "Domain",
    "GeneratedMessage",
    "HasFlag",
    "LimitExceeded",
    "LocalCopy",
    "MailStore",
    "MailboxChanges",
    "MailboxInfo",
    "MailboxStatus",
    "MessageInfo",
    "Not",
    "NotFound",
    "Or",
    "OutboundMessage",
    "OutboundRecipient",
    "QueueStats",
    "QueuedMessage",
    "QueuedRecipient",
    "RecipientResult",
    "Size",
    "StoreError",
    "SubmitResult",
    "Text",
    "UidIn",
    "open_store",
]
