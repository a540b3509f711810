"""CONDSTORE (RFC 7162 section 3.1; docs/decisions/0061): MODSEQ per message in FETCH, CHANGEDSINCE,
conditional STORE with MODIFIED, SEARCH MODSEQ, STATUS and SELECT HIGHESTMODSEQ, the enabling commands, and
MODSEQ in every untagged FETCH once enabled, also for another session's changes."""

from __future__ import annotations

import re

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness, Transcript


def _mailbox(imap: ImapHarness, count: int = 3) -> Transcript:
    for n in range(count):
        imap.deliver(DEMO, message(f"m{n}", "body\r\n"))
    raw = imap.connect()
    raw.login()
    return raw


def _modseq(line: str) -> int:
    match = re.search(r"MODSEQ \((\d+)\)", line)
    assert match is not None, line
    return int(match.group(1))


def _highest(lines: list[str]) -> int:
    found = [int(m.group(1)) for line in lines if (m := re.search(r"\[HIGHESTMODSEQ (\d+)\]", line))]
    assert len(found) == 1, lines
    return found[0]


def test_condstore_is_advertised_and_select_condstore_reports_highestmodseq(imap: ImapHarness) -> None:
    raw = _mailbox(imap)
    assert "CONDSTORE" in raw.command("c", "CAPABILITY")[0].split()
    plain = raw.command("s1", "SELECT INBOX")
    assert not any("HIGHESTMODSEQ" in line for line in plain)  # not before an enabling command
    again = raw.command("s2", "SELECT INBOX (CONDSTORE)")
    assert again[0] == "* OK [CLOSED] Previous mailbox closed"  # RFC 7162 3.2.11, before the new mailbox
    highest = _highest(again)
    fetched = raw.command("f", "FETCH 1:* (MODSEQ)")
    modseqs = [_modseq(line) for line in fetched[:-1]]
    assert len(modseqs) == 3
    assert max(modseqs) == highest
    assert all(m >= 1 for m in modseqs)
    status = raw.command("st", "STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
    assert status[0] == f'* STATUS "INBOX" (HIGHESTMODSEQ {highest} MESSAGES 3)'
    assert raw.command("s3", "EXAMINE INBOX")  # enabled once: every later SELECT reports it
    assert _highest(raw.command("s4", "SELECT INBOX")) == highest
    raw.close()


def test_each_enabling_command_reports_highestmodseq_once_with_a_mailbox_selected(imap: ImapHarness) -> None:
    """RFC 7162 3.1: the first CONDSTORE enabling command with a mailbox selected sends HIGHESTMODSEQ."""
    for enabling in (
        "FETCH 1 (MODSEQ)",
        "FETCH 1 (FLAGS) (CHANGEDSINCE 1)",
        "SEARCH MODSEQ 1",
        "STATUS INBOX (HIGHESTMODSEQ)",
        "STORE 1 (UNCHANGEDSINCE 0) +FLAGS.SILENT ($X)",
    ):
        raw = _mailbox(imap, 1)
        raw.command("s", "SELECT INBOX")
        first = raw.command("e1", enabling)
        assert first[-1].startswith("e1 OK"), (enabling, first)
        assert first[0].startswith("* OK [HIGHESTMODSEQ "), (enabling, first)
        assert not any("HIGHESTMODSEQ" in line for line in raw.command("e2", "FETCH 1 (MODSEQ)"))
        raw.close()
    raw = _mailbox(imap, 0)
    assert raw.command("en", "ENABLE CONDSTORE")[0] == "* ENABLED CONDSTORE"
    assert raw.command("en2", "ENABLE CONDSTORE")[0] == "* ENABLED"  # only what it newly enabled
    assert _highest(raw.command("s", "SELECT INBOX")) >= 1  # an empty mailbox too: never 0
    raw.close()


def test_changedsince_returns_only_later_changes_with_their_modseq(imap: ImapHarness) -> None:
    raw = _mailbox(imap)
    highest = _highest(raw.command("s", "SELECT INBOX (CONDSTORE)"))
    assert raw.command("f0", f"FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})") == ["f0 OK FETCH completed"]
    stored = raw.command("t", "STORE 2 +FLAGS (\\Flagged)")
    assert re.fullmatch(r"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged \\Recent\) MODSEQ \(\d+\)\)", stored[0])
    after = _modseq(stored[0])
    assert after > highest
    changed = raw.command("f1", f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})")
    assert changed == [
        f"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent) MODSEQ ({after}))",
        "f1 OK UID FETCH completed",
    ]
    assert raw.command("f2", f"FETCH 1:* (UID) (CHANGEDSINCE {after})") == ["f2 OK FETCH completed"]
    assert raw.command("f3", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")[-1].startswith("f3 BAD")
    raw.close()


def test_conditional_store_changes_the_unchanged_and_names_the_others(imap: ImapHarness) -> None:
    """RFC 7162 3.1.3, example 6: per message, not all or nothing; MODIFIED has sequence numbers for STORE
    and UIDs for UID STORE; .SILENT still gets the FETCH with MODSEQ; UNCHANGEDSINCE 0 always fails."""
    raw = _mailbox(imap, 4)
    raw.command("s", "SELECT INBOX (CONDSTORE)")
    before = _modseq(raw.command("f", "FETCH 4 (MODSEQ)")[0])
    other = imap.connect()
    other.login()
    other.command("o1", "SELECT INBOX")
    other.command("o2", "STORE 3 +FLAGS (\\Seen)")  # 3 changes after the client read `before`
    reply = raw.command("t1", f"STORE 1:4 (UNCHANGEDSINCE {before}) +FLAGS.SILENT (\\Deleted)")
    assert reply[-1] == "t1 OK [MODIFIED 3] Conditional STORE failed for some messages"
    fetches = {int(line.split()[1]): line for line in reply if " FETCH " in line}
    assert sorted(fetches) == [1, 2, 3, 4]
    assert "FLAGS" not in fetches[1]  # .SILENT: MODSEQ only
    assert "\\Deleted" not in fetches[3]  # left alone, and its flags told unasked (RECOMMENDED)
    assert "\\Seen" in fetches[3]
    assert _modseq(fetches[1]) == _modseq(fetches[2]) == _modseq(fetches[4]) > _modseq(fetches[3])
    uid_reply = raw.command("t2", "UID STORE 1,3 (UNCHANGEDSINCE 0) +FLAGS ($X)")
    assert uid_reply[-1] == "t2 OK [MODIFIED 1,3] Conditional STORE failed for some messages"
    flags = raw.command("f2", "FETCH 1:4 (FLAGS)")
    assert not any("$X" in line for line in flags)
    expunged_elsewhere = raw.command("t3", f"STORE 3 (UNCHANGEDSINCE {before + 100}) +FLAGS ($Y)")
    assert expunged_elsewhere[-1] == "t3 OK STORE completed"
    other.close()
    raw.close()


def test_another_sessions_change_comes_with_modseq_once_enabled(imap: ImapHarness) -> None:
    raw = _mailbox(imap, 2)
    raw.command("s", "SELECT INBOX")
    other = imap.connect()
    other.login()
    other.command("o1", "SELECT INBOX")
    other.command("o2", "STORE 1 +FLAGS (\\Answered)")
    plain = raw.command("n1", "NOOP")
    assert plain[0] == "* 1 FETCH (UID 1 FLAGS (\\Answered \\Recent))"  # no MODSEQ before enabling
    raw.command("en", "FETCH 1 (MODSEQ)")
    other.command("o3", "STORE 2 +FLAGS (\\Flagged)")
    noticed = raw.command("n2", "NOOP")
    assert re.fullmatch(r"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged \\Recent\) MODSEQ \(\d+\)\)", noticed[0])
    other.close()
    raw.close()


def test_search_modseq_answers_with_the_highest_modseq_of_its_matches(imap: ImapHarness) -> None:
    raw = _mailbox(imap, 3)
    raw.command("s", "SELECT INBOX")
    stored = raw.command("t", "STORE 2:3 +FLAGS (\\Flagged)")
    assert stored[-1].startswith("t OK")
    modseq = _modseq(raw.command("f", "FETCH 2 (MODSEQ)")[-2])
    found = raw.command("q1", f"SEARCH MODSEQ {modseq}")
    assert found[0] == f"* SEARCH 2 3 (MODSEQ {modseq})"
    assert raw.command("q2", f"UID SEARCH MODSEQ {modseq + 1}")[0] == "* SEARCH"  # nothing: no MODSEQ
    assert raw.command("q3", "SEARCH NOT MODSEQ 1")[0] == "* SEARCH"
    assert raw.command("q4", "SEARCH MODSEQ 0")[0].startswith("* SEARCH 1 2 3 (MODSEQ ")
    esearch = raw.command("q5", f"SEARCH RETURN (MIN COUNT) MODSEQ {modseq}")
    assert esearch[0] == f'* ESEARCH (TAG "q5") MIN 2 COUNT 2 MODSEQ {modseq}'
    empty = raw.command("q6", f"SEARCH RETURN (ALL) MODSEQ {modseq + 1}")
    assert empty[0] == '* ESEARCH (TAG "q6")'
    assert raw.command("q7", "SEARCH FLAGGED")[0] == "* SEARCH 2 3"  # no MODSEQ key: no MODSEQ
    raw.close()


def test_select_qresync_without_enable_and_unknown_parameters_are_bad(imap: ImapHarness) -> None:
    raw = _mailbox(imap, 1)
    assert raw.command("s1", "SELECT INBOX (QRESYNC (1 2))")[-1].startswith("s1 BAD")
    assert raw.command("s2", "SELECT INBOX (NOSUCHTHING)")[-1].startswith("s2 BAD")
    assert raw.command("s3", "SELECT INBOX")[-1].startswith("s3 OK")
    raw.close()
