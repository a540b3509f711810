"""More password verifications than `[auth] max_pending_verifications` allows: the login beyond the bound gets
each protocol's temporary failure over a real connection (IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP], SMTP
454 4.7.0, POP2 "-"), while the login already waiting succeeds (issue 9, item 6).

The real server glue (`postoffice.server.Server`) runs in-process on an event loop in a background thread,
so that argon2 can be held: `passwords.verify_password`, which the authenticator runs in its argon2 pool, is
replaced by a gate that signals when a verification has started and finishes it only when released
(threading events; nothing sleeps). Everything else is real: sockets on 127.0.0.1, the store, the
authenticator, the protocol sessions.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from postoffice.config import load_config
from postoffice.directory import passwords
from postoffice.server import Server
from tests.integration.harness import DataDir, make_data_dir

pytestmark = pytest.mark.integration

DEMO = "demo@example.test"
OTHER = "other@example.test"


class Gate:
    def __init__(self) -> None:
        self.real = passwords.verify_password
        self.entered = threading.Event()
        self.released = threading.Event()
        self.calls = 0

    def reset(self) -> None:
        self.entered.clear()
        self.released.clear()
        self.calls = 0

    def __call__(self, stored: str, password: str) -> bool:
        self.calls += 1
        self.entered.set()
        self.released.wait(60)
        return self.real(stored, password)


@dataclass
class InProcessServer:
    data: DataDir
    server: Server
    gate: Gate

    def port(self, name: str) -> int:
        assert self.server.listeners is not None
        return self.server.listeners.bound[name][1]


@pytest.fixture(scope="module")
def overloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    data = make_data_dir(tmp_path_factory.mktemp("overload") / "data", users=("demo", "other"))
    text = data.config.read_text()
    for key, value in (
        ("max_pending_verifications", "1"),
        ("verified_cache_ttl", "0"),  # every login verifies: each test holds a real verification
        ("failure_delay", "0"),
        ("allow_plaintext_auth", "true"),  # plaintext logins on loopback: no TLS in the way
    ):
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert count == 1, key
    text, count = re.subn(r"(\[listeners\.pop2\]\n(?:#.*\n)*)enabled = false", r"\1enabled = true", text)
    assert count == 1
    data.config.write_text(text)
    config = load_config(data.config)

    gate = Gate()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = Server(config)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(passwords, "verify_password", gate)
        try:
            asyncio.run_coroutine_threadsafe(server.start(), loop).result(60)
            assert server.listeners is not None
            assert "pop2" in server.listeners.bound
            yield InProcessServer(data, server, gate)
        finally:
            gate.released.set()
            asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(120)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            loop.close()


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")

    def line(self) -> str:
        data = self.file.readline()
        assert data, "connection closed"
        return data.decode().rstrip("\r\n")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def imap(port: int, user: str, password: str) -> tuple[Client, Callable[[], str]]:
    client = Client(port)
    assert client.line().startswith("* OK")
    client.send(f'a LOGIN "{user}" "{password}"')

    def reply() -> str:
        while not (line := client.line()).startswith("a "):
            pass
        return line

    return client, reply


def pop3(port: int, user: str, password: str) -> tuple[Client, Callable[[], str]]:
    client = Client(port)
    assert client.line().startswith("+OK")
    client.send(f"USER {user}")
    assert client.line().startswith("+OK")
    client.send(f"PASS {password}")
    return client, client.line


def submission(port: int, user: str, password: str) -> tuple[Client, Callable[[], str]]:
    client = Client(port)
    assert client.line().startswith("220")
    client.send("EHLO overload.test")
    while (line := client.line())[3] == "-":
        pass
    assert line.startswith("250")
    client.send("AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode())
    return client, client.line


def pop2(port: int, user: str, password: str) -> tuple[Client, Callable[[], str]]:
    client = Client(port)
    assert client.line().startswith("+")
    client.send(f"HELO {user} {password}")
    return client, client.line


PROTOCOLS = {
    # listener, client, the temporary failure, success
    "imap": ("imap", imap, "a NO [UNAVAILABLE] ", "a OK"),
    "pop3": ("pop3", pop3, "-ERR [SYS/TEMP] ", "+OK"),
    "submission": ("submission", submission, "454 4.7.0 ", "235 "),
    "pop2": ("pop2", pop2, "- authentication is temporarily unavailable", "#"),
}


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_a_login_beyond_the_verification_bound_gets_a_temporary_failure(
    overloaded: InProcessServer, protocol: str
) -> None:
    listener, login, temporary, success = PROTOCOLS[protocol]
    port = overloaded.port(listener)
    gate = overloaded.gate
    gate.reset()
    passwords_of = overloaded.data.passwords
    first, first_reply = login(port, DEMO, passwords_of[DEMO])
    try:
        assert gate.entered.wait(30)  # the first verification holds the one place
        second, second_reply = login(port, OTHER, passwords_of[OTHER])
        try:
            assert second_reply().startswith(temporary)
        finally:
            second.close()
        gate.released.set()
        assert first_reply().startswith(success)
        assert gate.calls == 1
    finally:
        first.close()


def test_the_log_names_the_full_queue(overloaded: InProcessServer, caplog: pytest.LogCaptureFixture) -> None:
    gate = overloaded.gate
    gate.reset()
    port = overloaded.port("imap")
    with caplog.at_level("INFO", logger="postoffice.auth"):
        first, first_reply = imap(port, DEMO, overloaded.data.passwords[DEMO])
        try:
            assert gate.entered.wait(30)
            second, second_reply = imap(port, OTHER, "whatever")
            try:
                assert second_reply().startswith("a NO [UNAVAILABLE]")
            finally:
                second.close()
            gate.released.set()
            assert first_reply().startswith("a OK")
        finally:
            first.close()
    assert f"account={OTHER} mechanism=LOGIN tls=no result=unavailable" in caplog.text
