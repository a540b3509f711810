"""SEARCH / UID SEARCH / ESEARCH through a live session (evaluation: tests/store/test_store_search.py)."""

from __future__ import annotations

import datetime
import imaplib
import re
import time

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness
from tests.support.bounds import CALL_BOUND, bounded


def mail(sender: str, subject: str, body: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: demo@example.test\r\nSubject: {subject}\r\n"
        f"Date: Mon, 2 Mar 2026 10:00:00 +0100\r\n\r\n{body}\r\n"
    ).encode()


def test_search_from_the_index_with_sequence_numbers_uids_and_esearch(imap: ImapHarness) -> None:
    imap.deliver(DEMO, mail("alice@example.org", "Quarterly report", "numbers inside"), flags=("\\Seen",))
    imap.deliver(DEMO, mail("bob@example.org", "Lunch?", "the report can wait"))
    imap.deliver(DEMO, mail("Alice <alice@example.org>", "Re: lunch", "yes"))
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT INBOX")
    assert raw.command("a", "SEARCH FROM alice")[0] == "* SEARCH 1 3"
    assert raw.command("b", "SEARCH TEXT report")[0] == "* SEARCH 1 2"
    assert raw.command("c", "SEARCH SUBJECT LUNCH NOT FROM bob")[0] == "* SEARCH 3"
    assert raw.command("d", "SEARCH UNSEEN")[0] == "* SEARCH 2 3"
    assert raw.command("e", "SEARCH OR SEEN BODY yes")[0] == "* SEARCH 1 3"
    assert raw.command("f", "SEARCH SENTON 2-Mar-2026 2:3")[0] == "* SEARCH 2 3"
    assert raw.command("g", "SEARCH CHARSET UTF-8 SUBJECT lunch")[0] == "* SEARCH 2 3"
    reply = raw.command("h", "UID SEARCH RETURN (MIN MAX COUNT) FROM alice")
    assert reply[0] == '* ESEARCH (TAG "h") UID MIN 1 MAX 3 COUNT 2'
    assert raw.command("i", "SEARCH NOTHING")[-1].startswith("i BAD")
    assert raw.command("j", "SEARCH CHARSET KOI8-R FROM x")[-1].startswith(
        "j NO [BADCHARSET (UTF-8 US-ASCII)]"
    )
    assert raw.command("k", "SEARCH 9") == ["* SEARCH", "k OK SEARCH completed"]  # beyond: matches nothing
    # \Recent belongs to this session: all three are NEW until seen
    assert raw.command("m", "SEARCH NEW")[0] == "* SEARCH 2 3"
    raw.close()


def test_search_does_not_report_an_expunge_from_another_session(imap: ImapHarness) -> None:
    imap.deliver(DEMO, mail("a@example.org", "one", "x"))
    imap.deliver(DEMO, mail("a@example.org", "two", "x"))
    first, second = imap.connect(), imap.connect()
    first.login()
    second.login()
    first.command("s", "SELECT INBOX")
    second.command("s", "SELECT INBOX")
    second.command("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    second.command("x", "EXPUNGE")
    reply = first.command("a", "SEARCH ALL")
    assert not any("EXPUNGE" in line for line in reply)  # RFC 9051 7.5.1: not during SEARCH
    assert reply[0] == "* SEARCH 2"  # the expunged message no longer matches, numbers did not shift
    assert "* 1 EXPUNGE" in first.command("n", "NOOP")
    assert first.command("b", "SEARCH ALL")[0] == "* SEARCH 1"
    first.close()
    second.close()


def test_address_searches_ignore_comments_and_folding_in_addresses(imap: ImapHarness) -> None:
    """Issue 9 item 13: FROM/TO/CC/BCC match the addresses with comments and CFWS removed, as well as the
    header text as written."""
    imap.deliver(
        DEMO,
        b"From: <user-from (comment)@ (comment) domain.org>\r\n"
        b"To: Someone <some . one @ example (x) . net>\r\n"
        b"Cc: (lead) carol(c) @ (d) example.com (trail)\r\n"
        b"Bcc: Folded\r\n <folded-user\r\n @example.org>\r\nSubject: obfuscated\r\n\r\nbody\r\n",
    )
    imap.deliver(DEMO, mail("user-from@domain.org", "plain", "x"))
    imap.deliver(DEMO, mail("other@domain.org", "unrelated", "user-from@domain.org in the body"))
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT INBOX")
    assert raw.command("a", "SEARCH FROM user-from@domain.org")[0] == "* SEARCH 1 2"
    assert raw.command("b", 'SEARCH FROM "<user-from@domain.org>"')[0] == "* SEARCH 1"
    assert raw.command("c", 'SEARCH FROM "(comment)@ (comment)"')[0] == "* SEARCH 1"
    assert raw.command("d", "SEARCH TO some.one@example.net")[0] == "* SEARCH 1"
    assert raw.command("e", "SEARCH CC carol@example.com")[0] == "* SEARCH 1"
    assert raw.command("f", "SEARCH BCC folded-user@example.org")[0] == "* SEARCH 1"
    assert raw.command("g", "SEARCH HEADER FROM user-from@domain.org")[0] == "* SEARCH 1 2"
    assert raw.command("h", "SEARCH NOT FROM user-from@domain.org")[0] == "* SEARCH 3"
    assert raw.command("i", "SEARCH TO user-from@domain.org")[0] == "* SEARCH"
    raw.close()


def test_a_search_with_too_many_keys_is_bad_and_many_equal_keys_are_cheap(imap: ImapHarness) -> None:
    """A 60 KB line of 30,000 keys took 9 s (a subquery per key per message); now more than
    MAX_SEARCH_KEYS keys is BAD at once, and equal or UID-set keys are merged before they reach SQL."""
    for i in range(3):
        imap.deliver(DEMO, mail("a@example.org", f"s{i}", "x"))
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT INBOX")
    reply = bounded(CALL_BOUND, raw.command, "a", "SEARCH " + " ".join(["1"] * 30_000))
    assert reply[-1].startswith("a BAD")
    assert "too many search keys" in reply[-1]
    keys = " ".join(["1:*", "2:3", "NOT 3", "OR 2 1", "UID 1:*"] * 50)
    assert bounded(CALL_BOUND, raw.command, "b", "SEARCH " + keys)[0] == "* SEARCH 2"
    raw.close()


def test_within_finds_messages_by_their_age_in_seconds(imap: ImapHarness) -> None:
    """RFC 5032: YOUNGER and OLDER against the internal date APPEND gave."""
    client = imap.imaps()
    assert b"WITHIN" in client.capability()[1][0].split()
    old = time.time() - 3 * 86400
    assert client.append("INBOX", "", imaplib.Time2Internaldate(old), message("old"))[0] == "OK"
    assert client.append("INBOX", "", None, message("new"))[0] == "OK"
    client.select("INBOX")
    assert client.search(None, "YOUNGER", "3600") == ("OK", [b"2"])
    assert client.search(None, "OLDER", "86400") == ("OK", [b"1"])
    assert client.search(None, "OLDER", "604800") == ("OK", [b""])
    client.logout()


def test_savedate_is_when_the_message_was_put_in_the_mailbox(imap: ImapHarness) -> None:
    """RFC 8514: SAVEDATE is the APPEND's (or COPY's) moment, not the internal date APPEND was given;
    SAVEDBEFORE / SAVEDON / SAVEDSINCE search it; SAVEDATESUPPORTED finds every message."""
    client = imap.imaps()
    assert b"SAVEDATE" in client.capability()[1][0].split()
    old = time.time() - 30 * 86400
    before = time.time()
    assert client.append("INBOX", "", imaplib.Time2Internaldate(old), message("old"))[0] == "OK"
    client.select("INBOX")
    typ, data = client.fetch("1", "(INTERNALDATE SAVEDATE)")
    assert typ == "OK"
    found = re.search(
        rb'INTERNALDATE "([^"]+)" SAVEDATE "([^"]+)"', data[0] if isinstance(data[0], bytes) else b""
    )
    assert found is not None, data
    internal, saved = (
        datetime.datetime.strptime(found.group(n).decode().strip(), "%d-%b-%Y %H:%M:%S %z").timestamp()
        for n in (1, 2)
    )
    assert abs(internal - old) < 2
    assert saved >= before - 2
    today = time.strftime("%d-%b-%Y", time.gmtime())
    assert client.search(None, "SAVEDSINCE", today) == ("OK", [b"1"])
    assert client.search(None, "SAVEDBEFORE", today) == ("OK", [b""])
    assert client.search(None, "BEFORE", today) == ("OK", [b"1"])  # by its internal date it is old
    assert client.search(None, "SAVEDATESUPPORTED") == ("OK", [b"1"])
    client.logout()
