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
  `postoffice.message`), so that reads never re-parse. A copy whose bytes differ (header fields a delivery
  stage added for that recipient only) has a content of its own: a content is one exact text, so every
  read by content id (FETCH, RETR, sizes, the kept BODYSTRUCTURE) serves the copy's own bytes
  (docs/decisions/0040).
- A delivery is written whole by `commit_delivery` (`Delivery`: copies, queue entry, DSNs, results of a
  queued message; one transaction); `deliver`, `submit` and `queue_record` are forms of it.
- The outbound queue (docs/decisions/0017): messages for other servers, with per-recipient status
  ("pending" until "delivered", "failed" or "expired": final states never change), stored together with
  the local copies, and DSNs stored together with the results that caused them.
"""

from __future__ import annotations

import abc
import bisect
import dataclasses
import itertools
import os
from array import array
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, NamedTuple

# The ENVELOPE / BODYSTRUCTURE forms kept with each content are a function of the parse, defined with it
# (docs/decisions/0036); named here too because callers of `imap_renderings` import it from the store API.
from postoffice.message.imap_forms import ImapRendering as ImapRendering
from postoffice.message.sort_fields import SortFields as SortFields

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

#: Recent logins kept per account (`record_login`).
LOGIN_HISTORY = 200

#: System flags stored by the store (\Recent is session state and never stored).
SYSTEM_FLAGS: tuple[str, ...] = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")


class StoreError(Exception):
    """A store operation failed; the message is safe to show to an administrator, not to a peer."""


class NotFound(StoreError):
    """The named domain, account, alias, mailbox or message does not exist."""


class AlreadyExists(StoreError):
    """The domain, account, alias or mailbox exists already."""


class StoreFull(StoreError):
    """Not enough disk space for this write; it changed nothing. Deleting mail still works (decision 0030).
    SMTP answers 452 4.3.1, IMAP NO [OVERQUOTA]."""


class LimitExceeded(StoreError):
    """The change would take an account over a limit the caller set (mailboxes, subscriptions); the message
    says which and may be shown to the account's user."""


class MetadataTooLarge(StoreError):
    """An annotation value is larger than `limit` octets (`MetadataLimits.max_value_size`); nothing was
    changed. IMAP answers NO [METADATA MAXSIZE limit] (RFC 5464 section 4.3)."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class MetadataTooMany(StoreError):
    """The annotations would be more than a mailbox (or the account's server entries) may have, or more
    octets than the account may keep (`MetadataLimits`); nothing was changed. IMAP answers NO [METADATA
    TOOMANY] (RFC 5464 section 4.3)."""


class SieveQuotaExceeded(StoreError):
    """Storing the Sieve script would take the account over `SieveLimits`; nothing was changed. `kind` says
    which limit: "maxscripts", "maxsize" (one script's octets) or "quota" (the account's octets). ManageSieve
    answers NO (QUOTA/MAXSCRIPTS), (QUOTA/MAXSIZE) or (QUOTA) (RFC 5804 section 1.3)."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class SieveScriptActive(StoreError):
    """The active Sieve script cannot be deleted (RFC 5804 section 2.10: NO (ACTIVE)); deactivate it first."""


class OverQuota(StoreError):
    """Storing the message(s) would take an account over its storage quota (`Account.quota`;
    docs/decisions/0053); nothing was stored. `permanent`: one message alone is larger than the whole quota,
    so it will never fit. SMTP answers 452 4.2.2 (552 5.2.2 when permanent), IMAP NO [OVERQUOTA] (RFC 9051
    section 7.1), the web 507. Deleting mail always works over quota. The message may be shown to the
    account's user."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class FlagUpdate:
    """What a conditional flag change did (`MailStore.store_flags_unchanged_since`)."""

    modseq: int  # the MODSEQ of the change; the account's highest when nothing changed
    modified: tuple[int, ...]  # UIDs left as they were: changed after the given MODSEQ (RFC 7162 3.1.3)


@dataclass(frozen=True)
class KeywordLimits:
    """What keywords a change may bring to a mailbox (docs/decisions/0043): none longer than `max_length`
    characters, and no more than `max_keywords` distinct keywords on the mailbox's messages together. Only
    keywords new to the mailbox are checked: those it has already are never refused."""

    max_keywords: int
    max_length: int


#: The most octets (names and values) of all of an account's IMAP annotations (RFC 5464 section 7: a limit
#: that stops one user filling the server); the IMAP layer's limit, and the bound of RENAME INBOX's copy.
METADATA_ACCOUNT_OCTETS = 4 * 1024 * 1024


@dataclass(frozen=True)
class MetadataLimits:
    """What a `set_metadata` may leave (IMAP METADATA, RFC 5464; docs/decisions/0067): values of at most
    `max_value_size` octets (MetadataTooLarge), at most `max_entries` annotations on the mailbox (or among the
    account's server entries), and at most `max_account_octets` octets of names and values on all of the
    account's annotations together (MetadataTooMany). A change that does not add to a count is never refused
    by it: an account over a lowered limit can still remove and shrink."""

    max_value_size: int
    max_entries: int
    max_account_octets: int


@dataclass(frozen=True)
class SieveLimits:
    """What a `put_sieve_script` may leave (docs/decisions/0082): at most `max_scripts` scripts, each of at
    most `max_script_octets` octets (UTF-8), `max_account_octets` for all of the account's together. Replacing
    a script counts its new size instead of its old."""

    max_scripts: int
    max_script_octets: int
    max_account_octets: int


@dataclass(frozen=True)
class SieveScript:
    """A Sieve script of an account (RFC 5228; stored through ManageSieve, RFC 5804, or the webmail).
    `version` is new with every new text (never reused, also across scripts), so that a cache of checked
    scripts and the report of a script's error (once per text: `error_reported`) can tell. `address`: the
    account's address (what a vacation reply comes from by default)."""

    id: int
    account_id: int
    name: str
    text: str
    active: bool
    version: int
    changed: float
    error_reported: bool = False
    address: str = ""

    @property
    def octets(self) -> int:
        return len(self.text.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class Domain:
    id: int
    name: str
    plus_addressing: bool = True  # user+tag@ reaches user@ (directory.resolver, step 5)


@dataclass(frozen=True)
class Account:
    id: int
    address: str
    domain: str
    password_hash: str
    created: float
    admin: bool = False  # may use the admin pages (issue 12)
    disabled: bool = False  # no login of any kind; mail is still accepted and kept
    two_factor: bool = False  # TOTP is on: the web asks for a code, other protocols take app passwords only
    quota: int = 0  # octets of mail the account may keep; 0: no limit
    send_limit: int = 0  # messages it may submit per hour; 0: the server's [submission] default


def quota_refusal(quota: int, used: int, adding: int, largest: int | None = None) -> OverQuota | None:
    """The one quota rule (docs/decisions/0053), for an account with `quota` octets (0: no limit) that keeps
    `used` octets now and is to keep `adding` more, the largest message of them `largest` (default: all of
    `adding` is one message): OverQuota(permanent) when that message alone is larger than the quota, OverQuota
    when the account would be over its quota after storing them, else None. RFC 9051 section 7.1: OVERQUOTA
    is "the user would be over quota after the operation"."""
    if quota <= 0:
        return None
    if (adding if largest is None else largest) > quota:
        return OverQuota(
            f"the message is larger than the whole storage quota ({quota} octets)", permanent=True
        )
    if used + adding > quota:
        return OverQuota(f"over the storage quota: {used} of {quota} octets used, {adding} more to store")
    return None


@dataclass(frozen=True)
class QuotaUse:
    """An account's storage quota (octets, never 0 here) and the octets its mailboxes hold now
    (`MailStore.quota_usage`)."""

    account_id: int
    quota: int
    used: int

    def refusal(self, adding: int, largest: int | None = None) -> OverQuota | None:
        """`quota_refusal` for this account."""
        return quota_refusal(self.quota, self.used, adding, largest)


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
    #: RFC 3501 \\Recent: every UID up to this one has been claimed by a session (`claim_recent`)
    recent_uid: int = 0


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
    thread_id: int = 0  # its conversation (docs/decisions/0047); 0 where a backend does not say
    savedate: float = 0.0  # when it was put in its mailbox (RFC 8514: APPEND, COPY, MOVE, delivery)


@dataclass(frozen=True)
class ThreadSummary:
    """A conversation over some folders (`MailStore.thread_summaries`)."""

    count: int  # its messages in those folders
    unseen: int  # of which without \Seen
    flagged: int  # of which \Flagged


@dataclass(frozen=True)
class MailboxChanges:
    """What changed in a mailbox after a MODSEQ (`MailStore.changes_since`), from one consistent read."""

    messages: list[MessageInfo]  # messages added or changed (flags) after the MODSEQ, in UID order
    expunged: list[int]  # UIDs expunged after the MODSEQ, ascending
    highest_modseq: int  # the mailbox's highest MODSEQ at the time of the read
    # Every UID in the mailbox, ascending, when the MODSEQ is older than a pruned tombstone
    # (`prune_tombstones`): then `expunged` may miss some, and whatever the reader knows that is not here was
    # expunged. None otherwise.
    present: list[int] | None = None


@dataclass(frozen=True, eq=False)
class MailboxSnapshot:
    """The messages of a mailbox at one MODSEQ, column by column (`MailStore.snapshot`).

    Immutable and shared: a backend may hand the same snapshot to every session that selects the mailbox, so
    nobody may change its columns. Index i of every column describes the message with the i-th lowest UID.
    Flags are interned frozensets (a mailbox has few distinct combinations), so a snapshot costs about 36
    octets per message however many sessions hold it."""

    mailbox: MailboxInfo
    modseq: int  # every change up to this MODSEQ is in the columns, none after it
    uids: array[int]  # ascending
    flags: tuple[frozenset[str], ...]
    content_ids: array[int]
    sizes: array[int]
    internaldates: array[float]
    unseen: int
    first_unseen_uid: int | None
    keywords: frozenset[str]  # keywords in use
    modseqs: array[int] = dataclasses.field(default_factory=lambda: array("q"))  # each message's MODSEQ

    def index(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i if i < len(self.uids) and self.uids[i] == uid else None


#: The account setting that holds a secret derived from the password (the SCRAM secret, decision 0068):
#: `set_password` removes it, so that no secret of an old password outlives it.
PASSWORD_DERIVED_SETTING = "auth.scram-sha-256"  # noqa: S105 - a setting name, not a password


class AppendItem(NamedTuple):
    """One message of `MailStore.append_many`."""

    source: IO[bytes]
    parsed: ParsedMessage
    flags: Iterable[str] = ()
    internaldate: float | None = None


@dataclass(frozen=True)
class DeliveredCopy:
    account_id: int
    mailbox_id: int
    uid: int


@dataclass(frozen=True)
class OutboundRecipient:
    """A remote recipient of a queued message, with its RFC 3461 DSN parameters as received.

    `orcpt` is the ORCPT parameter exactly as it came in RCPT ("rfc822;" + xtext, RFC 3461 section 4.2),
    because it is relayed unchanged to the next hop; `postoffice.smtp.dsn` decodes it for a report. `notify`
    is the NOTIFY parameter ("NEVER" or a comma list of SUCCESS, FAILURE, DELAY), None when not given."""

    address: str
    orcpt: str | None = None
    notify: str | None = None


@dataclass(frozen=True)
class OutboundMessage:
    """The envelope of a message to queue for remote delivery (`MailStore.submit`, `enqueue`).

    `sender` is the envelope sender, "" for the null sender (DSNs). `envid` is the ENVID parameter as
    received (xtext, RFC 3461 section 4.4; relayed unchanged) and `ret` "FULL" | "HDRS" | None. `account_id`
    is the submitting account, None for messages the server generates. `smtputf8`: the message needs SMTPUTF8
    (RFC 6531); `eight_bit`: its body is 8-bit (8BITMIME, RFC 6152). `next_attempt`: the time of the first
    delivery attempt (None: now). `smtp_id`: the id of the SMTP transaction that submitted it (None for
    messages the server generates), shown in the queue listing and the delivery log lines. `require_tls`:
    the sender asked for REQUIRETLS (RFC 8689): delivered only over TLS with an authenticated certificate to
    a server that offers REQUIRETLS too."""

    sender: str
    recipients: Sequence[OutboundRecipient]
    envid: str | None = None
    ret: str | None = None
    account_id: int | None = None
    smtputf8: bool = False
    eight_bit: bool = False
    next_attempt: float | None = None
    smtp_id: str | None = None
    require_tls: bool = False


@dataclass(frozen=True)
class GeneratedMessage:
    """A message the server made (a DSN), with its envelope, queued by `MailStore.queue_record` in the same
    transaction as the results that caused it. Its sender must be the null sender ("")."""

    data: bytes
    outbound: OutboundMessage


@dataclass(frozen=True)
class LocalCopy:
    """A queued message delivered to local mailboxes by `MailStore.queue_record`, in the same transaction as
    the results that say so (a crash cannot deliver it twice)."""

    source: IO[bytes]
    parsed: ParsedMessage
    account_ids: Sequence[int]


@dataclass(frozen=True)
class SubmitResult:
    """What `MailStore.submit` stored: the local copies and the queued message's id (None: nothing queued)."""

    copies: list[DeliveredCopy]
    queue_id: int | None


#: Recipient statuses in the queue; every one but "pending" is final.
QUEUE_STATUSES: tuple[str, ...] = ("pending", "delivered", "failed", "expired")
FINAL_STATUSES: frozenset[str] = frozenset(QUEUE_STATUSES[1:])


@dataclass(frozen=True)
class QueuedRecipient:
    id: int  # identifies the recipient in `RecipientResult`
    address: str
    orcpt: str | None
    notify: str | None
    status: str  # one of QUEUE_STATUSES
    attempts: int
    next_attempt: float
    first_attempt: float | None
    last_attempt: float | None
    last_code: int | None  # the last SMTP reply code (or None: no reply, e.g. connection failure)
    last_enhanced: str | None  # its enhanced status code (RFC 3463), e.g. "4.2.2"
    last_text: str | None
    remote_mta: str | None  # host name of the server that gave the last reply
    delay_warned: bool  # a "delayed" DSN was sent

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class QueuedMessage:
    id: int
    sender: str  # "" = the null sender
    envid: str | None
    ret: str | None
    account_id: int | None  # None: generated by the server (or the account was removed since)
    created: float
    size: int
    smtputf8: bool
    eight_bit: bool
    recipients: tuple[QueuedRecipient, ...]  # all of them, in the order they were queued
    smtp_id: str | None = None  # the submitting SMTP transaction; None: generated by the server
    require_tls: bool = False  # REQUIRETLS (RFC 8689): only over authenticated TLS to a server that offers it

    @property
    def pending(self) -> tuple[QueuedRecipient, ...]:
        return tuple(r for r in self.recipients if r.status == "pending")

    @property
    def next_attempt(self) -> float | None:
        """The earliest next attempt of a pending recipient (None: every recipient is final)."""
        return min((r.next_attempt for r in self.pending), default=None)


@dataclass(frozen=True)
class RecipientResult:
    """The outcome of a delivery attempt (or a decision) for one queued recipient (`MailStore.queue_record`).

    `attempted_at` None: no attempt was made (e.g. only `delay_warned` or the status change), so neither the
    attempt count nor the attempt times change. `next_attempt` is required for a recipient that stays pending.
    `delay_warned` None leaves the flag as it is."""

    recipient_id: int
    status: str  # one of QUEUE_STATUSES
    code: int | None = None
    enhanced: str | None = None
    text: str | None = None
    remote_mta: str | None = None
    next_attempt: float | None = None
    attempted_at: float | None = None
    delay_warned: bool | None = None


class MessageText(NamedTuple):
    """One distinct text of a message in a `Delivery`: `parsed.size` bytes read from offset 0 of `source`,
    and their parse. Recipients whose copies have the same bytes share one text (one stored content).
    (The delivery types are named tuples: made for every message on the SMTP path, they cost a third of a
    frozen dataclass.)"""

    source: IO[bytes]
    parsed: ParsedMessage


class NewCopy(NamedTuple):
    """One message row a `Delivery` adds: the text `texts[text]` in one mailbox of `account_id`, with its
    own flags and keywords.

    The mailbox: with `special_use` ("\\Junk", RFC 6154), the account's mailbox with that attribute, whatever
    its name; otherwise, or when the account has none, the mailbox named `mailbox` (INBOX matched
    case-insensitively). When that does not exist: INBOX if `or_inbox` (what a filter's target falls back
    to, RFC 5228 section 4.1), else the whole delivery fails with NotFound."""

    account_id: int
    text: int = 0
    mailbox: str = "INBOX"
    special_use: str | None = None
    flags: tuple[str, ...] = ()
    or_inbox: bool = False


class QueueUpdate(NamedTuple):
    """Delivery results of a queued message recorded by a `Delivery` (as `MailStore.queue_record`)."""

    queue_id: int
    results: Sequence[RecipientResult]
    keep: bool = False


class VacationReply(NamedTuple):
    """A Sieve vacation reply (RFC 5230) a `Delivery` queues only when none went from `account_id` to `sender`
    with `handle` in the last `period` seconds; it records the time it went (section 4.2's "previous
    response" memory), in the same transaction, so two deliveries at once do not both reply."""

    account_id: int
    handle: str
    sender: str
    period: float
    message: GeneratedMessage
    #: a copy of the reply for the account's mailbox, stored only when the reply goes (RFC 8580 :fcc)
    fcc: FccCopy | None = None


class FccCopy(NamedTuple):
    """A copy of a message a Sieve script sends, for its account's mailbox (RFC 8580): the mailbox by name
    or special use (INBOX when neither exists), its flags, its text."""

    mailbox: str
    special_use: str | None
    flags: tuple[str, ...]
    text: MessageText


class DuplicateMark(NamedTuple):
    """What a Sieve duplicate test (RFC 7352) saw, recorded by a `Delivery` for `account_id`: `key` counts as
    seen for `seconds` from now; with `last` the period starts again at every message, without it a key
    that is still seen keeps its first expiry (section 3.3)."""

    account_id: int
    key: str
    seconds: float
    last: bool = False


class ScriptErrorNotice(NamedTuple):
    """A message telling an account that its Sieve script failed (RFC 5228 section 2.10.6), put into its
    INBOX by a `Delivery` only when no error of this version of the script was reported yet (and marking it
    reported): once per script text, however many messages meet the error."""

    account_id: int
    script_id: int
    version: int
    text: MessageText


class Delivery(NamedTuple):
    """Everything one delivery adds, written by `MailStore.commit_delivery` in one transaction.

    - `texts`: the distinct texts; `texts[0]` is the message as received (the one queued for `outbound`),
      others are variants of it for some recipients (header fields prepended for them). A text no copy
      names is not stored.
    - `copies`: the mailbox copies, in order.
    - `outbound`: queue `texts[0]` for remote recipients (submission, relaying).
    - `generated`: messages the server made (DSNs), queued too; each from the null sender.
    - `forwards`: the message as forwarded to addresses outside (aliases; its own text, ARC-sealed, its own
      envelope sender: SRS), queued too.
    - `record`: results of a queued message that this delivery completes (the queue's local deliveries:
      the copies and the results that say so commit together, so a crash cannot deliver twice). A
      delivery with `record` is never refused for disk space (docs/decisions/0030): what it records has
      happened. Without `record`, the octets it adds are admitted against the free space first.
    - `internaldate`: of every copy (None: now).
    - `vacations`: Sieve vacation replies, each queued unless one went to its sender recently.
    - `notices`: reports of Sieve script errors, each put into its account's INBOX once per script text.
    - `duplicates`: what Sieve duplicate tests saw, recorded for the next deliveries."""

    texts: Sequence[MessageText]
    copies: Sequence[NewCopy] = ()
    outbound: OutboundMessage | None = None
    generated: Sequence[GeneratedMessage] = ()
    record: QueueUpdate | None = None
    internaldate: float | None = None
    forwards: Sequence[GeneratedMessage] = ()
    vacations: Sequence[VacationReply] = ()
    notices: Sequence[ScriptErrorNotice] = ()
    duplicates: Sequence[DuplicateMark] = ()

    def check(self) -> None:
        """ValueError for a delivery no backend may write (backends call this before writing)."""
        for copy in self.copies:
            if not 0 <= copy.text < len(self.texts):
                raise ValueError(f"a copy names text {copy.text} of {len(self.texts)}")
        if self.outbound is not None:
            if not self.texts:
                raise ValueError("a queued message needs its text")
            check_outbound(self.outbound)
        for message in self.generated:
            check_outbound(message.outbound)
            # RFC 3461 section 6.1 / RFC 5321 section 4.5.5: a DSN goes out from the null sender, so that no
            # DSN is ever sent about it (no loops).
            if message.outbound.sender != "":
                raise ValueError("a generated DSN must have the null sender")
        for message in self.forwards:
            check_outbound(message.outbound)
        for reply in self.vacations:
            check_outbound(reply.message.outbound)
            if reply.message.outbound.sender != "":  # RFC 3834 section 3.3: no reply to a reply
                raise ValueError("a vacation reply must have the null sender")
            if reply.period < 0:
                raise ValueError("a vacation period cannot be negative")
        if self.record is not None:
            for result in self.record.results:
                if result.status not in QUEUE_STATUSES:
                    raise ValueError(f"not a queue status: {result.status!r}")
                if result.status == "pending" and result.next_attempt is None:
                    raise ValueError("a recipient that stays pending needs its next attempt time")

    @property
    def empty(self) -> bool:
        """Nothing to write (no copy, nothing queued, nothing recorded)."""
        return (
            not self.copies
            and self.outbound is None
            and not self.generated
            and not self.forwards
            and self.record is None
            and not self.vacations
            and not self.notices
            and not self.duplicates
        )

    def grows(self) -> int | None:
        """The message octets it adds, for admission against the free space (None: never refused)."""
        if self.record is not None:
            return None
        size = 0
        used: set[int] = set()
        for copy in self.copies:
            if copy.text not in used:
                used.add(copy.text)
                size += self.texts[copy.text].parsed.size
        if self.outbound is not None:
            size += self.texts[0].parsed.size
        for message in (*self.generated, *self.forwards, *(reply.message for reply in self.vacations)):
            size += len(message.data)
        for notice in self.notices:
            size += notice.text.parsed.size
        for reply in self.vacations:
            size += reply.fcc.text.parsed.size if reply.fcc is not None else 0
        return size


class DeliveryResult(NamedTuple):
    """What `MailStore.commit_delivery` wrote: the copies (in the order of `Delivery.copies`), the id of the
    queued message (None: nothing queued) and, for a `record`, the queued message as recorded."""

    copies: list[DeliveredCopy]
    queue_id: int | None = None
    recorded: QueuedMessage | None = None


def check_outbound(outbound: OutboundMessage) -> None:
    if not outbound.recipients:
        raise ValueError("a queued message needs at least one recipient")
    if outbound.ret is not None and outbound.ret.upper() not in ("FULL", "HDRS"):
        raise ValueError(f"RET must be FULL or HDRS, not {outbound.ret!r}")


@dataclass(frozen=True)
class QueueStats:
    messages: int
    recipients_pending: int
    oldest_created: float | None  # None: the queue is empty


#: Kinds of login-guard entries: lockouts of a client (IPv4 address or IPv6 /64), of an account name, of one
#: (client, account) pair that had logged in; and "trust", a pair's recent successful login that lets it past
#: an account lockout caused by others (docs/decisions/0008, 0027).
LOGIN_GUARD_KINDS = ("client", "account", "pair", "trust")
LOGIN_LOCKOUT_KINDS = ("client", "account", "pair")


@dataclass(frozen=True)
class LoginGuardEntry:
    """A lockout (or a trusted pair) of the login guard as the store keeps it across restarts."""

    kind: str  # one of LOGIN_GUARD_KINDS
    client: str  # client key ("192.0.2.1", "2001:db8:1:2::/64"); "" for kind "account"
    account: str  # canonical login name; "" for kind "client"
    until: float  # Unix time the lockout (or the trust) ends
    since: float  # Unix time it began


@dataclass(frozen=True)
class GreylistEntry:
    """A greylisting record (RFC 6647; docs/decisions/0089) as the store keeps it across restarts: a triplet
    of client network, envelope sender and recipient, or a client network's counts (for the automatic
    allowlist, and of its new triplets). `key` says which (`postoffice.spam.greylist` makes the keys and
    decides; the store keeps the records and forgets them when they expire)."""

    key: str
    first_seen: float  # Unix time it was first seen (a triplet's delay counts from here)
    passes: int  # a triplet: 0 while it waits, 1 once it passed; a client network: what it counts
    last_seen: float  # Unix time it was last written
    expires: float  # Unix time from which it is forgotten


@dataclass(frozen=True)
class SecondFactor:
    """An account's TOTP second factor (RFC 6238; docs/decisions/0052)."""

    secret: str  # base32, as the authenticator app was given it
    last_step: int  # the last time step whose code was accepted: a code is used once (RFC 6238 section 5.2)
    recovery_codes: int  # unused recovery codes left


@dataclass(frozen=True)
class AppPassword:
    """A password for one mail program (docs/decisions/0052); the store keeps only its SHA-256."""

    id: int
    account_id: int
    name: str
    created: float
    last_used: float | None = None
    last_protocol: str = ""
    last_client: str = ""


@dataclass(frozen=True)
class LoginEvent:
    """One login (or refused login with the right name) of an account, for its "recent logins" list."""

    time: float
    protocol: str  # "imap", "pop3", "smtp", "pop2", "web"
    client: str  # the client's IP address
    result: str  # the authenticator's status: "ok", "bad-credentials", ...
    method: str = ""  # "password", "app password NAME", "password+totp", "recovery code"


@dataclass(frozen=True)
class Identity:
    """An address an account sends as, with a display name, a signature and a Reply-To; `id` 0 is new."""

    id: int
    account_id: int
    address: str
    name: str = ""
    signature: str = ""
    reply_to: str = ""
    default: bool = False


#: The states of a DKIM signing key, in the only order a key goes through them (docs/decisions/0056):
#: pending (published, not signing yet), active (signs), retiring (published, no longer signs), removed
#: (not published; its private key is gone).
DKIM_KEY_STATES: tuple[str, ...] = ("pending", "active", "retiring", "removed")


@dataclass(frozen=True)
class DkimKey:
    """A domain's DKIM signing key (RFC 6376; Ed25519: RFC 8463); `id` 0 is new. `public_key` is the p= value
    of its DNS record (base64); `private_key` is PEM (PKCS #8), "" once the key is removed, and is never
    shown (not in the repr, never logged). `changed`: when it entered its `state`."""

    id: int
    domain: str
    selector: str
    algorithm: str  # "rsa" | "ed25519" (the k= of its record)
    public_key: str
    private_key: str = field(repr=False)
    state: str = "active"
    created: float = 0.0
    changed: float = 0.0


@dataclass(frozen=True)
class StoredStsPolicy:
    """An MTA-STS policy (RFC 8461) of a domain we deliver to, as fetched: `policy` is its text, `policy_id`
    the id of the `_mta-sts` record it was fetched under, `fetched` when (it expires max_age after)."""

    domain: str
    policy_id: str
    policy: str
    fetched: float


@dataclass(frozen=True)
class ReportCount:
    """`count` more of one line (`key`, JSON) of the `kind` report ("dmarc" or "tlsrpt") about `domain` for
    the UTC `day` (YYYY-MM-DD). `policy` (JSON), when not empty, replaces the policy recorded for that report
    (the one last seen that day, with where the report goes)."""

    kind: str
    day: str
    domain: str
    key: str
    count: int = 1
    policy: str = ""


@dataclass(frozen=True)
class PendingReport:
    """Everything counted for one report: its lines (key, count) in key order, and its policy (JSON, "" when
    none was recorded)."""

    kind: str
    day: str
    domain: str
    policy: str
    lines: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class ReceivedReport:
    """A report another server sent about one of our domains; `id` 0 is new. `summary` is JSON (the
    report's lines, summed); `begin`/`end` the period it covers, `received` when it came."""

    id: int
    kind: str
    reporter: str
    report_id: str
    domain: str
    begin: float
    end: float
    received: float
    summary: str


@dataclass(frozen=True)
class WebSession:
    """A login to the web interface (docs/decisions/0046). The browser holds a random token; the store keeps
    only its SHA-256 (`id`, hex), so a copy of the store does not let anyone in."""

    id: str
    account_id: int
    csrf: str  # the session's token for state-changing requests
    created: float  # Unix time of the login
    last_seen: float  # Unix time of the last request (updated at most once a minute)
    expires: float  # Unix time it ends however active
    client: str = ""  # the client address at login
    user_agent: str = ""  # the browser's User-Agent at login (shortened), to tell sessions apart in a list


@dataclass(frozen=True)
class ChangeEvent:
    """Published to subscribers after the commit that made the change (never before). "subscription": the
    account's subscription to `extra["name"]` changed (`extra["subscribed"]`, mailbox_id 0); "metadata":
    annotations `extra["entries"]` of the mailbox (mailbox_id 0: the server's) changed (decision 0072); "acl":
    the access control list of the mailbox changed, so the rights of other accounts on it may have (published
    to its owner's subscribers, decision 0076, and with `account_id` the grantee's to those of each account
    whose rights `set_acl` or `delete_acl` changed: for "anyone", every account of the domain, decision
    0077)."""

    kind: str  # "added" | "flags" | "expunged" | "mailbox" | "subscription" | "metadata" | "acl"
    #: for "added" by `copy_messages`: extra["copied_from"] is the source mailbox id (and "moved" whether
    #: the sources were expunged), so that a subscriber can tell a user's move from new mail
    account_id: int
    mailbox_id: int
    uids: tuple[int, ...] = ()
    modseq: int = 0
    extra: dict[str, object] = field(default_factory=dict)


#: The rights of an access control list (IMAP ACL, RFC 4314 section 2.1; docs/decisions/0073), in the order
#: they are kept and given: lookup, read, seen, write, insert, post, create, delete mailbox, delete messages,
#: expunge, administer. An owner has all of them on its own mailboxes.
ACL_RIGHTS = "lrswipkxtea"
#: The ACL identifier of every account of the mailbox owner's domain (RFC 4314 section 2: "anyone").
ACL_ANYONE = "anyone"
#: Entries one mailbox's access control list may have (positive and negative, of accounts or of addresses
#: that are no account): `set_acl` of a new one beyond it is LimitExceeded (docs/decisions/0076).
ACL_MAX_ENTRIES = 1000


def acl_rights(letters: str) -> str:
    """`letters` as an ACL keeps them: each right once, in ACL_RIGHTS order. ValueError for a letter that is
    not one of ACL_RIGHTS."""
    unknown = set(letters) - set(ACL_RIGHTS)
    if unknown:
        raise ValueError(f"not an ACL right: {''.join(sorted(unknown))!r}")
    return "".join(right for right in ACL_RIGHTS if right in letters)


@dataclass(frozen=True)
class AclEntry:
    """One entry of a mailbox's access control list (`MailStore.get_acl`): `identifier` is "anyone" or an
    account's address, with "-" in front for negative rights (taken away, RFC 4314 section 2)."""

    identifier: str
    rights: str


@dataclass(frozen=True)
class SharedMailbox:
    """A mailbox of another account that an account has rights on (`MailStore.shared_mailboxes`): its owner's
    address, the mailbox (its name is the owner's), and the account's rights there (never empty)."""

    owner: str
    mailbox: MailboxInfo
    rights: str


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
    async def add_account(self, address: str, password_hash: str, *, admin: bool = False) -> Account:
        """Creates the account and its default mailboxes. The domain must exist."""

    @abc.abstractmethod
    async def update_domain(self, name: str, *, plus_addressing: bool | None = None) -> Domain:
        """Turn the domain's plus-addressing on or off (None: unchanged); the domain as it is now. NotFound
        for a domain not served."""

    @abc.abstractmethod
    async def update_account(
        self,
        address: str,
        *,
        admin: bool | None = None,
        disabled: bool | None = None,
        quota: int | None = None,
        send_limit: int | None = None,
    ) -> Account:
        """Change the account's admin role, disabled state, storage quota (octets, 0: none) or sending limit
        (messages per hour, 0: the server's default); None leaves it unchanged. Disabling ends its web
        sessions. The account as it is now; NotFound for an unknown account."""

    @abc.abstractmethod
    async def set_password(self, address: str, password_hash: str) -> None:
        """Store a new password hash; the account setting PASSWORD_DERIVED_SETTING (a secret made from the
        old password) goes in the same transaction. NotFound for an unknown account."""

    @abc.abstractmethod
    async def remove_account(self, address: str) -> None:
        """Removes the account, its mailboxes, messages and annotations."""

    @abc.abstractmethod
    async def get_account(self, address: str) -> Account | None:
        """Case-insensitive lookup by full address."""

    @abc.abstractmethod
    async def get_account_by_id(self, account_id: int) -> Account | None:
        """The account with this id (a web session's), None if there is none (any more)."""

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
        """Apply `postoffice.directory.resolver.resolve` to the current directory data, in one read: every
        directory change committed before the call, by this store object or any other on the same store
        (another process, e.g. the CLI), is seen. Backends may cache the directory in memory if they notice
        such changes (the SQLite backend stats a marker file; another could LISTEN)."""

    # -- mailboxes ----------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def list_mailboxes(self, account_id: int) -> list[MailboxInfo]: ...

    @abc.abstractmethod
    async def get_mailbox(self, account_id: int, name: str) -> MailboxInfo | None:
        """INBOX is matched case-insensitively, other names exactly."""

    @abc.abstractmethod
    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None, *, max_mailboxes: int | None = None
    ) -> MailboxInfo:
        """A new mailbox with a UIDVALIDITY never used before. AlreadyExists when the name (or the special
        use) is taken; LimitExceeded when the account has `max_mailboxes` already (checked in the same
        transaction). Names are paths with "/" as the hierarchy separator; a trailing "/" is dropped."""

    @abc.abstractmethod
    async def delete_mailbox(self, account_id: int, name: str) -> None:
        """Remove the mailbox, its messages and its annotations (not its children: "a/b" survives deleting
        "a"). Not INBOX."""

    @abc.abstractmethod
    async def rename_mailbox(
        self, account_id: int, old_name: str, new_name: str, *, max_mailboxes: int | None = None
    ) -> None:
        """Rename with every mailbox below it, keeping UIDVALIDITY. Renaming INBOX moves its messages to a new
        mailbox and leaves INBOX empty (RFC 9051 section 6.3.6); that new mailbox counts against
        `max_mailboxes` (LimitExceeded)."""

    @abc.abstractmethod
    async def set_subscribed(
        self, account_id: int, name: str, subscribed: bool, *, max_subscriptions: int | None = None
    ) -> None:
        """Subscriptions are names; they may name mailboxes that do not exist. A new subscription beyond
        `max_subscriptions` is LimitExceeded."""

    @abc.abstractmethod
    async def list_subscriptions(self, account_id: int) -> list[str]: ...

    @abc.abstractmethod
    async def mailbox_status(self, mailbox_id: int) -> MailboxStatus: ...

    @abc.abstractmethod
    async def unseen_counts(self, account_id: int) -> dict[int, int]:
        """Messages without \\Seen per mailbox of the account (mailboxes with none are left out), in one
        read that does not scan the seen ones: the folder list of a mail program."""

    @abc.abstractmethod
    async def claim_recent(self, mailbox_id: int, up_to: int | None = None) -> int:
        """RFC 3501 \\Recent: returns the lowest UID that is recent for the calling session (all existing UIDs
        at or above it); no later call gets those UIDs again. `up_to`: the caller asks only about UIDs up to
        this one (the new ones it has seen); when another session claimed them all already, the store may
        answer without a write (the answer is then above `up_to`)."""

    # -- Sieve scripts (RFC 5228, ManageSieve RFC 5804; docs/decisions/0082) --------------------------------
    @abc.abstractmethod
    async def list_sieve_scripts(self, account_id: int) -> list[SieveScript]:
        """The account's scripts, by name (an empty list for an account that does not exist)."""

    @abc.abstractmethod
    async def get_sieve_script(self, account_id: int, name: str) -> SieveScript | None:
        """The account's script of this name (names are case-sensitive), None when there is none."""

    @abc.abstractmethod
    async def put_sieve_script(
        self, account_id: int, name: str, text: str, limits: SieveLimits
    ) -> SieveScript:
        """Store the script `name` (a new one, or a new text for one the account has: it stays active if it
        was, gets a new version and no error reported yet). SieveQuotaExceeded over `limits` (checked in the
        same transaction), NotFound for an account that does not exist. The caller checks the text."""

    @abc.abstractmethod
    async def rename_sieve_script(self, account_id: int, old: str, new: str) -> None:
        """Give the script `old` the name `new` (active or not, it stays so; its version is kept). NotFound
        when there is no `old`, AlreadyExists when `new` is taken (by another script)."""

    @abc.abstractmethod
    async def delete_sieve_script(self, account_id: int, name: str) -> None:
        """Remove the script. NotFound when there is none, SieveScriptActive when it is the active one."""

    @abc.abstractmethod
    async def activate_sieve_script(self, account_id: int, name: str | None) -> None:
        """Make `name` the account's active script (the one before it is active no more); None: none is.
        NotFound when there is no such script (nothing changed)."""

    @abc.abstractmethod
    async def sieve_duplicates_seen(self, account_id: int, keys: Sequence[str], now: float) -> set[str]:
        """Which of `keys` a Sieve duplicate test of the account recorded (`Delivery.duplicates`) and still
        count as seen at `now`."""

    @abc.abstractmethod
    async def active_sieve_scripts(self, account_ids: Sequence[int]) -> dict[int, SieveScript]:
        """The active script of each of these accounts that has one, with the account's address (delivery
        reads them for all its recipients at once)."""

    # -- annotations (IMAP METADATA, RFC 5464; docs/decisions/0067) ----------------------------------------
    @abc.abstractmethod
    async def get_metadata(
        self, account_id: int, mailbox_id: int | None, names: Sequence[str], depth: int | None = 0
    ) -> dict[str, bytes]:
        """The annotations of a mailbox of the account (`mailbox_id`), or the account's server annotations
        (None), that are one of `names` or below one of them: with `depth` 0 the names only, 1 their children
        too ("/a/b" of "/a"), None every descendant (RFC 5464 4.2.2 "infinity"). Names are case-insensitive
        (given and returned lower-case); annotations that do not exist are missing. An empty dict for a
        mailbox that is not the account's."""

    @abc.abstractmethod
    async def set_metadata(
        self,
        account_id: int,
        mailbox_id: int | None,
        entries: Mapping[str, bytes | None],
        limits: MetadataLimits,
    ) -> None:
        """Set annotations of a mailbox of the account (or its server annotations: None), all or none: a value
        replaces the entry's (or adds it), None removes it. MetadataTooLarge, MetadataTooMany over `limits`
        (checked in the same transaction); NotFound when the mailbox is not the account's (any more).
        Names are case-insensitive (kept lower-case). DELETE of the mailbox, and removing the account, remove
        its annotations; RENAME keeps them (INBOX's are copied to the new mailbox and stay on INBOX, RFC 5464
        section 4.1)."""

    # -- access control lists (IMAP ACL, RFC 4314; docs/decisions/0073) -------------------------------------
    @abc.abstractmethod
    async def set_acl(self, mailbox_id: int, identifier: str, rights: str, mode: str = "replace") -> str:
        """Change the entry of `identifier` ("anyone" or an address of the mailbox owner's domain, "-" in
        front for negative rights) on the mailbox: mode "replace" | "add" | "remove" `rights` (letters of
        ACL_RIGHTS, in any order), in one transaction; returns the entry's rights now (an entry left without
        rights is removed). An address that is no account is taken as any other: its entry grants nothing
        until an account gets the address (`add_account`), and then is that account's (decision 0076).
        NotFound for an unknown mailbox, or an identifier that is not of that domain; ValueError for another
        letter, or for the owner (who has every right, always); LimitExceeded for a new entry of a mailbox
        that has ACL_MAX_ENTRIES. A change publishes "acl" ChangeEvents (see there). A new mailbox starts
        with its parent's entries (`create_mailbox`), RENAME keeps them, DELETE and removing the account
        (owner or grantee) remove them."""

    @abc.abstractmethod
    async def delete_acl(self, mailbox_id: int, identifier: str) -> bool:
        """Remove the entry of `identifier` (as `set_acl` names it) from the mailbox: whether there was one.
        NotFound for an unknown mailbox or an identifier that is not of the owner's domain; ValueError for the
        owner."""

    @abc.abstractmethod
    async def get_acl(self, mailbox_id: int) -> list[AclEntry]:
        """The mailbox's entries (the owner's implicit one is not among them): "anyone" first, then by
        address, each positive entry before its negative one. NotFound for an unknown mailbox."""

    @abc.abstractmethod
    async def my_rights(self, account_id: int, mailbox_ids: Sequence[int]) -> dict[int, str]:
        """The account's rights on each mailbox (ACL_RIGHTS order): all of them on its own; on another
        account's of its domain, those of its entry and of "anyone" without those of the negative entries; ""
        on any other. Mailboxes that do not exist are left out."""

    @abc.abstractmethod
    async def shared_mailboxes(
        self, account_id: int, owner: str | None = None, name: str | None = None
    ) -> list[SharedMailbox]:
        """The mailboxes of other accounts of the account's domain on which it has any right, with those
        rights (as `my_rights`), by owner address then mailbox name (INBOX first); only the owner's `owner`
        (an address), and only the mailbox named `name` (INBOX in any case), when given."""

    # -- messages -----------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def commit_delivery(self, delivery: Delivery) -> DeliveryResult:
        """Write a whole delivery in one transaction (`Delivery`: the mailbox copies, each with its own
        text, mailbox, flags and keywords; the queue entry for remote recipients; generated DSNs; the
        results of the queued message it completes): durable when it returns, all or nothing. Every write
        that adds mail to mailboxes from outside (SMTP, the queue's local deliveries; `postoffice.delivery`)
        comes here; `deliver`, `submit` and `queue_record` are forms of it. ValueError for what
        `Delivery.check` refuses; NotFound for a mailbox that does not exist (see `NewCopy`) or an unknown
        queued message; StoreError when a recorded recipient is final already or a DSN would report on a
        message from the null sender; StoreFull when the disk has no room for what it adds. Storage quotas
        are not checked here: the delivery pipeline decided per recipient before (docs/decisions/0053)."""

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
        none. A form of `commit_delivery`."""
        targets = list(dict.fromkeys(account_ids))
        if not targets:
            return []
        kept = tuple(flags)
        copies = tuple(NewCopy(account_id, 0, mailbox, flags=kept) for account_id in targets)
        delivery = Delivery((MessageText(source, parsed),), copies, internaldate=internaldate)
        return (await self.commit_delivery(delivery)).copies

    @abc.abstractmethod
    async def append(
        self,
        mailbox_id: int,
        source: IO[bytes],
        parsed: ParsedMessage,
        flags: Iterable[str] = (),
        internaldate: float | None = None,
    ) -> DeliveredCopy:
        """IMAP APPEND: one message into one mailbox; durable when it returns. OverQuota (nothing is stored)
        when it would take the mailbox's account over its storage quota (`quota_refusal`, checked in the
        write's transaction: docs/decisions/0053)."""

    async def append_many(
        self, mailbox_id: int, messages: Sequence[AppendItem], *, keyword_limits: KeywordLimits | None = None
    ) -> list[DeliveredCopy]:
        """IMAP MULTIAPPEND (RFC 3502): several messages into one mailbox, all or none, in order (ascending
        UIDs); durable when it returns. LimitExceeded (nothing is stored) when their keywords break
        `keyword_limits` (docs/decisions/0043); OverQuota (nothing is stored) when together they would take
        the account over its storage quota, as `append`. Backends should do it in one transaction; this
        fallback is not atomic and does not check `keyword_limits`."""
        return [await self.append(mailbox_id, *item) for item in messages]

    @abc.abstractmethod
    async def copy_messages(
        self,
        source_mailbox_id: int,
        uids: Iterable[int],
        target_mailbox_id: int,
        *,
        move: bool = False,
        keyword_limits: KeywordLimits | None = None,
        settable: Collection[str] | None = None,
    ) -> list[tuple[int, int]]:
        """COPY / MOVE: (source UID, new UID) pairs in source UID order, flags and internal dates kept; a move
        expunges the sources in the same transaction (RFC 6851). With `keyword_limits`, the copies leave out
        the keywords new to the target that break them (too long, or beyond the count: the first in sorted
        order are kept); a copy is never refused for its keywords (docs/decisions/0043). With `settable`, the
        copies keep only those of their flags (`\\*` stands for every keyword: the flags a user may set on
        the target, IMAP ACL, decision 0073). OverQuota (nothing changes) when the copies would take the
        target's account over its storage quota (decision 0053), except a copy into the account's \\Trash
        mailbox from one of its own (that is how some clients delete: deleting always works; a copy from
        another account, into a Trash shared with it, counts) and a move within one account (it adds
        nothing). A copy into another account's mailbox joins that account's conversations."""

    @abc.abstractmethod
    async def list_messages(self, mailbox_id: int) -> list[MessageInfo]:
        """Messages of a mailbox in UID order."""

    @abc.abstractmethod
    async def list_page(self, mailbox_id: int, offset: int, limit: int) -> list[MessageInfo]:
        """At most `limit` messages of a mailbox, newest first (UID descending), skipping the `offset` newest:
        a page of a message list, as cheap for the last page of 100,000 messages as for the first."""

    @abc.abstractmethod
    async def conversations(
        self, mailbox_id: int, *, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> list[MessageInfo]:
        """A page of a mailbox's conversations (docs/decisions/0047), each as its newest message in the
        mailbox (its head), newest head first: the `limit` conversations with the highest heads below the UID
        `before` (None: all), or with `after`, the `limit` with the lowest heads above the UID `after` (the
        page before a page whose newest head is `after`). As cheap for the first page of 100,000 messages as
        for 100."""

    @abc.abstractmethod
    async def thread_summaries(
        self, account_id: int, thread_ids: Sequence[int], mailbox_ids: Sequence[int]
    ) -> dict[int, ThreadSummary]:
        """For each of the account's conversations `thread_ids` that has messages in `mailbox_ids`: how many,
        how many unseen and flagged (a message list's conversation row)."""

    @abc.abstractmethod
    async def thread_messages(
        self,
        account_id: int,
        thread_ids: Sequence[int],
        mailbox_ids: Sequence[int] | None = None,
        limit: int = 1000,
    ) -> list[MessageInfo]:
        """The messages of the account's conversations `thread_ids` (in `mailbox_ids`, None: in every
        mailbox), at most `limit`, the newest (highest internal date) kept, in internal-date order."""

    @abc.abstractmethod
    async def snippets(self, content_ids: Sequence[int], length: int = 200) -> dict[int, str]:
        """The beginning of each message's text (its decoded text parts, as search sees them), at most
        `length` characters with runs of white space made one space: a message list's preview line."""

    @abc.abstractmethod
    async def get_messages(self, mailbox_id: int, uids: Iterable[int]) -> list[MessageInfo]:
        """The messages of a mailbox with these UIDs (those that exist), in UID order."""

    async def snapshot(self, mailbox_id: int) -> MailboxSnapshot:
        """The mailbox's messages now, as one consistent `MailboxSnapshot` (NotFound for an unknown mailbox).
        Backends may cache it and bring it up to date from `changes_since`, so that selecting a large
        mailbox again costs in proportion to what changed."""
        status = await self.mailbox_status(mailbox_id)
        messages = await self.list_messages(mailbox_id)
        return build_snapshot(status.mailbox, max((m.modseq for m in messages), default=0), messages)

    @abc.abstractmethod
    async def changes_since(self, mailbox_id: int, modseq: int) -> MailboxChanges:
        """The messages with a MODSEQ above `modseq` (new or with changed flags), the UIDs expunged with a
        MODSEQ above it (from the tombstones) and the mailbox's highest MODSEQ, in one read transaction: a
        session that has seen everything up to `modseq` is up to date after applying them. NotFound for an
        unknown mailbox."""

    @abc.abstractmethod
    async def search(self, mailbox_id: int, criteria: Criteria, *, newest: int | None = None) -> list[int]:
        """IMAP SEARCH (RFC 9051 6.4.4): UIDs of the mailbox's messages matching `criteria`, ascending, from
        one consistent snapshot. Matching rules: `postoffice.store.criteria`. NotFound for an unknown
        mailbox; ValueError for a criterion the store cannot answer (\\Recent). With `newest`, only that
        many of the highest matching UIDs (still ascending): a search box's first page, which must not cost
        what all of a common word's matches cost."""

    @abc.abstractmethod
    async def get_parsed(self, content_id: int) -> ParsedMessage: ...

    async def get_parsed_many(self, content_ids: Sequence[int]) -> dict[int, ParsedMessage]:
        """Several parsed structures in one read; missing ids are left out."""
        found: dict[int, ParsedMessage] = {}
        for content_id in dict.fromkeys(content_ids):
            try:
                found[content_id] = await self.get_parsed(content_id)
            except NotFound:
                pass
        return found

    @abc.abstractmethod
    async def sort_fields(self, content_ids: Sequence[int]) -> dict[int, SortFields]:
        """What IMAP SORT and THREAD compare of several stored messages (`postoffice.message.sort_fields`),
        by content id, in one read; ids that no longer exist are left out."""

    @abc.abstractmethod
    async def sort_columns(
        self, content_ids: Sequence[int], names: Sequence[str]
    ) -> dict[str, dict[int, Any]]:
        """Some of the `sort_fields` of several stored messages, in one read: for each of `names` (names of
        SortFields' fields), {content id: the value `sort_fields` has}. A first SORT or THREAD of a large
        mailbox reads only what it compares (SORT by DATE: the sent dates alone). Ids that no longer exist
        are left out; ValueError for a name that is not a field."""

    @abc.abstractmethod
    async def imap_renderings(self, content_ids: Sequence[int]) -> dict[int, ImapRendering]:
        """ENVELOPE and BODYSTRUCTURE of several messages as rendered at delivery, in one read."""

    @abc.abstractmethod
    async def expunge_deleted(self, mailbox_id: int, only: Iterable[int] | None = None) -> list[int]:
        """EXPUNGE / CLOSE (RFC 9051 6.4.3, 6.4.2): remove durably the messages that carry \\Deleted now (of
        `only`, when given: UID EXPUNGE), in one transaction (on a full disk in several: StoreFull when one
        message cannot be removed, after the others before it were, decision 0030); returns the UIDs removed,
        ascending."""

    @abc.abstractmethod
    def open_content(self, content_id: int, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        """Stream the message bytes in chunks (memory bounded, whatever the message size)."""

    @abc.abstractmethod
    async def read_content(self, content_id: int) -> bytes:
        """The whole message; for small messages and tests. Prefer `open_content` for streaming."""

    async def read_range(self, content_id: int, offset: int, length: int) -> bytes:
        """`length` octets of a message from `offset` (fewer at the end), without reading the rest of it.
        This fallback reads the whole message; backends should override it."""
        return (await self.read_content(content_id))[max(offset, 0) : max(offset, 0) + max(length, 0)]

    @abc.abstractmethod
    async def read_contents(
        self, content_ids: Sequence[int], *, octets: int | None = None
    ) -> dict[int, bytes]:
        """Several whole messages in one read (read-ahead for small messages); missing ids are left out.
        `octets`: their total size, when the caller knows it (the store then does not look it up to decide
        how to read them)."""

    @abc.abstractmethod
    async def prune_tombstones(self, before: float) -> int:
        """Remove the tombstones of expunges made before `before` (epoch seconds); returns how many. A mailbox
        keeps the highest MODSEQ it pruned, and `changes_since` an older MODSEQ answers with `present`."""

    @abc.abstractmethod
    async def expunge(self, mailbox_id: int, uids: Iterable[int]) -> list[int]:
        """Remove messages durably, leaving tombstones; returns the UIDs removed. On a full disk in several
        transactions, like `expunge_deleted`."""

    @abc.abstractmethod
    async def store_flags(
        self,
        mailbox_id: int,
        uids: Iterable[int],
        flags: Iterable[str],
        mode: str,
        *,
        keyword_limits: KeywordLimits | None = None,
        settable: Collection[str] | None = None,
    ) -> int:
        """mode: "add" | "remove" | "replace". Returns the new MODSEQ. LimitExceeded (nothing changes) when
        the change gives a message a keyword no message of the mailbox has that breaks `keyword_limits`
        (too long, or one more than the mailbox may have); keywords the mailbox has already are never
        refused (docs/decisions/0043). With `settable`, only those flags change (`\\*` stands for every
        keyword), whatever the mode: the others stay as they are on each message (IMAP ACL, decision 0073:
        a "replace" by a user who may not change \\Deleted keeps it where it is).
        Committed (other sessions see it, a killed process keeps it) when it returns, but a backend may give
        the answer before the change is fsynced: a power loss may lose the last flag changes, never a message
        (docs/decisions/0074)."""

    @abc.abstractmethod
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
    ) -> FlagUpdate:
        """`store_flags` for the messages whose MODSEQ is at most `unchanged_since` (RFC 7162 section 3.1.3:
        STORE UNCHANGEDSINCE), checked and changed in one transaction; the others are left as they are and
        named in `modified` (every message when `unchanged_since` is 0: a MODSEQ is never 0). UIDs that do
        not exist are neither changed nor modified."""

    async def submit(
        self,
        source: IO[bytes],
        parsed: ParsedMessage,
        account_ids: Iterable[int],
        outbound: OutboundMessage | None,
        mailbox: str = "INBOX",
    ) -> SubmitResult:
        """Deliver a copy to `mailbox` of each local account (as `deliver`) and, when `outbound` is given,
        queue the same bytes (`parsed.size` of them from `source`) for its remote recipients, all in one
        transaction: durable when it returns, all or nothing. Either part may be empty. A form of
        `commit_delivery`."""
        if outbound is not None:
            check_outbound(outbound)
        targets = list(dict.fromkeys(account_ids))
        if not targets and outbound is None:
            return SubmitResult([], None)
        copies = tuple(NewCopy(account_id, 0, mailbox) for account_id in targets)
        result = await self.commit_delivery(Delivery((MessageText(source, parsed),), copies, outbound))
        return SubmitResult(result.copies, result.queue_id)

    @abc.abstractmethod
    async def enqueue(self, source: IO[bytes] | bytes, size: int, outbound: OutboundMessage) -> int:
        """Queue a message without local copies (e.g. one the server generates); returns the queue id."""

    # -- the outbound queue ----------------------------------------------------------------------------------
    @abc.abstractmethod
    async def queue_due(self, now: float, limit: int, exclude: Collection[int] = ()) -> list[QueuedMessage]:
        """Up to `limit` messages with at least one pending recipient whose next attempt is at or before
        `now`, oldest first, each with all of its recipients; not the ids in `exclude` (in flight)."""

    @abc.abstractmethod
    async def queue_get(self, queue_id: int) -> QueuedMessage | None: ...

    @abc.abstractmethod
    async def queue_list(self) -> list[QueuedMessage]:
        """Every queued message, oldest first."""

    @abc.abstractmethod
    async def queue_read(self, queue_id: int) -> bytes:
        """The queued message's bytes, whole (NotFound when it is not queued). Prefer `queue_open`."""

    @abc.abstractmethod
    def queue_open(self, queue_id: int, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        """Stream the queued message's bytes in chunks (memory bounded, whatever the size)."""

    async def queue_record(
        self,
        queue_id: int,
        results: Sequence[RecipientResult],
        *,
        bounces: Sequence[GeneratedMessage] = (),
        keep: bool = False,
        local_copy: LocalCopy | None = None,
    ) -> QueuedMessage:
        """Record delivery results durably and queue the DSNs they caused (`bounces`) in the same
        transaction, so that a crash neither loses nor duplicates a DSN; `local_copy` delivers the message to
        local mailboxes in that transaction too (queued mail for our own users, such as bounces). A
        recipient that is final already cannot change (StoreError: the whole call changes nothing). When
        every recipient is final the message and its bytes are removed in that transaction, unless `keep`.
        Returns the message as recorded. A form of `commit_delivery`."""
        texts: tuple[MessageText, ...] = ()
        copies: tuple[NewCopy, ...] = ()
        if local_copy is not None and local_copy.account_ids:
            texts = (MessageText(local_copy.source, local_copy.parsed),)
            copies = tuple(NewCopy(account_id) for account_id in dict.fromkeys(local_copy.account_ids))
        record = QueueUpdate(queue_id, tuple(results), keep)
        result = await self.commit_delivery(Delivery(texts, copies, generated=tuple(bounces), record=record))
        if result.recorded is None:  # the backend broke commit_delivery's contract (after its commit)
            raise RuntimeError(f"commit_delivery recorded queued message {queue_id} but returned no record")
        return result.recorded

    @abc.abstractmethod
    async def queue_delete(self, queue_id: int) -> bool:
        """Remove a queued message and its bytes, sending nothing; False when it was not queued."""

    @abc.abstractmethod
    async def queue_retry(self, queue_id: int | None = None) -> int:
        """Make the pending recipients of one message (or of all, for None) due now; returns how many."""

    @abc.abstractmethod
    async def queue_stats(self) -> QueueStats: ...

    @abc.abstractmethod
    def subscribe_queue(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` on the event loop after each commit that queued a message or made one due (submit,
        enqueue, DSNs of queue_record, queue_retry); returns unsubscribe."""

    # -- change notifications --------------------------------------------------------------------------------
    @abc.abstractmethod
    def subscribe(self, account_id: int, callback: Callable[[ChangeEvent], None]) -> Callable[[], None]:
        """Call `callback` on the event loop after each committed change of the account made through this
        store object, in commit order (a read from the callback sees the change); returns unsubscribe.
        `postoffice.store.changes.ChangeBus` implements the delivery for any backend."""

    @abc.abstractmethod
    def subscribe_all(self, callback: Callable[[ChangeEvent], None]) -> Callable[[], None]:
        """`subscribe` for the changes of every account (the spam learner's); returns unsubscribe."""

    # -- login guard (docs/decisions/0027) ---------------------------------------------------------------
    @abc.abstractmethod
    async def login_guard_entries(self, now: float) -> list[LoginGuardEntry]:
        """Every entry that has not ended at Unix time `now` (lockouts and trusted pairs)."""

    @abc.abstractmethod
    async def login_guard_save(self, entries: Sequence[LoginGuardEntry], now: float) -> None:
        """Insert or replace `entries` (one per kind, client and account) and delete every entry that has
        ended at `now`, in one transaction."""

    @abc.abstractmethod
    async def login_guard_unlock(
        self, *, client: str | None = None, account: str | None = None
    ) -> list[LoginGuardEntry]:
        """Delete the lockouts of `client` (its own and its pairs') or of `account` (likewise); trusted pairs
        stay. Returns what was deleted. After the commit `login_guard_generation` changes, so a server
        running on this store (another process) lifts them from memory on its next lockout hit."""

    @abc.abstractmethod
    def login_guard_generation(self) -> object:
        """A value that changes after every `login_guard_unlock` by any process (cheap and not a coroutine:
        the SQLite backend stats a marker file)."""

    # -- greylisting (docs/decisions/0089) -------------------------------------------------------------------
    @abc.abstractmethod
    async def greylist_entries(self, keys: Sequence[str], now: float) -> dict[str, GreylistEntry]:
        """The entries of `keys` that have not expired at Unix time `now`, by key (a key without one is
        left out)."""

    @abc.abstractmethod
    async def greylist_save(self, entries: Sequence[GreylistEntry], now: float) -> None:
        """Insert or replace `entries` (by key), and forget entries that have expired at `now` (a bounded
        number per call, oldest first), in one transaction. The write may be committed without waiting for
        the disk (a record lost to a power cut costs one more delay, never a message)."""

    # -- web sessions (docs/decisions/0046) ------------------------------------------------------------------
    @abc.abstractmethod
    async def web_session_create(self, session: WebSession) -> None:
        """Keep a new web session (its account must exist); sessions that have ended are deleted with it."""

    @abc.abstractmethod
    async def web_session_get(self, session_id: str, now: float, idle_timeout: float) -> WebSession | None:
        """The session with this id unless it has expired at `now` or saw no request for `idle_timeout`
        seconds, or its account is gone."""

    @abc.abstractmethod
    async def web_session_touch(self, session_id: str, now: float) -> None:
        """Record a request at `now` (`last_seen`)."""

    @abc.abstractmethod
    async def web_session_delete(self, session_id: str) -> bool:
        """End one session (logout); whether it existed."""

    @abc.abstractmethod
    async def web_sessions_list(self, account_id: int, now: float) -> list[WebSession]:
        """The account's sessions that have not expired at `now`, newest first."""

    @abc.abstractmethod
    async def web_sessions_end(self, account_id: int, *, keep: str | None = None) -> int:
        """End every session of the account but `keep`; how many ended (a password change)."""

    # -- per-account preferences -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def account_settings(self, account_id: int, prefix: str = "") -> dict[str, str]:
        """The account's preferences whose key starts with `prefix`."""

    @abc.abstractmethod
    async def set_account_setting(self, account_id: int, key: str, value: str | None) -> None:
        """Set one preference (None: remove it); NotFound when the account does not exist."""

    @abc.abstractmethod
    async def set_password_derived(self, account_id: int, password_hash: str, value: str) -> bool:
        """Set PASSWORD_DERIVED_SETTING to `value` only while the account's password hash is still
        `password_hash` (one transaction): a secret made from a password that was replaced meanwhile is never
        stored (decision 0068). False when it was not stored (another hash, or no such account)."""

    # -- account security: second factor, app passwords, recent logins (docs/decisions/0052) --------------
    @abc.abstractmethod
    async def second_factor(self, account_id: int) -> SecondFactor | None:
        """The account's TOTP second factor; None when it is off (or there is no such account)."""

    @abc.abstractmethod
    async def set_second_factor(
        self, account_id: int, secret: str | None, recovery_code_hashes: Sequence[str] = ()
    ) -> None:
        """Turn TOTP on with `secret` and these recovery codes (their SHA-256, hex), replacing any, or off
        (None: the secret and the recovery codes are deleted). `Account.two_factor` follows. The same secret
        again keeps its last accepted step (new recovery codes must not make an old code valid again); a new
        one starts afresh. NotFound for an unknown account."""

    @abc.abstractmethod
    async def use_totp_step(self, account_id: int, step: int) -> bool:
        """Accept a code of time step `step` once: True (and `last_step` becomes `step`) only when `step` is
        later than the last accepted one, atomically, so one code never logs in twice (RFC 6238 5.2)."""

    @abc.abstractmethod
    async def use_recovery_code(self, account_id: int, code_hash: str) -> bool:
        """Use up the recovery code with this SHA-256 (hex): whether it was there (each works once)."""

    @abc.abstractmethod
    async def add_app_password(
        self, account_id: int, name: str, password_hash: str, now: float
    ) -> AppPassword:
        """Keep a new app password by its SHA-256 (hex). NotFound for an unknown account; AlreadyExists when
        the account has one of that name."""

    @abc.abstractmethod
    async def list_app_passwords(self, account_id: int) -> list[AppPassword]:
        """The account's app passwords, by name."""

    @abc.abstractmethod
    async def find_app_password(self, account_id: int, password_hash: str) -> AppPassword | None:
        """The account's app password with this SHA-256 (hex), if any."""

    @abc.abstractmethod
    async def app_password_used(self, password_id: int, now: float, protocol: str, client: str) -> None:
        """Record a login with the app password (its last use)."""

    @abc.abstractmethod
    async def remove_app_password(self, account_id: int, password_id: int) -> bool:
        """Revoke one of the account's app passwords: whether it existed."""

    @abc.abstractmethod
    async def record_login(self, account_id: int, event: LoginEvent) -> None:
        """Add to the account's recent logins; only the newest `LOGIN_HISTORY` are kept."""

    @abc.abstractmethod
    async def recent_logins(self, account_id: int, limit: int = 50) -> list[LoginEvent]:
        """The account's most recent logins, newest first."""

    # -- identities ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def list_identities(self, account_id: int) -> list[Identity]:
        """The account's identities, the default first, then by address and name."""

    @abc.abstractmethod
    async def save_identity(self, identity: Identity) -> Identity:
        """Add (`id` 0) or change an identity of its account; a default one makes the others not default.
        NotFound for an unknown account or identity. Whether the account may send as the address is the
        caller's business (the submission policy decides)."""

    @abc.abstractmethod
    async def remove_identity(self, account_id: int, identity_id: int) -> bool:
        """Delete one of the account's identities: whether it existed."""

    # -- DKIM signing keys (docs/decisions/0056) ------------------------------------------------------------
    @abc.abstractmethod
    async def add_dkim_keys(self, keys: Sequence[DkimKey]) -> list[DkimKey]:
        """Add signing keys (each pending or active; `id` ignored) in one transaction; they come back with
        their ids, in order. NotFound for a domain not served; AlreadyExists for a selector the domain has had
        (in any state: a selector is never used twice), or a second pending or active key of one algorithm
        in a domain; StoreError for any other state. Nothing is added then."""

    @abc.abstractmethod
    async def dkim_keys(self, domain: str | None = None) -> list[DkimKey]:
        """The signing keys of `domain` (None: of every domain), removed ones included, by domain name, then
        creation time, then id. Every process sees the keys committed before the call."""

    @abc.abstractmethod
    async def set_dkim_key_states(self, states: Mapping[int, str], now: float) -> list[DkimKey]:
        """Move keys forward through DKIM_KEY_STATES, all in one transaction (a key entering "removed" loses
        its private key; `changed` becomes `now` for each key that moves); the keys, in the order given.
        NotFound for an unknown id; StoreError for an unknown state or a move backwards; AlreadyExists when a
        domain would have two pending or two active keys of one algorithm (so an activation names both the
        key that retires and the one that takes over). Nothing changes then."""

    # -- secrets of the installation -------------------------------------------------------------------------
    @abc.abstractmethod
    async def server_secret(self, name: str) -> bytes:
        """A random 32-octet secret of this installation called `name` (e.g. "srs"), made on first use and
        the same ever after, for every process and node sharing the store."""

    # -- MTA-STS policies and reports (docs/decisions/0057, 0058) --------------------------------------------
    @abc.abstractmethod
    async def mta_sts_policy(self, domain: str) -> StoredStsPolicy | None:
        """The MTA-STS policy kept for `domain` (None: none), whether it has expired or not."""

    @abc.abstractmethod
    async def save_mta_sts_policy(self, policy: StoredStsPolicy) -> None:
        """Keep `policy` as its domain's, replacing the one kept before."""

    @abc.abstractmethod
    async def add_report_counts(self, counts: Sequence[ReportCount]) -> None:
        """Add every count to its report line (a new line starts at 0), and record the policies given, all
        in one transaction."""

    @abc.abstractmethod
    async def pending_reports(self, before_day: str) -> list[PendingReport]:
        """The reports with lines counted for days before `before_day` (YYYY-MM-DD), by kind, day and
        domain."""

    @abc.abstractmethod
    async def remove_report(self, kind: str, day: str, domain: str) -> None:
        """Forget one report's lines and policy (it was sent, or cannot be)."""

    @abc.abstractmethod
    async def add_received_report(self, report: ReceivedReport) -> ReceivedReport | None:
        """Keep a report another server sent; it comes back with its id. None when the same reporter's
        report of that kind and id is kept already (reports are often sent twice)."""

    @abc.abstractmethod
    async def received_report(self, report_id: int) -> ReceivedReport | None:
        """One received report by its `id` (None: no such report)."""

    @abc.abstractmethod
    async def received_reports(
        self, *, kind: str | None = None, domain: str | None = None, limit: int = 100
    ) -> list[ReceivedReport]:
        """The received reports (of one kind, about one domain, when given), newest first."""

    # -- storage used ----------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def storage_used(self) -> dict[int, int]:
        """Octets of mail each account keeps now (every mailbox), by account id; accounts without mail
        may be missing."""

    @abc.abstractmethod
    async def quota_usage(self, account_ids: Iterable[int]) -> dict[int, QuotaUse]:
        """The storage quota and the octets kept now (as `storage_used` counts them) of each of these accounts
        that has a quota; accounts without one (or unknown) are missing. The delivery pipeline asks before
        every delivery (docs/decisions/0053): it must cost no I/O when none of them has a quota. A quota
        change is seen by the next call, from any process (as recipient resolution sees directory changes)."""

    def invalidate_caches(self) -> None:  # noqa: B027 - a no-op is right for a backend without caches
        """Drop in-memory caches (SIGHUP); they are rebuilt from the store on the next use."""

    # -- disk space ------------------------------------------------------------------------------------------
    async def has_room(self, size: int) -> bool:
        """Whether a message of `size` octets would be stored now, by the free disk space (decision 0030):
        a hint for refusing early (SMTP MAIL), the store decides again when the message is written."""
        return True

    # -- statistics (benchmarks) --------------------------------------------------------------------------
    @abc.abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters such as commits and write requests, for benchmarks and logs."""


def build_snapshot(info: MailboxInfo, modseq: int, messages: Iterable[MessageInfo]) -> MailboxSnapshot:
    """A snapshot from messages in UID order (`MailStore.snapshot` for backends without a cache)."""
    uids: array[int] = array("I")
    content_ids: array[int] = array("q")
    sizes: array[int] = array("q")
    dates: array[float] = array("d")
    modseqs: array[int] = array("q")
    flags: list[frozenset[str]] = []
    unseen = 0
    first_unseen: int | None = None
    keywords: set[str] = set()
    interned: dict[frozenset[str], frozenset[str]] = {}
    for m in messages:
        uids.append(m.uid)
        content_ids.append(m.content_id)
        sizes.append(m.size)
        dates.append(m.internaldate)
        modseqs.append(m.modseq)
        flags.append(interned.setdefault(m.flags, m.flags))
        if "\\Seen" not in m.flags:
            unseen += 1
            if first_unseen is None:
                first_unseen = m.uid
    for combination in interned:
        keywords.update(f for f in combination if not f.startswith("\\"))
    return MailboxSnapshot(
        info,
        modseq,
        uids,
        tuple(flags),
        content_ids,
        sizes,
        dates,
        unseen,
        first_unseen,
        frozenset(keywords),
        modseqs,
    )


def advance_snapshot(base: MailboxSnapshot, info: MailboxInfo, changes: MailboxChanges) -> MailboxSnapshot:
    """`base` brought up to date with what changed after its MODSEQ (`MailStore.changes_since`, read in the
    same transaction as `info`), at the cost of copying its columns once. Keywords only accumulate (as in
    Dovecot's index): a keyword no message carries any more stays announced until the snapshot is rebuilt."""
    if not changes.messages and not changes.expunged:
        return dataclasses.replace(base, mailbox=info, modseq=max(base.modseq, changes.highest_modseq))
    uids, content_ids, sizes, dates = base.uids, base.content_ids, base.sizes, base.internaldates
    modseqs = base.modseqs[:]  # changed in place below
    flags = list(base.flags)
    unseen, first_unseen = base.unseen, base.first_unseen_uid
    rescan = False
    keywords = set(base.keywords)
    last = uids[-1] if uids else 0
    new = [m for m in changes.messages if m.uid > last]
    for m in changes.messages:
        if m.uid > last:
            break
        i = base.index(m.uid)
        if i is None:
            continue  # added and expunged again after the base's MODSEQ
        before, after = flags[i], m.flags
        flags[i] = after
        modseqs[i] = m.modseq
        keywords.update(f for f in after if not f.startswith("\\"))
        was_unseen, is_unseen = "\\Seen" not in before, "\\Seen" not in after
        unseen += is_unseen - was_unseen
        if is_unseen and (first_unseen is None or m.uid < first_unseen):
            first_unseen = m.uid
        elif was_unseen and not is_unseen and m.uid == first_unseen:
            rescan = True
    if changes.expunged:
        gone = set(changes.expunged)
        keep = [uid not in gone for uid in uids]
        for i, kept in enumerate(keep):
            if not kept:
                unseen -= "\\Seen" not in flags[i]
                if uids[i] == first_unseen:
                    rescan = True
        uids = array(uids.typecode, itertools.compress(uids, keep))
        content_ids = array(content_ids.typecode, itertools.compress(content_ids, keep))
        sizes = array(sizes.typecode, itertools.compress(sizes, keep))
        dates = array(dates.typecode, itertools.compress(dates, keep))
        modseqs = array(modseqs.typecode, itertools.compress(modseqs, keep))
        flags = list(itertools.compress(flags, keep))
    elif new:
        uids, content_ids, sizes, dates = uids[:], content_ids[:], sizes[:], dates[:]
    for m in new:
        uids.append(m.uid)
        content_ids.append(m.content_id)
        sizes.append(m.size)
        dates.append(m.internaldate)
        modseqs.append(m.modseq)
        flags.append(m.flags)
        keywords.update(f for f in m.flags if not f.startswith("\\"))
        if "\\Seen" not in m.flags:
            unseen += 1
            if first_unseen is None:
                first_unseen = m.uid
    if rescan:
        first_unseen = next((uids[i] for i, f in enumerate(flags) if "\\Seen" not in f), None)
    return MailboxSnapshot(
        info,
        max(base.modseq, changes.highest_modseq),
        uids,
        tuple(flags),
        content_ids,
        sizes,
        dates,
        unseen,
        first_unseen,
        frozenset(keywords),
        modseqs,
    )


PathLike = str | os.PathLike[str]
