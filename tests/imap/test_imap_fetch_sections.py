"""Edge cases of section resolution (RFC 9051 6.4.5), header filtering and transfer decoding (RFC 3516)."""

from __future__ import annotations

import io

from postoffice.imap.fetch import (
    SectionSpec,
    binary_section,
    bodystructure,
    decode_base64,
    decode_quoted_printable,
    decode_transfer_encoding,
    filter_header,
    section_bytes,
    section_label,
)
from postoffice.message import ParsedMessage, parse_message


def parse(raw: bytes) -> ParsedMessage:
    return parse_message(io.BytesIO(raw))


def test_header_only_message_without_blank_line_gets_no_blank_line() -> None:
    raw = b"Subject: only a header\r\nX-A: 1"
    parsed = parse(raw)
    # RFC 9051 6.4.5: the blank line is included "except in the case of a message that has no body and no
    # blank line". A last field without line end gets one, so the field is complete.
    assert section_bytes(raw, parsed, SectionSpec(kind="HEADER.FIELDS", fields=("x-a",))) == b"X-A: 1\r\n"
    assert section_bytes(raw, parsed, SectionSpec(kind="HEADER")) == raw
    assert section_bytes(raw, parsed, SectionSpec(kind="TEXT")) == b""


def test_header_fields_when_the_body_follows_without_blank_line() -> None:
    raw = b"Content-Type: text/plain\r\nSubject: s\r\nbody text without the empty line\r\n"
    parsed = parse(raw)
    assert section_bytes(raw, parsed, SectionSpec(kind="HEADER.FIELDS", fields=("subject",))) == (
        b"Subject: s\r\n\r\n"
    )


def test_filter_header_skips_non_field_lines_and_their_continuations() -> None:
    block = b"From a@b Sat Jan  3 01:05:34 1996\r\nA: 1\r\nnot a field\r\n cont\r\nB : 2\r\n\tmore\r\n\r\n"
    assert filter_header(block, frozenset({b"a", b"b"}), exclude=False, body_follows=True) == (
        b"A: 1\r\nB : 2\r\n\tmore\r\n\r\n"
    )
    assert (
        filter_header(block, frozenset({b"a"}), exclude=True, body_follows=True) == b"B : 2\r\n\tmore\r\n\r\n"
    )
    assert filter_header(b"", frozenset(), exclude=True, body_follows=False) == b""


def test_top_level_message_rfc822_has_nested_part_numbers() -> None:
    inner = b"Subject: inner\r\n\r\ninner body\r\n"
    raw = b"Subject: outer\r\nContent-Type: message/rfc822\r\n\r\n" + inner
    parsed = parse(raw)
    assert section_bytes(raw, parsed, SectionSpec(part=(1,))) == inner
    assert section_bytes(raw, parsed, SectionSpec(part=(1,), kind="HEADER")) == b"Subject: inner\r\n\r\n"
    assert section_bytes(raw, parsed, SectionSpec(part=(1,), kind="TEXT")) == b"inner body\r\n"
    assert section_bytes(raw, parsed, SectionSpec(part=(1, 1))) == b"inner body\r\n"
    assert section_bytes(raw, parsed, SectionSpec(kind="TEXT")) == inner


def test_message_global_is_rendered_like_message_rfc822() -> None:
    raw = (
        b"Content-Type: message/global\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"Subject: caf\xc3\xa9\r\n\r\nx"
    )
    rendered = bodystructure(parse(raw).body, extended=False, utf8=True)
    assert rendered == (
        b'("MESSAGE" "GLOBAL" NIL NIL NIL "8BIT" 19 (NIL "caf\xc3\xa9" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "7BIT" 1 1) 3)'
    )


def test_sources_can_be_bytes_memoryview_or_reader() -> None:
    raw = b"Subject: s\r\n\r\nhello"
    parsed = parse(raw)
    spec = SectionSpec(kind="TEXT")
    assert section_bytes(memoryview(raw), parsed, spec) == b"hello"
    assert section_bytes(bytearray(raw), parsed, spec, (1, 3)) == b"ell"
    assert section_bytes(lambda offset, length: raw[offset : offset + length], parsed, spec) == b"hello"
    assert binary_section(memoryview(raw), parsed, (1,)) == b"hello"


def test_section_label_echoes_the_section() -> None:
    assert section_label(SectionSpec()) == b""
    assert section_label(SectionSpec(part=(1, 2))) == b"1.2"
    assert section_label(SectionSpec(part=(3,), kind="MIME")) == b"3.MIME"
    assert section_label(SectionSpec(kind="HEADER.FIELDS", fields=("Date", "X Y"))) == (
        b'HEADER.FIELDS (Date "X Y")'
    )


def test_base64_decoding_is_lenient() -> None:
    assert decode_base64(b"SGVs\r\nbG8=") == b"Hello"
    assert decode_base64(b"SG Vs!bG*8") == b"Hello"  # garbage and spaces skipped, missing padding tolerated
    assert decode_base64(b"QQ==QkM=") == b"ABC"  # concatenated padded blocks
    assert decode_base64(b"QUJDR") == b"ABC"  # a lone trailing character is dropped
    assert decode_base64(b"") == b""
    assert decode_base64(b"====") == b""


def test_quoted_printable_decoding() -> None:
    assert decode_quoted_printable(b"a=3D=3d b  \r\nc=\r\nd=\ne=\rf=") == b"a== b\r\ncdef"
    assert decode_quoted_printable(b"=G1 =\t \r\nx") == b"=G1 x"
    assert decode_transfer_encoding(b"x", " base64 ") == b""
    assert decode_transfer_encoding(b"=41", "Quoted-Printable") == b"A"
    assert decode_transfer_encoding(b"\x00\xff", "binary") == b"\x00\xff"
    assert decode_transfer_encoding(b"x", "x-uuencode") is None
