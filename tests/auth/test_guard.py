"""LoginGuard: failure counting, lockouts, trusted recent logins, bounded memory (fake clock, no sleeps)."""

from __future__ import annotations

import logging

import pytest

from postoffice.auth.guard import ACCOUNT_LOCKED_REASON, IP_LOCKED_REASON, LoginGuard, client_key
from postoffice.config import AuthConfig
from postoffice.store import LoginGuardEntry

CONFIG = AuthConfig(
    allow_plaintext_auth=False,
    failure_delay=1.0,
    ip_max_failures=5,
    account_max_failures=3,
    failure_window=600.0,
    lockout=900.0,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def guard(clock: FakeClock) -> LoginGuard:
    return LoginGuard(CONFIG, clock)


def fail_accounts(guard: LoginGuard, ip: str, count: int, prefix: str = "victim") -> None:
    """`count` failures from `ip`, each on a different account (so no account lock)."""
    for i in range(count):
        guard.record_failure(ip, f"{prefix}{i}@example.test")


def test_a_fresh_client_may_try(guard: LoginGuard) -> None:
    assert guard.check("192.0.2.1", "demo@example.test") is None


def test_ip_is_locked_out_after_max_failures(guard: LoginGuard) -> None:
    fail_accounts(guard, "192.0.2.1", 4)
    assert guard.check("192.0.2.1", "new@example.test") is None
    fail_accounts(guard, "192.0.2.1", 1, prefix="last")
    assert guard.check("192.0.2.1", "new@example.test") == IP_LOCKED_REASON
    assert guard.check("192.0.2.2", "new@example.test") is None  # other addresses are not affected


def test_ip_lockout_ends_after_lockout_seconds(guard: LoginGuard, clock: FakeClock) -> None:
    fail_accounts(guard, "192.0.2.1", 5)
    clock.advance(CONFIG.lockout - 1)
    assert guard.check("192.0.2.1", "new@example.test") == IP_LOCKED_REASON
    clock.advance(1)
    assert guard.check("192.0.2.1", "new@example.test") is None


def test_the_count_starts_again_after_a_lockout(guard: LoginGuard, clock: FakeClock) -> None:
    fail_accounts(guard, "192.0.2.1", 5)
    clock.advance(CONFIG.lockout)
    fail_accounts(guard, "192.0.2.1", 4, prefix="again")
    assert guard.check("192.0.2.1", "new@example.test") is None


def test_failures_outside_the_window_do_not_count(guard: LoginGuard, clock: FakeClock) -> None:
    fail_accounts(guard, "192.0.2.1", 4)
    clock.advance(CONFIG.failure_window)
    fail_accounts(guard, "192.0.2.1", 4, prefix="later")
    assert guard.check("192.0.2.1", "new@example.test") is None


def test_account_is_locked_after_failures_from_many_addresses(guard: LoginGuard, clock: FakeClock) -> None:
    for i in range(3):
        guard.record_failure(f"198.51.100.{i}", "demo@example.test")
    assert guard.check("203.0.113.9", "demo@example.test") == ACCOUNT_LOCKED_REASON
    assert guard.check("203.0.113.9", "other@example.test") is None
    clock.advance(CONFIG.lockout)
    assert guard.check("203.0.113.9", "demo@example.test") is None


def test_recent_success_is_not_blocked_by_other_accounts_failures_on_the_same_ip(guard: LoginGuard) -> None:
    # One NAT address: demo logged in, then someone behind the same address guesses at other accounts.
    guard.record_success("192.0.2.1", "demo@example.test")
    fail_accounts(guard, "192.0.2.1", 5)
    assert guard.check("192.0.2.1", "someone@example.test") == IP_LOCKED_REASON
    assert guard.check("192.0.2.1", "demo@example.test") is None


def test_recent_success_bypasses_an_account_lock_from_other_addresses(guard: LoginGuard) -> None:
    guard.record_success("192.0.2.1", "demo@example.test")
    for i in range(3):
        guard.record_failure(f"198.51.100.{i}", "demo@example.test")
    assert guard.check("203.0.113.9", "demo@example.test") == ACCOUNT_LOCKED_REASON
    assert guard.check("192.0.2.1", "demo@example.test") is None


def test_a_trusted_pairs_own_failures_still_lock_it(guard: LoginGuard) -> None:
    guard.record_success("192.0.2.1", "demo@example.test")
    for _ in range(3):
        guard.record_failure("192.0.2.1", "demo@example.test")
    assert guard.check("192.0.2.1", "demo@example.test") == ACCOUNT_LOCKED_REASON
    # ... and they count toward the account lock seen from elsewhere
    assert guard.check("203.0.113.9", "demo@example.test") == ACCOUNT_LOCKED_REASON


def test_trust_expires_after_lockout_seconds(guard: LoginGuard, clock: FakeClock) -> None:
    guard.record_success("192.0.2.1", "demo@example.test")
    clock.advance(CONFIG.lockout)
    fail_accounts(guard, "192.0.2.1", 5)
    assert guard.check("192.0.2.1", "demo@example.test") == IP_LOCKED_REASON


def test_success_does_not_clear_failure_counts(guard: LoginGuard) -> None:
    fail_accounts(guard, "192.0.2.1", 4)
    guard.record_success("192.0.2.1", "mine@example.test")  # the attacker's own account
    fail_accounts(guard, "192.0.2.1", 1, prefix="more")
    assert guard.check("192.0.2.1", "victim9@example.test") == IP_LOCKED_REASON


def test_success_is_per_pair(guard: LoginGuard) -> None:
    guard.record_success("192.0.2.1", "demo@example.test")
    fail_accounts(guard, "192.0.2.7", 5)
    assert guard.check("192.0.2.7", "demo@example.test") == IP_LOCKED_REASON


def test_ipv6_failures_count_per_64(guard: LoginGuard) -> None:
    for i in range(5):
        guard.record_failure(f"2001:db8:1:2::{i + 1:x}", f"victim{i}@example.test")
    assert guard.check("2001:db8:1:2:ffff:ffff:ffff:ffff", "new@example.test") == IP_LOCKED_REASON
    assert guard.check("2001:db8:1:3::1", "new@example.test") is None


def test_client_key() -> None:
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key("not an address") == "not an address"


def test_a_lockout_logs_one_warning(guard: LoginGuard, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="postoffice.auth"):
        fail_accounts(guard, "192.0.2.1", 5)
        guard.record_failure("198.51.100.1", "victim0@example.test")
        guard.record_failure("198.51.100.2", "victim0@example.test")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "lockout client=192.0.2.1 duration=900s failures=5 window=600s",
        "lockout account=victim0@example.test duration=900s failures=3 window=600s",
    ]


def test_expired_entries_are_pruned(guard: LoginGuard, clock: FakeClock) -> None:
    fail_accounts(guard, "192.0.2.1", 5)
    guard.record_success("192.0.2.2", "demo@example.test")
    assert guard.table_sizes()["ip_locks"] == 1
    clock.advance(max(CONFIG.lockout, CONFIG.failure_window) + 1)
    guard.check("203.0.113.1", "x@example.test")  # any call sweeps once the prune interval has passed
    assert guard.table_sizes() == {
        "ip_failures": 0,
        "ip_locks": 0,
        "account_failures": 0,
        "account_locks": 0,
        "trusted": 0,
    }


def test_tables_are_bounded_dropping_the_oldest(clock: FakeClock) -> None:
    guard = LoginGuard(CONFIG, clock, max_entries=100)
    for i in range(1000):
        guard.record_failure(f"10.0.{i // 256}.{i % 256}", f"user{i}@example.test")
        guard.record_success(f"10.1.{i // 256}.{i % 256}", f"user{i}@example.test")
    sizes = guard.table_sizes()
    assert sizes["ip_failures"] == 100
    assert sizes["account_failures"] == 100
    assert sizes["trusted"] == 100
    # the newest entries are kept: 4 more failures lock the last address, the oldest starts from zero
    fail_accounts(guard, "10.0.3.231", 4)
    assert guard.check("10.0.3.231", "new@example.test") == IP_LOCKED_REASON
    fail_accounts(guard, "10.0.0.0", 4)
    assert guard.check("10.0.0.0", "new@example.test") is None


def test_failure_lists_are_bounded(guard: LoginGuard, clock: FakeClock) -> None:
    guard.record_success("192.0.2.1", "demo@example.test")
    for _ in range(10_000):
        guard.record_failure("192.0.2.1", "demo@example.test")
        clock.advance(0.001)
    assert all(len(times) <= CONFIG.ip_max_failures for times in guard._ip_failures.values())
    assert all(len(times) <= CONFIG.account_max_failures for times in guard._account_failures.values())
    assert all(len(t.failures) <= CONFIG.account_max_failures for t in guard._trusted.values())


# -- lockouts kept in the store: what the guard hands its journal, restore and lift -------------------------


class Journal:
    def __init__(self) -> None:
        self.entries: list[LoginGuardEntry] = []

    def __call__(self, entries: list[LoginGuardEntry]) -> None:
        self.entries.extend(entries)


def journaled(clock: FakeClock) -> tuple[LoginGuard, Journal]:
    journal = Journal()
    # the wall clock runs 1,000,000 s ahead of the monotonic one: entries carry Unix times
    return LoginGuard(CONFIG, clock, wall_clock=lambda: clock.now + 1e6, journal=journal), journal


def test_lockouts_that_begin_are_handed_to_the_journal_in_unix_time(clock: FakeClock) -> None:
    guard, journal = journaled(clock)
    guard.record_success("203.0.113.5", "demo@example.test")  # trusted before the account lockout
    clock.advance(10)
    fail_accounts(guard, "192.0.2.1", 5)
    assert [(e.kind, e.client, e.until, e.since) for e in journal.entries] == [
        ("client", "192.0.2.1", clock.now + 1e6 + CONFIG.lockout, clock.now + 1e6)
    ]
    journal.entries.clear()
    for i in range(3):
        guard.record_failure(f"198.51.100.{i}", "demo@example.test")
    start = 1000.0 + 1e6  # the success
    assert journal.entries == [
        LoginGuardEntry(
            "account", "", "demo@example.test", clock.now + 1e6 + CONFIG.lockout, clock.now + 1e6
        ),
        LoginGuardEntry("trust", "203.0.113.5", "demo@example.test", start + CONFIG.lockout, start),
    ]
    journal.entries.clear()
    guard.record_success("203.0.113.5", "demo@example.test")  # a fresh login while the account is locked
    assert [(e.kind, e.client) for e in journal.entries] == [("trust", "203.0.113.5")]
    journal.entries.clear()
    for _ in range(3):  # the trusted pair's own failures lock it
        guard.record_failure("203.0.113.5", "demo@example.test")
    assert ("pair", "203.0.113.5", "demo@example.test") in [
        (e.kind, e.client, e.account) for e in journal.entries
    ]


def test_restore_takes_what_has_not_ended(clock: FakeClock) -> None:
    wall = clock.now + 1e6
    guard = LoginGuard(CONFIG, clock, wall_clock=lambda: clock.now + 1e6)
    guard.restore(
        [
            LoginGuardEntry("client", "192.0.2.1", "", wall + 100, wall - 800),
            LoginGuardEntry("client", "192.0.2.2", "", wall - 1, wall - 901),  # ended
            LoginGuardEntry("account", "", "demo@example.test", wall + 300, wall - 600),
            LoginGuardEntry("trust", "203.0.113.5", "demo@example.test", wall + 500, wall - 400),
            LoginGuardEntry("pair", "203.0.113.6", "demo@example.test", wall + 50, wall - 850),
        ]
    )
    assert guard.check("192.0.2.1", "x@example.test") == IP_LOCKED_REASON
    assert guard.check("192.0.2.2", "x@example.test") is None
    assert guard.check("198.51.100.1", "demo@example.test") == ACCOUNT_LOCKED_REASON
    assert guard.check("203.0.113.5", "demo@example.test") is None  # trusted
    assert guard.check("203.0.113.6", "demo@example.test") == ACCOUNT_LOCKED_REASON  # its own lockout
    clock.advance(100)
    assert guard.check("192.0.2.1", "x@example.test") is None  # it ends when it would have
    assert guard.check("203.0.113.6", "demo@example.test") == ACCOUNT_LOCKED_REASON  # the account's lockout


def test_lift_ends_a_lockout_and_its_failure_count(guard: LoginGuard) -> None:
    fail_accounts(guard, "192.0.2.1", 5)
    for i in range(3):
        guard.record_failure(f"198.51.100.{i}", "demo@example.test")
    assert guard.lift("client", "192.0.2.1", "")
    assert not guard.lift("client", "192.0.2.1", "")
    assert guard.check("192.0.2.1", "x@example.test") is None
    assert guard.check("192.0.2.9", "demo@example.test") == ACCOUNT_LOCKED_REASON
    assert guard.lift("account", "", "demo@example.test")
    guard.record_failure("192.0.2.9", "demo@example.test")  # the count starts from zero
    assert guard.check("192.0.2.9", "demo@example.test") is None
