//! Issue 18: accounts that deliver into an existing mail server (`[account.deliver]`) — over LMTP
//! and over IMAP APPEND, into a real Dovecot (its POP3 user alice is the source, user bob the
//! target), and against scripted targets (`util::fake_sink`) for the refusals.
//!
//! What a user would notice: the messages in bob's mailbox (Dovecot's maildir files, which its
//! IMAP serves), what is left in alice's, what popbridge's own store holds (no bodies), the exit
//! code and message of `popbridge fetch`, and what `status` says.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::fake_pop3::{FakeMessage, FakePop3, Script, mail};
use crate::util::fake_sink::{Fail, FakeTarget};
use crate::util::rng::Rng;
use crate::util::{Bridge, as_pop3_sends};

fn dovecot() -> Dovecot {
    Dovecot::start(DovecotOpts { lmtp: true, ..DovecotOpts::default() })
}

/// The target of each test: LMTP to bob, or IMAP APPEND as bob into `mailbox`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sink {
    Lmtp,
    /// LMTP, with the server's IMAP configured beside it for looking up interrupted deliveries.
    LmtpChecked,
    Imap(&'static str),
}

fn deliver_section(sink: Sink, lmtp_port: u16, imap_port: u16) -> String {
    match sink {
        Sink::Lmtp => {
            format!("\n[account.deliver]\nlmtp = \"127.0.0.1:{lmtp_port}\"\nrecipient = \"bob@example.com\"\n")
        }
        Sink::LmtpChecked => format!(
            "\n[account.deliver]\nlmtp = \"127.0.0.1:{lmtp_port}\"\nrecipient = \"bob@example.com\"\nimap = \"imap://127.0.0.1:{imap_port}\"\nuser = \"bob\"\npassword_command = \"echo bob-pw\"\n"
        ),
        Sink::Imap(mailbox) => format!(
            "\n[account.deliver]\nimap = \"imap://127.0.0.1:{imap_port}\"\nuser = \"bob\"\npassword_command = \"echo bob-pw\"\nmailbox = \"{mailbox}\"\n"
        ),
    }
}

/// A bridge with account Src: alice's POP3 on `pop_port` (plain), `delete`, delivering to `sink`.
fn bridge(pop_port: u16, user: &str, password: &str, delete: &str, section: &str) -> Bridge {
    let b = Bridge::new();
    b.add_account("Src", pop_port, "plain", user, password, &["--delete", delete, "--no-test"]).expect(0);
    b.append_config(section);
    b
}

/// Distinct messages with Message-IDs; some bigger, so a fetch spans several batches.
fn messages(tag: &str, n: usize, rng: &mut Rng) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut m = format!(
                "From: Sender <sender@example.org>\r\nTo: alice@example.com\r\nSubject: {tag} {i}\r\n\
                 Date: Mon, 7 Jul 2025 10:00:00 +0000\r\nMessage-ID: <{tag}.{i}@deliver.test>\r\n\r\n"
            );
            let lines = 5 + rng.below(400);
            for l in 0..lines {
                m.push_str(&format!("{tag} message {i} line {l}: the quick brown fox jumps over the lazy dog\r\n"));
            }
            if i % 7 == 3 {
                m.push_str(".a line that starts with a dot\r\n");
            }
            m.into_bytes()
        })
        .collect()
}

/// Dovecot's LMTP puts trace headers in front of a delivered message (Return-Path, Delivered-To,
/// Received); the message itself follows byte for byte. IMAP APPEND stores it exactly. (Dovecot's
/// maildir files have LF line ends, `mail_save_crlf = no`; its IMAP serves them with CRLF, as
/// `as_pop3_sends` makes them.)
/// `stored` as `target_messages` gives it (normalized so).
fn delivered_as(stored: &[u8], original: &[u8], sink: Sink) -> bool {
    match sink {
        Sink::Imap(_) => stored == original,
        Sink::Lmtp | Sink::LmtpChecked => {
            let Some(prefix) = stored.strip_suffix(original) else { return false };
            let text = String::from_utf8_lossy(prefix);
            let mut ok = true;
            for line in text.split("\r\n").filter(|l| !l.is_empty()) {
                let trace = ["Return-Path:", "Delivered-To:", "Received:"].iter().any(|h| line.starts_with(h));
                ok &= trace || line.starts_with(' ') || line.starts_with('\t');
            }
            ok
        }
    }
}

fn target_messages(d: &Dovecot, sink: Sink) -> Vec<Vec<u8>> {
    let folder = match sink {
        Sink::Lmtp | Sink::LmtpChecked | Sink::Imap("INBOX") => String::new(),
        // Dovecot's maildir keeps folder names as IMAP sends them, in modified UTF-7 (RFC 3501
        // §5.1.3: ü is U+00FC, base64 "APw").
        Sink::Imap("Entwürfe") => ".Entw&APw-rfe".to_string(),
        Sink::Imap(m) => format!(".{m}"),
    };
    d.folder_files("bob", &folder).iter().filter_map(|p| std::fs::read(p).ok()).map(|m| as_pop3_sends(&m)).collect()
}

/// How often each original is in the target.
fn counts(originals: &[Vec<u8>], target: &[Vec<u8>], sink: Sink) -> Vec<usize> {
    originals.iter().map(|o| target.iter().filter(|t| delivered_as(t, o, sink)).count()).collect()
}

fn full_fetch(sink: Sink) {
    let d = dovecot();
    let mut rng = Rng::seeded(18);
    let originals: Vec<Vec<u8>> = messages("full", 40, &mut rng).iter().map(|m| as_pop3_sends(m)).collect();
    d.deliver("alice", &originals);
    let b = bridge(d.pop3_port, "alice", "alice-pw", "after-fetch", &deliver_section(sink, d.lmtp_port, d.imap_port));
    let r = b.run(&["fetch"]).expect(0);
    let target = target_messages(&d, sink);
    assert_eq!(target.len(), originals.len(), "{sink:?}: every message delivered once\n{}", r.stderr);
    assert!(counts(&originals, &target, sink).iter().all(|&c| c == 1), "{sink:?}: byte for byte, each once");
    assert!(d.messages("alice").is_empty(), "after-fetch deleted what was delivered");
    assert!(b.messages("Src").is_empty(), "no body in popbridge's own store");
    // A second fetch delivers nothing (and finds nothing to delete).
    let more = as_pop3_sends(&mail("late", "one more"));
    b.run(&["fetch"]).expect(0);
    assert_eq!(target_messages(&d, sink).len(), originals.len(), "{sink:?}: the second fetch delivered nothing");
    // New mail after that: only it is delivered.
    d.deliver("alice", std::slice::from_ref(&more));
    b.run(&["fetch"]).expect(0);
    let target = target_messages(&d, sink);
    assert_eq!(target.len(), originals.len() + 1);
    assert_eq!(counts(&[more], &target, sink), [1]);
    let status = b.run(&["status"]).expect(0).stdout;
    let want = match sink {
        Sink::Lmtp | Sink::LmtpChecked => format!("LMTP 127.0.0.1:{} for bob@example.com", d.lmtp_port),
        Sink::Imap(m) => format!("IMAP imap://127.0.0.1:{} as bob, mailbox {m}", d.imap_port),
    };
    assert!(status.contains(&want), "status names the target:\n{status}");
    let j = b.status_json();
    let dj = &crate::util::account(&j, "Src")["deliver"];
    assert!(dj["target"].as_str().is_some_and(|t| t.contains(&want)), "{dj}");
    assert_eq!(dj["delivered"], serde_json::json!(originals.len() + 1), "{dj}");
    assert_eq!(dj["unconfirmed"], serde_json::json!(0), "{dj}");
}

#[test]
fn lmtp_into_dovecot_delivers_each_message_once_and_deletes_exactly_what_was_delivered() {
    full_fetch(Sink::Lmtp);
}

#[test]
fn imap_append_into_dovecot_delivers_byte_exact_creating_the_mailbox() {
    // "Fetched" does not exist: NO [TRYCREATE], CREATE, APPEND again.
    full_fetch(Sink::Imap("Fetched"));
}

#[test]
fn imap_append_into_a_mailbox_with_a_non_ascii_name() {
    full_fetch(Sink::Imap("Entwürfe"));
}

/// The deliveries started again after an unconfirmed one, as the journal counts them.
fn repeated(b: &Bridge) -> i64 {
    let c = rusqlite::Connection::open(b.store_path()).expect("open store");
    c.query_row("SELECT coalesce(sum(attempts - 1), 0) FROM deliveries", [], |r| r.get(0)).expect("journal")
}

/// Journal rows left 'delivering' (a delivery whose confirmation was not recorded).
fn unconfirmed(b: &Bridge) -> i64 {
    let c = rusqlite::Connection::open(b.store_path()).expect("open store");
    c.query_row("SELECT count(*) FROM deliveries WHERE state = 'delivering'", [], |r| r.get(0)).expect("journal")
}

/// kill -9 at random instants of delivering fetches (fresh mail before each), then one clean
/// fetch. After every kill, every message is still on the POP server or in the target; at the
/// end each is in the target — once with IMAP (an unconfirmed APPEND is found by Message-ID and
/// size, not appended again); with LMTP at most as many extra copies as the journal counts
/// repeated deliveries (the documented window). Returns (kills, duplicates, repeated).
fn kill_series(sink: Sink, kills: usize, seed: u64) -> (usize, usize, i64) {
    let d = dovecot();
    let mut rng = Rng::seeded(seed);
    let b = bridge(d.pop3_port, "alice", "alice-pw", "after-fetch", &deliver_section(sink, d.lmtp_port, d.imap_port));
    let mut all: Vec<Vec<u8>> = messages("calibrate", 8, &mut rng).iter().map(|m| as_pop3_sends(m)).collect();
    d.deliver("alice", &all);
    let t = Instant::now();
    b.run(&["fetch"]).expect(0);
    // A kill anywhere in a fetch like this one, and a little after.
    let span_ms = (t.elapsed().as_millis() as usize * 6 / 5).max(20);
    for k in 0..kills {
        let new: Vec<Vec<u8>> = messages(&format!("kill{k}"), 8, &mut rng).iter().map(|m| as_pop3_sends(m)).collect();
        d.deliver("alice", &new);
        all.extend(new);
        // A fetch that finds an interrupted delivery first waits until the server is done with it
        // (3 s after it started, `fetch::target::SETTLE_SECS`), then looks: the kill may come in
        // that wait or after it.
        let waits = sink != Sink::Lmtp && unconfirmed(&b) > 0;
        let window = if waits { span_ms + 3000 } else { span_ms };
        let mut child = b.cmd(&["fetch"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn fetch");
        std::thread::sleep(Duration::from_millis(rng.below(window) as u64));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let on_server: Vec<Vec<u8>> = d.messages("alice").iter().map(|m| as_pop3_sends(m)).collect();
        let target = target_messages(&d, sink);
        for (i, m) in all.iter().enumerate() {
            assert!(
                on_server.contains(m) || target.iter().any(|t| delivered_as(t, m, sink)),
                "{sink:?}, kill {k}: message {i} is neither on the POP server nor in the target"
            );
        }
    }
    b.run(&["fetch"]).expect(0);
    assert!(d.messages("alice").is_empty(), "{sink:?}: the clean fetch delivered and deleted the rest");
    let c = counts(&all, &target_messages(&d, sink), sink);
    assert!(c.iter().all(|&n| n >= 1), "{sink:?}: nothing lost: {c:?}");
    let dups: usize = c.iter().map(|n| n - 1).sum();
    let rep = repeated(&b);
    // Each extra copy is a delivery the journal shows as started again after an unconfirmed one.
    let db = rusqlite::Connection::open(b.store_path()).expect("open store");
    for (m, &n) in all.iter().zip(&c).filter(|(_, n)| **n > 1) {
        let text = String::from_utf8_lossy(m);
        let id = text.split("Message-ID: <").nth(1).and_then(|t| t.split('>').next()).expect("a Message-ID");
        let attempts: i64 = db
            .query_row("SELECT attempts FROM deliveries WHERE message_id = ?1", [id], |r| r.get(0))
            .expect("a journal row");
        assert!(attempts >= n as i64, "{sink:?}: {id} is in the target {n} times, delivered {attempts} times");
    }
    eprintln!(
        "{sink:?}: {kills} kills, {} messages, {dups} duplicate(s), {rep} repeated delivery attempt(s)",
        all.len()
    );
    (kills, dups, rep)
}

#[test]
fn kill_9_while_delivering_loses_nothing_and_duplicates_only_inside_the_lmtp_window() {
    let imap = kill_series(Sink::Imap("INBOX"), 20, 1801);
    assert_eq!(imap.1, 0, "IMAP APPEND: no duplicates in the target");
    // LMTP, looked up through the server's IMAP: fewer duplicates (the server may still be
    // finishing the killed session's deliveries when the next fetch looks), never more than the
    // repeated attempts.
    let mut kills = imap.0;
    for (sink, seed) in [(Sink::LmtpChecked, 1803), (Sink::Lmtp, 1802)] {
        let (k, dups, repeated) = kill_series(sink, 20, seed);
        kills += k;
        assert!(
            dups as i64 <= repeated,
            "{sink:?}: {dups} duplicate(s), but the journal counts only {repeated} repeated delivery attempt(s)"
        );
    }
    assert!(kills >= 50);
}

#[test]
fn account_test_checks_the_target() {
    let d = dovecot();
    for sink in [Sink::Lmtp, Sink::LmtpChecked, Sink::Imap("INBOX"), Sink::Imap("Not Yet There")] {
        let b = bridge(d.pop3_port, "alice", "alice-pw", "never", &deliver_section(sink, d.lmtp_port, d.imap_port));
        let r = b.run(&["account", "test", "Src"]).expect(0);
        assert!(r.stdout.contains("delivery target OK"), "{sink:?}:\n{}", r.stdout);
        if sink == Sink::Imap("Not Yet There") {
            // Dovecot answers EXAMINE with a bare NO; the first delivery creates it.
            assert!(r.stdout.contains("does not exist yet"), "{}", r.stdout);
        }
    }
    // A recipient the server does not know: the check fails, and says so.
    let b = bridge(
        d.pop3_port,
        "alice",
        "alice-pw",
        "never",
        &format!(
            "\n[account.deliver]\nlmtp = \"127.0.0.1:{}\"\nrecipient = \"nobody-here@example.com\"\n",
            d.lmtp_port
        ),
    );
    let r = b.run(&["account", "test", "Src"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("nobody-here@example.com") && r.stderr.contains("550"), "{}", r.stderr);
    // A wrong IMAP password.
    let b = bridge(
        d.pop3_port,
        "alice",
        "alice-pw",
        "never",
        &format!(
            "\n[account.deliver]\nimap = \"imap://127.0.0.1:{}\"\nuser = \"bob\"\npassword_command = \"echo wrong\"\n",
            d.imap_port
        ),
    );
    let r = b.run(&["account", "test", "Src"]);
    assert_eq!(r.code, 5, "an authentication error\n{}", r.stderr);
}

/// `imap://` with STARTTLS (`tls = "starttls"`, which a loopback server needs asked for): the
/// APPENDs go over TLS verified with the test CA — Dovecot's login line says TLS — byte for byte.
/// A target that does not offer STARTTLS is refused before any login, and nothing is deleted.
#[test]
fn imap_with_starttls_is_verified_and_required() {
    let d = dovecot();
    let mut rng = Rng::seeded(1802);
    let originals: Vec<Vec<u8>> = messages("stls", 6, &mut rng).iter().map(|m| as_pop3_sends(m)).collect();
    d.deliver("alice", &originals);
    let section = format!(
        "\n[account.deliver]\nimap = \"imap://127.0.0.1:{}\"\ntls = \"starttls\"\nca_file = \"{}\"\nuser = \"bob\"\npassword_command = \"echo bob-pw\"\n",
        d.imap_port,
        d.ca_pem_path.display()
    );
    let b = bridge(d.pop3_port, "alice", "alice-pw", "after-fetch", &section);
    let r = b.run(&["account", "test", "Src"]).expect(0);
    assert!(r.stdout.contains("(STARTTLS) as bob"), "{}", r.stdout);
    b.run(&["fetch"]).expect(0);
    let target = target_messages(&d, Sink::Imap("INBOX"));
    assert!(counts(&originals, &target, Sink::Imap("INBOX")).iter().all(|&c| c == 1), "each delivered once");
    assert!(d.messages("alice").is_empty());
    let logins: Vec<String> =
        d.log().lines().filter(|l| l.contains("imap-login: Info: Login: user=<bob>")).map(str::to_string).collect();
    assert!(!logins.is_empty() && logins.iter().all(|l| l.contains(", TLS")), "every login over TLS: {logins:?}");

    // The scripted target offers no STARTTLS.
    let t = FakeTarget::imap(Fail::None);
    let (pop, _, b) = refusal_setup(format!(
        "\n[account.deliver]\nimap = \"imap://127.0.0.1:{}\"\ntls = \"starttls\"\nuser = \"bob\"\npassword = \"pw\"\n",
        t.port
    ));
    let r = b.run(&["fetch"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("does not offer STARTTLS") && r.stderr.contains("never logs in without TLS"),
        "{}",
        r.stderr
    );
    assert!(t.accepted().is_empty() && pop.deleted_uidls().is_empty(), "nothing delivered, nothing deleted");
    assert_eq!(pop.remaining().len(), 5);
}

/// Five messages on the fake POP3 server (after-fetch), delivered to `target`.
fn refusal_setup(section: String) -> (FakePop3, Vec<Vec<u8>>, Bridge) {
    let data: Vec<Vec<u8>> = (1..=5).map(|i| mail(&format!("m{i}"), &format!("body {i}"))).collect();
    let msgs = data.iter().enumerate().map(|(i, d)| FakeMessage::new(&format!("u{}", i + 1), d.clone())).collect();
    let pop = FakePop3::start(Script { messages: msgs, ..Script::default() });
    let b = bridge(pop.port(), "u", "p", "after-fetch", &section);
    (pop, data, b)
}

fn lmtp_section(port: u16) -> String {
    format!("\n[account.deliver]\nlmtp = \"127.0.0.1:{port}\"\nrecipient = \"bob@example.com\"\n")
}

fn imap_section(port: u16) -> String {
    format!("\n[account.deliver]\nimap = \"imap://127.0.0.1:{port}\"\nuser = \"bob\"\npassword = \"pw\"\n")
}

/// A refused (or dropped) delivery: the fetch fails with `code`, saying `says`; only messages the
/// target accepted may have had a DELE, and none was applied (no QUIT); status shows the class.
/// Then the target is fixed: the next fetch delivers the rest, each message once in all.
fn refused(pop: &FakePop3, data: &[Vec<u8>], b: &Bridge, t: &FakeTarget, code: i32, says: &str, class: &str) {
    let r = b.run(&["fetch"]);
    assert_eq!(r.code, code, "exit code\n{}", r.stderr);
    assert!(r.stderr.contains(says), "the error says {says:?}:\n{}", r.stderr);
    let accepted = t.accepted();
    for u in pop.dele_requested() {
        let i: usize = u.trim_start_matches('u').parse().expect("uidl");
        assert!(accepted.contains(&data[i - 1]), "DELE sent for {u}, which the target did not accept");
    }
    assert!(pop.deleted_uidls().is_empty(), "nothing deleted from the POP server");
    let status = b.run(&["status"]).expect(0).stdout;
    assert!(status.contains(&format!("last error ({class})")), "status shows the class:\n{status}");
    t.set_fail(Fail::None);
    b.run(&["fetch"]).expect(0);
    let accepted = t.accepted();
    for (i, d) in data.iter().enumerate() {
        assert_eq!(accepted.iter().filter(|a| *a == d).count(), 1, "message {} delivered once", i + 1);
    }
    assert!(pop.remaining().is_empty(), "after-fetch deleted everything once it was delivered");
}

/// The IMAP server takes the first APPEND and saves it 1.5 s later, while popbridge, waiting for
/// the answer, is killed. The next fetch comes at once: it waits for the server to be done with
/// the killed session (`fetch::target::SETTLE_SECS`) before it looks, finds the message, and
/// appends only the others — each message once. (Looking at once, it appended the first message
/// again, and the late save made it two.)
#[test]
fn an_append_the_server_saves_after_popbridge_died_is_found_not_appended_twice() {
    let t = FakeTarget::imap(Fail::SaveLate { at: 1, ms: 1500 });
    let (pop, data, b) = refusal_setup(imap_section(t.port));
    let mut child = b.cmd(&["fetch"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn fetch");
    let start = Instant::now();
    while t.saving() == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "the first APPEND never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill(); // SIGKILL, waiting for the APPEND's answer
    let _ = child.wait();
    t.set_fail(Fail::None);
    let r = b.run(&["fetch"]).expect(0);
    while t.saving() > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let accepted = t.accepted();
    for (i, d) in data.iter().enumerate() {
        assert_eq!(accepted.iter().filter(|a| *a == d).count(), 1, "message {} once\n{}", i + 1, r.stderr);
    }
    assert!(pop.remaining().is_empty(), "after-fetch deleted everything once it was delivered");
}

#[test]
fn lmtp_452_is_temporary_and_the_rest_waits_on_the_pop_server() {
    let t = FakeTarget::lmtp(Fail::Refuse { at: 3, line: "452 4.2.2 Mailbox is full".into(), rcpt: false });
    let (pop, data, b) = refusal_setup(lmtp_section(t.port));
    refused(&pop, &data, &b, &t, 6, "452 4.2.2 Mailbox is full", "temporary");
}

#[test]
fn lmtp_550_unknown_recipient_is_permanent_with_guidance() {
    let t = FakeTarget::lmtp(Fail::Refuse { at: 0, line: "550 5.1.1 User doesn't exist".into(), rcpt: true });
    let (pop, data, b) = refusal_setup(lmtp_section(t.port));
    refused(&pop, &data, &b, &t, 1, "[account.deliver]", "other");
    assert!(!t.accepted().is_empty());
}

#[test]
fn imap_overquota_is_temporary() {
    let t = FakeTarget::imap(Fail::Refuse { at: 2, line: "NO [OVERQUOTA] Quota exceeded".into(), rcpt: false });
    let (pop, data, b) = refusal_setup(imap_section(t.port));
    refused(&pop, &data, &b, &t, 6, "OVERQUOTA", "temporary");
}

#[test]
fn the_target_going_down_mid_session_is_temporary_and_nothing_unconfirmed_is_deleted() {
    let t = FakeTarget::lmtp(Fail::Drop { at: 3 });
    let (pop, data, b) = refusal_setup(lmtp_section(t.port));
    refused(&pop, &data, &b, &t, 6, "closed the connection", "temporary");
}

/// The window itself, without a kill: every message confirmed by the target but not recorded
/// (the journal's rows put back to 'delivering', the POP identities forgotten — the state a crash
/// right before the second commit leaves). The next fetch finds them in an IMAP target (and
/// through an LMTP target's IMAP check) and delivers nothing again; plain LMTP delivers them
/// again, and status counts it.
#[test]
fn a_lost_confirmation_is_found_in_the_target_or_counted_as_repeated() {
    for sink in [Sink::Imap("INBOX"), Sink::LmtpChecked, Sink::Lmtp] {
        let d = dovecot();
        let mut rng = Rng::seeded(7);
        let originals: Vec<Vec<u8>> = messages("lost", 6, &mut rng).iter().map(|m| as_pop3_sends(m)).collect();
        d.deliver("alice", &originals);
        let b = bridge(d.pop3_port, "alice", "alice-pw", "never", &deliver_section(sink, d.lmtp_port, d.imap_port));
        b.run(&["fetch"]).expect(0);
        b.sql("UPDATE deliveries SET state = 'delivering', confirmation = NULL; DELETE FROM pop_uidls;");
        let r = b.run(&["fetch"]).expect(0);
        let c = counts(&originals, &target_messages(&d, sink), sink);
        let status = b.run(&["status"]).expect(0).stdout;
        if sink == Sink::Lmtp {
            assert!(c.iter().all(|&n| n == 2), "{sink:?}: delivered again: {c:?}\n{}", r.stderr);
            assert!(status.contains("6 delivery attempt(s) repeated"), "{status}");
        } else {
            assert!(c.iter().all(|&n| n == 1), "{sink:?}: found, not delivered again: {c:?}\n{}", r.stderr);
            assert!(status.contains("found as UID"), "{sink:?}: the confirmation says how:\n{status}");
        }
        assert_eq!(d.messages("alice").len(), originals.len(), "delete = never");
    }
}
