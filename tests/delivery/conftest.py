"""Fixtures of the delivery tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.delivery.harness import Harness, MakeHarness


@pytest.fixture
def make(tmp_path: Path) -> Iterator[MakeHarness]:
    made: list[Harness] = []

    def new() -> Harness:
        harness = Harness(tmp_path / f"h{len(made)}")
        made.append(harness)
        return harness

    yield new
    for harness in made:
        harness.stop()
