//! Structured header values: Content-Type and friends (RFC 2045, 2183, 2231, 3282) and RFC 5322
//! address lists, parsed leniently from unfolded raw bytes. Nothing is RFC 2047-decoded.

use super::Address;
use super::header::{for_humans, text};

/// RFC 2045 tspecials plus SPACE and CTLs end a MIME token.
fn is_token_byte(c: u8) -> bool {
    c > b' '
        && c != 0x7f
        && !matches!(
            c,
            b'(' | b')' | b'<' | b'>' | b'@' | b',' | b';' | b':' | b'\\' | b'"' | b'/' | b'[' | b']' | b'?' | b'='
        )
}

/// RFC 5322 atext (8-bit bytes accepted, as real mail has them).
fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c >= 0x80 || b"!#$%&'*+-/=?^_`{|}~".contains(&c)
}

pub(crate) struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    /// Text of the last comment skipped (addresses use it as a fallback display name).
    pub last_comment: Option<&'a [u8]>,
}

impl<'a> Lexer<'a> {
    pub fn new(s: &'a [u8]) -> Self {
        Lexer { s, pos: 0, last_comment: None }
    }

    pub fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    pub fn eof(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub fn bump(&mut self) {
        self.pos = (self.pos + 1).min(self.s.len());
    }

    /// Skip whitespace and (nested) comments.
    pub fn skip_cfws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => self.skip_comment(),
                _ => break,
            }
        }
    }

    fn skip_comment(&mut self) {
        let start = self.pos + 1;
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'\\' => self.bump(),
                b'(' => depth += 1,
                b')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        self.last_comment = Some(&self.s[start..self.pos - 1]);
                        return;
                    }
                }
                _ => {}
            }
        }
        self.last_comment = self.s.get(start..);
    }

    /// A MIME token (RFC 2045); None if there is none here.
    pub fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        while self.peek().is_some_and(is_token_byte) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.s[start..self.pos])
    }

    /// A quoted string at `"`, unescaped; an unterminated one runs to the end.
    pub fn quoted(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.bump(); // opening quote
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'"' => return out,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.pos += 1;
                    }
                }
                b'\r' | b'\n' => {}
                c => out.push(c),
            }
        }
        out
    }

    /// An unquoted parameter value. Lenient: anything up to `;`, whitespace or a comment, so
    /// that real-world `boundary=----=_Part_1` or `name=a/b.txt` survive.
    fn loose_value(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(|c| !matches!(c, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'(' | b'"')) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn atom(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        while self.peek().is_some_and(is_atext) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.s[start..self.pos])
    }
}

pub(crate) type Params = Vec<(String, String)>;

/// `type "/" subtype *(";" parameter)`; None when the type is syntactically invalid.
pub(crate) fn content_type(v: &[u8]) -> Option<(String, String, Params)> {
    let mut lx = Lexer::new(v);
    lx.skip_cfws();
    let t = lx.token()?;
    lx.skip_cfws();
    if lx.peek() != Some(b'/') {
        return None;
    }
    lx.bump();
    lx.skip_cfws();
    let st = lx.token()?;
    let params = parameters(&mut lx);
    Some((text(t), text(st), params))
}

/// `disposition-type *(";" parameter)`.
pub(crate) fn disposition(v: &[u8]) -> Option<(String, Params)> {
    let mut lx = Lexer::new(v);
    lx.skip_cfws();
    let t = lx.token()?;
    let params = parameters(&mut lx);
    Some((text(t), params))
}

/// Content-Transfer-Encoding: a single token (comments allowed); None if anything else is there.
pub(crate) fn transfer_encoding(v: &[u8]) -> Option<String> {
    let mut lx = Lexer::new(v);
    lx.skip_cfws();
    let t = lx.token()?;
    lx.skip_cfws();
    lx.eof().then(|| text(t))
}

/// Content-Language: `1#Language-tag`, comments skipped.
pub(crate) fn languages(v: &[u8]) -> Vec<String> {
    let mut lx = Lexer::new(v);
    let mut out = Vec::new();
    lx.skip_cfws();
    while let Some(a) = lx.atom() {
        out.push(text(a));
        lx.skip_cfws();
        if lx.peek() != Some(b',') {
            break;
        }
        lx.bump();
        lx.skip_cfws();
    }
    out
}

struct Piece {
    key: Vec<u8>,
    idx: u32,
    extended: bool,
    value: Vec<u8>,
}

/// Parameters after the type, RFC 2231 continuations merged exactly like Dovecot's
/// `rfc2231_parse`: plain parameters first (in order), then the RFC 2231 ones sorted by name;
/// `k*0*=…; k*1=…` becomes `k*` with the pieces concatenated (a non-extended piece of an
/// extended parameter gets `%` escaped; a non-extended first piece gets a `''` prefix); values
/// stay percent-encoded. A sequence with a missing index is passed through piece by piece.
pub(crate) fn parameters(lx: &mut Lexer<'_>) -> Params {
    let mut plain: Params = Vec::new();
    let mut pieces: Vec<Piece> = Vec::new();
    loop {
        lx.skip_cfws();
        match lx.peek() {
            None => break,
            Some(b';') => lx.bump(),
            Some(_) => {
                // Junk between parameters: skip one byte and resynchronise on the next ';'.
                lx.bump();
                continue;
            }
        }
        lx.skip_cfws();
        let Some(key) = lx.token() else { continue };
        lx.skip_cfws();
        if lx.peek() != Some(b'=') {
            continue;
        }
        lx.bump();
        lx.skip_cfws();
        let value = if lx.peek() == Some(b'"') { lx.quoted() } else { lx.loose_value().to_vec() };
        match split_2231(key) {
            Some((base, idx, extended)) => pieces.push(Piece { key: base.to_vec(), idx, extended, value }),
            None => plain.push((text(key), text(&value))),
        }
    }
    if pieces.is_empty() {
        return plain;
    }
    pieces.sort_by(|a, b| a.key.cmp(&b.key).then(a.idx.cmp(&b.idx)));
    let mut i = 0;
    while i < pieces.len() {
        let mut j = i;
        let mut ok = true;
        let mut have_extended = false;
        let mut next_idx = 0u32;
        while j < pieces.len() && pieces[j].key.eq_ignore_ascii_case(&pieces[i].key) {
            ok &= pieces[j].idx == next_idx;
            have_extended |= pieces[j].extended;
            next_idx = next_idx.saturating_add(1);
            j += 1;
        }
        if !ok {
            for p in &pieces[i..j] {
                let k = format!("{}*{}{}", text(&p.key), p.idx, if p.extended { "*" } else { "" });
                plain.push((k, text(&p.value)));
            }
        } else {
            let mut v = Vec::new();
            if !pieces[i].extended && have_extended {
                v.extend_from_slice(b"''");
            }
            for p in &pieces[i..j] {
                if !p.extended && have_extended {
                    for &c in &p.value {
                        if c == b'%' {
                            v.extend_from_slice(b"%25");
                        } else {
                            v.push(c);
                        }
                    }
                } else {
                    v.extend_from_slice(&p.value);
                }
            }
            let mut k = text(&pieces[i].key);
            if have_extended {
                k.push('*');
            }
            plain.push((k, text(&v)));
        }
        i = j;
    }
    plain
}

/// `name*`, `name*N`, `name*N*` → (name, N, extended); None for a plain key.
fn split_2231(key: &[u8]) -> Option<(&[u8], u32, bool)> {
    let star = key.iter().position(|&c| c == b'*')?;
    let (base, rest) = (&key[..star], &key[star + 1..]);
    if rest.is_empty() {
        return Some((base, 0, true));
    }
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        // `name*x`: Dovecot treats it as a plain parameter.
        return None;
    }
    let idx = rest[..digits].iter().fold(0u32, |n, &d| n.saturating_mul(10).saturating_add(u32::from(d - b'0')));
    match &rest[digits..] {
        [] => Some((base, idx, false)),
        [b'*'] => Some((base, idx, true)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Addresses

#[derive(Debug)]
enum Tok<'a> {
    /// Run of atext and dots (`a.b`, `Q.`); 8-bit bytes included.
    Atom(&'a [u8]),
    Quoted(Vec<u8>),
    /// `[…]` including the brackets.
    Literal(&'a [u8]),
    Comment(&'a [u8]),
    Special(u8),
}

fn tokenize(s: &[u8]) -> Vec<Tok<'_>> {
    let mut lx = Lexer::new(s);
    let mut out = Vec::new();
    loop {
        // Whitespace only; comments become tokens (a trailing comment may be the name).
        while matches!(lx.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            lx.bump();
        }
        let Some(c) = lx.peek() else { break };
        match c {
            b'(' => {
                lx.last_comment = None;
                lx.skip_comment();
                out.push(Tok::Comment(lx.last_comment.unwrap_or_default()));
            }
            b'"' => out.push(Tok::Quoted(lx.quoted())),
            b'[' => {
                let start = lx.pos;
                while lx.peek().is_some_and(|c| c != b']') {
                    lx.bump();
                }
                lx.bump();
                out.push(Tok::Literal(&s[start..lx.pos]));
            }
            b'<' | b'>' | b'@' | b',' | b';' | b':' => {
                lx.bump();
                out.push(Tok::Special(c));
            }
            _ if is_atext(c) || c == b'.' => {
                let start = lx.pos;
                while lx.peek().is_some_and(|c| is_atext(c) || c == b'.') {
                    lx.bump();
                }
                out.push(Tok::Atom(&s[start..lx.pos]));
            }
            _ => lx.bump(), // stray ')', '\\', ']' or a control byte: ignore
        }
    }
    out
}

const MISSING_DOMAIN: &str = "MISSING_DOMAIN";
const MISSING_MAILBOX: &str = "MISSING_MAILBOX";

struct AddrParser<'a> {
    toks: Vec<Tok<'a>>,
    i: usize,
}

impl<'a> AddrParser<'a> {
    fn peek(&self) -> Option<&Tok<'a>> {
        self.toks.get(self.i)
    }

    fn is_special(&self, c: u8) -> bool {
        matches!(self.peek(), Some(Tok::Special(x)) if *x == c)
    }

    /// Words of a phrase / local part, with the last comment seen.
    fn words(&mut self) -> (Vec<Vec<u8>>, Option<&'a [u8]>) {
        let mut words = Vec::new();
        let mut comment = None;
        while let Some(t) = self.peek() {
            match t {
                Tok::Atom(a) => words.push(a.to_vec()),
                Tok::Quoted(q) => words.push(q.clone()),
                Tok::Comment(c) => comment = Some(*c),
                _ => break,
            }
            self.i += 1;
        }
        (words, comment)
    }

    /// Domain after `@`: atoms and literals; comments skipped but remembered in `comment`.
    fn domain(&mut self, comment: &mut Option<&'a [u8]>) -> Vec<u8> {
        let mut d = Vec::new();
        while let Some(t) = self.peek() {
            match t {
                Tok::Atom(a) | Tok::Literal(a) => d.extend_from_slice(a),
                Tok::Comment(c) => *comment = Some(*c),
                _ => break,
            }
            self.i += 1;
        }
        d
    }

    /// Skip to the end of this list element (`,`, `;` or end), remembering comments.
    fn skip_rest(&mut self, comment: &mut Option<&'a [u8]>) {
        while let Some(t) = self.peek() {
            match t {
                Tok::Special(b',' | b';') => break,
                Tok::Comment(c) => *comment = Some(*c),
                _ => {}
            }
            self.i += 1;
        }
    }
}

fn phrase(words: &[Vec<u8>]) -> String {
    for_humans(&text(&words.join(&b' ')))
}

fn mailbox(name: Option<String>, adl: Option<String>, local: Vec<u8>, domain: Vec<u8>) -> Address {
    Address {
        name,
        adl,
        mailbox: Some(if local.is_empty() { MISSING_MAILBOX.to_owned() } else { text(&local) }),
        host: Some(if domain.is_empty() { MISSING_DOMAIN.to_owned() } else { text(&domain) }),
    }
}

/// RFC 5322 address-list → RFC 3501 addresses (groups as start/end markers). Lenient: comments,
/// quoted names, missing angle brackets or domain, junk after an address, empty elements,
/// unterminated groups.
pub(crate) fn address_list(v: &[u8]) -> Vec<Address> {
    let mut p = AddrParser { toks: tokenize(v), i: 0 };
    let mut out = Vec::new();
    let mut in_group = false;
    while p.i < p.toks.len() {
        if p.is_special(b',') {
            p.i += 1;
            continue;
        }
        if p.is_special(b';') {
            if in_group {
                out.push(Address::default());
                in_group = false;
            }
            p.i += 1;
            continue;
        }
        let (words, mut comment) = p.words();
        match p.peek() {
            Some(Tok::Special(b':')) => {
                p.i += 1;
                if !in_group {
                    out.push(Address { mailbox: Some(phrase(&words)), ..Address::default() });
                    in_group = true;
                }
                // A nested group is junk: its name is dropped, its members kept.
            }
            Some(Tok::Special(b'<')) => {
                p.i += 1;
                // Optional obsolete route: "@a,@b:".
                let mut adl = None;
                if p.is_special(b'@') {
                    let save = p.i;
                    let mut route = String::new();
                    while p.is_special(b'@') {
                        p.i += 1;
                        let d = p.domain(&mut None);
                        route.push('@');
                        route.push_str(&text(&d));
                        if p.is_special(b',') {
                            p.i += 1;
                            route.push(',');
                        } else {
                            break;
                        }
                    }
                    if p.is_special(b':') {
                        p.i += 1;
                        adl = Some(route);
                    } else {
                        p.i = save;
                    }
                }
                let (local, c2) = p.words();
                comment = c2.or(comment);
                let domain = if p.is_special(b'@') {
                    p.i += 1;
                    p.domain(&mut comment)
                } else {
                    Vec::new()
                };
                if p.is_special(b'>') {
                    p.i += 1;
                }
                let mut trailing = None;
                p.skip_rest(&mut trailing);
                let name = if words.is_empty() {
                    trailing.or(comment).map(|c| for_humans(&text(c)))
                } else {
                    Some(phrase(&words))
                };
                if local.is_empty() && domain.is_empty() {
                    // "<>": the null address. Keep it visible rather than dropping it.
                    out.push(Address { name, adl, mailbox: Some(String::new()), host: Some(String::new()) });
                } else {
                    out.push(mailbox(name, adl, local.concat(), domain));
                }
            }
            Some(Tok::Special(b'@')) => {
                p.i += 1;
                let mut trailing = None;
                let domain = p.domain(&mut trailing);
                p.skip_rest(&mut trailing);
                let name = trailing.or(comment).map(|c| for_humans(&text(c)));
                out.push(mailbox(name, None, words.concat(), domain));
            }
            _ => {
                if !words.is_empty() {
                    // A bare word with no domain ("undisclosed-recipients", "broken").
                    out.push(mailbox(None, None, words.concat(), Vec::new()));
                }
                // Skip whatever stopped us (stray '>', '@' handled above) up to the separator.
                if !p.is_special(b',') && !p.is_special(b';') && p.i < p.toks.len() {
                    p.i += 1;
                }
            }
        }
    }
    if in_group {
        out.push(Address::default());
    }
    out
}
