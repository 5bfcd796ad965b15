//! `popbridge run` as a user service: the schedule, SIGHUP, SIGTERM in the middle of a fetch,
//! account health (disable after failed logins, notices and ALERTs in the client, recovery),
//! backoff, LOGIN-DELAY, `fetch` through the daemon, the demo, client-config and the systemd unit.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::corpus::corpus;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::fake_pop3::{FakeMessage, FakePop3, Script};
use crate::util::imap_clients::{Raw, Security};
use crate::util::{Bridge, account, as_pop3_sends, free_port, sorted, wait_until};

fn hup(pid: u32) {
    Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
}

#[test]
fn schedule_reload_and_sigterm_mid_fetch_lose_nothing() {
    let d = Dovecot::start(DovecotOpts::default());
    let work = corpus(20, 41);
    d.deliver("alice", &work.messages);
    let home = corpus(600, 42);
    d.deliver("bob", &home.messages);
    let b = Bridge::with_listeners();
    let ca = d.ca_pem_path.display().to_string();
    b.add_account("Work", d.pop3s_port, "implicit", "alice", "alice-pw", &["--ca-file", &ca, "--no-test"]).expect(0);
    let mut daemon = b.daemon();
    // The schedule fetches a new account at once.
    wait_until("the scheduled fetch", Duration::from_secs(30), || account(&b.status_json(), "Work")["messages"] == 20);
    assert!(account(&b.status_json(), "Work")["next_fetch"].is_string(), "the next fetch is planned");
    // A new account and SIGHUP: fetched without a restart.
    b.add_account("Home", d.pop3s_port, "implicit", "bob", "bob-pw", &["--ca-file", &ca, "--no-test"]).expect(0);
    hup(daemon.child.id());
    wait_until("the first messages of Home", Duration::from_secs(30), || b.messages("Home").len() >= 30);
    // SIGTERM in the middle of the import: a quick, clean exit.
    let t = Instant::now();
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status}: {}", daemon.log());
    assert!(t.elapsed() < Duration::from_secs(10), "stopped in {:?}", t.elapsed());
    let partial = b.messages("Home").len();
    drop(daemon);
    // Restart: the import resumes; every message exactly once.
    let _daemon = b.daemon();
    wait_until("the rest of Home", Duration::from_secs(60), || b.messages("Home").len() >= 600);
    std::thread::sleep(Duration::from_millis(500));
    let want = sorted(home.messages.iter().map(|m| as_pop3_sends(m)).collect());
    assert_eq!(sorted(b.messages("Home")), want, "after {partial} before SIGTERM: nothing lost, nothing twice");
    assert_eq!(b.messages("Work").len(), 20);
}

#[test]
fn a_changed_password_disables_the_account_and_tells_the_user() {
    let d = Dovecot::start(DovecotOpts::default());
    d.deliver("alice", &corpus(3, 43).messages);
    let b = Bridge::with_listeners();
    let ca = d.ca_pem_path.display().to_string();
    b.add_account("Work", d.pop3s_port, "implicit", "alice", "alice-pw", &["--ca-file", &ca, "--no-test"]).expect(0);
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
    // Disabled: a client looking at the account's mailbox does not make popbridge log in again.
    let logins = || d.log().lines().filter(|l| l.contains("pop3-login") && l.contains("user=<alice>")).count();
    let before = logins();
    assert!(before >= 4, "Dovecot logged the first login and the three refused ones: {}", d.log());
    let mut w = Raw::connect_login(&b.target(Security::Plain, "me"));
    w.cmd("w1", "SELECT Work").assert_ok("select");
    w.cmd("w2", "NOOP").assert_ok("noop");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(logins(), before, "no further logins while disabled");
    // The user updates the password: the account is active again and fetches.
    d.deliver("alice", &corpus(2, 44).messages);
    b.run_stdin(&["account", "set-password", "Work", "--password-stdin"], "changed-pw").expect(0);
    hup(daemon.child.id());
    std::thread::sleep(Duration::from_millis(500));
    b.run(&["fetch", "Work"]).expect(0);
    let j = b.status_json();
    assert_eq!(account(&j, "Work")["state"], "active", "{j}");
    assert_eq!(account(&j, "Work")["messages"], 5);
    let f = session.cmd("s4", "NOOP");
    assert!(f.lines.iter().any(|l| l.contains("[ALERT]") && l.contains("works again")), "{:?}", f.lines);
}

#[test]
fn a_refused_port_backs_off_and_recovers() {
    let port = free_port();
    let b = Bridge::with_listeners();
    b.run(&[
        "account",
        "add",
        "--name",
        "Fake",
        "--email",
        "u@example.com",
        "--pop-host",
        "127.0.0.1",
        "--pop-port",
        &port.to_string(),
        "--pop-tls",
        "plain",
        "--pop-user",
        "u",
        "--password-command",
        "echo p",
        "--no-test",
    ])
    .expect(0);
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
    b.run(&[
        "account",
        "add",
        "--name",
        "Fake",
        "--email",
        "u@example.com",
        "--pop-host",
        "127.0.0.1",
        "--pop-port",
        &fake.port().to_string(),
        "--pop-tls",
        "plain",
        "--pop-user",
        "u",
        "--password-command",
        "echo p",
        "--no-test",
    ])
    .expect(0);
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
    let port = fake.port().to_string();
    b.run(&[
        "account",
        "add",
        "--name",
        "Fake",
        "--email",
        "u@example.com",
        "--pop-host",
        "127.0.0.1",
        "--pop-port",
        &port,
        "--pop-tls",
        "plain",
        "--pop-user",
        "u",
        "--password-command",
        "echo p",
        "--no-test",
    ])
    .expect(0);
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
