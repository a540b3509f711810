"""What the IMAP core needs of the mail store: `MailAccess`, the store calls of IMAP behind one interface.

Like Dovecot's mail-storage API, the IMAP session reaches mail only through this interface, never through a
backend (docs/decisions/0038). It is a structural `Protocol` over a part of `postoffice.store.MailStore`:
every store backend is a `MailAccess` as it is, and mypy checks that where the server hands its store to an
IMAP session. The methods and their meaning are `MailStore`'s (see `postoffice.store.api`): the mailbox
tree, the selected mailbox as a snapshot advanced by `changes_since` (docs/decisions/0016), flags, copies,
expunges, search in the store's index, the renderings and parses made at delivery, message bytes by range,
the annotations of METADATA (docs/decisions/0067), URLAUTH's keys in the account's settings (0071), the
access control lists of ACL and the mailboxes other accounts share (docs/decisions/0073:
`postoffice.imap.acl` is the one place that asks them), and the change notifications that drive untagged
updates and IDLE.

Invariants the core relies on (the store's, restated): a write returns after its commit; notifications are
published on the event loop after the commit that made the change; UIDs in a mailbox only increase.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from postoffice.message import ParsedMessage
    from postoffice.store import (
        Account,
        AclEntry,
        ChangeEvent,
        Criteria,
        DeliveredCopy,
        FlagUpdate,
        MailboxInfo,
        MailboxStatus,
        MessageInfo,
        MetadataLimits,
        QuotaUse,
        SharedMailbox,
    )
    from postoffice.store.api import (
        AppendItem,
        ImapRendering,
        KeywordLimits,
        MailboxChanges,
        MailboxSnapshot,
        SortFields,
    )


class MailAccess(Protocol):
    """The store calls of the IMAP commands (a subset of `postoffice.store.MailStore`)."""

    # -- the mailbox tree (SELECT, CREATE, DELETE, RENAME, SUBSCRIBE, LIST, LSUB, STATUS, APPEND, COPY)
    async def list_mailboxes(self, account_id: int) -> list[MailboxInfo]: ...

    async def get_mailbox(self, account_id: int, name: str) -> MailboxInfo | None: ...

    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None, *, max_mailboxes: int | None = None
    ) -> MailboxInfo: ...

    async def delete_mailbox(self, account_id: int, name: str) -> None: ...

    async def rename_mailbox(
        self, account_id: int, old_name: str, new_name: str, *, max_mailboxes: int | None = None
    ) -> None: ...

    async def set_subscribed(
        self, account_id: int, name: str, subscribed: bool, *, max_subscriptions: int | None = None
    ) -> None: ...

    async def list_subscriptions(self, account_id: int) -> list[str]: ...

    async def mailbox_status(self, mailbox_id: int) -> MailboxStatus: ...

    # -- the selected mailbox (docs/decisions/0016)
    async def snapshot(self, mailbox_id: int) -> MailboxSnapshot: ...

    async def changes_since(self, mailbox_id: int, modseq: int) -> MailboxChanges: ...

    async def claim_recent(self, mailbox_id: int, up_to: int | None = None) -> int: ...

    def subscribe(self, account_id: int, callback: Callable[[ChangeEvent], None]) -> Callable[[], None]: ...

    # -- messages (APPEND, STORE, COPY, MOVE, EXPUNGE, SEARCH)
    async def append_many(
        self, mailbox_id: int, messages: Sequence[AppendItem], *, keyword_limits: KeywordLimits | None = None
    ) -> list[DeliveredCopy]: ...

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Iterable[int],
        flags: Iterable[str],
        mode: str,
        *,
        keyword_limits: KeywordLimits | None = None,
        settable: Collection[str] | None = None,
    ) -> int: ...

    async def store_flags_unchanged_since(
        self,
        mailbox_id: int,
        uids: Iterable[int],
        flags: Iterable[str],
        mode: str,
        unchanged_since: int,
        *,
        keyword_limits: KeywordLimits | None = None,
        settable: Collection[str] | None = None,
    ) -> FlagUpdate: ...

    async def copy_messages(
        self,
        source_mailbox_id: int,
        uids: Iterable[int],
        target_mailbox_id: int,
        *,
        move: bool = False,
        keyword_limits: KeywordLimits | None = None,
        settable: Collection[str] | None = None,
    ) -> list[tuple[int, int]]: ...

    async def expunge_deleted(self, mailbox_id: int, only: Iterable[int] | None = None) -> list[int]: ...

    async def expunge(self, mailbox_id: int, uids: Iterable[int]) -> list[int]: ...

    async def search(self, mailbox_id: int, criteria: Criteria) -> list[int]: ...

    async def get_messages(self, mailbox_id: int, uids: Iterable[int]) -> list[MessageInfo]: ...

    async def snippets(self, content_ids: Sequence[int], length: int = 200) -> dict[int, str]: ...

    # -- URLAUTH (RFC 4467): the accounts URLs name, the keys in the account's settings (decision 0071)
    async def get_account(self, address: str) -> Account | None: ...

    async def account_settings(self, account_id: int, prefix: str = "") -> dict[str, str]: ...

    async def set_account_setting(self, account_id: int, key: str, value: str | None) -> None: ...

    # -- QUOTA (RFC 9208)
    async def quota_usage(self, account_ids: Iterable[int]) -> dict[int, QuotaUse]: ...

    # -- METADATA (RFC 5464): GETMETADATA, SETMETADATA
    async def get_metadata(
        self, account_id: int, mailbox_id: int | None, names: Sequence[str], depth: int | None = 0
    ) -> dict[str, bytes]: ...

    async def set_metadata(
        self,
        account_id: int,
        mailbox_id: int | None,
        entries: Mapping[str, bytes | None],
        limits: MetadataLimits,
    ) -> None: ...

    # -- ACL (RFC 4314) and the shared namespace: the ACL commands, and every lookup of a mailbox by name
    async def set_acl(self, mailbox_id: int, identifier: str, rights: str, mode: str = "replace") -> str: ...

    async def delete_acl(self, mailbox_id: int, identifier: str) -> bool: ...

    async def get_acl(self, mailbox_id: int) -> list[AclEntry]: ...

    async def my_rights(self, account_id: int, mailbox_ids: Sequence[int]) -> dict[int, str]: ...

    async def shared_mailboxes(
        self, account_id: int, owner: str | None = None, name: str | None = None
    ) -> list[SharedMailbox]: ...

    # -- what FETCH reads
    async def imap_renderings(self, content_ids: Sequence[int]) -> dict[int, ImapRendering]: ...

    async def sort_fields(self, content_ids: Sequence[int]) -> dict[int, SortFields]: ...

    async def sort_columns(
        self, content_ids: Sequence[int], names: Sequence[str]
    ) -> dict[str, dict[int, Any]]: ...

    async def get_parsed_many(self, content_ids: Sequence[int]) -> dict[int, ParsedMessage]: ...

    async def read_contents(
        self, content_ids: Sequence[int], *, octets: int | None = None
    ) -> dict[int, bytes]: ...

    async def read_range(self, content_id: int, offset: int, length: int) -> bytes: ...
