//! `[limits]`: how many connections the local listeners hold, before and after login, and how long
//! a connection may take to log in (`net::listener` enforces them; `.github/SECURITY.md` explains).

use std::time::Duration;

use serde::Deserialize;

/// IMAP connections that have not logged in yet (IMAP and IMAPS together). A client logs in within
/// milliseconds of connecting, so a place is held briefly: 32 covers several clients opening all
/// their connections at once (Thunderbird opens up to 5 per account). It also bounds the wrong
/// passwords being answered at once (each after up to the throttle's 16 s, holding its place), and
/// so how fast passwords can be guessed. When all are taken, a new connection pushes out the oldest
/// idle one.
pub const DEFAULT_IMAP_UNAUTHENTICATED: usize = 32;
/// Logged-in IMAP sessions. Thunderbird keeps up to 5 per account, a phone or mbsync a few more:
/// far below this. With the 32 above, the 256 connections popbridge served before they were split.
pub const DEFAULT_IMAP_AUTHENTICATED: usize = 224;
/// SMTP submission connections that have not logged in (both ports): a client opens one to send,
/// and logs in at once.
pub const DEFAULT_SMTP_UNAUTHENTICATED: usize = 16;
/// Logged-in submission sessions: one per message being sent, at most a few at a time. With the
/// 16 above, the 64 connections popbridge served before.
pub const DEFAULT_SMTP_AUTHENTICATED: usize = 48;
/// From connecting to logging in, at most — whatever the client sends meanwhile. Dovecot uses a
/// minute; a client logs in within milliseconds, and the throttle's longest delay (16 s) fits
/// well inside (a login being checked when the minute ends is not cut short).
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for every count: each connection is a file descriptor and some memory.
pub const MAX_CONNECTIONS: usize = 4096;

/// The file's `[limits]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub imap_unauthenticated: Option<i64>,
    pub imap_authenticated: Option<i64>,
    pub smtp_unauthenticated: Option<i64>,
    pub smtp_authenticated: Option<i64>,
    pub login_timeout: Option<String>,
}

/// One server's two pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pools {
    pub unauthenticated: usize,
    pub authenticated: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub imap: Pools,
    pub smtp: Pools,
    pub login_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            imap: Pools { unauthenticated: DEFAULT_IMAP_UNAUTHENTICATED, authenticated: DEFAULT_IMAP_AUTHENTICATED },
            smtp: Pools { unauthenticated: DEFAULT_SMTP_UNAUTHENTICATED, authenticated: DEFAULT_SMTP_AUTHENTICATED },
            login_timeout: DEFAULT_LOGIN_TIMEOUT,
        }
    }
}

/// Checks `[limits]`; `err(key, problem)` makes the error that names the file and the key.
pub fn validate(raw: RawLimits, err: impl Fn(&str, String) -> crate::Error) -> crate::Result<Limits> {
    let mut l = Limits::default();
    let count = |key: &str, v: Option<i64>, default: usize| -> crate::Result<usize> {
        match v {
            None => Ok(default),
            Some(n) if (1..=MAX_CONNECTIONS as i64).contains(&n) => Ok(n as usize),
            Some(n) => Err(err(&format!("limits.{key}"), format!("{n} is not between 1 and {MAX_CONNECTIONS}"))),
        }
    };
    l.imap.unauthenticated = count("imap_unauthenticated", raw.imap_unauthenticated, l.imap.unauthenticated)?;
    l.imap.authenticated = count("imap_authenticated", raw.imap_authenticated, l.imap.authenticated)?;
    l.smtp.unauthenticated = count("smtp_unauthenticated", raw.smtp_unauthenticated, l.smtp.unauthenticated)?;
    l.smtp.authenticated = count("smtp_authenticated", raw.smtp_authenticated, l.smtp.authenticated)?;
    if let Some(s) = raw.login_timeout {
        let d = super::parse_duration(&s).map_err(|e| err("limits.login_timeout", e))?;
        // Below a second, a client on a busy machine could not log in; beyond RFC 3501's
        // 30-minute autologout it would outlast a logged-in session.
        if d < Duration::from_secs(1) || d > Duration::from_secs(30 * 60) {
            return Err(err("limits.login_timeout", format!("\"{s}\" is not between 1s and 30m")));
        }
        l.login_timeout = d;
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Limits, String> {
        let raw: RawLimits = toml::from_str(text).map_err(|e| e.to_string())?;
        validate(raw, |k, e| crate::Error::config(format!("{k}: {e}"))).map_err(|e| e.message)
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(check("").unwrap(), Limits::default());
        let l = check("imap_unauthenticated = 4\nsmtp_authenticated = 2\nlogin_timeout = \"5s\"").unwrap();
        assert_eq!(l.imap.unauthenticated, 4);
        assert_eq!(l.imap.authenticated, DEFAULT_IMAP_AUTHENTICATED);
        assert_eq!(l.smtp.authenticated, 2);
        assert_eq!(l.login_timeout, Duration::from_secs(5));
    }

    #[test]
    fn the_example_config_documents_the_defaults() {
        let text = include_str!("../../config/popbridge.example.toml");
        let c = crate::config::parse(text, std::path::Path::new("example.toml"), 0o600).unwrap();
        assert_eq!(c.limits, Limits::default(), "config/popbridge.example.toml [limits] = the defaults");
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        assert!(check("imap_unauthenticated = 0").unwrap_err().contains("limits.imap_unauthenticated"));
        assert!(check("smtp_authenticated = 100000").unwrap_err().contains("limits.smtp_authenticated"));
        assert!(check("login_timeout = \"0s\"").unwrap_err().contains("limits.login_timeout"));
        assert!(check("login_timeout = \"2h\"").unwrap_err().contains("limits.login_timeout"));
        assert!(check("login_timeout = \"soon\"").unwrap_err().contains("limits.login_timeout"));
        assert!(check("imap_sessions = 3").is_err(), "unknown keys are refused");
    }
}
