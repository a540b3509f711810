"""SQLite backend of the mail store.

Modules: `store` (SqliteMailStore, assembled from the parts and opened; `open_backend` below is the
`postoffice.store.backends` entry), `base` (reads, writes, change notifications through
`postoffice.store.changes.ChangeBus`), `writer` (the group-commit writer thread), `migrations` (schema
versions), `connection` (connections, blob I/O), `columns` (flags and mailbox names as stored), `rows`
(row-level steps several writes share), `markers` (cross-process change detection with marker files), and
the parts: `directory`, `login_guard`, `mailboxes`, `messages`, `queue`, `delivery` (`commit_delivery`),
`dkim_keys` (DKIM signing keys), `metadata` (IMAP METADATA annotations, RFC 5464), `greylist`
(greylisting records, RFC 6647).

Implementation notes
- One database file in WAL mode with `synchronous = FULL`: a COMMIT returns after the WAL is fsynced, so a
  committed write survives a crash or power loss. Message bytes live in the database too (table
  content_data), so one commit makes a whole delivery durable with one fsync; see
  docs/decisions/0002-message-content-in-sqlite.md.
- Group commit: every write is a function queued to one writer thread. The writer takes everything that has
  queued up, runs each request inside its own SAVEPOINT (a failing request is rolled back alone), and COMMITs
  once for the batch. While one batch is being fsynced the next one queues, so under concurrent load there
  are fewer commits (fsyncs) than messages. A request's future resolves only after its batch committed.
- Invariant: change notifications are published only after the commit that made the change, and before the
  futures of that batch resolve.
- Reads run on a small thread pool, each thread with its own read-only connection, inside a read transaction
  (a consistent WAL snapshot). Large contents are streamed with incremental blob I/O on a connection of their
  own.
- UIDVALIDITY values come from meta.next_uidvalidity, which only grows; UIDs come from mailboxes.uidnext,
  which only grows; so neither is ever reused, not after expunge, mailbox deletion or a crash (the counters
  are written in the same transaction as the rows that use them).
- Nothing here blocks the event loop: every SQLite call happens on the writer thread or a reader thread.
- Deliveries (docs/decisions/0040): `commit_delivery` writes the whole delivery in one request, so in one
  savepoint: all or nothing; one content per distinct text, shared by the copies that name it.
- The outbound queue (docs/decisions/0017): queue_messages, queue_recipients, and the bytes in queue_data
  (written and streamed like content_data). The local copies and the queued message are one request
  (`commit_delivery`, of which `submit` is a form); so are delivery results and the DSNs they caused
  (`queue_record`), which also removes a message whose recipients are all final. A final
  recipient status never changes again (`queue_record` refuses the whole request), so results applied twice
  cannot queue a DSN twice. Queue subscribers are called after the commit, like change subscribers.
- Queue ids come from meta.next_queue_id (version 8), which only grows, so an id names one message for the
  life of the installation (an INTEGER PRIMARY KEY alone would reuse the highest id once it is deleted,
  and an emptied queue would start again at 1). A queued message keeps the id of the SMTP transaction that
  submitted it (`smtp_id`), so its delivery can be followed from the submission's log line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from postoffice.store.sqlite.columns import HIERARCHY_SEPARATOR, columns_to_flags, flags_to_columns
from postoffice.store.sqlite.connection import COPY_CHUNK, STREAM_THRESHOLD, WAL_SIZE_LIMIT
from postoffice.store.sqlite.messages import COPY_ROW_SIZE, SNAPSHOT_CACHE_MESSAGES
from postoffice.store.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION
from postoffice.store.sqlite.store import SqliteMailStore
from postoffice.store.sqlite.writer import MAX_BATCH

if TYPE_CHECKING:
    from postoffice.store.backends import StoreSettings


def open_backend(settings: StoreSettings) -> SqliteMailStore:
    """`postoffice.store.backends` entry: the store at `settings.path` (created when missing)."""
    return SqliteMailStore(
        settings.path, min_free_space=settings.min_free_space, disk_reserve=settings.disk_reserve
    )


__all__ = [
    "COPY_CHUNK",
    "COPY_ROW_SIZE",
    "HIERARCHY_SEPARATOR",
    "MAX_BATCH",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SNAPSHOT_CACHE_MESSAGES",
    "STREAM_THRESHOLD",
    "WAL_SIZE_LIMIT",
    "SqliteMailStore",
    "columns_to_flags",
    "flags_to_columns",
    "open_backend",
]
