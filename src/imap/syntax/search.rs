//! SEARCH with result options (ESEARCH, RFC 4731) and the saved result (SEARCHRES, RFC 5182).
//! Delete when imap-codec parses `search-return-opts`.

use super::lex::Cursor;

#[derive(Debug)]
pub struct Search {}

pub fn parse(_c: &mut Cursor<'_>, _uid: bool) -> Option<Search> {
    None
}

impl Search {
    /// UID SEARCH (its results are UIDs, and EXPUNGE responses may accompany it).
    pub fn uid(&self) -> bool {
        false
    }
}
