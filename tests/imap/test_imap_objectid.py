"""OBJECTID (RFC 8474; docs/decisions/0062): MAILBOXID from CREATE, SELECT and STATUS, kept by RENAME and new
for a mailbox made again under the same name; EMAILID shared by copies and moves, THREADID shared by a
conversation; SEARCH EMAILID and THREADID; ids this server never gave match nothing."""

from __future__ import annotations

import re

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness, Transcript


def _code(lines: list[str], name: str) -> str:
    found = [m.group(1) for line in lines if (m := re.search(rf"\[{name} \(([A-Za-z0-9_-]+)\)\]", line))]
    assert len(found) == 1, lines
    return found[0]


def _item(line: str, name: str) -> str:
    match = re.search(rf"{name} \(([A-Za-z0-9_-]+)\)", line)
    assert match is not None, line
    return match.group(1)


def _session(imap: ImapHarness) -> Transcript:
    raw = imap.connect()
    raw.login()
    return raw


def test_mailboxid_is_given_at_create_and_select_kept_by_rename_and_new_for_a_new_mailbox(
    imap: ImapHarness,
) -> None:
    raw = _session(imap)
    assert "OBJECTID" in raw.command("c", "CAPABILITY")[0].split()
    created = raw.command("c1", "CREATE Projects")
    mailboxid = _code(created, "MAILBOXID")
    assert _code(raw.command("s1", "SELECT Projects"), "MAILBOXID") == mailboxid
    raw.command("u", "UNSELECT")
    assert raw.command("r", "RENAME Projects Work")[-1].startswith("r OK")
    status = raw.command("st", "STATUS Work (MAILBOXID MESSAGES)")
    assert status[0] == f'* STATUS "Work" (MAILBOXID ({mailboxid}) MESSAGES 0)'
    again = _code(raw.command("c2", "CREATE Projects"), "MAILBOXID")
    assert again != mailboxid
    inbox = _code(raw.command("s2", "EXAMINE INBOX"), "MAILBOXID")
    assert len({inbox, again, mailboxid}) == 3
    raw.close()


def test_emailid_is_shared_by_copies_and_threadid_by_a_conversation(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("Lunch?", "body\r\n"))  # Message-ID: <Lunch?@remote.test>
    reply = b"In-Reply-To: <Lunch?@remote.test>\r\n\r\n"
    imap.deliver(DEMO, message("Re: Lunch?", "yes\r\n").replace(b"\r\n\r\n", b"\r\n" + reply, 1))
    imap.deliver(DEMO, message("Other", "no\r\n"))
    raw = _session(imap)
    raw.command("s", "SELECT INBOX")
    fetched = raw.command("f", "FETCH 1:3 (EMAILID THREADID)")
    emailids = [_item(line, "EMAILID") for line in fetched[:-1]]
    threadids = [_item(line, "THREADID") for line in fetched[:-1]]
    assert len(set(emailids)) == 3
    assert threadids[0] == threadids[1] != threadids[2]
    assert raw.command("cp", "COPY 1 Archive")[-1].startswith("cp OK")
    raw.command("mv", "MOVE 3 Archive")
    raw.command("a", "SELECT Archive")
    archived = raw.command("f2", "UID FETCH 1:* (EMAILID THREADID)")
    assert [_item(line, "EMAILID") for line in archived[:-1]] == [emailids[0], emailids[2]]
    assert [_item(line, "THREADID") for line in archived[:-1]] == [threadids[0], threadids[2]]
    raw.command("i", "SELECT INBOX")
    assert raw.command("q1", f"SEARCH EMAILID {emailids[1]}")[0] == "* SEARCH 2"
    assert raw.command("q2", f"UID SEARCH THREADID {threadids[0]}")[0] == "* SEARCH 1 2"
    assert raw.command("q3", "SEARCH EMAILID Z99")[0] == "* SEARCH"  # never given by this server
    assert raw.command("q4", f"SEARCH THREADID {emailids[0]}")[0] == "* SEARCH"  # an id of another kind
    assert raw.command("q5", "SEARCH EMAILID bad!id")[-1].startswith("q5 BAD")
    raw.close()
