//! Decoded text for full-text search. Cheap: only text/plain and text/html parts that are not
//! attachments are decoded (attachments are never touched); headers are RFC 2047-decoded as
//! SEARCH reads them ([`header::decoded`]).

use super::header;
use super::{MessageMeta, Part};

/// Decoded text per message is capped (a huge text part adds nothing to search but size).
const MAX_TEXT: usize = 1 << 20;

/// `(decoded headers, decoded text parts)`: headers as `Name: value` lines (Subject, From, To,
/// Cc, Bcc, Reply-To, Sender); text parts (plain, and HTML converted to text) joined by newlines,
/// encapsulated messages included.
pub fn search_text(raw: &[u8]) -> (String, String) {
    search_text_with(raw, &MessageMeta::extract(raw))
}

/// [`search_text`] with the metadata already extracted (at insert: the message is parsed once).
pub fn search_text_with(raw: &[u8], meta: &MessageMeta) -> (String, String) {
    let raw = &raw[..raw.len().min(u32::MAX as usize)];
    let mut heads = String::new();
    for f in header::fields(raw) {
        for name in ["Subject", "From", "To", "Cc", "Bcc", "Reply-To", "Sender"] {
            if f.is(raw, name) {
                heads.push_str(name);
                heads.push_str(": ");
                heads.push_str(header::decoded(&raw[f.value.clone()]).trim());
                heads.push('\n');
            }
        }
    }
    let mut text = String::new();
    meta.part.walk(&mut |p: &Part| {
        if text.len() >= MAX_TEXT || !p.is_text() || !p.children.is_empty() {
            return;
        }
        let html = p.subtype.eq_ignore_ascii_case("html");
        if !(html || p.subtype.eq_ignore_ascii_case("plain")) {
            return;
        }
        if p.disposition.as_ref().is_some_and(|(d, _)| d.eq_ignore_ascii_case("attachment")) {
            return;
        }
        let body = raw.get(p.body_range()).unwrap_or_default();
        let bytes = decode_body(body, &p.encoding);
        let charset = p
            .params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("charset"))
            .map(|(_, v)| v.as_str())
            .unwrap_or("us-ascii");
        let s = to_utf8(&bytes, charset);
        let s = if html { mail_parser::decoders::html::html_to_text(&s) } else { s };
        if !text.is_empty() {
            text.push('\n');
        }
        let room = MAX_TEXT.saturating_sub(text.len());
        let mut cut = s.len().min(room);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        text.push_str(&s[..cut]);
    });
    (heads, text)
}

/// The body with its transfer encoding undone; an encoding no decoder knows is searched as it is.
fn decode_body(body: &[u8], encoding: &str) -> Vec<u8> {
    super::transfer::decode(
        body,
        super::transfer::Encoding::parse(encoding).unwrap_or(super::transfer::Encoding::Identity),
    )
}

fn to_utf8(b: &[u8], charset: &str) -> String {
    let cs = charset.trim();
    let utf8ish = cs.eq_ignore_ascii_case("utf-8") || cs.eq_ignore_ascii_case("us-ascii") || cs.is_empty();
    if !utf8ish && let Some(dec) = mail_parser::decoders::charsets::map::charset_decoder(cs.as_bytes()) {
        return dec(b);
    }
    String::from_utf8_lossy(b).into_owned()
}
