"""Contract: account security (docs/decisions/0052): the TOTP second factor with its replay rule and recovery
codes, app passwords by hash, recent logins bounded per account, identities with one default, and all of it
gone with the account."""

from __future__ import annotations

import pytest

from postoffice.store import (
    LOGIN_HISTORY,
    AlreadyExists,
    AppPassword,
    Identity,
    LoginEvent,
    MailStore,
    NotFound,
    SecondFactor,
)
from tests.store.contract.harness import Backend, covers

S = MailStore
NOW = 1_800_000_000.0


@covers(S.second_factor, S.set_second_factor, S.use_totp_step, S.use_recovery_code)
def test_second_factor_on_off_each_step_and_recovery_code_used_once(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_domain("example.test")
        demo = await store.add_account("demo@example.test", "x")
        other = await store.add_account("other@example.test", "x")
        assert await store.second_factor(demo.id) is None
        assert not demo.two_factor
        assert not await store.use_totp_step(demo.id, 5)  # no second factor: nothing to accept

        await store.set_second_factor(demo.id, "JBSWY3DPEHPK3PXP", ["a" * 64, "b" * 64, "a" * 64])
        assert await store.second_factor(demo.id) == SecondFactor("JBSWY3DPEHPK3PXP", 0, 2)
        account = await store.get_account("demo@example.test")
        assert account is not None
        assert account.two_factor
        assert await store.second_factor(other.id) is None

        assert await store.use_totp_step(demo.id, 100)
        assert not await store.use_totp_step(demo.id, 100)  # the same code twice: refused
        assert not await store.use_totp_step(demo.id, 99)  # an older one too
        assert await store.use_totp_step(demo.id, 101)
        factor = await store.second_factor(demo.id)
        assert factor is not None
        assert factor.last_step == 101

        assert await store.use_recovery_code(demo.id, "a" * 64)
        assert not await store.use_recovery_code(demo.id, "a" * 64)
        assert not await store.use_recovery_code(other.id, "b" * 64)  # another account's code
        factor = await store.second_factor(demo.id)
        assert factor is not None
        assert factor.recovery_codes == 1

        await store.set_second_factor(demo.id, "JBSWY3DPEHPK3PXP", ["e" * 64])  # new codes, same secret
        assert await store.second_factor(demo.id) == SecondFactor("JBSWY3DPEHPK3PXP", 101, 1)
        assert not await store.use_totp_step(demo.id, 101)  # still used
        assert not await store.use_recovery_code(demo.id, "b" * 64)  # the old codes are gone
        await store.set_second_factor(demo.id, "NEWSECRET", ["c" * 64])  # enrolled again: old codes gone
        assert await store.second_factor(demo.id) == SecondFactor("NEWSECRET", 0, 1)
        assert not await store.use_recovery_code(demo.id, "b" * 64)

        await store.set_second_factor(demo.id, None, ["d" * 64])
        assert await store.second_factor(demo.id) is None
        assert not await store.use_recovery_code(demo.id, "c" * 64)
        assert not await store.use_recovery_code(demo.id, "d" * 64)
        account = await store.get_account("demo@example.test")
        assert account is not None
        assert not account.two_factor
        with pytest.raises(NotFound):
            await store.set_second_factor(other.id + 1000, "X")

    backend.run(scenario)


@covers(
    S.add_app_password,
    S.list_app_passwords,
    S.find_app_password,
    S.app_password_used,
    S.remove_app_password,
)
def test_app_passwords_are_found_by_hash_per_account_and_revoked(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_domain("example.test")
        demo = await store.add_account("demo@example.test", "x")
        other = await store.add_account("other@example.test", "x")
        phone = await store.add_app_password(demo.id, "Phone", "1" * 64, NOW)
        laptop = await store.add_app_password(demo.id, "Laptop", "2" * 64, NOW + 1)
        assert phone == AppPassword(phone.id, demo.id, "Phone", NOW)
        with pytest.raises(AlreadyExists):
            await store.add_app_password(demo.id, "Phone", "3" * 64, NOW)
        with pytest.raises(NotFound):
            await store.add_app_password(other.id + 1000, "X", "4" * 64, NOW)
        await store.add_app_password(other.id, "Phone", "1" * 64, NOW)  # names and hashes are per account

        assert [p.name for p in await store.list_app_passwords(demo.id)] == ["Laptop", "Phone"]
        assert await store.find_app_password(demo.id, "1" * 64) == phone
        assert await store.find_app_password(demo.id, "9" * 64) is None
        assert await store.find_app_password(other.id, "2" * 64) is None

        await store.app_password_used(laptop.id, NOW + 50, "imap", "192.0.2.7")
        found = await store.find_app_password(demo.id, "2" * 64)
        assert found == AppPassword(laptop.id, demo.id, "Laptop", NOW + 1, NOW + 50, "imap", "192.0.2.7")

        assert not await store.remove_app_password(other.id, phone.id)  # not the other account's to revoke
        assert await store.remove_app_password(demo.id, phone.id)
        assert not await store.remove_app_password(demo.id, phone.id)
        assert await store.find_app_password(demo.id, "1" * 64) is None
        assert [p.name for p in await store.list_app_passwords(demo.id)] == ["Laptop"]

    backend.run(scenario)


@covers(S.record_login, S.recent_logins)
def test_recent_logins_newest_first_and_bounded(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_domain("example.test")
        demo = await store.add_account("demo@example.test", "x")
        other = await store.add_account("other@example.test", "x")
        for i in range(LOGIN_HISTORY + 5):
            await store.record_login(demo.id, LoginEvent(NOW + i, "imap", "192.0.2.1", "ok", "password"))
        await store.record_login(other.id, LoginEvent(NOW, "web", "::1", "bad-credentials"))
        events = await store.recent_logins(demo.id, limit=LOGIN_HISTORY + 50)
        assert len(events) == LOGIN_HISTORY
        assert events[0] == LoginEvent(NOW + LOGIN_HISTORY + 4, "imap", "192.0.2.1", "ok", "password")
        assert events[-1].time == NOW + 5
        assert await store.recent_logins(other.id) == [LoginEvent(NOW, "web", "::1", "bad-credentials")]
        assert len(await store.recent_logins(demo.id, limit=3)) == 3
        with pytest.raises(NotFound):
            await store.record_login(other.id + 1000, LoginEvent(NOW, "web", "::1", "ok"))

    backend.run(scenario)


@covers(S.list_identities, S.save_identity, S.remove_identity)
def test_identities_one_default_per_account(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_domain("example.test")
        demo = await store.add_account("demo@example.test", "x")
        other = await store.add_account("other@example.test", "x")
        work = await store.save_identity(
            Identity(0, demo.id, "demo@example.test", "Demo Work", "-- \nDemo", "", default=True)
        )
        assert work.id > 0
        assert work.default
        sales = await store.save_identity(
            Identity(0, demo.id, "sales@example.test", "Sales", "", "team@example.test")
        )
        assert [i.id for i in await store.list_identities(demo.id)] == [work.id, sales.id]
        assert await store.list_identities(other.id) == []

        sales = await store.save_identity(
            Identity(sales.id, demo.id, "sales@example.test", "Sales", default=True)
        )
        identities = await store.list_identities(demo.id)
        assert [(i.id, i.default) for i in identities] == [(sales.id, True), (work.id, False)]
        assert identities[0].reply_to == ""  # saved whole

        with pytest.raises(NotFound):
            await store.save_identity(Identity(sales.id, other.id, "x@example.test"))  # not the other's
        with pytest.raises(NotFound):
            await store.save_identity(Identity(0, other.id + 1000, "x@example.test"))
        assert not await store.remove_identity(other.id, work.id)
        assert await store.remove_identity(demo.id, work.id)
        assert [i.id for i in await store.list_identities(demo.id)] == [sales.id]

    backend.run(scenario)


@covers(S.remove_account)
def test_removing_an_account_removes_its_security_records_and_identities(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_domain("example.test")
        demo = await store.add_account("demo@example.test", "x")
        await store.set_second_factor(demo.id, "SECRET", ["a" * 64])
        await store.add_app_password(demo.id, "Phone", "1" * 64, NOW)
        await store.record_login(demo.id, LoginEvent(NOW, "imap", "::1", "ok"))
        await store.save_identity(Identity(0, demo.id, "demo@example.test"))
        await store.remove_account("demo@example.test")
        again = await store.add_account("demo@example.test", "x")
        # Whatever id the new account gets, nothing of the old one is found under it.
        assert await store.second_factor(again.id) is None
        assert await store.list_app_passwords(again.id) == []
        assert await store.recent_logins(again.id) == []
        assert await store.list_identities(again.id) == []
        assert not await store.use_recovery_code(again.id, "a" * 64)

    backend.run(scenario)
