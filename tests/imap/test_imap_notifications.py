"""Changes made by another session (or by delivery) reach a selected session: EXISTS, FETCH FLAGS, EXPUNGE,
with EXPUNGE held back during FETCH, STORE and SEARCH (RFC 9051 section 7.5.1)."""

from __future__ import annotations

from tests.imap.conftest import DEMO, ImapServer, Raw, message


def test_append_in_one_session_shows_exists_in_the_other_on_noop(imap_server: ImapServer) -> None:
    watcher, writer = Raw(imap_server), Raw(imap_server)
    watcher.login()
    writer.login()
    assert "* 0 EXISTS" in watcher.command("s1", "SELECT INBOX")
    data = message("hello")
    writer.send(b"a1 APPEND INBOX {%d}\r\n" % len(data))
    assert writer.line().startswith("+")
    writer.send(data + b"\r\n")
    assert writer.until_tagged("a1")[-1].startswith("a1 OK [APPENDUID")
    reply = watcher.command("n1", "NOOP")
    assert "* 1 EXISTS" in reply and "* 1 RECENT" in reply


def test_expunge_from_other_session_is_not_reported_during_fetch_but_on_noop(imap_server: ImapServer) -> None:
    for subject in ("one", "two", "three"):
        imap_server.deliver(DEMO, message(subject))
    watcher, other = Raw(imap_server), Raw(imap_server)
    watcher.login()
    other.login()
    watcher.command("s1", "SELECT INBOX")
    other.command("s1", "SELECT INBOX")
    other.command("t1", "STORE 2 +FLAGS (\\Deleted)")
    assert other.command("x1", "EXPUNGE")[0] == "* 2 EXPUNGE"
    reply = watcher.command("f1", "FETCH 1:3 (UID)")
    assert not any("EXPUNGE" in line for line in reply)
    assert "* 1 FETCH (UID 1)" in reply and "* 3 FETCH (UID 3)" in reply  # numbers did not shift
    reply = watcher.command("n1", "NOOP")
    assert "* 2 EXPUNGE" in reply
    assert watcher.command("f2", "FETCH 2 (UID)")[0] == "* 2 FETCH (UID 3)"


def test_uid_fetch_may_report_expunges_and_flag_changes_are_fetch_flags(imap_server: ImapServer) -> None:
    for subject in ("one", "two"):
        imap_server.deliver(DEMO, message(subject))
    watcher, other = Raw(imap_server), Raw(imap_server)
    watcher.login()
    other.login()
    watcher.command("s1", "SELECT INBOX")
    other.command("s1", "SELECT INBOX")
    other.command("t1", "STORE 2 +FLAGS.SILENT (\\Flagged)")
    assert "* 2 FETCH (FLAGS (\\Flagged \\Recent))" in watcher.command("n1", "NOOP")
    other.command("t2", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.command("x1", "EXPUNGE")
    reply = watcher.command("f1", "UID FETCH 1:* (FLAGS)")
    assert "* 1 EXPUNGE" in reply


def test_deliver_while_selected_is_seen_on_check(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
    raw.login()
    raw.command("s1", "SELECT INBOX")
    imap_server.deliver(DEMO, message("later"))
    assert "* 1 EXISTS" in raw.command("c1", "CHECK")
