"""`Authenticator.login`: the one place every protocol turns a login name and password into an account.

Used by POP3 (USER/PASS and AUTH, RFC 1939 section 7 and RFC 5034), POP2 (HELO, RFC 937), IMAP (LOGIN and
AUTHENTICATE, RFC 9051 6.2) and SMTP submission (AUTH, RFC 4954); later the web UI. Protocols parse their
commands and SASL exchanges (`postoffice.auth.sasl`, RFC 4422) and hand the credentials here; they map
`AuthResult.status` to their own replies.

Order of a login (docs/decisions/0008-authentication.md)
1. The login name is brought to its canonical form once (`postoffice.directory.address.normalize_address`):
   that one string is the guard's key and the account lookup's, so no spelling of a name (a trailing
   "。", capitals, spaces) reaches the account while missing its lockout.
2. `LoginGuard.check`: when the client address or the account is locked out, no password is verified at all;
   the answer still waits `failure_delay` and is "locked-out". A lockout hit first asks the `LockoutJournal`
   whether an administrator lifted lockouts (`postoffice auth unlock`; docs/decisions/0027).
3. The account is looked up by that name (`store.get_account`; aliases are not login names, never
   `resolve_recipient`).
4. The password is verified against the argon2id hash in the argon2 thread pool. For a name without an
   account a dummy verification runs instead, so the time taken does not reveal which accounts exist.
   A password verified for this account within `verified_cache_ttl` seconds is recognised from an in-memory
   HMAC instead (see `VerifiedCache`), so clients that log in every minute do not cost an argon2 run each
   time. Simultaneous attempts with the same name, stored hash and password share one verification (keyed
   by an HMAC of the password, never the password); at most `max_pending_verifications` distinct ones run or
   wait at once, and an attempt beyond that is answered "unavailable" (a temporary failure) at once, after
   `failure_delay`, without being counted as a failed login (docs/decisions/0027).
5. Failure: `record_failure`, wait `failure_delay` (about 1 s; slows online guessing on one connection),
   "bad-credentials". Success: `record_success`; when the hash was made with older parameters a fresh hash is
   stored (once for a shared verification), and a failure to store it never fails the login.

Invariants
- Every attempt logs exactly one INFO line on "postoffice.auth":
  `login protocol=pop3 client=127.0.0.1 account=demo@example.test mechanism=PLAIN tls=yes result=ok`
  with result ok | bad-credentials | locked-out | unavailable. Passwords are never logged; login names are
  escaped so that a client cannot forge log lines.
- The reply text never says whether the name or the password was wrong.
- No proxy authorization: an authzid other than "" or the login name itself is refused (RFC 4616 section 2
  leaves the policy to the server).
- Password hashing never runs on the event loop, and at most `ARGON2_THREADS` argon2 computations (64 MiB
  each) run at once, in their own thread pool, so a flood of logins cannot exhaust memory; the number
  waiting for them is bounded by `max_pending_verifications`.
- A store error or a full verification queue answers "unavailable" and is logged; neither is counted as a
  failed login.
- Whether a password may be sent over a connection is decided here and only here (`plaintext_allowed`,
  RFC 8314 section 4.1 / RFC 2595 section 3.1 / RFC 3207 section 4.2, docs/decisions/0035): every protocol
  (SMTP AUTH, IMAP LOGINDISABLED / LOGIN / AUTHENTICATE, POP3 USER/PASS/AUTH, POP2 HELO) asks before it
  offers or accepts a password; `login` does not know about the connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from postoffice.auth import factors, scram
from postoffice.auth.guard import LoginGuard, printable_for_log
from postoffice.auth.history import LoginHistory
from postoffice.auth.lockouts import LockoutJournal
from postoffice.auth.sasl import Credentials, ScramOutcome
from postoffice.auth.scram import ScramSecret
from postoffice.auth.settings import AuthConfig
from postoffice.directory import passwords
from postoffice.directory.address import normalize_address
from postoffice.store import Account, MailStore, StoreError

log = logging.getLogger("postoffice.auth")

#: argon2 computations running at once (each holds 64 MiB for about 50 ms of CPU): one per CPU, at least 2.
ARGON2_THREADS = max(2, os.cpu_count() or 2)

#: Seconds between two writes of an app password's last use by the same protocol and client.
APP_PASSWORD_NOTE_INTERVAL = 60.0

#: Seconds between two warnings that the verification queue is full.
BUSY_WARNING_INTERVAL = 60.0

BAD_CREDENTIALS_REASON = "authentication failed"
SECOND_FACTOR = "second-factor"
SECOND_FACTOR_REASON = "a second factor is required"
DISABLED_REASON = "account disabled"
PROXY_REASON = "authentication failed: authorization as another user is not supported"
UNAVAILABLE_REASON = "authentication is temporarily unavailable, try again later"


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


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

    def mac(self, password: str) -> bytes:
        """HMAC-SHA256 of the password under this process's random key: what is kept instead of it."""
        return hmac.new(self._key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def matches(self, name: str, stored_hash: str, mac: bytes) -> bool:
        entry = self._entries.get(name)
        if entry is None or self.ttl <= 0:
            return False
        cached_hash, cached_mac, expires = entry
        if expires < self._clock() or cached_hash != stored_hash:
            del self._entries[name]
            return False
        return hmac.compare_digest(cached_mac, mac)

    def remember(self, name: str, stored_hash: str, mac: bytes) -> None:
        if self.ttl <= 0:
            return
        self._entries.pop(name, None)
        if len(self._entries) >= self.MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[name] = (stored_hash, mac, self._clock() + self.ttl)


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    status: str  # "ok" | "bad-credentials" | "disabled" | "locked-out" | "unavailable" | "second-factor"
    account: Account | None  # the account when ok, or whose second factor is asked for ("second-factor")
    reason: str = ""  # human text for the protocol reply on failure


@dataclass(frozen=True)
class _Verified:
    """The outcome of one (possibly shared) verification."""

    ok: bool
    account: Account | None  # with the fresh hash when it was replaced


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
        self.lockouts = LockoutJournal(store, self.guard)
        self._sleep = sleep
        self.verified = VerifiedCache(config.verified_cache_ttl)
        self.history = LoginHistory(store)
        self._app_password_noted: dict[tuple[int, str, str], float] = {}
        self._argon2: concurrent.futures.ThreadPoolExecutor | None = None
        #: verifications running or waiting for a thread: (name, stored hash, HMAC of the password) -> task
        self._pending: dict[tuple[str, str, bytes], asyncio.Task[_Verified]] = {}
        self._busy_warned = -BUSY_WARNING_INTERVAL
        self._scram_key: bytes | None = None  # the store's "scram" secret: stand-in salts come from it
        #: logins waiting for a verification now (for tests and diagnostics)
        self.waiting = 0

    async def start(self) -> None:
        """Restore the lockouts kept in the store (server start)."""
        await self.lockouts.load()

    async def close(self) -> None:
        """Write the lockouts still queued; stop the argon2 threads (queued verifications are dropped)."""
        await self.lockouts.close()
        if self._argon2 is not None:
            self._argon2.shutdown(wait=False, cancel_futures=True)
            self._argon2 = None

    def plaintext_allowed(
        self, tls_active: bool, *, client_ip: str | None = None, tls_offered: bool = True
    ) -> bool:
        """May a password be sent over this connection (module notes)?

        Always over TLS; without TLS when `[auth] allow_plaintext_auth` is set; and, for a protocol that
        offers no TLS at all (`tls_offered=False`: POP2, RFC 937), from a loopback `client_ip` too: the
        password never leaves the host, and such a client has no other way in. A protocol that offers TLS
        gets no loopback exception: its clients can use TLS."""
        if tls_active or self._config.allow_plaintext_auth:
            return True
        return not tls_offered and client_ip is not None and _is_loopback(client_ip)

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
        name = normalize_address(username)  # the one key for the guard and the account lookup
        account: Account | None = None

        async def done(result: AuthResult, method: str = "password") -> AuthResult:
            # a second factor asked for is recorded after its code
            recorded = account if result.status != SECOND_FACTOR else None
            return await self._done(result, protocol, client_ip, name, mechanism, tls, recorded, method)

        locked = self.guard.check(client_ip, name)
        if locked is not None and await self.lockouts.refresh():
            locked = self.guard.check(client_ip, name)
        if locked is not None:
            await self._sleep(self._config.failure_delay)
            return await done(AuthResult(False, "locked-out", None, locked))

        if authzid and normalize_address(authzid) != name:
            return await done(await self._fail(client_ip, name, PROXY_REASON))

        try:
            account = await self._store.get_account(name)
            # Mail programs may log in with an app password (and must, once TOTP is on); the web never.
            app = None
            if account is not None and protocol != "web" and factors.looks_like_app_password(password):
                app = await self._store.find_app_password(account.id, factors.secret_hash(password))
        except StoreError as exc:
            log.error("login account lookup failed: %s", exc)
            return await done(AuthResult(False, "unavailable", None, UNAVAILABLE_REASON))
        if account is not None and app is not None:
            self.guard.record_success(client_ip, name)
            await self._note_app_password_use(app.id, protocol, client_ip)
            return await done(self._admitted(account), f"app password {app.name}")
        if account is not None and account.two_factor and protocol != "web":
            # The main password alone no longer opens the mail protocols (decision 0052). A dummy argon2 run
            # first, as for a name without an account, so the answer's time does not tell that TOTP is on.
            shared = self._verification(name, None, password, self.verified.mac(password))
            if shared is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(shared)
            return await done(await self._fail(client_ip, name, BAD_CREDENTIALS_REASON))

        mac = self.verified.mac(password)
        if account is not None and self.verified.matches(name, account.password_hash, mac):
            outcome = _Verified(True, account)
        else:
            shared = self._verification(name, account, password, mac)
            if shared is None:
                self._warn_busy()
                await self._sleep(self._config.failure_delay)
                return await done(AuthResult(False, "unavailable", None, UNAVAILABLE_REASON))
            self.waiting += 1
            try:
                # shield: a client that hangs up does not cancel the verification others wait for
                outcome = await asyncio.shield(shared)
            except Exception as exc:  # the argon2 pool was shut down, or a bug: never a traceback to a peer
                log.error("password verification failed: %s", exc)
                return await done(AuthResult(False, "unavailable", None, UNAVAILABLE_REASON))
            finally:
                self.waiting -= 1
        if not outcome.ok or outcome.account is None:
            return await done(await self._fail(client_ip, name, BAD_CREDENTIALS_REASON))

        self.verified.remember(name, outcome.account.password_hash, mac)
        await self._keep_scram_secret(outcome.account, password)
        if outcome.account.two_factor and not outcome.account.disabled:
            # The password was right; the web asks for the code (`second_factor`) before it counts.
            return await done(AuthResult(False, SECOND_FACTOR, outcome.account, SECOND_FACTOR_REASON))
        self.guard.record_success(client_ip, name)
        return await done(self._admitted(outcome.account))

    # -------------------------------------------------------------------------------------------- SCRAM

    async def scram_secret(self, username: str, *, client_ip: str) -> ScramSecret:
        """The SCRAM-SHA-256 secret to answer `username`'s client-first message with (decision 0068): the
        account's, or a stand-in that no proof matches (no account, no secret yet, a second factor on, a
        disabled account, a lockout of this client or account, or the store failing), with the same salt at
        every attempt, so the answer does not tell which. A locked-out client gets the stand-in: a right
        password must not be confirmed by the server's final message while guesses are refused."""
        name = normalize_address(username)
        locked = self.guard.check(client_ip, name)
        if locked is not None and await self.lockouts.refresh():
            locked = self.guard.check(client_ip, name)
        try:
            if self._scram_key is None:
                self._scram_key = await self._store.server_secret("scram")
            account = await self._store.get_account(name)
            # the same reads for every name (a missing account's id is 0), so their time tells nothing either
            kept = (await self._store.account_settings(account.id if account else 0, scram.SETTING)).get(
                scram.SETTING
            )
            usable = account is not None and not account.two_factor and not account.disabled
            secret = scram.ScramSecret.decode(kept) if kept and usable and locked is None else None
            if secret is not None:
                return secret
        except StoreError as exc:
            log.error("SCRAM secret lookup failed: %s", exc)
        return scram.stand_in_secret(self._scram_key or secrets.token_bytes(32), name)

    async def scram_finish(
        self, *, protocol: str, client_ip: str, outcome: ScramOutcome, mechanism: str, tls: bool
    ) -> AuthResult:
        """The end of a SCRAM exchange: a wrong proof counts as a failed login; a right one logs in as a
        password would (lockouts, a disabled account, the login history), and only with the main password's
        secret: a second factor on refuses SCRAM (app passwords have none)."""
        name = normalize_address(outcome.authcid)
        account: Account | None = None

        async def done(result: AuthResult) -> AuthResult:
            return await self._done(result, protocol, client_ip, name, mechanism, tls, account, "password")

        locked = self.guard.check(client_ip, name)
        if locked is not None and await self.lockouts.refresh():
            locked = self.guard.check(client_ip, name)
        if locked is not None:
            await self._sleep(self._config.failure_delay)
            return await done(AuthResult(False, "locked-out", None, locked))
        if outcome.authzid and normalize_address(outcome.authzid) != name:
            return await done(await self._fail(client_ip, name, PROXY_REASON))
        try:
            account = await self._store.get_account(name)
        except StoreError as exc:
            log.error("login account lookup failed: %s", exc)
            return await done(AuthResult(False, "unavailable", None, UNAVAILABLE_REASON))
        if not outcome.ok or account is None or account.two_factor:
            return await done(await self._fail(client_ip, name, BAD_CREDENTIALS_REASON))
        self.guard.record_success(client_ip, name)
        return await done(self._admitted(account))

    async def _keep_scram_secret(self, account: Account, password: str) -> None:
        """After a login with the main password: make the account's SCRAM secret when it has none (accounts
        from before SCRAM, or whose password was set without it), stored only if the password hash is still
        the one just verified (a change meanwhile must not be undone by the old password's secret). The login
        has succeeded whatever happens."""
        try:
            kept = (await self._store.account_settings(account.id, scram.SETTING)).get(scram.SETTING)
            if kept and scram.ScramSecret.decode(kept) is not None:
                return
            loop = asyncio.get_running_loop()
            secret = await loop.run_in_executor(self._pool(), scram.derive_secret, password)
            await self._store.set_password_derived(account.id, account.password_hash, secret.encode())
        except Exception as exc:
            log.warning("storing the SCRAM secret of %s failed: %s", printable_for_log(account.address), exc)

    async def _done(
        self,
        result: AuthResult,
        protocol: str,
        client_ip: str,
        name: str,
        mechanism: str,
        tls: bool,
        account: Account | None,
        method: str,
    ) -> AuthResult:
        """Log a login's outcome and record it in the account's history (when there is an account)."""
        log.info(
            "login protocol=%s client=%s account=%s mechanism=%s tls=%s result=%s",
            printable_for_log(protocol),
            printable_for_log(client_ip),
            printable_for_log(name),
            printable_for_log(mechanism),
            "yes" if tls else "no",
            result.status,
        )
        if account is not None:
            await self.history.record(account.id, protocol, client_ip, result.status, method)
        return result

    async def _note_app_password_use(self, password_id: int, protocol: str, client_ip: str) -> None:
        """Its last use, written at most once a minute per password, protocol and client (a mail program
        logging in every minute, or many connections at once, cost one write)."""
        now = time.time()
        key = (password_id, protocol, client_ip)
        last = self._app_password_noted.get(key)
        if last is not None and 0 <= now - last < APP_PASSWORD_NOTE_INTERVAL:
            return
        if len(self._app_password_noted) >= VerifiedCache.MAX_ENTRIES:
            self._app_password_noted.clear()
        self._app_password_noted[key] = now
        try:
            await self._store.app_password_used(password_id, now, protocol, client_ip)
        except StoreError as exc:  # the login has succeeded; a stale "last used" is only a missed note
            log.warning("recording the use of an app password failed: %s", exc)

    @staticmethod
    def _admitted(account: Account) -> AuthResult:
        if account.disabled:  # the right password: not a guess, but no way in (issue 12)
            return AuthResult(False, "disabled", None, DISABLED_REASON)
        return AuthResult(True, "ok", account)

    async def second_factor(self, *, account: Account, client_ip: str, code: str) -> AuthResult:
        """The web login's second step (decision 0052): a TOTP code (each accepted once) or a recovery code
        (each works once) for an account whose password was just verified. Lockouts and failed attempts count
        as for passwords; the attempt is logged and recorded in the account's recent logins."""
        name = account.address
        typed = factors.normalise_secret(code)
        totp = len(typed) == factors.TOTP_DIGITS and typed.isdigit()

        async def done(result: AuthResult) -> AuthResult:
            log.info(
                "login protocol=web client=%s account=%s mechanism=%s tls=yes result=%s",
                printable_for_log(client_ip),
                printable_for_log(name),
                "TOTP" if totp else "RECOVERY-CODE",
                result.status,
            )
            method = "password+totp" if totp else "password+recovery code"
            await self.history.record(account.id, "web", client_ip, result.status, method)
            return result

        locked = self.guard.check(client_ip, name)
        if locked is not None:
            await self._sleep(self._config.failure_delay)
            return await done(AuthResult(False, "locked-out", None, locked))
        try:
            factor = await self._store.second_factor(account.id)
            accepted = False
            if factor is not None and totp:
                step = factors.matching_step(factor.secret, typed, time.time())
                accepted = step is not None and await self._store.use_totp_step(account.id, step)
            elif factor is not None and typed:
                accepted = await self._store.use_recovery_code(account.id, factors.secret_hash(typed))
        except StoreError as exc:
            log.error("second factor check failed: %s", exc)
            return await done(AuthResult(False, "unavailable", None, UNAVAILABLE_REASON))
        if factor is None:  # turned off meanwhile: the password was verified, that is the whole login now
            accepted = True
        if not accepted:
            return await done(await self._fail(client_ip, name, BAD_CREDENTIALS_REASON))
        self.guard.record_success(client_ip, name)
        return await done(self._admitted(account))

    def _verification(
        self, name: str, account: Account | None, password: str, mac: bytes
    ) -> asyncio.Task[_Verified] | None:
        """The verification of this password for this name, shared with every attempt that asks for the same
        one while it runs; None when `max_pending_verifications` others are running or waiting."""
        key = (name, "" if account is None else account.password_hash, mac)
        task = self._pending.get(key)
        if task is not None:
            return task
        if len(self._pending) >= self._config.max_pending_verifications:
            return None
        task = asyncio.get_running_loop().create_task(self._verify(account, password))
        self._pending[key] = task

        def finished(done: asyncio.Task[_Verified]) -> None:
            if self._pending.get(key) is done:
                del self._pending[key]
            if not done.cancelled():
                done.exception()  # retrieved here: every waiter may have gone

        task.add_done_callback(finished)
        return task

    async def _verify(self, account: Account | None, password: str) -> _Verified:
        """argon2 in the pool; on success with an old hash, a fresh hash stored (once, for every waiter)."""
        loop = asyncio.get_running_loop()
        if account is None:
            await loop.run_in_executor(self._pool(), passwords.verify_dummy_password, password)
            return _Verified(False, None)
        ok = await loop.run_in_executor(
            self._pool(), passwords.verify_password, account.password_hash, password
        )
        if not ok:
            return _Verified(False, None)
        return _Verified(True, await self._rehash_if_needed(account, password))

    def _warn_busy(self) -> None:
        now = time.monotonic()
        if now - self._busy_warned >= BUSY_WARNING_INTERVAL:
            self._busy_warned = now
            log.warning(
                "login verification queue full (%d running or waiting, [auth] max_pending_verifications); "
                "answering a temporary failure",
                len(self._pending),
            )

    async def _fail(self, client_ip: str, name: str, reason: str) -> AuthResult:
        self.guard.record_failure(client_ip, name)
        await self._sleep(self._config.failure_delay)
        return AuthResult(False, "bad-credentials", None, reason)

    async def _rehash_if_needed(self, account: Account, password: str) -> Account:
        """Store a hash with today's parameters (passwords.py); the login succeeds whatever happens here."""
        if not passwords.needs_rehash(account.password_hash):
            return account
        try:
            loop = asyncio.get_running_loop()
            fresh = await loop.run_in_executor(self._pool(), passwords.hash_password, password)
            await self._store.set_password(account.address, fresh)
        except Exception as exc:  # the login has succeeded; a stale hash is only a missed upgrade
            log.warning("password rehash for %s failed: %s", printable_for_log(account.address), exc)
            return account
        return dataclasses.replace(account, password_hash=fresh)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        # Its own threads: argon2 memory is bounded by their number, and a login storm does not occupy the
        # default executor that other work (DNS, file I/O) uses.
        if self._argon2 is None:
            self._argon2 = concurrent.futures.ThreadPoolExecutor(
                max_workers=ARGON2_THREADS, thread_name_prefix="postoffice-argon2"
            )
        return self._argon2
