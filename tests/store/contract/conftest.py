"""Fixtures of the store contract suite: `backend` is parametrised over every backend in `HARNESSES`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.store.contract.harness import BACKEND_NAMES, HARNESSES, Backend


@pytest.fixture(scope="session")
def make_backend(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Backend]:
    """A fresh, empty store of the named backend per call (for property tests: one per example)."""

    def make(name: str) -> Backend:
        return Backend(name, HARNESSES[name](tmp_path_factory.mktemp(name)))

    return make


@pytest.fixture(params=BACKEND_NAMES)
def backend(request: pytest.FixtureRequest, make_backend: Callable[[str], Backend]) -> Backend:
    return make_backend(request.param)
