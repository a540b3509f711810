"""SMTP protocol core: AUTH (RFC 4954) with the SASL mechanisms of postoffice.auth.sasl, the AUTH= parameter
of MAIL, and the property tests of the AUTH exchange (split invariance, arbitrary input, bounded memory)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.auth.sasl import Credentials
from postoffice.smtp.protocol import (
    AUTH_LINE_LIMIT,
    Authenticate,
    ConnectionClosed,
    Event,
    Hello,
    MailFrom,
    MessageComplete,
    MessageData,
    RcptTo,
    SmtpServerProtocol,
    SmtpSettings,
    SmtpUsageError,
    StartTls,
    parse_mail_auth,
)

HOST = "mx.example.test"
USER = "demo@example.test"
PASSWORD = "correct horse"
REPLY_LINES = re.compile(rb"(?:[0-9]{3}[ -][^\r\n]*\r\n)*")
Decision = None | str | tuple[int, str, str]  # None: accept(); str: accept(text); tuple: reject(...)
DECISIONS = (Hello, MailFrom, RcptTo, MessageComplete, Authenticate)


def b64(data: bytes | str) -> bytes:
    return base64.b64encode(data.encode() if isinstance(data, str) else data)


PLAIN_RESPONSE = b64(f"\0{USER}\0{PASSWORD}")
CREDENTIALS = Credentials(authzid="", authcid=USER, password=PASSWORD)


@dataclass
class Session:
    """Drives a protocol core like the glue does; answers decisions with `decide` (default: accept) and
    StartTls with tls_started()."""

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
            if isinstance(event, DECISIONS):
                answer = self.decide(event)
                if isinstance(answer, tuple):
                    self.proto.reject(*answer)
                else:
                    self.proto.accept(answer)
            elif isinstance(event, StartTls):
                self.proto.tls_started()


def session(*, tls: bool = True, ehlo: bool = True, **overrides: Any) -> Session:
    """A session with PLAIN and LOGIN offered, over TLS unless told otherwise, after EHLO by default."""
    options: dict[str, Any] = {"auth_mechanisms": ("PLAIN", "LOGIN"), **overrides}
    proto = SmtpServerProtocol(SmtpSettings(HOST, **options), tls_active=tls)
    s = Session(proto)
    proto.greeting()
    proto.data_to_send()
    if ehlo:
        s.send(b"EHLO client.example\r\n")
        s.events.clear()
    return s


def lines(replies: str) -> list[str]:
    return replies.split("\r\n")[:-1]


def reject_wrong_password(event: Event) -> Decision:
    if isinstance(event, Authenticate) and (
        event.credentials is None or event.credentials.password != PASSWORD
    ):
        return (535, "5.7.8", "Authentication credentials invalid")
    return None


# ------------------------------------------------------------------------------------------------ EHLO


def test_ehlo_offers_auth_over_tls() -> None:
    s = session(ehlo=False)
    replies = lines(s.send(b"EHLO c\r\n"))
    assert replies[-1] == "250 AUTH SCRAM-SHA-256 PLAIN LOGIN"
    assert "250-STARTTLS" not in replies


def test_ehlo_does_not_offer_auth_before_starttls_when_tls_is_required() -> None:
    s = session(tls=False, ehlo=False)
    replies = lines(s.send(b"EHLO c\r\n"))
    assert not any("AUTH" in line for line in replies)
    assert "250-STARTTLS" in replies or "250 STARTTLS" in replies
    s.send(b"STARTTLS\r\n")
    assert lines(s.send(b"EHLO c\r\n"))[-1] == "250 AUTH SCRAM-SHA-256 PLAIN LOGIN"


def test_ehlo_offers_auth_in_plaintext_when_tls_is_not_required() -> None:
    s = session(tls=False, ehlo=False, auth_requires_tls=False)
    assert "250 AUTH SCRAM-SHA-256 PLAIN LOGIN" in lines(s.send(b"EHLO c\r\n"))
    assert s.proto.auth_available


def test_ehlo_without_mechanisms_offers_no_auth() -> None:
    s = session(ehlo=False, auth_mechanisms=())
    assert "AUTH" not in s.send(b"EHLO c\r\n")
    assert not s.proto.auth_available


def test_ehlo_offers_the_configured_mechanisms_in_their_order() -> None:
    s = session(ehlo=False, auth_mechanisms=("LOGIN",))
    assert lines(s.send(b"EHLO c\r\n"))[-1] == "250 AUTH SCRAM-SHA-256 LOGIN"


# ------------------------------------------------------------------------------------------ exchanges


def test_plain_with_initial_response_asks_the_glue_and_235_on_accept() -> None:
    s = session()
    assert s.send(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n") == "235 2.7.0 Authentication successful\r\n"
    assert s.events == [Authenticate("PLAIN", CREDENTIALS)]
    assert s.proto.authenticated


def test_plain_without_initial_response_gets_an_empty_challenge() -> None:
    s = session()
    assert s.send(b"AUTH PLAIN\r\n") == "334 \r\n"  # RFC 4954 section 4: "334" SP, empty base64
    assert s.events == []
    assert not s.proto.authenticated
    assert s.send(PLAIN_RESPONSE + b"\r\n") == "235 2.7.0 Authentication successful\r\n"
    assert s.events == [Authenticate("PLAIN", CREDENTIALS)]


def test_login_asks_for_username_and_password() -> None:
    s = session()
    assert s.send(b"auth login\r\n") == "334 VXNlcm5hbWU6\r\n"  # "Username:"
    assert s.send(b64(USER) + b"\r\n") == "334 UGFzc3dvcmQ6\r\n"  # "Password:"
    assert s.send(b64(PASSWORD) + b"\r\n") == "235 2.7.0 Authentication successful\r\n"
    assert s.events == [Authenticate("LOGIN", CREDENTIALS)]


def test_login_initial_response_is_the_username() -> None:
    s = session()
    assert s.send(b"AUTH LOGIN " + b64(USER) + b"\r\n") == "334 UGFzc3dvcmQ6\r\n"
    assert s.send(b64(PASSWORD) + b"\r\n") == "235 2.7.0 Authentication successful\r\n"
    assert s.events == [Authenticate("LOGIN", CREDENTIALS)]


def test_accept_text_replaces_the_default() -> None:
    s = session()
    s.decide = lambda event: "Welcome, demo" if isinstance(event, Authenticate) else None
    assert s.send(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n") == "235 2.7.0 Welcome, demo\r\n"


def test_rejected_credentials_leave_the_session_unauthenticated_and_auth_may_be_retried() -> None:
    s = session()
    s.decide = reject_wrong_password
    wrong = b64(f"\0{USER}\0wrong")
    assert s.send(b"AUTH PLAIN " + wrong + b"\r\n") == "535 5.7.8 Authentication credentials invalid\r\n"
    assert not s.proto.authenticated
    assert s.send(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n") == "235 2.7.0 Authentication successful\r\n"
    assert s.proto.authenticated
    assert [type(e) for e in s.events] == [Authenticate, Authenticate]


def test_temporary_failure_from_the_glue() -> None:
    s = session()
    s.decide = lambda event: (454, "4.7.0", "Temporary authentication failure")
    assert (
        s.send(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n") == "454 4.7.0 Temporary authentication failure\r\n"
    )
    assert not s.proto.authenticated


def test_initial_response_equals_sign_is_an_empty_response_not_a_missing_one() -> None:
    s = session()
    # RFC 4954 section 4: "=" is an empty initial response; for PLAIN that is a malformed message.
    assert s.send(b"AUTH PLAIN =\r\n").startswith("535 5.7.8 Authentication failed: ")
    assert s.send(b"AUTH LOGIN =\r\n").startswith("535 5.7.8 Authentication failed: ")
    assert s.events == []


def test_empty_line_is_an_empty_response() -> None:
    s = session()
    s.send(b"AUTH LOGIN\r\n")
    assert s.send(b"\r\n") == "535 5.7.8 Authentication failed: username is empty\r\n"


def test_malformed_sasl_message_fails_with_535() -> None:
    s = session()
    assert s.send(b"AUTH PLAIN " + b64("no nul here") + b"\r\n") == (
        "535 5.7.8 Authentication failed: message must be [authzid] NUL authcid NUL password\r\n"
    )
    assert s.events == []
    assert not s.proto.authenticated


def test_cancel_with_star_is_501_and_does_not_count_as_an_error() -> None:
    s = session(max_errors=1)
    for command in (b"AUTH PLAIN\r\n", b"AUTH LOGIN\r\n"):
        assert s.send(command).startswith("334 ")
        assert s.send(b"*\r\n") == "501 5.0.0 Authentication cancelled\r\n"
    assert not s.proto.closed
    assert s.send(b"NOOP\r\n") == "250 2.0.0 OK\r\n"  # the exchange is over: lines are commands again


def test_login_cancelled_after_the_username() -> None:
    s = session()
    s.send(b"AUTH LOGIN " + b64(USER) + b"\r\n")
    assert s.send(b"*\r\n") == "501 5.0.0 Authentication cancelled\r\n"
    assert s.events == []


@pytest.mark.parametrize("response", [b"not base64!", b"QUJ=D", b"QQ", "dé".encode(), b"QUJD\x00"])
def test_response_that_is_not_base64_is_501_5_5_2_and_ends_the_exchange(response: bytes) -> None:
    s = session()
    s.send(b"AUTH PLAIN\r\n")
    assert s.send(response + b"\r\n") == "501 5.5.2 Cannot Base64-decode client response\r\n"
    assert s.send(PLAIN_RESPONSE + b"\r\n") == "500 5.5.2 Command not recognized\r\n"
    assert s.events == []


def test_initial_response_that_is_not_base64_is_501_5_5_2() -> None:
    s = session()
    assert s.send(b"AUTH PLAIN ***\r\n") == "501 5.5.2 Cannot Base64-decode client response\r\n"
    assert s.send(b"AUTH PLAIN *\r\n") == "501 5.5.2 Cannot Base64-decode client response\r\n"


def test_response_lines_may_end_in_bare_lf_and_spaces_around_are_ignored() -> None:
    s = session()
    s.send(b"AUTH LOGIN\n")
    assert s.send(b"  " + b64(USER) + b" \n") == "334 UGFzc3dvcmQ6\r\n"
    assert s.send(b64(PASSWORD) + b"\n") == "235 2.7.0 Authentication successful\r\n"


# ------------------------------------------------------------------------------------ sequence and errors


@pytest.mark.parametrize(
    ("overrides", "prelude", "command", "reply"),
    [
        ({"auth_mechanisms": ()}, b"EHLO c\r\n", b"AUTH PLAIN", "502 5.5.1 AUTH not available"),
        ({}, b"", b"AUTH PLAIN", "503 5.5.1 Send EHLO first"),
        ({}, b"HELO c\r\n", b"AUTH PLAIN", "503 5.5.1 Send EHLO first"),
        (
            {},
            b"EHLO c\r\nMAIL FROM:<a@example.org>\r\n",
            b"AUTH PLAIN",
            "503 5.5.1 AUTH not allowed during a mail transaction",
        ),
        ({}, b"EHLO c\r\n", b"AUTH CRAM-MD5", "504 5.5.4 Unrecognized authentication type"),
        ({}, b"EHLO c\r\n", b"AUTH " + b"X" * 30, "504 5.5.4 Unrecognized authentication type"),
        (
            {"auth_mechanisms": ("PLAIN",)},
            b"EHLO c\r\n",
            b"AUTH LOGIN",
            "504 5.5.4 Unrecognized authentication type",
        ),
        ({}, b"EHLO c\r\n", b"AUTH", "501 5.5.4 Syntax: AUTH mechanism [initial-response]"),
        ({}, b"EHLO c\r\n", b"AUTH   ", "501 5.5.4 Syntax: AUTH mechanism [initial-response]"),
        ({}, b"EHLO c\r\n", b"AUTH PLAIN a b", "501 5.5.4 Syntax: AUTH mechanism [initial-response]"),
    ],
)
def test_auth_sequence_and_syntax_errors(
    overrides: dict[str, Any], prelude: bytes, command: bytes, reply: str
) -> None:
    s = session(ehlo=False, **overrides)
    if prelude:
        s.send(prelude)
    assert s.send(command + b"\r\n") == reply + "\r\n"
    assert not [e for e in s.events if isinstance(e, Authenticate)]


def test_auth_before_tls_when_tls_is_required_is_538() -> None:
    s = session(tls=False)
    assert s.send(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n") == (
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    )
    assert s.events == []
    assert not s.proto.authenticated


def test_second_auth_after_success_is_503() -> None:
    s = session()
    s.send(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n")
    assert s.send(b"AUTH LOGIN\r\n") == "503 5.5.1 Already authenticated\r\n"
    assert len(s.events) == 1


def test_authentication_survives_ehlo_and_rset_and_the_transaction_after_it() -> None:
    s = session()
    s.send(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n")
    s.send(b"MAIL FROM:<demo@example.test>\r\nRCPT TO:<b@example.test>\r\nRSET\r\nEHLO again\r\n")
    assert s.proto.authenticated


def test_starttls_resets_authentication() -> None:
    s = session(tls=False, auth_requires_tls=False)
    s.send(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n")
    assert s.proto.authenticated
    assert s.send(b"STARTTLS\r\n") == "220 2.0.0 Ready to start TLS\r\n"
    assert s.proto.tls_active
    assert not s.proto.authenticated
    assert s.send(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n") == "503 5.5.1 Send EHLO first\r\n"
    s.send(b"EHLO c\r\n")
    assert s.send(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n") == "235 2.7.0 Authentication successful\r\n"


def test_protocol_errors_in_the_exchange_count_and_rejections_do_not() -> None:
    s = session(max_errors=2)
    s.decide = lambda event: (535, "5.7.8", "Authentication credentials invalid")
    for _ in range(5):
        s.send(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n")
    assert not s.proto.closed
    s.send(b"AUTH PLAIN\r\n!!\r\n")
    assert not s.proto.closed
    assert lines(s.send(b"AUTH PLAIN\r\n!!\r\n")) == [
        "334 ",
        "501 5.5.2 Cannot Base64-decode client response",
        "421 4.7.0 mx.example.test Too many errors, closing connection",
    ]
    assert s.proto.closed


def test_peer_close_during_the_exchange() -> None:
    s = session()
    s.send(b"AUTH LOGIN\r\n" + b64(USER)[:3])
    s.send(b"")
    assert s.events == [ConnectionClosed()]
    assert s.proto.closed


def test_close_from_the_glue_during_the_exchange_and_while_authenticate_is_pending() -> None:
    s = session()
    s.send(b"AUTH LOGIN\r\n")
    s.proto.close(421, "4.4.2", "Timeout")
    assert s.proto.data_to_send() == b"421 4.4.2 mx.example.test Timeout\r\n"
    proto = session().proto
    proto.receive_data(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n")
    assert isinstance(proto.next_event(), Authenticate)
    proto.close()
    proto.accept()  # ignored once closed (the glue's password check may race with a timeout)
    assert not proto.authenticated
    assert b"235" not in proto.data_to_send()


def test_authenticate_decision_misuse_raises() -> None:
    proto = session().proto
    with pytest.raises(SmtpUsageError):
        proto.accept()
    proto.receive_data(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n")
    assert isinstance(proto.next_event(), Authenticate)
    with pytest.raises(ValueError, match="does not match reply code 535"):
        proto.reject(535, "4.7.8", "class mismatch")
    proto.reject(535, "5.7.8", "Authentication credentials invalid")
    assert proto.data_to_send() == b"535 5.7.8 Authentication credentials invalid\r\n"


def test_authenticate_repr_does_not_show_the_password() -> None:
    event = Authenticate("PLAIN", CREDENTIALS)
    assert PASSWORD not in repr(event)
    assert "PLAIN" in repr(event)
    assert event == Authenticate("PLAIN", Credentials("", USER, PASSWORD))
    assert event != Authenticate("PLAIN", Credentials("", USER, "other"))


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"auth_mechanisms": ("CRAM-MD5",)}, "CRAM-MD5 is not implemented"),
        ({"auth_mechanisms": ("PLAIN", "PLAIN")}, "lists a mechanism twice"),
        ({"auth_mechanisms": ("plain",)}, "invalid SASL mechanism name 'plain'"),
        ({"max_auth_line": 511}, "max_auth_line must be at least max_command_line"),
        (
            {"max_command_line": 2000, "max_auth_line": 1999},
            "max_auth_line must be at least max_command_line",
        ),
    ],
)
def test_auth_settings_are_validated(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SmtpSettings(HOST, **overrides)


# ---------------------------------------------------------------------------------------------- pipelining


def test_pipelined_auth_exchange_and_transaction_are_answered_in_order() -> None:
    s = session()
    replies = s.send(
        b"AUTH LOGIN\r\n" + b64(USER) + b"\r\n" + b64(PASSWORD) + b"\r\n"
        b"MAIL FROM:<demo@example.test> AUTH=demo@example.test\r\nRCPT TO:<b@example.test>\r\n"
        b"DATA\r\nhi\r\n.\r\nQUIT\r\n"
    )
    assert lines(replies) == [
        "334 VXNlcm5hbWU6",
        "334 UGFzc3dvcmQ6",
        "235 2.7.0 Authentication successful",
        "250 2.1.0 Sender OK",
        "250 2.1.5 Recipient OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 OK",
        "221 2.0.0 mx.example.test closing connection",
    ]
    assert s.events[0] == Authenticate("LOGIN", CREDENTIALS)
    assert s.events[1] == MailFrom(USER, {"AUTH": USER})


def test_core_parses_nothing_past_a_pending_authenticate() -> None:
    proto = session().proto
    proto.receive_data(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\nNOOP\r\nMAIL FROM:<a@example.org>\r\n")
    assert proto.next_event() == Authenticate("PLAIN", CREDENTIALS)
    assert proto.next_event() is None
    assert proto.data_to_send() == b""
    proto.reject(535, "5.7.8", "Authentication credentials invalid")
    assert proto.next_event() == MailFrom("a@example.org", {})
    assert proto.data_to_send() == b"535 5.7.8 Authentication credentials invalid\r\n250 2.0.0 OK\r\n"


def test_a_failed_pipelined_exchange_leaves_the_following_lines_to_be_commands() -> None:
    s = session()
    s.decide = reject_wrong_password
    replies = s.send(b"AUTH PLAIN " + b64(f"\0{USER}\0wrong") + b"\r\nNOOP\r\nAUTH PLAIN\r\n*\r\nNOOP\r\n")
    assert lines(replies) == [
        "535 5.7.8 Authentication credentials invalid",
        "250 2.0.0 OK",
        "334 ",
        "501 5.0.0 Authentication cancelled",
        "250 2.0.0 OK",
    ]


# ------------------------------------------------------------------------------------------- line lengths


def test_auth_response_line_of_12288_octets_is_accepted() -> None:
    s = session()
    s.send(b"AUTH PLAIN\r\n")
    payload = b"A" * (AUTH_LINE_LIMIT - 4)  # base64 (a multiple of 4), two spaces, CRLF
    line = payload + b"  \r\n"
    assert len(line) == AUTH_LINE_LIMIT
    # Accepted as a line; PLAIN then finds the message too long.
    assert s.send(line) == "535 5.7.8 Authentication failed: message too long\r\n"


def test_auth_response_line_over_the_limit_is_500_5_5_6_and_ends_the_exchange() -> None:
    s = session()
    s.send(b"AUTH LOGIN\r\n")
    assert s.send(b"A" * AUTH_LINE_LIMIT) == "500 5.5.6 Authentication exchange line is too long\r\n"
    assert s.proto.buffered_bytes < AUTH_LINE_LIMIT
    assert s.send(b"A" * 50_000) == ""  # the rest of the line is discarded
    assert s.proto.buffered_bytes < AUTH_LINE_LIMIT
    assert s.send(b"AAAA\r\nNOOP\r\n") == "250 2.0.0 OK\r\n"
    assert s.events == []


def test_long_password_fits_in_the_initial_response_and_in_a_response_line() -> None:
    password = "p" * 1024
    message = b64(f"\0{USER}\0{password}")
    assert len(message) > 512
    s = session()
    assert s.send(b"AUTH PLAIN " + message + b"\r\n") == "235 2.7.0 Authentication successful\r\n"
    s = session()
    s.send(b"AUTH LOGIN " + b64(USER) + b"\r\n")
    assert s.send(b64(password) + b"\r\n") == "235 2.7.0 Authentication successful\r\n"
    assert s.events == [Authenticate("LOGIN", Credentials("", USER, password))]


def test_auth_command_line_over_max_auth_line_is_500_line_too_long() -> None:
    s = session()
    assert s.send(b"AUTH PLAIN " + b"A" * AUTH_LINE_LIMIT + b"\r\nNOOP\r\n") == (
        "500 5.5.2 Line too long\r\n250 2.0.0 OK\r\n"
    )


def test_other_commands_keep_the_512_octet_limit() -> None:
    s = session()
    assert s.send(b"NOOP " + b"x" * 600 + b"\r\n") == "500 5.5.2 Line too long\r\n"
    s = session(auth_mechanisms=())
    assert s.send(b"AUTH " + b"x" * 600 + b"\r\n") == "500 5.5.2 Line too long\r\n"


# --------------------------------------------------------------------------------- MAIL AUTH= parameter


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        ("<>", None),
        ("demo@example.test", "demo@example.test"),
        ("e+3Dmc2@example.test", "e=mc2@example.test"),
        ("a+2Bb@example.test", "a+b@example.test"),
        ('"john+20doe"@example.test', '"john doe"@example.test'),
    ],
)
def test_mail_auth_parameter_is_passed_as_sent_and_decodes(value: str, decoded: str | None) -> None:
    s = session()
    assert s.send(f"MAIL FROM:<a@example.org> AUTH={value}\r\n".encode()) == "250 2.1.0 Sender OK\r\n"
    assert s.events == [MailFrom("a@example.org", {"AUTH": value})]
    assert parse_mail_auth(value) == decoded


@pytest.mark.parametrize(
    "value",
    [
        b"AUTH",
        b"AUTH=a+2b@example.test",
        b"AUTH=a+@example.test",
        b"AUTH=+0D+0A",
        b"AUTH=+20",
        b"AUTH=+FF",
        b"AUTH=a+4",
    ],
)
def test_malformed_mail_auth_parameter_is_501(value: bytes) -> None:
    s = session()
    assert s.send(b"MAIL FROM:<a@example.org> " + value + b"\r\n") == "501 5.5.4 Syntax: AUTH=<mailbox>\r\n"
    assert s.events == []


def test_mail_auth_parameter_is_unknown_without_mechanisms() -> None:
    s = session(auth_mechanisms=())
    assert s.send(b"MAIL FROM:<a@example.org> AUTH=<>\r\n") == "555 5.5.4 Unsupported parameter AUTH\r\n"


def test_mail_line_may_be_500_octets_longer_when_auth_is_offered() -> None:
    s = session(dsn=False)
    head = b"MAIL FROM:<a@example.org> AUTH="
    value = b"x" * (512 + 500 - len(head) - 2)
    assert s.send(head + value + b"\r\n") == "250 2.1.0 Sender OK\r\n"
    s.send(b"RSET\r\n")
    assert s.send(head + value + b"x\r\n") == "500 5.5.2 Line too long\r\n"


# ------------------------------------------------------------------------------------------- properties


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return [p for p in pieces if p]


AUTH_ATOMS = [
    b"EHLO c\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n",
    b"AUTH PLAIN =\r\n",
    b"AUTH LOGIN\r\n",
    b"AUTH LOGIN " + b64(USER) + b"\r\n",
    b"AUTH CRAM-MD5\r\n",
    b"AUTH\r\n",
    PLAIN_RESPONSE + b"\r\n",
    b64(USER) + b"\r\n",
    b64(PASSWORD) + b"\r\n",
    b64("wrong") + b"\r\n",
    b"*\r\n",
    b"=\r\n",
    b"\r\n",
    b"MAIL FROM:<a@example.org> AUTH=<>\r\n",
    b"RCPT TO:<b@example.test>\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"A" * 5000,
    b"\n",
    b"QUIT\r\n",
]
ATOMS = st.integers(min_value=0, max_value=9).flatmap(
    lambda k: st.binary(max_size=30) if k == 0 else st.sampled_from(AUTH_ATOMS)
)


class Driver:
    """Feeds input in pieces; accepts Authenticate when the password is right, every other decision too."""

    def __init__(self, **overrides: Any) -> None:
        options: dict[str, Any] = {"auth_mechanisms": ("PLAIN", "LOGIN"), "max_errors": 1000, **overrides}
        self.proto = SmtpServerProtocol(SmtpSettings(HOST, **options), tls_active=True)
        self.events: list[Event] = []
        self.replies = bytearray()
        self.max_buffered = 0

    def feed(self, *pieces: bytes) -> Driver:
        for piece in pieces:
            self.proto.receive_data(piece)
            while (event := self.proto.next_event()) is not None:
                self.events.append(event)
                if isinstance(event, Authenticate) and (
                    event.credentials is None or event.credentials.password != PASSWORD
                ):
                    self.proto.reject(535, "5.7.8", "Authentication credentials invalid")
                elif isinstance(event, DECISIONS):
                    self.proto.accept()
            self.max_buffered = max(self.max_buffered, self.proto.buffered_bytes)
            self.replies += self.proto.data_to_send()
        return self

    def kinds(self) -> list[type[Event]]:
        result: list[type[Event]] = []
        for event in self.events:
            if not (isinstance(event, MessageData) and result and result[-1] is MessageData):
                result.append(type(event))
        return result


@given(
    atoms=st.lists(ATOMS, min_size=1, max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=200_000), max_size=20),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_auth_sessions_do_not_depend_on_the_split(atoms: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(atoms)
    whole = Driver().feed(stream, b"")
    pieces = Driver().feed(*split(stream, cuts), b"")
    assert pieces.replies == whole.replies
    assert pieces.events == whole.events
    assert pieces.proto.authenticated == whole.proto.authenticated
    bytewise = Driver().feed(*[stream[i : i + 1] for i in range(min(len(stream), 1000))])
    prefix = Driver().feed(*split(stream[:1000], []))
    assert bytewise.replies == prefix.replies
    assert bytewise.events == prefix.events


@given(
    start=st.sampled_from([b"AUTH PLAIN\r\n", b"AUTH LOGIN\r\n", b"AUTH LOGIN " + b64(USER) + b"\r\n"]),
    stream=st.one_of(
        st.binary(max_size=3000),
        st.lists(
            st.sampled_from([b"A" * 4096, b"\r", b"\n", b"*", b"=", b"\x00", b"\xff", b" ", b"QUJD"]),
            max_size=40,
        ).map(b"".join),
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=200_000), max_size=20),
    auth_line=st.sampled_from([512, 1024, AUTH_LINE_LIMIT]),
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_in_the_auth_exchange_never_raise_and_memory_stays_bounded(
    start: bytes, stream: bytes, cuts: list[int], auth_line: int
) -> None:
    driver = Driver(max_auth_line=auth_line, max_errors=5)
    driver.feed(b"EHLO c\r\n", start)
    for piece in split(stream, cuts):
        driver.feed(piece)
        assert driver.proto.buffered_bytes < driver.proto.settings.max_buffered_line
    driver.feed(b"")
    assert driver.proto.closed
    assert driver.max_buffered < max(auth_line, 512 + 600)
    assert REPLY_LINES.fullmatch(bytes(driver.replies)), bytes(driver.replies)[-200:]
