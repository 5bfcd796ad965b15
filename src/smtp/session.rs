//! One SMTP submission connection (RFC 6409): EHLO, STARTTLS, AUTH, then MAIL/RCPT/DATA. Commands
//! are parsed by smtp-proto's receivers, which keep unread bytes for the next command, so pipelined
//! clients (RFC 2920) are answered in order and the replies go out together.

use std::net::SocketAddr;
use std::ops::ControlFlow;
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

/// Where a submission session is. Each state owns what the commands allowed in it need, so a
/// command out of order is answered by the match on the state, not by checking locals: MAIL only
/// after AUTH (RFC 6409 §4.3: this server relays nothing without a login), RCPT only after MAIL,
/// DATA only after a RCPT (RFC 5321 §4.1.4), AUTH only after EHLO and only once (RFC 4954 §4).
/// A session starts in [`State::Greeted`], and again after STARTTLS (RFC 3207 §4.2: what the
/// client said before the handshake is forgotten). DATA is not a state the session waits in: it
/// runs to its end inside one step ([`Session::data`]) and leaves the session in
/// [`State::Authenticated`].
enum State {
    /// The 220 greeting went out: EHLO (or HELO) is due.
    Greeted,
    /// EHLO or HELO was said, no login yet; `auth_failures` failed AUTH attempts so far (the
    /// connection is closed at [`MAX_AUTH_FAILURES`]).
    Helo { auth_failures: u32 },
    /// Logged in: may send as `scope`. No transaction.
    Authenticated { scope: Scope },
    /// MAIL FROM `from` was accepted (`account` sends it); no recipient yet.
    Mail { scope: Scope, from: String, account: String },
    /// At least one recipient accepted: DATA may follow.
    Rcpt { scope: Scope, envelope: Envelope },
}

/// The transaction being built: the sender, the account that sends, the recipients.
struct Envelope {
    from: String,
    account: String,
    rcpts: Vec<String>,
}

impl State {
    /// EHLO, HELO and RSET end a transaction; the login stays (RFC 5321 §4.1.1.5: RSET clears
    /// the buffers, not the session).
    fn without_transaction(self) -> State {
        match self {
            State::Mail { scope, .. } | State::Rcpt { scope, .. } => State::Authenticated { scope },
            other => other,
        }
    }
}

pub enum Outcome {
    Close,
    StartTls,
}

/// Accepts submission connections until shutdown (`net::listener`, as the IMAP listener does).
pub async fn listen(
    listener: tokio::net::TcpListener,
    implicit_tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<SmtpShared>,
    shutdown: watch::Receiver<bool>,
) {
    let slots = shared.slots.clone();
    crate::net::listener::serve(listener, implicit_tls, slots, shutdown, move |a| {
        serve(shared.clone(), a.io, a.peer, a.tls, a.shutdown, a.slot)
    })
    .await
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
        let session = Session { shared: &shared, conn: &mut conn, peer, tls, slot: &mut slot };
        match session.run(shutdown.clone()).await {
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

/// What one command leaves: the next state, or the end of this session (closed, or STARTTLS).
type Step = ControlFlow<Outcome, State>;

/// One session on one connection (a STARTTLS handshake starts a new one): what every command
/// needs besides the [`State`].
struct Session<'a> {
    shared: &'a SmtpShared,
    conn: &'a mut Conn,
    peer: SocketAddr,
    tls: bool,
    slot: &'a mut Slot,
}

impl Session<'_> {
    /// Reads and answers commands until the client quits or goes away, STARTTLS, or shutdown.
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Outcome {
        let mut receiver = RequestReceiver::default();
        let mut state = State::Greeted;
        loop {
            if *shutdown.borrow() {
                self.conn.reply(421, "4.3.2", "popbridge is shutting down; try again later");
                return Outcome::Close;
            }
            let mut iter = self.conn.input.iter();
            let parsed = receiver.ingest(&mut iter).map(|r| r.into_owned());
            let consumed = self.conn.input.len() - iter.as_slice().len();
            self.conn.input.drain(..consumed);
            match parsed {
                Ok(req) => match self.command(state, req).await {
                    ControlFlow::Continue(next) => state = next,
                    ControlFlow::Break(outcome) => return outcome,
                },
                Err(ProtoError::NeedsMoreData { .. }) => {
                    tokio::select! {
                        r = self.conn.fill() => if let Read::Closed = r { return Outcome::Close },
                        // Checked at the top of the loop.
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                Err(e) => refuse_unparsed(self.conn, e),
            }
            // Pipelining: answer everything already received before waiting for more (RFC 2920 §3.2).
            if self.conn.input.is_empty() && self.conn.flush().await.is_err() {
                return Outcome::Close;
            }
        }
    }

    /// One command in `state`: its replies go into the output buffer.
    async fn command(&mut self, state: State, req: Request<String>) -> Step {
        let conn = &mut *self.conn;
        match req {
            Request::Ehlo { .. } => {
                let mut e = EhloResponse::new(self.shared.hostname.as_str());
                e.capabilities = smtp_proto::EXT_PIPELINING
                    | smtp_proto::EXT_SIZE
                    | smtp_proto::EXT_8BIT_MIME
                    | smtp_proto::EXT_ENHANCED_STATUS_CODES
                    | smtp_proto::EXT_SMTP_UTF8
                    | smtp_proto::EXT_AUTH;
                if !self.tls && self.shared.tls.is_some() {
                    e.capabilities |= smtp_proto::EXT_START_TLS;
                }
                e.auth_mechanisms = smtp_proto::AUTH_PLAIN | smtp_proto::AUTH_LOGIN;
                e.size = self.shared.max_size as usize;
                let _ = e.write(&mut conn.out);
                ControlFlow::Continue(greeted(state))
            }
            Request::Helo { .. } => {
                conn.out.extend_from_slice(format!("250 {}\r\n", self.shared.hostname).as_bytes());
                ControlFlow::Continue(greeted(state))
            }
            Request::Lhlo { .. } => {
                conn.reply(502, "5.5.1", "this is a submission server, not LMTP");
                ControlFlow::Continue(state)
            }
            Request::StartTls => self.starttls(state).await,
            Request::Auth { mechanism, initial_response } => self.auth(state, mechanism, &initial_response).await,
            Request::Mail { from } => self.mail(state, from.address, from.size).await,
            Request::Rcpt { to } => ControlFlow::Continue(rcpt(conn, state, to.address)),
            Request::Data => self.data(state).await,
            Request::Bdat { .. } => {
                conn.reply(502, "5.5.1", "CHUNKING is not offered; use DATA");
                ControlFlow::Continue(state)
            }
            Request::Rset => {
                conn.reply(250, "2.0.0", "ok");
                ControlFlow::Continue(state.without_transaction())
            }
            Request::Noop { .. } => {
                conn.reply(250, "2.0.0", "ok");
                ControlFlow::Continue(state)
            }
            Request::Vrfy { .. } => {
                conn.reply(252, "2.5.2", "cannot verify; send and see");
                ControlFlow::Continue(state)
            }
            Request::Expn { .. } | Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                conn.reply(502, "5.5.1", "not implemented");
                ControlFlow::Continue(state)
            }
            Request::Help { .. } => {
                conn.reply(214, "2.0.0", "popbridge submission: EHLO, AUTH, MAIL, RCPT, DATA, QUIT");
                ControlFlow::Continue(state)
            }
            Request::Quit => {
                conn.reply(221, "2.0.0", "bye");
                ControlFlow::Break(Outcome::Close)
            }
        }
    }

    async fn starttls(&mut self, state: State) -> Step {
        if self.tls || self.shared.tls.is_none() {
            self.conn.reply(502, "5.5.1", "STARTTLS is not available now");
            return ControlFlow::Continue(state);
        }
        self.conn.reply(220, "2.0.0", "ready to start TLS");
        if self.conn.flush().await.is_err() {
            return ControlFlow::Break(Outcome::Close);
        }
        // Anything pipelined after STARTTLS is plaintext injection (RFC 3207 §4.2).
        if !self.conn.input.is_empty() {
            return ControlFlow::Break(Outcome::Close);
        }
        ControlFlow::Break(Outcome::StartTls)
    }

    async fn auth(&mut self, state: State, mechanism: u64, initial_response: &str) -> Step {
        let auth_failures = match state {
            State::Helo { auth_failures } => auth_failures,
            State::Greeted => {
                self.conn.reply(503, "5.5.1", "say EHLO first");
                return ControlFlow::Continue(state);
            }
            State::Authenticated { .. } | State::Mail { .. } | State::Rcpt { .. } => {
                self.conn.reply(503, "5.5.1", "already authenticated");
                return ControlFlow::Continue(state);
            }
        };
        let conn = &mut *self.conn;
        match authenticate(self.shared, conn, self.peer, self.slot, mechanism, initial_response).await {
            AuthResult::Ok(scope) => {
                conn.reply(235, "2.7.0", "authenticated");
                return ControlFlow::Continue(State::Authenticated { scope });
            }
            AuthResult::Failed => {
                let auth_failures = auth_failures + 1;
                conn.reply(535, "5.7.8", "authentication failed: wrong user name or password");
                if auth_failures >= MAX_AUTH_FAILURES {
                    conn.reply(421, "4.7.0", "too many failed logins, closing");
                    return ControlFlow::Break(Outcome::Close);
                }
                return ControlFlow::Continue(State::Helo { auth_failures });
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
            AuthResult::Closed => return ControlFlow::Break(Outcome::Close),
        }
        ControlFlow::Continue(State::Helo { auth_failures })
    }

    /// MAIL FROM: `size` is its SIZE parameter (RFC 1870), 0 without one.
    async fn mail(&mut self, state: State, from: String, size: usize) -> Step {
        let scope = match state {
            State::Authenticated { scope } => scope,
            State::Greeted | State::Helo { .. } => {
                self.conn.reply(530, "5.7.0", "authentication required: log in with the local user and password");
                return ControlFlow::Continue(state);
            }
            State::Mail { .. } | State::Rcpt { .. } => {
                self.conn.reply(503, "5.5.1", "nested MAIL command");
                return ControlFlow::Continue(state);
            }
        };
        let max = self.shared.max_size;
        if size > 0 && size as u64 > max {
            self.conn.reply(552, "5.3.4", &format!("message too big: the limit is {max} bytes"));
            return ControlFlow::Continue(State::Authenticated { scope });
        }
        match self.shared.route(&scope, &from).await {
            Ok(account) => {
                self.conn.reply(250, "2.1.0", "sender ok");
                ControlFlow::Continue(State::Mail { scope, from, account })
            }
            Err((code, esc, text)) => {
                self.conn.reply(code, esc, &text);
                ControlFlow::Continue(State::Authenticated { scope })
            }
        }
    }

    /// DATA: the message, then its verdict — committed to the outbox and 250, or refused.
    async fn data(&mut self, state: State) -> Step {
        let (scope, envelope) = match state {
            State::Rcpt { scope, envelope } => (scope, envelope),
            State::Mail { scope, .. } => {
                self.conn.reply(554, "5.5.1", "no valid recipients");
                return ControlFlow::Continue(State::Authenticated { scope });
            }
            State::Greeted | State::Helo { .. } | State::Authenticated { .. } => {
                self.conn.reply(503, "5.5.1", "MAIL first");
                return ControlFlow::Continue(state);
            }
        };
        let (shared, conn) = (self.shared, &mut *self.conn);
        conn.raw_line("354 end data with <CR><LF>.<CR><LF>");
        let Some(data) = receive_data(conn, shared, &envelope).await else { return ControlFlow::Break(Outcome::Close) };
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
                let Envelope { from, account, rcpts } = &envelope;
                match shared.accept(&scope, account, from, rcpts, msg).await {
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
        ControlFlow::Continue(State::Authenticated { scope })
    }
}

/// What EHLO or HELO leaves: a first one moves on from the greeting; later ones end a
/// transaction and keep the login.
fn greeted(state: State) -> State {
    match state.without_transaction() {
        State::Greeted => State::Helo { auth_failures: 0 },
        other => other,
    }
}

/// RCPT TO: one more recipient, or why not (the state is then as it was).
fn rcpt(conn: &mut Conn, state: State, to: String) -> State {
    let count = match &state {
        State::Mail { .. } => 0,
        State::Rcpt { envelope, .. } => envelope.rcpts.len(),
        State::Greeted | State::Helo { .. } | State::Authenticated { .. } => {
            conn.reply(503, "5.5.1", "MAIL first");
            return state;
        }
    };
    if count >= MAX_RECIPIENTS {
        conn.reply(452, "4.5.3", &format!("too many recipients: at most {MAX_RECIPIENTS} per message"));
        return state;
    }
    if to.is_empty() || !to.contains('@') {
        conn.reply(553, "5.1.3", "recipient must be a full address");
        return state;
    }
    conn.reply(250, "2.1.5", "recipient ok");
    match state {
        State::Mail { scope, from, account } => {
            State::Rcpt { scope, envelope: Envelope { from, account, rcpts: vec![to] } }
        }
        State::Rcpt { scope, mut envelope } => {
            envelope.rcpts.push(to);
            State::Rcpt { scope, envelope }
        }
        // Answered above.
        other => other,
    }
}

/// The reply to a command smtp-proto could not parse.
fn refuse_unparsed(conn: &mut Conn, e: ProtoError) {
    match e {
        ProtoError::ResponseTooLong => conn.reply(500, "5.5.2", "line too long"),
        ProtoError::UnknownCommand => conn.reply(500, "5.5.1", "command not recognized"),
        ProtoError::InvalidSenderAddress => conn.reply(501, "5.1.7", "bad sender address syntax"),
        ProtoError::InvalidRecipientAddress => conn.reply(501, "5.1.3", "bad recipient address syntax"),
        ProtoError::SyntaxError { syntax } => conn.reply(501, "5.5.4", &format!("syntax: {syntax}")),
        ProtoError::InvalidParameter { .. } | ProtoError::UnsupportedParameter { .. } => {
            conn.reply(555, "5.5.4", "unsupported or invalid parameter")
        }
        _ => conn.reply(500, "5.5.2", "syntax error"),
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
async fn receive_data(conn: &mut Conn, shared: &SmtpShared, t: &Envelope) -> Option<Data> {
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
