"""Connections to the SQLite store and the blob I/O every part uses.

Every connection runs with `synchronous = FULL` (a COMMIT returns after the WAL is fsynced), foreign keys on,
`secure_delete = FAST` and a bounded page cache; readers add `query_only`. Blobs larger than `COPY_CHUNK` are
written, and larger than `STREAM_THRESHOLD` read, with incremental blob I/O, so memory stays bounded whatever
the message size.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import IO, Literal

from postoffice.plural import counted
from postoffice.store.api import StoreError

#: The WAL is truncated to this size when it is reset after a checkpoint (PRAGMA journal_size_limit).
WAL_SIZE_LIMIT = 16 * 1024 * 1024

#: Contents up to this size are read in one go; larger ones are streamed with incremental blob I/O.
STREAM_THRESHOLD = 1024 * 1024
COPY_CHUNK = 1024 * 1024


def connect(path: Path, *, readonly: bool = False, check_same_thread: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")
    # Deleted pages are not zeroed where that costs writes (Debian builds SQLite with secure_delete on): a
    # deletion then writes a few pages, not the whole message again, so it fits a full disk's reserve
    # (decision 0030). Deleted bytes stay in free pages until reused, as on a filesystem.
    conn.execute("PRAGMA secure_delete = FAST")
    # After a large transaction (a 50 MB message) the WAL is cut back to this size when it is next reset,
    # instead of keeping its largest size until the store closes (decision 0030).
    conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
    # 8 MiB page cache per connection: bounded whatever the message sizes (a 50 MB blob passes through it)
    conn.execute("PRAGMA cache_size = -8192")
    if readonly:
        conn.execute("PRAGMA query_only = 1")
    return conn


#: The tables `write_blob` writes: the table name is the one part of its SQL not a constant in place.
BlobTable = Literal["content_data", "queue_data"]


def write_blob(conn: sqlite3.Connection, table: BlobTable, rowid: int, source: IO[bytes], size: int) -> None:
    """`size` bytes of `source` (from offset 0) into `table`.data at `rowid`; large ones in chunks with
    incremental blob I/O, so memory stays bounded whatever the size. A short source raises (and the request's
    savepoint rolls everything back)."""
    source.seek(0)
    if size <= COPY_CHUNK:
        data = source.read(size)
        if len(data) != size:
            raise StoreError(f"message source is {counted(len(data), 'byte')}, expected {size}")
        conn.execute(f"INSERT INTO {table} (id, data) VALUES (?, ?)", (rowid, data))  # noqa: S608 - BlobTable
        return
    conn.execute(f"INSERT INTO {table} (id, data) VALUES (?, zeroblob(?))", (rowid, size))  # noqa: S608 - BlobTable
    written = 0
    with conn.blobopen(table, "data", rowid) as blob:
        while written < size:
            chunk = source.read(min(COPY_CHUNK, size - written))
            if not chunk:
                raise StoreError(f"message source ended after {written} of {counted(size, 'byte')}")
            blob.write(chunk)
            written += len(chunk)
