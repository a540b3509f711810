"""FETCH renderers over every CPython email test message and over arbitrary bytes: ENVELOPE and BODYSTRUCTURE
always read back as well-formed IMAP data with the parsed part count; section extraction never raises and
partial results are slices of the full section."""

from __future__ import annotations

import io
import re
import sysconfig
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.imap.fetch import (
    SectionSpec,
    binary_section,
    binary_size,
    bodystructure,
    decode_base64,
    decode_quoted_printable,
    envelope,
    filter_header,
    find_part,
    locate_section,
    section_bytes,
)
from postoffice.message import BodyPart, ParsedMessage, parse_message
from tests.imap.test_imap_fetch_sexp import check_body, check_envelope, count_parts, read_sexp
from tests.support.bounds import CALL_BOUND, bounded

DATA = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"
MESSAGES = sorted(DATA.glob("msg_*.txt"))


def parse(raw: bytes) -> ParsedMessage:
    return parse_message(io.BytesIO(raw))


def check_rendering(parsed: ParsedMessage) -> None:
    for utf8 in (False, True):
        check_envelope(read_sexp(envelope(parsed.envelope, utf8=utf8), utf8=utf8))
        for extended in (False, True):
            rendered = bodystructure(parsed.body, extended=extended, utf8=utf8)
            assert check_body(read_sexp(rendered, utf8=utf8), extended) == count_parts(parsed.body)


def numbered_parts(body: BodyPart, prefix: tuple[int, ...] = ()) -> list[tuple[tuple[int, ...], BodyPart]]:
    """Every part number of a message as a client derives it from BODYSTRUCTURE (RFC 9051 6.4.5)."""
    children = body.parts if body.type == "multipart" else [body]
    out: list[tuple[tuple[int, ...], BodyPart]] = []
    for i, child in enumerate(children, 1):
        out += _numbered(child, (*prefix, i))
    return out


def _numbered(part: BodyPart, path: tuple[int, ...]) -> list[tuple[tuple[int, ...], BodyPart]]:
    out = [(path, part)]
    if part.type == "multipart":
        for j, child in enumerate(part.parts, 1):
            out += _numbered(child, (*path, j))
    elif part.embedded is not None:
        out += numbered_parts(part.embedded, path)
    return out


def test_cpython_corpus_is_present() -> None:
    assert len(MESSAGES) > 40


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.name)
def test_cpython_message_renders_well_formed_structures(path: Path) -> None:
    raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    parsed = ParsedMessage.from_json(parse(raw).to_json())
    check_rendering(parsed)
    # Every part a client can name from the BODYSTRUCTURE resolves to that part, and its body is its bytes.
    for number, part in numbered_parts(parsed.body):
        assert find_part(parsed.body, number) is part
        assert section_bytes(raw, parsed, SectionSpec(part=number)) == raw[part.body_start : part.body_end]
        assert (
            section_bytes(raw, parsed, SectionSpec(part=number, kind="MIME"))
            == (raw[part.header_start : part.body_start])
        )
        binary_section(raw, parsed, number)
    header = section_bytes(raw, parsed, SectionSpec(kind="HEADER"))
    assert header + section_bytes(raw, parsed, SectionSpec(kind="TEXT")) == raw


_kinds = st.sampled_from([None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"])
_sections = st.builds(
    SectionSpec,
    part=st.lists(st.one_of(st.integers(-1, 4), st.integers(-(2**70), 2**70)), max_size=4).map(tuple),
    kind=_kinds,
    fields=st.lists(st.sampled_from(["Subject", "from", "X-A", "content-type", "é", ""]), max_size=3).map(
        tuple
    ),
)
_partials = st.one_of(st.none(), st.tuples(st.integers(0, 300), st.one_of(st.none(), st.integers(0, 300))))

_LINES = [
    b"From: a@b.c",
    b"Subject: x",
    b" folded",
    b"X-A: y",
    b"Content-Type: multipart/mixed; boundary=b",
    b"Content-Type: message/rfc822",
    b"Content-Type: text/plain; name*0=a; name*1=\xc3\xa9",
    b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: quoted-printable",
    b"To: g: a@b, c <d@e>;, f (g)",
    b"--b",
    b"--b--",
    b"",
    b"QUJD=3D",
    b"garbage\x00\xff",
]
_messages = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from(_LINES), max_size=30).map(lambda lines: b"\r\n".join(lines)),
    st.lists(st.sampled_from(_LINES), max_size=30).map(lambda lines: b"\n".join(lines) + b"\r\n"),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_messages)
def test_any_message_renders_well_formed_structures(raw: bytes) -> None:
    check_rendering(parse(raw))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_messages, _sections, _partials)
def test_sections_never_raise_and_partials_are_slices(
    raw: bytes, section: SectionSpec, partial: tuple[int, int | None] | None
) -> None:
    parsed = parse(raw)
    full = section_bytes(raw, parsed, section)
    assert isinstance(full, bytes)
    if locate_section(parsed, section) is None:
        assert full == b""
    cut = section_bytes(raw, parsed, section, partial)
    if partial is None:
        assert cut == full
    else:
        origin, octets = partial
        assert cut == (full[origin:] if octets is None else full[origin : origin + octets])
    reads: list[int] = []

    def read(offset: int, length: int) -> bytes:
        reads.append(length)
        return raw[offset : offset + length]

    assert section_bytes(read, parsed, section, partial) == cut
    binary = binary_section(raw, parsed, section.part, partial)
    size = binary_size(raw, parsed, section.part)
    if binary is None:
        assert size is None
    elif partial is None:
        assert size == len(binary)


# -- pathological input: linear time (issue 9 item 1) ------------------------------------------------------
_FIELD_LINE = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
_ANY_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def reference_filter_header(
    block: bytes, names: frozenset[bytes], *, exclude: bool, body_follows: bool
) -> bytes:
    """HEADER.FIELDS line by line, the obvious way (the implementation before the regex one)."""
    lines = _ANY_LINE.findall(block)
    blank = lines.pop() if lines and lines[-1] in (b"\r\n", b"\n", b"\r") else b""
    out: list[bytes] = []
    keep = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        m = _FIELD_LINE.match(line)
        keep = m is not None and (m.group(1).lower() in names) != exclude
        if keep:
            out.append(line)
    if out and not out[-1].endswith((b"\n", b"\r")):
        out[-1] += b"\r\n"
    if blank:
        out.append(blank)
    elif body_follows:
        out.append(b"\r\n")
    return b"".join(out)


_header_pieces = st.sampled_from(
    [
        b"From",
        b"from",
        b"To",
        b"X-A",
        b"x-a",
        b"Subject",
        b"B ",
        b":",
        b": v",
        b" ",
        b"\t",
        b"x",
        b"a:b",
        b"\xc3\xa9",
    ]
)
_header_blocks = st.lists(
    st.tuples(
        st.lists(_header_pieces, max_size=4).map(b"".join), st.sampled_from([b"\r\n", b"\n", b"\r", b""])
    ),
    max_size=12,
).map(lambda lines: b"".join(content + end for content, end in lines))
_field_names = st.frozensets(
    st.sampled_from([b"from", b"to", b"x-a", b"subject", b"b", b"a:b", b"x y", b"", b"\xc3\xa9", b"fro"]),
    max_size=5,
) | st.frozensets(st.binary(min_size=1, max_size=3), max_size=40)


@settings(max_examples=500, deadline=None)
@given(_header_blocks, _field_names, st.booleans(), st.booleans())
def test_filter_header_agrees_with_the_line_by_line_reference(
    block: bytes, names: frozenset[bytes], exclude: bool, body_follows: bool
) -> None:
    names = frozenset(name.lower() for name in names)
    expected = reference_filter_header(block, names, exclude=exclude, body_follows=body_follows)
    got = bounded(CALL_BOUND, filter_header, block, names, exclude=exclude, body_follows=body_follows)
    assert got == expected


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([b"a: 1\r\n", b"a\r\n", b" x\r\n", b"From: x\r\n\tmore\r\n", b"a" * 1000 + b"\r\n"]))
def test_filter_header_of_a_huge_header_is_linear(line: bytes) -> None:
    block = line * (4_000_000 // len(line)) + b"Subject: s\r\n\r\n"
    for names, exclude in ((frozenset({b"subject"}), False), (frozenset({b"a"}), True)):
        out = bounded(CALL_BOUND, filter_header, block, names, exclude=exclude, body_follows=True)
        assert out.endswith(b"Subject: s\r\n\r\n")


def reference_quoted_printable(data: bytes) -> bytes:
    """RFC 2045 6.7 as `decode_quoted_printable` documents it, byte by byte."""
    lines = re.split(rb"(\r\n|\r|\n)", data)
    out = bytearray()
    for i in range(0, len(lines), 2):
        line = lines[i].rstrip(b" \t")
        end = lines[i + 1] if i + 1 < len(lines) else b""
        j = 0
        while j < len(line):
            if line[j : j + 1] == b"=":
                pair = line[j + 1 : j + 3]
                if len(pair) == 2 and all(c in b"0123456789ABCDEFabcdef" for c in pair):
                    out.append(int(pair, 16))
                    j += 3
                    continue
                if j == len(line) - 1:  # soft line break: "=" at the end of a line (or of the data)
                    end = b""
                    j += 1
                    continue
            out.append(line[j])
            j += 1
        out += end
    return bytes(out)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b" ", b"\t", b"=", b"=4", b"=41", b"=0a", b"x", b"\r\n", b"\r", b"\n"])))
def test_quoted_printable_agrees_with_the_reference(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    assert decode_quoted_printable(data) == reference_quoted_printable(data)


@settings(max_examples=10, deadline=None)
@given(st.sampled_from([b" ", b"\t", b" \t"]), st.sampled_from([b"x", b"=", b"=4", b""]))
def test_quoted_printable_with_long_runs_of_blanks_is_linear(blank: bytes, after: bytes) -> None:
    """A run of blanks not at a line end was retried from every position of the run: 20,000 blanks took
    9 s (BINARY of such a part ran on the event loop)."""
    data = blank * (400_000 // len(blank)) + after
    decoded = bounded(CALL_BOUND, decode_quoted_printable, data)
    assert decoded == reference_quoted_printable(data)


def test_base64_full_of_padding_is_decoded_in_linear_time_and_memory() -> None:
    """Every "=" used to split the body into a Python object: 6 MB of "A=" made a list of three million."""
    data = b"QUJD" + b"A=" * 3_000_000
    tracemalloc.start()
    try:
        decoded = bounded(CALL_BOUND, decode_base64, data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded.startswith(b"ABC")
    assert peak < 4 * len(data)
    # a few padded blocks are still decoded one by one
    assert decode_base64(b"QQ==\r\nQkM=\r\nRA") == b"ABCD"
