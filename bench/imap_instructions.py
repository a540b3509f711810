"""Instructions per IMAP command, counted by valgrind (callgrind): a measure of the server's work that does
not move with the machine's load (the wall-clock and CPU figures of bench/imap_load.py vary up to twofold from
one day, or one minute, to the next; this count varies by well under 1 %). For comparing two versions of the
code: run this on each (e.g. one in a `git worktree`, with PYTHONPATH=<worktree>/src:<worktree>).

The INBOX of bench/imap_load.py (`--messages` of about 4 KiB), the server of bench/imap_server_process.py
started under `valgrind --tool=callgrind --instr-atstart=no` (plaintext, loopback), one client that logs in,
selects INBOX and sends `--warmup` commands, then turns counting on (`callgrind_control -i on`), sends
`--count` commands, and turns it off. Only user-space instructions of the server process are counted
(system calls are not), in every thread (the store's reader and writer threads too).

    .venv/bin/python bench/imap_instructions.py [--kind noop|body|store|flags] [--count 300] [--messages 500]

Needs valgrind (`apt-get install valgrind`). A run takes about a minute: Python under valgrind is some fifty
times slower, so timings printed here mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imap_load import Client, fill, start_server
from postoffice.net.tls import generate_self_signed

KINDS = {
    "noop": ["NOOP"],
    "body": ["FETCH 3 BODY[]", "FETCH 7 BODY[]"],  # \Seen after the warm-up: no flag change
    "store": ["STORE 5 +FLAGS (\\Flagged)", "STORE 5 -FLAGS (\\Flagged)"],
    "flags": ["UID FETCH 1:* (FLAGS)"],
}


async def instrumentation(pid: int, state: str) -> None:
    control = shutil.which("callgrind_control") or "callgrind_control"
    proc = await asyncio.create_subprocess_exec(
        control, "-i", state, str(pid), stdout=asyncio.subprocess.DEVNULL
    )
    if await proc.wait() != 0:
        raise RuntimeError(f"callgrind_control -i {state} failed")


def totals(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


async def run(args: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    root = Path(tempfile.mkdtemp(prefix="postoffice-instructions-"))
    try:
        generate_self_signed("localhost", root / "cert.pem", root / "key.pem")
        await fill(root / "mail.sqlite3", args.messages, 4096)
        out = root / "callgrind.out"
        wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
        server = await start_server(root, wrapper=wrapper, startup=600)
        commands = KINDS[args.kind]
        client = await Client.connect(server, None)
        await client.command("SELECT INBOX")
        for i in range(args.warmup):
            await client.command(commands[i % len(commands)])
        await instrumentation(server.proc.pid, "on")
        for i in range(args.count):
            await client.command(commands[i % len(commands)])
        await instrumentation(server.proc.pid, "off")
        await client.logout()
        await server.stop()
        print(f"{args.kind} ({' / '.join(commands)}): {totals(out) // args.count} instructions per command")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=sorted(KINDS), default="body")
    parser.add_argument("--count", type=int, default=300, help="commands counted")
    parser.add_argument("--warmup", type=int, default=200, help="commands sent before counting")
    parser.add_argument("--messages", type=int, default=500, help="messages in INBOX")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
