//! popbridge's own upstream SMTP client (`popbridge::smtp::upstream`) pointed at a test peer:
//! the [`SmtpServer`] setting for a scripted upstream ([`smtp_upstream::Upstream`]) or any
//! loopback port.

use std::path::PathBuf;
use std::time::Duration;

use popbridge::config::{SmtpServer, TlsMode, TrustSettings};

use super::smtp_upstream::Upstream;

/// The timeout of [`smtp_server`]'s settings.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A client setting for 127.0.0.1:`port`: `tls` as given, logging in as `user` (the password is
/// handed to `deliver`/`probe` itself), trusting the CAs in `ca_file` (none: the system roots),
/// no pin, not through the relay, a [`TIMEOUT`].
pub fn smtp_server_at(port: u16, tls: TlsMode, ca_file: Option<PathBuf>, user: Option<&str>) -> SmtpServer {
    SmtpServer {
        host: "127.0.0.1".into(),
        port,
        tls,
        user: user.map(str::to_string),
        password: None,
        trust: TrustSettings { ca_file, pin_sha256: None },
        relay: false,
        timeout: TIMEOUT,
    }
}

/// [`smtp_server_at`] the upstream's port.
pub fn smtp_server(up: &Upstream, tls: TlsMode, ca_file: Option<PathBuf>, user: Option<&str>) -> SmtpServer {
    smtp_server_at(up.port, tls, ca_file, user)
}

#[test]
fn smtp_server_at_fills_in_the_loopback_defaults() {
    let ca = PathBuf::from("/nonexistent/ca.pem");
    let s = smtp_server_at(2525, TlsMode::StartTls, Some(ca.clone()), Some("u@example.org"));
    assert_eq!((s.host.as_str(), s.port, s.tls), ("127.0.0.1", 2525, TlsMode::StartTls));
    assert_eq!(s.user.as_deref(), Some("u@example.org"));
    assert!(s.password.is_none() && !s.relay);
    assert_eq!((s.trust.ca_file, s.trust.pin_sha256), (Some(ca), None));
    assert_eq!(s.timeout, TIMEOUT);
    let s = smtp_server_at(25, TlsMode::Plain, None, None);
    assert!(s.user.is_none() && s.trust.ca_file.is_none());
}
