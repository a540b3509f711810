"""Resource bounds: a 50 MB message parses in bounded memory, inputs built to trigger quadratic or unbounded
work (in the parser or in the stdlib helpers it calls) still finish, and the costly shapes parse within a
generous wall-clock bound (`tests.support.bounds`: it proves "not pathological", it is not a benchmark)."""

from __future__ import annotations

import base64
import re
import tracemalloc
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.message import MAX_PARTS, MAX_SEARCH_TEXT, parse_message
from tests.message.message_invariants import check_invariants, parse_bytes, walk
from tests.message.pathological import pathological_messages
from tests.support.bounds import CALL_BOUND, bounded

MB = 1024 * 1024


def _write_big_message(path: Path, attachment_bytes: int, text_bytes: int) -> None:
    line = base64.b64encode(bytes(range(256)) * 3)[:76] + b"\r\n"  # 76 base64 characters per line
    text_line = b"The quick brown fox jumps over the lazy dog, again and again. 0123456789\r\n"
    with path.open("wb") as out:
        out.write(
            b"From: big@example.com\r\nTo: you@example.com\r\nSubject: big\r\n"
            b'Content-Type: multipart/mixed; boundary="big-boundary"\r\n\r\n'
            b"--big-boundary\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        )
        written = 0
        block = text_line * 1000
        while written < text_bytes:
            out.write(block)
            written += len(block)
        out.write(
            b"--big-boundary\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
        )
        written = 0
        block = line * 10000
        while written < attachment_bytes:
            out.write(block)
            written += len(block)
        out.write(b"--big-boundary--\r\n")


@pytest.mark.slow
def test_fifty_megabyte_message_parses_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.eml"
    _write_big_message(path, attachment_bytes=44 * MB, text_bytes=6 * MB)
    size = path.stat().st_size
    assert size > 50 * MB
    with path.open("rb") as fp:
        tracemalloc.start()
        try:
            parsed = parse_message(fp)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # The search text alone may hold MAX_SEARCH_TEXT characters (4 MiB of ASCII); joining it once more.
    assert peak < 16 * MB, peak
    assert parsed.size == size
    text, attachment = parsed.body.parts
    assert (text.type, attachment.type) == ("text", "application")
    assert attachment.body_end - attachment.body_start >= 44 * MB
    assert attachment.lines == (attachment.body_end - attachment.body_start + 2) // 78
    assert parsed.search_truncated
    assert len(parsed.search_text) == MAX_SEARCH_TEXT
    assert parsed.search_text.startswith("The quick brown fox")


@pytest.mark.parametrize(
    "raw",
    [
        # parameter splitting: many semicolons inside an unterminated quoted string (quadratic in the stdlib)
        b'Content-Type: text/plain; a="' + b";" * 500_000 + b"\r\n\r\nx",
        b"Content-Type: text/plain" + b"; a=b" * 200_000 + b"\r\n\r\nx",
        b"Content-Disposition: attachment" + b"; x*1*=%41" * 100_000 + b"\r\n\r\n",
        # encoded-word scanning
        b"Subject: " + b"=?" * 400_000 + b"\r\n\r\n",
        b"Subject: " + b"=?utf-8?q?a?= " * 60_000 + b"\r\n\r\n",
        # address tokenizing
        b"From: " + b"(" * 300_000 + b"\r\nTo: " + b"<" * 300_000 + b"\r\n",
        b"Cc: " + b"a@b," * 200_000 + b"\r\nBcc: " + b'"' * 200_000 + b"\r\n\r\n",
        # boundary checks against a deep stack of enclosing boundaries, on many dash lines
        b"".join(b"Content-Type: multipart/mixed; boundary=%d\r\n\r\n--%d\r\n" % (i, i) for i in range(49))
        + b"\r\n"
        + b"--x\r\n" * 300_000,
        # header lines that are not fields, each followed later by a field (re-reading is bounded)
        b"Subject: x\r\n" + (b"not a field\r\n" * 10 + b"X: y\r\n") * 20_000 + b"\r\nbody",
        b"Subject: x\r\n" + b"not a field\r\n" * 400_000,
        # many header fields and many tiny parts
        b"X: y\r\n" * 500_000 + b"\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n" * 300_000,
        # one enormous line, no terminator at all
        b"Subject: " + b"x" * (5 * MB),
        b"\r" * MB + b"\n" * MB,
    ],
    ids=lambda raw: repr(raw[:40]),
)
def test_pathological_inputs_finish(raw: bytes) -> None:
    parsed = parse_bytes(raw)
    check_invariants(raw, parsed)
    assert sum(1 for _ in walk(parsed.body)) <= 5000


# -- time (issue 9 item 1) ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(pathological_messages(1024)))
def test_pathological_shapes_parse_in_bounded_time(name: str) -> None:
    """Every shape of tests/message/pathological.py at 1 MiB, well within a generous bound (the parser's
    caps bound its Python work; bench/pathological_mime.py has the numbers). 3,000 sibling multiparts with
    their own boundaries took 0.9 s at 250 KiB (two regular expressions compiled per multipart)."""
    raw = pathological_messages(MB)[name]
    parsed = bounded(CALL_BOUND, parse_bytes, raw)
    check_invariants(raw, parsed)
    assert sum(1 for _ in walk(parsed.body)) <= MAX_PARTS


_UNITS = st.sampled_from(
    [
        b"--b\r\n",
        b"\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"To: a (b) @ c, ",
        b"(",
        b'"\\',
        b"=?utf-8?q?a?= ",
        b"X: y\r\n",
        b" folded\r\n",
        b"junk line\r\n",
        b"=4",
    ]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_UNITS, min_size=1, max_size=6), st.booleans())
def test_repeated_mime_shapes_parse_in_bounded_time(units: list[bytes], numbered: bool) -> None:
    """Any mix of the costly pieces, repeated to 256 KiB (the largest size parsed on the event loop), the
    boundaries numbered or not (a multipart with its own boundary, or all sharing one)."""
    unit = b"".join(units)
    count = 256 * 1024 // len(unit) + 1
    if numbered and b"boundary=b" in unit:
        raw = b"".join(unit.replace(b"boundary=b", b"boundary=b%d" % i) for i in range(count))
    else:
        raw = unit * count
    parsed = bounded(CALL_BOUND, parse_bytes, raw)
    check_invariants(raw, parsed)


def test_multiparts_with_their_own_boundaries_compile_no_expression_each() -> None:
    """The regression behind the 0.9 s parse: every multipart compiled expressions for its boundary stack
    (four per push and pop). Now one fixed expression finds the "--" lines; counted, not timed."""
    raw = pathological_messages(250 * 1024)["sibling multiparts, own boundaries"]
    with mock.patch.object(re, "compile", wraps=re.compile) as compiled:
        parsed = parse_bytes(raw)
    assert len(parsed.body.parts) == MAX_PARTS // 2  # multiparts of one part each, up to the cap
    assert compiled.call_count <= 16
