//! One SMTP submission connection (RFC 6409): EHLO, STARTTLS, AUTH, then MAIL/RCPT/DATA. Commands
//! are parsed by smtp-proto's receivers, which keep unread bytes for the next command, so pipelined
//! clients (RFC 2920) are answered in order and the replies go out together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver, RequestReceiver};
use smtp_proto::{EhloResponse, Error as ProtoError, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::policy::Scope;
use super::server::SmtpShared;
use crate::net::ServerIo;
use crate::net::listener::{SessionsFull, Slot};
use crate::net::throttle;

/// An idle client is dropped after this long (RFC 5321 §4.5.3.2 suggests 5 minutes for the server).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Most recipients per message (RFC 5321 §4.5.3.1.8 requires at least 100).
pub const MAX_RECIPIENTS: usize = 100;
/// Failed AUTH attempts before the connection is closed.
pub const MAX_AUTH_FAILURES: u32 = 3;

struct Conn {
    io: ServerIo,
    input: Vec<u8>,
    out: Vec<u8>,
}

enum Read {
    Data,
    Closed,
}

impl Conn {
    async fn fill(&mut self) -> Read {
        if !self.out.is_empty() && self.flush().await.is_err() {
            return Read::Closed;
        }
        let mut buf = [0u8; 16 * 1024];
        match tokio::time::timeout(IDLE_TIMEOUT, self.io.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Read::Closed,
            Ok(Ok(n)) => {
                self.input.extend_from_slice(&buf[..n]);
                Read::Data
            }
            Err(_) => {
                self.out.extend_from_slice(b"421 4.4.2 idle for too long, closing\r\n");
                let _ = self.flush().await;
                Read::Closed
            }
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = tokio::time::timeout(IDLE_TIMEOUT, async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        })
        .await;
        self.out.clear();
        match r {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    fn raw_line(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn reply(&mut self, code: u16, esc: &str, text: &str) {
        let text = crate::mime::header::one_line(text);
        self.out.extend_from_slice(format!("{code} {esc} {text}\r\n").as_bytes());
    }

    /// One raw line (an AUTH continuation), without its line end.
    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(p) = memchr::memchr(b'\n', &self.input) {
                let mut line: Vec<u8> = self.input.drain(..=p).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(line);
            }
            if self.input.len() > 16 * 1024 {
                return None;
            }
            if let Read::Closed = self.fill().await {
                return None;
            }
        }
    }
}

/// The transaction being built.
struct Tx {
    from: String,
    account: String,
    rcpts: Vec<String>,
}

pub enum Outcome {
    Close,
    StartTls,
}

pub async fn serve(
    shared: Arc<SmtpShared>,
    io: ServerIo,
    peer: SocketAddr,
    tls: bool,
    shutdown: watch::Receiver<bool>,
    mut slot: Slot,
) {
    let mut conn = Conn { io, input: Vec::new(), out: Vec::new() };
    conn.raw_line(&format!("220 {} popbridge ESMTP submission ready", shared.hostname));
    let mut tls = tls;
    loop {
        match session(&shared, &mut conn, peer, tls, shutdown.clone(), &mut slot).await {
            Outcome::Close => {
                let _ = conn.flush().await;
                let _ = tokio::time::timeout(Duration::from_secs(2), conn.io.shutdown()).await;
                return;
            }
            Outcome::StartTls => {
                let ServerIo::Plain(tcp) = conn.io else { return };
                let Some(acceptor) = shared.tls.clone() else { return };
                match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => {
                        conn = Conn { io: ServerIo::Tls(Box::new(s)), input: Vec::new(), out: Vec::new() };
                        tls = true;
                    }
                    _ => return,
                }
            }
        }
    }
}

async fn session(
    shared: &Arc<SmtpShared>,
    conn: &mut Conn,
    peer: SocketAddr,
    tls: bool,
    mut shutdown: watch::Receiver<bool>,
    slot: &mut Slot,
) -> Outcome {
    let mut receiver = RequestReceiver::default();
    let mut helo: Option<String> = None;
    let mut scope: Option<Scope> = None;
    let mut tx: Option<Tx> = None;
    let mut auth_failures = 0u32;
    loop {
        if *shutdown.borrow() {
            conn.reply(421, "4.3.2", "popbridge is shutting down; try again later");
            return Outcome::Close;
        }
        let mut iter = conn.input.iter();
        let parsed = receiver.ingest(&mut iter).map(|r| r.into_owned());
        let consumed = conn.input.len() - iter.as_slice().len();
        conn.input.drain(..consumed);
        let req = match parsed {
            Ok(r) => r,
            Err(ProtoError::NeedsMoreData { .. }) => {
                tokio::select! {
                    r = conn.fill() => if let Read::Closed = r { return Outcome::Close },
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            Err(ProtoError::ResponseTooLong) => {
                conn.reply(500, "5.5.2", "line too long");
                continue;
            }
            Err(ProtoError::UnknownCommand) => {
                conn.reply(500, "5.5.1", "command not recognized");
                continue;
            }
            Err(ProtoError::InvalidSenderAddress) => {
                conn.reply(501, "5.1.7", "bad sender address syntax");
                continue;
            }
            Err(ProtoError::InvalidRecipientAddress) => {
                conn.reply(501, "5.1.3", "bad recipient address syntax");
                continue;
            }
            Err(ProtoError::SyntaxError { syntax }) => {
                conn.reply(501, "5.5.4", &format!("syntax: {syntax}"));
                continue;
            }
            Err(ProtoError::InvalidParameter { .. } | ProtoError::UnsupportedParameter { .. }) => {
                conn.reply(555, "5.5.4", "unsupported or invalid parameter");
                continue;
            }
            Err(_) => {
                conn.reply(500, "5.5.2", "syntax error");
                continue;
            }
        };
        match req {
            Request::Ehlo { host } => {
                helo = Some(host);
                tx = None;
                let mut e = EhloResponse::new(shared.hostname.as_str());
                e.capabilities = smtp_proto::EXT_PIPELINING
                    | smtp_proto::EXT_SIZE
                    | smtp_proto::EXT_8BIT_MIME
                    | smtp_proto::EXT_ENHANCED_STATUS_CODES
                    | smtp_proto::EXT_SMTP_UTF8
                    | smtp_proto::EXT_AUTH;
                if !tls && shared.tls.is_some() {
                    e.capabilities |= smtp_proto::EXT_START_TLS;
                }
                e.auth_mechanisms = smtp_proto::AUTH_PLAIN | smtp_proto::AUTH_LOGIN;
                e.size = shared.max_size as usize;
                let _ = e.write(&mut conn.out);
            }
            Request::Helo { host } => {
                helo = Some(host);
                tx = None;
                conn.out.extend_from_slice(format!("250 {}\r\n", shared.hostname).as_bytes());
            }
            Request::Lhlo { .. } => conn.reply(502, "5.5.1", "this is a submission server, not LMTP"),
            Request::StartTls => {
                if tls || shared.tls.is_none() {
                    conn.reply(502, "5.5.1", "STARTTLS is not available now");
                    continue;
                }
                conn.reply(220, "2.0.0", "ready to start TLS");
                if conn.flush().await.is_err() {
                    return Outcome::Close;
                }
                // Anything pipelined after STARTTLS is plaintext injection (RFC 3207 §4.2).
                if !conn.input.is_empty() {
                    return Outcome::Close;
                }
                return Outcome::StartTls;
            }
            Request::Auth { mechanism, initial_response } => {
                if scope.is_some() {
                    conn.reply(503, "5.5.1", "already authenticated");
                    continue;
                }
                if helo.is_none() {
                    conn.reply(503, "5.5.1", "say EHLO first");
                    continue;
                }
                match authenticate(shared, conn, peer, slot, mechanism, &initial_response).await {
                    AuthResult::Ok(s) => {
                        scope = Some(s);
                        conn.reply(235, "2.7.0", "authenticated");
                    }
                    AuthResult::Failed => {
                        auth_failures += 1;
                        conn.reply(535, "5.7.8", "authentication failed: wrong user name or password");
                        if auth_failures >= MAX_AUTH_FAILURES {
                            conn.reply(421, "4.7.0", "too many failed logins, closing");
                            return Outcome::Close;
                        }
                    }
                    // RFC 4954 §6: a temporary failure; the client may try again.
                    AuthResult::Limit(full) => conn.reply(
                        454,
                        "4.7.0",
                        &format!(
                            "too many sessions: all {} are logged in; try again later (or raise [limits] smtp_authenticated)",
                            full.limit
                        ),
                    ),
                    AuthResult::Cancelled => conn.reply(501, "5.0.0", "authentication cancelled"),
                    AuthResult::Unsupported => conn.reply(504, "5.5.4", "use AUTH PLAIN or AUTH LOGIN"),
                    AuthResult::Closed => return Outcome::Close,
                }
            }
            Request::Mail { from } => {
                let Some(scope) = &scope else {
                    conn.reply(530, "5.7.0", "authentication required: log in with the local user and password");
                    continue;
                };
                if tx.is_some() {
                    conn.reply(503, "5.5.1", "nested MAIL command");
                    continue;
                }
                if from.size > 0 && from.size as u64 > shared.max_size {
                    conn.reply(552, "5.3.4", &format!("message too big: the limit is {} bytes", shared.max_size));
                    continue;
                }
                match shared.route(scope, &from.address).await {
                    Ok(account) => {
                        tx = Some(Tx { from: from.address, account, rcpts: Vec::new() });
                        conn.reply(250, "2.1.0", "sender ok");
                    }
                    Err((code, esc, text)) => conn.reply(code, esc, &text),
                }
            }
            Request::Rcpt { to } => {
                let Some(t) = tx.as_mut() else {
                    conn.reply(503, "5.5.1", "MAIL first");
                    continue;
                };
                if t.rcpts.len() >= MAX_RECIPIENTS {
                    conn.reply(452, "4.5.3", &format!("too many recipients: at most {MAX_RECIPIENTS} per message"));
                    continue;
                }
                if to.address.is_empty() || !to.address.contains('@') {
                    conn.reply(553, "5.1.3", "recipient must be a full address");
                    continue;
                }
                t.rcpts.push(to.address);
                conn.reply(250, "2.1.5", "recipient ok");
            }
            Request::Data => {
                let Some(t) = tx.take() else {
                    conn.reply(503, "5.5.1", "MAIL first");
                    continue;
                };
                if t.rcpts.is_empty() {
                    conn.reply(554, "5.5.1", "no valid recipients");
                    continue;
                }
                conn.raw_line("354 end data with <CR><LF>.<CR><LF>");
                let Some(data) = receive_data(conn, shared, &t).await else { return Outcome::Close };
                match data {
                    Data::TooBig => {
                        conn.reply(552, "5.3.4", &format!("message too big: the limit is {} bytes", shared.max_size))
                    }
                    Data::HeaderTooLarge => conn.reply(
                        552,
                        "5.6.0",
                        &format!("the message header is larger than {} bytes", super::spool::MAX_HEADER),
                    ),
                    Data::NotStored(e) => conn.reply(451, "4.3.0", &format!("could not store the message: {e}")),
                    Data::Message(msg) => {
                        let spooled = msg.spool_id();
                        match shared.accept(scope.as_ref(), &t.account, &t.from, &t.rcpts, msg).await {
                            Ok(id) => conn.reply(250, "2.0.0", &format!("queued as {id}")),
                            Err((code, esc, text)) => {
                                if let Some(id) = spooled {
                                    super::spool::discard(&shared.store, id).await;
                                }
                                conn.reply(code, esc, &text)
                            }
                        }
                    }
                }
            }
            Request::Bdat { .. } => conn.reply(502, "5.5.1", "CHUNKING is not offered; use DATA"),
            Request::Rset => {
                tx = None;
                conn.reply(250, "2.0.0", "ok");
            }
            Request::Noop { .. } => conn.reply(250, "2.0.0", "ok"),
            Request::Vrfy { .. } => conn.reply(252, "2.5.2", "cannot verify; send and see"),
            Request::Expn { .. } | Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                conn.reply(502, "5.5.1", "not implemented")
            }
            Request::Help { .. } => {
                conn.reply(214, "2.0.0", "popbridge submission: EHLO, AUTH, MAIL, RCPT, DATA, QUIT")
            }
            Request::Quit => {
                conn.reply(221, "2.0.0", "bye");
                return Outcome::Close;
            }
        }
        // Pipelining: answer everything already received before waiting for more (RFC 2920 §3.2).
        if conn.input.is_empty() && conn.flush().await.is_err() {
            return Outcome::Close;
        }
    }
}

enum Data {
    Message(super::spool::Submitted),
    TooBig,
    HeaderTooLarge,
    NotStored(String),
}

/// Reads DATA up to the final ".", dot-unstuffed. A message larger than a step goes into the
/// outbox as it arrives (`spool`): memory stays at one step however large it is. Past the size
/// limit the rest is read and discarded (memory stays bounded), then refused. `None`: the client
/// went away.
async fn receive_data(conn: &mut Conn, shared: &SmtpShared, t: &Tx) -> Option<Data> {
    use super::spool::{SpoolError, Spooler};
    let max = shared.max_size;
    let mut rx = DataReceiver::new();
    let mut buf = Vec::new();
    let mut dummy: Option<DummyDataReceiver> = None;
    let mut refusal: Option<Data> = None;
    let mut spool = Some(Spooler::new(shared.store.clone(), &t.account, &t.from, &t.rcpts).await);
    let mut received = 0u64;
    loop {
        let mut iter = conn.input.iter();
        let done = match dummy.as_mut() {
            Some(d) => d.ingest(&mut iter),
            None => {
                let before = buf.len();
                let done = rx.ingest(&mut iter, &mut buf);
                received += (buf.len() - before) as u64;
                done
            }
        };
        let consumed = conn.input.len() - iter.as_slice().len();
        conn.input.drain(..consumed);
        if done {
            if let Some(r) = refusal {
                return Some(r);
            }
            let Some(sp) = spool.take() else { return Some(Data::TooBig) };
            return Some(match sp.finish(buf).await {
                Ok(msg) => Data::Message(msg),
                Err(SpoolError::HeaderTooLarge) => Data::HeaderTooLarge,
                Err(SpoolError::Store(e)) => Data::NotStored(e),
            });
        }
        if dummy.is_none() {
            let failed = if received > max {
                Some(Data::TooBig)
            } else if buf.len() >= crate::memory::STEP
                && let Some(sp) = spool.as_mut()
            {
                match sp.spill(&mut buf).await {
                    Ok(()) => None,
                    Err(SpoolError::HeaderTooLarge) => Some(Data::HeaderTooLarge),
                    Err(SpoolError::Store(e)) => Some(Data::NotStored(e)),
                }
            } else {
                None
            };
            if let Some(f) = failed {
                dummy = Some(DummyDataReceiver::new_data(&rx));
                buf = Vec::new();
                if let Some(sp) = spool.take() {
                    sp.discard().await;
                }
                refusal = Some(f);
            }
        }
        if let Read::Closed = conn.fill().await {
            if let Some(sp) = spool.take() {
                sp.discard().await;
            }
            return None;
        }
    }
}

enum AuthResult {
    Ok(Scope),
    Failed,
    Limit(SessionsFull),
    Cancelled,
    Unsupported,
    Closed,
}

async fn authenticate(
    shared: &SmtpShared,
    conn: &mut Conn,
    peer: SocketAddr,
    slot: &mut Slot,
    mechanism: u64,
    ir: &str,
) -> AuthResult {
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |s: &[u8]| -> Option<Vec<u8>> { if s == b"=" { Some(Vec::new()) } else { b64.decode(s).ok() } };
    let ask = |conn: &mut Conn, challenge: &str| {
        conn.out.extend_from_slice(format!("334 {challenge}\r\n").as_bytes());
    };
    let (user, password) = if mechanism == smtp_proto::AUTH_PLAIN {
        let data = if ir.is_empty() {
            ask(conn, "");
            if conn.flush().await.is_err() {
                return AuthResult::Closed;
            }
            match conn.line().await {
                Some(l) if l == b"*" => return AuthResult::Cancelled,
                Some(l) => l,
                None => return AuthResult::Closed,
            }
        } else {
            ir.as_bytes().to_vec()
        };
        let Some(plain) = decode(&data) else { return AuthResult::Failed };
        let parts: Vec<&[u8]> = plain.split(|b| *b == 0).collect();
        match parts.as_slice() {
            [authz, user, pass] if authz.is_empty() || authz == user => (user.to_vec(), pass.to_vec()),
            _ => return AuthResult::Failed,
        }
    } else if mechanism == smtp_proto::AUTH_LOGIN {
        let user = if ir.is_empty() {
            ask(conn, "VXNlcm5hbWU6");
            if conn.flush().await.is_err() {
                return AuthResult::Closed;
            }
            match conn.line().await {
                Some(l) if l == b"*" => return AuthResult::Cancelled,
                Some(l) => match decode(&l) {
                    Some(u) => u,
                    None => return AuthResult::Failed,
                },
                None => return AuthResult::Closed,
            }
        } else {
            match decode(ir.as_bytes()) {
                Some(u) => u,
                None => return AuthResult::Failed,
            }
        };
        ask(conn, "UGFzc3dvcmQ6");
        if conn.flush().await.is_err() {
            return AuthResult::Closed;
        }
        let pass = match conn.line().await {
            Some(l) if l == b"*" => return AuthResult::Cancelled,
            Some(l) => match decode(&l) {
                Some(p) => p,
                None => return AuthResult::Failed,
            },
            None => return AuthResult::Closed,
        };
        (user, pass)
    } else {
        return AuthResult::Unsupported;
    };
    // Until the answer, the throttle's delay included (`net::throttle`), this connection keeps
    // its place: never pushed out by newer ones, not cut by the login timeout.
    let name = throttle::login_name(&user, &shared.live.login().0);
    let _busy = slot.login_attempt();
    match shared.check_login(&user, &password) {
        Some(scope) => {
            shared.throttle.succeeded(peer.ip(), &name);
            match slot.authenticated() {
                Ok(()) => AuthResult::Ok(scope),
                Err(full) => AuthResult::Limit(full),
            }
        }
        None => {
            let delay = shared.throttle.failed(peer.ip(), &name);
            tracing::info!("smtp: failed login from {peer}");
            tokio::time::sleep(delay).await;
            AuthResult::Failed
        }
    }
}
