"""NOTIFY and the mailboxes other accounts share (RFC 5465 3.1, 5.4, 5.9, RFC 4314; decisions 0073, 0077):
the selected shared mailbox without NOTIFY (NOOP, IDLE); SUBTREE, MAILBOXES and SUBSCRIBED groups that name
`Shared/<user>/...` mailboxes hearing of their changes (PERSONAL never does: 6.2); \\NoAccess at NOTIFY SET
for a mailbox the client may LIST but not read; rights taken away (\\NoAccess, and \\NonExistent with
MailboxName) and given back or given anew (a LIST; monitoring again), also by an owner the session did not
follow yet and for "anyone"; the owner's CREATE, RENAME and DELETE; what the session does itself is not told
(section 5); one change subscription per owner, gone with the NOTIFY."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.imap.protocol import Need
from postoffice.message import parse_message
from tests.imap.conftest import message
from tests.imap.transcript import DEMO, OTHER, ImapHarness, ok, password_hash, session, told

WORK = '"Shared/demo/Work"'
MESSAGES = "(MessageNew MessageExpunge)"
ALL_EVENTS = "(MessageNew MessageExpunge FlagChange MailboxName)"


def share(imap: ImapHarness, rights: str, mailbox: str = "Work", who: str = OTHER) -> None:
    """DEMO gives `who` these rights on its `mailbox` (through the store, as a SETACL of another session)."""
    imap.call(imap.store.set_acl(imap.mailbox_id(DEMO, mailbox), who, rights))


def create(imap: ImapHarness, name: str) -> None:
    imap.call(imap.store.create_mailbox(imap.account_ids[DEMO], name))


def status_of(line: str) -> str:
    match = re.fullmatch(
        r'\* STATUS "([^"]*)" \(MESSAGES \d+ UIDNEXT \d+ UIDVALIDITY \d+ UNSEEN \d+.*\)', line
    )
    assert match, line
    return match.group(1)


def owner_subscriptions(imap: ImapHarness) -> int:
    """Change subscriptions of DEMO's account (the owner's): its sessions' and those that follow it."""
    bus = imap.store._change_bus  # type: ignore[attr-defined]
    return len(bus._subscribers.get(imap.account_ids[DEMO], ()))


# ------------------------------------------------------------------ the selected shared mailbox (no NOTIFY)


def test_a_selected_shared_mailbox_hears_of_other_sessions_at_noop_and_in_idle(imap: ImapHarness) -> None:
    """Decision 0073's `follow`, checked again before NOTIFY built on it: EXISTS, FETCH and EXPUNGE of the
    owner's and a delivery's changes reach a session of another account, at NOOP and in IDLE."""
    imap.deliver(DEMO, message("one"))
    share(imap, "lrs", "INBOX")
    raw, owner = session(imap, OTHER), session(imap)
    ok(raw, "s", 'SELECT "Shared/demo/INBOX"')
    ok(owner, "s", "SELECT INBOX")
    imap.deliver(DEMO, message("two"))
    assert ok(raw, "n", "NOOP")[:-1] == ["* 2 EXISTS", "* 2 RECENT"]
    ok(owner, "f", "STORE 1 +FLAGS.SILENT (\\Flagged \\Deleted)")
    assert ok(raw, "n2", "NOOP")[:-1] == ["* 1 FETCH (UID 1 FLAGS (\\Deleted \\Flagged \\Recent))"]
    ok(owner, "x", "EXPUNGE")
    assert ok(raw, "n3", "NOOP")[:-1] == ["* 1 EXPUNGE"]
    raw.send(b"i IDLE\r\n")
    assert raw.line() == "+ idling"
    imap.deliver(DEMO, message("three"))
    assert told(raw) == ["* 2 EXISTS", "* 2 RECENT"]
    ok(owner, "f2", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert told(raw) == ["* 1 FETCH (UID 2 FLAGS (\\Deleted \\Recent))"]
    ok(owner, "x2", "EXPUNGE")
    assert told(raw) == ["* 1 EXPUNGE"]
    raw.send(b"DONE\r\n")
    assert raw.until_tagged("i") == ["i OK IDLE terminated"]
    owner.close()
    raw.close()


# --------------------------------------------------------------------------- watching shared mailboxes


def test_subtree_and_mailboxes_of_the_shared_namespace_watch_shared_mailboxes(imap: ImapHarness) -> None:
    create(imap, "Work")
    create(imap, "Private")
    share(imap, "lr")
    share(imap, "lr", "INBOX")
    imap.deliver(DEMO, message("old"), "Work")
    raw = session(imap, OTHER)
    lines = ok(raw, "n", f"NOTIFY SET STATUS (subtree Shared/demo {MESSAGES}) (personal (MailboxName))")
    # 3.1: the STATUS of each watched mailbox, shared ones under the client's names
    assert [status_of(line) for line in lines[:-1]] == ["Shared/demo/INBOX", "Shared/demo/Work"]
    imap.deliver(DEMO, message("new"), "Work")
    assert [status_of(line) for line in told(raw)] == ["Shared/demo/Work"]
    imap.deliver(DEMO, message("unshared"), "Private")  # no rights on it: nothing, not even its name
    assert told(raw) == []
    # PERSONAL is the personal namespace (6.2), INBOXES too (6.3): shared mailboxes are not in it
    ok(raw, "n2", f"NOTIFY SET (personal {ALL_EVENTS}) (inboxes {MESSAGES})")
    imap.deliver(DEMO, message("not personal"), "Work")
    assert told(raw) == []
    assert raw.need is Need.NOTIFY
    # MAILBOXES names one
    ok(raw, "n3", f"NOTIFY SET (mailboxes {WORK} (MessageNew MessageExpunge FlagChange))")
    imap.deliver(DEMO, message("named"), "Work")
    imap.deliver(DEMO, message("not named"), "INBOX")
    lines = told(raw)
    assert [status_of(line) for line in lines] == ["Shared/demo/Work"]
    assert "HIGHESTMODSEQ" in lines[0]  # FlagChange (3.1)
    raw.close()


def test_subscribed_covers_a_subscribed_shared_mailbox(imap: ImapHarness) -> None:
    create(imap, "Work")
    share(imap, "lr")
    raw = session(imap, OTHER)
    ok(raw, "u", f"SUBSCRIBE {WORK}")
    ok(raw, "n", f"NOTIFY SET (subscribed {MESSAGES})")
    imap.deliver(DEMO, message("x"), "Work")
    assert [status_of(line) for line in told(raw)] == ["Shared/demo/Work"]
    ok(raw, "u2", f"UNSUBSCRIBE {WORK}")  # 6.4: the list is evaluated again
    imap.deliver(DEMO, message("y"), "Work")
    assert told(raw) == []
    raw.close()


def test_the_sessions_own_changes_to_a_shared_mailbox_are_not_told(imap: ImapHarness) -> None:
    create(imap, "Work")
    share(imap, "lrikx")
    raw = session(imap, OTHER)
    ok(raw, "n", f"NOTIFY SET (subtree Shared {ALL_EVENTS})")
    data = message("mine")
    raw.send(b"a APPEND %s {%d+}\r\n" % (WORK.encode(), len(data)) + data + b"\r\n")
    assert raw.until_tagged("a")[-1].startswith("a OK")
    ok(raw, "c", 'CREATE "Shared/demo/Work/Mine"')
    ok(raw, "d", 'DELETE "Shared/demo/Work/Mine"')
    assert told(raw) == []  # section 5: the server SHOULD NOT tell the client what it did itself
    raw.close()


def test_the_owners_create_rename_and_delete_are_mailboxname_events(imap: ImapHarness) -> None:
    create(imap, "Work")
    share(imap, "lr")
    raw, owner = session(imap, OTHER), session(imap)
    ok(raw, "n", f"NOTIFY SET (subtree Shared {ALL_EVENTS})")
    ok(owner, "c", "CREATE Work/Sub")  # inherits Work's entries (RFC 4314 4): a new mailbox for OTHER
    # 5.4: the mailbox and its parent (whose \HasChildren changed) are affected
    assert told(raw) == [
        '* LIST (\\HasChildren) "/" "Shared/demo/Work"',
        '* LIST (\\HasNoChildren) "/" "Shared/demo/Work/Sub"',
    ]
    ok(owner, "r", "RENAME Work/Sub Work/Team")
    assert told(raw) == [
        '* LIST (\\HasNoChildren) "/" "Shared/demo/Work/Team" ("OLDNAME" ("Shared/demo/Work/Sub"))'
    ]
    imap.deliver(DEMO, message("x"), "Work/Team")
    assert [status_of(line) for line in told(raw)] == ["Shared/demo/Work/Team"]
    ok(owner, "d", "DELETE Work/Team")
    assert told(raw) == [
        '* LIST (\\HasNoChildren) "/" "Shared/demo/Work"',
        '* LIST (\\NonExistent \\HasNoChildren) "/" "Shared/demo/Work/Team"',
    ]
    ok(owner, "c2", "CREATE Elsewhere")  # no entries: none of OTHER's business
    assert told(raw) == []
    owner.close()
    raw.close()


# ----------------------------------------------------------------------------------- rights (3.1, 5.9)


def test_lookup_without_read_is_noaccess_at_notify_set_and_nothing_is_watched(imap: ImapHarness) -> None:
    create(imap, "Work")
    create(imap, "Hidden")
    share(imap, "l")
    share(imap, "r", "Hidden")  # no "l": ignored without a word (3.1 MUST)
    raw = session(imap, OTHER)
    # 3.1: "MUST respond with an untagged extended LIST response containing the \NoAccess name attribute"
    lines = ok(raw, "n", f"NOTIFY SET STATUS (subtree Shared {MESSAGES})")
    assert lines == ['* LIST (\\HasNoChildren \\NoAccess) "/" "Shared/demo/Work"', "n OK NOTIFY completed"]
    imap.deliver(DEMO, message("x"), "Work")
    imap.deliver(DEMO, message("y"), "Hidden")
    assert told(raw) == []  # section 5: events need "l" and "r"
    raw.close()


def test_rights_taken_away_and_given_back(imap: ImapHarness) -> None:
    create(imap, "Work")
    share(imap, "lr")
    raw = session(imap, OTHER)
    ok(raw, "n", f"NOTIFY SET (subtree Shared {MESSAGES})")
    share(imap, "l")  # "r" goes: monitoring stops (5.9 MUST), the client hears \NoAccess
    assert told(raw) == ['* LIST (\\HasNoChildren \\NoAccess) "/" "Shared/demo/Work"']
    imap.deliver(DEMO, message("unread"), "Work")
    assert told(raw) == []
    share(imap, "")  # "l" goes too: 5.9 "SHOULD return the LIST response with the \NoAccess name attribute"
    assert told(raw) == ['* LIST (\\NonExistent \\HasNoChildren \\NoAccess) "/" "Shared/demo/Work"']
    share(imap, "lr")  # 5.9: "with no \NoAccess name attribute" when access is given back; monitoring again
    assert told(raw) == ['* LIST (\\HasNoChildren) "/" "Shared/demo/Work"']
    imap.deliver(DEMO, message("read"), "Work")
    assert [status_of(line) for line in told(raw)] == ["Shared/demo/Work"]
    share(imap, "lrs")  # other rights: nothing to tell
    assert told(raw) == []
    raw.close()


def test_with_mailboxname_losing_lookup_is_a_deletion_and_gaining_it_a_creation(imap: ImapHarness) -> None:
    create(imap, "Work")
    share(imap, "lr")
    raw = session(imap, OTHER)
    ok(raw, "n", f"NOTIFY SET (subtree Shared {ALL_EVENTS})")
    imap.call(imap.store.delete_acl(imap.mailbox_id(DEMO, "Work"), OTHER))
    # 5.4: "revocation of the 'l' right ... MUST be considered mailbox ... deletion": \NonExistent, and its
    # parent is affected too; 5.9: \NoAccess
    assert told(raw) == [
        '* LIST (\\NonExistent \\HasNoChildren) "/" "Shared/demo"',
        '* LIST (\\NonExistent \\HasNoChildren \\NoAccess) "/" "Shared/demo/Work"',
    ]
    share(imap, "l")  # 5.4: granting "l" is a creation; without "r", \NoAccess
    assert told(raw) == [
        '* LIST (\\Noselect \\HasChildren) "/" "Shared/demo"',
        '* LIST (\\HasNoChildren \\NoAccess) "/" "Shared/demo/Work"',
    ]
    raw.close()


def test_a_share_from_an_owner_the_session_did_not_follow_yet_and_for_anyone(imap: ImapHarness) -> None:
    create(imap, "Work")
    create(imap, "Team")
    raw = session(imap, OTHER)
    ok(raw, "n", f"NOTIFY SET (subtree Shared {ALL_EVENTS})")
    before = owner_subscriptions(imap)
    share(imap, "lr")  # the grantee's sessions hear of it (decision 0077): a creation (5.4)
    assert told(raw) == [
        '* LIST (\\Noselect \\HasChildren) "/" "Shared/demo"',
        '* LIST (\\HasNoChildren) "/" "Shared/demo/Work"',
    ]
    assert owner_subscriptions(imap) == before + 1  # one subscription for the owner, however many mailboxes
    share(imap, "lr", "Team", who="anyone")
    assert told(raw) == [
        '* LIST (\\Noselect \\HasChildren) "/" "Shared/demo"',
        '* LIST (\\HasNoChildren) "/" "Shared/demo/Team"',
    ]
    assert owner_subscriptions(imap) == before + 1
    imap.deliver(DEMO, message("x"), "Team")
    assert [status_of(line) for line in told(raw)] == ["Shared/demo/Team"]
    # NOTIFY NONE ends the following of the owner; so does a NOTIFY SET whose groups match no shared name
    ok(raw, "n2", "NOTIFY NONE")
    assert owner_subscriptions(imap) == before
    ok(raw, "n3", f"NOTIFY SET (subtree Shared {MESSAGES})")
    assert owner_subscriptions(imap) == before + 1
    ok(raw, "n4", f"NOTIFY SET (personal {MESSAGES})")
    assert owner_subscriptions(imap) == before
    ok(raw, "n5", f"NOTIFY SET (subtree Shared {MESSAGES})")
    raw.close()
    assert owner_subscriptions(imap) == before  # and the session's end


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rights=st.lists(st.sampled_from(["", "l", "r", "lr", "lrs", "lrswi"]), min_size=1, max_size=6),
    naming=st.booleans(),
)
def test_the_client_always_knows_whether_it_may_watch(
    imap: ImapHarness, rights: list[str], naming: bool
) -> None:
    """Whatever rights the owner gives and takes in turn: the last LIST the client got for the mailbox says
    \\NoAccess exactly when it lacks "l" or "r" and has heard of the mailbox, a delivery is told as STATUS
    exactly when it has both, and nothing else is ever told."""
    if imap.call(imap.store.get_mailbox(imap.account_ids[DEMO], "Work")) is None:
        create(imap, "Work")
    share(imap, "lr")
    raw = session(imap, OTHER)
    ok(raw, "n", f"NOTIFY SET (subtree Shared {ALL_EVENTS if naming else MESSAGES})")
    last_list: str | None = None
    for n, given_rights in enumerate(rights):
        share(imap, given_rights)
        for line in told(raw):
            assert line.startswith("* LIST ("), line
            if line.endswith(' "/" "Shared/demo"'):  # its parent, for a creation or deletion (5.4)
                assert naming
                continue
            assert line.endswith(' "/" "Shared/demo/Work"'), line
            last_list = line
        imap.deliver(DEMO, message(f"m{n}"), "Work")
        lines = told(raw)
        watching = "l" in given_rights and "r" in given_rights
        assert [status_of(line) for line in lines] == (["Shared/demo/Work"] if watching else [])
        if last_list is not None:
            assert ("\\NoAccess" in last_list) == (not watching)
    raw.close()
    assert imap.failures() == []


@pytest.mark.parametrize("target", ["Drafts", '"Shared/third/INBOX"', '"Shared/demo/INBOX"'])
def test_a_delivery_while_the_session_appends_is_fetched_and_its_own_message_is_not(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """With Shared/demo/INBOX selected, a message delivered to it while the session's APPEND is stored is
    another session's: MessageNew's FETCH is sent for it (RFC 5465 5.2), whether the APPEND goes to the
    session's own Drafts, to another owner's mailbox of the same name, or to the selected mailbox itself,
    whose own new message gets none (5.2 SHOULD NOT)."""
    third = imap.call(imap.store.add_account("third@example.test", password_hash())).id
    imap.call(imap.store.set_acl(imap.mailbox_id(DEMO, "INBOX"), OTHER, "lrsi"))
    third_inbox = imap.call(imap.store.get_mailbox(third, "INBOX"))
    assert third_inbox is not None
    imap.call(imap.store.set_acl(third_inbox.id, OTHER, "lri"))
    imap.deliver(DEMO, message("one"))
    raw = session(imap, OTHER)
    ok(raw, "s", 'SELECT "Shared/demo/INBOX"')
    ok(raw, "n", "NOTIFY SET (SELECTED (MessageNew (UID) MessageExpunge))")
    store, real = imap.store, imap.store.append_many
    demo_inbox = imap.mailbox_id(DEMO, "INBOX")
    delivered: list[int] = []

    async def append_many(*args: Any, **kwargs: Any) -> Any:
        if not delivered:  # while the session's APPEND is stored, a delivery to demo's INBOX commits
            delivered.append(1)
            data = message("concurrent")
            await store.append(demo_inbox, io.BytesIO(data), parse_message(io.BytesIO(data)), ())
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, "append_many", append_many)
    body = message("mine")
    raw.send(f"a APPEND {target} {{{len(body)}+}}\r\n".encode() + body + b"\r\n")
    reply = raw.until_tagged("a")
    assert reply[-1].startswith("a OK"), reply
    assert "* 2 FETCH (UID 2)" in reply, reply
    assert not any("FETCH (UID 3)" in line for line in reply), reply
    raw.close()
