"""POP2 protocol core (RFC 937): an example session in the RFC's style, every command in every state, limits,
and Hypothesis fuzzing of arbitrary input in arbitrary splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.pop2.protocol import (
    ConnectionClosed,
    Delete,
    Event,
    Kept,
    Login,
    Pop2ServerProtocol,
    Pop2Settings,
    Pop2UsageError,
    Quit,
    Retrieve,
    SelectFolder,
    State,
)

HOST = "pop.example.test"
INBOX = [537, 234]
FOLDERS = {"INBOX": INBOX, "Archive": [100, 200, 300]}

#: How a Session answers a decision: None accepts; a str rejects with that text.
Answer = str | None


@dataclass
class Session:
    """Drives the core like the glue does. Messages "sent" for RETR are recorded as `<message n>` lines."""

    proto: Pop2ServerProtocol = field(default_factory=lambda: Pop2ServerProtocol(Pop2Settings(HOST)))
    decide: Callable[[Event], Answer] = lambda event: None
    folders: dict[str, list[int]] = field(default_factory=lambda: dict(FOLDERS))
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.proto.greeting()
        self.greeting = self.proto.data_to_send().decode()

    def send(self, data: bytes) -> str:
        self.proto.receive_data(data)
        return self.pump()

    def line(self, text: str) -> str:
        return self.send(text.encode() + b"\r\n")

    def pump(self) -> str:
        out = ""
        while (event := self.proto.next_event()) is not None:
            self.events.append(event)
            answer = self.decide(event)
            if isinstance(event, Login):
                if answer is None:
                    self.proto.accept_login(self.folders["INBOX"])
                else:
                    self.proto.reject(answer)
            elif isinstance(event, SelectFolder):
                if answer is None:
                    self.proto.accept_folder(self.folders.get(event.name, []))
                else:
                    self.proto.reject(answer)
            elif isinstance(event, Retrieve):
                out += self.proto.data_to_send().decode()
                if answer is None:
                    out += f"<message {event.number}: {event.size} octets>\r\n"
                    self.proto.retrieved()
                else:
                    self.proto.abort()
            elif isinstance(event, Delete):
                if answer is None:
                    self.proto.deleted()
                else:
                    self.proto.reject(answer)
        return out + self.proto.data_to_send().decode()


def logged_in(
    decide: Callable[[Event], Answer] = lambda event: None, folders: dict[str, list[int]] | None = None
) -> Session:
    session = Session(decide=decide, folders=dict(FOLDERS) if folders is None else folders)
    assert session.line("HELO demo@example.test secret").startswith(f"#{len(session.folders['INBOX'])} ")
    return session


# -- an example session in the shape of RFC 937's ---------------------------------------------------------
# NOT yet checked against the RFC's own example: its text past the opening pages could not be read (see
# "A note on sources" in docs/decisions/0010-pop2.md). Replace this with the RFC's dialogue, citing its page,
# once the text is at hand.


def test_rfc_937_example_session() -> None:
    session = Session()
    assert session.greeting == f"+ POP2 {HOST} server ready\r\n"
    assert session.line("HELO Smith SecretPassword") == "#2 messages in INBOX\r\n"
    assert session.events[-1] == Login("Smith", "SecretPassword")
    assert session.line("READ") == "=537 octets in message 1\r\n"
    assert session.line("RETR") == "<message 1: 537 octets>\r\n"
    assert session.line("ACKD") == "=234 octets in message 2\r\n"
    assert session.line("RETR") == "<message 2: 234 octets>\r\n"
    assert session.line("ACKD") == "=0 no more messages\r\n"
    assert session.line("QUIT") == f"+ POP2 {HOST} signing off\r\n"
    assert session.proto.closed
    assert [type(e) for e in session.events] == [Login, Retrieve, Delete, Retrieve, Delete, Quit]
    assert session.proto.deleted_numbers == {1, 2}


def test_pipelined_commands_are_answered_in_order() -> None:
    session = Session()
    out = session.send(b"HELO a@b.test pw\r\nREAD\r\nRETR\r\nACKS\r\nRETR\r\nNACK\r\nQUIT\r\n")
    assert out.split("\r\n")[:-1] == [
        "#2 messages in INBOX",
        "=537 octets in message 1",
        "<message 1: 537 octets>",
        "=234 octets in message 2",
        "<message 2: 234 octets>",
        "=234 octets in message 2",
        f"+ POP2 {HOST} signing off",
    ]


# -- AUTH ----------------------------------------------------------------------------------------------------


def test_failed_helo_replies_minus_and_closes() -> None:
    session = Session(decide=lambda e: "authentication failed" if isinstance(e, Login) else None)
    assert session.line("HELO demo@example.test wrong") == "- authentication failed\r\n"
    assert session.proto.closed
    assert session.line("HELO demo@example.test right") == ""  # nothing after the close


def test_helo_password_is_the_rest_of_the_line() -> None:
    session = Session()
    session.line("helo  demo@example.test  pass word ")
    assert session.events[-1] == Login("demo@example.test", " pass word ")


@pytest.mark.parametrize("line", ["HELO", "HELO ", "HELO user", "HELO user "])
def test_helo_without_password_is_a_syntax_error(line: str) -> None:
    session = Session()
    assert session.line(line) == "- syntax: HELO user password\r\n"
    assert session.proto.state is State.AUTH
    assert not session.events


def test_login_repr_hides_the_password() -> None:
    assert "secret" not in repr(Login("user", "secret"))


@pytest.mark.parametrize("command", ["FOLD INBOX", "READ", "READ 1", "RETR", "ACKS", "ACKD", "NACK"])
def test_commands_before_helo_are_refused(command: str) -> None:
    session = Session()
    assert session.line(command).startswith("- ")
    assert session.proto.state is State.AUTH


def test_quit_before_helo() -> None:
    session = Session()
    assert session.line("QUIT") == f"+ POP2 {HOST} signing off\r\n"
    assert session.proto.closed
    assert isinstance(session.events[-1], Quit)


def test_helo_twice_is_refused() -> None:
    session = logged_in()
    assert session.line("HELO demo@example.test secret") == "- already logged in\r\n"
    assert session.proto.state is State.MBOX


def test_helo_reports_one_message_in_the_singular() -> None:
    session = Session(folders={"INBOX": [10]})
    assert session.line("HELO a@b.test pw") == "#1 message in INBOX\r\n"


# -- MBOX / ITEM: READ and FOLD ------------------------------------------------------------------------------


def test_read_with_number_selects_that_message() -> None:
    session = logged_in()
    assert session.line("READ 2") == "=234 octets in message 2\r\n"
    assert session.proto.current == 2
    assert session.proto.state is State.ITEM
    assert session.line("READ") == "=234 octets in message 2\r\n"  # no number: the current one


@pytest.mark.parametrize(("arg", "reply"), [("3", "=0 no more messages"), ("0", "=0 no message 0")])
def test_read_of_a_missing_message_is_zero(arg: str, reply: str) -> None:
    session = logged_in()
    assert session.line(f"READ {arg}") == reply + "\r\n"
    assert session.proto.state is State.ITEM
    assert session.line("RETR") == f"- no message {arg}\r\n"


@pytest.mark.parametrize("arg", ["-1", "x", "1 2", "1234567890"])
def test_read_with_a_bad_number_is_a_syntax_error(arg: str) -> None:
    session = logged_in()
    assert session.line(f"READ {arg}") == "- syntax: READ [message number]\r\n"
    assert session.proto.state is State.MBOX


def test_retr_before_read_is_refused() -> None:
    session = logged_in()
    assert session.line("RETR") == "- no message selected: READ first\r\n"


def test_fold_selects_another_folder_and_restarts_numbering() -> None:
    session = logged_in()
    session.line("READ 2")
    assert session.line("FOLD Archive") == "#3 messages in Archive\r\n"
    assert session.events[-1] == SelectFolder("Archive")
    assert session.proto.state is State.MBOX
    assert session.proto.current == 1
    assert session.line("READ") == "=100 octets in message 1\r\n"
    assert session.line("READ 3") == "=300 octets in message 3\r\n"


def test_fold_of_an_unknown_folder_is_empty() -> None:
    session = logged_in()
    assert session.line("FOLD Nowhere") == "#0 messages in Nowhere\r\n"
    assert session.line("READ") == "=0 no more messages\r\n"


def test_fold_store_failure_keeps_the_previous_folder() -> None:
    session = logged_in(decide=lambda e: "folder unavailable" if isinstance(e, SelectFolder) else None)
    session.line("READ 2")
    assert session.line("FOLD Archive") == "- folder unavailable\r\n"
    assert session.proto.folder == "INBOX"
    assert session.proto.state is State.ITEM
    assert session.line("READ") == "=234 octets in message 2\r\n"


def test_fold_without_name_is_a_syntax_error() -> None:
    session = logged_in()
    assert session.line("FOLD") == "- syntax: FOLD mailbox\r\n"


# -- NEXT: ACKS, ACKD, NACK ----------------------------------------------------------------------------------


def test_acks_keeps_the_message_and_moves_on() -> None:
    session = logged_in()
    session.line("READ")
    session.line("RETR")
    before = session.proto.state
    assert session.line("ACKS") == "=234 octets in message 2\r\n"
    assert (before, session.proto.state) == (State.NEXT, State.ITEM)
    assert not session.proto.deleted_numbers
    assert session.events[-1] == Kept(1)
    assert not any(isinstance(e, Delete) for e in session.events)


def test_nack_keeps_the_same_message() -> None:
    session = logged_in()
    session.line("READ")
    session.line("RETR")
    assert session.line("NACK") == "=537 octets in message 1\r\n"
    assert session.proto.current == 1
    assert session.proto.state is State.ITEM
    assert session.line("RETR") == "<message 1: 537 octets>\r\n"


def test_ackd_deletes_then_answers_and_numbers_do_not_move() -> None:
    session = logged_in()
    session.line("READ")
    session.line("RETR")
    assert session.line("ACKD") == "=234 octets in message 2\r\n"
    assert session.events[-1] == Delete(1)
    assert session.line("READ 1") == "=0 no message 1\r\n"  # deleted: a hole, numbers stay
    assert session.line("READ 2") == "=234 octets in message 2\r\n"


def test_ackd_skips_messages_deleted_before() -> None:
    session = logged_in(folders={"INBOX": [10, 20, 30]})
    session.line("READ 2")
    session.line("RETR")
    session.line("ACKD")  # deletes 2
    session.line("READ 1")
    session.line("RETR")
    assert session.line("ACKS") == "=30 octets in message 3\r\n"  # 2 is gone: the next one is 3


def test_ackd_failure_keeps_the_message_and_stays_in_next() -> None:
    session = logged_in(decide=lambda e: "could not delete" if isinstance(e, Delete) else None)
    session.line("READ")
    session.line("RETR")
    assert session.line("ACKD") == "- could not delete\r\n"
    assert session.proto.state is State.NEXT
    assert not session.proto.deleted_numbers
    assert session.line("NACK") == "=537 octets in message 1\r\n"


@pytest.mark.parametrize("command", ["ACKS", "ACKD", "NACK"])
def test_acknowledgements_outside_next_are_refused(command: str) -> None:
    session = logged_in()
    assert session.line(command) == f"- {command} only after RETR\r\n"
    session.line("READ")
    assert session.line(command) == f"- {command} only after RETR\r\n"


@pytest.mark.parametrize("command", ["READ", "READ 1", "FOLD Archive", "RETR"])
def test_next_state_needs_an_acknowledgement(command: str) -> None:
    session = logged_in()
    session.line("READ")
    session.line("RETR")
    assert session.line(command) == "- acknowledge the message first: ACKS, ACKD or NACK\r\n"
    assert session.proto.state is State.NEXT


def test_quit_in_next_keeps_the_unacknowledged_message() -> None:
    session = logged_in()
    session.line("READ")
    session.line("RETR")
    assert session.line("QUIT").startswith("+ ")
    assert session.proto.closed
    assert not session.proto.deleted_numbers


@pytest.mark.parametrize("command", ["RETR 1", "ACKS x", "ACKD 1", "NACK 2"])
def test_commands_without_arguments_refuse_arguments(command: str) -> None:
    session = logged_in()
    session.line("READ")
    session.line("RETR")
    verb = command.split()[0]
    assert session.line(command) == f"- syntax: {verb}\r\n"


def test_retrieve_abort_closes_without_a_reply() -> None:
    session = logged_in(decide=lambda e: "fail" if isinstance(e, Retrieve) else None)
    session.line("READ")
    assert session.line("RETR") == ""
    assert session.proto.closed


# -- errors, limits, closing ---------------------------------------------------------------------------------


def test_commands_are_case_insensitive() -> None:
    session = Session()
    assert session.line("helo a@b.test pw").startswith("#2")
    assert session.line("read").startswith("=537")
    assert session.line("Retr").startswith("<message 1")
    assert session.line("aCkS").startswith("=234")


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"NOOP", "- unknown command"),
        (b"", "- unknown command"),
        (b"\xff\xfe", "- unknown command"),
        (b"HELO a\x00b pw", "- invalid character in command line"),
        (b"HELO user \xff", "- invalid UTF-8 in command arguments"),
    ],
)
def test_malformed_commands_get_minus_replies(line: bytes, reply: str) -> None:
    session = Session()
    assert session.send(line + b"\r\n") == reply + "\r\n"
    assert not session.proto.closed


def test_bare_lf_ends_a_command_line() -> None:
    session = Session()
    assert session.send(b"HELO a@b.test pw\n").startswith("#2")


def test_line_too_long_is_refused_and_discarded() -> None:
    session = Session()
    out = session.send(b"HELO " + b"x" * 600)
    assert out == "- line too long\r\n"
    assert session.proto.buffered_bytes < 512
    assert session.send(b"y" * 1000 + b"\r\nQUIT\r\n") == f"+ POP2 {HOST} signing off\r\n"


def test_line_of_exactly_the_limit_is_accepted() -> None:
    session = Session()
    line = b"HELO a@b.test " + b"p" * (512 - len(b"HELO a@b.test ") - 2) + b"\r\n"
    assert len(line) == 512
    assert session.send(line).startswith("#2")


def test_too_many_errors_close_the_connection() -> None:
    session = Session(proto=Pop2ServerProtocol(Pop2Settings(HOST, max_errors=3)))
    assert session.line("X") == "- unknown command\r\n"
    assert session.line("X") == "- unknown command\r\n"
    assert session.line("X") == "- unknown command\r\n- too many errors, closing connection\r\n"
    assert session.proto.closed


def test_peer_close_is_an_event() -> None:
    session = logged_in()
    session.send(b"READ")  # an unfinished line is dropped
    session.send(b"")
    assert isinstance(session.events[-1], ConnectionClosed)
    assert session.proto.closed


def test_close_from_the_glue() -> None:
    session = logged_in()
    session.proto.close("server shutting down")
    assert session.proto.data_to_send() == b"- server shutting down\r\n"
    assert session.proto.closed


def test_glue_misuse_raises() -> None:
    proto = Pop2ServerProtocol(Pop2Settings(HOST))
    with pytest.raises(Pop2UsageError):
        proto.accept_login([1])
    with pytest.raises(Pop2UsageError):
        proto.reject("no")
    with pytest.raises(ValueError, match="hostname must be non-empty printable ASCII"):
        Pop2Settings("bad host")
    with pytest.raises(ValueError, match="max_line must be at least 512"):
        Pop2Settings(HOST, max_line=100)


def test_zero_sizes_are_refused_from_the_glue() -> None:
    proto = Pop2ServerProtocol(Pop2Settings(HOST))
    proto.receive_data(b"HELO a b\r\n")
    assert isinstance(proto.next_event(), Login)
    with pytest.raises(ValueError, match="message sizes must be positive"):
        proto.accept_login([0])


def test_decisions_after_close_are_ignored() -> None:
    proto = Pop2ServerProtocol(Pop2Settings(HOST))
    proto.receive_data(b"HELO a b\r\n")
    assert isinstance(proto.next_event(), Login)
    proto.close("shutting down")
    proto.accept_login([1])
    proto.reject("x")
    assert proto.data_to_send() == b"- shutting down\r\n"


# -- Hypothesis ----------------------------------------------------------------------------------------------

_COMMANDS = [
    b"HELO a@b.test pw\r\n",
    b"HELO\r\n",
    b"FOLD Archive\r\n",
    b"FOLD Nowhere\r\n",
    b"READ\r\n",
    b"READ 1\r\n",
    b"READ 3\r\n",
    b"READ 0\r\n",
    b"RETR\r\n",
    b"ACKS\r\n",
    b"ACKD\r\n",
    b"NACK\r\n",
    b"QUIT\r\n",
    b"\r\n",
    b"\n",
    b"\xff\x00\r",
    b"x" * 700,
]

input_pieces = st.lists(
    st.one_of(st.sampled_from(_COMMANDS), st.binary(max_size=80)),
    max_size=30,
)


def _reply_lines(out: str) -> list[str]:
    """Reply lines, without the `<message ...>` stand-ins for RETR data."""
    assert out == "" or out.endswith("\r\n")
    return [line for line in out.split("\r\n")[:-1] if not line.startswith("<message ")]


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return [piece for piece in pieces if piece]


def _run(pieces: list[bytes], answers: list[bool]) -> tuple[str, Session]:
    verdicts = iter(answers * 100)

    def decide(event: Event) -> Answer:
        return None if next(verdicts, True) else "refused"

    session = Session(decide=decide)
    out = ""
    for piece in pieces:
        out += session.send(piece)
        assert session.proto.buffered_bytes < session.proto.settings.max_line
    return out, session


@given(input_pieces, st.lists(st.booleans(), min_size=1, max_size=8), st.lists(st.integers(0, 10**6)))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_input_never_raises_and_replies_are_well_formed(
    pieces: list[bytes], answers: list[bool], cuts: list[int]
) -> None:
    data = b"".join(pieces)
    out, session = _run(_splits(data, cuts), answers)
    for line in _reply_lines(out):
        assert line[:1] in ("+", "-", "#", "="), line
        if line[0] in "#=":
            assert line[1:].split(" ", 1)[0].isdigit(), line
    session.send(b"")
    assert session.proto.closed


@given(input_pieces, st.lists(st.integers(0, 10**6)))
@settings(max_examples=300)
def test_output_does_not_depend_on_how_input_is_split(pieces: list[bytes], cuts: list[int]) -> None:
    data = b"".join(pieces)
    whole, _ = _run([data], [True])
    split, _ = _run(_splits(data, cuts), [True])
    bytewise, _ = _run([data[i : i + 1] for i in range(len(data))], [True])
    assert whole == split == bytewise
