"""IMAP ACL (RFC 4314), LIST-MYRIGHTS (RFC 8440) and the mailboxes one account shares with another of its
domain (decision 0073): SETACL, DELETEACL, GETACL, LISTRIGHTS and MYRIGHTS; the shared namespace in NAMESPACE,
LIST, LSUB and STATUS; the rights every command needs (section 4), checked against two accounts, DEMO (the
owner) and OTHER; changes reaching the other account's sessions; the parser's forms (RFC examples, errors,
property tests); and the shared mailbox over a real socket with imaplib, with the owner in IDLE."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.imap import acl
from postoffice.imap.parser import (
    CommandReader,
    DeleteAcl,
    GetAcl,
    ListRights,
    LiteralTooLarge,
    MailboxName,
    MyRights,
    NeedContinuation,
    Noop,
    ParseError,
    ReaderEvent,
    SetAcl,
)
from postoffice.store import NotFound
from tests.imap.conftest import ImapServer, Raw, message
from tests.imap.test_imap_parser_roundtrip import case, mailboxes, wire_string
from tests.imap.transcript import DEMO, OTHER, ImapHarness, password_hash, session

ALL = "lrswipkxtecda"
SHARED_INBOX = '"Shared/demo/INBOX"'


def share(imap: ImapHarness, rights: str, mailbox: str = "INBOX", who: str = OTHER) -> None:
    """DEMO gives `who` these rights on its `mailbox` (through the store, as a SETACL would)."""
    imap.call(imap.store.set_acl(imap.mailbox_id(DEMO, mailbox), who, rights))


def flags_of(imap: ImapHarness, address: str, uid: int, mailbox: str = "INBOX") -> frozenset[str]:
    (found,) = imap.call(imap.store.get_messages(imap.mailbox_id(address, mailbox), [uid]))
    return found.flags


def ok(lines: list[str]) -> list[str]:
    assert lines[-1].split()[1] == "OK", lines
    return lines


# ---------------------------------------------------------------------------------------- advertising


def test_acl_rights_and_list_myrights_are_advertised_with_the_shared_namespace(imap: ImapHarness) -> None:
    raw = session(imap)
    capabilities = raw.command("c", "CAPABILITY")[0].split()
    assert {"ACL", "RIGHTS=texk", "LIST-MYRIGHTS"} <= set(capabilities)
    assert raw.command("n", "NAMESPACE")[0] == '* NAMESPACE (("" "/")) (("Shared/" "/")) NIL'
    raw.close()
    # before login the ACL commands are not valid (RFC 4314 section 7: command-auth)
    anonymous = imap.connect()
    assert anonymous.command("m", "MYRIGHTS INBOX")[-1].startswith("m BAD")
    anonymous.close()


# ------------------------------------------------------------------------------------- own mailboxes


def test_the_owner_has_every_right_and_getacl_listrights_show_it(imap: ImapHarness) -> None:
    raw = session(imap)
    assert raw.command("a", "MYRIGHTS INBOX") == [f'* MYRIGHTS "INBOX" {ALL}', "a OK MYRIGHTS completed"]
    assert raw.command("b", "GETACL INBOX") == [f'* ACL "INBOX" {DEMO} {ALL}', "b OK GETACL completed"]
    assert raw.command("c", f"LISTRIGHTS INBOX {DEMO}")[0] == f'* LISTRIGHTS "INBOX" {DEMO} {ALL}'
    # RFC 4314 3.4: the identifier as the client wrote it; every right optional, each on its own (3.7)
    assert raw.command("d", "LISTRIGHTS INBOX OTHER")[0] == (
        '* LISTRIGHTS "INBOX" OTHER "" l r s w i p k x t e c d a'
    )
    assert raw.command("e", "LISTRIGHTS INBOX anyone")[0] == (
        '* LISTRIGHTS "INBOX" anyone "" l r s w i p k x t e c d a'
    )
    assert raw.command("f", "LISTRIGHTS INBOX fred@elsewhere.test")[0] == (
        '* LISTRIGHTS "INBOX" fred@elsewhere.test ""'
    )
    assert raw.command("g", "MYRIGHTS Nothing")[-1].startswith("g NO [NONEXISTENT]")
    assert raw.command("h", "GETACL Nothing")[-1].startswith("h NO [NONEXISTENT]")
    raw.close()


def test_setacl_replaces_adds_removes_and_takes_the_obsolete_rights(imap: ImapHarness) -> None:
    raw = session(imap)
    assert raw.command("a", f"SETACL INBOX {OTHER} lr") == ["a OK SETACL completed"]
    assert raw.command("b", "SETACL INBOX other +sw") == ["b OK SETACL completed"]  # a bare local part
    assert raw.command("c", 'SETACL INBOX "Other@Example.Test" -r') == ["c OK SETACL completed"]
    assert raw.command("d", "SETACL INBOX anyone ld")[-1] == "d OK SETACL completed"  # d: t and e
    assert raw.command("e", "SETACL INBOX -anyone c")[-1] == "e OK SETACL completed"  # c: k and x
    assert raw.command("f", "GETACL INBOX")[0] == (
        f'* ACL "INBOX" {DEMO} {ALL} anyone lted -anyone kxc {OTHER} lsw'
    )
    # an entry with no rights left is gone (3.1 replace with none); DELETEACL of nothing is fine
    assert raw.command("g", 'SETACL INBOX anyone ""') == ["g OK SETACL completed"]
    assert raw.command("h", "DELETEACL INBOX -anyone") == ["h OK DELETEACL completed"]
    assert raw.command("i", "DELETEACL INBOX -anyone") == ["i OK DELETEACL completed"]
    assert raw.command("j", "GETACL INBOX")[0] == f'* ACL "INBOX" {DEMO} {ALL} {OTHER} lsw'
    raw.close()


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        # RFC 4314 3.1's own examples: upper-case rights and unknown rights are BAD
        (f"SETACL INBOX {OTHER} lrQswicda", "BAD"),
        (f"SETACL INBOX {OTHER} lrqswicda", "BAD The q right is not supported"),
        (f"SETACL INBOX {OTHER} lr0", "BAD The 0 right is not supported"),
        (f"SETACL INBOX {OTHER} +-lr", "BAD"),
        # section 3: an identifier SASLprep refuses, or empty, is BAD
        ('SETACL INBOX "-" lr', "BAD"),
        ('SETACL INBOX "" lr', "BAD"),
        ('SETACL INBOX "other\xe2\x80\x8e" lr', "BAD"),  # U+200E: SASLprep prohibits it (C.8)
        ('LISTRIGHTS INBOX ""', "BAD"),
        # the owner's rights are not an entry; accounts elsewhere or nowhere cannot have any
        (f"SETACL INBOX {DEMO} lr", "NO [CANNOT]"),
        (f"DELETEACL INBOX -{DEMO}", "NO [CANNOT]"),
        ("SETACL INBOX fred@elsewhere.test lr", "NO [CANNOT]"),
        ("SETACL INBOX authenticated lr", "NO [CANNOT]"),
        ("SETACL INBOX -Anonymous lr", "NO [CANNOT]"),
        (f"SETACL Nothing {OTHER} lr", "NO [NONEXISTENT]"),
        (f"SETACL Shared {OTHER} lr", "NO [NONEXISTENT]"),
    ],
)
def test_setacl_errors_are_bad_or_no_as_the_rfc_says(imap: ImapHarness, command: str, answer: str) -> None:
    raw = session(imap)
    raw.send(b"t " + command.encode("latin-1") + (b"" if command.endswith("\r\n") else b"\r\n"))
    reply = raw.until_tagged("t")[-1]
    assert reply.startswith("t " + answer), reply
    assert imap.call(imap.store.get_acl(imap.mailbox_id(DEMO, "INBOX"))) == []
    raw.close()


# ------------------------------------------------------------------------ the shared namespace in LIST


def test_shared_mailboxes_are_listed_under_the_namespace_with_their_rights(imap: ImapHarness) -> None:
    share(imap, "lr")
    share(imap, "r", "Sent")  # no "l": not listed (RFC 4314 section 4), still selectable
    share(imap, "l", "Archive")
    raw = session(imap, OTHER)
    assert raw.command("a", 'LIST "" %')[:-1] == [
        '* LIST (\\HasNoChildren) "/" "INBOX"',
        '* LIST (\\HasNoChildren \\Archive) "/" "Archive"',
        '* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"',
        '* LIST (\\HasNoChildren \\Junk) "/" "Junk"',
        '* LIST (\\HasNoChildren \\Sent) "/" "Sent"',
        '* LIST (\\Noselect \\HasChildren) "/" "Shared"',
        '* LIST (\\HasNoChildren \\Trash) "/" "Trash"',
    ]
    # no special use on another account's mailboxes: it is not this account's Archive
    assert raw.command("b", 'LIST "Shared/" "*" RETURN (MYRIGHTS STATUS (MESSAGES))')[:-1] == [
        '* LIST (\\Noselect \\HasChildren) "/" "Shared/demo"',
        '* LIST (\\HasNoChildren) "/" "Shared/demo/Archive"',
        '* MYRIGHTS "Shared/demo/Archive" l',  # no STATUS without "r"
        '* LIST (\\HasNoChildren) "/" "Shared/demo/INBOX"',
        '* STATUS "Shared/demo/INBOX" (MESSAGES 0)',
        '* MYRIGHTS "Shared/demo/INBOX" lr',
    ]
    assert raw.command("c", f"STATUS {SHARED_INBOX} (MESSAGES UIDNEXT)")[0] == (
        '* STATUS "Shared/demo/INBOX" (MESSAGES 0 UIDNEXT 1)'
    )
    assert raw.command("d", 'STATUS "Shared/demo/Archive" (MESSAGES)')[-1].startswith("d NO [NOPERM]")
    assert raw.command("e", 'EXAMINE "Shared/demo/Sent"')[-1].startswith("e OK [READ-ONLY]")
    assert raw.command("f", 'MYRIGHTS "Shared/demo/Sent"')[0] == '* MYRIGHTS "Shared/demo/Sent" r'
    # subscriptions are names (no right needed); LSUB and LIST (SUBSCRIBED) see the shared one as it is
    ok(raw.command("g", f"SUBSCRIBE {SHARED_INBOX}"))
    assert raw.command("h", 'LSUB "" "Shared/*"')[:-1] == ['* LSUB () "/" "Shared/demo/INBOX"']
    assert raw.command("i", 'LIST (SUBSCRIBED) "" "Shared/*"')[0] == (
        '* LIST (\\HasNoChildren \\Subscribed) "/" "Shared/demo/INBOX"'
    )
    # own mailboxes in RETURN (MYRIGHTS): every right
    assert raw.command("j", 'LIST "" INBOX RETURN (MYRIGHTS)')[1] == f'* MYRIGHTS "INBOX" {ALL}'
    raw.close()
    # a third view: the owner lists nothing under Shared (nothing is shared with it)
    owner = session(imap)
    assert owner.command("k", 'LIST "" "Shared*"') == ["k OK LIST completed"]
    owner.close()


def test_without_any_right_a_mailbox_is_answered_as_missing_and_with_l_as_forbidden(
    imap: ImapHarness,
) -> None:
    """RFC 4314 section 6: commands on a mailbox the user may not see give the error of a missing one."""
    raw = session(imap, OTHER)
    for tag, command in [
        ("a", f"SELECT {SHARED_INBOX}"),
        ("b", f"STATUS {SHARED_INBOX} (MESSAGES)"),
        ("c", f"MYRIGHTS {SHARED_INBOX}"),
        ("d", f"GETACL {SHARED_INBOX}"),
        ("e", f"DELETE {SHARED_INBOX}"),
        ("f", 'SELECT "Shared/nobody/INBOX"'),
        ("g", 'SELECT "Shared/demo"'),
    ]:
        assert raw.command(tag, command)[-1].startswith(f"{tag} NO [NONEXISTENT] Mailbox does not exist")
    assert raw.command("h", f"APPEND {SHARED_INBOX} {{5+}}\r\nhello")[-1].startswith("h NO [TRYCREATE]")
    assert raw.command("i", 'LIST "" "Shared*"') == ["i OK LIST completed"]
    share(imap, "l")
    for tag, command in [
        ("j", f"SELECT {SHARED_INBOX}"),
        ("k", f"STATUS {SHARED_INBOX} (MESSAGES)"),
        ("l", f"GETACL {SHARED_INBOX}"),
        ("m", f"SETACL {SHARED_INBOX} anyone lr"),
        ("n", f"DELETE {SHARED_INBOX}"),
    ]:
        assert raw.command(tag, command)[-1].startswith(f"{tag} NO [NOPERM]")
    assert raw.command("o", f"MYRIGHTS {SHARED_INBOX}")[0] == '* MYRIGHTS "Shared/demo/INBOX" l'
    assert raw.command("p", 'SELECT "Shared/DEMO/INBOX"')[-1].startswith("p NO [NONEXISTENT]")  # one spelling
    raw.close()


def test_annotations_and_quota_roots_of_another_accounts_mailbox(imap: ImapHarness) -> None:
    share(imap, "lr")
    raw = session(imap, OTHER)
    assert raw.command("a", f"GETMETADATA {SHARED_INBOX} /private/comment")[-1].startswith("a NO [CANNOT]")
    assert raw.command("b", f"GETQUOTAROOT {SHARED_INBOX}") == [
        '* QUOTAROOT "Shared/demo/INBOX"',  # the owner's quota is not shown to others
        "b OK GETQUOTAROOT completed",
    ]
    raw.close()


# -------------------------------------------------------------------------- rights on a selected mailbox


def test_select_is_read_only_without_write_rights_and_permanentflags_follow_the_rights(
    imap: ImapHarness,
) -> None:
    share(imap, "lr")
    raw = session(imap, OTHER)
    lines = raw.command("a", f"SELECT {SHARED_INBOX}")
    assert lines[-1].startswith("a OK [READ-ONLY]")  # RFC 4314 5.2: none of i e s w t
    share(imap, "lrs")
    lines = raw.command("b", f"SELECT {SHARED_INBOX}")
    assert lines[-1].startswith("b OK [READ-WRITE]")
    assert "* OK [PERMANENTFLAGS (\\Seen)] Flags permitted" in lines
    share(imap, "lrwt")
    lines = raw.command("c", f"SELECT {SHARED_INBOX}")
    assert "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Draft \\*)] Flags permitted" in lines
    raw.close()


def test_store_fetch_expunge_and_close_need_their_rights(imap: ImapHarness) -> None:
    uid = imap.deliver(DEMO, message("shared one"), flags=("\\Flagged",))
    share(imap, "lrs")
    raw = session(imap, OTHER)
    ok(raw.command("a", f"SELECT {SHARED_INBOX}"))
    # "w" is missing: \Flagged stays as it is, \Seen changes (the STORE does not fail, section 4)
    # (the first session to select the new message: it is \Recent here, RFC 3501 2.3.2)
    assert raw.command("b", "STORE 1 FLAGS (\\Seen)") == [
        "* 1 FETCH (FLAGS (\\Flagged \\Seen \\Recent))",
        "b OK STORE completed",
    ]
    assert raw.command("c", "STORE 1 -FLAGS (\\Flagged)")[-1].startswith("c NO [NOPERM]")
    lines = raw.command("d", "STORE 1 -FLAGS (\\Seen \\Flagged)")
    assert lines[:-1] == ["* 1 FETCH (FLAGS (\\Flagged \\Recent))"]
    # FETCH of a body section marks it \Seen with "s" ...
    lines = raw.command("e", "FETCH 1 (BODY[TEXT])")
    assert "FLAGS (\\Flagged \\Seen \\Recent)" in " ".join(lines)
    assert flags_of(imap, DEMO, uid) == {"\\Flagged", "\\Seen"}
    # ... and "t" and "e" are needed to delete
    assert raw.command("f", "STORE 1 +FLAGS (\\Deleted)")[-1].startswith("f NO [NOPERM]")
    assert raw.command("g", "EXPUNGE")[-1].startswith("g NO [NOPERM]")
    assert raw.command("h", "UID EXPUNGE 1")[-1].startswith("h NO [NOPERM]")
    imap.call(imap.store.store_flags(imap.mailbox_id(DEMO, "INBOX"), [uid], ["\\Deleted"], "add"))
    assert raw.command("i", "CLOSE") == ["i OK CLOSE completed"]  # nothing expunged, and no NO
    assert flags_of(imap, DEMO, uid) == {"\\Flagged", "\\Seen", "\\Deleted"}
    # without "s" FETCH reads without marking read
    imap.call(imap.store.store_flags(imap.mailbox_id(DEMO, "INBOX"), [uid], ["\\Seen"], "remove"))
    share(imap, "lrw")
    ok(raw.command("j", f"SELECT {SHARED_INBOX}"))
    lines = raw.command("k", "FETCH 1 (BODY[TEXT])")
    assert "FLAGS" not in " ".join(lines)
    assert lines[-1] == "k OK FETCH completed"
    assert "\\Seen" not in flags_of(imap, DEMO, uid)
    share(imap, "lrte")
    ok(raw.command("l", f"SELECT {SHARED_INBOX}"))
    assert raw.command("m", "EXPUNGE")[0] == "* 1 EXPUNGE"
    raw.close()


def test_rights_changed_by_the_owner_apply_to_the_next_command(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one"))
    share(imap, "lrsw")
    raw = session(imap, OTHER)
    ok(raw.command("a", f"SELECT {SHARED_INBOX}"))
    ok(raw.command("b", "STORE 1 +FLAGS.SILENT (\\Seen)"))
    owner = session(imap)
    ok(owner.command("c", f"SETACL INBOX {OTHER} -s"))
    lines = raw.command("d", "STORE 1 -FLAGS.SILENT (\\Seen)")
    assert lines[-1].startswith("d NO [NOPERM]")
    # RFC 4314 5.1.1: the rights changed, PERMANENTFLAGS says so (SHOULD); told once
    assert lines[0] == "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Draft \\*)] Flags permitted"
    assert raw.command("d2", "NOOP") == ["d2 OK NOOP completed"]
    ok(owner.command("e", f"SETACL INBOX {OTHER} lr"))
    # no right to change anything: the selection stays (READ-WRITE as it was), but nothing can be changed
    assert raw.command("f", "STORE 1 +FLAGS (work)")[-1].startswith("f NO [NOPERM]")
    # without "r" the session ends (the server MAY say BYE, 5.1.1) before the next command runs
    ok(owner.command("g", f"DELETEACL INBOX {OTHER}"))
    raw.send(b"h FETCH 1 (FLAGS)\r\n")
    assert raw.line() == "* BYE Access to the selected mailbox was withdrawn by its owner"
    assert raw.closed
    raw.close()
    owner.close()


# ----------------------------------------------------------------------- APPEND COPY MOVE into and out


def test_append_needs_insert_and_keeps_only_the_flags_the_user_may_set(imap: ImapHarness) -> None:
    share(imap, "lr")
    raw = session(imap, OTHER)
    data = "Subject: from other\r\n\r\nhi\r\n"
    lines = raw.command("a", f"APPEND {SHARED_INBOX} (\\Seen \\Flagged) {{{len(data)}+}}\r\n{data}")
    assert lines[-1].startswith("a NO [NOPERM]")
    share(imap, "lris")
    lines = raw.command("b", f"APPEND {SHARED_INBOX} (\\Seen \\Flagged $work) {{{len(data)}+}}\r\n{data}")
    match = re.match(r"b OK \[APPENDUID (\d+) (\d+)\]", lines[-1])
    assert match, lines
    assert flags_of(imap, DEMO, int(match.group(2))) == {"\\Seen"}
    # a multi-message APPEND is refused before its first literal when "i" is missing (no "+" for it)
    share(imap, "lr")
    raw.send(f"c APPEND {SHARED_INBOX} {{{len(data)}}}\r\n".encode())
    assert raw.until_tagged("c")[-1].startswith("c NO [NOPERM]")
    raw.close()


def test_append_and_copy_into_a_shared_mailbox_count_against_the_owners_quota(imap: ImapHarness) -> None:
    share(imap, "lri")
    imap.call(imap.store.update_account(DEMO, quota=1000))
    raw = session(imap, OTHER)
    big = "Subject: big\r\n\r\n" + "x" * 1200 + "\r\n"
    lines = raw.command("a", f"APPEND {SHARED_INBOX} {{{len(big)}+}}\r\n{big}")
    assert lines[-1].startswith("a NO [OVERQUOTA]")
    ok(raw.command("b", f"APPEND INBOX {{{len(big)}+}}\r\n{big}"))  # the other account has no quota
    ok(raw.command("c", "SELECT INBOX"))
    assert raw.command("d", f"COPY 1 {SHARED_INBOX}")[-1].startswith("d NO [OVERQUOTA]")
    imap.call(imap.store.update_account(DEMO, quota=0))
    ok(raw.command("e", f"COPY 1 {SHARED_INBOX}"))
    raw.close()


def test_copy_needs_insert_on_the_target_and_move_delete_rights_on_the_source(imap: ImapHarness) -> None:
    imap.deliver(OTHER, message("mine"), flags=("\\Seen", "\\Flagged", "$label"))
    imap.deliver(DEMO, message("theirs"))
    share(imap, "lr")
    raw = session(imap, OTHER)
    ok(raw.command("a", "SELECT INBOX"))
    assert raw.command("b", f"COPY 1 {SHARED_INBOX}")[-1].startswith("b NO [NOPERM]")
    assert raw.command("c", 'COPY 1 "Shared/demo/Sent"')[-1].startswith("c NO [TRYCREATE]")
    share(imap, "lris")
    lines = raw.command("d", f"COPY 1 {SHARED_INBOX}")
    match = re.match(r"d OK \[COPYUID \d+ 1 (\d+)\]", lines[-1])
    assert match, lines
    assert flags_of(imap, DEMO, int(match.group(1))) == {"\\Seen"}  # no "w": \Flagged and $label stay out
    # MOVE out of the shared mailbox: "t" and "e" there, "i" on the own target (all rights)
    ok(raw.command("e", f"SELECT {SHARED_INBOX}"))
    assert raw.command("f", "MOVE 1 INBOX")[-1].startswith("f NO [NOPERM]")
    share(imap, "lrste")
    ok(raw.command("g", f"SELECT {SHARED_INBOX}"))
    lines = raw.command("h", "UID MOVE 1 INBOX")
    assert lines[-1] == "h OK UID MOVE completed", lines
    assert any(line.startswith("* OK [COPYUID") for line in lines)
    assert imap.call(imap.store.get_messages(imap.mailbox_id(DEMO, "INBOX"), [1])) == []
    raw.close()


# ------------------------------------------------------------ CREATE DELETE RENAME in another account


def test_create_rename_delete_in_another_account_need_k_and_x(imap: ImapHarness) -> None:
    owner = session(imap)
    ok(owner.command("a", "CREATE Work"))
    ok(owner.command("b", f"SETACL Work {OTHER} lrk"))
    raw = session(imap, OTHER)
    lines = ok(raw.command("c", 'CREATE "Shared/demo/Work/Team/Notes"'))
    # made in the owner's account, with its superior, each inheriting the parent's ACL (section 4)
    notes = imap.mailbox_id(DEMO, "Work/Team/Notes")
    assert imap.call(imap.store.my_rights(imap.account_ids[OTHER], [notes])) == {notes: "lrk"}
    assert "MAILBOXID" in lines[-1]
    assert raw.command("d", 'CREATE "Shared/demo/Top"')[-1].startswith("d NO [NOPERM]")
    assert raw.command("e", 'CREATE "Shared/demo/Work/Team"')[-1].startswith("e NO [ALREADYEXISTS]")
    assert raw.command("e2", 'CREATE "Shared/demo/Work"')[-1].startswith("e2 NO [NOPERM]")  # no parent
    assert raw.command("f", 'CREATE "Shared/demo/Work/X" (USE (\\Archive))')[-1].startswith("f NO [CANNOT]")
    assert raw.command("g", 'DELETE "Shared/demo/Work/Team/Notes"')[-1].startswith("g NO [NOPERM]")
    ok(owner.command("h", f"SETACL Work/Team/Notes {OTHER} +x"))
    ok(owner.command("h2", f"SETACL Work/Team {OTHER} +x"))
    # RENAME: "x" on it, "k" on the new parent, within the account
    ok(raw.command("i", 'RENAME "Shared/demo/Work/Team/Notes" "Shared/demo/Work/Team/Memos"'))
    assert imap.call(imap.store.get_mailbox(imap.account_ids[DEMO], "Work/Team/Memos")) is not None
    lines = raw.command("j", 'RENAME "Shared/demo/Work/Team" "Mine"')
    assert lines[-1].startswith("j NO [CANNOT]")
    lines = raw.command("k", 'RENAME "Shared/demo/Work/Team" "Shared/demo/Team"')
    assert lines[-1].startswith("k NO [NOPERM]")
    ok(raw.command("l", 'DELETE "Shared/demo/Work/Team/Memos"'))
    assert imap.call(imap.store.get_mailbox(imap.account_ids[DEMO], "Work/Team/Memos")) is None
    assert raw.command("m", 'DELETE "Shared/demo/INBOX"')[-1].startswith("m NO [NONEXISTENT]")
    share(imap, "lx")
    assert raw.command("n", 'DELETE "Shared/demo/INBOX"')[-1].startswith("n NO [CANNOT]")
    raw.close()
    owner.close()


def test_the_namespace_names_are_no_personal_mailboxes(imap: ImapHarness) -> None:
    raw = session(imap)
    for tag, command in [
        ("a", "CREATE Shared"),
        ("b", 'CREATE "Shared/demo"'),
        ("c", 'CREATE "Shared/x/y"'),
        ("d", 'RENAME Drafts "Shared/x"'),
    ]:
        assert raw.command(tag, command)[-1].split()[1:3] in (["NO", "[CANNOT]"], ["NO", "[NOPERM]"]), command
    ok(raw.command("e", "CREATE shared"))  # another case is another name
    assert raw.command("f", "DELETE Shared")[-1].startswith("f NO [NONEXISTENT]")
    raw.close()


# ------------------------------------------------------------------- changes between the two accounts


def test_the_owners_idle_sees_the_other_accounts_store_and_the_other_sees_the_owners_expunge(
    imap: ImapHarness,
) -> None:
    imap.deliver(DEMO, message("one"))
    imap.deliver(DEMO, message("two"))
    share(imap, "lrsw")
    owner = session(imap)
    ok(owner.command("a", "SELECT INBOX"))
    owner.send(b"b IDLE\r\n")
    assert owner.line() == "+ idling"
    other = session(imap, OTHER)
    ok(other.command("c", f"SELECT {SHARED_INBOX}"))
    ok(other.command("d", "STORE 2 +FLAGS.SILENT (\\Flagged)"))
    owner.wait()
    assert owner.line() == "* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))"  # \Recent: the owner's
    owner.send(b"DONE\r\n")
    assert owner.until_tagged("b") == ["b OK IDLE terminated"]
    # the other way: the owner expunges, the other session (following the owner's changes) is told
    other.send(b"e IDLE\r\n")
    assert other.line() == "+ idling"
    ok(owner.command("f", "STORE 1 +FLAGS.SILENT (\\Deleted)"))
    other.wait()
    assert other.line() == "* 1 FETCH (UID 1 FLAGS (\\Deleted))"
    ok(owner.command("g", "EXPUNGE"))
    other.wait()
    assert other.line() == "* 1 EXPUNGE"
    other.send(b"DONE\r\n")
    assert other.until_tagged("e") == ["e OK IDLE terminated"]
    # deleting the mailbox ends the other account's selection as it does for the owner's sessions
    ok(owner.command("h", "CREATE Work"))
    ok(owner.command("i", f"SETACL Work {OTHER} lr"))
    ok(other.command("j", 'EXAMINE "Shared/demo/Work"'))
    ok(owner.command("k", "DELETE Work"))
    assert other.command("l", "NOOP")[0].startswith("* BYE")
    owner.close()


def test_a_grantee_with_a_administers_and_negative_rights_take_rights_away(imap: ImapHarness) -> None:
    share(imap, "lra")
    raw = session(imap, OTHER)
    assert raw.command("a", f"GETACL {SHARED_INBOX}")[0] == (
        f'* ACL "Shared/demo/INBOX" {DEMO} {ALL} {OTHER} lra'
    )
    ok(raw.command("b", f"SETACL {SHARED_INBOX} anyone lrsw"))
    assert raw.command("c", f"SETACL {SHARED_INBOX} {DEMO} lr")[-1].startswith("c NO [CANNOT]")
    assert raw.command("d", f"MYRIGHTS {SHARED_INBOX}")[0] == '* MYRIGHTS "Shared/demo/INBOX" lrswa'
    ok(raw.command("e", f"SETACL {SHARED_INBOX} -other w"))
    assert raw.command("f", f"MYRIGHTS {SHARED_INBOX}")[0] == '* MYRIGHTS "Shared/demo/INBOX" lrsa'
    assert (
        raw.command("g", f"LISTRIGHTS {SHARED_INBOX} demo")[0]
        == f'* LISTRIGHTS "Shared/demo/INBOX" demo {ALL}'
    )
    ok(raw.command("h", f"SETACL {SHARED_INBOX} other -a"))
    assert raw.command("i", f"GETACL {SHARED_INBOX}")[-1].startswith("i NO [NOPERM]")
    raw.close()


def test_rev2_select_of_a_shared_mailbox_gives_its_list_response(imap: ImapHarness) -> None:
    share(imap, "lr")
    raw = session(imap, OTHER)
    ok(raw.command("a", "ENABLE IMAP4rev2"))
    lines = raw.command("b", f"SELECT {SHARED_INBOX}")
    assert '* LIST (\\HasNoChildren) "/" "Shared/demo/INBOX"' in lines
    raw.close()


# ------------------------------------------------------------------ review: leaks and rights taken away


def test_copy_into_the_owners_shared_trash_counts_against_the_owners_quota(imap: ImapHarness) -> None:
    """The \\Trash exemption of the quota is for the account's own deletes: another account copying into
    a Trash shared with it adds to the owner's mail like any copy (else it could fill the account)."""
    share(imap, "lri", "Trash")
    imap.deliver(DEMO, ("Subject: own\r\n\r\n" + "y" * 600 + "\r\n").encode())
    imap.call(imap.store.update_account(DEMO, quota=1000))
    imap.deliver(OTHER, ("Subject: big\r\n\r\n" + "x" * 600 + "\r\n").encode())
    raw = session(imap, OTHER)
    ok(raw.command("a", "SELECT INBOX"))
    assert raw.command("b", 'COPY 1 "Shared/demo/Trash"')[-1].startswith("b NO [OVERQUOTA]")
    assert imap.call(imap.store.get_messages(imap.mailbox_id(DEMO, "Trash"), [1])) == []
    # the owner's own copy into its Trash is still exempt (deleting always works)
    owner = session(imap)
    ok(owner.command("c", "SELECT INBOX"))
    ok(owner.command("d", "COPY 1 Trash"))
    raw.close()
    owner.close()


def test_getquotaroot_needs_one_of_the_rights_myrights_needs(imap: ImapHarness) -> None:
    """RFC 4314 section 6: with none of "l r i k x a" a mailbox is answered as missing, by every command."""
    share(imap, "sw")
    raw = session(imap, OTHER)
    assert raw.command("a", f"MYRIGHTS {SHARED_INBOX}")[-1].startswith("a NO [NONEXISTENT]")
    assert raw.command("b", f"GETQUOTAROOT {SHARED_INBOX}")[-1].startswith("b NO [NONEXISTENT]")
    share(imap, "i")
    assert raw.command("c", f"GETQUOTAROOT {SHARED_INBOX}")[-1] == "c OK GETQUOTAROOT completed"
    raw.close()


def test_appenduid_and_copyuid_are_left_out_without_read_on_the_target(imap: ImapHarness) -> None:
    """RFC 4315 sections 3 and 5: a client that may APPEND or COPY to a mailbox but not SELECT it gets no
    APPENDUID or COPYUID (they tell how much mail the mailbox got)."""
    share(imap, "li")  # a drop box
    imap.deliver(OTHER, message("mine"))
    raw = session(imap, OTHER)
    data = "Subject: dropped\r\n\r\nhi\r\n"
    assert raw.command("a", f"APPEND {SHARED_INBOX} {{{len(data)}+}}\r\n{data}") == ["a OK APPEND completed"]
    ok(raw.command("b", "SELECT INBOX"))
    assert raw.command("c", f"COPY 1 {SHARED_INBOX}") == ["c OK COPY completed"]
    lines = raw.command("d", f"MOVE 1 {SHARED_INBOX}")
    assert not any("COPYUID" in line for line in lines), lines
    assert lines[-1] == "d OK MOVE completed"
    share(imap, "lri")
    assert "APPENDUID" in raw.command("e", f"APPEND {SHARED_INBOX} {{{len(data)}+}}\r\n{data}")[-1]
    raw.close()


def test_a_command_on_a_shared_mailbox_reads_the_rights_at_most_once(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decision 0076: the rights read at SELECT are used until the store publishes a change of the mailbox's
    access control list; then the next command reads them, once, whatever it checks."""
    for n in range(3):
        imap.deliver(DEMO, message(f"shared {n}"))
    share(imap, "lrswite")
    raw = session(imap, OTHER)
    ok(raw.command("s", f"SELECT {SHARED_INBOX}"))
    reads: list[list[int]] = []
    my_rights = imap.store.my_rights

    async def counting(account_id: int, mailbox_ids: Sequence[int]) -> dict[int, str]:
        reads.append(list(mailbox_ids))
        return await my_rights(account_id, mailbox_ids)

    monkeypatch.setattr(imap.store, "my_rights", counting)
    commands = [
        "FETCH 1 (BODY[TEXT])",  # sets \Seen: "s"
        "STORE 1 +FLAGS (\\Flagged \\Deleted)",  # "w" and "t"
        "COPY 1 INBOX",
        "MOVE 2 INBOX",  # "t" and "e" on the source
        "EXPUNGE",  # "e"
        "UID EXPUNGE 1:*",
        "NOOP",
    ]
    owner = session(imap)
    for n, command in enumerate(commands):
        ok(raw.command(f"a{n}", command))
        assert reads == [], command
        ok(owner.command(f"o{n}", f"SETACL INBOX {OTHER} +p"))  # a change: read again by the next command
        ok(owner.command(f"p{n}", f"SETACL INBOX {OTHER} -p"))
        ok(raw.command(f"b{n}", command))
        assert len(reads) == 1, command
        reads.clear()
    owner.close()
    raw.close()


def test_a_setacl_that_takes_w_away_is_honoured_by_the_sharers_next_store(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one"))
    share(imap, "lrsw")
    raw = session(imap, OTHER)
    ok(raw.command("a", f"SELECT {SHARED_INBOX}"))
    ok(raw.command("b", "STORE 1 +FLAGS.SILENT (\\Flagged)"))
    owner = session(imap)
    ok(owner.command("c", f"SETACL INBOX {OTHER} -w"))
    lines = raw.command("d", "STORE 1 -FLAGS (\\Flagged)")
    assert lines[0] == "* OK [PERMANENTFLAGS (\\Seen)] Flags permitted"  # RFC 4314 5.1.1
    assert lines[-1].startswith("d NO [NOPERM]")
    assert flags_of(imap, DEMO, 1) == {"\\Flagged"}
    # and a session in IDLE is told at once (the change wakes it: no message needs to change)
    ok(owner.command("e", f"SETACL INBOX {OTHER} +w"))
    raw.send(b"f IDLE\r\n")
    assert raw.line() == "+ idling"
    assert raw.line() == "* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Draft \\*)] Flags permitted"
    woken: list[bool] = []
    raw.core.session.wake = lambda: woken.append(True)  # what the glue's IDLE wait listens to
    ok(owner.command("g", f"SETACL INBOX {OTHER} -w"))
    assert woken  # before the owner's OK
    raw.wait()
    assert raw.line() == "* OK [PERMANENTFLAGS (\\Seen)] Flags permitted"
    raw.send(b"DONE\r\n")
    assert raw.until_tagged("f") == ["f OK IDLE terminated"]
    owner.close()
    raw.close()


def test_acl_commands_answer_alike_whether_or_not_an_address_is_an_account(imap: ImapHarness) -> None:
    """Decision 0076: SETACL, DELETEACL, LISTRIGHTS and GETACL give the same answers for an address of the
    domain that is an account and for one that is not, and for another domain's, whether or not it has such
    an account; the entry of an address that is no account applies once an account gets it."""
    imap.call(imap.store.add_domain("elsewhere.test"))
    imap.call(imap.store.add_account("fred@elsewhere.test", password_hash()))
    raw = session(imap)

    def answers(address: str) -> list[str]:
        local = address.partition("@")[0]
        commands = [
            f"SETACL INBOX {address} lr",
            f'SETACL INBOX "{local.upper()}" +w',
            f"SETACL INBOX -{address} s",
            f"LISTRIGHTS INBOX {address}",
            "GETACL INBOX",
            f"DELETEACL INBOX -{address}",
            f"DELETEACL INBOX {local}",
            f"DELETEACL INBOX {address}",
            "GETACL INBOX",
        ]
        lines = [line for n, command in enumerate(commands) for line in raw.command(f"t{n}", command)]
        return [line.replace(address, "A").replace(local.upper(), "L").replace(local, "L") for line in lines]

    assert answers(OTHER) == answers("ghost@example.test")
    assert answers(OTHER)[:2] == ["t0 OK SETACL completed", "t1 OK SETACL completed"]
    assert answers("fred@elsewhere.test") == answers("ghost@elsewhere.test")
    assert answers("fred@elsewhere.test")[0] == (
        "t0 NO [CANNOT] Rights are given only to anyone and to addresses of the mailbox owner's domain"
    )
    # an entry for an address that is no account grants nothing, until an account has the address
    imap.deliver(DEMO, message("for ghost"))
    ok(raw.command("g", "SETACL INBOX ghost lr"))
    imap.call(imap.store.add_account("ghost@example.test", password_hash()))
    ghost = session(imap, "ghost@example.test")
    ok(ghost.command("s", f"EXAMINE {SHARED_INBOX}"))
    assert "for ghost" in " ".join(ghost.command("f", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    ghost.close()
    raw.close()


def test_permanentflags_follow_the_rights_when_sent_again(imap: ImapHarness) -> None:
    """RFC 4314 5.1.1: FLAGS and PERMANENTFLAGS MUST reflect the user's rights; also when a new keyword has
    them sent again (RFC 9051 7.1), and when the rights change while the mailbox is selected (SHOULD)."""
    imap.deliver(DEMO, message("one"))
    share(imap, "lrs")
    raw = session(imap, OTHER)
    assert "* OK [PERMANENTFLAGS (\\Seen)] Flags permitted" in raw.command("a", f"SELECT {SHARED_INBOX}")
    imap.call(imap.store.store_flags(imap.mailbox_id(DEMO, "INBOX"), [1], ["$new"], "add"))
    lines = raw.command("b", "NOOP")
    assert "* OK [PERMANENTFLAGS (\\Seen)] Flags permitted" in lines, lines
    share(imap, "lrst")
    lines = raw.command("c", "NOOP")
    assert "* OK [PERMANENTFLAGS (\\Seen \\Deleted)] Flags permitted" in lines, lines
    assert raw.command("d", "NOOP") == ["d OK NOOP completed"]  # told once
    raw.close()


def test_taking_read_away_ends_the_selection_before_another_message_is_read(imap: ImapHarness) -> None:
    """RFC 4314 5.1.1: a server that checks rights on every command MAY say BYE when "r" is gone; this one
    does, before the next command runs (no message data, no new EXISTS after the owner took it away)."""
    imap.deliver(DEMO, message("secret one"))
    share(imap, "lr")
    raw = session(imap, OTHER)
    ok(raw.command("a", f"SELECT {SHARED_INBOX}"))
    share(imap, "l")  # the owner takes "r" away
    raw.send(b"b FETCH 1 (BODY[])\r\n")
    assert raw.line().startswith("* BYE")
    assert raw.closed
    assert b"secret" not in raw.buf
    # IDLE: the next change is not told, the session ends
    share(imap, "lr")
    idle = session(imap, OTHER)
    ok(idle.command("c", f"SELECT {SHARED_INBOX}"))
    idle.send(b"d IDLE\r\n")
    assert idle.line() == "+ idling"
    imap.call(imap.store.delete_acl(imap.mailbox_id(DEMO, "INBOX"), OTHER))
    imap.deliver(DEMO, message("secret two"))
    idle.wait()
    assert idle.line().startswith("* BYE")
    assert idle.closed
    idle.close()
    raw.close()


@pytest.mark.parametrize(
    "command", ["UID COPY 1:2 INBOX", "UID STORE 1:2 -FLAGS (\\Deleted)", "CLOSE", "UID SEARCH BODY private"]
)
def test_a_deleted_selected_mailbox_whose_id_another_account_got_is_never_touched(
    imap: ImapHarness, command: str
) -> None:
    """SQLite alone gives a deleted mailbox's id (the highest) to the next mailbox made, maybe another
    account's; the store no longer does (`create_mailbox_row`), and a session that still has the deleted
    mailbox selected runs no command on its id all the same (COPY would copy the other account's messages
    out, STORE and CLOSE change and expunge them): BYE before it runs."""
    raw, other_session = session(imap), session(imap)
    ok(raw.command("a", "CREATE Bait"))
    for n in (1, 2):
        imap.deliver(DEMO, message(f"bait {n}"), "Bait")
    bait = imap.mailbox_id(DEMO, "Bait")
    ok(raw.command("b", "SELECT Bait"))
    ok(other_session.command("c", "DELETE Bait"))
    victim = session(imap, OTHER)
    ok(victim.command("d", "CREATE Private"))
    private_id = imap.mailbox_id(OTHER, "Private")
    assert private_id != bait  # never given again
    for n in (1, 2):
        imap.deliver(OTHER, message(f"private {n}"), "Private", flags=("\\Deleted",))
    raw.send(f"e {command}\r\n".encode())
    assert raw.line() == "* BYE The selected mailbox was deleted by another session"
    assert raw.closed
    private = imap.call(imap.store.get_messages(private_id, [1, 2]))
    assert [m.flags for m in private] == [frozenset({"\\Deleted"})] * 2  # still there, as they were
    assert imap.call(imap.store.mailbox_status(imap.mailbox_id(DEMO, "INBOX"))).mailbox.messages == 0
    other_session.close()
    victim.close()


def test_an_append_whose_mailbox_id_went_to_another_account_stores_nothing(imap: ImapHarness) -> None:
    """The client takes its time sending the message: its own target mailbox is deleted meanwhile, and another
    account makes a mailbox (SQLite alone would give it the deleted one's id; the store does not). The rights
    are read again by id when the message is in: nothing is stored, in either mailbox."""
    raw, other_session = session(imap), session(imap)
    ok(raw.command("a", "CREATE Drop"))
    drop = imap.mailbox_id(DEMO, "Drop")
    data = "Subject: injected\r\n\r\nhi\r\n"
    raw.send(f"b APPEND Drop {{{len(data)}}}\r\n".encode())
    assert raw.line().startswith("+")
    ok(other_session.command("c", "DELETE Drop"))
    victim = session(imap, OTHER)
    ok(victim.command("d", "CREATE Private"))
    private_id = imap.mailbox_id(OTHER, "Private")
    assert private_id != drop
    raw.send(f"{data}\r\n".encode())
    assert raw.until_tagged("b")[-1].startswith("b NO")
    assert imap.call(imap.store.mailbox_status(private_id)).mailbox.messages == 0
    raw.close()
    other_session.close()
    victim.close()


def test_a_failed_select_of_a_shared_mailbox_follows_no_owner(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SELECT that fails after it started to follow the owner's changes stops following them."""
    share(imap, "lr")
    raw = session(imap, OTHER)

    async def gone(mailbox_id: int) -> None:
        raise NotFound(f"no mailbox {mailbox_id}")

    monkeypatch.setattr(imap.store, "snapshot", gone)
    assert raw.command("a", f"SELECT {SHARED_INBOX}")[-1].startswith("a NO")
    assert raw.core.session.selected_owner is None
    assert raw.core.session._unfollow is None
    raw.close()


# --------------------------------------------------------------------------------------------- parser


def mb(name: str) -> MailboxName:
    return MailboxName(name, name)


def parse(data: bytes) -> list[ReaderEvent]:
    reader = CommandReader()
    reader.feed(data)
    events = []
    while (event := reader.next()) is not None:
        if not isinstance(event, NeedContinuation):
            events.append(event)
    return events


@pytest.mark.parametrize(
    ("line", "command"),
    [
        # the examples of RFC 4314 section 3
        (
            b"A001 SETACL INBOX/Drafts John lrswicda",
            SetAcl("A001", mb("INBOX/Drafts"), "John", "", "lrswicda"),
        ),
        (b"A002 GETACL INBOX/Drafts", GetAcl("A002", mb("INBOX/Drafts"))),
        (b"A036 SETACL INBOX/Drafts John +s", SetAcl("A036", mb("INBOX/Drafts"), "John", "+", "s")),
        (b"B002 DELETEACL INBOX Fred", DeleteAcl("B002", mb("INBOX"), "Fred")),
        (b"a001 LISTRIGHTS ~/Mail/saved smith", ListRights("a001", mb("~/Mail/saved"), "smith")),
        (b"A003 MYRIGHTS INBOX", MyRights("A003", mb("INBOX"))),
        # negative identifiers, "-" rights, quoted and literal strings, an empty rights string
        (b'c setacl "a b" "-fred" -lr', SetAcl("c", mb("a b"), "-fred", "-", "lr")),
        (b"d SETACL INBOX {4+}\r\nfred {0+}\r\n", SetAcl("d", mb("INBOX"), "fred", "", "")),
        (b"e getacl inbox", GetAcl("e", MailboxName("INBOX", "inbox"))),
    ],
)
def test_the_acl_commands_parse_as_the_rfc_writes_them(line: bytes, command: ReaderEvent) -> None:
    assert parse(line + b"\r\n") == [command]


@pytest.mark.parametrize(
    "line",
    [
        b"a SETACL INBOX fred",
        b"a SETACL INBOX fred lrQs",  # 3.1: upper-case rights are not allowed
        b"a SETACL INBOX fred l+r",
        b"a SETACL INBOX fred lr extra",
        b"a DELETEACL INBOX",
        b"a GETACL",
        b"a GETACL INBOX fred",
        b"a LISTRIGHTS INBOX",
        b"a MYRIGHTS",
        b'a SETACL INBOX "fr\x01ed" lr',
        b"a SETACL INBOX " + b"x" * 513 + b" lr",
        b"a MYRIGHTS INBOX INBOX",
    ],
)
def test_acl_syntax_errors_are_parse_errors(line: bytes) -> None:
    events = parse(line + b"\r\n")
    assert len(events) == 1
    assert isinstance(events[0], ParseError), events


IDENTIFIERS = st.sampled_from(["fred", "-fred", "anyone", "-anyone", "a b", "Fred@Example.Test", "é@x.test"])


@st.composite
def acl_commands(draw: st.DrawFn) -> tuple[ReaderEvent, bytes]:
    tag = draw(st.text(st.sampled_from("abcXYZ019."), min_size=1, max_size=5))
    t = tag.encode()
    mailbox, mtext = draw(mailboxes())
    kind = draw(st.sampled_from(["SETACL", "DELETEACL", "GETACL", "LISTRIGHTS", "MYRIGHTS"]))
    head = t + b" " + case(draw, kind) + b" " + mtext
    if kind == "GETACL":
        return GetAcl(tag, mailbox), head
    if kind == "MYRIGHTS":
        return MyRights(tag, mailbox), head
    identifier = draw(IDENTIFIERS)
    head += b" " + draw(wire_string(identifier))
    if kind == "DELETEACL":
        return DeleteAcl(tag, mailbox, identifier), head
    if kind == "LISTRIGHTS":
        return ListRights(tag, mailbox, identifier), head
    mode = draw(st.sampled_from(["", "+", "-"]))
    rights = draw(st.text(st.sampled_from("lrswipkxteacd0123"), max_size=8))
    return SetAcl(tag, mailbox, identifier, mode, rights), head + b" " + draw(wire_string(mode + rights))


@settings(max_examples=300, deadline=None)
@given(acl_commands())
def test_generated_acl_commands_parse_back_to_the_same_structure(
    generated: tuple[ReaderEvent, bytes],
) -> None:
    expected, text = generated
    assert parse(text + b"\r\n") == [expected]


_ACL_ARGUMENT_BYTES = st.lists(
    st.one_of(
        st.sampled_from([b" ", b"(", b")", b'"', b"\\", b"+", b"-", b"lr", b"LR", b"c", b"d", b"anyone"]),
        st.sampled_from([b"INBOX", b'""', b"{2+}", b"{0}", b"\x00", b"\xc3\xa9", b"\r\n", b"~{1+}", b"NIL"]),
        st.binary(max_size=6),
    ),
    max_size=16,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(
    command=st.sampled_from([b"SETACL", b"DELETEACL", b"GETACL", b"LISTRIGHTS", b"MYRIGHTS"]),
    arguments=_ACL_ARGUMENT_BYTES,
)
def test_random_acl_arguments_give_a_command_or_a_parse_error(command: bytes, arguments: bytes) -> None:
    """Whatever follows an ACL command, the reader gives commands or ParseErrors, never an exception; a typed
    SETACL holds only lower-case letters and digits as rights, and a mode of "", "+" or "-"."""
    reader = CommandReader(max_line=4096)
    reader.feed(b"t " + command + b" " + arguments + b"\r\nz NOOP\r\n")
    events = []
    while (event := reader.next()) is not None:
        events.append(event)
        assert len(events) < 100
    for event in events:
        expected = SetAcl | DeleteAcl | GetAcl | ListRights | MyRights | Noop | ParseError
        assert isinstance(event, expected | NeedContinuation | LiteralTooLarge)
        if isinstance(event, SetAcl):
            assert event.mode in ("", "+", "-")
            assert re.fullmatch("[a-z0-9]*", event.rights)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from([b"SETACL", b"DELETEACL", b"GETACL", b"LISTRIGHTS", b"MYRIGHTS"]),
    mailbox=st.sampled_from([b"INBOX", b"Shared", b'"Shared/demo/INBOX"', b"Shared/other/x", b'""']),
    identifier=st.sampled_from([b"other", b"-anyone", b'"\xe2\x80\x8e"', b"demo@example.test", b"x@y"]),
    rights=st.sampled_from([b"lr", b"+cd", b"-a", b'""', b"q", b"lrswipkxtea"]),
)
def test_acl_commands_on_any_mailbox_get_protocol_answers(
    imap: ImapHarness, command: bytes, mailbox: bytes, identifier: bytes, rights: bytes
) -> None:
    """Every combination of the commands with owners, grantees, namespace names and odd identifiers is
    answered OK, NO or BAD, with no failure in the log."""
    raw = session(imap, OTHER)
    raw.send(b"t " + command + b" " + mailbox + b" " + identifier + b" " + rights + b"\r\n")
    assert raw.until_tagged("t")[-1].split()[1] in ("OK", "NO", "BAD")
    raw.close()
    assert imap.failures() == []


def test_saslprep_and_identifiers() -> None:
    assert acl.saslprep("I\u00adX") == "IX"  # B.1 mapped to nothing (RFC 4013 3's examples)
    assert acl.saslprep("user") == "user"
    assert acl.saslprep("\u00aa") == "a"  # NFKC
    assert acl.saslprep("\u2168") == "IX"
    assert acl.saslprep("\u0007") is None  # C.2.1
    assert acl.saslprep("\u0627\u0031") is None  # bidi: a RandALCat first needs one last
    assert acl.prepare_identifier("Fred", "example.test") == "fred@example.test"
    assert acl.prepare_identifier("-ANYONE", "example.test") == "-anyone"
    assert acl.prepare_identifier("x@Example.TEST", "other.test") == "x@example.test"
    assert acl.rights_text("lrt") == "lrtd"
    assert acl.rights_text("ka") == "kca"
    assert acl.parse_rights("cd") == "kxte"


# ------------------------------------------------------------------------------------- a real socket


def test_a_shared_mailbox_over_a_socket_with_imaplib_and_the_owner_idle(imap_server: ImapServer) -> None:
    imap_server.deliver(DEMO, message("shared over tcp"))
    inbox = imap_server.mailbox_id(DEMO, "INBOX")
    imap_server.call(imap_server.store.set_acl(inbox, OTHER, "lrswi"))
    owner = Raw(imap_server)
    owner.login(DEMO)
    assert owner.command("a", "SELECT INBOX")[-1].startswith("a OK")
    owner.send(b"b IDLE\r\n")
    assert owner.line() == "+ idling"

    other = imap_server.imaps(OTHER)
    status, namespace = other.namespace()
    assert status == "OK"
    assert namespace == [b'(("" "/")) (("Shared/" "/")) NIL']
    status, listed = other.list("Shared/", "*")
    assert status == "OK"
    assert b'(\\HasNoChildren) "/" "Shared/demo/INBOX"' in listed
    status, data = other.select('"Shared/demo/INBOX"')
    assert (status, data) == ("OK", [b"1"])
    status, fetched = other.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert status == "OK"
    first = fetched[0]
    assert isinstance(first, tuple)
    assert b"shared over tcp" in first[1]
    assert other.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
    # the owner's IDLE hears of it at once (the other account's change comes on the owner's notifications)
    assert owner.line() == "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"
    status, appended = other.append('"Shared/demo/INBOX"', "(\\Seen)", None, message("appended by other"))
    assert status == "OK", appended
    assert owner.line() == "* 2 EXISTS"
    owner.send(b"DONE\r\n")
    assert owner.until_tagged("b")[-1] == "b OK IDLE terminated"
    # and what the other account did is in the owner's mailbox
    stored = imap_server.call(imap_server.store.get_messages(inbox, [1, 2]))
    assert [m.flags for m in stored] == [frozenset({"\\Flagged"}), frozenset({"\\Seen"})]
    status, refused = other.uid("EXPUNGE", "1")
    assert (status, refused) == ("NO", [b"[NOPERM] Permission denied: the e right is needed"])  # no "e"
    other.logout()
    owner.close()
    assert imap_server.failures() == []
