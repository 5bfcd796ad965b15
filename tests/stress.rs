//! Stress with a consistency checker: 20 IMAP sessions doing random SELECT / FETCH / STORE /
//! EXPUNGE / APPEND / MOVE / IDLE while the daemon's fetcher keeps inserting mail. Each session
//! keeps the view RFC 3501 lets it derive from EXISTS and EXPUNGE, and checks it against the
//! server's `UID SEARCH ALL` after every operation: no UID changes under a session, no message
//! vanishes that was not expunged, no expunged UID comes back. At the end every view equals the
//! store. `STRESS_SECONDS` sets the duration (default 20 in the test suite; scripts/stress.sh runs
//! it for minutes).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::Bridge;
use crate::util::accounts::PopAccount;
use crate::util::fake_pop3::{FakeMessage, FakePop3, Script};
use crate::util::imap_clients::{Raw, Reply, Security, Target};
use crate::util::rng::Rng;

fn mail(i: u64) -> Vec<u8> {
    format!("From: s{i}@example.com\r\nTo: me@example.com\r\nSubject: stress {i}\r\nMessage-ID: <stress-{i}@example.com>\r\n\r\nbody {i}\r\n").into_bytes()
}

/// A session's view of one mailbox, kept the way a client must (RFC 3501 §7.3.1, §7.4.1).
struct View {
    uids: Vec<u32>,
    /// Messages announced by EXISTS whose UIDs the client has not learned yet.
    announced: usize,
    expunged: HashSet<u32>,
    uidvalidity: String,
    last: Vec<String>,
}

/// Applies untagged EXPUNGE/EXISTS from a reply to the view, in order.
fn apply(view: &mut View, r: &Reply, errors: &mut Vec<String>) {
    for l in &r.lines {
        let mut w = l.split_whitespace();
        if w.next() != Some("*") {
            continue;
        }
        let (Some(n), Some(what)) = (w.next().and_then(|n| n.parse::<usize>().ok()), w.next()) else { continue };
        let len = view.uids.len() + view.announced;
        match what {
            "EXPUNGE" => {
                if n == 0 || n > len {
                    errors.push(format!("EXPUNGE {n} outside 1..{len}"));
                } else if n <= view.uids.len() {
                    let uid = view.uids.remove(n - 1);
                    view.expunged.insert(uid);
                } else {
                    view.announced -= 1;
                }
            }
            "EXISTS" => {
                if n < len {
                    errors.push(format!("EXISTS {n} below the {len} messages the client knows"));
                } else {
                    view.announced += n - len;
                }
            }
            _ => {}
        }
    }
}

/// How many times a check asks again while replies carry updates. Each SEARCH after an update
/// round-trip is quick, so a quiet reply comes within a few; see `Checks`.
const CHECK_ATTEMPTS: usize = 20;

/// What the consistency checks did: a check only compares when a reply carries no updates, so
/// the test counts how many really compared (and fails if too few did) instead of trusting it.
#[derive(Default, Clone, Copy, Debug)]
struct Checks {
    /// Checks that compared the view with the server.
    compared: u64,
    /// Checks that never got a quiet reply within `CHECK_ATTEMPTS`.
    unquiet: u64,
    /// SEARCH commands sent by all checks.
    searches: u64,
}

/// Whether a reply to `UID SEARCH ALL` can be compared with the view: it carries no EXISTS or
/// EXPUNGE (the SEARCH result reflects the mailbox before the updates sent with it).
fn quiet(r: &Reply) -> bool {
    !r.lines.iter().any(|l| l.ends_with(" EXISTS") || l.ends_with(" EXPUNGE"))
}

/// Checks the view against the server, then learns the UIDs of announced new messages. The
/// result of a SEARCH reflects the mailbox before the updates sent with it, so a check counts
/// only when its reply carries none (others writing meanwhile: apply them and look again).
fn check(raw: &mut Raw, tag: &str, view: &mut View, errors: &mut Vec<String>, checks: &mut Checks) {
    for attempt in 0..CHECK_ATTEMPTS {
        let r = raw.cmd(&format!("{tag}.{attempt}"), "UID SEARCH ALL");
        checks.searches += 1;
        let server: Option<Vec<u32>> = r
            .lines
            .iter()
            .find(|l| l.starts_with("* SEARCH"))
            .map(|l| l[8..].split_whitespace().filter_map(|x| x.parse().ok()).collect());
        apply(view, &r, errors);
        let Some(server) = server else {
            errors.push(format!("no SEARCH result: {:?}", r.lines));
            return;
        };
        if !quiet(&r) {
            continue;
        }
        checks.compared += 1;
        let new = std::mem::take(&mut view.announced);
        let known = view.uids.len();
        if server.len() != known + new {
            errors.push(format!(
                "server has {} messages, the view {known} + {new} announced (before: {:?})",
                server.len(),
                view.last
            ));
            view.uids = server;
            return;
        }
        if server[..known] != view.uids[..] {
            errors.push("the UIDs of known messages changed under the session".into());
        }
        if server.windows(2).any(|w| w[0] >= w[1]) {
            errors.push("UIDs not strictly ascending".into());
        }
        if let Some(u) = server.iter().find(|u| view.expunged.contains(u)) {
            errors.push(format!("expunged UID {u} came back"));
        }
        view.uids = server;
        return;
    }
    checks.unquiet += 1;
}

fn session(
    t: Target,
    seed: u64,
    deadline: Instant,
    ops: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    next_mail: Arc<AtomicU64>,
) -> Checks {
    let mut rng = Rng(seed | 1);
    let mut raw = Raw::connect_login(&t);
    let mut errs = Vec::new();
    let mut checks = Checks::default();
    let mut tagn = 0u64;
    let mut tag = move || {
        tagn += 1;
        format!("t{tagn}")
    };
    let mut mailbox = "Work";
    let sel = raw.cmd(&tag(), &format!("SELECT {mailbox}"));
    let mut view = View {
        uids: Vec::new(),
        announced: 0,
        last: Vec::new(),
        expunged: HashSet::new(),
        uidvalidity: sel.code("UIDVALIDITY").unwrap_or_default(),
    };
    apply(&mut view, &sel, &mut errs);
    check(&mut raw, &tag(), &mut view, &mut errs, &mut checks);
    while Instant::now() < deadline {
        let n = view.uids.len();
        let r = match rng.below(10) {
            0 | 1 if n > 0 => {
                let seq = rng.below(n) + 1;
                let op = if rng.below(2) == 0 { "+" } else { "-" };
                raw.cmd(&tag(), &format!("STORE {seq} {op}FLAGS (\\Seen $label{})", rng.below(3)))
            }
            2 if n > 0 => {
                let uid = view.uids[rng.below(n)];
                let t1 = tag();
                let r1 = raw.cmd(&t1, &format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"));
                apply(&mut view, &r1, &mut errs);
                raw.cmd(&tag(), &format!("UID EXPUNGE {uid}"))
            }
            3 => {
                let m = mail(next_mail.fetch_add(1, Ordering::SeqCst) + 1_000_000);
                let t2 = tag();
                raw.send(format!("{t2} APPEND {mailbox} (\\Seen) {{{}+}}\r\n", m.len()).as_bytes());
                raw.send(&m);
                raw.send(b"\r\n");
                raw.read_until_tagged(&t2)
            }
            4 if n > 0 => {
                let uid = view.uids[rng.below(n)];
                let other = if mailbox == "Work" { "Archive" } else { "Work" };
                raw.cmd(&tag(), &format!("UID MOVE {uid} {other}"))
            }
            // `1:*` on an empty mailbox is a BAD (no message 1), as in Dovecot.
            5 if n > 0 => raw.cmd(&tag(), "FETCH 1:* (FLAGS)"),
            6 if n > 0 => {
                let a = view.uids[rng.below(n)];
                raw.cmd(&tag(), &format!("UID FETCH {a}:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
            }
            7 => {
                let t3 = tag();
                raw.send(format!("{t3} IDLE\r\n").as_bytes());
                let mut lines = Vec::new();
                let first = raw.read_line();
                if !first.starts_with('+') {
                    errs.push(format!("IDLE: {first}"));
                }
                std::thread::sleep(Duration::from_millis(50 + rng.below(150) as u64));
                raw.send(b"DONE\r\n");
                let mut r = raw.read_until_tagged(&t3);
                lines.append(&mut r.lines);
                r.lines = lines;
                r
            }
            8 => {
                // Switch mailboxes: the view starts over (a new SELECT).
                mailbox = if mailbox == "Work" { "Archive" } else { "Work" };
                let s = raw.cmd(&tag(), &format!("SELECT {mailbox}"));
                view = View {
                    uids: Vec::new(),
                    announced: 0,
                    last: Vec::new(),
                    expunged: HashSet::new(),
                    uidvalidity: s.code("UIDVALIDITY").unwrap_or_default(),
                };
                s
            }
            _ => raw.cmd(&tag(), "NOOP"),
        };
        if !r.ok() {
            errs.push(format!(
                "{} failed: {:?} (view {} + {}; previous reply {:?})",
                r.tagged,
                r.lines.last(),
                view.uids.len(),
                view.announced,
                view.last
            ));
        }
        apply(&mut view, &r, &mut errs);
        view.last = r.lines.clone();
        check(&mut raw, &tag(), &mut view, &mut errs, &mut checks);
        ops.fetch_add(1, Ordering::Relaxed);
    }
    let s = raw.cmd(&tag(), &format!("EXAMINE {mailbox}"));
    if mailbox == "Work" && s.code("UIDVALIDITY").unwrap_or_default() != view.uidvalidity {
        errs.push("UIDVALIDITY changed".into());
    }
    raw.logout();
    errors.lock().unwrap().extend(errs.into_iter().map(|e| format!("session {seed}: {e}")));
    checks
}

#[test]
fn twenty_sessions_and_a_fetcher_stay_consistent() {
    let seconds: u64 = std::env::var("STRESS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let fake = FakePop3::start(Script {
        messages: (0..50).map(|i| FakeMessage { uidl: Some(format!("u{i}")), data: mail(i) }).collect(),
        ..Script::default()
    });
    let b = Bridge::with_listeners();
    let work = PopAccount { name: "Work", email: "me@example.com", ..PopAccount::fake(fake.port()) };
    b.add_pop_account(&work, &["--no-test"]).expect(0);
    let _daemon = b.daemon();
    b.run(&["fetch"]).expect(0);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let ops = Arc::new(AtomicU64::new(0));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let next_mail = Arc::new(AtomicU64::new(1000));
    let stop = Arc::new(AtomicBool::new(false));
    // The fetcher side: new mail on the POP server, fetched through the daemon.
    let feeder = {
        let (stop, next_mail, b_cfg, b_data) = (stop.clone(), next_mail.clone(), b.config.clone(), b.data.clone());
        let fake_msgs = Arc::new(Mutex::new(fake));
        let f2 = fake_msgs.clone();
        let h = std::thread::spawn(move || {
            let mut fetches = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let i = next_mail.fetch_add(1, Ordering::SeqCst);
                f2.lock().unwrap().add_messages(vec![FakeMessage { uidl: Some(format!("n{i}")), data: mail(i) }]);
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_popbridge"))
                    .env("POPBRIDGE_CONFIG", &b_cfg)
                    .env("POPBRIDGE_DATA_DIR", &b_data)
                    .arg("fetch")
                    .output()
                    .unwrap();
                assert!(out.status.success(), "fetch during the stress: {}", String::from_utf8_lossy(&out.stderr));
                fetches += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
            fetches
        });
        (h, fake_msgs)
    };
    let threads: Vec<_> = (0..20u64)
        .map(|i| {
            let (t, ops, errors, next_mail) =
                (b.target(Security::Plain, "me"), ops.clone(), errors.clone(), next_mail.clone());
            std::thread::spawn(move || session(t, 0x5eed + i * 7919, deadline, ops, errors, next_mail))
        })
        .collect();
    let per_session: Vec<Checks> = threads.into_iter().map(|t| t.join().expect("a session thread panicked")).collect();
    stop.store(true, Ordering::SeqCst);
    let fetches = feeder.0.join().unwrap();
    let errors = errors.lock().unwrap();
    let total = ops.load(Ordering::Relaxed);
    let sum = per_session.iter().fold(Checks::default(), |a, c| Checks {
        compared: a.compared + c.compared,
        unquiet: a.unquiet + c.unquiet,
        searches: a.searches + c.searches,
    });
    println!(
        "stress: {total} operations in {seconds} s ({:.0}/s) by 20 sessions, {fetches} fetches, {} consistency errors; \
         checks: {} compared, {} without a quiet reply in {CHECK_ATTEMPTS} tries, {} SEARCHes",
        total as f64 / seconds as f64,
        errors.len(),
        sum.compared,
        sum.unquiet,
        sum.searches
    );
    assert!(
        errors.is_empty(),
        "{} consistency errors, e.g.:\n{}",
        errors.len(),
        errors.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(total > 20 * 10, "the sessions made progress ({total} operations)");
    // The checks really compared: every session at least once, and together at least 90% of
    // the checks (one per operation, plus one after each SELECT) got a quiet reply.
    for (i, c) in per_session.iter().enumerate() {
        assert!(c.compared > 0, "session {i}: no check ever compared its view with the server: {c:?}");
    }
    let checks = sum.compared + sum.unquiet;
    assert!(
        sum.compared * 10 >= checks * 9,
        "only {} of {checks} checks compared (the rest never got a reply without updates)",
        sum.compared
    );
    // Every mailbox's view equals the store: what a fresh session sees is what is stored.
    let store = b.store();
    let mut r = Raw::connect_login(&b.target(Security::Plain, "me"));
    for mb in ["Work", "Archive"] {
        let uids: Vec<u32> = store.mailbox_bodies(mb).unwrap().into_iter().map(|(u, _)| u as u32).collect();
        r.cmd("x1", &format!("EXAMINE {mb}")).assert_ok("examine");
        let s = r.cmd("x2", "UID SEARCH ALL");
        let server: Vec<u32> = s
            .lines
            .iter()
            .find(|l| l.starts_with("* SEARCH"))
            .map(|l| l[8..].split_whitespace().filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default();
        assert_eq!(server, uids, "{mb}: IMAP and the store agree");
    }
}
