//! The mailbox API the IMAP server works through: select a view, rows for a UID set, flags with
//! MODSEQ, expunge, copy / move, append, status, and "what changed since MODSEQ m". Each operation
//! is one job on the store's [`pool`](super::pool) (a blocking thread, one of a few shared
//! connections) and one transaction — IMMEDIATE wherever it writes (DESIGN §4), so a writer never
//! has to upgrade a read lock. Operations that hand out UIDs (append, copy, move, renaming INBOX)
//! return only once the store's guard covers them (`store::guard`).
//!
//! Errors are typed ([`Error`], [`ErrorKind`]): the class comes from SQLite's result codes, never
//! from an error's text, so the IMAP server can answer `NO [OVERQUOTA]` for a full disk.
//!
//! Work that must stay on the blocking thread while it reads (encoding FETCH responses, evaluating
//! SEARCH) runs through [`Store::read`] with a [`Reader`]: the same queries, no SQL outside here.

use std::collections::HashSet;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::Store;
use super::imap::{self as q, ChangesSince, FlagOp, MailboxInfo};
use super::message::{MessageRow, flag};
use crate::error::ErrorClass;
use crate::mime::text::TextFilter;
use crate::mime::{MessageMeta, Timestamp};

/// What kind of store failure this is: what a protocol answers depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The disk (or the file system's quota) is full: nothing was written.
    DiskFull,
    /// Another writer held the store longer than the busy timeout.
    Busy,
    /// What the operation addresses is not there (a mailbox deleted meanwhile).
    NotFound,
    /// The store is damaged: SQLite reports corruption, or the guard shows lost commits.
    Corrupt,
    Other,
}

/// A failed store operation: its kind, and the text a client or the log is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into() }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        let kind = match (&e, e.sqlite_error_code()) {
            (rusqlite::Error::QueryReturnedNoRows, _) => ErrorKind::NotFound,
            (_, Some(ErrorCode::DiskFull)) => ErrorKind::DiskFull,
            (_, Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)) => ErrorKind::Busy,
            (_, Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)) => ErrorKind::Corrupt,
            _ => ErrorKind::Other,
        };
        Error { kind, message: e.to_string() }
    }
}

/// The daemon-wide errors of the pool and the guard.
impl From<crate::error::Error> for Error {
    fn from(e: crate::error::Error) -> Error {
        let kind = if e.class == ErrorClass::StoreDamaged { ErrorKind::Corrupt } else { ErrorKind::Other };
        Error { kind, message: e.message }
    }
}

/// A mailbox as SELECT / EXAMINE opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub info: MailboxInfo,
    /// Every UID, ascending: the session's sequence-number map.
    pub uids: Vec<u32>,
    pub first_unseen: Option<u32>,
    /// Every keyword ever set in the mailbox, as FLAGS / PERMANENTFLAGS announce them.
    pub keywords: Vec<String>,
    /// UIDs above this are `\Recent` for the session that selected (`u32::MAX`: none are).
    pub recent_floor: u32,
}

/// A message to store ([`Store::append_messages`]): its bytes, flags, keywords and INTERNALDATE
/// (None: now).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub raw: Vec<u8>,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub date: Option<Timestamp>,
}

/// The rows of a FETCH page, after the implicit `\Seen` of a body fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchRows {
    /// Ascending by UID; expunged messages are absent.
    pub rows: Vec<MessageRow>,
    /// UIDs this fetch set `\Seen` on, ascending.
    pub newly_seen: Vec<u32>,
    /// The MODSEQ of that change.
    pub seen_modseq: Option<u64>,
}

/// Read access on a pooled connection, for work that reads as it goes ([`Store::read`]).
pub struct Reader<'a> {
    conn: &'a Connection,
}

impl Reader<'_> {
    /// The messages whose UIDs fall in the inclusive ranges, ascending by UID.
    pub fn rows(&self, mailbox: i64, ranges: &[(u32, u32)]) -> Result<Vec<MessageRow>> {
        Ok(q::rows(self.conn, mailbox, ranges)?)
    }
    /// The messages with `flags & mask == want`, ascending by UID.
    pub fn rows_with_flags(&self, mailbox: i64, mask: u8, want: u8) -> Result<Vec<MessageRow>> {
        Ok(q::rows_with_flags(self.conn, mailbox, mask, want)?)
    }
    /// The UIDs of the messages with `flags & mask == want`, ascending.
    pub fn uids_with_flags(&self, mailbox: i64, mask: u8, want: u8) -> Result<Vec<u32>> {
        Ok(q::uids_with_flags(self.conn, mailbox, mask, want)?)
    }
    /// The UIDs of the messages changed after MODSEQ `since`, ascending.
    pub fn uids_changed_since(&self, mailbox: i64, since: u64) -> Result<Vec<u32>> {
        Ok(q::uids_changed_since(self.conn, mailbox, since)?)
    }
    /// The full-text index's candidates for `f`, and the bodies not indexed yet
    /// ([`super::search::rows_matching`]).
    pub fn rows_matching(&self, mailbox: i64, f: &TextFilter) -> Result<(Vec<MessageRow>, HashSet<i64>)> {
        Ok(super::search::rows_matching(self.conn, mailbox, f)?)
    }
    pub fn meta(&self, body: i64) -> Result<Option<MessageMeta>> {
        Ok(q::meta(self.conn, body)?)
    }
    pub fn raw(&self, body: i64) -> Result<Option<Vec<u8>>> {
        Ok(q::raw(self.conn, body)?)
    }
    /// The mailbox's UIDs in SORT order ([`super::sortkeys::sorted_uids`]).
    pub fn sorted_uids(&self, mailbox: i64, keys: &[(super::sortkeys::SortBy, bool)]) -> Result<Option<Vec<u32>>> {
        Ok(super::sortkeys::sorted_uids(self.conn, mailbox, keys)?)
    }
    /// The messages among `uids` (ascending) with the SORT / THREAD keys `cols`
    /// ([`super::sortkeys::rows`]).
    pub fn sort_rows(
        &self,
        mailbox: i64,
        uids: &[u32],
        cols: super::sortkeys::Columns,
    ) -> Result<Vec<super::sortkeys::SortRow>> {
        Ok(super::sortkeys::rows(self.conn, mailbox, uids, cols)?)
    }
    /// Bytes `range` of a body (fewer at its end); None: no such body.
    pub fn raw_range(&self, body: i64, range: std::ops::Range<usize>) -> Result<Option<Vec<u8>>> {
        Ok(q::raw_range(self.conn, body, range)?)
    }
    /// A body opened once for many [`BodyRanges::read`]s: each `raw_range` opens the blob anew,
    /// and SQLite then walks a large body's overflow pages from its start to reach the offset;
    /// an open blob keeps its place (reading a 50 MB body in 64 KiB pieces: one walk, not 800).
    pub fn body_ranges(&self, body: i64) -> BodyRanges<'_> {
        BodyRanges { blob: self.conn.blob_open(rusqlite::MAIN_DB, "bodies", "raw", body, true).ok() }
    }
}

/// See [`Reader::body_ranges`].
pub struct BodyRanges<'a> {
    blob: Option<rusqlite::blob::Blob<'a>>,
}

impl BodyRanges<'_> {
    /// Bytes `range` of the body, fewer at its end; empty when it could not be read.
    pub fn read(&mut self, range: std::ops::Range<usize>) -> Vec<u8> {
        let Some(blob) = &self.blob else { return Vec::new() };
        let end = range.end.min(blob.len());
        let start = range.start.min(end);
        let mut buf = vec![0u8; end - start];
        match blob.read_at_exact(&mut buf, start) {
            Ok(()) => buf,
            Err(_) => Vec::new(),
        }
    }
}

fn immediate(c: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    c.transaction_with_behavior(TransactionBehavior::Immediate)
}

/// After a commit that handed out UIDs: the guard covers it before anyone hears of them.
fn guarded(c: &Connection) -> Result<()> {
    Ok(super::guard::advance_conn(c)?)
}

/// Creates the superior names of `name` that do not exist yet (RFC 3501 §6.3.3).
fn create_parents(tx: &Connection, name: &str) -> rusqlite::Result<()> {
    let parts: Vec<&str> = name.split('/').collect();
    for i in 1..parts.len() {
        let parent = parts[..i].join("/");
        if q::mailbox(tx, &parent)?.is_none() {
            q::create_mailbox(tx, &parent, None)?;
        }
    }
    Ok(())
}

impl Store {
    /// Runs `f` on a pooled connection (on a blocking thread).
    async fn job<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static) -> Result<T> {
        self.pool().run(f).await?
    }

    /// Runs `f` with read access on a pooled connection, on a blocking thread.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.job(move |c| f(&Reader { conn: c })).await
    }

    /// Every mailbox, by name.
    pub async fn list_mailboxes(&self) -> Result<Vec<MailboxInfo>> {
        self.job(|c| Ok(q::mailboxes(c)?)).await
    }

    /// The mailbox called `name`. When there is none and `special` is given (an account view's
    /// special-use folder, DESIGN §3), it is created with that attribute on first use.
    pub async fn mailbox_named(&self, name: String, special: Option<String>) -> Result<Option<MailboxInfo>> {
        self.job(move |c| {
            if let Some(i) = q::mailbox(c, &name)? {
                return Ok(Some(i));
            }
            if let Some(su) = special {
                q::create_mailbox(c, &name, Some(&su))?;
                return Ok(q::mailbox(c, &name)?);
            }
            Ok(None)
        })
        .await
    }

    /// The local root mailbox of account `account` (matched case-insensitively, an exact match
    /// first); None also when it cannot be read.
    pub async fn account_root(&self, account: String) -> Result<Option<String>> {
        self.job(move |c| {
            Ok(c.query_row(
                "SELECT m.name FROM accounts a JOIN mailboxes m ON m.id = a.mailbox_id
                 WHERE a.name = ?1 COLLATE NOCASE ORDER BY a.name = ?1 DESC LIMIT 1",
                [&account],
                |r| r.get(0),
            )
            .ok())
        })
        .await
    }

    /// SELECT (`claim`) / EXAMINE: the mailbox, its UIDs, first unseen UID and keywords, in one transaction;
    /// SELECT also claims `\Recent` for the caller (`imap::claim_recent`). On a full disk the claim
    /// cannot be recorded: the mailbox still opens, with no message `\Recent` for this session
    /// (RFC 3501 §2.3.2 allows that) — what is stored stays readable.
    pub async fn select_mailbox(&self, id: i64, claim: bool) -> Result<Selection> {
        let cache = self.uid_cache.clone();
        self.job(move |c| {
            // EXAMINE writes nothing: no write lock to wait for.
            let tx = if claim { immediate(c)? } else { c.transaction()? };
            let info =
                q::mailbox_by_id(&tx, id)?.ok_or_else(|| Error::new(ErrorKind::NotFound, "the mailbox vanished"))?;
            let cur = super::uid_cache::Current {
                id,
                uidvalidity: info.uidvalidity,
                highestmodseq: info.highestmodseq,
                messages: info.messages,
            };
            let uids = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).uids(&tx, cur)?;
            let first_unseen = q::first_unseen_uid(&tx, id)?;
            let keywords = q::mailbox_keywords(&tx, id)?;
            let floor =
                if claim { q::claim_recent(&tx, id, uids.last().copied().unwrap_or(0))? } else { info.recent_uid };
            match tx.commit() {
                Ok(()) => Ok(Selection { info, uids, first_unseen, keywords, recent_floor: floor }),
                Err(e) if e.sqlite_error_code() == Some(ErrorCode::DiskFull) => {
                    tracing::warn!("imap: SELECT without \\Recent: {e}");
                    Ok(Selection { info, uids, first_unseen, keywords, recent_floor: u32::MAX })
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Claims `\Recent` of the UIDs up to `up_to` for the caller; returns the floor before.
    pub async fn claim_recent(&self, mailbox: i64, up_to: u32) -> Result<u32> {
        self.job(move |c| {
            let tx = immediate(c)?;
            let floor = q::claim_recent(&tx, mailbox, up_to)?;
            tx.commit()?;
            Ok(floor)
        })
        .await
    }

    /// CREATE: the mailbox and its missing superiors. False: it exists already.
    pub async fn create_mailbox_tree(&self, name: String, special: Option<String>) -> Result<bool> {
        self.job(move |c| {
            let tx = immediate(c)?;
            if q::mailbox(&tx, &name)?.is_some() {
                return Ok(false);
            }
            create_parents(&tx, &name)?;
            q::create_mailbox(&tx, &name, special.as_deref())?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// DELETE: the mailbox `id` (called `name`) and its messages. False: it has children, and
    /// stays.
    pub async fn delete_mailbox_leaf(&self, id: i64, name: String) -> Result<bool> {
        self.job(move |c| {
            let tx = immediate(c)?;
            let children: i64 = tx.query_row(
                "SELECT count(*) FROM mailboxes WHERE substr(name, 1, length(?1) + 1) = ?1 || '/'",
                [&name],
                |r| r.get(0),
            )?;
            if children > 0 {
                return Ok(false);
            }
            q::delete_mailbox(&tx, id)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// RENAME `old` (mailbox `id`) to `new`, creating `new`'s missing superiors. Renaming INBOX
    /// moves its messages into a new mailbox and leaves INBOX empty (RFC 3501 §6.3.5). False: a
    /// mailbox called `new` exists.
    pub async fn rename_mailbox_tree(&self, id: i64, old: String, new: String) -> Result<bool> {
        self.job(move |c| {
            let tx = immediate(c)?;
            if q::mailbox(&tx, &new)?.is_some() {
                return Ok(false);
            }
            create_parents(&tx, &new)?;
            if old == "INBOX" {
                let dst = q::create_mailbox(&tx, &new, None)?;
                let pairs = q::copy(&tx, id, &[(1, u32::MAX)], dst)?;
                let uids: Vec<u32> = pairs.iter().map(|p| p.0).collect();
                q::expunge_uids(&tx, id, &uids)?;
            } else {
                q::rename_mailbox(&tx, &old, &new)?;
            }
            tx.commit()?;
            guarded(c)?;
            Ok(true)
        })
        .await
    }

    /// SUBSCRIBE / UNSUBSCRIBE. False: no such mailbox.
    pub async fn set_mailbox_subscribed(&self, name: String, on: bool) -> Result<bool> {
        self.job(move |c| Ok(q::set_subscribed(c, &name, on)?)).await
    }

    /// The names still subscribed whose mailbox is gone (RFC 3501 §6.3.6), by name.
    pub async fn kept_subscriptions(&self) -> Result<Vec<String>> {
        self.job(|c| {
            let mut st = c.prepare_cached("SELECT name FROM kept_subscriptions ORDER BY name")?;
            let names = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(names)
        })
        .await
    }

    /// SUBSCRIBE (`on`) / UNSUBSCRIBE of a name with no mailbox: whether it is (SUBSCRIBE) or
    /// was (UNSUBSCRIBE, which drops it) among the kept subscriptions.
    pub async fn kept_subscription(&self, name: String, on: bool) -> Result<bool> {
        self.job(move |c| {
            let n = if on {
                c.query_row("SELECT count(*) FROM kept_subscriptions WHERE name = ?1", [&name], |r| r.get::<_, i64>(0))?
            } else {
                c.execute("DELETE FROM kept_subscriptions WHERE name = ?1", [&name])? as i64
            };
            Ok(n > 0)
        })
        .await
    }

    /// STATUS's counters that the mailbox row does not keep: (RECENT, DELETED), each counted only
    /// when asked for (0 otherwise).
    pub async fn status_counts(&self, id: i64, recent: bool, deleted: bool) -> Result<(u32, u32)> {
        if !recent && !deleted {
            return Ok((0, 0));
        }
        self.job(move |c| {
            let r: i64 = if recent {
                c.query_row(
                    "SELECT count(*) FROM messages WHERE mailbox_id = ?1 AND uid > (SELECT recent_uid FROM mailboxes WHERE id = ?1)",
                    [id],
                    |r| r.get(0),
                )?
            } else {
                0
            };
            let d: i64 = if deleted {
                c.query_row(
                    &format!("SELECT count(*) FROM messages WHERE mailbox_id = ?1 AND flags & {} != 0", flag::DELETED),
                    [id],
                    |r| r.get(0),
                )?
            } else {
                0
            };
            Ok((r as u32, d as u32))
        })
        .await
    }

    /// STATUS SIZE (RFC 8438): the sum of the mailbox's message sizes, a counter of its row
    /// (schema 11) — no scan of the messages.
    pub async fn mailbox_size(&self, id: i64) -> Result<u64> {
        self.job(move |c| {
            let n: i64 = c.query_row("SELECT size FROM mailboxes WHERE id = ?1", [id], |r| r.get(0))?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    /// APPEND: stores `raw` with these flags and INTERNALDATE (now if None). In a Sent folder, the
    /// same message (Message-ID and bytes) among the latest ones is not stored twice: its UID is
    /// returned (a copy popbridge filed itself, `save_sent`). Returns (UIDVALIDITY, UID).
    pub async fn append_message(
        &self,
        mailbox: i64,
        raw: Vec<u8>,
        flags: u8,
        keywords: Vec<String>,
        date: Option<Timestamp>,
    ) -> Result<(u32, u32)> {
        let (uv, uids) = self.append_messages(mailbox, vec![NewMessage { raw, flags, keywords, date }]).await?;
        Ok((uv, uids.first().copied().unwrap_or_default()))
    }

    /// APPEND of several messages (MULTIAPPEND, RFC 3502): all in one transaction, so either all
    /// are stored or — an error on any of them, a full disk — none. Each as [`Store::append_message`];
    /// returns the UIDVALIDITY and the messages' UIDs in order.
    pub async fn append_messages(&self, mailbox: i64, messages: Vec<NewMessage>) -> Result<(u32, Vec<u32>)> {
        self.job(move |c| {
            // Parse before taking the write lock.
            let metas: Vec<MessageMeta> = messages.iter().map(|m| MessageMeta::extract(&m.raw)).collect();
            let now = Timestamp { unix: super::now(), offset_minutes: 0 };
            let tx = immediate(c)?;
            let mut uids = Vec::with_capacity(messages.len());
            for (m, meta) in messages.iter().zip(&metas) {
                let uid = match q::recent_duplicate(&tx, mailbox, &m.raw, meta.message_id.as_deref())? {
                    Some(uid) => uid,
                    None => q::append(&tx, mailbox, &m.raw, meta, m.flags, &m.keywords, m.date.unwrap_or(now))?,
                };
                uids.push(uid);
            }
            let uv = tx
                .query_row("SELECT uidvalidity FROM mailboxes WHERE id = ?1", [mailbox], |r| r.get::<_, i64>(0))
                .map(|v| v as u32)?;
            tx.commit()?;
            guarded(c)?;
            Ok((uv, uids))
        })
        .await
    }

    /// STORE: see [`q::store_flags`]; returns the addressed rows as they are now, and how many
    /// changed.
    pub async fn store_flags(
        &self,
        mailbox: i64,
        ranges: Vec<(u32, u32)>,
        op: FlagOp,
        flags: u8,
        keywords: Vec<String>,
    ) -> Result<(Vec<MessageRow>, usize)> {
        let r = self.store_flags_unchanged_since(mailbox, ranges, op, flags, keywords, None).await?;
        Ok((r.rows, r.changed))
    }

    /// A FETCH page's rows; with `mark_seen`, the unseen ones get `\Seen` first (a body fetch,
    /// RFC 3501 §6.4.5) and come back as they are afterwards.
    pub async fn fetch_rows(&self, mailbox: i64, ranges: Vec<(u32, u32)>, mark_seen: bool) -> Result<FetchRows> {
        self.job(move |c| {
            let mut rows = q::rows(c, mailbox, &ranges)?;
            let mut out = FetchRows::default();
            if mark_seen {
                out.newly_seen = rows.iter().filter(|r| r.flags & flag::SEEN == 0).map(|r| r.uid).collect();
                if !out.newly_seen.is_empty() {
                    let tx = immediate(c)?;
                    let stored = q::store_flags_unchanged_since(
                        &tx,
                        mailbox,
                        &uid_ranges(&out.newly_seen),
                        FlagOp::Add,
                        flag::SEEN,
                        &[],
                        None,
                    )?;
                    tx.commit()?;
                    // Only the MODSEQ this change took: another writer may have set \Seen first.
                    out.seen_modseq = stored.modseq;
                    for u in stored.rows {
                        if let Ok(i) = rows.binary_search_by_key(&u.uid, |r| r.uid) {
                            rows[i] = u;
                        }
                    }
                }
            }
            out.rows = rows;
            Ok(out)
        })
        .await
    }

    /// COPY (or MOVE, `remove`): the messages of `src` in `ranges` get new UIDs in `dst`.
    /// Returns the (source, destination) UID pairs, and the source UIDs a move removed.
    pub async fn copy_messages(
        &self,
        src: i64,
        ranges: Vec<(u32, u32)>,
        dst: i64,
        remove: bool,
    ) -> Result<(Vec<(u32, u32)>, Vec<u32>)> {
        self.job(move |c| {
            let tx = immediate(c)?;
            let pairs = if ranges.is_empty() { Vec::new() } else { q::copy(&tx, src, &ranges, dst)? };
            let moved = if remove {
                let from: Vec<u32> = pairs.iter().map(|p| p.0).collect();
                q::expunge_uids(&tx, src, &from)?
            } else {
                Vec::new()
            };
            tx.commit()?;
            guarded(c)?;
            Ok((pairs, moved))
        })
        .await
    }

    /// EXPUNGE / CLOSE / UID EXPUNGE: removes the messages flagged `\Deleted` (within `only`, if
    /// given); returns their UIDs.
    pub async fn expunge_deleted(&self, mailbox: i64, only: Option<Vec<(u32, u32)>>) -> Result<Vec<u32>> {
        self.job(move |c| {
            let tx = immediate(c)?;
            let gone = q::expunge_deleted(&tx, mailbox, only.as_deref())?;
            tx.commit()?;
            Ok(gone)
        })
        .await
    }

    /// What changed in a mailbox after MODSEQ `since` (one read transaction); None: the mailbox
    /// is gone.
    pub async fn changes_after(&self, mailbox: i64, since: u64) -> Result<Option<ChangesSince>> {
        self.job(move |c| match q::changes_since(c, mailbox, since) {
            Ok(ch) => Ok(Some(ch)),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
    }

    // ----- issue 15: CONDSTORE / QRESYNC and the mailbox's keywords -----

    /// STORE with an optional UNCHANGEDSINCE (`imap::store_flags_unchanged_since`), in one write
    /// transaction.
    pub async fn store_flags_unchanged_since(
        &self,
        mailbox: i64,
        ranges: Vec<(u32, u32)>,
        op: FlagOp,
        flags: u8,
        keywords: Vec<String>,
        unchanged_since: Option<u64>,
    ) -> Result<q::Stored> {
        self.job(move |c| {
            let tx = immediate(c)?;
            let r = q::store_flags_unchanged_since(&tx, mailbox, &ranges, op, flags, &keywords, unchanged_since)?;
            tx.commit()?;
            Ok(r)
        })
        .await
    }

    /// The UIDs in `ranges` expunged after MODSEQ `since` (`imap::vanished_since`).
    pub async fn vanished_since(&self, mailbox: i64, since: u64, ranges: Vec<(u32, u32)>) -> Result<Vec<(u32, u32)>> {
        self.job(move |c| Ok(q::vanished_since(c, mailbox, since, &ranges)?)).await
    }

    /// Bytes `range` of a body (fewer at its end); None: no such body.
    pub async fn body_range(&self, body: i64, range: std::ops::Range<usize>) -> Result<Option<Vec<u8>>> {
        self.read(move |r| r.raw_range(body, range)).await
    }
}

pub use super::imap::uid_ranges;

#[cfg(test)]
mod tests;
