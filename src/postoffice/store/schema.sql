-- Postoffice store schema, the current version (sqlite.SCHEMA_VERSION). Applied once, in one transaction, when
-- the store is created; older stores are brought up to date by sqlite.MIGRATIONS.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE domains (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);

CREATE TABLE accounts (
    id             INTEGER PRIMARY KEY,
    address        TEXT NOT NULL UNIQUE,          -- normalised: lowercased, IDNA domain
    domain_id      INTEGER NOT NULL REFERENCES domains(id),
    password_hash  TEXT NOT NULL,                 -- argon2id, never a plaintext password
    created        REAL NOT NULL,
    highest_modseq INTEGER NOT NULL DEFAULT 1     -- RFC 7162: per-account counter
);

CREATE TABLE aliases (
    id        INTEGER PRIMARY KEY,
    source    TEXT NOT NULL UNIQUE,               -- "user@domain" or "@domain" (catch-all)
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    targets   TEXT NOT NULL                       -- JSON list of addresses
);

CREATE TABLE mailboxes (
    id             INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL REFERENCES accounts(id),
    name           TEXT NOT NULL,
    special_use    TEXT,
    uidvalidity    INTEGER NOT NULL UNIQUE,       -- from meta.next_uidvalidity, never reused
    uidnext        INTEGER NOT NULL DEFAULT 1,
    subscribed     INTEGER NOT NULL DEFAULT 1,    -- unused since version 2: see subscriptions
    message_count  INTEGER NOT NULL DEFAULT 0,
    total_size     INTEGER NOT NULL DEFAULT 0,
    highest_modseq INTEGER NOT NULL DEFAULT 0,
    recent_uid     INTEGER NOT NULL DEFAULT 0,    -- RFC 3501 \Recent: UIDs above it are new to the next session
    UNIQUE (account_id, name)
);

-- IMAP subscriptions are names, and may name mailboxes that do not exist (RFC 9051 section 6.3.7).
CREATE TABLE subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    name       TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;

-- One row per distinct stored message, shared by every copy (recipients, COPY).
CREATE TABLE contents (
    id       INTEGER PRIMARY KEY,
    size     INTEGER NOT NULL,
    refcount INTEGER NOT NULL,
    parsed   TEXT NOT NULL,                       -- postoffice.message.ParsedMessage JSON
    created  REAL NOT NULL,
    sent_date TEXT,                               -- Date header's calendar date in its own zone (SENTON)
    search_truncated INTEGER NOT NULL DEFAULT 0   -- 1: content_search holds only the first part of the text
);
CREATE INDEX contents_search_truncated ON contents(search_truncated) WHERE search_truncated = 1;

-- The bytes, kept apart so that reading metadata never walks a large blob's overflow pages.
CREATE TABLE content_data (
    id   INTEGER PRIMARY KEY,                     -- = contents.id
    data BLOB NOT NULL
);

-- ENVELOPE and BODYSTRUCTURE as IMAP sends them, rendered at delivery (version 5, docs/decisions/0016);
-- the _utf8 forms only where UTF8=ACCEPT sessions get different octets.
CREATE TABLE content_imap (
    id                 INTEGER PRIMARY KEY,       -- = contents.id
    envelope           BLOB NOT NULL,
    bodystructure      BLOB NOT NULL,
    envelope_utf8      BLOB,
    bodystructure_utf8 BLOB
);

CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    mailbox_id   INTEGER NOT NULL REFERENCES mailboxes(id),
    uid          INTEGER NOT NULL,
    content_id   INTEGER NOT NULL REFERENCES contents(id),
    flags        INTEGER NOT NULL DEFAULT 0,      -- bit mask of SYSTEM_FLAGS
    keywords     TEXT NOT NULL DEFAULT '',        -- space-separated keywords
    internaldate REAL NOT NULL,
    size         INTEGER NOT NULL,
    modseq       INTEGER NOT NULL,
    UNIQUE (mailbox_id, uid)
);
CREATE INDEX messages_content ON messages(content_id);
-- changes_since (version 4): the messages changed after a MODSEQ.
CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);

-- Expunged messages (RFC 7162 QRESYNC VANISHED (EARLIER)).
CREATE TABLE tombstones (
    mailbox_id INTEGER NOT NULL,
    uid        INTEGER NOT NULL,
    modseq     INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX tombstones_modseq ON tombstones(mailbox_id, modseq);

-- Substring search (IMAP SEARCH semantics) over decoded headers and text: rowid = contents.id. NUL is
-- stored as U+FFFD (SQLite's LIKE stops at a NUL).
CREATE VIRTUAL TABLE content_search USING fts5(headers, body, tokenize = 'trigram', detail = none);
