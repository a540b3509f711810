"""Transcript tests for the IMAP core: bytes in, bytes out, no sockets (docs/decisions/0038).

`await run(core, data)` feeds `data` to an `ImapProtocol` and drives it as the connection glue does
(`postoffice.imap.session`) until it needs more input, and returns every octet it sent; `ImapHarness.run` is
the same from a (synchronous) test:

    core = imap.core()                                   # the greeting is queued
    out = imap.run(core, b'a LOGIN demo@example.test "correct horse battery"\\r\\nb SELECT INBOX\\r\\n')
    assert out.endswith(b"b OK [READ-WRITE] SELECT completed\\r\\n")

`ImapHarness` surrounds cores with real parts: a real store in the test's temporary directory, a real
`Authenticator` with the accounts DEMO and OTHER, and an event loop run in the test's own thread. Its
clients speak like the socket clients of tests/imap/conftest.py: `connect()` gives a `Transcript` with the
methods of `Raw` (`command`, `send`, `line`, `until_tagged`, `login`), `imaps()` an `imaplib.IMAP4` whose
octets go to a core instead of a socket; so a test moves between the two by changing its fixture. What only a
real connection shows (STARTTLS, deadlines, IDLE woken by another connection, a client that stops reading,
connection limits) stays with the socket tests.

Cheap by construction: the accounts share one argon2id hash made once per test process, and the harnesses
share one cache of verified passwords (the Authenticator's own `VerifiedCache`), so a LOGIN costs one argon2
run per process rather than one per test. Nothing sleeps; a read that nothing can answer fails at once.
"""

from __future__ import annotations

import asyncio
import functools
import imaplib
import io
import logging
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from postoffice.auth import Authenticator
from postoffice.auth.authenticator import VerifiedCache
from postoffice.config import AuthConfig
from postoffice.directory.passwords import hash_password
from postoffice.imap.protocol import ImapProtocol, Need
from postoffice.imap.settings import ImapSettings
from postoffice.message import parse_message
from postoffice.store import MailStore, open_store

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

T = TypeVar("T")

DEMO = "demo@example.test"
OTHER = "other@example.test"
PASSWORD = "correct horse battery"

_AUTH_CONFIG = AuthConfig(allow_plaintext_auth=False, failure_delay=0.05)
VERIFIED = VerifiedCache(_AUTH_CONFIG.verified_cache_ttl)


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


class MemoryTransport:
    """The connection side of a core, in memory: what the core writes is kept until taken."""

    def __init__(self, *, tls_active: bool = True, peer_ip: str = "127.0.0.1") -> None:
        self.tls_active = tls_active
        self._peer_ip = peer_ip
        self.written = bytearray()
        self.logged_in = False
        self.binding: bytes | None = None

    @property
    def peer_ip(self) -> str:
        return self._peer_ip

    @property
    def starttls_available(self) -> bool:
        return False  # no TLS in memory: STARTTLS is tested on real connections

    async def write(self, data: bytes) -> None:
        self.written += data

    def mark_logged_in(self) -> None:
        self.logged_in = True

    def channel_binding(self) -> bytes | None:
        return self.binding  # tests set it to play a TLS 1.3 connection's exporter

    def take(self) -> bytes:
        data = bytes(self.written)
        self.written.clear()
        return data


async def drive(core: ImapProtocol, data: bytes = b"") -> Need:
    """Feed `data` and process until the core needs something; its output is then in its transport."""
    core.receive_data(data)
    need = await core.process()
    if need is Need.TLS:
        raise AssertionError("STARTTLS needs a real connection (tests/imap/test_imap_auth.py)")
    await core.flush()
    return need


async def run(core: ImapProtocol, data: bytes = b"") -> bytes:
    """Feed `data`, process until the core needs more input (or IDLEs, or closes); every octet it sent."""
    await drive(core, data)
    transport = core.transport
    assert isinstance(transport, MemoryTransport)
    return transport.take()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class ImapHarness:
    """A store, an authenticator and IMAP cores on one event loop in the test's thread (see the module)."""

    def __init__(self, root: Path, settings: ImapSettings) -> None:
        self.root = root
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.records = _Records()
        logging.getLogger("postoffice").addHandler(self.records)
        self.store: MailStore = self.call(self._start())
        self.authenticator = Authenticator(self.store, _AUTH_CONFIG)
        self.authenticator.verified = VERIFIED
        self.account_ids = {address: self.call(self._add_account(address)) for address in (DEMO, OTHER)}
        self.cores: list[ImapProtocol] = []

    async def _start(self) -> MailStore:
        store = open_store(self.root / "mail.sqlite3")
        await store.add_domain("example.test")
        return store

    async def _add_account(self, address: str) -> int:
        return (await self.store.add_account(address, password_hash())).id

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def stop(self) -> None:
        for core in self.cores:
            core.close()
        try:
            self.call(self.authenticator.close())
            self.call(self.store.close())
        finally:
            logging.getLogger("postoffice").removeHandler(self.records)
            self.loop.close()

    # -- cores and clients ---------------------------------------------------------------------------------
    def core(self, *, tls: bool = True) -> ImapProtocol:
        """A new session's core (its greeting queued, not yet taken): like a connection to imaps (`tls`) or
        to imap before STARTTLS."""
        core = ImapProtocol(self.store, self.authenticator, self.settings, MemoryTransport(tls_active=tls))
        core.greeting()
        self.cores.append(core)
        return core

    def run(self, core: ImapProtocol, data: bytes = b"") -> bytes:
        return self.call(run(core, data))

    def connect(self, *, tls: bool = True) -> Transcript:
        return Transcript(self, tls=tls)

    def imaps(self, user: str | None = DEMO) -> imaplib.IMAP4:
        client = CoreIMAP4(self)
        if user is not None:
            client.login(user, PASSWORD)
        return client

    # -- the store -----------------------------------------------------------------------------------------
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


class Transcript:
    """One session as a client sees it, with the methods of the socket tests' `Raw`: what the core sends is
    buffered as it is produced, and read back line by line."""

    def __init__(self, harness: ImapHarness, *, tls: bool = True, read_greeting: bool = True) -> None:
        self.harness = harness
        self.core = harness.core(tls=tls)
        self.need: Need | None = None
        self.buf = b""
        self._pump(b"")
        self.greeting = self.line() if read_greeting else ""

    def _pump(self, data: bytes) -> None:
        self.need = self.harness.call(drive(self.core, data))
        transport = self.core.transport
        assert isinstance(transport, MemoryTransport)
        self.buf += transport.take()

    @property
    def closed(self) -> bool:
        return self.need is Need.CLOSE

    def send(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionError("the session is over")
        self._pump(data)

    def wait(self) -> None:
        """What an IDLE session (or one between commands after a NOTIFY, RFC 5465) sends when woken (the
        glue's wake-up): the changes committed since."""
        assert self.need in (Need.IDLE, Need.NOTIFY), self.need
        self._pump(b"")

    def _more(self) -> None:
        if self.need in (Need.IDLE, Need.NOTIFY):
            before = len(self.buf)
            self.wait()
            if len(self.buf) > before:
                return
        if self.closed:
            raise ConnectionError(f"closed; buffered {self.buf[:200]!r}")
        raise AssertionError(f"the core waits for input ({self.need}); buffered {self.buf[:200]!r}")

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            self._more()
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
                    self._more()
                lines.append(self.buf[:size].decode("utf-8", "replace"))
                self.buf = self.buf[size:]
                continue
            if line.startswith(tag + " "):
                return lines

    def response(self, tag: str) -> bytes:
        """Everything up to and including the line tagged `tag`, as octets (literal8 data may hold NUL and
        CRLF, so this does not split lines)."""
        marker = b"\r\n" + tag.encode() + b" "
        data = b"\r\n" + self.buf
        while marker not in data:
            self._more()
            data = b"\r\n" + self.buf
        end = data.index(b"\r\n", data.index(marker) + 2) + 2
        self.buf = data[end:]
        return data[2:end]

    def command(self, tag: str, text: str) -> list[str]:
        self.send(f"{tag} {text}\r\n".encode())
        return self.until_tagged(tag)

    def login(self, user: str = DEMO) -> None:
        assert self.command("L1", f'LOGIN "{user}" "{PASSWORD}"')[-1].startswith("L1 OK")

    def close(self) -> None:
        self.core.close()


def session(imap: ImapHarness, user: str = DEMO) -> Transcript:
    """A session of the protocol core, logged in as `user`."""
    raw = imap.connect()
    raw.login(user)
    return raw


def ok(raw: Transcript, tag: str, command: str) -> list[str]:
    """The reply to `command`, which must end in OK."""
    reply = raw.command(tag, command)
    assert reply[-1].startswith(f"{tag} OK"), reply
    return reply


def told(raw: Transcript) -> list[str]:
    """What the session says when woken between commands (in IDLE, or after a NOTIFY), as lines."""
    raw.wait()
    lines, raw.buf = raw.buf.decode().split("\r\n")[:-1], b""
    return lines


class CoreIMAP4(imaplib.IMAP4):
    """imaplib's client over a core instead of a socket: `send` runs the core, `read`/`readline` take what it
    sent. imaplib parses every response, so a test through it also checks that they are well formed."""

    def __init__(self, harness: ImapHarness) -> None:
        self._harness = harness
        super().__init__("127.0.0.1", 993)  # calls `open`, then reads the greeting

    def open(self, host: str = "", port: int = 993, timeout: float | None = None) -> None:
        self.host, self.port = host, port
        self._transcript = Transcript(self._harness, read_greeting=False)

    def read(self, size: int) -> bytes:
        transcript = self._transcript
        while len(transcript.buf) < size:
            transcript._more()
        data, transcript.buf = transcript.buf[:size], transcript.buf[size:]
        return data

    def readline(self) -> bytes:
        transcript = self._transcript
        while b"\n" not in transcript.buf:
            transcript._more()
        end = transcript.buf.index(b"\n") + 1
        line, transcript.buf = transcript.buf[:end], transcript.buf[end:]
        return line

    def send(self, data: Buffer) -> None:
        self._transcript.send(bytes(data))

    def shutdown(self) -> None:
        self._transcript.close()
