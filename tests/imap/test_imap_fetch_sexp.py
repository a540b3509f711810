"""A small, test-only reader of IMAP response data (RFC 9051 section 9: parenthesized lists, quoted strings,
literals, literal8, NIL, numbers, atoms), strict enough that rendered ENVELOPE and BODYSTRUCTURE must be
well-formed to read back; plus checks that read rendered structures back into their meaning."""

from __future__ import annotations

import re

import pytest

from postoffice.imap.fetch import bodystructure, envelope
from postoffice.message import BodyPart

Sexp = list["Sexp"] | bytes | int | None

_NUMBER = re.compile(rb"[0-9]+")
_ATOM = re.compile(rb'[^(){ %*"\\\]\x00-\x20\x7f]+')
_LITERAL = re.compile(rb"(~?)\{([0-9]+)\}\r\n")


class SexpError(ValueError):
    pass


class _Reader:
    def __init__(self, data: bytes, utf8: bool) -> None:
        self.data = data
        self.pos = 0
        self.utf8 = utf8

    def value(self) -> Sexp:
        data, pos = self.data, self.pos
        if pos >= len(data):
            raise SexpError("unexpected end")
        c = data[pos : pos + 1]
        if c == b"(":
            self.pos += 1
            items: list[Sexp] = []
            while True:
                if self.data[self.pos : self.pos + 1] == b")":
                    self.pos += 1
                    return items
                if items and self.data[self.pos : self.pos + 1] == b" ":
                    self.pos += 1
                items.append(self.value())
        if c == b'"':
            return self.quoted()
        m = _LITERAL.match(data, pos)
        if m is not None:
            n = int(m.group(2))
            end = m.end() + n
            if end > len(data):
                raise SexpError("literal runs past the end")
            body = data[m.end() : end]
            if not m.group(1) and b"\x00" in body:
                raise SexpError("NUL in a literal")
            self.pos = end
            return body
        if data.startswith(b"NIL", pos) and not _ATOM.match(data, pos + 3):
            self.pos += 3
            return None
        m = _NUMBER.match(data, pos)
        if m is not None and not _ATOM.match(data, m.end()):
            self.pos = m.end()
            return int(m.group())
        m = _ATOM.match(data, pos)
        if m is None:
            raise SexpError(f"unexpected {data[pos : pos + 10]!r} at {pos}")
        self.pos = m.end()
        return m.group()

    def quoted(self) -> bytes:
        out = bytearray()
        pos = self.pos + 1
        data = self.data
        while True:
            if pos >= len(data):
                raise SexpError("unterminated quoted string")
            b = data[pos]
            if b == 0x22:
                self.pos = pos + 1
                text = bytes(out)
                if not text.isascii():
                    if not self.utf8:
                        raise SexpError("8-bit in a quoted string")
                    text.decode("utf-8")  # raises if not UTF-8
                return text
            if b == 0x5C:
                if pos + 1 >= len(data) or data[pos + 1] not in b'"\\':
                    raise SexpError("bad escape")
                out.append(data[pos + 1])
                pos += 2
                continue
            if b in (0x0D, 0x0A, 0x00):
                raise SexpError("CR, LF or NUL in a quoted string")
            out.append(b)
            pos += 1


def read_sexp(data: bytes, *, utf8: bool = True) -> Sexp:
    """Read exactly one value from `data`; raises SexpError when it is not well-formed or has trailing bytes.

    `utf8=False` also rejects 8-bit bytes in quoted strings (IMAP4rev1 without UTF8=ACCEPT)."""
    reader = _Reader(data, utf8)
    value = reader.value()
    if reader.pos != len(data):
        raise SexpError(f"trailing bytes at {reader.pos}: {data[reader.pos : reader.pos + 10]!r}")
    return value


def check_envelope(value: Sexp) -> None:
    """The RFC 9051 envelope shape: 10 fields, nstrings and address lists of 4 nstrings each."""
    assert isinstance(value, list)
    assert len(value) == 10
    for i in (0, 1, 8, 9):
        assert value[i] is None or isinstance(value[i], bytes)
    for i in range(2, 8):
        addresses = value[i]
        assert addresses is None or (isinstance(addresses, list) and addresses)
        for address in addresses or []:
            assert isinstance(address, list)
            assert len(address) == 4
            assert all(v is None or isinstance(v, bytes) for v in address)


def check_body(value: Sexp, extended: bool) -> int:
    """The RFC 9051 body shape; returns the number of parts (every body, multipart and embedded included)."""
    assert isinstance(value, list)
    assert value
    if isinstance(value[0], list):  # multipart: 1*body SP subtype [ext]
        count = 1
        index = 0
        while index < len(value) and isinstance(value[index], list):
            count += check_body(value[index], extended)
            index += 1
        assert index >= 1
        assert isinstance(value[index], bytes)  # subtype
        rest = value[index + 1 :]
        assert len(rest) == (4 if extended else 0)
        if extended:
            _check_params(rest[0])
            _check_extension(rest[1:])
        return count
    assert len(value) >= 7
    media, subtype, params, id_, description, encoding, size = value[:7]
    assert isinstance(media, bytes)
    assert isinstance(subtype, bytes)
    _check_params(params)
    assert id_ is None or isinstance(id_, bytes)
    assert description is None or isinstance(description, bytes)
    assert isinstance(encoding, bytes)
    assert isinstance(size, int)
    rest = value[7:]
    count = 1
    if (media.upper(), subtype.upper()) in ((b"MESSAGE", b"RFC822"), (b"MESSAGE", b"GLOBAL")):
        check_envelope(rest[0])
        count += check_body(rest[1], extended)
        assert isinstance(rest[2], int)
        rest = rest[3:]
    elif media.upper() == b"TEXT":
        assert isinstance(rest[0], int)
        rest = rest[1:]
    assert len(rest) == (4 if extended else 0)
    if extended:
        assert rest[0] is None or isinstance(rest[0], bytes)  # md5
        _check_extension(rest[1:])
    return count


def _check_params(params: Sexp) -> None:
    assert params is None or (isinstance(params, list) and params and len(params) % 2 == 0)
    assert all(isinstance(p, bytes) for p in params or [])


def _check_extension(values: list[Sexp]) -> None:
    disposition, language, location = values
    if disposition is not None:
        assert isinstance(disposition, list)
        assert len(disposition) == 2
        assert isinstance(disposition[0], bytes)
        _check_params(disposition[1])
    assert language is None or isinstance(language, bytes) or (isinstance(language, list) and language)
    assert location is None or isinstance(location, bytes)


def count_parts(part: BodyPart) -> int:
    """Parts as `check_body` counts them: every BodyPart, with one for an empty multipart's stand-in child."""
    n = 1 + sum(count_parts(child) for child in part.parts)
    if part.type == "multipart" and not part.parts:
        n += 1
    if part.embedded is not None and part.type == "message" and part.subtype in ("rfc822", "global"):
        n += count_parts(part.embedded)
    return n


# -- the reader itself ---------------------------------------------------------------------------------------
def test_reader_reads_lists_strings_literals_numbers_and_nil() -> None:
    assert read_sexp(b'(NIL "a\\"b" {3}\r\nx y 12 ATOM (("x")("y")) ~{2}\r\n\x00\x01)') == [
        None,
        b'a"b',
        b"x y",
        12,
        b"ATOM",
        [[b"x"], [b"y"]],
        b"\x00\x01",
    ]


@pytest.mark.parametrize(
    "bad",
    [b"(", b"(a))", b'"abc', b'"a\r\nb"', b"{5}\r\nabc", b"(a  b)", b'"\\x"', b"{2}\r\n\x00a", b"", b"NIL x"],
)
def test_reader_rejects_malformed_data(bad: bytes) -> None:
    with pytest.raises(SexpError):
        read_sexp(bad)


def test_reader_rejects_8bit_quoted_strings_for_rev1() -> None:
    with pytest.raises(SexpError):
        read_sexp(b'"K\xc3\xb6ln"', utf8=False)
    assert read_sexp(b'"K\xc3\xb6ln"') == b"K\xc3\xb6ln"


# -- renderers against malformed stored structures -----------------------------------------------------------
def test_multipart_without_children_still_renders_one_body() -> None:
    part = BodyPart(type="multipart", subtype="mixed", params=[("boundary", "x")])
    rendered = bodystructure(part, extended=True, utf8=False)
    assert rendered == (
        b'(("TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL) '
        b'"MIXED" ("boundary" "x") NIL NIL NIL)'
    )
    assert check_body(read_sexp(rendered), True) == count_parts(part)
    assert bodystructure(part, extended=False, utf8=False) == (
        b'(("TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "7BIT" 0 0) "MIXED")'
    )


def test_message_part_without_embedded_message_is_sent_as_octet_stream() -> None:
    part = BodyPart(type="message", subtype="rfc822", params=[], body_start=10, body_end=30, lines=2)
    assert bodystructure(part, extended=False, utf8=False) == (
        b'("APPLICATION" "OCTET-STREAM" NIL NIL NIL "7BIT" 20)'
    )


def test_envelope_of_malformed_stored_data_is_still_valid() -> None:
    for env in [
        None,
        [],
        ["d"],
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        ["d", "s", [["a"], None, 5, [None] * 4]],
    ]:
        value = read_sexp(envelope(env, utf8=False))
        check_envelope(value)


def test_extension_fields_render_language_and_disposition() -> None:
    part = BodyPart(
        type="text",
        subtype="plain",
        params=[("charset", "utf-8")],
        md5="abc",
        disposition=("inline", []),
        language=["en"],
        location="x",
    )
    assert bodystructure(part, extended=True, utf8=False) == (
        b'("TEXT" "PLAIN" ("charset" "utf-8") NIL NIL "7BIT" 0 0 "abc" ("INLINE" NIL) ("en") "x")'
    )
