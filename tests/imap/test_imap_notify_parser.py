"""The NOTIFY command's grammar (RFC 5465 section 8, RFC 7377's subtree-one): the RFC's examples, the syntax
errors (BAD), NOTIFY commands generated from the typed structures and written as a client would (any case,
atoms, quoted strings, literals) parsing back to the same structure, and random arguments giving a command
or a parse error, never an exception. (The command's rules and what it does: test_imap_notify.py.)"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap.parser import (
    CommandReader,
    FetchAttribute,
    FetchBody,
    FetchItem,
    LiteralTooLarge,
    MailboxName,
    NeedContinuation,
    Noop,
    Notify,
    NotifyEvent,
    NotifyGroup,
    ParseError,
    ReaderEvent,
    Section,
    SectionText,
)
from tests.imap.test_imap_parser_roundtrip import case, fetch_items, mailboxes


def parse(data: bytes) -> list[ReaderEvent]:
    """Every event for `data` but NeedContinuation (the test plays a server that always says "+")."""
    reader = CommandReader(max_line=8192)
    reader.feed(data)
    events = []
    while (event := reader.next()) is not None:
        if not isinstance(event, NeedContinuation):
            events.append(event)
    return events


def parse_one(line: bytes) -> ReaderEvent:
    events = parse(line + b"\r\n")
    assert len(events) == 1, events
    return events[0]


def test_the_rfc_examples_parse_to_notify_commands() -> None:
    header = FetchBody(Section((), SectionText.HEADER_FIELDS, ("from", "to", "subject")), peek=True)
    lists = MailboxName("Lists", "Lists")
    expected = Notify(
        "a",
        (
            NotifyGroup(
                "SELECTED",
                (NotifyEvent("MessageNew", (FetchAttribute("UID"), header)), NotifyEvent("MessageExpunge")),
            ),
            NotifyGroup("SUBTREE", (NotifyEvent("MessageNew"), NotifyEvent("MessageExpunge")), (lists,)),
        ),
        status=True,
    )
    # as section 8's grammar writes it, and as the examples of 3.1 do (the events without parentheses)
    assert (
        parse_one(
            b"a notify set status (selected (MessageNew (uid body.peek[header.fields (from to subject)]) "
            b"MessageExpunge)) (subtree Lists (MessageNew MessageExpunge))"
        )
        == expected
    )
    assert (
        parse_one(
            b"a notify set status (selected MessageNew (uid body.peek[header.fields (from to subject)]) "
            b"MessageExpunge) (subtree Lists MessageNew MessageExpunge)"
        )
        == expected
    )
    assert parse_one(b"b NOTIFY NONE") == Notify("b", None)
    # names as atoms, quoted strings or literals; "inbox" alone is INBOX (RFC 9051 5.1); inboxes is a filter
    assert parse_one(b'c NOTIFY SET (mailboxes ("INBOX" inbox/x {3+}\r\nA b) NONE) (inboxes NONE)') == Notify(
        "c",
        (
            NotifyGroup(
                "MAILBOXES",
                (),
                (MailboxName("INBOX", "INBOX"), MailboxName("inbox/x", "inbox/x"), MailboxName("A b", "A b")),
            ),
            NotifyGroup("INBOXES"),
        ),
    )
    # event-ext: an unknown event is no syntax error (the command answers NO [BADEVENT]); any case
    assert parse_one(b"d NOTIFY SET (SUBTREE-ONE a (messagenew MESSAGEEXPUNGE XFuture))") == Notify(
        "d",
        (
            NotifyGroup(
                "SUBTREE-ONE",
                (NotifyEvent("MessageNew"), NotifyEvent("MessageExpunge"), NotifyEvent("XFuture")),
                (MailboxName("a", "a"),),
            ),
        ),
    )


@pytest.mark.parametrize(
    "line",
    [
        b"a NOTIFY",
        b"a NOTIFY SET",
        b"a NOTIFY SET STATUS",
        b"a NOTIFY NONE (personal NONE)",
        b"a NOTIFY SOME (personal NONE)",
        b"a NOTIFY SET (personal)",
        b"a NOTIFY SET (personal ())",
        b"a NOTIFY SET (personal NONE",
        b"a NOTIFY SET (elsewhere NONE)",
        b"a NOTIFY SET (mailboxes NONE)",
        b"a NOTIFY SET (mailboxes () NONE)",
        b"a NOTIFY SET (subtree a* NONE)",
        b"a NOTIFY SET (selected (MessageNew () MessageExpunge))",
        b"a NOTIFY SET (selected (MessageNew (NOSUCH) MessageExpunge))",
        b"a NOTIFY SET (selected (MessageNew (ALL) MessageExpunge))",
        b"a NOTIFY SET (personal NONE)(selected NONE)",
        b"a NOTIFY SET  (personal NONE)",
        b'a NOTIFY SET (mailboxes "a\\rb" NONE)',
    ],
)
def test_syntax_errors_are_parse_errors(line: bytes) -> None:
    assert isinstance(parse_one(line), ParseError)


_EXT_EVENTS = ["XFuture", "x-acl-change", "Message"]


@st.composite
def events(draw: st.DrawFn) -> tuple[tuple[NotifyEvent, ...], bytes]:
    if draw(st.integers(0, 4)) == 0:
        return (), case(draw, "NONE")
    found: list[NotifyEvent] = []
    texts: list[bytes] = []
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from([*NotifyEvent.NAMES, *_EXT_EVENTS]))
        text = case(draw, name) if name in NotifyEvent.NAMES else name.encode()  # an event-ext: as sent
        fetch: tuple[FetchItem, ...] = ()
        if name == "MessageNew" and draw(st.booleans()):
            items = draw(st.lists(fetch_items(), min_size=1, max_size=3))
            fetch = tuple(item for item, _ in items)
            text += b" (" + b" ".join(t for _, t in items) + b")"
        found.append(NotifyEvent(name, fetch))
        texts.append(text)
    if draw(st.booleans()):  # as RFC 5465's examples write them (3.1), without the parentheses
        return tuple(found), b" ".join(texts)
    return tuple(found), b"(" + b" ".join(texts) + b")"


@st.composite
def groups(draw: st.DrawFn) -> tuple[NotifyGroup, bytes]:
    kind = draw(st.sampled_from(NotifyGroup.FILTERS))
    text = case(draw, kind)
    names: tuple[MailboxName, ...] = ()
    if kind in NotifyGroup.WITH_MAILBOXES:
        drawn = draw(st.lists(mailboxes(), min_size=1, max_size=3))
        names = tuple(name for name, _ in drawn)
        written = [t for _, t in drawn]
        if len(drawn) == 1 and draw(st.booleans()):
            text += b" " + written[0]
        else:
            text += b" (" + b" ".join(written) + b")"
    found, event_text = draw(events())
    return NotifyGroup(kind, found, names), b"(" + text + b" " + event_text + b")"


@st.composite
def notify_commands(draw: st.DrawFn) -> tuple[Notify, bytes]:
    tag = draw(st.text(st.sampled_from("abcXYZ0129.]"), min_size=1, max_size=6))
    head = tag.encode() + b" " + case(draw, "NOTIFY") + b" "
    if draw(st.integers(0, 5)) == 0:
        return Notify(tag, None), head + case(draw, "NONE")
    status = draw(st.booleans())
    drawn = draw(st.lists(groups(), min_size=1, max_size=4))
    text = head + case(draw, "SET") + (b" " + case(draw, "STATUS") if status else b"")
    text += b" " + b" ".join(t for _, t in drawn)
    return Notify(tag, tuple(group for group, _ in drawn), status), text


@settings(max_examples=500, deadline=None)
@given(notify_commands())
def test_generated_notify_commands_parse_back_to_the_same_structure(generated: tuple[Notify, bytes]) -> None:
    expected, text = generated
    assert parse(text + b"\r\n") == [expected]


_NOTIFY_ARGUMENT_BYTES = st.lists(
    st.one_of(
        st.sampled_from(
            [b" ", b"(", b")", b"SET", b"NONE", b"STATUS", b"selected", b"subtree", b"mailboxes"]
        ),
        st.sampled_from(
            [b"MessageNew", b"MessageExpunge", b"(UID)", b"BODY[", b"]", b"INBOX", b'"a b"', b"*"]
        ),
        st.sampled_from([b"{2+}", b"{0}", b"\x00", b"\xc3\xa9", b"\r\n", b"\n", b"~{1+}", b"%", b"\\"]),
        st.binary(max_size=6),
    ),
    max_size=30,
).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(arguments=_NOTIFY_ARGUMENT_BYTES)
def test_random_notify_arguments_give_a_command_or_a_parse_error(arguments: bytes) -> None:
    """Whatever follows NOTIFY, the reader gives commands or ParseErrors (or the literal events around them),
    never an exception; a NOTIFY it gives is well formed: SET has a group, each group a known filter."""
    reader = CommandReader(max_line=4096)
    reader.feed(b"t NOTIFY " + arguments + b"\r\nz NOOP\r\n")
    events = []
    while (event := reader.next()) is not None:
        events.append(event)
        assert len(events) < 100
    for event in events:
        assert isinstance(event, Notify | Noop | ParseError | NeedContinuation | LiteralTooLarge)
        if isinstance(event, Notify) and event.groups is not None:
            assert event.groups
            assert all(group.filter in NotifyGroup.FILTERS for group in event.groups)
