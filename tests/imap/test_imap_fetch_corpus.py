"""Hand-written messages (tests/imap/corpus/*.eml, CRLF) with their ENVELOPE, BODY and BODYSTRUCTURE
written out by hand from RFC 9051 7.5.2 / RFC 3501 7.4.2; section extraction (RFC 9051 6.4.5) and BINARY
(RFC 3516) over them.

These strings are what IMAP clients cache: a change here is a change every client sees."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from postoffice.imap.fetch import (
    SectionSpec,
    binary_section,
    binary_size,
    bodystructure,
    envelope,
    find_part,
    locate_section,
    section_bytes,
)
from postoffice.message import ParsedMessage, parse_message

CORPUS = Path(__file__).parent / "corpus"


def load(name: str) -> tuple[bytes, ParsedMessage]:
    raw = (CORPUS / name).read_bytes()
    assert b"\n" not in raw.replace(b"\r\n", b""), f"{name} must have CRLF line ends"
    return raw, parse_message(io.BytesIO(raw))


def body(raw: bytes, section: SectionSpec, partial: tuple[int, int | None] | None = None) -> bytes:
    parsed = ParsedMessage.from_json(parse_message(io.BytesIO(raw)).to_json())  # as the store gives it back
    return section_bytes(raw, parsed, section, partial)


TEXT_US_ASCII = b'"TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "7BIT"'

EXPECTED: dict[str, dict[str, bytes]] = {
    "encoded_words.eml": {
        # Encoded words stay raw; the folded Subject is unfolded (CRLF removed, the space kept); Sender and
        # Reply-To default to From (RFC 3501 7.4.2); a comment gives the name when there is no phrase.
        "envelope": b'("Mon, 7 Feb 1994 21:52:25 -0800 (PST)" '
        b'"=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?= '
        b'=?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=" '
        b'(("=?ISO-8859-1?Q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be")) '
        b'(("=?ISO-8859-1?Q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be")) '
        b'(("=?ISO-8859-1?Q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be")) '
        b'(("Keith Moore" NIL "moore" "cs.utk.edu")'
        b'("Olle =?utf-8?q?J=C3=A4rnefors?=" NIL "ojarnef" "admin.kth.se")) '
        b'(("Bob Smith" NIL "bob" "example.net")) '
        b"NIL "
        b'"<abc@example.org>" "<1234@local.machine.example>")',
        "body": b"(" + TEXT_US_ASCII + b" 33 2)",
        "bodystructure": b"(" + TEXT_US_ASCII + b" 33 2 NIL NIL NIL NIL)",
    },
    "groups.eml": {
        # Group syntax (RFC 3501 7.4.2): start marker (NIL NIL name NIL), members, end marker
        # (NIL NIL NIL NIL); an empty group is just the two markers. A source route goes to the adl field.
        "envelope": b'("Tue, 1 Jul 2003 10:52:37 +0200" "Group syntax" '
        b'(("Mary Smith" NIL "mary" "x.test")) '
        b'(("Secretary" NIL "sec" "x.test")) '
        b'(("Mary Smith: Personal Account" NIL "smith" "home.example")) '
        b'((NIL NIL "A Group" NIL)("Ed Jones" NIL "c" "a.test")(NIL NIL "joe" "where.test")'
        b'("John" NIL "jdoe" "one.test")(NIL NIL NIL NIL)) '
        b'((NIL NIL "Undisclosed recipients" NIL)(NIL NIL NIL NIL)) '
        b'((NIL "@route1.test,@route2.test" "boss" "y.test")'
        b'("Joe Q. Public" NIL "john.q.public" "example.com")) '
        b'NIL "<5678.21-Nov-1997@example.com>")',
        # No Content-Type: text/plain; charset=us-ascii (RFC 2045 5.2).
        "body": b"(" + TEXT_US_ASCII + b" 14 1)",
        "bodystructure": b"(" + TEXT_US_ASCII + b" 14 1 NIL NIL NIL NIL)",
    },
    "attachments.eml": {
        "envelope": b'("Wed, 2 Jul 2003 08:00:00 +0000" "Attachments" '
        b'((NIL NIL "sender" "example.com")) ((NIL NIL "sender" "example.com")) '
        b'((NIL NIL "sender" "example.com")) ((NIL NIL "rcpt" "example.com")) NIL NIL NIL NIL)',
        "body": b'(("TEXT" "PLAIN" ("charset" "utf-8") NIL NIL "QUOTED-PRINTABLE" 60 3)'
        b'("APPLICATION" "OCTET-STREAM" ("name" "very-long-file-name.bin") "<part2@example.com>" '
        b'"Binary data" "BASE64" 24) "MIXED")',
        # RFC 2231 continuations joined ("name"); a charset-encoded value converted to UTF-8 and returned as
        # "filename*" (RFC 9051 7.5.2): an extended value, ASCII for every client. Multipart extension:
        # params, disposition, language, location.
        "bodystructure": b'(("TEXT" "PLAIN" ("charset" "utf-8") NIL NIL "QUOTED-PRINTABLE" 60 3 '
        b'NIL NIL ("de" "en-GB") NIL)'
        b'("APPLICATION" "OCTET-STREAM" ("name" "very-long-file-name.bin") "<part2@example.com>" '
        b'"Binary data" "BASE64" 24 "Q2hlY2sgSW50ZWdyaXR5IQ==" '
        b'("ATTACHMENT" ("filename*" "utf-8\'\'%E2%82%AC-rates.bin")) NIL "http://example.com/rates.bin") '
        b'"MIXED" ("boundary" "outer-boundary" "foo" "bar") NIL ("en") NIL)',
    },
    "nested.eml": {
        "envelope": b'("Thu, 3 Jul 2003 09:00:00 +0000" "Nested" ((NIL NIL "a" "example.com")) '
        b'((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) ((NIL NIL "b" "example.com")) '
        b"NIL NIL NIL NIL)",
        "body": b"(((" + TEXT_US_ASCII + b' 11 1)(("TEXT" "HTML" ("charset" "us-ascii") NIL NIL "7BIT" 32 1)'
        b'("IMAGE" "PNG" NIL "<img1>" NIL "BASE64" 12) "RELATED") "ALTERNATIVE")'
        b'("APPLICATION" "PDF" ("name" "doc.pdf") NIL NIL "7BIT" 8) "MIXED")',
        "bodystructure": b"(((" + TEXT_US_ASCII + b" 11 1 NIL NIL NIL NIL)"
        b'(("TEXT" "HTML" ("charset" "us-ascii") NIL NIL "7BIT" 32 1 NIL NIL NIL NIL)'
        b'("IMAGE" "PNG" NIL "<img1>" NIL "BASE64" 12 NIL NIL NIL NIL) '
        b'"RELATED" ("boundary" "rel" "type" "text/html") NIL NIL NIL) '
        b'"ALTERNATIVE" ("boundary" "alt") NIL NIL NIL)'
        b'("APPLICATION" "PDF" ("name" "doc.pdf") NIL NIL "7BIT" 8 NIL ("INLINE" NIL) NIL NIL) '
        b'"MIXED" ("boundary" "mixed") NIL NIL NIL)',
    },
    "rfc822_nested.eml": {
        "envelope": b'("Fri, 4 Jul 2003 10:00:00 +0000" "Forwarded twice" ((NIL NIL "outer" "example.com")) '
        b'((NIL NIL "outer" "example.com")) ((NIL NIL "outer" "example.com")) '
        b'((NIL NIL "rcpt" "example.com")) NIL NIL NIL NIL)',
        # message/rfc822: basic fields, then envelope, body and lines of the embedded message
        # (RFC 9051 7.5.2).
        "body": b"((" + TEXT_US_ASCII + b' 13 1)("MESSAGE" "RFC822" NIL NIL "forwarded message" "7BIT" 378 '
        b'(NIL "Middle" ((NIL NIL "middle" "example.com")) ((NIL NIL "middle" "example.com")) '
        b'((NIL NIL "middle" "example.com")) ((NIL NIL "outer" "example.com")) NIL NIL NIL '
        b'"<middle@example.com>") '
        b"((" + TEXT_US_ASCII + b' 12 1)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 99 '
        b'("Sat, 5 Jul 2003 11:00:00 +0000" "Inner" ((NIL NIL "inner" "example.com")) '
        b'((NIL NIL "inner" "example.com")) ((NIL NIL "inner" "example.com")) NIL NIL NIL NIL NIL) '
        b"(" + TEXT_US_ASCII + b' 18 2) 6) "MIXED") 21) "MIXED")',
        "bodystructure": b"(("
        + TEXT_US_ASCII
        + b' 13 1 NIL NIL NIL NIL)("MESSAGE" "RFC822" NIL NIL "forwarded message" "7BIT" 378 '
        b'(NIL "Middle" ((NIL NIL "middle" "example.com")) ((NIL NIL "middle" "example.com")) '
        b'((NIL NIL "middle" "example.com")) ((NIL NIL "outer" "example.com")) NIL NIL NIL '
        b'"<middle@example.com>") '
        b"((" + TEXT_US_ASCII + b' 12 1 NIL NIL NIL NIL)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 99 '
        b'("Sat, 5 Jul 2003 11:00:00 +0000" "Inner" ((NIL NIL "inner" "example.com")) '
        b'((NIL NIL "inner" "example.com")) ((NIL NIL "inner" "example.com")) NIL NIL NIL NIL NIL) '
        b"(" + TEXT_US_ASCII + b" 18 2 NIL NIL NIL NIL) 6 NIL NIL NIL NIL) "
        b'"MIXED" ("boundary" "b2") NIL NIL NIL) 21 NIL NIL NIL NIL) "MIXED" ("boundary" "b1") NIL NIL NIL)',
    },
    "no_boundary.eml": {
        "envelope": b'(NIL "No boundary" ((NIL NIL "x" "example.com")) ((NIL NIL "x" "example.com")) '
        b'((NIL NIL "x" "example.com")) NIL NIL NIL NIL NIL)',
        # A multipart without boundary is text/plain; charset=us-ascii (RFC 2045 5.2, decision 0003).
        "body": b"(" + TEXT_US_ASCII + b" 50 5)",
        "bodystructure": b"(" + TEXT_US_ASCII + b" 50 5 NIL NIL NIL NIL)",
    },
    "unclosed.eml": {
        "envelope": b'(NIL "Unclosed" ((NIL NIL "x" "example.com")) ((NIL NIL "x" "example.com")) '
        b'((NIL NIL "x" "example.com")) NIL NIL NIL NIL NIL)',
        # The unclosed last part runs to the end of the message.
        "body": b"((" + TEXT_US_ASCII + b' 5 1)("TEXT" "HTML" ("charset" "us-ascii") NIL NIL "7BIT" 15 1) '
        b'"MIXED")',
        "bodystructure": b"((" + TEXT_US_ASCII + b" 5 1 NIL NIL NIL NIL)"
        b'("TEXT" "HTML" ("charset" "us-ascii") NIL NIL "7BIT" 15 1 NIL NIL NIL NIL) '
        b'"MIXED" ("boundary" "zz") NIL NIL NIL)',
    },
    "utf8_headers.eml": {
        # Raw UTF-8 header text (RFC 6532): literals for a client without UTF8=ACCEPT.
        "envelope": b'("Sun, 6 Jul 2003 12:00:00 +0200" {17}\r\nGr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln '
        + b"(({13}\r\nJ\xc3\xb6ran \xc3\x98berg NIL {6}\r\nj\xc3\xb6ran {15}\r\nb\xc3\xbccher.example)) " * 3
        + b'(({11}\r\n\xc3\x9cn\xc3\xafc\xc3\xb6d\xc3\xa9 NIL "user" "example.com")) NIL NIL NIL '
        b'"<utf8@example.com>")',
        "body": b'("TEXT" "PLAIN" ("charset" "utf-8") NIL NIL "8BIT" 9 1)',
        "bodystructure": b'("TEXT" "PLAIN" ("charset" "utf-8") NIL NIL "8BIT" 9 1 NIL NIL NIL NIL)',
    },
}


def test_corpus_has_an_expectation_for_every_message() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_envelope_is_rendered_exactly(name: str) -> None:
    _raw, parsed = load(name)
    assert envelope(parsed.envelope, utf8=False) == EXPECTED[name]["envelope"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_body_without_extension_data_is_rendered_exactly(name: str) -> None:
    _raw, parsed = load(name)
    assert bodystructure(parsed.body, extended=False, utf8=False) == EXPECTED[name]["body"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bodystructure_is_rendered_exactly(name: str) -> None:
    _raw, parsed = load(name)
    assert bodystructure(parsed.body, extended=True, utf8=False) == EXPECTED[name]["bodystructure"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rendering_from_stored_json_is_the_same(name: str) -> None:
    _raw, parsed = load(name)
    stored = ParsedMessage.from_json(parsed.to_json())
    assert envelope(stored.envelope, utf8=False) == EXPECTED[name]["envelope"]
    assert bodystructure(stored.body, extended=True, utf8=False) == EXPECTED[name]["bodystructure"]


def test_utf8_headers_are_quoted_utf8_for_utf8_clients() -> None:
    _raw, parsed = load("utf8_headers.eml")
    assert envelope(parsed.envelope, utf8=True) == (
        b'("Sun, 6 Jul 2003 12:00:00 +0200" "Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln" '
        + b'(("J\xc3\xb6ran \xc3\x98berg" NIL "j\xc3\xb6ran" "b\xc3\xbccher.example")) ' * 3
        + b'(("\xc3\x9cn\xc3\xafc\xc3\xb6d\xc3\xa9" NIL "user" "example.com")) NIL NIL NIL '
        b'"<utf8@example.com>")'
    )


def test_rfc2231_filename_is_the_same_utf8_extended_value_for_every_client() -> None:
    """RFC 9051 7.5.2: "foo*" with the value converted to UTF-8; as an RFC 2231 extended value it is ASCII,
    so UTF8=ACCEPT clients get the same octets."""
    _raw, parsed = load("attachments.eml")
    expected = b'("ATTACHMENT" ("filename*" "utf-8\'\'%E2%82%AC-rates.bin"))'
    assert expected in bodystructure(parsed.body, extended=True, utf8=True)
    assert expected in bodystructure(parsed.body, extended=True, utf8=False)


def test_embedded_message_envelope_is_the_bodypart_envelope() -> None:
    _raw, parsed = load("rfc822_nested.eml")
    part = find_part(parsed.body, (2, 2))
    assert part is not None
    assert part.envelope is not None
    assert envelope(part.envelope, utf8=False) == (
        b'("Sat, 5 Jul 2003 11:00:00 +0000" "Inner" ((NIL NIL "inner" "example.com")) '
        b'((NIL NIL "inner" "example.com")) ((NIL NIL "inner" "example.com")) NIL NIL NIL NIL NIL)'
    )


# -- sections ------------------------------------------------------------------------------------------------
def test_whole_message_header_and_text_of_a_single_part_message() -> None:
    raw, _parsed = load("encoded_words.eml")
    header_end = raw.index(b"\r\n\r\n") + 4
    assert body(raw, SectionSpec()) == raw
    assert body(raw, SectionSpec(kind="HEADER")) == raw[:header_end]
    assert body(raw, SectionSpec(kind="TEXT")) == b"Hello Andre,\r\nthis is line two.\r\n"
    # Part 1 of a non-multipart message is its body; its MIME header is the message header.
    assert body(raw, SectionSpec(part=(1,))) == b"Hello Andre,\r\nthis is line two.\r\n"
    assert body(raw, SectionSpec(part=(1,), kind="MIME")) == raw[:header_end]


def test_sections_that_do_not_exist_are_empty() -> None:
    raw, parsed = load("encoded_words.eml")
    for spec in [
        SectionSpec(part=(2,)),
        SectionSpec(part=(0,)),
        SectionSpec(part=(1, 1)),  # a text/plain leaf has no sub-parts
        SectionSpec(part=(1,), kind="HEADER"),  # HEADER after a number needs a message/rfc822 part
        SectionSpec(part=(1,), kind="TEXT"),
        SectionSpec(kind="MIME"),  # MIME needs a part number
    ]:
        assert locate_section(parsed, spec) is None, spec
        assert body(raw, spec) == b"", spec


def test_header_fields_keep_folded_lines_in_message_order_with_the_blank_line() -> None:
    raw, _parsed = load("encoded_words.eml")
    expected = (
        b"Subject: =?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n"
        b" =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=\r\n"
        b"X-Note: first\r\n"
        b"X-Note: second\r\n"
        b"  continued\r\n"
        b"\r\n"
    )
    assert body(raw, SectionSpec(kind="HEADER.FIELDS", fields=("x-NOTE", "Subject"))) == expected
    assert body(raw, SectionSpec(kind="HEADER.FIELDS", fields=("X-Absent",))) == b"\r\n"


def test_header_fields_not_leaves_out_the_named_fields() -> None:
    raw, _parsed = load("encoded_words.eml")
    fields = ("Return-Path", "subject", "X-Note", "TO", "Cc", "From")
    assert body(raw, SectionSpec(kind="HEADER.FIELDS.NOT", fields=fields)) == (
        b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
        b"Message-ID: <1234@local.machine.example>\r\n"
        b"In-Reply-To: <abc@example.org>\r\n"
        b"Mime-Version: 1.0\r\n"
        b'Content-Type: text/plain; charset="us-ascii"\r\n'
        b"\r\n"
    )


def test_nested_multipart_sections() -> None:
    raw, _parsed = load("nested.eml")
    assert body(raw, SectionSpec(part=(1, 1))) == b"Plain text."
    assert body(raw, SectionSpec(part=(1, 2, 1))) == b'<p>HTML <img src="cid:img1"></p>'
    assert body(raw, SectionSpec(part=(1, 2, 2))) == b"iVBORw0KGgo="
    assert body(raw, SectionSpec(part=(2,))) == b"%PDF-1.4"
    related = body(raw, SectionSpec(part=(1, 2)))
    assert related.startswith(b"--rel\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<p>")
    assert related.endswith(b"iVBORw0KGgo=\r\n--rel--")
    assert len(related) == 196
    assert body(raw, SectionSpec(part=(1,), kind="MIME")) == (
        b"Content-Type: multipart/alternative; boundary=alt\r\n\r\n"
    )
    assert body(raw, SectionSpec(part=(1, 2, 2), kind="MIME")) == (
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <img1>\r\n\r\n"
    )
    assert body(raw, SectionSpec(part=(3,))) == b""
    assert body(raw, SectionSpec(part=(1, 3))) == b""
    assert body(raw, SectionSpec(part=(1, 2, 2, 1))) == b""


def test_message_rfc822_sections_refer_to_the_embedded_message() -> None:
    raw, _parsed = load("rfc822_nested.eml")
    middle_header = (
        b"From: middle@example.com\r\nTo: outer@example.com\r\nSubject: Middle\r\n"
        b"Message-ID: <middle@example.com>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b2"\r\n'
        b"\r\n"
    )
    inner_header = (
        b"From: inner@example.com\r\nSubject: Inner\r\nDate: Sat, 5 Jul 2003 11:00:00 +0000\r\n\r\n"
    )
    part2 = body(raw, SectionSpec(part=(2,)))
    assert part2.startswith(middle_header)
    assert part2.endswith(b"line 2\r\n--b2--")
    assert len(part2) == 378
    assert body(raw, SectionSpec(part=(2,), kind="MIME")) == (
        b"Content-Type: message/rfc822\r\nContent-Description: forwarded message\r\n\r\n"
    )
    assert body(raw, SectionSpec(part=(2,), kind="HEADER")) == middle_header
    assert body(raw, SectionSpec(part=(2,), kind="TEXT")) == part2[len(middle_header) :]
    assert body(raw, SectionSpec(part=(2,), kind="HEADER.FIELDS", fields=("subject",))) == (
        b"Subject: Middle\r\n\r\n"
    )
    assert body(raw, SectionSpec(part=(2, 1))) == b"Middle text."
    assert (
        body(raw, SectionSpec(part=(2, 1), kind="MIME"))
        == b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    assert body(raw, SectionSpec(part=(2, 2))) == inner_header + b"Inner body\r\nline 2"
    assert body(raw, SectionSpec(part=(2, 2), kind="HEADER")) == inner_header
    assert body(raw, SectionSpec(part=(2, 2), kind="TEXT")) == b"Inner body\r\nline 2"
    # The inner message is not multipart: its part 1 is its body, whose MIME header is its header.
    assert body(raw, SectionSpec(part=(2, 2, 1))) == b"Inner body\r\nline 2"
    assert body(raw, SectionSpec(part=(2, 2, 1), kind="MIME")) == inner_header
    assert body(raw, SectionSpec(part=(2, 2, 2))) == b""
    assert body(raw, SectionSpec(part=(2, 1), kind="HEADER")) == b""


def test_malformed_multiparts_sections() -> None:
    raw, _parsed = load("no_boundary.eml")
    assert (
        body(raw, SectionSpec(part=(1,))) == b"--foo\r\nContent-Type: text/plain\r\n\r\ntext\r\n--foo--\r\n"
    )
    assert body(raw, SectionSpec(part=(2,))) == b""
    raw, _parsed = load("unclosed.eml")
    assert body(raw, SectionSpec(part=(1,))) == b"first"
    assert body(raw, SectionSpec(part=(2,))) == b"<b>second</b>\r\n"
    assert body(raw, SectionSpec(part=(2,), kind="MIME")) == b"Content-Type: text/html\r\n\r\n"


def test_partial_fetches_cut_the_section() -> None:
    raw, _parsed = load("nested.eml")
    assert body(raw, SectionSpec(), (0, 10)) == raw[:10]
    assert body(raw, SectionSpec(part=(1, 2, 1)), (3, 4)) == b"HTML"
    assert body(raw, SectionSpec(part=(1, 2, 1)), (30, 100)) == b"p>"
    assert body(raw, SectionSpec(part=(1, 2, 1)), (32, 10)) == b""
    assert body(raw, SectionSpec(part=(1, 2, 1)), (1000, 10)) == b""
    assert body(raw, SectionSpec(kind="HEADER.FIELDS", fields=("Subject", "To")), (4, 12)) == (
        b"b@example.co"  # of "To: b@example.com\r\nSubject: Nested\r\n\r\n"
    )
    assert body(raw, SectionSpec(part=(9,)), (0, 10)) == b""


def test_section_reads_only_the_requested_range() -> None:
    raw, parsed = load("nested.eml")
    reads: list[tuple[int, int]] = []

    def read(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return raw[offset : offset + length]

    assert section_bytes(read, parsed, SectionSpec(part=(1, 2, 1)), (3, 4)) == b"HTML"
    start = raw.index(b"<p>HTML")
    assert reads == [(start + 3, 4)]


# -- BINARY --------------------------------------------------------------------------------------------------
def test_binary_decodes_quoted_printable_and_base64() -> None:
    raw, parsed = load("attachments.eml")
    qp = b"Gr\xc3\xbc\xc3\x9fe, softbreak and trailing space\r\n= end"
    assert binary_section(raw, parsed, (1,)) == qp
    assert binary_size(raw, parsed, (1,)) == len(qp)
    assert binary_section(raw, parsed, (2,)) == b"Hello, world!"
    assert binary_size(raw, parsed, (2,)) == 13
    assert binary_section(raw, parsed, (2,), (7, 5)) == b"world"
    assert binary_section(raw, parsed, ()) == raw
    assert binary_size(raw, parsed, ()) == len(raw)
    assert binary_section(raw, parsed, (3,)) == b""


def test_binary_of_nested_base64_image() -> None:
    raw, parsed = load("nested.eml")
    assert binary_section(raw, parsed, (1, 2, 2)) == b"\x89PNG\r\n\x1a\n"
    # Identity encodings are sent as stored, and their size needs no read.
    assert binary_section(raw, parsed, (1, 1)) == b"Plain text."

    def no_read(offset: int, length: int) -> bytes:
        raise AssertionError("read")

    assert binary_size(no_read, parsed, (1, 1)) == 11
    assert binary_size(no_read, parsed, (1, 2)) == 196  # a multipart is never decoded


def test_binary_of_an_unknown_transfer_encoding_is_none() -> None:
    raw = (
        b"Subject: uu\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n"
        b"\r\nbegin 644 x\r\n`\r\nend\r\n"
    )
    parsed = parse_message(io.BytesIO(raw))
    assert binary_section(raw, parsed, (1,)) is None
    assert binary_size(raw, parsed, (1,)) is None
    assert binary_section(raw, parsed, ()) == raw  # BINARY[] is the message as stored
