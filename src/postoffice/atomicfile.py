"""Atomic, durable file replacement for files written outside the store (config, TLS key, mbox export).

Invariant: a reader sees the old file or the new one, never a mix; after return the new file survives a
crash (the data and the directory entry are fsynced). The temporary file has its final mode before any byte is
written, and it is removed when writing fails.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_output(path: Path, mode: int = 0o600) -> Iterator[IO[bytes]]:
    """Write through the yielded file; `path` is replaced when the block ends without an exception."""
    path = path.absolute()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    with atomic_output(path, mode) as f:
        f.write(data)
