"""APPEND: APPENDUID, flags and internal date kept, TRYCREATE, literal over APPENDLIMIT refused unread."""

from __future__ import annotations

import imaplib
import time

from tests.imap.conftest import DEMO, ImapServer, Raw, message


def test_append_keeps_flags_and_internal_date(imap_server: ImapServer) -> None:
    client = imap_server.imaps()
    data = message("appended")
    when = imaplib.Time2Internaldate(time.mktime((2020, 3, 4, 5, 6, 7, 0, 0, -1)))
    typ, resp = client.append("Drafts", "(\\Draft $Label1)", when, data)
    assert typ == "OK"
    info = imap_server.call(imap_server.store.get_mailbox(imap_server.account_ids[DEMO], "Drafts"))
    assert info is not None
    messages = imap_server.call(imap_server.store.list_messages(info.id))
    assert len(messages) == 1
    assert resp[0] == f"[APPENDUID {info.uidvalidity} {messages[0].uid}] APPEND completed".encode()
    assert messages[0].flags == frozenset({"\\Draft", "$Label1"})
    assert abs(messages[0].internaldate - time.mktime((2020, 3, 4, 5, 6, 7, 0, 0, -1))) < 1
    assert imap_server.call(imap_server.store.read_content(messages[0].content_id)) == data
    client.logout()


def test_append_to_missing_mailbox_is_trycreate_without_reading_the_literal(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
    raw.login()
    raw.send(b"a1 APPEND Nope {10}\r\n")
    assert raw.line().startswith("a1 NO [TRYCREATE]")
    assert raw.command("a2", "NOOP")[-1].startswith("a2 OK")
    # A non-synchronizing literal is skipped, and its octets are never read as commands.
    raw.send(b"a3 APPEND Nope {12+}\r\nx4 LOGOUT\r\n\r\n")
    assert raw.until_tagged("a3")[-1].startswith("a3 NO [TRYCREATE]")
    assert raw.command("a4", "NOOP")[-1].startswith("a4 OK")


def test_literal_over_the_limit_is_refused_before_it_is_read(small_limit_server: ImapServer) -> None:
    raw = Raw(small_limit_server)
    assert "APPENDLIMIT=2000" in raw.greeting
    raw.login()
    raw.send(b"a1 APPEND INBOX {5000}\r\n")
    assert raw.line().startswith("a1 NO [TOOBIG]")
    assert raw.command("a2", "NOOP")[-1].startswith("a2 OK")


def test_append_into_selected_mailbox_reports_exists(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
    raw.login()
    raw.command("s1", "SELECT INBOX")
    data = message("self")
    raw.send(b"a1 APPEND INBOX (\\Seen) {%d+}\r\n%s\r\n" % (len(data), data))
    reply = raw.until_tagged("a1")
    assert "* 1 EXISTS" in reply and reply[-1].startswith("a1 OK [APPENDUID")


def test_a_zero_length_message_is_refused_and_cancels_a_multiappend(imap_server: ImapServer) -> None:
    """RFC 3502 6.3.11: a zero-length message literal is an error (NO), and nothing of the command stays."""
    raw = Raw(imap_server)
    raw.login()
    assert raw.command("a1", "APPEND INBOX {0+}\r\n")[-1].startswith("a1 NO")
    raw.send(b"a2 APPEND INBOX {5+}\r\nhello {0+}\r\n\r\n")
    assert raw.until_tagged("a2")[-1].startswith("a2 NO")
    assert imap_server.call(imap_server.store.list_messages(imap_server.mailbox_id(DEMO, "INBOX"))) == []
    assert raw.command("n", "NOOP")[-1] == "n OK NOOP completed"  # the connection is in step
    raw.close()
