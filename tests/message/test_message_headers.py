"""Header semantics: unfolding, encoded words, parameters, field splitting, charsets."""

from __future__ import annotations

import email.utils
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.message import headers, unfold
from postoffice.message.headers import (
    decode_charset,
    decode_words,
    iter_fields,
    lookup_charset,
    parse_params,
    unquote_pairs,
)
from tests.support.bounds import CALL_BOUND, bounded


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a\r\n b", "a b"),
        ("a\r\n\tb", "a\tb"),
        ("a\n b\r c", "a b c"),
        ("a\r\nb", "a\r\nb"),  # not a fold: RFC 5322 2.2.3 removes only CRLF followed by WSP
        ("plain", "plain"),
    ],
)
def test_unfold_removes_line_ends_before_whitespace(value: str, expected: str) -> None:
    assert unfold(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),  # RFC 2047 6.2: whitespace between encoded words is dropped
        ("=?utf-8?q?a?=\r\n =?utf-8?q?b?=", "ab"),
        ("x =?utf-8?q?a?= y", "x a y"),
        ("=?utf-8?q?a_b?=", "a b"),
        ("=?UTF-8?B?4oKs?=", "€"),
        ("=?utf-8?b?4oI=?= =?utf-8?b?rA==?=", "€"),  # a character split across two words
        ("=?iso-8859-1?q?caf=E9?= =?utf-8?q?=C3=A9?=", "caféé"),
        ("=?utf-8*en?q?hi?=", "hi"),  # RFC 2231 language suffix
        ("=?x-nonsense?q?caf=C3=A9?=", "café"),  # unknown charset: UTF-8 if valid
        ("=?x-nonsense?q?caf=E9?=", "café"),  # ... else Latin-1
        ("=?utf-8?q?bad=FFbyte?=", "bad\ufffdbyte"),
        ("=?idna?q?x?=", "x"),
        ("=?utf-8?x?unknown encoding?=", "=?utf-8?x?unknown encoding?="),
        ("=?utf-8?q?unterminated", "=?utf-8?q?unterminated"),
        ("=?utf-7?q?+2D0-?=", "\ufffd"),  # a lone surrogate from UTF-7 is replaced
        ("no encoded words", "no encoded words"),
    ],
)
def test_decode_words(value: str, expected: str) -> None:
    assert decode_words(value) == expected


def test_iter_fields_unfolds_skips_garbage_and_keeps_order() -> None:
    block = b"A: 1\r\n  more\r\ngarbage\r\n continuation of garbage\r\nB : 2\nc:3\r\n\xff: x\r\nD: \xe9\r\n"
    assert list(iter_fields(block)) == [
        ("A", " 1  more", "utf-8"),
        ("B", " 2", "utf-8"),
        ("c", "3", "utf-8"),
        ("D", " \xe9", "latin-1"),
    ]


@given(
    st.lists(
        st.sampled_from(
            [b"From: a@b", b"from :x", b"FROM:", b"Subject: s", b" folded", b"\tmore", b"x", b""]
        ),
        max_size=10,
    ),
    st.sampled_from([b"\r\n", b"\n", b"\r"]),
)
def test_iter_fields_of_some_names_gives_what_the_whole_gives_of_them(lines: list[bytes], end: bytes) -> None:
    block = end.join(lines) + end
    whole = [field for field in iter_fields(block) if field[0].lower() == "from"]
    assert list(iter_fields(block, only=frozenset({b"from"}))) == whole


@pytest.mark.parametrize(
    ("value", "main", "params"),
    [
        ("text/plain", "text/plain", []),
        ("text/plain; charset=utf-8", "text/plain", [("charset", "utf-8")]),
        ('a/b; x="semi;colon"; y="esc\\"aped"', "a/b", [("x", "semi;colon"), ("y", 'esc"aped')]),
        ('a/b; x="unterminated; y=z', "a/b", [("x", "unterminated; y=z")]),
        ("a/b;; ;x=1;", "a/b", [("x", "1")]),
        ("a/b; BARE; X=Token Value", "a/b", [("bare", ""), ("x", "Token Value")]),
        ("a/b; x*=utf-8''%E2%82%AC", "a/b", [("x*", "€")]),  # charset-encoded: name keeps "*"
        ("a/b; x*=x-unknown''%C3%A9", "a/b", [("x*", "é")]),
        ("a/b; x*=utf-8''%FF", "a/b", [("x*", "\ufffd")]),
        (
            "a/b; charset*=us-ascii''utf-8; x*0*=utf-8''a%C3%A9; x*1=b",
            "a/b",
            [("charset", "utf-8"), ("x*", "aéb")],
        ),
        ("a/b; x*0=abc; x*1=def", "a/b", [("x", "abcdef")]),
        ("a/b; x*1=def; x*0=abc", "a/b", [("x", "abcdef")]),
        ("a/b; x*99999999999999999999999999=v", "a/b", [("x", "v")]),
    ],
)
def test_parse_params(value: str, main: str, params: list[tuple[str, str]]) -> None:
    assert parse_params(value) == (main, params)


def test_huge_continuation_numbers_do_not_raise() -> None:
    main, params = parse_params("a/b; x*" + "9" * 5000 + "=v; y=w")
    assert main == "a/b"
    assert ("y", "w") in params


@pytest.mark.parametrize(
    ("charset", "codec"),
    [
        ("utf-8", "utf-8"),
        ("UTF8", "utf-8"),
        ('"iso-8859-1"', "iso8859-1"),
        ("us-ascii", None),
        ("base64", None),  # not a text encoding
        ("hex", None),
        ("idna", None),
        ("undefined", None),
        ("nonsense", None),
        ("", None),
        (None, None),
    ],
)
def test_lookup_charset(charset: str | None, codec: str | None) -> None:
    assert lookup_charset(charset) == codec


def test_decode_charset_falls_back_to_utf8_then_latin1() -> None:
    assert decode_charset("é".encode(), "us-ascii") == "é"
    assert decode_charset(b"\xe9", "us-ascii") == "é"
    assert decode_charset(b"\xe9", "utf-8") == "\ufffd"
    assert decode_charset(b"\x82\xa0", "shift_jis") == "あ"


# -- the fast paths agree with the stdlib and with the straightforward versions (issue 9 item 1) -------------
# as `_ENCODED_WORD` captures it: anything but "?"
_WORD_TEXT = st.text(alphabet="aZ09+/=_ \t\x00é€\n\x0b\u2028-.", max_size=12)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(["utf-8", "iso-8859-1", "x-unknown", ""]), st.sampled_from("qQbB"), _WORD_TEXT)
def test_encoded_word_decoding_agrees_with_the_stdlib(charset: str, encoding: str, text: str) -> None:
    """`_decode_word` does what `email.header.decode_header` does for one word, without its overhead."""
    assert headers._decode_word(charset, encoding, text) == headers._decode_word_stdlib(
        charset, encoding, text
    )


_QUOTED_PAIR = re.compile(r"\\(.)", re.S)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet='ab\\"\uffff\ufffe\U0010ffff\n', max_size=16))
def test_unquote_pairs_agrees_with_the_regular_expression(text: str) -> None:
    assert unquote_pairs(text) == _QUOTED_PAIR.sub(r"\1", text)


def reference_parse_params(text: str) -> tuple[str, list[tuple[str, str]]]:
    """`parse_params` always through `email.utils.decode_params` (the implementation before its fast path)."""
    text = unfold(text)[: headers.MAX_PARAM_VALUE]
    main, _, rest = text.partition(";")
    raw = [(name, '"' + email.utils.quote(value) + '"') for name, value in headers._split_params(rest)]
    if not raw:
        return main, []
    try:
        decoded = email.utils.decode_params([(main, ""), *raw])[1:]
    except Exception:
        decoded = [(name, value) for name, value in raw if "*" not in name]
    params: list[tuple[str, str]] = []
    for name, value in decoded:
        if isinstance(value, tuple):
            charset, _language, text_value = value
            text_value = headers._unquote(text_value)
            marked = name if name in ("charset", "boundary") else name + "*"
            try:
                data = text_value.encode("latin-1")
            except UnicodeEncodeError:
                params.append((marked, headers.clean_text(text_value)))
                continue
            params.append((marked, headers.decode_charset(data, charset)))
        else:
            params.append((name, headers.clean_text(headers._unquote(value))))
    order: dict[str, int] = {}
    for index, (name, _value) in enumerate(raw):
        order.setdefault(name.split("*", 1)[0], index)
    params.sort(key=lambda p: order.get(p[0].removesuffix("*"), len(order)))
    return main, params


_PARAM_PIECES = st.sampled_from(
    ["text/plain", ";", " ", "a", "b", "=", '"', "\\", "x y", "a*", "*0", "*1*", "utf-8''", "%41", "<", ">"]
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(_PARAM_PIECES, max_size=14).map("".join))
def test_parse_params_agrees_with_the_reference(text: str) -> None:
    assert parse_params(text) == reference_parse_params(text)


@settings(max_examples=10, deadline=None)
@given(st.sampled_from(["=?utf-8?q?a?= ", "=?utf-8?b?w6k=?=", "=?x?q?=41=42?=", "=?", "\\\\\\"]))
def test_decode_words_and_unquoting_are_linear(unit: str) -> None:
    value = unit * (1_000_000 // len(unit))
    bounded(CALL_BOUND, decode_words, value)
    bounded(CALL_BOUND, unquote_pairs, value)
