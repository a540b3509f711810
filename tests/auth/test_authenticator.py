"""Authenticator.login against a real SQLite store with real argon2id hashes."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from postoffice.auth import sasl
from postoffice.auth.authenticator import Authenticator, AuthResult
from postoffice.auth.guard import IP_LOCKED_REASON, LoginGuard
from postoffice.config import AuthConfig
from postoffice.directory import passwords
from postoffice.store import Account, MailStore, StoreError, open_store

PASSWORD = "correct horse battery staple"
CONFIG = AuthConfig(
    allow_plaintext_auth=False,
    failure_delay=1.0,
    ip_max_failures=3,
    account_max_failures=3,
    failure_window=900.0,
    lockout=900.0,
)


@pytest.fixture(scope="module")
def password_hash() -> str:
    return passwords.hash_password(PASSWORD)


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Counter:
    """Wraps a function and counts its calls."""

    def __init__(self, fn: Callable[..., object]) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, *args: object) -> object:
        self.calls += 1
        return self.fn(*args)


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def dummy(monkeypatch: pytest.MonkeyPatch) -> Counter:
    counter = Counter(passwords.verify_dummy_password)
    monkeypatch.setattr(passwords, "verify_dummy_password", counter)
    return counter


@pytest.fixture
def verify(monkeypatch: pytest.MonkeyPatch) -> Counter:
    counter = Counter(passwords.verify_password)
    monkeypatch.setattr(
        passwords, "verify_password", counter
    )  # the authenticator calls it in its argon2 pool
    return counter


Scenario = Callable[[MailStore, Authenticator], Awaitable[None]]


def run(tmp_path: Path, password_hash: str, sleep: FakeSleep, scenario: Scenario) -> None:
    async def main() -> None:
        store = open_store(tmp_path / "mail.sqlite3")
        try:
            await store.add_domain("example.test")
            await store.add_account("demo@example.test", password_hash)
            await store.add_alias("info@example.test", ["demo@example.test"])
            auth = Authenticator(store, CONFIG, sleep=sleep)
            try:
                await scenario(store, auth)
            finally:
                await auth.close()
        finally:
            await store.close()

    asyncio.run(main())


async def pop3_login(
    auth: Authenticator, username: str, password: str, client_ip: str = "127.0.0.1"
) -> AuthResult:
    return await auth.login(
        protocol="pop3",
        client_ip=client_ip,
        username=username,
        password=password,
        mechanism="PLAIN",
        tls=True,
    )


def login_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "postoffice.auth" and r.levelno == logging.INFO
    ]


def test_the_right_password_logs_in(
    tmp_path: Path, password_hash: str, sleep: FakeSleep, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        result = await pop3_login(auth, "demo@example.test", PASSWORD)
        assert result.ok
        assert result.status == "ok"
        assert result.reason == ""
        assert result.account is not None
        assert result.account.address == "demo@example.test"

    with caplog.at_level(logging.INFO, logger="postoffice.auth"):
        run(tmp_path, password_hash, sleep, scenario)
    assert sleep.calls == []
    assert login_lines(caplog) == [
        "login protocol=pop3 client=127.0.0.1 account=demo@example.test mechanism=PLAIN tls=yes result=ok"
    ]
    assert PASSWORD not in caplog.text


def test_a_wrong_password_fails_after_the_delay(
    tmp_path: Path, password_hash: str, sleep: FakeSleep, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        result = await auth.login(
            protocol="pop2",
            client_ip="192.0.2.7",
            username="demo@example.test",
            password="wrong",
            mechanism="HELO",
            tls=False,
        )
        assert result == AuthResult(False, "bad-credentials", None, "authentication failed")

    with caplog.at_level(logging.INFO, logger="postoffice.auth"):
        run(tmp_path, password_hash, sleep, scenario)
    assert sleep.calls == [CONFIG.failure_delay]
    assert login_lines(caplog) == [
        "login protocol=pop2 client=192.0.2.7 account=demo@example.test mechanism=HELO tls=no "
        "result=bad-credentials"
    ]
    assert "wrong" not in caplog.text


def test_an_unknown_account_runs_the_dummy_verification(
    tmp_path: Path, password_hash: str, sleep: FakeSleep, dummy: Counter, verify: Counter
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        result = await pop3_login(auth, "nobody@example.test", PASSWORD)
        assert result.status == "bad-credentials"
        assert result.reason == "authentication failed"  # the same words as for a wrong password

    run(tmp_path, password_hash, sleep, scenario)
    assert dummy.calls == 1
    assert sleep.calls == [CONFIG.failure_delay]


def test_an_alias_is_not_a_login_name(
    tmp_path: Path, password_hash: str, sleep: FakeSleep, dummy: Counter
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        result = await pop3_login(auth, "info@example.test", PASSWORD)  # delivers to demo, right password
        assert result.status == "bad-credentials"
        assert result.account is None

    run(tmp_path, password_hash, sleep, scenario)
    assert dummy.calls == 1


def test_login_names_are_case_insensitive(tmp_path: Path, password_hash: str, sleep: FakeSleep) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        result = await pop3_login(auth, " Demo@EXAMPLE.test", PASSWORD)
        assert result.status == "ok"
        assert result.account is not None
        assert result.account.address == "demo@example.test"

    run(tmp_path, password_hash, sleep, scenario)


def test_passwords_are_case_sensitive(tmp_path: Path, password_hash: str, sleep: FakeSleep) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        assert (await pop3_login(auth, "demo@example.test", PASSWORD.upper())).status == "bad-credentials"

    run(tmp_path, password_hash, sleep, scenario)


def test_a_locked_out_client_gets_no_password_verification(
    tmp_path: Path,
    password_hash: str,
    sleep: FakeSleep,
    dummy: Counter,
    verify: Counter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        for i in range(CONFIG.ip_max_failures):
            result = await pop3_login(auth, f"guess{i}@example.test", "x", client_ip="198.51.100.9")
            assert result.status == "bad-credentials"
        assert dummy.calls == CONFIG.ip_max_failures
        before = (dummy.calls, verify.calls)
        result = await pop3_login(auth, "demo@example.test", PASSWORD, client_ip="198.51.100.9")
        assert result == AuthResult(False, "locked-out", None, IP_LOCKED_REASON)
        assert (dummy.calls, verify.calls) == before
        # other clients are not affected
        assert (await pop3_login(auth, "demo@example.test", PASSWORD, client_ip="192.0.2.1")).ok

    with caplog.at_level(logging.INFO, logger="postoffice.auth"):
        run(tmp_path, password_hash, sleep, scenario)
    assert sleep.calls == [CONFIG.failure_delay] * (CONFIG.ip_max_failures + 1)
    lines = login_lines(caplog)
    assert lines[-2] == (
        "login protocol=pop3 client=198.51.100.9 account=demo@example.test mechanism=PLAIN tls=yes "
        "result=locked-out"
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["lockout client=198.51.100.9 duration=900s failures=3 window=900s"]


def test_an_account_lockout_applies_across_protocols_and_addresses(
    tmp_path: Path, password_hash: str, sleep: FakeSleep
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        for i in range(CONFIG.account_max_failures):
            await pop3_login(auth, "demo@example.test", "wrong", client_ip=f"198.51.100.{i}")
        result = await auth.login(
            protocol="pop2",
            client_ip="203.0.113.5",
            username="DEMO@example.test",
            password=PASSWORD,
            mechanism="HELO",
            tls=False,
        )
        assert result.status == "locked-out"
        assert result.reason == "too many failed logins for this account"

    run(tmp_path, password_hash, sleep, scenario)


def test_a_recent_login_survives_an_attack_on_the_account(
    tmp_path: Path, password_hash: str, sleep: FakeSleep
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        assert (await pop3_login(auth, "demo@example.test", PASSWORD, client_ip="192.0.2.1")).ok
        for i in range(CONFIG.account_max_failures):
            await pop3_login(auth, "demo@example.test", "wrong", client_ip=f"198.51.100.{i}")
        assert (await pop3_login(auth, "demo@example.test", PASSWORD, client_ip="192.0.2.1")).ok
        assert (await pop3_login(auth, "demo@example.test", PASSWORD, client_ip="192.0.2.2")).status == (
            "locked-out"
        )

    run(tmp_path, password_hash, sleep, scenario)


def test_the_guard_can_be_shared_and_injected(tmp_path: Path, password_hash: str, sleep: FakeSleep) -> None:
    guard = LoginGuard(CONFIG, clock=lambda: 5000.0)

    async def scenario(store: MailStore, _: Authenticator) -> None:
        auth = Authenticator(store, CONFIG, guard=guard, sleep=sleep)
        assert auth.guard is guard
        await pop3_login(auth, "demo@example.test", "wrong")
        assert guard.table_sizes()["account_failures"] == 1

    run(tmp_path, password_hash, sleep, scenario)


def test_sasl_plain_credentials_log_in(tmp_path: Path, password_hash: str, sleep: FakeSleep) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        mechanism = sasl.create_mechanism("PLAIN")
        assert mechanism is not None
        decoded = sasl.decode_response("AGRlbW9AZXhhbXBsZS50ZXN0AGNvcnJlY3QgaG9yc2UgYmF0dGVyeSBzdGFwbGU=")
        assert decoded is not None
        credentials = mechanism.start(decoded)
        assert isinstance(credentials, sasl.Credentials)
        result = await auth.login_sasl(
            protocol="pop3", client_ip="::1", credentials=credentials, mechanism="PLAIN", tls=True
        )
        assert result.ok

    run(tmp_path, password_hash, sleep, scenario)


@pytest.mark.parametrize(
    ("authzid", "accepted"), [("DEMO@example.test", True), ("other@example.test", False)]
)
def test_authzid_must_be_the_login_name(
    tmp_path: Path, password_hash: str, sleep: FakeSleep, authzid: str, accepted: bool
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        credentials = sasl.Credentials(authzid=authzid, authcid="demo@example.test", password=PASSWORD)
        result = await auth.login_sasl(
            protocol="pop3", client_ip="127.0.0.1", credentials=credentials, mechanism="PLAIN", tls=True
        )
        if accepted:
            assert result.ok
        else:
            assert result.status == "bad-credentials"
            assert result.account is None
            assert sleep.calls == [CONFIG.failure_delay]

    run(tmp_path, password_hash, sleep, scenario)


def test_an_old_hash_is_replaced_after_a_successful_login(
    tmp_path: Path, password_hash: str, sleep: FakeSleep, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(passwords, "needs_rehash", lambda _hash: True)

    async def scenario(store: MailStore, auth: Authenticator) -> None:
        result = await pop3_login(auth, "demo@example.test", PASSWORD)
        assert result.ok
        stored = await store.get_account("demo@example.test")
        assert stored is not None
        assert stored.password_hash != password_hash
        assert passwords.verify_password(stored.password_hash, PASSWORD)
        assert result.account is not None
        assert result.account.password_hash == stored.password_hash

    run(tmp_path, password_hash, sleep, scenario)


def test_no_rehash_when_the_hash_is_current(tmp_path: Path, password_hash: str, sleep: FakeSleep) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        assert (await pop3_login(auth, "demo@example.test", PASSWORD)).ok
        stored = await store.get_account("demo@example.test")
        assert stored is not None
        assert stored.password_hash == password_hash

    run(tmp_path, password_hash, sleep, scenario)


def test_a_failed_rehash_does_not_fail_the_login(
    tmp_path: Path,
    password_hash: str,
    sleep: FakeSleep,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(passwords, "needs_rehash", lambda _hash: True)

    async def scenario(store: MailStore, auth: Authenticator) -> None:
        calls: list[str] = []

        async def broken_set_password(address: str, new_hash: str) -> None:
            calls.append(address)
            raise StoreError("disk full")

        monkeypatch.setattr(store, "set_password", broken_set_password)
        result = await pop3_login(auth, "demo@example.test", PASSWORD)
        assert result.ok
        assert calls == ["demo@example.test"]

    with caplog.at_level(logging.INFO, logger="postoffice.auth"):
        run(tmp_path, password_hash, sleep, scenario)
    assert login_lines(caplog)[-1].endswith("result=ok")
    assert "password rehash for demo@example.test failed: disk full" in caplog.text


def test_a_store_error_answers_unavailable(
    tmp_path: Path,
    password_hash: str,
    sleep: FakeSleep,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        async def broken_get_account(address: str) -> None:
            raise StoreError("database is locked")

        monkeypatch.setattr(store, "get_account", broken_get_account)
        result = await pop3_login(auth, "demo@example.test", PASSWORD)
        assert result.status == "unavailable"
        assert not result.ok
        assert result.reason
        assert auth.guard.table_sizes()["account_failures"] == 0  # not counted as a failed login

    with caplog.at_level(logging.INFO, logger="postoffice.auth"):
        run(tmp_path, password_hash, sleep, scenario)
    assert login_lines(caplog) == [
        "login protocol=pop3 client=127.0.0.1 account=demo@example.test mechanism=PLAIN tls=yes "
        "result=unavailable"
    ]
    assert "database is locked" in caplog.text


def test_a_login_name_cannot_forge_log_lines(
    tmp_path: Path, password_hash: str, sleep: FakeSleep, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        await pop3_login(auth, "x\r\nlogin protocol=pop3 result=ok", "pw")

    with caplog.at_level(logging.INFO, logger="postoffice.auth"):
        run(tmp_path, password_hash, sleep, scenario)
    (line,) = login_lines(caplog)
    assert "\n" not in line
    assert "\r" not in line
    assert line.endswith("result=bad-credentials")


@pytest.fixture
def unused_store(tmp_path: Path) -> Iterator[MailStore]:
    """A real store that the test never touches (plaintext_allowed does not read it)."""
    store = open_store(tmp_path / "mail.sqlite3")
    yield store
    asyncio.run(store.close())


def test_plaintext_allowed(unused_store: MailStore) -> None:
    store = unused_store
    strict = Authenticator(store, CONFIG)
    assert strict.plaintext_allowed(True)
    assert not strict.plaintext_allowed(False)
    lax = Authenticator(store, AuthConfig(allow_plaintext_auth=True))
    assert lax.plaintext_allowed(False)


@pytest.mark.parametrize(
    ("allow", "client", "tls_offered", "allowed"),
    [
        (False, "127.0.0.1", False, True),  # POP2 from loopback: the password stays on the host
        (False, "::1", False, True),
        (False, "192.0.2.7", False, False),  # POP2 from elsewhere needs allow_plaintext_auth
        (True, "192.0.2.7", False, True),
        (False, "127.0.0.1", True, False),  # a protocol with TLS gets no loopback exception
        (False, "not an address", False, False),
    ],
)
def test_plaintext_allowed_from_loopback_only_for_protocols_without_tls(
    unused_store: MailStore, allow: bool, client: str, tls_offered: bool, allowed: bool
) -> None:
    """Decision 0035: the one place that decides, POP2's loopback rule included."""
    auth = Authenticator(unused_store, AuthConfig(allow_plaintext_auth=allow))
    assert auth.plaintext_allowed(False, client_ip=client, tls_offered=tls_offered) is allowed
    assert auth.plaintext_allowed(True, client_ip=client, tls_offered=tls_offered)


def test_a_recently_verified_password_skips_argon2_until_the_password_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_verify = passwords.verify_password

    def counting_verify(stored: str, password: str) -> bool:
        calls.append(password)
        return real_verify(stored, password)

    monkeypatch.setattr(passwords, "verify_password", counting_verify)  # called in the argon2 pool

    async def main() -> None:
        store = open_store(tmp_path / "s.sqlite3")
        try:
            await store.add_domain("example.test")
            await store.add_account("demo@example.test", passwords.hash_password("right"))
            auth = Authenticator(store, AuthConfig(allow_plaintext_auth=False, failure_delay=0))
            login = functools.partial(
                auth.login, protocol="pop3", client_ip="127.0.0.1", mechanism="USER", tls=True
            )
            assert (await login(username="demo@example.test", password="right")).ok
            assert (await login(username="DEMO@example.test", password="right")).ok
            assert calls == ["right"]  # the second login was recognised from the cache
            assert not (await login(username="demo@example.test", password="wrong")).ok
            assert calls == ["right", "wrong"]  # failures always cost a real verification
            await store.set_password("demo@example.test", passwords.hash_password("new"))
            assert not (await login(username="demo@example.test", password="right")).ok
            assert (await login(username="demo@example.test", password="new")).ok
            assert calls == ["right", "wrong", "right", "new"]
        finally:
            await store.close()

    asyncio.run(main())


# -- one canonical login name (issue 9, item 3) --------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "demo@example.test\u3002",  # ideographic full stop
        "demo@example.test\uff0e",  # fullwidth full stop
        "demo@example.test\uff61",  # halfwidth ideographic full stop
        "demo@example.test.",
        "DEMO@Example.TEST",
        "  demo@example.test\t",
        "\u3000demo@example.test\u3002",
    ],
)
def test_a_locked_account_stays_locked_under_every_spelling_of_its_name(
    tmp_path: Path, password_hash: str, sleep: FakeSleep, verify: Counter, spelling: str
) -> None:
    """The lockout and the account lookup use one key: normalising it again must not give another."""

    async def scenario(store: MailStore, auth: Authenticator) -> None:
        for i in range(CONFIG.account_max_failures):  # from different addresses: an account lockout only
            await pop3_login(auth, "demo@example.test", "wrong", client_ip=f"192.0.2.{i + 1}")
        calls = verify.calls
        result = await pop3_login(auth, spelling, PASSWORD, client_ip="198.51.100.7")
        assert result.status == "locked-out"
        assert not result.ok
        assert verify.calls == calls  # no password check while locked

    run(tmp_path, password_hash, sleep, scenario)


# -- simultaneous logins share one verification (issue 9, item 6) --------------------------------------------


class Gate:
    """Stands in for passwords.verify_password in the argon2 pool: counts calls, tells when one has started
    and holds it until released (threading events: the pool runs in other threads)."""

    def __init__(self) -> None:
        self.real = passwords.verify_password
        self.calls = 0
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self, stored: str, password: str) -> bool:
        self.calls += 1
        self.entered.set()
        self.released.wait(60)
        return self.real(stored, password)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 60)


def run_with(tmp_path: Path, password_hash: str, config: AuthConfig, scenario: Scenario) -> None:
    async def main() -> None:
        store = open_store(tmp_path / "mail.sqlite3")
        try:
            await store.add_domain("example.test")
            await store.add_account("demo@example.test", password_hash)
            await store.add_account("other@example.test", password_hash)
            auth = Authenticator(store, config, sleep=FakeSleep())
            try:
                await scenario(store, auth)
            finally:
                await auth.close()
        finally:
            await store.close()

    asyncio.run(main())


LENIENT = AuthConfig(
    allow_plaintext_auth=False, failure_delay=1.0, ip_max_failures=1000, account_max_failures=1000
)


def test_simultaneous_logins_with_the_right_password_run_argon2_once(
    tmp_path: Path, password_hash: str, verify: Counter
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        results = await asyncio.gather(
            *(
                pop3_login(auth, "demo@example.test", PASSWORD, client_ip=f"10.0.{i // 250}.{i % 250}")
                for i in range(200)
            )
        )
        assert all(r.ok and r.account is not None for r in results)
        assert verify.calls == 1

    run_with(tmp_path, password_hash, LENIENT, scenario)


def test_wrong_passwords_never_share_the_right_passwords_verification(
    tmp_path: Path, password_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()  # no verification ends before every attempt waits: the count below does not race argon2
    monkeypatch.setattr(passwords, "verify_password", gate)

    async def scenario(store: MailStore, auth: Authenticator) -> None:
        attempts = [("demo@example.test", PASSWORD if i % 2 else "guess") for i in range(100)]
        attempts += [("other@example.test", "guess")] * 20  # the same guess for another account
        logins = asyncio.gather(*(pop3_login(auth, user, pw) for user, pw in attempts))
        await gate.wait_entered()
        while auth.waiting < len(attempts):  # each attempt looks its account up in the store's threads
            await asyncio.sleep(0.001)
            assert not logins.done()
        gate.released.set()
        results = await logins
        for (user, pw), result in zip(attempts, results, strict=True):
            assert result.ok == (pw == PASSWORD), (user, pw, result)
            if result.ok:
                assert result.account is not None
                assert result.account.address == user
        assert gate.calls == 3  # demo right, demo "guess", other "guess"
        assert auth.guard.table_sizes()["account_failures"] == 2  # every wrong attempt still counted

    run_with(tmp_path, password_hash, LENIENT, scenario)


def test_beyond_max_pending_verifications_a_login_gets_a_temporary_failure(
    tmp_path: Path,
    password_hash: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate()
    monkeypatch.setattr(passwords, "verify_password", gate)
    config = dataclasses.replace(LENIENT, max_pending_verifications=1)

    async def scenario(store: MailStore, auth: Authenticator) -> None:
        first = asyncio.create_task(pop3_login(auth, "demo@example.test", PASSWORD))
        await gate.wait_entered()
        refused = await pop3_login(auth, "other@example.test", PASSWORD)
        assert refused.status == "unavailable"
        assert not refused.ok
        assert refused.reason
        wrong = await pop3_login(auth, "demo@example.test", "guess")  # another verification: refused too
        assert wrong.status == "unavailable"
        assert auth.guard.table_sizes()["account_failures"] == 0  # not counted as failed logins
        joined = asyncio.create_task(pop3_login(auth, "demo@example.test", PASSWORD))  # shares the first
        gate.released.set()
        assert (await first).ok
        assert (await joined).ok
        assert gate.calls == 1
        assert (await pop3_login(auth, "other@example.test", PASSWORD)).ok  # room again

    with caplog.at_level(logging.INFO, logger="postoffice.auth"):
        run_with(tmp_path, password_hash, config, scenario)
    assert "login verification queue full" in caplog.text
    assert sum(line.endswith("result=unavailable") for line in login_lines(caplog)) == 2


def test_a_client_that_gives_up_does_not_cancel_a_shared_verification(
    tmp_path: Path, password_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    monkeypatch.setattr(passwords, "verify_password", gate)

    async def scenario(store: MailStore, auth: Authenticator) -> None:
        share = auth._verification
        second_joined = asyncio.Event()

        def joining(name: str, account: Account | None, password: str, mac: bytes) -> Any:
            shared = share(name, account, password, mac)
            if auth.waiting == 1:  # the first login waits for this verification: this is the second
                second_joined.set()
            return shared

        monkeypatch.setattr(auth, "_verification", joining)
        first = asyncio.create_task(pop3_login(auth, "demo@example.test", PASSWORD))
        await gate.wait_entered()
        second = asyncio.create_task(pop3_login(auth, "demo@example.test", PASSWORD))
        await second_joined.wait()  # the second goes on to wait for the shared verification before this
        assert auth.waiting == 2
        first.cancel()  # the first client's connection closed
        gate.released.set()
        assert (await second).ok
        assert gate.calls == 1
        with pytest.raises(asyncio.CancelledError):
            await first

    run_with(tmp_path, password_hash, LENIENT, scenario)
