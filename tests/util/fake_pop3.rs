//! A scripted, fault-injecting POP3 server (RFC 1939 + RFC 2449 CAPA + RFC 2595 STLS +
//! RFC 5034 SASL) for behaviours a real server won't produce on demand.
//!
//! Blocking, one thread per connection, on 127.0.0.1:0. The maildrop is shared by all
//! sessions and persists between them: DELE marks, a successful QUIT commits (UPDATE state),
//! a dropped connection deletes nothing. There is no maildrop lock (like Dovecot with maildir:
//! concurrent sessions each see a snapshot taken at login).
//!
//! Dropping the server stops accepting, shuts down every live connection (which ends any
//! stall) and joins all threads.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::certs::CertPair;
use super::crash_points::{Point, Trap};

/// A message on the fake server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeMessage {
    /// The UIDL the server reports; `None`: the server makes one up (`auto-<n>`, stable for
    /// the life of the server).
    pub uidl: Option<String>,
    /// The raw message, CRLF line ends. Bare LFs are sent as CRLF (like Dovecot); NULs and
    /// everything else are sent as they are.
    pub data: Vec<u8>,
}

impl FakeMessage {
    pub fn new(uidl: &str, data: impl Into<Vec<u8>>) -> Self {
        FakeMessage { uidl: Some(uidl.to_string()), data: data.into() }
    }
}

/// A small well-formed RFC 5322 message (CRLF), `body` lines joined with CRLF.
pub fn mail(subject: &str, body: &str) -> Vec<u8> {
    let mut m = format!(
        "From: Fake Sender <sender@example.com>\r\nTo: alice@example.com\r\n\
         Subject: {subject}\r\nDate: Mon, 7 Jul 2025 10:00:00 +0000\r\n\
         Message-ID: <{}@fake.example>\r\n\r\n",
        subject.bytes().map(|b| if b.is_ascii_alphanumeric() { b as char } else { '-' }).collect::<String>()
    );
    for line in body.lines() {
        m.push_str(line);
        m.push_str("\r\n");
    }
    m.into_bytes()
}

/// How the server does TLS.
#[derive(Clone, Debug)]
pub enum Tls {
    None,
    /// TLS from the first byte (POP3S).
    Implicit(CertPair),
    /// Plain, with STLS advertised in CAPA (until TLS is active) and accepted.
    Stls(CertPair),
}

/// What the server does. See [`Fault`] for misbehaviour.
#[derive(Clone, Debug)]
pub struct Script {
    pub messages: Vec<FakeMessage>,
    /// Accepted via USER/PASS, AUTH PLAIN/LOGIN/CRAM-MD5 (those listed in `sasl`), APOP
    /// (when `apop`).
    pub user: String,
    pub pass: String,
    pub tls: Tls,
    /// Advertise PIPELINING (the server always answers pipelined commands in order).
    pub pipelining: bool,
    /// Greeting carries a timestamp `<pid.nanos@fake>`; APOP accepted. Without it the greeting
    /// has no timestamp and APOP is refused.
    pub apop: bool,
    /// SASL mechanisms advertised and accepted (any of "PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2").
    pub sasl: Vec<String>,
    /// More CAPA lines, e.g. "LOGIN-DELAY 900" or "EXPIRE 0" (advertised after login too).
    pub extra_capa: Vec<String>,
    /// Listen on this port (0: any free one) — to bring a server back on the same port.
    pub port: u16,
    pub faults: Vec<Fault>,
    /// Gmail's POP: a session lists at most this many messages, the oldest not yet downloaded,
    /// and a message RETR'd in a session that ended with QUIT is hidden from every later session
    /// (it stays on the server: `remaining()` still has it). A USER/PASS login as `recent:USER`
    /// is recent mode: every message is listed, downloaded or not.
    pub per_session: Option<usize>,
    /// Enforce a LOGIN-DELAY (RFC 2449 §8.1.2): a login sooner than this after the previous
    /// session ended is refused with "-ERR [LOGIN-DELAY] …" (advertise it with `extra_capa`).
    pub enforce_login_delay: Option<Duration>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            messages: Vec::new(),
            user: "u".into(),
            pass: "p".into(),
            tls: Tls::None,
            pipelining: true,
            apop: false,
            sasl: vec!["PLAIN".into(), "LOGIN".into()],
            extra_capa: Vec::new(),
            port: 0,
            faults: Vec::new(),
            per_session: None,
            enforce_login_delay: None,
        }
    }
}

/// Misbehaviours. Message numbers are 1-based, as on the wire. A session takes the fault
/// list current when it is accepted ([`FakePop3::set_faults`] affects later sessions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Accept, never send anything (stall until the client goes away).
    NoGreeting,
    /// Send "HELLO\r\n", then stall until the client goes away.
    GarbageGreeting,
    /// UIDL not in CAPA; UIDL → -ERR.
    NoUidl,
    /// TOP not in CAPA; TOP → -ERR.
    NoTop,
    /// CAPA → -ERR (pre-RFC 2449 server).
    NoCapa,
    /// Every even-numbered message reports the UIDL of the one before it.
    DuplicateUidl,
    /// Answer PASS / AUTH (final step) / APOP with exactly this line, e.g. "-ERR [IN-USE] locked".
    AuthError(String),
    /// RETR msg: "+OK", the first `after_bytes` bytes of the (dot-stuffed) body, then close.
    DisconnectMidRetr { msg: u32, after_bytes: usize },
    /// RETR msg: "+OK" and the whole body without the ".\r\n" terminator, then close.
    TruncateRetr { msg: u32 },
    /// Every line the server sends ends in "\n" only (status lines, bodies, terminators).
    BareLf,
    /// The greeting is "+OK " followed by `len` 'x' bytes, then CRLF; then normal service.
    OverlongLine { len: usize },
    /// RETR msg: "+OK" and half the body, then send nothing more (socket stays open) until
    /// the client goes away.
    StallAfterRetr { msg: u32 },
    /// PIPELINING not advertised; after answering each command, discard whatever else was
    /// already received (a broken server: pipelined commands are lost).
    IgnorePipelining,
    /// QUIT (after login) → "-ERR some deleted messages not removed"; nothing is deleted.
    QuitFails,
    /// RETR msg sends the body of msg+1 (message 1 if msg is the last).
    WrongMessage { msg: u32 },
    /// UIDLs get a per-session suffix "-s<session number>".
    UidlChangesEachSession,
    /// STAT reports one message more than LIST/UIDL show.
    CountMismatch,
    /// RETR/TOP msg → "-ERR no such message" (as if another client deleted it); LIST/UIDL
    /// still show it.
    DeletedMidSession { msg: u32 },
    /// Shapes data only; the server does nothing special (messages may contain NUL).
    NulBytes,
    // --- additions ---
    /// Sleep this long before every response (including the greeting).
    SlowResponses { ms: u64 },
    /// After a successful login, send "+OK" and then close the connection.
    DisconnectAfterLogin,
    /// With `Tls::Stls`: STLS is not advertised and STLS → -ERR (a stripped/downgraded server).
    HideStls,
    /// With `Tls::Stls`: STLS is advertised, but STLS → "-ERR [SYS/TEMP] TLS not available".
    RejectStls,
    /// DELE msg → "-ERR cannot delete message".
    DeleFails { msg: u32 },
    /// LIST and STAT report sizes half the real size (clients must not trust them).
    WrongSizes,
    /// QUIT (after login): close the connection without answering and without deleting.
    CloseOnQuit,
    /// QUIT (after login): delete what was marked (UPDATE state), then close without answering —
    /// the client cannot know that its deletions happened.
    QuitAppliedNoAnswer,
    /// Every message's UIDL is its message number in the session ("1", "2", …), as some servers
    /// do: after a deletion the same UIDL names another message.
    UidlIsNumber,
    /// With `Utf8Substitute`: UTF8 is advertised but refused ("-ERR"), so the notices stay.
    IgnoreUtf8,
    /// Courier's RFC 6856 behaviour: `UTF8` is advertised in CAPA and accepted; in a session that
    /// did not send it, a message whose headers hold 8-bit bytes is replaced, for RETR and TOP,
    /// by a "Cannot display Unicode content" notice wrapping it (LIST still gives the real size;
    /// RETR's status line the notice's).
    Utf8Substitute,
    /// Answers out of order: RETR msg sends msg+1's answer (its status line and body) and RETR
    /// msg+1 sends msg's, as a pipelining server that mixed up two answers would.
    SwapRetr { msg: u32 },
    /// After answering RETR msg, the server neither reads nor sends anything more (the socket stays
    /// open) until the client goes away: a server that stopped reading.
    StopReadingAfterRetr { msg: u32 },
}

/// A running fake server. Dropping it stops everything.
pub struct FakePop3 {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Config {
    user: String,
    pass: String,
    tls: Option<(Arc<rustls::ServerConfig>, bool)>, // (config, implicit)
    pipelining: bool,
    apop: bool,
    sasl: Vec<String>,
    extra_capa: Vec<String>,
    per_session: Option<usize>,
    enforce_login_delay: Option<Duration>,
}

struct Stored {
    id: u64,
    msg: FakeMessage,
}

impl Stored {
    fn uidl(&self) -> String {
        self.msg.uidl.clone().unwrap_or_else(|| format!("auto-{:06}", self.id))
    }
}

#[derive(Default)]
struct State {
    messages: Vec<Stored>,
    next_id: u64,
    deleted_uidls: Vec<String>,
    commands: Vec<String>,
    /// UIDLs named by a DELE command (answered or not, applied or not), in order.
    dele_requested: Vec<String>,
    /// Every message the server was given: (UIDL as configured, bytes).
    history: Vec<(String, Vec<u8>)>,
    /// The same lines as `commands`, exactly as they came over the wire (nothing masked).
    raw: Vec<String>,
    sessions: usize,
    max_in_flight: usize,
    faults: Vec<Fault>,
    conns: HashMap<usize, TcpStream>,
    /// Ids of messages downloaded in a session that ended with QUIT (`Script::per_session`).
    popped: std::collections::HashSet<u64>,
    /// When the last logged-in session ended (`Script::enforce_login_delay`).
    last_session_end: Option<std::time::Instant>,
    /// Logins refused with [LOGIN-DELAY].
    login_delay_refusals: usize,
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
    cfg: Config,
    /// Where a session stops for the test (crash points).
    trap: Trap,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // a panicking session thread must not take the whole server down
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn add(&mut self, msgs: Vec<FakeMessage>) {
        for msg in msgs {
            self.next_id += 1;
            let s = Stored { id: self.next_id, msg };
            self.history.push((s.uidl(), s.msg.data.clone()));
            self.messages.push(s);
        }
    }
}

impl FakePop3 {
    pub fn start(script: Script) -> FakePop3 {
        let listener = TcpListener::bind(("127.0.0.1", script.port)).expect("bind fake POP3");
        let addr = listener.local_addr().expect("local addr");
        let tls = match &script.tls {
            Tls::None => None,
            Tls::Implicit(c) => Some((c.server_config(), true)),
            Tls::Stls(c) => Some((c.server_config(), false)),
        };
        let mut state = State { faults: script.faults, ..State::default() };
        state.add(script.messages);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            stop: AtomicBool::new(false),
            trap: Trap::default(),
            cfg: Config {
                user: script.user,
                pass: script.pass,
                tls,
                pipelining: script.pipelining,
                apop: script.apop,
                sasl: script.sasl.iter().map(|m| m.to_ascii_uppercase()).collect(),
                extra_capa: script.extra_capa,
                per_session: script.per_session,
                enforce_login_delay: script.enforce_login_delay,
            },
        });
        let (sh, st) = (shared.clone(), shared.clone());
        let acceptor = super::accept::spawn(
            format!("fake-pop3-{}", addr.port()),
            listener,
            move || st.stop.load(Ordering::SeqCst),
            move |stream| session(&sh, stream).into_iter().collect(),
        );
        FakePop3 { addr, shared, acceptor: Some(acceptor) }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What is still on the server (committed deletions removed), in order.
    pub fn remaining(&self) -> Vec<FakeMessage> {
        self.shared.lock().messages.iter().map(|s| s.msg.clone()).collect()
    }

    /// UIDLs (as configured, or `auto-…`; without per-session suffixes) whose deletion was
    /// committed by a QUIT, in order.
    pub fn deleted_uidls(&self) -> Vec<String> {
        self.shared.lock().deleted_uidls.clone()
    }

    /// Every command line received, in order, across sessions. PASS's argument and APOP's
    /// digest become "***"; AUTH keeps its mechanism, its initial response becomes "***", and
    /// every SASL continuation line is recorded as "***".
    pub fn commands(&self) -> Vec<String> {
        self.shared.lock().commands.clone()
    }

    /// UIDLs (as configured, without per-session suffixes) that a DELE command named, whether or
    /// not the session got to QUIT: what the client asked to delete.
    pub fn dele_requested(&self) -> Vec<String> {
        self.shared.lock().dele_requested.clone()
    }

    /// Every message the server was ever given, as (UIDL as configured, bytes), in order.
    pub fn history(&self) -> Vec<(String, Vec<u8>)> {
        self.shared.lock().history.clone()
    }

    /// The crash-point trap of this server: arm it, and the first session to reach the point
    /// stops there until released.
    pub fn trap(&self) -> &Trap {
        &self.shared.trap
    }

    /// Every line received, in order, across sessions, exactly as the client sent it (line end
    /// removed; nothing masked): commands and SASL continuation lines. To check what a login
    /// method puts on the wire; `commands()` is the masked view of the same lines.
    pub fn raw_transcript(&self) -> Vec<String> {
        self.shared.lock().raw.clone()
    }

    /// Logins refused with [LOGIN-DELAY] (`Script::enforce_login_delay`).
    pub fn login_delay_refusals(&self) -> usize {
        self.shared.lock().login_delay_refusals
    }

    /// Connections accepted so far.
    pub fn sessions(&self) -> usize {
        self.shared.lock().sessions
    }

    /// The most command lines that were already received when the server started answering
    /// one of them (≥ 2 shows that the client pipelines).
    pub fn max_in_flight(&self) -> usize {
        self.shared.lock().max_in_flight
    }

    /// Connections still open on the server side (a stalled session counts until its client
    /// goes away).
    pub fn live_sessions(&self) -> usize {
        self.shared.lock().conns.len()
    }

    /// Replace the fault list for sessions accepted from now on.
    pub fn set_faults(&self, faults: Vec<Fault>) {
        self.shared.lock().faults = faults;
    }

    /// Removes the messages `gone` picks from the maildrop, as another client would (not recorded
    /// as deleted by popbridge).
    pub fn remove_where(&self, gone: impl Fn(&FakeMessage) -> bool) {
        self.shared.lock().messages.retain(|s| !gone(&s.msg));
    }

    /// Append messages to the maildrop (seen by sessions that log in from now on).
    pub fn add_messages(&self, msgs: Vec<FakeMessage>) {
        self.shared.lock().add(msgs);
    }
}

impl Drop for FakePop3 {
    fn drop(&mut self) {
        {
            let st = self.shared.lock();
            self.shared.stop.store(true, Ordering::SeqCst);
            for c in st.conns.values() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// Starts the session thread for a new connection (none once stopping: it is closed).
fn session(sh: &Arc<Shared>, stream: TcpStream) -> Option<JoinHandle<()>> {
    let _ = stream.set_nodelay(true);
    let clone = stream.try_clone().ok()?;
    let (session_no, faults) = {
        let mut st = sh.lock();
        if sh.stop.load(Ordering::SeqCst) {
            let _ = stream.shutdown(Shutdown::Both);
            return None;
        }
        st.sessions += 1;
        let n = st.sessions;
        st.conns.insert(n, clone);
        (n, st.faults.clone())
    };
    let sh2 = sh.clone();
    let h = std::thread::Builder::new()
        .name(format!("fake-pop3-session-{session_no}"))
        .spawn(move || {
            let tcp = stream.try_clone().ok();
            Session::new(&sh2, stream, faults, session_no).run();
            if let Some(t) = tcp {
                let _ = t.shutdown(Shutdown::Both);
            }
            sh2.lock().conns.remove(&session_no);
        })
        .expect("spawn session");
    Some(h)
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
    Gone,
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
            Conn::Gone => Ok(0),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
            Conn::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
            Conn::Gone => Ok(()),
        }
    }
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    /// Orderly end (TLS close_notify, then FIN).
    Close,
    /// Abrupt end (no close_notify).
    Abort,
}

struct ViewMsg {
    id: u64,
    uidl: String,
    data: Vec<u8>,
    deleted: bool,
}

struct Session<'a> {
    sh: &'a Shared,
    conn: Conn,
    rbuf: Vec<u8>,
    faults: Vec<Fault>,
    session_no: usize,
    tls_active: bool,
    logged_in: bool,
    user: Option<String>,
    ts: String,
    view: Vec<ViewMsg>,
    /// RETR answers begun, DELE commands received, DELE answers sent (crash-point counts).
    retrs: u32,
    deles: u32,
    dele_answers: u32,
    /// The client sent UTF8 (RFC 6856).
    utf8: bool,
    /// Logged in as `recent:USER` (`Script::per_session`).
    recent: bool,
    /// Ids RETR'd in this session (hidden once it ends with QUIT, under `Script::per_session`).
    retrieved: Vec<u64>,
}

const MAX_LINE: usize = 64 * 1024;

impl<'a> Session<'a> {
    fn new(sh: &'a Shared, tcp: TcpStream, faults: Vec<Fault>, session_no: usize) -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        Session {
            sh,
            conn: Conn::Plain(tcp),
            rbuf: Vec::new(),
            faults,
            session_no,
            tls_active: false,
            logged_in: false,
            user: None,
            ts: format!("<{}.{nanos}@fake>", std::process::id()),
            view: Vec::new(),
            retrs: 0,
            deles: 0,
            dele_answers: 0,
            utf8: false,
            recent: false,
            retrieved: Vec::new(),
        }
    }

    /// A crash point: held here if the trap is armed for it.
    fn point(&self, p: Point, detail: impl FnOnce() -> String) {
        self.sh.trap.reached(p, detail, || self.sh.stop.load(Ordering::SeqCst));
    }

    fn has(&self, f: &Fault) -> bool {
        self.faults.contains(f)
    }

    fn fault_msg(&self, pick: impl Fn(&Fault) -> Option<u32>) -> Option<u32> {
        self.faults.iter().find_map(pick)
    }

    fn run(mut self) {
        if let Some((cfg, true)) = &self.sh.cfg.tls
            && self.start_tls(cfg.clone()).is_err()
        {
            return;
        }
        let flow = match self.serve() {
            Ok(f) => f,
            Err(_) => Flow::Abort,
        };
        if self.logged_in {
            self.sh.lock().last_session_end = Some(std::time::Instant::now());
        }
        if flow == Flow::Close
            && let Conn::Tls(s) = &mut self.conn
        {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    }

    fn serve(&mut self) -> io::Result<Flow> {
        if self.has(&Fault::NoGreeting) {
            self.stall();
            return Ok(Flow::Abort);
        }
        if self.has(&Fault::GarbageGreeting) {
            self.send(b"HELLO\r\n")?;
            self.stall();
            return Ok(Flow::Abort);
        }
        let greeting = match self.faults.iter().find_map(|f| match f {
            Fault::OverlongLine { len } => Some(*len),
            _ => None,
        }) {
            Some(len) => format!("+OK {}", "x".repeat(len)),
            None if self.sh.cfg.apop => format!("+OK fake POP3 ready {}", self.ts),
            None => "+OK fake POP3 ready".to_string(),
        };
        self.line(&greeting)?;
        loop {
            let Some(line) = self.read_line()? else {
                return Ok(Flow::Abort);
            };
            self.record(&line, mask(&line));
            let flow = self.command(&line)?;
            if flow != Flow::Continue {
                return Ok(flow);
            }
            if self.has(&Fault::IgnorePipelining) {
                self.rbuf.clear();
            }
        }
    }

    /// Records a received line: as it came (`raw_transcript`) and `masked` (`commands`).
    fn record(&self, raw: &str, masked: String) {
        let mut st = self.sh.lock();
        st.raw.push(raw.to_string());
        st.commands.push(masked);
    }

    /// Read until the client goes away (or the server is dropped).
    fn stall(&mut self) {
        let mut buf = [0u8; 4096];
        while !self.sh.stop.load(Ordering::SeqCst) {
            match self.conn.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    fn read_line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(pos) = self.rbuf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.rbuf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let in_flight = 1 + self.rbuf.iter().filter(|&&b| b == b'\n').count();
                {
                    let mut st = self.sh.lock();
                    st.max_in_flight = st.max_in_flight.max(in_flight);
                }
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            if self.rbuf.len() > MAX_LINE {
                let _ = self.line("-ERR line too long");
                return Ok(None);
            }
            if self.sh.stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.conn.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn delay(&self) {
        let ms = self
            .faults
            .iter()
            .find_map(|f| match f {
                Fault::SlowResponses { ms } => Some(*ms),
                _ => None,
            })
            .unwrap_or(0);
        let mut left = ms;
        while left > 0 && !self.sh.stop.load(Ordering::SeqCst) {
            let step = left.min(10);
            std::thread::sleep(Duration::from_millis(step));
            left -= step;
        }
    }

    /// Send bytes as they are, except under `BareLf` (every CRLF becomes LF).
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.delay();
        if self.has(&Fault::BareLf) {
            let mut out = Vec::with_capacity(bytes.len());
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                    continue;
                }
                out.push(b);
            }
            self.conn.write_all(&out)?;
        } else {
            self.conn.write_all(bytes)?;
        }
        self.conn.flush()
    }

    fn line(&mut self, s: &str) -> io::Result<()> {
        let mut b = Vec::with_capacity(s.len() + 2);
        b.extend_from_slice(s.as_bytes());
        b.extend_from_slice(b"\r\n");
        self.send(&b)
    }

    fn multiline(&mut self, status: &str, lines: &[String]) -> io::Result<()> {
        let mut b = format!("{status}\r\n");
        for l in lines {
            if l.starts_with('.') {
                b.push('.');
            }
            b.push_str(l);
            b.push_str("\r\n");
        }
        b.push_str(".\r\n");
        self.send(b.as_bytes())
    }

    fn start_tls(&mut self, cfg: Arc<rustls::ServerConfig>) -> io::Result<()> {
        let tcp = match std::mem::replace(&mut self.conn, Conn::Gone) {
            Conn::Plain(t) => t,
            other => {
                self.conn = other;
                return Err(io::Error::other("TLS already active"));
            }
        };
        let sc = rustls::ServerConnection::new(cfg).map_err(io::Error::other)?;
        let mut s = rustls::StreamOwned::new(sc, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        self.conn = Conn::Tls(Box::new(s));
        self.tls_active = true;
        Ok(())
    }

    fn capa(&self) -> Vec<String> {
        let mut c = Vec::new();
        if !self.has(&Fault::NoTop) {
            c.push("TOP".to_string());
        }
        if !self.has(&Fault::NoUidl) {
            c.push("UIDL".to_string());
        }
        c.push("RESP-CODES".to_string());
        c.push("AUTH-RESP-CODE".to_string());
        if self.sh.cfg.pipelining && !self.has(&Fault::IgnorePipelining) {
            c.push("PIPELINING".to_string());
        }
        if self.has(&Fault::Utf8Substitute) {
            c.push("UTF8".to_string());
        }
        c.extend(self.sh.cfg.extra_capa.iter().cloned());
        if !self.logged_in {
            if matches!(&self.sh.cfg.tls, Some((_, false))) && !self.tls_active && !self.has(&Fault::HideStls) {
                c.push("STLS".to_string());
            }
            c.push("USER".to_string());
            if !self.sh.cfg.sasl.is_empty() {
                c.push(format!("SASL {}", self.sh.cfg.sasl.join(" ")));
            }
        }
        c
    }

    fn command(&mut self, line: &str) -> io::Result<Flow> {
        let (cmd, rest) = match line.split_once(' ') {
            Some((c, r)) => (c.to_ascii_uppercase(), r),
            None => (line.to_ascii_uppercase(), ""),
        };
        let args: Vec<&str> = rest.split_whitespace().collect();
        if cmd == "CAPA" {
            if self.has(&Fault::NoCapa) {
                self.line("-ERR unknown command")?;
            } else {
                let capa = self.capa();
                self.multiline("+OK Capability list follows", &capa)?;
            }
            return Ok(Flow::Continue);
        }
        if self.logged_in { self.transaction(&cmd, &args) } else { self.authorization(&cmd, rest, &args) }
    }

    fn authorization(&mut self, cmd: &str, rest: &str, args: &[&str]) -> io::Result<Flow> {
        match cmd {
            "QUIT" => {
                self.line("+OK fake POP3 signing off")?;
                return Ok(Flow::Close);
            }
            "USER" => {
                if args.len() != 1 {
                    self.line("-ERR usage: USER name")?;
                } else {
                    self.user = Some(args[0].to_string());
                    self.line("+OK send PASS")?;
                }
            }
            "PASS" => {
                let Some(user) = self.user.take() else {
                    self.line("-ERR USER first")?;
                    return Ok(Flow::Continue);
                };
                let recent = self.sh.cfg.per_session.is_some()
                    && user.strip_prefix("recent:") == Some(self.sh.cfg.user.as_str());
                let ok = (user == self.sh.cfg.user || recent) && rest == self.sh.cfg.pass;
                self.recent = recent;
                return self.auth_result(ok);
            }
            "APOP" => {
                if !self.sh.cfg.apop {
                    self.line("-ERR APOP not supported")?;
                } else if args.len() != 2 {
                    self.line("-ERR usage: APOP name digest")?;
                } else {
                    let want = hex(&md5(format!("{}{}", self.ts, self.sh.cfg.pass).as_bytes()));
                    let ok = args[0] == self.sh.cfg.user && args[1].eq_ignore_ascii_case(&want);
                    return self.auth_result(ok);
                }
            }
            "AUTH" => return self.auth(args),
            "STLS" => {
                let stls = matches!(&self.sh.cfg.tls, Some((_, false)));
                if !stls || self.tls_active || self.has(&Fault::HideStls) {
                    self.line("-ERR STLS not available")?;
                } else if self.has(&Fault::RejectStls) {
                    self.line("-ERR [SYS/TEMP] TLS not available")?;
                } else {
                    self.line("+OK Begin TLS negotiation")?;
                    // RFC 2595: anything pipelined after STLS is discarded
                    self.rbuf.clear();
                    self.user = None;
                    let cfg = self.sh.cfg.tls.as_ref().map(|(c, _)| c.clone()).unwrap();
                    self.start_tls(cfg)?;
                }
            }
            "STAT" | "LIST" | "UIDL" | "TOP" | "RETR" | "DELE" | "NOOP" | "RSET" => {
                self.line("-ERR not logged in")?;
            }
            _ => self.line("-ERR unknown command")?,
        }
        Ok(Flow::Continue)
    }

    fn auth_result(&mut self, ok: bool) -> io::Result<Flow> {
        self.user = None;
        let forced = self.faults.iter().find_map(|f| match f {
            Fault::AuthError(l) => Some(l.clone()),
            _ => None,
        });
        if let Some(l) = forced {
            self.line(&l)?;
            return Ok(Flow::Continue);
        }
        if !ok {
            self.line("-ERR [AUTH] invalid user name or password")?;
            return Ok(Flow::Continue);
        }
        if let Some(delay) = self.sh.cfg.enforce_login_delay {
            let too_soon = {
                let mut st = self.sh.lock();
                let soon = st.last_session_end.is_some_and(|t| t.elapsed() < delay);
                st.login_delay_refusals += usize::from(soon);
                soon
            };
            if too_soon {
                self.line("-ERR [LOGIN-DELAY] wait before logging in again")?;
                return Ok(Flow::Continue);
            }
        }
        self.logged_in = true;
        let suffix =
            if self.has(&Fault::UidlChangesEachSession) { format!("-s{}", self.session_no) } else { String::new() };
        let (per_session, recent) = (self.sh.cfg.per_session, self.recent);
        self.view = {
            let st = self.sh.lock();
            st.messages
                .iter()
                .filter(|s| per_session.is_none() || recent || !st.popped.contains(&s.id))
                .take(if recent { usize::MAX } else { per_session.unwrap_or(usize::MAX) })
                .map(|s| ViewMsg {
                    id: s.id,
                    uidl: format!("{}{suffix}", s.uidl()),
                    data: s.msg.data.clone(),
                    deleted: false,
                })
                .collect()
        };
        let n = self.view.len();
        self.line(&format!("+OK logged in, {n} messages"))?;
        if self.has(&Fault::DisconnectAfterLogin) {
            return Ok(Flow::Abort);
        }
        Ok(Flow::Continue)
    }

    /// Read one SASL continuation line; `None` if the client cancelled ("*") or went away.
    fn sasl_step(&mut self, challenge: &str) -> io::Result<Option<Vec<u8>>> {
        self.line(&format!("+ {challenge}"))?;
        let Some(resp) = self.read_line()? else {
            return Err(io::ErrorKind::UnexpectedEof.into());
        };
        self.record(&resp, "***".into());
        if resp.trim() == "*" {
            self.line("-ERR authentication cancelled")?;
            return Ok(None);
        }
        match b64decode(resp.trim()) {
            Some(d) => Ok(Some(d)),
            None => {
                self.line("-ERR invalid base64")?;
                Ok(None)
            }
        }
    }

    fn auth(&mut self, args: &[&str]) -> io::Result<Flow> {
        let Some(mech) = args.first().map(|m| m.to_ascii_uppercase()) else {
            let mechs = self.sh.cfg.sasl.clone();
            self.multiline("+OK supported mechanisms", &mechs)?;
            return Ok(Flow::Continue);
        };
        if !self.sh.cfg.sasl.contains(&mech) {
            self.line("-ERR unsupported authentication mechanism")?;
            return Ok(Flow::Continue);
        }
        let initial = match args.get(1) {
            Some(&"=") => Some(Vec::new()),
            Some(ir) => match b64decode(ir) {
                Some(d) => Some(d),
                None => {
                    self.line("-ERR invalid base64")?;
                    return Ok(Flow::Continue);
                }
            },
            None => None,
        };
        let (cfg_user, cfg_pass) = (self.sh.cfg.user.clone(), self.sh.cfg.pass.clone());
        let ok = match mech.as_str() {
            "PLAIN" => {
                let resp = match initial {
                    Some(r) => r,
                    None => match self.sasl_step("")? {
                        Some(r) => r,
                        None => return Ok(Flow::Continue),
                    },
                };
                let parts: Vec<&[u8]> = resp.split(|&b| b == 0).collect();
                parts.len() == 3
                    && (parts[0].is_empty() || parts[0] == cfg_user.as_bytes())
                    && parts[1] == cfg_user.as_bytes()
                    && parts[2] == cfg_pass.as_bytes()
            }
            "LOGIN" => {
                let user = match initial {
                    Some(u) => u,
                    None => match self.sasl_step(&b64encode(b"Username:"))? {
                        Some(u) => u,
                        None => return Ok(Flow::Continue),
                    },
                };
                let Some(pass) = self.sasl_step(&b64encode(b"Password:"))? else {
                    return Ok(Flow::Continue);
                };
                user == cfg_user.as_bytes() && pass == cfg_pass.as_bytes()
            }
            "CRAM-MD5" => {
                let challenge = self.ts.clone();
                let Some(resp) = self.sasl_step(&b64encode(challenge.as_bytes()))? else {
                    return Ok(Flow::Continue);
                };
                let want = format!("{cfg_user} {}", hex(&hmac_md5(cfg_pass.as_bytes(), challenge.as_bytes())));
                resp.eq_ignore_ascii_case(want.as_bytes())
            }
            "XOAUTH2" => {
                let Some(resp) = initial else {
                    self.line("-ERR XOAUTH2 needs an initial response")?;
                    return Ok(Flow::Continue);
                };
                let want = format!("user={cfg_user}\x01auth=Bearer {cfg_pass}\x01\x01");
                if resp == want.as_bytes() {
                    true
                } else {
                    // The error details come in a continuation; the client ends it with an empty line.
                    let details = br#"{"status":"401","schemes":"bearer","scope":"https://mail.example.com/"}"#;
                    if self.sasl_step(&b64encode(details))?.is_none() {
                        return Ok(Flow::Continue);
                    }
                    false
                }
            }
            _ => {
                self.line("-ERR unsupported authentication mechanism")?;
                return Ok(Flow::Continue);
            }
        };
        self.auth_result(ok)
    }

    /// 0-based index of a live message, or the -ERR line to send.
    fn msgno(&self, arg: Option<&&str>) -> Result<usize, String> {
        let Some(n) = arg.and_then(|a| a.parse::<usize>().ok()) else {
            return Err("-ERR invalid message number".into());
        };
        if n == 0 || n > self.view.len() {
            return Err("-ERR no such message".into());
        }
        if self.view[n - 1].deleted {
            return Err(format!("-ERR message {n} already deleted"));
        }
        Ok(n - 1)
    }

    fn size_of(&self, i: usize) -> usize {
        let s = crlf_size(&self.view[i].data);
        if self.has(&Fault::WrongSizes) { s / 2 } else { s }
    }

    fn uidl_of(&self, i: usize) -> String {
        if self.has(&Fault::UidlIsNumber) {
            return (i + 1).to_string();
        }
        // i is 0-based; message number i+1 even → report the previous one's UIDL
        if self.has(&Fault::DuplicateUidl) && (i + 1).is_multiple_of(2) {
            self.view[i - 1].uidl.clone()
        } else {
            self.view[i].uidl.clone()
        }
    }

    fn transaction(&mut self, cmd: &str, args: &[&str]) -> io::Result<Flow> {
        let n_of = |i: usize| (i + 1) as u32;
        match cmd {
            "STAT" => {
                let live: Vec<usize> = (0..self.view.len()).filter(|&i| !self.view[i].deleted).collect();
                let size: usize = live.iter().map(|&i| self.size_of(i)).sum();
                let mut count = live.len();
                if self.has(&Fault::CountMismatch) {
                    count += 1;
                }
                self.line(&format!("+OK {count} {size}"))?;
            }
            "LIST" | "UIDL" => {
                if cmd == "UIDL" && self.has(&Fault::NoUidl) {
                    self.line("-ERR unknown command")?;
                    return Ok(Flow::Continue);
                }
                let item = |s: &Self, i: usize| {
                    if cmd == "LIST" {
                        format!("{} {}", i + 1, s.size_of(i))
                    } else {
                        format!("{} {}", i + 1, s.uidl_of(i))
                    }
                };
                if args.is_empty() {
                    let lines: Vec<String> =
                        (0..self.view.len()).filter(|&i| !self.view[i].deleted).map(|i| item(self, i)).collect();
                    self.multiline(&format!("+OK {} messages", lines.len()), &lines)?;
                } else {
                    match self.msgno(args.first()) {
                        Ok(i) => {
                            let l = format!("+OK {}", item(self, i));
                            self.line(&l)?;
                        }
                        Err(e) => self.line(&e)?,
                    }
                }
            }
            "RETR" | "TOP" => {
                if cmd == "TOP" && self.has(&Fault::NoTop) {
                    self.line("-ERR unknown command")?;
                    return Ok(Flow::Continue);
                }
                let i = match self.msgno(args.first()) {
                    Ok(i) => i,
                    Err(e) => {
                        self.line(&e)?;
                        return Ok(Flow::Continue);
                    }
                };
                let top_lines = if cmd == "TOP" {
                    match args.get(1).and_then(|a| a.parse::<usize>().ok()) {
                        Some(l) => Some(l),
                        None => {
                            self.line("-ERR usage: TOP msg lines")?;
                            return Ok(Flow::Continue);
                        }
                    }
                } else {
                    None
                };
                let n = n_of(i);
                if self.fault_msg(|f| match f {
                    Fault::DeletedMidSession { msg } => Some(*msg),
                    _ => None,
                }) == Some(n)
                {
                    self.line("-ERR no such message")?;
                    return Ok(Flow::Continue);
                }
                return self.retr(i, top_lines);
            }
            "DELE" => match self.msgno(args.first()) {
                Ok(i) => {
                    let n = n_of(i);
                    self.deles += 1;
                    let uidl = self.stored_uidl(i);
                    self.sh.lock().dele_requested.push(uidl.clone());
                    self.point(Point::OnDele(self.deles), || uidl);
                    if self.faults.contains(&Fault::DeleFails { msg: n }) {
                        self.line("-ERR cannot delete message")?;
                    } else {
                        self.view[i].deleted = true;
                        self.line(&format!("+OK message {n} deleted"))?;
                    }
                    self.dele_answers += 1;
                    self.point(Point::AfterDele(self.dele_answers), || format!("message {n}"));
                }
                Err(e) => self.line(&e)?,
            },
            "NOOP" => self.line("+OK")?,
            "UTF8" if self.has(&Fault::IgnoreUtf8) => self.line("-ERR not now")?,
            "UTF8" if self.has(&Fault::Utf8Substitute) => {
                self.utf8 = true;
                self.line("+OK UTF8 enabled")?;
            }
            "RSET" => {
                for m in &mut self.view {
                    m.deleted = false;
                }
                let n = self.view.len();
                self.line(&format!("+OK maildrop has {n} messages"))?;
            }
            "QUIT" => {
                if self.has(&Fault::QuitFails) {
                    self.line("-ERR some deleted messages not removed")?;
                    return Ok(Flow::Close);
                }
                if self.has(&Fault::CloseOnQuit) {
                    // The connection drops before the answer: the client cannot know whether
                    // deletions happened; here they did not.
                    return Ok(Flow::Abort);
                }
                let applied_unanswered = self.has(&Fault::QuitAppliedNoAnswer);
                self.point(Point::OnQuit, String::new);
                let gone: Vec<(u64, String)> =
                    self.view.iter().filter(|m| m.deleted).map(|m| (m.id, m.uidl.clone())).collect();
                {
                    let mut st = self.sh.lock();
                    if self.sh.cfg.per_session.is_some() {
                        st.popped.extend(self.retrieved.iter().copied());
                    }
                    for (id, _) in &gone {
                        if let Some(pos) = st.messages.iter().position(|s| s.id == *id) {
                            let s = st.messages.remove(pos);
                            let u = s.uidl();
                            st.deleted_uidls.push(u);
                        }
                    }
                }
                self.point(Point::QuitApplied, || format!("{} deleted", gone.len()));
                if applied_unanswered {
                    return Ok(Flow::Abort);
                }
                self.line("+OK fake POP3 signing off")?;
                return Ok(Flow::Close);
            }
            "USER" | "PASS" | "APOP" | "AUTH" | "STLS" => {
                self.line("-ERR already authenticated")?;
            }
            _ => self.line("-ERR unknown command")?,
        }
        Ok(Flow::Continue)
    }

    fn retr(&mut self, i: usize, top_lines: Option<usize>) -> io::Result<Flow> {
        let n = (i + 1) as u32;
        let msg_fault = |pick: fn(&Fault, u32) -> bool| self.faults.iter().any(|f| pick(f, n));
        let src = if msg_fault(|f, n| matches!(f, Fault::WrongMessage { msg } if *msg == n)) {
            (i + 1) % self.view.len()
        } else if msg_fault(|f, n| matches!(f, Fault::SwapRetr { msg } if *msg == n)) && i + 1 < self.view.len() {
            i + 1
        } else if msg_fault(|f, n| matches!(f, Fault::SwapRetr { msg } if *msg + 1 == n)) {
            i - 1
        } else {
            i
        };
        let mut data = normalize(&self.view[src].data);
        if self.has(&Fault::Utf8Substitute) && !self.utf8 && !header_block_of(&data).is_ascii() {
            data = courier_notice(&data);
        }
        let data = match top_lines {
            Some(l) => top(&data, l),
            None => data,
        };
        let body = dot_stuff(&data);
        let announced = if self.has(&Fault::Utf8Substitute) { data.len() } else { self.size_of(src) };
        let status = format!("+OK {} octets", announced);
        let mut out = Vec::with_capacity(status.len() + body.len() + 5);
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(b"\r\n");
        if top_lines.is_none() {
            let cut = self.faults.iter().find_map(|f| match f {
                Fault::DisconnectMidRetr { msg, after_bytes } if *msg == n => Some(*after_bytes),
                _ => None,
            });
            if let Some(cut) = cut {
                out.extend_from_slice(&body[..cut.min(body.len())]);
                self.send(&out)?;
                return Ok(Flow::Abort);
            }
            if msg_fault(|f, n| matches!(f, Fault::TruncateRetr { msg } if *msg == n)) {
                out.extend_from_slice(&body);
                self.send(&out)?;
                return Ok(Flow::Abort);
            }
            if msg_fault(|f, n| matches!(f, Fault::StallAfterRetr { msg } if *msg == n)) {
                out.extend_from_slice(&body[..body.len() / 2]);
                self.send(&out)?;
                self.stall();
                return Ok(Flow::Abort);
            }
        }
        if top_lines.is_none() {
            self.retrieved.push(self.view[i].id);
            self.retrs += 1;
            let k = self.retrs;
            if self.sh.trap.is_armed_for(Point::MidRetr(k)) {
                out.extend_from_slice(&body[..body.len() / 2]);
                self.send(&out)?;
                self.point(Point::MidRetr(k), || format!("message {n}"));
                return Ok(Flow::Abort);
            }
            let stop_reading = msg_fault(|f, n| matches!(f, Fault::StopReadingAfterRetr { msg } if *msg == n));
            out.extend_from_slice(&body);
            out.extend_from_slice(b".\r\n");
            self.send(&out)?;
            self.point(Point::AfterRetr(k), || format!("message {n}"));
            if stop_reading {
                // Neither read nor write: wait for the server to be dropped (the client's
                // disconnect is not noticed without reading, like a wedged server).
                while !self.sh.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return Ok(Flow::Abort);
            }
            return Ok(Flow::Continue);
        }
        out.extend_from_slice(&body);
        out.extend_from_slice(b".\r\n");
        self.send(&out)?;
        Ok(Flow::Continue)
    }

    /// The UIDL of view message `i` as configured (without a per-session suffix).
    fn stored_uidl(&self, i: usize) -> String {
        let id = self.view[i].id;
        self.sh.lock().messages.iter().find(|s| s.id == id).map(|s| s.uidl()).unwrap_or_default()
    }
}

/// The header block of a normalized message (up to the blank line).
fn header_block_of(data: &[u8]) -> &[u8] {
    match data.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => &data[..p],
        None => data,
    }
}

/// What Courier's pop3d sends instead of a message with 8-bit headers to a client that did not
/// send UTF8: a multipart notice with the original attached as message/global.
fn courier_notice(original: &[u8]) -> Vec<u8> {
    let boundary = "=_fake-courier";
    let mut out = format!(
        "From: Mail Delivery Subsystem <postmaster>\r\nSubject: Cannot display Unicode content\r\n\
         Mime-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain\r\n\r\n\
         This E-mail message was determined to be Unicode-formatted\r\n\
         but your E-mail reader does not support Unicode E-mail.\r\n\r\n\
         --{boundary}\r\nContent-Type: message/global\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(original);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// Mask secrets in a command line for the command log.
fn mask(line: &str) -> String {
    let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
    match cmd.to_ascii_uppercase().as_str() {
        "PASS" => format!("{cmd} ***"),
        "APOP" => match rest.split_whitespace().next() {
            Some(user) => format!("{cmd} {user} ***"),
            None => line.to_string(),
        },
        "AUTH" => {
            let mut it = rest.split_whitespace();
            match (it.next(), it.next()) {
                (Some(mech), Some(_)) => format!("{cmd} {mech} ***"),
                _ => line.to_string(),
            }
        }
        _ => line.to_string(),
    }
}

/// Size with every line end counted as CRLF.
fn crlf_size(data: &[u8]) -> usize {
    let lf = data.iter().filter(|&&b| b == b'\n').count();
    let crlf = data.windows(2).filter(|w| w == b"\r\n").count();
    data.len() + lf - crlf
}

/// Bare LF → CRLF; make sure the message ends with CRLF.
fn normalize(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Headers, the blank line and the first `lines` body lines of a normalized message.
fn top(data: &[u8], lines: usize) -> Vec<u8> {
    let Some(hdr_end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        return data.to_vec();
    };
    let mut end = hdr_end + 4;
    for _ in 0..lines {
        if end >= data.len() {
            break;
        }
        match data[end..].windows(2).position(|w| w == b"\r\n") {
            Some(p) => end += p + 2,
            None => end = data.len(),
        }
    }
    data[..end].to_vec()
}

/// RFC 1939 byte-stuffing: a line starting with "." gets another "." in front.
fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut at_line_start = true;
    for &b in data {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out
}

// ---- small codecs (no extra dependencies) ----

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn b64encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[((v >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (padding optional); `None` if malformed.
pub fn b64decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return None; // a lone sextet cannot encode a byte
    }
    Some(out)
}

/// Lowercase hex.
pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// MD5 (RFC 1321), for APOP and CRAM-MD5 only.
pub fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14,
        20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6,
        10, 15, 21,
    ];
    let k: Vec<u32> = (0..64).map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32).collect();
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    let (mut a0, mut b0, mut c0, mut d0) = (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
    for block in msg.chunks(64) {
        let m: Vec<u32> = block.chunks(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&a0.to_le_bytes());
    out[4..8].copy_from_slice(&b0.to_le_bytes());
    out[8..12].copy_from_slice(&c0.to_le_bytes());
    out[12..].copy_from_slice(&d0.to_le_bytes());
    out
}

/// HMAC-MD5 (RFC 2104), for CRAM-MD5.
pub fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..16].copy_from_slice(&md5(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(data);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&md5(&inner));
    md5(&outer)
}
