"""The store API: data classes and the abstract `MailStore` every backend implements.

Data model (designed for IMAP, RFC 9051 / RFC 3501 / RFC 7162):
- Domains we serve; accounts (login = full address, case-insensitive) own mailboxes; aliases map an address or
  `@domain` (catch-all) to one or more target addresses.
- Every account is created with INBOX, Drafts, Sent, Trash, Junk and Archive, the last five with their
  special-use attributes (RFC 6154).
- A mailbox has a UIDVALIDITY taken from one store-wide counter (never reused, also not after delete and
  re-create) and a UIDNEXT that only grows.
- A message has a UID, system flags, keywords, an internal date, a size, and a MODSEQ taken from its account's
  counter, which increases with every change (RFC 7162). Expunged messages leave tombstones (mailbox, uid,
  modseq).
- Message content is stored once however many recipients share it, with its parsed structure (see
  `postoffice.message`), so that reads never re-parse.
"""

from __future__ import annotations

import abc
import os
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from postoffice.directory.resolver import Resolution
    from postoffice.message import ParsedMessage
    from postoffice.store.criteria import Criteria

#: Mailboxes every account has from creation, with their RFC 6154 special-use attribute.
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)

#: System flags stored by the store (\Recent is session state and never stored).
SYSTEM_FLAGS: tuple[str, ...] = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")


class StoreError(Exception):
    """A store operation failed; the message is safe to show to an administrator, not to a peer."""


class NotFound(StoreError):
    """The named domain, account, alias, mailbox or message does not exist."""


class AlreadyExists(StoreError):
    """The domain, account, alias or mailbox exists already."""


@dataclass(frozen=True)
class Domain:
    id: int
    name: str


@dataclass(frozen=True)
class Account:
    id: int
    address: str
    domain: str
    password_hash: str
    created: float


@dataclass(frozen=True)
class Alias:
    source: str  # "user@domain" or "@domain" (catch-all)
    targets: tuple[str, ...]


@dataclass(frozen=True)
class MailboxInfo:
    id: int
    account_id: int
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    messages: int
    size: int
    subscribed: bool


@dataclass(frozen=True)
class MailboxStatus:
    """What SELECT and STATUS report (RFC 9051 sections 6.3.2 and 6.3.11)."""

    mailbox: MailboxInfo
    unseen: int
    first_unseen_uid: int | None
    highest_modseq: int
    recent: int  # messages no session has been told about as \Recent yet
    keywords: tuple[str, ...]  # keywords in use in the mailbox


@dataclass(frozen=True)
class MessageInfo:
    id: int
    mailbox_id: int
    uid: int
    flags: frozenset[str]  # system flags and keywords
    internaldate: float
    size: int
    modseq: int
    content_id: int


@dataclass(frozen=True)
class MailboxChanges:
    """What changed in a mailbox after a MODSEQ (`MailStore.changes_since`), from one consistent read."""

    messages: list[MessageInfo]  # messages added or changed (flags) after the MODSEQ, in UID order
    expunged: list[int]  # UIDs expunged after the MODSEQ, ascending
    highest_modseq: int  # the mailbox's highest MODSEQ at the time of the read


@dataclass(frozen=True)
class DeliveredCopy:
    account_id: int
    mailbox_id: int
    uid: int


@dataclass(frozen=True)
class ChangeEvent:
    """Published to subscribers after the commit that made the change (never before)."""

    kind: str  # "added" | "flags" | "expunged" | "mailbox"
    account_id: int
    mailbox_id: int
    uids: tuple[int, ...] = ()
    modseq: int = 0
    extra: dict[str, object] = field(default_factory=dict)


class MailStore(abc.ABC):
    """The one storage API. All methods are coroutines and safe to call concurrently from one event loop."""

    # -- lifecycle -------------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def close(self) -> None:
        """Finish queued writes, checkpoint, close. Idempotent."""

    # -- directory: domains, accounts, aliases ---------------------------------------------------------------
    @abc.abstractmethod
    async def add_domain(self, name: str) -> Domain: ...

    @abc.abstractmethod
    async def remove_domain(self, name: str) -> None:
        """Refuses (StoreError) while accounts or aliases of the domain exist."""

    @abc.abstractmethod
    async def list_domains(self) -> list[Domain]: ...

    @abc.abstractmethod
    async def add_account(self, address: str, password_hash: str) -> Account:
        """Creates the account and its default mailboxes. The domain must exist."""

    @abc.abstractmethod
    async def set_password(self, address: str, password_hash: str) -> None: ...

    @abc.abstractmethod
    async def remove_account(self, address: str) -> None:
        """Removes the account, its mailboxes and messages."""

    @abc.abstractmethod
    async def get_account(self, address: str) -> Account | None:
        """Case-insensitive lookup by full address."""

    @abc.abstractmethod
    async def list_accounts(self, domain: str | None = None) -> list[Account]: ...

    @abc.abstractmethod
    async def add_alias(self, source: str, targets: Sequence[str]) -> Alias:
        """`source` is an address or "@domain" (catch-all) of a domain we serve; targets are addresses."""

    @abc.abstractmethod
    async def remove_alias(self, source: str) -> None: ...

    @abc.abstractmethod
    async def list_aliases(self) -> list[Alias]: ...

    @abc.abstractmethod
    async def get_alias(self, source: str) -> Alias | None: ...

    @abc.abstractmethod
    async def resolve_recipient(self, address: str) -> Resolution:
        """Apply `postoffice.directory.resolver.resolve` to the current directory data, in one read."""

    # -- mailboxes ----------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def list_mailboxes(self, account_id: int) -> list[MailboxInfo]: ...

    @abc.abstractmethod
    async def get_mailbox(self, account_id: int, name: str) -> MailboxInfo | None:
        """INBOX is matched case-insensitively, other names exactly."""

    @abc.abstractmethod
    async def create_mailbox(self, account_id: int, name: str, special_use: str | None = None) -> MailboxInfo:
        """A new mailbox with a UIDVALIDITY never used before. AlreadyExists when the name (or the special
        use) is taken. Names are paths with "/" as the hierarchy separator; a trailing "/" is dropped."""

    @abc.abstractmethod
    async def delete_mailbox(self, account_id: int, name: str) -> None:
        """Remove the mailbox and its messages (not its children: "a/b" survives deleting "a"). Not INBOX."""

    @abc.abstractmethod
    async def rename_mailbox(self, account_id: int, old_name: str, new_name: str) -> None:
        """Rename with every mailbox below it, keeping UIDVALIDITY. Renaming INBOX moves its messages to a new
        mailbox and leaves INBOX empty (RFC 9051 section 6.3.6)."""

    @abc.abstractmethod
    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        """Subscriptions are names; they may name mailboxes that do not exist."""

    @abc.abstractmethod
    async def list_subscriptions(self, account_id: int) -> list[str]: ...

    @abc.abstractmethod
    async def mailbox_status(self, mailbox_id: int) -> MailboxStatus: ...

    @abc.abstractmethod
    async def claim_recent(self, mailbox_id: int) -> int:
        """RFC 3501 \\Recent: returns the lowest UID that is recent for the calling session (all existing UIDs
        at or above it); no later call gets those UIDs again."""

    # -- messages -----------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def deliver(
        self,
        source: IO[bytes],
        parsed: ParsedMessage,
        account_ids: Iterable[int],
        mailbox: str = "INBOX",
        flags: Iterable[str] = (),
        internaldate: float | None = None,
    ) -> list[DeliveredCopy]:
        """Store the message read from `source` (from offset 0, `parsed.size` bytes) into `mailbox` of each
        account (each account once, however often it is named). Durable when it returns; all copies or
        none."""

    @abc.abstractmethod
    async def append(
        self,
        mailbox_id: int,
        source: IO[bytes],
        parsed: ParsedMessage,
        flags: Iterable[str] = (),
        internaldate: float | None = None,
    ) -> DeliveredCopy:
        """IMAP APPEND: one message into one mailbox; durable when it returns."""

    @abc.abstractmethod
    async def copy_messages(
        self, source_mailbox_id: int, uids: Iterable[int], target_mailbox_id: int, *, move: bool = False
    ) -> list[tuple[int, int]]:
        """COPY / MOVE: (source UID, new UID) pairs in source UID order, flags and internal dates kept; a move
        expunges the sources in the same transaction (RFC 6851)."""

    @abc.abstractmethod
    async def list_messages(self, mailbox_id: int) -> list[MessageInfo]:
        """Messages of a mailbox in UID order."""

    @abc.abstractmethod
    async def changes_since(self, mailbox_id: int, modseq: int) -> MailboxChanges:
        """The messages with a MODSEQ above `modseq` (new or with changed flags), the UIDs expunged with a
        MODSEQ above it (from the tombstones) and the mailbox's highest MODSEQ, in one read transaction: a
        session that has seen everything up to `modseq` is up to date after applying them. NotFound for an
        unknown mailbox."""

    @abc.abstractmethod
    async def search(self, mailbox_id: int, criteria: Criteria) -> list[int]:
        """IMAP SEARCH (RFC 9051 6.4.4): UIDs of the mailbox's messages matching `criteria`, ascending, from
        one consistent snapshot. Matching rules: `postoffice.store.criteria`. NotFound for an unknown
        mailbox; ValueError for a criterion the store cannot answer (\\Recent)."""

    @abc.abstractmethod
    async def get_parsed(self, content_id: int) -> ParsedMessage: ...

    @abc.abstractmethod
    def open_content(self, content_id: int, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        """Stream the message bytes in chunks (memory bounded, whatever the message size)."""

    @abc.abstractmethod
    async def read_content(self, content_id: int) -> bytes:
        """The whole message; for small messages and tests. Prefer `open_content` for streaming."""

    @abc.abstractmethod
    async def read_contents(self, content_ids: Sequence[int]) -> dict[int, bytes]:
        """Several whole messages in one read (read-ahead for small messages); missing ids are left out."""

    @abc.abstractmethod
    async def expunge(self, mailbox_id: int, uids: Iterable[int]) -> list[int]:
        """Remove messages durably, leaving tombstones; returns the UIDs removed."""

    @abc.abstractmethod
    async def store_flags(self, mailbox_id: int, uids: Iterable[int], flags: Iterable[str], mode: str) -> int:
        """mode: "add" | "remove" | "replace". Returns the new MODSEQ."""

    # -- change notifications --------------------------------------------------------------------------------
    @abc.abstractmethod
    def subscribe(self, account_id: int, callback: Callable[[ChangeEvent], None]) -> Callable[[], None]:
        """Call `callback` on the event loop after each committed change of the account; returns
        unsubscribe."""

    def invalidate_caches(self) -> None:  # noqa: B027 - a no-op is right for a backend without caches
        """Drop in-memory caches (SIGHUP); they are rebuilt from the store on the next use."""

    # -- statistics (benchmarks) --------------------------------------------------------------------------
    @abc.abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters such as commits and write requests, for benchmarks and logs."""


PathLike = str | os.PathLike[str]
