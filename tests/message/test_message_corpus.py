"""CPython's own email test messages: parse without raising, keep the invariants, and agree with
`email.message_from_bytes(raw).walk()` on the parts (type/subtype in walk order) and on every leaf body.

How the stdlib view is normalised before comparing (both are legitimate readings, not disagreements):
- A multipart the stdlib leaves without subparts (no boundary parameter, no delimiter line) is text/plain
  here (RFC 2045 5.2, see `postoffice.message.parser`).
- The stdlib parses the bodies of message/delivery-status and message/external-body as header blocks (its
  subparts); for IMAP (RFC 3501 BODYSTRUCTURE) only message/rfc822 and message/global have an inner structure.

Documented exceptions, where we deliberately differ (expected structure asserted below):
- msg_15, msg_39: a nested multipart reuses its parent's boundary. The innermost multipart claims the
  delimiter lines (RFC 2046 5.1.1 forbids the reuse, so either reading is a repair); after its close delimiter
  the parent continues with its following parts. The stdlib ends the parent there and loses those parts.
- msg_37: adjacent delimiter lines ("--ABCDE" twice) delimit an empty body part here; the stdlib drops it.
"""

from __future__ import annotations

import email
import email.message
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.message.message_invariants import check_invariants, parse_bytes, walk

# CPython's test suite: Lib/test/test_email/data (installed with the interpreter here).
DATA = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"
MESSAGES = sorted(DATA.glob("msg_*.txt"))

EXCEPTIONS = {
    "msg_15.txt": [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "image/gif",
    ],
    "msg_39.txt": ["multipart/mixed", "multipart/mixed"]
    + ["multipart/alternative", "application/octet-stream", "application/octet-stream"] * 3
    + ["text/plain"],
    "msg_37.txt": [
        "multipart/mixed",
        "text/x-one",
        "text/plain",
        "text/x-two",
        "text/plain",
        "text/plain",
        "text/plain",
        "text/x-two",
    ],
}


def _stdlib_walk(msg: email.message.Message) -> Iterator[tuple[str, email.message.Message | None]]:
    """(type, message or None when its payload is not comparable) in walk order, normalised as documented."""
    if msg.get_content_maintype() == "multipart" and not (msg.is_multipart() and msg.get_payload()):
        yield "text/plain", None
        return
    yield msg.get_content_type(), msg
    if msg.get_content_maintype() == "message" and msg.get_content_subtype() not in ("rfc822", "global"):
        return
    if msg.is_multipart():
        for sub in msg.get_payload():
            assert isinstance(sub, email.message.Message)
            yield from _stdlib_walk(sub)


def test_corpus_is_present() -> None:
    assert len(MESSAGES) >= 40


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.name)
def test_corpus_message(path: Path) -> None:
    raw = path.read_bytes()
    parsed = parse_bytes(raw)
    check_invariants(raw, parsed)
    mine = list(walk(parsed.body))
    mine_types = [f"{p.type}/{p.subtype}" for p in mine]
    if path.name in EXCEPTIONS:
        assert mine_types == EXCEPTIONS[path.name]
        return
    theirs = list(_stdlib_walk(email.message_from_bytes(raw)))
    assert mine_types == [t for t, _ in theirs]
    for part, (_type, msg) in zip(mine, theirs, strict=True):
        if msg is None or msg.is_multipart() or part.parts or part.embedded is not None:
            continue
        # The stdlib keeps a leaf body as a str of the raw bytes (surrogateescape for 8-bit bytes).
        assert raw[part.body_start : part.body_end].decode("ascii", "surrogateescape") == msg.get_payload()


@pytest.mark.parametrize("line_end", [b"\r\n", b"\r"], ids=["crlf", "cr"])
@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.name)
def test_corpus_message_with_other_line_ends_has_the_same_structure(path: Path, line_end: bytes) -> None:
    raw = path.read_bytes().replace(b"\r\n", b"\n")  # msg_26 is stored with CRLF already
    converted = raw.replace(b"\n", line_end)
    parsed = parse_bytes(converted)
    check_invariants(converted, parsed)
    expected = parse_bytes(raw)
    assert [(p.type, p.subtype, p.params) for p in walk(parsed.body)] == [
        (p.type, p.subtype, p.params) for p in walk(expected.body)
    ]
    assert parsed.envelope == expected.envelope
