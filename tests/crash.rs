//! kill -9 at random instants, again and again — of `popbridge fetch` under each delete policy,
//! and of `popbridge run` while an IMAP client expunges — then one clean fetch. Invariants after
//! every kill and at the end: no message is stored twice; every message the server had is stored
//! or still on the server (or was expunged by the user, under when-deleted-locally); nothing is
//! gone from the server that the store never had; UIDVALIDITY never changes; a UID, once seen,
//! always names the same message and is never given to another one.
//! `CRASH_KILLS` sets the kills per series (default 20; scripts/crash-soak.sh runs 200+).

use std::collections::{HashMap, HashSet};
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

/// The UIDs seen so far in the account's mailbox: a UID keeps naming the same message, a message
/// keeps its UID, and a new message gets a UID above every one seen before (never a reused one).
#[derive(Default)]
struct Uids {
    by_uid: HashMap<i64, Vec<u8>>,
    by_body: HashMap<Vec<u8>, i64>,
    max: i64,
}

impl Uids {
    fn check(&mut self, rows: &[(i64, Vec<u8>)]) {
        let max_before = self.max;
        for (uid, body) in rows {
            let uid = *uid;
            match self.by_uid.get(&uid) {
                Some(known) => assert!(known == body, "UID {uid} now names another message"),
                None => {
                    assert!(uid > max_before, "UID {uid} reused: a new message must get a UID above {max_before}");
                    self.by_uid.insert(uid, body.clone());
                }
            }
            let first = *self.by_body.entry(body.clone()).or_insert(uid);
            assert_eq!(first, uid, "a message changed its UID from {first} to {uid}");
            self.max = self.max.max(uid);
        }
    }
}

/// Checks the invariants; `user_expunged` are messages the user deleted locally (which the
/// when-deleted-locally policy may then delete on the server).
fn check(
    b: &Bridge,
    d: &Dovecot,
    user: &str,
    original: &[Vec<u8>],
    user_expunged: &HashSet<Vec<u8>>,
    uidvalidity: Option<i64>,
    uids: &mut Uids,
) {
    let store = b.store();
    let rows = store.mailbox_bodies("Work").unwrap();
    let stored = sorted(rows.iter().map(|(_, m)| m.clone()).collect());
    let mut dedup = stored.clone();
    dedup.dedup();
    assert_eq!(stored.len(), dedup.len(), "a message is stored twice");
    let on_server: HashSet<Vec<u8>> = d.messages(user).iter().map(|m| as_pop3_sends(m)).collect();
    let stored: HashSet<Vec<u8>> = stored.into_iter().collect();
    for m in original {
        assert!(
            stored.contains(m) || on_server.contains(m) || user_expunged.contains(m),
            "a message is neither stored, nor on the server, nor deleted by the user"
        );
    }
    if let Some(v) = uidvalidity {
        assert_eq!(store.uidvalidity("Work").unwrap(), Some(v), "UIDVALIDITY changed");
    }
    uids.check(&rows);
}

/// `expunge`: between kills, the user deletes a stored message locally (as an IMAP client's
/// EXPUNGE does, through the store; no daemon runs in this series).
fn fetch_kill_series(policy: &str, seed: u64, expunge: bool) {
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
    // Kills land within the first third of a full import's time; once the import is done a fetch
    // is much shorter (and under a deleting policy the server empties), so every fetch that was
    // over before its kill halves the window: later kills still land inside a fetch.
    let mut window = full / 3 + 1;
    let mut uidvalidity = None;
    let mut uids = Uids::default();
    let mut user_expunged: HashSet<Vec<u8>> = HashSet::new();
    let n = kills();
    for _ in 0..n {
        if expunge && b.store_path().exists() {
            let rows = b.store().mailbox_bodies("Work").unwrap();
            if !rows.is_empty() {
                let (uid, body) = rows[(rng.next() % rows.len() as u64) as usize].clone();
                assert_eq!(b.store().expunge("Work", &[uid]).unwrap(), 1);
                user_expunged.insert(body);
            }
        }
        let mut child =
            b.cmd(&["fetch"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        let delay = rng.next() % window;
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        } else {
            window = (window / 2).max(20);
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if uidvalidity.is_none() && b.store_path().exists() {
            uidvalidity = b.store().uidvalidity("Work").unwrap();
        }
        check(&b, &d, "alice", &original, &user_expunged, uidvalidity, &mut uids);
    }
    assert!(interrupted >= n / 2, "most kills must land while fetching ({interrupted}/{n})");

    b.run(&["fetch"]).expect(0);
    check(&b, &d, "alice", &original, &user_expunged, uidvalidity, &mut uids);
    let want: Vec<Vec<u8>> = original.iter().filter(|m| !user_expunged.contains(*m)).cloned().collect();
    assert_eq!(sorted(b.messages("Work")), sorted(want.clone()), "after one clean fetch: every message exactly once");
    let on_server = sorted(d.messages("alice").iter().map(|m| as_pop3_sends(m)).collect());
    match policy {
        "after-fetch" | "after-days:0" => assert!(on_server.is_empty(), "everything stored was deleted"),
        "when-deleted-locally" => assert_eq!(on_server, sorted(want.clone()), "exactly what the user deleted is gone"),
        _ => assert_eq!(on_server.len(), 400, "nothing deleted"),
    }
    assert_eq!(b.status_json()["accounts"][0]["messages"], want.len());
}

#[test]
fn kill_9_during_fetch_with_after_fetch_loses_and_duplicates_nothing() {
    fetch_kill_series("after-fetch", 101, false);
}

#[test]
fn kill_9_during_fetch_with_never_loses_and_duplicates_nothing() {
    fetch_kill_series("never", 202, false);
}

#[test]
fn kill_9_during_fetch_with_after_days_loses_and_duplicates_nothing() {
    fetch_kill_series("after-days:0", 303, false);
}

/// The fourth policy under `popbridge fetch` kills, with the user deleting messages meanwhile.
#[test]
fn kill_9_during_fetch_with_when_deleted_locally_and_local_expunges_loses_and_duplicates_nothing() {
    fetch_kill_series("when-deleted-locally", 505, true);
}

/// kill -9 of the daemon at random instants while it imports and an IMAP client deletes messages,
/// `kills` times, then one clean fetch. Under when-deleted-locally each expunge becomes a DELE on
/// a later cycle; under the other policies an expunge only removes the local copy.
fn daemon_kill_series(d: &Dovecot, user: &str, password: &str, policy: &str, n: usize, kills: usize, seed: u64) {
    let c = corpus(n, seed);
    d.deliver(user, &c.messages);
    let original: Vec<Vec<u8>> = c.messages.iter().map(|m| as_pop3_sends(m)).collect();
    let b = Bridge::with_listeners();
    let ca = d.ca_pem_path.display().to_string();
    b.add_account(
        "Work",
        d.pop3s_port,
        "implicit",
        user,
        password,
        &["--ca-file", &ca, "--delete", policy, "--no-test"],
    )
    .expect(0);
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut user_expunged: HashSet<Vec<u8>> = HashSet::new();
    let mut uidvalidity = None;
    let mut uids = Uids::default();
    for _ in 0..kills {
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
        check(&b, d, user, &original, &user_expunged, uidvalidity, &mut uids);
    }
    // One clean fetch: everything not deleted by the user is stored exactly once, and the
    // server holds what the policy leaves there.
    b.run(&["fetch"]).expect(0);
    b.run(&["fetch"]).expect(0);
    check(&b, d, user, &original, &user_expunged, uidvalidity, &mut uids);
    let stored: HashSet<Vec<u8>> = b.messages("Work").into_iter().collect();
    let want: HashSet<Vec<u8>> = original.iter().filter(|m| !user_expunged.contains(*m)).cloned().collect();
    assert_eq!(stored, want, "{policy}: the store holds every message the user did not delete");
    let on_server: HashSet<Vec<u8>> = d.messages(user).iter().map(|m| as_pop3_sends(m)).collect();
    match policy {
        "when-deleted-locally" => assert_eq!(on_server, want, "the server lost exactly what the user deleted"),
        "never" => assert_eq!(on_server.len(), original.len(), "never: nothing deleted"),
        _ => assert!(on_server.is_empty(), "{policy}: everything stored was deleted from the server"),
    }
}

/// kill -9 of the daemon at random instants while it imports and an IMAP client deletes messages
/// (when-deleted-locally: each expunge becomes a DELE on a later cycle).
#[test]
fn kill_9_of_the_daemon_while_a_client_expunges_loses_and_duplicates_nothing() {
    let d = Dovecot::start(DovecotOpts::default());
    daemon_kill_series(&d, "alice", "alice-pw", "when-deleted-locally", 300, kills(), 0x0dd5eed);
}

/// The same under the three other policies, a third of the kills each (one Dovecot, a mailbox
/// per policy).
#[test]
fn kill_9_of_the_daemon_under_never_after_fetch_and_after_days_loses_and_duplicates_nothing() {
    let users: Vec<(String, String)> =
        ["never", "afterfetch", "afterdays"].iter().map(|u| (u.to_string(), format!("{u}-pw"))).collect();
    let d = Dovecot::start(DovecotOpts { users: users.clone(), ..DovecotOpts::default() });
    let each = kills().div_ceil(3).max(3);
    for ((user, pw), (policy, seed)) in users.iter().zip([("never", 606), ("after-fetch", 707), ("after-days:0", 808)])
    {
        daemon_kill_series(&d, user, pw, policy, 150, each, seed);
    }
}
