//! The store's schema and its migrations. `PRAGMA user_version` is the schema version;
//! `PRAGMA application_id` marks the file as ours, so a foreign SQLite file is never written to.

/// "popb" in ASCII: identifies a popbridge store.
pub const APPLICATION_ID: i32 = 0x706f_7062;

/// Each entry migrates from version `i` to `i + 1`, in one transaction.
pub const MIGRATIONS: &[&str] = &[
    // 0 → 1: the first schema.
    r#"
CREATE TABLE mailboxes (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,      -- full path, '/' separated: "INBOX", "Work", "Work/Sent"
    special_use   TEXT,                      -- "\Sent" … for the SPECIAL-USE folders
    subscribed    INTEGER NOT NULL DEFAULT 1,
    uidvalidity   INTEGER NOT NULL,          -- chosen once, never changed (RFC 3501 §2.3.1.1)
    uidnext       INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    messages      INTEGER NOT NULL DEFAULT 0, -- counters kept in step by every write, so SELECT and
    unseen        INTEGER NOT NULL DEFAULT 0, -- STATUS answer without scanning messages
    recent_uid    INTEGER NOT NULL DEFAULT 0, -- highest UID some session has seen as \Recent (RFC 3501 §2.3.2)
    created_at    INTEGER NOT NULL
);

CREATE TABLE accounts (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,
    mailbox_id           INTEGER NOT NULL REFERENCES mailboxes(id),
    created_at           INTEGER NOT NULL,
    state                TEXT NOT NULL DEFAULT 'active',   -- active | backoff | disabled
    last_fetch           INTEGER,       -- end of the last successful cycle (unix seconds)
    last_attempt         INTEGER,
    next_fetch           INTEGER,
    last_error_class     TEXT,
    last_error_message   TEXT,
    last_error_at        INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    auth_failures        INTEGER NOT NULL DEFAULT 0,
    server_messages      INTEGER,       -- what the server held at the last listing
    server_bytes         INTEGER,
    fetched_messages     INTEGER NOT NULL DEFAULT 0,   -- ever stored by this account's fetcher
    fetched_bytes        INTEGER NOT NULL DEFAULT 0,
    capabilities         TEXT
);

-- The raw message as received (CRLF, dot-unstuffed) and its metadata, parsed once at insert.
-- meta precedes raw so that reading it never walks the blob's overflow pages.
CREATE TABLE bodies (
    id           INTEGER PRIMARY KEY,
    meta_version INTEGER NOT NULL,
    meta         BLOB NOT NULL,
    raw          BLOB NOT NULL
);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    mailbox_id      INTEGER NOT NULL REFERENCES mailboxes(id),
    uid             INTEGER NOT NULL,
    body_id         INTEGER NOT NULL REFERENCES bodies(id),
    flags           INTEGER NOT NULL DEFAULT 0,   -- bit 0 \Seen, 1 \Answered, 2 \Flagged, 3 \Deleted, 4 \Draft
    keywords        TEXT,                         -- space-separated keywords, NULL when none
    modseq          INTEGER NOT NULL,
    internaldate    INTEGER NOT NULL,             -- unix seconds
    internaldate_tz INTEGER NOT NULL,             -- offset east of UTC, minutes
    size            INTEGER NOT NULL,
    UNIQUE (mailbox_id, uid)
);
CREATE INDEX messages_body ON messages(body_id);
CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);

-- Expunged UIDs with the MODSEQ of their expunge, so every IMAP session (and a QRESYNC-style
-- resync) learns what vanished since the state it knows. Writers raise the mailbox's
-- highestmodseq before deleting, so the trigger records the new value.
CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL,
    uid        INTEGER NOT NULL,
    modseq     INTEGER NOT NULL
);
CREATE INDEX expunged_mailbox ON expunged(mailbox_id, modseq);

CREATE TRIGGER messages_expunged AFTER DELETE ON messages
BEGIN
    INSERT INTO expunged (mailbox_id, uid, modseq)
    VALUES (OLD.mailbox_id, OLD.uid, (SELECT highestmodseq FROM mailboxes WHERE id = OLD.mailbox_id));
END;

-- POP state: one row per message identity seen on an account's server and stored here.
-- uidl is the server's UIDL, or a fallback key ("fallback …", never a valid UIDL) when the server
-- has none. Written in the same transaction as the message it identifies.
CREATE TABLE pop_uidls (
    account_id    INTEGER NOT NULL REFERENCES accounts(id),
    uidl          TEXT NOT NULL,
    first_seen    INTEGER NOT NULL,
    body_id       INTEGER,
    size          INTEGER NOT NULL,
    local_deleted INTEGER NOT NULL DEFAULT 0,     -- set when the message left every local mailbox
    PRIMARY KEY (account_id, uidl)
) WITHOUT ROWID;
CREATE INDEX pop_uidls_body ON pop_uidls(body_id);

-- A message gone from every mailbox: its body is dropped and its POP record marked, which is what
-- the when-deleted-locally policy acts on.
CREATE TRIGGER messages_last_copy_gone AFTER DELETE ON messages
WHEN NOT EXISTS (SELECT 1 FROM messages WHERE body_id = OLD.body_id)
BEGIN
    UPDATE pop_uidls SET local_deleted = 1 WHERE body_id = OLD.body_id;
    DELETE FROM bodies WHERE id = OLD.body_id;
END;
"#,
    // 1 → 2: outgoing mail and address verification.
    r#"
-- Submitted messages, committed before the client hears 250, until the upstream server took them
-- (or they failed for good and a notice was written to INBOX).
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    account      TEXT NOT NULL,
    mail_from    TEXT NOT NULL,
    rcpts        TEXT NOT NULL,            -- recipients still to deliver, one per line
    raw          BLOB NOT NULL,            -- as it will be relayed (Bcc removed, headers added)
    message_id   TEXT,
    subject      TEXT,
    created_at   INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    state        TEXT NOT NULL DEFAULT 'queued',   -- queued | sent | failed
    done_at      INTEGER
);
CREATE INDEX outbox_due ON outbox(state, next_attempt);

-- Addresses proven to belong to the user by a code mailed to them (a Reply-To, a relay sender).
CREATE TABLE verifications (
    address     TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,
    account     TEXT NOT NULL,
    code_hash   BLOB,
    salt        BLOB,
    sent_at     INTEGER,
    expires_at  INTEGER,
    tries       INTEGER NOT NULL DEFAULT 0,
    verified_at INTEGER
);
"#,
    // 2 → 3: what the daemon's schedule and health notices need.
    r#"
ALTER TABLE accounts ADD COLUMN failing_since INTEGER;        -- first failure of the current streak
ALTER TABLE accounts ADD COLUMN disabled_reason TEXT;         -- authentication | certificate
ALTER TABLE accounts ADD COLUMN notified TEXT NOT NULL DEFAULT 'none';  -- the health notice last written
ALTER TABLE accounts ADD COLUMN login_delay INTEGER;          -- the server's LOGIN-DELAY, seconds
ALTER TABLE accounts ADD COLUMN config_hash TEXT;             -- the account's settings when last seen
ALTER TABLE accounts ADD COLUMN progress_done INTEGER;        -- a fetch in progress: messages done,
ALTER TABLE accounts ADD COLUMN progress_total INTEGER;       -- of how many,
ALTER TABLE accounts ADD COLUMN progress_bytes INTEGER;       -- bytes done,
ALTER TABLE accounts ADD COLUMN progress_total_bytes INTEGER; -- of how many,
ALTER TABLE accounts ADD COLUMN progress_started INTEGER;     -- since when
"#,
    // 3 → 4: content digests, so a server that changes its UIDLs cannot make a message appear twice.
    r#"
ALTER TABLE bodies ADD COLUMN sha256 BLOB;
CREATE INDEX bodies_sha256 ON bodies(sha256);
"#,
    // 4 → 5: SEARCH UNSEEN (the clients' favourite) reads only the unread rows.
    r#"
CREATE INDEX messages_unseen ON messages(mailbox_id, uid) WHERE flags & 1 = 0;
"#,
    // 5 → 6: SEARCH TEXT / BODY through a trigram index of the folded search text, written in the
    // background by the daemon (store::search); `indexed` marks the bodies already in it.
    r#"
CREATE VIRTUAL TABLE search_fts USING fts5(
    h, b,                                  -- folded header lines, folded body text (imap::search)
    content = '', contentless_delete = 1,  -- the text is not stored twice: only the index
    tokenize = 'trigram case_sensitive 1'  -- already folded; substring matching, like IMAP's
);
ALTER TABLE bodies ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX bodies_unindexed ON bodies(id) WHERE indexed = 0;
CREATE TRIGGER bodies_unindex AFTER DELETE ON bodies WHEN OLD.indexed = 1
BEGIN
    DELETE FROM search_fts WHERE rowid = OLD.id;
END;
"#,
    // 6 → 7: the highest mailbox id and UIDVALIDITY ever handed out, so that a mailbox deleted and
    // created again under the same name is a new mailbox (RFC 3501 §2.3.1.1) even when the deleted
    // one held the highest values — `max()` over the remaining rows would hand them out again.
    r#"
CREATE TABLE mailbox_serials (
    one         INTEGER PRIMARY KEY CHECK (one = 1),
    last_id     INTEGER NOT NULL,
    uidvalidity INTEGER NOT NULL
);
INSERT INTO mailbox_serials (one, last_id, uidvalidity)
    SELECT 1, coalesce(max(id), 0), coalesce(max(uidvalidity), 0) FROM mailboxes;
"#,
    // 7 → 8: POP state belongs to the upstream mailbox (host, port, user), not to an account's
    // name, and each identity carries what is needed to check that a UIDL still names the same
    // message before it is deleted (DESIGN §4).
    r#"
CREATE TABLE pop_servers (
    id          INTEGER PRIMARY KEY,
    key         TEXT UNIQUE,              -- "host:port/user", host in lower case; NULL: state kept
                                          -- from before schema 8, claimed by its account's next fetch
    account_id  INTEGER,                  -- the account that fetches it (last seen)
    reused      INTEGER NOT NULL DEFAULT 0, -- the server was seen giving a known UIDL to another message
    unsure_quit INTEGER NOT NULL DEFAULT 0, -- the last session ended before the server confirmed QUIT
    created_at  INTEGER NOT NULL
);
INSERT INTO pop_servers (id, key, account_id, created_at) SELECT id, NULL, id, created_at FROM accounts;

CREATE TABLE pop_uidls_8 (
    server_id     INTEGER NOT NULL REFERENCES pop_servers(id),
    uidl          TEXT NOT NULL,
    first_seen    INTEGER NOT NULL,
    body_id       INTEGER,
    size          INTEGER NOT NULL,           -- bytes stored
    list_size     INTEGER,                    -- what LIST said when it was stored (NULL before 8)
    fingerprint   BLOB,                       -- its header fingerprint (fetch::keys; NULL before 7)
    exact         INTEGER NOT NULL DEFAULT 1, -- 0: RETR's answer was far from LIST's size
    local_deleted INTEGER NOT NULL DEFAULT 0, -- set when the message left every local mailbox
    PRIMARY KEY (server_id, uidl)
) WITHOUT ROWID;
INSERT INTO pop_uidls_8 (server_id, uidl, first_seen, body_id, size, local_deleted)
    SELECT account_id, uidl, first_seen, body_id, size, local_deleted FROM pop_uidls;
DROP TRIGGER messages_last_copy_gone;
DROP TABLE pop_uidls;
ALTER TABLE pop_uidls_8 RENAME TO pop_uidls;
CREATE INDEX pop_uidls_body ON pop_uidls(body_id);
CREATE TRIGGER messages_last_copy_gone AFTER DELETE ON messages
WHEN NOT EXISTS (SELECT 1 FROM messages WHERE body_id = OLD.body_id)
BEGIN
    UPDATE pop_uidls SET local_deleted = 1 WHERE body_id = OLD.body_id;
    DELETE FROM bodies WHERE id = OLD.body_id;
END;
"#,
    // 8 → 9: the store's identity and commit generation, which the guard file beside the store
    // mirrors (store::guard): a store below its guard lost committed transactions.
    r#"
CREATE TABLE store_guard (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    store_id   TEXT NOT NULL,      -- random, chosen once when the store is created
    generation INTEGER NOT NULL    -- +1 in every transaction that allocates UIDs or records POP state
);
INSERT INTO store_guard (id, store_id, generation) VALUES (1, lower(hex(randomblob(16))), 0);
"#,
    // 9 → 10: a large submission is spooled into the outbox as it arrives (issue 13): the row is
    // 'receiving' during DATA, its body goes into chunks, and at the end of DATA one commit makes it
    // 'queued' (before the 250) with `raw` = its header block as it will be relayed.
    r#"
ALTER TABLE outbox ADD COLUMN body_size INTEGER;   -- NULL: raw is the whole message; else the
                                                   -- bytes of the body in outbox_chunks, after raw
ALTER TABLE outbox ADD COLUMN body_8bit INTEGER NOT NULL DEFAULT 0;
CREATE TABLE outbox_chunks (
    id        INTEGER PRIMARY KEY,
    outbox_id INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    data      BLOB NOT NULL
);
CREATE UNIQUE INDEX outbox_chunks_order ON outbox_chunks(outbox_id, seq);
"#,
    // 10 → 11: STATUS=SIZE (RFC 8438) from the mailbox row, as MESSAGES and UNSEEN: the sum of
    // its messages' sizes (RFC822.SIZE), kept in step by triggers — a message's size and mailbox
    // never change after its insert, so an insert and a delete are the only moves. And the
    // subscriptions that outlive their mailbox (RFC 3501 §6.3.6: a server MUST NOT remove a name
    // from the subscription list because its mailbox is gone): LSUB and LIST (SUBSCRIBED) show
    // them (\NonExistent, RFC 5258); a mailbox created or renamed to the name takes it back.
    r#"
ALTER TABLE mailboxes ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
UPDATE mailboxes SET size = (SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = mailboxes.id);
CREATE TRIGGER messages_size_in AFTER INSERT ON messages
BEGIN
    UPDATE mailboxes SET size = size + NEW.size WHERE id = NEW.mailbox_id;
END;
CREATE TRIGGER messages_size_out AFTER DELETE ON messages
BEGIN
    UPDATE mailboxes SET size = size - OLD.size WHERE id = OLD.mailbox_id;
END;
CREATE TABLE kept_subscriptions (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TRIGGER mailboxes_gone_subscribed AFTER DELETE ON mailboxes WHEN OLD.subscribed != 0
BEGIN
    INSERT OR IGNORE INTO kept_subscriptions (name) VALUES (OLD.name);
END;
CREATE TRIGGER mailboxes_created_subscribed AFTER INSERT ON mailboxes
BEGIN
    DELETE FROM kept_subscriptions WHERE name = NEW.name;
END;
CREATE TRIGGER mailboxes_renamed_subscribed AFTER UPDATE OF name ON mailboxes
BEGIN
    DELETE FROM kept_subscriptions WHERE name = NEW.name;
END;
"#,
    // 11 → 12 (issue 15, CONDSTORE/QRESYNC): every keyword ever set in a mailbox, in the order it
    // first appeared, so SELECT announces them in FLAGS / PERMANENTFLAGS (RFC 3501 §7.2.6) without
    // reading every message; kept by STORE, APPEND and COPY, never shrunk (as Dovecot's keyword
    // list). `vanished_floor`: expunges with a MODSEQ at or below it were pruned from `expunged`
    // (store::imap::prune_expunged), so a resync from before it learns of them by comparison.
    r#"
CREATE TABLE mailbox_keywords (
    id         INTEGER PRIMARY KEY,
    mailbox_id INTEGER NOT NULL,
    keyword    TEXT NOT NULL COLLATE NOCASE,
    UNIQUE (mailbox_id, keyword)
);
WITH RECURSIVE split(mailbox_id, word, rest) AS (
    SELECT mailbox_id, '', keywords || ' ' FROM messages WHERE keywords IS NOT NULL
    UNION ALL
    SELECT mailbox_id, substr(rest, 1, instr(rest, ' ') - 1), substr(rest, instr(rest, ' ') + 1)
    FROM split WHERE rest <> ''
)
INSERT OR IGNORE INTO mailbox_keywords (mailbox_id, keyword)
    SELECT mailbox_id, word FROM split WHERE word <> '' ORDER BY mailbox_id;
ALTER TABLE mailboxes ADD COLUMN vanished_floor INTEGER NOT NULL DEFAULT 0;
"#,
    // 12 → 13: what SORT and THREAD compare, parsed once at insert (store::sortkeys): one row per
    // body. The rows of the mail stored before are written by `sortkeys::fill_missing` in the
    // same transaction (`SORT_KEYS_MIGRATION`).
    r#"
CREATE TABLE sort_keys (
    body_id      INTEGER PRIMARY KEY,   -- bodies.id
    date         INTEGER,               -- Date: in UTC, unix seconds; NULL: none usable (INTERNALDATE then)
    from_mb      TEXT NOT NULL,         -- first From / To / Cc addr-mailbox, casemapped (sort_form)
    to_mb        TEXT NOT NULL,
    cc_mb        TEXT NOT NULL,
    display_from TEXT NOT NULL,         -- RFC 5957 display names (else the address), casemapped
    display_to   TEXT NOT NULL,
    subject      TEXT NOT NULL,         -- RFC 5256 base subject, casemapped
    reply        INTEGER NOT NULL,      -- the subject was a reply or forward (Re:, Fwd:, (fwd))
    message_id   TEXT,                  -- without brackets
    refs         TEXT                   -- References ids (else In-Reply-To's first), space-separated
);
CREATE TRIGGER bodies_sort_keys AFTER DELETE ON bodies
BEGIN
    DELETE FROM sort_keys WHERE body_id = OLD.id;
END;
"#,
    // 13 → 14 (issue 17): identities known on the server but never downloaded by popbridge — taken
    // over from another tool's state (`account import-state`), later also skipped by a bounded
    // first import. `origin` says which (store::accounts::Origin, as text); NULL: fetched and held
    // by popbridge. A row with an origin has no body and is never DELEted (popbridge does not hold
    // that message); the fetcher skips it while LIST still gives its UIDL the size recorded here.
    r#"
ALTER TABLE pop_uidls ADD COLUMN origin TEXT;
"#,
    // 14 → 15 (issue 17): one copy of each message. `dup_key` names a message whatever server it
    // came through: a digest of its Message-ID and the bytes below its header block (trace
    // headers differ per server; store::deliver::dup_key), or of all its bytes when it has no
    // Message-ID. Set only for mail that came in through a fetch or `popbridge import`; NULL for
    // mail filed by clients and for mail stored before this version.
    // The accounts' counters of duplicates fetched, for `status` (`duplicates` setting).
    r#"
ALTER TABLE bodies ADD COLUMN dup_key BLOB;
CREATE INDEX bodies_dup_key ON bodies(dup_key);
ALTER TABLE accounts ADD COLUMN duplicates_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN duplicates_hidden INTEGER NOT NULL DEFAULT 0;
"#,
    // 15 → 16 (issue 18): the delivery journal of accounts that
    // deliver into another mail server (`[account.deliver]`, store::journal). A row is written
    // and committed as 'delivering' before a message is handed to the target, and turned
    // 'delivered' (with the target's confirmation) in the transaction that records its POP
    // identity as held (pop_uidls, body_id NULL). A row still 'delivering' after a crash is
    // looked for in the target (IMAP) or delivered again (LMTP: at-least-once); `attempts`
    // counts the deliveries started.
    r#"
CREATE TABLE deliveries (
    server_id    INTEGER NOT NULL,
    uidl         TEXT NOT NULL,
    target       TEXT NOT NULL,
    message_id   TEXT,
    sha256       BLOB NOT NULL,
    size         INTEGER NOT NULL,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    confirmation TEXT,
    updated      INTEGER NOT NULL,
    PRIMARY KEY (server_id, uidl)
) WITHOUT ROWID;
"#,
];

/// Undoes migrations 15 and 16 (the duplicate keys and counters, the delivery journal), for
/// tests that take a store back to an older schema.
#[cfg(test)]
pub const UNDO_AFTER_14: &str = "DROP INDEX bodies_dup_key; ALTER TABLE bodies DROP COLUMN dup_key;
    ALTER TABLE accounts DROP COLUMN duplicates_seen; ALTER TABLE accounts DROP COLUMN duplicates_hidden;
    DROP TABLE deliveries;";

/// The index in [`MIGRATIONS`] of the migration creating `sort_keys`: the store fills the table
/// for the bodies already stored right after it, in its transaction.
pub const SORT_KEYS_MIGRATION: usize = 12;
