"""LIST, LSUB, CREATE, DELETE, RENAME, SUBSCRIBE/UNSUBSCRIBE and STATUS, checked against the store."""

from __future__ import annotations

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness


def names(server: ImapHarness) -> set[str]:
    return {m.name for m in server.call(server.store.list_mailboxes(server.account_ids[DEMO]))}


def test_list_all_has_special_use_and_children_attributes(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    assert raw.command("c1", "CREATE Work/Projects")[-1].startswith("c1 OK")
    assert raw.command("d1", "DELETE Work")[-1].startswith("d1 OK")  # CREATE made it; now only a parent
    reply = raw.command("l1", 'LIST "" "*"')
    assert reply[0] == '* LIST (\\HasNoChildren) "/" "INBOX"'
    assert '* LIST (\\HasNoChildren \\Sent) "/" "Sent"' in reply
    assert '* LIST (\\Noselect \\HasChildren) "/" "Work"' in reply
    assert '* LIST (\\HasNoChildren) "/" "Work/Projects"' in reply
    reply = raw.command("l2", 'LIST "" "%"')
    assert '* LIST (\\Noselect \\HasChildren) "/" "Work"' in reply
    assert not any("Work/Projects" in line for line in reply)
    reply = raw.command("l3", 'LIST "Work/" "%"')
    assert reply[:-1] == ['* LIST (\\HasNoChildren) "/" "Work/Projects"']
    assert raw.command("l4", 'LIST "" ""')[0] == '* LIST (\\Noselect) "/" ""'
    assert raw.command("l5", 'LIST "" "inbox"')[0] == '* LIST (\\HasNoChildren) "/" "INBOX"'


def test_create_delete_rename_with_hierarchy(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    assert raw.command("c1", "CREATE a")[-1].startswith("c1 OK")
    assert raw.command("c2", "CREATE a/b")[-1].startswith("c2 OK")
    assert raw.command("c3", "CREATE a")[-1].startswith("c3 NO [ALREADYEXISTS]")
    assert raw.command("c4", "CREATE inbox")[-1].startswith("c4 NO [ALREADYEXISTS]")
    # RFC 9051 6.3.4: a mailbox with children may be deleted; the children stay.
    assert raw.command("d1", "DELETE a")[-1].startswith("d1 OK")
    assert "a/b" in names(imap)
    assert "a" not in names(imap)
    assert '* LIST (\\Noselect \\HasChildren) "/" "a"' in raw.command("l1", 'LIST "" "a*"')
    # RFC 9051 6.3.5: a \Noselect name with inferiors cannot be deleted
    assert raw.command("d2", "DELETE a")[-1].startswith("d2 NO [HASCHILDREN]")
    assert raw.command("d3", "DELETE INBOX")[-1].startswith("d3 NO")
    assert raw.command("d4", "DELETE nothere")[-1].startswith("d4 NO [NONEXISTENT]")
    # RENAME and CREATE make the missing superior names (RFC 9051 6.3.4, 6.3.6)
    assert raw.command("r1", "RENAME a/b x/y")[-1].startswith("r1 OK")
    assert {"x", "x/y"} <= names(imap)
    assert "a/b" not in names(imap)
    assert raw.command("r2", "RENAME nothere z")[-1].startswith("r2 NO [NONEXISTENT]")
    assert raw.command("c5", "CREATE p/q/r")[-1].startswith("c5 OK")
    assert {"p", "p/q", "p/q/r"} <= names(imap)
    # Renaming INBOX to one of its inferiors is allowed: the messages move, INBOX stays (6.3.6)
    imap.deliver(DEMO, b"Subject: old\r\n\r\nold\r\n")
    assert raw.command("r3", "RENAME INBOX INBOX/old")[-1].startswith("r3 OK")
    assert "INBOX/old" in names(imap)
    assert "* STATUS" in raw.command("s1", "STATUS INBOX/old (MESSAGES)")[0]
    assert raw.command("s2", "STATUS INBOX/old (MESSAGES)")[0].endswith("(MESSAGES 1)")
    assert raw.command("s3", "STATUS INBOX (MESSAGES)")[0].endswith("(MESSAGES 0)")
    assert raw.command("r3", "RENAME x/y Sent")[-1].startswith("r3 NO [ALREADYEXISTS]")


def test_rename_inbox_moves_its_messages(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one"))
    raw = imap.connect()
    raw.login()
    assert raw.command("r1", "RENAME INBOX Old")[-1].startswith("r1 OK")
    reply = raw.command("s1", "STATUS INBOX (MESSAGES)")
    assert reply[0] == '* STATUS "INBOX" (MESSAGES 0)'
    assert raw.command("s2", "STATUS Old (MESSAGES)")[0] == '* STATUS "Old" (MESSAGES 1)'


def test_create_special_use(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    assert raw.command("d1", "DELETE Junk")[-1].startswith("d1 OK")
    assert raw.command("c1", "CREATE Spam (USE (\\Junk))")[-1].startswith("c1 OK")
    assert '* LIST (\\HasNoChildren \\Junk) "/" "Spam"' in raw.command("l1", 'LIST "" "Spam"')
    assert raw.command("c2", "CREATE Spam2 (USE (\\Junk))")[-1].startswith("c2 NO [USEATTR]")


def test_subscribe_and_lsub(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    assert raw.command("s1", "SUBSCRIBE Sent")[-1].startswith("s1 OK")
    assert raw.command("s2", "SUBSCRIBE Gone")[-1].startswith("s2 OK")
    reply = raw.command("l1", 'LSUB "" "*"')
    assert '* LSUB () "/" "Sent"' in reply
    assert '* LSUB (\\Noselect) "/" "Gone"' in reply
    assert raw.command("u1", "UNSUBSCRIBE Sent")[-1].startswith("u1 OK")
    assert "Sent" not in imap.call(imap.store.list_subscriptions(imap.account_ids[DEMO]))


def test_status_items(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one"), flags=("\\Seen", "\\Deleted"))
    imap.deliver(DEMO, message("two"))
    info = imap.call(imap.store.get_mailbox(imap.account_ids[DEMO], "INBOX"))
    assert info is not None
    raw = imap.connect()
    raw.login()
    reply = raw.command("s1", "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT)")
    assert reply[0] == (
        f'* STATUS "INBOX" (MESSAGES 2 UIDNEXT {info.uidnext} UIDVALIDITY {info.uidvalidity} UNSEEN 1 '
        f"DELETED 1 SIZE {info.size} RECENT 2)"
    )
    assert raw.command("s2", "STATUS Nope (MESSAGES)")[-1].startswith("s2 NO [NONEXISTENT]")


def test_mutf7_names_and_utf8_after_enable(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    assert raw.command("c1", "CREATE &ZeVnLIqe-")[-1].startswith("c1 OK")  # 日本語
    assert "日本語" in names(imap)
    assert '* LIST (\\HasNoChildren) "/" "&ZeVnLIqe-"' in raw.command("l1", 'LIST "" "*"')
    raw.command("e1", "ENABLE UTF8=ACCEPT")
    assert '* LIST (\\HasNoChildren) "/" "日本語"' in raw.command("l2", 'LIST "" "*"')


def test_mailbox_names_in_another_unicode_form_name_the_same_mailbox(imap: ImapHarness) -> None:
    """RFC 9051 5.1: names are Net-Unicode (NFC); the decomposed form of a name is the same mailbox."""
    raw = imap.connect()
    raw.login()
    raw.command("e", "ENABLE IMAP4rev2")
    assert raw.command("c", 'CREATE "Cafe\u0301"')[-1].startswith("c OK")
    assert "Caf\u00e9" in names(imap)
    assert raw.command("s", 'SELECT "Caf\u00e9"')[-1].startswith("s OK")
    assert raw.command("c2", 'CREATE "Caf\u00e9"')[-1].startswith("c2 NO [ALREADYEXISTS]")
    raw.close()


def test_lsub_percent_lists_an_unsubscribed_parent_as_noselect(imap: ImapHarness) -> None:
    """RFC 3501 6.3.9: with "a/b/c" subscribed, LSUB "" "%" returns "a" flagged \\Noselect."""
    raw = imap.connect()
    raw.login()
    raw.command("c", "CREATE a/b/c")
    raw.command("u", "SUBSCRIBE a/b/c")
    reply = raw.command("l1", 'LSUB "" "%"')
    assert '* LSUB (\\Noselect) "/" "a"' in reply
    assert not any('"a/b' in line for line in reply)
    assert '* LSUB () "/" "a/b/c"' in raw.command("l2", 'LSUB "" "*"')
    raw.close()


def test_enable_reports_only_what_it_newly_enabled(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    assert raw.command("e1", "ENABLE IMAP4rev2 IMAP4rev2")[0] == "* ENABLED IMAP4rev2"
    assert raw.command("e2", "ENABLE IMAP4rev2 UTF8=ACCEPT")[0] == "* ENABLED UTF8=ACCEPT"
    assert raw.command("e3", "ENABLE IMAP4rev2")[0] == "* ENABLED"
    raw.close()
