"""Bugs a review found in the ManageSieve core (src/postoffice/managesieve/protocol.py): numbers beyond 32
bits, literals announced at the end of a line too long to read, too-long lines inside AUTHENTICATE and inside
a refused command; with the harness of tests/managesieve/test_managesieve_protocol.py."""

from __future__ import annotations

from tests.managesieve.test_managesieve_protocol import core, feed, logged_in, plain


def test_havespace_with_a_long_number_is_answered_not_raised() -> None:
    # RFC 5804 section 4: number is a 32-bit unsigned number. "Nothing the peer sends raises" (module
    # docstring), but int() of more than 4300 digits raises ValueError out of next_event().
    proto = logged_in()
    proto.data_to_send()
    feed(proto, b'HAVESPACE "x" ' + b"9" * 5000 + b"\r\nNOOP\r\n")
    out = proto.data_to_send()
    assert out.startswith(b"NO")
    assert out.endswith(b'OK "Done."\r\n')


def test_a_too_long_line_that_announces_a_literal_does_not_run_the_literal_as_commands() -> None:
    # Decision 0083: a refused command's literals are skipped "so its octets are never taken for commands".
    # A fragment over MAX_LINE is discarded up to its LF without looking at its "{n+}", so the literal that
    # follows (here a script body holding "DELETESCRIPT ...") is parsed as commands.
    proto = logged_in()
    proto.data_to_send()
    body = b'DELETESCRIPT "main"\r\n'
    events = feed(proto, b'PUTSCRIPT "x" "' + b"a" * 9000 + b'" {%d+}\r\n' % len(body) + body + b"\r\n")
    assert [e for e in events if getattr(e, "command", None) == "DELETESCRIPT"] == []


def test_a_too_long_line_during_authenticate_ends_the_exchange() -> None:
    # The NO for the too-long SASL response ends the AUTHENTICATE command for the client (RFC 5804 section
    # 2.1), but the core still waits for a SASL response: the next command is taken as one and refused.
    proto = core(tls=True)
    proto.data_to_send()
    feed(proto, b'AUTHENTICATE "PLAIN"\r\n')
    assert proto.data_to_send() == b'""\r\n'
    feed(proto, b'"' + b"A" * 9000 + b'"\r\n')
    assert proto.data_to_send().startswith(b"NO")
    feed(proto, b"NOOP\r\n")
    assert proto.data_to_send() == b'OK "Done."\r\n'
    feed(proto, f'AUTHENTICATE "PLAIN" "{plain()}"\r\n'.encode())
    assert proto.data_to_send() == b'OK "Logged in."\r\n'


def test_a_too_long_fragment_of_a_refused_command_does_not_swallow_the_next_command() -> None:
    # After the refused command's literal is skipped, its next fragment is too long: "Line too long" is
    # answered but `_failed` stays set, so the following NOOP is swallowed and answered with the old
    # "Syntax error" (two NOs for one command, none for NOOP: the client is out of step).
    proto = logged_in()
    proto.data_to_send()
    feed(proto, b"PUTSCRIPT \x01 {3+}\r\nabc" + b"x" * 9000 + b"\r\nNOOP\r\n")
    out = proto.data_to_send()
    assert out.count(b"NO ") == 1, out
    assert out.endswith(b'OK "Done."\r\n'), out
