"""IMAP data encoding (postoffice.imap.wire): quoted strings, literals, atoms, lists, INTERNALDATE."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st

from postoffice.imap.wire import (
    MAX_QUOTED,
    NIL,
    astring,
    date_time,
    fmt_list,
    literal,
    nil_or,
    nstring,
    number,
    quoted,
    string,
)
from tests.imap.test_imap_fetch_sexp import read_sexp


def test_quoted_escapes_quote_and_backslash() -> None:
    assert quoted('say "hi" \\o/') == b'"say \\"hi\\" \\\\o/"'
    assert quoted("") == b'""'
    assert quoted(b"bytes") == b'"bytes"'


def test_quoted_falls_back_to_a_literal_for_line_ends_and_8bit() -> None:
    assert quoted("a\r\nb") == b"{4}\r\na\r\nb"
    assert quoted("a\nb") == b"{3}\r\na\nb"
    assert quoted("Köln") == b"{5}\r\nK\xc3\xb6ln"
    assert quoted("Köln", utf8=True) == b'"K\xc3\xb6ln"'
    # 8-bit that is not UTF-8 is never quoted, even for a UTF-8 client.
    assert quoted(b"K\xf6ln", utf8=True) == b"{4}\r\nK\xf6ln"


def test_string_drops_nul_and_sends_long_values_as_literals() -> None:
    assert string("a\x00b", utf8=False) == b'"ab"'
    assert string("x" * MAX_QUOTED, utf8=False) == b'"' + b"x" * MAX_QUOTED + b'"'
    assert string("x" * (MAX_QUOTED + 1), utf8=False) == b"{%d}\r\n" % (MAX_QUOTED + 1) + b"x" * (
        MAX_QUOTED + 1
    )


def test_literal_and_literal8() -> None:
    assert literal(b"abc") == b"{3}\r\nabc"
    assert literal(b"") == b"{0}\r\n"
    # NUL cannot be sent in a plain literal (CHAR8): replaced, length kept; literal8 carries it.
    assert literal(b"a\x00b") == b"{3}\r\na\x80b"
    assert literal(b"a\x00b", binary=True) == b"~{3}\r\na\x00b"


def test_nstring_astring_number_lists() -> None:
    assert nstring(None) == NIL
    assert nstring("x") == b'"x"'
    assert astring("INBOX") == b"INBOX"
    assert astring("Content-Type") == b"Content-Type"
    assert astring("a]b") == b"a]b"  # resp-specials are ASTRING-CHARs
    assert astring("a b") == b'"a b"'
    assert astring("") == b'""'
    assert astring("a{b") == b'"a{b"'
    assert number(42) == b"42"
    assert number(-1) == b"0"
    assert fmt_list([b"A", b"B"]) == b"(A B)"
    assert fmt_list([b"(A)", b"(B)"], b"") == b"((A)(B))"
    assert fmt_list([]) == b"()"
    assert nil_or(None, number) == NIL
    assert nil_or(7, number) == b"7"


def test_date_time_pads_the_day_with_a_space_and_keeps_the_zone() -> None:
    zone = datetime.timezone(datetime.timedelta(hours=-7, minutes=-30))
    assert (
        date_time(datetime.datetime(2003, 7, 1, 10, 52, 37, tzinfo=zone)) == b'" 1-Jul-2003 10:52:37 -0730"'
    )
    assert date_time(datetime.datetime(2024, 12, 25, 0, 0, 5)) == b'"25-Dec-2024 00:00:05 +0000"'
    assert date_time(0.0) == b'" 1-Jan-1970 00:00:00 +0000"'
    assert date_time(1_700_000_000.9) == b'"14-Nov-2023 22:13:20 +0000"'


@given(st.one_of(st.text(), st.binary()), st.booleans())
def test_every_string_reads_back_as_itself(value: str | bytes, utf8: bool) -> None:
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    for encoded, expected in [
        (quoted(value, utf8=utf8), data.replace(b"\x00", b"\x80")),
        (string(value, utf8=utf8), data.replace(b"\x00", b"")),
        (astring(value, utf8=utf8), data.replace(b"\x00", b"")),
    ]:
        if encoded == expected and expected:  # an atom
            continue
        assert read_sexp(encoded) == expected
        if not utf8 and encoded.startswith(b'"'):
            assert encoded.isascii()
