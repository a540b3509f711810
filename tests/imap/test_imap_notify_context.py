"""NOTIFY with CONTEXT=SEARCH and CONTEXT=SORT (RFC 5465 section 7 and 5.1-5.3; decision 0077): the fetch
attributes of `RETURN (UPDATE (fetch-att ...))`, sent for a new message that joins a result, between its
EXISTS and the ESEARCH ADDTO, in one FETCH response with NOTIFY's MessageNew attributes, never for a message
that joins by a flag change or that the session added itself; the searches' ADDTO and REMOVEFROM following
the NOTIFY settings of the selected mailbox (no FlagChange, a snapshot, SELECTED-DELAYED, NOTIFY NONE); and
the grammar of the UPDATE modifier (the RFC's example, errors, property tests)."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.imap import commands_notify
from postoffice.imap.parser import (
    CommandReader,
    FetchAttribute,
    FetchBody,
    FetchItem,
    ParseError,
    Search,
    SearchFlag,
    SearchText,
    Section,
    SectionText,
    Sort,
)
from postoffice.imap.protocol import Need
from tests.imap.test_imap_parser_roundtrip import case, fetch_items
from tests.imap.transcript import DEMO, ImapHarness, Transcript, ok, told

SUBJECT = "BODY[HEADER.FIELDS (SUBJECT)]"


def mail(subject: str, sender: str = "boss@remote.test", day: int = 1) -> bytes:
    return (
        f"From: {sender}\r\nTo: {DEMO}\r\nSubject: {subject}\r\n"
        f"Date: Tue, {day:02d} Dec 2026 12:00:00 +0000\r\n\r\nbody\r\n"
    ).encode()


def selected(imap: ImapHarness) -> Transcript:
    raw = imap.connect()
    raw.login()
    assert raw.command("s", "SELECT INBOX")[-1].startswith("s OK")
    return raw


def flags_of(imap: ImapHarness, uid: int) -> frozenset[str]:
    (found,) = imap.call(imap.store.get_messages(imap.mailbox_id(DEMO, "INBOX"), [uid]))
    return found.flags


# ------------------------------------------------------------------------ section 7: UPDATE's fetch-atts


def test_the_rfc_example_exists_then_the_fetch_then_the_addto(imap: ImapHarness) -> None:
    imap.deliver(DEMO, mail("first"))
    imap.deliver(DEMO, mail("hello", sender="friend@remote.test"))
    raw = selected(imap)
    command = f'SEARCH RETURN (COUNT UPDATE (UID {SUBJECT})) FROM "boss"'
    assert ok(raw, "a00", command)[:-1] == ['* ESEARCH (TAG "a00") COUNT 1']
    imap.deliver(DEMO, mail("Re: good morning"))
    imap.deliver(DEMO, mail("not for the search", sender="friend@remote.test"))
    # RFC 5465 7: "the EXISTS response MUST precede any FETCH responses, and together they MUST precede the
    # ESEARCH response"; only the message that joined the result is fetched
    assert ok(raw, "n", "NOOP") == [
        "* 4 EXISTS",
        "* 4 RECENT",
        f"* 3 FETCH (UID 3 {SUBJECT} {{29}}",
        "Subject: Re: good morning\r\n\r\n",
        ")",
        '* ESEARCH (TAG "a00") ADDTO (0 3)',
        "n OK NOOP completed",
    ]
    # BODY[...] without .PEEK set no \Seen: the server never acts on what 5.2 asks clients not to use
    assert "\\Seen" not in flags_of(imap, 3)
    raw.close()


def test_uid_sort_with_fetch_attributes_gives_positions_and_one_fetch_per_new_member(
    imap: ImapHarness,
) -> None:
    for day, subject in ((3, "c"), (1, "a")):
        imap.deliver(DEMO, mail(subject, day=day))
    raw = selected(imap)
    ok(raw, "s", "UID SORT RETURN (UPDATE (ENVELOPE)) (DATE) UTF-8 ALL")
    imap.deliver(DEMO, mail("b", day=2))
    imap.deliver(DEMO, mail("d", day=4))
    reply = ok(raw, "n", "NOOP")
    fetches = [line for line in reply if " FETCH " in line]
    assert [line.split(" (")[0] for line in fetches] == ["* 3 FETCH", "* 4 FETCH"]
    assert all("ENVELOPE (" in line and "UID " in line for line in fetches)
    # the sort order of the dates: a(2) b(3) c(1) d(4)
    addto = '* ESEARCH (TAG "s") UID ADDTO (2 3 4 4)'
    assert reply.index("* 4 EXISTS") < reply.index(fetches[0]) < reply.index(fetches[1]) < reply.index(addto)
    raw.close()


def test_no_fetch_for_a_message_that_joins_by_a_flag_change_or_that_the_session_added(
    imap: ImapHarness,
) -> None:
    imap.deliver(DEMO, mail("one"))
    raw, other = selected(imap), selected(imap)
    ok(raw, "u", "UID SEARCH RETURN (UPDATE (ENVELOPE)) FLAGGED")
    ok(other, "f", "STORE 1 +FLAGS (\\Flagged)")
    # RFC 5465 7: "No untagged FETCH response SHOULD be returned if a message becomes a member of UPDATE
    # SEARCH due to flag or annotation changes": the FETCH FLAGS of FlagChange, the ADDTO, no ENVELOPE
    assert ok(raw, "n", "NOOP") == [
        "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))",
        '* ESEARCH (TAG "u") UID ADDTO (0 1)',
        "n OK NOOP completed",
    ]
    # its own APPEND: EXISTS and ADDTO, no FETCH (section 1: "appended in another session"; 5.2)
    data = mail("mine")
    raw.send(b"p APPEND INBOX (\\Flagged) {%d+}\r\n" % len(data) + data + b"\r\n")
    reply = raw.until_tagged("p")
    assert reply[:3] == ["* 2 EXISTS", "* 2 RECENT", '* ESEARCH (TAG "u") UID ADDTO (0 2)']
    assert reply[-1].startswith("p OK [APPENDUID")
    # another's APPEND of the same is fetched
    other.send(b"q APPEND INBOX (\\Flagged) {%d+}\r\n" % len(data) + data + b"\r\n")
    assert other.until_tagged("q")[-1].startswith("q OK")
    reply = ok(raw, "n2", "NOOP")
    assert reply[2].startswith("* 3 FETCH (UID 3 ENVELOPE (")
    assert reply[3] == '* ESEARCH (TAG "u") UID ADDTO (0 3)'
    other.close()
    raw.close()


def test_notify_and_update_attributes_are_one_fetch_response_without_duplicates(imap: ImapHarness) -> None:
    raw = selected(imap)
    ok(raw, "u", f"UID SEARCH RETURN (UPDATE (UID {SUBJECT} FLAGS)) FROM boss")
    ok(raw, "v", "SEARCH RETURN (UPDATE (INTERNALDATE)) ALL")
    ok(
        raw,
        "n",
        f"NOTIFY SET (selected (MessageNew (UID FLAGS {SUBJECT.replace('BODY', 'BODY.PEEK')}) "
        "MessageExpunge))",
    )
    imap.deliver(DEMO, mail("pushed"))
    imap.deliver(DEMO, mail("other", sender="friend@remote.test"))
    raw.wait()
    data, raw.buf = raw.buf.decode(), b""
    # 5.2: "These attributes SHOULD be combined into a single FETCH response. The server SHOULD avoid
    # sending duplicate data"; BODY[x] and BODY.PEEK[x] are one
    head = (
        "* {0} FETCH (UID {0} FLAGS (\\Recent) BODY[HEADER.FIELDS (SUBJECT)] {{{1}}}\r\nSubject: {2}\r\n\r\n"
    )
    assert data.startswith("* 2 EXISTS\r\n* 2 RECENT\r\n" + head.format(1, 19, "pushed") + ' INTERNALDATE "')
    assert head.format(2, 18, "other") + ' INTERNALDATE "' in data
    assert data.count(" FETCH ") == 2
    assert data.endswith('* ESEARCH (TAG "u") UID ADDTO (0 1)\r\n* ESEARCH (TAG "v") ADDTO (0 1:2)\r\n')
    raw.close()


def test_modseq_among_the_attributes_is_a_condstore_enabling_command(imap: ImapHarness) -> None:
    raw = selected(imap)
    reply = ok(raw, "u", "SEARCH RETURN (UPDATE (MODSEQ)) ALL")
    assert reply[0].startswith("* OK [HIGHESTMODSEQ ")  # RFC 7162 3.1: before the command's own responses
    imap.deliver(DEMO, mail("x"))
    reply = ok(raw, "n", "NOOP")
    assert re.fullmatch(r"\* 1 FETCH \(UID 1 MODSEQ \(\d+\)\)", reply[2]), reply
    raw.close()


def test_uidonly_sessions_get_uidfetch_responses(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    ok(raw, "e", "ENABLE UIDONLY")
    ok(raw, "s", "SELECT INBOX")
    ok(raw, "u", "UID SEARCH RETURN (UPDATE (FLAGS)) ALL")
    imap.deliver(DEMO, mail("x"))
    assert ok(raw, "n", "NOOP")[2:4] == [
        "* 1 UIDFETCH (FLAGS (\\Recent))",  # RFC 9586 3.3: no UID data item unless asked for
        '* ESEARCH (TAG "u") UID ADDTO (0 1)',
    ]
    raw.close()


def test_beyond_the_limit_new_members_are_told_without_their_fetch(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands_notify, "MAX_NEW_FETCH", 2)
    raw = selected(imap)
    ok(raw, "u", "SEARCH RETURN (UPDATE (ENVELOPE)) ALL")
    for n in range(3):
        imap.deliver(DEMO, mail(f"m{n}"))
    assert ok(raw, "n", "NOOP") == [
        "* 3 EXISTS",
        "* 3 RECENT",
        '* ESEARCH (TAG "u") ADDTO (0 1:3)',
        "n OK NOOP completed",
    ]
    imap.deliver(DEMO, mail("m3"))
    assert ok(raw, "n2", "NOOP")[2].startswith("* 4 FETCH (UID 4 ENVELOPE (")
    raw.close()


# ----------------------------------------------------- searches follow the selected mailbox's NOTIFY


def test_without_flagchange_flag_changes_give_no_addto_until_told(imap: ImapHarness) -> None:
    for n in range(2):
        imap.deliver(DEMO, mail(f"m{n}"))
    raw, other = selected(imap), selected(imap)
    ok(raw, "u", "SEARCH RETURN (UPDATE) FLAGGED")
    ok(raw, "n", "NOTIFY SET (selected (MessageNew MessageExpunge))")
    ok(other, "f", "STORE 1 +FLAGS (\\Flagged)")
    # RFC 5465 5.1: ADDTO and REMOVEFROM go with the FlagChange event, which the client did not ask for
    assert told(raw) == []
    assert ok(raw, "z", "NOOP") == ["z OK NOOP completed"]
    # new messages are told (MessageNew), and join the result as they come
    imap.deliver(DEMO, mail("new"), flags=("\\Flagged",))
    assert told(raw) == ["* 3 EXISTS", "* 3 RECENT", '* ESEARCH (TAG "u") ADDTO (0 3)']
    # the session's own STORE tells the flags in its answer: the result follows at once
    assert ok(raw, "t", "STORE 2 +FLAGS (\\Flagged)")[1:] == [
        '* ESEARCH (TAG "u") ADDTO (0 2)',
        "t OK STORE completed",
    ]
    # asking for FlagChange: NOTIFY SET's implicit NOOP tells the flags, then the ADDTO they cause
    assert ok(raw, "n2", "NOTIFY SET (selected (MessageNew MessageExpunge FlagChange))")[:-1] == [
        "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))",
        '* ESEARCH (TAG "u") ADDTO (0 1)',
    ]
    other.close()
    raw.close()


def test_a_snapshot_sends_no_updates_until_its_own_expunge(imap: ImapHarness) -> None:
    for n in range(3):
        imap.deliver(DEMO, mail(f"m{n}"))
    raw, other = selected(imap), selected(imap)
    ok(raw, "u", "SEARCH RETURN (UPDATE) ALL")
    ok(raw, "n", "NOTIFY SET (personal (MessageNew MessageExpunge))")  # no SELECTED: a snapshot (3.1)
    ok(other, "d", "STORE 2 +FLAGS.SILENT (\\Deleted)")
    ok(other, "x", "EXPUNGE")
    imap.deliver(DEMO, mail("new"))
    assert told(raw) == []
    assert ok(raw, "z", "NOOP") == ["z OK NOOP completed"]  # neither REMOVEFROM nor ADDTO (5.2, 5.3)
    # its own EXPUNGE tells every expunge (RFC 9051 6.4.3), each after its REMOVEFROM (RFC 5267 4.3.4)
    ok(raw, "t", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert ok(raw, "e", "EXPUNGE")[:-1] == [
        '* ESEARCH (TAG "u") REMOVEFROM (0 1:2)',
        "* 2 EXPUNGE",
        "* 1 EXPUNGE",
    ]
    # NOTIFY NONE: nothing at all either
    ok(raw, "n2", "NOTIFY NONE")
    imap.deliver(DEMO, mail("later"))
    assert ok(raw, "z2", "NOOP") == ["z2 OK NOOP completed"]
    other.close()
    raw.close()


def test_selected_delayed_holds_removefrom_with_the_expunge_until_a_command(imap: ImapHarness) -> None:
    for n in range(2):
        imap.deliver(DEMO, mail(f"m{n}"))
    raw, other = selected(imap), selected(imap)
    ok(raw, "u", "SEARCH RETURN (UPDATE) ALL")
    ok(raw, "n", "NOTIFY SET (selected-delayed (MessageNew MessageExpunge))")
    ok(other, "d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    ok(other, "x", "EXPUNGE")
    assert told(raw) == []  # 6.1.2: the MessageExpunge event waits, its REMOVEFROM with it (5.3)
    assert raw.need is Need.NOTIFY
    assert ok(raw, "z", "NOOP")[:-1] == ['* ESEARCH (TAG "u") REMOVEFROM (0 1)', "* 1 EXPUNGE"]
    # with SELECTED, at once, between commands
    ok(raw, "n2", "NOTIFY SET (selected (MessageNew MessageExpunge))")
    ok(other, "d2", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    ok(other, "x2", "EXPUNGE")
    assert told(raw) == ['* ESEARCH (TAG "u") REMOVEFROM (0 1)', "* 1 EXPUNGE"]
    other.close()
    raw.close()


# ------------------------------------------------------------------------------------------ the grammar


def parse(line: bytes) -> object:
    reader = CommandReader(max_line=8192)
    reader.feed(line + b"\r\n")
    return reader.next()


def test_the_rfc_example_parses_and_both_spellings_are_taken() -> None:
    subject = FetchBody(Section((), SectionText.HEADER_FIELDS, ("TO", "FROM", "SUBJECT")))
    expected = Search(
        "a00",
        (SearchText("FROM", "boss"),),
        None,
        ("COUNT", "UPDATE"),
        update_fetch=(FetchAttribute("UID"), subject),
    )
    assert parse(
        b'a00 SEARCH RETURN (COUNT UPDATE (UID BODY[HEADER.FIELDS (TO FROM SUBJECT)])) FROM "boss"'
    ) == (expected)
    # section 8's modifier-update has no space before "(" (RFC 4466's search-ret-opt-ext has one)
    assert parse(
        b'a00 SEARCH RETURN (COUNT UPDATE(UID BODY[HEADER.FIELDS (TO FROM SUBJECT)])) FROM "boss"'
    ) == (expected)
    sort = parse(b"s UID SORT RETURN (update (envelope) min) (DATE) UTF-8 ALL")
    assert isinstance(sort, Sort)
    assert (sort.return_options, sort.update_fetch, sort.uid) == (
        ("UPDATE", "MIN"),
        (FetchAttribute("ENVELOPE"),),
        True,
    )
    plain = parse(b"p SEARCH RETURN (UPDATE) ALL")
    assert isinstance(plain, Search)
    assert plain.update_fetch == ()


@pytest.mark.parametrize(
    "line",
    [
        b"a SEARCH RETURN (UPDATE ()) ALL",
        b"a SEARCH RETURN (UPDATE (ALL)) ALL",  # a macro is no fetch-att
        b"a SEARCH RETURN (UPDATE (UID) (FLAGS)) ALL",
        b"a SEARCH RETURN (UPDATE  (UID)) ALL",
        b"a SEARCH RETURN (UPDATE (UID ) ) ALL",
        b"a SEARCH RETURN (COUNT (UID)) ALL",  # only UPDATE takes them
        b"a SEARCH RETURN (UPDATE (BODY[1.])) ALL",
        b"a SEARCH RETURN (UPDATE (UID) UPDATE) ALL",
        b"a SORT RETURN (UPDATE (NOSUCH)) (DATE) UTF-8 ALL",
    ],
)
def test_syntax_errors_are_parse_errors(line: bytes) -> None:
    assert isinstance(parse(line), ParseError)


@st.composite
def update_commands(draw: st.DrawFn) -> tuple[Search | Sort, bytes]:
    items = draw(st.lists(fetch_items(), min_size=1, max_size=4))
    fetch: tuple[FetchItem, ...] = tuple(item for item, _ in items)
    update = case(draw, "UPDATE") + draw(st.sampled_from([b" ", b""]))
    update += b"(" + b" ".join(text for _, text in items) + b")"
    others = draw(
        st.lists(st.sampled_from(["MIN", "MAX", "COUNT", "SAVE", "CONTEXT"]), unique=True, max_size=3)
    )
    position = draw(st.integers(0, len(others)))
    words = [case(draw, o) for o in others]
    words.insert(position, update)
    options = tuple(o for o in others)
    names = (*options[:position], "UPDATE", *options[position:])
    uid = draw(st.booleans())
    head = b"t " + (b"UID " if uid else b"") + b"RETURN (" + b" ".join(words) + b")"
    if draw(st.booleans()):
        text = head.replace(b"RETURN", b"SORT RETURN", 1) + b" (SUBJECT) UTF-8 ALL"
        return Sort("t", (("SUBJECT", False),), "UTF-8", (SearchFlag("ALL"),), names, uid, None, fetch), text
    text = head.replace(b"RETURN", b"SEARCH RETURN", 1) + b" ALL"
    return Search("t", (SearchFlag("ALL"),), None, names, uid, None, fetch), text


@settings(max_examples=400, deadline=None)
@given(update_commands())
def test_generated_update_fetch_attributes_parse_back_to_the_same_structure(
    generated: tuple[Search | Sort, bytes],
) -> None:
    expected, text = generated
    assert parse(text) == expected


_UPDATE_BYTES = st.lists(
    st.one_of(
        st.sampled_from([b" ", b"(", b")", b"UPDATE", b"COUNT", b"UID", b"ENVELOPE", b"BODY[", b"]", b"ALL"]),
        st.sampled_from([b"{2+}", b"\x00", b"\r\n", b"PEEK", b".", b"<1.2>", b"HEADER.FIELDS"]),
        st.binary(max_size=5),
    ),
    max_size=25,
).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(arguments=_UPDATE_BYTES)
def test_random_return_lists_give_a_command_or_a_parse_error(arguments: bytes) -> None:
    """Whatever RETURN holds, the reader gives a SEARCH (whose fetch attributes came with UPDATE) or a
    ParseError, never an exception."""
    reader = CommandReader(max_line=4096)
    reader.feed(b"t SEARCH RETURN (" + arguments + b") ALL\r\nz NOOP\r\n")
    events = []
    while (event := reader.next()) is not None:
        events.append(event)
        assert len(events) < 100
    for event in events:
        if isinstance(event, Search) and event.update_fetch:
            assert event.return_options is not None
            assert "UPDATE" in event.return_options


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(st.sampled_from(["boss", "friend", "flag", "own", "expunge", "noop"]), max_size=8),
    notify=st.booleans(),
)
def test_every_new_member_from_elsewhere_is_fetched_once_and_before_its_addto(
    imap: ImapHarness, steps: list[str], notify: bool
) -> None:
    """For random deliveries, appends, flag changes and expunges, with or without a NOTIFY: only messages
    that someone else added are fetched, each once, after an EXISTS and before the ADDTO that names it; every
    message from "boss" that is still there at the end was fetched."""
    raw, other = selected(imap), selected(imap)
    ok(raw, "u", "UID SEARCH RETURN (UPDATE (ENVELOPE)) OR FROM boss FLAGGED")
    if notify:
        ok(raw, "n", "NOTIFY SET (selected (MessageNew MessageExpunge FlagChange))")
    delivered: set[int] = set()
    from_boss: set[int] = set()
    lines: list[str] = []
    for n, step in enumerate(steps):
        if step in ("boss", "friend"):
            uid = imap.deliver(DEMO, mail(f"m{n}", sender=f"{step}@remote.test"))
            delivered.add(uid)
            if step == "boss":
                from_boss.add(uid)
        elif step == "own":
            data = mail(f"own{n}")
            raw.send(b"p APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
            lines += raw.until_tagged("p")
        elif step == "flag":
            other.command("f", "STORE 1:* +FLAGS (\\Flagged)")  # (BAD while the mailbox is empty)
        elif step == "expunge":
            other.command("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
            ok(other, "x", "EXPUNGE")
        else:
            lines += raw.command("z", "NOOP")
    lines += raw.command("z2", "NOOP")
    if notify:
        lines += told(raw)
    fetched = [
        int(m.group(1)) for line in lines if (m := re.match(r"\* \d+ FETCH \(UID (\d+) ENVELOPE", line))
    ]
    assert len(fetched) == len(set(fetched))
    assert set(fetched) <= delivered
    present = set(imap.call(imap.store.snapshot(imap.mailbox_id(DEMO, "INBOX"))).uids)
    assert from_boss & present <= set(fetched)
    for uid in fetched:
        at = next(i for i, line in enumerate(lines) if f"(UID {uid} ENVELOPE" in line)
        addto = next(i for i, line in enumerate(lines) if "UID ADDTO" in line and i > at)
        assert any(line.endswith(" EXISTS") for line in lines[:at])
        assert addto > at
    raw.close()
    other.close()
    assert imap.failures() == []
