//! What the IMAP server asks of the store: mailboxes, the messages of one mailbox, flags, copies,
//! expunges, appends, and "what changed since MODSEQ m". Plain functions on a connection, so each
//! IMAP session runs them on its own connection off the async runtime (in `spawn_blocking`).
//! Writes take a transaction from the caller; every write raises the mailbox's HIGHESTMODSEQ and
//! keeps its counters (messages, unseen, uidnext) in step.

use rusqlite::{Connection, OptionalExtension, params};

use super::message::{MessageRow, flag};
use crate::mime::{MessageMeta, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    pub id: i64,
    pub name: String,
    pub special_use: Option<String>,
    pub subscribed: bool,
    /// The account whose fetched mail this mailbox receives, if it is an account's root.
    pub account: Option<String>,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    pub messages: u32,
    pub unseen: u32,
    pub recent_uid: u32,
}

const MAILBOX_COLUMNS: &str = "m.id, m.name, m.special_use, m.subscribed, a.name, m.uidvalidity, m.uidnext, m.highestmodseq, m.messages, m.unseen, m.recent_uid";

fn mailbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MailboxInfo> {
    Ok(MailboxInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        special_use: r.get(2)?,
        subscribed: r.get::<_, i64>(3)? != 0,
        account: r.get(4)?,
        uidvalidity: r.get::<_, i64>(5)? as u32,
        uidnext: r.get::<_, i64>(6)? as u32,
        highestmodseq: r.get::<_, i64>(7)? as u64,
        messages: r.get::<_, i64>(8)? as u32,
        unseen: r.get::<_, i64>(9)? as u32,
        recent_uid: r.get::<_, i64>(10)? as u32,
    })
}

pub fn mailboxes(conn: &Connection) -> rusqlite::Result<Vec<MailboxInfo>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {MAILBOX_COLUMNS} FROM mailboxes m LEFT JOIN accounts a ON a.mailbox_id = m.id ORDER BY m.name"
    ))?;
    let rows = st.query_map([], mailbox_row)?;
    rows.collect()
}

pub fn mailbox(conn: &Connection, name: &str) -> rusqlite::Result<Option<MailboxInfo>> {
    conn.prepare_cached(&format!(
        "SELECT {MAILBOX_COLUMNS} FROM mailboxes m LEFT JOIN accounts a ON a.mailbox_id = m.id WHERE m.name = ?1"
    ))?
    .query_row([name], mailbox_row)
    .optional()
}

pub fn mailbox_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<MailboxInfo>> {
    conn.prepare_cached(&format!(
        "SELECT {MAILBOX_COLUMNS} FROM mailboxes m LEFT JOIN accounts a ON a.mailbox_id = m.id WHERE m.id = ?1"
    ))?
    .query_row([id], mailbox_row)
    .optional()
}

pub fn create_mailbox(conn: &Connection, name: &str, special_use: Option<&str>) -> rusqlite::Result<i64> {
    super::create_mailbox(conn, name, special_use)
}

/// Deletes a mailbox and its messages (bodies no other mailbox holds go with them).
pub fn delete_mailbox(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?1", [id])?;
    conn.execute("DELETE FROM messages WHERE mailbox_id = ?1", [id])?;
    conn.execute("DELETE FROM expunged WHERE mailbox_id = ?1", [id])?;
    conn.execute("DELETE FROM mailbox_keywords WHERE mailbox_id = ?1", [id])?;
    conn.execute("DELETE FROM mailboxes WHERE id = ?1", [id])?;
    Ok(())
}

/// Renames a mailbox and every mailbox below it (`old/…` becomes `new/…`). UIDs and UIDVALIDITY
/// stay: the messages are the same (RFC 3501 allows either).
pub fn rename_mailbox(conn: &Connection, old: &str, new: &str) -> rusqlite::Result<()> {
    conn.execute("UPDATE mailboxes SET name = ?2 WHERE name = ?1", params![old, new])?;
    let prefix = format!("{old}/");
    conn.execute(
        "UPDATE mailboxes SET name = ?2 || substr(name, ?3) WHERE substr(name, 1, ?4) = ?1",
        params![prefix, format!("{new}/"), prefix.chars().count() as i64 + 1, prefix.chars().count() as i64],
    )?;
    Ok(())
}

pub fn set_subscribed(conn: &Connection, name: &str, on: bool) -> rusqlite::Result<bool> {
    Ok(conn.execute("UPDATE mailboxes SET subscribed = ?2 WHERE name = ?1", params![name, on as i64])? > 0)
}

/// Every UID of the mailbox, ascending: the session's sequence-number map.
pub fn uids(conn: &Connection, mailbox: i64) -> rusqlite::Result<Vec<u32>> {
    let mut st = conn.prepare_cached("SELECT uid FROM messages WHERE mailbox_id = ?1 ORDER BY uid")?;
    let rows = st.query_map([mailbox], |r| Ok(r.get::<_, i64>(0)? as u32))?;
    rows.collect()
}

pub fn first_unseen_uid(conn: &Connection, mailbox: i64) -> rusqlite::Result<Option<u32>> {
    conn.prepare_cached("SELECT min(uid) FROM messages WHERE mailbox_id = ?1 AND flags & 1 = 0")?
        .query_row([mailbox], |r| r.get::<_, Option<i64>>(0))
        .map(|o| o.map(|u| u as u32))
}

/// Claims `\Recent` for this session: the UIDs above the returned floor, up to `up_to`, are recent
/// for it and for no other session (RFC 3501 §2.3.2). EXAMINE does not claim.
pub fn claim_recent(conn: &Connection, mailbox: i64, up_to: u32) -> rusqlite::Result<u32> {
    let floor: i64 = conn.query_row("SELECT recent_uid FROM mailboxes WHERE id = ?1", [mailbox], |r| r.get(0))?;
    if i64::from(up_to) > floor {
        conn.execute(
            "UPDATE mailboxes SET recent_uid = ?2 WHERE id = ?1 AND recent_uid < ?2",
            params![mailbox, up_to],
        )?;
    }
    Ok(floor as u32)
}

fn keywords_of(s: Option<String>) -> Vec<String> {
    s.map(|k| k.split(' ').filter(|w| !w.is_empty()).map(str::to_string).collect()).unwrap_or_default()
}

fn keywords_text(k: &[String]) -> Option<String> {
    if k.is_empty() { None } else { Some(k.join(" ")) }
}

pub(crate) fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        uid: r.get::<_, i64>(0)? as u32,
        flags: r.get::<_, i64>(1)? as u8,
        keywords: keywords_of(r.get(2)?),
        modseq: r.get::<_, i64>(3)? as u64,
        internaldate: Timestamp { unix: r.get(4)?, offset_minutes: r.get::<_, i64>(5)? as i32 },
        size: r.get::<_, i64>(6)? as u32,
        body_id: r.get(7)?,
    })
}

pub(crate) const ROW_COLUMNS: &str = "uid, flags, keywords, modseq, internaldate, internaldate_tz, size, body_id";

/// The messages whose UIDs fall in the given inclusive ranges, ascending by UID.
pub fn rows(conn: &Connection, mailbox: i64, ranges: &[(u32, u32)]) -> rusqlite::Result<Vec<MessageRow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM messages WHERE mailbox_id = ?1 AND uid BETWEEN ?2 AND ?3 ORDER BY uid"
    ))?;
    let mut out = Vec::new();
    for &(a, b) in ranges {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        for r in st.query_map(params![mailbox, lo, hi], message_row)? {
            out.push(r?);
        }
    }
    if ranges.len() > 1 {
        out.sort_by_key(|r| r.uid);
        out.dedup_by_key(|r| r.uid);
    }
    Ok(out)
}

/// The messages with `flags & mask == want`, ascending by UID. The literal constants let SQLite
/// use the partial index on unread messages for `UNSEEN` (mask 1, want 0).
pub fn rows_with_flags(conn: &Connection, mailbox: i64, mask: u8, want: u8) -> rusqlite::Result<Vec<MessageRow>> {
    let sql =
        format!("SELECT {ROW_COLUMNS} FROM messages WHERE mailbox_id = ?1 AND flags & {mask} = {want} ORDER BY uid");
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map([mailbox], message_row)?;
    rows.collect()
}

/// The UIDs of the messages whose flags match, ascending (`flags & 1 = 0`, UNSEEN, is indexed).
pub fn uids_with_flags(conn: &Connection, mailbox: i64, mask: u8, want: u8) -> rusqlite::Result<Vec<u32>> {
    let sql = format!("SELECT uid FROM messages WHERE mailbox_id = ?1 AND flags & {mask} = {want} ORDER BY uid");
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map([mailbox], |r| r.get::<_, i64>(0).map(|u| u as u32))?;
    rows.collect()
}

/// The UIDs of the messages whose MODSEQ is above `since`, ascending (the `messages_modseq`
/// index: CHANGEDSINCE reads what changed, not the mailbox).
pub fn uids_changed_since(conn: &Connection, mailbox: i64, since: u64) -> rusqlite::Result<Vec<u32>> {
    let mut st = conn.prepare_cached("SELECT uid FROM messages WHERE mailbox_id = ?1 AND modseq > ?2")?;
    let mut uids: Vec<u32> = st
        .query_map(params![mailbox, since as i64], |r| r.get::<_, i64>(0).map(|u| u as u32))?
        .collect::<rusqlite::Result<_>>()?;
    uids.sort_unstable();
    Ok(uids)
}

/// The stored metadata of a body; extracted again from the raw bytes if it was written by an older
/// version of the extractor.
pub fn meta(conn: &Connection, body: i64) -> rusqlite::Result<Option<MessageMeta>> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT meta_version, meta FROM bodies WHERE id = ?1")?
        .query_row([body], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((v, m)) if v == i64::from(crate::mime::META_VERSION) => {
            Ok(MessageMeta::from_bytes(&m).or_else(|| raw(conn, body).ok().flatten().map(|r| MessageMeta::extract(&r))))
        }
        Some(_) => Ok(raw(conn, body)?.map(|r| MessageMeta::extract(&r))),
        None => Ok(None),
    }
}

pub fn raw(conn: &Connection, body: i64) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT raw FROM bodies WHERE id = ?1")?.query_row([body], |r| r.get(0)).optional()
}

/// Bytes `range` of a body's raw message (fewer at its end), read through SQLite's incremental
/// blob I/O: only the pages that hold them are copied, so a large body is sent in pieces without
/// ever being in memory whole. None: no such body.
pub fn raw_range(conn: &Connection, body: i64, range: std::ops::Range<usize>) -> rusqlite::Result<Option<Vec<u8>>> {
    let blob = match conn.blob_open(rusqlite::MAIN_DB, "bodies", "raw", body, true) {
        Ok(b) => b,
        Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.starts_with("no such rowid") => return Ok(None),
        Err(e) => return Err(e),
    };
    let end = range.end.min(blob.len());
    let start = range.start.min(end);
    let mut buf = vec![0u8; end - start];
    blob.read_at_exact(&mut buf, start)?;
    Ok(Some(buf))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Replace,
    Add,
    Remove,
}

fn next_modseq(conn: &Connection, mailbox: i64) -> rusqlite::Result<u64> {
    let m: i64 = conn.query_row(
        "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?1 RETURNING highestmodseq",
        [mailbox],
        |r| r.get(0),
    )?;
    Ok(m as u64)
}

/// STORE: changes flags and keywords of the given UIDs. Messages whose flags actually change get a
/// new MODSEQ; returns every addressed message as it is afterwards, and how many changed.
pub fn store_flags(
    conn: &Connection,
    mailbox: i64,
    uids: &[(u32, u32)],
    op: FlagOp,
    flags: u8,
    keywords: &[String],
) -> rusqlite::Result<(Vec<MessageRow>, usize)> {
    let r = store_flags_unchanged_since(conn, mailbox, uids, op, flags, keywords, None)?;
    Ok((r.rows, r.changed))
}

/// What a STORE did: the addressed messages it may change as they are now (ascending by UID), how
/// many changed, the MODSEQ its change took (`None`: nothing changed — the rows then carry other
/// writers' MODSEQs, which are not this STORE's), and (UNCHANGEDSINCE) the UIDs left alone because
/// their MODSEQ was higher.
#[derive(Debug, Default)]
pub struct Stored {
    pub rows: Vec<MessageRow>,
    pub changed: usize,
    pub modseq: Option<u64>,
    pub modified: Vec<u32>,
}

/// STORE with RFC 7162's UNCHANGEDSINCE: a message whose MODSEQ is above `unchanged_since` is
/// not touched and is listed in `modified` instead (checked and written in the caller's write
/// transaction, so no other writer can slip in between). The mailbox's keyword list
/// ([`mailbox_keywords`]) learns any keyword set here.
pub fn store_flags_unchanged_since(
    conn: &Connection,
    mailbox: i64,
    uids: &[(u32, u32)],
    op: FlagOp,
    flags: u8,
    keywords: &[String],
    unchanged_since: Option<u64>,
) -> rusqlite::Result<Stored> {
    let current = rows(conn, mailbox, uids)?;
    if op != FlagOp::Remove {
        add_keywords(conn, mailbox, keywords)?;
    }
    let mut modseq: Option<u64> = None;
    let mut out = Vec::with_capacity(current.len());
    let mut modified = Vec::new();
    let mut changed = 0;
    let mut unseen_delta = 0i64;
    for mut row in current {
        if unchanged_since.is_some_and(|u| row.modseq > u) {
            modified.push(row.uid);
            continue;
        }
        let (new_flags, new_kw) = apply(op, row.flags, &row.keywords, flags, keywords);
        if new_flags != row.flags || new_kw != row.keywords {
            let m = match modseq {
                Some(m) => m,
                None => {
                    let m = next_modseq(conn, mailbox)?;
                    modseq = Some(m);
                    m
                }
            };
            conn.prepare_cached(
                "UPDATE messages SET flags = ?3, keywords = ?4, modseq = ?5 WHERE mailbox_id = ?1 AND uid = ?2",
            )?
            .execute(params![mailbox, row.uid, new_flags, keywords_text(&new_kw), m as i64])?;
            let was_unseen = row.flags & flag::SEEN == 0;
            let is_unseen = new_flags & flag::SEEN == 0;
            unseen_delta += i64::from(is_unseen) - i64::from(was_unseen);
            row.flags = new_flags;
            row.keywords = new_kw;
            row.modseq = m;
            changed += 1;
        }
        out.push(row);
    }
    if unseen_delta != 0 {
        conn.execute("UPDATE mailboxes SET unseen = unseen + ?2 WHERE id = ?1", params![mailbox, unseen_delta])?;
    }
    Ok(Stored { rows: out, changed, modseq, modified })
}

/// Adds keywords to the mailbox's list (those it already has, compared case-insensitively, stay
/// as first written).
pub fn add_keywords(conn: &Connection, mailbox: i64, keywords: &[String]) -> rusqlite::Result<()> {
    let mut st = conn.prepare_cached("INSERT OR IGNORE INTO mailbox_keywords (mailbox_id, keyword) VALUES (?1, ?2)")?;
    for k in keywords {
        st.execute(params![mailbox, k])?;
    }
    Ok(())
}

/// Every keyword ever set in the mailbox, in the order they first appeared: what SELECT announces
/// in FLAGS and PERMANENTFLAGS.
pub fn mailbox_keywords(conn: &Connection, mailbox: i64) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare_cached("SELECT keyword FROM mailbox_keywords WHERE mailbox_id = ?1 ORDER BY id")?;
    let rows = st.query_map([mailbox], |r| r.get(0))?;
    rows.collect()
}

fn apply(op: FlagOp, old: u8, old_kw: &[String], flags: u8, kw: &[String]) -> (u8, Vec<String>) {
    match op {
        FlagOp::Replace => (flags, dedup_keywords(kw.iter().cloned())),
        FlagOp::Add => (old | flags, dedup_keywords(old_kw.iter().chain(kw).cloned())),
        FlagOp::Remove => {
            (old & !flags, old_kw.iter().filter(|k| !kw.iter().any(|r| r.eq_ignore_ascii_case(k))).cloned().collect())
        }
    }
}

fn dedup_keywords(it: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for k in it {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&k)) {
            out.push(k);
        }
    }
    out
}

/// COPY: the messages get new UIDs in the destination, the same body (not duplicated), flags and
/// INTERNALDATE (RFC 3501 §6.4.7). Returns (source UID, destination UID) pairs.
pub fn copy(conn: &Connection, src: i64, uids: &[(u32, u32)], dst: i64) -> rusqlite::Result<Vec<(u32, u32)>> {
    let rows = rows(conn, src, uids)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let modseq = next_modseq(conn, dst)?;
    let mut next: i64 = conn.query_row("SELECT uidnext FROM mailboxes WHERE id = ?1", [dst], |r| r.get(0))?;
    let mut pairs = Vec::with_capacity(rows.len());
    let mut unseen = 0i64;
    let mut ins = conn.prepare_cached(
        "INSERT INTO messages (mailbox_id, uid, body_id, flags, keywords, modseq, internaldate, internaldate_tz, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for r in &rows {
        add_keywords(conn, dst, &r.keywords)?;
        ins.execute(params![
            dst,
            next,
            r.body_id,
            r.flags,
            keywords_text(&r.keywords),
            modseq as i64,
            r.internaldate.unix,
            r.internaldate.offset_minutes,
            r.size
        ])?;
        pairs.push((r.uid, next as u32));
        unseen += i64::from(r.flags & flag::SEEN == 0);
        next += 1;
    }
    conn.execute(
        "UPDATE mailboxes SET uidnext = ?2, messages = messages + ?3, unseen = unseen + ?4 WHERE id = ?1",
        params![dst, next, rows.len() as i64, unseen],
    )?;
    // New UIDs: the caller advances the guard after its commit (`guard::advance_conn`).
    super::guard::bump(conn)?;
    Ok(pairs)
}

/// Removes exactly these UIDs (MOVE's second half, UID EXPUNGE after filtering). Returns the UIDs removed.
pub fn expunge_uids(conn: &Connection, mailbox: i64, uids: &[u32]) -> rusqlite::Result<Vec<u32>> {
    if uids.is_empty() {
        return Ok(Vec::new());
    }
    // Raise HIGHESTMODSEQ first: the expunge trigger records the mailbox's current value.
    let modseq = next_modseq(conn, mailbox)?;
    let mut del = conn.prepare_cached("DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2 RETURNING flags")?;
    let mut removed = Vec::new();
    let mut unseen = 0i64;
    for &uid in uids {
        if let Some(fl) = del.query_row(params![mailbox, uid], |r| r.get::<_, i64>(0)).optional()? {
            removed.push(uid);
            unseen += i64::from(fl & i64::from(flag::SEEN) == 0);
        }
    }
    conn.execute(
        "UPDATE mailboxes SET messages = messages - ?2, unseen = unseen - ?3 WHERE id = ?1",
        params![mailbox, removed.len() as i64, unseen],
    )?;
    // The pruning query walks up to EXPUNGED_KEPT index entries: run it every 64th MODSEQ or
    // after a large expunge, not on every one (a client expunging one message at a time).
    if modseq % 64 == 0 || removed.len() >= 64 {
        prune_expunged(conn, mailbox, EXPUNGED_KEPT)?;
    }
    Ok(removed)
}

/// How many expunge records (`expunged`) a mailbox keeps (a few hundred more between two
/// prunes, [`expunge_uids`]): enough for any session and any
/// QRESYNC client not more than this many expunges behind; older ones are answered by
/// comparison ([`ChangesSince::present`], [`vanished_since`]).
pub const EXPUNGED_KEPT: i64 = 10_000;

/// Drops a mailbox's oldest expunge records beyond `keep` (whole MODSEQs at a time) and raises
/// its `vanished_floor` to the highest MODSEQ dropped: below it, the history is incomplete.
pub fn prune_expunged(conn: &Connection, mailbox: i64, keep: i64) -> rusqlite::Result<()> {
    let cut: Option<i64> = conn
        .prepare_cached("SELECT modseq FROM expunged WHERE mailbox_id = ?1 ORDER BY modseq DESC LIMIT 1 OFFSET ?2")?
        .query_row(params![mailbox, keep], |r| r.get(0))
        .optional()?;
    if let Some(cut) = cut {
        conn.prepare_cached("DELETE FROM expunged WHERE mailbox_id = ?1 AND modseq <= ?2")?
            .execute(params![mailbox, cut])?;
        conn.prepare_cached("UPDATE mailboxes SET vanished_floor = max(vanished_floor, ?2) WHERE id = ?1")?
            .execute(params![mailbox, cut])?;
    }
    Ok(())
}

/// The UIDs within `ranges` expunged after MODSEQ `since` (RFC 7162 VANISHED (EARLIER)), as
/// ascending disjoint ranges. When the history of `since` was pruned, every UID of `ranges`
/// below UIDNEXT that is not in the mailbox now: a superset RFC 7162 §3.2.5.1 allows (the
/// client ignores UIDs it does not have).
pub fn vanished_since(
    conn: &Connection,
    mailbox: i64,
    since: u64,
    ranges: &[(u32, u32)],
) -> rusqlite::Result<Vec<(u32, u32)>> {
    let (floor, uidnext): (i64, i64) =
        conn.query_row("SELECT vanished_floor, uidnext FROM mailboxes WHERE id = ?1", [mailbox], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if since as i64 >= floor {
        let mut st = conn.prepare_cached(
            "SELECT uid FROM expunged WHERE mailbox_id = ?1 AND modseq > ?2 AND uid BETWEEN ?3 AND ?4",
        )?;
        let mut uids = Vec::new();
        for &(a, b) in ranges {
            for u in st.query_map(params![mailbox, since as i64, a, b], |r| r.get::<_, i64>(0))? {
                uids.push(u? as u32);
            }
        }
        uids.sort_unstable();
        uids.dedup();
        return Ok(uid_ranges(&uids));
    }
    let present = self::uids(conn, mailbox)?;
    let mut out: Vec<(u32, u32)> = Vec::new();
    let top = (uidnext - 1).max(0) as u32;
    for &(a, b) in ranges {
        let (a, b) = (a.min(b).max(1), a.max(b).min(top));
        let mut next = a;
        let lo = present.partition_point(|u| *u < a);
        for &p in present[lo..].iter().take_while(|p| **p <= b) {
            if p > next {
                out.push((next, p - 1));
            }
            next = p + 1;
        }
        if next <= b && a <= b {
            out.push((next, b));
        }
    }
    out.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(out.len());
    for (a, b) in out {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    Ok(merged)
}

/// EXPUNGE / CLOSE / UID EXPUNGE: removes the messages flagged `\Deleted` (within `only`, if given).
pub fn expunge_deleted(conn: &Connection, mailbox: i64, only: Option<&[(u32, u32)]>) -> rusqlite::Result<Vec<u32>> {
    let candidates: Vec<u32> = match only {
        Some(ranges) => {
            rows(conn, mailbox, ranges)?.into_iter().filter(|r| r.flags & flag::DELETED != 0).map(|r| r.uid).collect()
        }
        None => {
            let mut st =
                conn.prepare_cached("SELECT uid FROM messages WHERE mailbox_id = ?1 AND flags & 8 != 0 ORDER BY uid")?;
            st.query_map([mailbox], |r| Ok(r.get::<_, i64>(0)? as u32))?.collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    expunge_uids(conn, mailbox, &candidates)
}

/// APPEND: stores a new message (metadata already extracted by the caller, off the write lock).
pub fn append(
    conn: &Connection,
    mailbox: i64,
    raw: &[u8],
    meta: &MessageMeta,
    flags: u8,
    keywords: &[String],
    date: Timestamp,
) -> rusqlite::Result<u32> {
    let modseq = next_modseq(conn, mailbox)?;
    let uid: i64 = conn.query_row("SELECT uidnext FROM mailboxes WHERE id = ?1", [mailbox], |r| r.get(0))?;
    add_keywords(conn, mailbox, keywords)?;
    conn.prepare_cached("INSERT INTO bodies (meta_version, meta, raw) VALUES (?1, ?2, ?3)")?.execute(params![
        crate::mime::META_VERSION,
        meta.to_bytes(),
        raw
    ])?;
    let body = conn.last_insert_rowid();
    super::sortkeys::insert(conn, body, &super::sortkeys::SortKeys::extract(raw, meta))?;
    conn.prepare_cached(
        "INSERT INTO messages (mailbox_id, uid, body_id, flags, keywords, modseq, internaldate, internaldate_tz, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        mailbox,
        uid,
        body,
        flags,
        keywords_text(&dedup_keywords(keywords.iter().cloned())),
        modseq as i64,
        date.unix,
        date.offset_minutes,
        raw.len() as i64
    ])?;
    conn.execute(
        "UPDATE mailboxes SET uidnext = uidnext + 1, messages = messages + 1, unseen = unseen + ?2 WHERE id = ?1",
        params![mailbox, i64::from(flags & flag::SEEN == 0)],
    )?;
    // A new UID: the caller advances the guard after its commit (`guard::advance_conn`).
    super::guard::bump(conn)?;
    Ok(uid as u32)
}

/// In a Sent folder (SPECIAL-USE \Sent): a message with these exact bytes among its last few — a
/// copy popbridge filed itself (`save_sent`) that the client now appends again. Only checked when
/// the new message has a Message-ID.
pub fn recent_duplicate(
    conn: &Connection,
    mailbox: i64,
    raw: &[u8],
    message_id: Option<&str>,
) -> rusqlite::Result<Option<u32>> {
    if message_id.is_none() {
        return Ok(None);
    }
    let sent: Option<String> =
        conn.query_row("SELECT special_use FROM mailboxes WHERE id = ?1", [mailbox], |r| r.get(0))?;
    if sent.as_deref() != Some("\\Sent") {
        return Ok(None);
    }
    let mut st = conn.prepare_cached(
        "SELECT m.uid, b.raw FROM messages m JOIN bodies b ON b.id = m.body_id
         WHERE m.mailbox_id = ?1 AND m.size = ?2 ORDER BY m.uid DESC LIMIT 50",
    )?;
    let mut rows = st.query(params![mailbox, raw.len() as i64])?;
    while let Some(r) = rows.next()? {
        let existing: Vec<u8> = r.get(1)?;
        if existing == raw {
            return Ok(Some(r.get::<_, i64>(0)? as u32));
        }
    }
    Ok(None)
}

/// What happened in a mailbox after MODSEQ `since`: expunged UIDs, and messages added or changed.
#[derive(Debug, Default)]
pub struct ChangesSince {
    pub expunged: Vec<u32>,
    pub rows: Vec<MessageRow>,
    pub highestmodseq: u64,
    /// Every UID in the mailbox now, when the expunge history of `since` was pruned
    /// ([`prune_expunged`]): `expunged` is then incomplete, and a UID the caller knows that is
    /// not in here was expunged too.
    pub present: Option<Vec<u32>>,
}

/// Contiguous UID ranges covering `uids` (ascending), for `BETWEEN` queries.
pub fn uid_ranges(uids: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &u in uids {
        match out.last_mut() {
            Some((_, b)) if *b + 1 == u => *b = u,
            _ => out.push((u, u)),
        }
    }
    out
}

/// Runs in one read transaction, so the three queries see one state of the store.
pub fn changes_since(conn: &Connection, mailbox: i64, since: u64) -> rusqlite::Result<ChangesSince> {
    let tx = conn.unchecked_transaction()?;
    let r = changes_since_in(&tx, mailbox, since);
    tx.finish()?;
    r
}

fn changes_since_in(conn: &Connection, mailbox: i64, since: u64) -> rusqlite::Result<ChangesSince> {
    let (highestmodseq, floor): (i64, i64) =
        conn.query_row("SELECT highestmodseq, vanished_floor FROM mailboxes WHERE id = ?1", [mailbox], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if highestmodseq as u64 <= since {
        return Ok(ChangesSince { highestmodseq: highestmodseq as u64, ..ChangesSince::default() });
    }
    let mut st = conn.prepare_cached("SELECT uid FROM expunged WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid")?;
    let expunged = st
        .query_map(params![mailbox, since as i64], |r| Ok(r.get::<_, i64>(0)? as u32))?
        .collect::<rusqlite::Result<_>>()?;
    let mut st = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM messages WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid"
    ))?;
    let rows = st.query_map(params![mailbox, since as i64], message_row)?.collect::<rusqlite::Result<_>>()?;
    let present = if (since as i64) < floor { Some(uids(conn, mailbox)?) } else { None };
    Ok(ChangesSince { expunged, rows, highestmodseq: highestmodseq as u64, present })
}

/// SQLite's counter of commits by other connections (`PRAGMA data_version`): a cheap way to notice
/// writes from another process.
pub fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, guard};

    const MSG: &[u8] = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n";

    /// The expunge history is bounded; below its floor, VANISHED (EARLIER) and a session's
    /// refresh learn what vanished by comparison with what is left.
    #[test]
    fn pruned_expunge_history_still_answers_vanished() {
        let dir = crate::store::private_tempdir();
        let path = dir.path().join("store.sqlite");
        let store = Store::open(&path).unwrap();
        for _ in 0..8 {
            store.deliver_local("INBOX", MSG, 0).unwrap();
        }
        let c = crate::store::open_connection(&path).unwrap();
        let inbox = super::mailbox(&c, "INBOX").unwrap().unwrap().id;
        let m0 = super::mailbox_by_id(&c, inbox).unwrap().unwrap().highestmodseq;
        for uid in [2, 3, 5, 7] {
            super::expunge_uids(&c, inbox, &[uid]).unwrap();
        }
        // Exact while the history is whole.
        assert_eq!(super::vanished_since(&c, inbox, m0, &[(1, u32::MAX)]).unwrap(), [(2, 3), (5, 5), (7, 7)]);
        assert_eq!(super::vanished_since(&c, inbox, m0 + 2, &[(1, 6)]).unwrap(), [(5, 5)]);
        // Keep two records: 2 and 3 go, the floor rises to 3's MODSEQ.
        super::prune_expunged(&c, inbox, 2).unwrap();
        let n: i64 = c.query_row("SELECT count(*) FROM expunged WHERE mailbox_id = ?1", [inbox], |r| r.get(0)).unwrap();
        assert_eq!(n, 2);
        assert_eq!(super::vanished_since(&c, inbox, m0 + 2, &[(1, u32::MAX)]).unwrap(), [(5, 5), (7, 7)]);
        // From before the floor: every absent UID of the set below UIDNEXT (9).
        assert_eq!(super::vanished_since(&c, inbox, m0, &[(1, u32::MAX)]).unwrap(), [(2, 3), (5, 5), (7, 7)]);
        assert_eq!(super::vanished_since(&c, inbox, m0, &[(3, 6), (9, 12)]).unwrap(), [(3, 3), (5, 5)]);
        let ch = super::changes_since(&c, inbox, m0).unwrap();
        assert_eq!(ch.present, Some(vec![1, 4, 6, 8]));
        assert!(super::changes_since(&c, inbox, m0 + 2).unwrap().present.is_none());
    }

    #[test]
    fn notices_appends_and_copies_move_the_guard_too() {
        let dir = crate::store::private_tempdir();
        let path = dir.path().join("store.sqlite");
        let store = Store::open(&path).unwrap();
        let g0 = guard::read(&path).unwrap().unwrap().generation;
        // A bridge notice (the same path as IMAP APPEND: `imap::append`).
        store.deliver_local("INBOX", MSG, 0).unwrap();
        assert_eq!(guard::read(&path).unwrap().unwrap().generation, g0 + 1);
        // COPY (and MOVE, RENAME INBOX): new UIDs in the destination.
        let mut c = crate::store::open_connection(&path).unwrap();
        let tx = c.transaction().unwrap();
        let inbox = super::mailbox(&tx, "INBOX").unwrap().unwrap().id;
        let trash = super::mailbox(&tx, "Trash").unwrap().unwrap().id;
        assert_eq!(super::copy(&tx, inbox, &[(1, u32::MAX)], trash).unwrap().len(), 1);
        tx.commit().unwrap();
        guard::advance_conn(&c).unwrap();
        assert_eq!(guard::read(&path).unwrap().unwrap().generation, g0 + 2);
    }
}
