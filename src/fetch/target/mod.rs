//! Delivery into another mail server (`[account.deliver]`, issue 18): the writer that takes the
//! local store writer's place (`sink`) for such accounts. It receives the fetched messages on the
//! same channel and reports them the same way — `FromSink::Committed` only once the target has
//! confirmed them **and** that confirmation is committed in the store's journal
//! (`store::journal`) — so the fetcher's DELE rule applies unchanged.
//!
//! Per batch (whatever has arrived while the previous batch was being delivered, at most
//! [`BATCH_MAX`] messages): identities already held are `Known`; rows an interrupted delivery left
//! 'delivering' are looked for in the target first (IMAP: `imap::Imap::find`); the rest is
//! journalled as 'delivering' (one commit), delivered in one pipelined exchange (`lmtp`, `imap`),
//! and every confirmed one recorded as held in one more commit. A refusal ends the writer after
//! the confirmed ones are recorded: 4xx / `NO [OVERQUOTA]` / the target unreachable →
//! [`ErrorClass::Temporary`] (the messages stay on the POP server; the account backs off);
//! 5xx / other `NO` → [`ErrorClass::Other`] with guidance (the setting must change).
//!
//! The window this leaves: a crash after the target confirmed and before the journal's second
//! commit. IMAP closes it on the next fetch (the message is found by Message-ID and content, and
//! not appended again), and so does an LMTP target with the same server's IMAP configured beside
//! it (`LmtpTarget::check`: found after the trace headers LMTP added); plain LMTP cannot look, so
//! the message is delivered again — at-least-once, counted in the journal's `attempts` (`status`
//! shows it).

pub mod imap;
pub mod lmtp;
pub mod wire;

use std::collections::HashMap;
use std::sync::mpsc;

use crate::config::{Account, Credential, DeliverTarget, ImapLogin, ImapTarget};
use crate::error::{Error, ErrorClass, Result};
use crate::net::tls::Upstream;
use crate::store::journal::{Journal, Pending, Unresolved};
use crate::store::{Store, Stored};

use super::sink::{FromSink, Sink, ToSink};

/// Most messages delivered in one exchange (and journalled in one commit).
pub const BATCH_MAX: usize = 256;

/// How long after an interrupted delivery started popbridge waits before it looks for it in the
/// target. A server may still be saving what the killed session sent — the whole APPEND was in
/// its socket buffer — when the next fetch comes: looked for too early, it is not there yet and
/// would be delivered twice (seen once in CI: 1 duplicate in 20 kills). Counted in whole
/// seconds from the journal's clock, so the wait is at least `SETTLE_SECS - 1` s.
pub const SETTLE_SECS: i64 = 3;

/// What the target said of one message.
#[derive(Debug)]
pub enum Outcome {
    /// Delivered: the target's confirmation (LMTP's `250` text, APPEND's `OK [APPENDUID …]`).
    Delivered(String),
    Refused(Refusal),
}

/// A refusal, by what it means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Try again later (LMTP 4xx, IMAP `NO [OVERQUOTA]`…).
    Temporary(String),
    /// The setting must change (LMTP 5xx such as 550 unknown recipient, IMAP `NO [NOPERM]`…).
    Permanent(String),
}

impl Refusal {
    pub fn into_error(self, target: &DeliverTarget) -> Error {
        match self {
            Refusal::Temporary(m) => Error::new(
                ErrorClass::Temporary,
                format!(
                    "delivery to {}: {m}; the message stays on the POP server and is tried again later",
                    target.describe()
                ),
            ),
            Refusal::Permanent(m) => Error::new(
                ErrorClass::Other,
                format!(
                    "delivery to {}: {m}; this will not change by itself: check the account's [account.deliver] setting ({}) and the target server's log — the message stays on the POP server until it can be delivered",
                    target.describe(),
                    match target {
                        DeliverTarget::Lmtp(_) => "recipient, lmtp",
                        DeliverTarget::Imap(_) => "user, mailbox",
                    }
                ),
            ),
        }
    }
}

/// A connection to the target, logged in.
pub enum Conn {
    Lmtp(lmtp::Lmtp),
    Imap(imap::Imap),
}

impl Conn {
    /// Connects (and logs in) as `target` says. `login`: the IMAP login, resolved.
    pub fn open(target: &DeliverTarget, login: Option<&mut Login>, upstream: Option<&Upstream>) -> Result<Conn> {
        let c = match target {
            DeliverTarget::Lmtp(t) => match lmtp::Lmtp::connect(t)? {
                Ok(c) => Conn::Lmtp(c),
                Err(r) => return Err(r.into_error(target)),
            },
            DeliverTarget::Imap(t) => {
                let Some(login) = login else { return Err(Error::config("no IMAP login for [account.deliver]")) };
                Conn::Imap(login.connect(t, upstream)?)
            }
        };
        Ok(c)
    }

    pub fn features(&self) -> String {
        match self {
            Conn::Lmtp(c) => c.features(),
            Conn::Imap(c) => c.features(),
        }
    }

    fn deliver(&mut self, batch: &[&[u8]]) -> (Vec<Outcome>, Option<Error>) {
        match self {
            Conn::Lmtp(c) => c.deliver(batch),
            Conn::Imap(c) => c.deliver(batch),
        }
    }

    pub fn quit(self) {
        match self {
            Conn::Lmtp(c) => c.quit(),
            Conn::Imap(c) => c.quit(),
        }
    }
}

/// The TLS configuration for an `imaps://` target (verified as for POP).
pub fn upstream_for(target: &DeliverTarget) -> Result<Option<Upstream>> {
    match target.imap() {
        Some(t) if t.tls != crate::config::TlsMode::Plain => Ok(Some(crate::net::tls::upstream(&t.trust)?)),
        _ => Ok(None),
    }
}

/// The target's IMAP login (APPEND, or an LMTP target's check): the credential, resolved before
/// the writer thread starts (`password_command` runs, a grant's token is refreshed if due), and
/// for the account's own grant (`auth = "oauth2"`) a way to a fresh token when the server
/// refuses this one — as the POP login does it (`session::login`), once per session.
pub struct Login {
    cred: Credential,
    renew: Option<Renew>,
}

/// What a grant's refresh needs, from the writer thread: the runtime to run it on.
struct Renew {
    runtime: tokio::runtime::Handle,
    config_path: std::path::PathBuf,
    mode: u32,
    oauth_dir: std::path::PathBuf,
    account: Box<Account>,
}

impl Login {
    /// The login of `account`'s target, if it has an IMAP side.
    pub async fn resolve(
        secrets: &super::session::Secrets<'_>,
        account: &Account,
        target: &DeliverTarget,
    ) -> Result<Option<Login>> {
        let Some(t) = target.imap() else { return Ok(None) };
        let (path, mode) = (secrets.config_path, secrets.config_mode);
        let (cred, renew) = match &t.login {
            ImapLogin::Password(src) => {
                (Credential::Password(crate::config::resolve_secret(path, mode, src, "IMAP").await?), None)
            }
            ImapLogin::Token(src) => {
                (Credential::Bearer(crate::config::resolve_secret(path, mode, src, "IMAP token").await?), None)
            }
            ImapLogin::Grant => {
                let token = crate::oauth::access_token(path, mode, secrets.oauth_dir, account, None).await?;
                let renew = Renew {
                    runtime: tokio::runtime::Handle::current(),
                    config_path: path.to_path_buf(),
                    mode,
                    oauth_dir: secrets.oauth_dir.to_path_buf(),
                    account: Box::new(account.clone()),
                };
                (Credential::Bearer(token), Some(renew))
            }
        };
        Ok(Some(Login { cred, renew }))
    }

    /// Connects and logs in to `t`. A refused grant token is refreshed (on the runtime; this runs
    /// on a thread of its own) and tried once more on a new connection; a second refusal, or
    /// any other failure, is the error.
    pub fn connect(&mut self, t: &ImapTarget, upstream: Option<&Upstream>) -> Result<imap::Imap> {
        match imap::Imap::connect(t, &self.cred, upstream) {
            Err(e) if e.class == ErrorClass::Authentication && self.renew.is_some() => {
                let (Some(r), Credential::Bearer(old)) = (self.renew.take(), &self.cred) else { return Err(e) };
                tracing::info!("{}; refreshing the access token and trying again", e.message);
                let fresh = r.runtime.block_on(crate::oauth::access_token(
                    &r.config_path,
                    r.mode,
                    &r.oauth_dir,
                    &r.account,
                    Some(old),
                ))?;
                self.cred = Credential::Bearer(fresh);
                imap::Imap::connect(t, &self.cred, upstream).map_err(|mut e| {
                    if e.class == ErrorClass::Authentication {
                        e.message.push_str(&format!(
                            "; if this persists, sign in again: run `{}`",
                            crate::oauth::remedy_command(&r.account.name)
                        ));
                    }
                    e
                })
            }
            r => r,
        }
    }
}

/// Starts the delivering writer for `account` (which has `[account.deliver]`), in the store
/// writer's place.
pub async fn spawn(
    ctx: &super::Context,
    account: &Account,
    store: std::sync::Arc<Store>,
    ids: crate::store::accounts::AccountIds,
    server: i64,
) -> Result<Sink> {
    let Some(target) = account.deliver.clone() else { return Err(Error::other("internal error: no delivery target")) };
    let secrets = super::session::Secrets {
        config_path: &ctx.config_path,
        config_mode: ctx.config_mode,
        oauth_dir: &ctx.oauth_dir,
    };
    let login = Login::resolve(&secrets, account, &target).await?;
    let upstream = upstream_for(&target)?;
    let describe = target.describe();
    let journal = super::blocking(move || Journal::new(&store, ids, server, &describe)).await?;
    let unresolved: HashMap<String, Unresolved> =
        journal.unresolved()?.into_iter().map(|u| (u.uidl.clone(), u)).collect();
    let w =
        Remote { target, login, upstream, journal, conn: None, check: None, unresolved, repeated: 0, settled: false };
    Ok(Sink::spawn_with("popbridge-deliver", move |rx, out| run(w, rx, out)))
}

struct Remote {
    target: DeliverTarget,
    login: Option<Login>,
    upstream: Option<Upstream>,
    journal: Journal,
    conn: Option<Conn>,
    /// An LMTP target's IMAP, for looking up interrupted deliveries (opened when first needed).
    check: Option<imap::Imap>,
    /// Rows left 'delivering' by an interrupted delivery, by identity.
    unresolved: HashMap<String, Unresolved>,
    /// Deliveries repeated this session after an unconfirmed one (LMTP).
    repeated: u64,
    /// The wait before looking for interrupted deliveries is over ([`SETTLE_SECS`]).
    settled: bool,
}

impl Remote {
    fn conn(&mut self) -> Result<&mut Conn> {
        if self.conn.is_none() {
            let c = Conn::open(&self.target, self.login.as_mut(), self.upstream.as_ref()).map_err(|e| self.wrap(e))?;
            self.conn = Some(c);
        }
        self.conn.as_mut().ok_or_else(|| Error::other("internal error: no connection"))
    }

    /// Looks for a message whose delivery was interrupted, where the target allows it: its UID.
    fn find(&mut self, message_id: &str, raw: &[u8]) -> Result<Option<u64>> {
        let check = match &self.target {
            DeliverTarget::Imap(_) => None,
            DeliverTarget::Lmtp(t) => match &t.check {
                Some(c) => Some(c.clone()),
                None => return Ok(None),
            },
        };
        let r = match check {
            None => match self.conn()? {
                Conn::Imap(c) => c.find(message_id, raw, false),
                Conn::Lmtp(_) => Ok(None),
            },
            Some(t) => {
                if self.check.is_none() {
                    let Some(login) = self.login.as_mut() else {
                        return Err(Error::other("internal error: no login for the IMAP check"));
                    };
                    let c = login.connect(&t, self.upstream.as_ref()).map_err(|e| self.wrap(e))?;
                    self.check = Some(c);
                }
                match self.check.as_mut() {
                    Some(c) => c.find(message_id, raw, true),
                    None => Ok(None),
                }
            }
        };
        r.map_err(|e| self.wrap(e))
    }

    /// Waits, once a session, until [`SETTLE_SECS`] have passed since an interrupted delivery
    /// started (the rows of one crash are started within a batch of each other).
    fn settle(&mut self, started: i64) {
        if self.settled {
            return;
        }
        self.settled = true;
        // At most SETTLE_SECS, whatever the clock did since (a row "started" in the future).
        let wait = (SETTLE_SECS - (crate::store::now() - started)).min(SETTLE_SECS);
        if wait > 0 {
            tracing::info!(
                "an interrupted delivery to {} is looked for in {wait} s (the server may still be saving it)",
                self.target.describe()
            );
            std::thread::sleep(std::time::Duration::from_secs(wait as u64));
        }
    }

    /// The target's connection failures are temporary for the account (the message waits on the
    /// POP server), and say which target.
    fn wrap(&self, e: Error) -> Error {
        if e.message.starts_with("delivery to ") {
            return e;
        }
        let class = match e.class {
            ErrorClass::Connection | ErrorClass::Protocol => ErrorClass::Temporary,
            c => c,
        };
        let message = format!("delivery to {}: {}", self.target.describe(), e.message);
        Error { class, message, ..e }
    }

    fn process(&mut self, batch: Vec<ToSink>, out: &tokio::sync::mpsc::UnboundedSender<FromSink>) -> Result<()> {
        let mut todo: Vec<(u32, Pending, Vec<u8>)> = Vec::new();
        let mut done: Vec<(u32, Pending, String)> = Vec::new();
        for m in batch {
            let ToSink::Message { n, identity, raw, permit, .. } = m;
            drop(permit);
            let sha = ring::digest::digest(&ring::digest::SHA256, &raw).as_ref().to_vec();
            let size = raw.len() as u64;
            if let Some(rec) = self.journal.recorded(&identity.key)? {
                if rec.held && !identity.recheck {
                    let _ = out.send(FromSink::Known(n));
                    continue;
                }
                if rec.held && rec.sha256.as_deref() == Some(sha.as_slice()) {
                    // A recheck that found the delivered bytes again: nothing to deliver.
                    let stored = self.journal.renew(&identity, size)?;
                    let _ = out.send(FromSink::Committed(vec![(n, stored)]));
                    continue;
                }
            }
            let message_id = crate::mime::MessageMeta::extract(&raw).message_id;
            let pending = Pending { identity, message_id, sha256: sha, size };
            if let Some(u) = self.unresolved.remove(&pending.identity.key) {
                let found = match (&pending.message_id, self.target.can_check()) {
                    (Some(mid), true) => {
                        self.settle(u.started);
                        self.find(&mid.clone(), &raw)?
                    }
                    _ => None,
                };
                if let Some(uid) = found {
                    done.push((n, pending, format!("found as UID {uid} after an interrupted delivery")));
                    continue;
                }
                if u.sha256 == pending.sha256 {
                    self.repeated += 1;
                }
            }
            todo.push((n, pending, raw));
        }
        let pendings: Vec<Pending> = todo.iter().map(|(_, p, _)| p.clone()).collect();
        self.journal.start(&pendings)?;
        let (outcomes, failed) = if todo.is_empty() {
            (Vec::new(), None)
        } else {
            let raws: Vec<&[u8]> = todo.iter().map(|(_, _, r)| r.as_slice()).collect();
            match self.conn() {
                Ok(c) => c.deliver(&raws),
                Err(e) => (Vec::new(), Some(e)),
            }
        };
        let mut refusal = None;
        for ((n, p, _), o) in todo.into_iter().zip(outcomes) {
            match o {
                Outcome::Delivered(c) => done.push((n, p, c)),
                Outcome::Refused(r) => {
                    refusal.get_or_insert(r);
                }
            }
        }
        let numbers: Vec<u32> = done.iter().map(|(n, _, _)| *n).collect();
        let confirmed: Vec<(Pending, String)> = done.into_iter().map(|(_, p, c)| (p, c)).collect();
        let stored: Vec<Stored> = self.journal.delivered(&confirmed)?;
        if !stored.is_empty() {
            let _ = out.send(FromSink::Committed(numbers.into_iter().zip(stored).collect()));
        }
        if let Some(e) = failed {
            self.conn = None;
            return Err(self.wrap(e));
        }
        if let Some(r) = refusal {
            return Err(r.into_error(&self.target));
        }
        Ok(())
    }
}

/// The writer thread: batches what has arrived, delivers it, reports; ends at the first failure
/// (after reporting what was confirmed) or when the fetcher closes the channel.
fn run(mut w: Remote, rx: mpsc::Receiver<ToSink>, out: tokio::sync::mpsc::UnboundedSender<FromSink>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if let Err(e) = w.process(batch, &out) {
            let _ = out.send(FromSink::Failed(e));
            return;
        }
    }
    if w.repeated > 0 {
        tracing::warn!(
            "{} message(s) delivered again to {} after a delivery whose confirmation was lost (LMTP is at-least-once: the target may hold them twice)",
            w.repeated,
            w.target.describe()
        );
    }
    if let Some(c) = w.conn.take() {
        c.quit();
    }
    if let Some(c) = w.check.take() {
        c.quit();
    }
}

/// `account test` for the target: connect, log in (IMAP) or LHLO (LMTP), then check the recipient
/// (MAIL + RCPT, then RSET: nothing is delivered) or the mailbox (EXAMINE). Returns what to show.
pub async fn probe(secrets: &super::session::Secrets<'_>, account: &Account, target: &DeliverTarget) -> Result<String> {
    let mut login = Login::resolve(secrets, account, target).await?;
    let upstream = upstream_for(target)?;
    let t = target.clone();
    let wrap = |e: Error| {
        if e.message.starts_with("delivery to ") { e } else { e.context(format!("delivery to {}", t.describe())) }
    };
    let target = target.clone();
    let r = super::blocking(move || {
        let mut c = Conn::open(&target, login.as_mut(), upstream.as_ref())?;
        let features = c.features();
        let mut checked = match &mut c {
            Conn::Lmtp(l) => l.check_recipient()?,
            Conn::Imap(i) => i.check_mailbox()?,
        };
        c.quit();
        // An LMTP target's IMAP check: it must log in and open the mailbox too.
        if let (DeliverTarget::Lmtp(l), Ok(said)) = (&target, &checked)
            && let (Some(t), Some(login)) = (&l.check, login.as_mut())
        {
            let mut i = login.connect(t, upstream.as_ref())?;
            checked = i.check_mailbox()?.map(|m| format!("{said}; the check through {}: {m}", t.describe()));
            i.quit();
        }
        match checked {
            Ok(said) => Ok(format!("{features}; {said}")),
            Err(r) => Err(r.into_error(&target)),
        }
    })
    .await;
    r.map_err(wrap)
}
