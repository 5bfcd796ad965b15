//! Outgoing mail (the outbox) and verified addresses.
//!
//! A submitted message is committed here before the client hears `250` (DESIGN §4): from then on
//! it is the queue worker's to deliver, retry, or — when it fails for good — turn into a notice in
//! the local INBOX. Nothing accepted is dropped.

use rusqlite::{OptionalExtension, params};

use super::{Store, now};
use crate::error::Result;
use crate::secret::ct_eq;

#[derive(Debug, Clone)]
pub struct Queued {
    pub id: i64,
    pub account: String,
    pub mail_from: String,
    pub rcpts: Vec<String>,
    pub raw: Vec<u8>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub created_at: i64,
    pub attempts: i64,
    /// Spooled: `raw` is the header block, and this many body bytes follow in the outbox's
    /// chunks (read them with [`Store::outbox_chunk`]); with 8-bit bytes among them or not.
    pub body: Option<(u64, bool)>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OutboxSummary {
    pub queued: i64,
    pub failed: i64,
    pub sent: i64,
    pub next_attempt: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Verification {
    pub address: String,
    pub account: String,
    pub verified: bool,
    pub expires_at: Option<i64>,
    pub tries: i64,
}

/// A stored code check.
pub enum CodeCheck {
    Verified,
    Wrong { tries_left: i64 },
    Expired,
    TooManyTries,
    NotPending,
}

/// Most wrong codes before a verification must be started again.
pub const MAX_CODE_TRIES: i64 = 5;

fn code_hash(salt: &[u8], code: &str) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(salt);
    ctx.update(code.as_bytes());
    ctx.finish().as_ref().to_vec()
}

impl Store {
    /// Commits a submitted message to the outbox (durably) and returns its id.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(
        &self,
        account: &str,
        mail_from: &str,
        rcpts: &[String],
        raw: &[u8],
        message_id: Option<&str>,
        subject: Option<&str>,
    ) -> Result<i64> {
        let conn = self.lock();
        let t = now();
        conn.execute(
            "INSERT INTO outbox (account, mail_from, rcpts, raw, message_id, subject, created_at, next_attempt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![account, mail_from, rcpts.join("\n"), raw, message_id, subject, t],
        )
        .map_err(|e| self.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Queued messages due at `now` (unix seconds; the queue's clock), oldest first.
    pub fn due(&self, limit: usize, now: i64) -> Result<Vec<Queued>> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached(
                "SELECT id, account, mail_from, rcpts, raw, message_id, subject, created_at, attempts, body_size, body_8bit
                 FROM outbox WHERE state = 'queued' AND next_attempt <= ?1 ORDER BY next_attempt, id LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![now, limit as i64], |r| {
                let rcpts: String = r.get(3)?;
                Ok(Queued {
                    id: r.get(0)?,
                    account: r.get(1)?,
                    mail_from: r.get(2)?,
                    rcpts: rcpts.lines().filter(|l| !l.is_empty()).map(str::to_string).collect(),
                    raw: r.get(4)?,
                    message_id: r.get(5)?,
                    subject: r.get(6)?,
                    created_at: r.get(7)?,
                    attempts: r.get(8)?,
                    body: r.get::<_, Option<i64>>(9)?.map(|n| (n.max(0) as u64, r.get::<_, i64>(10).unwrap_or(0) != 0)),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// When the next queued message is due (unix seconds).
    pub fn next_due(&self) -> Result<Option<i64>> {
        let conn = self.lock();
        conn.query_row("SELECT min(next_attempt) FROM outbox WHERE state = 'queued'", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Delivered to every remaining recipient: the body is dropped, the row kept as a record.
    pub fn outbox_sent(&self, id: i64) -> Result<()> {
        let conn = self.lock();
        conn.execute(
            "UPDATE outbox SET state = 'sent', done_at = ?2, raw = x'', rcpts = '', last_error = NULL WHERE id = ?1",
            params![id, now()],
        )
        .map_err(|e| self.err(e))?;
        conn.execute("DELETE FROM outbox_chunks WHERE outbox_id = ?1", [id]).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Some recipients remain (refused for now): retry them at `next`.
    pub fn outbox_retry(&self, id: i64, rcpts: &[String], next: i64, error: &str) -> Result<()> {
        let conn = self.lock();
        conn.execute(
            "UPDATE outbox SET rcpts = ?2, next_attempt = ?3, attempts = attempts + 1, last_error = ?4 WHERE id = ?1",
            params![id, rcpts.join("\n"), next, error],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Given up: a notice has been written; the row stays (without its body) for `status`.
    pub fn outbox_failed(&self, id: i64, error: &str) -> Result<()> {
        let conn = self.lock();
        conn.execute(
            "UPDATE outbox SET state = 'failed', done_at = ?2, raw = x'', last_error = ?3, attempts = attempts + 1 WHERE id = ?1",
            params![id, now(), error],
        )
        .map_err(|e| self.err(e))?;
        conn.execute("DELETE FROM outbox_chunks WHERE outbox_id = ?1", [id]).map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn outbox_summary(&self) -> Result<OutboxSummary> {
        let conn = self.lock();
        let count = |state: &str| -> rusqlite::Result<i64> {
            conn.query_row("SELECT count(*) FROM outbox WHERE state = ?1", [state], |r| r.get(0))
        };
        let next: Option<i64> = conn
            .query_row("SELECT min(next_attempt) FROM outbox WHERE state = 'queued'", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let last_error: Option<String> = conn
            .query_row("SELECT last_error FROM outbox WHERE last_error IS NOT NULL AND state != 'sent' ORDER BY id DESC LIMIT 1", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?
            .flatten();
        Ok(OutboxSummary {
            queued: count("queued").map_err(|e| self.err(e))?,
            failed: count("failed").map_err(|e| self.err(e))?,
            sent: count("sent").map_err(|e| self.err(e))?,
            next_attempt: next.map(super::accounts::rfc3339),
            last_error,
        })
    }

    /// Starts spooling a submission whose body is too large to hold (state 'receiving', invisible
    /// to the queue and to `status` until [`Store::outbox_spool_commit`]). Not durable yet: nothing
    /// was acknowledged.
    pub fn outbox_spool_start(&self, account: &str, mail_from: &str, rcpts: &[String]) -> Result<i64> {
        let conn = self.lock();
        let t = now();
        conn.execute(
            "INSERT INTO outbox (account, mail_from, rcpts, raw, created_at, next_attempt, state, body_size)
             VALUES (?1, ?2, ?3, x'', ?4, ?4, 'receiving', 0)",
            params![account, mail_from, rcpts.join("\n"), t],
        )
        .map_err(|e| self.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Chunk `seq` of a spooled submission's body. Not synced on its own: the commit that queues
    /// the message syncs the write-ahead log this is in (WAL frames are synced in order, and a
    /// checkpoint syncs before it copies), so nothing is acknowledged that is not on disk.
    pub fn outbox_spool_chunk(&self, id: i64, seq: i64, data: &[u8]) -> Result<()> {
        let conn = self.lock();
        let r = conn.pragma_update(None, "synchronous", "NORMAL").and_then(|_| {
            conn.prepare_cached("INSERT INTO outbox_chunks (outbox_id, seq, data) VALUES (?1, ?2, ?3)")?
                .execute(params![id, seq, data])
        });
        let back = conn.pragma_update(None, "synchronous", "FULL");
        r.map(|_| ()).and(back).map_err(|e| self.err(e))
    }

    /// Commits a spooled submission: its header block as it will be relayed, its body's size and
    /// 8-bitness; from now on it is queued (durably: `synchronous = FULL`, which also syncs every
    /// chunk written before it).
    pub fn outbox_spool_commit(
        &self,
        id: i64,
        head: &[u8],
        body: (u64, bool),
        message_id: Option<&str>,
        subject: Option<&str>,
    ) -> Result<()> {
        let conn = self.lock();
        let t = now();
        let n = conn
            .execute(
                "UPDATE outbox SET raw = ?2, body_size = ?3, body_8bit = ?4, message_id = ?5, subject = ?6,
                 created_at = ?7, next_attempt = ?7, state = 'queued' WHERE id = ?1 AND state = 'receiving'",
                params![id, head, body.0 as i64, body.1 as i64, message_id, subject, t],
            )
            .map_err(|e| self.err(e))?;
        if n != 1 {
            return Err(crate::Error::other(format!("spooled message {id} vanished before it was committed")));
        }
        Ok(())
    }

    /// Drops a submission that is not accepted after all (refused, or the client went away), or
    /// every one left 'receiving' by a daemon that died in the middle (`None`).
    pub fn outbox_spool_discard(&self, id: Option<i64>) -> Result<()> {
        let conn = self.lock();
        let r = match id {
            Some(id) => conn
                .execute("DELETE FROM outbox_chunks WHERE outbox_id = ?1", [id])
                .and_then(|_| conn.execute("DELETE FROM outbox WHERE id = ?1 AND state = 'receiving'", [id])),
            None => conn
                .execute(
                    "DELETE FROM outbox_chunks WHERE outbox_id IN (SELECT id FROM outbox WHERE state = 'receiving')",
                    [],
                )
                .and_then(|_| conn.execute("DELETE FROM outbox WHERE state = 'receiving'", [])),
        };
        r.map(|_| ()).map_err(|e| self.err(e))
    }

    /// Chunk `seq` (from 0) of a spooled message's body; None after the last.
    pub fn outbox_chunk(&self, id: i64, seq: i64) -> Result<Option<Vec<u8>>> {
        let conn = self.lock();
        conn.prepare_cached("SELECT data FROM outbox_chunks WHERE outbox_id = ?1 AND seq = ?2")
            .and_then(|mut st| st.query_row(params![id, seq], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))
    }

    /// Files a message the bridge wrote itself (a bounce, an account notice) in a local mailbox,
    /// unread, and tells IMAP sessions.
    pub fn deliver_local(&self, mailbox: &str, raw: &[u8], flags: u8) -> Result<u32> {
        let meta = crate::mime::MessageMeta::extract(raw);
        let date = meta.internal_date(now());
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let id: i64 = match tx
            .query_row("SELECT id FROM mailboxes WHERE name = ?1", [mailbox], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?
        {
            Some(id) => id,
            None => {
                let special = mailbox
                    .rsplit_once('/')
                    .and_then(|(_, leaf)| super::SPECIAL.iter().find(|(n, _)| *n == leaf).map(|(_, a)| *a));
                super::create_mailbox(&tx, mailbox, special).map_err(|e| self.err(e))?
            }
        };
        let uid = super::imap::append(&tx, id, raw, &meta, flags, &[], date).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        super::guard::advance(&self.path, &conn)?;
        drop(conn);
        self.notify();
        Ok(uid)
    }

    // ----- verification -----

    /// Starts (or restarts) verifying an address: stores the code's salted hash, valid until `expires_at`.
    pub fn verification_start(&self, address: &str, account: &str, code: &str, expires_at: i64) -> Result<()> {
        use ring::rand::SecureRandom;
        let mut salt = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| crate::Error::other("the system random generator failed"))?;
        let hash = code_hash(&salt, code);
        let conn = self.lock();
        conn.execute(
            "INSERT INTO verifications (address, account, code_hash, salt, sent_at, expires_at, tries) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
             ON CONFLICT(address) DO UPDATE SET account = ?2, code_hash = ?3, salt = ?4, sent_at = ?5, expires_at = ?6, tries = 0",
            params![address, account, hash, salt.to_vec(), now(), expires_at],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Checks a code; a right one verifies the address, wrong ones are counted.
    pub fn verification_check(&self, address: &str, code: &str) -> Result<CodeCheck> {
        let conn = self.lock();
        check_code(&conn, address, code).map_err(|e| self.err(e))
    }

    pub fn is_verified(&self, address: &str) -> Result<bool> {
        let conn = self.lock();
        conn.query_row("SELECT verified_at IS NOT NULL FROM verifications WHERE address = ?1", [address], |r| r.get(0))
            .optional()
            .map(|o| o.unwrap_or(false))
            .map_err(|e| self.err(e))
    }

    pub fn verifications(&self) -> Result<Vec<Verification>> {
        let conn = self.lock();
        let mut st = conn
            .prepare("SELECT address, account, verified_at IS NOT NULL, expires_at, tries FROM verifications ORDER BY address")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(Verification {
                    address: r.get(0)?,
                    account: r.get(1)?,
                    verified: r.get(2)?,
                    expires_at: r.get(3)?,
                    tries: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }
}

/// The code check on a connection (the fetch path calls it inside its own transaction).
pub fn check_code(conn: &rusqlite::Connection, address: &str, code: &str) -> rusqlite::Result<CodeCheck> {
    type Pending = (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>, i64);
    let row: Option<Pending> = conn
        .query_row("SELECT code_hash, salt, expires_at, tries FROM verifications WHERE address = ?1", [address], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((Some(hash), Some(salt), Some(expires), tries)) = row else { return Ok(CodeCheck::NotPending) };
    if tries >= MAX_CODE_TRIES {
        return Ok(CodeCheck::TooManyTries);
    }
    if now() > expires {
        return Ok(CodeCheck::Expired);
    }
    if ct_eq(&code_hash(&salt, code.trim()), &hash) {
        conn.execute(
            "UPDATE verifications SET verified_at = ?2, code_hash = NULL, salt = NULL WHERE address = ?1",
            params![address, now()],
        )?;
        Ok(CodeCheck::Verified)
    } else {
        conn.execute("UPDATE verifications SET tries = tries + 1 WHERE address = ?1", [address])?;
        Ok(CodeCheck::Wrong { tries_left: MAX_CODE_TRIES - tries - 1 })
    }
}

/// A verification mail fetched back: `X-Popbridge-Verify: address code` in its header confirms it.
/// The field is read unfolded: a server on the way may have folded it between address and code.
pub fn auto_confirm(conn: &rusqlite::Connection, raw: &[u8]) -> rusqlite::Result<bool> {
    use crate::mime::header;
    // `smtp::notice::VERIFY_HEADER`, which writes it (the store does not import from smtp).
    const NAME: &str = "X-Popbridge-Verify";
    for f in header::fields(raw).filter(|f| f.is(raw, NAME)) {
        let value = header::text(&raw[f.value]);
        if let Some((address, code)) = value.trim().split_once(' ') {
            return Ok(matches!(check_code(conn, address.trim(), code.trim())?, CodeCheck::Verified));
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_verify_once_and_wrong_ones_are_counted() {
        let dir = crate::store::private_tempdir();
        let s = Store::open(&dir.path().join("s.sqlite")).unwrap();
        s.verification_start("desk@work.example", "Work", "12345678", now() + 3600).unwrap();
        assert!(!s.is_verified("DESK@work.example").unwrap());
        assert!(matches!(
            s.verification_check("desk@work.example", "00000000").unwrap(),
            CodeCheck::Wrong { tries_left: 4 }
        ));
        assert!(matches!(s.verification_check("Desk@Work.example", " 12345678 ").unwrap(), CodeCheck::Verified));
        assert!(s.is_verified("desk@work.example").unwrap());
        assert!(matches!(s.verification_check("desk@work.example", "12345678").unwrap(), CodeCheck::NotPending));
        s.verification_start("x@y.example", "Work", "1", now() - 1).unwrap();
        assert!(matches!(s.verification_check("x@y.example", "1").unwrap(), CodeCheck::Expired));
        s.verification_start("z@y.example", "Work", "1", now() + 60).unwrap();
        for _ in 0..5 {
            s.verification_check("z@y.example", "2").unwrap();
        }
        assert!(matches!(s.verification_check("z@y.example", "1").unwrap(), CodeCheck::TooManyTries));
    }

    #[test]
    fn a_verification_mail_confirms_its_address_also_when_folded() {
        let dir = crate::store::private_tempdir();
        let s = Store::open(&dir.path().join("s.sqlite")).unwrap();
        s.verification_start("desk@work.example", "Work", "12345678", now() + 3600).unwrap();
        s.verification_start("home@work.example", "Work", "87654321", now() + 3600).unwrap();
        let confirm = |raw: &[u8]| auto_confirm(&s.lock(), raw).unwrap();
        assert!(!confirm(b"Subject: x\r\n\r\nX-Popbridge-Verify: desk@work.example 12345678\r\n"), "not in the body");
        assert!(!confirm(b"X-Popbridge-Verify: desk@work.example 00000000\r\n\r\n"));
        assert!(confirm(b"Subject: x\r\nx-popbridge-verify: desk@work.example 12345678\r\n\r\nbody\r\n"));
        // Folded between the address and the code (RFC 5322 §2.2.3): the old reader took the
        // first line alone and never confirmed.
        assert!(confirm(b"X-Popbridge-Verify: home@work.example\r\n 87654321\r\n\r\n"));
        assert!(s.is_verified("home@work.example").unwrap());
    }

    #[test]
    fn the_outbox_keeps_what_it_accepted() {
        let dir = crate::store::private_tempdir();
        let s = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let id = s
            .enqueue(
                "Work",
                "me@work.example",
                &["a@x.example".into(), "b@x.example".into()],
                b"raw\r\n",
                Some("<m@x>"),
                Some("hi"),
            )
            .unwrap();
        let due = s.due(10, now()).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].rcpts, vec!["a@x.example", "b@x.example"]);
        s.outbox_retry(id, &["b@x.example".into()], now() + 60, "451 later").unwrap();
        assert!(s.due(10, now()).unwrap().is_empty());
        assert_eq!(s.due(10, now() + 60).unwrap().len(), 1, "due at its time");
        assert_eq!(s.outbox_summary().unwrap().queued, 1);
        s.outbox_sent(id).unwrap();
        assert_eq!(s.outbox_summary().unwrap().sent, 1);
        let uid = s
            .deliver_local("INBOX", b"From: popbridge <postmaster@localhost>\r\nSubject: notice\r\n\r\nbody\r\n", 0)
            .unwrap();
        assert_eq!(uid, 1);
        assert_eq!(s.mailbox_messages("INBOX").unwrap(), Some(1));
    }
}
