"""Hand-written hard cases for parse_message, each with its exact expected envelope, structure and offsets."""

from __future__ import annotations

import datetime
import io
import logging

import pytest

from postoffice.message import MAX_DEPTH, MAX_PARTS, BodyPart, ParsedMessage, parse_message
from postoffice.message import parser as parser_module
from tests.message.message_invariants import check_invariants, count_lines, parse_bytes, walk


def parse(raw: bytes) -> ParsedMessage:
    parsed = parse_bytes(raw)
    check_invariants(raw, parsed)
    return parsed


def header_of(raw: bytes, part: BodyPart) -> bytes:
    return raw[part.header_start : part.body_start]


def body_of(raw: bytes, part: BodyPart) -> bytes:
    return raw[part.body_start : part.body_end]


def types(parsed: ParsedMessage) -> list[str]:
    return [f"{p.type}/{p.subtype}" for p in walk(parsed.body)]


# -- envelope ------------------------------------------------------------------------------------------------
ENVELOPE_MESSAGE = (
    b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
    b"From: =?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?= <keld@dkuug.dk>\r\n"
    b"Subject: =?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n"
    b" =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=\r\n"
    b'To: "Doe, John" <john@example.com>, Mary Smith <@relay1.example,@relay2.example:mary@example.net>,\r\n'
    b"\tundisclosed-recipients:;\r\n"
    b'Cc: Friends: alice@example.org, "Bob \\"The Builder\\"" <bob@example.org>;,\r\n'
    b" carol@example.org (Carol C.)\r\n"
    b"Bcc:\r\n"
    b"In-Reply-To: <parent@example.com>\r\n"
    b"Message-ID:   <1234@local.machine.example>  \r\n"
    b"\r\n"
    b"body\r\n"
)


def test_envelope_keeps_raw_values_and_parses_addresses_groups_and_routes() -> None:
    parsed = parse(ENVELOPE_MESSAGE)
    keld = [["=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=", None, "keld", "dkuug.dk"]]
    assert parsed.envelope == [
        "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
        "=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?="
        " =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
        keld,
        keld,
        keld,
        [
            ["Doe, John", None, "john", "example.com"],
            ["Mary Smith", "@relay1.example,@relay2.example", "mary", "example.net"],
            [None, None, "undisclosed-recipients", None],
            [None, None, None, None],
        ],
        [
            [None, None, "Friends", None],
            [None, None, "alice", "example.org"],
            ['Bob "The Builder"', None, "bob", "example.org"],
            [None, None, None, None],
            ["Carol C.", None, "carol", "example.org"],
        ],
        None,  # an empty Bcc: holds no address
        "<parent@example.com>",
        "<1234@local.machine.example>",
    ]
    assert parsed.message_id == "<1234@local.machine.example>"


def test_encoded_words_are_decoded_for_subject_from_and_search_headers() -> None:
    parsed = parse(ENVELOPE_MESSAGE)
    assert parsed.subject == "If you can read this you understand the example."
    assert parsed.from_display == "Keld Jørn Simonsen <keld@dkuug.dk>"
    assert "Subject: If you can read this you understand the example.\n" in parsed.search_headers
    assert "From: Keld Jørn Simonsen <keld@dkuug.dk>\n" in parsed.search_headers
    assert "Bcc: \n" in parsed.search_headers
    assert parsed.search_headers.startswith("Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\n")


def test_date_is_a_timestamp_and_sent_date_is_in_the_fields_own_zone() -> None:
    parsed = parse(ENVELOPE_MESSAGE)
    expected = datetime.datetime(1996, 7, 17, 9, 23, 25, tzinfo=datetime.UTC).timestamp()
    assert parsed.date == expected
    assert parsed.sent_date == "1996-07-17"
    late = parse(b"Date: Mon, 1 Jan 2024 00:30:00 +0200\r\n\r\n")
    assert late.sent_date == "2024-01-01"  # 2023-12-31 in UTC; RFC 3501 SENTON ignores the zone
    assert late.date == datetime.datetime(2023, 12, 31, 22, 30, tzinfo=datetime.UTC).timestamp()


@pytest.mark.parametrize(
    "value", [b"yesterday", b"Mon, 31 Feb 2020 10:00:00 +0000", b"Mon, 1 Jan 2020 10:00:00 +9999", b""]
)
def test_unparsable_dates_give_none(value: bytes) -> None:
    parsed = parse(b"Date: " + value + b"\r\n\r\nx")
    assert (parsed.date, parsed.sent_date) == (None, None)
    assert parsed.envelope[0] == value.decode()


def test_missing_sender_and_reply_to_default_to_from() -> None:
    raw = b"From: Alice <alice@example.com>\r\nReply-To:\r\nTo: bob@example.com\r\n\r\nhi\r\n"
    envelope = parse(raw).envelope
    alice = [["Alice", None, "alice", "example.com"]]
    assert envelope[2:6] == [alice, alice, alice, [[None, None, "bob", "example.com"]]]


def test_sender_and_reply_to_when_present_are_their_own() -> None:
    raw = b"From: a@example.com\r\nSender: s@example.com\r\nReply-To: r@example.com\r\n\r\n"
    envelope = parse(raw).envelope
    assert envelope[2:5] == [
        [[None, None, "a", "example.com"]],
        [[None, None, "s", "example.com"]],
        [[None, None, "r", "example.com"]],
    ]


def test_envelope_without_any_header_is_all_nil() -> None:
    parsed = parse(b"just a body line\r\n")
    assert parsed.envelope == [None] * 10
    assert (parsed.subject, parsed.from_display, parsed.message_id) == ("", "", None)
    assert parsed.body.header_start == parsed.body.body_start == 0


def test_first_occurrence_of_a_field_wins_and_names_are_case_insensitive() -> None:
    raw = (
        b"SUBJECT: first\r\nSubject: second\r\n"
        b"content-type: text/html; charset=utf-8\r\nContent-Type: image/png\r\n\r\nx"
    )
    parsed = parse(raw)
    assert parsed.envelope[1] == "first"
    assert (parsed.body.type, parsed.body.subtype, parsed.body.params) == (
        "text",
        "html",
        [("charset", "utf-8")],
    )


# -- parameters ----------------------------------------------------------------------------------------------
def test_rfc2231_continuations_charsets_and_languages_are_joined_and_decoded() -> None:
    raw = (
        b"Content-Type: application/x-stuff;\r\n"
        b"\ttitle*0*=us-ascii'en'This%20is%20even%20more%20;\r\n"
        b"\ttitle*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n"
        b'\ttitle*2="isn\'t it!"\r\n'
        b"Content-Disposition: attachment;\r\n"
        b"  filename*0*=utf-8''%E2%82%AC%20rates;\r\n"
        b"  filename*1*=%20%C3%BCber.pdf; size=123\r\n"
        b"Content-Language: en, de (German)\r\n"
        b"\r\n"
        b"data"
    )
    body = parse(raw).body
    # charset-encoded values keep a "*" after their name (IMAP returns them as extended values)
    assert body.params == [("title*", "This is even more ***fun*** isn't it!")]
    assert body.disposition == ("attachment", [("filename*", "€ rates über.pdf"), ("size", "123")])
    assert body.language == ["en", "de"]


def test_parameters_keep_their_order_and_quoted_specials() -> None:
    raw = (
        b"Content-Type: Text/Plain; format=flowed; name*=utf-8''%C3%A4.txt; Charset=\"utf-8\";"
        b' x-note="a;b \\"c\\""\r\n\r\n'
    )
    body = parse(raw).body
    assert (body.type, body.subtype) == ("text", "plain")
    assert body.params == [
        ("format", "flowed"),
        ("name*", "ä.txt"),
        ("charset", "utf-8"),
        ("x-note", 'a;b "c"'),
    ]


def test_text_without_parameters_gets_charset_us_ascii() -> None:
    assert parse(b"Content-Type: text/plain\r\n\r\nx").body.params == [("charset", "us-ascii")]
    assert parse(b"\r\nx").body.params == [("charset", "us-ascii")]
    assert parse(b"Content-Type: text/plain; format=flowed\r\n\r\nx").body.params == [("format", "flowed")]


def test_body_fields_are_raw_and_encoding_is_uppercased() -> None:
    raw = (
        b"Content-Type: image/png; name=a.png\r\n"
        b"Content-ID: <img1@example.com>\r\n"
        b"Content-Description: =?utf-8?q?caf=C3=A9?=\r\n"
        b"Content-Transfer-Encoding: Base64 (comment)\r\n"
        b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
        b"Content-Location:\r\n http://example.com/a.png\r\n"
        b"Content-Disposition: INLINE\r\n"
        b"\r\n"
        b"iVBORw0KGgo=\r\n"
    )
    body = parse(raw).body
    assert body.id == "<img1@example.com>"
    assert body.description == "=?utf-8?q?caf=C3=A9?="
    assert body.encoding == "BASE64"
    assert body.md5 == "Q2hlY2sgSW50ZWdyaXR5IQ=="
    assert body.location == "http://example.com/a.png"
    assert body.disposition == ("inline", [])
    assert body.language is None
    assert (body.size, body.lines) == (14, 1)


# -- structure and offsets -----------------------------------------------------------------------------------
NESTED = (
    b"From: a@example.com\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"This is the preamble.\r\n"
    b"--outer\r\n"
    b"Content-Type: multipart/alternative; boundary=inner\r\n"
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello\r\n"
    b"World\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>Hello</p>\r\n"
    b"\r\n"
    b"--inner--\r\n"
    b"--outer\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b'Content-Disposition: attachment; filename="a.bin"\r\n'
    b"\r\n"
    b"AAEC\r\n"
    b"--outer--\r\n"
    b"epilogue\r\n"
)


def test_nested_multiparts_have_exact_offsets() -> None:
    parsed = parse(NESTED)
    root = parsed.body
    assert types(parsed) == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "application/octet-stream",
    ]
    assert header_of(NESTED, root) == (
        b'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    )
    assert body_of(NESTED, root) == NESTED[NESTED.index(b"This is the preamble") :]
    assert root.params == [("boundary", "outer")]

    alternative, attachment = root.parts
    assert header_of(NESTED, alternative) == b"Content-Type: multipart/alternative; boundary=inner\r\n\r\n"
    assert body_of(NESTED, alternative) == (
        b"--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\nWorld\r\n"
        b"--inner\r\nContent-Type: text/html\r\n\r\n<p>Hello</p>\r\n\r\n--inner--"
    )
    plain, html = alternative.parts
    assert header_of(NESTED, plain) == b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    assert (body_of(NESTED, plain), plain.lines, plain.size) == (b"Hello\r\nWorld", 2, 12)
    assert header_of(NESTED, html) == b"Content-Type: text/html\r\n\r\n"
    assert (body_of(NESTED, html), html.lines) == (b"<p>Hello</p>\r\n", 1)
    assert html.params == [("charset", "us-ascii")]

    assert body_of(NESTED, attachment) == b"AAEC"
    assert attachment.encoding == "BASE64"
    assert attachment.disposition == ("attachment", [("filename", "a.bin")])
    assert parsed.search_text == "Hello\r\nWorld\n<p>Hello</p>\r\n"
    assert root.lines == count_lines(body_of(NESTED, root)) == 23


RFC822_IN_MULTIPART_IN_RFC822 = (
    b"From: outer@example.com\r\n"
    b"Subject: outer\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: middle@example.com\r\n"
    b"Subject: middle\r\n"
    b"Content-Type: multipart/mixed; boundary=m\r\n"
    b"\r\n"
    b"--m\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"middle text\r\n"
    b"--m\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: inner@example.com\r\n"
    b"Subject: =?utf-8?q?inner_=C3=A9?=\r\n"
    b"Message-ID: <inner@example.com>\r\n"
    b"\r\n"
    b"inner text\r\n"
    b"--m--\r\n"
)


def test_message_rfc822_inside_multipart_inside_message_rfc822() -> None:
    raw = RFC822_IN_MULTIPART_IN_RFC822
    parsed = parse(raw)
    assert types(parsed) == [
        "message/rfc822",
        "multipart/mixed",
        "text/plain",
        "message/rfc822",
        "text/plain",
    ]
    assert parsed.envelope[1] == "outer"
    root = parsed.body
    assert root.envelope is not None
    assert root.embedded is not None
    assert root.envelope[1] == "middle"
    assert root.envelope[2] == [[None, None, "middle", "example.com"]]
    assert root.body_start == raw.index(b"From: middle") == root.embedded.header_start
    assert root.lines == count_lines(body_of(raw, root)) == 17

    middle = root.embedded
    text, inner = middle.parts
    assert body_of(raw, text) == b"middle text"
    assert inner.envelope is not None
    assert inner.embedded is not None
    assert inner.envelope[1] == "=?utf-8?q?inner_=C3=A9?="
    assert inner.envelope[9] == "<inner@example.com>"
    assert body_of(raw, inner) == (
        b"From: inner@example.com\r\nSubject: =?utf-8?q?inner_=C3=A9?=\r\n"
        b"Message-ID: <inner@example.com>\r\n\r\ninner text"
    )
    assert inner.lines == 5
    assert header_of(raw, inner.embedded) == (
        b"From: inner@example.com\r\nSubject: =?utf-8?q?inner_=C3=A9?=\r\n"
        b"Message-ID: <inner@example.com>\r\n\r\n"
    )
    assert body_of(raw, inner.embedded) == b"inner text"
    assert parsed.search_text == "middle text\ninner text"
    assert parsed.search_headers == "From: outer@example.com\nSubject: outer\nContent-Type: message/rfc822\n"


def test_outer_boundary_ends_an_unclosed_inner_multipart() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
        b"--outer\r\n"
        b"Content-Type: multipart/alternative; boundary=inner\r\n\r\n"
        b"--inner\r\n\r\n"
        b"inner one\r\n"
        b"--outer\r\n"
        b"Content-Type: text/plain\r\n\r\n"
        b"after\r\n"
        b"--outer--\r\n"
    )
    parsed = parse(raw)
    assert types(parsed) == ["multipart/mixed", "multipart/alternative", "text/plain", "text/plain"]
    alternative, after = parsed.body.parts
    assert body_of(raw, alternative.parts[0]) == b"inner one"
    assert header_of(raw, alternative.parts[0]) == b"\r\n"
    assert body_of(raw, alternative) == b"--inner\r\n\r\ninner one"
    assert body_of(raw, after) == b"after"


def test_unclosed_multipart_runs_to_the_end_of_the_message() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\n\r\nfirst\r\n"
        b"--b\r\nContent-Type: text/html\r\n\r\nsecond\r\n"
    )
    parsed = parse(raw)
    first, second = parsed.body.parts
    assert body_of(raw, first) == b"first"
    assert (body_of(raw, second), second.lines) == (b"second\r\n", 1)


def test_transport_padding_after_boundaries_and_lookalike_lines() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b \t\r\n\r\n"
        b"--bx\r\n"
        b"--b garbage\r\n"
        b"---b\r\n"
        b"--b--  \r\n"
    )
    parsed = parse(raw)
    (only,) = parsed.body.parts
    assert body_of(raw, only) == b"--bx\r\n--b garbage\r\n---b"


def test_digest_parts_default_to_message_rfc822() -> None:
    raw = (
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
        b"--d\r\n\r\n"
        b"Subject: one\r\n\r\nfirst\r\n"
        b"--d\r\nContent-Type: text/plain\r\n\r\nnot a message\r\n"
        b"--d--\r\n"
    )
    parsed = parse(raw)
    assert types(parsed) == ["multipart/digest", "message/rfc822", "text/plain", "text/plain"]
    digest_message = parsed.body.parts[0]
    assert digest_message.params == []
    assert digest_message.envelope is not None
    assert digest_message.envelope[1] == "one"
    assert digest_message.embedded is not None
    assert body_of(raw, digest_message.embedded) == b"first"


# -- malformed MIME ------------------------------------------------------------------------------------------
def test_multipart_without_boundary_parameter_is_a_text_plain_leaf() -> None:
    raw = b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nfoo\r\n--x--\r\n"
    parsed = parse(raw)
    body = parsed.body
    assert (body.type, body.subtype, body.params, body.parts) == (
        "text",
        "plain",
        [("charset", "us-ascii")],
        [],
    )
    assert body_of(raw, body) == b"--x\r\n\r\nfoo\r\n--x--\r\n"
    assert parsed.search_text == "--x\r\n\r\nfoo\r\n--x--\r\n"


def test_multipart_without_any_delimiter_line_is_a_text_plain_leaf() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\nno parts here\r\n--b--\r\n"
    body = parse(raw).body
    assert (body.type, body.subtype, body.params) == ("text", "plain", [("charset", "us-ascii")])
    assert body_of(raw, body) == b"no parts here\r\n--b--\r\n"


@pytest.mark.parametrize("value", [b"text", b"", b"/plain", b"text/", b"text/plain/html", b"te xt/plain"])
def test_invalid_content_type_means_text_plain_us_ascii(value: bytes) -> None:
    body = parse(b"Content-Type: " + value + b"; charset=utf-8\r\n\r\nx").body
    assert (body.type, body.subtype, body.params) == ("text", "plain", [("charset", "us-ascii")])


def test_base64_message_rfc822_is_an_opaque_leaf() -> None:
    raw = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA0KDQp4\r\n"
    body = parse(raw).body
    assert (body.type, body.subtype, body.embedded, body.envelope) == (
        "application",
        "octet-stream",
        None,
        None,
    )
    assert body.encoding == "BASE64"


def test_garbage_lines_amid_header_fields_are_skipped() -> None:
    raw = b"Subject: hi\r\n>From garbage line\r\nthis is not a header\r\nTo: x@example.com\r\n\r\nbody\r\n"
    parsed = parse(raw)
    assert parsed.envelope[1] == "hi"
    assert parsed.envelope[5] == [[None, None, "x", "example.com"]]
    assert body_of(raw, parsed.body) == b"body\r\n"


def test_body_right_after_the_fields_without_empty_line() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/html\r\nHello\r\n\r\nmore\r\n"
        b"--b\r\nHeader-less part\r\n"
        b"--b--\r\n"
    )
    first, second = parse(raw).body.parts
    assert header_of(raw, first) == b"Content-Type: text/html\r\n"
    assert (first.type, first.subtype) == ("text", "html")
    assert body_of(raw, first) == b"Hello\r\n\r\nmore"
    assert first.header_start < first.body_start
    assert second.header_start == second.body_start
    assert body_of(raw, second) == b"Header-less part"


def test_header_without_body_and_empty_message() -> None:
    parsed = parse(b"Subject: only a header\r\n")
    assert (parsed.body.body_start, parsed.body.body_end, parsed.body.lines) == (24, 24, 0)
    assert parsed.subject == "only a header"
    empty = parse(b"")
    assert (empty.size, empty.body.body_end, empty.body.type, empty.envelope) == (0, 0, "text", [None] * 10)


def test_empty_parts_between_adjacent_delimiters() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\nx\r\n--b--\r\n"
    first, second = parse(raw).body.parts
    assert (first.header_start, first.body_start, first.body_end) == (50, 50, 50)
    assert body_of(raw, second) == b"x"


def test_nul_and_high_bytes_and_unknown_charsets_never_raise() -> None:
    raw = (
        b"Subject: a\x00b\xff\r\n"
        b"From: \xc3\xa9mile <e@example.com>\r\n"
        b"Content-Type: text/plain; charset=bogus-charset\r\n"
        b"\r\n"
        b"\x00\xff\xfe body\r\n"
    )
    parsed = parse(raw)
    assert parsed.subject == "a\x00b\xff"  # not UTF-8: read as Latin-1
    assert parsed.from_display == "émile <e@example.com>"  # UTF-8 (RFC 6532)
    assert parsed.envelope[2] == [["émile", None, "e", "example.com"]]
    assert parsed.search_text == "\x00\xff\xfe body\r\n"


def test_bare_lf_message() -> None:
    raw = b"Subject: lf\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nline1\nline2\n--b--\n"
    parsed = parse(raw)
    (part,) = parsed.body.parts
    assert parsed.subject == "lf"
    assert header_of(raw, part) == b"\n"
    assert (body_of(raw, part), part.lines) == (b"line1\nline2", 2)


def test_bare_cr_message() -> None:
    raw = (
        b"Subject: cr\rContent-Type: multipart/mixed; boundary=b\r\r"
        b"--b\rContent-Type: text/html\r\rx\ry\r--b--"
    )
    parsed = parse(raw)
    (part,) = parsed.body.parts
    assert parsed.subject == "cr"
    assert (part.subtype, body_of(raw, part), part.lines) == ("html", b"x\ry", 2)


def test_mixed_line_ends() -> None:
    raw = b"Subject: mixed\r\nX-A: y\n\rbody\r\nmore\n\n"
    parsed = parse(raw)
    assert header_of(raw, parsed.body) == b"Subject: mixed\r\nX-A: y\n\r"
    assert (body_of(raw, parsed.body), parsed.body.lines) == (b"body\r\nmore\n\n", 3)


@pytest.mark.parametrize(
    ("body", "lines"),
    [(b"", 0), (b"a", 1), (b"a\r\n", 1), (b"a\r\nb", 2), (b"\r\n", 1), (b"\r\n\r\n", 2), (b"a\n\rb", 3)],
)
def test_lines_counts_terminators_plus_an_unterminated_last_line(body: bytes, lines: int) -> None:
    parsed = parse(b"Subject: x\r\n\r\n" + body)
    assert parsed.body.lines == lines


def test_long_lines_are_not_boundaries_and_are_counted_once() -> None:
    long_line = b"--b" + b"x" * 200_000
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n"
        + long_line
        + b"\r\n"
        + b"y" * 150_000
        + b"\r\n--b--\r\n"
    )
    (part,) = parse(raw).body.parts
    assert body_of(raw, part) == long_line + b"\r\n" + b"y" * 150_000
    assert part.lines == 2


# -- caps ----------------------------------------------------------------------------------------------------
def test_nesting_beyond_the_depth_cap_becomes_opaque() -> None:
    raw = b"Content-Type: message/rfc822\r\n\r\n" * (MAX_DEPTH + 10) + b"Subject: deep\r\n\r\nx"
    parsed = parse(raw)
    chain = list(walk(parsed.body))
    assert len(chain) == MAX_DEPTH + 1
    assert all(p.type == "message" for p in chain[:-1])
    assert (chain[-1].type, chain[-1].subtype) == ("application", "octet-stream")


def test_nested_multiparts_beyond_the_depth_cap_become_opaque() -> None:
    depth = MAX_DEPTH + 5
    raw = (
        b"".join(
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(depth)
        )
        + b"\r\nleaf\r\n"
    )
    parsed = parse(raw)
    chain = list(walk(parsed.body))
    assert len(chain) == MAX_DEPTH + 1
    assert chain[-1].type == "application"


def test_parts_beyond_the_part_cap_are_dropped() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        + b"--b\r\n\r\nx\r\n" * (MAX_PARTS + 100)
        + b"--b--"
    )
    parsed = parse(raw)
    assert len(parsed.body.parts) == MAX_PARTS - 1
    assert sum(1 for _ in walk(parsed.body)) == MAX_PARTS


def test_header_bytes_beyond_the_cap_are_ignored() -> None:
    raw = b"X-Long: " + b"a" * (parser_module.MAX_HEADER_BYTES + 10) + b"\r\nSubject: lost\r\n\r\nbody"
    parsed = parse(raw)
    assert parsed.envelope[1] is None
    assert body_of(raw, parsed.body) == b"body"
    assert len(parsed.search_headers) <= parser_module.MAX_SEARCH_HEADERS


# -- search text ---------------------------------------------------------------------------------------------
def test_search_text_decodes_transfer_encodings_and_charsets() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"R3LDvMOfZQ==\r\n"
        b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"caf=E9 soft=\r\nbreak\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n\r\nnot searched\r\n"
        b"--b\r\nContent-Type: text/plain; charset=x-unknown-thing\r\n\r\n\xc3\xa9t\xc3\xa9\r\n"
        b"--b\r\nContent-Type: text/plain; charset=base64\r\n\r\nplain\r\n"
        b"--b--\r\n"
    )
    parsed = parse(raw)
    assert parsed.search_text == "Grüße\ncafé softbreak\nété\nplain"
    assert not parsed.search_truncated


def test_search_text_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser_module, "MAX_SEARCH_TEXT", 10)
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n12345\r\n--b\r\n\r\n67890abc\r\n--b--"
    parsed = parse_bytes(raw)
    assert parsed.search_text == "12345\n6789"
    assert parsed.search_truncated


# -- API -----------------------------------------------------------------------------------------------------
def test_parsing_starts_at_offset_zero_whatever_the_file_position() -> None:
    fp = io.BytesIO(NESTED)
    fp.seek(0, io.SEEK_END)
    assert parse_message(fp) == parse_message(io.BytesIO(NESTED))


def test_json_round_trip_restores_tuples() -> None:
    parsed = parse(NESTED)
    again = ParsedMessage.from_json(parsed.to_json())
    assert again == parsed
    attachment = again.body.parts[1]
    assert isinstance(attachment.disposition, tuple)
    assert all(isinstance(p, tuple) for p in again.body.params)


def test_internal_error_degrades_to_one_opaque_part_and_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(fp: object) -> ParsedMessage:
        raise RuntimeError("bug")

    monkeypatch.setattr(parser_module, "parse_strict", broken)
    raw = b"Subject: x\r\n\r\na\r\nb"
    with caplog.at_level(logging.ERROR):
        parsed = parse_message(io.BytesIO(raw))
    assert "MIME parser failed" in caplog.text
    assert (parsed.size, parsed.body.body_start, parsed.body.body_end, parsed.body.lines) == (
        len(raw),
        0,
        len(raw),
        4,
    )
    check_invariants(raw, parsed)


def test_io_errors_propagate() -> None:
    class Failing(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise OSError("disk")

    with pytest.raises(OSError, match="disk"):
        parse_message(Failing(b"x"))


def test_search_text_of_an_overlong_quoted_printable_line() -> None:
    line = b"=C3=A9" * 40_000  # 240 KB without a line end: decoded in pieces, never splitting an escape
    header = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    raw = header + line
    assert parse(raw).search_text == "é" * 40_000
