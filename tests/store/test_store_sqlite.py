"""The SQLite store through its public API: data model, durability contract, group commit, notifications."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

import pytest

from postoffice.message import parse_message
from postoffice.store import DEFAULT_MAILBOXES, AlreadyExists, ChangeEvent, NotFound, StoreError, open_store


def message(subject: str = "hello", body: str = "body text\r\n", size_pad: int = 0) -> bytes:
    text = (
        f"From: a@example.org\r\nTo: demo@example.test\r\nSubject: {subject}\r\n\r\n{body}" + "x" * size_pad
    )
    return text.encode()


async def deliver(store, raw: bytes, account_ids, **kw):
    parsed = parse_message(io.BytesIO(raw))
    return await store.deliver(io.BytesIO(raw), parsed, account_ids, **kw)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "mail.sqlite3"


async def setup_accounts(store, *names: str):
    await store.add_domain("example.test")
    return [await store.add_account(f"{n}@example.test", "hash") for n in names]


def test_new_account_has_default_mailboxes_with_special_use_and_distinct_uidvalidity(
    store_path: Path,
) -> None:
    async def main() -> None:
        store = open_store(store_path)
        try:
            (demo,) = await setup_accounts(store, "demo")
            boxes = await store.list_mailboxes(demo.id)
            assert [(b.name, b.special_use) for b in boxes] == sorted(
                DEFAULT_MAILBOXES, key=lambda m: (m[0] != "INBOX", m[0])
            )
            assert len({b.uidvalidity for b in boxes}) == len(boxes)
            assert all(b.uidnext == 1 and b.messages == 0 for b in boxes)
            inbox = await store.get_mailbox(demo.id, "inbox")
            assert inbox is not None and inbox.name == "INBOX"
        finally:
            await store.close()

    asyncio.run(main())


def test_uidvalidity_is_never_reused_after_account_removal_and_recreation(store_path: Path) -> None:
    async def main() -> None:
        store = open_store(store_path)
        try:
            (demo,) = await setup_accounts(store, "demo")
            first = {b.uidvalidity for b in await store.list_mailboxes(demo.id)}
            await store.remove_account("demo@example.test")
            again = await store.add_account("demo@example.test", "hash")
            second = {b.uidvalidity for b in await store.list_mailboxes(again.id)}
            assert first.isdisjoint(second)
        finally:
            await store.close()

    asyncio.run(main())


def test_delivery_is_byte_exact_once_per_account_with_increasing_uids_and_modseq(store_path: Path) -> None:
    async def main() -> None:
        store = open_store(store_path)
        try:
            demo, other = await setup_accounts(store, "demo", "other")
            raw1, raw2 = message("one"), message("two", body="\u00e9t\u00e9\r\n")
            copies = await deliver(store, raw1, [demo.id, other.id, demo.id])
            assert [(c.account_id, c.uid) for c in copies] == [(demo.id, 1), (other.id, 1)]
            await deliver(store, raw2, [demo.id], flags=["\\Seen", "$Label1"], internaldate=1_700_000_000.0)
            inbox = await store.get_mailbox(demo.id, "INBOX")
            assert inbox is not None and inbox.messages == 2 and inbox.uidnext == 3
            assert inbox.size == len(raw1) + len(raw2)
            msgs = await store.list_messages(inbox.id)
            assert [m.uid for m in msgs] == [1, 2]
            assert msgs[0].modseq < msgs[1].modseq
            assert msgs[1].flags == frozenset({"\\Seen", "$Label1"})
            assert msgs[1].internaldate == 1_700_000_000.0
            assert await store.read_content(msgs[0].content_id) == raw1
            assert await store.read_content(msgs[1].content_id) == raw2
            parsed = await store.get_parsed(msgs[0].content_id)
            assert parsed.size == len(raw1)
        finally:
            await store.close()

    asyncio.run(main())


def test_data_survives_reopening_the_store(store_path: Path) -> None:
    async def first() -> int:
        store = open_store(store_path)
        try:
            (demo,) = await setup_accounts(store, "demo")
            await deliver(store, message("kept"), [demo.id])
            return demo.id
        finally:
            await store.close()

    async def second(account_id: int) -> None:
        store = open_store(store_path)
        try:
            inbox = await store.get_mailbox(account_id, "INBOX")
            assert inbox is not None
            (msg,) = await store.list_messages(inbox.id)
            assert await store.read_content(msg.content_id) == message("kept")
        finally:
            await store.close()

    account_id = asyncio.run(first())
    asyncio.run(second(account_id))


def test_expunge_leaves_tombstones_frees_content_and_never_reuses_uids(store_path: Path) -> None:
    async def main() -> None:
        store = open_store(store_path)
        try:
            demo, other = await setup_accounts(store, "demo", "other")
            await deliver(store, message("shared"), [demo.id, other.id])
            inbox = await store.get_mailbox(demo.id, "INBOX")
            assert inbox is not None
            (msg,) = await store.list_messages(inbox.id)
            assert await store.expunge(inbox.id, [1, 99]) == [1]
            # the other recipient's copy still has the content
            other_inbox = await store.get_mailbox(other.id, "INBOX")
            assert other_inbox is not None
            (other_msg,) = await store.list_messages(other_inbox.id)
            assert await store.read_content(other_msg.content_id) == message("shared")
            await store.expunge(other_inbox.id, [1])
            with pytest.raises(NotFound):
                await store.read_content(msg.content_id)
            copies = await deliver(store, message("next"), [demo.id])
            assert copies[0].uid == 2
            refreshed = await store.get_mailbox(demo.id, "INBOX")
            assert refreshed is not None and refreshed.messages == 1
        finally:
            await store.close()

        conn = sqlite3.connect(store_path)
        tomb = conn.execute("SELECT mailbox_id, uid, modseq FROM tombstones ORDER BY mailbox_id").fetchall()
        conn.close()
        assert [(t[0], t[1]) for t in tomb] == [(inbox.id, 1), (other_inbox.id, 1)]
        assert all(t[2] > msg.modseq for t in tomb)

    asyncio.run(main())


def test_store_flags_changes_modseq_and_notifies_after_commit(store_path: Path) -> None:
    async def main() -> None:
        store = open_store(store_path)
        try:
            (demo,) = await setup_accounts(store, "demo")
            seen: list[ChangeEvent] = []
            unsubscribe = store.subscribe(demo.id, seen.append)
            await deliver(store, message(), [demo.id])
            inbox = await store.get_mailbox(demo.id, "INBOX")
            assert inbox is not None
            modseq = await store.store_flags(inbox.id, [1], ["\\Flagged", "work"], "add")
            (msg,) = await store.list_messages(inbox.id)
            assert msg.flags == {"\\Flagged", "work"} and msg.modseq == modseq
            await store.store_flags(inbox.id, [1], ["work"], "remove")
            (msg,) = await store.list_messages(inbox.id)
            assert msg.flags == {"\\Flagged"} and msg.modseq > modseq
            await asyncio.sleep(0)  # let the loop run the already-scheduled dispatch callbacks
            assert [e.kind for e in seen] == ["added", "flags", "flags"]
            unsubscribe()
        finally:
            await store.close()

    asyncio.run(main())


def test_concurrent_deliveries_share_commits_and_a_failing_request_fails_alone(store_path: Path) -> None:
    async def main() -> None:
        store = open_store(store_path)
        try:
            (demo,) = await setup_accounts(store, "demo")
            before = store.stats()["commits"]
            raws = [message(f"m{i}") for i in range(64)]
            results = await asyncio.gather(
                *(deliver(store, raw, [demo.id]) for raw in raws),
                deliver(store, message("bad"), [demo.id], mailbox="NoSuchBox"),
                return_exceptions=True,
            )
            assert isinstance(results[-1], NotFound)
            assert all(isinstance(r, list) for r in results[:-1])
            commits = store.stats()["commits"] - before
            assert commits < len(raws)
            inbox = await store.get_mailbox(demo.id, "INBOX")
            assert inbox is not None and inbox.messages == 64
            uids = sorted(r[0].uid for r in results[:-1])  # type: ignore[index]
            assert uids == list(range(1, 65))
        finally:
            await store.close()

    asyncio.run(main())


def test_large_content_streams_in_chunks_byte_exact(store_path: Path) -> None:
    async def main() -> None:
        store = open_store(store_path)
        try:
            (demo,) = await setup_accounts(store, "demo")
            raw = message("big", body="".join(f"line {i}\r\n" for i in range(400_000)))
            assert len(raw) > 3 * 1024 * 1024
            await deliver(store, raw, [demo.id])
            inbox = await store.get_mailbox(demo.id, "INBOX")
            assert inbox is not None
            (msg,) = await store.list_messages(inbox.id)
            chunks = [chunk async for chunk in store.open_content(msg.content_id, chunk_size=65536)]
            assert max(len(c) for c in chunks) <= 65536
            assert b"".join(chunks) == raw
        finally:
            await store.close()

    asyncio.run(main())


def test_directory_rules_domains_accounts_aliases(store_path: Path) -> None:
    async def main() -> None:
        store = open_store(store_path)
        try:
            demo, other = await setup_accounts(store, "demo", "other")
            with pytest.raises(AlreadyExists):
                await store.add_domain("EXAMPLE.test")
            with pytest.raises(AlreadyExists):
                await store.add_account("Demo@Example.Test", "h")
            with pytest.raises(NotFound):
                await store.add_account("x@unknown.test", "h")
            with pytest.raises(StoreError):
                await store.add_alias("team@example.test", ["someone@elsewhere.test"])
            await store.add_alias("team@example.test", ["demo@example.test", "OTHER@example.test"])
            await store.add_alias("@example.test", ["demo@example.test"])
            assert (await store.get_account("DEMO@example.TEST")) == demo
            with pytest.raises(StoreError):
                await store.remove_domain("example.test")
            assert (await store.resolve_recipient("team@example.test")).account_ids == [demo.id, other.id]
            assert (await store.resolve_recipient("Other+tag@Example.test")).account_ids == [other.id]
            assert (await store.resolve_recipient("nobody@example.test")).account_ids == [demo.id]
            assert (await store.resolve_recipient("x@elsewhere.test")).status == "foreign"
            await store.remove_alias("@example.test")
            assert (await store.resolve_recipient("nobody@example.test")).status == "unknown"
            assert [a.source for a in await store.list_aliases()] == [
                "postmaster@example.test",
                "team@example.test",
            ]
            # RFC 5321 4.5.1: the domain's first account got postmaster; bare "postmaster" means the same
            assert (await store.get_alias("postmaster@example.test")).targets == ("demo@example.test",)
            assert (await store.resolve_recipient("Postmaster")).account_ids == [demo.id]
        finally:
            await store.close()

    asyncio.run(main())
