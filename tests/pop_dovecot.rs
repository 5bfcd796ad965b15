//! Fetching from a real Dovecot (POP3S with a private CA, STLS, pins, expired certificates, wrong
//! passwords, every login method, delete policies), checking the store byte for byte against what
//! the server holds. Dovecot advertises no LOGIN-DELAY (nor EXPIRE) in its CAPA, before or after
//! login, and has no setting for it: LOGIN-DELAY is tested against the fake server (`daemon.rs`).

use crate::util::corpus::corpus;
use crate::util::dovecot::{CertKind, Dovecot, DovecotOpts};

use crate::util::fake_pop3::b64encode;
use crate::util::pop_proxy::PopProxy;
use crate::util::{Bridge, as_pop3_sends, sorted};

fn dovecot(cert: CertKind) -> Dovecot {
    Dovecot::start(DovecotOpts { cert, ..DovecotOpts::default() })
}

fn ca(d: &Dovecot) -> String {
    d.ca_pem_path.display().to_string()
}

#[test]
fn a_realistic_corpus_is_fetched_byte_exact_and_only_once() {
    let d = dovecot(CertKind::Ca);
    let c = corpus(120, 7);
    d.deliver("alice", &c.messages);
    let b = Bridge::new();
    let r = b.add_dovecot_alice(&d, &[]).expect(0);
    assert!(r.stdout.contains("120 message(s)"), "the test before saving lists the mailbox: {}", r.stdout);
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains("120 new message(s)"), "{}", r.stdout);
    let stored = b.messages("Work");
    let expected: Vec<Vec<u8>> = c.messages.iter().map(|m| as_pop3_sends(m)).collect();
    assert_eq!(stored.len(), expected.len());
    // Server order is delivery order, and UIDs follow it.
    for (i, (s, e)) in stored.iter().zip(&expected).enumerate() {
        assert!(s == e, "message {i} (tags {:?}) differs from what the server holds", c.tags[i]);
    }
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains("0 new message(s)"), "a second fetch fetches nothing: {}", r.stdout);
    assert_eq!(b.messages("Work").len(), 120);
    assert_eq!(d.messages("alice").len(), 120, "the default policy never deletes");
    let j = b.status_json();
    assert_eq!(j["accounts"][0]["messages"], 120);
    assert_eq!(j["accounts"][0]["state"], "active");
    assert!(j["accounts"][0]["last_fetch"].is_string(), "{j}");
    // Fetched mail is unread.
    let st = b.store().account_statuses().unwrap();
    assert_eq!(st[0].unseen, 120);
}

#[test]
fn stls_on_the_plain_port_works_and_sees_new_mail() {
    let d = dovecot(CertKind::Ca);
    let c = corpus(30, 3);
    d.deliver("alice", &c.messages[..20]);
    let b = Bridge::new();
    b.add_account("Home", d.pop3_port, "starttls", "alice", "alice-pw", &["--ca-file", &ca(&d)]).expect(0);
    b.run(&["fetch", "Home"]).expect(0);
    assert_eq!(b.messages("Home").len(), 20);
    d.deliver("alice", &c.messages[20..]);
    let r = b.run(&["fetch", "Home"]).expect(0);
    assert!(r.stdout.contains("10 new message(s)"), "{}", r.stdout);
    let stored = b.messages("Home");
    let expected: Vec<Vec<u8>> = c.messages.iter().map(|m| as_pop3_sends(m)).collect();
    assert_eq!(stored, expected);
}

#[test]
fn a_wrong_password_is_an_authentication_error() {
    let d = dovecot(CertKind::Ca);
    let b = Bridge::new();
    let r = b.add_account("Work", d.pop3s_port, "implicit", "alice", "wrong-pw", &["--ca-file", &ca(&d)]).expect(5);
    assert!(r.stderr.contains("not saved"), "{}", r.stderr);
    assert!(r.stderr.contains("password") && r.stderr.contains("enabl"), "guidance: {}", r.stderr);
    assert!(b.run(&["account", "list"]).stdout.contains("No accounts"));
    b.add_account("Work", d.pop3s_port, "implicit", "alice", "wrong-pw", &["--ca-file", &ca(&d), "--no-test"])
        .expect(0);
    let r = b.run(&["--log-level", "trace", "fetch"]).expect(5);
    assert!(!r.stderr.contains("wrong-pw"), "the password never reaches the logs");
    let j = b.status_json();
    assert_eq!(j["accounts"][0]["state"], "backoff");
    assert_eq!(j["accounts"][0]["last_error"]["class"], "authentication");
    b.run(&["fetch"]).expect(5);
    b.run(&["fetch"]).expect(5);
    assert_eq!(b.status_json()["accounts"][0]["state"], "disabled", "three failed logins disable the account");
    b.run_stdin(&["account", "set-password", "Work", "--password-stdin"], "alice-pw").expect(0);
    assert_eq!(b.status_json()["accounts"][0]["state"], "active");
    b.run(&["fetch"]).expect(0);
    assert!(b.status_json()["accounts"][0]["last_error"].is_null());
}

#[test]
fn a_closed_port_is_a_connection_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let b = Bridge::new();
    let r = b.add_account("Work", port, "implicit", "alice", "pw", &[]).expect(3);
    assert!(r.stderr.contains("refused") && r.stderr.contains("port"), "{}", r.stderr);
}

#[test]
fn an_untrusted_certificate_is_refused_with_its_fingerprint() {
    let d = dovecot(CertKind::Ca);
    let b = Bridge::new();
    // No --ca-file: the private CA is not among the system's roots.
    let r = b.add_account("Work", d.pop3s_port, "implicit", "alice", "alice-pw", &[]).expect(4);
    let fp = d.server_cert.sha256_hex().to_uppercase();
    let shown: String = r.stderr.chars().filter(|c| c.is_ascii_hexdigit()).collect::<String>().to_uppercase();
    assert!(shown.contains(&fp), "the fingerprint to pin is printed: {}", r.stderr);
    assert!(r.stderr.contains("pin"), "{}", r.stderr);
    // STLS with an untrusted certificate: the same, and no plaintext fallback.
    b.add_account("Work", d.pop3_port, "starttls", "alice", "alice-pw", &[]).expect(4);
}

#[test]
fn a_certificate_for_another_host_is_refused() {
    let d = dovecot(CertKind::WrongHost);
    let b = Bridge::new();
    let r = b.add_dovecot_alice(&d, &[]).expect(4);
    assert!(r.stderr.contains("different host"), "{}", r.stderr);
}

#[test]
fn a_self_signed_server_works_only_when_pinned() {
    let d = dovecot(CertKind::SelfSigned);
    d.deliver("alice", &corpus(5, 1).messages);
    let b = Bridge::new();
    b.add_dovecot_alice(&d, &[]).expect(4);
    let pin = d.server_cert.sha256_hex();
    b.add_account("Work", d.pop3s_port, "implicit", "alice", "alice-pw", &["--pin-sha256", &pin]).expect(0);
    b.run(&["fetch"]).expect(0);
    assert_eq!(b.messages("Work").len(), 5);
    let r = b.run(&["account", "test", "Work"]).expect(0);
    assert!(r.stdout.contains("pinned"), "{}", r.stdout);
    assert!(r.stdout.contains("PIPELINING yes") && r.stdout.contains("UIDL yes"), "{}", r.stdout);
}

#[test]
fn after_fetch_empties_the_server_of_exactly_what_was_stored() {
    let d = dovecot(CertKind::Ca);
    let c = corpus(40, 11);
    d.deliver("alice", &c.messages);
    let b = Bridge::new();
    b.add_dovecot_alice(&d, &["--delete", "after-fetch"]).expect(0);
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains("40 deleted"), "{}", r.stdout);
    assert!(d.messages("alice").is_empty());
    let expected: Vec<Vec<u8>> = c.messages.iter().map(|m| as_pop3_sends(m)).collect();
    assert_eq!(sorted(b.messages("Work")), sorted(expected));
    d.deliver("alice", &corpus(3, 12).messages);
    b.run(&["fetch"]).expect(0);
    assert!(d.messages("alice").is_empty());
    assert_eq!(b.messages("Work").len(), 43);
}

#[test]
fn after_days_deletes_only_what_is_old_enough() {
    let d = dovecot(CertKind::Ca);
    let c = corpus(10, 21);
    d.deliver("alice", &c.messages[..6]);
    let b = Bridge::new();
    b.add_dovecot_alice(&d, &["--delete", "after-days:3"]).expect(0);
    b.run(&["fetch"]).expect(0);
    assert_eq!(d.messages("alice").len(), 6, "nothing is 3 days old yet");
    // Four days pass for the first six messages.
    b.sql("UPDATE pop_uidls SET first_seen = first_seen - 4 * 86400;");
    d.deliver("alice", &c.messages[6..]);
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains("4 new message(s)") && r.stdout.contains("6 deleted"), "{}", r.stdout);
    let left: Vec<Vec<u8>> = d.messages("alice");
    let expected: Vec<Vec<u8>> = c.messages[6..].iter().map(|m| as_pop3_sends(m)).collect();
    assert_eq!(sorted(left.iter().map(|m| as_pop3_sends(m)).collect()), sorted(expected));
    assert_eq!(b.messages("Work").len(), 10);
}

#[test]
fn when_deleted_locally_follows_local_expunges() {
    let d = dovecot(CertKind::Ca);
    let c = corpus(8, 31);
    d.deliver("alice", &c.messages);
    let b = Bridge::new();
    b.add_dovecot_alice(&d, &["--delete", "when-deleted-locally"]).expect(0);
    b.run(&["fetch"]).expect(0);
    assert_eq!(d.messages("alice").len(), 8);
    // The user deletes two messages in the mail client (UIDs 2 and 5).
    assert_eq!(b.store().expunge("Work", &[2, 5]).unwrap(), 2);
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains("0 new message(s)") && r.stdout.contains("2 deleted"), "{}", r.stdout);
    let left = sorted(d.messages("alice").iter().map(|m| as_pop3_sends(m)).collect());
    let mut expected: Vec<Vec<u8>> = c.messages.iter().map(|m| as_pop3_sends(m)).collect();
    expected.remove(4);
    expected.remove(1);
    assert_eq!(left, sorted(expected));
    // They are not fetched again, and the rest stays.
    b.run(&["fetch"]).expect(0);
    assert_eq!(b.messages("Work").len(), 6);
    assert_eq!(d.messages("alice").len(), 6);
}

/// Dovecot's `pop3-login: Info: Login: user=<…>, method=…` lines: the mechanism of each login.
fn login_methods(d: &Dovecot, user: &str) -> Vec<String> {
    let want = format!("user=<{user}>");
    d.log()
        .lines()
        .filter(|l| l.contains("pop3-login: Info: Login:") && l.contains(&want))
        .filter_map(|l| l.split("method=").nth(1).and_then(|m| m.split(',').next()).map(str::to_string))
        .collect()
}

#[test]
fn every_login_method_logs_in_to_dovecot() {
    let d = dovecot(CertKind::Ca);
    let c = corpus(4, 51);
    d.deliver("alice", &c.messages);
    let expected: Vec<Vec<u8>> = c.messages.iter().map(|m| as_pop3_sends(m)).collect();
    let plain = b64encode(b"\0alice\0alice-pw");
    // (--auth, what popbridge sends, what it must never send, Dovecot's name of the mechanism).
    // Dovecot handles USER/PASS as PLAIN inside, so the wire tells USER from AUTH PLAIN.
    let cases: [(&str, &str, &str, &str); 5] = [
        ("user", "USER alice\r\nPASS alice-pw\r\n", "AUTH", "PLAIN"),
        ("plain", "AUTH PLAIN", "PASS", "PLAIN"),
        ("login", "AUTH LOGIN\r\n", "PASS", "LOGIN"),
        ("apop", "APOP alice ", "alice-pw", "APOP"),
        ("auto", "AUTH PLAIN", "PASS", "PLAIN"),
    ];
    for (auth, sends, never, method) in cases {
        // Plain POP3 (loopback) through the recorder: the commands are readable on the wire.
        let rec = PopProxy::relay(d.pop3_port);
        let b = Bridge::new();
        let before = login_methods(&d, "alice").len();
        b.add_account("Work", rec.port, "plain", "alice", "alice-pw", &["--auth", auth]).expect(0);
        b.run(&["fetch"]).expect(0);
        assert_eq!(b.messages("Work"), expected, "--auth {auth}: every message, byte for byte");
        let wire = rec.sent();
        assert!(wire.contains(sends), "--auth {auth}: sent {sends:?}:\n{wire}");
        assert!(!wire.contains(never), "--auth {auth}: never {never:?}:\n{wire}");
        if auth == "plain" || auth == "auto" {
            assert!(wire.contains(&plain), "--auth {auth}: the PLAIN response for alice:\n{wire}");
        }
        if auth == "apop" {
            let digest = wire.split("APOP alice ").nth(1).map(|r| r.trim_end().to_string()).unwrap_or_default();
            let hex = digest.lines().next().unwrap_or("");
            assert!(hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()), "an MD5 digest: {wire}");
        }
        let methods = login_methods(&d, "alice");
        assert!(
            methods.len() >= before + 2 && methods[before..].iter().all(|m| m == method),
            "--auth {auth}: the test before saving and the fetch were accepted by Dovecot as {method}: {:?}",
            &methods[before..]
        );
        // The same method with a wrong password is an authentication error with guidance.
        let b = Bridge::new();
        let r = b.add_account("Work", rec.port, "plain", "alice", "wrong-pw", &["--auth", auth]).expect(5);
        assert!(r.stderr.contains("password"), "--auth {auth}: {}", r.stderr);
    }
}

#[test]
fn an_expired_certificate_is_refused_with_guidance() {
    let d = dovecot(CertKind::Expired);
    d.deliver("alice", &corpus(2, 52).messages);
    let b = Bridge::new();
    for (port, tls) in [(d.pop3s_port, "implicit"), (d.pop3_port, "starttls")] {
        let r = b.add_account("Work", port, tls, "alice", "alice-pw", &["--ca-file", &ca(&d)]).expect(4);
        assert!(r.stderr.contains("expired"), "{tls}: the reason: {}", r.stderr);
        assert!(r.stderr.contains("what to do") && r.stderr.contains("pin"), "{tls}: guidance: {}", r.stderr);
    }
    // Saved anyway, it fails the same way at fetch time and stores nothing.
    b.add_dovecot_alice(&d, &["--no-test"]).expect(0);
    let r = b.run(&["fetch"]).expect(4);
    assert!(r.stderr.contains("expired"), "{}", r.stderr);
    assert!(b.messages("Work").is_empty());
    assert_eq!(b.status_json()["accounts"][0]["last_error"]["class"], "certificate");
}

#[test]
fn a_pin_that_does_not_match_is_refused_and_shows_the_right_one() {
    let d = dovecot(CertKind::SelfSigned);
    d.deliver("alice", &corpus(2, 53).messages);
    let right = d.server_cert.sha256_hex();
    // Another certificate's fingerprint, and one that differs from the right one in its last byte.
    let mut near = right.clone();
    near.replace_range(62.., if right.ends_with("00") { "01" } else { "00" });
    for wrong in ["ab".repeat(32), near] {
        let b = Bridge::new();
        let r = b.add_account("Work", d.pop3s_port, "implicit", "alice", "alice-pw", &["--pin-sha256", &wrong]);
        let r = r.expect(4);
        assert!(r.stderr.contains("pinned"), "the reason: {}", r.stderr);
        let shown: String = r.stderr.chars().filter(|c| c.is_ascii_hexdigit()).collect::<String>().to_uppercase();
        assert!(shown.contains(&right.to_uppercase()), "the server's real fingerprint is printed: {}", r.stderr);
        assert!(r.stderr.contains("what to do"), "guidance: {}", r.stderr);
        assert!(b.run(&["account", "list"]).stdout.contains("No accounts"), "not saved");
    }
}
