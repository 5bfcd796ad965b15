//! The fetch path into the store: each message, its mailbox row and its POP identity are written in
//! one transaction, and several messages may share one commit (a "group commit": one fsync for many
//! messages). Nothing here is acknowledged to the fetcher before `commit` returns, and the fetcher
//! deletes from the server only what was acknowledged (DESIGN §4).

use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, params};

use super::accounts::AccountIds;
use super::{Store, db_err};
use crate::config::Duplicates;
use crate::error::{Error, Result};
use crate::mime::MessageMeta;

/// Who a fetched message is on its server, as the fetcher established it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The UIDL, or a fallback key (`fetch::keys`).
    pub key: String,
    /// What LIST said its size is.
    pub list_size: u64,
    /// Its header fingerprint (`fetch::keys::header_fingerprint`).
    pub fingerprint: Vec<u8>,
    /// RETR's answer had about LIST's size: the bytes are that message. When not, the identity is
    /// recorded as uncertain and never deleted on (DESIGN §4).
    pub exact: bool,
    /// The key is stored already, but the fetcher doubts that it still names the same message
    /// (its size changed; the server's UIDLs cannot be trusted): compare, and if these are other
    /// bytes, the key now names them (the old message keeps its local copy).
    pub recheck: bool,
}

impl Identity {
    /// A first-time identity whose answer matched LIST.
    pub fn new(key: &str, list_size: u64) -> Identity {
        Identity { key: key.to_string(), list_size, fingerprint: Vec::new(), exact: true, recheck: false }
    }
}

/// A message made durable by a commit.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub uid: i64,
    pub size: u64,
    /// The same bytes were already stored for this server under another identity (a server that
    /// changes its UIDLs), or under this one (a recheck that confirmed it): only the identity was
    /// recorded, no second copy.
    pub same_content: bool,
    /// A recheck found other bytes under a known key: the server reused a UIDL.
    pub reused: bool,
    /// The identity is certain (RETR matched LIST): it may be deleted from the server.
    pub exact: bool,
    /// A copy of a message held already (`duplicates`): what became of it.
    pub duplicate: Option<Duplicate>,
}

/// What became of a duplicate (`config::Duplicates`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    /// Filed like any message.
    Kept,
    /// Filed with the keyword `$Duplicate`.
    Marked,
    /// Not filed (`uid` is 0).
    Hidden,
}

/// The keyword `duplicates = "mark"` sets on a later copy.
pub const DUPLICATE_KEYWORD: &str = "$Duplicate";

/// What is parsed once of a message stored: its metadata, sort keys and duplicate key.
struct Parsed {
    meta: MessageMeta,
    keys: super::sortkeys::SortKeys,
    dup: ring::digest::Digest,
}

impl Parsed {
    fn new(raw: &[u8]) -> Parsed {
        let meta = MessageMeta::extract(raw);
        let keys = super::sortkeys::SortKeys::extract(raw, &meta);
        let dup = dup_key(keys.message_id.as_deref(), raw, &raw[(meta.header_len as usize).min(raw.len())..]);
        Parsed { meta, keys, dup }
    }
}

/// A copy held already of an arriving message (`Delivery::earlier_copy`).
struct Twin {
    body: i64,
    /// Byte for byte the arriving message: it is stored once, shared.
    same_bytes: bool,
}

/// What names a message whatever server it came through: a digest of its Message-ID and its
/// bytes below the header block (a mailing list's copy to two subscriptions, a CC to two
/// addresses: only the trace headers — Received, Delivered-To, Return-Path — differ). Without a
/// Message-ID, a digest of all its bytes: such messages are told apart by every byte. Only mail
/// that came in through a fetch (or `popbridge import`) has one, so mail filed by clients — a
/// Sent copy, an APPENDed draft — is never taken for an earlier copy.
pub fn dup_key(message_id: Option<&str>, raw: &[u8], body: &[u8]) -> ring::digest::Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    match message_id.map(str::trim).filter(|m| !m.is_empty()) {
        Some(id) => {
            ctx.update(b"popbridge duplicate key 1\0");
            ctx.update(id.as_bytes());
            ctx.update(b"\0");
            ctx.update(body);
        }
        None => {
            ctx.update(b"popbridge duplicate key 1 raw\0");
            ctx.update(raw);
        }
    }
    ctx.finish()
}

/// What the store holds for an identity a message arrives under (`Delivery::stored_as`).
struct StoredAs {
    /// Whether the arriving bytes are the stored message's (`None`: cannot be told).
    same: Option<bool>,
    /// popbridge downloaded the message under this identity itself (`pop_uidls.origin` is NULL).
    held: bool,
}

/// What `Delivery::add` did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new message (and its identity), in the open transaction.
    New,
    /// The identity was stored already: nothing written.
    Known,
    /// These exact bytes are stored for the server already (under another identity, or under this
    /// one when a recheck confirmed it): the identity now points at that copy.
    SameContent,
}

/// A server identity an imported message carries (Thunderbird's `X-UIDL:`), for `Delivery::import`.
#[derive(Debug, Clone)]
pub struct Claim {
    pub uidl: String,
    /// The size the server is expected to give the message (see `Delivery::import`).
    pub server_size: u64,
    /// Its header fingerprint (`fetch::keys::header_fingerprint`).
    pub fingerprint: Vec<u8>,
}

/// A message from another tool's store, for `Delivery::import`.
#[derive(Debug, Clone, Copy)]
pub struct Import<'a> {
    pub raw: &'a [u8],
    /// `message::flag` bits.
    pub flags: u8,
    /// INTERNALDATE as the source gives it (`None`: from the headers).
    pub date: Option<crate::mime::Timestamp>,
    pub claim: Option<&'a Claim>,
}

/// What `Delivery::import` did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// A new message in the open transaction; `claimed`: its UIDL is recorded as held by it.
    New { uid: i64, claimed: bool },
    /// These bytes are in the account's mailbox already: nothing written.
    AlreadyThere,
}

/// A writer for one account's fetched messages, on a connection of its own.
pub struct Delivery {
    conn: Connection,
    /// The account's `duplicates` setting.
    duplicates: Duplicates,
    changes: super::Changes,
    path: PathBuf,
    ids: AccountIds,
    /// The upstream mailbox's POP state record (`Store::pop_server`).
    server: i64,
    open: Option<Open>,
}

/// The open transaction's bookkeeping.
struct Open {
    next_uid: i64,
    modseq: i64,
    pending: Vec<Stored>,
    unseen_added: i64,
    bytes: u64,
}

impl Delivery {
    pub fn new(store: &Store, ids: AccountIds, server: i64) -> Result<Delivery> {
        Ok(Delivery {
            conn: store.connection()?,
            duplicates: Duplicates::Keep,
            changes: store.changes(),
            path: store.path().to_path_buf(),
            ids,
            server,
            open: None,
        })
    }

    /// What becomes of a message held already (the account's `duplicates`; `Keep` until set).
    pub fn set_duplicates(&mut self, duplicates: Duplicates) {
        self.duplicates = duplicates;
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        db_err(&self.path, e)
    }

    /// Whether an identity is stored (committed or in the open transaction).
    pub fn contains(&self, key: &str) -> Result<bool> {
        let mut st = self
            .conn
            .prepare_cached("SELECT 1 FROM pop_uidls WHERE server_id = ?1 AND uidl = ?2")
            .map_err(|e| self.err(e))?;
        st.query_row(params![self.server, key], |_| Ok(())).optional().map(|o| o.is_some()).map_err(|e| self.err(e))
    }

    /// Whether the identity is stored already, and if so whether these bytes are the ones stored
    /// for it (when its copy is gone — the user deleted it — the recorded fingerprint decides;
    /// `Some(None)`: it cannot be told).
    fn stored_as(&self, id: &Identity, raw: &[u8], digest: &[u8]) -> Result<Option<StoredAs>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT (SELECT b.sha256 = ?3 OR (b.sha256 IS NULL AND b.raw = ?4) FROM bodies b WHERE b.id = p.body_id),
                        p.fingerprint, p.origin IS NULL
                 FROM pop_uidls p WHERE p.server_id = ?1 AND p.uidl = ?2",
            )
            .map_err(|e| self.err(e))?;
        st.query_row(params![self.server, id.key, digest, raw], |r| {
            let same: Option<bool> = r.get(0)?;
            let fp: Option<Vec<u8>> = r.get(1)?;
            let same = same.or_else(|| fp.filter(|f| !f.is_empty()).map(|f| f == id.fingerprint));
            Ok(StoredAs { same, held: r.get(2)? })
        })
        .optional()
        .map_err(|e| self.err(e))
    }

    fn begin(&mut self) -> Result<()> {
        if self.open.is_some() {
            return Ok(());
        }
        // IMMEDIATE takes the write lock now, so the transaction cannot fail later for lack of it.
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| self.err(e))?;
        let row: rusqlite::Result<(i64, i64)> = self.conn.query_row(
            "SELECT uidnext, highestmodseq + 1 FROM mailboxes WHERE id = ?1",
            [self.ids.mailbox],
            |r| Ok((r.get(0)?, r.get(1)?)),
        );
        match row {
            Ok((next_uid, modseq)) => {
                self.open = Some(Open { next_uid, modseq, pending: Vec::new(), unseen_added: 0, bytes: 0 });
                Ok(())
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(self.err(e))
            }
        }
    }

    /// Adds one message to the open transaction (starting one if needed). Metadata is parsed here,
    /// once; see [`Added`] for the outcomes.
    pub fn add(&mut self, id: &Identity, raw: &[u8], fetched_at: i64) -> Result<Added> {
        self.begin()?;
        match self.add_inner(id, raw, fetched_at) {
            Ok(added) => Ok(added),
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    fn add_inner(&mut self, id: &Identity, raw: &[u8], fetched_at: i64) -> Result<Added> {
        if !id.recheck && self.contains(&id.key)? {
            return Ok(Added::Known);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, raw);
        let digest = digest.as_ref();
        let size = raw.len() as u64;
        let mut reused = false;
        match self.stored_as(id, raw, digest)? {
            None => {}
            // Known on the server but never held here (imported from another tool, or skipped by
            // a bounded import), and read now because LIST gave it another size: whatever it is,
            // its bytes are here now, so popbridge stores them and holds the identity from now on.
            // Other headers than recorded mean the server gave the UIDL to another message.
            Some(StoredAs { held: false, same }) => {
                self.conn
                    .prepare_cached("DELETE FROM pop_uidls WHERE server_id = ?1 AND uidl = ?2")
                    .and_then(|mut st| st.execute(params![self.server, id.key]))
                    .map_err(|e| self.err(e))?;
                reused = same == Some(false);
            }
            // The same message: the doubt is lifted and the identity's record renewed.
            Some(StoredAs { same: Some(true), .. }) => {
                self.conn
                    .prepare_cached(
                        "UPDATE pop_uidls SET list_size = ?3, fingerprint = ?4, exact = ?5 WHERE server_id = ?1 AND uidl = ?2",
                    )
                    .and_then(|mut st| st.execute(params![self.server, id.key, id.list_size as i64, id.fingerprint, id.exact]))
                    .map_err(|e| self.err(e))?;
                return self.same_content(id, size, reused);
            }
            // Another message under a known key (or one that cannot be compared): the server
            // reused the UIDL. The old message keeps its local copy; the key now names this one.
            Some(_) => {
                self.conn
                    .prepare_cached("DELETE FROM pop_uidls WHERE server_id = ?1 AND uidl = ?2")
                    .and_then(|mut st| st.execute(params![self.server, id.key]))
                    .map_err(|e| self.err(e))?;
                reused = true;
            }
        }
        // Are these bytes stored at all? Usually not, and one lookup says so: the three questions
        // below about them are asked only when they are. (Each query comparing the digest with an
        // indexed column is compiled again at every new value — SQLite is built with STAT4 — so
        // the common case pays for one.)
        let bytes_stored = self.bytes_stored(digest)?;
        // The same bytes under another identity: this key points at that copy, first seen when
        // that one was (a server that renumbers must not restart after-days' clock).
        let same: Option<(i64, i64)> = if !bytes_stored {
            None
        } else {
            self.conn
                .prepare_cached(
                    "SELECT b.id, min(p.first_seen) FROM bodies b JOIN pop_uidls p ON p.body_id = b.id
                 WHERE b.sha256 = ?1 AND p.server_id = ?2 GROUP BY b.id LIMIT 1",
                )
                .and_then(|mut st| {
                    st.query_row(params![digest, self.server], |r| Ok((r.get(0)?, r.get(1)?))).optional()
                })
                .map_err(|e| self.err(e))?
        };
        if let Some((body, first_seen)) = same {
            self.record(id, first_seen.min(fetched_at), body, size).map_err(|e| self.err(e))?;
            return self.same_content(id, size, reused);
        }
        // The same bytes in the account's folder already, fetched from another of its upstream
        // mailboxes (Gmail's "recent:" user name, a user name changed): the identity points at
        // that copy; a folder never files the same bytes twice.
        if let Some(body) = if bytes_stored { self.in_folder(digest)? } else { None } {
            self.record(id, fetched_at, body, size).map_err(|e| self.err(e))?;
            return self.same_content(id, size, reused);
        }
        let parsed = Parsed::new(raw);
        let meta = &parsed.meta;
        let date = meta.internal_date(fetched_at);
        let twin = self.earlier_copy(bytes_stored.then_some(digest), parsed.dup.as_ref())?;
        let (uid, duplicate) = match twin {
            None => {
                // Fetched mail arrives unread (DESIGN §3).
                let (uid, body) = self.insert_message(raw, digest, &parsed, 0, date)?;
                self.record(id, fetched_at, body, size).map_err(|e| self.err(e))?;
                (uid, None)
            }
            Some(Twin { body, same_bytes }) => {
                self.count_duplicate(self.duplicates == Duplicates::Hide)?;
                match self.duplicates {
                    // Not filed. The same bytes: this identity holds the stored copy (it may be
                    // deleted from its server as any message held). Other bytes (trace headers):
                    // not stored, so recorded as not held — skipped by the fetcher, never DELEted.
                    Duplicates::Hide => {
                        let (body, exact) = if same_bytes { (Some(body), id.exact) } else { (None, false) };
                        self.record_as(
                            id,
                            fetched_at,
                            body,
                            size,
                            (!same_bytes).then_some(super::accounts::Origin::Duplicate),
                        )
                        .map_err(|e| self.err(e))?;
                        self.note(Stored {
                            key: id.key.clone(),
                            uid: 0,
                            size,
                            same_content: false,
                            reused,
                            exact,
                            duplicate: Some(Duplicate::Hidden),
                        })?;
                        return Ok(Added::New);
                    }
                    policy => {
                        let keywords = if policy == Duplicates::Mark { Some(DUPLICATE_KEYWORD) } else { None };
                        let body = if same_bytes {
                            body
                        } else {
                            self.insert_body(raw, digest, &parsed).map_err(|e| self.err(e))?
                        };
                        let uid = self.insert_row(body, size, 0, keywords, date)?;
                        self.record(id, fetched_at, body, size).map_err(|e| self.err(e))?;
                        (uid, Some(if keywords.is_some() { Duplicate::Marked } else { Duplicate::Kept }))
                    }
                }
            }
        };
        // A verification mail coming back through POP confirms its address (same transaction).
        if memchr::memmem::find(&raw[..raw.len().min(meta.header_len as usize)], b"opbridge-Verify:").is_some()
            && let Err(e) = super::outbox::auto_confirm(&self.conn, raw)
        {
            return Err(db_err(&self.path, e));
        }
        let Some(open) = self.open.as_mut() else {
            return Err(Error::other("internal error: no open transaction"));
        };
        open.pending.push(Stored {
            key: id.key.clone(),
            uid,
            size,
            same_content: false,
            reused,
            exact: id.exact,
            duplicate,
        });
        Ok(Added::New)
    }

    /// The copy popbridge holds already of a message arriving now (fetched from any POP
    /// server, or imported): the same bytes (its `sha256`), else the same Message-ID and body
    /// (`dup_key`). Mail filed by clients has no `dup_key` and does not count.
    /// `digest`: `None` when no body has these bytes (`bytes_stored`).
    fn earlier_copy(&self, digest: Option<&[u8]>, dup: &[u8]) -> Result<Option<Twin>> {
        let find = |sql: &str, key: &[u8]| -> rusqlite::Result<Option<i64>> {
            self.conn.prepare_cached(sql)?.query_row([key], |r| r.get(0)).optional()
        };
        const FILED: &str = "AND EXISTS (SELECT 1 FROM messages m WHERE m.body_id = b.id) LIMIT 1";
        let same = match digest {
            Some(d) => {
                find(&format!("SELECT b.id FROM bodies b WHERE b.sha256 = ?1 AND b.dup_key IS NOT NULL {FILED}"), d)
                    .map_err(|e| self.err(e))?
            }
            None => None,
        };
        if let Some(body) = same {
            return Ok(Some(Twin { body, same_bytes: true }));
        }
        // Usually there is none: the plain index lookup says so without the join (the query
        // with the EXISTS is compiled again at every new key, as above).
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM bodies WHERE dup_key = ?1 LIMIT 1")
            .and_then(|mut st| st.exists([dup]))
            .map_err(|e| self.err(e))?;
        if !exists {
            return Ok(None);
        }
        let twin =
            find(&format!("SELECT b.id FROM bodies b WHERE b.dup_key = ?1 {FILED}"), dup).map_err(|e| self.err(e))?;
        Ok(twin.map(|body| Twin { body, same_bytes: false }))
    }

    /// Whether any body has these bytes (`digest`).
    fn bytes_stored(&self, digest: &[u8]) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM bodies WHERE sha256 = ?1 LIMIT 1")
            .and_then(|mut st| st.exists([digest]))
            .map_err(|e| self.err(e))
    }

    /// The body of a message with these bytes (`digest`) in the account's folder, if there is one.
    fn in_folder(&self, digest: &[u8]) -> Result<Option<i64>> {
        self.conn
            .prepare_cached(
                // By the digest's index, then each body's messages (CROSS JOIN keeps the order,
                // `+` keeps SQLite off the mailbox index): otherwise the planner walks the
                // mailbox's messages and reads each body row, blob and all, to reach its digest.
                "SELECT b.id FROM bodies b CROSS JOIN messages m ON m.body_id = b.id
                 WHERE b.sha256 = ?1 AND +m.mailbox_id = ?2 LIMIT 1",
            )
            .and_then(|mut st| st.query_row(params![digest, self.ids.mailbox], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))
    }

    /// Counts a duplicate fetched by the account (and one hidden), in the open transaction.
    fn count_duplicate(&self, hidden: bool) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE accounts SET duplicates_seen = duplicates_seen + 1, duplicates_hidden = duplicates_hidden + ?2 WHERE id = ?1",
            )
            .and_then(|mut st| st.execute(params![self.ids.account, hidden]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Writes a new body and its message row (with `flags`, `message::flag` bits) into the open
    /// transaction and counts it; returns its UID and body id.
    fn insert_message(
        &mut self,
        raw: &[u8],
        digest: &[u8],
        parsed: &Parsed,
        flags: u8,
        date: crate::mime::Timestamp,
    ) -> Result<(i64, i64)> {
        let body = self.insert_body(raw, digest, parsed).map_err(|e| self.err(e))?;
        let uid = self.insert_row(body, raw.len() as u64, flags, None, date)?;
        Ok((uid, body))
    }

    /// Writes a new body (with its sort keys) into the open transaction; returns its id.
    fn insert_body(&self, raw: &[u8], digest: &[u8], parsed: &Parsed) -> rusqlite::Result<i64> {
        let c = &self.conn;
        c.prepare_cached("INSERT INTO bodies (meta_version, meta, raw, sha256, dup_key) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![crate::mime::META_VERSION, parsed.meta.to_bytes(), raw, digest, parsed.dup.as_ref()])?;
        let body = c.last_insert_rowid();
        super::sortkeys::insert(c, body, &parsed.keys)?;
        Ok(body)
    }

    /// Files `body` in the account's mailbox under the next UID, with `flags` and `keyword`
    /// (learnt by the mailbox's keyword list), in the open transaction; returns the UID.
    fn insert_row(
        &mut self,
        body: i64,
        size: u64,
        flags: u8,
        keyword: Option<&str>,
        date: crate::mime::Timestamp,
    ) -> Result<i64> {
        let Some(open) = self.open.as_ref() else {
            return Err(Error::other("internal error: no open transaction"));
        };
        let (uid, modseq) = (open.next_uid, open.modseq);
        let c = &self.conn;
        let res = (|| -> rusqlite::Result<()> {
            if let Some(k) = keyword {
                super::imap::add_keywords(c, self.ids.mailbox, &[k.to_string()])?;
            }
            c.prepare_cached(
                "INSERT INTO messages (mailbox_id, uid, body_id, flags, keywords, modseq, internaldate, internaldate_tz, size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                self.ids.mailbox,
                uid,
                body,
                i64::from(flags),
                keyword,
                modseq,
                date.unix,
                date.offset_minutes,
                size as i64
            ])?;
            Ok(())
        })();
        res.map_err(|e| db_err(&self.path, e))?;
        let Some(open) = self.open.as_mut() else {
            return Err(Error::other("internal error: no open transaction"));
        };
        open.next_uid += 1;
        if flags & super::message::flag::SEEN == 0 {
            open.unseen_added += 1;
        }
        open.bytes += size;
        Ok(uid)
    }

    /// Imports one message from another tool's store (`popbridge import`) into the open
    /// transaction (starting one if needed), with its flags and INTERNALDATE (`None`: from its
    /// headers, as for fetched mail). Bytes already in the account's mailbox are not stored
    /// again ([`Imported::AlreadyThere`]): that is what makes an interrupted import safe to run
    /// again, since each commit holds whole messages. A claimed UIDL (Thunderbird's `X-UIDL:`) that
    /// the server's POP state does not know, or knows only as not held, is recorded as held by
    /// the new message, so the fetcher never downloads it again; its `server_size` (the stored
    /// bytes without what the tool added) is compared by the fetcher with LIST's answer as for
    /// identities recorded before LIST sizes were (within a few lines' slack).
    pub fn import(&mut self, m: &Import<'_>, now: i64) -> Result<Imported> {
        self.begin()?;
        let r = self.import_inner(m, now);
        if r.is_err() {
            self.rollback();
        }
        r
    }

    fn import_inner(&mut self, m: &Import<'_>, now: i64) -> Result<Imported> {
        let Import { raw, flags, date, claim: uidl } = *m;
        let digest = ring::digest::digest(&ring::digest::SHA256, raw);
        let digest = digest.as_ref();
        let there = self.in_folder(digest)?;
        if there.is_some() {
            return Ok(Imported::AlreadyThere);
        }
        let parsed = Parsed::new(raw);
        let meta = &parsed.meta;
        let date = date.unwrap_or_else(|| meta.internal_date(now));
        let (uid, body) = self.insert_message(raw, digest, &parsed, flags, date)?;
        let mut claimed = false;
        if let Some(Claim { uidl: key, server_size, fingerprint }) = uidl {
            let held: Option<bool> = self
                .conn
                .prepare_cached("SELECT origin IS NULL FROM pop_uidls WHERE server_id = ?1 AND uidl = ?2")
                .and_then(|mut st| st.query_row(params![self.server, key], |r| r.get(0)).optional())
                .map_err(|e| self.err(e))?;
            if held != Some(true) {
                self.conn
                    .prepare_cached("DELETE FROM pop_uidls WHERE server_id = ?1 AND uidl = ?2")
                    .and_then(|mut st| st.execute(params![self.server, key]))
                    .and_then(|_| {
                        self.conn.prepare_cached(
                            "INSERT INTO pop_uidls (server_id, uidl, first_seen, body_id, size, list_size, fingerprint, exact)
                             VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, 1)",
                        )
                    })
                    .and_then(|mut st| st.execute(params![self.server, key, now, body, *server_size as i64, fingerprint]))
                    .map_err(|e| self.err(e))?;
                claimed = true;
            }
        }
        let Some(open) = self.open.as_mut() else {
            return Err(Error::other("internal error: no open transaction"));
        };
        let size = raw.len() as u64;
        open.pending.push(Stored {
            key: uidl.map(|u| u.uidl.clone()).unwrap_or_default(),
            uid,
            size,
            same_content: false,
            reused: false,
            exact: true,
            duplicate: None,
        });
        Ok(Imported::New { uid, claimed })
    }

    /// The identity is recorded against a copy stored already: noted as such, nothing filed.
    fn same_content(&mut self, id: &Identity, size: u64, reused: bool) -> Result<Added> {
        self.note(Stored {
            key: id.key.clone(),
            uid: 0,
            size,
            same_content: true,
            reused,
            exact: id.exact,
            duplicate: None,
        })?;
        Ok(Added::SameContent)
    }

    /// Notes a stored identity that needs no new copy.
    fn note(&mut self, stored: Stored) -> Result<()> {
        let Some(open) = self.open.as_mut() else {
            return Err(Error::other("internal error: no open transaction"));
        };
        open.pending.push(stored);
        Ok(())
    }

    /// The identity's POP state row, pointing at `body`.
    fn record(&self, id: &Identity, fetched_at: i64, body: i64, size: u64) -> rusqlite::Result<usize> {
        self.record_as(id, fetched_at, Some(body), size, None)
    }

    /// The identity's POP state row with its `origin` (`None`: held by `body`; a hidden
    /// duplicate whose bytes differ is recorded with no body as [`Origin::Duplicate`]: never
    /// DELEted, skipped while LIST gives it this size).
    ///
    /// [`Origin::Duplicate`]: super::accounts::Origin::Duplicate
    fn record_as(
        &self,
        id: &Identity,
        fetched_at: i64,
        body: Option<i64>,
        size: u64,
        origin: Option<super::accounts::Origin>,
    ) -> rusqlite::Result<usize> {
        self.conn
            .prepare_cached(
                "INSERT INTO pop_uidls (server_id, uidl, first_seen, body_id, size, list_size, fingerprint, exact, origin)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                self.server,
                id.key,
                fetched_at,
                body,
                size as i64,
                id.list_size as i64,
                id.fingerprint,
                id.exact,
                origin.map(|o| o.to_text())
            ])
    }

    /// Messages and bytes waiting in the open transaction.
    pub fn pending(&self) -> (usize, u64) {
        self.open.as_ref().map(|o| (o.pending.len(), o.bytes)).unwrap_or((0, 0))
    }

    /// Makes the open transaction durable and returns what it stored. When this returns, the
    /// store's guard covers the commit too (`guard`): only then may the fetcher DELE.
    pub fn commit(&mut self) -> Result<Vec<Stored>> {
        let Some(open) = self.open.take() else { return Ok(Vec::new()) };
        if open.pending.is_empty() {
            // Only known identities: nothing was written.
            let _ = self.conn.execute_batch("ROLLBACK");
            return Ok(Vec::new());
        }
        let added = open.pending.iter().filter(|p| p.uid != 0).count() as i64;
        let res = self
            .conn
            .execute(
                "UPDATE mailboxes SET uidnext = ?2, highestmodseq = ?3, messages = messages + ?4, unseen = unseen + ?5 WHERE id = ?1",
                params![self.ids.mailbox, open.next_uid, open.modseq, added, open.unseen_added],
            )
            .and_then(|_| super::guard::bump(&self.conn))
            .and_then(|_| self.conn.execute_batch("COMMIT"));
        match res {
            Ok(()) => {
                // Durable in the store; now in the guard, before anyone acts on it — the fetcher
                // (DELE) and IMAP sessions (told of the new UIDs only now, so no client sees a UID
                // a lost log could hand out again). Should that fail, the messages are stored but
                // not reported: nothing is DELEted for them, and sessions see them at their next
                // look at the store.
                super::guard::advance(&self.path, &self.conn)?;
                self.changes.notify();
                Ok(open.pending)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(self.err(e))
            }
        }
    }

    pub fn rollback(&mut self) {
        if self.open.take().is_some() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.rollback();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a@example.com\r\nDate: Tue, 1 Jul 2025 10:52:37 +0200\r\nSubject: hi\r\n\r\nbody\r\n";
    const MSG2: &[u8] = b"From: b@example.com\r\nSubject: two\r\n\r\nbody\r\n";
    const MSG3: &[u8] = b"From: c@example.com\r\nSubject: three\r\n\r\nbody\r\n";

    fn id(key: &str) -> Identity {
        Identity::new(key, 40)
    }

    #[test]
    fn group_commit_assigns_uids_and_counts() {
        let dir = crate::store::private_tempdir();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let ids = store.ensure_account("Work").unwrap();
        let server = store.pop_server(ids.account, "pop.example:995/me").unwrap().id;
        let mut d = Delivery::new(&store, ids, server).unwrap();
        assert_eq!(d.add(&id("u1"), MSG, 1_800_000_000).unwrap(), Added::New);
        assert_eq!(d.add(&id("u2"), MSG2, 1_800_000_000).unwrap(), Added::New);
        assert_eq!(
            d.add(&id("u1"), MSG, 1_800_000_000).unwrap(),
            Added::Known,
            "same identity twice in one transaction"
        );
        assert_eq!(d.add(&id("u9"), MSG, 1_800_000_000).unwrap(), Added::SameContent, "same bytes under a new UIDL");
        assert_eq!(store.mailbox_messages("Work").unwrap(), Some(0), "nothing visible before commit");
        let stored = d.commit().unwrap();
        assert_eq!(stored.iter().filter(|s| !s.same_content).map(|s| s.uid).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(store.mailbox_messages("Work").unwrap(), Some(2));
        assert_eq!(d.add(&id("u2"), MSG2, 1).unwrap(), Added::Known, "known after commit");
        d.rollback();
        let known = store.known_uidls(server).unwrap();
        assert_eq!(known.len(), 3);
        // An uncommitted transaction dropped: nothing stored, UIDs not consumed.
        let mut d = Delivery::new(&store, ids, server).unwrap();
        d.add(&id("u3"), MSG3, 1).unwrap();
        drop(d);
        assert_eq!(store.known_uidls(server).unwrap().len(), 3);
        let mut d = Delivery::new(&store, ids, server).unwrap();
        d.add(&id("u3"), MSG3, 1).unwrap();
        assert_eq!(d.commit().unwrap()[0].uid, 3);
        // Expunged everywhere: marked for when-deleted-locally, body dropped.
        store.expunge("Work", &[1]).unwrap();
        let known = store.known_uidls(server).unwrap();
        assert!(known["u1"].local_deleted && !known["u2"].local_deleted);
        assert_eq!(store.mailbox_messages("Work").unwrap(), Some(2));
    }

    #[test]
    fn identities_not_held_are_recorded_once_and_taken_over_by_a_download() {
        use crate::store::accounts::{NotHeld, Origin, Recorded, Tool};
        let dir = crate::store::private_tempdir();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let ids = store.ensure_account("Work").unwrap();
        let server = store.pop_server(ids.account, "pop.example:995/me").unwrap().id;
        let mut d = Delivery::new(&store, ids, server).unwrap();
        d.add(&id("fetched"), MSG, 1).unwrap();
        d.commit().unwrap();
        let imported = Origin::Imported(Tool::Mpop);
        let e = |uidl: &str, list_size| NotHeld { uidl: uidl.to_string(), list_size, fingerprint: Vec::new() };
        let entries = vec![e("fetched", 40), e("u1", 40), e("u2", 41)];
        assert_eq!(store.record_not_held(server, imported, &entries).unwrap(), Recorded { added: 2, known: 1 });
        assert_eq!(store.record_not_held(server, imported, &entries).unwrap(), Recorded { added: 0, known: 3 });
        let known = store.known_uidls(server).unwrap();
        assert!(known["fetched"].held(), "what popbridge fetched itself stays its own");
        assert_eq!((known["u1"].origin, known["u1"].list_size, known["u1"].body_id), (Some(imported), Some(40), None));
        assert_eq!(Origin::parse(&imported.to_text()), Some(imported));
        assert_eq!(Origin::parse(&Origin::Skipped.to_text()), Some(Origin::Skipped));
        // LIST gave u2 another size: it is read, stored, and held from now on (not a reuse: the
        // record had no headers to compare).
        assert_eq!(d.add(&Identity { recheck: true, ..id("u2") }, MSG2, 5).unwrap(), Added::New);
        let s = d.commit().unwrap();
        assert!(!s[0].reused && !s[0].same_content);
        let known = store.known_uidls(server).unwrap();
        assert!(known["u2"].held() && known["u2"].body_id.is_some());
        assert_eq!(store.mailbox_messages("Work").unwrap(), Some(2));
    }

    #[test]
    fn a_recheck_confirms_the_same_bytes_and_repoints_a_reused_uidl() {
        let dir = crate::store::private_tempdir();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let ids = store.ensure_account("Work").unwrap();
        let server = store.pop_server(ids.account, "pop.example:995/me").unwrap().id;
        let mut d = Delivery::new(&store, ids, server).unwrap();
        d.add(&id("1"), MSG, 1).unwrap();
        d.commit().unwrap();
        let recheck = |key: &str| Identity { recheck: true, ..id(key) };
        // The same bytes again: confirmed, no second copy.
        assert_eq!(d.add(&recheck("1"), MSG, 2).unwrap(), Added::SameContent);
        let s = d.commit().unwrap();
        assert!(s[0].same_content && !s[0].reused);
        // Other bytes under UIDL 1: a new message, the key names it now; the old one stays.
        assert_eq!(d.add(&recheck("1"), MSG2, 3).unwrap(), Added::New);
        let s = d.commit().unwrap();
        assert!(s[0].reused && !s[0].same_content && s[0].uid == 2);
        assert_eq!(store.mailbox_messages("Work").unwrap(), Some(2));
        let known = store.known_uidls(server).unwrap();
        assert_eq!((known.len(), known["1"].first_seen), (1, 3), "first seen when the new message was");
        // State is per upstream mailbox: another one starts empty.
        let other = store.pop_server(ids.account, "pop.example:995/someone-else").unwrap().id;
        assert!(store.known_uidls(other).unwrap().is_empty());
    }

    #[test]
    fn a_message_held_already_is_kept_marked_or_hidden_and_identical_bytes_are_stored_once() {
        use crate::store::accounts::Origin;
        let list = |trace: &str| {
            format!("Received: from {trace}\r\nMessage-ID: <post-1@lists.example>\r\nSubject: [list] hi\r\n\r\nsame body\r\n")
                .into_bytes()
        };
        let (via_a, via_b) = (list("mx.a.example"), list("mx.b.example"));
        let dir = crate::store::private_tempdir();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let a = store.ensure_account("A").unwrap();
        let sa = store.pop_server(a.account, "pop.a.example:995/me").unwrap().id;
        let mut da = Delivery::new(&store, a, sa).unwrap();
        assert_eq!(da.add(&id("a1"), &via_a, 1).unwrap(), Added::New);
        assert_eq!(da.commit().unwrap()[0].duplicate, None);
        let count = |sql: &str| -> i64 { store.lock().query_row(sql, [], |r| r.get(0)).unwrap() };
        let account = |name: &str, policy: Duplicates| {
            let ids = store.ensure_account(name).unwrap();
            let server = store.pop_server(ids.account, &format!("pop.{name}.example:995/me")).unwrap().id;
            let mut d = Delivery::new(&store, ids, server).unwrap();
            d.set_duplicates(policy);
            (d, server)
        };
        let stored = |d: &mut Delivery, key: &str, raw: &[u8]| {
            assert_eq!(d.add(&id(key), raw, 2).unwrap(), Added::New);
            let s = d.commit().unwrap();
            assert_eq!(s.len(), 1);
            s[0].clone()
        };

        // keep: filed in both folders; other trace headers keep their own bytes, the same bytes
        // share the stored body.
        let (mut keep, _) = account("Keep", Duplicates::Keep);
        let s = stored(&mut keep, "k1", &via_b);
        assert_eq!((s.duplicate, s.uid, s.exact), (Some(Duplicate::Kept), 1, true));
        assert_eq!(count("SELECT count(*) FROM bodies"), 2);
        let s = stored(&mut keep, "k2", &via_a);
        assert_eq!((s.duplicate, s.uid), (Some(Duplicate::Kept), 2));
        assert_eq!(count("SELECT count(*) FROM bodies"), 2, "byte-identical: no second body");
        assert_eq!(store.mailbox_messages("Keep").unwrap(), Some(2));

        // mark: filed with $Duplicate, which the folder's keyword list announces.
        let (mut mark, _) = account("Mark", Duplicates::Mark);
        let s = stored(&mut mark, "m1", &via_b);
        assert_eq!(s.duplicate, Some(Duplicate::Marked));
        let kw: String = store
            .lock()
            .query_row("SELECT m.keywords FROM messages m JOIN accounts a ON a.mailbox_id = m.mailbox_id WHERE a.name = 'Mark'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kw, DUPLICATE_KEYWORD);
        assert_eq!(count("SELECT count(*) FROM mailbox_keywords WHERE keyword = '$Duplicate'"), 1);

        // hide: not filed. Other bytes: not stored, recorded as not held (never DELEted);
        // the same bytes: held by the shared body (may be deleted as any message held).
        let (mut hide, server) = account("Hide", Duplicates::Hide);
        let bodies = count("SELECT count(*) FROM bodies");
        let s = stored(&mut hide, "h1", &list("mx.c.example"));
        assert_eq!((s.duplicate, s.uid, s.exact), (Some(Duplicate::Hidden), 0, false));
        let s = stored(&mut hide, "h2", &via_a);
        assert_eq!((s.duplicate, s.uid, s.exact), (Some(Duplicate::Hidden), 0, true));
        assert_eq!(count("SELECT count(*) FROM bodies"), bodies, "nothing stored for a hidden copy");
        assert_eq!(store.mailbox_messages("Hide").unwrap(), Some(0));
        let known = store.known_uidls(server).unwrap();
        assert_eq!((known["h1"].origin, known["h1"].held()), (Some(Origin::Duplicate), false));
        assert!(known["h2"].held() && known["h2"].body_id.is_some());
        assert_eq!(d_counts(&store, "Hide"), (2, 2));
        assert_eq!(d_counts(&store, "Keep"), (2, 0));

        // Expunged from A's folder, the shared body stays for Keep's copy.
        store.expunge("A", &[1]).unwrap();
        assert_eq!(store.mailbox_messages("Keep").unwrap(), Some(2));
        assert_eq!(
            count(
                "SELECT count(*) FROM messages WHERE body_id = (SELECT body_id FROM messages m JOIN accounts a ON a.mailbox_id = m.mailbox_id WHERE a.name = 'Keep' AND m.uid = 2)"
            ),
            1
        );

        // The same bytes through another upstream mailbox of the same account (Gmail's
        // "recent:me"): not filed twice in its folder.
        let ids = store.ensure_account("Keep").unwrap();
        let recent = store.pop_server(ids.account, "pop.Keep.example:995/recent:me").unwrap().id;
        let mut again = Delivery::new(&store, ids, recent).unwrap();
        assert_eq!(again.add(&id("r1"), &via_b, 3).unwrap(), Added::SameContent);
        assert!(again.commit().unwrap()[0].same_content);
        assert_eq!(store.mailbox_messages("Keep").unwrap(), Some(2));

        // Without a Message-ID only the full bytes tell: the same body under other headers is
        // another message.
        let (mut plain, _) = account("Plain", Duplicates::Hide);
        let s = stored(&mut plain, "p1", b"From: x@example\r\nSubject: one\r\n\r\nsame body\r\n");
        assert_eq!(s.duplicate, None);
        let s = stored(&mut plain, "p2", b"From: y@example\r\nSubject: two\r\n\r\nsame body\r\n");
        assert_eq!((s.duplicate, s.uid), (None, 2));
    }

    fn d_counts(store: &Store, name: &str) -> (i64, i64) {
        let s = store.account_statuses().unwrap().into_iter().find(|s| s.name == name).unwrap();
        (s.duplicates_seen, s.duplicates_hidden)
    }
}
