"""SMTP protocol core: sessions from transcripts, commands, sequence errors, limits, STARTTLS, parameters and
envelope addresses. DATA/BDAT framing and the fuzz tests are in test_smtp_protocol_data.py."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.smtp.address import AddressSyntaxError, parse_forward_path, parse_reverse_path
from postoffice.smtp.protocol import (
    ConnectionClosed,
    Envelope,
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
    SmtpUsageError,
    StartTls,
)

HOST = "mx.example.test"
Decision = None | str | tuple[int, str, str]  # None: accept(); str: accept(text); tuple: reject(...)


@dataclass
class Session:
    """Drives a protocol core like the glue does; answers decisions with `decide` (default: accept)."""

    proto: SmtpServerProtocol
    decide: Callable[[Event], Decision] = lambda event: None
    events: list[Event] = field(default_factory=list)

    def send(self, data: bytes) -> str:
        self.proto.receive_data(data)
        self.pump()
        return self.proto.data_to_send().decode()

    def pump(self) -> None:
        while (event := self.proto.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, Hello | MailFrom | RcptTo | MessageComplete):
                answer = self.decide(event)
                if isinstance(answer, tuple):
                    self.proto.reject(*answer)
                else:
                    self.proto.accept(answer)

    def kinds(self) -> list[type[Event]]:
        return [type(e) for e in self.events]

    def message(self) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, MessageData))


def session(
    decide: Callable[[Event], Decision] | None = None, *, tls: bool = False, **settings: Any
) -> Session:
    proto = SmtpServerProtocol(SmtpSettings(HOST, **settings), tls_active=tls)
    s = Session(proto) if decide is None else Session(proto, decide)
    proto.greeting()
    proto.data_to_send()
    return s


def ready(**settings: Any) -> Session:
    """A session after an accepted EHLO."""
    s = session(**settings)
    s.send(b"EHLO client.example\r\n")
    s.events.clear()
    return s


def in_transaction(**settings: Any) -> Session:
    s = ready(**settings)
    s.send(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.test>\r\n")
    s.events.clear()
    return s


def codes(replies: str) -> list[str]:
    return [line[:3] for line in replies.split("\r\n") if line]


# ---------------------------------------------------------------------------------------------- sessions


def test_greeting_names_the_host() -> None:
    proto = SmtpServerProtocol(SmtpSettings(HOST))
    proto.greeting()
    assert proto.data_to_send() == b"220 mx.example.test ESMTP Postoffice\r\n"
    assert proto.data_to_send() == b""


def test_full_esmtp_session_transcript() -> None:
    s = session()
    transcript = [
        (
            b"EHLO client.example\r\n",
            "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
            "250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-STARTTLS\r\n250 CHUNKING\r\n",
        ),
        (b"MAIL FROM:<alice@example.org>\r\n", "250 2.1.0 Sender OK\r\n"),
        (b"RCPT TO:<bob@example.test>\r\n", "250 2.1.5 Recipient OK\r\n"),
        (b"DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n"),
        (b"Subject: hi\r\n\r\nHello Bob.\r\n.\r\n", "250 2.0.0 OK\r\n"),
        (b"QUIT\r\n", "221 2.0.0 mx.example.test closing connection\r\n"),
    ]
    for data, expected in transcript:
        assert s.send(data) == expected
    assert s.kinds() == [Hello, MailFrom, RcptTo, MessageStart, MessageData, MessageComplete, Quit]
    assert s.events[0] == Hello("client.example", extended=True)
    assert s.events[1] == MailFrom("alice@example.org", {})
    assert s.events[2] == RcptTo("bob@example.test", {})
    assert s.message() == b"Subject: hi\r\n\r\nHello Bob.\r\n"
    assert s.events[5] == MessageComplete(size=len(s.message()))
    assert s.proto.closed
    assert s.proto.should_close


def test_helo_gets_a_plain_250_without_extensions() -> None:
    s = session()
    assert s.send(b"HELO old.example\r\n") == "250 mx.example.test\r\n"
    assert s.events == [Hello("old.example", extended=False)]
    assert not s.proto.extended
    assert s.send(b"MAIL FROM:<a@example.org>\r\n") == "250 2.1.0 Sender OK\r\n"


def test_ehlo_accept_text_follows_the_hostname() -> None:
    s = session(lambda e: "greets client.example" if isinstance(e, Hello) else None)
    assert s.send(b"EHLO client.example\r\n").startswith("250-mx.example.test greets client.example\r\n")


def test_ehlo_capabilities_follow_settings_and_tls_state() -> None:
    s = session(tls=True, chunking=False, max_message_size=1000, auth_mechanisms=("PLAIN", "LOGIN"))
    replies = s.send(b"EHLO c\r\n")
    assert replies == (
        "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
        "250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-REQUIRETLS\r\n250 AUTH SCRAM-SHA-256 PLAIN LOGIN\r\n"
    )
    assert "STARTTLS" not in session(starttls_available=False).send(b"EHLO c\r\n")
    assert "REQUIRETLS" not in session().send(b"EHLO c\r\n")  # RFC 8689: only over TLS


def test_requiretls_is_taken_only_in_a_tls_session_and_without_a_value() -> None:
    plain = session()
    plain.send(b"EHLO c\r\n")
    assert plain.send(b"MAIL FROM:<a@example.org> REQUIRETLS\r\n") == (
        "530 5.7.10 REQUIRETLS needs a TLS session: STARTTLS first\r\n"
    )
    secure = session(tls=True)
    secure.send(b"EHLO c\r\n")
    assert (
        secure.send(b"MAIL FROM:<a@example.org> REQUIRETLS=yes\r\n")
        == "501 5.5.4 REQUIRETLS takes no value\r\n"
    )
    assert secure.send(b"MAIL FROM:<a@example.org> REQUIRETLS\r\n").startswith("250 ")
    assert "REQUIRETLS" in secure.events[-1].params  # type: ignore[attr-defined]


def test_ehlo_needs_an_argument_but_takes_junk() -> None:
    s = session()
    assert s.send(b"EHLO\r\n") == "501 5.5.4 Syntax: EHLO hostname\r\n"
    assert s.send(b"HELO   \r\n") == "501 5.5.4 Syntax: HELO hostname\r\n"
    assert s.events == []
    assert s.send(b"EHLO [192.0.2.1]\r\n").startswith("250-")
    assert s.send(b"EHLO not a domain!\r\n").startswith("250-")
    assert s.events[-1] == Hello("not a domain!", extended=True)


def test_rejected_ehlo_keeps_the_session_without_helo() -> None:
    s = session(lambda e: (550, "5.7.1", "Go away") if isinstance(e, Hello) else None)
    assert s.send(b"EHLO spam.example\r\n") == "550 5.7.1 Go away\r\n"
    assert s.proto.helo_name is None
    assert s.send(b"MAIL FROM:<a@example.org>\r\n") == "503 5.5.1 Send HELO/EHLO first\r\n"


def test_second_ehlo_resets_the_transaction() -> None:
    s = in_transaction()
    assert s.send(b"EHLO again.example\r\n").startswith("250-")
    assert s.kinds() == [Hello, Reset]
    assert s.proto.envelope is None
    assert s.send(b"MAIL FROM:<c@example.org>\r\n") == "250 2.1.0 Sender OK\r\n"


def test_commands_are_case_insensitive() -> None:
    s = session()
    replies = s.send(b"ehlo c\r\nmail from:<a@example.org>\r\nRcPt To:<b@example.test>\r\nnoop\r\nrset\r\n")
    assert codes(replies) == ["250"] * 9 + ["250", "250", "250", "250"]
    assert s.kinds() == [Hello, MailFrom, RcptTo, Reset]


# -------------------------------------------------------------------------------------------- pipelining


def test_pipelined_commands_are_answered_in_order() -> None:
    def decide(event: Event) -> Decision:
        if isinstance(event, RcptTo) and event.address.startswith("nobody"):
            return (550, "5.1.1", "No such user")
        return None

    s = ready()
    s.decide = decide
    replies = s.send(
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\n"
        b"NOOP\r\nBOGUS\r\nDATA\r\nline\r\n.\r\nQUIT\r\n"
    )
    assert replies.split("\r\n")[:-1] == [
        "250 2.1.0 Sender OK",
        "550 5.1.1 No such user",
        "250 2.1.5 Recipient OK",
        "250 2.0.0 OK",
        "500 5.5.2 Command not recognized",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 OK",
        "221 2.0.0 mx.example.test closing connection",
    ]
    assert s.message() == b"line\r\n"


def test_core_parses_nothing_past_a_pending_decision() -> None:
    proto = SmtpServerProtocol(SmtpSettings(HOST))
    proto.receive_data(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nNOOP\r\n")
    assert proto.next_event() == Hello("c", extended=True)
    assert proto.next_event() is None  # waiting for the glue
    assert proto.data_to_send() == b""
    proto.accept()
    assert proto.next_event() == MailFrom("a@example.org", {})
    assert proto.next_event() is None
    proto.reject(451, "4.3.0", "Try later")
    assert proto.next_event() is None
    assert codes(proto.data_to_send().decode()) == ["250"] * 9 + ["451", "250"]


# ------------------------------------------------------------------------------------ sequence and errors


@pytest.mark.parametrize(
    ("prelude", "command", "reply"),
    [
        (b"", b"MAIL FROM:<a@example.org>", "503 5.5.1 Send HELO/EHLO first"),
        (b"", b"RCPT TO:<a@example.org>", "503 5.5.1 Send HELO/EHLO first"),
        (b"EHLO c\r\n", b"RCPT TO:<a@example.org>", "503 5.5.1 Need MAIL before RCPT"),
        (b"EHLO c\r\n", b"DATA", "503 5.5.1 Need MAIL command"),
        (
            b"EHLO c\r\nMAIL FROM:<a@example.org>\r\n",
            b"MAIL FROM:<a@example.org>",
            "503 5.5.1 Nested MAIL command",
        ),
        (b"EHLO c\r\nMAIL FROM:<a@example.org>\r\n", b"DATA", "554 5.5.1 No valid recipients"),
        (b"", b"DATA extra", "501 5.5.4 Syntax: DATA"),
        (b"", b"RSET now", "501 5.5.4 Syntax: RSET"),
        (b"", b"FOO bar", "500 5.5.2 Command not recognized"),
        (b"", b"", "500 5.5.2 Command not recognized"),
        (b"", b" EHLO c", "500 5.5.2 Command not recognized"),
        (b"", b"VRFY", "501 5.5.4 Syntax: VRFY <address>"),
        (b"", b"EXPN staff", "502 5.5.1 EXPN not available"),
        (b"", b"AUTH PLAIN", "502 5.5.1 AUTH not available"),
        (b"EHLO c\r\n", b"MAIL TO:<a@example.org>", "501 5.5.4 Syntax: MAIL FROM:<address>"),
        (b"EHLO c\r\nMAIL FROM:<>\r\n", b"RCPT FROM:<a@example.org>", "501 5.5.4 Syntax: RCPT TO:<address>"),
    ],
)
def test_core_answers_sequence_and_syntax_errors(prelude: bytes, command: bytes, reply: str) -> None:
    s = session()
    if prelude:
        s.send(prelude)
    assert s.send(command + b"\r\n") == reply + "\r\n"


def test_informational_commands() -> None:
    s = session()
    assert s.send(b"NOOP\r\n") == "250 2.0.0 OK\r\n"
    assert s.send(b"NOOP with text\r\n") == "250 2.0.0 OK\r\n"
    assert s.send(b"HELP\r\n").startswith("214 2.0.0 ")
    assert s.send(b"VRFY bob\r\n") == (
        "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"
    )
    assert s.send(b"RSET\r\n") == "250 2.0.0 OK\r\n"
    assert s.kinds() == [Reset]


def test_data_with_only_rejected_recipients_is_554_and_rejected_rcpt_does_not_count() -> None:
    s = ready(max_recipients=1)
    s.decide = lambda e: (550, "5.1.1", "No such user") if isinstance(e, RcptTo) else None
    replies = s.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n")
    assert codes(replies) == ["250", "550", "554"]
    s.decide = lambda e: None
    assert s.send(b"RCPT TO:<y@example.test>\r\n") == "250 2.1.5 Recipient OK\r\n"
    assert s.proto.envelope == Envelope("a@example.org", {}, ("y@example.test",))


def test_max_recipients_is_enforced_with_452() -> None:
    s = ready(max_recipients=2)
    replies = s.send(
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<r1@example.test>\r\nRCPT TO:<r2@example.test>\r\n"
        b"RCPT TO:<r3@example.test>\r\n"
    )
    assert replies.split("\r\n")[-2] == "452 4.5.3 Too many recipients"
    assert [e for e in s.events if isinstance(e, RcptTo)] == [
        RcptTo("r1@example.test", {}),
        RcptTo("r2@example.test", {}),
    ]
    assert s.send(b"DATA\r\nx\r\n.\r\n") == "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 OK\r\n"


def test_too_many_errors_closes_with_421() -> None:
    s = session(max_errors=3)
    replies = s.send(b"BAD1\r\nBAD2\r\nBAD3\r\nNOOP\r\n")
    assert replies.split("\r\n")[:-1] == [
        "500 5.5.2 Command not recognized",
        "500 5.5.2 Command not recognized",
        "500 5.5.2 Command not recognized",
        "421 4.7.0 mx.example.test Too many errors, closing connection",
    ]
    assert s.proto.closed
    assert s.send(b"NOOP\r\n") == ""


def test_glue_rejections_and_452_do_not_count_as_protocol_errors() -> None:
    s = ready(max_errors=2, max_recipients=1)
    s.decide = lambda e: (550, "5.1.1", "No such user") if isinstance(e, RcptTo) else None
    s.send(b"MAIL FROM:<a@example.org>\r\n" + b"RCPT TO:<x@example.test>\r\n" * 5)
    s.decide = lambda e: None
    s.send(b"RCPT TO:<y@example.test>\r\n" + b"RCPT TO:<z@example.test>\r\n" * 5)
    assert not s.proto.closed


def test_error_limit_during_bdat_aborts_the_message() -> None:
    s = in_transaction(max_errors=1)
    s.send(b"BDAT 3\r\nabc")
    assert s.send(b"BOGUS\r\n").endswith("421 4.7.0 mx.example.test Too many errors, closing connection\r\n")
    assert s.kinds()[-1] == MessageAborted
    assert s.proto.closed


# ------------------------------------------------------------------------------------ malformed input


def test_non_utf8_bytes_never_raise() -> None:
    s = ready()
    assert s.send(b"\xffHLO x\r\n") == "500 5.5.2 Command not recognized\r\n"
    assert s.send(b"EHLO \xc3\x28\r\n") == "501 5.5.4 Invalid UTF-8 in command arguments\r\n"
    assert s.send(b"MAIL FROM:<\xff@example.org>\r\n") == "501 5.5.4 Invalid UTF-8 in command arguments\r\n"
    assert s.events == []


@pytest.mark.parametrize("line", [b"NOOP\x00", b"EHLO a\rRCPT TO:<b@c>", b"EHLO a\tb", b"NO\x7fOP"])
def test_control_characters_in_a_command_line_are_refused(line: bytes) -> None:
    s = session()
    assert s.send(line + b"\r\n") == "500 5.5.2 Invalid character in command line\r\n"
    assert s.events == []


def test_command_line_limit_counts_the_crlf() -> None:
    s = session()
    exact = b"NOOP " + b"x" * (512 - 7) + b"\r\n"
    assert len(exact) == 512
    assert s.send(exact) == "250 2.0.0 OK\r\n"
    assert s.send(b"NOOP " + b"x" * (512 - 6) + b"\r\n") == "500 5.5.2 Line too long\r\n"


def test_too_long_line_is_answered_once_and_discarded_to_the_next_lf() -> None:
    s = session()
    replies = s.send(b"EHLO " + b"a" * 5000)
    assert replies == "500 5.5.2 Line too long\r\n"
    assert s.proto.buffered_bytes < 512
    assert s.send(b"b" * 5000) == ""
    assert s.proto.buffered_bytes < 512
    assert s.send(b"still the same line\r\nNOOP\r\n") == "250 2.0.0 OK\r\n"
    assert s.events == []


def test_too_long_line_followed_by_pipelined_commands_in_the_same_read() -> None:
    s = session()
    replies = s.send(b"NOOP " + b"x" * 600 + b"\r\nNOOP\r\nHELP\r\n")
    assert codes(replies) == ["500", "250", "214"]


def test_command_lines_may_end_in_bare_lf() -> None:
    s = session()
    assert codes(s.send(b"EHLO c\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.test>\n")) == ["250"] * 11


def test_peer_close_discards_a_partial_line() -> None:
    s = ready()
    s.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@exa")
    assert s.send(b"") == ""
    assert s.kinds() == [MailFrom, ConnectionClosed]
    assert s.proto.closed


# ----------------------------------------------------------------------------------------------- STARTTLS


def test_starttls_discards_pipelined_plaintext_and_requires_ehlo_again() -> None:
    s = ready()
    replies = s.send(b"STARTTLS\r\nMAIL FROM:<mallory@example.org>\r\nRCPT TO:<bob@example.test>\r\n")
    assert replies == "220 2.0.0 Ready to start TLS\r\n"
    assert s.kinds() == [StartTls]
    assert s.proto.next_event() is None
    s.proto.receive_data(b"RSET\r\n")  # read before the handshake: still plaintext, also discarded
    with pytest.raises(SmtpUsageError):
        s.proto.accept()
    s.proto.tls_started()
    assert s.proto.tls_active
    assert s.proto.helo_name is None
    s.pump()
    assert s.kinds() == [StartTls]
    assert s.proto.data_to_send() == b""
    assert s.send(b"MAIL FROM:<a@example.org>\r\n") == "503 5.5.1 Send HELO/EHLO first\r\n"
    ehlo = s.send(b"EHLO c\r\n")
    assert ehlo.startswith("250-mx.example.test\r\n")
    assert "STARTTLS" not in ehlo


def test_starttls_refusals() -> None:
    assert session(tls=True).send(b"STARTTLS\r\n") == "503 5.5.1 TLS already active\r\n"
    assert session(starttls_available=False).send(b"STARTTLS\r\n") == "454 4.7.0 TLS not available\r\n"
    assert session().send(b"STARTTLS now\r\n") == "501 5.5.4 Syntax: STARTTLS\r\n"
    s = in_transaction()
    assert s.send(b"STARTTLS\r\n") == "503 5.5.1 STARTTLS not allowed during a mail transaction\r\n"
    assert s.events == []


def test_peer_close_while_tls_handshake_pending() -> None:
    s = ready()
    s.send(b"STARTTLS\r\n")
    s.send(b"")
    assert s.kinds() == [StartTls, ConnectionClosed]


# ------------------------------------------------------------------------------------------- parameters


def test_mail_parameters_are_validated_and_passed_on() -> None:
    s = ready(max_message_size=1000)
    assert (
        s.send(b"MAIL FROM:<a@example.org> SIZE=1000 body=8bitmime SMTPUTF8\r\n") == "250 2.1.0 Sender OK\r\n"
    )
    assert s.events == [MailFrom("a@example.org", {"SIZE": "1000", "BODY": "8BITMIME", "SMTPUTF8": None})]


@pytest.mark.parametrize(
    ("params", "reply"),
    [
        (b"SIZE=1001", "552 5.3.4 Message size exceeds fixed maximum message size"),
        (b"SIZE=big", "501 5.5.4 Syntax: SIZE=<octets>"),
        (b"SIZE", "501 5.5.4 Syntax: SIZE=<octets>"),
        (b"BODY=BINARYMIME", "501 5.5.4 Syntax: BODY=7BIT or BODY=8BITMIME"),
        (b"SMTPUTF8=yes", "501 5.5.4 SMTPUTF8 takes no value"),
        (b"BY=120;R", "555 5.5.4 Unsupported parameter BY"),
        (b"AUTH=<>", "555 5.5.4 Unsupported parameter AUTH"),
        (b"SIZE=1 SIZE=2", "501 5.5.4 Duplicate parameter SIZE"),
        (b"=x", "501 5.5.4 Invalid parameter syntax"),
        (b"SIZE=", "501 5.5.4 Invalid parameter value"),
    ],
)
def test_bad_mail_parameters(params: bytes, reply: str) -> None:
    s = ready(max_message_size=1000)
    assert s.send(b"MAIL FROM:<a@example.org> " + params + b"\r\n") == reply + "\r\n"
    assert s.events == []
    assert s.proto.envelope is None


def test_parameters_need_ehlo_and_rcpt_has_none() -> None:
    s = session()
    s.send(b"HELO old\r\n")
    assert s.send(b"MAIL FROM:<a@example.org> SIZE=10\r\n") == "555 5.5.4 MAIL parameters require EHLO\r\n"
    s = in_transaction()
    assert s.send(b"RCPT TO:<c@example.test> FOO=BAR\r\n") == "555 5.5.4 Unsupported parameter FOO\r\n"
    assert s.send(b"RCPT TO:<c@example.test>NOTIFY=NEVER\r\n") == "501 5.5.4 Syntax error after address\r\n"


def test_auth_parameter_is_accepted_when_auth_is_offered() -> None:
    s = ready(auth_mechanisms=("PLAIN",))
    assert s.send(b"MAIL FROM:<a@example.org> AUTH\r\n") == "501 5.5.4 Syntax: AUTH=<mailbox>\r\n"
    assert s.send("MAIL FROM:<a@example.org> AUTH=jörg\r\n".encode()) == (
        "501 5.5.4 Non-ASCII parameter value requires SMTPUTF8\r\n"
    )
    assert s.send(b"MAIL FROM:<a@example.org> AUTH=<>\r\n") == "250 2.1.0 Sender OK\r\n"
    assert s.events == [MailFrom("a@example.org", {"AUTH": "<>"})]
    assert s.send("RCPT TO:<b@example.test> X=é\r\n".encode()) == (
        "501 5.5.4 Non-ASCII parameter value requires SMTPUTF8\r\n"
    )


# -------------------------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("command", "address"),
    [
        (b"MAIL FROM:<>", ""),
        (b"MAIL FROM: <a@example.org>", "a@example.org"),
        (b"MAIL FROM:<@relay.example,@other.example:a@example.org>", "a@example.org"),
        (b'MAIL FROM:<"john doe"@example.org>', '"john doe"@example.org'),
        (b'MAIL FROM:<"a\\"b@c"@example.org>', '"a\\"b@c"@example.org'),
        (b"MAIL FROM:<a@[192.0.2.1]>", "a@[192.0.2.1]"),
        (b"MAIL FROM:<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]"),
        (b"MAIL FROM:<first..last.@example.org>", "first..last.@example.org"),
        (b"MAIL FROM:<A.User+tag@Example.ORG>", "A.User+tag@Example.ORG"),
    ],
)
def test_reverse_path_forms(command: bytes, address: str) -> None:
    s = ready()
    assert s.send(command + b"\r\n") == "250 2.1.0 Sender OK\r\n"
    assert s.events == [MailFrom(address, {})]


@pytest.mark.parametrize(
    ("command", "address"),
    [
        (b"RCPT TO:<postmaster>", "postmaster"),
        (b"RCPT TO:<PostMaster>", "postmaster"),
        (b"RCPT TO:<Postmaster@example.test>", "Postmaster@example.test"),
        (b"RCPT TO:<@relay.example:bob@example.test>", "bob@example.test"),
        (b"rcpt to: <bob@example.test>", "bob@example.test"),
    ],
)
def test_forward_path_forms(command: bytes, address: str) -> None:
    s = in_transaction()
    assert s.send(command + b"\r\n") == "250 2.1.5 Recipient OK\r\n"
    assert s.events == [RcptTo(address, {})]


@pytest.mark.parametrize(
    "path",
    [
        b"a@example.org",
        b"<a@example.org",
        b"<a>",
        b"<@example.org>",
        b"<a@>",
        b"<a@-bad.example>",
        b"<a@bad..example>",
        b"<a@example.org.>",
        b"<a@[300.1.1.1]>",
        b"<a@[IPv6:nonsense]>",
        b"<a@[IPv6:fe80::1%eth0]>",
        b"<a@[tag:whatever]>",
        b'<"unterminated@example.org>',
        b"<a b@example.org>",
        b"<@relay.example a@example.org>",
        b"<postmaster>",
        b"<.@example.org>",
        '<"bad\\épair"@example.org>'.encode(),
        b"<a@[192.0.2.1>",
    ],
)
def test_bad_reverse_paths_are_501_5_1_7(path: bytes) -> None:
    s = ready()
    assert s.send(b"MAIL FROM:" + path + b"\r\n").startswith("501 5.1.7 Bad sender address: ")
    assert s.events == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('<"a\x01"@example.org>', "invalid character in quoted local part"),
        ('<"a\\\x01"@example.org>', "bad quoted pair in local part"),
        ("<a@[1.2.3.4", "unterminated address literal"),
        ("<a@" + "d" * 256 + ">", "domain longer than 255 octets"),
        ("<@" + "d" * 256 + ":a@example.org>", "domain longer than 255 octets"),
    ],
)
def test_address_parser_errors(text: str, message: str) -> None:
    with pytest.raises(AddressSyntaxError, match=message):
        parse_forward_path(text)


def test_address_parser_returns_the_end_of_the_path() -> None:
    assert parse_reverse_path("<> SIZE=1") == ("", 2)
    assert parse_forward_path("<b@example.test> X=1") == ("b@example.test", 16)


def test_mailbox_size_limits_of_rfc5321_4_5_3_1() -> None:
    s = in_transaction()
    ok_local = b"l" * 64
    assert s.send(b"RCPT TO:<" + ok_local + b"@example.test>\r\n") == "250 2.1.5 Recipient OK\r\n"
    assert s.send(b"RCPT TO:<" + ok_local + b"l@example.test>\r\n") == (
        "501 5.1.3 Bad recipient address: local part longer than 64 octets\r\n"
    )
    # Octets, not characters: 33 two-octet characters are 66 octets.
    assert s.send("RCPT TO:<{}@example.test>\r\n".format("é" * 33).encode()).startswith("501 5.1.3")
    label = b"d" * 63
    domain = b".".join([label] * 4)  # 255 octets
    assert len(domain) == 255
    assert s.send(b"RCPT TO:<a@" + domain + b">\r\n") == (
        "501 5.1.3 Bad recipient address: path longer than 256 octets\r\n"
    )
    assert s.send(b"RCPT TO:<a@" + domain + b"x>\r\n").startswith("501 5.1.3 Bad recipient address: domain")
    envelope = s.proto.envelope
    assert envelope is not None
    assert len(envelope.recipients) == 2


def test_smtputf8_addresses_need_the_smtputf8_parameter() -> None:
    s = ready()
    assert s.send("MAIL FROM:<jörg@exämple.org>\r\n".encode()) == (
        "550 5.6.7 Non-ASCII sender address requires SMTPUTF8\r\n"
    )
    s.send(b"MAIL FROM:<a@example.org>\r\n")
    assert s.send("RCPT TO:<用户@例子.广告>\r\n".encode()) == (
        "553 5.6.7 Non-ASCII recipient address requires SMTPUTF8\r\n"
    )
    s.send(b"RSET\r\n")
    s.events.clear()
    assert s.send("MAIL FROM:<jörg@exämple.org> SMTPUTF8\r\n".encode()) == "250 2.1.0 Sender OK\r\n"
    assert s.send("RCPT TO:<用户@例子.广告>\r\n".encode()) == "250 2.1.5 Recipient OK\r\n"
    assert s.events == [MailFrom("jörg@exämple.org", {"SMTPUTF8": None}), RcptTo("用户@例子.广告", {})]


DISALLOWED = {
    "\u0085": "NEL (Cc)",
    "\u2028": "line separator (Zl)",
    "\u2029": "paragraph separator (Zp)",
    "\u202e": "right-to-left override (Cf)",
    "\u200e": "left-to-right mark (Cf)",
    "\u2067": "right-to-left isolate (Cf)",
    "\u200b": "zero width space (Cf)",
    "\u200d": "zero width joiner (Cf)",
    "\ufeff": "byte order mark (Cf)",
    "\u00ad": "soft hyphen (Cf)",
    "\u00a0": "no-break space (Zs)",
    "\u3000": "ideographic space (Zs)",
    "\ue000": "private use (Co)",
    "\U000e0041": "tag latin capital letter a (Cf)",
    "\ufe0f": "variation selector 16",
    "\u3164": "Hangul filler",
    "\u1100": "old Hangul jamo",
    "\ufdd0": "noncharacter (Cn)",
    "\U000e0080": "unassigned (Cn)",
}


@pytest.mark.parametrize("char", list(DISALLOWED), ids=list(DISALLOWED.values()))
def test_addresses_with_control_invisible_or_unassigned_characters_are_refused(char: str) -> None:
    """Issue 9 item 9: U+0085, U+2028 and U+202E were accepted and ended up in Return-Path."""
    s = ready()
    code = f"U+{ord(char):04X}"
    assert s.send(f"MAIL FROM:<bob{char}@example.org> SMTPUTF8\r\n".encode()).startswith(
        f"553 5.1.7 Sender address contains {code}, a control, invisible"
    )
    assert s.send(f"MAIL FROM:<bob@exam{char}ple.org> SMTPUTF8\r\n".encode()).startswith("553 5.1.7 ")
    assert s.send(b"MAIL FROM:<bob@example.org> SMTPUTF8\r\n") == "250 2.1.0 Sender OK\r\n"
    assert s.send(f'RCPT TO:<"de mo{char}"@example.org>\r\n'.encode()).startswith(
        f"553 5.1.3 Recipient address contains {code}"
    )
    assert [type(e) for e in s.events] == [MailFrom]


def test_letters_marks_symbols_and_the_ascii_space_stay_allowed_in_addresses() -> None:
    s = ready()
    for address in (
        "jörg@exämple.org",
        "用户@例子.广告",
        "δοκιμή@παράδειγμα.δοκιμή",
        "हिन्दी@उदाहरण.भारत",
        '"a b"@x.org',
    ):
        assert s.send(f"MAIL FROM:<{address}> SMTPUTF8\r\n".encode()) == "250 2.1.0 Sender OK\r\n", address
        assert s.send(f"RCPT TO:<{address}>\r\n".encode()) == "250 2.1.5 Recipient OK\r\n", address
        s.send(b"RSET\r\n")


_REFUSED_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}


@settings(max_examples=500)
@given(local=st.text(min_size=1, max_size=30))
def test_no_accepted_address_holds_a_control_format_separator_or_unassigned_character(local: str) -> None:
    s = ready()
    line = "MAIL FROM:<" + local.replace(">", "") + "@example.org> SMTPUTF8\r\n"
    reply = s.send(line.encode("utf-8", "surrogatepass"))
    assert reply[:3] in ("250", "501", "553", "500"), reply
    if reply.startswith("250"):
        address = s.proto.envelope.mail_from if s.proto.envelope else ""
        assert all(
            unicodedata.category(c) not in _REFUSED_CATEGORIES
            and (c == " " or unicodedata.category(c) != "Zs")
            for c in address
        ), address


# ------------------------------------------------------------------------------------- glue decisions


def test_decision_methods_refuse_misuse() -> None:
    proto = SmtpServerProtocol(SmtpSettings(HOST))
    with pytest.raises(SmtpUsageError):
        proto.accept()
    with pytest.raises(SmtpUsageError):
        proto.tls_started()
    proto.receive_data(b"EHLO c\r\n")
    assert isinstance(proto.next_event(), Hello)
    for code, enhanced, problem in [
        (250, "2.0.0", "reply code 250 is not a 4xx/5xx error"),
        (550, "4.1.1", "enhanced status '4.1.1' does not match reply code 550"),
        (550, "5.1", "enhanced status '5.1' does not match reply code 550"),
        (650, "6.0.0", "reply code 650 is not a 4xx/5xx error"),
    ]:
        with pytest.raises(ValueError, match=problem):
            proto.reject(code, enhanced, "text")
    proto.reject(550, "5.7.1", "first line\nsecond line")  # the pending decision survived the errors
    assert proto.data_to_send() == b"550-5.7.1 first line\r\n550 5.7.1 second line\r\n"


def test_reply_text_quoting_the_client_is_escaped_and_never_raises() -> None:
    """Issue 9 item 4: a control character in a submitted From made the reply builder raise ValueError and
    the session died without a reply. Any text is now written as printable ASCII."""
    s = in_transaction()
    s.decide = lambda e: (
        (553, "5.7.1", "From <demo@example.test\x01> not owned") if isinstance(e, MessageComplete) else None
    )
    assert s.send(b"DATA\r\nx\r\n.\r\n").endswith("553 5.7.1 From <demo@example.test\\x{1}> not owned\r\n")
    proto = SmtpServerProtocol(SmtpSettings(HOST))
    proto.receive_data(b"EHLO c\r\n")
    proto.next_event()
    proto.reject(550, "5.7.1", "injected\r\n250 OK b\u00f6b \u202e\x00")
    assert proto.data_to_send() == (
        b"550-5.7.1 injected\\x{D}\r\n550 5.7.1 250 OK b\\x{F6}b \\x{202E}\\x{0}\r\n"
    )
    proto.receive_data(b"EHLO c\r\n")
    proto.next_event()
    proto.accept("two\nlines\x7f")  # the EHLO greeting text stays one line
    assert proto.data_to_send().startswith(b"250-mx.example.test two lines\\x{7F}\r\n")
    proto.receive_data(b"MAIL FROM:<a@b>\r\n")
    proto.next_event()
    proto.reject(553, "5.7.1", "\u00e9" * 1000)
    [line] = proto.data_to_send().split(b"\r\n")[:-1]
    assert len(line) + 2 <= 512
    assert line.endswith(b"...")
    assert line.isascii()


@settings(max_examples=300)
@given(text=st.text(), code=st.sampled_from([(451, "4.3.0"), (553, "5.7.1")]), closing=st.booleans())
def test_any_reply_text_makes_well_formed_reply_lines(
    text: str, code: tuple[int, str], closing: bool
) -> None:
    proto = SmtpServerProtocol(SmtpSettings(HOST))
    proto.receive_data(b"EHLO c\r\n")
    proto.next_event()
    if closing:
        proto.close(code[0], code[1], text)
    else:
        proto.reject(code[0], code[1], text)
    out = proto.data_to_send()
    assert out.endswith(b"\r\n")
    lines = out[:-2].split(b"\r\n")
    for index, line in enumerate(lines):
        sep = b" " if index == len(lines) - 1 else b"-"
        assert line.startswith(str(code[0]).encode() + sep + code[1].encode()), line
        assert len(line) + 2 <= 512, line
        assert all(0x20 <= b <= 0x7E for b in line), line


def test_message_complete_answer_carries_the_glue_text_and_ends_the_transaction() -> None:
    s = in_transaction()
    s.decide = lambda e: "OK queued as 1234" if isinstance(e, MessageComplete) else None
    assert s.send(b"DATA\r\nx\r\n.\r\n").endswith("250 2.0.0 OK queued as 1234\r\n")
    assert s.proto.envelope is None
    s = in_transaction()
    s.decide = lambda e: (451, "4.3.0", "Disk full") if isinstance(e, MessageComplete) else None
    assert s.send(b"DATA\r\nx\r\n.\r\n").endswith("451 4.3.0 Disk full\r\n")
    assert s.proto.envelope is None
    assert s.send(b"MAIL FROM:<a@example.org>\r\n") == "250 2.1.0 Sender OK\r\n"


def test_close_from_the_glue_aborts_a_message_in_progress() -> None:
    s = in_transaction()
    s.send(b"DATA\r\npartial")
    s.proto.close(421, "4.4.2", "Timeout waiting for data")
    s.pump()
    assert s.proto.data_to_send() == b"421 4.4.2 mx.example.test Timeout waiting for data\r\n"
    assert s.kinds()[-1] == MessageAborted
    assert s.proto.closed
    s.proto.close()  # idempotent
    s.proto.accept()  # decisions are ignored once closed (the glue may race with a timeout)
    s.proto.reject(550, "5.7.1", "late")
    s.proto.tls_started()
    assert s.proto.data_to_send() == b""


def test_quit_ignores_everything_after_it() -> None:
    s = ready()
    assert s.send(b"QUIT\r\nNOOP\r\n") == "221 2.0.0 mx.example.test closing connection\r\n"
    assert s.send(b"NOOP\r\n") == ""
    assert s.kinds() == [Quit]


def test_settings_are_validated() -> None:
    bad_settings: list[tuple[dict[str, Any], str]] = [
        ({"hostname": ""}, "hostname must be non-empty printable ASCII"),
        ({"hostname": "has space"}, "hostname must be non-empty printable ASCII"),
        ({"hostname": "h", "max_command_line": 100}, "max_command_line must be at least 512"),
        ({"hostname": "h", "max_message_size": 0}, "max_message_size must be positive"),
        ({"hostname": "h", "max_recipients": 0}, "max_recipients must be positive"),
        ({"hostname": "h", "max_errors": 0}, "max_errors must be positive"),
        ({"hostname": "h", "auth_mechanisms": ("bad mech",)}, "invalid SASL mechanism name 'bad mech'"),
    ]
    for bad, problem in bad_settings:
        with pytest.raises(ValueError, match=problem):
            SmtpSettings(**bad)
