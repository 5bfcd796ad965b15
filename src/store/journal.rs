//! The delivery journal of accounts that deliver into another mail server (`[account.deliver]`,
//! issue 18): the store keeps their POP state (`pop_uidls`, with no body) and one row per
//! delivery in `deliveries`, not the messages.
//!
//! The order that keeps mail safe (DESIGN §4, carried over):
//! 1. [`Journal::start`] commits a 'delivering' row (identity, Message-ID, SHA-256, size) for each
//!    message **before** it is sent to the target;
//! 2. the target confirms (LMTP `250` for the recipient, APPEND `OK`);
//! 3. [`Journal::delivered`] records, in one transaction, the identity as held (`pop_uidls`,
//!    `body_id` NULL) and the row as 'delivered' with the confirmation; the guard covers it before
//!    the fetcher hears of it — only then may a DELE go out.
//!
//! A crash between 2 and 3 leaves a 'delivering' row ([`Journal::unresolved`]): the message was
//! perhaps delivered. The fetcher reads it again (its identity is not held), and the writer looks
//! for it in the target first where it can (IMAP) — found, it is recorded as delivered; else it is
//! delivered again and `attempts` grows (LMTP is at-least-once).

use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::accounts::AccountIds;
use super::deliver::{Identity, Stored};
use super::{Store, db_err};
use crate::error::Result;

/// Seconds after which a journal row whose message has left the POP server is forgotten (30 days:
/// `status` counts what was delivered in that time).
pub const FORGET_AFTER: i64 = 30 * 86_400;

/// One message on its way to the target.
#[derive(Debug, Clone)]
pub struct Pending {
    pub identity: Identity,
    pub message_id: Option<String>,
    pub sha256: Vec<u8>,
    pub size: u64,
}

/// A 'delivering' row left by an interrupted delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub uidl: String,
    pub message_id: Option<String>,
    pub sha256: Vec<u8>,
    pub size: u64,
    pub attempts: i64,
    /// When its delivery was started (unix seconds).
    pub started: i64,
}

/// What the journal holds for an identity (for a recheck: is it the same message?).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// popbridge holds the identity (`pop_uidls`, origin NULL).
    pub held: bool,
    /// The delivered bytes' SHA-256, if this identity was delivered.
    pub sha256: Option<Vec<u8>>,
}

/// The journal writer for one account's upstream mailbox, on a connection of its own (the
/// fetcher's writer thread owns it).
pub struct Journal {
    conn: Connection,
    path: PathBuf,
    server: i64,
    target: String,
    changes: super::Changes,
}

impl Journal {
    /// `target`: the target as described to people (`DeliverTarget::describe`). Rows untouched
    /// for [`FORGET_AFTER`] whose identity the POP state no longer holds are forgotten here: the
    /// message left the server (deleted after delivery, or by other means) a while ago.
    pub fn new(store: &Store, _ids: AccountIds, server: i64, target: &str) -> Result<Journal> {
        let j = Journal {
            conn: store.connection()?,
            path: store.path().to_path_buf(),
            server,
            target: target.to_string(),
            changes: store.changes(),
        };
        j.conn
            .execute(
                "DELETE FROM deliveries WHERE server_id = ?1 AND updated < ?2 AND NOT EXISTS
                     (SELECT 1 FROM pop_uidls p WHERE p.server_id = deliveries.server_id AND p.uidl = deliveries.uidl)",
                params![server, super::now() - FORGET_AFTER],
            )
            .map_err(|e| j.err(e))?;
        Ok(j)
    }

    fn err(&self, e: rusqlite::Error) -> crate::Error {
        db_err(&self.path, e)
    }

    /// What the store knows of an identity: `None` when nothing.
    pub fn recorded(&self, uidl: &str) -> Result<Option<Recorded>> {
        let held: Option<bool> = self
            .conn
            .prepare_cached("SELECT origin IS NULL FROM pop_uidls WHERE server_id = ?1 AND uidl = ?2")
            .and_then(|mut st| st.query_row(params![self.server, uidl], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        let Some(held) = held else { return Ok(None) };
        let sha256: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT sha256 FROM deliveries WHERE server_id = ?1 AND uidl = ?2 AND state = 'delivered'")
            .and_then(|mut st| st.query_row(params![self.server, uidl], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        Ok(Some(Recorded { held, sha256 }))
    }

    /// Commits a 'delivering' row for each message (`attempts` + 1), before any is sent.
    pub fn start(&mut self, batch: &[Pending]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let now = super::now();
        let (server, target, path) = (self.server, self.target.clone(), self.path.clone());
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, e))?;
        for p in batch {
            tx.prepare_cached(
                "INSERT INTO deliveries (server_id, uidl, target, message_id, sha256, size, state, attempts, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'delivering', 1, ?7)
                 ON CONFLICT (server_id, uidl) DO UPDATE SET target = ?3, message_id = ?4, sha256 = ?5, size = ?6,
                     state = 'delivering', attempts = attempts + 1, confirmation = NULL, updated = ?7",
            )
            .and_then(|mut st| {
                st.execute(params![server, p.identity.key, target, p.message_id, p.sha256, p.size as i64, now])
            })
            .map_err(|e| db_err(&path, e))?;
        }
        tx.commit().map_err(|e| db_err(&path, e))
    }

    /// The rows an interrupted delivery left 'delivering'.
    pub fn unresolved(&self) -> Result<Vec<Unresolved>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT uidl, message_id, sha256, size, attempts, updated FROM deliveries
                 WHERE server_id = ?1 AND state = 'delivering' ORDER BY uidl",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([self.server], |r| {
                Ok(Unresolved {
                    uidl: r.get(0)?,
                    message_id: r.get(1)?,
                    sha256: r.get(2)?,
                    size: r.get::<_, i64>(3)? as u64,
                    attempts: r.get(4)?,
                    started: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }

    /// Records confirmed deliveries: each identity held (no body), each row 'delivered' with the
    /// target's `confirmation`, in one transaction that the guard covers before this returns.
    /// What it returns is what the fetcher may DELE (for exact identities).
    pub fn delivered(&mut self, done: &[(Pending, String)]) -> Result<Vec<Stored>> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let now = super::now();
        let (server, path) = (self.server, self.path.clone());
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, e))?;
        let mut stored = Vec::with_capacity(done.len());
        for (p, confirmation) in done {
            let id = &p.identity;
            let res = (|| -> rusqlite::Result<bool> {
                let reused = tx
                    .prepare_cached("DELETE FROM pop_uidls WHERE server_id = ?1 AND uidl = ?2")?
                    .execute(params![server, id.key])?
                    > 0;
                tx.prepare_cached(
                    "INSERT INTO pop_uidls (server_id, uidl, first_seen, body_id, size, list_size, fingerprint, exact)
                     VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    server,
                    id.key,
                    now,
                    p.size as i64,
                    id.list_size as i64,
                    id.fingerprint,
                    id.exact
                ])?;
                tx.prepare_cached(
                    "UPDATE deliveries SET state = 'delivered', confirmation = ?3, updated = ?4
                     WHERE server_id = ?1 AND uidl = ?2",
                )?
                .execute(params![server, id.key, confirmation, now])?;
                Ok(reused)
            })();
            let reused = res.map_err(|e| db_err(&path, e))?;
            stored.push(Stored {
                key: id.key.clone(),
                uid: 0,
                size: p.size,
                same_content: false,
                reused: reused && id.recheck,
                exact: id.exact,
                duplicate: None,
            });
        }
        super::guard::bump(&tx).map_err(|e| db_err(&path, e))?;
        tx.commit().map_err(|e| db_err(&path, e))?;
        super::guard::advance(&path, &self.conn)?;
        self.changes.notify();
        Ok(stored)
    }

    /// A recheck that found the delivered bytes again: the identity's record is renewed (LIST's
    /// size, fingerprint, exactness) and nothing is delivered.
    pub fn renew(&mut self, id: &Identity, size: u64) -> Result<Stored> {
        let (server, path) = (self.server, self.path.clone());
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, e))?;
        tx.prepare_cached(
            "UPDATE pop_uidls SET list_size = ?3, fingerprint = ?4, exact = ?5 WHERE server_id = ?1 AND uidl = ?2",
        )
        .and_then(|mut st| st.execute(params![server, id.key, id.list_size as i64, id.fingerprint, id.exact]))
        .and_then(|_| super::guard::bump(&tx))
        .and_then(|_| tx.commit())
        .map_err(|e| db_err(&path, e))?;
        super::guard::advance(&path, &self.conn)?;
        Ok(Stored {
            key: id.key.clone(),
            uid: 0,
            size,
            same_content: true,
            reused: false,
            exact: id.exact,
            duplicate: None,
        })
    }
}

/// One account's delivery journal, for `status`: rows per state and the latest confirmation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JournalSummary {
    pub delivered: i64,
    pub delivering: i64,
    /// Deliveries started again after an unconfirmed one (LMTP's at-least-once window).
    pub repeated: i64,
    pub last_confirmation: Option<String>,
}

impl Store {
    /// The delivery journal's summary for the account named `account` (all its upstream mailboxes).
    pub fn journal_summary(&self, account: &str) -> Result<JournalSummary> {
        let conn = self.lock();
        let q = "SELECT coalesce(sum(d.state = 'delivered'), 0), coalesce(sum(d.state = 'delivering'), 0),
                        coalesce(sum(d.attempts - 1), 0)
                 FROM deliveries d JOIN pop_servers s ON s.id = d.server_id JOIN accounts a ON a.id = s.account_id
                 WHERE a.name = ?1";
        let (delivered, delivering, repeated) =
            conn.query_row(q, [account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(|e| self.err(e))?;
        let last_confirmation = conn
            .query_row(
                "SELECT d.confirmation FROM deliveries d JOIN pop_servers s ON s.id = d.server_id
                 JOIN accounts a ON a.id = s.account_id
                 WHERE a.name = ?1 AND d.state = 'delivered' ORDER BY d.updated DESC LIMIT 1",
                [account],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .flatten();
        Ok(JournalSummary { delivered, delivering, repeated, last_confirmation })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(key: &str) -> Pending {
        Pending {
            identity: Identity { fingerprint: vec![1, 2], ..Identity::new(key, 120) },
            message_id: Some(format!("{key}@example.org")),
            sha256: vec![7; 32],
            size: 118,
        }
    }

    #[test]
    fn a_delivery_is_journalled_before_and_held_after_without_a_body() {
        let dir = crate::store::private_tempdir();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let ids = store.ensure_account("Work").unwrap();
        let server = store.pop_server(ids.account, "pop.example:995/me").unwrap().id;
        let mut j = Journal::new(&store, ids, server, "LMTP 127.0.0.1:24 for a@b.example").unwrap();
        j.start(&[pending("u1"), pending("u2")]).unwrap();
        let open = j.unresolved().unwrap();
        assert_eq!(open.iter().map(|u| (u.uidl.as_str(), u.attempts)).collect::<Vec<_>>(), [("u1", 1), ("u2", 1)]);
        assert_eq!(j.recorded("u1").unwrap(), None, "not held before the target confirmed it");
        let stored = j.delivered(&[(pending("u1"), "250 2.0.0 Saved".into())]).unwrap();
        assert_eq!((stored[0].key.as_str(), stored[0].exact, stored[0].size), ("u1", true, 118));
        assert_eq!(j.recorded("u1").unwrap(), Some(Recorded { held: true, sha256: Some(vec![7; 32]) }));
        let known = store.known_uidls(server).unwrap();
        assert!(known["u1"].held() && known["u1"].body_id.is_none(), "held, with no body");
        assert_eq!(known["u1"].list_size, Some(120));
        // u2 again: its second attempt is counted.
        j.start(&[pending("u2")]).unwrap();
        assert_eq!(j.unresolved().unwrap()[0].attempts, 2);
        let s = store.journal_summary("Work").unwrap();
        assert_eq!((s.delivered, s.delivering, s.repeated), (1, 1, 1));
        assert_eq!(s.last_confirmation.as_deref(), Some("250 2.0.0 Saved"));
        // Gone from the server (pruned) and old: forgotten at the next open; while held: kept.
        let c = store.connection().unwrap();
        c.execute("UPDATE deliveries SET updated = updated - ?1", [FORGET_AFTER + 1]).unwrap();
        Journal::new(&store, ids, server, "x").unwrap();
        assert_eq!(store.journal_summary("Work").unwrap().delivered, 1, "u1 is still held");
        assert_eq!(store.journal_summary("Work").unwrap().delivering, 0, "u2 left the server long ago");
    }
}
