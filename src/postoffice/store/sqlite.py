"""SQLite backend of the mail store.

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
- The outbound queue (docs/decisions/0017): queue_messages, queue_recipients, and the bytes in queue_data
  (written and streamed like content_data). `submit` writes the local copies and the queued message in one
  request, so in one savepoint: all or nothing. `queue_record` writes delivery results and the DSNs they
  caused in one request, and removes a message whose recipients are all final in that same request. A final
  recipient status never changes again (`queue_record` refuses the whole request), so results applied twice
  cannot queue a DSN twice. Queue subscribers are called after the commit, like change subscribers.
- Queue ids come from meta.next_queue_id (version 8), which only grows, so an id names one message for the
  life of the installation (an INTEGER PRIMARY KEY alone would reuse the highest id once it is deleted,
  and an emptied queue would start again at 1). A queued message keeps the id of the SMTP transaction that
  submitted it (`smtp_id`), so its delivery can be followed from the submission's log line.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import functools
import io
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from postoffice.directory.resolver import AddressLookup, Resolution, normalize_address, resolve
from postoffice.message import ParsedMessage
from postoffice.message.imap_forms import ImapRendering, render_imap_forms
from postoffice.plural import counted
from postoffice.store.api import (
    DEFAULT_MAILBOXES,
    FINAL_STATUSES,
    LOGIN_GUARD_KINDS,
    QUEUE_STATUSES,
    SYSTEM_FLAGS,
    Account,
    Alias,
    AlreadyExists,
    AppendItem,
    ChangeEvent,
    DeliveredCopy,
    Domain,
    GeneratedMessage,
    LimitExceeded,
    LocalCopy,
    LoginGuardEntry,
    MailboxChanges,
    MailboxInfo,
    MailboxSnapshot,
    MailboxStatus,
    MailStore,
    MessageInfo,
    NotFound,
    OutboundMessage,
    PathLike,
    QueuedMessage,
    QueuedRecipient,
    QueueStats,
    RecipientResult,
    StoreError,
    StoreFull,
    SubmitResult,
    advance_snapshot,
    build_snapshot,
)
from postoffice.store.criteria import Criteria
from postoffice.store.search import register_functions, run_search
from postoffice.store.space import (
    DEFAULT_MIN_FREE,
    DEFAULT_RESERVE,
    Admission,
    DiskSpace,
    cost,
    is_disk_full,
)

log = logging.getLogger("postoffice.store")

#: IMAP hierarchy separator (RFC 9051 section 5.1): mailbox names are paths like "Archive/2026".
HIERARCHY_SEPARATOR = "/"

T = TypeVar("T")
SCHEMA_VERSION = 8


def _add_column(table: str, column: str, declaration: str) -> Callable[[sqlite3.Connection], None]:
    """ALTER TABLE ADD COLUMN unless the column exists (SQLite has no IF NOT EXISTS for columns), so that a
    migration also applies to a store whose tables already have it."""

    def step(conn: sqlite3.Connection) -> None:
        if not any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})")):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    return step


def _replace_nul_in_search_text(conn: sqlite3.Connection) -> None:
    """U+0000 -> U+FFFD in content_search (SQL's replace() cannot take a NUL pattern)."""
    rows = conn.execute(
        "SELECT rowid, headers, body FROM content_search "
        "WHERE instr(headers, char(0)) > 0 OR instr(body, char(0)) > 0"
    ).fetchall()
    conn.executemany(
        "UPDATE content_search SET headers = ?, body = ? WHERE rowid = ?",
        [(str(h).replace("\x00", "\ufffd"), str(b).replace("\x00", "\ufffd"), rowid) for rowid, h, b in rows],
    )


_CREATE_CONTENT_IMAP = (
    "CREATE TABLE IF NOT EXISTS content_imap (id INTEGER PRIMARY KEY, envelope BLOB NOT NULL, "
    "bodystructure BLOB NOT NULL, envelope_utf8 BLOB, bodystructure_utf8 BLOB)"
)


def _render_for_imap(parsed: ParsedMessage) -> ImapRendering | None:
    """The IMAP renderings kept with a content (None if rendering fails: FETCH then renders from the parse,
    and a delivery never fails for it). Kept as Dovecot keeps imap.envelope and imap.bodystructure in its
    cache; rendered by `postoffice.message.imap_forms`, so the store needs no protocol package."""
    try:
        return render_imap_forms(parsed)
    except Exception:  # pragma: no cover - the renderer takes any parse; this guards delivery regardless
        log.exception("cannot render the IMAP summary of a message")
        return None


def _insert_rendering(conn: sqlite3.Connection, content_id: int, rendering: ImapRendering | None) -> None:
    if rendering is not None:
        conn.execute(
            "INSERT OR REPLACE INTO content_imap (id, envelope, bodystructure, envelope_utf8, "
            "bodystructure_utf8) VALUES (?, ?, ?, ?, ?)",
            (
                content_id,
                rendering.envelope,
                rendering.bodystructure,
                rendering.envelope_utf8,
                rendering.bodystructure_utf8,
            ),
        )


def _backfill_content_imap(conn: sqlite3.Connection) -> None:
    rows = conn.execute(
        "SELECT id, parsed FROM contents WHERE id NOT IN (SELECT id FROM content_imap)"
    ).fetchall()
    for content_id, parsed in rows:
        _insert_rendering(conn, int(content_id), _render_for_imap(ParsedMessage.from_json(str(parsed))))


_CREATE_QUEUE = (
    "CREATE TABLE IF NOT EXISTS queue_messages (id INTEGER PRIMARY KEY, sender TEXT NOT NULL, envid TEXT, "
    "ret TEXT, account_id INTEGER REFERENCES accounts(id) ON DELETE SET NULL, created REAL NOT NULL, "
    "size INTEGER NOT NULL, smtputf8 INTEGER NOT NULL DEFAULT 0, eight_bit INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS queue_messages_created ON queue_messages(created)",
    "CREATE TABLE IF NOT EXISTS queue_data (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS queue_recipients (id INTEGER PRIMARY KEY, "
    "message_id INTEGER NOT NULL REFERENCES queue_messages(id), address TEXT NOT NULL, orcpt TEXT, "
    "notify TEXT, status TEXT NOT NULL DEFAULT 'pending' "
    "CHECK (status IN ('pending', 'delivered', 'failed', 'expired')), attempts INTEGER NOT NULL DEFAULT 0, "
    "next_attempt REAL NOT NULL, first_attempt REAL, last_attempt REAL, last_code INTEGER, "
    "last_enhanced TEXT, last_text TEXT, remote_mta TEXT, delay_warned INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS queue_recipients_message ON queue_recipients(message_id)",
    "CREATE INDEX IF NOT EXISTS queue_recipients_due ON queue_recipients(next_attempt) "
    "WHERE status = 'pending'",
)

_CREATE_LOGIN_GUARD = (
    "CREATE TABLE IF NOT EXISTS login_guard (kind TEXT NOT NULL "
    "CHECK (kind IN ('client', 'account', 'pair', 'trust')), client TEXT NOT NULL DEFAULT '', "
    "account TEXT NOT NULL DEFAULT '', until REAL NOT NULL, since REAL NOT NULL, "
    "PRIMARY KEY (kind, client, account)) WITHOUT ROWID",
)

#: Steps that bring a store from version N to N + 1 (SQL statements, or functions of the connection),
#: applied in one transaction at open.
MIGRATIONS: dict[int, tuple[str | Callable[[sqlite3.Connection], None], ...]] = {
    1: (
        "ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 0",
        "CREATE TABLE subscriptions (account_id INTEGER NOT NULL REFERENCES accounts(id), "
        "name TEXT NOT NULL, PRIMARY KEY (account_id, name)) WITHOUT ROWID",
        "INSERT INTO subscriptions (account_id, name) "
        "SELECT account_id, name FROM mailboxes WHERE subscribed = 1",
    ),
    # SEARCH (docs/decisions/0014): SENT* dates and the truncated-text flag as columns, backfilled from the
    # stored structure; NUL in the search text as U+FFFD (SQLite's LIKE stops at a NUL).
    2: (
        _add_column("contents", "sent_date", "TEXT"),
        _add_column("contents", "search_truncated", "INTEGER NOT NULL DEFAULT 0"),
        "UPDATE contents SET sent_date = json_extract(parsed, '$.sent_date'), "
        "search_truncated = coalesce(json_extract(parsed, '$.search_truncated'), 0)",
        "CREATE INDEX IF NOT EXISTS contents_search_truncated ON contents(search_truncated) "
        "WHERE search_truncated = 1",
        _replace_nul_in_search_text,
    ),
    # Incremental mailbox sync (changes_since): the messages changed after a MODSEQ, without a full scan.
    3: (
        "CREATE INDEX IF NOT EXISTS messages_modseq ON messages(mailbox_id, modseq)",
        "CREATE INDEX IF NOT EXISTS tombstones_modseq ON tombstones(mailbox_id, modseq)",
    ),
    # FETCH ENVELOPE / BODYSTRUCTURE from renderings made once (docs/decisions/0016), backfilled here.
    4: (_CREATE_CONTENT_IMAP, _backfill_content_imap),
    # The outbound queue (docs/decisions/0017): new tables only.
    5: _CREATE_QUEUE,
    # Lockouts kept across restarts (docs/decisions/0027): a new table only.
    6: _CREATE_LOGIN_GUARD,
    # Queue ids unique for the life of the installation (meta.next_queue_id, continuing after the highest id
    # in the queue: ids used before this version and deleted since cannot be known), and the submission's
    # SMTP transaction id.
    7: (
        _add_column("queue_messages", "smtp_id", "TEXT"),
        "INSERT OR IGNORE INTO meta (key, value) "
        "SELECT 'next_queue_id', coalesce(max(id), 0) + 1 FROM queue_messages",
    ),
}
#: Mailbox snapshots kept for SELECT, in messages over all mailboxes (about 36 octets each).
SNAPSHOT_CACHE_MESSAGES = 1_000_000
#: The WAL is truncated to this size when it is reset after a checkpoint (PRAGMA journal_size_limit).
WAL_SIZE_LIMIT = 16 * 1024 * 1024
#: Largest batch the writer commits at once.
MAX_BATCH = 256
#: Octets a COPY/MOVE row counts as for admission (decision 0030): the row and its index entries (the content
#: is shared).
COPY_ROW_SIZE = 256
#: Contents up to this size are read in one go; larger ones are streamed with incremental blob I/O.
STREAM_THRESHOLD = 1024 * 1024
COPY_CHUNK = 1024 * 1024

_FLAG_BITS = {name.lower(): 1 << i for i, name in enumerate(SYSTEM_FLAGS)}


def flags_to_columns(flags: Iterable[str]) -> tuple[int, str]:
    """Split IMAP flags into the system-flag bit mask and the sorted keyword string (\\Recent is not
    stored)."""
    bits = 0
    keywords: set[str] = set()
    for flag in flags:
        bit = _FLAG_BITS.get(flag.lower())
        if bit is not None:
            bits |= bit
        elif not flag.startswith("\\"):
            keywords.add(flag)
    return bits, " ".join(sorted(keywords))


@functools.lru_cache(maxsize=4096)
def columns_to_flags(bits: int, keywords: str) -> frozenset[str]:
    """Cached: a mailbox has few distinct flag combinations, and listing 10,000 messages builds one each."""
    names = [name for i, name in enumerate(SYSTEM_FLAGS) if bits & (1 << i)]
    if keywords:
        names.extend(keywords.split(" "))
    return frozenset(names)


def _normalize_mailbox(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else name


def _connect(path: Path, *, readonly: bool = False, check_same_thread: bool = True) -> sqlite3.Connection:
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


def _write_blob(conn: sqlite3.Connection, table: str, rowid: int, source: IO[bytes], size: int) -> None:
    """`size` bytes of `source` (from offset 0) into `table`.data at `rowid`; large ones in chunks with
    incremental blob I/O, so memory stays bounded whatever the size. A short source raises (and the request's
    savepoint rolls everything back)."""
    source.seek(0)
    if size <= COPY_CHUNK:
        data = source.read(size)
        if len(data) != size:
            raise StoreError(f"message source is {counted(len(data), 'byte')}, expected {size}")
        conn.execute(f"INSERT INTO {table} (id, data) VALUES (?, ?)", (rowid, data))
        return
    conn.execute(f"INSERT INTO {table} (id, data) VALUES (?, zeroblob(?))", (rowid, size))
    written = 0
    with conn.blobopen(table, "data", rowid) as blob:
        while written < size:
            chunk = source.read(min(COPY_CHUNK, size - written))
            if not chunk:
                raise StoreError(f"message source ended after {written} of {counted(size, 'byte')}")
            blob.write(chunk)
            written += len(chunk)


@dataclasses.dataclass(frozen=True)
class _LocalDelivery:
    """What `deliver` and `submit` prepare on the event loop before their transaction."""

    source: IO[bytes]
    parsed: ParsedMessage
    parsed_json: str
    targets: list[int]
    mailbox: str
    bits: int
    keywords: str
    internaldate: float

    @classmethod
    def prepare(
        cls,
        source: IO[bytes],
        parsed: ParsedMessage,
        account_ids: Iterable[int],
        mailbox: str,
        flags: Iterable[str],
        internaldate: float | None,
    ) -> _LocalDelivery:
        targets = list(dict.fromkeys(account_ids))
        # the search text lives in the FTS table only; the stored structure omits it
        parsed_json = (
            dataclasses.replace(parsed, search_headers="", search_text="").to_json() if targets else ""
        )
        bits, keywords = flags_to_columns(flags)
        when = time.time() if internaldate is None else internaldate
        return cls(source, parsed, parsed_json, targets, _normalize_mailbox(mailbox), bits, keywords, when)


def _check_outbound(outbound: OutboundMessage) -> None:
    if not outbound.recipients:
        raise ValueError("a queued message needs at least one recipient")
    if outbound.ret is not None and outbound.ret.upper() not in ("FULL", "HDRS"):
        raise ValueError(f"RET must be FULL or HDRS, not {outbound.ret!r}")


def _queued_recipient(r: Sequence[Any]) -> QueuedRecipient:
    """From a row of SqliteMailStore._QUEUE_RECIPIENT_SQL (message_id first)."""
    return QueuedRecipient(
        id=int(r[1]),
        address=r[2],
        orcpt=r[3],
        notify=r[4],
        status=r[5],
        attempts=int(r[6]),
        next_attempt=float(r[7]),
        first_attempt=r[8],
        last_attempt=r[9],
        last_code=r[10],
        last_enhanced=r[11],
        last_text=r[12],
        remote_mta=r[13],
        delay_warned=bool(r[14]),
    )


def _queued_message(row: Sequence[Any], recipients: Iterable[QueuedRecipient]) -> QueuedMessage:
    """From a row of SqliteMailStore._QUEUE_MESSAGE_SQL."""
    return QueuedMessage(
        id=int(row[0]),
        sender=row[1],
        envid=row[2],
        ret=row[3],
        account_id=row[4],
        created=float(row[5]),
        size=int(row[6]),
        smtputf8=bool(row[7]),
        eight_bit=bool(row[8]),
        recipients=tuple(recipients),
        smtp_id=row[9],
    )


class _WriteRequest:
    __slots__ = ("fn", "future", "grows")

    def __init__(self, fn: Callable[[sqlite3.Connection, list[ChangeEvent]], Any], grows: int | None) -> None:
        self.fn = fn
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        #: message octets the request adds (admitted against the free space first), None: it adds none
        self.grows = grows


@dataclasses.dataclass
class _Attempt:
    """One transaction over some requests: what each request gave, and whether the commit happened."""

    outcomes: list[tuple[_WriteRequest, Any, BaseException | None]]
    #: the requests that failed for lack of disk space (SQLITE_FULL), all of them when the transaction was
    #: lost: worth running again once the reserve has given its space back
    out_of_space: list[_WriteRequest]


class _Writer(threading.Thread):
    """The single writer thread: group commit of everything that queued up."""

    def __init__(self, path: Path, publish: Callable[[list[ChangeEvent]], None], space: DiskSpace) -> None:
        super().__init__(name="postoffice-store-writer", daemon=True)
        self._path = path
        self._publish = publish
        self._space = space
        self._queue: queue.SimpleQueue[_WriteRequest | None] = queue.SimpleQueue()
        self.commits = 0
        self.requests = 0
        self.failed_commits = 0
        self.reserve_releases = 0
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    def submit(
        self, fn: Callable[[sqlite3.Connection, list[ChangeEvent]], Any], grows: int | None = None
    ) -> concurrent.futures.Future[Any]:
        if not self.is_alive():
            raise StoreError("the store is closed")
        request = _WriteRequest(fn, grows)
        self._queue.put(request)
        return request.future

    def stop(self) -> None:
        self._queue.put(None)

    def run(self) -> None:
        try:
            conn = _connect(self._path)
        except BaseException as exc:  # reported by the thread that waits for startup
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                self._run_batch(conn, batch)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("checkpoint at close failed: %s", exc)
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_WriteRequest]) -> None:
        batch = [request for request in batch if request.future.set_running_or_notify_cancel()]
        self.requests += len(batch)
        results: dict[int, tuple[Any, BaseException | None]] = {}
        attempt = self._attempt(conn, batch)
        for request, result, error in attempt.outcomes:
            results[id(request)] = (result, error)
        if attempt.out_of_space:
            self._space.tight = True
        if attempt.out_of_space and self._space.release_reserve():
            # Decision 0030: the reserve makes room for what frees space; growing writes are refused from
            # now until the disk has room for the reserve again (Admission remakes it then).
            self.reserve_releases += 1
            log.error(
                "the disk holding %s is full: released the %d-byte reserve %s so that deletions can go on; "
                "new mail is refused until there is free space again",
                self._path,
                self._space.reserve,
                self._space.reserve_path,
            )
            # one transaction each: a request that fails again (larger than the reserve) fails alone
            for retry in attempt.out_of_space:
                for request, result, error in self._attempt(conn, [retry]).outcomes:
                    results[id(request)] = (result, error)
        if self._space.tight:
            self._truncate_wal(conn)
        for request in batch:
            result, error = results[id(request)]
            if error is not None:
                request.future.set_exception(error)
            else:
                request.future.set_result(result)

    def _attempt(self, conn: sqlite3.Connection, requests: list[_WriteRequest]) -> _Attempt:
        """Run `requests` in one transaction, each in its own savepoint; commit; publish the events."""
        outcomes: list[tuple[_WriteRequest, Any, BaseException | None]] = []
        events: list[ChangeEvent] = []
        out_of_space: list[_WriteRequest] = []

        def void(exc: BaseException, why: str) -> _Attempt:
            """Nothing of the transaction is stored: every request fails with `exc`'s reason."""
            self.failed_commits += 1
            log.error("%s, %s rolled back: %s", why, counted(len(requests), "request"), exc)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            full = is_disk_full(exc)
            error: StoreError = (StoreFull if full else StoreError)(f"{why}: {exc}")
            error.__cause__ = exc
            return _Attempt([(r, None, error) for r in requests], list(requests) if full else [])

        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return void(exc, "cannot begin a transaction")
        admission = Admission(self._space, conn)
        for request in requests:
            own_events: list[ChangeEvent] = []
            try:
                conn.execute("SAVEPOINT request")
            except sqlite3.Error as exc:
                return void(exc, "cannot open a savepoint")
            try:
                if request.grows is not None:
                    admission.admit(request.grows)
                result = request.fn(conn, own_events)
            except BaseException as exc:
                if not conn.in_transaction:
                    # SQLite rolled the whole transaction back (it does for SQLITE_FULL, IOERR and NOMEM
                    # outside a statement journal): the requests before this one are gone too.
                    return void(exc, "transaction rolled back by SQLite")
                try:
                    conn.execute("ROLLBACK TO request")
                    conn.execute("RELEASE request")
                except sqlite3.Error as rollback_error:
                    return void(rollback_error, "rollback to a savepoint failed")
                outcomes.append((request, None, exc))
                if is_disk_full(exc):
                    out_of_space.append(request)
            else:
                try:
                    conn.execute("RELEASE request")
                except sqlite3.Error as exc:
                    return void(exc, "cannot release a savepoint")
                outcomes.append((request, result, None))
                events.extend(own_events)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            return void(exc, "commit failed")
        self.commits += 1
        if events:
            self._publish(events)
        return _Attempt(outcomes, out_of_space)

    def _truncate_wal(self, conn: sqlite3.Connection) -> None:
        """While space is tight: copy the WAL into the database and truncate it, so that freed pages are
        reusable and the WAL's size is back on the filesystem. Readers are not waited for (busy_timeout 0):
        a checkpoint that cannot finish now finishes after a later commit."""
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                conn.execute("PRAGMA busy_timeout = 30000")
        except sqlite3.Error as exc:
            log.debug("checkpoint while space is tight: %s", exc)


class _DirectorySnapshot:
    """Domains, accounts and aliases held in memory, so that resolving a recipient costs no I/O."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.domains = [str(r[0]) for r in conn.execute("SELECT name FROM domains ORDER BY id")]
        self.domain_set = set(self.domains)
        self.accounts = {str(r[0]): int(r[1]) for r in conn.execute("SELECT address, id FROM accounts")}
        self.aliases = {
            str(r[0]): tuple(json.loads(r[1])) for r in conn.execute("SELECT source, targets FROM aliases")
        }

    def lookup(self, addr: str) -> AddressLookup:
        domain = addr.rpartition("@")[2]
        if domain not in self.domain_set:
            return AddressLookup(domain_served=False)
        return AddressLookup(True, self.accounts.get(addr), self.aliases.get(addr))

    def first_domain(self) -> str | None:
        return self.domains[0] if self.domains else None


class SqliteMailStore(MailStore):
    def __init__(
        self,
        path: PathLike,
        *,
        reader_threads: int = 4,
        min_free_space: int = DEFAULT_MIN_FREE,
        disk_reserve: int = DEFAULT_RESERVE,
    ) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._initialise()
        self._space = DiskSpace(self._path, min_free=min_free_space, reserve=disk_reserve)
        if not self._space.make_reserve():  # opening never depends on free space (decision 0030)
            log.warning(
                "no room for the %d-byte disk reserve %s: new mail is refused until there is",
                disk_reserve,
                self._space.reserve_path,
            )
        self._subscribers: dict[int, list[Callable[[ChangeEvent], None]]] = {}
        self._queue_subscribers: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer = _Writer(self._path, self._publish_from_writer, self._space)
        self._writer.start()
        self._writer._ready.wait()
        if self._writer._startup_error is not None:
            raise StoreError(f"cannot open the store: {self._writer._startup_error}")
        self._local = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=reader_threads, thread_name_prefix="postoffice-store-reader"
        )
        self._closed = False
        self._directory_marker = self._path.with_name(self._path.name + ".directory")
        self._directory_key: tuple[int, int] | None = None
        self._directory: _DirectorySnapshot | None = None
        # mailbox id -> the newest snapshot read (LRU, bounded by SNAPSHOT_CACHE_MESSAGES in all)
        self._snapshots: collections.OrderedDict[int, MailboxSnapshot] = collections.OrderedDict()
        if not self._directory_marker.exists():
            try:
                self._touch_directory_marker()
            except OSError as exc:
                log.warning("cannot create the directory marker %s: %s", self._directory_marker, exc)

    # -- setup -----------------------------------------------------------------------------------------------
    def _initialise(self) -> None:
        conn = _connect(self._path)
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"the store at {self._path} cannot use WAL mode (got {mode})")
            exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
            if exists is None:
                schema = resources.files("postoffice.store").joinpath("schema.sql").read_text()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in schema.split(";\n"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.executemany(
                        "INSERT INTO meta (key, value) VALUES (?, ?)",
                        [
                            ("schema_version", SCHEMA_VERSION),
                            ("next_uidvalidity", int(time.time())),
                            ("next_queue_id", 1),
                        ],
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            else:
                self._migrate(conn)
        finally:
            conn.close()
        try:
            os.chmod(self._path, 0o600)
        except OSError:
            pass

    def _migrate(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = None if row is None else int(row[0])
        if version == SCHEMA_VERSION:
            return
        if version is None or version > SCHEMA_VERSION or version not in MIGRATIONS:
            raise StoreError(
                f"the store at {self._path} has schema version {version}; this Postoffice knows "
                f"versions up to {SCHEMA_VERSION}"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            while version < SCHEMA_VERSION:
                for statement in MIGRATIONS[version]:
                    if isinstance(statement, str):
                        conn.execute(statement)
                    else:
                        statement(conn)
                version += 1
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("store %s migrated to schema version %d", self._path, version)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.stop()
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self._readers.shutdown(wait=True)
        with self._reader_lock:
            for conn in self._reader_connections:
                conn.close()
            self._reader_connections.clear()

    # -- plumbing --------------------------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # check_same_thread=False only so that close() can close it; it is used by this thread alone
            conn = _connect(self._path, readonly=True, check_same_thread=False)
            register_functions(conn)
            self._local.conn = conn
            with self._reader_lock:
                self._reader_connections.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreError("the store is closed")

        def run() -> T:
            conn = self._reader()
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, run)

    async def _write(
        self, fn: Callable[[sqlite3.Connection, list[ChangeEvent]], T], *, grows: int | None = None
    ) -> T:
        """Run `fn` in the writer's next transaction. `grows`: the message octets it adds, admitted against
        the free disk space first (docs/decisions/0030); None for writes that add no message."""
        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        self._loop = loop
        future = self._writer.submit(fn, grows)
        try:
            result: T = await asyncio.wrap_future(future, loop=loop)
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(str(exc)) from exc
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                raise StoreFull(str(exc)) from exc
            raise StoreError(str(exc)) from exc
        return result

    async def has_room(self, size: int) -> bool:
        """Whether a message of `size` octets would be admitted now (SMTP asks at MAIL, RFC 1870 SIZE)."""

        def q(conn: sqlite3.Connection) -> bool:
            room, free_pages = self._space.room(conn, remake=False)
            return cost(size, free_pages)[0] <= room

        return await self._read(q)

    def _publish_from_writer(self, events: list[ChangeEvent]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._dispatch, events)
        except RuntimeError:
            pass

    def _dispatch(self, events: list[ChangeEvent]) -> None:
        queue_changed = False
        for event in events:
            if event.kind == "queue":  # not an account's change: for `subscribe_queue` only
                queue_changed = True
                continue
            for callback in list(self._subscribers.get(event.account_id, ())):
                try:
                    callback(event)
                except Exception:
                    log.exception("change subscriber failed")
        if queue_changed:
            for queue_callback in list(self._queue_subscribers):
                try:
                    queue_callback()
                except Exception:
                    log.exception("queue subscriber failed")

    def subscribe(self, account_id: int, callback: Callable[[ChangeEvent], None]) -> Callable[[], None]:
        self._subscribers.setdefault(account_id, []).append(callback)

        def unsubscribe() -> None:
            callbacks = self._subscribers.get(account_id, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._subscribers.pop(account_id, None)

        return unsubscribe

    def stats(self) -> dict[str, int]:
        return {
            "commits": self._writer.commits,
            "write_requests": self._writer.requests,
            "failed_commits": self._writer.failed_commits,
            "reserve_releases": self._writer.reserve_releases,
        }

    # -- directory -------------------------------------------------------------------------------------------
    async def add_domain(self, name: str) -> Domain:
        name = normalize_address("@" + name).lstrip("@")
        if not name or "@" in name:
            raise StoreError(f"not a domain name: {name!r}")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> Domain:
            if conn.execute("SELECT 1 FROM domains WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists(f"domain {name} exists already")
            cur = conn.execute("INSERT INTO domains (name, created) VALUES (?, ?)", (name, time.time()))
            return Domain(int(cur.lastrowid or 0), name)

        return await self._write_directory(tx)

    async def remove_domain(self, name: str) -> None:
        name = normalize_address("@" + name).lstrip("@")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            row = conn.execute("SELECT id FROM domains WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no domain {name}")
            users = conn.execute("SELECT count(*) FROM accounts WHERE domain_id = ?", (row[0],)).fetchone()[0]
            aliases = conn.execute("SELECT count(*) FROM aliases WHERE domain_id = ?", (row[0],)).fetchone()[
                0
            ]
            if users or aliases:
                raise StoreError(
                    f"domain {name} still has {counted(users, 'account')} and "
                    f"{counted(aliases, 'alias', 'aliases')}; remove them first"
                )
            conn.execute("DELETE FROM domains WHERE id = ?", (row[0],))

        await self._write_directory(tx)

    async def list_domains(self) -> list[Domain]:
        def q(conn: sqlite3.Connection) -> list[Domain]:
            return [Domain(r[0], r[1]) for r in conn.execute("SELECT id, name FROM domains ORDER BY name")]

        return await self._read(q)

    @staticmethod
    def _domain_id(conn: sqlite3.Connection, domain: str) -> int:
        row = conn.execute("SELECT id FROM domains WHERE name = ?", (domain,)).fetchone()
        if row is None:
            raise NotFound(
                f"domain {domain} is not served here; add it first (postoffice domain add {domain})"
            )
        return int(row[0])

    @staticmethod
    def _check_mailbox_count(conn: sqlite3.Connection, account_id: int, limit: int | None) -> None:
        if limit is None:
            return
        (count,) = conn.execute(
            "SELECT count(*) FROM mailboxes WHERE account_id = ?", (account_id,)
        ).fetchone()
        if count >= limit:
            raise LimitExceeded(f"an account may have at most {limit} mailboxes")

    @staticmethod
    def _create_mailbox(conn: sqlite3.Connection, account_id: int, name: str, special_use: str | None) -> int:
        uidvalidity = conn.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'next_uidvalidity' RETURNING value - 1"
        ).fetchone()[0]
        cur = conn.execute(
            "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity) VALUES (?, ?, ?, ?)",
            (account_id, name, special_use, uidvalidity),
        )
        return int(cur.lastrowid or 0)

    async def add_account(self, address: str, password_hash: str) -> Account:
        address = normalize_address(address)
        local, _, domain = address.rpartition("@")
        if not local or not domain:
            raise StoreError(f"not a full address: {address!r}")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> Account:
            domain_id = self._domain_id(conn, domain)
            if conn.execute("SELECT 1 FROM accounts WHERE address = ?", (address,)).fetchone():
                raise AlreadyExists(f"account {address} exists already")
            created = time.time()
            cur = conn.execute(
                "INSERT INTO accounts (address, domain_id, password_hash, created) VALUES (?, ?, ?, ?)",
                (address, domain_id, password_hash, created),
            )
            account_id = int(cur.lastrowid or 0)
            for name, special_use in DEFAULT_MAILBOXES:
                self._create_mailbox(conn, account_id, name, special_use)
                conn.execute("INSERT INTO subscriptions (account_id, name) VALUES (?, ?)", (account_id, name))
            # RFC 5321 section 4.5.1: every domain accepts mail for postmaster. The first account of a domain
            # receives it, unless postmaster is an account or an alias already (change it with `alias`).
            postmaster = f"postmaster@{domain}"
            if (
                address != postmaster
                and not conn.execute(
                    "SELECT 1 FROM accounts WHERE address = ? UNION SELECT 1 FROM aliases WHERE source = ?",
                    (postmaster, postmaster),
                ).fetchone()
            ):
                conn.execute(
                    "INSERT INTO aliases (source, domain_id, targets) VALUES (?, ?, ?)",
                    (postmaster, domain_id, json.dumps([address])),
                )
            return Account(account_id, address, domain, password_hash, created)

        return await self._write_directory(tx)

    async def set_password(self, address: str, password_hash: str) -> None:
        address = normalize_address(address)

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            cur = conn.execute(
                "UPDATE accounts SET password_hash = ? WHERE address = ?", (password_hash, address)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no account {address}")

        await self._write_directory(tx)

    async def remove_account(self, address: str) -> None:
        address = normalize_address(address)

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            row = conn.execute("SELECT id FROM accounts WHERE address = ?", (address,)).fetchone()
            if row is None:
                raise NotFound(f"no account {address}")
            account_id = row[0]
            mailbox_ids = [
                r[0] for r in conn.execute("SELECT id FROM mailboxes WHERE account_id = ?", (account_id,))
            ]
            for mailbox_id in mailbox_ids:
                self._delete_messages(conn, mailbox_id, None, tombstones=False)
                conn.execute("DELETE FROM tombstones WHERE mailbox_id = ?", (mailbox_id,))
            conn.execute("DELETE FROM subscriptions WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM mailboxes WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))

        await self._write_directory(tx)

    @staticmethod
    def _account(row: Sequence[Any]) -> Account:
        return Account(row[0], row[1], row[2], row[3], row[4])

    _ACCOUNT_SQL = (
        "SELECT a.id, a.address, d.name, a.password_hash, a.created "
        "FROM accounts a JOIN domains d ON d.id = a.domain_id"
    )

    async def get_account(self, address: str) -> Account | None:
        address = normalize_address(address)

        def q(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(self._ACCOUNT_SQL + " WHERE a.address = ?", (address,)).fetchone()
            return None if row is None else self._account(row)

        return await self._read(q)

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        def q(conn: sqlite3.Connection) -> list[Account]:
            if domain is None:
                rows = conn.execute(self._ACCOUNT_SQL + " ORDER BY a.address")
            else:
                name = normalize_address("@" + domain).lstrip("@")
                rows = conn.execute(self._ACCOUNT_SQL + " WHERE d.name = ? ORDER BY a.address", (name,))
            return [self._account(r) for r in rows]

        return await self._read(q)

    async def add_alias(self, source: str, targets: Sequence[str]) -> Alias:
        source = normalize_address(source)
        _, sep, domain = source.rpartition("@")
        if not sep or not domain:
            raise StoreError(f"an alias source is an address or @domain, not {source!r}")
        clean_targets = tuple(dict.fromkeys(normalize_address(t) for t in targets))
        if not clean_targets:
            raise StoreError("an alias needs at least one target")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> Alias:
            domain_id = self._domain_id(conn, domain)
            for target in clean_targets:
                t_local, _, t_domain = target.rpartition("@")
                if not t_local or not t_domain:
                    raise StoreError(f"alias target {target!r} is not a full address")
                if conn.execute("SELECT 1 FROM domains WHERE name = ?", (t_domain,)).fetchone() is None:
                    raise StoreError(
                        f"alias target {target} is in a domain not served here; forwarding to other domains "
                        "needs the outbound queue, which this version does not have yet"
                    )
            if conn.execute("SELECT 1 FROM aliases WHERE source = ?", (source,)).fetchone():
                raise AlreadyExists(f"alias {source} exists already")
            conn.execute(
                "INSERT INTO aliases (source, domain_id, targets) VALUES (?, ?, ?)",
                (source, domain_id, json.dumps(list(clean_targets))),
            )
            return Alias(source, clean_targets)

        return await self._write_directory(tx)

    async def remove_alias(self, source: str) -> None:
        source = normalize_address(source)

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            if conn.execute("DELETE FROM aliases WHERE source = ?", (source,)).rowcount == 0:
                raise NotFound(f"no alias {source}")

        await self._write_directory(tx)

    async def list_aliases(self) -> list[Alias]:
        def q(conn: sqlite3.Connection) -> list[Alias]:
            rows = conn.execute("SELECT source, targets FROM aliases ORDER BY source")
            return [Alias(r[0], tuple(json.loads(r[1]))) for r in rows]

        return await self._read(q)

    async def get_alias(self, source: str) -> Alias | None:
        source = normalize_address(source)

        def q(conn: sqlite3.Connection) -> Alias | None:
            row = conn.execute("SELECT source, targets FROM aliases WHERE source = ?", (source,)).fetchone()
            return None if row is None else Alias(row[0], tuple(json.loads(row[1])))

        return await self._read(q)

    async def resolve_recipient(self, address: str) -> Resolution:
        """Resolved in memory from a directory snapshot. The snapshot is reloaded when the directory marker
        file (replaced after every committed directory change, by this process or another, e.g. the CLI)
        changes, so changes apply to the next lookup; a stat() per lookup is the whole cost."""
        snapshot = await self._directory_snapshot()
        return resolve(address, snapshot.lookup, snapshot.first_domain)

    async def _directory_snapshot(self) -> _DirectorySnapshot:
        try:
            st = os.stat(self._directory_marker)
            key: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
        except OSError:
            key = None
        if self._directory is None or key is None or key != self._directory_key:
            self._directory = await self._read(_DirectorySnapshot)
            self._directory_key = key
        return self._directory

    def invalidate_caches(self) -> None:
        self._directory = None
        self._directory_key = None
        self._snapshots.clear()

    def _touch_directory_marker(self) -> None:
        tmp = self._directory_marker.with_name(self._directory_marker.name + ".tmp")
        try:
            tmp.write_text(f"{time.time_ns()}\n")
            os.replace(tmp, self._directory_marker)
        except OSError as exc:
            if not is_disk_full(exc) or not self._directory_marker.exists():
                raise
            # a full disk (decision 0030): a new mtime needs no space, and every reader compares it too
            tmp.unlink(missing_ok=True)
            os.utime(self._directory_marker)

    async def _write_directory(self, fn: Callable[[sqlite3.Connection, list[ChangeEvent]], T]) -> T:
        """A directory change: after its commit, replace the marker so every process reloads its snapshot."""
        result = await self._write(fn)  # a failed change changed nothing: no marker, no reloads
        await asyncio.get_running_loop().run_in_executor(self._readers, self._touch_directory_marker)
        return result

    # -- login guard (docs/decisions/0027) -------------------------------------------------------------------
    @property
    def _lockouts_marker(self) -> Path:
        return self._path.with_name(self._path.name + ".lockouts")

    async def login_guard_entries(self, now: float) -> list[LoginGuardEntry]:
        def q(conn: sqlite3.Connection) -> list[LoginGuardEntry]:
            rows = conn.execute(
                "SELECT kind, client, account, until, since FROM login_guard WHERE until > ? "
                "ORDER BY kind, client, account",
                (now,),
            )
            return [LoginGuardEntry(r[0], r[1], r[2], float(r[3]), float(r[4])) for r in rows]

        return await self._read(q)

    async def login_guard_save(self, entries: Sequence[LoginGuardEntry], now: float) -> None:
        rows = [(e.kind, e.client, e.account, e.until, e.since) for e in entries]
        for entry in entries:
            if entry.kind not in LOGIN_GUARD_KINDS:
                raise ValueError(f"not a login guard kind: {entry.kind!r}")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            conn.execute("DELETE FROM login_guard WHERE until <= ?", (now,))
            conn.executemany(
                "INSERT OR REPLACE INTO login_guard (kind, client, account, until, since) "
                "VALUES (?, ?, ?, ?, ?)",
                [row for row in rows if row[3] > now],
            )

        await self._write(tx)

    async def login_guard_unlock(
        self, *, client: str | None = None, account: str | None = None
    ) -> list[LoginGuardEntry]:
        if (client is None) == (account is None):
            raise ValueError("unlock a client or an account")
        column, kind, value = (
            ("client", "client", client) if client is not None else ("account", "account", account)
        )

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> list[LoginGuardEntry]:
            rows = conn.execute(
                f"DELETE FROM login_guard WHERE kind IN (?, 'pair') AND {column} = ? "
                "RETURNING kind, client, account, until, since",
                (kind, value),
            ).fetchall()
            now = time.time()  # rows that had ended are cleaned up too, but were no lockout to report
            entries = [LoginGuardEntry(r[0], r[1], r[2], float(r[3]), float(r[4])) for r in rows]
            return sorted((e for e in entries if e.until > now), key=lambda e: (e.kind, e.client, e.account))

        deleted = await self._write(tx)
        if deleted:
            await asyncio.get_running_loop().run_in_executor(self._readers, self._touch_lockouts_marker)
        return deleted

    def _touch_lockouts_marker(self) -> None:
        marker = self._lockouts_marker
        tmp = marker.with_name(marker.name + ".tmp")
        tmp.write_text(f"{time.time_ns()}\n")
        os.replace(tmp, marker)

    def login_guard_generation(self) -> object:
        try:
            st = os.stat(self._lockouts_marker)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    # -- mailboxes -------------------------------------------------------------------------------------------
    _MAILBOX_SQL = (
        "SELECT id, account_id, name, special_use, uidvalidity, uidnext, message_count, total_size, "
        "EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = mailboxes.account_id AND s.name = "
        "mailboxes.name), recent_uid FROM mailboxes"
    )

    @staticmethod
    def _mailbox(row: Sequence[Any]) -> MailboxInfo:
        return MailboxInfo(
            row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], bool(row[8]), row[9]
        )

    async def list_mailboxes(self, account_id: int) -> list[MailboxInfo]:
        def q(conn: sqlite3.Connection) -> list[MailboxInfo]:
            rows = conn.execute(
                self._MAILBOX_SQL + " WHERE account_id = ? ORDER BY name != 'INBOX', name", (account_id,)
            )
            return [self._mailbox(r) for r in rows]

        return await self._read(q)

    async def get_mailbox(self, account_id: int, name: str) -> MailboxInfo | None:
        name = _normalize_mailbox(name)

        def q(conn: sqlite3.Connection) -> MailboxInfo | None:
            row = conn.execute(
                self._MAILBOX_SQL + " WHERE account_id = ? AND name = ?", (account_id, name)
            ).fetchone()
            return None if row is None else self._mailbox(row)

        return await self._read(q)

    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None, *, max_mailboxes: int | None = None
    ) -> MailboxInfo:
        name = _normalize_mailbox(name)
        if not name or name.startswith(HIERARCHY_SEPARATOR) or HIERARCHY_SEPARATOR * 2 in name:
            raise StoreError(f"not a valid mailbox name: {name!r}")
        name = name.rstrip(HIERARCHY_SEPARATOR)

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> MailboxInfo:
            if conn.execute(
                "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name)
            ).fetchone():
                raise AlreadyExists(f"mailbox {name} exists already")
            if (
                special_use is not None
                and conn.execute(
                    "SELECT 1 FROM mailboxes WHERE account_id = ? AND special_use = ?",
                    (account_id, special_use),
                ).fetchone()
            ):
                raise AlreadyExists(f"another mailbox has the special use {special_use}")
            self._check_mailbox_count(conn, account_id, max_mailboxes)
            mailbox_id = self._create_mailbox(conn, account_id, name, special_use)
            events.append(ChangeEvent("mailbox", account_id, mailbox_id, extra={"created": name}))
            row = conn.execute(self._MAILBOX_SQL + " WHERE id = ?", (mailbox_id,)).fetchone()
            return self._mailbox(row)

        return await self._write(tx)

    async def delete_mailbox(self, account_id: int, name: str) -> None:
        name = _normalize_mailbox(name)
        if name == "INBOX":
            raise StoreError("INBOX cannot be deleted")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            row = conn.execute(
                "SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name)
            ).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {name}")
            mailbox_id = int(row[0])
            self._delete_messages(conn, mailbox_id, None, tombstones=False)
            conn.execute("DELETE FROM tombstones WHERE mailbox_id = ?", (mailbox_id,))
            conn.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
            events.append(ChangeEvent("mailbox", account_id, mailbox_id, extra={"deleted": name}))

        await self._write(tx)

    async def rename_mailbox(
        self, account_id: int, old_name: str, new_name: str, *, max_mailboxes: int | None = None
    ) -> None:
        old_name, new_name = (
            _normalize_mailbox(old_name),
            _normalize_mailbox(new_name).rstrip(HIERARCHY_SEPARATOR),
        )
        if not new_name or new_name == "INBOX" or HIERARCHY_SEPARATOR * 2 in new_name:
            raise StoreError(f"cannot rename to {new_name!r}")
        below = new_name.startswith(old_name + HIERARCHY_SEPARATOR) and old_name != "INBOX"  # INBOX: see tx
        if new_name == old_name or below:
            raise StoreError("a mailbox cannot be renamed to itself or below itself")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            source = conn.execute(
                "SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, old_name)
            ).fetchone()
            if source is None:
                raise NotFound(f"no mailbox {old_name}")
            if conn.execute(
                "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, new_name)
            ).fetchone():
                raise AlreadyExists(f"mailbox {new_name} exists already")
            if old_name == "INBOX":
                # RFC 9051 section 6.3.6: the messages move to a new mailbox, INBOX stays (empty), and
                # INBOX's inferiors are not renamed.
                self._check_mailbox_count(conn, account_id, max_mailboxes)
                target = self._create_mailbox(conn, account_id, new_name, None)
                events.extend(self._move_all(conn, account_id, int(source[0]), target))
                events.append(ChangeEvent("mailbox", account_id, target, extra={"created": new_name}))
                return
            prefix = old_name + HIERARCHY_SEPARATOR
            rows = conn.execute(
                "SELECT id, name FROM mailboxes "
                "WHERE account_id = ? AND (name = ? OR substr(name, 1, ?) = ?)",
                (account_id, old_name, len(prefix), prefix),
            ).fetchall()
            for mailbox_id, name in rows:
                renamed = new_name + name[len(old_name) :]
                if (
                    renamed != new_name
                    and conn.execute(
                        "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, renamed)
                    ).fetchone()
                ):
                    raise AlreadyExists(f"mailbox {renamed} exists already")
                conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (renamed, mailbox_id))
                events.append(
                    ChangeEvent("mailbox", account_id, int(mailbox_id), extra={"renamed": (name, renamed)})
                )

        await self._write(tx)

    def _move_all(
        self, conn: sqlite3.Connection, account_id: int, source_id: int, target_id: int
    ) -> list[ChangeEvent]:
        """Every message of source into target (new UIDs, same contents and flags), source left empty; the
        expunge from the source as an event (sessions that have it selected must see the messages go)."""
        uids = [
            int(r[0]) for r in conn.execute("SELECT uid FROM messages WHERE mailbox_id = ?", (source_id,))
        ]
        self._copy_rows(conn, source_id, uids, target_id)
        removed, modseq = self._delete_messages(conn, source_id, uids, tombstones=True)
        return [ChangeEvent("expunged", account_id, source_id, tuple(removed), modseq)] if removed else []

    async def set_subscribed(
        self, account_id: int, name: str, subscribed: bool, *, max_subscriptions: int | None = None
    ) -> None:
        name = _normalize_mailbox(name)

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            if subscribed:
                if (
                    max_subscriptions is not None
                    and not conn.execute(
                        "SELECT 1 FROM subscriptions WHERE account_id = ? AND name = ?", (account_id, name)
                    ).fetchone()
                ):
                    (count,) = conn.execute(
                        "SELECT count(*) FROM subscriptions WHERE account_id = ?", (account_id,)
                    ).fetchone()
                    if count >= max_subscriptions:
                        raise LimitExceeded(f"an account may have at most {max_subscriptions} subscriptions")
                conn.execute(
                    "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)", (account_id, name)
                )
            else:
                conn.execute(
                    "DELETE FROM subscriptions WHERE account_id = ? AND name = ?", (account_id, name)
                )

        await self._write(tx)

    async def list_subscriptions(self, account_id: int) -> list[str]:
        def q(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name", (account_id,)
            )
            return [str(r[0]) for r in rows]

        return await self._read(q)

    async def mailbox_status(self, mailbox_id: int) -> MailboxStatus:
        def q(conn: sqlite3.Connection) -> MailboxStatus:
            row = conn.execute(self._MAILBOX_SQL + " WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            mailbox = self._mailbox(row)
            seen = _FLAG_BITS["\\seen"]
            unseen, first_unseen = conn.execute(
                "SELECT count(*), min(uid) FROM messages WHERE mailbox_id = ? AND flags & ? = 0",
                (mailbox_id, seen),
            ).fetchone()
            modseq, recent_uid = conn.execute(
                "SELECT highest_modseq, recent_uid FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            recent = conn.execute(
                "SELECT count(*) FROM messages WHERE mailbox_id = ? AND uid > ?", (mailbox_id, recent_uid)
            ).fetchone()[0]
            keywords: set[str] = set()
            for (kw,) in conn.execute(
                "SELECT DISTINCT keywords FROM messages WHERE mailbox_id = ? AND keywords != ''",
                (mailbox_id,),
            ):
                keywords.update(kw.split(" "))
            return MailboxStatus(
                mailbox, int(unseen), first_unseen, int(modseq), int(recent), tuple(sorted(keywords))
            )

        return await self._read(q)

    async def claim_recent(self, mailbox_id: int) -> int:
        """RFC 3501 \\Recent goes to exactly one session: returns the lowest UID that is recent for the
        caller (every UID at or above it that exists now), and marks everything below UIDNEXT as claimed."""

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> int:
            row = conn.execute(
                "SELECT recent_uid, uidnext FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            recent_uid, uidnext = int(row[0]), int(row[1])
            if recent_uid != uidnext - 1:  # nothing new: no write, so the commit has nothing to sync
                conn.execute("UPDATE mailboxes SET recent_uid = ? WHERE id = ?", (uidnext - 1, mailbox_id))
            return recent_uid + 1

        return await self._write(tx)

    async def append(
        self,
        mailbox_id: int,
        source: IO[bytes],
        parsed: ParsedMessage,
        flags: Iterable[str] = (),
        internaldate: float | None = None,
    ) -> DeliveredCopy:
        """IMAP APPEND: one message into one mailbox, durable when it returns."""
        (copy,) = await self.append_many(mailbox_id, [AppendItem(source, parsed, flags, internaldate)])
        return copy

    async def append_many(self, mailbox_id: int, messages: Sequence[AppendItem]) -> list[DeliveredCopy]:
        """APPEND / MULTIAPPEND: every message in one transaction (RFC 3502: all or none)."""
        prepared = []
        for item in messages:
            parsed_json = dataclasses.replace(item.parsed, search_headers="", search_text="").to_json()
            bits, keywords = flags_to_columns(item.flags)
            when = time.time() if item.internaldate is None else item.internaldate
            prepared.append((item.source, item.parsed, parsed_json, bits, keywords, when))

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> list[DeliveredCopy]:
            row = conn.execute("SELECT account_id FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            account_id = int(row[0])
            copies: list[DeliveredCopy] = []
            for source, parsed, parsed_json, bits, keywords, when in prepared:
                content_id = self._insert_content(conn, source, parsed, parsed_json, 1)
                uid, modseq = self._append_row(
                    conn, account_id, mailbox_id, content_id, bits, keywords, when, parsed.size
                )
                events.append(ChangeEvent("added", account_id, mailbox_id, (uid,), modseq))
                copies.append(DeliveredCopy(account_id, mailbox_id, uid))
            return copies

        return await self._write(tx, grows=sum(item.parsed.size for item in messages))

    async def copy_messages(
        self, source_mailbox_id: int, uids: Iterable[int], target_mailbox_id: int, *, move: bool = False
    ) -> list[tuple[int, int]]:
        """COPY / MOVE (RFC 6851): (source uid, new uid) pairs in source UID order; flags, keywords and
        internal dates are kept, the content is shared. A move expunges the sources in the same
        transaction."""
        wanted = sorted(set(uids))

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> list[tuple[int, int]]:
            accounts = {
                int(mid): int(aid)
                for mid, aid in conn.execute(
                    "SELECT id, account_id FROM mailboxes WHERE id IN (?, ?)",
                    (source_mailbox_id, target_mailbox_id),
                )
            }
            if source_mailbox_id not in accounts or target_mailbox_id not in accounts:
                raise NotFound("no such mailbox")
            pairs = self._copy_rows(conn, source_mailbox_id, wanted, target_mailbox_id)
            if pairs:
                new_uids = tuple(new for _, new in pairs)
                modseq = int(
                    conn.execute(
                        "SELECT highest_modseq FROM mailboxes WHERE id = ?", (target_mailbox_id,)
                    ).fetchone()[0]
                )
                events.append(
                    ChangeEvent("added", accounts[target_mailbox_id], target_mailbox_id, new_uids, modseq)
                )
            if move and pairs:
                removed, modseq = self._delete_messages(
                    conn, source_mailbox_id, [old for old, _ in pairs], tombstones=True
                )
                events.append(
                    ChangeEvent(
                        "expunged", accounts[source_mailbox_id], source_mailbox_id, tuple(removed), modseq
                    )
                )
            return pairs

        return await self._write(tx, grows=COPY_ROW_SIZE * len(wanted))

    def _copy_rows(
        self, conn: sqlite3.Connection, source_id: int, uids: list[int], target_id: int
    ) -> list[tuple[int, int]]:
        account_id = int(
            conn.execute("SELECT account_id FROM mailboxes WHERE id = ?", (target_id,)).fetchone()[0]
        )
        pairs: list[tuple[int, int]] = []
        for uid in uids:
            row = conn.execute(
                "SELECT content_id, flags, keywords, internaldate, size FROM messages "
                "WHERE mailbox_id = ? AND uid = ?",
                (source_id, uid),
            ).fetchone()
            if row is None:
                continue
            content_id, bits, keywords, internaldate, size = row
            conn.execute("UPDATE contents SET refcount = refcount + 1 WHERE id = ?", (content_id,))
            new_uid, _ = self._append_row(
                conn,
                account_id,
                target_id,
                int(content_id),
                int(bits),
                str(keywords),
                float(internaldate),
                int(size),
            )
            pairs.append((uid, new_uid))
        return pairs

    # -- messages -----------------------------------------------------------------------------------------
    async def deliver(
        self,
        source: IO[bytes],
        parsed: ParsedMessage,
        account_ids: Iterable[int],
        mailbox: str = "INBOX",
        flags: Iterable[str] = (),
        internaldate: float | None = None,
    ) -> list[DeliveredCopy]:
        delivery = _LocalDelivery.prepare(source, parsed, account_ids, mailbox, flags, internaldate)
        if not delivery.targets:
            return []

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> list[DeliveredCopy]:
            return self._deliver_rows(conn, events, delivery)

        return await self._write(tx, grows=parsed.size)

    async def submit(
        self,
        source: IO[bytes],
        parsed: ParsedMessage,
        account_ids: Iterable[int],
        outbound: OutboundMessage | None,
        mailbox: str = "INBOX",
    ) -> SubmitResult:
        """Local copies (exactly as `deliver`) and the queued message in one request, so one transaction:
        a failure anywhere leaves neither."""
        delivery = _LocalDelivery.prepare(source, parsed, account_ids, mailbox, (), None)
        if outbound is not None:
            _check_outbound(outbound)
        if not delivery.targets and outbound is None:
            return SubmitResult([], None)

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> SubmitResult:
            copies = self._deliver_rows(conn, events, delivery) if delivery.targets else []
            queue_id = None
            if outbound is not None:
                queue_id = self._enqueue_rows(conn, events, source, parsed.size, outbound)
            return SubmitResult(copies, queue_id)

        return await self._write(tx, grows=parsed.size * (bool(delivery.targets) + (outbound is not None)))

    def _deliver_rows(
        self, conn: sqlite3.Connection, events: list[ChangeEvent], delivery: _LocalDelivery
    ) -> list[DeliveredCopy]:
        """One content shared by a message row in the mailbox of each target account (deliver, submit)."""
        d = delivery
        content_id = self._insert_content(conn, d.source, d.parsed, d.parsed_json, len(d.targets))
        copies = []
        for account_id in d.targets:
            row = conn.execute(
                "SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, d.mailbox)
            ).fetchone()
            if row is None:
                raise NotFound(f"account {account_id} has no mailbox {d.mailbox}")
            mailbox_id = int(row[0])
            uid, modseq = self._append_row(
                conn, account_id, mailbox_id, content_id, d.bits, d.keywords, d.internaldate, d.parsed.size
            )
            copies.append(DeliveredCopy(account_id, mailbox_id, uid))
            events.append(ChangeEvent("added", account_id, mailbox_id, (uid,), modseq))
        return copies

    def _insert_content(
        self,
        conn: sqlite3.Connection,
        source: IO[bytes],
        parsed: ParsedMessage,
        parsed_json: str,
        refcount: int,
    ) -> int:
        """The message bytes, its parsed structure and its search text, shared by `refcount` message rows."""
        cur = conn.execute(
            "INSERT INTO contents (size, refcount, parsed, created, sent_date, search_truncated) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (parsed.size, refcount, parsed_json, time.time(), parsed.sent_date, int(parsed.search_truncated)),
        )
        content_id = int(cur.lastrowid or 0)
        self._write_content(conn, content_id, source, parsed.size)
        _insert_rendering(conn, content_id, _render_for_imap(parsed))
        # SQLite's LIKE stops at a NUL; no search string can contain one (postoffice.store.criteria)
        conn.execute(
            "INSERT INTO content_search (rowid, headers, body) VALUES (?, ?, ?)",
            (
                content_id,
                parsed.search_headers.replace("\x00", "\ufffd"),
                parsed.search_text.replace("\x00", "\ufffd"),
            ),
        )
        return content_id

    @staticmethod
    def _write_content(conn: sqlite3.Connection, content_id: int, source: IO[bytes], size: int) -> None:
        _write_blob(conn, "content_data", content_id, source, size)

    @staticmethod
    def _append_row(
        conn: sqlite3.Connection,
        account_id: int,
        mailbox_id: int,
        content_id: int,
        bits: int,
        keywords: str,
        internaldate: float,
        size: int,
    ) -> tuple[int, int]:
        modseq = conn.execute(
            "UPDATE accounts SET highest_modseq = highest_modseq + 1 WHERE id = ? RETURNING highest_modseq",
            (account_id,),
        ).fetchone()[0]
        uid = conn.execute(
            "UPDATE mailboxes SET uidnext = uidnext + 1, message_count = message_count + 1, "
            "total_size = total_size + ?, highest_modseq = ? WHERE id = ? RETURNING uidnext - 1",
            (size, modseq, mailbox_id),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO messages (mailbox_id, uid, content_id, flags, keywords, internaldate, size, modseq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (mailbox_id, uid, content_id, bits, keywords, internaldate, size, modseq),
        )
        return int(uid), int(modseq)

    @staticmethod
    def _changes(conn: sqlite3.Connection, mailbox_id: int, modseq: int, highest: int) -> MailboxChanges:
        rows = conn.execute(
            "SELECT id, mailbox_id, uid, flags, keywords, internaldate, size, modseq, content_id "
            "FROM messages WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
            (mailbox_id, modseq),
        )
        messages = [
            MessageInfo(r[0], r[1], r[2], columns_to_flags(r[3], r[4]), r[5], r[6], r[7], r[8]) for r in rows
        ]
        expunged = [
            int(r[0])
            for r in conn.execute(
                "SELECT uid FROM tombstones WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                (mailbox_id, modseq),
            )
        ]
        return MailboxChanges(messages, expunged, max([highest, *(m.modseq for m in messages)]))

    async def changes_since(self, mailbox_id: int, modseq: int) -> MailboxChanges:
        def q(conn: sqlite3.Connection) -> MailboxChanges:
            row = conn.execute("SELECT highest_modseq FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            return self._changes(conn, mailbox_id, modseq, int(row[0]))

        return await self._read(q)

    _SNAPSHOT_SQL = (
        "SELECT uid, flags, keywords, content_id, size, internaldate, modseq FROM messages "
        "WHERE mailbox_id = ? ORDER BY uid"
    )

    async def snapshot(self, mailbox_id: int) -> MailboxSnapshot:
        """From the cache when nothing changed; else the cached snapshot advanced by `changes_since` (cost in
        proportion to the changes, plus copying the columns); a full read only the first time."""
        base = self._snapshots.get(mailbox_id)

        def q(conn: sqlite3.Connection) -> MailboxSnapshot:
            row = conn.execute(self._MAILBOX_SQL + " WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            info = self._mailbox(row)
            highest = int(
                conn.execute("SELECT highest_modseq FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()[0]
            )
            if base is not None and base.mailbox.uidvalidity == info.uidvalidity:  # ids can be reused
                if base.modseq == highest:
                    return base if base.mailbox == info else dataclasses.replace(base, mailbox=info)
                return advance_snapshot(base, info, self._changes(conn, mailbox_id, base.modseq, highest))
            messages = [
                MessageInfo(0, mailbox_id, r[0], columns_to_flags(r[1], r[2]), r[5], r[4], r[6], r[3])
                for r in conn.execute(self._SNAPSHOT_SQL, (mailbox_id,))
            ]
            return build_snapshot(info, max([highest, *(m.modseq for m in messages)]), messages)

        snapshot = await self._read(q)
        current = self._snapshots.get(mailbox_id)
        if current is None or current.modseq <= snapshot.modseq:
            self._snapshots[mailbox_id] = snapshot
            self._snapshots.move_to_end(mailbox_id)
            total = sum(len(s.uids) for s in self._snapshots.values())
            while total > SNAPSHOT_CACHE_MESSAGES and len(self._snapshots) > 1:
                _, evicted = self._snapshots.popitem(last=False)
                total -= len(evicted.uids)
        return snapshot

    async def imap_renderings(self, content_ids: Sequence[int]) -> dict[int, ImapRendering]:
        wanted = list(dict.fromkeys(content_ids))

        def q(conn: sqlite3.Connection) -> dict[int, ImapRendering]:
            found: dict[int, ImapRendering] = {}
            for start in range(0, len(wanted), 500):  # stay below SQLite's bound-parameter limit
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                for cid, env, body, env8, body8 in conn.execute(
                    "SELECT id, envelope, bodystructure, envelope_utf8, bodystructure_utf8 FROM content_imap "
                    f"WHERE id IN ({marks})",
                    batch,
                ):
                    found[int(cid)] = ImapRendering(env, body, env8, body8)
            return found

        return await self._read(q) if wanted else {}

    async def get_parsed_many(self, content_ids: Sequence[int]) -> dict[int, ParsedMessage]:
        wanted = list(dict.fromkeys(content_ids))

        def q(conn: sqlite3.Connection) -> dict[int, ParsedMessage]:
            # decoded in the reader thread: a batch of large structures is milliseconds of JSON work that
            # must not run on the event loop
            found: dict[int, ParsedMessage] = {}
            for start in range(0, len(wanted), 500):
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                for cid, parsed in conn.execute(
                    f"SELECT id, parsed FROM contents WHERE id IN ({marks})", batch
                ):
                    found[int(cid)] = ParsedMessage.from_json(str(parsed))
            return found

        return await self._read(q) if wanted else {}

    async def expunge_deleted(self, mailbox_id: int, only: Iterable[int] | None = None) -> list[int]:
        allowed = None if only is None else set(only)
        deleted_bit = _FLAG_BITS["\\deleted"]

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> list[int]:
            row = conn.execute("SELECT account_id FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            doomed = [
                int(uid)
                for (uid,) in conn.execute(
                    "SELECT uid FROM messages WHERE mailbox_id = ? AND flags & ? != 0 ORDER BY uid",
                    (mailbox_id, deleted_bit),
                )
                if allowed is None or uid in allowed
            ]
            if not doomed:
                return []
            removed, modseq = self._delete_messages(conn, mailbox_id, doomed, tombstones=True)
            if removed:
                events.append(ChangeEvent("expunged", int(row[0]), mailbox_id, tuple(removed), modseq))
            return removed

        return await self._write(tx)

    async def list_messages(self, mailbox_id: int) -> list[MessageInfo]:
        def q(conn: sqlite3.Connection) -> list[MessageInfo]:
            rows = conn.execute(
                "SELECT id, mailbox_id, uid, flags, keywords, internaldate, size, modseq, content_id "
                "FROM messages WHERE mailbox_id = ? ORDER BY uid",
                (mailbox_id,),
            )
            return [
                MessageInfo(r[0], r[1], r[2], columns_to_flags(r[3], r[4]), r[5], r[6], r[7], r[8])
                for r in rows
            ]

        return await self._read(q)

    async def search(self, mailbox_id: int, criteria: Criteria) -> list[int]:
        """Answered by one SQL query from the columns and the FTS5 index (`postoffice.store.search`)."""

        def q(conn: sqlite3.Connection) -> list[int]:
            uids = run_search(conn, mailbox_id, criteria)
            if uids is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            return uids

        return await self._read(q)

    async def get_parsed(self, content_id: int) -> ParsedMessage:
        def q(conn: sqlite3.Connection) -> str:
            row = conn.execute("SELECT parsed FROM contents WHERE id = ?", (content_id,)).fetchone()
            if row is None:
                raise NotFound(f"no content {content_id}")
            return str(row[0])

        return ParsedMessage.from_json(await self._read(q))

    async def read_content(self, content_id: int) -> bytes:
        def q(conn: sqlite3.Connection) -> bytes:
            row = conn.execute("SELECT data FROM content_data WHERE id = ?", (content_id,)).fetchone()
            if row is None:
                raise NotFound(f"no content {content_id}")
            return bytes(row[0])

        return await self._read(q)

    async def read_contents(self, content_ids: Sequence[int]) -> dict[int, bytes]:
        wanted = list(dict.fromkeys(content_ids))
        if not wanted:
            return {}

        def q(conn: sqlite3.Connection) -> dict[int, bytes]:
            found: dict[int, bytes] = {}
            for start in range(0, len(wanted), 500):  # stay below SQLite's bound-parameter limit
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                for cid, data in conn.execute(
                    f"SELECT id, data FROM content_data WHERE id IN ({marks})", batch
                ):
                    found[int(cid)] = bytes(data)
            return found

        return await self._read(q)

    async def read_range(self, content_id: int, offset: int, length: int) -> bytes:
        """Incremental blob I/O: only the pages that hold the range are read."""
        offset, length = max(offset, 0), max(length, 0)

        def q(conn: sqlite3.Connection) -> bytes:
            try:
                blob = conn.blobopen("content_data", "data", content_id, readonly=True)
            except sqlite3.OperationalError:
                raise NotFound(f"no content {content_id}") from None
            with blob:
                if offset >= len(blob):
                    return b""
                blob.seek(offset)
                return blob.read(length)

        return await self._read(q) if length else b""

    async def open_content(self, content_id: int, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        def size_of(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT size FROM contents WHERE id = ?", (content_id,)).fetchone()
            if row is None:
                raise NotFound(f"no content {content_id}")
            return int(row[0])

        size = await self._read(size_of)
        if size <= STREAM_THRESHOLD:
            data = await self.read_content(content_id)
            for offset in range(0, len(data), chunk_size):
                yield data[offset : offset + chunk_size]
            return
        async for chunk in self._stream_blob("content_data", content_id, chunk_size):
            yield chunk

    async def _stream_blob(self, table: str, rowid: int, chunk_size: int) -> AsyncIterator[bytes]:
        """A large blob in chunks, with incremental blob I/O on a connection of its own (one read
        transaction, so the bytes are consistent however long the consumer takes)."""
        loop = asyncio.get_running_loop()
        conn = await loop.run_in_executor(
            self._readers, lambda: _connect(self._path, readonly=True, check_same_thread=False)
        )
        try:
            await loop.run_in_executor(self._readers, conn.execute, "BEGIN")
            try:
                blob = await loop.run_in_executor(
                    self._readers, lambda: conn.blobopen(table, "data", rowid, readonly=True)
                )
            except sqlite3.OperationalError:
                raise NotFound(f"no {table} row {rowid}") from None
            try:
                while True:
                    chunk = await loop.run_in_executor(self._readers, blob.read, chunk_size)
                    if not chunk:
                        break
                    yield chunk
            finally:
                blob.close()
        finally:
            await loop.run_in_executor(self._readers, conn.close)

    async def expunge(self, mailbox_id: int, uids: Iterable[int]) -> list[int]:
        wanted = sorted(set(uids))

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> list[int]:
            row = conn.execute("SELECT account_id FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            removed, modseq = self._delete_messages(conn, mailbox_id, wanted, tombstones=True)
            if removed:
                events.append(ChangeEvent("expunged", int(row[0]), mailbox_id, tuple(removed), modseq))
            return removed

        return await self._write(tx)

    @staticmethod
    def _delete_messages(
        conn: sqlite3.Connection, mailbox_id: int, uids: list[int] | None, *, tombstones: bool
    ) -> tuple[list[int], int]:
        if uids is None:
            rows = conn.execute(
                "SELECT uid, content_id, size FROM messages WHERE mailbox_id = ? ORDER BY uid", (mailbox_id,)
            ).fetchall()
        else:
            rows = []
            for uid in uids:
                r = conn.execute(
                    "SELECT uid, content_id, size FROM messages WHERE mailbox_id = ? AND uid = ?",
                    (mailbox_id, uid),
                ).fetchone()
                if r is not None:
                    rows.append(r)
        if not rows:
            return [], 0
        modseq = 0
        if tombstones:
            modseq = conn.execute(
                "UPDATE accounts SET highest_modseq = highest_modseq + 1 "
                "WHERE id = (SELECT account_id FROM mailboxes WHERE id = ?) RETURNING highest_modseq",
                (mailbox_id,),
            ).fetchone()[0]
        total = 0
        for uid, content_id, size in rows:
            conn.execute("DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", (mailbox_id, uid))
            if tombstones:
                conn.execute(
                    "INSERT OR REPLACE INTO tombstones (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                    (mailbox_id, uid, modseq),
                )
            left = conn.execute(
                "UPDATE contents SET refcount = refcount - 1 WHERE id = ? RETURNING refcount", (content_id,)
            ).fetchone()[0]
            if left <= 0:
                conn.execute("DELETE FROM contents WHERE id = ?", (content_id,))
                conn.execute("DELETE FROM content_data WHERE id = ?", (content_id,))
                conn.execute("DELETE FROM content_imap WHERE id = ?", (content_id,))
                conn.execute("DELETE FROM content_search WHERE rowid = ?", (content_id,))
            total += size
        conn.execute(
            "UPDATE mailboxes SET message_count = message_count - ?, total_size = total_size - ?, "
            "highest_modseq = max(highest_modseq, ?) WHERE id = ?",
            (len(rows), total, modseq, mailbox_id),
        )
        return [int(r[0]) for r in rows], int(modseq)

    async def store_flags(self, mailbox_id: int, uids: Iterable[int], flags: Iterable[str], mode: str) -> int:
        if mode not in ("add", "remove", "replace"):
            raise ValueError(f"bad flag mode {mode!r}")
        wanted = sorted(set(uids))
        bits, keywords = flags_to_columns(flags)
        new_keywords = set(keywords.split(" ")) if keywords else set()

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> int:
            row = conn.execute("SELECT account_id FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            account_id = int(row[0])
            changes: list[tuple[int, int, str]] = []
            for uid in wanted:
                r = conn.execute(
                    "SELECT flags, keywords FROM messages WHERE mailbox_id = ? AND uid = ?", (mailbox_id, uid)
                ).fetchone()
                if r is None:
                    continue
                old_bits, old_kw = int(r[0]), set(r[1].split(" ")) if r[1] else set()
                if mode == "add":
                    nb, nk = old_bits | bits, old_kw | new_keywords
                elif mode == "remove":
                    nb, nk = old_bits & ~bits, old_kw - new_keywords
                else:
                    nb, nk = bits, set(new_keywords)
                if nb != old_bits or nk != old_kw:
                    changes.append((uid, nb, " ".join(sorted(nk))))
            if not changes:
                return int(
                    conn.execute(
                        "SELECT highest_modseq FROM accounts WHERE id = ?", (account_id,)
                    ).fetchone()[0]
                )
            modseq = conn.execute(
                "UPDATE accounts SET highest_modseq = highest_modseq + 1 WHERE id = ? "
                "RETURNING highest_modseq",
                (account_id,),
            ).fetchone()[0]
            conn.executemany(
                "UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
                [(nb, nk, modseq, mailbox_id, uid) for uid, nb, nk in changes],
            )
            conn.execute("UPDATE mailboxes SET highest_modseq = ? WHERE id = ?", (modseq, mailbox_id))
            events.append(
                ChangeEvent("flags", account_id, mailbox_id, tuple(u for u, _, _ in changes), modseq)
            )
            return int(modseq)

        return await self._write(tx)

    # -- the outbound queue ----------------------------------------------------------------------------------
    async def enqueue(self, source: IO[bytes] | bytes, size: int, outbound: OutboundMessage) -> int:
        _check_outbound(outbound)
        stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> int:
            return self._enqueue_rows(conn, events, stream, size, outbound)

        return await self._write(tx, grows=size)

    @staticmethod
    def _enqueue_rows(
        conn: sqlite3.Connection,
        events: list[ChangeEvent],
        source: IO[bytes],
        size: int,
        outbound: OutboundMessage,
        now: float | None = None,
    ) -> int:
        """The message, its bytes and one row per recipient; a "queue" event for the runner."""
        now = time.time() if now is None else now
        due = now if outbound.next_attempt is None else outbound.next_attempt
        counter = conn.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'next_queue_id' RETURNING value - 1"
        ).fetchone()
        if counter is None:
            raise StoreError("the store has no queue id counter (meta.next_queue_id)")
        queue_id = int(
            conn.execute(
                "INSERT INTO queue_messages (id, sender, envid, ret, account_id, created, size, smtputf8, "
                "eight_bit, smtp_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    int(counter[0]),
                    outbound.sender,
                    outbound.envid,
                    None if outbound.ret is None else outbound.ret.upper(),
                    outbound.account_id,
                    now,
                    size,
                    int(outbound.smtputf8),
                    int(outbound.eight_bit),
                    outbound.smtp_id,
                ),
            ).fetchone()[0]
        )
        _write_blob(conn, "queue_data", queue_id, source, size)
        conn.executemany(
            "INSERT INTO queue_recipients (message_id, address, orcpt, notify, next_attempt) "
            "VALUES (?, ?, ?, ?, ?)",
            [(queue_id, r.address, r.orcpt, r.notify, due) for r in outbound.recipients],
        )
        events.append(ChangeEvent("queue", 0, 0, (queue_id,)))
        return queue_id

    _QUEUE_MESSAGE_SQL = (
        "SELECT id, sender, envid, ret, account_id, created, size, smtputf8, eight_bit, smtp_id "
        "FROM queue_messages"
    )
    _QUEUE_RECIPIENT_SQL = (
        "SELECT message_id, id, address, orcpt, notify, status, attempts, next_attempt, first_attempt, "
        "last_attempt, last_code, last_enhanced, last_text, remote_mta, delay_warned FROM queue_recipients"
    )

    @classmethod
    def _queued_messages(cls, conn: sqlite3.Connection, ids: Sequence[int]) -> list[QueuedMessage]:
        """The messages with these ids (those that exist), in the order given, with all their recipients."""
        rows: dict[int, Sequence[Any]] = {}
        recipients: dict[int, list[QueuedRecipient]] = {}
        for start in range(0, len(ids), 500):  # stay below SQLite's bound-parameter limit
            batch = list(ids[start : start + 500])
            marks = ",".join("?" * len(batch))
            for row in conn.execute(cls._QUEUE_MESSAGE_SQL + f" WHERE id IN ({marks})", batch):
                rows[int(row[0])] = row
            for r in conn.execute(
                cls._QUEUE_RECIPIENT_SQL + f" WHERE message_id IN ({marks}) ORDER BY id", batch
            ):
                recipients.setdefault(int(r[0]), []).append(_queued_recipient(r))
        return [
            _queued_message(row, recipients.get(queue_id, []))
            for queue_id in ids
            if (row := rows.get(queue_id)) is not None
        ]

    async def queue_due(self, now: float, limit: int, exclude: Collection[int] = ()) -> list[QueuedMessage]:
        skip = json.dumps(sorted(exclude))

        def q(conn: sqlite3.Connection) -> list[QueuedMessage]:
            ids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT id FROM queue_messages WHERE id IN (SELECT message_id FROM queue_recipients "
                    "WHERE status = 'pending' AND next_attempt <= ?) "
                    "AND id NOT IN (SELECT value FROM json_each(?)) ORDER BY created, id LIMIT ?",
                    (now, skip, max(limit, 0)),
                )
            ]
            return self._queued_messages(conn, ids)

        return await self._read(q)

    async def queue_get(self, queue_id: int) -> QueuedMessage | None:
        def q(conn: sqlite3.Connection) -> QueuedMessage | None:
            found = self._queued_messages(conn, [queue_id])
            return found[0] if found else None

        return await self._read(q)

    async def queue_list(self) -> list[QueuedMessage]:
        def q(conn: sqlite3.Connection) -> list[QueuedMessage]:
            ids = [int(r[0]) for r in conn.execute("SELECT id FROM queue_messages ORDER BY created, id")]
            return self._queued_messages(conn, ids)

        return await self._read(q)

    async def queue_read(self, queue_id: int) -> bytes:
        def q(conn: sqlite3.Connection) -> bytes:
            row = conn.execute("SELECT data FROM queue_data WHERE id = ?", (queue_id,)).fetchone()
            if row is None:
                raise NotFound(f"no queued message {queue_id}")
            return bytes(row[0])

        return await self._read(q)

    async def queue_open(self, queue_id: int, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        def size_of(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT size FROM queue_messages WHERE id = ?", (queue_id,)).fetchone()
            if row is None:
                raise NotFound(f"no queued message {queue_id}")
            return int(row[0])

        size = await self._read(size_of)
        if size <= STREAM_THRESHOLD:
            data = await self.queue_read(queue_id)
            for offset in range(0, len(data), chunk_size):
                yield data[offset : offset + chunk_size]
            return
        async for chunk in self._stream_blob("queue_data", queue_id, chunk_size):
            yield chunk

    async def queue_record(
        self,
        queue_id: int,
        results: Sequence[RecipientResult],
        *,
        bounces: Sequence[GeneratedMessage] = (),
        keep: bool = False,
        local_copy: LocalCopy | None = None,
    ) -> QueuedMessage:
        delivery = None
        if local_copy is not None and local_copy.account_ids:
            delivery = _LocalDelivery.prepare(
                local_copy.source, local_copy.parsed, local_copy.account_ids, "INBOX", (), None
            )
        for result in results:
            if result.status not in QUEUE_STATUSES:
                raise ValueError(f"not a queue status: {result.status!r}")
            if result.status == "pending" and result.next_attempt is None:
                raise ValueError("a recipient that stays pending needs its next attempt time")
        for bounce in bounces:
            _check_outbound(bounce.outbound)
            # RFC 3461 section 6.1 / RFC 5321 section 4.5.5: a DSN goes out from the null sender, so that no
            # DSN is ever sent about it (no loops).
            if bounce.outbound.sender != "":
                raise ValueError("a generated DSN must have the null sender")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> QueuedMessage:
            row = conn.execute("SELECT sender FROM queue_messages WHERE id = ?", (queue_id,)).fetchone()
            if row is None:
                raise NotFound(f"no queued message {queue_id}")
            if bounces and row[0] == "":
                raise StoreError(f"queued message {queue_id} has the null sender: it gets no DSN")
            for r in results:
                current = conn.execute(
                    "SELECT status FROM queue_recipients WHERE id = ? AND message_id = ?",
                    (r.recipient_id, queue_id),
                ).fetchone()
                if current is None:
                    raise NotFound(f"queued message {queue_id} has no recipient {r.recipient_id}")
                if current[0] in FINAL_STATUSES:
                    raise StoreError(
                        f"recipient {r.recipient_id} of queued message {queue_id} is {current[0]} already"
                    )
                attempted = r.attempted_at is not None
                conn.execute(
                    "UPDATE queue_recipients SET status = ?, attempts = attempts + ?, "
                    "first_attempt = coalesce(first_attempt, ?), last_attempt = coalesce(?, last_attempt), "
                    "next_attempt = coalesce(?, next_attempt), delay_warned = coalesce(?, delay_warned), "
                    # a new attempt replaces the last reply (even with "none"); else only what is given
                    "last_code = CASE WHEN ? THEN ? ELSE coalesce(?, last_code) END, "
                    "last_enhanced = CASE WHEN ? THEN ? ELSE coalesce(?, last_enhanced) END, "
                    "last_text = CASE WHEN ? THEN ? ELSE coalesce(?, last_text) END, "
                    "remote_mta = CASE WHEN ? THEN ? ELSE coalesce(?, remote_mta) END "
                    "WHERE id = ?",
                    (
                        r.status,
                        int(attempted),
                        r.attempted_at,
                        r.attempted_at,
                        r.next_attempt,
                        None if r.delay_warned is None else int(r.delay_warned),
                        *(attempted, r.code, r.code),
                        *(attempted, r.enhanced, r.enhanced),
                        *(attempted, r.text, r.text),
                        *(attempted, r.remote_mta, r.remote_mta),
                        r.recipient_id,
                    ),
                )
            if delivery is not None:
                self._deliver_rows(conn, events, delivery)
            now = time.time()
            for bounce in bounces:
                self._enqueue_rows(
                    conn, events, io.BytesIO(bounce.data), len(bounce.data), bounce.outbound, now
                )
            (recorded,) = self._queued_messages(conn, [queue_id])
            if not keep and not recorded.pending:
                self._delete_queued(conn, queue_id)
            return recorded

        # Never refused for space (decision 0030), not even with a DSN or a local copy: the delivery it
        # records has happened, and a result that is not recorded means the same delivery again.
        return await self._write(tx)

    @staticmethod
    def _delete_queued(conn: sqlite3.Connection, queue_id: int) -> bool:
        conn.execute("DELETE FROM queue_recipients WHERE message_id = ?", (queue_id,))
        conn.execute("DELETE FROM queue_data WHERE id = ?", (queue_id,))
        return conn.execute("DELETE FROM queue_messages WHERE id = ?", (queue_id,)).rowcount > 0

    async def queue_delete(self, queue_id: int) -> bool:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> bool:
            return self._delete_queued(conn, queue_id)

        return await self._write(tx)

    async def queue_retry(self, queue_id: int | None = None) -> int:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> int:
            now = time.time()
            scope, params = "", cast(tuple[int, ...], ())
            if queue_id is not None:
                if conn.execute("SELECT 1 FROM queue_messages WHERE id = ?", (queue_id,)).fetchone() is None:
                    raise NotFound(f"no queued message {queue_id}")
                scope, params = " AND message_id = ?", (queue_id,)
            conn.execute(
                f"UPDATE queue_recipients SET next_attempt = ? WHERE status = 'pending' AND next_attempt > ?"
                f"{scope}",
                (now, now, *params),
            )
            due = int(
                conn.execute(
                    f"SELECT count(*) FROM queue_recipients WHERE status = 'pending'{scope}", params
                ).fetchone()[0]
            )
            if due:
                events.append(ChangeEvent("queue", 0, 0, () if queue_id is None else (queue_id,)))
            return due

        return await self._write(tx)

    async def queue_stats(self) -> QueueStats:
        def q(conn: sqlite3.Connection) -> QueueStats:
            messages, oldest = conn.execute("SELECT count(*), min(created) FROM queue_messages").fetchone()
            pending = conn.execute(
                "SELECT count(*) FROM queue_recipients WHERE status = 'pending'"
            ).fetchone()[0]
            return QueueStats(int(messages), int(pending), None if oldest is None else float(oldest))

        return await self._read(q)

    def subscribe_queue(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._queue_subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._queue_subscribers:
                self._queue_subscribers.remove(callback)

        return unsubscribe
