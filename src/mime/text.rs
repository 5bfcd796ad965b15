//! The text SEARCH looks at, extracted once per message: every header field (`name: value`
//! lines, RFC 2047-decoded) and the body text ([`crate::mime::search_text`]), lower-cased and
//! whitespace-collapsed (the folding rules: `crate::imap::search`'s module docs). The store's
//! full-text index holds exactly this text (`store::search`), and SEARCH evaluates it, so both
//! live here, below both of them.

use std::ops::Range;

/// Decoded, folded search text of one message: every header field (`name: value` lines,
/// RFC 2047-decoded) and the body text ([`crate::mime::search_text`]), lower-cased and
/// whitespace-collapsed once (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchText {
    /// `name: value\n` per header field, folded.
    headers: String,
    /// Per field: ranges of the (ASCII-lower-cased) name and the folded value in `headers`.
    fields: Vec<(Range<usize>, Range<usize>)>,
    /// Folded body text.
    body: String,
}

impl SearchText {
    /// Decode and fold a raw message (the stored bytes). Never panics.
    pub fn from_raw(raw: &[u8]) -> SearchText {
        Self::from_raw_with(raw, &crate::mime::MessageMeta::extract(raw))
    }

    /// [`SearchText::from_raw`] with the metadata already extracted (at insert time).
    pub fn from_raw_with(raw: &[u8], meta: &crate::mime::MessageMeta) -> SearchText {
        let mut headers = String::new();
        let mut fields = Vec::new();
        for (name, value) in super::header::named(raw) {
            let ns = headers.len();
            // Lossy, like the raw path's byte comparison: a non-UTF-8 name matches no query.
            headers.push_str(&String::from_utf8_lossy(name).to_ascii_lowercase());
            let ne = headers.len();
            headers.push_str(": ");
            let vs = headers.len();
            fold_into(&mut headers, &super::header::decoded(value), true);
            let ve = headers.len();
            headers.push('\n');
            fields.push((ns..ne, vs..ve));
        }
        let (_, text) = crate::mime::search_text_with(raw, meta);
        let mut body = String::with_capacity(text.len());
        fold_into(&mut body, &text, true);
        SearchText { headers, fields, body }
    }

    /// The folded body text (what BODY searches).
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The folded header lines (what TEXT searches besides the body).
    pub fn headers(&self) -> &str {
        &self.headers
    }

    /// Approximate heap size, for a cache budget.
    pub fn heap_size(&self) -> usize {
        self.headers.capacity()
            + self.body.capacity()
            + self.fields.capacity() * std::mem::size_of::<(Range<usize>, Range<usize>)>()
    }

    /// The folded values of the fields named `name` (ASCII case-insensitively), in order.
    pub fn field_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| self.headers.get(n.clone()).is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .map(|(_, v)| self.headers.get(v.clone()).unwrap_or_default())
    }
}

/// The parsed addresses of an address field (`MessageMeta::envelope`, extracted at insert) as
/// SEARCH FROM / TO / CC / BCC compare them besides the field's text: comments and whitespace
/// gone (RFC 5322 CFWS: `<user (c)@ (c) example.org>` is `user@example.org`), one
/// `name <mailbox@host>` or `mailbox@host` per address (the name RFC 2047-decoded), `, ` between
/// them, folded like every haystack. Group markers are left out; the `MISSING_DOMAIN` /
/// `MISSING_MAILBOX` placeholders of a broken address stay, as in Dovecot's normalised form.
pub fn address_text(list: &[crate::mime::Address]) -> String {
    let mut out = String::new();
    for a in list {
        let (Some(mailbox), Some(host)) = (&a.mailbox, &a.host) else { continue };
        if mailbox.is_empty() && host.is_empty() {
            continue; // `<>`
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        let mut one = String::new();
        if let Some(name) = a.name.as_deref().filter(|n| !n.is_empty()) {
            one.push_str(&super::header::decoded(name.as_bytes()));
            one.push_str(" <");
            one.push_str(mailbox);
            one.push('@');
            one.push_str(host);
            one.push('>');
        } else {
            one.push_str(mailbox);
            one.push('@');
            one.push_str(host);
        }
        fold_into(&mut out, &one, true);
    }
    out
}

/// See [`SearchQuery::text_filter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFilter {
    /// BODY (the body column only) rather than TEXT (headers and body).
    pub body_only: bool,
    /// The folded string, as it appears in the indexed text.
    pub needle: String,
    /// The index answer is the query's answer.
    pub exact: bool,
}

/// Append `s` lower-cased (per character; final sigma as sigma) with whitespace runs collapsed
/// to one space; `trim` drops leading and trailing whitespace (haystacks), else a run at either
/// end stays one space (needles).
pub(crate) fn fold_into(out: &mut String, s: &str, trim: bool) {
    /// The one space a whitespace run before the next character folds to (none at the start of
    /// a trimmed haystack).
    #[inline]
    fn space_before(out: &mut String, start: usize, trim: bool, pending: &mut bool) {
        if std::mem::take(pending) && (!trim || out.len() > start) {
            out.push(' ');
        }
    }

    let start = out.len();
    let mut pending_space = false;
    let bytes = s.as_bytes();
    let mut i = 0;
    // ASCII runs byte by byte (the common case); other characters through `char`.
    while i < bytes.len() {
        let b = bytes[i];
        let ch = if b < 0x80 {
            if matches!(b, b' ' | b'\t'..=b'\r') {
                i += 1;
                pending_space = true;
                continue;
            }
            space_before(out, start, trim, &mut pending_space);
            // The whole run of printable ASCII at once, lower-cased in place.
            let end = bytes[i..]
                .iter()
                .position(|&c| c >= 0x80 || matches!(c, b' ' | b'\t'..=b'\r'))
                .map_or(bytes.len(), |p| i + p);
            let at = out.len();
            out.push_str(&s[i..end]);
            out[at..].make_ascii_lowercase();
            i = end;
            continue;
        } else {
            let Some(ch) = s[i..].chars().next() else { break };
            i += ch.len_utf8();
            if ch.is_whitespace() {
                pending_space = true;
                continue;
            }
            ch
        };
        space_before(out, start, trim, &mut pending_space);
        if ch == 'ς' {
            out.push('σ');
        } else {
            for l in ch.to_lowercase() {
                out.push(if l == 'ς' { 'σ' } else { l });
            }
        }
    }
    if pending_space && !trim {
        out.push(' ');
    }
}
