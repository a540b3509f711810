"""Process set-up in `postoffice.server` that needs no listener: the file descriptor limit."""

from __future__ import annotations

import logging
import resource
from collections.abc import Iterator

import pytest

from postoffice import server


@pytest.fixture
def restore_fd_limit() -> Iterator[tuple[int, int]]:
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        yield limits
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def _below(hard: int) -> int:
    """A soft limit under the hard one that the test process can live with."""
    return 128 if hard == resource.RLIM_INFINITY or hard > 256 else max(hard // 2, 1)


def test_raise_fd_limit_lifts_the_soft_limit_to_the_hard_limit(restore_fd_limit: tuple[int, int]) -> None:
    _, hard = restore_fd_limit
    lowered = _below(hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))

    new_soft = server.raise_fd_limit()

    assert new_soft > lowered
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (new_soft, hard)
    if hard != resource.RLIM_INFINITY:
        assert new_soft == hard


def test_raise_fd_limit_keeps_the_old_limit_when_the_system_refuses(
    restore_fd_limit: tuple[int, int], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _, hard = restore_fd_limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (_below(hard), hard))

    def refuse(which: int, limits: tuple[int, int]) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(server.resource, "setrlimit", refuse)
    with caplog.at_level(logging.WARNING, logger="postoffice.server"):
        assert server.raise_fd_limit() == 128
    assert "file descriptor limit stays at 128" in caplog.text
    monkeypatch.undo()
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (128, hard)
