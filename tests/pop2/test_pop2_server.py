"""POP2 (RFC 937) on a real `postoffice run` process: raw-socket sessions against mail delivered over SMTP,
checked byte for byte and against the store on disk."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from postoffice.auth import Authenticator
from postoffice.config import AuthConfig, Pop3Config
from postoffice.directory.passwords import hash_password
from postoffice.message import parse_message
from postoffice.net.listener import Connection, ListenerSpec
from postoffice.pop2.server import serve_pop2
from postoffice.pop3.locks import MaildropLocks
from postoffice.store import MailStore, StoreError, open_store
from tests.integration.harness import DataDir, ServerProcess, cli
from tests.integration.mailcheck import body_after_trace, inbox_messages, integrity_ok
from tests.support.mail import send_smtp, text_message

pytestmark = pytest.mark.integration

DEMO = "demo@example.test"


def enable_pop2(data_dir: DataDir) -> None:
    head, marker, tail = data_dir.config.read_text().partition("\n[listeners.pop2]\n")
    assert marker, tail
    assert "enabled = false" in tail.split("\n[", 1)[0], tail
    data_dir.config.write_text(head + marker + tail.replace("enabled = false", "enabled = true", 1))


@pytest.fixture
def pop2_server(data_dir: DataDir) -> Iterator[ServerProcess]:
    enable_pop2(data_dir)
    proc = ServerProcess(data_dir).start()
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            code = proc.stop()
            assert code == 0, proc.log()
        else:
            proc.kill()


raw_message = text_message


def deliver(server: ServerProcess, *messages: bytes) -> None:
    send_smtp(server.port("smtp"), *messages, helo="client.remote.test")


class Pop2Client:
    """A raw POP2 client socket: reply lines, and exactly n octets after RETR."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed; buffered {self.buf!r}")
        self.buf += chunk

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def command(self, text: str) -> str:
        self.send(text.encode() + b"\r\n")
        return self.line()

    def read_exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._fill()
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def closed_by_server(self) -> bool:
        """True when the server closes the connection with nothing more to say."""
        try:
            return not self.buf and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def login(server: ServerProcess, data_dir: DataDir, address: str = DEMO) -> tuple[Pop2Client, int]:
    client = Pop2Client(server.port("pop2"))
    assert client.line() == "+ POP2 localhost server ready"
    reply = client.command(f"HELO {address} {data_dir.passwords[address]}")
    match = re.fullmatch(r"#(\d+) messages? in INBOX", reply)
    assert match, reply
    return client, int(match.group(1))


def seen_flags(data_dir: DataDir) -> list[bool]:
    """Whether each INBOX message of demo is \\Seen, read through the store API (server stopped)."""

    async def read() -> list[bool]:
        store = open_store(data_dir.root / "store" / "mail.sqlite3")
        try:
            account = await store.get_account(DEMO)
            assert account is not None
            inbox = await store.get_mailbox(account.id, "INBOX")
            assert inbox is not None
            return ["\\Seen" in m.flags for m in await store.list_messages(inbox.id)]
        finally:
            await store.close()

    return asyncio.run(read())


def size_of(reply: str) -> int:
    match = re.match(r"=(\d+) ", reply)
    assert match, reply
    return int(match.group(1))


def wait_for_log(server: ServerProcess, pattern: str, timeout: float = 10.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, server.log())
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not in the log:\n{server.log()}")
        time.sleep(0.05)


# -- sessions ------------------------------------------------------------------------------------------------


def test_helo_read_retr_are_byte_exact_and_acks_nack_keep_messages(
    pop2_server: ServerProcess, data_dir: DataDir
) -> None:
    first = raw_message("first", body="Line one\r\n.dot line stays as it is\r\n\r\nlast\r\n")
    second = raw_message("second", body="x" * 100_000 + "\r\n")  # more than one store chunk
    deliver(pop2_server, first, second)
    stored = [data for _, data in inbox_messages(data_dir.root, DEMO)]

    client, count = login(pop2_server, data_dir)
    assert count == 2
    reply = client.command("READ")
    assert reply == f"={len(stored[0])} octets in message 1"
    client.send(b"RETR\r\n")
    data = client.read_exact(size_of(reply))
    assert data == stored[0]
    assert body_after_trace(data) == first

    reply = client.command("ACKS")
    assert reply == f"={len(stored[1])} octets in message 2"
    client.send(b"RETR\r\n")
    assert body_after_trace(client.read_exact(size_of(reply))) == second
    assert client.command("NACK") == reply  # the same message again
    assert client.command("READ 1") == f"={len(stored[0])} octets in message 1"
    assert client.command("QUIT") == "+ POP2 localhost signing off"
    assert client.closed_by_server()
    client.close()
    assert [data for _, data in inbox_messages(data_dir.root, DEMO)] == stored  # nothing deleted
    wait_for_log(
        pop2_server,
        r"pop2 session client=127\.0\.0\.1 account=demo@example\.test folder=INBOX retrieved=2 deleted=0 "
        r"end=QUIT",
    )
    wait_for_log(
        pop2_server,
        r"login protocol=pop2 client=127\.0\.0\.1 account=demo@example\.test "
        r"mechanism=HELO tls=no result=ok",
    )
    assert pop2_server.stop() == 0
    assert seen_flags(data_dir) == [True, False]  # ACKS marked message 1 \Seen; NACK left message 2 alone


def test_ackd_deletes_durably_before_the_reply(pop2_server: ServerProcess, data_dir: DataDir) -> None:
    deliver(pop2_server, raw_message("one"), raw_message("two"))
    (uid1, _), (uid2, second) = inbox_messages(data_dir.root, DEMO)
    client, _ = login(pop2_server, data_dir)
    reply = client.command("READ")
    client.send(b"RETR\r\n")
    client.read_exact(size_of(reply))
    assert client.command("ACKD") == f"={len(second)} octets in message 2"
    # The reply came after the commit: another reader of the database file sees the message gone already.
    assert [uid for uid, _ in inbox_messages(data_dir.root, DEMO)] == [uid2]
    assert client.command("READ 1") == "=0 no message 1"
    client.close()  # no QUIT: the deletion does not depend on one
    code = pop2_server.stop()
    assert code == 0, pop2_server.log()
    assert [uid for uid, _ in inbox_messages(data_dir.root, DEMO)] == [uid2]
    assert uid1 != uid2
    assert integrity_ok(data_dir.root)


def test_dropped_connection_removes_nothing_and_releases_the_maildrop(
    pop2_server: ServerProcess, data_dir: DataDir
) -> None:
    deliver(pop2_server, raw_message("keep me"), raw_message("me too"))
    before = inbox_messages(data_dir.root, DEMO)
    client, _ = login(pop2_server, data_dir)
    reply = client.command("READ")
    client.send(b"RETR\r\n")
    client.read_exact(size_of(reply))
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # reset, in the NEXT state, before any acknowledgement
    wait_for_log(pop2_server, r"pop2 session .*account=demo@example\.test .*retrieved=1 deleted=0")
    assert inbox_messages(data_dir.root, DEMO) == before
    again, count = login(pop2_server, data_dir)  # the lock was released
    assert count == 2
    again.command("QUIT")
    again.close()


def test_fold_selects_another_mailbox(data_dir: DataDir) -> None:
    archived = raw_message("archived", body="From the archive.\r\n")

    async def seed() -> None:
        store = open_store(data_dir.root / "store" / "mail.sqlite3")
        try:
            account = await store.get_account(DEMO)
            assert account is not None
            await store.deliver(
                io.BytesIO(archived), parse_message(io.BytesIO(archived)), [account.id], "Archive"
            )
        finally:
            await store.close()

    asyncio.run(seed())
    enable_pop2(data_dir)
    server = ServerProcess(data_dir).start()
    try:
        client, count = login(server, data_dir)
        assert count == 0
        assert client.command("READ") == "=0 no more messages"
        assert client.command("FOLD Archive") == "#1 message in Archive"
        reply = client.command("READ")
        assert reply == f"={len(archived)} octets in message 1"
        client.send(b"RETR\r\n")
        assert client.read_exact(len(archived)) == archived
        assert client.command("ACKD") == "=0 no more messages"
        assert client.command("FOLD NoSuchFolder") == "#0 messages in NoSuchFolder"  # RFC 937: #0
        assert client.command("FOLD inbox") == "#0 messages in inbox"  # INBOX in any case
        assert client.command("QUIT").startswith("+ ")
        client.close()
        assert inbox_messages(data_dir.root, DEMO, mailbox="Archive") == []
        assert server.stop() == 0
    finally:
        server.kill()


def test_wrong_password_is_refused_and_closed(pop2_server: ServerProcess, data_dir: DataDir) -> None:
    client = Pop2Client(pop2_server.port("pop2"))
    client.line()
    assert client.command(f"HELO {DEMO} not-the-password") == "- authentication failed"
    assert client.closed_by_server()  # RFC 937: a failed HELO ends the session
    client.close()
    wait_for_log(pop2_server, r"login protocol=pop2 .*account=demo@example\.test .*result=bad-credentials")


def test_second_session_on_the_same_maildrop_is_refused(
    pop2_server: ServerProcess, data_dir: DataDir
) -> None:
    first, _ = login(pop2_server, data_dir)
    second = Pop2Client(pop2_server.port("pop2"))
    second.line()
    assert second.command(f"HELO {DEMO.upper()} {data_dir.passwords[DEMO]}") == "- maildrop in use"
    assert second.closed_by_server()
    second.close()
    other, _ = login(pop2_server, data_dir, "other@example.test")  # another maildrop is fine
    other.command("QUIT")
    first.command("QUIT")
    first.close()
    wait_for_log(pop2_server, r"pop2 session .*account=demo@example\.test .*end=QUIT")
    third, _ = login(pop2_server, data_dir)
    third.command("QUIT")


def test_malformed_commands_get_minus_replies(pop2_server: ServerProcess, data_dir: DataDir) -> None:
    client = Pop2Client(pop2_server.port("pop2"))
    client.line()
    assert client.command("READ") == "- log in first: HELO user password"
    assert client.command("STAT") == "- unknown command"
    client.send(b"HELO " + b"x" * 2000 + b"\r\n")
    assert client.line() == "- line too long"
    client.send(b"\xff\xfe\x00\r\n")
    assert client.line().startswith("- ")
    assert client.command("QUIT").startswith("+ ")


def test_shutdown_says_goodbye_to_an_idle_session(pop2_server: ServerProcess, data_dir: DataDir) -> None:
    client, _ = login(pop2_server, data_dir)
    assert pop2_server.proc is not None
    pop2_server.proc.send_signal(signal.SIGTERM)
    assert client.line() == "- server shutting down"
    assert client.closed_by_server()
    assert pop2_server.stop() == 0


def test_ports_shows_pop2_disabled_by_default_with_the_reason(data_dir: DataDir) -> None:
    out = cli("ports", config=data_dir.config)
    (row,) = [line for line in out.splitlines() if line.startswith("pop2 ")]
    assert re.search(r"127\.0\.0\.1\s+0\s+pop2\s+none\s+no\s+disabled\s+the legacy protocol", row)
    assert "pop2: POP2 (RFC 937) has no TLS and sends passwords in clear, so it is off by default" in out
    assert "allow_plaintext_auth" in out
    enable_pop2(data_dir)
    out = cli("ports", config=data_dir.config)
    (row,) = [line for line in out.splitlines() if line.startswith("pop2 ")]
    assert re.search(r"pop2\s+none\s+yes\s+ready", row)


# -- the glue in-process: limits that the process tests cannot reach quickly ---------------------------------

PASSWORD = "demo-secret-pw"


class GlueRig:
    """serve_pop2 behind a real asyncio listener and a real store in a temporary directory."""

    def __init__(self, tmp_path: Path, *, autologout: float = 600.0, max_errors: int = 20) -> None:
        self.tmp_path = tmp_path
        self.config = Pop3Config(autologout=autologout, max_errors=max_errors)
        self.peer_host = ""  # "" keeps the real (loopback) peer address
        self.allow_plaintext_auth = False
        self.store: MailStore | None = None
        self.wrap_store: Callable[[MailStore], MailStore] = lambda store: store
        self.shutting_down = asyncio.Event()

    async def start(self, *messages: bytes) -> int:
        store = open_store(self.tmp_path / "mail.sqlite3")
        self.store = store
        await store.add_domain("example.test")
        account = await store.add_account(DEMO, hash_password(PASSWORD))
        for message in messages:
            await store.deliver(io.BytesIO(message), parse_message(io.BytesIO(message)), [account.id])
        # the decision is the authenticator's (decision 0035): one strict, one that allows plaintext
        authenticators = {
            allow: Authenticator(store, AuthConfig(allow_plaintext_auth=allow, failure_delay=0.0))
            for allow in (False, True)
        }
        locks = MaildropLocks()
        spec = ListenerSpec("pop2", "pop2", "127.0.0.1", 0, "none")

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = Connection(reader, writer, spec, lambda: None, self.shutting_down)
            if self.peer_host:
                conn.peer_host = self.peer_host
            try:
                await serve_pop2(
                    conn,
                    hostname="localhost",
                    store=self.wrap_store(store),
                    authenticator=authenticators[self.allow_plaintext_auth],
                    config=self.config,
                    locks=locks,
                )
            finally:
                await conn.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        if self.store is not None:
            await self.store.close()


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await reader.readline()).startswith(b"+ POP2 ")
    return reader, writer


async def _command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str) -> str:
    writer.write(line.encode() + b"\r\n")
    await writer.drain()
    return (await asyncio.wait_for(reader.readline(), 10)).decode()


def test_autologout_ends_a_silent_session(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = GlueRig(tmp_path, autologout=0.2)
        port = await rig.start(raw_message("one"))
        try:
            reader, writer = await _open(port)
            assert (await _command(reader, writer, f"HELO {DEMO} {PASSWORD}")).startswith("#1 ")
            line = await asyncio.wait_for(reader.readline(), 10)
            assert line == b"- autologout: no command for 0 seconds\r\n"
            assert await reader.read() == b""
            writer.close()
        finally:
            await rig.stop()

    asyncio.run(scenario())


def test_too_many_errors_close_the_session(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = GlueRig(tmp_path, max_errors=2)
        port = await rig.start()
        try:
            reader, writer = await _open(port)
            assert await _command(reader, writer, "NOPE") == "- unknown command\r\n"
            assert await _command(reader, writer, "NOPE") == "- unknown command\r\n"
            assert await reader.readline() == b"- too many errors, closing connection\r\n"
            assert await reader.read() == b""
            writer.close()
        finally:
            await rig.stop()

    asyncio.run(scenario())


def test_plaintext_password_from_a_remote_address_is_refused_unless_allowed(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = GlueRig(tmp_path)
        rig.peer_host = "192.0.2.7"
        port = await rig.start()
        try:
            reader, writer = await _open(port)
            reply = await _command(reader, writer, f"HELO {DEMO} {PASSWORD}")
            assert reply == "- plaintext passwords are not allowed from your address\r\n"
            assert await reader.read() == b""
            writer.close()
            rig.allow_plaintext_auth = True
            reader, writer = await _open(port)
            assert (await _command(reader, writer, f"HELO {DEMO} {PASSWORD}")).startswith("#0 ")
            writer.close()
        finally:
            await rig.stop()

    asyncio.run(scenario())


def test_message_that_cannot_be_streamed_closes_without_a_reply(tmp_path: Path) -> None:
    """The "=n" promise cannot be kept (expunged meanwhile by another protocol, store error): the framing
    is lost, so the server closes instead of sending anything that would be read as message data."""

    class FailingStore:
        def __init__(self, store: MailStore) -> None:
            self._store = store

        def __getattr__(self, name: str) -> Any:
            return getattr(self._store, name)

        async def open_content(self, content_id: int, chunk_size: int = 65536) -> AsyncIterator[bytes]:
            yield b"Return-Path: <"
            raise StoreError("disk gone")

    async def scenario() -> None:
        rig = GlueRig(tmp_path)
        rig.wrap_store = lambda store: cast(MailStore, FailingStore(store))
        port = await rig.start(raw_message("one"))
        try:
            reader, writer = await _open(port)
            await _command(reader, writer, f"HELO {DEMO} {PASSWORD}")
            size = int((await _command(reader, writer, "READ"))[1:].split()[0])
            writer.write(b"RETR\r\n")
            data = await asyncio.wait_for(reader.read(), 10)
            assert data == b"Return-Path: <"
            assert len(data) < size
            writer.close()
            assert rig.store is not None
            inbox = await rig.store.get_mailbox(1, "INBOX")
            assert inbox is not None
            assert inbox.messages == 1
        finally:
            await rig.stop()

    asyncio.run(scenario())
