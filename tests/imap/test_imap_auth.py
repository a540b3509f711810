"""IMAP greeting, CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE (PLAIN, LOGIN, SASL-IR), LOGOUT, ID, NAMESPACE,
ENABLE and the state rules, through the core (tests/imap/transcript.py; STARTTLS: test_imap_connection.py)."""

from __future__ import annotations

import base64
import imaplib
import ssl

import pytest

from tests.imap.conftest import DEMO, PASSWORD
from tests.imap.transcript import ImapHarness


def test_authenticate_plain_with_initial_response(imap: ImapHarness) -> None:
    raw = imap.connect()
    token = base64.b64encode(f"\0{DEMO}\0{PASSWORD}".encode()).decode()
    reply = raw.command("a1", f"AUTHENTICATE PLAIN {token}")
    assert reply[-1].startswith("a1 OK [CAPABILITY IMAP4rev1")
    assert raw.command("a2", "SELECT INBOX")[-1].startswith("a2 OK")


def test_authenticate_plain_with_continuation_and_login_mechanism(imap: ImapHarness) -> None:
    client = imap.imaps(user=None)
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0{DEMO}\0{PASSWORD}".encode())
    assert typ == "OK"
    client.logout()
    raw = imap.connect()
    raw.send(b"a1 AUTHENTICATE LOGIN\r\n")
    assert raw.line().startswith("+ ")
    raw.send(base64.b64encode(DEMO.encode()) + b"\r\n")
    assert raw.line().startswith("+ ")
    raw.send(base64.b64encode(PASSWORD.encode()) + b"\r\n")
    assert raw.until_tagged("a1")[-1].startswith("a1 OK")


def test_authenticate_cancel_and_bad_base64(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.send(b"a1 AUTHENTICATE PLAIN\r\n")
    assert raw.line() == "+ "
    raw.send(b"*\r\n")
    assert raw.until_tagged("a1")[-1].startswith("a1 BAD")
    raw.send(b"a2 AUTHENTICATE PLAIN\r\n")
    raw.line()
    raw.send(b"!!!\r\n")
    assert raw.until_tagged("a2")[-1].startswith("a2 BAD")
    assert raw.command("a3", "AUTHENTICATE SCRAM-SHA-1")[-1].startswith("a3 NO")
    assert raw.command("a4", "NOOP")[-1].startswith("a4 OK")


def test_wrong_password_is_refused(imap: ImapHarness) -> None:
    client = imap.imaps(user=None)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(DEMO, "wrong password")
    client.login(DEMO, PASSWORD)  # the session goes on
    client.logout()


def test_commands_in_the_wrong_state_are_bad(imap: ImapHarness) -> None:
    raw = imap.connect()
    assert raw.command("a1", "SELECT INBOX")[-1].startswith("a1 BAD")
    assert raw.command("a2", "FETCH 1 FLAGS")[-1].startswith("a2 BAD")
    raw.login()
    assert raw.command("a3", f'LOGIN "{DEMO}" "{PASSWORD}"')[-1].startswith("a3 BAD")
    assert raw.command("a4", "EXPUNGE")[-1].startswith("a4 BAD")
    assert raw.command("a5", "STARTTLS")[-1].startswith("a5 BAD")


def test_parse_errors_are_bad_and_the_session_continues(imap: ImapHarness) -> None:
    raw = imap.connect()
    assert raw.command("a1", "FROBNICATE")[-1].startswith("a1 BAD")
    raw.send(b"\x01\x02garbage\r\n")
    assert raw.line().startswith("* BAD")
    assert raw.command("a2", "LOGIN onlyone")[-1].startswith("a2 BAD")
    assert raw.command("a3", "NOOP")[-1] == "a3 OK NOOP completed"


def test_id_namespace_enable_logout(imap: ImapHarness) -> None:
    raw = imap.connect()
    reply = raw.command("a1", 'ID ("name" "test")')
    assert reply[0] == '* ID ("name" "Postoffice")'
    assert reply[-1].startswith("a1 OK")
    raw.login()
    # the other users' namespace is the shared mailboxes of ACL (decision 0073)
    assert raw.command("a2", "NAMESPACE")[0] == '* NAMESPACE (("" "/")) (("Shared/" "/")) NIL'
    reply = raw.command("a3", "ENABLE UTF8=ACCEPT IMAP4rev2 CONDSTORE")
    assert reply[0] == "* ENABLED UTF8=ACCEPT IMAP4rev2 CONDSTORE"
    reply = raw.command("a4", "LOGOUT")
    assert reply[0].startswith("* BYE")
    assert reply[-1].startswith("a4 OK")
    with pytest.raises((ConnectionError, OSError, ssl.SSLError)):
        raw.line()


def test_enable_imap4rev2_when_advertised(imap: ImapHarness) -> None:
    raw = imap.connect()
    assert "IMAP4rev2" in raw.greeting
    raw.login()
    assert raw.command("a1", "ENABLE IMAP4rev2")[0] == "* ENABLED IMAP4rev2"
