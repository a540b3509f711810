"""IMAP load generator: one account whose INBOX holds N messages of about 4 KiB, then timings of the commands
a client sends to such a mailbox (one client), and a mixed workload of several concurrent clients.

Fills the store through the store API before any server starts (distinct messages: 200 senders, realistic
headers, a third multipart/alternative, one in seven multipart/mixed with a small attachment, 70 % \\Seen, a
rare word in 7 messages), then starts the IMAP server in a separate process (bench/imap_server_process.py:
`serve_imap` on loopback, ephemeral ports, a real store, TLS and Authenticator) and measures with raw asyncio
sockets (imaplib would cost more than the server):

- one client, one connection, after a warm-up pass: SELECT INBOX; UID FETCH 1:* (FLAGS); FETCH 1:* (ENVELOPE);
  FETCH n BODY[] of messages that are \\Seen already, and of unseen ones (the server sets \\Seen first);
  SEARCH FROM <a sender of 50 messages>; SEARCH TEXT <the rare word>. Median and best of `--runs` runs each.
- `--clients` concurrent clients, each on its own connection looping over SELECT INBOX, FETCH of 20 ENVELOPEs,
  FETCH BODY.PEEK[] of 3 messages, STORE +FLAGS/-FLAGS (\\Flagged), SEARCH FROM, NOOP for `--seconds`;
  commands/s over all clients (median of `--mixed-runs` runs) and server CPU per command.
- with `--profile`: SELECT, the two FETCH 1:*, unseen BODY[], both SEARCHes and the mixed workload again, each
  against a fresh server process under cProfile (thread CPU time, every thread, from after the login and a
  warm-up command), and the top functions per item for the event loop and for the store's threads.

Everything runs on 127.0.0.1 in a temporary directory and is bounded: every command has a timeout.

    .venv/bin/python bench/imap_load.py [--messages 10000] [--runs 5] [--clients 8] [--seconds 10]
                                        [--mixed-runs 3] [--tls] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email.utils
import io
import os
import pstats
import random
import re
import shutil
import signal
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from postoffice.directory.passwords import hash_password
from postoffice.message import parse_message
from postoffice.net.tls import generate_self_signed
from postoffice.store import MailStore, open_store

USER = "demo@example.test"
PASSWORD = "bench-secret-pw"
RARE_WORD = "xylophonist"
SERVER_SCRIPT = Path(__file__).resolve().parent / "imap_server_process.py"
COMMAND_TIMEOUT = 120.0
#: Functions every command passes through, left out of the cumulative-time lists.
SESSION_PLUMBING = {"on_connect", "serve_imap", "run", "_loop", "_event", "_run_command", "_dispatch"}

FIRST = ["ada", "alan", "grace", "edsger", "barbara", "donald", "radia", "ken", "margaret", "dennis"]
LAST = ["lovelace", "turing", "hopper", "dijkstra", "liskov", "knuth", "perlman", "thompson", "hamilton"]
DOMAINS = ["example.org", "mail.example.net", "lists.example.com", "corp.example"]
SYLLABLES = ["ka", "lo", "mi", "ra", "tu", "ne", "so", "vi", "de", "pa", "zo", "gu", "ri", "fe", "bo"]


# ------------------------------------------------------------------------------------------ the mailbox


def sender(k: int) -> tuple[str, str]:
    """Display name and address of sender k (0..199); addresses are distinct as substrings too."""
    first, last = FIRST[k % len(FIRST)], LAST[(k // len(FIRST)) % len(LAST)]
    return f"{first.title()} {last.title()}", f"{first}.{last}.s{k:03d}@{DOMAINS[k % len(DOMAINS)]}"


def words_line(rng: random.Random, words: list[str], count: int) -> str:
    return " ".join(rng.choice(words) for _ in range(count))


def make_message(
    rng: random.Random, words: list[str], n: int, size: int, *, conversations: bool = False
) -> bytes:
    """Message n of the bench. With `conversations`, messages come in conversations of four in a row
    (4g, 4g+1, 4g+2, 4g+3: an original and three replies, each naming the ones before)."""
    name, address = sender(n % 200)
    date = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=50 * n)
    subject = ("Re: " if n % 4 == 0 else "") + words_line(rng, words, rng.randint(3, 8))
    if conversations:
        subject = ("Re: " if n % 4 else "") + words_line(random.Random(n // 4), words, 5)
    lines = [
        f"Return-Path: <{address}>",
        f"Received: from mx.{address.split('@')[1]} (mx.{address.split('@')[1]} [192.0.2.{n % 250 + 1}])",
        f"\tby mail.example.test with ESMTPS id {n:08x}; {email.utils.format_datetime(date)}",
        f'From: "{name}" <{address}>',
        f"To: Demo User <{USER}>",
    ]
    if n % 5 == 0:
        lines.append(f"Cc: {sender((n + 17) % 200)[1]}, {sender((n + 91) % 200)[1]}")
    lines += [
        f"Subject: {subject}",
        f"Date: {email.utils.format_datetime(date)}",
        f"Message-ID: <{n}.{rng.getrandbits(48):012x}@{address.split('@')[1]}>",
    ]
    if conversations and n % 4:
        parents = [f"<{p}.conversation@bench.test>" for p in range(n - n % 4, n)]
        lines[-1] = f"Message-ID: <{n}.conversation@bench.test>"
        lines += [f"In-Reply-To: {parents[-1]}", f"References: {' '.join(parents)}"]
    elif conversations:
        lines[-1] = f"Message-ID: <{n}.conversation@bench.test>"
    elif n % 4 == 0 and n > 0:
        lines.append(f"In-Reply-To: <{n - 1}.parent@{address.split('@')[1]}>")
    lines += ["MIME-Version: 1.0", "X-Mailer: Bench Mail 1.0"]
    head_size = sum(len(line) + 2 for line in lines) + 2

    def text(budget: int) -> str:
        out: list[str] = []
        used = 0
        while used < budget:
            line = words_line(rng, words, 10) + "\r\n"
            out.append(line)
            used += len(line)
        if n % 1500 == 777:  # the rare word: 7 messages in 10,000
            out.insert(len(out) // 2, f"the {RARE_WORD} played on\r\n")
        return "".join(out)

    boundary = f"=_bench_{n:06d}"
    if n % 7 == 3:
        attachment = rng.randbytes(900)
        encoded = base64.encodebytes(attachment).decode().replace("\n", "\r\n")
        lines.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        body = (
            f"This is a multi-part message in MIME format.\r\n--{boundary}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{text(size - head_size - len(encoded) - 400)}--{boundary}\r\n"
            f'Content-Type: application/pdf; name="report-{n}.pdf"\r\n'
            "Content-Transfer-Encoding: base64\r\n"
            f'Content-Disposition: attachment; filename="report-{n}.pdf"\r\n\r\n'
            f"{encoded}--{boundary}--\r\n"
        )
    elif n % 3 == 0:
        plain = text((size - head_size - 450) // 2)
        html = "<html><body><p>" + plain.replace("\r\n", "</p>\r\n<p>") + "</p></body></html>\r\n"
        lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        body = (
            f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{plain}"
            f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}--{boundary}--\r\n"
        )
    else:
        lines.append("Content-Type: text/plain; charset=utf-8")
        body = text(size - head_size - 40)
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def vocabulary(rng: random.Random, count: int) -> list[str]:
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


async def fill(store_path: Path, messages: int, size: int) -> tuple[int, float]:
    """Deliver the messages through the store API; (total bytes, seconds)."""
    rng = random.Random(42)
    words = vocabulary(rng, 2000)
    store = open_store(store_path)
    total = 0
    started = time.perf_counter()
    try:
        await store.add_domain("example.test")
        account = await store.add_account(USER, hash_password(PASSWORD))
        total = await deliver_mailbox(store, account.id, rng, words, messages, size)
    finally:
        await store.close()
    return total, time.perf_counter() - started


async def deliver_mailbox(
    store: MailStore,
    account_id: int,
    rng: random.Random,
    words: list[str],
    messages: int,
    size: int,
    *,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    conversations: bool = False,
) -> int:
    """Deliver `messages` of this bench's messages to the account's INBOX, 70 % of them \\Seen; the octets."""
    total = 0
    for start in range(0, messages, batch_size):
        batch = [
            make_message(rng, words, n, size, conversations=conversations)
            for n in range(start, min(start + batch_size, messages))
        ]
        total += sum(len(raw) for raw in batch)
        await asyncio.gather(
            *(
                store.deliver(
                    io.BytesIO(raw),
                    parse_message(io.BytesIO(raw)),
                    [account_id],
                    flags=("\\Seen",) if (start + i) % 10 < 7 else (),
                )
                for i, raw in enumerate(batch)
            )
        )
        if progress is not None:
            progress(start)
    return total


# ------------------------------------------------------------------------------------------- the server


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    ports: dict[str, int]
    log: Path

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def start_profiling(self) -> None:
        """Signal a server started with --profile to start; give it a moment to act on the signal."""
        self.proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(0.2)

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 60)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode


async def start_server(
    root: Path, profile: Path | None = None, wrapper: Sequence[str] = (), startup: float = 60.0
) -> Server:
    """The server process on `root`'s store; `wrapper`: a command it runs under (bench/imap_instructions.py:
    valgrind), `startup` seconds to wait for its ports."""
    log = root / ("server-profiled.log" if profile else "server.log")
    command = [
        *wrapper,
        sys.executable,
        str(SERVER_SCRIPT),
        "--store",
        str(root / "mail.sqlite3"),
        "--cert",
        str(root / "cert.pem"),
        "--key",
        str(root / "key.pem"),
    ]
    if profile is not None:
        command += ["--profile", str(profile)]
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE, stderr=stderr)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), startup)
    except TimeoutError:
        line = b""
    match = re.match(rb"ports imap=(\d+) imaps=(\d+)", line)
    if match is None:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"the IMAP server did not start: {line!r}\n{log.read_text()[-2000:]}")
    return Server(proc, {"imap": int(match.group(1)), "imaps": int(match.group(2))}, log)


# ------------------------------------------------------------------------------------------- the client


class ImapError(Exception):
    pass


class Client:
    """A minimal IMAP client: one command at a time, responses read until the tagged line (literals skipped
    over by their announced size, so message data is never scanned for line ends)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.counter = 0
        self.buffer = bytearray()

    @classmethod
    async def connect(cls, server: Server, context: ssl.SSLContext | None) -> Client:
        port = server.ports["imaps" if context else "imap"]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None, limit=1 << 22
        )
        client = cls(reader, writer)
        greeting = await reader.readline()  # nothing else is sent before the first command
        if not greeting.startswith(b"* OK"):
            raise ImapError(f"greeting {greeting!r}")
        await client.command(f'LOGIN "{USER}" "{PASSWORD}"')
        return client

    async def command(self, text: str) -> list[bytes]:
        """Send one command; the untagged response lines (literal data left out). ImapError unless OK."""
        self.counter += 1
        tag = b"b%d" % self.counter
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        return await asyncio.wait_for(self._responses(tag), COMMAND_TIMEOUT)

    async def _responses(self, tag: bytes) -> list[bytes]:
        """Read in large chunks and split lines with bytes.find: asyncio's readline costs more per line than
        the server spends on a FETCH FLAGS response line, and would be what is measured."""
        lines: list[bytes] = []
        prefix = tag + b" "
        buf = self.buffer
        pos = 0
        pending = b""  # the start of a response interrupted by a literal
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                del buf[:pos]
                pos = 0
                chunk = await self.reader.read(1 << 20)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                buf += chunk
                continue
            line = pending + bytes(buf[pos : end + 2])
            if line.endswith(b"}\r\n"):  # a literal, then the rest of the same response
                start = line.rfind(b"{")
                size = int(line[start + 1 : -3].rstrip(b"+"))
                while len(buf) < end + 2 + size:
                    chunk = await self.reader.read(1 << 20)
                    if not chunk:
                        raise ConnectionError("server closed the connection inside a literal")
                    buf += chunk
                pending = line[:start]
                pos = end + 2 + size
                continue
            pending = b""
            pos = end + 2
            if line.startswith(prefix):
                del buf[:pos]
                if line[len(prefix) : len(prefix) + 2] != b"OK":
                    raise ImapError(line.decode(errors="replace").strip())
                return lines
            lines.append(line)

    async def logout(self) -> None:
        try:
            await self.command("LOGOUT")
        except (ConnectionError, ImapError):
            pass
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


def search_numbers(lines: list[bytes]) -> list[int]:
    for line in lines:
        if line.startswith(b"* SEARCH"):
            return [int(x) for x in line.split()[2:]]
    return []


# ------------------------------------------------------------------------------------------ workloads


@dataclass
class Workload:
    """What the single-client items need to know about the mailbox (found through IMAP, not assumed)."""

    exists: int = 0
    seen: list[int] = field(default_factory=list)
    unseen: list[int] = field(default_factory=list)
    from_needle: str = sender(42)[1]


async def discover(client: Client) -> Workload:
    work = Workload()
    for line in await client.command("SELECT INBOX"):
        if line.endswith(b" EXISTS\r\n"):
            work.exists = int(line.split()[1])
    work.seen = search_numbers(await client.command("SEARCH SEEN"))
    work.unseen = search_numbers(await client.command("SEARCH UNSEEN"))
    return work


def single_items(work: Workload, runs: int) -> list[tuple[str, list[str], int]]:
    """(label, commands, how many of the first ones are warm-up): one warm-up run, then `runs` timed runs;
    every run sends the same commands except unseen BODY[], which needs a message not fetched before."""
    seen = [work.seen[i * len(work.seen) // 5] for i in range(5)]
    unseen = [work.unseen[(i * 37) % len(work.unseen)] for i in range(runs + 1)]
    return [
        ("SELECT INBOX", ["SELECT INBOX"] * (runs + 1), 1),
        ("UID FETCH 1:* (FLAGS)", ["UID FETCH 1:* (FLAGS)"] * (runs + 1), 1),
        ("FETCH 1:* (ENVELOPE)", ["FETCH 1:* (ENVELOPE)"] * (runs + 1), 1),
        ("FETCH n BODY[] (5 n, \\Seen)", [f"FETCH {seen[i % 5]} BODY[]" for i in range(5 * (runs + 1))], 5),
        ("FETCH n BODY[] (n unseen: sets \\Seen)", [f"FETCH {u} BODY[]" for u in unseen], 1),
        (f"SEARCH FROM {work.from_needle}", [f"SEARCH FROM {work.from_needle}"] * (runs + 1), 1),
        (f"SEARCH TEXT {RARE_WORD}", [f"SEARCH TEXT {RARE_WORD}"] * (runs + 1), 1),
        ("NOOP", ["NOOP"] * (runs + 1), 1),
    ]


@dataclass
class Timing:
    label: str
    times: list[float]
    responses: int
    server_cpu: float  # server process CPU seconds over the counted runs (10 ms clock ticks)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1000

    @property
    def best_ms(self) -> float:
        return min(self.times) * 1000


async def time_single(
    server: Server, client: Client, label: str, commands: list[str], warmups: int
) -> Timing:
    """The first `warmups` commands are not counted (page cache, SQLite cache)."""
    times: list[float] = []
    responses = 0
    cpu_before = 0.0
    for i, text in enumerate(commands):
        if i == warmups:
            cpu_before = server.cpu_seconds()
        started = time.perf_counter()
        lines = await client.command(text)
        elapsed = time.perf_counter() - started
        if i >= warmups:
            times.append(elapsed)
            responses = len(lines)
    return Timing(label, times, responses, server.cpu_seconds() - cpu_before)


@dataclass
class MixedTally:
    commands: int = 0
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def add(self, kind: str, seconds: float) -> None:
        self.commands += 1
        self.latencies.setdefault(kind, []).append(seconds)


async def mixed_client(client: Client, seed: int, exists: int, deadline: float, tally: MixedTally) -> None:
    rng = random.Random(seed)
    flagged = False

    async def run(kind: str, text: str) -> None:
        started = time.perf_counter()
        await client.command(text)
        tally.add(kind, time.perf_counter() - started)

    try:
        while time.monotonic() < deadline:
            await run("SELECT", "SELECT INBOX")
            first = rng.randint(1, max(1, exists - 19))
            await run("FETCH ENVELOPE x20", f"FETCH {first}:{first + 19} (FLAGS ENVELOPE)")
            for _ in range(3):
                await run("FETCH BODY.PEEK[]", f"FETCH {rng.randint(1, exists)} BODY.PEEK[]")
            flagged = not flagged
            await run("STORE", f"STORE {rng.randint(1, exists)} {'+' if flagged else '-'}FLAGS (\\Flagged)")
            await run("SEARCH FROM", f"SEARCH FROM {sender(rng.randrange(200))[1]}")
            await run("NOOP", "NOOP")
    finally:
        await client.logout()


async def time_mixed(
    server: Server,
    context: ssl.SSLContext | None,
    clients: int,
    seconds: float,
    exists: int,
    seed: int,
    connected: Callable[[list[Client]], Awaitable[None]] | None = None,
) -> dict[str, object]:
    """The clients log in first (not counted), then run the loop for `seconds`."""
    connections = await asyncio.gather(*(Client.connect(server, context) for _ in range(clients)))
    if connected is not None:
        await connected(connections)
    tally = MixedTally()
    cpu0 = server.cpu_seconds()
    started = time.monotonic()
    await asyncio.gather(
        *(
            mixed_client(client, seed * 100 + i, exists, started + seconds, tally)
            for i, client in enumerate(connections)
        )
    )
    elapsed = time.monotonic() - started
    cpu = server.cpu_seconds() - cpu0
    return {
        "rate": tally.commands / elapsed,
        "commands": tally.commands,
        "elapsed": elapsed,
        "cpu_us": cpu * 1e6 / max(tally.commands, 1),
        "p50_ms": {k: statistics.median(v) * 1000 for k, v in tally.latencies.items()},
    }


# -------------------------------------------------------------------------------------------- profiles


def top_functions(stats_path: Path, limit: int) -> list[str]:
    """The functions with the most own CPU time (tottime), with their cumulative time and call counts."""
    stats = pstats.Stats(str(stats_path))
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in entries.values()) or 1.0
    rows = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:limit]
    out = []
    for (filename, line, name), (_, calls, tt, ct, _) in rows:
        where = filename
        for marker in ("site-packages/", "src/", "lib/python3.11/"):
            if marker in where:
                where = where.split(marker, 1)[1]
        out.append(
            f"    {tt * 1000:9.1f} ms {tt * 100 / total:5.1f} %  cum {ct * 1000:9.1f} ms  {calls:>8}  "
            f"{name} ({where}:{line})"
        )
    return out


def top_postoffice_cumulative(stats_path: Path, limit: int) -> list[str]:
    stats = pstats.Stats(str(stats_path))
    entries = stats.stats  # type: ignore[attr-defined]
    rows = [kv for kv in entries.items() if "/postoffice/" in kv[0][0] and kv[0][2] not in SESSION_PLUMBING]
    rows.sort(key=lambda kv: kv[1][3], reverse=True)
    return [
        f"    cum {ct * 1000:9.1f} ms  {calls:>8}  {name} ({filename.split('src/', 1)[-1]}:{line})"
        for (filename, line, name), (_, calls, _, ct, _) in rows[:limit]
    ]


async def profile_item(
    root: Path,
    label: str,
    body: Callable[[Server], Awaitable[None]],
    limit: int,
) -> None:
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    path = root / f"profile-{slug}.prof"
    server = await start_server(root, profile=path)
    try:
        await body(server)
    finally:
        exit_code = await server.stop()
    if exit_code != 0:
        raise RuntimeError(f"profiled server exit {exit_code}:\n{server.log.read_text()[-2000:]}")
    print_profile(label, path, limit)


def print_profile(label: str, path: Path, limit: int) -> None:
    """The profiles the stopped server wrote: CPU by thread, top functions."""
    print(f"\n== profile: {label} (server CPU by thread, cProfile with time.thread_time) ==")
    loop_path, threads_path = Path(f"{path}.loop"), Path(f"{path}.threads")
    for name, stats_path in (("event loop thread", loop_path), ("store threads", threads_path)):
        if not stats_path.exists():
            continue
        total = sum(v[2] for v in pstats.Stats(str(stats_path)).stats.values())  # type: ignore[attr-defined]
        print(f"  {name}: {total * 1000:.0f} ms CPU; top by own time:")
        print("\n".join(top_functions(stats_path, limit)))
    if loop_path.exists():
        print("  postoffice functions by cumulative time (event loop):")
        print("\n".join(top_postoffice_cumulative(loop_path, limit)))


async def run_profiles(
    root: Path, context: ssl.SSLContext | None, work: Workload, args: argparse.Namespace
) -> None:
    def repeat(commands: list[str]) -> Callable[[Server], Awaitable[None]]:
        async def body(server: Server) -> None:
            client = await Client.connect(server, context)
            try:
                await client.command("SELECT INBOX")
                await client.command(commands[0])  # warm-up (caches), not profiled
                await server.start_profiling()
                for text in commands[1:]:
                    await client.command(text)
            finally:
                await client.logout()

        return body

    async def mixed(server: Server) -> None:
        async def warm_up_then_start(clients: list[Client]) -> None:
            await clients[0].command("SELECT INBOX")
            await clients[0].command(f"SEARCH FROM {work.from_needle}")  # one-time costs (case-fold table)
            await server.start_profiling()

        await time_mixed(
            server, context, args.clients, args.profile_seconds, work.exists, 99, warm_up_then_start
        )

    unseen = work.unseen[-41:]  # not fetched by the timed runs; the first one is the warm-up
    items: list[tuple[str, Callable[[Server], Awaitable[None]]]] = [
        ("SELECT INBOX x10", repeat(["SELECT INBOX"] * 11)),
        ("UID FETCH 1:* (FLAGS) x5", repeat(["UID FETCH 1:* (FLAGS)"] * 6)),
        ("FETCH 1:* (ENVELOPE) x3", repeat(["FETCH 1:* (ENVELOPE)"] * 4)),
        ("FETCH n BODY[] unseen x20", repeat([f"FETCH {u} BODY[]" for u in unseen[:21]])),
        (f"SEARCH FROM {work.from_needle} x10", repeat([f"SEARCH FROM {work.from_needle}"] * 11)),
        (f"SEARCH TEXT {RARE_WORD} x10", repeat([f"SEARCH TEXT {RARE_WORD}"] * 11)),
        (f"mixed workload, {args.clients} clients, {args.profile_seconds:.0f} s", mixed),
    ]
    for label, body in items:
        await profile_item(root, label, body, args.profile_top)


# ---------------------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="postoffice-imap-bench-"))
    try:
        generate_self_signed("localhost", root / "cert.pem", root / "key.pem")
        total, seconds = await fill(root / "mail.sqlite3", args.messages, args.size)
        print(
            f"filled INBOX of {USER}: {args.messages} messages, {total / args.messages:.0f} B average, "
            f"{total / 2**20:.1f} MiB, in {seconds:.1f} s",
            flush=True,
        )
        context = ssl.create_default_context(cafile=str(root / "cert.pem")) if args.tls else None
        transport = "imaps (TLS)" if args.tls else "imap (plaintext, allow_plaintext_auth)"
        server = await start_server(root)
        try:
            client = await Client.connect(server, context)
            work = await discover(client)
            print(
                f"server: bench/imap_server_process.py, {transport}; EXISTS {work.exists}, "
                f"{len(work.seen)} \\Seen, {len(work.unseen)} unseen",
                flush=True,
            )
            print(f"\none client, median of {args.runs} runs after a warm-up run:")
            print(
                "| command | untagged responses | median ms | best ms | server CPU ms/command |\n"
                "|---|---|---|---|---|"
            )
            for label, commands, warmups in single_items(work, args.runs):
                timing = await time_single(server, client, label, commands, warmups)
                cpu_ms = timing.server_cpu * 1000 / len(timing.times)
                print(
                    f"| {label} | {timing.responses} | {timing.median_ms:.2f} | {timing.best_ms:.2f} "
                    f"| {cpu_ms:.1f} |",
                    flush=True,
                )
            await client.logout()
            print(
                f"\nmixed workload: {args.clients} clients, {args.mixed_runs} runs of {args.seconds:.0f} s:"
            )
            results = []
            for i in range(args.mixed_runs):
                r = await time_mixed(server, context, args.clients, args.seconds, work.exists, seed=i)
                results.append(r)
                p50 = r["p50_ms"]
                assert isinstance(p50, dict)
                latencies = ", ".join(f"{k} {v:.1f}" for k, v in sorted(p50.items()))
                print(
                    f"  run {i + 1}: {r['rate']:,.0f} commands/s ({r['commands']} in {r['elapsed']:.1f} s), "
                    f"server CPU {r['cpu_us']:.0f} us/command; p50 ms: {latencies}",
                    flush=True,
                )
            rates = [float(r["rate"]) for r in results]  # type: ignore[arg-type]
            print(f"  median: {statistics.median(rates):,.0f} commands/s")
        finally:
            print(f"server exit: {await server.stop()}")
        if args.profile:
            await run_profiles(root, context, work, args)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--size", type=int, default=4096, help="approximate message size in octets")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per single-client command")
    parser.add_argument("--clients", type=int, default=8, help="clients of the mixed workload")
    parser.add_argument("--seconds", type=float, default=10.0, help="per mixed-workload run")
    parser.add_argument("--mixed-runs", type=int, default=3)
    parser.add_argument("--tls", action="store_true", help="implicit TLS (imaps) instead of plaintext")
    parser.add_argument("--profile", action="store_true", help="also profile the server per item")
    parser.add_argument("--profile-seconds", type=float, default=5.0, help="mixed workload under cProfile")
    parser.add_argument("--profile-top", type=int, default=12, help="functions listed per profile")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (store, profiles)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
