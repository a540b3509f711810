"""The structure splitter: one streaming pass that finds every MIME entity and its byte offsets.

Implements RFC 2045 / RFC 2046 structure, RFC 5322 header blocks and RFC 3501 7.4.2 ENVELOPE, for IMAP
BODYSTRUCTURE, BODY[section] and SEARCH (RFC 3501 6.4.4, 6.4.5, 7.4.2; RFC 9051 the same).

Rules (each cited where it is implemented):
- Header block: ends at the first empty line (RFC 5322 2.1), or at a boundary line of an enclosing multipart,
  or at EOF. Lines in it that are neither fields nor continuations are skipped when a field line follows
  them before that end; otherwise the first of them starts the body (the empty line is then part of the
  body). So a garbage line amid the fields is ignored, while a part whose body follows its fields without
  the empty line ("Content-Type: text/plain", "Hello") gets that body. If the entity's first line is neither
  a field, a continuation nor an mbox "From " line, the entity has no header and its body starts at its
  first byte (as the stdlib parser does).
- Boundaries (RFC 2046 5.1.1): a delimiter line is "--" boundary, optionally "--" (close delimiter), then only
  spaces/tabs (transport padding), at a line start. Boundaries of all enclosing multiparts are recognised
  (innermost first), so an outer boundary ends every inner part. The line terminator before a delimiter line
  belongs to the delimiter, not to the body before it. Preamble and epilogue are not parts; a multipart
  that is never closed runs to the end of its enclosing body.
- message/rfc822 and message/global (RFC 2046 5.2.1, RFC 6532 3.5) bodies are parsed as messages, recursively,
  when their transfer encoding is 7bit/8bit/binary (an identity encoding, so offsets mean something).
- Defaults (RFC 2045 5.2, RFC 2046 5.1.5): no Content-Type means text/plain; charset=us-ascii, or
  message/rfc822 inside multipart/digest; an invalid Content-Type means text/plain; charset=us-ascii.

Malformed input never raises; it is degraded so that the structure invariants of `model` hold:
- multipart without a usable boundary parameter (missing, empty, or longer than MAX_BOUNDARY), or in whose
  body no delimiter line of its boundary occurs: a text/plain; charset=us-ascii leaf (RFC 2045 5.2: the
  type is invalid for this body). Every delimiter line opens a part, so adjacent delimiter lines give an
  empty part; a multipart that reuses an enclosing boundary claims its delimiter lines (innermost wins).
- message/rfc822|global with another transfer encoding, and any multipart or message part beyond the depth or
  part-count caps: an application/octet-stream leaf (its other fields kept).

Caps (memory and time stay bounded whatever the input): header bytes kept per entity and in total, and
header lines in total (an entity past a total budget is parsed as if it had no fields), nesting depth,
number of parts (further parts of a multipart are skipped like its epilogue), addresses and address tokens
per message, parameters per field, search text and search headers; see the constants below. So the Python
work per message is bounded whatever its size (bench/pathological_mime.py measures the worst shapes found).
The message is read in chunks through `scanner.LineScanner`, never whole; large bodies are skipped with
C-level searches for the lines that can matter (delimiters, header ends).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import IO, Any

from postoffice.message.addresses import Address, TokenBudget, parse_address_list
from postoffice.message.headers import (
    decode_words,
    is_field,
    iter_fields,
    parse_date,
    parse_params,
    starts_header,
    unfold,
)
from postoffice.message.model import BodyPart, Params, ParsedMessage
from postoffice.message.scanner import (
    MAX_FRAGMENT,
    CompileBudget,
    LinePattern,
    LineScanner,
    body_end_at,
    delimiter_lines,
    header_end_lines,
)
from postoffice.message.text import part_text, text_leaves
from postoffice.message.threads import references_of, thread_references

log = logging.getLogger(__name__)

#: Messages up to this size may be parsed on the event loop (about 20 us per KiB for ordinary mail, at most
#: a few milliseconds for the costliest shapes the caps below allow, docs/decisions/0023); larger ones are
#: parsed in a thread by every caller (SMTP, IMAP APPEND, the queue's local copies).
PARSE_INLINE_LIMIT = 64 * 1024
#: Header bytes of one entity used for parsing; the rest of a longer header is scanned but ignored.
MAX_HEADER_BYTES = 1024 * 1024
#: Header bytes used for parsing across all entities; later entities are parsed as if they had no fields.
MAX_TOTAL_HEADER_BYTES = 8 * 1024 * 1024
#: How far past a non-field line the header reader looks for a further field before taking that line as the
#: start of the body.
MAX_HEADER_LOOKAHEAD = 64 * 1024
#: Longest boundary accepted (RFC 2046 5.1.1 allows 70 characters); a longer one counts as missing.
MAX_BOUNDARY = 256
#: Nesting levels (each multipart child or embedded message is one level deeper than its parent).
MAX_DEPTH = 50
#: Body parts per message (every BodyPart counts, the root and embedded roots too). Each costs about 20 us of
#: Python; further parts of a multipart are skipped like its epilogue (their bytes are kept, as ever).
MAX_PARTS = 1000
#: Header lines kept for parsing across all entities (about 2.5 us each); later header blocks are read like
#: those past MAX_HEADER_BYTES: their end is found in C and their fields are ignored.
MAX_HEADER_LINES = 10_000
#: Addresses (group markers included) across all envelopes of a message.
MAX_ADDRESSES = 5000
#: Address tokens read across all envelopes of a message (Postfix's header_address_token_limit); a field
#: is read up to where the budget ends.
MAX_ADDRESS_TOKENS = 10_240
#: Characters of decoded text kept for BODY/TEXT search.
MAX_SEARCH_TEXT = 4 * 1024 * 1024
#: Characters of decoded header text kept for HEADER/FROM/TO/... search.
MAX_SEARCH_HEADERS = 1024 * 1024

_WANTED = frozenset(
    {
        "content-type",
        "content-transfer-encoding",
        "content-id",
        "content-description",
        "content-md5",
        "content-disposition",
        "content-language",
        "content-location",
        "date",
        "subject",
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "in-reply-to",
        "message-id",
        "references",
    }
)
_TOKEN = r"[^\s()<>@,;:\\\"/\[\]?=]+"  # noqa: S105 - an RFC 2045 token, not a credential
_MEDIA_TYPE = re.compile(rf"\s*({_TOKEN})\s*/\s*({_TOKEN})\s*")
_COMMENT = re.compile(r"\([^()]*\)")
_FIRST_TOKEN = re.compile(r"[^\s;()]+")
_IDENTITY_ENCODINGS = frozenset({"7BIT", "8BIT", "BINARY"})
_MESSAGE_SUBTYPES = frozenset({"rfc822", "global"})

Fields = dict[str, tuple[str, str]]  # lowercased name -> (unfolded value, codec it was decoded with)


def _text_plain() -> tuple[str, str, Params]:
    return "text", "plain", [("charset", "us-ascii")]


def _clamp(part: BodyPart, limit: int) -> None:
    """Pull every offset of `part` and its descendants to at most `limit` (order is kept: min is monotone).

    Needed only in the degenerate case of an empty entity right before a boundary whose preceding line
    terminator is also the end of the entity's own delimiter or header (RFC 2046 5.1.1 gives it to the
    boundary)."""
    part.header_start = min(part.header_start, limit)
    part.body_start = min(part.body_start, limit)
    if part.body_end > limit:
        part.body_end = limit
        if part.body_start == part.body_end:
            part.lines = 0
    for child in part.parts:
        _clamp(child, limit)
    if part.embedded is not None:
        _clamp(part.embedded, limit)


class _StructureParser:
    def __init__(self, fp: IO[bytes]) -> None:
        self.scan = LineScanner(fp)
        self.boundaries: list[bytes] = []
        self._levels: dict[bytes, int] = {}
        self._budget = CompileBudget()
        # The line patterns of each boundary stack seen, kept so that a pattern's "--" line count (which
        # decides whether it compiles an expression) survives leaving and re-entering the stack.
        self._patterns: dict[tuple[bytes, ...], tuple[LinePattern | None, LinePattern]] = {}
        self._delimiters: LinePattern | None = None
        self._header_ends = header_end_lines([], self._budget)
        self.parts = 0
        self.header_budget = MAX_TOTAL_HEADER_BYTES
        self.address_budget = MAX_ADDRESSES
        self.token_budget = TokenBudget(MAX_ADDRESS_TOKENS)
        self.header_lines = MAX_HEADER_LINES
        self.root_fields: list[tuple[str, str, str]] = []
        self.root_envelope: list[Any] = [None] * 10

    # -- lines -----------------------------------------------------------------------------------------------
    def _push_boundary(self, boundary: bytes) -> int:
        self.boundaries.append(boundary)
        self._boundaries_changed()
        return len(self.boundaries) - 1

    def _pop_boundary(self) -> None:
        self.boundaries.pop()
        self._boundaries_changed()

    def _boundaries_changed(self) -> None:
        # The innermost level of a boundary wins when nested multiparts reuse one (enumerate order).
        self._levels = {boundary: level for level, boundary in enumerate(self.boundaries)}
        key = tuple(self.boundaries)
        patterns = self._patterns.get(key)
        if patterns is None:
            if len(self._patterns) >= MAX_PARTS:
                self._patterns.clear()  # bounded memory; only the "--" line counts start again
            patterns = self._patterns[key] = (
                delimiter_lines(key, self._budget),
                header_end_lines(key, self._budget),
            )
        self._delimiters, self._header_ends = patterns

    def _boundary_at(self, frag: tuple[bytes, int]) -> tuple[int, bool] | None:
        """(level, is close delimiter) if the current line is a delimiter of an enclosing multipart.

        RFC 2046 5.1.1: "--" boundary ["--"] *LWSP-char, at a line start; the innermost boundary wins."""
        content = frag[0]
        if not self._levels or not self.scan.at_line_start or not content.startswith(b"--"):
            return None
        if len(content) >= MAX_FRAGMENT:
            return None  # only part of a very long line
        core = content[2:].rstrip(b" \t")
        level = self._levels.get(core, -1)
        close_level = self._levels.get(core[:-2], -1) if core.endswith(b"--") else -1
        if level < 0 and close_level < 0:
            return None
        return (level, False) if level > close_level else (close_level, True)

    def _skip_to_boundary(self) -> None:
        """Skip body lines up to a delimiter line of any enclosing multipart, or EOF."""
        scan = self.scan
        while True:
            scan.skip_to(self._delimiters)
            frag = scan.peek()
            if frag is None or self._boundary_at(frag) is not None:
                return
            scan.advance()

    def _read_header(self) -> bytes:
        """Consume the header block (rules in the module docstring) and return its bytes, capped."""
        scan = self.scan
        cap = min(MAX_HEADER_BYTES, self.header_budget)
        kept: list[bytes] = []
        size = 0
        first = True
        # A line that is neither field nor continuation: where the body starts unless a field follows it.
        body_here: tuple[tuple[int, int, bytes, bool], int, int, int] | None = None
        done = False
        ahead = 4  # lines read per batch: few for the short headers of parts, more for long headers
        while not done:
            over = (size >= cap or self.header_lines <= 0) and not first
            if over:
                # Past a cap only the end of the header block matters: find it in C, not line by line.
                if body_here is not None:
                    break
                scan.skip_to(self._header_ends)
                frag = scan.peek()
                batch = [] if frag is None else [frag]
            else:
                batch = scan.lines_ahead(ahead)
                ahead = min(ahead * 4, 256)
            if not batch:
                break
            for frag in batch:
                content, term = frag
                if scan.at_line_start:
                    if term and not content:
                        if body_here is None:
                            scan.step(0, term)  # the empty line ending the header block (RFC 5322 2.1)
                        done = True
                        break
                    if content[:2] == b"--" and self._boundary_at(frag) is not None:
                        done = True
                        break
                    if first and not starts_header(content):
                        done = True
                        break  # no header at all: the body starts here
                    if over:
                        pass
                    elif is_field(content):
                        body_here = None
                    elif body_here is None and not first and content[:1] not in (b" ", b"\t"):
                        body_here = (scan.save(), len(kept), size, self.header_lines)
                    elif body_here is not None and scan.pos - body_here[0][0] > MAX_HEADER_LOOKAHEAD:
                        done = True
                        break
                first = False
                if not over:
                    piece = content[: cap - size] + (b"\n" if term else b"")
                    kept.append(piece)
                    size += len(piece)
                    self.header_lines -= 1
                scan.step(len(content), term)
                if not over and (size >= cap or self.header_lines <= 0):
                    break  # on in the loop above, past a cap
        if body_here is not None:
            state, pieces, size, self.header_lines = body_here
            scan.restore(state)
            del kept[pieces:]
        self.header_budget -= size
        return b"".join(kept)

    # -- entities --------------------------------------------------------------------------------------------
    def parse_entity(self, depth: int, default: tuple[str, str, Params]) -> tuple[BodyPart, Fields]:
        scan = self.scan
        self.parts += 1
        part = BodyPart(header_start=scan.pos)
        raw = self._read_header()
        fields: Fields = {}
        all_fields = list(iter_fields(raw)) if raw else []
        for name, value, codec in all_fields:
            key = name.lower()
            if key in _WANTED and key not in fields:  # the first occurrence wins
                fields[key] = (value, codec)
        if depth == 0:
            # Before any embedded message can use up the address budget.
            self.root_fields = all_fields
            self.root_envelope = self._envelope(fields)
        part.body_start = scan.pos
        newlines_at_body = scan.newlines
        boundary = self._describe(part, fields, default)
        can_descend = depth < MAX_DEPTH and self.parts < MAX_PARTS

        if part.type == "multipart":
            if boundary is None:
                part.type, part.subtype, part.params = _text_plain()  # RFC 2045 5.2
                self._skip_to_boundary()
            elif not can_descend:
                part.type, part.subtype, part.params = "application", "octet-stream", []
                self._skip_to_boundary()
            else:
                self._parse_multipart(part, boundary, depth)
                if not part.parts:
                    part.type, part.subtype, part.params = _text_plain()
        elif part.type == "message" and part.subtype in _MESSAGE_SUBTYPES:
            if can_descend and part.encoding in _IDENTITY_ENCODINGS:
                embedded, embedded_fields = self.parse_entity(depth + 1, _text_plain())
                part.embedded = embedded
                part.envelope = self._envelope(embedded_fields)
            else:
                part.type, part.subtype, part.params = "application", "octet-stream", []
                self._skip_to_boundary()
        else:
            self._skip_to_boundary()

        at_boundary = scan.peek() is not None
        end, part.lines = body_end_at(part.body_start, newlines_at_body, scan.mark(), at_boundary)
        if end < part.body_start:
            # An empty body right before a boundary: the terminator before the boundary line is the
            # boundary's (RFC 2046 5.1.1), so the body starts (and ends) before it, but not before the header.
            part.body_start = max(part.header_start, end)
            end = part.body_start
        part.body_end = end
        for child in part.parts:
            if child.body_end > part.body_end:
                _clamp(child, part.body_end)
        if part.embedded is not None and (
            part.embedded.body_end > part.body_end or part.embedded.header_start != part.body_start
        ):
            _clamp(part.embedded, part.body_end)
            part.embedded.header_start = part.body_start
        return part, fields

    def _parse_multipart(self, part: BodyPart, boundary: bytes, depth: int) -> None:
        scan = self.scan
        level = self._push_boundary(boundary)
        # RFC 2046 5.1.5: in a digest the default part type is message/rfc822.
        default: tuple[str, str, Params] = (
            ("message", "rfc822", []) if part.subtype == "digest" else _text_plain()
        )
        to_epilogue = False
        while True:
            scan.skip_to(self._delimiters)
            frag = scan.peek()
            if frag is None:
                break
            found = self._boundary_at(frag)
            if found is None:
                scan.advance()  # preamble
                continue
            found_level, close = found
            if found_level != level:
                break  # an enclosing boundary ends this multipart, closed or not
            scan.advance()
            if close or self.parts >= MAX_PARTS:
                to_epilogue = True
                break
            child, _fields = self.parse_entity(depth + 1, default)
            part.parts.append(child)
        self._pop_boundary()
        if to_epilogue:
            self._skip_to_boundary()  # the epilogue; only enclosing boundaries end it

    def _describe(self, part: BodyPart, fields: Fields, default: tuple[str, str, Params]) -> bytes | None:
        """Fill the RFC 2045 / 2183 / 3066 / 2557 fields of `part`; returns the multipart boundary, if any."""
        boundary: bytes | None = None
        content_type = fields.get("content-type")
        if content_type is None:
            part.type, part.subtype, part.params = default[0], default[1], list(default[2])
        else:
            main, params = parse_params(content_type[0])
            m = _MEDIA_TYPE.fullmatch(_COMMENT.sub("", main))
            if m is None:
                part.type, part.subtype, part.params = _text_plain()  # RFC 2045 5.2
            else:
                part.type, part.subtype = m.group(1).lower(), m.group(2).lower()
                part.params = params
                if part.type == "text" and not params:
                    part.params = [("charset", "us-ascii")]
                if part.type == "multipart":
                    boundary = _boundary_bytes(params, content_type[1])
        encoding = fields.get("content-transfer-encoding")
        if encoding is not None:
            m = _FIRST_TOKEN.search(_COMMENT.sub("", encoding[0]))
            if m is not None:
                part.encoding = m.group(0).upper()
        part.id = _simple(fields, "content-id")
        part.description = _simple(fields, "content-description")
        part.md5 = _simple(fields, "content-md5")
        part.location = _simple(fields, "content-location")
        disposition = fields.get("content-disposition")
        if disposition is not None:
            main, params = parse_params(disposition[0])
            value = _COMMENT.sub("", main).strip().lower()
            if value:
                part.disposition = (value, params)
        language = fields.get("content-language")
        if language is not None:
            tags = [t for t in re.split(r"[\s,]+", _COMMENT.sub("", language[0])) if t][:64]
            part.language = tags or None
        return boundary

    def _envelope(self, fields: Fields) -> list[Any]:
        """RFC 3501 7.4.2 ENVELOPE from the header fields of a message."""

        def raw(name: str) -> str | None:
            field = fields.get(name)
            return None if field is None else unfold(field[0]).strip(" \t")

        def addresses(name: str) -> list[Address] | None:
            field = fields.get(name)
            if field is None or self.address_budget <= 0:
                return None
            found = parse_address_list(field[0], self.address_budget, budget=self.token_budget)
            self.address_budget -= len(found or ())
            return found

        from_ = addresses("from")
        sender = addresses("sender")
        reply_to = addresses("reply-to")
        # RFC 3501 7.4.2: the server sets sender and reply-to to the value of from when absent (or empty).
        if sender is None and from_ is not None:
            sender = [list(a) for a in from_]
        if reply_to is None and from_ is not None:
            reply_to = [list(a) for a in from_]
        return [
            raw("date"),
            raw("subject"),
            from_,
            sender,
            reply_to,
            addresses("to"),
            addresses("cc"),
            addresses("bcc"),
            raw("in-reply-to"),
            raw("message-id"),
        ]


def _simple(fields: Fields, name: str) -> str | None:
    field = fields.get(name)
    if field is None:
        return None
    value = unfold(field[0]).strip(" \t")
    return value or None


def _boundary_bytes(params: Params, codec: str) -> bytes | None:
    value = next((v for k, v in params if k == "boundary"), None)
    if value is None:
        return None
    value = value.rstrip(" \t")  # RFC 2046 5.1.1: a boundary cannot end in space; padding follows it
    if not value or len(value) > MAX_BOUNDARY:
        return None
    for encoding in (codec, "utf-8"):
        try:
            return value.encode(encoding)
        except UnicodeEncodeError:
            continue
    return None


def _search_headers(fields: list[tuple[str, str, str]], decoded: dict[str, str]) -> str:
    out: list[str] = []
    size = 0
    for name, value, _codec in fields:
        text = decoded.get(value)
        if text is None:
            text = decoded[value] = decode_words(value).strip()
        line = f"{name}: {text}\n"
        if size + len(line) > MAX_SEARCH_HEADERS:
            out.append(line[: MAX_SEARCH_HEADERS - size])
            break
        out.append(line)
        size += len(line)
    return "".join(out)


def with_prefix(parsed: ParsedMessage, prefix: bytes) -> ParsedMessage | None:
    """The parse of `prefix` + the message whose parse is `parsed`, derived without reading the message
    again, or None when it cannot be (then parse the whole text). `prefix` is header fields a delivery stage
    puts on top (CRLF lines, `delivery.plan.header_field`).

    Derived only when the result is the same as a new parse (tests/message: property-tested): no prefixed
    field is one the parse reads (`_WANTED`: those could change the envelope, the structure or the dates),
    the message starts with a header field, and message and prefix together stay far from the parser's
    header budgets (MAX_HEADER_BYTES, MAX_HEADER_LINES). Then every offset moves by the prefix's length and
    the prefix's fields come first in the search headers."""
    root = parsed.body
    if not prefix or not parsed.search_headers or root.header_start != 0:
        return None
    if parsed.size + len(prefix) >= MAX_HEADER_BYTES:
        return None
    if root.body_start + root.lines + prefix.count(b"\n") >= MAX_HEADER_LINES:
        return None
    fields = list(iter_fields(prefix))
    if not fields or any(name.lower() in _WANTED for name, _value, _codec in fields):
        return None
    if sum(len(name) + len(value) for name, value, _codec in fields) > len(prefix):
        return None  # not only header fields
    searched = (_search_headers(fields, {}) + parsed.search_headers)[:MAX_SEARCH_HEADERS]
    return dataclasses.replace(
        parsed,
        size=parsed.size + len(prefix),
        body=_shifted(root, len(prefix), root=True),
        search_headers=searched,
    )


def _shifted(part: BodyPart, by: int, *, root: bool = False) -> BodyPart:
    moved = dataclasses.replace(
        part,
        header_start=part.header_start if root else part.header_start + by,
        body_start=part.body_start + by,
        body_end=part.body_end + by,
        parts=[_shifted(child, by) for child in part.parts],
        embedded=None if part.embedded is None else _shifted(part.embedded, by),
    )
    return moved


def parse_strict(fp: IO[bytes]) -> ParsedMessage:
    """`parse_message` without the safety net (for tests: a bug here must surface, not be papered over)."""
    parser = _StructureParser(fp)
    body, fields = parser.parse_entity(0, _text_plain())
    size = parser.scan.pos
    envelope = parser.root_envelope

    date: float | None = None
    sent_date: str | None = None
    if "date" in fields:
        date, sent_date = parse_date(fields["date"][0])
    # Decoded once each: the subject and sender are root fields, whose values the search headers decode too.
    decoded: dict[str, str] = {}
    search_headers = _search_headers(parser.root_fields, decoded)

    def decode(value: str) -> str:
        text = decoded.get(value)
        return decode_words(value).strip() if text is None else text

    subject = decode(fields["subject"][0]) if "subject" in fields else ""
    in_reply_to = fields["in-reply-to"][0] if "in-reply-to" in fields else ""
    references = fields["references"][0] if "references" in fields else ""
    from_display = decode(fields["from"][0]) if "from" in fields else ""

    texts: list[str] = []
    left = MAX_SEARCH_TEXT
    truncated = False
    for leaf in text_leaves(body):
        if texts:
            left -= 1  # the "\n" joining parts
        if left <= 0:
            truncated = True
            break
        text, cut = part_text(fp, leaf, left)
        texts.append(text)
        left -= len(text)
        if cut:
            truncated = True
            break
    return ParsedMessage(
        size=size,
        envelope=envelope,
        body=body,
        date=date,
        sent_date=sent_date,
        subject=subject,
        from_display=from_display,
        message_id=envelope[9],
        search_headers=search_headers,
        search_text="\n".join(texts),
        search_truncated=truncated,
        references=references_of(in_reply_to, references),
        thread_references=thread_references(in_reply_to, references),
    )


def _opaque(fp: IO[bytes]) -> ParsedMessage:
    """The whole message as one text/plain leaf without header: the last resort of `parse_message`."""
    fp.seek(0)
    size = 0
    newlines = 0
    last = b""
    while True:
        chunk = fp.read(65536)
        if not chunk:
            break
        joined = last + chunk
        newlines += chunk.count(b"\n") + chunk.count(b"\r") - joined.count(b"\r\n")
        size += len(chunk)
        last = chunk[-1:]
    lines = newlines + (1 if size and last not in (b"\r", b"\n") else 0)
    body = BodyPart(params=[("charset", "us-ascii")], body_end=size, lines=lines)
    return ParsedMessage(size=size, envelope=[None] * 10, body=body)


def parse_message(fp: IO[bytes]) -> ParsedMessage:
    """Parse the message in `fp` (binary, seekable; read from offset 0 to EOF) without ever raising for its
    content.

    I/O errors of `fp` propagate. Should a bug in the parser raise, the message is stored as one opaque
    text/plain part and the bug is logged, so that delivery never fails because of what a message contains."""
    try:
        return parse_strict(fp)
    except (OSError, MemoryError):
        raise
    except Exception:
        log.exception("MIME parser failed; storing the message as one opaque part")
        return _opaque(fp)
