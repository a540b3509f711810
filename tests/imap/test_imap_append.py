"""APPEND: APPENDUID, flags and internal date kept, a zero-length message. Literals refused before they are
sent (TRYCREATE, over APPENDLIMIT): test_imap_connection.py."""

from __future__ import annotations

import imaplib
import time

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness


def test_append_keeps_flags_and_internal_date(imap: ImapHarness) -> None:
    client = imap.imaps()
    data = message("appended")
    when = imaplib.Time2Internaldate(time.mktime((2020, 3, 4, 5, 6, 7, 0, 0, -1)))
    typ, resp = client.append("Drafts", "(\\Draft $Label1)", when, data)
    assert typ == "OK"
    info = imap.call(imap.store.get_mailbox(imap.account_ids[DEMO], "Drafts"))
    assert info is not None
    messages = imap.call(imap.store.list_messages(info.id))
    assert len(messages) == 1
    assert resp[0] == f"[APPENDUID {info.uidvalidity} {messages[0].uid}] APPEND completed".encode()
    assert messages[0].flags == frozenset({"\\Draft", "$Label1"})
    assert abs(messages[0].internaldate - time.mktime((2020, 3, 4, 5, 6, 7, 0, 0, -1))) < 1
    assert imap.call(imap.store.read_content(messages[0].content_id)) == data
    client.logout()


def test_append_into_selected_mailbox_reports_exists(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    raw.command("s1", "SELECT INBOX")
    data = message("self")
    raw.send(b"a1 APPEND INBOX (\\Seen) {%d+}\r\n%s\r\n" % (len(data), data))
    reply = raw.until_tagged("a1")
    assert "* 1 EXISTS" in reply
    assert reply[-1].startswith("a1 OK [APPENDUID")


def test_a_zero_length_message_is_refused_and_cancels_a_multiappend(imap: ImapHarness) -> None:
    """RFC 3502 6.3.11: a zero-length message literal is an error (NO), and nothing of the command stays."""
    raw = imap.connect()
    raw.login()
    assert raw.command("a1", "APPEND INBOX {0+}\r\n")[-1].startswith("a1 NO")
    raw.send(b"a2 APPEND INBOX {5+}\r\nhello {0+}\r\n\r\n")
    assert raw.until_tagged("a2")[-1].startswith("a2 NO")
    assert imap.call(imap.store.list_messages(imap.mailbox_id(DEMO, "INBOX"))) == []
    assert raw.command("n", "NOOP")[-1] == "n OK NOOP completed"  # the connection is in step
    raw.close()
