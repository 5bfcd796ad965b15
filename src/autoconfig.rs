//! Thunderbird autoconfig files (`config-v1.1.xml`, the format Thunderbird's account wizard reads
//! from a file or an ISP database): one for the combined login, one per account login.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

fn server(kind: &str, tag: &str, addr: std::net::SocketAddr, socket: &str, user: &str) -> String {
    format!(
        "    <{tag} type=\"{kind}\">\n      <hostname>{}</hostname>\n      <port>{}</port>\n      <socketType>{socket}</socketType>\n      <username>{}</username>\n      <authentication>password-cleartext</authentication>\n    </{tag}>\n",
        addr.ip(),
        addr.port(),
        esc(user)
    )
}

/// The XML for one login (`me`, or `me+Work`).
pub fn xml(cfg: &Config, user: &str, email_domain: &str, display: &str) -> String {
    let l = &cfg.local;
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n");
    s.push_str(&format!(
        "  <emailProvider id=\"popbridge.localhost\">\n    <domain>{}</domain>\n    <displayName>{}</displayName>\n    <displayShortName>popbridge</displayShortName>\n",
        esc(email_domain),
        esc(display)
    ));
    // Implicit TLS first (Thunderbird prefers the first entry), then plaintext on loopback.
    if let Some(a) = l.imaps {
        s.push_str(&server("imap", "incomingServer", a, "SSL", user));
    }
    if let Some(a) = l.imap {
        s.push_str(&server("imap", "incomingServer", a, "plain", user));
    }
    if let Some(a) = l.submissions {
        s.push_str(&server("smtp", "outgoingServer", a, "SSL", user));
    }
    if let Some(a) = l.submission {
        s.push_str(&server("smtp", "outgoingServer", a, "plain", user));
    }
    s.push_str("  </emailProvider>\n</clientConfig>\n");
    s
}

/// Writes the combined file and one per account; returns the paths.
pub fn write(dir: &Path, cfg: &Config) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut put = |name: String, text: String| -> Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| Error::other(format!("cannot write {}: {e}", p.display())))?;
        out.push(p);
        Ok(())
    };
    let domain = |email: &str| email.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_else(|| "localhost".into());
    let first_domain = cfg.accounts.first().map(|a| domain(&a.email)).unwrap_or_else(|| "localhost".into());
    put("config-v1.1.xml".into(), xml(cfg, &cfg.local.user, &first_domain, "popbridge (all accounts)"))?;
    for a in &cfg.accounts {
        let file: String =
            a.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        put(
            format!("config-v1.1-{file}.xml"),
            xml(cfg, &format!("{}+{}", cfg.local.user, a.name), &domain(&a.email), &format!("popbridge: {}", a.name)),
        )?;
    }
    Ok(out)
}
