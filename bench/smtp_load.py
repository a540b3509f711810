"""SMTP inbound load generator: N concurrent clients on persistent connections send fixed-size messages.

Starts its own server (a fresh data directory in a temporary folder, loopback, ephemeral ports), runs the load for a
bounded time, and prints: accepted messages/s (every accepted message is durable and visible in the mailbox, since
Postoffice stores at accept time), p50/p99 transaction latency, server CPU milliseconds per message, and fsyncs per
message (counted with `strace --seccomp-bpf -c` when strace is installed, else from the store's commit counter).

    .venv/bin/python bench/smtp_load.py [--clients 8] [--seconds 20] [--size 4096]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.harness import ServerProcess, make_data_dir  # noqa: E402


def make_message(size: int, n: int) -> bytes:
    head = f"From: bench@remote.test\r\nTo: demo@example.test\r\nSubject: bench {n}\r\nMessage-ID: <{n}@bench>\r\n\r\n"
    line = b"The quick brown fox jumps over the lazy dog 0123456789.\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head))]
    return head.encode() + body.rstrip(b"\r\n") + b"\r\n"


async def reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def client(port: int, size: int, deadline: float, latencies: list[float], cid: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reply(reader)
    writer.write(b"EHLO bench.test\r\n")
    await reply(reader)
    sent = 0
    while time.monotonic() < deadline:
        msg = make_message(size, cid * 1_000_000 + sent)
        start = time.perf_counter()
        writer.write(b"MAIL FROM:<bench@remote.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n")
        codes = [await reply(reader), await reply(reader), await reply(reader)]
        if codes != [250, 250, 354]:
            raise RuntimeError(f"unexpected replies {codes}")
        writer.write(msg + b".\r\n")
        if await reply(reader) != 250:
            raise RuntimeError("message not accepted")
        latencies.append(time.perf_counter() - start)
        sent += 1
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()
    return sent


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def child_pid(pid: int) -> int:
    """The server process itself when it runs under strace."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else pid


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="postoffice-bench-"))
    try:
        data = make_data_dir(root / "data", users=("demo",))
        strace = shutil.which("strace") if not args.no_strace else None
        wrapper = [strace, "-f", "--seccomp-bpf", "-c", "-e", "trace=fsync,fdatasync", "-o", str(root / "strace.txt")]
        server = ServerProcess(data, wrapper=wrapper if strace else None).start()
        assert server.proc is not None
        pid = child_pid(server.proc.pid) if strace else server.proc.pid
        # warm-up: one message, outside the measurement
        latencies: list[float] = []
        await client(server.port(), args.size, time.monotonic() + 0.5, [], 99)
        cpu0 = cpu_seconds(pid)
        t0 = time.monotonic()
        deadline = t0 + args.seconds
        counts = await asyncio.gather(
            *(client(server.port(), args.size, deadline, latencies, i) for i in range(args.clients))
        )
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(pid) - cpu0
        total = sum(counts)
        code = server.stop()
        stored = sqlite3.connect(data.root / "store" / "mail.sqlite3").execute("SELECT count(*) FROM messages")
        visible = stored.fetchone()[0]
        lat = sorted(latencies)
        print(f"clients={args.clients} size={args.size} seconds={elapsed:.1f} server-exit={code}")
        print(f"accepted: {total} messages, {total / elapsed:.0f} msg/s (stored and visible: {visible})")
        print(
            f"latency: p50 {statistics.median(lat) * 1000:.2f} ms, "
            f"p99 {lat[int(len(lat) * 0.99) - 1] * 1000:.2f} ms"
        )
        print(f"server CPU: {cpu * 1000 / max(total, 1):.2f} ms/message")
        log = server.log()
        if strace:
            fsyncs = 0
            for line in (root / "strace.txt").read_text().splitlines():
                parts = line.split()
                if parts and parts[-1] in ("fsync", "fdatasync"):
                    fsyncs += int(parts[3]) if len(parts) >= 6 else int(parts[-2])
            print(f"fsyncs: {fsyncs} for {visible} messages = {fsyncs / max(visible, 1):.3f} per message (strace)")
        for line in log.splitlines():
            if "store stats" in line:
                print(line.split(": ", 1)[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--no-strace", action="store_true", help="do not count fsyncs with strace")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
