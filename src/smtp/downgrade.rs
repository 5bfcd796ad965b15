//! A message with non-ASCII header text, for an upstream server without SMTPUTF8.
//!
//! Raw UTF-8 in header fields (RFC 6532) may travel only under SMTPUTF8 (RFC 6531 §3.2, §3.4):
//! popbridge sends `SMTPUTF8` with MAIL FROM whenever the message needs it and the upstream
//! offers it ([`needs_smtputf8`]; the header's 8-bit text must then be UTF-8: [`header_is_utf8`]). When the upstream does not offer it, the message must not go
//! out as it is. Popbridge then rewrites what can be rewritten without changing what the
//! recipient reads — the part of RFC 6857's downgrade that loses nothing — and refuses the rest:
//!
//! - unstructured fields (Subject, Comments, Content-Description, Organization, Thread-Topic and
//!   every `X-` field) become RFC 2047 encoded words (`=?UTF-8?B?…?=`), which every mail program
//!   decodes back to the same text;
//! - in address fields (From, To, Cc, Reply-To, Sender, the Resent- fields…) the display names
//!   and group names become encoded words; the addresses stay as they are (comments are dropped);
//! - anything else is refused (the queue bounces the message with a notice saying why): a
//!   non-ASCII address (`jörg@example.org` has no ASCII form that reaches the same mailbox), and
//!   non-ASCII text in a structured field (Message-ID, References, a Content-Type parameter…)
//!   that encoded words would change the meaning of.
//!
//! Only the top-level header is looked at: the body, MIME part headers included, travels as
//! 8-bit data (`BODY=8BITMIME`), as it did before.

use base64::Engine;

use crate::mime::{Address, header};

/// The message needs SMTPUTF8: its header has non-ASCII bytes (the envelope is checked apart).
pub fn needs_smtputf8(raw: &[u8]) -> bool {
    !raw[..header::split(raw).header_len].is_ascii()
}

/// The header's non-ASCII bytes are UTF-8, as SMTPUTF8 promises (RFC 6532 §3.2). Other 8-bit
/// bytes (an undeclared legacy charset) are always downgraded: read as ISO-8859-1, as
/// popbridge's IMAP server shows them, and sent as encoded words.
pub fn header_is_utf8(raw: &[u8]) -> bool {
    std::str::from_utf8(&raw[..header::split(raw).header_len]).is_ok()
}

/// Fields whose value is text (RFC 5322 §3.6.5, RFC 2045 §8, common practice): encoded words are
/// allowed anywhere in them (RFC 2047 §5 (1)). Every `X-` field counts as one too.
const UNSTRUCTURED: &[&str] = &["subject", "comments", "content-description", "organization", "thread-topic"];

/// Fields that hold an address list (RFC 5322 §3.6.2, §3.6.3, §3.6.6; RFC 8098; RFC 2369-era
/// Mail-Followup-To): encoded words are allowed in their phrases (RFC 2047 §5 (3)).
const ADDRESS_FIELDS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-bcc",
    "disposition-notification-to",
    "mail-followup-to",
    "mail-reply-to",
];

/// Longest encoded word (RFC 2047 §2): 75 characters, so at most 45 bytes of text in each
/// (`=?UTF-8?B?` + 60 base64 characters + `?=` = 72).
const WORD_BYTES: usize = 45;

/// The message with its header made ASCII, or why that cannot be done without changing it.
pub fn downgrade(raw: &[u8]) -> Result<Vec<u8>, String> {
    let end = header::split(raw).header_len;
    let header = &raw[..end];
    let mut out = Vec::with_capacity(raw.len() + 256);
    let mut copied = 0;
    for f in header::fields(header) {
        let (Some(name), value) = (f.name, f.value) else { continue };
        let v = &header[value.clone()];
        if v.is_ascii() {
            continue;
        }
        let field = String::from_utf8_lossy(&header[name]).into_owned();
        let lower = field.to_ascii_lowercase();
        let text = header::text(v);
        let new = if UNSTRUCTURED.contains(&lower.as_str()) || lower.starts_with("x-") {
            format!(" {}", encoded_words(text.trim_matches([' ', '\t'])))
        } else if ADDRESS_FIELDS.contains(&lower.as_str()) {
            addresses(v).map_err(|why| format!("its {field} header has {why}"))?
        } else {
            return Err(format!(
                "its {field} header has non-ASCII text, which cannot be written in ASCII without changing what it says"
            ));
        };
        out.extend_from_slice(&header[copied..value.start]);
        out.extend_from_slice(new.as_bytes());
        copied = value.end;
    }
    out.extend_from_slice(&header[copied..]);
    if !out.is_ascii() {
        return Err("its header has non-ASCII text outside any header field".into());
    }
    out.extend_from_slice(&raw[end..]);
    Ok(out)
}

/// `text` as encoded words, folded between them (RFC 2047 §2: each at most 75 characters; a
/// character is never split across two).
fn encoded_words(text: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut words = Vec::new();
    let mut start = 0;
    let mut last = 0;
    for (i, c) in text.char_indices() {
        let next = i + c.len_utf8();
        if next - start > WORD_BYTES {
            words.push(&text[start..last]);
            start = last;
        }
        last = next;
    }
    words.push(&text[start..]);
    words.iter().map(|w| format!("=?UTF-8?B?{}?=", b64.encode(w.as_bytes()))).collect::<Vec<_>>().join("\r\n ")
}

/// A phrase (display name, group name): as it is when it is plain ASCII, quoted when it has
/// specials, encoded words when it has non-ASCII text.
fn phrase(name: &str) -> String {
    if !name.is_ascii() {
        return encoded_words(name);
    }
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~ ".contains(c);
    if name.chars().all(atext) && !name.trim().is_empty() {
        return name.to_string();
    }
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An address-list value rewritten with ASCII phrases; `Err` names what cannot be.
fn addresses(value: &[u8]) -> Result<String, String> {
    let mut items: Vec<String> = Vec::new();
    let mut group: Option<(String, Vec<String>)> = None;
    for a in crate::mime::address_list(value) {
        match a {
            Address { mailbox: Some(name), host: None, .. } => group = Some((phrase(&name), Vec::new())),
            Address { mailbox: None, .. } => {
                if let Some((name, members)) = group.take() {
                    items.push(format!("{name}: {};", members.join(", ")));
                }
            }
            Address { name, mailbox: Some(m), host: Some(h), .. } => {
                let addr = if m.is_empty() && h.is_empty() {
                    "<>".to_string()
                } else if !m.is_ascii() || !h.is_ascii() {
                    return Err(format!("the non-ASCII address {m}@{h}, which has no ASCII form"));
                } else if m == "MISSING_MAILBOX" || h == "MISSING_DOMAIN" {
                    return Err("an address popbridge cannot read".to_string());
                } else {
                    let local_ok = m.split('.').all(|p| {
                        !p.is_empty()
                            && p.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
                    });
                    let local =
                        if local_ok { m } else { format!("\"{}\"", m.replace('\\', "\\\\").replace('"', "\\\"")) };
                    format!("<{local}@{h}>")
                };
                let one = match name.filter(|n| !n.is_empty()) {
                    Some(n) => format!("{} {addr}", phrase(&n)),
                    None => addr,
                };
                match group.as_mut() {
                    Some((_, members)) => members.push(one),
                    None => items.push(one),
                }
            }
        }
    }
    if let Some((name, members)) = group {
        items.push(format!("{name}: {};", members.join(", ")));
    }
    Ok(format!(" {}", items.join(",\r\n ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded_subject(raw: &[u8]) -> String {
        let m = mail_parser::MessageParser::default().parse_headers(raw).unwrap();
        m.subject().unwrap_or_default().to_string()
    }

    #[test]
    fn text_and_names_become_encoded_words() {
        let subject = "Grüße aus Zürich — 東京で会いましょう, and a long tail to make it fold over more than one word";
        let raw = format!(
            "From: Jörg Müller <me@work.example>\r\nTo: \"Ann, Lee\" <ann@example.org>, Bob Ströh <bob@example.net>\r\n\
             Subject: {subject}\r\nX-Note: ünïcode\r\nMessage-ID: <a@work.example>\r\n\r\nBody: ü stays.\r\n"
        );
        assert!(needs_smtputf8(raw.as_bytes()));
        let out = downgrade(raw.as_bytes()).unwrap();
        let end = header::split(&out).header_len;
        assert!(out[..end].is_ascii(), "{}", String::from_utf8_lossy(&out));
        assert!(out.ends_with("\r\n\r\nBody: ü stays.\r\n".as_bytes()), "the body is untouched");
        assert!(out.split(|b| *b == b'\n').all(|l| l.len() <= 998));
        let m = mail_parser::MessageParser::default().parse_headers(&out).unwrap();
        assert_eq!(decoded_subject(&out), subject);
        let from = m.from().and_then(|a| a.first()).unwrap();
        assert_eq!((from.name.as_deref(), from.address.as_deref()), (Some("Jörg Müller"), Some("me@work.example")));
        let to: Vec<(Option<&str>, Option<&str>)> =
            m.to().unwrap().iter().map(|a| (a.name.as_deref(), a.address.as_deref())).collect();
        assert_eq!(to, [(Some("Ann, Lee"), Some("ann@example.org")), (Some("Bob Ströh"), Some("bob@example.net"))]);
        assert!(String::from_utf8_lossy(&out).contains("Message-ID: <a@work.example>\r\n"), "ASCII fields untouched");
        assert!(!needs_smtputf8(&out));
    }

    #[test]
    fn what_cannot_be_written_in_ascii_is_refused() {
        for (raw, why) in [
            ("From: me@work.example\r\nTo: jörg@example.org\r\n\r\nx\r\n", "non-ASCII address"),
            ("From: me@work.example\r\nMessage-ID: <ü@x>\r\n\r\nx\r\n", "Message-ID"),
            ("From: me@work.example\r\nKeywords: ä, b\r\n\r\nx\r\n", "Keywords"),
        ] {
            match downgrade(raw.as_bytes()) {
                Err(e) => assert!(e.contains(why), "{raw:?}: {e}"),
                Ok(out) => panic!("{raw:?} → {}", String::from_utf8_lossy(&out)),
            }
        }
        let junk = "From: me@work.example\r\nJunk ü line\r\n\r\nx\r\n";
        assert!(downgrade(junk.as_bytes()).unwrap_err().contains("outside any header field"));
    }

    #[test]
    fn legacy_8bit_text_is_read_as_latin1() {
        let raw = b"From: me@work.example\r\nSubject: Gr\xfc\xdfe\r\n\r\nx\r\n";
        assert!(needs_smtputf8(raw) && !header_is_utf8(raw));
        assert_eq!(decoded_subject(&downgrade(raw).unwrap()), "Grüße");
    }

    #[test]
    fn a_word_never_splits_a_character() {
        let s = "é".repeat(100);
        let w = encoded_words(&s);
        for word in w.split("\r\n ") {
            assert!(word.len() <= 75, "{word}");
            let b64 = word.trim_start_matches("=?UTF-8?B?").trim_end_matches("?=");
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
            assert!(String::from_utf8(bytes).is_ok());
        }
    }
}
