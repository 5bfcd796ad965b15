//! Ten sessions on one mailbox doing random STORE (system flags and the keywords `$Label1`..
//! `$Label5`; `+FLAGS`, `-FLAGS`, `FLAGS`, some `.SILENT`, some `UNCHANGEDSINCE` where CONDSTORE
//! is advertised), EXPUNGE and UID EXPUNGE, APPEND, FETCH
//! (FLAGS, UID, and MODSEQ / CHANGEDSINCE where CONDSTORE is advertised), NOOP and IDLE, while each
//! session's checker (`util::imap_state::Model`) judges every response line it receives: keywords
//! announced by `* FLAGS` before a FETCH carries them, EXISTS/EXPUNGE counts, UIDs fixed per
//! message, MODSEQ rising per message, HIGHESTMODSEQ never falling, VANISHED naming only messages
//! the client can have. At the end every session's model must agree with a fresh SELECT +
//! `UID FETCH 1:* (FLAGS)`.
//!
//! The same scenario runs against the test Dovecot (which must show no violation: that is what
//! validates the checker) and against popbridge. Capabilities decide the mode of each session:
//! sessions 0–3 `ENABLE QRESYNC` when QRESYNC is advertised, 4–6 use CONDSTORE (`ENABLE` or
//! `SELECT … (CONDSTORE)`) when it is, 7–9 plain RFC 3501.
//! `IMAP_CONCURRENT_SECONDS` sets how long the sessions run (default 10).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::Bridge;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::imap_clients::{Raw, Reply, Security, Target, quote};
use crate::util::imap_state::Model;
use crate::util::rng::Rng;

const SESSIONS: usize = 10;
const MAILBOX: &str = "Concurrent";
const SYSTEM: [&str; 4] = ["\\Seen", "\\Flagged", "\\Answered", "\\Draft"];
const KEYWORDS: [&str; 5] = ["$Label1", "$Label2", "$Label3", "$Label4", "$Label5"];
/// Messages in the mailbox at the start; APPEND and EXPUNGE keep it between LOW and HIGH.
const START: usize = 30;
const LOW: usize = 10;
const HIGH: usize = 60;

fn seconds() -> u64 {
    std::env::var("IMAP_CONCURRENT_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10)
}

fn message(session: usize, n: u64) -> Vec<u8> {
    format!(
        "From: s{session}@example.com\r\nTo: me@example.com\r\nSubject: concurrent {session}.{n}\r\n\
         Message-ID: <concurrent-{session}-{n}@example.com>\r\n\r\nbody {session}.{n}\r\n"
    )
    .into_bytes()
}

fn has_cap(caps: &str, cap: &str) -> bool {
    caps.split_ascii_whitespace().any(|c| c.eq_ignore_ascii_case(cap))
}

/// The capabilities after login (`CAPABILITY`).
fn capabilities(raw: &mut Raw) -> String {
    let r = raw.cmd("C1", "CAPABILITY");
    r.untagged("* CAPABILITY").first().map(|l| l["* CAPABILITY".len()..].to_string()).unwrap_or_default()
}

/// `tag APPEND mailbox (flags) {n+}` (LITERAL+), the reply.
fn append(raw: &mut Raw, tag: &str, flags: &str, msg: &[u8]) -> Reply {
    raw.send(format!("{tag} APPEND {} ({flags}) {{{}+}}\r\n", quote(MAILBOX), msg.len()).as_bytes());
    raw.send(msg);
    raw.send(b"\r\n");
    raw.read_until_tagged(tag)
}

/// Creates the mailbox and puts START messages in it.
fn prepare(t: &Target) {
    let mut raw = Raw::connect_login(t);
    assert!(has_cap(&capabilities(&mut raw), "LITERAL+"), "the scenario APPENDs with LITERAL+");
    raw.cmd("p1", &format!("CREATE {}", quote(MAILBOX))).assert_ok("CREATE");
    for n in 0..START as u64 {
        let flags = if n % 4 == 0 { "\\Seen" } else { "" };
        append(&mut raw, &format!("p{}", n + 2), flags, &message(99, n)).assert_ok("APPEND");
    }
    raw.logout();
}

/// Where the sessions wait for each other (all logged in; all done writing). Unlike a Barrier it
/// gives up after a while, so a session that panicked fails the test instead of hanging it.
#[derive(Default)]
struct Gate(AtomicUsize);

impl Gate {
    fn wait(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        let t = Instant::now();
        while self.0.load(Ordering::SeqCst) < SESSIONS && t.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// What one session did.
struct Outcome {
    model: Model,
    ops: u64,
    nos: u64,
    mode: &'static str,
}

/// A random choice of 1–3 flags (system flags and keywords), as an IMAP list body.
fn some_flags(rng: &mut Rng) -> String {
    let mut v: Vec<&str> = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let f = if rng.below(2) == 0 { SYSTEM[rng.below(SYSTEM.len())] } else { KEYWORDS[rng.below(KEYWORDS.len())] };
        if !v.contains(&f) {
            v.push(f);
        }
    }
    v.join(" ")
}

/// A sequence range `a:b` (or a single number) inside 1..=n, and its members.
fn seq_range(rng: &mut Rng, n: usize) -> (String, Vec<u32>) {
    let a = rng.pick(n);
    let b = (a + rng.below(4) as u32).min(n as u32);
    let set = if a == b { a.to_string() } else { format!("{a}:{b}") };
    (set, (a..=b).collect())
}

fn session(t: Target, index: usize, secs: u64, start: Arc<Gate>, done: Arc<Gate>) -> Outcome {
    let mut rng = Rng::seeded(0xC0C0 + index as u64);
    let mut raw = Raw::connect_login(&t);
    let caps = capabilities(&mut raw);
    let qresync = index < 4 && has_cap(&caps, "QRESYNC");
    let condstore = qresync || (index < 7 && has_cap(&caps, "CONDSTORE"));
    let mode = if qresync {
        "QRESYNC"
    } else if condstore {
        "CONDSTORE"
    } else {
        "plain"
    };
    let mut model = Model::new(condstore, qresync);
    let mut tagn = 0u64;
    let mut tag = move || {
        tagn += 1;
        format!("c{tagn}")
    };
    let mut select = format!("SELECT {}", quote(MAILBOX));
    if qresync {
        let e = raw.cmd(&tag(), "ENABLE QRESYNC");
        assert!(e.ok() && !e.untagged("* ENABLED").is_empty(), "ENABLE QRESYNC: {:?}", e.lines);
    } else if condstore && index.is_multiple_of(2) {
        raw.cmd(&tag(), "ENABLE CONDSTORE").assert_ok("ENABLE CONDSTORE");
    } else if condstore {
        select.push_str(" (CONDSTORE)");
    }
    model.begin_select();
    let sel = raw.cmd(&tag(), &select);
    sel.assert_ok("SELECT");
    model.feed_all(&sel.raw);
    let (mut ops, mut nos, mut appended) = (0u64, 0u64, 0u64);
    start.wait();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        let n = model.count();
        let known = model.known_uids();
        let mut choice = rng.below(100);
        if n < LOW && choice < 42 {
            choice = 45; // APPEND
        } else if n > HIGH && (42..52).contains(&choice) {
            choice = 38; // EXPUNGE
        }
        if n == 0 && choice < 80 || known.is_empty() && (35..42).contains(&choice) {
            choice = 45; // nothing to STORE or FETCH by number, or no UID known to expunge: APPEND
        }
        let silent = rng.below(10) < 3;
        let mut forget: Option<(bool, Vec<u32>)> = None; // (by UID, which) after a .SILENT STORE
        let r = match choice {
            0..35 => {
                let op = ["+", "+", "-", "-", ""][rng.below(5)];
                let dot = if silent { ".SILENT" } else { "" };
                let flags = some_flags(&mut rng);
                // CONDSTORE: sometimes only if unchanged since this session's HIGHESTMODSEQ
                // (messages others changed since come back in [MODIFIED …]).
                let unchanged = match model.highestmodseq {
                    Some(m) if condstore && rng.below(4) == 0 => format!("(UNCHANGEDSINCE {m}) "),
                    _ => String::new(),
                };
                if rng.below(10) < 3 && !known.is_empty() {
                    let uid = known[rng.below(known.len())];
                    forget = silent.then(|| (true, vec![uid]));
                    raw.cmd(&tag(), &format!("UID STORE {uid} {unchanged}{op}FLAGS{dot} ({flags})"))
                } else {
                    let (set, seqs) = seq_range(&mut rng, n);
                    forget = silent.then_some((false, seqs));
                    raw.cmd(&tag(), &format!("STORE {set} {unchanged}{op}FLAGS{dot} ({flags})"))
                }
            }
            35..42 => {
                let uid = known[rng.below(known.len())];
                let d = raw.cmd(&tag(), &format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"));
                model.feed_all(&d.raw);
                model.forget_flags_of_uids(&[uid]);
                if rng.below(2) == 0 {
                    raw.cmd(&tag(), "EXPUNGE")
                } else {
                    raw.cmd(&tag(), &format!("UID EXPUNGE {uid}"))
                }
            }
            42..52 => {
                appended += 1;
                let flags = if rng.below(2) == 0 { some_flags(&mut rng) } else { String::new() };
                append(&mut raw, &tag(), &flags, &message(index, appended))
            }
            52..80 => {
                let items = if condstore { "(UID FLAGS MODSEQ)" } else { "(UID FLAGS)" };
                match rng.below(5) {
                    0 | 1 => raw.cmd(&tag(), &format!("FETCH 1:* {items}")),
                    2 => raw.cmd(&tag(), &format!("FETCH {} (FLAGS)", seq_range(&mut rng, n).0)),
                    3 if condstore => {
                        let since = model.highestmodseq.unwrap_or(1).saturating_sub(rng.below(20) as u64).max(1);
                        raw.cmd(&tag(), &format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {since})"))
                    }
                    _ => raw.cmd(&tag(), "UID FETCH 1:* (FLAGS)"),
                }
            }
            80..95 => raw.cmd(&tag(), "NOOP"),
            _ => {
                let t3 = tag();
                raw.send(format!("{t3} IDLE\r\n").as_bytes());
                let first = raw.read_line_bytes();
                model.feed(&first);
                if first.starts_with(b"+") {
                    std::thread::sleep(Duration::from_millis(20 + rng.below(100) as u64));
                    raw.send(b"DONE\r\n");
                }
                raw.read_until_tagged(&t3)
            }
        };
        model.feed_all(&r.raw);
        if r.bad() {
            let cmd = raw.log().lines().rev().find(|l| l.starts_with("C: ")).unwrap_or("").to_string();
            model.violation("BAD for a valid command", format!("{cmd} → {}", r.tagged));
        } else if r.no() {
            nos += 1; // a message another session expunged meanwhile, say (RFC 3501 allows NO)
        } else if let Some((by_uid, which)) = forget {
            if by_uid { model.forget_flags_of_uids(&which) } else { model.forget_flags(&which) }
        }
        ops += 1;
    }
    // Everybody stops writing; then each session hears the rest.
    done.wait();
    let r = raw.cmd(&tag(), "NOOP");
    model.feed_all(&r.raw);
    if model.uids().contains(&None) {
        let r = raw.cmd(&tag(), "FETCH 1:* (UID)");
        model.feed_all(&r.raw);
    }
    if let Some(dir) = std::env::var_os("IMAP_CONCURRENT_LOG") {
        let _ = std::fs::write(std::path::Path::new(&dir).join(format!("session-{index}.log")), raw.log());
    }
    raw.logout();
    Outcome { model, ops, nos, mode }
}

/// The scenario against `t` (a server where the mailbox does not exist yet): the total model
/// (violations of every session added up) and a summary line.
fn scenario(t: &Target, server: &str) -> (Model, String) {
    prepare(t);
    let secs = seconds();
    let (start, done) = (Arc::new(Gate::default()), Arc::new(Gate::default()));
    let handles: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let (t, start, done) = (t.clone(), start.clone(), done.clone());
            std::thread::spawn(move || session(t, i, secs, start, done))
        })
        .collect();
    let outcomes: Vec<Outcome> = handles.into_iter().map(|h| h.join().expect("a session panicked")).collect();
    // The truth: a fresh session's SELECT + UID FETCH 1:* (FLAGS).
    let mut fresh = Raw::connect_login(t);
    let sel = fresh.cmd("f1", &format!("SELECT {}", quote(MAILBOX)));
    let exists = sel.number("EXISTS").unwrap_or(0);
    let mut truth: Vec<(u32, u32, Vec<String>)> = Vec::new();
    if exists > 0 {
        let f = fresh.cmd("f2", "UID FETCH 1:* (FLAGS)");
        f.assert_ok("UID FETCH");
        for x in f.fetches() {
            truth.push((x.seq, x.uid().expect("UID FETCH gives UIDs"), x.flags().unwrap_or_default()));
        }
    }
    fresh.logout();
    truth.sort_by_key(|x| x.0);
    let truth: Vec<(u32, Vec<String>)> = truth.into_iter().map(|(_, u, f)| (u, f)).collect();
    assert_eq!(truth.len(), exists as usize, "the fresh UID FETCH lists every message");
    let mut total = Model::default();
    let (mut ops, mut nos, mut compared) = (0, 0, 0);
    let mut modes = Vec::new();
    for mut o in outcomes {
        compared += o.model.compare(&truth);
        total.absorb(&o.model);
        ops += o.ops;
        nos += o.nos;
        modes.push(o.mode);
    }
    let summary = format!(
        "{server}: {SESSIONS} sessions ({modes:?}) for {secs} s: {ops} commands ({:.0}/s), {nos} NO, {} messages at \
         the end, {compared} flag sets compared with a fresh SELECT; {}",
        ops as f64 / secs as f64,
        truth.len(),
        total.report()
    );
    eprintln!("{summary}");
    assert!(ops >= (SESSIONS as u64) * 20, "too few commands ran to judge anything: {summary}");
    assert!(compared > 0 && total.keyword_fetches > 0, "the checker had nothing to judge: {summary}");
    (total, summary)
}

/// The test Dovecot passes: this validates the checker (no false alarms on the reference server,
/// with CONDSTORE and QRESYNC sessions among the ten).
#[test]
fn dovecot_passes_the_state_checker() {
    let d = Dovecot::start(DovecotOpts::default());
    let t = Target::dovecot(&d, "alice", "alice-pw", Security::Plain);
    let (total, summary) = scenario(&t, "Dovecot");
    assert!(total.modseq_fetches > 0 && total.vanished > 0, "CONDSTORE and QRESYNC were exercised: {summary}");
    assert_eq!(total.total(), 0, "{summary}");
}

/// popbridge under the same scenario. (Before issue 15, keywords reached FETCH responses without
/// ever being announced by `* FLAGS`: thousands of violations.)
#[test]
fn popbridge_passes_the_state_checker() {
    let b = Bridge::with_listeners();
    let _daemon = b.daemon();
    let t = b.target(Security::Plain, "me");
    let (total, summary) = scenario(&t, "popbridge");
    assert_eq!(total.total(), 0, "{summary}");
}

/// Session B flags messages 1 and 2 in one STORE (one write, one MODSEQ for both); session A,
/// not told yet, then STOREs a flag message 1 already has (its write changes nothing). A must
/// still hear that message 2 changed — by the end of its next NOOP at the latest (RFC 3501
/// §7.4.2). Found by the checker above (a session's final model disagreed with a fresh SELECT).
fn a_no_op_store_does_not_hide_another_sessions_change(t: &Target) {
    let box_ = "NoOpStore";
    let mut a = Raw::connect_login(t);
    a.cmd("a1", &format!("CREATE {box_}")).assert_ok("CREATE");
    for (i, m) in [message(1, 1), message(1, 2)].iter().enumerate() {
        a.send(format!("a2{i} APPEND {box_} {{{}+}}\r\n", m.len()).as_bytes());
        a.send(m);
        a.send(b"\r\n");
        a.read_until_tagged(&format!("a2{i}")).assert_ok("APPEND");
    }
    a.cmd("a3", &format!("SELECT {box_}")).assert_ok("SELECT");
    let mut b = Raw::connect_login(t);
    b.cmd("b1", &format!("SELECT {box_}")).assert_ok("SELECT");
    b.cmd("b2", "STORE 1:2 +FLAGS.SILENT (\\Flagged)").assert_ok("STORE");
    let store = a.cmd("a4", "STORE 1 +FLAGS (\\Flagged)");
    store.assert_ok("STORE");
    let noop = a.cmd("a5", "NOOP");
    let told = store
        .fetches()
        .into_iter()
        .chain(noop.fetches())
        .any(|f| f.seq == 2 && f.flags().is_some_and(|fl| fl.iter().any(|x| x.eq_ignore_ascii_case("\\Flagged"))));
    assert!(told, "session A never heard that message 2 is \\Flagged:\n{}", a.log());
    b.logout();
    a.logout();
}

#[test]
fn dovecot_reports_another_sessions_change_after_a_no_op_store() {
    let d = Dovecot::start(DovecotOpts::default());
    a_no_op_store_does_not_hide_another_sessions_change(&Target::dovecot(&d, "alice", "alice-pw", Security::Plain));
}

#[test]
fn popbridge_reports_another_sessions_change_after_a_no_op_store() {
    let b = Bridge::with_listeners();
    let _daemon = b.daemon();
    a_no_op_store_does_not_hide_another_sessions_change(&b.target(Security::Plain, "me"));
}
