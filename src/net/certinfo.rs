//! What a person needs to decide whether to trust a certificate the system does not: who it names
//! (subject, and the host names it is valid for), who signed it (issuer — the subject again when it
//! is self-signed), when it is valid, and its SHA-256 fingerprint to compare with the one the
//! provider publishes. `account add` shows this before it offers to pin the certificate.
//!
//! Parsing is x509-parser's (read-only DER parsing; nothing here verifies anything: verification
//! happened in the handshake and failed, which is why this is shown at all).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::format_fingerprint;

/// The facts shown about a presented certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// RFC 4514-style distinguished name, e.g. `CN=mail.example.org, O=Example`.
    pub subject: String,
    pub issuer: String,
    /// DNS names and IP addresses of the subjectAltName extension (what hosts it is valid for).
    pub names: Vec<String>,
    /// Seconds since 1970 (UTC).
    pub not_before: i64,
    pub not_after: i64,
    pub fingerprint: [u8; 32],
}

/// Why a certificate could not be summarised (it still has a fingerprint: the caller shows that).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server's certificate could not be read: {0}")]
pub struct Unreadable(String);

impl CertSummary {
    /// Parses a DER certificate (as presented in the handshake).
    pub fn from_der(der: &[u8]) -> Result<CertSummary, Unreadable> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| Unreadable(e.to_string()))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => names.push((*d).to_string()),
                    GeneralName::IPAddress(b) => names.push(ip_text(b)),
                    _ => {}
                }
            }
        }
        let v = cert.validity();
        Ok(CertSummary {
            subject: dn_text(&cert.subject().to_string()),
            issuer: dn_text(&cert.issuer().to_string()),
            names,
            not_before: v.not_before.timestamp(),
            not_after: v.not_after.timestamp(),
            fingerprint: super::tls::sha256(der),
        })
    }

    /// Signed by its own key's name (no authority vouches for it).
    pub fn self_signed(&self) -> bool {
        self.subject == self.issuer
    }

    /// The lines shown to the user, indented by the caller; `now` decides "expired"/"not yet valid".
    pub fn lines(&self, now: SystemTime) -> Vec<String> {
        let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let state = if now < self.not_before {
            " — NOT VALID YET (or this machine's clock is wrong)"
        } else if now > self.not_after {
            " — EXPIRED"
        } else {
            ""
        };
        let mut out = vec![format!("subject:     {}", self.subject)];
        if !self.names.is_empty() {
            out.push(format!("valid for:   {}", self.names.join(", ")));
        }
        out.push(format!(
            "issuer:      {}{}",
            self.issuer,
            if self.self_signed() { " (self-signed: the same as the subject)" } else { "" }
        ));
        out.push(format!("not before:  {}", utc_text(self.not_before)));
        out.push(format!("not after:   {}{state}", utc_text(self.not_after)));
        out.push(format!("SHA-256:     {}", format_fingerprint(&self.fingerprint)));
        out
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`; dates before 1970 (never seen on a server certificate) show as 1970.
fn utc_text(secs: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} UTC", s.trim_end_matches('Z').replace('T', " "))
}

/// An empty name (allowed for a subject when the subjectAltName carries the names) is said so.
fn dn_text(s: &str) -> String {
    if s.trim().is_empty() { "(empty)".into() } else { s.to_string() }
}

fn ip_text(b: &[u8]) -> String {
    match b.len() {
        4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => format!("(an IP address of {} bytes)", b.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(names: &[&str], cn: &str) -> rcgen::CertificateParams {
        let mut p = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.distinguished_name.push(rcgen::DnType::OrganizationName, "Example Mail");
        p.not_before = rcgen::date_time_ymd(2024, 3, 1);
        p.not_after = rcgen::date_time_ymd(2026, 3, 1);
        p
    }

    fn at(y: i64, m: i64, d: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs((crate::mime::date::days_from_civil(y, m, d) * 86_400) as u64)
    }

    #[test]
    fn self_signed_certificate_is_summarised() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params(&["mail.example.org", "127.0.0.1", "::1"], "mail.example.org").self_signed(&key).unwrap();
        let s = CertSummary::from_der(cert.der()).unwrap();
        assert_eq!(s.subject, "CN=mail.example.org, O=Example Mail");
        assert_eq!(s.issuer, s.subject);
        assert!(s.self_signed());
        assert_eq!(s.names, ["mail.example.org", "127.0.0.1", "::1"]);
        assert_eq!(s.fingerprint, crate::net::tls::sha256(cert.der()));
        let lines = s.lines(at(2025, 1, 1));
        assert_eq!(
            lines,
            [
                "subject:     CN=mail.example.org, O=Example Mail".to_string(),
                "valid for:   mail.example.org, 127.0.0.1, ::1".into(),
                "issuer:      CN=mail.example.org, O=Example Mail (self-signed: the same as the subject)".into(),
                "not before:  2024-03-01 00:00:00 UTC".into(),
                "not after:   2026-03-01 00:00:00 UTC".into(),
                format!("SHA-256:     {}", format_fingerprint(&s.fingerprint)),
            ]
        );
        assert!(s.lines(at(2027, 1, 1))[4].ends_with("UTC — EXPIRED"));
        assert!(s.lines(at(2023, 1, 1))[4].contains("NOT VALID YET"));
    }

    #[test]
    fn certificate_from_a_private_ca_names_its_issuer() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = params(&[], "Example Private CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = params(&["pop.example.org"], "pop.example.org").signed_by(&key, &issuer).unwrap();
        let s = CertSummary::from_der(leaf.der()).unwrap();
        assert_eq!(s.subject, "CN=pop.example.org, O=Example Mail");
        assert_eq!(s.issuer, "CN=Example Private CA, O=Example Mail");
        assert!(!s.self_signed());
        assert!(!s.lines(at(2025, 1, 1)).iter().any(|l| l.contains("self-signed")));
    }

    #[test]
    fn garbage_is_unreadable_not_a_panic() {
        assert!(CertSummary::from_der(b"not a certificate").is_err());
        assert!(CertSummary::from_der(&[]).is_err());
        assert_eq!(ip_text(&[1, 2, 3]), "(an IP address of 3 bytes)");
    }
}
