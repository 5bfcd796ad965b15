//! Header blocks, read one way everywhere in popbridge: where a header ends ([`split`],
//! [`find_end`]), its fields ([`fields`], [`named`]), header bytes as text ([`text`],
//! [`decoded`]), `HEADER.FIELDS` selection, and the CR/LF rule for text going into a protocol
//! line ([`one_line`]).
//!
//! The reading (RFC 5322 §2.2 and §3.5, as Dovecot reads it):
//! - A line ends at LF; a CR right before the LF belongs to the line break. A last line without
//!   LF runs to the end of the input.
//! - The header ends at the first empty line (`\r\n` or `\n`). That blank line is in neither
//!   part: [`Split::header_len`] stops before it, [`Split::body_start`] starts after it. Without a
//!   blank line the whole input is header and the body is empty.
//! - A line that starts with SP or TAB continues the field before it. At the top of the header,
//!   or after a line that is not a field (no colon: junk, an mbox `From ` line), it continues
//!   nothing and belongs to no field.
//! - A field's name is what comes before the first colon of its first line, trailing SP/TAB
//!   trimmed (RFC 5322 §4.5.3 obsolete syntax); its value runs from after the colon to the end of
//!   its last continuation line, inner line breaks included, the last one excluded.

use memchr::memchr;
use std::borrow::Cow;
use std::ops::Range;

/// Where a header block ends. Both offsets are given because callers need both: what to check or
/// rewrite (`..header_len`) and where the body starts (`body_start..`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Octets of the header's lines, without the blank line that ends the header; the whole input
    /// when there is none.
    pub header_len: usize,
    /// Where the body starts: after the blank line; the end of the input when there is none.
    pub body_start: usize,
}

impl Split {
    /// The header ended with a blank line (else it runs to the end of the input).
    pub fn has_blank_line(&self) -> bool {
        self.body_start > self.header_len
    }
}

/// Where the header of a whole message (or a `TOP n 0` answer, a header block) ends.
pub fn split(raw: &[u8]) -> Split {
    find_end(raw).unwrap_or(Split { header_len: raw.len(), body_start: raw.len() })
}

/// [`split`] on the start of a message still arriving: `None` while its blank line has not
/// arrived (a `\r` without its `\n` is not a blank line yet). Once `Some`, more input changes
/// nothing.
pub fn find_end(partial: &[u8]) -> Option<Split> {
    let mut pos = 0;
    while pos < partial.len() {
        let (content_end, next) = line_at(partial, pos);
        if content_end == pos {
            return Some(Split { header_len: pos, body_start: next });
        }
        pos = next;
    }
    None
}

/// The line starting at `pos` (< `raw.len()`): (end of its content, CR/LF excluded; start of the
/// next line). Its content is empty only for a blank line (its LF was found).
fn line_at(raw: &[u8], pos: usize) -> (usize, usize) {
    match memchr(b'\n', &raw[pos..]) {
        Some(i) => {
            let lf = pos + i;
            (if lf > pos && raw[lf - 1] == b'\r' { lf - 1 } else { lf }, lf + 1)
        }
        None => (raw.len(), raw.len()),
    }
}

fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// One field of a header block as its lines lie: a line and the continuation lines after it.
/// Offsets are absolute into the scanned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// All its lines, line breaks included.
    pub lines: Range<usize>,
    /// The name; `None` when the first line is no field: it has no colon, or it starts with
    /// whitespace (continuation lines at the top of the header, which continue nothing).
    pub name: Option<Range<usize>>,
    /// The value (empty when `name` is `None`).
    pub value: Range<usize>,
}

impl Field {
    /// Its name is `name` (ASCII case-insensitively).
    pub fn is(&self, raw: &[u8], name: &str) -> bool {
        self.name.as_ref().is_some_and(|n| raw[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// The fields of the header block at the start of `raw`, up to its blank line, each line in
/// exactly one [`Field`] (those that are no field too, with `name: None`).
pub fn fields(raw: &[u8]) -> Fields<'_> {
    fields_from(raw, 0, never)
}

/// The named fields of the header block at the start of `raw`: `(name, value)` bytes.
pub fn named(raw: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    fields(raw).filter_map(move |f| Some((&raw[f.name?], &raw[f.value])))
}

fn never(_: usize) -> bool {
    false
}

/// [`fields`] of the header starting at `start` (a line start) that also ends where `stop`
/// (asked at each line start, possibly more than once) says so: a MIME boundary. The line break
/// before the stopping line belongs to it (RFC 2046 §5.1.1), so the header ends before that.
pub(crate) fn fields_from<S: FnMut(usize) -> bool>(raw: &[u8], start: usize, stop: S) -> Fields<'_, S> {
    Fields { raw, start, pos: start, stop, end: None }
}

/// The iterator of [`fields`]; [`Fields::end`] tells where the header ended.
pub struct Fields<'a, S = fn(usize) -> bool> {
    raw: &'a [u8],
    start: usize,
    pos: usize,
    stop: S,
    end: Option<Split>,
}

impl<S> Fields<'_, S> {
    /// Where the header ended, once the iterator has returned `None`.
    pub fn end(&self) -> Option<Split> {
        self.end
    }

    fn finish(&mut self, header_len: usize, body_start: usize) -> Option<Field> {
        self.end = Some(Split { header_len, body_start });
        None
    }
}

impl<S: FnMut(usize) -> bool> Iterator for Fields<'_, S> {
    type Item = Field;

    fn next(&mut self) -> Option<Field> {
        if self.end.is_some() {
            return None;
        }
        let raw = self.raw;
        let start = self.pos;
        if start >= raw.len() {
            return self.finish(raw.len(), raw.len());
        }
        if (self.stop)(start) {
            let mut e = start;
            if e > self.start && raw[e - 1] == b'\n' {
                e -= 1;
                if e > self.start && raw[e - 1] == b'\r' {
                    e -= 1;
                }
            }
            return self.finish(e, e);
        }
        let (content_end, next) = line_at(raw, start);
        if content_end == start {
            return self.finish(start, next);
        }
        let name = if is_wsp(raw[start]) {
            None
        } else {
            memchr(b':', &raw[start..content_end]).map(|c| {
                let colon = start + c;
                let mut name_end = colon;
                while name_end > start && is_wsp(raw[name_end - 1]) {
                    name_end -= 1;
                }
                (start..name_end, colon + 1)
            })
        };
        let mut value_end = content_end;
        self.pos = next;
        while self.pos < raw.len() && is_wsp(raw[self.pos]) && !(self.stop)(self.pos) {
            let (e, n) = line_at(raw, self.pos);
            value_end = e;
            self.pos = n;
        }
        Some(match name {
            Some((name, value_start)) => {
                Field { lines: start..self.pos, name: Some(name), value: value_start..value_end }
            }
            None => Field { lines: start..self.pos, name: None, value: start..start },
        })
    }
}

/// A named field, as the MIME walker keeps them.
#[derive(Debug, Clone)]
pub(crate) struct NamedField {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

pub(crate) struct Scan {
    pub fields: Vec<NamedField>,
    /// Where the body starts: after the blank line; at the end of the input when there is none;
    /// or, when `stop` fired, at the line break before the stopping line (that break belongs to
    /// the boundary), so the body is empty.
    pub body_start: usize,
    /// Start of the blank line that ended the header, if one did.
    pub blank_line: Option<usize>,
}

/// The named fields of the header starting at `start` and where it ends ([`fields_from`]).
pub(crate) fn scan(raw: &[u8], start: usize, stop: impl FnMut(usize) -> bool) -> Scan {
    let mut it = fields_from(raw, start, stop);
    let fields = it.by_ref().filter_map(|f| Some(NamedField { name: f.name?, value: f.value })).collect();
    let end = it.end().unwrap_or(Split { header_len: raw.len(), body_start: raw.len() });
    Scan { fields, body_start: end.body_start, blank_line: end.has_blank_line().then_some(end.header_len) }
}

/// Field-name comparison (ASCII case-insensitive).
pub(crate) fn name_is(raw: &[u8], f: &NamedField, name: &str) -> bool {
    raw[f.name.clone()].eq_ignore_ascii_case(name.as_bytes())
}

/// What [`to_text`] does with CR and LF.
#[derive(Clone, Copy)]
enum Breaks {
    /// Unfold: drop them.
    Drop,
    /// Each becomes a space.
    Space,
}

/// Header bytes as text: unfolded (every CR and LF dropped); valid UTF-8 kept, other bytes read
/// as ISO-8859-1, NUL as U+FFFD (the module docs of `crate::mime`).
pub fn text(b: &[u8]) -> String {
    to_text(b, Breaks::Drop)
}

/// Bytes → String: valid UTF-8 is kept, every other byte is read as ISO-8859-1 (bytes of an
/// invalid sequence one by one), NUL becomes U+FFFD, CR and LF as `breaks` says.
fn to_text(b: &[u8], breaks: Breaks) -> String {
    let clean = !b.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0);
    if clean && let Ok(s) = std::str::from_utf8(b) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(b.len() + 8);
    let mut rest = b;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_clean(&mut out, s, breaks);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // `good` is valid UTF-8 by construction; the fallback never triggers.
                push_clean(&mut out, std::str::from_utf8(good).unwrap_or_default(), breaks);
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

fn push_clean(out: &mut String, s: &str, breaks: Breaks) {
    for ch in s.chars() {
        match (ch, breaks) {
            ('\r' | '\n', Breaks::Drop) => {}
            ('\r' | '\n', Breaks::Space) => out.push(' '),
            ('\0', _) => out.push('\u{FFFD}'),
            (c, _) => out.push(c),
        }
    }
}

/// A header value as a reader sees it, for searching: [`text`] except that each CR and LF
/// becomes a space, then RFC 2047 encoded-words decoded (mail-parser's decoder; a malformed word
/// stays as written). Without an encoded word the text is returned as it is (not trimmed).
pub fn decoded(value: &[u8]) -> String {
    let s = to_text(value, Breaks::Space);
    if !s.contains("=?") {
        return s;
    }
    // mail-parser parses a field value: after the colon, up to its final line break.
    let mut buf = Vec::with_capacity(s.len() + 2);
    buf.push(b' ');
    buf.extend_from_slice(s.as_bytes());
    buf.push(b'\n');
    match mail_parser::parsers::MessageStream::new(&buf).parse_unstructured() {
        mail_parser::HeaderValue::Text(t) => t.into_owned(),
        _ => s,
    }
}

/// Text for a protocol line or a header field (an IMAP or SMTP response, a log line sent to a
/// client): each CR and each LF becomes a space, so the text can never end the line early and
/// smuggle in a line of its own.
pub fn one_line(text: &str) -> Cow<'_, str> {
    if !text.contains(['\r', '\n']) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect())
}

/// A field's value as a string: unfolded, surrounding whitespace trimmed.
pub(crate) fn value_string(raw: &[u8], f: &NamedField) -> String {
    let s = text(&raw[f.value.clone()]);
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

/// HEADER.FIELDS / HEADER.FIELDS.NOT selection (see `super::header_fields`): each field whose
/// name is (not) listed, with its continuation lines; a line that is no field goes with NOT
/// only, continuation lines at the top of the header never.
pub(crate) fn select_fields(header: &[u8], names: &[&[u8]], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields(header) {
        let keep = match &f.name {
            Some(n) => names.iter().any(|x| x.eq_ignore_ascii_case(&header[n.clone()])) != not,
            None if is_wsp(header[f.lines.start]) => false,
            None => not,
        };
        if keep {
            let lines = &header[f.lines];
            out.extend_from_slice(lines);
            if !lines.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(raw: &[u8]) -> (usize, usize) {
        let s = split(raw);
        (s.header_len, s.body_start)
    }

    fn names(raw: &[u8]) -> Vec<(String, String)> {
        named(raw)
            .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    /// The cases where the five old scanners disagreed or could: `header_len` is what
    /// `smtp::policy::header_end` and `fetch::keys::header_block` returned, `body_start` what
    /// `imap::fetch::header_end`, `smtp::spool::header_block_end` and `MessageMeta::header_len` did.
    #[test]
    fn both_ends_of_the_header() {
        // CRLF and bare LF blank lines.
        assert_eq!(sp(b"A: b\r\n\r\nbody"), (6, 8));
        assert_eq!(sp(b"A: b\n\nbody"), (5, 6));
        assert_eq!(sp(b"A: b\r\n\nbody"), (6, 7), "LF alone ends a CRLF header too");
        assert_eq!(sp(b"A: b\n\r\nbody"), (5, 7));
        // A header and no body.
        assert_eq!(sp(b"A: b\r\n\r\n"), (6, 8));
        // No blank line at all: everything is header, the body is empty.
        for raw in [&b"A: b\r\nC: d\r\n"[..], b"A: b", b"A: b\r\n\r", b"", b"\r", b" \r\n"] {
            assert_eq!(sp(raw), (raw.len(), raw.len()), "{raw:?}");
            assert!(!split(raw).has_blank_line());
        }
        // A blank line right at the start: no header at all.
        assert_eq!(sp(b"\r\nA: b\r\n\r\n"), (0, 2));
        assert_eq!(sp(b"\nA: b"), (0, 1));
        // A line of whitespace or a lone CR is not blank.
        assert_eq!(sp(b"A: b\r\n \r\n\r\nx"), (9, 11));
        assert_eq!(sp(b"A: b\r\n\r\r\n\r\nx"), (9, 11));
        // Folded lines do not end the header.
        assert_eq!(sp(b"A: b\r\n\tc\r\n  d\r\n\r\nx"), (15, 17));
        // NUL and 8-bit bytes are bytes like any other.
        assert_eq!(sp(b"N\0me\xff: \x80\r\n\r\n"), (10, 12));
        // A very long header (more than the spool's limit) is scanned to its end.
        let mut long = Vec::new();
        for i in 0..20_000 {
            long.extend_from_slice(format!("X-{i}: {}\r\n\t{}\r\n", "v".repeat(40), "w".repeat(40)).as_bytes());
        }
        let n = long.len();
        long.extend_from_slice(b"\r\nbody");
        assert_eq!(sp(&long), (n, n + 2));
        assert_eq!(fields(&long).count(), 20_000);
        // Every case agrees with the MIME walker.
        for raw in [&b"A: b\r\n\r\nbody"[..], b"A: b\n\nbody", b"A: b", b"\r\nA", b"A: b\r\n\tc\r\n\r\nx", &long] {
            assert_eq!(split(raw).body_start, super::super::MessageMeta::extract(raw).header_len as usize);
        }
    }

    #[test]
    fn the_end_found_in_a_message_still_arriving() {
        // What `smtp::spool` tested for its own copy.
        assert_eq!(find_end(b"A: b\r\n\r\nbody").map(|s| s.body_start), Some(8));
        assert_eq!(find_end(b"A: b\n\nbody").map(|s| s.body_start), Some(6));
        assert_eq!(find_end(b"\r\nbody").map(|s| s.body_start), Some(2));
        assert_eq!(find_end(b"A: b\r\nC: d\r\n\r"), None, "the blank line is not complete");
        assert_eq!(find_end(b"A: b\r\n"), None);
        // `\r\n\r\n` split across two chunks, at each of its bytes: None until the last byte has
        // arrived, then the same answer as on the whole message.
        let raw = b"Subject: hi\r\nX: y\r\n\r\nbody\r\n\r\nmore";
        let whole = split(raw);
        for cut in 0..=raw.len() {
            match find_end(&raw[..cut]) {
                None => assert!(cut < whole.body_start, "{cut}"),
                Some(s) => assert_eq!(s, whole, "{cut}"),
            }
        }
    }

    #[test]
    fn fields_and_their_lines() {
        // What `imap::search` tested for its own copy.
        assert_eq!(
            names(b" junk\r\nA: 1\r\n  2\r\njunk line\r\n cont of junk\r\nB : x\nC:\r\n\r\nD: body"),
            [("A".into(), " 1\r\n  2".into()), ("B".into(), " x".into()), ("C".into(), String::new())]
        );
        assert_eq!(names(b"A: no final newline"), [("A".into(), " no final newline".into())]);
        assert_eq!(names(b"\r\nA: body"), []);
        assert_eq!(names(b""), []);
        assert_eq!(names(b"A: x\r\n\t"), [("A".into(), " x\r\n\t".into())]);
        // NUL and 8-bit bytes in names stay bytes; only SP/TAB before the colon is trimmed.
        assert_eq!(
            named(b"N\0me\xff \t: v\r\n\xc3\xa4: w\r\n\r\n").map(|(n, _)| n.to_vec()).collect::<Vec<_>>(),
            [b"N\0me\xff".to_vec(), "ä".as_bytes().to_vec()]
        );
        // Every line is in exactly one field, those that are no field too; the fields tile the
        // header up to its blank line.
        let raw = b" orphan\r\n\tmore\r\nA: 1\r\n 2\r\njunk\r\n j2\r\nB:x\r\n\r\nC: body\r\n";
        let all: Vec<Field> = fields(raw).collect();
        let names: Vec<Option<&[u8]>> = all.iter().map(|f| f.name.clone().map(|n| &raw[n])).collect();
        assert_eq!(names, [None, Some(&b"A"[..]), None, Some(b"B")]);
        let tiled: Vec<u8> = all.iter().flat_map(|f| raw[f.lines.clone()].to_vec()).collect();
        assert_eq!(tiled, &raw[..split(raw).header_len]);
        assert!(all[1].is(raw, "a") && !all[0].is(raw, "a"));
        let mut it = fields(raw);
        assert_eq!(it.end(), None, "not known before the end");
        it.by_ref().for_each(drop);
        assert_eq!(it.end(), Some(split(raw)));
    }

    #[test]
    fn a_boundary_ends_the_header_before_its_line_break() {
        let raw = b"A: 1\r\n b\r\n--xyz\r\nC: 2\r\n";
        let stop = |p: usize| raw[p..].starts_with(b"--xyz");
        let mut it = fields_from(raw, 0, stop);
        let got: Vec<Field> = it.by_ref().collect();
        assert_eq!(got.len(), 1);
        assert_eq!(&raw[got[0].value.clone()], b" 1\r\n b");
        assert_eq!(it.end(), Some(Split { header_len: 8, body_start: 8 }));
        let s = scan(raw, 0, stop);
        assert_eq!((s.body_start, s.blank_line, s.fields.len()), (8, None, 1));
        let s = scan(b"A: 1\r\n\r\nbody", 0, |_| false);
        assert_eq!((s.body_start, s.blank_line), (8, Some(6)));
    }

    #[test]
    fn header_text_and_encoded_words() {
        // What `imap::search` tested for its own copy: Latin-1 bytes, NUL, a broken encoded word.
        assert_eq!(decoded(b" M\xfcller\0"), " Müller\u{FFFD}");
        assert_eq!(decoded(b" =?utf-8?q?caf=C3=A9?= \r\n =?x?b?!!?="), "café =?x?b?!!?=");
        assert_eq!(decoded(b" a\r\n b"), " a   b", "line breaks are spaces, nothing is trimmed");
        assert_eq!(decoded(b" =?ISO-8859-1?B?TfxsbGVy?= <m@x.de>"), "Müller <m@x.de>");
        assert_eq!(text(b" a\r\n b\xe9\0"), " a bé\u{FFFD}", "unfolded");
        assert_eq!(text("grüße".as_bytes()), "grüße");
        assert_eq!(text(b"\xe2\x82"), "\u{e2}\u{82}", "an incomplete sequence, byte by byte");
    }

    #[test]
    fn one_line_text() {
        assert!(matches!(one_line("all on one line"), Cow::Borrowed("all on one line")));
        assert_eq!(one_line("a\r\nb\nc\rd"), "a  b c d");
        assert_eq!(one_line("\r\n* OK [ALERT] injected"), "  * OK [ALERT] injected");
        assert_eq!(one_line("ünï\ncode"), "ünï code");
    }
}
