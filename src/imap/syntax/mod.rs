//! Commands imap-codec 2.0.0-alpha.10 has no parser for, parsed here from the bytes it refused
//! (imap-next hands back a complete command — line and literals — as `MalformedMessage`).
//!
//! Each parser recognises exactly one extension's syntax and produces a typed command; where the
//! rest of the command is plain RFC 3501 syntax, it hands that part back to imap-codec (strip the
//! extension's part, decode the remainder) so there is one parser for everything else.
//!
//! When the codec catches up, delete the piece here (each module says which feature replaces it).
//! Fuzzed: `tests/fuzz` feeds arbitrary bytes to [`parse`].

pub mod append;
pub mod lex;
pub mod list;
pub mod saved;
pub mod search;

use imap_next::imap_types::core::Tag;

/// Largest APPEND literal and command accepted (imap-next refuses bigger ones with BAD itself).
pub const MAX_LITERAL: u32 = 64 * 1024 * 1024;

/// A command only this module parses.
#[derive(Debug)]
pub enum Extended {
    /// LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819).
    List(list::List),
    /// SEARCH / UID SEARCH with `RETURN (…)` (ESEARCH, RFC 4731), and SEARCHRES (RFC 5182).
    Search(search::Search),
    /// APPEND of several messages at once (MULTIAPPEND, RFC 3502).
    Append(append::MultiAppend),
    /// FETCH, STORE, COPY, MOVE or UID EXPUNGE of `$`, the saved search result (RFC 5182).
    Saved(saved::WithSaved),
}

/// A complete command imap-codec refused, if one of the parsers here recognises it: its tag and
/// the typed command. `None`: really a syntax error (the caller answers BAD).
pub fn parse(raw: &[u8]) -> Option<(Tag<'static>, Extended)> {
    let mut c = lex::Cursor::new(raw);
    let tag = c.tag()?;
    c.sp()?;
    let first = c.atom()?.to_ascii_uppercase();
    let (uid, name) = if first == b"UID" {
        c.sp()?;
        (true, c.atom()?.to_ascii_uppercase())
    } else {
        (false, first)
    };
    let ext = match (uid, name.as_slice()) {
        (false, b"LIST") => Extended::List(list::parse(&mut c)?),
        (_, b"SEARCH") => Extended::Search(search::parse(&mut c, uid)?),
        (false, b"APPEND") => Extended::Append(append::parse(&mut c)?),
        (_, b"FETCH" | b"STORE" | b"COPY" | b"MOVE" | b"EXPUNGE") => {
            Extended::Saved(saved::parse(raw, &mut c, uid, &name)?)
        }
        _ => return None,
    };
    Some((tag, ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_no_parser_knows_is_none() {
        for raw in [&b""[..], b"a1", b"a1 NOOP\r\n", b"a1 UID LIST\r\n", b"* LIST\r\n", b"a1 FROB x\r\n"] {
            assert!(parse(raw).is_none(), "{:?}", String::from_utf8_lossy(raw));
        }
    }
}
