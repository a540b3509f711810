"""Contract: annotations (IMAP METADATA, RFC 5464; docs/decisions/0067): per mailbox and per account for the
server, names case-insensitive, reads by depth, all-or-nothing writes within `MetadataLimits`, and their
life with the mailbox (RENAME keeps them, INBOX's are copied, DELETE and removing the account drop them)."""

from __future__ import annotations

import asyncio

import pytest

from postoffice.store import MailStore, MetadataLimits, MetadataTooLarge, MetadataTooMany, NotFound
from postoffice.store.api import METADATA_ACCOUNT_OCTETS
from tests.store.contract.harness import Backend, accounts, covers, inbox_of

S = MailStore

ROOMY = MetadataLimits(max_value_size=4096, max_entries=100, max_account_octets=1_000_000)


@covers(S.set_metadata, S.get_metadata)
def test_annotations_are_kept_per_mailbox_and_per_account_with_names_folded(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        inbox, other_inbox = await inbox_of(store, demo), await inbox_of(store, other)
        await store.set_metadata(
            demo, inbox, {"/private/Comment": b"mine", "/shared/comment": b"ours\r\ntwo lines"}, ROOMY
        )
        await store.set_metadata(demo, None, {"/shared/comment": b"server"}, ROOMY)
        await store.set_metadata(other, other_inbox, {"/private/comment": b"theirs"}, ROOMY)
        assert await store.get_metadata(demo, inbox, ["/PRIVATE/COMMENT", "/shared/comment", "/x/y"]) == {
            "/private/comment": b"mine",
            "/shared/comment": b"ours\r\ntwo lines",
        }
        assert await store.get_metadata(demo, None, ["/shared/comment", "/private/comment"]) == {
            "/shared/comment": b"server"
        }
        assert await store.get_metadata(other, other_inbox, ["/private/comment"]) == {
            "/private/comment": b"theirs"
        }
        assert await store.get_metadata(other, inbox, ["/private/comment"]) == {}  # not other's mailbox
        # any octets, the empty value too; a name given twice in two spellings: the last wins
        binary = bytes(range(256))
        await store.set_metadata(
            demo,
            inbox,
            {"/private/vendor/x/bin": binary, "/private/empty": b"", "/PRIVATE/EMPTY": b"e"},
            ROOMY,
        )
        found = await store.get_metadata(demo, inbox, ["/private/vendor/x/bin", "/private/empty"])
        assert found == {"/private/vendor/x/bin": binary, "/private/empty": b"e"}
        await store.set_metadata(demo, inbox, {"/private/empty": b""}, ROOMY)
        assert await store.get_metadata(demo, inbox, ["/private/empty"]) == {"/private/empty": b""}
        # None removes; removing what is not there is no error
        await store.set_metadata(demo, inbox, {"/private/comment": None, "/private/none": None}, ROOMY)
        assert await store.get_metadata(demo, inbox, ["/private/comment"]) == {}
        assert await store.get_metadata(demo, inbox, ["/shared/comment"]) != {}

    backend.run(scenario)


@covers(S.get_metadata)
def test_depth_reads_the_children_or_every_descendant(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        names = ["/private/a", "/private/a/b", "/private/a/b/c", "/private/a/d", "/private/ab", "/private/a0"]
        await store.set_metadata(demo, inbox, {n: n.encode() for n in names}, ROOMY)
        assert list(await store.get_metadata(demo, inbox, ["/private/a"])) == ["/private/a"]
        assert sorted(await store.get_metadata(demo, inbox, ["/private/a"], 1)) == [
            "/private/a",
            "/private/a/b",
            "/private/a/d",
        ]
        assert sorted(await store.get_metadata(demo, inbox, ["/private/a"], None)) == [
            "/private/a",
            "/private/a/b",
            "/private/a/b/c",
            "/private/a/d",
        ]
        # a name that does not exist still has its descendants read
        assert sorted(await store.get_metadata(demo, inbox, ["/private"], 1)) == [
            "/private/a",
            "/private/a0",
            "/private/ab",
        ]
        assert len(await store.get_metadata(demo, inbox, ["/PRIVATE"], None)) == len(names)
        assert await store.get_metadata(demo, None, ["/private"], None) == {}  # the server's are apart

    backend.run(scenario)


@covers(S.set_metadata)
def test_limits_refuse_the_whole_change_and_never_what_frees_room(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        limits = MetadataLimits(max_value_size=10, max_entries=3, max_account_octets=100)
        await store.set_metadata(demo, inbox, {"/private/a": b"1", "/private/b": b"2"}, limits)
        with pytest.raises(MetadataTooLarge) as too_large:
            await store.set_metadata(demo, inbox, {"/private/a": b"changed", "/private/c": b"x" * 11}, limits)
        assert too_large.value.limit == 10
        with pytest.raises(MetadataTooMany):
            await store.set_metadata(
                demo, inbox, {"/private/a": b"changed", "/private/c": b"3", "/private/d": b"4"}, limits
            )
        assert await store.get_metadata(demo, inbox, ["/private"], None) == {
            "/private/a": b"1",
            "/private/b": b"2",
        }
        # replacing and adding within the count; a new entry and a removal together keep the count
        await store.set_metadata(demo, inbox, {"/private/a": b"one", "/private/c": b"3"}, limits)
        await store.set_metadata(demo, inbox, {"/private/b": None, "/private/d": b"4"}, limits)
        # the server's entries and other mailboxes count apart
        await store.set_metadata(
            demo, None, {"/private/a": b"1", "/private/b": b"2", "/private/c": b"3"}, limits
        )
        drafts = await inbox_of(store, demo, "Drafts")
        await store.set_metadata(demo, drafts, {"/shared/x": b"1"}, limits)
        # the account's octets (names and values) count across mailboxes and the server
        with pytest.raises(MetadataTooMany):
            await store.set_metadata(demo, drafts, {f"/shared/{n}": b"v" * 10 for n in "yz"}, limits)
        small = MetadataLimits(max_value_size=10, max_entries=1, max_account_octets=20)
        # over lowered limits: changes that add nothing go through, and removals always do
        await store.set_metadata(demo, inbox, {"/private/a": b"1"}, small)
        with pytest.raises(MetadataTooMany):
            await store.set_metadata(demo, inbox, {"/private/e": b"5"}, small)
        await store.set_metadata(demo, inbox, {"/private/a": None, "/private/c": None}, small)
        assert await store.get_metadata(demo, inbox, ["/private"], None) == {"/private/d": b"4"}

    backend.run(scenario)


@covers(S.set_metadata, S.get_metadata, S.rename_mailbox, S.delete_mailbox, S.remove_account)
def test_annotations_follow_rename_and_go_with_the_mailbox_and_the_account(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        work = await store.create_mailbox(demo, "Work")
        child = await store.create_mailbox(demo, "Work/2026")
        inbox = await inbox_of(store, demo)
        await store.set_metadata(demo, work.id, {"/private/comment": b"work"}, ROOMY)
        await store.set_metadata(demo, child.id, {"/shared/comment": b"child"}, ROOMY)
        await store.set_metadata(demo, inbox, {"/private/comment": b"inbox"}, ROOMY)
        await store.set_metadata(demo, None, {"/private/comment": b"server"}, ROOMY)
        await store.rename_mailbox(demo, "Work", "Job")
        job, job_child = await inbox_of(store, demo, "Job"), await inbox_of(store, demo, "Job/2026")
        assert await store.get_metadata(demo, job, ["/private/comment"]) == {"/private/comment": b"work"}
        assert await store.get_metadata(demo, job_child, ["/shared/comment"]) == {"/shared/comment": b"child"}
        # RFC 5464 4.1: renaming INBOX copies its annotations, INBOX keeps them
        await store.rename_mailbox(demo, "INBOX", "Old")
        old = await inbox_of(store, demo, "Old")
        assert await store.get_metadata(demo, old, ["/private/comment"]) == {"/private/comment": b"inbox"}
        assert await store.get_metadata(demo, inbox, ["/private/comment"]) == {"/private/comment": b"inbox"}
        # DELETE drops them: a mailbox made again with the name starts without
        await store.delete_mailbox(demo, "Job")
        again = await store.create_mailbox(demo, "Job")
        assert await store.get_metadata(demo, again.id, ["/private"], None) == {}
        assert await store.get_metadata(demo, job, ["/private"], None) == {}
        with pytest.raises(NotFound):
            await store.set_metadata(demo, job, {"/private/comment": b"gone"}, ROOMY)
        with pytest.raises(NotFound):  # another account's mailbox
            await store.set_metadata(other, again.id, {"/private/comment": b"x"}, ROOMY)
        await store.remove_account("demo@example.test")
        assert await store.get_metadata(demo, None, ["/private"], None) == {}
        assert await store.get_metadata(demo, old, ["/private"], None) == {}

    backend.run(scenario)


@covers(S.set_metadata)
def test_concurrent_writers_cannot_pass_the_count_together(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        limits = MetadataLimits(max_value_size=100, max_entries=5, max_account_octets=100_000)
        results = await asyncio.gather(
            *(store.set_metadata(demo, inbox, {f"/private/n{i}": b"v"}, limits) for i in range(12)),
            return_exceptions=True,
        )
        assert sum(r is None for r in results) == 5
        assert all(r is None or isinstance(r, MetadataTooMany) for r in results)
        assert len(await store.get_metadata(demo, inbox, ["/private"], None)) == 5

    backend.run(scenario)


@covers(S.rename_mailbox)
def test_renaming_inbox_copies_annotations_only_within_the_account_cap(backend: Backend) -> None:
    """Found by review: each RENAME INBOX copied INBOX's annotations again, past the account's cap."""

    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        big = MetadataLimits(
            max_value_size=65536, max_entries=100, max_account_octets=METADATA_ACCOUNT_OCTETS
        )
        value = b"x" * 60000
        entries = {f"/private/v{n}": value for n in range(30)}  # about 1.8 MB: one copy fits, two do not
        await store.set_metadata(demo, inbox, entries, big)
        await store.rename_mailbox(demo, "INBOX", "First")
        first = await inbox_of(store, demo, "First")
        assert len(await store.get_metadata(demo, first, ["/private"], None)) == 30
        await store.rename_mailbox(demo, "INBOX", "Second")
        second = await inbox_of(store, demo, "Second")
        assert await store.get_metadata(demo, second, ["/private"], None) == {}  # over the cap: not copied
        assert len(await store.get_metadata(demo, inbox, ["/private"], None)) == 30  # INBOX keeps its own

    backend.run(scenario)
