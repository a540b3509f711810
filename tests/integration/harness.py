"""Start a real `postoffice run` process on loopback with ephemeral ports, for integration tests.

No sleeps: readiness is the server's own "postoffice ready:" line on stdout.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
POSTOFFICE = str(BIN / "postoffice")
READY_TIMEOUT = 30.0


def cli(*args: str, config: Path | None = None, stdin: str | None = None, check: bool = True) -> str:
    cmd = [POSTOFFICE]
    if config is not None:
        cmd += ["--config", str(config)]
    cmd += list(args)
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}: {proc.stdout}{proc.stderr}")
    return proc.stdout


@dataclass
class DataDir:
    root: Path
    config: Path
    passwords: dict[str, str] = field(default_factory=dict)

    def add_user(self, address: str, password: str) -> None:
        cli("user", "add", address, "--password-stdin", config=self.config, stdin=password + "\n")
        self.passwords[address] = password


def make_data_dir(root: Path, domain: str = "example.test", users: tuple[str, ...] = ("demo",)) -> DataDir:
    """`postoffice init` on loopback with every port 0 (ephemeral), plus accounts with known passwords."""
    cli(
        "init",
        "--data-dir",
        str(root),
        "--domain",
        domain,
        "--hostname",
        "localhost",
        "--address",
        "127.0.0.1",
    )
    config = root / "postoffice.toml"
    text = config.read_text()
    text = re.sub(r"(?m)^port = \d+", "port = 0", text)
    # No sender authentication unless a test turns it on with its own DNS server: the checks would ask the
    # machine's resolver (the public internet) about every message's sender.
    text = re.sub(r"(?m)^verify = true$", "verify = false", text)
    # No DKIM signing either unless a test turns it on (docs/decisions/0056): the signatures it puts on top of
    # every submitted message would change the bytes that tests compare with what they sent.
    text = re.sub(r"(?m)^sign = true$", "sign = false", text)
    config.write_text(text)
    data = DataDir(root, config)
    for user in users:
        data.add_user(f"{user}@{domain}", f"{user}-secret-pw")
    return data


class ServerProcess:
    def __init__(
        self, data: DataDir, env: dict[str, str] | None = None, wrapper: list[str] | None = None
    ) -> None:
        self.data = data
        self.env = env
        self.wrapper = wrapper or []
        self.proc: subprocess.Popen[str] | None = None
        self.ports: dict[str, tuple[str, int]] = {}
        self.log_path = data.root / "server.log"

    def start(self) -> ServerProcess:
        env = dict(os.environ)
        env.update(self.env or {})
        self._log = open(self.log_path, "a")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*self.wrapper, POSTOFFICE, "--config", str(self.data.config), "run"],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise AssertionError(f"server not ready in time; log:\n{self.log()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(10)
                raise AssertionError(f"server exited {self.proc.returncode} before ready; log:\n{self.log()}")
            if line.startswith("postoffice ready:"):
                for item in line.split(":", 1)[1].split():
                    name, _, where = item.partition("=")
                    host, _, port = where.rpartition(":")
                    self.ports[name] = (host, int(port))
                return self

    def port(self, name: str = "smtp") -> int:
        return self.ports[name][1]

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._close()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._close()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if getattr(self, "_log", None) is not None:
            self._log.close()


@contextlib.contextmanager
def serving(data: DataDir, **kwargs: Any) -> Iterator[ServerProcess]:
    """`postoffice run` on `data` for the `with` block (ServerProcess's keyword arguments pass through); at
    the end it must stop cleanly (exit status 0, else the log is shown), or is killed if it died."""
    proc = ServerProcess(data, **kwargs).start()
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            assert proc.stop() == 0, proc.log()
        else:
            proc.kill()
