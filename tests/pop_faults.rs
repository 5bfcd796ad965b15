//! What Dovecot will not do: a scripted fake POP3 server with faults. Each case ends in a classified
//! error or a correct fetch, and the store stays consistent (nothing lost, nothing twice).

use crate::util::accounts::PopAccount;
use crate::util::fake_pop3::{FakeMessage, FakePop3, Fault, Script};
use crate::util::{Bridge, Run};

fn msg(i: usize) -> Vec<u8> {
    format!(
        "From: sender{i}@example.com\r\nTo: me@example.com\r\nSubject: message {i}\r\nMessage-ID: <m{i}@example.com>\r\nDate: Mon, 3 Mar 2025 10:{:02}:00 +0000\r\n\r\nHello {i}.\r\n.leading dot line\r\n..two dots\r\n",
        i % 60
    )
    .into_bytes()
}

fn messages(n: usize) -> Vec<FakeMessage> {
    (1..=n).map(|i| FakeMessage { uidl: Some(format!("uid-{i}")), data: msg(i) }).collect()
}

fn server(n: usize, faults: Vec<Fault>) -> FakePop3 {
    FakePop3::start(Script { messages: messages(n), faults, ..Script::default() })
}

/// A bridge with one plaintext account on the fake server (loopback, so plaintext is allowed).
fn bridge(fake: &FakePop3, extra: &[&str]) -> Bridge {
    let b = Bridge::new();
    let mut args = vec!["--no-test"];
    args.extend_from_slice(extra);
    b.add_account("Fake", fake.port(), "plain", "u", "p", &args).expect(0);
    b
}

fn fetch(b: &Bridge) -> Run {
    b.run(&["fetch", "Fake"])
}

fn assert_store_has(b: &Bridge, numbers: std::ops::RangeInclusive<usize>) {
    let got = b.messages("Fake");
    let want: Vec<Vec<u8>> = numbers.map(msg).collect();
    assert_eq!(got.len(), want.len(), "stored count");
    assert_eq!(crate::util::sorted(got), crate::util::sorted(want));
}

#[test]
fn pipelines_when_offered_and_unstuffs_dots() {
    let f = server(50, vec![]);
    let b = bridge(&f, &[]);
    fetch(&b).expect(0);
    assert_store_has(&b, 1..=50);
    assert!(f.max_in_flight() > 4, "RETRs are pipelined (max in flight {})", f.max_in_flight());
    assert_eq!(f.sessions(), 1);
}

#[test]
fn a_server_that_ignores_pipelining_gets_lock_step() {
    let f = server(20, vec![Fault::IgnorePipelining]);
    let b = bridge(&f, &[]);
    fetch(&b).expect(0);
    assert_store_has(&b, 1..=20);
    assert_eq!(f.max_in_flight(), 1, "one command at a time when PIPELINING is not offered");
}

#[test]
fn no_uidl_falls_back_to_headers_and_never_deletes() {
    let f = server(12, vec![Fault::NoUidl]);
    let b = bridge(&f, &["--delete", "after-fetch"]);
    let r = fetch(&b).expect(0);
    assert!(r.stderr.contains("UIDL") && r.stderr.contains("never deletes"), "the user is told: {}", r.stderr);
    assert_store_has(&b, 1..=12);
    assert_eq!(f.remaining().len(), 12, "nothing is deleted on a guessed identity");
    let r = fetch(&b).expect(0);
    assert!(r.stdout.contains("0 new message(s)"), "{}", r.stdout);
    assert_store_has(&b, 1..=12);
    let r = b.run(&["account", "test", "Fake"]).expect(0);
    assert!(r.stdout.contains("UIDL: not supported"), "{}", r.stdout);
}

#[test]
fn no_uidl_and_no_top_still_stores_each_message_once() {
    let f = server(6, vec![Fault::NoUidl, Fault::NoTop]);
    let b = bridge(&f, &[]);
    fetch(&b).expect(0);
    fetch(&b).expect(0);
    assert_store_has(&b, 1..=6);
}

#[test]
fn duplicate_uidls_are_detected_and_those_messages_are_kept() {
    // Messages 2, 4 and 6 report the UIDL of 1, 3 and 5; message 7 keeps its own.
    let f = server(7, vec![Fault::DuplicateUidl]);
    let b = bridge(&f, &["--delete", "after-fetch"]);
    let r = fetch(&b).expect(0);
    assert!(r.stderr.contains("same UIDL"), "{}", r.stderr);
    assert_store_has(&b, 1..=7);
    // Messages sharing a UIDL are never deleted; the one with its own UIDL is.
    let left: Vec<Vec<u8>> = f.remaining().into_iter().map(|m| m.data).collect();
    assert_eq!(crate::util::sorted(left), crate::util::sorted((1..=6).map(msg).collect()));
    fetch(&b).expect(0);
    assert_store_has(&b, 1..=7);
    let r = b.run(&["account", "test", "Fake"]).expect(0);
    assert!(r.stdout.contains("sharing a UIDL"), "{}", r.stdout);
}

#[test]
fn response_codes_classify_login_failures() {
    for (line, code, word) in [
        ("-ERR [IN-USE] mailbox locked by another session", 6, "in use"),
        ("-ERR [SYS/TEMP] try again later", 6, "temporary"),
        ("-ERR [LOGIN-DELAY] wait 5 minutes", 6, "LOGIN-DELAY"),
        ("-ERR [AUTH] invalid credentials", 5, "password"),
        ("-ERR [SYS/PERM] account suspended", 5, "provider"),
    ] {
        let f = server(1, vec![Fault::AuthError(line.into())]);
        let b = bridge(&f, &[]);
        let r = fetch(&b).expect(code);
        assert!(r.stderr.contains(word), "{line}: {}", r.stderr);
        assert!(b.messages("Fake").is_empty());
    }
}

#[test]
fn a_disconnect_mid_retr_keeps_what_was_stored_and_resumes() {
    let f = server(30, vec![Fault::DisconnectMidRetr { msg: 20, after_bytes: 40 }]);
    let b = bridge(&f, &["--delete", "after-fetch"]);
    let r = fetch(&b).expect(3);
    assert!(r.stderr.contains("closed the connection"), "{}", r.stderr);
    let stored = b.messages("Fake").len();
    assert!((19..30).contains(&stored), "messages before the break are kept ({stored})");
    assert_eq!(f.remaining().len(), 30, "no QUIT, so the server deleted nothing");
    f.set_faults(vec![]);
    fetch(&b).expect(0);
    assert_store_has(&b, 1..=30);
    assert!(f.remaining().is_empty());
}

#[test]
fn a_truncated_answer_is_a_connection_error_and_nothing_is_lost() {
    let f = server(5, vec![Fault::TruncateRetr { msg: 3 }]);
    let b = bridge(&f, &[]);
    fetch(&b).expect(3);
    f.set_faults(vec![]);
    fetch(&b).expect(0);
    assert_store_has(&b, 1..=5);
}

#[test]
fn bare_lf_servers_are_read_and_stored_with_crlf() {
    let f = server(5, vec![Fault::BareLf]);
    let b = bridge(&f, &[]);
    fetch(&b).expect(0);
    assert_store_has(&b, 1..=5);
}

#[test]
fn an_overlong_line_is_a_protocol_error() {
    let f = server(1, vec![Fault::OverlongLine { len: 100_000 }]);
    let b = bridge(&f, &[]);
    let r = fetch(&b).expect(7);
    assert!(r.stderr.contains("protocol"), "{}", r.stderr);
}

#[test]
fn a_stalled_server_times_out() {
    let f = server(4, vec![Fault::StallAfterRetr { msg: 3 }]);
    let b = bridge(&f, &[]);
    b.append_config("timeout = \"2s\"\n");
    let t = std::time::Instant::now();
    let r = fetch(&b).expect(3);
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
    assert!(r.stderr.contains("stopped responding"), "{}", r.stderr);
    assert!(b.messages("Fake").len() >= 2, "messages before the stall are kept");
}

#[test]
fn a_message_deleted_by_another_client_is_skipped() {
    let f = server(4, vec![Fault::DeletedMidSession { msg: 2 }]);
    let b = bridge(&f, &[]);
    let r = fetch(&b).expect(0);
    assert!(r.stderr.contains("could not send message 2"), "{}", r.stderr);
    assert_eq!(b.messages("Fake").len(), 3);
}

#[test]
fn quit_failure_means_nothing_was_deleted_and_it_is_retried() {
    let f = server(3, vec![Fault::QuitFails]);
    let b = bridge(&f, &["--delete", "after-fetch"]);
    let r = fetch(&b).expect(0);
    assert!(r.stderr.contains("deleted nothing"), "{}", r.stderr);
    assert_eq!(f.remaining().len(), 3);
    f.set_faults(vec![]);
    fetch(&b).expect(0);
    assert!(f.remaining().is_empty());
    assert_store_has(&b, 1..=3);
}

#[test]
fn a_60_mb_message_is_left_on_the_server_by_default_and_fetched_when_allowed() {
    let mut big = b"From: big@example.com\r\nSubject: huge\r\nMessage-ID: <big@example.com>\r\n\r\n".to_vec();
    let line = [b'x'; 998];
    while big.len() < 60 * 1000 * 1000 {
        big.extend_from_slice(&line);
        big.extend_from_slice(b"\r\n");
    }
    let mut msgs = messages(3);
    msgs.insert(1, FakeMessage { uidl: Some("big".into()), data: big.clone() });
    let f = FakePop3::start(Script { messages: msgs, ..Script::default() });
    let b = bridge(&f, &["--delete", "after-fetch"]);
    let r = fetch(&b).expect(0);
    assert!(r.stderr.contains("max_message_size"), "{}", r.stderr);
    assert_store_has(&b, 1..=3);
    assert_eq!(f.remaining().len(), 1, "the big one stays");
    b.append_config("max_message_size = \"100MiB\"\n");
    fetch(&b).expect(0);
    let stored = b.messages("Fake");
    assert_eq!(stored.len(), 4);
    assert!(stored.contains(&big), "fetched byte-exact");
    assert!(f.remaining().is_empty());
}

/// Adds the account with a password command instead of stdin.
fn bridge_with_command(fake: &FakePop3, auth: &str, command: &str) -> Bridge {
    let b = Bridge::new();
    let account = PopAccount { password_command: Some(command), ..PopAccount::fake(fake.port()) };
    b.add_pop_account(&account, &["--auth", auth]).expect(0);
    b
}

/// How a login method may carry the password (RFC 1939 §7, RFC 4616, the LOGIN draft).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carried {
    /// As PASS's argument, in clear: that is the USER/PASS protocol.
    PassArgument,
    /// Only base64-encoded, inside the SASL exchange (the AUTH line or a continuation).
    Base64InSasl,
    /// Never: APOP sends an MD5 digest of the server's timestamp and the password.
    Never,
}

/// Checks the raw lines a client sent against how its login method may carry `password`;
/// returns what is wrong (nothing: `Ok`).
fn check_password_on_the_wire(raw: &[String], password: &str, carried: Carried) -> Result<(), String> {
    use crate::util::fake_pop3::b64decode;
    // The SASL exchange: an AUTH line and the continuation lines after it (until the next command).
    const COMMANDS: [&str; 14] =
        ["USER", "PASS", "APOP", "AUTH", "CAPA", "STLS", "STAT", "LIST", "UIDL", "TOP", "RETR", "DELE", "NOOP", "QUIT"];
    let mut in_auth = false;
    let sasl: Vec<bool> = raw
        .iter()
        .map(|l| {
            let first = l.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
            if first == "AUTH" {
                in_auth = true;
            } else if COMMANDS.contains(&first.as_str()) {
                in_auth = false;
            }
            in_auth
        })
        .collect();
    let clear: Vec<&String> = raw.iter().filter(|l| l.contains(password)).collect();
    // Lines with a token that is base64 for something holding the password, and whether each
    // belongs to a SASL exchange.
    let encoded: Vec<(&String, bool)> = raw
        .iter()
        .zip(&sasl)
        .filter(|(l, _)| {
            l.split_whitespace()
                .any(|t| b64decode(t).is_some_and(|d| d.windows(password.len()).any(|w| w == password.as_bytes())))
        })
        .map(|(l, s)| (l, *s))
        .collect();
    match carried {
        Carried::PassArgument => {
            let want = format!("PASS {password}");
            if clear.iter().any(|l| **l != want) {
                return Err(format!("the password in clear outside PASS: {clear:?}"));
            }
            if clear.is_empty() {
                return Err(format!("no PASS {password}: {raw:?}"));
            }
            if !encoded.is_empty() {
                return Err(format!("the password base64-encoded as well: {encoded:?}"));
            }
        }
        Carried::Base64InSasl => {
            if !clear.is_empty() {
                return Err(format!("the password in clear: {clear:?}"));
            }
            if encoded.is_empty() || encoded.iter().any(|(_, in_sasl)| !in_sasl) {
                return Err(format!("wanted the password base64-encoded in the SASL exchange only: {raw:?}"));
            }
        }
        Carried::Never => {
            if !clear.is_empty() || !encoded.is_empty() {
                return Err(format!("the password went over the wire: clear {clear:?}, base64 {encoded:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn every_login_method_works() {
    // Distinctive, so that finding it on the wire cannot be a coincidence.
    const PW: &str = "Qz7-lantern-91x";
    for (auth, apop, sent, carried) in [
        ("user", false, "PASS ***", Carried::PassArgument),
        ("plain", false, "AUTH PLAIN ***", Carried::Base64InSasl),
        ("login", false, "AUTH LOGIN", Carried::Base64InSasl),
        ("apop", true, "APOP u ***", Carried::Never),
        ("auto", false, "AUTH PLAIN ***", Carried::Base64InSasl),
    ] {
        let f = FakePop3::start(Script { messages: messages(2), apop, pass: PW.into(), ..Script::default() });
        let b = bridge_with_command(&f, auth, &format!("echo {PW}"));
        fetch(&b).expect(0);
        assert_store_has(&b, 1..=2);
        let raw = f.raw_transcript();
        if let Err(e) = check_password_on_the_wire(&raw, PW, carried) {
            panic!("{auth}: {e}");
        }
        assert!(f.commands().iter().any(|c| c.starts_with(sent)), "{auth}: {:?}", f.commands());
        if carried == Carried::Never {
            // APOP's digest: 32 hex digits, after the user name.
            let apop_line = raw.iter().find(|l| l.starts_with("APOP ")).expect("an APOP command");
            let digest = apop_line.split_whitespace().nth(2).unwrap_or("");
            assert!(
                digest.len() == 32 && digest.bytes().all(|c| c.is_ascii_hexdigit()),
                "APOP sends an MD5 digest: {apop_line}"
            );
        }
    }
}

#[test]
fn xoauth2_takes_the_token_from_the_password_command() {
    let sasl = vec!["XOAUTH2".to_string()];
    let f = FakePop3::start(Script {
        messages: messages(2),
        pass: "tok-123".into(),
        sasl: sasl.clone(),
        ..Script::default()
    });
    let b = bridge_with_command(&f, "xoauth2", "printf 'tok-123\\n'");
    fetch(&b).expect(0);
    assert_store_has(&b, 1..=2);
    // An expired token: the server's JSON details are shown, and it is an authentication error.
    let f = FakePop3::start(Script { messages: messages(1), pass: "fresh".into(), sasl, ..Script::default() });
    let b = Bridge::new();
    let stale = PopAccount { password_command: Some("echo stale"), ..PopAccount::fake(f.port()) };
    let r = b.add_pop_account(&stale, &["--auth", "xoauth2"]).expect(5);
    assert!(r.stderr.contains("\"status\":\"401\""), "{}", r.stderr);
}

#[test]
fn a_second_fetch_of_the_same_account_is_refused_while_one_runs() {
    let f = server(4, vec![Fault::StallAfterRetr { msg: 2 }]);
    let b = bridge(&f, &[]);
    let mut first = b.cmd(&["fetch", "Fake"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    // The first fetch takes the account's lock before it connects: once its session exists (it
    // then stalls in RETR 2), the lock is held.
    crate::util::wait_until("the first fetch's POP session", std::time::Duration::from_secs(10), || f.sessions() > 0);
    let r = fetch(&b).expect(6);
    assert!(r.stderr.contains("already being fetched"), "{}", r.stderr);
    assert_eq!(f.sessions(), 1, "the second fetch never contacted the server");
    first.kill().unwrap();
    first.wait().unwrap();
    f.set_faults(vec![]);
    fetch(&b).expect(0);
    assert_store_has(&b, 1..=4);
}

#[test]
fn internaldate_is_the_sent_date_and_mail_arrives_unread() {
    let dated = b"From: a@example.com\r\nDate: Tue, 1 Jul 2025 10:52:37 +0200\r\nSubject: dated\r\n\r\nx\r\n".to_vec();
    let received = b"Received: from mx.example.com by mail.example.com; Wed, 2 Jul 2025 08:00:00 +0000\r\nFrom: a@example.com\r\nSubject: no date\r\n\r\nx\r\n".to_vec();
    let msgs = vec![
        FakeMessage { uidl: Some("d".into()), data: dated },
        FakeMessage { uidl: Some("r".into()), data: received },
    ];
    let f = FakePop3::start(Script { messages: msgs, ..Script::default() });
    let b = bridge(&f, &[]);
    fetch(&b).expect(0);
    let c = rusqlite::Connection::open(b.store_path()).unwrap();
    let rows: Vec<(i64, i64, i64)> = c
        .prepare("SELECT internaldate, internaldate_tz, flags FROM messages ORDER BY uid")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows[0], (1_751_359_957, 120, 0), "the Date header, with its zone; unread");
    assert_eq!(rows[1], (1_751_443_200, 0, 0), "no Date: the first Received date");
}

// ----- the rest of the fault catalogue (issue 7): each behaviour, its classified outcome -----

use crate::util::certs::{TestCa, self_signed, write};
use crate::util::fake_pop3::Tls;

/// A bridge with a TLS account on the fake server; `trust` adds e.g. --ca-file or --pin-sha256.
fn tls_bridge(fake: &FakePop3, mode: &str, trust: &[&str]) -> Bridge {
    let b = Bridge::new();
    let mut args = vec!["--no-test"];
    args.extend_from_slice(trust);
    b.add_account("Fake", fake.port(), mode, "u", "p", &args).expect(0);
    b
}

#[test]
fn a_greeting_that_never_comes_times_out() {
    let f = server(1, vec![Fault::NoGreeting]);
    let b = bridge(&f, &[]);
    b.append_config("timeout = \"2s\"\n");
    let r = fetch(&b).expect(3);
    assert!(r.stderr.contains("stopped responding"), "{}", r.stderr);
}

#[test]
fn a_garbage_greeting_is_a_protocol_error() {
    let f = server(1, vec![Fault::GarbageGreeting]);
    let b = bridge(&f, &[]);
    let r = fetch(&b).expect(7);
    assert!(r.stderr.contains("HELLO"), "the bad line is shown: {}", r.stderr);
}

#[test]
fn tls_to_a_plaintext_port_fails_clearly() {
    let f = server(1, vec![]);
    let b = tls_bridge(&f, "implicit", &[]);
    let r = fetch(&b).expect(4);
    assert!(r.stderr.contains("TLS"), "{}", r.stderr);
}

#[test]
fn expired_and_foreign_certificates_and_wrong_pins_are_refused() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &ca.ca_pem()).display().to_string();
    // Expired.
    let f = FakePop3::start(Script {
        messages: messages(1),
        tls: Tls::Implicit(ca.issue_expired(&["localhost", "127.0.0.1"])),
        ..Script::default()
    });
    let b = tls_bridge(&f, "implicit", &["--ca-file", &ca_file]);
    let r = fetch(&b).expect(4);
    assert!(r.stderr.contains("expired"), "{}", r.stderr);
    // Self-signed, not pinned; then pinned to another certificate; then pinned right.
    let own = self_signed(&["localhost", "127.0.0.1"]);
    let right = own.sha256_hex();
    let f = FakePop3::start(Script { messages: messages(1), tls: Tls::Implicit(own), ..Script::default() });
    let b = tls_bridge(&f, "implicit", &["--ca-file", &ca_file]);
    let r = fetch(&b).expect(4);
    assert!(
        r.stderr.contains(&right.to_uppercase()[..8])
            || r.stderr.to_uppercase().replace(':', "").contains(&right.to_uppercase()),
        "{}",
        r.stderr
    );
    let wrong = "00".repeat(32);
    let b = tls_bridge(&f, "implicit", &["--pin-sha256", &wrong]);
    let r = fetch(&b).expect(4);
    assert!(r.stderr.contains("pinned"), "{}", r.stderr);
    let b = tls_bridge(&f, "implicit", &["--pin-sha256", &right]);
    fetch(&b).expect(0);
    assert_eq!(b.messages("Fake").len(), 1);
}

#[test]
fn stls_refused_or_hidden_never_falls_back_to_plaintext() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &ca.ca_pem()).display().to_string();
    for fault in [Fault::RejectStls, Fault::HideStls] {
        let f = FakePop3::start(Script {
            messages: messages(1),
            tls: Tls::Stls(ca.issue(&["localhost", "127.0.0.1"])),
            faults: vec![fault.clone()],
            ..Script::default()
        });
        let b = tls_bridge(&f, "starttls", &["--ca-file", &ca_file]);
        let r = fetch(&b).expect(4);
        assert!(r.stderr.contains("STLS") && r.stderr.contains("plaintext"), "{fault:?}: {}", r.stderr);
        assert!(
            !f.commands().iter().any(|c| c.starts_with("USER") || c.starts_with("AUTH") || c.starts_with("PASS")),
            "{fault:?}: no credentials sent: {:?}",
            f.commands()
        );
    }
}

#[test]
fn err_without_code_on_login_from_an_auth_resp_code_server_is_temporary() {
    // RFC 3206 §4: such a server marks credential problems with [AUTH]; a bare -ERR is something else.
    let f = server(1, vec![Fault::AuthError("-ERR service not available right now".into())]);
    let b = bridge(&f, &[]);
    let r = fetch(&b).expect(6);
    assert!(r.stderr.contains("not because of the credentials"), "{}", r.stderr);
}

#[test]
fn uidls_that_change_every_session_do_not_duplicate_mail() {
    let f = server(5, vec![Fault::UidlChangesEachSession]);
    let b = bridge(&f, &[]);
    fetch(&b).expect(0);
    let r = fetch(&b).expect(0);
    assert!(r.stderr.contains("changes its UIDLs"), "{}", r.stderr);
    assert_store_has(&b, 1..=5);
}

#[test]
fn a_stat_that_disagrees_with_list_does_not_matter() {
    let f = server(4, vec![Fault::CountMismatch]);
    let b = bridge(&f, &[]);
    fetch(&b).expect(0);
    assert_store_has(&b, 1..=4);
}

#[test]
fn a_connection_lost_at_quit_keeps_everything_and_checks_again() {
    let f = server(3, vec![Fault::CloseOnQuit]);
    let b = bridge(&f, &["--delete", "after-fetch"]);
    let r = fetch(&b).expect(0);
    assert!(r.stderr.contains("without the server's confirmation"), "{}", r.stderr);
    assert_store_has(&b, 1..=3);
    assert_eq!(f.remaining().len(), 3, "the server deleted nothing");
    f.set_faults(vec![]);
    fetch(&b).expect(0);
    assert!(f.remaining().is_empty(), "deleted the next time");
    assert_store_has(&b, 1..=3);
}

#[test]
fn nul_bytes_are_stored_exactly() {
    let mut data = msg(1);
    data.extend_from_slice(b"binary\0zero\0bytes\r\n");
    let f = FakePop3::start(Script {
        messages: vec![FakeMessage { uidl: Some("n".into()), data: data.clone() }],
        ..Script::default()
    });
    let b = bridge(&f, &[]);
    fetch(&b).expect(0);
    assert_eq!(b.messages("Fake"), vec![data]);
}

/// The POP state of the mailbox the account fetches: each stored server identity (UIDL) with
/// the content stored under it (as text, for readable failures) and whether popbridge is certain
/// of it (may delete on it), sorted by UIDL.
fn pop_state(b: &Bridge, account: &str) -> Vec<(String, String, bool)> {
    let ids = b.store().account_ids(account).expect("account ids").expect("the account is in the store");
    let c = rusqlite::Connection::open(b.store_path()).expect("open the store");
    let mut st = c
        .prepare(
            "SELECT p.uidl, b.raw, p.exact FROM pop_uidls p JOIN pop_servers s ON s.id = p.server_id \
             LEFT JOIN bodies b ON b.id = p.body_id WHERE s.account_id = ?1 ORDER BY p.uidl",
        )
        .expect("prepare");
    st.query_map([ids.account], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default(), r.get::<_, bool>(2)?))
    })
    .expect("query")
    .map(|r| r.map(|(u, raw, exact)| (u, String::from_utf8_lossy(&raw).into_owned(), exact)))
    .collect::<Result<_, _>>()
    .expect("rows")
}

fn text(m: &[u8]) -> String {
    String::from_utf8_lossy(m).into_owned()
}

/// A server that sends another message's bytes for a number (their size is far from what LIST
/// said): they are stored as received — no mail is held back — but the identity is recorded as
/// uncertain and never deleted on, and it is read again each time until the server sends bytes
/// that match LIST. Only then may the message be deleted.
#[test]
fn the_wrong_message_for_a_number_is_stored_as_received_but_never_deleted_on() {
    let mut msgs = messages(3);
    // Make message 3 clearly bigger than message 2, so a swap is visible in the size.
    msgs[2].data.extend_from_slice(&b"padding line\r\n".repeat(40));
    let third = msgs[2].data.clone();
    let (m1, m2, m3) = (text(&msg(1)), text(&msg(2)), text(&third));
    let entry = |u: &str, m: &str, certain: bool| (u.to_string(), m.to_string(), certain);
    for policy in ["never", "after-fetch"] {
        let f = FakePop3::start(Script {
            messages: msgs.clone(),
            faults: vec![Fault::WrongMessage { msg: 2 }],
            ..Script::default()
        });
        let b = bridge(&f, &["--delete", policy]);
        let r = fetch(&b).expect(0);
        assert!(
            r.stderr.contains("number 2") && r.stderr.contains("LIST announced") && r.stderr.contains("never deletes"),
            "{policy}: {}",
            r.stderr
        );
        // The mailbox holds messages 1 and 3, each once (3's bytes came twice).
        let stored: Vec<String> = b.messages("Fake").iter().map(|m| text(m)).collect();
        assert_eq!(stored, vec![m1.clone(), m3.clone()], "{policy}: the mailbox holds exactly messages 1 and 3");
        if policy == "never" {
            assert_eq!(
                pop_state(&b, "Fake"),
                vec![entry("uid-1", &m1, true), entry("uid-2", &m3, false), entry("uid-3", &m3, true)],
                "uid-2 is recorded with the bytes it came with, as uncertain"
            );
            assert!(f.deleted_uidls().is_empty());
            assert_eq!(f.remaining(), msgs, "never: everything stays on the server");
        } else {
            // 1 and 3 were deleted (and their records pruned after QUIT); message 2 stays.
            assert_eq!(f.deleted_uidls(), vec!["uid-1".to_string(), "uid-3".to_string()]);
            assert_eq!(f.remaining(), vec![FakeMessage { uidl: Some("uid-2".into()), data: msg(2) }]);
            assert_eq!(pop_state(&b, "Fake"), vec![entry("uid-2", &m3, false)], "after-fetch: uid-2 never deleted");
        }
        if policy == "never" {
            // Still wrong: read again, nothing new stored, still not deleted. (Under after-fetch,
            // message 2 is now number 1, which the server sends right.)
            fetch(&b).expect(0);
            assert_eq!(b.messages("Fake").len(), 2, "{policy}: the same bytes are not stored twice");
            assert_eq!(f.remaining(), msgs);
        }
        // Once the server sends the right message, it is stored under its own identity.
        f.set_faults(vec![]);
        let r = fetch(&b).expect(0);
        assert!(!r.stderr.contains("known UIDL"), "an uncertain identity corrected is not UIDL reuse: {}", r.stderr);
        let stored: Vec<String> = b.messages("Fake").iter().map(|m| text(m)).collect();
        assert_eq!(stored, vec![m1.clone(), m3.clone(), m2.clone()], "{policy}: message 2 fetched the next time");
        if policy == "never" {
            assert_eq!(
                pop_state(&b, "Fake"),
                vec![entry("uid-1", &m1, true), entry("uid-2", &m2, true), entry("uid-3", &m3, true)]
            );
            assert_eq!(f.remaining(), msgs);
        } else {
            assert_eq!(f.deleted_uidls(), vec!["uid-1".to_string(), "uid-3".to_string(), "uid-2".to_string()]);
            assert!(f.remaining().is_empty());
        }
    }
}

/// Sizes that are far from the truth (LIST says half): every message is stored as received, and
/// none is ever deleted on such an identity (RFC 1939 LIST sizes are only advisory).
#[test]
fn sizes_that_lie_do_not_hold_mail_back_and_nothing_is_deleted_on_them() {
    let f = server(2, vec![Fault::WrongSizes]);
    let b = bridge(&f, &["--delete", "after-fetch"]);
    let r = fetch(&b).expect(0);
    assert!(r.stderr.contains("LIST announced"), "{}", r.stderr);
    assert_store_has(&b, 1..=2);
    assert_eq!(f.remaining().len(), 2, "nothing deleted");
    fetch(&b).expect(0);
    assert_store_has(&b, 1..=2);
    assert_eq!(f.remaining().len(), 2, "still nothing deleted");
}

#[test]
fn a_refused_dele_is_reported_and_retried() {
    let f = server(3, vec![Fault::DeleFails { msg: 2 }]);
    let b = bridge(&f, &["--delete", "after-fetch"]);
    let r = fetch(&b).expect(0);
    assert!(r.stderr.contains("refused to delete message 2"), "{}", r.stderr);
    assert_eq!(f.remaining().len(), 1);
    f.set_faults(vec![]);
    fetch(&b).expect(0);
    assert!(f.remaining().is_empty());
    assert_store_has(&b, 1..=3);
}

#[test]
fn a_server_that_hangs_up_after_login_is_a_connection_error() {
    let f = server(2, vec![Fault::DisconnectAfterLogin]);
    let b = bridge(&f, &[]);
    fetch(&b).expect(3);
    assert!(b.messages("Fake").is_empty());
}

#[test]
fn slow_servers_and_servers_without_capa_still_work() {
    let f = server(3, vec![Fault::SlowResponses { ms: 30 }]);
    let b = bridge(&f, &[]);
    fetch(&b).expect(0);
    assert_store_has(&b, 1..=3);
    let f = server(3, vec![Fault::NoCapa]);
    let b = bridge(&f, &[]);
    fetch(&b).expect(0);
    assert_store_has(&b, 1..=3);
    assert_eq!(f.max_in_flight(), 1, "no CAPA, no PIPELINING: lock-step");
}
