"""A real `postoffice run` process, a real TLS connection, Python's imaplib: one account authorizes a URL to a
part of its message (GENURLAUTH, RFC 4467), another account fetches it (URLFETCH, also with RFC 5524's BINARY)
and uses it in an APPEND with CATENATE (RFC 4469), next to a TEXT literal.

No sleeps: every step waits for the server's answer, bounded by a socket timeout."""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import DataDir, ServerProcess, make_data_dir, serving

pytestmark = pytest.mark.integration

MESSAGE = (
    b"From: Demo <demo@example.test>\r\nTo: other@example.test\r\nSubject: the original\r\n"
    b"Message-ID: <original@example.test>\r\n\r\nThe text that is shared.\r\n"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    data: DataDir = make_data_dir(tmp_path / "data", users=("demo", "other"))
    with serving(data) as proc:
        yield proc


def _client(server: ServerProcess, user: str) -> imaplib.IMAP4_SSL:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the data directory's self-signed certificate
    client = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=context, timeout=30)
    client.login(f"{user}@example.test", f"{user}-secret-pw")
    return client


def test_genurlauth_urlfetch_and_catenate_over_a_real_connection(server: ServerProcess) -> None:
    demo, other = _client(server, "demo"), _client(server, "other")
    capabilities = demo.capability()[1][0].split()
    assert {b"URLAUTH", b"URLAUTH=BINARY", b"CATENATE"} <= set(capabilities)

    status, data = demo.append("INBOX", None, None, MESSAGE)
    assert status == "OK"
    match = re.match(rb"\[APPENDUID (\d+) 1\]", data[0])
    assert match is not None
    uidvalidity = int(match.group(1))

    rump = (
        f"imap://demo%40example.test@localhost/INBOX;UIDVALIDITY={uidvalidity}/;UID=1/;SECTION=TEXT"
        ";URLAUTH=user+other%40example.test"
    )
    status, _ = demo.xatom("GENURLAUTH", f'"{rump}"', "INTERNAL")
    assert status == "OK"
    _, generated = demo.response("GENURLAUTH")
    url = generated[0].strip(b'"').decode()
    assert url.startswith(rump + ":INTERNAL:")

    # the other account reads the part; the URL is its own (user+other): the demo account may not
    status, _ = other.xatom("URLFETCH", f'"{url}"', f'("{url}" BINARY)')
    assert status == "OK"
    _, fetched = other.response("URLFETCH")
    literals = [item[1] for item in fetched if isinstance(item, tuple)]
    assert literals == [b"The text that is shared.\r\n"] * 2
    status, _ = demo.xatom("URLFETCH", f'"{url}"')
    assert status == "OK"
    assert demo.response("URLFETCH")[1] == [f'"{url}" NIL'.encode()]

    # CATENATE: a header of its own (a TEXT literal) and the authorized part
    header = b"From: Other <other@example.test>\r\nSubject: quoting demo\r\n\r\n"
    catenate = f'INBOX CATENATE (TEXT {{{len(header)}+}}\r\n{header.decode()} URL "{url}")'
    status, data = other.xatom("APPEND", catenate)
    assert status == "OK", data
    assert data[0].startswith(b"[APPENDUID ")
    other.select("INBOX")
    status, data = other.uid("FETCH", "1", "(BODY.PEEK[])")
    assert status == "OK"
    message: object = data[0]
    assert isinstance(message, tuple)
    assert message[1] == header + b"The text that is shared.\r\n"
    other.close()  # (imaplib allows an extension command only in the state it first saw it in)

    # RESETKEY: the URL stops working
    assert demo.xatom("RESETKEY")[0] == "OK"
    other.xatom("URLFETCH", f'"{url}"')
    assert other.response("URLFETCH")[1] == [f'"{url}" NIL'.encode()]
    demo.logout()
    other.logout()
