//! The outbound queue worker: delivers outbox rows through each account's upstream server.
//!
//! It waits for "a message was queued" (kick), the next row's due time, or shutdown — whichever
//! comes first — and delivers due rows, a few at a time. A temporary failure (4xx, network, a
//! wrong password the user will fix) is retried later with a growing delay (`[outbox] retry`:
//! 1, 2, 5, 10, 20, 40 minutes, 1, 2, 4 hours, then every 4 hours) until `give_up_after` (three
//! days); a permanent one (5xx), or that long of failures, becomes a notice in the local INBOX. A
//! message is never dropped without that notice. A crash during a delivery means the message is
//! delivered again after restart (at least once) — unless popbridge had already read the
//! server's 250 to the end of DATA: the outcome is recorded before QUIT. The one window left is
//! between the server's commit and popbridge reading its 250; the copy then carries the same
//! Message-ID, so the recipients' servers and clients can recognise it.
//!
//! Time comes from a [`Clock`]: the system clock in the daemon, a manual one in the tests that
//! run the whole schedule (see the tests at the end of this file).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use super::clock::Clock;
use super::notice;
use super::upstream::{self, Failure};
use crate::config::SmtpServer;
use crate::store::Store;
use crate::store::outbox::Queued;

/// Deliveries at the same time (across accounts).
pub const CONCURRENCY: usize = 4;
/// Rows taken from the outbox per pass (more wait for the next pass, right after).
const BATCH: usize = 64;
/// At shutdown, how long deliveries under way may take to finish (the daemon waits as long for
/// each of its other tasks, `app::Running::stop`). One cut off by it was not recorded: its row
/// is still queued and goes out again at the next start.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Queue {
    pub store: Arc<Store>,
    /// The config, replaced on SIGHUP (its `[outbox]` holds the retry schedule).
    pub live: Arc<crate::config::Live>,
    pub kick: Arc<Notify>,
    pub hostname: String,
    /// The OAuth 2 token files (`Paths::oauth_dir`): accounts whose SMTP login is their grant.
    pub oauth_dir: std::path::PathBuf,
}

use crate::blocking;

/// The worker, on the system clock.
pub async fn run(q: Arc<Queue>, shutdown: watch::Receiver<bool>) {
    run_with_clock(q, Clock::System, shutdown).await
}

/// The worker: delivers due rows (a few at a time), then waits for the next due time, a kick (a
/// message was queued, a delivery finished) or shutdown, whichever comes first. At shutdown it
/// lets the deliveries under way finish (at most [`DRAIN_TIMEOUT`]) before it returns: a server
/// that has the message and is about to say 250 must not be cut off, or the message goes out
/// twice (it stays queued, and is sent again at the next start).
pub async fn run_with_clock(q: Arc<Queue>, clock: Clock, shutdown: watch::Receiver<bool>) {
    let mut deliveries = JoinSet::new();
    schedule(&q, &clock, shutdown, &mut deliveries).await;
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while deliveries.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        // Dropping the set aborts them; their rows are still queued (only settle changes them).
        tracing::warn!(
            "smtp: {} delivery(ies) still under way after {}s at shutdown; they are retried at the next start",
            deliveries.len(),
            DRAIN_TIMEOUT.as_secs()
        );
    }
}

/// The loop of [`run_with_clock`] until shutdown; the deliveries it starts go into `deliveries`.
async fn schedule(q: &Arc<Queue>, clock: &Clock, mut shutdown: watch::Receiver<bool>, deliveries: &mut JoinSet<()>) {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let busy: Arc<Mutex<HashSet<i64>>> = Arc::default();
    loop {
        // Finished deliveries (each kicked us) leave the set: it holds those under way.
        while deliveries.try_join_next().is_some() {}
        let (store, now) = (q.store.clone(), clock.now());
        let due = blocking(move || store.due(BATCH, now)).await.unwrap_or_default();
        for row in due {
            let fresh = busy.lock().map(|mut b| b.insert(row.id)).unwrap_or(false);
            if !fresh {
                continue;
            }
            let Ok(permit) = slots.clone().acquire_owned().await else { return };
            let (q2, busy2, clock2) = (q.clone(), busy.clone(), clock.clone());
            deliveries.spawn(async move {
                let id = row.id;
                deliver(&q2, &clock2, row).await;
                if let Ok(mut b) = busy2.lock() {
                    b.remove(&id);
                }
                q2.kick.notify_one();
                drop(permit);
            });
        }
        let store = q.store.clone();
        let next = blocking(move || store.next_due()).await.ok().flatten();
        // A row still due now is being delivered (or waits for a slot): its delivery kicks us when
        // it ends; look again in a second at the latest.
        let deadline = next.map(|t| t.max(clock.now() + 1));
        tokio::select! {
            // A message was queued, or a delivery finished.
            _ = q.kick.notified() => {}
            // The next row is due (the system clock also wakes hourly: see clock::MAX_NAP).
            _ = clock.sleep_until(deadline) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One delivery attempt of one outbox row, and its bookkeeping.
pub async fn deliver(q: &Queue, clock: &Clock, row: Queued) {
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
        retry(q, clock, &row, &row.rcpts, &format!("account {} has no outgoing server configured", account.name)).await;
        return;
    };
    // The password, or the account's OAuth 2 access token (refreshed first if due; a provider
    // that is down, or a revoked grant, leaves the message queued for the next attempt).
    let login = match crate::oauth::smtp_credential(&config.path, config.mode, &q.oauth_dir, &account, &server).await {
        Ok(l) => l,
        Err(e) => {
            retry(q, clock, &row, &row.rcpts, &e.message).await;
            return;
        }
    };
    // The outcome is recorded before QUIT (see upstream::deliver_then): a crash while the server
    // answers QUIT must not send the message twice.
    let (from, rcpts) = (&row.mail_from, &row.rcpts);
    // A spooled message's body is read from the outbox a chunk at a time as it is sent.
    let body = match row.body {
        None => upstream::Body::Bytes(&row.raw),
        Some((len, body_8bit)) => upstream::Body::Spooled {
            head: &row.raw,
            len,
            body_8bit,
            chunks: super::spool::chunks(q.store.clone(), row.id),
        },
    };
    let record = async |outcome: &Result<upstream::Delivered, Failure>| settle(q, clock, &row, &server, outcome).await;
    let _ = upstream::deliver_body_then(&server, login.as_ref(), &q.hostname, from, rcpts, body, record).await;
}

/// The bookkeeping of one attempt: sent, retried (all or some recipients), or given up with a notice.
async fn settle(
    q: &Queue,
    clock: &Clock,
    row: &Queued,
    server: &SmtpServer,
    outcome: &Result<upstream::Delivered, Failure>,
) {
    match outcome {
        Ok(d) => {
            let refused: Vec<(String, String)> = d
                .rejected
                .iter()
                .filter(|r| r.permanent)
                .map(|r| (r.rcpt.clone(), format!("{} {}", r.code, r.text)))
                .collect();
            let later: Vec<String> = d.rejected.iter().filter(|r| !r.permanent).map(|r| r.rcpt.clone()).collect();
            if !refused.is_empty() {
                notify_failure(q, row, &refused).await;
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
                retry(q, clock, row, &later, &why).await;
            }
        }
        Err(Failure { error, permanent, .. }) => {
            let permanent = *permanent;
            tracing::warn!("smtp: message {}: {}", row.id, error.message);
            if permanent {
                give_up(q, row, &row.rcpts.iter().map(|r| (r.clone(), error.message.clone())).collect::<Vec<_>>())
                    .await;
            } else {
                retry(q, clock, row, &row.rcpts, &error.message).await;
            }
        }
    }
}

/// A temporary failure: try again after the next delay of the schedule — or, once `give_up_after`
/// has passed since the message was accepted, tell the user and stop. The last attempt is made
/// exactly at that moment (the delay is cut short to meet it), so "three days" means three days.
async fn retry(q: &Queue, clock: &Clock, row: &Queued, rcpts: &[String], why: &str) {
    let schedule = q.live.config().outbox.clone();
    let now = clock.now();
    let give_up_at = row.created_at.saturating_add(secs(schedule.give_up_after));
    if now >= give_up_at {
        let after = spell(schedule.give_up_after);
        let failures: Vec<(String, String)> =
            rcpts.iter().map(|r| (r.clone(), format!("still failing after {after}: {why}"))).collect();
        give_up(q, row, &failures).await;
        return;
    }
    let failed = u32::try_from(row.attempts + 1).unwrap_or(u32::MAX);
    let next = now.saturating_add(secs(schedule.delay(failed))).min(give_up_at);
    let store = q.store.clone();
    let (id, rcpts, why) = (row.id, rcpts.to_vec(), why.to_string());
    let _ = blocking(move || store.outbox_retry(id, &rcpts, next, &why)).await;
}

/// "3 days", "90 minutes", "45 seconds": for the notice.
fn spell(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        _ if s >= 86_400 && s.is_multiple_of(86_400) => (s / 86_400, "day"),
        _ if s >= 3600 && s.is_multiple_of(3600) => (s / 3600, "hour"),
        _ if s >= 60 && s.is_multiple_of(60) => (s / 60, "minute"),
        _ => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

async fn give_up(q: &Queue, row: &Queued, failures: &[(String, String)]) {
    notify_failure(q, row, failures).await;
    let store = q.store.clone();
    let (id, why) = (row.id, failures.first().map(|f| f.1.clone()).unwrap_or_default());
    let _ = blocking(move || store.outbox_failed(id, &why)).await;
}

/// The bounce notice in the local INBOX: what, to whom, and the server's reply.
async fn notify_failure(q: &Queue, row: &Queued, failures: &[(String, String)]) {
    let headers = row.raw[..crate::mime::header::split(&row.raw).header_len].to_vec();
    let msg = notice::bounce(&row.mail_from, row.subject.as_deref(), failures, &headers, &row.account);
    let store = q.store.clone();
    let _ = blocking(move || store.deliver_local("INBOX", &msg, 0)).await;
}

#[cfg(test)]
mod tests {
    //! The whole retry schedule, end to end: the real worker, the real store, the real upstream
    //! client against an in-process SMTP server that answers every message with a 451 — with a
    //! manual clock, so three days take milliseconds and every wait is observed, not slept.
    use std::path::Path;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;
    use crate::smtp::clock::ManualClock;

    const MESSAGE: &[u8] = b"From: Me <me@work.example>\r\nTo: Ann <ann@example.org>\r\nSubject: Quarterly report\r\n\
Message-ID: <report@work.example>\r\nDate: Tue, 1 Jul 2025 10:52:37 +0200\r\n\r\nThe numbers.\r\n";
    const REPLY: &str = "451 4.3.0 Mailbox busy, try again later";

    /// An SMTP server that takes every message up to its end and then refuses it for now; it notes
    /// the (manual) time of each end of DATA.
    async fn always_busy(listener: TcpListener, clock: ManualClock, attempts: Arc<Mutex<Vec<i64>>>) {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let (clock, attempts) = (clock.clone(), attempts.clone());
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                let _ = w.write_all(b"220 busy.example ESMTP\r\n").await;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply = match verb.as_str() {
                        "EHLO" => "250-busy.example\r\n250 8BITMIME\r\n".to_string(),
                        "DATA" => {
                            let _ = w.write_all(b"354 go ahead\r\n").await;
                            loop {
                                line.clear();
                                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" {
                                    break;
                                }
                            }
                            attempts.lock().unwrap().push(clock.now());
                            format!("{REPLY}\r\n")
                        }
                        "QUIT" => "221 bye\r\n".to_string(),
                        _ => "250 ok\r\n".to_string(),
                    };
                    let _ = w.write_all(reply.as_bytes()).await;
                }
            });
        }
    }

    /// The documented default schedule (config/popbridge.example.toml), written out here rather
    /// than taken from the code: attempt times in seconds after the message was accepted.
    fn documented_attempt_times() -> Vec<i64> {
        const M: i64 = 60;
        const H: i64 = 3600;
        const GIVE_UP: i64 = 3 * 24 * H;
        let mut delays = vec![M, 2 * M, 5 * M, 10 * M, 20 * M, 40 * M, H, 2 * H, 4 * H].into_iter();
        let mut times = vec![0];
        loop {
            let last = *times.last().unwrap();
            let next = last + delays.next().unwrap_or(4 * H);
            if next >= GIVE_UP {
                times.push(GIVE_UP); // the last attempt is made when the three days are up
                return times;
            }
            times.push(next);
        }
    }

    #[tokio::test]
    async fn the_default_schedule_runs_to_the_three_day_give_up() {
        let dir = crate::store::private_tempdir();
        let store = Arc::new(Store::open(&dir.path().join("store.sqlite")).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cfg = crate::config::parse(
            &format!(
                "[[account]]\nname = \"Work\"\nemail = \"me@work.example\"\n\
                 [account.pop]\nhost = \"127.0.0.1\"\ntls = \"plain\"\nuser = \"u\"\npassword = \"p\"\n\
                 [account.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"plain\"\n"
            ),
            Path::new("config.toml"),
            0o600,
        )
        .unwrap();
        assert_eq!(cfg.outbox, crate::config::Outbox::default(), "no [outbox]: the defaults");
        let live = Arc::new(crate::config::Live::new(cfg, crate::secret::Secret::new("local")));

        let rcpts = vec!["ann@example.org".to_string()];
        store
            .enqueue("Work", "me@work.example", &rcpts, MESSAGE, Some("report@work.example"), Some("Quarterly report"))
            .unwrap();
        let accepted = store.due(1, i64::MAX).unwrap()[0].created_at;
        let clock = ManualClock::new(accepted);
        let attempts: Arc<Mutex<Vec<i64>>> = Arc::default();
        tokio::spawn(always_busy(listener, clock.clone(), attempts.clone()));
        let q = Arc::new(Queue {
            store: store.clone(),
            live,
            kick: Arc::new(Notify::new()),
            hostname: "client.example".into(),
            oauth_dir: dir.path().join("oauth"),
        });
        let (stop, stopped) = watch::channel(false);
        let worker = tokio::spawn(run_with_clock(q.clone(), Clock::Manual(clock.clone()), stopped));

        let expected: Vec<i64> = documented_attempt_times().into_iter().map(|t| accepted + t).collect();
        assert_eq!(expected.len(), 26, "10 attempts in the first 8 h 18 min, every 4 h after, the last at 72 h");
        let made = || attempts.lock().unwrap().clone();
        let wait = Duration::from_secs(20);
        for (i, &due) in expected.iter().enumerate() {
            if i > 0 {
                // One second early, woken by a kick (a new message, say): it looks, sends nothing,
                // and goes back to sleep until the attempt is due.
                let naps = clock.nap().count;
                clock.set(due - 1);
                q.kick.notify_one();
                let nap = clock.wait_for_nap(naps, wait, |n| n.until == Some(due)).await;
                assert!(nap.is_ok(), "attempt {}: asleep until {due} after an early kick; {nap:?}", i + 1);
                assert_eq!(made().len(), i, "attempt {} must not be made before {due}", i + 1);
            }
            let naps = clock.nap().count;
            clock.set(due);
            // The attempt is made; then the queue sleeps until the next one (none after the last).
            let next = expected.get(i + 1).copied();
            let nap = clock.wait_for_nap(naps, wait, |n| n.until == next).await;
            assert!(
                nap.is_ok(),
                "after attempt {} at {due} the queue should sleep until {next:?}; {nap:?}; attempts {:?}",
                i + 1,
                made()
            );
            assert_eq!(made(), expected[..=i], "attempt {} made at its time, once", i + 1);
            if next.is_some() {
                let row = store.due(1, i64::MAX).unwrap();
                assert_eq!(row.len(), 1, "still queued after attempt {}", i + 1);
                assert_eq!(row[0].attempts, i as i64 + 1, "failed attempts counted");
            }
        }

        // Given up: one notice in the local INBOX with what, to whom and the server's answer.
        let summary = store.outbox_summary().unwrap();
        assert_eq!((summary.queued, summary.failed, summary.sent), (0, 1, 0), "{summary:?}");
        let inbox = store.mailbox_bodies("INBOX").unwrap();
        assert_eq!(inbox.len(), 1, "exactly one notice");
        // The body is quoted-printable: join its soft line breaks.
        let notice = String::from_utf8_lossy(&inbox[0].1).replace("=\r\n", "");
        for needle in [
            "Subject: Undelivered: Quarterly report",
            "ann@example.org",
            "still failing after 3 days",
            REPLY,
            "account Work",
            "Message-ID: <report@work.example>",
        ] {
            assert!(notice.contains(needle), "the notice says {needle:?}:\n{notice}");
        }

        // And never retried: a month later, kicked, the queue has nothing to do.
        let naps = clock.nap().count;
        clock.advance(30 * 24 * 3600);
        q.kick.notify_one();
        let nap = clock.wait_for_nap(naps, wait, |n| n.until.is_none()).await;
        assert!(nap.is_ok(), "nothing left to wait for: {nap:?}");
        assert_eq!(made().len(), expected.len(), "no attempt after giving up");
        assert_eq!(store.mailbox_bodies("INBOX").unwrap().len(), 1, "still one notice");

        stop.send(true).unwrap();
        tokio::time::timeout(wait, worker).await.expect("the worker stops on shutdown").unwrap();
    }

    #[test]
    fn durations_are_spelled_for_people() {
        assert_eq!(spell(Duration::from_secs(3 * 86_400)), "3 days");
        assert_eq!(spell(Duration::from_secs(3600)), "1 hour");
        assert_eq!(spell(Duration::from_secs(90 * 60)), "90 minutes");
        assert_eq!(spell(Duration::from_secs(45)), "45 seconds");
    }
}
