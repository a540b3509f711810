"""ManageSieve (RFC 5804), the protocol core, sans-IO: bytes in, events, bytes out (`net.lineproto`).

What it implements
- Commands (section 2): AUTHENTICATE, STARTTLS, LOGOUT, CAPABILITY, HAVESPACE, PUTSCRIPT, LISTSCRIPTS,
  SETACTIVE, GETSCRIPT, DELETESCRIPT, RENAMESCRIPT, CHECKSCRIPT, NOOP, UNAUTHENTICATE. Names are
  case-insensitive atoms; arguments are strings, quoted (at most MAX_QUOTED octets, with \\" and \\\\) or
  literals, and numbers (section 4). Literals from the client are "{n+}" (non-synchronising, what section 4
  defines for clients) or "{n}" (taken the same way: the server never sends a continuation); one literal
  holds at most `max_literal` octets, and a larger one is read to its end and thrown away, then refused
  (NO (QUOTA/MAXSIZE) for a script), so memory stays bounded whatever the client announces.
- Responses (section 1.3): OK, NO and BYE with a response code and a human-readable string; strings are sent
  quoted when they can be, else as literals "{n}". The capability list (section 1.7) is sent as the
  greeting, for CAPABILITY, and again after STARTTLS (section 2.2). SASL is listed only where a login may be
  made (over TLS, or with `[auth] allow_plaintext_auth`): elsewhere AUTHENTICATE answers NO
  (ENCRYPT-NEEDED). OWNER is listed after login.
- AUTHENTICATE (section 2.1): PLAIN, LOGIN, SCRAM-SHA-256 and -PLUS (`postoffice.auth`): challenges are
  strings of base64, the client answers with a string (quoted or literal) of base64, "*" cancels. SCRAM's
  server-final message goes in the success response, "OK (SASL "...")" (additional data with success,
  RFC 4422 section 3.6). Credentials are judged by the glue (`Login`, `ScramSecretNeeded`).
- STARTTLS: the "go ahead" OK, then the upgrade (`lineproto` drops what came after the command:
  CVE-2011-0411); afterwards the capabilities again.
- Scripts: PUTSCRIPT and CHECKSCRIPT check the script here (`sieve.stage.compile_script`: the same
  compiler that runs it at delivery) and answer NO with the line and column of each error; the glue
  stores and reads (`ScriptRequest`). Script names (section 1.6): UTF-8 without control characters
  (U+0000-001F, U+007F-009F, U+2028, U+2029), at most MAX_NAME_OCTETS octets, not empty.
- Errors: an unknown command or bad arguments answer NO; after `max_errors` of them the session ends with
  BYE. Nothing the peer sends raises.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from postoffice.auth import scram
from postoffice.auth.sasl import (
    Challenge,
    Credentials,
    NeedScramSecret,
    SaslMechanism,
    SaslStep,
    ScramOutcome,
    create_mechanism,
    decode_response,
    encode_challenge,
)
from postoffice.auth.scram import ScramMechanism, ScramPlusMechanism, ScramSecret
from postoffice.net.lineproto import LineProtocol, LineUsageError, TlsUpgrade
from postoffice.sieve.checker import SCRIPT_NAME_FORBIDDEN
from postoffice.sieve.grammar import SieveSyntaxError

#: Compile errors a PUTSCRIPT or CHECKSCRIPT answer lists at most.
MAX_REPORTED_ERRORS = 20
#: Longest command line fragment (the octets between literals), line end included.
MAX_LINE = 8192
#: Longest quoted string from the client (RFC 5804 section 4: a quoted string holds at most 1024 octets).
MAX_QUOTED = 1024
#: Longest script name.
MAX_NAME_OCTETS = 512
#: Arguments of one command at most.
MAX_ARGUMENTS = 8

_LITERAL = re.compile(rb"\{([0-9]{1,10})(\+?)\}$")
_TAIL = 32  # octets kept of a line too long to read: a literal announced at its end fits
_ATOM = re.compile(rb"[A-Za-z0-9_.-]+")
_CRLF = b"\r\n"


class ManageSieveUsageError(LineUsageError):
    """The glue answered a decision that was not pending."""


# -- events ---------------------------------------------------------------------------------------------


class Event:
    __slots__ = ()


@dataclass(frozen=True)
class Login(Event):
    """Judge these credentials (`Authenticator`), then call `login_result`."""

    username: str
    password: str
    mechanism: str
    credentials: Credentials | None = None
    scram: ScramOutcome | None = None


@dataclass(frozen=True)
class ScramSecretNeeded(Event):
    """Look up the SCRAM secret of `username` (`Authenticator.scram_secret`) and call `scram_secret`."""

    username: str


@dataclass(frozen=True)
class StartTls(Event, TlsUpgrade):
    """Upgrade the connection (the OK is queued), then call `tls_started`."""


@dataclass(frozen=True)
class ScriptRequest(Event):
    """A command on the account's scripts; the glue answers with `answer_*`. `command` is the upper-case
    name; `names` its script names; `script` the (checked) text of PUTSCRIPT; `size` HAVESPACE's."""

    command: str
    names: tuple[str, ...] = ()
    script: str = ""
    size: int = 0


@dataclass(frozen=True)
class Logout(Event):
    """LOGOUT: the answer is queued and the core is closed."""


@dataclass(frozen=True)
class Unauthenticated(Event):
    """UNAUTHENTICATE: the session is back in the non-authenticated state (the glue forgets the account)."""


@dataclass(frozen=True)
class ConnectionClosed(Event):
    """The peer closed the connection."""


@dataclass(frozen=True)
class ManageSieveSettings:
    hostname: str
    implementation: str
    sieve_extensions: tuple[str, ...]
    max_errors: int = 20
    starttls_available: bool = False
    plaintext_auth_allowed: bool = False
    max_script_size: int = 262144
    max_redirects: int = 4
    sasl_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")


# -- wire helpers ---------------------------------------------------------------------------------------


def quoted_or_literal(text: str | bytes) -> bytes:
    """A string for the wire (section 4): quoted when it is short and has no CR, LF or NUL, else a literal."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    if len(data) <= MAX_QUOTED and not any(c in data for c in b"\r\n\x00"):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a script name (section 1.6), None when it can."""
    if not name:
        return "a script name cannot be empty"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_OCTETS:
        return f"a script name has at most {MAX_NAME_OCTETS} octets"
    if SCRIPT_NAME_FORBIDDEN.search(name):
        return "a script name cannot hold control characters"
    return None


class _Atom(bytes):
    """An atom argument (a number, or a word that is no string)."""


class _TooLong(bytes):
    """A literal longer than a command may send: read to its end, its octets thrown away."""


_E = TypeVar("_E", Login, ScramSecretNeeded, ScriptRequest)


class _Refusal(Exception):
    """A command is answered NO (`code` is the response code without parentheses)."""

    def __init__(self, text: str, code: str = "", *, counts: bool = True) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.counts = counts


# -- the core -------------------------------------------------------------------------------------------


class ManageSieveProtocol(LineProtocol[Event]):
    """One ManageSieve session's protocol state (see the module docstring)."""

    _usage_error: ClassVar[type[LineUsageError]] = ManageSieveUsageError

    def __init__(
        self,
        settings: ManageSieveSettings,
        *,
        tls_active: bool = False,
        channel_binding: Callable[[], bytes | None] = lambda: None,
    ) -> None:
        super().__init__(max_errors=settings.max_errors, tls_active=tls_active)
        self._settings = settings
        self._binding = channel_binding
        self.account: str | None = None  # the login name, once authenticated
        self._args: list[str | bytes] = []  # the command being read: its tokens so far
        self._literal: int | None = None  # octets of the literal being read
        self._literal_data = bytearray()
        self._literal_too_long = False
        self._failed: _Refusal | None = None  # the command being read is refused: its rest is skipped
        self._discarding = False  # in a line longer than MAX_LINE
        self._tail = b""  # the last octets of that line
        self._sasl: SaslMechanism | None = None  # waiting for the client's response to a challenge
        self._scram: ScramMechanism | None = None  # waiting for the glue's secret
        self._scram_final: bytes | None = None  # SCRAM's server-final message, for the OK

    # -- public API -------------------------------------------------------------------------------------

    def greeting(self) -> None:
        self._capabilities()
        self._ok(f"{self._settings.hostname} ManageSieve ready.")

    def close(self, text: str = "", code: str = "") -> None:
        """The server ends the session: BYE with `text` (none when empty), and nothing more."""
        if self._closed:
            return
        if text:
            self._response(b"BYE", text, code)
        self._close()

    # -- decisions --------------------------------------------------------------------------------------

    def login_result(self, ok: bool, reason: str = "", code: str = "") -> None:
        """Answer the pending Login: OK (with SCRAM's final message) or NO."""
        event = self._take_pending(Login)
        final, self._scram_final = self._scram_final, None
        if ok:
            self.account = event.username
            extra = f'SASL "{base64.b64encode(final).decode()}"' if final is not None else ""
            self._ok("Logged in.", extra)
        else:
            self._no(reason or "Authentication failed.", code)
            self._counted()

    def scram_secret(self, secret: ScramSecret) -> None:
        """The secret asked for: the exchange goes on."""
        self._take_pending(ScramSecretNeeded)
        mechanism, self._scram = self._scram, None
        if mechanism is None:
            raise ManageSieveUsageError("no SCRAM exchange waits for a secret")
        self._sasl_step(mechanism, mechanism.with_secret(secret))

    def answer_ok(self, text: str = "Done.", code: str = "") -> None:
        """The pending ScriptRequest succeeded."""
        self._take_pending(ScriptRequest)
        self._ok(text, code)

    def answer_no(self, text: str, code: str = "") -> None:
        """The pending ScriptRequest failed (no error count: the client asked for something that is not)."""
        self._take_pending(ScriptRequest)
        self._no(text, code)

    def answer_list(self, scripts: list[tuple[str, bool]]) -> None:
        """LISTSCRIPTS: each (name, active), then OK."""
        self._take_pending(ScriptRequest)
        for name, active in scripts:
            self._out += quoted_or_literal(name) + (b" ACTIVE" if active else b"") + _CRLF
        self._ok("Listscripts completed.")

    def answer_script(self, text: str) -> None:
        """GETSCRIPT: the script as a literal, then OK."""
        self._take_pending(ScriptRequest)
        data = text.encode("utf-8", "surrogatepass")
        self._out += b"{%d}\r\n" % len(data) + data + _CRLF
        self._ok("Getscript completed.")

    # -- parsing ----------------------------------------------------------------------------------------

    def _line_limit(self) -> int:
        return MAX_LINE

    def _peer_closed(self) -> None:
        self._events.append(ConnectionClosed())
        self._close()

    def _tls_reset(self) -> None:
        self._args.clear()
        self._literal = None
        self._literal_data.clear()
        self._sasl = None
        self._capabilities()  # section 2.2: the capabilities again, then OK
        self._ok("TLS negotiation successful.")

    def _step(self) -> bool:
        if self._literal is not None:
            return self._read_literal()
        line, too_long = self._line()
        if line is None:
            return False
        if too_long and self._failed is None:  # only its end is kept: whether a literal follows
            self._failed = _Refusal("Line too long.")
        complete = False
        if self._failed is None:
            try:
                complete = self._tokens(line)
            except _Refusal as refused:
                self._failed = refused
        if self._failed is not None:
            # the rest of a refused command is skipped, its literals too (read and thrown away), so that
            # its octets are not taken for commands; then the one answer
            tail = _LITERAL.search(line)
            if tail is not None:
                self._literal, self._literal_too_long = int(tail.group(1)), True
                return True
            refusal, self._failed = self._failed, None
            self._args.clear()
            self._sasl = None  # a refused response ends an AUTHENTICATE (RFC 5804 section 2.1)
            self._refuse(refusal)
            return True
        if complete:
            args, self._args = self._args, []
            self._dispatch(args)
        return True

    def _line(self) -> tuple[bytes | None, bool]:
        """The next line fragment without its line end, and whether it was longer than MAX_LINE (then only
        its last octets are given: enough to see a literal announced at its end); None: not complete yet."""
        buf = self._buffer
        if self._discarding:
            end = buf.find(b"\n")
            if end < 0:
                self._tail = (self._tail + bytes(buf[-_TAIL:]))[-_TAIL:]
                buf.clear()
                return None, False
            self._tail = (self._tail + bytes(buf[max(0, end - _TAIL) : end]))[-_TAIL:]
            del buf[: end + 1]
            self._discarding = False
            return self._tail.removesuffix(b"\r"), True
        end = buf.find(b"\n", 0, MAX_LINE)
        if end < 0:
            if len(buf) < MAX_LINE:
                return None, False
            self._discarding, self._tail = True, b""
            return self._line()
        line = bytes(buf[:end])
        del buf[: end + 1]
        return line.removesuffix(b"\r"), False

    def _read_literal(self) -> bool:
        buf = self._buffer
        if not buf or self._literal is None:
            return False
        take = min(self._literal, len(buf))
        if not self._literal_too_long:
            self._literal_data += buf[:take]
        del buf[:take]
        self._literal -= take
        if self._literal:
            return True
        self._literal = None
        self._args.append(bytes(self._literal_data) if not self._literal_too_long else _TooLong())
        self._literal_data.clear()
        return True

    def _tokens(self, line: bytes) -> bool:
        """Add the tokens of one line fragment to the command; True when the command is complete (no literal
        follows)."""
        i, n = 0, len(line)
        args = self._args
        while i < n:
            if line[i] == 0x20:
                i += 1
                continue
            if len(args) > MAX_ARGUMENTS:
                raise _Refusal("Too many arguments.")
            c = line[i]
            if c == 0x22:  # a quoted string
                j, out = i + 1, bytearray()
                while j < n and line[j] != 0x22:
                    if line[j] == 0x5C and j + 1 < n and line[j + 1] in (0x22, 0x5C):
                        j += 1
                    elif line[j] == 0x5C:
                        raise _Refusal("Invalid escape in a quoted string.")
                    out.append(line[j])
                    j += 1
                if j >= n:
                    raise _Refusal("Unterminated quoted string.")
                if len(out) > MAX_QUOTED:
                    raise _Refusal("Quoted string too long; send a literal.")
                args.append(bytes(out))
                i = j + 1
                continue
            if c == 0x7B:  # "{": a literal, which must end the fragment
                match = _LITERAL.match(line, i)
                if match is None or match.end() != n:
                    raise _Refusal("Invalid literal.")
                size = int(match.group(1))
                limit = max(self._settings.max_script_size, MAX_LINE)
                self._literal_too_long = size > limit
                self._literal = size
                if size == 0:
                    self._literal = None
                    args.append(b"")
                    return False  # the rest of the command is on the next line
                return False
            match = _ATOM.match(line, i)
            if match is None:
                raise _Refusal("Syntax error.")
            args.append(match.group().decode("ascii").upper() if not args else _Atom(match.group()))
            i = match.end()
        return True

    # -- commands ---------------------------------------------------------------------------------------

    def _dispatch(self, args: list[str | bytes]) -> None:
        try:
            if self._sasl is not None:
                self._sasl_response(args)
                return
            if not args:
                raise _Refusal("Empty command.")
            name = args[0]
            if not isinstance(name, str):
                raise _Refusal("A command starts with its name.")
            handler = getattr(self, "_cmd_" + name.lower(), None)
            if handler is None or name not in _COMMANDS:
                raise _Refusal("Unknown command.")
            authenticated = self.account is not None
            if name in _NOT_AUTHENTICATED and authenticated:
                raise _Refusal("Already authenticated.")
            if name in _AUTHENTICATED and not authenticated:
                raise _Refusal("Authenticate first.")
            handler(args[1:])
        except _Refusal as refusal:
            self._refuse(refusal)

    def _cmd_capability(self, args: list[str | bytes]) -> None:
        self._no_args(args, "CAPABILITY")
        self._capabilities()
        self._ok("Capability completed.")

    def _cmd_logout(self, args: list[str | bytes]) -> None:
        self._no_args(args, "LOGOUT")
        self._ok("Logout completed.")
        self._events.append(Logout())
        self._close()

    def _cmd_noop(self, args: list[str | bytes]) -> None:
        if len(args) > 1:
            raise _Refusal("Syntax: NOOP [tag]")
        if args:
            tag = _string(args[0])
            self._out += b"OK (TAG " + quoted_or_literal(tag) + b') "Done."' + _CRLF
            return
        self._ok("Done.")

    def _cmd_starttls(self, args: list[str | bytes]) -> None:
        self._no_args(args, "STARTTLS")
        if self._tls_active or not self._settings.starttls_available:
            raise _Refusal("TLS is not available here." if not self._tls_active else "TLS is active already.")
        self._ok("Begin TLS negotiation now.")
        self._begin_tls(StartTls())

    def _cmd_authenticate(self, args: list[str | bytes]) -> None:
        if not 1 <= len(args) <= 2:
            raise _Refusal('Syntax: AUTHENTICATE "mechanism" ["initial response"]')
        if not self._auth_permitted():
            raise _Refusal("Use STARTTLS first.", "ENCRYPT-NEEDED")
        name = _string(args[0]).upper()
        mechanism: SaslMechanism | None = scram.create(name, self._binding())
        if mechanism is None and name in self._settings.sasl_mechanisms:
            mechanism = create_mechanism(name)
        if mechanism is None:
            raise _Refusal("Unsupported authentication mechanism.")
        initial: bytes | None = None
        if len(args) == 2:
            initial = decode_response(_string(args[1]))
            if initial is None:
                raise _Refusal("Invalid base64 in the initial response.")
        self._sasl_step(mechanism, mechanism.start(initial))

    def _cmd_unauthenticate(self, args: list[str | bytes]) -> None:
        self._no_args(args, "UNAUTHENTICATE")
        self.account = None
        self._events.append(Unauthenticated())
        self._ok("Unauthenticate completed.")

    def _cmd_havespace(self, args: list[str | bytes]) -> None:
        if len(args) != 2 or not isinstance(args[1], _Atom) or not args[1].isdigit() or len(args[1]) > 10:
            raise _Refusal("Syntax: HAVESPACE name size")  # section 4: a number is 32 bits at most
        name, size = self._name(args[0]), int(args[1])
        if size > self._settings.max_script_size:
            self._no("The script is larger than a script may be.", "QUOTA/MAXSIZE")
            return
        self._decide(ScriptRequest("HAVESPACE", (name,), size=size))

    def _cmd_putscript(self, args: list[str | bytes]) -> None:
        if len(args) != 2:
            raise _Refusal("Syntax: PUTSCRIPT name script")
        name = self._name(args[0])
        text = self._script(args[1])
        self._decide(ScriptRequest("PUTSCRIPT", (name,), script=text))

    def _cmd_checkscript(self, args: list[str | bytes]) -> None:
        if len(args) != 1:
            raise _Refusal("Syntax: CHECKSCRIPT script")
        self._script(args[0])
        self._ok("The script is valid.")

    def _cmd_listscripts(self, args: list[str | bytes]) -> None:
        self._no_args(args, "LISTSCRIPTS")
        self._decide(ScriptRequest("LISTSCRIPTS"))

    def _cmd_setactive(self, args: list[str | bytes]) -> None:
        if len(args) != 1:
            raise _Refusal("Syntax: SETACTIVE name")
        name = _string(args[0])  # "" deactivates (section 2.8)
        self._decide(ScriptRequest("SETACTIVE", (self._name(args[0]) if name else "",)))

    def _cmd_getscript(self, args: list[str | bytes]) -> None:
        if len(args) != 1:
            raise _Refusal("Syntax: GETSCRIPT name")
        self._decide(ScriptRequest("GETSCRIPT", (self._name(args[0]),)))

    def _cmd_deletescript(self, args: list[str | bytes]) -> None:
        if len(args) != 1:
            raise _Refusal("Syntax: DELETESCRIPT name")
        self._decide(ScriptRequest("DELETESCRIPT", (self._name(args[0]),)))

    def _cmd_renamescript(self, args: list[str | bytes]) -> None:
        if len(args) != 2:
            raise _Refusal("Syntax: RENAMESCRIPT old new")
        self._decide(ScriptRequest("RENAMESCRIPT", (self._name(args[0]), self._name(args[1]))))

    # -- SASL -------------------------------------------------------------------------------------------

    def _sasl_response(self, args: list[str | bytes]) -> None:
        mechanism, self._sasl = self._sasl, None
        if mechanism is None:
            raise _Refusal("No authentication is in progress.")
        if len(args) != 1 or isinstance(args[0], (str, _Atom)):
            raise _Refusal("Authentication aborted: a response is one string.")
        text = _string(args[0])
        if text == "*":  # section 2.1: the client cancels
            raise _Refusal("Authentication cancelled.", counts=False)
        response = decode_response(text) if text else b""
        if response is None:
            raise _Refusal("Invalid base64, authentication aborted.")
        self._sasl_step(mechanism, mechanism.step(response))

    def _sasl_step(self, mechanism: SaslMechanism, result: SaslStep) -> None:
        if isinstance(result, Challenge):
            if isinstance(mechanism, ScramMechanism) and result.data.startswith(b"v="):
                # the server-final message: it goes with the OK (section 2.1; RFC 4422 section 3.6)
                self._scram_final = result.data
                self._sasl_step(mechanism, mechanism.step(b""))
                return
            self._sasl = mechanism
            self._out += quoted_or_literal(encode_challenge(result.data)) + _CRLF
            return
        if isinstance(result, NeedScramSecret) and isinstance(mechanism, ScramMechanism):
            self._scram = mechanism
            self._decide(ScramSecretNeeded(result.authcid))
            return
        if isinstance(result, ScramOutcome):
            plus = isinstance(mechanism, ScramMechanism) and mechanism.plus
            name = ScramPlusMechanism.name if plus else mechanism.name
            self._decide(Login(result.authcid, "", name, scram=result))
            return
        if isinstance(result, Credentials):
            self._decide(Login(result.authcid, result.password, mechanism.name, result))
            return
        self._scram_final = None
        reason = result.reason if not isinstance(result, NeedScramSecret) else "unexpected exchange"
        raise _Refusal(f"Authentication failed: {reason}.")

    def _auth_permitted(self) -> bool:
        return self._tls_active or self._settings.plaintext_auth_allowed

    # -- helpers ----------------------------------------------------------------------------------------

    def _capabilities(self) -> None:
        s = self._settings
        mechanisms = (
            " ".join((*scram.offered(self._binding()), *s.sasl_mechanisms)) if self._auth_permitted() else ""
        )
        lines: list[tuple[str, str | None]] = [
            ("IMPLEMENTATION", s.implementation),
            ("SIEVE", " ".join(s.sieve_extensions)),
            ("SASL", mechanisms),
            ("VERSION", "1.0"),
            ("MAXREDIRECTS", str(s.max_redirects)),
        ]
        if s.starttls_available and not self._tls_active:
            lines.append(("STARTTLS", None))
        if self.account is not None:
            lines.append(("OWNER", self.account))
        lines.append(("UNAUTHENTICATE", None))
        for key, value in lines:
            self._out += quoted_or_literal(key)
            if value is not None:
                self._out += b" " + quoted_or_literal(value)
            self._out += _CRLF

    def _script(self, arg: str | bytes) -> str:
        if isinstance(arg, _TooLong):
            raise _Refusal("The script is larger than a script may be.", "QUOTA/MAXSIZE", counts=False)
        if isinstance(arg, (str, _Atom)):
            raise _Refusal("A script is a string.")
        from postoffice.sieve.stage import compile_script  # the compiler, loaded when a script is checked

        try:
            text = arg.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refusal("The script is not UTF-8.", counts=False) from None
        if len(arg) > self._settings.max_script_size:
            raise _Refusal("The script is larger than a script may be.", "QUOTA/MAXSIZE", counts=False)
        try:
            compile_script(text)
        except SieveSyntaxError as exc:  # every error the check found, one per line (a literal then)
            found = getattr(exc, "errors", ()) or (exc,)
            raise _Refusal(
                "\r\n".join(str(error) for error in found[:MAX_REPORTED_ERRORS]), counts=False
            ) from None
        return text

    def _name(self, arg: str | bytes) -> str:
        name = _string(arg)
        problem = name_problem(name)
        if problem is not None:
            raise _Refusal(problem[0].upper() + problem[1:] + ".")
        return name

    @staticmethod
    def _no_args(args: list[str | bytes], name: str) -> None:
        if args:
            raise _Refusal(f"{name} takes no arguments.")

    def _take_pending(self, kind: type[_E]) -> _E:
        event = self._pending
        if not isinstance(event, kind):
            raise ManageSieveUsageError(f"no {kind.__name__} is pending")
        self._pending = None
        return event

    def _response(self, word: bytes, text: str, code: str = "") -> None:
        line = word
        if code:
            line += b" (" + code.encode("utf-8") + b")"
        if text:
            line += b" " + quoted_or_literal(text)
        self._out += line + _CRLF

    def _ok(self, text: str, code: str = "") -> None:
        self._response(b"OK", text, code)

    def _no(self, text: str, code: str = "") -> None:
        self._response(b"NO", text, code)

    def _refuse(self, refusal: _Refusal) -> None:
        self._no(refusal.text, refusal.code)
        if refusal.counts:
            self._counted()

    def _counted(self) -> None:
        if self._count_error():
            self._response(b"BYE", "Too many errors.")
            self._close()


_NOT_AUTHENTICATED = frozenset({"AUTHENTICATE", "STARTTLS"})
_AUTHENTICATED = frozenset(
    {
        "HAVESPACE",
        "PUTSCRIPT",
        "CHECKSCRIPT",
        "LISTSCRIPTS",
        "SETACTIVE",
        "GETSCRIPT",
        "DELETESCRIPT",
        "RENAMESCRIPT",
        "UNAUTHENTICATE",
    }
)
_COMMANDS = _NOT_AUTHENTICATED | _AUTHENTICATED | {"CAPABILITY", "LOGOUT", "NOOP"}


def _string(arg: str | bytes) -> str:
    """A string argument as text; _Refusal for an atom or what is not UTF-8."""
    if isinstance(arg, (str, _Atom)):
        raise _Refusal("A string (quoted or literal) is needed here.")
    if isinstance(arg, _TooLong):
        raise _Refusal("String too long.")
    try:
        return arg.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refusal("Strings are UTF-8.") from None
