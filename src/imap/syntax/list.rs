//! LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819): selection options, several patterns,
//! return options. imap-codec's `ext_list_extended` is unfinished (types only): delete this when
//! it parses `list` with `list-select-opts` and `list-return-opts`.

use super::lex::Cursor;

#[derive(Debug)]
pub struct List {}

pub fn parse(_c: &mut Cursor<'_>) -> Option<List> {
    None
}
