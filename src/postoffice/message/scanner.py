"""Offset-aware line scanner over a seekable binary file.

The stdlib `email` parsers do not report byte offsets, so the structure splitter reads the message through
this scanner, which knows the absolute offset of every line, counts line terminators, and never holds more
than a few chunks of the file in memory.

Rules implemented here:
- A line terminator is CRLF, a bare LF or a bare CR (stored mail uses CRLF, RFC 5322 2.1; the others occur
  in the wild). CR immediately followed by LF is always one terminator, so every CR and LF byte of the file
  belongs to exactly one terminator.
- Lines longer than `MAX_FRAGMENT` bytes are delivered in fragments; only the first fragment of a line is "at
  a line start", which is where MIME boundary delimiters are recognised (RFC 2046 5.1.1).

Invariants: `pos` only grows, except through `restore` (used to re-read a few header lines as body);
`newlines` is the number of terminators that end at or before `pos`; `tail`
holds the last (up to) three bytes consumed, which is enough to see the terminator ending at `pos` and the
byte before it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

#: Bytes read from the file at a time.
CHUNK_SIZE = 64 * 1024
#: Longest line fragment handed out; longer lines arrive as several fragments.
MAX_FRAGMENT = 64 * 1024

_EOL = re.compile(rb"[\r\n]")
# A complete line shorter than MAX_FRAGMENT bytes (a longer one is handed out in fragments, by `peek`):
# content (group 1) and terminator. Bounded, so a long line fails after MAX_FRAGMENT bytes.
_BUFFERED_LINE = re.compile(rb"([^\r\n]{0,%d})(?:\r\n|\r|\n)" % (MAX_FRAGMENT - 1))


class LinePattern:
    """Lines `LineScanner.skip_to` stops at: the delimiter lines of a set of boundaries (RFC 2046 5.1.1:
    "--" boundary ["--"] *(SP / HTAB), then a line terminator), and with `empty` also empty lines (the
    lines that can end a header block, RFC 5322 2.1).

    No regular expression is compiled per boundary set at first: one fixed expression finds the lines that
    start with "--" (and the empty lines), and the rest of such a line is looked up in the set. Only a
    pattern that has passed over `MISSES` "--" lines that were not delimiters (a body full of them) gets an
    expression of its own, which then skips such lines in C; `CompileBudget` caps how many one message may
    compile (a compile costs about 100 us: 3,000 multiparts with their own boundaries, with four compiles
    each, made a 250 KB message take 0.9 s to parse)."""

    #: "--" lines that were not delimiters before a pattern compiles its own expression.
    MISSES = 64

    __slots__ = ("_boundaries", "_budget", "_compiled", "_empty", "_misses", "_set")

    def __init__(self, boundaries: tuple[bytes, ...], *, empty: bool, budget: CompileBudget) -> None:
        self._boundaries = boundaries
        self._set = frozenset(boundaries)
        self._empty = empty
        self._budget = budget
        self._misses = 0
        self._compiled: tuple[re.Pattern[bytes], re.Pattern[bytes]] | None = None

    def _is_delimiter(self, rest: bytes) -> bool:
        """Whether the line "--" + `rest` (terminator excluded) is a delimiter line of the set."""
        core = rest.rstrip(b" \t")
        return core in self._set or (core[-2:] == b"--" and core[:-2] in self._set)

    def at(self, buf: bytes, i: int) -> bool:
        """Whether the line at `buf[i]` (a line start) may match; False until its terminator is buffered."""
        if self._compiled is not None:
            return self._compiled[0].match(buf, i) is not None
        if self._empty and buf[i : i + 1] in (b"\r", b"\n"):
            return True
        m = _DASH_LINE.match(buf, i)
        return m is not None and self._is_delimiter(m.group(1))

    def find(self, buf: bytes, i: int) -> int:
        """The start of the first line that may match, among the lines after a terminator at or after
        `buf[i]` (terminator buffered); -1 if there is none."""
        compiled = self._compiled
        if compiled is None:
            lines = _EMPTY_OR_DASH_LINE if self._empty else _DASH_LINE_AFTER
            for m in lines.finditer(buf, i):
                rest = m.group(2)
                if rest is None or self._is_delimiter(rest):
                    return m.end(1)
                self._misses += 1
                if self._misses >= self.MISSES and self._budget.take():
                    compiled = self._compiled = _compiled_lines(self._boundaries, self._empty)
                    i = m.end(1)
                    break
            else:
                return -1
        m2 = compiled[1].search(buf, i)
        return -1 if m2 is None else m2.end()


class CompileBudget:
    """How many more `LinePattern`s of one message may compile an expression of their own."""

    __slots__ = ("left",)

    def __init__(self, left: int = 16) -> None:
        self.left = left

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


# A line terminator that is followed by the line in question (a CR never matches as the half of a CRLF).
_TERMINATOR = rb"(?:\r\n|\n|\r(?!\n))"
# A line that starts with "--", its terminator buffered: group 1 is the rest of the line ...
_DASH_LINE = re.compile(rb"--([^\r\n]*)(?=[\r\n])")
# ... and after a terminator (group 1; the line starts where it ends), group 2.
_DASH_LINE_AFTER = re.compile(rb"(" + _TERMINATOR + rb")--([^\r\n]*)(?=[\r\n])")
# The same, or an empty line (group 2 is None then).
_EMPTY_OR_DASH_LINE = re.compile(rb"(" + _TERMINATOR + rb")(?:[\r\n]|--([^\r\n]*)(?=[\r\n]))")


@functools.lru_cache(maxsize=256)
def _compiled_lines(
    boundaries: tuple[bytes, ...], empty: bool
) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """(at a line start, after a terminator: the match ends at the line) for the lines of `LinePattern`."""
    unique = sorted(boundaries, key=len, reverse=True)
    line = rb"--(?:" + b"|".join(re.escape(b) for b in unique) + rb")(?:--)?[ \t]*(?=[\r\n])"
    if empty:
        line = rb"(?:[\r\n]|" + line + rb")"
    return re.compile(line), re.compile(_TERMINATOR + rb"(?=" + line + rb")")


def delimiter_lines(boundaries: Iterable[bytes], budget: CompileBudget | None = None) -> LinePattern | None:
    """Lines that may be delimiter lines of any of `boundaries` (RFC 2046 5.1.1): "--" boundary ["--"]
    *(SP / HTAB), then a line terminator. None when there is no boundary."""
    unique = tuple(sorted(set(boundaries)))
    if not unique:
        return None
    return LinePattern(unique, empty=False, budget=budget or CompileBudget())


def header_end_lines(boundaries: Iterable[bytes], budget: CompileBudget | None = None) -> LinePattern:
    """Lines that may end a header block: an empty line (RFC 5322 2.1) or a delimiter line."""
    return LinePattern(tuple(sorted(set(boundaries))), empty=True, budget=budget or CompileBudget())


@dataclass(frozen=True, slots=True)
class Mark:
    """The scanner state at a line start, enough to end a body there (see `body_end_at`)."""

    pos: int
    newlines: int
    #: length of the terminator that ends exactly at `pos` (0 at offset 0)
    term_len: int
    #: whether the byte before that terminator is itself part of a terminator
    term_before: bool


class LineScanner:
    """Reads `fp` from offset 0 to EOF, line by line or in bulk, keeping track of offsets."""

    def __init__(self, fp: IO[bytes]) -> None:
        self._fp = fp
        self._buf = b""
        self._i = 0  # index of the current position in _buf
        self._base = 0  # absolute offset of _buf[0]
        self._eof = False
        self._peeked: tuple[bytes, int] | None = None
        self.newlines = 0
        self.at_line_start = True
        self.tail = b""
        fp.seek(0)

    @property
    def pos(self) -> int:
        return self._base + self._i

    # -- buffer ----------------------------------------------------------------------------------------------
    def _fill(self, need: int) -> bool:
        """Make at least `need` unread bytes available unless EOF comes first; True if it read more."""
        if len(self._buf) - self._i >= need or self._eof:
            return False
        rest = self._buf[self._i :]
        self._base += self._i
        self._i = 0
        parts = [rest]
        have = len(rest)
        while have < need:
            chunk = self._fp.read(max(CHUNK_SIZE, need - have))
            if not chunk:
                self._eof = True
                break
            parts.append(chunk)
            have += len(chunk)
        self._buf = b"".join(parts)
        return True

    def _consume(self, end: int, term_len: int) -> None:
        """Consume the buffer up to index `end`; `term_len` says whether it ends with a terminator."""
        start = self._i
        if end - start >= 3:
            self.tail = self._buf[end - 3 : end]
        else:
            self.tail = (self.tail + self._buf[start:end])[-3:]
        self._i = end
        self._peeked = None
        self.at_line_start = term_len > 0

    # -- line access -----------------------------------------------------------------------------------------
    def peek(self) -> tuple[bytes, int] | None:
        """The current fragment as (content without terminator, terminator length), or None at EOF.

        A fragment with terminator length 0 is either the last line without terminator or part of a line
        longer than MAX_FRAGMENT."""
        if self._peeked is not None:
            return self._peeked
        while True:
            buf, i = self._buf, self._i
            m = _EOL.search(buf, i, i + MAX_FRAGMENT + 1)
            if m is not None and m.start() - i <= MAX_FRAGMENT:
                j = m.start()
                if buf[j] == 0x0D:  # CR: CRLF or bare CR
                    if j + 1 >= len(buf) and not self._eof:
                        self._fill(j + 2 - i)
                        continue
                    term = 2 if j + 1 < len(buf) and buf[j + 1] == 0x0A else 1
                else:
                    term = 1
                if j - i == MAX_FRAGMENT:
                    # The terminator comes right after a full fragment; hand out the fragment alone.
                    term = 0
                self._peeked = (buf[i:j], term)
                return self._peeked
            if len(buf) - i > MAX_FRAGMENT:
                self._peeked = (buf[i : i + MAX_FRAGMENT], 0)
                return self._peeked
            if self._eof:
                if i >= len(buf):
                    return None
                self._peeked = (buf[i:], 0)
                return self._peeked
            self._fill(MAX_FRAGMENT + 2)

    def lines_ahead(self, limit: int = 64) -> list[tuple[bytes, int]]:
        """The current fragment (as `peek` gives it) and up to `limit` - 1 complete lines buffered after it,
        as (content, terminator length); [] at EOF. Consume them one by one with `step`, in order.

        For code that looks at every line (header blocks): one regular-expression match per line instead of
        a `peek` and an `advance`. The list stops before a line that is not completely buffered, is longer
        than MAX_FRAGMENT, or ends in a CR that may be the first half of a CRLF."""
        first = self.peek()
        if first is None:
            return []
        out = [first]
        if not first[1]:
            return out
        buf, j, n, eof = self._buf, self._i + len(first[0]) + first[1], len(self._buf), self._eof
        match = _BUFFERED_LINE.match
        while j < n and len(out) < limit:
            m = match(buf, j)
            if m is None:
                break
            end = m.end()
            if end == n and buf[end - 1] == 0x0D and not eof:
                break
            term = end - m.end(1)
            out.append((m.group(1), term))
            j = end
        return out

    def step(self, length: int, term: int) -> None:
        """Consume the next line (from `lines_ahead`): `length` content bytes and a `term`-byte terminator."""
        if term:
            self.newlines += 1
        self._consume(self._i + length + term, term)

    def advance(self) -> None:
        """Consume the fragment returned by `peek`."""
        frag = self.peek()
        if frag is None:
            return
        content, term = frag
        if term:
            self.newlines += 1
        self._consume(self._i + len(content) + term, term)

    def skip_to(self, pattern: LinePattern | None) -> None:
        """Consume whole lines until the current line may match `pattern`, or EOF (None: skip to EOF).

        This is the fast path through large bodies: the searching and line counting happen in C over whole
        chunks. It also stops at a last line without terminator and at lines longer than MAX_FRAGMENT, which
        the caller examines through peek/advance like any other line."""
        while True:
            if not self.at_line_start:
                if self.peek() is None:
                    return
                self.advance()
                continue
            self._fill(2)
            buf, i = self._buf, self._i
            if i >= len(buf):
                return
            if buf.endswith(b"\r") and not self._eof:
                # A final CR may be the first half of a CRLF; decide once the next byte is here.
                self._fill(len(buf) - i + 1)
                continue
            if pattern is not None:
                if pattern.at(buf, i):
                    return
                j = pattern.find(buf, i)
                if j >= 0:
                    self._skip_lines(j)
                    return
            last = max(buf.rfind(b"\n", i), buf.rfind(b"\r", i))
            if last >= i:
                self._skip_lines(last + 1)
                self._fill(MAX_FRAGMENT + 2)
                continue
            # Only part of a line is buffered: read on, unless it is the last line or too long to match.
            if self._eof or len(buf) - i > MAX_FRAGMENT:
                return
            self._fill(len(buf) - i + 1)

    def _skip_lines(self, end: int) -> None:
        buf, i = self._buf, self._i
        crlf = buf.count(b"\r\n", i, end)
        self.newlines += buf.count(b"\n", i, end) + buf.count(b"\r", i, end) - crlf
        self._consume(end, 1)

    # -- going back -----------------------------------------------------------------------------------------
    def save(self) -> tuple[int, int, bytes, bool]:
        """The complete reading state, for `restore`."""
        return self.pos, self.newlines, self.tail, self.at_line_start

    def restore(self, state: tuple[int, int, bytes, bool]) -> None:
        """Go back to a state returned by `save` (re-reading from the file if it has left the buffer)."""
        pos, self.newlines, self.tail, self.at_line_start = state
        self._peeked = None
        if self._base <= pos <= self._base + len(self._buf):
            self._i = pos - self._base
            return
        self._fp.seek(pos)
        self._buf, self._i, self._base, self._eof = b"", 0, pos, False

    # -- marks -----------------------------------------------------------------------------------------------
    def mark(self) -> Mark:
        """State at the current position, which must be a line start or EOF."""
        tail = self.tail
        if tail.endswith(b"\r\n"):
            term = 2
        elif tail[-1:] in (b"\r", b"\n"):
            term = 1
        else:
            term = 0
        before = tail[-term - 1 : -term] if term and len(tail) > term else b""
        return Mark(self.pos, self.newlines, term, before in (b"\r", b"\n"))


def body_end_at(
    body_start: int, newlines_at_start: int, mark: Mark, before_boundary: bool
) -> tuple[int, int]:
    """(body_end, lines) of a body starting at line start `body_start` and stopping at `mark`.

    When the body stops at a boundary line, the line terminator before that line belongs to the boundary
    delimiter, not to the body (RFC 2046 5.1.1); the returned end is then before `body_start` when the body is
    empty and the terminator ended the header (the caller moves `body_start` back). `lines` is the number of
    line terminators in the body plus one if the body is non-empty and does not end with a terminator, which
    is the number of line starts in the body."""
    end = mark.pos
    ends_before = mark.newlines - newlines_at_start  # terminators ending in (body_start, end]
    if mark.term_len:
        ends_before -= 1  # the one ending exactly at `end`
        if before_boundary:
            end -= mark.term_len
            if mark.term_before:
                ends_before -= 1  # the one ending exactly at the new `end`
    if end <= body_start:
        return end, 0
    return end, ends_before + 1
