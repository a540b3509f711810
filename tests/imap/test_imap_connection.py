"""What only a real connection shows, on the in-process server (tests/imap/conftest.py `imap_server`):
STARTTLS and the capabilities before it, literals the server refuses before the client sends them, a large
response written while it is rendered, and a connection closed after the core says BYE. Everything else about
the protocol is tested through the core without sockets (tests/imap/transcript.py); IDLE woken by another
connection is in test_imap_idle.py."""

from __future__ import annotations

import base64
import imaplib
import socket

import pytest

from tests.imap.conftest import DEMO, PASSWORD, TIMEOUT, ImapServer, Raw, message

# -- STARTTLS and the capabilities before TLS (RFC 9051 6.2.1, CVE-2011-0411) --------------------------------


def test_greeting_has_capabilities_and_logindisabled_before_tls(imap_server: ImapServer) -> None:
    raw = Raw(imap_server, tls=False)
    assert raw.greeting.startswith("* OK [CAPABILITY IMAP4rev1 ")
    assert raw.greeting.endswith("Postoffice ready")
    caps = raw.greeting.split("[CAPABILITY ")[1].split("]")[0].split()
    assert "STARTTLS" in caps
    assert "LOGINDISABLED" in caps
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
    assert "AUTH=PLAIN" in caps
    assert "STARTTLS" not in caps
    assert "LOGINDISABLED" not in caps
    typ, data = client.login(DEMO, PASSWORD)
    assert typ == "OK"
    assert b"CAPABILITY" in data[0]
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


# -- literals refused before the client sends them, or skipped when it did -----------------------------------


def test_append_to_missing_mailbox_is_trycreate_without_reading_the_literal(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
    raw.login()
    raw.send(b"a1 APPEND Nope {10}\r\n")
    assert raw.line().startswith("a1 NO [TRYCREATE]")
    assert raw.command("a2", "NOOP")[-1].startswith("a2 OK")
    # A non-synchronizing literal is skipped, and its octets are never read as commands.
    raw.send(b"a3 APPEND Nope {12+}\r\nx4 LOGOUT\r\n\r\n")
    assert raw.until_tagged("a3")[-1].startswith("a3 NO [TRYCREATE]")
    assert raw.command("a4", "NOOP")[-1].startswith("a4 OK")


def test_literal_over_the_limit_is_refused_before_it_is_read(small_limit_server: ImapServer) -> None:
    raw = Raw(small_limit_server)
    assert "APPENDLIMIT=2000" in raw.greeting
    raw.login()
    raw.send(b"a1 APPEND INBOX {5000}\r\n")
    assert raw.line().startswith("a1 NO [TOOBIG]")
    assert raw.command("a2", "NOOP")[-1].startswith("a2 OK")


# -- a large response is written while it is rendered --------------------------------------------------------


def test_a_fetch_repeating_a_section_is_written_as_it_is_rendered(imap_server: ImapServer) -> None:
    """A command line of 64 KiB can name the body of a message thousands of times; the response (here 200
    copies of a 500 KB message, 100 MB) must be written item by item, not built whole in memory first."""
    import tracemalloc

    body = b"".join(b"line %06d of a long message body\r\n" % n for n in range(15_000))
    raw_message = b"From: a@remote.test\r\nSubject: big\r\n\r\n" + body
    assert 400_000 < len(raw_message) < 1024 * 1024  # below the streamed path: the batch renderer is tested
    imap_server.deliver(DEMO, raw_message)
    raw = Raw(imap_server)
    try:
        raw.login()
        raw.command("S", "SELECT INBOX")
        copies = 200
        tracemalloc.start()
        try:
            raw.send(b"F FETCH 1 (" + b" ".join([b"BODY.PEEK[TEXT]"] * copies) + b")\r\n")
            received = 0
            tail = b""
            while not tail.endswith(b"\r\nF OK FETCH completed\r\n"):
                chunk = raw.sock.recv(1 << 20)
                assert chunk
                received += len(chunk)
                tail = (tail + chunk)[-64:]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert received > copies * len(body)
        # the old renderer held every copy (and their join) at once: more than 200 MB
        assert peak < 40 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB while writing the response"
    finally:
        raw.close()


# -- a session the core ends: BYE, then the connection closes ------------------------------------------------


def test_a_session_whose_selected_mailbox_is_deleted_gets_bye(imap_server: ImapServer) -> None:
    """RFC 2180 3.3: DELETE by another session is allowed; the session that has the mailbox selected is told
    with an untagged BYE and disconnected (on its next command, or at once while it IDLEs)."""
    raw = Raw(imap_server)
    raw.login()
    raw.command("c", "CREATE Work")
    imap_server.deliver(DEMO, message("w"), mailbox="Work")
    watcher, idler = Raw(imap_server), Raw(imap_server)
    for session in (watcher, idler):
        session.login()
        assert "* 1 EXISTS" in session.command("s", "SELECT Work")
    idler.send(b"i IDLE\r\n")
    assert idler.line() == "+ idling"
    assert raw.command("d", "DELETE Work")[-1] == "d OK DELETE completed"
    assert idler.line().startswith("* BYE ")
    with pytest.raises(ConnectionError):
        idler.line()
    reply = watcher.command("n", "NOOP")
    assert reply[0].startswith("* BYE ")
    assert reply[-1] == "n OK NOOP completed"
    with pytest.raises(ConnectionError):
        watcher.line()
