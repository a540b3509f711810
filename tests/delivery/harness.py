"""Real parts for the delivery pipeline's tests: a real store with three accounts, a `DeliveryPipeline` with
the stages a test gives it, SMTP sessions on real sockets (port 25, submission, relaying), and a queue
runner, all on one event loop in a thread of its own (as the server runs them). No mocks: a stage is a real
`Stage` object written by the test."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from postoffice.auth import Authenticator
from postoffice.config import AuthConfig
from postoffice.delivery.pipeline import DeliveryPipeline
from postoffice.delivery.plan import DeliveryPlan, Message, Origin
from postoffice.delivery.stages import Stage
from postoffice.delivery.submission import SendingLimiter, SubmissionPolicy
from postoffice.directory.passwords import hash_password
from postoffice.message import parse_message
from postoffice.net.listener import Connection, ListenerSpec
from postoffice.smtp.queue import QueueRunner
from postoffice.smtp.server import SmtpServerSettings, SmtpSession
from postoffice.smtp.settings import QueueConfig
from postoffice.store import MailStore, MessageInfo, open_store

T = TypeVar("T")

DEMO, OTHER, THIRD = "demo@example.test", "other@example.test", "third@example.test"
PASSWORD = "delivery-test-pw"
HOSTNAME = "mx.example.test"


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def message(subject: str = "hello", *, sender: str = "someone@remote.example", to: str = DEMO) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@remote.example>\r\n\r\nbody of {subject}\r\n"
    ).encode()


def as_message(raw: bytes) -> Message:
    return Message(io.BytesIO(raw), parse_message(io.BytesIO(raw)))


class FunctionStage:
    """A stage made of a function of (message, plan); `calls` records the origin of each run."""

    def __init__(self, name: str, fn: Callable[[Message, DeliveryPlan], None]) -> None:
        self.name = name
        self.fn = fn
        self.calls: list[Origin] = []

    async def run(self, message: Message, plan: DeliveryPlan) -> None:
        self.calls.append(plan.origin)
        self.fn(message, plan)


class Harness:
    def __init__(self, root: Path, stages: Sequence[Stage] = ()) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="delivery-harness", daemon=True)
        self._thread.start()
        self.store: MailStore = self.call(self._open())
        self.ids = {address: self.call(self._account(address)) for address in (DEMO, OTHER, THIRD)}
        self.pipeline = DeliveryPipeline(self.store, stages, hostname=HOSTNAME)
        self.authenticator = Authenticator(self.store, AuthConfig(allow_plaintext_auth=True, failure_delay=0))
        self.policy = SubmissionPolicy(self.store, hostname=HOSTNAME, limiter=SendingLimiter(100))
        self._servers: list[asyncio.base_events.Server] = []
        self._sessions: set[asyncio.Task[None]] = set()
        self._shutting_down = self.call(self._event())

    async def _event(self) -> asyncio.Event:
        return asyncio.Event()

    async def _open(self) -> MailStore:
        store = open_store(self.root / "mail.sqlite3")
        await store.add_domain("example.test")
        return store

    async def _account(self, address: str) -> int:
        return (await self.store.add_account(address, password_hash())).id

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(60)

    def smtp(self, mode: str = "mx", *, relay_networks: tuple[str, ...] = ()) -> int:
        """A listener with SMTP sessions in `mode` ("mx": port 25; "submission"); its port."""
        settings = SmtpServerSettings(
            hostname=HOSTNAME, spool_dir=self.root, mode=mode, trusted_networks=relay_networks
        )
        spec = ListenerSpec(mode, "smtp" if mode == "mx" else "submission", "127.0.0.1", 0, "none")

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._sessions.add(task)
            task.add_done_callback(self._sessions.discard)
            conn = Connection(reader, writer, spec, lambda: None, self._shutting_down)
            with contextlib.suppress(Exception):
                await SmtpSession(
                    conn,
                    settings,
                    self.store,
                    authenticator=self.authenticator,
                    pipeline=self.pipeline,
                    policy=self.policy,
                ).run()
            await conn.close()

        async def start() -> int:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self._servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        return self.call(start())

    def runner(self) -> QueueRunner:
        return QueueRunner(self.store, hostname=HOSTNAME, config=QueueConfig(), pipeline=self.pipeline)

    def run_queue(self) -> None:
        """One pass of the queue runner, and every delivery it started."""

        async def once() -> None:
            runner = self.runner()
            await runner.run_once()
            await runner.idle()

        self.call(once())

    # -- reading the store -----------------------------------------------------------------------------------
    def messages(self, address: str, mailbox: str = "INBOX") -> list[MessageInfo]:
        async def read() -> list[MessageInfo]:
            info = await self.store.get_mailbox(self.ids[address], mailbox)
            assert info is not None, mailbox
            return await self.store.list_messages(info.id)

        return self.call(read())

    def content(self, info: MessageInfo) -> bytes:
        return self.call(self.store.read_content(info.content_id))

    def stop(self) -> None:
        async def close() -> None:
            for server in self._servers:
                server.close()
            for task in list(self._sessions):
                task.cancel()
            await asyncio.gather(*self._sessions, return_exceptions=True)
            for server in self._servers:
                await server.wait_closed()
            await self.authenticator.close()
            await self.store.close()

        try:
            self.call(close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
            self.loop.close()


#: A new harness in its own directory, stopped at the end of the test (the `make` fixture, conftest.py).
MakeHarness = Callable[[], Harness]
