"""The SMTP glue's one place that maps unexpected exceptions to replies (smtp.server.SmtpSession): an
in-process session on a real socket with a real store and the real login path. The fault is injected
through the sending limiter's clock (its own injection point): the session must answer 451 4.3.0 to the
command that hit it and go on, never die without a reply."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.auth import Authenticator
from postoffice.config import AuthConfig
from postoffice.directory.passwords import hash_password
from postoffice.net.listener import Connection, ListenerSpec
from postoffice.smtp.server import SmtpServerSettings, SmtpSession
from postoffice.smtp.submission import SendingLimiter
from postoffice.store import open_store

PASSWORD = "demo-secret-pw"


class BrokenClock:
    """A clock that fails while `broken` is set (a bug anywhere below the glue, as far as it knows)."""

    def __init__(self) -> None:
        self.broken = False

    def __call__(self) -> float:
        if self.broken:
            raise RuntimeError("clock exploded")
        return 0.0


@pytest.fixture
def submission(tmp_path: Path) -> Iterator[tuple[int, BrokenClock]]:
    clock = BrokenClock()
    ready = threading.Event()
    port: list[int] = []
    stop: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def main() -> None:
        store = open_store(tmp_path / "mail.sqlite3")
        await store.add_domain("example.test")
        await store.add_account("demo@example.test", hash_password(PASSWORD))
        authenticator = Authenticator(store, AuthConfig(allow_plaintext_auth=True, failure_delay=0))
        settings = SmtpServerSettings(hostname="mx.example.test", spool_dir=tmp_path, mode="submission")
        spec = ListenerSpec("submission", "submission", "127.0.0.1", 0, "none")
        shutting_down = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = Connection(reader, writer, spec, lambda: None, shutting_down)
            limiter = SendingLimiter(100, clock=clock)
            with contextlib.suppress(Exception):
                await SmtpSession(conn, settings, store, authenticator=authenticator, limiter=limiter).run()
            await conn.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        stopped = asyncio.Event()
        stop.append((asyncio.get_running_loop(), stopped))
        ready.set()
        try:
            await stopped.wait()
        finally:
            server.close()
            await server.wait_closed()
            await store.close()

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    assert ready.wait(30)
    try:
        yield port[0], clock
    finally:
        loop, stopped = stop[0]
        loop.call_soon_threadsafe(stopped.set)
        thread.join(30)


def test_an_unexpected_exception_gets_451_and_the_session_goes_on(
    submission: tuple[int, BrokenClock],
) -> None:
    port, clock = submission
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.login("demo@example.test", PASSWORD)
        clock.broken = True
        code, text = smtp.mail("demo@example.test")
        assert (code, text) == (451, b"4.3.0 Local error in processing, try again later")
        clock.broken = False
        assert smtp.noop()[0] == 250
        assert smtp.mail("demo@example.test")[0] == 250
        assert smtp.rcpt("demo@example.test")[0] == 250
        code, _ = smtp.data(b"From: demo@example.test\r\nSubject: after the error\r\n\r\nx\r\n")
        assert code == 250
