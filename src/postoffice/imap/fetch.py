"""FETCH data from the stored, pre-parsed message: ENVELOPE, BODY/BODYSTRUCTURE, BODY[section], BINARY.

Implements RFC 9051 7.5.2 (FETCH response data: ENVELOPE, BODY, BODYSTRUCTURE, BODY[section]<origin>,
BINARY[section], BINARY.SIZE) and 6.4.5 (section specifications, partial fetch), RFC 3501 7.4.2 (the same for
IMAP4rev1) and RFC 3516 (BINARY). Everything is computed from `postoffice.message.ParsedMessage`, which was
parsed once at delivery, and from byte ranges of the stored message; nothing here parses MIME again.

Implementation notes
- Sans-IO: message bytes come through a `ReadAt` callable, `read(offset, length) -> bytes`, or as the whole
  message (`bytes`). `locate_section` says which byte range a section is (and whether a header filter
  applies), so a server can stream a large section's range from the store and read only the part a partial
  fetch asks for; `section_bytes` does read + filter + partial in one call.
- ENVELOPE and BODY/BODYSTRUCTURE are rendered by `postoffice.message.imap_forms` (its notes give the rules:
  case, strings, lists, robustness), re-exported here as `envelope` and `bodystructure`: the store keeps the
  top-level ones rendered at delivery, and FETCH renders the others with the same functions.
- Part numbers (RFC 9051 6.4.5): a message's parts are the children of its body when that is a multipart,
  else its body alone is part 1. The children of a multipart part are numbered inside it; a message/rfc822
  or message/global part has the parts of its embedded message. Any other leaf has no sub-parts. HEADER,
  TEXT and HEADER.FIELDS[.NOT] after a part number need a message/rfc822|global part; MIME needs a part
  number. A section that does not exist resolves to None (`locate_section`, `find_part`) and reads as the
  empty string (`section_bytes`), as for a partial fetch past the end (RFC 9051 6.4.5); the server chooses
  whether to send "" or NIL.
- HEADER.FIELDS (RFC 9051 6.4.5): field names compare ASCII case-insensitively; matching fields are returned
  as stored (folded continuation lines kept), in message order, followed by the header's ending empty line
  (or CRLF when the header had none but a body follows; nothing for a header-only message without one).
- BINARY (RFC 3516, RFC 9051 6.4.5): identity encodings (7BIT, 8BIT, BINARY) give the bytes as stored;
  BASE64 and QUOTED-PRINTABLE are decoded leniently (`decode_base64`, `decode_quoted_printable`); any other
  encoding gives None, for the server's NO [UNKNOWN-CTE]. A multipart part is never decoded (RFC 2045 6.4
  allows it only identity encodings). The decoded octets are sent as they are, for text/* parts too: no line
  end is added or rewritten, so BINARY.SIZE is the decoded length and partial ranges count decoded octets
  (docs/decisions/0022-binary-is-the-decoded-octets.md). The decoded part is built in memory (about three
  times its size at the peak for base64).
"""

from __future__ import annotations

import binascii
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from postoffice.imap.wire import astring, fmt_list
from postoffice.message.imap_forms import MESSAGE_SUBTYPES
from postoffice.message.imap_forms import bodystructure as bodystructure
from postoffice.message.imap_forms import envelope as envelope
from postoffice.message.model import BodyPart, ParsedMessage

#: `read(offset, length) -> bytes`: up to `length` bytes of the stored message from `offset`.
ReadAt = Callable[[int, int], bytes]
#: The message bytes, whole or through a random-access reader.
Source = bytes | bytearray | memoryview | ReadAt

SectionKind = Literal["HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"]
_HEADER_KINDS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"})
_IDENTITY = frozenset({"7BIT", "8BIT", "BINARY"})


@dataclass(frozen=True, slots=True)
class SectionSpec:
    """An RFC 9051 `section`: BODY[<part>.<kind> (<fields>)].

    part: the part numbers, () for the whole message; kind: None (the part's body, or the whole message),
    "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT" or "MIME"; fields: the header field names of
    HEADER.FIELDS[.NOT], as the client sent them."""

    part: tuple[int, ...] = ()
    kind: SectionKind | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SectionLocation:
    """Where a section's bytes are: `raw[start:end]`, through the header filter when `fields` is set."""

    start: int
    end: int
    #: Lowercased field names for HEADER.FIELDS[.NOT] (the range is then the header block); None: no filter.
    fields: frozenset[bytes] | None = None
    #: HEADER.FIELDS.NOT: keep the fields NOT named.
    exclude: bool = False
    #: The message whose header this is has a non-empty body (for the empty-line rule of `filter_header`).
    body_follows: bool = False

    def render(self, data: bytes) -> bytes:
        """The section from `data` = raw[start:end]."""
        if self.fields is None:
            return data
        return filter_header(data, self.fields, exclude=self.exclude, body_follows=self.body_follows)


# -- sections ------------------------------------------------------------------------------------------------
def _message_parts(root: BodyPart) -> list[BodyPart]:
    """The numbered parts of a message whose top entity is `root` (RFC 9051 6.4.5)."""
    return root.parts if root.type == "multipart" else [root]


def find_part(body: BodyPart, path: Iterable[int]) -> BodyPart | None:
    """The part numbered `path` (e.g. (1, 2, 3)) in the message whose top entity is `body`; None when there
    is no such part (or `path` is empty)."""
    part: BodyPart | None = None
    for n in path:
        if part is None:
            children = _message_parts(body)
        elif part.type == "multipart":
            children = part.parts
        elif part.embedded is not None and part.type == "message" and part.subtype in MESSAGE_SUBTYPES:
            children = _message_parts(part.embedded)
        else:
            return None
        if not isinstance(n, int) or not 1 <= n <= len(children):
            return None
        part = children[n - 1]
    return part


def _span(start: int, end: int) -> tuple[int, int]:
    start = max(start, 0)
    return start, max(end, start)


def _names(fields: Iterable[str]) -> frozenset[bytes]:
    # Non-ASCII names encode to 8-bit bytes, which never equal a field name (printable US-ASCII).
    return frozenset(str(name).encode("utf-8", "replace").lower() for name in fields)


def locate_section(parsed: ParsedMessage, section: SectionSpec) -> SectionLocation | None:
    """Where the bytes of `section` are in the stored message; None for a section that does not exist."""
    kind = section.kind.upper() if isinstance(section.kind, str) else None
    if not section.part:
        if kind is None:
            return SectionLocation(*_span(0, parsed.size))
        message = parsed.body
    else:
        part = find_part(parsed.body, section.part)
        if part is None:
            return None
        if kind is None:
            return SectionLocation(*_span(part.body_start, part.body_end))
        if kind == "MIME":
            return SectionLocation(*_span(part.header_start, part.body_start))
        if part.embedded is None or part.type != "message" or part.subtype not in MESSAGE_SUBTYPES:
            return None  # HEADER/TEXT/HEADER.FIELDS need a message/rfc822 part (RFC 9051 6.4.5)
        message = part.embedded
    if kind not in _HEADER_KINDS:
        return None  # MIME without a part number, or an unknown kind
    if kind == "TEXT":
        return SectionLocation(*_span(message.body_start, message.body_end))
    start, end = _span(message.header_start, message.body_start)
    if kind == "HEADER":
        return SectionLocation(start, end)
    return SectionLocation(
        start,
        end,
        fields=_names(section.fields),
        exclude=kind == "HEADER.FIELDS.NOT",
        body_follows=message.body_end > message.body_start,
    )


# RFC 5322 2.2 field name (printable US-ASCII but ":"), with the obsolete WSP before ":" (RFC 5322 4.5).
_NAME_CHARS = rb"[\x21-\x39\x3b-\x7e]"
_VALID_NAME = re.compile(_NAME_CHARS + rb"+")
# The rest of a field after its name: its line and every continuation line (RFC 5322 2.2.3), with the line
# end of the last one. Every repetition starts at a line end, so matching is linear (no backtracking).
_FIELD_REST = rb"[ \t]*:[^\r\n]*(?:(?:\r\n|\r|\n)[ \t][^\r\n]*)*(?:\r\n|\r|\n)?"
# Any field at a line start (a position after CR or LF, or the start); group 1 is its name. A position
# between the CR and LF of a CRLF is followed by LF, which no name starts with.
_ANY_FIELD = re.compile(rb"(?<![^\r\n])(" + _NAME_CHARS + rb"+)" + _FIELD_REST)
#: HEADER.FIELDS with up to this many names looks for those fields only (a pattern per name set, cached);
#: more names, and HEADER.FIELDS.NOT, visit every field.
_MAX_PATTERN_NAMES = 32


@functools.lru_cache(maxsize=128)
def _named_fields(names: frozenset[bytes]) -> re.Pattern[bytes]:
    alternatives = b"|".join(re.escape(name) for name in sorted(names))
    return re.compile(rb"(?<![^\r\n])(?:" + alternatives + rb")" + _FIELD_REST, re.IGNORECASE)


def filter_header(block: bytes, names: frozenset[bytes], *, exclude: bool, body_follows: bool) -> bytes:
    """HEADER.FIELDS (or .NOT with `exclude`) of a header block (RFC 9051 6.4.5).

    `names` are lowercased field names. Lines that are neither fields nor continuations are left out, and so
    are continuations after them (as the parser ignores them). The last kept line gets a CRLF if it had no
    line end. The block's ending empty line is appended, or CRLF if there was none but `body_follows`.

    The fields are found by regular expressions over the whole block (linear, in C): a header of millions
    of lines costs no Python work per line that is not sent."""
    blank = b""
    for end in (b"\r\n", b"\n", b"\r"):
        if block.endswith(end):
            # the ending empty line: a line end that follows another line end (or stands alone)
            if len(block) == len(end) or block[-len(end) - 1] in b"\r\n":
                blank = end
            break
    body = block[: len(block) - len(blank)]
    valid = frozenset(name for name in names if _VALID_NAME.fullmatch(name))
    out: list[bytes]
    if not exclude and len(valid) <= _MAX_PATTERN_NAMES:
        out = _named_fields(valid).findall(body) if valid else []
    else:
        out = [m.group() for m in _ANY_FIELD.finditer(body) if (m.group(1).lower() in valid) != exclude]
    if out and not out[-1].endswith((b"\n", b"\r")):
        out[-1] += b"\r\n"
    if blank:
        out.append(blank)
    elif body_follows:
        out.append(b"\r\n")
    return b"".join(out)


def _reader(source: Source) -> ReadAt:
    if isinstance(source, bytes | bytearray | memoryview):
        data = source

        def read(offset: int, length: int) -> bytes:
            return bytes(data[offset : offset + length])

        raw_read: ReadAt = read
    else:
        raw_read = source

    def safe_read(offset: int, length: int) -> bytes:
        offset = max(offset, 0)
        if length <= 0:
            return b""
        return raw_read(offset, length)

    return safe_read


def apply_partial(data: bytes, partial: tuple[int, int | None] | None) -> bytes:
    """`data[origin:origin + octets]` for a partial fetch <origin.octets> (octets None: to the end); an
    origin past the end gives b"" (RFC 9051 6.4.5)."""
    if partial is None:
        return data
    origin, octets = partial
    origin = max(origin, 0)
    if octets is None:
        return data[origin:]
    return data[origin : origin + max(octets, 0)]


def section_bytes(
    source: Source,
    parsed: ParsedMessage,
    section: SectionSpec,
    partial: tuple[int, int | None] | None = None,
) -> bytes:
    """The data of BODY[section]<origin.octets>: b"" for a section that does not exist.

    For plain byte ranges only the requested part of the range is read (so partial fetches of a large
    message read little); a header filter reads the header block and cuts the result."""
    location = locate_section(parsed, section)
    if location is None:
        return b""
    read = _reader(source)
    if location.fields is not None:
        data = read(location.start, location.end - location.start)
        return apply_partial(location.render(data), partial)
    return _read_range(read, location.start, location.end, partial)


def _read_range(read: ReadAt, start: int, end: int, partial: tuple[int, int | None] | None) -> bytes:
    """raw[start:end] cut by a partial fetch, reading only the bytes that are sent."""
    if partial is not None:
        origin, octets = partial
        start = min(start + max(origin, 0), end)
        if octets is not None:
            end = min(end, start + max(octets, 0))
    return read(start, end - start)


def section_label(section: SectionSpec) -> bytes:
    """The section as echoed in the FETCH response: b"1.HEADER.FIELDS (DATE FROM)" in BODY[...]."""
    pieces = [b"%d" % n for n in section.part]
    if section.kind:
        pieces.append(section.kind.encode("ascii", "replace"))
    label = b".".join(pieces)
    if section.kind in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        label += b" " + fmt_list(astring(name) for name in section.fields)
    return label


# -- BINARY (RFC 3516) ---------------------------------------------------------------------------------------
_B64_KEEP = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_DELETE = bytes(sorted(set(range(256)) - set(_B64_KEEP)))
# One pass: "=XX" (an octet), "=" before a line end or the end of the data, with transport padding between
# (a soft line break), and blanks before a line end or the end (transport padding). Blanks only match at the
# start of their run and possessively, so a long run not at a line end is passed over once (a plain
# `[ \t]+(?=...)` retried it from every position: quadratic).
_QP_TOKEN = re.compile(rb"=(?:[0-9A-Fa-f]{2}|[ \t]*+(?:\r\n|\r|\n|\Z))|(?<![ \t])[ \t]++(?=\r\n|\r|\n|\Z)")
_QP_OCTETS = {
    b"=" + (a + b).encode("ascii"): bytes([int(a + b, 16)])
    for a in "0123456789ABCDEFabcdef"
    for b in "0123456789ABCDEFabcdef"
}


#: More "=" than this in a base64 body (junk, or thousands of padded blocks) and padding is ignored: the
#: characters are decoded as one stream, in C. Fewer, and each padded block is decoded on its own.
MAX_PADDED_BLOCKS = 256


def decode_base64(data: bytes) -> bytes:
    """Lenient base64 (RFC 2045 6.8): characters outside the alphabet are skipped (line breaks, spaces and
    garbage alike, as RFC 2045 6.8 tells decoders to ignore them), so encoded lines of any length join up;
    "=" ends a 4-character group, and decoding continues after it (concatenated padded blocks); a final
    group of 2 or 3 characters gives 1 or 2 bytes, a lone final character is dropped. A body with more than
    MAX_PADDED_BLOCKS "=" is decoded with every "=" skipped too (time and memory stay linear: splitting at
    every "=" of a megabyte of "A=" took 44 ms and a list of half a million objects)."""
    cleaned = data.translate(None, _B64_DELETE)
    if cleaned.count(b"=") > MAX_PADDED_BLOCKS:
        segments = [cleaned.replace(b"=", b"")]
    else:
        segments = cleaned.split(b"=")
    out: list[bytes] = []
    for segment in segments:
        rest = len(segment) % 4
        if rest == 1:
            segment = segment[:-1]
        elif rest:
            segment += b"=" * (4 - rest)
        if segment:
            out.append(binascii.a2b_base64(segment))
    return b"".join(out)


def decode_quoted_printable(data: bytes) -> bytes:
    """Quoted-printable (RFC 2045 6.7): whitespace at the end of a line is transport padding and removed
    (rule 3); "=" at the end of a line is a soft line break; "=XX" (either case of hex digits) is an octet;
    an "=" not followed by two hex digits stays as it is. Line ends are kept as stored."""
    # binascii.a2b_qp loses the rest of a line after "=" + bare CR, so the escapes are decoded here. One
    # pass, so that removing padding cannot join a bare CR and a bare LF into one soft line break.
    return _QP_TOKEN.sub(lambda m: _QP_OCTETS.get(m.group(), b""), data)


def decode_transfer_encoding(data: bytes, encoding: str) -> bytes | None:
    """`data` decoded from the Content-Transfer-Encoding `encoding`; None when the encoding is unknown."""
    name = encoding.strip().upper()
    if name in _IDENTITY:
        return data
    if name == "BASE64":
        return decode_base64(data)
    if name == "QUOTED-PRINTABLE":
        return decode_quoted_printable(data)
    return None


def _binary_encoding(part: BodyPart) -> str:
    return "BINARY" if part.type == "multipart" else part.encoding


def binary_decodable(parsed: ParsedMessage, part: tuple[int, ...]) -> bool:
    """False when BINARY[part] would meet a transfer encoding this server cannot decode (NO [UNKNOWN-CTE]);
    known without decoding anything, so a response can be refused before any of it is sent."""
    found = find_part(parsed.body, part) if part else None
    if found is None:
        return True
    name = _binary_encoding(found).strip().upper()
    return name in _IDENTITY or name in ("BASE64", "QUOTED-PRINTABLE")


def binary_section(
    source: Source,
    parsed: ParsedMessage,
    part: tuple[int, ...],
    partial: tuple[int, int | None] | None = None,
) -> bytes | None:
    """The data of BINARY[part]<origin.octets> (RFC 3516): the part's body with its transfer encoding decoded.

    BINARY[] (part == ()) is the whole message as stored. A part that does not exist gives b""; an unknown
    transfer encoding gives None (the server answers NO [UNKNOWN-CTE])."""
    read = _reader(source)
    if not part:
        return _read_range(read, *_span(0, parsed.size), partial)
    found = find_part(parsed.body, part)
    if found is None:
        return b""
    encoding = _binary_encoding(found)
    if encoding.strip().upper() in _IDENTITY:
        return _read_range(read, *_span(found.body_start, found.body_end), partial)
    decoded = decode_transfer_encoding(read(*_length(found)), encoding)
    # The decoded octets exactly, whatever the media type (docs/decisions/0022): a base64 or quoted-printable
    # body is what the sender encoded, not a storage representation whose line ends could be rewritten.
    return None if decoded is None else apply_partial(decoded, partial)


def _length(part: BodyPart) -> tuple[int, int]:
    start, end = _span(part.body_start, part.body_end)
    return start, end - start


def binary_size(source: Source, parsed: ParsedMessage, part: tuple[int, ...]) -> int | None:
    """BINARY.SIZE[part] (RFC 3516): the length of `binary_section`; identity encodings are not read."""
    if not part:
        return max(parsed.size, 0)
    found = find_part(parsed.body, part)
    if found is None:
        return 0
    if _binary_encoding(found).strip().upper() in _IDENTITY:
        return _length(found)[1]
    data = binary_section(source, parsed, part)
    return None if data is None else len(data)
