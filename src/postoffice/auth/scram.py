"""SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677; tls-exporter channel binding, RFC 9266) as a
sans-IO SASL mechanism (`postoffice.auth.sasl`), and the salted secret an account keeps for it.

The secret (`ScramSecret`) is what RFC 5802 section 3 lets a server keep instead of the password: the salt,
the iteration count, StoredKey = H(HMAC(SaltedPassword, "Client Key")) and ServerKey = HMAC(SaltedPassword,
"Server Key"). It is made wherever the password is known (a password change, a login with the password:
decision 0068) and kept beside the argon2id hash; it is not enough to log in with another mechanism.

The exchange
    start(client-first)   -> NeedScramSecret(authcid, authzid): the caller looks the secret up
                             (`Authenticator.scram_secret`, a stand-in for an unknown account) and calls
    with_secret(secret)   -> Challenge(server-first)
    step(client-final)    -> Challenge(server-final "v=...") when the proof is right,
                             else ScramOutcome(ok=False)
    step(b"")             -> ScramOutcome(ok=True): the caller completes the login
                             (`Authenticator.scram_finish`)
Every malformed message is a SaslFailure; `start` and `step` never raise.

Channel binding (RFC 5802 section 6, RFC 9266): the -PLUS mechanism is offered only on a TLS 1.3 connection
whose exporter could be read (`channel_binding` given); a client that says "y" (it could bind, and thinks the
server cannot) while the server offers -PLUS is refused, as a downgrade attack would look; "p=" with any other
type than tls-exporter, or on the plain mechanism, is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import ClassVar

from postoffice.auth.sasl import (
    MAX_FIELD_OCTETS,
    Challenge,
    NeedScramSecret,
    SaslFailure,
    SaslMechanism,
    SaslStep,
    ScramOutcome,
)
from postoffice.store.api import PASSWORD_DERIVED_SETTING

#: PBKDF2 iterations of new secrets (RFC 7677 section 4: at least 4096).
ITERATIONS = 4096
#: Octets of a new secret's salt.
SALT_OCTETS = 16
#: Octets of the server's part of the nonce (random; base64 in the message).
NONCE_OCTETS = 18
#: The account setting that holds an account's secret (the store removes it with the password it came from).
SETTING = PASSWORD_DERIVED_SETTING
#: Most iterations a stored secret may name (a bound on a corrupt or hostile store's work).
MAX_ITERATIONS = 1_000_000


@dataclass(frozen=True)
class ScramSecret:
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def encode(self) -> str:
        b64 = base64.b64encode
        fields = (self.salt, self.stored_key, self.server_key)
        return "$".join([str(self.iterations), *(b64(f).decode() for f in fields)])

    @classmethod
    def decode(cls, text: str) -> ScramSecret | None:
        """The secret `encode` wrote, or None for anything else."""
        try:
            count, salt, stored, server = text.split("$")
            iterations = int(count)
            secret = cls(
                base64.b64decode(salt, validate=True),
                iterations,
                base64.b64decode(stored, validate=True),
                base64.b64decode(server, validate=True),
            )
        except (ValueError, binascii.Error):
            return None
        if not 1 <= iterations <= MAX_ITERATIONS or {len(secret.stored_key), len(secret.server_key)} != {32}:
            return None
        return secret


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def derive_secret(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> ScramSecret:
    """The secret of `password` (RFC 5802 section 3), with a new random salt unless one is given. No SASLprep
    (decision 0008): the password's UTF-8 octets as typed."""
    salt = secrets.token_bytes(SALT_OCTETS) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    stored = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
    return ScramSecret(salt, iterations, stored, _hmac(salted, b"Server Key"))


def stand_in_secret(key: bytes, name: str) -> ScramSecret:
    """For a name without a usable secret: the same salt at every attempt (so the answer does not tell that
    the account is missing) and keys no proof matches."""
    salt = _hmac(key, b"scram salt\0" + name.encode("utf-8"))[:SALT_OCTETS]
    return ScramSecret(salt, ITERATIONS, secrets.token_bytes(32), secrets.token_bytes(32))


def _saslname(value: str) -> str | None:
    """RFC 5802 section 5.1: "=2C" is ",", "=3D" is "="; any other "=" makes the name invalid (None)."""
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "=":
            escape = value[i : i + 3]
            if escape not in ("=2C", "=3D"):
                return None
            out.append("," if escape == "=2C" else "=")
            i += 3
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


class ScramMechanism(SaslMechanism):
    """SCRAM-SHA-256; with `channel_binding` (the connection's tls-exporter octets) SCRAM-SHA-256-PLUS."""

    name: ClassVar[str] = "SCRAM-SHA-256"

    def __init__(
        self, *, plus: bool = False, channel_binding: bytes | None = None, server_nonce: str | None = None
    ) -> None:
        self.plus = plus  # this exchange is SCRAM-SHA-256-PLUS
        self._server_nonce = server_nonce  # tests only (RFC 7677's example); random otherwise
        #: the exporter octets when the connection can bind (then -PLUS is offered on it)
        self.channel_binding = channel_binding
        self._state = "new"  # new -> first -> secret -> final -> verified -> done
        self._gs2_header = b""
        self._first_bare = ""
        self._nonce = ""
        self._server_first = ""
        self._authcid = ""
        self._authzid = ""
        self._secret: ScramSecret | None = None

    def start(self, initial_response: bytes | None) -> SaslStep:
        if self._state != "new":
            return self._fail("the exchange has already started")
        if initial_response is None:
            self._state = "first"
            return Challenge(b"")
        return self._client_first(initial_response)

    def step(self, response: bytes) -> SaslStep:
        if self._state == "first":
            return self._client_first(response)
        if self._state == "final":
            return self._client_final(response)
        if self._state == "verified":
            self._state = "done"
            if response:
                return SaslFailure("expected an empty response to the server's final message")
            return ScramOutcome(self._authcid, self._authzid, True)
        return self._fail("unexpected response")

    def with_secret(self, secret: ScramSecret) -> SaslStep:
        """The secret asked for by NeedScramSecret: answers with the server-first message."""
        if self._state != "secret":
            return self._fail("no secret was asked for")
        self._secret = secret
        salt = base64.b64encode(secret.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={secret.iterations}"
        self._state = "final"
        return Challenge(self._server_first.encode())

    def _fail(self, reason: str) -> SaslFailure:
        self._state = "done"
        self._secret = None
        return SaslFailure(reason)

    def _client_first(self, data: bytes) -> SaslStep:
        if len(data) > 2 * MAX_FIELD_OCTETS:
            return self._fail("client-first-message too long")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail("client-first-message is not UTF-8")
        parts = text.split(",", 2)
        if len(parts) != 3 or "\x00" in text:
            return self._fail("malformed client-first-message")
        flag, authzid_field, bare = parts
        if self.plus and self.channel_binding is None:
            return self._fail("channel binding is not available on this connection")
        if flag.startswith("p="):
            if not self.plus or flag != "p=tls-exporter":
                return self._fail("unsupported channel binding")
        elif flag == "y":
            if self.channel_binding is not None:
                return self._fail("channel binding downgrade refused")  # RFC 5802 section 6
        elif flag != "n" or self.plus:
            return self._fail("malformed gs2 header")
        authzid = ""
        if authzid_field:
            if not authzid_field.startswith("a="):
                return self._fail("malformed authzid")
            decoded = _saslname(authzid_field[2:])
            if not decoded:
                return self._fail("malformed authzid")
            authzid = decoded
        fields = bare.split(",")
        if len(fields) < 2 or not fields[0].startswith("n=") or not fields[1].startswith("r="):
            return self._fail("malformed client-first-message-bare")  # "m=" (reserved) lands here too
        authcid = _saslname(fields[0][2:])
        client_nonce = fields[1][2:]
        if not authcid or not client_nonce or not all(0x21 <= ord(c) <= 0x7E for c in client_nonce):
            return self._fail("malformed username or nonce")
        self._gs2_header = f"{flag},{authzid_field},".encode()
        self._first_bare = bare
        server_nonce = self._server_nonce or base64.b64encode(secrets.token_bytes(NONCE_OCTETS)).decode()
        self._nonce = client_nonce + server_nonce
        self._authcid, self._authzid = authcid, authzid
        self._state = "secret"
        return NeedScramSecret(authcid, authzid)

    def _client_final(self, data: bytes) -> SaslStep:
        secret = self._secret
        if secret is None or len(data) > 2 * MAX_FIELD_OCTETS:
            return self._fail("client-final-message too long")
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            return self._fail("client-final-message is not ASCII")
        head, sep, proof_field = text.rpartition(",")
        fields = head.split(",")
        if not sep or not proof_field.startswith("p=") or len(fields) < 2:
            return self._fail("malformed client-final-message")
        if not fields[0].startswith("c=") or fields[1] != f"r={self._nonce}":
            return self._fail("wrong channel binding field or nonce")
        try:
            binding = base64.b64decode(fields[0][2:], validate=True)
            proof = base64.b64decode(proof_field[2:], validate=True)
        except (ValueError, binascii.Error):
            return self._fail("malformed base64 in client-final-message")
        expected = self._gs2_header + ((self.channel_binding or b"") if self.plus else b"")
        if not hmac.compare_digest(binding, expected) or len(proof) != 32:
            return self._fail("channel binding does not match")
        auth_message = f"{self._first_bare},{self._server_first},{head}".encode()
        client_key = bytes(a ^ b for a, b in zip(proof, _hmac(secret.stored_key, auth_message), strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), secret.stored_key):
            self._state = "done"
            return ScramOutcome(self._authcid, self._authzid, False)
        self._state = "verified"
        signature = base64.b64encode(_hmac(secret.server_key, auth_message)).decode()
        return Challenge(f"v={signature}".encode())


class ScramPlusMechanism(ScramMechanism):
    """The -PLUS name, for the protocols' lists; an exchange of it is `ScramMechanism(plus=True, ...)`."""

    name: ClassVar[str] = "SCRAM-SHA-256-PLUS"


def offered(binding: bytes | None) -> tuple[str, ...]:
    """The SCRAM mechanism names to advertise on a connection: -PLUS first where it can bind."""
    if binding is not None:
        return (ScramPlusMechanism.name, ScramMechanism.name)
    return (ScramMechanism.name,)


def create(name: str, binding: bytes | None) -> ScramMechanism | None:
    """An exchange of SCRAM mechanism `name` (upper-case) on a connection with `binding`, or None when that
    name is not one this connection offers."""
    if name not in offered(binding):
        return None
    return ScramMechanism(plus=name == ScramPlusMechanism.name, channel_binding=binding)
