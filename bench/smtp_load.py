"""SMTP inbound load generator: N concurrent clients on persistent connections send fixed-size messages.

Starts its own server (a fresh data directory in a temporary folder, loopback, ephemeral ports), runs the
load for a bounded time, and prints: accepted messages/s (every accepted message is durable and visible in
the mailbox, since Postoffice stores at accept time), p50/p99 transaction latency, server CPU milliseconds
per message (its worker processes included), and fsyncs per message (counted with `strace --seccomp-bpf -c`
when strace is installed, else from the store's commit counter).

    .venv/bin/python bench/smtp_load.py [--clients 8] [--seconds 20] [--size 4096] [--auth]

`--auth` runs the load twice, one run beside the other: with sender authentication off, then on
([mailauth] verify, docs/decisions/0054) against a DNS server on loopback in this process that publishes the
sender's SPF (passing for 127.0.0.1), DKIM key and DMARC record; the messages, the same in both runs, are
DKIM-signed (RSA-2048, signed before the clock starts). It prints both and the ratio of their rates;
`--rounds N` does that N times, alternating, and prints the median ratio (this machine's speed drifts by
10-20% within minutes: a ratio from one pair of runs is that noisy).

`--rspamd` does the same with the spam filter off, then on ([spam] rspamd_url, docs/decisions/0086): Debian's
rspamd started on loopback (tests/support/rspamd.py) scans every message; rspamd's own CPU per message is
printed too (it runs beside the server, on the same cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.harness import ServerProcess, make_data_dir

SIGNED: list[bytes] = []  # DKIM-signed messages, used in turn when --auth is on


def make_message(size: int, n: int) -> bytes:
    if SIGNED:
        return SIGNED[n % len(SIGNED)]
    return plain_message(size, n)


def plain_message(size: int, n: int) -> bytes:
    head = (
        f"From: bench@remote.test\r\nTo: demo@example.test\r\nSubject: bench {n}\r\n"
        f"Message-ID: <{n}@bench>\r\n\r\n"
    )
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


def tree_cpu_seconds(pid: int) -> float:
    """CPU of the process and of every process it started (the server's worker processes) until now."""
    total = cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                total += tree_cpu_seconds(int(child))
            except FileNotFoundError:  # it ended meanwhile
                pass
    return total


def child_pid(pid: int) -> int:
    """The server process itself when it runs under strace."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else pid


async def measure(args: argparse.Namespace, count_fsyncs: bool) -> dict[str, float]:
    """One run on a fresh data directory. With count_fsyncs the server runs under strace (which slows it
    down), so throughput is measured in a run without it."""
    root = Path(tempfile.mkdtemp(prefix="postoffice-bench-"))
    try:
        data = make_data_dir(root / "data", users=("demo",))
        if getattr(args, "rspamd_url", ""):
            text = data.config.read_text().replace('rspamd_url = ""', f'rspamd_url = "{args.rspamd_url}"')
            data.config.write_text(text)
        if args.dns_port:
            text = data.config.read_text()
            text = text.replace("verify = false", "verify = true")
            text = text.replace("nameservers = []", 'nameservers = ["127.0.0.1"]')
            text = re.sub(r"(?m)^dns_port = \d+$", f"dns_port = {args.dns_port}", text)
            if args.dkim_processes is not None:
                text = re.sub(r"(?m)^dkim_processes = \d+$", f"dkim_processes = {args.dkim_processes}", text)
            data.config.write_text(text)
        strace_out = root / "strace.txt"
        wrapper = None
        if count_fsyncs:
            strace = shutil.which("strace")
            if strace is None:
                return {}
            wrapper = [
                strace,
                "-f",
                "--seccomp-bpf",
                "-c",
                "-e",
                "trace=fsync,fdatasync",
                "-o",
                str(strace_out),
            ]
        server = ServerProcess(data, wrapper=wrapper).start()
        assert server.proc is not None
        pid = child_pid(server.proc.pid) if wrapper else server.proc.pid
        await client(server.port(), args.size, time.monotonic() + 0.5, [], 99)  # warm-up, not measured
        latencies: list[float] = []
        cpu0 = tree_cpu_seconds(pid)
        rspamd_pid = getattr(args, "rspamd_pid", 0)
        rspamd0 = tree_cpu_seconds(rspamd_pid) if rspamd_pid else 0.0
        own0 = time.process_time()
        t0 = time.monotonic()
        deadline = t0 + args.seconds
        counts = await asyncio.gather(
            *(client(server.port(), args.size, deadline, latencies, i) for i in range(args.clients))
        )
        elapsed = time.monotonic() - t0
        cpu = tree_cpu_seconds(pid) - cpu0
        rspamd_cpu = tree_cpu_seconds(rspamd_pid) - rspamd0 if rspamd_pid else 0.0
        own = time.process_time() - own0
        if wrapper:
            os.kill(pid, signal.SIGTERM)  # the server itself; strace then writes its summary and exits
        exit_code = server.stop()
        db = sqlite3.connect(data.root / "store" / "mail.sqlite3")
        visible = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        db.close()
        total = sum(counts)
        lat = sorted(latencies)
        result = {
            "accepted": total,
            "visible": visible,
            "elapsed": elapsed,
            "rate": total / elapsed,
            "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[max(0, int(len(lat) * 0.99) - 1)] * 1000,
            "cpu_ms": cpu * 1000 / max(total, 1),
            "generator_cpu": own / max(elapsed, 1e-9),
            "rspamd_cpu_ms": rspamd_cpu * 1000 / max(total, 1),
            "exit": exit_code,
        }
        if wrapper:
            fsyncs = 0
            for line in strace_out.read_text().splitlines():
                parts = line.split()
                if parts and parts[-1] in ("fsync", "fdatasync"):
                    fsyncs += int(parts[3]) if len(parts) >= 6 else int(parts[-2])
            result["fsyncs"] = fsyncs
        for line in server.log().splitlines():
            if "store stats" in line:
                for item in line.split(": ", 2)[-1].split():
                    key, _, value = item.partition("=")
                    if value.isdigit():
                        result[key] = int(value)
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def authenticated_sender(size: int) -> Any:
    """A DNS server publishing remote.test's SPF, DKIM key and DMARC record; fills SIGNED."""
    import base64

    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from tests.support.dns_server import DnsServer, Zones

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    quoted = " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200))
    zones = Zones(
        [
            ("remote.test.", "TXT", '"v=spf1 ip4:127.0.0.1 -all"'),
            ("bench._domainkey.remote.test.", "TXT", quoted),
            ("_dmarc.remote.test.", "TXT", '"v=DMARC1; p=reject"'),
        ],
        ttl=3600,
    )
    for n in range(200):
        raw = plain_message(size, n)
        SIGNED.append(bytes(dkim.sign(raw, b"bench", b"remote.test", pem)) + raw)
    return DnsServer(zones).start()


def report(r: dict[str, float], label: str) -> None:
    print(
        f"{label}accepted: {r['accepted']:.0f} messages, {r['rate']:.0f} msg/s; latency p50 "
        f"{r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms; server CPU {r['cpu_ms']:.2f} ms/message; "
        f"load generator (and its DNS server) CPU {r['generator_cpu']:.0%} of a core"
    )


async def with_rspamd(args: argparse.Namespace) -> None:
    """--rspamd: the filter off, then on, --rounds times (module docstring)."""
    from tests.support.rspamd import running_rspamd

    args.dns_port = 0
    ratios: list[float] = []
    with running_rspamd() as rspamd:
        for round_ in range(args.rounds):
            label = f"round {round_ + 1}, " if args.rounds > 1 else ""
            args.rspamd_url, args.rspamd_pid = "", 0
            off = await measure(args, count_fsyncs=False)
            report(off, f"{label}spam filter off: ")
            args.rspamd_url, args.rspamd_pid = rspamd.url, rspamd.pid
            on = await measure(args, count_fsyncs=False)
            report(on, f"{label}spam filter on:  ")
            ratio = on["rate"] / off["rate"]
            ratios.append(ratio)
            print(
                f"with rspamd: {ratio:.2f}x the rate, {on['cpu_ms'] / off['cpu_ms']:.2f}x the server CPU per "
                f"message, and rspamd's own CPU {on['rspamd_cpu_ms']:.2f} ms per message"
            )
    if len(ratios) > 1:
        listed = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"rate ratios: {listed}; median {statistics.median(ratios):.2f}x")


async def run(args: argparse.Namespace) -> None:
    if args.rspamd:
        await with_rspamd(args)
        return
    if args.auth:
        dns_server = authenticated_sender(args.size)
        ratios: list[float] = []
        try:
            for round_ in range(args.rounds):
                label = f"round {round_ + 1}, " if args.rounds > 1 else ""
                args.dns_port = 0  # the same signed messages, not checked
                off = await measure(args, count_fsyncs=False)
                report(off, f"{label}authentication off: ")
                args.dns_port = dns_server.port
                on = await measure(args, count_fsyncs=False)
                report(on, f"{label}authentication on:  ")
                ratio, cpu_ratio = on["rate"] / off["rate"], on["cpu_ms"] / off["cpu_ms"]
                ratios.append(ratio)
                print(
                    f"with authentication: {ratio:.2f}x the rate, {cpu_ratio:.2f}x the server CPU per message"
                )
        finally:
            dns_server.stop()
            SIGNED.clear()
        if len(ratios) > 1:
            listed = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"rate ratios: {listed}; median {statistics.median(ratios):.2f}x")
        return
    args.dns_port = 0
    r = await measure(args, count_fsyncs=False)
    print(f"clients={args.clients} size={args.size} seconds={r['elapsed']:.1f} server-exit={r['exit']:.0f}")
    print(
        f"accepted: {r['accepted']:.0f} messages, {r['rate']:.0f} msg/s "
        f"(stored and visible: {r['visible']:.0f})"
    )
    print(f"latency: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms")
    print(f"server CPU: {r['cpu_ms']:.2f} ms/message")
    print(f"store commits: {r['commits']:.0f} for {r['visible']:.0f} messages")
    if not args.no_strace:
        f = await measure(args, count_fsyncs=True)
        if f:
            print(
                f"fsyncs (second run, under strace, {f['rate']:.0f} msg/s): {f['fsyncs']:.0f} for "
                f"{f['visible']:.0f} messages = {f['fsyncs'] / max(f['visible'], 1):.3f} per message"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--no-strace", action="store_true", help="do not count fsyncs with strace")
    parser.add_argument("--auth", action="store_true", help="compare sender authentication off and on")
    parser.add_argument("--rspamd", action="store_true", help="compare the spam filter (rspamd) off and on")
    parser.add_argument(
        "--dkim-processes", type=int, help="[mailauth] dkim_processes with --auth (default: the server's)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --auth or --rspamd: off then on, this many times (the median ratio)",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
