"""Running a checked Sieve script against one message for one recipient (RFC 5228 sections 2.7-2.10, 4, 5):
the tests, and the list of actions the delivery carries out.

`run(script, message)` gives an `Outcome`: the actions in the order the script took them, duplicates
left out (section 2.10.3), and whether the implicit keep still holds (section 2.10.2). Nothing is done
here; delivery carries the outcome out in one transaction (issue 15).
- Actions: `Keep` (the explicit keep, into the Inbox), `FileInto`, `Redirect`, `Discard`, `Reject` (reject
  and ereject, RFC 5429), `Vacation` (RFC 5230 and 6131; `vacation_refusal` says when RFC 3834 forbids the
  reply; the caller keeps the per-sender record of replies sent). `fileinto`, `redirect`, `discard` and
  `reject` cancel the implicit keep, except with `:copy` (RFC 3894); `vacation` does not. An explicit
  `keep` stands for the implicit one: the message is kept once.
- imap4flags (RFC 5232): setflag, addflag and removeflag change the run's internal variable (flag names
  case-insensitive, each once); keep and fileinto take `:flags` or the variable's value when they run, the
  implicit keep its value at the end (`Outcome.flags`); hasflag matches each flag of the variable.
- Tests read a `SieveMessage`: the header fields of the message as delivery stored it (RFC 2047 words
  decoded for `header`, section 5.7; addresses parsed for `address`, section 5.1), its size, and the
  envelope of this delivery (section 5.4: "from" is the reverse path, "" for the null one; "to" the
  recipient).
- Match types and comparators: `postoffice.sieve.matching` (with RFC 5231's :value and :count).
- Variables (RFC 5229): with "variables" required, every string argument but require's, comparator names,
  relational operators and `set`'s name is expanded when it is used: "${name}" is the variable (names are
  case-insensitive; one never set is ""), "${0}" to "${9}" and beyond the match variables of the last
  `:matches` that held; a reference that is not one ("${a-b}", a namespace we do not have) stays as
  written. Values are cut at MAX_VARIABLE_SIZE characters; at most MAX_VARIABLES variables.
- The other tests and their context (`SieveContext`: the account's mailboxes, the environment, the time):
  subaddress (RFC 5233: :user and :detail with "+"), index (RFC 5260 section 6: :index n [:last] picks one
  occurrence of the header field), date and currentdate (RFC 5260), body (RFC 5173: :raw, :content, :text
  over the message the delivery hands over, at most what `SieveMessage.source` gives), environment (RFC
  5183), ihave and error (RFC 5463), mailboxexists and fileinto :create (RFC 5490), specialuse_exists and
  fileinto :specialuse (RFC 8579), mailboxidexists and fileinto :mailboxid (RFC 9042).
- Limits: at most MAX_ACTIONS actions and MAX_REDIRECTS redirects per run, and MAX_RUN_SECONDS of time
  (checked at every test and command, and the bound of each `:regex` search): more is a runtime error, the
  caller keeps the message (section 2.10.6).
"""

from __future__ import annotations

import dataclasses
import datetime
import email
import email.header
import email.policy
import email.utils
import hashlib
import html
import math
import re
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from postoffice.message.headers import decode_words, header_block, iter_fields, split_fields
from postoffice.sieve.checker import FIELD_NAME, MAX_ADDED_VALUE, MAX_FIELD_NAME, SUPPORTED, Checked, strings
from postoffice.sieve.mailto import parse_mailto
from postoffice.sieve.matching import Matcher, RegexTimeout, Tags

#: Actions one run may take (a script that loops over nothing cannot take many, but a large one could).
MAX_ACTIONS = 64
#: Redirects one run may take (each one is a message sent on).
MAX_REDIRECTS = 4
#: Seconds one run may take (with the scripts it includes): a script cannot loop, but many tests of large
#: header fields, or slow regular expressions, add up; the run blocks its delivery.
MAX_RUN_SECONDS = 1.0


class SieveRuntimeError(Exception):
    """The script cannot be carried out (too many actions, a reject with a keep): the caller keeps the
    message in the Inbox and tells the account (section 2.10.6)."""


#: A message's header as editheader left it when an action was taken (RFC 5293): its fields' octets, each
#: ending in CRLF; None where the script changed nothing.
Header = tuple[bytes, ...] | None


@dataclass(frozen=True)
class Keep:
    flags: tuple[str, ...] = ()  # RFC 5232: the flags the kept copy gets
    header: Header = None


@dataclass(frozen=True)
class FileInto:
    mailbox: str
    copy: bool = False
    flags: tuple[str, ...] = ()
    create: bool = False  # RFC 5490 :create: make the mailbox when it does not exist
    special_use: str | None = None  # RFC 8579 :specialuse: the mailbox with this attribute, if any
    mailbox_id: str | None = None  # RFC 9042 :mailboxid: the mailbox with this id, if any
    header: Header = None


@dataclass(frozen=True)
class Redirect:
    address: str
    copy: bool = False
    header: Header = None


@dataclass(frozen=True)
class Discard:
    pass


@dataclass(frozen=True)
class Reject:
    reason: str
    extended: bool = False  # ereject: refuse in the SMTP dialogue when possible (RFC 5429 2.1)


#: RFC 5230 section 4.1: the days between two replies to one sender when the script does not say, and the
#: bounds a script's :days or :seconds (RFC 6131) is held to ("sites may impose a minimum and a maximum").
VACATION_DAYS = 7
VACATION_MIN_SECONDS = 0  # RFC 6131 section 2: ":seconds 0" replies every time
VACATION_MAX_SECONDS = 90 * 86400


@dataclass(frozen=True)
class Vacation:
    """An auto-reply (RFC 5230), to be sent when `vacation_refusal` finds no reason not to and none was sent
    to the same sender with the same `handle` in the last `seconds`."""

    reason: str
    subject: str | None = None
    from_address: str | None = None
    addresses: tuple[str, ...] = ()
    mime: bool = False
    handle: str = ""
    seconds: int = VACATION_DAYS * 86400
    fcc: FileInto | None = None  # RFC 8580: where a copy of the reply is stored


@dataclass(frozen=True)
class Notify:
    """A notification (RFC 5435) by `method` (a URI; "mailto:" is the one supported, RFC 5436)."""

    method: str
    from_address: str | None = None
    importance: str | None = None
    options: tuple[str, ...] = ()
    message: str | None = None
    fcc: FileInto | None = None  # RFC 8580: where a copy of the notification is stored


Action = Keep | FileInto | Redirect | Discard | Reject | Vacation | Notify


@dataclass
class Outcome:
    """What a run decided: the actions, and whether the implicit keep remains (then the message also goes
    into the Inbox, once)."""

    actions: list[Action] = field(default_factory=list)
    implicit_keep: bool = True
    #: RFC 5232 section 3: the internal flags variable at the end, which the implicit keep uses
    flags: tuple[str, ...] = ()
    #: RFC 7352: what duplicate tests saw, (key, seconds, last), to record when the delivery succeeds
    duplicates: list[tuple[str, int, bool]] = field(default_factory=list)
    #: RFC 5293: the header as edited at the end, which the implicit keep stores (None: unchanged)
    header: Header = None

    def delivered_to(self) -> list[str]:
        """The mailboxes the message goes into ("INBOX" for a keep), each once, in order."""
        boxes: list[str] = []
        for action in self.actions:
            box = (
                "INBOX"
                if isinstance(action, Keep)
                else action.mailbox
                if isinstance(action, FileInto)
                else None
            )
            if box is not None and box not in boxes:
                boxes.append(box)
        if self.implicit_keep and "INBOX" not in boxes:
            boxes.append("INBOX")
        return boxes


@dataclass(frozen=True)
class SieveMessage:
    """What the tests read of a message: its header fields in order as (name, raw unfolded value), its size
    in octets, and this delivery's envelope."""

    fields: tuple[tuple[str, str], ...]
    size: int
    envelope_from: str = ""
    envelope_to: str = ""
    #: the message's octets for the body test (at most what the caller reads of it); None: the header only
    source: Callable[[], bytes] | None = field(default=None, compare=False)
    #: the header block `fields` were read from, with the empty line after it (editheader rewrites it field
    #: by field)
    head: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def from_bytes(cls, raw: bytes, envelope_from: str = "", envelope_to: str = "") -> SieveMessage:
        message = cls.from_header(raw, len(raw), envelope_from, envelope_to)
        return dataclasses.replace(message, source=lambda: raw)

    @classmethod
    def from_header(
        cls,
        head: bytes,
        size: int,
        envelope_from: str = "",
        envelope_to: str = "",
        source: Callable[[], bytes] | None = None,
    ) -> SieveMessage:
        """Of a message's header block (or the message: what follows the header is not read) and its size."""
        block = header_block(head)
        fields = tuple((name, value.strip()) for name, value, _codec in iter_fields(block))
        rest = head[len(block) :]
        blank = b"\r\n" if rest.startswith(b"\r\n") else rest[:1] if rest[:1] in (b"\n", b"\r") else b""
        return cls(fields, size, envelope_from, envelope_to, source, block + blank)

    def values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for field_name, value in self.fields if field_name.lower() == wanted]


@dataclass(frozen=True)
class SieveContext:
    """What a run may know beyond the message (the module notes): the account's mailboxes (None: unknown,
    so mailboxexists is false), the special-use attributes of each (lower-case), the MAILBOXID of each
    (RFC 8474's, by id), the environment items (RFC 5183), and the time (currentdate; timezone-aware)."""

    mailboxes: frozenset[str] | None = None
    special_uses: dict[str, frozenset[str]] = field(default_factory=dict)
    mailbox_ids: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    now: datetime.datetime | None = None
    #: RFC 7352: whether a duplicate key was seen before (None: nothing was, as for a first delivery)
    seen: Callable[[str], bool] | None = None
    #: RFC 6609: the checked script of a name, personal (False) or global (True); None: there is none
    include: Callable[[str, bool], tuple[Checked, ...] | None] | None = None
    #: RFC 5235: the spam filter's score and the score from which a message counts as spam (None: the
    #: message was not scanned); the virus scanner's verdict, 1 (clean) to 5 (infected), None: not scanned
    spam: tuple[float, float] | None = None
    virus: int | None = None
    #: RFC 5490: a mailbox's metadata entry (mailbox "" for the server's); None when it has none
    metadata: Callable[[str, str], str | None] | None = None
    #: RFC 5293 section 6: fields (lower-case) addheader may not add and deleteheader may not delete, beyond
    #: PROTECTED_FIELDS; Subject is never held back (the RFC's MUST)
    forbid_add: frozenset[str] = frozenset()
    forbid_delete: frozenset[str] = frozenset()
    #: seconds a run may take (the module notes)
    time_limit: float = MAX_RUN_SECONDS


#: RFC 5229 section 6: "at least 4000 characters" per value; more is cut.
MAX_VARIABLE_SIZE = 4000
#: Variables one run may set (a script is bounded, but loops are not the only way to many names).
MAX_VARIABLES = 256
#: RFC 7352 section 3.4: how long a duplicate test remembers by default, and at most.
DUPLICATE_SECONDS = 12 * 3600
DUPLICATE_MAX_SECONDS = 7 * 86400
#: RFC 6609 section 3.2: scripts included within one another at most, and included in one run at most.
MAX_INCLUDE_DEPTH = 10
MAX_INCLUDES = 32
#: Octets of the message the body test reads at most.
MAX_BODY_OCTETS = 1024 * 1024
#: RFC 5293 section 4: octets of a value addheader adds at most, and of all it adds in one run (more is a
#: runtime error), and of a field name.
MAX_ADDED_OCTETS = 64 * 1024
#: RFC 5293 section 6: fields a script may not delete: trace fields (Received, MUST), Auto-Submitted (what
#: stops auto-reply loops) and the field that stops redirect loops (`delivery.forwarding.REDIRECTED_FROM`).
PROTECTED_FIELDS = frozenset({"received", "auto-submitted", "x-sieve-redirected-from"})

_REFERENCE = re.compile(r"\$\{([^{}]*)\}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _address_part(tags: Tags, address: str) -> str | None:
    """The part of `address` the test compares; None when it has none (":detail" without a "+")."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    if "localpart" in tags:
        return local
    if "domain" in tags:
        return domain
    if "user" in tags or "detail" in tags:  # RFC 5233 section 4: the separator is "+"
        user, plus, detail = local.partition("+")
        if "user" in tags:
            return user
        return detail if plus else None
    return address


def _date_part(when: datetime.datetime, part: str) -> str | None:
    """RFC 5260 section 4.2: one part of a date, as text; None for an unknown part."""
    part = part.lower()
    offset = when.utcoffset() or datetime.timedelta()
    minutes = int(offset.total_seconds()) // 60
    zone = f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    if part == "year":
        return f"{when.year:04d}"
    if part == "month":
        return f"{when.month:02d}"
    if part == "day":
        return f"{when.day:02d}"
    if part == "date":
        return f"{when.year:04d}-{when.month:02d}-{when.day:02d}"
    if part == "julian":  # the Modified Julian Day of the date
        return str((when.date() - datetime.date(1858, 11, 17)).days)
    if part == "hour":
        return f"{when.hour:02d}"
    if part == "minute":
        return f"{when.minute:02d}"
    if part == "second":
        return f"{when.second:02d}"
    if part == "time":
        return f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    if part == "iso8601":
        return when.isoformat(timespec="seconds")
    if part == "std11":
        return email.utils.format_datetime(when)
    if part == "zone":
        return zone
    if part == "weekday":
        return str((when.weekday() + 1) % 7)  # 0 is Sunday
    return None


def _zone(text: str) -> datetime.timezone | None:
    """A :zone argument ("+0100", "-0500"); None when it is not one (RFC 5260 section 4.1.1)."""
    match = re.fullmatch(r"([+-])([0-9]{2})([0-9]{2})", text.strip())
    if match is None or int(match.group(2)) > 23 or int(match.group(3)) > 59:
        return None
    delta = datetime.timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
    return datetime.timezone(-delta if match.group(1) == "-" else delta)


def addresses(values: Sequence[str]) -> list[tuple[str, str]]:
    """(display name, address) of header field values, as the email library parses them; none for a value
    it cannot parse (it recurses once per nested comment: a hostile field must not fail the delivery)."""
    try:
        return email.utils.getaddresses(list(values))
    except (RecursionError, ValueError, IndexError, TypeError):
        return []


def added_field(name: str, value: str) -> tuple[str, bytes]:
    """RFC 5293 section 4: the field addheader adds, as (its value unfolded, its octets): line breaks in the
    value unfolded, a value with other than ASCII as RFC 2047 encoded words, lines folded at white space.
    SieveRuntimeError for a name or value that cannot be written."""
    if not FIELD_NAME.fullmatch(name) or len(name) > MAX_FIELD_NAME:
        raise SieveRuntimeError(f'the field name "{name[:80]}" is invalid')
    if "\0" in value or len(value.encode("utf-8", "surrogatepass")) > MAX_ADDED_VALUE:
        raise SieveRuntimeError(f'the value of the added field "{name}" is invalid (a NUL, or too long)')
    text = re.sub(r"\r\n|\r|\n", "\n", value)
    text = re.sub(r"\n(?=[ \t])", "", text).replace("\n", " ")  # RFC 5322 2.2.3: unfolded
    text = "".join(c if c >= " " or c == "\t" else "?" for c in text if c != "\x7f")
    charset = "us-ascii" if text.isascii() else "utf-8"
    try:
        encoded = email.header.Header(text, charset, header_name=name).encode(linesep="\r\n", maxlinelen=78)
        if any(len(line) > 900 for line in encoded.split("\r\n")):  # a word too long to fold: encoded words
            encoded = email.header.Header(text, "utf-8", header_name=name).encode(
                linesep="\r\n", maxlinelen=78
            )
    except (UnicodeError, ValueError) as exc:
        raise SieveRuntimeError(f'the value of the added field "{name}" cannot be written: {exc}') from None
    raw = f"{name}: {encoded}\r\n".encode("ascii", "surrogateescape")
    return re.sub(r"\r\n(?=[ \t])", "", encoded).strip(), raw


def _notify_method_valid(uri: str) -> bool:
    try:
        parse_mailto(uri)
    except ValueError:
        return False
    return True


def _content_matches(content_type: str, keys: Sequence[str]) -> bool:
    """RFC 5173 section 5.2: "" matches every part, "text" every text/*, "text/plain" only that type."""
    main = content_type.partition("/")[0]
    for key in keys:
        key = key.strip().lower()
        if not key or key == content_type or ("/" not in key and key == main):
            return True
    return False


def _part_text(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except (LookupError, UnicodeError):  # a charset Python does not know, or a codec that refuses anyway
        return data.decode("utf-8", "replace")


# -------------------------------------------------------------------------------------------------- run


def flag_list(values: Sequence[str]) -> list[str]:
    """RFC 5232 section 3: a list of flags from strings, each a space-separated list; each flag once (flag
    names are case-insensitive: the first spelling is kept)."""
    flags: dict[str, str] = {}
    for value in values:
        for name in value.split():
            flags.setdefault(name.lower(), name)
    return list(flags.values())


class Hooks(Protocol):
    """Commands and tests beyond the interpreter's own (the test suite's extension): each answers None for a
    name it does not have; `command` answers False when the script must stop."""

    def command(self, run: _Run, node: Checked) -> bool | None: ...

    def test(self, run: _Run, node: Checked) -> bool | None: ...


class _Return(Exception):
    """RFC 6609 section 3.3: `return` ends the script it is in."""


class _Run:
    def __init__(
        self,
        message: SieveMessage,
        context: SieveContext,
        required: frozenset[str],
        hooks: Hooks | None = None,
    ) -> None:
        self.hooks = hooks
        self.deadline = time.monotonic() + context.time_limit
        self.depth = 0
        self.included: set[tuple[str, bool]] = set()  # for :once (RFC 6609 section 3.2)
        self.includes = 0
        self.shared: dict[str, str] = {}  # the global variables of the whole run (RFC 6609 section 3.5)
        self.declared: set[str] = set()  # the names this script declared global
        self.message = message  # (the property: the fields a script edits start from it)
        self.added = 0  # octets addheader added
        self.context = context
        self.outcome = Outcome()
        self.redirects = 0
        self.flags: list[str] = []  # RFC 5232's internal variable
        self.expanding = "variables" in required
        self.variables: dict[str, str] = {}
        self.matched: list[str] = []  # the match variables (RFC 5229 section 3.2)

    # -- the message and its header (RFC 5293) -------------------------------------------------------

    @property
    def message(self) -> SieveMessage:
        return self._message

    @message.setter
    def message(self, message: SieveMessage) -> None:
        self._message = message
        self.fields: tuple[tuple[str, str], ...] = message.fields
        self.edited: list[tuple[str | None, str, bytes]] | None = None  # the fields once a script edits them

    def values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for field_name, value in self.fields if field_name.lower() == wanted]

    def editable(self) -> list[tuple[str | None, str, bytes]]:
        """The header as pieces (`split_fields`: its fields, and what lies between them and after them, such
        as the empty line, with name None), made when the script first edits it."""
        if self.edited is None:
            head = self.message.head
            block = header_block(head)
            self.edited = [(n, v.strip(), raw) for n, v, raw in split_fields(block)]
            if len(head) > len(block):
                self.edited.append((None, "", head[len(block) :]))
        return self.edited

    def refields(self) -> None:
        fields = self.editable()
        self.fields = tuple((n, v) for n, v, _raw in fields if n is not None)

    def header(self) -> Header:
        """The header as edited so far, with its empty line (None: unchanged), for the action taken now."""
        return None if self.edited is None else tuple(raw for _n, _v, raw in self.edited)

    def add_header(self, tags: Tags, name: str, value: str) -> None:
        shown, raw = added_field(name, value)
        if name.lower() in self.context.forbid_add and name.lower() != "subject":
            return  # section 6: an attempt that is not permitted is ignored
        self.added += len(raw)
        if self.added > MAX_ADDED_OCTETS:
            raise SieveRuntimeError(f"addheader added more than {MAX_ADDED_OCTETS} octets")
        fields = self.editable()
        if "last" in tags:  # after the last field: before the empty line and what is no field after it
            at = max((i + 1 for i, (n, _v, _raw) in enumerate(fields) if n is not None), default=0)
            fields.insert(at, (name, shown, raw))
        else:
            fields.insert(0, (name, shown, raw))
        self.refields()

    def delete_header(self, tags: Tags, name: str, patterns: Sequence[str]) -> None:
        """RFC 5293 section 5: the occurrences of `name` (the :index-th only, counted before the patterns)
        whose value matches a pattern (all of them without patterns); protected fields stay (section 6)."""
        if not FIELD_NAME.fullmatch(name):
            raise SieveRuntimeError(f'the field name "{name[:80]}" is invalid')
        wanted = name.lower()
        if wanted in PROTECTED_FIELDS or (wanted in self.context.forbid_delete and wanted != "subject"):
            return  # section 6: an attempt that is not permitted is ignored
        fields = self.editable()
        positions = [i for i, (n, _v, _raw) in enumerate(fields) if n is not None and n.lower() == wanted]
        index = tags.get("index")
        if isinstance(index, int):
            pick = len(positions) - index if "last" in tags else index - 1
            positions = [positions[pick]] if 0 <= pick < len(positions) else []
        if patterns:
            matcher = Matcher(tags, deadline=self.deadline)
            try:
                positions = [i for i in positions if matcher.any([decode_words(fields[i][1])], patterns)]
            except RegexTimeout as exc:
                raise SieveRuntimeError(str(exc)) from None
        for i in reversed(positions):
            del fields[i]
        self.refields()

    # -- strings ----------------------------------------------------------------------------------------

    def expand(self, text: str) -> str:
        """`text` with its variable references replaced, once: values are not read again (RFC 5229 3)."""
        if not self.expanding or "${" not in text:
            return text

        def one(match: re.Match[str]) -> str:
            name = match.group(1)  # RFC 5229 section 3: no white space inside a reference
            if name.isascii() and name.isdigit():
                index = int(name) if len(name) <= 9 else len(self.matched)
                return self.matched[index] if index < len(self.matched) else ""
            if _IDENTIFIER.fullmatch(name):
                return self.get_variable(name)
            if name.lower().startswith("global.") and _IDENTIFIER.fullmatch(name[7:]):
                return self.shared.get(name[7:].lower(), "")
            return match.group(0)

        return _REFERENCE.sub(one, text)

    def strs(self, value: tuple[str, ...] | int | None) -> tuple[str, ...]:
        found = strings(value)
        return tuple(map(self.expand, found)) if self.expanding else found

    def str1(self, value: tuple[str, ...] | int | None) -> str:
        found = self.strs(value)
        return found[0] if found else ""

    def matcher(self, tags: Tags) -> Matcher:
        return Matcher(tags, capture=self.expanding, deadline=self.deadline)

    def in_time(self) -> None:
        if time.monotonic() >= self.deadline:
            raise SieveRuntimeError(f"the script ran longer than {self.context.time_limit:g} s")

    def matches(self, tags: Tags, values: Sequence[str], keys: Sequence[str]) -> bool:
        matcher = self.matcher(tags)
        try:
            held = matcher.any(values, keys)
        except RegexTimeout as exc:
            raise SieveRuntimeError(str(exc)) from None
        if held and matcher.captures is not None:
            self.matched = matcher.captures
        return held

    # -- actions ----------------------------------------------------------------------------------------

    def act(self, action: Action, cancels_keep: bool) -> None:
        if action not in self.outcome.actions:  # section 2.10.3: the same action twice is one
            if len(self.outcome.actions) >= MAX_ACTIONS:
                raise SieveRuntimeError(f"more than {MAX_ACTIONS} actions")
            if isinstance(action, Redirect):
                self.redirects += 1
                if self.redirects > MAX_REDIRECTS:
                    raise SieveRuntimeError(f"more than {MAX_REDIRECTS} redirects")
            self.outcome.actions.append(action)
        if cancels_keep:
            self.outcome.implicit_keep = False

    # -- tests ------------------------------------------------------------------------------------------

    def header_values(self, tags: Tags, names: Sequence[str]) -> list[str]:
        """The raw values of the fields named, in the order of `names` then of the message; with :index
        (RFC 5260 section 6) only the n-th (from the end with :last) of each name."""
        found: list[str] = []
        index = tags.get("index")
        for name in names:
            values = self.values(name)
            if isinstance(index, int):
                position = len(values) - index if "last" in tags else index - 1
                values = [values[position]] if 0 <= position < len(values) else []
            found += values
        return found

    def test(self, node: Checked) -> bool:
        self.in_time()
        name, tags, args = node.name, node.tags, node.positional
        if self.hooks is not None:
            answer = self.hooks.test(self, node)
            if answer is not None:
                return answer
        if name == "true":
            return True
        if name == "false":
            return False
        if name == "not":
            return not self.test(node.tests[0])
        if name == "allof":
            return all(self.test(t) for t in node.tests)
        if name == "anyof":
            return any(self.test(t) for t in node.tests)
        if name == "size":
            limit = args[0] if isinstance(args[0], int) else 0
            size = self.message.size
            if self.edited is not None:  # RFC 5293 section 7: the tests see the message as edited
                size += sum(len(raw) for _n, _v, raw in self.edited) - len(self.message.head)
            return size > limit if "over" in tags else size < limit
        if name == "exists":
            return all(self.values(header) for header in self.strs(args[0]))
        if name == "header":
            values = [decode_words(v) for v in self.header_values(tags, self.strs(args[0]))]
            return self.matches(tags, values, self.strs(args[1]))
        if name == "address":
            found = [
                address
                for value in self.header_values(tags, self.strs(args[0]))
                for _display, address in addresses([value])
                if address
            ]
            parts = [p for p in (_address_part(tags, a) for a in found) if p is not None]
            return self.matches(tags, parts, self.strs(args[1]))
        if name == "envelope":
            wanted = [p.lower() for p in self.strs(args[0])]
            found = [self.message.envelope_from] if "from" in wanted else []
            found += [self.message.envelope_to] if "to" in wanted else []
            # the null reverse path matches as "" (section 5.4); its address parts are "" too
            parts = [p for p in (_address_part(tags, a) if a else "" for a in found) if p is not None]
            return self.matches(tags, parts, self.strs(args[1]))
        if name == "hasflag":  # RFC 5232 section 4: any flag of the variable matches any of the keys
            variables = self.strs(args[0])
            if variables:
                current = [f for v in variables for f in self.get_variable(v).split()]
            else:
                current = self.flags
            return self.matches(tags, current, self.strs(args[1]))
        if name == "string":  # RFC 5229 section 5; :count counts the strings that are not empty
            sources = self.strs(args[0])
            if "count" in tags:
                sources = tuple(s for s in sources if s)
            return self.matches(tags, sources, self.strs(args[1]))
        if name == "body":
            return self.matches(tags, self.body(tags), self.strs(args[0]))
        if name in ("date", "currentdate"):
            return self.date(name, tags, args)
        if name == "environment":
            value = self.context.environment.get(self.str1(args[0]).lower())
            return value is not None and self.matches(tags, [value], self.strs(args[1]))
        if name == "ihave":
            capabilities = {c.lower() for c in self.strs(args[0])}
            if not capabilities <= SUPPORTED:
                return False
            if "variables" in capabilities:  # RFC 5463 section 4: as if required from here on
                self.expanding = True
            return True
        if name == "mailboxexists":
            return all(self.mailbox_exists(m) for m in self.strs(args[0]))
        if name == "specialuse_exists":
            attributes = {a.lower() for a in self.strs(args[1])}
            mailbox = self.strs(args[0])
            uses = self.context.special_uses
            if mailbox:
                return self.mailbox_exists(mailbox[0]) and attributes <= uses.get(
                    self.mailbox(mailbox[0]), frozenset()
                )
            return all(any(a in found for found in uses.values()) for a in attributes)
        if name == "mailboxidexists":
            return all(i in self.context.mailbox_ids for i in self.strs(args[0]))
        if name == "duplicate":
            return self.duplicate(tags)
        if name in ("spamtest", "virustest"):  # RFC 5235
            return self.matches(tags, [self.spam_value(name, "percent" in tags)], self.strs(args[0]))
        if name in ("metadata", "servermetadata"):  # RFC 5490 sections 4.1 and 4.3
            box = self.str1(args[0]) if name == "metadata" else ""
            entry = self.metadata(box, self.str1(args[-2]))
            return entry is not None and self.matches(tags, [entry], self.strs(args[-1]))
        if name in ("metadataexists", "servermetadataexists"):  # RFC 5490 sections 4.2 and 4.4
            box = self.str1(args[0]) if name == "metadataexists" else ""
            return all(self.metadata(box, entry) is not None for entry in self.strs(args[-1]))
        if name == "valid_notify_method":  # RFC 5435 section 5: every URI one we can notify by
            return all(_notify_method_valid(uri) for uri in self.strs(args[0]))
        if name == "notify_method_capability":  # RFC 5435 section 6: only "online", "maybe" for mailto
            uri, capability = self.str1(args[0]), self.str1(args[1]).lower()
            if not _notify_method_valid(uri) or capability != "online":
                return False
            return self.matches(tags, ["maybe"], self.strs(args[2]))
        raise SieveRuntimeError(f'the test "{name}" cannot be run')

    def spam_value(self, name: str, percent: bool) -> str:
        """RFC 5235 sections 3.1-3.3: "0" for a message not scanned; else spamtest's 1 (not spam) to 10
        (spam), its :percent 0 to 100, virustest's 1 (clean) to 5 (infected). The spam score is taken in
        proportion to the score from which a message counts as spam (at or above it: 10, or 100)."""
        if name == "virustest":
            virus = self.context.virus
            return "0" if virus is None else str(min(max(virus, 1), 5))
        spam = self.context.spam
        if spam is None:
            return "0"
        score, threshold = spam
        if not math.isfinite(threshold) or math.isnan(score):
            return "0"  # no usable score: as not tested
        if threshold > 0:
            ratio = min(max(score / threshold, 0.0), 1.0)
        else:  # a threshold of 0: every positive score is spam
            ratio = 1.0 if score > 0 else 0.0
        if percent:
            return str(int(ratio * 100 + 0.5))
        return str(1 + int(ratio * 9 + 1e-9))

    def metadata(self, mailbox: str, entry: str) -> str | None:
        """RFC 5490: an entry of the account's metadata (RFC 5464), mailbox "" for the server's; None for a
        mailbox or entry that does not exist or is not one."""
        lookup = self.context.metadata
        if lookup is None or not entry.lower().startswith(("/private/", "/shared/")):
            return None
        if mailbox and not self.mailbox_exists(mailbox):
            return None
        return lookup(self.mailbox(mailbox) if mailbox else "", entry)

    def duplicate(self, tags: Tags) -> bool:
        """RFC 7352: whether this message's id (or :header's first value, or :uniqueid) was seen with the
        handle before; recorded for the next deliveries (a message without one is never a duplicate)."""
        if "uniqueid" in tags:
            value = self.str1(tags["uniqueid"])
        else:
            values = self.values(self.str1(tags["header"]) if "header" in tags else "Message-ID")
            value = " ".join(values[0].split()) if values else ""
        if not value:
            return False
        key = hashlib.sha256(f"{self.str1(tags.get('handle'))}\0{value}".encode()).hexdigest()
        seconds = tags.get("seconds")
        period = min(seconds, DUPLICATE_MAX_SECONDS) if isinstance(seconds, int) else DUPLICATE_SECONDS
        if all(key != k for k, _s, _l in self.outcome.duplicates):
            self.outcome.duplicates.append((key, period, "last" in tags))
        seen = self.context.seen
        return seen is not None and seen(key)

    @staticmethod
    def mailbox(name: str) -> str:
        return "INBOX" if name.upper() == "INBOX" else name

    def mailbox_exists(self, name: str) -> bool:
        mailboxes = self.context.mailboxes
        return mailboxes is not None and self.mailbox(name) in mailboxes

    def date(self, name: str, tags: Tags, args: tuple[tuple[str, ...] | int, ...]) -> bool:
        zone_arg = tags.get("zone")
        zone = _zone(self.str1(zone_arg)) if zone_arg is not None else None
        if zone_arg is not None and zone is None:
            return False  # RFC 5260 4.1.1: an invalid zone makes the test false
        if name == "currentdate":
            now = self.context.now or datetime.datetime.now(datetime.UTC)
            dates = [now.astimezone(zone) if zone is not None else now.astimezone()]
            part, keys = self.str1(args[0]), self.strs(args[1])
        else:
            dates = []
            for value in self.header_values(tags, self.strs(args[0])):
                try:
                    when = email.utils.parsedate_to_datetime(value)
                    if when.tzinfo is None:
                        when = when.replace(tzinfo=datetime.UTC)
                    if "originalzone" not in tags:
                        when = when.astimezone(zone) if zone is not None else when.astimezone()
                except (TypeError, ValueError, IndexError, OverflowError):
                    continue  # RFC 5260 4.1: a field that is no valid date (or none we can place) is left out
                dates.append(when)
            part, keys = self.str1(args[1]), self.strs(args[2])
        values = [v for v in (_date_part(d, part) for d in dates) if v is not None]
        return self.matches(tags, values, keys)

    def body(self, tags: Tags) -> list[str]:
        """RFC 5173 section 5: the texts the body test compares."""
        source = self.message.source
        raw = source()[:MAX_BODY_OCTETS] if source is not None else b""
        head_end = raw.find(b"\r\n\r\n")
        body = raw[head_end + 4 :] if head_end >= 0 else b""
        if "raw" in tags:
            return [body.decode("utf-8", "replace")]
        parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
        content = self.strs(tags["content"]) if "content" in tags else None
        found: list[str] = []
        for part in parsed.walk():
            if part.is_multipart():
                continue
            kind = part.get_content_type().lower()
            if content is not None:
                if _content_matches(kind, content):
                    found.append(_part_text(part))
            elif kind.startswith("text/"):
                text = _part_text(part)
                if kind == "text/html":  # section 5.1: text made of other text types as the server sees fit
                    text = " ".join(html.unescape(re.sub(r"<[^>]*>", " ", text)).split())
                found.append(text)
        return found

    # -- commands ---------------------------------------------------------------------------------------

    def commands(self, nodes: tuple[Checked, ...]) -> bool:
        """Run `nodes`; False when a `stop` ended the script."""
        branch_taken = False
        for node in nodes:
            self.in_time()
            name = node.name
            if name == "if":
                branch_taken = self.test(node.tests[0])
                if branch_taken and not self.commands(node.block or ()):
                    return False
                continue
            if name in ("elsif", "else"):
                if branch_taken:
                    continue
                branch_taken = name == "else" or self.test(node.tests[0])
                if branch_taken and not self.commands(node.block or ()):
                    return False
                continue
            if name == "stop":
                return False
            if name == "return":
                raise _Return
            if name == "include":
                if not self.include(node):
                    return False
                continue
            if name == "global":
                self.declared.update(n.lower() for n in self.strs(node.positional[0]))
                continue
            if self.hooks is not None:
                going = self.hooks.command(self, node)
                if going is False:
                    return False
                if going is True:
                    continue
            self.action(node)
        return True

    def get_variable(self, name: str) -> str:
        key = name.lower()
        if key.startswith("global."):
            return self.shared.get(key[7:], "")
        return (self.shared if key in self.declared else self.variables).get(key, "")

    def set_variable(self, name: str, value: str) -> None:
        key = name.lower()
        table = self.variables
        if key.startswith("global."):
            key, table = key[7:], self.shared
        elif key in self.declared:
            table = self.shared
        if key not in table and len(self.variables) + len(self.shared) >= MAX_VARIABLES:
            raise SieveRuntimeError(f"more than {MAX_VARIABLES} variables")
        table[key] = value[:MAX_VARIABLE_SIZE]

    def include(self, node: Checked) -> bool:
        """RFC 6609 section 3.2: run the included script in this run (its actions join the result, its
        variables are its own but for the global ones); False when it ended the whole run (stop)."""
        tags = node.tags
        name, is_global = self.str1(node.positional[0]), "global" in tags
        if not name or len(name) > 512 or "/" in name or not name.isprintable():
            raise SieveRuntimeError(f"{name[:80]!r} is not a script name")
        if "once" in tags and (name, is_global) in self.included:
            return True
        resolve = self.context.include
        program = resolve(name, is_global) if resolve is not None else None
        if program is None:
            if "optional" in tags:
                return True
            raise SieveRuntimeError(f'the included script "{name}" does not exist')
        self.includes += 1
        if self.depth + 1 > MAX_INCLUDE_DEPTH or self.includes > MAX_INCLUDES:
            raise SieveRuntimeError("too many included scripts, or included too deeply (a loop?)")
        self.included.add((name, is_global))
        child = _Run(self.message, self.context, required(program), self.hooks)
        child.depth, child.included, child.includes = self.depth + 1, self.included, self.includes
        child.deadline = self.deadline
        child.shared, child.outcome, child.redirects = self.shared, self.outcome, self.redirects
        child.flags = self.flags
        child.fields, child.edited, child.added = self.fields, self.edited, self.added  # RFC 5293 section 7
        try:
            going = child.commands(program)
        except _Return:
            going = True
        self.includes, self.redirects, self.flags = child.includes, child.redirects, child.flags
        self.fields, self.edited, self.added = child.fields, child.edited, child.added
        return going

    def action(self, node: Checked) -> None:
        name, tags, args = node.name, node.tags, node.positional
        copy = "copy" in tags
        if name == "require":
            return
        if name == "set":  # RFC 5229 section 4: the modifiers by precedence, highest first
            value = self.str1(args[1])
            if "lower" in tags:
                value = value.lower()
            elif "upper" in tags:
                value = value.upper()
            if "lowerfirst" in tags:
                value = value[:1].lower() + value[1:]
            elif "upperfirst" in tags:
                value = value[:1].upper() + value[1:]
            if "quotewildcard" in tags:
                value = re.sub(r"([*?\\])", r"\\\1", value)
            if "encodeurl" in tags:  # RFC 5435 section 7: percent-encoded, unreserved characters as they are
                value = urllib.parse.quote(value, safe="-._~")
            if "length" in tags:
                value = str(len(value))
            self.set_variable(strings(args[0])[0], value)
            return
        if name in ("setflag", "addflag", "removeflag"):
            variable = self.strs(args[0])
            current = flag_list([self.get_variable(variable[0])]) if variable else list(self.flags)
            given = flag_list(self.strs(args[1]))
            if name == "setflag":
                current = given
            elif name == "addflag":
                current = flag_list([*current, *given])
            else:
                gone = {flag.lower() for flag in given}
                current = [flag for flag in current if flag.lower() not in gone]
            if variable:
                self.set_variable(variable[0], " ".join(current))
            else:
                self.flags = current
            return
        if name == "error":  # RFC 5463 section 5
            raise SieveRuntimeError(f"the script ended with an error: {self.str1(args[0])}")
        if name == "addheader":
            self.add_header(tags, self.str1(args[0]), self.str1(args[1]))
            return
        if name == "deleteheader":
            self.delete_header(tags, self.str1(args[0]), self.strs(args[1]))
            return
        flags = tuple(flag_list(self.strs(tags["flags"]))) if "flags" in tags else tuple(self.flags)
        if name == "keep":
            self.act(Keep(flags, self.header()), cancels_keep=True)  # the explicit keep: not twice
        elif name == "discard":
            self.act(Discard(), cancels_keep=True)
        elif name == "fileinto":
            special = self.strs(tags["specialuse"]) if "specialuse" in tags else ()
            mailbox_id = self.strs(tags["mailboxid"]) if "mailboxid" in tags else ()
            target = FileInto(
                self.mailbox(self.str1(args[0])),
                copy,
                flags,
                create="create" in tags,
                special_use=special[0] if special else None,
                mailbox_id=mailbox_id[0] if mailbox_id else None,
                header=self.header(),
            )
            self.act(target, cancels_keep=not copy)
        elif name == "redirect":
            self.act(Redirect(self.str1(args[0]), copy, self.header()), cancels_keep=not copy)
        elif name in ("reject", "ereject"):
            self.act(Reject(self.str1(args[0]), name == "ereject"), cancels_keep=True)
        elif name == "vacation":
            self.act(self.vacation(tags, self.str1(args[0])), cancels_keep=False)
        elif name == "notify":
            method = self.str1(args[0])
            if not _notify_method_valid(method):  # RFC 5435 section 3.1: a runtime error
                raise SieveRuntimeError(f"the notification method {method!r} cannot be used")
            sender = self.strs(tags["from"]) if "from" in tags else ()
            importance = self.strs(tags["importance"]) if "importance" in tags else ()
            text = self.strs(tags["message"]) if "message" in tags else ()
            notify = Notify(
                method,
                sender[0] if sender else None,
                importance[0] if importance else None,
                self.strs(tags.get("options")),
                text[0] if text else None,
                self.fcc(tags),
            )
            self.act(notify, cancels_keep=False)
        else:
            raise SieveRuntimeError(f'the command "{name}" cannot be run')

    def vacation(self, tags: Tags, reason: str) -> Vacation:
        expanded: Tags = {
            key: (self.strs(value) if isinstance(value, tuple) else value) for key, value in tags.items()
        }
        return dataclasses.replace(_vacation(expanded, reason), fcc=self.fcc(tags))

    def fcc(self, tags: Tags) -> FileInto | None:
        """RFC 8580 section 3: where :fcc stores a copy of the message an action sends (with :flags, :create,
        :specialuse, :mailboxid as fileinto takes them; no flags without :flags)."""
        if "fcc" not in tags:
            return None
        special = self.strs(tags["specialuse"]) if "specialuse" in tags else ()
        mailbox_id = self.strs(tags["mailboxid"]) if "mailboxid" in tags else ()
        flags = tuple(flag_list(self.strs(tags["flags"]))) if "flags" in tags else ()
        return FileInto(
            self.mailbox(self.str1(tags["fcc"])),
            flags=flags,
            create="create" in tags,
            special_use=special[0] if special else None,
            mailbox_id=mailbox_id[0] if mailbox_id else None,
        )


def _vacation(tags: Tags, reason: str) -> Vacation:
    """The Vacation of a `vacation` command: its period held to the bounds, and its handle (RFC 5230 4.2:
    without :handle, one made of the reason and the other arguments that change the reply)."""
    subject, from_address = strings(tags.get("subject")), strings(tags.get("from"))
    days, seconds = tags.get("days"), tags.get("seconds")
    if isinstance(seconds, int):
        period = seconds
    else:
        period = max(days, 1) * 86400 if isinstance(days, int) else VACATION_DAYS * 86400
    handle = strings(tags.get("handle"))
    made = hashlib.sha256(
        "\0".join((reason, *subject, "\1", *from_address, "\1", "mime" if "mime" in tags else "")).encode()
    ).hexdigest()[:32]
    return Vacation(
        reason,
        subject[0] if subject else None,
        from_address[0] if from_address else None,
        strings(tags.get("addresses")),
        "mime" in tags,
        handle[0] if handle else made,
        min(max(period, VACATION_MIN_SECONDS), VACATION_MAX_SECONDS),
    )


#: Senders that are programs, not people (RFC 5230 section 4.6, RFC 3834 section 2): no replies to them.
_PROGRAM_SENDERS = re.compile(r"(?i)^(?:mailer-daemon|listserv|majordomo|owner-.*|.*-request|.*-bounces?)$")


def vacation_refusal(message: SieveMessage, vacation: Vacation, own: Sequence[str]) -> str | None:
    """Why no auto-reply goes to this message (None: one may, if none went to this sender with this handle
    within `vacation.seconds`). `own`: the recipient account's addresses, to which `vacation.addresses` add
    (RFC 5230 section 4.5). RFC 3834 section 2 and RFC 5230 sections 4.5-4.6."""
    sender = message.envelope_from
    if not sender:
        return "the reverse path is null"
    mine = {a.lower() for a in (*own, *vacation.addresses)}
    if sender.lower() in mine:
        return "the sender is the recipient"
    if _PROGRAM_SENDERS.match(sender.rpartition("@")[0] or sender):
        return "the sender is a program"
    auto = [v.strip().lower() for v in message.values("Auto-Submitted")]
    if any(v.split(";")[0].strip() != "no" for v in auto):
        return "the message was sent automatically (Auto-Submitted)"
    if any(v.strip().lower() in ("bulk", "list", "junk") for v in message.values("Precedence")):
        return "the message is bulk or list mail (Precedence)"
    if any(message.values(h) for h in ("List-Id", "List-Unsubscribe", "List-Post")):
        return "the message came through a mailing list"
    named = {
        address.lower()
        for h in ("To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc")
        for _display, address in addresses(message.values(h))
    }
    if not named & mine:
        return "none of the recipient's addresses is in To, Cc or Bcc"
    return None


def required(script: tuple[Checked, ...]) -> frozenset[str]:
    """The capabilities the script's require commands name (lower-case)."""
    return frozenset(
        name.lower() for node in script if node.name == "require" for name in strings(node.positional[0])
    )


def run(
    script: tuple[Checked, ...],
    message: SieveMessage,
    context: SieveContext | None = None,
    hooks: Hooks | None = None,
) -> Outcome:
    """The outcome of `script` (checked) for `message` (see the module docstring). SieveRuntimeError when
    it cannot be carried out: the caller keeps the message."""
    running = _Run(message, context or SieveContext(), required(script), hooks)
    try:
        running.commands(script)
    except _Return:  # return in the main script ends it, as stop does
        pass
    outcome = running.outcome
    outcome.flags = tuple(running.flags)
    outcome.header = running.header()
    rejects = [a for a in outcome.actions if isinstance(a, Reject)]
    if rejects and (
        len(rejects) > 1 or any(isinstance(a, (Keep, FileInto, Redirect, Vacation)) for a in outcome.actions)
    ):
        # RFC 5429 2.1: reject cannot go with an action that delivers the message or with vacation, nor with
        # another reject
        raise SieveRuntimeError("reject cannot go with keep, fileinto, redirect, vacation or another reject")
    if sum(isinstance(a, Vacation) for a in outcome.actions) > 1:
        raise SieveRuntimeError("more than one vacation")
    if any(isinstance(a, Keep) for a in outcome.actions):
        outcome.implicit_keep = False  # the explicit keep stands for it: the message is kept once
    return outcome
