//! Test helpers: a popbridge instance in a temp dir (`Bridge`), and the peers it talks to.
#![allow(dead_code)]

pub mod accept;
pub mod accounts;
pub mod certs;
pub mod checks;
pub mod corpus;
pub mod crash_points;
pub mod dns_stub;
pub mod dovecot;
pub mod fake_pop3;
pub mod fake_sink;
pub mod http_stub;
pub mod imap_clients;
pub mod imap_state;
pub mod loopback;
pub mod oauth;
pub mod pop_proxy;
pub mod rng;
pub mod smtp_upstream;
pub mod terminal;
pub mod upstream;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const LOCAL_PASSWORD: &str = "local-secret-pw";

/// The binary under test: this build's, or `POPBRIDGE_TEST_BIN` (to run a test against another
/// build, e.g. the commit before a fix, and see it fail).
pub fn popbridge_bin() -> PathBuf {
    std::env::var_os("POPBRIDGE_TEST_BIN").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_BIN_EXE_popbridge").into())
}

/// The result of one popbridge command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    /// Panics with the output unless the exit code is `code`.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code {} (wanted {code})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// A popbridge setup in its own temporary directory: config, data dir, store.
pub struct Bridge {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub data: PathBuf,
}

impl Bridge {
    /// `init` with a known local password.
    pub fn new() -> Bridge {
        let b = Bridge::uninitialised();
        b.run_stdin(&["init", "--password-stdin", "--user", "me"], LOCAL_PASSWORD).expect(0);
        b
    }

    pub fn uninitialised() -> Bridge {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config/config.toml");
        let data = dir.path().join("data");
        Bridge { dir, config, data }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(popbridge_bin());
        c.env("POPBRIDGE_CONFIG", &self.config)
            .env("POPBRIDGE_DATA_DIR", &self.data)
            .env_remove("RUST_LOG")
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("run popbridge"))
    }

    /// Runs a command that may not end by itself (a daemon that should refuse to start, a client
    /// that should give up): killed after `deadline` and then reported with exit code -1.
    pub fn run_for(&self, args: &[&str], deadline: std::time::Duration) -> Run {
        let out = tempfile::NamedTempFile::new_in(self.dir.path()).expect("stdout file");
        let err = tempfile::NamedTempFile::new_in(self.dir.path()).expect("stderr file");
        let mut child = self
            .cmd(args)
            .stdout(out.reopen().expect("stdout"))
            .stderr(err.reopen().expect("stderr"))
            .spawn()
            .expect("spawn popbridge");
        let t = std::time::Instant::now();
        let code = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s.code().unwrap_or(-1);
            }
            if t.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break -1;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        };
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        Run { code, stdout: read(out.path()), stderr: read(err.path()) }
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn popbridge");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
        Run::from(child.wait_with_output().expect("wait popbridge"))
    }

    /// `account add` with flags; `extra` adds or overrides flags (e.g. --delete after-fetch, --no-test).
    /// Adds account Work (me@work.example): POP from the plain fake server on `pop_port`, mail
    /// sent through `up` (implicit TLS, AUTH as me@work.example with `smtp_password`, its CA trusted).
    pub fn add_account_sending_through(&self, pop_port: u16, up: &smtp_upstream::Upstream, smtp_password: &str) {
        let (sp, pw_cmd) = (up.port.to_string(), format!("echo {smtp_password}"));
        let work =
            accounts::PopAccount { name: "Work", email: "me@work.example", ..accounts::PopAccount::fake(pop_port) };
        let smtp = [
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            &sp,
            "--smtp-tls",
            "implicit",
            "--smtp-user",
            "me@work.example",
            "--smtp-password-command",
            &pw_cmd,
            "--no-test",
        ];
        self.add_pop_account(&work, &smtp).expect(0);
        self.append_config(&format!("ca_file = \"{}\"\n", up.ca_pem_path.display()));
    }

    /// `account add` of `name` ({user}@example.com) on 127.0.0.1:`port`, the password on stdin.
    pub fn add_account(&self, name: &str, port: u16, tls: &str, user: &str, password: &str, extra: &[&str]) -> Run {
        let email = format!("{user}@example.com");
        let account = accounts::PopAccount { name, email: &email, port, tls, user, password_command: None };
        self.run_stdin(&accounts::strs(&account.args(extra)), password)
    }

    /// Appends raw TOML to the config file (keys for the last [account.pop], say).
    pub fn append_config(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new().append(true).open(&self.config).expect("open config");
        f.write_all(text.as_bytes()).expect("append config");
    }

    pub fn store_path(&self) -> PathBuf {
        self.data.join("store.sqlite")
    }

    pub fn store(&self) -> popbridge::store::Store {
        popbridge::store::Store::open(&self.store_path()).expect("open store")
    }

    /// The raw messages of an account's mailbox, in UID order.
    pub fn messages(&self, mailbox: &str) -> Vec<Vec<u8>> {
        self.store().mailbox_bodies(mailbox).expect("bodies").into_iter().map(|(_, b)| b).collect()
    }

    pub fn status_json(&self) -> serde_json::Value {
        let r = self.run(&["status", "--json"]).expect(0);
        serde_json::from_str(&r.stdout).expect("status --json is JSON")
    }

    /// Runs SQL against the store (to simulate time passing, say).
    pub fn sql(&self, sql: &str) {
        let c = rusqlite::Connection::open(self.store_path()).expect("open");
        c.execute_batch(sql).expect("sql");
    }
}

/// What Dovecot sends for a message file: bare LF line ends become CRLF, and a missing final line
/// end is added. (RFC 1939 servers transmit CRLF lines.)
pub fn as_pop3_sends(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    // Line by line with memchr (whole slices copied): the crash tests call this on every check.
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', raw) {
        out.extend_from_slice(&raw[start..nl]);
        if nl == 0 || raw[nl - 1] != b'\r' {
            out.push(b'\r');
        }
        out.push(b'\n');
        start = nl + 1;
    }
    out.extend_from_slice(&raw[start..]);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Sorted copies, to compare collections of messages regardless of order.
pub fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

/// A loopback port that was free a moment ago (bound, then released). Racy: another process may
/// take it before the caller binds it. Kept for callers that have not moved yet: a port that must
/// refuse connections is [`refused_port`]; a listener binds port 0 and reports what it got (the
/// fake servers, the upstream SMTP peer) or retries with fresh ports when its start reports
/// "in use" (Dovecot, [`Bridge::daemon`]).
pub fn free_port() -> u16 {
    fresh_ports::<1>()[0]
}

/// `N` distinct loopback ports that were free a moment ago (all bound at once, then released):
/// candidates for a server that retries with new ones when they turn out to be taken.
pub fn fresh_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> =
        (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port")).collect();
    std::array::from_fn(|i| held[i].local_addr().expect("local addr").port())
}

/// A loopback port bound by this test and never listened on: connecting to it is refused
/// (`ECONNREFUSED`), and for as long as the value lives nobody else can bind it (no
/// `SO_REUSEADDR`, so not even a listener that sets it, like tokio's) nor be handed it as the
/// local port of an outgoing connection. Keep it alive while the port must refuse.
pub struct RefusedPort {
    // Only held: the bound socket is the reservation.
    _socket: socket2::Socket,
    pub port: u16,
}

impl RefusedPort {
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A port on 127.0.0.1 that refuses connections for as long as the returned value lives.
pub fn refused_port() -> RefusedPort {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("create a TCP socket");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    socket.bind(&any.into()).expect("bind a loopback port");
    let port = socket.local_addr().expect("local addr").as_socket().expect("an IP address").port();
    RefusedPort { _socket: socket, port }
}

/// How often [`Bridge::daemon`] starts the daemon again, with fresh listener ports, when a port
/// it was given turned out to be taken (another test's server, an outgoing connection's port).
pub const DAEMON_START_ATTEMPTS: usize = 5;

/// What `popbridge run` prints (to stderr, our log) once it listens on every port and its
/// control socket: `src/app.rs`.
const DAEMON_READY: &str = "fetching on schedule";
/// What it prints when a listener address is taken (`src/app.rs`, `bind`).
const DAEMON_PORT_IN_USE: &str = "is in use";

/// A running `popbridge run`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    pub imap: u16,
    pub imaps: u16,
    pub log: PathBuf,
}

impl Daemon {
    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let t = std::time::Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            if t.elapsed() > std::time::Duration::from_secs(15) {
                let _ = self.child.kill();
                return self.child.wait().expect("wait");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

impl Bridge {
    /// `init` with IMAP listeners on free ports (so tests can run daemons side by side).
    pub fn with_listeners() -> Bridge {
        let b = Bridge::uninitialised();
        b.init_with_listeners();
        b
    }

    /// `init` of an uninitialised bridge with IMAP and SMTP listeners on free ports (to prepare
    /// its data directory first, a mount say).
    pub fn init_with_listeners(&self) {
        let [imap, imaps, sub, subs] = fresh_ports::<4>().map(|p| format!("127.0.0.1:{p}"));
        self.init_listening_on([&imap, &imaps, &sub, &subs]);
    }

    /// Gives every listener in `[local]` a fresh port (the config file is edited in place,
    /// comments and mode kept). [`Bridge::daemon`] does this when a port was taken.
    pub fn fresh_listener_ports(&self) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let mut doc: toml_edit::DocumentMut = text.parse().expect("the config is TOML");
        let keys = ["imap", "imaps", "submission", "submissions"];
        let ports = fresh_ports::<4>();
        let local = doc["local"].as_table_like_mut().expect("a [local] table");
        for (key, port) in keys.iter().zip(ports) {
            if let Some(item) = local.get_mut(key)
                && let Some(addr) = item.as_str()
            {
                let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or("127.0.0.1").to_string();
                *item = toml_edit::value(format!("{host}:{port}"));
            }
        }
        std::fs::write(&self.config, doc.to_string()).expect("write config");
    }

    pub fn ports(&self) -> (u16, u16) {
        let c = popbridge::config::load(&self.config).expect("config");
        (c.local.imap.map(|a| a.port()).unwrap_or(0), c.local.imaps.map(|a| a.port()).unwrap_or(0))
    }

    pub fn smtp_ports(&self) -> (u16, u16) {
        let c = popbridge::config::load(&self.config).expect("config");
        (c.local.submission.map(|a| a.port()).unwrap_or(0), c.local.submissions.map(|a| a.port()).unwrap_or(0))
    }

    /// Starts `popbridge run` and waits until it says it is ready and its ports accept
    /// connections. If a listener port was taken meanwhile (the daemon exits with "… is in use"),
    /// it starts again on fresh ports written into the config, up to [`DAEMON_START_ATTEMPTS`]
    /// times: read the ports (`ports()`, `smtp_ports()`, `target()`) after this returns.
    pub fn daemon(&self) -> Daemon {
        self.daemon_with_env(&[])
    }

    pub fn daemon_with_env(&self, env: &[(&str, &str)]) -> Daemon {
        let log = self.dir.path().join("daemon.log");
        let mut taken = Vec::new();
        for _ in 0..DAEMON_START_ATTEMPTS {
            match self.start_daemon(env, &log) {
                Ok(d) => return d,
                Err(in_use) => {
                    taken.push(in_use);
                    self.fresh_listener_ports();
                }
            }
        }
        panic!("the daemon found a listener port taken {DAEMON_START_ATTEMPTS} times:\n{}", taken.join("\n"));
    }

    /// One start; `Err(the daemon's complaint)` when a listener port was in use (it exited).
    fn start_daemon(&self, env: &[(&str, &str)], log: &Path) -> Result<Daemon, String> {
        let (imap, imaps) = self.ports();
        let (sub, subs) = self.smtp_ports();
        let f = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        // Earlier runs append to the same log: this start's lines begin here.
        let from = f.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let mut cmd = self.cmd(&["run"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.stdout(Stdio::null()).stderr(f).spawn().expect("spawn popbridge run");
        let mut d = Daemon { child, imap, imaps, log: log.to_path_buf() };
        let this_start = |d: &Daemon| d.log().get(from..).unwrap_or_default().to_string();
        let t = std::time::Instant::now();
        let timeout = std::time::Duration::from_secs(20);
        // Ready only once it says so: a port accepting connections may be someone else's.
        while !this_start(&d).contains(DAEMON_READY) {
            if let Some(status) = d.child.try_wait().expect("wait") {
                let out = this_start(&d);
                if out.contains(DAEMON_PORT_IN_USE) {
                    return Err(out.trim().to_string());
                }
                panic!("the daemon exited ({status}) before it was ready:\n{out}");
            }
            assert!(t.elapsed() < timeout, "the daemon was not ready after {timeout:?}:\n{}", this_start(&d));
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        for port in [imap, imaps, sub, subs].into_iter().filter(|p| *p != 0) {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(t.elapsed() < timeout, "the daemon did not listen on {port}: {}", this_start(&d));
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
        }
        Ok(d)
    }

    /// The local certificate clients must trust.
    pub fn cert(&self) -> PathBuf {
        self.data.join("tls/cert.pem")
    }

    /// An IMAP client target for this bridge (combined login unless `user` says otherwise).
    pub fn target(&self, security: imap_clients::Security, user: &str) -> imap_clients::Target {
        let (imap, imaps) = self.ports();
        let port = if matches!(security, imap_clients::Security::Implicit) { imaps } else { imap };
        imap_clients::Target::new(port, security, Some(&self.cert()), user, LOCAL_PASSWORD)
    }
}

/// A temporary directory a store may live in: 0700, as popbridge refuses one others can read.
pub fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("create a temporary directory")
}

/// Polls `f` every 50 ms until it holds; fails the test after `timeout`, naming `what`.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// One account's entry in `status --json` (null when there is none).
pub fn account<'a>(j: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    j["accounts"].as_array().and_then(|a| a.iter().find(|x| x["name"] == name)).unwrap_or(&serde_json::Value::Null)
}

/// The harness's own promises about ports (the suite relies on them).
mod harness {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_refused_port_refuses_and_cannot_be_taken() {
        let p = refused_port();
        let e = std::net::TcpStream::connect(("127.0.0.1", p.port())).expect_err("nothing listens");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
        // Neither a plain listener nor one with SO_REUSEADDR (what tokio's bind sets) gets it.
        let e = std::net::TcpListener::bind(("127.0.0.1", p.port())).expect_err("the port is reserved");
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_reuse_address(true).unwrap();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", p.port()).parse().unwrap();
        let e = s.bind(&addr.into()).expect_err("the port is reserved even for SO_REUSEADDR");
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    }

    #[test]
    fn the_daemon_moves_to_fresh_ports_when_one_is_taken() {
        let b = Bridge::with_listeners();
        let (imap, _) = b.ports();
        let (_, subs) = b.smtp_ports();
        // Someone else listens on the IMAP port, and holds the submissions port.
        let squatter = std::net::TcpListener::bind(("127.0.0.1", imap)).expect("take the IMAP port");
        let _held = std::net::TcpListener::bind(("127.0.0.1", subs)).expect("take the submissions port");
        let d = b.daemon();
        assert!(d.log().contains("is in use"), "the first start failed on the taken port: {}", d.log());
        let (new_imap, _) = b.ports();
        assert!(new_imap != imap && b.smtp_ports().1 != subs, "fresh ports in the config");
        assert_eq!(d.imap, new_imap);
        let mut c = std::net::TcpStream::connect(("127.0.0.1", new_imap)).expect("the daemon's IMAP port");
        c.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let mut greeting = [0u8; 5];
        c.read_exact(&mut greeting).expect("a greeting");
        assert_eq!(&greeting, b"* OK ", "popbridge answers on the new port");
        drop(squatter);
    }

    #[test]
    fn dovecot_starts_on_fresh_ports_when_one_is_taken() {
        let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken = squatter.local_addr().unwrap().port();
        let [a, b, c] = fresh_ports::<3>();
        let d = dovecot::Dovecot::start_trying_first(dovecot::DovecotOpts::default(), Some([taken, a, b, c]));
        assert_eq!(d.failed_starts.len(), 1, "one failed start: {:?}", d.failed_starts);
        assert!(d.failed_starts[0].contains("Address already in use"), "{}", d.failed_starts[0]);
        assert_ne!(d.pop3_port, taken);
        let mut c = std::net::TcpStream::connect(("127.0.0.1", d.pop3_port)).expect("Dovecot's POP3 port");
        c.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let mut greeting = [0u8; 3];
        c.read_exact(&mut greeting).expect("a greeting");
        assert_eq!(&greeting, b"+OK");
    }
}
