//! Line clients for the local listeners that may come from any address of 127.0.0.0/8 and report
//! failures (a timeout, a closed connection) as values instead of panicking: for tests that count
//! what many clients got, or time what one got under load (tests/limits.rs).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::fake_pop3::b64encode;

/// A fresh source address in 127.2.0.0–127.254.255.255 for each call (all of 127.0.0.0/8 is this
/// machine on Linux, so binding one needs no setup).
pub fn next_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % 0x00fc_0000;
        let ip = Ipv4Addr::from(0x7f02_0000 + n);
        // Skip .0 and .255: valid here, but they look like network and broadcast addresses.
        if !matches!(ip.octets()[3], 0 | 255) {
            return ip;
        }
    }
}

/// A TCP connection to 127.0.0.1:`port`, from `from` (a 127.x.y.z) if given.
pub fn connect_from(from: Option<Ipv4Addr>, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let to: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let Some(from) = from else {
        return TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("connect to {to}: {e}"));
    };
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(|e| format!("socket: {e}"))?;
    let local = SocketAddr::new(IpAddr::V4(from), 0);
    s.bind(&local.into()).map_err(|e| format!("bind {from}: {e}"))?;
    s.connect_timeout(&to.into(), timeout).map_err(|e| format!("connect from {from} to {to}: {e}"))?;
    Ok(s.into())
}

/// Whether the server has closed `s` (EOF or reset): reads what is there without waiting.
pub fn closed_by_server(s: &mut TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    let _ = s.set_nonblocking(false);
    closed
}

/// A line-based conversation with a deadline for every wait.
pub struct Lines {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    pub deadline: Instant,
}

impl Lines {
    /// Connects (from `from`, if given) with everything to be done by `deadline`.
    pub fn connect(from: Option<Ipv4Addr>, port: u16, deadline: Instant) -> Result<Lines, String> {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let s = connect_from(from, port, left)?;
        let writer = s.try_clone().map_err(|e| format!("clone: {e}"))?;
        Ok(Lines { reader: BufReader::new(s), writer, deadline })
    }

    /// One line without its CRLF; Err if the deadline passes or the server closes first.
    pub fn line(&mut self) -> Result<String, String> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("deadline passed".into());
        }
        self.reader.get_ref().set_read_timeout(Some(left)).map_err(|e| format!("timeout: {e}"))?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err("the server closed the connection".into()),
            Ok(_) => Ok(line.trim_end().to_string()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(format!("no answer by the deadline (so far: {line:?})"))
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    pub fn send(&mut self, line: &str) -> Result<(), String> {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).map_err(|e| format!("send: {e}"))
    }

    /// IMAP: lines until the one tagged `tag`, which is returned.
    pub fn tagged(&mut self, tag: &str) -> Result<String, String> {
        let prefix = format!("{tag} ");
        loop {
            let l = self.line()?;
            if l.starts_with(&prefix) {
                return Ok(l);
            }
        }
    }

    /// SMTP: one reply, all its lines, the last one returned (`NNN text`).
    pub fn reply(&mut self) -> Result<String, String> {
        loop {
            let l = self.line()?;
            if l.len() < 4 || l.as_bytes()[3] == b' ' {
                return Ok(l);
            }
        }
    }

    /// IMAP: greeting, then `a LOGIN user password`; the tagged reply.
    pub fn imap_login(&mut self, user: &str, password: &str) -> Result<String, String> {
        let greeting = self.line()?;
        if !greeting.starts_with("* OK") {
            return Err(format!("greeting: {greeting}"));
        }
        self.send(&format!("a LOGIN {user} {password}"))?;
        self.tagged("a")
    }

    /// SMTP: greeting, EHLO, then `AUTH PLAIN`; the reply to AUTH.
    pub fn smtp_auth(&mut self, user: &str, password: &str) -> Result<String, String> {
        let greeting = self.reply()?;
        if !greeting.starts_with("220") {
            return Err(format!("greeting: {greeting}"));
        }
        self.send("EHLO client.example")?;
        let ehlo = self.reply()?;
        if !ehlo.starts_with("250") {
            return Err(format!("EHLO: {ehlo}"));
        }
        self.send(&format!("AUTH PLAIN {}", b64encode(format!("\0{user}\0{password}").as_bytes())))?;
        self.reply()
    }
}
