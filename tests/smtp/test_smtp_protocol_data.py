"""SMTP protocol core: DATA and BDAT framing, SMTP smuggling, line-end normalisation, size limits, and the
property tests (split invariance, arbitrary input, state consistency). Policy: docs/decisions/0004."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.smtp.protocol import (
    DATA_CHUNK_SIZE,
    ConnectionClosed,
    Event,
    Hello,
    MailFrom,
    MessageAborted,
    MessageComplete,
    MessageData,
    MessageStart,
    Quit,
    RcptTo,
    Reset,
    SmtpServerProtocol,
    SmtpSettings,
    StartTls,
)

HOST = "mx.example.test"
ENVELOPE = b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n"
REPLY_LINES = re.compile(rb"(?:[0-9]{3}[ -][^\r\n]*\r\n)*")


class Driver:
    """Feeds input in the given pieces, accepts every decision, answers StartTls with tls_started()."""

    def __init__(self, **settings: Any) -> None:
        self.proto = SmtpServerProtocol(SmtpSettings(HOST, **settings))
        self.events: list[Event] = []
        self.replies = bytearray()

    def feed(self, *pieces: bytes) -> Driver:
        for piece in pieces:
            self.proto.receive_data(piece)
            self.pump()
        return self

    def pump(self) -> None:
        while (event := self.proto.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, Hello | MailFrom | RcptTo | MessageComplete):
                self.proto.accept()
            elif isinstance(event, StartTls):
                self.proto.tls_started()
        self.replies += self.proto.data_to_send()

    def message(self) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, MessageData))

    def kinds(self) -> list[type[Event]]:
        """Event types with consecutive MessageData merged (chunking depends on the input split)."""
        result: list[type[Event]] = []
        for event in self.events:
            if not (isinstance(event, MessageData) and result and result[-1] is MessageData):
                result.append(type(event))
        return result

    def reply_lines(self) -> list[str]:
        return self.replies.decode().split("\r\n")[:-1]


def data_session(body: bytes, **settings: Any) -> Driver:
    return Driver(**settings).feed(ENVELOPE + b"DATA\r\n" + body)


def reference_data(raw: bytes) -> tuple[bytes, int | None]:
    """The policy of docs/decisions/0004, written as plainly as possible, one octet at a time.

    Returns the stored message and the index just after the terminator (None: not terminated).
    """
    out = bytearray()
    i = 0
    line_start = True  # after a real CRLF (or the DATA command)
    while i < len(raw):
        if line_start:
            line_start = False
            if raw[i : i + 3] == b".\r\n":
                return bytes(out), i + 3
            if raw[i : i + 1] == b".":
                i += 1  # unstuff
                continue
        if raw[i : i + 2] == b"\r\n":
            out += b"\r\n"
            i += 2
            line_start = True
        elif raw[i] in b"\r\n":
            out += b"\r\n"  # bare LF or lone CR: stored as CRLF, not a line end
            i += 1
        else:
            out.append(raw[i])
            i += 1
    return bytes(out), None


def reference_bdat(raw: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i : i + 2] == b"\r\n":
            out += b"\r\n"
            i += 2
        elif raw[i] in b"\r\n":
            out += b"\r\n"
            i += 1
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return [p for p in pieces if p]


# ---------------------------------------------------------------------------------------------------- DATA


def test_dot_unstuffing_only_at_the_start_of_a_line() -> None:
    d = data_session(b"..leading dot\r\n...two\r\nmid.dle.\r\n.\r\n")
    assert d.message() == b".leading dot\r\n..two\r\nmid.dle.\r\n"
    assert d.kinds() == [Hello, MailFrom, RcptTo, MessageStart, MessageData, MessageComplete]


def test_empty_message() -> None:
    d = data_session(b".\r\n")
    assert d.message() == b""
    assert d.events[-1] == MessageComplete(size=0)


def test_message_without_final_crlf_before_the_dot_needs_a_real_terminator() -> None:
    d = data_session(b"no newline.\r\n")
    assert MessageComplete not in d.kinds()
    d.feed(b".\r\n")
    assert d.message() == b"no newline.\r\n"


SMUGGLING = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r"]


@pytest.mark.parametrize("fake", SMUGGLING, ids=[repr(f) for f in SMUGGLING])
def test_smuggled_terminators_neither_end_nor_split_the_message(fake: bytes) -> None:
    body = (
        b"Subject: one\r\n\r\nbefore"
        + fake
        + b"MAIL FROM:<admin@bank.example>\r\nRCPT TO:<x@example.test>\r\n"
    )
    d = data_session(body + b"DATA\r\nforged\r\n")
    assert d.kinds() == [Hello, MailFrom, RcptTo, MessageStart, MessageData]  # still inside the message
    assert d.reply_lines()[-1].startswith("354 ")
    d.feed(b".\r\n")
    expected, _ = reference_data(body + b"DATA\r\nforged\r\n.\r\n")
    assert d.message() == expected
    assert b"MAIL FROM:<admin@bank.example>" in d.message()
    assert d.kinds()[-2:] == [MessageData, MessageComplete]
    assert [type(e) for e in d.events].count(MailFrom) == 1
    assert re.search(rb"(?<!\r)\n|\r(?!\n)", d.message()) is None  # only CRLF line ends are stored


@pytest.mark.parametrize(
    ("body", "stored"),
    [
        (b"a\nb\rc\r\n", b"a\r\nb\r\nc\r\n"),
        (b"a\n.\r\n", b"a\r\n.\r\n"),  # "." after a bare LF is content
        (b"a\r.\r\n", b"a\r\n.\r\n"),
        (b".\nx\r\n", b"\r\nx\r\n"),  # a CRLF line starting with "." loses the dot, as RFC 5321 4.5.2 says
        (b"\r\n\r\n", b"\r\n\r\n"),
        (b"\n\n\r\r\n", b"\r\n\r\n\r\n\r\n"),
        (b"x\r\r\n", b"x\r\n\r\n"),
        (b"x\n\r\n", b"x\r\n\r\n"),
    ],
)
def test_bare_lf_and_lone_cr_are_stored_as_crlf(body: bytes, stored: bytes) -> None:
    d = data_session(body + b".\r\n")
    assert d.message() == stored
    assert reference_data(body + b".\r\n")[0] == stored


def test_terminator_is_found_when_fed_one_octet_at_a_time() -> None:
    body = b"line 1\r\n..stuffed\r\nbare\nlone\r.\r\nafter\r\n.\r\nNOOP\r\n"
    whole = data_session(body)
    bytewise = Driver().feed(ENVELOPE + b"DATA\r\n", *[body[i : i + 1] for i in range(len(body))])
    assert bytewise.message() == whole.message() == reference_data(body)[0]
    assert bytewise.kinds() == whole.kinds()
    assert bytewise.replies == whole.replies
    assert bytewise.reply_lines()[-1] == "250 2.0.0 OK"


def test_rset_and_quit_inside_data_are_content() -> None:
    d = data_session(b"RSET\r\nQUIT\r\n.\r\n")
    assert d.message() == b"RSET\r\nQUIT\r\n"
    assert Quit not in d.kinds()
    assert Reset not in d.kinds()


def test_long_lines_stream_in_bounded_chunks() -> None:
    d = Driver(max_message_size=60 * 1024 * 1024).feed(ENVELOPE + b"DATA\r\n")
    block = b"x" * (1024 * 1024)
    for _ in range(50):  # 50 MiB without a line break
        d.feed(block)
        assert d.proto.buffered_bytes <= 2
    d.feed(b"\r\n.\r\n")
    chunks = [e.data for e in d.events if isinstance(e, MessageData)]
    assert max(len(c) for c in chunks) <= DATA_CHUNK_SIZE + 2
    assert sum(len(c) for c in chunks) == 50 * 1024 * 1024 + 2
    assert d.events[-1] == MessageComplete(size=50 * 1024 * 1024 + 2)


@pytest.mark.parametrize("fill", [b"\n", b"\r", b"\r\n", b"x", b"\r\n..", b"\n."])
@pytest.mark.parametrize("command", [b"DATA", b"BDAT 1000000 LAST"])
def test_message_data_chunks_stay_bounded_for_any_line_ends(fill: bytes, command: bytes) -> None:
    d = Driver(max_message_size=10 * 1024 * 1024).feed(ENVELOPE + command + b"\r\n")
    body = fill * (1_000_000 // len(fill))
    d.feed(body[: 1_000_000 - 5], body[1_000_000 - 5 : 1_000_000] + b"\r\n.\r\n")
    chunks = [e.data for e in d.events if isinstance(e, MessageData)]
    assert max(len(c) for c in chunks) <= DATA_CHUNK_SIZE + 2
    assert d.kinds()[-1] is MessageComplete
    if command == b"DATA":
        assert d.message() == reference_data(body[:1_000_000] + b"\r\n.\r\n")[0]
    else:
        assert d.message() == reference_bdat(body[:1_000_000])


def test_oversize_data_is_consumed_to_the_terminator_and_refused_with_552() -> None:
    d = data_session(b"0123456789" * 5 + b"\r\n.\r\n", max_message_size=20)
    assert d.kinds() == [Hello, MailFrom, RcptTo, MessageStart, MessageData, MessageAborted]
    assert d.message() == b"01234567890123456789"  # exactly the allowed prefix, then nothing
    assert d.reply_lines()[-1] == "552 5.3.4 Message size exceeds fixed maximum message size"
    assert d.proto.envelope is None
    d.feed(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nsmall\r\n.\r\n")
    assert d.reply_lines()[-1] == "250 2.0.0 OK"


def test_message_of_exactly_the_maximum_size_is_accepted() -> None:
    d = data_session(b"12345678\r\n.\r\n", max_message_size=10)
    assert d.events[-1] == MessageComplete(size=10)


def test_peer_close_in_data_aborts_then_closes() -> None:
    d = data_session(b"partial\r\n.")
    d.feed(b"")
    assert d.kinds()[-3:] == [MessageData, MessageAborted, ConnectionClosed]
    assert d.events[-2] == MessageAborted("connection closed")
    assert d.proto.closed


# ---------------------------------------------------------------------------------------------------- BDAT


def test_a_one_octet_chunk_is_one_octet() -> None:
    d = Driver().feed(ENVELOPE, b"BDAT 1\r\nx", b"BDAT 0 LAST\r\n")
    assert d.reply_lines()[-2:] == ["250 2.0.0 1 octet received", "250 2.0.0 OK"]


def test_bdat_chunks_are_answered_and_last_completes() -> None:
    d = Driver().feed(ENVELOPE, b"BDAT 6\r\nhello\r", b"BDAT 6\r\n\nworld", b"BDAT 2 LAST\r\n\r\n")
    assert d.reply_lines()[-3:] == [
        "250 2.0.0 6 octets received",
        "250 2.0.0 6 octets received",
        "250 2.0.0 OK",
    ]
    assert (
        d.message() == b"hello\r\nworld\r\n"
    )  # the CR ending chunk 1 and the LF opening chunk 2 are one CRLF
    assert d.kinds() == [Hello, MailFrom, RcptTo, MessageStart, MessageData, MessageComplete]


def test_bdat_data_is_not_dot_stuffed() -> None:
    d = Driver().feed(ENVELOPE + b"BDAT 12 LAST\r\n.\r\n..\r\nx\n.\n")
    assert d.message() == b".\r\n..\r\nx\r\n.\r\n"


def test_bdat_zero_size_last() -> None:
    d = Driver().feed(ENVELOPE + b"BDAT 0 LAST\r\n")
    assert d.kinds()[-2:] == [MessageStart, MessageComplete]
    assert d.events[-1] == MessageComplete(size=0)
    d = Driver().feed(ENVELOPE + b"BDAT 3\r\nab\rBDAT 0 last\r\n")
    assert d.message() == b"ab\r\n"  # a lone CR at the very end is flushed as CRLF


def test_pipelined_bdat_with_commands_after_it() -> None:
    d = Driver().feed(ENVELOPE + b"BDAT 10 LAST\r\nQUIT\r\nRSETNOOP\r\n")
    assert d.message() == b"QUIT\r\nRSET"
    assert d.reply_lines()[-2:] == ["250 2.0.0 OK", "250 2.0.0 OK"]
    assert Quit not in d.kinds()


def test_bdat_oversize_consumes_the_chunk_then_552_and_later_chunks_are_discarded() -> None:
    d = Driver(max_message_size=10).feed(ENVELOPE + b"BDAT 8\r\n12345678BDAT 8\r\n9abcdefgBDAT 3 LAST\r\nxyz")
    assert d.reply_lines()[-3:] == [
        "250 2.0.0 8 octets received",
        "552 5.3.4 Message size exceeds fixed maximum message size",
        "503 5.5.1 Need MAIL command",  # RFC 3030: later chunks are read and discarded
    ]
    assert d.kinds()[-3:] == [MessageStart, MessageData, MessageAborted]
    assert d.message() == b"123456789a"
    d.feed(b"NOOP\r\n")
    assert d.reply_lines()[-1] == "250 2.0.0 OK"


def test_bdat_without_recipients_consumes_its_octets_before_refusing() -> None:
    d = Driver().feed(b"EHLO c\r\nBDAT 6\r\nQUIT\r\nNOOP\r\n")
    assert d.reply_lines()[-2:] == ["503 5.5.1 Need MAIL command", "250 2.0.0 OK"]
    d.feed(b"MAIL FROM:<a@example.org>\r\nBDAT 6 LAST\r\nRSET\r\n")
    assert d.reply_lines()[-1] == "554 5.5.1 No valid recipients"
    assert MessageStart not in d.kinds()
    assert Reset not in d.kinds()


def test_data_after_bdat_in_one_transaction_is_503_and_a_new_transaction_may_use_data() -> None:
    d = Driver().feed(ENVELOPE + b"BDAT 3\r\nabcDATA\r\n")
    assert d.reply_lines()[-1] == "503 5.5.1 DATA not allowed after BDAT"
    d.feed(b"RCPT TO:<c@example.test>\r\n")
    assert d.reply_lines()[-1] == "503 5.5.1 RCPT not allowed after BDAT"
    d.feed(b"BDAT 3 LAST\r\ndef")
    assert d.message() == b"abcdef"
    d.feed(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nghi\r\n.\r\n")
    assert d.message() == b"abcdefghi\r\n"
    assert d.kinds().count(MessageComplete) == 2


@pytest.mark.parametrize(
    ("after", "kinds", "reply"),
    [
        (b"RSET\r\n", [MessageAborted, Reset], "250 2.0.0 OK"),
        (b"QUIT\r\n", [MessageAborted, Quit], "221 2.0.0 mx.example.test closing connection"),
        (b"EHLO again\r\n", [Hello, MessageAborted, Reset], "250 CHUNKING"),
    ],
)
def test_bdat_transaction_interrupted_between_chunks(
    after: bytes, kinds: list[type[Event]], reply: str
) -> None:
    d = Driver().feed(ENVELOPE + b"BDAT 3\r\nabc")
    d.events.clear()
    d.feed(after)
    assert d.kinds() == kinds
    assert d.reply_lines()[-1] == reply


def test_peer_close_in_the_middle_of_a_bdat_chunk() -> None:
    d = Driver().feed(ENVELOPE + b"BDAT 100\r\nabc", b"")
    assert d.kinds()[-3:] == [MessageData, MessageAborted, ConnectionClosed]


@pytest.mark.parametrize("args", [b"", b" x", b" -1", b" 10 FIRST", b" 10LAST", b" \xd9\xa1"])
def test_bdat_syntax_errors_consume_nothing(args: bytes) -> None:
    d = Driver().feed(ENVELOPE + b"BDAT" + args + b"\r\nNOOP\r\n")
    assert d.reply_lines()[-2:] == ["501 5.5.4 Syntax: BDAT <size> [LAST]", "250 2.0.0 OK"]


def test_bdat_refused_when_chunking_is_off() -> None:
    d = Driver(chunking=False).feed(ENVELOPE + b"BDAT 4 LAST\r\n")
    assert d.reply_lines()[-1] == "502 5.5.1 BDAT not available"


# ----------------------------------------------------------------------------------------------- properties

DATA_ALPHABET = st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b".\r\n", b"\r\n.", b"x" * 70])


@given(
    parts=st.lists(DATA_ALPHABET, max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_data_matches_the_reference_model_however_the_input_is_split(
    parts: list[bytes], cuts: list[int]
) -> None:
    raw = b"".join(parts) + b"\r\n.\r\nNOOP\r\n"
    expected, end = reference_data(raw)
    assert end is not None
    # Whatever follows an early terminator is read as commands (mostly errors): let them all be answered.
    lenient = {"max_errors": 10_000}
    whole = Driver(**lenient).feed(ENVELOPE + b"DATA\r\n" + raw)
    pieces = Driver(**lenient).feed(ENVELOPE + b"DATA\r\n", *split(raw, cuts))
    bytewise = Driver(**lenient).feed(ENVELOPE + b"DATA\r\n", *[raw[i : i + 1] for i in range(len(raw))])
    for driver in (whole, pieces, bytewise):
        assert driver.message() == expected
        assert driver.kinds()[-1] is MessageComplete
        assert driver.reply_lines()[-1] == "250 2.0.0 OK"  # the NOOP after the message ran
        assert re.search(rb"(?<!\r)\n|\r(?!\n)", driver.message()) is None
    assert pieces.replies == whole.replies == bytewise.replies


@given(
    chunks=st.lists(st.lists(DATA_ALPHABET, max_size=8).map(b"".join), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
@settings(max_examples=300)
def test_bdat_matches_the_reference_model_however_the_input_is_split(
    chunks: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(
        b"BDAT %d%s\r\n" % (len(c), b" LAST" if i == len(chunks) - 1 else b"") + c
        for i, c in enumerate(chunks)
    )
    whole = Driver().feed(ENVELOPE + stream)
    pieces = Driver().feed(ENVELOPE, *split(stream, cuts))
    for driver in (whole, pieces):
        assert driver.message() == reference_bdat(b"".join(chunks))
        assert driver.kinds()[-1] is MessageComplete
    assert pieces.replies == whole.replies


@given(
    body=st.binary(max_size=300),
    limit=st.integers(min_value=1, max_value=200),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=8),
)
def test_size_limit_outcome_does_not_depend_on_the_split(body: bytes, limit: int, cuts: list[int]) -> None:
    raw = body.replace(b"\r\n.\r\n", b"") + b"\r\n.\r\n"
    expected, _ = reference_data(raw)
    whole = Driver(max_message_size=limit).feed(ENVELOPE + b"DATA\r\n" + raw)
    pieces = Driver(max_message_size=limit).feed(ENVELOPE + b"DATA\r\n", *split(raw, cuts))
    assert whole.message() == pieces.message() == expected[:limit]
    assert whole.kinds() == pieces.kinds()
    assert whole.replies == pieces.replies
    assert (whole.kinds()[-1] is MessageComplete) == (len(expected) <= limit)


FUZZ_COMMANDS = [
    b"EHLO c\r\n",
    b"HELO c\r\n",
    ENVELOPE,
    ENVELOPE + b"DATA\r\n",
    ENVELOPE + b"BDAT 5\r\n",
    b"MAIL FROM:<a@example.org>\r\n",
    b"MAIL FROM:<> SIZE=10 BODY=8BITMIME\r\n",
    b"RCPT TO:<b@example.test>\r\n",
    b"RCPT TO:<postmaster>\r\n",
    b"DATA\r\n",
    b"BDAT 5\r\n",
    b"BDAT 3 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"STARTTLS\r\n",
    b"VRFY x\r\n",
    b".\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b".",
    b"hello",
    b"x" * 700,
    b"\xff\xfe",
    b"QUIT\r\n",
]
# Mostly commands, so that sessions get deep into transactions; sometimes arbitrary octets.
FUZZ_ATOMS = st.integers(min_value=0, max_value=9).flatmap(
    lambda k: st.binary(max_size=20) if k == 0 else st.sampled_from(FUZZ_COMMANDS)
)
# Without STARTTLS: which octets arrive after the handshake depends on timing, not only on the octets.
PLAINTEXT_ATOMS = st.integers(min_value=0, max_value=9).flatmap(
    lambda k: (
        st.binary(max_size=20)
        if k == 0
        else st.sampled_from([c for c in FUZZ_COMMANDS if c != b"STARTTLS\r\n"])
    )
)

DECISION_EVENTS = (Hello, MailFrom, RcptTo, MessageComplete)


class ConsistencyChecker:
    """Checks that the event stream follows the grammar of the module docstring and matches `envelope`."""

    def __init__(self, proto: SmtpServerProtocol) -> None:
        self.proto = proto
        self.helo = False
        self.transaction = False
        self.recipients = 0
        self.message = False
        self.ended = False

    def event(self, event: Event) -> None:
        assert not self.ended, f"{event} after the end of the session"
        if isinstance(event, Hello):
            pass
        elif isinstance(event, MailFrom):
            assert self.helo
            assert not self.transaction
        elif isinstance(event, RcptTo):
            assert self.transaction
            assert not self.message
        elif isinstance(event, MessageStart):
            assert self.transaction
            assert self.recipients > 0
            assert not self.message
            self.message = True
        elif isinstance(event, MessageData):
            assert self.message
            assert event.data
            assert len(event.data) <= DATA_CHUNK_SIZE + 2
        elif isinstance(event, MessageComplete):
            assert self.message
            self.message = False
        elif isinstance(event, MessageAborted):
            assert self.message
            self.message = False
            self.transaction = False
            self.recipients = 0
        elif isinstance(event, Reset):
            assert not self.message
            self.transaction = False
            self.recipients = 0
        elif isinstance(event, StartTls):
            assert not self.transaction
        elif isinstance(event, Quit | ConnectionClosed):
            assert not self.message
            self.ended = True

    def answered(self, event: Event, accepted: bool) -> None:
        if isinstance(event, Hello) and accepted:
            # RFC 5321 section 4.1.4: cleared at once; MessageAborted (if a message was open), Reset follow.
            self.helo = True
            self.transaction = False
            self.recipients = 0
        elif isinstance(event, MailFrom) and accepted:
            self.transaction = True
        elif isinstance(event, RcptTo) and accepted:
            self.recipients += 1
        elif isinstance(event, MessageComplete):
            self.transaction = False
            self.recipients = 0
        elif isinstance(event, StartTls):
            self.helo = False

    def check_state(self) -> None:
        envelope = self.proto.envelope
        if self.ended or self.proto.closed:  # e.g. 421 after too many errors: nothing is open any more
            return
        if self.transaction:
            assert envelope is not None
            assert len(envelope.recipients) == self.recipients
            assert self.recipients <= self.proto.settings.max_recipients
        elif not self.message:
            assert envelope is None


@given(
    atoms=st.lists(FUZZ_ATOMS, min_size=1, max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=20),
    decisions=st.lists(st.sampled_from([True, True, True, False]), min_size=1, max_size=50),
    max_errors=st.sampled_from([3, 100, 100]),
)
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_input_never_raises_stays_bounded_and_consistent(
    atoms: list[bytes], cuts: list[int], decisions: list[bool], max_errors: int
) -> None:
    proto = SmtpServerProtocol(
        SmtpSettings(HOST, max_message_size=300, max_recipients=2, max_errors=max_errors)
    )
    checker = ConsistencyChecker(proto)
    replies = bytearray()
    proto.greeting()
    answers = iter(decisions * 100)
    stream = b"".join(atoms)
    for piece in [*split(stream, cuts), b""]:
        proto.receive_data(piece)
        while (event := proto.next_event()) is not None:
            checker.event(event)
            if isinstance(event, DECISION_EVENTS):
                accepted = next(answers)
                if accepted:
                    proto.accept()
                else:
                    proto.reject(550, "5.7.1", "No")
                checker.answered(event, accepted)
            elif isinstance(event, StartTls):
                proto.tls_started()
                checker.answered(event, True)
        # `envelope` is the state after everything parsed so far; events parsed from one piece may still be
        # queued while the loop above runs, so the two are compared when the queue is drained.
        checker.check_state()
        assert proto.buffered_bytes <= proto.settings.max_buffered_line  # MAIL/RCPT may be longer with DSN
        replies += proto.data_to_send()
    assert proto.closed
    assert checker.ended or replies.endswith(b"\r\n")
    assert REPLY_LINES.fullmatch(bytes(replies)), bytes(replies)[-200:]


@given(
    atoms=st.lists(PLAINTEXT_ATOMS, min_size=1, max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=20),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_whole_sessions_do_not_depend_on_the_split(atoms: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(atoms)
    whole = Driver(max_message_size=300, max_recipients=2).feed(stream, b"")
    pieces = Driver(max_message_size=300, max_recipients=2).feed(*split(stream, cuts), b"")
    bytewise = Driver(max_message_size=300, max_recipients=2).feed(
        *[stream[i : i + 1] for i in range(len(stream))], b""
    )
    for driver in (pieces, bytewise):
        assert driver.replies == whole.replies
        assert driver.kinds() == whole.kinds()
        assert driver.message() == whole.message()


@given(stream=st.binary(max_size=2000), cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=30))
@settings(max_examples=300)
def test_random_bytes_in_random_splits(stream: bytes, cuts: list[int]) -> None:
    for prefix in (b"", ENVELOPE + b"DATA\r\n", ENVELOPE + b"BDAT 500\r\n"):
        driver = Driver(max_message_size=1000)
        for piece in split(prefix + stream, cuts):
            driver.feed(piece)
            assert driver.proto.buffered_bytes <= driver.proto.settings.max_buffered_line
        driver.feed(b"")
        assert driver.proto.closed
        assert REPLY_LINES.fullmatch(bytes(driver.replies))
