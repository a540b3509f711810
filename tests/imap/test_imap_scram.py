"""AUTHENTICATE SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 7677, RFC 9266) on a real TLS connection to the
in-process server: scramp (an independent SCRAM client) logs in once the account has its secret; -PLUS binds
to the tls-exporter that both ends of the TLS 1.3 connection read; and a wrong password, a wrong binding, a
cancelled exchange and a connection without TLS are refused."""

from __future__ import annotations

import base64

from scramp import ScramClient

from postoffice.net.tls_exporter import tls_exporter
from tests.imap.conftest import DEMO, PASSWORD, ImapServer, Raw
from tests.support.scram import PLUS_HEADER, b64, plus_client_final


def continuation(raw: Raw) -> bytes:
    line = raw.line()
    assert line.startswith("+ "), line
    return base64.b64decode(line[2:])


def scram(raw: Raw, tag: str, password: str, user: str = DEMO) -> list[str]:
    client = ScramClient(["SCRAM-SHA-256"], user, password)
    raw.send(f"{tag} AUTHENTICATE SCRAM-SHA-256 {b64(client.get_client_first().encode())}\r\n".encode())
    client.set_server_first(continuation(raw).decode())
    raw.send(f"{b64(client.get_client_final().encode())}\r\n".encode())
    line = raw.line()
    if not line.startswith("+ "):
        return [line]
    client.set_server_final(base64.b64decode(line[2:]).decode())  # raises if the server's proof is wrong
    raw.send(b"\r\n")
    return raw.until_tagged(tag)


def scram_plus(raw: Raw, tag: str, password: str, binding: bytes) -> list[str]:
    """-PLUS from RFC 5802's formulas (tests/support/scram.py: scramp refuses tls-exporter)."""
    bare = f"n={DEMO},r=plusclientnonce"
    raw.send(f"{tag} AUTHENTICATE SCRAM-SHA-256-PLUS {b64(PLUS_HEADER + bare.encode())}\r\n".encode())
    final, expected = plus_client_final(password, binding, bare, continuation(raw).decode())
    raw.send(f"{b64(final.encode())}\r\n".encode())
    line = raw.line()
    if not line.startswith("+ "):
        return [line]
    assert base64.b64decode(line[2:]).decode() == expected
    raw.send(b"\r\n")
    return raw.until_tagged(tag)


def test_scram_logs_in_once_the_account_has_its_secret(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
    caps = raw.command("c", "CAPABILITY")[0].split()
    assert "AUTH=SCRAM-SHA-256" in caps
    assert "AUTH=SCRAM-SHA-256-PLUS" in caps  # the test server speaks TLS 1.3
    raw.login()  # a password login makes the secret (an account from before SCRAM has none)
    raw.close()
    raw = Raw(imap_server)
    reply = scram(raw, "a", PASSWORD)
    assert reply[-1].startswith("a OK [CAPABILITY "), reply
    assert raw.command("s", "SELECT INBOX")[-1].startswith("s OK")
    raw.close()


def test_scram_plus_binds_to_this_connection(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
    raw.login()
    raw.close()
    raw = Raw(imap_server)
    binding = tls_exporter(raw.sock)  # type: ignore[arg-type]
    assert binding is not None
    assert len(binding) == 32
    assert scram_plus(raw, "p", PASSWORD, binding)[-1].startswith("p OK [CAPABILITY ")
    raw.close()
    raw = Raw(imap_server)  # another connection's exporter: refused
    assert scram_plus(raw, "q", PASSWORD, binding)[-1].startswith("q NO [AUTHENTICATIONFAILED]")
    raw.close()


def test_scram_refusals(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
    raw.login()
    raw.close()
    raw = Raw(imap_server)
    assert scram(raw, "w", "not the password")[-1].startswith("w NO [AUTHENTICATIONFAILED]")
    raw.send(b"x AUTHENTICATE SCRAM-SHA-256\r\n")
    assert continuation(raw) == b""  # no initial response: an empty challenge first
    raw.send(b"*\r\n")
    assert raw.until_tagged("x")[-1].startswith("x BAD")  # cancelled
    raw.close()
    plain = Raw(imap_server, tls=False)  # no TLS, no authentication of any kind
    caps = plain.command("c", "CAPABILITY")[0].split()
    assert not [c for c in caps if c.startswith("AUTH=")]
    client = ScramClient(["SCRAM-SHA-256"], DEMO, PASSWORD)
    reply = plain.command("y", f"AUTHENTICATE SCRAM-SHA-256 {b64(client.get_client_first().encode())}")
    assert reply[-1].startswith("y NO [PRIVACYREQUIRED]")
    plain.close()
