"""POP3 server protocol core, sans-IO: bytes in, events and bytes out.

What it implements
- RFC 1939 (POP3): the AUTHORIZATION and TRANSACTION states and their commands USER, PASS, QUIT, STAT, LIST,
  RETR, DELE, NOOP, RSET, TOP and UIDL; message numbers fixed for the session; DELE only marks, RSET unmarks,
  and only QUIT in the TRANSACTION state enters UPDATE.
- RFC 2449: CAPA, extended response codes ([IN-USE], [SYS/TEMP], and RFC 3206 [AUTH], [SYS/PERM]),
  PIPELINING, the 255-octet command line limit (section 4).
- RFC 2595 section 4: STLS (the protocol part; TLS itself is the glue's).
- RFC 5034: AUTH with SASL (the mechanisms come from `postoffice.auth.sasl`), with initial response, "*" to
  cancel, "+ " continuation lines; AUTH without an argument lists the mechanisms (what Outlook-era clients
  send; not in RFC 5034, harmless).
- Not here: sockets, asyncio, TLS, timeouts (the autologout timer is the glue's), password checks (the glue
  asks `postoffice.auth.Authenticator`), the maildrop lock and the store. Not offered: APOP (needs a
  plaintext-equivalent secret on the server), UTF8 (RFC 6856) and LANG, LOGIN-DELAY.
  See docs/decisions/0009-pop3.md.

The event model (as `postoffice.smtp.protocol`)
    proto = Pop3ServerProtocol(settings, tls_active=False)
    proto.greeting()
    loop:
        send(proto.data_to_send())
        proto.receive_data(read())           # b"" when the peer closed
        while (event := proto.next_event()) is not None:
            handle(event)                    # answers decisions
        send(proto.data_to_send())
        if proto.closed: close

  The buffer, line reading, decisions and the STLS discard are the shared skeleton's
  (`postoffice.net.lineproto`, docs/decisions/0034); the loop above is `postoffice.net.driver`'s.
  `receive_data` only buffers; parsing happens lazily in `next_event`. Events that need a decision (`Login`,
  `Retrieve`, `Update`, `StartTls`) are *pending*: until the glue answers, `next_event` returns None and no
  further input is parsed, so replies to pipelined commands (RFC 2449 PIPELINING) are queued in command order.

Decisions (the glue contract)
- `Login`     login_accepted(messages) -> "+OK" and the TRANSACTION state with that maildrop snapshot (the
              glue has verified the credentials with the Authenticator and holds the maildrop lock);
              login_rejected(code, text) -> "-ERR [code] text", the session stays in AUTHORIZATION.
- `Retrieve`  (RETR, and TOP with `top_lines` set) either retrieve_failed(code, text) -> "-ERR ...", or
              retrieve_begin(body_start) (the "+OK" line), then message_data(chunk) for the stored octets in
              order, while it returns True (TOP stops wanting data after its last line), then retrieve_end()
              (the terminating "." line). The core dot-stuffs chunk by chunk: memory does not depend on the
              message size. A failure after retrieve_begin cannot be reported in-band: the glue calls abort()
              and drops the connection (the client never sees the terminator, so it knows).
- `Update`    (QUIT in TRANSACTION) the glue removes `uids` durably, then update_done() -> "+OK"; or
              update_failed(text) -> "-ERR [SYS/TEMP] text" (not all removed). Either way the session closes.
- `StartTls`  the core has queued "+OK Begin TLS negotiation" and discarded every byte received after the
              STLS line; it discards everything fed to it until tls_started(). On handshake failure the glue
              closes.
- close(text, code) ends the session from the glue's side (shutdown: "-ERR [SYS/TEMP] ..."; autologout:
  text None, no reply, RFC 1939 section 3). A session that ends in any way but QUIT never enters UPDATE.

Informational events: `Quit` (QUIT in AUTHORIZATION: "+OK" queued, closed), `ConnectionClosed` (peer closed).

Invariants every change must keep
- Every reply is "+OK", "-ERR" or a SASL continuation "+ " line, each line ends with CRLF; multi-line replies
  end with "." CRLF and are dot-stuffed (RFC 1939 section 3).
- The output does not depend on how the input was split across receive_data calls, nor the stuffed message
  on how the stored octets were split into chunks.
- Memory is bounded: at most `max_auth_line` octets of input are kept while looking for a line (the glue must
  not feed data while a decision is pending); message data is stuffed and queued chunk by chunk.
- Nothing the peer sends raises: malformed input is an "-ERR" reply. Only glue misuse raises Pop3UsageError.
- A line starts after any LF for dot-stuffing, so not even a stray bare LF in stored mail can fake the
  terminator for a client that splits lines on LF.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from postoffice.auth import scram
from postoffice.auth.sasl import (
    CANCEL,
    Challenge,
    Credentials,
    NeedScramSecret,
    SaslMechanism,
    SaslStep,
    ScramOutcome,
    create_mechanism,
    decode_response,
    encode_challenge,
    mechanism_names,
)
from postoffice.auth.scram import ScramMechanism, ScramPlusMechanism, ScramSecret
from postoffice.net.lineproto import LINE_TOO_LONG, LineProtocol, LineUsageError, TlsUpgrade, split_command
from postoffice.plural import counted

__all__ = [
    "AUTH_LINE_LIMIT",
    "COMMAND_LINE_LIMIT",
    "PLAINTEXT_DISALLOWED",
    "ConnectionClosed",
    "DotStuffer",
    "Event",
    "Login",
    "MaildropMessage",
    "Pop3ServerProtocol",
    "Pop3Settings",
    "Pop3UsageError",
    "Quit",
    "Retrieve",
    "ScramSecretNeeded",
    "StartTls",
    "TopLimiter",
    "Update",
]

#: RFC 2449 section 4: a command line, CRLF included, is at most 255 octets.
COMMAND_LINE_LIMIT = 255
#: AUTH lines (with an initial response) and SASL continuation lines may be longer: a PLAIN message with a
#: 1024-octet password and address is about 2.8 KiB in base64 (RFC 5034 section 4 lets the server choose).
AUTH_LINE_LIMIT = 8192

PLAINTEXT_DISALLOWED = (
    "Plaintext authentication disallowed on non-secure (TLS) connections; use STLS or port 995"
)

_CRLF = b"\r\n"
_NUMBER = re.compile(r"[0-9]{1,10}")
_RESP_CODE = re.compile(r"[A-Z0-9-]+(?:/[A-Z0-9-]+)*")  # RFC 2449 section 8: resp-level *("/" resp-level)


@dataclass(frozen=True)
class Pop3Settings:
    hostname: str
    max_errors: int = 20  # protocol errors before the server closes the connection
    starttls_available: bool = True  # offer STLS (only while not already TLS)
    plaintext_auth_allowed: bool = False  # USER/PASS and AUTH without TLS
    sasl_mechanisms: tuple[str, ...] = ()  # default: postoffice.auth.sasl.mechanism_names()
    max_command_line: int = COMMAND_LINE_LIMIT
    max_auth_line: int = AUTH_LINE_LIMIT

    def __post_init__(self) -> None:
        if not self.hostname or not all(0x21 <= ord(c) <= 0x7E for c in self.hostname):
            raise ValueError("hostname must be non-empty printable ASCII without spaces")
        if self.max_errors < 1:
            raise ValueError("max_errors must be positive")
        if self.max_command_line < COMMAND_LINE_LIMIT:
            raise ValueError(f"max_command_line must be at least {COMMAND_LINE_LIMIT} (RFC 2449 section 4)")
        if self.max_auth_line < self.max_command_line:
            raise ValueError("max_auth_line must be at least max_command_line")
        if not self.sasl_mechanisms:
            object.__setattr__(self, "sasl_mechanisms", mechanism_names())


@dataclass(frozen=True)
class MaildropMessage:
    """One message of the maildrop snapshot taken at login."""

    uid: int
    size: int  # octets as stored (CRLF lines): the size RETR sends before dot-stuffing
    unique_id: str  # UIDL (RFC 1939 section 7): 1..70 characters 0x21..0x7E, never reused
    content_id: int


# ---------------------------------------------------------------------------------------------------- events


class Event:
    """Base class of everything next_event() returns."""

    __slots__ = ()


@dataclass(frozen=True)
class Login(Event):
    """USER/PASS (`mechanism` "USER", `credentials` None) or a completed SASL exchange (a SCRAM one: `scram`,
    for `Authenticator.scram_finish`). Needs login_accepted() or login_rejected()."""

    username: str
    password: str
    mechanism: str
    credentials: Credentials | None = None
    scram: ScramOutcome | None = None

    def __repr__(self) -> str:  # never put a password into a log or a test failure message
        return f"Login(username={self.username!r}, mechanism={self.mechanism!r})"


@dataclass(frozen=True)
class ScramSecretNeeded(Event):
    """A SCRAM exchange needs the secret of `username` (`Authenticator.scram_secret`): scram_secret()."""

    username: str


@dataclass(frozen=True)
class Retrieve(Event):
    """RETR n (`top_lines` None) or TOP n m.

    Needs retrieve_failed(), or retrieve_begin(), message_data() for the chunks, retrieve_end()."""

    number: int
    message: MaildropMessage
    top_lines: int | None = None


@dataclass(frozen=True)
class Update(Event):
    """QUIT in the TRANSACTION state: remove `uids` durably, then update_done() (or update_failed())."""

    uids: tuple[int, ...]


@dataclass(frozen=True)
class StartTls(Event, TlsUpgrade):
    """STLS accepted: flush data_to_send(), do the TLS handshake, then call tls_started()."""


@dataclass(frozen=True)
class Quit(Event):
    """QUIT in the AUTHORIZATION state: "+OK" is queued; close after flushing."""


@dataclass(frozen=True)
class ConnectionClosed(Event):
    """The peer closed the connection (receive_data(b"")). Nothing is removed."""


class Pop3UsageError(LineUsageError):
    """The glue called a decision method when no such decision was pending."""


# ------------------------------------------------------------------------------------ message transformation


class DotStuffer:
    """Byte-stuffs a message for a multi-line reply (RFC 1939 section 3), chunk by chunk.

    A "." that starts a line gets a second "."; a line starts after every LF (see the module docstring). The
    only state carried across chunks is whether the last octet was an LF, so the output is the same however
    the message is chunked.
    """

    __slots__ = ("_line_start",)

    def __init__(self) -> None:
        self._line_start = True

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        out = chunk.replace(b"\n.", b"\n..")
        if self._line_start and chunk[0] == 0x2E:
            out = b"." + out
        self._line_start = chunk[-1] == 0x0A
        return out

    def finish(self) -> bytes:
        """The terminator, after a CRLF when the message did not end with a line end."""
        return b".\r\n" if self._line_start else b"\r\n.\r\n"


class TopLimiter:
    """TOP n m (RFC 1939 section 7): the header (up to `body_start`, the blank line included) and the first
    `lines` lines of the body, cut from the stored octets chunk by chunk."""

    __slots__ = ("_header_left", "_lines_left")

    def __init__(self, body_start: int, lines: int) -> None:
        self._header_left = max(0, body_start)
        self._lines_left = max(0, lines)

    @property
    def done(self) -> bool:
        return self._header_left == 0 and self._lines_left == 0

    def take(self, chunk: bytes) -> bytes:
        """The part of `chunk` that belongs to the TOP reply."""
        head = b""
        if self._header_left:
            head = chunk[: self._header_left]
            self._header_left -= len(head)
            chunk = chunk[len(head) :]
            if self._header_left:
                return head
        if not self._lines_left or not chunk:
            return head
        pos = 0
        while self._lines_left:
            end = chunk.find(b"\n", pos)
            if end < 0:
                return head + chunk
            pos = end + 1
            self._lines_left -= 1
        return head + chunk[:pos]


# --------------------------------------------------------------------------------------------- internals


class _State(Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    CLOSED = "closed"


class _ErrorReply(Exception):
    """Raised while handling a command to answer it with "-ERR"."""

    def __init__(self, text: str, code: str | None = None, *, counts: bool = True) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.counts = counts


@dataclass
class _Retrieval:
    event: Retrieve
    stuffer: DotStuffer
    limiter: TopLimiter | None


_D = TypeVar("_D", Login, Retrieve, Update, ScramSecretNeeded)

_AUTHORIZATION_COMMANDS = frozenset({"USER", "PASS", "AUTH", "APOP", "CAPA", "STLS", "QUIT"})
_TRANSACTION_COMMANDS = frozenset(
    {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "CAPA", "QUIT"}
)


class Pop3ServerProtocol(LineProtocol[Event]):
    """One POP3 server session. See the module docstring for the event model and the glue contract; the
    input buffer, line reading, decisions and the STLS discard are `postoffice.net.lineproto`'s."""

    _usage_error = Pop3UsageError

    def __init__(
        self,
        settings: Pop3Settings,
        *,
        tls_active: bool = False,
        channel_binding: Callable[[], bytes | None] = lambda: None,
    ) -> None:
        super().__init__(max_errors=settings.max_errors, tls_active=tls_active)
        self._settings = settings
        #: the connection's tls-exporter octets now (SCRAM-SHA-256-PLUS, decision 0068), or None
        self._channel_binding = channel_binding
        self._state = _State.AUTHORIZATION
        self._user: str | None = None  # name from USER, waiting for PASS
        self._sasl: SaslMechanism | None = None  # an AUTH exchange waiting for the client's next line
        self._scram: SaslMechanism | None = None  # a SCRAM exchange waiting for its secret (the glue's)
        self._messages: list[MaildropMessage] = []
        self._deleted: set[int] = set()  # 0-based indexes marked by DELE
        self._retrieval: _Retrieval | None = None
        self._retrieved = 0
        self._handlers: dict[str, Callable[[str], None]] = {
            "USER": self._cmd_user,
            "PASS": self._cmd_pass,
            "AUTH": self._cmd_auth,
            "APOP": self._cmd_apop,
            "CAPA": self._cmd_capa,
            "STLS": self._cmd_stls,
            "QUIT": self._cmd_quit,
            "STAT": self._cmd_stat,
            "LIST": self._cmd_list,
            "RETR": self._cmd_retr,
            "DELE": self._cmd_dele,
            "NOOP": self._cmd_noop,
            "RSET": self._cmd_rset,
            "TOP": self._cmd_top,
            "UIDL": self._cmd_uidl,
        }

    # ------------------------------------------------------------------------------------------ public API

    @property
    def settings(self) -> Pop3Settings:
        return self._settings

    @property
    def in_transaction(self) -> bool:
        return self._state is _State.TRANSACTION

    @property
    def retrieved_count(self) -> int:
        """Completed RETR commands (TOP does not count)."""
        return self._retrieved

    @property
    def marked_count(self) -> int:
        """Messages currently marked as deleted."""
        return len(self._deleted)

    def greeting(self) -> None:
        """The greeting (RFC 1939 section 4). No APOP timestamp: APOP is not offered."""
        self._ok("Postoffice POP3 server ready")

    # -- decisions: Login

    def login_accepted(self, messages: Sequence[MaildropMessage]) -> None:
        """The credentials are good and the glue holds the maildrop lock: enter TRANSACTION."""
        if self._closed:
            return
        self._take_pending(Login)
        self._messages = list(messages)
        self._deleted = set()
        self._state = _State.TRANSACTION
        count, octets = self._totals()
        self._ok(f"Logged in, maildrop has {counted(count, 'message')} ({counted(octets, 'octet')})")

    def login_rejected(self, code: str | None, text: str) -> None:
        """ "-ERR [code] text"; the session stays in AUTHORIZATION (RFC 1939 section 7, RFC 5034 section 4).

        Counts towards max_errors like a protocol error, so one connection cannot try passwords for ever.
        """
        if self._closed:
            return
        _check_reply(code, text)
        self._take_pending(Login)
        self._send_error(_ErrorReply(text, code))

    # -- decisions: Retrieve

    def retrieve_failed(self, code: str | None, text: str) -> None:
        """The message cannot be read (before anything was sent for it): "-ERR [code] text"."""
        if self._closed:
            return
        _check_reply(code, text)
        if self._retrieval is not None:
            raise Pop3UsageError("retrieve_failed() after retrieve_begin(); use abort()")
        self._take_pending(Retrieve)
        self._send_error(_ErrorReply(text, code, counts=False))

    def retrieve_begin(self, body_start: int | None = None) -> None:
        """Queue the "+OK" line; `body_start` (the offset just after the header's blank line) is needed for
        TOP."""
        if self._closed:
            return
        event = self._pending
        if not isinstance(event, Retrieve) or self._retrieval is not None:
            raise Pop3UsageError("retrieve_begin() without a pending Retrieve event")
        limiter: TopLimiter | None = None
        if event.top_lines is not None:
            if body_start is None:
                raise Pop3UsageError("TOP needs body_start")
            limiter = TopLimiter(body_start, event.top_lines)
            self._ok("Top of message follows")
        else:
            self._ok(counted(event.message.size, "octet"))
        self._retrieval = _Retrieval(event, DotStuffer(), limiter)

    @property
    def retrieve_wants_more(self) -> bool:
        """False once TOP has all the lines it needs (the glue stops reading the message)."""
        retrieval = self._retrieval
        return retrieval is not None and (retrieval.limiter is None or not retrieval.limiter.done)

    def message_data(self, chunk: bytes) -> bool:
        """Queue the next stored octets of the message being retrieved; returns retrieve_wants_more."""
        retrieval = self._retrieval
        if self._closed:
            return False
        if retrieval is None:
            raise Pop3UsageError("message_data() outside retrieve_begin() ... retrieve_end()")
        if retrieval.limiter is not None:
            if retrieval.limiter.done:
                return False
            chunk = retrieval.limiter.take(chunk)
        self._out += retrieval.stuffer.feed(chunk)
        return self.retrieve_wants_more

    def retrieve_end(self) -> None:
        """The message is complete: queue the terminating "." line."""
        retrieval = self._retrieval
        if self._closed:
            return
        if retrieval is None:
            raise Pop3UsageError("retrieve_end() without retrieve_begin()")
        self._out += retrieval.stuffer.finish()
        self._retrieval = None
        self._pending = None
        if retrieval.event.top_lines is None:
            self._retrieved += 1

    def abort(self) -> None:
        """Close without any further reply (a failure in the middle of a multi-line reply)."""
        self._retrieval = None
        self._close()

    # -- decisions: Update

    def update_done(self) -> None:
        """The marked messages are removed durably: "+OK", and the session is over (RFC 1939 section 6)."""
        if self._closed:
            return
        event = self._take_pending(Update)
        count = len(event.uids)
        left = len(self._messages) - count
        what = f"{count} message{'' if count == 1 else 's'} deleted, {left} left"
        self._ok(f"{self._settings.hostname} POP3 server signing off ({what})")
        self._close()

    def update_failed(self, text: str) -> None:
        """Removing failed, for some or all of them: "-ERR [SYS/TEMP] text"; the session is over."""
        if self._closed:
            return
        _check_reply(None, text)
        self._take_pending(Update)
        self._error("SYS/TEMP", text)
        self._close()

    # -- decisions: StartTls (tls_started() is net.lineproto's)

    def _tls_reset(self) -> None:
        # RFC 2595 section 4: the client discards what it knew; we forget a USER given before the upgrade.
        self._user = None

    def close(self, text: str | None = None, code: str | None = None) -> None:
        """End the session from the glue's side: "-ERR [code] text", or no reply when `text` is None
        (autologout, RFC 1939 section 3). Never enters UPDATE."""
        if self._closed:
            return
        if text is not None:
            _check_reply(code, text)
            self._error(code, text)
        self._close()

    # --------------------------------------------------------------------------------------- input steps

    def _step(self) -> bool:
        """Parse one line if the buffer holds one; False when nothing could be done without more input."""
        line = self._next_line()
        if line is None:
            return False
        if line is LINE_TOO_LONG:
            self._sasl = None  # a too-long line ends an exchange in progress
            self._send_error(_ErrorReply("Line too long"))
            return True
        try:
            mechanism = self._sasl
            if mechanism is not None:
                self._sasl_line(mechanism, line)
            else:
                self._dispatch(line)
        except _ErrorReply as error:
            self._send_error(error)
        return True

    def _line_limit(self) -> int:
        if self._sasl is not None or self._buffer[:5].upper() == b"AUTH ":
            return self._settings.max_auth_line
        return self._settings.max_command_line

    def _peer_closed(self) -> None:
        self._events.append(ConnectionClosed())
        self._close()

    # ------------------------------------------------------------------------------------------- commands

    def _dispatch(self, line: bytes) -> None:
        command = split_command(line)
        if command is None:
            raise _ErrorReply("Invalid character in command line")
        verb, arg_bytes = command
        handler = self._handlers.get(verb)
        if handler is None:
            raise _ErrorReply("Unknown command")  # RFC 2449 section 4 (no distinction from bad syntax)
        allowed = _AUTHORIZATION_COMMANDS if self._state is _State.AUTHORIZATION else _TRANSACTION_COMMANDS
        if verb not in allowed:
            state = "before login" if self._state is _State.AUTHORIZATION else "after login"
            raise _ErrorReply(f"{verb} is not valid {state}")
        try:
            arg = arg_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise _ErrorReply("Invalid UTF-8 in command arguments") from None
        handler(arg)

    def _auth_permitted(self) -> bool:
        return self._tls_active or self._settings.plaintext_auth_allowed

    def _require_auth_permitted(self) -> None:
        if not self._auth_permitted():
            # RFC 2595 section 3.1 / RFC 3206 section 4: [AUTH] tells the client it is a credentials matter.
            raise _ErrorReply(PLAINTEXT_DISALLOWED, "AUTH")

    def _cmd_user(self, arg: str) -> None:
        self._require_auth_permitted()
        name = arg.strip(" ")
        if not name:
            raise _ErrorReply("Syntax: USER name")
        self._user = name
        self._ok("Send PASS")  # never say whether the name exists

    def _cmd_pass(self, arg: str) -> None:
        self._require_auth_permitted()
        if self._user is None:
            raise _ErrorReply("Send USER first")
        # RFC 1939 section 7: PASS has one argument, spaces included; it is taken as given.
        if not arg:
            raise _ErrorReply("Syntax: PASS password")
        user, self._user = self._user, None
        self._decide(Login(user, arg, "USER"))

    def _cmd_apop(self, arg: str) -> None:
        raise _ErrorReply("APOP is not supported; use USER/PASS or AUTH over TLS")

    def _cmd_auth(self, arg: str) -> None:
        self._require_auth_permitted()
        self._user = None
        words = [w for w in arg.split(" ") if w]
        if not words:
            mechanisms = [*self._scram_mechanisms(), *self._settings.sasl_mechanisms]
            self._multiline("Supported SASL mechanisms follow", mechanisms)
            return
        if len(words) > 2:
            raise _ErrorReply("Syntax: AUTH mechanism [initial-response]")
        name = words[0].upper()
        mechanism: SaslMechanism | None = scram.create(name, self._channel_binding())
        if mechanism is None and name in self._settings.sasl_mechanisms:
            mechanism = create_mechanism(name)
        if mechanism is None:
            raise _ErrorReply("Unsupported authentication mechanism")
        initial: bytes | None = None
        if len(words) == 2:
            initial = decode_response(words[1])
            if initial is None:
                raise _ErrorReply("Invalid base64 in the initial response")
        self._sasl_result(mechanism, mechanism.start(initial))

    def _sasl_line(self, mechanism: SaslMechanism, line: bytes) -> None:
        self._sasl = None
        try:
            text = line.decode("ascii").strip(" ")
        except UnicodeDecodeError:
            raise _ErrorReply("Invalid base64, authentication aborted") from None
        if text == CANCEL:
            # RFC 5034 section 4: the server rejects a cancelled AUTH with -ERR.
            raise _ErrorReply("Authentication cancelled", counts=False)
        response = decode_response(text)
        if response is None:
            raise _ErrorReply("Invalid base64, authentication aborted")
        self._sasl_result(mechanism, mechanism.step(response))

    def _sasl_result(self, mechanism: SaslMechanism, result: SaslStep) -> None:
        if isinstance(result, Challenge):
            self._sasl = mechanism
            # RFC 5034 section 4: continue-req = "+" SP [base64] CRLF
            self._out += b"+ " + encode_challenge(result.data).encode("ascii") + _CRLF
            return
        if isinstance(result, NeedScramSecret):
            self._scram = mechanism
            self._decide(ScramSecretNeeded(result.authcid))
            return
        if isinstance(result, ScramOutcome):
            name = ScramPlusMechanism.name if getattr(mechanism, "plus", False) else mechanism.name
            self._decide(Login(result.authcid, "", name, scram=result))
            return
        if not isinstance(result, Credentials):
            raise _ErrorReply(f"Authentication failed: {_printable(result.reason)}", "AUTH")
        self._decide(Login(result.authcid, result.password, mechanism.name, result))

    def _scram_mechanisms(self) -> tuple[str, ...]:
        """SCRAM-SHA-256, and -PLUS where the connection can bind (decision 0068)."""
        return scram.offered(self._channel_binding())

    # -- decisions: ScramSecretNeeded

    def scram_secret(self, secret: ScramSecret) -> None:
        """The secret asked for: the exchange goes on with the server-first message."""
        if self._closed:
            return
        self._take_pending(ScramSecretNeeded)
        mechanism, self._scram = self._scram, None
        if not isinstance(mechanism, ScramMechanism):
            raise Pop3UsageError("no SCRAM exchange is waiting for a secret")
        try:
            self._sasl_result(mechanism, mechanism.with_secret(secret))
        except _ErrorReply as reply:
            self._send_error(reply)

    def _cmd_capa(self, arg: str) -> None:
        # RFC 2449 section 5; USER and SASL only where they can be used (RFC 2595 section 4 for STLS).
        lines = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER"]
        if self._state is _State.AUTHORIZATION:
            if self._auth_permitted():
                mechanisms = (*self._scram_mechanisms(), *self._settings.sasl_mechanisms)
                lines += ["USER", "SASL " + " ".join(mechanisms)]
            if self._settings.starttls_available and not self._tls_active:
                lines.append("STLS")
        lines.append("IMPLEMENTATION Postoffice")
        self._multiline("Capability list follows", lines)

    def _cmd_stls(self, arg: str) -> None:
        if arg.strip(" "):
            raise _ErrorReply("Syntax: STLS")
        if self._tls_active:
            raise _ErrorReply("TLS is already active")
        if not self._settings.starttls_available:
            raise _ErrorReply("STLS is not available on this port")
        self._user = None
        self._ok("Begin TLS negotiation")
        # CVE-2011-0411: octets pipelined after STLS arrived in plaintext; they must never run as if over TLS
        # (net.lineproto drops them, and all until tls_started()).
        self._begin_tls(StartTls())

    def _cmd_quit(self, arg: str) -> None:
        if self._state is _State.TRANSACTION:
            uids = tuple(self._messages[i].uid for i in sorted(self._deleted))
            self._decide(Update(uids))  # RFC 1939 section 6: the UPDATE state
            return
        self._ok(f"{self._settings.hostname} POP3 server signing off")
        self._events.append(Quit())
        self._close()

    def _cmd_stat(self, arg: str) -> None:
        self._no_args(arg, "STAT")
        count, octets = self._totals()
        self._ok(f"{count} {octets}")  # RFC 1939 section 5: exactly "+OK nn mm"

    def _cmd_list(self, arg: str) -> None:
        words = self._words(arg, 0, 1, "LIST [message]")
        if words:
            number, message = self._message(words[0])
            self._ok(f"{number} {message.size}")
            return
        count, octets = self._totals()
        lines = [f"{i + 1} {m.size}" for i, m in enumerate(self._messages) if i not in self._deleted]
        self._multiline(f"{counted(count, 'message')} ({counted(octets, 'octet')})", lines)

    def _cmd_uidl(self, arg: str) -> None:
        words = self._words(arg, 0, 1, "UIDL [message]")
        if words:
            number, message = self._message(words[0])
            self._ok(f"{number} {message.unique_id}")
            return
        lines = [f"{i + 1} {m.unique_id}" for i, m in enumerate(self._messages) if i not in self._deleted]
        self._multiline("Unique-ID listing follows", lines)

    def _cmd_retr(self, arg: str) -> None:
        (word,) = self._words(arg, 1, 1, "RETR message")
        number, message = self._message(word)
        self._decide(Retrieve(number, message))

    def _cmd_top(self, arg: str) -> None:
        word, lines = self._words(arg, 2, 2, "TOP message lines")
        number, message = self._message(word)
        if not _NUMBER.fullmatch(lines):
            raise _ErrorReply("Syntax: TOP message lines (lines is a non-negative number)")
        self._decide(Retrieve(number, message, int(lines)))

    def _cmd_dele(self, arg: str) -> None:
        (word,) = self._words(arg, 1, 1, "DELE message")
        number, _ = self._message(word)
        self._deleted.add(number - 1)
        self._ok(f"Message {number} deleted")

    def _cmd_noop(self, arg: str) -> None:
        self._no_args(arg, "NOOP")
        self._ok("")

    def _cmd_rset(self, arg: str) -> None:
        self._no_args(arg, "RSET")
        self._deleted.clear()
        count, octets = self._totals()
        self._ok(f"Maildrop has {counted(count, 'message')} ({counted(octets, 'octet')})")

    # ----------------------------------------------------------------------------------- command helpers

    @staticmethod
    def _words(arg: str, least: int, most: int, syntax: str) -> list[str]:
        words = [w for w in arg.split(" ") if w]
        if not least <= len(words) <= most:
            raise _ErrorReply(f"Syntax: {syntax}")
        return words

    def _no_args(self, arg: str, verb: str) -> None:
        if arg.strip(" "):
            raise _ErrorReply(f"Syntax: {verb} (no arguments)")

    def _message(self, word: str) -> tuple[int, MaildropMessage]:
        """A message number (RFC 1939 section 5: 1-based, fixed for the session), not marked deleted."""
        if not _NUMBER.fullmatch(word):
            raise _ErrorReply("Invalid message number")
        number = int(word)
        if not 1 <= number <= len(self._messages):
            raise _ErrorReply(f"No such message, only {counted(len(self._messages), 'message')} in maildrop")
        if number - 1 in self._deleted:
            raise _ErrorReply(f"Message {number} already deleted")
        return number, self._messages[number - 1]

    def _totals(self) -> tuple[int, int]:
        count = octets = 0
        for index, message in enumerate(self._messages):
            if index not in self._deleted:
                count += 1
                octets += message.size
        return count, octets

    # ---------------------------------------------------------------------------------------- decisions

    def _take_pending(self, kind: type[_D]) -> _D:
        event = self._pending
        if not isinstance(event, kind) or self._retrieval is not None:
            raise Pop3UsageError(f"no {kind.__name__} decision is pending")
        self._pending = None
        return event

    # ------------------------------------------------------------------------------------------- replies

    def _ok(self, text: str) -> None:
        self._out += (f"+OK {text}" if text else "+OK").encode("utf-8", "replace") + _CRLF

    def _error(self, code: str | None, text: str) -> None:
        prefix = f"-ERR [{code}] " if code else "-ERR "
        self._out += (prefix + text).encode("utf-8", "replace") + _CRLF

    def _multiline(self, first: str, lines: list[str]) -> None:
        self._ok(first)
        for line in lines:
            # RFC 1939 section 3: lines of a multi-line reply that start with "." are byte-stuffed
            self._out += (("." + line) if line.startswith(".") else line).encode("utf-8", "replace") + _CRLF
        self._out += b".\r\n"

    def _send_error(self, error: _ErrorReply) -> None:
        text = error.text
        if error.counts and self._count_error():
            self._error(error.code, f"{text} (too many errors, closing connection)")
            self._close()
            return
        self._error(error.code, text)

    def _close(self) -> None:
        super()._close()
        self._state = _State.CLOSED
        self._sasl = None
        self._retrieval = None


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def _check_reply(code: str | None, text: str) -> None:
    if code is not None and not _RESP_CODE.fullmatch(code):
        raise ValueError(f"invalid response code {code!r} (RFC 2449 section 8)")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("reply text must not contain control characters")
