//! Modified UTF-7 (RFC 3501 §5.1.3): how IMAP mailbox names that are not printable ASCII travel —
//! the local IMAP server's names (`imap::names`) and a delivery target's mailbox
//! (`fetch::target::imap`). No I/O.

use base64::Engine;

const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &match base64::alphabet::Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,") {
        Ok(a) => a,
        Err(_) => panic!("static alphabet"),
    },
    base64::engine::general_purpose::NO_PAD.with_decode_allow_trailing_bits(true),
);

/// UTF-8 → modified UTF-7.
pub fn encode_mutf7(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&B64.encode(bytes));
        out.push('-');
        pending.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Modified UTF-7 → UTF-8; `None` if the name is not valid modified UTF-7.
pub fn decode_mutf7(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find('-')?;
        let chunk = &after[..end];
        if chunk.is_empty() {
            out.push('&');
        } else {
            let bytes = B64.decode(chunk).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes.chunks(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
            let decoded = String::from_utf16(&units).ok()?;
            // Printable ASCII must not be encoded (RFC 3501 §5.1.3): reject, it would alias a name.
            if decoded.chars().any(|c| (' '..='~').contains(&c)) {
                return None;
            }
            out.push_str(&decoded);
        }
        rest = &after[end + 1..];
    }
    if rest.bytes().any(|b| !(0x20..=0x7e).contains(&b)) {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutf7_round_trips_rfc_examples() {
        assert_eq!(encode_mutf7("~peter/mail/台北/日本語"), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(decode_mutf7("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(), "~peter/mail/台北/日本語");
        assert_eq!(encode_mutf7("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(decode_mutf7("Tom &- Jerry").unwrap(), "Tom & Jerry");
        assert_eq!(encode_mutf7("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(decode_mutf7("Entw&APw-rfe").unwrap(), "Entwürfe");
        assert!(decode_mutf7("&Jjo!").is_none());
        assert!(decode_mutf7("&AGE-").is_none(), "encoded ASCII is not allowed");
        assert!(decode_mutf7("caf\u{e9}").is_none(), "raw 8-bit is not modified UTF-7");
    }
}
