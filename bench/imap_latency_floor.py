"""One-command latency beside Dovecot and beside the least a Python asyncio server can do, in one run.

Three servers answer the same single client (imap_load's `Client`, one connection, one command at a time,
plaintext on loopback), in turns of `--count` commands each, for `--rounds` rounds:

- "floor": an asyncio `Protocol` in its own process that answers from memory. It splits lines, reads the tag
  and the command name and writes a canned answer (for FETCH, a literal of 4,000 octets). It has no parser, no
  store, no session state and no timeouts. What it costs is the event loop, the socket calls and the
  interpreter: no Python server can answer faster.
- Dovecot (Debian's, Maildir; bench/dovecot_compare.py's mailbox and configuration, one imap process per
  connection).
- Postoffice (bench/imap_server_process.py on imap_load's store).

Timed commands: NOOP, and FETCH n BODY[] of messages that are \\Seen already (no flag change). Printed per
server and command: the median and best of all rounds in ms, and the server's CPU per command (the floor's and
Postoffice's process, Dovecot's process tree). The load generator's own CPU per command is printed too: the
client is the same Python for all three, so a difference between servers is the servers'.

    .venv/bin/python bench/imap_latency_floor.py [--messages 2000] [--count 2000] [--rounds 3]

Needs root and Dovecot (`apt-get install dovecot-imapd`), like bench/dovecot_compare.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dovecot_compare as dc
import imap_load as load
from postoffice.net.tls import generate_self_signed

FETCHED = (3, 7, 13, 21, 33)  # \Seen in imap_load's mailbox (n % 10 < 7 for message n - 1)
FLOOR_BODY = b"X" * 3998 + b"\r\n"


class _Floor(asyncio.Protocol):
    """The floor server's connection (see the module docstring)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""
        transport.write(b"* OK floor ready\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n")) >= 0:
            line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            tag, _, rest = line.partition(b" ")
            words = rest.split(b" ", 2)
            if words[0].upper() == b"FETCH" and len(words) > 1:
                self.transport.write(
                    b"* %s FETCH (BODY[] {%d}\r\n%s)\r\n%s OK FETCH completed\r\n"
                    % (words[1], len(FLOOR_BODY), FLOOR_BODY, tag)
                )
            else:
                self.transport.write(tag + b" OK completed\r\n")


async def serve_floor() -> None:
    server = await asyncio.get_running_loop().create_server(_Floor, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"ports imap={port} imaps={port}", flush=True)
    await asyncio.Event().wait()


async def start_floor(root: Path) -> load.Server:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve-floor", stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    match = re.match(rb"ports imap=(\d+)", line)
    if match is None:
        proc.kill()
        raise RuntimeError(f"the floor server did not start: {line!r}")
    return load.Server(proc, {"imap": int(match.group(1)), "imaps": 0}, root / "floor.log")


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def time_commands(
    server: load.Server, client: load.Client, commands: list[str]
) -> tuple[list[float], float, float]:
    """(latencies, server CPU seconds, client CPU seconds) of `commands`, one at a time."""
    times: list[float] = []
    cpu, mine = server.cpu_seconds(), client_cpu()
    for text in commands:
        started = time.perf_counter()
        await client.command(text)
        times.append(time.perf_counter() - started)
    return times, server.cpu_seconds() - cpu, client_cpu() - mine


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="postoffice-floor-"))
    servers: dict[str, load.Server] = {}
    try:
        root.chmod(0o755)  # noqa: ASYNC240 - Dovecot's mail processes (nobody) reach their home through it
        generate_self_signed("localhost", root / "cert.pem", root / "key.pem")
        await load.fill(root / "mail.sqlite3", args.messages, 4096)
        home = root / "home"
        dc.write_maildir(home / "Maildir", args.messages, 4096)
        account = pwd.getpwnam(dc.MAIL_USER)
        dc.chown_tree(home, account.pw_uid, account.pw_gid)
        (imap_port,) = dc.free_ports(1)
        ports = {"imap": imap_port, "imaps": 0}
        binary = dc.dovecot_binary()
        conf = dc.write_config(root, home, "maildir", ports, False)
        servers["floor"] = await start_floor(root)
        dovecot = await dc.start_dovecot(binary, conf, root, ports, None)
        servers[f"Dovecot {dc.dovecot_version(binary)}"] = dovecot
        servers["Postoffice"] = await load.start_server(root)
        clients = {name: await load.Client.connect(server, None) for name, server in servers.items()}
        for client in clients.values():
            await client.command("SELECT INBOX")
        kinds = {
            "NOOP": ["NOOP"] * args.count,
            "FETCH n BODY[]": [f"FETCH {FETCHED[i % len(FETCHED)]} BODY[]" for i in range(args.count)],
        }
        results: dict[tuple[str, str], list[tuple[list[float], float, float]]] = {}
        for name, client in clients.items():  # warm-up: caches, page cache, Dovecot's index
            for commands in kinds.values():
                await time_commands(servers[name], client, commands[: args.count // 4])
        for _round in range(args.rounds):
            for kind, commands in kinds.items():
                for name, client in clients.items():
                    results.setdefault((name, kind), []).append(
                        await time_commands(servers[name], client, commands)
                    )
        print(
            f"{args.rounds} rounds of {args.count} commands per server and command, {os.cpu_count()} CPUs\n\n"
            "| server | command | median ms | best ms | server CPU us/command | client CPU us/command |\n"
            "|---|---|---|---|---|---|"
        )
        for kind in kinds:
            for name in clients:
                runs = results[(name, kind)]
                times = [t for latencies, _cpu, _mine in runs for t in latencies]
                count = len(times)
                server_us = sum(cpu for _l, cpu, _m in runs) * 1e6 / count
                client_us = sum(mine for _l, _c, mine in runs) * 1e6 / count
                print(
                    f"| {name} | {kind} | {statistics.median(times) * 1000:.3f} | {min(times) * 1000:.3f} "
                    f"| {server_us:.0f} | {client_us:.0f} |"
                )
        for client in clients.values():
            await client.logout()
    finally:
        for server in servers.values():
            await server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--count", type=int, default=2000, help="commands per server, command and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=1800.0, help="for the whole run, in seconds")
    args = parser.parse_args()
    if args.serve_floor:
        asyncio.run(serve_floor())
        return
    if os.geteuid() != 0 or shutil.which("dovecot") is None:
        sys.exit("needs root and Dovecot (apt-get install dovecot-imapd)")

    async def bounded() -> None:
        await asyncio.wait_for(run(args), args.timeout)

    asyncio.run(bounded())


if __name__ == "__main__":
    main()
