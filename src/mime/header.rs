//! Header blocks: line scanning, unfolding, byte → string conversion, HEADER.FIELDS selection.

use memchr::memchr;
use std::ops::Range;

/// One header field: `name` without the colon (trailing WSP trimmed), `value` from after the
/// colon to the end of its last continuation line (line break excluded). Absolute offsets.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

pub(crate) struct Scan {
    pub fields: Vec<Field>,
    /// Where the body starts: after the blank line; at the end of the input when there is none;
    /// or, when `stop` fired, at the line break before the stopping line (that break belongs to
    /// the boundary), so the body is empty.
    pub body_start: usize,
    /// Start of the blank line that ended the header, if one did.
    pub blank_line: Option<usize>,
}

/// Scan the header block starting at `start` (a line start). `stop(line_start)` is asked at each
/// line start before the line is read; when it returns true the header ends there.
pub(crate) fn scan(raw: &[u8], start: usize, mut stop: impl FnMut(usize) -> bool) -> Scan {
    let mut fields: Vec<Field> = Vec::new();
    let mut last_is_field = false;
    let mut pos = start;
    loop {
        if pos >= raw.len() {
            return Scan { fields, body_start: raw.len(), blank_line: None };
        }
        if stop(pos) {
            let mut e = pos;
            if e > start && raw[e - 1] == b'\n' {
                e -= 1;
                if e > start && raw[e - 1] == b'\r' {
                    e -= 1;
                }
            }
            return Scan { fields, body_start: e, blank_line: None };
        }
        let (content_end, next) = match memchr(b'\n', &raw[pos..]) {
            Some(i) => {
                let lf = pos + i;
                let ce = if lf > pos && raw[lf - 1] == b'\r' { lf - 1 } else { lf };
                (ce, lf + 1)
            }
            None => (raw.len(), raw.len()),
        };
        if content_end == pos {
            // Blank line ("\n" or "\r\n"; a line is empty only when its LF was found): end of header.
            return Scan { fields, body_start: next, blank_line: Some(pos) };
        }
        let first = raw[pos];
        if first == b' ' || first == b'\t' {
            if last_is_field && let Some(f) = fields.last_mut() {
                f.value.end = content_end;
            }
        } else if let Some(c) = memchr(b':', &raw[pos..content_end]) {
            let colon = pos + c;
            let mut ne = colon;
            while ne > pos && (raw[ne - 1] == b' ' || raw[ne - 1] == b'\t') {
                ne -= 1;
            }
            fields.push(Field { name: pos..ne, value: colon + 1..content_end });
            last_is_field = true;
        } else {
            // Not a field (junk, mbox "From " line…): kept in the header, not parsed.
            last_is_field = false;
        }
        pos = next;
    }
}

/// Field-name comparison (ASCII case-insensitive).
pub(crate) fn name_is(raw: &[u8], f: &Field, name: &str) -> bool {
    raw[f.name.clone()].eq_ignore_ascii_case(name.as_bytes())
}

/// Unfold (drop every CR and LF) and convert to a String: valid UTF-8 is kept, other bytes are
/// read as ISO-8859-1, NUL becomes U+FFFD.
pub(crate) fn to_string(b: &[u8]) -> String {
    let clean = !b.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0);
    if clean && let Ok(s) = std::str::from_utf8(b) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(b.len() + 8);
    let mut rest = b;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_clean(&mut out, s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // `good` is valid UTF-8 by construction; the fallback never triggers.
                push_clean(&mut out, std::str::from_utf8(good).unwrap_or_default());
                let n = e.error_len().unwrap_or(bad.len()).max(1).min(bad.len());
                for &c in &bad[..n] {
                    out.push(char::from(c));
                }
                rest = &bad[n..];
            }
        }
    }
    out
}

fn push_clean(out: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '\r' | '\n' => {}
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// A field's value as a string: unfolded, surrounding whitespace trimmed.
pub(crate) fn value_string(raw: &[u8], f: &Field) -> String {
    let s = to_string(&raw[f.value.clone()]);
    let t = s.trim_matches(|c| c == ' ' || c == '\t');
    if t.len() == s.len() { s } else { t.to_owned() }
}

/// Dovecot's "string for humans": runs of SP/TAB/CR/LF become one space, ends trimmed.
pub(crate) fn for_humans(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for ch in s.chars() {
        if matches!(ch, ' ' | '\t' | '\r' | '\n') {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(ch);
        }
    }
    out
}

/// HEADER.FIELDS / HEADER.FIELDS.NOT selection (see `super::header_fields`).
pub(crate) fn select_fields(header: &[u8], names: &[&[u8]], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut keep = false; // whether the current field (and so its continuation lines) is kept
    while pos < header.len() {
        let (line_end, next) = match memchr(b'\n', &header[pos..]) {
            Some(i) => (pos + i + 1, pos + i + 1),
            None => (header.len(), header.len()),
        };
        let line = &header[pos..line_end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() && line.ends_with(b"\n") {
            break; // blank line: end of header
        }
        if line[0] != b' ' && line[0] != b'\t' {
            keep = match memchr(b':', content) {
                Some(c) => {
                    let mut name = &content[..c];
                    while let [rest @ .., b' ' | b'\t'] = name {
                        name = rest;
                    }
                    names.iter().any(|n| n.eq_ignore_ascii_case(name)) != not
                }
                // A line that is not a field is only ever part of "everything else".
                None => not,
            };
        }
        if keep {
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
        pos = next;
    }
    out.extend_from_slice(b"\r\n");
    out
}
