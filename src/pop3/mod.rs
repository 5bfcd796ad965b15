//! POP3 **client** protocol core, sans-I/O: bytes in, parsed replies out; commands in, bytes out.
//!
//! No sockets, no tokio, no SQLite here: the driver in `net/` owns the socket and the fetcher owns
//! the session logic. This module only knows the wire format.
//!
//! - `client.rs` — [`Client`]: remembers what each sent command expects (FIFO, so RFC 2449
//!   PIPELINING works by sending many commands before polling) and turns fed bytes into [`Reply`]s:
//!   status lines, `+ ` SASL continuations, multi-line bodies (dot-unstuffing, bare-LF tolerance,
//!   line and body limits).
//! - `command.rs` — [`Command`] and its encoding: USER/PASS, APOP (RFC 1939), AUTH PLAIN/LOGIN/XOAUTH2
//!   (RFC 5034), STLS (RFC 2595) and the transaction commands. Its `Debug` never shows a secret.
//! - `parse.rs` — what replies carry: CAPA (RFC 2449), UIDL, LIST, STAT, response codes (RFC 2449 §8,
//!   RFC 3206), the APOP timestamp of a greeting.
//!
//! A session, as the driver runs it:
//! ```text
//! let mut c = Client::new(Limits::default());
//! feed(greeting bytes) → poll() → Reply { to: Greeting, status: Ok, .. }
//! c.send(&Command::Capa, &mut out); write(out)
//! feed(..) → poll() → Reply { to: Capa, body: Body::Data(lines), .. } → parse_capa(&lines)
//! c.send(&Command::Uidl(None), &mut out); c.send(&Command::List(None), &mut out)   // pipelined
//! feed(..) → poll() → UIDL reply, poll() → LIST reply
//! ```
//! Notes for the driver:
//! - After each `feed`, call `poll` until it returns `Ok(None)`: one `feed` may complete many
//!   replies, and memory stays bounded (one read chunk plus one body) only if they are taken.
//! - Pipeline only when CAPA lists PIPELINING (RFC 2449 §6.6), and read while writing: a server
//!   stops reading when its replies are not read.
//! - STLS (RFC 2595): after its `+OK`, `buffered()` must be 0 — anything already there was sent
//!   in plaintext before the handshake and could be injected (CVE-2011-0411): abort. Then keep
//!   feeding the same `Client` with the decrypted bytes (and send CAPA again: RFC 2595 §4).
//! - A `Continue` reply ends that reply; answer it with `SaslResponse` or `SaslCancel`.
//! - `Body::Oversized` is not an error: the message was read to its end, the session goes on.

#![forbid(unsafe_code)]

mod client;
mod command;
mod parse;

#[cfg(test)]
mod tests;

use std::fmt;

pub use client::Client;
pub use command::{Command, apop_digest, check_arg};
pub use parse::{
    Capabilities, Expire, apop_timestamp, parse_capa, parse_list, parse_list_line, parse_stat, parse_uidl,
    parse_uidl_line, valid_uidl,
};

/// Default [`Limits::max_line`]. RFC 2449 §4 caps a response at 512 octets, but real servers send
/// longer greetings and CAPA lines (and XOAUTH2 error challenges), so we allow 16 times that.
pub const DEFAULT_MAX_LINE: usize = 8 * 1024;

/// Default [`Limits::max_body`]: larger than what the big providers accept as one message
/// (Gmail 25 MB, Outlook 35 MB after base64 growth), small enough to keep in memory.
pub const DEFAULT_MAX_BODY: u64 = 50 * 1024 * 1024;

/// How much the parser is willing to hold for one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest status line (+OK/-ERR/+ continuation) accepted. RFC 2449 caps responses at 512 octets;
    /// real servers exceed that in greetings and CAPA lines, so the default is generous: 8 KiB.
    pub max_line: usize,
    /// Longest multi-line body (RETR/TOP/UIDL/LIST/CAPA) kept in memory. Default 50 MiB.
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_line: DEFAULT_MAX_LINE, max_body: DEFAULT_MAX_BODY }
    }
}

/// What a command was, so the caller can match replies (replies come back in send order).
///
/// `Auth` covers the three `AUTH` commands; `SaslResponse` covers both a continuation answer and
/// the `*` cancel (the server answers either like any other SASL step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Greeting,
    Capa,
    Stls,
    User,
    Pass,
    Apop,
    Auth,
    SaslResponse,
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    Top(u32, u32),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Quit,
    Utf8,
}

impl Sent {
    /// Whether a `+OK` answer to this command carries a multi-line body (RFC 1939 §3, RFC 2449 §5).
    /// A `-ERR` is always one line.
    pub fn multiline(self) -> bool {
        matches!(self, Sent::Capa | Sent::List(None) | Sent::Uidl(None) | Sent::Top(..) | Sent::Retr(_))
    }

    /// Whether the server may answer with a `+ ` SASL continuation (RFC 5034 §4).
    pub fn allows_continue(self) -> bool {
        matches!(self, Sent::Auth | Sent::SaslResponse)
    }
}

/// Names the command as a user would read it in an error message ("RETR 4", "the greeting").
impl fmt::Display for Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Sent::Greeting => f.write_str("the greeting"),
            Sent::Capa => f.write_str("CAPA"),
            Sent::Stls => f.write_str("STLS"),
            Sent::User => f.write_str("USER"),
            Sent::Pass => f.write_str("PASS"),
            Sent::Apop => f.write_str("APOP"),
            Sent::Auth => f.write_str("AUTH"),
            Sent::SaslResponse => f.write_str("an AUTH step"),
            Sent::Stat => f.write_str("STAT"),
            Sent::List(None) => f.write_str("LIST"),
            Sent::List(Some(n)) => write!(f, "LIST {n}"),
            Sent::Uidl(None) => f.write_str("UIDL"),
            Sent::Uidl(Some(n)) => write!(f, "UIDL {n}"),
            Sent::Top(n, l) => write!(f, "TOP {n} {l}"),
            Sent::Retr(n) => write!(f, "RETR {n}"),
            Sent::Dele(n) => write!(f, "DELE {n}"),
            Sent::Noop => f.write_str("NOOP"),
            Sent::Utf8 => f.write_str("UTF8"),
            Sent::Rset => f.write_str("RSET"),
            Sent::Quit => f.write_str("QUIT"),
        }
    }
}

/// The status indicator of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `+OK`
    Ok,
    /// `-ERR`
    Err,
    /// `+ <challenge>`: a SASL continuation (RFC 5034 §4), only valid in answer to `Auth`/`SaslResponse`.
    Continue,
}

/// An RFC 2449 §8 / RFC 3206 response code: the `[...]` at the start of a status text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespCode {
    /// `[AUTH]`: the credentials are wrong (RFC 3206 §5) — retrying will not help.
    Auth,
    /// `[SYS/TEMP]`: a transient server problem (RFC 3206 §4).
    SysTemp,
    /// `[SYS/PERM]`: a permanent server problem that needs an administrator (RFC 3206 §4).
    SysPerm,
    /// `[IN-USE]`: the maildrop is locked by another session (RFC 2449 §8.1.1).
    InUse,
    /// `[LOGIN-DELAY]`: logged in too soon after the last login (RFC 2449 §8.1.2).
    LoginDelay,
    /// Any other code, as sent (without the brackets).
    Other(String),
}

impl RespCode {
    /// Whether the condition is expected to clear by itself, so a later retry may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, RespCode::SysTemp | RespCode::InUse | RespCode::LoginDelay)
    }
}

/// The multi-line payload of a reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    /// A one-line reply (or a `-ERR`).
    None,
    /// The lines, dot-unstuffed, each ending in CRLF, without the terminating `.CRLF`.
    Data(Vec<u8>),
    /// The body exceeded [`Limits::max_body`]: it was read to its end and discarded.
    /// `bytes_seen` is the size it would have had as `Data`.
    Oversized { bytes_seen: u64 },
}

/// One complete reply.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub to: Sent,
    pub status: Status,
    pub code: Option<RespCode>,
    /// The status line after "+OK"/"-ERR"/"+" and after the response code, trimmed, lossy UTF-8.
    /// For a Continue, the (still base64) challenge text.
    pub text: String,
    /// Multi-line payload of a +OK answer to Capa, List(None), Uidl(None), Top, Retr: the lines,
    /// dot-unstuffed, each ending in CRLF, WITHOUT the terminating ".\r\n". Body::None otherwise.
    pub body: Body,
}

impl Reply {
    /// `+OK`
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
}

/// What went wrong on the wire. Every variant except `InvalidArgument` is the server's doing;
/// after any of them the [`Client`] is dead (the stream position is lost) and the connection
/// must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A status line longer than [`Limits::max_line`].
    #[error("the POP3 server sent a response line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    /// Neither +OK, -ERR nor (where allowed) "+ ...". `line` is truncated to ~100 chars for display.
    #[error("the POP3 server sent {line:?} where a status (+OK or -ERR) was expected")]
    BadStatus { line: String },
    /// Bytes arrived while no reply was expected.
    #[error("the POP3 server sent data that no command asked for")]
    Unsolicited,
    /// The connection closed mid-reply.
    #[error("the POP3 server closed the connection {} {waiting_for}",
        if *.in_body { "in the middle of its answer to" } else { "without answering" })]
    Eof { waiting_for: Sent, in_body: bool },
    /// A line of a UIDL or LIST listing that does not parse. `line` is truncated for display.
    #[error("the POP3 server sent a malformed {what} line: {line:?}")]
    Malformed { what: &'static str, line: String },
    /// Not the server's fault: a command argument contains CR, LF or NUL (or, inside SASL
    /// PLAIN/XOAUTH2, their separators), which would split or corrupt the command. Nothing was sent.
    #[error("cannot send {command}: an argument contains a line break or another character the command cannot carry")]
    InvalidArgument { command: &'static str },
}

/// Lossy, truncated to about 100 characters: for putting server text into error messages.
pub(crate) fn display_line(line: &[u8]) -> String {
    const MAX_CHARS: usize = 100;
    // 4 bytes per char at most: no need to decode more than that.
    let line = &line[..line.len().min(4 * MAX_CHARS + 4)];
    let text = String::from_utf8_lossy(line);
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}
