"""A full disk (docs/decisions/0030): new mail is refused before the disk is full, the reserve gives deletions
their room when it fills up anyway, and what a caller is told always matches what is stored. The scenarios
run on a 16 MiB tmpfs of their own (tests/store/disk_full_scenarios.py, tests/support/small_disk.py); the
admission rules also on the real disk, with a minimum free space no disk has."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from postoffice.message import parse_message
from postoffice.store import (
    LocalCopy,
    OutboundMessage,
    OutboundRecipient,
    RecipientResult,
    StoreFull,
    open_store,
)
from postoffice.store.api import AppendItem
from postoffice.store.sqlite import WAL_SIZE_LIMIT
from tests.support.small_disk import small_disk

REPOSITORY = Path(__file__).resolve().parents[2]


def run_scenario(name: str, tmp_path: Path) -> dict[str, Any]:
    with small_disk(tmp_path / "small", "16m") as disk:
        done = disk.run_inside(
            sys.executable, "-m", "tests.store.disk_full_scenarios", name, str(disk.mount), cwd=REPOSITORY
        )
    assert done.returncode == 0, done.stderr
    observed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return observed


def test_a_disk_filled_by_another_program_still_lets_recent_flags_and_expunge_through(tmp_path: Path) -> None:
    seen = run_scenario("filled_by_another_program", tmp_path)
    assert seen["reserve_at_open"] == 1024 * 1024
    assert seen["delivered"] == ["ok"] * 4
    assert seen["free_when_full"] < 64 * 1024
    # new mail is refused, with the reason
    assert seen["deliver_when_full"] == "full"
    assert seen["has_room_when_full"] is False
    # the \Recent claim hit SQLITE_FULL, released the reserve and went through
    assert seen["claim_recent"] == 1
    assert seen["reserve_after_claim"] is None
    assert seen["stats"]["reserve_releases"] == 1
    # deleting works on the space the reserve gave back
    assert seen["store_flags"] is True
    assert seen["expunge_deleted"] == [1, 2]
    assert seen["expunge"] == [3]
    # new mail stays refused until there is space again; then it is stored, and the reserve is back
    assert seen["deliver_still_full"] == "full"
    assert seen["has_room_after"] is True
    assert seen["deliver_after"] == "ok"
    assert seen["reserve_after"] == 1024 * 1024
    assert seen["integrity"] == "ok"
    assert seen["uids"] == [4, 5]


def test_mail_filling_the_disk_is_refused_before_deletions_lack_room(tmp_path: Path) -> None:
    seen = run_scenario("filled_by_mail", tmp_path)
    assert seen["accepted"] > 10  # the disk held some mail first
    assert seen["last"] == "full"
    assert seen["lowest_free"] >= seen["min_free"]  # refused with min_free_space still free
    assert seen["has_room_when_refused"] is False
    assert seen["claim_recent"] == 1
    assert seen["store_flags"] is True
    assert seen["expunged"] == list(range(1, seen["accepted"] // 2 + 1))
    # space is tight: the WAL was checkpointed and truncated after the expunge, so its pages are free pages
    assert seen["wal_after_expunge"] == 0
    # and new mail goes into them
    assert seen["has_room_after_expunge"] is True
    assert seen["deliver_after_expunge"] == ["ok", "ok", "ok"]
    assert seen["stats"]["reserve_releases"] == 0
    assert seen["integrity"] == "ok"
    assert seen["uids"] == list(range(seen["accepted"] // 2 + 1, seen["accepted"] + 4))


def test_a_request_rolled_back_by_sqlite_with_its_batch_is_never_told_otherwise(tmp_path: Path) -> None:
    """SQLITE_FULL outside a statement journal rolls back the whole transaction: the requests before the
    failing one are gone, and before the fix the ones after it ran in autocommit mode (stored, but told
    that they failed). Now the batch is void, and after the reserve is released each request runs again
    alone: those that fit are stored and told so, the one that does not fit fails alone."""
    seen = run_scenario("lost_transaction", tmp_path)
    assert seen["told"] == ["ok", "ok", "full", "ok"]
    assert seen["stored"] == [True, True, False, True]
    assert seen["stats"]["reserve_releases"] == 1


def test_a_directory_change_on_a_full_disk_still_moves_the_marker_on(tmp_path: Path) -> None:
    seen = run_scenario("directory_change_on_a_full_disk", tmp_path)
    assert seen["remove_alias"] is None
    assert seen["free"] == 0
    assert seen["touch"] is None  # no OSError: the marker's mtime was set instead of writing a new file
    assert seen["marker_changed"] is True
    assert "info@example.test" not in seen["aliases"]


# -- on the real disk ----------------------------------------------------------------------------------------

NO_DISK_HAS_THIS = 2**62


def raw_message(subject: str) -> bytes:
    return f"From: demo@example.test\r\nTo: x@remote.example\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()


def test_writes_that_add_mail_are_refused_below_the_minimum_and_deleting_still_works(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "store" / "mail.sqlite3"
        store = open_store(path, min_free_space=0)
        await store.add_domain("example.test")
        demo = await store.add_account("demo@example.test", "hash")
        raw = raw_message("kept")
        await store.deliver(io.BytesIO(raw), parse_message(io.BytesIO(raw)), [demo.id])
        queued = await store.enqueue(
            raw, len(raw), OutboundMessage("demo@example.test", [OutboundRecipient("x@r.example")])
        )
        await store.close()

        store = open_store(path, min_free_space=NO_DISK_HAS_THIS)
        try:
            inbox = await store.get_mailbox(demo.id, "INBOX")
            archive = await store.get_mailbox(demo.id, "Archive")
            assert inbox is not None and archive is not None
            assert await store.has_room(0) is False
            new = raw_message("new")
            parsed = parse_message(io.BytesIO(new))
            refused = {  # each made when awaited
                "deliver": lambda: store.deliver(io.BytesIO(new), parsed, [demo.id]),
                "submit": lambda: store.submit(io.BytesIO(new), parsed, [demo.id], None),
                "append": lambda: store.append_many(inbox.id, [AppendItem(io.BytesIO(new), parsed)]),
                "copy": lambda: store.copy_messages(inbox.id, [1], archive.id),
                "enqueue": lambda: store.enqueue(
                    new, len(new), OutboundMessage("demo@example.test", [OutboundRecipient("y@r.example")])
                ),
            }
            for name, write in refused.items():
                with pytest.raises(StoreFull):
                    await write()
                    pytest.fail(f"{name} was not refused")
            # what records or removes mail goes through
            assert await store.claim_recent(inbox.id) == 1
            (message,) = await store.list_messages(inbox.id)
            assert await store.store_flags(inbox.id, [1], ["\\Deleted"], "add") > message.modseq
            (recipient,) = (await store.queue_get(queued)).recipients  # type: ignore[union-attr]
            bounce = LocalCopy(io.BytesIO(new), parsed, [demo.id])
            await store.queue_record(
                queued,
                [RecipientResult(recipient.id, "failed", code=550, attempted_at=1.0)],
                local_copy=bounce,
            )
            assert await store.expunge_deleted(inbox.id) == [1]
            # nothing of the refused writes is there; the queue result and its local copy are
            assert [m.uid for m in await store.list_messages(inbox.id)] == [2]
            assert await store.list_messages(archive.id) == []
            assert await store.queue_list() == []
        finally:
            await store.close()

    asyncio.run(main())


def test_the_reserve_is_made_at_open_resized_with_the_setting_and_removed_at_zero(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "store" / "mail.sqlite3"
        reserve = path.with_name("mail.sqlite3.reserve")
        for size in (2 * 1024 * 1024, 1024 * 1024, 0):
            store = open_store(path, disk_reserve=size)
            await store.close()
            if size:
                assert reserve.stat().st_size == size
                assert reserve.stat().st_blocks * 512 >= size  # allocated, not a sparse file
            else:
                assert not reserve.exists()

    asyncio.run(main())


def test_the_wal_is_cut_back_after_a_large_delivery(tmp_path: Path) -> None:
    """A 24 MB message passes through the WAL; once the WAL is reset, it is truncated to WAL_SIZE_LIMIT
    instead of keeping 24 MB until the store closes."""

    async def main() -> None:
        path = tmp_path / "store" / "mail.sqlite3"
        store = open_store(path, min_free_space=0)
        try:
            await store.add_domain("example.test")
            demo = await store.add_account("demo@example.test", "hash")
            line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
            big = raw_message("big") + line * (24_000_000 // len(line))
            await store.deliver(io.BytesIO(big), parse_message(io.BytesIO(big)), [demo.id])
            wal = path.with_name("mail.sqlite3-wal")
            assert wal.stat().st_size > 24_000_000
            for i in range(3):  # the first commits checkpoint the WAL, the next one starts it afresh
                small = raw_message(f"small-{i}")
                await store.deliver(io.BytesIO(small), parse_message(io.BytesIO(small)), [demo.id])
            assert wal.stat().st_size <= WAL_SIZE_LIMIT
        finally:
            await store.close()

    asyncio.run(main())
