"""IMAP SORT and THREAD on a large mailbox, timed from outside: `postoffice run` with one INBOX of N messages
(100,000 by default), and a client that sends each command and times it up to the tagged OK.

The mailbox is made of conversations as mail programs write them: threads of 1 to 20 messages whose replies
carry "Re: " subjects and References chains (In-Reply-To only for a fifth of them), a few replies to
messages that are not in the mailbox, a few duplicate Message-IDs, 300 senders with display names, dates over
three years (seeded, so runs compare). It is filled through the store API before the server starts (append,
500 per transaction), and kept in `--cache DIR` for the next run with the same N when given.

Every command runs `--repeat` times on one connection: the first run (the server has never sorted this
mailbox: its key cache is cold) and the median and best of the rest are printed, with the size of the answer
and the server's CPU over all runs. The load generator's own CPU is printed too. With `--append-between` one
new message is appended (not timed) before every run but the first, as on a busy INBOX: no answer kept from
the run before can be given again.

With `--dovecot`, Dovecot from Debian answers instead (bench/dovecot_compare.py's configuration: Maildir, one
imap process per connection): the same messages in the same order with the same \\Seen flags are written as a
Maildir, the first SELECT builds Dovecot's index (not timed), and the commands run twice: on the fresh
mailbox (Dovecot has cached no header field yet) and again after Dovecot was restarted, when its cache file
holds what the first pass asked for (Postoffice keeps its sort keys in memory only, so its "first" column is
what it does after every start).

    .venv/bin/python bench/imap_sort_bench.py [--messages 100000] [--repeat 7] [--cache /tmp/sortbench]
                                             [--append-between] [--command "SORT (DATE) UTF-8 ALL" ...]
                                             [--dovecot]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import pwd
import random
import re
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.integration.harness import DataDir, ServerProcess, make_data_dir

from postoffice.message import parse_message
from postoffice.store import open_store
from postoffice.store.api import AppendItem

COMMANDS = (
    "SORT (DATE) UTF-8 ALL",
    "SORT (REVERSE ARRIVAL) UTF-8 ALL",
    "SORT (SUBJECT DATE) UTF-8 ALL",
    "SORT (DISPLAYFROM) UTF-8 ALL",
    "UID SORT (REVERSE DATE) UTF-8 UNSEEN",
    "THREAD REFERENCES UTF-8 ALL",
    "UID THREAD REFERENCES UTF-8 ALL",
    "THREAD ORDEREDSUBJECT UTF-8 ALL",
)
WORDS = ("lunch", "budget", "meeting", "report", "offer", "trip", "draft", "review", "invoice", "party")


def make_messages(n: int, seed: int = 42) -> list[bytes]:
    rng = random.Random(seed)
    out: list[bytes] = []
    start = 1_700_000_000.0
    thread = 0
    while len(out) < n:
        thread += 1
        size = min(rng.choice((1, 1, 1, 2, 2, 3, 4, 5, 8, 13, 20)), n - len(out))
        subject = " ".join(rng.sample(WORDS, 3)) + f" {thread % 5000}"
        ids: list[str] = []
        when = start + rng.random() * 94_000_000
        missing_root = rng.random() < 0.03
        for k in range(size):
            mid = f"<t{thread}.{k}@bench.test>" if rng.random() > 0.005 else "<dup@bench.test>"
            sender = rng.randrange(300)
            head = [
                f"From: Person {sender} <p{sender}@remote{sender % 7}.test>",
                "To: demo@example.test",
                f"Subject: {'Re: ' if k or missing_root else ''}{subject}",
                f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime(when))}",
                f"Message-ID: {mid}",
            ]
            parents = ([f"<t{thread}.root@bench.test>"] if missing_root else []) + ids
            if parents:
                if rng.random() < 0.2:
                    head.append(f"In-Reply-To: {parents[-1]}")
                else:
                    head.append(f"References: {' '.join(parents[-10:])}")
            out.append(("\r\n".join(head) + "\r\n\r\nHello.\r\n").encode())
            ids.append(mid)
            when += rng.random() * 86_400
    rng.shuffle(out)  # arrival order is not thread order
    return out


def fresh_message(k: int) -> bytes:
    """A reply in one of the first threads, dated now: a new arrival in a busy INBOX."""
    return (
        f"From: Person 1 <p1@remote1.test>\r\nTo: demo@example.test\r\nSubject: Re: new {k}\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
        f"Message-ID: <new{k}.{time.time_ns()}@bench.test>\r\nReferences: <t{k}.0@bench.test>\r\n\r\nNew.\r\n"
    ).encode()


async def fill(data: DataDir, n: int) -> None:
    store = open_store(data.root / "store" / "mail.sqlite3")
    try:
        account = await store.get_account("demo@example.test")
        assert account is not None
        inbox = await store.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        messages = make_messages(n)
        started = time.perf_counter()
        for i in range(0, n, 500):
            batch = [
                AppendItem(io.BytesIO(raw), parse_message(io.BytesIO(raw)), ("\\Seen",) if j % 3 else ())
                for j, raw in enumerate(messages[i : i + 500], i)
            ]
            await store.append_many(inbox.id, batch)
        print(f"filled {n} messages in {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        await store.close()


def write_maildir(maildir: Path, n: int) -> None:
    """`make_messages(n)` as a Maildir in arrival order (Dovecot gives UIDs in the order of the files' times),
    \\Seen as `fill` sets it, LF line ends as Dovecot keeps them."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    base = int(time.time()) - 3600 - n
    for j, raw in enumerate(make_messages(n)):
        data = raw.replace(b"\r\n", b"\n")
        stamp = base + j
        flags = "S" if j % 3 else ""
        path = maildir / "cur" / f"{stamp}.M{j:06d}P1.bench,S={len(data)},W={len(raw)}:2,{flags}"
        path.write_bytes(data)
        os.utime(path, (stamp, stamp))
    for sub in ("cur", "new", "tmp"):  # a directory changed in the last seconds is rescanned at every sync
        os.utime(maildir / sub, (base + n - 1, base + n - 1))


def run_commands(
    client: Client, commands: Sequence[str], args: argparse.Namespace, cpu: Callable[[], float]
) -> None:
    """Each command `--repeat` times: the table of the module docstring."""
    print("| command | first ms | median ms | best ms | answer octets | server CPU ms per run |")
    print("|---|---|---|---|---|---|")
    own = time.process_time()
    for command in commands:
        before = cpu()
        times: list[float] = []
        octets = 0
        for run in range(args.repeat):
            if run and args.append_between:
                client.command("APPEND INBOX", fresh_message(run))
            took, octets = client.command(command)
            times.append(took * 1000)
        used = (cpu() - before) * 1000 / args.repeat
        rest = times[1:] or times
        print(
            f"| `{command}` | {times[0]:.0f} | {statistics.median(rest):.0f} | {min(rest):.0f} "
            f"| {octets} | {used:.0f} |",
            flush=True,
        )
    print(f"\nload generator CPU: {(time.process_time() - own) * 1000:.0f} ms in all")


def dovecot_passes(args: argparse.Namespace, root: Path) -> None:
    """`--dovecot`: the commands on a fresh Maildir, then again after a restart of Dovecot."""
    import dovecot_compare as dc
    import imap_load

    root.chmod(0o755)  # Dovecot's mail processes (nobody) reach their home through it
    home = root / "home"
    started = time.perf_counter()
    write_maildir(home / "Maildir", args.messages)
    account = pwd.getpwnam(dc.MAIL_USER)
    dc.chown_tree(home, account.pw_uid, account.pw_gid)
    print(f"wrote {args.messages} messages as a Maildir in {time.perf_counter() - started:.0f} s", flush=True)
    (port,) = dc.free_ports(1)
    ports = {"imap": port, "imaps": 0}
    binary = dc.dovecot_binary()
    conf = dc.write_config(root, home, "maildir", ports, False)
    print(f"Dovecot {dc.dovecot_version(binary)}, Maildir", flush=True)
    runner = asyncio.Runner()  # one loop: the Dovecot process is watched by the loop that started it
    for label in ("fresh mailbox", "after a restart of Dovecot"):
        server = runner.run(dc.start_dovecot(binary, conf, root, ports, None))
        try:
            client = Client(port)
            client.command(f'LOGIN "{imap_load.USER}" "{imap_load.PASSWORD}"')
            took, _ = client.command("SELECT INBOX")
            print(f"\n{label}: SELECT INBOX {took * 1000:.0f} ms\n")
            run_commands(client, args.command or COMMANDS, args, server.cpu_seconds)
            client.command("LOGOUT")
        finally:
            runner.run(server.stop())
    runner.close()


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.file = self.sock.makefile("rb")
        self.file.readline()
        self.n = 0

    def command(self, text: str, literal: bytes | None = None) -> tuple[float, int]:
        """(seconds to the tagged reply, octets of the untagged answer); `literal` is sent after `text` as a
        non-synchronising literal (LITERAL+)."""
        self.n += 1
        tag = f"b{self.n}"
        started = time.perf_counter()
        if literal is None:
            self.sock.sendall(f"{tag} {text}\r\n".encode())
        else:
            self.sock.sendall(f"{tag} {text} {{{len(literal)}+}}\r\n".encode() + literal + b"\r\n")
        octets = 0
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            if line.startswith(tag.encode() + b" "):
                if not line.startswith(tag.encode() + b" OK"):
                    raise RuntimeError(f"{text}: {line!r}")
                return time.perf_counter() - started, octets
            octets += len(line)


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--cache", type=Path, help="keep the filled data directory here for the next run")
    parser.add_argument("--command", action="append", help="run this command instead of the usual set")
    parser.add_argument(
        "--append-between",
        action="store_true",
        help="APPEND one new message (not timed) before every run but the first: the mailbox has changed, "
        "as a busy INBOX has, so no answer is reused",
    )
    parser.add_argument("--dovecot", action="store_true", help="run the commands against Dovecot instead")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="postoffice-sort-bench-"))
    server: ServerProcess | None = None
    try:
        if args.dovecot:
            dovecot_passes(args, root)
            return
        cached = args.cache / f"data-{args.messages}" if args.cache else None
        if cached is not None and cached.exists():
            shutil.copytree(cached, root / "data")
            data = DataDir(root / "data", root / "data" / "postoffice.toml", {})
            print(f"data directory from {cached}", flush=True)
        else:
            data = make_data_dir(root / "data", users=("demo",))
            asyncio.run(fill(data, args.messages))
            if cached is not None:
                shutil.copytree(root / "data", cached)
        text = data.config.read_text()
        data.config.write_text(
            re.sub(r"(?m)^allow_plaintext_auth = false$", "allow_plaintext_auth = true", text)
        )
        server = ServerProcess(data).start()
        assert server.proc is not None
        client = Client(server.port("imap"))
        client.command('LOGIN demo@example.test "demo-secret-pw"')
        took, _ = client.command("SELECT INBOX")
        print(f"SELECT INBOX: {took * 1000:.0f} ms\n")
        pid = server.proc.pid
        run_commands(client, args.command or COMMANDS, args, lambda: server_cpu(pid))
        client.command("LOGOUT")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
