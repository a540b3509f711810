"""IMAP4rev2 (RFC 9051) for clients that ENABLE it, IMAP4rev1 for the others; UTF8=ACCEPT (RFC 6855)."""

from __future__ import annotations

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness, Transcript


def caps(raw: Transcript) -> list[str]:
    return raw.greeting.split("[CAPABILITY ")[1].split("]")[0].split()


def test_rev2_is_advertised_by_default(imap: ImapHarness) -> None:
    advertised = caps(imap.connect())
    for cap in ("IMAP4rev1", "IMAP4rev2", "ESEARCH", "SEARCHRES", "BINARY", "LIST-EXTENDED", "LIST-STATUS"):
        assert cap in advertised


def test_rev2_can_be_turned_off(imap_rev1: ImapHarness) -> None:
    raw = imap_rev1.connect()
    assert "IMAP4rev2" not in caps(raw)
    raw.login()
    assert raw.command("e", "ENABLE IMAP4rev2")[0] == "* ENABLED"


def test_rev2_client_gets_esearch_and_no_recent_while_rev1_client_keeps_both(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one"))
    imap.deliver(DEMO, message("two"), flags=("\\Seen",))
    rev1, rev2 = imap.connect(), imap.connect()
    rev1.login()
    rev2.login()
    assert rev2.command("e", "ENABLE IMAP4rev2")[0] == "* ENABLED IMAP4rev2"
    reply = rev2.command("s", "SELECT INBOX")
    assert not any("RECENT" in line or "UNSEEN" in line for line in reply)
    assert '* LIST (\\HasNoChildren) "/" "INBOX"' in reply
    assert rev2.command("a", "SEARCH UNSEEN")[0] == '* ESEARCH (TAG "a") ALL 1'
    assert rev2.command("b", "UID SEARCH ALL")[0] == '* ESEARCH (TAG "b") UID ALL 1:2'
    assert rev2.command("c", "SEARCH SUBJECT nothing")[0] == '* ESEARCH (TAG "c")'
    assert rev2.command("d", "FETCH 1 FLAGS")[0] == "* 1 FETCH (FLAGS ())"
    assert "RECENT" not in rev2.command("f", "STATUS Drafts (MESSAGES RECENT)")[0]
    reply = rev1.command("s", "SELECT INBOX")
    assert "* 2 RECENT" in reply  # the rev2 session did not claim \\Recent; this rev1 one does
    assert rev1.command("a", "SEARCH UNSEEN")[0] == "* SEARCH 1"
    rev1.close()
    rev2.close()


def test_utf8_accept_names_strings_and_append_utf8(imap: ImapHarness) -> None:
    raw = imap.connect()
    assert "UTF8=ACCEPT" in caps(raw)
    raw.login()
    data = "Subject: café\r\nFrom: josé@exämple.test\r\n\r\nhi\r\n".encode()
    # APPEND UTF8 before ENABLE is refused without reading the literal
    raw.send(b"a0 APPEND INBOX UTF8 (~{%d}\r\n" % len(data))
    assert raw.line().startswith("a0 BAD")
    assert raw.command("e", "ENABLE UTF8=ACCEPT")[0] == "* ENABLED UTF8=ACCEPT"
    assert raw.command("c", 'CREATE "Ünïcode"')[-1].startswith("c OK")
    assert '* LIST (\\HasNoChildren) "/" "Ünïcode"' in raw.command("l", 'LIST "" "Ü*"')
    raw.send(b'a1 APPEND "\xc3\x9cn\xc3\xafcode" UTF8 (~{%d+}\r\n%s)\r\n' % (len(data), data))
    assert raw.until_tagged("a1")[-1].startswith("a1 OK [APPENDUID ")
    raw.command("s", 'SELECT "Ünïcode"')
    assert raw.command("f", 'SEARCH SUBJECT "café"')[0] == "* SEARCH 1"
    assert '"café"' in raw.command("g", "FETCH 1 ENVELOPE")[0]
    raw.close()


def test_search_with_a_charset_after_utf8_accept_is_bad(imap: ImapHarness) -> None:
    """RFC 6855 3 (erratum 4029): after ENABLE UTF8=ACCEPT a SEARCH must not name a charset; an IMAP4rev2
    client may still say CHARSET UTF-8 (RFC 9051 6.4.4)."""
    imap.deliver(DEMO, message("one"))
    utf8, rev2 = imap.connect(), imap.connect()
    for raw in (utf8, rev2):
        raw.login()
    utf8.command("e", "ENABLE UTF8=ACCEPT")
    rev2.command("e", "ENABLE IMAP4rev2")
    for raw in (utf8, rev2):
        raw.command("s", "SELECT INBOX")
    assert utf8.command("a", "SEARCH CHARSET UTF-8 ALL")[-1].startswith("a BAD")
    assert utf8.command("b", "SEARCH ALL")[0] == "* SEARCH 1"
    assert rev2.command("a", "SEARCH CHARSET UTF-8 ALL")[0] == '* ESEARCH (TAG "a") ALL 1'
