"""Authentication shared by every protocol (POP3, POP2, IMAP, submission, web).

- `postoffice.auth.sasl`: SASL mechanisms as sans-IO state machines (RFC 4422): PLAIN (RFC 4616) and LOGIN
  now; SCRAM-SHA-256 and OAUTHBEARER can be added without touching the protocols.
- `postoffice.auth.guard`: brute-force protection (per-IP and per-account lockouts, trusted recent logins).
- `postoffice.auth.authenticator`: `Authenticator.login(...)`, the one entry point protocols call with
  credentials; it applies the guard and the failure delay, verifies argon2id hashes off the event loop and
  logs one line per attempt.

Decisions and their reasons: docs/decisions/0008-authentication.md.

The names below are loaded when first used (PEP 562): `postoffice.auth.settings` and `postoffice.auth.sasl`
are imported by the config and the protocol cores, which must not pay for the authenticator (argon2, the
store) on every command-line call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from postoffice.auth.authenticator import Authenticator, AuthResult
    from postoffice.auth.guard import LoginGuard
    from postoffice.auth.sasl import Challenge, Credentials, SaslFailure, create_mechanism, mechanism_names

_HOMES = {
    "Authenticator": "authenticator",
    "AuthResult": "authenticator",
    "LoginGuard": "guard",
    "Challenge": "sasl",
    "Credentials": "sasl",
    "SaslFailure": "sasl",
    "create_mechanism": "sasl",
    "mechanism_names": "sasl",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "AuthResult",
    "Authenticator",
    "Challenge",
    "Credentials",
    "LoginGuard",
    "SaslFailure",
    "create_mechanism",
    "mechanism_names",
]
