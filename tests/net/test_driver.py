"""The one connection loop of the line protocols (`net.driver.LineSession`), driving the real SMTP, POP3 and
POP2 sessions on real loopback sockets, with a real store, real TLS and a real `ListenerGroup`: each way the
server ends a session (shutdown, the command deadline, the login deadline, eviction to make room) ends every
protocol the same way, with that protocol's own goodbye; and a command pipelined behind STARTTLS / STLS in
plaintext never runs, before or after the handshake (CVE-2011-0411).

The deadlines are fractions of a second; every step waits for the server's reply or close, never a sleep."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postoffice.auth import Authenticator
from postoffice.config import AuthConfig, Pop3Config
from postoffice.net.listener import Connection, ConnectionLimits, ListenerGroup, ListenerSpec
from postoffice.net.tls import TlsContexts, generate_self_signed
from postoffice.pop2.server import serve_pop2
from postoffice.pop3.locks import MaildropLocks
from postoffice.pop3.server import serve_pop3
from postoffice.smtp.server import SmtpServerSettings, SmtpSession
from postoffice.store import open_store

WAIT = 10.0  # the longest any step may take; the deadlines under test are far shorter
PROTOCOLS = ["smtp", "pop3", "pop2"]

GREETINGS = {"smtp": b"220 localhost ESMTP", "pop3": b"+OK Postoffice POP3", "pop2": b"+ POP2 localhost"}

GOODBYES = {
    "shutdown": {
        "smtp": b"421 4.3.2 localhost Service shutting down, try again later\r\n",
        "pop3": b"-ERR [SYS/TEMP] server shutting down\r\n",
        "pop2": b"- server shutting down\r\n",
    },
    "timeout": {
        "smtp": b"421 4.4.2 localhost Timeout exceeded, closing connection\r\n",
        "pop3": b"",  # RFC 1939 section 3: the autologout timer closes without a response
        "pop2": b"- autologout: no command for 0 seconds\r\n",
    },
    "login timeout": {
        "smtp": b"421 4.4.2 localhost Login took too long, closing connection\r\n",
        "pop3": b"-ERR [SYS/TEMP] login took too long\r\n",
        "pop2": b"- login took too long\r\n",
    },
    "evicted": {
        "smtp": b"421 4.7.0 localhost Too many connections, closing this one; try again later\r\n",
        "pop3": b"-ERR [SYS/TEMP] too many connections, closing this one; try again later\r\n",
        "pop2": b"- too many connections, closing this one; try again later\r\n",
    },
}


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    generate_self_signed("localhost", cert, key)
    return cert, key


@contextlib.asynccontextmanager
async def served(
    tmp_path: Path,
    tls_pair: tuple[Path, Path],
    protocol: str,
    *,
    command_timeout: float = 60.0,
    login_timeout: float | None = None,
    per_client: int = 50,
) -> AsyncIterator[tuple[ListenerGroup, int]]:
    """One listener of `protocol` (SMTP in submission mode: it has a login) with STARTTLS where the protocol
    has it; `command_timeout` is the command deadline (SMTP command_timeout, [pop3] autologout)."""
    store = open_store(tmp_path / "mail.sqlite3")
    authenticator = Authenticator(store, AuthConfig(allow_plaintext_auth=False, failure_delay=0))
    tls = TlsContexts(*tls_pair)
    group = ListenerGroup(lambda: tls.server_context)
    locks = MaildropLocks()
    pop_config = Pop3Config(autologout=command_timeout)
    smtp_settings = SmtpServerSettings(
        hostname="localhost", spool_dir=tmp_path, mode="submission", command_timeout=command_timeout
    )

    async def handle(conn: Connection) -> None:
        if protocol == "smtp":
            await SmtpSession(conn, smtp_settings, store, authenticator=authenticator).run()
        elif protocol == "pop3":
            await serve_pop3(
                conn,
                hostname="localhost",
                store=store,
                authenticator=authenticator,
                config=pop_config,
                locks=locks,
            )
        else:
            await serve_pop2(
                conn,
                hostname="localhost",
                store=store,
                authenticator=authenticator,
                config=pop_config,
                locks=locks,
            )

    async def refuse(conn: Connection, reason: str) -> None:
        raise AssertionError(f"refused instead of making room: {reason}")

    spec = ListenerSpec(protocol, protocol, "127.0.0.1", 0, "none" if protocol == "pop2" else "starttls")
    await group.bind(
        spec, handle, refuse, ConnectionLimits(protocol, 50, per_client), login_timeout=login_timeout
    )
    try:
        yield group, group.bound[protocol][1]
    finally:
        group.stop_accepting()
        await group.wait_closed(5)
        await authenticator.close()
        await store.close()


async def connect(port: int, protocol: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    greeting = await asyncio.wait_for(reader.readline(), WAIT)
    assert greeting.startswith(GREETINGS[protocol]), greeting
    return reader, writer


async def rest(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes."""
    return await asyncio.wait_for(reader.read(), WAIT)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_idle_session_is_told_the_server_is_shutting_down(
    tmp_path: Path, tls_pair: tuple[Path, Path], protocol: str
) -> None:
    async def scenario() -> None:
        async with served(tmp_path, tls_pair, protocol) as (group, port):
            reader, writer = await connect(port, protocol)
            group.stop_accepting()
            assert await rest(reader) == GOODBYES["shutdown"][protocol]
            writer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_silent_client_gets_the_protocols_timeout_goodbye(
    tmp_path: Path, tls_pair: tuple[Path, Path], protocol: str
) -> None:
    async def scenario() -> None:
        async with served(tmp_path, tls_pair, protocol, command_timeout=0.3) as (_, port):
            reader, writer = await connect(port, protocol)
            assert await rest(reader) == GOODBYES["timeout"][protocol]
            writer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_client_that_does_not_log_in_in_time_gets_the_protocols_goodbye(
    tmp_path: Path, tls_pair: tuple[Path, Path], protocol: str
) -> None:
    async def scenario() -> None:
        async with served(tmp_path, tls_pair, protocol, login_timeout=0.3) as (_, port):
            reader, writer = await connect(port, protocol)
            assert await rest(reader) == GOODBYES["login timeout"][protocol]
            writer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_pre_login_session_closed_to_make_room_says_why(
    tmp_path: Path, tls_pair: tuple[Path, Path], protocol: str
) -> None:
    async def scenario() -> None:
        async with served(tmp_path, tls_pair, protocol, per_client=1) as (_, port):
            old_reader, old_writer = await connect(port, protocol)
            _, new_writer = await connect(port, protocol)  # served: the old one made room
            assert await rest(old_reader) == GOODBYES["evicted"][protocol]
            old_writer.close()
            new_writer.close()

    asyncio.run(scenario())


# (protocol, what precedes the upgrade, the upgrade command and its reply, a command the injection would run
# and its reply, the goodbye to QUIT over TLS)
UPGRADES = [
    (
        "smtp",
        b"EHLO client.test\r\n",
        b"STARTTLS\r\n",
        b"220 2.0.0 Ready to start TLS\r\n",
        b"221 2.0.0 localhost closing connection\r\n",
    ),
    (
        "pop3",
        b"",
        b"STLS\r\n",
        b"+OK Begin TLS negotiation\r\n",
        b"+OK localhost POP3 server signing off\r\n",
    ),
]


@pytest.mark.parametrize(("protocol", "before", "upgrade", "go_ahead", "bye"), UPGRADES, ids=["smtp", "pop3"])
def test_a_command_pipelined_behind_the_upgrade_in_plaintext_never_runs(
    tmp_path: Path,
    tls_pair: tuple[Path, Path],
    protocol: str,
    before: bytes,
    upgrade: bytes,
    go_ahead: bytes,
    bye: bytes,
) -> None:
    """The classic injection: "STARTTLS\\r\\nNOOP\\r\\n" in one packet. Had the NOOP run (before the
    handshake or after it), its reply would come before the answer to the first command sent over TLS."""

    async def scenario() -> None:
        async with served(tmp_path, tls_pair, protocol) as (_, port):
            reader, writer = await connect(port, protocol)
            if before:
                writer.write(before)
                while (await asyncio.wait_for(reader.readline(), WAIT))[3:4] != b" ":
                    pass  # the EHLO answer's last line
            writer.write(upgrade + b"NOOP\r\n")
            assert await asyncio.wait_for(reader.readline(), WAIT) == go_ahead
            client = ssl.create_default_context(cafile=str(tls_pair[0]))
            await asyncio.wait_for(writer.start_tls(client, server_hostname="localhost"), WAIT)
            writer.write(b"QUIT\r\n")
            assert await rest(reader) == bye  # the first reply over TLS answers the first command over TLS
            writer.close()

    asyncio.run(scenario())
