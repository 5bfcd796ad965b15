//! The tokio side of the protocols: sockets, TLS, timeouts. Protocol logic lives in sans-I/O cores
//! (`crate::pop3`); the drivers here only move bytes and turn I/O failures into classified errors.
//!
//! - `tls`: every rustls configuration (upstream verification, the local certificate).
//! - `certinfo`: a presented certificate's subject, issuer, validity and fingerprint, for people.
//! - `pop3`: the POP3 client driver (implicit TLS, STLS upgrade, pipelined commands).
//! - `imap`: the IMAP server driver around imap-next's sans-I/O `Server` (STARTTLS, bounded buffers).
//! - `listener`: the accept loop of the local servers (IMAP, SMTP) and their connection slots:
//!   few places before login, with a login timeout and the oldest idle one pushed out; a pool of
//!   sessions after.
//! - `throttle`: the login throttle both local servers share (by address, by name, and globally).

pub mod certinfo;
pub mod imap;
pub mod listener;
pub mod pop3;
pub mod throttle;
pub mod tls;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::{Error, ErrorClass, Result};

/// A connection that is plain TCP or TLS over TCP (the two states of a STARTTLS-capable session).
pub enum Io {
    Plain(TcpStream),
    Tls(Box<TlsClientStream>),
}

/// TLS as a client, over a read buffer: rustls asks the socket for at most 4 KiB at a time, so
/// without it a bulk download costs one `recv` per 4 KiB (a quarter of a TLS record); with it,
/// one per 64 KiB.
pub type TlsClientStream = tokio_rustls::client::TlsStream<tokio::io::BufReader<TcpStream>>;

/// The read buffer a TLS client stream sits on (fresh, so nothing the server sent before the
/// handshake can end up inside TLS).
pub fn tls_read_buffer(tcp: TcpStream) -> tokio::io::BufReader<TcpStream> {
    tokio::io::BufReader::with_capacity(64 * 1024, tcp)
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Resolves `host` and connects to the first address that answers, within `timeout` overall.
pub async fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let attempt = async {
        let addrs: Vec<_> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::new(ErrorClass::Connection, format!("cannot resolve {host}: {e}")))?
            .collect();
        let mut last = None;
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Error::new(
                ErrorClass::Connection,
                format!("{host}:{port} refused the connection (nothing listens on that port)"),
            ),
            Some(e) => Error::new(ErrorClass::Connection, format!("cannot connect to {host}:{port}: {e}")),
            None => Error::new(ErrorClass::Connection, format!("{host} has no address")),
        })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            ErrorClass::Connection,
            format!("no answer from {host}:{port} within {}s", timeout.as_secs()),
        )),
    }
}

/// The TLS handshake as a client, with certificate errors classified and fingerprinted.
pub async fn tls_client(
    tcp: TcpStream,
    host: &str,
    port: u16,
    upstream: &tls::Upstream,
    timeout: Duration,
) -> Result<TlsClientStream> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| Error::config(format!("\"{host}\" is not a valid host name for TLS")))?;
    let connector = tokio_rustls::TlsConnector::from(upstream.config.clone());
    let tcp = tls_read_buffer(tcp);
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(tls::handshake_error(host, port, &e, &upstream.seen)),
        Err(_) => Err(Error::new(
            ErrorClass::Certificate,
            format!(
                "the TLS handshake with {host}:{port} did not finish within {}s (is it really a TLS port?)",
                timeout.as_secs()
            ),
        )),
    }
}

/// A client connection before or after TLS.
pub enum ServerIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for ServerIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
