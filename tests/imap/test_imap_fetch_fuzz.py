"""FETCH renderers over every CPython email test message and over arbitrary bytes: ENVELOPE and BODYSTRUCTURE
always read back as well-formed IMAP data with the parsed part count; section extraction never raises and
partial results are slices of the full section."""

from __future__ import annotations

import io
import sysconfig
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from postoffice.message import BodyPart, ParsedMessage, parse_message
from tests.imap.test_imap_fetch_sexp import check_body, check_envelope, count_parts, read_sexp

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
