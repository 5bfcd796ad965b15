//! `imap::syntax::parse`, the parsers in front of imap-codec for LIST-EXTENDED, ESEARCH /
//! SEARCHRES and MULTIAPPEND: any bytes (a whole command as imap-next hands it over, literals
//! inline) give an answer without panicking; a recognised command's tag is the input's first
//! word; and the same input always gives the same command.

pub fn check(data: &[u8]) {
    let Some((tag, ext)) = popbridge::imap::syntax::parse(data) else { return };
    let t = tag.as_ref().as_bytes();
    assert!(data.starts_with(t) && data.get(t.len()) == Some(&b' '), "the tag is the command's first word");
    let again = popbridge::imap::syntax::parse(data).expect("parsed once, parsed again");
    assert_eq!(format!("{again:?}"), format!("{:?}", (tag, ext)), "the same bytes give the same command");
}
