"""Contract: the identifiers IMAP clients cache (RFC 9051 2.3.1.1, RFC 7162 3.1): UIDVALIDITY values are
never reused and a re-created mailbox gets a greater one; UIDs in a mailbox only grow, never reused after an
expunge, a rename or a restart; MODSEQ is per account and grows with every change of any of its messages,
across restarts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.store import MailStore
from tests.store.contract.harness import BACKEND_NAMES, Backend, accounts, append, covers, inbox_of

S = MailStore


@covers(S.create_mailbox, S.delete_mailbox, S.remove_account, S.add_account)
def test_uidvalidity_is_never_reused_and_grows_for_a_recreated_mailbox(backend: Backend) -> None:
    seen: list[int] = []

    async def first(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        seen.extend(b.uidvalidity for b in await store.list_mailboxes(demo))
        work = await store.create_mailbox(demo, "Work")
        await store.delete_mailbox(demo, "Work")
        again = await store.create_mailbox(demo, "Work")
        assert again.uidvalidity > work.uidvalidity
        seen.extend([work.uidvalidity, again.uidvalidity])
        await store.rename_mailbox(demo, "INBOX", "Old")  # a new mailbox for INBOX's messages
        old = await store.get_mailbox(demo, "Old")
        assert old is not None
        seen.append(old.uidvalidity)
        await store.remove_account("demo@example.test")
        recreated = await store.add_account("demo@example.test", "hash")
        seen.extend(b.uidvalidity for b in await store.list_mailboxes(recreated.id))

    async def after_restart(store: MailStore) -> None:
        account = await store.get_account("demo@example.test")
        assert account is not None
        later = await store.create_mailbox(account.id, "Later")
        assert later.uidvalidity > max(seen)
        seen.append(later.uidvalidity)

    backend.run(first)
    backend.run(after_restart)
    assert len(seen) == len(set(seen)) == 6 + 2 + 1 + 6 + 1


@covers(S.append, S.expunge, S.rename_mailbox)
def test_uids_only_grow_across_expunge_rename_and_restart(backend: Backend) -> None:
    async def first(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        for i in range(3):
            await append(store, inbox, f"m{i}")
        assert await store.expunge(inbox, [3]) == [3]  # the highest UID goes
        assert (await append(store, inbox, "after expunge")).uid == 4
        await store.rename_mailbox(demo, "INBOX", "Old")  # INBOX empties but keeps its UIDNEXT
        assert (await append(store, inbox, "after rename")).uid == 5
        await store.expunge(inbox, [5])

    async def after_restart(store: MailStore) -> None:
        account = await store.get_account("demo@example.test")
        assert account is not None
        inbox = await inbox_of(store, account.id)
        mailbox = await store.get_mailbox(account.id, "INBOX")
        assert mailbox is not None
        assert mailbox.uidnext == 6
        assert mailbox.messages == 0
        assert (await append(store, inbox, "after restart")).uid == 6
        old = await inbox_of(store, account.id, "Old")
        moved = await store.copy_messages(old, [1], inbox, move=True)
        assert moved == [(1, 7)]

    backend.run(first)
    backend.run(after_restart)


@covers(S.store_flags, S.mailbox_status, S.changes_since)
def test_modseq_grows_with_every_change_of_the_account_across_restarts(backend: Backend) -> None:
    modseqs: list[int] = []

    async def first(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox, archive = await inbox_of(store, demo), await inbox_of(store, demo, "Archive")
        await append(store, inbox, "a")
        await append(store, archive, "b")  # another mailbox of the same account: the same counter
        modseqs.extend(m.modseq for m in await store.list_messages(inbox))
        modseqs.extend(m.modseq for m in await store.list_messages(archive))
        modseqs.append(await store.store_flags(inbox, [1], ["\\Seen"], "add"))
        await store.expunge(archive, [1])
        status = await store.mailbox_status(archive)
        modseqs.append(status.highest_modseq)  # the expunge's MODSEQ

    async def after_restart(store: MailStore) -> None:
        account = await store.get_account("demo@example.test")
        assert account is not None
        inbox = await inbox_of(store, account.id)
        assert (await store.mailbox_status(inbox)).highest_modseq == modseqs[2]
        modseqs.append(await store.store_flags(inbox, [1], ["\\Seen"], "remove"))
        await append(store, inbox, "c")
        modseqs.append((await store.list_messages(inbox))[-1].modseq)
        changes = await store.changes_since(inbox, modseqs[2])
        assert [m.uid for m in changes.messages] == [1, 2]
        assert changes.highest_modseq == modseqs[-1]

    backend.run(first)
    backend.run(after_restart)
    assert modseqs == sorted(set(modseqs))
    assert len(modseqs) == 6


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.sampled_from(["INBOX", "Work"])),
        st.tuples(st.just("expunge"), st.sampled_from(["INBOX", "Work"]), st.integers(1, 12)),
        st.tuples(st.just("flag"), st.sampled_from(["INBOX", "Work"]), st.integers(1, 12)),
        st.tuples(st.just("move"), st.integers(1, 12)),
        st.tuples(st.just("recreate")),
        st.tuples(st.just("restart")),
    ),
    max_size=20,
)


@covers(S.append, S.expunge, S.store_flags, S.copy_messages, S.delete_mailbox, S.list_messages)
@pytest.mark.parametrize("name", BACKEND_NAMES)
@settings(max_examples=25)
@given(operations=OPERATIONS)
def test_no_sequence_of_changes_and_restarts_reuses_an_identifier(
    make_backend: Callable[[str], Backend], name: str, operations: list[tuple[object, ...]]
) -> None:
    backend = make_backend(name)
    uids: dict[tuple[int, str], list[int]] = {}  # (uidvalidity, name) -> UIDs given out, in order
    validities: set[int] = set()
    modseq = [0]

    def given_uid(validity: int, mailbox: str, uid: int) -> None:
        given_out = uids.setdefault((validity, mailbox), [])
        assert not given_out or uid > given_out[-1]
        given_out.append(uid)

    def saw_modseq(value: int, *, new: bool) -> None:
        """A change's MODSEQ is above every MODSEQ of the account seen before (a STORE that changes nothing
        returns the current one)."""
        assert value > modseq[0] if new else value >= modseq[0]
        modseq[0] = max(modseq[0], value)

    async def setup(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        work = await store.create_mailbox(demo, "Work")
        validities.update(b.uidvalidity for b in await store.list_mailboxes(demo))
        assert work.uidvalidity in validities

    async def run(store: MailStore, ops: list[tuple[object, ...]]) -> None:
        account = await store.get_account("demo@example.test")
        assert account is not None
        for op in ops:
            boxes = {b.name: b for b in await store.list_mailboxes(account.id)}
            if op[0] == "append":
                box = boxes[str(op[1])]
                copy = await append(store, box.id, "x")
                given_uid(box.uidvalidity, box.name, copy.uid)
                saw_modseq((await store.list_messages(box.id))[-1].modseq, new=True)
            elif op[0] == "expunge":
                await store.expunge(boxes[str(op[1])].id, [int(str(op[2]))])
            elif op[0] == "flag":
                mailbox_id = boxes[str(op[1])].id
                saw_modseq(
                    await store.store_flags(mailbox_id, [int(str(op[2]))], ["$x"], "replace"), new=False
                )
            elif op[0] == "move":
                inbox, work = boxes["INBOX"], boxes["Work"]
                for _, new_uid in await store.copy_messages(inbox.id, [int(str(op[1]))], work.id, move=True):
                    given_uid(work.uidvalidity, "Work", new_uid)
                    saw_modseq((await store.list_messages(work.id))[-1].modseq, new=True)
            elif op[0] == "recreate":
                await store.delete_mailbox(account.id, "Work")
                work = await store.create_mailbox(account.id, "Work")
                assert work.uidvalidity not in validities
                assert work.uidvalidity > max(validities)
                validities.add(work.uidvalidity)

    backend.run(setup)
    chunk: list[tuple[object, ...]] = []
    for op in [*operations, ("restart",)]:
        if op[0] == "restart":

            async def replay(store: MailStore, ops: list[tuple[object, ...]] = chunk) -> None:
                await run(store, ops)

            backend.run(replay)
            chunk = []
        else:
            chunk.append(op)
