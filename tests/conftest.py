from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.integration.harness import DataDir, ServerProcess, make_data_dir
from tests.support.unbuilt import unbuilt_protocol

__all__ = ["unbuilt_protocol"]  # a fixture for every test module

# Property tests: no per-example deadline (timings are never pass/fail here, and CI machines are shared).
# On CI (CI=true) the examples are derandomized, so a run is reproducible; locally they stay random.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    return make_data_dir(tmp_path / "data", users=("demo", "other"))


@pytest.fixture
def server(data_dir: DataDir) -> Iterator[ServerProcess]:
    proc = ServerProcess(data_dir).start()
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            code = proc.stop()
            assert code == 0, proc.log()
        else:
            proc.kill()
