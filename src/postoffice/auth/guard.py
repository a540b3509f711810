"""Brute-force protection for logins: failure counting and lockouts per client address and per account.

Rules (docs/decisions/0008-authentication.md explains why)
- Failures are counted per client address and per account name within `failure_window` seconds. IPv4 clients
  count per address; IPv6 clients count per /64, because one host usually holds a whole /64 and could
  otherwise pick a fresh address for every guess. An IPv4-mapped IPv6 address counts as its IPv4 address.
- `ip_max_failures` failures from one address within the window lock that address out for `lockout` seconds;
  `account_max_failures` failures for one account name (from any addresses) lock that account out for
  `lockout` seconds. The count starts again after a lockout begins. Names without an account are counted
  and locked the same way, so a lockout does not reveal which accounts exist.
- A (client address, account) pair that logged in successfully within the last `lockout` seconds is
  *trusted*: it bypasses the address lockout (other people's failures behind the same NAT do not lock a user
  out) and an account lockout caused by failures from elsewhere (an attacker cannot lock a user out of their
  own mailbox). A trusted pair's own failures still count toward both lockouts, and once the pair itself has
  `account_max_failures` failures within the window it is locked out like anyone else.
- A success never clears failure counts: logging in to one's own account between guesses must not buy an
  attacker more guesses at other accounts.

Invariants
- Memory is bounded: every table holds at most `max_entries` keys (the least recently touched are dropped
  first), each failure list at most the number of failures that triggers a lockout, and expired entries are
  swept at least every `PRUNE_INTERVAL` seconds of the clock.
- No I/O and no sleeping: time comes from the injected `clock` (time.monotonic by default), so tests use a
  fake clock. The guard is used from the event loop only (not thread-safe).
- Starting a lockout logs one WARNING line `lockout ...` on the "postoffice.auth" logger.
- Lockouts outlive a restart (docs/decisions/0027): when one begins, the guard hands a `LoginGuardEntry` (Unix
  times) to its `journal`, which writes it to the store off the event loop (`auth.lockouts`); so do the
  trusted pairs of an account whose lockout begins, and a trusted pair's fresh login while its account is
  locked (without them a restart would lock real users out of their own mailbox). `restore` loads them at
  start, `lift` removes one (`postoffice auth unlock`). Failure counts below a threshold stay in memory only.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from postoffice.auth.settings import AuthConfig
from postoffice.store import LoginGuardEntry

log = logging.getLogger("postoffice.auth")

#: Keys per table before the least recently touched are dropped.
MAX_ENTRIES = 100_000

#: Seconds between sweeps of expired entries.
PRUNE_INTERVAL = 60.0

IP_LOCKED_REASON = "too many failed logins from your address"
ACCOUNT_LOCKED_REASON = "too many failed logins for this account"

_K = TypeVar("_K")
_V = TypeVar("_V")


def client_key(client_ip: str) -> str:
    """The unit failures are counted in: the IPv4 address, or the IPv6 /64 network (e.g. "2001:db8::/64").
    Strings that are not IP addresses (e.g. a Unix socket peer) are used as they are."""
    try:
        address = ipaddress.ip_address(client_ip.strip())
    except ValueError:
        return client_ip
    return _key_of(address)


def parse_client_key(text: str) -> str | None:
    """The client key an administrator means by `text`: an IPv4 or IPv6 address, or the key itself (an IPv6
    network of prefix length 64 or longer, e.g. "2001:db8:1:2::/64", or an IPv4 address with "/32"). None
    when `text` is not an address (then it names an account)."""
    text = text.strip()
    try:
        return _key_of(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if network.prefixlen < (32 if network.version == 4 else 64):
        return None  # a wider network is no one client key
    return _key_of(network.network_address)


def _key_of(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        prefix = ipaddress.IPv6Address((int(address) >> 64) << 64)
        return f"{prefix}/64"
    return str(address)


@dataclass
class _Trust:
    """A (client key, account) pair with a recent successful login."""

    success_at: float
    failures: deque[float]  # this pair's own failures since the success
    locked_until: float = 0.0


class LoginGuard:
    """Failure counts and lockouts; `check` before verifying a password, `record_*` after."""

    def __init__(
        self,
        config: AuthConfig,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_entries: int = MAX_ENTRIES,
        wall_clock: Callable[[], float] = time.time,
        journal: Callable[[list[LoginGuardEntry]], None] | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._wall_clock = wall_clock
        #: called (on the event loop) with the lockouts that begin; set by `auth.lockouts.LockoutJournal`
        self.journal = journal
        self._max_entries = max_entries
        self._ip_failures: dict[str, deque[float]] = {}
        self._ip_locked_until: dict[str, float] = {}
        self._account_failures: dict[str, deque[float]] = {}
        self._account_locked_until: dict[str, float] = {}
        self._trusted: dict[tuple[str, str], _Trust] = {}
        self._next_prune = clock() + PRUNE_INTERVAL

    # -- the API -------------------------------------------------------------------------------------------

    def check(self, client_ip: str, account: str) -> str | None:
        """None when this client may try to log in to `account` (the normalised login name) now; otherwise
        the reason, short enough for a protocol reply."""
        now = self._tick()
        key = client_key(client_ip)
        trust = self._live_trust(key, account, now)
        if trust is not None:
            return ACCOUNT_LOCKED_REASON if trust.locked_until > now else None
        if self._locked(self._ip_locked_until, key, now):
            return IP_LOCKED_REASON
        if self._locked(self._account_locked_until, account, now):
            return ACCOUNT_LOCKED_REASON
        return None

    def record_failure(self, client_ip: str, account: str) -> None:
        now = self._tick()
        key = client_key(client_ip)
        config = self._config
        begun: list[LoginGuardEntry] = []
        if self._count(self._ip_failures, self._ip_locked_until, key, now, config.ip_max_failures):
            log.warning(
                "lockout client=%s duration=%gs failures=%d window=%gs",
                key,
                config.lockout,
                config.ip_max_failures,
                config.failure_window,
            )
            begun.append(self._entry("client", key, "", now + config.lockout, now))
        if self._count(
            self._account_failures, self._account_locked_until, account, now, config.account_max_failures
        ):
            log.warning(
                "lockout account=%s duration=%gs failures=%d window=%gs",
                printable_for_log(account),
                config.lockout,
                config.account_max_failures,
                config.failure_window,
            )
            begun.append(self._entry("account", "", account, now + config.lockout, now))
            if self.journal is not None:
                # The pairs this lockout spares must still be spared after a restart. A scan of the trust
                # table, but only when an account lockout begins (each costs an attacker 10 argon2 runs).
                begun.extend(
                    self._entry(
                        "trust", pair[0], account, trust.success_at + config.lockout, trust.success_at
                    )
                    for pair, trust in self._trusted.items()
                    if pair[1] == account and trust.success_at + config.lockout > now
                )
        trust = self._live_trust(key, account, now)
        if trust is not None:
            self._expire(trust.failures, now)
            trust.failures.append(now)
            if trust.locked_until <= now and len(trust.failures) >= config.account_max_failures:
                trust.locked_until = now + config.lockout
                trust.failures.clear()
                log.warning(
                    "lockout client=%s account=%s duration=%gs failures=%d window=%gs (trusted pair)",
                    key,
                    printable_for_log(account),
                    config.lockout,
                    config.account_max_failures,
                    config.failure_window,
                )
                begun.append(self._entry("pair", key, account, trust.locked_until, now))
        if begun and self.journal is not None:
            self.journal(begun)

    def record_success(self, client_ip: str, account: str) -> None:
        now = self._tick()
        key = client_key(client_ip)
        trust = _Trust(success_at=now, failures=deque(maxlen=self._config.account_max_failures))
        self._touch(self._trusted, (key, account), trust)
        if self.journal is not None and self._account_locked_until.get(account, 0.0) > now:
            self.journal([self._entry("trust", key, account, now + self._config.lockout, now)])

    def restore(self, entries: list[LoginGuardEntry]) -> None:
        """Take the lockouts and trusted pairs kept in the store (at start); ended entries are skipped."""
        now = self._tick()
        wall = self._wall_clock()
        lockout = self._config.lockout
        for entry in entries:
            remaining = entry.until - wall
            if remaining <= 0:
                continue
            until = now + remaining
            if entry.kind == "client":
                self._touch(
                    self._ip_locked_until,
                    entry.client,
                    max(until, self._ip_locked_until.get(entry.client, 0)),
                )
            elif entry.kind == "account":
                locks = self._account_locked_until
                self._touch(locks, entry.account, max(until, locks.get(entry.account, 0)))
            elif entry.kind in ("pair", "trust"):
                pair = (entry.client, entry.account)
                trust = self._trusted.get(pair)
                if trust is None:
                    # success_at so far back that a pair restored for its lockout alone is not trusted
                    trust = _Trust(
                        success_at=now - lockout, failures=deque(maxlen=self._config.account_max_failures)
                    )
                    self._touch(self._trusted, pair, trust)
                if entry.kind == "pair":
                    trust.locked_until = max(trust.locked_until, until)
                else:
                    trust.success_at = max(trust.success_at, until - lockout)

    def lift(self, kind: str, client: str, account: str) -> bool:
        """End one lockout now (kind "client", "account" or "pair", as in `LoginGuardEntry`) and forget the
        failures that led to it. True when there was one."""
        now = self._tick()
        if kind == "client":
            self._ip_failures.pop(client, None)
            return self._ip_locked_until.pop(client, 0.0) > now
        if kind == "account":
            self._account_failures.pop(account, None)
            return self._account_locked_until.pop(account, 0.0) > now
        if kind == "pair":
            trust = self._trusted.get((client, account))
            if trust is None:
                return False
            locked = trust.locked_until > now
            trust.locked_until = 0.0
            trust.failures.clear()
            self._live_trust(client, account, now)  # drops it when its trust has ended too
            return locked
        return False

    # -- internals -----------------------------------------------------------------------------------------

    def _entry(self, kind: str, client: str, account: str, until: float, since: float) -> LoginGuardEntry:
        """An entry for the store: the guard's clock (monotonic) turned into Unix time."""
        offset = self._wall_clock() - self._clock()
        return LoginGuardEntry(kind, client, account, until + offset, since + offset)

    def _tick(self) -> float:
        now = self._clock()
        if now >= self._next_prune:
            self.prune(now)
        return now

    def prune(self, now: float | None = None) -> None:
        """Drop every expired entry (done automatically every `PRUNE_INTERVAL` seconds)."""
        if now is None:
            now = self._clock()
        self._next_prune = now + PRUNE_INTERVAL
        horizon = now - self._config.failure_window
        for failures in (self._ip_failures, self._account_failures):
            for name in [name for name, times in failures.items() if not times or times[-1] <= horizon]:
                del failures[name]
        for locks in (self._ip_locked_until, self._account_locked_until):
            for name in [name for name, until in locks.items() if until <= now]:
                del locks[name]
        lockout = self._config.lockout
        for pair in [
            pair
            for pair, trust in self._trusted.items()
            if trust.success_at + lockout <= now and trust.locked_until <= now
        ]:
            del self._trusted[pair]

    def table_sizes(self) -> dict[str, int]:
        """Keys held per table (for tests and diagnostics)."""
        return {
            "ip_failures": len(self._ip_failures),
            "ip_locks": len(self._ip_locked_until),
            "account_failures": len(self._account_failures),
            "account_locks": len(self._account_locked_until),
            "trusted": len(self._trusted),
        }

    def _count(
        self,
        failures: dict[str, deque[float]],
        locks: dict[str, float],
        name: str,
        now: float,
        limit: int,
    ) -> bool:
        """Record one failure for `name`; True when it starts a lockout."""
        times = failures.pop(name, None)
        if times is None:
            times = deque(maxlen=limit)
        self._expire(times, now)
        times.append(now)
        self._touch(failures, name, times)
        if len(times) < limit or self._locked(locks, name, now):
            return False
        times.clear()  # the count starts again after the lockout
        self._touch(locks, name, now + self._config.lockout)
        return True

    def _expire(self, times: deque[float], now: float) -> None:
        horizon = now - self._config.failure_window
        while times and times[0] <= horizon:
            times.popleft()

    def _live_trust(self, key: str, account: str, now: float) -> _Trust | None:
        trust = self._trusted.get((key, account))
        if trust is None:
            return None
        if trust.locked_until > now:
            return trust  # a trusted pair that locked itself stays locked until its lock ends
        if trust.success_at + self._config.lockout <= now:
            del self._trusted[(key, account)]
            return None
        return trust

    @staticmethod
    def _locked(locks: dict[str, float], name: str, now: float) -> bool:
        until = locks.get(name)
        if until is None:
            return False
        if until <= now:
            del locks[name]
            return False
        return True

    def _touch(self, table: dict[_K, _V], key: _K, value: _V) -> None:
        """Set `table[key]` as the most recently touched entry and keep the table within its bound."""
        table.pop(key, None)
        table[key] = value
        while len(table) > self._max_entries:
            del table[next(iter(table))]


def printable_for_log(text: str, limit: int = 200) -> str:
    """A login name made safe for one log line (no spaces, control characters or unbounded length)."""
    if text.isprintable() and " " not in text and len(text) <= limit and text:
        return text
    return ascii(text[:limit])
