"""Contract: greylisting records (RFC 6647, docs/decisions/0089): saved and read back by key until they
expire, replaced by key, seen by another store object (a restarted server), and forgotten by later saves once
expired, a bounded number per save."""

from __future__ import annotations

from postoffice.store import GreylistEntry, MailStore
from tests.store.contract.harness import Backend, covers

S = MailStore
NOW = 1_800_000_000.0


def entry(key: str, expires: float = NOW + 600, passes: int = 0) -> GreylistEntry:
    return GreylistEntry(key, NOW - 10, passes, NOW - 5, expires)


@covers(S.greylist_entries, S.greylist_save)
def test_records_are_read_by_key_until_they_expire_and_replaced_by_key(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        assert await store.greylist_entries([], NOW) == {}
        assert await store.greylist_entries(["t x"], NOW) == {}
        triplet = entry('t "192.0.2.0/24" "ann@remote.example" "demo@example.test"')
        network = entry('c "192.0.2.0/24"', expires=NOW + 60, passes=2)
        other = entry('t "2001:db8::/64" "<>" "demo@example.test"')
        await store.greylist_save([triplet, network, other], NOW)
        found = await store.greylist_entries([triplet.key, network.key, "t missing"], NOW)
        assert found == {triplet.key: triplet, network.key: network}
        assert await store.greylist_entries([network.key], NOW + 60) == {}  # expired by then
        passed = GreylistEntry(triplet.key, triplet.first_seen, 1, NOW, NOW + 3000)
        await store.greylist_save([passed], NOW)
        assert await store.greylist_entries([triplet.key, triplet.key], NOW) == {triplet.key: passed}
        restarted = backend.open()
        try:
            assert await restarted.greylist_entries([passed.key, other.key], NOW) == {
                passed.key: passed,
                other.key: other,
            }
        finally:
            await restarted.close()

    backend.run(scenario)


@covers(S.greylist_save)
def test_saves_forget_expired_records(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        old = [entry(f"t old {n}", expires=NOW - 1 - n) for n in range(5)]
        kept = entry("t kept", expires=NOW + 10)
        await store.greylist_save([*old, kept], NOW - 100)  # nothing had expired then
        assert len(await store.greylist_entries([e.key for e in old], NOW - 100)) == 5
        await store.greylist_save([], NOW)
        # gone for good: even asked about a time before they expired, they are not there any more
        assert await store.greylist_entries([e.key for e in old], NOW - 100) == {}
        assert await store.greylist_entries([kept.key], NOW) == {kept.key: kept}

    backend.run(scenario)
