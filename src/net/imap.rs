//! The IMAP server driver: owns one client connection, feeds imap-next's sans-I/O `Server` with
//! what it reads, and writes both imap-next's own output (literal continuations, AUTHENTICATE and
//! IDLE continuations) and the responses the session encodes itself, in one ordered buffer.
//!
//! Why our own driver rather than imap-next's `Stream` (see the team's imap-next notes): STARTTLS
//! needs the socket back; `Stream` reads 64 bytes per call, fails TLS writes over 64 KiB, and keeps
//! reading (buffering without bound) while it writes. This driver reads 64 KiB at a time, only when
//! imap-next needs input and nothing is left to write — so TCP back-pressure bounds memory in both
//! directions — and a write that makes no progress for `WRITE_TIMEOUT` ends the connection.
//!
//! Cancel safety: between awaits all progress is in `self` (the unsent tail of `out`) or in the
//! `Server`; [`Driver::next`] can be one arm of a `select!`.

use std::io;
use std::time::Duration;

use imap_next::server::{Error as ServerError, Event, Server};
use imap_next::{Interrupt, Io as NextIo, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use super::ServerIo;

/// A client that stops reading for this long is gone (or hostile): the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(300);
/// Read size: a TLS record's worth (16 KiB) — an APPEND literal still arrives in few system calls,
/// and an idle session keeps little (every session has one).
const READ_CHUNK: usize = 16 * 1024;
/// What rustls may hold of a session's encrypted output before the socket takes it (its default
/// is 64 KiB per session); the driver's own buffer is charged to the memory budget instead.
const TLS_BUFFER: usize = 32 * 1024;
/// Output buffers larger than this are given back to the allocator once written: what an idle
/// session keeps (a FETCH step's buffer is charged to the memory budget only while it is full).
const KEEP_CAPACITY: usize = 16 * 1024;
/// Before login, the most a client may send without completing a command (LOGIN and
/// AUTHENTICATE take a few hundred bytes). imap-next's own limit is an APPEND's size, which it
/// buffers in full (a non-synchronizing literal cannot be refused before it arrives): beyond this
/// the connection is closed instead, so an unauthenticated client cannot make the server hold more.
pub const UNAUTHENTICATED_MAX_COMMAND: usize = 64 * 1024;

pub struct Driver {
    io: ServerIo,
    out: Vec<u8>,
    pos: usize,
    needs_flush: bool,
    rbuf: Box<[u8]>,
    /// Bytes read since imap-next last produced an event (a command, an error…).
    unparsed: usize,
    /// Whether `UNAUTHENTICATED_MAX_COMMAND` applies.
    limited: bool,
}

impl Driver {
    pub fn new(mut io: ServerIo) -> Driver {
        if let ServerIo::Tls(tls) = &mut io {
            tls.get_mut().1.set_buffer_limit(Some(TLS_BUFFER));
        }
        Driver {
            io,
            out: Vec::with_capacity(8192),
            pos: 0,
            needs_flush: false,
            rbuf: vec![0u8; READ_CHUNK].into_boxed_slice(),
            unparsed: 0,
            limited: true,
        }
    }

    /// Lifts (after login) or sets the limit on commands of unauthenticated clients.
    pub fn set_authenticated(&mut self, authenticated: bool) {
        self.limited = !authenticated;
    }

    /// The output buffer: responses appended here go out, in order, at the next flush or `next`.
    pub fn out(&mut self) -> &mut Vec<u8> {
        self.needs_flush = true;
        &mut self.out
    }

    /// Queues `bytes` for writing: taken over as the buffer when nothing else is pending (no copy
    /// of a FETCH step the store just produced), appended otherwise.
    pub fn push(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        self.needs_flush = true;
        if self.pos == self.out.len() {
            self.out = bytes;
            self.pos = 0;
        } else {
            self.out.extend_from_slice(&bytes);
        }
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.out.len() - self.pos
    }

    /// Writes everything queued. Cancel-safe.
    pub async fn flush(&mut self) -> io::Result<()> {
        while self.pos < self.out.len() {
            let n = match tokio::time::timeout(WRITE_TIMEOUT, self.io.write(&self.out[self.pos..])).await {
                Ok(r) => r?,
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")),
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.pos += n;
        }
        self.out.clear();
        self.pos = 0;
        if self.out.capacity() > KEEP_CAPACITY {
            self.out.shrink_to(KEEP_CAPACITY);
        }
        if self.needs_flush {
            // TLS buffers records: push them out.
            match tokio::time::timeout(WRITE_TIMEOUT, self.io.flush()).await {
                Ok(r) => r?,
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")),
            }
            self.needs_flush = false;
        }
        Ok(())
    }

    /// The next event from imap-next, writing pending output first and reading only when imap-next
    /// needs input. `Ok(Err(e))`: a protocol error imap-next reports (malformed command…), the
    /// session goes on; `Err`: the connection is gone.
    pub async fn next(&mut self, server: &mut Server) -> io::Result<Result<Event, ServerError>> {
        loop {
            self.flush().await?;
            match server.next() {
                Ok(event) => {
                    self.unparsed = 0;
                    return Ok(Ok(event));
                }
                Err(Interrupt::Error(e)) => {
                    self.unparsed = 0;
                    return Ok(Err(e));
                }
                Err(Interrupt::Io(NextIo::Output(bytes))) => {
                    self.out.extend_from_slice(&bytes);
                    self.needs_flush = true;
                }
                Err(Interrupt::Io(NextIo::NeedMoreInput)) => {
                    if self.limited && self.unparsed > UNAUTHENTICATED_MAX_COMMAND {
                        // Said before the connection closes (`close` writes what is pending).
                        self.out.extend_from_slice(b"* BYE command too long before login\r\n");
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "command too long before login"));
                    }
                    let n = self.io.read(&mut self.rbuf).await?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    self.unparsed += n;
                    server.enqueue_input(&self.rbuf[..n]);
                }
            }
        }
    }

    /// Closes the connection politely (TLS close_notify) after writing what is pending.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = self.flush().await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }

    pub fn into_io(self) -> ServerIo {
        self.io
    }
}
