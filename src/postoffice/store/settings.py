"""The `[store]` section: where the mail store and the spool live, and the disk space they keep free
(docs/decisions/0030).

Declarations only (`postoffice.settings`): imported by `postoffice.config`, so nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from postoffice.settings import section, setting


@section("store")
@dataclass(frozen=True)
class StoreConfig:
    backend: str = setting(
        "sqlite",
        "the store's database: sqlite (embedded, nothing to install)",
        doc=(
            "Which database holds the mail store. `sqlite` (the default) is embedded in the server: "
            "nothing to install or run beside it. Other backends come with their own settings "
            "(docs/decisions/0037)."
        ),
        choices=("sqlite",),  # the names of store.backends.BACKENDS (a test keeps them equal)
    )
    path: Path = setting(
        Path("store/mail.sqlite3"),
        "the SQLite mail store (WAL files live beside it)",
        doc="The SQLite mail store. Its `-wal` and `-shm` files live beside it.",
    )
    spool_dir: Path = setting(
        Path("spool"),
        "temporary files for messages being received",
        doc="Temporary files for messages being received; each is removed when its transaction ends.",
    )
    min_free_space: int = setting(
        104857600,
        "bytes; new mail is refused (SMTP 452 4.3.1) before it leaves less free on the store's disk",
        doc=(
            "Bytes (100 MiB) that new mail must leave free on the store's filesystem. A delivery, "
            "submission, APPEND or COPY that could leave less is refused: SMTP `452 4.3.1` (at `MAIL` "
            "already when the declared `SIZE` does not fit), IMAP `NO [OVERQUOTA]`. Reading, flag changes "
            "and deleting mail are never refused for space. Free pages inside the store count as free: "
            "deleted mail makes room for new mail (the journal's frames of a commit may use this margin "
            "for the moment of the commit). `0` = refuse only when the disk is actually full."
        ),
        minimum=0,
    )
    tombstone_days: int = setting(
        90,
        "days an expunge is remembered for IMAP clients that resynchronise (QRESYNC, CONDSTORE)",
        doc=(
            "Days a record of each expunged message is kept, so that a mail program that was offline "
            "learns exactly which messages went (IMAP QRESYNC's `VANISHED (EARLIER)`, RFC 7162). Older "
            "records are removed a few times a day; a program offline for longer still resynchronises "
            "correctly, but is told every UID it knew that is gone, which costs it more. `0` = keep them "
            "for ever (docs/decisions/0069)."
        ),
        minimum=0,
    )
    disk_reserve: int = setting(
        16777216,
        "bytes kept in <store>.reserve, given back when the disk fills so that deleting mail works",
        doc=(
            "Bytes (16 MiB) kept allocated in the file `<path>.reserve` (e.g. "
            "`store/mail.sqlite3.reserve`). When the disk fills up anyway (another program, or a larger "
            "write than estimated), the store gives its space back so that deletions, flag changes and the "
            "`\\Recent` bookkeeping still work, logs an error, and makes the reserve again as soon as there "
            "is room for it (in part while there is less: every full disk finds one). New mail is refused "
            "until the reserve is whole and `min_free_space` is left besides. `0` = no reserve."
        ),
        minimum=0,
    )
