//! Message identities when the server's UIDL cannot be used (absent, or the same UIDL for two
//! messages). The fallback key is built from the Message-ID and Date headers and the size, so it is
//! stable across sessions; it always starts with "fallback " — a space can never occur in a real
//! UIDL (RFC 1939 §7), so the two kinds never collide. Messages known only by a fallback key are
//! never deleted from the server (DESIGN §4: never delete on a guessed identity).

use std::collections::HashMap;

use crate::mime::header;

pub const FALLBACK_PREFIX: &str = "fallback ";

pub fn is_fallback(key: &str) -> bool {
    key.starts_with(FALLBACK_PREFIX)
}

/// The header block of a message (or a TOP n 0 answer): everything before its blank line.
fn header_block(raw: &[u8]) -> &[u8] {
    &raw[..header::split(raw).header_len]
}

/// The value of the first field with this (lower-case) name: its lines trimmed and joined by
/// single spaces. A continuation line is part of the field before it, never a field of its own.
fn header_value(block: &[u8], name: &str) -> Option<String> {
    let (_, v) = header::named(block).find(|(n, _)| n.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))?;
    let mut value = Vec::with_capacity(v.len());
    for (i, line) in v.split(|b| *b == b'\n').enumerate() {
        if i > 0 && !value.is_empty() {
            value.push(b' ');
        }
        value.extend_from_slice(line.trim_ascii());
    }
    Some(String::from_utf8_lossy(&value).into_owned())
}

/// The stable part of a fallback key, from a message's headers and its listed size.
pub fn fallback_digest(raw_or_top: &[u8], size: u64) -> String {
    let block = header_block(raw_or_top);
    let mid = header_value(block, "message-id");
    let date = header_value(block, "date");
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    match (&mid, &date) {
        (None, None) => ctx.update(block), // nothing identifying: the whole header block
        _ => {
            ctx.update(mid.as_deref().unwrap_or("").as_bytes());
            ctx.update(b"\0");
            ctx.update(date.as_deref().unwrap_or("").as_bytes());
        }
    }
    ctx.update(b"\0");
    ctx.update(size.to_string().as_bytes());
    ctx.finish().as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// What identifies a message by its headers alone — its Message-ID, Date and first Received
/// (the hop that delivered it to this mailbox), or the whole header block when it has none of
/// them — hashed. Recorded at insert, compared with a `TOP n 0` answer to tell whether a known
/// UIDL still names the stored message (DESIGN §4).
pub fn header_fingerprint(raw_or_top: &[u8]) -> Vec<u8> {
    let block = header_block(raw_or_top);
    let fields: Vec<Option<String>> =
        ["message-id", "date", "received"].iter().map(|name| header_value(block, name)).collect();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    if fields.iter().all(Option::is_none) {
        ctx.update(block);
    } else {
        for f in &fields {
            ctx.update(f.as_deref().unwrap_or("").as_bytes());
            ctx.update(b"\0");
        }
    }
    ctx.finish().as_ref()[..16].to_vec()
}

/// Numbers identical digests in server order ("#1", "#2"), so two genuinely identical messages
/// (the same mail delivered twice) keep distinct keys.
#[derive(Default)]
pub struct Occurrences(HashMap<String, u32>);

impl Occurrences {
    pub fn key(&mut self, digest: String) -> String {
        let n = self.0.entry(digest.clone()).or_insert(0);
        *n += 1;
        format!("{FALLBACK_PREFIX}{digest}#{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_uses_headers_and_size() {
        let a = b"Message-ID: <x@y>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: a\r\n\r\nbody";
        let b =
            b"Subject: different\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID:\r\n <x@y>\r\n\r\nother body";
        assert_eq!(fallback_digest(a, 10), fallback_digest(b, 10), "folding and order do not matter");
        assert_ne!(fallback_digest(a, 10), fallback_digest(a, 11));
        let mut occ = Occurrences::default();
        let k1 = occ.key(fallback_digest(a, 10));
        let k2 = occ.key(fallback_digest(a, 10));
        assert_ne!(k1, k2);
        assert!(is_fallback(&k1));
    }

    /// A folded line is part of the field before it: `Message-ID:` inside a folded Subject is no
    /// Message-ID (the old reader took it for one, and the key then ignored the real one).
    #[test]
    fn a_continuation_line_is_not_a_field() {
        let plain = b"Message-ID: <real@x>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n";
        let folded = b"Subject: hi\r\n Message-ID: <fake@x>\r\nMessage-ID: <real@x>\r\n\
Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n";
        assert_eq!(header_value(header_block(folded), "message-id").as_deref(), Some("<real@x>"));
        assert_eq!(fallback_digest(plain, 10), fallback_digest(folded, 10));
        assert_eq!(header_fingerprint(plain), header_fingerprint(folded));
        // Folded values are joined by single spaces; a header without a blank line is all header.
        assert_eq!(header_value(b"Date: Mon,\r\n  1 Jan\r\n\t2024 ", "date").as_deref(), Some("Mon, 1 Jan 2024"));
        assert_eq!(header_value(header_block(b"\r\nDate: x\r\n"), "date"), None, "in the body");
    }
}
