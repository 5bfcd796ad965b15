//! SEARCH with result options (ESEARCH, RFC 4731) and the saved result (SEARCHRES, RFC 5182):
//! `[UID] SEARCH [RETURN (opts)] program`, where the program may use `$`. Only the `RETURN (…)`
//! part is parsed here; the program goes back to imap-codec (`$` rewritten by [`super::saved`]
//! first), so CHARSET and every search key keep one parser.
//! Delete the RETURN part when imap-codec parses `search-return-opts` (RFC 4466); `$` with
//! `super::saved`.

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::command::CommandBody;
use imap_next::imap_types::core::Charset;
use imap_next::imap_types::search::SearchKey;

use super::lex::Cursor;
use super::saved;

/// The result options of `RETURN (…)` (RFC 4731 §3.1, RFC 5182 §2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Return {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    pub save: bool,
}

impl Return {
    /// An untagged ESEARCH is sent unless SAVE is the only option (RFC 5182 §2.1).
    pub fn answers(&self) -> bool {
        self.min || self.max || self.all || self.count
    }

    /// What SAVE keeps (RFC 5182 §2.1): with MIN and/or MAX but neither ALL nor COUNT, only the
    /// minimum and/or maximum; otherwise the whole result.
    pub fn saves_extremes_only(&self) -> bool {
        (self.min || self.max) && !self.all && !self.count
    }
}

/// A SEARCH / UID SEARCH with `RETURN (…)` or with `$` in its criteria.
#[derive(Debug)]
pub struct Search {
    uid: bool,
    /// `None`: no RETURN (a plain SEARCH that uses `$`: answered with `* SEARCH`).
    pub ret: Option<Return>,
    /// The search program (`[CHARSET x] keys`, CRLF included), `$` not yet replaced.
    program: Vec<u8>,
}

/// After `[UID] SEARCH`: ` RETURN (opts) program` or ` program` using `$`.
pub fn parse(c: &mut Cursor<'_>, uid: bool) -> Option<Search> {
    c.sp()?;
    let mut ret = None;
    let save = c.clone();
    if c.keyword("RETURN").is_some() && c.sp().is_some() {
        let opts = c.parenthesised()?;
        c.sp()?;
        ret = Some(return_options(opts)?);
    } else {
        *c = save;
    }
    let program = c.rest().to_vec();
    let search = Search { uid, ret, program };
    // The program must be valid as it stands (any `$` standing for some set): a syntax error is
    // BAD now, not after the command started.
    search.criteria(&[(1, 1)])?;
    Some(search)
}

/// `MIN MAX ALL COUNT SAVE` in any order and case, repeats allowed; `()` means ALL. Anything else
/// (PARTIAL, RFC 9394, say) is a syntax error.
fn return_options(opts: &[u8]) -> Option<Return> {
    let mut r = Return::default();
    if opts.is_empty() {
        r.all = true;
        return Some(r);
    }
    for word in opts.split(|b| *b == b' ') {
        match word.to_ascii_uppercase().as_slice() {
            b"MIN" => r.min = true,
            b"MAX" => r.max = true,
            b"ALL" => r.all = true,
            b"COUNT" => r.count = true,
            b"SAVE" => r.save = true,
            _ => return None,
        }
    }
    Some(r)
}

impl Search {
    /// UID SEARCH (its results are UIDs, and EXPUNGE responses may accompany it).
    pub fn uid(&self) -> bool {
        self.uid
    }

    /// The CHARSET and the criteria (ANDed into one key), with `$` standing for `saved` (UID
    /// ranges; empty: no message), as imap-codec decodes them. `None`: not a valid program.
    pub fn criteria(&self, saved: &[(u32, u32)]) -> Option<(Option<Charset<'static>>, SearchKey<'static>)> {
        let program = saved::in_criteria(&self.program, saved)?;
        let mut line = Vec::with_capacity(program.len() + 16);
        line.extend_from_slice(if self.uid { b"x UID SEARCH " } else { b"x SEARCH " });
        line.extend_from_slice(&program);
        let (rest, cmd) = CommandCodec::default().decode(&line).ok()?;
        if !rest.is_empty() {
            return None;
        }
        match cmd.body.into_static() {
            CommandBody::Search { charset, criteria, .. } => {
                let key =
                    if criteria.as_ref().len() == 1 { criteria.as_ref()[0].clone() } else { SearchKey::And(criteria) };
                Some((charset, key))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::syntax::{Extended, parse as parse_any};

    fn search(raw: &str) -> Option<Search> {
        match parse_any(raw.as_bytes())? {
            (_, Extended::Search(s)) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn return_options_and_program() {
        let s = search("a1 SEARCH RETURN (MIN MAX COUNT ALL) FLAGGED SINCE 1-Feb-1994\r\n").unwrap();
        assert!(!s.uid());
        assert_eq!(s.ret, Some(Return { min: true, max: true, all: true, count: true, save: false }));
        let (charset, key) = s.criteria(&[]).unwrap();
        assert!(charset.is_none());
        assert!(matches!(key, SearchKey::And(ref v) if v.as_ref().len() == 2), "{key:?}");

        let s = search("a2 uid search return () charset utf-8 text {3}\r\nabc\r\n").unwrap();
        assert!(s.uid());
        assert_eq!(s.ret, Some(Return { all: true, ..Return::default() }));
        let (charset, key) = s.criteria(&[]).unwrap();
        assert_eq!(charset.map(|c| c.as_ref().to_string()), Some("utf-8".into()));
        assert!(matches!(key, SearchKey::Text(_)));

        let s = search("a3 SEARCH RETURN (save min) 1:5\r\n").unwrap();
        let r = s.ret.unwrap();
        assert!(r.save && r.min && r.answers() && r.saves_extremes_only());
        let r = search("a4 SEARCH RETURN (SAVE) ALL\r\n").unwrap().ret.unwrap();
        assert!(!r.answers() && !r.saves_extremes_only());
        let r = search("a5 SEARCH RETURN (MAX SAVE COUNT) ALL\r\n").unwrap().ret.unwrap();
        assert!(r.answers() && !r.saves_extremes_only());
    }

    #[test]
    fn dollar_in_the_criteria() {
        let s = search("a1 SEARCH $ UNSEEN\r\n").unwrap();
        assert_eq!(s.ret, None);
        let (_, key) = s.criteria(&[(2, 4), (9, 9)]).unwrap();
        assert_eq!(format!("{key:?}"), format!("{:?}", search_key("(UID 2:4,9) UNSEEN")));
        let (_, key) = s.criteria(&[]).unwrap();
        assert_eq!(format!("{key:?}"), format!("{:?}", search_key("(NOT ALL) UNSEEN")));
        let (_, key) = search("a2 UID SEARCH RETURN (COUNT) OR UID $ NOT $\r\n").unwrap().criteria(&[(7, 7)]).unwrap();
        assert_eq!(format!("{key:?}"), format!("{:?}", search_key("OR (UID 7) NOT (UID 7)")));
        // `$` as a string or keyword is just a string.
        let (_, key) =
            search("a3 SEARCH RETURN () KEYWORD $ SUBJECT $ HEADER $ $\r\n").unwrap().criteria(&[(1, 2)]).unwrap();
        assert_eq!(format!("{key:?}"), format!("{:?}", search_key("KEYWORD $ SUBJECT $ HEADER $ $")));
    }

    /// The key imap-codec makes of `keys` (ANDed when several).
    fn search_key(keys: &str) -> SearchKey<'static> {
        let line = format!("x SEARCH {keys}\r\n");
        match CommandCodec::default().decode(line.as_bytes()).unwrap().1.body.into_static() {
            CommandBody::Search { criteria, .. } if criteria.as_ref().len() == 1 => criteria.as_ref()[0].clone(),
            CommandBody::Search { criteria, .. } => SearchKey::And(criteria),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_none() {
        for raw in [
            "a1 SEARCH RETURN (MIN FOO) ALL\r\n",
            "a1 SEARCH RETURN (PARTIAL 1:10) ALL\r\n",
            "a1 SEARCH RETURN (MIN)\r\n",
            "a1 SEARCH RETURN (MIN) \r\n",
            "a1 SEARCH RETURN MIN ALL\r\n",
            "a1 SEARCH RETURN (MIN ALL\r\n",
            "a1 SEARCH RETURN (MIN) FROB\r\n",
            "a1 SEARCH RETURN (MIN  MAX) ALL\r\n",
            "a1 SEARCH RETURN (MIN) ALL",
            "a1 SEARCH ALL\r\n\r\n",
            "a1 SEARCH $$\r\n",
            "a1 SEARCH 1,$\r\n",
            "a1 SEARCH UID $:3\r\n",
            "a1 SEARCH\r\n",
        ] {
            assert!(search(raw).is_none(), "{raw:?}");
        }
    }

    /// Random and truncated input never panics (the fuzz target does the same at scale).
    #[test]
    fn garbage_and_truncations_do_not_panic() {
        let samples: [&[u8]; 5] = [
            b"a1 UID SEARCH RETURN (MIN MAX COUNT ALL SAVE) CHARSET UTF-8 OR $ (UID $ TEXT {3}\r\nabc) NOT $\r\n",
            b"a2 SEARCH RETURN () HEADER \"x\" \"$\" MODSEQ \"/flags/\\\\draft\" all 5 $\r\n",
            b"a3 UID FETCH $ (FLAGS BODY.PEEK[HEADER.FIELDS (FROM)])\r\n",
            b"a4 STORE $ +FLAGS.SILENT (\\Seen)\r\n",
            b"a5 UID EXPUNGE $\r\n",
        ];
        for raw in samples {
            for end in 0..=raw.len() {
                let _ = crate::imap::syntax::parse(&raw[..end]);
            }
        }
        let alphabet = b"a1 UID SEARCH RETURN (MIN MAX) $ {1}\r\n\"\\ FETCH COPY x*:,";
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 60) as usize;
            let mut raw = b"a1 SEARCH ".to_vec();
            let mut x = seed;
            for _ in 0..len {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                raw.push(alphabet[((x >> 33) % alphabet.len() as u64) as usize]);
            }
            if let Some((_, Extended::Search(s))) = crate::imap::syntax::parse(&raw) {
                let _ = s.criteria(&[]);
                let _ = s.criteria(&[(1, u32::MAX)]);
            }
        }
    }
}
