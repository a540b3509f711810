"""IMAP data encoding: the atoms, strings, literals, lists and dates of server responses, as bytes.

Implements the response-side formal syntax of RFC 9051 section 9 (and RFC 3501 section 9, IMAP4rev1):
`quoted`, `literal`, `literal8` (RFC 3516 / RFC 9051 4.3), `string`, `nstring`, `astring`, `number`, `nil`,
and `date-time` (INTERNALDATE).

Implementation notes
- Every function returns bytes ready to be written to the connection; nothing here knows about sockets.
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
from collections.abc import Callable, Iterable
from typing import TypeVar

_T = TypeVar("_T")

#: The NIL atom.
NIL = b"NIL"
#: Values longer than this many bytes are sent as literals even when they could be quoted, so response
#: lines stay short for clients with line-length limits (RFC 9051 leaves the choice to the server).
MAX_QUOTED = 1024

# RFC 9051 9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials.
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x20)) | {0x7F}
# ASTRING-CHAR = ATOM-CHAR / resp-specials: "]" is allowed in an astring's atom form.
_ASTRING_SPECIALS = _ATOM_SPECIALS - {ord("]")}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _to_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


def _quotable(data: bytes, utf8: bool) -> bool:
    if b"\r" in data or b"\n" in data or b"\x00" in data:
        return False
    if data.isascii():
        return True
    if not utf8:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _quote(data: bytes) -> bytes:
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(data: bytes, *, binary: bool = False) -> bytes:
    """A synchronizing literal `{n}\\r\\n` + data, or a literal8 `~{n}\\r\\n` + data when `binary`.

    A plain literal cannot carry NUL (RFC 9051 4.3, CHAR8 is %x01-ff): each NUL becomes 0x80, same length."""
    if not binary and b"\x00" in data:
        data = data.replace(b"\x00", b"\x80")
    return b"%s{%d}\r\n%s" % (b"~" if binary else b"", len(data), data)


def quoted(value: str | bytes, *, utf8: bool = False) -> bytes:
    """`value` as a quoted string when the grammar allows (see the module notes), else as a literal."""
    data = _to_bytes(value)
    if _quotable(data, utf8):
        return _quote(data)
    return literal(data)


def string(value: str | bytes, *, utf8: bool) -> bytes:
    """An IMAP string for a header-derived value: quoted when possible and short, else a literal.

    NUL characters are dropped (they are representable neither quoted nor in a literal). `utf8`: the client
    accepts UTF-8 in quoted strings (IMAP4rev2 or UTF8=ACCEPT); without it 8-bit values go as literals."""
    data = _to_bytes(value)
    if b"\x00" in data:
        data = data.replace(b"\x00", b"")
    if len(data) <= MAX_QUOTED and _quotable(data, utf8):
        return _quote(data)
    return literal(data)


def nstring(value: str | bytes | None, *, utf8: bool = False) -> bytes:
    """NIL for None, else `string(value)`."""
    return NIL if value is None else string(value, utf8=utf8)


def astring(value: str | bytes, *, utf8: bool = False) -> bytes:
    """An atom when every byte is an ASTRING-CHAR (and the value is not empty), else `string(value)`."""
    data = _to_bytes(value)
    if data and data.isascii() and not any(b in _ASTRING_SPECIALS for b in data):
        return data
    return string(data, utf8=utf8)


def number(value: int) -> bytes:
    """An IMAP number (never negative: clamped to 0)."""
    return b"%d" % max(int(value), 0)


def fmt_list(items: Iterable[bytes], sep: bytes = b" ") -> bytes:
    """A parenthesized list of already encoded items: `(a b c)`; `sep=b""` gives `(ab)` (RFC 9051 `1*body`,
    `1*address`)."""
    return b"(" + sep.join(items) + b")"


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
