//! The daemon's fetch schedule: one task per account that waits for "the next due time, or a
//! kick" (the user's `popbridge fetch`, a mail client looking at the account's mailbox), fetches,
//! and tells the user — in the mail client — when the account needs attention.
//!
//! - Active accounts are fetched every `interval` (never more often than the server's LOGIN-DELAY),
//!   with up to 10% jitter so several accounts do not hit their servers in step.
//! - Connection and temporary failures back off exponentially: 1, 2, 4 … minutes, at most an hour.
//! - Three definite authentication failures, or a certificate error, disable the account: it is not
//!   contacted again until its settings change (`account set-password`, a new `pin_sha256` …; it is
//!   then tried at once after the reload) — or the user asks for a fetch explicitly.
//! - A disabled account, or one failing for over an hour, gets one notice in the local INBOX and an
//!   `[ALERT]` to connected IMAP sessions; when it recovers, one short "working again" notice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::{Context, Progress, ProgressFn, Report, blocking, health};
use crate::config::Account;
use crate::error::Result;
use crate::store::now;

/// A request to fetch now.
pub struct Kick {
    /// The user asked (`popbridge fetch`): run even if the account is disabled or was just fetched.
    /// Otherwise (a mail client looking) only if the last fetch is over `KICK_MIN_AGE` old.
    pub force: bool,
    pub reply: Option<oneshot::Sender<Result<Report>>>,
}

/// A mail client opening an account's mailbox triggers a fetch only if the last one is this old.
pub const KICK_MIN_AGE: i64 = 60;
/// Backoff ceiling (DESIGN: at most an hour between attempts of a failing account).
pub const MAX_BACKOFF: i64 = 3600;
/// However the state looks, scheduled attempts are at least this far apart (a failure that could
/// not be recorded must not turn into a tight loop).
pub const MIN_SPACING: Duration = Duration::from_secs(60);
/// A disabled account's state is read again this often: `account auth` (OAuth 2) and
/// `account set-password` enable it in the store, and the daemon then resumes it on its schedule
/// without a reload.
pub const DISABLED_RECHECK: Duration = Duration::from_secs(60);

/// A running account scheduler.
pub struct Handle {
    pub kick: mpsc::Sender<Kick>,
    pub fingerprint: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// Stops the scheduler; a fetch in progress is abandoned at a safe point (what was received is
    /// committed; without QUIT the server deletes nothing).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

pub fn spawn(
    ctx: Context,
    account: Account,
    alerts: broadcast::Sender<String>,
    shutdown: watch::Receiver<bool>,
) -> Handle {
    let (kick, kicks) = mpsc::channel(16);
    let (stop, stop_rx) = watch::channel(false);
    let fingerprint = account.fingerprint();
    let task = tokio::spawn(run(ctx, account, kicks, alerts, stop_rx, shutdown));
    Handle { kick, fingerprint, stop, task }
}

/// Seconds to wait after `failures` consecutive failures.
pub fn backoff(failures: i64) -> i64 {
    (60i64 << (failures.clamp(1, 7) - 1)).min(MAX_BACKOFF)
}

fn jitter(interval: i64) -> i64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let span = (interval / 10).max(1);
    i64::from(u32::from_le_bytes(b)) % span
}

/// When the account is due next (unix seconds), or `None` while it is disabled.
pub fn next_due(h: &crate::store::accounts::Health, account: &Account) -> Option<i64> {
    let last = h.last_attempt.unwrap_or(0);
    let login_delay = h.login_delay.unwrap_or(0);
    match h.state.as_str() {
        "disabled" => None,
        "backoff" => Some(last + backoff(h.consecutive_failures).max(login_delay)),
        _ => {
            let interval = (account.interval.as_secs() as i64).max(login_delay);
            Some(last + interval + if last == 0 { 0 } else { jitter(interval) })
        }
    }
}

async fn run(
    ctx: Context,
    account: Account,
    mut kicks: mpsc::Receiver<Kick>,
    alerts: broadcast::Sender<String>,
    mut stop: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (store, name) = (ctx.store.clone(), account.name.clone());
    let Ok(ids) = blocking(move || store.ensure_account(&name)).await else { return };
    // Settings changed since the account was disabled or failed (a new password, pin, CA): it is
    // enabled again and tried at once (as far as LOGIN-DELAY allows), not an interval later.
    let (store, fp) = (ctx.store.clone(), account.fingerprint());
    let mut retry_now = matches!(blocking(move || store.reconcile_config(ids.account, &fp)).await, Ok(true));
    if retry_now {
        tracing::info!("{}: settings changed; the account is enabled again and tried now", account.name);
    }
    let mut last_run: Option<tokio::time::Instant> = None;
    // A cycle's warnings go to the log when they are new, not again every cycle.
    let mut warned: Vec<String> = Vec::new();
    loop {
        let store = ctx.store.clone();
        let Ok(h) = blocking(move || store.health(ids.account)).await else { return };
        let mut due = next_due(&h, &account);
        if std::mem::take(&mut retry_now) {
            due = Some(now().max(h.last_attempt.unwrap_or(0) + h.login_delay.unwrap_or(0)));
        }
        if let (Some(d), Some(l)) = (due, last_run) {
            let earliest = now() + (MIN_SPACING.saturating_sub(l.elapsed())).as_secs() as i64;
            due = Some(d.max(earliest));
        }
        let store = ctx.store.clone();
        let _ = blocking(move || store.set_next_fetch(ids.account, due)).await;
        let wait = due.map(|d| Duration::from_secs((d - now()).max(0) as u64)).unwrap_or(DISABLED_RECHECK);
        let kick = tokio::select! {
            _ = tokio::time::sleep(wait) => None,
            k = kicks.recv() => match k {
                Some(k) => Some(k),
                None => return,
            },
            _ = stop.changed() => return,
            _ = shutdown.changed() => return,
        };
        if let Some(k) = &kick
            && !k.force
            && (h.state == "disabled" || h.last_attempt.is_some_and(|t| now() - t < KICK_MIN_AGE))
        {
            continue;
        }
        // The recheck of a disabled account: read its state again, fetch nothing.
        if kick.is_none() && due.is_none() {
            continue;
        }
        last_run = Some(tokio::time::Instant::now());
        let result = tokio::select! {
            r = cycle(&ctx, &account, ids.account) => r,
            _ = stop.changed() => return,
            _ = shutdown.changed() => return,
        };
        match &result {
            Ok(r) => {
                if r.new_messages > 0 {
                    tracing::info!("{}: {} new message(s)", account.name, r.new_messages);
                }
                for w in r.warnings.iter().filter(|w| !warned.contains(w)) {
                    tracing::warn!("{}: {w}", account.name);
                }
                warned = r.warnings.clone();
            }
            Err(e) => tracing::warn!("{}", e.message),
        }
        // The notice (and the ALERT) first: whoever asked for this fetch then sees them.
        health::after_cycle(&ctx, &account, ids.account, &alerts).await;
        if let Some(Kick { reply: Some(tx), .. }) = kick {
            let _ = tx.send(result);
        }
    }
}

/// One fetch cycle, with its progress written to the store every two seconds (for `status`).
async fn cycle(ctx: &Context, account: &Account, id: i64) -> Result<Report> {
    let shared: Arc<Mutex<Option<Progress>>> = Arc::default();
    let sink = shared.clone();
    let progress: ProgressFn = Arc::new(move |p: &Progress| {
        if let Ok(mut s) = sink.lock() {
            *s = Some(p.clone());
        }
    });
    let store = ctx.store.clone();
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            let p = shared.lock().ok().and_then(|s| s.clone());
            if let Some(p) = p.filter(|p| p.total_messages > 0) {
                let store = store.clone();
                let _ = blocking(move || {
                    store.set_progress(id, Some((p.done_messages, p.total_messages, p.done_bytes, p.total_bytes)))
                })
                .await;
            }
        }
    });
    let r = super::fetch(ctx, account, Some(progress)).await;
    writer.abort();
    let store = ctx.store.clone();
    let _ = blocking(move || store.set_progress(id, None)).await;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), 60);
        assert_eq!(backoff(2), 120);
        assert_eq!(backoff(6), 1920);
        assert_eq!(backoff(7), 3600);
        assert_eq!(backoff(40), 3600);
    }
}
