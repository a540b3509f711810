"""`Authenticator.login`: the one place every protocol turns a login name and password into an account.

Used by POP3 (USER/PASS and AUTH, RFC 1939 section 7 and RFC 5034), POP2 (HELO, RFC 937), and later IMAP,
submission (RFC 4954) and the web UI. Protocols parse their commands and SASL exchanges
(`postoffice.auth.sasl`, RFC 4422) and hand the credentials here; they map `AuthResult.status` to their own
replies.

Order of a login (docs/decisions/0008-authentication.md)
1. `LoginGuard.check`: when the client address or the account is locked out, no password is verified at all;
   the answer still waits `failure_delay` and is "locked-out".
2. The account is looked up by its full address, case-insensitively (`normalize_address`). Aliases are not
   login names: `store.get_account`, never `resolve_recipient`.
3. The password is verified against the argon2id hash in a worker thread. For a name without an account a
   dummy verification runs instead, so the time taken does not reveal which accounts exist.
   A password verified for this account within `verified_cache_ttl` seconds is recognised from an in-memory
   HMAC instead (see `VerifiedCache`), so clients that log in every minute do not cost an argon2 run each
   time.
4. Failure: `record_failure`, wait `failure_delay` (about 1 s; slows online guessing on one connection),
   "bad-credentials". Success: `record_success`; when the hash was made with older parameters a fresh hash is
   stored, and a failure to store it never fails the login.

Invariants
- Every attempt logs exactly one INFO line on "postoffice.auth":
  `login protocol=pop3 client=127.0.0.1 account=demo@example.test mechanism=PLAIN tls=yes result=ok`
  with result ok | bad-credentials | locked-out | unavailable. Passwords are never logged; login names are
  escaped so that a client cannot forge log lines.
- The reply text never says whether the name or the password was wrong.
- No proxy authorization: an authzid other than "" or the login name itself is refused (RFC 4616 section 2
  leaves the policy to the server).
- Password hashing never runs on the event loop, and at most `MAX_CONCURRENT_VERIFICATIONS` argon2
  computations (64 MiB each) run at once, so a flood of logins cannot exhaust memory.
- A store error answers "unavailable" and is logged; it is not counted as a failed login.
- Whether plaintext passwords are acceptable on a connection is the protocol's question to ask first
  (`plaintext_allowed`, RFC 8314 / RFC 2595 section 3.1); `login` does not know about the connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from postoffice.auth.guard import LoginGuard, printable_for_log
from postoffice.auth.sasl import Credentials
from postoffice.config import AuthConfig
from postoffice.directory import passwords
from postoffice.directory.resolver import normalize_address
from postoffice.store import Account, MailStore, StoreError

log = logging.getLogger("postoffice.auth")

#: argon2 verifications running at once (each holds 64 MiB for about 50 ms).
MAX_CONCURRENT_VERIFICATIONS = max(2, os.cpu_count() or 2)

BAD_CREDENTIALS_REASON = "authentication failed"
PROXY_REASON = "authentication failed: authorization as another user is not supported"
UNAVAILABLE_REASON = "authentication is temporarily unavailable, try again later"


class VerifiedCache:
    """Passwords verified recently, per account, as HMAC-SHA256 under a random per-process key.

    An entry is used only while the account's stored hash is the one it was verified against (a password
    change invalidates it) and for `ttl` seconds; only successes are cached, so guessing still costs an
    argon2 run per attempt. The cost: someone who can read the server's memory could test guesses against an
    entry at HMAC speed; such a reader also has the TLS key and the mail, and Dovecot's auth cache makes the
    same trade.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._entries: dict[str, tuple[str, bytes, float]] = {}

    def _mac(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def matches(self, name: str, stored_hash: str, password: str) -> bool:
        entry = self._entries.get(name)
        if entry is None or self.ttl <= 0:
            return False
        cached_hash, mac, expires = entry
        if expires < self._clock() or cached_hash != stored_hash:
            del self._entries[name]
            return False
        return hmac.compare_digest(mac, self._mac(password))

    def remember(self, name: str, stored_hash: str, password: str) -> None:
        if self.ttl <= 0:
            return
        self._entries.pop(name, None)
        if len(self._entries) >= self.MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[name] = (stored_hash, self._mac(password), self._clock() + self.ttl)


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    status: str  # "ok" | "bad-credentials" | "locked-out" | "unavailable"
    account: Account | None  # the account when ok
    reason: str = ""  # human text for the protocol reply on failure


class Authenticator:
    """Shared by all listeners of one server: owns the `LoginGuard`, so lockouts apply across protocols."""

    def __init__(
        self,
        store: MailStore,
        config: AuthConfig,
        *,
        guard: LoginGuard | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._config = config
        self.guard = guard if guard is not None else LoginGuard(config)
        self._sleep = sleep
        self._slots: asyncio.Semaphore | None = None
        self.verified = VerifiedCache(config.verified_cache_ttl)

    def plaintext_allowed(self, tls_active: bool) -> bool:
        """May a password be sent over this connection? Always with TLS; without only when configured."""
        return tls_active or self._config.allow_plaintext_auth

    async def login_sasl(
        self, *, protocol: str, client_ip: str, credentials: Credentials, mechanism: str, tls: bool
    ) -> AuthResult:
        """`login` with the outcome of a SASL exchange."""
        return await self.login(
            protocol=protocol,
            client_ip=client_ip,
            username=credentials.authcid,
            password=credentials.password,
            mechanism=mechanism,
            tls=tls,
            authzid=credentials.authzid,
        )

    async def login(
        self,
        *,
        protocol: str,
        client_ip: str,
        username: str,
        password: str,
        mechanism: str,
        tls: bool,
        authzid: str = "",
    ) -> AuthResult:
        name = normalize_address(username)

        def done(result: AuthResult) -> AuthResult:
            log.info(
                "login protocol=%s client=%s account=%s mechanism=%s tls=%s result=%s",
                printable_for_log(protocol),
                printable_for_log(client_ip),
                printable_for_log(name),
                printable_for_log(mechanism),
                "yes" if tls else "no",
                result.status,
            )
            return result

        locked = self.guard.check(client_ip, name)
        if locked is not None:
            await self._sleep(self._config.failure_delay)
            return done(AuthResult(False, "locked-out", None, locked))

        if authzid and normalize_address(authzid) != name:
            return done(await self._fail(client_ip, name, PROXY_REASON))

        try:
            account = await self._store.get_account(name)
        except StoreError as exc:
            log.error("login account lookup failed: %s", exc)
            return done(AuthResult(False, "unavailable", None, UNAVAILABLE_REASON))

        if account is not None and self.verified.matches(name, account.password_hash, password):
            verified = True
        else:
            async with self._verification_slot():
                if account is None:
                    await asyncio.to_thread(passwords.verify_dummy_password, password)
                    verified = False
                else:
                    verified = await passwords.verify_password_async(account.password_hash, password)
        if account is None or not verified:
            return done(await self._fail(client_ip, name, BAD_CREDENTIALS_REASON))

        self.guard.record_success(client_ip, name)
        account = await self._rehash_if_needed(account, password)
        self.verified.remember(name, account.password_hash, password)
        return done(AuthResult(True, "ok", account))

    async def _fail(self, client_ip: str, name: str, reason: str) -> AuthResult:
        self.guard.record_failure(client_ip, name)
        await self._sleep(self._config.failure_delay)
        return AuthResult(False, "bad-credentials", None, reason)

    async def _rehash_if_needed(self, account: Account, password: str) -> Account:
        """Store a hash with today's parameters (passwords.py); the login succeeds whatever happens here."""
        if not passwords.needs_rehash(account.password_hash):
            return account
        try:
            async with self._verification_slot():
                fresh = await passwords.hash_password_async(password)
            await self._store.set_password(account.address, fresh)
        except Exception as exc:  # the login has succeeded; a stale hash is only a missed upgrade
            log.warning("password rehash for %s failed: %s", printable_for_log(account.address), exc)
            return account
        return dataclasses.replace(account, password_hash=fresh)

    def _verification_slot(self) -> asyncio.Semaphore:
        # Created lazily so that the semaphore belongs to the loop that runs the logins.
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_CONCURRENT_VERIFICATIONS)
        return self._slots
