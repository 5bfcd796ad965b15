//! The few lexical pieces of RFC 3501 §9 the extension parsers need, over a complete command as
//! imap-next hands it over (literals inline, after their `{n}\r\n` announcement).

use imap_next::imap_types::core::Tag;

/// A position in a command's bytes.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// RFC 3501 atom-specials (plus CTLs and non-ASCII), which end an atom.
fn atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b' ' | b'%' | b'*' | b'"' | b'\\' | b']')
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, pos: 0 }
    }
    /// Everything not consumed yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }
    pub fn position(&self) -> usize {
        self.pos
    }
    /// The bytes from `start` (a [`Cursor::position`]) to here.
    pub fn since(&self, start: usize) -> &'a [u8] {
        &self.bytes[start.min(self.pos)..self.pos]
    }
    pub fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
    /// Consumes `b` if it is next.
    pub fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.pos += 1)
    }
    /// Consumes `word` if it is next, ASCII case-insensitively.
    pub fn keyword(&mut self, word: &str) -> Option<()> {
        let end = self.pos.checked_add(word.len())?;
        let got = self.bytes.get(self.pos..end)?;
        got.eq_ignore_ascii_case(word.as_bytes()).then(|| self.pos = end)
    }
    pub fn sp(&mut self) -> Option<()> {
        self.eat(b' ')
    }
    /// The command's end: CRLF and nothing after it.
    pub fn crlf_end(&mut self) -> Option<()> {
        (self.rest() == b"\r\n").then(|| self.pos = self.bytes.len())
    }
    /// The tag (any atom character but `+`).
    pub fn tag(&mut self) -> Option<Tag<'static>> {
        let start = self.pos;
        while self.peek().is_some_and(|b| atom_char(b) && b != b'+') {
            self.pos += 1;
        }
        let t = std::str::from_utf8(self.since(start)).ok()?;
        Tag::try_from(t.to_string()).ok()
    }
    /// One atom (RFC 3501 §9 `atom`).
    pub fn atom(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        while self.peek().is_some_and(atom_char) {
            self.pos += 1;
        }
        (self.pos > start).then(|| self.since(start))
    }
    /// A literal `{n}` / `{n+}` (and `~{n}` when `binary`) and its bytes.
    pub fn literal(&mut self, binary: bool) -> Option<&'a [u8]> {
        let save = self.pos;
        let r = (|| {
            if binary {
                let _ = self.eat(b'~');
            }
            self.eat(b'{')?;
            let start = self.pos;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
            let n: usize = std::str::from_utf8(self.since(start)).ok()?.parse().ok()?;
            let _ = self.eat(b'+');
            self.eat(b'}')?;
            self.eat(b'\r')?;
            self.eat(b'\n')?;
            let end = self.pos.checked_add(n)?;
            let data = self.bytes.get(self.pos..end)?;
            self.pos = end;
            Some(data)
        })();
        if r.is_none() {
            self.pos = save;
        }
        r
    }
    /// A quoted string, unescaped.
    pub fn quoted(&mut self) -> Option<Vec<u8>> {
        let save = self.pos;
        let r = (|| {
            self.eat(b'"')?;
            let mut out = Vec::new();
            loop {
                match self.peek()? {
                    b'"' => {
                        self.pos += 1;
                        return Some(out);
                    }
                    b'\\' => {
                        self.pos += 1;
                        let c = self.peek()?;
                        if c != b'"' && c != b'\\' {
                            return None;
                        }
                        out.push(c);
                        self.pos += 1;
                    }
                    b'\r' | b'\n' => return None,
                    c => {
                        out.push(c);
                        self.pos += 1;
                    }
                }
            }
        })();
        if r.is_none() {
            self.pos = save;
        }
        r
    }
    /// An astring: atom (with `]` allowed, RFC 3501 `ASTRING-CHAR`), quoted string or literal.
    pub fn astring(&mut self) -> Option<Vec<u8>> {
        match self.peek()? {
            b'"' => self.quoted(),
            b'{' => self.literal(false).map(<[u8]>::to_vec),
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|b| atom_char(b) || b == b']') {
                    self.pos += 1;
                }
                (self.pos > start).then(|| self.since(start).to_vec())
            }
        }
    }
    /// A parenthesised list, balanced, quoted strings and literals skipped whole: its bytes
    /// without the outer parentheses.
    pub fn parenthesised(&mut self) -> Option<&'a [u8]> {
        let save = self.pos;
        let r = (|| {
            self.eat(b'(')?;
            let start = self.pos;
            let mut depth = 1usize;
            loop {
                match self.peek()? {
                    b'(' => {
                        depth += 1;
                        self.pos += 1;
                    }
                    b')' => {
                        depth -= 1;
                        if depth == 0 {
                            let inner = &self.bytes[start..self.pos];
                            self.pos += 1;
                            return Some(inner);
                        }
                        self.pos += 1;
                    }
                    b'"' => {
                        self.quoted()?;
                    }
                    b'{' | b'~' => {
                        if self.literal(true).is_none() {
                            self.pos += 1;
                        }
                    }
                    b'\r' | b'\n' => return None,
                    _ => self.pos += 1,
                }
            }
        })();
        if r.is_none() {
            self.pos = save;
        }
        r
    }
}

// ----- for SEARCHRES (`syntax::saved`) -----

impl<'a> Cursor<'a> {
    /// The bytes up to (not including) the first one for which `stop` holds, or to the end.
    pub fn until(&mut self, stop: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(|b| !stop(b)) {
            self.pos += 1;
        }
        self.since(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces() {
        let mut c = Cursor::new(b"a1 LIST (SUBSCRIBED \"x)\") \"\" {3}\r\na b RETURN\r\n");
        assert_eq!(c.tag().map(|t| t.as_ref().to_string()), Some("a1".into()));
        c.sp().unwrap();
        assert_eq!(c.atom(), Some(&b"LIST"[..]));
        c.sp().unwrap();
        assert_eq!(c.parenthesised(), Some(&b"SUBSCRIBED \"x)\""[..]));
        c.sp().unwrap();
        assert_eq!(c.astring(), Some(Vec::new()));
        c.sp().unwrap();
        assert_eq!(c.astring(), Some(b"a b".to_vec()));
        c.sp().unwrap();
        assert!(c.keyword("return").is_some());
        assert!(c.crlf_end().is_some());
    }

    #[test]
    fn truncated_and_bad_input_is_none_and_consumes_nothing() {
        for raw in [&b"{5}\r\nab"[..], b"\"ab", b"(a (b)", b"{x}\r\n", b"\"a\\b\""] {
            let mut c = Cursor::new(raw);
            assert!(c.astring().is_none() && c.parenthesised().is_none(), "{raw:?}");
            assert_eq!(c.position(), 0);
        }
    }
}
