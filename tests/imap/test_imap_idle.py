"""IDLE (RFC 2177, RFC 9051 6.3.13) on real connections: a delivery or another connection wakes the idler,
which reports the change at once; DONE ends it. (IDLE as a state of the core: test_imap_core.py.)"""

from __future__ import annotations

from tests.imap.conftest import DEMO, ImapServer, Raw, message


def test_delivery_during_idle_is_reported(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
    raw.login()
    raw.command("s1", "SELECT INBOX")
    raw.send(b"i1 IDLE\r\n")
    assert raw.line() == "+ idling"
    imap_server.deliver(DEMO, message("during idle"))
    assert raw.line() == "* 1 EXISTS"  # the socket timeout bounds the wait; no sleeps
    assert raw.line() == "* 1 RECENT"
    raw.send(b"DONE\r\n")
    assert raw.until_tagged("i1")[-1] == "i1 OK IDLE terminated"


def test_expunge_and_flags_from_other_session_during_idle(imap_server: ImapServer) -> None:
    imap_server.deliver(DEMO, message("one"))
    imap_server.deliver(DEMO, message("two"))
    idler, other = Raw(imap_server), Raw(imap_server)
    idler.login()
    other.login()
    idler.command("s1", "SELECT INBOX")
    other.command("s1", "SELECT INBOX")
    idler.send(b"i1 IDLE\r\n")
    assert idler.line() == "+ idling"
    other.command("t1", "STORE 2 +FLAGS (\\Seen)")
    assert idler.line().startswith("* 2 FETCH (UID 2 FLAGS (\\Seen")
    other.command("t2", "STORE 1 +FLAGS (\\Deleted)")
    assert idler.line().startswith("* 1 FETCH (UID 1 FLAGS (\\Deleted")
    other.command("x1", "EXPUNGE")
    assert idler.line() == "* 1 EXPUNGE"
    idler.send(b"DONE\r\n")
    assert idler.until_tagged("i1")[-1].startswith("i1 OK")


def test_idle_without_done_is_bad_and_idle_in_wrong_state(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
    assert raw.command("i0", "IDLE")[-1].startswith("i0 BAD")
    raw.login()
    raw.send(b"i1 IDLE\r\n")
    assert raw.line() == "+ idling"
    raw.send(b"NOTDONE\r\n")
    assert raw.until_tagged("i1")[-1].startswith("i1 BAD")
    assert raw.command("n1", "NOOP")[-1].startswith("n1 OK")
