//! A bounded first import (issue 17, part 3): `account add --since DAY | --newest N |
//! --from-now-on` against the test Dovecot, with messages of known arrival dates. Each mode
//! downloads exactly the expected messages (their bodies, in the store); with `after-fetch` none
//! of the others is ever DELEted (Dovecot's maildir still has them); a later fetch brings only the
//! new mail; and a fetch killed (-9) during the first bounded cycle, then run again, ends the same.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::util::crash_points::Point;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::pop_proxy::PopProxy;
use crate::util::{Bridge, as_pop3_sends, sorted};

/// Messages on the server before the first fetch: number i (0-based) arrived on 2026-01-(i+1).
const ON_SERVER: usize = 10;

/// A message that arrived on `day` of January 2026 (its receiving server's Received header), with
/// a Date header `date` (what the sender's clock said).
fn message(i: usize, day: u32, date: &str) -> Vec<u8> {
    format!(
        "Received: from mx.example.net by pop.example.org with ESMTP id {i:04}; Thu, {day:02} Jan 2026 09:30:00 +0000\r\n\
         From: sender{i}@example.net\r\nTo: alice@example.org\r\nSubject: message {i}\r\n\
         Message-ID: <m{i}@example.net>\r\nDate: {date}\r\n\r\nbody of message {i}\r\n"
    )
    .into_bytes()
}

/// The mailbox on the server: one message a day. Message 7's sender's clock was years behind
/// (its Date is in 2019): it arrived on 8 January all the same.
fn mailbox() -> Vec<Vec<u8>> {
    (0..ON_SERVER)
        .map(|i| {
            let day = i as u32 + 1;
            let date = if i == 7 {
                "Mon, 07 Jan 2019 08:00:00 +0000".to_string()
            } else {
                format!("Thu, {day:02} Jan 2026 09:29:00 +0000")
            };
            message(i, day, &date)
        })
        .collect()
}

fn sent(msgs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    msgs.iter().map(|m| as_pop3_sends(m)).collect()
}

fn pop_rows(b: &Bridge) -> (i64, i64) {
    let c = rusqlite::Connection::open(b.store_path()).expect("open store");
    c.query_row("SELECT count(*), count(origin) FROM pop_uidls", [], |r| Ok((r.get(0)?, r.get(1)?))).expect("count")
}

/// Dovecot's logout line of the last POP3 session ("top=N/bytes, retr=N/bytes, del=N/M, …").
fn last_pop_logout(d: &Dovecot) -> String {
    d.log().lines().rfind(|l| l.contains("pop3(alice)") && l.contains("Logged out")).unwrap_or_default().to_string()
}

/// The story for one mode: the first fetch downloads exactly `wanted` of the mailbox (and deletes
/// them: after-fetch), the others stay on the server; two new messages arrive; the next fetch
/// downloads exactly those, and still nothing of the others is deleted.
fn bounded(flags: &[&str], wanted: std::ops::Range<usize>) {
    let d = Dovecot::start(DovecotOpts::default());
    let all = mailbox();
    d.deliver("alice", &all);
    let b = Bridge::new();
    let mut args = vec!["--delete", "after-fetch"];
    args.extend_from_slice(flags);
    b.add_dovecot_alice(&d, &args).expect(0);
    let n = wanted.len();
    let bytes: usize = sent(&all[wanted.clone()]).iter().map(Vec::len).sum();
    let r = b.run(&["account", "test", "Work"]).expect(0);
    // As LIST counts them (CRLF), in popbridge's units (here below 1 MiB).
    let shown = if bytes < 1024 { format!("{bytes} B") } else { format!("{:.1} KiB", bytes as f64 / 1024.0) };
    let line = format!("would download {n} message(s), {shown}; the other {} stay on the server", ON_SERVER - n);
    assert!(r.stdout.contains(&line), "{flags:?}: {}", r.stdout);
    assert!(last_pop_logout(&d).contains("retr=0/0"), "account test downloads nothing: {}", last_pop_logout(&d));

    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains(&format!("Work: {n} new message(s)")), "{flags:?}: {}", r.stdout);
    assert!(
        r.stderr.contains(&format!("{} message(s) already on 127.0.0.1 recorded as seen", ON_SERVER - n)),
        "{flags:?}: {}",
        r.stderr
    );
    assert!(last_pop_logout(&d).contains(&format!("retr={n}/")), "{flags:?}: {}", last_pop_logout(&d));
    assert_eq!(b.messages("Work"), sent(&all[wanted.clone()]), "{flags:?}: exactly the messages inside");
    let others: Vec<Vec<u8>> =
        all.iter().enumerate().filter(|(i, _)| !wanted.contains(i)).map(|(_, m)| m.clone()).collect();
    assert_eq!(sorted(d.messages("alice")), sorted(others.clone()), "{flags:?}: the others stay on the server");
    assert_eq!(pop_rows(&b), ((ON_SERVER - n) as i64, (ON_SERVER - n) as i64), "{flags:?}: skipped ones recorded");

    let new =
        vec![message(100, 20, "Tue, 20 Jan 2026 09:29:00 +0000"), message(101, 21, "Wed, 21 Jan 2026 09:29:00 +0000")];
    d.deliver("alice", &new);
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains("Work: 2 new message(s)") && r.stdout.contains("2 deleted"), "{flags:?}: {}", r.stdout);
    assert!(!r.stderr.contains("recorded as seen"), "{flags:?}: only the first fetch is bounded: {}", r.stderr);
    let mut expected = sent(&all[wanted.clone()]);
    expected.extend(sent(&new));
    assert_eq!(b.messages("Work"), expected, "{flags:?}: a later fetch brings only the new mail");
    assert_eq!(sorted(d.messages("alice")), sorted(others.clone()), "{flags:?}: the skipped ones are never deleted");
    // And never later, whatever the policy's clock says.
    b.sql("UPDATE pop_uidls SET first_seen = 0, local_deleted = 1;");
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains("Work: 0 new message(s)") && !r.stdout.contains("deleted"), "{flags:?}: {}", r.stdout);
    assert_eq!(sorted(d.messages("alice")), sorted(others), "{flags:?}");
}

#[test]
fn since_downloads_what_arrived_from_that_day_by_its_received_header() {
    // From 5 January: messages 4..10 — message 7 too, whose Date says 2019.
    bounded(&["--since", "2026-01-05"], 4..ON_SERVER);
}

#[test]
fn newest_downloads_the_last_ones_to_arrive() {
    bounded(&["--newest", "3"], ON_SERVER - 3..ON_SERVER);
}

#[test]
fn from_now_on_downloads_nothing_already_there() {
    bounded(&["--from-now-on"], 0..0);
}

#[test]
fn newest_larger_than_the_mailbox_takes_everything() {
    let d = Dovecot::start(DovecotOpts::default());
    let all = mailbox();
    d.deliver("alice", &all);
    let b = Bridge::new();
    b.add_dovecot_alice(&d, &["--newest", "50"]).expect(0);
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains(&format!("Work: {ON_SERVER} new message(s)")), "{}", r.stdout);
    assert_eq!(b.messages("Work"), sent(&all));
}

#[test]
fn the_setting_is_written_to_the_config_and_a_bad_one_is_refused() {
    let d = Dovecot::start(DovecotOpts::default());
    let b = Bridge::new();
    b.add_dovecot_alice(&d, &["--since", "2026-01-05", "--no-test"]).expect(0);
    let config = std::fs::read_to_string(&b.config).expect("read config");
    assert!(config.contains("first_import = \"since:2026-01-05\""), "{config}");
    let r = b.run(&[
        "account",
        "add",
        "--name",
        "X",
        "--email",
        "x@example.org",
        "--pop-host",
        "127.0.0.1",
        "--pop-user",
        "x",
        "--password-command",
        "echo x",
        "--since",
        "2026-02-30",
        "--no-test",
    ]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("--since \"2026-02-30\" must be a date written YYYY-MM-DD"), "{}", r.stderr);
}

fn spawn_fetch(b: &Bridge) -> Child {
    b.cmd(&["fetch", "Work"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn popbridge fetch")
}

/// kill -9 during the first bounded cycle (after the choice was committed: mid-download, right
/// after a RETR), then a fetch to the end: the same messages as an uninterrupted one, none of the
/// skipped ones downloaded or deleted.
#[test]
fn a_first_bounded_fetch_killed_midway_ends_the_same() {
    for point in [Point::AfterRetr(1), Point::MidRetr(2), Point::OnDele(1)] {
        let d = Dovecot::start(DovecotOpts::default());
        let proxy = PopProxy::start(d.pop3_port);
        let all = mailbox();
        d.deliver("alice", &all);
        let b = Bridge::new();
        b.add_account("Work", proxy.port, "plain", "alice", "alice-pw", &["--delete", "after-fetch", "--newest", "3"])
            .expect(0);
        proxy.trap().arm(point);
        let mut fetch = spawn_fetch(&b);
        let hit = proxy.trap().wait_hit(Duration::from_secs(30), || fetch.try_wait().ok().flatten().is_some());
        let _ = fetch.kill(); // SIGKILL
        let _ = fetch.wait();
        proxy.trap().release();
        proxy.trap().disarm();
        assert!(hit, "{point:?} was not reached");
        b.run(&["fetch"]).expect(0);
        assert_eq!(b.messages("Work"), sent(&all[ON_SERVER - 3..]), "{point:?}: the newest 3, once each");
        assert_eq!(sorted(d.messages("alice")), sorted(all[..ON_SERVER - 3].to_vec()), "{point:?}");
        assert_eq!(pop_rows(&b), ((ON_SERVER - 3) as i64, (ON_SERVER - 3) as i64), "{point:?}");
    }
}
