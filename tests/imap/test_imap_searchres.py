"""SEARCHRES (RFC 5182): SEARCH RETURN (SAVE) keeps the result; `$` uses it in FETCH, STORE, COPY, SEARCH."""

from __future__ import annotations

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness, Transcript


def _setup(imap: ImapHarness, count: int = 4) -> Transcript:
    for i in range(count):
        imap.deliver(DEMO, message(f"msg {i}"), flags=("\\Flagged",) if i % 2 else ())
    raw = imap.connect()
    assert "SEARCHRES" in raw.greeting
    raw.login()
    raw.command("s", "SELECT INBOX")
    return raw


def test_saved_result_is_used_by_fetch_store_copy_and_search(imap: ImapHarness) -> None:
    raw = _setup(imap)
    # SAVE alone sends no ESEARCH response (RFC 5182 2.1)
    assert raw.command("a", "SEARCH RETURN (SAVE) FLAGGED") == ["a OK SEARCH completed"]
    reply = raw.command("b", "FETCH $ (UID)")
    assert reply[:-1] == ["* 2 FETCH (UID 2)", "* 4 FETCH (UID 4)"]
    assert raw.command("c", "UID FETCH $ (FLAGS)")[0] == "* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))"
    assert raw.command("d", "STORE $ +FLAGS.SILENT (\\Seen)")[-1].startswith("d OK")
    assert raw.command("e", "SEARCH SEEN")[0] == "* SEARCH 2 4"
    assert raw.command("f", "SEARCH $ SEEN")[0] == "* SEARCH 2 4"
    assert raw.command("g", "SEARCH UID $")[0] == "* SEARCH 2 4"
    reply = raw.command("h", "COPY $ Archive")
    assert reply[-1].startswith("h OK [COPYUID ")
    assert " 2,4 1:2]" in reply[-1]
    # SAVE with MIN keeps only the minimum (RFC 5182 2.4), and ESEARCH is sent for MIN
    assert raw.command("i", "UID SEARCH RETURN (SAVE MIN) ALL")[0] == '* ESEARCH (TAG "i") UID MIN 1'
    assert raw.command("j", "FETCH $ (UID)")[0] == "* 1 FETCH (UID 1)"
    assert raw.command("k", "MOVE $ Archive")[-1].startswith("k OK")
    # the moved (expunged) message drops out of the saved result
    assert raw.command("l", "UID FETCH $ (UID)") == ["l OK UID FETCH completed"]
    raw.close()


def test_saved_result_is_reset_by_select_unselect_and_failed_search(imap: ImapHarness) -> None:
    raw = _setup(imap)
    # Without a saved result "$" is the empty set
    assert raw.command("a", "FETCH $ (UID)") == ["a OK FETCH completed"]
    raw.command("b", "SEARCH RETURN (SAVE) ALL")
    assert len(raw.command("c", "FETCH $ (UID)")) == 5
    # RFC 9051 6.4.4.1: a SEARCH answered BAD leaves the saved result as it was ...
    assert raw.command("d", "SEARCH RETURN (SAVE) NOSUCHKEY 5")[-1].startswith("d BAD")
    assert len(raw.command("e", "FETCH $ (UID)")) == 5
    # ... one answered NO (an unknown charset) empties it
    assert raw.command("d2", "SEARCH RETURN (SAVE) CHARSET KOI8-R ALL")[-1].startswith("d2 NO [BADCHARSET")
    assert raw.command("e2", "FETCH $ (UID)") == ["e2 OK FETCH completed"]
    raw.command("f", "SEARCH RETURN (SAVE) ALL")
    raw.command("g", "EXAMINE INBOX")
    assert raw.command("h", "FETCH $ (UID)") == ["h OK FETCH completed"]
    raw.command("i", "SEARCH RETURN (SAVE) ALL")
    raw.command("j", "UNSELECT")
    raw.command("k", "SELECT INBOX")
    assert raw.command("l", "FETCH $ (UID)") == ["l OK FETCH completed"]
    raw.close()


def test_expunge_by_another_session_drops_out_of_the_saved_result(imap: ImapHarness) -> None:
    raw = _setup(imap, 3)
    other = imap.connect()
    other.login()
    other.command("s", "SELECT INBOX")
    raw.command("a", "SEARCH RETURN (SAVE) ALL")
    other.command("b", "STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.command("c", "EXPUNGE")
    reply = raw.command("d", "NOOP")
    assert "* 2 EXPUNGE" in reply
    assert raw.command("e", "UID SEARCH UID $")[0] == "* SEARCH 1 3"
    assert raw.command("f", "FETCH $ (UID)")[:-1] == ["* 1 FETCH (UID 1)", "* 2 FETCH (UID 3)"]
    raw.close()
    other.close()
