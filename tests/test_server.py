"""`postoffice.server`: process set-up (the file descriptor limit), and the listeners built from the protocol
registry (`postoffice.protocols`, docs/decisions/0032) on real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from postoffice import config_doc, server
from postoffice.config import Config, load_config, render_default_config, standard_listeners
from postoffice.net.listener import Connection, Handler
from postoffice.net.service import Service, ServiceContext, StandardPort
from postoffice.protocols import SERVICES
from postoffice.server import Server, prune_tombstones_forever
from postoffice.settings import section, setting
from postoffice.store import StoreError


@pytest.fixture
def restore_fd_limit() -> Iterator[tuple[int, int]]:
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        yield limits
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def _below(hard: int) -> int:
    """A soft limit under the hard one that the test process can live with."""
    return 128 if hard == resource.RLIM_INFINITY or hard > 256 else max(hard // 2, 1)


def test_raise_fd_limit_lifts_the_soft_limit_to_the_hard_limit(restore_fd_limit: tuple[int, int]) -> None:
    _, hard = restore_fd_limit
    lowered = _below(hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))

    new_soft = server.raise_fd_limit()

    assert new_soft > lowered
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (new_soft, hard)
    if hard != resource.RLIM_INFINITY:
        assert new_soft == hard


def test_raise_fd_limit_keeps_the_old_limit_when_the_system_refuses(
    restore_fd_limit: tuple[int, int], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _, hard = restore_fd_limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (_below(hard), hard))

    def refuse(which: int, limits: tuple[int, int]) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(resource, "setrlimit", refuse)  # the module postoffice.server imported
    with caplog.at_level(logging.WARNING, logger="postoffice.server"):
        assert server.raise_fd_limit() == 128
    assert "file descriptor limit stays at 128" in caplog.text
    monkeypatch.undo()
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (128, hard)


# -- the protocol registry: a service registered in one line is served like every other ----------------------


@section("echo")
@dataclass(frozen=True)
class EchoConfig:
    greeting: str = setting("hello", "what the echo service says first")
    max_connections: int = setting(10, "simultaneous echo connections in total", positive=True)
    max_connections_per_ip: int = setting(1, "simultaneous echo connections per client IP", positive=True)


def _echo_factory(settings: EchoConfig, context: ServiceContext) -> Handler:
    hostname = context.config.server.hostname

    async def handle(conn: Connection) -> None:
        deadline = "login deadline" if conn.login_deadline is not None else "no login deadline"
        conn.mark_logged_in()  # before the greeting: a client that read it knows it cannot be evicted
        await conn.write(f"{settings.greeting} from {hostname}, {deadline}\r\n".encode())
        await conn.write(await conn.read(30))

    return handle


async def _refuse_echo(conn: Connection, reason: str) -> None:
    await conn.write(f"busy: {reason}\r\n".encode())


ECHO: Service[EchoConfig] = Service(
    name="echo",
    purpose="says it back",
    ports=(StandardPort("echo", 7, "none"),),
    settings=EchoConfig,
    factory=_echo_factory,
    refuse=_refuse_echo,
    pool="echo",
    caps=EchoConfig,
)


def _only(tmp_path: Path, listener: str, text: str) -> Config:
    """A config in `tmp_path` with one standard listener on, on loopback with a free port."""
    text += "\n".join(
        f"[listeners.{name}]\nenabled = false\n" for name in standard_listeners() if name != listener
    )
    text += f'\n[listeners.{listener}]\nenabled = true\naddress = "127.0.0.1"\nport = 0\ntls = "none"\n'
    path = tmp_path / "postoffice.toml"
    path.write_text('[server]\nhostname = "mail.example.test"\n' + text)
    (tmp_path / "store").mkdir()
    return load_config(path)


async def _running(config: Config, scenario: Callable[[Server], Awaitable[None]]) -> None:
    server = Server(config)
    await server.start()
    try:
        await scenario(server)
    finally:
        await server.shutdown()


async def _line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), 30)


def test_a_registered_service_is_configured_listed_and_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registering ECHO is the whole change: its section and listener are read, written by `init` and
    documented; the server binds it with its own settings, its login deadline and its connection caps."""
    monkeypatch.setitem(SERVICES, "echo", ECHO)
    assert "[echo]\n# what the echo service says first\ngreeting = " in render_default_config(
        "h.test", "test"
    )
    assert "[listeners.echo]\n# says it back\nenabled = true" in render_default_config("h.test", "test")
    assert "[echo]" in config_doc.generated_tables()
    assert "| `echo` | echo | 7 | none | yes | says it back |" in config_doc.standard_listeners_table()
    config = _only(tmp_path, "echo", '[echo]\ngreeting = "hi"\n')
    assert config.section(EchoConfig).greeting == "hi"

    async def scenario(server: Server) -> None:
        assert server.listeners is not None
        assert list(server.listeners.bound) == ["echo"]
        port = server.listeners.bound["echo"][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _line(reader) == b"hi from mail.example.test, login deadline\r\n"
        # the first connection has logged in: [echo] max_connections_per_ip = 1 refuses the second
        other_reader, other_writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _line(other_reader) == b"busy: too many connections from your address\r\n"
        assert await asyncio.wait_for(other_reader.read(), 30) == b""
        other_writer.close()
        writer.write(b"ping\r\n")
        assert await _line(reader) == b"ping\r\n"
        writer.close()

    asyncio.run(_running(config, scenario))


@pytest.mark.usefixtures("unbuilt_protocol")
def test_a_service_without_a_factory_is_listed_but_not_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _only(tmp_path, "sieve", "")
    assert config.listeners["sieve"].status == "not built yet"

    async def scenario(server: Server) -> None:
        assert server.listeners is not None
        assert server.listeners.bound == {}

    with caplog.at_level(logging.WARNING, logger="postoffice.server"):
        asyncio.run(_running(config, scenario))
    assert "listener sieve: protocol sieve is not built yet in this version; not started" in caplog.text


@pytest.mark.parametrize(
    ("text", "relays"),
    [
        ("", False),
        ('[smtp]\nrelay_networks = ["127.0.0.0/8"]\n', True),
        ('[queue]\ntrusted_networks = ["127.0.0.0/8"]\n', True),  # the old name: no change for old files
        ('[smtp]\nrelay_networks = ["192.0.2.0/24"]\n', False),
    ],
)
def test_port_25_relays_for_relay_networks_only(tmp_path: Path, text: str, relays: bool) -> None:
    config = _only(tmp_path, "smtp", text)

    async def scenario(server: Server) -> None:
        assert server.listeners is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", server.listeners.bound["smtp"][1])
        assert (await _line(reader)).startswith(b"220 ")
        replies = []
        for command in (b"HELO client.test", b"MAIL FROM:<a@client.test>", b"RCPT TO:<b@elsewhere.test>"):
            writer.write(command + b"\r\n")
            replies.append(await _line(reader))
        writer.write(b"QUIT\r\n")
        await _line(reader)
        writer.close()
        assert replies[-1].startswith(b"250 " if relays else b"554 5.7.1 "), replies

    asyncio.run(_running(config, scenario))


def test_the_pruner_removes_old_expunge_records_now_and_again() -> None:
    """`[store] tombstone_days` (decision 0069): pruned at once and then every interval; a failure is logged
    and the next round comes all the same."""

    class Store:
        def __init__(self) -> None:
            self.cutoffs: list[float] = []
            self.rounds = asyncio.Event()

        async def prune_tombstones(self, before: float) -> int:
            self.cutoffs.append(before)
            if len(self.cutoffs) == 1:
                raise StoreError("disk on fire")
            if len(self.cutoffs) == 3:
                self.rounds.set()
            return 1

    async def scenario() -> list[float]:
        store = Store()
        task = asyncio.create_task(prune_tombstones_forever(store, 30, interval=0))  # type: ignore[arg-type]
        await asyncio.wait_for(store.rounds.wait(), 10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return store.cutoffs

    started = time.time()
    cutoffs = asyncio.run(scenario())
    assert len(cutoffs) >= 3
    assert all(started - 30 * 86400 - 1 <= c <= time.time() - 30 * 86400 for c in cutoffs)
