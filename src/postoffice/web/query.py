"""The webmail's search box: `words anywhere`, `from:`, `to:`, `subject:`, `has:attachment`, `is:unread`,
`is:read`, `is:flagged`, `before:` / `after:` dates (YYYY-MM-DD), `in:all`; "quoted phrases"; `-` before a
term negates it. `from:` and `to:` with a whole address find exactly that address (Gmail's rule; the store's
index of addresses), with anything else a part of the field's text (a name, a domain). Parsed into the
store's search criteria, answered by the store's full-text index.

A query is at most MAX_QUERY characters and MAX_TERMS terms; anything unreadable is taken as words, never an
error: a search box does not say "syntax error".
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

from postoffice.directory.address import AddressError, parse_address
from postoffice.store import Address, And, Criteria, Date, HasFlag, Not, Or, Text

MAX_QUERY = 500
MAX_TERMS = 20

_TOKEN = re.compile(r'(-?)(?:(\w+):)?(?:"([^"]*)"?|(\S+))')


@dataclass
class Query:
    criteria: Criteria
    all_folders: bool = False
    has_attachment: bool | None = None  # None: either
    terms: list[str] = field(default_factory=list)  # for showing what was searched


def _date(text: str) -> datetime.date | None:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        return None


def _whole_address(value: str) -> bool:
    """Whether a from:/to: value is a whole address (local@domain.tld), searched as exactly that address."""
    try:
        address = parse_address(value.strip("<>"))
    except AddressError:
        return False
    return "." in address.rsplit("@", 1)[1]


def parse_query(text: str) -> Query:
    """The criteria of a search box's text (module notes)."""
    text = text.replace("\x00", " ")[:MAX_QUERY]
    terms: list[Criteria] = []
    query = Query(And(()))
    for match in _TOKEN.finditer(text):
        if len(terms) >= MAX_TERMS:
            break
        negate, key = match.group(1) == "-", (match.group(2) or "").lower()
        quoted, bare = match.group(3), match.group(4)
        value = quoted if quoted is not None else (bare or "")
        criterion: Criteria | None = None
        if key in ("from", "to", "cc") and _whole_address(value):
            # exactly this address, from the store's index of addresses (not a substring of the field)
            criterion = Address(("to", "cc") if key == "to" else (key,), value.strip("<>"))
        elif key in ("from", "subject", "to", "cc") and value:
            if key == "to":
                criterion = Or(Text(("header", "to"), value), Text(("header", "cc"), value))
            else:
                criterion = Text(("header", key), value)
        elif key == "is" and value.lower() in ("unread", "read", "flagged", "starred"):
            word = value.lower()
            if word in ("unread", "read"):
                criterion = HasFlag("\\Seen", word == "read")
            else:
                criterion = HasFlag("\\Flagged", True)
        elif key == "has" and value.lower() in ("attachment", "attachments"):
            query.has_attachment = not negate
            query.terms.append(match.group(0))
            continue
        elif key == "in" and value.lower() in ("all", "anywhere"):
            query.all_folders = True
            continue
        elif key in ("before", "after") and _date(value) is not None:
            day = _date(value)
            if day is not None:
                criterion = Date("internal", "before" if key == "before" else "since", day)
        else:
            word = match.group(0).lstrip("-") if key else value
            if word.strip():
                criterion = Text("text", word)
        if criterion is None:
            continue
        query.terms.append(match.group(0))
        terms.append(Not(criterion) if negate else criterion)
    query.criteria = And(tuple(terms))
    return query
