"""EXPUNGE, UID EXPUNGE (UIDPLUS), CLOSE (silent expunge) and UNSELECT (none)."""

from __future__ import annotations

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness, Transcript


def inbox_uids(server: ImapHarness) -> list[int]:
    return [m.uid for m in server.call(server.store.list_messages(server.mailbox_id(DEMO, "INBOX")))]


def setup_three(server: ImapHarness) -> Transcript:
    for subject in ("one", "two", "three"):
        server.deliver(DEMO, message(subject))
    raw = server.connect()
    raw.login()
    raw.command("s1", "SELECT INBOX")
    raw.command("t1", "STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    return raw


def test_expunge_reports_and_removes_deleted(imap: ImapHarness) -> None:
    raw = setup_three(imap)
    reply = raw.command("x1", "EXPUNGE")
    assert reply == ["* 2 EXPUNGE", "* 1 EXPUNGE", "x1 OK EXPUNGE completed"]
    assert inbox_uids(imap) == [3]


def test_uid_expunge_only_touches_the_given_uids(imap: ImapHarness) -> None:
    raw = setup_three(imap)
    assert raw.command("x1", "UID EXPUNGE 2:3") == ["* 2 EXPUNGE", "x1 OK UID EXPUNGE completed"]
    assert inbox_uids(imap) == [1, 3]


def test_close_expunges_silently_and_unselect_does_not(imap: ImapHarness) -> None:
    raw = setup_three(imap)
    assert raw.command("u1", "UNSELECT") == ["u1 OK UNSELECT completed"]
    assert inbox_uids(imap) == [1, 2, 3]
    raw.command("s2", "SELECT INBOX")
    assert raw.command("c1", "CLOSE") == ["c1 OK CLOSE completed"]
    assert inbox_uids(imap) == [3]
    assert raw.command("c2", "CLOSE")[-1].startswith("c2 BAD")


def test_examine_is_read_only(imap: ImapHarness) -> None:
    raw = setup_three(imap)
    raw.command("e1", "EXAMINE INBOX")
    assert raw.command("x1", "EXPUNGE")[-1].startswith("x1 NO")
    assert raw.command("t2", "STORE 3 +FLAGS (\\Seen)")[-1].startswith("t2 NO")
    raw.command("c1", "CLOSE")
    assert inbox_uids(imap) == [1, 2, 3]
