//! The POP3 client driver: owns the socket, feeds the sans-I/O [`crate::pop3::Client`], enforces
//! timeouts, and upgrades to TLS on STLS.
//!
//! Cancel safety: all progress lives in `self` between awaits (the unsent tail of `out`, bytes read
//! go straight into the core), so [`Pop3Conn::reply`] can be one arm of a `select!`.
//!
//! [`Pop3Conn::reply`] writes the queued commands *while* it reads (RFC 2449 §6.6: a pipelining
//! client must not stop reading while it writes): a server that answers the first commands of a
//! long pipeline before it reads the rest, and stops reading while its answers are not read, would
//! otherwise stall both sides.

use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::tls::Upstream;
use super::{Io, connect_tcp, tls_client};
use crate::config::{PopServer, TlsMode};
use crate::error::{Error, ErrorClass, Result};
use crate::pop3::{self, Command, ProtocolError, Reply, Sent};

/// Bytes read per system call: large enough that a 30 KB message takes one or two reads.
const READ_CHUNK: usize = 64 * 1024;

pub struct Pop3Conn {
    io: Option<Io>,
    client: pop3::Client,
    out: Vec<u8>,
    out_pos: usize,
    rbuf: Vec<u8>,
    timeout: Duration,
    /// Round-trip measurement: the connection had nothing in flight when the queued commands
    /// were queued (set by `send`), then the moment they were on the wire (set once written).
    rtt_armed: bool,
    rtt_since: Option<Instant>,
    /// The smallest round trip seen: commands written on an idle connection → first answer byte.
    min_rtt: Option<Duration>,
    pub host: String,
    pub port: u16,
    /// Whether the session is encrypted now.
    pub tls: bool,
}

impl Pop3Conn {
    /// Connects (with implicit TLS when configured) and reads the greeting. A `-ERR` greeting is
    /// returned as an error of the class its response code implies.
    pub async fn open(server: &PopServer, upstream: Option<&Upstream>) -> Result<(Pop3Conn, Reply)> {
        let tcp = connect_tcp(&server.host, server.port, server.timeout).await?;
        let (io, tls) = match (server.tls, upstream) {
            (TlsMode::Implicit, Some(up)) => {
                (Io::Tls(Box::new(tls_client(tcp, &server.host, server.port, up, server.timeout).await?)), true)
            }
            (TlsMode::Implicit, None) => {
                return Err(Error::other("internal error: TLS requested without a TLS configuration"));
            }
            _ => (Io::Plain(tcp), false),
        };
        let limits = pop3::Limits { max_body: server.max_message_size, ..pop3::Limits::default() };
        let mut conn = Pop3Conn {
            io: Some(io),
            client: pop3::Client::new(limits),
            out: Vec::with_capacity(4096),
            out_pos: 0,
            rbuf: vec![0u8; READ_CHUNK],
            timeout: server.timeout,
            rtt_armed: false,
            rtt_since: None,
            min_rtt: None,
            host: server.host.clone(),
            port: server.port,
            tls,
        };
        let greeting = conn.reply().await?;
        if greeting.status != pop3::Status::Ok {
            return Err(refusal(&conn.host, "greeted us with", &greeting));
        }
        Ok((conn, greeting))
    }

    /// Queues a command (nothing is written until [`Self::reply`] or [`Self::flush`]).
    pub fn send(&mut self, cmd: &Command<'_>) {
        self.arm_rtt();
        self.client.send(cmd, &mut self.out);
    }

    /// Queues a RETR whose size LIST announced (the body buffer is reserved once).
    pub fn send_retr(&mut self, n: u32, size: u64) {
        self.arm_rtt();
        self.client.send_with_size_hint(&Command::Retr(n), size, &mut self.out);
    }

    /// A command queued on an idle connection (nothing unanswered, nothing unsent, nothing
    /// buffered): the time from writing it to its answer's first byte is one round trip.
    fn arm_rtt(&mut self) {
        if self.client.in_flight() == 0 && self.out_pos == self.out.len() && self.client.buffered() == 0 {
            self.rtt_armed = true;
            self.rtt_since = None;
        }
    }

    /// The smallest round trip seen so far (command written on an idle connection → the first
    /// byte of its answer, server time included): the path's delay, for the pipelining window.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// Replies still expected.
    pub fn in_flight(&self) -> usize {
        self.client.in_flight()
    }

    fn io_error(&self, doing: &str, e: std::io::Error) -> Error {
        Error::new(
            ErrorClass::Connection,
            format!("connection to {}:{} broke while {doing}: {e}", self.host, self.port),
        )
    }

    fn timed_out(&self, doing: &str) -> Error {
        Error::new(
            ErrorClass::Connection,
            format!(
                "{}:{} stopped responding ({doing}, nothing for {}s)",
                self.host,
                self.port,
                self.timeout.as_secs()
            ),
        )
    }

    /// Writes every queued command. Cancel-safe: the unsent tail stays in `out`.
    pub async fn flush(&mut self) -> Result<()> {
        let timeout = self.timeout;
        while self.out_pos < self.out.len() {
            let Pop3Conn { io, out, out_pos, .. } = self;
            let Some(io) = io.as_mut() else { return Err(closed()) };
            match tokio::time::timeout(timeout, io.write(&out[*out_pos..])).await {
                Ok(Ok(0)) => return Err(self.io_error("sending", std::io::ErrorKind::WriteZero.into())),
                Ok(Ok(n)) => self.out_pos += n,
                Ok(Err(e)) => return Err(self.io_error("sending", e)),
                Err(_) => return Err(self.timed_out("not accepting our commands")),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        let Some(io) = self.io.as_mut() else { return Err(closed()) };
        match tokio::time::timeout(timeout, io.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.io_error("sending", e)),
            Err(_) => Err(self.timed_out("not accepting our commands")),
        }
    }

    /// The next reply. Queued commands are written while the answers are read (never first
    /// all the writing, then the reading: see the module docs), and before a reply already
    /// received is returned (the server gets them without waiting for the caller's next call).
    /// Cancel-safe: bytes read are fed to the core before the next await, bytes written leave
    /// `out` as they go.
    pub async fn reply(&mut self) -> Result<Reply> {
        let timeout = self.timeout;
        loop {
            match self.client.poll() {
                Ok(Some(r)) => {
                    if self.out_pos < self.out.len() {
                        // What the socket takes now, without waiting.
                        let Pop3Conn { io, out, out_pos, rtt_armed, rtt_since, .. } = self;
                        let Some(io) = io.as_mut() else { return Err(closed()) };
                        let sent = std::future::poll_fn(|cx| {
                            Poll::Ready(write_out(io, out, out_pos, rtt_armed, rtt_since, cx).map(|_| ()))
                        })
                        .await;
                        if let Err(e) = sent {
                            return Err(self.io_error("sending", e));
                        }
                    }
                    return Ok(r);
                }
                Ok(None) => {}
                Err(e) => return Err(self.protocol_error(e)),
            }
            let Pop3Conn { io, rbuf, out, out_pos, rtt_armed, rtt_since, .. } = self;
            let Some(io) = io.as_mut() else { return Err(closed()) };
            // Write what is queued while waiting for bytes to read; the timeout is for the
            // server's silence (a server that takes our commands but never answers times out too).
            let step = std::future::poll_fn(|cx| {
                loop {
                    let wrote = match write_out(io, out, out_pos, rtt_armed, rtt_since, cx) {
                        Ok(w) => w,
                        Err(e) => return Poll::Ready(Step::Send(e)),
                    };
                    let mut buf = ReadBuf::new(rbuf);
                    match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) => return Poll::Ready(Step::Read(buf.filled().len())),
                        Poll::Ready(Err(e)) => return Poll::Ready(Step::Receive(e)),
                        Poll::Pending => {}
                    }
                    if !wrote {
                        return Poll::Pending;
                    }
                }
            });
            match tokio::time::timeout(timeout, step).await {
                Ok(Step::Read(0)) => self.client.feed_eof(),
                Ok(Step::Read(n)) => {
                    if let Some(t) = self.rtt_since.take() {
                        let rtt = t.elapsed();
                        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
                    }
                    self.client.feed(&self.rbuf[..n]);
                }
                Ok(Step::Send(e)) => return Err(self.io_error("sending", e)),
                Ok(Step::Receive(e)) => return Err(self.io_error("receiving", e)),
                Err(_) if self.out_pos < self.out.len() => return Err(self.timed_out("not accepting our commands")),
                Err(_) => return Err(self.timed_out("waiting for its answer")),
            }
        }
    }

    fn protocol_error(&self, e: ProtocolError) -> Error {
        match e {
            ProtocolError::Eof { waiting_for, in_body } => Error::new(
                ErrorClass::Connection,
                format!(
                    "{}:{} closed the connection {} to {}",
                    self.host,
                    self.port,
                    if in_body { "in the middle of its answer" } else { "instead of answering" },
                    describe(waiting_for)
                ),
            ),
            other => Error::new(
                ErrorClass::Protocol,
                format!("{}:{} broke the POP3 protocol: {other}", self.host, self.port),
            ),
        }
    }

    /// Sends one command and waits for its reply (lock-step).
    pub async fn call(&mut self, cmd: &Command<'_>) -> Result<Reply> {
        self.send(cmd);
        self.reply().await
    }

    /// STLS (RFC 2595): upgrade the session to TLS. Any byte the server sent after its `+OK` is an
    /// injection attempt (plaintext that would be read as if it came over TLS) and aborts.
    pub async fn starttls(&mut self, upstream: &Upstream) -> Result<()> {
        let r = self.call(&Command::Stls).await?;
        if r.status != pop3::Status::Ok {
            return Err(Error::new(
                ErrorClass::Certificate,
                format!(
                    "{} refused STLS ({}); popbridge never falls back to plaintext — use tls = \"implicit\" on port 995 if the server offers it",
                    self.host, r.text
                ),
            ));
        }
        if self.client.buffered() != 0 || self.client.in_flight() != 0 {
            return Err(Error::new(
                ErrorClass::Protocol,
                format!("{} sent data after accepting STLS (possible injection); the connection was closed", self.host),
            ));
        }
        let tcp = match self.io.take() {
            Some(Io::Plain(tcp)) => tcp,
            Some(other) => {
                self.io = Some(other);
                return Err(Error::other("internal error: STLS on a TLS session"));
            }
            None => return Err(closed()),
        };
        let tls = tls_client(tcp, &self.host, self.port, upstream, self.timeout).await?;
        self.io = Some(Io::Tls(Box::new(tls)));
        self.tls = true;
        Ok(())
    }

    /// Closes the socket without QUIT (the server then deletes nothing: RFC 1939 §6).
    pub async fn abort(mut self) {
        if let Some(mut io) = self.io.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
        }
    }
}

/// Writes queued commands as far as the socket takes them now, then flushes (TLS keeps what it
/// encrypted until then). Returns whether any byte was written. Once everything is out, the
/// round-trip clock starts if the commands were queued on an idle connection.
fn write_out(
    io: &mut Io,
    out: &mut Vec<u8>,
    out_pos: &mut usize,
    rtt_armed: &mut bool,
    rtt_since: &mut Option<Instant>,
    cx: &mut std::task::Context<'_>,
) -> std::io::Result<bool> {
    let mut wrote = false;
    while *out_pos < out.len() {
        match Pin::new(&mut *io).poll_write(cx, &out[*out_pos..]) {
            Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                *out_pos += n;
                wrote = true;
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(wrote),
        }
    }
    if !out.is_empty() {
        match Pin::new(&mut *io).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                out.clear();
                *out_pos = 0;
                if std::mem::take(rtt_armed) {
                    *rtt_since = Some(Instant::now());
                }
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => {}
        }
    }
    Ok(wrote)
}

/// What one I/O step of [`Pop3Conn::reply`] ended with.
enum Step {
    /// Bytes read into the read buffer (0: end of stream).
    Read(usize),
    Send(std::io::Error),
    Receive(std::io::Error),
}

fn closed() -> Error {
    Error::other("internal error: POP3 connection already closed")
}

/// Names a command the way the user would understand.
pub fn describe(s: Sent) -> String {
    match s {
        Sent::Greeting => "the greeting".into(),
        Sent::Retr(n) => format!("RETR {n} (downloading message {n})"),
        Sent::Top(n, _) => format!("TOP {n}"),
        Sent::Dele(n) => format!("DELE {n}"),
        Sent::List(_) => "LIST".into(),
        Sent::Uidl(_) => "UIDL".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// A `-ERR` classified by its RFC 2449/3206 response code.
pub fn refusal(host: &str, doing: &str, r: &Reply) -> Error {
    use pop3::RespCode;
    let text = if r.text.is_empty() { "(no reason given)".to_string() } else { r.text.clone() };
    let (class, what) = match &r.code {
        Some(RespCode::InUse) => (ErrorClass::Temporary, "the mailbox is in use by another POP session (IN-USE)"),
        Some(RespCode::LoginDelay) => {
            (ErrorClass::Temporary, "logged in too soon after the previous session (LOGIN-DELAY)")
        }
        Some(RespCode::SysTemp) => (ErrorClass::Temporary, "a temporary server problem (SYS/TEMP)"),
        Some(RespCode::SysPerm) => (
            ErrorClass::Authentication,
            "a permanent server-side problem with this account (SYS/PERM): contact the provider",
        ),
        Some(RespCode::Auth) => (ErrorClass::Authentication, "the user name or password was rejected"),
        _ => (ErrorClass::Temporary, "an error"),
    };
    Error::new(class, format!("{host} {doing} {what}: \"{text}\""))
}
