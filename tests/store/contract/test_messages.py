"""Contract: messages: delivery and APPEND (byte-exact, all copies or none), flags, COPY/MOVE, EXPUNGE,
reads (whole, chunked, ranges, batches), the parsed structure and the ENVELOPE / BODYSTRUCTURE kept with it,
`changes_since` and the shared mailbox snapshots (docs/decisions/0016)."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.message import imap_forms
from postoffice.store import LimitExceeded, MailStore, NotFound, StoreError
from postoffice.store.api import AppendItem, KeywordLimits, MailboxSnapshot, build_snapshot
from postoffice.store.criteria import ModSeq
from tests.store.contract.harness import (
    BACKEND_NAMES,
    Backend,
    accounts,
    append,
    covers,
    deliver,
    inbox_of,
    message,
    parse,
)

S = MailStore


@covers(S.deliver, S.list_messages, S.read_content, S.get_parsed)
def test_delivery_is_byte_exact_once_per_account_with_increasing_uids_and_modseq(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        raw1, raw2 = message("one"), message("two", body="\u00e9t\u00e9\r\n")
        copies = await deliver(store, raw1, [demo, other, demo])
        assert [(c.account_id, c.uid) for c in copies] == [(demo, 1), (other, 1)]
        await deliver(store, raw2, [demo], flags=["\\Seen", "$Label1"], internaldate=1_700_000_000.0)
        inbox = await store.get_mailbox(demo, "INBOX")
        assert inbox is not None
        assert inbox.messages == 2
        assert inbox.uidnext == 3
        assert inbox.size == len(raw1) + len(raw2)
        msgs = await store.list_messages(inbox.id)
        assert [m.uid for m in msgs] == [1, 2]
        assert [m.size for m in msgs] == [len(raw1), len(raw2)]
        assert msgs[0].modseq < msgs[1].modseq
        assert msgs[1].flags == frozenset({"\\Seen", "$Label1"})
        assert msgs[1].internaldate == 1_700_000_000.0
        assert await store.read_content(msgs[0].content_id) == raw1
        assert await store.read_content(msgs[1].content_id) == raw2
        parsed = await store.get_parsed(msgs[1].content_id)
        assert parsed.size == len(raw2)
        assert parsed.subject == "two"
        assert await deliver(store, raw1, []) == []
        with pytest.raises(NotFound):
            await store.get_parsed(999_999)
        with pytest.raises(NotFound):
            await store.read_content(999_999)

    backend.run(scenario)


@covers(S.deliver)
def test_a_delivery_that_fails_for_one_account_stores_no_copy(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        await store.create_mailbox(demo, "Work")
        with pytest.raises(NotFound):
            await deliver(store, message(), [demo, other], mailbox="Work")  # other has no Work
        work = await store.get_mailbox(demo, "Work")
        assert work is not None
        assert work.messages == 0
        assert work.uidnext == 1
        raw = message("short", "x" * 5000)
        with pytest.raises(StoreError):  # the source ends before parsed.size
            await store.deliver(io.BytesIO(raw[:-100]), parse(raw), [demo])
        assert await store.list_messages(await inbox_of(store, demo)) == []

    backend.run(scenario)


@covers(S.append, S.append_many)
def test_append_many_stores_all_in_order_or_none(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        raws = [message(f"m{i}") for i in range(3)]
        items = [
            AppendItem(io.BytesIO(r), parse(r), ["\\Draft"] if i else [], 1_600_000_000.0 + i)
            for i, r in enumerate(raws)
        ]
        copies = await store.append_many(inbox, items)
        assert [c.uid for c in copies] == [1, 2, 3]
        listed = await store.list_messages(inbox)
        assert [await store.read_content(m.content_id) for m in listed] == raws
        assert [m.internaldate for m in listed] == [1_600_000_000.0, 1_600_000_001.0, 1_600_000_002.0]
        assert [m.flags for m in listed] == [frozenset(), frozenset({"\\Draft"}), frozenset({"\\Draft"})]
        bad = message("bad", "x" * 5000)
        with pytest.raises(StoreError):
            await store.append_many(
                inbox,
                [
                    AppendItem(io.BytesIO(raws[0]), parse(raws[0])),
                    AppendItem(io.BytesIO(bad[:-10]), parse(bad)),
                ],
            )
        assert len(await store.list_messages(inbox)) == 3  # the first of the failed call is not there
        single = await store.append(inbox, io.BytesIO(raws[0]), parse(raws[0]))
        assert single.uid > 3  # a failed call may use UIDs, but never makes one appear twice
        with pytest.raises(NotFound):
            await store.append(999_999, io.BytesIO(raws[0]), parse(raws[0]))

    backend.run(scenario)


@covers(S.expunge, S.read_content)
def test_expunge_frees_a_content_with_its_last_copy_and_never_reuses_uids(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        await deliver(store, message("shared"), [demo, other])
        inbox, other_inbox = await inbox_of(store, demo), await inbox_of(store, other)
        (msg,) = await store.list_messages(inbox)
        assert await store.expunge(inbox, [1, 99]) == [1]
        assert await store.expunge(inbox, [1]) == []
        (other_msg,) = await store.list_messages(other_inbox)
        assert await store.read_content(other_msg.content_id) == message("shared")  # still has a reference
        await store.expunge(other_inbox, [1])
        with pytest.raises(NotFound):
            await store.read_content(msg.content_id)
        assert (await deliver(store, message("next"), [demo]))[0].uid == 2
        refreshed = await store.get_mailbox(demo, "INBOX")
        assert refreshed is not None
        assert refreshed.messages == 1
        assert (await store.changes_since(inbox, msg.modseq)).expunged == [1]
        with pytest.raises(NotFound):
            await store.expunge(999_999, [1])

    backend.run(scenario)


@covers(S.store_flags)
def test_store_flags_add_remove_replace_and_each_change_has_a_new_modseq(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        await deliver(store, message(), [demo])
        await deliver(store, message(), [demo])
        modseq = await store.store_flags(inbox, [1], ["\\Flagged", "work", "\\Recent"], "add")
        first, second = await store.list_messages(inbox)
        assert first.flags == {"\\Flagged", "work"}
        assert first.modseq == modseq > second.modseq
        again = await store.store_flags(inbox, [1], ["\\Flagged"], "add")  # nothing changes
        assert again == modseq
        assert (await store.list_messages(inbox))[0].modseq == modseq
        removed = await store.store_flags(inbox, [1, 2], ["work", "\\SEEN"], "remove")  # only 1 changes
        first, second = await store.list_messages(inbox)
        assert removed > modseq
        assert first.flags == {"\\Flagged"}
        assert first.modseq == removed
        assert second.modseq < modseq
        replaced = await store.store_flags(inbox, [1, 2, 3], ["\\Seen", "$X"], "replace")
        assert replaced > removed
        assert [m.flags for m in await store.list_messages(inbox)] == [frozenset({"\\Seen", "$X"})] * 2
        with pytest.raises(ValueError, match="bad flag mode"):
            await store.store_flags(inbox, [1], ["\\Seen"], "toggle")
        with pytest.raises(NotFound):
            await store.store_flags(999_999, [1], ["\\Seen"], "add")

    backend.run(scenario)


@covers(S.store_flags_unchanged_since)
def test_a_conditional_flag_change_leaves_messages_changed_since_alone(
    backend: Backend,
) -> None:
    """RFC 7162 3.1.3: each message whose MODSEQ is above the given one is left as it is and named; the
    others change (or, already so, keep their MODSEQ); 0 fails every message."""

    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        for _ in range(3):
            await deliver(store, message(), [demo])
        before = max(m.modseq for m in await store.list_messages(inbox))
        touched = await store.store_flags(inbox, [2], ["\\Seen"], "add")  # 2 changes after `before`
        update = await store.store_flags_unchanged_since(inbox, [1, 2, 3, 99], ["\\Flagged"], "add", before)
        assert update.modified == (2,)  # 99 does not exist: neither changed nor modified
        assert update.modseq > touched
        first, second, third = await store.list_messages(inbox)
        assert [first.flags, second.flags, third.flags] == [{"\\Flagged"}, {"\\Seen"}, {"\\Flagged"}]
        assert first.modseq == third.modseq == update.modseq
        assert second.modseq == touched
        same = await store.store_flags_unchanged_since(inbox, [1], ["\\Flagged"], "add", update.modseq)
        assert same.modified == ()
        assert (await store.list_messages(inbox))[0].modseq == update.modseq  # nothing changed: no new MODSEQ
        never = await store.store_flags_unchanged_since(inbox, [1, 2], ["$X"], "add", 0)
        assert never.modified == (1, 2)
        assert all("$X" not in m.flags for m in await store.list_messages(inbox))
        hit = await store.search(inbox, ModSeq(update.modseq))
        assert hit == [1, 3]  # SEARCH MODSEQ: at least the given MODSEQ
        with pytest.raises(NotFound):
            await store.store_flags_unchanged_since(999_999, [1], ["\\Seen"], "add", 5)

    backend.run(scenario)


@covers(S.open_content, S.read_contents, S.read_range)
def test_contents_are_read_whole_in_chunks_in_batches_and_in_ranges(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        big = message("big", body="".join(f"line {i}\r\n" for i in range(400_000)))
        assert len(big) > 3 * 1024 * 1024
        small = message("small")
        await deliver(store, big, [demo])
        await deliver(store, small, [demo])
        large, little = await store.list_messages(inbox)
        chunks = [chunk async for chunk in store.open_content(large.content_id, chunk_size=65536)]
        assert max(len(c) for c in chunks) <= 65536
        assert b"".join(chunks) == big
        assert [c async for c in store.open_content(little.content_id, chunk_size=7)] == [
            small[i : i + 7] for i in range(0, len(small), 7)
        ]
        with pytest.raises(NotFound):
            async for _ in store.open_content(999_999):
                pass
        both = await store.read_contents([little.content_id, 999_999, large.content_id, little.content_id])
        assert both == {little.content_id: small, large.content_id: big}
        assert await store.read_contents([]) == {}
        # with their total size given (the caller knows it): the same, small or large
        for ids, octets in (
            ([little.content_id], len(small)),
            ([little.content_id, large.content_id], len(small) + len(big)),
        ):
            assert await store.read_contents([*ids, 999_999], octets=octets) == {
                cid: whole
                for cid, whole in ((little.content_id, small), (large.content_id, big))
                if cid in ids
            }
        for cid, whole in ((little.content_id, small), (large.content_id, big)):
            assert await store.read_range(cid, 6, 10) == whole[6:16]
            assert await store.read_range(cid, len(whole) - 3, 100) == whole[-3:]
            assert await store.read_range(cid, len(whole) + 5, 10) == b""
            assert await store.read_range(cid, 0, 0) == b""
        assert await store.read_range(large.content_id, 2_000_000, 5) == big[2_000_000:2_000_005]
        with pytest.raises(NotFound):
            await store.read_range(999_999, 0, 10)

    backend.run(scenario)


HARD = (
    b"From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\r\nTo: undisclosed-recipients:;\r\n"
    b"Subject: caf\xc3\xa9\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
    b"Content-Type: text/plain; name*0*=utf-8''caf%C3%A9; name*1=.txt\r\n\r\nhi\r\n--b--\r\n"
)


@covers(S.imap_renderings, S.get_parsed_many, S.get_parsed)
def test_the_parse_and_its_imap_forms_are_kept_with_the_content_and_go_with_it(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        parsed = parse(HARD)
        await store.append(inbox, io.BytesIO(HARD), parsed)
        await deliver(store, message("plain"), [demo])
        hard, plain = await store.list_messages(inbox)
        stored = await store.get_parsed(hard.content_id)
        assert stored.body == parsed.body
        assert stored.envelope == parsed.envelope
        assert stored.search_text == ""  # the search text lives in the store's index, not in the parse
        many = await store.get_parsed_many([plain.content_id, 999_999, hard.content_id])
        assert sorted(many) == sorted([plain.content_id, hard.content_id])
        assert many[hard.content_id] == stored
        assert await store.get_parsed_many([]) == {}
        forms = await store.imap_renderings([hard.content_id, 999_999, plain.content_id])
        assert sorted(forms) == sorted([hard.content_id, plain.content_id])
        assert forms[hard.content_id] == imap_forms.render_imap_forms(parsed)
        # 8-bit header text: quoted in UTF-8 for UTF8=ACCEPT sessions, a literal otherwise
        assert forms[hard.content_id].envelope_utf8 == imap_forms.envelope(parsed.envelope, utf8=True)
        assert forms[plain.content_id].envelope_utf8 is None  # the same in both forms
        assert await store.imap_renderings([]) == {}
        await store.store_flags(inbox, [hard.uid], ["\\Deleted"], "add")
        assert await store.expunge_deleted(inbox) == [hard.uid]
        assert await store.imap_renderings([hard.content_id]) == {}  # went with the content
        assert await store.get_parsed_many([hard.content_id]) == {}

    backend.run(scenario)


@covers(S.copy_messages, S.subscribe)
def test_copy_and_move_keep_flags_share_content_and_notify(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        events: list[tuple[str, int, tuple[int, ...]]] = []
        store.subscribe(account, lambda e: events.append((e.kind, e.mailbox_id, e.uids)))
        inbox, archive = await inbox_of(store, account), await inbox_of(store, account, "Archive")
        await append(store, inbox, "a", ["\\Flagged", "$X"], 1_500_000_000.0)
        await append(store, inbox, "b")
        await append(store, inbox, "c")
        assert await store.copy_messages(inbox, [3, 1, 99], archive) == [(1, 1), (3, 2)]
        copied = await store.list_messages(archive)
        assert copied[0].flags == {"\\Flagged", "$X"}
        assert copied[0].internaldate == 1_500_000_000.0
        originals = await store.list_messages(inbox)
        assert len(originals) == 3
        assert copied[0].content_id == originals[0].content_id
        assert await store.copy_messages(inbox, [2], archive, move=True) == [(2, 3)]
        assert [m.uid for m in await store.list_messages(inbox)] == [1, 3]
        await store.expunge(inbox, [1])
        assert await store.read_content(copied[0].content_id) == message("a", "body a\r\n")  # shared, kept
        assert ("added", archive, (1, 2)) in events
        assert ("expunged", inbox, (2,)) in events
        assert await store.copy_messages(inbox, [42], archive) == []
        with pytest.raises(NotFound):
            await store.copy_messages(inbox, [3], 999_999)

    backend.run(scenario)


@covers(S.expunge_deleted)
def test_expunge_deleted_removes_only_deleted_messages_of_the_given_uids(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        inbox = await inbox_of(store, account)
        for i in range(6):
            await append(store, inbox, f"m{i}", ["\\Deleted"] if i % 2 == 0 else [])
        assert await store.expunge_deleted(inbox, [1, 2, 3, 4]) == [1, 3]
        assert [m.uid for m in await store.list_messages(inbox)] == [2, 4, 5, 6]
        assert await store.expunge_deleted(inbox, []) == []
        assert await store.expunge_deleted(inbox) == [5]
        assert (await store.changes_since(inbox, 0)).expunged == [1, 3, 5]
        with pytest.raises(NotFound):
            await store.expunge_deleted(999_999)

    backend.run(scenario)


@covers(S.changes_since)
def test_changes_since_many_changes_same_answer_as_a_full_read(backend: Backend) -> None:
    """More changed and expunged messages than a backend reads in its fast path (SQLite: SMALL_CHANGES, on
    the event loop), and fewer: the changes are those of the message list, whichever path read them."""

    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        inbox = await inbox_of(store, account)
        raws = [message(f"m{i}") for i in range(480)]
        await store.append_many(inbox, [AppendItem(io.BytesIO(raw), parse(raw)) for raw in raws])
        base = (await store.changes_since(inbox, 0)).highest_modseq
        await store.store_flags(inbox, list(range(1, 241)), ["$Many"], "add")  # 240 changed
        await store.expunge(inbox, list(range(241, 461)))  # 220 expunged
        await store.store_flags(inbox, [470], ["\\Seen"], "add")
        many = await store.changes_since(inbox, base)
        listed = await store.list_messages(inbox)
        assert many.messages == [m for m in listed if m.modseq > base]
        assert [m.uid for m in many.messages] == [*range(1, 241), 470]
        assert many.expunged == list(range(241, 461))
        assert many.highest_modseq == max(m.modseq for m in listed)
        few = await store.changes_since(inbox, many.highest_modseq - 1)  # the last change only
        assert [(m.uid, m.flags) for m in few.messages] == [(470, frozenset({"\\Seen"}))]
        assert few.expunged == []

    backend.run(scenario)


@covers(S.changes_since)
def test_changes_since_reports_new_changed_and_expunged_messages(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        inbox, other = await inbox_of(store, account), await inbox_of(store, account, "Archive")
        for i in range(20):
            await append(store, inbox, f"m{i}")
        everything = await store.changes_since(inbox, 0)
        assert [m.uid for m in everything.messages] == list(range(1, 21))
        assert everything.expunged == []
        assert everything.highest_modseq == max(m.modseq for m in everything.messages)
        assert everything.messages == await store.list_messages(inbox)
        base = everything.highest_modseq

        nothing = await store.changes_since(inbox, base)
        assert nothing.messages == []
        assert nothing.expunged == []
        assert nothing.highest_modseq == base

        await store.store_flags(inbox, [7, 3], ["\\Flagged"], "add")
        await append(store, other, "elsewhere")  # another mailbox: not a change of INBOX
        await store.expunge(inbox, [5, 12])
        await append(store, inbox, "new", ["\\Seen"])
        changes = await store.changes_since(inbox, base)
        assert [(m.uid, m.flags) for m in changes.messages] == [
            (3, frozenset({"\\Flagged"})),
            (7, frozenset({"\\Flagged"})),
            (21, frozenset({"\\Seen"})),
        ]
        assert changes.expunged == [5, 12]
        listed = await store.list_messages(inbox)
        assert changes.highest_modseq == max(m.modseq for m in listed)
        assert all(m in listed for m in changes.messages)

        # Only what came after the MODSEQ: the expunge is older than the last append.
        later = await store.changes_since(inbox, changes.highest_modseq - 1)
        assert [m.uid for m in later.messages] == [21]
        assert later.expunged == []

        # A flag change back to what it was is still a change (a new MODSEQ); a no-op STORE is not.
        await store.store_flags(inbox, [3], ["\\Flagged"], "remove")
        await store.store_flags(inbox, [4], ["\\Flagged"], "remove")
        again = await store.changes_since(inbox, changes.highest_modseq)
        assert [(m.uid, m.flags) for m in again.messages] == [(3, frozenset())]
        assert again.highest_modseq > changes.highest_modseq

        # MOVE out of the mailbox is an expunge of the source; the target sees new messages.
        pairs = await store.copy_messages(inbox, [1, 2], other, move=True)
        moved = await store.changes_since(inbox, again.highest_modseq)
        assert moved.messages == []
        assert moved.expunged == [1, 2]
        target = await store.changes_since(other, again.highest_modseq)
        assert [m.uid for m in target.messages] == [new for _, new in pairs]

        with pytest.raises(NotFound):
            await store.changes_since(999_999, 0)

    backend.run(scenario)


# -- snapshots ---------------------------------------------------------------------------------------------
def columns(snapshot: MailboxSnapshot) -> tuple[object, ...]:
    return (
        list(snapshot.uids),
        list(snapshot.flags),
        list(snapshot.content_ids),
        list(snapshot.sizes),
        list(snapshot.internaldates),
        snapshot.unseen,
        snapshot.first_unseen_uid,
        snapshot.mailbox.messages,
        snapshot.mailbox.uidnext,
    )


async def fresh(store: MailStore, mailbox_id: int) -> MailboxSnapshot:
    status = await store.mailbox_status(mailbox_id)
    return build_snapshot(status.mailbox, 0, await store.list_messages(mailbox_id))


# The changes the property tests make, in any order.
@dataclass(frozen=True)
class AppendOp:
    flags: list[str]


@dataclass(frozen=True)
class FlagsOp:
    uids: list[int]
    flags: list[str]
    mode: str


@dataclass(frozen=True)
class ExpungeOp:
    uids: list[int]


@dataclass(frozen=True)
class CopyOp:
    uids: list[int]
    move: bool


@dataclass(frozen=True)
class SnapshotOp:
    pass


Operation = AppendOp | FlagsOp | ExpungeOp | CopyOp | SnapshotOp

FLAG_SETS = st.lists(st.sampled_from(["\\Seen", "\\Deleted", "\\Flagged", "$Work", "$Later"]), max_size=3)
OPERATIONS = st.lists(
    st.one_of(
        st.builds(AppendOp, FLAG_SETS),
        st.builds(
            FlagsOp,
            st.lists(st.integers(1, 40), max_size=5),
            FLAG_SETS,
            st.sampled_from(["add", "remove", "replace"]),
        ),
        st.builds(ExpungeOp, st.lists(st.integers(1, 40), max_size=5)),
        st.builds(CopyOp, st.lists(st.integers(1, 40), max_size=3), st.just(True)),
        st.just(SnapshotOp()),
    ),
    max_size=25,
)


@covers(S.snapshot)
@pytest.mark.parametrize("name", BACKEND_NAMES)
@settings(max_examples=40)
@given(operations=OPERATIONS)
def test_a_snapshot_equals_one_read_from_scratch_after_any_changes(
    make_backend: Callable[[str], Backend], name: str, operations: list[Operation]
) -> None:
    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        inbox, archive = await inbox_of(store, account), await inbox_of(store, account, "Archive")
        for i in range(5):
            await append(store, inbox, f"start {i}", ["\\Seen"] if i % 2 else [])
        held = [await store.snapshot(inbox)]
        before = [columns(held[0])]
        for n, op in enumerate(operations):
            if isinstance(op, AppendOp):
                await append(store, inbox, f"m{n}", op.flags)
            elif isinstance(op, FlagsOp):
                await store.store_flags(inbox, op.uids, op.flags, op.mode)
            elif isinstance(op, ExpungeOp):
                await store.expunge(inbox, op.uids)
            elif isinstance(op, CopyOp):
                await store.copy_messages(inbox, op.uids, archive, move=op.move)
            else:
                held.append(await store.snapshot(inbox))
                before.append(columns(held[-1]))
        current = await store.snapshot(inbox)
        assert columns(current) == columns(await fresh(store, inbox))
        keywords = {f for flags in current.flags for f in flags if not f.startswith("\\")}
        assert keywords <= current.keywords  # keywords only accumulate
        # Snapshots handed out earlier never change (sessions share them).
        assert [columns(s) for s in held] == before

    make_backend(name).run(scenario)


@covers(S.snapshot)
def test_a_deleted_and_recreated_mailbox_is_not_served_from_the_old_snapshot(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        work = await store.create_mailbox(account, "Work")
        await append(store, work.id, "old")
        old = await store.snapshot(work.id)
        await store.delete_mailbox(account, "Work")
        again = await store.create_mailbox(account, "Work")
        snapshot = await store.snapshot(again.id)
        assert snapshot.mailbox.uidvalidity != old.mailbox.uidvalidity
        assert list(snapshot.uids) == []
        assert list(old.uids) == [1]
        with pytest.raises(NotFound):
            await store.snapshot(999_999)

    backend.run(scenario)


@covers(S.store_flags, S.append_many, S.copy_messages)
def test_keyword_limits_refuse_only_keywords_new_to_the_mailbox(backend: Backend) -> None:
    """docs/decisions/0043: STORE and APPEND of a keyword new to the mailbox that is too long, or one more
    than the mailbox may have, are LimitExceeded and change nothing; keywords it has already are never
    refused; COPY / MOVE leave out what does not fit (the first new keywords in sorted order are kept)."""
    limits = KeywordLimits(max_keywords=3, max_length=8)

    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox, archive = await inbox_of(store, demo), await inbox_of(store, demo, "Archive")
        for i in range(3):
            await append(store, inbox, f"m{i}")
        assert await store.store_flags(inbox, [1], ["a", "b"], "add", keyword_limits=limits)
        with pytest.raises(LimitExceeded, match="8 characters"):
            await store.store_flags(inbox, [2], ["\\Seen", "toolong12"], "add", keyword_limits=limits)
        await store.store_flags(inbox, [2], ["exactly8"], "add", keyword_limits=limits)  # three now
        before = await store.list_messages(inbox)
        with pytest.raises(LimitExceeded, match="at most 3 keywords"):
            await store.store_flags(inbox, [3], ["\\Seen", "d"], "add", keyword_limits=limits)
        with pytest.raises(LimitExceeded):
            await store.store_flags(inbox, [1, 2, 3], ["a", "d"], "replace", keyword_limits=limits)
        assert await store.list_messages(inbox) == before  # nothing changed, \Seen neither
        await store.store_flags(inbox, [3], ["a", "b", "exactly8"], "replace", keyword_limits=limits)
        await store.store_flags(inbox, [2], ["a"], "add", keyword_limits=limits)
        raw = message("new")
        with pytest.raises(LimitExceeded):
            await store.append_many(
                inbox,
                [
                    AppendItem(io.BytesIO(raw), parse(raw), ["a"]),
                    AppendItem(io.BytesIO(raw), parse(raw), ["z"]),
                ],
                keyword_limits=limits,
            )
        assert len(await store.list_messages(inbox)) == 3  # all or nothing
        await store.append_many(
            inbox, [AppendItem(io.BytesIO(raw), parse(raw), ["b"])], keyword_limits=limits
        )
        # over the limit already (stored without limits): what the mailbox has stays usable
        await store.store_flags(inbox, [4], ["longer-than-8", "x", "y"], "add")
        await store.store_flags(inbox, [1], ["longer-than-8", "x"], "add", keyword_limits=limits)
        with pytest.raises(LimitExceeded):
            await store.store_flags(inbox, [1], ["w"], "add", keyword_limits=limits)
        await store.store_flags(
            inbox, [1, 2, 3, 4], ["longer-than-8", "x", "y"], "remove", keyword_limits=limits
        )
        # COPY / MOVE: the target has "k"; of the new ones "a" and "b" fit, "exactly8" does not
        await append(store, archive, "there", ["k"])
        await store.store_flags(inbox, [1], ["longer-than-8"], "add")
        pairs = await store.copy_messages(inbox, [1, 2, 3], archive, keyword_limits=limits)
        copied = {m.uid: m.flags for m in await store.list_messages(archive)}
        assert [copied[new] for _, new in pairs] == [{"a", "b"}, {"a"}, {"a", "b"}]
        moved = await store.copy_messages(inbox, [4], archive, move=True, keyword_limits=limits)
        assert [m.flags for m in await store.list_messages(archive) if m.uid == moved[0][1]] == [{"b"}]
        assert len(await store.list_messages(inbox)) == 3
        assert await store.copy_messages(inbox, [1], archive) != []  # without limits: everything
        assert (await store.list_messages(archive))[-1].flags == {"a", "b", "longer-than-8"}

    backend.run(scenario)


@covers(S.store_flags)
def test_the_keyword_count_holds_for_concurrent_changes_from_two_store_objects(backend: Backend) -> None:
    """The count is checked in the transaction of the change: twenty new keywords stored at once through
    two store objects on one store (two sessions, or two processes) give the mailbox exactly the limit."""
    limits = KeywordLimits(max_keywords=5, max_length=64)

    async def scenario(first: MailStore) -> None:
        (demo,) = await accounts(first, "demo")
        inbox = await inbox_of(first, demo)
        await append(first, inbox, "m")
        second = backend.open()
        try:
            results = await asyncio.gather(
                *(
                    (first, second)[i % 2].store_flags(inbox, [1], [f"k{i}"], "add", keyword_limits=limits)
                    for i in range(20)
                ),
                return_exceptions=True,
            )
        finally:
            await second.close()
        refused = [r for r in results if isinstance(r, BaseException)]
        assert len(refused) == 15
        assert all(isinstance(r, LimitExceeded) for r in refused)
        (stored,) = await first.list_messages(inbox)
        assert len(stored.flags) == 5

    backend.run(scenario)


KEYWORD_NAMES = st.sampled_from(["a", "b", "c", "d", "e", "long-keyword", "\\Seen", "\\Flagged"])
KEYWORD_OPERATIONS = st.lists(
    st.one_of(
        st.builds(AppendOp, st.lists(KEYWORD_NAMES, max_size=3)),
        st.builds(
            FlagsOp,
            st.lists(st.integers(1, 6), min_size=1, max_size=3),
            st.lists(KEYWORD_NAMES, max_size=3),
            st.sampled_from(["add", "remove", "replace"]),
        ),
        st.builds(CopyOp, st.lists(st.integers(1, 6), min_size=1, max_size=3), st.just(False)),
    ),
    max_size=20,
)


@covers(S.store_flags, S.append_many, S.copy_messages)
@pytest.mark.parametrize("name", BACKEND_NAMES)
@settings(max_examples=40)
@given(operations=KEYWORD_OPERATIONS)
def test_keyword_limits_hold_after_any_changes_and_a_refused_change_changes_nothing(
    make_backend: Callable[[str], Backend], name: str, operations: list[AppendOp | FlagsOp | CopyOp]
) -> None:
    """Starting from mailboxes within the limits, no sequence of limited changes takes one over them; each
    change applies whole or is refused (LimitExceeded) and changes nothing; a copy is never refused."""
    limits = KeywordLimits(max_keywords=3, max_length=8)

    async def keywords(store: MailStore, mailbox: int) -> set[str]:
        return {f for m in await store.list_messages(mailbox) for f in m.flags if not f.startswith("\\")}

    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        inbox, archive = await inbox_of(store, account), await inbox_of(store, account, "Archive")
        for i in range(3):
            await append(store, inbox, f"start {i}")
        await append(store, archive, "there", ["e"])
        for op in operations:
            before = await store.list_messages(inbox)
            try:
                if isinstance(op, AppendOp):
                    raw = message("m")
                    item = AppendItem(io.BytesIO(raw), parse(raw), op.flags)
                    await store.append_many(inbox, [item], keyword_limits=limits)
                elif isinstance(op, FlagsOp):
                    await store.store_flags(inbox, op.uids, op.flags, op.mode, keyword_limits=limits)
                else:
                    await store.copy_messages(inbox, op.uids, archive, move=op.move, keyword_limits=limits)
            except LimitExceeded:
                assert not isinstance(op, CopyOp)
                assert await store.list_messages(inbox) == before
            for mailbox in (inbox, archive):
                found = await keywords(store, mailbox)
                assert len(found) <= 3, found
                assert all(len(k) <= 8 for k in found), found

    make_backend(name).run(scenario)


@covers(S.list_page, S.get_messages)
def test_pages_newest_first_and_messages_by_uid(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        for n in range(7):
            await deliver(store, message(f"m{n}"), [demo])
        await deliver(store, message("elsewhere"), [other])
        inbox = await inbox_of(store, demo)
        await store.expunge(inbox, [3])
        everything = await store.list_messages(inbox)
        page = await store.list_page(inbox, 0, 3)
        assert [m.uid for m in page] == [7, 6, 5]
        assert page == list(reversed(everything))[:3]  # the same objects as the full list
        assert [m.uid for m in await store.list_page(inbox, 3, 3)] == [4, 2, 1]
        assert [m.uid for m in await store.list_page(inbox, 5, 3)] == [1]
        assert await store.list_page(inbox, 6, 3) == []
        assert await store.list_page(inbox, 0, 0) == []
        got = await store.get_messages(inbox, [7, 3, 1, 1, 99])
        assert [m.uid for m in got] == [1, 7]  # those that exist, in UID order, once
        assert got == [everything[0], everything[-1]]
        assert await store.get_messages(inbox, []) == []
        assert len(await store.get_messages(inbox, range(1, 2000))) == 6  # many UIDs at once

    backend.run(scenario)


@covers(S.snippets)
def test_snippets_are_the_beginning_of_the_text_on_one_line(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        await deliver(store, message("one", body="Hello   there,\r\n\r\nsecond line\r\n"), [demo])
        await deliver(store, message("two", body="x" * 500 + "\r\n"), [demo])
        await deliver(store, message("three", body="\u4f60\u597d\uff0c\u4e16\u754c\r\n"), [demo])
        infos = await store.list_messages(await inbox_of(store, demo))
        got = await store.snippets([m.content_id for m in infos] + [999_999], length=20)
        assert got[infos[0].content_id] == "Hello there, second "
        assert got[infos[1].content_id] == "x" * 20
        assert got[infos[2].content_id] == "\u4f60\u597d\uff0c\u4e16\u754c"
        assert 999_999 not in got
        assert await store.snippets([]) == {}

    backend.run(scenario)


SORTABLE = (
    b"From: =?utf-8?q?Zo=C3=AB?= <zoe@example.org>, bob@example.org\r\n"
    b"To: undisclosed:;, Carol <carol@example.net>\r\n"
    b"Cc: dave@example.com\r\n"
    b"Subject: Re: =?utf-8?q?caf=C3=A9?=\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0100\r\n"
    b"Message-ID: <child@example.org>\r\n"
    b"In-Reply-To: <parent@example.org>\r\n"
    b"References: <root@example.org> <parent@example.org>\r\n\r\nbody\r\n"
)


@covers(S.sort_fields, S.sort_columns)
def test_what_sort_and_thread_compare_is_kept_with_the_content_and_goes_with_it(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        await store.append(inbox, io.BytesIO(SORTABLE), parse(SORTABLE))
        await store.append(inbox, io.BytesIO(b"\r\nno header at all\r\n"), parse(b"\r\nno header at all\r\n"))
        full, bare = await store.list_messages(inbox)
        fields = await store.sort_fields([bare.content_id, 999_999, full.content_id])
        assert sorted(fields) == sorted([full.content_id, bare.content_id])
        f = fields[full.content_id]
        assert f.sent == 1_796_115_600.0  # 2026-12-01 09:00 UTC
        assert f.subject == "Re: café"
        assert (f.from_mailbox, f.from_display) == ("zoe", "Zoë")  # the first address, its name decoded
        assert (f.to_mailbox, f.to_display) == ("carol", "Carol")  # the group marker left out
        assert f.cc_mailbox == "dave"
        assert f.message_id == "<child@example.org>"
        assert f.references == ("<root@example.org>", "<parent@example.org>")
        b = fields[bare.content_id]
        assert (b.sent, b.subject, b.from_mailbox, b.from_display, b.message_id, b.references) == (
            None,
            "",
            "",
            "",
            None,
            (),
        )
        assert await store.sort_fields([]) == {}
        assert await store.sort_columns([full.content_id, 999_999, bare.content_id], ["sent"]) == {
            "sent": {full.content_id: 1_796_115_600.0, bare.content_id: None}
        }
        # any fields, as sort_fields has them
        names = ["references", "subject", "sent", "message_id", "from_display"]
        assert await store.sort_columns([full.content_id, bare.content_id], names) == {
            name: {cid: getattr(fields[cid], name) for cid in (full.content_id, bare.content_id)}
            for name in names
        }
        assert await store.sort_columns([], ["sent", "subject"]) == {"sent": {}, "subject": {}}
        with pytest.raises(ValueError, match="no such field"):
            await store.sort_columns([full.content_id], ["sent", "no such field"])
        await store.store_flags(inbox, [full.uid], ["\\Deleted"], "add")
        await store.expunge_deleted(inbox)
        assert await store.sort_fields([full.content_id]) == {}  # went with the content
        assert await store.sort_columns([full.content_id], ["sent", "subject"]) == {"sent": {}, "subject": {}}

    backend.run(scenario)


@covers(S.prune_tombstones)
def test_pruned_tombstones_leave_a_horizon_and_the_uids_that_are_left(backend: Backend) -> None:
    """Decision 0069: old expunge records go; a reader from before them is given every UID still there
    (`present`), so it can tell what it missed; one from after them reads changes as before."""

    async def scenario(store: MailStore) -> None:
        (account,) = await accounts(store, "demo")
        inbox = await inbox_of(store, account)
        for i in range(6):
            await append(store, inbox, f"m{i}")
        start = (await store.changes_since(inbox, 0)).highest_modseq
        old_snapshot = await store.snapshot(inbox)  # cached: must not be advanced past a horizon later
        await store.expunge(inbox, [2, 4])
        assert await store.prune_tombstones(time.time() - 3600) == 0  # nothing that old
        middle = (await store.changes_since(inbox, 0)).highest_modseq
        assert (await store.changes_since(inbox, start)).present is None
        assert await store.prune_tombstones(time.time() + 1) == 2
        after_prune = await store.changes_since(inbox, start)
        assert after_prune.expunged == []  # the records are gone
        assert after_prune.present == [1, 3, 5, 6]
        assert (
            await store.changes_since(inbox, middle)
        ).present is None  # after the horizon: exact as before
        await store.expunge(inbox, [5])
        later = await store.changes_since(inbox, middle)
        assert (later.expunged, later.present) == ([5], None)
        snapshot = await store.snapshot(inbox)
        assert list(snapshot.uids) == [1, 3, 6]
        assert list(old_snapshot.uids) == [1, 2, 3, 4, 5, 6]  # snapshots are immutable
        assert await store.prune_tombstones(time.time() + 1) == 1

    backend.run(scenario)
