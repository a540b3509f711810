"""IMAP sync under stress against a real `postoffice run` process: four concurrent clients work on one INBOX
for about ten seconds in each mode (plain, CONDSTORE, QRESYNC), and none of them is ever told something that
contradicts what the server said before (bench/imap_sync_stress.py: the model each client keeps, and the
checks). One server for the module: each run prepares the mailbox it needs (Archive, a few messages).

No sleeps: every step waits for the server's answer, bounded by the checker's per-command timeout.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import ServerProcess, make_data_dir, serving
from tests.integration.test_imap_idle_connections import set_option

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import imap_sync_stress as stress

pytestmark = pytest.mark.integration

USER = "demo@example.test"
PASSWORD = "demo-secret-pw"  # make_data_dir's password for "demo"
CLIENTS = 4
SECONDS = 10.0
MIN_COMMANDS = 100


@pytest.fixture(scope="module")
def stress_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = make_data_dir(tmp_path_factory.mktemp("sync-stress") / "data", users=("demo",))
    text = set_option(data.config.read_text(), "auth", "allow_plaintext_auth", "true")  # LOGIN on port imap
    data.config.write_text(text)
    with serving(data) as proc:
        yield proc


@pytest.mark.parametrize(("mode", "seed"), [("plain", 1), ("condstore", 2), ("qresync", 3)])
def test_concurrent_clients_are_never_told_contradicting_things(
    stress_server: ServerProcess, mode: str, seed: int
) -> None:
    result = asyncio.run(
        stress.run_stress(
            "127.0.0.1",
            stress_server.port("imap"),
            USER,
            PASSWORD,
            clients=CLIENTS,
            seconds=SECONDS,
            mode=mode,
            seed=seed,
        )
    )
    assert result.violations.count == 0, result.report()
    assert result.total_commands > MIN_COMMANDS, result.report()
    assert result.operations["sync_check"] > 0, result.report()
