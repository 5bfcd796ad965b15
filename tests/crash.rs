//! kill -9 at random instants, again and again — of `popbridge fetch` under each delete policy,
//! and of `popbridge run` while an IMAP client expunges — then one clean fetch. Invariants after
//! every kill and at the end: no message is stored twice; every message the server had is stored
//! or still on the server (or was expunged by the user, under when-deleted-locally); nothing is
//! gone from the server that the store never had; UIDVALIDITY never changes.
//! `CRASH_KILLS` sets the kills per series (default 20; scripts/crash-soak.sh runs 200+).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::util::corpus::corpus;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::imap_clients::{Raw, Security};
use crate::util::{Bridge, as_pop3_sends, sorted};

/// A small deterministic generator (no test-only dependency): xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn kills() -> usize {
    std::env::var("CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

/// Checks the invariants; `user_expunged` are messages the user deleted locally (which the
/// when-deleted-locally policy may then delete on the server).
fn check(b: &Bridge, d: &Dovecot, original: &[Vec<u8>], user_expunged: &HashSet<Vec<u8>>, uidvalidity: Option<i64>) {
    let stored = sorted(b.messages("Work"));
    let mut dedup = stored.clone();
    dedup.dedup();
    assert_eq!(stored.len(), dedup.len(), "a message is stored twice");
    let on_server: HashSet<Vec<u8>> = d.messages("alice").iter().map(|m| as_pop3_sends(m)).collect();
    let stored: HashSet<Vec<u8>> = stored.into_iter().collect();
    for m in original {
        assert!(
            stored.contains(m) || on_server.contains(m) || user_expunged.contains(m),
            "a message is neither stored, nor on the server, nor deleted by the user"
        );
    }
    if let Some(v) = uidvalidity {
        assert_eq!(b.store().uidvalidity("Work").unwrap(), Some(v), "UIDVALIDITY changed");
    }
}

fn fetch_kill_series(policy: &str, seed: u64) {
    let d = Dovecot::start(DovecotOpts::default());
    let c = corpus(400, seed);
    d.deliver("alice", &c.messages);
    let original: Vec<Vec<u8>> = c.messages.iter().map(|m| as_pop3_sends(m)).collect();
    let b = Bridge::new();
    let ca = d.ca_pem_path.display().to_string();
    b.add_account(
        "Work",
        d.pop3s_port,
        "implicit",
        "alice",
        "alice-pw",
        &["--ca-file", &ca, "--delete", policy, "--no-test"],
    )
    .expect(0);

    // How long a whole fetch takes here, measured on a throwaway copy, so kills land inside one.
    let probe = Bridge::new();
    probe
        .add_account("Work", d.pop3s_port, "implicit", "alice", "alice-pw", &["--ca-file", &ca, "--no-test"])
        .expect(0);
    let t = Instant::now();
    probe.run(&["fetch"]).expect(0);
    let full = t.elapsed().as_millis().max(50) as u64;

    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut interrupted = 0;
    let mut uidvalidity = None;
    let n = kills();
    for _ in 0..n {
        let mut child =
            b.cmd(&["fetch"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        // Most kills land early (the first import is where time goes), some anywhere.
        let delay = rng.next() % (full / 3 + 1);
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if uidvalidity.is_none() && b.store_path().exists() {
            uidvalidity = b.store().uidvalidity("Work").unwrap();
        }
        check(&b, &d, &original, &HashSet::new(), uidvalidity);
    }
    assert!(interrupted >= n / 2, "most kills must land while fetching ({interrupted}/{n})");

    b.run(&["fetch"]).expect(0);
    let want = sorted(original.clone());
    assert_eq!(sorted(b.messages("Work")), want, "after one clean fetch: every message exactly once");
    match policy {
        "after-fetch" | "after-days:0" => assert!(d.messages("alice").is_empty(), "everything stored was deleted"),
        _ => assert_eq!(d.messages("alice").len(), 400, "nothing deleted"),
    }
    assert_eq!(b.status_json()["accounts"][0]["messages"], 400);
}

#[test]
fn kill_9_during_fetch_with_after_fetch_loses_and_duplicates_nothing() {
    fetch_kill_series("after-fetch", 101);
}

#[test]
fn kill_9_during_fetch_with_never_loses_and_duplicates_nothing() {
    fetch_kill_series("never", 202);
}

#[test]
fn kill_9_during_fetch_with_after_days_loses_and_duplicates_nothing() {
    fetch_kill_series("after-days:0", 303);
}

/// kill -9 of the daemon at random instants while it imports and an IMAP client deletes messages
/// (when-deleted-locally: each expunge becomes a DELE on a later cycle).
#[test]
fn kill_9_of_the_daemon_while_a_client_expunges_loses_and_duplicates_nothing() {
    let d = Dovecot::start(DovecotOpts::default());
    let c = corpus(300, 404);
    d.deliver("alice", &c.messages);
    let original: Vec<Vec<u8>> = c.messages.iter().map(|m| as_pop3_sends(m)).collect();
    let b = Bridge::with_listeners();
    let ca = d.ca_pem_path.display().to_string();
    b.add_account(
        "Work",
        d.pop3s_port,
        "implicit",
        "alice",
        "alice-pw",
        &["--ca-file", &ca, "--delete", "when-deleted-locally", "--no-test"],
    )
    .expect(0);
    let mut rng = Rng(0x0dd5eed);
    let mut user_expunged: HashSet<Vec<u8>> = HashSet::new();
    let mut uidvalidity = None;
    for _ in 0..kills() {
        let mut daemon = b.daemon();
        // The client deletes one message it can see (if the import got that far), then the kill.
        {
            let mut r = Raw::connect_login(&b.target(Security::Plain, "me"));
            let sel = r.cmd("a1", "SELECT Work");
            let exists = sel.number("EXISTS").unwrap_or(0);
            if exists > 0 {
                let seq = (rng.next() % u64::from(exists)) as u32 + 1;
                let f = r.cmd("a2", &format!("FETCH {seq} (BODY.PEEK[])"));
                if let Some(body) = f.fetches().first().and_then(|x| x.get("BODY[]")).map(<[u8]>::to_vec) {
                    r.cmd("a3", &format!("STORE {seq} +FLAGS.SILENT (\\Deleted)"));
                    if r.cmd("a4", "EXPUNGE").ok() {
                        user_expunged.insert(body);
                    }
                }
            }
            r.drop_connection();
        }
        std::thread::sleep(Duration::from_millis(rng.next() % 400));
        daemon.child.kill().unwrap(); // SIGKILL
        daemon.child.wait().unwrap();
        drop(daemon);
        if uidvalidity.is_none() {
            uidvalidity = b.store().uidvalidity("Work").unwrap();
        }
        check(&b, &d, &original, &user_expunged, uidvalidity);
    }
    // One clean fetch: everything not deleted by the user is stored exactly once, and the
    // server holds exactly what the user did not delete.
    b.run(&["fetch"]).expect(0);
    b.run(&["fetch"]).expect(0);
    check(&b, &d, &original, &user_expunged, uidvalidity);
    let stored: HashSet<Vec<u8>> = b.messages("Work").into_iter().collect();
    let want: HashSet<Vec<u8>> = original.iter().filter(|m| !user_expunged.contains(*m)).cloned().collect();
    assert_eq!(stored, want, "the store holds every message the user did not delete");
    let on_server: HashSet<Vec<u8>> = d.messages("alice").iter().map(|m| as_pop3_sends(m)).collect();
    assert_eq!(on_server, want, "the server lost exactly what the user deleted");
}
