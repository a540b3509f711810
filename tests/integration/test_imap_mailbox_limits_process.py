"""A real `postoffice run` process: the [imap] mailbox limits reach the IMAP sessions (docs/decisions/0021),
and a LIST pattern that used to freeze the whole server (50 "*": 32 s of blocked event loop) is answered at
once while another connection is served (docs/decisions/0020).

No sleeps: every step waits for the server's answer, bounded by a socket timeout."""

from __future__ import annotations

import imaplib
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import DataDir, ServerProcess, make_data_dir, serving
from tests.integration.test_imap_idle_connections import set_option

pytestmark = pytest.mark.integration

USER = "demo@example.test"
PASSWORD = "demo-secret-pw"  # make_data_dir's password for "demo"


@pytest.fixture
def limited_server(tmp_path: Path) -> Iterator[ServerProcess]:
    data: DataDir = make_data_dir(tmp_path / "data", users=("demo",))
    text = data.config.read_text()
    text = set_option(text, "imap", "max_mailboxes", "8")  # a new account has 6
    text = set_option(text, "imap", "max_mailbox_name_length", "100")
    text = set_option(text, "imap", "max_mailbox_depth", "3")
    data.config.write_text(text)
    with serving(data) as proc:
        yield proc


def _client(server: ServerProcess) -> imaplib.IMAP4_SSL:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the data directory's self-signed certificate
    client = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=context, timeout=30)
    client.login(USER, PASSWORD)
    return client


def test_imap_limits_from_the_config_apply(limited_server: ServerProcess) -> None:
    client = _client(limited_server)
    assert client.create("a/b")[0] == "OK"  # a and a/b: 8 mailboxes
    status, data = client.create("c")
    assert status == "NO"
    assert data[0].startswith(b"[LIMIT]")
    assert client.delete("a/b")[0] == "OK"
    status, data = client.create("a/b/c/d")
    assert status == "NO"
    assert b"3 levels" in data[0]
    status, data = client.create("x" * 101)
    assert status == "NO"
    assert b"100 octets" in data[0]
    assert client.create("a/" + "y" * 98)[0] == "OK"
    client.logout()


def test_a_pathological_list_pattern_does_not_stop_the_server(limited_server: ServerProcess) -> None:
    client, other = _client(limited_server), _client(limited_server)
    started = time.monotonic()
    status, data = client.list('""', '"' + "*" * 50 + 'X"')
    assert status == "OK"
    assert data == [b'(\\HasNoChildren) "/" "INBOX"']
    status, data = client.list('""', '"*a*a*a*a*a*ab"')
    assert status == "OK"
    assert data == [None]
    assert other.noop()[0] == "OK"
    assert time.monotonic() - started < 5  # each used to take from 32 s to minutes
    client.logout()
    other.logout()
