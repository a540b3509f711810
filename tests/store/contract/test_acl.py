"""Contract: access control lists (IMAP ACL, RFC 4314; docs/decisions/0073): entries of "anyone" and of
accounts of the owner's domain, positive and negative, changed by replace / add / remove; the rights an
account has (the owner all of them, others the union of their entries without the negative ones); the
mailboxes shared with an account; the life of entries with the mailbox (CREATE inherits, RENAME keeps, DELETE
removes) and with the accounts; and the flags a user may set (`settable`) in STORE and COPY."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import pytest

from postoffice.store import ACL_RIGHTS, AclEntry, ChangeEvent, LimitExceeded, MailStore, NotFound, acl_rights
from postoffice.store.api import ACL_MAX_ENTRIES
from tests.store.contract.harness import Backend, accounts, append, covers, inbox_of, parse

S = MailStore


def test_acl_rights_are_kept_in_one_order_and_unknown_letters_refused() -> None:
    assert acl_rights("arl") == "lra"
    assert acl_rights("lrswipkxtea" * 2) == ACL_RIGHTS
    assert acl_rights("") == ""
    for bad in ("c", "d", "L", "1", " "):
        with pytest.raises(ValueError, match="not an ACL right"):
            acl_rights("l" + bad)


@covers(S.set_acl, S.get_acl, S.delete_acl)
def test_entries_are_replaced_added_removed_and_deleted(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        owner, fred, ann = await accounts(store, "owner", "fred", "ann")
        inbox = await inbox_of(store, owner)
        assert await store.get_acl(inbox) == []
        assert await store.set_acl(inbox, "fred@example.test", "rl") == "lr"
        assert await store.set_acl(inbox, "FRED@Example.Test", "sw", "add") == "lrsw"
        assert await store.set_acl(inbox, "fred@example.test", "rx", "remove") == "lsw"
        assert await store.set_acl(inbox, "anyone", "l") == "l"
        assert await store.set_acl(inbox, "-fred@example.test", "w") == "w"
        assert await store.set_acl(inbox, "ann@example.test", "a") == "a"
        assert await store.get_acl(inbox) == [
            AclEntry("anyone", "l"),
            AclEntry("ann@example.test", "a"),
            AclEntry("fred@example.test", "lsw"),
            AclEntry("-fred@example.test", "w"),
        ]
        # an entry left without rights is gone; so is a deleted one
        assert await store.set_acl(inbox, "ann@example.test", "a", "remove") == ""
        assert await store.delete_acl(inbox, "-fred@example.test") is True
        assert await store.delete_acl(inbox, "-fred@example.test") is False
        assert await store.set_acl(inbox, "anyone", "") == ""
        assert await store.get_acl(inbox) == [AclEntry("fred@example.test", "lsw")]
        assert (fred, ann) != (0, 0)

    backend.run(scenario)


@covers(S.set_acl, S.delete_acl, S.get_acl)
def test_identifiers_outside_the_owners_domain_the_owner_and_bad_rights_are_refused(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (owner,) = await accounts(store, "owner")
        (stranger,) = await accounts(store, "fred", domain="elsewhere.test")
        inbox = await inbox_of(store, owner)
        # another domain's address, whether or not it is an account there, and what is no address at all
        for identifier in ("fred@elsewhere.test", "ghost@elsewhere.test", "fred", "authenticated", ""):
            with pytest.raises(NotFound):
                await store.set_acl(inbox, identifier, "lr")
            with pytest.raises(NotFound):
                await store.delete_acl(inbox, identifier)
        for identifier in ("owner@example.test", "-owner@example.test"):
            with pytest.raises(ValueError, match="owner"):
                await store.set_acl(inbox, identifier, "lr")
            with pytest.raises(ValueError, match="owner"):
                await store.delete_acl(inbox, identifier)
        with pytest.raises(ValueError, match="not an ACL right"):
            await store.set_acl(inbox, "anyone", "lrc")
        with pytest.raises(NotFound):
            await store.set_acl(999_999, "anyone", "l")
        with pytest.raises(NotFound):
            await store.get_acl(999_999)
        assert await store.get_acl(inbox) == []
        assert await store.my_rights(stranger, [inbox]) == {inbox: ""}

    backend.run(scenario)


@covers(S.set_acl, S.delete_acl, S.get_acl, S.add_account, S.my_rights)
def test_an_address_of_the_domain_that_is_no_account_is_kept_and_becomes_the_accounts(
    backend: Backend,
) -> None:
    """Decision 0076: the answers do not tell which addresses are accounts; such an entry grants nothing
    until an account gets the address, and then it is that account's."""

    async def scenario(store: MailStore) -> None:
        owner, fred = await accounts(store, "owner", "fred")
        inbox, work = await inbox_of(store, owner), (await store.create_mailbox(owner, "Work")).id
        for address in ("fred@example.test", "nobody@example.test"):  # the same answers for both
            assert await store.set_acl(inbox, address.title(), "lr") == "lr"
            assert await store.set_acl(inbox, address, "wx", "add") == "lrwx"
            assert await store.set_acl(inbox, address, "x", "remove") == "lrw"
            assert await store.set_acl(inbox, "-" + address, "w") == "w"
            assert await store.set_acl(work, address, "l") == "l"
            assert await store.delete_acl(work, address) is True
            assert await store.delete_acl(work, address) is False
        entries = [
            AclEntry("fred@example.test", "lrw"),
            AclEntry("-fred@example.test", "w"),
            AclEntry("nobody@example.test", "lrw"),
            AclEntry("-nobody@example.test", "w"),
        ]
        assert await store.get_acl(inbox) == entries
        await store.set_acl(work, "nobody@example.test", "lrs")
        team = (await store.create_mailbox(owner, "Work/Team")).id  # inherited as any entry
        assert await store.get_acl(team) == [AclEntry("nobody@example.test", "lrs")]
        assert await store.my_rights(fred, [inbox]) == {inbox: "lr"}
        nobody = (await store.add_account("nobody@example.test", "hash")).id
        assert await store.get_acl(inbox) == entries
        assert await store.my_rights(nobody, [inbox, work, team]) == {inbox: "lr", work: "lrs", team: "lrs"}
        assert [s.mailbox.id for s in await store.shared_mailboxes(nobody)] == [inbox, work, team]
        # removed with the account, as an account's entries are: a later account of the address gets nothing
        await store.remove_account("nobody@example.test")
        assert await store.get_acl(inbox) == entries[:2]
        again = (await store.add_account("nobody@example.test", "hash")).id
        assert await store.my_rights(again, [inbox, work]) == {inbox: "", work: ""}
        # and with the mailbox
        await store.set_acl(team, "ghost@example.test", "l")
        await store.delete_mailbox(owner, "Work/Team")
        remade = (await store.create_mailbox(owner, "Work/Team")).id
        assert await store.get_acl(remade) == []
        ghost = (await store.add_account("ghost@example.test", "hash")).id
        assert await store.my_rights(ghost, [remade]) == {remade: ""}

    backend.run(scenario)


@covers(S.set_acl)
def test_a_mailbox_has_at_most_acl_max_entries(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        owner, _ = await accounts(store, "owner", "fred")
        inbox = await inbox_of(store, owner)
        names = [f"n{n}@example.test" for n in range(ACL_MAX_ENTRIES - 1)]
        await asyncio.gather(*(store.set_acl(inbox, name, "l") for name in names))  # few transactions
        assert await store.set_acl(inbox, "fred@example.test", "l") == "l"  # the last one there is room for
        for identifier in ("anyone", "-fred@example.test", "nobody@example.test"):
            with pytest.raises(LimitExceeded):
                await store.set_acl(inbox, identifier, "l")
        assert await store.set_acl(inbox, "fred@example.test", "r", "add") == "lr"  # an entry that is there
        assert await store.delete_acl(inbox, names[0]) is True
        assert await store.set_acl(inbox, "anyone", "l") == "l"
        assert len(await store.get_acl(inbox)) == ACL_MAX_ENTRIES

    backend.run(scenario)


@covers(S.set_acl, S.remove_account, S.subscribe)
def test_removing_an_account_publishes_the_acl_changes_of_its_entries_to_their_owners(
    backend: Backend,
) -> None:
    """Decision 0076: a session that has a mailbox selected whose entries go with a removed account (its own
    mailboxes', and its entries on others') reads its rights again on this event."""

    async def scenario(store: MailStore) -> None:
        owner, fred, ann = await accounts(store, "owner", "fred", "ann")
        inbox, theirs = await inbox_of(store, owner), await inbox_of(store, ann)
        freds = await inbox_of(store, fred)
        await store.set_acl(inbox, "fred@example.test", "lr")
        await store.set_acl(theirs, "fred@example.test", "l")
        await store.set_acl(freds, "anyone", "l")
        await store.set_acl(theirs, "nobody@example.test", "l")
        heard: list[tuple[int, str, int]] = []

        def listener(to: int) -> Callable[[ChangeEvent], None]:
            return lambda event: heard.append((to, event.kind, event.mailbox_id))

        for account in (owner, fred, ann):
            store.subscribe(account, listener(account))
        await store.remove_account("fred@example.test")
        owners = {(to, mailbox) for to, kind, mailbox in heard if kind == "acl" and to in (owner, ann, fred)}
        assert {(owner, inbox), (ann, theirs), (fred, freds)} <= owners  # before the write returned

    backend.run(scenario)


@covers(S.my_rights)
def test_rights_are_the_union_of_the_entries_without_the_negative_ones(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        owner, fred, ann = await accounts(store, "owner", "fred", "ann")
        (stranger,) = await accounts(store, "zed", domain="elsewhere.test")
        inbox, drafts = await inbox_of(store, owner), await inbox_of(store, owner, "Drafts")
        await store.set_acl(inbox, "anyone", "lr")
        await store.set_acl(inbox, "fred@example.test", "swi")
        await store.set_acl(inbox, "-fred@example.test", "r")
        await store.set_acl(inbox, "-anyone", "i")
        assert await store.my_rights(owner, [inbox, drafts]) == {inbox: ACL_RIGHTS, drafts: ACL_RIGHTS}
        assert await store.my_rights(fred, [inbox, drafts, 999_999]) == {inbox: "lsw", drafts: ""}
        assert await store.my_rights(ann, [inbox]) == {inbox: "lr"}
        # "anyone" is every account of the owner's domain, not of others
        assert await store.my_rights(stranger, [inbox]) == {inbox: ""}
        assert await store.my_rights(fred, []) == {}

    backend.run(scenario)


@covers(S.shared_mailboxes)
def test_shared_mailboxes_are_those_of_the_domain_with_rights_by_owner_and_name(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        ann, bob, fred = await accounts(store, "ann", "bob", "fred")
        (stranger,) = await accounts(store, "zed", domain="elsewhere.test")
        work = (await store.create_mailbox(bob, "Work")).id
        await store.set_acl(await inbox_of(store, bob), "fred@example.test", "lr")
        await store.set_acl(work, "anyone", "l")
        await store.set_acl(await inbox_of(store, ann), "fred@example.test", "r")
        await store.set_acl(await inbox_of(store, ann, "Sent"), "-fred@example.test", "l")  # nothing left
        shared = await store.shared_mailboxes(fred)
        assert [(s.owner, s.mailbox.name, s.rights) for s in shared] == [
            ("ann@example.test", "INBOX", "r"),
            ("bob@example.test", "INBOX", "lr"),
            ("bob@example.test", "Work", "l"),
        ]
        assert shared[2].mailbox.id == work
        assert shared[2].mailbox.account_id == bob
        assert [(s.owner, s.mailbox.name) for s in await store.shared_mailboxes(ann)] == [
            ("bob@example.test", "Work")
        ]
        assert await store.shared_mailboxes(bob) == []  # its own are not "shared with" it
        assert await store.shared_mailboxes(stranger) == []
        by_owner = await store.shared_mailboxes(fred, owner="Bob@Example.test")
        assert [s.mailbox.name for s in by_owner] == ["INBOX", "Work"]
        assert [s.mailbox.name for s in await store.shared_mailboxes(fred, "bob@example.test", "inbox")] == [
            "INBOX"
        ]
        assert await store.shared_mailboxes(fred, "bob@example.test", "Sent") == []

    backend.run(scenario)


@covers(S.create_mailbox, S.rename_mailbox, S.delete_mailbox, S.remove_account, S.get_acl)
def test_entries_are_inherited_by_children_follow_renames_and_go_with_mailbox_and_accounts(
    backend: Backend,
) -> None:
    async def scenario(store: MailStore) -> None:
        owner, fred, ann = await accounts(store, "owner", "fred", "ann")
        work = (await store.create_mailbox(owner, "Work")).id
        await store.set_acl(work, "fred@example.test", "lrk")
        await store.set_acl(work, "-anyone", "w")
        child = (await store.create_mailbox(owner, "Work/Team")).id
        assert await store.get_acl(child) == [AclEntry("-anyone", "w"), AclEntry("fred@example.test", "lrk")]
        top = (await store.create_mailbox(owner, "Top")).id
        assert await store.get_acl(top) == []
        await store.rename_mailbox(owner, "Work", "Projects")
        assert await store.my_rights(fred, [work, child]) == {work: "lrk", child: "lrk"}
        await store.delete_mailbox(owner, "Projects/Team")
        recreated = (await store.create_mailbox(owner, "Projects/Team")).id
        assert await store.get_acl(recreated) == await store.get_acl(work)  # from the parent, not the old one
        await store.set_acl(top, "ann@example.test", "lr")
        await store.remove_account("fred@example.test")
        assert await store.get_acl(work) == [AclEntry("-anyone", "w")]
        again = await store.add_account("fred@example.test", "hash")
        assert await store.my_rights(again.id, [work, top]) == {work: "", top: ""}
        await store.remove_account("owner@example.test")
        assert await store.shared_mailboxes(ann) == []

    backend.run(scenario)


@covers(S.store_flags, S.store_flags_unchanged_since)
def test_settable_leaves_the_other_flags_as_they_are_in_every_mode(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (owner,) = await accounts(store, "owner")
        inbox = await inbox_of(store, owner)
        uid = (await append(store, inbox, "one", ["\\Deleted", "\\Flagged", "work"])).uid

        async def flags() -> frozenset[str]:
            (message,) = await store.get_messages(inbox, [uid])
            return message.flags

        # \Seen only: a replace keeps \Deleted, \Flagged and the keyword
        await store.store_flags(inbox, [uid], ["\\Seen"], "replace", settable=["\\Seen"])
        assert await flags() == {"\\Seen", "\\Deleted", "\\Flagged", "work"}
        await store.store_flags(inbox, [uid], ["\\Seen", "\\Deleted"], "remove", settable=["\\Seen"])
        assert await flags() == {"\\Deleted", "\\Flagged", "work"}
        # everything but \Seen and \Deleted ("w" of RFC 4314): keywords through "\*"
        await store.store_flags(
            inbox, [uid], ["\\Answered", "home"], "replace", settable=["\\Answered", "\\*"]
        )
        assert await flags() == {"\\Deleted", "\\Flagged", "\\Answered", "home"}
        await store.store_flags(inbox, [uid], [], "replace", settable=["\\Flagged", "\\Answered"])
        assert await flags() == {"\\Deleted", "home"}
        update = await store.store_flags_unchanged_since(
            inbox, [uid], ["\\Seen", "x"], "add", 2**62, settable=["\\Seen"]
        )
        assert update.modified == ()
        assert await flags() == {"\\Seen", "\\Deleted", "home"}
        before = await flags()
        await store.store_flags(inbox, [uid], ["\\Draft"], "add", settable=[])
        assert await flags() == before

    backend.run(scenario)


@covers(S.copy_messages)
def test_copies_keep_only_the_settable_flags_and_join_the_targets_conversations(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        owner, fred = await accounts(store, "owner", "fred")
        inbox, fred_inbox = await inbox_of(store, owner), await inbox_of(store, fred)
        raw = b"From: a@example.org\r\nMessage-ID: <one@example.org>\r\nSubject: one\r\n\r\nbody\r\n"
        flags = ["\\Seen", "\\Deleted", "\\Flagged", "work"]
        uid = (await store.append(inbox, io.BytesIO(raw), parse(raw), flags)).uid
        [(_, first)] = await store.copy_messages(inbox, [uid], fred_inbox, settable=["\\Seen"])
        [(_, second)] = await store.copy_messages(inbox, [uid], fred_inbox, settable=["\\Flagged", "\\*"])
        [(_, third)] = await store.copy_messages(inbox, [uid], fred_inbox)
        copies = {m.uid: m for m in await store.get_messages(fred_inbox, [first, second, third])}
        assert copies[first].flags == {"\\Seen"}
        assert copies[second].flags == {"\\Flagged", "work"}
        assert copies[third].flags == {"\\Seen", "\\Deleted", "\\Flagged", "work"}
        # the copies are one conversation of fred's, not the owner's
        (original,) = await store.get_messages(inbox, [uid])
        assert len({c.thread_id for c in copies.values()}) == 1
        assert copies[first].thread_id != original.thread_id

    backend.run(scenario)


@covers(S.set_acl)
def test_concurrent_additions_to_one_entry_are_all_kept(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        owner, _ = await accounts(store, "owner", "fred")
        inbox = await inbox_of(store, owner)
        await asyncio.gather(*(store.set_acl(inbox, "fred@example.test", r, "add") for r in ACL_RIGHTS))
        assert await store.get_acl(inbox) == [AclEntry("fred@example.test", ACL_RIGHTS)]

    backend.run(scenario)


@covers(S.delete_mailbox, S.create_mailbox, S.my_rights, S.shared_mailboxes)
def test_a_deleted_mailboxs_id_is_never_given_again_nor_its_entries(backend: Backend) -> None:
    """A deleted mailbox's id is never given to a later mailbox, of any account (SQLite alone gives the
    highest id again: `create_mailbox_row` keeps a counter), and the new mailbox starts with its parent's
    entries only, never the deleted one's."""

    async def scenario(store: MailStore) -> None:
        owner, fred, ann = await accounts(store, "owner", "fred", "ann")
        doomed = (await store.create_mailbox(owner, "Doomed")).id
        await store.set_acl(doomed, "anyone", "lrswi")
        await store.set_acl(doomed, "fred@example.test", "a")
        await store.delete_mailbox(owner, "Doomed")
        made = await store.create_mailbox(ann, "Mine")
        assert await store.get_acl(made.id) == []
        assert await store.my_rights(fred, [made.id]) == {made.id: ""}
        assert await store.shared_mailboxes(fred) == []
        assert made.id != doomed
        again = await store.create_mailbox(owner, "Doomed")  # the same name, the same account
        assert again.id not in (doomed, made.id)
        assert await store.get_acl(again.id) == []

    backend.run(scenario)
