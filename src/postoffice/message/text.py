"""Search text of the text/* leaf parts: which leaves (`text_leaves`), transfer decoding and charset decoding,
streamed and capped.

The parser (the search text stored at delivery) and the store's search (the text decoded again from the stored
bytes when the stored one was cut) both walk the leaves with `text_leaves` and decode them with `part_text`,
so the two texts agree by construction.

Implements RFC 2045 6.7 (quoted-printable) and 6.8 (base64) decoding incrementally, so a part is never held in
memory whole, and charset decoding with `codecs` incremental decoders (errors replaced; unknown charsets and
US-ASCII are read as UTF-8 when valid, else Latin-1; see `headers.lookup_charset`). Reading stops as soon as
the cap on search text is reached.
"""

from __future__ import annotations

import binascii
import codecs
import re
from collections.abc import Iterator
from typing import IO

from postoffice.message.headers import clean_text, lookup_charset
from postoffice.message.model import BodyPart

READ_SIZE = 64 * 1024
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]+")


def text_leaves(part: BodyPart) -> list[BodyPart]:
    """The non-empty text/* leaves of `part`, in message order, descending into multiparts and embedded
    messages: the parts whose decoded text, joined with "\\n", is the search text."""
    leaves: list[BodyPart] = []
    stack = [part]
    while stack:
        p = stack.pop()
        if p.parts:
            stack.extend(reversed(p.parts))
        elif p.embedded is not None:
            stack.append(p.embedded)
        elif p.type == "text" and p.body_end > p.body_start:
            leaves.append(p)
    return leaves


def _read_range(fp: IO[bytes], start: int, end: int) -> Iterator[bytes]:
    fp.seek(start)
    left = end - start
    while left > 0:
        chunk = fp.read(min(READ_SIZE, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def _base64_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """RFC 2045 6.8, leniently: characters outside the alphabet (and padding) are ignored."""
    rest = b""
    for chunk in chunks:
        data = rest + _NOT_BASE64.sub(b"", chunk)
        cut = len(data) - len(data) % 4
        rest = data[cut:]
        if cut:
            yield binascii.a2b_base64(data[:cut])
    if len(rest) >= 2:
        yield binascii.a2b_base64(rest + b"=" * (4 - len(rest)))


def _qp_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """RFC 2045 6.7; decoded a run of whole lines at a time so that soft line breaks stay intact."""
    rest = b""
    for chunk in chunks:
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) > READ_SIZE:
            # An overlong line: cut it where no "=XX" escape is split (no "=" among the two octets before the
            # cut), looking back a few octets only. Garbage without such a place ("=4=4...") is cut anyway:
            # searching further was a loop per octet back to the line's start, for every chunk.
            cut = len(data) - 2
            for place in range(cut, cut - 8, -1):
                if data[place - 1] != 0x3D and data[place - 2] != 0x3D:
                    cut = place
                    break
        rest = data[cut:]
        if cut:
            yield binascii.a2b_qp(data[:cut])
    if rest:
        yield binascii.a2b_qp(rest)


class _FallbackDecoder:
    """UTF-8 while the data is valid UTF-8, Latin-1 from the first invalid byte on."""

    def __init__(self) -> None:
        self._utf8: codecs.IncrementalDecoder | None = codecs.getincrementaldecoder("utf-8")("strict")

    def decode(self, data: bytes, final: bool = False) -> str:
        if self._utf8 is not None:
            try:
                return self._utf8.decode(data, final)
            except UnicodeDecodeError:
                # Nothing of this call was returned yet; bytes held back from earlier calls are still pending.
                pending = self._utf8.getstate()[0]
                self._utf8 = None
                return (pending + data).decode("latin-1")
        return data.decode("latin-1")


def _decoder(charset: str | None) -> codecs.IncrementalDecoder | _FallbackDecoder:
    codec = lookup_charset(charset)
    if codec is None:
        return _FallbackDecoder()
    try:
        return codecs.getincrementaldecoder(codec)("replace")
    except Exception:  # a codec without an incremental decoder, or one that refuses "replace": as if unknown
        return _FallbackDecoder()


def part_text(fp: IO[bytes], part: BodyPart, limit: int) -> tuple[str, bool]:
    """Decoded text of a leaf part, at most `limit` characters; returns (text, whether it was cut)."""
    chunks: Iterator[bytes] = _read_range(fp, part.body_start, part.body_end)
    encoding = part.encoding.lower()
    if encoding == "base64":
        chunks = _base64_chunks(chunks)
    elif encoding == "quoted-printable":
        chunks = _qp_chunks(chunks)
    charset = next((v for k, v in part.params if k == "charset"), None)
    decoder = _decoder(charset)
    out: list[str] = []
    have = 0
    for data in chunks:
        text = _decode(decoder, data, False)
        if text is None:
            decoder = _FallbackDecoder()
            text = decoder.decode(data)
        text = clean_text(text)
        if have + len(text) > limit:
            out.append(text[: limit - have])
            return "".join(out), True
        out.append(text)
        have += len(text)
    tail = clean_text(_decode(decoder, b"", True) or "")
    if have + len(tail) > limit:
        out.append(tail[: limit - have])
        return "".join(out), True
    out.append(tail)
    return "".join(out), False


def _decode(decoder: codecs.IncrementalDecoder | _FallbackDecoder, data: bytes, final: bool) -> str | None:
    try:
        return decoder.decode(data, final)
    except Exception:  # codecs that refuse errors="replace" or fail on odd input
        return None
