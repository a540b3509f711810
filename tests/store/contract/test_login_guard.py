"""Contract: lockouts kept across restarts (docs/decisions/0027): entries saved and read back until they end,
ended ones deleted by every save, unlock by client or account (their pairs too, trusted pairs stay), and a
generation that changes after an unlock by any store object (another process: `postoffice auth unlock`)."""

from __future__ import annotations

import pytest

from postoffice.store import LoginGuardEntry, MailStore
from tests.store.contract.harness import Backend, covers

S = MailStore
NOW = 1_800_000_000.0


def entry(kind: str, client: str = "", account: str = "", until: float = NOW + 600) -> LoginGuardEntry:
    return LoginGuardEntry(kind, client, account, until, NOW - 10)


@covers(S.login_guard_save, S.login_guard_entries)
def test_entries_are_kept_until_they_end_and_replaced_by_key(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        assert await store.login_guard_entries(NOW) == []
        client = entry("client", client="192.0.2.1")
        account = entry("account", account="demo@example.test", until=NOW + 60)
        pair = entry("pair", client="2001:db8:1:2::/64", account="demo@example.test")
        trust = entry("trust", client="192.0.2.9", account="demo@example.test", until=NOW + 86400)
        ended = entry("client", client="198.51.100.7", until=NOW - 1)
        await store.login_guard_save([client, account, pair, trust, ended], NOW)
        kept = await store.login_guard_entries(NOW)
        assert sorted(kept, key=repr) == sorted([client, account, pair, trust], key=repr)
        assert [e.kind for e in kept] == sorted(e.kind for e in kept)  # ordered by kind, client, account
        longer = entry("client", client="192.0.2.1", until=NOW + 3600)
        await store.login_guard_save([longer], NOW)  # the same key: replaced
        assert [e for e in await store.login_guard_entries(NOW) if e.kind == "client"] == [longer]
        assert account not in await store.login_guard_entries(NOW + 61)  # ended by then
        await store.login_guard_save([], NOW + 61)  # every save deletes what has ended
        assert account not in await store.login_guard_entries(NOW)
        with pytest.raises(ValueError, match="not a login guard kind"):
            await store.login_guard_save([entry("nonsense", client="x")], NOW)

    backend.run(scenario)


@covers(S.login_guard_unlock, S.login_guard_generation)
def test_an_unlock_through_another_store_object_changes_the_generation(backend: Backend) -> None:
    async def scenario(server: MailStore) -> None:
        import time

        now = time.time()  # unlock compares with the wall clock
        lock = [
            LoginGuardEntry("client", "192.0.2.1", "", now + 600, now),
            LoginGuardEntry("pair", "192.0.2.1", "demo@example.test", now + 600, now),
            LoginGuardEntry("account", "", "demo@example.test", now + 600, now),
            LoginGuardEntry("trust", "192.0.2.1", "demo@example.test", now + 600, now),
        ]
        await server.login_guard_save(lock, now)
        generation = server.login_guard_generation()
        assert server.login_guard_generation() == generation  # stable while nothing is unlocked
        cli = backend.open()
        try:
            assert await cli.login_guard_unlock(client="192.0.2.99") == []
            assert server.login_guard_generation() == generation  # nothing deleted, nothing to notice
            deleted = await cli.login_guard_unlock(client="192.0.2.1")
            assert deleted == [lock[0], lock[1]]  # the client's own lockout and its pairs
            assert server.login_guard_generation() != generation
            generation = server.login_guard_generation()
            assert await cli.login_guard_unlock(account="demo@example.test") == [lock[2]]
            assert server.login_guard_generation() != generation
            with pytest.raises(ValueError, match="unlock a client or an account"):
                await cli.login_guard_unlock()
            with pytest.raises(ValueError, match="unlock a client or an account"):
                await cli.login_guard_unlock(client="192.0.2.1", account="demo@example.test")
        finally:
            await cli.close()
        assert await server.login_guard_entries(now) == [lock[3]]  # trusted pairs stay

    backend.run(scenario)
