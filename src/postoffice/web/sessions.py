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


#: The cookie that carries a login between its password and its second factor (decision 0052).
PENDING_COOKIE = "__Host-postoffice-2fa"
#: Seconds a person has to type the code after the password.
PENDING_LIFETIME = 300.0
#: Wrong codes after which the password must be typed again.
PENDING_ATTEMPTS = 5
_PENDING_MAX = 10_000


@dataclass
class PendingLogin:
    account_id: int
    next: str
    expires: float
    attempts: int = 0


class PendingLogins:
    """Logins whose password was right and whose second factor is asked for: in this process's memory, by
    the SHA-256 of a random token in the PENDING_COOKIE. A restart forgets them (the person types the password
    again); at most _PENDING_MAX are kept (the oldest go first), each for PENDING_LIFETIME seconds."""

    def __init__(self) -> None:
        self._pending: dict[str, PendingLogin] = {}

    def start(self, account_id: int, next_path: str) -> str:
        now = time.time()
        self._pending = {key: p for key, p in self._pending.items() if p.expires > now}
        while len(self._pending) >= _PENDING_MAX:
            del self._pending[next(iter(self._pending))]
        token = secrets.token_urlsafe(32)
        self._pending[session_id(token)] = PendingLogin(account_id, next_path, now + PENDING_LIFETIME)
        return token

    def find(self, token: str | None) -> PendingLogin | None:
        if not token or len(token) > 200:
            return None
        pending = self._pending.get(session_id(token))
        if pending is None or pending.expires <= time.time():
            return None
        return pending

    def attempt(self, token: str) -> bool:
        """Count a code about to be checked: whether it may be (at most PENDING_ATTEMPTS per password; the
        last one ends the pending login whatever its outcome, and a right code ends it anyway)."""
        pending = self.find(token)
        if pending is None:
            return False
        pending.attempts += 1
        if pending.attempts >= PENDING_ATTEMPTS:
            self.end(token)
        return True

    def end(self, token: str | None) -> None:
        if token and len(token) <= 200:
            self._pending.pop(session_id(token), None)
