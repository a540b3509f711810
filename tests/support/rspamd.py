"""rspamd from Debian, started on loopback for the tests that need the real spam filter (docs/decisions/0086).

Its configuration is Debian's, with an overlay directory (`LOCAL_CONFDIR`) that moves its three workers to
free loopback ports, logs to the console at warning level, and points its DNS at a port where nothing
answers (no public internet here: the checks that need DNS give up at once). Its compiled regular
expressions (hyperscan, about 20 s to build) are kept in a cache directory shared by test runs on a machine.
Readiness: its scanner answers /ping with "pong" (polled, a condition, not a sleep).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT = 120.0
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "postoffice-tests" / "rspamd-db"

#: GTUBE: rspamd's built-in test pattern, scored 15 with the action "reject".
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@dataclass(frozen=True)
class Rspamd:
    url: str  # the scanner (normal worker)
    controller: str  # the controller (learning)
    redis_port: int | None = None  # its Bayes store, with `learning`
    pid: int = 0  # its main process (the workers are its children)

    def learns(self) -> dict[str, int]:
        """What rspamd's Bayes filter has learned: {"spam": n, "ham": m} (its "RS" hash in Redis)."""
        assert self.redis_port is not None
        with socket.create_connection(("127.0.0.1", self.redis_port), timeout=5) as sock:
            sock.sendall(b"HGETALL RS\r\nQUIT\r\n")  # Redis closes after QUIT: read to the end
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
        lines = reply.split(b"\r\n")
        values = [line.decode() for line in lines[1:] if line and not line.startswith(b"$")]
        found = dict(zip(values[::2], values[1::2], strict=False))
        return {"spam": int(found.get("learns_spam", 0)), "ham": int(found.get("learns_ham", 0))}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ping", timeout=2) as answer:  # noqa: S310 - a loopback http URL
            return bool(answer.read().strip() == b"pong")
    except OSError:
        return False


def _redis_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def running_redis(folder: Path) -> Iterator[int]:
    """Debian's redis-server on a free loopback port, keeping nothing on disk (rspamd's Bayes store)."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is installed by the Makefile (Debian package redis-server)"
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not _redis_ready(port):
            assert process.poll() is None, "redis-server ended"
            assert time.monotonic() < deadline, "redis-server not ready in time"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(30)


@contextlib.contextmanager
def running_rspamd(*, learning: bool = False) -> Iterator[Rspamd]:
    """rspamd on free loopback ports; with `learning`, a Redis of its own for the Bayes filter."""
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="postoffice-rspamd-")))
        redis_port = stack.enter_context(running_redis(root)) if learning else None
        started = stack.enter_context(_rspamd(root, redis_port))
        yield Rspamd(started.url, started.controller, redis_port, started.pid)


def _configure(local: Path, scanner: int, controller: int, proxy: int, redis_port: int | None) -> None:
    """The overlay (`LOCAL_CONFDIR`): the workers on these ports, console logging, DNS that never answers."""
    settings = local / "local.d"
    settings.mkdir()
    (local / "run").mkdir()
    files = {
        "worker-normal.inc": f'bind_socket = "127.0.0.1:{scanner}";\ncount = 1;\n',
        "worker-controller.inc": (
            f'bind_socket = "127.0.0.1:{controller}";\ncount = 1;\nsecure_ip = "127.0.0.1";\n'
        ),
        "worker-proxy.inc": f'bind_socket = "127.0.0.1:{proxy}";\ncount = 1;\n',
        "logging.inc": 'type = "console";\nlevel = "error";\n',
        "options.inc": 'dns { nameserver = ["127.0.0.1:1"]; timeout = 0.1s; retransmits = 1; }\n',
    }
    if redis_port is not None:
        files["redis.conf"] = f'servers = "127.0.0.1:{redis_port}";\n'
    for name, text in files.items():
        (settings / name).write_text(text)


@contextlib.contextmanager
def _rspamd(local: Path, redis_port: int | None) -> Iterator[Rspamd]:
    binary = shutil.which("rspamd")
    assert binary is not None, "rspamd is installed by the Makefile (Debian package rspamd)"
    scanner, controller, proxy = _free_port(), _free_port(), _free_port()
    CACHE.mkdir(parents=True, exist_ok=True)
    _configure(local, scanner, controller, proxy, redis_port)
    with open(local / "rspamd.log", "wb") as log:
        process = subprocess.Popen(
            [
                binary,
                *("-f", "-i", "-u", "root", "-g", "root"),
                *("-c", "/etc/rspamd/rspamd.conf"),
                f"--var=LOCAL_CONFDIR={local}",
                f"--var=DBDIR={CACHE}",
                f"--var=RUNDIR={local / 'run'}",
                f"--var=LOGDIR={local}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{scanner}"
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while not _ping(url):
                assert process.poll() is None, (local / "rspamd.log").read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "rspamd not ready in time"
                time.sleep(0.2)
            yield Rspamd(url, f"http://127.0.0.1:{controller}", pid=process.pid)
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
