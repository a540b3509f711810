"""IMAP data encoding: the atoms, strings, literals, lists and dates of server responses, as bytes.

Implements the response-side formal syntax of RFC 9051 section 9 (and RFC 3501 section 9, IMAP4rev1):
`quoted`, `literal`, `literal8` (RFC 3516 / RFC 9051 4.3), `string`, `nstring`, `astring`, `number`, `nil`,
and `date-time` (INTERNALDATE).

Implementation notes
- Every function returns bytes ready to be written to the connection; nothing here knows about sockets.
- Strings, literals, lists and numbers (the two rules below) are defined in `postoffice.message.imap_forms`,
  because the ENVELOPE and BODYSTRUCTURE forms the store keeps are written in them too, and re-exported here.
- Quoted or literal (RFC 9051 4.3): a value goes out as a quoted string when the grammar allows it: no CR,
  LF or NUL (TEXT-CHAR excludes CR and LF, CHAR excludes NUL), `"` and `\\` escaped, and 8-bit bytes only
  when `utf8` is set and the bytes are valid UTF-8 (IMAP4rev2 / UTF8=ACCEPT, RFC 9051 4.3 and RFC 6855 3:
  QUOTED-CHAR includes UTF8-2/3/4). Otherwise, and for values longer than `MAX_QUOTED` bytes, it goes out as
  a synchronizing literal `{n}\\r\\n` + bytes, which may carry any octet but NUL (CHAR8).
- NUL never goes into a quoted string or a plain literal: `string` drops NUL characters from header-derived
  values (they cannot be represented and carry no meaning); `literal` replaces each NUL of section data by
  0x80, keeping the octet count (as Dovecot does), unless it is a literal8 (`binary=True`, RFC 3516 4.3).
- INTERNALDATE (`date_time`): `"dd-Mmm-yyyy hh:mm:ss +zzzz"` with the day padded by a space (date-day-fixed)
  and English month names whatever the locale.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TypeVar

# The string syntax is shared with the ENVELOPE and BODYSTRUCTURE forms that the store keeps, so it lives
# beside them in `postoffice.message.imap_forms` (docs/decisions/0036); responses use it from here.
from postoffice.message.imap_forms import (
    MAX_QUOTED,
    NIL,
    astring,
    fmt_list,
    literal,
    nstring,
    number,
    quoted,
    string,
)

__all__ = [
    "MAX_QUOTED",
    "NIL",
    "astring",
    "date_time",
    "fmt_list",
    "literal",
    "nil_or",
    "nstring",
    "number",
    "quoted",
    "string",
]

_T = TypeVar("_T")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def nil_or(value: _T | None, render: Callable[[_T], bytes]) -> bytes:
    """NIL for None, else `render(value)`."""
    return NIL if value is None else render(value)


def date_time(when: float | datetime.datetime) -> bytes:
    """RFC 9051 date-time (INTERNALDATE), quoted: `"dd-Mmm-yyyy hh:mm:ss +zzzz"`.

    A POSIX timestamp is rendered in UTC; a naive datetime is taken as UTC; an aware one keeps its zone."""
    if isinstance(when, datetime.datetime):
        dt = when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)
    else:
        dt = datetime.datetime.fromtimestamp(when, datetime.UTC)
    offset = dt.utcoffset() or datetime.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    text = (
        f"{dt.day:2d}-{_MONTHS[dt.month - 1]}-{dt.year:04d} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}"
    )
    return b'"' + text.encode("ascii") + b'"'
