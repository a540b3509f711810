"""Authentication shared by every protocol (POP3, POP2, IMAP, submission, web).

- `postoffice.auth.sasl`: SASL mechanisms as sans-IO state machines (RFC 4422): PLAIN (RFC 4616) and LOGIN
  now; SCRAM-SHA-256 and OAUTHBEARER can be added without touching the protocols.
- `postoffice.auth.guard`: brute-force protection (per-IP and per-account lockouts, trusted recent logins).
- `postoffice.auth.authenticator`: `Authenticator.login(...)`, the one entry point protocols call with
  credentials; it applies the guard and the failure delay, verifies argon2id hashes off the event loop and
  logs one line per attempt.

Decisions and their reasons: docs/decisions/0008-authentication.md.
"""

from __future__ import annotations

from postoffice.auth.authenticator import Authenticator, AuthResult
from postoffice.auth.guard import LoginGuard
from postoffice.auth.sasl import Challenge, Credentials, SaslFailure, create_mechanism, mechanism_names

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
