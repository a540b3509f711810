"""Two ways to reach an IMAP session, both with a real store and a real Authenticator:

- `imap`, `imap_rev1`, `imap_small_limit`, `imap_harness(settings)`: the protocol core driven from
  transcripts, no sockets (tests/imap/transcript.py). Most tests use these.
- `imap_server` and its variants: the whole server in-process on real sockets: `ListenerGroup` on 127.0.0.1
  (ephemeral ports: "imap" with STARTTLS, "imaps" with implicit TLS), a real self-signed certificate. Its
  event loop runs in a background thread, so the tests use blocking clients (imaplib, raw sockets) and reach
  the store through `ImapServer.call(coro)`. Nothing sleeps: tests wait for responses with socket timeouts.
  For what only a connection shows: STARTTLS, deadlines, IDLE woken by another connection, streaming to a
  client, limits.
"""

from __future__ import annotations

import asyncio
import imaplib
import io
import logging
import re
import socket
import ssl
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from postoffice.auth import Authenticator
from postoffice.config import AuthConfig
from postoffice.imap.session import ImapSettings, refuse_imap_connection, serve_imap
from postoffice.message import parse_message
from postoffice.net.listener import Connection, ConnectionLimits, ListenerGroup, ListenerSpec
from postoffice.net.tls import TlsContexts, generate_self_signed
from postoffice.store import MailStore, open_store
from tests.imap.transcript import DEMO, OTHER, PASSWORD, VERIFIED, ImapHarness, password_hash

T = TypeVar("T")

__all__ = ["DEMO", "OTHER", "PASSWORD", "TIMEOUT", "ImapHarness", "ImapServer", "Raw", "message"]

TIMEOUT = 20.0


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class ImapServer:
    def __init__(self, root: Path, cert: Path, key: Path, settings: ImapSettings) -> None:
        self.root = root
        self.cafile = cert
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tls = TlsContexts(cert, key)
        self.records = _Records()
        logging.getLogger("postoffice").addHandler(self.records)
        self.store: MailStore = self.call(self._start())
        self.ports: dict[str, int] = {name: port for name, (_, port) in self.group.bound.items()}
        self.account_ids: dict[str, int] = {}
        self.sockets: list[socket.socket] = []  # closed before the server stops
        for address in (DEMO, OTHER):
            self.account_ids[address] = self.call(self._add_account(address))

    async def _start(self) -> MailStore:
        store = open_store(self.root / "mail.sqlite3")
        await store.add_domain("example.test")
        tls = self.tls
        self.group = ListenerGroup(lambda: tls.server_context)
        authenticator = Authenticator(store, AuthConfig(allow_plaintext_auth=False, failure_delay=0.05))
        authenticator.verified = VERIFIED  # one argon2 run per test process (tests/imap/transcript.py)
        limits = ConnectionLimits("imap", 100, 50)
        settings = self.settings

        async def handle(conn: Connection) -> None:
            await serve_imap(conn, store=store, authenticator=authenticator, settings=settings)

        for name, tls_mode in (("imap", "starttls"), ("imaps", "implicit")):
            spec = ListenerSpec(name, "imap", "127.0.0.1", 0, tls_mode)
            await self.group.bind(spec, handle, refuse_imap_connection, limits)
        return store

    async def _add_account(self, address: str) -> int:
        account = await self.store.add_account(address, password_hash())
        return account.id

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(60)

    def stop(self) -> None:
        async def _stop() -> None:
            self.group.stop_accepting()
            await self.group.wait_closed(5)
            await self.store.close()

        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass
        try:
            self.call(_stop())
        finally:
            logging.getLogger("postoffice").removeHandler(self.records)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    # -- helpers -------------------------------------------------------------------------------------------
    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    def imaps(self, user: str | None = DEMO) -> imaplib.IMAP4_SSL:
        client = imaplib.IMAP4_SSL(
            "127.0.0.1", self.ports["imaps"], ssl_context=self.client_context(), timeout=TIMEOUT
        )
        self.sockets.append(client.socket())
        if user is not None:
            client.login(user, PASSWORD)
        return client

    def mailbox_id(self, address: str, name: str) -> int:
        info = self.call(self.store.get_mailbox(self.account_ids[address], name))
        assert info is not None
        return info.id

    def deliver(self, address: str, data: bytes, mailbox: str = "INBOX", flags: tuple[str, ...] = ()) -> int:
        """Store a message as delivery would (not through IMAP); its UID."""
        mailbox_id = self.mailbox_id(address, mailbox)

        async def _deliver() -> int:
            source = io.BytesIO(data)
            parsed = parse_message(source)
            source.seek(0)
            copy = await self.store.append(mailbox_id, source, parsed, flags)
            return copy.uid

        return self.call(_deliver())

    def failures(self) -> list[logging.LogRecord]:
        """Log records with a traceback or at ERROR level: a session must never produce one."""
        return [r for r in self.records.records if r.exc_info or r.levelno >= logging.ERROR]


def message(subject: str, body: str = "Hello.\r\n") -> bytes:
    return (
        f"From: Sender <sender@remote.test>\r\nTo: {DEMO}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <{subject.replace(' ', '.')}@remote.test>\r\n"
        f"\r\n{body}"
    ).encode()


class Raw:
    """A raw IMAP client for edge cases: send lines, read until the tagged reply."""

    def __init__(self, server: ImapServer, *, tls: bool = True) -> None:
        sock = socket.create_connection(
            ("127.0.0.1", server.ports["imaps" if tls else "imap"]), timeout=TIMEOUT
        )
        self.server = server
        self.sock: socket.socket = (
            server.client_context().wrap_socket(sock, server_hostname="127.0.0.1") if tls else sock
        )
        server.sockets.append(self.sock)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; buffered {self.buf[:200]!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def until_tagged(self, tag: str) -> list[str]:
        """Every line up to and including the one tagged `tag` (literals are kept inline, undecoded)."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            match = re.search(r"\{(\d+)\}$", line)
            if match:
                size = int(match.group(1))
                while len(self.buf) < size:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed inside a literal")
                    self.buf += chunk
                lines.append(self.buf[:size].decode("utf-8", "replace"))
                self.buf = self.buf[size:]
                continue
            if line.startswith(tag + " "):
                return lines

    def command(self, tag: str, text: str) -> list[str]:
        self.send(f"{tag} {text}\r\n".encode())
        return self.until_tagged(tag)

    def login(self, user: str = DEMO) -> None:
        assert self.command("L1", f'LOGIN "{user}" "{PASSWORD}"')[-1].startswith("L1 OK")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("imap-tls")
    cert, key = root / "cert.pem", root / "key.pem"
    generate_self_signed("localhost", cert, key)
    return cert, key


def _server(tmp_path: Path, certificate: tuple[Path, Path], settings: ImapSettings) -> Iterator[ImapServer]:
    server = ImapServer(tmp_path, certificate[0], certificate[1], settings)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def imap_server(tmp_path: Path, certificate: tuple[Path, Path]) -> Iterator[ImapServer]:
    yield from _server(tmp_path, certificate, ImapSettings(hostname="localhost", spool_dir=tmp_path))


@pytest.fixture
def small_limit_server(tmp_path: Path, certificate: tuple[Path, Path]) -> Iterator[ImapServer]:
    settings = ImapSettings(hostname="localhost", spool_dir=tmp_path, append_limit=2000, max_line=2048)
    yield from _server(tmp_path, certificate, settings)


def _harness(tmp_path: Path, settings: ImapSettings) -> Iterator[ImapHarness]:
    harness = ImapHarness(tmp_path, settings)
    try:
        yield harness
    finally:
        harness.stop()


@pytest.fixture
def imap(tmp_path: Path) -> Iterator[ImapHarness]:
    yield from _harness(tmp_path, ImapSettings(hostname="localhost", spool_dir=tmp_path))


@pytest.fixture
def imap_rev1(tmp_path: Path) -> Iterator[ImapHarness]:
    yield from _harness(tmp_path, ImapSettings(hostname="localhost", spool_dir=tmp_path, imap4rev2=False))


@pytest.fixture
def imap_small_limit(tmp_path: Path) -> Iterator[ImapHarness]:
    settings = ImapSettings(hostname="localhost", spool_dir=tmp_path, append_limit=2000, max_line=2048)
    yield from _harness(tmp_path, settings)
