//! The sample mail that `popbridge demo` serves from its built-in POP3 server
//! ([`super::pop3_server`]): 16 made-up messages that look like a real inbox in a mail client.
//!
//! The files in `samples/` are complete RFC 5322 messages with CRLF line ends, dated between late
//! October and late November 2026, oldest first (the order of the POP3 message numbers). Together
//! they exercise what clients care about: a four-message thread (In-Reply-To/References) with
//! several people in Cc and a long nested quote, a multipart/alternative HTML newsletter, a PDF and
//! a PNG attachment, RFC 2047 subjects (German, Japanese), an 8bit UTF-8 body, quoted-printable and
//! base64 bodies, a forwarded message/rfc822, a text/calendar invitation, and the "Welcome to
//! popbridge" message that explains the demo. Only example.com/.org/.net addresses appear.
//! The attachments are tiny generated files (a pixel-art PNG, a one-page PDF); the whole set is
//! about 37 KB.

/// The sample files, oldest first.
const FILES: &[(&str, &[u8])] = &[
    ("01-dinner-saturday.eml", include_bytes!("samples/01-dinner-saturday.eml")),
    ("02-newsletter-weekly-byte.eml", include_bytes!("samples/02-newsletter-weekly-byte.eml")),
    ("03-gruesse-aus-berlin.eml", include_bytes!("samples/03-gruesse-aus-berlin.eml")),
    ("04-roadmap-draft.eml", include_bytes!("samples/04-roadmap-draft.eml")),
    ("05-roadmap-re-marcus.eml", include_bytes!("samples/05-roadmap-re-marcus.eml")),
    ("06-roadmap-re-sofia.eml", include_bytes!("samples/06-roadmap-re-sofia.eml")),
    ("07-roadmap-re-priya-summary.eml", include_bytes!("samples/07-roadmap-re-priya-summary.eml")),
    ("08-invoice-with-pdf.eml", include_bytes!("samples/08-invoice-with-pdf.eml")),
    ("09-invitation-design-review.eml", include_bytes!("samples/09-invitation-design-review.eml")),
    ("10-japanese-meeting.eml", include_bytes!("samples/10-japanese-meeting.eml")),
    ("11-order-shipped-qp.eml", include_bytes!("samples/11-order-shipped-qp.eml")),
    ("12-code-review-comment.eml", include_bytes!("samples/12-code-review-comment.eml")),
    ("13-fwd-flight-booking.eml", include_bytes!("samples/13-fwd-flight-booking.eml")),
    ("14-offsite-photo.eml", include_bytes!("samples/14-offsite-photo.eml")),
    ("15-ci-build-failed.eml", include_bytes!("samples/15-ci-build-failed.eml")),
    ("16-welcome-to-popbridge.eml", include_bytes!("samples/16-welcome-to-popbridge.eml")),
];

/// The raw sample messages (CRLF line ends), in a stable order: oldest first, "Welcome to
/// popbridge" last (so it is the newest message in the client).
pub fn samples() -> Vec<Vec<u8>> {
    FILES.iter().map(|(_, raw)| raw.to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The header fields of a message, unfolded: (lower-case name, value).
    fn header(raw: &[u8]) -> Result<Vec<(String, String)>, String> {
        let end = memchr::memmem::find(raw, b"\r\n\r\n").ok_or("no blank line after the header")?;
        let block = std::str::from_utf8(&raw[..end]).map_err(|_| "header is not UTF-8")?;
        if !block.is_ascii() {
            return Err("raw non-ASCII in the header (use RFC 2047)".into());
        }
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in block.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                let last = fields.last_mut().ok_or("continuation line before any field")?;
                last.1.push(' ');
                last.1.push_str(line.trim());
                continue;
            }
            let (name, value) = line.split_once(':').ok_or_else(|| format!("not a header field: {line:?}"))?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(format!("bad field name {name:?}"));
            }
            fields.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        Ok(fields)
    }

    fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
        fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn message_ids(value: &str) -> Vec<&str> {
        value.split_whitespace().filter(|t| t.starts_with('<') && t.ends_with('>')).collect()
    }

    #[test]
    fn every_sample_is_crlf_only_and_parses() {
        assert!(FILES.len() >= 14);
        let total: usize = FILES.iter().map(|(_, raw)| raw.len()).sum();
        assert!(total < 300 * 1024, "the sample set is {total} bytes");
        let mut ids = HashSet::new();
        for (name, raw) in FILES {
            for (i, &b) in raw.iter().enumerate() {
                match b {
                    b'\n' => assert!(i > 0 && raw[i - 1] == b'\r', "{name}: bare LF at {i}"),
                    b'\r' => assert_eq!(raw.get(i + 1), Some(&b'\n'), "{name}: bare CR at {i}"),
                    0 => panic!("{name}: NUL at {i}"),
                    _ => {}
                }
            }
            assert!(raw.ends_with(b"\r\n"), "{name}: must end with CRLF");
            for line in raw.split(|&b| b == b'\n') {
                assert!(line.len() <= 999, "{name}: line over 998 octets (RFC 5322 2.1.1)");
            }
            let fields = header(raw).unwrap_or_else(|e| panic!("{name}: {e}"));
            for required in ["date", "message-id", "from", "to", "subject", "mime-version", "content-type"] {
                assert_eq!(
                    fields.iter().filter(|(n, _)| n == required).count(),
                    1,
                    "{name}: needs exactly one {required}"
                );
            }
            let date = field(&fields, "date").unwrap_or_default();
            assert!(date.contains(" 2025 ") || date.contains(" 2026 "), "{name}: date {date}");
            let id = field(&fields, "message-id").unwrap_or_default();
            assert_eq!(message_ids(id).len(), 1, "{name}: Message-ID {id}");
            assert!(ids.insert(id.to_string()), "{name}: duplicate Message-ID");
            for f in ["from", "to", "cc", "reply-to", "return-path"] {
                let Some(v) = field(&fields, f) else { continue };
                for addr in v.split(['<', '>', ',', ' ']).filter(|t| t.contains('@')) {
                    let domain = addr.rsplit('@').next().unwrap_or_default();
                    assert!(
                        ["example.com", "example.org", "example.net"].contains(&domain),
                        "{name}: {f} address {addr} outside example.com/.org/.net"
                    );
                }
            }
        }
        // Replies point at messages that are in the set.
        let mut replies = 0;
        for (name, raw) in FILES {
            let fields = header(raw).unwrap_or_default();
            let Some(parent) = field(&fields, "in-reply-to") else { continue };
            if parent.contains("forge.example.net") {
                continue; // a notification replying to a pull request we do not have
            }
            replies += 1;
            assert!(ids.contains(parent), "{name}: In-Reply-To {parent} not in the samples");
            let refs = field(&fields, "references").unwrap_or_default();
            assert_eq!(message_ids(refs).last(), Some(&parent), "{name}: References must end with the parent");
            assert!(message_ids(refs).iter().all(|r| ids.contains(*r)), "{name}: unknown References");
        }
        assert!(replies >= 3, "a thread of at least four messages");
    }

    #[test]
    fn the_set_covers_what_the_demo_shows() {
        let all: Vec<String> = FILES.iter().map(|(_, raw)| String::from_utf8_lossy(raw).into_owned()).collect();
        let any = |needle: &str| all.iter().any(|m| m.contains(needle));
        for needle in [
            "multipart/alternative",
            "text/html",
            "application/pdf",
            "image/png",
            "message/rfc822",
            "text/calendar",
            "Content-Transfer-Encoding: quoted-printable",
            "Content-Transfer-Encoding: 8bit",
            "Subject: =?UTF-8?Q?",
            "Subject: =?UTF-8?B?",
            "Subject: Welcome to popbridge",
            "popbridge init",
            "popbridge account add",
            "popbridge run",
            "\r\n.github/", // a line that RETR must byte-stuff
        ] {
            assert!(any(needle), "no sample has {needle:?}");
        }
        let welcome = all.last().map(String::as_str).unwrap_or_default();
        assert!(welcome.contains("Subject: Welcome to popbridge"), "the welcome message comes last (newest)");
        assert!(welcome.contains("POP3") && welcome.contains("IMAP"));
    }
}
