"""Contract: opening, closing (idempotent; no call succeeds afterwards), dropped caches, the disk-space hint
and the statistics."""

from __future__ import annotations

import pytest

from postoffice.store import MailStore, StoreError
from tests.store.contract.harness import Backend, accounts, covers, deliver, inbox_of, message

S = MailStore


@covers(S.close)
def test_close_waits_for_writes_is_idempotent_and_ends_every_use(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        await deliver(store, message(), [demo])
        await store.close()
        await store.close()
        with pytest.raises(StoreError):
            await store.list_domains()
        with pytest.raises(StoreError):
            await store.add_domain("other.test")
        again = backend.open()
        try:
            assert len(await again.list_messages(await inbox_of(again, demo))) == 1
        finally:
            await again.close()

    backend.run(scenario)


@covers(S.invalidate_caches, S.has_room, S.stats)
def test_caches_can_be_dropped_and_hints_and_statistics_are_answered(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        await deliver(store, message(), [demo])
        before = await store.snapshot(inbox)
        store.invalidate_caches()
        after = await store.snapshot(inbox)
        assert list(after.uids) == list(before.uids) == [1]
        assert (await store.resolve_recipient("demo@example.test")).account_ids == [demo]
        assert await store.has_room(1024) is True  # a test machine has a kilobyte to spare
        stats = store.stats()
        assert stats
        assert all(isinstance(k, str) and isinstance(v, int) for k, v in stats.items())

    backend.run(scenario)
