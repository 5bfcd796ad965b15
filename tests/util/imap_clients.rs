//! Real IMAP clients as test drivers, for any IMAP server on 127.0.0.1 (a private Dovecot, or
//! popbridge): a byte-exact scripted client ([`Raw`]), a replay of Thunderbird's command sequence
//! ([`thunderbird`]), Python's imaplib ([`python`]) and IMAPClient ([`imapclient`]), curl ([`curl`]) and
//! mbsync ([`Mbsync`]).
//!
//! TLS names: [`Raw`] and [`Mbsync`] verify the certificate for the DNS name `localhost` (mbsync 1.4
//! matches DNS names only); [`python`] and [`curl`] connect to and verify `127.0.0.1` (an IP SAN).
//! A server certificate therefore needs both SANs, as real users will type either.
//!
//! `check_*` functions at the end are the client-conformance checks the self-tests run against
//! Dovecot; they take the messages the server should serve and work against any server.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tempfile::TempDir;

use super::certs;
use super::dovecot::Dovecot;

/// Every read of [`Raw`] gives up (with a panic naming what it waited for) after this long.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Where every driver connects.
pub const HOST: &str = "127.0.0.1";
/// The name [`Raw`] (and mbsync) verify the server certificate for.
pub const TLS_NAME: &str = "localhost";
/// Upper bound for a whole external client run (python3, curl, mbsync).
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Target

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Plain TCP, no TLS at all.
    Plain,
    /// TLS from the first byte (imaps).
    Implicit,
    /// Plain TCP, then `STARTTLS`.
    StartTls,
}

/// An IMAP server on 127.0.0.1 and an account on it.
#[derive(Clone, Debug)]
pub struct Target {
    pub host_port: u16,
    pub security: Security,
    /// A PEM file to trust (the CA, or the server's own certificate).
    pub ca_pem: Option<PathBuf>,
    pub user: String,
    pub password: String,
}

impl Target {
    pub fn new(port: u16, security: Security, ca_pem: Option<&Path>, user: &str, password: &str) -> Target {
        Target {
            host_port: port,
            security,
            ca_pem: ca_pem.map(Path::to_path_buf),
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    /// A Dovecot account: its IMAPS port for `Implicit`, else its IMAP port; trusts its CA.
    pub fn dovecot(d: &Dovecot, user: &str, pw: &str, security: Security) -> Target {
        let port = if security == Security::Implicit { d.imaps_port } else { d.imap_port };
        Target::new(port, security, Some(&d.ca_pem_path), user, pw)
    }

    /// The same server with other credentials.
    pub fn with_login(&self, user: &str, password: &str) -> Target {
        Target { user: user.to_string(), password: password.to_string(), ..self.clone() }
    }

    /// The same account over another port/security (e.g. popbridge's IMAPS listener).
    pub fn with_security(&self, port: u16, security: Security) -> Target {
        Target { host_port: port, security, ..self.clone() }
    }

    fn tls(&self) -> bool {
        self.security != Security::Plain
    }

    fn ca_text(&self) -> String {
        let path = self.ca_pem.as_ref().unwrap_or_else(|| panic!("{:?} needs Target::ca_pem", self.security));
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }
}

// ---------------------------------------------------------------------------------------------
// Small IMAP helpers

/// An IMAP quoted string (`"` and `\` escaped).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A compact UID set the way Thunderbird writes one: `1:5,7,9:12` (input in any order).
pub fn uid_set(uids: &[u32]) -> String {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}:{end}");
        }
        i += 1;
    }
    out
}

/// What an IMAP server serves for a stored message in `BODY[]`, as Dovecot does it: every bare
/// LF becomes CRLF (nothing else changes; a missing final line end is NOT added).
pub fn crlf_normalize(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// What mbsync 1.4 writes into a maildir for a message served as `served`: CRLF becomes LF
/// (plus its `X-TUID` header line, see [`mbsync_strip_tuid`]).
pub fn mbsync_stores(served: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(served.len());
    let mut i = 0;
    while i < served.len() {
        if served[i] == b'\r' && served.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(served[i]);
        i += 1;
    }
    out
}

/// Splits mbsync's `X-TUID: <id>` line (which isync 1.4 inserts as the last header line of every
/// message it stores, pulled ones included) out of a maildir file: (file without it, the id).
pub fn mbsync_strip_tuid(file: &[u8]) -> (Vec<u8>, Option<String>) {
    let mut pos = 0;
    while pos < file.len() {
        let end = file[pos..].iter().position(|&b| b == b'\n').map_or(file.len(), |p| pos + p + 1);
        let line = &file[pos..end];
        if line == b"\n" || line == b"\r\n" {
            break; // end of the header
        }
        if let Some(id) = line.strip_prefix(b"X-TUID: ") {
            let id = String::from_utf8_lossy(id).trim_end().to_string();
            let mut out = file[..pos].to_vec();
            out.extend_from_slice(&file[end..]);
            return (out, Some(id));
        }
        pos = end;
    }
    (file.to_vec(), None)
}

/// The number announced by a literal at the end of a line: `{12}`, `{12+}`, `~{12}`.
fn literal_len(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn has_cap(caps: &str, cap: &str) -> bool {
    caps.split_ascii_whitespace().any(|c| c.eq_ignore_ascii_case(cap))
}

/// The capability list in a line: `* CAPABILITY a b` or a `[CAPABILITY a b]` response code.
fn caps_in(line: &str) -> Option<String> {
    let upper = line.to_ascii_uppercase();
    if let Some(rest) = upper.strip_prefix("* CAPABILITY ") {
        return Some(line[line.len() - rest.len()..].trim().to_string());
    }
    let start = upper.find("[CAPABILITY ")? + "[CAPABILITY ".len();
    let end = start + line[start..].find(']')?;
    Some(line[start..end].trim().to_string())
}

/// Panics unless `got == want`, showing where they first differ (as text, with context).
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    let from = at.saturating_sub(80);
    let show = |b: &[u8]| format!("{:?}", String::from_utf8_lossy(&b[from.min(b.len())..(at + 80).min(b.len())]));
    panic!(
        "{what}: {} bytes, wanted {}; first difference at byte {at}:\n   got: {}\n  want: {}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    );
}

fn shorten(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.chars().count() > 200 {
        format!("{}… ({} bytes)", s.chars().take(200).collect::<String>(), bytes.len())
    } else {
        s.into_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Reply and FETCH parsing

/// What a command got back.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    /// Every line received (untagged, continuation, and last the tagged one), without the final
    /// CRLF, literals inlined verbatim as `{n}\r\n<bytes>` (lossy UTF-8; exact bytes in `raw`).
    pub lines: Vec<String>,
    /// The tagged status without the tag: `OK [APPENDUID 1 2] Append completed.`
    pub tagged: String,
    /// `lines` as received, byte for byte.
    pub raw: Vec<Vec<u8>>,
}

impl Reply {
    /// `OK`, `NO`, `BAD` (upper-cased), or "" when there is no tagged line.
    pub fn status(&self) -> String {
        self.tagged.split(' ').next().unwrap_or("").to_ascii_uppercase()
    }
    pub fn ok(&self) -> bool {
        self.status() == "OK"
    }
    pub fn no(&self) -> bool {
        self.status() == "NO"
    }
    pub fn bad(&self) -> bool {
        self.status() == "BAD"
    }

    /// The lines starting with `prefix` (ASCII case-insensitive), e.g. `"* LIST"`, `"* 3 EXISTS"`.
    pub fn untagged(&self, prefix: &str) -> Vec<&str> {
        let p = prefix.as_bytes();
        self.lines
            .iter()
            .filter(|l| l.len() >= p.len() && l.as_bytes()[..p.len()].eq_ignore_ascii_case(p))
            .map(String::as_str)
            .collect()
    }

    /// The `* n <word>` numbers, e.g. `number("EXISTS")`: the last one wins.
    pub fn number(&self, word: &str) -> Option<u32> {
        self.lines.iter().rev().find_map(|l| {
            let mut it = l.split(' ');
            (it.next()? == "*").then_some(())?;
            let n = it.next()?.parse().ok()?;
            it.next()?.eq_ignore_ascii_case(word).then_some(n)
        })
    }

    /// The arguments of a response code `[NAME args]` in any line, e.g. `code("UIDVALIDITY")`.
    pub fn code(&self, name: &str) -> Option<String> {
        let needle = format!("[{}", name.to_ascii_uppercase());
        self.lines.iter().find_map(|l| {
            let upper = l.to_ascii_uppercase();
            let start = upper.find(&needle)? + needle.len();
            let rest = &l[start..];
            let end = rest.find(']')?;
            let args = &rest[..end];
            (args.is_empty() || args.starts_with(' ')).then(|| args.trim().to_string())
        })
    }

    /// Every `* n FETCH (...)` response, parsed.
    pub fn fetches(&self) -> Vec<Fetch> {
        self.raw.iter().filter_map(|l| parse_fetch(l)).collect()
    }

    /// Panics (with the reply) unless the status is OK.
    pub fn assert_ok(&self, what: &str) -> &Reply {
        assert!(self.ok(), "{what}: not OK:\n{}", self.lines.join("\n"));
        self
    }
}

/// One `* n FETCH (...)` response.
#[derive(Clone, Debug)]
pub struct Fetch {
    pub seq: u32,
    /// (item name as sent, e.g. `BODY[]` or `BODY[HEADER.FIELDS (FROM TO)]`, value): quoted strings
    /// and literals decoded to their bytes, lists (`FLAGS (\Seen)`) and atoms as their raw text.
    pub items: Vec<(String, Vec<u8>)>,
}

impl Fetch {
    /// The value of the item named `name` (ASCII case-insensitive, exact).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.items.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }
    /// The value of the first item whose name starts with `prefix` (case-insensitive).
    pub fn get_prefix(&self, prefix: &str) -> Option<&[u8]> {
        let p = prefix.to_ascii_uppercase();
        self.items.iter().find(|(n, _)| n.to_ascii_uppercase().starts_with(&p)).map(|(_, v)| v.as_slice())
    }
    pub fn num(&self, name: &str) -> Option<u32> {
        std::str::from_utf8(self.get(name)?).ok()?.parse().ok()
    }
    pub fn uid(&self) -> Option<u32> {
        self.num("UID")
    }
    /// `FLAGS (\Seen \Answered)` → `["\Seen", "\Answered"]`.
    pub fn flags(&self) -> Option<Vec<String>> {
        let v = String::from_utf8_lossy(self.get("FLAGS")?).into_owned();
        let inner = v.trim().trim_start_matches('(').trim_end_matches(')');
        Some(inner.split_ascii_whitespace().map(String::from).collect())
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat_ci(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (end <= self.s.len() && self.s[self.i..end].eq_ignore_ascii_case(word)).then(|| self.i = end)
    }
    fn number(&mut self) -> Option<u32> {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()
    }
    /// `{n}\r\n` + n bytes (also `~{n}`); returns the n bytes.
    fn literal(&mut self) -> Option<&[u8]> {
        if self.peek() == Some(b'~') {
            self.i += 1;
        }
        self.eat_ci(b"{")?;
        let n = self.number()? as usize;
        if self.peek() == Some(b'+') {
            self.i += 1;
        }
        self.eat_ci(b"}\r\n")?;
        let start = self.i;
        self.i += n;
        self.s.get(start..self.i)
    }
    fn quoted(&mut self) -> Option<Vec<u8>> {
        self.eat_ci(b"\"")?;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    out.push(*self.s.get(self.i + 1)?);
                    self.i += 2;
                }
                b => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
    }
    /// A parenthesised list, returned as its raw text (nested lists, strings and literals skipped).
    fn list(&mut self) -> Option<&[u8]> {
        let start = self.i;
        let mut depth = 0;
        loop {
            match self.peek()? {
                b'(' => {
                    depth += 1;
                    self.i += 1;
                }
                b')' => {
                    depth -= 1;
                    self.i += 1;
                    if depth == 0 {
                        return Some(&self.s[start..self.i]);
                    }
                }
                b'"' => {
                    self.quoted()?;
                }
                b'{' | b'~' if literal_len(&self.s[..self.line_end()]).is_some() => {
                    self.literal()?;
                }
                _ => self.i += 1,
            }
        }
    }
    /// Index of the next CR (end of the physical line), for recognising a literal announcement.
    fn line_end(&self) -> usize {
        self.s[self.i..].iter().position(|&b| b == b'\r').map_or(self.s.len(), |p| self.i + p)
    }
    /// An item name: an atom, with a `[section]` (brackets may hold spaces) and `<origin>`.
    fn item_name(&mut self) -> Option<String> {
        let start = self.i;
        let mut depth = 0;
        while let Some(b) = self.peek() {
            match b {
                b'[' => depth += 1,
                b']' => depth -= 1,
                b' ' | b')' if depth == 0 => break,
                _ => {}
            }
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    fn value(&mut self) -> Option<Vec<u8>> {
        match self.peek()? {
            b'"' => self.quoted(),
            b'(' => self.list().map(<[u8]>::to_vec),
            b'{' | b'~' => self.literal().map(<[u8]>::to_vec),
            _ => {
                let start = self.i;
                while self.peek().is_some_and(|b| b != b' ' && b != b')') {
                    self.i += 1;
                }
                Some(self.s[start..self.i].to_vec())
            }
        }
    }
}

/// Parses `* n FETCH (NAME value NAME value ...)` (literals inlined as `Raw` returns them).
pub fn parse_fetch(line: &[u8]) -> Option<Fetch> {
    let mut c = Cursor { s: line, i: 0 };
    c.eat_ci(b"* ")?;
    let seq = c.number()?;
    c.eat_ci(b" FETCH (")?;
    let mut items = Vec::new();
    loop {
        while c.peek() == Some(b' ') {
            c.i += 1;
        }
        if c.peek()? == b')' {
            return Some(Fetch { seq, items });
        }
        let name = c.item_name()?;
        c.eat_ci(b" ")?;
        let value = c.value()?;
        items.push((name, value));
    }
}

// ---------------------------------------------------------------------------------------------
// Raw

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Gone,
}

impl Stream {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(t) => Some(&t.sock),
            Stream::Gone => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
            Stream::Gone => Err(io::Error::new(io::ErrorKind::NotConnected, "connection closed")),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
            Stream::Gone => Err(io::Error::new(io::ErrorKind::NotConnected, "connection closed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
            Stream::Gone => Ok(()),
        }
    }
}

/// A line-oriented raw IMAP client for byte-for-byte scripted sessions.
pub struct Raw {
    stream: Stream,
    buf: Vec<u8>,
    greeting: String,
    target: Target,
    /// `C: ` / `S: ` lines of the session so far (shortened), for panic messages.
    log: Vec<String>,
}

impl Raw {
    /// Connects, does implicit TLS, reads the greeting, and for `StartTls` upgrades the connection
    /// (tag `ST1`; capabilities must be asked for again afterwards).
    pub fn connect(t: &Target) -> Raw {
        let mut r = Raw::open(t);
        if t.security == Security::StartTls {
            r.starttls();
        }
        r
    }

    /// Like [`connect`](Self::connect) but never sends STARTTLS (for scripting it yourself).
    pub fn open(t: &Target) -> Raw {
        let addr: SocketAddr = format!("{HOST}:{}", t.host_port).parse().expect("address");
        let sock = TcpStream::connect_timeout(&addr, READ_TIMEOUT)
            .unwrap_or_else(|e| panic!("IMAP connect to {addr} ({:?}): {e}", t.security));
        sock.set_read_timeout(Some(READ_TIMEOUT)).expect("set_read_timeout");
        sock.set_write_timeout(Some(READ_TIMEOUT)).expect("set_write_timeout");
        sock.set_nodelay(true).expect("set_nodelay");
        let mut r = Raw {
            stream: Stream::Plain(sock),
            buf: Vec::new(),
            greeting: String::new(),
            target: t.clone(),
            log: vec![],
        };
        if t.security == Security::Implicit {
            r.tls_handshake();
        }
        r.greeting = r.read_line();
        r
    }

    /// [`connect`](Self::connect), then `L1 LOGIN user pass` (must be OK).
    pub fn connect_login(t: &Target) -> Raw {
        let mut r = Raw::connect(t);
        r.login();
        r
    }

    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// The session so far (`C: …` / `S: …`, long lines shortened).
    pub fn log(&self) -> String {
        self.log.join("\n")
    }

    /// `L1 LOGIN "user" "password"`, asserting OK.
    pub fn login(&mut self) -> Reply {
        let cmd = format!("LOGIN {} {}", quote(&self.target.user.clone()), quote(&self.target.password.clone()));
        let r = self.cmd("L1", &cmd);
        assert!(r.ok(), "LOGIN as {} failed: {}\nsession:\n{}", self.target.user, r.tagged, self.log());
        r
    }

    /// `LO1 LOGOUT`: expects `* BYE`, a tagged OK, then the server closing the connection.
    pub fn logout(&mut self) -> Reply {
        let r = self.cmd("LO1", "LOGOUT");
        assert!(r.ok() && !r.untagged("* BYE").is_empty(), "LOGOUT: {:?}\nsession:\n{}", r.lines, self.log());
        self.expect_closed();
        r
    }

    /// Sends exactly these bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.log.push(format!("C: {}", shorten(bytes).trim_end()));
        if let Err(e) = self.stream.write_all(bytes).and_then(|_| self.stream.flush()) {
            panic!("IMAP send failed: {e}\nsession:\n{}", self.log());
        }
    }

    /// Sends `tag cmd\r\n` and reads until the tagged response.
    pub fn cmd(&mut self, tag: &str, cmd: &str) -> Reply {
        self.send(format!("{tag} {cmd}\r\n").as_bytes());
        self.read_until_tagged(tag)
    }

    /// One response line (without CRLF), including any literal it announces, inlined verbatim.
    pub fn read_line(&mut self) -> String {
        String::from_utf8_lossy(&self.read_line_bytes()).into_owned()
    }

    /// [`read_line`](Self::read_line), byte-exact.
    pub fn read_line_bytes(&mut self) -> Vec<u8> {
        match self.try_read_line_bytes() {
            Some(l) => l,
            None => panic!("IMAP server closed the connection while a line was expected\nsession:\n{}", self.log()),
        }
    }

    /// A line, or None when the server closed the connection cleanly before sending one.
    pub fn try_read_line_bytes(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        let mut first = true;
        loop {
            let seg = self.physical_line(first)?;
            first = false;
            line.extend_from_slice(&seg);
            match literal_len(&seg) {
                Some(n) => {
                    line.extend_from_slice(b"\r\n");
                    let lit = self.read_exact_n(n);
                    line.extend_from_slice(&lit);
                }
                None => break,
            }
        }
        self.log.push(format!("S: {}", shorten(&line)));
        Some(line)
    }

    /// Reads lines until `tag <status> …`.
    pub fn read_until_tagged(&mut self, tag: &str) -> Reply {
        let prefix = format!("{tag} ");
        let mut reply = Reply::default();
        loop {
            let raw = self.read_line_bytes();
            let line = String::from_utf8_lossy(&raw).into_owned();
            let done = line.starts_with(&prefix);
            if done {
                reply.tagged = line[prefix.len()..].to_string();
            }
            reply.lines.push(line);
            reply.raw.push(raw);
            if done {
                return reply;
            }
        }
    }

    /// `ST1 STARTTLS` (must be OK), then the TLS handshake.
    pub fn starttls(&mut self) {
        self.starttls_tagged("ST1");
    }

    /// `<tag> STARTTLS` then the handshake; returns the STARTTLS reply.
    pub fn starttls_tagged(&mut self, tag: &str) -> Reply {
        let r = self.cmd(tag, "STARTTLS");
        assert!(r.ok(), "STARTTLS refused: {}\nsession:\n{}", r.tagged, self.log());
        assert!(
            self.buf.is_empty(),
            "server sent bytes after STARTTLS OK before the handshake: {:?}",
            shorten(&self.buf)
        );
        self.tls_handshake();
        r
    }

    /// Asserts that the server closes the connection (EOF or reset) within the timeout.
    pub fn expect_closed(&mut self) {
        if let Some(line) = self.try_read_line_bytes() {
            panic!("expected the server to close the connection, got {:?}\nsession:\n{}", shorten(&line), self.log());
        }
    }

    /// Closes the socket without LOGOUT (as Thunderbird does).
    pub fn drop_connection(mut self) {
        if let Some(s) = self.stream.tcp() {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.stream = Stream::Gone;
    }

    fn tls_handshake(&mut self) {
        let Stream::Plain(mut sock) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            panic!("TLS handshake on a connection that is not plain TCP");
        };
        let config = certs::client_config(&self.target.ca_text());
        let name = rustls_pki_types::ServerName::try_from(TLS_NAME).expect("server name").to_owned();
        let mut conn = rustls::ClientConnection::new(config, name).expect("rustls client");
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut sock) {
                panic!("TLS handshake with {HOST}:{} (as {TLS_NAME}) failed: {e}", self.target.host_port);
            }
        }
        self.log.push("-- TLS established".into());
        self.stream = Stream::Tls(Box::new(rustls::StreamOwned::new(conn, sock)));
    }

    /// Fills `buf` with more bytes; false on EOF.
    fn fill(&mut self, waiting_for: &str) -> bool {
        let mut chunk = [0u8; 16384];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => panic!(
                    "IMAP read timed out after {READ_TIMEOUT:?} waiting for {waiting_for} (have {:?})\nsession:\n{}",
                    shorten(&self.buf),
                    self.log()
                ),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return false;
                }
                Err(e) => panic!("IMAP read failed ({waiting_for}): {e}\nsession:\n{}", self.log()),
            }
        }
    }

    /// One physical line without its CRLF (a bare LF is accepted too). None on EOF before any
    /// byte if `eof_ok`; panics on EOF mid-line.
    fn physical_line(&mut self, eof_ok: bool) -> Option<Vec<u8>> {
        loop {
            if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=p).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(line);
            }
            if !self.fill("a response line") {
                if eof_ok && self.buf.is_empty() {
                    self.log.push("-- server closed the connection".into());
                    return None;
                }
                panic!(
                    "IMAP server closed the connection mid-line: {:?}\nsession:\n{}",
                    shorten(&self.buf),
                    self.log()
                );
            }
        }
    }

    fn read_exact_n(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if !self.fill(&format!("a {n}-byte literal")) {
                panic!("IMAP server closed the connection inside a {n}-byte literal\nsession:\n{}", self.log());
            }
        }
        self.buf.drain(..n).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Thunderbird

/// The header fields Thunderbird 153 asks for when it lists a folder.
pub const THUNDERBIRD_HEADER_FIELDS: &str = "From To Cc Bcc Subject Date Message-ID Priority X-Priority References \
     Newsgroups In-Reply-To Content-Type Reply-To Received";

/// What a [`thunderbird`] replay saw.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    /// (the command line as sent, with its tag, without CRLF and without literal data; the reply).
    pub steps: Vec<(String, Reply)>,
    /// `BODY[]` of the offline download, by UID.
    pub bodies: BTreeMap<u32, Vec<u8>>,
    /// The `HEADER.FIELDS` bytes of the header fetch, by UID.
    pub headers: BTreeMap<u32, Vec<u8>>,
    /// `RFC822.SIZE` as reported in the body download, by UID.
    pub sizes: BTreeMap<u32, u32>,
    /// `FLAGS` from the first `UID fetch 1:* (FLAGS)`, by UID.
    pub flags: BTreeMap<u32, Vec<String>>,
    pub uidvalidity: u32,
    pub uidnext: Option<u32>,
    pub exists: u32,
    /// The last capability list seen (greeting, CAPABILITY, or the login's `[CAPABILITY …]`).
    pub capabilities: String,
    pub greeting: String,
    /// `[APPENDUID v u]` of the Sent copy.
    pub appenduid: Option<(u32, u32)>,
}

impl Transcript {
    /// The reply to the first command that (after its tag) starts with `cmd_prefix`.
    pub fn step(&self, cmd_prefix: &str) -> &Reply {
        self.steps
            .iter()
            .find(|(c, _)| c.split_once(' ').is_some_and(|(_, c)| c.starts_with(cmd_prefix)))
            .map(|(_, r)| r)
            .unwrap_or_else(|| panic!("no step {cmd_prefix:?} in transcript:\n{}", self.dump()))
    }

    /// The commands sent, without tags.
    pub fn commands(&self) -> Vec<&str> {
        self.steps.iter().map(|(c, _)| c.split_once(' ').map_or(c.as_str(), |(_, c)| c)).collect()
    }

    pub fn failed(&self) -> Vec<&(String, Reply)> {
        self.steps.iter().filter(|(_, r)| !r.ok()).collect()
    }

    pub fn assert_all_ok(&self) {
        assert!(self.failed().is_empty(), "Thunderbird steps failed:\n{}", self.dump());
    }

    /// Every command and its tagged answer (bodies left out).
    pub fn dump(&self) -> String {
        let mut s = format!("greeting: {}\n", self.greeting);
        for (c, r) in &self.steps {
            let _ =
                writeln!(s, "C: {c}\n   ({} lines) S: {}", r.lines.len(), r.lines.last().map_or("", String::as_str));
        }
        s
    }
}

struct Tb {
    raw: Raw,
    next: u32,
    tr: Transcript,
}

impl Tb {
    fn tag(&mut self) -> String {
        let t = self.next.to_string();
        self.next += 1;
        t
    }
    fn note_caps(&mut self, r: &Reply) {
        for l in &r.lines {
            if let Some(c) = caps_in(l) {
                self.tr.capabilities = c;
            }
        }
    }
    fn record(&mut self, line: String, r: Reply) -> Reply {
        self.note_caps(&r);
        self.tr.steps.push((line, r.clone()));
        r
    }
    fn step(&mut self, cmd: &str) -> Reply {
        let tag = self.tag();
        let r = self.raw.cmd(&tag, cmd);
        self.record(format!("{tag} {cmd}"), r)
    }
    fn cap(&self, c: &str) -> bool {
        has_cap(&self.tr.capabilities, c)
    }
    /// `<tag> authenticate <mech>`, answering each `+` continuation with the next response.
    fn authenticate(&mut self, mech: &str, responses: &[String]) -> Reply {
        let tag = self.tag();
        let line = format!("{tag} authenticate {mech}");
        self.raw.send(format!("{line}\r\n").as_bytes());
        let mut reply = Reply::default();
        let mut answers = responses.iter();
        loop {
            let raw = self.raw.read_line_bytes();
            let text = String::from_utf8_lossy(&raw).into_owned();
            let cont = text.starts_with('+');
            let tagged = text.starts_with(&format!("{tag} "));
            if tagged {
                reply.tagged = text[tag.len() + 1..].to_string();
            }
            reply.lines.push(text);
            reply.raw.push(raw);
            if tagged {
                break;
            }
            if cont {
                // out of answers: cancel, like a client that has nothing more to say
                let a = answers.next().cloned().unwrap_or_else(|| "*".to_string());
                self.raw.send(format!("{a}\r\n").as_bytes());
            }
        }
        self.record(line, reply)
    }
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Replays Thunderbird 153's command sequence for `mailbox` (fallback variant without
/// LIST-EXTENDED), appends `sent_message` to `sent_folder` and IDLEs once, then drops the
/// connection without LOGOUT. Panics only if login fails; every other step is recorded, so
/// tests assert on the [`Transcript`].
pub fn thunderbird(t: &Target, mailbox: &str, sent_folder: &str, sent_message: &[u8]) -> Transcript {
    let raw = Raw::open(t);
    let mut tb = Tb { tr: Transcript { greeting: raw.greeting().to_string(), ..Default::default() }, raw, next: 1 };
    if let Some(c) = caps_in(&tb.tr.greeting) {
        tb.tr.capabilities = c;
    }
    if t.security == Security::StartTls {
        let tag = tb.tag();
        let r = tb.raw.starttls_tagged(&tag);
        tb.record(format!("{tag} STARTTLS"), r);
        tb.tr.capabilities.clear();
    }
    if tb.tr.capabilities.is_empty() {
        tb.step("capability");
    }

    // login: AUTHENTICATE PLAIN (no SASL-IR), then AUTHENTICATE LOGIN, then LOGIN
    let mut logged_in = false;
    if tb.cap("AUTH=PLAIN") {
        let plain = b64(format!("\0{}\0{}", t.user, t.password).as_bytes());
        logged_in = tb.authenticate("PLAIN", &[plain]).ok();
    }
    if !logged_in && tb.cap("AUTH=LOGIN") {
        logged_in = tb.authenticate("LOGIN", &[b64(t.user.as_bytes()), b64(t.password.as_bytes())]).ok();
    }
    if !logged_in && !tb.cap("LOGINDISABLED") {
        logged_in = tb.step(&format!("login {} {}", quote(&t.user), quote(&t.password))).ok();
    }
    assert!(logged_in, "Thunderbird replay could not log in as {}:\n{}", t.user, tb.tr.dump());
    if tb.tr.steps.last().is_none_or(|(_, r)| r.code("CAPABILITY").is_none()) {
        tb.step("capability");
    }

    if tb.cap("NAMESPACE") {
        tb.step("namespace");
    }
    if tb.cap("ID") {
        tb.step(r#"ID ("name" "Thunderbird" "version" "153.8.0")"#);
    }
    tb.step(r#"list "" "*""#);
    tb.step(r#"lsub "" "*""#);
    tb.step(r#"list "" "INBOX""#);

    let sel = tb.step(&format!("select {}", quote(mailbox)));
    tb.tr.exists = sel.number("EXISTS").unwrap_or(0);
    tb.tr.uidvalidity = sel.code("UIDVALIDITY").and_then(|v| v.parse().ok()).unwrap_or(0);
    tb.tr.uidnext = sel.code("UIDNEXT").and_then(|v| v.parse().ok());

    let flags = tb.step("UID fetch 1:* (FLAGS)");
    for f in flags.fetches() {
        if let Some(uid) = f.uid() {
            tb.tr.flags.insert(uid, f.flags().unwrap_or_default());
        }
    }
    let uids: Vec<u32> = tb.tr.flags.keys().copied().collect();
    let set = uid_set(&uids);
    if !uids.is_empty() {
        let h = tb.step(&format!(
            "UID fetch {set} (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS ({THUNDERBIRD_HEADER_FIELDS})])"
        ));
        for f in h.fetches() {
            if let (Some(uid), Some(v)) = (f.uid(), f.get_prefix("BODY[HEADER.FIELDS")) {
                tb.tr.headers.insert(uid, v.to_vec());
            }
        }
    }
    tb.step("noop");
    let next = uids.last().map_or(1, |u| u + 1);
    tb.step(&format!("UID fetch {next}:* (FLAGS)"));
    if !uids.is_empty() {
        let b = tb.step(&format!("UID fetch {set} (UID RFC822.SIZE BODY.PEEK[])"));
        for f in b.fetches() {
            let Some(uid) = f.uid() else { continue };
            if let Some(v) = f.get("BODY[]") {
                tb.tr.bodies.insert(uid, v.to_vec());
            }
            if let Some(n) = f.num("RFC822.SIZE") {
                tb.tr.sizes.insert(uid, n);
            }
        }
    }

    // the Sent copy: LITERAL+ when offered, else a synchronising literal
    let tag = tb.tag();
    let plus = tb.cap("LITERAL+");
    let line = format!(
        "{tag} append {} (\\Seen) {{{}{}}}",
        quote(sent_folder),
        sent_message.len(),
        if plus { "+" } else { "" }
    );
    tb.raw.send(format!("{line}\r\n").as_bytes());
    let mut pre = Vec::new();
    let mut early = None;
    if !plus {
        let l = tb.raw.read_line_bytes();
        let text = String::from_utf8_lossy(&l).into_owned();
        if !text.starts_with('+') {
            early = Some(text.clone());
        }
        pre.push(l);
    }
    let append = if early.as_deref().is_some_and(|l| l.starts_with(&format!("{tag} "))) {
        let text = early.unwrap_or_default();
        Reply { tagged: text[tag.len() + 1..].to_string(), lines: vec![text], raw: pre }
    } else {
        let mut data = sent_message.to_vec();
        data.extend_from_slice(b"\r\n");
        tb.raw.send(&data);
        let mut r = tb.raw.read_until_tagged(&tag);
        for (i, l) in pre.into_iter().enumerate() {
            r.lines.insert(i, String::from_utf8_lossy(&l).into_owned());
            r.raw.insert(i, l);
        }
        r
    };
    tb.tr.appenduid = append.code("APPENDUID").and_then(|v| {
        let mut it = v.split(' ');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    });
    tb.record(line, append);

    if tb.cap("IDLE") {
        let tag = tb.tag();
        tb.raw.send(format!("{tag} IDLE\r\n").as_bytes());
        let first = tb.raw.read_line_bytes();
        let text = String::from_utf8_lossy(&first).into_owned();
        let r = if text.starts_with('+') {
            tb.raw.send(b"DONE\r\n");
            let mut r = tb.raw.read_until_tagged(&tag);
            r.lines.insert(0, text);
            r.raw.insert(0, first);
            r
        } else if text.starts_with(&format!("{tag} ")) {
            Reply { tagged: text[tag.len() + 1..].to_string(), lines: vec![text], raw: vec![first] }
        } else {
            let mut r = tb.raw.read_until_tagged(&tag);
            r.lines.insert(0, text);
            r.raw.insert(0, first);
            r
        };
        tb.record(format!("{tag} IDLE"), r);
    }
    let Tb { raw, tr, .. } = tb;
    raw.drop_connection();
    tr
}

// ---------------------------------------------------------------------------------------------
// External processes

/// Runs `cmd` with stdout/stderr in files (no pipe deadlocks), killing it after `timeout`.
/// Returns (exit code or -1, stdout, stderr).
pub fn run_with_timeout(mut cmd: Command, timeout: Duration, what: &str) -> (i32, Vec<u8>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let out = std::fs::File::create(&out_path).expect("create stdout file");
    let err = std::fs::File::create(&err_path).expect("create stderr file");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill(); // our own child, by its handle
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read(&out_path).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&std::fs::read(&err_path).unwrap_or_default()).into_owned();
    match status {
        Some(s) => (s.code().unwrap_or(-1), stdout, stderr),
        None => panic!(
            "{what} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&stdout)
        ),
    }
}

/// The target as [`run_program`] passes it, and a TLS context trusting its CA: the start of
/// every Python client's prelude.
const PYTHON_TARGET: &str = r#"import os, ssl, sys
_port = int(os.environ["PB_IMAP_PORT"])
_sec = os.environ["PB_IMAP_SECURITY"]
_ca = os.environ.get("PB_IMAP_CA") or None
def _ctx():
    return ssl.create_default_context(cafile=_ca)
"#;

const PYTHON_PRELUDE: &str = r#"import imaplib
if _sec == "implicit":
    M = imaplib.IMAP4_SSL("127.0.0.1", _port, ssl_context=_ctx(), timeout=10)
elif _sec == "starttls":
    M = imaplib.IMAP4("127.0.0.1", _port, timeout=10)
    M.starttls(ssl_context=_ctx())
else:
    M = imaplib.IMAP4("127.0.0.1", _port, timeout=10)
M.login(os.environ["PB_IMAP_USER"], os.environ["PB_IMAP_PASS"])
# ---- test script ----
"#;

const PYTHON_EPILOGUE: &str = r#"
# ---- end of test script ----
try:
    if M.state != "LOGOUT":
        M.logout()
except Exception:
    pass
"#;

/// Runs `script` with a logged-in imaplib client `M` (IMAP4 / IMAP4_SSL / IMAP4 + starttls, with
/// an ssl context trusting `ca_pem`, host 127.0.0.1); returns stdout. Panics with stderr on failure.
pub fn python(t: &Target, script: &str) -> String {
    let (code, out, err) =
        run_python(t, &format!("{PYTHON_TARGET}{PYTHON_PRELUDE}{script}{PYTHON_EPILOGUE}"), "python3 (imaplib)");
    assert_eq!(code, 0, "imaplib script failed (exit {code})\nstdout:\n{out}\nstderr:\n{err}\nscript:\n{script}");
    out
}

const IMAPCLIENT_PRELUDE: &str = r#"from imapclient import IMAPClient
if _sec == "implicit":
    C = IMAPClient("127.0.0.1", port=_port, ssl=True, ssl_context=_ctx(), timeout=10)
else:
    C = IMAPClient("127.0.0.1", port=_port, ssl=False, timeout=10)
    if _sec == "starttls":
        C.starttls(_ctx())
C.login(os.environ["PB_IMAP_USER"], os.environ["PB_IMAP_PASS"])
# ---- test script ----
"#;

/// Where IMAPClient comes from (scripts/test.sh installs it for the `python3` on PATH).
pub const IMAPCLIENT_INSTALL_HINT: &str = "python3 -m pip install imapclient==4.1.0";

/// Runs `script` with a logged-in IMAPClient (PyPI `imapclient`) `C`, host 127.0.0.1, TLS as
/// the target says; returns stdout. Panics with stderr (and the install hint) on failure.
pub fn imapclient(t: &Target, script: &str) -> String {
    let (code, out, err) =
        run_python(t, &format!("{PYTHON_TARGET}{IMAPCLIENT_PRELUDE}{script}"), "python3 (IMAPClient)");
    let hint = if err.contains("No module named 'imapclient'") {
        format!("IMAPClient is not installed for python3: {IMAPCLIENT_INSTALL_HINT} (scripts/test.sh does it)\n")
    } else {
        String::new()
    };
    assert_eq!(code, 0, "{hint}IMAPClient script failed (exit {code})\nstdout:\n{out}\nstderr:\n{err}");
    out
}

/// Runs a Python program (`python3` on PATH) with the target in `PB_IMAP_*`: (exit code, stdout, stderr).
fn run_python(t: &Target, program: &str, what: &str) -> (i32, String, String) {
    run_program("python3", t, program, what)
}

/// Runs `program` (a script for `interpreter`, e.g. `python3` or `perl`) with the target in the
/// environment (`PB_IMAP_PORT`, `PB_IMAP_SECURITY` plain/implicit/starttls, `PB_IMAP_CA`,
/// `PB_IMAP_USER`, `PB_IMAP_PASS`), bounded by [`PROCESS_TIMEOUT`]: (exit code, stdout, stderr).
pub fn run_program(interpreter: &str, t: &Target, program: &str, what: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("imap_test_script");
    std::fs::write(&path, program).expect("write script");
    let mut cmd = Command::new(interpreter);
    cmd.arg(&path)
        .env("PB_IMAP_PORT", t.host_port.to_string())
        .env(
            "PB_IMAP_SECURITY",
            match t.security {
                Security::Plain => "plain",
                Security::Implicit => "implicit",
                Security::StartTls => "starttls",
            },
        )
        .env("PB_IMAP_CA", t.ca_pem.as_ref().map(|p| p.display().to_string()).unwrap_or_default())
        .env("PB_IMAP_USER", &t.user)
        .env("PB_IMAP_PASS", &t.password)
        .env("PYTHONIOENCODING", "utf-8")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let (code, out, err) = run_with_timeout(cmd, PROCESS_TIMEOUT, what);
    (code, String::from_utf8_lossy(&out).into_owned(), err)
}

/// curl `imap[s]://127.0.0.1:PORT/<path>` with `-u user:pass` (and `--cacert`, `--ssl-reqd` for
/// STARTTLS); returns (exit code, stdout, stderr). Add `-v` to `extra` to see the protocol.
pub fn curl(t: &Target, path: &str, extra: &[&str]) -> (i32, Vec<u8>, String) {
    let scheme = if t.security == Security::Implicit { "imaps" } else { "imap" };
    let url = format!("{scheme}://{HOST}:{}/{path}", t.host_port);
    let mut cmd = Command::new("curl");
    cmd.args(["-q", "-sS", "--connect-timeout", "10", "--max-time", "60", "-u"])
        .arg(format!("{}:{}", t.user, t.password));
    if let Some(ca) = &t.ca_pem {
        cmd.arg("--cacert").arg(ca);
    }
    if t.security == Security::StartTls {
        cmd.arg("--ssl-reqd");
    }
    cmd.args(extra).arg(&url).env("HOME", std::env::temp_dir());
    run_with_timeout(cmd, PROCESS_TIMEOUT, &format!("curl {url}"))
}

// ---------------------------------------------------------------------------------------------
// mbsync

/// mbsync (isync 1.4) with a fresh config: Far = the IMAP target's `mailbox`, Near = a maildir.
pub struct Mbsync {
    pub dir: TempDir,
    /// The near-side maildir (cur/ new/ tmp/, and mbsync's `.mbsyncstate`).
    pub maildir: PathBuf,
    pub config: PathBuf,
    pub target: Target,
    pub mailbox: String,
}

fn mbsync_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Mbsync {
    /// Writes `mbsyncrc` with channels `pull` (`Sync Pull`, `Create Near`) and `push`
    /// (`Sync Push Flags`), both with the state in the maildir (`SyncState *`). `AuthMechs *`:
    /// mbsync picks the "most secure" mechanism both sides know (against Dovecot: CRAM-MD5).
    pub fn new(t: &Target, mailbox: &str) -> Mbsync {
        Mbsync::with_auth_mechs(t, mailbox, "*")
    }

    /// [`new`](Self::new) with `AuthMechs <mechs>` (e.g. `PLAIN`, or `LOGIN` = the IMAP LOGIN command).
    pub fn with_auth_mechs(t: &Target, mailbox: &str, mechs: &str) -> Mbsync {
        let dir = tempfile::tempdir().expect("temp dir");
        let maildir = dir.path().join("maildir");
        let config = dir.path().join("mbsyncrc");
        let ssl = match t.security {
            Security::Plain => "None",
            Security::Implicit => "IMAPS",
            Security::StartTls => "STARTTLS",
        };
        let mut c = format!(
            "IMAPAccount far\nHost {TLS_NAME}\nPort {}\nUser {}\nPass {}\nSSLType {ssl}\nAuthMechs {mechs}\nTimeout 20\n",
            t.host_port,
            mbsync_quote(&t.user),
            mbsync_quote(&t.password)
        );
        if let Some(ca) = &t.ca_pem {
            let _ = writeln!(c, "CertificateFile {}\nSystemCertificates no", mbsync_quote(&ca.display().to_string()));
        }
        let far = mbsync_quote(&format!(":far:{mailbox}"));
        let _ = write!(
            c,
            "\nIMAPStore far\nAccount far\n\nMaildirStore near\nInbox {}/\n\n\
             Channel pull\nFar {far}\nNear :near:\nCreate Near\nSync Pull\nExpunge None\nSyncState *\n\n\
             Channel push\nFar {far}\nNear :near:\nSync Push Flags\nExpunge None\nSyncState *\n",
            maildir.display()
        );
        std::fs::write(&config, c).expect("write mbsyncrc");
        Mbsync { dir, maildir, config, target: t.clone(), mailbox: mailbox.to_string() }
    }

    /// `mbsync -V -c mbsyncrc <args>`: (exit code, stdout + stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String) {
        let mut cmd = Command::new("mbsync");
        cmd.arg("-V").arg("-c").arg(&self.config).args(args).env("HOME", self.dir.path());
        let (code, out, err) = run_with_timeout(cmd, PROCESS_TIMEOUT, "mbsync");
        (code, format!("{}{err}", String::from_utf8_lossy(&out)))
    }

    /// Full pull of the mailbox into the maildir (must succeed); returns mbsync's output.
    pub fn pull(&self) -> String {
        let (code, out) = self.run(&["pull"]);
        assert_eq!(code, 0, "mbsync pull failed:\n{out}");
        out
    }

    /// Pushes flag changes made in the maildir to the server (must succeed); returns the output.
    pub fn push(&self) -> String {
        let (code, out) = self.run(&["push"]);
        assert_eq!(code, 0, "mbsync push failed:\n{out}");
        out
    }

    /// Every message file (cur/ and new/) with its bytes, in far-side UID order where known.
    pub fn messages(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<PathBuf> = ["cur", "new"]
            .iter()
            .filter_map(|d| std::fs::read_dir(self.maildir.join(d)).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        let far = self.far_uids();
        files.sort_by_key(|p| (near_uid(p).and_then(|u| far.get(&u).copied()).unwrap_or(u32::MAX), p.clone()));
        files
            .into_iter()
            .map(|p| {
                let b = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
                (p, b)
            })
            .collect()
    }

    /// Renames a message file to `<base>:2,<flags>` in cur/ (flags sorted, as maildir requires).
    pub fn set_maildir_flags(&self, path: &Path, flags: &str) -> PathBuf {
        let name = path.file_name().expect("file name").to_string_lossy().into_owned();
        let base = name.split_once(":2,").map_or(name.as_str(), |(b, _)| b);
        let mut f: Vec<char> = flags.chars().collect();
        f.sort_unstable();
        let new = self.maildir.join("cur").join(format!("{base}:2,{}", f.into_iter().collect::<String>()));
        std::fs::rename(path, &new).unwrap_or_else(|e| panic!("rename {} → {}: {e}", path.display(), new.display()));
        new
    }

    /// Near (maildir `,U=`) UID → far (server) UID, from `.mbsyncstate`.
    pub fn far_uids(&self) -> BTreeMap<u32, u32> {
        let text = std::fs::read_to_string(self.maildir.join(".mbsyncstate")).unwrap_or_default();
        let mut map = BTreeMap::new();
        // header lines ("Key value"), a blank line, then "far near flags" per pair
        for line in text.lines().skip_while(|l| !l.is_empty()) {
            let mut it = line.split(' ');
            if let (Some(Ok(far)), Some(Ok(near))) =
                (it.next().map(str::parse::<u32>), it.next().map(str::parse::<u32>))
            {
                map.insert(near, far);
            }
        }
        map
    }

    /// The server UID of a message file.
    pub fn far_uid(&self, path: &Path) -> u32 {
        let near = near_uid(path).unwrap_or_else(|| panic!("no ,U= in {}", path.display()));
        *self.far_uids().get(&near).unwrap_or_else(|| panic!("near UID {near} not in .mbsyncstate"))
    }
}

/// The `,U=<n>` mbsync writes into maildir file names.
fn near_uid(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let rest = &name[name.find(",U=")? + 3..];
    rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())].parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Conformance checks (run by the self-tests against Dovecot; reusable against popbridge)

/// A small message for the Sent copy.
pub fn sent_message() -> Vec<u8> {
    b"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\nSubject: sent by the Thunderbird replay\r\n\
Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <tb-replay-1@example.com>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=UTF-8\r\n\r\nHello Bob,\r\n\r\nthis is the Sent copy.\r\n"
        .to_vec()
}

/// `UID FETCH 1:* (FLAGS)` on a fresh connection (EXAMINE, so nothing changes): flags by UID,
/// `\Recent` left out.
pub fn server_flags(t: &Target, mailbox: &str) -> BTreeMap<u32, Vec<String>> {
    let mut r = Raw::connect_login(t);
    r.cmd("F1", &format!("EXAMINE {}", quote(mailbox))).assert_ok("EXAMINE");
    let f = r.cmd("F2", "UID FETCH 1:* (FLAGS)");
    f.assert_ok("UID FETCH FLAGS");
    r.logout();
    f.fetches()
        .into_iter()
        .map(|f| {
            let mut fl: Vec<String> = f.flags().unwrap_or_default().into_iter().filter(|x| x != "\\Recent").collect();
            fl.sort();
            (f.uid().expect("UID in FETCH"), fl)
        })
        .collect()
}

/// Raw session: greeting, CAPABILITY, LOGIN, SELECT, FETCH with a literal, BAD for garbage, LOGOUT.
/// `served` are the messages the server should serve for `mailbox`, in UID order (≥ 1).
pub fn check_raw(t: &Target, mailbox: &str, served: &[Vec<u8>]) {
    let mut r = Raw::connect(t);
    assert!(r.greeting().starts_with("* OK"), "greeting: {}", r.greeting());
    let caps = r.cmd("a1", "CAPABILITY");
    assert!(caps.ok(), "CAPABILITY: {:?}", caps.lines);
    let list = caps.untagged("* CAPABILITY ");
    assert_eq!(list.len(), 1, "one * CAPABILITY line: {:?}", caps.lines);
    assert!(has_cap(list[0], "IMAP4rev1"), "IMAP4rev1 missing: {}", list[0]);
    if t.security != Security::Plain {
        assert!(r.is_tls());
        assert!(!has_cap(list[0], "STARTTLS"), "STARTTLS offered again inside TLS: {}", list[0]);
    }
    let login = r.cmd("a2", &format!("LOGIN {} {}", quote(&t.user), quote(&t.password)));
    assert!(login.ok(), "LOGIN: {:?}", login.lines);
    let sel = r.cmd("a3", &format!("SELECT {}", quote(mailbox)));
    assert!(sel.ok(), "SELECT: {:?}", sel.lines);
    assert_eq!(sel.number("EXISTS"), Some(served.len() as u32), "EXISTS: {:?}", sel.lines);
    assert!(sel.code("UIDVALIDITY").is_some(), "no UIDVALIDITY: {:?}", sel.lines);
    assert!(sel.tagged.to_ascii_uppercase().contains("[READ-WRITE]"), "SELECT tagged: {}", sel.tagged);
    let f = r.cmd("a4", "FETCH 1 (UID RFC822.SIZE BODY.PEEK[])");
    assert!(f.ok(), "FETCH: {:?}", f.tagged);
    let fetches = f.fetches();
    assert_eq!(fetches.len(), 1, "one FETCH response: {:?}", f.lines);
    assert_eq!(fetches[0].seq, 1);
    let body = fetches[0].get("BODY[]").expect("BODY[] in FETCH");
    assert_bytes_eq(body, &served[0], "BODY[] of message 1");
    assert_eq!(fetches[0].num("RFC822.SIZE"), Some(served[0].len() as u32), "RFC822.SIZE");
    let lit = format!("BODY[] {{{}}}\r\n", served[0].len());
    assert!(f.raw[0].windows(lit.len()).any(|w| w == lit.as_bytes()), "literal announced as {lit:?}");
    let bad = r.cmd("a5", "FROBNICATE now");
    assert!(bad.bad(), "unknown command must be BAD: {:?}", bad.lines);
    let bad2 = r.cmd("a6", "FETCH");
    assert!(bad2.bad(), "FETCH without arguments must be BAD: {:?}", bad2.lines);
    let noop = r.cmd("a7", "NOOP");
    assert!(noop.ok(), "the session survives BAD: {:?}", noop.lines);
    let out = r.cmd("a8", "LOGOUT");
    assert!(out.ok(), "LOGOUT: {:?}", out.lines);
    assert_eq!(out.untagged("* BYE").len(), 1, "BYE before the tagged OK: {:?}", out.lines);
    assert!(out.lines[0].starts_with("* BYE"), "BYE first: {:?}", out.lines);
    r.expect_closed();
}

/// The Thunderbird replay: every step OK, bodies/sizes equal `served`, header fetch complete,
/// APPENDUID, the appended copy readable and `\Seen`, IDLE continuation. Returns the transcript.
pub fn check_thunderbird(t: &Target, mailbox: &str, sent_folder: &str, served: &[Vec<u8>]) -> Transcript {
    let sent = sent_message();
    let tr = thunderbird(t, mailbox, sent_folder, &sent);
    tr.assert_all_ok();
    let auth = tr.step("authenticate PLAIN");
    assert!(auth.lines[0].starts_with("+"), "AUTHENTICATE PLAIN continuation: {:?}", auth.lines);
    assert_eq!(tr.exists, served.len() as u32, "EXISTS");
    assert_ne!(tr.uidvalidity, 0, "UIDVALIDITY");
    assert_eq!(tr.bodies.len(), served.len(), "bodies downloaded:\n{}", tr.dump());
    for (i, (uid, body)) in tr.bodies.iter().enumerate() {
        assert_bytes_eq(body, &served[i], &format!("body of UID {uid} (message {i})"));
        assert_eq!(tr.sizes.get(uid), Some(&(body.len() as u32)), "RFC822.SIZE of UID {uid}");
    }
    assert_eq!(tr.headers.len(), served.len(), "header fetch covers every message");
    let inbox = tr.step(r#"list "" "INBOX""#);
    assert_eq!(inbox.untagged("* LIST").len(), 1, "list INBOX: {:?}", inbox.lines);
    let all = tr.step(r#"list "" "*""#);
    assert!(
        all.untagged("* LIST")
            .iter()
            .any(|l| l.contains(&quote(sent_folder)) || l.ends_with(&format!(" {sent_folder}"))),
        "{sent_folder} in list: {:?}",
        all.lines
    );
    let next = tr.step(&format!("UID fetch {}:* (FLAGS)", tr.flags.keys().last().map_or(1, |u| u + 1)));
    assert!(next.fetches().len() <= 1, "<next>:* returns at most the last message: {:?}", next.lines);
    let (v, u) = tr.appenduid.unwrap_or_else(|| panic!("no APPENDUID:\n{}", tr.dump()));
    let idle = tr.step("IDLE");
    assert!(idle.lines[0].starts_with("+ "), "IDLE continuation: {:?}", idle.lines);

    // the Sent copy arrived byte-exact, \Seen, under the announced UID
    let mut r = Raw::connect_login(t);
    let ex = r.cmd("s1", &format!("EXAMINE {}", quote(sent_folder)));
    ex.assert_ok("EXAMINE sent");
    assert_eq!(ex.code("UIDVALIDITY"), Some(v.to_string()), "APPENDUID validity");
    let f = r.cmd("s2", &format!("UID FETCH {u} (FLAGS BODY.PEEK[])"));
    f.assert_ok("UID FETCH sent copy");
    let fs = f.fetches();
    assert_eq!(fs.len(), 1, "{:?}", f.lines);
    assert_eq!(fs[0].get("BODY[]"), Some(sent.as_slice()), "the appended message");
    assert!(fs[0].flags().unwrap_or_default().iter().any(|f| f == "\\Seen"), "\\Seen on the Sent copy");
    r.logout();
    tr
}

/// imaplib: list, select (EXISTS), search UNSEEN, fetch BODY.PEEK[] of every message == `served`.
/// Expects every message unseen.
pub fn check_python(t: &Target, mailbox: &str, served: &[Vec<u8>]) {
    let script = format!(
        r#"
import hashlib
typ, data = M.list()
assert typ == "OK", (typ, data)
print("LIST", len(data))
for d in data:
    print("  ", d.decode())
typ, data = M.select({mb})
assert typ == "OK", (typ, data)
print("EXISTS", int(data[0]))
typ, data = M.search(None, "UNSEEN")
assert typ == "OK", (typ, data)
print("UNSEEN", data[0].decode())
typ, data = M.fetch("1:*", "(BODY.PEEK[])")
assert typ == "OK", (typ, data)
for item in data:
    if isinstance(item, tuple):
        print("MSG", item[0].decode().split()[0], len(item[1]), hashlib.sha256(item[1]).hexdigest())
typ, data = M.close()
assert typ == "OK", (typ, data)
"#,
        // what a user writes: a bare atom when it is one, else an IMAP quoted string
        mb = if mailbox.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            format!("{mailbox:?}")
        } else {
            format!("{:?}", quote(mailbox))
        }
    );
    let out = python(t, &script);
    assert!(out.lines().any(|l| l == format!("EXISTS {}", served.len())), "imaplib output:\n{out}");
    let unseen: Vec<String> = (1..=served.len()).map(|i| i.to_string()).collect();
    assert!(out.lines().any(|l| l == format!("UNSEEN {}", unseen.join(" "))), "UNSEEN:\n{out}");
    let msgs: Vec<&str> = out.lines().filter(|l| l.starts_with("MSG ")).collect();
    assert_eq!(msgs.len(), served.len(), "imaplib fetched:\n{out}");
    for (i, m) in served.iter().enumerate() {
        let want = format!("MSG {} {} {}", i + 1, m.len(), sha256_hex(m));
        assert_eq!(msgs[i], want, "message {}", i + 1);
    }
    assert!(out.lines().any(|l| l.starts_with("LIST ")), "{out}");
}

pub fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// curl: `INBOX;UID=n` for a few messages equals `served[n-1]`; the root URL lists `mailbox`;
/// `INBOX?ALL` searches.
pub fn check_curl(t: &Target, mailbox: &str, served: &[Vec<u8>]) {
    for uid in [1, served.len().div_ceil(2), served.len()] {
        let (code, out, err) = curl(t, &format!("{mailbox};UID={uid}"), &[]);
        assert_eq!(code, 0, "curl UID={uid}: {err}");
        assert_bytes_eq(&out, &served[uid - 1], &format!("curl body of UID {uid}"));
    }
    let (code, out, err) = curl(t, "", &[]);
    assert_eq!(code, 0, "curl list: {err}");
    let listing = String::from_utf8_lossy(&out).into_owned();
    assert!(listing.lines().any(|l| l.starts_with("* LIST") && l.contains(mailbox)), "curl listing:\n{listing}");
    let (code, out, err) = curl(t, &format!("{mailbox}?ALL"), &[]);
    assert_eq!(code, 0, "curl search: {err}");
    let search = String::from_utf8_lossy(&out).into_owned();
    let all: Vec<String> = (1..=served.len()).map(|i| i.to_string()).collect();
    assert_eq!(search.trim_end(), format!("* SEARCH {}", all.join(" ")), "curl search output");
}

/// mbsync: pull `mailbox` (files = `served` with CRLF → LF), set `S`, `F`, `RS` on three files,
/// push, and check on the server that exactly those flags arrived. Expects no flags beforehand.
pub fn check_mbsync(t: &Target, mailbox: &str, served: &[Vec<u8>]) -> Mbsync {
    let m = Mbsync::new(t, mailbox);
    let out = m.pull();
    let msgs = m.messages();
    assert_eq!(msgs.len(), served.len(), "mbsync pulled:\n{out}");
    for (i, (p, b)) in msgs.iter().enumerate() {
        assert_eq!(m.far_uid(p), i as u32 + 1, "{}", p.display());
        let (b, tuid) = mbsync_strip_tuid(b);
        assert!(tuid.is_some_and(|t| t.len() == 12), "mbsync 1.4 adds an X-TUID header: {}", p.display());
        assert_bytes_eq(&b, &mbsync_stores(&served[i]), &format!("maildir file {} (message {})", p.display(), i + 1));
    }
    let picks = [(0usize, "S", vec!["\\Seen"]), (1, "F", vec!["\\Flagged"]), (4, "RS", vec!["\\Answered", "\\Seen"])];
    for (i, flags, _) in &picks {
        m.set_maildir_flags(&msgs[*i].0, flags);
    }
    let out = m.push();
    let server = server_flags(t, mailbox);
    assert_eq!(server.len(), served.len(), "server messages after push:\n{out}");
    for (uid, flags) in &server {
        let want: Vec<String> = picks
            .iter()
            .find(|(i, _, _)| *i as u32 + 1 == *uid)
            .map(|(_, _, f)| f.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(flags, &want, "flags of UID {uid} after mbsync push:\n{out}");
    }
    m
}
