"""QRESYNC (RFC 7162 section 3.2; docs/decisions/0061): ENABLE QRESYNC, SELECT with QRESYNC (VANISHED
(EARLIER), then the changed messages' flags), VANISHED instead of EXPUNGE, UID FETCH ... VANISHED,
HIGHESTMODSEQ after expunges and below expunges still held back, and BAD for misuse."""

from __future__ import annotations

import re
import time

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness, Transcript


def _session(imap: ImapHarness, *, qresync: bool = True) -> Transcript:
    raw = imap.connect()
    raw.login()
    if qresync:
        assert raw.command("en", "ENABLE QRESYNC")[0] == "* ENABLED QRESYNC"
    return raw


def _fill(imap: ImapHarness, count: int) -> None:
    for n in range(count):
        imap.deliver(DEMO, message(f"m{n + 1}", "body\r\n"))


def _highest(lines: list[str]) -> int:
    found = [int(m.group(1)) for line in lines if (m := re.search(r"\[HIGHESTMODSEQ (\d+)\]", line))]
    assert len(found) == 1, lines
    return found[0]


def _uidvalidity(lines: list[str]) -> int:
    (value,) = [int(m.group(1)) for line in lines if (m := re.search(r"\[UIDVALIDITY (\d+)\]", line))]
    return value


def _expunge_elsewhere(imap: ImapHarness, sequence: str) -> None:
    other = _session(imap, qresync=False)
    other.command("o1", "SELECT INBOX")
    assert other.command("o2", f"STORE {sequence} +FLAGS.SILENT (\\Deleted)")[-1].startswith("o2 OK")
    assert other.command("o3", "EXPUNGE")[-1].startswith("o3 OK")
    other.close()


def test_select_qresync_reports_what_vanished_then_what_changed(imap: ImapHarness) -> None:
    _fill(imap, 5)
    first = _session(imap)
    selected = first.command("s", "SELECT INBOX")
    highest, uidvalidity = _highest(selected), _uidvalidity(selected)
    first.close()
    _expunge_elsewhere(imap, "3")
    other = _session(imap, qresync=False)
    other.command("o1", "SELECT INBOX")
    other.command("o2", "STORE 2 +FLAGS (\\Flagged)")
    other.close()

    again = _session(imap)
    reply = again.command("s", f"SELECT INBOX (QRESYNC ({uidvalidity} {highest}))")
    assert reply[-1] == "s OK [READ-WRITE] SELECT completed"
    vanished = reply.index("* VANISHED (EARLIER) 3")
    (changed,) = [line for line in reply if " FETCH " in line]
    assert re.fullmatch(r"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged( \\Recent)?\) MODSEQ \(\d+\)\)", changed)
    assert vanished < reply.index(changed)  # VANISHED (EARLIER) before any FETCH (3.2.5.1)
    assert _highest(reply) > highest
    assert "* 4 EXISTS" in reply

    known = again.command("k", f"SELECT INBOX (QRESYNC ({uidvalidity} {highest} 1:2))")
    assert known[0] == "* OK [CLOSED] Previous mailbox closed"
    assert not any("VANISHED" in line for line in known)  # 3 is not among the client's UIDs
    assert sum(" FETCH " in line for line in known) == 1
    matched = again.command("m", f"EXAMINE INBOX (QRESYNC ({uidvalidity} {highest} 1:5 (1,2 1,2)))")
    assert "* VANISHED (EARLIER) 3" in matched
    stale = again.command("v", f"SELECT INBOX (QRESYNC ({uidvalidity + 1} {highest}))")
    assert stale[-1].startswith("v OK")
    assert not any("VANISHED" in line or " FETCH " in line for line in stale)  # another UIDVALIDITY
    again.close()


def test_expunges_are_vanished_and_the_expunge_gives_highestmodseq(imap: ImapHarness) -> None:
    _fill(imap, 4)
    raw = _session(imap)
    before = _highest(raw.command("s", "SELECT INBOX"))
    _expunge_elsewhere(imap, "2")
    noticed = raw.command("n", "NOOP")
    assert noticed[0] == "* VANISHED 2"
    assert not any("EXPUNGE" in line for line in noticed)
    raw.command("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    expunged = raw.command("x", "EXPUNGE")
    assert expunged[0] == "* VANISHED 1"
    assert _highest(expunged) > before
    assert re.fullmatch(r"x OK \[HIGHESTMODSEQ \d+\] EXPUNGE completed", expunged[-1])
    nothing = raw.command("x2", "EXPUNGE")
    assert nothing == ["x2 OK EXPUNGE completed"]  # nothing removed: no HIGHESTMODSEQ
    moved = raw.command("mv", "UID MOVE 3 Archive")
    assert moved[1] == "* VANISHED 3"
    assert "HIGHESTMODSEQ" in moved[-1]
    raw.close()


def test_uid_fetch_vanished_reports_earlier_expunges_before_the_changes(imap: ImapHarness) -> None:
    _fill(imap, 4)
    raw = _session(imap)
    highest = _highest(raw.command("s", "SELECT INBOX"))
    _expunge_elsewhere(imap, "1")
    raw.command("n", "NOOP")  # told live
    raw.command("t", "UID STORE 2 +FLAGS.SILENT ($Done)")
    reply = raw.command("f", f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest} VANISHED)")
    assert reply[0] == "* VANISHED (EARLIER) 1"
    assert re.fullmatch(r"\* 1 FETCH \(UID 2 FLAGS \(\$Done( \\Recent)?\) MODSEQ \(\d+\)\)", reply[1])
    assert reply[-1] == "f OK UID FETCH completed"
    narrow = raw.command("f2", f"UID FETCH 3:4 (FLAGS) (CHANGEDSINCE {highest} VANISHED)")
    assert narrow == ["f2 OK UID FETCH completed"]
    raw.close()


def test_a_fetch_while_an_expunge_is_held_back_gives_a_highestmodseq_below_it(imap: ImapHarness) -> None:
    """RFC 7162 3.2 and 6: MODSEQs sent while an expunge waits come with a HIGHESTMODSEQ lower than the
    expunge's, so that a client resuming from it is told of the expunge."""
    _fill(imap, 3)
    raw = _session(imap)
    selected = _highest(raw.command("s", "SELECT INBOX"))
    _expunge_elsewhere(imap, "2")
    other = _session(imap, qresync=False)
    other.command("o1", "SELECT INBOX")
    other.command("o2", "STORE 1 +FLAGS ($Later)")  # a change after the expunge
    other.close()
    during = raw.command("f", "FETCH 1:* (FLAGS)")  # FETCH may not report expunges
    assert not any("VANISHED" in line for line in during)
    assert any("$Later" in line and "MODSEQ" in line for line in during)
    held = _highest(during)
    assert held == selected  # below the expunge
    after = raw.command("n", "NOOP")
    assert "* VANISHED 2" in after
    assert after[-1] == "n OK NOOP completed"  # nothing held back now
    resumed = _highest(raw.command("s2", "SELECT INBOX"))
    assert resumed > held
    raw.close()


def test_qresync_misuse_is_bad(imap: ImapHarness) -> None:
    _fill(imap, 2)
    plain = _session(imap, qresync=False)
    assert plain.command("s", "SELECT INBOX (QRESYNC (1 1))")[-1].startswith("s BAD")
    plain.command("s2", "SELECT INBOX")
    assert plain.command("f", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")[-1].startswith("f BAD")
    plain.close()
    raw = _session(imap)
    uidvalidity = _uidvalidity(raw.command("s", "SELECT INBOX"))
    for bad_parameter in (
        "(QRESYNC)",
        "(QRESYNC (1))",
        "(QRESYNC (0 1))",
        f"(QRESYNC ({uidvalidity} 1 1:*))",
        f"(QRESYNC ({uidvalidity} 1 1:5 (1,2 1)))",
        f"(QRESYNC ({uidvalidity} x))",
        f"(QRESYNC ({uidvalidity} 1) QRESYNC ({uidvalidity} 1))",
    ):
        reply = raw.command("b", f"SELECT INBOX {bad_parameter}")
        assert reply[-1].startswith("b BAD"), (bad_parameter, reply)
    assert raw.command("f1", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")[-1].startswith("f1 BAD")
    assert raw.command("f2", "UID FETCH 1:* (FLAGS) (VANISHED)")[-1].startswith("f2 BAD")
    raw.close()


def test_a_qresync_sessions_fetch_that_sets_seen_names_uid_and_modseq(imap: ImapHarness) -> None:
    _fill(imap, 1)
    raw = _session(imap)
    raw.command("s", "SELECT INBOX")
    reply = raw.command("f", "FETCH 1 (BODY[TEXT])")
    assert re.match(r"\* 1 FETCH \(UID 1 BODY\[TEXT\] \{\d+\}", reply[0])
    assert "MODSEQ (" in reply[2]
    assert "\\Seen" in reply[2]
    stored = [line for line in raw.command("t", "STORE 1 +FLAGS ($X)") if " FETCH " in line]
    assert re.fullmatch(r"\* 1 FETCH \(UID 1 FLAGS \(.*\) MODSEQ \(\d+\)\)", stored[0])
    raw.close()


def test_after_pruned_tombstones_every_known_uid_not_there_is_vanished(imap: ImapHarness) -> None:
    """Decision 0069 (`[store] tombstone_days`): once the expunge records after the client's MODSEQ are gone,
    VANISHED (EARLIER) names every UID of the known set that is not in the mailbox (RFC 7162 3.2.5.1), also
    those expunged before the client's MODSEQ; while the records are there, only what went after it."""
    _fill(imap, 5)
    _expunge_elsewhere(imap, "2")  # before the client's state
    first = _session(imap)
    selected = first.command("s", "SELECT INBOX")
    highest, uidvalidity = _highest(selected), _uidvalidity(selected)
    first.close()
    _expunge_elsewhere(imap, "3")  # UID 4, after it
    exact = _session(imap).command("q", f"SELECT INBOX (QRESYNC ({uidvalidity} {highest} 1:5))")
    assert "* VANISHED (EARLIER) 4" in exact
    assert imap.call(imap.store.prune_tombstones(time.time() + 1)) == 2
    after = _session(imap).command("q", f"SELECT INBOX (QRESYNC ({uidvalidity} {highest} 1:9))")
    assert "* VANISHED (EARLIER) 2,4" in after  # and nothing above the highest UID there is
    fetched = _session(imap)
    fetched.command("s", "SELECT INBOX")
    reply = fetched.command("f", f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest} VANISHED)")
    assert reply[0] == "* VANISHED (EARLIER) 2,4"


def test_a_selected_session_older_than_the_horizon_is_told_what_went(imap: ImapHarness) -> None:
    _fill(imap, 5)
    watcher = _session(imap, qresync=False)
    watcher.command("s", "SELECT INBOX")
    _expunge_elsewhere(imap, "3")
    assert imap.call(imap.store.prune_tombstones(time.time() + 1)) == 1
    assert watcher.command("n", "NOOP")[0] == "* 3 EXPUNGE"
    assert watcher.command("u", "UID SEARCH ALL")[0] == "* SEARCH 1 2 4 5"
    watcher.close()
