"""Contract: storage used and storage quotas (docs/decisions/0053): what counts (every message row of every
mailbox, a copy again), `quota_usage` for the delivery pipeline (only accounts with a quota, changes seen at
once, also from another store object), and the quota checked in APPEND, MULTIAPPEND and COPY, where a
refused write stores nothing, while a move within the account, a copy into Trash and expunging always work."""

from __future__ import annotations

import io

import pytest

from postoffice.store import MailStore, OverQuota, QuotaUse, quota_refusal
from postoffice.store.api import AppendItem
from tests.store.contract.harness import Backend, accounts, covers, deliver, inbox_of, message, parse

S = MailStore


def sized(subject: str, octets: int) -> bytes:
    """A message of exactly `octets` octets."""
    empty = message(subject, "")
    raw = message(subject, "x" * (octets - len(empty) - 2) + "\r\n")
    assert len(raw) == octets
    return raw


async def put(store: MailStore, mailbox_id: int, raw: bytes) -> int:
    return (await store.append(mailbox_id, io.BytesIO(raw), parse(raw))).uid


def test_the_quota_rule_refuses_what_would_go_over_and_permanently_what_never_fits() -> None:
    assert quota_refusal(0, 10**12, 10**9) is None  # 0: no limit
    assert quota_refusal(1000, 400, 600) is None  # exactly full is within the quota
    full = quota_refusal(1000, 401, 600)
    assert full is not None
    assert not full.permanent
    too_large = quota_refusal(1000, 0, 1001)
    assert too_large is not None
    assert too_large.permanent
    several = quota_refusal(1000, 0, 1500, largest=800)  # together too much, none alone too large
    assert several is not None
    assert not several.permanent
    assert QuotaUse(1, 1000, 999).refusal(1) is None
    assert QuotaUse(1, 1000, 1000).refusal(1) is not None


@covers(S.storage_used)
def test_storage_used_counts_every_mailbox_and_every_copy_per_account(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other, idle = await accounts(store, "demo", "other", "idle")
        assert (await store.storage_used()).get(demo, 0) == 0
        first, second = sized("first", 1000), sized("second", 300)
        await deliver(store, first, [demo, other])
        inbox, archive = await inbox_of(store, demo), await inbox_of(store, demo, "Archive")
        await put(store, archive, second)
        used = await store.storage_used()
        assert used[demo] == 1300
        assert used[other] == 1000  # the shared content counts for each account that keeps it
        assert used.get(idle, 0) == 0
        await store.copy_messages(inbox, [1], archive)
        assert (await store.storage_used())[demo] == 2300  # a copy counts again
        await store.copy_messages(inbox, [1], archive, move=True)
        assert (await store.storage_used())[demo] == 2300  # a move does not change it
        await store.store_flags(archive, [1], ["\\Deleted"], "add")
        assert (await store.storage_used())[demo] == 2300  # \Deleted counts until expunged
        await store.expunge_deleted(archive)
        assert (await store.storage_used())[demo] == 2000
        again = backend.open()  # another process's view
        try:
            assert (await again.storage_used())[demo] == 2000
        finally:
            await again.close()

    backend.run(scenario)


@covers(S.quota_usage, S.update_account)
def test_quota_usage_names_only_accounts_with_a_quota_and_sees_changes_at_once(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        await deliver(store, sized("m", 700), [demo, other])
        assert await store.quota_usage([demo, other, 999_999]) == {}
        changed = await store.update_account("demo@example.test", quota=5000)
        assert changed.quota == 5000
        assert changed.send_limit == 0
        assert await store.quota_usage([demo, other, 999_999]) == {demo: QuotaUse(demo, 5000, 700)}
        await deliver(store, sized("n", 200), [demo])
        assert await store.quota_usage(iter([demo])) == {demo: QuotaUse(demo, 5000, 900)}
        cli = backend.open()  # the command line, another process, changes the quota
        try:
            await cli.update_account("demo@example.test", quota=0)
            await cli.update_account("other@example.test", quota=100)
        finally:
            await cli.close()
        assert await store.quota_usage([demo, other]) == {other: QuotaUse(other, 100, 700)}
        with pytest.raises(ValueError, match="negative"):
            await store.update_account("demo@example.test", quota=-1)

    backend.run(scenario)


@covers(S.append, S.append_many)
def test_append_beyond_the_quota_stores_nothing_and_says_whether_it_could_ever_fit(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        await store.update_account("demo@example.test", quota=2000)
        inbox = await inbox_of(store, demo)
        assert await put(store, inbox, sized("a", 1200)) == 1
        with pytest.raises(OverQuota) as refused:
            await put(store, inbox, sized("b", 801))
        assert not refused.value.permanent
        with pytest.raises(OverQuota) as refused:
            await put(store, inbox, sized("c", 2001))
        assert refused.value.permanent  # larger than the whole quota
        # MULTIAPPEND: each would fit alone (1200 + 450), together they would not: none is stored
        items = [AppendItem(io.BytesIO(r), parse(r)) for r in (sized("d", 450), sized("e", 450))]
        with pytest.raises(OverQuota):
            await store.append_many(inbox, items)
        assert [m.size for m in await store.list_messages(inbox)] == [1200]
        assert await put(store, inbox, sized("f", 800)) > 1  # exactly at the quota: stored
        assert [m.size for m in await store.list_messages(inbox)] == [1200, 800]
        other_inbox = await inbox_of(store, other)  # another account's quota is its own (none)
        assert await put(store, other_inbox, sized("g", 50_000)) == 1
        await store.update_account("demo@example.test", quota=0)  # 0: no limit
        assert len(await store.append_many(inbox, items)) == 2

    backend.run(scenario)


@covers(S.copy_messages, S.expunge, S.expunge_deleted)
def test_over_quota_copies_are_refused_but_moves_copies_to_trash_and_expunges_work(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        archive, trash = await inbox_of(store, demo, "Archive"), await inbox_of(store, demo, "Trash")
        for subject in ("a", "b", "c"):
            await put(store, inbox, sized(subject, 1000))
        await store.update_account("demo@example.test", quota=2500)  # lowered below what it keeps
        with pytest.raises(OverQuota):
            await store.copy_messages(inbox, [1], archive)
        assert await store.list_messages(archive) == []  # nothing copied
        with pytest.raises(OverQuota):
            await put(store, inbox, sized("d", 100))
        assert await store.copy_messages(inbox, [1], archive, move=True) == [(1, 1)]  # adds nothing
        # how a client without MOVE deletes: COPY to Trash, \Deleted, EXPUNGE
        assert await store.copy_messages(inbox, [2, 3], trash) == [(2, 1), (3, 2)]
        assert (await store.storage_used())[demo] == 5000
        await store.store_flags(inbox, [2, 3], ["\\Deleted"], "add")
        assert await store.expunge_deleted(inbox) == [2, 3]
        assert await store.expunge(trash, [1, 2]) == [1, 2]
        assert (await store.storage_used())[demo] == 1000
        assert await store.copy_messages(archive, [1], inbox) == [(1, 4)]  # under the quota again

    backend.run(scenario)
