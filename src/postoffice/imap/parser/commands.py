"""The typed results of the IMAP command parser: value types, search keys, reader events and commands.

Every command of RFC 9051 / RFC 3501 section 6 and of the extensions listed in `postoffice.imap.parser` is a
frozen dataclass here (`Login`, `Select`, `Fetch`, ...), a subclass of `Command`, itself a `ReaderEvent`:
what `CommandReader.next()` returns. The grammar (`postoffice.imap.parser.grammar`) builds them; the session
dispatches on their type. Nothing here parses or does I/O.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, TypeAlias

from postoffice.imap.sequence import SequenceSet

# ---------------------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class MailboxName:
    """A mailbox name or LIST pattern: `name` decoded (`postoffice.imap.parser.grammar`), `raw` as sent.

    `valid` is False for a name that is not canonical modified UTF-7 (then `name` is `raw`): no mailbox has
    such a name, so the server answers NO, not BAD (docs/decisions/0020). A pattern or reference name is
    decoded leniently instead (`decode_mutf7(strict=False)`) and `valid` only says whether that was needed."""

    name: str
    raw: str
    valid: bool = True


ExtValue: TypeAlias = "str | tuple[ExtValue, ...]"
"""A `tagged-ext-val` (RFC 4466) kept raw: atoms, numbers and strings as str, lists as tuples."""


@dataclass(frozen=True)
class ExtParam:
    """An extension parameter (SELECT/EXAMINE, CREATE, LIST options): upper-case name, optional raw value."""

    name: str
    value: ExtValue | None = None


class SectionText(Enum):
    HEADER = "HEADER"
    HEADER_FIELDS = "HEADER.FIELDS"
    HEADER_FIELDS_NOT = "HEADER.FIELDS.NOT"
    TEXT = "TEXT"
    MIME = "MIME"


@dataclass(frozen=True)
class Section:
    """`section-spec` (RFC 9051 section 6.4.5): part path, then an optional text specifier.

    BODY[] is Section(); BODY[1.2.MIME] is Section((1, 2), SectionText.MIME); BODY[HEADER.FIELDS (DATE)] is
    Section((), SectionText.HEADER_FIELDS, ("DATE",)).
    """

    part: tuple[int, ...] = ()
    text: SectionText | None = None
    fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if any(n < 1 for n in self.part):
            raise ValueError("section part numbers are positive")
        if self.text is SectionText.MIME and not self.part:
            raise ValueError("MIME needs a part number")
        has_fields = self.text in (SectionText.HEADER_FIELDS, SectionText.HEADER_FIELDS_NOT)
        if has_fields != bool(self.fields):
            raise ValueError("HEADER.FIELDS[.NOT] needs at least one field name, and only they take fields")

    def __str__(self) -> str:
        spec = ".".join(str(n) for n in self.part)
        if self.text is not None:
            spec = f"{spec}.{self.text.value}" if spec else self.text.value
        if self.fields:
            spec += " (" + " ".join(self.fields) + ")"
        return f"[{spec}]"


@dataclass(frozen=True)
class Partial:
    """`<origin.length>` of a partial fetch."""

    origin: int
    length: int

    def __str__(self) -> str:
        return f"<{self.origin}.{self.length}>"


@dataclass(frozen=True)
class FetchAttribute:
    """A fetch item without section: ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT
    BODY BODYSTRUCTURE UID MODSEQ EMAILID THREADID PREVIEW (its "(LAZY)" modifier read and dropped: the
    preview is kept with the message, never costly, RFC 8970 3.2)."""

    name: str

    NAMES: ClassVar[frozenset[str]] = frozenset(
        [
            "ENVELOPE",
            "FLAGS",
            "INTERNALDATE",
            "RFC822",
            "RFC822.HEADER",
            "RFC822.SIZE",
            "RFC822.TEXT",
            "BODY",
            "BODYSTRUCTURE",
            "UID",
            "MODSEQ",
            "EMAILID",
            "THREADID",
            "PREVIEW",
            "SAVEDATE",
        ]
    )

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class FetchBody:
    """BODY[section]<partial> or BODY.PEEK[section]<partial>."""

    section: Section = Section()
    partial: Partial | None = None
    peek: bool = False

    def __str__(self) -> str:
        return ("BODY.PEEK" if self.peek else "BODY") + str(self.section) + str(self.partial or "")


@dataclass(frozen=True)
class FetchBinary:
    """BINARY[part]<partial> or BINARY.PEEK[part]<partial> (RFC 3516, RFC 9051 section 6.4.5)."""

    part: tuple[int, ...] = ()
    partial: Partial | None = None
    peek: bool = False

    def __str__(self) -> str:
        name = "BINARY.PEEK" if self.peek else "BINARY"
        return f"{name}[{'.'.join(map(str, self.part))}]{self.partial or ''}"


@dataclass(frozen=True)
class FetchBinarySize:
    """BINARY.SIZE[part]."""

    part: tuple[int, ...] = ()

    def __str__(self) -> str:
        return f"BINARY.SIZE[{'.'.join(map(str, self.part))}]"


FetchItem: TypeAlias = FetchAttribute | FetchBody | FetchBinary | FetchBinarySize


class StoreMode(Enum):
    REPLACE = ""
    ADD = "+"
    REMOVE = "-"


@dataclass(frozen=True)
class CatenateText:
    """A TEXT literal of a CATENATE list (RFC 4469 section 5), or RFC 6855's `UTF8 (~{n})` (`utf8`): its
    octets came in AppendData events, after a CatenateTextStart."""

    size: int
    binary: bool = False
    utf8: bool = False


@dataclass(frozen=True)
class CatenateUrl:
    """A URL of a CATENATE list (RFC 4469 section 5), as the client wrote it."""

    url: str


CatenatePart: TypeAlias = CatenateText | CatenateUrl


@dataclass(frozen=True)
class AppendMessage:
    """One message of an APPEND: its flags, INTERNALDATE (None: the server's time), literal size, whether it
    was a literal8 (`~{n}`, RFC 3516) and whether it came as `UTF8 (~{n})` (RFC 6855). A CATENATE message
    (RFC 4469) has its parts in `catenate` (None for a literal): then `size`, `binary` and `utf8` are its
    TEXT parts' (their octets together; any of them literal8; any of them UTF8)."""

    flags: tuple[str, ...]
    internal_date: datetime.datetime | None
    size: int
    binary: bool = False
    utf8: bool = False
    catenate: tuple[CatenatePart, ...] | None = None


# ------------------------------------------------------------------------------------------ search keys


@dataclass(frozen=True)
class SearchFlag:
    """A search key without argument: ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED
    UNDELETED UNDRAFT UNFLAGGED UNSEEN SAVEDATESUPPORTED (RFC 8514)."""

    name: str

    NAMES: ClassVar[frozenset[str]] = frozenset(
        [
            "ALL",
            "ANSWERED",
            "DELETED",
            "DRAFT",
            "FLAGGED",
            "NEW",
            "OLD",
            "RECENT",
            "SEEN",
            "UNANSWERED",
            "UNDELETED",
            "UNDRAFT",
            "UNFLAGGED",
            "UNSEEN",
            "SAVEDATESUPPORTED",
        ]
    )


@dataclass(frozen=True)
class SearchText:
    """BCC BODY CC FROM SUBJECT TEXT TO with a string (substring match)."""

    field: str
    value: str

    NAMES: ClassVar[frozenset[str]] = frozenset(["BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"])


@dataclass(frozen=True)
class SearchHeader:
    """HEADER field-name string."""

    name: str
    value: str


@dataclass(frozen=True)
class SearchKeyword:
    """KEYWORD flag (present=True) or UNKEYWORD flag (present=False)."""

    keyword: str
    present: bool = True


@dataclass(frozen=True)
class SearchDate:
    """BEFORE ON SINCE (internal date), SENTBEFORE SENTON SENTSINCE (Date: header) or SAVEDBEFORE SAVEDON
    SAVEDSINCE (save date, RFC 8514) with a date."""

    field: str
    date: datetime.date

    NAMES: ClassVar[frozenset[str]] = frozenset(
        ["BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE", "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"]
    )


@dataclass(frozen=True)
class SearchSize:
    """LARGER n or SMALLER n (RFC822.SIZE)."""

    field: str
    size: int


@dataclass(frozen=True)
class SearchSequence:
    """A bare sequence set (message sequence numbers), including "$" (RFC 5182)."""

    sequence: SequenceSet


@dataclass(frozen=True)
class SearchUid:
    """UID sequence-set."""

    sequence: SequenceSet


@dataclass(frozen=True)
class SearchModSeq:
    """MODSEQ [entry-name entry-type] modseq (RFC 7162 section 3.1.5); entry is ("/flags/\\\\Seen", "all")."""

    modseq: int
    entry: tuple[str, str] | None = None


@dataclass(frozen=True)
class SearchWithin:
    """OLDER n or YOUNGER n: seconds (RFC 5032 section 3)."""

    field: str
    seconds: int


@dataclass(frozen=True)
class SearchObjectId:
    """EMAILID objectid or THREADID objectid (RFC 8474 section 6); `field` is "EMAILID" or "THREADID"."""

    field: str
    objectid: str


@dataclass(frozen=True)
class SearchNot:
    key: SearchKey


@dataclass(frozen=True)
class SearchOr:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True)
class SearchAnd:
    """A parenthesised list of keys: all must match."""

    keys: tuple[SearchKey, ...]


SearchKey: TypeAlias = (
    SearchFlag
    | SearchText
    | SearchHeader
    | SearchKeyword
    | SearchDate
    | SearchSize
    | SearchSequence
    | SearchUid
    | SearchModSeq
    | SearchObjectId
    | SearchWithin
    | SearchNot
    | SearchOr
    | SearchAnd
)


# ---------------------------------------------------------------------------------------- reader events


class ReaderEvent:
    """Base class of everything CommandReader.next() returns."""

    __slots__ = ()


@dataclass(frozen=True)
class NeedContinuation(ReaderEvent):
    """A synchronizing literal of `size` octets was announced: send "+ ..." (or call refuse_literal())."""

    tag: str
    size: int


@dataclass(frozen=True)
class LiteralTooLarge(ReaderEvent):
    """A literal over the limit was refused before reading it; the rest of the command is discarded.
    `command`: the command's name, upper-case, as its first line gives it ("" when it gives none): the reply
    depends on it (SETMETADATA: NO [METADATA MAXSIZE n], RFC 5464 section 4.3)."""

    tag: str | None
    size: int
    limit: int
    synchronizing: bool
    command: str = field(default="", compare=False)


@dataclass(frozen=True)
class ParseError(ReaderEvent):
    """Answer BAD with `message`; `tag` is None when the line did not start with a valid tag."""

    tag: str | None
    message: str


@dataclass(frozen=True)
class UnsupportedCharset(ReaderEvent):
    """SEARCH with a CHARSET other than SEARCH_CHARSETS: answer NO [BADCHARSET (UTF-8 US-ASCII)]; with
    `save` (RETURN (SAVE)) the saved search result becomes empty (RFC 5182 section 2.1)."""

    tag: str
    charset: str
    save: bool = False


@dataclass(frozen=True)
class AppendMessageStart(ReaderEvent):
    """A message literal of APPEND (or REPLACE) begins (message number `index`, from 0); AppendData events
    follow."""

    tag: str
    mailbox: MailboxName
    index: int
    message: AppendMessage
    synchronizing: bool
    replace: tuple[int, bool] | None = None  # REPLACE (RFC 8508): the message it replaces, and whether by UID


@dataclass(frozen=True)
class CatenateTextStart(ReaderEvent):
    """A TEXT literal of a CATENATE list begins (RFC 4469): part `part` (from 0) of message `index` (from 0)
    of an APPEND or REPLACE; AppendData events follow, as for a message literal. `message` has the
    message's flags and date and this literal's size (the message's parts are the command's, at its end);
    `urls`: the URL parts of the list right before this one (since its previous TEXT), in order."""

    tag: str
    mailbox: MailboxName
    index: int
    part: int
    text: CatenateText
    message: AppendMessage
    synchronizing: bool
    replace: tuple[int, bool] | None = None
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppendData(ReaderEvent):
    """Octets of the current APPEND message literal."""

    tag: str
    data: bytes


@dataclass(frozen=True)
class IdleDone(ReaderEvent):
    """The client ended IDLE with DONE."""


@dataclass(frozen=True)
class AuthenticateResponse(ReaderEvent):
    """One client line during AUTHENTICATE (RFC 9051 section 6.2.2): base64 text, or b"*" to cancel."""

    line: bytes

    @property
    def cancelled(self) -> bool:
        return self.line == b"*"


class ImapUsageError(RuntimeError):
    """The server called a reader method at a time it is not allowed."""


# ---------------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Command(ReaderEvent):
    """Base class of the typed commands. `name` is the command as the client would write it."""

    tag: str

    NAME: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return ("UID " if getattr(self, "uid", False) else "") + self.NAME


@dataclass(frozen=True)
class Capability(Command):
    NAME = "CAPABILITY"


@dataclass(frozen=True)
class Noop(Command):
    NAME = "NOOP"


@dataclass(frozen=True)
class Logout(Command):
    NAME = "LOGOUT"


@dataclass(frozen=True)
class StartTls(Command):
    """STARTTLS. The reader has already dropped every octet buffered after this line."""

    NAME = "STARTTLS"


@dataclass(frozen=True)
class Authenticate(Command):
    """AUTHENTICATE mechanism [initial-response] (SASL-IR, RFC 4959): the initial response base64-decoded,
    b"" for "=", None when absent."""

    mechanism: str
    initial_response: bytes | None = None
    NAME = "AUTHENTICATE"


@dataclass(frozen=True)
class Login(Command):
    username: str
    password: str
    NAME = "LOGIN"


@dataclass(frozen=True)
class Enable(Command):
    capabilities: tuple[str, ...]
    NAME = "ENABLE"


@dataclass(frozen=True)
class Select(Command):
    """SELECT mailbox [(params)]: CONDSTORE, QRESYNC (...) etc. as raw ExtParams (RFC 7162)."""

    mailbox: MailboxName
    params: tuple[ExtParam, ...] = ()
    NAME = "SELECT"


@dataclass(frozen=True)
class Examine(Command):
    mailbox: MailboxName
    params: tuple[ExtParam, ...] = ()
    NAME = "EXAMINE"


@dataclass(frozen=True)
class Create(Command):
    """CREATE mailbox [(USE (\\Special ...) other-params)] (RFC 6154 section 3)."""

    mailbox: MailboxName
    special_use: tuple[str, ...] = ()
    params: tuple[ExtParam, ...] = ()
    NAME = "CREATE"


@dataclass(frozen=True)
class Delete(Command):
    mailbox: MailboxName
    NAME = "DELETE"


@dataclass(frozen=True)
class Rename(Command):
    mailbox: MailboxName
    new_name: MailboxName
    NAME = "RENAME"


@dataclass(frozen=True)
class Subscribe(Command):
    mailbox: MailboxName
    NAME = "SUBSCRIBE"


@dataclass(frozen=True)
class Unsubscribe(Command):
    mailbox: MailboxName
    NAME = "UNSUBSCRIBE"


@dataclass(frozen=True)
class List(Command):
    """LIST [(select-opts)] reference (pattern | (patterns)) [RETURN (return-opts)] (RFC 5258, RFC 5819).

    Options are upper-case ExtParams (STATUS's value is the tuple of status items). `extended` is True when
    the client used any LIST-EXTENDED syntax (then the server answers in the extended form).
    """

    reference: MailboxName
    patterns: tuple[MailboxName, ...]
    select_options: tuple[ExtParam, ...] = ()
    return_options: tuple[ExtParam, ...] = ()
    extended: bool = False
    NAME = "LIST"

    @property
    def return_status(self) -> tuple[str, ...] | None:
        """The STATUS items of RETURN (STATUS (...)) (RFC 5819), or None."""
        for option in self.return_options:
            if option.name == "STATUS" and isinstance(option.value, tuple):
                return tuple(str(v) for v in option.value)
        return None


@dataclass(frozen=True)
class Lsub(Command):
    reference: MailboxName
    pattern: MailboxName
    NAME = "LSUB"


@dataclass(frozen=True)
class Namespace(Command):
    NAME = "NAMESPACE"


@dataclass(frozen=True)
class Status(Command):
    """STATUS mailbox (items): MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ
    APPENDLIMIT MAILBOXID DELETED-STORAGE, upper-case, in the client's order."""

    mailbox: MailboxName
    items: tuple[str, ...]
    NAME = "STATUS"

    ITEMS: ClassVar[frozenset[str]] = frozenset(
        [
            "MESSAGES",
            "RECENT",
            "UIDNEXT",
            "UIDVALIDITY",
            "UNSEEN",
            "DELETED",
            "SIZE",
            "HIGHESTMODSEQ",
            "APPENDLIMIT",
            "MAILBOXID",
            "DELETED-STORAGE",
        ]
    )


@dataclass(frozen=True)
class Append(Command):
    """APPEND, complete: the message octets came in AppendData events (`postoffice.imap.parser.reader`)."""

    mailbox: MailboxName
    messages: tuple[AppendMessage, ...]
    NAME = "APPEND"


@dataclass(frozen=True)
class Replace(Command):
    """[UID] REPLACE n mailbox message (RFC 8508): the message octets came in AppendData events, as APPEND's;
    `target` is the sequence number (or with `uid` the UID) of the message it replaces."""

    mailbox: MailboxName
    message: AppendMessage
    target: int
    uid: bool = False
    NAME = "REPLACE"


@dataclass(frozen=True)
class Idle(Command):
    """IDLE: send "+ idling", then call reader.expect_idle_done()."""

    NAME = "IDLE"


@dataclass(frozen=True)
class Check(Command):
    NAME = "CHECK"


@dataclass(frozen=True)
class Close(Command):
    NAME = "CLOSE"


@dataclass(frozen=True)
class Unselect(Command):
    NAME = "UNSELECT"


@dataclass(frozen=True)
class Expunge(Command):
    NAME = "EXPUNGE"


@dataclass(frozen=True)
class UidExpunge(Command):
    """UID EXPUNGE sequence-set (RFC 4315, RFC 9051)."""

    sequence: SequenceSet
    NAME = "EXPUNGE"

    @property
    def name(self) -> str:
        return "UID EXPUNGE"


@dataclass(frozen=True)
class Search(Command):
    """[UID] SEARCH [RETURN (opts)] [CHARSET c] keys. `keys` are ANDed. `return_options` is None without
    RETURN, () for "RETURN ()" (which means ALL, RFC 4731 section 3.1), each option once, upper-case;
    `charset` is upper-case or None. With "PARTIAL" among the options (RFC 5267 section 4.4), `partial` is
    its range as sent (first, last): 1-based positions in the result, either order. `update_fetch`: the
    fetch attributes given with UPDATE (RFC 5465 section 7, `UPDATE (fetch-att ...)`), () without."""

    keys: tuple[SearchKey, ...]
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    uid: bool = False
    partial: tuple[int, int] | None = None
    update_fetch: tuple[FetchItem, ...] = ()
    NAME = "SEARCH"

    #: the options without an argument (RFC 4731, RFC 5182 SAVE, RFC 5267 CONTEXT and UPDATE); PARTIAL has one
    RETURN_OPTIONS: ClassVar[frozenset[str]] = frozenset(
        {"MIN", "MAX", "ALL", "COUNT", "SAVE", "CONTEXT", "UPDATE"}
    )


@dataclass(frozen=True)
class Sort(Command):
    """[UID] SORT [RETURN (opts)] (criteria) charset keys (RFC 5256 section 3, RFC 5957 DISPLAYFROM and
    DISPLAYTO, RFC 5267 section 3 ESORT's RETURN and section 4 CONTEXT=SORT's). `criteria`: (key, reverse)
    pairs in order, keys upper-case; `charset` upper-case; `return_options`, `partial` and `update_fetch` as
    Search's."""

    criteria: tuple[tuple[str, bool], ...]
    charset: str
    keys: tuple[SearchKey, ...]
    return_options: tuple[str, ...] | None = None
    uid: bool = False
    partial: tuple[int, int] | None = None
    update_fetch: tuple[FetchItem, ...] = ()
    NAME = "SORT"

    SORT_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
    )
    RETURN_OPTIONS: ClassVar[frozenset[str]] = Search.RETURN_OPTIONS


@dataclass(frozen=True)
class Thread(Command):
    """[UID] THREAD algorithm charset keys (RFC 5256 section 3); `algorithm` and `charset` upper-case."""

    algorithm: str
    charset: str
    keys: tuple[SearchKey, ...]
    uid: bool = False
    NAME = "THREAD"

    ALGORITHMS: ClassVar[tuple[str, ...]] = ("ORDEREDSUBJECT", "REFERENCES")


@dataclass(frozen=True)
class Fetch(Command):
    """[UID] FETCH sequence items [(CHANGEDSINCE n [VANISHED])]; macros are expanded (`macro` names it)."""

    sequence: SequenceSet
    items: tuple[FetchItem, ...]
    changed_since: int | None = None
    vanished: bool = False
    uid: bool = False
    macro: str | None = None
    NAME = "FETCH"


@dataclass(frozen=True)
class Store(Command):
    """[UID] STORE sequence [(UNCHANGEDSINCE n)] (+|-)FLAGS[.SILENT] flags."""

    sequence: SequenceSet
    mode: StoreMode
    flags: tuple[str, ...]
    silent: bool = False
    unchanged_since: int | None = None
    uid: bool = False
    NAME = "STORE"


@dataclass(frozen=True)
class Copy(Command):
    sequence: SequenceSet
    mailbox: MailboxName
    uid: bool = False
    NAME = "COPY"


@dataclass(frozen=True)
class Move(Command):
    sequence: SequenceSet
    mailbox: MailboxName
    uid: bool = False
    NAME = "MOVE"


@dataclass(frozen=True)
class SetAcl(Command):
    """SETACL mailbox identifier mod-rights (RFC 4314 section 3.1): `mode` "+" (add), "-" (remove) or ""
    (replace) the `rights`, lower-case letters and digits as sent (the server refuses those it does not
    know)."""

    mailbox: MailboxName
    identifier: str
    mode: str
    rights: str
    NAME = "SETACL"


@dataclass(frozen=True)
class DeleteAcl(Command):
    """DELETEACL mailbox identifier (RFC 4314 section 3.2)."""

    mailbox: MailboxName
    identifier: str
    NAME = "DELETEACL"


@dataclass(frozen=True)
class GetAcl(Command):
    """GETACL mailbox (RFC 4314 section 3.3)."""

    mailbox: MailboxName
    NAME = "GETACL"


@dataclass(frozen=True)
class ListRights(Command):
    """LISTRIGHTS mailbox identifier (RFC 4314 section 3.4)."""

    mailbox: MailboxName
    identifier: str
    NAME = "LISTRIGHTS"


@dataclass(frozen=True)
class MyRights(Command):
    """MYRIGHTS mailbox (RFC 4314 section 3.5)."""

    mailbox: MailboxName
    NAME = "MYRIGHTS"


@dataclass(frozen=True)
class Compress(Command):
    """COMPRESS mechanism (RFC 4978 section 3); the mechanism upper-case."""

    mechanism: str
    NAME = "COMPRESS"


@dataclass(frozen=True)
class GetQuota(Command):
    """GETQUOTA quota-root (RFC 9208 4.1.1)."""

    root: str
    NAME = "GETQUOTA"


@dataclass(frozen=True)
class GetQuotaRoot(Command):
    """GETQUOTAROOT mailbox (RFC 9208 4.1.2)."""

    mailbox: MailboxName
    NAME = "GETQUOTAROOT"


@dataclass(frozen=True)
class SetQuota(Command):
    """SETQUOTA quota-root (resource limit ...) (RFC 9208 4.1.3); the list kept as (name, limit) pairs."""

    root: str
    limits: tuple[tuple[str, int], ...]
    NAME = "SETQUOTA"


@dataclass(frozen=True)
class GetMetadata(Command):
    """GETMETADATA [(options)] mailbox entries (RFC 5464 section 4.2): `mailbox` "" names the server. The
    entry names are lower-case (they are case-insensitive), each once, in the client's order; `max_size` is
    MAXSIZE's (None: none), `depth` DEPTH's: 0, 1, or None for "infinity"."""

    mailbox: MailboxName
    entries: tuple[str, ...]
    max_size: int | None = None
    depth: int | None = 0
    NAME = "GETMETADATA"


@dataclass(frozen=True)
class SetMetadata(Command):
    """SETMETADATA mailbox (entry value ...) (RFC 5464 section 4.3): `mailbox` "" names the server. The
    entries in the client's order, names lower-case, each with its value: None for NIL (remove), else the
    octets of a quoted string, a literal or a literal8 (which may carry NUL)."""

    mailbox: MailboxName
    entries: tuple[tuple[str, bytes | None], ...]
    NAME = "SETMETADATA"


@dataclass(frozen=True)
class CancelUpdate(Command):
    """CANCELUPDATE "tag" ... (RFC 5267 section 4.3.5): the tags of the searching commands whose updates stop,
    in the client's order."""

    tags: tuple[str, ...]
    NAME = "CANCELUPDATE"


@dataclass(frozen=True)
class Id(Command):
    """ID (RFC 2971): None for NIL, else the field/value pairs in order (values may be None for NIL)."""

    params: tuple[tuple[str, str | None], ...] | None
    NAME = "ID"


@dataclass(frozen=True)
class NotifyEvent:
    """One event of a NOTIFY event group (RFC 5465 section 5): `name` in the RFC's spelling when it is one of
    the RFC's events (`NAMES`, matched in any case), else as the client wrote it (an `event-ext` atom: the
    server answers NO [BADEVENT]). `fetch`: MessageNew's fetch attributes, () when it has none."""

    name: str
    fetch: tuple[FetchItem, ...] = ()

    #: RFC 5465 section 8: message-event, mailbox-event and user-event
    NAMES: ClassVar[tuple[str, ...]] = (
        "MessageNew",
        "MessageExpunge",
        "FlagChange",
        "AnnotationChange",
        "MailboxName",
        "SubscriptionChange",
        "MailboxMetadataChange",
        "ServerMetadataChange",
    )
    #: message-event: MessageNew MessageExpunge FlagChange AnnotationChange
    MESSAGE_EVENTS: ClassVar[tuple[str, ...]] = NAMES[:4]


@dataclass(frozen=True)
class NotifyGroup:
    """One event group of NOTIFY SET (RFC 5465 section 8: `"(" filter-mailboxes SP events ")"`): `filter`
    upper-case, one of `FILTERS`; `mailboxes` the names given to SUBTREE, SUBTREE-ONE (RFC 7377) and
    MAILBOXES, in order (INBOX normalised as everywhere); `events` () for NONE."""

    filter: str
    events: tuple[NotifyEvent, ...] = ()
    mailboxes: tuple[MailboxName, ...] = ()

    FILTERS: ClassVar[tuple[str, ...]] = (
        "SELECTED",
        "SELECTED-DELAYED",
        "INBOXES",
        "PERSONAL",
        "SUBSCRIBED",
        "SUBTREE",
        "SUBTREE-ONE",
        "MAILBOXES",
    )
    #: the filters followed by `one-or-more-mailbox`
    WITH_MAILBOXES: ClassVar[tuple[str, ...]] = ("SUBTREE", "SUBTREE-ONE", "MAILBOXES")


@dataclass(frozen=True)
class Notify(Command):
    """NOTIFY SET [STATUS] event-group ... or NOTIFY NONE (RFC 5465 section 3.1): `groups` in the client's
    order, None for NONE; `status` for the STATUS indicator. Only the syntax is checked here: the rules of
    sections 5 and 6.1 (events that go together, one SELECTED) are the command's (`imap.commands_notify`)."""

    groups: tuple[NotifyGroup, ...] | None
    status: bool = False
    NAME = "NOTIFY"


@dataclass(frozen=True)
class GenUrlAuth(Command):
    """GENURLAUTH url-rump mechanism ... (RFC 4467 section 7): each rump URL as the client wrote it, with its
    mechanism name upper-case."""

    urls: tuple[tuple[str, str], ...]
    NAME = "GENURLAUTH"


@dataclass(frozen=True)
class ResetKey(Command):
    """RESETKEY [mailbox [mechanism ...]] (RFC 4467 section 7): `mailbox` None resets every key; mechanism
    names upper-case."""

    mailbox: MailboxName | None = None
    mechanisms: tuple[str, ...] = ()
    NAME = "RESETKEY"


@dataclass(frozen=True)
class UrlFetchItem:
    """One URL of URLFETCH: as the client wrote it, and RFC 5524's parameters (upper-case, each once, not
    both BINARY and BODY); `params` None when the URL was not in parentheses (RFC 4467's form)."""

    url: str
    params: tuple[str, ...] | None = None

    PARAMS: ClassVar[tuple[str, ...]] = ("BODYPARTSTRUCTURE", "BINARY", "BODY")


@dataclass(frozen=True)
class UrlFetch(Command):
    """URLFETCH url ... (RFC 4467 section 7; RFC 5524 3.1: `(url param ...)`), in the client's order."""

    urls: tuple[UrlFetchItem, ...]
    NAME = "URLFETCH"
