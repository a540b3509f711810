"""Connection accounting and deadlines of `net.listener` (docs/decisions/0028), on real loopback sockets:
deadlines per command rather than per read, the login deadline, the per-client cap counted per IPv6 /64, and
eviction of pre-login connections instead of refusing everybody.

The deadlines are short (fractions of a second) so nothing waits long; each test waits for the server's own
reply or close. The trickling clients pace their bytes with sleeps: that pace is the scenario, not a
synchronisation. The accounting tests give real `Connection`s the peer address the accounting should see
(`peer_host`), because loopback offers no two IPv6 addresses in one /64.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from postoffice.net.listener import (
    Connection,
    ConnectionLimits,
    Evicted,
    ListenerGroup,
    ListenerSpec,
    LoginTimeout,
    ReadTimeout,
)
from postoffice.net.tls import TlsContexts, generate_self_signed

SPEC = ListenerSpec("test", "lines", "127.0.0.1", 0, "none")
WAIT = 10.0  # the longest any step may take; the deadlines under test are far shorter


# -- a line server on a real ListenerGroup -------------------------------------------------------------------


async def line_session(conn: Connection, command_timeout: float) -> None:
    """Answers every line "ok <line>"; "login" logs in, "flood" writes 32 MiB. Says why it stopped."""
    buffer = b""
    try:
        while True:
            data = await conn.read(command_timeout)
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line == b"login":
                    conn.mark_logged_in()
                if line == b"flood":
                    await conn.write(b"x" * (32 << 20))
                await conn.write(b"ok " + line[:20] + b"\n")
    except LoginTimeout:
        await conn.write(b"login timeout\n")
        raise
    except ReadTimeout:
        await conn.write(b"timeout\n")


@contextlib.asynccontextmanager
async def line_server(
    command_timeout: float,
    *,
    login_timeout: float | None = None,
    min_data_rate: float = 500.0,
    tls: TlsContexts | None = None,
    ended: list[BaseException] | None = None,
) -> AsyncIterator[int]:
    group = ListenerGroup(
        (lambda: tls.server_context) if tls is not None else (lambda: None), min_data_rate=min_data_rate
    )

    async def handle(conn: Connection) -> None:
        try:
            await line_session(conn, command_timeout)
        except BaseException as exc:
            if ended is not None:
                ended.append(exc)
            raise

    async def refuse(conn: Connection, reason: str) -> None:
        raise AssertionError(reason)

    spec = ListenerSpec("test", "lines", "127.0.0.1", 0, "implicit" if tls is not None else "none")
    await group.bind(spec, handle, refuse, ConnectionLimits("test", 50, 50), login_timeout=login_timeout)
    try:
        yield group.bound["test"][1]
    finally:
        group.stop_accepting()
        await group.wait_closed(5)


async def line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), WAIT)


def test_a_line_trickled_byte_by_byte_meets_its_deadline() -> None:
    """Issue 9: the SMTP timeout was per read, so one byte every few seconds kept a session forever."""

    async def scenario() -> None:
        async with line_server(0.5) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            sent = 0

            async def trickle() -> None:
                nonlocal sent
                for _ in range(40):  # 4 s for the whole line, 0.1 s between bytes
                    writer.write(b"x")
                    await writer.drain()
                    sent += 1
                    await asyncio.sleep(0.1)
                writer.write(b"\n")

            trickler = asyncio.create_task(trickle())
            try:
                assert await line(reader) == b"timeout\n"
                assert sent < 40
            finally:
                trickler.cancel()
                writer.close()

    asyncio.run(scenario())


def test_each_answered_command_gets_a_deadline_of_its_own() -> None:
    async def scenario() -> None:
        async with line_server(0.5) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for n in range(6):  # 1.2 s in all, more than one deadline, each line well within its own
                writer.write(f"line {n}\n".encode())
                assert await line(reader) == f"ok line {n}\n".encode()
                await asyncio.sleep(0.2)
            writer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(("rate", "expected"), [(2000.0, b"ok xxxxxxxxxxxxxxxxxxxx\n"), (0.0, b"timeout\n")])
def test_bytes_received_extend_the_deadline_at_the_minimum_data_rate(rate: float, expected: bytes) -> None:
    """A long upload that keeps coming (1000 bytes every 0.1 s for 2.5 s, deadline 1 s) is not cut off when
    1000 bytes earn 0.5 s; with no credit for bytes it meets the deadline."""

    async def scenario() -> None:
        async with line_server(1.0, min_data_rate=rate) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answer: asyncio.Task[bytes] = asyncio.create_task(line(reader))
            for _ in range(25):
                if answer.done():
                    break
                writer.write(b"x" * 1000)
                await writer.drain()
                await asyncio.sleep(0.1)
            writer.write(b"\n")
            assert await answer == expected
            writer.close()

    asyncio.run(scenario())


def test_the_login_deadline_ends_a_session_that_has_not_logged_in_and_spares_one_that_has() -> None:
    async def scenario() -> None:
        async with line_server(60.0, login_timeout=0.3) as port:
            user_reader, user_writer = await asyncio.open_connection("127.0.0.1", port)
            user_writer.write(b"login\n")
            assert await line(user_reader) == b"ok login\n"
            idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
            assert await line(idle_reader) == b"login timeout\n"
            assert await asyncio.wait_for(idle_reader.read(), WAIT) == b""
            # the user connected before the idle one, so its login deadline has passed too
            user_writer.write(b"ping\n")
            assert await line(user_reader) == b"ok ping\n"
            for writer in (user_writer, idle_writer):
                writer.close()

    asyncio.run(scenario())


def test_the_login_deadline_ends_a_write_to_a_client_that_does_not_read() -> None:
    async def scenario() -> None:
        ended: list[BaseException] = []
        async with line_server(60.0, login_timeout=0.3, ended=ended) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"flood\n")  # and never read the 32 MiB
            # the server closes the connection once the login deadline passes, not after the write timeout
            while await asyncio.wait_for(reader.read(1 << 20), WAIT):
                pass
            writer.close()
        assert [type(exc) for exc in ended] == [LoginTimeout]

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    generate_self_signed("localhost", cert, key)
    return cert, key


def test_the_login_deadline_ends_a_tls_handshake_that_never_starts(tls_pair: tuple[Path, Path]) -> None:
    """An implicit-TLS connection that sends no ClientHello used to be held for the 30 s handshake timeout."""

    async def scenario() -> None:
        async with line_server(60.0, login_timeout=0.3, tls=TlsContexts(*tls_pair)) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
            writer.close()

    asyncio.run(scenario())


# -- the accounting ------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def connections() -> AsyncIterator[Callable[[str], Awaitable[Connection]]]:
    """Makes real connections to a loopback server that never sends, seen as coming from a given address."""
    accepted: list[asyncio.StreamWriter] = []

    async def on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(on_accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    made: list[Connection] = []

    async def connection(peer: str) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = Connection(reader, writer, SPEC, lambda: None, asyncio.Event())
        conn.peer_host = peer
        made.append(conn)
        return conn

    try:
        yield connection
    finally:
        for conn in made:
            await conn.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def waiting(conn: Connection) -> asyncio.Task[bytes]:
    """`conn` waiting for its client (nothing ever comes)."""
    task = asyncio.create_task(conn.read(60))
    await asyncio.sleep(0)  # one turn of the loop: the read is now waiting
    assert conn.evictable or conn.logged_in
    return task


async def evicted(task: asyncio.Task[bytes]) -> bool:
    """The read ended with Evicted (the eviction ends it on the next turn of the loop)."""
    try:
        await asyncio.wait_for(task, WAIT)
    except Evicted:
        return True
    return False


def test_the_per_client_cap_counts_an_ipv6_64_as_one_client() -> None:
    async def scenario() -> None:
        async with connections() as connection:
            limits = ConnectionLimits("test", 100, 2)
            first, second = await connection("2001:db8:1:2::a"), await connection("2001:db8:1:2::b")
            first.mark_logged_in()
            second.mark_logged_in()
            for conn in (first, second):
                assert limits.admit(conn) is None
            # another address of the same /64 is the same client; nothing to evict: refused
            same = await connection("2001:db8:1:2:ffff::1")
            assert limits.admit(same) == "too many connections from your address"
            limits.leave(same)
            other = await connection("2001:db8:1:3::1")
            assert limits.admit(other) is None
            # IPv4 counts per address, and an IPv4-mapped peer is that IPv4 address
            assert limits.admit(await connection("192.0.2.1")) is None
            assert limits.admit(await connection("::ffff:192.0.2.1")) is None
            assert limits.admit(await connection("192.0.2.1")) == "too many connections from your address"
            assert limits.admit(await connection("192.0.2.2")) is None

    asyncio.run(scenario())


def test_a_client_at_its_cap_makes_room_by_closing_its_own_oldest_pre_login_connection() -> None:
    async def scenario() -> None:
        async with connections() as connection:
            limits = ConnectionLimits("test", 100, 2)
            old, newer = await connection("2001:db8:1:2::a"), await connection("2001:db8:1:2::b")
            for conn in (old, newer):
                assert limits.admit(conn) is None
            old_read, newer_read = await waiting(old), await waiting(newer)
            assert limits.admit(await connection("2001:db8:1:2::c")) is None
            with pytest.raises(Evicted):
                await asyncio.wait_for(old_read, WAIT)
            assert not newer_read.done()
            newer_read.cancel()

    asyncio.run(scenario())


def test_the_global_cap_evicts_the_oldest_of_the_client_with_most_pre_login_connections() -> None:
    """Issue 9: 500 idle connections from 25 addresses made every new client get 421 / BYE."""

    async def scenario() -> None:
        async with connections() as connection:
            limits = ConnectionLimits("test", 5, 10)
            heavy = [await connection("192.0.2.1") for _ in range(3)]
            light = await connection("192.0.2.2")
            user = await connection("192.0.2.3")
            user.mark_logged_in()
            for conn in (*heavy, light, user):
                assert limits.admit(conn) is None
            reads = {conn: await waiting(conn) for conn in (*heavy, light, user)}

            async def newcomer() -> str | None:
                return limits.admit(await connection("198.51.100.1"))

            # 192.0.2.1 holds the most pre-login connections: its oldest go first
            assert await newcomer() is None
            assert await evicted(reads[heavy[0]])
            assert await newcomer() is None
            assert await evicted(reads[heavy[1]])
            # 192.0.2.1 and 192.0.2.2 hold one each now: the older connection goes
            assert await newcomer() is None
            assert await evicted(reads[heavy[2]])
            assert await newcomer() is None
            assert await evicted(reads[light])
            # the newcomers are not waiting on their clients yet, and the user has logged in: no room
            assert await newcomer() == "too many connections"
            assert not reads[user].done()
            assert limits.evictions == 4
            reads[user].cancel()

    asyncio.run(scenario())
