//! Protocol tests of the IMAP server: bytes in, bytes out, in process (no subprocess, no Dovecot).
//!
//! Each test starts its own server on `127.0.0.1:0` over a fresh store in a temp dir: account
//! `Work` with six generated messages (plain, multipart/alternative, multipart/mixed with a
//! forwarded message/rfc822, an RFC 2047 subject…), the local user `me` / `pw`, and a TLS acceptor
//! on a generated certificate for STARTTLS. A [`Client`] speaks raw bytes and reads complete
//! responses (literals included verbatim); responses are compared byte for byte where RFC 3501
//! fixes them.

mod binary;
mod condstore;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::server::Shared;

mod search_ext;
use super::session::listen;
use crate::net::listener::{Limits, Slots};
use crate::net::throttle::Throttle;
use crate::net::tls;
use crate::secret::Secret;
use crate::store::accounts::AccountIds;
use crate::store::{Delivery, Store};

mod list;
mod sort;

/// How long any single read or write may take before the test fails.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

// ----- the messages -----

pub(super) fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

/// 1: RFC 3501's APPEND example message.
pub(super) const M1: &str = "Date: Mon, 7 Feb 1994 21:52:25 -0800
From: Fred Foobar <foobar@Blurdybloop.example>
Subject: afternoon meeting
To: mooch@owatagu.siam.example
Message-Id: <B27397-0100000@Blurdybloop.example>
MIME-Version: 1.0
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII

Hello Joe, do you think we can meet at 3:30 tomorrow?
";

/// 2: multipart/alternative.
pub(super) const M2: &str = "Date: Tue, 1 Feb 2022 09:00:00 +0000
From: Bob Jones <bob@example.net>
To: me@example.org
Subject: Weekly report
Message-ID: <m2@example.net>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=\"alt\"

--alt
Content-Type: text/plain; charset=utf-8

Numbers are up this week.
--alt
Content-Type: text/html; charset=utf-8

<p>Numbers are <b>up</b> this week.</p>
--alt--
";

/// 3: multipart/mixed with a forwarded message/rfc822.
pub(super) const M3: &str = "Date: Wed, 2 Mar 2022 10:30:00 +0100
From: Carol White <carol@example.com>
To: me@example.org
Subject: Fwd: Flight booking
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=\"mix\"

--mix
Content-Type: text/plain; charset=us-ascii

See the booking below.
--mix
Content-Type: message/rfc822

Date: Tue, 1 Mar 2022 08:00:00 +0000
From: Airline <noreply@airline.example>
To: carol@example.com
Subject: Your booking XK42

Flight XK42 departs at 07:15.
--mix--
";

/// 4: RFC 2047 encoded subject ("Grüße aus Berlin") and sender, 8-bit UTF-8 body.
pub(super) const M4: &str = "Date: Thu, 3 Mar 2022 12:00:00 +0100
From: =?UTF-8?Q?Dieter_M=C3=BCller?= <dieter@example.de>
To: me@example.org
Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgQmVybGlu?=
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Viele Grüße aus Berlin!
";

pub(super) const M5: &str = "Date: Fri, 4 Mar 2022 08:15:00 -0500
From: John Smith <smith@example.com>
To: me@example.org
Subject: Budget meeting
Message-ID: <m5@example.com>

Can we move the budget meeting to Monday?
";

pub(super) const M6: &str = "Date: Sat, 5 Mar 2022 18:00:00 +0000
From: Eve Adams <eve@example.org>
To: me@example.org
Subject: Photos from the offsite

The photos are on the shared drive.
";

pub(super) fn corpus() -> Vec<Vec<u8>> {
    [M1, M2, M3, M4, M5, M6].iter().map(|m| crlf(m)).collect()
}

/// A message arriving later (a fetcher).
pub(super) fn late_message(n: usize) -> Vec<u8> {
    crlf(&format!(
        "Date: Sun, 6 Mar 2022 09:00:00 +0000\nFrom: Late Sender <late@example.org>\nTo: me@example.org\nSubject: Late message {n}\n\nArrived while you were connected.\n"
    ))
}

/// `{n}\r\n` + data: a literal as the server sends it.
pub(super) fn lit(data: &str) -> String {
    format!("{{{}}}\r\n{}", data.len(), data)
}

// ----- the server -----

pub(super) struct Harness {
    pub(super) _dir: tempfile::TempDir,
    pub(super) store: Arc<Store>,
    pub(super) ids: AccountIds,
    pub(super) addr: SocketAddr,
    pub(super) cert: PathBuf,
    pub(super) keys: AtomicUsize,
    pub(super) shutdown: watch::Sender<bool>,
}

impl Harness {
    /// A server over a fresh store holding the six messages in account Work's mailbox.
    pub(super) async fn start() -> Harness {
        let dir = crate::store::private_tempdir();
        let sp = dir.path().join("data/store.sqlite");
        let (store, ids) = tokio::task::spawn_blocking(move || {
            let store = Store::open(&sp).unwrap();
            let ids = store.ensure_account("Work").unwrap();
            (Arc::new(store), ids)
        })
        .await
        .unwrap();
        let (cert, _) = tls::ensure_local_cert(&dir.path().join("tls")).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config().unwrap());
        let shared = Arc::new(Shared {
            store: store.clone(),
            changes: store.changes(),
            live: Arc::new(crate::config::Live::new(
                crate::config::parse(
                    "[local]\nuser = \"me\"\npassword = \"pw\"\n",
                    std::path::Path::new("test.toml"),
                    0o600,
                )
                .unwrap(),
                Secret::new("pw"),
            )),
            tls: Some(acceptor),
            throttle: Arc::new(Throttle::default()),
            slots: Slots::new("imap", Limits::imap(&Default::default())),
            alerts: tokio::sync::broadcast::channel(16).0,
            kick: None,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        tokio::spawn(listen(listener, None, shared, rx));
        let h = Harness { _dir: dir, store, ids, addr, cert: cert.cert, keys: AtomicUsize::new(0), shutdown: tx };
        h.deliver(corpus()).await;
        h
    }

    /// Stores messages as the fetcher does: `Delivery::add` each, one `commit` (which notifies
    /// the sessions through `Changes::notify`). Returns their UIDs.
    pub(super) async fn deliver(&self, msgs: Vec<Vec<u8>>) -> Vec<i64> {
        let store = self.store.clone();
        let ids = self.ids;
        let first = self.keys.fetch_add(msgs.len(), Ordering::SeqCst);
        tokio::task::spawn_blocking(move || {
            let server = store.pop_server(ids.account, "pop.example:995/me").unwrap().id;
            let mut d = Delivery::new(&store, ids, server).unwrap();
            for (i, m) in msgs.iter().enumerate() {
                let id = crate::store::Identity::new(&format!("uidl-{}", first + i), m.len() as u64);
                assert_eq!(d.add(&id, m, 1_700_000_000).unwrap(), crate::store::Added::New);
            }
            let stored = d.commit().unwrap();
            store.notify();
            stored.into_iter().map(|s| s.uid).collect()
        })
        .await
        .unwrap()
    }

    pub(super) fn uidvalidity(&self, mailbox: &str) -> i64 {
        self.store.uidvalidity(mailbox).unwrap().unwrap()
    }

    /// A connection, greeting read and checked.
    pub(super) async fn connect(&self) -> Client {
        let tcp = timeout(TcpStream::connect(self.addr)).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut c = Client { s: Stream::Plain(tcp), buf: Vec::new() };
        let g = c.read_line().await;
        assert_eq!(
            s(&g),
            "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE AUTH=PLAIN AUTH=LOGIN STARTTLS] popbridge ready\r\n"
        );
        c
    }

    /// A connection logged in as `user`.
    pub(super) async fn login(&self, user: &str) -> Client {
        let mut c = self.connect().await;
        let r = c.cmd("L", &format!("LOGIN {user} pw")).await;
        assert_eq!(r.len(), 1, "{}", show(&r));
        assert!(s(&r[0]).starts_with("L OK [CAPABILITY IMAP4rev1 "), "{}", show(&r));
        c
    }

    /// A connection logged in as `me` with Work selected (the six messages, all \Recent here).
    pub(super) async fn selected(&self) -> Client {
        let mut c = self.login("me").await;
        let r = c.cmd("S", "SELECT Work").await;
        assert_eq!(s(r.last().unwrap()), "S OK [READ-WRITE] SELECT completed\r\n", "{}", show(&r));
        c
    }

    pub(super) fn client_tls_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in tls::load_certs(&self.cert).unwrap() {
            roots.add(c).unwrap();
        }
        Arc::new(
            rustls::ClientConfig::builder_with_provider(tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

pub(super) async fn timeout<T>(f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {TIMEOUT:?}"),
    }
}

// ----- the client -----

pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub(super) struct Client {
    pub(super) s: Stream,
    /// Received, not yet consumed.
    pub(super) buf: Vec<u8>,
}

pub(super) fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(super) fn show(r: &[Vec<u8>]) -> String {
    r.iter().map(|l| s(l)).collect::<String>()
}

/// The length announced by a line ending in `{n}\r\n`.
pub(super) fn literal_len(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}\r\n")?;
    let open = body.iter().rposition(|b| *b == b'{')?;
    let digits = &body[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl Client {
    pub(super) async fn send(&mut self, bytes: &[u8]) {
        timeout(async {
            self.s.write_all(bytes).await.unwrap();
            self.s.flush().await.unwrap();
        })
        .await
    }

    /// Sends `bytes` in pieces of `chunk` bytes, each written and flushed on its own.
    pub(super) async fn send_chunked(&mut self, bytes: &[u8], chunk: usize) {
        for piece in bytes.chunks(chunk) {
            self.send(piece).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Reads more bytes; false at EOF.
    pub(super) async fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 16 * 1024];
        match timeout(self.s.read(&mut tmp)).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    pub(super) async fn read_exact_n(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if !self.fill().await {
                panic!("EOF inside a literal; got {:?}", s(&self.buf));
            }
        }
        self.buf.drain(..n).collect()
    }

    /// One line, CRLF included (a line ending in a bare LF fails the test).
    pub(super) async fn read_line(&mut self) -> Vec<u8> {
        loop {
            if let Some(p) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=p).collect();
                assert!(line.ends_with(b"\r\n"), "server line without CRLF: {:?}", s(&line));
                return line;
            }
            if !self.fill().await {
                panic!("connection closed; pending {:?}", s(&self.buf));
            }
        }
    }

    /// One complete response: a line, and when it announces a literal, the literal and the rest
    /// of the response, verbatim.
    pub(super) async fn read_response(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let line = self.read_line().await;
            let n = literal_len(&line);
            out.extend_from_slice(&line);
            match n {
                Some(n) => {
                    let data = self.read_exact_n(n).await;
                    out.extend_from_slice(&data);
                }
                None => return out,
            }
        }
    }

    /// Responses up to and including the one tagged `tag`.
    pub(super) async fn read_until_tagged(&mut self, tag: &str) -> Vec<Vec<u8>> {
        let prefix = format!("{tag} ");
        let mut out = Vec::new();
        loop {
            let r = self.read_response().await;
            let done = r.starts_with(prefix.as_bytes());
            out.push(r);
            if done {
                return out;
            }
        }
    }

    /// Sends `tag command\r\n` and reads to the tagged response.
    pub(super) async fn cmd(&mut self, tag: &str, command: &str) -> Vec<Vec<u8>> {
        self.send(format!("{tag} {command}\r\n").as_bytes()).await;
        self.read_until_tagged(tag).await
    }

    /// Sends a command and asserts its whole response, line by line (CRLF added).
    pub(super) async fn expect<S: AsRef<str>>(&mut self, tag: &str, command: &str, want: &[S]) {
        assert_resp(&self.cmd(tag, command).await, want);
    }

    /// Asserts that the server closes the connection; returns what it sent before.
    pub(super) async fn expect_closed(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }

    /// Asserts that nothing arrives for `ms` milliseconds.
    pub(super) async fn expect_quiet(&mut self, ms: u64) {
        let mut tmp = [0u8; 1024];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(ms), self.s.read(&mut tmp)).await {
            let n = r.unwrap_or(0);
            panic!("unexpected data: {:?}{:?}", s(&self.buf), s(&tmp[..n]));
        }
        assert!(self.buf.is_empty(), "unexpected data: {:?}", s(&self.buf));
    }

    /// After a tagged `OK` to STARTTLS: the TLS handshake, trusting the server's certificate.
    pub(super) async fn starttls(self, config: Arc<rustls::ClientConfig>) -> Client {
        assert!(self.buf.is_empty(), "nothing may follow the STARTTLS OK before the handshake: {:?}", s(&self.buf));
        let Stream::Plain(tcp) = self.s else { panic!("already TLS") };
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = timeout(tokio_rustls::TlsConnector::from(config).connect(name, tcp)).await.unwrap();
        Client { s: Stream::Tls(Box::new(tls)), buf: Vec::new() }
    }
}

/// Asserts the responses byte for byte; `want` without each response's final CRLF.
#[track_caller]
pub(super) fn assert_resp<S: AsRef<str>>(got: &[Vec<u8>], want: &[S]) {
    let want: Vec<String> = want.iter().map(|w| format!("{}\r\n", w.as_ref())).collect();
    let got_s: Vec<String> = got.iter().map(|g| s(g)).collect();
    assert_eq!(got_s, want, "\n--- got ---\n{}--- want ---\n{}", got_s.concat(), want.concat());
}

pub(super) fn no_expunge(r: &[Vec<u8>]) -> bool {
    !r.iter().any(|l| s(l).contains(" EXPUNGE"))
}

pub(super) const CAPS_AUTH: &str = "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE ESEARCH SEARCHRES WITHIN BINARY MULTIAPPEND LIST-EXTENDED LIST-STATUS STATUS=SIZE CONDSTORE QRESYNC SORT SORT=DISPLAY THREAD=REFERENCES THREAD=ORDEREDSUBJECT";
pub(super) const CAPS_PRE: &str = "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE AUTH=PLAIN AUTH=LOGIN";

pub(super) fn select_lines(exists: usize, recent: usize, unseen: Option<usize>, uv: i64, next: u32) -> Vec<String> {
    let mut v = vec![
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)".to_string(),
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] flags and keywords are kept".into(),
        format!("* {exists} EXISTS"),
        format!("* {recent} RECENT"),
    ];
    if let Some(u) = unseen {
        v.push(format!("* OK [UNSEEN {u}] first unseen"));
    }
    v.push(format!("* OK [UIDVALIDITY {uv}] UIDs valid"));
    v.push(format!("* OK [UIDNEXT {next}] predicted next UID"));
    v
}

// ===== connection, capabilities, authentication =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_and_capabilities_before_and_after_login() {
    let h = Harness::start().await;
    let mut c = h.connect().await;
    c.expect("a1", "CAPABILITY", &[format!("* CAPABILITY {CAPS_PRE} STARTTLS"), "a1 OK CAPABILITY completed".into()])
        .await;
    let r = c.cmd("a2", "LOGIN me pw").await;
    assert_resp(&r, &[format!("a2 OK [CAPABILITY {CAPS_AUTH}] logged in")]);
    let r = c.cmd("a3", "CAPABILITY").await;
    assert_resp(&r, &[format!("* CAPABILITY {CAPS_AUTH}"), "a3 OK CAPABILITY completed".into()]);
    let caps = s(&r[0]);
    for never in ["AUTH=", "STARTTLS", "COMPRESS", "LOGINDISABLED"] {
        assert!(!caps.contains(never), "{never} advertised after login: {caps}");
    }
    for word in caps.trim_end().split(' ').skip(2) {
        assert!(!word.is_empty());
    }
    c.expect("a4", "NAMESPACE", &["* NAMESPACE ((\"\" \"/\")) NIL NIL", "a4 OK NAMESPACE completed"]).await;
    c.expect(
        "a5",
        "ID (\"name\" \"Thunderbird\" \"version\" \"153.8.0\")",
        &[
            format!("* ID (\"name\" \"popbridge\" \"version\" \"{}\")", env!("CARGO_PKG_VERSION")),
            "a5 OK ID completed".into(),
        ],
    )
    .await;
    c.expect("a6", "ENABLE CONDSTORE", &["* ENABLED CONDSTORE", "a6 OK ENABLE completed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_forms_failures_and_commands_before_login() {
    let h = Harness::start().await;
    let mut c = h.connect().await;
    // Nothing but the any-state and not-authenticated commands before login.
    for (tag, cmd) in [
        ("b1", "SELECT Work"),
        ("b2", "LIST \"\" \"*\""),
        ("b3", "STATUS Work (MESSAGES)"),
        ("b4", "CREATE Foo"),
        ("b5", "NAMESPACE"),
        ("b6", "APPEND Work {1+}\r\nx"),
    ] {
        let r = c.cmd(tag, cmd).await;
        assert_resp(&r, &[format!("{tag} NO log in first (LOGIN or AUTHENTICATE)")]);
    }
    c.expect("b7", "FETCH 1 FLAGS", &["b7 NO log in first (LOGIN or AUTHENTICATE)"]).await;
    c.expect("b8", "NOOP", &["b8 OK completed"]).await;
    // Wrong password, wrong user.
    c.expect("c1", "LOGIN me wrong", &["c1 NO [AUTHENTICATIONFAILED] wrong user name or password"]).await;
    // Quoted strings.
    let r = c.cmd("c2", "LOGIN \"me\" \"pw\"").await;
    assert_resp(&r, &[format!("c2 OK [CAPABILITY {CAPS_AUTH}] logged in")]);
    c.expect("c3", "LOGIN me pw", &["c3 BAD already logged in"]).await;
    c.expect("c4", "LOGOUT", &["* BYE logging out", "c4 OK LOGOUT completed"]).await;
    assert!(c.expect_closed().await.is_empty());

    // A literal password, fed one byte at a time; the literal waits for the continuation.
    let mut c = h.connect().await;
    c.send_chunked(b"d1 LOGIN {2}\r\n", 1).await;
    assert_eq!(s(&c.read_line().await), "+ ready for literal data\r\n");
    c.send_chunked(b"me {2}\r\n", 1).await;
    assert_eq!(s(&c.read_line().await), "+ ready for literal data\r\n");
    c.send_chunked(b"pw\r\n", 1).await;
    assert_resp(&c.read_until_tagged("d1").await, &[format!("d1 OK [CAPABILITY {CAPS_AUTH}] logged in")]);
    assert_resp(&c.cmd("d2", "SELECT Work").await[2..3], &["* 6 EXISTS"]);

    // A literal+ password in odd-sized chunks.
    let mut c = h.connect().await;
    c.send_chunked(b"e1 LOGIN me {2+}\r\npw\r\n", 3).await;
    assert_resp(&c.read_until_tagged("e1").await, &[format!("e1 OK [CAPABILITY {CAPS_AUTH}] logged in")]);

    // An unknown user with the right password.
    let mut c = h.connect().await;
    c.expect("f1", "LOGIN you pw", &["f1 NO [AUTHENTICATIONFAILED] wrong user name or password"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_plain_login_and_cancel() {
    let h = Harness::start().await;
    let ok = |t: &str| format!("{t} OK [CAPABILITY {CAPS_AUTH}] logged in");

    // PLAIN with SASL-IR (RFC 4959): "\0me\0pw".
    let mut c = h.connect().await;
    c.expect("a1", "AUTHENTICATE PLAIN AG1lAHB3", &[ok("a1")]).await;
    c.expect("a2", "AUTHENTICATE PLAIN AG1lAHB3", &["a2 BAD already logged in"]).await;

    // PLAIN without SASL-IR (Thunderbird): an empty challenge, then the credentials.
    let mut c = h.connect().await;
    c.send(b"b1 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(s(&c.read_line().await), "+ \r\n");
    c.send(b"AG1lAHB3\r\n").await;
    assert_resp(&c.read_until_tagged("b1").await, &[ok("b1")]);

    // Cancelled with "*": tagged BAD (RFC 3501 §6.2.2), the session goes on.
    let mut c = h.connect().await;
    c.send(b"c1 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(s(&c.read_line().await), "+ \r\n");
    c.send(b"*\r\n").await;
    assert_resp(&c.read_until_tagged("c1").await, &["c1 BAD authentication cancelled"]);
    // Wrong password.
    c.send(b"c2 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(s(&c.read_line().await), "+ \r\n");
    c.send(b"AG1lAHdyb25n\r\n").await;
    assert_resp(&c.read_until_tagged("c2").await, &["c2 NO [AUTHENTICATIONFAILED] wrong user name or password"]);
    c.expect("c3", "AUTHENTICATE PLAIN AG1lK1dvcmsAcHc=", &[ok("c3")]).await;
    // The account login sees Work as INBOX.
    c.expect("c4", "STATUS INBOX (MESSAGES)", &["* STATUS INBOX (MESSAGES 6)", "c4 OK STATUS completed"]).await;

    // LOGIN mechanism: "Username:" and "Password:" challenges, base64.
    let mut c = h.connect().await;
    c.send(b"d1 AUTHENTICATE LOGIN\r\n").await;
    assert_eq!(s(&c.read_line().await), "+ VXNlcm5hbWU6\r\n");
    c.send(b"bWU=\r\n").await;
    assert_eq!(s(&c.read_line().await), "+ UGFzc3dvcmQ6\r\n");
    c.send(b"cHc=\r\n").await;
    assert_resp(&c.read_until_tagged("d1").await, &[ok("d1")]);

    // An unsupported mechanism.
    let mut c = h.connect().await;
    let r = c.cmd("e1", "AUTHENTICATE CRAM-MD5").await;
    assert_resp(&r, &["e1 NO unsupported mechanism: use PLAIN or LOGIN"]);
    c.expect("e2", "NOOP", &["e2 OK completed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_logins_see_the_account_subtree() {
    let h = Harness::start().await;
    for user in ["me+Work", "me@Work", "me+work"] {
        let mut c = h.login(user).await;
        let r = c.cmd("a", "SELECT INBOX").await;
        assert_eq!(s(&r[2]), "* 6 EXISTS\r\n", "{user}: {}", show(&r));
        assert_eq!(s(&r[5]), format!("* OK [UIDVALIDITY {}] UIDs valid\r\n", h.uidvalidity("Work")));
    }
    let mut c = h.connect().await;
    c.expect("b", "LOGIN me+Home pw", &["b NO [AUTHENTICATIONFAILED] wrong user name or password"]).await;
    c.expect("c", "LOGIN me+Work pw", &[format!("c OK [CAPABILITY {CAPS_AUTH}] logged in")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_says_bye_then_ok_then_closes() {
    let h = Harness::start().await;
    let mut c = h.connect().await;
    c.send(b"a LOGOUT\r\n").await;
    let rest = c.expect_closed().await;
    assert_eq!(s(&rest), "* BYE logging out\r\na OK LOGOUT completed\r\n");
    let mut c = h.selected().await;
    c.send(b"b LOGOUT\r\n").await;
    assert_eq!(s(&c.expect_closed().await), "* BYE logging out\r\nb OK LOGOUT completed\r\n");
}

// ===== STARTTLS =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_upgrades_and_drops_starttls_from_capabilities() {
    let h = Harness::start().await;
    let mut c = h.connect().await;
    c.expect("a1", "STARTTLS", &["a1 OK begin TLS negotiation now"]).await;
    let mut c = c.starttls(h.client_tls_config()).await;
    // No second greeting over TLS (RFC 3501 §6.2.1); the client asks again.
    c.expect("a2", "CAPABILITY", &[format!("* CAPABILITY {CAPS_PRE}"), "a2 OK CAPABILITY completed".into()]).await;
    c.expect("a3", "STARTTLS", &["a3 BAD TLS is already active"]).await;
    c.expect("a4", "LOGIN me pw", &[format!("a4 OK [CAPABILITY {CAPS_AUTH}] logged in")]).await;
    let r = c.cmd("a5", "FETCH 1 (BODY.PEEK[])").await;
    assert_resp(&r, &["a5 NO select a mailbox first"]);
    let r = c.cmd("a6", "EXAMINE Work").await;
    assert_eq!(s(r.last().unwrap()), "a6 OK [READ-ONLY] EXAMINE completed\r\n");
    let r = c.cmd("a7", "FETCH 1 (BODY.PEEK[])").await;
    assert_resp(&r, &[format!("* 1 FETCH (BODY[] {})", lit(&s(&crlf(M1)))), "a7 OK FETCH completed".into()]);
    c.send(b"a8 LOGOUT\r\n").await;
    let rest = c.expect_closed().await;
    assert_eq!(s(&rest), "* BYE logging out\r\na8 OK LOGOUT completed\r\n");

    // Not after login.
    let mut c = h.login("me").await;
    c.expect("b1", "STARTTLS", &["b1 BAD STARTTLS is not available now"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_pipelined_plaintext_closes_the_connection() {
    let h = Harness::start().await;
    let mut c = h.connect().await;
    c.send(b"a STARTTLS\r\nb LOGIN me pw\r\n").await;
    let rest = c.expect_closed().await;
    let text = s(&rest);
    assert!(!text.contains("b OK") && !text.contains("logged in"), "injection logged in: {text:?}");
    assert!(text.is_empty() || text == "a OK begin TLS negotiation now\r\n", "{text:?}");
}

// ===== SELECT / EXAMINE =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_and_examine_responses_and_recent() {
    let h = Harness::start().await;
    let uv = h.uidvalidity("Work");
    // EXAMINE first: read-only, does not claim \Recent.
    let mut c = h.login("me").await;
    let r = c.cmd("a1", "EXAMINE Work").await;
    let mut want = select_lines(6, 6, Some(1), uv, 7);
    want[1] = "* OK [PERMANENTFLAGS ()] read-only".into();
    want.push("a1 OK [READ-ONLY] EXAMINE completed".into());
    assert_resp(&r, &want);
    c.expect("a2", "STORE 1 +FLAGS (\\Seen)", &["a2 NO [READ-ONLY] the mailbox is read-only (EXAMINE)"]).await;
    c.expect("a3", "EXPUNGE", &["a3 NO [READ-ONLY] the mailbox is read-only (EXAMINE)"]).await;
    // BODY[] in a read-only mailbox does not set \Seen.
    let r = c.cmd("a4", "FETCH 1 (FLAGS BODY[HEADER.FIELDS (SUBJECT)])").await;
    assert_resp(
        &r,
        &[
            format!(
                "* 1 FETCH (FLAGS (\\Recent) BODY[HEADER.FIELDS (SUBJECT)] {})",
                lit("Subject: afternoon meeting\r\n\r\n")
            ),
            "a4 OK FETCH completed".into(),
        ],
    );

    // The first SELECT claims \Recent.
    let r = c.cmd("a5", "SELECT Work").await;
    let mut want = select_lines(6, 6, Some(1), uv, 7);
    want.push("a5 OK [READ-WRITE] SELECT completed".into());
    assert_resp(&r, &want);
    c.expect("a6", "SEARCH RECENT", &["* SEARCH 1 2 3 4 5 6", "a6 OK SEARCH completed"]).await;

    // A second session: nothing is recent for it, by SELECT or EXAMINE.
    let mut d = h.login("me").await;
    let r = d.cmd("b1", "SELECT Work").await;
    let mut want = select_lines(6, 0, Some(1), uv, 7);
    want.push("b1 OK [READ-WRITE] SELECT completed".into());
    assert_resp(&r, &want);
    let r = d.cmd("b2", "EXAMINE Work").await;
    assert_eq!(s(&r[3]), "* 0 RECENT\r\n");
    d.expect("b3", "SEARCH RECENT", &["* SEARCH", "b3 OK SEARCH completed"]).await;
    d.expect("b4", "FETCH 1 (FLAGS)", &["* 1 FETCH (FLAGS ())", "b4 OK FETCH completed"]).await;

    // Reselecting in the first session: the messages are no longer recent for anyone.
    let r = c.cmd("a7", "SELECT Work").await;
    assert_eq!(s(&r[3]), "* 0 RECENT\r\n");

    // A missing mailbox: NO, and nothing is selected afterwards (RFC 3501 §6.3.1).
    c.expect("a8", "SELECT Nope", &["a8 NO [NONEXISTENT] no such mailbox"]).await;
    c.expect("a9", "FETCH 1 FLAGS", &["a9 NO select a mailbox first"]).await;

    // UNSEEN points at the first unseen message; an empty mailbox has UIDNEXT 1 and no UNSEEN.
    assert_resp(&c.cmd("a10", "SELECT Work").await[4..5], &["* OK [UNSEEN 1] first unseen"]);
    c.cmd("a11", "STORE 1:2 +FLAGS.SILENT (\\Seen)").await;
    assert_resp(&c.cmd("a12", "SELECT Work").await[4..5], &["* OK [UNSEEN 3] first unseen"]);
    let r = c.cmd("a13", "SELECT Trash").await;
    let mut want = select_lines(0, 0, None, h.uidvalidity("Trash"), 1);
    want.push("a13 OK [READ-WRITE] SELECT completed".into());
    assert_resp(&r, &want);
}

// ===== LIST / LSUB =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_lsub_patterns() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    let all = [
        "* LIST (\\HasNoChildren) \"/\" INBOX",
        "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"",
        "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
        "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"",
        "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"",
        "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"",
        "* LIST (\\HasNoChildren) \"/\" \"Work\"",
        "a1 OK LIST completed",
    ];
    c.expect("a1", "LIST \"\" \"*\"", &all).await;
    c.expect("a1", "LIST \"\" *", &all).await;
    c.expect("a2", "LIST \"\" \"\"", &["* LIST (\\Noselect) \"/\" \"\"", "a2 OK LIST completed"]).await;
    c.expect("a3", "LIST \"\" inbox", &["* LIST (\\HasNoChildren) \"/\" INBOX", "a3 OK LIST completed"]).await;

    c.expect("b1", "CREATE Work/Projects/", &["b1 OK CREATE completed"]).await;
    c.expect("b2", "CREATE Work/Projects/2025", &["b2 OK CREATE completed"]).await;
    c.expect("b3", "CREATE Work/Sent", &["b3 OK CREATE completed"]).await;
    c.expect(
        "b4",
        "LIST \"\" %",
        &[
            "* LIST (\\HasNoChildren) \"/\" INBOX",
            "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
            "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"",
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"",
            "* LIST (\\HasChildren) \"/\" \"Work\"",
            "b4 OK LIST completed",
        ],
    )
    .await;
    // The account's own Sent is a plain folder in the combined view.
    let work_children =
        ["* LIST (\\HasChildren) \"/\" \"Work/Projects\"", "* LIST (\\HasNoChildren) \"/\" \"Work/Sent\""];
    let mut want: Vec<String> = work_children.iter().map(|x| x.to_string()).collect();
    want.push("b5 OK LIST completed".into());
    c.expect("b5", "LIST \"\" Work/%", &want).await;
    want.pop();
    want.push("b6 OK LIST completed".into());
    c.expect("b6", "LIST Work/ %", &want).await;
    c.expect(
        "b7",
        "LIST Work/ *",
        &[
            "* LIST (\\HasChildren) \"/\" \"Work/Projects\"",
            "* LIST (\\HasNoChildren) \"/\" \"Work/Projects/2025\"",
            "* LIST (\\HasNoChildren) \"/\" \"Work/Sent\"",
            "b7 OK LIST completed",
        ],
    )
    .await;
    c.expect("b8", "LIST \"\" Nothing*", &["b8 OK LIST completed"]).await;

    // LSUB: every mailbox is subscribed from the start, created ones too (the store's default,
    // so that Thunderbird's subscribed-only view shows them); UNSUBSCRIBE / SUBSCRIBE change that.
    c.expect("c0", "UNSUBSCRIBE Work/Projects", &["c0 OK completed"]).await;
    c.expect("c0", "UNSUBSCRIBE Work/Projects/2025", &["c0 OK completed"]).await;
    c.expect("c0", "UNSUBSCRIBE Work/Sent", &["c0 OK completed"]).await;
    let lsub: Vec<String> = all[..6]
        .iter()
        .map(|l| l.replacen("LIST", "LSUB", 1))
        .chain(["* LSUB (\\HasChildren) \"/\" \"Work\"".to_string(), "c1 OK LSUB completed".to_string()])
        .collect();
    c.expect("c1", "LSUB \"\" *", &lsub).await;
    c.expect("c2", "SUBSCRIBE Work/Sent", &["c2 OK completed"]).await;
    c.expect("c3", "LSUB \"\" Work/*", &["* LSUB (\\HasNoChildren) \"/\" \"Work/Sent\"", "c3 OK LSUB completed"]).await;
    c.expect("c4", "UNSUBSCRIBE Work/Sent", &["c4 OK completed"]).await;
    c.expect("c5", "LSUB \"\" Work/*", &["c5 OK LSUB completed"]).await;
    c.expect("c6", "SUBSCRIBE Nope", &["c6 NO [NONEXISTENT] no such mailbox"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_in_an_account_view() {
    let h = Harness::start().await;
    let mut c = h.login("me+Work").await;
    let want = [
        "* LIST (\\HasNoChildren) \"/\" INBOX",
        "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"",
        "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
        "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"",
        "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"",
        "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"",
        "a1 OK LIST completed",
    ];
    c.expect("a1", "LIST \"\" *", &want).await;
    let lsub: Vec<String> = want.iter().map(|l| l.replacen("LIST", "LSUB", 1)).collect();
    let mut lsub = lsub[..6].to_vec();
    lsub.push("a2 OK LSUB completed".into());
    c.expect("a2", "LSUB \"\" *", &lsub).await;
    // The special folders come into being on first use; the store's INBOX is invisible here.
    let r = c.cmd("a3", "APPEND Sent (\\Seen) {9+}\r\nHi: x\r\n\r\n").await;
    assert_eq!(r.len(), 1);
    assert!(s(&r[0]).starts_with(&format!("a3 OK [APPENDUID {} 1]", h.uidvalidity("Work/Sent"))), "{}", show(&r));
    c.expect("a4", "LIST \"\" Sent", &["* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"", "a4 OK LIST completed"]).await;
    c.expect("a5", "STATUS Sent (MESSAGES)", &["* STATUS \"Sent\" (MESSAGES 1)", "a5 OK STATUS completed"]).await;
    let mut d = h.login("me").await;
    d.expect(
        "b1",
        "LIST \"\" Work*",
        &[
            "* LIST (\\HasChildren) \"/\" \"Work\"",
            "* LIST (\\HasNoChildren) \"/\" \"Work/Sent\"",
            "b1 OK LIST completed",
        ],
    )
    .await;
    d.expect("b2", "STATUS Sent (MESSAGES)", &["* STATUS \"Sent\" (MESSAGES 0)", "b2 OK STATUS completed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modified_utf7_names_round_trip() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    c.expect("a1", "CREATE &ZeVnLIqe-", &["a1 OK CREATE completed"]).await;
    c.expect("a2", "CREATE \"Tom &- Jerry/Entw&APw-rfe\"", &["a2 OK CREATE completed"]).await;
    assert_resp(
        &c.cmd("a3", "LIST \"\" *").await[..3],
        &[
            "* LIST (\\HasNoChildren) \"/\" INBOX",
            "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
        ],
    );
    c.expect("a4", "LIST \"\" &ZeVnLIqe-", &["* LIST (\\HasNoChildren) \"/\" \"&ZeVnLIqe-\"", "a4 OK LIST completed"])
        .await;
    c.expect(
        "a5",
        "LIST \"\" \"Tom &- Jerry/*\"",
        &["* LIST (\\HasNoChildren) \"/\" \"Tom &- Jerry/Entw&APw-rfe\"", "a5 OK LIST completed"],
    )
    .await;
    c.expect(
        "a6",
        "STATUS &ZeVnLIqe- (MESSAGES UIDNEXT)",
        &["* STATUS \"&ZeVnLIqe-\" (MESSAGES 0 UIDNEXT 1)", "a6 OK STATUS completed"],
    )
    .await;
    c.expect("a7", "COPY 1 x", &["a7 NO select a mailbox first"]).await;
    c.cmd("a8", "SELECT Work").await;
    let r = c.cmd("a9", "COPY 1 &ZeVnLIqe-").await;
    assert_resp(&r, &[format!("a9 OK [COPYUID {} 1 1] COPY completed", h.uidvalidity("日本語"))]);
    assert_eq!(h.store.mailbox_messages("日本語").unwrap(), Some(1), "stored as UTF-8");
    // Invalid modified UTF-7 is refused.
    c.expect("a10", "CREATE &AGE-", &["a10 NO [CANNOT] not a valid mailbox name (modified UTF-7 expected)"]).await;
}

// ===== STATUS =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_agrees_with_select() {
    let h = Harness::start().await;
    let uv = h.uidvalidity("Work");
    let mut c = h.login("me").await;
    let r = c.cmd("a1", "STATUS Work (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)").await;
    assert_resp(
        &r,
        &[
            format!("* STATUS \"Work\" (MESSAGES 6 RECENT 6 UIDNEXT 7 UIDVALIDITY {uv} UNSEEN 6)"),
            "a1 OK STATUS completed".into(),
        ],
    );
    let r = c.cmd("a2", "SELECT Work").await;
    let mut want = select_lines(6, 6, Some(1), uv, 7);
    want.push("a2 OK [READ-WRITE] SELECT completed".into());
    assert_resp(&r, &want);
    c.cmd("a3", "STORE 2,4 +FLAGS.SILENT (\\Seen)").await;
    // After the SELECT claimed \Recent, no other session gets it: STATUS says 0.
    let mut d = h.login("me").await;
    let r = d.cmd("b1", "STATUS Work (UNSEEN MESSAGES RECENT)").await;
    assert_resp(&r, &["* STATUS \"Work\" (UNSEEN 4 MESSAGES 6 RECENT 0)", "b1 OK STATUS completed"]);
    let r = d.cmd("b2", "EXAMINE Work").await;
    let mut want = select_lines(6, 0, Some(1), uv, 7);
    want[1] = "* OK [PERMANENTFLAGS ()] read-only".into();
    want.push("b2 OK [READ-ONLY] EXAMINE completed".into());
    assert_resp(&r, &want);
    d.expect(
        "b3",
        "STATUS INBOX (MESSAGES UIDNEXT)",
        &["* STATUS INBOX (MESSAGES 0 UIDNEXT 1)", "b3 OK STATUS completed"],
    )
    .await;
    d.expect("b4", "STATUS Nope (MESSAGES)", &["b4 NO [NONEXISTENT] no such mailbox"]).await;
}

// ===== FETCH =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_rfc3501_examples() {
    let h = Harness::start().await;
    let mut c = h.selected().await;
    // RFC 3501 §6.4.5: A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)]) — BODY[...] sets \Seen.
    let r = c.cmd("A654", "FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])").await;
    assert_resp(
        &r,
        &[
            format!(
                "* 2 FETCH (FLAGS (\\Seen \\Recent) BODY[HEADER.FIELDS (DATE FROM)] {})",
                lit("Date: Tue, 1 Feb 2022 09:00:00 +0000\r\nFrom: Bob Jones <bob@example.net>\r\n\r\n")
            ),
            format!(
                "* 3 FETCH (FLAGS (\\Seen \\Recent) BODY[HEADER.FIELDS (DATE FROM)] {})",
                lit("Date: Wed, 2 Mar 2022 10:30:00 +0100\r\nFrom: Carol White <carol@example.com>\r\n\r\n")
            ),
            format!(
                "* 4 FETCH (FLAGS (\\Seen \\Recent) BODY[HEADER.FIELDS (DATE FROM)] {})",
                lit(
                    "Date: Thu, 3 Mar 2022 12:00:00 +0100\r\nFrom: =?UTF-8?Q?Dieter_M=C3=BCller?= <dieter@example.de>\r\n\r\n"
                )
            ),
            "A654 OK FETCH completed".into(),
        ],
    );
    // RFC 3501 §6.4.5 / §7.4.2: FETCH 1 (BODY[]) — \Seen is set and FLAGS comes with it.
    let m1 = s(&crlf(M1));
    let r = c.cmd("a2", "FETCH 1 (BODY[])").await;
    assert_resp(
        &r,
        &[format!("* 1 FETCH (FLAGS (\\Seen \\Recent) BODY[] {})", lit(&m1)), "a2 OK FETCH completed".into()],
    );
    // Already seen: no FLAGS the second time.
    let r = c.cmd("a3", "FETCH 1 BODY[]").await;
    assert_resp(&r, &[format!("* 1 FETCH (BODY[] {})", lit(&m1)), "a3 OK FETCH completed".into()]);
    // RFC 3501 §6.4.5 examples of section specs on the multipart messages.
    let r = c.cmd("a4", "FETCH 2 (BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[TEXT]<0.5>)").await;
    assert_resp(
        &r,
        &[
            format!(
                "* 2 FETCH (BODY[1] {} BODY[2.MIME] {} BODY[TEXT]<0> {})",
                lit("Numbers are up this week."),
                lit("Content-Type: text/html; charset=utf-8\r\n\r\n"),
                lit("--alt")
            ),
            "a4 OK FETCH completed".into(),
        ],
    );
    let r = c.cmd("a5", "FETCH 3 (BODY.PEEK[2.HEADER.FIELDS (SUBJECT)] BODY.PEEK[2.TEXT])").await;
    assert_resp(
        &r,
        &[
            format!(
                "* 3 FETCH (BODY[2.HEADER.FIELDS (SUBJECT)] {} BODY[2.TEXT] {})",
                lit("Subject: Your booking XK42\r\n\r\n"),
                lit("Flight XK42 departs at 07:15.")
            ),
            "a5 OK FETCH completed".into(),
        ],
    );
    // RFC822.HEADER does not set \Seen; RFC822.TEXT does (RFC 3501 §6.4.5).
    let m5 = s(&crlf(M5));
    let (hdr5, text5) = m5.split_at(m5.find("\r\n\r\n").unwrap() + 4);
    let r = c.cmd("a6", "FETCH 5 (RFC822.HEADER)").await;
    assert_resp(&r, &[format!("* 5 FETCH (RFC822.HEADER {})", lit(hdr5)), "a6 OK FETCH completed".into()]);
    let r = c.cmd("a7", "FETCH 5 (RFC822.TEXT)").await;
    assert_resp(
        &r,
        &[format!("* 5 FETCH (FLAGS (\\Seen \\Recent) RFC822.TEXT {})", lit(text5)), "a7 OK FETCH completed".into()],
    );
    // Macros: FAST = (FLAGS INTERNALDATE RFC822.SIZE); INTERNALDATE is the Date header's time.
    let r = c.cmd("a8", "FETCH 5 FAST").await;
    assert_resp(
        &r,
        &[
            format!(
                "* 5 FETCH (FLAGS (\\Seen \\Recent) INTERNALDATE \"04-Mar-2022 08:15:00 -0500\" RFC822.SIZE {})",
                m5.len()
            ),
            "a8 OK FETCH completed".into(),
        ],
    );
    let r = c.cmd("a9", "FETCH 6 (ENVELOPE)").await;
    assert_resp(
        &r,
        &[
            "* 6 FETCH (ENVELOPE (\"Sat, 5 Mar 2022 18:00:00 +0000\" \"Photos from the offsite\" ((\"Eve Adams\" NIL \"eve\" \"example.org\")) ((\"Eve Adams\" NIL \"eve\" \"example.org\")) ((\"Eve Adams\" NIL \"eve\" \"example.org\")) ((NIL NIL \"me\" \"example.org\")) NIL NIL NIL NIL))",
            "a9 OK FETCH completed",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_partial_uid_size_and_ranges() {
    let h = Harness::start().await;
    let mut c = h.selected().await;
    let m1 = s(&crlf(M1));
    // BODY[]<0.10>: the first ten octets, the origin echoed.
    let r = c.cmd("a1", "FETCH 1 (BODY.PEEK[]<0.10>)").await;
    assert_resp(&r, &[format!("* 1 FETCH (BODY[]<0> {})", lit(&m1[..10])), "a1 OK FETCH completed".into()]);
    let r = c.cmd("a2", "FETCH 1 (BODY.PEEK[]<10.5>)").await;
    assert_resp(&r, &[format!("* 1 FETCH (BODY[]<10> {})", lit(&m1[10..15])), "a2 OK FETCH completed".into()]);
    let r = c.cmd("a3", "FETCH 1 (BODY.PEEK[]<100000.5>)").await;
    assert_resp(&r, &["* 1 FETCH (BODY[]<100000> {0}\r\n)", "a3 OK FETCH completed"]);

    // UID FETCH includes UID, first when not asked for.
    let r = c.cmd("a4", "UID FETCH 2 (FLAGS)").await;
    assert_resp(&r, &["* 2 FETCH (UID 2 FLAGS (\\Recent))", "a4 OK FETCH completed"]);
    let r = c.cmd("a5", "UID FETCH 2:3 (FLAGS UID)").await;
    assert_resp(
        &r,
        &["* 2 FETCH (FLAGS (\\Recent) UID 2)", "* 3 FETCH (FLAGS (\\Recent) UID 3)", "a5 OK FETCH completed"],
    );
    // n:* with n above the highest UID still returns the last message (RFC 3501 §6.4.8).
    let r = c.cmd("a6", "UID FETCH 100:* (FLAGS)").await;
    assert_resp(&r, &["* 6 FETCH (UID 6 FLAGS (\\Recent))", "a6 OK FETCH completed"]);
    // UIDs that do not exist are no error.
    let r = c.cmd("a7", "UID FETCH 50:60 (FLAGS)").await;
    assert_resp(&r, &["a7 OK FETCH completed"]);
    // Sequence numbers beyond EXISTS are (RFC 3501 §9 seq-number).
    c.expect("a8", "FETCH 7 (FLAGS)", &["a8 BAD invalid message sequence number"]).await;
    c.expect("a9", "FETCH 5:7 (FLAGS)", &["a9 BAD invalid message sequence number"]).await;
    let r = c.cmd("a10", "FETCH 0 (FLAGS)").await;
    assert!(r.len() == 1 && s(&r[0]).starts_with("a10 BAD "), "{}", show(&r));

    // RFC822.SIZE equals the length of the BODY[] literal, for every message.
    let r = c.cmd("b1", "FETCH 1:* (RFC822.SIZE BODY.PEEK[])").await;
    assert_eq!(r.len(), 7, "{}", show(&r));
    for (i, resp) in r[..6].iter().enumerate() {
        let text = s(resp);
        let size: usize = text.split("RFC822.SIZE ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        let lit_len = literal_len(text.split_inclusive("\r\n").next().unwrap().as_bytes()).unwrap();
        assert_eq!(size, lit_len, "message {}", i + 1);
        assert_eq!(size, corpus()[i].len());
        assert!(text.ends_with(&format!("{})\r\n", s(&corpus()[i]))));
    }
    // None of that set \Seen.
    c.expect("b2", "SEARCH SEEN", &["* SEARCH", "b2 OK SEARCH completed"]).await;
    // UID FETCH with BODY[] sets \Seen: UID first, then FLAGS, then the section.
    let r = c.cmd("b3", "UID FETCH 6 (BODY[]<0.4>)").await;
    assert_resp(&r, &["* 6 FETCH (UID 6 FLAGS (\\Seen \\Recent) BODY[]<0> {4}\r\nDate)", "b3 OK FETCH completed"]);
    // Unknown items are BAD.
    let r = c.cmd("b4", "FETCH 1 (BINARY[TEXT])").await;
    assert_eq!(r.len(), 1);
    assert!(s(&r[0]).starts_with("b4 BAD "), "{}", show(&r));
}

// ===== STORE =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_flags_and_keywords() {
    let h = Harness::start().await;
    let mut c = h.selected().await;
    c.expect("a1", "STORE 1 +FLAGS (\\Deleted)", &["* 1 FETCH (FLAGS (\\Deleted \\Recent))", "a1 OK STORE completed"])
        .await;
    c.expect(
        "a2",
        "STORE 1:2 +FLAGS (\\Seen \\Flagged)",
        &[
            "* 1 FETCH (FLAGS (\\Seen \\Flagged \\Deleted \\Recent))",
            "* 2 FETCH (FLAGS (\\Seen \\Flagged \\Recent))",
            "a2 OK STORE completed",
        ],
    )
    .await;
    c.expect(
        "a3",
        "STORE 1 -FLAGS (\\Deleted)",
        &["* 1 FETCH (FLAGS (\\Seen \\Flagged \\Recent))", "a3 OK STORE completed"],
    )
    .await;
    c.expect(
        "a4",
        "STORE 1 FLAGS (\\Answered $label1 $Junk)",
        &[
            // New keywords are announced first (RFC 3501 §7.2.6; imap::tests::condstore).
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $label1 $Junk)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $label1 $Junk \\*)] flags and keywords are kept",
            "* 1 FETCH (FLAGS (\\Answered $label1 $Junk \\Recent))",
            "a4 OK STORE completed",
        ],
    )
    .await;
    // Keywords are case-insensitive: adding $junk again changes nothing.
    c.expect(
        "a5",
        "STORE 1 +FLAGS ($junk)",
        &["* 1 FETCH (FLAGS (\\Answered $label1 $Junk \\Recent))", "a5 OK STORE completed"],
    )
    .await;
    c.expect(
        "a6",
        "STORE 1 -FLAGS ($JUNK)",
        &["* 1 FETCH (FLAGS (\\Answered $label1 \\Recent))", "a6 OK STORE completed"],
    )
    .await;
    // .SILENT: no FETCH.
    c.expect("a7", "STORE 3 +FLAGS.SILENT (\\Draft)", &["a7 OK STORE completed"]).await;
    c.expect("a8", "FETCH 3 FLAGS", &["* 3 FETCH (FLAGS (\\Draft \\Recent))", "a8 OK FETCH completed"]).await;
    // Flag lists without parentheses.
    c.expect(
        "a9",
        "STORE 4 +FLAGS \\Seen $Work",
        &[
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $label1 $Junk $Work)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $label1 $Junk $Work \\*)] flags and keywords are kept",
            "* 4 FETCH (FLAGS (\\Seen $Work \\Recent))",
            "a9 OK STORE completed",
        ],
    )
    .await;
    // \Recent is not the client's to set or clear.
    c.cmd("b1", "STORE 5 +FLAGS (\\Recent)").await;
    c.cmd("b2", "STORE 6 -FLAGS (\\Recent)").await;
    let mut d = h.login("me").await;
    d.cmd("x", "SELECT Work").await;
    d.expect("b3", "FETCH 5:6 FLAGS", &["* 5 FETCH (FLAGS ())", "* 6 FETCH (FLAGS ())", "b3 OK FETCH completed"]).await;
    c.expect(
        "b4",
        "FETCH 5:6 FLAGS",
        &["* 5 FETCH (FLAGS (\\Recent))", "* 6 FETCH (FLAGS (\\Recent))", "b4 OK FETCH completed"],
    )
    .await;
    // UID STORE includes UID in its FETCH responses.
    c.expect(
        "c1",
        "UID STORE 2,4 -FLAGS (\\Seen)",
        &[
            "* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))",
            "* 4 FETCH (UID 4 FLAGS ($Work \\Recent))",
            "c1 OK STORE completed",
        ],
    )
    .await;
    c.expect("c2", "UID STORE 99 +FLAGS (\\Seen)", &["c2 OK STORE completed"]).await;
    c.expect("c3", "STORE 9 +FLAGS (\\Seen)", &["c3 BAD invalid message sequence number"]).await;
    // The other session hears of all of it at its next command (with UID, as unsolicited FETCH).
    let r = d.cmd("d1", "NOOP").await;
    assert_resp(&r, &["* 2 FETCH (UID 2 FLAGS (\\Flagged))", "* 4 FETCH (UID 4 FLAGS ($Work))", "d1 OK completed"]);
}

// ===== SEARCH =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_rfc3501_examples_and_charsets() {
    let h = Harness::start().await;
    let mut c = h.selected().await;
    c.cmd("a0", "STORE 2,4,5 +FLAGS.SILENT (\\Flagged)").await;
    // RFC 3501 §6.4.4: A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith".
    c.expect(
        "A282",
        "SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"",
        &["* SEARCH 2 4", "A282 OK SEARCH completed"],
    )
    .await;
    c.expect("A283", "SEARCH TEXT \"string not in mailbox\"", &["* SEARCH", "A283 OK SEARCH completed"]).await;
    // A284 SEARCH CHARSET UTF-8 TEXT {n}: a synchronizing literal with 8-bit text.
    c.send("A284 SEARCH CHARSET UTF-8 TEXT {7}\r\n".as_bytes()).await;
    assert_eq!(s(&c.read_line().await), "+ ready for literal data\r\n");
    c.send("Grüße\r\n".as_bytes()).await;
    assert_resp(&c.read_until_tagged("A284").await, &["* SEARCH 4", "A284 OK SEARCH completed"]);
    // The RFC 2047 subject and sender are searched decoded.
    c.send("b1 SEARCH CHARSET UTF-8 SUBJECT {7+}\r\nGrüße\r\n".as_bytes()).await;
    assert_resp(&c.read_until_tagged("b1").await, &["* SEARCH 4", "b1 OK SEARCH completed"]);
    c.expect("b2", "SEARCH HEADER SUBJECT \"aus berlin\"", &["* SEARCH 4", "b2 OK SEARCH completed"]).await;
    c.send("b3 SEARCH CHARSET utf-8 FROM {7+}\r\nMüller\r\n".as_bytes()).await;
    assert_resp(&c.read_until_tagged("b3").await, &["* SEARCH 4", "b3 OK SEARCH completed"]);
    c.expect("b4", "SEARCH CHARSET US-ASCII SUBJECT meeting", &["* SEARCH 1 5", "b4 OK SEARCH completed"]).await;
    c.expect(
        "b5",
        "SEARCH CHARSET KOI8-R SUBJECT meeting",
        &["b5 NO [BADCHARSET (UTF-8 US-ASCII)] supported charsets: UTF-8, US-ASCII"],
    )
    .await;
    // Body, forwarded message, dates, sizes, sets, OR/NOT, UID SEARCH.
    c.expect("c1", "SEARCH BODY XK42", &["* SEARCH 3", "c1 OK SEARCH completed"]).await;
    c.expect("c2", "SEARCH BEFORE 1-Jan-2000", &["* SEARCH 1", "c2 OK SEARCH completed"]).await;
    c.expect("c3", "SEARCH SENTSINCE 3-Mar-2022", &["* SEARCH 4 5 6", "c3 OK SEARCH completed"]).await;
    c.expect("c4", "SEARCH OR FROM bob FROM eve", &["* SEARCH 2 6", "c4 OK SEARCH completed"]).await;
    c.expect("c5", "SEARCH 2:4 NOT FLAGGED", &["* SEARCH 3", "c5 OK SEARCH completed"]).await;
    c.expect("c6", "SEARCH UNFLAGGED UID 1:3", &["* SEARCH 1 3", "c6 OK SEARCH completed"]).await;
    c.expect("c7", "SEARCH LARGER 1000", &["* SEARCH", "c7 OK SEARCH completed"]).await;
    c.expect("c8", "SEARCH ALL", &["* SEARCH 1 2 3 4 5 6", "c8 OK SEARCH completed"]).await;
    // Expunge 1 and 2: sequence numbers and UIDs differ from now on.
    c.cmd("d0", "STORE 1:2 +FLAGS.SILENT (\\Deleted)").await;
    c.cmd("d1", "EXPUNGE").await;
    c.expect("d2", "SEARCH FLAGGED", &["* SEARCH 2 3", "d2 OK SEARCH completed"]).await;
    c.expect("d3", "UID SEARCH FLAGGED", &["* SEARCH 4 5", "d3 OK SEARCH completed"]).await;
    c.expect("d4", "UID SEARCH UID 1:4", &["* SEARCH 3 4", "d4 OK SEARCH completed"]).await;
    c.expect("d5", "SEARCH *", &["* SEARCH 4", "d5 OK SEARCH completed"]).await;
    c.expect("d6", "UID SEARCH UID *", &["* SEARCH 6", "d6 OK SEARCH completed"]).await;
}

// ===== COPY / MOVE / EXPUNGE =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_move_with_copyuid() {
    let h = Harness::start().await;
    let mut c = h.selected().await;
    let (trash, archive) = (h.uidvalidity("Trash"), h.uidvalidity("Archive"));
    c.expect("a1", "COPY 1:2 Trash", &[format!("a1 OK [COPYUID {trash} 1:2 1:2] COPY completed")]).await;
    c.expect("a2", "UID COPY 6,4 Trash", &[format!("a2 OK [COPYUID {trash} 4,6 3:4] COPY completed")]).await;
    c.expect("a3", "COPY 1 Nope", &["a3 NO [TRYCREATE] no such mailbox"]).await;
    c.expect("a4", "UID COPY 77 Trash", &["a4 OK COPY completed"]).await;
    c.expect(
        "a5",
        "STATUS Trash (MESSAGES UIDNEXT UNSEEN)",
        &["* STATUS \"Trash\" (MESSAGES 4 UIDNEXT 5 UNSEEN 4)", "a5 OK STATUS completed"],
    )
    .await;
    // MOVE (RFC 6851): COPYUID in an untagged OK, then the EXPUNGEs, then the tagged OK.
    let r = c.cmd("b1", "UID MOVE 2:3 Archive").await;
    assert_resp(
        &r,
        &[
            format!("* OK [COPYUID {archive} 2:3 1:2] moved"),
            "* 2 EXPUNGE".into(),
            "* 2 EXPUNGE".into(),
            "b1 OK MOVE completed".into(),
        ],
    );
    let r = c.cmd("b2", "MOVE 2,4 Archive").await;
    assert_resp(
        &r,
        &[
            format!("* OK [COPYUID {archive} 4,6 3:4] moved"),
            "* 2 EXPUNGE".into(),
            "* 3 EXPUNGE".into(),
            "b2 OK MOVE completed".into(),
        ],
    );
    c.expect("b3", "MOVE 1 Nope", &["b3 NO [TRYCREATE] no such mailbox"]).await;
    c.expect("b4", "UID FETCH 1:* (UID)", &["* 1 FETCH (UID 1)", "* 2 FETCH (UID 5)", "b4 OK FETCH completed"]).await;
    // Copying into the selected mailbox: EXISTS before the tagged OK.
    let uv = h.uidvalidity("Work");
    let r = c.cmd("b5", "COPY 1 Work").await;
    assert_resp(
        &r,
        &["* 3 EXISTS".to_string(), "* 3 RECENT".into(), format!("b5 OK [COPYUID {uv} 1 7] COPY completed")],
    );
    // A read-only mailbox can be copied from but not moved from.
    let r = c.cmd("c1", "EXAMINE Archive").await;
    assert_eq!(s(&r[2]), "* 4 EXISTS\r\n");
    c.expect("c2", "MOVE 1 Trash", &["c2 NO [READ-ONLY] the mailbox is read-only (EXAMINE)"]).await;
    c.expect("c3", "COPY 1 Trash", &[format!("c3 OK [COPYUID {trash} 1 5] COPY completed")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expunge_close_unselect() {
    let h = Harness::start().await;
    let mut c = h.selected().await;
    // Deleting 2, 3 and 5 of 5…6: each EXPUNGE's number is valid when it is sent.
    c.cmd("a1", "STORE 2:3,5 +FLAGS.SILENT (\\Deleted)").await;
    c.expect("a2", "EXPUNGE", &["* 2 EXPUNGE", "* 2 EXPUNGE", "* 3 EXPUNGE", "a2 OK EXPUNGE completed"]).await;
    c.expect(
        "a3",
        "FETCH 1:* (UID)",
        &["* 1 FETCH (UID 1)", "* 2 FETCH (UID 4)", "* 3 FETCH (UID 6)", "a3 OK FETCH completed"],
    )
    .await;
    c.expect("a4", "EXPUNGE", &["a4 OK EXPUNGE completed"]).await;
    // UID EXPUNGE (UIDPLUS) removes only the given UIDs among the \Deleted ones.
    c.cmd("b1", "STORE 1:3 +FLAGS.SILENT (\\Deleted)").await;
    c.expect("b2", "UID EXPUNGE 4:5", &["* 2 EXPUNGE", "b2 OK EXPUNGE completed"]).await;
    c.expect("b3", "UID EXPUNGE 100", &["b3 OK EXPUNGE completed"]).await;
    c.expect(
        "b4",
        "FETCH 1:* (UID FLAGS)",
        &[
            "* 1 FETCH (UID 1 FLAGS (\\Deleted \\Recent))",
            "* 2 FETCH (UID 6 FLAGS (\\Deleted \\Recent))",
            "b4 OK FETCH completed",
        ],
    )
    .await;
    // UNSELECT does not expunge.
    c.expect("c1", "UNSELECT", &["c1 OK UNSELECT completed"]).await;
    c.expect("c2", "FETCH 1 UID", &["c2 NO select a mailbox first"]).await;
    c.expect("c3", "STATUS Work (MESSAGES)", &["* STATUS \"Work\" (MESSAGES 2)", "c3 OK STATUS completed"]).await;
    // CLOSE on EXAMINE does not expunge either.
    c.cmd("c4", "EXAMINE Work").await;
    c.expect("c5", "CLOSE", &["c5 OK CLOSE completed"]).await;
    c.expect("c6", "STATUS Work (MESSAGES)", &["* STATUS \"Work\" (MESSAGES 2)", "c6 OK STATUS completed"]).await;
    // CLOSE expunges silently.
    c.cmd("c7", "SELECT Work").await;
    c.expect("c8", "CLOSE", &["c8 OK CLOSE completed"]).await;
    c.expect("c9", "STATUS Work (MESSAGES)", &["* STATUS \"Work\" (MESSAGES 0)", "c9 OK STATUS completed"]).await;
    c.expect("c10", "CLOSE", &["c10 NO select a mailbox first"]).await;
}

// ===== APPEND =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_forms() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    let msg = crlf(M1);
    let uv = h.uidvalidity("Work");
    // RFC 3501 §6.3.11 example, with LITERAL+ (no continuation).
    let mut cmd =
        format!("A003 APPEND Work (\\Seen $Sent) \"07-Feb-1994 21:52:25 -0800\" {{{}+}}\r\n", msg.len()).into_bytes();
    cmd.extend_from_slice(&msg);
    cmd.extend_from_slice(b"\r\n");
    c.send_chunked(&cmd, 7).await;
    assert_resp(&c.read_until_tagged("A003").await, &[format!("A003 OK [APPENDUID {uv} 7] APPEND completed")]);
    // A synchronizing literal: the client waits for "+".
    c.send(format!("A004 APPEND Sent {{{}}}\r\n", msg.len()).as_bytes()).await;
    assert_eq!(s(&c.read_line().await), "+ ready for literal data\r\n");
    c.send(&msg).await;
    c.send(b"\r\n").await;
    assert_resp(
        &c.read_until_tagged("A004").await,
        &[format!("A004 OK [APPENDUID {} 1] APPEND completed", h.uidvalidity("Sent"))],
    );
    // A missing mailbox.
    let r = c.cmd("A005", "APPEND Nope {8+}\r\nA: b\r\n\r\n").await;
    assert_resp(&r, &["A005 NO [TRYCREATE] no such mailbox"]);
    // The stored message, its flags and date.
    c.cmd("A006", "SELECT Work").await;
    let r = c.cmd("A007", "UID FETCH 7 (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])").await;
    assert_resp(
        &r,
        &[
            format!(
                "* 7 FETCH (UID 7 FLAGS (\\Seen $Sent \\Recent) INTERNALDATE \"07-Feb-1994 21:52:25 -0800\" RFC822.SIZE {} BODY[] {})",
                msg.len(),
                lit(&s(&msg))
            ),
            "A007 OK FETCH completed".into(),
        ],
    );
    // APPEND to the selected mailbox: EXISTS (and RECENT) before the tagged OK.
    let r = c.cmd("A008", "APPEND Work {8+}\r\nA: b\r\n\r\n").await;
    assert_resp(
        &r,
        &["* 8 EXISTS".to_string(), "* 8 RECENT".into(), format!("A008 OK [APPENDUID {uv} 8] APPEND completed")],
    );
    c.expect(
        "A009",
        "FETCH 8 (FLAGS RFC822.SIZE)",
        &["* 8 FETCH (FLAGS (\\Recent) RFC822.SIZE 8)", "A009 OK FETCH completed"],
    )
    .await;
    // A bad date is BAD.
    let r = c.cmd("A010", "APPEND Work \"31-Foo-2024 00:00:00 +0000\" {8+}\r\nA: b\r\n\r\n").await;
    assert_eq!(r.len(), 1);
    assert!(s(&r[0]).starts_with("A010 BAD "), "{}", show(&r));
    c.expect("A011", "NOOP", &["A011 OK completed"]).await;
}

// ===== CREATE / DELETE / RENAME =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_delete_rename() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    c.expect("a1", "CREATE Projects/2025", &["a1 OK CREATE completed"]).await;
    c.expect("a2", "CREATE Projects", &["a2 NO [ALREADYEXISTS] mailbox already exists"]).await;
    c.expect("a3", "CREATE INBOX", &["a3 NO [ALREADYEXISTS] INBOX always exists"]).await;
    c.expect("a4", "CREATE Sent", &["a4 NO [ALREADYEXISTS] mailbox already exists"]).await;
    c.expect(
        "a5",
        "LIST \"\" Projects*",
        &[
            "* LIST (\\HasChildren) \"/\" \"Projects\"",
            "* LIST (\\HasNoChildren) \"/\" \"Projects/2025\"",
            "a5 OK LIST completed",
        ],
    )
    .await;
    c.expect("a6", "RENAME Projects Plans", &["a6 OK RENAME completed"]).await;
    c.expect(
        "a7",
        "LIST \"\" P*",
        &[
            "* LIST (\\HasChildren) \"/\" \"Plans\"",
            "* LIST (\\HasNoChildren) \"/\" \"Plans/2025\"",
            "a7 OK LIST completed",
        ],
    )
    .await;
    c.expect("a8", "RENAME Plans Plans/Sub", &["a8 NO [CANNOT] a mailbox cannot be moved below itself"]).await;
    c.expect("a9", "RENAME Plans Sent", &["a9 NO [ALREADYEXISTS] a mailbox with the new name exists"]).await;
    c.expect("a10", "RENAME Nope Other", &["a10 NO [NONEXISTENT] no such mailbox"]).await;
    c.expect("a11", "DELETE Plans", &["a11 NO [INUSE] the mailbox has subfolders: delete them first"]).await;
    c.expect("a12", "DELETE Plans/2025", &["a12 OK DELETE completed"]).await;
    c.expect("a13", "DELETE Plans", &["a13 OK DELETE completed"]).await;
    c.expect("a14", "DELETE Plans", &["a14 NO [NONEXISTENT] no such mailbox"]).await;
    c.expect("a15", "LIST \"\" P*", &["a15 OK LIST completed"]).await;
    // The account's mailbox and INBOX cannot go.
    c.expect("b1", "DELETE Work", &[
            "b1 NO [CANNOT] \"Work\" is where account Work's mail arrives; to remove it, remove the account (popbridge account remove Work)",
        ]).await;
    c.expect("b2", "RENAME Work Job", &[
            "b2 NO [CANNOT] \"Work\" is where account Work's mail arrives; to remove it, remove the account (popbridge account remove Work)",
        ]).await;
    c.expect("b3", "DELETE INBOX", &["b3 NO [CANNOT] INBOX cannot be deleted"]).await;
    c.expect("b4", "DELETE inbox", &["b4 NO [CANNOT] INBOX cannot be deleted"]).await;
    let mut a = h.login("me+Work").await;
    let r = a.cmd("b5", "DELETE INBOX").await;
    assert_eq!(r.len(), 1);
    assert!(s(&r[0]).starts_with("b5 NO [CANNOT] "), "{}", show(&r));
    // RENAME INBOX moves its messages to the new mailbox; INBOX stays, empty (RFC 3501 §6.3.5).
    c.cmd("c1", "SELECT Work").await;
    c.cmd("c2", "COPY 1:3 INBOX").await;
    c.cmd("c3", "UNSELECT").await;
    c.expect("c4", "RENAME INBOX Old", &["c4 OK RENAME completed"]).await;
    c.expect("c5", "STATUS INBOX (MESSAGES)", &["* STATUS INBOX (MESSAGES 0)", "c5 OK STATUS completed"]).await;
    c.expect(
        "c6",
        "STATUS Old (MESSAGES UIDNEXT)",
        &["* STATUS \"Old\" (MESSAGES 3 UIDNEXT 4)", "c6 OK STATUS completed"],
    )
    .await;
    c.cmd("c7", "SELECT Old").await;
    let r = c.cmd("c8", "FETCH 3 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])").await;
    assert_resp(
        &r,
        &[
            format!("* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {})", lit("Subject: Fwd: Flight booking\r\n\r\n")),
            "c8 OK FETCH completed".into(),
        ],
    );
    // Deleting the selected mailbox.
    c.expect("c9", "DELETE Old", &["c9 OK DELETE completed"]).await;
    c.expect("c10", "FETCH 1 UID", &["c10 NO select a mailbox first"]).await;
}

// ===== changes from elsewhere =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sessions_changes_and_expunge_rules() {
    let h = Harness::start().await;
    let mut a = h.selected().await;
    let mut b = h.login("me").await;
    b.cmd("b0", "SELECT Work").await;
    // Flags changed elsewhere reach A at its next command.
    b.cmd("b1", "STORE 2 +FLAGS.SILENT (\\Flagged)").await;
    a.expect("a1", "NOOP", &["* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))", "a1 OK completed"]).await;
    a.expect("a2", "NOOP", &["a2 OK completed"]).await;
    // Expunges elsewhere: not during FETCH, STORE or SEARCH (RFC 3501 §7.4.1).
    b.cmd("b2", "STORE 3,5 +FLAGS.SILENT (\\Deleted)").await;
    b.expect("b3", "EXPUNGE", &["* 3 EXPUNGE", "* 4 EXPUNGE", "b3 OK EXPUNGE completed"]).await;
    // (The tagged OK carries EXPUNGEISSUED, RFC 5530: something was expunged that cannot be told yet.)
    let r = a.cmd("a3", "FETCH 1:2 (FLAGS)").await;
    assert!(no_expunge(&r), "{}", show(&r));
    assert_resp(
        &r,
        &[
            "* 1 FETCH (FLAGS (\\Recent))",
            "* 2 FETCH (FLAGS (\\Flagged \\Recent))",
            "a3 OK [EXPUNGEISSUED] FETCH completed",
        ],
    );
    let r = a.cmd("a4", "STORE 1 +FLAGS (\\Seen)").await;
    assert!(no_expunge(&r), "{}", show(&r));
    assert_resp(&r, &["* 1 FETCH (FLAGS (\\Seen \\Recent))", "a4 OK [EXPUNGEISSUED] STORE completed"]);
    let r = a.cmd("a5", "SEARCH FLAGGED").await;
    assert_resp(&r, &["* SEARCH 2", "a5 OK [EXPUNGEISSUED] SEARCH completed"]);
    let r = a.cmd("a6", "FETCH 6 (UID)").await;
    assert_resp(&r, &["* 6 FETCH (UID 6)", "a6 OK [EXPUNGEISSUED] FETCH completed"]);
    // A message expunged elsewhere has no data any more: it is left out.
    let r = a.cmd("a6b", "FETCH 3 (UID)").await;
    assert_resp(&r, &["a6b OK [EXPUNGEISSUED] FETCH completed"]);
    // …but with UID FETCH (and any other command) they are sent.
    let r = a.cmd("a7", "UID FETCH 1 (FLAGS)").await;
    assert_resp(
        &r,
        &["* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))", "* 3 EXPUNGE", "* 4 EXPUNGE", "a7 OK FETCH completed"],
    );
    a.expect(
        "a8",
        "FETCH 1:* (UID)",
        &["* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)", "* 3 FETCH (UID 4)", "* 4 FETCH (UID 6)", "a8 OK FETCH completed"],
    )
    .await;
    // NOOP delivers them too; flag changes of a message expunged meanwhile are not reported.
    b.cmd("b4", "STORE 1 +FLAGS.SILENT (\\Deleted \\Answered)").await;
    b.cmd("b5", "EXPUNGE").await;
    b.cmd("b6", "UID STORE 6 +FLAGS.SILENT (\\Draft)").await;
    a.expect("a9", "NOOP", &["* 1 EXPUNGE", "* 3 FETCH (UID 6 FLAGS (\\Draft \\Recent))", "a9 OK completed"]).await;
    // A new message arriving (the fetcher) shows as EXISTS, even during FETCH by sequence number.
    b.cmd("b7", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.cmd("b8", "EXPUNGE").await;
    h.deliver(vec![late_message(1)]).await;
    let r = a.cmd("a10", "FETCH 1 (UID)").await;
    assert_resp(&r, &["* 4 EXISTS", "* 4 RECENT", "a10 OK [EXPUNGEISSUED] FETCH completed"]);
    let r = a.cmd("a11", "NOOP").await;
    assert_resp(&r, &["* 1 EXPUNGE", "a11 OK completed"]);
    a.expect(
        "a12",
        "UID FETCH 1:* (UID)",
        &["* 1 FETCH (UID 4)", "* 2 FETCH (UID 6)", "* 3 FETCH (UID 7)", "a12 OK FETCH completed"],
    )
    .await;
    // B never saw \Recent for it.
    b.expect("b9", "NOOP", &["* 3 EXISTS", "* 0 RECENT", "b9 OK completed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_reports_deliveries_flags_and_expunges() {
    let h = Harness::start().await;
    let mut a = h.selected().await;
    a.send(b"i1 IDLE\r\n").await;
    assert_eq!(s(&a.read_line().await), "+ idling\r\n");
    a.expect_quiet(300).await;
    // A fetched message reaches the idling session within a second.
    h.deliver(vec![late_message(1)]).await;
    let t = Instant::now();
    assert_eq!(s(&a.read_line().await), "* 7 EXISTS\r\n");
    assert_eq!(s(&a.read_line().await), "* 7 RECENT\r\n");
    assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());
    // Another session's changes, expunges included (IDLE may get them).
    let mut b = h.login("me").await;
    b.cmd("b1", "SELECT Work").await;
    b.cmd("b2", "STORE 2 +FLAGS.SILENT (\\Seen)").await;
    assert_eq!(s(&a.read_line().await), "* 2 FETCH (UID 2 FLAGS (\\Seen \\Recent))\r\n");
    b.cmd("b3", "STORE 3,4 +FLAGS.SILENT (\\Deleted)").await;
    b.cmd("b4", "EXPUNGE").await;
    // (the \Deleted change first, then the expunge, or both at once)
    let mut got = Vec::new();
    while got.iter().filter(|l: &&String| l.contains("EXPUNGE")).count() < 2 {
        got.push(s(&a.read_line().await));
    }
    let expunges: Vec<&String> = got.iter().filter(|l| l.contains("EXPUNGE")).collect();
    assert_eq!(expunges, ["* 3 EXPUNGE\r\n", "* 3 EXPUNGE\r\n"], "{got:?}");
    a.expect_quiet(300).await;
    a.send(b"DONE\r\n").await;
    assert_resp(&a.read_until_tagged("i1").await, &["i1 OK IDLE terminated"]);
    a.expect(
        "a2",
        "FETCH 1:* (UID)",
        &[
            "* 1 FETCH (UID 1)",
            "* 2 FETCH (UID 2)",
            "* 3 FETCH (UID 5)",
            "* 4 FETCH (UID 6)",
            "* 5 FETCH (UID 7)",
            "a2 OK FETCH completed",
        ],
    )
    .await;
    // IDLE before login is refused; IDLE in the authenticated state works.
    let mut c = h.connect().await;
    c.expect("n1", "IDLE", &["n1 NO log in first"]).await;
    let mut c = h.login("me").await;
    c.send(b"n2 IDLE\r\n").await;
    assert_eq!(s(&c.read_line().await), "+ idling\r\n");
    h.deliver(vec![late_message(2)]).await;
    c.expect_quiet(300).await;
    c.send(b"DONE\r\n").await;
    assert_resp(&c.read_until_tagged("n2").await, &["n2 OK IDLE terminated"]);
}

// ===== malformed input, pipelining =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_bad_and_the_session_goes_on() {
    let h = Harness::start().await;
    let mut c = h.connect().await;
    c.expect("a1", "FROBNICATE", &["a1 BAD syntax error, or a command popbridge does not support"]).await;
    c.expect("a2", "NOOP", &["a2 OK completed"]).await;
    c.send(b"))) garbage\r\n").await;
    assert_resp(&[c.read_response().await], &["* BAD syntax error, or a command popbridge does not support"]);
    c.send(b"\r\n").await;
    assert_resp(&[c.read_response().await], &["* BAD syntax error, or a command popbridge does not support"]);
    c.expect("a3", "NOOP", &["a3 OK completed"]).await;
    c.send(b"a4 NOOP\n").await;
    assert_resp(&c.read_until_tagged("a4").await, &["a4 BAD lines must end with CRLF"]);
    c.expect("a5", "LOGIN me pw", &[format!("a5 OK [CAPABILITY {CAPS_AUTH}] logged in")]).await;
    c.cmd("a6", "SELECT Work").await;
    // A synchronizing literal above the limit: one BAD, no continuation.
    c.send(b"a7 APPEND Work {999999999}\r\n").await;
    assert_resp(&c.read_until_tagged("a7").await, &["a7 BAD literal too large"]);
    c.expect("a8", "NOOP", &["a8 OK completed"]).await;
    // Wrong arguments.
    c.expect("a9", "FETCH 1 (FLAGS", &["a9 BAD syntax error, or a command popbridge does not support"]).await;
    c.expect("b1", "SELECT", &["b1 BAD syntax error, or a command popbridge does not support"]).await;
    c.expect("b2", "UID FROB 1", &["b2 BAD syntax error, or a command popbridge does not support"]).await;
    c.expect("b3", "FETCH 1 (UID)", &["* 1 FETCH (UID 1)", "b3 OK FETCH completed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_are_answered_in_order() {
    let h = Harness::start().await;
    let mut c = h.connect().await;
    c.send(b"p1 LOGIN me pw\r\np2 SELECT Work\r\np3 FETCH 1:2 (UID)\r\np4 STORE 1 +FLAGS (\\Seen)\r\np5 SEARCH SEEN\r\np6 NOOP\r\n").await;
    let mut all = Vec::new();
    for t in ["p1", "p2", "p3", "p4", "p5", "p6"] {
        let r = c.read_until_tagged(t).await;
        assert!(s(r.last().unwrap()).starts_with(&format!("{t} OK")), "{}", show(&r));
        all.extend(r);
    }
    let text = show(&all);
    assert!(
        text.contains("p2 OK [READ-WRITE] SELECT completed\r\n* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\np3 OK"),
        "{text}"
    );
    assert!(text.ends_with("* 1 FETCH (FLAGS (\\Seen \\Recent))\r\np4 OK STORE completed\r\n* SEARCH 1\r\np5 OK SEARCH completed\r\np6 OK completed\r\n"), "{text}");
    // The same in odd-sized chunks.
    let mut c = h.connect().await;
    c.send_chunked(b"q1 LOGIN me {2+}\r\npw\r\nq2 STATUS Work (MESSAGES)\r\nq3 LOGOUT\r\n", 5).await;
    let rest = c.expect_closed().await;
    assert_eq!(
        s(&rest),
        format!(
            "q1 OK [CAPABILITY {CAPS_AUTH}] logged in\r\n* STATUS \"Work\" (MESSAGES 6)\r\nq2 OK STATUS completed\r\n* BYE logging out\r\nq3 OK LOGOUT completed\r\n"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_with_invalid_base64_gets_a_tagged_bad() {
    let h = Harness::start().await;
    let mut c = h.connect().await;
    c.send(b"a1 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(s(&c.read_line().await), "+ \r\n");
    // Not base64: RFC 3501 §6.2.2 — the server MUST reject the AUTHENTICATE with a tagged BAD.
    c.send(b"!!not base64!!\r\n").await;
    let r = c.read_until_tagged("a1").await;
    assert_eq!(r.len(), 1, "{}", show(&r));
    assert!(s(&r[0]).starts_with("a1 BAD "), "{}", show(&r));
    c.expect("a2", "NOOP", &["a2 OK completed"]).await;
    c.send(b"a3 AUTHENTICATE LOGIN\r\n").await;
    assert_eq!(s(&c.read_line().await), "+ VXNlcm5hbWU6\r\n");
    c.send(b"bWU=\r\n").await;
    assert_eq!(s(&c.read_line().await), "+ UGFzc3dvcmQ6\r\n");
    c.send(b"cHc=\x01\r\n").await;
    let r = c.read_until_tagged("a3").await;
    assert!(r.len() == 1 && s(&r[0]).starts_with("a3 BAD "), "{}", show(&r));
    c.expect("a4", "LOGIN me pw", &[format!("a4 OK [CAPABILITY {CAPS_AUTH}] logged in")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_mailbox_selected_elsewhere() {
    let h = Harness::start().await;
    let mut a = h.login("me").await;
    a.cmd("a1", "CREATE Projects").await;
    a.cmd("a2", "COPY 1 Projects").await;
    a.cmd("a3", "SELECT Projects").await;
    let mut b = h.login("me").await;
    b.expect("b1", "DELETE Projects", &["b1 OK DELETE completed"]).await;
    // RFC 2180 §3.1 (Dovecot does the same): the other session is told with BYE, then closed.
    a.send(b"a4 NOOP\r\n").await;
    let rest = s(&a.expect_closed().await);
    assert!(rest.starts_with("* BYE "), "{rest:?}");
    // The same for an idling session.
    b.cmd("b2", "CREATE Projects").await;
    let mut c = h.login("me").await;
    c.cmd("c1", "SELECT Projects").await;
    c.send(b"c2 IDLE\r\n").await;
    assert_eq!(s(&c.read_line().await), "+ idling\r\n");
    b.expect("b3", "DELETE Projects", &["b3 OK DELETE completed"]).await;
    let rest = s(&c.expect_closed().await);
    assert!(rest.starts_with("* BYE "), "{rest:?}");
    // Renaming it keeps the other session working (same mailbox, new name).
    b.cmd("b4", "CREATE Projects").await;
    let mut d = h.login("me").await;
    d.cmd("d1", "SELECT Projects").await;
    b.expect("b5", "RENAME Projects Plans", &["b5 OK RENAME completed"]).await;
    d.expect("d2", "NOOP", &["d2 OK completed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_expunge_with_expunges_pending_from_elsewhere() {
    let h = Harness::start().await;
    let mut a = h.selected().await;
    let mut b = h.login("me").await;
    b.cmd("b1", "SELECT Work").await;
    b.cmd("b2", "UID STORE 3 +FLAGS.SILENT (\\Deleted)").await;
    b.cmd("b3", "UID EXPUNGE 3").await;
    // A has not heard of UID 3's expunge; its own EXPUNGE numbers are valid when each is sent.
    let r = a.cmd("a1", "STORE 5 +FLAGS.SILENT (\\Deleted)").await;
    assert_resp(&r, &["a1 OK [EXPUNGEISSUED] STORE completed"]);
    let r = a.cmd("a2", "EXPUNGE").await;
    assert_resp(&r, &["* 5 EXPUNGE", "* 3 EXPUNGE", "a2 OK EXPUNGE completed"]);
    a.expect(
        "a3",
        "FETCH 1:* (UID)",
        &["* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)", "* 3 FETCH (UID 4)", "* 4 FETCH (UID 6)", "a3 OK FETCH completed"],
    )
    .await;
    // An empty mailbox: UID FETCH 1:* is fine, and so is a search.
    a.cmd("a4", "SELECT Trash").await;
    a.expect("a5", "UID FETCH 1:* (FLAGS)", &["a5 OK FETCH completed"]).await;
    a.expect("a6", "SEARCH ALL", &["* SEARCH", "a6 OK SEARCH completed"]).await;
    // Renaming the selected mailbox keeps it selected.
    a.cmd("a7", "CREATE Projects").await;
    a.cmd("a8", "SELECT Projects").await;
    a.expect("a9", "RENAME Projects Plans", &["a9 OK RENAME completed"]).await;
    a.expect("a10", "NOOP", &["a10 OK completed"]).await;
    assert_resp(&a.cmd("a11", "APPEND Plans {8+}\r\nA: b\r\n\r\n").await[..2], &["* 1 EXISTS", "* 1 RECENT"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_synchronizing_literal_above_the_limit_gets_one_bad() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    let n = super::session::MAX_LITERAL as usize + 1;
    c.send(format!("a1 APPEND Work {{{n}+}}\r\n").as_bytes()).await;
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0;
    while sent < n {
        let k = chunk.len().min(n - sent);
        c.send(&chunk[..k]).await;
        sent += k;
    }
    c.send(b"\r\na2 NOOP\r\n").await;
    assert_resp(&c.read_until_tagged("a1").await, &["a1 BAD syntax error, or a command popbridge does not support"]);
    assert_resp(&c.read_until_tagged("a2").await, &["a2 OK completed"]);
    assert_eq!(h.store.mailbox_messages("Work").unwrap(), Some(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_bye_to_every_session() {
    let h = Harness::start().await;
    let mut a = h.selected().await;
    let mut b = h.login("me").await;
    b.send(b"i IDLE\r\n").await;
    assert_eq!(s(&b.read_line().await), "+ idling\r\n");
    h.shutdown.send(true).unwrap();
    assert_eq!(s(&a.expect_closed().await), "* BYE popbridge is shutting down\r\n");
    assert_eq!(s(&b.expect_closed().await), "* BYE popbridge is shutting down\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lsub_percent_shows_an_unsubscribed_parent_as_noselect() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    c.cmd("a1", "CREATE Work/Sub").await;
    c.cmd("a2", "SUBSCRIBE Work/Sub").await;
    c.expect("a3", "UNSUBSCRIBE Work", &["a3 OK completed"]).await;
    // RFC 3501 §6.3.9: "foo/bar" subscribed, "foo" not: LSUB "%" returns foo, flagged \Noselect.
    c.expect("a4", "LSUB \"\" W%", &["* LSUB (\\Noselect) \"/\" \"Work\"", "a4 OK LSUB completed"]).await;
    c.expect("a5", "LSUB \"\" Work/%", &["* LSUB (\\HasNoChildren) \"/\" \"Work/Sub\"", "a5 OK LSUB completed"]).await;
    c.expect("a6", "LSUB \"\" W*", &["* LSUB (\\HasNoChildren) \"/\" \"Work/Sub\"", "a6 OK LSUB completed"]).await;
    c.cmd("a7", "UNSUBSCRIBE Work/Sub").await;
    c.expect("a8", "LSUB \"\" W%", &["a8 OK LSUB completed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_plain_with_another_authorization_identity_is_refused_with_no() {
    let h = Harness::start().await;
    let mut c = h.connect().await;
    // authzid "root", authcid "me", password "pw": well-formed, not allowed → NO (not BAD).
    let ir = super::auth::b64(b"root\0me\0pw");
    let r = c.cmd("a1", &format!("AUTHENTICATE PLAIN {ir}")).await;
    assert_resp(&r, &["a1 NO [AUTHORIZATIONFAILED] you can only log in as yourself"]);
    // The same authzid as authcid is fine (Apple Mail sends it).
    let ir = super::auth::b64(b"me\0me\0pw");
    c.expect("a2", &format!("AUTHENTICATE PLAIN {ir}"), &[format!("a2 OK [CAPABILITY {CAPS_AUTH}] logged in")]).await;
    let mut c = h.connect().await;
    let ir = super::auth::b64(b"me\0pw");
    c.expect("a3", &format!("AUTHENTICATE PLAIN {ir}"), &["a3 BAD malformed PLAIN credentials"]).await;
}
