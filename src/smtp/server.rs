//! The submission listeners and what their sessions share: the config (accounts, routes), the
//! store (outbox, verified addresses), the local credentials, TLS, the login throttle, the
//! connection slots, and the queue worker's wake-up call.

use crate::secret::ct_eq;
use std::sync::Arc;

use tokio::sync::Notify;

use super::policy::{self, Scope};
use crate::net::listener::Slots;
use crate::net::throttle::Throttle;
use crate::store::Store;

/// Largest message accepted (SIZE, RFC 1870). Providers' limits are usually 25–50 MB.
pub const DEFAULT_MAX_SIZE: u64 = 50 * 1024 * 1024;

pub struct SmtpShared {
    /// The config and the local login, replaced on SIGHUP.
    pub live: Arc<crate::config::Live>,
    pub store: Arc<Store>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Shared with the IMAP listener: one local password, one count of guesses.
    pub throttle: Arc<Throttle>,
    pub kick: Arc<Notify>,
    /// The places of both submission listeners, before and after AUTH.
    pub slots: Arc<Slots>,
    pub hostname: String,
    pub max_size: u64,
}

/// A refusal: (reply code, enhanced status code, text).
pub type Refusal = (u16, &'static str, String);

impl SmtpShared {
    /// `me` may send as every account, `me+Work` / `me@Work` only as Work.
    pub fn check_login(&self, user: &[u8], password: &[u8]) -> Option<Scope> {
        let (local, local_pw) = self.live.login();
        if !ct_eq(password, local_pw.expose().as_bytes()) {
            return None;
        }
        let user = std::str::from_utf8(user).ok()?;
        if user == local {
            return Some(Scope::All);
        }
        let rest = user.strip_prefix(local.as_str())?;
        let name = rest.strip_prefix('+').or_else(|| rest.strip_prefix('@'))?;
        self.live.config().account(name).map(|a| Scope::Account(a.name.clone()))
    }

    async fn verified(&self) -> Vec<(String, String)> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.verifications())
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v.verified)
            .map(|v| (v.account, v.address))
            .collect()
    }

    /// MAIL FROM: which account sends, or why not (never an open relay).
    pub async fn route(&self, scope: &Scope, sender: &str) -> Result<String, Refusal> {
        if sender.is_empty() {
            return Err((550, "5.7.1", "a sender address is required".into()));
        }
        let verified = self.verified().await;
        let config = self.live.config();
        let allowed = policy::allowed(&config, scope, &verified);
        let account = policy::route(&config, scope, &allowed, sender).map_err(|t| (550, "5.7.1", t))?;
        match &account.smtp {
            None => Err((
                550,
                "5.7.1",
                format!(
                    "account {} has no outgoing server: add an [account.smtp] section (or relay = true) to the config",
                    account.name
                ),
            )),
            Some(s) if s.relay && config.relay.is_none() => Err((
                550,
                "5.7.1",
                format!("account {} sends through [relay], but no [relay] is configured", account.name),
            )),
            Some(_) => Ok(account.name.clone()),
        }
    }

    /// End of DATA: check the header From, prepare the message, commit it to the outbox, wake the
    /// queue. The returned id goes in the 250 reply; nothing is acknowledged before the commit.
    pub async fn accept(
        &self,
        scope: &Scope,
        account: &str,
        from: &str,
        rcpts: &[String],
        msg: super::spool::Submitted,
    ) -> Result<i64, Refusal> {
        // The header block is what the checks and the changes below read (all of a message held
        // whole; a spooled one's body is in the outbox already, see smtp::spool).
        let raw = msg.head();
        let config = self.live.config();
        let Some(acct) = config.account(account).cloned() else {
            return Err((451, "4.3.0", format!("account {account} is no longer configured")));
        };
        let verified = self.verified().await;
        let allowed = policy::allowed(&config, scope, &verified);
        policy::check_sender_fields(raw, &allowed, &acct.name).map_err(|(esc, text)| (550, esc, text))?;
        let reply_to_verified = match &acct.reply_to {
            Some(r) => verified.iter().any(|(a, addr)| a == &acct.name && addr.eq_ignore_ascii_case(r)),
            None => false,
        };
        let (prepared, message_id) = policy::prepare(raw, &acct, reply_to_verified, from);
        let subject = crate::mime::MessageMeta::extract(&prepared[..crate::mime::header::split(&prepared).header_len])
            .envelope
            .subject;
        let (name, save_sent) = (acct.name.clone(), acct.save_sent);
        let id = super::spool::commit(&self.store, msg, &name, from, rcpts, prepared, message_id, subject, save_sent)
            .await
            .map_err(|e| (451, "4.3.0", format!("could not store the message: {}", e.message)))?;
        self.kick.notify_one();
        Ok(id)
    }
}
