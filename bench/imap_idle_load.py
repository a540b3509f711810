"""IMAP idle connections: the server memory one idle IMAP connection costs, and how fast a new message reaches
thousands of IDLE clients.

Starts a real `postoffice run` process on a fresh data directory (`postoffice init`, loopback, ephemeral
ports; the [imap] connection caps raised above N; `allow_plaintext_auth` on, so that the plaintext port can be
measured), with one account whose INBOX receives `--messages` messages over SMTP (the server's port 25
listener). Then, with raw asyncio sockets:

1. one warm-up connection: LOGIN, SELECT INBOX, IDLE (it stays idle); the server's memory is measured
   (/proc/PID/status VmRSS and /proc/PID/smaps_rollup Pss);
2. N more connections (`--connections`, default 2000; `--tls`: implicit TLS on the imaps port), `--parallel`
   of them opening at a time, each LOGIN, (with `--rev2`: ENABLE IMAP4rev2,) SELECT INBOX, IDLE until
   "+ idling"; once all are idle the memory is measured again: the growth divided by N is what one idle
   connection costs (each TLS handshake in flight also holds a 256 KiB buffer for a moment, and the allocator
   may keep that peak: more `--parallel`, more memory that is not per idle connection);
3. one message delivered over SMTP; the time from the end of its DATA until every connection (the warm-up one
   too) has read "* n EXISTS", and the server CPU that took;
4. DONE and LOGOUT on every connection; the memory once they have closed.

Both processes need a descriptor per connection (the server one more per client): the bench raises its own
soft RLIMIT_NOFILE to the hard limit, `postoffice run` does the same for itself, and the bench stops with a
message when the hard limit is too low for N.

With `--tracemalloc` the server runs under tracemalloc (8 frames) and writes a snapshot on SIGUSR2; the bench
takes one at step 1 and one at step 2 and prints the allocation sites that grew most, per connection (RSS
numbers of such a run are inflated by tracemalloc's own bookkeeping: use them for where, not how much).

Every wait is bounded by a timeout. Prints a markdown table.

    .venv/bin/python bench/imap_idle_load.py [--connections 2000] [--tls] [--messages 20] [--parallel 50]
                                             [--rev2] [--tracemalloc] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import resource
import shutil
import signal
import ssl
import statistics
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

USER = "demo@example.test"
PASSWORD = "idle-bench-secret-pw"
POSTOFFICE = str(Path(sys.executable).parent / "postoffice")
STEP_TIMEOUT = 60.0  # one command of one connection
PHASE_TIMEOUT = 600.0  # opening, notifying or closing all connections
SNAPSHOT_ENV = "POSTOFFICE_BENCH_SNAPSHOT"
#: The server under tracemalloc: SIGUSR2 writes a snapshot to $POSTOFFICE_BENCH_SNAPSHOT (renamed into place).
TRACEMALLOC_BOOT = """
import os, signal, sys, tracemalloc
def _dump(signum, frame):
    path = os.environ["POSTOFFICE_BENCH_SNAPSHOT"]
    tracemalloc.take_snapshot().dump(path + ".tmp")
    os.replace(path + ".tmp", path)
signal.signal(signal.SIGUSR2, _dump)
from postoffice.cli import main
sys.exit(main(sys.argv[1:]))
"""


# ------------------------------------------------------------------------------------------ the server


def set_option(text: str, section: str, key: str, value: str) -> str:
    """Replace `key = ...` inside `[section]` of the generated config (which names every key)."""
    out: list[str] = []
    current = ""
    done = False
    for line in text.splitlines(keepends=True):
        header = re.match(r"^\[([^\]]+)\]", line)
        if header:
            current = header.group(1)
        elif current == section and re.match(rf"^{re.escape(key)}\s*=", line):
            line = f"{key} = {value}\n"
            done = True
        out.append(line)
    if not done:
        raise RuntimeError(f"no {key} in [{section}] of the generated config")
    return "".join(out)


def run_cli(*args: str, stdin: str | None = None) -> str:
    import subprocess

    proc = subprocess.run([POSTOFFICE, *args], input=stdin, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"postoffice {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout


def make_data_dir(root: Path, connections: int) -> Path:
    """`postoffice init` on loopback, every port ephemeral, IMAP caps above `connections`; the config path."""
    run_cli(
        "init",
        "--data-dir",
        str(root),
        "--domain",
        "example.test",
        "--hostname",
        "localhost",
        "--address",
        "127.0.0.1",
    )
    config = root / "postoffice.toml"
    text = config.read_text()
    text = re.sub(r"(?m)^port = \d+", "port = 0", text)
    cap = str(connections + 100)
    text = set_option(text, "imap", "max_connections", cap)
    text = set_option(text, "imap", "max_connections_per_ip", cap)
    text = set_option(text, "auth", "allow_plaintext_auth", "true")
    config.write_text(text)
    run_cli("--config", str(config), "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
    return config


@dataclass
class Memory:
    rss_kib: int
    pss_kib: int
    hwm_kib: int


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    ports: dict[str, int]
    log: Path
    snapshot: Path | None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def memory(self) -> Memory:
        status = Path(f"/proc/{self.pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
        hwm = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
        try:
            rollup = Path(f"/proc/{self.pid}/smaps_rollup").read_text()
            pss = int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.MULTILINE).group(1))  # type: ignore[union-attr]
        except (OSError, AttributeError):
            pss = -1
        return Memory(rss, pss, hwm)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fd_limit(self) -> int:
        for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return 1 << 62 if soft == "unlimited" else int(soft)
        return -1

    async def take_snapshot(self, name: str) -> tracemalloc.Snapshot:
        assert self.snapshot is not None
        self.snapshot.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR2)
        async with asyncio.timeout(PHASE_TIMEOUT):
            # The server process writes it in its own time: no event crosses processes, so poll the file
            while not self.snapshot.exists():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        kept = self.snapshot.with_name(name)
        self.snapshot.replace(kept)
        return tracemalloc.Snapshot.load(str(kept))

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 120)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode


async def start_server(root: Path, config: Path, use_tracemalloc: bool) -> Server:
    log = root / "server.log"
    env = dict(os.environ)
    snapshot: Path | None = None
    if use_tracemalloc:
        snapshot = root / "snapshot.tracemalloc"
        env[SNAPSHOT_ENV] = str(snapshot)
        command = [sys.executable, "-X", "tracemalloc=8", "-c", TRACEMALLOC_BOOT]
    else:
        command = [POSTOFFICE]
    command += ["--config", str(config), "run"]
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env
        )
    assert proc.stdout is not None
    line = b""
    try:
        async with asyncio.timeout(60):
            while not line.startswith(b"postoffice ready:"):
                line = await proc.stdout.readline()
                if not line:
                    break
    except TimeoutError:
        line = b""
    if not line.startswith(b"postoffice ready:"):
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        raise RuntimeError(f"the server did not start: {line!r}\n{log.read_text()[-3000:]}")
    ports: dict[str, int] = {}
    for item in line.decode().split(":", 1)[1].split():
        name, _, where = item.partition("=")
        ports[name] = int(where.rpartition(":")[2])
    return Server(proc, ports, log, snapshot)


# ------------------------------------------------------------------------------------------- SMTP


def make_message(n: int) -> bytes:
    return (
        f"From: Sender {n} <sender{n}@example.org>\r\nTo: Demo <{USER}>\r\n"
        f"Subject: idle bench message {n}\r\n"
        f"Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <idle-bench-{n}@example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "".join(f"Line {i} of message {n}: nothing to see here.\r\n" for i in range(40))
    ).encode()


async def smtp_reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    lines: list[str] = []
    while True:
        line = (await reader.readline()).decode(errors="replace")
        if not line:
            raise ConnectionError(f"SMTP server closed the connection after {lines!r}")
        lines.append(line.rstrip())
        if len(line) < 4 or line[3] != "-":
            return int(line[:3]), "\n".join(lines)


async def smtp_deliver(port: int, messages: list[bytes]) -> tuple[float, float]:
    """Deliver over one SMTP session; (perf_counter when the last message's final "." was sent, when its 250
    arrived)."""
    async with asyncio.timeout(STEP_TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = replied = 0.0
        try:

            async def expect(code: int, command: bytes | None = None) -> None:
                if command is not None:
                    writer.write(command)
                got, text = await smtp_reply(reader)
                if got != code:
                    raise RuntimeError(f"SMTP {command!r}: expected {code}, got {text}")

            await expect(220)
            await expect(250, b"EHLO bench.example.org\r\n")
            for raw in messages:
                await expect(250, b"MAIL FROM:<sender@example.org>\r\n")
                await expect(250, f"RCPT TO:<{USER}>\r\n".encode())
                await expect(354, b"DATA\r\n")
                writer.write(raw + b".\r\n")
                sent = time.perf_counter()
                await expect(250)
                replied = time.perf_counter()
            await expect(221, b"QUIT\r\n")
        finally:
            writer.close()
    return sent, replied


# ------------------------------------------------------------------------------------------- IMAP


class ImapFailure(Exception):
    pass


class IdleConnection:
    """One client: LOGIN, SELECT INBOX, IDLE; then waits for EXISTS; then DONE and LOGOUT."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.exists = 0

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext | None, rev2: bool = False) -> IdleConnection:
        async with asyncio.timeout(STEP_TIMEOUT):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
            )
            conn = cls(reader, writer)
            greeting = await reader.readline()
            if not greeting.startswith(b"* OK"):
                raise ImapFailure(f"greeting {greeting!r}")
            await conn.command(b"a", f'LOGIN "{USER}" "{PASSWORD}"')
            if rev2:  # no \\Recent: the session does not claim recent messages on every change
                await conn.command(b"e", "ENABLE IMAP4rev2")
            for line in await conn.command(b"b", "SELECT INBOX"):
                match = re.match(rb"\* (\d+) EXISTS", line)
                if match:
                    conn.exists = int(match.group(1))
            writer.write(b"c IDLE\r\n")
            while True:
                line = await conn.line()
                if line.startswith(b"+ "):
                    return conn
                if line.startswith(b"c "):
                    raise ImapFailure(f"IDLE refused: {line!r}")

    async def line(self) -> bytes:
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("the server closed the connection")
        return line

    async def command(self, tag: bytes, text: str) -> list[bytes]:
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        lines: list[bytes] = []
        while True:
            line = await self.line()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise ImapFailure(f"{text.split()[0]}: {line!r}")
                return lines
            lines.append(line)

    async def wait_exists(self, count: int) -> float:
        """Read until "* n EXISTS" with n >= count; the perf_counter when it arrived."""
        while True:
            line = await self.line()
            match = re.match(rb"\* (\d+) EXISTS", line)
            if match and int(match.group(1)) >= count:
                self.exists = int(match.group(1))
                return time.perf_counter()

    async def finish(self) -> None:
        """DONE, LOGOUT, close. The IDLE's tagged OK, the BYE and LOGOUT's OK are read."""
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                self.writer.write(b"DONE\r\nd LOGOUT\r\n")
                while not (await self.line()).startswith(b"d OK"):
                    pass
        finally:
            self.writer.close()
            try:
                async with asyncio.timeout(STEP_TIMEOUT):
                    await self.writer.wait_closed()
            except (ConnectionError, ssl.SSLError, TimeoutError):
                pass


async def open_all(
    count: int, port: int, context: ssl.SSLContext | None, parallel: int, rev2: bool
) -> list[IdleConnection]:
    semaphore = asyncio.Semaphore(parallel)
    opened: list[IdleConnection] = []

    async def one() -> None:
        async with semaphore:
            opened.append(await IdleConnection.open(port, context, rev2))
            if len(opened) % 500 == 0:
                print(f"  {len(opened)} connections idle", file=sys.stderr, flush=True)

    try:
        async with asyncio.timeout(PHASE_TIMEOUT):
            async with asyncio.TaskGroup() as group:
                for _ in range(count):
                    group.create_task(one())
    except BaseException:
        for conn in opened:
            conn.writer.close()
        raise
    return opened


# ------------------------------------------------------------------------------------------ the run


def raise_own_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"{needed} file descriptors are needed (one per connection on each side, plus some), but the "
            f"hard limit RLIMIT_NOFILE is {hard}: raise it (ulimit -Hn, limits.conf, LimitNOFILE=) or pass "
            f"--connections {max(hard - 200, 1)}"
        )
    target = hard if hard != resource.RLIM_INFINITY else max(needed, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Result:
    mode: str
    connections: int
    open_seconds: float
    before: Memory
    idle: Memory
    after_logout: Memory
    first_ms: float
    median_ms: float
    last_ms: float
    smtp_250_ms: float
    notify_cpu_ms: float

    @property
    def rss_per_connection(self) -> float:
        return (self.idle.rss_kib - self.before.rss_kib) / self.connections

    @property
    def pss_per_connection(self) -> float:
        return (self.idle.pss_kib - self.before.pss_kib) / self.connections


def mib(kib: int) -> str:
    return f"{kib / 1024:,.1f} MiB"


def print_table(result: Result) -> None:
    print()
    print(
        "| mode | idle connections | server RSS: 1 connection / all idle / after LOGOUT | RSS per idle "
        "connection | PSS per idle connection | login+SELECT+IDLE of all | new message: EXISTS on every "
        "connection (first / median / last) | server CPU to notify all |"
    )
    print("|---|---|---|---|---|---|---|---|")
    memory = " / ".join(mib(m.rss_kib) for m in (result.before, result.idle, result.after_logout))
    rate = result.connections / result.open_seconds
    print(
        f"| {result.mode} | {result.connections:,} | {memory} | {result.rss_per_connection:.1f} KiB | "
        f"{result.pss_per_connection:.1f} KiB | {result.open_seconds:.1f} s ({rate:,.0f}/s) | "
        f"{result.first_ms:.0f} / {result.median_ms:.0f} / {result.last_ms:.0f} ms "
        f"(SMTP 250 at {result.smtp_250_ms:.0f} ms) | {result.notify_cpu_ms:.0f} ms |"
    )
    print()
    verdict = "within" if result.rss_per_connection <= 64 else "OVER"
    print(f"Goal: at most 64 KiB per idle connection: {verdict} ({result.rss_per_connection:.1f} KiB, RSS).")


def print_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, connections: int) -> None:
    stats = after.compare_to(before, "lineno")
    total = sum(stat.size_diff for stat in stats)
    print(f"\ntracemalloc: Python allocations grew {total / connections / 1024:.1f} KiB per connection")
    print("\n| KiB per connection | blocks per connection | where |\n|---|---|---|")
    for stat in stats[:25]:
        if stat.size_diff <= 0:
            break
        frame = stat.traceback[0]
        print(
            f"| {stat.size_diff / connections / 1024:.2f} | {stat.count_diff / connections:.1f} | "
            f"{frame.filename}:{frame.lineno} |"
        )
    print("\nLargest growth by call stack (most recent call first):")
    for stat in after.compare_to(before, "traceback")[:5]:
        print(f"\n{stat.size_diff / connections / 1024:.2f} KiB per connection:")
        for line in stat.traceback.format(most_recent_first=True)[:12]:
            print(f"    {line}")


async def run(args: argparse.Namespace, root: Path) -> Result:
    config = make_data_dir(root, args.connections)
    server = await start_server(root, config, args.tracemalloc)
    connections: list[IdleConnection] = []
    try:
        needed = args.connections + 100
        if server.fd_limit() < needed:
            raise SystemExit(
                f"the server's file descriptor limit is {server.fd_limit()}, {needed} are needed: the "
                "machine's hard limit is too low for this many connections"
            )
        await smtp_deliver(server.ports["smtp"], [make_message(n) for n in range(args.messages)])
        context: ssl.SSLContext | None = None
        if args.tls:
            context = ssl.create_default_context(cafile=str(root / "tls" / "cert.pem"))
        port = server.ports["imaps" if args.tls else "imap"]

        warm = await IdleConnection.open(port, context, args.rev2)
        connections.append(warm)
        if warm.exists != args.messages:
            raise ImapFailure(f"INBOX holds {warm.exists} messages, expected {args.messages}")
        await asyncio.sleep(1)  # let the server settle (not synchronisation: only the memory reading waits)
        before = server.memory()
        snapshot_before = await server.take_snapshot("before.tracemalloc") if args.tracemalloc else None

        started = time.perf_counter()
        connections += await open_all(args.connections, port, context, args.parallel, args.rev2)
        open_seconds = time.perf_counter() - started
        await asyncio.sleep(1)
        idle = server.memory()
        snapshot_idle = await server.take_snapshot("idle.tracemalloc") if args.tracemalloc else None

        expected = args.messages + 1
        waiters = [asyncio.create_task(conn.wait_exists(expected)) for conn in connections]
        cpu_before = server.cpu_seconds()
        sent, replied = await smtp_deliver(server.ports["smtp"], [make_message(args.messages)])
        async with asyncio.timeout(PHASE_TIMEOUT):
            arrivals = await asyncio.gather(*waiters)
        notify_cpu = server.cpu_seconds() - cpu_before
        delays = sorted((arrival - sent) * 1000 for arrival in arrivals)

        async with asyncio.timeout(PHASE_TIMEOUT):
            await asyncio.gather(*(conn.finish() for conn in connections))
        connections.clear()
        await asyncio.sleep(1)
        after_logout = server.memory()
        if snapshot_before is not None and snapshot_idle is not None:
            print_growth(snapshot_before, snapshot_idle, args.connections)
    finally:
        for conn in connections:
            conn.writer.close()
        code = await server.stop()
        if code != 0:
            print(f"the server exited {code}; log: {server.log}", file=sys.stderr)
    return Result(
        mode=("implicit TLS (imaps)" if args.tls else "plaintext (imap)")
        + (", ENABLE IMAP4rev2" if args.rev2 else "")
        + (", under tracemalloc" if args.tracemalloc else ""),
        connections=args.connections,
        open_seconds=open_seconds,
        before=before,
        idle=idle,
        after_logout=after_logout,
        first_ms=delays[0],
        median_ms=statistics.median(delays),
        last_ms=delays[-1],
        smtp_250_ms=(replied - sent) * 1000,
        notify_cpu_ms=notify_cpu * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=2000, help="idle connections (default 2000)")
    parser.add_argument("--tls", action="store_true", help="implicit TLS (the imaps listener)")
    parser.add_argument("--messages", type=int, default=20, help="messages in the INBOX (default 20)")
    parser.add_argument("--parallel", type=int, default=50, help="connections opening at a time (default 50)")
    parser.add_argument("--rev2", action="store_true", help="clients ENABLE IMAP4rev2 (no \\Recent)")
    parser.add_argument("--tracemalloc", action="store_true", help="where the server's memory goes")
    parser.add_argument("--keep", type=Path, help="use this (new) directory and keep it, with server.log")
    args = parser.parse_args()
    fd_limit = raise_own_fd_limit(args.connections + 100)
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{args.connections} connections, descriptor limit {fd_limit}",
        file=sys.stderr,
    )
    if args.keep is not None:
        args.keep.mkdir(parents=True)
        result = asyncio.run(run(args, args.keep))
    else:
        root = Path(tempfile.mkdtemp(prefix="imap-idle-bench-"))
        try:
            result = asyncio.run(run(args, root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print_table(result)


if __name__ == "__main__":
    main()
