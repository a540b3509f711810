"""IMAP client command reader and parser, sans-IO: bytes in, typed commands out.

What it implements
- The client command grammar of RFC 9051 section 9 (IMAP4rev2) and RFC 3501 section 9 (IMAP4rev1): every
  command of both, with literals `{n}` (RFC 9051 section 4.3), and the extensions LITERAL+ / LITERAL-
  (RFC 7888, `{n+}`), BINARY (RFC 3516, `~{n}`, BINARY[...] fetch items), MULTIAPPEND (RFC 3502),
  UTF8=ACCEPT (RFC 6855, `APPEND ... UTF8 (~{n})` and UTF-8 in quoted strings), SASL-IR (RFC 4959),
  ENABLE (RFC 5161), ID (RFC 2971), UNSELECT (RFC 3691), IDLE (RFC 2177), UIDPLUS (RFC 4315, UID EXPUNGE),
  MOVE (RFC 6851), ESEARCH (RFC 4731, SEARCH RETURN), SEARCHRES (RFC 5182, `$`), CONDSTORE/QRESYNC
  (RFC 7162: SELECT parameters, CHANGEDSINCE, VANISHED, UNCHANGEDSINCE, SEARCH MODSEQ, FETCH MODSEQ, STATUS
  HIGHESTMODSEQ), LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE and CREATE-SPECIAL-USE
  (RFC 6154), STATUS=SIZE (RFC 8438), APPENDLIMIT (RFC 7889, STATUS APPENDLIMIT), OBJECTID (RFC 8474,
  STATUS MAILBOXID).
- Not here: responses (see `postoffice.imap.wire`), session state (which command is allowed when), CATENATE,
  QUOTA, ACL, METADATA, NOTIFY, SORT/THREAD, COMPRESS. They are unknown commands (ParseError) until added.

The event model
    reader = CommandReader(max_line=..., max_literal=..., literal_plus=True)
    loop:
        reader.feed(read())
        while (event := reader.next()) is not None:
            handle(event)
  `feed` only buffers; parsing happens lazily in `next`, one event at a time, so the server can change the
  reader's mode (`utf8`, `expect_idle_done`, `expect_authenticate_response`, `refuse_literal`,
  `discard_command`) between two events and the change applies to everything after that event.

Events
- A `Command` subclass (`Login`, `Select`, `Fetch`, ...): one complete, syntactically valid command.
- `NeedContinuation(tag, size)`: the client sent a synchronizing literal `{n}`; the server must now send
  "+ Ready for literal data" and the reader expects the n octets. To refuse instead (answer the tag with NO or
  BAD and send no "+"), call `refuse_literal()` before the next `next()`: the client abandons the command
  (RFC 9051 section 7.5) and the reader starts reading a new command.
- `LiteralTooLarge(tag, size, limit, synchronizing)`: refused before reading it. Reply "NO [TOOBIG]" (APPEND,
  RFC 7889/9051) or "BAD [TOOBIG]". A synchronizing literal is simply not expected any more; the octets of a
  non-synchronizing one are already on their way, so the reader skips exactly `size` octets and then discards
  the rest of the command (see "Resynchronisation").
- `ParseError(tag, message)`: answer "tag BAD message" (untagged "* BAD" when tag is None).
- `UnsupportedCharset(tag, charset)`: SEARCH CHARSET other than UTF-8 / US-ASCII; answer
  "NO [BADCHARSET (UTF-8 US-ASCII)]" (RFC 9051 section 6.4.4).
- `AppendMessageStart`, `AppendData`, and finally the `Append` command: see "APPEND streaming".
- `IdleDone()` / ParseError after `expect_idle_done()`; `AuthenticateResponse(line)` after
  `expect_authenticate_response()`.

APPEND streaming (docs/decisions/0011-imap-parser.md)
  Message literals can be up to `max_literal` octets and are never held in memory as one object. For each
  message of an APPEND (several with MULTIAPPEND) the reader emits:
    AppendMessageStart(tag, mailbox, index, message)   message: flags, date-time, size, binary, utf8
    NeedContinuation(tag, size)                        only for a synchronizing literal
    AppendData(tag, data) ...                          exactly `size` octets in total, each chunk
                                                       APPEND_CHUNK_SIZE octets except the last
  and, when the command line ends correctly, `Append(tag, mailbox, messages)`; a syntax error after a message
  literal gives ParseError instead (the server throws its spooled messages away: MULTIAPPEND is atomic,
  RFC 3502 section 6.3.11). The server may give up on an APPEND at any time: `refuse_literal()` right after
  AppendMessageStart of a synchronizing literal or after its NeedContinuation; `discard_command()` after
  AppendMessageStart of a non-synchronizing literal or in the middle of the data.
  Chunks are cut at fixed offsets (not where reads happened to end), so the events do not depend on how the
  input was split.

Implementation notes
- Framing first, parsing second. A command is a list of line segments and the literals between them: a line
  whose text ends with `{n}`, `{n+}`, `~{n}` or `~{n+}` is continued by n octets and then by the next line
  (RFC 9051 section 4.3). Whether a literal is an APPEND message (streamed) or a small string (buffered) is
  decided by parsing the command up to the literal. Once the command is complete it is parsed in one pass.
- Syntax errors before a synchronizing literal are found before "+" is sent for the first literal of any
  command and for every literal of APPEND (the prefix is parsed then); for later literals of other commands,
  when the command is complete. APPEND keeps a checkpoint after each message literal, so MULTIAPPEND stays
  linear however many messages it has.
- Limits: `max_line` bounds the whole command except APPEND message literals (its lines and its small
  literals together; RFC 9051 section 4 asks for at least 8192 octets per line); a message literal may have
  up to `max_literal` octets; with literal_plus=False (LITERAL-, RFC 7888 section 4) a non-synchronizing
  literal may have up to LITERAL_MINUS_LIMIT octets; lists, NOT and OR nest at most MAX_NESTING deep; a
  SEARCH has at most MAX_SEARCH_KEYS keys.
- Lines end with CRLF; a bare LF is accepted as well (lenient, like the SMTP core, docs/decisions/0004). A CR,
  NUL or other control character inside a line is a syntax error, never a line end. Empty lines between
  commands are ignored.
- Strings: quoted strings take `\\\\` and `\\"` escapes only; 8-bit octets in a quoted string are an error
  unless `utf8` is set (the server sets it after ENABLE UTF8=ACCEPT or IMAP4rev2, RFC 6855 / RFC 9051), and
  then they must be UTF-8. Literals may carry any octet but NUL (CHAR8); a string argument must decode as
  UTF-8, else it is a syntax error. `~{n}` (literal8) is accepted only for APPEND data.
- Mailbox names (`MailboxName`): `raw` is the string as sent, `name` the Unicode name: decoded from modified
  UTF-7 (strictly, see `postoffice.imap.mutf7`) unless `utf8` is set, when the name is the UTF-8 string itself
  (RFC 6855 section 3, RFC 9051 section 5.1). "INBOX" in any case is normalised to "INBOX" (RFC 9051 section
  5.1); other names and LIST patterns are kept as sent. A name that contains control characters is a syntax
  error; one that is not canonical modified UTF-7 is not (it is a valid astring): it comes with
  `valid=False` and the server answers NO, and a LIST pattern or reference in that case is decoded
  leniently, so it matches what it looks like (docs/decisions/0020).
- Flags: system flags (\\Seen, \\Answered, \\Flagged, \\Deleted, \\Draft, \\Recent) are normalised to that
  spelling; keywords and other \\flags are kept as sent (their comparison is the store's business).
- Keywords of the grammar (command names, fetch items, search keys, options) are case-insensitive and are
  given upper-case in the typed results.
- FETCH macros ALL, FAST and FULL are expanded (RFC 9051 section 6.4.5); `Fetch.macro` says which was used.

Invariants every change must keep
- Nothing the client sends raises: malformed input becomes ParseError, and the reader resynchronises at the
  end of the command. Only misuse by the server (refuse_literal at the wrong time) raises `ImapUsageError`.
- `next()` always terminates: every step consumes input or changes state.
- Memory is bounded: outside message literals the reader holds at most `max_line` octets of the current
  command (its lines plus its small literals together) plus at most APPEND_CHUNK_SIZE octets of unparsed input
  per `next()` step: `buffered_bytes <= max_line + APPEND_CHUNK_SIZE + 64` once `next()` has returned None.
- The events do not depend on how the input was split across `feed` calls.
- Octets that belong to a literal are never parsed as commands, also when the command is being discarded
  (a non-synchronizing literal announced on a discarded line is skipped): no command injection through
  message content.
- After STARTTLS everything already buffered is discarded (RFC 9051 section 6.2.1, CVE-2011-0411): nothing
  received in plaintext after the STARTTLS line is parsed.

Resynchronisation: after an error in the middle of a command the reader discards input up to the end of the
command: to the end of the current line, and when that line ends with a non-synchronizing literal marker
`{n+}`, also those n octets and the line after them, and so on. A synchronizing marker on a discarded line
ends the command (the client waits for "+", gets the tagged BAD instead, and gives up).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, TypeAlias

from postoffice.imap.mutf7 import MUtf7Error, decode_mutf7
from postoffice.imap.sequence import SequenceSet

__all__ = [
    "APPEND_CHUNK_SIZE",
    "LITERAL_MINUS_LIMIT",
    "MAX_NESTING",
    "MAX_SEARCH_KEYS",
    "SEARCH_CHARSETS",
    "Append",
    "AppendData",
    "AppendMessage",
    "AppendMessageStart",
    "Authenticate",
    "AuthenticateResponse",
    "Capability",
    "Check",
    "Close",
    "Command",
    "CommandReader",
    "Copy",
    "Create",
    "Delete",
    "Enable",
    "Examine",
    "Expunge",
    "ExtParam",
    "ExtValue",
    "Fetch",
    "FetchAttribute",
    "FetchBinary",
    "FetchBinarySize",
    "FetchBody",
    "FetchItem",
    "Id",
    "Idle",
    "IdleDone",
    "ImapUsageError",
    "List",
    "LiteralTooLarge",
    "Login",
    "Logout",
    "Lsub",
    "MailboxName",
    "Move",
    "Namespace",
    "NeedContinuation",
    "Noop",
    "ParseError",
    "Partial",
    "ReaderEvent",
    "Rename",
    "Search",
    "SearchAnd",
    "SearchDate",
    "SearchFlag",
    "SearchHeader",
    "SearchKey",
    "SearchKeyword",
    "SearchModSeq",
    "SearchNot",
    "SearchOr",
    "SearchSequence",
    "SearchSize",
    "SearchText",
    "SearchUid",
    "Section",
    "SectionText",
    "Select",
    "StartTls",
    "Status",
    "Store",
    "StoreMode",
    "Subscribe",
    "UidExpunge",
    "Unselect",
    "Unsubscribe",
    "UnsupportedCharset",
]

APPEND_CHUNK_SIZE = 64 * 1024
"""Size of every AppendData chunk but the last of a message."""

LITERAL_MINUS_LIMIT = 4096
"""Largest non-synchronizing literal with LITERAL- (RFC 7888 section 4), i.e. literal_plus=False."""

MAX_NESTING = 64
"""Deepest nesting of parenthesised lists, NOT and OR in one command."""

MAX_SEARCH_KEYS = 512
"""Most search keys in one SEARCH (every key counts, NOT, OR and parenthesised lists too). Each is work for
every message searched; a 64 KiB line holds 30,000 of them, which took seconds to evaluate."""

SEARCH_CHARSETS = ("UTF-8", "US-ASCII")
"""The charsets SEARCH accepts; others give UnsupportedCharset (NO [BADCHARSET (UTF-8 US-ASCII)])."""

_MAX_MODSEQ = 2**63 - 1  # mod-sequence-value: positive unsigned 63-bit integer (RFC 7162 section 7)
_MAX_NUMBER = 2**32 - 1  # number: unsigned 32-bit (RFC 9051 section 9)
_MAX_NUMBER64 = 2**63 - 1  # number64: signed 63-bit, non-negative (RFC 9051 section 9)


# ---------------------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class MailboxName:
    """A mailbox name or LIST pattern: `name` decoded (see the module docstring), `raw` as sent.

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
    BODY BODYSTRUCTURE UID MODSEQ."""

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

_MACROS: dict[str, tuple[str, ...]] = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}


class StoreMode(Enum):
    REPLACE = ""
    ADD = "+"
    REMOVE = "-"


@dataclass(frozen=True)
class AppendMessage:
    """One message of an APPEND: its flags, INTERNALDATE (None: the server's time), literal size, whether it
    was a literal8 (`~{n}`, RFC 3516) and whether it came as `UTF8 (~{n})` (RFC 6855)."""

    flags: tuple[str, ...]
    internal_date: datetime.datetime | None
    size: int
    binary: bool = False
    utf8: bool = False


# ------------------------------------------------------------------------------------------ search keys


@dataclass(frozen=True)
class SearchFlag:
    """A search key without argument: ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED
    UNDELETED UNDRAFT UNFLAGGED UNSEEN."""

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
    """BEFORE ON SINCE (internal date) or SENTBEFORE SENTON SENTSINCE (Date: header) with a date."""

    field: str
    date: datetime.date

    NAMES: ClassVar[frozenset[str]] = frozenset(
        ["BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"]
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
    """A literal over the limit was refused before reading it; the rest of the command is discarded."""

    tag: str | None
    size: int
    limit: int
    synchronizing: bool


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
    """A message literal of APPEND begins (message number `index`, from 0); AppendData events follow."""

    tag: str
    mailbox: MailboxName
    index: int
    message: AppendMessage
    synchronizing: bool


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
    APPENDLIMIT MAILBOXID, upper-case, in the client's order."""

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
        ]
    )


@dataclass(frozen=True)
class Append(Command):
    """APPEND, complete: the message octets were delivered by AppendData events (see the module docstring)."""

    mailbox: MailboxName
    messages: tuple[AppendMessage, ...]
    NAME = "APPEND"


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
    RETURN, () for "RETURN ()" (which means ALL, RFC 4731 section 3.1). `charset` is upper-case or None."""

    keys: tuple[SearchKey, ...]
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    uid: bool = False
    NAME = "SEARCH"

    RETURN_OPTIONS: ClassVar[frozenset[str]] = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})


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
class Id(Command):
    """ID (RFC 2971): None for NIL, else the field/value pairs in order (values may be None for NIL)."""

    params: tuple[tuple[str, str | None], ...] | None
    NAME = "ID"


# ---------------------------------------------------------------------------------------------- scanner


class _Syntax(Exception):
    """A syntax error; becomes ParseError."""


class _BadCharset(Exception):
    def __init__(self, charset: str, save: bool = False) -> None:
        super().__init__(charset)
        self.charset = charset
        self.save = save  # the command had RETURN (SAVE): its NO empties the saved result (RFC 5182 2.1)


class _LiteralPending(Exception):
    """The parse reached a small literal whose octets have not arrived yet."""


class _MessagePending(Exception):
    """The parse reached an APPEND message literal whose octets have not arrived yet."""

    def __init__(self, mailbox: MailboxName, message: AppendMessage, in_utf8_parens: bool) -> None:
        super().__init__()
        self.mailbox = mailbox
        self.message = message
        self.in_utf8_parens = in_utf8_parens


# Character classes of RFC 9051 section 9. atom-specials: ( ) { SP CTL % * " \ ] ; 8-bit is not CHAR.
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')  # ASTRING-CHAR adds "]"
_LIST_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')  # list-char adds % * ]
_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')  # tag: ASTRING-CHAR except "+"
_EXT_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\%]+')  # tagged-ext-simple: sequence sets, numbers, atoms
_LITERAL = re.compile(rb"(~?)\{([0-9]{1,30})(\+?)\}")
_MARKER_AT_END = re.compile(rb"(~?)\{([0-9]{1,30})(\+?)\}\Z")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_DIGITS = re.compile(rb"[0-9]+")
_FETCH_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_SPEC = re.compile(rb"[A-Za-z0-9.]*")
_BASE64 = re.compile(rb"=|(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # ftext of RFC 5322: printable except ":"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_DATE = re.compile(r"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_BYTES = re.compile(rb"[0-9]{1,2}-[A-Za-z]{3}-[0-9]{4}")
_DATE_TIME = re.compile(
    r"([ 0-9]?[0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{4})"
)
_SYSTEM_FLAGS = {
    f.upper(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent")
}
_SPECIAL_USE = {
    f.upper(): f
    for f in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash", "\\Important")
}


class _Scanner:
    """Cursor over a framed command: `segments[i]` is line text, `literals[i]` the literal that follows it
    (None for a streamed APPEND message). A literal marker is only valid at the very end of a segment."""

    __slots__ = ("i", "keys", "literals", "pos", "segments", "utf8")

    def __init__(
        self, segments: list[bytes], literals: list[bytes | None], utf8: bool, i: int = 0, pos: int = 0
    ) -> None:
        self.keys = 0  # search keys read so far (MAX_SEARCH_KEYS)
        self.segments = segments
        self.literals = literals
        self.utf8 = utf8
        self.i = i
        self.pos = pos

    # -- positions

    @property
    def seg(self) -> bytes:
        return self.segments[self.i]

    def peek(self) -> int | None:
        seg = self.segments[self.i]
        return seg[self.pos] if self.pos < len(seg) else None

    def at_end(self) -> bool:
        return self.i == len(self.segments) - 1 and self.pos == len(self.segments[self.i])

    def end(self) -> None:
        if not self.at_end():
            raise _Syntax(f"unexpected {self._near()} at end of command")

    def _near(self) -> str:
        seg = self.segments[self.i]
        if self.pos >= len(seg):
            return "end of line"
        return repr(seg[self.pos : self.pos + 20].decode("ascii", "replace"))

    def expect(self, char: bytes, what: str = "") -> None:
        if self.segments[self.i][self.pos : self.pos + 1] != char:
            raise _Syntax(f"expected {what or repr(char.decode())} but found {self._near()}")
        self.pos += 1

    def sp(self) -> None:
        self.expect(b" ", "a space")

    def take(self, char: bytes) -> bool:
        if self.segments[self.i][self.pos : self.pos + 1] == char:
            self.pos += 1
            return True
        return False

    def match(self, pattern: re.Pattern[bytes]) -> bytes | None:
        m = pattern.match(self.segments[self.i], self.pos)
        if m is None or m.end() == self.pos:
            return None
        self.pos = m.end()
        return m.group()

    def keyword(self, word: str) -> bool:
        """Consume `word` (case-insensitive) when it is the next token (followed by SP, ")" or the end)."""
        seg = self.segments[self.i]
        end = self.pos + len(word)
        if seg[self.pos : end].upper() == word.encode() and (end == len(seg) or seg[end] in b" )"):
            self.pos = end
            return True
        return False

    # -- tokens

    def atom(self, what: str = "an atom") -> str:
        token = self.match(_ATOM)
        if token is None:
            raise _Syntax(f"expected {what} but found {self._near()}")
        return token.decode("ascii")

    def number(self, limit: int = _MAX_NUMBER, what: str = "a number") -> int:
        token = self.match(_DIGITS)
        if token is None:
            raise _Syntax(f"expected {what} but found {self._near()}")
        if len(token) > 20 or int(token) > limit:
            raise _Syntax(f"{what} {token[:20].decode()} is too large")
        return int(token)

    def nz_number(self, limit: int = _MAX_NUMBER, what: str = "a number") -> int:
        start = self.pos
        n = self.number(limit, what)
        if n == 0 or self.seg[start : start + 1] == b"0":
            raise _Syntax(f"{what} must be a non-zero number without leading zeros")
        return n

    def quoted(self) -> bytes:
        m = _QUOTED.match(self.seg, self.pos)
        if m is None:
            raise _Syntax("unterminated or invalid quoted string")
        self.pos = m.end()
        value = re.sub(rb'\\(["\\])', rb"\1", m.group(1))
        if not value.isascii():
            if not self.utf8:
                raise _Syntax("8-bit characters in a quoted string (use a literal, or ENABLE UTF8=ACCEPT)")
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise _Syntax("quoted string is not valid UTF-8") from None
        return value

    def _marker(self) -> re.Match[bytes]:
        m = _LITERAL.match(self.seg, self.pos)
        if m is None:
            raise _Syntax("invalid literal")
        if m.end() != len(self.seg):
            raise _Syntax("a literal's {n} must be followed by CRLF")
        return m

    def literal(self) -> bytes:
        m = self._marker()
        if m.group(1):
            raise _Syntax("literal8 (~{n}) is only allowed for APPEND message data")
        if self.i >= len(self.literals):
            raise _LiteralPending
        value = self.literals[self.i]
        if value is None:  # pragma: no cover - framing and parsing agree on message literals
            raise _Syntax("unexpected message literal")
        if b"\x00" in value:
            raise _Syntax("NUL in a literal")
        self.i += 1
        self.pos = 0
        return value

    def message_literal(self) -> tuple[int, bool]:
        """Consume an APPEND message literal (already streamed); returns (size, binary).

        Raises _LiteralPending when its octets have not arrived (the caller turns that into _MessagePending).
        """
        if not self.at_literal():
            raise _Syntax(f"expected the message literal but found {self._near()}")
        m = self._marker()
        if self.i >= len(self.literals):
            raise _LiteralPending
        self.i += 1
        self.pos = 0
        return int(m.group(2)), bool(m.group(1))

    def at_literal(self) -> bool:
        """At "{" or "~{" (a "~" alone is an ATOM-CHAR)."""
        seg = self.segments[self.i]
        return seg[self.pos : self.pos + 1] == b"{" or seg[self.pos : self.pos + 2] == b"~{"

    def string(self) -> bytes:
        c = self.peek()
        if c == 0x22:  # "
            return self.quoted()
        if self.at_literal():
            return self.literal()
        raise _Syntax(f"expected a string but found {self._near()}")

    def astring(self, what: str = "a string") -> bytes:
        c = self.peek()
        if c == 0x22 or self.at_literal():
            return self.string()
        token = self.match(_ASTRING_ATOM)
        if token is None:
            raise _Syntax(f"expected {what} but found {self._near()}")
        return token

    def nil(self) -> bool:
        return self.keyword("NIL")

    def text(self, value: bytes, what: str = "string") -> str:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _Syntax(f"{what} is not valid UTF-8") from None


# ------------------------------------------------------------------------------------------ grammar parts


def _mailbox_name(
    sc: _Scanner, value: bytes, *, inbox: bool, what: str = "mailbox name", pattern: bool = False
) -> MailboxName:
    raw = sc.text(value, what)
    if _CONTROL.search(raw):
        raise _Syntax(f"control character in {what}")
    valid = True
    if sc.utf8:
        name = raw
    else:
        try:
            name = decode_mutf7(raw)
        except MUtf7Error:
            # Not a syntax error (the string is a valid astring): a name nobody can have (NO), or a pattern
            # that matches what it looks like (docs/decisions/0020).
            if not pattern:
                return MailboxName(raw, raw, valid=False)
            name, valid = decode_mutf7(raw, strict=False), False
    if _CONTROL.search(name):
        raise _Syntax(f"control character in {what}")
    if not name.isascii():
        # RFC 9051 5.1 / 6.3.4: names are Net-Unicode (NFC); a name in another form means the same mailbox
        name = unicodedata.normalize("NFC", name)
    if inbox and name.upper() == "INBOX":
        name = "INBOX"
    return MailboxName(name, raw, valid)


def _mailbox(sc: _Scanner) -> MailboxName:
    return _mailbox_name(sc, sc.astring("a mailbox name"), inbox=True)


def _reference(sc: _Scanner) -> MailboxName:
    value = sc.astring("a reference name")
    return _mailbox_name(sc, value, inbox=False, what="reference name", pattern=True)


def _list_mailbox(sc: _Scanner) -> MailboxName:
    c = sc.peek()
    if c == 0x22 or sc.at_literal():
        value = sc.string()
    else:
        token = sc.match(_LIST_ATOM)
        if token is None:
            raise _Syntax(f"expected a mailbox pattern but found {sc._near()}")
        value = token
    return _mailbox_name(sc, value, inbox=False, what="mailbox pattern", pattern=True)


def _sequence_set(sc: _Scanner) -> SequenceSet:
    token = sc.match(_EXT_ATOM)
    if token is None:
        raise _Syntax(f"expected a sequence set but found {sc._near()}")
    try:
        return SequenceSet.parse(token.decode("ascii"))
    except ValueError as exc:
        raise _Syntax(str(exc)) from None


def _flag(sc: _Scanner) -> str:
    if sc.take(b"\\"):
        flag = "\\" + sc.atom("a flag name")
        return _SYSTEM_FLAGS.get(flag.upper(), flag)
    return sc.atom("a flag")


def _flag_list(sc: _Scanner) -> tuple[str, ...]:
    sc.expect(b"(")
    flags: list[str] = []
    if not sc.take(b")"):
        flags.append(_flag(sc))
        while not sc.take(b")"):
            sc.sp()
            flags.append(_flag(sc))
    return tuple(flags)


def _ext_value(sc: _Scanner, depth: int) -> ExtValue:
    if depth > MAX_NESTING:
        raise _Syntax("lists nested too deeply")
    c = sc.peek()
    if c == 0x28:  # (
        sc.pos += 1
        items: list[ExtValue] = []
        if not sc.take(b")"):
            items.append(_ext_value(sc, depth + 1))
            while not sc.take(b")"):
                sc.sp()
                items.append(_ext_value(sc, depth + 1))
        return tuple(items)
    if c == 0x22 or sc.at_literal():
        return sc.text(sc.string())
    if c == 0x5C:  # \flag
        return _flag(sc)
    token = sc.match(_EXT_ATOM)
    if token is None:
        raise _Syntax(f"expected a parameter value but found {sc._near()}")
    return token.decode("ascii")


def _ext_params(sc: _Scanner) -> tuple[ExtParam, ...]:
    """ "(" param *(SP param) ")"; param = name [SP value]; value = "(" ... ")" or a number/sequence set."""
    sc.expect(b"(")
    params: list[ExtParam] = []
    while True:
        name = sc.atom("a parameter name").upper()
        value: ExtValue | None = None
        if (sc.peek() == 0x20 and sc.seg[sc.pos + 1 : sc.pos + 2] in (b"(", b"$", b"*", b"\\")) or (
            sc.peek() == 0x20 and sc.seg[sc.pos + 1 : sc.pos + 2].isdigit()
        ):
            sc.sp()
            value = _ext_value(sc, 1)
        params.append(ExtParam(name, value))
        if sc.take(b")"):
            return tuple(params)
        sc.sp()


def _date(sc: _Scanner) -> datetime.date:
    quoted = sc.take(b'"')
    m = _DATE_BYTES.match(sc.seg, sc.pos)
    if m is None:
        raise _Syntax(f"expected a date (d-Mon-yyyy) but found {sc._near()}")
    sc.pos = m.end()
    if quoted:
        sc.expect(b'"')
    d = _DATE.fullmatch(m.group().decode("ascii"))
    assert d is not None
    month = _MONTHS.get(d.group(2).upper())
    try:
        if month is None:
            raise ValueError
        return datetime.date(int(d.group(3)), month, int(d.group(1)))
    except ValueError:
        raise _Syntax(f"invalid date {m.group().decode()}") from None


def _date_time(sc: _Scanner) -> datetime.datetime:
    m = _DATE_TIME.fullmatch(sc.text(sc.quoted()))
    if m is None:
        raise _Syntax('invalid date-time (expected "dd-Mon-yyyy hh:mm:ss +zzzz")')
    day, mon, year, hh, mm, ss, sign, zone = m.groups()
    month = _MONTHS.get(mon.upper())
    zh, zm = int(zone[:2]), int(zone[2:])
    try:
        if month is None or zm > 59:
            raise ValueError
        offset = datetime.timedelta(hours=zh, minutes=zm) * (-1 if sign == "-" else 1)
        return datetime.datetime(
            int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=datetime.timezone(offset)
        )
    except ValueError:
        raise _Syntax(f"invalid date-time {m.group()}") from None


def _section_part(spec: str) -> tuple[tuple[int, ...], str]:
    """Split "1.2.HEADER" into ((1, 2), "HEADER")."""
    part: list[int] = []
    components = spec.split(".") if spec else []
    while components and components[0].isdigit():
        c = components.pop(0)
        if c.startswith("0") or int(c) > _MAX_NUMBER:
            raise _Syntax(f"invalid part number {c}")
        part.append(int(c))
    return tuple(part), ".".join(components).upper()


def _section(sc: _Scanner) -> Section:
    sc.expect(b"[")
    spec = (sc.match(_SECTION_SPEC) or b"").decode("ascii")
    part, text = _section_part(spec)
    fields: tuple[str, ...] = ()
    kind: SectionText | None = None
    if text:
        try:
            kind = SectionText(text)
        except ValueError:
            raise _Syntax(f"invalid section {spec}") from None
        if kind is SectionText.MIME and not part:
            raise _Syntax("MIME needs a part number (RFC 9051 section 6.4.5)")
        if kind in (SectionText.HEADER_FIELDS, SectionText.HEADER_FIELDS_NOT):
            sc.sp()
            sc.expect(b"(")
            names = [sc.text(sc.astring("a header field name"))]
            while not sc.take(b")"):
                sc.sp()
                names.append(sc.text(sc.astring("a header field name")))
            for name in names:
                if not _FIELD_NAME.fullmatch(name):
                    raise _Syntax(f"invalid header field name {name!r}")
            fields = tuple(names)
    elif spec.endswith(".") or (spec and not part):
        raise _Syntax(f"invalid section {spec}")
    sc.expect(b"]")
    return Section(part, kind, fields)


def _binary_part(sc: _Scanner) -> tuple[int, ...]:
    sc.expect(b"[")
    spec = (sc.match(_SECTION_SPEC) or b"").decode("ascii")
    part, text = _section_part(spec)
    if text or spec.endswith("."):
        raise _Syntax(f"invalid BINARY section {spec} (part numbers only)")
    sc.expect(b"]")
    return part


def _partial(sc: _Scanner) -> Partial | None:
    if not sc.take(b"<"):
        return None
    origin = sc.number(_MAX_NUMBER64, "partial origin")
    sc.expect(b".")
    length = sc.nz_number(_MAX_NUMBER64, "partial length")
    sc.expect(b">")
    return Partial(origin, length)


def _fetch_item(sc: _Scanner) -> FetchItem:
    token = sc.match(_FETCH_NAME)
    if token is None:
        raise _Syntax(f"expected a fetch item but found {sc._near()}")
    name = token.decode("ascii").upper()
    bracket = sc.peek() == 0x5B  # [
    if name in ("BODY", "BODY.PEEK") and bracket:
        section = _section(sc)
        return FetchBody(section, _partial(sc), peek=name == "BODY.PEEK")
    if name in ("BINARY", "BINARY.PEEK") and bracket:
        part = _binary_part(sc)
        return FetchBinary(part, _partial(sc), peek=name == "BINARY.PEEK")
    if name == "BINARY.SIZE" and bracket:
        return FetchBinarySize(_binary_part(sc))
    if name in FetchAttribute.NAMES and not bracket:
        return FetchAttribute(name)
    raise _Syntax(f"unknown fetch item {token.decode('ascii', 'replace')}")


def _modseq(sc: _Scanner, what: str) -> int:
    return sc.number(_MAX_MODSEQ, what)


# ---------------------------------------------------------------------------------------------- search


_SEARCH_KEYS_WITH_ARGUMENTS = (
    SearchText.NAMES
    | SearchDate.NAMES
    | {"LARGER", "SMALLER", "HEADER", "KEYWORD", "UNKEYWORD", "UID", "NOT", "OR", "MODSEQ"}
)


def _search_key(sc: _Scanner, depth: int) -> SearchKey:
    if depth > MAX_NESTING:
        raise _Syntax("search keys nested too deeply")
    sc.keys += 1
    if sc.keys > MAX_SEARCH_KEYS:
        raise _Syntax(f"too many search keys (at most {MAX_SEARCH_KEYS})")
    c = sc.peek()
    if c == 0x28:  # (
        sc.pos += 1
        keys = [_search_key(sc, depth + 1)]
        while not sc.take(b")"):
            sc.sp()
            keys.append(_search_key(sc, depth + 1))
        return SearchAnd(tuple(keys))
    if c is not None and (0x30 <= c <= 0x39 or c in (0x2A, 0x24)):  # digit * $
        return SearchSequence(_sequence_set(sc))
    word = sc.atom("a search key").upper()
    if word in SearchFlag.NAMES:
        return SearchFlag(word)
    if word not in _SEARCH_KEYS_WITH_ARGUMENTS:
        raise _Syntax(f"unknown search key {word}")
    sc.sp()
    if word in SearchText.NAMES:
        return SearchText(word, sc.text(sc.astring()))
    if word in SearchDate.NAMES:
        return SearchDate(word, _date(sc))
    if word in ("LARGER", "SMALLER"):
        return SearchSize(word, sc.number(_MAX_NUMBER64, "a size"))
    if word == "HEADER":
        name = sc.text(sc.astring("a header field name"))
        if not _FIELD_NAME.fullmatch(name):
            raise _Syntax(f"invalid header field name {name!r}")
        sc.sp()
        return SearchHeader(name, sc.text(sc.astring()))
    if word in ("KEYWORD", "UNKEYWORD"):
        return SearchKeyword(_flag(sc), present=word == "KEYWORD")
    if word == "UID":
        return SearchUid(_sequence_set(sc))
    if word == "NOT":
        return SearchNot(_search_key(sc, depth + 1))
    if word == "OR":
        left = _search_key(sc, depth + 1)
        sc.sp()
        return SearchOr(left, _search_key(sc, depth + 1))
    if word == "MODSEQ":
        entry: tuple[str, str] | None = None
        if sc.peek() == 0x22:
            entry_name = sc.text(sc.quoted())
            if not entry_name.lower().startswith("/flags/") or len(entry_name) == 7:
                raise _Syntax(f"invalid MODSEQ entry name {entry_name!r}")
            sc.sp()
            entry_type = sc.atom("an entry type").lower()
            if entry_type not in ("priv", "shared", "all"):
                raise _Syntax(f"invalid MODSEQ entry type {entry_type!r}")
            entry = (entry_name, entry_type)
            sc.sp()
        return SearchModSeq(_modseq(sc, "a mod-sequence value"), entry)
    raise _Syntax(f"unknown search key {word}")


def _search(sc: _Scanner, tag: str, uid: bool) -> Search:
    sc.sp()
    return_options: tuple[str, ...] | None = None
    if sc.keyword("RETURN"):
        sc.sp()
        sc.expect(b"(")
        options: list[str] = []
        if not sc.take(b")"):
            while True:
                option = sc.atom("a RETURN option").upper()
                if option not in Search.RETURN_OPTIONS:
                    raise _Syntax(f"unknown SEARCH RETURN option {option}")
                options.append(option)
                if sc.take(b")"):
                    break
                sc.sp()
        return_options = tuple(options)
        sc.sp()
    charset: str | None = None
    if sc.keyword("CHARSET"):
        sc.sp()
        charset = (sc.text(sc.quoted()) if sc.peek() == 0x22 else sc.atom("a charset")).upper()
        if charset not in SEARCH_CHARSETS:
            raise _BadCharset(charset, save="SAVE" in (return_options or ()))
        sc.sp()
    keys = [_search_key(sc, 1)]
    while not sc.at_end():
        sc.sp()
        keys.append(_search_key(sc, 1))
    return Search(tag, tuple(keys), charset, return_options, uid)


# ---------------------------------------------------------------------------------------------- commands


def _no_args(cls: type[Command]) -> Callable[[_Scanner, str], Command]:
    def parse(sc: _Scanner, tag: str) -> Command:
        return cls(tag)

    return parse


def _authenticate(sc: _Scanner, tag: str) -> Command:
    sc.sp()
    mechanism = sc.atom("a SASL mechanism").upper()
    initial: bytes | None = None
    if not sc.at_end():
        sc.sp()
        token = sc.match(_BASE64)
        if token is None or not sc.at_end():
            raise _Syntax("invalid base64 initial response")
        try:
            initial = b"" if token == b"=" else base64.b64decode(token, validate=True)
        except binascii.Error:
            raise _Syntax("invalid base64 initial response") from None
    return Authenticate(tag, mechanism, initial)


def _login(sc: _Scanner, tag: str) -> Command:
    sc.sp()
    user = sc.text(sc.astring("a user name"), "user name")
    sc.sp()
    password = sc.text(sc.astring("a password"), "password")
    return Login(tag, user, password)


def _enable(sc: _Scanner, tag: str) -> Command:
    caps = []
    while not sc.at_end():
        sc.sp()
        caps.append(sc.atom("a capability").upper())
    if not caps:
        raise _Syntax("ENABLE needs at least one capability")
    return Enable(tag, tuple(caps))


def _select_like(cls: type[Select] | type[Examine]) -> Callable[[_Scanner, str], Command]:
    def parse(sc: _Scanner, tag: str) -> Command:
        sc.sp()
        mailbox = _mailbox(sc)
        params: tuple[ExtParam, ...] = ()
        if not sc.at_end():
            sc.sp()
            params = _ext_params(sc)
        return cls(tag, mailbox, params)

    return parse


def _create(sc: _Scanner, tag: str) -> Command:
    sc.sp()
    mailbox = _mailbox(sc)
    special: tuple[str, ...] = ()
    params: list[ExtParam] = []
    if not sc.at_end():
        sc.sp()
        for param in _ext_params(sc):
            if param.name == "USE":
                if not isinstance(param.value, tuple) or not all(
                    isinstance(v, str) and v.startswith("\\") and len(v) > 1 for v in param.value
                ):
                    raise _Syntax("CREATE USE needs a list of special-use attributes, e.g. (\\Sent)")
                special += tuple(_SPECIAL_USE.get(str(v).upper(), str(v)) for v in param.value)
            else:
                params.append(param)
    return Create(tag, mailbox, special, tuple(params))


def _one_mailbox(
    cls: type[Delete] | type[Subscribe] | type[Unsubscribe],
) -> Callable[[_Scanner, str], Command]:
    def parse(sc: _Scanner, tag: str) -> Command:
        sc.sp()
        return cls(tag, _mailbox(sc))

    return parse


def _rename(sc: _Scanner, tag: str) -> Command:
    sc.sp()
    old = _mailbox(sc)
    sc.sp()
    return Rename(tag, old, _mailbox(sc))


def _list_options(sc: _Scanner) -> tuple[ExtParam, ...]:
    """ "(" [option *(SP option)] ")" where option = atom [SP "(" ... ")"] (RFC 5258 section 6)."""
    sc.expect(b"(")
    options: list[ExtParam] = []
    if sc.take(b")"):
        return ()
    while True:
        name = sc.atom("a LIST option").upper()
        value: ExtValue | None = None
        if sc.seg[sc.pos : sc.pos + 2] == b" (":
            sc.sp()
            value = _ext_value(sc, 1)
        options.append(ExtParam(name, value))
        if sc.take(b")"):
            return tuple(options)
        sc.sp()


def _status_items(value: ExtValue | None) -> tuple[str, ...]:
    if not isinstance(value, tuple) or not value:
        raise _Syntax("STATUS needs a non-empty list of status items")
    items = []
    for v in value:
        item = str(v).upper() if isinstance(v, str) else ""
        if item not in Status.ITEMS:
            raise _Syntax(f"unknown status item {v!r}")
        items.append(item)
    return tuple(items)


def _list(sc: _Scanner, tag: str) -> Command:
    sc.sp()
    extended = False
    select: tuple[ExtParam, ...] = ()
    if sc.peek() == 0x28:
        select = _list_options(sc)
        extended = True
        sc.sp()
    reference = _reference(sc)
    sc.sp()
    if sc.take(b"("):
        extended = True
        patterns = [_list_mailbox(sc)]
        while not sc.take(b")"):
            sc.sp()
            patterns.append(_list_mailbox(sc))
    else:
        patterns = [_list_mailbox(sc)]
    returns: list[ExtParam] = []
    if not sc.at_end():
        sc.sp()
        if not sc.keyword("RETURN"):
            raise _Syntax(f"expected RETURN but found {sc._near()}")
        extended = True
        sc.sp()
        for option in _list_options(sc):
            if option.name == "STATUS":
                option = ExtParam("STATUS", _status_items(option.value))
            returns.append(option)
    return List(tag, reference, tuple(patterns), select, tuple(returns), extended)


def _lsub(sc: _Scanner, tag: str) -> Command:
    sc.sp()
    reference = _reference(sc)
    sc.sp()
    return Lsub(tag, reference, _list_mailbox(sc))


def _status(sc: _Scanner, tag: str) -> Command:
    sc.sp()
    mailbox = _mailbox(sc)
    sc.sp()
    if sc.peek() != 0x28:
        raise _Syntax("STATUS needs a parenthesised list of items")
    return Status(tag, mailbox, _status_items(_ext_value(sc, 1)))


def _append_message(sc: _Scanner, mailbox: MailboxName) -> tuple[AppendMessage, bool]:
    """append-opts SP append-data; returns the message and whether it was inside "UTF8 (...)"."""
    flags: tuple[str, ...] = ()
    date: datetime.datetime | None = None
    if sc.peek() == 0x28:
        flags = _flag_list(sc)
        sc.sp()
    if sc.peek() == 0x22:
        date = _date_time(sc)
        sc.sp()
    utf8 = False
    if sc.keyword("UTF8"):
        utf8 = True
        sc.sp()
        sc.expect(b"(")
        if sc.peek() != 0x7E:
            raise _Syntax("UTF8 APPEND data must be a literal8 ~{n} (RFC 6855 section 4)")
    elif not sc.at_literal():
        raise _Syntax(f"expected the message literal but found {sc._near()}")
    m = _LITERAL.match(sc.seg, sc.pos)
    try:
        size, binary = sc.message_literal()
    except _LiteralPending:
        assert m is not None
        message = AppendMessage(flags, date, int(m.group(2)), bool(m.group(1)), utf8)
        raise _MessagePending(mailbox, message, utf8) from None
    if utf8:
        sc.expect(b")")
    return AppendMessage(flags, date, size, binary, utf8), utf8


def _append(sc: _Scanner, tag: str) -> Command:
    """APPEND parsed in one pass (only used to find the first message literal; see _AppendProgress)."""
    sc.sp()
    mailbox = _mailbox(sc)
    sc.sp()
    _append_message(sc, mailbox)
    raise _Syntax("APPEND: unexpected message literal")  # pragma: no cover - always pending here


def _uid_expunge(sc: _Scanner, tag: str) -> Command:
    sc.sp()
    return UidExpunge(tag, _sequence_set(sc))


def _copy_like(cls: type[Copy] | type[Move]) -> Callable[[_Scanner, str, bool], Command]:
    def parse(sc: _Scanner, tag: str, uid: bool) -> Command:
        sc.sp()
        sequence = _sequence_set(sc)
        sc.sp()
        return cls(tag, sequence, _mailbox(sc), uid)

    return parse


def _fetch(sc: _Scanner, tag: str, uid: bool) -> Command:
    sc.sp()
    sequence = _sequence_set(sc)
    sc.sp()
    items: list[FetchItem] = []
    macro: str | None = None
    if sc.take(b"("):
        items.append(_fetch_item(sc))
        while not sc.take(b")"):
            sc.sp()
            items.append(_fetch_item(sc))
    else:
        for name in _MACROS:
            if sc.keyword(name):
                macro = name
                items = [FetchAttribute(n) for n in _MACROS[name]]
                break
        else:
            items.append(_fetch_item(sc))
    changed_since: int | None = None
    vanished = False
    if not sc.at_end():
        sc.sp()
        sc.expect(b"(")
        while True:
            modifier = sc.atom("a fetch modifier").upper()
            if modifier == "CHANGEDSINCE" and changed_since is None:
                sc.sp()
                changed_since = _modseq(sc, "a mod-sequence value")
            elif modifier == "VANISHED" and uid and not vanished:
                vanished = True
            else:
                raise _Syntax(f"invalid fetch modifier {modifier}")
            if sc.take(b")"):
                break
            sc.sp()
        if vanished and changed_since is None:
            raise _Syntax("VANISHED needs CHANGEDSINCE (RFC 7162 section 3.2.6)")
    return Fetch(tag, sequence, tuple(items), changed_since, vanished, uid, macro)


def _store(sc: _Scanner, tag: str, uid: bool) -> Command:
    sc.sp()
    sequence = _sequence_set(sc)
    sc.sp()
    unchanged_since: int | None = None
    if sc.take(b"("):
        if not sc.keyword("UNCHANGEDSINCE"):
            raise _Syntax(f"expected UNCHANGEDSINCE but found {sc._near()}")
        sc.sp()
        unchanged_since = _modseq(sc, "a mod-sequence value")
        sc.expect(b")")
        sc.sp()
    mode = StoreMode.ADD if sc.take(b"+") else StoreMode.REMOVE if sc.take(b"-") else StoreMode.REPLACE
    if sc.keyword("FLAGS.SILENT"):
        silent = True
    elif sc.keyword("FLAGS"):
        silent = False
    else:
        raise _Syntax(f"expected FLAGS, +FLAGS or -FLAGS (optionally .SILENT) but found {sc._near()}")
    sc.sp()
    if sc.peek() == 0x28:
        flags = _flag_list(sc)
    else:
        flag_list = [_flag(sc)]
        while not sc.at_end():
            sc.sp()
            flag_list.append(_flag(sc))
        flags = tuple(flag_list)
    return Store(tag, sequence, mode, flags, silent, unchanged_since, uid)


def _id(sc: _Scanner, tag: str) -> Command:
    sc.sp()
    if sc.nil():
        return Id(tag, None)
    sc.expect(b"(")
    pairs: list[tuple[str, str | None]] = []
    if not sc.take(b")"):
        while True:
            key = sc.text(sc.string(), "ID field")
            sc.sp()
            value = None if sc.nil() else sc.text(sc.string(), "ID value")
            pairs.append((key, value))
            if sc.take(b")"):
                break
            sc.sp()
    return Id(tag, tuple(pairs))


_COMMANDS: dict[str, Callable[[_Scanner, str], Command]] = {
    "CAPABILITY": _no_args(Capability),
    "NOOP": _no_args(Noop),
    "LOGOUT": _no_args(Logout),
    "STARTTLS": _no_args(StartTls),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "SELECT": _select_like(Select),
    "EXAMINE": _select_like(Examine),
    "CREATE": _create,
    "DELETE": _one_mailbox(Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(Subscribe),
    "UNSUBSCRIBE": _one_mailbox(Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "NAMESPACE": _no_args(Namespace),
    "STATUS": _status,
    "APPEND": _append,
    "IDLE": _no_args(Idle),
    "CHECK": _no_args(Check),
    "CLOSE": _no_args(Close),
    "UNSELECT": _no_args(Unselect),
    "EXPUNGE": _no_args(Expunge),
    "ID": _id,
}
_NO_ARGS = frozenset(
    ["CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "NAMESPACE", "IDLE", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE"]
)
_UID_COMMANDS: dict[str, Callable[[_Scanner, str, bool], Command]] = {
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_like(Copy),
    "MOVE": _copy_like(Move),
    "SEARCH": _search,
}


def _command_head(sc: _Scanner) -> tuple[str, str]:
    """tag SP name; returns (tag, upper-case name), "UID X" for UID commands."""
    token = sc.match(_TAG)
    if token is None:
        raise _Syntax("missing or invalid tag")
    tag = token.decode("ascii")
    if not sc.take(b" "):
        raise _Syntax("missing command" if sc.peek() is None else "invalid tag")
    name = sc.atom("a command name").upper()
    if name == "UID":
        sc.sp()
        name = "UID " + sc.atom("a command name after UID").upper()
    return tag, name


def _parse_command(sc: _Scanner) -> Command:
    tag, name = _command_head(sc)
    if name.startswith("UID "):
        sub = name[4:]
        if sub == "EXPUNGE":
            command = _uid_expunge(sc, tag)
        elif sub in _UID_COMMANDS:
            command = _UID_COMMANDS[sub](sc, tag, True)
        else:
            raise _Syntax(f"unknown command {name}")
    elif name in _UID_COMMANDS:
        command = _UID_COMMANDS[name](sc, tag, False)
    elif name in _COMMANDS:
        command = _COMMANDS[name](sc, tag)
    else:
        raise _Syntax(f"unknown command {name}")
    if not sc.at_end():
        if name in _NO_ARGS:
            raise _Syntax(f"{name} takes no arguments")
        raise _Syntax(f"unexpected {sc._near()} after the arguments of {name}")
    return command


@dataclass
class _AppendProgress:
    """APPEND checkpoint: everything up to and including the last message literal has been parsed."""

    tag: str
    mailbox: MailboxName
    messages: list[AppendMessage]
    resume_segment: int  # the segment right after the last message literal
    close_paren: bool  # that literal was inside "UTF8 (" and the ")" is still to come


def _parse_append_rest(sc: _Scanner, progress: _AppendProgress) -> Command:
    """Continue an APPEND after its last message literal; raises _MessagePending at the next one."""
    if progress.close_paren:
        sc.expect(b")")
        progress.close_paren = False
    if sc.at_end():
        return Append(progress.tag, progress.mailbox, tuple(progress.messages))
    sc.sp()
    _append_message(sc, progress.mailbox)
    raise _Syntax("expected the end of the APPEND command after a message")  # pragma: no cover


# ------------------------------------------------------------------------------------------------ reader


class _State(Enum):
    LINE = "line"  # reading a line of a command (or a line between commands)
    LITERAL = "literal"  # collecting a small literal
    STREAM = "stream"  # passing an APPEND message literal on in AppendData chunks
    SKIP = "skip"  # skipping a literal of a discarded command
    DISCARD = "discard"  # discarding the rest of a command line


class _Mode(Enum):
    COMMAND = "command"
    IDLE = "idle"
    AUTHENTICATE = "authenticate"


_TAIL = 40  # octets of a discarded line kept to recognise a literal marker at its end


@dataclass
class _CommandInProgress:
    segments: list[bytes] = field(default_factory=list)
    literals: list[bytes | None] = field(default_factory=list)
    size: int = 0  # octets held: segments and small literals
    tag: str | None = None
    is_append: bool = False
    append: _AppendProgress | None = None


_HEAD = re.compile(rb'([^\x00-\x20\x7f-\xff(){%*"\\+]+) ([A-Za-z]+)')


class CommandReader:
    """Reads client commands from a byte stream. See the module docstring for the event model."""

    def __init__(
        self, *, max_line: int = 64 * 1024, max_literal: int = 50 * 1024 * 1024, literal_plus: bool = True
    ) -> None:
        if max_line < 1024:
            raise ValueError("max_line must be at least 1024 (RFC 9051 section 4 recommends 8192)")
        if max_literal < 1:
            raise ValueError("max_literal must be positive")
        self.max_line = max_line
        self.max_literal = max_literal
        self.literal_plus = literal_plus
        self.utf8 = False
        """Set by the server after ENABLE UTF8=ACCEPT or ENABLE IMAP4rev2 (RFC 6855, RFC 9051)."""
        self._buf = bytearray()
        self._scanned = 0  # octets of _buf already known to hold no LF
        self._events: deque[ReaderEvent] = deque()
        self._state = _State.LINE
        self._mode = _Mode.COMMAND
        self._remaining = 0  # octets left of the current literal (LITERAL, STREAM, SKIP)
        self._literal = bytearray()
        self._tail = b""  # end of the line being discarded
        self._command = _CommandInProgress()
        self._continuation_pending = False  # the last event returned was NeedContinuation

    # ------------------------------------------------------------------------------------------ public API

    def feed(self, data: bytes) -> None:
        """Buffer octets from the client; nothing is parsed until next()."""
        self._buf += data

    def next(self) -> ReaderEvent | None:
        """The next event, or None when more input is needed."""
        self._continuation_pending = False
        while not self._events:
            if not self._step():
                return None
        event = self._events.popleft()
        self._continuation_pending = isinstance(event, NeedContinuation)
        return event

    @property
    def buffered_bytes(self) -> int:
        """Octets held: unparsed input plus the parts of the current command."""
        return len(self._buf) + self._command.size + len(self._literal)

    @property
    def in_command(self) -> bool:
        """True while a command has been started but not completed or discarded."""
        return bool(self._command.segments) or self._state is not _State.LINE

    def expect_idle_done(self) -> None:
        """The server sent "+ idling": the next line must be DONE (RFC 2177, RFC 9051 section 6.3.13)."""
        self._mode = _Mode.IDLE

    def expect_authenticate_response(self) -> None:
        """The server sent a "+ challenge": the next line is a SASL response (RFC 9051 section 6.2.2)."""
        self._mode = _Mode.AUTHENTICATE

    def refuse_literal(self) -> None:
        """Right after NeedContinuation: the server answered the tag instead of sending "+"."""
        queued = bool(self._events) and isinstance(self._events[0], NeedContinuation)
        if not (self._continuation_pending or queued) or self._state not in (_State.LITERAL, _State.STREAM):
            raise ImapUsageError("refuse_literal() is only allowed right after NeedContinuation")
        self._events.clear()
        self._continuation_pending = False
        self._reset_command()

    def discard_command(self) -> None:
        """Give up on the command in progress: skip the rest of its literal and lines (no event follows).

        Not for a synchronizing literal the server did not answer with "+": use refuse_literal() then.
        """
        self._continuation_pending = False
        self._events.clear()
        if self._state in (_State.LITERAL, _State.STREAM):
            self._command = _CommandInProgress()
            self._literal.clear()
            self._state = _State.SKIP
        elif self._state is _State.LINE and self._command.segments:
            self._command = _CommandInProgress()
            self._tail = b""
            self._state = _State.DISCARD

    # ------------------------------------------------------------------------------------------ internals

    def _reset_command(self) -> None:
        self._command = _CommandInProgress()
        self._literal.clear()
        self._remaining = 0
        self._state = _State.LINE

    def _discard_rest(self, sync: bool | None, size: int) -> None:
        """After an error at a literal marker: expect nothing (sync) or skip the literal and the rest."""
        self._command = _CommandInProgress()
        self._literal.clear()
        if sync:
            self._state = _State.LINE
        else:
            self._remaining = size
            self._state = _State.SKIP

    def _step(self) -> bool:
        """Make progress; False when more input is needed."""
        state = self._state
        if state is _State.LINE:
            return self._step_line()
        if state is _State.DISCARD:
            return self._step_discard()
        if not self._buf and self._remaining:
            return False
        if state is _State.LITERAL:
            n = min(self._remaining, len(self._buf))
            self._literal += self._buf[:n]
            del self._buf[:n]
            self._remaining -= n
            if self._remaining == 0:
                self._command.literals.append(bytes(self._literal))
                self._command.size += len(self._literal)
                self._literal.clear()
                self._state = _State.LINE
            return True
        if state is _State.STREAM:
            n = min(self._remaining, APPEND_CHUNK_SIZE)
            if len(self._buf) < n:
                return False
            if n:
                assert self._command.tag is not None
                self._events.append(AppendData(self._command.tag, bytes(self._buf[:n])))
                del self._buf[:n]
                self._remaining -= n
            if self._remaining == 0:
                self._command.literals.append(None)
                self._state = _State.LINE
            return True
        # SKIP
        n = min(self._remaining, len(self._buf))
        del self._buf[:n]
        self._remaining -= n
        if self._remaining == 0:
            self._tail = b""
            self._state = _State.DISCARD
        return True

    def _step_discard(self) -> bool:
        idx = self._buf.find(b"\n")
        if idx < 0:
            self._tail = (self._tail + bytes(self._buf))[-_TAIL:]
            self._buf.clear()
            return False
        line = (self._tail + bytes(self._buf[:idx]))[-_TAIL:].removesuffix(b"\r")
        del self._buf[: idx + 1]
        self._tail = b""
        m = _MARKER_AT_END.search(line)
        if m and m.group(3):
            self._remaining = int(m.group(2))
            self._state = _State.SKIP
        else:
            self._state = _State.LINE
        return True

    def _first_line_tag(self, line: bytes) -> str | None:
        m = _TAG.match(line)
        if m and line[m.end() : m.end() + 1] in (b" ", b""):
            return m.group().decode("ascii")
        return None

    def _step_line(self) -> bool:
        cmd = self._command
        budget = self.max_line if self._mode is not _Mode.COMMAND else self.max_line - cmd.size
        idx = self._buf.find(b"\n", self._scanned)
        if idx < 0:
            if len(self._buf) > budget + 1:
                tag = cmd.tag if cmd.segments else self._first_line_tag(bytes(self._buf[:256]))
                self._mode = _Mode.COMMAND
                self._command = _CommandInProgress()
                self._tail = bytes(self._buf[-_TAIL:])
                self._buf.clear()
                self._scanned = 0
                self._state = _State.DISCARD
                self._events.append(ParseError(tag, "command line too long"))
                return True
            self._scanned = len(self._buf)
            return False
        line = bytes(self._buf[:idx]).removesuffix(b"\r")
        del self._buf[: idx + 1]
        self._scanned = 0
        if len(line) > budget:
            tag = cmd.tag if cmd.segments else self._first_line_tag(line[:256])
            self._mode = _Mode.COMMAND
            self._command = _CommandInProgress()
            self._events.append(ParseError(tag, "command line too long"))
            m = _MARKER_AT_END.search(line[-_TAIL:])
            if m and m.group(3):
                self._remaining = int(m.group(2))
                self._state = _State.SKIP
            return True
        if self._mode is _Mode.IDLE:
            self._mode = _Mode.COMMAND
            if line.upper() == b"DONE":
                self._events.append(IdleDone())
            else:
                self._events.append(ParseError(None, "expected DONE to end IDLE"))
            return True
        if self._mode is _Mode.AUTHENTICATE:
            self._mode = _Mode.COMMAND
            self._events.append(AuthenticateResponse(line))
            return True
        if not cmd.segments:
            if not line:
                return True  # empty lines between commands are ignored
            cmd.tag = self._first_line_tag(line)
            head = _HEAD.match(line)
            cmd.is_append = head is not None and head.group(2).upper() == b"APPEND"
        cmd.segments.append(line)
        cmd.size += len(line)
        marker = _MARKER_AT_END.search(line)
        if marker is None:
            self._finish_command()
        else:
            self._literal_marker(marker)
        return True

    def _finish_command(self) -> None:
        cmd = self._command
        self._reset_command()
        try:
            if cmd.append is not None:
                sc = _Scanner(cmd.segments, cmd.literals, self.utf8, cmd.append.resume_segment)
                command = _parse_append_rest(sc, cmd.append)
            else:
                command = _parse_command(_Scanner(cmd.segments, cmd.literals, self.utf8))
        except _Syntax as exc:
            self._events.append(ParseError(cmd.tag, str(exc)))
            return
        except _BadCharset as exc:
            assert cmd.tag is not None
            self._events.append(UnsupportedCharset(cmd.tag, exc.charset, exc.save))
            return
        except (_LiteralPending, _MessagePending):
            # Only possible when a line ends with a marker, which _step_line handles; defensive.
            self._events.append(ParseError(cmd.tag, "unexpected literal"))  # pragma: no cover
            return  # pragma: no cover
        if isinstance(command, StartTls):
            self._buf.clear()  # RFC 9051 section 6.2.1: no pipelining past STARTTLS (CVE-2011-0411)
            self._scanned = 0
        self._events.append(command)

    def _literal_marker(self, marker: re.Match[bytes]) -> None:
        cmd = self._command
        size = int(marker.group(2))
        sync = not marker.group(3)
        message: _MessagePending | None = None
        if cmd.is_append or len(cmd.literals) == 0:
            try:
                if cmd.append is not None:
                    sc = _Scanner(cmd.segments, cmd.literals, self.utf8, cmd.append.resume_segment)
                    _parse_append_rest(sc, cmd.append)
                else:
                    _parse_command(_Scanner(cmd.segments, cmd.literals, self.utf8))
                raise _Syntax("unexpected literal")  # pragma: no cover - the marker ends the last segment
            except _LiteralPending:
                pass
            except _MessagePending as pending:
                message = pending
            except _Syntax as exc:
                self._discard_rest(sync, size)
                self._events.append(ParseError(cmd.tag, str(exc)))
                return
            except _BadCharset as exc:
                self._discard_rest(sync, size)
                assert cmd.tag is not None
                self._events.append(UnsupportedCharset(cmd.tag, exc.charset, exc.save))
                return
        assert cmd.tag is not None  # a valid prefix or a literal marker after the first line needs a tag
        limit = self.max_literal if message is not None else self.max_line - cmd.size
        if not sync and not self.literal_plus:
            limit = min(limit, LITERAL_MINUS_LIMIT)
        if size > limit:
            self._discard_rest(sync, size)
            self._events.append(LiteralTooLarge(cmd.tag, size, limit, sync))
            return
        self._remaining = size
        if message is None:
            self._state = _State.LITERAL
        else:
            progress = cmd.append
            if progress is None:
                progress = cmd.append = _AppendProgress(cmd.tag, message.mailbox, [], 0, False)
            progress.resume_segment = len(cmd.segments)
            progress.close_paren = message.in_utf8_parens
            index = len(progress.messages)
            progress.messages.append(message.message)
            self._events.append(AppendMessageStart(cmd.tag, progress.mailbox, index, message.message, sync))
            self._state = _State.STREAM
        if sync:
            self._events.append(NeedContinuation(cmd.tag, size))
