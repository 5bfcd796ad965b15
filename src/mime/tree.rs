//! The single-pass MIME walker behind `MessageMeta::extract`.
//!
//! Boundary handling follows Dovecot's message-parser: a stack of active boundaries; a line that
//! starts with `--` + any active boundary (prefix match, innermost first) ends the current part,
//! and every part nested deeper than the boundary's multipart; the line break before the
//! boundary line belongs to it; `--boundary--` closes the multipart, whose epilogue then runs to
//! the next outer boundary or the end. Each byte is scanned about once (memmem for "\n--").

use super::header::{self, NamedField, name_is, text, value_string};
use super::{Envelope, MAX_DEPTH, MAX_PARTS, MessageMeta, Part, date, rfc822};
use memchr::memmem;

pub(crate) fn extract(raw: &[u8]) -> MessageMeta {
    // Offsets are u32: a message is far below 4 GiB (the store caps sizes long before that).
    let raw = &raw[..raw.len().min(u32::MAX as usize)];
    let mut p = Parser { raw, bounds: Vec::new(), parts: 0, finder: memmem::Finder::new(b"\n--") };
    let (part, _, fields) = p.entity(0, 0, Ctx::Message);
    let envelope = envelope(raw, &fields);
    let date = envelope.date.as_deref().and_then(date::parse);
    let received = fields.iter().find(|f| name_is(raw, f, "Received")).and_then(|f| {
        let v = &raw[f.value.clone()];
        let semi = memchr::memrchr(b';', v)?;
        date::parse(&text(&v[semi + 1..]))
    });
    let message_id = envelope.message_id.as_deref().and_then(strip_id);
    MessageMeta { header_len: part.body_start, size: raw.len() as u32, date, received, message_id, envelope, part }
}

fn strip_id(s: &str) -> Option<String> {
    let s = s.trim();
    let inner = match (s.find('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    let inner = inner.trim();
    (!inner.is_empty()).then(|| inner.to_owned())
}

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    /// A message: the top level, or the body of a message/rfc822 part.
    Message,
    /// A part of a multipart (`digest`: default type message/rfc822).
    Child { digest: bool },
}

#[derive(Clone, Copy, Debug)]
struct Hit {
    /// Index of the matched boundary in the stack.
    idx: usize,
    /// Offset of the `--` starting the boundary line.
    line: usize,
    /// Offset after the boundary line's LF (or the end of input).
    next: usize,
    close: bool,
    has_lf: bool,
}

struct Parser<'a> {
    raw: &'a [u8],
    bounds: Vec<Vec<u8>>,
    parts: usize,
    finder: memmem::Finder<'static>,
}

enum Kind {
    Leaf,
    Multipart { boundary: Option<Vec<u8>>, digest: bool },
    Message,
}

impl Parser<'_> {
    fn match_at(&self, line: usize) -> Option<Hit> {
        let rest = self.raw.get(line..)?;
        let after = rest.strip_prefix(b"--")?;
        for (idx, b) in self.bounds.iter().enumerate().rev() {
            if let Some(tail) = after.strip_prefix(b.as_slice()) {
                let (next, has_lf) = match memchr::memchr(b'\n', rest) {
                    Some(i) => (line + i + 1, true),
                    None => (self.raw.len(), false),
                };
                return Some(Hit { idx, line, next, close: tail.starts_with(b"--"), has_lf });
            }
        }
        None
    }

    /// The next boundary line at or after `from` (a line start).
    fn find_hit(&self, from: usize) -> Option<Hit> {
        if self.bounds.is_empty() {
            return None;
        }
        if let Some(h) = self.match_at(from) {
            return Some(h);
        }
        let mut p = from;
        while let Some(off) = self.finder.find(self.raw.get(p..)?) {
            let line = p + off + 1;
            if let Some(h) = self.match_at(line) {
                return Some(h);
            }
            p = line;
        }
        None
    }

    /// End of the content before boundary line `h`, in a region starting at `floor`: the line
    /// break before the boundary belongs to the boundary (unless it is the region's first line).
    fn end_before(&self, h: &Hit, floor: usize) -> usize {
        let mut e = h.line;
        if e > floor && self.raw[e - 1] == b'\n' {
            e -= 1;
            if e > floor && self.raw[e - 1] == b'\r' {
                e -= 1;
            }
        }
        e
    }

    fn count_lines(&self, p: &Part) -> u32 {
        memchr::memchr_iter(b'\n', &self.raw[p.body_range()]).count() as u32
    }

    /// A synthetic text/plain part over `start..end` with an empty header (see the module docs).
    fn synthetic(&mut self, start: usize, end: usize) -> Part {
        self.parts += 1;
        let mut p = Part {
            header_start: start as u32,
            body_start: start as u32,
            end: end as u32,
            media_type: "text".into(),
            subtype: "plain".into(),
            params: vec![("charset".into(), "us-ascii".into())],
            id: None,
            description: None,
            encoding: "7bit".into(),
            size: end.saturating_sub(start) as u32,
            lines: 0,
            md5: None,
            disposition: None,
            language: Vec::new(),
            location: None,
            children: Vec::new(),
            message: None,
        };
        p.lines = self.count_lines(&p);
        p
    }

    /// Parse one entity (header + body) starting at `start`. Returns the part, the boundary hit
    /// that ended it (for the enclosing multipart), and its header fields.
    fn entity(&mut self, start: usize, depth: usize, ctx: Ctx) -> (Part, Option<Hit>, Vec<NamedField>) {
        self.parts += 1;
        let mut header_hit = None;
        let scan = header::scan(self.raw, start, |pos| {
            header_hit = self.match_at(pos);
            header_hit.is_some()
        });
        let mut body_start = scan.body_start;
        if let (None, Some(blank)) = (header_hit, scan.blank_line) {
            // A boundary right after the blank line: that line break is the boundary's (RFC 2046
            // delimiter = CRLF "--" boundary), so the header ends before it and the body is empty
            // (Dovecot agrees).
            if let Some(h) = self.match_at(body_start) {
                header_hit = Some(h);
                body_start = blank;
            }
        }
        let (mut part, kind) = mime_info(self.raw, &scan.fields, ctx);
        part.header_start = start as u32;
        part.body_start = body_start as u32;
        part.end = body_start as u32;
        let can_descend = depth < MAX_DEPTH && self.parts < MAX_PARTS;

        let hit = if header_hit.is_some() {
            // The header ran into a boundary: the body is empty.
            match kind {
                Kind::Multipart { .. } => part.children.push(self.synthetic(body_start, body_start)),
                Kind::Message => {
                    let inner = self.synthetic(body_start, body_start);
                    part.message = Some(Box::new((Envelope::default(), inner)));
                }
                Kind::Leaf => {}
            }
            header_hit
        } else {
            match kind {
                Kind::Multipart { boundary: Some(b), digest } if can_descend => {
                    self.multipart(&mut part, b, depth, digest)
                }
                Kind::Message if can_descend => {
                    let (inner, hit, fields) = self.entity(body_start, depth + 1, Ctx::Message);
                    part.end = inner.end;
                    part.message = Some(Box::new((envelope(self.raw, &fields), inner)));
                    hit
                }
                kind => {
                    let hit = self.find_hit(body_start);
                    let end = hit.as_ref().map_or(self.raw.len(), |h| self.end_before(h, body_start));
                    part.end = end as u32;
                    match kind {
                        Kind::Multipart { .. } => part.children.push(self.synthetic(body_start, end)),
                        Kind::Message => {
                            let inner = self.synthetic(body_start, end);
                            part.message = Some(Box::new((Envelope::default(), inner)));
                        }
                        Kind::Leaf => {}
                    }
                    hit
                }
            }
        };
        part.size = part.end.saturating_sub(part.body_start);
        if part.is_text() || part.message.is_some() {
            part.lines = self.count_lines(&part);
        }
        (part, hit, scan.fields)
    }

    /// The body of a multipart with `boundary`: preamble, children, epilogue. Sets `part.end`
    /// and `part.children` (never empty) and returns the outer boundary hit that ended it.
    fn multipart(&mut self, part: &mut Part, boundary: Vec<u8>, depth: usize, digest: bool) -> Option<Hit> {
        let body_start = part.body_start as usize;
        self.bounds.push(boundary);
        let my = self.bounds.len() - 1;
        let mut preamble_end = None;
        let mut hit = self.find_hit(body_start);
        let (end, ret) = loop {
            match hit {
                None => {
                    self.bounds.truncate(my);
                    break (self.raw.len(), None);
                }
                Some(h) if h.idx == my => {
                    if preamble_end.is_none() {
                        preamble_end = Some(self.end_before(&h, body_start));
                    }
                    if h.close || !h.has_lf || self.parts >= MAX_PARTS {
                        // Close delimiter (a delimiter cut off by the end of input, or one past
                        // the part budget, counts as one): the epilogue runs to the next outer
                        // boundary or the end.
                        self.bounds.truncate(my);
                        let outer = self.find_hit(h.next);
                        let end = outer.as_ref().map_or(self.raw.len(), |o| self.end_before(o, h.next));
                        break (end, outer);
                    }
                    let (child, child_hit, _) = self.entity(h.next, depth + 1, Ctx::Child { digest });
                    part.children.push(child);
                    hit = child_hit;
                }
                Some(h) => {
                    // An outer boundary: this multipart (and anything inside) ends here.
                    self.bounds.truncate(h.idx + 1);
                    let end = match part.children.last() {
                        Some(c) => c.end as usize,
                        None => self.end_before(&h, body_start),
                    };
                    break (end, Some(h));
                }
            }
        };
        part.end = end as u32;
        if part.children.is_empty() {
            let pe = preamble_end.unwrap_or(end);
            part.children.push(self.synthetic(body_start, pe));
        }
        ret
    }
}

/// Content-* headers of one entity → a Part (offsets unset) and how to parse its body.
fn mime_info(raw: &[u8], fields: &[NamedField], ctx: Ctx) -> (Part, Kind) {
    let mut part = Part {
        header_start: 0,
        body_start: 0,
        end: 0,
        media_type: String::new(),
        subtype: String::new(),
        params: Vec::new(),
        id: None,
        description: None,
        encoding: String::new(),
        size: 0,
        lines: 0,
        md5: None,
        disposition: None,
        language: Vec::new(),
        location: None,
        children: Vec::new(),
        message: None,
    };
    // RFC 2045 §4 / Dovecot: a message's Content-* headers count only if it declares MIME
    // (MIME-Version) or at least has a Content-Type; parts of a multipart always do.
    let is_mime = matches!(ctx, Ctx::Child { .. })
        || fields.iter().any(|f| name_is(raw, f, "MIME-Version") || name_is(raw, f, "Content-Type"));
    let mut ctype = None;
    if is_mime {
        // First occurrence of each Content-* header wins (Dovecot).
        let (mut seen_ct, mut seen_cte, mut seen_disp, mut seen_lang) = (false, false, false, false);
        for f in fields {
            let name = &raw[f.name.clone()];
            if name.len() < 8 || !name[..8].eq_ignore_ascii_case(b"content-") {
                continue;
            }
            let v = &raw[f.value.clone()];
            match name[8..].to_ascii_lowercase().as_slice() {
                b"type" if !seen_ct => {
                    seen_ct = true;
                    ctype = rfc822::content_type(v);
                }
                b"transfer-encoding" if !seen_cte => {
                    seen_cte = true;
                    if let Some(e) = rfc822::transfer_encoding(v) {
                        part.encoding = e;
                    }
                }
                b"id" if part.id.is_none() => part.id = Some(value_string(raw, f)),
                b"description" if part.description.is_none() => part.description = Some(value_string(raw, f)),
                b"md5" if part.md5.is_none() => part.md5 = Some(value_string(raw, f)),
                b"location" if part.location.is_none() => part.location = Some(value_string(raw, f)),
                b"disposition" if !seen_disp => {
                    seen_disp = true;
                    part.disposition = rfc822::disposition(v);
                }
                b"language" if !seen_lang => {
                    seen_lang = true;
                    part.language = rfc822::languages(v);
                }
                _ => {}
            }
        }
    }
    if part.encoding.is_empty() {
        part.encoding = "7bit".into();
    }
    let digest_child = ctx == Ctx::Child { digest: true };
    let (t, st, params) = ctype.unwrap_or_else(|| {
        if digest_child {
            ("message".into(), "rfc822".into(), Vec::new())
        } else {
            ("text".into(), "plain".into(), Vec::new())
        }
    });
    part.media_type = t;
    part.subtype = st;
    part.params = params;
    let kind = if part.media_type.eq_ignore_ascii_case("multipart") {
        let boundary = part
            .params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| v.as_bytes().to_vec())
            .filter(|b| !b.is_empty());
        Kind::Multipart { boundary, digest: part.subtype.eq_ignore_ascii_case("digest") }
    } else if part.media_type.eq_ignore_ascii_case("message") && part.subtype.eq_ignore_ascii_case("rfc822") {
        Kind::Message
    } else {
        if part.is_text() && !part.params.iter().any(|(k, _)| k.eq_ignore_ascii_case("charset")) {
            part.params.push(("charset".into(), "us-ascii".into()));
        }
        Kind::Leaf
    };
    (part, kind)
}

/// The ENVELOPE of a message from its header fields (last occurrence of each wins, as in Dovecot).
pub(crate) fn envelope(raw: &[u8], fields: &[NamedField]) -> Envelope {
    let mut env = Envelope::default();
    for f in fields {
        let name = &raw[f.name.clone()];
        let v = &raw[f.value.clone()];
        let addrs = || rfc822::address_list(v);
        match name.to_ascii_lowercase().as_slice() {
            b"date" => env.date = Some(value_string(raw, f)),
            b"subject" => env.subject = Some(header::for_humans(&text(v))),
            b"in-reply-to" => env.in_reply_to = Some(value_string(raw, f)),
            b"message-id" => env.message_id = Some(value_string(raw, f)),
            b"from" => env.from = addrs(),
            b"sender" => env.sender = addrs(),
            b"reply-to" => env.reply_to = addrs(),
            b"to" => env.to = addrs(),
            b"cc" => env.cc = addrs(),
            b"bcc" => env.bcc = addrs(),
            _ => {}
        }
    }
    if env.sender.is_empty() {
        env.sender = env.from.clone();
    }
    if env.reply_to.is_empty() {
        env.reply_to = env.from.clone();
    }
    env
}
