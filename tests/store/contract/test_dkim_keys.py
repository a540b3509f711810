"""Contract: DKIM signing keys (docs/decisions/0056): added per domain with selectors never used twice, at
most one pending and one active key per domain and algorithm, states that only move forward (a removed key
loses its private key), seen by another store object (another process), gone with their domain."""

from __future__ import annotations

import pytest

from postoffice.store import AlreadyExists, DkimKey, MailStore, NotFound, StoreError
from tests.store.contract.harness import Backend, covers

S = MailStore
NOW = 1_800_000_000.0


def key(
    selector: str, algorithm: str = "rsa", state: str = "active", domain: str = "example.test"
) -> DkimKey:
    return DkimKey(
        0, domain, selector, algorithm, f"PUBLIC-{selector}", f"PRIVATE-{selector}", state, NOW, NOW
    )


@covers(S.add_dkim_keys, S.dkim_keys)
def test_keys_are_added_per_domain_and_listed_in_order(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_domain("example.test")
        await store.add_domain("other.test")
        assert await store.dkim_keys() == []
        added = await store.add_dkim_keys([key("a1r"), key("a1e", "ed25519")])
        assert [k.selector for k in added] == ["a1r", "a1e"]
        assert len({k.id for k in added}) == 2
        assert all(k.id > 0 for k in added)
        (other,) = await store.add_dkim_keys([key("b1r", domain="other.test")])
        listed = await store.dkim_keys("example.test")
        assert listed == added
        assert listed[0].private_key == "PRIVATE-a1r"
        assert (listed[0].created, listed[0].changed, listed[0].state) == (NOW, NOW, "active")
        assert await store.dkim_keys("other.test") == [other]
        assert await store.dkim_keys() == [*added, other]  # by domain name, then creation
        assert await store.dkim_keys("nowhere.test") == []
        assert "PRIVATE" not in repr(listed[0])  # never shown

        second = backend.open()  # another process sees them
        try:
            assert await second.dkim_keys("example.test") == added
        finally:
            await second.close()

    backend.run(scenario)


@covers(S.add_dkim_keys)
def test_selectors_are_never_reused_and_one_key_per_algorithm_is_current(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_domain("example.test")
        await store.add_domain("other.test")
        (first,) = await store.add_dkim_keys([key("s1")])
        with pytest.raises(AlreadyExists):
            await store.add_dkim_keys([key("s1", state="pending")])  # the selector is taken
        with pytest.raises(AlreadyExists):
            await store.add_dkim_keys([key("s2")])  # a second active RSA key
        with pytest.raises(AlreadyExists):  # all or nothing: the first of the two is not added either
            await store.add_dkim_keys([key("s3", state="pending"), key("s4", state="pending")])
        assert await store.dkim_keys() == [first]
        await store.add_dkim_keys([key("s1", domain="other.test")])  # selectors are per domain
        pending = await store.add_dkim_keys([key("s3", state="pending"), key("s3e", "ed25519", "pending")])
        assert [k.state for k in pending] == ["pending", "pending"]
        with pytest.raises(NotFound):
            await store.add_dkim_keys([key("x", domain="nowhere.test")])
        with pytest.raises(StoreError):
            await store.add_dkim_keys([key("x", state="retiring")])
        await store.set_dkim_key_states({first.id: "removed"}, NOW + 1)
        with pytest.raises(AlreadyExists):
            await store.add_dkim_keys([key("s1", state="pending")])  # removed, still not reused

    backend.run(scenario)


@covers(S.set_dkim_key_states)
def test_states_move_forward_only_and_a_removed_key_loses_its_private_key(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_domain("example.test")
        old_r, old_e = await store.add_dkim_keys([key("o-r"), key("o-e", "ed25519")])
        new_r, new_e = await store.add_dkim_keys(
            [key("n-r", state="pending"), key("n-e", "ed25519", "pending")]
        )
        with pytest.raises(AlreadyExists):  # activating without retiring the active key of the same algorithm
            await store.set_dkim_key_states({new_r.id: "active"}, NOW + 10)
        assert [k.state for k in await store.dkim_keys("example.test")] == ["active"] * 2 + ["pending"] * 2

        states = {new_r.id: "active", old_r.id: "retiring", new_e.id: "active", old_e.id: "retiring"}
        changed = await store.set_dkim_key_states(states, NOW + 10)
        assert [(k.selector, k.state, k.changed) for k in changed] == [
            ("n-r", "active", NOW + 10),
            ("o-r", "retiring", NOW + 10),
            ("n-e", "active", NOW + 10),
            ("o-e", "retiring", NOW + 10),
        ]
        assert changed[1].private_key == "PRIVATE-o-r"  # retiring: kept

        with pytest.raises(StoreError):  # backwards
            await store.set_dkim_key_states({old_r.id: "active"}, NOW + 20)
        with pytest.raises(StoreError):
            await store.set_dkim_key_states({old_r.id: "expired"}, NOW + 20)
        with pytest.raises(NotFound):
            await store.set_dkim_key_states({old_r.id: "removed", 999_999: "removed"}, NOW + 20)
        assert (await store.dkim_keys("example.test"))[0].state == "retiring"  # nothing changed

        same = await store.set_dkim_key_states({new_r.id: "active"}, NOW + 30)  # no move: `changed` stays
        assert same[0].changed == NOW + 10
        (removed,) = await store.set_dkim_key_states({old_r.id: "removed"}, NOW + 40)
        assert (removed.state, removed.changed, removed.private_key) == ("removed", NOW + 40, "")
        assert removed.public_key == "PUBLIC-o-r"
        listed = {k.selector: k for k in await store.dkim_keys("example.test")}
        assert listed["o-r"].private_key == ""
        assert listed["o-e"].private_key == "PRIVATE-o-e"

    backend.run(scenario)


@covers(S.add_dkim_keys, S.remove_domain)
def test_a_removed_domain_takes_its_keys_with_it(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await store.add_domain("gone.test")
        await store.add_domain("kept.test")
        await store.add_dkim_keys([key("g", domain="gone.test"), key("k", domain="kept.test")])
        await store.remove_domain("gone.test")
        assert [k.domain for k in await store.dkim_keys()] == ["kept.test"]
        await store.add_domain("gone.test")  # served again: a fresh start
        assert await store.dkim_keys("gone.test") == []
        await store.add_dkim_keys([key("g", domain="gone.test")])

    backend.run(scenario)
