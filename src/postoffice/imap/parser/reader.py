"""IMAP client command reader, sans-IO: bytes in, reader events and typed commands out (`CommandReader`).

It frames commands (lines, literals, APPEND message literals streamed in chunks), enforces the limits, and
hands each complete command to the grammar (`postoffice.imap.parser.grammar`); the events and commands are
the types of `postoffice.imap.parser.commands`.

The event model
    reader = CommandReader(max_line=..., max_literal=..., literal_plus=True)
    loop:
        reader.feed(read())
        while (event := reader.next()) is not None:
            handle(event)
  `feed` only buffers; parsing happens lazily in `next`, one event at a time, so the server can change the
  reader's mode (`utf8`, `expect_idle_done`, `expect_authenticate_response`, `refuse_literal`,
  `discard_command`) between two events and the change applies to everything after that event.

Events
- A `Command` subclass (`Login`, `Select`, `Fetch`, ...): one complete, syntactically valid command.
- `NeedContinuation(tag, size)`: the client sent a synchronizing literal `{n}`; the server must now send
  "+ Ready for literal data" and the reader expects the n octets. To refuse instead (answer the tag with NO or
  BAD and send no "+"), call `refuse_literal()` before the next `next()`: the client abandons the command
  (RFC 9051 section 7.5) and the reader starts reading a new command.
- `LiteralTooLarge(tag, size, limit, synchronizing, command)`: refused before reading it. Reply "NO [TOOBIG]"
  (APPEND, RFC 7889/9051), "NO [METADATA MAXSIZE n]" (SETMETADATA, RFC 5464) or "BAD [TOOBIG]"; `command`
  names the command. A synchronizing literal is simply not expected any more; the octets of a
  non-synchronizing one are already on their way, so the reader skips exactly `size` octets and then discards
  the rest of the command (see "Resynchronisation").
- `ParseError(tag, message)`: answer "tag BAD message" (untagged "* BAD" when tag is None).
- `UnsupportedCharset(tag, charset)`: SEARCH CHARSET other than UTF-8 / US-ASCII; answer
  "NO [BADCHARSET (UTF-8 US-ASCII)]" (RFC 9051 section 6.4.4).
- `AppendMessageStart`, `CatenateTextStart`, `AppendData`, and finally the `Append` command: see "APPEND
  streaming".
- `IdleDone()` / ParseError after `expect_idle_done()`; `AuthenticateResponse(line)` after
  `expect_authenticate_response()`.

APPEND streaming (docs/decisions/0011-imap-parser.md)
  Message literals can be up to `max_literal` octets and are never held in memory as one object. For each
  message of an APPEND (several with MULTIAPPEND) the reader emits:
    AppendMessageStart(tag, mailbox, index, message)   message: flags, date-time, size, binary, utf8
    NeedContinuation(tag, size)                        only for a synchronizing literal
    AppendData(tag, data) ...                          exactly `size` octets in total, each chunk
                                                       APPEND_CHUNK_SIZE octets except the last
  A CATENATE message (RFC 4469) has no literal of its own: each of its TEXT literals is announced by
  CatenateTextStart(tag, mailbox, index, part, text, message) instead, followed the same way by
  NeedContinuation and AppendData; its URL parts are only in the command (a CATENATE of URLs alone streams
  nothing). And, when the command line ends correctly, `Append(tag, mailbox, messages)` (or `Replace`),
  every message with its CATENATE parts; a syntax error after a message
  literal gives ParseError instead (the server throws its spooled messages away: MULTIAPPEND is atomic,
  RFC 3502 section 6.3.11). The server may give up on an APPEND at any time: `refuse_literal()` right after
  AppendMessageStart (or CatenateTextStart) of a synchronizing literal or after its NeedContinuation;
  `discard_command()` after one of a non-synchronizing literal or in the middle of the data.
  Chunks are cut at fixed offsets (not where reads happened to end), so the events do not depend on how the
  input was split.

Implementation notes
- Framing first, parsing second. A command is a list of line segments and the literals between them: a line
  whose text ends with `{n}`, `{n+}`, `~{n}` or `~{n+}` is continued by n octets and then by the next line
  (RFC 9051 section 4.3). Whether a literal is an APPEND message (streamed) or a small string (buffered) is
  decided by parsing the command up to the literal. Once the command is complete it is parsed in one pass.
- Syntax errors before a synchronizing literal are found before "+" is sent for the first literal of any
  command and for every literal of APPEND (the prefix is parsed then); for later literals of other commands,
  when the command is complete. APPEND keeps a checkpoint after each message literal, so MULTIAPPEND stays
  linear however many messages it has.
- Limits: `max_line` bounds the whole command except APPEND message literals (its lines and its small
  literals together; RFC 9051 section 4 asks for at least 8192 octets per line); a message literal may have
  up to `max_literal` octets; with literal_plus=False (LITERAL-, RFC 7888 section 4) a non-synchronizing
  literal may have up to LITERAL_MINUS_LIMIT octets; lists, NOT and OR nest at most MAX_NESTING deep; a
  SEARCH has at most MAX_SEARCH_KEYS keys. A literal size above MAX_LITERAL_SIZE (number64) is a syntax
  error.
- Lines end with CRLF; a bare LF is accepted as well (lenient, like the SMTP core, docs/decisions/0004). A CR,
  NUL or other control character inside a line is a syntax error, never a line end. Empty lines between
  commands are ignored.

Invariants every change must keep
- Nothing the client sends raises: malformed input becomes ParseError, and the reader resynchronises at the
  end of the command. Only misuse by the server (refuse_literal at the wrong time) raises `ImapUsageError`.
- `next()` always terminates: every step consumes input or changes state.
- Memory is bounded: outside message literals the reader holds at most `max_line` octets of the current
  command (its lines plus its small literals together) plus at most APPEND_CHUNK_SIZE octets of unparsed input
  per `next()` step: `buffered_bytes <= max_line + APPEND_CHUNK_SIZE + 64` once `next()` has returned None.
- The events do not depend on how the input was split across `feed` calls.
- Octets that belong to a literal are never parsed as commands, also when the command is being discarded
  (a non-synchronizing literal announced on a discarded line is skipped): no command injection through
  message content.
- After STARTTLS everything already buffered is discarded (RFC 9051 section 6.2.1, CVE-2011-0411): nothing
  received in plaintext after the STARTTLS line is parsed.

Resynchronisation: after an error in the middle of a command the reader discards input up to the end of the
command: to the end of the current line, and when that line ends with a non-synchronizing literal marker
`{n+}`, also those n octets and the line after them, and so on. A synchronizing marker on a discarded line
ends the command (the client waits for "+", gets the tagged BAD instead, and gives up).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from postoffice.imap.parser.commands import (
    AppendData,
    AppendMessageStart,
    AuthenticateResponse,
    CatenateTextStart,
    CatenateUrl,
    Compress,
    IdleDone,
    ImapUsageError,
    LiteralTooLarge,
    NeedContinuation,
    ParseError,
    ReaderEvent,
    StartTls,
    UnsupportedCharset,
)
from postoffice.imap.parser.grammar import (
    TAG,
    AppendProgress,
    BadCharset,
    BadSyntax,
    LiteralPending,
    MessagePending,
    Scanner,
    parse_append_rest,
    parse_command,
)

APPEND_CHUNK_SIZE = 64 * 1024
"""Size of every AppendData chunk but the last of a message."""

LITERAL_MINUS_LIMIT = 4096
"""Largest non-synchronizing literal with LITERAL- (RFC 7888 section 4), i.e. literal_plus=False."""

MAX_LITERAL_SIZE = 2**63 - 1
"""RFC 9051 section 9: literal = "{" number64 ["+"] "}" (and literal8); a larger size is a syntax error (BAD),
not a literal over a limit (NO [TOOBIG])."""

_MARKER_AT_END = re.compile(rb"(~?)\{([0-9]{1,30})(\+?)\}\Z")

# ------------------------------------------------------------------------------------------------ reader


class _State(Enum):
    LINE = "line"  # reading a line of a command (or a line between commands)
    LITERAL = "literal"  # collecting a small literal
    STREAM = "stream"  # passing an APPEND message literal on in AppendData chunks
    SKIP = "skip"  # skipping a literal of a discarded command
    DISCARD = "discard"  # discarding the rest of a command line


class _Mode(Enum):
    COMMAND = "command"
    IDLE = "idle"
    AUTHENTICATE = "authenticate"


_TAIL = 40  # octets of a discarded line kept to recognise a literal marker at its end


@dataclass
class _CommandInProgress:
    segments: list[bytes] = field(default_factory=list)
    literals: list[bytes | None] = field(default_factory=list)
    size: int = 0  # octets held: segments and small literals
    tag: str | None = None
    is_append: bool = False
    append: AppendProgress | None = None

    def parsed_tag(self) -> str:
        """The tag of a command whose parse got past it (a charset or a literal comes after the tag)."""
        tag = self.tag
        if tag is None:
            raise RuntimeError("the parse of a command without a tag got past the tag")
        return tag


#: The name of the command a first line begins (LiteralTooLarge.command): tag SP atom.
_COMMAND_NAME = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+ ([A-Za-z0-9]+)')
#: The commands whose literals include a message literal, streamed (APPEND, and REPLACE of RFC 8508).
_APPEND_HEAD = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+ (?:APPEND|REPLACE|UID REPLACE) ', re.IGNORECASE)


def _catenate_text_start(
    tag: str, progress: AppendProgress, pending: MessagePending, index: int, sync: bool
) -> CatenateTextStart:
    """The event of a CATENATE TEXT literal (the last part of `progress.catenate`), with the URL parts right
    before it."""
    parts = progress.catenate or []
    text = len(parts) - 1
    first = text
    while first > 0 and isinstance(parts[first - 1], CatenateUrl):
        first -= 1
    urls = tuple(part.url for part in parts[first:text] if isinstance(part, CatenateUrl))
    if pending.text is None:  # pragma: no cover - only called for a TEXT literal
        raise ImapUsageError("not a CATENATE TEXT literal")
    return CatenateTextStart(
        tag, progress.mailbox, index, text, pending.text, pending.message, sync, progress.replace, urls
    )


class CommandReader:
    """Reads client commands from a byte stream. See the module docstring for the event model."""

    def __init__(
        self, *, max_line: int = 64 * 1024, max_literal: int = 50 * 1024 * 1024, literal_plus: bool = True
    ) -> None:
        if max_line < 1024:
            raise ValueError("max_line must be at least 1024 (RFC 9051 section 4 recommends 8192)")
        if max_literal < 1:
            raise ValueError("max_literal must be positive")
        self.max_line = max_line
        self.max_literal = max_literal
        self.literal_plus = literal_plus
        self.utf8 = False
        """Set by the server after ENABLE UTF8=ACCEPT or ENABLE IMAP4rev2 (RFC 6855, RFC 9051)."""
        self._buf = bytearray()
        self._scanned = 0  # octets of _buf already known to hold no LF
        self._events: deque[ReaderEvent] = deque()
        self._state = _State.LINE
        self._mode = _Mode.COMMAND
        self._remaining = 0  # octets left of the current literal (LITERAL, STREAM, SKIP)
        self._literal = bytearray()
        self._tail = b""  # end of the line being discarded
        self._command = _CommandInProgress()
        self._stream_tag = ""  # the APPEND whose message literal is streaming (STREAM)
        self._continuation_pending = False  # the last event returned was NeedContinuation

    # ------------------------------------------------------------------------------------------ public API

    def feed(self, data: bytes) -> None:
        """Buffer octets from the client; nothing is parsed until next()."""
        self._buf += data

    def next(self) -> ReaderEvent | None:
        """The next event, or None when more input is needed."""
        self._continuation_pending = False
        while not self._events:
            if not self._step():
                return None
        event = self._events.popleft()
        self._continuation_pending = isinstance(event, NeedContinuation)
        return event

    @property
    def buffered_bytes(self) -> int:
        """Octets held: unparsed input plus the parts of the current command."""
        return len(self._buf) + self._command.size + len(self._literal)

    @property
    def in_command(self) -> bool:
        """True while a command has been started but not completed or discarded."""
        return bool(self._command.segments) or self._state is not _State.LINE

    def expect_idle_done(self) -> None:
        """The server sent "+ idling": the next line must be DONE (RFC 2177, RFC 9051 section 6.3.13)."""
        self._mode = _Mode.IDLE

    def expect_authenticate_response(self) -> None:
        """The server sent a "+ challenge": the next line is a SASL response (RFC 9051 section 6.2.2)."""
        self._mode = _Mode.AUTHENTICATE

    def refuse_literal(self) -> None:
        """Right after NeedContinuation: the server answered the tag instead of sending "+"."""
        queued = bool(self._events) and isinstance(self._events[0], NeedContinuation)
        if not (self._continuation_pending or queued) or self._state not in (_State.LITERAL, _State.STREAM):
            raise ImapUsageError("refuse_literal() is only allowed right after NeedContinuation")
        self._events.clear()
        self._continuation_pending = False
        self._reset_command()

    def discard_command(self) -> None:
        """Give up on the command in progress: skip the rest of its literal and lines (no event follows).

        Not for a synchronizing literal the server did not answer with "+": use refuse_literal() then.
        """
        self._continuation_pending = False
        self._events.clear()
        if self._state in (_State.LITERAL, _State.STREAM):
            self._command = _CommandInProgress()
            self._literal.clear()
            self._state = _State.SKIP
        elif self._state is _State.LINE and self._command.segments:
            self._command = _CommandInProgress()
            self._tail = b""
            self._state = _State.DISCARD

    # ------------------------------------------------------------------------------------------ internals

    def _reset_command(self) -> None:
        self._command = _CommandInProgress()
        self._literal.clear()
        self._remaining = 0
        self._state = _State.LINE

    def _discard_rest(self, sync: bool | None, size: int) -> None:
        """After an error at a literal marker: expect nothing (sync) or skip the literal and the rest."""
        self._command = _CommandInProgress()
        self._literal.clear()
        if sync:
            self._state = _State.LINE
        else:
            self._remaining = size
            self._state = _State.SKIP

    def _step(self) -> bool:
        """Make progress; False when more input is needed."""
        state = self._state
        if state is _State.LINE:
            return self._step_line()
        if state is _State.DISCARD:
            return self._step_discard()
        if not self._buf and self._remaining:
            return False
        if state is _State.LITERAL:
            n = min(self._remaining, len(self._buf))
            self._literal += self._buf[:n]
            del self._buf[:n]
            self._remaining -= n
            if self._remaining == 0:
                self._command.literals.append(bytes(self._literal))
                self._command.size += len(self._literal)
                self._literal.clear()
                self._state = _State.LINE
            return True
        if state is _State.STREAM:
            n = min(self._remaining, APPEND_CHUNK_SIZE)
            if len(self._buf) < n:
                return False
            if n:
                self._events.append(AppendData(self._stream_tag, bytes(self._buf[:n])))
                del self._buf[:n]
                self._remaining -= n
            if self._remaining == 0:
                self._command.literals.append(None)
                self._state = _State.LINE
            return True
        # SKIP
        n = min(self._remaining, len(self._buf))
        del self._buf[:n]
        self._remaining -= n
        if self._remaining == 0:
            self._tail = b""
            self._state = _State.DISCARD
        return True

    def _step_discard(self) -> bool:
        idx = self._buf.find(b"\n")
        if idx < 0:
            self._tail = (self._tail + bytes(self._buf))[-_TAIL:]
            self._buf.clear()
            return False
        line = (self._tail + bytes(self._buf[:idx]))[-_TAIL:].removesuffix(b"\r")
        del self._buf[: idx + 1]
        self._tail = b""
        m = _MARKER_AT_END.search(line)
        if m and m.group(3):
            self._remaining = int(m.group(2))
            self._state = _State.SKIP
        else:
            self._state = _State.LINE
        return True

    def _first_line_tag(self, line: bytes) -> str | None:
        m = TAG.match(line)
        if m and line[m.end() : m.end() + 1] in (b" ", b""):
            return m.group().decode("ascii")
        return None

    def _step_line(self) -> bool:
        cmd = self._command
        budget = self.max_line if self._mode is not _Mode.COMMAND else self.max_line - cmd.size
        idx = self._buf.find(b"\n", self._scanned)
        if idx < 0:
            if len(self._buf) > budget + 1:
                tag = cmd.tag if cmd.segments else self._first_line_tag(bytes(self._buf[:256]))
                self._mode = _Mode.COMMAND
                self._command = _CommandInProgress()
                self._tail = bytes(self._buf[-_TAIL:])
                self._buf.clear()
                self._scanned = 0
                self._state = _State.DISCARD
                self._events.append(ParseError(tag, "command line too long"))
                return True
            self._scanned = len(self._buf)
            return False
        line = bytes(self._buf[:idx]).removesuffix(b"\r")
        del self._buf[: idx + 1]
        self._scanned = 0
        if len(line) > budget:
            tag = cmd.tag if cmd.segments else self._first_line_tag(line[:256])
            self._mode = _Mode.COMMAND
            self._command = _CommandInProgress()
            self._events.append(ParseError(tag, "command line too long"))
            m = _MARKER_AT_END.search(line[-_TAIL:])
            if m and m.group(3):
                self._remaining = int(m.group(2))
                self._state = _State.SKIP
            return True
        if self._mode is _Mode.IDLE:
            self._mode = _Mode.COMMAND
            if line.upper() == b"DONE":
                self._events.append(IdleDone())
            else:
                self._events.append(ParseError(None, "expected DONE to end IDLE"))
            return True
        if self._mode is _Mode.AUTHENTICATE:
            self._mode = _Mode.COMMAND
            self._events.append(AuthenticateResponse(line))
            return True
        if not cmd.segments:
            if not line:
                return True  # empty lines between commands are ignored
            cmd.tag = self._first_line_tag(line)
            cmd.is_append = _APPEND_HEAD.match(line) is not None
        cmd.segments.append(line)
        cmd.size += len(line)
        marker = _MARKER_AT_END.search(line)
        if marker is None:
            self._finish_command()
        else:
            self._literal_marker(marker)
        return True

    def _finish_command(self) -> None:
        cmd = self._command
        self._reset_command()
        try:
            if cmd.append is not None:
                sc = Scanner(cmd.segments, cmd.literals, self.utf8, cmd.append.resume_segment)
                command = parse_append_rest(sc, cmd.append)
            else:
                command = parse_command(Scanner(cmd.segments, cmd.literals, self.utf8))
        except BadSyntax as exc:
            self._events.append(ParseError(cmd.tag, str(exc)))
            return
        except BadCharset as exc:
            self._events.append(UnsupportedCharset(cmd.parsed_tag(), exc.charset, exc.save))
            return
        except (LiteralPending, MessagePending):
            # Only possible when a line ends with a marker, which _step_line handles; defensive.
            self._events.append(ParseError(cmd.tag, "unexpected literal"))  # pragma: no cover
            return  # pragma: no cover
        if isinstance(command, StartTls | Compress):
            # RFC 9051 section 6.2.1: no pipelining past STARTTLS (CVE-2011-0411); past COMPRESS (RFC 4978
            # section 3) what follows is compressed, or a client's mistake
            self._buf.clear()
            self._scanned = 0
        self._events.append(command)

    def _literal_marker(self, marker: re.Match[bytes]) -> None:
        cmd = self._command
        size = int(marker.group(2))
        sync = not marker.group(3)
        message: MessagePending | None = None
        if cmd.is_append or len(cmd.literals) == 0:
            mark = cmd.append.mark() if cmd.append is not None else None
            try:
                if cmd.append is not None:
                    sc = Scanner(cmd.segments, cmd.literals, self.utf8, cmd.append.resume_segment)
                    parse_append_rest(sc, cmd.append)
                else:
                    parse_command(Scanner(cmd.segments, cmd.literals, self.utf8))
                raise BadSyntax("unexpected literal")  # pragma: no cover - the marker ends the last segment
            except LiteralPending:
                if cmd.append is not None and mark is not None:
                    cmd.append.restore(mark)  # a CATENATE URL as a literal: parsed again from here with it
            except MessagePending as pending:
                message = pending
            except BadSyntax as exc:
                self._discard_rest(sync, size)
                self._events.append(ParseError(cmd.tag, str(exc)))
                return
            except BadCharset as exc:
                self._discard_rest(sync, size)
                self._events.append(UnsupportedCharset(cmd.parsed_tag(), exc.charset, exc.save))
                return
        tag = cmd.parsed_tag()  # a valid prefix, or a literal marker after the first line's parse
        if size > MAX_LITERAL_SIZE:
            self._discard_rest(sync, size)
            self._events.append(ParseError(tag, f"literal size {marker.group(2).decode()} is not a number64"))
            return
        limit = self.max_literal if message is not None else self.max_line - cmd.size
        if not sync and not self.literal_plus:
            limit = min(limit, LITERAL_MINUS_LIMIT)
        if size > limit:
            name = _COMMAND_NAME.match(cmd.segments[0])
            self._discard_rest(sync, size)
            command = name.group(1).decode("ascii").upper() if name else ""
            self._events.append(LiteralTooLarge(tag, size, limit, sync, command))
            return
        self._remaining = size
        if message is None:
            self._state = _State.LITERAL
        else:
            progress = cmd.append = message.progress
            progress.resume_segment = len(cmd.segments)
            progress.close_paren = message.in_utf8_parens
            index = len(progress.messages)  # a CATENATE TEXT's message is not in it yet
            if message.text is None:
                progress.messages.append(message.message)
                self._events.append(
                    AppendMessageStart(tag, progress.mailbox, index, message.message, sync, progress.replace)
                )
            else:
                self._events.append(_catenate_text_start(tag, progress, message, index, sync))
            self._stream_tag = tag
            self._state = _State.STREAM
        if sync:
            self._events.append(NeedContinuation(tag, size))
