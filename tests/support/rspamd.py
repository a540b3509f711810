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


@contextlib.contextmanager
def running_rspamd() -> Iterator[Rspamd]:
    binary = shutil.which("rspamd")
    assert binary is not None, "rspamd is installed by the Makefile (Debian package rspamd)"
    scanner, controller, proxy = _free_port(), _free_port(), _free_port()
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="postoffice-rspamd-") as root:
        local = Path(root)
        (local / "local.d").mkdir()
        (local / "run").mkdir()
        (local / "local.d" / "worker-normal.inc").write_text(
            f'bind_socket = "127.0.0.1:{scanner}";\ncount = 1;\n'
        )
        (local / "local.d" / "worker-controller.inc").write_text(
            f'bind_socket = "127.0.0.1:{controller}";\ncount = 1;\nsecure_ip = "127.0.0.1";\n'
        )
        (local / "local.d" / "worker-proxy.inc").write_text(
            f'bind_socket = "127.0.0.1:{proxy}";\ncount = 1;\n'
        )
        (local / "local.d" / "logging.inc").write_text('type = "console";\nlevel = "error";\n')
        (local / "local.d" / "options.inc").write_text(
            'dns { nameserver = ["127.0.0.1:1"]; timeout = 0.1s; retransmits = 1; }\n'
        )
        log = open(local / "rspamd.log", "wb")  # noqa: SIM115 - closed below
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
            yield Rspamd(url, f"http://127.0.0.1:{controller}")
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
            log.close()
