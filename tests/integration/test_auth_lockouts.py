"""Lockouts in a real server process: they survive a restart, `postoffice auth lockouts` lists them and
`postoffice auth unlock` lifts them in the running server (docs/decisions/0027); a locked account stays locked
under every spelling of its name (issue 9, item 3).

Clients connect from several loopback addresses (127.0.0.2, ...) so that account and client lockouts can be
told apart; Linux routes all of 127.0.0.0/8 to the loopback interface.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from postoffice.store import LoginGuardEntry, open_store
from tests.integration.harness import POSTOFFICE, DataDir, ServerProcess, cli, make_data_dir

pytestmark = pytest.mark.integration

DEMO = "demo@example.test"
OTHER = "other@example.test"


def configure(data: DataDir) -> None:
    """Lockouts after 3 failures, no failure delay (the tests make many), plaintext IMAP on loopback."""
    text = data.config.read_text()
    for key, value in (
        ("ip_max_failures", "3"),
        ("account_max_failures", "3"),
        ("failure_delay", "0"),
        ("allow_plaintext_auth", "true"),
    ):
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert count == 1, key
    data.config.write_text(text)


def authenticate(port: int, user: str, password: str, source: str) -> str:
    """AUTHENTICATE PLAIN with an initial response (RFC 4959) from `source`; the tagged reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"* OK")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        sock.sendall(f"a AUTHENTICATE PLAIN {token}\r\n".encode())
        while True:
            line = f.readline().decode()
            assert line, "connection closed"
            if line.startswith("a "):
                return line.strip()


def ok(reply: str) -> bool:
    return reply.startswith("a OK")


def locked(reply: str) -> bool:
    return reply.startswith("a NO [UNAVAILABLE] Too many failed logins")


def postoffice(data: DataDir, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POSTOFFICE, "--config", str(data.config), *args], capture_output=True, text=True, timeout=120
    )


def test_lockouts_survive_a_restart_are_listed_and_lifted_in_the_running_server(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path / "data", users=("demo", "other"))
    configure(data)
    password = data.passwords
    server = ServerProcess(data).start()
    try:
        port = server.port("imap")
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):  # one account from many addresses
            assert "AUTHENTICATIONFAILED" in authenticate(port, DEMO, "guess", source)
        for name in ("a", "b", "c"):  # one address guessing many names
            authenticate(port, f"{name}@example.test", "guess", "127.0.0.5")
        assert locked(authenticate(port, DEMO, password[DEMO], "127.0.0.6"))
        assert locked(authenticate(port, OTHER, password[OTHER], "127.0.0.5"))
        for spelling in ("demo@example.test\u3002", "demo@example.test\uff0e", "Demo@Example.Test."):
            assert locked(authenticate(port, spelling, password[DEMO], "127.0.0.6")), spelling
        assert server.stop() == 0

        server = ServerProcess(data).start()  # a restart
        port = server.port("imap")
        assert locked(authenticate(port, DEMO, password[DEMO], "127.0.0.6"))
        assert locked(authenticate(port, "demo@example.test\u3002", password[DEMO], "127.0.0.7"))
        assert locked(authenticate(port, OTHER, password[OTHER], "127.0.0.5"))
        assert ok(authenticate(port, OTHER, password[OTHER], "127.0.0.6"))

        listing = cli("auth", "lockouts", config=data.config)
        rows = [line.split()[:3] for line in listing.splitlines()[1:-1]]
        assert sorted(rows) == [["account", "-", DEMO], ["client", "127.0.0.5", "-"]], listing
        assert listing.splitlines()[0].split() == ["LOCKED", "CLIENT", "ACCOUNT", "SINCE", "UNTIL", "LEFT"]

        unlocked = cli("auth", "unlock", "Demo@Example.Test\u3002", config=data.config)
        assert unlocked.strip() == f"lifted the lockout of account {DEMO}"
        assert ok(authenticate(port, DEMO, password[DEMO], "127.0.0.6"))  # no restart needed
        assert locked(authenticate(port, OTHER, password[OTHER], "127.0.0.5"))  # the client's stays

        unlocked = cli("auth", "unlock", "127.0.0.5", config=data.config)
        assert unlocked.strip() == "lifted the lockout of client 127.0.0.5"
        assert ok(authenticate(port, OTHER, password[OTHER], "127.0.0.5"))

        assert cli("auth", "lockouts", config=data.config).strip() == "no lockouts"
        again = postoffice(data, "auth", "unlock", DEMO)
        assert again.returncode == 1
        assert again.stderr.strip() == f"postoffice: no lockout for account {DEMO}"
        assert "lockout lifted kind=account" in server.log()
        assert server.stop() == 0
    finally:
        server.kill()


def test_ipv6_clients_are_listed_and_unlocked_per_64(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path / "data", users=())
    store_path = data.root / "store" / "mail.sqlite3"

    async def lock() -> None:
        store = open_store(store_path)
        try:
            now = time.time()
            await store.login_guard_save(
                [
                    LoginGuardEntry("client", "2001:db8:1:2::/64", "", now + 600, now - 300),
                    LoginGuardEntry("pair", "2001:db8:1:2::/64", DEMO, now + 600, now - 300),
                    LoginGuardEntry("account", "", "admin", now + 60, now - 840),  # a name without a domain
                    LoginGuardEntry("trust", "192.0.2.1", DEMO, now + 600, now - 300),  # not a lockout
                ],
                now,
            )
        finally:
            await store.close()

    asyncio.run(lock())
    listing = cli("auth", "lockouts", config=data.config)
    rows = [line.split()[:3] for line in listing.splitlines()[1:-1]]
    assert rows == [
        ["account", "-", "admin"],
        ["client", "2001:db8:1:2::/64", "-"],
        ["pair", "2001:db8:1:2::/64", DEMO],
    ]
    assert listing.splitlines()[-1] == "3 lockouts (IPv6 clients are locked per /64 network)"
    left = [line.split()[-1] for line in listing.splitlines()[1:-1]]
    assert all(re.fullmatch(r"\d+m\d\ds|\d+s", value) for value in left), left

    unlocked = cli("auth", "unlock", "2001:DB8:1:2::7", config=data.config)  # any address of the /64
    assert unlocked.splitlines() == [
        "lifted the lockout of client 2001:db8:1:2::/64",
        f"lifted the lockout of account {DEMO} from client 2001:db8:1:2::/64",
    ]
    assert cli("auth", "unlock", "ADMIN", config=data.config).strip() == "lifted the lockout of account admin"
    assert cli("auth", "lockouts", config=data.config).strip() == "no lockouts"
    wide = postoffice(data, "auth", "unlock", "2001:db8::/48")  # not one client: taken as a (locked?) name
    assert wide.returncode == 1
    assert "no lockout for account 2001:db8::/48" in wide.stderr
    assert "Traceback" not in wide.stderr
