//! What SECURITY.md and the README promise about secrets and the local listeners, checked from the
//! outside: failed logins on the local IMAP and SMTP listeners are answered with a growing delay;
//! no password or token reaches the logs at trace level, in clear or base64; the files and the
//! control socket popbridge creates are private even under a permissive umask.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::accounts::{PopAccount, init_args, strs};
use crate::util::corpus::corpus;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::fake_pop3::{FakeMessage, FakePop3, Script, b64encode, mail};
use crate::util::imap_clients::{Raw, Security, Target};
use crate::util::{Bridge, Daemon, LOCAL_PASSWORD, account, free_port, mode, wait_until};

/// A line-based SMTP client for the local submission listener (plain, loopback).
struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Smtp {
    /// Connects, reads the greeting and says EHLO.
    fn connect(port: u16) -> Smtp {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("SMTP on {port}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let writer = s.try_clone().expect("clone");
        let mut c = Smtp { reader: BufReader::new(s), writer };
        let greeting = c.reply();
        assert!(greeting.starts_with("220"), "{greeting}");
        let ehlo = c.cmd("EHLO client.example");
        assert!(ehlo.starts_with("250") && ehlo.contains("AUTH"), "{ehlo}");
        c
    }

    /// One reply, all its lines (until `NNN `).
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("SMTP reply");
            assert!(n > 0, "the SMTP server closed the connection after {all:?}");
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).expect("SMTP send");
        self.reply()
    }
}

/// Times `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

/// The README's "failed logins are answered with a growing delay": the first refusal comes at
/// once, each later one at least as late as the throttle's next step (1, 2, 4 s). A server's sleep
/// is a lower bound whatever the load, so the floors cannot be met by chance.
fn assert_growing(what: &str, delays: &[Duration]) {
    let secs: Vec<f64> = delays.iter().map(Duration::as_secs_f64).collect();
    assert!(secs[0] < 0.9, "{what}: the first wrong password is answered at once: {secs:?}");
    for (i, floor) in [(1, 1.0), (2, 2.0), (3, 4.0)] {
        assert!(secs[i] >= floor - 0.05, "{what}: failure {} waits at least {floor} s: {secs:?}", i + 1);
    }
}

#[test]
fn failed_imap_logins_are_answered_with_a_growing_delay() {
    let b = Bridge::with_listeners();
    let _daemon = b.daemon();
    let t = b.target(Security::Plain, "me");
    // A guesser that reconnects for every try is slowed down all the same.
    let delays: Vec<Duration> = (0..4)
        .map(|i| {
            let mut r = Raw::connect(&t);
            let (d, reply) = timed(|| r.cmd("l1", &format!("LOGIN me wrong-{i}")));
            assert!(reply.no(), "try {i}: {:?}", reply.lines);
            d
        })
        .collect();
    assert_growing("IMAP LOGIN", &delays);
    let mut r = Raw::connect(&t);
    let ok = r.cmd("l2", &format!("AUTHENTICATE PLAIN {}", b64encode(format!("\0me\0{LOCAL_PASSWORD}").as_bytes())));
    assert!(ok.ok(), "the right password still logs in: {:?}", ok.lines);
    r.logout();
}

#[test]
fn failed_smtp_logins_are_answered_with_a_growing_delay() {
    let b = Bridge::with_listeners();
    let _daemon = b.daemon();
    let (port, _) = b.smtp_ports();
    let delays: Vec<Duration> = (0..4)
        .map(|i| {
            let mut c = Smtp::connect(port);
            let (d, reply) =
                timed(|| c.cmd(&format!("AUTH PLAIN {}", b64encode(format!("\0me\0wrong-{i}").as_bytes()))));
            assert!(reply.starts_with("535"), "try {i}: {reply}");
            d
        })
        .collect();
    assert_growing("SMTP AUTH", &delays);
    let mut c = Smtp::connect(port);
    let reply = c.cmd(&format!("AUTH PLAIN {}", b64encode(format!("\0me\0{LOCAL_PASSWORD}").as_bytes())));
    assert!(reply.starts_with("235"), "the right password still logs in: {reply}");
}

/// Every form in which `secret` could reach a log: as it is, and base64-encoded alone or inside the
/// SASL message that carries it.
fn forms(secret: &str, sasl: &[String]) -> Vec<String> {
    let mut v = vec![secret.to_string(), b64encode(secret.as_bytes())];
    v.extend(sasl.iter().map(|s| b64encode(s.as_bytes())));
    v
}

fn assert_absent(what: &str, log: &str, secrets: &[(&str, Vec<String>)]) {
    for (name, forms) in secrets {
        for f in forms {
            assert!(!log.contains(f.as_str()), "{what}: {name} appears in the log as {f:?}:\n{log}");
        }
    }
}

#[test]
fn secrets_never_reach_the_logs_at_trace_level() {
    // Three POP users, one login method each, and an OAuth2 token from a password command.
    let (alice_pw, bob_pw, carol_pw) = ("Alice-Secret-4711", "Bob-Secret-0815", "Carol-Secret-2342");
    let d = Dovecot::start(DovecotOpts {
        users: vec![
            ("alice".into(), alice_pw.into()),
            ("bob".into(), bob_pw.into()),
            ("carol".into(), carol_pw.into()),
        ],
        ..DovecotOpts::default()
    });
    for u in ["alice", "bob", "carol"] {
        d.deliver(u, &corpus(2, 61).messages);
    }
    let token = "ya29.Token-Secret-9876";
    let fake = FakePop3::start(Script {
        messages: vec![FakeMessage::new("t1", mail("oauth", "hi"))],
        pass: token.into(),
        sasl: vec!["XOAUTH2".into()],
        ..Script::default()
    });
    let b = Bridge::with_listeners();
    let ca = d.ca_pem_path.display().to_string();
    for (name, user, pw, auth) in
        [("A", "alice", alice_pw, "plain"), ("B", "bob", bob_pw, "user"), ("C", "carol", carol_pw, "login")]
    {
        b.add_account(name, d.pop3s_port, "implicit", user, pw, &["--ca-file", &ca, "--auth", auth, "--no-test"])
            .expect(0);
    }
    let command = format!("printf '{token}\\n'");
    let t = PopAccount { name: "T", password_command: Some(&command), ..PopAccount::fake(fake.port()) };
    b.add_pop_account(&t, &["--auth", "xoauth2", "--no-test"]).expect(0);
    let wrong_local = "Wrong-Local-Secret-55";
    let secrets: Vec<(&str, Vec<String>)> = vec![
        ("alice's POP password", forms(alice_pw, &[format!("\0alice\0{alice_pw}")])),
        ("bob's POP password", forms(bob_pw, &[])),
        ("carol's POP password", forms(carol_pw, &[])),
        ("the OAuth2 token", forms(token, &[format!("user=u\x01auth=Bearer {token}\x01\x01")])),
        ("the local password", forms(LOCAL_PASSWORD, &[format!("\0me\0{LOCAL_PASSWORD}")])),
        ("a wrong local password", forms(wrong_local, &[format!("\0me\0{wrong_local}")])),
    ];
    // `popbridge --log-level trace fetch`, without a daemon: every account logs in.
    let r = b.run(&["--log-level", "trace", "fetch"]).expect(0);
    assert!(r.stdout.matches("new message(s)").count() == 4, "{}", r.stdout);
    assert!(r.stderr.contains("TRACE"), "the fetch logged at trace level: {}", r.stderr);
    assert_absent("fetch --log-level trace", &format!("{}{}", r.stdout, r.stderr), &secrets);
    // The daemon with RUST_LOG=trace: new mail everywhere, which it fetches at once; then clients
    // log in every way they can.
    for u in ["alice", "bob", "carol"] {
        d.deliver(u, &corpus(1, 62).messages);
    }
    fake.add_messages(vec![FakeMessage::new("t2", mail("oauth 2", "hi"))]);
    b.sql("UPDATE accounts SET last_attempt = NULL;");
    let mut daemon = b.daemon_with_env(&[("RUST_LOG", "trace")]);
    wait_until("the daemon's fetches", Duration::from_secs(30), || {
        let j = b.status_json();
        ["A", "B", "C", "T"].iter().all(|n| account(&j, n)["messages"] == 3 - u64::from(*n == "T"))
    });
    let t = b.target(Security::Plain, "me");
    // IMAP: LOGIN, AUTHENTICATE PLAIN with and without SASL-IR, AUTHENTICATE LOGIN, a wrong password.
    Raw::connect_login(&t).logout();
    let plain = b64encode(format!("\0me\0{LOCAL_PASSWORD}").as_bytes());
    let mut r = Raw::connect(&t);
    r.cmd("a1", &format!("AUTHENTICATE PLAIN {plain}")).assert_ok("SASL-IR");
    r.logout();
    let mut r = Raw::connect(&t);
    r.send(b"a2 AUTHENTICATE PLAIN\r\n");
    assert!(r.read_line().starts_with('+'), "a continuation");
    r.send(format!("{plain}\r\n").as_bytes());
    r.read_until_tagged("a2").assert_ok("PLAIN without SASL-IR");
    r.logout();
    let mut r = Raw::connect(&t);
    r.send(b"a3 AUTHENTICATE LOGIN\r\n");
    for answer in ["me", LOCAL_PASSWORD] {
        assert!(r.read_line().starts_with('+'), "a continuation");
        r.send(format!("{}\r\n", b64encode(answer.as_bytes())).as_bytes());
    }
    r.read_until_tagged("a3").assert_ok("AUTHENTICATE LOGIN");
    r.logout();
    let mut r = Raw::connect(&t.with_login("me", wrong_local));
    assert!(r.cmd("a4", &format!("LOGIN me {wrong_local}")).no());
    // SMTP: AUTH PLAIN, AUTH LOGIN, a wrong password.
    let (port, _) = b.smtp_ports();
    let mut c = Smtp::connect(port);
    assert!(c.cmd(&format!("AUTH PLAIN {plain}")).starts_with("235"));
    let mut c = Smtp::connect(port);
    assert!(c.cmd("AUTH LOGIN").starts_with("334"));
    assert!(c.cmd(&b64encode(b"me")).starts_with("334"));
    assert!(c.cmd(&b64encode(LOCAL_PASSWORD.as_bytes())).starts_with("235"));
    let mut c = Smtp::connect(port);
    assert!(c.cmd(&format!("AUTH PLAIN {}", b64encode(format!("\0me\0{wrong_local}").as_bytes()))).starts_with("535"));
    drop(c);
    // The POP accounts once more, through the daemon.
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains("by the running daemon"), "{}", r.stdout);
    let status = daemon.terminate();
    assert!(status.success(), "{status}");
    let log = daemon.log();
    // The log is at trace level and saw what happened (so an empty log cannot pass).
    for seen in ["imap: failed login", "smtp: failed login", "TRACE", "DEBUG"] {
        assert!(log.contains(seen), "the daemon's trace log mentions {seen:?}:\n{log}");
    }
    assert_absent("the daemon's trace log", &log, &secrets);
}

/// Runs popbridge under `umask 000`, so every mode it ends up with is its own doing.
fn open_umask(b: &Bridge, args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_popbridge"))
        .args(args)
        .env("POPBRIDGE_CONFIG", &b.config)
        .env("POPBRIDGE_DATA_DIR", &b.data)
        .env_remove("RUST_LOG");
    c
}

fn run_open_umask(b: &Bridge, args: &[&str], stdin: &str) {
    let mut child = open_umask(b, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn popbridge");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_mode(p: &Path, want: u32) {
    assert_eq!(mode(p), want, "{} is {:o}, not {want:o}", p.display(), mode(p));
}

#[test]
fn files_and_the_control_socket_are_private_even_under_a_permissive_umask() {
    let fake =
        FakePop3::start(Script { messages: vec![FakeMessage::new("m1", mail("one", "hi"))], ..Script::default() });
    let b = Bridge::uninitialised();
    let (imap, sub) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    run_open_umask(&b, &init_args([&imap, "off", &sub, "off"]), LOCAL_PASSWORD);
    // `init`: the config directory and file, the data directory, the store, the key.
    let config_dir = b.config.parent().expect("config dir").to_path_buf();
    for (p, want) in [
        (config_dir.clone(), 0o700),
        (b.config.clone(), 0o600),
        (b.data.clone(), 0o700),
        (b.store_path(), 0o600),
        (b.data.join("tls"), 0o700),
        (b.data.join("tls/key.pem"), 0o600),
    ] {
        assert_mode(&p, want);
    }
    // `account add` rewrites the config: still private.
    let work = PopAccount { name: "Work", password_command: None, ..PopAccount::fake(fake.port()) };
    run_open_umask(&b, &strs(&work.args(&["--no-test"])), "p");
    assert_mode(&b.config, 0o600);
    // The daemon: the control socket, the store's WAL and shared-memory files, the lock directory.
    let log = b.dir.path().join("daemon.log");
    let f = std::fs::File::create(&log).expect("log");
    let child = open_umask(&b, &["run"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(f).spawn().expect("run");
    let daemon = Daemon { child, imap: b.ports().0, imaps: 0, log };
    wait_until("the first fetch", Duration::from_secs(30), || {
        b.data.join("control.sock").exists() && account(&b.status_json(), "Work")["messages"] == 1
    });
    let (wal, shm) = (b.data.join("store.sqlite-wal"), b.data.join("store.sqlite-shm"));
    assert!(wal.exists() && shm.exists(), "the daemon has the store open in WAL mode: {}", daemon.log());
    for (p, want) in [
        (b.data.join("control.sock"), 0o600),
        (b.data.clone(), 0o700),
        (wal, 0o600),
        (shm, 0o600),
        (b.data.join("locks"), 0o700),
        (b.config.clone(), 0o600),
        (config_dir, 0o700),
    ] {
        assert_mode(&p, want);
    }
    // The control socket answers (it is the live one, not a leftover).
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains("by the running daemon"), "{}", r.stdout);
    let t = Target::new(daemon.imap, Security::Plain, None, "me", LOCAL_PASSWORD);
    Raw::connect_login(&t).logout();
}
