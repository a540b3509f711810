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
    LOGIN_GUARD_KINDS,
    LOGIN_LOCKOUT_KINDS,
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
    LoginGuardEntry,
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
    StoreFull,
    SubmitResult,
)
from postoffice.store.criteria import All, And, Criteria, Date, HasFlag, Not, Or, Size, Text, UidIn


def open_store(
    path: PathLike, *, min_free_space: int | None = None, disk_reserve: int | None = None
) -> MailStore:
    """Open (creating schema when missing) the SQLite store at `path`. Call `await store.close()` when
    done. `min_free_space` and `disk_reserve` (bytes, None: the defaults): docs/decisions/0030."""
    from postoffice.store.space import DEFAULT_MIN_FREE, DEFAULT_RESERVE
    from postoffice.store.sqlite import SqliteMailStore

    return SqliteMailStore(
        path,
        min_free_space=DEFAULT_MIN_FREE if min_free_space is None else min_free_space,
        disk_reserve=DEFAULT_RESERVE if disk_reserve is None else disk_reserve,
    )


__all__ = [
    "DEFAULT_MAILBOXES",
    "FINAL_STATUSES",
    "LOGIN_GUARD_KINDS",
    "LOGIN_LOCKOUT_KINDS",
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
    "LoginGuardEntry",
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
    "StoreFull",
    "SubmitResult",
    "Text",
    "UidIn",
    "open_store",
]
