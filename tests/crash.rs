//! kill -9 where mail could be lost, chosen rather than hoped for, then the invariants.
//!
//! **Named points.** The POP3 server — the fake server, or a proxy in front of a real Dovecot —
//! stops at a named instant of the session ([`Point`]: half-way through the Nth RETR answer,
//! after it, on the Nth DELE, after the Nth DELE answer, on QUIT, after QUIT applied the
//! deletions but before its answer) and tells the test, which SIGKILLs popbridge there: a
//! `popbridge fetch`, or the daemon while an IMAP client expunges. Every point is hit under every
//! delete policy it applies to (`never` sends no DELE), and each series asserts it hit them all.
//! **Random instants.** The same with kills at uniformly random times over a whole fetch
//! (each kill's fetch has fresh work: new mail is delivered before it), for what nobody named.
//!
//! After every kill: no message is stored twice; every message the server ever had is stored,
//! still on the server, or was expunged by the user; every message popbridge sent DELE for is in
//! the store (or expunged by the user) — commit before DELE; UIDVALIDITY never changes; a UID
//! always names the same message and is never reused. At the end one clean fetch: every message
//! the user did not delete is stored exactly once, and the server holds what the policy leaves.
//!
//! Each series writes what it hit to `target/tmp/crash/<series>.txt` (and stderr).
//! Knobs: `CRASH_POINTS=on-DELE,QUIT-applied` restricts the named kinds; `CRASH_REPS` (default 3)
//! sets how often each is hit per series; `CRASH_KILLS` (default 16) the random kills per series.
//! `scripts/crash-soak.sh` runs more.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::corpus::corpus;
use crate::util::crash_points::{Point, Trap};
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::fake_pop3::{FakeMessage, FakePop3, Script};
use crate::util::imap_clients::{Raw, Security};
use crate::util::pop_proxy::PopProxy;
use crate::util::rng::Rng;
use crate::util::{Bridge, Daemon, as_pop3_sends, sorted};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The named kinds this run covers (`CRASH_POINTS`, default all).
fn wanted_kinds() -> Vec<&'static str> {
    match std::env::var("CRASH_POINTS") {
        Ok(v) if !v.trim().is_empty() => {
            let asked: Vec<&str> = v.split(',').map(str::trim).collect();
            for a in &asked {
                assert!(Point::KINDS.contains(a), "CRASH_POINTS: unknown point {a:?} (known: {:?})", Point::KINDS);
            }
            Point::KINDS.iter().copied().filter(|k| asked.contains(k)).collect()
        }
        _ => Point::KINDS.to_vec(),
    }
}

/// The POP3 server the series runs against.
enum Peer {
    /// The scripted server; it also records every DELE it was sent.
    Fake { f: FakePop3, next_uidl: u64, by_uidl: HashMap<String, Vec<u8>> },
    /// A real Dovecot, its plain POP3 port behind the crash-point proxy.
    Dovecot { d: Dovecot, proxy: PopProxy },
    /// A real Dovecot over POP3S through a throttling proxy (for random instants: TLS on the
    /// path, and a fetch long enough to span several group commits).
    DovecotTls { d: Dovecot, slow: PopProxy },
}

impl Peer {
    fn fake() -> Peer {
        Peer::Fake { f: FakePop3::start(Script::default()), next_uidl: 0, by_uidl: HashMap::new() }
    }

    fn dovecot() -> Peer {
        let d = Dovecot::start(DovecotOpts::default());
        let proxy = PopProxy::start(d.pop3_port);
        Peer::Dovecot { d, proxy }
    }

    fn name(&self) -> &'static str {
        match self {
            Peer::Fake { .. } => "fake",
            Peer::Dovecot { .. } => "dovecot",
            Peer::DovecotTls { .. } => "dovecot-tls",
        }
    }

    fn trap(&self) -> &Trap {
        match self {
            Peer::Fake { f, .. } => f.trap(),
            Peer::Dovecot { proxy, .. } => proxy.trap(),
            Peer::DovecotTls { .. } => unreachable!("no crash points without the proxy"),
        }
    }

    /// Puts messages (raw, as generated) on the server; returns them as the server sends them.
    fn deliver(&mut self, raw: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let sent: Vec<Vec<u8>> = raw.iter().map(|m| as_pop3_sends(m)).collect();
        match self {
            Peer::Fake { f, next_uidl, by_uidl } => {
                let msgs = sent
                    .iter()
                    .map(|m| {
                        *next_uidl += 1;
                        let uidl = format!("u{next_uidl:05}");
                        by_uidl.insert(uidl.clone(), m.clone());
                        FakeMessage::new(&uidl, m.clone())
                    })
                    .collect();
                f.add_messages(msgs);
            }
            Peer::Dovecot { d, .. } | Peer::DovecotTls { d, .. } => d.deliver("alice", raw),
        }
        sent
    }

    fn on_server(&self) -> HashSet<Vec<u8>> {
        match self {
            Peer::Fake { f, .. } => f.remaining().into_iter().map(|m| m.data).collect(),
            Peer::Dovecot { d, .. } | Peer::DovecotTls { d, .. } => {
                d.messages("alice").iter().map(|m| as_pop3_sends(m)).collect()
            }
        }
    }

    /// The messages popbridge sent a DELE for (the fake server records them; the proxy does not).
    fn dele_requested(&self) -> Option<Vec<Vec<u8>>> {
        match self {
            Peer::Fake { f, by_uidl, .. } => Some(
                f.dele_requested().iter().map(|u| by_uidl.get(u).cloned().expect("a DELE for a known UIDL")).collect(),
            ),
            _ => None,
        }
    }
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
    fn check(&mut self, rows: &[(i64, Vec<u8>)], ctx: &str) {
        let max_before = self.max;
        for (uid, body) in rows {
            let uid = *uid;
            match self.by_uid.get(&uid) {
                Some(known) => assert!(known == body, "{ctx}: UID {uid} now names another message"),
                None => {
                    assert!(
                        uid > max_before,
                        "{ctx}: UID {uid} reused: a new message must get a UID above {max_before}"
                    );
                    self.by_uid.insert(uid, body.clone());
                }
            }
            let first = *self.by_body.entry(body.clone()).or_insert(uid);
            assert_eq!(first, uid, "{ctx}: a message changed its UID from {first} to {uid}");
            self.max = self.max.max(uid);
        }
    }
}

/// What the test knows: every message the server was given, what the user expunged, the
/// mailbox's UIDVALIDITY and UIDs as first seen.
struct Ledger {
    policy: &'static str,
    delivered: Vec<Vec<u8>>,
    user_expunged: HashSet<Vec<u8>>,
    uidvalidity: Option<i64>,
    uids: Uids,
}

impl Ledger {
    fn new(policy: &'static str) -> Ledger {
        Ledger {
            policy,
            delivered: Vec::new(),
            user_expunged: HashSet::new(),
            uidvalidity: None,
            uids: Uids::default(),
        }
    }

    fn stored(b: &Bridge) -> Vec<(i64, Vec<u8>)> {
        b.store().mailbox_bodies("Work").expect("read the store")
    }

    /// The invariants, after a kill (`ctx` says which).
    fn check(&mut self, b: &Bridge, peer: &Peer, ctx: &str) {
        let rows = Self::stored(b);
        let stored: HashSet<Vec<u8>> = rows.iter().map(|(_, m)| m.clone()).collect();
        assert_eq!(stored.len(), rows.len(), "{ctx}: a message is stored twice");
        let on_server = peer.on_server();
        let lost = self
            .delivered
            .iter()
            .filter(|m| !stored.contains(*m) && !on_server.contains(*m) && !self.user_expunged.contains(*m))
            .count();
        assert_eq!(lost, 0, "{ctx}: {lost} message(s) neither stored, nor on the server, nor deleted by the user");
        if let Some(deles) = peer.dele_requested() {
            let unstored = deles.iter().filter(|m| !stored.contains(*m) && !self.user_expunged.contains(*m)).count();
            assert_eq!(unstored, 0, "{ctx}: popbridge sent DELE for {unstored} message(s) the store does not hold");
        }
        let v = b.store().uidvalidity("Work").expect("uidvalidity");
        match (self.uidvalidity, v) {
            (None, v) => self.uidvalidity = v,
            (Some(was), now) => assert_eq!(now, Some(was), "{ctx}: UIDVALIDITY changed"),
        }
        self.uids.check(&rows, ctx);
    }

    /// Messages the next session will RETR: on the server, not stored, not deleted by the user
    /// (the store still knows their identity).
    fn to_retr(&self, b: &Bridge, peer: &Peer) -> usize {
        let stored: HashSet<Vec<u8>> = Self::stored(b).into_iter().map(|(_, m)| m).collect();
        peer.on_server().iter().filter(|m| !stored.contains(*m) && !self.user_expunged.contains(*m)).count()
    }

    /// DELE commands a whole session will send under the policy.
    fn to_dele(&self, peer: &Peer) -> usize {
        let on_server = peer.on_server();
        match self.policy {
            "never" => 0,
            "when-deleted-locally" => on_server.iter().filter(|m| self.user_expunged.contains(*m)).count(),
            _ => on_server.len(),
        }
    }

    /// The report's last line (once [`Ledger::finish`] has found nothing lost or duplicated).
    fn result(&self, b: &Bridge) -> String {
        format!(
            "result: {} delivered, {} stored, {} expunged by the user, 0 lost, 0 duplicated",
            self.delivered.len(),
            b.messages("Work").len(),
            self.user_expunged.len()
        )
    }

    /// One clean fetch, then: every message the user kept is stored exactly once, and the server
    /// holds what the policy leaves there.
    fn finish(&mut self, b: &Bridge, peer: &Peer, ctx: &str) {
        b.run(&["fetch"]).expect(0);
        b.run(&["fetch"]).expect(0);
        self.check(b, peer, ctx);
        let want: Vec<Vec<u8>> = self.delivered.iter().filter(|m| !self.user_expunged.contains(*m)).cloned().collect();
        assert_eq!(
            sorted(b.messages("Work")),
            sorted(want.clone()),
            "{ctx}: every message the user kept, exactly once"
        );
        let on_server = sorted(peer.on_server().into_iter().collect());
        match self.policy {
            "never" => assert_eq!(on_server, sorted(self.delivered.clone()), "{ctx}: never: nothing deleted"),
            "when-deleted-locally" => {
                assert_eq!(on_server, sorted(want), "{ctx}: exactly what the user deleted is gone from the server")
            }
            _ => assert!(on_server.is_empty(), "{ctx}: {}: everything stored was deleted", self.policy),
        }
    }
}

/// Writes a series' report to stderr and `target/tmp/crash/<series>.txt`.
fn report(series: &str, lines: &[String]) {
    let text = format!("{series}\n{}\n", lines.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n"));
    eprint!("{text}");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("crash");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{series}.txt")), text);
}

/// How popbridge runs in a series.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `popbridge fetch`, killed; the user expunges through the store between kills.
    Fetch,
    /// `popbridge run`, killed during a fetch it was asked for; an IMAP client expunges first.
    Daemon,
}

/// A set-up bridge for a series.
fn bridge(peer: &Peer, mode: Mode, policy: &str) -> Bridge {
    let b = if mode == Mode::Daemon { Bridge::with_listeners() } else { Bridge::new() };
    let (port, tls, user, pw, mut extra): (u16, &str, &str, &str, Vec<String>) = match peer {
        Peer::Fake { f, .. } => (f.port(), "plain", "u", "p", vec!["--auth".into(), "user".into()]),
        Peer::Dovecot { proxy, .. } => (proxy.port, "plain", "alice", "alice-pw", vec!["--auth".into(), "user".into()]),
        Peer::DovecotTls { d, slow } => {
            (slow.port, "implicit", "alice", "alice-pw", vec!["--ca-file".into(), d.ca_pem_path.display().to_string()])
        }
    };
    extra.extend(["--delete".into(), policy.to_string(), "--no-test".into()]);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    b.add_account("Work", port, tls, user, pw, &extra).expect(0);
    b
}

/// The user deletes one stored message that is still on the server (an IMAP client through the
/// daemon, or the store directly when no daemon runs). Returns whether there was one.
fn user_expunges(b: &Bridge, daemon: Option<&Daemon>, peer: &Peer, ledger: &mut Ledger, rng: &mut Rng) -> bool {
    let on_server = peer.on_server();
    let rows: Vec<(i64, Vec<u8>)> = Ledger::stored(b).into_iter().filter(|(_, m)| on_server.contains(m)).collect();
    if rows.is_empty() {
        return false;
    }
    let (uid, body) = rows[(rng.next_u64() % rows.len() as u64) as usize].clone();
    match daemon {
        None => assert_eq!(b.store().expunge("Work", &[uid]).expect("expunge"), 1),
        Some(_) => {
            let mut r = Raw::connect_login(&b.target(Security::Plain, "me+Work"));
            r.cmd("x1", "SELECT INBOX").assert_ok("select");
            r.cmd("x2", &format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)")).assert_ok("store");
            let e = r.cmd("x3", &format!("UID EXPUNGE {uid}"));
            e.assert_ok("expunge");
            assert_eq!(e.untagged("* ").iter().filter(|l| l.ends_with(" EXPUNGE")).count(), 1, "{:?}", e.lines);
            r.logout();
        }
    }
    ledger.user_expunged.insert(body);
    true
}

/// Starts what fetches: a `popbridge fetch` (under a daemon, it asks the daemon).
fn spawn_fetch(b: &Bridge) -> Child {
    b.cmd(&["fetch", "Work"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn popbridge fetch")
}

fn kill(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

/// kill -9 of the daemon (if one runs), then of the fetch.
fn kill_both(daemon: Option<Daemon>, fetch: &mut Child) {
    if let Some(mut d) = daemon {
        d.child.kill().expect("kill -9 the daemon");
        d.child.wait().expect("wait");
    }
    kill(fetch);
}

/// The named-point series: each kind `CRASH_REPS` times, at a count picked within what the
/// session will really do (so the point is always reached), with new mail before every kill.
fn named_points(peer: &mut Peer, mode: Mode, policy: &'static str, seed: u64) {
    let series = format!("named-{}-{}-{policy}", if mode == Mode::Fetch { "fetch" } else { "daemon" }, peer.name());
    let reps = env_number("CRASH_REPS", 3);
    let kinds: Vec<&str> =
        wanted_kinds().into_iter().filter(|k| policy != "never" || !matches!(*k, "on-DELE" | "after-DELE")).collect();
    let pool = corpus(reps * kinds.len() * 6 + 12, seed);
    let mut pool = pool.messages.into_iter();
    let mut rng = Rng::seeded(seed);
    let b = bridge(peer, mode, policy);
    let mut ledger = Ledger::new(policy);
    let mut hits: BTreeMap<Point, usize> = BTreeMap::new();
    let mut kind_hits: BTreeMap<&str, usize> = BTreeMap::new();
    for step in 0..reps * kinds.len() {
        let kind = kinds[step % kinds.len()];
        let ctx = format!("{series} step {step} ({kind})");
        let daemon = (mode == Mode::Daemon).then(|| {
            let d = b.daemon();
            // Whatever the schedule started is over once our own fetch returns.
            let r = b.run(&["fetch", "Work"]);
            assert_eq!(r.code, 0, "{ctx}: {}{}\ndaemon log:\n{}", r.stdout, r.stderr, d.log());
            d
        });
        // Fresh work for this session: new mail, and (when something is stored) a local delete.
        let batch: Vec<Vec<u8>> = pool.by_ref().take(6).collect();
        ledger.delivered.extend(peer.deliver(&batch));
        user_expunges(&b, daemon.as_ref(), peer, &mut ledger, &mut rng);
        if matches!(kind, "on-DELE" | "after-DELE") && ledger.to_dele(peer) == 0 {
            // Nothing to delete yet (the first steps): store something, then delete it locally.
            b.run(&["fetch", "Work"]).expect(0);
            ledger.delivered.extend(peer.deliver(&pool.by_ref().take(6).collect::<Vec<_>>()));
            assert!(user_expunges(&b, daemon.as_ref(), peer, &mut ledger, &mut rng), "{ctx}: nothing to expunge");
        }
        let (retrs, deles) = (ledger.to_retr(&b, peer), ledger.to_dele(peer));
        let point = match kind {
            "mid-RETR" => Point::MidRetr(rng.pick(retrs)),
            "after-RETR" => Point::AfterRetr(rng.pick(retrs)),
            "on-DELE" => Point::OnDele(rng.pick(deles)),
            "after-DELE" => Point::AfterDele(rng.pick(deles)),
            "on-QUIT" => Point::OnQuit,
            _ => Point::QuitApplied,
        };
        peer.trap().arm(point);
        let mut fetch = spawn_fetch(&b);
        let hit = peer.trap().wait_hit(Duration::from_secs(30), || fetch.try_wait().ok().flatten().is_some());
        kill_both(daemon, &mut fetch);
        peer.trap().release();
        assert!(hit, "{ctx}: {point:?} was not reached ({retrs} to RETR, {deles} to DELE)");
        *hits.entry(point).or_default() += 1;
        *kind_hits.entry(point.kind()).or_default() += 1;
        ledger.check(&b, peer, &ctx);
    }
    ledger.finish(&b, peer, &format!("{series}: after the clean fetch"));
    for k in &kinds {
        assert_eq!(kind_hits.get(k).copied().unwrap_or(0), reps, "{series}: {k} hit {reps} times");
    }
    let mut lines: Vec<String> = kind_hits.iter().map(|(k, n)| format!("{k}: {n} kill(s)")).collect();
    lines.push(format!("points: {}", hits.iter().map(|(p, n)| format!("{p:?} x{n}")).collect::<Vec<_>>().join(", ")));
    lines.push(ledger.result(&b));
    report(&series, &lines);
}

/// Kills at uniformly random instants over a whole fetch of fresh mail (the first fetch of the
/// series, not killed, measures how long one takes). Reports in which phase each kill landed.
fn random_instants(peer: &mut Peer, mode: Mode, policy: &'static str, seed: u64) {
    let series = format!("random-{}-{}-{policy}", if mode == Mode::Fetch { "fetch" } else { "daemon" }, peer.name());
    let kills = env_number("CRASH_KILLS", 12);
    let batch = 20;
    let pool = corpus(batch * (kills + 1), seed);
    let mut pool = pool.messages.into_iter();
    let mut rng = Rng::seeded(seed);
    let b = bridge(peer, mode, policy);
    let mut ledger = Ledger::new(policy);
    let first = peer.deliver(&pool.by_ref().take(batch).collect::<Vec<_>>());
    ledger.delivered.extend(first.iter().cloned());
    let t = Instant::now();
    b.run(&["fetch", "Work"]).expect(0);
    // What a fetch costs besides the transfer (start, TLS, login, listing, the last commit), so
    // that each kill's window is that fetch's own length: batches differ in size.
    let transfer = |msgs: &[Vec<u8>]| (msgs.iter().map(Vec::len).sum::<usize>() as u64 * 1000 / SLOW_RATE).max(1);
    let overhead = (t.elapsed().as_millis() as u64).saturating_sub(transfer(&first));
    let mut windows = Vec::new();
    ledger.check(&b, peer, &format!("{series}: the first fetch"));
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    for k in 0..kills {
        let ctx = format!("{series} kill {k}");
        let daemon = (mode == Mode::Daemon).then(|| {
            let d = b.daemon();
            b.run(&["fetch", "Work"]).expect(0);
            d
        });
        user_expunges(&b, daemon.as_ref(), peer, &mut ledger, &mut rng);
        ledger.delivered.extend(peer.deliver(&pool.by_ref().take(batch).collect::<Vec<_>>()));
        // What this fetch will download: the new mail, and what an earlier kill left unstored.
        let stored_before: HashSet<Vec<u8>> = Ledger::stored(&b).into_iter().map(|(_, m)| m).collect();
        let on_server = peer.on_server();
        let pending: Vec<Vec<u8>> = ledger
            .delivered
            .iter()
            .filter(|m| on_server.contains(*m) && !stored_before.contains(*m) && !ledger.user_expunged.contains(*m))
            .cloned()
            .collect();
        // Anywhere in the fetch, and a little after it.
        let window = (overhead + transfer(&pending)) * 11 / 10;
        windows.push(window);
        let mut fetch = spawn_fetch(&b);
        std::thread::sleep(Duration::from_millis(rng.next_u64() % window));
        let exited = fetch.try_wait().ok().flatten().is_some();
        kill_both(daemon, &mut fetch);
        let stored: HashSet<Vec<u8>> = Ledger::stored(&b).into_iter().map(|(_, m)| m).collect();
        let committed = pending.iter().filter(|m| stored.contains(*m)).count();
        let phase = match (committed, exited) {
            (_, true) => "after the fetch ended",
            (0, _) => "before the first commit",
            (c, _) if c < pending.len() => "mid-import",
            _ => "after the import (DELE/QUIT)",
        };
        *phases.entry(phase).or_default() += 1;
        ledger.check(&b, peer, &ctx);
    }
    ledger.finish(&b, peer, &format!("{series}: after the clean fetch"));
    let mut lines: Vec<String> = phases.iter().map(|(p, n)| format!("{p}: {n} kill(s)")).collect();
    lines.push(format!(
        "windows: 0..{}-{} ms after each fetch's start (1.1 x its expected length; {overhead} ms besides the transfer)",
        windows.iter().min().unwrap_or(&0),
        windows.iter().max().unwrap_or(&0)
    ));
    lines.push(ledger.result(&b));
    report(&series, &lines);
}

/// One test per series, named as before (`cargo test crash::NAME` picks them, README.md): each
/// row a test's name and the series it runs, in order.
macro_rules! series {
    ($($name:ident => $($run:expr),+;)*) => {
        $(
            #[test]
            fn $name() {
                $($run;)+
            }
        )*
    };
}

// --- named points: `popbridge fetch` against the fake server and against Dovecot ---

series! {
    kill_9_at_named_points_of_fetch_under_never =>
        named_points(&mut Peer::fake(), Mode::Fetch, "never", 11),
        named_points(&mut Peer::dovecot(), Mode::Fetch, "never", 12);
    kill_9_at_named_points_of_fetch_under_after_fetch =>
        named_points(&mut Peer::fake(), Mode::Fetch, "after-fetch", 21),
        named_points(&mut Peer::dovecot(), Mode::Fetch, "after-fetch", 22);
    kill_9_at_named_points_of_fetch_under_after_days =>
        named_points(&mut Peer::fake(), Mode::Fetch, "after-days:0", 31),
        named_points(&mut Peer::dovecot(), Mode::Fetch, "after-days:0", 32);
    kill_9_at_named_points_of_fetch_under_when_deleted_locally =>
        named_points(&mut Peer::fake(), Mode::Fetch, "when-deleted-locally", 41),
        named_points(&mut Peer::dovecot(), Mode::Fetch, "when-deleted-locally", 42);
}

// --- named points: the daemon, an IMAP client expunging before each kill ---

#[test]
fn kill_9_of_the_daemon_at_named_points_under_every_policy() {
    for (policy, seed) in [("never", 51), ("after-fetch", 52), ("after-days:0", 53), ("when-deleted-locally", 54)] {
        named_points(&mut Peer::fake(), Mode::Daemon, policy, seed);
    }
}

series! {
    kill_9_of_the_daemon_at_named_points_with_dovecot_under_when_deleted_locally =>
        named_points(&mut Peer::dovecot(), Mode::Daemon, "when-deleted-locally", 61);
}

// --- random instants over whole fetches, Dovecot over POP3S ---

/// The throttled server's rate, bytes per second: a random series' batch of 20 messages (about
/// 700 kB) takes about 3 s, a dozen group commits (`fetch::sink::MAX_BATCH_AGE` is 250 ms).
const SLOW_RATE: u64 = 250_000;

/// Dovecot's POP3S through the throttling proxy.
fn dovecot_tls() -> Peer {
    let d = Dovecot::start(DovecotOpts::default());
    let slow = PopProxy::throttled(d.pop3s_port, SLOW_RATE);
    Peer::DovecotTls { d, slow }
}

series! {
    kill_9_at_random_instants_of_fetch_under_never =>
        random_instants(&mut dovecot_tls(), Mode::Fetch, "never", 71);
    kill_9_at_random_instants_of_fetch_under_after_fetch =>
        random_instants(&mut dovecot_tls(), Mode::Fetch, "after-fetch", 72);
    kill_9_at_random_instants_of_fetch_under_after_days =>
        random_instants(&mut dovecot_tls(), Mode::Fetch, "after-days:0", 73);
    kill_9_at_random_instants_of_fetch_under_when_deleted_locally =>
        random_instants(&mut dovecot_tls(), Mode::Fetch, "when-deleted-locally", 74);
    kill_9_of_the_daemon_at_random_instants_while_a_client_expunges =>
        random_instants(&mut dovecot_tls(), Mode::Daemon, "when-deleted-locally", 81);
    kill_9_of_the_daemon_at_random_instants_under_after_fetch =>
        random_instants(&mut dovecot_tls(), Mode::Daemon, "after-fetch", 82);
}
