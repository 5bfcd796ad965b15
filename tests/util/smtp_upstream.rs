//! A scripted, fault-injecting upstream SMTP server for submission tests: aiosmtpd 1.4.3 under
//! Debian's `/usr/bin/python3`, run as `tests/data/smtp-upstream.py` in a child process per test.
//!
//! It listens on 127.0.0.1 (plain, STARTTLS or implicit TLS with a certificate from a fresh
//! test CA), optionally requires AUTH PLAIN/LOGIN (or only one of them), advertises SIZE, 8BITMIME, SMTPUTF8 (unless
//! `--no-smtputf8`) and PIPELINING, and records every accepted transaction (fsynced before the
//! 250 goes out).
//!
//! What `Received::data` holds: the DATA payload exactly as the client meant it, i.e. the lines
//! between the 354 and the terminating `.` line, each with its CRLF. The CRLF before the final
//! `.` belongs to the last line and IS kept (a message sent as `A\r\n.\r\n` gives `A\r\n`; an
//! empty DATA gives `""`), and one leading `.` is removed from every line that starts with one
//! (dot-unstuffing). Lines are split at CRLF only: a bare LF or CR stays as it is, and a dot
//! after it is not unstuffed. A client that sends `message + "\r\n.\r\n"` for a message that
//! already ends in CRLF (mail-send 0.7's `data()`, swaks) gets an extra empty line recorded.
//! A line of more than 1001 octets as sent (CRLF and any stuffed dot included) fails the DATA
//! with `500 Line too long`; a message over the size limit (32 MiB unless `max_size`) with
//! `552 Error: Too much mail data`. Nothing is recorded for either.
//!
//! aiosmtpd's limits a client must live with: MAIL parameters other than `BODY=7BIT|8BITMIME`,
//! `SMTPUTF8` and `SIZE=n` (e.g. `AUTH=<>`, `RET=`) and ANY RCPT parameter get `555`; no
//! CHUNKING/BDAT, DSN or ENHANCEDSTATUSCODES (its own replies, such as 503/552/500, carry no
//! enhanced code; those of the faults do). After STARTTLS the session is reset: EHLO again.
//! Idle sessions are closed after 300 s.
//!
//! Faults (see [`Faults`]) live in a control file that the script re-reads before every
//! reply; [`Upstream::set_faults`] rewrites it atomically, effective from the next
//! transaction (MAIL FROM) on. `Faults::pause_at` stops a session at a named [`PausePoint`]
//! (before the greeting, before DATA's 354, after the commit but before its 250, at QUIT) and
//! reports it ([`Upstream::wait_for_pause`]): a test kills its client there, at a chosen moment;
//! the next `set_faults` lets the session go on. A refused connection is modelled by [`Upstream::stop`], and
//! [`Upstream::restart`] brings the server back on the same port with the same records.
#![allow(dead_code)]

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::certs::{self, CertPair, TestCa};

/// The interpreter that has Debian's python3-aiosmtpd (the pyenv `python3` on PATH does not).
pub const PYTHON: &str = "/usr/bin/python3";
pub const INSTALL_HINT: &str = "apt-get install -y python3-aiosmtpd";

pub fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/smtp-upstream.py")
}

/// How the upstream does TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpTls {
    /// Plain SMTP, no STARTTLS offered. With `user` set, AUTH is offered in the clear.
    #[default]
    None,
    /// Plain, STARTTLS offered and required (530 to MAIL/AUTH/HELO before it); AUTH only
    /// after it. Pass `--no-require-starttls` to [`Upstream::start_with_args`] to make it
    /// optional.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

#[derive(Clone, Debug, Default)]
pub struct UpstreamOpts {
    pub tls: UpTls,
    /// With both set, AUTH PLAIN and LOGIN (see `auth_mechanisms`) are offered and required before MAIL
    /// (`530 5.7.0 Authentication required`); without, AUTH is not offered at all.
    pub user: Option<String>,
    pub password: Option<String>,
    /// The AUTH mechanisms offered when `user` is set (`--auth-mechanisms`, e.g. `["LOGIN"]`);
    /// `None`: PLAIN and LOGIN.
    pub auth_mechanisms: Option<Vec<&'static str>>,
    /// The faults in force from the start (the first control generation).
    pub faults: Faults,
    /// SIZE limit advertised in EHLO and enforced; `None`: aiosmtpd's 33554432; `Some(0)`: none.
    pub max_size: Option<u64>,
    /// A fixed port; `None`: a free one.
    pub port: Option<u16>,
}

/// Misbehaviour, changeable while running ([`Upstream::set_faults`]). Reply texts:
#[derive(Default, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Faults {
    /// `451 4.3.0` to MAIL FROM (the following RCPT/DATA then get aiosmtpd's 503s).
    pub temp_fail_mail: bool,
    /// `451 4.3.0` at end-of-DATA for the first N transactions that get there after this
    /// setting was made (counted per `set_faults` call, kept across `restart`), then 250.
    pub temp_fail_data_times: u32,
    /// `550 5.7.1` at end-of-DATA (after any `temp_fail_data_times` still due).
    pub perm_fail_data: bool,
    /// `550 5.1.1` to RCPT TO for these addresses (case-insensitive); others get 250 and the
    /// transaction goes on with them only.
    pub perm_fail_rcpt: Vec<String>,
    /// 354 to DATA, read one chunk (up to 4 KiB) of the message, then drop the connection
    /// (abort) without any reply. Nothing is recorded.
    pub disconnect_in_data: bool,
    /// `535 5.7.8` to every AUTH.
    pub reject_auth: bool,
    /// `535 5.7.8 cannot accept <base64 of "\0user\0password"> <base64 of password> <password>` to
    /// every AUTH: a server that quotes the credentials back.
    pub echo_auth: bool,
    /// Sleep this long before every reply (once per multi-line reply), the greeting included.
    pub slow_reply_ms: u64,
    /// Stop the first session that reaches one of these points (once per `set_faults`), report it
    /// ([`Upstream::wait_for_pause`]) and wait there until the next `set_faults` (or until the
    /// client is gone).
    pub pause_at: Vec<PausePoint>,
}

/// Where the upstream can stop in a session, so that a test kills its client at a chosen moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PausePoint {
    /// The connection is accepted; the 220 greeting is not sent.
    Greeting,
    /// DATA arrived after an accepted RCPT; the 354 is not sent: nothing of the message is here.
    Data,
    /// The message is recorded (fsynced); the 250 that confirms it is not sent.
    Committed,
    /// QUIT arrived; the 221 is not sent.
    Quit,
}

impl PausePoint {
    pub fn name(self) -> &'static str {
        match self {
            PausePoint::Greeting => "greeting",
            PausePoint::Data => "data",
            PausePoint::Committed => "committed",
            PausePoint::Quit => "quit",
        }
    }
}

#[derive(serde::Deserialize)]
struct PauseEvent {
    paused: String,
    generation: serde_json::Value,
}

/// One accepted transaction (250 at end-of-DATA).
#[derive(Clone, PartialEq, Eq)]
pub struct Received {
    /// The reverse path without angle brackets; the null sender is `"<>"`.
    pub mail_from: String,
    /// Accepted recipients only (see `Faults::perm_fail_rcpt`), in order.
    pub rcpt_tos: Vec<String>,
    /// The DATA payload, see the module docs (final CRLF kept, dots unstuffed).
    pub data: Vec<u8>,
    /// The AUTH identity that succeeded on this connection.
    pub auth_user: Option<String>,
    /// The transaction ran over TLS (STARTTLS or implicit).
    pub tls: bool,
    /// The HELO/EHLO argument (the one after STARTTLS, if any).
    pub ehlo: String,
    /// MAIL FROM parameters as given, upper-cased (`BODY=8BITMIME`, `SMTPUTF8`, `SIZE=n`).
    pub mail_options: Vec<String>,
    /// `TLSv1.3` etc.
    pub tls_version: Option<String>,
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = &self.data[..self.data.len().min(200)];
        f.debug_struct("Received")
            .field("mail_from", &self.mail_from)
            .field("rcpt_tos", &self.rcpt_tos)
            .field("data_len", &self.data.len())
            .field("data_head", &String::from_utf8_lossy(head))
            .field("auth_user", &self.auth_user)
            .field("tls", &self.tls)
            .field("ehlo", &self.ehlo)
            .field("mail_options", &self.mail_options)
            .finish()
    }
}

/// One transaction outcome, accepted or not (the attempts log).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Attempt {
    /// `"mail"` (rejected at MAIL FROM), `"data"` (end-of-DATA reply), `"disconnect"`
    /// (`disconnect_in_data` dropped it).
    pub stage: String,
    /// The reply sent (`None` for a disconnect).
    pub reply: Option<String>,
    pub mail_from: Option<String>,
    pub rcpt_tos: Vec<String>,
    pub rcpt_rejected: Vec<String>,
    /// Bytes of DATA (unstuffed) at end-of-DATA; bytes read before dropping for a disconnect.
    pub data_len: Option<u64>,
    pub auth_user: Option<String>,
    pub tls: bool,
}

impl Attempt {
    /// The reply code (0 for a disconnect).
    pub fn code(&self) -> u16 {
        self.reply.as_deref().and_then(|r| r.get(..3)).and_then(|c| c.parse().ok()).unwrap_or(0)
    }
}

#[derive(serde::Deserialize)]
struct RawReceived {
    mail_from: String,
    #[serde(default)]
    mail_options: Vec<String>,
    rcpt_tos: Vec<String>,
    data_b64: String,
    auth_user: Option<String>,
    tls: bool,
    #[serde(default)]
    tls_version: Option<String>,
    ehlo: Option<String>,
}

/// A running (or stopped) upstream. Dropping it stops the child.
pub struct Upstream {
    pub port: u16,
    /// The CA that signed `cert` (PEM file): what a verifying client must trust.
    pub ca_pem_path: PathBuf,
    /// The server's certificate (for `localhost` and `127.0.0.1`) and key.
    pub cert: CertPair,
    dir: tempfile::TempDir,
    args: Vec<String>,
    generation: AtomicU64,
    spawns: u32,
    child: Mutex<Option<Child>>,
}

/// Panics unless `python -c "import aiosmtpd"` works, naming the install command.
pub fn require_aiosmtpd_at(python: &str) {
    let out = Command::new(python).args(["-c", "import aiosmtpd"]).stdin(Stdio::null()).output();
    let why = match out {
        Ok(o) if o.status.success() => return,
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => format!("cannot run {python}: {e}"),
    };
    panic!(
        "the upstream SMTP test peer needs aiosmtpd under {python} (`{python} -c \"import aiosmtpd\"` failed: \
         {why}). Install it with: {INSTALL_HINT}"
    );
}

fn require_aiosmtpd() {
    static OK: OnceLock<()> = OnceLock::new();
    OK.get_or_init(|| require_aiosmtpd_at(PYTHON));
}

impl Upstream {
    /// Starts the server and waits until it accepts connections.
    pub fn start(opts: UpstreamOpts) -> Upstream {
        Upstream::start_with_args(opts, &[])
    }

    /// Like [`start`](Self::start), with extra script flags appended (later flags win), e.g.
    /// `--no-require-starttls`, `--line-limit N`, `--hostname H`, `--no-smtputf8`, `--debug`.
    pub fn start_with_args(opts: UpstreamOpts, extra: &[&str]) -> Upstream {
        require_aiosmtpd();
        assert_eq!(
            opts.user.is_some(),
            opts.password.is_some(),
            "UpstreamOpts: set both user and password, or neither"
        );
        let dir = tempfile::Builder::new().prefix("smtp-upstream.").tempdir().expect("tempdir");
        let ca = TestCa::new();
        let cert = ca.issue(&["localhost", "127.0.0.1"]);
        let ca_pem_path = certs::write(dir.path(), "ca.pem", &ca.ca_pem());
        let cert_path = certs::write(dir.path(), "cert.pem", &cert.cert_pem);
        let key_path = certs::write(dir.path(), "key.pem", &cert.key_pem);

        let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let mut args: Vec<String> = vec![
            "--record".into(),
            p("record.jsonl"),
            "--attempts".into(),
            p("attempts.jsonl"),
            "--control".into(),
            p("control.json"),
            "--state".into(),
            p("state.json"),
            "--events".into(),
            p("events.jsonl"),
            "--exit-on-stdin-eof".into(),
        ];
        let mut tls = |mode: &str| {
            args.extend([
                "--tls".into(),
                mode.into(),
                "--cert".into(),
                cert_path.to_string_lossy().into_owned(),
                "--key".into(),
                key_path.to_string_lossy().into_owned(),
            ])
        };
        match opts.tls {
            UpTls::None => {}
            UpTls::StartTls => {
                tls("starttls");
                args.push("--require-starttls".into());
            }
            UpTls::Implicit => tls("implicit"),
        }
        if let (Some(user), Some(password)) = (&opts.user, &opts.password) {
            args.extend(["--user".into(), user.clone(), "--password".into(), password.clone()]);
            if opts.tls == UpTls::None {
                args.push("--auth-plaintext".into());
            }
        }
        if let Some(mechanisms) = &opts.auth_mechanisms {
            assert!(opts.user.is_some(), "UpstreamOpts: auth_mechanisms needs a user");
            args.extend(["--auth-mechanisms".into(), mechanisms.join(",")]);
        }
        if let Some(n) = opts.max_size {
            args.extend(["--max-size".into(), n.to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));

        let mut up = Upstream {
            port: opts.port.unwrap_or(0),
            ca_pem_path,
            cert,
            dir,
            args,
            generation: AtomicU64::new(0),
            spawns: 0,
            child: Mutex::new(None),
        };
        up.write_control(0, &opts.faults);
        up.spawn();
        up
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn ca_pem(&self) -> String {
        fs::read_to_string(&self.ca_pem_path).expect("read CA PEM")
    }

    pub fn record_path(&self) -> PathBuf {
        self.dir.path().join("record.jsonl")
    }

    pub fn attempts_path(&self) -> PathBuf {
        self.dir.path().join("attempts.jsonl")
    }

    pub fn control_path(&self) -> PathBuf {
        self.dir.path().join("control.json")
    }

    pub fn events_path(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }

    /// Waits until a session stopped at `point` under the faults set last (the script writes the
    /// event after what the point implies is on disk). Panics, with the log, after `timeout`.
    pub fn wait_for_pause(&self, point: PausePoint, timeout: Duration) {
        let generation = self.generation.load(Ordering::SeqCst);
        let t = Instant::now();
        loop {
            let hit = read_jsonl::<PauseEvent>(&self.events_path())
                .iter()
                .any(|e| e.paused == point.name() && e.generation == serde_json::json!(generation));
            if hit {
                return;
            }
            if t.elapsed() > timeout {
                panic!(
                    "upstream SMTP: no session stopped at {point:?} within {timeout:?} (generation {generation})\n\
                     --- upstream log ---\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("upstream.log")
    }

    /// Whether the child is alive.
    pub fn is_running(&self) -> bool {
        matches!(self.lock_child().as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&mut self) {
        assert!(self.lock_child().is_none(), "upstream already running");
        self.spawns += 1;
        let stdout_path = self.dir.path().join(format!("stdout.{}", self.spawns));
        let stdout = File::create(&stdout_path).expect("create stdout file");
        let log = OpenOptions::new().create(true).append(true).open(self.log_path()).expect("open upstream log");
        let child = Command::new(PYTHON)
            .arg(script_path())
            .args(&self.args)
            .arg("--port")
            .arg(self.port.to_string())
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped()) // held open: the script exits when it closes (we died)
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {PYTHON} {}: {e}", script_path().display()));
        *self.lock_child() = Some(child);

        let t = Instant::now();
        let port = loop {
            let out = fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(line) = out.lines().next().filter(|_| out.contains('\n')) {
                let port = line.strip_prefix("PORT ").and_then(|p| p.trim().parse::<u16>().ok());
                match port {
                    Some(p) => break p,
                    None => self.fail(&format!("unexpected first stdout line {line:?}")),
                }
            }
            let exited = self.lock_child().as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.fail(&format!("exited with {status} before listening"));
            }
            if t.elapsed() > Duration::from_secs(20) {
                self.fail("did not print PORT within 20 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if self.port != 0 {
            assert_eq!(port, self.port, "upstream listens on another port than asked");
        }
        self.port = port;
        while TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_err() {
            if t.elapsed() > Duration::from_secs(20) {
                self.fail(&format!("port {port} does not accept connections"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn fail(&self, what: &str) -> ! {
        self.kill_child();
        panic!("upstream SMTP server ({}): {what}\n--- its log ---\n{}", script_path().display(), self.log_tail());
    }

    /// Every accepted transaction so far, in order (across restarts).
    pub fn received(&self) -> Vec<Received> {
        read_jsonl::<RawReceived>(&self.record_path())
            .into_iter()
            .map(|r| Received {
                mail_from: r.mail_from,
                rcpt_tos: r.rcpt_tos,
                data: b64_decode(&r.data_b64).expect("record: bad base64"),
                auth_user: r.auth_user,
                tls: r.tls,
                ehlo: r.ehlo.unwrap_or_default(),
                mail_options: r.mail_options,
                tls_version: r.tls_version,
            })
            .collect()
    }

    /// Every transaction outcome so far: MAIL rejections, end-of-DATA replies (250 or not),
    /// disconnects.
    pub fn attempts(&self) -> Vec<Attempt> {
        read_jsonl(&self.attempts_path())
    }

    /// Polls until at least `n` transactions are recorded; returns all of them. Panics with
    /// what was recorded and the server log on timeout.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let t = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if t.elapsed() > timeout {
                panic!(
                    "upstream SMTP: wanted {n} accepted transaction(s) within {timeout:?}, got {}: {got:#?}\n\
                     attempts: {:#?}\n--- upstream log ---\n{}",
                    got.len(),
                    self.attempts(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Replaces the faults; in force from the next transaction (MAIL FROM) on, and for the
    /// next AUTH and reply delay.
    pub fn set_faults(&self, f: Faults) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.write_control(generation, &f);
    }

    fn write_control(&self, generation: u64, f: &Faults) {
        let body = serde_json::json!({ "generation": generation, "faults": f });
        let tmp = self.dir.path().join("control.json.tmp");
        fs::write(&tmp, body.to_string()).expect("write control file");
        fs::rename(&tmp, self.control_path()).expect("rename control file");
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it: the port refuses
    /// connections afterwards and open connections are dropped. No-op if stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.lock_child().take() else { return };
        if child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).stderr(Stdio::null()).status();
            let t = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if t.elapsed() > Duration::from_secs(5) {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.wait();
    }

    fn kill_child(&self) {
        if let Some(mut child) = self.lock_child().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again (stopping first if running) on the same port, with the same record,
    /// attempts, control and certificate.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The script's stderr (aiosmtpd's INFO log and ours: commands, replies, faults), all runs.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let cut = log.len().saturating_sub(20_000);
        let cut = (cut..log.len()).find(|&i| log.is_char_boundary(i)).unwrap_or(log.len());
        log[cut..].to_string()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Complete lines of a JSON-lines file (a last line still being written is skipped).
fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    bytes[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("{}: bad line: {e}", path.display())))
        .collect()
}

/// Standard base64 (with padding), as Python's `b64encode` writes it.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let s = s.as_bytes();
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for chunk in s.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}
