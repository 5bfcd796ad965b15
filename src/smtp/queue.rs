//! The outbound queue worker: delivers outbox rows through each account's upstream server.
//!
//! It waits for "a message was queued" (kick), the next row's due time, or shutdown — whichever
//! comes first — and delivers due rows, a few at a time. A temporary failure (4xx, network, a
//! wrong password the user will fix) is retried later with a growing delay for up to three days;
//! a permanent one (5xx), or three days of failures, becomes a notice in the local INBOX. A
//! message is never dropped without that notice. A crash during a delivery means the message is
//! delivered again after restart (at least once): its Message-ID is the same, so the recipients'
//! servers and clients can recognise the copy.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};

use super::notice;
use super::policy;
use super::upstream::{self, Failure};
use crate::store::outbox::Queued;
use crate::store::{Store, now};

/// Deliveries at the same time (across accounts).
pub const CONCURRENCY: usize = 4;
/// How long a message keeps being retried before the user is told it could not be sent.
pub const GIVE_UP_AFTER: i64 = 3 * 86_400;

/// Delay before attempt `n + 1` after `n` failures: 1, 2, 5, 10, 20, 40 minutes, then 1, 2, 4 hours.
pub fn backoff(attempts: i64) -> i64 {
    // For tests and impatient users: a fixed retry delay in seconds.
    if let Some(s) = std::env::var("POPBRIDGE_RETRY_SECONDS").ok().and_then(|v| v.parse::<i64>().ok()) {
        return s.max(1);
    }
    const STEPS: [i64; 9] = [60, 120, 300, 600, 1200, 2400, 3600, 7200, 14_400];
    STEPS[(attempts.max(0) as usize).min(STEPS.len() - 1)]
}

pub struct Queue {
    pub store: Arc<Store>,
    /// The config, replaced on SIGHUP.
    pub live: Arc<crate::app::Live>,
    pub kick: Arc<Notify>,
    pub hostname: String,
}

use crate::blocking;

pub async fn run(q: Arc<Queue>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let busy: Arc<Mutex<HashSet<i64>>> = Arc::default();
    loop {
        let store = q.store.clone();
        let due = blocking(move || store.due(64)).await.unwrap_or_default();
        for row in due {
            let fresh = busy.lock().map(|mut b| b.insert(row.id)).unwrap_or(false);
            if !fresh {
                continue;
            }
            let Ok(permit) = slots.clone().acquire_owned().await else { return };
            let (q2, busy2) = (q.clone(), busy.clone());
            tokio::spawn(async move {
                let id = row.id;
                deliver(&q2, row).await;
                if let Ok(mut b) = busy2.lock() {
                    b.remove(&id);
                }
                q2.kick.notify_one();
                drop(permit);
            });
        }
        let store = q.store.clone();
        let next = blocking(move || store.next_due()).await.ok().flatten();
        let wait = match next {
            Some(t) => Duration::from_secs((t - now()).clamp(1, 3600) as u64),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = q.kick.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One delivery attempt of one outbox row, and its bookkeeping.
pub async fn deliver(q: &Queue, row: Queued) {
    let config = q.live.config();
    let Some(account) = config.account(&row.account).cloned() else {
        give_up(
            q,
            &row,
            &row.rcpts
                .iter()
                .map(|r| (r.clone(), format!("account {} is no longer configured", row.account)))
                .collect::<Vec<_>>(),
        )
        .await;
        return;
    };
    let server = match &account.smtp {
        Some(s) if s.relay => config.relay.clone(),
        other => other.clone(),
    };
    let Some(server) = server else {
        retry(q, &row, &row.rcpts, &format!("account {} has no outgoing server configured", account.name)).await;
        return;
    };
    let password = match account.smtp_password(&server) {
        Some(src) => match crate::config::resolve_secret(&config.path, config.mode, src, "SMTP").await {
            Ok(p) => Some(p),
            Err(e) => {
                retry(q, &row, &row.rcpts, &e.message).await;
                return;
            }
        },
        None => None,
    };
    match upstream::deliver(&server, password.as_ref(), &q.hostname, &row.mail_from, &row.rcpts, &row.raw).await {
        Ok(d) => {
            let refused: Vec<(String, String)> = d
                .rejected
                .iter()
                .filter(|r| r.permanent)
                .map(|r| (r.rcpt.clone(), format!("{} {}", r.code, r.text)))
                .collect();
            let later: Vec<String> = d.rejected.iter().filter(|r| !r.permanent).map(|r| r.rcpt.clone()).collect();
            if !refused.is_empty() {
                notify_failure(q, &row, &refused).await;
            }
            let store = q.store.clone();
            let id = row.id;
            if later.is_empty() {
                let _ = blocking(move || store.outbox_sent(id)).await;
                tracing::info!("smtp: message {} delivered via {}:{}", row.id, server.host, server.port);
            } else {
                let why = d
                    .rejected
                    .iter()
                    .filter(|r| !r.permanent)
                    .map(|r| format!("{}: {} {}", r.rcpt, r.code, r.text))
                    .collect::<Vec<_>>()
                    .join("; ");
                retry(q, &row, &later, &why).await;
            }
        }
        Err(Failure { error, permanent, .. }) => {
            tracing::warn!("smtp: message {}: {}", row.id, error.message);
            if permanent {
                give_up(q, &row, &row.rcpts.iter().map(|r| (r.clone(), error.message.clone())).collect::<Vec<_>>())
                    .await;
            } else {
                retry(q, &row, &row.rcpts, &error.message).await;
            }
        }
    }
}

async fn retry(q: &Queue, row: &Queued, rcpts: &[String], why: &str) {
    if now() - row.created_at >= GIVE_UP_AFTER {
        let failures: Vec<(String, String)> =
            rcpts.iter().map(|r| (r.clone(), format!("still failing after 3 days: {why}"))).collect();
        give_up(q, row, &failures).await;
        return;
    }
    let store = q.store.clone();
    let (id, rcpts, next, why) = (row.id, rcpts.to_vec(), now() + backoff(row.attempts), why.to_string());
    let _ = blocking(move || store.outbox_retry(id, &rcpts, next, &why)).await;
}

async fn give_up(q: &Queue, row: &Queued, failures: &[(String, String)]) {
    notify_failure(q, row, failures).await;
    let store = q.store.clone();
    let (id, why) = (row.id, failures.first().map(|f| f.1.clone()).unwrap_or_default());
    let _ = blocking(move || store.outbox_failed(id, &why)).await;
}

/// The bounce notice in the local INBOX: what, to whom, and the server's reply.
async fn notify_failure(q: &Queue, row: &Queued, failures: &[(String, String)]) {
    let headers = row.raw[..policy::header_end(&row.raw)].to_vec();
    let msg = notice::bounce(&row.mail_from, row.subject.as_deref(), failures, &headers, &row.account);
    let store = q.store.clone();
    let _ = blocking(move || store.deliver_local("INBOX", &msg, 0)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), 60);
        assert!(backoff(3) > backoff(2));
        assert_eq!(backoff(50), 14_400);
    }
}
