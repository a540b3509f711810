from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import DataDir, ServerProcess, make_data_dir


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
