"""Search criteria: the backend-neutral tree that `MailStore.search` answers (IMAP SEARCH, RFC 9051 6.4.4).

The IMAP layer (`postoffice.imap.search.to_criteria`) translates the parser's search keys into this tree; a
backend compiles it to its own query language (SQLite: `postoffice.store.search`). Protocol code never sees
SQL, and a backend never sees IMAP syntax.

Semantics every backend must keep (the oracle test in tests/store/test_store_search.py checks them):
- `All()` matches every message; `And(())` too. `Not`, `Or` and `And` are exact boolean logic: a criterion
  is never "unknown" (a message without a Date header simply does not match any `Date("sent", ...)`, so it
  does match `Not(Date("sent", ...))`).
- `UidIn(ranges)`: the UID lies in one of the inclusive (low, high) ranges.
- `HasFlag(flag, present)`: system flags (\\Seen \\Answered \\Flagged \\Deleted \\Draft) compare
  case-insensitively, as the store stores them; keywords compare exactly, as `MailStore.store_flags` does
  (so KEYWORD matches what STORE set). Other backslash flags are never stored, so never present. \\Recent
  is session state: the IMAP layer turns it into `UidIn` and the store refuses it (ValueError).
- `Date(field, op, date)`: by calendar date, "disregarding time and timezone" (RFC 9051 6.4.4).
  "internal": the calendar date of the internal date in UTC (the store keeps a UTC POSIX timestamp and
  INTERNALDATE is rendered in +0000). "sent": the calendar date of the Date header in the header's own zone
  (`ParsedMessage.sent_date`); a message without a valid Date header matches no "sent" date.
  before: date < d; on: date == d; since: date >= d.
- `Size(op, n)`: RFC822.SIZE > n ("larger") or < n ("smaller").
- `Text(field, needle)`: case-insensitive substring match after `fold` of both sides. Fields: "headers" is
  the decoded top-level header (`ParsedMessage.search_headers`: "Name: value" lines); "body" the decoded
  text of the text/* parts (`search_text`, complete even when the parser cut it); "text" is headers or
  body; ("header", name) matches when some field called `name` (ASCII case-insensitive) of the top-level
  header has a decoded value containing the needle; with an empty needle, when the field is present
  (RFC 9051 6.4.4 HEADER). For the address fields (`ADDRESS_FIELDS`: FROM, TO, CC, BCC and Sender,
  Reply-To) the value also matches when its addresses without comments and folding contain the needle
  (`postoffice.message.addresses.address_text`): FROM user@example.org finds
  "From: <user (comment)@ (comment) example.org>". `header_value_matches` is this rule for one field.
  An empty needle matches every message for the other fields.
  A U+0000 in message text is searched as U+FFFD (no IMAP string can contain NUL).
- `Address(fields, address)`: one of the address lists `fields` ("from", "to", "cc", "bcc") of the message's
  ENVELOPE (as the parser made it: group markers left out) holds exactly `address`, both sides compared as
  `postoffice.directory.address.normalize_address` gives them (case-insensitive, IDNA domain). Not an IMAP
  key: the webmail's `from:` and `to:` with a whole address, answered from an index of addresses.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from postoffice.message.addresses import address_text

__all__ = [
    "ADDRESS_FIELDS",
    "ADDRESS_SEPARATORS",
    "ENVELOPE_ADDRESS_FIELDS",
    "Address",
    "All",
    "And",
    "Arrived",
    "ContentIs",
    "Criteria",
    "Date",
    "HasFlag",
    "ModSeq",
    "Not",
    "Or",
    "Size",
    "Text",
    "ThreadIs",
    "UidIn",
    "fold",
    "header_value_matches",
    "needle_pieces",
]

DateField = Literal["internal", "sent", "saved"]
DateOp = Literal["before", "on", "since"]
SizeOp = Literal["larger", "smaller"]
TextField: TypeAlias = Literal["headers", "body", "text"] | tuple[str, str]


@dataclass(frozen=True)
class All:
    """Every message."""


@dataclass(frozen=True)
class UidIn:
    """UID within one of the inclusive (low, high) ranges."""

    ranges: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        ranges = tuple((int(low), int(high)) for low, high in self.ranges)
        if any(low > high for low, high in ranges):
            raise ValueError(f"UID range with low > high: {ranges}")
        object.__setattr__(self, "ranges", ranges)

    @classmethod
    def of(cls, uids: Iterable[int]) -> UidIn:
        """The given UIDs, joined into ranges."""
        ranges: list[tuple[int, int]] = []
        for uid in sorted(set(uids)):
            if ranges and uid == ranges[-1][1] + 1:
                ranges[-1] = (ranges[-1][0], uid)
            else:
                ranges.append((uid, uid))
        return cls(tuple(ranges))


@dataclass(frozen=True)
class HasFlag:
    """A system flag or keyword is set (present=True) or not set (present=False)."""

    flag: str
    present: bool = True


@dataclass(frozen=True)
class Date:
    field: DateField
    op: DateOp
    date: datetime.date

    def __post_init__(self) -> None:
        if self.field not in ("internal", "sent", "saved") or self.op not in ("before", "on", "since"):
            raise ValueError(f"bad date criterion {self.field!r} {self.op!r}")


@dataclass(frozen=True)
class Size:
    op: SizeOp
    n: int

    def __post_init__(self) -> None:
        if self.op not in ("larger", "smaller"):
            raise ValueError(f"bad size criterion {self.op!r}")


@dataclass(frozen=True)
class ModSeq:
    """The message's MODSEQ is at least `n` (RFC 7162 section 3.1.5: SEARCH MODSEQ)."""

    n: int


@dataclass(frozen=True)
class Arrived:
    """The internal date is before (`op` "before") or at or after ("since") the instant `when` (a POSIX
    time): IMAP's OLDER and YOUNGER (RFC 5032), which count seconds, not days."""

    op: str
    when: float

    def __post_init__(self) -> None:
        if self.op not in ("before", "since"):
            raise ValueError(f"bad arrival criterion {self.op!r}")


@dataclass(frozen=True)
class ContentIs:
    """The message's content is `content_id` (IMAP's SEARCH EMAILID, RFC 8474: copies share it)."""

    content_id: int


@dataclass(frozen=True)
class ThreadIs:
    """The message is in the conversation `thread_id` (SEARCH THREADID, RFC 8474)."""

    thread_id: int


@dataclass(frozen=True)
class Text:
    field: TextField
    needle: str

    def __post_init__(self) -> None:
        if isinstance(self.field, tuple):
            if len(self.field) != 2 or self.field[0] != "header" or not self.field[1]:
                raise ValueError(f"bad text field {self.field!r}")
        elif self.field not in ("headers", "body", "text"):
            raise ValueError(f"bad text field {self.field!r}")
        if "\x00" in self.needle:
            raise ValueError("a search string cannot contain NUL")


#: The address lists an `Address` criterion may name, and their index in an IMAP ENVELOPE (RFC 9051 7.5.2).
ENVELOPE_ADDRESS_FIELDS = {"from": 2, "to": 5, "cc": 6, "bcc": 7}


@dataclass(frozen=True)
class Address:
    """An exact address in some of the message's address fields (module notes)."""

    fields: tuple[str, ...]
    address: str

    def __post_init__(self) -> None:
        fields = tuple(self.fields)
        if not fields or any(f not in ENVELOPE_ADDRESS_FIELDS for f in fields):
            raise ValueError(f"bad address fields {fields!r}")
        if "@" not in self.address or "\x00" in self.address:
            raise ValueError("not an address")
        object.__setattr__(self, "fields", fields)


@dataclass(frozen=True)
class Not:
    criterion: Criteria


@dataclass(frozen=True)
class Or:
    left: Criteria
    right: Criteria


@dataclass(frozen=True)
class And:
    """All terms match (no terms: every message). A list is accepted and kept as a tuple."""

    terms: tuple[Criteria, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", tuple(self.terms))


Criteria: TypeAlias = (
    All
    | UidIn
    | HasFlag
    | Date
    | Arrived
    | Size
    | ModSeq
    | ContentIs
    | ThreadIs
    | Text
    | Address
    | Not
    | Or
    | And
)

#: Header fields (lowercased names) whose values are also searched as addresses (RFC 5322 3.6.2, 3.6.3).
ADDRESS_FIELDS = frozenset({"from", "sender", "reply-to", "to", "cc", "bcc"})


#: Where `address_text` may differ from the text it was made from (comments and CFWS removed around them).
ADDRESS_SEPARATORS = re.compile(r"[ @.]+")


def needle_pieces(name: str, folded_needle: str) -> list[str]:
    """Substrings that the folded value of every field `name` matching `folded_needle` contains: the needle
    itself, or for an address field its pieces between spaces, "@" and "." (`address_text` keeps the text
    between those as it was written, so a match in the address text has them in the value too)."""
    if name.lower() in ADDRESS_FIELDS:
        return [piece for piece in ADDRESS_SEPARATORS.split(folded_needle) if piece]
    return [folded_needle]


def header_value_matches(name: str, value: str, folded_needle: str) -> bool:
    """Whether a field `name` with the decoded `value` matches a header search for `folded_needle` (already
    `fold`ed): the value contains it, or, for an address field, its `address_text` does."""
    folded = fold(value)
    if folded_needle in folded:
        return True
    if name.lower() not in ADDRESS_FIELDS:
        return False
    if not all(piece in folded for piece in needle_pieces(name, folded_needle)):
        return False  # ruled out without tokenizing the value
    return folded_needle in fold(address_text(value))


# -- case folding ------------------------------------------------------------------------------------------
#: Cased characters end below this code point (Unicode 14/15: Adlam U+1E900..U+1E943).
_CASED_LIMIT = 0x1E944


@functools.cache
def _fold_table() -> dict[int, str]:
    """Per code point: the simple case folding (one code point to one code point).

    `str.casefold` where it gives one code point, else `str.lower` where that does, else the code point
    itself. So "ß" stays "ß" (full folding would make it "ss") and "ẞ" becomes "ß"; "Σ" and "ς" both become
    "σ", whatever the context (`str.lower` would look at the word end). A 1:1 mapping keeps positions, which
    is what lets the SQLite backend turn a needle into a LIKE pattern of the same length."""
    table: dict[int, str] = {0: "\ufffd"}
    table.update({cp: chr(cp + 32) for cp in range(ord("A"), ord("Z") + 1)})
    for cp in range(0x80, _CASED_LIMIT):
        ch = chr(cp)
        folded = ch.casefold()
        if len(folded) != 1:
            folded = ch.lower()
            if len(folded) != 1:
                folded = ch
        if folded != ch:
            table[cp] = folded
    return table


def fold(text: str) -> str:
    """The case folding of search: ASCII lower case plus Unicode simple case folding, U+0000 -> U+FFFD."""
    if text.isascii() and "\x00" not in text:
        return text.lower()
    return text.translate(_fold_table())


@functools.cache
def ascii_with_non_ascii_variants() -> frozenset[str]:
    """ASCII characters that some non-ASCII character folds to (K KELVIN SIGN -> "k", long s -> "s"), in
    both cases: a match of those cannot be decided by an ASCII-only case-insensitive comparison."""
    out: set[str] = set()
    for cp, folded in _fold_table().items():
        if cp >= 0x80 and folded.isascii():
            out.update({folded, folded.upper()})
    return frozenset(out)
