//! Issue 19: the pipelining window over a remote link. The window grows with the link's round trip
//! (more commands in flight than the old fixed 32), lock step stays lock step without PIPELINING,
//! and a server that answers out of order, drops the connection mid-window or stops reading
//! costs no message: nothing lost, nothing stored twice, nothing deleted that is not stored.

use std::time::Duration;

use crate::util::fake_pop3::{FakeMessage, FakePop3, Fault, Script};
use crate::util::pop_proxy::PopProxy;
use crate::util::{Bridge, Run};

/// Message `i`: distinct headers, and `i % 7` KB of body, so neighbours differ in size by more
/// than the size check's slack (a swapped answer is noticed).
fn msg(i: usize) -> Vec<u8> {
    let mut m = format!(
        "From: sender{i}@example.com\r\nTo: me@example.com\r\nSubject: window {i}\r\nMessage-ID: <w{i}@example.com>\r\nDate: Mon, 3 Mar 2025 10:{:02}:00 +0000\r\n\r\nHello {i}.\r\n",
        i % 60
    );
    for _ in 0..(i % 7) * 16 {
        m.push_str(&"x".repeat(62));
        m.push_str("\r\n");
    }
    m.into_bytes()
}

fn server(n: usize, pipelining: bool, faults: Vec<Fault>) -> FakePop3 {
    let messages = (1..=n).map(|i| FakeMessage { uidl: Some(format!("w-{i}")), data: msg(i) }).collect();
    FakePop3::start(Script { messages, pipelining, faults, ..Script::default() })
}

fn bridge(port: u16, extra: &[&str]) -> Bridge {
    let b = Bridge::new();
    let mut args = vec!["--no-test"];
    args.extend_from_slice(extra);
    b.add_account("Fake", port, "plain", "u", "p", &args).expect(0);
    b
}

fn fetch(b: &Bridge) -> Run {
    b.run(&["fetch", "Fake"])
}

fn assert_store_has(b: &Bridge, n: usize) {
    let got = b.messages("Fake");
    assert_eq!(got.len(), n, "stored count");
    assert_eq!(crate::util::sorted(got), crate::util::sorted((1..=n).map(msg).collect()), "each message once");
}

/// Every RETR the server received, all sessions.
fn retrs(f: &FakePop3) -> Vec<String> {
    f.commands().into_iter().filter(|c| c.starts_with("RETR ")).collect()
}

#[test]
fn over_a_remote_link_the_window_hides_the_round_trip() {
    // 1,500 messages of 0–6 KB (about 5 MB), fetched once straight from the server and once
    // behind a 200 ms round trip. The old window (32 commands) needed 47 round trips for the
    // transfer alone (9.4 s more); the new one starts at 4 MiB and grows with the measured rate,
    // so the link costs the session's own round trips and a few for the transfer.
    let n = 1500;
    let timed = |f: &FakePop3, port: u16| {
        let b = bridge(port, &[]);
        let t = std::time::Instant::now();
        fetch(&b).expect(0);
        let took = t.elapsed();
        assert_store_has(&b, n);
        assert_eq!(retrs(f).len(), n, "every message asked for once");
        took
    };
    let near = server(n, true, vec![]);
    let direct = timed(&near, near.port());
    let far = server(n, true, vec![]);
    let link = PopProxy::delayed(far.port(), Duration::from_millis(100));
    let remote = timed(&far, link.port);
    assert!(far.max_in_flight() > 256, "commands in flight at once: {} (the old window: 32)", far.max_in_flight());
    // About 12 round trips for connecting, TLS-less login, listing and QUIT, 3–5 for the
    // transfer: 3.4 s. Lock step would be 300 s; the old window 11.8 s.
    let extra = remote.saturating_sub(direct);
    assert!(extra < Duration::from_secs(7), "the 200 ms link added {extra:?} ({direct:?} direct, {remote:?} remote)");
}

#[test]
fn without_pipelining_it_is_lock_step_with_one_listing_for_all() {
    let n = 20;
    let f = server(n, false, vec![]);
    let b = bridge(f.port(), &["--delete", "after-fetch"]);
    fetch(&b).expect(0);
    assert_store_has(&b, n);
    assert_eq!(f.max_in_flight(), 1, "one command at a time when PIPELINING is not offered");
    // After the login: one CAPA, one UIDL and one LIST for all messages (RFC 1939 allows no
    // fewer), then per message only what downloading and deleting it takes, then QUIT.
    let cmds = f.commands();
    let from = cmds.iter().rposition(|c| c == "CAPA").expect("CAPA after login");
    let after: Vec<&str> = cmds[from + 1..].iter().map(String::as_str).collect();
    let want = ["UIDL", "LIST"];
    let per_message: Vec<String> = (1..=n).flat_map(|i| [format!("RETR {i}"), format!("DELE {i}")]).collect();
    let mut got_per_message: Vec<&str> = after[2..after.len() - 1].to_vec();
    got_per_message.sort_unstable();
    let mut want_per_message: Vec<&str> = per_message.iter().map(String::as_str).collect();
    want_per_message.sort_unstable();
    assert_eq!(after[..2], want[..], "{after:?}");
    assert_eq!(got_per_message, want_per_message, "{after:?}");
    assert_eq!(after.last(), Some(&"QUIT"));
    assert!(f.remaining().is_empty());
}

/// `pipelining = "off"` (mpop's `pipelining off`): lock step with a server that offers PIPELINING.
#[test]
fn pipelining_off_is_lock_step_even_when_the_server_offers_it() {
    let n = 12;
    let f = server(n, true, vec![]);
    let b = bridge(f.port(), &[]);
    let config = std::fs::read_to_string(&b.config).unwrap();
    assert_eq!(config.matches("\n[account.pop]\n").count(), 1, "{config}");
    std::fs::write(&b.config, config.replace("\n[account.pop]\n", "\n[account.pop]\npipelining = \"off\"\n")).unwrap();
    fetch(&b).expect(0);
    assert_store_has(&b, n);
    assert_eq!(f.max_in_flight(), 1, "one command at a time");
    // And with the setting back to auto, the same server is pipelined again.
    let g = server(n, true, vec![]);
    let b2 = bridge(g.port(), &[]);
    fetch(&b2).expect(0);
    assert!(g.max_in_flight() > 1, "pipelined: {}", g.max_in_flight());
}

#[test]
fn a_connection_dropped_mid_window_loses_nothing_and_stores_nothing_twice() {
    let n = 400;
    let f = server(n, true, vec![Fault::DisconnectMidRetr { msg: 300, after_bytes: 100 }]);
    let b = bridge(f.port(), &["--delete", "after-fetch"]);
    let r = fetch(&b).expect(3);
    assert!(r.stderr.contains("closed the connection"), "{}", r.stderr);
    let stored = b.messages("Fake").len();
    assert!(stored < 300, "nothing from the broken answer on ({stored})");
    assert_eq!(f.remaining().len(), n, "no QUIT: the server deleted nothing, though DELEs were in flight");
    f.set_faults(vec![]);
    fetch(&b).expect(0);
    assert_store_has(&b, n);
    assert!(f.remaining().is_empty(), "everything stored is deleted in the end");
    // What the first session stored was not asked for again.
    assert_eq!(retrs(&f).len(), n + 300 - stored, "each stored message downloaded once");
}

#[test]
fn answers_out_of_order_are_stored_and_never_deleted_on() {
    // Messages 40 and 41 come back swapped in the middle of a pipelined window: each RETR gets
    // the other's answer. Sizes differ from LIST's, so neither identity is trusted for deletion.
    let n = 80;
    let f = server(n, true, vec![Fault::SwapRetr { msg: 40 }]);
    let b = bridge(f.port(), &["--delete", "after-fetch"]);
    let r = fetch(&b).expect(0);
    assert!(r.stderr.contains("size differs"), "the user is told: {}", r.stderr);
    assert_store_has(&b, n);
    let left: Vec<Vec<u8>> = f.remaining().into_iter().map(|m| m.data).collect();
    assert_eq!(crate::util::sorted(left), crate::util::sorted(vec![msg(40), msg(41)]), "only the swapped two stay");
    // The server sorts itself out: nothing is stored twice.
    f.set_faults(vec![]);
    fetch(&b).expect(0);
    // Nothing is lost, and the swapped pair, named right now, is not stored a second time (the
    // same bytes are in the folder already).
    let got = crate::util::sorted(b.messages("Fake"));
    assert_eq!(got, crate::util::sorted((1..=n).map(msg).collect()), "every message in the store, once");
}

#[test]
fn a_server_that_stops_reading_times_out_and_keeps_what_was_stored() {
    let n = 200;
    let f = server(n, true, vec![Fault::StopReadingAfterRetr { msg: 120 }]);
    let b = bridge(f.port(), &["--delete", "after-fetch"]);
    b.append_config("timeout = \"2s\"\n");
    let t = std::time::Instant::now();
    let r = fetch(&b).expect(3);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(r.stderr.contains("stopped responding"), "{}", r.stderr);
    let stored = b.messages("Fake").len();
    assert!((1..=120).contains(&stored), "the answers before it are kept ({stored})");
    assert_eq!(f.remaining().len(), n, "no QUIT, so nothing was deleted");
    f.set_faults(vec![]);
    fetch(&b).expect(0);
    assert_store_has(&b, n);
    assert!(f.remaining().is_empty());
}
