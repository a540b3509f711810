"""UIDONLY (RFC 9586; docs/decisions/0066): after ENABLE UIDONLY no message number goes either way. Every
command form that names messages by number is BAD [UIDREQUIRED] and does nothing; every FETCH response,
solicited or not, is a UIDFETCH response numbered by UID (the UID data item only when asked for); every
expunge is told with VANISHED, with or without QRESYNC; SEARCH, ESEARCH, SORT and THREAD answer with UIDs;
EXISTS is still sent. A session that does not enable it sees no change."""

from __future__ import annotations

import re

import pytest

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness, Transcript

UIDREQUIRED = "BAD [UIDREQUIRED] Message numbers are not allowed once UIDONLY is enabled"
DRAFT = b"From: demo@example.test\r\nSubject: draft\r\n\r\nWords.\r\n"


def _fill(imap: ImapHarness) -> None:
    """INBOX with UIDs 2, 3 and 4 at sequence numbers 1, 2 and 3 (UID 1 expunged), none of them \\Recent
    any more, none \\Seen; an empty mailbox "Kept"."""
    for n in range(4):
        imap.deliver(DEMO, message(f"m{n + 1}"))
    other = imap.connect()
    other.login()
    other.command("o1", "SELECT INBOX")
    other.command("o2", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert other.command("o3", "EXPUNGE")[-1] == "o3 OK EXPUNGE completed"
    assert other.command("o4", "CREATE Kept")[-1].startswith("o4 OK")
    other.close()


def _session(imap: ImapHarness, enable: str = "UIDONLY", *, select: bool = True) -> Transcript:
    raw = imap.connect()
    raw.login()
    if enable:
        assert raw.command("e", f"ENABLE {enable}")[0].startswith("* ENABLED")
    if select:
        assert raw.command("s", "SELECT INBOX")[-1] == "s OK [READ-WRITE] SELECT completed"
    return raw


def _other(imap: ImapHarness) -> Transcript:
    other = imap.connect()
    other.login()
    other.command("o", "SELECT INBOX")
    return other


def _replace(raw: Transcript, tag: str, head: str, *, synchronizing: bool = False) -> list[str]:
    if synchronizing:
        raw.send(f"{tag} {head} {{{len(DRAFT)}}}\r\n".encode())
        reply = raw.until_tagged(tag)  # refused before the literal: no "+"
        assert not any(line.startswith("+") for line in reply), reply
        return reply
    raw.send(f"{tag} {head} {{{len(DRAFT)}+}}\r\n".encode() + DRAFT + b"\r\n")
    return raw.until_tagged(tag)


def _uids(imap: ImapHarness, mailbox: str) -> list[int]:
    return [m.uid for m in imap.call(imap.store.list_messages(imap.mailbox_id(DEMO, mailbox)))]


# ------------------------------------------------------------------------------------- ENABLE, CAPABILITY


def test_uidonly_is_advertised_and_enabled_once(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    assert "UIDONLY" in raw.command("c", "CAPABILITY")[0].split()
    assert raw.command("e1", "ENABLE UIDONLY") == ["* ENABLED UIDONLY", "e1 OK ENABLE completed"]
    # RFC 5161 3.1: ENABLED names only what this command newly enabled
    assert raw.command("e2", "ENABLE uidonly") == ["* ENABLED", "e2 OK ENABLE completed"]
    raw.close()


def test_enable_uidonly_only_in_the_authenticated_state(imap: ImapHarness) -> None:
    _fill(imap)
    raw = imap.connect()
    assert raw.command("e0", "ENABLE UIDONLY")[-1].startswith("e0 BAD")  # not authenticated
    raw.login()
    raw.command("s", "SELECT INBOX")
    assert raw.command("e1", "ENABLE UIDONLY")[-1].startswith("e1 BAD")  # selected (RFC 5161 3.1)
    assert raw.command("f", "FETCH 1 (FLAGS)") == ["* 1 FETCH (FLAGS ())", "f OK FETCH completed"]
    raw.close()


def test_not_enabled_nothing_changes(imap_rev1: ImapHarness) -> None:
    _fill(imap_rev1)
    raw = _session(imap_rev1, "", select=False)
    assert "* OK [UNSEEN 1] First unseen message" in raw.command("s", "SELECT INBOX")
    assert raw.command("f", "FETCH 2 (FLAGS)") == ["* 2 FETCH (FLAGS ())", "f OK FETCH completed"]
    assert raw.command("u", "UID FETCH 3 (FLAGS)") == [
        "* 2 FETCH (UID 3 FLAGS ())",
        "u OK UID FETCH completed",
    ]
    assert raw.command("q", "SEARCH 2:3")[0] == "* SEARCH 2 3"
    raw.command("d", "UID STORE 3 +FLAGS.SILENT (\\Deleted)")
    assert raw.command("x", "EXPUNGE") == ["* 2 EXPUNGE", "x OK EXPUNGE completed"]
    raw.close()


# --------------------------------------------------------------------------------------------- UIDREQUIRED

NUMBERED = [
    "FETCH 1 (FLAGS)",
    "FETCH 1:* (UID)",
    "FETCH $ (FLAGS)",  # the form without UID, whatever its set
    "STORE 1 +FLAGS (\\Flagged)",
    "STORE 1 (UNCHANGEDSINCE 1000) +FLAGS (\\Flagged)",
    "SEARCH ALL",
    "SEARCH RETURN (SAVE) ALL",
    "SORT (SUBJECT) UTF-8 ALL",
    "THREAD ORDEREDSUBJECT UTF-8 ALL",
    "COPY 1 Kept",
    "MOVE 1:* Kept",
    # message numbers as a search key of the UID forms
    "UID SEARCH 1:2",
    "UID SEARCH *",
    "UID SEARCH NOT 1",
    "UID SEARCH OR SEEN 2",
    "UID SEARCH (FLAGGED 1:*)",
    "UID SEARCH RETURN (ALL) UNSEEN 1",
    "UID SORT (SUBJECT) UTF-8 1:*",
    "UID THREAD REFERENCES UTF-8 OR 1 2",
]


@pytest.mark.parametrize("command", NUMBERED)
def test_every_form_that_names_messages_by_number_is_bad_uidrequired(imap: ImapHarness, command: str) -> None:
    _fill(imap)
    raw = _session(imap)
    assert raw.command("p", "UID SEARCH RETURN (SAVE) UID 3")[-1] == "p OK UID SEARCH completed"
    assert raw.command("n", command) == [f"n {UIDREQUIRED}"]
    # nothing was done: no flag stored, nothing copied or moved, `$` as it was
    assert raw.command("f", "UID FETCH 1:* (FLAGS)")[:-1] == [
        "* 2 UIDFETCH (FLAGS ())",
        "* 3 UIDFETCH (FLAGS ())",
        "* 4 UIDFETCH (FLAGS ())",
    ]
    assert _uids(imap, "Kept") == []
    assert raw.command("d", "UID SEARCH $") == ["* SEARCH 3", "d OK UID SEARCH completed"]
    raw.close()


def test_uid_forms_and_saved_results_are_allowed(imap: ImapHarness) -> None:
    _fill(imap)
    raw = _session(imap)
    assert raw.command("a", "UID SEARCH UID 3:*") == ["* SEARCH 3 4", "a OK UID SEARCH completed"]
    assert raw.command("b", "UID SEARCH RETURN (SAVE) UID 2,4")[-1] == "b OK UID SEARCH completed"
    assert raw.command("c", "UID SEARCH NOT $") == ["* SEARCH 3", "c OK UID SEARCH completed"]
    assert raw.command("d", "UID FETCH $ (FLAGS)")[:-1] == [
        "* 2 UIDFETCH (FLAGS ())",
        "* 4 UIDFETCH (FLAGS ())",
    ]
    assert raw.command("e", "UID COPY 2 Kept")[-1].startswith("e OK [COPYUID ")
    assert _uids(imap, "Kept") == [1]
    raw.close()


def test_replace_without_uid_is_refused_before_its_literal(imap: ImapHarness) -> None:
    _fill(imap)
    raw = _session(imap)
    assert _replace(raw, "r1", "REPLACE 1 Kept") == [f"r1 {UIDREQUIRED}"]
    assert _replace(raw, "r2", "REPLACE 1 Kept", synchronizing=True) == [f"r2 {UIDREQUIRED}"]
    assert _uids(imap, "Kept") == []
    assert _uids(imap, "INBOX") == [2, 3, 4]
    reply = _replace(raw, "r3", "UID REPLACE 2 Kept")
    assert reply[0].startswith("* OK [APPENDUID ")
    assert reply[1:] == ["* VANISHED 2", "r3 OK UID REPLACE completed"]
    assert _uids(imap, "Kept") == [1]
    raw.close()


def test_select_qresync_with_seq_match_data_is_uidrequired(imap: ImapHarness) -> None:
    _fill(imap)
    raw = _session(imap, "QRESYNC UIDONLY", select=False)
    selected = raw.command("s", "SELECT INBOX")
    (uidvalidity,) = [m.group(1) for line in selected if (m := re.search(r"\[UIDVALIDITY (\d+)\]", line))]
    reply = raw.command("q", f"SELECT INBOX (QRESYNC ({uidvalidity} 1 2:4 (1:3 2:4)))")
    assert reply == ["q BAD [UIDREQUIRED] QRESYNC: no seq-match-data once UIDONLY is enabled"]
    raw.close()


# ---------------------------------------------------------------------------------------------- UIDFETCH


def test_uid_fetch_answers_with_uidfetch_and_uid_only_when_asked(imap: ImapHarness) -> None:
    _fill(imap)
    raw = _session(imap)
    assert raw.command("a", "UID FETCH 1:* (FLAGS)") == [
        "* 2 UIDFETCH (FLAGS ())",
        "* 3 UIDFETCH (FLAGS ())",
        "* 4 UIDFETCH (FLAGS ())",
        "a OK UID FETCH completed",
    ]
    assert raw.command("b", "UID FETCH 3 (UID FLAGS)")[0] == "* 3 UIDFETCH (UID 3 FLAGS ())"
    assert raw.command("c", "UID FETCH 3 (FLAGS UID)")[0] == "* 3 UIDFETCH (FLAGS () UID 3)"
    assert raw.command("d", "UID FETCH 3 (UID)")[0] == "* 3 UIDFETCH (UID 3)"
    assert raw.command("e", "UID FETCH 4 (RFC822.SIZE)")[0].startswith("* 4 UIDFETCH (RFC822.SIZE ")
    header = raw.command("f", "UID FETCH 4 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert header[:2] == ["* 4 UIDFETCH (BODY[HEADER.FIELDS (SUBJECT)] {15}", "Subject: m4\r\n\r\n"]
    body = raw.command("g", "UID FETCH 3 (BODY[TEXT])")  # sets \Seen: FLAGS comes too, still no UID
    assert body[0] == "* 3 UIDFETCH (BODY[TEXT] {8}"
    assert body[2:] == [" FLAGS (\\Seen))", "g OK UID FETCH completed"]
    raw.close()


def test_a_large_message_streamed_is_a_uidfetch_too(imap: ImapHarness) -> None:
    big = message("big", "x" * 78 + "\r\n") + b"y" * 78 * 15_000 + b"\r\n"
    uid = imap.deliver(DEMO, big)
    raw = _session(imap)
    reply = raw.command("f", f"UID FETCH {uid} (RFC822.SIZE BODY.PEEK[])")
    assert reply[0] == f"* {uid} UIDFETCH (RFC822.SIZE {len(big)} BODY[] {{{len(big)}}}"
    assert reply[-1] == "f OK UID FETCH completed"
    raw.close()


def test_condstore_fetch_gives_modseq_without_adding_uid(imap: ImapHarness) -> None:
    _fill(imap)
    raw = _session(imap, "UIDONLY CONDSTORE")
    lines = raw.command("f", "UID FETCH 2:3 (FLAGS) (CHANGEDSINCE 1)")[:-1]
    assert [re.sub(r"MODSEQ \(\d+\)", "MODSEQ (n)", line) for line in lines] == [
        "* 2 UIDFETCH (FLAGS () MODSEQ (n))",
        "* 3 UIDFETCH (FLAGS () MODSEQ (n))",
    ]
    assert re.fullmatch(r"\* 4 UIDFETCH \(MODSEQ \(\d+\)\)", raw.command("m", "UID FETCH 4 (MODSEQ)")[0])
    raw.close()


def test_uid_store_answers_with_uidfetch(imap: ImapHarness) -> None:
    _fill(imap)
    raw = _session(imap)
    assert raw.command("s1", "UID STORE 3 +FLAGS (\\Flagged)") == [
        "* 3 UIDFETCH (FLAGS (\\Flagged))",
        "s1 OK UID STORE completed",
    ]
    assert raw.command("s2", "UID STORE 3 -FLAGS.SILENT (\\Flagged)") == ["s2 OK UID STORE completed"]
    raw.close()


def test_uid_store_with_condstore_answers_with_uidfetch_and_modseq(imap: ImapHarness) -> None:
    _fill(imap)
    raw = _session(imap, "UIDONLY CONDSTORE")
    silent = raw.command("s1", "UID STORE 3 +FLAGS.SILENT (\\Seen)")
    assert re.fullmatch(r"\* 3 UIDFETCH \(MODSEQ \(\d+\)\)", silent[0]), silent
    refused = raw.command("s2", "UID STORE 3:4 (UNCHANGEDSINCE 1) +FLAGS (\\Flagged)")
    assert re.fullmatch(r"\* 3 UIDFETCH \(FLAGS \(\\Seen\) MODSEQ \(\d+\)\)", refused[0]), refused
    assert re.fullmatch(r"\* 4 UIDFETCH \(FLAGS \(\) MODSEQ \(\d+\)\)", refused[1]), refused
    assert refused[-1] == "s2 OK [MODIFIED 3:4] Conditional STORE failed for some messages"
    raw.close()


@pytest.mark.parametrize("condstore", [False, True])
def test_flag_change_from_another_session_is_an_unsolicited_uidfetch(
    imap: ImapHarness, condstore: bool
) -> None:
    _fill(imap)
    raw = _session(imap, "UIDONLY CONDSTORE" if condstore else "UIDONLY")
    other = _other(imap)
    assert other.command("o1", "STORE 2 +FLAGS (\\Flagged)")[-1] == "o1 OK STORE completed"
    reply = raw.command("n", "NOOP")
    if condstore:
        assert re.fullmatch(r"\* 3 UIDFETCH \(FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)", reply[0]), reply
    else:
        assert reply[0] == "* 3 UIDFETCH (FLAGS (\\Flagged))"
    assert reply[1:] == ["n OK NOOP completed"]

    raw.send(b"i IDLE\r\n")
    assert raw.line() == "+ idling"
    other.command("o2", "STORE 3 +FLAGS (\\Answered)")
    told = raw.line()
    assert told.startswith("* 4 UIDFETCH (FLAGS (\\Answered)"), told
    raw.send(b"DONE\r\n")
    assert raw.until_tagged("i") == ["i OK IDLE terminated"]
    other.close()
    raw.close()


def test_select_qresync_reports_changes_as_uidfetch(imap: ImapHarness) -> None:
    _fill(imap)
    first = _session(imap, "QRESYNC", select=False)
    selected = first.command("s", "SELECT INBOX")
    (uidvalidity,) = [m.group(1) for line in selected if (m := re.search(r"\[UIDVALIDITY (\d+)\]", line))]
    (highest,) = [m.group(1) for line in selected if (m := re.search(r"\[HIGHESTMODSEQ (\d+)\]", line))]
    first.close()
    other = _other(imap)
    other.command("o1", "STORE 3 +FLAGS (\\Flagged)")
    other.close()

    raw = _session(imap, "QRESYNC UIDONLY", select=False)
    reply = raw.command("q", f"SELECT INBOX (QRESYNC ({uidvalidity} {highest} 2:4))")
    (changed,) = [line for line in reply if "FETCH" in line]
    assert re.fullmatch(r"\* 4 UIDFETCH \(FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)", changed)
    assert reply[-1] == "q OK [READ-WRITE] SELECT completed"
    raw.close()


# ---------------------------------------------------------------------------------------------- VANISHED


def test_expunges_by_this_session_are_vanished(imap: ImapHarness) -> None:
    _fill(imap)
    raw = _session(imap)
    raw.command("d", "UID STORE 2:3 +FLAGS.SILENT (\\Deleted)")
    assert raw.command("x", "UID EXPUNGE 2") == ["* VANISHED 2", "x OK UID EXPUNGE completed"]
    assert raw.command("y", "EXPUNGE") == ["* VANISHED 3", "y OK EXPUNGE completed"]
    moved = raw.command("m", "UID MOVE 4 Kept")
    assert moved[0].startswith("* OK [COPYUID ")
    assert moved[1:] == ["* VANISHED 4", "m OK UID MOVE completed"]
    raw.close()


def test_expunges_by_another_session_are_vanished(imap: ImapHarness) -> None:
    _fill(imap)
    raw = _session(imap)
    other = _other(imap)
    other.command("o1", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.command("o2", "EXPUNGE")
    assert raw.command("n", "NOOP") == ["* VANISHED 2", "n OK NOOP completed"]

    other.command("o3", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.command("o4", "EXPUNGE")
    # a refused numbered command holds nothing back: there are no numbers to shift
    assert raw.command("f", "FETCH 1 (FLAGS)") == ["* VANISHED 3", f"f {UIDREQUIRED}"]

    raw.send(b"i IDLE\r\n")
    assert raw.line() == "+ idling"
    other.command("o5", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.command("o6", "EXPUNGE")
    assert raw.line() == "* VANISHED 4"
    raw.send(b"DONE\r\n")
    assert raw.until_tagged("i") == ["i OK IDLE terminated"]
    other.close()
    raw.close()


def test_with_qresync_expunges_are_one_vanished_and_highestmodseq(imap: ImapHarness) -> None:
    _fill(imap)
    raw = _session(imap, "QRESYNC UIDONLY")
    raw.command("d", "UID STORE 2,4 +FLAGS.SILENT (\\Deleted)")
    reply = raw.command("x", "EXPUNGE")
    assert reply[0] == "* VANISHED 2,4"
    assert re.fullmatch(r"x OK \[HIGHESTMODSEQ \d+\] EXPUNGE completed", reply[1]), reply
    raw.close()


# ------------------------------------------------------------------------------ SEARCH, ESEARCH, EXISTS


def test_search_esearch_sort_and_thread_answer_with_uids(imap: ImapHarness) -> None:
    _fill(imap)
    raw = _session(imap)
    assert raw.command("a", "UID SEARCH ALL") == ["* SEARCH 2 3 4", "a OK UID SEARCH completed"]
    assert raw.command("b", "UID SEARCH RETURN (MIN MAX COUNT ALL) UID 3:*")[0] == (
        '* ESEARCH (TAG "b") UID MIN 3 MAX 4 ALL 3:4 COUNT 2'
    )
    assert raw.command("c", "UID SORT (REVERSE SUBJECT) UTF-8 ALL")[0] == "* SORT 4 3 2"
    threads = raw.command("d", "UID THREAD ORDEREDSUBJECT UTF-8 ALL")[0]
    assert threads.startswith("* THREAD ")
    assert sorted(int(n) for n in re.findall(r"\d+", threads)) == [2, 3, 4]
    raw.close()


def test_search_after_imap4rev2_is_esearch_with_uids(imap: ImapHarness) -> None:
    _fill(imap)
    raw = _session(imap, "IMAP4rev2 UIDONLY")
    assert raw.command("a", "UID SEARCH UNSEEN")[0] == '* ESEARCH (TAG "a") UID ALL 2:4'
    raw.close()


def test_select_sends_exists_and_no_message_number(imap_rev1: ImapHarness) -> None:
    _fill(imap_rev1)
    raw = _session(imap_rev1, select=False)
    selected = raw.command("s", "SELECT INBOX")
    assert "* 3 EXISTS" in selected
    assert not any("[UNSEEN" in line for line in selected)  # a message number (RFC 9051: rev1 only)
    imap_rev1.deliver(DEMO, message("m5"))
    assert raw.command("n", "NOOP") == ["* 4 EXISTS", "* 1 RECENT", "n OK NOOP completed"]
    assert raw.command("f", "UID FETCH 5 (FLAGS)")[0] == "* 5 UIDFETCH (FLAGS (\\Recent))"
    raw.close()
