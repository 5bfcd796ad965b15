//! `$`, the saved search result (SEARCHRES, RFC 5182 §2.2: `sequence-set =/ seq-last-command`),
//! which imap-codec does not parse: it is rewritten into plain RFC 3501 syntax before the
//! command is decoded by imap-codec, with the saved set the session holds (UIDs, so that an
//! expunged message simply drops out and a new one never enters).
//! - In SEARCH criteria ([`in_criteria`]): `$` and `UID $` become `(UID <set>)`, or `(NOT ALL)`
//!   when the saved result is empty.
//! - As the set of FETCH, STORE, COPY, MOVE (UID or not) and UID EXPUNGE ([`parse`]): the
//!   session supplies the set text (UIDs for the UID forms, current sequence numbers otherwise)
//!   through [`WithSaved::with_set`]; an empty saved result is no message at all, which no
//!   sequence set can say, so the session answers that case itself ([`WithSaved`] tells which
//!   command it was).
//!
//! Delete when imap-codec parses `$` (it has no SEARCHRES feature as of 2.0.0-alpha.10).

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::command::CommandBody;

use super::lex::Cursor;

/// The commands `$` may stand as the sequence set of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Fetch,
    Store,
    Copy,
    Move,
    /// UID EXPUNGE (UIDPLUS).
    Expunge,
}

/// A FETCH / STORE / COPY / MOVE / UID EXPUNGE whose sequence set is `$`.
#[derive(Debug)]
pub struct WithSaved {
    pub verb: Verb,
    pub uid: bool,
    /// The command up to the `$` (tag, `UID`, name, SP) and from just after it.
    before: Vec<u8>,
    after: Vec<u8>,
}

/// `raw` is the whole command; `c` stands after the command name.
pub fn parse(raw: &[u8], c: &mut Cursor<'_>, uid: bool, name: &[u8]) -> Option<WithSaved> {
    let verb = match name {
        b"FETCH" => Verb::Fetch,
        b"STORE" => Verb::Store,
        b"COPY" => Verb::Copy,
        b"MOVE" => Verb::Move,
        b"EXPUNGE" if uid => Verb::Expunge,
        _ => return None,
    };
    c.sp()?;
    let at = c.position();
    c.eat(b'$')?;
    if !matches!(c.peek(), Some(b' ' | b'\r')) {
        return None;
    }
    let w = WithSaved { verb, uid, before: raw.get(..at)?.to_vec(), after: c.rest().to_vec() };
    // The rest must be valid with some set in place of `$`: a syntax error is BAD now.
    w.with_set("1")?;
    Some(w)
}

impl WithSaved {
    /// The command with `set` (a non-empty sequence-set text) in place of `$`, as imap-codec
    /// decodes it. `None`: not a valid command.
    pub fn with_set(&self, set: &str) -> Option<CommandBody<'static>> {
        let mut line = Vec::with_capacity(self.before.len() + set.len() + self.after.len());
        line.extend_from_slice(&self.before);
        line.extend_from_slice(set.as_bytes());
        line.extend_from_slice(&self.after);
        let (rest, cmd) = CommandCodec::default().decode(&line).ok()?;
        rest.is_empty().then(|| cmd.body.into_static())
    }
}

/// `1:3,5` for UID ranges.
pub fn set_text(ranges: &[(u32, u32)]) -> String {
    let mut out = String::new();
    for &(a, b) in ranges {
        if !out.is_empty() {
            out.push(',');
        }
        if a == b {
            out.push_str(&a.to_string());
        } else {
            out.push_str(&format!("{a}:{b}"));
        }
    }
    out
}

/// Search keys that take this many arguments (RFC 3501 §6.4.4, RFC 5032); `HEADER` takes two,
/// `MODSEQ` one or three (RFC 7162: an optional entry name and type first); NOT, OR and the
/// rest take none (their operands are keys).
fn arguments(key: &[u8]) -> usize {
    match key.to_ascii_uppercase().as_slice() {
        b"BCC" | b"BEFORE" | b"BODY" | b"CC" | b"FROM" | b"KEYWORD" | b"LARGER" | b"ON" | b"SENTBEFORE" | b"SENTON"
        | b"SENTSINCE" | b"SINCE" | b"SMALLER" | b"SUBJECT" | b"TEXT" | b"TO" | b"UNKEYWORD" | b"OLDER"
        | b"YOUNGER" | b"CHARSET" => 1,
        b"HEADER" => 2,
        _ => 0,
    }
}

/// One token of a search program: `(`, `)`, a quoted string or literal (skipped whole), or a
/// word (anything up to SP, a parenthesis or CR). `None` at CRLF or on a malformed string.
enum Token<'a> {
    Open,
    Close,
    String,
    Word(&'a [u8]),
}

fn token<'a>(c: &mut Cursor<'a>) -> Option<Token<'a>> {
    while c.sp().is_some() {}
    match c.peek()? {
        b'\r' => None,
        b'(' => {
            c.eat(b'(')?;
            Some(Token::Open)
        }
        b')' => {
            c.eat(b')')?;
            Some(Token::Close)
        }
        b'"' => c.quoted().map(|_| Token::String),
        b'{' => c.literal(false).map(|_| Token::String),
        _ => {
            let w = c.until(|b| matches!(b, b' ' | b'(' | b')' | b'\r' | b'\n'));
            // A bare LF (or any byte no token starts with) ends the scan: imap-codec refuses it.
            (!w.is_empty()).then_some(Token::Word(w))
        }
    }
}

/// The search program with every `$` in a search-key position (alone, or after `UID`) replaced
/// by `(UID <saved>)`, or `(NOT ALL)` when `saved` is empty. Strings, literals and the arguments
/// of keys that take them are copied as they are (`KEYWORD $` is the keyword `$`). `None`: a
/// malformed string or literal (imap-codec would refuse it too).
pub fn in_criteria(program: &[u8], saved: &[(u32, u32)]) -> Option<Vec<u8>> {
    let with: Vec<u8> =
        if saved.is_empty() { b"(NOT ALL)".to_vec() } else { format!("(UID {})", set_text(saved)).into_bytes() };
    let mut out = Vec::with_capacity(program.len() + with.len());
    let mut c = Cursor::new(program);
    let mut copied = 0;
    // Arguments still to skip for the key just read; MODSEQ decides on its next token.
    let mut skip = 0usize;
    let mut modseq = false;
    let mut after_uid: Option<usize> = None;
    loop {
        let start = c.position();
        let Some(t) = token(&mut c) else { break };
        let t_start = start + c.since(start).iter().take_while(|b| **b == b' ').count();
        if modseq {
            modseq = false;
            // `MODSEQ "entry" type value` or `MODSEQ value`.
            if matches!(t, Token::String) {
                skip = 2;
            }
            continue;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        match t {
            Token::Word(w) if w == b"$" => {
                // `UID $` → the replacement stands for both words.
                let from = after_uid.take().unwrap_or(t_start);
                out.extend_from_slice(program.get(copied..from)?);
                out.extend_from_slice(&with);
                copied = c.position();
            }
            Token::Word(w) if w.eq_ignore_ascii_case(b"UID") => after_uid = Some(t_start),
            Token::Word(w) if w.eq_ignore_ascii_case(b"MODSEQ") => {
                after_uid = None;
                modseq = true;
            }
            Token::Word(w) => {
                // After `UID` comes its set: anything but `$` is copied as it is.
                after_uid = None;
                skip = arguments(w);
            }
            _ => after_uid = None,
        }
    }
    out.extend_from_slice(program.get(copied..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(p: &str, saved: &[(u32, u32)]) -> String {
        String::from_utf8(in_criteria(p.as_bytes(), saved).unwrap()).unwrap()
    }

    #[test]
    fn dollar_in_key_positions_only() {
        let s = [(1, 3), (7, 7)];
        assert_eq!(rewrite("$\r\n", &s), "(UID 1:3,7)\r\n");
        assert_eq!(rewrite("$\r\n", &[]), "(NOT ALL)\r\n");
        assert_eq!(rewrite("uid $ unseen\r\n", &s), "(UID 1:3,7) unseen\r\n");
        assert_eq!(rewrite("OR $ (NOT $) UID 4:*\r\n", &s), "OR (UID 1:3,7) (NOT (UID 1:3,7)) UID 4:*\r\n");
        assert_eq!(
            rewrite("KEYWORD $ HEADER $ $ SUBJECT \"$\" $\r\n", &[]),
            "KEYWORD $ HEADER $ $ SUBJECT \"$\" (NOT ALL)\r\n"
        );
        assert_eq!(rewrite("TEXT {1}\r\n$ $\r\n", &[]), "TEXT {1}\r\n$ (NOT ALL)\r\n");
        assert_eq!(rewrite("CHARSET UTF-8 $\r\n", &[]), "CHARSET UTF-8 (NOT ALL)\r\n");
        assert_eq!(
            rewrite("MODSEQ \"/flags/\\\\draft\" all 5 $ MODSEQ 7 $\r\n", &[]),
            "MODSEQ \"/flags/\\\\draft\" all 5 (NOT ALL) MODSEQ 7 (NOT ALL)\r\n"
        );
        assert_eq!(rewrite("$Label1 1:*\r\n", &[]), "$Label1 1:*\r\n");
    }

    #[test]
    fn commands_with_dollar() {
        let raw = b"a1 UID FETCH $ (FLAGS)\r\n";
        let mut c = Cursor::new(raw);
        c.tag().unwrap();
        c.sp().unwrap();
        c.atom().unwrap();
        c.sp().unwrap();
        c.atom().unwrap();
        let w = parse(raw, &mut c, true, b"FETCH").unwrap();
        assert_eq!((w.verb, w.uid), (Verb::Fetch, true));
        assert!(matches!(w.with_set("2:4,9"), Some(CommandBody::Fetch { uid: true, .. })));
        assert!(w.with_set("").is_none());
        assert_eq!(set_text(&[(1, 1), (3, 9)]), "1,3:9");
    }
}
