"""POP3 retrieval load generator: N concurrent clients, each on its own maildrop, log in (USER/PASS), UIDL,
then RETR every message one at a time (no DELE), QUIT, and start over until the time is up.

Starts its own server (a fresh data directory in a temporary folder, loopback, ephemeral ports,
`allow_plaintext_auth = true` so that the plaintext port can be measured), fills the maildrops through the
store API before the server starts (each message distinct), and prints for plaintext (pop3 port) and for
implicit TLS (pop3s): RETR/s over all clients, login latency p50/p99 (USER sent to "+OK Logged in", which
includes the argon2id verification and the maildrop snapshot) and server CPU per RETR.

    .venv/bin/python bench/pop3_load.py [--clients 1,8] [--messages 500] [--size 4096] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.harness import DataDir, ServerProcess, make_data_dir

from postoffice.message import parse_message
from postoffice.store import open_store


def make_message(size: int, n: int, to: str) -> bytes:
    head = (
        f"From: bench@remote.test\r\nTo: {to}\r\nSubject: pop3 bench {n}\r\n"
        f"Message-ID: <{n}.{to}@bench>\r\n\r\n"
    )
    line = f"{n:08d} the quick brown fox jumps over the lazy dog 0123456789.\r\n".encode()
    body = (line * (size // len(line) + 1))[: max(0, size - len(head))]
    return head.encode() + body.rstrip(b"\r\n") + b"\r\n"


async def fill(data: DataDir, users: list[str], messages: int, size: int) -> None:
    store = open_store(data.root / "store" / "mail.sqlite3")
    try:
        accounts = [await store.get_account(user) for user in users]

        async def one(account_id: int, address: str, n: int) -> None:
            raw = make_message(size, n, address)
            await store.deliver(io.BytesIO(raw), parse_message(io.BytesIO(raw)), [account_id])

        for account in accounts:
            assert account is not None
            for start in range(0, messages, 100):
                await asyncio.gather(
                    *(one(account.id, account.address, n) for n in range(start, min(messages, start + 100)))
                )
    finally:
        await store.close()


@dataclass
class Tally:
    retrs: int = 0
    logins: list[float] = field(default_factory=list)


async def client(
    port: int, context: ssl.SSLContext | None, user: str, password: str, deadline: float, tally: Tally
) -> None:
    while time.monotonic() < deadline:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None, limit=1 << 22
        )
        await reader.readline()
        start = time.perf_counter()
        writer.write(f"USER {user}\r\nPASS {password}\r\n".encode())
        await reader.readline()
        logged_in = await reader.readline()
        if not logged_in.startswith(b"+OK"):
            raise RuntimeError(f"login failed: {logged_in!r}")
        tally.logins.append(time.perf_counter() - start)
        writer.write(b"UIDL\r\n")
        uidl = await reader.readuntil(b"\r\n.\r\n")
        count = uidl.count(b"\r\n") - 2
        for number in range(1, count + 1):
            if time.monotonic() >= deadline:
                break
            writer.write(b"RETR %d\r\n" % number)
            reply = await reader.readuntil(b"\r\n.\r\n")
            if not reply.startswith(b"+OK"):
                raise RuntimeError(f"RETR failed: {reply[:100]!r}")
            tally.retrs += 1
        writer.write(b"QUIT\r\n")
        await reader.readline()
        writer.close()
        await writer.wait_closed()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    server: ServerProcess, data: DataDir, users: list[str], tls: bool, clients: int, seconds: float
) -> dict[str, float]:
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem")) if tls else None
    port = server.port("pop3s" if tls else "pop3")
    tally = Tally()
    assert server.proc is not None
    cpu0 = cpu_seconds(server.proc.pid)
    t0 = time.monotonic()
    await asyncio.gather(
        *(
            client(port, context, users[i], data.passwords[users[i]], t0 + seconds, tally)
            for i in range(clients)
        )
    )
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(server.proc.pid) - cpu0
    logins = sorted(tally.logins)
    return {
        "retrs": tally.retrs,
        "rate": tally.retrs / elapsed,
        "logins": len(logins),
        "login_p50_ms": statistics.median(logins) * 1000,
        "login_p99_ms": logins[min(len(logins) - 1, int(len(logins) * 0.99))] * 1000,
        "cpu_us": cpu * 1e6 / max(tally.retrs, 1),
        "elapsed": elapsed,
    }


async def run(args: argparse.Namespace) -> None:
    counts = [int(c) for c in args.clients.split(",")]
    users = [f"user{i}" for i in range(max(counts))]
    root = Path(tempfile.mkdtemp(prefix="postoffice-pop3-bench-"))
    try:
        data = make_data_dir(root / "data", users=tuple(users))
        users = [f"{u}@example.test" for u in users]
        config = data.config.read_text()
        data.config.write_text(
            re.sub(r"(?m)^allow_plaintext_auth = false$", "allow_plaintext_auth = true", config)
        )
        t = time.monotonic()
        await fill(data, users, args.messages, args.size)
        print(
            f"filled {len(users)} maildrops x {args.messages} x {args.size} B in {time.monotonic() - t:.1f} s"
        )
        server = ServerProcess(data).start()
        try:
            await measure(server, data, users, True, 1, 1.0)  # warm-up (page cache, TLS), not reported
            for tls in (False, True):
                for clients in counts:
                    r = await measure(server, data, users, tls, clients, args.seconds)
                    print(
                        f"{'pop3s' if tls else 'pop3 (plaintext)':>16} clients={clients}: "
                        f"{r['rate']:,.0f} RETR/s ({r['retrs']:.0f} in {r['elapsed']:.1f} s), "
                        f"login p50 {r['login_p50_ms']:.1f} ms p99 {r['login_p99_ms']:.1f} ms "
                        f"({r['logins']:.0f} logins), server CPU {r['cpu_us']:.0f} us/RETR",
                        flush=True,
                    )
        finally:
            print(f"server exit: {server.stop()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="1,8", help="comma-separated client counts to measure")
    parser.add_argument("--messages", type=int, default=500, help="messages per maildrop")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
