"""The one mailbox-store API that SMTP, POP3, IMAP, the web UI and the CLI use.

Implementation notes
- Protocol code imports only this module: `open_store`, `MailStore` and the dataclasses below. Backends
  live in their own packages (`postoffice.store.sqlite`; registry: `postoffice.store.backends`), so that
  another backend (PostgreSQL) is added behind the same API; tests/store/contract is the suite every
  backend passes (docs/decisions/0037).
- Cross-process changes (the CLI adding an account, lifting a lockout) are the backend's business behind the
  API: `resolve_recipient` sees every committed directory change, `login_guard_generation` changes after
  every unlock. Change notifications (`subscribe`, `subscribe_queue`) reach subscribers on the event loop
  after the commit, in commit order (`postoffice.store.changes.ChangeBus` does it for any backend).
- Every method is a coroutine; blocking work runs off the event loop.
- Writes are durable when the coroutine returns (group commit, fsync of the WAL); greylisting records
  may be committed without the fsync (decision 0089).
- Errors: `StoreError` (and subclasses) for anything a caller should map to a protocol reply.
- Deliveries (docs/decisions/0040): `commit_delivery` writes a whole delivery in one transaction: mailbox
  copies, each with its own text, mailbox, flags and keywords; the queue entry for remote recipients;
  generated DSNs; the results of the queued message it completes. `deliver`, `submit` and `queue_record`
  are forms of it; `postoffice.delivery` is the pipeline that plans what it writes.
- The outbound queue (docs/decisions/0017) lives in the same database: the local copies and the queued
  message commit in one transaction; delivery results commit with the DSNs they cause.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from postoffice.store.api import (
    ACL_ANYONE,
    ACL_RIGHTS,
    DEFAULT_MAILBOXES,
    DKIM_KEY_STATES,
    FINAL_STATUSES,
    LOGIN_GUARD_KINDS,
    LOGIN_HISTORY,
    LOGIN_LOCKOUT_KINDS,
    QUEUE_STATUSES,
    SYSTEM_FLAGS,
    Account,
    AclEntry,
    Alias,
    AlreadyExists,
    AppPassword,
    ChangeEvent,
    DeliveredCopy,
    Delivery,
    DeliveryResult,
    DkimKey,
    Domain,
    DuplicateMark,
    FccCopy,
    FlagUpdate,
    GeneratedMessage,
    GreylistEntry,
    Identity,
    LimitExceeded,
    LocalCopy,
    LoginEvent,
    LoginGuardEntry,
    MailboxChanges,
    MailboxInfo,
    MailboxStatus,
    MailStore,
    MessageInfo,
    MessageText,
    MetadataLimits,
    MetadataTooLarge,
    MetadataTooMany,
    NewCopy,
    NotFound,
    OutboundMessage,
    OutboundRecipient,
    OverQuota,
    PathLike,
    PendingReport,
    QueuedMessage,
    QueuedRecipient,
    QueueStats,
    QueueUpdate,
    QuotaUse,
    ReceivedReport,
    RecipientResult,
    ReportCount,
    ScriptErrorNotice,
    SecondFactor,
    SharedMailbox,
    SieveLimits,
    SieveQuotaExceeded,
    SieveScript,
    SieveScriptActive,
    StoredStsPolicy,
    StoreError,
    StoreFull,
    SubmitResult,
    ThreadSummary,
    VacationReply,
    WebSession,
    acl_rights,
    quota_refusal,
)
from postoffice.store.criteria import Address, All, And, Criteria, Date, HasFlag, Not, Or, Size, Text, UidIn
from postoffice.store.space import DEFAULT_MIN_FREE, DEFAULT_RESERVE

if TYPE_CHECKING:
    from postoffice.store.backends import StoreSettings


def open_store(
    settings: StoreSettings | PathLike, *, min_free_space: int | None = None, disk_reserve: int | None = None
) -> MailStore:
    """Open the store (creating its schema when missing) with the backend the settings name (`backend`,
    default "sqlite"; `postoffice.store.backends`). `settings` is the `[store]` section (`config.store`), or
    a path: the SQLite store at that path, with `min_free_space` and `disk_reserve` in bytes (None: the
    defaults; docs/decisions/0030). Call `await store.close()` when done."""
    from postoffice.store.backends import PathSettings, open_backend

    if isinstance(settings, str | os.PathLike):
        settings = PathSettings(
            Path(settings),
            min_free_space=DEFAULT_MIN_FREE if min_free_space is None else min_free_space,
            disk_reserve=DEFAULT_RESERVE if disk_reserve is None else disk_reserve,
        )
    elif min_free_space is not None or disk_reserve is not None:
        raise TypeError("min_free_space and disk_reserve go with a path; settings carry their own")
    return open_backend(settings)


__all__ = [
    "ACL_ANYONE",
    "ACL_RIGHTS",
    "DEFAULT_MAILBOXES",
    "DKIM_KEY_STATES",
    "FINAL_STATUSES",
    "LOGIN_GUARD_KINDS",
    "LOGIN_HISTORY",
    "LOGIN_LOCKOUT_KINDS",
    "QUEUE_STATUSES",
    "SYSTEM_FLAGS",
    "Account",
    "AclEntry",
    "Address",
    "Alias",
    "All",
    "AlreadyExists",
    "And",
    "AppPassword",
    "ChangeEvent",
    "Criteria",
    "Date",
    "DeliveredCopy",
    "Delivery",
    "DeliveryResult",
    "DkimKey",
    "Domain",
    "DuplicateMark",
    "FccCopy",
    "FlagUpdate",
    "GeneratedMessage",
    "GreylistEntry",
    "HasFlag",
    "Identity",
    "LimitExceeded",
    "LocalCopy",
    "LoginEvent",
    "LoginGuardEntry",
    "MailStore",
    "MailboxChanges",
    "MailboxInfo",
    "MailboxStatus",
    "MessageInfo",
    "MessageText",
    "MetadataLimits",
    "MetadataTooLarge",
    "MetadataTooMany",
    "NewCopy",
    "Not",
    "NotFound",
    "Or",
    "OutboundMessage",
    "OutboundRecipient",
    "OverQuota",
    "PendingReport",
    "QueueStats",
    "QueueUpdate",
    "QueuedMessage",
    "QueuedRecipient",
    "QuotaUse",
    "ReceivedReport",
    "RecipientResult",
    "ReportCount",
    "ScriptErrorNotice",
    "SecondFactor",
    "SharedMailbox",
    "SieveLimits",
    "SieveQuotaExceeded",
    "SieveScript",
    "SieveScriptActive",
    "Size",
    "StoreError",
    "StoreFull",
    "StoredStsPolicy",
    "SubmitResult",
    "Text",
    "ThreadSummary",
    "UidIn",
    "VacationReply",
    "WebSession",
    "acl_rights",
    "open_store",
    "quota_refusal",
]
