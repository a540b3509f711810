"""IMAP command reader: framing, literals (synchronizing, LITERAL+/LITERAL-, literal8), limits, APPEND
streaming, resynchronisation after errors, IDLE/AUTHENTICATE modes, STARTTLS, and the property tests
(arbitrary input never raises, bounded memory, split invariance).
Policy: docs/decisions/0011-imap-parser.md."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.imap.parser import (
    APPEND_CHUNK_SIZE,
    LITERAL_MINUS_LIMIT,
    Append,
    AppendData,
    AppendMessage,
    AppendMessageStart,
    AuthenticateResponse,
    CommandReader,
    Idle,
    IdleDone,
    ImapUsageError,
    LiteralTooLarge,
    Login,
    MailboxName,
    NeedContinuation,
    Noop,
    ParseError,
    ReaderEvent,
    Select,
    StartTls,
)

INBOX = MailboxName("INBOX", "INBOX")


def drain(reader: CommandReader, data: bytes = b"") -> list[ReaderEvent]:
    reader.feed(data)
    events = []
    while (event := reader.next()) is not None:
        events.append(event)
    return events


# ------------------------------------------------------------------------------------------------ framing


def test_pipelined_commands_and_bare_lf_and_empty_lines() -> None:
    events = drain(CommandReader(), b"a NOOP\r\n\r\nb NOOP\nc SELECT inbox\r\n")
    assert events == [Noop("a"), Noop("b"), Select("c", MailboxName("INBOX", "inbox"))]


def test_byte_by_byte_gives_the_same_events() -> None:
    data = b"A001 LOGIN {11}\r\nFRED FOOBAR {7+}\r\nfat man\r\nA2 NOOP\r\n"
    reader = CommandReader()
    events: list[ReaderEvent] = []
    for i in range(len(data)):
        events += drain(reader, data[i : i + 1])
    assert events == [NeedContinuation("A001", 11), Login("A001", "FRED FOOBAR", "fat man"), Noop("A2")]


def test_literal_octets_are_never_parsed_as_commands() -> None:
    events = drain(CommandReader(), b"a LOGIN {10+}\r\nb LOGOUT\r\n {1}\r\nx\r\n")
    assert events == [NeedContinuation("a", 1), Login("a", "b LOGOUT\r\n", "x")]


# --------------------------------------------------------------------------------------- literal limits


def test_synchronizing_literal_over_the_limit_is_refused_before_reading() -> None:
    reader = CommandReader(max_line=2048)
    events = drain(reader, b"a LOGIN {5000}\r\nb NOOP\r\n")
    assert events == [LiteralTooLarge("a", 5000, 2048 - len(b"a LOGIN {5000}"), True), Noop("b")]


def test_non_synchronizing_literal_over_the_limit_is_skipped_exactly() -> None:
    reader = CommandReader(max_line=2048)
    payload = b"c LOGOUT\r\n" * 500  # 5000 octets that look like commands
    events = drain(reader, b"a LOGIN {5000+}\r\n" + payload + b" rest of line\r\nb NOOP\r\n")
    assert events == [LiteralTooLarge("a", 5000, 2048 - len(b"a LOGIN {5000+}"), False), Noop("b")]


def test_discarded_line_with_another_non_synchronizing_literal_is_skipped_too() -> None:
    reader = CommandReader(max_line=2048)
    data = b"a LOGIN {5000+}\r\n" + b"x" * 5000 + b" {10+}\r\nd LOGOUT\r\n\r\nb NOOP\r\n"
    assert drain(reader, data)[1:] == [Noop("b")]


def test_literal_minus_limits_non_synchronizing_literals_to_4096() -> None:
    reader = CommandReader(literal_plus=False)
    data = b"a LOGIN {5000+}\r\n" + b"y" * 5000 + b" p\r\nb LOGIN {4096+}\r\n" + b"u" * 4096 + b" p\r\n"
    events = drain(reader, data)
    assert events == [LiteralTooLarge("a", 5000, LITERAL_MINUS_LIMIT, False), Login("b", "u" * 4096, "p")]


def test_small_literals_count_towards_the_command_size() -> None:
    reader = CommandReader(max_line=1024)
    events = drain(reader, b"a LOGIN {600+}\r\n" + b"u" * 600 + b" {600}\r\nb NOOP\r\n")
    assert events == [
        LiteralTooLarge("a", 600, 1024 - 600 - len(b"a LOGIN {600+}") - len(b" {600}"), True),
        Noop("b"),
    ]


def test_append_literal_over_max_literal_is_too_large() -> None:
    reader = CommandReader(max_literal=1000)
    events = drain(reader, b"a APPEND INBOX {1001}\r\nb NOOP\r\n")
    assert events == [LiteralTooLarge("a", 1001, 1000, True), Noop("b")]
    events = drain(reader, b"a APPEND INBOX {1001+}\r\n" + b"z" * 1001 + b"\r\nb NOOP\r\n")
    assert events == [LiteralTooLarge("a", 1001, 1000, False), Noop("b")]


# -------------------------------------------------------------------------------------- APPEND streaming


def test_large_append_is_streamed_in_fixed_chunks() -> None:
    size = APPEND_CHUNK_SIZE * 3 + 17
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    reader = CommandReader()
    events = drain(reader, b"A1 APPEND INBOX {%d+}\r\n" % size)
    message = AppendMessage((), None, size)
    assert events == [AppendMessageStart("A1", INBOX, 0, message, False)]
    chunks: list[bytes] = []
    for i in range(0, size, 10_000):  # arbitrary reads
        for event in drain(reader, body[i : i + 10_000]):
            assert isinstance(event, AppendData)
            chunks.append(event.data)
            assert reader.buffered_bytes <= APPEND_CHUNK_SIZE
    assert [len(c) for c in chunks] == [APPEND_CHUNK_SIZE] * 3 + [17]
    assert b"".join(chunks) == body
    assert drain(reader, b"\r\n") == [Append("A1", INBOX, (message,))]


def test_multiappend_error_after_a_message_is_a_parse_error() -> None:
    events = drain(CommandReader(), b"A1 APPEND INBOX {1+}\r\nx (\\Seen) bogus\r\nA2 NOOP\r\n")
    assert [type(e) for e in events] == [AppendMessageStart, AppendData, ParseError, Noop]
    assert events[2] == ParseError("A1", "expected the message literal but found 'bogus'")


def test_append_syntax_error_is_reported_before_the_literal_is_read() -> None:
    reader = CommandReader()
    assert drain(reader, b'A1 APPEND INBOX "not a date" {5}\r\n') == [ParseError("A1", reader_msg_date())]
    # synchronizing: the client waits for "+", gets BAD, sends the next command
    assert drain(reader, b"A2 NOOP\r\n") == [Noop("A2")]
    # non-synchronizing: its octets are skipped
    assert drain(reader, b"A3 APPEND (INBOX {5+}\r\nA9 NOOP\r\nA4 NOOP\r\n")[1:] == [Noop("A4")]


def reader_msg_date() -> str:
    return 'invalid date-time (expected "dd-Mon-yyyy hh:mm:ss +zzzz")'


def test_refuse_literal_right_after_append_start_or_continuation() -> None:
    reader = CommandReader()
    reader.feed(b"A1 APPEND Nope {100}\r\n")
    start = reader.next()
    assert isinstance(start, AppendMessageStart)
    assert start.synchronizing
    reader.refuse_literal()  # the server answers NO [TRYCREATE] instead of "+"
    assert drain(reader, b"A2 NOOP\r\n") == [Noop("A2")]
    reader.feed(b"A3 LOGIN {3}\r\n")
    assert reader.next() == NeedContinuation("A3", 3)
    reader.refuse_literal()
    assert drain(reader, b"A4 NOOP\r\n") == [Noop("A4")]
    with pytest.raises(ImapUsageError):
        reader.refuse_literal()


def test_discard_command_in_the_middle_of_append_data() -> None:
    reader = CommandReader()
    events = drain(reader, b"A1 APPEND INBOX {200000+}\r\n" + b"a" * APPEND_CHUNK_SIZE)
    assert [type(e) for e in events] == [AppendMessageStart, AppendData]
    reader.discard_command()  # e.g. the spool failed: the server answers NO and ignores the rest
    rest = b"A9 NOOP\r\n" * ((200000 - APPEND_CHUNK_SIZE) // 9) + b"b" * ((200000 - APPEND_CHUNK_SIZE) % 9)
    assert drain(reader, rest + b" (\\Seen) {3+}\r\nabc\r\nA2 NOOP\r\n") == [Noop("A2")]


def test_append_utf8_data_extension_needs_literal8() -> None:
    events = drain(CommandReader(), b"A1 APPEND INBOX UTF8 (~{2}\r\nhi)\r\n")
    assert events[-1] == Append("A1", INBOX, (AppendMessage((), None, 2, binary=True, utf8=True),))
    events = drain(CommandReader(), b"A1 APPEND INBOX UTF8 (~{2+}\r\nhi\r\nA2 NOOP\r\n")
    assert isinstance(events[-2], ParseError)
    assert events[-1] == Noop("A2")


# ------------------------------------------------------------------------------------- errors and resync


def test_line_too_long_is_reported_once_and_skipped() -> None:
    reader = CommandReader(max_line=1024)
    events = drain(reader, b"A1 SEARCH " + b"x" * 5000)
    assert events == [ParseError("A1", "command line too long")]
    assert reader.buffered_bytes <= 64
    assert drain(reader, b"y" * 5000 + b"\r\nA2 NOOP\r\n") == [Noop("A2")]


def test_line_too_long_ending_in_a_non_synchronizing_literal_skips_the_literal() -> None:
    reader = CommandReader(max_line=1024)
    data = b"A1 LOGIN " + b"x" * 2000 + b" {18+}\r\nA8 NOOP\r\nA9 NOOP\r\n\r\nA2 NOOP\r\n"
    assert drain(reader, data) == [ParseError("A1", "command line too long"), Noop("A2")]


def test_syntax_error_before_a_literal_skips_its_octets() -> None:
    reader = CommandReader()
    events = drain(reader, b"A1 FOO {9+}\r\nA8 NOOP\r\n\r\nA2 NOOP\r\n")
    assert events == [ParseError("A1", "unknown command FOO"), Noop("A2")]
    events = drain(reader, b"{3}\r\nA3 NOOP\r\n")
    assert events == [ParseError(None, "missing or invalid tag"), Noop("A3")]


# ----------------------------------------------------------------------------------------------- modes


def test_idle_ends_with_done_in_any_case() -> None:
    reader = CommandReader()
    reader.feed(b"A1 IDLE\r\ndone\r\nA2 IDLE\r\nA3 NOOP\r\nA4 NOOP\r\n")
    assert reader.next() == Idle("A1")
    reader.expect_idle_done()
    assert reader.next() == IdleDone()
    assert reader.next() == Idle("A2")
    reader.expect_idle_done()
    assert reader.next() == ParseError(None, "expected DONE to end IDLE")
    assert reader.next() == Noop("A4")


def test_authenticate_continuation_lines() -> None:
    reader = CommandReader()
    reader.feed(b"A1 AUTHENTICATE PLAIN\r\nAGZyZWQAZmF0IG1hbg==\r\n*\r\nA2 NOOP\r\n")
    assert reader.next() is not None
    reader.expect_authenticate_response()
    assert reader.next() == AuthenticateResponse(b"AGZyZWQAZmF0IG1hbg==")
    reader.expect_authenticate_response()
    response = reader.next()
    assert isinstance(response, AuthenticateResponse)
    assert response.cancelled
    assert reader.next() == Noop("A2")


def test_starttls_discards_everything_buffered_after_it() -> None:
    reader = CommandReader()
    assert drain(reader, b"A1 STARTTLS\r\nA2 LOGIN injected x\r\n") == [StartTls("A1")]
    assert reader.buffered_bytes == 0
    assert drain(reader, b"A3 NOOP\r\n") == [Noop("A3")]


# ------------------------------------------------------------------------------------------- properties

FRAGMENTS = [
    b"A1 ",
    b"b2 ",
    b"NOOP",
    b"LOGIN ",
    b"APPEND INBOX ",
    b"SEARCH ",
    b"FETCH 1:* ",
    b"(\\Seen) ",
    b'"q\\"s" ',
    b"BODY[1.HEADER.FIELDS (A)]",
    b"{3}",
    b"{2+}",
    b"~{4+}",
    b"{5000+}",
    b"{70000}",
    b"UTF8 (",
    b")",
    b"\r\n",
    b"\n",
    b"\r",
    b"DONE\r\n",
    b"IDLE\r\n",
    b"x",
    b" ",
    b"\x00",
    b"\xc3\xa9",
]
STREAMS = st.one_of(
    st.binary(max_size=3000),
    st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=8), max_size=120).map(b"".join),
)


def run(data: bytes, cuts: list[int]) -> list[ReaderEvent]:
    """Feed `data` cut at `cuts`, answering like a server; checks the memory bound after every drain."""
    reader = CommandReader(max_line=1024, max_literal=4000)
    events: list[ReaderEvent] = []
    steps = 0
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        reader.feed(data[start:end])
        while (event := reader.next()) is not None:
            steps += 1
            assert steps <= 2 * len(data) + 10  # every event consumes input
            events.append(event)
            if isinstance(event, Idle):
                reader.expect_idle_done()
        assert reader.buffered_bytes <= 1024 + APPEND_CHUNK_SIZE + 64
    return events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STREAMS, st.lists(st.integers(min_value=0, max_value=4000), max_size=20))
def test_arbitrary_input_never_raises_and_split_does_not_matter(data: bytes, cuts: list[int]) -> None:
    whole = run(data, [])
    assert run(data, cuts) == whole
    assert run(data, list(range(len(data)))) == whole  # byte by byte


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_after_garbage_the_reader_resynchronises_at_the_next_line(garbage: bytes) -> None:
    garbage = garbage.replace(b"{", b"(").replace(b"\n", b" ")  # no literal markers, one line
    events = run(garbage + b"\r\nZ9 NOOP\r\n", [])
    assert events[-1] == Noop("Z9")
