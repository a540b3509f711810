"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 section 4; docs/decisions/0070) through the protocol: PARTIAL
(4.4), CONTEXT (4.2), UPDATE with its ADDTO and REMOVEFROM (4.3) after APPEND, delivery, STORE, EXPUNGE and
MOVE by the same and by another session, in the order EXISTS and EXPUNGE require, CANCELUPDATE, the limits
(NOUPDATE) and the errors; SAVE with PARTIAL (RFC 9394 3.2), UIDONLY and QRESYNC; and a property test: for
random changes, the updates applied to the first result always give what a fresh SEARCH or SORT gives."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.imap import commands_context
from postoffice.imap.parser import CancelUpdate, CommandReader, ParseError, Search, Sort
from postoffice.store import StoreError
from tests.imap.conftest import DEMO, OTHER
from tests.imap.transcript import ImapHarness, Transcript, ok


def mail(subject: str, day: int = 1, body: str = "body") -> bytes:
    return (
        f"From: Sender <sender@remote.test>\r\nTo: {DEMO}\r\nSubject: {subject}\r\n"
        f"Date: Tue, {day:02d} Dec 2026 12:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


def selected(imap: ImapHarness, mailbox: str = "INBOX", user: str = DEMO) -> Transcript:
    raw = imap.connect()
    raw.login(user)
    assert raw.command("s", f"SELECT {mailbox}")[-1].startswith("s OK")
    return raw


def fill(imap: ImapHarness, *subjects: str) -> list[int]:
    return [imap.deliver(DEMO, mail(subject, day=i + 1)) for i, subject in enumerate(subjects)]


def esearch(reply: list[str], tag: str) -> list[str]:
    """The ESEARCH responses correlated to `tag` in a reply, without their `* ESEARCH (TAG "tag")` head."""
    head = f'* ESEARCH (TAG "{tag}")'
    return [line[len(head) :].strip() for line in reply if line.startswith(head)]


def test_context_search_and_sort_are_advertised_but_not_partial(imap: ImapHarness) -> None:
    raw = imap.connect()
    caps = raw.command("c", "CAPABILITY")[0].split()
    assert {"CONTEXT=SEARCH", "CONTEXT=SORT", "ESEARCH", "ESORT", "SORT"} <= set(caps)
    assert "PARTIAL" not in caps  # RFC 9394 is not offered (decision 0070)
    raw.close()


# ---------------------------------------------------------------------------------------------- PARTIAL


def test_partial_gives_the_results_at_those_positions(imap: ImapHarness) -> None:
    fill(imap, *"abcdefg")
    raw = selected(imap)
    ok(raw, "f", "STORE 2,4 +FLAGS.SILENT (\\Seen)")  # unseen: 1 3 5 6 7
    assert esearch(ok(raw, "a", "SEARCH RETURN (PARTIAL 2:3) UNSEEN"), "a") == ["PARTIAL (2:3 3,5)"]
    # RFC 5267 5: 500:400 is 400:500; the range is given back as it was sent
    assert esearch(ok(raw, "b", "SEARCH RETURN (PARTIAL 3:2) UNSEEN"), "b") == ["PARTIAL (3:2 3,5)"]
    # beyond the results: what there is, or NIL (4.4)
    assert esearch(ok(raw, "c", "SEARCH RETURN (PARTIAL 4:100) UNSEEN"), "c") == ["PARTIAL (4:100 6:7)"]
    assert esearch(ok(raw, "d", "SEARCH RETURN (PARTIAL 6:9) UNSEEN"), "d") == ["PARTIAL (6:9 NIL)"]
    assert esearch(ok(raw, "e", "SEARCH RETURN (PARTIAL 1:1) DRAFT"), "e") == ["PARTIAL (1:1 NIL)"]
    big = "SEARCH RETURN (PARTIAL 4294967295:4294967294) ALL"
    assert esearch(ok(raw, "g", big), "g") == ["PARTIAL (4294967295:4294967294 NIL)"]
    # with the other options, which do not interact (4.1); UID SEARCH gives UIDs
    reply = ok(raw, "h", "UID SEARCH RETURN (MIN PARTIAL 1:2 COUNT MAX) UNSEEN")
    assert esearch(reply, "h") == ["UID MIN 1 MAX 7 COUNT 5 PARTIAL (1:2 1,3)"]


def test_partial_of_a_sort_is_in_the_sort_order(imap: ImapHarness) -> None:
    fill(imap, "d", "b", "e", "a", "c")
    raw = selected(imap)
    assert esearch(ok(raw, "a", "SORT RETURN (ALL) (SUBJECT) UTF-8 ALL"), "a") == ["ALL 4,2,5,1,3"]
    assert esearch(ok(raw, "b", "SORT RETURN (PARTIAL 2:4) (SUBJECT) UTF-8 ALL"), "b") == [
        "PARTIAL (2:4 2,5,1)"
    ]
    reply = ok(raw, "c", "UID SORT RETURN (PARTIAL 4:9 COUNT) (REVERSE SUBJECT) UTF-8 ALL")
    assert esearch(reply, "c") == ["UID COUNT 5 PARTIAL (4:9 2,4)"]


@pytest.mark.parametrize(
    "command",
    [
        "SEARCH RETURN (PARTIAL 1:5 ALL) ALL",  # RFC 5267 4.4: one PARTIAL or one ALL
        "SEARCH RETURN (ALL PARTIAL 1:5) ALL",
        "SEARCH RETURN (PARTIAL 1:5 PARTIAL 6:9) ALL",
        "SEARCH RETURN (ALL ALL) ALL",
        "SEARCH RETURN (UPDATE UPDATE) ALL",
        "SEARCH RETURN (PARTIAL) ALL",  # partial-range = nz-number ":" nz-number
        "SEARCH RETURN (PARTIAL 0:5) ALL",
        "SEARCH RETURN (PARTIAL 1:*) ALL",
        "SEARCH RETURN (PARTIAL 5) ALL",
        'SEARCH RETURN (PARTIAL "1:5") ALL',
        "SEARCH RETURN (PARTIAL 1:4294967296) ALL",
        "SEARCH RETURN (PARTIAL 01:5) ALL",
        "SEARCH RETURN (PARTIAL -1:-5) ALL",  # RFC 9394's last-results form: not offered
        "SEARCH RETURN (PARTIAL -1:5) ALL",
        "SORT RETURN (PARTIAL 1:5 ALL) (DATE) UTF-8 ALL",
        "SORT RETURN (PARTIAL 1:0) (DATE) UTF-8 ALL",
        "SEARCH RETURN (FOO) ALL",
        "CANCELUPDATE",  # RFC 5267 5: 1*(SP quoted)
        "CANCELUPDATE a",
        'CANCELUPDATE "a" b',
        'CANCELUPDATE "a" ',
    ],
)
def test_bad_return_options_and_cancelupdate_forms_are_bad(imap: ImapHarness, command: str) -> None:
    fill(imap, "a")
    raw = selected(imap)
    reply = raw.command("x", command)
    assert reply[-1].startswith("x BAD"), reply
    assert not esearch(reply, "x")
    assert ok(raw, "n", "NOOP")[-1] == "n OK NOOP completed"  # the session goes on
    assert imap.failures() == []


def test_context_is_a_hint_that_changes_nothing(imap: ImapHarness) -> None:
    fill(imap, "a", "b", "c")
    raw = selected(imap)
    assert esearch(ok(raw, "a", "SEARCH RETURN (CONTEXT) ALL"), "a") == ["ALL 1:3"]  # as RETURN ()
    assert esearch(ok(raw, "b", "SEARCH RETURN (CONTEXT COUNT) ALL"), "b") == ["COUNT 3"]
    assert esearch(ok(raw, "c", "UID SORT RETURN (CONTEXT) (REVERSE SUBJECT) UTF-8 ALL"), "c") == [
        "UID ALL 3,2,1"
    ]
    imap.deliver(DEMO, mail("d"))
    assert not any("ESEARCH" in line for line in ok(raw, "n", "NOOP"))  # no updates without UPDATE


# ------------------------------------------------------------------------------------ UPDATE: SEARCH


def test_update_search_after_append_in_the_same_session_comes_after_exists(imap: ImapHarness) -> None:
    fill(imap, "a", "b")
    raw = selected(imap)
    assert esearch(ok(raw, "u", "SEARCH RETURN (UPDATE) UNSEEN"), "u") == ["ALL 1:2"]  # UPDATE alone: ALL
    data = mail("c")
    raw.send(b"p APPEND INBOX {%d}\r\n" % len(data))
    assert raw.line().startswith("+")
    raw.send(data + b"\r\n")
    reply = raw.until_tagged("p")
    assert reply[-1].startswith("p OK [APPENDUID")
    # RFC 5267 4.3.3: an ADDTO with the number of a new message comes after its EXISTS
    assert reply.index("* 3 EXISTS") < reply.index('* ESEARCH (TAG "u") ADDTO (0 3)')
    reply = ok(raw, "f", "STORE 3 +FLAGS (\\Seen)")  # ... and its removal, with the session's own STORE
    assert esearch(reply, "u") == ["REMOVEFROM (0 3)"]
    assert esearch(ok(raw, "n", "NOOP"), "u") == []
    imap.deliver(DEMO, mail("d"))
    assert esearch(ok(raw, "m", "NOOP"), "u") == ["ADDTO (0 4)"]


def test_update_search_after_delivery_and_store_by_another_session(imap: ImapHarness) -> None:
    fill(imap, "a", "b", "c", "d")
    watcher, other = selected(imap), selected(imap)
    assert esearch(ok(watcher, "w", "UID SEARCH RETURN (UPDATE COUNT) FLAGGED"), "w") == ["UID COUNT 0"]
    ok(other, "o1", "STORE 2,4 +FLAGS (\\Flagged)")
    reply = ok(watcher, "n1", "NOOP")
    # RFC 5267 4.3.3's example: the FETCH, then the ADDTO in mailbox order (position 0), UIDs
    assert reply.index("* 4 FETCH (UID 4 FLAGS (\\Flagged \\Recent))") < reply.index(
        '* ESEARCH (TAG "w") UID ADDTO (0 2,4)'
    )
    ok(other, "o2", "STORE 2 -FLAGS (\\Flagged)")
    ok(other, "o3", "STORE 1 +FLAGS (\\Seen)")  # not a change of the result: nothing
    assert esearch(ok(watcher, "n2", "NOOP"), "w") == ["UID REMOVEFROM (0 2)"]
    imap.deliver(DEMO, mail("e"), flags=("\\Flagged",))
    imap.deliver(DEMO, mail("f"))
    assert esearch(ok(watcher, "n3", "NOOP"), "w") == ["UID ADDTO (0 5)"]
    ok(other, "o3b", "NOOP")  # the other session learns of 5 and 6
    ok(other, "o4", "STORE 2:6 +FLAGS (\\Flagged)")
    ok(other, "o5", "STORE 5 -FLAGS (\\Flagged)")
    assert esearch(ok(watcher, "n4", "NOOP"), "w") == ["UID REMOVEFROM (0 5) ADDTO (0 2:3,6)"]


def test_removefrom_comes_before_the_expunge_and_at_once_while_it_is_held_back(imap: ImapHarness) -> None:
    fill(imap, "a", "b", "c", "d")
    watcher, other = selected(imap), selected(imap)
    ok(watcher, "u", "SEARCH RETURN (UPDATE ALL) ALL")
    ok(other, "o1", "STORE 2 +FLAGS.SILENT (\\Deleted)")
    ok(other, "o2", "EXPUNGE")
    reply = ok(watcher, "n1", "NOOP")
    assert reply.index('* ESEARCH (TAG "u") REMOVEFROM (0 2)') < reply.index("* 2 EXPUNGE")  # 4.3.4
    # during FETCH the EXPUNGE is held back (RFC 9051 7.5.1), the REMOVEFROM is not (appendix A.3): its
    # sequence number stays valid until the EXPUNGE, which comes later
    ok(other, "o3", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    ok(other, "o4", "EXPUNGE")
    reply = ok(watcher, "f", "FETCH 1:3 (UID)")
    assert esearch(reply, "u") == ["REMOVEFROM (0 1)"]
    assert not any("EXPUNGE" in line for line in reply)
    reply = ok(watcher, "n2", "NOOP")
    assert "* 1 EXPUNGE" in reply
    assert esearch(reply, "u") == []
    assert esearch(ok(watcher, "a", "SEARCH RETURN (ALL) ALL"), "a") == ["ALL 1:2"]


def test_expunge_and_move_in_the_same_session_send_removefrom_first(imap: ImapHarness) -> None:
    fill(imap, "a", "b", "c", "d")
    raw = selected(imap)
    ok(raw, "k", "CREATE Kept")
    ok(raw, "u", "SEARCH RETURN (UPDATE) ALL")
    ok(raw, "v", "SORT RETURN (UPDATE) (REVERSE SUBJECT) UTF-8 ALL")  # d c b a: 4 3 2 1
    ok(raw, "f", "STORE 3 +FLAGS.SILENT (\\Deleted)")
    reply = ok(raw, "x", "EXPUNGE")
    assert reply[:3] == [
        '* ESEARCH (TAG "u") REMOVEFROM (0 3)',
        '* ESEARCH (TAG "v") REMOVEFROM (2 3)',
        "* 3 EXPUNGE",
    ]
    reply = ok(raw, "m", "MOVE 1 Kept")  # RFC 6851: the EXPUNGE comes with MOVE's answer
    assert reply[1:4] == [
        '* ESEARCH (TAG "u") REMOVEFROM (0 1)',
        '* ESEARCH (TAG "v") REMOVEFROM (3 1)',
        "* 1 EXPUNGE",
    ]
    assert esearch(ok(raw, "s", "SORT RETURN (ALL) (REVERSE SUBJECT) UTF-8 ALL"), "s") == ["ALL 2,1"]


def test_a_search_of_what_never_changes_ignores_flag_changes(imap: ImapHarness) -> None:
    fill(imap, "apple", "pear", "apple pie")
    raw = selected(imap)
    assert esearch(ok(raw, "u", "UID SEARCH RETURN (UPDATE) SUBJECT apple"), "u") == ["UID ALL 1,3"]
    ok(raw, "f", "STORE 1:3 +FLAGS (\\Seen \\Flagged)")
    assert esearch(ok(raw, "n", "NOOP"), "u") == []
    imap.deliver(DEMO, mail("apple tart"))
    imap.deliver(DEMO, mail("plum"))
    assert esearch(ok(raw, "m", "NOOP"), "u") == ["UID ADDTO (0 4)"]


def test_sequence_numbers_and_uid_sets_mean_what_they_meant_when_the_search_ran(imap: ImapHarness) -> None:
    """RFC 5267 4.3 (errata to RFC 3501): the numbers of the search program are evaluated once."""
    fill(imap, "a", "b", "c")
    raw = selected(imap)
    ok(raw, "u", "SEARCH RETURN (UPDATE) 2:* UNSEEN")
    ok(raw, "v", "UID SEARCH RETURN (UPDATE) UID 1:* UNSEEN")
    imap.deliver(DEMO, mail("d"))
    reply = ok(raw, "n", "NOOP")
    assert esearch(reply, "u") == []
    assert esearch(reply, "v") == []
    assert esearch(ok(raw, "a", "SEARCH RETURN (ALL) 2:* UNSEEN"), "a") == ["ALL 2:4"]  # a fresh one does


def test_recent_keys_follow_the_messages_that_become_recent(imap_rev1: ImapHarness) -> None:
    """IMAP4rev1's \\Recent is the session's: NEW is translated again when messages arrive."""
    fill(imap_rev1, "a")
    raw = selected(imap_rev1)
    assert esearch(ok(raw, "u", "UID SEARCH RETURN (UPDATE ALL) NEW"), "u") == ["UID ALL 1"]
    imap_rev1.deliver(DEMO, mail("b"))
    reply = ok(raw, "n", "NOOP")
    assert "* 2 RECENT" in reply
    assert esearch(reply, "u") == ["UID ADDTO (0 2)"]
    assert esearch(ok(raw, "f", "UID STORE 1 +FLAGS (\\Seen)"), "u") == ["UID REMOVEFROM (0 1)"]


# -------------------------------------------------------------------------------------- UPDATE: SORT


def test_update_sort_gives_positions_in_the_sort_order(imap: ImapHarness) -> None:
    fill(imap, "d", "b", "f", "a")  # UIDs 1-4, subjects sort: a(4) b(2) d(1) f(3)
    watcher, other = selected(imap), selected(imap)
    assert esearch(ok(watcher, "u", "UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 UNSEEN"), "u") == [
        "UID ALL 4,2,1,3"
    ]
    assert esearch(ok(watcher, "v", "SORT RETURN (UPDATE) (REVERSE SUBJECT) UTF-8 UNSEEN"), "v") == [
        "ALL 3,1:2,4"
    ]
    ok(other, "o1", "STORE 2 +FLAGS (\\Seen)")
    reply = ok(watcher, "n1", "NOOP")
    assert esearch(reply, "u") == ["UID REMOVEFROM (2 2)"]
    assert esearch(reply, "v") == ["REMOVEFROM (3 2)"]
    imap.deliver(DEMO, mail("c"))  # UID 5: a c d f
    imap.deliver(DEMO, mail("e"))  # UID 6: a c d e f
    imap.deliver(DEMO, mail("g"))  # UID 7: a c d e f g
    reply = ok(watcher, "n2", "NOOP")
    assert esearch(reply, "u") == ["UID ADDTO (2 5 4 6 6 7)"]
    assert esearch(reply, "v") == ["ADDTO (1 7 3 6 5 5)"]  # g f e d c a: 7 3 6 1 5 4
    ok(other, "o2", "STORE 2 -FLAGS (\\Seen)")  # b comes back, and e and d leave: a b c f g
    ok(other, "o3", "STORE 1,6 +FLAGS (\\Seen)")
    reply = ok(watcher, "n3", "NOOP")
    assert esearch(reply, "u") == ["UID REMOVEFROM (3 1,6) ADDTO (2 2)"]
    assert esearch(reply, "v") == ["REMOVEFROM (3 6,1) ADDTO (4 2)"]
    assert esearch(ok(watcher, "a", "UID SORT RETURN (ALL) (SUBJECT) UTF-8 UNSEEN"), "a") == [
        "UID ALL 4,2,5,3,7"
    ]
    assert esearch(ok(watcher, "b", "SORT RETURN (ALL) (REVERSE SUBJECT) UTF-8 UNSEEN"), "b") == [
        "ALL 7,3,5,2,4"
    ]


def test_sort_ties_stay_in_mailbox_order_when_placed(imap: ImapHarness) -> None:
    fill(imap, "same", "other", "same")
    raw = selected(imap)
    assert esearch(ok(raw, "u", "UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 ALL"), "u") == ["UID ALL 2,1,3"]
    imap.deliver(DEMO, mail("same", day=1))
    assert esearch(ok(raw, "n", "NOOP"), "u") == ["UID ADDTO (4 4)"]  # the last of the equal ones


# --------------------------------------------------------------------------------- CANCELUPDATE, limits


def test_cancelupdate_stops_updates_and_frees_the_tag(imap: ImapHarness) -> None:
    fill(imap, "a")
    raw = selected(imap)
    ok(raw, "u1", "SEARCH RETURN (UPDATE) UNSEEN")
    ok(raw, "u2", "UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 UNSEEN")
    ok(raw, "u3", "SEARCH RETURN (UPDATE) UNSEEN")
    reply = raw.command("c1", 'CANCELUPDATE "u1" "nope"')  # an unknown tag: NO, and nothing cancelled
    assert reply[-1] == 'c1 NO No search tagged "nope" is being updated'
    assert ok(raw, "c2", 'CANCELUPDATE "u1" "u2"')[-1] == "c2 OK CANCELUPDATE completed, no further updates"
    imap.deliver(DEMO, mail("b"))
    reply = ok(raw, "n", "NOOP")
    assert esearch(reply, "u1") == esearch(reply, "u2") == []
    assert esearch(reply, "u3") == ["ADDTO (0 2)"]
    assert raw.command("c3", 'CANCELUPDATE "u1"')[-1].startswith("c3 NO")  # cancelled already
    assert esearch(ok(raw, "u1", "SEARCH RETURN (UPDATE COUNT) UNSEEN"), "u1") == ["COUNT 2"]  # free again


def test_update_with_a_tag_still_updated_is_bad_and_does_nothing(imap: ImapHarness) -> None:
    fill(imap, "a", "b")
    raw = selected(imap)
    ok(raw, "s", "SEARCH RETURN (SAVE) 1")
    ok(raw, "B01", "UID SEARCH RETURN (UPDATE COUNT) ALL")
    reply = raw.command("B01", "SORT RETURN (UPDATE SAVE) (DATE) UTF-8 2")  # RFC 5267 4.3's example
    assert reply[-1].startswith("B01 BAD Tag reuse"), reply
    assert esearch(reply, "B01") == []
    assert ok(raw, "f", "FETCH $ (UID)")[0] == "* 1 FETCH (UID 1)"  # $ as it was
    reply = ok(raw, "B01", "SEARCH RETURN (COUNT) ALL")  # without UPDATE the tag may be used (RFC 9051 2.2.1)
    assert esearch(reply, "B01") == ["COUNT 2"]


def test_beyond_the_limit_the_search_is_answered_with_noupdate(imap: ImapHarness) -> None:
    fill(imap, "a")
    raw = selected(imap)
    for n in range(commands_context.MAX_UPDATE_CONTEXTS):
        ok(raw, f"u{n}", "SEARCH RETURN (UPDATE COUNT) ALL")
    reply = ok(raw, "B02", "UID SORT RETURN (UPDATE COUNT) (DATE) UTF-8 ALL")
    # RFC 5267 4.3.1: the other options are honoured, then the untagged NO, then the tagged OK
    assert reply == [
        '* ESEARCH (TAG "B02") UID COUNT 1',
        '* NO [NOUPDATE "B02"] Too many searches are updated already (at most 8)',
        "B02 OK UID SORT completed",
    ]
    imap.deliver(DEMO, mail("b"))
    reply = ok(raw, "n", "NOOP")
    assert esearch(reply, "B02") == []
    assert len([line for line in reply if "ADDTO (0 2)" in line]) == commands_context.MAX_UPDATE_CONTEXTS
    ok(raw, "c", 'CANCELUPDATE "u0"')
    reply = ok(raw, "B03", "SEARCH RETURN (UPDATE COUNT) ALL")  # room again
    assert not any("NOUPDATE" in line for line in reply)


def test_a_search_that_changes_with_the_clock_is_not_updated(imap: ImapHarness) -> None:
    fill(imap, "a")
    raw = selected(imap)
    reply = ok(raw, "y", "SEARCH RETURN (UPDATE COUNT) OR YOUNGER 3600 NOT OLDER 60")
    assert reply[:2] == [
        '* ESEARCH (TAG "y") COUNT 1',
        '* NO [NOUPDATE "y"] OLDER and YOUNGER change with the clock: this search is not updated',
    ]


def test_updates_end_when_the_mailbox_is_no_longer_selected(imap: ImapHarness) -> None:
    fill(imap, "a")
    raw = selected(imap)
    ok(raw, "u", "SEARCH RETURN (UPDATE) ALL")
    ok(raw, "s2", "SELECT INBOX")  # a new selection, even of the same mailbox
    imap.deliver(DEMO, mail("b"))
    assert esearch(ok(raw, "n", "NOOP"), "u") == []
    assert raw.command("c", 'CANCELUPDATE "u"')[-1].startswith("c NO")
    ok(raw, "u", "SEARCH RETURN (UPDATE) ALL")  # the tag is free
    ok(raw, "x", "UNSELECT")
    reply = raw.command("c2", 'CANCELUPDATE "u"')
    assert reply[-1].startswith("c2 BAD"), reply  # a command of the selected state (RFC 5267 5)


def test_updates_are_sent_during_idle(imap: ImapHarness) -> None:
    fill(imap, "a")
    raw = selected(imap)
    ok(raw, "u", "UID SORT RETURN (UPDATE) (REVERSE SUBJECT) UTF-8 ALL")
    raw.send(b"i IDLE\r\n")
    assert raw.line().startswith("+")
    imap.deliver(DEMO, mail("b"))
    assert [raw.line() for _ in range(3)] == [
        "* 2 EXISTS",
        "* 2 RECENT",
        '* ESEARCH (TAG "u") UID ADDTO (1 2)',
    ]
    raw.send(b"DONE\r\n")
    assert raw.until_tagged("i")[-1] == "i OK IDLE terminated"


def test_a_store_failure_leaves_the_changes_for_the_next_sync(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(imap, "a", "b")
    raw = selected(imap)
    ok(raw, "u", "SEARCH RETURN (UPDATE) FLAGGED")
    imap.deliver(DEMO, mail("c"), flags=("\\Flagged",))
    search = imap.store.search
    calls: list[int] = []

    async def failing(mailbox_id: int, criteria: object, **kwargs: object) -> list[int]:
        calls.append(mailbox_id)
        raise StoreError("disk on fire")

    monkeypatch.setattr(imap.store, "search", failing)
    reply = ok(raw, "n1", "NOOP")
    assert calls
    assert "* 3 EXISTS" in reply
    assert esearch(reply, "u") == []
    monkeypatch.setattr(imap.store, "search", search)
    assert esearch(ok(raw, "n2", "NOOP"), "u") == ["ADDTO (0 3)"]
    assert imap.failures() == []


# ------------------------------------------------------------------------------ SAVE, UIDONLY, QRESYNC


def test_save_with_partial_min_max_and_count(imap: ImapHarness) -> None:
    """RFC 9394 3.2 (it applies with CONTEXT=SEARCH too): SAVE with PARTIAL saves what PARTIAL returns, with
    MIN or MAX those too, with COUNT every match. A SORT's MIN is its first message."""
    fill(imap, "e", "d", "c", "b", "a")

    def saved(raw: Transcript, tag: str, command: str) -> str:
        ok(raw, tag, command)
        reply = ok(raw, tag + "f", "UID SEARCH RETURN (ALL) $")
        return (esearch(reply, tag + "f") or ["UID"])[0]

    raw = selected(imap)
    assert saved(raw, "a", "SEARCH RETURN (SAVE PARTIAL 2:3) ALL") == "UID ALL 2:3"
    assert saved(raw, "b", "SEARCH RETURN (SAVE PARTIAL 2:3 MIN) ALL") == "UID ALL 1:3"
    assert saved(raw, "c", "SEARCH RETURN (SAVE MAX PARTIAL 9:9) ALL") == "UID ALL 5"
    assert saved(raw, "d", "SEARCH RETURN (SAVE PARTIAL 2:3 COUNT) ALL") == "UID ALL 1:5"
    assert saved(raw, "e", "SORT RETURN (SAVE MIN) (SUBJECT) UTF-8 ALL") == "UID ALL 5"
    assert saved(raw, "f", "SORT RETURN (SAVE PARTIAL 1:2 MAX) (SUBJECT) UTF-8 ALL") == "UID ALL 1,4:5"
    # $ in a SORT that saves is the result saved before it (RFC 5182 2.1)
    assert saved(raw, "g", "UID SORT RETURN (SAVE) (SUBJECT) UTF-8 $ UID 4:5") == "UID ALL 4:5"


def test_updates_do_not_change_the_saved_result(imap: ImapHarness) -> None:
    fill(imap, "a", "b")
    raw = selected(imap)
    ok(raw, "u", "UID SEARCH RETURN (UPDATE SAVE) UNSEEN")
    imap.deliver(DEMO, mail("c"))
    assert esearch(ok(raw, "n", "NOOP"), "u") == ["UID ADDTO (0 3)"]
    assert esearch(ok(raw, "a", "UID SEARCH RETURN (ALL) $"), "a") == ["UID ALL 1:2"]


def test_uidonly_sessions_update_uid_searches_and_vanished_follows_removefrom(imap: ImapHarness) -> None:
    fill(imap, "a", "b", "c")
    raw = imap.connect()
    raw.login()
    ok(raw, "e", "ENABLE UIDONLY")
    ok(raw, "s", "SELECT INBOX")
    reply = raw.command("x", "SEARCH RETURN (UPDATE) ALL")
    assert reply[-1].startswith("x BAD [UIDREQUIRED]")  # RFC 9586 3: message numbers are refused
    ok(raw, "u", "UID SORT RETURN (UPDATE) (REVERSE SUBJECT) UTF-8 ALL")
    ok(raw, "f", "UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    reply = ok(raw, "x", "UID EXPUNGE 2")
    assert reply[:2] == ['* ESEARCH (TAG "u") UID REMOVEFROM (2 2)', "* VANISHED 2"]


def test_qresync_sessions_get_removefrom_before_vanished(imap: ImapHarness) -> None:
    fill(imap, "a", "b", "c")
    watcher, other = imap.connect(), selected(imap)
    watcher.login()
    ok(watcher, "e", "ENABLE QRESYNC")
    ok(watcher, "s", "SELECT INBOX")
    ok(watcher, "u", "SEARCH RETURN (UPDATE) ALL")
    ok(other, "o1", "STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    ok(other, "o2", "EXPUNGE")
    reply = ok(watcher, "n", "NOOP")
    assert reply.index('* ESEARCH (TAG "u") REMOVEFROM (0 1,3)') < reply.index("* VANISHED 1,3")


def test_another_account_changes_nothing(imap: ImapHarness) -> None:
    fill(imap, "a")
    raw = selected(imap)
    ok(raw, "u", "SEARCH RETURN (UPDATE) ALL")
    imap.deliver(OTHER, mail("x"))
    assert esearch(ok(raw, "n", "NOOP"), "u") == []


# ------------------------------------------------------------------------------------- parser properties

_OPTION = st.one_of(
    st.sampled_from(["MIN", "MAX", "ALL", "COUNT", "SAVE", "CONTEXT", "UPDATE", "min", "Update", "FOO"]),
    st.tuples(
        st.integers(0, 2**32 + 1), st.integers(0, 2**32 + 1), st.sampled_from(["", "-"]), st.booleans()
    ).map(lambda t: f"PARTIAL {t[2]}{t[0]}:{t[2] if t[3] else ''}{t[1]}"),
)


@settings(max_examples=400, deadline=None)
@given(options=st.lists(_OPTION, max_size=5), sort=st.booleans())
def test_return_options_parse_to_what_was_sent_or_are_bad(options: list[str], sort: bool) -> None:
    """Any RETURN list gives a command holding exactly its options (each once, PARTIAL's range as sent), or a
    ParseError; what RFC 5267 section 4.4 and 5 forbid is always a ParseError."""
    head = "t UID SORT" if sort else "t UID SEARCH"
    tail = " (SUBJECT) UTF-8 ALL" if sort else " ALL"
    reader = CommandReader()
    reader.feed(f"{head} RETURN ({' '.join(options)}){tail}\r\n".encode())
    event = reader.next()
    names = [o.split()[0].upper() for o in options]
    ranges = [o.split()[1] for o in options if o.upper().startswith("PARTIAL")]
    valid_range = all(re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", r) for r in ranges) and all(
        int(n) < 2**32 for r in ranges for n in r.split(":")
    )
    allowed = not {"FOO"} & set(names) and len(set(names)) == len(names)
    expect_ok = allowed and valid_range and not {"PARTIAL", "ALL"} <= set(names)
    if not expect_ok:
        assert isinstance(event, ParseError), (options, event)
        return
    assert isinstance(event, Sort if sort else Search), (options, event)
    assert event.return_options == tuple(names)
    if ranges:
        first, last = ranges[0].split(":")
        assert event.partial == (int(first), int(last))
    else:
        assert event.partial is None


@settings(max_examples=300, deadline=None)
@given(
    tags=st.lists(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=8), max_size=4),
    junk=st.binary(max_size=12),
)
def test_cancelupdate_takes_quoted_tags_only(tags: list[str], junk: bytes) -> None:
    quoted = [t.replace("\\", "\\\\").replace('"', '\\"') for t in tags]
    reader = CommandReader()
    reader.feed(b"c CANCELUPDATE" + "".join(f' "{q}"' for q in quoted).encode() + b"\r\n")
    event = reader.next()
    if tags:
        assert event == CancelUpdate("c", tuple(tags))
    else:
        assert isinstance(event, ParseError)
    reader.feed(b"d CANCELUPDATE " + junk.translate(None, b"\r\n{") + b"\r\n")
    assert isinstance(reader.next(), CancelUpdate | ParseError)


_SESSION_COMMANDS = st.sampled_from(
    [
        b"t1 SEARCH RETURN (UPDATE COUNT) UNSEEN",
        b"t2 UID SORT RETURN (UPDATE PARTIAL 1:2) (SUBJECT) UTF-8 ALL",
        b"t1 UID SEARCH RETURN (UPDATE PARTIAL 2:1 SAVE) FLAGGED",
        b"t3 SORT RETURN (UPDATE MIN MAX) (REVERSE DATE) UTF-8 NEW",
        b't4 CANCELUPDATE "t1"',
        b't5 CANCELUPDATE "t2" "t3"',
        b"t6 STORE 1:* +FLAGS (\\Seen \\Flagged)",
        b"t7 STORE 1 -FLAGS (\\Seen)",
        b"t8 UID STORE 1:* +FLAGS (\\Deleted)",
        b"t9 EXPUNGE",
        b"ta FETCH 1:* (UID)",
        b"tb SELECT INBOX",
        b"tc UNSELECT",
        b"td SEARCH RETURN (PARTIAL 1:4294967295 COUNT) $",
    ]
)
_TAGGED = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+ (OK|NO|BAD) .*')


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.one_of(_SESSION_COMMANDS, st.binary(max_size=20)), max_size=12))
def test_random_context_commands_get_protocol_answers_and_no_traceback(
    imap: ImapHarness, chunks: list[bytes]
) -> None:
    fill(imap, "a", "b")
    raw = selected(imap)
    raw.send(b"\r\n".join(chunks) + b"\r\nzz9 LOGOUT\r\n")
    for line in raw.buf.split(b"\r\n"):
        assert line[:2] in (b"* ", b"+ ", b"") or _TAGGED.fullmatch(line), line
    raw.close()
    assert imap.failures() == []


# ------------------------------------------------------------------- the property: updates = a fresh search

#: The searches kept up to date in the property test, (tag, command); each is asked for again with (ALL)
CONTEXTS = [
    ("S1", "SEARCH RETURN (UPDATE) UNSEEN"),
    ("S2", "UID SEARCH RETURN (UPDATE ALL) FLAGGED"),
    ("S3", "SEARCH RETURN (UPDATE ALL) SUBJECT a"),
    ("S4", "SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 UNDELETED"),
    ("S5", "UID SORT RETURN (UPDATE ALL) (REVERSE DATE SUBJECT) UTF-8 OR SEEN FLAGGED"),
    ("S6", "SORT RETURN (UPDATE ALL) (REVERSE SUBJECT SIZE) UTF-8 ALL"),
]
FLAGS = ["\\Seen", "\\Flagged", "\\Deleted"]


def expand(sequence_set: str) -> list[int]:
    """A sequence set in the order given (RFC 5267 3.2: each range ascending)."""
    out: list[int] = []
    for part in sequence_set.split(","):
        low, _, high = part.partition(":")
        out.extend(range(int(low), int(high or low) + 1))
    return out


@dataclass
class Client:
    """What a client keeps of each context: its result, changed as the updates and EXPUNGEs say."""

    results: dict[str, list[int]] = field(default_factory=dict)
    uid: dict[str, bool] = field(default_factory=dict)
    exists: int = 0

    def take(self, lines: list[str]) -> None:
        for line in lines:
            if m := re.fullmatch(r"\* (\d+) EXISTS", line):
                self.exists = int(m.group(1))
            elif m := re.fullmatch(r"\* (\d+) EXPUNGE", line):
                n = int(m.group(1))
                self.exists -= 1
                for tag, result in self.results.items():
                    if not self.uid[tag]:
                        assert n not in result, f"{tag}: REMOVEFROM must come before the EXPUNGE of {n}"
                        result[:] = [x - 1 if x > n else x for x in result]
            elif m := re.fullmatch(r'\* ESEARCH \(TAG "(S\d)"\)( UID)? (.*)', line):
                self.update(m.group(1), m.group(3))

    def update(self, tag: str, data: str) -> None:
        result = self.results[tag]
        for item, body in re.findall(r"(ADDTO|REMOVEFROM) \(([^)]*)\)", data):
            words = body.split()
            assert len(words) % 2 == 0, data
            for position_text, sequence_set in zip(words[::2], words[1::2], strict=True):
                position, numbers = int(position_text), expand(sequence_set)
                if not self.uid[tag]:
                    # RFC 5267 4.3.3: a number the client knows: the EXISTS came first
                    assert all(0 < n <= self.exists for n in numbers), (tag, data, self.exists)
                if item == "ADDTO":
                    assert not set(numbers) & set(result), (tag, data, result)
                    if position == 0:  # a SEARCH: in mailbox order
                        assert tag in ("S1", "S2", "S3")
                        result[:] = sorted([*result, *numbers])
                    else:
                        assert 1 <= position <= len(result) + 1, (tag, data, result)
                        result[position - 1 : position - 1] = numbers
                elif position == 0:
                    assert set(numbers) <= set(result), (tag, data, result)
                    result[:] = [x for x in result if x not in numbers]
                else:
                    assert result[position - 1 : position - 1 + len(numbers)] == numbers, (tag, data, result)
                    del result[position - 1 : position - 1 + len(numbers)]


def fresh(raw: Transcript, n: int) -> Iterator[tuple[str, list[int]]]:
    """Every context's search asked for again (RETURN (ALL)): what its result must be now."""
    for tag, command in CONTEXTS:
        again = command.replace("(UPDATE ALL)", "(ALL)").replace("(UPDATE)", "(ALL)")
        reply = ok(raw, f"F{n}", again)
        assert not any("ADDTO" in line or "REMOVEFROM" in line for line in reply), reply  # all told before
        (line,) = esearch(reply, f"F{n}")
        found = re.search(r"ALL (\S+)", line)
        yield tag, expand(found.group(1)) if found else []


#: (what, which message (an index into those there are), "+" or "-", a flag, subject, day, flags at delivery)
Operation = tuple[str, int, str, str, str, int, frozenset[str]]
OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["deliver", "store", "store-other", "expunge", "expunge-other", "move"]),
        st.integers(0, 20),
        st.sampled_from(["+", "-"]),
        st.sampled_from(FLAGS),
        st.sampled_from(["a", "b", "ab", "c"]),
        st.integers(1, 4),
        st.frozensets(st.sampled_from(FLAGS)),
    ),
    min_size=1,
    max_size=10,
)
#: What the watching session does after each change: a command that holds EXPUNGE back, or one that does not
AFTER = st.lists(
    st.sampled_from(["NOOP", "FETCH 1:* (UID)", "UID FETCH 1:* (FLAGS)", "SEARCH SEEN"]),
    min_size=10,
    max_size=10,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    operations=OPERATIONS,
    after=AFTER,
    thresholds=st.sampled_from([(256, 64), (0, 64), (256, 0), (0, 0), (1, 1)]),
    initial=st.integers(0, 6),
)
def test_updates_applied_to_the_first_result_give_a_fresh_search(
    imap: ImapHarness,
    operations: list[Operation],
    after: list[str],
    initial: int,
    thresholds: tuple[int, int],
) -> None:
    """RFC 5267 4.3, for SEARCH and SORT, message numbers and UIDs: whatever changes the mailbox sees (new
    messages, flags set and cleared by the session and by another, expunges held back during FETCH and told
    later, MOVE), the client that applies every ADDTO, REMOVEFROM and EXPUNGE in order has what a new search
    gives, positions included; every number it is given is valid when given. The thresholds make both ways
    of updating run (the changed messages only, or the whole search again; placing new ones, or sorting
    again)."""
    saved = commands_context.RERUN_THRESHOLD, commands_context.RESORT_THRESHOLD
    commands_context.RERUN_THRESHOLD, commands_context.RESORT_THRESHOLD = thresholds
    mailbox = f"P{len(imap.cores)}"  # a new mailbox per example: the harness is shared
    watcher = imap.connect()
    other = imap.connect()
    try:
        watcher.login()
        other.login()
        ok(watcher, "c", f"CREATE {mailbox}")
        ok(watcher, "c2", f"CREATE {mailbox}.kept")
        live = [imap.deliver(DEMO, mail("abc"[i % 3], i % 4 + 1), mailbox) for i in range(initial)]
        ok(watcher, "s", f"SELECT {mailbox}")
        ok(other, "s", f"SELECT {mailbox}")
        client = Client(exists=len(live))
        for tag, command in CONTEXTS:
            reply = ok(watcher, tag, command)
            found = re.search(r"ALL (\S+)", esearch(reply, tag)[0])
            client.results[tag] = expand(found.group(1)) if found else []
            client.uid[tag] = command.startswith("UID")
        for n, (operation, follow) in enumerate(zip(operations, after, strict=False)):
            kind, index, sign, flag, subject, day, flags = operation
            session = watcher if kind in ("store", "expunge", "move") else other
            replies: list[list[str]] = []
            if kind == "deliver":
                body = "x" * day  # sizes differ (SIZE)
                live.append(imap.deliver(DEMO, mail(subject, day, body), mailbox, tuple(sorted(flags))))
            elif live:
                uid = live[index % len(live)]
                if kind.startswith("store"):
                    replies.append(ok(session, f"t{n}", f"UID STORE {uid} {sign}FLAGS ({flag})"))
                elif kind == "move":
                    replies.append(ok(session, f"t{n}", f"UID MOVE {uid} {mailbox}.kept"))
                    live.remove(uid)
                else:
                    replies.append(ok(session, f"d{n}", f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))
                    replies.append(ok(session, f"t{n}", f"UID EXPUNGE {uid}"))
                    live.remove(uid)
            if session is watcher:
                for reply in replies:
                    client.take(reply)
            command = follow if client.exists or "FETCH 1:*" not in follow else "NOOP"
            client.take(ok(watcher, f"a{n}", command))
            client.take(ok(watcher, f"n{n}", "NOOP"))
            for tag, result in fresh(watcher, n):
                assert client.results[tag] == result, (tag, operations[: n + 1])
    finally:
        commands_context.RERUN_THRESHOLD, commands_context.RESORT_THRESHOLD = saved
        watcher.close()
        other.close()
    assert imap.failures() == []
