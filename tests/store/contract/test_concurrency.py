"""Contract: concurrent writers. Many tasks writing at once through one store object (a failing request
fails alone), and two store objects on the same store (two processes: the server and the CLI, or two
servers) writing at once: no write is lost, UIDs stay unique and dense, limits hold across both, and every
read sees a consistent state."""

from __future__ import annotations

import asyncio

from postoffice.store import AlreadyExists, LimitExceeded, MailStore, NotFound
from tests.store.contract.harness import Backend, accounts, append, covers, deliver, inbox_of, message

S = MailStore


@covers(S.deliver)
def test_concurrent_deliveries_all_land_and_a_failing_one_fails_alone(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        raws = [message(f"m{i}") for i in range(64)]
        results = await asyncio.gather(
            *(deliver(store, raw, [demo]) for raw in raws[:32]),
            deliver(store, message("bad"), [demo], mailbox="NoSuchBox"),
            *(deliver(store, raw, [demo]) for raw in raws[32:]),
            return_exceptions=True,
        )
        assert isinstance(results[32], NotFound)
        copies = [r for r in results if isinstance(r, list)]
        assert len(copies) == 64
        assert sorted(c[0].uid for c in copies) == list(range(1, 65))
        inbox = await inbox_of(store, demo)
        stored = await store.list_messages(inbox)
        contents = await store.read_contents([m.content_id for m in stored])
        assert sorted(contents.values()) == sorted(raws)

    backend.run(scenario)


@covers(S.store_flags, S.append)
def test_concurrent_flag_changes_and_appends_lose_nothing(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        await append(store, inbox, "first")
        results = await asyncio.gather(
            *(store.store_flags(inbox, [1], [f"k{i}"], "add") for i in range(20)),
            *(append(store, inbox, f"m{i}") for i in range(20)),
        )
        modseqs = [r for r in results if isinstance(r, int)]
        assert len(set(modseqs)) == 20  # every change of the account has its own MODSEQ
        first, *rest = await store.list_messages(inbox)
        assert first.flags == {f"k{i}" for i in range(20)}
        assert [m.uid for m in rest] == list(range(2, 22))
        every = [first.modseq, *(m.modseq for m in rest)]
        assert len(set(every)) == len(every)

    backend.run(scenario)


@covers(S.deliver, S.add_account, S.create_mailbox, S.list_messages)
def test_two_store_objects_on_one_store_write_at_once_without_losing_anything(backend: Backend) -> None:
    async def scenario(first: MailStore) -> None:
        (demo,) = await accounts(first, "demo")
        inbox = await inbox_of(first, demo)
        second = backend.open()
        try:
            raws = [message(f"m{i}") for i in range(60)]
            copies = await asyncio.gather(
                *(deliver(first if i % 2 else second, raw, [demo]) for i, raw in enumerate(raws))
            )
            assert sorted(c[0].uid for c in copies) == list(range(1, 61))
            for store in (first, second):
                stored = await store.list_messages(inbox)
                assert [m.uid for m in stored] == list(range(1, 61))
                contents = await store.read_contents([m.content_id for m in stored])
                assert sorted(contents.values()) == sorted(raws)
            added = await asyncio.gather(
                first.add_account("same@example.test", "a"),
                second.add_account("same@example.test", "b"),
                return_exceptions=True,
            )
            assert sorted(type(r).__name__ for r in added) == ["Account", "AlreadyExists"]
            assert any(isinstance(r, AlreadyExists) for r in added)
            limited = await asyncio.gather(
                *((first, second)[i % 2].create_mailbox(demo, f"box{i}", max_mailboxes=9) for i in range(8)),
                return_exceptions=True,
            )
            assert sum(not isinstance(r, BaseException) for r in limited) == 3  # 6 defaults + 3 = 9
            assert all(isinstance(r, LimitExceeded) for r in limited if isinstance(r, BaseException))
            assert len(await second.list_mailboxes(demo)) == 9
        finally:
            await second.close()

    backend.run(scenario)


@covers(S.list_messages, S.snapshot, S.mailbox_status)
def test_reads_during_writes_see_a_consistent_mailbox(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        reader = backend.open()
        try:
            writes = asyncio.gather(*(deliver(store, message(f"m{i}"), [demo]) for i in range(40)))
            observed = []
            while not writes.done():
                listed, snapshot, status = await asyncio.gather(
                    reader.list_messages(inbox), store.snapshot(inbox), reader.mailbox_status(inbox)
                )
                observed.append(len(listed))
                for uids in ([m.uid for m in listed], list(snapshot.uids)):
                    assert uids == list(range(1, len(uids) + 1))
                assert len(snapshot.uids) == snapshot.mailbox.messages == snapshot.unseen
                assert status.unseen == status.mailbox.messages
            await writes
            assert observed == sorted(observed)
            assert len(await reader.list_messages(inbox)) == 40
        finally:
            await reader.close()

    backend.run(scenario)
