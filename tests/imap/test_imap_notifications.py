"""Changes made by another session (or by delivery) reach a selected session: EXISTS, FETCH FLAGS, EXPUNGE,
with EXPUNGE held back during FETCH, STORE and SEARCH (RFC 9051 section 7.5.1). A selected mailbox deleted
under an IDLE session: test_imap_connection.py."""

from __future__ import annotations

import asyncio

import pytest

from postoffice.store import MessageInfo
from postoffice.store.api import MailboxChanges
from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness


def test_append_in_one_session_shows_exists_in_the_other_on_noop(imap: ImapHarness) -> None:
    watcher, writer = imap.connect(), imap.connect()
    watcher.login()
    writer.login()
    assert "* 0 EXISTS" in watcher.command("s1", "SELECT INBOX")
    data = message("hello")
    writer.send(b"a1 APPEND INBOX {%d}\r\n" % len(data))
    assert writer.line().startswith("+")
    writer.send(data + b"\r\n")
    assert writer.until_tagged("a1")[-1].startswith("a1 OK [APPENDUID")
    reply = watcher.command("n1", "NOOP")
    assert "* 1 EXISTS" in reply
    assert "* 1 RECENT" in reply


def test_expunge_from_other_session_is_not_reported_during_fetch_but_on_noop(imap: ImapHarness) -> None:
    for subject in ("one", "two", "three"):
        imap.deliver(DEMO, message(subject))
    watcher, other = imap.connect(), imap.connect()
    watcher.login()
    other.login()
    watcher.command("s1", "SELECT INBOX")
    other.command("s1", "SELECT INBOX")
    other.command("t1", "STORE 2 +FLAGS (\\Deleted)")
    assert other.command("x1", "EXPUNGE")[0] == "* 2 EXPUNGE"
    reply = watcher.command("f1", "FETCH 1:3 (UID)")
    assert not any("EXPUNGE" in line for line in reply)
    assert "* 1 FETCH (UID 1)" in reply
    assert "* 3 FETCH (UID 3)" in reply
    reply = watcher.command("n1", "NOOP")
    assert "* 2 EXPUNGE" in reply
    assert watcher.command("f2", "FETCH 2 (UID)")[0] == "* 2 FETCH (UID 3)"


def test_uid_fetch_may_report_expunges_and_flag_changes_are_fetch_flags(imap: ImapHarness) -> None:
    for subject in ("one", "two"):
        imap.deliver(DEMO, message(subject))
    watcher, other = imap.connect(), imap.connect()
    watcher.login()
    other.login()
    watcher.command("s1", "SELECT INBOX")
    other.command("s1", "SELECT INBOX")
    other.command("t1", "STORE 2 +FLAGS.SILENT (\\Flagged)")
    assert "* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))" in watcher.command("n1", "NOOP")
    other.command("t2", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.command("x1", "EXPUNGE")
    reply = watcher.command("f1", "UID FETCH 1:* (FLAGS)")
    assert "* 1 EXPUNGE" in reply


def test_deliver_while_selected_is_seen_on_check(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    raw.command("s1", "SELECT INBOX")
    imap.deliver(DEMO, message("later"))
    assert "* 1 EXISTS" in raw.command("c1", "CHECK")


def test_many_messages_flag_change_and_expunge_are_read_as_changes_only(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A selected session reads back only what changed (`changes_since`), never the whole mailbox, and still
    reports the flag change, the new message and (when allowed) the expunge made by another session."""
    for i in range(300):
        imap.deliver(DEMO, message(f"m{i}"))
    watcher, other = imap.connect(), imap.connect()
    watcher.login()
    other.login()
    assert "* 300 EXISTS" in watcher.command("s1", "SELECT INBOX")
    other.command("s1", "SELECT INBOX")
    store = imap.store
    full_reads: list[int] = []
    list_messages = store.list_messages

    async def counting(mailbox_id: int) -> list[MessageInfo]:
        full_reads.append(mailbox_id)
        return await list_messages(mailbox_id)

    monkeypatch.setattr(store, "list_messages", counting)

    other.command("t1", "STORE 150 +FLAGS.SILENT (\\Flagged)")
    reply = watcher.command("n1", "NOOP")
    assert [line for line in reply if "FETCH" in line] == ["* 150 FETCH (UID 150 FLAGS (\\Flagged \\Recent))"]

    other.command("t2", "STORE 200 +FLAGS.SILENT (\\Deleted)")
    assert other.command("x1", "EXPUNGE")[0] == "* 200 EXPUNGE"
    imap.deliver(DEMO, message("late"))
    full_reads.clear()  # the other session's EXPUNGE looks for \Deleted in the whole mailbox

    reply = watcher.command("f1", "FETCH 200 (UID)")
    assert not any("EXPUNGE" in line for line in reply)
    assert "* 200 FETCH (UID 200)" in reply
    assert "* 301 EXISTS" in reply
    assert "* 301 RECENT" in reply  # the 300 this session was first to see, and the new one
    reply = watcher.command("n2", "NOOP")
    assert "* 200 EXPUNGE" in reply
    assert not any("EXISTS" in line for line in reply)
    assert watcher.command("f2", "FETCH 300 (UID FLAGS)")[0] == "* 300 FETCH (UID 301 FLAGS (\\Recent))"
    assert watcher.command("f3", "FETCH 200 (UID)")[0] == "* 200 FETCH (UID 201)"

    # The session's own STORE and a FETCH that sets \Seen read back the change only, too.
    reply = watcher.command("t3", "STORE 1 +FLAGS (\\Answered)")
    assert reply[0] == "* 1 FETCH (FLAGS (\\Answered \\Recent))"
    reply = watcher.command("f4", "FETCH 2 (BODY[HEADER.FIELDS (SUBJECT)])")
    assert any("FLAGS (\\Seen \\Recent)" in line for line in reply)
    reply = other.command("n3", "NOOP")
    assert "* 1 FETCH (UID 1 FLAGS (\\Answered))" in reply
    assert "* 2 FETCH (UID 2 FLAGS (\\Seen))" in reply
    assert full_reads == []
    assert imap.failures() == []


def test_a_new_keyword_is_announced_with_flags_before_the_fetch_that_shows_it(
    imap: ImapHarness,
) -> None:
    imap.deliver(DEMO, message("one"))
    first, second = imap.connect(), imap.connect()
    first.login()
    second.login()
    assert first.command("s", "SELECT INBOX")[0] == "* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)"
    second.command("s", "SELECT INBOX")
    reply = second.command("k", "STORE 1 +FLAGS ($Important)")
    flags_line = "* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $Important)"
    assert reply[0] == flags_line
    assert reply[1].startswith(
        "* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $Important \\*)]"
    )
    assert reply[2].startswith("* 1 FETCH (FLAGS (")
    assert "$Important" in reply[2]
    seen_by_first = first.command("n", "NOOP")
    assert seen_by_first.index(flags_line) < next(
        i for i, line in enumerate(seen_by_first) if "FETCH" in line
    )
    # announced once: a second keyword change with the same keyword sends no new FLAGS
    second.command("k2", "STORE 1 -FLAGS ($Important)")
    assert not any(line.startswith("* FLAGS") for line in second.command("k3", "STORE 1 +FLAGS ($Important)"))
    first.close()
    second.close()


def test_deleting_its_own_selected_mailbox_leaves_the_selected_state(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    raw.command("e", "ENABLE IMAP4rev2")
    raw.command("c", "CREATE Work")
    raw.command("s", "SELECT Work")
    reply = raw.command("d", "DELETE Work")
    assert reply == ["* OK [CLOSED] The selected mailbox is being deleted", "d OK DELETE completed"]
    assert raw.command("f", "FETCH 1 (UID)")[-1].startswith("f BAD")  # no longer in the selected state
    assert raw.command("n", "NOOP")[-1] == "n OK NOOP completed"


def test_renames_under_a_selected_session(imap: ImapHarness) -> None:
    """A renamed mailbox keeps its UIDVALIDITY and messages: the selected session goes on. Renaming INBOX
    moves its messages out: a session with INBOX selected sees them expunged."""
    imap.deliver(DEMO, message("one"))
    imap.deliver(DEMO, message("two"))
    raw, inbox_watcher, work_watcher = imap.connect(), imap.connect(), imap.connect()
    for session in (raw, inbox_watcher, work_watcher):
        session.login()
    raw.command("c", "CREATE Work")
    imap.deliver(DEMO, message("w"), mailbox="Work")
    inbox_watcher.command("s", "SELECT INBOX")
    work_watcher.command("s", "SELECT Work")
    assert raw.command("r1", "RENAME Work Play")[-1] == "r1 OK RENAME completed"
    assert work_watcher.command("f", "FETCH 1 (UID)")[0] == "* 1 FETCH (UID 1)"
    assert raw.command("r2", "RENAME INBOX Old")[-1] == "r2 OK RENAME completed"
    reply = inbox_watcher.command("n", "NOOP")
    assert reply[:2] == ["* 2 EXPUNGE", "* 1 EXPUNGE"]
    assert "* 0 EXISTS" not in reply  # EXPUNGE responses already say it


def test_a_change_committed_while_the_session_reads_back_is_reported_at_the_next_noop(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by bench/imap_sync_stress.py: the view was marked clean after its read-back, so a change whose
    notification came while the read was under way stayed unreported until some other change came."""
    for n in range(3):
        imap.deliver(DEMO, message(f"m{n}"))
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT INBOX")
    store = imap.store
    inbox = imap.mailbox_id(DEMO, "INBOX")
    real_changes_since = store.changes_since
    armed = [True]

    async def changes_since(mailbox_id: int, modseq: int) -> MailboxChanges:
        result = await real_changes_since(mailbox_id, modseq)  # its read is over: the result is fixed
        if armed[0]:
            armed[0] = False
            seen = raw.core.session.changes_seen
            await store.store_flags(mailbox_id, [2], ["\\Deleted"], "add")  # another session's expunge
            await store.expunge_deleted(mailbox_id, {2})
            while raw.core.session.changes_seen < seen + 2:  # noqa: ASYNC110 - its notifications arrive
                await asyncio.sleep(0)
        return result

    monkeypatch.setattr(store, "changes_since", changes_since)
    imap.call(store.store_flags(inbox, [1], ["\\Flagged"], "add"))  # something to read back
    first = raw.command("a", "NOOP")
    assert first[0] == "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"
    assert raw.command("b", "NOOP")[0] == "* 2 EXPUNGE"  # not lost: told at the next NOOP
    assert raw.command("c", "UID SEARCH ALL")[0] == "* SEARCH 1 3"
    raw.close()


def test_exists_comes_before_a_flag_update_of_a_message_read_back_in_the_same_command(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by bench/imap_sync_stress.py: a STORE read back a new message, another change flagged it before
    the command ended, and its FETCH went out before the EXISTS that made its number valid."""
    for n in range(2):
        imap.deliver(DEMO, message(f"m{n}"))
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT INBOX")
    store = imap.store
    real_changes_since = store.changes_since
    armed = [True]

    async def changes_since(mailbox_id: int, modseq: int) -> MailboxChanges:
        result = await real_changes_since(mailbox_id, modseq)
        if armed[0] and any(m.uid == 3 for m in result.messages):
            armed[0] = False
            seen = raw.core.session.changes_seen
            await store.store_flags(mailbox_id, [3], ["\\Flagged"], "add")  # another session, meanwhile
            while raw.core.session.changes_seen < seen + 1:  # noqa: ASYNC110 - its notification arrives
                await asyncio.sleep(0)
        return result

    monkeypatch.setattr(store, "changes_since", changes_since)
    imap.deliver(DEMO, message("m2"))  # UID 3, not yet told
    reply = raw.command("t", "STORE 1 +FLAGS (\\Seen)")
    exists = reply.index("* 3 EXISTS")
    (update,) = [i for i, line in enumerate(reply) if line.startswith("* 3 FETCH")]
    assert exists < update, reply
    raw.close()


def test_a_change_committed_during_a_qresync_select_is_reported(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by bench/imap_sync_stress.py: until SELECT set the new view, a notification found no view to
    mark (the QRESYNC read is an await in that window), and the change waited for another."""
    for n in range(2):
        imap.deliver(DEMO, message(f"m{n}"))
    raw = imap.connect()
    raw.login()
    raw.command("e", "ENABLE QRESYNC")
    selected = raw.command("s", "SELECT INBOX")
    (uidvalidity,) = [line.split()[3].rstrip("]") for line in selected if "[UIDVALIDITY" in line]
    (highest,) = [line.split()[3].rstrip("]") for line in selected if "[HIGHESTMODSEQ" in line]
    store = imap.store
    real_changes_since = store.changes_since
    armed = [True]

    async def changes_since(mailbox_id: int, modseq: int) -> MailboxChanges:
        result = await real_changes_since(mailbox_id, modseq)
        if armed[0]:
            armed[0] = False
            seen = raw.core.session.changes_seen
            await store.store_flags(mailbox_id, [2], ["\\Answered"], "add")  # another session, meanwhile
            while raw.core.session.changes_seen < seen + 1:  # noqa: ASYNC110 - its notification arrives
                await asyncio.sleep(0)
        return result

    monkeypatch.setattr(store, "changes_since", changes_since)
    again = raw.command("q", f"SELECT INBOX (QRESYNC ({uidvalidity} {highest}))")
    assert again[-1].startswith("q OK")
    told = again + raw.command("n", "NOOP")  # at the end of the SELECT, or at the NOOP at the latest
    assert any(line.startswith("* 2 FETCH (UID 2 FLAGS (\\Answered") for line in told), told
    raw.close()


def test_noop_reads_the_store_even_without_a_notification(imap: ImapHarness) -> None:
    """Found by bench/imap_sync_stress.py: a SEARCH read an expunge the session had not been notified of yet
    (the writer publishes right after its commit, but a reader can be quicker), and the NOOP that followed,
    relying on notifications only, reported nothing. NOOP and CHECK now always read back."""
    for n in range(3):
        imap.deliver(DEMO, message(f"m{n}"))
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT INBOX")
    session = raw.core.session
    assert session._unsubscribe is not None
    session._unsubscribe()  # no notification comes (it is late: the store knows before the session)
    inbox = imap.mailbox_id(DEMO, "INBOX")
    imap.call(imap.store.store_flags(inbox, [2], ["\\Deleted"], "add"))
    imap.call(imap.store.expunge_deleted(inbox, {2}))
    assert raw.command("q", "SEARCH ALL")[0] == "* SEARCH 1 3"  # the store knows already
    assert raw.command("n", "NOOP")[0] == "* 2 EXPUNGE"
    raw.close()


def test_a_new_message_expunged_before_it_was_announced_is_never_mentioned(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by bench/imap_sync_stress.py: a UID STORE read back a new message, another session expunged it
    before the command ended, and the session sent an EXPUNGE with a number the client had never been given
    (one above its message count) instead of forgetting the message it had never announced."""
    for n in range(2):
        imap.deliver(DEMO, message(f"m{n}"))
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT INBOX")
    store = imap.store
    real_changes_since = store.changes_since
    armed = [True]

    async def changes_since(mailbox_id: int, modseq: int) -> MailboxChanges:
        result = await real_changes_since(mailbox_id, modseq)
        if armed[0] and any(m.uid == 3 for m in result.messages):
            armed[0] = False
            seen = raw.core.session.changes_seen
            await store.store_flags(mailbox_id, [3], ["\\Deleted"], "add")  # another session, meanwhile
            await store.expunge_deleted(mailbox_id, {3})
            while raw.core.session.changes_seen < seen + 2:  # noqa: ASYNC110 - its notifications arrive
                await asyncio.sleep(0)
        return result

    monkeypatch.setattr(store, "changes_since", changes_since)
    imap.deliver(DEMO, message("m2"))  # UID 3, not yet told
    reply = raw.command("t", "UID STORE 1 +FLAGS (\\Seen)")
    assert armed == [False]
    assert not [line for line in reply if "EXPUNGE" in line or "EXISTS" in line], reply
    assert raw.command("n", "NOOP") == ["n OK NOOP completed"]
    assert raw.command("q", "SEARCH ALL")[0] == "* SEARCH 1 2"
    raw.close()
