"""Many IMAP clients in IDLE on one real `postoffice run` process: what an idle connection costs in server
memory, and that a new message reaches every one of them (the issue's goal: at most 64 KiB per idle
connection; bench/imap_idle_load.py measures 2,000 of them, plaintext and TLS).

No sleeps as synchronisation: every step waits for the server's response, bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import DataDir, ServerProcess, make_data_dir, serving
from tests.support.mail import send_smtp

pytestmark = pytest.mark.integration

USER = "demo@example.test"
PASSWORD = "demo-secret-pw"  # make_data_dir's password for "demo"
CONNECTIONS = 300
MESSAGES = 5
MAX_KIB_PER_CONNECTION = 64
#: Connections being opened at a time. Each TLS handshake in flight holds a 256 KiB buffer inside asyncio
#: until the listener swaps it for the shared one, and the allocator may keep that peak (net/listener.py): a
#: burst of handshakes costs memory once, which is not what an idle connection costs.
PARALLEL = 10
STEP_TIMEOUT = 20.0
PHASE_TIMEOUT = 40.0


def set_option(text: str, section: str, key: str, value: str) -> str:
    """`key = value` in `[section]` of the config `postoffice init` wrote (it names every key)."""
    pattern = re.compile(rf"(?ms)^(\[{re.escape(section)}\]\n.*?^){re.escape(key)} = [^\n]*$")
    text, count = pattern.subn(rf"\g<1>{key} = {value}", text, count=1)
    assert count == 1, f"no {key} in [{section}]"
    return text


@pytest.fixture
def idle_server(tmp_path: Path) -> Iterator[ServerProcess]:
    data: DataDir = make_data_dir(tmp_path / "data", users=("demo",))
    text = data.config.read_text()
    for key in ("max_connections", "max_connections_per_ip"):
        text = set_option(text, "imap", key, str(CONNECTIONS + 50))
    text = set_option(text, "auth", "allow_plaintext_auth", "true")  # LOGIN on the plaintext port
    data.config.write_text(text)
    with serving(data) as proc:
        yield proc


def server_rss_kib(server: ServerProcess) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1))


def deliver(port: int, count: int, first: int = 0) -> None:
    messages = [
        f"From: sender@remote.test\r\nTo: {USER}\r\nSubject: idle {n}\r\n\r\nMessage {n}.\r\n"
        for n in range(first, first + count)
    ]
    send_smtp(port, *messages, to=USER, timeout=STEP_TIMEOUT)


class IdleClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def idle(cls, port: int, tls: ssl.SSLContext | None) -> IdleClient:
        """Connect, LOGIN, SELECT INBOX, IDLE; returns once the server said "+ idling"."""
        async with asyncio.timeout(STEP_TIMEOUT):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None
            )
            client = cls(reader, writer)
            assert (await client.line()).startswith(b"* OK")
            await client.until(b"a OK", f'a LOGIN "{USER}" "{PASSWORD}"\r\n'.encode())
            await client.until(b"b OK", b"b SELECT INBOX\r\n")
            await client.until(b"+ ", b"c IDLE\r\n")
            return client

    async def line(self) -> bytes:
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("the server closed the connection")
        return line

    async def until(self, prefix: bytes, send: bytes | None = None) -> list[bytes]:
        """Send, then read lines up to the one starting with `prefix`; the lines before it."""
        if send is not None:
            self.writer.write(send)
        lines: list[bytes] = []
        while not (line := await self.line()).startswith(prefix):
            assert not re.match(rb"[abcd] (NO|BAD)", line), line
            lines.append(line)
        return lines

    async def exists(self) -> int:
        """The next "* n EXISTS" the server sends during IDLE."""
        while True:
            match = re.match(rb"\* (\d+) EXISTS\r\n", await self.line())
            if match:
                return int(match.group(1))

    async def logout(self) -> None:
        async with asyncio.timeout(STEP_TIMEOUT):
            await self.until(b"c OK", b"DONE\r\n")
            await self.until(b"d OK", b"d LOGOUT\r\n")
        self.writer.close()


async def open_idle(port: int, tls: ssl.SSLContext | None, count: int) -> list[IdleClient]:
    """`count` clients in IDLE, connecting `PARALLEL` at a time."""
    semaphore = asyncio.Semaphore(PARALLEL)

    async def one() -> IdleClient:
        async with semaphore:
            return await IdleClient.idle(port, tls)

    return list(await asyncio.gather(*(one() for _ in range(count))))


@pytest.mark.parametrize("listener", ["imap", "imaps"])
def test_idle_connections_cost_under_64_kib_each_and_all_see_a_new_message(
    idle_server: ServerProcess, listener: str
) -> None:
    """Plaintext, and implicit TLS (where asyncio alone would give every connection a 256 KiB buffer)."""
    deliver(idle_server.port("smtp"), MESSAGES)
    imap_port = idle_server.port(listener)
    tls = None
    if listener == "imaps":
        tls = ssl.create_default_context(cafile=str(idle_server.data.root / "tls" / "cert.pem"))

    async def scenario() -> tuple[int, int, list[int]]:
        clients = [await IdleClient.idle(imap_port, tls)]  # warm-up: first login, statement caches, imports
        try:
            before = server_rss_kib(idle_server)
            async with asyncio.timeout(PHASE_TIMEOUT):
                clients += await open_idle(imap_port, tls, CONNECTIONS)
            idle = server_rss_kib(idle_server)
            waiting = [asyncio.create_task(client.exists()) for client in clients]
            await asyncio.to_thread(deliver, idle_server.port("smtp"), 1, MESSAGES)
            async with asyncio.timeout(PHASE_TIMEOUT):
                seen = list(await asyncio.gather(*waiting))
            async with asyncio.timeout(PHASE_TIMEOUT):
                await asyncio.gather(*(client.logout() for client in clients))
            return before, idle, seen
        finally:
            for client in clients:
                client.writer.close()

    before, idle, seen = asyncio.run(scenario())

    per_connection = (idle - before) / CONNECTIONS
    assert per_connection < MAX_KIB_PER_CONNECTION, (
        f"server RSS grew {idle - before} KiB for {CONNECTIONS} idle connections: "
        f"{per_connection:.1f} KiB each"
    )
    assert seen == [MESSAGES + 1] * (CONNECTIONS + 1)
