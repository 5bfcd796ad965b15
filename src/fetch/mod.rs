//! Fetching: one cycle = connect → CAPA → (STLS) → login → UIDL + LIST → diff against the store →
//! pipelined RETR streamed into the store → DELE what the policy allows and the store has made
//! durable → QUIT → forget identities the server no longer has.
//!
//! The rules that keep mail safe (DESIGN §4):
//! - a message and its identity (UIDL) are committed in one transaction ([`crate::store::Delivery`]);
//! - DELE is sent only for identities whose commit has returned (the sink reports them);
//! - nothing is deleted on a guessed identity (fallback keys, see `keys`), nor on one popbridge
//!   does not hold (taken over from another tool by `import_state`: skipped, never deleted);
//! - if anything fails, the connection is dropped without QUIT, so the server deletes nothing
//!   (RFC 1939 §6: deletions happen only in the UPDATE state after QUIT).
//!
//! The cycle is `Cycle`'s steps, in order: `connect`, `list`, `plan` (the diff against the store,
//! with the identity checks), `transfer` (RETR and DELE in one pipelined window), `finish` (QUIT,
//! prune); each says what it guarantees.
//!
//! - `session`: connect and log in; `sink`: the store-writing thread; `keys`: fallback identities;
//!   `lock`: one fetch per account across processes; `probe`: `account test`; `import_state`:
//!   `account import-state` (another tool's record of what it downloaded).

pub mod bounded;
pub mod health;
pub mod import_mail;
pub mod import_state;
pub mod keys;
pub mod lock;
pub mod probe;
pub mod schedule;
pub mod session;
pub mod sink;
pub mod target;
pub mod window;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::{Account, DeletePolicy};
use crate::error::{Error, ErrorClass, Result};
use crate::net::pop3::Pop3Conn;
use crate::pop3::{self, Body, Command, Sent, Status};
use crate::store::{Delivery, Duplicate, Identity, Store, accounts::CycleFacts};

use keys::{Occurrences, fallback_digest, is_fallback};
use session::Session;
use sink::{FromSink, Sink, ToSink};

/// Most `TOP n 0` in flight in the one-off header checks outside the cycle's window (a bounded
/// first import's boundary, `account import-state`, `account test`) when the server pipelines
/// (RFC 2449 PIPELINING). The cycle's own commands go through the adaptive [`window::Window`].
pub const WINDOW: usize = 256;
/// Bytes of downloaded messages waiting for the sink: the fetcher's memory bound (beyond the
/// message being received).
pub const SINK_BUDGET: usize = 8 * 1024 * 1024;

/// While the session waits on local work with nothing in flight (a slow disk, a store locked by
/// another writer), a NOOP this often keeps the server from logging us out (RFC 1939 §3 allows
/// servers an inactivity timer of 10 minutes).
pub const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(60);

/// Further POP sessions one cycle may make after the first, for servers that list only part of
/// the mailbox per session (Gmail: about 250 messages, hiding each once downloaded): enough for a
/// few thousand messages a cycle; the rest follows in the next one.
pub const MAX_EXTRA_SESSIONS: u32 = 20;
/// A session is taken for a partial listing — and followed by another at once — when it listed at
/// least this many messages and popbridge knew none of them: what a per-session limit looks like
/// (a server that shows everything would list the known ones too). Below it, the listing was
/// complete or the rest is small enough for the next cycle.
pub const PARTIAL_LISTING_MIN: u64 = 100;

/// What the fetcher needs from its surroundings.
#[derive(Clone)]
pub struct Context {
    pub config_path: PathBuf,
    pub config_mode: u32,
    pub store: Arc<Store>,
    pub lock_dir: PathBuf,
    /// The OAuth 2 token files (`Paths::oauth_dir`), for `auth = "oauth2"` accounts.
    pub oauth_dir: PathBuf,
}

#[derive(Debug, Default, Clone)]
pub struct Progress {
    pub total_messages: u64,
    pub total_bytes: u64,
    pub done_messages: u64,
    pub done_bytes: u64,
}

pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

#[derive(Debug, Default)]
pub struct Report {
    pub account: String,
    pub server_messages: u64,
    pub server_bytes: u64,
    pub new_messages: u64,
    pub new_bytes: u64,
    pub deleted: u64,
    /// Left on the server because they exceed `max_message_size`: (number, size).
    pub too_big: Vec<(u32, u64)>,
    pub warnings: Vec<String>,
    /// The server's LOGIN-DELAY, in seconds, if it announced one.
    pub login_delay: Option<u64>,
    /// The server announced EXPIRE 0: it removes (or hides) messages once they are downloaded.
    pub expires_downloaded: bool,
    /// Messages with a new UIDL but the exact bytes of a stored one (a server that changes UIDLs).
    pub same_content: u64,
    /// Answers whose size was far from what LIST announced: (number, announced, received).
    pub size_mismatch: Vec<(u32, u64, u64)>,
    /// Listed messages whose identity popbridge did not hold before the session.
    pub listed_unknown: u64,
    /// Messages left for the next cycle by `max_messages_per_cycle` / `max_bytes_per_cycle`.
    pub capped: u64,
    /// POP sessions the cycle made (more than one for a server that lists part of the mailbox).
    pub sessions: u32,
    /// A bounded first import ran this cycle: how many listed messages it recorded as skipped.
    pub first_import_skipped: Option<u64>,
    /// Copies of messages held already (`duplicates`): all of them, and those not filed (`hide`).
    pub duplicates: u64,
    pub duplicates_hidden: u64,
}

impl Report {
    /// Whether another session should follow at once: this one stored new mail from a listing
    /// that looks partial (at least [`PARTIAL_LISTING_MIN`] messages, none known before) and the
    /// account has no per-cycle caps (they count per cycle, and the rest waits for the next).
    ///
    /// LOGIN-DELAY (RFC 2449 §6.5) is kept between cycles by the schedule, not here: Gmail
    /// announces `LOGIN-DELAY 300` and yet describes its POP clients asking for the next 250
    /// right after a session (support.google.com/a/answer/6089246). A server that does enforce
    /// its delay refuses the further login (`[LOGIN-DELAY]`, RFC 2449 §8.1.2): the cycle then
    /// ends with what it has, and the rest follows in the next one.
    ///
    /// Only a server that announces what such a server is — a LOGIN-DELAY (it limits sessions)
    /// or EXPIRE 0 (it hides what was downloaded; Gmail announces both) — gets the further
    /// session: on any other, a first import of 100 messages or more would pay a whole second
    /// session (about eight round trips: 0.4 s at 50 ms, 1.6 s at 200 ms; issue 19) to list
    /// what it has just fetched. Should such a server exist without either, the rest follows in
    /// the next cycle.
    fn listing_looks_partial(&self, account: &Account) -> bool {
        (self.login_delay.is_some() || self.expires_downloaded)
            && self.new_messages > 0
            && self.server_messages >= PARTIAL_LISTING_MIN
            && self.listed_unknown == self.server_messages
            && self.capped == 0
            && account.max_messages_per_cycle.is_none()
            && account.max_bytes_per_cycle.is_none()
    }

    /// Adds a later session's outcome: counts add up, the server's listing is the latest one.
    fn absorb(&mut self, later: Report) {
        self.server_messages = later.server_messages;
        self.server_bytes = later.server_bytes;
        self.new_messages += later.new_messages;
        self.new_bytes += later.new_bytes;
        self.deleted += later.deleted;
        self.too_big.extend(later.too_big);
        for w in later.warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        self.login_delay = later.login_delay;
        self.expires_downloaded = later.expires_downloaded;
        self.same_content += later.same_content;
        self.size_mismatch.extend(later.size_mismatch);
        self.listed_unknown = later.listed_unknown;
        self.capped = later.capped;
        self.sessions += later.sessions;
        self.first_import_skipped = self.first_import_skipped.or(later.first_import_skipped);
        self.duplicates += later.duplicates;
        self.duplicates_hidden += later.duplicates_hidden;
    }
}

pub(crate) use crate::blocking;

/// Runs one fetch cycle for an account and records its outcome in the store.
pub async fn fetch(ctx: &Context, account: &Account, progress: Option<ProgressFn>) -> Result<Report> {
    let label = format!("account \"{}\"", account.name);
    let lock_dir = ctx.lock_dir.clone();
    let name = account.name.clone();
    let _lock = blocking(move || lock::AccountLock::acquire(&lock_dir, &name)).await.map_err(|e| e.context(&label))?;
    let store = ctx.store.clone();
    let name = account.name.clone();
    let ids = blocking(move || store.ensure_account(&name)).await?;
    let mut result = Cycle::run(ctx, account, ids, progress.clone()).await;
    // A server that lists part of the mailbox per session (Gmail): further sessions at once, as
    // long as each one's listing still looks partial, at most MAX_EXTRA_SESSIONS. A later
    // session's failure keeps what the earlier ones stored and is reported as a warning: the
    // next cycle goes on from there.
    if let Ok((report, caps)) = &mut result {
        let mut extra = 0;
        while report.listing_looks_partial(account) {
            if extra == MAX_EXTRA_SESSIONS {
                report.warnings.push(format!(
                    "{} lists only part of the mailbox per session: {} sessions fetched {} message(s) this cycle; the rest follows in the next one",
                    account.pop.host,
                    report.sessions,
                    report.new_messages
                ));
                break;
            }
            extra += 1;
            match Cycle::run(ctx, account, ids, progress.clone()).await {
                Ok((later, later_caps)) => {
                    report.absorb(later);
                    *caps = later_caps;
                }
                Err(e) => {
                    report.warnings.push(format!(
                        "a further session (the server lists only part of the mailbox per session) failed: {}; the rest follows in the next cycle",
                        e.message
                    ));
                    break;
                }
            }
        }
    }
    let store = ctx.store.clone();
    match &result {
        Ok((report, caps)) => {
            let facts = CycleFacts {
                login_delay: report.login_delay.map(|d| d as i64),
                server_messages: report.server_messages as i64,
                server_bytes: report.server_bytes as i64,
                new_messages: report.new_messages as i64,
                new_bytes: report.new_bytes as i64,
                capabilities: caps.clone(),
            };
            blocking(move || store.record_success(ids.account, &facts)).await?;
        }
        Err(e) => {
            let (class, msg, disable) = (e.class, e.message.clone(), e.disable);
            // Recording can fail for the same reason the fetch did (a full disk): the fetch's own
            // error is the one to report.
            if class != ErrorClass::Config
                && let Err(e2) = blocking(move || store.record_failure(ids.account, class, &msg, disable)).await
            {
                tracing::warn!("{label}: could not record the failure in the store: {e2}");
            }
        }
    }
    result.map(|(r, _)| r).map_err(|e| e.context(&label))
}

/// One server message as listed.
struct Listed {
    n: u32,
    size: u64,
    /// Identity: the UIDL, a fallback key, or `None` until the message is read (no UIDL, no TOP).
    key: Option<String>,
}

/// The server's listing: LIST sizes joined with UIDLs, with broken UIDLs replaced by fallback keys.
async fn listing(conn: &mut Pop3Conn, pipelining: bool, report: &mut Report) -> Result<Vec<Listed>> {
    let (uidl, list) = if pipelining {
        conn.send(&Command::Uidl(None));
        conn.send(&Command::List(None));
        (conn.reply().await?, conn.reply().await?)
    } else {
        (conn.call(&Command::Uidl(None)).await?, conn.call(&Command::List(None)).await?)
    };
    let sizes = match (list.status, list.body) {
        (Status::Ok, Body::Data(b)) => pop3::parse_list(&b)
            .map_err(|e| Error::new(ErrorClass::Protocol, format!("{} sent a broken LIST: {e}", conn.host)))?,
        _ => {
            return Err(Error::new(ErrorClass::Protocol, format!("{} refused LIST: \"{}\"", conn.host, list.text)));
        }
    };
    let uidls: Option<Vec<(u32, String)>> =
        match (uidl.status, uidl.body) {
            (Status::Ok, Body::Data(b)) => Some(pop3::parse_uidl(&b).map_err(|e| {
                Error::new(ErrorClass::Protocol, format!("{} sent a broken UIDL listing: {e}", conn.host))
            })?),
            _ => None,
        };
    let mut listed: Vec<Listed> = sizes.iter().map(|&(n, size)| Listed { n, size, key: None }).collect();
    match uidls {
        None => report.warnings.push(format!(
            "{} does not support UIDL: messages are recognised by their Message-ID, Date and size, and popbridge never deletes them from the server",
            conn.host
        )),
        Some(u) => {
            let mut count: HashMap<&str, u32> = HashMap::new();
            for (_, id) in &u {
                *count.entry(id.as_str()).or_default() += 1;
            }
            let by_n: HashMap<u32, &str> = u.iter().map(|(n, id)| (*n, id.as_str())).collect();
            let (mut missing, mut dups) = (Vec::new(), Vec::new());
            for l in &mut listed {
                match by_n.get(&l.n) {
                    Some(id) if count[id] == 1 && !id.is_empty() => l.key = Some((*id).to_string()),
                    Some(_) => dups.push(l.n),
                    None => missing.push(l.n),
                }
            }
            if !missing.is_empty() {
                report.warnings.push(format!("{} gave no UIDL for {} message(s) (e.g. number {}); they are recognised by their headers and never deleted by popbridge", conn.host, missing.len(), missing[0]));
            }
            if !dups.is_empty() {
                report.warnings.push(format!("{} gave the same UIDL to several messages ({} affected, e.g. number {}); they are recognised by their headers and never deleted by popbridge", conn.host, dups.len(), dups[0]));
            }
        }
    }
    Ok(listed)
}

/// Fallback keys from `TOP n 0` for messages without a usable UIDL. Returns false when the server
/// has no TOP either (those messages are then keyed after RETR).
async fn fallback_keys(
    conn: &mut Pop3Conn,
    listed: &mut [Listed],
    flow: &mut window::Window,
    occ: &mut Occurrences,
) -> Result<bool> {
    let todo: Vec<usize> = (0..listed.len()).filter(|&i| listed[i].key.is_none()).collect();
    let numbers: Vec<u32> = todo.iter().map(|&i| listed[i].n).collect();
    let mut top_ok = true;
    window::tops(conn, &numbers, flow, |j, r| {
        let i = todo[j];
        match (r.status, r.body) {
            (Status::Ok, Body::Data(b)) => listed[i].key = Some(occ.key(fallback_digest(&b, listed[i].size))),
            _ => top_ok = false,
        }
        top_ok
    })
    .await?;
    Ok(top_ok)
}

fn policy_allows_now(policy: DeletePolicy, first_seen: i64, local_deleted: bool, now: i64) -> bool {
    match policy {
        DeletePolicy::Never => false,
        DeletePolicy::AfterFetch => true,
        DeletePolicy::AfterDays(d) => first_seen + i64::from(d) * 86_400 <= now,
        DeletePolicy::WhenDeletedLocally => local_deleted,
    }
}

/// One fetch cycle, step by step: [`Cycle::connect`] → [`Cycle::list`] → [`Cycle::plan`] (the diff
/// against the store, with the identity checks) → [`Cycle::transfer`] (pipelined RETR into the
/// store, DELE of what is committed) → [`Cycle::finish`] (QUIT, then forget what the server no
/// longer holds). What one step learns is carried to the next in the struct (the session, its
/// capabilities, the listing, the report) or in the [`Diff`].
struct Cycle<'a> {
    ctx: &'a Context,
    account: &'a Account,
    ids: crate::store::accounts::AccountIds,
    conn: Pop3Conn,
    caps: Option<pop3::Capabilities>,
    /// The capabilities as the server listed them (recorded with the account's status).
    caps_text: String,
    pipelining: bool,
    /// Commands in flight at once for the one-off header checks: [`WINDOW`] when the server
    /// pipelines, else 1.
    window: usize,
    /// The session's adaptive window (RETR, DELE, TOP): it learns the link's round trip and
    /// throughput as the session goes.
    flow: window::Window,
    report: Report,
    /// The server's messages, with their identities (filled in by RETR for those keyed by content).
    listed: Vec<Listed>,
    /// Fallback keys handed out this session (several messages with the same headers and size).
    occ: Occurrences,
}

/// What the cycle decided from the listing and the store's record ([`Cycle::plan`]).
struct Diff {
    server: crate::store::accounts::PopServer,
    /// The identities the store holds for this server.
    known: HashMap<String, crate::store::accounts::KnownUidl>,
    plan: Plan,
    /// DELEs to send: (number, identity); stored messages due now, then those committed this session.
    deletes: VecDeque<(u32, String)>,
    /// Indexes into the listing to download, in order, within the per-cycle caps.
    to_fetch: Vec<usize>,
    /// The cycle's clock for the delete policy of stored messages.
    now: i64,
    policy: DeletePolicy,
}

/// Outcome of [`Cycle::transfer`]: the identities whose DELE the server accepted (they take
/// effect only with a confirmed QUIT).
type Deleted = HashSet<String>;

impl<'a> Cycle<'a> {
    /// Runs the steps in order. Any step's error ends the cycle without QUIT, so the server deletes
    /// nothing (RFC 1939 §6); what was committed before stays committed and known next time.
    async fn run(
        ctx: &'a Context,
        account: &'a Account,
        ids: crate::store::accounts::AccountIds,
        progress: Option<ProgressFn>,
    ) -> Result<(Report, String)> {
        // Where a session's time goes (`--log-level debug`): the round trips of the login and
        // listing, the transfer and its window, the closing.
        let t = std::time::Instant::now();
        let mut cycle = Cycle::connect(ctx, account, ids).await?;
        let logged_in = t.elapsed();
        cycle.list().await?;
        let mut diff = cycle.plan().await?;
        let planned = t.elapsed();
        let (cycle, deleted) = cycle.transfer(&mut diff, progress).await?;
        let transferred = t.elapsed();
        tracing::debug!(
            "{}: logged in after {logged_in:?}, listed and planned after {planned:?}, transfer took {:?} (window: {})",
            account.name,
            transferred - planned,
            cycle.flow
        );
        cycle.finish(diff, deleted).await
    }

    /// Connect, (STLS,) log in and read the capabilities. Guarantees: the password is dropped once
    /// the login is done; the report carries the server's LOGIN-DELAY and a warning when the server
    /// expires downloaded messages itself (EXPIRE 0).
    async fn connect(ctx: &'a Context, account: &'a Account, ids: crate::store::accounts::AccountIds) -> Result<Self> {
        let mut report = Report { account: account.name.clone(), sessions: 1, ..Report::default() };
        let secrets =
            session::Secrets { config_path: &ctx.config_path, config_mode: ctx.config_mode, oauth_dir: &ctx.oauth_dir };
        let Session { conn, caps, .. } = session::login(&secrets, account).await?;
        let caps_text = caps.as_ref().map(|c| c.lines.join(" ")).unwrap_or_default();
        let pipelining = caps.as_ref().is_some_and(|c| c.pipelining);
        let window = if pipelining { WINDOW } else { 1 };
        report.login_delay = caps.as_ref().and_then(|c| c.login_delay);
        if let Some(pop3::Expire::Days(0)) = caps.as_ref().and_then(|c| c.expire.clone()) {
            report.expires_downloaded = true;
            report.warnings.push(format!(
                "{} deletes messages once they are downloaded (EXPIRE 0): whatever the delete policy, they will be gone from the server",
                conn.host
            ));
        }
        Ok(Cycle {
            ctx,
            account,
            ids,
            conn,
            caps,
            caps_text,
            pipelining,
            window,
            flow: window::Window::new(pipelining),
            report,
            listed: Vec::new(),
            occ: Occurrences::default(),
        })
    }

    /// UIDL + LIST, and fallback keys from `TOP n 0` for messages without a usable UIDL.
    /// Guarantees: every listed message has its LIST size; its key is its UIDL only if that UIDL
    /// is present and unique, else a fallback key (never deleted on), else `None` until its RETR.
    async fn list(&mut self) -> Result<()> {
        self.listed = listing(&mut self.conn, self.pipelining, &mut self.report).await?;
        self.report.server_messages = self.listed.len() as u64;
        self.report.server_bytes = self.listed.iter().map(|l| l.size).sum();
        fallback_keys(&mut self.conn, &mut self.listed, &mut self.flow, &mut self.occ).await?;
        Ok(())
    }

    /// The diff against the store: which listed messages to download, which stored ones to
    /// delete now, and which are skipped. Guarantees (DESIGN §4): a known identity is trusted —
    /// skipped, and deleted if the policy says so — only while LIST's size is the recorded one
    /// and, wherever identity is in doubt or a DELE is due, its header fingerprint (`TOP n 0`)
    /// matches the stored one; anything else is read again (the body's digest then decides) or
    /// left alone. Fallback identities are never deleted, nor are identities popbridge does not
    /// hold (`KnownUidl::held`: taken over from another tool) — those are skipped while LIST gives
    /// them their recorded size, and downloaded as new when it does not. Messages over `max_message_size` and
    /// beyond the per-cycle caps stay on the server, with a warning.
    async fn plan(&mut self) -> Result<Diff> {
        let (ctx, account, ids) = (self.ctx, self.account, self.ids);
        let (listed, report, conn) = (&self.listed, &mut self.report, &mut self.conn);
        let (store, key) = (ctx.store.clone(), account.pop.mailbox_key());
        let numbered = !listed.is_empty() && listed.iter().all(|l| l.key.as_deref() == Some(l.n.to_string().as_str()));
        let first = match account.pop.first_import {
            Some(f) => {
                let k = key.clone();
                blocking(move || store.is_first_fetch(ids.account, &k)).await?.then_some(f)
            }
            None => None,
        };
        let store = ctx.store.clone();
        let server = match first {
            // A bounded first import: what it leaves on the server is recorded with the mailbox's
            // state record, before anything is downloaded (`bounded`).
            Some(f) => {
                let choice = bounded::choose(conn, listed, f, self.window, numbered).await?;
                let (count, bytes) = choice.download(listed);
                let without_id = choice.keep.iter().filter(|&&i| listed[i].key.is_none()).count();
                let skip = choice.skip;
                let (server, done) = blocking(move || store.first_pop_server(ids.account, &key, &skip)).await?;
                if let Some(done) = done {
                    report.first_import_skipped = Some(done.added as u64);
                    report.warnings.push(format!(
                        "first import ({}): {} message(s) already on {} recorded as seen and left there (popbridge never deletes them); downloading {count} ({})",
                        f.to_config_string(),
                        done.added,
                        conn.host,
                        human_bytes(bytes)
                    ));
                }
                if without_id > 0 {
                    report.warnings.push(format!(
                        "{without_id} message(s) have no identity before they are read (no UIDL, no TOP): downloaded despite first_import"
                    ));
                }
                server
            }
            None => blocking(move || store.pop_server(ids.account, &key)).await?,
        };
        let store = ctx.store.clone();
        let known = blocking(move || store.known_uidls(server.id)).await?;
        let now = crate::store::now();
        let policy = account.pop.delete;

        // Can a known UIDL be taken for the message it named when it was stored? Only while LIST's
        // size is the one recorded. And not from a server whose UIDLs are its message numbers, one
        // seen reusing a UIDL, or right after a session whose QUIT went unanswered (deletions may
        // have happened): there each known identity is checked against its header fingerprint
        // (TOP n 0) before it is trusted. So is every known identity about to be deleted, wherever:
        // a DELE is sent only for what popbridge is certain it holds (DESIGN §4). Messages fetched
        // in this session need no check: their bytes were just read.
        if numbered {
            report.warnings.push(format!(
                "{}'s UIDLs are its message numbers, which it reuses: each stored message is recognised by its headers before it is skipped or deleted",
                conn.host
            ));
        } else if server.reused {
            report.warnings.push(format!(
                "{} was seen giving a known UIDL to another message: each stored message is recognised by its headers before it is skipped or deleted",
                conn.host
            ));
        }
        let doubtful_server = numbered || server.reused || server.unsure_quit;
        let mut plan = Plan::default();
        report.listed_unknown = 0;
        for (i, l) in listed.iter().enumerate() {
            let Some(k) = l.key.as_ref().and_then(|key| known.get(key)) else {
                report.listed_unknown += 1;
                plan.fetch.push(i);
                continue;
            };
            let key = l.key.as_deref().unwrap_or_default();
            let same_size = match k.list_size {
                Some(s) => s == l.size,
                // Stored before LIST's size was recorded: compare with the bytes stored.
                None => !size_far(l.size, k.size, k.size / 40),
            };
            if is_fallback(key) {
                // Keyed by its headers and size already; never deleted.
            } else if !k.held() && same_size && !doubtful_server {
                // Known on the server but not downloaded by popbridge (another tool fetched it;
                // `account import-state`): skipped, and never deleted — popbridge does not hold it.
            } else if !k.held() && same_size {
                // The same, on a server in doubt: skipped only once its headers are recognised
                // (a record without a fingerprint is left alone: neither read nor deleted).
                plan.verify.push(i);
            } else if !same_size || !k.exact {
                // Another message under a known UIDL, or one whose bytes were in doubt: read it again
                // (the body's digest tells whether it is the same one).
                plan.recheck.insert(l.n);
                plan.fetch.push(i);
            } else if doubtful_server || policy_allows_now(policy, k.first_seen, k.local_deleted, now) {
                plan.verify.push(i);
            } else {
                plan.trusted.insert(l.n);
            }
        }
        if !plan.verify.is_empty() {
            let store = ctx.store.clone();
            let top = self.caps.as_ref().is_some_and(|c| c.top);
            verify_fingerprints(conn, listed, &known, &mut plan, &mut self.flow, top, doubtful_server, store).await?;
        }
        plan.fetch.sort_unstable();

        // Stored earlier, still certainly the same message, and now due for deletion (never on a
        // fallback identity).
        let deletes: VecDeque<(u32, String)> = listed
            .iter()
            .filter(|l| plan.trusted.contains(&l.n))
            .filter_map(|l| {
                let key = l.key.as_ref()?;
                let k = known.get(key)?;
                // Never a message popbridge does not hold (imported or skipped identities).
                (k.held() && !is_fallback(key) && policy_allows_now(policy, k.first_seen, k.local_deleted, now))
                    .then(|| (l.n, key.clone()))
            })
            .collect();
        // To download: unknown identities, identities in doubt, and messages whose identity needs
        // their content.
        let mut to_fetch: Vec<usize> = Vec::new();
        for &i in &plan.fetch {
            let l = &listed[i];
            if l.size > account.pop.max_message_size {
                report.too_big.push((l.n, l.size));
                continue;
            }
            to_fetch.push(i);
        }
        // The account's per-cycle caps (the seed's provider limits cycles too): the rest waits for the next one.
        let mut capped = 0usize;
        if let Some(max) = account.max_messages_per_cycle
            && to_fetch.len() > max
        {
            capped += to_fetch.len() - max;
            to_fetch.truncate(max);
        }
        if let Some(max_bytes) = account.max_bytes_per_cycle {
            let mut sum = 0u64;
            let keep = to_fetch.iter().take_while(|&&i| {
                sum += listed[i].size;
                sum <= max_bytes
            });
            let n = keep.count().max(1).min(to_fetch.len());
            capped += to_fetch.len() - n;
            to_fetch.truncate(n);
        }
        report.capped = capped as u64;
        if capped > 0 {
            report.warnings.push(format!(
                "{capped} more message(s) wait for the next cycle (max_messages_per_cycle / max_bytes_per_cycle)"
            ));
        }
        if !report.too_big.is_empty() {
            let (n, size) = report.too_big[0];
            report.warnings.push(format!(
                "{} message(s) larger than max_message_size ({}) were left on the server (e.g. number {n}, {}); raise max_message_size in the account's [account.pop] section to fetch them",
                report.too_big.len(),
                human_bytes(account.pop.max_message_size),
                human_bytes(size)
            ));
        }
        Ok(Diff { server, known, plan, deletes, to_fetch, now, policy })
    }

    /// Downloads `diff.to_fetch` with pipelined RETR (as many in flight as the session's
    /// [`window::Window`] allows: it follows the link's bandwidth-delay product) into the store writer (at most [`SINK_BUDGET`]
    /// bytes waiting for it), and sends the DELEs in the same window: first those the diff found
    /// due, then each message the writer reports committed, if the policy allows it at once.
    /// Guarantees (DESIGN §4): a DELE is sent only for a committed message whose identity is exact
    /// and not a fallback; nothing received is dropped — the writer commits every message handed
    /// to it before it ends; a NOOP every [`KEEPALIVE`] while the session waits on local work with
    /// nothing in flight; progress reported per message. On a failure (the connection, the store
    /// writer) the connection is dropped without QUIT and the error returned.
    async fn transfer(mut self, diff: &mut Diff, progress: Option<ProgressFn>) -> Result<(Self, Deleted)> {
        let (ctx, ids) = (self.ctx, self.ids);
        let Diff { server, known, plan, deletes, to_fetch, now, policy } = diff;
        let (now, policy) = (*now, *policy);
        let (listed, report, conn, occ, flow) =
            (&mut self.listed, &mut self.report, &mut self.conn, &mut self.occ, &mut self.flow);
        if let Some(rtt) = conn.min_rtt() {
            flow.rtt_sample(rtt);
        }
        let mut prog = Progress {
            total_messages: to_fetch.len() as u64,
            total_bytes: to_fetch.iter().map(|&i| listed[i].size).sum(),
            ..Progress::default()
        };
        if let Some(p) = &progress {
            p(&prog);
        }

        let store = ctx.store.clone();
        let server_id = server.id;
        // `[account.deliver]`: into another mail server, with the same reports (`target`).
        let mut sink = if self.account.deliver.is_some() {
            target::spawn(ctx, self.account, store, ids, server_id).await?
        } else {
            let duplicates = self.account.duplicates;
            Sink::spawn(
                blocking(move || {
                    let mut d = Delivery::new(&store, ids, server_id)?;
                    d.set_duplicates(duplicates);
                    Ok(d)
                })
                .await?,
            )
        };
        let budget = Arc::new(Semaphore::new(SINK_BUDGET));
        let mut next = 0usize;
        // What is in flight, oldest first: the command and what it counts for in the window.
        let mut in_flight: VecDeque<(Sent, u64)> = VecDeque::new();
        let mut retrs_in_flight = 0usize;
        let mut sink_open = true;
        let mut sink_finished = false;
        let mut dele_ok: HashSet<String> = HashSet::new();
        let mut dele_pending: HashMap<u32, String> = HashMap::new();
        let by_n: HashMap<u32, usize> = listed.iter().enumerate().map(|(i, l)| (l.n, i)).collect();
        let mut failure: Option<Error> = None;
        // The store writer ended (its input is closed): its own error follows on `sink.rx`.
        let mut writer_gone = false;

        loop {
            // Keep the window full: deletions first (tiny answers), then downloads.
            if failure.is_none() {
                loop {
                    if !deletes.is_empty() && flow.room(window::SMALL_ANSWER) {
                        let Some((n, key)) = deletes.pop_front() else { break };
                        conn.send(&Command::Dele(n));
                        dele_pending.insert(n, key);
                        in_flight.push_back((Sent::Dele(n), window::SMALL_ANSWER));
                        flow.sent(window::SMALL_ANSWER);
                        continue;
                    }
                    if deletes.is_empty() && next < to_fetch.len() && flow.room(listed[to_fetch[next]].size) {
                        let l = &listed[to_fetch[next]];
                        conn.send_retr(l.n, l.size);
                        in_flight.push_back((Sent::Retr(l.n), l.size));
                        flow.sent(l.size);
                        retrs_in_flight += 1;
                        next += 1;
                        continue;
                    }
                    break;
                }
                if !sink_finished && next >= to_fetch.len() && retrs_in_flight == 0 {
                    sink.finish();
                    sink_finished = true;
                }
            } else if !sink_finished {
                sink.finish();
                sink_finished = true;
            }
            let want_reply = failure.is_none() && !in_flight.is_empty();
            tokio::select! {
                r = conn.reply(), if want_reply => {
                    let r = match r {
                        Ok(r) => r,
                        Err(e) => { failure = Some(e); continue; }
                    };
                    let Some((sent, size)) = in_flight.pop_front() else { continue };
                    flow.answered(size, std::time::Instant::now());
                    match sent {
                        Sent::Retr(n) => {
                            retrs_in_flight -= 1;
                            match (r.status, r.body) {
                                (Status::Ok, Body::Data(raw)) => {
                                    // Far from LIST's size: a server that rewrites the message (Courier
                                    // without UTF8), approximate sizes — or the wrong message. Stored as
                                    // received, so no mail is held back, but never deleted on.
                                    let exact = !size_mismatch(size, &raw);
                                    if !exact {
                                        report.size_mismatch.push((n, size, raw.len() as u64));
                                    }
                                    prog.done_messages += 1;
                                    prog.done_bytes += raw.len() as u64;
                                    if let Some(p) = &progress { p(&prog); }
                                    let i = by_n.get(&n).copied();
                                    let key = match i.and_then(|i| listed[i].key.clone()) {
                                        Some(k) => k,
                                        None => {
                                            let k = occ.key(fallback_digest(&raw, size));
                                            if let Some(i) = i { listed[i].key = Some(k.clone()); }
                                            k
                                        }
                                    };
                                    let want = raw.len().clamp(1, SINK_BUDGET) as u32;
                                    let permit = budget.clone().acquire_many_owned(want).await.ok();
                                    let identity = Identity {
                                        fingerprint: keys::header_fingerprint(&raw),
                                        exact,
                                        recheck: plan.recheck.contains(&n),
                                        ..Identity::new(&key, size)
                                    };
                                    let msg = ToSink::Message { n, identity, raw, fetched_at: crate::store::now(), permit };
                                    if sink.tx.send(msg).is_err() {
                                        writer_gone = true;
                                        failure.get_or_insert_with(|| Error::other("the store writer stopped unexpectedly"));
                                    }
                                }
                                (Status::Ok, Body::Oversized { bytes_seen }) => {
                                    report.too_big.push((n, bytes_seen));
                                    report.warnings.push(format!("message {n} turned out larger than max_message_size ({}); left on the server", human_bytes(bytes_seen)));
                                }
                                (_, _) => report.warnings.push(format!(
                                    "{} could not send message {n} (\"{}\"); it stays on the server and is tried again next time",
                                    conn.host, r.text
                                )),
                            }
                        }
                        Sent::Dele(n) => {
                            if let Some(key) = dele_pending.remove(&n) {
                                if r.status == Status::Ok { dele_ok.insert(key); }
                                else { report.warnings.push(format!("{} refused to delete message {n}: \"{}\"", conn.host, r.text)); }
                            }
                        }
                        _ => {}
                    }
                }
                m = sink.rx.recv(), if sink_open => match m {
                    Some(FromSink::Committed(pairs)) => {
                        for (n, stored) in pairs {
                            let rechecked = plan.recheck.contains(&n);
                            // Other bytes under a key popbridge was certain of: the server reused it.
                            // (An uncertain identity corrected is not a sign of that.)
                            if stored.reused && known.get(&stored.key).is_some_and(|k| k.exact) {
                                plan.changed += 1;
                            }
                            // A recheck that found the stored bytes again: the same message as before,
                            // with its first sighting and local state.
                            // (One popbridge never held is new here, whatever it was.)
                            let before =
                                known.get(&stored.key).filter(|k| rechecked && !stored.reused && k.held());
                            if stored.duplicate.is_some() {
                                report.duplicates += 1;
                            }
                            match before {
                                Some(_) => {}
                                None if stored.same_content => report.same_content += 1,
                                None if stored.duplicate == Some(Duplicate::Hidden) => report.duplicates_hidden += 1,
                                None => {
                                    report.new_messages += 1;
                                    report.new_bytes += stored.size;
                                }
                            }
                            let (first_seen, local_deleted) = before.map_or((now, false), |k| (k.first_seen, k.local_deleted));
                            // DELE only what is certainly that message (DESIGN §4).
                            if stored.exact
                                && !is_fallback(&stored.key)
                                && policy_allows_now(policy, first_seen, local_deleted, crate::store::now())
                            {
                                deletes.push_back((n, stored.key));
                            }
                        }
                    }
                    Some(FromSink::Known(_)) => {}
                    // The writer's own error (a full disk, say) explains why it stopped.
                    Some(FromSink::Failed(e)) if writer_gone => failure = Some(e),
                    Some(FromSink::Failed(e)) => { failure.get_or_insert(e); }
                    None => sink_open = false,
                },
                _ = tokio::time::sleep(KEEPALIVE), if failure.is_none() && in_flight.is_empty() && sink_open => {
                    conn.send(&Command::Noop);
                    in_flight.push_back((Sent::Noop, window::SMALL_ANSWER));
                    flow.sent(window::SMALL_ANSWER);
                }
                else => break,
            }
        }
        drop(sink);

        if let Some(e) = failure {
            // No QUIT: the server forgets every DELE of this session (RFC 1939 §6); all committed
            // messages are known next time, so nothing is fetched twice.
            self.conn.abort().await;
            return Err(e);
        }
        Ok((self, dele_ok))
    }

    /// The session's closing: the warnings that sum up what was received, then QUIT — the
    /// moment the server's deletions take effect (RFC 1939 §6). Guarantees: what the store
    /// remembers of the server (a reused UIDL seen; a QUIT left unconfirmed, after which the next
    /// session checks every known identity before trusting it) is recorded whatever QUIT said;
    /// `report.deleted` counts only deletions an OK to QUIT made; identities the server no longer
    /// holds are forgotten only once the server has answered QUIT (without an answer, nothing is).
    async fn finish(mut self, diff: Diff, mut dele_ok: Deleted) -> Result<(Report, String)> {
        let Diff { server, plan, .. } = diff;
        let (report, conn) = (&mut self.report, &mut self.conn);
        if report.same_content > 0 {
            report.warnings.push(format!(
                "{} message(s) came with new UIDLs but the exact content of stored ones ({} changes its UIDLs): kept once",
                report.same_content, conn.host
            ));
        }
        if let Some(&(n, said, got)) = report.size_mismatch.first() {
            report.warnings.push(format!(
                "{} sent {} message(s) whose size differs from what LIST announced (e.g. number {n}: {said} announced, {got} received): stored as received; popbridge never deletes them from the server",
                conn.host,
                report.size_mismatch.len()
            ));
        }
        if plan.changed > 0 {
            report.warnings.push(format!(
                "{} gave {} known UIDL(s) to other messages: they were stored as new messages, and nothing was deleted on the old identities",
                conn.host, plan.changed
            ));
        }
        let reused = plan.changed > 0;
        let quit = conn.call(&Command::Quit).await;
        // Whether the server's QUIT was confirmed: if not, the deletions may have happened, and the
        // next session checks every known identity before trusting it.
        let unsure_quit = quit.is_err();
        let store = self.ctx.store.clone();
        blocking(move || store.note_pop_server(server.id, reused, unsure_quit)).await?;
        match quit {
            Ok(r) if r.status == Status::Ok => {
                report.deleted = dele_ok.len() as u64;
            }
            Ok(r) => {
                report.warnings.push(format!(
                    "{} did not complete the session (\"{}\"): it deleted nothing this time; popbridge retries next time",
                    conn.host, r.text
                ));
                dele_ok.clear();
            }
            Err(e) => {
                report.warnings.push(format!(
                    "the session ended without the server's confirmation ({}); deletions are checked again next time",
                    e.message
                ));
                self.conn.abort().await;
                return Ok((self.report, self.caps_text));
            }
        }
        // Forget what the server no longer holds (deleted now, or gone by other means).
        let on_server: HashSet<String> =
            self.listed.into_iter().filter_map(|l| l.key).filter(|k| !dele_ok.contains(k)).collect();
        let store = self.ctx.store.clone();
        blocking(move || store.prune_uidls(server.id, &on_server)).await?;
        Ok((self.report, self.caps_text))
    }
}

/// How the cycle treats the listed messages (indexes into the listing, or message numbers).
#[derive(Default)]
struct Plan {
    /// To download: unknown identities and those in doubt.
    fetch: Vec<usize>,
    /// Known identities whose message must be read again and compared (`Identity::recheck`).
    recheck: HashSet<u32>,
    /// Known identities to check against their header fingerprint before they are trusted.
    verify: Vec<usize>,
    /// Known identities that certainly still name the stored message: skipped, and deletable.
    trusted: HashSet<u32>,
    /// Known UIDLs found naming another message this session (committed as new messages).
    changed: u64,
}

/// `TOP n 0` for each identity in `plan.verify`: the same header fingerprint as stored → trusted;
/// another one → read again as a possibly new message; no TOP → read again, which the body's
/// digest decides. An identity with nothing to compare with (stored before fingerprints were
/// recorded, and deleted locally since) is trusted on its size as before — unless the server is
/// in doubt: then it is left alone (neither deleted nor read again).
#[allow(clippy::too_many_arguments)]
async fn verify_fingerprints(
    conn: &mut Pop3Conn,
    listed: &[Listed],
    known: &HashMap<String, crate::store::accounts::KnownUidl>,
    plan: &mut Plan,
    flow: &mut window::Window,
    top: bool,
    doubtful_server: bool,
    store: Arc<Store>,
) -> Result<()> {
    let recheck = |plan: &mut Plan, i: usize| {
        plan.recheck.insert(listed[i].n);
        plan.fetch.push(i);
    };
    // What each one's headers were when it was stored.
    let mut todo: Vec<(usize, Vec<u8>)> = Vec::new();
    for i in std::mem::take(&mut plan.verify) {
        let Some(k) = listed[i].key.as_ref().and_then(|key| known.get(key)) else { continue };
        let stored = match (&k.fingerprint, k.body_id) {
            (Some(f), _) if !f.is_empty() => Some(f.clone()),
            (_, Some(body)) => {
                let store = store.clone();
                blocking(move || store.body_head(body)).await?.map(|h| keys::header_fingerprint(&h))
            }
            _ => None,
        };
        match stored {
            Some(f) if top => todo.push((i, f)),
            Some(_) => recheck(plan, i),
            None if doubtful_server => {}
            None => {
                plan.trusted.insert(listed[i].n);
            }
        }
    }
    let numbers: Vec<u32> = todo.iter().map(|(i, _)| listed[*i].n).collect();
    window::tops(conn, &numbers, flow, |j, r| {
        let (i, stored) = &todo[j];
        match (r.status, r.body) {
            (Status::Ok, Body::Data(head)) if keys::header_fingerprint(&head) == *stored => {
                plan.trusted.insert(listed[*i].n);
            }
            _ => recheck(plan, *i),
        }
        true
    })
    .await
}

/// Whether a RETR answer's size is too far from the size LIST announced to be the same message.
/// Servers that count LF line ends (or add a final CRLF) differ by about one byte per line.
fn size_mismatch(announced: u64, raw: &[u8]) -> bool {
    let lines = memchr::memchr_iter(b'\n', raw).count() as u64;
    size_far(announced, raw.len() as u64, lines)
}

/// `got` is further from `announced` than `lines` line ends (LF counted as CRLF) and a final CRLF.
fn size_far(announced: u64, got: u64, lines: u64) -> bool {
    let slack = lines + 64;
    got + slack < announced || got > announced + slack
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(caps: &str) -> Account {
        let text = format!(
            "[local]\nuser = \"me\"\npassword = \"x\"\n\n[[account]]\nname = \"Mail\"\nemail = \"me@example.org\"\n{caps}[account.pop]\nhost = \"pop.example.org\"\nuser = \"me\"\npassword = \"pw\"\n"
        );
        crate::config::parse(&text, std::path::Path::new("/nonexistent/config.toml"), 0o600).unwrap().accounts[0]
            .clone()
    }

    /// A session on a server that announces LOGIN-DELAY 300 (as Gmail does).
    fn session(listed: u64, unknown: u64, new: u64) -> Report {
        Report {
            server_messages: listed,
            listed_unknown: unknown,
            new_messages: new,
            sessions: 1,
            login_delay: Some(300),
            ..Report::default()
        }
    }

    #[test]
    fn a_listing_of_only_unknown_messages_looks_partial() {
        let a = account("");
        assert!(session(250, 250, 250).listing_looks_partial(&a));
        assert!(session(100, 100, 100).listing_looks_partial(&a));
        assert!(!session(99, 99, 99).listing_looks_partial(&a), "a short listing is complete");
        assert!(!session(250, 249, 249).listing_looks_partial(&a), "a known message was listed: everything is shown");
        assert!(!session(250, 250, 0).listing_looks_partial(&a), "nothing new stored (same content under new UIDLs)");
        assert!(!session(0, 0, 0).listing_looks_partial(&a));
        let gmail = Report { login_delay: Some(300), ..session(250, 250, 250) };
        assert!(gmail.listing_looks_partial(&a), "Gmail announces LOGIN-DELAY 300 and lists 250 at a time");
        let expire = Report { login_delay: None, expires_downloaded: true, ..session(250, 250, 250) };
        assert!(expire.listing_looks_partial(&a), "EXPIRE 0: downloaded messages are hidden");
        let plain = Report { login_delay: None, ..session(1000, 1000, 1000) };
        assert!(!plain.listing_looks_partial(&a), "a server that announces neither lists all it has");
        let capped = Report { capped: 10, ..session(250, 250, 240) };
        assert!(!capped.listing_looks_partial(&a));
        assert!(!session(250, 250, 250).listing_looks_partial(&account("max_messages_per_cycle = 500\n")));
    }

    #[test]
    fn later_sessions_add_up() {
        let mut r = Report { warnings: vec!["w".into()], new_bytes: 10, ..session(250, 250, 250) };
        r.absorb(Report { warnings: vec!["w".into(), "x".into()], new_bytes: 5, ..session(3, 3, 3) });
        assert_eq!((r.new_messages, r.new_bytes, r.sessions, r.server_messages), (253, 15, 2, 3));
        assert_eq!(r.warnings, ["w", "x"], "a warning repeated by each session is said once");
    }
}
