"""Password hashes: argon2id (RFC 9106) through argon2-cffi, and generated passwords.

Implementation notes
- Hashes are PHC strings (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), so the parameters travel with each
  hash and can be raised later: `needs_rehash` tells a login path to store a fresh hash after a successful
  login with old parameters.
- Parameters are argon2-cffi's defaults, which follow RFC 9106's second recommended option (64 MiB, t=3,
  p=4): about 50 ms per hash on a current CPU, slow enough for offline guessing, fast enough for logins.
- Hashing and verifying are deliberately slow and memory-hungry: in the server call them through
  `hash_password_async` / `verify_password_async`, which run them off the event loop.
- `verify_password` never raises: a wrong password, a malformed hash, a hash of another scheme or an empty
  hash all answer False, so no login path can turn a bad database row into a traceback.
- For addresses without an account, call `verify_dummy_password` so that a failed login takes the same
  time whether or not the account exists (no account enumeration by timing).
"""

from __future__ import annotations

import asyncio
import functools
import secrets

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: Letters and digits without the look-alikes 0 O o 1 l I: a password copied by hand survives.
PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # noqa: S105 - symbols, not a secret
PASSWORD_LENGTH = 20  # 56 symbols ** 20 ~ 2**116

_hasher = argon2.PasswordHasher(type=argon2.Type.ID)


def hash_password(password: str) -> str:
    """An argon2id PHC string for `password` with a fresh random salt."""
    return str(_hasher.hash(password))


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches `password_hash`; False on a mismatch or a bad hash (never raises)."""
    if not isinstance(password_hash, str) or not password_hash.startswith("$argon2"):
        return False
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    except (ValueError, TypeError):  # e.g. a hash with impossible parameters
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than today's (or cannot be read): after a successful
    login, store `hash_password(password)` in its place."""
    try:
        return bool(_hasher.check_needs_rehash(password_hash))
    except (InvalidHashError, ValueError, TypeError):
        return True


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def verify_dummy_password(password: str) -> bool:
    """Spend the time of one verification and return False; for logins to addresses without an account."""
    verify_password(_dummy_hash(), password)
    return False


def generate_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password from an alphabet without look-alike characters (about 5.8 bits per character)."""
    if length < 8:
        raise ValueError("a generated password has at least 8 characters")
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


async def hash_password_async(password: str) -> str:
    """`hash_password` in a worker thread, so the event loop keeps serving other connections."""
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password_hash: str, password: str) -> bool:
    """`verify_password` in a worker thread."""
    return await asyncio.to_thread(verify_password, password_hash, password)
