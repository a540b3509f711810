"""NOTIFY (RFC 5465, decision 0072) from transcripts: one session asks to be notified, another (or a delivery)
changes mail, and the first hears of it with no command in progress (`Transcript.wait` is the glue's
wake-up): STATUS for other mailboxes, EXISTS / EXPUNGE / FETCH for the selected one as its SELECTED or
SELECTED-DELAYED group asks, LIST for names and subscriptions, METADATA for annotations; the refusals (NO
[BADEVENT], BAD), NOTIFY NONE, the snapshot without SELECTED, IDLE, CONDSTORE / QRESYNC / UIDONLY, and
NOTIFICATIONOVERFLOW. (The same over a real socket: tests/integration/test_imap_notify_process.py.)"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.imap import commands_notify
from postoffice.imap.protocol import Need
from tests.imap.conftest import message
from tests.imap.transcript import DEMO, OTHER, ImapHarness, Transcript, session

PERSONAL = "(personal (MessageNew MessageExpunge))"
EVERYTHING = (
    "(selected (MessageNew MessageExpunge FlagChange)) "
    "(personal (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange MailboxMetadataChange "
    "ServerMetadataChange))"
)


def quiet(raw: Transcript) -> bool:
    """Woken, the session has nothing to say (and still waits between commands)."""
    raw.wait()
    return raw.buf == b""


def status(line: str) -> tuple[str, dict[str, int]]:
    """The mailbox and the items of `* STATUS "name" (ITEM n ...)`."""
    match = re.fullmatch(r'\* STATUS "([^"]*)" \(([^)]*)\)', line)
    assert match, line
    words = match.group(2).split()
    return match.group(1), {words[i]: int(words[i + 1]) for i in range(0, len(words), 2)}


def notify(raw: Transcript, groups: str, tag: str = "n") -> list[str]:
    lines = raw.command(tag, f"NOTIFY SET {groups}")
    assert lines[-1] == f"{tag} OK NOTIFY completed", lines
    return lines[:-1]


def test_notify_is_advertised_and_needs_a_login(imap: ImapHarness) -> None:
    raw = imap.connect()
    assert "NOTIFY" in raw.command("c", "CAPABILITY")[0].split()
    assert raw.command("n", f"NOTIFY SET {PERSONAL}")[-1].startswith("n BAD")  # RFC 5465 8: command-auth
    raw.login()
    assert "NOTIFY" in raw.command("c2", "CAPABILITY")[0].split()
    assert notify(raw, PERSONAL) == []
    assert raw.need is Need.NOTIFY  # the glue now waits for input or a change, between commands
    raw.close()


def test_a_delivery_to_another_mailbox_is_a_status_with_no_command_in_progress(imap: ImapHarness) -> None:
    raw = session(imap)
    raw.command("c", "CREATE Lists")
    raw.command("s", "SELECT INBOX")
    notify(raw, PERSONAL)
    imap.deliver(DEMO, message("one"), "Lists")
    name, items = status(raw.line())  # no command sent: told when woken
    assert name == "Lists"
    assert (items["MESSAGES"], items["UIDNEXT"], items["UNSEEN"]) == (1, 2, 1)
    assert "UIDVALIDITY" in items
    assert "HIGHESTMODSEQ" not in items  # no CONDSTORE, no FlagChange
    # the selected mailbox is no other mailbox (3.1): without SELECTED, nothing of it
    imap.deliver(DEMO, message("two"))
    assert quiet(raw)
    assert raw.command("z", "NOOP") == ["z OK NOOP completed"]  # a snapshot: not even at NOOP (3.1)
    raw.close()


def test_many_changes_to_a_mailbox_are_one_status_with_the_latest_counts(imap: ImapHarness) -> None:
    raw = session(imap)
    notify(raw, PERSONAL)
    for n in range(20):
        imap.deliver(DEMO, message(f"flood {n}"), "Archive")
    raw.wait()
    lines = raw.buf.decode().splitlines()
    raw.buf = b""
    assert len(lines) == 1
    assert status(lines[0]) == ("Archive", status(lines[0])[1])
    assert status(lines[0])[1]["MESSAGES"] == 20
    raw.close()


def test_notify_set_status_sends_the_status_of_each_watched_mailbox_first(imap: ImapHarness) -> None:
    raw = session(imap)
    raw.command("c", "CREATE Lists/IMAP")
    imap.deliver(DEMO, message("old"), "Lists/IMAP")
    raw.command("s", "SELECT INBOX")
    lines = notify(
        raw,
        "STATUS (selected (MessageNew MessageExpunge)) "
        "(subtree Lists (MessageNew MessageExpunge FlagChange)) "
        "(mailboxes (Trash Nonexistent) (MessageNew MessageExpunge))",
    )
    told = dict(status(line) for line in lines)
    assert list(told) == ["Lists", "Lists/IMAP", "Trash"]  # not INBOX: selected (3.1); not a missing name
    assert told["Lists/IMAP"]["MESSAGES"] == 1
    assert "HIGHESTMODSEQ" in told["Lists"]  # FlagChange, and the server supports CONDSTORE (3.1)
    assert "HIGHESTMODSEQ" not in told["Trash"]
    raw.close()


def test_a_new_message_in_the_selected_mailbox_is_exists_then_the_fetch_asked_for(imap: ImapHarness) -> None:
    raw = session(imap)
    raw.command("s", "SELECT INBOX")
    notify(raw, "(selected (MessageNew (UID BODY[HEADER.FIELDS (Subject)]) MessageExpunge))")
    imap.deliver(DEMO, message("hello there"))
    assert raw.line() == "* 1 EXISTS"
    assert raw.line() == "* 1 RECENT"
    assert raw.line() == "* 1 FETCH (UID 1 BODY[HEADER.FIELDS (Subject)] {24}"
    assert raw.line() == "Subject: hello there"
    assert raw.line() == ""
    assert raw.line() == ")"
    # BODY[] without .PEEK sets no \Seen here (5.2: clients SHOULD NOT ask for it; the server never does)
    assert raw.command("f", "UID FETCH 1 FLAGS")[0] == "* 1 FETCH (UID 1 FLAGS (\\Recent))"
    # the session's own APPEND: EXISTS, but no FETCH of what it knows (5.2)
    raw.send(b"a APPEND INBOX {12+}\r\nSubject: x\r\n\r\n")
    assert raw.until_tagged("a")[:2] == ["* 2 EXISTS", "* 2 RECENT"]
    assert quiet(raw)
    raw.close()


def test_selected_tells_expunges_at_once_selected_delayed_at_the_next_command(imap: ImapHarness) -> None:
    for n in range(3):
        imap.deliver(DEMO, message(f"m{n}"))
    raw, other = session(imap), session(imap)
    raw.command("s", "SELECT INBOX")
    other.command("s", "SELECT INBOX")
    notify(raw, "(selected (MessageNew MessageExpunge FlagChange))")
    other.command("t", "STORE 1 +FLAGS (\\Deleted)")
    assert raw.line() == "* 1 FETCH (UID 1 FLAGS (\\Deleted \\Recent))"  # FlagChange (5.1): UID and FLAGS
    other.command("x", "EXPUNGE")
    assert raw.line() == "* 1 EXPUNGE"  # 6.1.1: no command in progress, at once
    notify(raw, "(selected-delayed (MessageNew MessageExpunge))", "n2")
    other.command("t2", "STORE 1 +FLAGS (\\Deleted)")
    other.command("x2", "EXPUNGE")
    imap.deliver(DEMO, message("m4"))
    # the new message is told (after the one held back, whose number stays valid) ...
    assert raw.line() == "* 3 EXISTS"
    assert raw.line().endswith(" RECENT")
    assert quiet(raw)  # ... but the expunge waits (6.1.2)
    assert raw.command("z", "NOOP") == ["* 1 EXPUNGE", "z OK NOOP completed"]
    other.close()
    raw.close()


def test_an_expunge_waits_out_a_fetch_even_with_selected(imap: ImapHarness) -> None:
    for n in range(2):
        imap.deliver(DEMO, message(f"m{n}"))
    raw, other = session(imap), session(imap)
    raw.command("s", "SELECT INBOX")
    other.command("s", "SELECT INBOX")
    notify(raw, "(selected (MessageNew MessageExpunge))")
    other.command("t", "STORE 1 +FLAGS (\\Deleted)")
    other.command("x", "EXPUNGE")
    # the FETCH runs before the session is woken: during it no EXPUNGE (RFC 9051 7.5.1), right after it
    raw.send(b"f FETCH 1:2 (UID)\r\n")
    answer = raw.until_tagged("f")
    assert answer[-1] == "f OK FETCH completed"
    assert "* 1 EXPUNGE" not in answer
    assert raw.line() == "* 1 EXPUNGE"
    other.close()
    raw.close()


def test_without_selected_the_selected_mailbox_is_a_snapshot_but_its_own_expunge_is_told(
    imap: ImapHarness,
) -> None:
    for n in range(3):
        imap.deliver(DEMO, message(f"m{n}"))
    raw, other = session(imap), session(imap)
    raw.command("s", "SELECT INBOX")
    other.command("s", "SELECT INBOX")
    notify(raw, "(personal (MessageNew MessageExpunge FlagChange))")
    other.command("t", "STORE 3 +FLAGS (\\Deleted)")
    other.command("x", "EXPUNGE")
    imap.deliver(DEMO, message("new"))
    assert quiet(raw)
    assert raw.command("z", "NOOP") == ["z OK NOOP completed"]  # 3.1: no message events at all
    assert raw.command("f", "FETCH 1:3 (UID)")[-1] == "f OK FETCH completed"  # numbers stay valid
    # its own EXPUNGE answers with every expunge (RFC 9051 6.4.3), the one held back too
    raw.command("t", "STORE 1 +FLAGS (\\Deleted)")
    assert raw.command("x", "EXPUNGE") == ["* 3 EXPUNGE", "* 1 EXPUNGE", "x OK EXPUNGE completed"]
    # asking for the events again: NOTIFY SET reports what waited (3.1: an implicit NOOP)
    assert notify(raw, "(selected (MessageNew MessageExpunge))", "n2") == ["* 2 EXISTS", "* 2 RECENT"]
    other.close()
    raw.close()


def test_notify_set_first_tells_what_the_old_settings_asked_for(imap: ImapHarness) -> None:
    raw, other = session(imap), session(imap)
    raw.command("s", "SELECT INBOX")
    other.command("s", "SELECT INBOX")
    imap.deliver(DEMO, message("before"))
    # before any NOTIFY every change is told at the end of a command: NOTIFY SET is one (implicit NOOP)
    assert notify(raw, PERSONAL) == ["* 1 EXISTS", "* 1 RECENT"]
    other.close()
    raw.close()


def test_notify_none_stops_every_notification(imap: ImapHarness) -> None:
    raw = session(imap)
    raw.command("s", "SELECT INBOX")
    notify(raw, f"(selected (MessageNew MessageExpunge)) {PERSONAL}")
    assert raw.command("n2", "NOTIFY NONE") == ["n2 OK NOTIFY completed"]
    assert raw.need is Need.INPUT  # nothing to wait for between commands
    imap.deliver(DEMO, message("a"), "Archive")
    imap.deliver(DEMO, message("b"))
    assert raw.command("z", "NOOP") == ["z OK NOOP completed"]  # no events at all (3.1), INBOX's neither
    raw.close()


def test_mailbox_names_and_subscriptions_are_list_responses(imap: ImapHarness) -> None:
    raw, other = session(imap), session(imap)
    notify(raw, "(personal (MailboxName SubscriptionChange))")
    other.command("c", "CREATE Work")
    assert raw.line() == '* LIST (\\HasNoChildren) "/" "Work"'
    other.command("r", "RENAME Work Play")
    assert raw.line() == '* LIST (\\HasNoChildren) "/" "Play" ("OLDNAME" ("Work"))'  # 5.4
    other.command("u", "SUBSCRIBE Play")
    assert raw.line() == '* LIST (\\HasNoChildren \\Subscribed) "/" "Play"'  # 5.5
    other.command("u2", "UNSUBSCRIBE Play")
    assert raw.line() == '* LIST (\\HasNoChildren) "/" "Play"'
    other.command("d", "DELETE Play")
    assert raw.line() == '* LIST (\\NonExistent \\HasNoChildren) "/" "Play"'  # 5.4: \NonExistent
    # renamed twice before it is told: once, with the name the client knew
    other.command("c2", "CREATE One")
    raw.wait()
    raw.buf = b""
    other.command("r2", "RENAME One Two")
    other.command("r3", "RENAME Two Three")
    raw.wait()
    assert raw.buf == b'* LIST (\\HasNoChildren) "/" "Three" ("OLDNAME" ("One"))\r\n'
    raw.buf = b""
    # its own changes are not told (section 5)
    assert raw.command("c3", "CREATE Mine/Deep")[-1].startswith("c3 OK")
    assert raw.command("u3", "SUBSCRIBE Mine")[-1].startswith("u3 OK")
    assert raw.command("d3", "DELETE Mine/Deep")[-1].startswith("d3 OK")
    assert quiet(raw)
    other.close()
    raw.close()


def test_mailbox_specifiers_choose_the_mailboxes(imap: ImapHarness) -> None:
    raw, other = session(imap), session(imap)
    for name in ("Lists", "Lists/a", "Lists/a/b", "Misc", "Sub"):
        other.command("c", f"CREATE {name}")
    other.command("u", "SUBSCRIBE Sub")
    notify(
        raw,
        "(subtree-one Lists (MessageNew MessageExpunge)) (subscribed (MessageNew MessageExpunge)) "
        '(mailboxes ("Misc" "Nope") NONE) (personal (MessageNew MessageExpunge))',
    )
    for name in ("Lists/a/b", "Lists/a", "Misc", "Sub", "Trash"):
        imap.deliver(DEMO, message("x"), name)
    raw.wait()
    told = [status(line)[0] for line in raw.buf.decode().splitlines()]
    raw.buf = b""
    # subtree-one (RFC 7377) covers Lists/a, not Lists/a/b, but personal does; Misc's NONE comes first
    assert told == ["Lists/a", "Lists/a/b", "Sub", "Trash"]
    # "subscribed" follows the subscriptions (6.4): unsubscribed, Sub is personal's still; Misc never
    notify(raw, "(subscribed (MessageNew MessageExpunge))", "n2")
    other.command("u2", "UNSUBSCRIBE Sub")
    imap.deliver(DEMO, message("y"), "Sub")
    assert quiet(raw)
    other.command("u3", "SUBSCRIBE Misc")
    imap.deliver(DEMO, message("z"), "Misc")
    assert status(raw.line())[0] == "Misc"
    other.close()
    raw.close()


def test_annotation_changes_are_metadata_responses_without_values(imap: ImapHarness) -> None:
    raw, other = session(imap), session(imap)
    notify(raw, "(personal (MailboxMetadataChange ServerMetadataChange))")
    other.command("m", 'SETMETADATA INBOX (/private/comment "a" /shared/comment "b")')
    assert raw.line() == '* METADATA "INBOX" /private/comment /shared/comment'  # RFC 5464 4.4 form
    other.command("m2", 'SETMETADATA "" (/shared/comment "c")')
    assert raw.line() == '* METADATA "" /shared/comment'  # 5.7
    other.command("m3", "SETMETADATA INBOX (/private/comment NIL)")
    assert raw.line() == '* METADATA "INBOX" /private/comment'  # removed: named too (5.6)
    other.command("m4", 'SETMETADATA INBOX (/shared/comment "b")')  # the value it has: no change
    assert quiet(raw)
    assert raw.command("m5", 'SETMETADATA INBOX (/private/x "own")') == ["m5 OK SETMETADATA completed"]
    assert quiet(raw)  # its own (section 5)
    other.close()
    raw.close()


@pytest.mark.parametrize(
    ("groups", "reply"),
    [
        ("(personal (MessageNew MessageExpunge AnnotationChange))", "n NO [BADEVENT "),
        ("(personal (XFuture))", "n NO [BADEVENT "),
        ("(personal (MessageNew))", "n BAD MessageNew and MessageExpunge go together"),
        ("(personal (MessageExpunge))", "n BAD MessageNew and MessageExpunge go together"),
        ("(personal (FlagChange))", "n BAD FlagChange needs MessageNew and MessageExpunge"),
        ("(selected (MessageNew MessageExpunge)) (selected-delayed NONE)", "n BAD Only one SELECTED"),
        ("(selected (MailboxName))", "n BAD MailboxName cannot be used with SELECTED"),
        ("(personal (MessageNew (UID) MessageExpunge))", "n BAD Fetch attributes go only with"),
        ("(selected (MessageNew (UID) MessageNew MessageExpunge))", "n BAD MessageNew is given twice"),
        ("(elsewhere (MessageNew MessageExpunge))", "n BAD unknown NOTIFY mailbox filter"),
        ("(personal ())", "n BAD expected an event name"),
        ("(subtree () (MessageNew MessageExpunge))", "n BAD "),
        ("(selected (MessageNew (BODY[1.]) MessageExpunge))", "n BAD "),
        ("", "n BAD "),
    ],
)
def test_refusals_are_badevent_or_bad_and_change_nothing(imap: ImapHarness, groups: str, reply: str) -> None:
    raw = session(imap)
    notify(raw, PERSONAL, "n0")
    answer = raw.command("n", f"NOTIFY SET {groups}".rstrip())[-1]
    assert answer.startswith(reply), answer
    if "BADEVENT" in reply:  # 3.1: the events the server supports
        code = "BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange"
        assert code + " MailboxMetadataChange ServerMetadataChange)]" in answer
    imap.deliver(DEMO, message("still"), "Archive")  # the NOTIFY before the refusal stays
    assert status(raw.line())[0] == "Archive"
    raw.close()


def test_idle_sends_the_events_notify_asks_for(imap: ImapHarness) -> None:
    raw = session(imap)
    raw.command("s", "SELECT INBOX")
    notify(raw, PERSONAL)
    raw.send(b"i IDLE\r\n")
    assert raw.line() == "+ idling"
    imap.deliver(DEMO, message("to the selected one"))
    imap.deliver(DEMO, message("elsewhere"), "Archive")
    assert status(raw.line())[0] == "Archive"  # section 4: NOTIFY's events, not IDLE's EXISTS
    assert quiet(raw)
    raw.send(b"DONE\r\n")
    assert raw.until_tagged("i") == ["i OK IDLE terminated"]
    raw.close()


def test_condstore_qresync_and_uidonly(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one"))
    raw, other = session(imap), session(imap)
    raw.command("e", "ENABLE QRESYNC UIDONLY")
    raw.command("s", "SELECT INBOX")
    other.command("s", "SELECT INBOX")
    notify(raw, f"(selected (MessageNew (FLAGS MODSEQ) MessageExpunge FlagChange)) {PERSONAL}")
    imap.deliver(DEMO, message("elsewhere"), "Archive")
    assert "HIGHESTMODSEQ" in status(raw.line())[1]  # CONDSTORE is on (QRESYNC): 5.2 MUST
    imap.deliver(DEMO, message("two"))
    assert raw.line() == "* 2 EXISTS"
    assert raw.line() == "* 2 RECENT"
    assert re.fullmatch(r"\* 2 UIDFETCH \(FLAGS \(\\Recent\) MODSEQ \(\d+\)\)", raw.line())  # RFC 9586 3.3
    other.command("t", "STORE 1 +FLAGS (\\Deleted)")
    assert re.fullmatch(r"\* 1 UIDFETCH \(FLAGS \(\\Deleted \\Recent\) MODSEQ \(\d+\)\)", raw.line())
    other.command("x", "EXPUNGE")
    assert raw.line() == "* VANISHED 1"  # QRESYNC / UIDONLY: VANISHED for EXPUNGE (5.3)
    other.close()
    raw.close()


def test_too_much_to_tell_is_notificationoverflow_and_then_notify_none(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands_notify, "pending_limit", lambda max_mailboxes: 3)
    raw, other = session(imap), session(imap)
    raw.command("s", "SELECT INBOX")
    notify(raw, "(selected (MessageNew MessageExpunge)) (personal (MailboxName))")
    for n in range(5):
        other.command("c", f"CREATE Box{n}")
    assert raw.line().startswith("* OK [NOTIFICATIONOVERFLOW] ")  # 5.8
    assert raw.need is Need.INPUT
    imap.deliver(DEMO, message("after"))  # as after NOTIFY NONE: the selected mailbox's neither
    assert raw.command("z", "NOOP") == ["z OK NOOP completed"]
    assert notify(raw, "(selected (MessageNew MessageExpunge))", "n2") == ["* 1 EXISTS", "* 1 RECENT"]
    other.close()
    raw.close()
    assert imap.failures() == []


def test_the_selected_mailbox_deleted_meanwhile_ends_the_session(imap: ImapHarness) -> None:
    raw, other = session(imap), session(imap)
    raw.command("c", "CREATE Doomed")
    raw.command("s", "SELECT Doomed")
    notify(raw, "(selected (MessageNew MessageExpunge))")
    other.command("d", "DELETE Doomed")
    assert raw.line() == "* BYE The selected mailbox was deleted by another session"
    assert raw.closed
    other.close()


def test_another_accounts_changes_are_never_told(imap: ImapHarness) -> None:
    raw = session(imap)
    notify(raw, EVERYTHING)
    imap.deliver(OTHER, message("not yours"))
    other = session(imap, OTHER)
    other.command("c", "CREATE Theirs")
    assert quiet(raw)
    other.close()
    raw.close()


def test_the_owners_changes_to_a_shared_selected_mailbox_are_no_names_of_this_account(
    imap: ImapHarness,
) -> None:
    """A session follows the owner's changes of the shared mailbox it selected (decision 0073) for its view
    only: the owner's rename, annotations and so on are none of its NOTIFY's (which watches the session's own
    mailboxes), so no LIST or METADATA with the owner's names reaches it; its messages' events still do."""
    owner = session(imap)
    ok = owner.command("c", "CREATE Work")[-1]
    assert ok.startswith("c OK"), ok
    assert owner.command("a", f"SETACL Work {OTHER} lr")[-1] == "a OK SETACL completed"
    raw = session(imap, OTHER)
    assert raw.command("s", 'SELECT "Shared/demo/Work"')[-1].startswith("s OK")
    notify(raw, EVERYTHING)
    assert owner.command("m", "SETMETADATA Work (/private/comment {2+}\r\nhi)")[-1].startswith("m OK")
    assert owner.command("r", "RENAME Work Team")[-1] == "r OK RENAME completed"
    assert quiet(raw)
    imap.deliver(DEMO, message("to the team"), "Team")
    assert raw.line() == "* 1 EXISTS"
    owner.close()
    raw.close()


OPERATIONS = st.lists(
    st.sampled_from(["deliver", "deliver-archive", "expunge", "flag", "create", "delete", "wake", "noop"]),
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_a_client_that_follows_the_notifications_knows_the_counts(
    imap: ImapHarness, operations: list[str]
) -> None:
    """Whatever other sessions do, in whatever order the watcher is woken or polls: every line it gets is a
    well-formed untagged response, its EXISTS and EXPUNGE add up to the mailbox's count, and the last STATUS
    of Archive has Archive's count (one STATUS per change burst, with the counts when sent)."""
    inbox_id, archive_id = imap.mailbox_id(DEMO, "INBOX"), imap.mailbox_id(DEMO, "Archive")
    watcher, other = session(imap), session(imap)
    watcher.command("s", "SELECT INBOX")
    other.command("s", "SELECT INBOX")
    count = int(watcher.command("t", "STATUS INBOX (MESSAGES)")[0].split()[-1].rstrip(")"))
    notify(
        watcher,
        "(selected (MessageNew MessageExpunge FlagChange)) (personal (MessageNew MessageExpunge "
        "MailboxName))",
    )
    archive: int | None = None

    def take(lines: list[str]) -> None:
        nonlocal count, archive
        for line in lines:
            assert re.fullmatch(
                r"\* (\d+ (EXISTS|RECENT|EXPUNGE|FETCH \(.*\))|STATUS .*|LIST .*|FLAGS .*|OK .*)", line
            )
            if m := re.fullmatch(r"\* (\d+) EXISTS", line):
                count = int(m.group(1))
            elif line.endswith(" EXPUNGE"):
                count -= 1
            elif line.startswith('* STATUS "Archive"'):
                archive = status(line)[1]["MESSAGES"]

    for n, operation in enumerate(operations):
        if operation == "deliver":
            imap.deliver(DEMO, message(f"n{n}"))
        elif operation == "deliver-archive":
            imap.deliver(DEMO, message(f"a{n}"), "Archive")
        elif operation in ("expunge", "flag"):
            other.command(
                "t", "STORE 1:* +FLAGS (\\Deleted)" if operation == "expunge" else "STORE 1:* +FLAGS (x)"
            )
            if operation == "expunge":
                other.command("x", "EXPUNGE")
        elif operation == "create":
            other.command("c", f"CREATE Box{n}")
        elif operation == "delete":
            other.command("d", f"DELETE Box{n - 1}")
        elif operation == "wake":
            watcher.wait()
            lines, watcher.buf = watcher.buf.decode().splitlines(), b""
            take(lines)
        else:
            take(watcher.command("z", "NOOP")[:-1])
    watcher.wait()
    lines, watcher.buf = watcher.buf.decode().splitlines(), b""
    take(lines)
    assert count == imap.call(imap.store.mailbox_status(inbox_id)).mailbox.messages
    if archive is not None:
        assert archive == imap.call(imap.store.mailbox_status(archive_id)).mailbox.messages
    watcher.close()
    other.close()
    assert imap.failures() == []
