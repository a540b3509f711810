"""POP2 server protocol core (RFC 937), sans-IO: bytes in, events and bytes out.

What it implements
- RFC 937 (Post Office Protocol, version 2): the commands HELO, FOLD, READ, RETR, ACKS, ACKD, NACK and QUIT,
  the four reply kinds ("+" success, "-" failure, "#n" message count, "=n" message length) and the server
  states of the RFC's state diagram:

      greeting "+"   ->  AUTH
      AUTH   HELO ok  "#n"  -> MBOX        HELO failed "-" -> DONE (the connection is closed)
      MBOX   FOLD     "#n"  -> MBOX        READ [n] "=n"  -> ITEM
      ITEM   FOLD     "#n"  -> MBOX        READ [n] "=n"  -> ITEM         RETR <n octets> -> NEXT
      NEXT   ACKS / ACKD / NACK   "=n"  -> ITEM
      any    QUIT     "+"   -> DONE

- Not here: sockets, asyncio, timeouts, passwords (the glue asks `postoffice.auth`), the store, locks. POP2
  has no TLS at all (docs/decisions/0010-pop2.md), so there is no upgrade path in this core.

The event model (the same shape as `postoffice.smtp.protocol`)
    proto = Pop2ServerProtocol(settings)
    proto.greeting()
    loop:
        send(proto.data_to_send())
        proto.receive_data(read())           # b"" when the peer closed
        while (event := proto.next_event()) is not None:
            handle(event)                    # answers the decision events below
        send(proto.data_to_send())
        if proto.closed: close

  The buffer, line reading and decisions are the shared skeleton's (`postoffice.net.lineproto`,
  docs/decisions/0034); the loop above is `postoffice.net.driver`'s.
  `receive_data` only buffers; lines are parsed lazily in `next_event`, one at a time. `Login`,
  `SelectFolder`, `Retrieve` and `Delete` are *pending* decisions: until the glue answers, `next_event`
  returns None and nothing further is parsed, so replies to pipelined commands stay in command order.

Decisions (the glue contract)
- `Login(username, password)`   accept_login(sizes) -> "#n" and state MBOX with INBOX selected;
                                reject(text) -> "- text" and the session is closed (RFC 937: a failed HELO
                                ends the session; the glue also uses it for "maildrop in use").
- `SelectFolder(name)`          accept_folder(sizes) -> "#n", state MBOX; an unknown folder is accepted with
                                no messages ("#0", as RFC 937 suggests); reject(text) -> "- text", nothing
                                changes (a store failure).
- `Retrieve(number, size)`      the glue flushes data_to_send(), then writes exactly `size` octets of the
                                message itself (streamed from the store; POP2 has no terminator and no
                                dot-stuffing), then calls retrieved() -> state NEXT. If it cannot send
                                exactly `size` octets it calls abort(): the framing is lost, the session
                                closes with no further reply.
- `Delete(number)`              (ACKD) the glue removes the message durably, *then* calls deleted() -> "=n"
                                of the next message, state ITEM; reject(text) -> "- text", still NEXT, the
                                message is kept.
- `Kept(number)` (ACKS) is informational: the core has queued "=n" of the next message; the glue may record
  the acknowledgement (it sets \\Seen) before it flushes the reply.
- `close(text)` ends the session from the glue's side (autologout, shutdown): "- text", then closed.

`sizes` are the octet counts of the folder's messages in the session's snapshot; message n is sizes[n-1].

Replies the core sends itself: the greeting, "=n" for READ, ACKS and NACK, "+" for QUIT and "-" for every
error: unknown command, a command not allowed in the current state, syntax, line too long (more than
`max_line` octets with the CRLF), control characters, invalid UTF-8; after `max_errors` such errors the core
says so and closes.

Invariants every change must keep
- Message numbers are 1-based positions in the snapshot taken at HELO / FOLD; they do not move when a message
  is deleted (a deleted message reads as "=0"). The "current message" starts at 1 after HELO and FOLD; READ
  with a number sets it; ACKS and ACKD advance it to the next message that is not deleted; NACK keeps it.
- "=n" is always the exact number of octets the glue sends for RETR of that message, and 0 when there is no
  such message (past the end, or deleted). RETR of a message with "=0" is refused with "-".
- The output does not depend on how the input was split across receive_data calls.
- Memory is bounded: at most `max_line` octets are kept while looking for the end of a command line (a longer
  line is discarded up to its LF). Nothing the peer sends raises; only glue misuse raises `Pop2UsageError`.
- Every reply line starts with "+", "-", "#" or "=" and ends with CRLF; the password is never echoed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from postoffice.net.lineproto import LINE_TOO_LONG, LineProtocol, LineUsageError, split_command

__all__ = [
    "ConnectionClosed",
    "Delete",
    "Event",
    "Kept",
    "Login",
    "Pop2ServerProtocol",
    "Pop2Settings",
    "Pop2UsageError",
    "Quit",
    "Retrieve",
    "SelectFolder",
    "State",
]

_MIN_LINE = 512


@dataclass(frozen=True)
class Pop2Settings:
    hostname: str
    max_line: int = 512  # octets including CRLF; RFC 937 names no limit, RFC 1939 and RFC 5321 use 512
    max_errors: int = 20  # protocol errors before the server closes the connection

    def __post_init__(self) -> None:
        if not self.hostname or not all(0x21 <= ord(c) <= 0x7E for c in self.hostname):
            raise ValueError("hostname must be non-empty printable ASCII without spaces")
        if self.max_line < _MIN_LINE:
            raise ValueError(f"max_line must be at least {_MIN_LINE}")
        if self.max_errors < 1:
            raise ValueError("max_errors must be positive")


class State(Enum):
    """Server states of RFC 937 (the state before the greeting, waiting for a connection, is the glue's)."""

    AUTH = "AUTH"  # greeting sent, waiting for HELO
    MBOX = "MBOX"  # a folder is selected (after HELO / FOLD), no message announced yet
    ITEM = "ITEM"  # a message was announced with "=n" (READ, ACKS, ACKD, NACK)
    NEXT = "NEXT"  # the message was sent (RETR): ACKS, ACKD or NACK must follow
    DONE = "DONE"  # closed


# ---------------------------------------------------------------------------------------------------- events


class Event:
    """Base class of everything next_event() returns."""

    __slots__ = ()


@dataclass(frozen=True)
class Login(Event):
    """HELO user password. Needs accept_login(sizes) or reject(text) (which closes the session)."""

    username: str
    password: str

    def __repr__(self) -> str:  # never log the password by accident
        return f"Login(username={self.username!r}, password=<hidden>)"


@dataclass(frozen=True)
class SelectFolder(Event):
    """FOLD name. Needs accept_folder(sizes) (an empty list for an unknown folder) or reject(text)."""

    name: str


@dataclass(frozen=True)
class Retrieve(Event):
    """RETR of message `number` (1-based): send exactly `size` octets, then retrieved() (or abort())."""

    number: int
    size: int


@dataclass(frozen=True)
class Delete(Event):
    """ACKD of message `number`: delete it durably, then deleted() (or reject(text) to keep it)."""

    number: int


@dataclass(frozen=True)
class Kept(Event):
    """ACKS of message `number` (the "=n" of the next one is already queued): the client has it and the
    server keeps it. Informational; the glue marks it \\Seen before it sends the reply."""

    number: int


@dataclass(frozen=True)
class Quit(Event):
    """QUIT: "+" is queued; close after flushing data_to_send()."""


@dataclass(frozen=True)
class ConnectionClosed(Event):
    """The peer closed the connection (receive_data(b""))."""


class Pop2UsageError(LineUsageError):
    """The glue answered a decision that is not pending."""


# --------------------------------------------------------------------------------------------- internals


class _ErrorReply(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


_NUMBER = re.compile(r"[0-9]{1,9}")
_D = TypeVar("_D", Login, SelectFolder, Retrieve, Delete)


class Pop2ServerProtocol(LineProtocol[Event]):
    """One POP2 server session. See the module docstring for the states and the glue contract; the input
    buffer, line reading and decisions are `postoffice.net.lineproto`'s."""

    _usage_error = Pop2UsageError

    def __init__(self, settings: Pop2Settings) -> None:
        super().__init__(max_errors=settings.max_errors)
        self._settings = settings
        self._state = State.AUTH
        self._folder = ""
        self._sizes: list[int] = []
        self._deleted: set[int] = set()
        self._current = 1
        self._handlers: dict[str, Callable[[str], None]] = {
            "HELO": self._cmd_helo,
            "FOLD": self._cmd_fold,
            "READ": self._cmd_read,
            "RETR": self._cmd_retr,
            "ACKS": self._cmd_acks,
            "ACKD": self._cmd_ackd,
            "NACK": self._cmd_nack,
            "QUIT": self._cmd_quit,
        }

    # ------------------------------------------------------------------------------------------ public API

    @property
    def settings(self) -> Pop2Settings:
        return self._settings

    @property
    def state(self) -> State:
        return self._state

    @property
    def folder(self) -> str:
        """The selected folder ("" before HELO)."""
        return self._folder

    @property
    def current(self) -> int:
        """The current message number (1-based; may be past the end)."""
        return self._current

    @property
    def message_count(self) -> int:
        """Messages in the folder snapshot (deleted ones included: numbers never move)."""
        return len(self._sizes)

    @property
    def deleted_numbers(self) -> frozenset[int]:
        return frozenset(self._deleted)

    def greeting(self) -> None:
        """Queue the greeting; the session is then in the AUTH state."""
        self._reply("+", f"POP2 {self._settings.hostname} server ready")

    def accept_login(self, sizes: Sequence[int], folder: str = "INBOX") -> None:
        """HELO succeeded: `folder` (INBOX) is selected with these message sizes; "#n" is queued."""
        if self._take(Login) is not None:
            self._select(folder, sizes)

    def accept_folder(self, sizes: Sequence[int]) -> None:
        """FOLD succeeded (`sizes` empty for a folder that does not exist): "#n" is queued."""
        event = self._take(SelectFolder)
        if event is not None:
            self._select(event.name, sizes)

    def retrieved(self) -> None:
        """The glue sent the message octets announced for the pending Retrieve: state NEXT."""
        if self._take(Retrieve) is not None:
            self._state = State.NEXT

    def deleted(self) -> None:
        """The message of the pending Delete is durably gone: "=n" of the next message, state ITEM."""
        event = self._take(Delete)
        if event is None:
            return
        self._deleted.add(event.number)
        self._current = self._next_after(event.number)
        self._state = State.ITEM
        self._announce()

    def reject(self, text: str) -> None:
        """Refuse the pending Login (then the session closes), SelectFolder or Delete with "- text"."""
        if self._closed:
            return
        event = self._pending
        if event is None or isinstance(event, Retrieve):
            raise Pop2UsageError("reject() needs a pending Login, SelectFolder or Delete (use abort())")
        _check_text(text)
        self._pending = None
        self._reply("-", text)
        if isinstance(event, Login):
            self._close()

    def abort(self) -> None:
        """End the session without a reply (the message octets of a Retrieve could not all be sent)."""
        self._close()

    def close(self, text: str = "server shutting down") -> None:
        """End the session from the glue's side (autologout, shutdown): "- text", then closed."""
        if self._closed:
            return
        _check_text(text)
        self._reply("-", text)
        self._close()

    # --------------------------------------------------------------------------------------- input steps

    def _step(self) -> bool:
        """Parse one line if the buffer holds one; False when nothing can be done without more input."""
        line = self._next_line()
        if line is None:
            return False
        if line is LINE_TOO_LONG:
            self._error("line too long")
            return True
        try:
            self._dispatch(line)
        except _ErrorReply as error:
            self._error(error.text)
        return True

    def _line_limit(self) -> int:
        return self._settings.max_line

    def _peer_closed(self) -> None:
        self._events.append(ConnectionClosed())
        self._close()

    # ------------------------------------------------------------------------------------------- commands

    def _dispatch(self, line: bytes) -> None:
        command = split_command(line)
        if command is None:
            raise _ErrorReply("invalid character in command line")
        verb, arg_bytes = command
        handler = self._handlers.get(verb)
        if handler is None:
            raise _ErrorReply("unknown command")
        try:
            arg = arg_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise _ErrorReply("invalid UTF-8 in command arguments") from None
        handler(arg)

    def _cmd_helo(self, arg: str) -> None:
        if self._state is not State.AUTH:
            raise _ErrorReply("already logged in")
        # RFC 937: HELO user password, single spaces between the fields. The user is one token; the password
        # is everything after the single space that ends it (so it may contain spaces, docs/decisions/0010).
        user, sep, password = arg.lstrip(" ").partition(" ")
        if not user or not sep or not password:
            raise _ErrorReply("syntax: HELO user password")
        self._decide(Login(user, password))

    def _cmd_fold(self, arg: str) -> None:
        self._require(State.MBOX, State.ITEM, what="FOLD")
        name = arg.strip(" ")
        if not name:
            raise _ErrorReply("syntax: FOLD mailbox")
        self._decide(SelectFolder(name))

    def _cmd_read(self, arg: str) -> None:
        self._require(State.MBOX, State.ITEM, what="READ")
        text = arg.strip(" ")
        if text:
            if not _NUMBER.fullmatch(text):
                raise _ErrorReply("syntax: READ [message number]")
            self._current = int(text)
        self._state = State.ITEM
        self._announce()

    def _cmd_retr(self, arg: str) -> None:
        self._no_argument(arg, "RETR")
        if self._state is State.NEXT:
            raise _ErrorReply("acknowledge the message first: ACKS, ACKD or NACK")
        if self._state is not State.ITEM:
            raise _ErrorReply("no message selected: READ first")
        size = self._size(self._current)
        if size == 0:
            raise _ErrorReply(f"no message {self._current}")
        self._decide(Retrieve(self._current, size))

    def _cmd_acks(self, arg: str) -> None:
        self._acknowledgement(arg, "ACKS")
        self._events.append(Kept(self._current))
        self._current = self._next_after(self._current)
        self._state = State.ITEM
        self._announce()

    def _cmd_ackd(self, arg: str) -> None:
        self._acknowledgement(arg, "ACKD")
        self._decide(Delete(self._current))

    def _cmd_nack(self, arg: str) -> None:
        self._acknowledgement(arg, "NACK")
        self._state = State.ITEM
        self._announce()

    def _cmd_quit(self, arg: str) -> None:
        # Arguments are ignored: the client is leaving either way. In NEXT the unacknowledged message is kept.
        self._reply("+", f"POP2 {self._settings.hostname} signing off")
        self._events.append(Quit())
        self._close()

    # ----------------------------------------------------------------------------------------- helpers

    def _require(self, *states: State, what: str) -> None:
        if self._state in states:
            return
        if self._state is State.AUTH:
            raise _ErrorReply("log in first: HELO user password")
        if self._state is State.NEXT:
            raise _ErrorReply("acknowledge the message first: ACKS, ACKD or NACK")
        raise _ErrorReply(f"{what} not allowed now")  # pragma: no cover - every state is handled above

    def _acknowledgement(self, arg: str, verb: str) -> None:
        self._no_argument(arg, verb)
        if self._state is State.AUTH:
            raise _ErrorReply("log in first: HELO user password")
        if self._state is not State.NEXT:
            raise _ErrorReply(f"{verb} only after RETR")

    @staticmethod
    def _no_argument(arg: str, verb: str) -> None:
        if arg.strip(" "):
            raise _ErrorReply(f"syntax: {verb}")

    def _size(self, number: int) -> int:
        if number < 1 or number > len(self._sizes) or number in self._deleted:
            return 0
        return self._sizes[number - 1]

    def _next_after(self, number: int) -> int:
        """The first message after `number` that is not deleted, or one past the end."""
        following = number + 1
        while following <= len(self._sizes) and following in self._deleted:
            following += 1
        return following

    def _announce(self) -> None:
        number = self._current
        size = self._size(number)
        if size:
            self._reply("=", f"octets in message {number}", value=size)
        elif number > len(self._sizes):
            self._reply("=", "no more messages", value=0)
        else:
            self._reply("=", f"no message {number}", value=0)

    def _select(self, folder: str, sizes: Sequence[int]) -> None:
        checked = [int(size) for size in sizes]
        if any(size < 1 for size in checked):
            raise ValueError("message sizes must be positive (=0 means: no message)")
        _check_text(folder)
        self._folder = folder
        self._sizes = checked
        self._deleted = set()
        self._current = 1
        self._state = State.MBOX
        count = len(checked)
        self._reply("#", f"message{'' if count == 1 else 's'} in {folder}", value=count)

    def _take(self, kind: type[_D]) -> _D | None:
        """The pending decision of this kind; None when the session is already closed."""
        if self._closed:
            return None
        event = self._pending
        if not isinstance(event, kind):
            raise Pop2UsageError(f"no {kind.__name__} decision is pending")
        self._pending = None
        return event

    def _reply(self, indicator: str, text: str, *, value: int | None = None) -> None:
        head = indicator if value is None else f"{indicator}{value}"
        self._out += f"{head} {text}\r\n".encode()

    def _error(self, text: str) -> None:
        self._reply("-", text)
        if self._count_error():
            self._reply("-", "too many errors, closing connection")
            self._close()

    def _close(self) -> None:
        super()._close()
        self._state = State.DONE


def _check_text(text: str) -> None:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise ValueError("reply text must not contain control characters")
