//! APPEND of several messages in one command (MULTIAPPEND, RFC 3502). Delete when imap-codec
//! parses more than one `append-message`.

use super::lex::Cursor;

#[derive(Debug)]
pub struct MultiAppend {}

pub fn parse(_c: &mut Cursor<'_>) -> Option<MultiAppend> {
    None
}
