//! Account rows, their fetch status, and the POP state (which server messages are already stored).

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, TransactionBehavior, params};

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
#[derive(Debug, Clone)]
pub struct KnownUidl {
    pub first_seen: i64,
    /// The stored copy has left every local mailbox (for `when-deleted-locally`).
    pub local_deleted: bool,
    /// Bytes stored for it.
    pub size: u64,
    /// What LIST said when it was stored (`None`: stored before popbridge recorded it).
    pub list_size: Option<u64>,
    /// Its header fingerprint (`fetch::keys::header_fingerprint`; `None`: stored before it was
    /// recorded — the body's own headers then tell, while it is still stored).
    pub fingerprint: Option<Vec<u8>>,
    /// RETR's answer was about LIST's size: the stored bytes are that message (see `fetch`).
    pub exact: bool,
    pub body_id: Option<i64>,
    /// `None`: fetched by popbridge, which holds (or held) the message. `Some`: known on the
    /// server but never downloaded by popbridge — never downloaded again while LIST gives it the
    /// recorded size, and never DELEted under any policy.
    pub origin: Option<Origin>,
}

impl KnownUidl {
    /// Whether popbridge downloaded this message itself (only then may a policy DELE it).
    pub fn held(&self) -> bool {
        self.origin.is_none()
    }
}

/// Which tool's state an imported identity came from (`account import-state --from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    Mpop,
    Getmail,
    Fetchmail,
    Thunderbird,
}

impl Tool {
    pub const ALL: [Tool; 4] = [Tool::Mpop, Tool::Getmail, Tool::Fetchmail, Tool::Thunderbird];

    /// The name on the command line and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Mpop => "mpop",
            Tool::Getmail => "getmail",
            Tool::Fetchmail => "fetchmail",
            Tool::Thunderbird => "thunderbird",
        }
    }

    pub fn parse(s: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Why the store knows a server message that popbridge never downloaded (`pop_uidls.origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Another tool had fetched it already (`account import-state`): stored as "imported TOOL".
    Imported(Tool),
    /// Left out by a bounded first import (`--since`, `--newest`, `--from-now-on`): "skipped".
    Skipped,
    /// A copy of a message held already, not filed (`duplicates = "hide"`) and not stored because
    /// its bytes differ from the held copy's: "duplicate".
    Duplicate,
}

impl Origin {
    pub fn to_text(self) -> String {
        match self {
            Origin::Imported(t) => format!("imported {}", t.as_str()),
            Origin::Skipped => "skipped".to_string(),
            Origin::Duplicate => "duplicate".to_string(),
        }
    }

    /// The stored text; `None` for text this version does not know (then treated as not held:
    /// never DELEted — the safe reading of a row a newer popbridge wrote).
    pub fn parse(s: &str) -> Option<Origin> {
        match s.split_once(' ') {
            Some(("imported", t)) => Tool::parse(t).map(Origin::Imported),
            None if s == "skipped" => Some(Origin::Skipped),
            None if s == "duplicate" => Some(Origin::Duplicate),
            _ => None,
        }
    }

    /// For messages: "imported from mpop", "skipped by a bounded first import".
    pub fn describe(self) -> String {
        match self {
            Origin::Imported(t) => format!("imported from {}", t.as_str()),
            Origin::Skipped => "skipped by a bounded first import".to_string(),
            Origin::Duplicate => "hidden as a copy of a message held already (duplicates = \"hide\")".to_string(),
        }
    }
}

/// An identity on the server that popbridge does not hold, as [`Store::record_not_held`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotHeld {
    pub uidl: String,
    /// What LIST says its size is.
    pub list_size: u64,
    /// Its header fingerprint from `TOP n 0` (`fetch::keys::header_fingerprint`); empty when the
    /// server has no TOP — the identity then cannot be verified where the server is in doubt.
    pub fingerprint: Vec<u8>,
}

/// What [`Store::record_not_held`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// New identities written.
    pub added: usize,
    /// Identities the store knew already (fetched by popbridge, or recorded before): unchanged.
    pub known: usize,
}

/// One upstream mailbox's POP state record (DESIGN §4: the state belongs to host, port and
/// user, never to an account's name).
#[derive(Debug, Clone, Copy)]
pub struct PopServer {
    pub id: i64,
    /// The server was seen giving a known UIDL to another message.
    pub reused: bool,
    /// The last session ended before the server confirmed its QUIT: the deletions may or may
    /// not have happened, and numbers and UIDLs may have moved since.
    pub unsure_quit: bool,
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
    /// Copies of messages held already that this account fetched (`duplicates`), and of those
    /// the ones not filed (`hide`).
    pub duplicates_seen: i64,
    pub duplicates_hidden: i64,
    /// A fetch in progress: messages and bytes done and expected, and an estimate of the time left.
    pub progress: Option<FetchProgress>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FetchProgress {
    pub done: i64,
    pub total: i64,
    pub bytes: i64,
    pub total_bytes: i64,
    pub eta_seconds: Option<i64>,
}

/// An account's fetch health, for the scheduler.
#[derive(Debug, Clone)]
pub struct Health {
    pub state: String,
    pub last_attempt: Option<i64>,
    pub last_fetch: Option<i64>,
    pub consecutive_failures: i64,
    pub failing_since: Option<i64>,
    pub notified: String,
    pub login_delay: Option<i64>,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    pub disabled_reason: Option<String>,
}

/// Facts from a successful cycle, for the status.
pub struct CycleFacts {
    pub login_delay: Option<i64>,
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
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
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

    /// The POP state record of the upstream mailbox `key` (`host:port/user`), fetched by
    /// `account`; created on first use. State kept from before schema 7 (keyed by the account)
    /// is claimed by that account's first fetch, which is assumed to be of the same mailbox.
    pub fn pop_server(&self, account: i64, key: &str) -> Result<PopServer> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let (found, _) = self.pop_server_in(&tx, account, key)?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(found)
    }

    /// Whether `account` has no POP state for the upstream mailbox `key` yet (no record under
    /// that key, and none from before schema 8 for it to claim): its next fetch is its first one,
    /// where a bounded first import applies.
    pub fn is_first_fetch(&self, account: i64, key: &str) -> Result<bool> {
        let conn = self.lock();
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM pop_servers WHERE key = ?1 OR (key IS NULL AND account_id = ?2)",
                params![key, account],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 0)
    }

    /// [`Store::pop_server`] for a bounded first import: the record is created together with the
    /// identities the import leaves on the server (`skipped`, recorded [`Origin::Skipped`]), in one
    /// transaction — so a fetch killed at any point either finds no state (and chooses again) or
    /// finds both. When the record exists already (another process made it meanwhile), nothing is
    /// recorded and `None` is returned with it.
    pub fn first_pop_server(
        &self,
        account: i64,
        key: &str,
        skipped: &[NotHeld],
    ) -> Result<(PopServer, Option<Recorded>)> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let (found, created) = self.pop_server_in(&tx, account, key)?;
        let done = if created { Some(self.insert_not_held(&tx, found.id, Origin::Skipped, skipped)?) } else { None };
        let changed = done.is_some_and(|d| d.added > 0);
        if changed {
            super::guard::bump(&tx).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        if changed {
            super::guard::advance(self.path(), &conn)?;
        }
        Ok((found, done))
    }

    /// The record of `key` within `tx` (see [`Store::pop_server`]), and whether it was created now.
    fn pop_server_in(&self, tx: &rusqlite::Transaction<'_>, account: i64, key: &str) -> Result<(PopServer, bool)> {
        let row = |tx: &rusqlite::Transaction<'_>, sql: &str, arg: &dyn rusqlite::ToSql| {
            tx.query_row(sql, [arg], |r| {
                Ok(PopServer { id: r.get(0)?, reused: r.get::<_, i64>(1)? != 0, unsure_quit: r.get::<_, i64>(2)? != 0 })
            })
            .optional()
        };
        const COLS: &str = "SELECT id, reused, unsure_quit FROM pop_servers";
        let mut created = false;
        let found = match row(tx, &format!("{COLS} WHERE key = ?1"), &key).map_err(|e| self.err(e))? {
            Some(s) => s,
            None => match row(tx, &format!("{COLS} WHERE key IS NULL AND account_id = ?1"), &account)
                .map_err(|e| self.err(e))?
            {
                Some(s) => {
                    tx.execute("UPDATE pop_servers SET key = ?2 WHERE id = ?1", params![s.id, key])
                        .map_err(|e| self.err(e))?;
                    s
                }
                None => {
                    tx.execute(
                        "INSERT INTO pop_servers (key, account_id, created_at) VALUES (?1, ?2, ?3)",
                        params![key, account, now()],
                    )
                    .map_err(|e| self.err(e))?;
                    created = true;
                    PopServer { id: tx.last_insert_rowid(), reused: false, unsure_quit: false }
                }
            },
        };
        tx.execute(
            "UPDATE pop_servers SET account_id = ?2 WHERE id = ?1 AND account_id IS NOT ?2",
            params![found.id, account],
        )
        .map_err(|e| self.err(e))?;
        Ok((found, created))
    }

    /// The POP state record of an upstream mailbox, if popbridge ever fetched it.
    pub fn find_pop_server(&self, key: &str) -> Result<Option<PopServer>> {
        let conn = self.lock();
        conn.query_row("SELECT id, reused, unsure_quit FROM pop_servers WHERE key = ?1", [key], |r| {
            Ok(PopServer { id: r.get(0)?, reused: r.get::<_, i64>(1)? != 0, unsure_quit: r.get::<_, i64>(2)? != 0 })
        })
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Records what a session learnt about the server: it reuses UIDLs (sticky), and whether its
    /// QUIT was confirmed.
    pub fn note_pop_server(&self, server: i64, reused: bool, unsure_quit: bool) -> Result<()> {
        let conn = self.lock();
        conn.execute(
            "UPDATE pop_servers SET reused = reused OR ?2, unsure_quit = ?3 WHERE id = ?1",
            params![server, reused, unsure_quit],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every message identity stored for the upstream mailbox.
    pub fn known_uidls(&self, server: i64) -> Result<HashMap<String, KnownUidl>> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached(
                "SELECT uidl, first_seen, local_deleted, size, list_size, fingerprint, exact, body_id, origin
                 FROM pop_uidls WHERE server_id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([server], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    KnownUidl {
                        first_seen: r.get(1)?,
                        local_deleted: r.get::<_, i64>(2)? != 0,
                        size: r.get::<_, i64>(3)?.max(0) as u64,
                        list_size: r.get::<_, Option<i64>>(4)?.map(|s| s.max(0) as u64),
                        fingerprint: r.get(5)?,
                        exact: r.get::<_, i64>(6)? != 0,
                        body_id: r.get(7)?,
                        // Text this version does not know is read as not held (never DELEted).
                        origin: r.get::<_, Option<String>>(8)?.map(|o| Origin::parse(&o).unwrap_or(Origin::Skipped)),
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// Records identities that are on the server but that popbridge does not hold (`origin`):
    /// identities the caller matched against the server's current listing. An
    /// identity the store knows already is left as it is (so running an import twice changes
    /// nothing, and nothing popbridge fetched itself is ever turned into "not held"). One
    /// transaction, counted in the store's guard like every write of POP state.
    pub fn record_not_held(&self, server: i64, origin: Origin, entries: &[NotHeld]) -> Result<Recorded> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let done = self.insert_not_held(&tx, server, origin, entries)?;
        if done.added > 0 {
            super::guard::bump(&tx).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        if done.added > 0 {
            super::guard::advance(self.path(), &conn)?;
        }
        Ok(done)
    }

    /// `record_not_held`'s rows, within `tx` (the caller bumps the guard when any was added).
    fn insert_not_held(
        &self,
        tx: &rusqlite::Transaction<'_>,
        server: i64,
        origin: Origin,
        entries: &[NotHeld],
    ) -> Result<Recorded> {
        let mut done = Recorded::default();
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO pop_uidls (server_id, uidl, first_seen, body_id, size, list_size, fingerprint, exact, origin)
                     VALUES (?1, ?2, ?3, NULL, 0, ?4, ?5, 1, ?6)",
                )
                .map_err(|e| self.err(e))?;
            let (t, text) = (now(), origin.to_text());
            for e in entries {
                let fp = (!e.fingerprint.is_empty()).then_some(&e.fingerprint);
                match st.execute(params![server, e.uidl, t, e.list_size as i64, fp, text]).map_err(|e| self.err(e))? {
                    0 => done.known += 1,
                    _ => done.added += 1,
                }
            }
        }
        Ok(done)
    }

    /// The start of a stored body (at most 64 KiB: its headers), to fingerprint identities stored
    /// before fingerprints were recorded.
    pub fn body_head(&self, body: i64) -> Result<Option<Vec<u8>>> {
        let conn = self.lock();
        conn.query_row("SELECT substr(raw, 1, 65536) FROM bodies WHERE id = ?1", [body], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Forgets the identities that are no longer on the server (after a QUIT the server confirmed).
    pub fn prune_uidls(&self, server: i64, on_server: &HashSet<String>) -> Result<usize> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let gone: Vec<String> = {
            let mut st =
                tx.prepare_cached("SELECT uidl FROM pop_uidls WHERE server_id = ?1").map_err(|e| self.err(e))?;
            let all = st.query_map([server], |r| r.get::<_, String>(0)).map_err(|e| self.err(e))?;
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
            tx.execute("DELETE FROM pop_uidls WHERE server_id = ?1 AND uidl = ?2", params![server, u])
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
                 last_error_class = NULL, last_error_message = NULL, last_error_at = NULL, failing_since = NULL,
                 disabled_reason = NULL, login_delay = ?8,
                 server_messages = ?3, server_bytes = ?4, fetched_messages = fetched_messages + ?5,
                 fetched_bytes = fetched_bytes + ?6, capabilities = ?7
             WHERE id = ?1",
            params![
                account,
                t,
                facts.server_messages,
                facts.server_bytes,
                facts.new_messages,
                facts.new_bytes,
                facts.capabilities,
                facts.login_delay
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records a failed cycle. Three definite authentication failures in a row, a certificate
    /// error, or a failure that says so (`disable`: an OAuth grant the provider revoked, with
    /// that reason) make the account `disabled` (it needs the user); anything else is `backoff`.
    pub fn record_failure(&self, account: i64, class: ErrorClass, message: &str, disable: Option<&str>) -> Result<()> {
        let conn = self.lock();
        let t = now();
        let auth = i64::from(class == ErrorClass::Authentication);
        conn.execute(
            "UPDATE accounts SET last_attempt = ?2, last_error_at = ?2, last_error_class = ?3, last_error_message = ?4,
                 consecutive_failures = consecutive_failures + 1,
                 failing_since = coalesce(failing_since, ?2),
                 auth_failures = CASE WHEN ?5 = 1 THEN auth_failures + 1 ELSE 0 END,
                 disabled_reason = CASE
                     WHEN ?7 IS NOT NULL THEN ?7
                     WHEN ?5 = 1 AND auth_failures + 1 >= ?6 THEN 'authentication'
                     WHEN ?3 = 'certificate' THEN 'certificate'
                     ELSE disabled_reason END,
                 state = CASE
                     WHEN ?7 IS NOT NULL THEN 'disabled'
                     WHEN ?5 = 1 AND auth_failures + 1 >= ?6 THEN 'disabled'
                     WHEN ?3 = 'certificate' THEN 'disabled'
                     WHEN state = 'disabled' THEN 'disabled'
                     ELSE 'backoff' END
             WHERE id = ?1",
            params![account, t, class.as_str(), message, auth, AUTH_FAILURES_TO_DISABLE, disable],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Makes an account `active` again (after `account set-password`), keeping its last error for reference.
    pub fn reenable(&self, name: &str) -> Result<()> {
        let conn = self.lock();
        conn.execute(
            "UPDATE accounts SET state = 'active', auth_failures = 0, consecutive_failures = 0, disabled_reason = NULL WHERE name = ?1",
            [name],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// What the scheduler needs to decide when to fetch and which notice to write.
    pub fn health(&self, account: i64) -> Result<Health> {
        let conn = self.lock();
        conn.query_row(
            "SELECT state, last_attempt, last_fetch, consecutive_failures, failing_since, notified, login_delay,
                    last_error_class, last_error_message, disabled_reason
             FROM accounts WHERE id = ?1",
            [account],
            |r| {
                Ok(Health {
                    state: r.get(0)?,
                    last_attempt: r.get(1)?,
                    last_fetch: r.get(2)?,
                    consecutive_failures: r.get(3)?,
                    failing_since: r.get(4)?,
                    notified: r.get(5)?,
                    login_delay: r.get(6)?,
                    error_class: r.get(7)?,
                    error_message: r.get(8)?,
                    disabled_reason: r.get(9)?,
                })
            },
        )
        .map_err(|e| self.err(e))
    }

    pub fn set_notified(&self, account: i64, what: &str) -> Result<()> {
        let conn = self.lock();
        conn.execute("UPDATE accounts SET notified = ?2 WHERE id = ?1", params![account, what])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn set_next_fetch(&self, account: i64, at: Option<i64>) -> Result<()> {
        let conn = self.lock();
        conn.execute("UPDATE accounts SET next_fetch = ?2 WHERE id = ?1", params![account, at])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A fetch in progress (the first import of a big mailbox takes a while): `None` clears it.
    pub fn set_progress(&self, account: i64, p: Option<(u64, u64, u64, u64)>) -> Result<()> {
        let conn = self.lock();
        match p {
            Some((done, total, bytes, total_bytes)) => conn.execute(
                "UPDATE accounts SET progress_done = ?2, progress_total = ?3, progress_bytes = ?4, progress_total_bytes = ?5,
                     progress_started = coalesce(progress_started, ?6) WHERE id = ?1",
                params![account, done as i64, total as i64, bytes as i64, total_bytes as i64, now()],
            ),
            None => conn.execute(
                "UPDATE accounts SET progress_done = NULL, progress_total = NULL, progress_bytes = NULL,
                     progress_total_bytes = NULL, progress_started = NULL WHERE id = ?1",
                [account],
            ),
        }
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records the account's settings; if they changed (a new password, certificate, CA or pin),
    /// an account disabled by failed logins or a certificate gets another chance. Returns whether
    /// the account should be tried again now: its settings changed after it was disabled, or after
    /// a failure (`account set-password` enables it before the daemon reloads, keeping the error).
    pub fn reconcile_config(&self, account: i64, hash: &str) -> Result<bool> {
        let conn = self.lock();
        let (old, state, failed): (Option<String>, String, bool) = conn
            .query_row(
                "SELECT config_hash, state, last_error_class IS NOT NULL FROM accounts WHERE id = ?1",
                [account],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| self.err(e))?;
        if old.as_deref() == Some(hash) {
            return Ok(false);
        }
        let reenable = old.is_some() && state == "disabled";
        let retry = old.is_some() && (reenable || failed);
        conn.execute(
            "UPDATE accounts SET config_hash = ?2,
                 state = CASE WHEN ?3 THEN 'active' ELSE state END,
                 auth_failures = CASE WHEN ?3 THEN 0 ELSE auth_failures END,
                 disabled_reason = CASE WHEN ?3 THEN NULL ELSE disabled_reason END
             WHERE id = ?1",
            params![account, hash, reenable],
        )
        .map_err(|e| self.err(e))?;
        Ok(retry)
    }

    pub fn account_statuses(&self) -> Result<Vec<AccountStatus>> {
        let conn = self.lock();
        let mut st = conn
            .prepare(
                "SELECT a.name, a.state, m.name, m.messages, m.unseen, a.last_fetch, a.last_attempt, a.next_fetch,
                        a.last_error_class, a.last_error_message, a.server_messages, a.server_bytes,
                        a.fetched_messages, a.fetched_bytes, a.progress_done, a.progress_total, a.progress_bytes,
                        a.progress_total_bytes, a.progress_started, a.duplicates_seen, a.duplicates_hidden
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
                    duplicates_seen: r.get(19)?,
                    duplicates_hidden: r.get(20)?,
                    progress: match (r.get::<_, Option<i64>>(14)?, r.get::<_, Option<i64>>(15)?) {
                        (Some(done), Some(total)) => {
                            let bytes: i64 = r.get::<_, Option<i64>>(16)?.unwrap_or(0);
                            let total_bytes: i64 = r.get::<_, Option<i64>>(17)?.unwrap_or(0);
                            let started: Option<i64> = r.get(18)?;
                            let eta_seconds = started.and_then(|s| {
                                let elapsed = (now() - s).max(1);
                                (bytes > 0).then(|| (total_bytes - bytes).max(0) * elapsed / bytes)
                            });
                            Some(FetchProgress { done, total, bytes, total_bytes, eta_seconds })
                        }
                        _ => None,
                    },
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }
}
