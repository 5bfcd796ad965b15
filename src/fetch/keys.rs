//! Message identities when the server's UIDL cannot be used (absent, or the same UIDL for two
//! messages). The fallback key is built from the Message-ID and Date headers and the size, so it is
//! stable across sessions; it always starts with "fallback " — a space can never occur in a real
//! UIDL (RFC 1939 §7), so the two kinds never collide. Messages known only by a fallback key are
//! never deleted from the server (DESIGN §4: never delete on a guessed identity).

use std::collections::HashMap;

pub const FALLBACK_PREFIX: &str = "fallback ";

pub fn is_fallback(key: &str) -> bool {
    key.starts_with(FALLBACK_PREFIX)
}

/// The header block of a message (or a TOP n 0 answer): everything up to the first empty line.
fn header_block(raw: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < raw.len() {
        let line_end = memchr::memchr(b'\n', &raw[i..]).map(|p| i + p + 1).unwrap_or(raw.len());
        let line = &raw[i..line_end];
        if line == b"\r\n" || line == b"\n" {
            return &raw[..i];
        }
        i = line_end;
    }
    raw
}

/// The unfolded value of the first header with this (lower-case) name.
fn header_value(block: &[u8], name: &str) -> Option<String> {
    let mut value: Option<Vec<u8>> = None;
    for line in block.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(v) = value.as_mut() {
            if line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
                if !v.is_empty() {
                    v.push(b' ');
                }
                v.extend_from_slice(line.trim_ascii());
                continue;
            }
            break;
        }
        if let Some(colon) = line.iter().position(|c| *c == b':')
            && line[..colon].trim_ascii().eq_ignore_ascii_case(name.as_bytes())
        {
            value = Some(line[colon + 1..].trim_ascii().to_vec());
        }
    }
    value.map(|v| String::from_utf8_lossy(&v).into_owned())
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
}
