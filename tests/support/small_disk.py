"""A small filesystem of a fixed size for the disk-full tests, for root and for everyone else.

A tmpfs is mounted in a private mount namespace (`unshare --user --map-root-user --mount`: no root needed
where unprivileged user namespaces are allowed, as on Debian and in most CI containers), held by a process
that lives until the test ends. Programs that use it run inside that namespace (`SmallDisk.run_inside`, the
`wrapper` for `ServerProcess`); the test reaches its files through /proc/PID/root (`outside`), with plain
file I/O only: SQLite resolves symbolic links, /proc/PID/root included, so it would open the wrong file.
Root on a system without user namespaces gets a tmpfs mounted directly. Anywhere else the test fails, with
what to enable, never skips.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USERNS_HINT = (
    "this test needs a small filesystem of its own: unprivileged user namespaces "
    "(`unshare --user --map-root-user --mount`; enable with `sysctl kernel.unprivileged_userns_clone=1`, "
    "or on Ubuntu `sysctl kernel.apparmor_restrict_unprivileged_userns=0`), or running as root"
)


@dataclass(frozen=True)
class SmallDisk:
    #: the mount point, as programs run with `wrapper` see it
    mount: Path
    #: the same directory for this process (plain file I/O only, never SQLite)
    outside: Path
    #: command prefix that runs a program inside the namespace ([] when mounted directly)
    wrapper: list[str]

    def run_inside(
        self, *command: str, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        # joining a mount namespace moves to its root directory: nsenter --wd sets the working directory
        wrapper = [*self.wrapper, f"--wd={cwd}"] if self.wrapper and cwd is not None else self.wrapper
        return subprocess.run(
            [*wrapper, *command], capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
        )

    def free(self) -> int:
        st = os.statvfs(self.outside)
        return st.f_bavail * st.f_frsize

    def fill(self, name: str = "filler", leave: int = 0) -> Path:
        """A file that takes all the free space but `leave` bytes (rounded to the block size); returns it."""
        path = self.outside / name
        with open(path, "wb", buffering=0) as f:
            block = b"\0" * 65536
            while self.free() > leave + len(block):
                f.write(block)
            small = b"\0" * 4096
            try:
                while self.free() > leave:
                    f.write(small)
            except OSError:
                pass
        return path


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[SmallDisk]:
    """A tmpfs of `size` (as mount's size= option, e.g. "16m") at the empty directory `where`."""
    where.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            f'mount -t tmpfs -o size={size},mode=0777 tmpfs "$0" && echo mounted && exec cat',
            str(where),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdin is not None
    if holder.stdout.readline().strip() == "mounted":
        try:
            # nsenter joins the user namespace as its owner: no privilege needed
            wrapper = ["nsenter", f"--target={holder.pid}", "--user", "--mount", "--preserve-credentials"]
            yield SmallDisk(where, Path(f"/proc/{holder.pid}/root") / where.relative_to("/"), wrapper)
        finally:
            holder.stdin.close()  # `cat` ends, and the namespace and its tmpfs with it
            holder.wait(30)
            holder.stdout.close()
            if holder.stderr is not None:
                holder.stderr.close()
        return
    holder.wait(30)
    error = holder.stderr.read() if holder.stderr is not None else ""
    for stream in (holder.stdin, holder.stdout, holder.stderr):
        if stream is not None:
            stream.close()
    if os.geteuid() != 0:
        pytest.fail(f"{USERNS_HINT}; unshare said: {error.strip()}")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(where)], check=True)
    try:
        yield SmallDisk(where, where, [])
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
