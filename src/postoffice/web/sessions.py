"""Web sessions: a random token in a `__Host-` cookie, its SHA-256 in the store (docs/decisions/0046).

Implementation notes
- The cookie: `__Host-postoffice` (so it is only ever set by this host over HTTPS, for every path), Secure,
  HttpOnly, SameSite=Lax, no Max-Age (the store decides when a session ends; the browser forgets it when it
  closes unless it restores the session).
- A session ends at `[web] session_lifetime` after login however active, after `session_idle_timeout`
  without a request, at logout, when its account is removed or its password is set.
- `last_seen` is written at most once a minute per session, so reading mail does not write to the store
  for every request.
- CSRF: every session has a random token; a state-changing request must carry it (form field `csrf` or the
  `X-CSRF-Token` header) and, when the browser sends an Origin header, come from this origin. The login form,
  before there is a session, uses a second cookie (`__Host-postoffice-login`) whose value the form repeats.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from postoffice.store import MailStore, WebSession

SESSION_COOKIE = "__Host-postoffice"
LOGIN_COOKIE = "__Host-postoffice-login"
#: Seconds between two writes of a session's `last_seen`.
TOUCH_INTERVAL = 60.0
#: Characters of the User-Agent kept with a session.
USER_AGENT_KEPT = 200


def session_id(token: str) -> str:
    """The store's key for a cookie token."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def cookie_header(name: str, value: str, *, max_age: int | None = None) -> str:
    """A Set-Cookie value with the flags every cookie of ours has."""
    parts = [f"{name}={value}", "Path=/", "Secure", "HttpOnly", "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Login:
    token: str  # for the cookie
    session: WebSession


class Sessions:
    def __init__(self, store: MailStore, lifetime: float, idle_timeout: float) -> None:
        self.store = store
        self.lifetime = lifetime
        self.idle_timeout = idle_timeout

    async def create(self, account_id: int, client: str, user_agent: str) -> Login:
        token = secrets.token_urlsafe(32)
        now = time.time()
        session = WebSession(
            id=session_id(token),
            account_id=account_id,
            csrf=secrets.token_urlsafe(24),
            created=now,
            last_seen=now,
            expires=now + self.lifetime,
            client=client,
            user_agent=user_agent[:USER_AGENT_KEPT],
        )
        await self.store.web_session_create(session)
        return Login(token, session)

    async def find(self, token: str | None) -> WebSession | None:
        if not token or len(token) > 200:
            return None
        now = time.time()
        session = await self.store.web_session_get(session_id(token), now, self.idle_timeout)
        if session is not None and now - session.last_seen >= TOUCH_INTERVAL:
            await self.store.web_session_touch(session.id, now)
        return session

    async def end(self, token: str | None) -> None:
        if token and len(token) <= 200:
            await self.store.web_session_delete(session_id(token))
