//! The upstream SMTP client: hands one stored message to an account's SMTP server (the relay step
//! of the outbox), and probes a server for `account add`/`account test`.
//!
//! Built on mail-send's low-level [`SmtpClient`] (replies, EHLO parsing, AUTH PLAIN/LOGIN), but the
//! connection itself is ours: TCP through [`net::connect_tcp`], TLS with the verifier from
//! [`tls::upstream`] (never mail-send's own, which needs a system CA bundle and hides the
//! fingerprint), STARTTLS done here so that a server without it is refused before anything else is
//! said, and the DATA phase written here (see [`Session::data`]) so that the wire bytes are exactly
//! the stored message and a slow upload of a big message is not cut off by a single timeout.
//!
//! # Classification (what the queue worker sees in [`Failure`])
//!
//! `permanent` means "this message, as it is, will never be accepted: bounce it". Only the server's
//! own 5xx verdict on the message or its envelope is permanent. Everything the user can fix without
//! touching the message (password, certificate, TLS mode, host name) is *not* permanent: the message
//! stays queued and is retried after the fix, and the error class tells the user what to fix.
//!
//! | what happened | class | permanent |
//! |---|---|---|
//! | refused, reset, closed, DNS failure, no reply within the timeout | `Connection` | no |
//! | greeting other than 220 (e.g. 554 "no service for you") | `Connection` | no |
//! | 421 anywhere (server shutting down) | `Temporary` | no |
//! | other 4xx (MAIL, RCPT of every recipient, DATA, end of DATA) | `Temporary` | no |
//! | 5xx to MAIL FROM, to every RCPT, to DATA or at the end of DATA | `Other` | **yes** |
//! | message larger than the server's advertised SIZE; non-ASCII address without SMTPUTF8; non-ASCII header text without SMTPUTF8 that `downgrade` cannot rewrite | `Other` | **yes** |
//! | AUTH refused (535, 534, 538, 5.7.8), no usable AUTH mechanism, 530 "authentication required" | `Authentication` | no: the user fixes the password, the queue keeps the message |
//! | 454 to AUTH (temporary authentication failure) | `Temporary` | no |
//! | untrusted/mismatched certificate, TLS failure, no STARTTLS when `starttls` is configured | `Certificate` | no: the user pins or fixes the config |
//! | user without password, plaintext login to a remote host, bad host name | `Config` | no |
//! | a reply that breaks SMTP (e.g. 3xx where 250 is due, a bad EHLO) | `Protocol` | no |
//!
//! Secrets: the password is only handed to mail-send's AUTH encoder. Errors quote the server's
//! replies; replies during AUTH are scrubbed of the password and its base64 forms (a server that
//! echoes a malformed AUTH line would otherwise put it in a log).

use std::time::Duration;

use base64::Engine;
use mail_send::{Credentials, SmtpClient};
use smtp_proto::{
    AUTH_LOGIN, AUTH_OAUTHBEARER, AUTH_PLAIN, AUTH_XOAUTH2, EXT_8BIT_MIME, EXT_AUTH, EXT_SIZE, EXT_SMTP_UTF8,
    EXT_START_TLS, EhloResponse, Response,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::{Credential, DEFAULT_TIMEOUT, SmtpServer, TlsMode, is_loopback_host};
use crate::error::{Error, ErrorClass};
use crate::net::{self, Io, tls};
use crate::secret::Secret;

/// How long we wait for the reply to the final "." at most, whatever `timeout` says, if that is
/// longer: RFC 5321 §4.5.3.2.6 asks for 10 minutes, because the server may be scanning the message.
/// Giving up earlier is the one timeout that can cause a duplicate: the server may accept the
/// message after we left, and the queue then sends it again.
pub const DATA_END_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The message goes out in pieces of about this size, each with its own write timeout, so a large
/// message on a slow uplink is limited by stalls, not by its total upload time.
const WRITE_CHUNK: usize = 64 * 1024;

/// DATA on its way out: the chunk being filled, whether the next byte starts a line (dot-stuffing,
/// RFC 5321 §4.5.2), the last two bytes of the message so far, and how many there were.
struct Stuffer {
    chunk: Vec<u8>,
    line_start: bool,
    last: [u8; 2],
    sent: u64,
}

/// The result of handing one message to the upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Recipients the server accepted (RCPT 250/251), in the order given: the message is theirs now.
    pub accepted: Vec<String>,
    /// Recipients refused one by one; the others were delivered. `permanent` ones should be
    /// bounced, the others retried later (in a new transaction for just them).
    pub rejected: Vec<Rejection>,
    /// The server's reply to the end of DATA ("250 2.0.0 Ok: queued as 4XyZ"), for the log.
    pub reply: String,
}

/// One recipient the server refused at RCPT TO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub rcpt: String,
    pub code: u16,
    /// The enhanced status code ("5.1.1"), if the server sent one.
    pub enhanced: Option<String>,
    /// The server's text without the codes.
    pub text: String,
    /// A 5xx: retrying will not help.
    pub permanent: bool,
}

/// A failure of the whole transaction: nothing was delivered to anyone.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Classified; the message names the server, the step and the server's reply.
    pub error: Error,
    /// Bounce the message: the server refused it with a 5xx (see the module docs). Problems the
    /// user fixes in the config (password, certificate, TLS) are not permanent: keep and retry.
    pub permanent: bool,
    /// The server's reply code, when a reply caused this.
    pub code: Option<u16>,
    /// The server's words ("550 5.7.1 Message rejected"), for the bounce notice.
    pub reply: Option<String>,
}

impl Failure {
    fn new(class: ErrorClass, message: impl Into<String>) -> Failure {
        Failure { error: Error::new(class, message), permanent: false, code: None, reply: None }
    }
    fn from_error(error: Error) -> Failure {
        Failure { error, permanent: false, code: None, reply: None }
    }
    fn permanent(mut self) -> Failure {
        self.permanent = true;
        self
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Failure {}

impl From<Failure> for Error {
    /// The error, marked as one about an SMTP server (its guidance names 465/587 and
    /// `[account.smtp]`).
    fn from(f: Failure) -> Error {
        f.error.smtp()
    }
}

/// What `account test` shows about an SMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The 220 greeting's text (without the code).
    pub greeting: String,
    /// The EHLO keywords as the server sent them, after TLS ("PIPELINING", "SIZE 35882577",
    /// "AUTH PLAIN LOGIN"), without the first line (the server's name).
    pub capabilities: Vec<String>,
    /// For TLS: how the certificate was trusted, and its SHA-256 fingerprint.
    pub tls: Option<(String, Option<[u8; 32]>)>,
    /// AUTH succeeded (false when no user is configured).
    pub authenticated: bool,
    /// The SIZE limit the server advertised.
    pub max_size: Option<u64>,
}

/// Sends `raw` (exactly as stored: CRLF lines, not dot-stuffed, may end with CRLF) from `from`
/// (empty for the null sender `<>`) to `rcpts`.
///
/// Recipients refused one by one (RCPT 4xx/5xx) are reported in `rejected` while the others are
/// delivered; if every recipient is refused, no DATA is sent and the outcome is a [`Failure`]
/// (permanent iff all refusals were 5xx). The upstream receives `raw` byte for byte, with the
/// terminating CRLF added only if `raw` does not end with one.
pub async fn deliver(
    server: &SmtpServer,
    login: Option<&Credential>,
    helo: &str,
    from: &str,
    rcpts: &[String],
    raw: &[u8],
) -> Result<Delivered, Failure> {
    deliver_then(server, login, helo, from, rcpts, raw, async |_: &Result<Delivered, Failure>| {}).await
}

/// [`deliver`], with `settle` run on the outcome before QUIT is said (or, when there is no
/// connection to say it on, before returning). The queue commits "sent" there: the server has the
/// message once it answered the end of DATA, and a crash while it takes its time over QUIT (up to
/// 10 s here) must not make popbridge send the message again.
pub async fn deliver_then(
    server: &SmtpServer,
    login: Option<&Credential>,
    helo: &str,
    from: &str,
    rcpts: &[String],
    raw: &[u8],
    settle: impl AsyncFnOnce(&Result<Delivered, Failure>),
) -> Result<Delivered, Failure> {
    deliver_body_then(server, login, helo, from, rcpts, Body::Bytes(raw), settle).await
}

/// The message [`deliver_body_then`] sends: in memory, or a header block in memory followed by
/// the body's chunks read from the outbox as they are sent (a spooled submission, `smtp::spool`).
pub enum Body<'a> {
    Bytes(&'a [u8]),
    Spooled {
        head: &'a [u8],
        /// Bytes in the chunks, and whether any of them is 8-bit.
        len: u64,
        body_8bit: bool,
        chunks: tokio::sync::mpsc::Receiver<Result<super::spool::Chunk, String>>,
    },
}

impl<'a> Body<'a> {
    /// What is in memory: the whole message, or the header block of a spooled one.
    fn head(&self) -> &'a [u8] {
        match self {
            Body::Bytes(raw) => raw,
            Body::Spooled { head, .. } => head,
        }
    }
    /// Bytes after [`Body::head`] (in the outbox's chunks), and whether they are all ASCII.
    fn rest_len(&self) -> u64 {
        match self {
            Body::Bytes(_) => 0,
            Body::Spooled { len, .. } => *len,
        }
    }
    fn rest_is_ascii(&self) -> bool {
        match self {
            Body::Bytes(_) => true,
            Body::Spooled { body_8bit, .. } => !body_8bit,
        }
    }
}

/// [`deliver_then`] for any [`Body`].
pub async fn deliver_body_then(
    server: &SmtpServer,
    login: Option<&Credential>,
    helo: &str,
    from: &str,
    rcpts: &[String],
    mut raw: Body<'_>,
    settle: impl AsyncFnOnce(&Result<Delivered, Failure>),
) -> Result<Delivered, Failure> {
    let addr = format!("{}:{}", server.host, server.port);
    let mut session = None;
    let result = match check_envelope(from, rcpts) {
        Err(f) => Err(f),
        Ok(()) => match Session::open(server, login, helo).await {
            Err(f) => Err(f),
            Ok(s) => {
                let s = session.insert(s);
                s.transaction(from, rcpts, &mut raw).await
            }
        },
    };
    match &result {
        Ok(d) => tracing::debug!("{addr}: delivered to {} recipient(s): {}", d.accepted.len(), d.reply),
        Err(f) => tracing::debug!("{addr}: not delivered (permanent: {}): {}", f.permanent, f.error),
    }
    settle(&result).await;
    match (&result, session) {
        // The connection is unusable after these; QUIT would only wait for the timeout.
        (Err(f), _) if f.error.class == ErrorClass::Connection => {}
        (_, Some(mut s)) => s.quit().await,
        (_, None) => {}
    }
    result
}

/// Checked before connecting: an envelope that can never go out, on any server (permanent).
fn check_envelope(from: &str, rcpts: &[String]) -> Result<(), Failure> {
    if rcpts.is_empty() {
        return Err(Failure::new(ErrorClass::Other, "the message has no recipients").permanent());
    }
    for a in std::iter::once(from).chain(rcpts.iter().map(String::as_str)) {
        if let Err(why) = check_address(a) {
            return Err(Failure::new(ErrorClass::Other, why).permanent());
        }
    }
    if rcpts.iter().any(|r| r.is_empty()) {
        return Err(Failure::new(ErrorClass::Other, "a recipient address is empty").permanent());
    }
    Ok(())
}

/// Connect, TLS, EHLO, AUTH (when a user is configured): no mail. For `account add`/`account test`.
pub async fn probe(server: &SmtpServer, login: Option<&Credential>, helo: &str) -> Result<Probe, Error> {
    let mut s = Session::open(server, login, helo).await?;
    let probe = Probe {
        greeting: s.greeting.clone(),
        capabilities: s.ehlo_lines.iter().skip(1).cloned().collect(),
        tls: s.tls.clone(),
        authenticated: s.authenticated,
        max_size: (s.ehlo.size > 0).then_some(s.ehlo.size as u64),
    };
    s.quit().await;
    Ok(probe)
}

/// The steps, for messages ("... while waiting for the reply to MAIL FROM").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    DataEnd,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Greeting => "the greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth => "AUTH",
            Stage::MailFrom => "MAIL FROM",
            Stage::RcptTo => "RCPT TO",
            Stage::Data => "DATA",
            Stage::DataEnd => "the end of DATA",
        }
    }
}

/// The password in the forms it travels in during AUTH, to scrub from quoted replies.
struct Scrub {
    forms: Vec<String>,
}

impl Scrub {
    fn none() -> Scrub {
        Scrub { forms: Vec::new() }
    }
    fn new(user: &str, pw: &Secret) -> Scrub {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let pw = pw.expose();
        let mut forms = vec![b64(&format!("\0{user}\0{pw}")), b64(pw)];
        // Very short passwords would garble the text and are not worth hiding from it.
        if pw.chars().count() >= 4 {
            forms.push(pw.to_string());
        }
        forms.retain(|f| !f.is_empty());
        Scrub { forms }
    }
    fn apply(&self, text: String) -> String {
        self.forms.iter().fold(text, |t, f| t.replace(f.as_str(), "<redacted>"))
    }
}

struct Session {
    client: SmtpClient<Io>,
    /// "host:port", the way every message names the server.
    addr: String,
    timeout: Duration,
    greeting: String,
    ehlo: EhloResponse<String>,
    /// The EHLO reply's lines (the first is the server's name).
    ehlo_lines: Vec<String>,
    tls: Option<(String, Option<[u8; 32]>)>,
    authenticated: bool,
}

impl Session {
    async fn open(server: &SmtpServer, login: Option<&Credential>, helo: &str) -> Result<Session, Failure> {
        let addr = format!("{}:{}", server.host, server.port);
        if server.host.is_empty() {
            return Err(Failure::from_error(Error::config(
                "this SMTP setting has no host (relay = true: send through the [relay] server instead)",
            )));
        }
        let creds = match (server.user.as_deref(), login) {
            (Some(u), Some(p)) => Some((u, p)),
            (Some(u), None) => {
                return Err(Failure::from_error(Error::config(format!(
                    "{addr}: SMTP user \"{u}\" is set but no password was given (set password_command or password)"
                ))));
            }
            (None, Some(_)) => {
                return Err(Failure::from_error(Error::config(format!(
                    "{addr}: an SMTP password is set but no user; set user (the login name, usually the email address)"
                ))));
            }
            (None, None) => None,
        };
        // The config accepts tls = "plain" for SMTP without an opt-in; never send a password
        // unencrypted over the network whatever it says (loopback relays are fine).
        if server.tls == TlsMode::Plain && creds.is_some() && !is_loopback_host(&server.host) {
            return Err(Failure::from_error(Error::config(format!(
                "{addr}: tls = \"plain\" would send the SMTP password unencrypted; use tls = \"implicit\" (port 465) or \"starttls\" (port 587)"
            ))));
        }
        let timeout = if server.timeout.is_zero() { DEFAULT_TIMEOUT } else { server.timeout };
        let helo = helo_name(helo);
        let upstream = match server.tls {
            TlsMode::Plain => None,
            TlsMode::Implicit | TlsMode::StartTls => Some(tls::upstream(&server.trust).map_err(Failure::from_error)?),
        };
        let tcp = net::connect_tcp(&server.host, server.port, timeout).await.map_err(Failure::from_error)?;
        let stream = match (server.tls, upstream.as_ref()) {
            (TlsMode::Implicit, Some(up)) => Io::Tls(Box::new(handshake(tcp, server, up, timeout).await?)),
            _ => Io::Plain(tcp),
        };
        let mut s = Session {
            client: SmtpClient { stream, timeout },
            addr,
            timeout,
            greeting: String::new(),
            ehlo: EhloResponse::default(),
            ehlo_lines: Vec::new(),
            tls: None,
            authenticated: false,
        };
        let greeting = s.read_reply(Stage::Greeting, timeout).await?;
        if greeting.code != 220 {
            return Err(s.refused(Stage::Greeting, &greeting, &Scrub::none()));
        }
        s.greeting = clean(&greeting.message);
        s.hello(&helo).await?;
        if server.tls == TlsMode::StartTls {
            let Some(up) = upstream.as_ref() else {
                return Err(Failure::new(ErrorClass::Other, "internal error: no TLS configuration for STARTTLS"));
            };
            if !s.ehlo.has_capability(EXT_START_TLS) {
                // No silent plaintext fallback: nothing (no AUTH, no mail) is sent in the clear.
                return Err(Failure::new(
                    ErrorClass::Certificate,
                    format!(
                        "{} does not offer STARTTLS, so the password and the mail would travel unencrypted; popbridge refuses (use tls = \"implicit\" on port 465 if the provider offers it)",
                        s.addr
                    ),
                ));
            }
            let r = s.command("STARTTLS\r\n", Stage::StartTls).await?;
            if r.code != 220 {
                return Err(s.refused(Stage::StartTls, &r, &Scrub::none()));
            }
            s = s.upgrade(server, up).await?;
            // RFC 3207 §4.2: forget everything learned before TLS and ask again.
            s.hello(&helo).await?;
        }
        if let Some(up) = upstream.as_ref() {
            let fp = up.seen.lock().ok().and_then(|seen| seen.fingerprint);
            s.tls = Some((up.trust.describe().to_string(), fp));
        }
        match creds {
            Some((user, Credential::Password(pw))) => s.login(user, pw).await?,
            Some((user, Credential::Bearer(token))) => s.oauth_login(server, user, token).await?,
            None => {}
        }
        Ok(s)
    }

    /// STARTTLS accepted: the TLS handshake on the same TCP connection.
    async fn upgrade(self, server: &SmtpServer, up: &tls::Upstream) -> Result<Session, Failure> {
        let Session { client, addr, timeout, greeting, .. } = self;
        let SmtpClient { stream, .. } = client;
        let Io::Plain(tcp) = stream else {
            return Err(Failure::new(ErrorClass::Other, "internal error: STARTTLS on a TLS connection"));
        };
        let tls = handshake(tcp, server, up, timeout).await?;
        Ok(Session {
            client: SmtpClient { stream: Io::Tls(Box::new(tls)), timeout },
            addr,
            timeout,
            greeting,
            ehlo: EhloResponse::default(),
            ehlo_lines: Vec::new(),
            tls: None,
            authenticated: false,
        })
    }

    /// EHLO, keeping both the parsed capabilities and the lines as sent (for `account test`).
    async fn hello(&mut self, helo: &str) -> Result<(), Failure> {
        let r = self.command(&format!("EHLO {helo}\r\n"), Stage::Ehlo).await?;
        if r.code != 250 {
            return Err(self.refused(Stage::Ehlo, &r, &Scrub::none()));
        }
        let lines: Vec<String> = r.message.split('\n').map(|l| l.trim_end_matches('\r').to_string()).collect();
        // smtp-proto's reply reader joined the lines; its EHLO parser wants them on the wire again.
        let mut wire = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            wire.extend_from_slice(if i + 1 == lines.len() { b"250 " } else { b"250-" });
            wire.extend_from_slice(l.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        self.ehlo = EhloResponse::parse(&mut wire.iter()).map_err(|e| {
            Failure::new(ErrorClass::Protocol, format!("{} sent an EHLO reply popbridge cannot read ({e})", self.addr))
        })?;
        self.ehlo_lines = lines.iter().map(|l| clean(l)).collect();
        Ok(())
    }

    /// The EHLO reply's AUTH line as the server sent it ("AUTH PLAIN LOGIN XOAUTH2"), for messages.
    fn auth_line(&self) -> Option<&String> {
        self.ehlo_lines.iter().skip(1).find(|l| l.len() >= 4 && l[..4].eq_ignore_ascii_case("AUTH"))
    }

    async fn login(&mut self, user: &str, pw: &Secret) -> Result<(), Failure> {
        let scrub = Scrub::new(user, pw);
        let auth_line = self.auth_line();
        if !self.ehlo.has_capability(EXT_AUTH) && auth_line.is_none() {
            return Err(Failure::new(
                ErrorClass::Authentication,
                format!(
                    "{} does not offer a login (no AUTH in its EHLO reply); if it takes mail without one, remove user and password from the account's [account.smtp] section (or add the account with --smtp-no-auth); else check host and port",
                    self.addr
                ),
            ));
        }
        // Only what popbridge can complete: mail-send would start CRAM-MD5/DIGEST-MD5 exchanges its
        // build cannot finish, and XOAUTH2 needs other credentials.
        let mut caps = self.ehlo.clone();
        caps.auth_mechanisms &= AUTH_PLAIN | AUTH_LOGIN;
        if caps.auth_mechanisms == 0 {
            return Err(Failure::new(
                ErrorClass::Authentication,
                format!(
                    "{} offers no login method popbridge supports (it says \"{}\"; popbridge does PLAIN and LOGIN)",
                    self.addr,
                    auth_line.map(String::as_str).unwrap_or("AUTH")
                ),
            ));
        }
        let creds = Credentials::Plain { username: user, secret: pw.expose() };
        match self.client.authenticate(&creds, &caps).await {
            Ok(_) => {
                self.authenticated = true;
                Ok(())
            }
            Err(mail_send::Error::AuthenticationFailed(r) | mail_send::Error::UnexpectedReply(r)) => {
                Err(self.refused(Stage::Auth, &r, &scrub))
            }
            Err(mail_send::Error::Auth(_) | mail_send::Error::Base64(_)) => Err(Failure::new(
                ErrorClass::Protocol,
                format!("{} sent an AUTH LOGIN prompt popbridge does not understand", self.addr),
            )),
            Err(e) => Err(self.broken(Stage::Auth, e)),
        }
    }

    /// AUTH with an OAuth 2 access token: OAUTHBEARER (RFC 7628) when offered, else XOAUTH2.
    /// Done here rather than by mail-send, which answers an error challenge (334 with the JSON
    /// status) by sending the token again; RFC 7628 §3.2.3 wants a single ^A (XOAUTH2: an empty
    /// line), after which the server sends its 535.
    async fn oauth_login(&mut self, server: &SmtpServer, user: &str, token: &Secret) -> Result<(), Failure> {
        let scrub = Scrub::new(user, token);
        let auth_line = self.auth_line();
        let mechs = self.ehlo.auth_mechanisms;
        let bearer = mechs & AUTH_OAUTHBEARER != 0;
        if !bearer && mechs & AUTH_XOAUTH2 == 0 {
            return Err(Failure::new(
                ErrorClass::Authentication,
                format!(
                    "{} offers no OAuth 2 login (it says \"{}\"; popbridge signs in with OAUTHBEARER or XOAUTH2): check the SMTP host with the provider, or set the SMTP password_command in [account.smtp]",
                    self.addr,
                    auth_line.map(String::as_str).unwrap_or("no AUTH")
                ),
            ));
        }
        if !crate::sasl::fits(user) || !crate::sasl::fits(token.expose()) || !crate::sasl::fits(&server.host) {
            return Err(Failure::new(
                ErrorClass::Config,
                format!("{}: the SMTP user name contains a control character", self.addr),
            ));
        }
        let (mech, msg) = if bearer {
            ("OAUTHBEARER", crate::sasl::oauthbearer(user, &server.host, server.port, token.expose()))
        } else {
            ("XOAUTH2", crate::sasl::xoauth2(user, token.expose()))
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(&msg);
        let mut r = self.command(&format!("AUTH {mech} {b64}\r\n"), Stage::Auth).await?;
        if r.code == 334 {
            let answer = if bearer {
                base64::engine::general_purpose::STANDARD.encode(crate::sasl::OAUTHBEARER_ABORT)
            } else {
                String::new()
            };
            r = self.command(&format!("{answer}\r\n"), Stage::Auth).await?;
        }
        if r.code == 235 {
            self.authenticated = true;
            return Ok(());
        }
        Err(self.refused(Stage::Auth, &r, &scrub))
    }

    async fn transaction<'b>(
        &mut self,
        from: &str,
        rcpts: &[String],
        raw: &mut Body<'b>,
    ) -> Result<Delivered, Failure> {
        // SMTPUTF8 (RFC 6531) when an address or the header is not ASCII: sent when offered;
        // without it, non-ASCII addresses are refused and the header is downgraded where that
        // loses nothing (see `downgrade`), else refused: bounced, with the reason.
        let intl = !from.is_ascii() || rcpts.iter().any(|r| !r.is_ascii());
        let utf8 = self.ehlo.has_capability(EXT_SMTP_UTF8);
        if intl && !utf8 {
            let text = format!(
                "{} does not accept internationalized (non-ASCII) addresses (no SMTPUTF8); the sender or a recipient has one",
                self.addr
            );
            let mut f = Failure::new(ErrorClass::Other, text.clone()).permanent();
            f.reply = Some(text);
            return Err(f);
        }
        let head = raw.head();
        let downgraded = if super::downgrade::needs_smtputf8(head) && !(utf8 && super::downgrade::header_is_utf8(head))
        {
            match super::downgrade::downgrade(head) {
                Ok(d) => {
                    tracing::info!(
                        "{}: the header's non-ASCII text goes out as RFC 2047 encoded words ({})",
                        self.addr,
                        if utf8 { "it is not UTF-8" } else { "no SMTPUTF8 offered" }
                    );
                    Some(d)
                }
                Err(why) => {
                    let text = format!(
                        "{} does not offer SMTPUTF8 (RFC 6531), which this message needs: {why}; send it with that header in ASCII, or through a server that offers SMTPUTF8",
                        self.addr
                    );
                    let mut f = Failure::new(ErrorClass::Other, text.clone()).permanent();
                    f.reply = Some(text);
                    return Err(f);
                }
            }
        } else {
            None
        };
        let head: &[u8] = downgraded.as_deref().unwrap_or(head);
        let len = head.len() as u64 + raw.rest_len();
        let ascii = head.is_ascii() && raw.rest_is_ascii();
        let max = self.ehlo.size as u64;
        if self.ehlo.has_capability(EXT_SIZE) && max > 0 && len > max {
            let text = format!("the message is {len} bytes; {} accepts at most {max} bytes", self.addr);
            let mut f = Failure::new(ErrorClass::Other, text.clone()).permanent();
            f.reply = Some(text);
            return Err(f);
        }
        let mut params = String::new();
        if self.ehlo.has_capability(EXT_SIZE) {
            params.push_str(&format!(" SIZE={len}"));
        }
        if self.ehlo.has_capability(EXT_8BIT_MIME) && !ascii {
            params.push_str(" BODY=8BITMIME");
        }
        if (intl || super::downgrade::needs_smtputf8(head)) && utf8 {
            params.push_str(" SMTPUTF8");
        }
        let r = self.command(&format!("MAIL FROM:<{from}>{params}\r\n"), Stage::MailFrom).await?;
        if !is_positive(&r) {
            return Err(self.refused(Stage::MailFrom, &r, &Scrub::none()));
        }

        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        for rcpt in rcpts {
            let r = self.command(&format!("RCPT TO:<{rcpt}>\r\n"), Stage::RcptTo).await?;
            match r.code {
                250 | 251 => accepted.push(rcpt.clone()),
                // The session is over (421) or needs a login (530): nothing about this recipient.
                421 | 530 => return Err(self.refused(Stage::RcptTo, &r, &Scrub::none())),
                400..=599 => rejected.push(Rejection {
                    rcpt: rcpt.clone(),
                    code: r.code,
                    enhanced: enhanced(&r),
                    text: clean(&r.message),
                    permanent: r.code >= 500,
                }),
                _ => return Err(self.refused(Stage::RcptTo, &r, &Scrub::none())),
            }
        }
        if accepted.is_empty() {
            return Err(all_refused(&self.addr, &rejected));
        }

        let r = self.data(head, raw).await?;
        if !is_positive(&r) {
            return Err(self.refused(Stage::DataEnd, &r, &Scrub::none()));
        }
        Ok(Delivered { accepted, rejected, reply: reply_line(&r) })
    }

    /// DATA, the message dot-stuffed (RFC 5321 §4.5.2), the end-of-data line, and its reply.
    ///
    /// `head` (the message, or a spooled one's header block; downgraded if it had to be), then the
    /// rest of `raw` from the outbox, go out as they are: a line starting with "." gets one more
    /// (the server removes it), and if the message ends with CRLF that CRLF is the one before the final ".", so the server stores
    /// exactly the message (mail-send's `data()` would add an empty line, and time the whole upload with
    /// one timeout). Like mail-send, a "." after a bare CR or LF is doubled too: a receiver that
    /// (wrongly) ends DATA at "\n.\n" must not see a second message smuggled inside this one.
    async fn data(&mut self, head: &[u8], raw: &mut Body<'_>) -> Result<Response<String>, Failure> {
        let r = self.command("DATA\r\n", Stage::Data).await?;
        if r.code != 354 {
            return Err(self.refused(Stage::Data, &r, &Scrub::none()));
        }
        let mut out = Stuffer { chunk: Vec::with_capacity(WRITE_CHUNK + 64), line_start: true, last: [0; 2], sent: 0 };
        self.stuff(&mut out, head).await?;
        if let Body::Spooled { chunks, .. } = raw {
            while let Some(c) = chunks.recv().await {
                match c {
                    Ok(c) => self.stuff(&mut out, &c.data).await?,
                    // The message cannot be read to its end: no "." — the server drops the
                    // transaction with the connection, and the outbox tries again later.
                    Err(e) => {
                        return Err(Failure::new(
                            ErrorClass::Connection,
                            format!("the outbox could not read the message: {e}"),
                        ));
                    }
                }
            }
        }
        let mut chunk = std::mem::take(&mut out.chunk);
        if out.sent > 0 && out.last != *b"\r\n" {
            chunk.extend_from_slice(b"\r\n");
        }
        chunk.extend_from_slice(b".\r\n");
        self.write(&chunk).await?;
        match tokio::time::timeout(self.timeout, self.client.stream.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.broken(Stage::Data, mail_send::Error::Io(e))),
            Err(_) => return Err(self.broken(Stage::Data, mail_send::Error::Timeout)),
        }
        self.read_reply(Stage::DataEnd, self.timeout.max(DATA_END_TIMEOUT)).await
    }

    /// Dot-stuffs `piece` (the next bytes of the message) into `out`, writing full chunks.
    async fn stuff(&mut self, out: &mut Stuffer, piece: &[u8]) -> Result<(), Failure> {
        for &b in piece {
            if out.line_start && b == b'.' {
                out.chunk.push(b'.');
            }
            out.chunk.push(b);
            out.line_start = b == b'\n' || b == b'\r';
            if out.chunk.len() >= WRITE_CHUNK {
                self.write(&out.chunk).await?;
                out.chunk.clear();
            }
        }
        if let Some(&b) = piece.last() {
            out.last = if piece.len() >= 2 { [piece[piece.len() - 2], b] } else { [out.last[1], b] };
        }
        out.sent += piece.len() as u64;
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        match tokio::time::timeout(self.timeout, self.client.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.broken(Stage::Data, mail_send::Error::Io(e))),
            Err(_) => Err(Failure::new(
                ErrorClass::Connection,
                format!("{} stopped reading the message for {}s", self.addr, self.timeout.as_secs()),
            )),
        }
    }

    /// One command and its reply (mail-send times both with `self.timeout`).
    async fn command(&mut self, cmd: &str, stage: Stage) -> Result<Response<String>, Failure> {
        match self.client.cmd(cmd.as_bytes()).await {
            Ok(r) => Ok(r),
            Err(e) => Err(self.broken(stage, e)),
        }
    }

    async fn read_reply(&mut self, stage: Stage, wait: Duration) -> Result<Response<String>, Failure> {
        match tokio::time::timeout(wait, self.client.read()).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.broken(stage, e)),
            Err(_) => Err(self.no_reply(stage, wait)),
        }
    }

    /// Polite end of a session; failures are of no interest any more.
    async fn quit(&mut self) {
        let wait = self.timeout.min(Duration::from_secs(10));
        let _ = tokio::time::timeout(wait, self.client.cmd(b"QUIT\r\n")).await;
    }

    fn no_reply(&self, stage: Stage, wait: Duration) -> Failure {
        Failure::new(
            ErrorClass::Connection,
            format!("no reply from {} within {}s (waiting for {})", self.addr, wait.as_secs(), stage.name()),
        )
    }

    /// The connection failed (not a reply): always worth a retry.
    fn broken(&self, stage: Stage, e: mail_send::Error) -> Failure {
        use mail_send::Error as E;
        let during = match stage {
            Stage::DataEnd => {
                "while waiting for the reply to the end of DATA (the server did not confirm the message)".to_string()
            }
            s => format!("during {}", s.name()),
        };
        let msg = match e {
            E::Timeout => return self.no_reply(stage, self.timeout),
            // mail-send reports both end-of-file and an unreadable reply this way.
            E::UnparseableReply => {
                format!("{} closed the connection or sent a reply popbridge cannot read, {during}", self.addr)
            }
            E::Io(e) => format!("the connection to {} broke {during}: {e}", self.addr),
            E::Tls(e) => format!("TLS with {} failed {during}: {e}", self.addr),
            other => format!("{} {during}: {other}", self.addr),
        };
        Failure::new(ErrorClass::Connection, msg)
    }

    /// The server answered, and not with what was due: classify by code and step.
    fn refused(&self, stage: Stage, r: &Response<String>, scrub: &Scrub) -> Failure {
        let words = scrub.apply(reply_line(r));
        let addr = &self.addr;
        let esc = enhanced(r);
        let (class, permanent, msg) = match (stage, r.code) {
            (_, 421) => (
                ErrorClass::Temporary,
                false,
                format!("{addr} is closing the connection (reply to {}): {words}", stage.name()),
            ),
            (Stage::Greeting, _) => (ErrorClass::Connection, false, format!("{addr} refused the session: {words}")),
            (Stage::Auth, 400..=499) => {
                (ErrorClass::Temporary, false, format!("{addr} could not check the login right now: {words}"))
            }
            (Stage::Auth, _) => {
                (ErrorClass::Authentication, false, format!("{addr} rejected the SMTP user name or password: {words}"))
            }
            (_, 530) => (
                ErrorClass::Authentication,
                false,
                format!(
                    "{addr} requires a login before {} (set user and password_command in the smtp section): {words}",
                    stage.name()
                ),
            ),
            (_, c) if enhanced_is_auth(esc.as_deref()) && c >= 500 => (
                ErrorClass::Authentication,
                false,
                format!("{addr} refused {} because of the login: {words}", stage.name()),
            ),
            (Stage::StartTls, 400..=499) => {
                (ErrorClass::Temporary, false, format!("{addr} cannot start TLS right now: {words}"))
            }
            (Stage::StartTls, _) => (ErrorClass::Certificate, false, format!("{addr} refused STARTTLS: {words}")),
            (Stage::Ehlo, _) => (ErrorClass::Protocol, false, format!("{addr} refused EHLO: {words}")),
            (_, 400..=499) => (
                ErrorClass::Temporary,
                false,
                format!("{addr} asked to try again later (reply to {}): {words}", stage.name()),
            ),
            (Stage::MailFrom, 500..=599) => {
                (ErrorClass::Other, true, format!("{addr} refused the sender (MAIL FROM): {words}"))
            }
            (Stage::Data | Stage::DataEnd, 500..=599) => {
                (ErrorClass::Other, true, format!("{addr} refused the message at {}: {words}", stage.name()))
            }
            _ => (ErrorClass::Protocol, false, format!("{addr} sent an unexpected reply to {}: {words}", stage.name())),
        };
        Failure { error: Error::new(class, msg), permanent, code: Some(r.code), reply: Some(words) }
    }
}

/// RFC 4954 §6: 5.7.8 credentials invalid, 5.7.9 mechanism too weak, 5.7.11 encryption required.
fn enhanced_is_auth(esc: Option<&str>) -> bool {
    matches!(esc, Some("5.7.8" | "5.7.9" | "5.7.11"))
}

fn all_refused(addr: &str, rejected: &[Rejection]) -> Failure {
    let permanent = rejected.iter().all(|r| r.permanent);
    let list = rejected
        .iter()
        .map(|r| match &r.enhanced {
            Some(e) => format!("<{}>: {} {} {}", r.rcpt, r.code, e, r.text),
            None => format!("<{}>: {} {}", r.rcpt, r.code, r.text),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let class = if permanent { ErrorClass::Other } else { ErrorClass::Temporary };
    let first = rejected.iter().find(|r| r.permanent == permanent).or(rejected.first());
    Failure {
        error: Error::new(class, format!("{addr} refused every recipient: {list}")),
        permanent,
        code: first.map(|r| r.code),
        reply: Some(list),
    }
}

/// The TLS handshake (implicit, or after STARTTLS), with errors worded for SMTP: certificate
/// problems name the fingerprint to pin ([`tls::handshake_error`]).
async fn handshake(
    tcp: TcpStream,
    server: &SmtpServer,
    up: &tls::Upstream,
    timeout: Duration,
) -> Result<crate::net::TlsClientStream, Failure> {
    let (host, port) = (server.host.as_str(), server.port);
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| Failure::from_error(Error::config(format!("\"{host}\" is not a valid host name for TLS"))))?;
    let connector = tokio_rustls::TlsConnector::from(up.config.clone());
    let hint = if server.tls == TlsMode::Implicit {
        format!(
            " (is {port} really an SMTP-over-TLS port? 465 is SMTP over TLS; 587 is plain SMTP upgraded with STARTTLS: use tls = \"starttls\" there)"
        )
    } else {
        String::new()
    };
    match tokio::time::timeout(timeout, connector.connect(name, crate::net::tls_read_buffer(tcp))).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            let tls_err = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
            let cert_problem =
                matches!(tls_err, Some(rustls::Error::InvalidCertificate(_) | rustls::Error::General(_)));
            let mut err = tls::handshake_error(host, port, &e, &up.seen);
            if tls_err.is_none() {
                // handshake_error's own hint is about POP3 ports.
                err = Error::new(ErrorClass::Certificate, format!("TLS with {host}:{port} failed: {e}{hint}"));
            } else if !cert_problem {
                err.message.push_str(&hint);
            }
            Err(Failure::from_error(err))
        }
        Err(_) => Err(Failure::new(
            ErrorClass::Connection,
            format!("the TLS handshake with {host}:{port} did not finish within {}s{hint}", timeout.as_secs()),
        )),
    }
}

fn is_positive(r: &Response<String>) -> bool {
    (200..300).contains(&r.code)
}

fn enhanced(r: &Response<String>) -> Option<String> {
    let [a, b, c] = r.esc;
    (a != 0).then(|| format!("{a}.{b}.{c}"))
}

/// A reply on one line, as the server said it: "550 5.1.1 No such user".
fn reply_line(r: &Response<String>) -> String {
    let text = clean(&r.message);
    let mut out = r.code.to_string();
    if let Some(e) = enhanced(r) {
        out.push(' ');
        out.push_str(&e);
    }
    if !text.is_empty() {
        out.push(' ');
        out.push_str(&text);
    }
    out
}

/// Server text made safe to log and show: lines joined with a space, control characters dropped.
fn clean(s: &str) -> String {
    s.split('\n')
        .map(|l| l.chars().filter(|c| !c.is_control()).collect::<String>())
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What goes inside `<...>` of MAIL FROM/RCPT TO: no line breaks (command injection), no spaces
/// or angle brackets (a second parameter or address).
fn check_address(a: &str) -> Result<(), String> {
    if a.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>')) {
        return Err(format!("\"{}\" is not a usable SMTP address", a.escape_debug()));
    }
    Ok(())
}

/// The EHLO argument: a domain or address literal; anything else becomes "[127.0.0.1]".
fn helo_name(helo: &str) -> String {
    let ok = !helo.is_empty()
        && helo.len() <= 255
        && helo.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    if ok { helo.to_string() } else { "[127.0.0.1]".to_string() }
}

#[cfg(test)]
mod tests {
    //! What needs no other process: pure helpers, refusals before connecting, and one
    //! in-process peer that captures the raw wire. The client against a real SMTP server
    //! (aiosmtpd, its faults, TLS and certificates) is tested in `tests/upstream.rs`.
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

    use super::*;
    use crate::config::TrustSettings;

    const USER: &str = "alice@example.org";
    const PASSWORD: &str = "c0rrect-h0rse";

    fn pw() -> Credential {
        Credential::Password(Secret::new(PASSWORD))
    }

    fn rcpts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn plain_with_password_to_a_remote_host_is_refused_before_connecting() {
        let server = SmtpServer {
            host: "smtp.example.invalid".into(),
            port: 25,
            tls: TlsMode::Plain,
            user: Some(USER.into()),
            password: None,
            trust: TrustSettings { ca_file: None, pin_sha256: None },
            relay: false,
            timeout: Duration::from_secs(5),
        };
        let f = deliver(&server, Some(&pw()), "h", USER, &rcpts(&["b@example.net"]), b"x\r\n").await.unwrap_err();
        assert_eq!(f.error.class, ErrorClass::Config, "{f}");
        assert!(!f.permanent);
        assert!(f.error.message.contains("smtp.example.invalid:25") && f.error.message.contains("unencrypted"));
        // A user without a password is a config problem too.
        let mut s2 = server.clone();
        s2.tls = TlsMode::Implicit;
        let e = probe(&s2, None, "h").await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Config, "{e}");
    }

    #[tokio::test]
    async fn refused_connection_is_temporary() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = SmtpServer {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::Plain,
            user: None,
            password: None,
            trust: TrustSettings { ca_file: None, pin_sha256: None },
            relay: false,
            timeout: Duration::from_secs(2),
        };
        let f = deliver(&server, None, "h", USER, &rcpts(&["b@example.net"]), b"x\r\n").await.unwrap_err();
        assert_eq!((f.error.class, f.permanent), (ErrorClass::Connection, false), "{f}");
        assert!(f.error.message.contains(&format!("127.0.0.1:{port}")), "{f}");
    }

    #[tokio::test]
    async fn bad_addresses_are_refused_before_connecting() {
        let server = SmtpServer {
            host: "127.0.0.1".into(),
            port: 9, // never contacted
            tls: TlsMode::Plain,
            user: None,
            password: None,
            trust: TrustSettings { ca_file: None, pin_sha256: None },
            relay: false,
            timeout: Duration::from_secs(1),
        };
        for (from, to) in [
            ("a@example.org>\r\nRSET", "b@example.net"),
            ("a@example.org", "b@example.net> NOTIFY=NEVER"),
            ("a@example.org", ""),
        ] {
            let f = deliver(&server, None, "h", from, &rcpts(&[to]), b"x\r\n").await.unwrap_err();
            assert!(f.permanent && f.error.class == ErrorClass::Other, "{from:?} {to:?}: {f}");
        }
        assert!(deliver(&server, None, "h", "a@example.org", &[], b"x\r\n").await.unwrap_err().permanent);
    }

    /// A minimal peer that records the DATA bytes exactly as they cross the wire.
    async fn capture_wire(raw: &'static [u8]) -> Vec<u8> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let mut sock = BufReader::new(sock);
            sock.get_mut().write_all(b"220 wire ESMTP\r\n").await.unwrap();
            let mut wire = Vec::new();
            loop {
                let mut line = String::new();
                if sock.read_line(&mut line).await.unwrap() == 0 {
                    break;
                }
                let reply: &[u8] = match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
                    "EHLO" => b"250-wire\r\n250 8BITMIME\r\n",
                    "DATA" => {
                        sock.get_mut().write_all(b"354 go ahead\r\n").await.unwrap();
                        while !wire.ends_with(b"\r\n.\r\n") && wire != b".\r\n" {
                            let mut b = [0u8; 1];
                            if sock.read(&mut b).await.unwrap() == 0 {
                                break;
                            }
                            wire.push(b[0]);
                        }
                        b"250 2.0.0 queued\r\n"
                    }
                    "QUIT" => b"221 bye\r\n",
                    _ => b"250 ok\r\n",
                };
                sock.get_mut().write_all(reply).await.unwrap();
            }
            wire
        });
        let server = SmtpServer {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::Plain,
            user: None,
            password: None,
            trust: TrustSettings { ca_file: None, pin_sha256: None },
            relay: false,
            timeout: Duration::from_secs(5),
        };
        deliver(&server, None, "h", "a@example.org", &rcpts(&["b@example.net"]), raw).await.unwrap();
        peer.await.unwrap()
    }

    #[tokio::test]
    async fn wire_bytes_are_stuffed_and_terminated_once() {
        assert_eq!(capture_wire(b"A: b\r\n\r\nx\r\n").await, b"A: b\r\n\r\nx\r\n.\r\n");
        assert_eq!(capture_wire(b"A: b\r\n\r\nx").await, b"A: b\r\n\r\nx\r\n.\r\n");
        assert_eq!(capture_wire(b"A: b\r\n\r\n.\r\n..x\r\n").await, b"A: b\r\n\r\n..\r\n...x\r\n.\r\n");
        assert_eq!(capture_wire(b".A: b\r\n").await, b"..A: b\r\n.\r\n", "a dot at the very start");
        assert_eq!(capture_wire(b"A: b\r\n\r\nx\n.\nRSET\r\n").await, b"A: b\r\n\r\nx\n..\nRSET\r\n.\r\n");
        assert_eq!(capture_wire(b"").await, b".\r\n");
    }

    #[test]
    fn reply_formatting_and_helpers() {
        let r = Response { code: 550, esc: [5, 1, 1], message: "No such user\nreally\u{7}".to_string() };
        assert_eq!(reply_line(&r), "550 5.1.1 No such user really");
        assert_eq!(enhanced(&Response { code: 250, esc: [0, 0, 0], message: String::new() }), None);
        assert_eq!(helo_name("client.example"), "client.example");
        assert_eq!(helo_name("bad name\r\nMAIL"), "[127.0.0.1]");
        let s = Scrub::new("u", &Secret::new("hunter22"));
        let b64 = base64::engine::general_purpose::STANDARD.encode("\0u\0hunter22");
        assert_eq!(
            s.apply(format!("501 cannot decode {b64} or hunter22")),
            "501 cannot decode <redacted> or <redacted>"
        );
    }
}
