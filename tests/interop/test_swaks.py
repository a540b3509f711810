"""swaks (Debian package), the SMTP swiss-army knife, against port 25 — plain and with STARTTLS."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.integration.harness import DataDir, ServerProcess
from tests.integration.mailcheck import inbox_messages

pytestmark = pytest.mark.interop

SWAKS = shutil.which("swaks") or "/usr/bin/swaks"


def swaks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SWAKS, *args], capture_output=True, text=True, timeout=120)


def test_swaks_delivers_to_the_demo_inbox(server: ServerProcess, data_dir: DataDir) -> None:
    proc = swaks(
        "--server",
        f"127.0.0.1:{server.port()}",
        "--to",
        "demo@example.test",
        "--from",
        "s@remote.test",
        "--header",
        "Subject: from swaks",
        "--body",
        "swaks body",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ((_, stored),) = inbox_messages(data_dir.root, "demo@example.test")
    assert b"Subject: from swaks" in stored
    assert b"swaks body" in stored


def test_swaks_with_starttls_and_pipelining(server: ServerProcess, data_dir: DataDir) -> None:
    proc = swaks(
        "--server",
        f"127.0.0.1:{server.port()}",
        "--to",
        "other@example.test",
        "--from",
        "s@remote.test",
        "--tls",
        "--pipeline",
        "--header",
        "Subject: swaks tls",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TLS started" in proc.stdout
    ((_, stored),) = inbox_messages(data_dir.root, "other@example.test")
    assert b"with ESMTPS" in stored


def test_swaks_relay_attempt_is_refused(server: ServerProcess, data_dir: DataDir) -> None:
    proc = swaks(
        "--server", f"127.0.0.1:{server.port()}", "--to", "victim@elsewhere.test", "--from", "s@remote.test"
    )
    assert proc.returncode != 0
    assert "554 5.7.1" in proc.stdout
    assert inbox_messages(data_dir.root, "demo@example.test") == []
