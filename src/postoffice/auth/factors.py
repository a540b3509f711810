"""Second factors and app passwords (docs/decisions/0052): TOTP (RFC 6238 over HOTP, RFC 4226), recovery
codes, and the passwords a person gives each mail program once TOTP is on.

Implementation notes
- TOTP as every authenticator app does it by default (RFC 6238 section 4 and Google Authenticator's key URI
  format): HMAC-SHA-1, 6 digits, 30-second steps from the Unix epoch, a 160-bit secret (RFC 4226 section 4
  recommends 160 bits) given to the app in base32 without padding. The HOTP computation is `cryptography`'s.
- A code is accepted for the current step and one step either side (RFC 6238 section 5.2 allows for one step
  of clock drift and network delay), compared in constant time; the store then takes the step only if it is
  later than the last one accepted (`MailStore.use_totp_step`), so a code is used once (section 5.2: "MUST NOT
  accept the second attempt of the same OTP after the successful validation has been issued").
- Recovery codes and app passwords are random (50 and 80 bits), made here, shown once, and kept only as
  SHA-256 (`secret_hash`): with that much entropy a slow hash buys nothing, and an app-password login costs a
  hash and an indexed lookup instead of an argon2 run. Both are normalised before hashing (case, spaces and
  dashes do not matter), so what a person types from a screen or a printout works.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import urllib.parse

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.hotp import HOTP

TOTP_DIGITS = 6
TOTP_PERIOD = 30
#: Steps accepted either side of the current one (clock drift, the time it takes to type).
TOTP_DRIFT_STEPS = 1
RECOVERY_CODES = 10

# Letters and digits that cannot be mistaken for each other when read or typed (no 0/o, 1/l/i).
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_totp_secret() -> str:
    """A fresh 160-bit secret in base32 without padding (what authenticator apps take)."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii").rstrip("=")


def _key(secret: str) -> bytes:
    padded = secret.upper() + "=" * (-len(secret) % 8)
    return base64.b32decode(padded)


def totp_step(now: float) -> int:
    return int(now // TOTP_PERIOD)


def totp_code(secret: str, step: int) -> str:
    """The code of time step `step` (RFC 6238 section 4.2: HOTP with T as the counter)."""
    # SHA-1 in HMAC, as RFC 6238 and every authenticator app's default use it: no collision matters here.
    hotp = HOTP(_key(secret), TOTP_DIGITS, SHA1(), enforce_key_length=False)  # noqa: S303
    return hotp.generate(step).decode("ascii")


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step near `now` whose code `code` is, or None. Spaces in what was typed are ignored."""
    typed = "".join(code.split())
    if len(typed) != TOTP_DIGITS or not typed.isascii() or not typed.isdigit():
        return None
    current = totp_step(now)
    found = None
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp_code(secret, step), typed) and found is None:
            found = step
    return found


def otpauth_uri(secret: str, account: str, issuer: str) -> str:
    """The key URI an authenticator app reads from a QR code: otpauth://totp/ISSUER:ACCOUNT?secret=..."""
    label = urllib.parse.quote(f"{issuer}:{account}", safe="@:")
    parameters = {"secret": secret, "issuer": issuer, "algorithm": "SHA1"}
    query = urllib.parse.urlencode({**parameters, "digits": TOTP_DIGITS, "period": TOTP_PERIOD})
    return f"otpauth://totp/{label}?{query}"


def qr_svg(text: str) -> str:
    """`text` as a QR code, an inline SVG element (segno; error correction M, as authenticator URIs use)."""
    import segno  # only the settings page needs it

    return str(segno.make(text, error="m", micro=False).svg_inline(scale=5, dark="#111", light="#fff"))


def _random_text(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Codes of 10 characters (about 50 bits) shown as xxxxx-xxxxx."""
    return [f"{text[:5]}-{text[5:]}" for text in (_random_text(10) for _ in range(count))]


def new_app_password() -> str:
    """16 characters (about 80 bits) in four groups, as they are shown: "abcd efgh jkmn pqrs"."""
    text = _random_text(16)
    return " ".join(text[i : i + 4] for i in range(0, 16, 4))


def normalise_secret(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch not in " -\t")


def looks_like_app_password(text: str) -> bool:
    """Whether `text` has the shape `new_app_password` makes (so other passwords need no lookup)."""
    plain = normalise_secret(text)
    return len(plain) == 16 and all(ch in _ALPHABET for ch in plain)


def secret_hash(text: str) -> str:
    """SHA-256 (hex) of a normalised recovery code or app password: what the store keeps."""
    return hashlib.sha256(normalise_secret(text).encode("utf-8", "surrogatepass")).hexdigest()
