//! What SORT (RFC 5256 §3, RFC 5957) and THREAD (RFC 5256 §2) compare, parsed once at insert:
//! one `sort_keys` row per body (rowid = `bodies.id`, written in the insert's transaction,
//! removed with its body by a trigger), so a SORT or THREAD of a whole mailbox reads small rows
//! instead of decoding every message. A separate table rather than columns of `bodies`: a column
//! added to `bodies` would sit behind the raw BLOB, and reading it would walk the blob's overflow
//! pages.
//!
//! Every string is already in its compared form (`mime::subject::sort_form`: upper-cased, which
//! on ASCII is i;ascii-casemap), so SQLite or the caller compares bytes.
//!
//! A body without a row (written by code that bypasses [`insert`]) is not an error: [`rows`]
//! extracts its keys from the stored message on the fly.

use rusqlite::{Connection, OptionalExtension, params};

use crate::mime::subject::{base_subject_raw, sort_form};
use crate::mime::{Address, MessageMeta, header};

/// The keys of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortKeys {
    /// The `Date:` header in UTC (unix seconds); None when missing or unparseable (SORT and THREAD
    /// then use INTERNALDATE, RFC 5256 §2.2).
    pub date: Option<i64>,
    /// The addr-mailbox (local part) of the first From / To / Cc address; "" when none.
    pub from: String,
    pub to: String,
    pub cc: String,
    /// RFC 5957 §3: the first From / To address's display name, RFC 2047-decoded; its
    /// `mailbox@host` when it has none; "" when there is no address.
    pub display_from: String,
    pub display_to: String,
    /// The base subject (RFC 5256 §2.1).
    pub subject: String,
    /// The subject was a reply or forward (`Re:`, `Fwd:`, `(fwd)`, `[fwd: …]`).
    pub reply: bool,
    /// The first `<…>` of Message-ID, without the brackets.
    pub message_id: Option<String>,
    /// The References ids in order; when References names none, the first id of In-Reply-To
    /// (RFC 5256 §2.2 step 1).
    pub references: Vec<String>,
}

/// Every column [`rows`] can read; a query names only those it compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Columns {
    pub date: bool,
    pub from: bool,
    pub to: bool,
    pub cc: bool,
    pub display_from: bool,
    pub display_to: bool,
    pub subject: bool,
    /// message_id and references.
    pub thread: bool,
}

impl SortKeys {
    /// The keys of a message from its raw bytes and the metadata extracted from them.
    pub fn extract(raw: &[u8], meta: &MessageMeta) -> SortKeys {
        let head = &raw[..(meta.header_len as usize).min(raw.len())];
        let env = &meta.envelope;
        let (subject, reply) = env.subject.as_deref().map(|s| base_subject_raw(s.as_bytes())).unwrap_or_default();
        let mut references = Vec::new();
        let mut message_id = None;
        // Last occurrence wins, as for the envelope.
        for (name, value) in header::named(head) {
            if name.eq_ignore_ascii_case(b"references") {
                references = msg_ids(value);
            } else if name.eq_ignore_ascii_case(b"message-id") {
                message_id = msg_ids(value).into_iter().next();
            }
        }
        if references.is_empty()
            && let Some(irt) = &env.in_reply_to
        {
            references.extend(msg_ids(irt.as_bytes()).into_iter().take(1));
        }
        SortKeys {
            date: meta.date.map(|t| t.unix),
            from: first_mailbox(&env.from),
            to: first_mailbox(&env.to),
            cc: first_mailbox(&env.cc),
            display_from: display(&env.from),
            display_to: display(&env.to),
            subject: sort_form(&subject),
            reply,
            message_id: message_id.or_else(|| meta.message_id.clone()),
            references,
        }
    }
}

/// The first real address of a list (group markers have no host).
fn first(list: &[Address]) -> Option<&Address> {
    list.iter().find(|a| a.host.is_some())
}

fn first_mailbox(list: &[Address]) -> String {
    first(list).and_then(|a| a.mailbox.as_deref()).map(sort_form).unwrap_or_default()
}

fn display(list: &[Address]) -> String {
    let Some(a) = first(list) else { return String::new() };
    let name = a.name.as_deref().map(|n| header::decoded(n.as_bytes())).unwrap_or_default();
    let name = name.trim();
    if !name.is_empty() {
        return sort_form(name);
    }
    match (&a.mailbox, &a.host) {
        (Some(m), Some(h)) => sort_form(&format!("{m}@{h}")),
        (Some(m), None) => sort_form(m),
        _ => String::new(),
    }
}

/// The `<…>` message ids of a field value, without brackets and whitespace, in order.
fn msg_ids(value: &[u8]) -> Vec<String> {
    let text = header::text(value);
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(['>', '<']) else { break };
        if after.as_bytes()[close] == b'>' {
            let id: String = after[..close].chars().filter(|c| !c.is_whitespace()).collect();
            if !id.is_empty() {
                out.push(id);
            }
            rest = &after[close + 1..];
        } else {
            rest = &after[close..];
        }
    }
    out
}

/// Writes the keys of a body just inserted (same transaction).
pub fn insert(conn: &Connection, body: i64, k: &SortKeys) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO sort_keys
             (body_id, date, from_mb, to_mb, cc_mb, display_from, display_to, subject, reply, message_id, refs)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        body,
        k.date,
        k.from,
        k.to,
        k.cc,
        k.display_from,
        k.display_to,
        k.subject,
        k.reply,
        k.message_id,
        (!k.references.is_empty()).then(|| k.references.join(" ")),
    ])?;
    Ok(())
}

/// Header bytes read per step when a stored header is looked for (most headers fit one).
const HEADER_STEP: usize = 16 * 1024;

/// The keys of a stored body, extracted from its header (not from its row). Only the header is
/// read, through incremental blob I/O, and parsed as a message of its own: the keys come from
/// the header alone.
fn extract_stored(conn: &Connection, body: i64) -> rusqlite::Result<Option<SortKeys>> {
    let len: Option<i64> = conn
        .prepare_cached("SELECT length(raw) FROM bodies WHERE id = ?1")?
        .query_row([body], |r| r.get(0))
        .optional()?;
    let Some(len) = len else { return Ok(None) };
    let len = usize::try_from(len).unwrap_or(0);
    let blob = conn.blob_open(rusqlite::MAIN_DB, "bodies", "raw", body, true)?;
    let mut head = Vec::new();
    while head.len() < len && header::find_end(&head).is_none() {
        let start = head.len();
        let end = (start + HEADER_STEP).min(len);
        head.resize(end, 0);
        blob.read_at_exact(&mut head[start..], start)?;
    }
    let head = &head[..header::split(&head).body_start];
    Ok(Some(SortKeys::extract(head, &MessageMeta::extract(head))))
}

/// Writes the keys of every body that has none (the migration that created the table, for the
/// mail stored before it); returns how many.
pub fn fill_missing(conn: &Connection) -> rusqlite::Result<usize> {
    let todo: Vec<i64> = conn
        .prepare("SELECT id FROM bodies WHERE id NOT IN (SELECT body_id FROM sort_keys)")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut n = 0;
    for body in todo {
        if let Some(k) = extract_stored(conn, body)? {
            insert(conn, body, &k)?;
            n += 1;
        }
    }
    Ok(n)
}

/// One message of a mailbox with the keys a SORT or THREAD compares (the others left empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortRow {
    pub uid: u32,
    /// RFC822.SIZE.
    pub size: u32,
    /// INTERNALDATE, unix seconds.
    pub internaldate: i64,
    pub keys: SortKeys,
}

impl SortRow {
    /// The sent date of RFC 5256 §2.2: Date, else INTERNALDATE.
    pub fn date(&self) -> i64 {
        self.keys.date.unwrap_or(self.internaldate)
    }
}

/// A SORT key (RFC 5256 §3, RFC 5957) as the store orders by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Arrival,
    Date,
    Size,
    From,
    To,
    Cc,
    DisplayFrom,
    DisplayTo,
    Subject,
}

impl SortBy {
    /// The SQL expression of the key over `messages m` and `sort_keys k`.
    fn expr(self) -> &'static str {
        match self {
            SortBy::Arrival => "m.internaldate",
            SortBy::Date => "coalesce(k.date, m.internaldate)",
            SortBy::Size => "m.size",
            SortBy::From => "k.from_mb",
            SortBy::To => "k.to_mb",
            SortBy::Cc => "k.cc_mb",
            SortBy::DisplayFrom => "k.display_from",
            SortBy::DisplayTo => "k.display_to",
            SortBy::Subject => "k.subject",
        }
    }
}

/// The UIDs of a mailbox ordered by `keys` (each ascending, or descending when its flag is set),
/// equal ones by UID — which is sequence-number order. SQLite sorts and only the UIDs come back,
/// so a SORT of a large mailbox holds 4 bytes a message. The strings are stored in their
/// `sort_form` (i;ascii-casemap on ASCII) and compared bytewise (SQLite's BINARY collation,
/// `str::cmp`'s order).
/// None when some message's body has no keys row (see the module docs): the caller then sorts
/// [`rows`] itself.
pub fn sorted_uids(conn: &Connection, mailbox: i64, keys: &[(SortBy, bool)]) -> rusqlite::Result<Option<Vec<u32>>> {
    let mut order = String::new();
    for (k, reverse) in keys {
        order.push_str(k.expr());
        order.push_str(if *reverse { " DESC, " } else { ", " });
    }
    // ARRIVAL and SIZE are columns of `messages`: no keys row needed.
    let sql = if keys.iter().all(|(k, _)| matches!(k, SortBy::Arrival | SortBy::Size)) {
        format!("SELECT m.uid, 0 FROM messages m WHERE m.mailbox_id = ?1 ORDER BY {order}m.uid")
    } else {
        format!(
            "SELECT m.uid, k.body_id IS NULL FROM messages m LEFT JOIN sort_keys k ON k.body_id = m.body_id
             WHERE m.mailbox_id = ?1 ORDER BY {order}m.uid"
        )
    };
    let mut st = conn.prepare_cached(&sql)?;
    let mut q = st.query([mailbox])?;
    let mut out = Vec::new();
    while let Some(r) = q.next()? {
        if r.get::<_, bool>(1)? {
            return Ok(None);
        }
        out.push(r.get::<_, i64>(0)? as u32);
    }
    Ok(Some(out))
}

/// The messages of a mailbox whose UIDs are in `uids` (ascending), ascending by UID, with the
/// `cols` keys.
pub fn rows(conn: &Connection, mailbox: i64, uids: &[u32], cols: Columns) -> rusqlite::Result<Vec<SortRow>> {
    let c = |on: bool, name: &str| if on { format!("k.{name}") } else { "NULL".to_string() };
    let sql = format!(
        "SELECT m.uid, m.size, m.internaldate, m.body_id, k.body_id IS NOT NULL, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}
         FROM messages m LEFT JOIN sort_keys k ON k.body_id = m.body_id
         WHERE m.mailbox_id = ?1 AND m.uid BETWEEN ?2 AND ?3 ORDER BY m.uid",
        c(cols.date, "date"),
        c(cols.from, "from_mb"),
        c(cols.to, "to_mb"),
        c(cols.cc, "cc_mb"),
        c(cols.display_from, "display_from"),
        c(cols.display_to, "display_to"),
        c(cols.subject, "subject"),
        c(cols.subject, "reply"),
        c(cols.thread, "message_id"),
        c(cols.thread, "refs"),
    );
    let (Some(&lo), Some(&hi)) = (uids.first(), uids.last()) else { return Ok(Vec::new()) };
    let mut st = conn.prepare_cached(&sql)?;
    let mut out = Vec::with_capacity(uids.len());
    let mut missing = Vec::new();
    let mut want = uids.iter().peekable();
    let mut q = st.query(params![mailbox, lo, hi])?;
    while let Some(r) = q.next()? {
        let uid = r.get::<_, i64>(0)? as u32;
        while want.next_if(|&&u| u < uid).is_some() {}
        if want.next_if_eq(&&uid).is_none() {
            continue;
        }
        let s = |i: usize| -> rusqlite::Result<String> { Ok(r.get::<_, Option<String>>(i)?.unwrap_or_default()) };
        let keys = SortKeys {
            date: r.get(5)?,
            from: s(6)?,
            to: s(7)?,
            cc: s(8)?,
            display_from: s(9)?,
            display_to: s(10)?,
            subject: s(11)?,
            reply: r.get::<_, Option<bool>>(12)?.unwrap_or(false),
            message_id: r.get(13)?,
            references: r
                .get::<_, Option<String>>(14)?
                .map(|t| t.split(' ').map(str::to_owned).collect())
                .unwrap_or_default(),
        };
        if !r.get::<_, bool>(4)? {
            missing.push((out.len(), r.get::<_, i64>(3)?));
        }
        out.push(SortRow { uid, size: r.get::<_, i64>(1)? as u32, internaldate: r.get(2)?, keys });
    }
    drop(q);
    for (i, body) in missing {
        if let Some(k) = extract_stored(conn, body)? {
            out[i].keys = k;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::schema::{MIGRATIONS, SORT_KEYS_MIGRATION};

    fn msg(subject: &str) -> Vec<u8> {
        format!("From: Ann <ann@x.example>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@x>\r\n\r\nbody\r\n")
            .into_bytes()
    }

    fn subjects(store: &Store) -> Vec<String> {
        let conn = store.lock();
        let id: i64 = conn.query_row("SELECT id FROM mailboxes WHERE name = 'INBOX'", [], |r| r.get(0)).unwrap();
        let cols = Columns { subject: true, thread: true, ..Columns::default() };
        rows(&conn, id, &[1, 2, 3], cols)
            .unwrap()
            .into_iter()
            .map(|r| format!("{} {} {:?}", r.uid, r.keys.subject, r.keys.message_id))
            .collect()
    }

    fn stored_rows(store: &Store) -> i64 {
        store.lock().query_row("SELECT count(*) FROM sort_keys", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn keys_are_written_at_insert_filled_by_the_migration_and_extracted_when_missing() {
        assert!(MIGRATIONS[SORT_KEYS_MIGRATION].contains("CREATE TABLE sort_keys"));
        let dir = crate::store::private_tempdir();
        let path = dir.path().join("s.sqlite");
        let store = Store::open(&path).unwrap();
        store.deliver_local("INBOX", &msg("Re: one"), 0).unwrap();
        store.deliver_local("INBOX", &msg("two"), 0).unwrap();
        let want = ["1 ONE Some(\"Re:one@x\")", "2 TWO Some(\"two@x\")"];
        assert_eq!(stored_rows(&store), 2, "written at insert");
        assert_eq!(subjects(&store), want);
        // A store from before the migration: no table (nor what the later migrations add);
        // opening it fills the table.
        store
            .lock()
            .execute_batch(&format!(
                "DROP TRIGGER bodies_sort_keys; DROP TABLE sort_keys; ALTER TABLE pop_uidls DROP COLUMN origin;
                 {} PRAGMA user_version = {SORT_KEYS_MIGRATION};",
                crate::store::schema::UNDO_AFTER_14
            ))
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(stored_rows(&store), 2, "filled by the migration");
        assert_eq!(subjects(&store), want);
        // A body without its row is still sorted by its own keys.
        store.lock().execute("DELETE FROM sort_keys WHERE subject = 'ONE'", []).unwrap();
        assert_eq!(subjects(&store), want);
        // Rows go with their body.
        store.lock().execute("DELETE FROM messages", []).unwrap();
        assert_eq!(stored_rows(&store), 0);
    }

    fn keys(raw: &str) -> SortKeys {
        let raw = raw.replace('\n', "\r\n");
        SortKeys::extract(raw.as_bytes(), &MessageMeta::extract(raw.as_bytes()))
    }

    #[test]
    fn keys_follow_rfc_5256_and_5957() {
        let k = keys(
            "Date: Mon, 7 Feb 1994 21:52:25 -0800\nFrom: \"=?UTF-8?Q?J=C3=BCrgen?=\" <Juergen@X.example>\n\
             To: undisclosed:;, Ann <ann@y.example>\nCc: <CC@z.example>\nSubject: Re: [list] Fwd: Hello (fwd)\n\
             Message-ID: <a@b> <ignored@c>\nIn-Reply-To: <p@q>\nReferences: <r1@x>\n <r2@x>  <bad\n\n",
        );
        assert_eq!(k.date, Some(760_686_745), "1994-02-08 05:52:25 UTC");
        assert_eq!((k.from.as_str(), k.to.as_str(), k.cc.as_str()), ("JUERGEN", "ANN", "CC"));
        assert_eq!((k.display_from.as_str(), k.display_to.as_str()), ("JÜRGEN", "ANN"));
        assert_eq!((k.subject.as_str(), k.reply), ("HELLO", true));
        assert_eq!(k.message_id.as_deref(), Some("a@b"));
        assert_eq!(k.references, ["r1@x", "r2@x"]);
        // No References: the first id of In-Reply-To; no display name: the address.
        let k = keys("From: x@Y.example\nIn-Reply-To: <p@q> <s@t>\nDate: nonsense\n\n");
        assert_eq!((k.date, k.references.clone()), (None, vec!["p@q".to_string()]));
        assert_eq!(k.display_from, "X@Y.EXAMPLE");
        assert_eq!((k.to.as_str(), k.subject.as_str(), k.message_id.clone()), ("", "", None));
    }
}
