"""Authenticator with app passwords and TOTP (decision 0052): app passwords open the mail protocols (never the
web); once TOTP is on the main password alone opens only the web's first step; the second step takes a TOTP
code once or a recovery code once; every attempt on an existing account lands in its recent logins."""

from __future__ import annotations

import time
from pathlib import Path

from postoffice.auth import factors
from postoffice.auth.authenticator import Authenticator, AuthResult
from postoffice.store import MailStore
from tests.auth.test_authenticator import (
    PASSWORD,
    Counter,
    FakeSleep,
    dummy,
    password_hash,
    pop3_login,
    run,
    sleep,
)

__all__ = ["dummy", "password_hash", "sleep"]  # fixtures


async def web_login(auth: Authenticator, password: str) -> AuthResult:
    return await auth.login(
        protocol="web",
        client_ip="192.0.2.9",
        username="demo@example.test",
        password=password,
        mechanism="FORM",
        tls=True,
    )


async def add_app_password(store: MailStore, name: str) -> str:
    account = await store.get_account("demo@example.test")
    assert account is not None
    password = factors.new_app_password()
    await store.add_app_password(account.id, name, factors.secret_hash(password), time.time())
    return password


async def turn_on_totp(store: MailStore) -> tuple[str, list[str]]:
    account = await store.get_account("demo@example.test")
    assert account is not None
    secret = factors.new_totp_secret()
    codes = factors.new_recovery_codes()
    await store.set_second_factor(account.id, secret, [factors.secret_hash(c) for c in codes])
    return secret, codes


def test_an_app_password_opens_mail_protocols_and_records_its_use(
    tmp_path: Path, password_hash: str, sleep: FakeSleep
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        phone = await add_app_password(store, "Phone")
        result = await pop3_login(auth, "demo@example.test", phone.upper().replace(" ", ""))
        assert result.ok
        assert result.account is not None
        (listed,) = await store.list_app_passwords(result.account.id)
        assert (listed.last_protocol, listed.last_client) == ("pop3", "127.0.0.1")
        assert listed.last_used is not None
        assert not (await web_login(auth, phone)).ok  # the web takes the account password only
        assert (await pop3_login(auth, "demo@example.test", PASSWORD)).ok  # no TOTP: the password still works
        logins = await store.recent_logins(result.account.id)
        assert [(e.protocol, e.result, e.method) for e in logins] == [
            ("pop3", "ok", "password"),
            ("web", "bad-credentials", "password"),
            ("pop3", "ok", "app password Phone"),
        ]

    run(tmp_path, password_hash, sleep, scenario)


def test_with_totp_on_the_password_alone_opens_no_mail_protocol_and_only_the_webs_first_step(
    tmp_path: Path, password_hash: str, sleep: FakeSleep
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        phone = await add_app_password(store, "Phone")
        await turn_on_totp(store)
        refused = await pop3_login(auth, "demo@example.test", PASSWORD)
        assert refused == AuthResult(False, "bad-credentials", None, "authentication failed")
        assert (await pop3_login(auth, "demo@example.test", phone)).ok
        first = await web_login(auth, PASSWORD)
        assert (first.ok, first.status) == (False, "second-factor")
        assert first.account is not None
        assert first.account.address == "demo@example.test"
        assert (await web_login(auth, "wrong")).status == "bad-credentials"

    run(tmp_path, password_hash, sleep, scenario)


def test_the_second_step_takes_each_totp_code_once_and_each_recovery_code_once(
    tmp_path: Path, password_hash: str, sleep: FakeSleep
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        secret, codes = await turn_on_totp(store)
        first = await web_login(auth, PASSWORD)
        account = first.account
        assert account is not None
        code = factors.totp_code(secret, factors.totp_step(time.time()))
        ok = await auth.second_factor(account=account, client_ip="192.0.2.9", code=code)
        assert ok.ok
        assert ok.account == account
        replay = await auth.second_factor(account=account, client_ip="192.0.2.9", code=code)
        assert replay.status == "bad-credentials"
        wrong = "000000" if code != "000000" else "111111"
        assert (await auth.second_factor(account=account, client_ip="192.0.2.9", code=wrong)).status == (
            "bad-credentials"
        )
        assert (await auth.second_factor(account=account, client_ip="192.0.2.9", code=codes[0].upper())).ok
        again = await auth.second_factor(account=account, client_ip="192.0.2.9", code=codes[0])
        assert again.status == "bad-credentials"
        factor = await store.second_factor(account.id)
        assert factor is not None
        assert factor.recovery_codes == len(codes) - 1
        methods = [(e.result, e.method) for e in await store.recent_logins(account.id)]
        assert methods[:2] == [
            ("bad-credentials", "password+recovery code"),
            ("ok", "password+recovery code"),
        ]
        assert ("ok", "password+totp") in methods
        assert ("bad-credentials", "password+totp") in methods
        assert not any(result == "second-factor" for result, _ in methods)  # the first step is not a login

    run(tmp_path, password_hash, sleep, scenario)


def test_wrong_second_factors_lock_the_account_out_like_wrong_passwords(
    tmp_path: Path, password_hash: str, sleep: FakeSleep
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        await turn_on_totp(store)
        first = await web_login(auth, PASSWORD)
        assert first.account is not None
        for _ in range(3):  # CONFIG: 3 failures
            await auth.second_factor(account=first.account, client_ip="192.0.2.9", code="abcde-fghij")
        locked = await auth.second_factor(account=first.account, client_ip="192.0.2.9", code="abcde-fghij")
        assert locked.status == "locked-out"

    run(tmp_path, password_hash, sleep, scenario)


def test_repeated_equal_logins_are_recorded_once_per_quarter_hour(
    tmp_path: Path, password_hash: str, sleep: FakeSleep
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        for _ in range(3):
            assert (await pop3_login(auth, "demo@example.test", PASSWORD)).ok
        await pop3_login(auth, "demo@example.test", PASSWORD, client_ip="192.0.2.50")
        await pop3_login(auth, "nobody@example.test", PASSWORD)  # no account: nothing to record it with
        account = await store.get_account("demo@example.test")
        assert account is not None
        events = await store.recent_logins(account.id)
        assert [(e.client, e.result) for e in events] == [("192.0.2.50", "ok"), ("127.0.0.1", "ok")]

    run(tmp_path, password_hash, sleep, scenario)


def test_the_refusal_of_the_password_with_totp_on_costs_a_dummy_verification(
    tmp_path: Path, password_hash: str, sleep: FakeSleep, dummy: Counter
) -> None:
    """As for a name without an account: the time of the answer does not tell that TOTP is on."""

    async def scenario(store: MailStore, auth: Authenticator) -> None:
        await turn_on_totp(store)
        assert dummy.calls == 0
        assert (await pop3_login(auth, "demo@example.test", PASSWORD)).status == "bad-credentials"
        assert dummy.calls == 1
        assert (await pop3_login(auth, "nobody@example.test", PASSWORD)).status == "bad-credentials"
        assert dummy.calls == 2

    run(tmp_path, password_hash, sleep, scenario)
