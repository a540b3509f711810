"""SEARCH with message sequence numbers beyond the mailbox: in SEARCH a sequence set is a criterion, so such
numbers match nothing (OK, empty result); FETCH, STORE and COPY keep answering BAD for them (RFC 9051
section 9, `seq-number`)."""

from __future__ import annotations

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness


def test_search_beyond_the_mailbox_matches_nothing(imap: ImapHarness) -> None:
    for subject in ("one", "two", "three"):
        imap.deliver(DEMO, message(subject))
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT INBOX")
    assert raw.command("a1", "SEARCH RETURN () 1000") == ['* ESEARCH (TAG "a1")', "a1 OK SEARCH completed"]
    assert raw.command("a2", "SEARCH 1000") == ["* SEARCH", "a2 OK SEARCH completed"]
    assert raw.command("a3", "SEARCH 2:1000") == ["* SEARCH 2 3", "a3 OK SEARCH completed"]
    assert raw.command("a4", "SEARCH 1000:2") == ["* SEARCH 2 3", "a4 OK SEARCH completed"]
    assert raw.command("a5", "SEARCH OR 1000 1") == ["* SEARCH 1", "a5 OK SEARCH completed"]
    assert raw.command("a6", "SEARCH NOT 4") == ["* SEARCH 1 2 3", "a6 OK SEARCH completed"]
    reply = raw.command("a7", "SEARCH RETURN (COUNT) 4:*")
    assert reply == ['* ESEARCH (TAG "a7") COUNT 1', "a7 OK SEARCH completed"]  # 4:* is 3:4
    assert raw.command("a8", "UID SEARCH 1000") == ["* SEARCH", "a8 OK UID SEARCH completed"]
    # FETCH and STORE still refuse numbers beyond the mailbox, and the session goes on
    assert raw.command("f1", "FETCH 1000 FLAGS")[-1].startswith("f1 BAD")
    assert raw.command("f2", "STORE 4 +FLAGS (\\Seen)")[-1].startswith("f2 BAD")
    assert raw.command("n1", "NOOP")[-1] == "n1 OK NOOP completed"
    raw.close()


def test_search_in_an_empty_mailbox_finds_nothing(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT Trash")
    assert raw.command("a1", "SEARCH 1") == ["* SEARCH", "a1 OK SEARCH completed"]
    assert raw.command("a2", "SEARCH 1:*") == ["* SEARCH", "a2 OK SEARCH completed"]
    raw.close()
