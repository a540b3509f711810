"""Simultaneous logins to one account: N IMAP connections send LOGIN with the right password at the same
moment; prints the wall time until every one has its answer, how many succeeded, and the server's memory
(VmRSS before and after, VmHWM peak) from /proc.

Starts its own server (a fresh data directory in a temporary folder, loopback, ephemeral ports,
`allow_plaintext_auth = true` so that TLS handshakes are not part of the measurement, connection caps raised
above N). The connections are opened and greeted first; the clock starts when the first LOGIN is written.

    .venv/bin/python bench/login_storm.py [--clients 480] [--rounds 1] [--wrong 0]

`--wrong K` makes K of the N clients send a wrong password (each a distinct one). `--app-password` logs in
with an app password made in the store before the server starts (docs/decisions/0052) instead of the account
password: a SHA-256 and an indexed lookup instead of argon2id, plus the write of its last use.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.harness import ServerProcess, make_data_dir

from postoffice.auth import factors
from postoffice.store import open_store


async def make_app_password(path: Path, address: str) -> str:
    store = open_store(path)
    try:
        account = await store.get_account(address)
        assert account is not None
        password = factors.new_app_password()
        await store.add_app_password(account.id, "bench", factors.secret_hash(password), time.time())
        return password
    finally:
        await store.close()


def memory_kib(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


async def storm(
    port: int, user: str, password: str, clients: int, wrong: int
) -> tuple[float, dict[str, int]]:
    connections = []
    for _ in range(clients):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        greeting = await reader.readline()
        assert greeting.startswith(b"* OK"), greeting
        connections.append((reader, writer))

    async def login(i: int, reader: asyncio.StreamReader) -> str:
        while True:
            line = await reader.readline()
            if not line:
                return "closed"
            if line.startswith(f"a{i} ".encode()):
                return line.split()[1].decode()

    t0 = time.monotonic()
    for i, (_, writer) in enumerate(connections):
        secret = f"wrong-{i}" if i < wrong else password
        writer.write(f'a{i} LOGIN "{user}" "{secret}"\r\n'.encode())
    answers = await asyncio.gather(*(login(i, reader) for i, (reader, _) in enumerate(connections)))
    elapsed = time.monotonic() - t0
    for _, writer in connections:
        writer.close()
    await asyncio.gather(*(writer.wait_closed() for _, writer in connections), return_exceptions=True)
    tally: dict[str, int] = {}
    for answer in answers:
        tally[answer] = tally.get(answer, 0) + 1
    return elapsed, tally


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="postoffice-login-storm-"))
    try:
        data = make_data_dir(root / "data", users=("bob",))
        text = data.config.read_text()
        text = re.sub(r"(?m)^allow_plaintext_auth = false$", "allow_plaintext_auth = true", text)
        text = re.sub(r"(?m)^max_connections = \d+$", f"max_connections = {args.clients + 10}", text)
        text = re.sub(
            r"(?m)^max_connections_per_ip = \d+$", f"max_connections_per_ip = {args.clients + 10}", text
        )
        data.config.write_text(text)
        user = "bob@example.test"
        password = data.passwords[user]
        if args.app_password:
            password = await make_app_password(data.root / "store" / "mail.sqlite3", user)
        server = ServerProcess(data).start()
        try:
            assert server.proc is not None
            pid = server.proc.pid
            for round_ in range(args.rounds):
                before = memory_kib(pid)
                elapsed, tally = await storm(server.port("imap"), user, password, args.clients, args.wrong)
                after = memory_kib(pid)
                kind = "app password" if args.app_password else "account password"
                print(
                    f"round {round_ + 1}: {args.clients} simultaneous LOGINs ({kind}, {args.wrong} wrong) in "
                    f"{elapsed:.2f} s; answers {tally}; server VmRSS {before['VmRSS'] / 1024:.0f} -> "
                    f"{after['VmRSS'] / 1024:.0f} MiB, VmHWM {after['VmHWM'] / 1024:.0f} MiB",
                    flush=True,
                )
        finally:
            print(f"server exit: {server.stop()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=480, help="simultaneous connections")
    parser.add_argument("--rounds", type=int, default=1, help="storms one after the other")
    parser.add_argument("--wrong", type=int, default=0, help="clients that send a wrong password")
    parser.add_argument("--app-password", action="store_true", help="log in with an app password")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
