"""Dovecot under the IMAP load generator of bench/imap_load.py, so that its numbers compare like with like.

The same mailbox (imap_load's `make_message`, `vocabulary` and seed, the same \\Seen pattern as its `fill`:
messages n with n % 10 < 7) is written as a Maildir for one user (the directories' mtime an hour back, as in a
mailbox without new mail for a while: Dovecot rescans a directory changed in the last seconds at every sync;
optionally converted to mdbox or sdbox with `doveadm backup`), a minimal dovecot.conf is written to a
temporary directory (IMAP only, 127.0.0.1, an ephemeral port, a passwd-file with imap_load's user and
password, plaintext authentication allowed, base_dir, state_dir and the log in the temporary directory;
everything else Dovecot's defaults: one imap process per connection, imap-login in high-security mode),
Dovecot is started in the foreground (`dovecot -F -c CONF`, as root, the mail processes as `nobody`), and the
single-client items and the mixed workload run through imap_load's own `Client`, `discover`, `single_items`,
`time_single` and `time_mixed`. Server CPU is that of the whole Dovecot process tree: the master's and every
descendant's utime + stime + cutime + cstime from /proc/PID/stat (imap processes that exit during a run are
then counted through the master's cutime/cstime).

Installs nothing: needs root and Dovecot (`apt-get install dovecot-imapd`). Everything binds to 127.0.0.1 and
is bounded by timeouts; the temporary directory is removed at the end (unless --keep).

    .venv/bin/python bench/dovecot_compare.py [--messages 10000] [--runs 5] [--clients 8] [--seconds 10]
                                              [--mixed-runs 3] [--format maildir|mdbox|sdbox] [--tls]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import imap_load as load
from postoffice.net.tls import generate_self_signed

MAIL_USER = "nobody"  # the system user the mail processes run as (never root)
START_TIMEOUT = 30.0
DOVEADM_TIMEOUT = 900.0
CONNECT_TIMEOUT = 30.0


# ------------------------------------------------------------------------------------------ the mailbox


def write_maildir(maildir: Path, messages: int, size: int) -> tuple[int, int]:
    """imap_load's messages, in imap_load's order and with its \\Seen pattern, as Dovecot stores them (LF line
    ends, S= file size and W= size with CRLF in the name); (total bytes with CRLF, number of \\Seen)."""
    rng = random.Random(42)  # as imap_load.fill: the vocabulary first, then the messages in order
    words = load.vocabulary(rng, 2000)
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    # Dovecot assigns the UIDs of new files in the order of these times; the last message arrived an hour ago
    base = int(time.time()) - 3600 - messages
    total = seen = 0
    for n in range(messages):
        raw = load.make_message(rng, words, n, size)
        total += len(raw)
        data = raw.replace(b"\r\n", b"\n")
        flagged_seen = n % 10 < 7  # as imap_load.fill: (start + i) % 10 < 7
        seen += flagged_seen
        stamp = base + n
        virtual_size = len(data) + data.count(b"\n")
        flags = "S" if flagged_seen else ""
        name = f"{stamp}.M{n:06d}P{os.getpid()}.bench,S={len(data)},W={virtual_size}:2,{flags}"
        path = maildir / "cur" / name
        path.write_bytes(data)
        os.utime(path, (stamp, stamp))  # INTERNALDATE
    for sub in ("cur", "new", "tmp"):  # a directory changed in the last seconds is rescanned at every sync
        os.utime(maildir / sub, (base + messages - 1, base + messages - 1))
    return total, seen


def chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for directory, subdirs, files in os.walk(root):
        for name in subdirs + files:
            os.chown(os.path.join(directory, name), uid, gid)


# ------------------------------------------------------------------------------------------- the server


def free_ports(count: int) -> list[int]:
    """Ports that were free on 127.0.0.1 a moment ago (held together, so they differ)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def dovecot_binary() -> str:
    found = shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.access(p, os.X_OK)), None
    )
    if found is None:
        sys.exit("dovecot is not installed; as root: apt-get install -y dovecot-imapd")
    return found


def dovecot_version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


def write_config(root: Path, home: Path, mail_format: str, ports: dict[str, int], tls: bool) -> Path:
    account = pwd.getpwnam(MAIL_USER)
    users = root / "users"
    users.write_text(
        f"{load.USER}:{{PLAIN}}{load.PASSWORD}:{account.pw_uid}:{account.pw_gid}::{home}::\n",
        encoding="utf-8",
    )
    location = {"maildir": "maildir:~/Maildir", "mdbox": "mdbox:~/mdbox", "sdbox": "sdbox:~/sdbox"}[
        mail_format
    ]
    ssl_settings = (
        f"ssl = required\nssl_cert = <{root / 'cert.pem'}\nssl_key = <{root / 'key.pem'}\n"
        if tls
        else "ssl = no\n"
    )
    conf = root / "dovecot.conf"
    conf.write_text(
        f"""# written by bench/dovecot_compare.py
protocols = imap
listen = 127.0.0.1
instance_name = postoffice-bench-dovecot
base_dir = {root / "run"}
state_dir = {root / "state"}
log_path = {root / "dovecot.log"}
info_log_path = {root / "dovecot.log"}
{ssl_settings}disable_plaintext_auth = no
login_trusted_networks = 127.0.0.1/32
auth_mechanisms = plain login
mail_location = {location}
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users}
}}
protocol imap {{
  # the default (10) would refuse the 8 mixed-workload clients while the previous run's are still exiting
  mail_max_userip_connections = 1000
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {ports["imap"]}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {ports["imaps"]}
  }}
}}
""",
        encoding="utf-8",
    )
    return conf


def process_tree(top: int) -> dict[int, tuple[str, int]]:
    """pid -> (command, CPU clock ticks: utime + stime + cutime + cstime) of `top` and all its descendants."""
    table: dict[int, tuple[int, str, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry.name}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        command = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), command, sum(int(x) for x in fields[11:15]))
    tree: dict[int, tuple[str, int]] = {}
    if top in table:
        tree[top] = table[top][1:]
    added = True
    while added:
        added = False
        for pid, (ppid, command, ticks) in table.items():
            if ppid in tree and pid not in tree:
                tree[pid] = (command, ticks)
                added = True
    return tree


@dataclass
class DovecotServer(load.Server):
    """imap_load's `Server` (ports, proc, log) for a Dovecot master process and its children."""

    def cpu_seconds(self) -> float:
        ticks = sum(ticks for _, ticks in process_tree(self.proc.pid).values())
        return ticks / os.sysconf("SC_CLK_TCK")

    async def stop(self) -> int:
        children = {pid: command for pid, (command, _) in process_tree(self.proc.pid).items()}
        code = await super().stop()
        kill_leftovers(children, self.proc.pid)
        return code


def kill_leftovers(children: dict[int, str], master: int) -> None:
    """Kill the children still running the same command (left over only if the master had to be killed)."""
    for pid, command in children.items():
        with contextlib.suppress(OSError):
            if pid != master and Path(f"/proc/{pid}/comm").read_text().strip() == command:
                os.kill(pid, signal.SIGKILL)


async def wait_until_ready(server: DovecotServer, port: int, context: ssl.SSLContext | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.proc.returncode is not None:
            raise RuntimeError(f"dovecot exited {server.proc.returncode}:\n{server.log.read_text()[-3000:]}")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
                ),
                5,
            )
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"dovecot not accepting on {port}:\n{server.log.read_text()[-3000:]}"
                ) from None
            await asyncio.sleep(0.1)
            continue
        try:
            greeting = await asyncio.wait_for(reader.readline(), 10)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if greeting.startswith(b"* OK"):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"dovecot greeting {greeting!r}")
        await asyncio.sleep(0.1)


async def start_dovecot(
    binary: str, conf: Path, root: Path, ports: dict[str, int], context: ssl.SSLContext | None
) -> DovecotServer:
    stdout = root / "dovecot-stdout.log"
    with stdout.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            binary, "-F", "-c", str(conf), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    server = DovecotServer(proc, dict(ports), root / "dovecot.log")
    if not server.log.exists():
        server.log.touch()
    try:
        await wait_until_ready(server, ports["imaps" if context else "imap"], context)
    except BaseException:
        await server.stop()
        print(stdout.read_text()[-2000:], file=sys.stderr)
        raise
    return server


async def doveadm(binary: str, conf: Path, *arguments: str) -> None:
    doveadm_binary = shutil.which("doveadm") or str(Path(binary).with_name("doveadm"))
    proc = await asyncio.create_subprocess_exec(
        doveadm_binary,
        "-c",
        str(conf),
        *arguments,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), DOVEADM_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(
            f"doveadm {' '.join(arguments)}: exit {proc.returncode}\n{output.decode()[-2000:]}"
        )


# ---------------------------------------------------------------------------------------------- main


async def measure(server: DovecotServer, context: ssl.SSLContext | None, args: argparse.Namespace) -> None:
    client = await asyncio.wait_for(load.Client.connect(server, context), CONNECT_TIMEOUT)
    work = await load.discover(client)  # the first SELECT also builds dovecot.index
    expected = [n + 1 for n in range(args.messages) if n % 10 < 7]  # message n has sequence number n + 1
    if work.exists != args.messages or work.seen != expected:
        raise RuntimeError(
            f"unexpected mailbox: EXISTS {work.exists}, {len(work.seen)} \\Seen (expected {args.messages}, "
            f"{len(expected)} in imap_load's order)"
        )
    print(f"EXISTS {work.exists}, {len(work.seen)} \\Seen, {len(work.unseen)} unseen", flush=True)
    print(f"\none client, median of {args.runs} runs after a warm-up run:")
    print(
        "| command | untagged responses | median ms | best ms | server CPU ms/command |\n"
        "|---|---|---|---|---|"
    )
    for label, commands, warmups in load.single_items(work, args.runs):
        timing = await load.time_single(server, client, label, commands, warmups)
        cpu_ms = timing.server_cpu * 1000 / len(timing.times)
        print(
            f"| {label} | {timing.responses} | {timing.median_ms:.2f} | {timing.best_ms:.2f} "
            f"| {cpu_ms:.1f} |",
            flush=True,
        )
    await client.logout()
    print(f"\nmixed workload: {args.clients} clients, {args.mixed_runs} runs of {args.seconds:.0f} s:")
    rates: list[float] = []
    for i in range(args.mixed_runs):
        r = await load.time_mixed(server, context, args.clients, args.seconds, work.exists, seed=i)
        rates.append(float(r["rate"]))  # type: ignore[arg-type]
        p50 = r["p50_ms"]
        assert isinstance(p50, dict)
        latencies = ", ".join(f"{k} {v:.1f}" for k, v in sorted(p50.items()))
        print(
            f"  run {i + 1}: {r['rate']:,.0f} commands/s ({r['commands']} in {r['elapsed']:.1f} s), "
            f"server CPU {r['cpu_us']:.0f} us/command; p50 ms: {latencies}",
            flush=True,
        )
    print(f"  median: {statistics.median(rates):,.0f} commands/s")


async def run(args: argparse.Namespace) -> None:
    binary = dovecot_binary()
    if os.geteuid() != 0:
        sys.exit("run as root: Dovecot's master process needs root (the mail processes run as nobody)")
    version = dovecot_version(binary)
    root = Path(tempfile.mkdtemp(prefix="postoffice-dovecot-bench-"))
    server: DovecotServer | None = None
    try:
        # the mail processes (nobody) reach the home directory through it; set up before any client runs
        root.chmod(0o755)  # noqa: ASYNC240
        home = root / "home"
        started = time.perf_counter()
        total, _ = write_maildir(home / "Maildir", args.messages, args.size)
        account = pwd.getpwnam(MAIL_USER)
        chown_tree(home, account.pw_uid, account.pw_gid)
        print(
            f"wrote the INBOX of {load.USER} as a Maildir: {args.messages} messages, "
            f"{total / args.messages:.0f} B average (with CRLF), {total / 2**20:.1f} MiB, "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        if args.tls:
            generate_self_signed("localhost", root / "cert.pem", root / "key.pem")
        imap_port, imaps_port = free_ports(2)
        ports = {"imap": 0 if args.tls else imap_port, "imaps": imaps_port if args.tls else 0}
        conf = write_config(root, home, args.format, ports, args.tls)
        context = ssl.create_default_context(cafile=str(root / "cert.pem")) if args.tls else None
        server = await start_dovecot(binary, conf, root, ports, context)
        if args.format != "maildir":
            started = time.perf_counter()
            await doveadm(binary, conf, "backup", "-R", "-u", load.USER, f"maildir:{home / 'Maildir'}")
            shutil.rmtree(home / "Maildir")
            print(f"converted to {args.format} with doveadm backup in {time.perf_counter() - started:.1f} s")
        transport = "imaps (TLS)" if args.tls else "imap (plaintext, disable_plaintext_auth = no)"
        port = ports["imaps" if args.tls else "imap"]
        print(
            f"server: Dovecot {version}, {args.format}, {transport}, port {port}; {os.cpu_count()} CPUs",
            flush=True,
        )
        await measure(server, context, args)
    finally:
        if server is not None:
            print(f"dovecot exit: {await server.stop()}")
            errors = [
                line
                for line in server.log.read_text(errors="replace").splitlines()
                if "Error:" in line or "Fatal:" in line or "Panic:" in line
            ]
            if errors:
                print(f"dovecot log: {len(errors)} errors, the last ones:\n" + "\n".join(errors[-5:]))
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
    parser.add_argument("--format", choices=["maildir", "mdbox", "sdbox"], default="maildir")
    parser.add_argument("--tls", action="store_true", help="implicit TLS (imaps) instead of plaintext")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (mailbox, log)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="for the whole run, in seconds")
    args = parser.parse_args()

    async def bounded() -> None:
        await asyncio.wait_for(run(args), args.timeout)

    asyncio.run(bounded())


if __name__ == "__main__":
    main()
