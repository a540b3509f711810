"""SELECT / EXAMINE responses, \\Recent for exactly one session, CLOSED (IMAP4rev2)."""

from __future__ import annotations

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness


def test_select_responses(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one"), flags=("\\Seen",))
    imap.deliver(DEMO, message("two"))
    info = imap.call(imap.store.get_mailbox(imap.account_ids[DEMO], "INBOX"))
    assert info is not None
    raw = imap.connect()
    raw.login()
    reply = raw.command("s1", "SELECT INBOX")
    assert reply[0] == "* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)"
    assert (
        "* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft \\*)] Flags permitted" in reply
    )
    assert "* 2 EXISTS" in reply
    assert "* 2 RECENT" in reply
    assert "* OK [UNSEEN 2] First unseen message" in reply
    assert f"* OK [UIDVALIDITY {info.uidvalidity}] UIDs valid" in reply
    assert f"* OK [UIDNEXT {info.uidnext}] Predicted next UID" in reply
    assert reply[-1] == "s1 OK [READ-WRITE] SELECT completed"
    reply = raw.command("s2", "EXAMINE inbox")
    assert "* OK [PERMANENTFLAGS ()] No permanent flags in a read-only mailbox" in reply
    assert reply[-1] == "s2 OK [READ-ONLY] EXAMINE completed"
    assert raw.command("s3", "SELECT Nope")[-1].startswith("s3 NO [NONEXISTENT]")
    assert raw.command("s4", "FETCH 1 FLAGS")[-1].startswith("s4 BAD")  # the failed SELECT deselected


def test_recent_goes_to_exactly_one_session(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one"))
    first, second = imap.connect(), imap.connect()
    first.login()
    second.login()
    assert "* 1 RECENT" in first.command("s1", "SELECT INBOX")
    assert "* 0 RECENT" in second.command("s1", "SELECT INBOX")
    assert "\\Recent" in first.command("f1", "FETCH 1 FLAGS")[0]
    assert "\\Recent" not in second.command("f1", "FETCH 1 FLAGS")[0]
    imap.deliver(DEMO, message("two"))
    reply_first = first.command("n1", "NOOP")
    reply_second = second.command("n1", "NOOP")
    assert "* 2 EXISTS" in reply_first
    assert "* 2 EXISTS" in reply_second
    assert "* 2 RECENT" in reply_first
    assert "* 0 RECENT" in reply_second


def test_examine_reports_recent_without_claiming_it(imap: ImapHarness) -> None:
    """RFC 3501 2.3.2: \\Recent is cleared for later sessions only by a read-write session; EXAMINE shows the
    count (and the flag) and a SELECT after it still sees the messages as recent."""
    imap.deliver(DEMO, message("one"))
    imap.deliver(DEMO, message("two"))
    examiner, selector = imap.connect(), imap.connect()
    examiner.login()
    selector.login()
    reply = examiner.command("e1", "EXAMINE INBOX")
    assert "* 2 RECENT" in reply
    assert "\\Recent" in examiner.command("f1", "FETCH 1 FLAGS")[0]
    assert examiner.command("s1", "SEARCH RECENT")[0] == "* SEARCH 1 2"
    assert "* 2 RECENT" in examiner.command("e2", "EXAMINE INBOX")  # still nobody's
    # a message arriving while examined is recent in the read-only session, and still unclaimed
    imap.deliver(DEMO, message("three"))
    reply = examiner.command("n1", "NOOP")
    assert "* 3 EXISTS" in reply
    assert "* 3 RECENT" in reply
    assert "* 3 RECENT" in selector.command("s2", "SELECT INBOX")
    assert "* 0 RECENT" in examiner.command("e3", "EXAMINE INBOX")  # claimed by the SELECT now
    assert "* 0 RECENT" in selector.command("s3", "SELECT INBOX")
    imap.deliver(DEMO, message("four"))
    assert "* 1 RECENT" in examiner.command("e4", "EXAMINE INBOX")


def test_rev2_select_has_no_recent_and_sends_closed(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    raw.command("e1", "ENABLE IMAP4rev2")
    reply = raw.command("s1", "SELECT INBOX")
    assert not any("RECENT" in line for line in reply)
    assert '* LIST (\\HasNoChildren) "/" "INBOX"' in reply  # accurate attributes (RFC 9051 6.3.2)
    reply = raw.command("s2", "SELECT Sent")
    assert reply[0] == "* OK [CLOSED] Previous mailbox closed"
