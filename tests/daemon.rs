//! `popbridge run` as a user service: the schedule, SIGHUP (new and removed accounts, listeners
//! that move, a broken config), SIGTERM in the middle of a fetch, account health (disabled after
//! failed logins or a certificate error, notices and ALERTs in the client, recovery after a new
//! password or pin), backoff, LOGIN-DELAY (the fake server: Dovecot cannot advertise it), `fetch`
//! through the daemon, the demo, client-config and the systemd unit.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::accounts::PopAccount;
use crate::util::corpus::corpus;
use crate::util::dovecot::{CertKind, Dovecot, DovecotOpts};
use crate::util::fake_pop3::{FakeMessage, FakePop3, Fault, Script, mail};
use crate::util::imap_clients::{Raw, Security, Target};
use crate::util::{Bridge, LOCAL_PASSWORD, account, free_port, sorted, wait_until};

fn hup(pid: u32) {
    Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
}

#[test]
fn schedule_reload_and_sigterm_mid_fetch_lose_nothing() {
    let d = Dovecot::start(DovecotOpts::default());
    let work = corpus(20, 41);
    d.deliver("alice", &work.messages);
    // Home's server stalls halfway through its 25th message (the first half sent, then nothing), so
    // the SIGTERM lands in the middle of the import however fast or slow this machine is.
    let home: Vec<FakeMessage> =
        (1..=60).map(|i| FakeMessage::new(&format!("h{i}"), mail(&format!("home {i}"), &"x".repeat(i * 40)))).collect();
    let stall = 25;
    let fake = FakePop3::start(Script {
        messages: home.clone(),
        faults: vec![Fault::StallAfterRetr { msg: stall }],
        ..Script::default()
    });
    let b = Bridge::with_listeners();
    b.add_dovecot_alice(&d, &["--no-test"]).expect(0);
    let mut daemon = b.daemon();
    // The schedule fetches a new account at once.
    wait_until("the scheduled fetch", Duration::from_secs(30), || account(&b.status_json(), "Work")["messages"] == 20);
    assert!(account(&b.status_json(), "Work")["next_fetch"].is_string(), "the next fetch is planned");
    // A new account and SIGHUP: fetched without a restart.
    b.add_account("Home", fake.port(), "plain", "u", "p", &["--delete", "after-fetch", "--no-test"]).expect(0);
    hup(daemon.child.id());
    let before_stall = stall as usize - 1;
    wait_until("Home's messages before the stalled one", Duration::from_secs(30), || {
        b.messages("Home").len() >= before_stall
    });
    // SIGTERM in the middle of the import (a message half received): a quick, clean exit.
    let t = Instant::now();
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status}: {}", daemon.log());
    assert!(t.elapsed() < Duration::from_secs(10), "stopped in {:?}", t.elapsed());
    let partial = b.messages("Home").len();
    assert!(0 < partial && partial < home.len(), "the SIGTERM landed mid-import: {partial} of {} stored", home.len());
    assert_eq!(partial, before_stall, "everything before the stalled message, and not the half-received one");
    assert_eq!(fake.remaining().len(), home.len(), "no QUIT, so the server deleted nothing yet");
    drop(daemon);
    // Restart: the import resumes; every message exactly once, and after-fetch empties the server.
    fake.set_faults(vec![]);
    let _daemon = b.daemon();
    wait_until("the rest of Home", Duration::from_secs(60), || {
        b.messages("Home").len() >= home.len() && fake.remaining().is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    let want = sorted(home.iter().map(|m| m.data.clone()).collect());
    assert_eq!(sorted(b.messages("Home")), want, "after {partial} before SIGTERM: nothing lost, nothing twice");
    assert!(fake.remaining().is_empty(), "every message deleted once stored");
    assert_eq!(b.messages("Work").len(), 20);
}

/// Dovecot's POP3 logins of `user` so far, accepted or refused (one `pop3-login` line each).
fn pop_logins(d: &Dovecot, user: &str) -> usize {
    let who = format!("user=<{user}>");
    d.log().lines().filter(|l| l.contains("pop3-login") && l.contains(&who)).count()
}

/// Makes the last fetch attempt of `name` look `secs` older (the daemon must not be running: a
/// running scheduler keeps what it read).
fn age_last_attempt(b: &Bridge, name: &str, secs: i64) {
    b.sql(&format!(
        "UPDATE accounts SET last_attempt = last_attempt - {secs}, last_fetch = last_fetch - {secs} WHERE name = '{name}';"
    ));
}

#[test]
fn opening_the_mailbox_fetches_an_active_account_but_never_a_disabled_one() {
    let d = Dovecot::start(DovecotOpts::default());
    d.deliver("alice", &corpus(2, 46).messages);
    let b = Bridge::with_listeners();
    b.add_dovecot_alice(&d, &["--no-test"]).expect(0);
    let mut daemon = b.daemon();
    wait_until("the first fetch", Duration::from_secs(30), || account(&b.status_json(), "Work")["messages"] == 2);
    daemon.terminate();
    // Two minutes later (the 5-minute interval is not over; a kick counts after one minute).
    age_last_attempt(&b, "Work", 120);
    let daemon = b.daemon();
    let before = pop_logins(&d, "alice");
    // Control: an active account whose last fetch is two minutes old is fetched when a client
    // opens its mailbox.
    let mut w = Raw::connect_login(&b.target(Security::Plain, "me"));
    w.cmd("w1", "SELECT Work").assert_ok("select");
    wait_until("the login a mailbox open causes", Duration::from_secs(10), || pop_logins(&d, "alice") > before);
    w.logout();
    drop(daemon);
    // The provider changes the password: three refused logins disable the account.
    d.set_password("alice", "changed-pw");
    let mut daemon = b.daemon();
    for i in 0..3 {
        let r = b.run(&["fetch", "Work"]);
        assert_eq!(r.code, 5, "attempt {i}: {}{}", r.stdout, r.stderr);
    }
    assert_eq!(account(&b.status_json(), "Work")["state"], "disabled");
    daemon.terminate();
    // The same situation as the control case, but disabled.
    age_last_attempt(&b, "Work", 120);
    let _daemon = b.daemon();
    assert_eq!(account(&b.status_json(), "Work")["state"], "disabled", "a restart does not enable it");
    let before = pop_logins(&d, "alice");
    let mut w = Raw::connect_login(&b.target(Security::Plain, "me"));
    w.cmd("w2", "SELECT Work").assert_ok("select");
    w.cmd("w3", "NOOP").assert_ok("noop");
    std::thread::sleep(Duration::from_millis(300));
    // A fetch the user asks for is queued behind whatever the mailbox open asked for, and it does
    // log in (it is forced): once it has answered, exactly one more login means the open caused none.
    let r = b.run(&["fetch", "Work"]);
    assert_eq!(r.code, 5, "{}{}", r.stdout, r.stderr);
    assert_eq!(pop_logins(&d, "alice"), before + 1, "only the user's fetch logged in:\n{}", d.log());
}

#[test]
fn a_changed_password_disables_the_account_and_tells_the_user() {
    let d = Dovecot::start(DovecotOpts::default());
    d.deliver("alice", &corpus(3, 43).messages);
    let b = Bridge::with_listeners();
    b.add_dovecot_alice(&d, &["--no-test"]).expect(0);
    let daemon = b.daemon();
    wait_until("the first fetch", Duration::from_secs(30), || account(&b.status_json(), "Work")["messages"] == 3);
    // A mail client is connected, looking at the local INBOX.
    let mut session = Raw::connect_login(&b.target(Security::Plain, "me"));
    session.cmd("s1", "SELECT INBOX").assert_ok("select");
    // The provider changes the password.
    d.set_password("alice", "changed-pw");
    for i in 0..3 {
        let r = b.run(&["fetch", "Work"]);
        assert_eq!(r.code, 5, "attempt {i}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("set-password"), "the guidance names the fix: {}", r.stderr);
    }
    let j = b.status_json();
    assert_eq!(account(&j, "Work")["state"], "disabled", "{j}");
    // One notice in INBOX with the exact command, and an ALERT to the connected session.
    let n = session.cmd("s2", "NOOP");
    assert!(n.lines.iter().any(|l| l.starts_with("* OK [ALERT]") && l.contains("Work")), "{:?}", n.lines);
    let f = session.cmd("s3", "FETCH 1:* (BODY.PEEK[])");
    let notices: Vec<String> =
        f.fetches().iter().filter_map(|x| x.get("BODY[]")).map(|b| String::from_utf8_lossy(b).into_owned()).collect();
    assert_eq!(notices.len(), 1, "one notice: {notices:?}");
    assert!(
        notices[0].contains("disabled") && notices[0].contains("popbridge account set-password Work"),
        "{}",
        notices[0]
    );
    // (That a disabled account is not contacted when its mailbox is opened:
    // opening_the_mailbox_fetches_an_active_account_but_never_a_disabled_one.)
    // The user updates the password and reloads: the account is active again and fetched at once
    // (as the notice promises), without asking for a fetch.
    d.deliver("alice", &corpus(2, 44).messages);
    b.run_stdin(&["account", "set-password", "Work", "--password-stdin"], "changed-pw").expect(0);
    hup(daemon.child.id());
    wait_until("the fetch after the reload", Duration::from_secs(20), || {
        account(&b.status_json(), "Work")["messages"] == 5
    });
    let j = b.status_json();
    assert_eq!(account(&j, "Work")["state"], "active", "{j}");
    wait_until("the works-again ALERT", Duration::from_secs(10), || {
        let f = session.cmd("s4", "NOOP");
        f.lines.iter().any(|l| l.contains("[ALERT]") && l.contains("works again"))
    });
    // And `popbridge fetch` goes through the daemon with the new password.
    let r = b.run(&["fetch", "Work"]).expect(0);
    assert!(r.stdout.contains("by the running daemon"), "{}", r.stdout);
}

/// The bodies of the local INBOX's messages, through the session (which has INBOX selected).
fn inbox_notices(session: &mut Raw, tag: &str) -> Vec<String> {
    let f = session.cmd(tag, "FETCH 1:* (BODY.PEEK[])");
    f.fetches().iter().filter_map(|x| x.get("BODY[]")).map(|b| String::from_utf8_lossy(b).into_owned()).collect()
}

#[test]
fn a_certificate_error_disables_the_account_and_a_pin_with_a_reload_enables_it_again() {
    let d = Dovecot::start(DovecotOpts { cert: CertKind::SelfSigned, ..DovecotOpts::default() });
    d.deliver("alice", &corpus(3, 47).messages);
    let b = Bridge::with_listeners();
    let daemon = b.daemon();
    // A mail client is connected, looking at the local INBOX.
    let mut session = Raw::connect_login(&b.target(Security::Plain, "me"));
    session.cmd("s1", "SELECT INBOX").assert_ok("select");
    // The account trusts the test CA, but the server presents a self-signed certificate.
    b.add_dovecot_alice(&d, &["--no-test"]).expect(0);
    hup(daemon.child.id());
    wait_until("the account disabled", Duration::from_secs(30), || {
        account(&b.status_json(), "Work")["state"] == "disabled"
    });
    let j = b.status_json();
    assert_eq!(account(&j, "Work")["last_error"]["class"], "certificate", "{j}");
    assert!(account(&j, "Work")["next_fetch"].is_null(), "no retry is planned: {j}");
    assert_eq!(pop_logins(&d, "alice"), 0, "no login was attempted over the untrusted connection");
    let n = session.cmd("s2", "NOOP");
    assert!(
        n.lines.iter().any(|l| l.starts_with("* OK [ALERT]") && l.contains("Work") && l.contains("certificate")),
        "{:?}",
        n.lines
    );
    let notices = inbox_notices(&mut session, "s3");
    assert_eq!(notices.len(), 1, "one notice: {notices:?}");
    assert!(
        notices[0].contains("disabled") && notices[0].contains("pin_sha256") && notices[0].contains("reload"),
        "the notice says how to fix it: {}",
        notices[0]
    );
    // The user checks the certificate, pins it and reloads: enabled again and fetched, without
    // asking for a fetch.
    let pin = d.server_cert.sha256_hex();
    let r = b.run(&["account", "test", "Work"]).expect(4);
    assert!(
        r.stderr.chars().filter(char::is_ascii_hexdigit).collect::<String>().to_lowercase().contains(&pin),
        "`account test` shows the fingerprint to pin: {}",
        r.stderr
    );
    b.append_config(&format!("pin_sha256 = \"{pin}\"\n"));
    hup(daemon.child.id());
    wait_until("the fetch after the reload", Duration::from_secs(30), || {
        account(&b.status_json(), "Work")["messages"] == 3
    });
    let j = b.status_json();
    assert_eq!(account(&j, "Work")["state"], "active", "{j}");
    assert!(account(&j, "Work")["last_error"].is_null(), "{j}");
    wait_until("the works-again ALERT", Duration::from_secs(10), || {
        let n = session.cmd("s4", "NOOP");
        n.lines.iter().any(|l| l.contains("[ALERT]") && l.contains("Work") && l.contains("works again"))
    });
    let notices = inbox_notices(&mut session, "s5");
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(notices[1].contains("works again"), "{}", notices[1]);
}

/// Asks the daemon, over its control socket, to fetch every account *it* has (an empty list):
/// unlike `popbridge fetch`, this does not go through the config file. One JSON object per account.
fn daemon_fetch_all(b: &Bridge) -> Vec<serde_json::Value> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(b.data.join("control.sock")).expect("control socket");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    s.write_all(b"{\"fetch\": []}\n").expect("request");
    std::io::BufReader::new(s)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(&l.expect("reply line")).expect("a JSON reply line"))
        // `{"alive": true}` lines only say the daemon is still working on the fetch.
        .filter(|v| v.get("alive").is_none())
        .collect()
}

/// How many times the daemon said it reloaded (`ok`) or refused the new config.
fn reloads(d: &crate::util::Daemon) -> (usize, usize) {
    let log = d.log();
    (log.matches("configuration reloaded").count(), log.matches("configuration was not reloaded").count())
}

/// Sends SIGHUP and waits until the daemon has answered it (reloaded or refused).
fn hup_and_wait(d: &crate::util::Daemon) -> (usize, usize) {
    let (ok, refused) = reloads(d);
    hup(d.child.id());
    wait_until("the daemon's answer to SIGHUP", Duration::from_secs(20), || {
        let (o, r) = reloads(d);
        o + r > ok + refused
    });
    let (o, r) = reloads(d);
    (o - ok, r - refused)
}

fn refused(port: u16) -> bool {
    matches!(
        std::net::TcpStream::connect(("127.0.0.1", port)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// The first line the SMTP server on `port` sends (after the TLS handshake when `tls_ca` is given).
fn smtp_greeting(port: u16, tls_ca: Option<&std::path::Path>) -> String {
    use std::io::BufRead;
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("SMTP on {port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut line = String::new();
    match tls_ca {
        None => std::io::BufReader::new(s).read_line(&mut line),
        Some(ca) => {
            let config =
                crate::util::certs::client_config(&std::fs::read_to_string(ca).expect("the local certificate"));
            let name = rustls_pki_types::ServerName::try_from(crate::util::imap_clients::TLS_NAME).expect("name");
            let conn = rustls::ClientConnection::new(config, name.to_owned()).expect("rustls client");
            std::io::BufReader::new(rustls::StreamOwned::new(conn, s)).read_line(&mut line)
        }
    }
    .unwrap_or_else(|e| panic!("greeting on {port}: {e}"));
    line
}

#[test]
fn sighup_moves_listeners_to_their_new_ports() {
    let b = Bridge::with_listeners();
    let daemon = b.daemon();
    let (old_imap, imaps) = b.ports();
    let (old_sub, subs) = b.smtp_ports();
    Raw::connect_login(&b.target(Security::Plain, "me")).logout();
    let (new_imap, new_sub) = (free_port(), free_port());
    let text = std::fs::read_to_string(&b.config).expect("config");
    let moved = text
        .replace(&format!("\"127.0.0.1:{old_imap}\""), &format!("\"127.0.0.1:{new_imap}\""))
        .replace(&format!("\"127.0.0.1:{old_sub}\""), &format!("\"127.0.0.1:{new_sub}\""));
    assert_ne!(moved, text);
    std::fs::write(&b.config, moved).expect("write config");
    assert_eq!(hup_and_wait(&daemon), (1, 0), "reloaded: {}", daemon.log());
    assert_eq!(b.ports().0, new_imap);
    // The new ports serve, the old ones refuse, the listeners that did not move still serve.
    Raw::connect_login(&b.target(Security::Plain, "me")).logout();
    assert!(smtp_greeting(new_sub, None).starts_with("220 "), "SMTP on the new port");
    assert!(refused(old_imap), "the old IMAP port {old_imap} no longer accepts connections");
    assert!(refused(old_sub), "the old submission port {old_sub} no longer accepts connections");
    Raw::connect_login(&b.target(Security::Implicit, "me")).logout();
    assert_eq!(b.ports().1, imaps);
    assert!(smtp_greeting(subs, Some(&b.cert())).starts_with("220 "), "SMTPS still on {subs}");
}

#[test]
fn sighup_after_removing_an_account_stops_its_fetching_and_keeps_its_mail() {
    let work: Vec<FakeMessage> =
        (1..=3).map(|i| FakeMessage::new(&format!("w{i}"), mail(&format!("work {i}"), "hi"))).collect();
    let fw = FakePop3::start(Script { messages: work.clone(), ..Script::default() });
    let fh =
        FakePop3::start(Script { messages: vec![FakeMessage::new("h1", mail("home", "hi"))], ..Script::default() });
    let b = Bridge::with_listeners();
    b.add_account("Work", fw.port(), "plain", "u", "p", &["--no-test"]).expect(0);
    b.add_account("Home", fh.port(), "plain", "u", "p", &["--no-test"]).expect(0);
    let daemon = b.daemon();
    wait_until("both fetched", Duration::from_secs(30), || {
        let j = b.status_json();
        account(&j, "Work")["messages"] == 3 && account(&j, "Home")["messages"] == 1
    });
    // Control: the daemon fetches both of its accounts when asked to fetch everything.
    let (w0, h0) = (fw.sessions(), fh.sessions());
    let out = daemon_fetch_all(&b);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!((fw.sessions(), fh.sessions()), (w0 + 1, h0 + 1));
    // The user removes Work and reloads.
    b.run(&["account", "remove", "Work"]).expect(0);
    assert_eq!(hup_and_wait(&daemon), (1, 0), "reloaded: {}", daemon.log());
    fw.add_messages(vec![FakeMessage::new("w4", mail("work 4", "hi"))]);
    let out = daemon_fetch_all(&b);
    let names: Vec<&str> = out.iter().filter_map(|o| o["account"].as_str()).collect();
    assert_eq!(names, ["Home"], "the daemon has no Work any more: {out:?}");
    assert_eq!(fw.sessions(), w0 + 1, "Work's server is not contacted again");
    assert_eq!(fh.sessions(), h0 + 2);
    // Its stored mail stays, served as before.
    let mut r = Raw::connect_login(&b.target(Security::Plain, "me"));
    let sel = r.cmd("s1", "SELECT Work");
    assert_eq!(sel.number("EXISTS"), Some(3), "{:?}", sel.lines);
    let f = r.cmd("f1", "FETCH 1:* (BODY.PEEK[])");
    let bodies: Vec<Vec<u8>> = f.fetches().iter().filter_map(|x| x.get("BODY[]").map(<[u8]>::to_vec)).collect();
    assert_eq!(bodies, work.iter().map(|m| m.data.clone()).collect::<Vec<_>>());
    r.logout();
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one_running_and_says_why() {
    let fw = FakePop3::start(Script { messages: vec![FakeMessage::new("w1", mail("one", "hi"))], ..Script::default() });
    let b = Bridge::with_listeners();
    b.add_account("Work", fw.port(), "plain", "u", "p", &["--no-test"]).expect(0);
    let daemon = b.daemon();
    wait_until("the first fetch", Duration::from_secs(30), || account(&b.status_json(), "Work")["messages"] == 1);
    let good = std::fs::read_to_string(&b.config).expect("config");
    let (imap, _) = b.ports();
    let new_pw = "a-new-local-pw";
    let with_new_pw = good.replace(&format!("\"{LOCAL_PASSWORD}\""), &format!("\"{new_pw}\""));
    assert_ne!(with_new_pw, good);
    let new_imap = free_port();
    let moved = with_new_pw.replace(&format!("\"127.0.0.1:{imap}\""), &format!("\"127.0.0.1:{new_imap}\""));
    let config_path = b.config.display().to_string();
    for (what, broken, names) in [
        // A TOML syntax error (an unclosed table header and string) after the other changes.
        ("syntax", format!("{moved}\n[[account]\nname = \"Broken\n"), "line"),
        // Valid TOML, but an interval below the minimum.
        (
            "value",
            moved.replace("\nemail = \"u@example.com\"\n", "\nemail = \"u@example.com\"\ninterval = \"1s\"\n"),
            "interval",
        ),
    ] {
        std::fs::write(&b.config, &broken).expect("write config");
        assert_eq!(hup_and_wait(&daemon), (0, 1), "{what}: refused: {}", daemon.log());
        assert_ne!(broken, moved, "{what}: the file is broken");
        let log = daemon.log();
        let why = log.rfind("configuration was not reloaded").map(|i| &log[i..]).unwrap_or_default();
        assert!(why.contains(&config_path), "{what}: the error names the file: {why}");
        assert!(why.contains(names), "{what}: the error says where ({names}): {why}");
        // Nothing of the new file applies: the old password and port, the account still fetched.
        let old = Target::new(imap, Security::Plain, None, "me", LOCAL_PASSWORD);
        Raw::connect_login(&old).logout();
        let mut r = Raw::connect(&old);
        assert!(r.cmd("l1", &format!("LOGIN me {new_pw}")).no(), "{what}: the new password is not in use yet");
        assert!(refused(new_imap), "{what}: nothing listens on the new port");
        let before = fw.sessions();
        let out = daemon_fetch_all(&b);
        assert!(out.len() == 1 && out[0]["ok"] == true, "{what}: {out:?}");
        assert_eq!(fw.sessions(), before + 1, "{what}: the account is still fetched");
    }
    // Fixed: the new settings apply.
    std::fs::write(&b.config, &moved).expect("write config");
    assert_eq!(hup_and_wait(&daemon), (1, 0), "{}", daemon.log());
    Raw::connect_login(&Target::new(new_imap, Security::Plain, None, "me", new_pw)).logout();
    assert!(refused(imap), "the old port is closed once the fixed config moved it");
}

#[test]
fn a_refused_port_backs_off_and_recovers() {
    let port = free_port();
    let b = Bridge::with_listeners();
    b.add_pop_account(&PopAccount::fake(port), &["--no-test"]).expect(0);
    let _daemon = b.daemon();
    wait_until("the first attempt", Duration::from_secs(20), || {
        account(&b.status_json(), "Fake")["state"] == "backoff"
    });
    let j = b.status_json();
    let a = account(&j, "Fake");
    assert_eq!(a["last_error"]["class"], "connection", "{j}");
    let parse = |v: &serde_json::Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    let gap = parse(&a["next_fetch"]).duration_since(parse(&a["last_attempt"])).unwrap();
    assert!((Duration::from_secs(55)..=Duration::from_secs(70)).contains(&gap), "first backoff is a minute: {gap:?}");
    // The server comes back on the same port.
    let fake = FakePop3::start(Script {
        port,
        messages: vec![FakeMessage { uidl: Some("a".into()), data: b"Subject: back\r\n\r\nhi\r\n".to_vec() }],
        ..Script::default()
    });
    b.run(&["fetch", "Fake"]).expect(0);
    let j = b.status_json();
    assert_eq!(account(&j, "Fake")["state"], "active", "{j}");
    assert_eq!(account(&j, "Fake")["messages"], 1);
    assert_eq!(fake.sessions(), 1);
}

#[test]
fn login_delay_is_honoured_and_fetch_goes_through_the_daemon() {
    let fake = FakePop3::start(Script {
        messages: vec![FakeMessage { uidl: Some("a".into()), data: b"Subject: one\r\n\r\nhi\r\n".to_vec() }],
        extra_capa: vec!["LOGIN-DELAY 900".into()],
        ..Script::default()
    });
    let b = Bridge::with_listeners();
    b.add_pop_account(&PopAccount::fake(fake.port()), &["--no-test"]).expect(0);
    let _daemon = b.daemon();
    let parse = |v: &serde_json::Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    // The first fetch is over once the next one is planned (the schedule writes next_fetch after
    // the cycle: until then it still holds the first one's "now").
    wait_until("the first fetch", Duration::from_secs(20), || {
        let j = b.status_json();
        let a = account(&j, "Fake");
        a["messages"] == 1
            && a["last_fetch"].is_string()
            && a["next_fetch"].is_string()
            && parse(&a["next_fetch"]) > parse(&a["last_fetch"])
    });
    let j = b.status_json();
    let a = account(&j, "Fake");
    let gap = parse(&a["next_fetch"]).duration_since(parse(&a["last_fetch"])).unwrap();
    assert!(gap >= Duration::from_secs(900), "the 5-minute interval yields to LOGIN-DELAY 900: {gap:?}");
    // `popbridge fetch` while the daemon runs: the daemon fetches, in one session.
    assert_eq!(fake.sessions(), 1);
    fake.add_messages(vec![FakeMessage { uidl: Some("b".into()), data: b"Subject: two\r\n\r\nhi\r\n".to_vec() }]);
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains("1 new message(s)") && r.stdout.contains("by the running daemon"), "{}", r.stdout);
    assert_eq!(fake.sessions(), 2, "one POP session, not two");
}

#[test]
fn the_demo_serves_sample_mail_and_cleans_up() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_popbridge"))
        .arg("demo")
        .env_remove("POPBRIDGE_CONFIG")
        .env_remove("POPBRIDGE_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    let mut port = None;
    let t = Instant::now();
    while port.is_none() {
        assert!(t.elapsed() < Duration::from_secs(60), "no IMAP line: {text}");
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut out, &mut line).unwrap() == 0 {
            panic!("the demo ended: {text}");
        }
        text.push_str(&line);
        if let Some(rest) = line.strip_prefix("IMAP  127.0.0.1:") {
            assert!(line.contains("user demo  password demo"), "{line}");
            port = rest.split_whitespace().next().and_then(|p| p.parse::<u16>().ok());
        }
    }
    let dir = text
        .lines()
        .find_map(|l| l.strip_prefix("Created a throwaway config and store in "))
        .map(|d| d.trim_end_matches('.').to_string())
        .unwrap();
    let script = format!(
        "import imaplib\nM = imaplib.IMAP4('127.0.0.1', {})\nM.login('demo', 'demo')\ntyp, data = M.select('Demo')\nprint('EXISTS', int(data[0]))\ntyp, data = M.fetch('1:*', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')\nprint('FETCHED', sum(1 for x in data if isinstance(x, tuple)))\nM.logout()\n",
        port.unwrap()
    );
    let py = Command::new("python3").args(["-c", &script]).output().unwrap();
    let s = String::from_utf8_lossy(&py.stdout);
    let n: usize = s.lines().find_map(|l| l.strip_prefix("EXISTS ")).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(n >= 10, "the demo account holds sample mail: {s}{}", String::from_utf8_lossy(&py.stderr));
    assert!(s.contains(&format!("FETCHED {n}")), "{s}");
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!std::path::Path::new(&dir).exists(), "the throwaway state {dir} is removed");
}

#[test]
fn client_config_writes_thunderbird_autoconfig() {
    let b = Bridge::with_listeners();
    b.add_account("Work", 995, "implicit", "me", "pw", &["--no-test"]).expect(0);
    let dir = b.dir.path().join("autoconfig");
    let r = b.run(&["client-config", "--autoconfig", &dir.display().to_string()]).expect(0);
    assert!(r.stdout.contains("SHA-256"), "{}", r.stdout);
    let (imap, imaps) = b.ports();
    let (sub, subs) = b.smtp_ports();
    let check = r#"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "clientConfig", root.tag
p = root.find("emailProvider")
for s in p.findall("incomingServer") + p.findall("outgoingServer"):
    print(s.get("type"), s.findtext("hostname"), s.findtext("port"), s.findtext("socketType"), s.findtext("username"))
"#;
    for (file, user) in [("config-v1.1.xml", "me"), ("config-v1.1-Work.xml", "me+Work")] {
        let out = Command::new("python3").args(["-c", check]).arg(dir.join(file)).output().unwrap();
        assert!(out.status.success(), "{file} is well-formed XML: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        for line in [
            format!("imap 127.0.0.1 {imaps} SSL {user}"),
            format!("imap 127.0.0.1 {imap} plain {user}"),
            format!("smtp 127.0.0.1 {subs} SSL {user}"),
            format!("smtp 127.0.0.1 {sub} plain {user}"),
        ] {
            assert!(text.lines().any(|l| l == line), "{file}: {line} missing in\n{text}");
        }
    }
}

#[test]
fn the_systemd_user_unit_verifies() {
    let home = tempfile::tempdir().unwrap();
    let bin = home.path().join(".cargo/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_popbridge"), bin.join("popbridge")).unwrap();
    let runtime = home.path().join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/popbridge.service");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--user", unit])
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .expect("systemd-analyze (apt-get install -y systemd)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How long `popbridge fetch` waits for a daemon that sends nothing at all
/// (`control::SILENCE_LIMIT`; the daemon sends a keep-alive every second meanwhile).
const CONTROL_SILENCE_LIMIT: Duration = Duration::from_secs(10);

/// A daemon on the fake server's account Fake, its first (scheduled) fetch done.
fn daemon_on(fake: &FakePop3) -> (Bridge, crate::util::Daemon) {
    let b = Bridge::with_listeners();
    b.add_pop_account(&PopAccount::fake(fake.port()), &["--no-test"]).expect(0);
    let d = b.daemon();
    b.run(&["fetch"]).expect(0);
    (b, d)
}

/// Issue 12, item 5: a daemon that does not answer (here SIGSTOP) makes `popbridge fetch` give up
/// after the bound, saying what to do; once continued, fetching through it works again.
#[test]
fn fetch_through_a_stopped_daemon_gives_up_and_works_again_after_sigcont() {
    let fake = FakePop3::start(Script {
        messages: vec![FakeMessage::new("a", b"Subject: one\r\n\r\nhi\r\n".to_vec())],
        ..Script::default()
    });
    let (b, daemon) = daemon_on(&fake);
    let pid = daemon.child.id().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().expect("kill -STOP");
    let t = Instant::now();
    let r = b.run_for(&["fetch"], CONTROL_SILENCE_LIMIT * 6);
    let took = t.elapsed();
    Command::new("kill").args(["-CONT", &pid]).status().expect("kill -CONT");
    assert!(r.code > 0, "gave up by itself with an error (exit {}): {}{}", r.code, r.stdout, r.stderr);
    assert!(
        took >= CONTROL_SILENCE_LIMIT - Duration::from_secs(1)
            && took < CONTROL_SILENCE_LIMIT + Duration::from_secs(10),
        "gave up after the bound, not before: {took:?}"
    );
    for what in ["stopped or hung", &format!("kill -CONT {pid}"), "systemctl --user restart popbridge"] {
        assert!(r.stderr.contains(what), "the message says {what:?}: {}", r.stderr);
    }
    // Continued: the daemon answers again. (It also carries out the request it found queued,
    // which may be the one that fetches the new message.)
    fake.add_messages(vec![FakeMessage::new("b", b"Subject: two\r\n\r\nhi\r\n".to_vec())]);
    let r = b.run_for(&["fetch"], Duration::from_secs(30));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("by the running daemon"), "{}", r.stdout);
    assert_eq!(account(&b.status_json(), "Fake")["messages"], 2, "both messages stored");
}

/// A live daemon busy with an import longer than the bound: its keep-alives keep the client
/// waiting, and the fetch ends normally.
#[test]
fn a_slow_import_through_the_daemon_does_not_time_out() {
    let fake = FakePop3::start(Script::default());
    let (b, _daemon) = daemon_on(&fake);
    let n = 30;
    fake.add_messages(
        (0..n)
            .map(|i| FakeMessage::new(&format!("s{i}"), format!("Subject: slow {i}\r\n\r\nhi\r\n").into_bytes()))
            .collect(),
    );
    // About 40 answers (greeting, login, listings, 30 RETR, QUIT), 400 ms before each.
    fake.set_faults(vec![crate::util::fake_pop3::Fault::SlowResponses { ms: 400 }]);
    let t = Instant::now();
    let r = b.run_for(&["fetch"], CONTROL_SILENCE_LIMIT * 6);
    let took = t.elapsed();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&format!("{n} new message(s)")), "{}", r.stdout);
    assert!(took > CONTROL_SILENCE_LIMIT + Duration::from_secs(2), "the import outlasted the bound: {took:?}");
}
