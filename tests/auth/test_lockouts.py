"""Lockouts kept in the store (auth.lockouts.LockoutJournal): restored by a new authenticator on the same
store (a restart), lifted by an unlock from another store connection (the CLI's process), cleaned when they
end. Real SQLite store, real argon2id hashes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from postoffice.auth import lockouts as lockouts_module
from postoffice.auth.authenticator import Authenticator, AuthResult
from postoffice.auth.guard import ACCOUNT_LOCKED_REASON, IP_LOCKED_REASON, LoginGuard, parse_client_key
from postoffice.auth.lockouts import LockoutJournal
from postoffice.config import AuthConfig
from postoffice.directory import passwords
from postoffice.store import LoginGuardEntry, open_store
from postoffice.store.sqlite import SCHEMA_VERSION

PASSWORD = "correct horse battery staple"
CONFIG = AuthConfig(
    allow_plaintext_auth=False,
    failure_delay=1.0,
    ip_max_failures=3,
    account_max_failures=3,
    failure_window=900.0,
    lockout=900.0,
)


async def no_sleep(seconds: float) -> None:
    pass


@pytest.fixture(scope="module")
def password_hash() -> str:
    return passwords.hash_password(PASSWORD)


async def login(auth: Authenticator, user: str, password: str, ip: str) -> AuthResult:
    return await auth.login(
        protocol="imap", client_ip=ip, username=user, password=password, mechanism="PLAIN", tls=True
    )


Scenario = Callable[[Path], Awaitable[None]]


def run(tmp_path: Path, password_hash: str, scenario: Scenario) -> None:
    path = tmp_path / "mail.sqlite3"

    async def main() -> None:
        store = open_store(path)
        try:
            await store.add_domain("example.test")
            await store.add_account("demo@example.test", password_hash)
        finally:
            await store.close()
        await scenario(path)

    asyncio.run(main())


class Process:
    """One server lifetime: a store connection and an authenticator that loaded the kept lockouts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def __aenter__(self) -> Authenticator:
        self.store = open_store(self.path)
        self.auth = Authenticator(self.store, CONFIG, sleep=no_sleep)
        await self.auth.start()
        return self.auth

    async def __aexit__(self, *exc: object) -> None:
        await self.auth.close()
        await self.store.close()


def test_an_account_lockout_survives_a_restart(tmp_path: Path, password_hash: str) -> None:
    async def scenario(path: Path) -> None:
        async with Process(path) as auth:
            for i in range(3):
                await login(auth, "demo@example.test", "guess", f"192.0.2.{i + 1}")
            assert (await login(auth, "demo@example.test", PASSWORD, "198.51.100.1")).status == "locked-out"
        async with Process(path) as auth:
            result = await login(auth, "demo@example.test", PASSWORD, "198.51.100.1")
            assert result.status == "locked-out"
            assert result.reason == ACCOUNT_LOCKED_REASON
            # and under another spelling of the name (one canonical key, also in the store)
            assert (
                await login(auth, "DEMO@example.test\u3002", PASSWORD, "198.51.100.2")
            ).status == "locked-out"

    run(tmp_path, password_hash, scenario)


def test_a_client_lockout_survives_a_restart_and_ipv6_counts_per_64(
    tmp_path: Path, password_hash: str
) -> None:
    async def scenario(path: Path) -> None:
        async with Process(path) as auth:
            for i in range(3):  # three addresses of one /64, three names: a client lockout only
                await login(auth, f"nobody{i}@example.test", "guess", f"2001:db8:1:2::{i + 1}")
        store = open_store(path)
        try:
            entries = await store.login_guard_entries(0)
        finally:
            await store.close()
        assert [(e.kind, e.client, e.account) for e in entries] == [("client", "2001:db8:1:2::/64", "")]
        async with Process(path) as auth:
            result = await login(auth, "demo@example.test", PASSWORD, "2001:db8:1:2::99")
            assert result.status == "locked-out"
            assert result.reason == IP_LOCKED_REASON
            assert (await login(auth, "demo@example.test", PASSWORD, "2001:db8:1:3::1")).ok

    run(tmp_path, password_hash, scenario)


def test_a_user_trusted_before_the_restart_is_still_spared_after_it(
    tmp_path: Path, password_hash: str
) -> None:
    """The exemption that keeps attackers from locking a user out of their own mailbox outlives a restart."""

    async def scenario(path: Path) -> None:
        async with Process(path) as auth:
            assert (await login(auth, "demo@example.test", PASSWORD, "203.0.113.5")).ok  # the user
            for i in range(3):
                await login(auth, "demo@example.test", "guess", f"192.0.2.{i + 1}")  # the attacker
        async with Process(path) as auth:
            assert (await login(auth, "demo@example.test", PASSWORD, "203.0.113.5")).ok
            assert (await login(auth, "demo@example.test", PASSWORD, "192.0.2.99")).status == "locked-out"

    run(tmp_path, password_hash, scenario)


def test_an_unlock_from_another_process_takes_effect_in_the_running_authenticator(
    tmp_path: Path, password_hash: str
) -> None:
    async def scenario(path: Path) -> None:
        async with Process(path) as auth:
            for i in range(3):
                await login(auth, "demo@example.test", "guess", f"192.0.2.{i + 1}")
            for name in ("a", "b", "c"):
                await login(auth, f"{name}@example.test", "guess", "198.51.100.9")
            await auth.lockouts.flush()
            assert (await login(auth, "demo@example.test", PASSWORD, "203.0.113.1")).status == "locked-out"
            assert (await login(auth, "demo@example.test", PASSWORD, "198.51.100.9")).status == "locked-out"

            cli_store = open_store(path)  # what `postoffice auth unlock` does, on its own connection
            try:
                lifted = await cli_store.login_guard_unlock(account="demo@example.test")
                assert [(e.kind, e.account) for e in lifted] == [("account", "demo@example.test")]
                assert await cli_store.login_guard_unlock(account="demo@example.test") == []
            finally:
                await cli_store.close()
            assert (await login(auth, "demo@example.test", PASSWORD, "203.0.113.1")).ok
            # the client lockout was not lifted
            assert (await login(auth, "demo@example.test", PASSWORD, "198.51.100.9")).status == "locked-out"

            cli_store = open_store(path)
            try:
                client = parse_client_key("198.51.100.9")
                assert client is not None
                assert len(await cli_store.login_guard_unlock(client=client)) == 1
            finally:
                await cli_store.close()
            assert (await login(auth, "demo@example.test", PASSWORD, "198.51.100.9")).ok

    run(tmp_path, password_hash, scenario)


def test_a_lockout_not_yet_written_is_not_lifted_by_an_unlock_that_could_not_see_it(
    tmp_path: Path, password_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(path: Path) -> None:
        process = Process(path)
        async with process as auth:
            for i in range(3):
                await login(auth, "demo@example.test", "guess", f"192.0.2.{i + 1}")
            await auth.lockouts.flush()
            held = asyncio.Event()
            real_save = process.store.login_guard_save

            async def held_save(entries: list[LoginGuardEntry], now: float) -> None:
                await held.wait()  # the write is slow: the unlock below runs before it commits
                await real_save(entries, now)

            monkeypatch.setattr(process.store, "login_guard_save", held_save)
            for name in ("a", "b", "c"):  # a client lockout whose row is not written yet
                await login(auth, f"{name}@example.test", "guess", "198.51.100.9")
            cli_store = open_store(path)
            try:
                assert await cli_store.login_guard_unlock(client="198.51.100.9") == []  # nothing to see
                assert len(await cli_store.login_guard_unlock(account="demo@example.test")) == 1
            finally:
                await cli_store.close()
            assert (await login(auth, "x@example.test", PASSWORD, "198.51.100.9")).status == "locked-out"
            assert (await login(auth, "demo@example.test", PASSWORD, "203.0.113.1")).ok
            held.set()
            await auth.lockouts.flush()
            assert [e.kind for e in await process.store.login_guard_entries(0)] == ["client"]

    run(tmp_path, password_hash, scenario)


def test_ended_lockouts_are_deleted_from_the_store(tmp_path: Path) -> None:
    async def main() -> None:
        store = open_store(tmp_path / "mail.sqlite3")
        try:
            await store.login_guard_save(
                [
                    LoginGuardEntry("client", "192.0.2.1", "", until=1500.0, since=600.0),
                    LoginGuardEntry("account", "", "demo@example.test", until=2500.0, since=1600.0),
                ],
                now=1000.0,
            )
            assert [e.kind for e in await store.login_guard_entries(1000.0)] == ["account", "client"]
            assert [e.kind for e in await store.login_guard_entries(2000.0)] == ["account"]
            await store.login_guard_save([], now=2000.0)  # every write deletes what has ended
            assert [e.kind for e in await store.login_guard_entries(0.0)] == ["account"]
            guard = LoginGuard(CONFIG, wall_clock=lambda: 2000.0)
            journal = LockoutJournal(store, guard, wall_clock=lambda: 2000.0)
            await journal.load()
            assert guard.check("192.0.2.1", "demo@example.test") == ACCOUNT_LOCKED_REASON
            assert guard.check("192.0.2.1", "other@example.test") is None
        finally:
            await store.close()

    asyncio.run(main())


def test_a_version_6_store_gets_the_login_guard_table(tmp_path: Path) -> None:
    path = tmp_path / "v6.sqlite3"

    async def create() -> None:
        store = open_store(path)
        await store.close()

    asyncio.run(create())
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE login_guard")
    conn.execute("UPDATE meta SET value = 6 WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    async def check() -> None:
        store = open_store(path)
        try:
            entry = LoginGuardEntry("account", "", "demo@example.test", until=5000.0, since=4000.0)
            await store.login_guard_save([entry], now=4500.0)
            assert await store.login_guard_entries(4500.0) == [entry]
        finally:
            await store.close()

    asyncio.run(check())
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        assert version == SCHEMA_VERSION
    finally:
        conn.close()


def test_the_record_of_written_lockouts_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockouts_module, "MAX_ENTRIES", 4)  # limit 12, pruned down to 9

    async def main() -> None:
        store = open_store(tmp_path / "mail.sqlite3")
        try:
            journal = LockoutJournal(store, LoginGuard(CONFIG))
            for i in range(13):
                journal.record([LoginGuardEntry("client", f"192.0.2.{i}", "", 9e9, 1.0)])
                await journal.flush()
            assert journal.tracked() == 9
            assert len(await store.login_guard_entries(0)) == 13  # the store keeps every one
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1 ", "192.0.2.1"),
        ("192.0.2.1/32", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2::99", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:0:0:0:1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::/64", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::/128", "2001:db8:1:2::/64"),
        ("2001:db8::/48", None),
        ("192.0.2.0/24", None),
        ("demo@example.test", None),
        ("admin", None),
    ],
)
def test_parse_client_key(text: str, key: str | None) -> None:
    assert parse_client_key(text) == key
