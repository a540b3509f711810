"""SMTP server protocol core, sans-IO: bytes in, events and bytes out.

What it implements
- RFC 5321 (SMTP): the command set, the command sequence, DATA with dot-unstuffing, replies and limits.
- RFC 1870 SIZE, RFC 6152 8BITMIME (BODY=), RFC 6531 SMTPUTF8, RFC 2034/3463 enhanced status codes,
  RFC 2920 PIPELINING, RFC 3030 CHUNKING (BDAT), RFC 3207 STARTTLS (the protocol part; TLS itself is the
  glue's).
- RFC 4954 AUTH: the SASL exchange (mechanisms from `postoffice.auth.sasl`), and the AUTH= parameter of
  MAIL. Verifying the credentials is the glue's (`Authenticate`).
- RFC 3461 DSN, the parameters only: RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT are validated and
  passed on as sent (xtext: `postoffice.smtp.xtext`; decoded values: `parse_notify`, `parse_orcpt`,
  `parse_mail_auth`). Generating DSNs is the queue's.
- RFC 8689 REQUIRETLS: offered in EHLO only over TLS (the parameter is only meaningful in a TLS session,
  section 2); a MAIL ... REQUIRETLS without TLS gets 530 5.7.10 "Encryption needed". The parameter is passed
  on; what it asks of the onward delivery is the queue's (smtp/queue.py).
- Not here: sockets, asyncio, TLS, timeouts, policy (who may send to whom, whether a submission port requires
  AUTH), storage, credential checks, BINARYMIME, VRFY/EXPN answers beyond "252"/"502".

AUTH (RFC 4954) decisions
- AUTH is offered in EHLO, and accepted, only when `auth_mechanisms` is non-empty and TLS is active or
  `auth_requires_tls` is off. Before STARTTLS with TLS required it is not advertised (a client must not be
  invited to send a password in clear, as RFC 3207 section 4.2 and RFC 4954 section 4 intend), and an AUTH
  sent anyway gets 538 5.7.11 "Encryption required for requested authentication mechanism" (RFC 4954
  section 6). With no mechanisms configured AUTH is 502 5.5.1: the command is not implemented (RFC 5321
  section 4.2.4).
- 503 5.5.1: before EHLO (after HELO too: AUTH is a service extension), after a successful AUTH and inside a
  mail transaction (RFC 4954 section 4). 504 5.5.4 unknown mechanism; 501 5.5.4 syntax; 501 5.5.2 a line that
  is not base64; 501 5.0.0 the client cancelled with "*" (not counted as an error); 535 5.7.8 a malformed
  SASL message (RFC 4422 section 3.6); 500 5.5.6 a response line over `max_auth_line`.
- The initial response "=" is an empty one. Challenges are "334 <base64>" (no enhanced code: it would be
  read as base64). While an exchange waits for the client, the next line is its response whatever it looks
  like, so a client that pipelines AUTH with its responses is served in order.
- An accepted AUTH lasts until STARTTLS (RFC 3207 section 4.2 discards it with the EHLO state) or the end of
  the session; a new EHLO or RSET keeps it (`authenticated`).
- Line lengths (RFC 5321 section 4.5.3.1.4 lets extensions raise the 512-octet limit): an AUTH command line
  and every SASL response line may be `max_auth_line` octets (12288, RFC 4954 section 4); a MAIL line 500
  more with AUTH offered (RFC 4954 section 3) and 100 more with DSN, a RCPT line 500 more with DSN
  (RFC 3461). The limit is chosen from the first five octets of the line.

The event model
    proto = SmtpServerProtocol(settings, tls_active=False)
    proto.greeting()
    loop:
        send(proto.data_to_send())
        proto.receive_data(read())           # b"" when the peer closed
        while (event := proto.next_event()) is not None:
            handle(event)                    # may call accept()/reject()/tls_started()
        send(proto.data_to_send())
        if proto.closed: close

  The buffer, line reading, decisions and the STARTTLS discard are the shared skeleton's
  (`postoffice.net.lineproto`, docs/decisions/0034); the loop above is `postoffice.net.driver`'s.
  `receive_data` only buffers; all parsing happens lazily in `next_event`, one event at a time. Events
  that need a decision (`Hello`, `MailFrom`, `RcptTo`, `MessageComplete`, `Authenticate`, and `StartTls`
  which needs `tls_started()`) are *pending*: until the glue answers, `next_event` returns None and no
  further input is parsed, so replies to pipelined commands (RFC 2920) are always queued in command order.
  All other events are informational.

Decisions (the glue contract)
- `Hello`      accept() -> "250" EHLO capability list or HELO line (the text, if given, follows the hostname);
               reject() -> the given reply, the previous HELO/EHLO state is kept.
- `MailFrom`   accept() -> "250 2.1.0"; reject() -> no transaction is started. Policy such as "530 5.7.0
               Authentication required" on a submission port is the glue's (look at `authenticated`). The
               AUTH= parameter must be treated as AUTH=<> unless the client is authenticated and trusted to
               vouch for the submitter (RFC 4954 section 5).
- `RcptTo`     accept() -> "250 2.1.5", the recipient is added; reject() -> it is not (and does not count
               towards max_recipients).
- `MessageComplete` accept(text) -> "250 2.0.0 <text or OK>"; reject() -> the given reply. Either way the
               transaction is over (RFC 5321 section 4.1.1.4). The glue must answer only after the message is
               durably stored (architecture invariant), e.g. accept(f"OK queued as {queue_id}").
- `Authenticate(mechanism, credentials)` the SASL exchange is complete. The glue verifies the credentials
               (`Authenticator.login_sasl`, off the event loop) and calls accept() -> "235 2.7.0
               Authentication successful", `authenticated` becomes True; or reject(), e.g. 535 5.7.8
               "Authentication credentials invalid", 454 4.7.0 "Temporary authentication failure" (RFC 4954
               section 6). The glue keeps the account it authenticated; it forgets it on StartTls.
- `StartTls`   the core has queued "220 2.0.0 Ready to start TLS" and discarded every byte received after the
               STARTTLS line; it discards everything fed to it until `tls_started()`. The glue flushes
               data_to_send(), throws away anything its own reader buffered, does the handshake, calls
               tls_started(); on handshake failure it just closes the connection.
- `close(code, enhanced, text)` lets the glue end the session itself (timeout, shutdown): it queues the reply,
  aborts a message in progress and sets `closed`. accept()/reject() after that are ignored.

Events the core decides alone (the glue only reacts)
- `MessageStart` after DATA (the core already replied 354) or the first BDAT of a transaction (no reply).
- `MessageData` bytes of the message: dot-unstuffed, every line end CRLF, at most DATA_CHUNK_SIZE + 2 octets.
- `MessageAborted(reason)` the message will not complete (over SIZE: the core replies 552 5.3.4 itself; RSET,
  QUIT, a new HELO/EHLO, 421 or a peer close in the middle of it). The glue discards its spool file.
- `Reset` after RSET (always) and after an accepted HELO/EHLO that cleared an open transaction.
- `Quit` (221 queued, then closed), `ConnectionClosed` (the peer closed; closed).
A transaction (started by an accepted MailFrom) ends with: the answer to MessageComplete, MessageAborted,
Reset, Quit or ConnectionClosed. `envelope` shows the accepted reverse path and recipients of the open
transaction.

Replies the core sends itself: greeting 220, NOOP 250, RSET 250, HELP 214, VRFY 252 2.5.0, EXPN 502 5.5.1,
QUIT 221, 354 for DATA, 250 for a non-LAST BDAT chunk, STARTTLS 220 / 454 4.7.0 (not offered) / 503 5.5.1
(already TLS, or inside a transaction), AUTH 334 and its errors (above); and the errors: 500 5.5.2 (unknown
command, line too long, control characters, non-UTF-8 command verb), 501 (syntax: 5.5.4, address syntax and
size: 5.1.7 sender / 5.1.3 recipient, RFC 5321 section 4.5.3.1.9 "Path too long"; a malformed parameter
value: 5.5.4), 503 5.5.1 (bad sequence), 554 5.5.1 (DATA/BDAT with no accepted recipient, RFC 5321 section
3.3), 555 5.5.4 (unknown MAIL/RCPT parameter, RFC 5321 section 4.1.1.11; also DSN parameters while `dsn` is
off and AUTH= while no mechanism is configured), 552 5.3.4 (SIZE too big, message too big), 452 4.5.3
(max_recipients, RFC 5321 section 4.5.3.1.10), 550/553 5.6.7 (non-ASCII address without SMTPUTF8 on
MAIL/RCPT, RFC 6531 section 3.5), 553 5.1.7 / 5.1.3 (a sender / recipient address holding a character no
address may hold: `smtp.address.disallowed_character`), 421 4.7.0 (too many errors).

Invariants every change must keep
- The terminator of DATA is CRLF "." CRLF and nothing else; a bare LF or lone CR is never a line end for
  finding the terminator or for dot-unstuffing (SMTP smuggling). Stored bytes have only CRLF line ends.
  Policy and rationale: docs/decisions/0004-smtp-line-policy.md.
- The output (events and reply bytes) does not depend on how the input was split across receive_data calls,
  except for where MessageData chunks are cut.
- Memory is bounded: while looking for a command line at most its limit is kept (max_command_line; up to 600
  more for MAIL and RCPT; max_auth_line for AUTH and SASL responses, see above); in DATA at most 2 octets are
  held back; BDAT octets are passed on as they arrive. Nothing buffers a whole message.
  (While a decision is pending the glue must not feed more data; it would be buffered unparsed.)
- Every reply line matches `^\\d{3}[ -]`, is printable US-ASCII (RFC 5321 section 4.2 textstring), at most
  MAX_REPLY_LINE octets and ends with CRLF, whatever text the glue passes: the reply builder escapes
  anything else as "\\x{HEX}" (`reply_text`), so a reply may quote what the client sent (an address) and
  never breaks. Every reply except the greeting, the HELO/EHLO answer, 354 and 334 carries an enhanced
  status code (RFC 2034 section 3 exempts greeting and HELO/EHLO; 3xx has no enhanced class in RFC 3463).
- Nothing the peer sends raises: malformed input becomes an error reply. Only glue misuse (a decision with
  none pending, a reply code that does not match its enhanced code) raises `SmtpUsageError` / ValueError;
  the text of a reply never does.
- Errors that count towards max_errors are protocol errors made by the peer (5xx/4xx replies the core sends
  for syntax, sequence, unknown commands, malformed AUTH exchanges); rejections by the glue (a wrong password
  included: the login guard counts those), 452 too many recipients, 552 size, EXPN and a cancelled AUTH do
  not count. The glue may call close() if it wants its own limit on rejections.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from postoffice.auth import scram
from postoffice.auth.sasl import (
    CANCEL,
    Challenge,
    Credentials,
    NeedScramSecret,
    SaslFailure,
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
from postoffice.smtp.address import (
    AddressSyntaxError,
    disallowed_character,
    parse_forward_path,
    parse_reverse_path,
)
from postoffice.smtp.xtext import decode_xtext, is_xchar

__all__ = [
    "AUTH_LINE_LIMIT",
    "DATA_CHUNK_SIZE",
    "ENVID_MAX_CHARS",
    "MAX_REPLY_LINE",
    "Authenticate",
    "ConnectionClosed",
    "Envelope",
    "Event",
    "Hello",
    "MailFrom",
    "MessageAborted",
    "MessageComplete",
    "MessageData",
    "MessageStart",
    "Quit",
    "RcptTo",
    "Reset",
    "ScramSecretNeeded",
    "SmtpServerProtocol",
    "SmtpSettings",
    "SmtpUsageError",
    "StartTls",
    "parse_mail_auth",
    "parse_notify",
    "parse_orcpt",
    "reply_text",
]

DATA_CHUNK_SIZE = 64 * 1024
"""Upper bound (plus 2 octets) of one MessageData chunk, and of the input octets looked at per step."""

_MIN_COMMAND_LINE = 512  # RFC 5321 section 4.5.3.1.4: servers must accept at least this much

AUTH_LINE_LIMIT = 12288
"""Default longest AUTH command line and SASL response line, CRLF included (RFC 4954 section 4: "12288 octets
is considered to be a sufficient line length limit for handling of deployed authentication mechanisms")."""

MAX_REPLY_LINE = 512
"""Longest reply line, code and CRLF included (RFC 5321 section 4.5.3.1.5)."""

ENVID_MAX_CHARS = 100
"""Longest ENVID (RFC 3461 section 4.4), counted after xtext decoding (the lenient reading)."""

# Octets that ESMTP parameters add to the 512-octet limit of a MAIL/RCPT command line (RFC 5321 section
# 4.5.3.1.4 lets extensions raise it): AUTH= on MAIL 500 (RFC 4954 section 3), RET and ENVID on MAIL 100,
# NOTIFY and ORCPT on RCPT 500 (RFC 3461).
_MAIL_AUTH_EXTRA = 500
_MAIL_DSN_EXTRA = 100
_RCPT_DSN_EXTRA = 500


@dataclass(frozen=True)
class SmtpSettings:
    hostname: str
    max_message_size: int = 50 * 1024 * 1024  # SIZE (RFC 1870)
    max_recipients: int = 1000  # RFC 5321 section 4.5.3.1.8 requires at least 100
    max_command_line: int = 512  # octets including CRLF (RFC 5321 section 4.5.3.1.4)
    max_errors: int = 20  # after this many protocol errors: 421 and close
    starttls_available: bool = True  # offer STARTTLS (only while not already TLS)
    chunking: bool = True  # CHUNKING/BDAT (RFC 3030)
    auth_mechanisms: tuple[str, ...] = ()  # SASL mechanisms for AUTH (RFC 4954); () = no AUTH
    auth_requires_tls: bool = True  # AUTH only over TLS (offered and accepted only after STARTTLS)
    max_auth_line: int = AUTH_LINE_LIMIT  # AUTH command and SASL response lines, octets including CRLF
    dsn: bool = True  # DSN (RFC 3461): RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT

    def __post_init__(self) -> None:
        if not self.hostname or not all(0x21 <= ord(c) <= 0x7E for c in self.hostname):
            raise ValueError("hostname must be non-empty printable ASCII without spaces")
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        if self.max_recipients < 1:
            raise ValueError("max_recipients must be positive")
        if self.max_command_line < _MIN_COMMAND_LINE:
            raise ValueError(f"max_command_line must be at least {_MIN_COMMAND_LINE} (RFC 5321 4.5.3.1.4)")
        if self.max_errors < 1:
            raise ValueError("max_errors must be positive")
        if self.max_auth_line < self.max_command_line:
            raise ValueError("max_auth_line must be at least max_command_line")
        for mech in self.auth_mechanisms:
            if not re.fullmatch(r"[A-Z0-9_-]{1,20}", mech):
                raise ValueError(f"invalid SASL mechanism name {mech!r}")
            if mech not in mechanism_names():
                raise ValueError(f"SASL mechanism {mech} is not implemented (postoffice.auth.sasl)")
        if len(set(self.auth_mechanisms)) != len(self.auth_mechanisms):
            raise ValueError("auth_mechanisms lists a mechanism twice")

    @property
    def max_buffered_line(self) -> int:
        """The most octets the core keeps while looking for the end of a command or SASL response line."""
        mail = self.max_command_line + (_MAIL_DSN_EXTRA if self.dsn else 0)
        mail += _MAIL_AUTH_EXTRA if self.auth_mechanisms else 0
        rcpt = self.max_command_line + (_RCPT_DSN_EXTRA if self.dsn else 0)
        return max(mail, rcpt, self.max_auth_line if self.auth_mechanisms else 0)


# ---------------------------------------------------------------------------------------------------- events


class Event:
    """Base class of everything next_event() returns."""

    __slots__ = ()


@dataclass(frozen=True)
class Hello(Event):
    """HELO (extended=False) or EHLO (extended=True). Needs accept() or reject()."""

    name: str
    extended: bool


@dataclass(frozen=True)
class MailFrom(Event):
    """MAIL FROM. `address` is "" for the null reverse path "<>". Needs accept() or reject().

    `params` has upper-case keys; every value is validated: SIZE (digits, within the limit), BODY (7BIT or
    8BITMIME, upper-cased), SMTPUTF8 (value None), AUTH (RFC 4954 section 5: "<>" or xtext, see
    `parse_mail_auth`), RET (FULL or HDRS, upper-cased) and ENVID (xtext, see `decode_xtext`). Values other
    than BODY and RET are as the client sent them, so that they can be passed on unchanged.
    """

    address: str
    params: dict[str, str | None]


@dataclass(frozen=True)
class RcptTo(Event):
    """RCPT TO. `address` is "postmaster" for the domain-less "<Postmaster>". Needs accept() or reject().

    `params` has upper-case keys; with DSN: NOTIFY (upper-cased, see `parse_notify`) and ORCPT (as sent, see
    `parse_orcpt`), both validated.
    """

    address: str
    params: dict[str, str | None]


@dataclass(frozen=True)
class Authenticate(Event):
    """AUTH (RFC 4954): the SASL exchange yielded credentials. Needs accept() (235 2.7.0, the session is
    authenticated) or reject() (e.g. 535 5.7.8 wrong credentials, 454 4.7.0 temporary failure).

    `mechanism` is the upper-case name ("PLAIN"). The repr leaves the credentials out: the event may be
    logged.
    """

    mechanism: str
    credentials: Credentials | None = field(repr=False)
    scram: ScramOutcome | None = None  # a SCRAM exchange's outcome instead (`Authenticator.scram_finish`)


@dataclass(frozen=True)
class ScramSecretNeeded(Event):
    """AUTH SCRAM-SHA-256(-PLUS): the exchange needs the secret of `username` (`Authenticator.scram_secret`);
    answer with scram_secret()."""

    username: str


@dataclass(frozen=True)
class MessageStart(Event):
    """DATA was accepted (354 already sent) or the first BDAT chunk begins: prepare the spool."""


@dataclass(frozen=True)
class MessageData(Event):
    """A chunk of message bytes: dot-unstuffed (DATA), line ends normalised to CRLF."""

    data: bytes


@dataclass(frozen=True)
class MessageComplete(Event):
    """End of data. `size` is the number of octets in the MessageData events. Needs accept() or reject()."""

    size: int


@dataclass(frozen=True)
class MessageAborted(Event):
    """The message in progress will not complete; the core sends any reply itself. Discard the spool."""

    reason: str


@dataclass(frozen=True)
class StartTls(Event, TlsUpgrade):
    """STARTTLS accepted: flush data_to_send(), do the TLS handshake, then call tls_started()."""


@dataclass(frozen=True)
class Reset(Event):
    """The transaction (if any) was cleared by RSET or by an accepted HELO/EHLO."""


@dataclass(frozen=True)
class Quit(Event):
    """QUIT: 221 is queued; close after flushing data_to_send()."""


@dataclass(frozen=True)
class ConnectionClosed(Event):
    """The peer closed the connection (receive_data(b""))."""


@dataclass(frozen=True)
class Envelope:
    """The open transaction: accepted reverse path, its parameters and the accepted recipients."""

    mail_from: str
    mail_params: dict[str, str | None]
    recipients: tuple[str, ...]


class SmtpUsageError(LineUsageError):
    """The glue called a decision method when no such decision was pending."""


# --------------------------------------------------------------------------------------------- internals


class _Mode(Enum):
    COMMAND = "command"
    DATA = "data"
    BDAT = "bdat"


class _ErrorReply(Exception):
    """Raised while handling a command to answer it with an error reply."""

    def __init__(self, code: int, enhanced: str, text: str, *, counts: bool = True) -> None:
        super().__init__(text)
        self.code = code
        self.enhanced = enhanced
        self.text = text
        self.counts = counts


_BDAT_ARGS = re.compile(r" *([0-9]+)(?: +(LAST))? *", re.IGNORECASE | re.ASCII)
_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_ENHANCED = re.compile(r"([245])\.[0-9]{1,3}\.[0-9]{1,3}")
_SIZE_VALUE = re.compile(r"[0-9]{1,20}")

_HELP_TEXT = "Commands: EHLO HELO AUTH MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY STARTTLS HELP"
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+", re.ASCII)  # RFC 5322 section 3.2.3 atext
_EMBEDDED_UNICODE = re.compile(r"\\x\{([0-9A-F]{2,6})\}")  # RFC 6533 section 3 EmbeddedUnicodeChar
_NOTIFY_KEYWORDS = frozenset({"SUCCESS", "FAILURE", "DELAY"})

_Decision = Hello | MailFrom | RcptTo | MessageComplete | Authenticate
# StartTls is answered by tls_started(), not by accept()/reject()
_ANSWERABLE = (Hello, MailFrom, RcptTo, MessageComplete, Authenticate)


class SmtpServerProtocol(LineProtocol[Event]):
    """One SMTP server session. See the module docstring for the event model and the glue contract; the
    input buffer, line reading, decisions and the STARTTLS discard are `postoffice.net.lineproto`'s."""

    _usage_error = SmtpUsageError

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        tls_active: bool = False,
        channel_binding: Callable[[], bytes | None] = lambda: None,
    ) -> None:
        super().__init__(max_errors=settings.max_errors, tls_active=tls_active)
        self._settings = settings
        #: the connection's tls-exporter octets now (SCRAM-SHA-256-PLUS, decision 0068), or None
        self._channel_binding = channel_binding
        self._scram: ScramMechanism | None = None  # a SCRAM exchange waiting for its secret (the glue's)
        self._mode = _Mode.COMMAND
        # session
        self._helo: str | None = None
        self._extended = False
        self._authenticated = False
        self._sasl: SaslMechanism | None = None  # an AUTH exchange waiting for the client's next line
        # transaction (RFC 5321 section 3.3: reverse-path, forward-path and mail data buffers)
        self._mail_from: str | None = None
        self._mail_params: dict[str, str | None] = {}
        self._smtputf8 = False
        self._recipients: list[str] = []
        self._bdat_used = False
        self._message_open = False  # MessageStart emitted; neither MessageComplete nor MessageAborted yet
        self._message_size = 0
        self._oversize = False
        # DATA scanner
        self._line_start = True
        # BDAT chunk
        self._bdat_remaining = 0
        self._bdat_size = 0
        self._bdat_last = False
        self._bdat_error: _ErrorReply | None = None
        self._pending_cr = False  # a CR at the end of BDAT data, not yet known to be part of CRLF
        self._handlers: dict[str, Callable[[str], None]] = {
            "EHLO": self._cmd_ehlo,
            "HELO": self._cmd_helo,
            "MAIL": self._cmd_mail,
            "RCPT": self._cmd_rcpt,
            "DATA": self._cmd_data,
            "BDAT": self._cmd_bdat,
            "RSET": self._cmd_rset,
            "NOOP": self._cmd_noop,
            "HELP": self._cmd_help,
            "VRFY": self._cmd_vrfy,
            "EXPN": self._cmd_expn,
            "QUIT": self._cmd_quit,
            "STARTTLS": self._cmd_starttls,
            "AUTH": self._cmd_auth,
        }

    # ------------------------------------------------------------------------------------------ public API

    @property
    def settings(self) -> SmtpSettings:
        return self._settings

    @property
    def should_close(self) -> bool:
        """Alias of `closed` (True after QUIT (221), a 421, close() or a peer close)."""
        return self._closed

    @property
    def helo_name(self) -> str | None:
        """The name from the accepted HELO/EHLO, None before one (and again after STARTTLS)."""
        return self._helo

    @property
    def extended(self) -> bool:
        """True when the accepted greeting was EHLO (ESMTP), False for HELO or none."""
        return self._extended

    @property
    def authenticated(self) -> bool:
        """True after an accepted Authenticate (AUTH, RFC 4954), until STARTTLS or the end of the session."""
        return self._authenticated

    @property
    def auth_available(self) -> bool:
        """True when AUTH is offered now: mechanisms are configured and TLS is active or not required."""
        settings = self._settings
        return bool(settings.auth_mechanisms) and (self._tls_active or not settings.auth_requires_tls)

    @property
    def pending(self) -> Event | None:
        """The event waiting for the glue's decision (accept()/reject(), or tls_started() for StartTls)."""
        return self._pending

    @property
    def envelope(self) -> Envelope | None:
        """The open transaction, or None when no MAIL command has been accepted."""
        if self._mail_from is None:
            return None
        return Envelope(self._mail_from, dict(self._mail_params), tuple(self._recipients))

    def greeting(self) -> None:
        """Queue the 220 greeting (RFC 5321 section 4.3.1)."""
        self._reply(220, None, f"{self._settings.hostname} ESMTP Postoffice")

    def accept(self, text: str | None = None) -> None:
        """Accept the pending Hello, MailFrom, RcptTo, MessageComplete or Authenticate; `text` replaces the
        default text."""
        if self._closed:
            return
        event = self._take_pending()
        if isinstance(event, Hello):
            # the first line of the EHLO answer: one line, whatever the glue passed
            self._accept_hello(event, None if text is None else text.replace("\n", " "))
        elif isinstance(event, MailFrom):
            self._mail_from = event.address
            self._mail_params = dict(event.params)
            self._smtputf8 = "SMTPUTF8" in event.params
            self._reply(250, "2.1.0", text or "Sender OK")
        elif isinstance(event, RcptTo):
            self._recipients.append(event.address)
            self._reply(250, "2.1.5", text or "Recipient OK")
        elif isinstance(event, Authenticate):
            self._authenticated = True
            self._reply(235, "2.7.0", text or "Authentication successful")  # RFC 4954 section 6
        else:  # MessageComplete
            self._clear_transaction()
            self._reply(250, "2.0.0", text or "OK")

    def reject(self, code: int, enhanced: str, text: str) -> None:
        """Reject the pending Hello, MailFrom, RcptTo, MessageComplete or Authenticate: a 4xx/5xx reply."""
        if self._closed:
            return
        _check_error_reply(code, enhanced)
        event = self._take_pending()
        if isinstance(event, MessageComplete):
            self._clear_transaction()  # RFC 5321 section 4.1.1.4: the buffers are cleared either way
        self._reply(code, enhanced, text)

    def _tls_reset(self) -> None:
        # RFC 3207 section 4.2: discard all knowledge obtained from the client; EHLO must come again, and
        # an authentication from before the handshake no longer counts (RFC 4954 section 4 allows AUTH again).
        self._helo = None
        self._extended = False
        self._authenticated = False
        self._sasl = None
        self._clear_transaction()

    def close(self, code: int = 421, enhanced: str = "4.3.2", text: str = "Service shutting down") -> None:
        """End the session from the glue's side (timeout, shutdown): queue the reply and set `closed`.

        The reply is "<code> <enhanced> <hostname> <text>"; a message in progress is aborted (MessageAborted).
        """
        if self._closed:
            return
        _check_error_reply(code, enhanced)
        self._shutdown(code, enhanced, text)

    # --------------------------------------------------------------------------------------- input steps

    def _step(self) -> bool:
        """Parse what the buffer allows; False when nothing could be done without more input."""
        mode = self._mode
        if mode is _Mode.COMMAND:
            return self._step_command()
        if mode is _Mode.DATA:
            return self._step_data()
        return self._step_bdat()

    def _step_command(self) -> bool:
        # RFC 5321 section 4.5.3.1.4: the limit counts the CRLF. LF alone is also taken as the end of a
        # command line (see docs/decisions/0004-smtp-line-policy.md); it never is in DATA.
        line = self._next_line()
        if line is None:
            return False
        if line is LINE_TOO_LONG:
            if self._sasl is not None:
                self._sasl = None  # RFC 4954 section 4: the AUTH command fails with 500 5.5.6
                self._send_error(_ErrorReply(500, "5.5.6", "Authentication exchange line is too long"))
            else:
                self._send_error(_ErrorReply(500, "5.5.2", "Line too long"))
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
        """The longest line, CRLF included, that the next command (or SASL response) may be.

        Decided from the first 5 octets, which are always present when the limit matters (it is at least
        512), so the outcome does not depend on how the input was split.
        """
        settings = self._settings
        if self._sasl is not None:
            return settings.max_auth_line  # RFC 4954 section 4
        verb = bytes(self._buffer[:5]).upper()
        if verb == b"AUTH " and settings.auth_mechanisms:
            # RFC 4954 section 4 keeps the AUTH line within the SMTP limit; clients that send a long initial
            # response anyway are served, the buffer stays bounded.
            return settings.max_auth_line
        if verb == b"MAIL ":
            extra = (_MAIL_DSN_EXTRA if settings.dsn else 0) + (
                _MAIL_AUTH_EXTRA if settings.auth_mechanisms else 0
            )
            return settings.max_command_line + extra
        if verb == b"RCPT " and settings.dsn:
            return settings.max_command_line + _RCPT_DSN_EXTRA
        return settings.max_command_line

    def _step_data(self) -> bool:
        before = len(self._buffer)
        out, ended = self._scan_data()
        self._add_message_data(out)
        if ended:
            self._mode = _Mode.COMMAND
            self._finish_message()
        return ended or len(self._buffer) != before

    def _scan_data(self) -> tuple[bytes, bool]:
        """Consume DATA octets from the buffer (RFC 5321 sections 4.1.1.4 and 4.5.2).

        Returns the unstuffed, CRLF-normalised output (at most DATA_CHUNK_SIZE + 2 octets) and whether the
        terminator CRLF "." CRLF was consumed. `self._line_start` is True after a real CRLF (or the DATA
        command line): only there does a "." mean stuffing or the terminator.

        How: a CRLF pair is a real line end wherever it occurs, so `find(CRLF ".")` cuts the input into
        segments that each end with a real CRLF (or at the window end); inside a segment the only work left is
        to turn bare LF and lone CR into CRLF (`_crlf_line_ends`, skipped when three C-speed counts show the
        window has CRLF pairs only). Segments are never cut between the CR and the LF of a pair: a window end
        is moved back before a CR, and a CR that is the last octet received is held back until the next one.
        """
        buf = self._buffer
        n = len(buf)
        i = 0
        out = bytearray()
        line_start = self._line_start
        ended = False
        window_end = 0
        window_clean = False
        while i < n and len(out) < DATA_CHUNK_SIZE:
            if line_start:
                if buf[i] == 0x2E:  # "." at the start of a line
                    if i + 1 >= n:
                        break  # hold back: "." alone may become ".\r\n"
                    if buf[i + 1] == 0x0D:
                        if i + 2 >= n:
                            break  # hold back ".\r"
                        if buf[i + 2] == 0x0A:
                            i += 3
                            ended = True
                            break
                    i += 1  # RFC 5321 section 4.5.2: delete the first "." of the line
                line_start = False
                continue
            if i >= window_end:
                room = DATA_CHUNK_SIZE - len(out)
                window_end = min(n, i + room)
                pairs = buf.count(b"\r\n", i, window_end)
                window_clean = buf.count(b"\r", i, window_end) == pairs == buf.count(b"\n", i, window_end)
                if not window_clean:
                    window_end = min(n, i + max(1, room // 2))  # normalising may double the size
                if window_end < n and buf[window_end - 1] == 0x0D:
                    window_end -= 1  # never separate a CR from the LF that may follow it
                    if window_end == i:
                        break
            dot = buf.find(b"\r\n.", i, window_end)
            end = window_end if dot < 0 else dot + 2
            if end == n and buf[end - 1] == 0x0D:
                end -= 1  # hold back a final CR: it may be the start of CRLF
                if end == i:
                    break
            segment = buf[i:end]
            out += segment if window_clean else _crlf_line_ends(segment)
            line_start = segment.endswith(b"\r\n")  # a real CRLF: a new line starts
            i = end
        del buf[:i]
        self._line_start = line_start
        return bytes(out), ended

    def _step_bdat(self) -> bool:
        buf = self._buffer
        if self._bdat_remaining > 0:
            if not buf:
                return False
            # Half a chunk of input: normalising bare LF / lone CR may double it (plus a held-back CR).
            take = min(self._bdat_remaining, len(buf), DATA_CHUNK_SIZE // 2)
            piece = bytes(buf[:take])
            del buf[:take]
            self._bdat_remaining -= take
            if self._bdat_error is None:
                self._add_message_data(self._normalise_bdat(piece))
            return True
        # The chunk is complete.
        self._mode = _Mode.COMMAND
        if self._bdat_error is not None:
            # RFC 3030 section 2: the octets of a failed BDAT are read and discarded, then the error reply.
            self._send_error(self._bdat_error)
            self._bdat_error = None
        elif self._bdat_last:
            self._add_message_data(self._normalise_bdat(b"", final=True))
            self._finish_message()
        elif self._oversize:
            self._finish_message()
        else:
            self._reply(250, "2.0.0", f"{counted(self._bdat_size, 'octet')} received")
        return True

    def _normalise_bdat(self, piece: bytes, *, final: bool = False) -> bytes:
        """Bare LF and lone CR become CRLF; a CR at the end is held until the next octet is known."""
        data = b"\r" + piece if self._pending_cr else piece
        self._pending_cr = False
        if not final and data.endswith(b"\r"):
            data = data[:-1]
            self._pending_cr = True
        return _crlf_line_ends(data)

    def _peer_closed(self) -> None:
        if self._message_open:
            self._events.append(MessageAborted("connection closed"))
        self._events.append(ConnectionClosed())
        self._close()

    # ------------------------------------------------------------------------------------------- commands

    def _dispatch(self, line: bytes) -> None:
        command = split_command(line)
        if command is None:
            # such names would end up in Received headers and logs
            raise _ErrorReply(500, "5.5.2", "Invalid character in command line")
        verb, arg_bytes = command
        handler = self._handlers.get(verb)
        if handler is None:
            raise _ErrorReply(500, "5.5.2", "Command not recognized")
        try:
            arg = arg_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise _ErrorReply(501, "5.5.4", "Invalid UTF-8 in command arguments") from None
        handler(arg)

    def _cmd_ehlo(self, arg: str) -> None:
        self._hello(arg, extended=True)

    def _cmd_helo(self, arg: str) -> None:
        self._hello(arg, extended=False)

    def _hello(self, arg: str, *, extended: bool) -> None:
        # RFC 5321 section 4.1.1.1: the argument should be a domain or an address literal. Anything non-empty
        # is taken (control characters were refused already); checking it is policy, not syntax.
        name = arg.strip(" ")
        if not name:
            raise _ErrorReply(501, "5.5.4", f"Syntax: {'EHLO' if extended else 'HELO'} hostname")
        self._decide(Hello(name, extended))

    def _cmd_mail(self, arg: str) -> None:
        if self._helo is None:
            raise _ErrorReply(503, "5.5.1", "Send HELO/EHLO first")
        if self._mail_from is not None:
            raise _ErrorReply(503, "5.5.1", "Nested MAIL command")
        if not arg[:5].isascii() or arg[:5].upper() != "FROM:":
            raise _ErrorReply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
        text = arg[5:].lstrip(" ")  # tolerate "MAIL FROM: <address>"
        try:
            address, end = parse_reverse_path(text)
        except AddressSyntaxError as error:
            raise _ErrorReply(501, "5.1.7", f"Bad sender address: {error}") from None
        # SMTPUTF8 may come after the parameter that needs it: parse all, then check (RFC 6531 section 3.4).
        params = self._parse_params(text[end:], utf8_allowed=True)
        smtputf8 = "SMTPUTF8" in params
        if not smtputf8 and any(v is not None and not v.isascii() for v in params.values()):
            raise _ErrorReply(501, "5.5.4", "Non-ASCII parameter value requires SMTPUTF8")
        params = self._check_mail_params(params)
        if not smtputf8 and not address.isascii():
            raise _ErrorReply(550, "5.6.7", "Non-ASCII sender address requires SMTPUTF8")
        if (bad := disallowed_character(address)) is not None:
            raise _ErrorReply(553, "5.1.7", f"Sender address contains {_code_point(bad)}, {_DISALLOWED}")
        self._decide(MailFrom(address, params))

    def _check_mail_params(self, params: dict[str, str | None]) -> dict[str, str | None]:
        if params and not self._extended:
            raise _ErrorReply(555, "5.5.4", "MAIL parameters require EHLO")
        checked: dict[str, str | None] = {}
        for key, value in params.items():
            if key == "SIZE":  # RFC 1870 section 6
                if value is None or not _SIZE_VALUE.fullmatch(value):
                    raise _ErrorReply(501, "5.5.4", "Syntax: SIZE=<octets>")
                if int(value) > self._settings.max_message_size:
                    raise _ErrorReply(
                        552, "5.3.4", "Message size exceeds fixed maximum message size", counts=False
                    )
            elif key == "BODY":  # RFC 6152 section 3
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    raise _ErrorReply(501, "5.5.4", "Syntax: BODY=7BIT or BODY=8BITMIME")
                value = value.upper()
            elif key == "SMTPUTF8":  # RFC 6531 section 3.4: takes no value
                if value is not None:
                    raise _ErrorReply(501, "5.5.4", "SMTPUTF8 takes no value")
            elif key == "REQUIRETLS":  # RFC 8689 section 2: no value, only in a TLS session
                if value is not None:
                    raise _ErrorReply(501, "5.5.4", "REQUIRETLS takes no value")
                if not self._tls_active:
                    raise _ErrorReply(530, "5.7.10", "REQUIRETLS needs a TLS session: STARTTLS first")
            elif key == "AUTH" and self._settings.auth_mechanisms:  # RFC 4954 section 5
                if value is None or not _valid(parse_mail_auth, value):
                    raise _ErrorReply(501, "5.5.4", "Syntax: AUTH=<mailbox>")
            elif key == "RET" and self._settings.dsn:  # RFC 3461 section 4.3
                if value is None or value.upper() not in ("FULL", "HDRS"):
                    raise _ErrorReply(501, "5.5.4", "Syntax: RET=FULL or RET=HDRS")
                value = value.upper()
            elif key == "ENVID" and self._settings.dsn:  # RFC 3461 section 4.4
                if value is None or not _valid(_parse_envid, value):
                    raise _ErrorReply(
                        501,
                        "5.5.4",
                        f"Syntax: ENVID=<xtext of at most {ENVID_MAX_CHARS} printable characters>",
                    )
            else:
                raise _ErrorReply(555, "5.5.4", f"Unsupported parameter {key}")
            checked[key] = value
        return checked

    def _cmd_rcpt(self, arg: str) -> None:
        if self._helo is None:
            raise _ErrorReply(503, "5.5.1", "Send HELO/EHLO first")
        if self._mail_from is None:
            raise _ErrorReply(503, "5.5.1", "Need MAIL before RCPT")
        if self._message_open:
            raise _ErrorReply(503, "5.5.1", "RCPT not allowed after BDAT")
        if not arg[:3].isascii() or arg[:3].upper() != "TO:":
            raise _ErrorReply(501, "5.5.4", "Syntax: RCPT TO:<address>")
        text = arg[3:].lstrip(" ")
        try:
            address, end = parse_forward_path(text)
        except AddressSyntaxError as error:
            raise _ErrorReply(501, "5.1.3", f"Bad recipient address: {error}") from None
        params = self._check_rcpt_params(self._parse_params(text[end:], utf8_allowed=self._smtputf8))
        if not self._smtputf8 and not address.isascii():
            raise _ErrorReply(553, "5.6.7", "Non-ASCII recipient address requires SMTPUTF8")
        if (bad := disallowed_character(address)) is not None:
            raise _ErrorReply(553, "5.1.3", f"Recipient address contains {_code_point(bad)}, {_DISALLOWED}")
        if len(self._recipients) >= self._settings.max_recipients:
            raise _ErrorReply(452, "4.5.3", "Too many recipients", counts=False)
        self._decide(RcptTo(address, params))

    def _check_rcpt_params(self, params: dict[str, str | None]) -> dict[str, str | None]:
        if params and not self._extended:
            raise _ErrorReply(555, "5.5.4", "RCPT parameters require EHLO")
        checked: dict[str, str | None] = {}
        for key, value in params.items():
            if key == "NOTIFY" and self._settings.dsn:  # RFC 3461 section 4.1
                if value is None or not _valid(parse_notify, value):
                    raise _ErrorReply(
                        501, "5.5.4", "Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY (one or more)"
                    )
                value = value.upper()
            elif key == "ORCPT" and self._settings.dsn:  # RFC 3461 section 4.2
                if value is None or not _valid(parse_orcpt, value):
                    raise _ErrorReply(501, "5.5.4", "Syntax: ORCPT=<addr-type>;<xtext address>")
            else:
                # RFC 5321 section 4.1.1.11: a parameter that was not offered.
                raise _ErrorReply(555, "5.5.4", f"Unsupported parameter {key}")
            checked[key] = value
        return checked

    def _parse_params(self, rest: str, *, utf8_allowed: bool) -> dict[str, str | None]:
        """Mail-parameters / Rcpt-parameters: esmtp-param *(SP esmtp-param) (RFC 5321 section 4.1.2)."""
        if not rest.strip(" "):
            return {}
        if not rest.startswith(" "):
            raise _ErrorReply(501, "5.5.4", "Syntax error after address")
        params: dict[str, str | None] = {}
        for token in rest.split(" "):
            if not token:
                continue  # lenient about repeated spaces
            key, eq, raw_value = token.partition("=")
            if not key.isascii() or not _ESMTP_KEYWORD.fullmatch(key):
                raise _ErrorReply(501, "5.5.4", "Invalid parameter syntax")
            value: str | None = None
            if eq:
                # esmtp-value = 1*(%d33-60 / %d62-126), =/ UTF8-non-ascii (RFC 6531 section 3.3)
                if not raw_value or any(c == "=" or (c.isascii() and not c.isprintable()) for c in raw_value):
                    raise _ErrorReply(501, "5.5.4", "Invalid parameter value")
                if not utf8_allowed and not raw_value.isascii():
                    raise _ErrorReply(501, "5.5.4", "Non-ASCII parameter value requires SMTPUTF8")
                value = raw_value
            key = key.upper()
            if key in params:
                raise _ErrorReply(501, "5.5.4", f"Duplicate parameter {key}")
            params[key] = value
        return params

    def _cmd_data(self, arg: str) -> None:
        if arg.strip(" "):
            raise _ErrorReply(501, "5.5.4", "Syntax: DATA")
        if self._mail_from is None:
            raise _ErrorReply(503, "5.5.1", "Need MAIL command")
        if self._bdat_used:
            # RFC 3030 section 3: DATA and BDAT cannot be mixed in one transaction.
            raise _ErrorReply(503, "5.5.1", "DATA not allowed after BDAT")
        if not self._recipients:
            raise _ErrorReply(554, "5.5.1", "No valid recipients")  # RFC 5321 section 3.3
        self._reply(354, None, "End data with <CR><LF>.<CR><LF>")
        self._mode = _Mode.DATA
        self._line_start = True  # the CRLF of the DATA line counts as the first CRLF of CRLF "." CRLF
        self._open_message()

    def _cmd_bdat(self, arg: str) -> None:
        if not self._settings.chunking:
            raise _ErrorReply(502, "5.5.1", "BDAT not available")
        match = _BDAT_ARGS.fullmatch(arg)
        if match is None:
            raise _ErrorReply(501, "5.5.4", "Syntax: BDAT <size> [LAST]")
        size = int(match.group(1))
        error: _ErrorReply | None = None
        if self._mail_from is None:
            error = _ErrorReply(503, "5.5.1", "Need MAIL command")
        elif not self._recipients:
            error = _ErrorReply(554, "5.5.1", "No valid recipients")
        self._mode = _Mode.BDAT
        self._bdat_remaining = size
        self._bdat_size = size
        self._bdat_last = match.group(2) is not None
        self._bdat_error = error
        if error is None and not self._message_open:
            self._bdat_used = True
            self._open_message()

    def _cmd_rset(self, arg: str) -> None:
        if arg.strip(" "):
            raise _ErrorReply(501, "5.5.4", "Syntax: RSET")
        if self._message_open:
            self._events.append(MessageAborted("transaction reset"))
        self._clear_transaction()
        self._events.append(Reset())
        self._reply(250, "2.0.0", "OK")

    def _cmd_noop(self, arg: str) -> None:
        self._reply(250, "2.0.0", "OK")

    def _cmd_help(self, arg: str) -> None:
        self._reply(214, "2.0.0", _HELP_TEXT)

    def _cmd_vrfy(self, arg: str) -> None:
        if not arg.strip(" "):
            raise _ErrorReply(501, "5.5.4", "Syntax: VRFY <address>")
        # RFC 5321 section 3.5.3: 252 when the server will not verify but will accept mail.
        self._reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")

    def _cmd_expn(self, arg: str) -> None:
        raise _ErrorReply(502, "5.5.1", "EXPN not available", counts=False)

    def _cmd_quit(self, arg: str) -> None:
        # Arguments are ignored: the client is leaving either way.
        if self._message_open:
            self._events.append(MessageAborted("client quit"))
        self._reply(221, "2.0.0", f"{self._settings.hostname} closing connection")
        self._events.append(Quit())
        self._close()

    def _cmd_starttls(self, arg: str) -> None:
        if arg.strip(" "):
            raise _ErrorReply(501, "5.5.4", "Syntax: STARTTLS")
        if self._tls_active:
            raise _ErrorReply(503, "5.5.1", "TLS already active")
        if not self._settings.starttls_available:
            raise _ErrorReply(454, "4.7.0", "TLS not available")
        if self._mail_from is not None:
            raise _ErrorReply(503, "5.5.1", "STARTTLS not allowed during a mail transaction")
        self._reply(220, "2.0.0", "Ready to start TLS")
        # CVE-2011-0411: octets pipelined after STARTTLS were sent in plaintext; they must not be executed
        # as if they had arrived over TLS (net.lineproto drops them, and all until tls_started()).
        self._begin_tls(StartTls())

    def _cmd_auth(self, arg: str) -> None:
        settings = self._settings
        if not settings.auth_mechanisms:
            raise _ErrorReply(502, "5.5.1", "AUTH not available")  # RFC 5321 section 4.2.4: not implemented
        if not self._extended:
            # AUTH is a service extension: only a client that saw it in the EHLO answer may use it.
            raise _ErrorReply(503, "5.5.1", "Send EHLO first")
        # RFC 4954 section 4: no AUTH after a successful one, nor during a mail transaction.
        if self._authenticated:
            raise _ErrorReply(503, "5.5.1", "Already authenticated")
        if self._mail_from is not None:
            raise _ErrorReply(503, "5.5.1", "AUTH not allowed during a mail transaction")
        if not self.auth_available:
            # RFC 4954 section 6; the client should have used STARTTLS (AUTH was not in the EHLO answer).
            raise _ErrorReply(538, "5.7.11", "Encryption required for requested authentication mechanism")
        words = [word for word in arg.split(" ") if word]
        if not 1 <= len(words) <= 2:
            raise _ErrorReply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
        name = words[0].upper()
        mechanism: SaslMechanism | None = scram.create(name, self._channel_binding())
        if mechanism is None and name in settings.auth_mechanisms:
            mechanism = create_mechanism(name)
        if mechanism is None:
            raise _ErrorReply(504, "5.5.4", "Unrecognized authentication type")  # RFC 4954 section 4
        initial: bytes | None = None
        if len(words) == 2:
            initial = decode_response(words[1])  # "=" is an empty initial response (RFC 4954 section 4)
            if initial is None:
                raise _ErrorReply(501, "5.5.2", "Cannot Base64-decode client response")
        self._sasl_result(mechanism, mechanism.start(initial))

    def _sasl_line(self, mechanism: SaslMechanism, line: bytes) -> None:
        """The client's line during an AUTH exchange: base64, or "*" to cancel (RFC 4954 section 4)."""
        self._sasl = None  # any outcome but a new challenge ends the exchange
        try:
            text = line.decode("ascii").strip(" ")
        except UnicodeDecodeError:
            raise _ErrorReply(501, "5.5.2", "Cannot Base64-decode client response") from None
        if text == CANCEL:
            # RFC 4954 section 4: the server MUST reject the AUTH command with 501. The client's choice, not
            # an error: it does not count towards max_errors.
            raise _ErrorReply(501, "5.0.0", "Authentication cancelled", counts=False)
        response = decode_response(text)
        if response is None:
            raise _ErrorReply(501, "5.5.2", "Cannot Base64-decode client response")
        self._sasl_result(mechanism, mechanism.step(response))

    def _sasl_result(self, mechanism: SaslMechanism, result: SaslStep) -> None:
        if isinstance(result, Challenge):
            self._sasl = mechanism
            # RFC 4954 section 4: "334" SP base64; no enhanced status code (3xx has none, RFC 3463).
            self._reply(334, None, encode_challenge(result.data))
        elif isinstance(result, Credentials):
            self._decide(Authenticate(mechanism.name, result))
        elif isinstance(result, NeedScramSecret) and isinstance(mechanism, ScramMechanism):
            self._scram = mechanism
            self._decide(ScramSecretNeeded(result.authcid))
        elif isinstance(result, ScramOutcome):
            name = ScramPlusMechanism.name if getattr(mechanism, "plus", False) else mechanism.name
            self._decide(Authenticate(name, None, result))
        else:
            # RFC 4422 section 3.6: a malformed exchange fails like bad credentials.
            reason = result.reason if isinstance(result, SaslFailure) else "unexpected exchange"
            raise _ErrorReply(535, "5.7.8", f"Authentication failed: {reason}")

    def _scram_mechanisms(self) -> tuple[str, ...]:
        """SCRAM-SHA-256, and -PLUS where the connection can bind (decision 0068), where AUTH is offered."""
        if not self._settings.auth_mechanisms:
            return ()
        return scram.offered(self._channel_binding())

    def scram_secret(self, secret: ScramSecret) -> None:
        """The secret a ScramSecretNeeded asked for: the exchange goes on with the server-first message."""
        if self._closed:
            return
        if not isinstance(self._pending, ScramSecretNeeded) or self._scram is None:
            raise SmtpUsageError("no SCRAM exchange is waiting for a secret")
        self._pending = None
        mechanism, self._scram = self._scram, None
        try:
            self._sasl_result(mechanism, mechanism.with_secret(secret))
        except _ErrorReply as reply:
            self._send_error(reply)

    # ---------------------------------------------------------------------------------------- decisions

    def _take_pending(self) -> _Decision:
        event = self._pending
        if not isinstance(event, _ANSWERABLE):
            raise SmtpUsageError("no accept()/reject() decision is pending")
        self._pending = None
        return event

    def _accept_hello(self, event: Hello, text: str | None) -> None:
        # RFC 5321 section 4.1.4: an accepted EHLO later in the session resets the state as RSET would.
        had_transaction = self._mail_from is not None
        if self._message_open:
            self._events.append(MessageAborted("transaction reset by HELO/EHLO"))
        self._clear_transaction()
        if had_transaction:
            self._events.append(Reset())
        self._helo = event.name
        self._extended = event.extended
        first = self._settings.hostname + (f" {text}" if text else "")
        if not event.extended:
            self._reply(250, None, first)
            return
        settings = self._settings
        lines = [first, "PIPELINING", f"SIZE {settings.max_message_size}", "8BITMIME", "SMTPUTF8"]
        lines.append("ENHANCEDSTATUSCODES")
        if settings.dsn:
            lines.append("DSN")
        if settings.starttls_available and not self._tls_active:
            lines.append("STARTTLS")  # RFC 3207 section 4.2: not offered again after the handshake
        if settings.chunking:
            lines.append("CHUNKING")
        if self._tls_active:
            lines.append("REQUIRETLS")  # RFC 8689 section 2
        if self.auth_available:
            # Not before TLS when TLS is required: a client must not be invited to send a password in clear.
            lines.append("AUTH " + " ".join((*self._scram_mechanisms(), *settings.auth_mechanisms)))
        self._reply(250, None, "\n".join(lines))

    # ------------------------------------------------------------------------------------------ messages

    def _open_message(self) -> None:
        self._message_open = True
        self._message_size = 0
        self._oversize = False
        self._pending_cr = False
        self._events.append(MessageStart())

    def _add_message_data(self, data: bytes) -> None:
        """Emit message octets up to max_message_size; past it keep counting but emit nothing."""
        if not data or self._oversize:
            return
        allowed = self._settings.max_message_size - self._message_size
        if len(data) > allowed:
            # Emit exactly the allowed prefix so that the events do not depend on how input was split.
            self._oversize = True
            data = data[:allowed]
        if data:
            self._events.append(MessageData(data))
            self._message_size += len(data)

    def _finish_message(self) -> None:
        self._message_open = False
        if self._oversize:
            self._events.append(MessageAborted("message exceeds the maximum size"))
            self._clear_transaction()
            # RFC 1870 section 6.2 / RFC 5321 section 4.5.3.1.9
            self._reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
            return
        self._decide(MessageComplete(self._message_size))

    def _clear_transaction(self) -> None:
        self._mail_from = None
        self._mail_params = {}
        self._smtputf8 = False
        self._recipients = []
        self._bdat_used = False
        self._message_open = False
        self._message_size = 0
        self._oversize = False
        self._pending_cr = False

    # ------------------------------------------------------------------------------------------- replies

    def _reply(self, code: int, enhanced: str | None, text: str) -> None:
        """Queue a reply; "\n" in `text` separates the lines of a multi-line reply. Each line is made a valid
        RFC 5321 reply line whatever `text` holds (it may quote the client): see `reply_text`."""
        lines = text.split("\n")
        prefix = f"{enhanced} " if enhanced else ""
        room = MAX_REPLY_LINE - len("250 \r\n") - len(prefix)
        for index, line in enumerate(lines):
            sep = " " if index == len(lines) - 1 else "-"
            body = f"{prefix}{reply_text(line, room)}".rstrip(" ")
            self._out += f"{code}{sep}{body}\r\n".encode("ascii")

    def _send_error(self, error: _ErrorReply) -> None:
        self._reply(error.code, error.enhanced, error.text)
        if error.counts and self._count_error():
            self._shutdown(421, "4.7.0", "Too many errors, closing connection")

    def _shutdown(self, code: int, enhanced: str, text: str) -> None:
        if self._message_open:
            self._events.append(MessageAborted("connection closing"))
        self._reply(code, enhanced, f"{self._settings.hostname} {text}")
        self._close()

    def _close(self) -> None:
        super()._close()
        self._sasl = None
        self._clear_transaction()


# ------------------------------------------------------------------------------------ parameter values


def parse_mail_auth(value: str) -> str | None:
    """The AUTH parameter of MAIL (RFC 4954 section 5): None for "<>" (no authenticated submitter), else the
    decoded mailbox. ValueError when malformed.

    RFC 4954 section 5: a server that does not trust the client (not authenticated, or not trusted to
    vouch for the submitter) must act as if AUTH=<> had been given.
    """
    if value == "<>":
        return None
    mailbox = decode_xtext(value)
    if not mailbox.strip(" ") or disallowed_character(mailbox) is not None:
        raise ValueError("AUTH mailbox must be non-empty, without control or invisible characters")
    return mailbox


def parse_notify(value: str) -> frozenset[str]:
    """The NOTIFY parameter of RCPT (RFC 3461 section 4.1): "NEVER" alone, or one or more of SUCCESS, FAILURE
    and DELAY separated by commas, case-insensitive. Returns the upper-case keywords (frozenset({"NEVER"})
    for NEVER). ValueError when malformed."""
    keywords = value.upper().split(",")
    found = frozenset(keywords)
    if found == {"NEVER"} and len(keywords) == 1:
        return found
    if not found <= _NOTIFY_KEYWORDS:
        raise ValueError("NOTIFY is NEVER or a list of SUCCESS, FAILURE and DELAY")
    return found


def parse_orcpt(value: str) -> tuple[str, str]:
    """The ORCPT parameter of RCPT (RFC 3461 section 4.2): addr-type ";" xtext. Returns the addr-type as sent
    (compare it case-insensitively: "rfc822", "utf-8") and the decoded address. ValueError when malformed.

    - The address must be printable US-ASCII (RFC 3461 section 4.2), except for the "utf-8" addr-type
      (RFC 6533 section 3): there it is utf-8-addr-xtext or, in an SMTPUTF8 transaction, utf-8-addr-unitext:
      any character but "+", "=", "\\", space and controls, and "\\x{HEX}" for the others, decoded here.
    - No control or invisible character survives decoding (`smtp.address.disallowed_character`: the value is
      destined for a DSN header field).
    """
    addr_type, semicolon, encoded = value.partition(";")
    if not semicolon or not _ATOM.fullmatch(addr_type) or not encoded:
        raise ValueError("ORCPT is addr-type;xtext")
    if addr_type.lower() == "utf-8":
        address = _decode_utf8_addr(encoded)
    else:
        address = decode_xtext(encoded)
        if not address.isascii():
            raise ValueError("ORCPT address must be US-ASCII")
    if not address.strip(" ") or disallowed_character(address) is not None:
        raise ValueError("ORCPT address must be printable")  # it goes into DSN fields (decision 0025)
    return addr_type, address


def _decode_utf8_addr(encoded: str) -> str:
    """utf-8-addr-xtext / utf-8-addr-unitext (RFC 6533 section 3): QCHAR, non-ASCII characters (the core
    lets them through only in SMTPUTF8 transactions) and EmbeddedUnicodeChar "\\x{HEX}"."""
    out: list[str] = []
    pos = 0
    for match in _EMBEDDED_UNICODE.finditer(encoded):
        out.append(_check_unitext(encoded[pos : match.start()]))
        code = int(match.group(1), 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise ValueError("invalid code point in ORCPT")
        out.append(chr(code))
        pos = match.end()
    out.append(_check_unitext(encoded[pos:]))
    return "".join(out)


def _check_unitext(text: str) -> str:
    for ch in text:
        if ch == "\\" or not (is_xchar(ch) or ord(ch) > 0x7F):
            raise ValueError("invalid character in utf-8 ORCPT")
    return text


def _parse_envid(value: str) -> str:
    """ENVID (RFC 3461 section 4.4): xtext of printable US-ASCII, at most ENVID_MAX_CHARS when decoded."""
    envid = decode_xtext(value)
    if not envid or len(envid) > ENVID_MAX_CHARS or not all(0x20 <= ord(ch) <= 0x7E for ch in envid):
        raise ValueError("ENVID must be 1 to 100 printable US-ASCII characters")
    return envid


_DISALLOWED = "a control, invisible, private-use or unassigned character"


def _code_point(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def _valid(parse: Callable[[str], object], value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


def _crlf_line_ends(data: bytes | bytearray) -> bytes:
    """Every CRLF, lone CR and bare LF becomes one CRLF (docs/decisions/0004-smtp-line-policy.md).

    After the first replace each CRLF pair is one LF and every remaining CR is a lone CR; so after the second
    every line end, whatever its kind, is exactly one LF. Three C-speed passes, no per-line Python work.
    """
    return bytes(data).replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def reply_text(text: str, limit: int = MAX_REPLY_LINE) -> str:
    """`text` as one line of reply text (RFC 5321 section 4.2 textstring): printable US-ASCII and space kept;
    every other character (controls, CR, LF, DEL, anything non-ASCII) written as "\\x{HEX}", the notation of
    RFC 6533 section 3, so client octets quoted in a reply can neither end the line nor inject one, and a
    reply is ASCII even in an SMTPUTF8 session. Longer than `limit` characters: cut, ending in "...".
    Never raises."""
    if text.isascii() and text.isprintable() and len(text) <= limit:
        return text
    out: list[str] = []
    size = 0
    for ch in text:
        piece = ch if " " <= ch <= "~" else f"\\x{{{ord(ch):X}}}"
        if size + len(piece) > limit - 3:
            out.append("...")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def _check_error_reply(code: int, enhanced: str) -> None:
    """The glue's reply code and enhanced status code (constants in its code: a mismatch is a bug there). The
    text needs no check: `_reply` makes any text safe."""
    if not 400 <= code <= 599:
        raise ValueError(f"reply code {code} is not a 4xx/5xx error")
    match = _ENHANCED.fullmatch(enhanced)
    if match is None or int(match.group(1)) != code // 100:
        raise ValueError(f"enhanced status {enhanced!r} does not match reply code {code} (RFC 3463)")
