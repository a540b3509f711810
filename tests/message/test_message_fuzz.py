"""Property tests: parse_message never raises, keeps its invariants on any bytes, and recovers exactly the
structure of generated well-formed MIME trees (random boundaries, nesting, line ends, padding, folding)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.message import parse_message
from postoffice.message import scanner as scanner_module
from tests.message.message_invariants import check_invariants, parse_bytes, walk

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EOLS = [b"\r\n", b"\n", b"\r"]
NOISE = [
    *[bytes([c]) for c in b'\r\n-B b:;=\x00"()<>,'],
    b"--",
    b"Content-Type: multipart/mixed; boundary=B",
    b"Content-Type: multipart/digest; boundary*0=B",
    b"Content-Type: message/rfc822",
    b"Content-Transfer-Encoding: base64",
    b"=?utf-8?b?",
    b"?=",
    b"From: <a@b>",
    b"To: g:;",
]
BODY_LINE = st.text(alphabet="abcxyz -.=:\t\x00\xe9", max_size=30).map(lambda s: s.encode("latin-1"))


@dataclass
class Spec:
    """What a generated entity must parse to."""

    type: str
    subtype: str
    body: bytes = b""  # leaves only: the exact body bytes
    children: list[Spec] = field(default_factory=list)
    embedded: Spec | None = None


def _flatten(spec: Spec) -> list[Spec]:
    out = [spec]
    for child in spec.children:
        out.extend(_flatten(child))
    if spec.embedded is not None:
        out.extend(_flatten(spec.embedded))
    return out


@st.composite
def _header(draw: st.DrawFn, eol: bytes, content_type: bytes | None, params: list[bytes]) -> bytes:
    lines: list[bytes] = []
    if draw(st.booleans()):
        lines.append(b"X-Before: " + draw(BODY_LINE).replace(b"\x00", b"."))
    if content_type is not None:
        name = draw(st.sampled_from([b"Content-Type", b"content-type", b"CONTENT-TYPE", b"Content-Type "]))
        line = name + b": " + content_type
        for param in params:
            line += b";" + draw(st.sampled_from([b" ", eol + b"\t", eol + b"  "])) + param
        lines.append(line)
    if draw(st.booleans()):
        lines.append(b"Content-Description:" + eol + b" folded")
    return b"".join(line + eol for line in lines) + eol


_counter = iter(range(10**9))


@st.composite
def entity(draw: st.DrawFn, eol: bytes, depth: int, trailer: bytes) -> tuple[bytes, Spec]:
    """(bytes, spec) of one entity; `trailer` is what follows the entity up to the end of its enclosing body
    (it belongs to a leaf body at the end, never to a multipart's children)."""
    kinds = ["leaf", "leaf", "multipart", "message"] if depth < 3 else ["leaf"]
    kind = draw(st.sampled_from(kinds))
    if kind == "leaf":
        typ = draw(st.sampled_from([None, b"text/plain", b"application/octet-stream", b"image/png"]))
        params = [b'charset="utf-8"'] if typ == b"text/plain" and draw(st.booleans()) else []
        header = draw(_header(eol, typ, params))
        body = eol.join(draw(st.lists(BODY_LINE, max_size=4)))
        if typ is None:
            maintype, subtype = "text", "plain"
        else:
            maintype, subtype = typ.decode().split("/")
        return header + body + trailer, Spec(maintype, subtype, body + trailer)
    if kind == "message":
        header = draw(_header(eol, b"message/rfc822", []))
        inner, inner_spec = draw(entity(eol, depth + 1, trailer))
        return header + inner, Spec("message", "rfc822", embedded=inner_spec)
    boundary = f"B{next(_counter)}{draw(st.text(alphabet='az09_.=+', max_size=8))}".encode()
    multipart_subtype = draw(st.sampled_from([b"mixed", b"alternative", b"related"]))
    quoted = b'"' + boundary + b'"'
    header = draw(_header(eol, b"multipart/" + multipart_subtype, [b"boundary=" + quoted]))
    out = header
    if draw(st.booleans()):
        out += draw(BODY_LINE) + eol  # preamble
    children: list[Spec] = []
    for _ in range(draw(st.integers(1, 3))):
        padding = draw(st.sampled_from([b"", b" ", b"\t ", b"  "]))
        child, child_spec = draw(entity(eol, depth + 1, b""))
        out += b"--" + boundary + padding + eol + child + eol
        children.append(child_spec)
    out += b"--" + boundary + b"--" + draw(st.sampled_from([b"", b" "]))
    if draw(st.booleans()):
        out += eol + draw(BODY_LINE)  # epilogue
    return out + trailer, Spec("multipart", multipart_subtype.decode(), children=children)


@st.composite
def message(draw: st.DrawFn) -> tuple[bytes, Spec]:
    eol = draw(st.sampled_from(EOLS))
    trailer = draw(st.sampled_from([b"", eol]))
    return draw(entity(eol, 0, trailer))


@SETTINGS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise_and_keep_invariants(raw: bytes) -> None:
    check_invariants(raw, parse_bytes(raw))


@SETTINGS
@given(st.lists(st.sampled_from(NOISE), max_size=120))
def test_mime_shaped_noise_never_raises_and_keeps_invariants(pieces: list[bytes]) -> None:
    raw = b"".join(pieces)
    check_invariants(raw, parse_bytes(raw))


@SETTINGS
@given(message())
def test_generated_mime_trees_are_recovered_exactly(generated: tuple[bytes, Spec]) -> None:
    raw, spec = generated
    parsed = parse_bytes(raw)
    check_invariants(raw, parsed)
    got = list(walk(parsed.body))
    want = _flatten(spec)
    assert [(p.type, p.subtype) for p in got] == [(s.type, s.subtype) for s in want]
    for part, expected in zip(got, want, strict=True):
        if not part.parts and part.embedded is None:
            assert raw[part.body_start : part.body_end] == expected.body


EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 40), st.binary(max_size=12)), max_size=4)


@SETTINGS
@given(message(), EDITS)
def test_mutated_mime_trees_never_raise_and_keep_invariants(
    generated: tuple[bytes, Spec], edits: list[tuple[int, int, bytes]]
) -> None:
    raw = generated[0]
    for position, length, insert in edits:
        position %= len(raw) + 1
        raw = raw[:position] + insert + raw[position + length :]
    check_invariants(raw, parse_bytes(raw))


@settings(max_examples=100, deadline=None)
@given(message(), st.integers(1, 9))
def test_result_does_not_depend_on_read_chunk_size(generated: tuple[bytes, Spec], chunk: int) -> None:
    raw = generated[0]
    expected = parse_message(io.BytesIO(raw))
    with mock.patch.object(scanner_module, "CHUNK_SIZE", chunk):
        assert parse_message(io.BytesIO(raw)) == expected


PREFIX_FIELDS = st.lists(
    st.tuples(
        st.sampled_from(
            ["Authentication-Results", "X-Spam-Status", "Received", "Subject", "ARC-Seal", "X-É"]
        ),
        st.text(alphabet="abc =;.()@\u00e9\u4e2d", min_size=1, max_size=40),
    ),
    min_size=1,
    max_size=3,
)


@given(message(), PREFIX_FIELDS)
def test_a_parse_derived_for_prefixed_fields_is_the_parse_of_the_prefixed_text(
    generated: tuple[bytes, Spec], fields: list[tuple[str, str]]
) -> None:
    """`with_prefix` (the delivery pipeline's shortcut for header fields a stage adds): when it gives a
    parse, it is exactly the parse of the prefixed bytes."""
    from postoffice.delivery.plan import header_field
    from postoffice.message.parser import with_prefix

    raw, _spec = generated
    raw = b"From: a@example.test\r\nSubject: s\r\n" + raw if raw[:1] in (b"\r", b"\n") else raw
    try:
        prefix = b"".join(header_field(name, value) for name, value in fields)
    except ValueError:
        return  # not a field a stage could add
    original = parse_message(io.BytesIO(raw))
    derived = with_prefix(original, prefix)
    again = parse_message(io.BytesIO(prefix + raw))
    if derived is not None:
        assert derived == again
    if any(name == "Subject" for name, _ in fields):
        assert derived is None  # a field the parse reads: parsed again


def test_the_usual_prefix_is_derived_and_equal() -> None:
    from postoffice.message.parser import with_prefix

    raw = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nHello\r\n"
    prefix = b"Authentication-Results: mx.example.test;\r\n\tspf=pass smtp.mailfrom=example.test\r\n"
    derived = with_prefix(parse_message(io.BytesIO(raw)), prefix)
    assert derived is not None
    assert derived == parse_message(io.BytesIO(prefix + raw))
    assert derived.search_headers.startswith("Authentication-Results: mx.example.test;")
