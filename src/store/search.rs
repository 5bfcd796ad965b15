//! The full-text index behind SEARCH TEXT / BODY: an FTS5 trigram index (`search_fts`, one row
//! per body, rowid = `bodies.id`) over exactly the folded text that [`SearchText`] evaluates, so
//! an index hit for a string of three characters or more is a substring hit of the evaluation.
//! Rows are written by the daemon's background indexer ([`index_some`]), not at insert: trigram
//! indexing costs about 1 ms per message, more than storing it, and a first import must not wait
//! for it (Dovecot's FTS plugins index lazily too). A body not indexed yet is still found: the
//! lookup returns it for evaluation the slow way. Rows go with their body (a trigger).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::sync::watch;

use super::message::MessageRow;
use crate::mime::MessageMeta;
use crate::mime::text::{SearchText, TextFilter};

/// Indexes up to `batch` bodies not indexed yet, on the caller's own connection; returns how many
/// it looked at (0: the index is complete). The text is computed outside any write transaction,
/// so the write lock is held only for the index rows of one small batch.
pub fn index_some(conn: &mut Connection, batch: usize) -> rusqlite::Result<usize> {
    let todo: Vec<i64> = conn
        .prepare_cached("SELECT id FROM bodies WHERE indexed = 0 ORDER BY id LIMIT ?1")?
        .query_map([batch as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    // One raw message in memory at a time (bodies with attachments run to megabytes); only the
    // decoded text of the batch is kept.
    let mut texts = Vec::with_capacity(todo.len());
    for &id in &todo {
        let Some(raw) = super::imap::raw(conn, id)? else { continue };
        let meta = super::imap::meta(conn, id)?.unwrap_or_else(|| MessageMeta::extract(&raw));
        texts.push((id, SearchText::from_raw_with(&raw, &meta)));
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (id, text) in &texts {
        // Expunged meanwhile: nothing to index (the trigger only removes rows of indexed bodies).
        if tx.prepare_cached("UPDATE bodies SET indexed = 1 WHERE id = ?1 AND indexed = 0")?.execute([id])? == 1 {
            tx.prepare_cached("INSERT INTO search_fts (rowid, h, b) VALUES (?1, ?2, ?3)")?.execute(params![
                id,
                text.headers(),
                text.body()
            ])?;
        }
    }
    tx.commit()?;
    Ok(todo.len())
}

/// Bodies per indexing transaction: about 20–40 ms of write lock.
const BATCH: usize = 25;

/// The daemon's background indexer: indexes what is not indexed yet, then waits for the store to
/// change (and two quiet seconds) and looks again. It takes at most half a core (it sleeps as long
/// as each batch took), so a first import and the mail clients reading it keep the rest.
pub async fn run_indexer(path: PathBuf, changes: super::Changes, mut shutdown: watch::Receiver<bool>) {
    let mut changed = changes.subscribe();
    let mut conn: Option<Connection> = None;
    loop {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let started = Instant::now();
            let (p, c) = (path.clone(), conn.take());
            let r = tokio::task::spawn_blocking(move || -> crate::Result<(Connection, usize)> {
                let mut c = match c {
                    Some(c) => c,
                    None => super::open_connection(&p)?,
                };
                let n = index_some(&mut c, BATCH).map_err(|e| super::db_err(&p, e))?;
                Ok((c, n))
            })
            .await;
            let pause = match r {
                Ok(Ok((c, n))) => {
                    conn = Some(c);
                    if n == 0 {
                        break;
                    }
                    started.elapsed()
                }
                Ok(Err(e)) => {
                    tracing::warn!("search index: {} (SEARCH still works, unindexed mail is read directly)", e.message);
                    Duration::from_secs(60)
                }
                Err(e) => {
                    tracing::warn!("search index: {e}");
                    Duration::from_secs(60)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return,
            }
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
        changed.borrow_and_update();
    }
}

/// The FTS5 query for a folded string: one quoted phrase (a substring, for the trigram
/// tokenizer), in the body column only for BODY.
fn fts_query(f: &TextFilter) -> String {
    let phrase = format!("\"{}\"", f.needle.replace('"', "\"\""));
    if f.body_only { format!("b : {phrase}") } else { phrase }
}

/// The messages of a mailbox whose body the index names for `f`, plus those whose body is not
/// indexed yet, ascending by UID; and the bodies of the latter (which the caller must evaluate the
/// slow way even when the filter is exact).
pub fn rows_matching(
    conn: &Connection,
    mailbox: i64,
    f: &TextFilter,
) -> rusqlite::Result<(Vec<MessageRow>, HashSet<i64>)> {
    let unindexed: HashSet<i64> = conn
        .prepare_cached("SELECT id FROM bodies WHERE indexed = 0")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let sql = format!(
        "SELECT {} FROM messages WHERE mailbox_id = ?1 AND body_id IN (
             SELECT rowid FROM search_fts WHERE search_fts MATCH ?2
             UNION ALL SELECT id FROM bodies WHERE indexed = 0)
         ORDER BY uid",
        super::imap::ROW_COLUMNS
    );
    let mut st = conn.prepare_cached(&sql)?;
    let rows =
        st.query_map(params![mailbox, fts_query(f)], super::imap::message_row)?.collect::<rusqlite::Result<_>>()?;
    Ok((rows, unindexed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn msg(subject: &str, body: &str) -> Vec<u8> {
        format!("From: Jürgen <j@x.example>\r\nSubject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n")
            .into_bytes()
    }

    fn index_all(store: &Store) {
        let mut conn = crate::store::open_connection(&store.path).unwrap();
        while index_some(&mut conn, 3).unwrap() > 0 {}
    }

    #[test]
    fn unindexed_bodies_are_still_found_and_deleted_ones_leave_the_index() {
        let dir = crate::store::private_tempdir();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        store.deliver_local("INBOX", &msg("one", "alpha beta"), 0).unwrap();
        store.deliver_local("INBOX", &msg("two", "alpha gamma"), 0).unwrap();
        // What `imap::search::SearchQuery::text_filter` makes of BODY "alpha".
        let filter = TextFilter { body_only: true, needle: "alpha".into(), exact: true };
        let lookup = || {
            let conn = store.lock();
            let id: i64 = conn.query_row("SELECT id FROM mailboxes WHERE name = 'INBOX'", [], |r| r.get(0)).unwrap();
            let (rows, unindexed) = rows_matching(&conn, id, &filter).unwrap();
            (rows.iter().map(|r| r.uid).collect::<Vec<_>>(), unindexed.len())
        };
        assert_eq!(lookup(), (vec![1, 2], 2), "not indexed yet: returned for evaluation");
        index_all(&store);
        assert_eq!(lookup(), (vec![1, 2], 0));
        store.deliver_local("INBOX", &msg("three", "delta"), 0).unwrap();
        assert_eq!(lookup(), (vec![1, 2, 3], 1), "a new body is a candidate until indexed");
        index_all(&store);
        assert_eq!(lookup(), (vec![1, 2], 0));
        store.lock().execute("DELETE FROM messages WHERE uid = 1", []).unwrap();
        assert_eq!(lookup(), (vec![2], 0));
        let rows: i64 = store.lock().query_row("SELECT count(*) FROM search_fts", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 2, "the expunged body's index row went with it");
    }
}
