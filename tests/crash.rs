//! kill -9 of a running `fetch` at random instants, again and again, then one clean fetch: every
//! message the server had is in the store exactly once, and nothing was deleted from the server
//! that is not in the store (DESIGN §4).

use std::time::{Duration, Instant};

use crate::util::corpus::corpus;
use crate::util::dovecot::{Dovecot, DovecotOpts};
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

const KILLS: usize = 20;

fn kill_series(policy: &str, seed: u64) {
    let d = Dovecot::start(DovecotOpts::default());
    let c = corpus(400, seed);
    d.deliver("alice", &c.messages);
    let original = sorted(c.messages.iter().map(|m| as_pop3_sends(m)).collect());
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
    for _ in 0..KILLS {
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
        // Invariant after every kill: whatever the server lost, the store has.
        let stored = b.messages("Work");
        let on_server = sorted(d.messages("alice").iter().map(|m| as_pop3_sends(m)).collect());
        let mut union = stored.clone();
        union.extend(on_server.iter().cloned());
        let union = sorted(union);
        let mut dedup = union.clone();
        dedup.dedup();
        let stored_sorted = sorted(stored.clone());
        let mut stored_dedup = stored_sorted.clone();
        stored_dedup.dedup();
        assert_eq!(stored_sorted, stored_dedup, "a message is stored twice");
        let mut orig_dedup = original.clone();
        orig_dedup.dedup();
        assert_eq!(dedup, orig_dedup, "a message is neither stored nor on the server");
    }
    assert!(interrupted >= KILLS / 2, "most kills must land while fetching ({interrupted}/{KILLS})");

    b.run(&["fetch"]).expect(0);
    assert_eq!(sorted(b.messages("Work")), original, "after one clean fetch: every message exactly once");
    match policy {
        "after-fetch" => assert!(d.messages("alice").is_empty(), "everything stored was deleted"),
        _ => assert_eq!(d.messages("alice").len(), 400, "nothing deleted"),
    }
    // UIDs are dense and in server order only if nothing was fetched twice; check the count too.
    assert_eq!(b.status_json()["accounts"][0]["messages"], 400);
}

#[test]
fn kill_9_during_fetch_with_after_fetch_loses_and_duplicates_nothing() {
    kill_series("after-fetch", 101);
}

#[test]
fn kill_9_during_fetch_with_never_loses_and_duplicates_nothing() {
    kill_series("never", 202);
}
