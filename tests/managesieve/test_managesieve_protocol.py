"""The ManageSieve core (RFC 5804), sans-IO: transcripts of commands and answers, literals however the input
is split, SASL exchanges, STARTTLS, limits, and any input without an exception."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.managesieve import protocol as p

SIEVE = ("fileinto", "vacation")


def core(
    *, tls: bool = False, plaintext: bool = False, max_errors: int = 5, max_script: int = 1000
) -> p.ManageSieveProtocol:
    proto = p.ManageSieveProtocol(
        p.ManageSieveSettings(
            hostname="mx.example.test",
            implementation="Postoffice",
            sieve_extensions=SIEVE,
            max_errors=max_errors,
            starttls_available=True,
            plaintext_auth_allowed=plaintext,
            max_script_size=max_script,
        ),
        tls_active=tls,
    )
    proto.greeting()
    return proto


def feed(proto: p.ManageSieveProtocol, data: bytes) -> list[p.Event]:
    proto.receive_data(data)
    events = []
    while (event := proto.next_event()) is not None:
        events.append(event)
        if isinstance(event, p.Login):
            proto.login_result(event.password == RIGHT)
        elif isinstance(event, p.ScriptRequest):
            if event.command == "LISTSCRIPTS":
                proto.answer_list([("main", True), ('odd "name"', False)])
            elif event.command == "GETSCRIPT":
                proto.answer_script("keep;\r\n")
            else:
                proto.answer_ok()
    return events


RIGHT = "pw"  # what the test's glue takes as the right password


def plain(user: str = "demo@example.test", password: str = RIGHT) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def logged_in(**kw: object) -> p.ManageSieveProtocol:
    proto = core(tls=True, **kw)  # type: ignore[arg-type]
    proto.data_to_send()
    feed(proto, f'AUTHENTICATE "PLAIN" "{plain()}"\r\n'.encode())
    assert proto.data_to_send() == b'OK "Logged in."\r\n'
    return proto


def test_the_greeting_lists_capabilities_and_sasl_only_where_a_login_may_be_made() -> None:
    plaintext = core().data_to_send().decode()
    assert plaintext.splitlines() == [
        '"IMPLEMENTATION" "Postoffice"',
        '"SIEVE" "fileinto vacation"',
        '"SASL" ""',
        '"VERSION" "1.0"',
        '"MAXREDIRECTS" "4"',
        '"STARTTLS"',
        '"UNAUTHENTICATE"',
        'OK "mx.example.test ManageSieve ready."',
    ]
    over_tls = core(tls=True).data_to_send().decode()
    assert '"SASL" "SCRAM-SHA-256 PLAIN LOGIN"' in over_tls
    assert '"STARTTLS"' not in over_tls


def test_authenticate_before_tls_is_refused_with_encrypt_needed() -> None:
    proto = core()
    proto.data_to_send()
    assert feed(proto, f'AUTHENTICATE "PLAIN" "{plain()}"\r\n'.encode()) == []
    assert proto.data_to_send() == b'NO (ENCRYPT-NEEDED) "Use STARTTLS first."\r\n'


def test_starttls_drops_what_followed_in_plaintext_and_sends_the_capabilities_again() -> None:
    proto = core()
    proto.data_to_send()
    events = feed(proto, b'STARTTLS\r\nAUTHENTICATE "PLAIN" "x"\r\n')
    assert events == [p.StartTls()]
    assert proto.data_to_send() == b'OK "Begin TLS negotiation now."\r\n'
    proto.tls_started()
    after = proto.data_to_send().decode()
    assert '"SASL" "SCRAM-SHA-256 PLAIN LOGIN"' in after
    assert '"STARTTLS"' not in after
    assert after.endswith('OK "TLS negotiation successful."\r\n')
    assert feed(proto, b"STARTTLS\r\n") == []
    assert proto.data_to_send() == b'NO "TLS is active already."\r\n'


def test_plain_with_a_continuation_and_a_cancel() -> None:
    proto = core(tls=True)
    proto.data_to_send()
    feed(proto, b'AUTHENTICATE "PLAIN"\r\n')
    assert proto.data_to_send() == b'""\r\n'  # the empty challenge, as a string
    events = feed(proto, b"{%d+}\r\n%s\r\n" % (len(plain()), plain().encode()))  # the answer as a literal
    assert isinstance(events[0], p.Login)
    assert events[0].username == "demo@example.test"
    assert proto.data_to_send() == b'OK "Logged in."\r\n'
    assert proto.account == "demo@example.test"
    other = core(tls=True)
    other.data_to_send()
    feed(other, b'AUTHENTICATE "LOGIN"\r\n')
    assert other.data_to_send() == b'"VXNlcm5hbWU6"\r\n'
    feed(other, b'"*"\r\n')
    assert other.data_to_send() == b'NO "Authentication cancelled."\r\n'
    assert other.account is None


def test_a_wrong_password_is_no_and_counts() -> None:
    proto = core(tls=True, max_errors=2)
    proto.data_to_send()
    feed(proto, f'AUTHENTICATE "PLAIN" "{plain(password="bad")}"\r\n'.encode())
    assert proto.data_to_send() == b'NO "Authentication failed."\r\n'
    feed(proto, f'AUTHENTICATE "PLAIN" "{plain(password="bad")}"\r\n'.encode())
    assert proto.data_to_send() == b'NO "Authentication failed."\r\nBYE "Too many errors."\r\n'
    assert proto.closed


def test_putscript_with_a_literal_is_checked_and_handed_to_the_glue() -> None:
    proto = logged_in()
    script = b'require "fileinto";\r\nfileinto "Lists";\r\n'
    events = feed(proto, b'PUTSCRIPT "main" {%d+}\r\n%s\r\n' % (len(script), script))
    assert events == [p.ScriptRequest("PUTSCRIPT", ("main",), script=script.decode())]
    assert proto.data_to_send() == b'OK "Done."\r\n'
    bad = b'fileinto "Lists";\r\n'
    assert feed(proto, b'PUTSCRIPT "main" {%d}\r\n%s\r\n' % (len(bad), bad)) == []  # "{n}" taken too
    assert proto.data_to_send() == (
        b'NO "line 1, column 1: the command \\"fileinto\\" needs require \\"fileinto\\""\r\n'
    )
    assert feed(proto, b'CHECKSCRIPT "keep;"\r\n') == []
    assert proto.data_to_send() == b'OK "The script is valid."\r\n'
    two = b'fileinto "a";\r\nfrob;\r\n'
    assert feed(proto, b"CHECKSCRIPT {%d+}\r\n%s\r\n" % (len(two), two)) == []
    answer = proto.data_to_send()  # every error, one per line: a literal
    assert answer.startswith(b"NO {")
    assert b'line 1, column 1: the command "fileinto"' in answer
    assert b'\r\nline 2, column 1: unknown command "frob"\r\n' in answer


def test_a_literal_larger_than_a_script_may_be_is_skipped_and_refused() -> None:
    proto = logged_in(max_script=100)
    huge = b"#" * 9000
    events = feed(proto, b'PUTSCRIPT "big" {9000+}\r\n' + huge + b'\r\nNOOP "after"\r\n')
    assert events == []
    assert proto.data_to_send() == (
        b'NO (QUOTA/MAXSIZE) "The script is larger than a script may be."\r\nOK (TAG "after") "Done."\r\n'
    )
    assert proto.buffered_bytes == 0


def test_the_literals_of_a_refused_command_are_not_taken_for_commands() -> None:
    proto = logged_in()
    feed(proto, b"PUTSCRIPT \x01 {9+}\r\nLOGOUT\r\n\r\nNOOP\r\n")
    assert proto.data_to_send() == b'NO "Syntax error."\r\nOK "Done."\r\n'
    assert not proto.closed


def test_script_commands_and_their_answers() -> None:
    proto = logged_in()
    events = feed(
        proto,
        b'LISTSCRIPTS\r\nGETSCRIPT "main"\r\nSETACTIVE ""\r\nRENAMESCRIPT "a" "b"\r\nDELETESCRIPT "b"\r\n'
        b'HAVESPACE "x" 100\r\nHAVESPACE "x" 1000000\r\nNOOP "t"\r\n',
    )
    assert [(e.command, e.names) for e in events if isinstance(e, p.ScriptRequest)] == [
        ("LISTSCRIPTS", ()),
        ("GETSCRIPT", ("main",)),
        ("SETACTIVE", ("",)),
        ("RENAMESCRIPT", ("a", "b")),
        ("DELETESCRIPT", ("b",)),
        ("HAVESPACE", ("x",)),
    ]
    assert proto.data_to_send().decode() == (
        '"main" ACTIVE\r\n"odd \\"name\\""\r\nOK "Listscripts completed."\r\n'
        '{7}\r\nkeep;\r\n\r\nOK "Getscript completed."\r\n'
        'OK "Done."\r\nOK "Done."\r\nOK "Done."\r\nOK "Done."\r\n'
        'NO (QUOTA/MAXSIZE) "The script is larger than a script may be."\r\n'
        'OK (TAG "t") "Done."\r\n'
    )


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        (b"FROB\r\n", b'NO "Unknown command."'),
        (b'GETSCRIPT "a\x7fb"\r\n', b'NO "A script name cannot hold control characters."'),
        (b'GETSCRIPT ""\r\n', b'NO "A script name cannot be empty."'),
        (b"GETSCRIPT main\r\n", b'NO "A string (quoted or literal) is needed here."'),
        (b'GETSCRIPT "open\r\n', b'NO "Unterminated quoted string."'),
        (b'AUTHENTICATE "PLAIN"\r\n', b'NO "Already authenticated."'),
        (b"LISTSCRIPTS extra\r\n", b'NO "LISTSCRIPTS takes no arguments."'),
        (b'HAVESPACE "x" "y"\r\n', b'NO "Syntax: HAVESPACE name size"'),
    ],
)
def test_bad_commands_get_a_clear_no(command: bytes, answer: bytes) -> None:
    proto = logged_in()
    assert feed(proto, command) == []
    assert proto.data_to_send() == answer + b"\r\n"


def test_unauthenticate_and_logout() -> None:
    proto = logged_in()
    assert feed(proto, b"UNAUTHENTICATE\r\nLISTSCRIPTS\r\nLOGOUT\r\nNOOP\r\n") == [
        p.Unauthenticated(),
        p.Logout(),
    ]
    assert proto.data_to_send() == (
        b'OK "Unauthenticate completed."\r\nNO "Authenticate first."\r\nOK "Logout completed."\r\n'
    )
    assert proto.closed


SCRIPT = b'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "A"; }\r\n'
SESSION = b'PUTSCRIPT "main" {%d+}\r\n%s\r\nLISTSCRIPTS\r\nNOOP "tag"\r\nGETSCRIPT "main"\r\nLOGOUT\r\n' % (
    len(SCRIPT),
    SCRIPT,
)


@given(st.lists(st.integers(min_value=1, max_value=len(SESSION)), max_size=12))
def test_events_and_answers_do_not_depend_on_how_the_input_is_split(cuts: list[int]) -> None:
    whole = logged_in()
    expected_events = feed(whole, SESSION)
    expected = whole.data_to_send()
    split = logged_in()
    events: list[p.Event] = []
    at = 0
    for cut in [*sorted(set(cuts)), len(SESSION)]:
        events += feed(split, SESSION[at:cut])
        at = max(at, cut)
    assert events == expected_events
    assert split.data_to_send() == expected


@settings(max_examples=300)
@given(st.binary(max_size=300), st.booleans())
def test_any_input_gets_answers_and_never_an_exception(data: bytes, authenticated: bool) -> None:
    proto = logged_in() if authenticated else core(tls=True)
    proto.data_to_send()
    feed(proto, data)
    feed(proto, b"")
    assert proto.closed
