//! A message is DELEted only when popbridge is certain it holds that exact message (issue 12):
//! UIDLs a server reuses (after an unanswered QUIT, after another client deleted, UIDLs that are
//! message numbers), an account pointed at another mailbox, and Courier's RFC 6856 behaviour.
//! Each case: every message ends up stored exactly once or still on the server, and nothing is
//! DELEted that the store does not hold.

use std::collections::HashSet;

use crate::util::corpus::corpus;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::fake_pop3::{FakeMessage, FakePop3, Fault, Script};
use crate::util::{Bridge, Run, as_pop3_sends, sorted};

/// A message of exactly `len` bytes (padded in its body), told apart by `tag` in its headers.
fn sized(tag: &str, len: usize) -> Vec<u8> {
    let mut m = format!(
        "From: sender@example.com\r\nTo: me@example.com\r\nSubject: message {tag}\r\nMessage-ID: <{tag}@example.com>\r\nDate: Mon, 3 Mar 2025 10:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    assert!(m.len() + 2 <= len, "{tag}: {len} bytes is too short");
    m.resize(len - 2, b'x');
    m.extend_from_slice(b"\r\n");
    m
}

fn bridge(f: &FakePop3, policy: &str) -> Bridge {
    let b = Bridge::new();
    b.add_account("Fake", f.port(), "plain", "u", "p", &["--no-test", "--delete", policy]).expect(0);
    b
}

fn fetch(b: &Bridge) -> Run {
    b.run(&["fetch", "Fake"])
}

/// The invariants: nothing stored twice; every message the server was ever given is stored,
/// still there, or deleted locally by the user; every message popbridge sent DELE for is stored
/// (or deleted locally by the user).
fn check(b: &Bridge, f: &FakePop3, user_deleted: &[Vec<u8>], ctx: &str) {
    let stored = b.messages("Fake");
    let set: HashSet<Vec<u8>> = stored.iter().cloned().collect();
    assert_eq!(set.len(), stored.len(), "{ctx}: a message is stored twice");
    let on_server: HashSet<Vec<u8>> = f.remaining().into_iter().map(|m| m.data).collect();
    let history = f.history();
    for (uidl, m) in &history {
        assert!(
            set.contains(m) || on_server.contains(m) || user_deleted.contains(m),
            "{ctx}: the message first listed as {uidl} is neither stored nor on the server"
        );
    }
    for u in f.dele_requested() {
        let m = &history.iter().find(|(h, _)| *h == u).expect("a DELE for a message the server had").1;
        assert!(
            set.contains(m) || user_deleted.contains(m),
            "{ctx}: DELE was sent for the message first listed as {u}, which the store does not hold"
        );
    }
}

#[test]
fn after_an_unanswered_quit_a_reused_uidl_is_fetched_before_anything_is_deleted() {
    // The server's UIDLs are its message numbers. The first session's QUIT deletes everything,
    // but its answer never arrives; then new mail comes under UIDLs 1 and 2: one of exactly the
    // old message 1's size (only its headers tell them apart), one of another size.
    let (a1, a2, a3) = (sized("a1", 600), sized("a2", 700), sized("a3", 800));
    let f = FakePop3::start(Script {
        messages: vec![
            FakeMessage::new("a1", a1.clone()),
            FakeMessage::new("a2", a2.clone()),
            FakeMessage::new("a3", a3.clone()),
        ],
        faults: vec![Fault::UidlIsNumber, Fault::QuitAppliedNoAnswer],
        ..Script::default()
    });
    let b = bridge(&f, "after-fetch");
    let r = fetch(&b).expect(0);
    assert!(r.stderr.contains("without the server's confirmation"), "{}", r.stderr);
    assert!(f.remaining().is_empty(), "the server applied the deletions");
    f.set_faults(vec![Fault::UidlIsNumber]);
    let (b1, b2) = (sized("b1", 600), sized("b2", 650));
    f.add_messages(vec![FakeMessage::new("b1", b1.clone()), FakeMessage::new("b2", b2.clone())]);
    let r = fetch(&b).expect(0);
    let ever = [a1, a2, a3, b1.clone(), b2.clone()];
    check(&b, &f, &[], "after the second fetch");
    assert_eq!(sorted(b.messages("Fake")), sorted(ever.to_vec()), "both new messages were fetched: {}", r.stderr);
    assert!(f.remaining().is_empty(), "and deleted once stored");
    assert!(r.stderr.contains("message numbers"), "the log says the UIDLs cannot be trusted: {}", r.stderr);
}

#[test]
fn after_days_never_deletes_another_message_that_took_a_known_uidl() {
    // u1 and u2 are stored; another client deletes them; new messages take their UIDLs (one with
    // another size, one with the very same size). u3 stays the same message throughout.
    let (m1, m2, m3) = (sized("m1", 500), sized("m2", 540), sized("m3", 580));
    let f = FakePop3::start(Script {
        messages: vec![
            FakeMessage::new("u1", m1.clone()),
            FakeMessage::new("u2", m2.clone()),
            FakeMessage::new("u3", m3.clone()),
        ],
        ..Script::default()
    });
    let b = bridge(&f, "after-days:3");
    fetch(&b).expect(0);
    f.remove_where(|m| m.uidl.as_deref() != Some("u3"));
    let (n1, n2) = (sized("n1", 777), sized("n2", 540));
    f.add_messages(vec![FakeMessage::new("u1", n1.clone()), FakeMessage::new("u2", n2.clone())]);
    // Four days later.
    b.sql("UPDATE pop_uidls SET first_seen = first_seen - 4 * 86400;");
    let r = fetch(&b).expect(0);
    let ever = [m1, m2, m3.clone(), n1.clone(), n2.clone()];
    check(&b, &f, &[], "four days later");
    assert_eq!(sorted(b.messages("Fake")), sorted(ever.to_vec()), "the new messages are stored: {}", r.stderr);
    let left: Vec<Vec<u8>> = f.remaining().into_iter().map(|m| m.data).collect();
    assert_eq!(sorted(left), sorted(vec![n1, n2]), "only the message that was 4 days old was deleted");
    assert!(r.stderr.contains("known UIDL"), "the reuse is reported: {}", r.stderr);
}

#[test]
fn never_fetches_a_new_message_that_took_a_known_uidl() {
    let (m1, m2) = (sized("m1", 500), sized("m2", 540));
    let f = FakePop3::start(Script {
        messages: vec![FakeMessage::new("u1", m1.clone()), FakeMessage::new("u2", m2.clone())],
        ..Script::default()
    });
    let b = bridge(&f, "never");
    fetch(&b).expect(0);
    f.remove_where(|m| m.uidl.as_deref() == Some("u1"));
    let n1 = sized("n1", 610);
    f.add_messages(vec![FakeMessage::new("u1", n1.clone())]);
    fetch(&b).expect(0);
    assert_eq!(sorted(b.messages("Fake")), sorted(vec![m1, m2, n1]), "the new message under u1 is fetched");
    // And not again: the identity now names it.
    fetch(&b).expect(0);
    assert_eq!(b.messages("Fake").len(), 3);
}

#[test]
fn uidls_that_are_message_numbers_neither_hide_new_mail_nor_duplicate_it() {
    // Another client deletes message 1: every number (= UIDL) now names the next message.
    let msgs: Vec<Vec<u8>> = (1..=4).map(|i| sized(&format!("k{i}"), 500 + i * 10)).collect();
    let f = FakePop3::start(Script {
        messages: msgs[..3].iter().enumerate().map(|(i, m)| FakeMessage::new(&format!("k{i}"), m.clone())).collect(),
        faults: vec![Fault::UidlIsNumber],
        ..Script::default()
    });
    let b = bridge(&f, "when-deleted-locally");
    fetch(&b).expect(0);
    let test = b.run(&["account", "test", "Fake"]).expect(0);
    assert!(test.stdout.contains("message numbers"), "account test says so: {}", test.stdout);
    f.remove_where(|m| m.uidl.as_deref() == Some("k0"));
    f.add_messages(vec![FakeMessage::new("k3", msgs[3].clone())]);
    fetch(&b).expect(0);
    check(&b, &f, &[], "after the renumbering");
    assert_eq!(sorted(b.messages("Fake")), sorted(msgs.clone()), "the new fourth message is stored, nothing twice");
    assert!(f.dele_requested().is_empty(), "nobody deleted anything locally: nothing is deleted");
    // The user deletes the second message locally: exactly that one is deleted on the server,
    // although it is number 1 now and "1" once named another message.
    let uid = b.store().mailbox_bodies("Fake").unwrap().into_iter().find(|(_, m)| m == &msgs[1]).unwrap().0;
    b.store().expunge("Fake", &[uid]).unwrap();
    fetch(&b).expect(0);
    check(&b, &f, &msgs[1..2], "after the local delete");
    let left: Vec<Vec<u8>> = f.remaining().into_iter().map(|m| m.data).collect();
    assert_eq!(sorted(left), sorted(vec![msgs[2].clone(), msgs[3].clone()]));
}

#[test]
fn a_courier_style_server_sends_8bit_mail_unchanged_once_asked_with_utf8() {
    // Courier replaces a message with 8-bit headers by a "Cannot display Unicode content" notice
    // unless the session sent UTF8 (RFC 6856); its LIST size stays the real one.
    let c = corpus(200, 61);
    let sent: Vec<Vec<u8>> = c.messages.iter().map(|m| as_pop3_sends(m)).collect();
    let eight = sent.iter().filter(|m| header_is_8bit(m)).count();
    assert!(eight >= 5, "the corpus has messages with 8-bit headers ({eight})");
    let f = FakePop3::start(Script {
        messages: sent.iter().enumerate().map(|(i, m)| FakeMessage::new(&format!("c{i}"), m.clone())).collect(),
        faults: vec![Fault::Utf8Substitute],
        ..Script::default()
    });
    let b = bridge(&f, "after-fetch");
    let r = fetch(&b).expect(0);
    let stored = b.messages("Fake");
    assert!(!stored.iter().any(|m| m.windows(9).any(|w| w == b"Cannot di")), "no substituted notice was stored");
    assert_eq!(sorted(stored), sorted(sent), "all 200 arrive as sent: {}", r.stderr);
    assert!(f.remaining().is_empty());
    let cmds = f.commands();
    let login = cmds.iter().position(|c| c.starts_with("AUTH ") || c.starts_with("PASS")).expect("a login");
    assert_eq!(cmds.iter().position(|c| c == "UTF8"), Some(login + 2), "UTF8 right after login and CAPA: {cmds:?}");
}

/// And a server that rewrites messages anyway (a notice whose size differs from LIST's): the
/// rest of the mailbox is fetched, what it sent is stored, and those messages stay on the server.
#[test]
fn messages_whose_size_differs_from_list_do_not_stop_the_rest() {
    let c = corpus(40, 62);
    let sent: Vec<Vec<u8>> = c.messages.iter().map(|m| as_pop3_sends(m)).collect();
    let f = FakePop3::start(Script {
        messages: sent.iter().enumerate().map(|(i, m)| FakeMessage::new(&format!("c{i}"), m.clone())).collect(),
        faults: vec![Fault::Utf8Substitute, Fault::IgnoreUtf8],
        ..Script::default()
    });
    let b = bridge(&f, "after-fetch");
    let r = fetch(&b).expect(0);
    let eight: Vec<&Vec<u8>> = sent.iter().filter(|m| header_is_8bit(m)).collect();
    assert!(!eight.is_empty(), "the corpus has messages with 8-bit headers");
    assert!(r.stderr.contains("LIST announced") && r.stderr.contains("never deletes"), "{}", r.stderr);
    assert_eq!(b.messages("Fake").len(), sent.len(), "every message is stored as the server sent it");
    let left: Vec<Vec<u8>> = f.remaining().into_iter().map(|m| m.data).collect();
    assert_eq!(sorted(left), sorted(eight.into_iter().cloned().collect()), "exactly the rewritten ones stay");
}

fn header_is_8bit(m: &[u8]) -> bool {
    let end = m.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(m.len());
    !m[..end].is_ascii()
}

/// POP state belongs to the upstream mailbox. Dovecot derives UIDLs from UIDVALIDITY and UID, so
/// mailboxes with the same UIDVALIDITY list the same UIDLs for different mail: an account edited
/// to fetch another mailbox, or removed and added again for another one, must start fresh — and
/// one pointed back at its first mailbox resumes.
#[test]
fn an_account_pointed_at_another_mailbox_starts_fresh_and_the_old_one_resumes() {
    let users: Vec<(String, String)> =
        ["alice", "bob", "carol"].iter().map(|u| (u.to_string(), format!("{u}-pw"))).collect();
    let d = Dovecot::start(DovecotOpts { users, ..DovecotOpts::default() });
    let mut mail = Vec::new();
    for (i, user) in ["alice", "bob", "carol"].iter().enumerate() {
        d.set_uidvalidity(user, 1_700_000_000);
        let c = corpus(20, 63 + i as u64);
        d.deliver(user, &c.messages);
        mail.push(c.messages.iter().map(|m| as_pop3_sends(m)).collect::<Vec<_>>());
    }
    let b = Bridge::new();
    let ca = d.ca_pem_path.display().to_string();
    let add = |user: &str, policy: &str| {
        let pw = format!("{user}-pw");
        b.add_account(
            "Work",
            d.pop3s_port,
            "implicit",
            user,
            &pw,
            &["--ca-file", &ca, "--delete", policy, "--no-test"],
        )
        .expect(0);
    };
    let fetch = || b.run(&["fetch", "Work"]).expect(0);
    let stored = || b.messages("Work").into_iter().collect::<HashSet<Vec<u8>>>();
    add("alice", "never");
    fetch();
    assert_eq!(b.messages("Work").len(), 20);
    // The user edits the account to fetch bob's mailbox, deleting after fetch.
    let cfg = std::fs::read_to_string(&b.config).unwrap();
    let edited = cfg
        .replace("user = \"alice\"", "user = \"bob\"")
        .replace("\"alice-pw\"", "\"bob-pw\"")
        .replace("delete = \"never\"", "delete = \"after-fetch\"");
    assert!(edited.contains("\"bob\"") && edited.contains("after-fetch"), "the edit applies: {edited}");
    std::fs::write(&b.config, edited).unwrap();
    let r = fetch();
    assert!(r.stdout.contains("20 new message(s)"), "bob's mail is new mail: {}{}", r.stdout, r.stderr);
    assert!(mail[1].iter().all(|m| stored().contains(m)), "every one of bob's messages is stored before it is deleted");
    assert!(d.messages("bob").is_empty(), "after-fetch deleted them once stored");
    assert_eq!(d.messages("alice").len(), 20, "alice's mailbox is untouched");
    // Removed, and added again for carol's mailbox under the same name.
    b.run(&["account", "remove", "Work"]).expect(0);
    add("carol", "after-fetch");
    let r = fetch();
    assert!(r.stdout.contains("20 new message(s)"), "carol's mail is new mail: {}{}", r.stdout, r.stderr);
    assert!(
        mail[2].iter().all(|m| stored().contains(m)),
        "every one of carol's messages is stored before it is deleted"
    );
    assert!(d.messages("carol").is_empty());
    // Back to alice's mailbox: it resumes, nothing is fetched again.
    b.run(&["account", "remove", "Work"]).expect(0);
    add("alice", "never");
    let r = fetch();
    assert!(r.stdout.contains("0 new message(s)"), "resumes where it stopped: {}", r.stdout);
    assert_eq!(b.messages("Work").len(), 60, "nothing stored twice");
    assert_eq!(d.messages("alice").len(), 20);
}
