//! LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819): selection options, several patterns,
//! return options. imap-codec's `ext_list_extended` is unfinished (types only): delete this when
//! it parses `list` with `list-select-opts` and `list-return-opts`.
//!
//! ```text
//! list             = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]
//! list-select-opts = "(" [option *(SP option)] ")"        ; SUBSCRIBED REMOTE RECURSIVEMATCH SPECIAL-USE
//! mbox-or-pat      = list-mailbox / "(" list-mailbox *(SP list-mailbox) ")"
//! list-return-opts = "RETURN" SP "(" [return-option *(SP return-option)] ")"
//! return-option    = "SUBSCRIBED" / "CHILDREN" / "SPECIAL-USE" / "STATUS" SP "(" status-att-list ")"
//! ```
//!
//! An option we do not know, or RECURSIVEMATCH without a base option to recurse on (RFC 5258 §3.1),
//! is a syntax error: the caller answers BAD. The STATUS items go to imap-codec (as the items of a
//! rebuilt `STATUS` command), so STATUS and LIST-STATUS accept exactly the same items.

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_next::imap_types::command::CommandBody;
use imap_next::imap_types::status::StatusDataItemName;

use super::lex::Cursor;

/// Which mailboxes to list (RFC 5258 §3.1, RFC 6154 §3).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Selection {
    /// SUBSCRIBED: subscribed names only.
    pub subscribed: bool,
    /// REMOTE: remote mailboxes too (there are none here: accepted, no effect).
    pub remote: bool,
    /// RECURSIVEMATCH: also the parents of names that meet the criteria, with CHILDINFO.
    pub recursive_match: bool,
    /// SPECIAL-USE: only mailboxes with a special use (RFC 6154 §3).
    pub special_use: bool,
}

/// What to say about each mailbox listed (RFC 5258 §3.2, RFC 6154 §2, RFC 5819).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Return {
    pub subscribed: bool,
    pub children: bool,
    pub special_use: bool,
    /// STATUS (…): a `* STATUS` after each selectable mailbox's `* LIST` (LIST-STATUS).
    pub status: Option<Vec<StatusDataItemName>>,
}

/// A LIST with selection options, return options or several patterns.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct List {
    pub selection: Selection,
    /// The reference name, as sent (modified UTF-7 or UTF-8; not decoded yet).
    pub reference: Vec<u8>,
    /// One or more patterns, as sent.
    pub patterns: Vec<Vec<u8>>,
    pub returns: Return,
}

/// RFC 3501 `list-char`: an atom character, a wildcard or `]`.
fn list_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'"' | b'\\')
}

/// `list-mailbox`: `1*list-char` or a string.
fn list_mailbox(c: &mut Cursor<'_>) -> Option<Vec<u8>> {
    match c.peek()? {
        b'"' => c.quoted(),
        b'{' => c.literal(false).map(<[u8]>::to_vec),
        _ => {
            let start = c.position();
            while let Some(b) = c.peek().filter(|b| list_char(*b)) {
                c.eat(b)?;
            }
            (c.position() > start).then(|| c.since(start).to_vec())
        }
    }
}

/// The words of a parenthesised option list (`(A B)`), upper-cased; `None` unless every item is an atom.
fn words(inner: &[u8]) -> Option<Vec<Vec<u8>>> {
    if inner.is_empty() {
        return Some(Vec::new());
    }
    let mut c = Cursor::new(inner);
    let mut out = Vec::new();
    loop {
        out.push(c.atom()?.to_ascii_uppercase());
        if c.rest().is_empty() {
            return Some(out);
        }
        c.sp()?;
    }
}

fn selection(inner: &[u8]) -> Option<Selection> {
    let mut s = Selection::default();
    for w in words(inner)? {
        match w.as_slice() {
            b"SUBSCRIBED" => s.subscribed = true,
            b"REMOTE" => s.remote = true,
            b"RECURSIVEMATCH" => s.recursive_match = true,
            b"SPECIAL-USE" => s.special_use = true,
            _ => return None,
        }
    }
    // RFC 5258 §3.1: RECURSIVEMATCH alone (or with REMOTE only) MUST get BAD.
    if s.recursive_match && !s.subscribed && !s.special_use {
        return None;
    }
    Some(s)
}

/// STATUS's item list, parsed by imap-codec as the items of `STATUS INBOX (…)`.
fn status_items(inner: &[u8]) -> Option<Vec<StatusDataItemName>> {
    let mut line = b"s STATUS INBOX (".to_vec();
    line.extend_from_slice(inner);
    line.extend_from_slice(b")\r\n");
    match CommandCodec::default().decode(&line) {
        Ok((b"", cmd)) => match cmd.body {
            // RFC 5819: one item at least (imap-codec's STATUS also takes none).
            CommandBody::Status { item_names, .. } if !item_names.is_empty() => Some(item_names.into_owned()),
            _ => None,
        },
        _ => None,
    }
}

fn returns(c: &mut Cursor<'_>) -> Option<Return> {
    let mut r = Return::default();
    c.eat(b'(')?;
    if c.eat(b')').is_some() {
        return Some(r);
    }
    loop {
        let w = c.atom()?.to_ascii_uppercase();
        match w.as_slice() {
            b"SUBSCRIBED" => r.subscribed = true,
            b"CHILDREN" => r.children = true,
            b"SPECIAL-USE" => r.special_use = true,
            b"STATUS" => {
                c.sp()?;
                let items = status_items(c.parenthesised()?)?;
                r.status.get_or_insert_with(Vec::new).extend(items);
            }
            _ => return None,
        }
        if c.eat(b')').is_some() {
            return Some(r);
        }
        c.sp()?;
    }
}

/// The rest of a LIST command after `LIST`; `None`: not LIST-EXTENDED syntax (BAD).
pub fn parse(c: &mut Cursor<'_>) -> Option<List> {
    let mut l = List::default();
    c.sp()?;
    if c.peek()? == b'(' {
        l.selection = selection(c.parenthesised()?)?;
        c.sp()?;
    }
    l.reference = c.astring()?;
    c.sp()?;
    if c.eat(b'(').is_some() {
        loop {
            l.patterns.push(list_mailbox(c)?);
            if c.eat(b')').is_some() {
                break;
            }
            c.sp()?;
        }
    } else {
        l.patterns.push(list_mailbox(c)?);
    }
    if c.crlf_end().is_some() {
        return Some(l);
    }
    c.sp()?;
    c.keyword("RETURN")?;
    c.sp()?;
    l.returns = returns(c)?;
    c.crlf_end()?;
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(raw: &str) -> Option<List> {
        match super::super::parse(raw.as_bytes())? {
            (_, super::super::Extended::List(l)) => Some(l),
            _ => None,
        }
    }

    fn pats(l: &List) -> Vec<String> {
        l.patterns.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect()
    }

    #[test]
    fn clients_commands() {
        // Apple Mail (iOS 18).
        let l = list("a1 LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n").unwrap();
        assert_eq!(l.selection, Selection::default());
        assert_eq!(l.returns, Return { special_use: true, ..Default::default() });
        assert_eq!((l.reference.as_slice(), pats(&l)), (&b""[..], vec!["*".to_string()]));
        // Thunderbird with LIST-EXTENDED.
        let l = list("5 list (subscribed) \"\" \"*\" return (special-use)\r\n").unwrap();
        assert_eq!(l.selection, Selection { subscribed: true, ..Default::default() });
        assert!(l.returns.special_use && !l.returns.subscribed);
    }

    #[test]
    fn every_option_and_several_patterns() {
        let l = list(
            "a LIST (REMOTE SUBSCRIBED RECURSIVEMATCH) Work/ (INBOX \"Sent/%\" {3}\r\na b *] %) RETURN (CHILDREN SUBSCRIBED STATUS (MESSAGES UNSEEN SIZE))\r\n",
        )
        .unwrap();
        assert_eq!(
            l.selection,
            Selection { subscribed: true, remote: true, recursive_match: true, special_use: false }
        );
        assert_eq!(l.reference, b"Work/");
        assert_eq!(pats(&l), ["INBOX", "Sent/%", "a b", "*]", "%"]);
        assert_eq!(
            l.returns,
            Return {
                subscribed: true,
                children: true,
                special_use: false,
                status: Some(vec![StatusDataItemName::Messages, StatusDataItemName::Unseen, StatusDataItemName::Size]),
            }
        );
        let l = list("a LIST () \"\" % RETURN ()\r\n").unwrap();
        assert_eq!((l.selection, l.returns), (Selection::default(), Return::default()));
        let l = list("a LIST (SPECIAL-USE) \"\" *\r\n").unwrap();
        assert!(l.selection.special_use);
        let l = list("a LIST \"\" (\"INBOX\" \"Work/*\")\r\n").unwrap();
        assert_eq!(pats(&l), ["INBOX", "Work/*"]);
    }

    #[test]
    fn what_rfc_5258_calls_bad_is_none() {
        for raw in [
            "a LIST (RECURSIVEMATCH) \"\" *\r\n",
            "a LIST (REMOTE RECURSIVEMATCH) \"\" *\r\n",
            "a LIST (FROB) \"\" *\r\n",
            "a LIST \"\" * RETURN (FROB)\r\n",
            "a LIST \"\" * RETURN (STATUS (FROB))\r\n",
            "a LIST \"\" * RETURN (STATUS ())\r\n",
            "a LIST \"\" * RETURN CHILDREN\r\n",
            "a LIST \"\" () \r\n",
            "a LIST \"\" (a\r\n",
            "a LIST \"\" * RETURN (CHILDREN)\r\nx",
            "a LIST \"\" *\r\n\r\n",
            "a LIST (SUBSCRIBED)\"\" *\r\n",
            "a LIST \"\" * RETURN (CHILDREN) \r\n",
            "a LIST \"\"  *\r\n",
        ] {
            assert_eq!(list(raw), None, "{raw:?}");
        }
    }

    /// Random and truncated bytes never panic (the fuzz target drives whole sessions; this is the
    /// parser alone, fast, with a fixed seed).
    #[test]
    fn random_and_truncated_input_never_panics() {
        let seeds: &[&[u8]] = &[
            b"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"INBOX\" \"Work/*\" {2}\r\n%%) RETURN (CHILDREN SUBSCRIBED SPECIAL-USE STATUS (MESSAGES UIDNEXT SIZE))\r\n",
            b"a LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n",
            b"a LIST (REMOTE) {3+}\r\nabc * RETURN (STATUS (UNSEEN) CHILDREN)\r\n",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"() \"\\{}+~*%]\r\n0123456789aSRLISTUBCDEMOV-";
        for seed in seeds {
            for cut in 0..=seed.len() {
                let _ = super::super::parse(&seed[..cut]);
            }
            for _ in 0..3000 {
                let mut v = seed.to_vec();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() as usize) % v.len().max(1);
                    match next() % 3 {
                        0 if !v.is_empty() => {
                            v.remove(at.min(v.len() - 1));
                        }
                        1 => v.insert(at.min(v.len()), alphabet[(next() as usize) % alphabet.len()]),
                        _ => {
                            if let Some(b) = v.get_mut(at) {
                                *b = (next() & 0xff) as u8;
                            }
                        }
                    }
                }
                let _ = super::super::parse(&v);
            }
        }
        for _ in 0..3000 {
            let n = (next() % 64) as usize;
            let v: Vec<u8> = (0..n).map(|_| (next() & 0xff) as u8).collect();
            let mut line = b"a LIST ".to_vec();
            line.extend_from_slice(&v);
            let _ = super::super::parse(&line);
        }
    }
}
