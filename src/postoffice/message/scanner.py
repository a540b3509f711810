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

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

#: Bytes read from the file at a time.
CHUNK_SIZE = 64 * 1024
#: Longest line fragment handed out; longer lines arrive as several fragments.
MAX_FRAGMENT = 64 * 1024

_EOL = re.compile(rb"[\r\n]")


@dataclass(frozen=True, slots=True)
class LinePattern:
    """Lines `LineScanner.skip_to` stops at: `at_line_start` matches such a line at its start (terminator
    included), `after_terminator` finds a line terminator followed by one (the match ends at the line)."""

    at_line_start: re.Pattern[bytes]
    after_terminator: re.Pattern[bytes]


# A line terminator that is followed by the line in question (a CR never matches as the half of a CRLF).
_TERMINATOR = rb"(?:\r\n|\n|\r(?!\n))"


def _delimiter(boundaries: Iterable[bytes]) -> bytes | None:
    unique = sorted(set(boundaries), key=len, reverse=True)
    if not unique:
        return None
    return rb"--(?:" + b"|".join(re.escape(b) for b in unique) + rb")(?:--)?[ \t]*(?=[\r\n])"


def delimiter_lines(boundaries: Iterable[bytes]) -> LinePattern | None:
    """Lines that may be delimiter lines of any of `boundaries` (RFC 2046 5.1.1): "--" boundary ["--"]
    *(SP / HTAB), then a line terminator. None when there is no boundary."""
    line = _delimiter(boundaries)
    if line is None:
        return None
    return LinePattern(re.compile(line), re.compile(_TERMINATOR + rb"(?=" + line + rb")"))


def header_end_lines(boundaries: Iterable[bytes]) -> LinePattern:
    """Lines that may end a header block: an empty line (RFC 5322 2.1) or a delimiter line."""
    delimiter = _delimiter(boundaries)
    line = rb"[\r\n]" if delimiter is None else rb"(?:[\r\n]|" + delimiter + rb")"
    return LinePattern(re.compile(line), re.compile(_TERMINATOR + rb"(?=" + line + rb")"))


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
                if pattern.at_line_start.match(buf, i):
                    return
                m = pattern.after_terminator.search(buf, i)
                if m is not None:
                    self._skip_lines(m.end())
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
