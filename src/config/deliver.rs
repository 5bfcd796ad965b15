//! `[account.deliver]` (issue 18): an account whose mail goes into an existing mail server — over
//! LMTP (RFC 2033) or IMAP APPEND — instead of the local store. The store then keeps only the POP
//! state and a small delivery journal (`store::journal`); the fetcher's durability rule is the same:
//! DELE only after the target confirmed and that confirmation is committed locally.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::model::{SecretSource, TrustSettings};

/// `[account.deliver]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeliver {
    /// `"127.0.0.1:24"`, `"[::1]:24"`, `"lmtp.example.org:24"` or `"unix:/run/dovecot/lmtp"`.
    pub lmtp: Option<String>,
    /// The LMTP `RCPT TO` address.
    pub recipient: Option<String>,
    /// `"imaps://mail.example.org:993"` (TLS from the first byte, verified as for POP), or
    /// `"imap://127.0.0.1:143"` (plain: loopback only).
    pub imap: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_command: Option<String>,
    /// The IMAP mailbox (default INBOX).
    pub mailbox: Option<String>,
    pub ca_file: Option<String>,
    pub pin_sha256: Option<String>,
    pub timeout: Option<String>,
}

/// Where an account's fetched mail goes, when not into the local store.
#[derive(Debug, Clone)]
pub enum DeliverTarget {
    Lmtp(LmtpTarget),
    Imap(ImapTarget),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpAddr {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

#[derive(Debug, Clone)]
pub struct LmtpTarget {
    pub addr: LmtpAddr,
    pub recipient: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ImapTarget {
    pub host: String,
    pub port: u16,
    /// `imaps://`: TLS from the first byte; `imap://`: plain (loopback only).
    pub tls: bool,
    pub user: String,
    pub password: SecretSource,
    pub mailbox: String,
    pub trust: TrustSettings,
    pub timeout: Duration,
}

impl DeliverTarget {
    /// For people and for the journal: "LMTP 127.0.0.1:24 for alice@example.org",
    /// "IMAP imaps://mail.example.org:993 as alice, mailbox INBOX".
    pub fn describe(&self) -> String {
        match self {
            DeliverTarget::Lmtp(t) => format!("LMTP {} for {}", t.addr.describe(), t.recipient),
            DeliverTarget::Imap(t) => format!(
                "IMAP {}://{}:{} as {}, mailbox {}",
                if t.tls { "imaps" } else { "imap" },
                t.host,
                t.port,
                t.user,
                t.mailbox
            ),
        }
    }

    /// Whether a delivery whose confirmation was lost can be looked for in the target (IMAP:
    /// `UID SEARCH HEADER Message-ID`); LMTP cannot, so such a delivery is repeated.
    pub fn can_check(&self) -> bool {
        matches!(self, DeliverTarget::Imap(_))
    }

    pub fn timeout(&self) -> Duration {
        match self {
            DeliverTarget::Lmtp(t) => t.timeout,
            DeliverTarget::Imap(t) => t.timeout,
        }
    }

    /// What the account fingerprint covers (`Account::fingerprint`): every setting, the secret
    /// as given (the fingerprint is a hash, never shown).
    pub fn fingerprint_text(&self) -> String {
        match self {
            DeliverTarget::Lmtp(t) => format!("lmtp {:?} {}", t.addr, t.recipient),
            DeliverTarget::Imap(t) => {
                let pw = match &t.password {
                    SecretSource::Inline(p) => format!("inline:{}", p.expose()),
                    SecretSource::Command(c) => format!("command:{c}"),
                };
                format!(
                    "imap {} {} {} {} {} {:?} {:?} {pw}",
                    t.host, t.port, t.tls, t.user, t.mailbox, t.trust.ca_file, t.trust.pin_sha256
                )
            }
        }
    }
}

impl LmtpAddr {
    pub fn describe(&self) -> String {
        match self {
            LmtpAddr::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            LmtpAddr::Tcp { host, port } => format!("{host}:{port}"),
            LmtpAddr::Unix(p) => format!("unix:{}", p.display()),
        }
    }

    /// `host:port`, `[v6]:port` or `unix:/path`.
    pub fn parse(s: &str) -> Result<LmtpAddr, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("\"{s}\": the socket path must be absolute (unix:/run/dovecot/lmtp)"));
            }
            return Ok(LmtpAddr::Unix(PathBuf::from(path)));
        }
        let (host, port) = split_host_port(s)
            .ok_or_else(|| format!("\"{s}\" is not an LMTP address like 127.0.0.1:24 or unix:/run/dovecot/lmtp"))?;
        Ok(LmtpAddr::Tcp { host, port })
    }
}

/// `host:port` or `[v6]:port`.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        (h, p)
    } else {
        s.rsplit_once(':')?
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
        return None;
    }
    Some((host.to_string(), port))
}

/// `imaps://host[:port]` or `imap://host[:port]` (a trailing `/` allowed).
pub fn parse_imap_url(s: &str) -> Result<(String, u16, bool), String> {
    let bad = || format!("\"{s}\" is not an IMAP server like imaps://mail.example.org:993");
    let (tls, rest) = if let Some(r) = s.strip_prefix("imaps://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("imap://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let default = if tls { 993 } else { 143 };
    match split_host_port(rest) {
        Some((h, p)) => Ok((h, p, tls)),
        None if !rest.is_empty() && !rest.contains([':', '/', '[', ' ']) => Ok((rest.to_string(), default, tls)),
        None => Err(bad()),
    }
}
