"""NOTIFY (RFC 5465, decision 0072) on a real `postoffice run` process: a client that asked for notifications
and sends no command gets an unsolicited STATUS when mail arrives in another mailbox, by SMTP and by another
connection's APPEND; what the I/O layer does between commands (`Need.NOTIFY` in imap/session.py), which the
transcript tests (tests/imap/test_imap_notify.py) cannot show.

No sleeps as synchronisation: every step waits for the server's line, bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import DataDir, ServerProcess, make_data_dir, serving
from tests.integration.test_imap_idle_connections import set_option
from tests.support.mail import send_smtp

pytestmark = pytest.mark.integration

USER = "demo@example.test"
PASSWORD = "demo-secret-pw"  # make_data_dir's password for "demo"
STEP_TIMEOUT = 20.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    data: DataDir = make_data_dir(tmp_path / "data", users=("demo",))
    data.config.write_text(set_option(data.config.read_text(), "auth", "allow_plaintext_auth", "true"))
    with serving(data) as proc:
        yield proc


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def login(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        assert (await client.line()).startswith(b"* OK")
        await client.command(b"a", f'LOGIN "{USER}" "{PASSWORD}"'.encode())
        return client

    async def line(self) -> bytes:
        async with asyncio.timeout(STEP_TIMEOUT):
            line = await self.reader.readline()
        if not line:
            raise ConnectionError("the server closed the connection")
        return line

    async def command(self, tag: bytes, text: bytes) -> list[bytes]:
        """Send a command, read up to its tagged OK; the untagged lines before it."""
        self.writer.write(tag + b" " + text + b"\r\n")
        lines: list[bytes] = []
        while not (line := await self.line()).startswith(tag + b" "):
            lines.append(line)
        assert line.startswith(tag + b" OK"), line
        return lines

    async def close(self) -> None:
        await self.command(b"z", b"LOGOUT")
        self.writer.close()


STATUS = re.compile(rb'\* STATUS "([^"]+)" \(MESSAGES (\d+) UIDNEXT \d+ UIDVALIDITY \d+ UNSEEN \d+\)\r\n')


def test_a_notify_client_hears_of_new_mail_elsewhere_with_no_command_sent(server: ServerProcess) -> None:
    imap, smtp = server.port("imap"), server.port("smtp")
    mail = f"From: sender@remote.test\r\nTo: {USER}\r\nSubject: notify\r\n\r\nHello.\r\n"

    async def scenario() -> None:
        watcher = await Client.login(imap)
        other = await Client.login(imap)
        try:
            await watcher.command(b"s", b"SELECT Archive")
            assert await watcher.command(b"n", b"NOTIFY SET (personal (MessageNew MessageExpunge))") == []
            # nothing is sent from here on: the STATUS must come on its own
            await asyncio.to_thread(send_smtp, smtp, mail, to=USER, timeout=STEP_TIMEOUT)
            match = STATUS.fullmatch(await watcher.line())
            assert match is not None
            assert match.groups() == (b"INBOX", b"1")
            literal = mail.encode()
            await other.command(b"p", b"APPEND Drafts {%d+}\r\n%s" % (len(literal), literal))
            match = STATUS.fullmatch(await watcher.line())
            assert match is not None
            assert match.groups() == (b"Drafts", b"1")
            # the selected mailbox is not told without SELECTED (RFC 5465 3.1); a command still works
            await other.command(b"q", b"APPEND Archive {%d+}\r\n%s" % (len(literal), literal))
            assert await watcher.command(b"d", b"NOOP") == []
        finally:
            await other.close()
            await watcher.close()

    asyncio.run(scenario())
