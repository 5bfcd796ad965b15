//! The fetch path into the store: each message, its mailbox row and its POP identity are written in
//! one transaction, and several messages may share one commit (a "group commit": one fsync for many
//! messages). Nothing here is acknowledged to the fetcher before `commit` returns, and the fetcher
//! deletes from the server only what was acknowledged (DESIGN §4).

use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, params};

use super::accounts::AccountIds;
use super::{Store, db_err};
use crate::error::{Error, Result};
use crate::mime::MessageMeta;

/// A message made durable by a commit.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub uid: i64,
    pub size: u64,
    /// The same bytes were already stored for this account under another identity (a server that
    /// changes its UIDLs): only the identity was recorded, no second copy.
    pub same_content: bool,
}

/// What `Delivery::add` did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new message (and its identity), in the open transaction.
    New,
    /// The identity was stored already: nothing written.
    Known,
    /// New identity, but these exact bytes are stored for the account already: the identity now
    /// points at that copy.
    SameContent,
}

/// A writer for one account's fetched messages, on a connection of its own.
pub struct Delivery {
    conn: Connection,
    changes: super::Changes,
    path: PathBuf,
    ids: AccountIds,
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
    pub fn new(store: &Store, ids: AccountIds) -> Result<Delivery> {
        Ok(Delivery {
            conn: store.connection()?,
            changes: store.changes(),
            path: store.path().to_path_buf(),
            ids,
            open: None,
        })
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        db_err(&self.path, e)
    }

    /// Whether a message with this identity is stored already (committed or in the open transaction).
    pub fn contains(&self, key: &str) -> Result<bool> {
        let mut st = self
            .conn
            .prepare_cached("SELECT 1 FROM pop_uidls WHERE account_id = ?1 AND uidl = ?2")
            .map_err(|e| self.err(e))?;
        st.query_row(params![self.ids.account, key], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
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
    pub fn add(&mut self, key: &str, raw: &[u8], fetched_at: i64) -> Result<Added> {
        self.begin()?;
        match self.add_inner(key, raw, fetched_at) {
            Ok(added) => Ok(added),
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    fn add_inner(&mut self, key: &str, raw: &[u8], fetched_at: i64) -> Result<Added> {
        if self.contains(key)? {
            return Ok(Added::Known);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, raw);
        let digest = digest.as_ref();
        let same: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT b.id FROM bodies b JOIN pop_uidls p ON p.body_id = b.id
                 WHERE b.sha256 = ?1 AND p.account_id = ?2 LIMIT 1",
            )
            .and_then(|mut st| st.query_row(params![digest, self.ids.account], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        if let Some(body) = same {
            self.conn
                .prepare_cached(
                    "INSERT INTO pop_uidls (account_id, uidl, first_seen, body_id, size) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut st| st.execute(params![self.ids.account, key, fetched_at, body, raw.len() as i64]))
                .map_err(|e| self.err(e))?;
            let Some(open) = self.open.as_mut() else {
                return Err(Error::other("internal error: no open transaction"));
            };
            open.pending.push(Stored { key: key.to_string(), uid: 0, size: raw.len() as u64, same_content: true });
            return Ok(Added::SameContent);
        }
        let meta = MessageMeta::extract(raw);
        let date = meta.internal_date(fetched_at);
        let meta_bytes = meta.to_bytes();
        let Some(open) = self.open.as_mut() else {
            return Err(Error::other("internal error: no open transaction"));
        };
        let (uid, modseq) = (open.next_uid, open.modseq);
        let c = &self.conn;
        let res =
            (|| -> rusqlite::Result<()> {
                c.prepare_cached("INSERT INTO bodies (meta_version, meta, raw, sha256) VALUES (?1, ?2, ?3, ?4)")?
                    .execute(params![crate::mime::META_VERSION, meta_bytes, raw, digest])?;
                let body = c.last_insert_rowid();
                c.prepare_cached(
                "INSERT INTO messages (mailbox_id, uid, body_id, flags, modseq, internaldate, internaldate_tz, size)
                 VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![self.ids.mailbox, uid, body, modseq, date.unix, date.offset_minutes, raw.len() as i64])?;
                c.prepare_cached(
                    "INSERT INTO pop_uidls (account_id, uidl, first_seen, body_id, size) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![self.ids.account, key, fetched_at, body, raw.len() as i64])?;
                Ok(())
            })();
        if let Err(e) = res {
            return Err(db_err(&self.path, e));
        }
        // A verification mail coming back through POP confirms its address (same transaction).
        if memchr::memmem::find(&raw[..raw.len().min(meta.header_len as usize)], b"opbridge-Verify:").is_some()
            && let Err(e) = super::outbox::auto_confirm(c, raw)
        {
            return Err(db_err(&self.path, e));
        }
        open.next_uid += 1;
        open.unseen_added += 1; // fetched mail arrives unread (DESIGN §3)
        open.bytes += raw.len() as u64;
        open.pending.push(Stored { key: key.to_string(), uid, size: raw.len() as u64, same_content: false });
        Ok(Added::New)
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
        let added = open.pending.iter().filter(|p| !p.same_content).count() as i64;
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
                self.changes.notify();
                // Durable in the store; now in the guard, before anyone acts on it. Should that
                // fail, the messages are stored but not reported: nothing is DELEted for them.
                super::guard::advance(&self.path, &self.conn)?;
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

    #[test]
    fn group_commit_assigns_uids_and_counts() {
        let dir = crate::store::private_tempdir();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let ids = store.ensure_account("Work").unwrap();
        let mut d = Delivery::new(&store, ids).unwrap();
        assert_eq!(d.add("u1", MSG, 1_800_000_000).unwrap(), Added::New);
        assert_eq!(d.add("u2", MSG2, 1_800_000_000).unwrap(), Added::New);
        assert_eq!(d.add("u1", MSG, 1_800_000_000).unwrap(), Added::Known, "same identity twice in one transaction");
        assert_eq!(d.add("u9", MSG, 1_800_000_000).unwrap(), Added::SameContent, "same bytes under a new UIDL");
        assert_eq!(store.mailbox_messages("Work").unwrap(), Some(0), "nothing visible before commit");
        let stored = d.commit().unwrap();
        assert_eq!(stored.iter().filter(|s| !s.same_content).map(|s| s.uid).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(store.mailbox_messages("Work").unwrap(), Some(2));
        assert_eq!(d.add("u2", MSG2, 1).unwrap(), Added::Known, "known after commit");
        d.rollback();
        let known = store.known_uidls(ids.account).unwrap();
        assert_eq!(known.len(), 3);
        // An uncommitted transaction dropped: nothing stored, UIDs not consumed.
        let mut d = Delivery::new(&store, ids).unwrap();
        d.add("u3", MSG3, 1).unwrap();
        drop(d);
        assert_eq!(store.known_uidls(ids.account).unwrap().len(), 3);
        let mut d = Delivery::new(&store, ids).unwrap();
        d.add("u3", MSG3, 1).unwrap();
        assert_eq!(d.commit().unwrap()[0].uid, 3);
        // Expunged everywhere: marked for when-deleted-locally, body dropped.
        store.expunge("Work", &[1]).unwrap();
        let known = store.known_uidls(ids.account).unwrap();
        assert!(known["u1"].local_deleted && !known["u2"].local_deleted);
        assert_eq!(store.mailbox_messages("Work").unwrap(), Some(2));
    }
}
