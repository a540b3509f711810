"""Checks shared by the message tests: the invariants every ParsedMessage must keep (see
`postoffice.message`), written independently of the parser's own code."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator

from postoffice.message import MAX_SEARCH_TEXT, BodyPart, ParsedMessage
from postoffice.message.parser import parse_strict

_TERMINATOR = re.compile(rb"\r\n|\r|\n")


def parse_bytes(raw: bytes) -> ParsedMessage:
    """Parse without the safety net, from a file positioned somewhere else than the start."""
    fp = io.BytesIO(raw)
    fp.seek(len(raw) // 2)
    return parse_strict(fp)


def count_lines(body: bytes) -> int:
    terminators = len(_TERMINATOR.findall(body))
    return terminators + (1 if body and body[-1:] not in (b"\r", b"\n") else 0)


def walk(part: BodyPart) -> Iterator[BodyPart]:
    """Every part in the order of `email.message.Message.walk`: a part, its children, its embedded message."""
    yield part
    for child in part.parts:
        yield from walk(child)
    if part.embedded is not None:
        yield from walk(part.embedded)


def _check_address_list(value: object) -> None:
    if value is None:
        return
    assert isinstance(value, list)
    assert value
    depth = 0
    for address in value:
        assert isinstance(address, list)
        assert len(address) == 4
        assert all(v is None or isinstance(v, str) for v in address)
        if address[3] is None:  # group syntax marker (RFC 3501 7.4.2)
            if address[2] is None:
                depth -= 1
            else:
                depth += 1
            assert depth in (0, 1)
        else:
            assert address[2] is not None
    assert depth == 0


def check_envelope(envelope: object) -> None:
    assert isinstance(envelope, list)
    assert len(envelope) == 10
    for index in (0, 1, 8, 9):
        assert envelope[index] is None or isinstance(envelope[index], str)
    for index in range(2, 8):
        _check_address_list(envelope[index])


def _check_part(raw: bytes, part: BodyPart, low: int, high: int) -> None:
    assert low <= part.header_start <= part.body_start <= part.body_end <= high, (part, low, high)
    assert part.lines == count_lines(raw[part.body_start : part.body_end])
    assert part.type == part.type.lower()
    assert part.subtype == part.subtype.lower()
    assert part.type
    assert part.subtype
    assert part.encoding == part.encoding.upper()
    if part.type == "multipart":
        assert part.parts, "a multipart has at least one part"
    else:
        assert not part.parts
    if part.type == "message" and part.subtype in ("rfc822", "global"):
        assert part.embedded is not None
        assert part.envelope is not None
        assert part.embedded.header_start == part.body_start
        assert part.embedded.body_end == part.body_end
        check_envelope(part.envelope)
    else:
        assert part.embedded is None
        assert part.envelope is None
    previous_end = part.body_start
    for child in part.parts:
        _check_part(raw, child, previous_end, part.body_end)
        previous_end = child.body_end
    if part.embedded is not None:
        _check_part(raw, part.embedded, part.body_start, part.body_end)


def check_invariants(raw: bytes, parsed: ParsedMessage) -> None:
    assert parsed.size == len(raw)
    assert parsed.body.header_start == 0
    assert parsed.body.body_end == len(raw)
    _check_part(raw, parsed.body, 0, len(raw))
    check_envelope(parsed.envelope)
    assert len(parsed.search_text) <= MAX_SEARCH_TEXT
    assert parsed.sent_date is None or re.fullmatch(r"\d{4}-\d\d-\d\d", parsed.sent_date)
    text = parsed.to_json()
    # Every string is valid Unicode: the JSON re-encodes as UTF-8 without escapes.
    json.dumps(json.loads(text), ensure_ascii=False).encode("utf-8")
    assert ParsedMessage.from_json(text) == parsed
