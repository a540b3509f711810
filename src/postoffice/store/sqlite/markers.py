"""Cross-process change detection of the SQLite backend: marker files.

Several processes use one store (the server, and the CLI that adds accounts or lifts lockouts). What a
process keeps in memory (the directory snapshot, the lockouts) must learn of changes the others commit.
After such a commit the writing process replaces a marker file beside the store (`<store>.directory`,
`<store>.lockouts`); a reader stats it (about a microsecond) and reloads when its (inode, mtime) changed.
Other backends detect changes their own way behind the same API (`MailStore.resolve_recipient` sees every
committed directory change, `MailStore.login_guard_generation` changes after every unlock;
docs/decisions/0037), e.g. with LISTEN/NOTIFY.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from postoffice.store.space import is_disk_full


class ChangeMarker:
    """A marker file replaced after each change; `generation()` is what a reader compares."""

    def __init__(self, path: Path, *, utime_on_full_disk: bool = False) -> None:
        self.path = path
        #: on a full disk, when no new file can be written, move the mtime on instead (decision 0030)
        self._utime_on_full_disk = utime_on_full_disk

    def generation(self) -> tuple[int, int] | None:
        """(inode, mtime in ns) of the marker; None when it cannot be read (the reader then reloads)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def touch(self) -> None:
        """Replace the marker (a new inode: a change within one mtime tick is still seen). Blocking I/O:
        callers run it off the event loop."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        if not self._utime_on_full_disk:
            tmp.write_text(f"{time.time_ns()}\n")
            os.replace(tmp, self.path)
            return
        try:
            tmp.write_text(f"{time.time_ns()}\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            if not is_disk_full(exc) or not self.path.exists():
                raise
            # a full disk (decision 0030): a new mtime needs no space, and every reader compares it too
            tmp.unlink(missing_ok=True)
            os.utime(self.path)
