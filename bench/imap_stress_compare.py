"""Postoffice and Dovecot, one beside the other, under the sync-stress load of bench/imap_sync_stress.py.

Issue 14's speed goal is stated for "10 clients on one mailbox, each logging in, selecting, fetching, storing,
expunging, appending and logging out, over TLS": that is imap_sync_stress's load (its `run_stress`, imported,
not copied). This script runs it against a Dovecot from Debian and against Postoffice, alternately
(Dovecot, Postoffice, Dovecot, ...: `--rounds` of each), each on a fresh empty INBOX that `run_stress`'s own
preparation fills with its 40 messages, both over implicit TLS (`--plain` for plaintext), and prints for each
run the commands per second of all clients, the server's CPU per command (Dovecot: the whole process tree
from /proc, as bench/dovecot_compare.py measures it; Postoffice: its one process) and the load generator's
own CPU (so a reader can see it is not the bottleneck), then the median rate of each and their ratio.

Dovecot is configured by bench/dovecot_compare.py's `write_config` (IMAP only, 127.0.0.1, ephemeral ports,
passwd-file, Dovecot's defaults otherwise: one imap process per connection, imap-login in high-security mode,
`mail_fsync = optimized`), in Maildir (its default) or `--format mdbox`. Postoffice is `postoffice run` on a
fresh data directory (imap_sync_stress's `start_server`: the defaults, `allow_plaintext_auth` on).

Contradictions the checker records are printed per run. Against Dovecot some are expected: the checker's
"after NOOP, UID FETCH 1:* gives the model" rule assumes a server that reports changes only at the end of a
command (its docstring says why); they do not change the rate.

Installs nothing: needs root and Dovecot (`apt-get install dovecot-imapd`). Everything binds to 127.0.0.1.

    .venv/bin/python bench/imap_stress_compare.py [--clients 10] [--seconds 60] [--rounds 3]
                                                  [--mode plain|condstore|qresync] [--format maildir|mdbox]
                                                  [--plain]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dovecot_compare as dc
import imap_load as load
import imap_sync_stress as stress
from postoffice.net.tls import generate_self_signed


@dataclass
class Run:
    server: str
    rate: float
    commands: int
    server_cpu_us: float
    loadgen_cpu_percent: float
    violations: int

    def line(self) -> str:
        return (
            f"| {self.server} | {self.rate:,.0f} | {self.commands:,} | {self.server_cpu_us:,.0f} "
            f"| {self.loadgen_cpu_percent:.0f} % | {self.violations} |"
        )


def summarise(name: str, result: stress.StressResult, server_cpu: float) -> Run:
    return Run(
        name,
        result.rate,
        result.total_commands,
        server_cpu * 1e6 / max(1, result.total_commands),
        result.cpu_seconds * 100 / max(result.elapsed, 1e-9),
        result.violations.count,
    )


async def dovecot_run(binary: str, args: argparse.Namespace, round_no: int) -> Run:
    root = Path(tempfile.mkdtemp(prefix="postoffice-stress-dovecot-"))
    server: dc.DovecotServer | None = None
    try:
        root.chmod(0o755)  # noqa: ASYNC240
        home = root / "home"
        mail_dir = {"maildir": "Maildir", "mdbox": "mdbox"}[args.format]
        (home / mail_dir).mkdir(parents=True)
        account = pwd.getpwnam(dc.MAIL_USER)
        dc.chown_tree(home, account.pw_uid, account.pw_gid)
        if not args.plain:
            generate_self_signed("localhost", root / "cert.pem", root / "key.pem")
        imap_port, imaps_port = dc.free_ports(2)
        ports = {"imap": imap_port if args.plain else 0, "imaps": 0 if args.plain else imaps_port}
        conf = dc.write_config(root, home, args.format, ports, not args.plain)
        context = None if args.plain else ssl.create_default_context(cafile=str(root / "cert.pem"))
        server = await dc.start_dovecot(binary, conf, root, ports, context)
        cpu0 = server.cpu_seconds()
        result = await stress.run_stress(
            "127.0.0.1",
            ports["imap" if args.plain else "imaps"],
            load.USER,
            load.PASSWORD,
            clients=args.clients,
            seconds=args.seconds,
            mode=args.mode,
            seed=args.seed + round_no,
            tls_context=context,
            server_hostname=None if args.plain else "localhost",
        )
        run = summarise(f"Dovecot {args.format}", result, server.cpu_seconds() - cpu0)
        if args.verbose:
            print(result.report(), flush=True)
        return run
    finally:
        if server is not None:
            await server.stop()
        shutil.rmtree(root, ignore_errors=True)


def postoffice_run(args: argparse.Namespace, round_no: int) -> Run:
    root = Path(tempfile.mkdtemp(prefix="postoffice-stress-postoffice-"))
    server = None
    try:
        server, user, password = stress.start_server(root, args.clients)
        assert server.proc is not None
        context: ssl.SSLContext | None = None
        if not args.plain:
            context = ssl.create_default_context(cafile=str(server.data.root / "tls" / "cert.pem"))
            context.check_hostname = False  # the certificate names localhost; we connect to 127.0.0.1
        cpu0 = stress.process_cpu_seconds(server.proc.pid)
        result = asyncio.run(
            stress.run_stress(
                "127.0.0.1",
                server.port("imap" if args.plain else "imaps"),
                user,
                password,
                clients=args.clients,
                seconds=args.seconds,
                mode=args.mode,
                seed=args.seed + round_no,
                tls_context=context,
            )
        )
        run = summarise("Postoffice", result, stress.process_cpu_seconds(server.proc.pid) - cpu0)
        if args.verbose:
            print(result.report(), flush=True)
        return run
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0, help="per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server, alternating")
    parser.add_argument("--mode", choices=stress.MODES, default="plain")
    parser.add_argument("--format", choices=["maildir", "mdbox"], default="maildir")
    parser.add_argument("--plain", action="store_true", help="plaintext IMAP instead of implicit TLS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["dovecot", "postoffice"], help="run one server only")
    parser.add_argument("--verbose", action="store_true", help="print each run's full report")
    args = parser.parse_args()
    binary = dc.dovecot_binary() if args.only != "postoffice" else ""
    if binary and os.geteuid() != 0:
        sys.exit("run as root: Dovecot's master process needs root (the mail processes run as nobody)")
    transport = "plaintext" if args.plain else "implicit TLS"
    print(
        f"{args.clients} clients, {args.seconds:.0f} s per run, mode {args.mode}, {transport}, "
        f"{os.cpu_count()} CPUs; {dc.dovecot_version(binary) if binary else ''}",
        flush=True,
    )
    print(
        "| server | commands/s | commands | server CPU us/command | load generator CPU | contradictions |\n"
        "|---|---|---|---|---|---|",
        flush=True,
    )
    runs: list[Run] = []
    started = time.monotonic()
    for round_no in range(args.rounds):
        if args.only != "postoffice":
            runs.append(asyncio.run(dovecot_run(binary, args, round_no)))
            print(runs[-1].line(), flush=True)
        if args.only != "dovecot":
            runs.append(postoffice_run(args, round_no))
            print(runs[-1].line(), flush=True)
    medians = {
        name: statistics.median(r.rate for r in runs if r.server == name) for name in {r.server for r in runs}
    }
    print("\nmedian commands/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(medians.items())))
    ours = medians.get("Postoffice")
    theirs = next((v for k, v in medians.items() if k.startswith("Dovecot")), None)
    if ours and theirs:
        print(f"Postoffice / Dovecot: {ours / theirs:.2f}")
    print(f"({time.monotonic() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
