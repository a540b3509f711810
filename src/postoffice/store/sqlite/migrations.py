"""The schema of the SQLite store (`postoffice/store/schema.sql`, version SCHEMA_VERSION) and the steps
that bring an older store up to it, applied in one transaction when the store is opened.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from postoffice.message import ParsedMessage, parse_message
from postoffice.message.headers import header_block
from postoffice.message.threads import references_of, thread_keys
from postoffice.store.api import StoreError
from postoffice.store.sqlite.connection import connect
from postoffice.store.sqlite.rows import (
    insert_addresses,
    insert_kept_forms,
    insert_sort_fields,
    render_kept_forms,
    thread_for,
)

log = logging.getLogger("postoffice.store")

SCHEMA_VERSION = 28


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


def _backfill_content_imap(conn: sqlite3.Connection) -> None:
    rows = conn.execute(
        "SELECT id, parsed FROM contents WHERE id NOT IN (SELECT id FROM content_imap)"
    ).fetchall()
    for content_id, parsed in rows:
        insert_kept_forms(conn, int(content_id), render_kept_forms(ParsedMessage.from_json(str(parsed))))


#: Octets of a stored message read for its header when conversations are backfilled.
_HEADER_READ = 256 * 1024


def _stored_head(conn: sqlite3.Connection, content_id: int) -> bytes:
    """The first _HEADER_READ octets of a stored message (b"" when its data is missing), read through a blob
    handle: substr() of a BLOB loads the whole of it first, attachments and all."""
    try:
        with conn.blobopen("content_data", "data", content_id, readonly=True) as blob:
            return blob.read(_HEADER_READ)
    except sqlite3.OperationalError:  # no such row
        return b""


def _backfill_threads(conn: sqlite3.Connection) -> None:
    """Each message's conversation, as delivery finds it now, from the Message-ID, In-Reply-To, References
    and Subject of its stored header (the stored structure of these versions has no References)."""
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    keys_of: dict[int, list[int]] = {}
    rows = conn.execute(
        "SELECT m.id, b.account_id, m.content_id FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id "
        "WHERE m.thread_id = 0 ORDER BY m.id"
    ).fetchall()
    for message_id, account_id, content_id in rows:
        keys = keys_of.get(content_id)
        if keys is None:
            header = parser.parsebytes(_stored_head(conn, int(content_id)))
            parsed_row = conn.execute("SELECT parsed FROM contents WHERE id = ?", (content_id,)).fetchone()
            subject = ParsedMessage.from_json(str(parsed_row[0])).subject if parsed_row else ""
            keys = keys_of[content_id] = thread_keys(
                str(header.get("message-id", "")),
                references_of(str(header.get("in-reply-to", "")), str(header.get("references", ""))),
                subject,
            )
        conn.execute(
            "UPDATE messages SET thread_id = ? WHERE id = ?",
            (thread_for(conn, int(account_id), keys), message_id),
        )


def _thread_references_from_headers(conn: sqlite3.Connection) -> None:
    """What THREAD=REFERENCES links, as delivery keeps it now (`ParsedMessage.thread_references`), from each
    stored header read by delivery's own parser (the same header rules and the same decoding of 8-bit ids):
    before, content_sort kept the ids of References and In-Reply-To merged, each once."""
    for (content_id,) in conn.execute("SELECT id FROM content_sort").fetchall():
        head = _stored_head(conn, int(content_id))
        header = header_block(head) + b"\r\n"  # the body is not needed
        refs = parse_message(io.BytesIO(header)).thread_references or []
        conn.execute("UPDATE content_sort SET refs = ? WHERE id = ?", (" ".join(refs), content_id))


def _backfill_addresses(conn: sqlite3.Connection) -> None:
    for content_id, parsed in conn.execute("SELECT id, parsed FROM contents").fetchall():
        insert_addresses(conn, int(content_id), ParsedMessage.from_json(str(parsed)))


def _backfill_sort_fields(conn: sqlite3.Connection) -> None:
    for content_id, parsed in conn.execute("SELECT id, parsed FROM contents").fetchall():
        insert_sort_fields(conn, int(content_id), ParsedMessage.from_json(str(parsed)))


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

_CREATE_WEB_SESSIONS = (
    "CREATE TABLE IF NOT EXISTS web_sessions (id TEXT PRIMARY KEY, account_id INTEGER NOT NULL, "
    "csrf TEXT NOT NULL, created REAL NOT NULL, last_seen REAL NOT NULL, expires REAL NOT NULL, "
    "client TEXT NOT NULL DEFAULT '', user_agent TEXT NOT NULL DEFAULT '') WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS web_sessions_account ON web_sessions(account_id)",
)


def _schema_part(start: str, end: str) -> tuple[str, ...]:
    """The statements of schema.sql between the comment line beginning `start` and the line `end`, each made
    idempotent (CREATE ... IF NOT EXISTS) as every migration step is: a version's new tables, from the one
    place that declares them."""
    text = resources.files("postoffice.store").joinpath("schema.sql").read_text()
    part = text.split(start, 1)[1].split("\n", 1)[1].split(end, 1)[0]
    return tuple(
        re.sub(r"\bCREATE (UNIQUE INDEX|INDEX|TABLE) ", r"CREATE \1 IF NOT EXISTS ", statement)
        for statement in part.split(";\n")
        if any(line.strip() and not line.strip().startswith("--") for line in statement.splitlines())
    )


#: The tables of version 16 (account security) and of version 17 (DKIM signing keys).
_ACCOUNT_SECURITY_TABLES = _schema_part("-- Account security (version 16", "-- End of version 16.")
_DKIM_KEYS_TABLES = _schema_part("-- DKIM signing keys (version 17", "-- End of version 17.")
#: The tables of version 18 (the MTA-STS policy cache, report counts, received reports).
_REPORT_TABLES = _schema_part("-- Transport security and reports (version 18", "-- End of version 18.")

#: The table of version 21 (what IMAP SORT and THREAD compare).
_SORT_TABLE = _schema_part("-- What IMAP SORT and THREAD compare (version 21", "-- Expunged messages")
#: The table of version 22 (IMAP METADATA, RFC 5464).
_METADATA_TABLE = _schema_part("-- IMAP METADATA (version 22", "-- End of version 22.")
#: The table of version 24 (IMAP ACL, RFC 4314).
_ACL_TABLE = _schema_part("-- IMAP ACL (version 24", "-- End of version 24.")
#: The table of version 25 (ACL entries of addresses that are no account, docs/decisions/0076).
_ACL_NAMES_TABLE = _schema_part("-- IMAP ACL entries of addresses", "-- End of version 25.")
#: The tables of version 27 (Sieve scripts and vacation replies, docs/decisions/0082).
_SIEVE_TABLES = _schema_part("-- Sieve (version 27", "-- End of version 27.")
#: The table of version 28 (greylisting, RFC 6647, docs/decisions/0089).
_GREYLIST_TABLE = _schema_part("-- Greylisting (version 28", "-- End of version 28.")
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
    # Web sessions (docs/decisions/0046): a new table only.
    8: _CREATE_WEB_SESSIONS,
    # Unseen counts from an index of the unseen messages only (the webmail's folder list, IMAP STATUS).
    9: ("CREATE INDEX IF NOT EXISTS messages_unseen ON messages(mailbox_id, uid) WHERE flags & 1 = 0",),
    # Per-account preferences (the webmail's; account settings next): a new table only.
    10: (
        "CREATE TABLE IF NOT EXISTS account_settings (account_id INTEGER NOT NULL, key TEXT NOT NULL, "
        "value TEXT NOT NULL, PRIMARY KEY (account_id, key)) WITHOUT ROWID",
    ),
    # Conversations (docs/decisions/0047): every message's thread, found from the ids of its header as a
    # new message's is at delivery, in the order the messages came.
    11: (
        _add_column("messages", "thread_id", "INTEGER NOT NULL DEFAULT 0"),
        "CREATE TABLE IF NOT EXISTS thread_keys (account_id INTEGER NOT NULL, key INTEGER NOT NULL, "
        "thread_id INTEGER NOT NULL, PRIMARY KEY (account_id, key)) WITHOUT ROWID",
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('next_thread_id', 1)",
        _backfill_threads,
        "CREATE INDEX IF NOT EXISTS messages_thread ON messages(thread_id, mailbox_id, uid)",
    ),
    # The admin role and disabled accounts (issue 12). The oldest account becomes admin: the one
    # `postoffice init` made, as a new installation's first account is.
    12: (
        _add_column("accounts", "admin", "INTEGER NOT NULL DEFAULT 0"),
        _add_column("accounts", "disabled", "INTEGER NOT NULL DEFAULT 0"),
        "UPDATE accounts SET admin = 1 WHERE id = (SELECT min(id) FROM accounts) "
        "AND NOT EXISTS (SELECT 1 FROM accounts WHERE admin = 1)",
    ),
    # An index of the addresses of each content (the webmail's from:/to: with a whole address), backfilled
    # from the stored structures.
    13: (
        "CREATE TABLE IF NOT EXISTS content_addresses (address TEXT NOT NULL, content_id INTEGER NOT NULL, "
        "field INTEGER NOT NULL, PRIMARY KEY (address, content_id, field)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS content_addresses_content ON content_addresses(content_id)",
        _backfill_addresses,
    ),
    # Plus-addressing per domain (issue 12): on, as it always was.
    14: (_add_column("domains", "plus_addressing", "INTEGER NOT NULL DEFAULT 1"),),
    # Account security, quotas, sending limits and identities (issue 12, docs/decisions/0052): new columns
    # with the defaults of "off" and new tables only.
    15: (
        _add_column("accounts", "totp_secret", "TEXT"),
        _add_column("accounts", "totp_step", "INTEGER NOT NULL DEFAULT 0"),
        _add_column("accounts", "quota", "INTEGER NOT NULL DEFAULT 0"),
        _add_column("accounts", "send_limit", "INTEGER NOT NULL DEFAULT 0"),
        *_ACCOUNT_SECURITY_TABLES,
    ),
    # DKIM signing keys (issue 13, docs/decisions/0056): a new table only.
    16: _DKIM_KEYS_TABLES,
    # MTA-STS policies, report counts and received reports (issue 13, docs/decisions/0057, 0058): new
    # tables; REQUIRETLS of queued messages (RFC 8689), off for those queued before.
    17: (_add_column("queue_messages", "require_tls", "INTEGER NOT NULL DEFAULT 0"), *_REPORT_TABLES),
    # Content ids from a counter, never reused (IMAP OBJECTID's EMAILID, RFC 8474; docs/decisions/0062).
    18: (
        "INSERT OR IGNORE INTO meta (key, value) "
        "SELECT 'next_content_id', coalesce(max(id), 0) + 1 FROM contents",
    ),
    # The save date of each message (IMAP SAVEDATE, RFC 8514); the messages there are get their internal
    # date, the best guess there is (APPEND and delivery set both to the same moment).
    19: (
        _add_column("messages", "savedate", "REAL"),
        "UPDATE messages SET savedate = internaldate WHERE savedate IS NULL",
    ),
    # What IMAP SORT and THREAD compare, per content (RFC 5256), backfilled from the stored structures.
    20: (*_SORT_TABLE, _backfill_sort_fields),
    # The annotations of IMAP METADATA (RFC 5464, docs/decisions/0067): a new table only.
    21: _METADATA_TABLE,
    # Tombstones are pruned after a while (docs/decisions/0069): when each was made (those there are count
    # from the upgrade), and per mailbox the highest MODSEQ pruned.
    22: (
        _add_column("tombstones", "expunged_at", "REAL NOT NULL DEFAULT 0"),
        "UPDATE tombstones SET expunged_at = CAST(strftime('%s', 'now') AS REAL)",
        _add_column("mailboxes", "vanished_horizon", "INTEGER NOT NULL DEFAULT 0"),
    ),
    # The access control lists of IMAP ACL (RFC 4314, docs/decisions/0073): a new table only.
    23: _ACL_TABLE,
    # ACL entries of addresses that are no account (docs/decisions/0076): a new table only.
    24: _ACL_NAMES_TABLE,
    # THREAD=REFERENCES links the ids of References as the field has them (RFC 5256 section 4, 1.A; decision
    # 0079): rewritten from each stored header.
    25: (_thread_references_from_headers,),
    # Sieve scripts and the vacation replies sent (issue 15, docs/decisions/0082): new tables only.
    26: (*_SIEVE_TABLES, "INSERT OR IGNORE INTO meta (key, value) VALUES ('next_sieve_version', 1)"),
    # Greylisting (RFC 6647, docs/decisions/0089): a new table only.
    27: _GREYLIST_TABLE,
}


def initialise(path: Path) -> None:
    """Create the schema in a new store, or migrate an existing one; WAL mode; the file mode 0600."""
    conn = connect(path)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"the store at {path} cannot use WAL mode (got {mode})")
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
                        ("next_thread_id", 1),
                        ("next_content_id", 1),
                        ("next_sieve_version", 1),
                    ],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        else:
            migrate(conn, path)
    finally:
        conn.close()
    try:
        os.chmod(path, 0o600)
    except OSError:
        pass


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the store at `path` from its schema version to SCHEMA_VERSION, in one transaction."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = None if row is None else int(row[0])
    if version == SCHEMA_VERSION:
        return
    if version is None or version > SCHEMA_VERSION or version not in MIGRATIONS:
        raise StoreError(
            f"the store at {path} has schema version {version}; this Postoffice knows "
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
    log.info("store %s migrated to schema version %d", path, version)
