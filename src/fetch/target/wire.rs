//! A blocking connection for the delivery writers: TCP, a Unix socket, or TLS over TCP (verified
//! as for POP: `net::tls::upstream`). The writers run on the store writer's own thread, so blocking
//! I/O with timeouts is simplest; commands are gathered in a buffer and sent in one write
//! (pipelining), replies are read line by line.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::error::{Error, ErrorClass, Result};
use crate::net::tls::Upstream;

/// The longest reply line accepted (RFC 5321 allows 512; IMAP lines are longer, but not this).
const MAX_LINE: usize = 64 * 1024;

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

pub struct Wire {
    stream: Stream,
    /// Who it is connected to, for messages ("127.0.0.1:24").
    pub peer: String,
    out: Vec<u8>,
    rbuf: Vec<u8>,
    rpos: usize,
}

fn conn_err(peer: &str, doing: &str, e: &io::Error) -> Error {
    let class = match e.kind() {
        io::ErrorKind::InvalidData => ErrorClass::Certificate,
        _ => ErrorClass::Connection,
    };
    Error::new(class, format!("{peer}: {doing} failed: {e}"))
}

impl Wire {
    pub fn tcp(host: &str, port: u16, timeout: Duration) -> Result<Wire> {
        let peer = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let addrs: Vec<_> =
            (host, port).to_socket_addrs().map_err(|e| conn_err(&peer, "looking up the address", &e))?.collect();
        let mut last = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    s.set_read_timeout(Some(timeout))
                        .and_then(|_| s.set_write_timeout(Some(timeout)))
                        .map_err(|e| conn_err(&peer, "setting up the connection", &e))?;
                    return Ok(Wire::new(Stream::Tcp(s), peer));
                }
                Err(e) => last = Some(e),
            }
        }
        let e = last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address found"));
        Err(conn_err(&peer, "connecting", &e))
    }

    pub fn unix(path: &std::path::Path, timeout: Duration) -> Result<Wire> {
        let peer = format!("unix:{}", path.display());
        let s = UnixStream::connect(path).map_err(|e| conn_err(&peer, "connecting", &e))?;
        s.set_read_timeout(Some(timeout))
            .and_then(|_| s.set_write_timeout(Some(timeout)))
            .map_err(|e| conn_err(&peer, "setting up the connection", &e))?;
        Ok(Wire::new(Stream::Unix(s), peer))
    }

    /// TLS from the first byte, verified with `upstream` (the POP side's configuration).
    pub fn tls(host: &str, port: u16, timeout: Duration, upstream: &Upstream) -> Result<Wire> {
        let mut w = Wire::tcp(host, port, timeout)?;
        w.start_tls(host, port, upstream)?;
        Ok(w)
    }

    /// Turns this plain TCP connection into TLS, verified with `upstream` (after the protocol's
    /// STARTTLS was accepted). Anything the server sent beyond that answer is refused: it came
    /// before TLS and could have been injected (RFC 3207 §4.2 ff., the STARTTLS command
    /// injection attacks), so it must not be read as if it came after.
    pub fn start_tls(&mut self, host: &str, port: u16, upstream: &Upstream) -> Result<()> {
        if self.rpos < self.rbuf.len() {
            return Err(Error::new(
                ErrorClass::Protocol,
                format!(
                    "{} sent more after accepting STARTTLS, before TLS began (data that could have been injected); not continuing",
                    self.peer
                ),
            ));
        }
        let Stream::Tcp(tcp) = &self.stream else { return Err(Error::other("internal error: TLS over TLS")) };
        let mut tcp = tcp.try_clone().map_err(|e| conn_err(&self.peer, "starting TLS", &e))?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| Error::config(format!("\"{host}\" is not a host name TLS can verify")))?;
        let mut conn = rustls::ClientConnection::new(upstream.config.clone(), name)
            .map_err(|e| Error::new(ErrorClass::Certificate, format!("TLS with {}: {e}", self.peer)))?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                return Err(crate::net::tls::handshake_error(host, port, &e, &upstream.seen));
            }
        }
        // The plain handle is dropped; the socket lives on in the TLS stream's clone of it.
        self.stream = Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)));
        self.rbuf.clear();
        self.rpos = 0;
        Ok(())
    }

    fn new(stream: Stream, peer: String) -> Wire {
        Wire { stream, peer, out: Vec::with_capacity(64 * 1024), rbuf: Vec::with_capacity(8192), rpos: 0 }
    }

    /// Queues bytes; they go out with the next `flush` (or before the next read).
    pub fn put(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Bytes queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    pub fn flush(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let r = self.stream.write_all(&out).and_then(|_| self.stream.flush());
        self.out = out;
        self.out.clear();
        r.map_err(|e| conn_err(&self.peer, "sending", &e))
    }

    fn fill(&mut self) -> Result<()> {
        if self.rpos > 0 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).map_err(|e| conn_err(&self.peer, "reading the reply", &e))?;
        if n == 0 {
            return Err(Error::new(ErrorClass::Connection, format!("{} closed the connection", self.peer)));
        }
        self.rbuf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// One line without its CRLF (sends what is queued first).
    pub fn line(&mut self) -> Result<Vec<u8>> {
        self.flush()?;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.rbuf[self.rpos..]) {
                let mut line = self.rbuf[self.rpos..self.rpos + i].to_vec();
                self.rpos += i + 1;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.rbuf.len() - self.rpos > MAX_LINE {
                return Err(Error::new(ErrorClass::Protocol, format!("{} sent an overlong line", self.peer)));
            }
            self.fill()?;
        }
    }

    /// Exactly `n` bytes (an IMAP literal).
    pub fn bytes(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.rbuf.len() - self.rpos < n {
            self.fill()?;
        }
        let v = self.rbuf[self.rpos..self.rpos + n].to_vec();
        self.rpos += n;
        Ok(v)
    }
}
