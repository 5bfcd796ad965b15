//! Account rows, their fetch status, and the POP state (which server messages are already stored).

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};

use super::{Store, create_mailbox, now};
use crate::error::{ErrorClass, Result};

/// Consecutive definite authentication failures after which an account is `disabled` (the seed:
/// a changed password disables the account until it is updated).
pub const AUTH_FAILURES_TO_DISABLE: i64 = 3;

#[derive(Debug, Clone, Copy)]
pub struct AccountIds {
    pub account: i64,
    pub mailbox: i64,
}

/// What the store knows about one server message identity.
#[derive(Debug, Clone, Copy)]
pub struct KnownUidl {
    pub first_seen: i64,
    /// The stored copy has left every local mailbox (for `when-deleted-locally`).
    pub local_deleted: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LastError {
    pub class: String,
    pub message: String,
}

/// One account as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccountStatus {
    pub name: String,
    pub state: String,
    pub mailbox: String,
    pub messages: i64,
    pub unseen: i64,
    pub last_fetch: Option<String>,
    pub last_attempt: Option<String>,
    pub next_fetch: Option<String>,
    pub last_error: Option<LastError>,
    pub server_messages: Option<i64>,
    pub server_bytes: Option<i64>,
    pub fetched_messages: i64,
    pub fetched_bytes: i64,
}

/// Facts from a successful cycle, for the status.
pub struct CycleFacts {
    pub server_messages: i64,
    pub server_bytes: i64,
    pub new_messages: i64,
    pub new_bytes: i64,
    pub capabilities: String,
}

pub fn rfc3339(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Store {
    /// The account's row and mailbox, created on first use. A mailbox of the same name that already
    /// exists (an account removed and added again) is taken over with its UIDVALIDITY and messages.
    pub fn ensure_account(&self, name: &str) -> Result<AccountIds> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let existing: Option<(i64, i64)> = tx
            .query_row("SELECT id, mailbox_id FROM accounts WHERE name = ?1", [name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some((account, mailbox)) = existing {
            return Ok(AccountIds { account, mailbox });
        }
        let mbox: Option<i64> = tx
            .query_row("SELECT id FROM mailboxes WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        let mailbox = match mbox {
            Some(id) => id,
            None => create_mailbox(&tx, name, None).map_err(|e| self.err(e))?,
        };
        tx.execute(
            "INSERT INTO accounts (name, mailbox_id, created_at) VALUES (?1, ?2, ?3)",
            params![name, mailbox, now()],
        )
        .map_err(|e| self.err(e))?;
        let account = tx.last_insert_rowid();
        tx.commit().map_err(|e| self.err(e))?;
        Ok(AccountIds { account, mailbox })
    }

    pub fn account_ids(&self, name: &str) -> Result<Option<AccountIds>> {
        let conn = self.lock();
        conn.query_row("SELECT id, mailbox_id FROM accounts WHERE name = ?1", [name], |r| {
            Ok(AccountIds { account: r.get(0)?, mailbox: r.get(1)? })
        })
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Every server message identity stored for the account.
    pub fn known_uidls(&self, account: i64) -> Result<HashMap<String, KnownUidl>> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached("SELECT uidl, first_seen, local_deleted FROM pop_uidls WHERE account_id = ?1")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([account], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    KnownUidl { first_seen: r.get(1)?, local_deleted: r.get::<_, i64>(2)? != 0 },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// Forgets the identities that are no longer on the server (after a QUIT the server confirmed).
    pub fn prune_uidls(&self, account: i64, on_server: &HashSet<String>) -> Result<usize> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let gone: Vec<String> = {
            let mut st =
                tx.prepare_cached("SELECT uidl FROM pop_uidls WHERE account_id = ?1").map_err(|e| self.err(e))?;
            let all = st.query_map([account], |r| r.get::<_, String>(0)).map_err(|e| self.err(e))?;
            let mut v = Vec::new();
            for u in all {
                let u = u.map_err(|e| self.err(e))?;
                if !on_server.contains(&u) {
                    v.push(u);
                }
            }
            v
        };
        for u in &gone {
            tx.execute("DELETE FROM pop_uidls WHERE account_id = ?1 AND uidl = ?2", params![account, u])
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(gone.len())
    }

    pub fn record_success(&self, account: i64, facts: &CycleFacts) -> Result<()> {
        let conn = self.lock();
        let t = now();
        conn.execute(
            "UPDATE accounts SET state = 'active', last_fetch = ?2, last_attempt = ?2, consecutive_failures = 0, auth_failures = 0,
                 last_error_class = NULL, last_error_message = NULL, last_error_at = NULL,
                 server_messages = ?3, server_bytes = ?4, fetched_messages = fetched_messages + ?5,
                 fetched_bytes = fetched_bytes + ?6, capabilities = ?7
             WHERE id = ?1",
            params![account, t, facts.server_messages, facts.server_bytes, facts.new_messages, facts.new_bytes, facts.capabilities],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records a failed cycle. Three definite authentication failures in a row, or a certificate
    /// error, make the account `disabled` (it needs the user); anything else is `backoff`.
    pub fn record_failure(&self, account: i64, class: ErrorClass, message: &str) -> Result<()> {
        let conn = self.lock();
        let t = now();
        let auth = i64::from(class == ErrorClass::Authentication);
        conn.execute(
            "UPDATE accounts SET last_attempt = ?2, last_error_at = ?2, last_error_class = ?3, last_error_message = ?4,
                 consecutive_failures = consecutive_failures + 1,
                 auth_failures = CASE WHEN ?5 = 1 THEN auth_failures + 1 ELSE 0 END,
                 state = CASE
                     WHEN ?5 = 1 AND auth_failures + 1 >= ?6 THEN 'disabled'
                     WHEN ?3 = 'certificate' THEN 'disabled'
                     ELSE 'backoff' END
             WHERE id = ?1",
            params![account, t, class.as_str(), message, auth, AUTH_FAILURES_TO_DISABLE],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Makes an account `active` again (after `account set-password`), keeping its last error for reference.
    pub fn reenable(&self, name: &str) -> Result<()> {
        let conn = self.lock();
        conn.execute(
            "UPDATE accounts SET state = 'active', auth_failures = 0, consecutive_failures = 0 WHERE name = ?1",
            [name],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn account_statuses(&self) -> Result<Vec<AccountStatus>> {
        let conn = self.lock();
        let mut st = conn
            .prepare(
                "SELECT a.name, a.state, m.name, m.messages, m.unseen, a.last_fetch, a.last_attempt, a.next_fetch,
                        a.last_error_class, a.last_error_message, a.server_messages, a.server_bytes,
                        a.fetched_messages, a.fetched_bytes
                 FROM accounts a JOIN mailboxes m ON m.id = a.mailbox_id ORDER BY a.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                let class: Option<String> = r.get(8)?;
                let message: Option<String> = r.get(9)?;
                Ok(AccountStatus {
                    name: r.get(0)?,
                    state: r.get(1)?,
                    mailbox: r.get(2)?,
                    messages: r.get(3)?,
                    unseen: r.get(4)?,
                    last_fetch: r.get::<_, Option<i64>>(5)?.map(rfc3339),
                    last_attempt: r.get::<_, Option<i64>>(6)?.map(rfc3339),
                    next_fetch: r.get::<_, Option<i64>>(7)?.map(rfc3339),
                    last_error: class.map(|class| LastError { class, message: message.unwrap_or_default() }),
                    server_messages: r.get(10)?,
                    server_bytes: r.get(11)?,
                    fetched_messages: r.get(12)?,
                    fetched_bytes: r.get(13)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }
}
