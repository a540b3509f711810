"""The skeleton of the line-oriented protocol cores (SMTP, POP3, POP2), sans-IO: bytes in, events, bytes out.

`postoffice.smtp.protocol`, `postoffice.pop3.protocol` and `postoffice.pop2.protocol` are subclasses of
`LineProtocol`; each adds its commands, replies and states. What they share lives here, once, so that line
limits, pipelining and the STARTTLS defence cannot drift apart. `postoffice.net.driver` is the one connection
loop around them.

What it implements
- The event model (the h11 shape, docs/decisions/0001):
      proto.greeting()
      loop:
          send(proto.data_to_send())
          proto.receive_data(read())           # b"" when the peer closed
          while (event := proto.next_event()) is not None:
              handle(event)                    # answers the decision events
  `receive_data` only buffers; parsing happens lazily in `next_event`, one event at a time, through the
  subclass's `_step`. When `_step` can make no progress and the peer has closed, the subclass's
  `_peer_closed` runs (it queues its ConnectionClosed event and closes).
- Pipelining (RFC 2920 for SMTP, RFC 2449 section 6.6 for POP3; POP2 clients pipeline too): an event that
  needs the glue's answer is made *pending* by `_decide`; until the glue answers, `next_event` returns None
  and no further input is parsed. So replies to pipelined commands are queued in command order, and no
  command is parsed in a state that an earlier, unanswered one may still change.
- Command lines (`_next_line`): a line ends at LF; a CR before it is dropped (CRLF is the line end of all
  three protocols; a bare LF is taken too, docs/decisions/0004 for SMTP). A line of more than `_line_limit()`
  octets, line end included, is reported once (`LINE_TOO_LONG`) and discarded up to its LF, however much
  later that arrives: at most the limit is ever kept while looking for a line end. The limit is asked for
  each line, so a core may choose it from the line's first octets (SMTP: MAIL, RCPT, AUTH).
- `split_command`: the verb (case-insensitive, so upper-cased) and the argument octets; a line holding a C0
  control character or DEL is refused whole (such octets would reach logs and trace headers).
- STARTTLS (RFC 3207 section 4.2; POP3 STLS, RFC 2595 section 4): `_begin_tls(event)` is called once the
  upgrade command was accepted and its reply queued. Every octet received after the command line (already
  buffered, or fed before `tls_started()`) was sent in plaintext and is discarded, never parsed as if it had
  come over TLS (CVE-2011-0411, the Postfix/Wietse Venema "STARTTLS command injection"). The glue flushes,
  drops what its own reader buffered (`net.listener.Connection.start_tls`), does the handshake and calls
  `tls_started()`, which clears the buffer once more and lets the subclass forget what the upgrade
  invalidates (`_tls_reset`). A peer that closes while the upgrade is pending ends the session.
- Accounting: `buffered_bytes` (received, not yet parsed) and `output_size` (queued, not yet taken).

Invariants every subclass keeps (and the tests in tests/net/test_lineproto.py prove for the skeleton)
- The events and the output do not depend on how the input was split across receive_data calls.
- Memory is bounded: at most `_line_limit()` octets are kept while looking for a line end; the glue must not
  feed data while a decision is pending (it would be buffered unparsed).
- Nothing the peer sends raises; only glue misuse raises (`LineUsageError` and its subclasses).
- After `_close()` nothing more is parsed or accepted; only the events already queued come out.
- Hot paths: nothing here runs per octet or adds work per message line; bulk data (SMTP DATA/BDAT) is scanned
  by the subclass's `_step` a window at a time, with one `next_event` step per window.
"""

from __future__ import annotations

import re
from collections import deque
from enum import Enum
from typing import ClassVar, Generic, TypeVar

__all__ = [
    "CONTROL_CHARACTER",
    "LINE_TOO_LONG",
    "LineProtocol",
    "LineTooLong",
    "LineUsageError",
    "TlsUpgrade",
    "split_command",
]

#: C0 controls and DEL: never accepted in a command line.
CONTROL_CHARACTER = re.compile(rb"[\x00-\x1f\x7f]")


class LineUsageError(RuntimeError):
    """The glue called a decision method when no such decision was pending (each core has a subclass)."""


class TlsUpgrade:
    """Marks a core's STARTTLS / STLS event (a mixin of its own event class): the glue flushes, upgrades the
    connection and calls `tls_started()`."""

    __slots__ = ()


class LineTooLong(Enum):
    """What `_next_line` returns for a line over the limit (already discarded)."""

    LINE_TOO_LONG = "line too long"


LINE_TOO_LONG = LineTooLong.LINE_TOO_LONG

EventT = TypeVar("EventT")


def split_command(line: bytes) -> tuple[str, bytes] | None:
    """`line` (without its line end) as the upper-cased verb and the octets after the first space; None when
    it holds a control character. A verb that is not ASCII comes back as "" (no command has that name, so
    it is answered like any unknown command, as is an empty line)."""
    if CONTROL_CHARACTER.search(line):
        return None
    verb, _, arg = line.partition(b" ")
    try:
        return verb.decode("ascii").upper(), arg
    except UnicodeDecodeError:
        return "", arg


class LineProtocol(Generic[EventT]):
    """Input buffer, line reading, decisions, the STARTTLS state and the output queue of a line-oriented
    server core. See the module docstring; subclasses implement `_step`, `_line_limit` and `_peer_closed`."""

    #: What glue misuse raises (each core names its own subclass).
    _usage_error: ClassVar[type[LineUsageError]] = LineUsageError

    def __init__(self, *, max_errors: int, tls_active: bool = False) -> None:
        self._buffer = bytearray()
        self._out = bytearray()
        self._events: deque[EventT] = deque()
        self._pending: EventT | None = None
        self._closed = False
        self._eof = False
        self._tls_active = tls_active
        self._tls_pending = False  # the upgrade was accepted: input is discarded until tls_started()
        self._discarding_line = False  # a line was too long: its octets are dropped up to its LF
        self._errors = 0
        self._max_errors = max_errors

    # ------------------------------------------------------------------------------------------ public API

    @property
    def closed(self) -> bool:
        """True once the session is over (QUIT, too many errors, close(), a peer close): flush data_to_send(),
        then close the connection."""
        return self._closed

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    @property
    def buffered_bytes(self) -> int:
        """Received octets not yet parsed (bounded as the module docstring describes)."""
        return len(self._buffer)

    @property
    def output_size(self) -> int:
        """Octets queued in data_to_send(); the glue flushes during long replies when this grows."""
        return len(self._out)

    def receive_data(self, data: bytes) -> None:
        """Feed octets from the peer; b"" means the peer closed the connection."""
        if self._closed:
            return
        if not data:
            self._eof = True
            return
        if self._tls_pending:
            # RFC 3207 section 4.2 / RFC 2595 section 4 / CVE-2011-0411: nothing sent in plaintext after the
            # upgrade command may be acted on.
            return
        self._buffer += data

    def next_event(self) -> EventT | None:
        """The next event, or None when more data is needed or a decision is pending."""
        events = self._events
        while True:
            if events:
                return events.popleft()
            if self._closed:
                return None
            if self._pending is not None:
                if self._eof and self._tls_pending:
                    self._peer_closed()
                    continue
                return None
            if not self._step():
                if not self._eof:
                    return None
                self._peer_closed()

    def data_to_send(self) -> bytes:
        """All reply octets queued so far; the queue is emptied."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def tls_started(self) -> None:
        """The glue completed the TLS handshake that followed the core's upgrade event."""
        if self._closed:
            return
        if not self._tls_pending:
            raise self._usage_error("tls_started() without a pending StartTls event")
        self._tls_pending = False
        self._pending = None
        self._tls_active = True
        self._buffer.clear()
        self._tls_reset()

    # ---------------------------------------------------------------------------------- for subclasses

    def _step(self) -> bool:
        """Parse what the buffer allows; False when nothing can be done without more input."""
        raise NotImplementedError

    def _line_limit(self) -> int:
        """The longest line, line end included, that the next line may be."""
        raise NotImplementedError

    def _peer_closed(self) -> None:
        """The peer closed: queue the core's ConnectionClosed event (and what it aborts), then `_close()`."""
        raise NotImplementedError

    def _tls_reset(self) -> None:
        """Forget what the TLS upgrade invalidates (RFC 3207 section 4.2: all knowledge from the client)."""

    def _next_line(self) -> bytes | LineTooLong | None:
        """The next command line without its line end, LINE_TOO_LONG for a line over `_line_limit()` (its
        octets are discarded up to its LF, also when that comes later), or None when no line is complete."""
        buf = self._buffer
        if self._discarding_line:
            end = buf.find(b"\n")
            if end < 0:
                buf.clear()
                return None
            del buf[: end + 1]
            self._discarding_line = False
        limit = self._line_limit()
        end = buf.find(b"\n", 0, limit)
        if end < 0:
            if len(buf) < limit:
                return None
            end = buf.find(b"\n", limit)
            if end < 0:
                buf.clear()
                self._discarding_line = True
            else:
                del buf[: end + 1]
            return LINE_TOO_LONG
        line = bytes(buf[:end])
        del buf[: end + 1]
        if line.endswith(b"\r"):
            return line[:-1]
        return line

    def _decide(self, event: EventT) -> None:
        """Queue `event` as the pending decision: nothing more is parsed until the glue answers it."""
        self._pending = event
        self._events.append(event)

    def _begin_tls(self, event: EventT) -> None:
        """The upgrade command was accepted (its reply is queued): drop the plaintext received after it, and
        all that comes before `tls_started()` (CVE-2011-0411), and make `event` the pending decision."""
        self._buffer.clear()
        self._tls_pending = True
        self._decide(event)

    def _count_error(self) -> bool:
        """One more protocol error by the peer; True when that reaches `max_errors` (the core then closes)."""
        self._errors += 1
        return self._errors >= self._max_errors

    def _close(self) -> None:
        """The session is over: nothing more is parsed, no decision is pending."""
        self._closed = True
        self._pending = None
        self._tls_pending = False
        self._buffer.clear()
