"""Contract: web sessions (docs/decisions/0046): kept by the hash of the browser's token, found only while
neither expired nor idle too long and while the account exists, touched, listed newest first, ended one by one
or all but one (a password change), gone with the account."""

from __future__ import annotations

import pytest

from postoffice.store import MailStore, NotFound, WebSession
from postoffice.store.api import PASSWORD_DERIVED_SETTING
from tests.store.contract.harness import Backend, accounts, covers

S = MailStore
NOW = 1_800_000_000.0
IDLE = 3600.0


def session(sid: str, account_id: int, created: float = NOW, lifetime: float = 86400) -> WebSession:
    return WebSession(
        sid, account_id, f"csrf-{sid}", created, created, created + lifetime, "192.0.2.1", "Browser"
    )


@covers(S.web_session_create, S.web_session_get, S.web_session_touch)
def test_a_session_is_found_until_it_expires_or_idles_out_and_a_touch_keeps_it(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_domain("example.test")
        demo = await store.add_account("demo@example.test", "x")
        await store.web_session_create(session("a" * 64, demo.id))
        found = await store.web_session_get("a" * 64, NOW + 1, IDLE)
        assert found == session("a" * 64, demo.id)
        assert await store.web_session_get("b" * 64, NOW + 1, IDLE) is None  # unknown id
        assert await store.web_session_get("a" * 64, NOW + IDLE + 1, IDLE) is None  # idle too long
        await store.web_session_touch("a" * 64, NOW + IDLE)
        touched = await store.web_session_get("a" * 64, NOW + IDLE + 1, IDLE)
        assert touched is not None
        assert touched.last_seen == NOW + IDLE
        await store.web_session_touch("a" * 64, NOW)  # never moves back
        assert (await store.web_session_get("a" * 64, NOW + IDLE + 1, IDLE)) == touched
        assert (
            await store.web_session_get("a" * 64, NOW + 86400, 10 * 86400) is None
        )  # expired however active
        with pytest.raises(NotFound):
            await store.web_session_create(session("c" * 64, demo.id + 1000))  # no such account

    backend.run(scenario)


@covers(S.web_sessions_list, S.web_session_delete, S.web_sessions_end)
def test_sessions_are_listed_per_account_and_ended_one_or_all_but_one(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_domain("example.test")
        demo = await store.add_account("demo@example.test", "x")
        other = await store.add_account("other@example.test", "x")
        await store.web_session_create(session("1" * 64, demo.id, NOW))
        await store.web_session_create(session("2" * 64, demo.id, NOW + 10))
        await store.web_session_create(session("3" * 64, demo.id, NOW + 20, lifetime=5))
        await store.web_session_create(session("4" * 64, other.id, NOW))
        listed = await store.web_sessions_list(demo.id, NOW + 26)
        assert [s.id for s in listed] == ["2" * 64, "1" * 64]  # newest first, the expired one left out
        assert await store.web_session_delete("1" * 64) is True
        assert await store.web_session_delete("1" * 64) is False
        assert await store.web_session_get("1" * 64, NOW + 1, IDLE) is None
        await store.web_session_create(session("5" * 64, demo.id, NOW + 30))  # deletes the expired "3..."
        assert await store.web_sessions_end(demo.id, keep="5" * 64) == 1  # "2..."
        assert [s.id for s in await store.web_sessions_list(demo.id, NOW + 31)] == ["5" * 64]
        assert [s.id for s in await store.web_sessions_list(other.id, NOW + 31)] == ["4" * 64]
        assert await store.web_sessions_end(demo.id) == 1
        assert await store.web_sessions_list(demo.id, NOW + 31) == []

    backend.run(scenario)


@covers(S.web_session_get)
def test_removing_the_account_ends_its_sessions(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_domain("example.test")
        demo = await store.add_account("demo@example.test", "x")
        await store.web_session_create(session("d" * 64, demo.id))
        await store.remove_account("demo@example.test")
        again = await store.add_account("demo@example.test", "x")  # even if an id were reused
        assert await store.web_session_get("d" * 64, NOW + 1, IDLE) is None
        assert await store.web_sessions_list(again.id, NOW + 1) == []

    backend.run(scenario)


@covers(S.account_settings, S.set_account_setting)
def test_preferences_per_account_by_prefix(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_domain("example.test")
        demo = await store.add_account("demo@example.test", "x")
        other = await store.add_account("other@example.test", "x")
        await store.set_account_setting(demo.id, "images:a@x.test", "1")
        await store.set_account_setting(demo.id, "images:b@y.test", "1")
        await store.set_account_setting(demo.id, "language", "zh_CN")
        await store.set_account_setting(other.id, "images:a@x.test", "1")
        assert await store.account_settings(demo.id, "images:") == {
            "images:a@x.test": "1",
            "images:b@y.test": "1",
        }
        assert (await store.account_settings(demo.id))["language"] == "zh_CN"
        await store.set_account_setting(demo.id, "language", "en")  # replaced
        await store.set_account_setting(demo.id, "images:b@y.test", None)  # removed
        assert await store.account_settings(demo.id) == {"images:a@x.test": "1", "language": "en"}
        assert await store.account_settings(other.id) == {"images:a@x.test": "1"}
        with pytest.raises(NotFound):
            await store.set_account_setting(other.id + 1000, "k", "v")
        await store.remove_account("demo@example.test")
        again = await store.add_account("demo@example.test", "x")
        assert await store.account_settings(again.id) == {}

    backend.run(scenario)


@covers(S.set_password_derived, S.set_password)
def test_a_password_derived_secret_is_kept_only_for_the_hash_it_came_from(backend: Backend) -> None:
    """Decision 0068: the SCRAM secret is stored only while the password hash is the one it was made for,
    and a new password hash takes it away."""

    async def scenario(store: MailStore) -> None:
        (account_id,) = await accounts(store, "demo")
        account = await store.get_account_by_id(account_id)
        assert account is not None
        old_hash = account.password_hash
        assert await store.set_password_derived(account_id, old_hash, "secret-of-old")
        kept = await store.account_settings(account_id, PASSWORD_DERIVED_SETTING)
        assert kept == {PASSWORD_DERIVED_SETTING: "secret-of-old"}
        await store.set_password("demo@example.test", "new-hash")
        assert await store.account_settings(account_id, PASSWORD_DERIVED_SETTING) == {}  # went with the hash
        # a login with the old password, finishing late, must not bring its secret back
        assert not await store.set_password_derived(account_id, old_hash, "secret-of-old")
        assert await store.account_settings(account_id, PASSWORD_DERIVED_SETTING) == {}
        assert await store.set_password_derived(account_id, "new-hash", "secret-of-new")
        assert not await store.set_password_derived(999_999, "new-hash", "x")  # no such account

    backend.run(scenario)
