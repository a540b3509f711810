-- Postoffice store schema, the current version (sqlite.SCHEMA_VERSION). Applied once, in one transaction, when
-- the store is created; older stores are brought up to date by sqlite.MIGRATIONS.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE domains (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    plus_addressing INTEGER NOT NULL DEFAULT 1    -- 0: user+tag@ is not user@ (version 15)
);

CREATE TABLE accounts (
    id             INTEGER PRIMARY KEY,
    address        TEXT NOT NULL UNIQUE,          -- normalised: lowercased, IDNA domain
    domain_id      INTEGER NOT NULL REFERENCES domains(id),
    password_hash  TEXT NOT NULL,                 -- argon2id, never a plaintext password
    created        REAL NOT NULL,
    highest_modseq INTEGER NOT NULL DEFAULT 1,    -- RFC 7162: per-account counter
    admin          INTEGER NOT NULL DEFAULT 0,    -- 1: may use the admin pages (version 13)
    disabled       INTEGER NOT NULL DEFAULT 0,    -- 1: no login of any kind (version 13)
    totp_secret    TEXT,                          -- base32 TOTP secret; NULL: no second factor (version 16)
    totp_step      INTEGER NOT NULL DEFAULT 0,    -- the last time step whose code was accepted (version 16)
    quota          INTEGER NOT NULL DEFAULT 0,    -- octets of mail it may keep; 0: no limit (version 16)
    send_limit     INTEGER NOT NULL DEFAULT 0     -- messages per hour; 0: the server default (version 16)
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
    vanished_horizon INTEGER NOT NULL DEFAULT 0,  -- the highest MODSEQ of a pruned tombstone (version 23)
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
    thread_id    INTEGER NOT NULL DEFAULT 0,      -- its conversation (version 12, docs/decisions/0047)
    savedate     REAL,                            -- when it was put in this mailbox (version 20, RFC 8514)
    UNIQUE (mailbox_id, uid)
);
CREATE INDEX messages_content ON messages(content_id);
-- changes_since (version 4): the messages changed after a MODSEQ.
CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);
-- Unseen counts (version 10): only the messages without \Seen (bit 1 of flags) are in it, so counting
-- them does not read a mailbox's other messages. A query must say `flags & 1 = 0` literally to use it.
CREATE INDEX messages_unseen ON messages(mailbox_id, uid) WHERE flags & 1 = 0;
-- The addresses of each content's From, To, Cc and Bcc (version 14; field = the ENVELOPE index: 2 from, 5 to,
-- 6 cc, 7 bcc), normalised: `Address` criteria (the webmail's from:/to: with a whole address).
CREATE TABLE content_addresses (
    address    TEXT NOT NULL,
    content_id INTEGER NOT NULL,
    field      INTEGER NOT NULL,
    PRIMARY KEY (address, content_id, field)
) WITHOUT ROWID;
CREATE INDEX content_addresses_content ON content_addresses(content_id);

-- Conversations (version 12): the messages of a conversation, by folder.
CREATE INDEX messages_thread ON messages(thread_id, mailbox_id, uid);

-- Where a message's conversation is found (postoffice.message.threads): a key per Message-ID it carries
-- (its own, In-Reply-To, References) hashed with its base subject; thread ids come from meta.next_thread_id.
CREATE TABLE thread_keys (
    account_id INTEGER NOT NULL,
    key        INTEGER NOT NULL,
    thread_id  INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
) WITHOUT ROWID;

-- What IMAP SORT and THREAD compare (version 21, RFC 5256, RFC 5957; postoffice.message.sort_fields), per
-- content, written with it: sorting a large mailbox reads these narrow rows, not the parsed structures.
CREATE TABLE content_sort (
    id           INTEGER PRIMARY KEY,             -- = contents.id
    sent         REAL,                            -- the Date field, UTC epoch seconds; NULL: missing or invalid
    subject      TEXT NOT NULL,                   -- decoded
    from_mailbox TEXT NOT NULL,
    from_display TEXT NOT NULL,
    to_mailbox   TEXT NOT NULL,
    to_display   TEXT NOT NULL,
    cc_mailbox   TEXT NOT NULL,
    message_id   TEXT,
    refs         TEXT NOT NULL                    -- ids separated by spaces
);

-- Expunged messages (RFC 7162 QRESYNC VANISHED (EARLIER)).
CREATE TABLE tombstones (
    mailbox_id  INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    modseq      INTEGER NOT NULL,
    expunged_at REAL NOT NULL DEFAULT 0,          -- when (version 23): `prune_tombstones` removes old ones
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX tombstones_modseq ON tombstones(mailbox_id, modseq);

-- Substring search (IMAP SEARCH semantics) over decoded headers and text: rowid = contents.id. NUL is
-- stored as U+FFFD (SQLite's LIKE stops at a NUL).
CREATE VIRTUAL TABLE content_search USING fts5(headers, body, tokenize = 'trigram', detail = none);

-- The outbound queue (version 6, docs/decisions/0017): messages waiting for delivery to other servers, and
-- DSNs the server generated. Written in the same transaction as the local copies of a submission, and the
-- DSNs in the same transaction as the delivery results that caused them.
CREATE TABLE queue_messages (
    id          INTEGER PRIMARY KEY,              -- from meta.next_queue_id: never reused (version 8)
    sender      TEXT NOT NULL,                    -- envelope sender, '' = the null sender
    envid       TEXT,                             -- RFC 3461 ENVID as received (xtext)
    ret         TEXT,                             -- RFC 3461 RET: 'FULL' or 'HDRS' or NULL
    account_id  INTEGER REFERENCES accounts(id) ON DELETE SET NULL,  -- NULL: generated by the server
    created     REAL NOT NULL,
    size        INTEGER NOT NULL,
    smtputf8    INTEGER NOT NULL DEFAULT 0,       -- 1: needs SMTPUTF8 (RFC 6531)
    eight_bit   INTEGER NOT NULL DEFAULT 0,       -- 1: 8-bit body (8BITMIME, RFC 6152)
    smtp_id     TEXT,                             -- id of the SMTP transaction that submitted it (version 8)
    require_tls INTEGER NOT NULL DEFAULT 0        -- 1: REQUIRETLS (RFC 8689) was asked for (version 18)
);
CREATE INDEX queue_messages_created ON queue_messages(created);

-- The bytes, kept apart as in content_data.
CREATE TABLE queue_data (
    id   INTEGER PRIMARY KEY,                     -- = queue_messages.id
    data BLOB NOT NULL
);

CREATE TABLE queue_recipients (
    id            INTEGER PRIMARY KEY,
    message_id    INTEGER NOT NULL REFERENCES queue_messages(id),
    address       TEXT NOT NULL,
    orcpt         TEXT,                           -- RFC 3461 ORCPT as received ('rfc822' + xtext)
    notify        TEXT,                           -- RFC 3461 NOTIFY as received, NULL: not given
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'delivered', 'failed', 'expired')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  REAL NOT NULL,
    first_attempt REAL,
    last_attempt  REAL,
    last_code     INTEGER,                        -- last SMTP reply code, NULL: none (connection failed)
    last_enhanced TEXT,                           -- its RFC 3463 enhanced status code
    last_text     TEXT,
    remote_mta    TEXT,
    delay_warned  INTEGER NOT NULL DEFAULT 0      -- 1: a 'delayed' DSN was queued
);
CREATE INDEX queue_recipients_message ON queue_recipients(message_id);
CREATE INDEX queue_recipients_due ON queue_recipients(next_attempt) WHERE status = 'pending';

-- The login guard's lockouts, kept across restarts (docs/decisions/0027). The server holds them in memory and
-- writes each one here when it begins; `postoffice auth unlock` deletes rows and replaces the marker file
-- <store>.lockouts, and the server lifts what is gone on its next lockout hit. Rows that have ended are
-- deleted with every write.
CREATE TABLE login_guard (
    kind    TEXT NOT NULL CHECK (kind IN ('client', 'account', 'pair', 'trust')),
    client  TEXT NOT NULL DEFAULT '',             -- "192.0.2.1" or "2001:db8:1:2::/64"; '' for 'account'
    account TEXT NOT NULL DEFAULT '',             -- canonical login name; '' for 'client'
    until   REAL NOT NULL,                        -- Unix time the lockout (or the trust) ends
    since   REAL NOT NULL,                        -- Unix time it began
    PRIMARY KEY (kind, client, account)
) WITHOUT ROWID;

-- Web sessions (docs/decisions/0046): the browser holds a random token, this table its SHA-256 (hex), so a
-- copy of the store lets nobody in. A session ends at `expires` however active, or when no request came for
-- [web] session_idle_timeout; ended rows are deleted with every new session. Removing an account, or setting
-- its password, deletes its sessions.
CREATE TABLE web_sessions (
    id         TEXT PRIMARY KEY,                  -- SHA-256 of the cookie's token, hex
    account_id INTEGER NOT NULL,                  -- accounts.id
    csrf       TEXT NOT NULL,                     -- the token state-changing requests must carry
    created    REAL NOT NULL,                     -- Unix time of the login
    last_seen  REAL NOT NULL,                     -- Unix time of the last request (at most a minute old)
    expires    REAL NOT NULL,                     -- Unix time it ends however active
    client     TEXT NOT NULL DEFAULT '',          -- client address at login
    user_agent TEXT NOT NULL DEFAULT ''           -- the browser's User-Agent at login, shortened
) WITHOUT ROWID;
CREATE INDEX web_sessions_account ON web_sessions(account_id);

-- Per-account preferences (version 11), by key: e.g. "images:<address>" = "1" (the webmail shows that
-- sender's remote images). Removing the account deletes them.
CREATE TABLE account_settings (
    account_id INTEGER NOT NULL,                  -- accounts.id
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (account_id, key)
) WITHOUT ROWID;

-- Account security (version 16, docs/decisions/0052): recovery codes and app passwords by their SHA-256 (they
-- are random, so a fast hash suffices), and each account's recent logins (at most LOGIN_HISTORY).
CREATE TABLE recovery_codes (
    account_id INTEGER NOT NULL,                  -- accounts.id
    code_hash  TEXT NOT NULL,                     -- SHA-256 of the normalised code, hex
    PRIMARY KEY (account_id, code_hash)
) WITHOUT ROWID;
CREATE TABLE app_passwords (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL,               -- accounts.id
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,                  -- SHA-256 of the normalised password, hex
    created       REAL NOT NULL,
    last_used     REAL,
    last_protocol TEXT NOT NULL DEFAULT '',
    last_client   TEXT NOT NULL DEFAULT '',
    UNIQUE (account_id, name),
    UNIQUE (account_id, password_hash)
);
CREATE TABLE login_events (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,                  -- accounts.id
    time       REAL NOT NULL,
    protocol   TEXT NOT NULL,
    client     TEXT NOT NULL,
    result     TEXT NOT NULL,
    method     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX login_events_account ON login_events(account_id, id);
-- The addresses an account sends as (version 16).
CREATE TABLE identities (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,                  -- accounts.id
    address    TEXT NOT NULL,
    name       TEXT NOT NULL DEFAULT '',
    signature  TEXT NOT NULL DEFAULT '',
    reply_to   TEXT NOT NULL DEFAULT '',
    is_default INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX identities_account ON identities(account_id);
-- End of version 16.
-- DKIM signing keys (version 17, docs/decisions/0056): per domain, an Ed25519 and an RSA key at a time
-- signing, each published under its own selector; pending -> active -> retiring -> removed (a removed key keeps
-- its row, without its private key, so that its selector is never used again).
CREATE TABLE dkim_keys (
    id          INTEGER PRIMARY KEY,
    domain_id   INTEGER NOT NULL,                 -- domains.id (the domain's removal deletes its keys)
    selector    TEXT NOT NULL,
    algorithm   TEXT NOT NULL,                    -- "rsa" | "ed25519"
    public_key  TEXT NOT NULL,                    -- the p= of the DNS record (base64)
    private_key TEXT NOT NULL,                    -- PEM (PKCS #8); '' once removed
    state       TEXT NOT NULL,                    -- pending | active | retiring | removed
    created     REAL NOT NULL,
    changed     REAL NOT NULL,                    -- when it entered its state
    UNIQUE (domain_id, selector)
);
-- one pending and one active key per domain and algorithm at most
CREATE UNIQUE INDEX dkim_keys_current ON dkim_keys(domain_id, algorithm, state)
    WHERE state IN ('pending', 'active');
-- End of version 17.
-- Transport security and reports (version 18, docs/decisions/0057 and 0058).
-- The MTA-STS policies of the domains we deliver to (RFC 8461 section 5: a cached policy is applied until it
-- expires, whatever DNS says meanwhile, so it must outlive a restart).
CREATE TABLE mta_sts_policies (
    domain    TEXT PRIMARY KEY,                   -- the recipient domain (A-labels, lower case)
    policy_id TEXT NOT NULL,                      -- the id of the _mta-sts TXT record it was fetched under
    policy    TEXT NOT NULL,                      -- the policy as served
    fetched   REAL NOT NULL
) WITHOUT ROWID;
-- What the daily reports count (DMARC aggregate reports, RFC 9990; SMTP TLS reports, RFC 8460): one row per
-- report line, counted up until the report for the day is sent.
CREATE TABLE report_counts (
    kind   TEXT NOT NULL,                         -- "dmarc" | "tlsrpt"
    day    TEXT NOT NULL,                         -- YYYY-MM-DD (UTC)
    domain TEXT NOT NULL,                         -- the policy domain the report is about and goes to
    key    TEXT NOT NULL,                         -- JSON: the report line counted
    count  INTEGER NOT NULL,
    PRIMARY KEY (kind, day, domain, key)
) WITHOUT ROWID;
CREATE TABLE report_policies (
    kind   TEXT NOT NULL,
    day    TEXT NOT NULL,
    domain TEXT NOT NULL,
    policy TEXT NOT NULL,                         -- JSON: the policy last seen that day, where reports go
    PRIMARY KEY (kind, day, domain)
) WITHOUT ROWID;
-- Reports other servers sent about our domains, as read from the mail that carried them.
CREATE TABLE received_reports (
    id        INTEGER PRIMARY KEY,
    kind      TEXT NOT NULL,                      -- "dmarc" | "tlsrpt"
    reporter  TEXT NOT NULL,                      -- the reporting organisation
    report_id TEXT NOT NULL,
    domain    TEXT NOT NULL,                      -- the policy domain (ours)
    begin     REAL NOT NULL,
    end       REAL NOT NULL,
    received  REAL NOT NULL,
    summary   TEXT NOT NULL,                      -- JSON: the report's lines, summed
    UNIQUE (kind, reporter, report_id)
);
CREATE INDEX received_reports_received ON received_reports(received);
-- End of version 18.
-- IMAP METADATA (version 22, RFC 5464, docs/decisions/0067): the annotations of an account's mailboxes and
-- of the server as that account sees it (mailbox_id 0), /private and /shared entries alike (every mailbox
-- has one owner, so /shared is visible to that account only). Names are kept lower-case (they are
-- case-insensitive); a value is any octets. A mailbox's go with DELETE (not with RENAME: they are keyed by
-- its id), the account's with the account.
CREATE TABLE metadata (
    account_id INTEGER NOT NULL,                  -- accounts.id
    mailbox_id INTEGER NOT NULL,                  -- mailboxes.id; 0: a server entry of the account
    name       TEXT NOT NULL,                     -- the entry name, "/private/comment"
    value      BLOB NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, name)
);
-- End of version 22.
-- IMAP ACL (version 24, RFC 4314, docs/decisions/0073): the rights of other accounts of the owner's domain on
-- a mailbox. grantee_id 0 is "anyone" (every account of the domain); negative 1 is a "-identifier" entry,
-- rights taken away. The owner has every right and no row. Rows go with the mailbox (DELETE) and with the
-- account, owner or grantee; a new mailbox copies its parent's.
CREATE TABLE acl (
    mailbox_id INTEGER NOT NULL,                  -- mailboxes.id
    grantee_id INTEGER NOT NULL,                  -- accounts.id; 0: anyone
    negative   INTEGER NOT NULL DEFAULT 0,        -- 1: the rights are taken away
    rights     TEXT NOT NULL,                     -- letters of "lrswipkxtea", in that order, never empty
    PRIMARY KEY (mailbox_id, grantee_id, negative)
) WITHOUT ROWID;
CREATE INDEX acl_grantee ON acl(grantee_id);
-- End of version 24.
-- IMAP ACL entries of addresses that are no account (version 25, docs/decisions/0076): SETACL takes any
-- address of the mailbox owner's domain, so that its answer does not tell which accounts exist. Such an entry
-- grants nothing; it is kept by address, shown by GETACL, and becomes an `acl` row when an account gets the
-- address. Rows go with the mailbox (DELETE) and its owner, and a new mailbox copies its parent's, as `acl`.
CREATE TABLE acl_names (
    mailbox_id INTEGER NOT NULL,                  -- mailboxes.id
    address    TEXT NOT NULL,                     -- canonical address, of the owner's domain
    negative   INTEGER NOT NULL DEFAULT 0,        -- 1: the rights are taken away
    rights     TEXT NOT NULL,                     -- letters of "lrswipkxtea", in that order, never empty
    PRIMARY KEY (mailbox_id, address, negative)
) WITHOUT ROWID;
CREATE INDEX acl_names_address ON acl_names(address);
-- End of version 25.
-- Sieve (version 27, RFC 5228 and ManageSieve RFC 5804, docs/decisions/0082): an account's scripts, at most
-- one of them active (the one run at delivery), and the vacation replies sent (RFC 5230 section 4.2: one
-- reply per sender and handle within the period). `version` changes with every new text, so a delivery's
-- cache of checked scripts and the report of a script's error (once per text) can tell.
CREATE TABLE sieve_scripts (
    id             INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL,              -- accounts.id
    name           TEXT NOT NULL,                 -- as given (ManageSieve names are case-sensitive)
    script         TEXT NOT NULL,
    active         INTEGER NOT NULL DEFAULT 0,
    version        INTEGER NOT NULL,              -- from meta.next_sieve_version
    changed        REAL NOT NULL,
    error_reported INTEGER NOT NULL DEFAULT 0,    -- 1: an error of this version was reported to the account
    UNIQUE (account_id, name)
);
CREATE UNIQUE INDEX sieve_scripts_active ON sieve_scripts(account_id) WHERE active = 1;
CREATE TABLE sieve_vacation (
    account_id INTEGER NOT NULL,                  -- accounts.id
    handle     TEXT NOT NULL,
    sender     TEXT NOT NULL,                     -- lower-case
    sent       REAL NOT NULL,                     -- when the last reply went
    PRIMARY KEY (account_id, handle, sender)
) WITHOUT ROWID;
CREATE INDEX sieve_vacation_sent ON sieve_vacation(sent);
-- The message ids (or other values) the Sieve duplicate test (RFC 7352) has seen, per account and handle:
-- a hash of handle and value, until when it counts as seen.
CREATE TABLE sieve_duplicates (
    account_id INTEGER NOT NULL,                  -- accounts.id
    key        TEXT NOT NULL,                     -- sha256 hex of handle NUL value
    expires    REAL NOT NULL,
    PRIMARY KEY (account_id, key)
) WITHOUT ROWID;
CREATE INDEX sieve_duplicates_expires ON sieve_duplicates(expires);
-- End of version 27.
-- Greylisting (version 28, RFC 6647, docs/decisions/0089): the triplets of client network, envelope sender and
-- recipient seen on port 25, and the client networks counted for the automatic allowlist, each until it
-- expires (old ones are forgotten by the writes that add new ones).
CREATE TABLE greylist (
    key        TEXT PRIMARY KEY,                  -- "t NETWORK SENDER RECIPIENT" or "c NETWORK" (spam/greylist.py)
    first_seen REAL NOT NULL,
    passes     INTEGER NOT NULL DEFAULT 0,
    last_seen  REAL NOT NULL,
    expires    REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX greylist_expires ON greylist(expires);
-- End of version 28.
