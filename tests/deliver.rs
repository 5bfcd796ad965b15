//! Issue 18: accounts that deliver into an existing mail server (`[account.deliver]`) — over LMTP
//! and over IMAP APPEND, into a real Dovecot (its POP3 user alice is the source, user bob the
//! target), and against scripted targets (`util::fake_sink`) for the refusals.
//!
//! What a user would notice: the messages in bob's mailbox (Dovecot's maildir files, which its
//! IMAP serves), what is left in alice's, what popbridge's own store holds (no bodies), the exit
//! code and message of `popbridge fetch`, and what `status` says.

use std::collections::HashMap;
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
    Imap(&'static str),
}

fn deliver_section(sink: Sink, lmtp_port: u16, imap_port: u16) -> String {
    match sink {
        Sink::Lmtp => {
            format!("\n[account.deliver]\nlmtp = \"127.0.0.1:{lmtp_port}\"\nrecipient = \"bob@example.com\"\n")
        }
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
fn delivered_as(stored: &[u8], original: &[u8], sink: Sink) -> bool {
    let stored = &as_pop3_sends(stored)[..];
    match sink {
        Sink::Imap(_) => stored == original,
        Sink::Lmtp => {
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
        Sink::Lmtp | Sink::Imap("INBOX") => String::new(),
        Sink::Imap(m) => format!(".{m}"),
    };
    d.folder_files("bob", &folder).iter().filter_map(|p| std::fs::read(p).ok()).collect()
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
        Sink::Lmtp => format!("LMTP 127.0.0.1:{} for bob@example.com", d.lmtp_port),
        Sink::Imap(m) => format!("IMAP imap://127.0.0.1:{} as bob, mailbox {m}", d.imap_port),
    };
    assert!(status.contains(&want), "status names the target:\n{status}");
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
