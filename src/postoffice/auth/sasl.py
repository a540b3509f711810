"""SASL mechanisms (RFC 4422) as sans-IO state machines: PLAIN (RFC 4616) and LOGIN
(draft-murchison-sasl-login-00).

A mechanism takes the decoded bytes of the client's responses and answers with one `SaslStep`:
`Challenge` (send this to the client and feed its next response to `step`), `Credentials` (the exchange is
complete: verify them with `postoffice.auth.Authenticator.login_sasl`) or `SaslFailure` (a malformed exchange,
to be answered like a failed authentication; RFC 4422 section 3.6).

Implementation notes
- No I/O and no wire framing here. The protocol decodes each client line with `decode_response` and sends
  each challenge as `encode_challenge(challenge.data)`; POP3 (RFC 5034 section 4), IMAP (RFC 9051 6.2.2) and
  SMTP (RFC 4954) frame them differently but all use base64 (RFC 4648 section 4). The protocol handles the
  cancel line `CANCEL` ("*", RFC 4422 section 3.5) itself.
- RFC 4422 section 4 item 3 distinguishes "no initial response" (`start(None)`) from an empty one
  (`start(b"")`, sent on the wire as "="): PLAIN answers the first with an empty challenge and treats the
  second as an empty, hence malformed, message.
- Invariants: `start` and `step` never raise, whatever bytes they are given; every path that is not
  `Challenge` ends the exchange, and any call after the end (or `step` before `start`, or a second `start`)
  answers `SaslFailure`. Fields are bounded (`MAX_FIELD_OCTETS`) and must be valid UTF-8 without NUL.
- Strings are compared as given: no SASLprep (RFC 4013) normalisation, so a password must be typed the way
  it was set. Login names are normalised later, by the authenticator.
- Adding a mechanism (SCRAM-SHA-256, RFC 7677; OAUTHBEARER, RFC 7628) means one subclass and one entry in
  `_MECHANISMS`; the protocols list `mechanism_names()` and call `create_mechanism`, so they need no change.
  A mechanism that cannot yield a plaintext password (SCRAM) will need its own verification entry point.
- Deliberately not offered: CRAM-MD5 and DIGEST-MD5 (and POP3 APOP), which need a plaintext-equivalent
  secret on the server; we keep only argon2id hashes (docs/decisions/0008-authentication.md).
"""

from __future__ import annotations

import abc
import base64
import binascii
from dataclasses import dataclass
from typing import ClassVar

#: The client's line that cancels an exchange (RFC 4422 section 3.5; RFC 5034 section 4).
CANCEL = "*"

#: Longest authzid, authcid or password accepted, in octets. RFC 4616 section 2 requires at least 255 to be
#: accepted; long passphrases and addresses fit in 1024, and anything longer is not a credential.
MAX_FIELD_OCTETS = 1024


@dataclass(frozen=True)
class Challenge:
    """Send `data` to the client (base64-encoded by the protocol; b"" is an empty challenge)."""

    data: bytes


@dataclass(frozen=True)
class Credentials:
    """The exchange is complete: these are to be verified."""

    authzid: str  # "" when the client gave none
    authcid: str  # the login name (a full address)
    password: str


@dataclass(frozen=True)
class SaslFailure:
    """The client's messages were malformed (not a wrong password); `reason` is for logs and replies."""

    reason: str


@dataclass(frozen=True)
class NeedScramSecret:
    """SCRAM (`postoffice.auth.scram`): look up the secret of `authcid` and give it to the mechanism's
    `with_secret`."""

    authcid: str
    authzid: str


@dataclass(frozen=True)
class ScramOutcome:
    """SCRAM: the exchange is over, the proof was right (`ok`) or not; the caller completes or fails the
    login (`Authenticator.scram_finish`)."""

    authcid: str
    authzid: str
    ok: bool


SaslStep = Challenge | Credentials | SaslFailure | NeedScramSecret | ScramOutcome


class SaslMechanism(abc.ABC):
    """One server-side exchange. Create a fresh instance per AUTHENTICATE/AUTH command."""

    name: ClassVar[str]

    @abc.abstractmethod
    def start(self, initial_response: bytes | None) -> SaslStep:
        """Begin; `initial_response` is None when the client sent none, b"" when it sent an empty one."""

    @abc.abstractmethod
    def step(self, response: bytes) -> SaslStep:
        """The client's (decoded) answer to the last challenge."""


_FINISHED = SaslFailure("the exchange has already finished")
_NOT_STARTED = SaslFailure("the exchange has not started")


def _text_field(data: bytes, what: str, *, allow_empty: bool = False) -> str | SaslFailure:
    if len(data) > MAX_FIELD_OCTETS:
        return SaslFailure(f"{what} is longer than {MAX_FIELD_OCTETS} octets")
    if not data and not allow_empty:
        return SaslFailure(f"{what} is empty")
    if b"\x00" in data:
        return SaslFailure(f"{what} contains NUL")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return SaslFailure(f"{what} is not valid UTF-8")


class PlainMechanism(SaslMechanism):
    """PLAIN, RFC 4616 section 2: message = [authzid] UTF8NUL authcid UTF8NUL passwd."""

    name: ClassVar[str] = "PLAIN"

    def __init__(self) -> None:
        self._state = "new"  # "new" -> ("waiting") -> "done"

    def start(self, initial_response: bytes | None) -> SaslStep:
        if self._state != "new":
            return self._finish(_FINISHED)
        if initial_response is None:
            # RFC 4422 section 5 item 2a / RFC 4616 section 2: the server sends an empty challenge.
            self._state = "waiting"
            return Challenge(b"")
        return self._finish(self._parse(initial_response))

    def step(self, response: bytes) -> SaslStep:
        if self._state != "waiting":
            return self._finish(_NOT_STARTED if self._state == "new" else _FINISHED)
        return self._finish(self._parse(response))

    def _finish(self, result: SaslStep) -> SaslStep:
        self._state = "done"
        return result

    @staticmethod
    def _parse(message: bytes) -> Credentials | SaslFailure:
        if len(message) > 3 * MAX_FIELD_OCTETS + 2:
            return SaslFailure("message too long")
        parts = message.split(b"\x00")
        if len(parts) != 3:
            return SaslFailure("message must be [authzid] NUL authcid NUL password")
        authzid = _text_field(parts[0], "authorization identity", allow_empty=True)
        if isinstance(authzid, SaslFailure):
            return authzid
        authcid = _text_field(parts[1], "authentication identity")
        if isinstance(authcid, SaslFailure):
            return authcid
        password = _text_field(parts[2], "password")
        if isinstance(password, SaslFailure):
            return password
        return Credentials(authzid=authzid, authcid=authcid, password=password)


class LoginMechanism(SaslMechanism):
    """LOGIN, draft-murchison-sasl-login-00: challenges "Username:" then "Password:"; an initial response,
    when given, is the username. Obsolete but still sent by many mail programs."""

    name: ClassVar[str] = "LOGIN"

    USERNAME_CHALLENGE: ClassVar[bytes] = b"Username:"
    PASSWORD_CHALLENGE: ClassVar[bytes] = b"Password:"

    def __init__(self) -> None:
        self._state = "new"  # "new" -> "username" -> "password" -> "done"
        self._username = ""

    def start(self, initial_response: bytes | None) -> SaslStep:
        if self._state != "new":
            return self._fail(_FINISHED)
        if initial_response is None:
            self._state = "username"
            return Challenge(self.USERNAME_CHALLENGE)
        return self._take_username(initial_response)

    def step(self, response: bytes) -> SaslStep:
        if self._state == "username":
            return self._take_username(response)
        if self._state == "password":
            password = _text_field(response, "password")
            if isinstance(password, SaslFailure):
                return self._fail(password)
            self._state = "done"
            return Credentials(authzid="", authcid=self._username, password=password)
        return self._fail(_NOT_STARTED if self._state == "new" else _FINISHED)

    def _take_username(self, data: bytes) -> SaslStep:
        username = _text_field(data, "username")
        if isinstance(username, SaslFailure):
            return self._fail(username)
        self._username = username
        self._state = "password"
        return Challenge(self.PASSWORD_CHALLENGE)

    def _fail(self, failure: SaslFailure) -> SaslFailure:
        self._state = "done"
        self._username = ""
        return failure


#: Offered mechanisms in preference order (the order protocols advertise them in).
_MECHANISMS: dict[str, type[SaslMechanism]] = {
    PlainMechanism.name: PlainMechanism,
    LoginMechanism.name: LoginMechanism,
}


def mechanism_names() -> tuple[str, ...]:
    """The mechanisms we offer, in preference order: ("PLAIN", "LOGIN")."""
    return tuple(_MECHANISMS)


def create_mechanism(name: str) -> SaslMechanism | None:
    """A fresh exchange for `name` (case-insensitive, RFC 4422 section 3.1), or None when we do not offer
    it."""
    if not name.isascii():
        return None
    cls = _MECHANISMS.get(name.upper())
    return None if cls is None else cls()


def decode_response(text: str) -> bytes | None:
    """Decode one client response line (without its CRLF): strict base64 (RFC 4648 section 4, no whitespace,
    correct padding). "=" is an empty initial response (RFC 4422 section 4) and gives b"", as does an empty
    line. None when the line is not base64. The cancel line "*" is for the caller to check first."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def encode_challenge(data: bytes) -> str:
    """A challenge for the wire: base64, "" for an empty challenge."""
    return base64.b64encode(data).decode("ascii")
