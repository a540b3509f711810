"""TLS connections of a `ListenerGroup` share one read buffer per event loop thread (net/listener.py, "Memory
per connection"), and sharing it mixes no bytes between connections."""

from __future__ import annotations

import asyncio
import hashlib
import random
import ssl
from pathlib import Path

import pytest

from postoffice.net.listener import Connection, ConnectionLimits, ListenerGroup, ListenerSpec
from postoffice.net.tls import TlsContexts, generate_self_signed

CLIENTS = 8
PAYLOAD = 512 * 1024  # per client, in both directions: many TLS records, several reads per connection


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    generate_self_signed("localhost", cert, key)
    return cert, key


async def echo_over_tls(cert: Path, key: Path) -> tuple[list[bool], set[int]]:
    """CLIENTS clients each send their own random bytes at once over implicit TLS; the server hashes what it
    read and echoes it. Per client: did both directions carry exactly its bytes; and the identities of the
    read buffers the server's TLS connections used."""
    tls = TlsContexts(cert, key)
    group = ListenerGroup(lambda: tls.server_context)
    buffers: set[int] = set()

    async def echo(conn: Connection) -> None:
        protocol = getattr(conn.writer.transport, "_ssl_protocol", None)
        buffers.add(id(getattr(protocol, "_ssl_buffer", None)))
        digest = hashlib.sha256()
        received = 0
        while received < PAYLOAD:
            data = await conn.read(30)
            if not data:
                return
            received += len(data)
            digest.update(data)
            await conn.write(data)
        await conn.write(digest.digest())

    async def refuse(conn: Connection, reason: str) -> None:
        raise AssertionError(reason)

    await group.bind(
        ListenerSpec("test", "echo", "127.0.0.1", 0, "implicit"), echo, refuse, ConnectionLimits("t", 50, 50)
    )
    port = group.bound["test"][1]
    client_context = ssl.create_default_context(cafile=str(cert))

    async def client(seed: int) -> bool:
        payload = random.Random(seed).randbytes(PAYLOAD)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
        )
        try:

            async def send() -> None:
                for start in range(0, PAYLOAD, 7000):  # odd sizes: records do not line up with reads
                    writer.write(payload[start : start + 7000])
                    await writer.drain()

            sending = asyncio.create_task(send())
            echoed = await reader.readexactly(PAYLOAD)
            digest = await reader.readexactly(32)
            await sending
            return echoed == payload and digest == hashlib.sha256(payload).digest()
        finally:
            writer.close()

    try:
        async with asyncio.timeout(60):
            results = await asyncio.gather(*(client(seed) for seed in range(CLIENTS)))
    finally:
        group.stop_accepting()
        await group.wait_closed(5)
    return results, buffers


def test_concurrent_tls_connections_share_one_read_buffer_without_mixing_bytes(
    pair: tuple[Path, Path],
) -> None:
    results, buffers = asyncio.run(echo_over_tls(*pair))
    assert results == [True] * CLIENTS
    assert len(buffers) == 1
