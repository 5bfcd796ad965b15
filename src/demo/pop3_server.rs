//! The built-in sample POP3 server behind `popbridge demo`.
//!
//! **Plaintext only, for loopback only.** This is demo infrastructure, not a mail server: it offers
//! no TLS (no STLS, no POP3S), compares the password as given, and keeps its maildrop in memory. The
//! `demo` command binds it to `127.0.0.1` so that a newcomer's first fetch needs no real account.
//!
//! What it speaks: RFC 1939 (USER/PASS, STAT, LIST, UIDL, TOP, RETR, DELE, NOOP, RSET, QUIT with the
//! UPDATE state), RFC 2449 (CAPA, PIPELINING, RESP-CODES, 512-octet lines), RFC 5034 (AUTH PLAIN,
//! with an initial response or after a `+ ` continuation) and RFC 3206 (`[AUTH]`, `[IN-USE]`).
//!
//! Layout:
//! - [`Mailbox`]: the shared maildrop, persistent across sessions; a message's UIDL is derived from
//!   its content, so it is stable; one session at a time may hold it (the RFC 1939 §8 lock).
//! - `Session`: the command core without I/O: one command line in, replies out.
//! - `drive`: the socket side: answers every complete line already buffered, in order, into a
//!   buffered writer that is flushed only when no complete line is left (a pipelined burst costs
//!   few syscalls), and streams RETR/TOP bodies in chunks, byte-stuffed on the fly.
//! - [`serve`]: the accept loop with a session cap and a shutdown arm.
//!
//! On shutdown the sessions are closed without a word: POP3 has no unsolicited responses, and no
//! deletion is committed (RFC 1939 §6: only QUIT enters UPDATE).

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The first line of every session (RFC 1939 §4). It carries no APOP timestamp: APOP is not offered.
pub const GREETING: &str = "+OK popbridge demo POP3 server ready\r\n";
const SIGN_OFF: &str = "+OK popbridge demo POP3 server signing off";

/// RFC 2449 §4 caps responses at 512 octets and commands at 255; we accept command lines up to 512
/// octets including CRLF, which leaves room for an AUTH PLAIN initial response (RFC 5034 §4).
const MAX_LINE: usize = 512;
/// RFC 1939 §3: the autologout timer must be at least 10 minutes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Sessions at once; further connections wait in the listen backlog. The demo needs one (the
/// fetcher) plus whatever a curious user opens by hand.
const MAX_SESSIONS: usize = 64;
/// RETR and TOP bodies go out in pieces of at most this size, each with its own write deadline:
/// a message of a few MB is neither copied whole nor able to pin a session to a stalled reader.
const CHUNK: usize = 64 * 1024;
/// The write buffer: many short answers of a pipelined burst leave in one write.
const WRITE_BUFFER: usize = 64 * 1024;
/// One read from the socket.
const READ_CHUNK: usize = 8 * 1024;
/// Pause after a failed `accept` (EMFILE and the like) so that the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const CAPA_COMMON: &[&str] = &["TOP", "UIDL"];
const CAPA_BEFORE_LOGIN: &[&str] = &["USER"];
const CAPA_TAIL: &[&str] = &["PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"];
const CAPA_SASL: &str = "SASL PLAIN";
const CAPA_IMPLEMENTATION: &str = "IMPLEMENTATION popbridge-demo";

/// The limits a session runs under; tests shorten them.
#[derive(Clone, Copy, Debug)]
struct Limits {
    idle: Duration,
    max_sessions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { idle: IDLE_TIMEOUT, max_sessions: MAX_SESSIONS }
    }
}

// ---------------------------------------------------------------------------------------------
// The maildrop

/// The demo maildrop: messages (raw bytes with CRLF line ends), each with a stable UIDL, shared by
/// all sessions. Deletions become real only when a logged-in session QUITs.
pub struct Mailbox {
    // A std mutex: every critical section is a few field updates, never held across an await.
    state: Mutex<Maildrop>,
}

struct Maildrop {
    messages: Vec<Arc<Message>>,
    next_id: u64,
    /// RFC 1939 §8: a session in the TRANSACTION state holds the maildrop.
    locked: bool,
}

struct Message {
    /// Identity within this process (what QUIT removes), independent of message numbers.
    id: u64,
    uidl: String,
    /// CRLF line ends, ending in CRLF (or empty): exactly the octets RETR sends before stuffing.
    data: Vec<u8>,
}

impl Mailbox {
    pub fn new(messages: Vec<Vec<u8>>) -> Arc<Mailbox> {
        let mailbox = Mailbox { state: Mutex::new(Maildrop { messages: Vec::new(), next_id: 1, locked: false }) };
        for raw in messages {
            mailbox.add(raw);
        }
        Arc::new(mailbox)
    }

    /// Messages in the maildrop (deletions of a session still in progress are not counted).
    pub fn len(&self) -> usize {
        self.state().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a message. Bare LF line ends become CRLF and a missing final line end is added, so that
    /// LIST reports exactly the octets RETR sends. It appears in sessions that log in afterwards
    /// (a session's message numbers are fixed at login, RFC 1939 §5).
    pub fn add(&self, raw: Vec<u8>) {
        let data = to_crlf(raw);
        // RFC 1939 §7: UIDL is 1 to 70 characters in 0x21..=0x7E and survives sessions. Derived from
        // the content, it also survives restarts of the demo; a duplicate gets a suffix.
        let base = format!("{:016x}", fnv1a64(&data));
        let mut state = self.state();
        let mut uidl = base.clone();
        let mut n = 1u64;
        while state.messages.iter().any(|m| m.uidl == uidl) {
            n += 1;
            uidl = format!("{base}-{n}");
        }
        let id = state.next_id;
        state.next_id += 1;
        state.messages.push(Arc::new(Message { id, uidl, data }));
    }

    fn state(&self) -> MutexGuard<'_, Maildrop> {
        // A panic elsewhere cannot leave a Maildrop half-updated in a way that matters here.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the maildrop lock and a snapshot of the messages, or None if another session holds it.
    fn try_lock(self: &Arc<Self>) -> Option<(MaildropLock, Vec<Arc<Message>>)> {
        let mut state = self.state();
        if state.locked {
            return None;
        }
        state.locked = true;
        Some((MaildropLock { mailbox: Arc::clone(self) }, state.messages.clone()))
    }

    /// The UPDATE state (RFC 1939 §6): removes the messages marked as deleted. Returns how many are left.
    fn commit(&self, deleted: &HashSet<u64>) -> usize {
        let mut state = self.state();
        state.messages.retain(|m| !deleted.contains(&m.id));
        state.messages.len()
    }
}

/// Held by a session in the TRANSACTION state; dropping it (QUIT, a dropped connection, shutdown)
/// releases the maildrop.
struct MaildropLock {
    mailbox: Arc<Mailbox>,
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        self.mailbox.state().locked = false;
    }
}

fn to_crlf(raw: Vec<u8>) -> Vec<u8> {
    let bare_lf = memchr::memchr_iter(b'\n', &raw).filter(|&i| i == 0 || raw[i - 1] != b'\r').count();
    let add_end = !raw.is_empty() && !raw.ends_with(b"\n");
    if bare_lf == 0 && !add_end {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + bare_lf + 2);
    let mut prev = 0u8;
    for &b in &raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    if add_end {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// FNV-1a, 64 bits: a stable content hash for UIDLs (not a security boundary).
fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

// ---------------------------------------------------------------------------------------------
// The command core (no I/O)

struct Credentials {
    user: String,
    password: String,
}

enum State {
    /// RFC 1939 §4; `user` is the name given by USER, awaiting PASS.
    Authorization { user: Option<Vec<u8>> },
    /// RFC 5034 §4: AUTH PLAIN came without an initial response and got `+ `; the next line is the
    /// client's response (or `*` to cancel).
    SaslPlain,
    /// RFC 1939 §5: logged in, holding the maildrop.
    Transaction(Transaction),
    /// After QUIT.
    Done,
}

struct Transaction {
    _lock: MaildropLock,
    /// The maildrop as it was at login: message n is `messages[n - 1]` for the whole session.
    messages: Vec<Arc<Message>>,
    deleted: Vec<bool>,
}

impl Transaction {
    fn live(&self) -> impl Iterator<Item = (usize, &Arc<Message>)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted.get(*i).copied().unwrap_or(true))
            .map(|(i, m)| (i + 1, m))
    }

    fn stat(&self) -> (usize, usize) {
        self.live().fold((0, 0), |(n, size), (_, m)| (n + 1, size + m.data.len()))
    }

    /// Resolves a message-number argument to (number, message), or the `-ERR` line to answer.
    fn message(&self, arg: &[u8]) -> Result<(usize, Arc<Message>), String> {
        let Some(n) = parse_number(arg) else {
            return Err(format!("-ERR invalid message number \"{}\"", printable(arg)));
        };
        if n == 0 || n > self.messages.len() {
            return Err(format!("-ERR no such message, only {} messages in maildrop", self.messages.len()));
        }
        match (self.messages.get(n - 1), self.deleted.get(n - 1)) {
            (Some(m), Some(false)) => Ok((n, Arc::clone(m))),
            _ => Err(format!("-ERR message {n} already deleted")),
        }
    }
}

/// What a command produces, in order.
enum Reply {
    /// Complete response lines, CRLF included.
    Text(String),
    /// The first `len` octets of a message, to be byte-stuffed and terminated with ".\r\n".
    Body { message: Arc<Message>, len: usize },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flow {
    Continue,
    Close,
}

fn line(text: impl Into<String>) -> Reply {
    let mut s = text.into();
    s.push_str("\r\n");
    Reply::Text(s)
}

struct Session {
    credentials: Arc<Credentials>,
    mailbox: Arc<Mailbox>,
    state: State,
}

impl Session {
    fn new(credentials: Arc<Credentials>, mailbox: Arc<Mailbox>) -> Session {
        Session { credentials, mailbox, state: State::Authorization { user: None } }
    }

    /// A line longer than [`MAX_LINE`] was dropped.
    fn line_too_long(&mut self, out: &mut Vec<Reply>) {
        if matches!(self.state, State::SaslPlain) {
            self.state = State::Authorization { user: None };
        }
        out.push(line(format!("-ERR line too long (at most {MAX_LINE} octets including CRLF)")));
    }

    /// Answers one command line (with or without its line end).
    fn handle(&mut self, raw: &[u8], out: &mut Vec<Reply>) -> Flow {
        let text = strip_eol(raw);
        if matches!(self.state, State::SaslPlain) {
            self.state = State::Authorization { user: None };
            out.push(self.sasl_plain(text));
            return Flow::Continue;
        }
        let (verb, rest) = match memchr::memchr(b' ', text) {
            Some(i) => (&text[..i], &text[i + 1..]),
            None => (text, &[][..]),
        };
        let verb = verb.to_ascii_uppercase();
        let args: Vec<&[u8]> = rest.split(|&b| b == b' ').filter(|a| !a.is_empty()).collect();
        if verb.is_empty() {
            out.push(line("-ERR empty command"));
            return Flow::Continue;
        }
        match verb.as_slice() {
            b"CAPA" => {
                if !args.is_empty() {
                    out.push(line("-ERR CAPA takes no arguments"));
                } else {
                    out.push(self.capa());
                }
                return Flow::Continue;
            }
            b"QUIT" => {
                let left = match std::mem::replace(&mut self.state, State::Done) {
                    // RFC 1939 §6: the UPDATE state; the lock goes with the Transaction.
                    State::Transaction(t) => {
                        let deleted: HashSet<u64> =
                            t.messages.iter().zip(&t.deleted).filter(|(_, d)| **d).map(|(m, _)| m.id).collect();
                        Some(self.mailbox.commit(&deleted))
                    }
                    _ => None,
                };
                out.push(line(match left {
                    Some(n) => format!("{SIGN_OFF} ({n} messages left)"),
                    None => SIGN_OFF.to_string(),
                }));
                return Flow::Close;
            }
            b"STLS" => {
                out.push(line("-ERR STLS is not offered: this is a plaintext demo server for loopback only"));
                return Flow::Continue;
            }
            b"APOP" => {
                let reply = if matches!(self.state, State::Transaction(_)) {
                    "-ERR already logged in"
                } else {
                    "-ERR APOP is not offered (the greeting has no timestamp); use USER/PASS or AUTH PLAIN"
                };
                out.push(line(reply));
                return Flow::Continue;
            }
            _ => {}
        }
        let reply = match &mut self.state {
            State::Authorization { .. } => Some(self.authorization(&verb, rest, &args)),
            State::Transaction(t) => transaction(t, &verb, &args, out),
            // Not reached: SaslPlain is handled above, and the driver stops reading after QUIT.
            State::SaslPlain | State::Done => Some(line("-ERR session is over")),
        };
        if let Some(reply) = reply {
            out.push(reply);
        }
        Flow::Continue
    }

    fn capa(&self) -> Reply {
        let logged_in = matches!(self.state, State::Transaction(_));
        let mut s = String::from("+OK capability list follows\r\n");
        let mut push = |cap: &str| {
            s.push_str(cap);
            s.push_str("\r\n");
        };
        CAPA_COMMON.iter().for_each(|c| push(c));
        // RFC 2449 §5: USER and SASL are about logging in; a logged-in session no longer offers them.
        if !logged_in {
            CAPA_BEFORE_LOGIN.iter().for_each(|c| push(c));
        }
        CAPA_TAIL.iter().for_each(|c| push(c));
        if !logged_in {
            push(CAPA_SASL);
        }
        push(CAPA_IMPLEMENTATION);
        s.push_str(".\r\n");
        Reply::Text(s)
    }

    fn authorization(&mut self, verb: &[u8], rest: &[u8], args: &[&[u8]]) -> Reply {
        match verb {
            b"USER" => {
                if args.is_empty() {
                    line("-ERR USER needs a user name")
                } else {
                    self.state = State::Authorization { user: Some(rest.to_vec()) };
                    line("+OK send PASS")
                }
            }
            b"PASS" => {
                // RFC 1939 §7: the single argument may contain spaces: the rest of the line is the password.
                let user = match &mut self.state {
                    State::Authorization { user } => user.take(),
                    _ => None,
                };
                match user {
                    None => line("-ERR send USER first"),
                    Some(user) => self.login(&user, rest),
                }
            }
            b"AUTH" => match args {
                // The RFC 1734 habit some clients still have: bare AUTH lists the mechanisms.
                [] => Reply::Text("+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n".to_string()),
                [mech, ..] if !mech.eq_ignore_ascii_case(b"PLAIN") => {
                    line(format!("-ERR unsupported SASL mechanism \"{}\"; this server offers PLAIN", printable(mech)))
                }
                [_] => {
                    self.state = State::SaslPlain;
                    // RFC 5034 §4: an empty challenge is "+ " followed by nothing.
                    line("+ ")
                }
                [_, initial] => self.sasl_plain(initial),
                _ => line("-ERR AUTH takes a mechanism and at most one initial response"),
            },
            b"STAT" | b"LIST" | b"UIDL" | b"RETR" | b"TOP" | b"DELE" | b"NOOP" | b"RSET" => {
                line("-ERR not logged in; use USER/PASS or AUTH PLAIN first")
            }
            _ => unknown(verb),
        }
    }

    /// The client's answer to AUTH PLAIN (RFC 4616: `authzid NUL authcid NUL passwd`, base64).
    fn sasl_plain(&mut self, response: &[u8]) -> Reply {
        let response = response.trim_ascii();
        if response == b"*" {
            return line("-ERR authentication cancelled");
        }
        let decoded = if response == b"=" {
            Vec::new() // RFC 5034 §4: "=" is an empty initial response
        } else {
            match SASL_BASE64.decode(response) {
                Ok(d) => d,
                Err(_) => return line("-ERR the SASL response is not valid base64"),
            }
        };
        let mut parts = decoded.split(|&b| b == 0);
        let (Some(authzid), Some(authcid), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return line("-ERR malformed SASL PLAIN response (expected authzid NUL user NUL password)");
        };
        if !authzid.is_empty() && authzid != authcid {
            return line("-ERR [AUTH] this server does not let one user act as another");
        }
        self.login(authcid, password)
    }

    fn login(&mut self, user: &[u8], password: &[u8]) -> Reply {
        let c = &self.credentials;
        if user != c.user.as_bytes() || password != c.password.as_bytes() {
            self.state = State::Authorization { user: None };
            return line("-ERR [AUTH] invalid user name or password");
        }
        // RFC 2449 §8.1.2 / RFC 3206: IN-USE is said only to a client that gave the right credentials.
        match self.mailbox.try_lock() {
            None => {
                self.state = State::Authorization { user: None };
                line("-ERR [IN-USE] the maildrop is in use by another POP3 session; try again when it ends")
            }
            Some((lock, messages)) => {
                let deleted = vec![false; messages.len()];
                let t = Transaction { _lock: lock, messages, deleted };
                let (n, size) = t.stat();
                self.state = State::Transaction(t);
                line(format!("+OK logged in, {n} messages ({size} octets)"))
            }
        }
    }
}

fn transaction(t: &mut Transaction, verb: &[u8], args: &[&[u8]], out: &mut Vec<Reply>) -> Option<Reply> {
    Some(match (verb, args) {
        (b"STAT", []) => {
            let (n, size) = t.stat();
            line(format!("+OK {n} {size}"))
        }
        (b"LIST", []) => {
            let (n, size) = t.stat();
            let mut s = format!("+OK {n} messages ({size} octets)\r\n");
            for (i, m) in t.live() {
                s.push_str(&format!("{i} {}\r\n", m.data.len()));
            }
            s.push_str(".\r\n");
            Reply::Text(s)
        }
        (b"LIST", [n]) => match t.message(n) {
            Ok((n, m)) => line(format!("+OK {n} {}", m.data.len())),
            Err(e) => line(e),
        },
        (b"UIDL", []) => {
            let mut s = String::from("+OK unique-id listing follows\r\n");
            for (i, m) in t.live() {
                s.push_str(&format!("{i} {}\r\n", m.uidl));
            }
            s.push_str(".\r\n");
            Reply::Text(s)
        }
        (b"UIDL", [n]) => match t.message(n) {
            Ok((n, m)) => line(format!("+OK {n} {}", m.uidl)),
            Err(e) => line(e),
        },
        (b"RETR", [n]) => match t.message(n) {
            Ok((_, m)) => {
                out.push(line(format!("+OK {} octets", m.data.len())));
                let len = m.data.len();
                Reply::Body { message: m, len }
            }
            Err(e) => line(e),
        },
        (b"TOP", [n, lines]) => match (t.message(n), parse_number(lines)) {
            (Err(e), _) => line(e),
            (Ok(_), None) => line(format!("-ERR invalid line count \"{}\"", printable(lines))),
            (Ok((_, m)), Some(lines)) => {
                out.push(line("+OK top of message follows"));
                let len = top_len(&m.data, lines);
                Reply::Body { message: m, len }
            }
        },
        (b"DELE", [n]) => match t.message(n) {
            Ok((n, _)) => {
                if let Some(d) = t.deleted.get_mut(n - 1) {
                    *d = true;
                }
                line(format!("+OK message {n} deleted"))
            }
            Err(e) => line(e),
        },
        (b"NOOP", []) => line("+OK"),
        (b"RSET", []) => {
            t.deleted.iter_mut().for_each(|d| *d = false);
            let (n, size) = t.stat();
            line(format!("+OK maildrop has {n} messages ({size} octets)"))
        }
        (b"USER" | b"PASS" | b"AUTH", _) => line("-ERR already logged in"),
        (b"STAT" | b"NOOP" | b"RSET", _) => line(format!("-ERR {} takes no arguments", printable(verb))),
        (b"LIST" | b"UIDL", _) => line(format!("-ERR usage: {} [message-number]", printable(verb))),
        (b"RETR" | b"DELE", _) => line(format!("-ERR usage: {} message-number", printable(verb))),
        (b"TOP", _) => line("-ERR usage: TOP message-number lines"),
        _ => unknown(verb),
    })
}

fn unknown(verb: &[u8]) -> Reply {
    line(format!("-ERR unknown command \"{}\"", printable(verb)))
}

/// The octets TOP sends: the header, the blank line, and `lines` lines of the body (RFC 1939 §7).
fn top_len(data: &[u8], lines: usize) -> usize {
    let header_end = if data.starts_with(b"\r\n") {
        2
    } else {
        match memchr::memmem::find(data, b"\r\n\r\n") {
            Some(i) => i + 4,
            None => return data.len(), // no body at all
        }
    };
    let mut end = header_end;
    for _ in 0..lines {
        match data.get(end..).and_then(|rest| memchr::memchr(b'\n', rest)) {
            Some(i) => end += i + 1,
            None => return data.len(),
        }
    }
    end
}

/// A decimal argument. Digits only; too large to represent reads as `usize::MAX` (no such message,
/// or "all the lines").
fn parse_number(arg: &[u8]) -> Option<usize> {
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        arg.iter()
            .try_fold(0usize, |n, &d| n.checked_mul(10)?.checked_add(usize::from(d - b'0')))
            .unwrap_or(usize::MAX),
    )
}

/// Client text echoed in a reply: at most 40 characters (RFC 2449 §4's argument limit), printable
/// ASCII only, so that nothing the client sent can break our response lines.
fn printable(text: &[u8]) -> String {
    let mut s: String = text.iter().take(40).map(|&b| if b.is_ascii_graphic() { char::from(b) } else { '?' }).collect();
    if text.len() > 40 {
        s.push_str("...");
    }
    s
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Base64 as clients send it: standard alphabet, padding optional.
const SASL_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

// ---------------------------------------------------------------------------------------------
// The socket side

/// Splits the input into lines, without ever holding more than about one line plus one read.
struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the first line not yet handed out.
    start: usize,
    /// Dropping the rest of an over-long line until its LF.
    discarding: bool,
}

enum Line<'a> {
    Complete(&'a [u8]),
    TooLong,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R) -> Self {
        LineReader { inner, buf: Vec::with_capacity(READ_CHUNK), start: 0, discarding: false }
    }

    /// The next complete line already buffered, if any.
    fn next_line(&mut self) -> Option<Line<'_>> {
        let pending = self.buf.get(self.start..).unwrap_or_default();
        match memchr::memchr(b'\n', pending) {
            Some(i) => {
                let begin = self.start;
                self.start += i + 1;
                if std::mem::take(&mut self.discarding) || i + 1 > MAX_LINE {
                    return Some(Line::TooLong);
                }
                self.buf.get(begin..begin + i + 1).map(Line::Complete)
            }
            None => {
                // No LF within the first MAX_LINE octets: whatever completes it is too long.
                if self.discarding || pending.len() >= MAX_LINE {
                    self.discarding = true;
                    self.buf.clear();
                    self.start = 0;
                }
                None
            }
        }
    }

    /// Reads more input; Ok(0) at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let mut chunk = [0u8; READ_CHUNK];
        let n = self.inner.read(&mut chunk).await?;
        self.buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// A write that must make progress within `limit`: a client that stops reading is dropped.
async fn deadline<T>(limit: Duration, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")))
}

async fn put<W: AsyncWrite + Unpin>(w: &mut BufWriter<W>, bytes: &[u8], limit: Duration) -> io::Result<()> {
    for piece in bytes.chunks(CHUNK) {
        deadline(limit, w.write_all(piece)).await?;
    }
    Ok(())
}

/// Sends `data` as a multi-line response body (RFC 1939 §3): every line that begins with "." gets
/// another "." in front, the last line ends in CRLF, then the terminating ".\r\n".
async fn put_stuffed<W: AsyncWrite + Unpin>(w: &mut BufWriter<W>, data: &[u8], limit: Duration) -> io::Result<()> {
    if data.first() == Some(&b'.') {
        put(w, b".", limit).await?;
    }
    let mut from = 0;
    for lf in memchr::memmem::find_iter(data, b"\n.") {
        put(w, data.get(from..=lf).unwrap_or_default(), limit).await?;
        put(w, b".", limit).await?;
        from = lf + 1;
    }
    put(w, data.get(from..).unwrap_or_default(), limit).await?;
    if !data.is_empty() && !data.ends_with(b"\r\n") {
        put(w, b"\r\n", limit).await?;
    }
    put(w, b".\r\n", limit).await
}

/// One connection, from greeting to close.
async fn drive<R, W>(reader: R, writer: W, mut session: Session, limits: Limits) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = LineReader::new(reader);
    let mut w = BufWriter::with_capacity(WRITE_BUFFER, writer);
    let mut replies = Vec::new();
    put(&mut w, GREETING.as_bytes(), limits.idle).await?;
    loop {
        // RFC 2449 §6.6 PIPELINING: answer every complete command already received, in order…
        while let Some(next) = reader.next_line() {
            let flow = match next {
                Line::TooLong => {
                    session.line_too_long(&mut replies);
                    Flow::Continue
                }
                Line::Complete(text) => session.handle(text, &mut replies),
            };
            for reply in replies.drain(..) {
                match reply {
                    Reply::Text(s) => put(&mut w, s.as_bytes(), limits.idle).await?,
                    Reply::Body { message, len } => {
                        put_stuffed(&mut w, message.data.get(..len).unwrap_or(&message.data), limits.idle).await?
                    }
                }
            }
            if flow == Flow::Close {
                deadline(limits.idle, w.flush()).await?;
                return deadline(limits.idle, w.shutdown()).await;
            }
        }
        // …and flush only when none is left, so a burst is answered in few writes.
        deadline(limits.idle, w.flush()).await?;
        match tokio::time::timeout(limits.idle, reader.fill()).await {
            // RFC 1939 §3 autologout: close without a response and without entering UPDATE.
            Err(_idle) => return Ok(()),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Serves POP3 on `listener` until `shutdown` resolves (then stops accepting and closes sessions).
///
/// Plaintext: bind it to loopback only. `user`/`password` are the one account's credentials.
pub async fn serve(
    listener: TcpListener,
    user: String,
    password: String,
    mailbox: Arc<Mailbox>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    serve_with(listener, Arc::new(Credentials { user, password }), mailbox, shutdown, Limits::default()).await;
}

async fn serve_with(
    listener: TcpListener,
    credentials: Arc<Credentials>,
    mailbox: Arc<Mailbox>,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            // Shutdown first, so that a flood of connections cannot delay it.
            biased;
            () = &mut shutdown => break,
            // Reap finished sessions (and so make room under the cap).
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            // At the cap, stop accepting: new clients wait in the backlog instead of being refused.
            accepted = listener.accept(), if sessions.len() < limits.max_sessions => match accepted {
                Ok((stream, _peer)) => {
                    let session = Session::new(Arc::clone(&credentials), Arc::clone(&mailbox));
                    sessions.spawn(async move {
                        // We flush deliberately; Nagle would only delay the last piece of each burst.
                        let _ = stream.set_nodelay(true);
                        let (r, w) = stream.into_split();
                        // An error here means the client went away or stalled: nothing to report.
                        let _ = drive(r, w, session, limits).await;
                    });
                }
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            },
        }
    }
    drop(listener);
    // Dropping each session closes its socket and releases the maildrop without committing.
    sessions.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpStream;
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    const USER: &str = "demo";
    const PASS: &str = "demo pass";
    /// Every wait in these tests; a hang fails instead of blocking the suite.
    const WAIT: Duration = Duration::from_secs(10);

    type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

    fn samples() -> Vec<Vec<u8>> {
        super::super::samples::samples()
    }

    struct Server {
        addr: SocketAddr,
        mailbox: Arc<Mailbox>,
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<()>,
    }

    async fn start(messages: Vec<Vec<u8>>) -> Res<Server> {
        start_with(messages, Limits::default()).await
    }

    async fn start_with(messages: Vec<Vec<u8>>, limits: Limits) -> Res<Server> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mailbox = Mailbox::new(messages);
        let (stop, stopped) = oneshot::channel::<()>();
        let creds = Arc::new(Credentials { user: USER.into(), password: PASS.into() });
        let mb = Arc::clone(&mailbox);
        let task = tokio::spawn(async move {
            serve_with(
                listener,
                creds,
                mb,
                async {
                    let _ = stopped.await;
                },
                limits,
            )
            .await
        });
        Ok(Server { addr, mailbox, stop: Some(stop), task })
    }

    impl Server {
        async fn stop(mut self) -> Res {
            if let Some(s) = self.stop.take() {
                let _ = s.send(());
            }
            tokio::time::timeout(WAIT, self.task).await??;
            Ok(())
        }
    }

    struct Client {
        r: BufReader<OwnedReadHalf>,
        w: OwnedWriteHalf,
    }

    impl Client {
        async fn connect(addr: SocketAddr) -> Res<Client> {
            let (r, w) = TcpStream::connect(addr).await?.into_split();
            let mut c = Client { r: BufReader::new(r), w };
            assert_eq!(c.line().await?, GREETING);
            Ok(c)
        }

        async fn login(addr: SocketAddr) -> Res<Client> {
            let mut c = Client::connect(addr).await?;
            assert!(c.cmd(&format!("USER {USER}")).await?.starts_with("+OK"));
            let r = c.cmd(&format!("PASS {PASS}")).await?;
            assert!(r.starts_with("+OK logged in"), "{r}");
            Ok(c)
        }

        async fn send(&mut self, bytes: &[u8]) -> Res {
            self.w.write_all(bytes).await?;
            Ok(())
        }

        /// One response line, CRLF included.
        async fn line(&mut self) -> Res<String> {
            let mut buf = Vec::new();
            tokio::time::timeout(WAIT, self.r.read_until(b'\n', &mut buf)).await??;
            assert!(buf.ends_with(b"\r\n"), "line without CRLF: {buf:?}");
            Ok(String::from_utf8(buf)?)
        }

        async fn cmd(&mut self, command: &str) -> Res<String> {
            self.send(format!("{command}\r\n").as_bytes()).await?;
            self.line().await
        }

        /// A multi-line body up to the terminating ".", dot-unstuffed, CRLFs kept.
        async fn body(&mut self) -> Res<Vec<u8>> {
            let mut out = Vec::new();
            loop {
                let mut buf = Vec::new();
                tokio::time::timeout(WAIT, self.r.read_until(b'\n', &mut buf)).await??;
                assert!(buf.ends_with(b"\r\n"), "body line without CRLF (or EOF): {:?}", String::from_utf8_lossy(&buf));
                if buf == b".\r\n" {
                    return Ok(out);
                }
                match buf.strip_prefix(b".") {
                    Some(rest) => {
                        assert!(rest.starts_with(b"."), "unstuffed line beginning with a dot");
                        out.extend_from_slice(rest);
                    }
                    None => out.extend_from_slice(&buf),
                }
            }
        }

        async fn multi(&mut self, command: &str) -> Res<(String, Vec<u8>)> {
            let status = self.cmd(command).await?;
            assert!(status.starts_with("+OK"), "{command}: {status}");
            Ok((status, self.body().await?))
        }

        /// Reads until the server closes the connection.
        async fn eof(&mut self) -> Res<Vec<u8>> {
            let mut rest = Vec::new();
            tokio::time::timeout(WAIT, self.r.read_to_end(&mut rest)).await??;
            Ok(rest)
        }
    }

    fn listing(body: &[u8]) -> Res<Vec<(usize, String)>> {
        let text = std::str::from_utf8(body)?;
        let mut out = Vec::new();
        for l in text.lines() {
            let (n, v) = l.split_once(' ').ok_or("listing line without a space")?;
            out.push((n.parse()?, v.to_string()));
        }
        Ok(out)
    }

    async fn login_retrying(addr: SocketAddr) -> Res<Client> {
        // The server notices a dropped connection a moment later; until then the maildrop is locked.
        let start = tokio::time::Instant::now();
        loop {
            let mut c = Client::connect(addr).await?;
            c.cmd(&format!("USER {USER}")).await?;
            let r = c.cmd(&format!("PASS {PASS}")).await?;
            if r.starts_with("+OK") {
                return Ok(c);
            }
            assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
            assert!(start.elapsed() < WAIT, "maildrop never released");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn full_session_capa_list_uidl_top_retr_dele_quit() -> Res {
        let samples = samples();
        let total: usize = samples.iter().map(Vec::len).sum();
        let server = start(samples.clone()).await?;
        let mut c = Client::connect(server.addr).await?;

        let (_, capa) = c.multi("CAPA").await?;
        assert_eq!(
            String::from_utf8(capa)?,
            "TOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nSASL PLAIN\r\nIMPLEMENTATION popbridge-demo\r\n"
        );
        assert_eq!(c.cmd("STAT").await?, "-ERR not logged in; use USER/PASS or AUTH PLAIN first\r\n");
        assert_eq!(c.cmd("user demo").await?, "+OK send PASS\r\n");
        assert_eq!(
            c.cmd("pass demo pass").await?,
            format!("+OK logged in, {} messages ({total} octets)\r\n", samples.len())
        );
        let (_, capa) = c.multi("CAPA").await?;
        assert_eq!(
            String::from_utf8(capa)?,
            "TOP\r\nUIDL\r\nPIPELINING\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nIMPLEMENTATION popbridge-demo\r\n"
        );
        assert_eq!(c.cmd("USER demo").await?, "-ERR already logged in\r\n");
        assert_eq!(c.cmd("STAT").await?, format!("+OK {} {total}\r\n", samples.len()));

        let (_, list) = c.multi("LIST").await?;
        let list = listing(&list)?;
        assert_eq!(list.len(), samples.len());
        for (i, (n, size)) in list.iter().enumerate() {
            assert_eq!(*n, i + 1);
            assert_eq!(size.parse::<usize>()?, samples[i].len());
        }
        assert_eq!(c.cmd("LIST 2").await?, format!("+OK 2 {}\r\n", samples[1].len()));
        assert_eq!(
            c.cmd("LIST 0").await?,
            format!("-ERR no such message, only {} messages in maildrop\r\n", samples.len())
        );
        assert_eq!(c.cmd("LIST x").await?, "-ERR invalid message number \"x\"\r\n");
        assert!(c.cmd("LIST 99999999999999999999999").await?.starts_with("-ERR no such message, "));

        let (_, uidl) = c.multi("UIDL").await?;
        let uidls = listing(&uidl)?;
        assert_eq!(uidls.len(), samples.len());
        let distinct: HashSet<&String> = uidls.iter().map(|(_, u)| u).collect();
        assert_eq!(distinct.len(), samples.len());
        for (_, u) in &uidls {
            assert!((1..=70).contains(&u.len()) && u.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{u}");
        }
        assert_eq!(c.cmd("UIDL 3").await?, format!("+OK 3 {}\r\n", uidls[2].1));

        for (i, sample) in samples.iter().enumerate() {
            let header_end = memchr::memmem::find(sample, b"\r\n\r\n").ok_or("no blank line")? + 4;
            let (_, top) = c.multi(&format!("TOP {} 0", i + 1)).await?;
            assert_eq!(top, &sample[..header_end], "TOP {} 0", i + 1);
            let (_, top) = c.multi(&format!("TOP {} 2", i + 1)).await?;
            assert!(sample.starts_with(&top) && top.len() > header_end, "TOP {} 2", i + 1);
            let (status, got) = c.multi(&format!("RETR {}", i + 1)).await?;
            assert_eq!(status, format!("+OK {} octets\r\n", sample.len()));
            assert!(got == *sample, "RETR {} differs from the sample", i + 1);
        }
        assert_eq!(c.cmd("TOP 1").await?, "-ERR usage: TOP message-number lines\r\n");
        assert_eq!(c.cmd("TOP 1 x").await?, "-ERR invalid line count \"x\"\r\n");

        assert_eq!(c.cmd("DELE 1").await?, "+OK message 1 deleted\r\n");
        assert_eq!(c.cmd("DELE 1").await?, "-ERR message 1 already deleted\r\n");
        assert_eq!(c.cmd("RETR 1").await?, "-ERR message 1 already deleted\r\n");
        assert_eq!(c.cmd("STAT").await?, format!("+OK {} {}\r\n", samples.len() - 1, total - samples[0].len()));
        let (_, list) = c.multi("LIST").await?;
        assert_eq!(listing(&list)?.first().map(|l| l.0), Some(2), "deleted messages are not listed");
        assert!(c.cmd("RSET").await?.starts_with(&format!("+OK maildrop has {} messages", samples.len())));
        assert_eq!(c.cmd("DELE 1").await?, "+OK message 1 deleted\r\n");
        assert_eq!(c.cmd("DELE 3").await?, "+OK message 3 deleted\r\n");
        assert_eq!(c.cmd("NOOP").await?, "+OK\r\n");
        assert_eq!(c.cmd("NOOP now").await?, "-ERR NOOP takes no arguments\r\n");
        assert_eq!(c.cmd("FROB").await?, "-ERR unknown command \"FROB\"\r\n");
        assert_eq!(server.mailbox.len(), samples.len(), "nothing is deleted before QUIT");
        assert_eq!(
            c.cmd("QUIT").await?,
            format!("+OK popbridge demo POP3 server signing off ({} messages left)\r\n", samples.len() - 2)
        );
        assert_eq!(c.eof().await?, b"");
        assert_eq!(server.mailbox.len(), samples.len() - 2);

        // The lock is released before +OK, and UIDLs are stable across sessions.
        let mut c = Client::login(server.addr).await?;
        let (_, uidl) = c.multi("UIDL").await?;
        let after: Vec<String> = listing(&uidl)?.into_iter().map(|(_, u)| u).collect();
        let expected: Vec<String> =
            uidls.iter().enumerate().filter(|(i, _)| *i != 0 && *i != 2).map(|(_, (_, u))| u.clone()).collect();
        assert_eq!(after, expected);
        let (_, got) = c.multi("RETR 1").await?;
        assert!(got == samples[1]);
        c.cmd("QUIT").await?;
        server.stop().await
    }

    #[tokio::test]
    async fn dropped_connection_commits_nothing() -> Res {
        let server = start(samples()).await?;
        let n = server.mailbox.len();
        let mut c = Client::login(server.addr).await?;
        assert_eq!(c.cmd("DELE 1").await?, "+OK message 1 deleted\r\n");
        assert_eq!(c.cmd("DELE 2").await?, "+OK message 2 deleted\r\n");
        drop(c);
        let mut c = login_retrying(server.addr).await?;
        assert_eq!(c.cmd("STAT").await?.split(' ').nth(1), Some(n.to_string().as_str()));
        assert_eq!(server.mailbox.len(), n);
        // QUIT before login enters no UPDATE either (and needs no lock).
        let mut d = Client::connect(server.addr).await?;
        assert_eq!(d.cmd("QUIT").await?, "+OK popbridge demo POP3 server signing off\r\n");
        c.cmd("QUIT").await?;
        assert_eq!(server.mailbox.len(), n);
        server.stop().await
    }

    #[tokio::test]
    async fn auth_plain_with_and_without_initial_response() -> Res {
        use base64::engine::general_purpose::STANDARD;
        let server = start(samples()).await?;
        let good = STANDARD.encode(format!("\0{USER}\0{PASS}"));

        let mut c = Client::connect(server.addr).await?;
        let (_, mechs) = c.multi("AUTH").await?;
        assert_eq!(mechs, b"PLAIN\r\n");
        assert!(c.cmd(&format!("AUTH PLAIN {good}")).await?.starts_with("+OK logged in"));
        assert_eq!(c.cmd("AUTH PLAIN").await?, "-ERR already logged in\r\n");
        c.cmd("QUIT").await?;

        let mut c = Client::connect(server.addr).await?;
        assert_eq!(c.cmd("auth plain").await?, "+ \r\n");
        assert!(c.cmd(&good).await?.starts_with("+OK logged in"));
        c.cmd("QUIT").await?;

        // authzid equal to the user, no padding: accepted.
        let mut c = Client::connect(server.addr).await?;
        let ir = STANDARD.encode(format!("{USER}\0{USER}\0{PASS}"));
        assert!(c.cmd(&format!("AUTH PLAIN {}", ir.trim_end_matches('='))).await?.starts_with("+OK logged in"));
        c.cmd("QUIT").await?;

        let mut c = Client::connect(server.addr).await?;
        assert_eq!(c.cmd("AUTH PLAIN").await?, "+ \r\n");
        assert_eq!(c.cmd("*").await?, "-ERR authentication cancelled\r\n");
        assert_eq!(c.cmd("AUTH PLAIN").await?, "+ \r\n");
        assert_eq!(c.cmd("not base64!").await?, "-ERR the SASL response is not valid base64\r\n");
        assert_eq!(
            c.cmd("AUTH PLAIN =").await?,
            "-ERR malformed SASL PLAIN response (expected authzid NUL user NUL password)\r\n"
        );
        let bad = STANDARD.encode(format!("\0{USER}\0wrong"));
        assert_eq!(c.cmd(&format!("AUTH PLAIN {bad}")).await?, "-ERR [AUTH] invalid user name or password\r\n");
        let other = STANDARD.encode(format!("admin\0{USER}\0{PASS}"));
        assert_eq!(
            c.cmd(&format!("AUTH PLAIN {other}")).await?,
            "-ERR [AUTH] this server does not let one user act as another\r\n"
        );
        assert_eq!(
            c.cmd("AUTH LOGIN").await?,
            "-ERR unsupported SASL mechanism \"LOGIN\"; this server offers PLAIN\r\n"
        );
        assert!(c.cmd(&format!("AUTH PLAIN {good}")).await?.starts_with("+OK logged in"));
        c.cmd("QUIT").await?;
        server.stop().await
    }

    #[tokio::test]
    async fn wrong_credentials_get_auth_code() -> Res {
        let server = start(samples()).await?;
        let mut c = Client::connect(server.addr).await?;
        assert_eq!(c.cmd("PASS demo pass").await?, "-ERR send USER first\r\n");
        assert_eq!(c.cmd("USER demo").await?, "+OK send PASS\r\n");
        assert_eq!(c.cmd("PASS demo").await?, "-ERR [AUTH] invalid user name or password\r\n");
        // The USER is forgotten after a failed PASS.
        assert_eq!(c.cmd("PASS demo pass").await?, "-ERR send USER first\r\n");
        assert_eq!(c.cmd("USER nobody").await?, "+OK send PASS\r\n");
        assert_eq!(c.cmd("PASS demo pass").await?, "-ERR [AUTH] invalid user name or password\r\n");
        assert!(c.cmd("APOP demo 0123456789abcdef0123456789abcdef").await?.starts_with("-ERR APOP is not offered"));
        assert!(c.cmd("STLS").await?.starts_with("-ERR STLS is not offered:"));
        assert_eq!(c.cmd("USER demo").await?, "+OK send PASS\r\n");
        assert!(c.cmd("PASS demo pass").await?.starts_with("+OK logged in"));
        c.cmd("QUIT").await?;
        server.stop().await
    }

    #[tokio::test]
    async fn pipelined_burst_is_answered_in_order() -> Res {
        let samples = samples();
        let server = start(samples.clone()).await?;
        let mut c = Client::connect(server.addr).await?;
        // Login and commands in one write each, as a PIPELINING client may send them.
        c.send(format!("USER {USER}\r\nPASS {PASS}\r\n").as_bytes()).await?;
        assert!(c.line().await?.starts_with("+OK"));
        assert!(c.line().await?.starts_with("+OK logged in"));
        c.send(b"UIDL\r\nLIST\r\nRETR 1\r\nRETR 2\r\n").await?;
        assert_eq!(c.line().await?, "+OK unique-id listing follows\r\n");
        assert_eq!(listing(&c.body().await?)?.len(), samples.len());
        assert!(c.line().await?.starts_with(&format!("+OK {} messages", samples.len())));
        assert_eq!(listing(&c.body().await?)?.len(), samples.len());
        assert_eq!(c.line().await?, format!("+OK {} octets\r\n", samples[0].len()));
        assert!(c.body().await? == samples[0]);
        assert_eq!(c.line().await?, format!("+OK {} octets\r\n", samples[1].len()));
        assert!(c.body().await? == samples[1]);
        // A burst split at odd places, with a bare-LF line and a command cut mid-word.
        c.send(b"STAT\nNO").await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.send(b"OP\r\nDELE 1\r\nQUIT\r\n").await?;
        assert!(c.line().await?.starts_with("+OK "));
        assert_eq!(c.line().await?, "+OK\r\n");
        assert_eq!(c.line().await?, "+OK message 1 deleted\r\n");
        assert!(c.line().await?.starts_with("+OK popbridge demo POP3 server signing off"));
        assert_eq!(c.eof().await?, b"");
        assert_eq!(server.mailbox.len(), samples.len() - 1);
        server.stop().await
    }

    #[tokio::test]
    async fn over_long_lines_are_dropped() -> Res {
        let server = start(samples()).await?;
        let mut c = Client::connect(server.addr).await?;
        let too_long = "-ERR line too long (at most 512 octets including CRLF)\r\n";
        c.send(format!("{}\r\n", "A".repeat(600)).as_bytes()).await?;
        assert_eq!(c.line().await?, too_long);
        // One huge line arriving in pieces: one answer, then the session goes on.
        for _ in 0..8 {
            c.send(&[b'x'; 4000]).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        c.send(b"\r\nCAPA\r\n").await?;
        assert_eq!(c.line().await?, too_long);
        assert!(c.multi_status_only().await?.starts_with("+OK capability list follows"));
        // Exactly 512 octets with CRLF is allowed; 513 is not.
        let name = "u".repeat(MAX_LINE - "USER \r\n".len());
        assert_eq!(c.cmd(&format!("USER {name}")).await?, "+OK send PASS\r\n");
        assert_eq!(c.cmd(&format!("USER {name}u")).await?, too_long);
        // An over-long SASL response aborts the exchange.
        assert_eq!(c.cmd("AUTH PLAIN").await?, "+ \r\n");
        assert_eq!(c.cmd(&"QUFB".repeat(200)).await?, too_long);
        assert_eq!(c.cmd("NOOP").await?, "-ERR not logged in; use USER/PASS or AUTH PLAIN first\r\n");
        c.cmd("QUIT").await?;
        server.stop().await
    }

    impl Client {
        /// Reads a multi-line response that was already requested; returns its status line.
        async fn multi_status_only(&mut self) -> Res<String> {
            let status = self.line().await?;
            self.body().await?;
            Ok(status)
        }
    }

    #[tokio::test]
    async fn second_session_gets_in_use() -> Res {
        let server = start(samples()).await?;
        let mut a = Client::login(server.addr).await?;
        let mut b = Client::connect(server.addr).await?;
        assert_eq!(b.cmd("USER demo").await?, "+OK send PASS\r\n");
        assert_eq!(
            b.cmd("PASS demo pass").await?,
            "-ERR [IN-USE] the maildrop is in use by another POP3 session; try again when it ends\r\n"
        );
        // Wrong credentials still get [AUTH], not a hint that the maildrop exists.
        b.cmd("USER demo").await?;
        assert_eq!(b.cmd("PASS nope").await?, "-ERR [AUTH] invalid user name or password\r\n");
        assert!(a.cmd("QUIT").await?.starts_with("+OK"));
        b.cmd("USER demo").await?;
        assert!(b.cmd("PASS demo pass").await?.starts_with("+OK logged in"));
        b.cmd("QUIT").await?;
        server.stop().await
    }

    #[tokio::test]
    async fn shutdown_stops_promptly_and_commits_nothing() -> Res {
        let server = start(samples()).await?;
        let addr = server.addr;
        let n = server.mailbox.len();
        let mailbox = Arc::clone(&server.mailbox);
        let mut idle = Client::login(addr).await?;
        assert_eq!(idle.cmd("DELE 1").await?, "+OK message 1 deleted\r\n");
        let mut fresh = Client::connect(addr).await?;
        let started = std::time::Instant::now();
        server.stop().await?;
        assert!(started.elapsed() < Duration::from_secs(2), "shutdown took {:?}", started.elapsed());
        // Sessions are closed without a word; the listener is gone.
        assert_eq!(idle.eof().await?, b"");
        assert_eq!(fresh.eof().await?, b"");
        assert!(TcpStream::connect(addr).await.is_err());
        assert_eq!(mailbox.len(), n);
        assert!(!mailbox.state().locked, "the lock is released");
        Ok(())
    }

    #[tokio::test]
    async fn idle_sessions_are_logged_out_without_update() -> Res {
        let limits = Limits { idle: Duration::from_millis(300), ..Limits::default() };
        let server = start_with(samples(), limits).await?;
        let n = server.mailbox.len();
        let mut c = Client::login(server.addr).await?;
        assert_eq!(c.cmd("DELE 1").await?, "+OK message 1 deleted\r\n");
        let started = std::time::Instant::now();
        // RFC 1939 §3: closed without a response.
        assert_eq!(c.eof().await?, b"");
        assert!(started.elapsed() >= Duration::from_millis(250));
        let mut c = login_retrying(server.addr).await?;
        assert!(c.cmd("STAT").await?.starts_with(&format!("+OK {n} ")));
        c.cmd("QUIT").await?;
        server.stop().await
    }

    #[tokio::test]
    async fn garbage_never_breaks_the_server() -> Res {
        let server = start(samples()).await?;
        // A small deterministic generator: lines of random bytes and mangled commands.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let words: [&[u8]; 16] = [
            b"RETR",
            b"TOP",
            b"LIST",
            b"UIDL",
            b"DELE",
            b"AUTH",
            b"USER",
            b"PASS",
            b"STAT",
            b"RSET",
            b"NOOP",
            b" ",
            b"0",
            b"4294967296",
            b"\0",
            b".",
        ];
        for round in 0..4 {
            let mut c =
                if round % 2 == 0 { Client::connect(server.addr).await? } else { Client::login(server.addr).await? };
            let mut burst = Vec::new();
            for _ in 0..300 {
                let len = (next() % 8) as usize;
                for _ in 0..len {
                    let r = next();
                    if r % 3 == 0 {
                        burst.push((r >> 8) as u8);
                    } else {
                        burst.extend_from_slice(words[(r >> 8) as usize % words.len()]);
                        burst.push(b' ');
                    }
                }
                burst.extend_from_slice(if next() % 4 == 0 { b"\n" } else { b"\r\n" });
            }
            burst.extend_from_slice(b"\r\nQUIT\r\n");
            c.send(&burst).await?;
            let all = c.eof().await?;
            assert!(all.ends_with(b"signing off\r\n") || all.ends_with(b"messages left)\r\n"), "round {round}");
        }
        let mut c = Client::login(server.addr).await?;
        c.cmd("RSET").await?;
        c.cmd("QUIT").await?;
        server.stop().await
    }

    #[tokio::test]
    async fn big_messages_stream_and_line_ends_are_normalized() -> Res {
        let mut big = b"From: a@example.com\r\nSubject: big\r\n\r\n".to_vec();
        for i in 0..60_000 {
            big.extend_from_slice(if i % 7 == 0 {
                b".leading dot line, and some text to fill it up\r\n"
            } else {
                b"plain line with some text to fill it up......\r\n"
            });
        }
        let server = start(vec![big.clone(), b".\nbare LF\n..\nno final newline".to_vec(), Vec::new()]).await?;
        server.mailbox.add(b"Subject: added\n\nlater\n".to_vec());
        assert_eq!(server.mailbox.len(), 4);
        let mut c = Client::login(server.addr).await?;
        let (status, got) = c.multi("RETR 1").await?;
        assert_eq!(status, format!("+OK {} octets\r\n", big.len()));
        assert!(got == big, "big message differs");
        let normalized = b".\r\nbare LF\r\n..\r\nno final newline\r\n";
        assert_eq!(c.cmd("LIST 2").await?, format!("+OK 2 {}\r\n", normalized.len()));
        assert_eq!(c.multi("RETR 2").await?.1, normalized);
        assert_eq!(c.multi("TOP 2 0").await?.1, normalized, "no blank line: the whole message is header");
        assert_eq!(c.multi("RETR 3").await?.1, b"");
        assert_eq!(c.multi("TOP 4 5").await?.1, b"Subject: added\r\n\r\nlater\r\n");
        server.mailbox.add(b"Subject: during the session\r\n\r\n".to_vec());
        assert!(c.cmd("STAT").await?.starts_with("+OK 4 "), "message numbers are fixed at login");
        c.cmd("QUIT").await?;
        server.stop().await
    }

    /// The `demo` command spawns `serve` on the multi-threaded runtime.
    #[tokio::test]
    async fn serve_is_spawnable() -> Res {
        fn assert_send<T: Send + 'static>(_: &T) {}
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let fut = serve(listener, USER.into(), PASS.into(), Mailbox::new(samples()), async {});
        assert_send(&fut);
        tokio::time::timeout(WAIT, tokio::spawn(fut)).await??;
        Ok(())
    }

    #[test]
    fn uidls_are_content_derived_and_unique() {
        let a = Mailbox::new(vec![b"x\r\n".to_vec(), b"y\r\n".to_vec(), b"x\r\n".to_vec()]);
        let b = Mailbox::new(vec![b"y\r\n".to_vec(), b"x\r\n".to_vec()]);
        let ua: Vec<String> = a.state().messages.iter().map(|m| m.uidl.clone()).collect();
        let ub: Vec<String> = b.state().messages.iter().map(|m| m.uidl.clone()).collect();
        assert_eq!(ua[0], ub[1]);
        assert_eq!(ua[1], ub[0]);
        assert_eq!(ua[2], format!("{}-2", ua[0]));
        assert_eq!(top_len(b"A: b\r\n\r\n1\r\n2\r\n", 1), 11);
        assert_eq!(top_len(b"\r\nbody\r\n", 0), 2);
        assert_eq!(parse_number(b"007"), Some(7));
        assert_eq!(parse_number(b"-1"), None);
        assert_eq!(printable(b"a\r\nb\x01"), "a??b?");
    }

    /// A real client: Python's poplib fetches everything (python3 is required: CI installs it).
    #[tokio::test]
    async fn python_poplib_fetches_everything() -> Res {
        use base64::engine::general_purpose::STANDARD;
        const SCRIPT: &str = r#"
import base64, poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=10)
caps = p.capa()
assert "UIDL" in caps and "TOP" in caps and "PIPELINING" in caps, caps
p.user(sys.argv[3]); p.pass_(sys.argv[4])
count, size = p.stat()
assert len(p.uidl()[1]) == count and len(p.list()[1]) == count
assert p.top(1, 0)[1][-1] == b""
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    print(base64.b64encode(b"".join(l + b"\r\n" for l in lines)).decode())
p.dele(count)
p.quit()
"#;
        let samples = samples();
        let server = start(samples.clone()).await?;
        let port = server.addr.port().to_string();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new("python3").args(["-c", SCRIPT, "127.0.0.1", &port, USER, PASS]).output()
        })
        .await??;
        assert!(output.status.success(), "poplib: {}", String::from_utf8_lossy(&output.stderr));
        let fetched: Vec<Vec<u8>> =
            String::from_utf8(output.stdout)?.lines().map(|l| STANDARD.decode(l)).collect::<Result<_, _>>()?;
        assert_eq!(fetched.len(), samples.len());
        for (i, (got, want)) in fetched.iter().zip(&samples).enumerate() {
            assert!(got == want, "poplib RETR {} differs", i + 1);
        }
        assert_eq!(server.mailbox.len(), samples.len() - 1);
        server.stop().await
    }
}
