"""Submission load generator (port 587, STARTTLS + AUTH PLAIN) and outbound delivery through the queue.

Starts its own server per phase (a fresh data directory in a temporary folder, loopback, ephemeral ports, the
hourly sending limit raised out of the way) and, in a separate process, "the internet": an authoritative DNS
server (tests/support/dns_server.py) whose zone gives remote.test an MX on 127.0.0.2, and a minimal asyncio
SMTP sink listening there (STARTTLS offered, as most MX hosts do; it counts messages and keeps nothing).
The server's queue resolves and delivers to it as it would on the internet ([queue] nameservers, dns_port,
delivery_port).

Phases, each `--seconds` long with `--clients` concurrent clients and `--size`-byte messages (From, Date and
Message-ID present, as mail programs send them):
- local / persistent: every client does STARTTLS + AUTH once, then sends message after message (MAIL, RCPT,
  DATA pipelined) to a local recipient, as mail programs that batch do;
- local / per message: a new connection, STARTTLS, AUTH for every message, then QUIT;
- remote / persistent: as the first, to a recipient at remote.test: accepted into the queue, then delivered
  to the sink by the queue runner; the bench counts arrivals at the sink during the load and the time until
  the queue is empty after the clients stop;
- remote / per message: both of the above.
Before them, the sink alone is measured (plain SMTP from the bench's own clients) to show it is not the
bottleneck.

Printed per phase: accepted msg/s (250 replies to the final dot), p50/p99 latency (MAIL to the 250; connect
to the 250 for the per-message rows), server CPU ms per message (from /proc/PID/stat), the load generator's
own CPU and that of other processes (/proc/stat: the machine may be shared), and for the remote phases the
queue's delivered msg/s, its drain time and, per second, the sink's messages and connections and the server's
CPU. Then one markdown table.

    .venv/bin/python bench/submission_load.py [--clients 8] [--seconds 10] [--size 4096] [--phases all]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import multiprocessing
import os
import re
import shutil
import sqlite3
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.harness import DataDir, ServerProcess, make_data_dir

SENDER = "demo@example.test"
PASSWORD = "demo-secret-pw"
LOCAL_RCPT = "other@example.test"
REMOTE_RCPT = "bob@remote.test"
SINK_HOST = "127.0.0.2"
#: After the clients stop, how long the bench waits for the queue to empty before it gives up.
DRAIN_TIMEOUT = 60.0


# -- "the internet": DNS and a fast SMTP sink, in their own process ------------------------------------------


@dataclass
class SinkCounters:
    """Shared with the sink process: messages received, the last arrival (time.monotonic, which is
    the same clock in every process on Linux), connections accepted."""

    count: Synchronized[int]
    last: Synchronized[float]
    connections: Synchronized[int]

    @classmethod
    def create(cls, ctx: Any) -> SinkCounters:
        return cls(
            ctx.Value("q", 0, lock=False),
            ctx.Value("d", 0.0, lock=False),
            ctx.Value("q", 0, lock=False),
        )


async def _sink_session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: ssl.SSLContext, counters: SinkCounters
) -> None:
    """Enough ESMTP for the queue's client (it does not pipeline, but this would cope if it did)."""
    secure = False
    counters.connections.value += 1
    writer.write(b"220 sink.remote.test ESMTP\r\n")
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                starttls = b"" if secure else b"250-STARTTLS\r\n"
                writer.write(
                    b"250-sink.remote.test\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n250-8BITMIME\r\n"
                    + starttls
                    + b"250 ENHANCEDSTATUSCODES\r\n"
                )
            elif verb == b"STAR" and not secure:
                writer.write(b"220 2.0.0 go ahead\r\n")
                await writer.drain()
                await writer.start_tls(tls)
                secure = True
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                writer.write(b"250 2.0.0 ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await reader.readuntil(b"\r\n.\r\n")  # the whole body in one call
                now = time.monotonic()
                counters.count.value += 1
                counters.last.value = now
                writer.write(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"502 5.5.1 not here\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError):
        return
    finally:
        writer.close()


def run_internet(cert: str, key: str, counters: SinkCounters, ready: Any) -> None:
    """Child process: the DNS server (threads) and the SMTP sink (asyncio) until terminated."""
    from tests.support.dns_server import DnsServer, Zones

    async def main() -> None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        server = await asyncio.start_server(
            lambda r, w: _sink_session(r, w, tls, counters), SINK_HOST, 0, limit=64 * 1024 * 1024
        )
        port = server.sockets[0].getsockname()[1]
        zones = Zones(
            [
                ("remote.test.", "MX", "10 mx.remote.test."),
                ("mx.remote.test.", "A", SINK_HOST),
            ]
        )
        dns = DnsServer(zones).start()
        ready.send((port, dns.port))
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Internet:
    def __init__(self, root: Path) -> None:
        from postoffice.net.tls import generate_self_signed

        cert, key = root / "sink-cert.pem", root / "sink-key.pem"
        generate_self_signed("mx.remote.test", cert, key)
        ctx = multiprocessing.get_context("spawn")
        self.counters = SinkCounters.create(ctx)
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=run_internet, args=(str(cert), str(key), self.counters, child), daemon=True
        )
        self.proc.start()
        if not parent.poll(30):
            self.proc.kill()
            raise RuntimeError("the sink process did not start")
        self.smtp_port, self.dns_port = parent.recv()

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(10)


# -- the clients ---------------------------------------------------------------------------------------------


class SmtpError(RuntimeError):
    pass


async def expect(reader: asyncio.StreamReader, code: int, what: str) -> None:
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpError(f"{what}: server closed the connection")
        if line[3:4] != b"-":
            if int(line[:3]) != code:
                raise SmtpError(f"{what}: expected {code}, got {line.decode(errors='replace').strip()}")
            return


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


AUTH_PLAIN = b"AUTH PLAIN " + base64.b64encode(f"\0{SENDER}\0{PASSWORD}".encode()) + b"\r\n"


async def open_session(port: int, tls: ssl.SSLContext) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect, EHLO, STARTTLS, EHLO, AUTH PLAIN: what a mail program does before its first message."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await expect(reader, 220, "greeting")
    writer.write(b"EHLO bench.test\r\n")
    await expect(reader, 250, "EHLO")
    writer.write(b"STARTTLS\r\n")
    await expect(reader, 220, "STARTTLS")
    await writer.start_tls(tls)
    writer.write(b"EHLO bench.test\r\n")
    await expect(reader, 250, "EHLO after STARTTLS")
    writer.write(AUTH_PLAIN)
    await expect(reader, 235, "AUTH")
    return reader, writer


async def close_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"QUIT\r\n")
    with contextlib.suppress(OSError, SmtpError, TimeoutError):
        await asyncio.wait_for(expect(reader, 221, "QUIT"), 5)
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 5)


def make_message(size: int, recipient: str, n: int) -> bytes:
    head = (
        f"From: Demo <{SENDER}>\r\nTo: {recipient}\r\nSubject: bench {n}\r\n"
        f"Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{n}@bench.example.test>\r\n\r\n"
    )
    line = b"The quick brown fox jumps over the lazy dog 0123456789.\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head))]
    return head.encode() + body.rstrip(b"\r\n") + b"\r\n.\r\n"


async def transaction(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, recipient: str, message: bytes
) -> None:
    writer.write(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode())
    await expect(reader, 250, "MAIL")
    await expect(reader, 250, "RCPT")
    await expect(reader, 354, "DATA")
    writer.write(message)
    await expect(reader, 250, "end of data")


async def persistent_client(
    port: int, recipient: str, size: int, deadline: float, latencies: list[float], cid: int
) -> int:
    tls = client_tls()
    reader, writer = await open_session(port, tls)
    sent = 0
    while time.monotonic() < deadline:
        message = make_message(size, recipient, cid * 1_000_000 + sent)
        start = time.perf_counter()
        await transaction(reader, writer, recipient, message)
        latencies.append(time.perf_counter() - start)
        sent += 1
    await close_session(reader, writer)
    return sent


async def per_message_client(
    port: int, recipient: str, size: int, deadline: float, latencies: list[float], cid: int
) -> int:
    tls = client_tls()
    sent = 0
    while time.monotonic() < deadline:
        message = make_message(size, recipient, cid * 1_000_000 + sent)
        start = time.perf_counter()
        reader, writer = await open_session(port, tls)
        await transaction(reader, writer, recipient, message)
        latencies.append(time.perf_counter() - start)
        sent += 1
        await close_session(reader, writer)
    return sent


async def sink_capacity(internet: Internet, clients: int, seconds: float, size: int) -> dict[str, float]:
    """The sink alone, plain SMTP from this process's clients: its rate and CPU per message."""

    async def one(deadline: float) -> None:
        reader, writer = await asyncio.open_connection(SINK_HOST, internet.smtp_port)
        await expect(reader, 220, "sink greeting")
        writer.write(b"EHLO bench.test\r\n")
        await expect(reader, 250, "sink EHLO")
        message = make_message(size, REMOTE_RCPT, 0)
        while time.monotonic() < deadline:
            await transaction(reader, writer, REMOTE_RCPT, message)
        await close_session(reader, writer)

    before = internet.counters.count.value
    cpu0, t0 = cpu_seconds(internet.pid), time.monotonic()
    await asyncio.gather(*(one(t0 + seconds) for _ in range(clients)))
    elapsed, cpu = time.monotonic() - t0, cpu_seconds(internet.pid) - cpu0
    count = internet.counters.count.value - before
    return {"rate": count / elapsed, "cpu_us": cpu * 1e6 / max(count, 1), "cpu_share": cpu / elapsed}


# -- the server ----------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def system_busy_seconds() -> float:
    """CPU time all processes of the machine have used (/proc/stat: everything but idle and iowait): the
    machine may be shared, and what other processes use is not available to this benchmark."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def configure(data: DataDir, internet: Internet) -> None:
    settings = {
        "max_messages_per_hour": "100000000",  # the default 500/hour would stop the bench in a second
        "nameservers": '["127.0.0.1"]',
        "dns_port": str(internet.dns_port),
        "delivery_port": str(internet.smtp_port),
        "first_retry": "1",
        "max_retry_interval": "2",
        "connect_timeout": "5",
        "command_timeout": "30",
    }
    text = data.config.read_text()
    for key, value in settings.items():
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
        if count != 1:
            raise RuntimeError(f"no {key} in {data.config}")
    data.config.write_text(text)


def queue_length(data: DataDir) -> int:
    db = sqlite3.connect(f"file:{data.root / 'store' / 'mail.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return int(db.execute("SELECT count(*) FROM queue_messages").fetchone()[0])
    finally:
        db.close()


def stored_messages(data: DataDir) -> int:
    db = sqlite3.connect(f"file:{data.root / 'store' / 'mail.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        db.close()


@dataclass
class Phase:
    name: str
    remote: bool
    per_message: bool
    result: dict[str, float] = field(default_factory=dict)
    #: Per second from the start of the load: messages arriving at the sink, connections to it, server CPU.
    timeline: list[tuple[int, int, float]] = field(default_factory=list)


async def sample(internet: Internet, pid: int, timeline: list[tuple[int, int, float]]) -> None:
    """Once a second until cancelled: the sink's arrivals and connections, and the server's CPU seconds."""
    start = time.monotonic()
    sink = internet.counters
    count, connections, cpu = sink.count.value, sink.connections.value, cpu_seconds(pid)
    while True:
        await asyncio.sleep(start + len(timeline) + 1 - time.monotonic())
        now = sink.count.value, sink.connections.value, cpu_seconds(pid)
        timeline.append((now[0] - count, now[1] - connections, now[2] - cpu))
        count, connections, cpu = now


async def run_phase(
    args: argparse.Namespace, phase: Phase, internet: Internet, root: Path
) -> dict[str, float]:
    data = make_data_dir(root / phase.name.replace(" ", "-").replace("/", ""), users=("demo", "other"))
    configure(data, internet)
    server = ServerProcess(data).start()
    try:
        assert server.proc is not None
        pid, port = server.proc.pid, server.port("submission")
        # warm-up, not measured: the first AUTH runs argon2 (later ones hit the verified-password cache)
        warm_up = await persistent_client(port, LOCAL_RCPT, args.size, time.monotonic() + 0.5, [], 99)
        recipient = REMOTE_RCPT if phase.remote else LOCAL_RCPT
        client = per_message_client if phase.per_message else persistent_client
        sink0 = internet.counters.count.value
        connections0 = internet.counters.connections.value
        sink_cpu0 = cpu_seconds(internet.pid)
        phase.timeline = []
        sampler = asyncio.get_running_loop().create_task(sample(internet, pid, phase.timeline))
        latencies: list[float] = []
        cpu0, own0, busy0 = cpu_seconds(pid), time.process_time(), system_busy_seconds()
        t0 = time.monotonic()
        deadline = t0 + args.seconds
        counts = await asyncio.gather(
            *(client(port, recipient, args.size, deadline, latencies, i) for i in range(args.clients))
        )
        t1 = time.monotonic()
        cpu_load, own = cpu_seconds(pid) - cpu0, time.process_time() - own0
        sink_load = cpu_seconds(internet.pid) - sink_cpu0
        others = system_busy_seconds() - busy0 - cpu_load - own - sink_load
        total = sum(counts)
        lat = sorted(latencies)
        elapsed = t1 - t0
        result: dict[str, float] = {
            "accepted": total,
            "elapsed": elapsed,
            "rate": total / elapsed,
            "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[max(0, int(len(lat) * 0.99) - 1)] * 1000,
            "cpu_ms": cpu_load * 1000 / max(total, 1),
            "server_cpu_share": cpu_load / elapsed,
            "bench_cpu_share": own / elapsed,
            "other_cpu_share": max(others, 0.0) / elapsed,
        }
        if phase.remote:
            at_stop = internet.counters.count.value - sink0
            drained_at = None
            while time.monotonic() - t1 < DRAIN_TIMEOUT:
                if internet.counters.count.value - sink0 >= total and queue_length(data) == 0:
                    drained_at = time.monotonic()
                    break
                await asyncio.sleep(0.05)
            sampler.cancel()
            delivered = internet.counters.count.value - sink0
            last = internet.counters.last.value
            cpu_all = cpu_seconds(pid) - cpu0
            result.update(
                {
                    "delivered": delivered,
                    "delivered_during": at_stop,
                    "delivered_rate_during": at_stop / elapsed,
                    "drain_s": (drained_at - t1) if drained_at is not None else float("nan"),
                    "delivered_rate": delivered / max(last - t0, 1e-9),
                    "cpu_ms_total": cpu_all * 1000 / max(total, 1),
                    "sink_cpu_us": (cpu_seconds(internet.pid) - sink_cpu0) * 1e6 / max(delivered, 1),
                    "sink_cpu_share": (cpu_seconds(internet.pid) - sink_cpu0)
                    / max(time.monotonic() - t0, 1e-9),
                    "queue_left": queue_length(data),
                    "connections": internet.counters.connections.value - connections0,
                    "server_cpu_share_drain": (cpu_all - cpu_load) / max(time.monotonic() - t1, 1e-9),
                }
            )
            if drained_at is not None:
                result["delivered_rate_drain"] = (delivered - at_stop) / max(last - t1, 1e-9)
        else:
            sampler.cancel()
            result["stored"] = stored_messages(data) - warm_up
    finally:
        result_exit = server.stop()
    result["exit"] = result_exit
    return result


PHASES = {
    "local-persistent": Phase("local / persistent", remote=False, per_message=False),
    "local-per-message": Phase("local / per message", remote=False, per_message=True),
    "remote-persistent": Phase("remote / persistent", remote=True, per_message=False),
    "remote-per-message": Phase("remote / per message", remote=True, per_message=True),
}


def describe(phase: Phase) -> None:
    r = phase.result
    print(f"== {phase.name}: {r['accepted']:.0f} accepted in {r['elapsed']:.1f} s = {r['rate']:.0f} msg/s")
    print(
        f"   latency p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms;"
        f" server CPU {r['cpu_ms']:.2f} ms/message"
        f" ({r['server_cpu_share'] * 100:.0f} % of a core), load generator {r['bench_cpu_share'] * 100:.0f} %"
        f" of a core; other processes {r['other_cpu_share'] * 100:.0f} % of a core;"
        f" server exit {r['exit']:.0f}"
    )
    if "stored" in r:
        print(f"   stored in the local mailbox: {r['stored']:.0f}")
    if "delivered" in r:
        print(
            f"   queue: {r['delivered_during']:.0f} delivered while the clients ran "
            f"({r['delivered_rate_during']:.0f} msg/s), {r['delivered']:.0f} in all, "
            f"{r['delivered_rate']:.0f} msg/s from the first submission to the last arrival; "
            f"queue empty {r['drain_s']:.1f} s after the clients stopped"
            + (
                f" (drain at {r['delivered_rate_drain']:.0f} msg/s)"
                if "delivered_rate_drain" in r
                else f" (NOT drained: {r['queue_left']:.0f} left)"
            )
        )
        print(
            f"   server CPU including delivery: {r['cpu_ms_total']:.2f} ms per message; while draining "
            f"{r['server_cpu_share_drain'] * 100:.0f} % of a core; sink CPU {r['sink_cpu_us']:.0f} us per "
            f"message ({r['sink_cpu_share'] * 100:.0f} % of a core); "
            f"{r['connections']:.0f} connections to the sink"
        )
        seconds = " ".join(f"{n}/{c}/{cpu * 100:.0f}%" for n, c, cpu in phase.timeline)
        print(f"   per second, messages / connections at the sink / server CPU: {seconds}")


def table(phases: list[Phase], clients: int, sink: dict[str, float]) -> str:
    rows = [
        "| phase (clients) | accepted msg/s | p50 / p99 latency | server CPU per accepted message | "
        "queue delivered msg/s (while submitting / overall) | queue empty after the clients stop |",
        "|---|---|---|---|---|---|",
    ]
    for phase in phases:
        r = phase.result
        delivered, drain = "-", "-"
        if "delivered" in r:
            delivered = f"{r['delivered_rate_during']:.0f} / {r['delivered_rate']:.0f}"
            drain = f"{r['drain_s']:.1f} s" if "delivered_rate_drain" in r else "not drained"
        cpu = f"{r['cpu_ms']:.2f} ms"
        if "cpu_ms_total" in r:
            cpu += f" ({r['cpu_ms_total']:.2f} ms with delivery)"
        rows.append(
            f"| {phase.name} ({clients}) | {r['rate']:,.0f} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms "
            f"| {cpu} | {delivered} | {drain} |"
        )
    rows.append("")
    rows.append(
        f"Sink alone (plain SMTP, {clients} clients of this bench): {sink['rate']:,.0f} msg/s at "
        f"{sink['cpu_us']:.0f} us of sink CPU per message ({sink['cpu_share'] * 100:.0f} % of a core)."
    )
    return "\n".join(rows)


async def run(args: argparse.Namespace) -> None:
    names = list(PHASES) if args.phases == "all" else args.phases.split(",")
    unknown = [n for n in names if n not in PHASES]
    if unknown:
        raise SystemExit(f"unknown phase {', '.join(unknown)}; known: {', '.join(PHASES)}")
    phases = [PHASES[n] for n in names]
    root = Path(tempfile.mkdtemp(prefix="postoffice-bench-submission-"))
    internet = Internet(root)
    try:
        sink = await sink_capacity(internet, args.clients, 2.0, args.size)
        print(
            f"sink alone: {sink['rate']:.0f} msg/s, {sink['cpu_us']:.0f} us CPU per message "
            f"({sink['cpu_share'] * 100:.0f} % of a core)"
        )
        print(f"clients={args.clients} size={args.size} seconds={args.seconds:g}")
        for phase in phases:
            phase.result = await run_phase(args, phase, internet, root)
            describe(phase)
        print()
        print(table(phases, args.clients, sink))
    finally:
        internet.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--keep", action="store_true", help="keep the data directories and server logs")
    parser.add_argument(
        "--phases",
        default="all",
        help="'all' (the default) or a comma-separated list of: " + ", ".join(PHASES),
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
