"""Authentication shared by every protocol (POP3, POP2, IMAP, submission, web).

- `postoffice.auth.sasl`: SASL mechanisms as sans-IO state machines (RFC 4422): PLAIN (RFC 4616) and LOGIN now;
  SCRAM-SHA-256 and OAUTHBEARER can be added without touching the protocols.
- `postoffice.auth.guard`: brute-force protection (failure delay, per-IP and per-account lockouts).
- `postoffice.auth.authenticator`: `Authenticator.login(...)`, the one entry point protocols call with
  credentials; it applies the guard, verifies argon2id hashes off the event loop and logs one line per attempt.
"""

from __future__ import annotations

from postoffice.auth.authenticator import AuthResult, Authenticator
from postoffice.auth.guard import LoginGuard

__all__ = ["AuthResult", "Authenticator", "LoginGuard"]
