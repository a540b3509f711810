"""IMAP greeting, CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE (PLAIN, LOGIN, SASL-IR), LOGOUT, ID, NAMESPACE,
ENABLE and the state rules, against the in-process server on real sockets (tests/imap/conftest.py)."""

from __future__ import annotations

import base64
import imaplib
import socket
import ssl

import pytest

from tests.imap.conftest import DEMO, PASSWORD, TIMEOUT, ImapServer, Raw


def test_greeting_has_capabilities_and_logindisabled_before_tls(imap_server: ImapServer) -> None:
    raw = Raw(imap_server, tls=False)
    assert raw.greeting.startswith("* OK [CAPABILITY IMAP4rev1 ")
    assert raw.greeting.endswith("Postoffice ready")
    caps = raw.greeting.split("[CAPABILITY ")[1].split("]")[0].split()
    assert "STARTTLS" in caps and "LOGINDISABLED" in caps
    assert not any(c.startswith("AUTH=") for c in caps)
    assert "IMAP4rev2" in caps  # for clients that ENABLE it (tests/imap/test_imap_rev2.py)
    reply = raw.command("a1", f'LOGIN "{DEMO}" "{PASSWORD}"')
    assert reply[-1].startswith("a1 NO [PRIVACYREQUIRED]")
    reply = raw.command(
        "a2", "AUTHENTICATE PLAIN " + base64.b64encode(f"\0{DEMO}\0{PASSWORD}".encode()).decode()
    )
    assert reply[-1].startswith("a2 NO [PRIVACYREQUIRED]")
    raw.close()


def test_starttls_then_login_with_imaplib(imap_server: ImapServer) -> None:
    client = imaplib.IMAP4("127.0.0.1", imap_server.ports["imap"], timeout=TIMEOUT)
    client.starttls(ssl_context=imap_server.client_context())
    caps = client.capability()[1][0].decode().split()
    assert "AUTH=PLAIN" in caps and "STARTTLS" not in caps and "LOGINDISABLED" not in caps
    typ, data = client.login(DEMO, PASSWORD)
    assert typ == "OK" and b"CAPABILITY" in data[0]
    assert client.logout()[0] == "BYE"


def test_starttls_discards_pipelined_plaintext(imap_server: ImapServer) -> None:
    sock = socket.create_connection(("127.0.0.1", imap_server.ports["imap"]), timeout=TIMEOUT)
    sock.recv(4096)
    sock.sendall(b"s1 STARTTLS\r\ns2 LOGIN injected command\r\n")
    data = b""
    while b"s1 OK" not in data:
        data += sock.recv(4096)
    assert b"s2" not in data
    tls = imap_server.client_context().wrap_socket(sock, server_hostname="127.0.0.1")
    tls.sendall(b"s3 NOOP\r\n")
    reply = b""
    while b"s3 " not in reply:
        reply += tls.recv(4096)
    assert reply.startswith(b"s3 OK"), reply  # nothing of s2 was executed or answered
    tls.close()


def test_authenticate_plain_with_initial_response(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
    token = base64.b64encode(f"\0{DEMO}\0{PASSWORD}".encode()).decode()
    reply = raw.command("a1", f"AUTHENTICATE PLAIN {token}")
    assert reply[-1].startswith("a1 OK [CAPABILITY IMAP4rev1")
    assert raw.command("a2", "SELECT INBOX")[-1].startswith("a2 OK")


def test_authenticate_plain_with_continuation_and_login_mechanism(imap_server: ImapServer) -> None:
    client = imap_server.imaps(user=None)
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0{DEMO}\0{PASSWORD}".encode())
    assert typ == "OK"
    client.logout()
    raw = Raw(imap_server)
    raw.send(b"a1 AUTHENTICATE LOGIN\r\n")
    assert raw.line().startswith("+ ")
    raw.send(base64.b64encode(DEMO.encode()) + b"\r\n")
    assert raw.line().startswith("+ ")
    raw.send(base64.b64encode(PASSWORD.encode()) + b"\r\n")
    assert raw.until_tagged("a1")[-1].startswith("a1 OK")


def test_authenticate_cancel_and_bad_base64(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
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


def test_wrong_password_is_refused(imap_server: ImapServer) -> None:
    client = imap_server.imaps(user=None)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(DEMO, "wrong password")
    client.login(DEMO, PASSWORD)  # the session goes on
    client.logout()


def test_commands_in_the_wrong_state_are_bad(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
    assert raw.command("a1", "SELECT INBOX")[-1].startswith("a1 BAD")
    assert raw.command("a2", "FETCH 1 FLAGS")[-1].startswith("a2 BAD")
    raw.login()
    assert raw.command("a3", f'LOGIN "{DEMO}" "{PASSWORD}"')[-1].startswith("a3 BAD")
    assert raw.command("a4", "EXPUNGE")[-1].startswith("a4 BAD")
    assert raw.command("a5", "STARTTLS")[-1].startswith("a5 BAD")


def test_parse_errors_are_bad_and_the_session_continues(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
    assert raw.command("a1", "FROBNICATE")[-1].startswith("a1 BAD")
    raw.send(b"\x01\x02garbage\r\n")
    assert raw.line().startswith("* BAD")
    assert raw.command("a2", "LOGIN onlyone")[-1].startswith("a2 BAD")
    assert raw.command("a3", "NOOP")[-1] == "a3 OK NOOP completed"


def test_id_namespace_enable_logout(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
    reply = raw.command("a1", 'ID ("name" "test")')
    assert reply[0] == '* ID ("name" "Postoffice")' and reply[-1].startswith("a1 OK")
    raw.login()
    assert raw.command("a2", "NAMESPACE")[0] == '* NAMESPACE (("" "/")) NIL NIL'
    reply = raw.command("a3", "ENABLE UTF8=ACCEPT IMAP4rev2 CONDSTORE")
    assert reply[0] == "* ENABLED UTF8=ACCEPT IMAP4rev2"  # CONDSTORE is not advertised
    reply = raw.command("a4", "LOGOUT")
    assert reply[0].startswith("* BYE") and reply[-1].startswith("a4 OK")
    with pytest.raises((ConnectionError, OSError, ssl.SSLError)):
        raw.line()


def test_enable_imap4rev2_when_advertised(rev2_server: ImapServer) -> None:
    raw = Raw(rev2_server)
    assert "IMAP4rev2" in raw.greeting
    raw.login()
    assert raw.command("a1", "ENABLE IMAP4rev2")[0] == "* ENABLED IMAP4rev2"
