"""The client command grammar of RFC 9051 section 9 (IMAP4rev2) and RFC 3501 section 9 (IMAP4rev1), with the
extensions listed in `postoffice.imap.parser`, over one framed command: `parse_command(Scanner(...))`.

The reader (`postoffice.imap.parser.reader`) frames a command into line segments and the literals between
them; this module parses it in one pass into a typed `Command` (`postoffice.imap.parser.commands`), or raises
`BadSyntax` (a syntax error: the reader's ParseError), `BadCharset` (UnsupportedCharset), or, when the parse
reaches a literal that has not arrived yet, `LiteralPending` / `MessagePending` (an APPEND message literal, to
be streamed). APPEND resumes after each message literal from an `AppendProgress` checkpoint
(`parse_append_rest`), so MULTIAPPEND stays linear however many messages it has.

Implementation notes
- Strings: quoted strings take `\\\\` and `\\"` escapes only; 8-bit octets in a quoted string are an error
  unless `utf8` is set (the server sets it after ENABLE UTF8=ACCEPT or IMAP4rev2, RFC 6855 / RFC 9051), and
  then they must be UTF-8. Literals may carry any octet but NUL (CHAR8); a string argument must decode as
  UTF-8, else it is a syntax error. `~{n}` (literal8) is accepted only for APPEND data (also a CATENATE TEXT
  part: RFC 4469 leaves it to BINARY's literal8, which may carry NUL) and METADATA values.
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
- Limits: lists, NOT and OR nest at most MAX_NESTING deep; a SEARCH has at most MAX_SEARCH_KEYS keys.
- Nothing the client sends raises anything but the exceptions above.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from postoffice.imap.mutf7 import MUtf7Error, decode_mutf7
from postoffice.imap.parser.commands import (
    Append,
    AppendMessage,
    Authenticate,
    CancelUpdate,
    Capability,
    CatenatePart,
    CatenateText,
    CatenateUrl,
    Check,
    Close,
    Command,
    Compress,
    Copy,
    Create,
    Delete,
    DeleteAcl,
    Enable,
    Examine,
    Expunge,
    ExtParam,
    ExtValue,
    Fetch,
    FetchAttribute,
    FetchBinary,
    FetchBinarySize,
    FetchBody,
    FetchItem,
    GenUrlAuth,
    GetAcl,
    GetMetadata,
    GetQuota,
    GetQuotaRoot,
    Id,
    Idle,
    List,
    ListRights,
    Login,
    Logout,
    Lsub,
    MailboxName,
    Move,
    MyRights,
    Namespace,
    Noop,
    Notify,
    NotifyEvent,
    NotifyGroup,
    Partial,
    Rename,
    Replace,
    ResetKey,
    Search,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchKeyword,
    SearchModSeq,
    SearchNot,
    SearchObjectId,
    SearchOr,
    SearchSequence,
    SearchSize,
    SearchText,
    SearchUid,
    SearchWithin,
    Section,
    SectionText,
    Select,
    SetAcl,
    SetMetadata,
    SetQuota,
    Sort,
    StartTls,
    Status,
    Store,
    StoreMode,
    Subscribe,
    Thread,
    UidExpunge,
    Unselect,
    Unsubscribe,
    UrlFetch,
    UrlFetchItem,
)
from postoffice.imap.sequence import SequenceSet

MAX_NESTING = 64
"""Deepest nesting of parenthesised lists, NOT and OR in one command."""

MAX_SEARCH_KEYS = 512
"""Most search keys in one SEARCH (every key counts, NOT, OR and parenthesised lists too). Each is work for
every message searched; a 64 KiB line holds 30,000 of them, which took seconds to evaluate."""

SEARCH_CHARSETS = ("UTF-8", "US-ASCII")
"""The charsets SEARCH accepts; others give UnsupportedCharset (NO [BADCHARSET (UTF-8 US-ASCII)])."""

MAX_METADATA_ENTRY_LENGTH = 1024
"""Longest METADATA entry name, in octets (RFC 5464 sets no limit): a longer one is refused (BAD) as a name
against the rules of section 3.2 is."""

MAX_CATENATE_PARTS = 1000
"""Most parts in one CATENATE list (RFC 4469 sets no limit; each URL is read from the store): BAD beyond."""

MAX_ACL_IDENTIFIER_LENGTH = 512
"""Longest ACL identifier, in octets (RFC 4314 sets no limit; an address has at most 254): BAD beyond."""

_MAX_MODSEQ = 2**63 - 1  # mod-sequence-value: positive unsigned 63-bit integer (RFC 7162 section 7)
_MAX_NUMBER = 2**32 - 1  # number: unsigned 32-bit (RFC 9051 section 9)
_MAX_NUMBER64 = 2**63 - 1  # number64: signed 63-bit, non-negative (RFC 9051 section 9)

_MACROS: dict[str, tuple[str, ...]] = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}

# ---------------------------------------------------------------------------------------------- scanner


class BadSyntax(Exception):
    """A syntax error; becomes ParseError."""


class BadCharset(Exception):
    def __init__(self, charset: str, save: bool = False) -> None:
        super().__init__(charset)
        self.charset = charset
        self.save = save  # the command had RETURN (SAVE): its NO empties the saved result (RFC 5182 2.1)


class LiteralPending(Exception):
    """The parse reached a small literal whose octets have not arrived yet."""


class _MessageLiteralPending(LiteralPending):
    """The parse reached an APPEND message literal of `size` octets (literal8 when `binary`), not arrived."""

    def __init__(self, size: int, binary: bool) -> None:
        super().__init__()
        self.size = size
        self.binary = binary


class MessagePending(Exception):
    """The parse reached an APPEND message literal, or a CATENATE TEXT literal (`text`), whose octets have not
    arrived yet; `progress` is the command parsed up to it (the reader's checkpoint from then on)."""

    def __init__(
        self,
        progress: AppendProgress,
        message: AppendMessage,
        in_utf8_parens: bool,
        text: CatenateText | None = None,
    ) -> None:
        super().__init__()
        self.progress = progress
        self.message = message
        self.in_utf8_parens = in_utf8_parens
        self.text = text

    @property
    def mailbox(self) -> MailboxName:
        return self.progress.mailbox

    @property
    def replace(self) -> tuple[int, bool] | None:
        return self.progress.replace  # a REPLACE's (target, by UID)


# Character classes of RFC 9051 section 9. atom-specials: ( ) { SP CTL % * " \ ] ; 8-bit is not CHAR.
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')  # ASTRING-CHAR adds "]"
_LIST_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')  # list-char adds % * ]
TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')  # tag: ASTRING-CHAR except "+"
_EXT_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\%]+')  # tagged-ext-simple: sequence sets, numbers, atoms
_LITERAL = re.compile(rb"(~?)\{([0-9]{1,30})(\+?)\}")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_DIGITS = re.compile(rb"[0-9]+")
_PARTIAL_RANGE = re.compile(rb"(-?)([0-9]+):(-?)([0-9]+)")
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
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
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


class Scanner:
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
            raise BadSyntax(f"unexpected {self._near()} at end of command")

    def _near(self) -> str:
        seg = self.segments[self.i]
        if self.pos >= len(seg):
            return "end of line"
        return repr(seg[self.pos : self.pos + 20].decode("ascii", "replace"))

    def expect(self, char: bytes, what: str = "") -> None:
        if self.segments[self.i][self.pos : self.pos + 1] != char:
            raise BadSyntax(f"expected {what or repr(char.decode())} but found {self._near()}")
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
            raise BadSyntax(f"expected {what} but found {self._near()}")
        return token.decode("ascii")

    def number(self, limit: int = _MAX_NUMBER, what: str = "a number") -> int:
        token = self.match(_DIGITS)
        if token is None:
            raise BadSyntax(f"expected {what} but found {self._near()}")
        if len(token) > 20 or int(token) > limit:
            raise BadSyntax(f"{what} {token[:20].decode()} is too large")
        return int(token)

    def nz_number(self, limit: int = _MAX_NUMBER, what: str = "a number") -> int:
        start = self.pos
        n = self.number(limit, what)
        if n == 0 or self.seg[start : start + 1] == b"0":
            raise BadSyntax(f"{what} must be a non-zero number without leading zeros")
        return n

    def quoted(self) -> bytes:
        m = _QUOTED.match(self.seg, self.pos)
        if m is None:
            raise BadSyntax("unterminated or invalid quoted string")
        self.pos = m.end()
        value = re.sub(rb'\\(["\\])', rb"\1", m.group(1))
        if not value.isascii():
            if not self.utf8:
                raise BadSyntax("8-bit characters in a quoted string (use a literal, or ENABLE UTF8=ACCEPT)")
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise BadSyntax("quoted string is not valid UTF-8") from None
        return value

    def _marker(self) -> re.Match[bytes]:
        m = _LITERAL.match(self.seg, self.pos)
        if m is None:
            raise BadSyntax("invalid literal")
        if m.end() != len(self.seg):
            raise BadSyntax("a literal's {n} must be followed by CRLF")
        return m

    def literal(self, *, binary: bool = False) -> bytes:
        """A literal's octets; with `binary` a literal8 (`~{n}`, which may carry NUL) is taken too."""
        m = self._marker()
        if m.group(1) and not binary:
            raise BadSyntax("literal8 (~{n}) is only allowed for APPEND message data and METADATA values")
        if self.i >= len(self.literals):
            raise LiteralPending
        value = self.literals[self.i]
        if value is None:  # pragma: no cover - framing and parsing agree on message literals
            raise BadSyntax("unexpected message literal")
        if b"\x00" in value and not m.group(1):
            raise BadSyntax("NUL in a literal")
        self.i += 1
        self.pos = 0
        return value

    def message_literal(self) -> tuple[int, bool]:
        """Consume an APPEND message literal (already streamed); returns (size, binary).

        Raises LiteralPending when its octets have not arrived (the caller turns that into MessagePending).
        """
        if not self.at_literal():
            raise BadSyntax(f"expected the message literal but found {self._near()}")
        m = self._marker()
        size, binary = int(m.group(2)), bool(m.group(1))
        if self.i >= len(self.literals):
            raise _MessageLiteralPending(size, binary)
        self.i += 1
        self.pos = 0
        return size, binary

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
        raise BadSyntax(f"expected a string but found {self._near()}")

    def astring(self, what: str = "a string") -> bytes:
        c = self.peek()
        if c == 0x22 or self.at_literal():
            return self.string()
        token = self.match(_ASTRING_ATOM)
        if token is None:
            raise BadSyntax(f"expected {what} but found {self._near()}")
        return token

    def nil(self) -> bool:
        return self.keyword("NIL")

    def text(self, value: bytes, what: str = "string") -> str:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadSyntax(f"{what} is not valid UTF-8") from None


# ------------------------------------------------------------------------------------------ grammar parts


def _mailbox_name(
    sc: Scanner, value: bytes, *, inbox: bool, what: str = "mailbox name", pattern: bool = False
) -> MailboxName:
    raw = sc.text(value, what)
    if _CONTROL.search(raw):
        raise BadSyntax(f"control character in {what}")
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
        raise BadSyntax(f"control character in {what}")
    if not name.isascii():
        # RFC 9051 5.1 / 6.3.4: names are Net-Unicode (NFC); a name in another form means the same mailbox
        name = unicodedata.normalize("NFC", name)
    if inbox and name.upper() == "INBOX":
        name = "INBOX"
    return MailboxName(name, raw, valid)


def _mailbox(sc: Scanner) -> MailboxName:
    return _mailbox_name(sc, sc.astring("a mailbox name"), inbox=True)


def _reference(sc: Scanner) -> MailboxName:
    value = sc.astring("a reference name")
    return _mailbox_name(sc, value, inbox=False, what="reference name", pattern=True)


def _list_mailbox(sc: Scanner) -> MailboxName:
    c = sc.peek()
    if c == 0x22 or sc.at_literal():
        value = sc.string()
    else:
        token = sc.match(_LIST_ATOM)
        if token is None:
            raise BadSyntax(f"expected a mailbox pattern but found {sc._near()}")
        value = token
    return _mailbox_name(sc, value, inbox=False, what="mailbox pattern", pattern=True)


def _sequence_set(sc: Scanner) -> SequenceSet:
    token = sc.match(_EXT_ATOM)
    if token is None:
        raise BadSyntax(f"expected a sequence set but found {sc._near()}")
    try:
        return SequenceSet.parse(token.decode("ascii"))
    except ValueError as exc:
        raise BadSyntax(str(exc)) from None


def _flag(sc: Scanner) -> str:
    if sc.take(b"\\"):
        flag = "\\" + sc.atom("a flag name")
        return _SYSTEM_FLAGS.get(flag.upper(), flag)
    return sc.atom("a flag")


def _flag_list(sc: Scanner) -> tuple[str, ...]:
    sc.expect(b"(")
    flags: list[str] = []
    if not sc.take(b")"):
        flags.append(_flag(sc))
        while not sc.take(b")"):
            sc.sp()
            flags.append(_flag(sc))
    return tuple(flags)


def _ext_value(sc: Scanner, depth: int) -> ExtValue:
    if depth > MAX_NESTING:
        raise BadSyntax("lists nested too deeply")
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
        raise BadSyntax(f"expected a parameter value but found {sc._near()}")
    return token.decode("ascii")


def _ext_params(sc: Scanner) -> tuple[ExtParam, ...]:
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


def _date(sc: Scanner) -> datetime.date:
    quoted = sc.take(b'"')
    m = _DATE.match(sc.seg, sc.pos)
    if m is None:
        raise BadSyntax(f"expected a date (d-Mon-yyyy) but found {sc._near()}")
    sc.pos = m.end()
    if quoted:
        sc.expect(b'"')
    month = _MONTHS.get(m.group(2).decode("ascii").upper())
    try:
        if month is None:
            raise ValueError
        return datetime.date(int(m.group(3)), month, int(m.group(1)))
    except ValueError:
        raise BadSyntax(f"invalid date {m.group().decode()}") from None


def _date_time(sc: Scanner) -> datetime.datetime:
    m = _DATE_TIME.fullmatch(sc.text(sc.quoted()))
    if m is None:
        raise BadSyntax('invalid date-time (expected "dd-Mon-yyyy hh:mm:ss +zzzz")')
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
        raise BadSyntax(f"invalid date-time {m.group()}") from None


def _section_part(spec: str) -> tuple[tuple[int, ...], str]:
    """Split "1.2.HEADER" into ((1, 2), "HEADER")."""
    part: list[int] = []
    components = spec.split(".") if spec else []
    while components and components[0].isdigit():
        c = components.pop(0)
        if c.startswith("0") or int(c) > _MAX_NUMBER:
            raise BadSyntax(f"invalid part number {c}")
        part.append(int(c))
    return tuple(part), ".".join(components).upper()


def _section(sc: Scanner) -> Section:
    sc.expect(b"[")
    spec = (sc.match(_SECTION_SPEC) or b"").decode("ascii")
    part, text = _section_part(spec)
    fields: tuple[str, ...] = ()
    kind: SectionText | None = None
    if text:
        try:
            kind = SectionText(text)
        except ValueError:
            raise BadSyntax(f"invalid section {spec}") from None
        if kind is SectionText.MIME and not part:
            raise BadSyntax("MIME needs a part number (RFC 9051 section 6.4.5)")
        if kind in (SectionText.HEADER_FIELDS, SectionText.HEADER_FIELDS_NOT):
            sc.sp()
            sc.expect(b"(")
            names = [sc.text(sc.astring("a header field name"))]
            while not sc.take(b")"):
                sc.sp()
                names.append(sc.text(sc.astring("a header field name")))
            for name in names:
                if not _FIELD_NAME.fullmatch(name):
                    raise BadSyntax(f"invalid header field name {name!r}")
            fields = tuple(names)
    elif spec.endswith(".") or (spec and not part):
        raise BadSyntax(f"invalid section {spec}")
    sc.expect(b"]")
    return Section(part, kind, fields)


def _binary_part(sc: Scanner) -> tuple[int, ...]:
    sc.expect(b"[")
    spec = (sc.match(_SECTION_SPEC) or b"").decode("ascii")
    part, text = _section_part(spec)
    if text or spec.endswith("."):
        raise BadSyntax(f"invalid BINARY section {spec} (part numbers only)")
    sc.expect(b"]")
    return part


def _partial(sc: Scanner) -> Partial | None:
    if not sc.take(b"<"):
        return None
    origin = sc.number(_MAX_NUMBER64, "partial origin")
    sc.expect(b".")
    length = sc.nz_number(_MAX_NUMBER64, "partial length")
    sc.expect(b">")
    return Partial(origin, length)


_PREVIEW_LAZY = re.compile(rb" \((?i:lazy)\)")


def _fetch_item(sc: Scanner) -> FetchItem:
    token = sc.match(_FETCH_NAME)
    if token is None:
        raise BadSyntax(f"expected a fetch item but found {sc._near()}")
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
    if name == "PREVIEW" and not bracket:
        sc.match(_PREVIEW_LAZY)  # RFC 8970 3.2: PREVIEW (LAZY) may answer NIL; ours is always at hand
        return FetchAttribute(name)
    if name in FetchAttribute.NAMES and not bracket:
        return FetchAttribute(name)
    raise BadSyntax(f"unknown fetch item {token.decode('ascii', 'replace')}")


def _fetch_att_list(sc: Scanner) -> tuple[FetchItem, ...]:
    """The list `"(" fetch-att *(SP fetch-att) ")"` (RFC 3501 9) NOTIFY's MessageNew and UPDATE (RFC 5465
    section 8) may carry: at least one, no macro (ALL, FAST, FULL are no fetch-att)."""
    sc.expect(b"(")
    items = [_fetch_item(sc)]
    while not sc.take(b")"):
        sc.sp()
        items.append(_fetch_item(sc))
    return tuple(items)


def _modseq(sc: Scanner, what: str) -> int:
    return sc.number(_MAX_MODSEQ, what)


# ---------------------------------------------------------------------------------------------- search


_SEARCH_KEYS_WITH_ARGUMENTS = (
    SearchText.NAMES
    | SearchDate.NAMES
    | {
        "LARGER",
        "SMALLER",
        "HEADER",
        "KEYWORD",
        "UNKEYWORD",
        "UID",
        "NOT",
        "OR",
        "MODSEQ",
        "EMAILID",
        "THREADID",
        "OLDER",
        "YOUNGER",
    }
)
#: RFC 8474 section 7: objectid = 1*255(ALPHA / DIGIT / "_" / "-")
_OBJECTID = re.compile(r"[A-Za-z0-9_-]{1,255}")


def _search_key(sc: Scanner, depth: int) -> SearchKey:
    if depth > MAX_NESTING:
        raise BadSyntax("search keys nested too deeply")
    sc.keys += 1
    if sc.keys > MAX_SEARCH_KEYS:
        raise BadSyntax(f"too many search keys (at most {MAX_SEARCH_KEYS})")
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
        raise BadSyntax(f"unknown search key {word}")
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
            raise BadSyntax(f"invalid header field name {name!r}")
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
    if word in ("OLDER", "YOUNGER"):
        return SearchWithin(word, sc.nz_number(_MAX_NUMBER, "an interval in seconds"))
    if word in ("EMAILID", "THREADID"):
        objectid = sc.atom("an object id")
        if not _OBJECTID.fullmatch(objectid):
            raise BadSyntax(f"invalid object id {objectid!r}")
        return SearchObjectId(word, objectid)
    if word == "MODSEQ":
        entry: tuple[str, str] | None = None
        if sc.peek() == 0x22:
            entry_name = sc.text(sc.quoted())
            if not entry_name.lower().startswith("/flags/") or len(entry_name) == 7:
                raise BadSyntax(f"invalid MODSEQ entry name {entry_name!r}")
            sc.sp()
            entry_type = sc.atom("an entry type").lower()
            if entry_type not in ("priv", "shared", "all"):
                raise BadSyntax(f"invalid MODSEQ entry type {entry_type!r}")
            entry = (entry_name, entry_type)
            sc.sp()
        return SearchModSeq(_modseq(sc, "a mod-sequence value"), entry)
    raise BadSyntax(f"unknown search key {word}")


def _partial_range(sc: Scanner) -> tuple[int, int]:
    """RFC 5267 section 5: partial-range = nz-number ":" nz-number (no "*"; 500:400 is 400:500), kept as sent.
    RFC 9394's negative ranges (PARTIAL -1:-100) are refused: that extension is not offered."""
    m = _PARTIAL_RANGE.match(sc.seg, sc.pos)
    if m is None or sc.seg[m.end() : m.end() + 1] not in (b" ", b")"):
        raise BadSyntax(f"expected a PARTIAL range (like 1:100) but found {sc._near()}")
    if m.group(1) or m.group(3):
        raise BadSyntax("negative PARTIAL ranges (RFC 9394) are not supported")
    ends: list[int] = []
    for digits in (m.group(2), m.group(4)):
        if digits.startswith(b"0") or len(digits) > 10 or int(digits) > _MAX_NUMBER:
            raise BadSyntax("a PARTIAL range is two numbers from 1 to 4294967295")
        ends.append(int(digits))
    sc.pos = m.end()
    return ends[0], ends[1]


def _return_options(
    sc: Scanner, command: str, allowed: frozenset[str]
) -> tuple[tuple[str, ...] | None, tuple[int, int] | None, tuple[FetchItem, ...]]:
    """[RETURN (opts) SP] of SEARCH and SORT (RFC 4731, RFC 5267): (None, None, ()) without RETURN, else the
    options (each once), PARTIAL's range and UPDATE's fetch attributes. RFC 5267 section 4.4: one PARTIAL or
    one ALL, not both. RFC 5465 section 8: modifier-update = "UPDATE" ["(" fetch-att *(SP fetch-att) ")"];
    its own example writes a space before the "(", RFC 4466's search-ret-opt-ext too: both are taken."""
    if not sc.keyword("RETURN"):
        return None, None, ()
    sc.sp()
    sc.expect(b"(")
    options: list[str] = []
    partial: tuple[int, int] | None = None
    update_fetch: tuple[FetchItem, ...] = ()
    if not sc.take(b")"):
        while True:
            option = sc.atom("a RETURN option").upper()
            if option not in allowed and option != "PARTIAL":
                raise BadSyntax(f"unknown {command} RETURN option {option}")
            if option in options:
                raise BadSyntax(f"the RETURN option {option} is given twice")
            if option == "PARTIAL":
                sc.sp()
                partial = _partial_range(sc)
            elif option == "UPDATE" and (sc.peek() == 0x28 or sc.seg[sc.pos : sc.pos + 2] == b" ("):
                sc.take(b" ")
                update_fetch = _fetch_att_list(sc)
            options.append(option)
            if sc.take(b")"):
                break
            sc.sp()
    if "PARTIAL" in options and "ALL" in options:
        raise BadSyntax("RETURN PARTIAL and ALL cannot be combined (RFC 5267 section 4.4)")
    sc.sp()
    return tuple(options), partial, update_fetch


def _charset_name(sc: Scanner) -> str:
    return (sc.text(sc.quoted()) if sc.peek() == 0x22 else sc.atom("a charset")).upper()


def _charset(sc: Scanner, return_options: tuple[str, ...] | None, charset: str | None = None) -> str:
    """A charset name (astring, or `charset` read already), upper-case; BadCharset for one we cannot search
    in."""
    if charset is None:
        charset = _charset_name(sc)
    if charset not in SEARCH_CHARSETS:
        raise BadCharset(charset, save="SAVE" in (return_options or ()))
    return charset


def _search_keys(sc: Scanner) -> tuple[SearchKey, ...]:
    keys = [_search_key(sc, 1)]
    while not sc.at_end():
        sc.sp()
        keys.append(_search_key(sc, 1))
    return tuple(keys)


def _search(sc: Scanner, tag: str, uid: bool) -> Search:
    sc.sp()
    return_options, partial, update_fetch = _return_options(sc, "SEARCH", Search.RETURN_OPTIONS)
    charset: str | None = None
    if sc.keyword("CHARSET"):
        sc.sp()
        charset = _charset(sc, return_options)
        sc.sp()
    return Search(tag, _search_keys(sc), charset, return_options, uid, partial, update_fetch)


def _sort(sc: Scanner, tag: str, uid: bool) -> Sort:
    """RFC 5256: SORT SP sort-criteria SP search-criteria (the charset is not optional), with ESORT's RETURN
    (RFC 5267 section 3) before the criteria."""
    sc.sp()
    return_options, partial, update_fetch = _return_options(sc, "SORT", Sort.RETURN_OPTIONS)
    sc.expect(b"(")
    criteria: list[tuple[str, bool]] = []
    while True:
        key = sc.atom("a sort key").upper()
        reverse = key == "REVERSE"
        if reverse:
            sc.sp()
            key = sc.atom("a sort key").upper()
        if key not in Sort.SORT_KEYS:
            raise BadSyntax(f"unknown sort key {key}")
        criteria.append((key, reverse))
        if len(criteria) > len(Sort.SORT_KEYS) * 2:
            raise BadSyntax("too many sort keys")
        if sc.take(b")"):
            break
        sc.sp()
    sc.sp()
    name = _charset_name(sc)
    sc.sp()
    keys = _search_keys(sc)  # a missing search key is a BAD, also after an unknown charset
    charset = _charset(sc, return_options, name)
    return Sort(tag, tuple(criteria), charset, keys, return_options, uid, partial, update_fetch)


def _thread(sc: Scanner, tag: str, uid: bool) -> Thread:
    """RFC 5256: THREAD SP thread-alg SP search-criteria."""
    sc.sp()
    algorithm = sc.atom("a threading algorithm").upper()
    if algorithm not in Thread.ALGORITHMS:
        raise BadSyntax(f"unknown threading algorithm {algorithm}")
    sc.sp()
    name = _charset_name(sc)
    sc.sp()
    keys = _search_keys(sc)
    return Thread(tag, algorithm, _charset(sc, None, name), keys, uid)


# ---------------------------------------------------------------------------------------------- commands


def _no_args(cls: type[Command]) -> Callable[[Scanner, str], Command]:
    def parse(sc: Scanner, tag: str) -> Command:
        return cls(tag)

    return parse


def _authenticate(sc: Scanner, tag: str) -> Command:
    sc.sp()
    mechanism = sc.atom("a SASL mechanism").upper()
    initial: bytes | None = None
    if not sc.at_end():
        sc.sp()
        token = sc.match(_BASE64)
        if token is None or not sc.at_end():
            raise BadSyntax("invalid base64 initial response")
        try:
            initial = b"" if token == b"=" else base64.b64decode(token, validate=True)
        except binascii.Error:
            raise BadSyntax("invalid base64 initial response") from None
    return Authenticate(tag, mechanism, initial)


def _login(sc: Scanner, tag: str) -> Command:
    sc.sp()
    user = sc.text(sc.astring("a user name"), "user name")
    sc.sp()
    password = sc.text(sc.astring("a password"), "password")
    return Login(tag, user, password)


def _enable(sc: Scanner, tag: str) -> Command:
    caps = []
    while not sc.at_end():
        sc.sp()
        caps.append(sc.atom("a capability").upper())
    if not caps:
        raise BadSyntax("ENABLE needs at least one capability")
    return Enable(tag, tuple(caps))


def _select_like(cls: type[Select] | type[Examine]) -> Callable[[Scanner, str], Command]:
    def parse(sc: Scanner, tag: str) -> Command:
        sc.sp()
        mailbox = _mailbox(sc)
        params: tuple[ExtParam, ...] = ()
        if not sc.at_end():
            sc.sp()
            params = _ext_params(sc)
        return cls(tag, mailbox, params)

    return parse


def _create(sc: Scanner, tag: str) -> Command:
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
                    raise BadSyntax("CREATE USE needs a list of special-use attributes, e.g. (\\Sent)")
                special += tuple(_SPECIAL_USE.get(str(v).upper(), str(v)) for v in param.value)
            else:
                params.append(param)
    return Create(tag, mailbox, special, tuple(params))


def _one_mailbox(
    cls: type[Delete] | type[Subscribe] | type[Unsubscribe],
) -> Callable[[Scanner, str], Command]:
    def parse(sc: Scanner, tag: str) -> Command:
        sc.sp()
        return cls(tag, _mailbox(sc))

    return parse


def _compress(sc: Scanner, tag: str) -> Command:
    sc.sp()
    return Compress(tag, sc.atom("a compression mechanism").upper())


def _getquota(sc: Scanner, tag: str) -> Command:
    sc.sp()
    return GetQuota(tag, sc.text(sc.astring("a quota root")))


def _getquotaroot(sc: Scanner, tag: str) -> Command:
    sc.sp()
    return GetQuotaRoot(tag, _mailbox(sc))


def _setquota(sc: Scanner, tag: str) -> Command:
    """SETQUOTA quota-root "(" [setquota-resource *(SP setquota-resource)] ")" (RFC 9208 section 7)."""
    sc.sp()
    root = sc.text(sc.astring("a quota root"))
    sc.sp()
    sc.expect(b"(")
    limits: list[tuple[str, int]] = []
    while not sc.take(b")"):
        if limits:
            sc.sp()
        name = sc.atom("a resource name").upper()
        sc.sp()
        limits.append((name, sc.number(_MAX_NUMBER64, "a resource limit")))
    return SetQuota(tag, root, tuple(limits))


def _rename(sc: Scanner, tag: str) -> Command:
    sc.sp()
    old = _mailbox(sc)
    sc.sp()
    return Rename(tag, old, _mailbox(sc))


def _list_options(sc: Scanner) -> tuple[ExtParam, ...]:
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
        raise BadSyntax("STATUS needs a non-empty list of status items")
    items = []
    for v in value:
        item = str(v).upper() if isinstance(v, str) else ""
        if item not in Status.ITEMS:
            raise BadSyntax(f"unknown status item {v!r}")
        items.append(item)
    return tuple(items)


def _list(sc: Scanner, tag: str) -> Command:
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
            raise BadSyntax(f"expected RETURN but found {sc._near()}")
        extended = True
        sc.sp()
        for option in _list_options(sc):
            if option.name == "STATUS":
                option = ExtParam("STATUS", _status_items(option.value))
            returns.append(option)
    return List(tag, reference, tuple(patterns), select, tuple(returns), extended)


def _lsub(sc: Scanner, tag: str) -> Command:
    sc.sp()
    reference = _reference(sc)
    sc.sp()
    return Lsub(tag, reference, _list_mailbox(sc))


def _status(sc: Scanner, tag: str) -> Command:
    sc.sp()
    mailbox = _mailbox(sc)
    sc.sp()
    if sc.peek() != 0x28:
        raise BadSyntax("STATUS needs a parenthesised list of items")
    return Status(tag, mailbox, _status_items(_ext_value(sc, 1)))


def _append_opts(sc: Scanner) -> tuple[tuple[str, ...], datetime.datetime | None]:
    """append-opts: [flag-list SP] [date-time SP] (RFC 9051 section 9)."""
    flags: tuple[str, ...] = ()
    date: datetime.datetime | None = None
    if sc.peek() == 0x28:
        flags = _flag_list(sc)
        sc.sp()
    if sc.peek() == 0x22:
        date = _date_time(sc)
        sc.sp()
    return flags, date


def _append_message(sc: Scanner, progress: AppendProgress) -> None:
    """append-opts SP append-data: a literal, `UTF8 (~{n})` (RFC 6855) or `CATENATE (...)` (RFC 4469). A
    literal raises MessagePending; a CATENATE list is parsed up to its next TEXT literal (MessagePending),
    or to its end, when its message goes into `progress.messages`."""
    flags, date = _append_opts(sc)
    if sc.keyword("CATENATE"):
        sc.sp()
        sc.expect(b"(")
        progress.catenate = []
        progress.catenate_head = (flags, date)
        _catenate_list(sc, progress, resume=False)
        return
    utf8 = False
    if sc.keyword("UTF8"):
        utf8 = True
        sc.sp()
        sc.expect(b"(")
        if sc.peek() != 0x7E:
            raise BadSyntax("UTF8 APPEND data must be a literal8 ~{n} (RFC 6855 section 4)")
    elif not sc.at_literal():
        raise BadSyntax(f"expected the message literal but found {sc._near()}")
    try:
        sc.message_literal()
    except _MessageLiteralPending as pending:
        message = AppendMessage(flags, date, pending.size, pending.binary, utf8)
        raise MessagePending(progress, message, utf8) from None
    raise BadSyntax("unexpected message literal")  # pragma: no cover - framing leaves every one pending


def _catenate_list(sc: Scanner, progress: AppendProgress, *, resume: bool) -> None:
    """`cat-part *(SP cat-part) ")"` (RFC 4469 section 5), from its first part or (`resume`) after a TEXT
    literal; at the ")" the catenated message goes into `progress.messages`."""
    parts = progress.catenate
    if parts is None:  # pragma: no cover - callers open the list first
        raise BadSyntax("CATENATE list expected")
    if not resume:
        _cat_part(sc, progress, parts)
    while not sc.take(b")"):
        sc.sp()
        _cat_part(sc, progress, parts)
    flags, date = progress.catenate_head
    texts = [part for part in parts if isinstance(part, CatenateText)]
    size = sum(text.size for text in texts)
    binary, utf8 = any(text.binary for text in texts), any(text.utf8 for text in texts)
    progress.messages.append(AppendMessage(flags, date, size, binary, utf8, tuple(parts)))
    progress.catenate = None


def _cat_part(sc: Scanner, progress: AppendProgress, parts: list[CatenatePart]) -> None:
    """cat-part = text-literal / url (RFC 4469 section 5), or RFC 6855's utf8-literal `UTF8 (~{n})`; a
    literal raises MessagePending (its part is in `parts` already)."""
    if len(parts) >= MAX_CATENATE_PARTS:
        raise BadSyntax(f"a CATENATE list has at most {MAX_CATENATE_PARTS} parts")
    if sc.keyword("URL"):
        sc.sp()
        parts.append(CatenateUrl(sc.text(sc.astring("a URL"), "URL")))
        return
    utf8 = sc.keyword("UTF8")
    if utf8:
        sc.sp()
        sc.expect(b"(")
        if sc.peek() != 0x7E:
            raise BadSyntax("UTF8 CATENATE data must be a literal8 ~{n} (RFC 6855 section 4)")
    elif sc.keyword("TEXT"):
        sc.sp()
        if not sc.at_literal():
            raise BadSyntax(f"expected a literal after TEXT but found {sc._near()}")
    else:
        raise BadSyntax(f"expected TEXT, URL or UTF8 in the CATENATE list but found {sc._near()}")
    try:
        sc.message_literal()
    except _MessageLiteralPending as pending:
        text = CatenateText(pending.size, pending.binary, utf8)
        parts.append(text)
        flags, date = progress.catenate_head
        message = AppendMessage(flags, date, pending.size, pending.binary, utf8)
        raise MessagePending(progress, message, utf8, text) from None
    raise BadSyntax("unexpected message literal")  # pragma: no cover - framing leaves every one pending


def _append_messages(sc: Scanner, progress: AppendProgress) -> Command:
    """1*append-message of APPEND (MULTIAPPEND, RFC 3502), or REPLACE's one (RFC 8508), from where `progress`
    stands; MessagePending at each message or TEXT literal, the command when it ends."""
    while True:
        if progress.messages:
            if progress.replace is not None:
                if not sc.at_end():
                    raise BadSyntax("REPLACE takes one message")
                target, uid = progress.replace
                return Replace(progress.tag, progress.mailbox, progress.messages[0], target, uid)
            if sc.at_end():
                return Append(progress.tag, progress.mailbox, tuple(progress.messages))
            sc.sp()
        _append_message(sc, progress)


def _append(sc: Scanner, tag: str) -> Command:
    """APPEND mailbox 1*append-message: parsed up to its first literal (then see AppendProgress), or whole
    when it has none (CATENATE of URLs only)."""
    sc.sp()
    mailbox = _mailbox(sc)
    sc.sp()
    return _append_messages(sc, AppendProgress(tag, mailbox, [], 0, False))


def _replace(sc: Scanner, tag: str, uid: bool) -> Command:
    """RFC 8508: REPLACE SP seq-number SP mailbox append-message (one message; UID REPLACE: a UID)."""
    sc.sp()
    target = sc.nz_number(what="a UID" if uid else "a message sequence number")
    sc.sp()
    mailbox = _mailbox(sc)
    sc.sp()
    return _append_messages(sc, AppendProgress(tag, mailbox, [], 0, False, (target, uid)))


def _uid_expunge(sc: Scanner, tag: str) -> Command:
    sc.sp()
    return UidExpunge(tag, _sequence_set(sc))


def _copy_like(cls: type[Copy] | type[Move]) -> Callable[[Scanner, str, bool], Command]:
    def parse(sc: Scanner, tag: str, uid: bool) -> Command:
        sc.sp()
        sequence = _sequence_set(sc)
        sc.sp()
        return cls(tag, sequence, _mailbox(sc), uid)

    return parse


def _fetch(sc: Scanner, tag: str, uid: bool) -> Command:
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
                raise BadSyntax(f"invalid fetch modifier {modifier}")
            if sc.take(b")"):
                break
            sc.sp()
        if vanished and changed_since is None:
            raise BadSyntax("VANISHED needs CHANGEDSINCE (RFC 7162 section 3.2.6)")
    return Fetch(tag, sequence, tuple(items), changed_since, vanished, uid, macro)


def _store(sc: Scanner, tag: str, uid: bool) -> Command:
    sc.sp()
    sequence = _sequence_set(sc)
    sc.sp()
    unchanged_since: int | None = None
    if sc.take(b"("):
        if not sc.keyword("UNCHANGEDSINCE"):
            raise BadSyntax(f"expected UNCHANGEDSINCE but found {sc._near()}")
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
        raise BadSyntax(f"expected FLAGS, +FLAGS or -FLAGS (optionally .SILENT) but found {sc._near()}")
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


_METADATA_NAME_FORBIDDEN = re.compile(rb"[^\x20-\x7e]|[*%]")


def _metadata_entry(sc: Scanner, *, settable: bool) -> str:
    """entry = astring (RFC 5464 section 5), under the rules of section 3.2, lower-case (names are
    case-insensitive): ASCII without "*", "%" or control characters (the RFC forbids 0x00-0x19; 0x1a-0x1f and
    0x7f go too), "/" then components separated by single "/", the first "private" or "shared" (section 6:
    every entry has one of the two prefixes), no "/" at the end, at most MAX_METADATA_ENTRY_LENGTH octets.
    An entry to set (`settable`) has at least 2 components, and at least 4 under "vendor" (section 3.2:
    /shared/vendor/<vendor-token>/...); one to get may be "/private" or "/shared" alone, read with DEPTH."""
    value = sc.astring("an entry name")
    if len(value) > MAX_METADATA_ENTRY_LENGTH:
        raise BadSyntax(f"entry names are limited to {MAX_METADATA_ENTRY_LENGTH} octets")
    if _METADATA_NAME_FORBIDDEN.search(value):
        raise BadSyntax('an entry name may not contain "*", "%", control or non-ASCII characters')
    name = value.decode("ascii").lower()
    if not name.startswith("/") or "//" in name or name.endswith("/"):
        raise BadSyntax(
            'an entry name begins with "/" and has no empty component (no "//", no "/" at the end)'
        )
    parts = name[1:].split("/")
    if parts[0] not in ("private", "shared"):
        raise BadSyntax("an entry name begins with /private or /shared (RFC 5464 section 3.2)")
    if settable and (len(parts) < 2 or (parts[1] == "vendor" and len(parts) < 4)):
        raise BadSyntax(
            "an entry has at least 2 components, and 4 below /private/vendor or /shared/vendor "
            "(RFC 5464 section 3.2)"
        )
    return name


def _metadata_options(sc: Scanner) -> tuple[int | None, int | None]:
    """getmetadata-options (RFC 5464 section 5): "(" option *(SP option) ")" with MAXSIZE number and DEPTH
    0 / 1 / infinity, each at most once; (max size or None, depth: 0, 1, None for infinity)."""
    sc.expect(b"(")
    max_size: int | None = None
    depth: int | None = 0
    seen: set[str] = set()
    while True:
        option = sc.atom("a GETMETADATA option").upper()
        if option in seen:
            raise BadSyntax(f"the GETMETADATA option {option} is given twice")
        seen.add(option)
        if option == "MAXSIZE":
            sc.sp()
            max_size = sc.number(what="a MAXSIZE")
        elif option == "DEPTH":
            sc.sp()
            if sc.keyword("INFINITY"):
                depth = None
            else:
                token = sc.match(_DIGITS)
                if token not in (b"0", b"1"):
                    raise BadSyntax('DEPTH is 0, 1 or "infinity"')
                depth = int(token)
        else:
            raise BadSyntax(f"unknown GETMETADATA option {option}")
        if sc.take(b")"):
            return max_size, depth
        sc.sp()


def _getmetadata(sc: Scanner, tag: str) -> Command:
    """RFC 5464 section 5: GETMETADATA [SP getmetadata-options] SP mailbox SP entries. Also accepted, as the
    RFC's own examples write them: the options after the mailbox name (4.2.1, 4.2.2), and several entries
    without parentheses (4.4.1). Options are told from an entry list by their first character: an entry
    begins with "/" (or is a string), an option with a letter."""
    sc.sp()
    options: tuple[int | None, int | None] | None = None
    if sc.peek() == 0x28:  # (
        options = _metadata_options(sc)
        sc.sp()
    mailbox = _mailbox(sc)
    sc.sp()
    if options is None and sc.peek() == 0x28 and sc.seg[sc.pos + 1 : sc.pos + 2].isalpha():
        options = _metadata_options(sc)
        sc.sp()
    entries = []
    if sc.take(b"("):
        entries.append(_metadata_entry(sc, settable=False))
        while not sc.take(b")"):
            sc.sp()
            entries.append(_metadata_entry(sc, settable=False))
    else:
        entries.append(_metadata_entry(sc, settable=False))
        while not sc.at_end():
            sc.sp()
            entries.append(_metadata_entry(sc, settable=False))
    max_size, depth = options if options is not None else (None, 0)
    return GetMetadata(tag, mailbox, tuple(dict.fromkeys(entries)), max_size, depth)


def _metadata_value(sc: Scanner) -> bytes | None:
    """value = nstring / literal8 (RFC 5464 section 5): None for NIL."""
    if sc.nil():
        return None
    if sc.peek() == 0x22:  # "
        return sc.quoted()
    if sc.at_literal():
        return sc.literal(binary=True)
    raise BadSyntax(f"expected a value (a string, a literal or NIL) but found {sc._near()}")


def _setmetadata(sc: Scanner, tag: str) -> Command:
    """RFC 5464 section 5: SETMETADATA SP mailbox SP "(" entry SP value *(SP entry SP value) ")"."""
    sc.sp()
    mailbox = _mailbox(sc)
    sc.sp()
    sc.expect(b"(")
    entries: list[tuple[str, bytes | None]] = []
    while True:
        name = _metadata_entry(sc, settable=True)
        sc.sp()
        entries.append((name, _metadata_value(sc)))
        if sc.take(b")"):
            return SetMetadata(tag, mailbox, tuple(entries))
        sc.sp()


def _cancelupdate(sc: Scanner, tag: str) -> Command:
    """RFC 5267 section 5: "CANCELUPDATE" 1*(SP quoted): the tags are quoted strings, never atoms."""
    tags: list[str] = []
    while not sc.at_end() or not tags:
        sc.sp()
        if sc.peek() != 0x22:
            raise BadSyntax(f"expected a quoted tag but found {sc._near()}")
        tags.append(sc.text(sc.quoted(), "tag"))
    return CancelUpdate(tag, tuple(tags))


_NOTIFY_EVENTS = {name.upper(): name for name in NotifyEvent.NAMES}


def _notify_mailboxes(sc: Scanner) -> tuple[MailboxName, ...]:
    """one-or-more-mailbox = mailbox / "(" mailbox *(SP mailbox) ")" (RFC 5465 section 8): names, never
    patterns (section 6.6: no wildcard expansion; "*" and "%" need a quoted string, as in any mailbox)."""
    if not sc.take(b"("):
        return (_mailbox(sc),)
    names = [_mailbox(sc)]
    while not sc.take(b")"):
        sc.sp()
        names.append(_mailbox(sc))
    return tuple(names)


def _notify_event(sc: Scanner) -> NotifyEvent:
    """event = message-event / mailbox-event / user-event / event-ext (RFC 5465 section 8); MessageNew may
    carry "(" fetch-att *(SP fetch-att) ")". An unknown name is an event-ext atom, not a syntax error (the
    server refuses it with NO [BADEVENT], section 3.1)."""
    word = sc.atom("an event name")
    name = _NOTIFY_EVENTS.get(word.upper(), word)
    fetch: tuple[FetchItem, ...] = ()
    if name == "MessageNew" and sc.seg[sc.pos : sc.pos + 2] == b" (":
        sc.sp()
        fetch = _fetch_att_list(sc)
    return NotifyEvent(name, fetch)


def _notify_group(sc: Scanner) -> NotifyGroup:
    """event-group = "(" filter-mailboxes SP events ")"; events = "(" event *(SP event) ")" / "NONE". The
    examples of RFC 5465 (3.1) write the events without their parentheses, which the grammar does not allow;
    that form is taken too (the events then end at the group's ")"), as decision 0067 takes both forms of
    GETMETADATA where RFC 5464 contradicts itself."""
    sc.expect(b"(", "an event group")
    kind = sc.atom("a mailbox filter").upper()
    if kind not in NotifyGroup.FILTERS:
        raise BadSyntax(f"unknown NOTIFY mailbox filter {kind}")
    mailboxes: tuple[MailboxName, ...] = ()
    if kind in NotifyGroup.WITH_MAILBOXES:
        sc.sp()
        mailboxes = _notify_mailboxes(sc)
    sc.sp()
    if sc.keyword("NONE"):
        sc.expect(b")")
        return NotifyGroup(kind, (), mailboxes)
    listed = sc.take(b"(")
    found = [_notify_event(sc)]
    while not sc.take(b")"):
        sc.sp()
        found.append(_notify_event(sc))
    if listed:
        sc.expect(b")")
    return NotifyGroup(kind, tuple(found), mailboxes)


def _notify(sc: Scanner, tag: str) -> Command:
    """RFC 5465 section 8: NOTIFY SP ("SET" [SP "STATUS"] SP event-groups / "NONE"), with RFC 7377's
    subtree-one among the filters."""
    sc.sp()
    if sc.keyword("NONE"):
        return Notify(tag, None)
    if not sc.keyword("SET"):
        raise BadSyntax(f"expected SET or NONE but found {sc._near()}")
    sc.sp()
    status = sc.keyword("STATUS")
    if status:
        sc.sp()
    groups = [_notify_group(sc)]
    while not sc.at_end():
        sc.sp()
        groups.append(_notify_group(sc))
    return Notify(tag, tuple(groups), status)


_ACL_RIGHTS = re.compile(rb"[+-]?[a-z0-9]*")


def _acl_identifier(sc: Scanner) -> str:
    """identifier = astring (RFC 4314 section 7), UTF-8 without control characters, at most
    MAX_ACL_IDENTIFIER_LENGTH octets. The server prepares it (SASLprep, section 3), BAD when it cannot."""
    value = sc.astring("an identifier")
    if len(value) > MAX_ACL_IDENTIFIER_LENGTH:
        raise BadSyntax(f"identifiers are limited to {MAX_ACL_IDENTIFIER_LENGTH} octets")
    identifier = sc.text(value, "identifier")
    if _CONTROL.search(identifier):
        raise BadSyntax("control character in an identifier")
    return identifier


def _setacl(sc: Scanner, tag: str) -> Command:
    """SETACL SP mailbox SP identifier SP mod-rights (RFC 4314 section 7): mod-rights = astring, an optional
    "+" or "-" then rights, which are "only lowercase ASCII letters and digits" (3.1: "Uppercase rights are
    not allowed"); whether the server knows each right is its business."""
    sc.sp()
    mailbox = _mailbox(sc)
    sc.sp()
    identifier = _acl_identifier(sc)
    sc.sp()
    value = sc.astring("rights")
    if not _ACL_RIGHTS.fullmatch(value):
        raise BadSyntax("rights are lower-case letters and digits, after an optional + or -")
    text = value.decode("ascii")
    mode = text[:1] if text[:1] in ("+", "-") else ""
    return SetAcl(tag, mailbox, identifier, mode, text[len(mode) :])


def _deleteacl(sc: Scanner, tag: str) -> Command:
    """DELETEACL SP mailbox SP identifier (RFC 4314 section 7)."""
    sc.sp()
    mailbox = _mailbox(sc)
    sc.sp()
    return DeleteAcl(tag, mailbox, _acl_identifier(sc))


def _getacl(sc: Scanner, tag: str) -> Command:
    sc.sp()
    return GetAcl(tag, _mailbox(sc))


def _listrights(sc: Scanner, tag: str) -> Command:
    """LISTRIGHTS SP mailbox SP identifier (RFC 4314 section 7)."""
    sc.sp()
    mailbox = _mailbox(sc)
    sc.sp()
    return ListRights(tag, mailbox, _acl_identifier(sc))


def _myrights(sc: Scanner, tag: str) -> Command:
    sc.sp()
    return MyRights(tag, _mailbox(sc))


def _id(sc: Scanner, tag: str) -> Command:
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


_MECHANISM_NAME = re.compile(rb"[A-Za-z0-9.-]+")


def _mechanism(sc: Scanner) -> str:
    """mechanism = "INTERNAL" / 1*(ALPHA / DIGIT / "-" / ".") (RFC 4467 section 9), upper-case."""
    token = sc.match(_MECHANISM_NAME)
    if token is None:
        raise BadSyntax(f"expected a URLAUTH mechanism name but found {sc._near()}")
    return token.decode("ascii").upper()


def _url(sc: Scanner) -> str:
    return sc.text(sc.astring("a URL"), "URL")


def _genurlauth(sc: Scanner, tag: str) -> Command:
    """GENURLAUTH 1*(SP url-rump SP mechanism) (RFC 4467 section 9)."""
    urls: list[tuple[str, str]] = []
    while True:
        sc.sp()
        url = _url(sc)
        sc.sp()
        urls.append((url, _mechanism(sc)))
        if sc.at_end():
            return GenUrlAuth(tag, tuple(urls))


def _resetkey(sc: Scanner, tag: str) -> Command:
    """RESETKEY [SP mailbox *(SP mechanism)] (RFC 4467 section 9)."""
    if sc.at_end():
        return ResetKey(tag)
    sc.sp()
    mailbox = _mailbox(sc)
    mechanisms: list[str] = []
    while not sc.at_end():
        sc.sp()
        mechanisms.append(_mechanism(sc))
    return ResetKey(tag, mailbox, tuple(mechanisms))


def _urlfetch(sc: Scanner, tag: str) -> Command:
    """URLFETCH 1*(SP url-fetch-arg) (RFC 4467 section 9, RFC 5524 section 5: url-fetch-simple = url-full,
    url-fetch-ext = "(" url-full *(SP url-fetch-param) ")"). RFC 5524 3.1's MUST NOTs (a parameter twice,
    BINARY with BODY) are BAD, as is a parameter it does not define."""
    items: list[UrlFetchItem] = []
    while True:
        sc.sp()
        if sc.take(b"("):
            url = _url(sc)
            params: list[str] = []
            while not sc.take(b")"):
                sc.sp()
                param = sc.atom("a URLFETCH parameter").upper()
                if param not in UrlFetchItem.PARAMS:
                    raise BadSyntax(f"unknown URLFETCH parameter {param}")
                if param in params:
                    raise BadSyntax(f"the URLFETCH parameter {param} is given twice (RFC 5524 section 3.1)")
                params.append(param)
            if "BINARY" in params and "BODY" in params:
                raise BadSyntax("URLFETCH takes BINARY or BODY, not both (RFC 5524 section 3.1)")
            items.append(UrlFetchItem(url, tuple(params)))
        else:
            items.append(UrlFetchItem(_url(sc)))
        if sc.at_end():
            return UrlFetch(tag, tuple(items))


def parse_section(text: str) -> Section | None:
    """A section-spec on its own, as an IMAP URL's ;SECTION= carries it (RFC 5092 section 6: what BODY[...]
    has between its brackets); None when it is not one."""
    sc = Scanner([b"[" + text.encode("utf-8") + b"]"], [], True)
    try:
        section = _section(sc)
        sc.end()
    except (BadSyntax, LiteralPending, ValueError):
        return None
    return section


_COMMANDS: dict[str, Callable[[Scanner, str], Command]] = {
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
    "GETQUOTA": _getquota,
    "COMPRESS": _compress,
    "GETQUOTAROOT": _getquotaroot,
    "SETQUOTA": _setquota,
    "GETMETADATA": _getmetadata,
    "SETMETADATA": _setmetadata,
    "GENURLAUTH": _genurlauth,
    "RESETKEY": _resetkey,
    "URLFETCH": _urlfetch,
    "SETACL": _setacl,
    "DELETEACL": _deleteacl,
    "GETACL": _getacl,
    "LISTRIGHTS": _listrights,
    "MYRIGHTS": _myrights,
    "NOTIFY": _notify,
    "CANCELUPDATE": _cancelupdate,
}
_NO_ARGS = frozenset(
    ["CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "NAMESPACE", "IDLE", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE"]
)
_UID_COMMANDS: dict[str, Callable[[Scanner, str, bool], Command]] = {
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_like(Copy),
    "MOVE": _copy_like(Move),
    "SEARCH": _search,
    "SORT": _sort,
    "THREAD": _thread,
    "REPLACE": _replace,
}


def _command_head(sc: Scanner) -> tuple[str, str]:
    """tag SP name; returns (tag, upper-case name), "UID X" for UID commands."""
    token = sc.match(TAG)
    if token is None:
        raise BadSyntax("missing or invalid tag")
    tag = token.decode("ascii")
    if not sc.take(b" "):
        raise BadSyntax("missing command" if sc.peek() is None else "invalid tag")
    name = sc.atom("a command name").upper()
    if name == "UID":
        sc.sp()
        name = "UID " + sc.atom("a command name after UID").upper()
    return tag, name


def parse_command(sc: Scanner) -> Command:
    tag, name = _command_head(sc)
    if name.startswith("UID "):
        sub = name[4:]
        if sub == "EXPUNGE":
            command = _uid_expunge(sc, tag)
        elif sub in _UID_COMMANDS:
            command = _UID_COMMANDS[sub](sc, tag, True)
        else:
            raise BadSyntax(f"unknown command {name}")
    elif name in _UID_COMMANDS:
        command = _UID_COMMANDS[name](sc, tag, False)
    elif name in _COMMANDS:
        command = _COMMANDS[name](sc, tag)
    else:
        raise BadSyntax(f"unknown command {name}")
    if not sc.at_end():
        if name in _NO_ARGS:
            raise BadSyntax(f"{name} takes no arguments")
        raise BadSyntax(f"unexpected {sc._near()} after the arguments of {name}")
    return command


#: What `AppendProgress.mark` keeps: messages, the open CATENATE list and its length, its head, close_paren.
_Mark = tuple[int, "list[CatenatePart] | None", int, "tuple[tuple[str, ...], datetime.datetime | None]", bool]


@dataclass
class AppendProgress:
    """APPEND checkpoint: everything up to and including the last message or TEXT literal has been parsed."""

    tag: str
    mailbox: MailboxName
    messages: list[AppendMessage]
    resume_segment: int  # the segment right after the last message literal
    close_paren: bool  # that literal was inside "UTF8 (" and the ")" is still to come
    replace: tuple[int, bool] | None = None  # a REPLACE (RFC 8508): (target, by UID); one message only
    #: CATENATE (RFC 4469): the parts so far of the message whose list that literal is in (None: it is in
    #: none), and that message's flags and date
    catenate: list[CatenatePart] | None = None
    catenate_head: tuple[tuple[str, ...], datetime.datetime | None] = ((), None)

    def mark(self) -> _Mark:
        """The state to go back to when a parse from here stops at a small literal (a URL written as one):
        the next parse starts from here again."""
        catenate = self.catenate
        return (len(self.messages), catenate, len(catenate or ()), self.catenate_head, self.close_paren)

    def restore(self, mark: _Mark) -> None:
        count, catenate, parts, self.catenate_head, self.close_paren = mark
        del self.messages[count:]
        if catenate is not None:
            del catenate[parts:]
        self.catenate = catenate


def parse_append_rest(sc: Scanner, progress: AppendProgress) -> Command:
    """Continue an APPEND (or REPLACE) after its last literal; raises MessagePending at the next one."""
    if progress.close_paren:
        sc.expect(b")")
        progress.close_paren = False
    if progress.catenate is not None:
        _catenate_list(sc, progress, resume=True)
    return _append_messages(sc, progress)
