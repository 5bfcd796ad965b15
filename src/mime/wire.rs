//! Reference rendering of ENVELOPE, BODY and BODYSTRUCTURE in IMAP syntax (RFC 3501 §7.4.2),
//! as Dovecot writes them. The IMAP layer may use it directly or build imap-codec values from the
//! same fields; the tests and the Dovecot comparison use it to pin down the field mapping.
//!
//! Strings are quoted when they are printable ASCII, otherwise sent as literals (`{n}\r\n…`).

use super::{Address, Envelope, Part};

/// Append an IMAP nstring.
pub fn nstring(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.extend_from_slice(b"NIL"),
        Some(s) => string(out, s),
    }
}

/// Append an IMAP string: quoted if possible, else a literal.
pub fn string(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if b.iter().all(|&c| (0x20..0x7f).contains(&c)) && b.len() < 4096 {
        out.push(b'"');
        for &c in b {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", b.len()).as_bytes());
        out.extend_from_slice(b);
    }
}

fn addresses(out: &mut Vec<u8>, l: &[Address]) {
    if l.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in l {
        out.push(b'(');
        nstring(out, a.name.as_deref());
        out.push(b' ');
        nstring(out, a.adl.as_deref());
        out.push(b' ');
        nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        nstring(out, a.host.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

/// The parenthesised ENVELOPE.
pub fn envelope(out: &mut Vec<u8>, e: &Envelope) {
    out.push(b'(');
    nstring(out, e.date.as_deref());
    out.push(b' ');
    nstring(out, e.subject.as_deref());
    for l in [&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc] {
        out.push(b' ');
        addresses(out, l);
    }
    out.push(b' ');
    nstring(out, e.in_reply_to.as_deref());
    out.push(b' ');
    nstring(out, e.message_id.as_deref());
    out.push(b')');
}

fn params(out: &mut Vec<u8>, p: &[(String, String)]) {
    if p.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in p.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, k);
        out.push(b' ');
        string(out, v);
    }
    out.push(b')');
}

/// disposition, language, location (the tail of both kinds of extension data).
fn ext_tail(out: &mut Vec<u8>, p: &Part) {
    out.push(b' ');
    match &p.disposition {
        None => out.extend_from_slice(b"NIL"),
        Some((t, ps)) => {
            out.push(b'(');
            string(out, t);
            out.push(b' ');
            params(out, ps);
            out.push(b')');
        }
    }
    out.push(b' ');
    if p.language.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        for (i, l) in p.language.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            string(out, l);
        }
        out.push(b')');
    }
    out.push(b' ');
    nstring(out, p.location.as_deref());
}

/// BODYSTRUCTURE (`extended`) or BODY (not) of a part.
pub fn body_structure(out: &mut Vec<u8>, p: &Part, extended: bool) {
    out.push(b'(');
    if p.is_multipart() && !p.children.is_empty() {
        for c in &p.children {
            body_structure(out, c, extended);
        }
        out.push(b' ');
        string(out, &p.subtype);
        if extended {
            out.push(b' ');
            params(out, &p.params);
            ext_tail(out, p);
        }
    } else {
        string(out, &p.media_type);
        out.push(b' ');
        string(out, &p.subtype);
        out.push(b' ');
        params(out, &p.params);
        out.push(b' ');
        nstring(out, p.id.as_deref());
        out.push(b' ');
        nstring(out, p.description.as_deref());
        out.push(b' ');
        string(out, &p.encoding);
        out.extend_from_slice(format!(" {}", p.size).as_bytes());
        if let Some(m) = &p.message {
            out.push(b' ');
            envelope(out, &m.0);
            out.push(b' ');
            body_structure(out, &m.1, extended);
            out.extend_from_slice(format!(" {}", p.lines).as_bytes());
        } else if p.is_text() {
            out.extend_from_slice(format!(" {}", p.lines).as_bytes());
        }
        if extended {
            out.push(b' ');
            nstring(out, p.md5.as_deref());
            ext_tail(out, p);
        }
    }
    out.push(b')');
}
