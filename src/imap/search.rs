//! SEARCH evaluation (RFC 3501 §6.4.4): which messages of the selected mailbox match a parsed
//! search key.
//!
//! Use: once per command build a [`SearchQuery`] ([`SearchQuery::new`] checks the charset and the
//! strings, pre-folds every needle and tells in [`SearchQuery::needs`] what per-message data the
//! keys look at); then, for each message, fill a [`Candidate`] with the row and whatever `needs`
//! asked for and call [`SearchQuery::matches`]. [`SearchQuery::decide`] evaluates with whatever
//! the candidate holds and answers `None` only when the result depends on data that is missing,
//! so a caller can run it on the bare rows first and load bodies only for the undecided messages
//! (`UNSEEN BODY "x"` decodes only unseen messages).
//!
//! Choices (Dovecot 2.3's behaviour unless said otherwise):
//! - **Case folding**: Unicode lower-casing per character (`char::to_lowercase`, plus final sigma
//!   `ς` → `σ`), applied once to the needles and once to the haystacks, then a byte substring
//!   search (`memchr::memmem`). This is not full case folding: `ß` does not match `SS`.
//! - **Whitespace**: runs of whitespace (Unicode `White_Space`: SP, TAB, CR, LF, NBSP…) count as
//!   one space in needles and haystacks, and haystacks are trimmed; so a phrase matches across a
//!   folded header line or a wrapped body line. A needle's own leading/trailing space is kept.
//! - **Empty strings**: `HEADER name ""` matches every message having a `name` field (RFC 3501);
//!   `FROM ""`, `TO ""`, `CC ""`, `BCC ""`, `SUBJECT ""` likewise match messages having that field
//!   (Dovecot treats them as header searches); `BODY ""` and `TEXT ""` match every message (the
//!   empty string is a substring of anything; Dovecot agrees) and need no text.
//! - **Header keys** (FROM TO CC BCC SUBJECT HEADER) look at every field of that name in the
//!   message header, unfolded, RFC 2047-decoded (also inside address lists), 8-bit bytes read as
//!   UTF-8 or else ISO-8859-1 (as `crate::mime` does). The decoded address field keeps the raw
//!   addresses, so `FROM "bob@example.com"`, `FROM "example.com"` and `FROM "Böb"` all work.
//! - **Address keys** (FROM TO CC BCC) also match the parsed addresses, as Dovecot does: the
//!   envelope extracted at insert ([`MessageMeta::envelope`]) written as `name <mailbox@host>`
//!   ([`address_text`]), so comments and whitespace inside an address (RFC 5322 CFWS) do not
//!   hide it: `From: <user (c)@ (c) example.org>` is found by `FROM "user@example.org"`.
//! - **TEXT** searches every header field (as `name: value` lines, decoded as above) and the
//!   body text; **BODY** only the body text: text/plain and text/html parts that are not
//!   attachments, transfer- and charset-decoded, HTML converted to text, encapsulated messages
//!   included ([`crate::mime::search_text`]).
//! - **Dates**: BEFORE / ON / SINCE compare the calendar date of INTERNALDATE in its own zone
//!   offset (23:30 -0500 on 1 March is ON 1-Mar, although it is 2 March in UTC); SENTBEFORE /
//!   SENTON / SENTSINCE do the same with the `Date:` header (`MessageMeta::date`), falling back to
//!   INTERNALDATE when the message has no usable Date (Dovecot does).
//! - **WITHIN** (RFC 5032): OLDER n / YOUNGER n compare INTERNALDATE with the clock read when
//!   the query is compiled: OLDER n is `<= now - n`, YOUNGER n `>= now - n` (Dovecot's bounds).
//! - **Flags**: `\Recent` comes from the session ([`Candidate::recent`]); NEW = RECENT UNSEEN,
//!   OLD = NOT RECENT. KEYWORD / UNKEYWORD compare ASCII case-insensitively with the row's
//!   keywords only (system flags are not keywords).
//! - **Sets**: `*` is the largest number in use ([`Context`]); `n:m` is inclusive in either order,
//!   so `5:*` with 3 messages covers 3:5 and matches message 3. Numbers beyond the mailbox match
//!   nothing (no error).
//! - **Charset**: absent, `UTF-8` or `US-ASCII` (case-insensitive); anything else is
//!   [`SearchError::BadCharset`] (`NO [BADCHARSET (UTF-8 US-ASCII)]`, see [`CHARSETS`]). Strings
//!   must be valid UTF-8 (also under US-ASCII, a subset we do not police), else
//!   [`SearchError::InvalidUtf8`] (BAD).
//! - **Missing data**: a key whose data the caller did not provide is unknown (three-valued logic:
//!   `NOT unknown` is unknown, `OR true unknown` is true); [`SearchQuery::matches`] treats a
//!   final unknown as no match.
//!
//! Cost: flag, size, date and set keys allocate nothing per message (sets are pre-sorted and
//! binary-searched; `*` is resolved arithmetically); AND operands run cheapest first.

#![forbid(unsafe_code)]

use std::fmt;

use imap_codec::imap_types::core::{AString, Charset};
use imap_codec::imap_types::datetime::NaiveDate;
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use memchr::memmem;

use crate::mime::text::{SearchText, TextFilter, address_text, fold_into};
use crate::mime::{MessageMeta, Timestamp, header};
use crate::store::message::{MessageRow, flag};

/// The charsets SEARCH accepts, for `NO [BADCHARSET (UTF-8 US-ASCII)]`.
pub const CHARSETS: [&str; 2] = ["UTF-8", "US-ASCII"];

/// Search keys nested deeper than this are refused (imap-codec's parser stops far earlier; this
/// bounds the recursion for keys built in code).
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchError {
    /// CHARSET is neither UTF-8 nor US-ASCII: answer `NO [BADCHARSET (UTF-8 US-ASCII)]`.
    BadCharset,
    /// A search string (or HEADER field name) is not valid UTF-8: answer BAD.
    InvalidUtf8,
    /// Search keys nested more than 64 deep: answer BAD.
    TooDeep,
    /// A key of an extension this server does not implement (only parsed if imap-types was
    /// built with that feature): answer BAD.
    Unsupported,
}

impl fmt::Display for SearchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SearchError::BadCharset => "unsupported charset (use UTF-8 or US-ASCII)",
            SearchError::InvalidUtf8 => "search string is not valid UTF-8",
            SearchError::TooDeep => "search keys nested too deeply",
            SearchError::Unsupported => "unsupported search key",
        })
    }
}

impl std::error::Error for SearchError {}

/// What evaluating a key needs beyond the rows, so the caller loads only that.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// SENTBEFORE / SENTON / SENTSINCE, and the parsed addresses of FROM TO CC BCC:
    /// [`Candidate::meta`].
    pub meta: bool,
    /// FROM TO CC BCC SUBJECT HEADER: [`Candidate::header`] (or, failing that, [`Candidate::text`]).
    pub headers: bool,
    /// BODY TEXT: [`Candidate::text`].
    pub text: bool,
}

impl Needs {
    /// True when the rows alone decide the search.
    pub fn rows_only(&self) -> bool {
        !(self.meta || self.headers || self.text)
    }

    fn union(self, o: Needs) -> Needs {
        Needs { meta: self.meta || o.meta, headers: self.headers || o.headers, text: self.text || o.text }
    }
}

/// Everything about one message a key may look at; the caller fills in what
/// [`SearchQuery::needs`] asked for (anything else may stay `None`).
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Message sequence number (1-based).
    pub seq: u32,
    pub row: &'a MessageRow,
    /// `\Recent` in this session.
    pub recent: bool,
    /// For SENT* and the address keys: the stored metadata.
    pub meta: Option<&'a MessageMeta>,
    /// For header keys: the raw header block, `raw[..meta.header_len]` (the whole raw message
    /// works too: scanning stops at the blank line).
    pub header: Option<&'a [u8]>,
    /// For BODY / TEXT: [`SearchText::from_raw`] of the raw message (cacheable). Header keys use
    /// it when `header` is `None`.
    pub text: Option<&'a SearchText>,
}

impl<'a> Candidate<'a> {
    /// A candidate with only the row (enough when [`Needs::rows_only`]).
    pub fn new(seq: u32, row: &'a MessageRow, recent: bool) -> Self {
        Candidate { seq, row, recent, meta: None, header: None, text: None }
    }
}

/// What `*` means (RFC 3501 §9 `seq-number`): the largest number in use.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Number of messages in the mailbox (the highest sequence number).
    pub max_seq: u32,
    /// UID of the last message in the mailbox (not UIDNEXT - 1); 0 when empty.
    pub max_uid: u32,
}

/// The envelope address fields SEARCH has keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressField {
    From,
    To,
    Cc,
    Bcc,
}

/// A pre-folded search string.
#[derive(Debug, Clone)]
struct Needle {
    finder: memmem::Finder<'static>,
}

impl Needle {
    fn new(s: &str) -> Needle {
        let mut folded = String::with_capacity(s.len());
        fold_into(&mut folded, s, false);
        Needle { finder: memmem::Finder::new(folded.as_bytes()).into_owned() }
    }

    fn is_empty(&self) -> bool {
        self.finder.needle().is_empty()
    }

    fn find_in(&self, haystack: &str) -> bool {
        self.finder.find(haystack.as_bytes()).is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateCmp {
    Before,
    On,
    Since,
}

/// A sequence or UID set with `*` kept symbolic: `contains` resolves it against the context.
#[derive(Debug, Clone, Default)]
struct NumSet {
    /// Concrete ranges, sorted, disjoint, not adjacent.
    ranges: Vec<(u32, u32)>,
    /// A bare `*` occurs.
    star: bool,
    /// For ranges `a:*`: the least and greatest `a`.
    star_ranges: Option<(u32, u32)>,
}

impl NumSet {
    fn new(set: &SequenceSet) -> NumSet {
        let mut s = NumSet::default();
        let add_star_range = |a: u32, s: &mut NumSet| {
            s.star_ranges = Some(match s.star_ranges {
                None => (a, a),
                Some((lo, hi)) => (lo.min(a), hi.max(a)),
            });
        };
        for seq in set.0.as_ref() {
            match seq {
                Sequence::Single(SeqOrUid::Value(v)) => s.ranges.push((v.get(), v.get())),
                Sequence::Single(SeqOrUid::Asterisk) | Sequence::Range(SeqOrUid::Asterisk, SeqOrUid::Asterisk) => {
                    s.star = true
                }
                Sequence::Range(SeqOrUid::Value(a), SeqOrUid::Value(b)) => {
                    s.ranges.push((a.get().min(b.get()), a.get().max(b.get())))
                }
                Sequence::Range(SeqOrUid::Value(a), SeqOrUid::Asterisk)
                | Sequence::Range(SeqOrUid::Asterisk, SeqOrUid::Value(a)) => add_star_range(a.get(), &mut s),
            }
        }
        s.ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(s.ranges.len());
        for &(lo, hi) in &s.ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        s.ranges = merged;
        s
    }

    /// Is `x` in the set when `*` is `max`? `a:*` is `min(a,max)..=max(a,max)`.
    fn contains(&self, x: u32, max: u32) -> bool {
        if x == 0 {
            return false; // numbers start at 1; an empty mailbox has no `*`
        }
        let i = self.ranges.partition_point(|&(_, hi)| hi < x);
        if self.ranges.get(i).is_some_and(|&(lo, _)| lo <= x) {
            return true;
        }
        if self.star && x == max {
            return true;
        }
        match self.star_ranges {
            None => false,
            Some((least, greatest)) => {
                if x <= max {
                    x >= least || x == max
                } else {
                    x <= greatest
                }
            }
        }
    }
}

/// The compiled key.
#[derive(Debug, Clone)]
enum Node {
    Const(bool),
    /// `row.flags & mask == want`.
    Flags {
        mask: u8,
        want: u8,
    },
    Recent(bool),
    Keyword {
        name: Box<str>,
        set: bool,
    },
    Larger(u32),
    Smaller(u32),
    /// CONDSTORE's `MODSEQ n` (RFC 7162 §3.1.5): the message's MODSEQ is at least n.
    ModSeq(u64),
    Seq(NumSet),
    Uid(NumSet),
    /// Days since 1970-01-01; `sent` selects the Date header over INTERNALDATE.
    Date {
        sent: bool,
        cmp: DateCmp,
        day: i64,
    },
    /// Header field `name` contains `needle` (empty: the field exists).
    Header {
        name: Box<str>,
        needle: Needle,
    },
    /// The parsed addresses of an envelope field contain `needle` ([`address_text`]).
    Address {
        field: AddressField,
        needle: Needle,
    },
    /// WITHIN (RFC 5032): INTERNALDATE at or before (`older`) / at or after this Unix time.
    Within {
        older: bool,
        cutoff: i64,
    },
    Body(Needle),
    Text(Needle),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Box<Node>, Box<Node>),
}

impl Node {
    /// Relative evaluation cost, to run cheap AND/OR operands first.
    fn cost(&self) -> u8 {
        match self {
            Node::Const(_) => 0,
            Node::Flags { .. } | Node::Recent(_) | Node::Larger(_) | Node::Smaller(_) | Node::ModSeq(_) => 1,
            Node::Seq(_) | Node::Uid(_) | Node::Keyword { .. } => 2,
            Node::Date { sent: false, .. } | Node::Within { .. } => 2,
            Node::Date { sent: true, .. } => 3,
            Node::Header { .. } | Node::Address { .. } => 4,
            Node::Body(_) | Node::Text(_) => 5,
            Node::Not(n) => n.cost(),
            Node::Or(a, b) => a.cost().max(b.cost()),
            Node::And(v) => v.iter().map(Node::cost).max().unwrap_or(0),
        }
    }

    fn needs(&self) -> Needs {
        match self {
            Node::Date { sent: true, .. } | Node::Address { .. } => Needs { meta: true, ..Needs::default() },
            Node::Header { .. } => Needs { headers: true, ..Needs::default() },
            Node::Body(_) | Node::Text(_) => Needs { text: true, ..Needs::default() },
            Node::Not(n) => n.needs(),
            Node::Or(a, b) => a.needs().union(b.needs()),
            Node::And(v) => v.iter().fold(Needs::default(), |n, c| n.union(c.needs())),
            _ => Needs::default(),
        }
    }

    fn not(n: Node) -> Node {
        match n {
            Node::Const(b) => Node::Const(!b),
            Node::Not(inner) => *inner,
            Node::Flags { mask, want } if mask.count_ones() == 1 => Node::Flags { mask, want: want ^ mask },
            Node::Recent(b) => Node::Recent(!b),
            Node::Keyword { name, set } => Node::Keyword { name, set: !set },
            n => Node::Not(Box::new(n)),
        }
    }

    fn and(items: Vec<Node>) -> Node {
        let mut out = Vec::with_capacity(items.len());
        // All flag tests of one AND merge into one mask test (`UNSEEN UNDELETED FLAGGED`).
        let (mut mask, mut want) = (0u8, 0u8);
        let mut pending = items;
        while let Some(n) = pending.pop() {
            match n {
                Node::Const(true) => {}
                Node::Const(false) => return Node::Const(false),
                Node::And(inner) => pending.extend(inner),
                Node::Flags { mask: m, want: w } => {
                    if (want ^ w) & mask & m != 0 {
                        return Node::Const(false);
                    }
                    mask |= m;
                    want |= w;
                }
                n => out.push(n),
            }
        }
        if mask != 0 {
            out.push(Node::Flags { mask, want });
        }
        match out.len() {
            0 => Node::Const(true),
            1 => out.pop().unwrap_or(Node::Const(true)),
            _ => {
                out.sort_by_key(Node::cost);
                Node::And(out)
            }
        }
    }

    fn or(a: Node, b: Node) -> Node {
        match (a, b) {
            (Node::Const(true), _) | (_, Node::Const(true)) => Node::Const(true),
            (Node::Const(false), n) | (n, Node::Const(false)) => n,
            (a, b) if b.cost() < a.cost() => Node::Or(Box::new(b), Box::new(a)),
            (a, b) => Node::Or(Box::new(a), Box::new(b)),
        }
    }
}

/// A SEARCH command's criteria, checked and compiled once per command.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    root: Node,
    needs: Needs,
}

impl SearchQuery {
    /// Compile one key: a command's criteria list of one, or `SearchKey::And(criteria)` (the
    /// list is ANDed). `charset` is the command's CHARSET.
    pub fn new(criteria: &SearchKey<'_>, charset: Option<&Charset<'_>>) -> Result<SearchQuery, SearchError> {
        SearchQuery::from_criteria(std::slice::from_ref(criteria), charset)
    }

    /// Compile a command's criteria list as it comes (`criteria.as_ref()`), without building an
    /// `And` key.
    pub fn from_criteria(
        criteria: &[SearchKey<'_>],
        charset: Option<&Charset<'_>>,
    ) -> Result<SearchQuery, SearchError> {
        if let Some(cs) = charset {
            let cs: &str = cs.as_ref();
            if !CHARSETS.iter().any(|c| c.eq_ignore_ascii_case(cs)) {
                return Err(SearchError::BadCharset);
            }
        }
        let nodes = criteria.iter().map(|k| compile(k, 0)).collect::<Result<Vec<_>, _>>()?;
        let root = Node::and(nodes);
        let needs = root.needs();
        Ok(SearchQuery { root, needs })
    }

    /// What the candidates must carry besides the row.
    pub fn needs(&self) -> Needs {
        self.needs
    }

    /// Does the message match? Keys whose data the candidate lacks count as unknown, and an
    /// unknown result as no match (see [`decide`](Self::decide)).
    pub fn matches(&self, c: &Candidate<'_>, ctx: &Context) -> bool {
        self.decide(c, ctx).unwrap_or(false)
    }

    /// Three-valued evaluation with whatever `c` holds: `Some(result)` when that decides it,
    /// `None` when it depends on data `c` lacks. With `Candidate::new` (row only) this is a cheap
    /// pre-filter: load meta/header/text only for the messages that come back `None`.
    pub fn decide(&self, c: &Candidate<'_>, ctx: &Context) -> Option<bool> {
        eval(&self.root, c, ctx)
    }

    /// Flag bits every match must have (`mask`, `want`: `flags & mask == want`), when the query
    /// requires them at the top level (`UNSEEN`, `FLAGGED SINCE …`): the store then reads only
    /// those rows, through an index for UNSEEN, instead of the whole mailbox.
    pub fn required_flags(&self) -> Option<(u8, u8)> {
        match &self.root {
            Node::Flags { mask, want } => Some((*mask, *want)),
            Node::And(children) => children.iter().find_map(|n| match n {
                Node::Flags { mask, want } => Some((*mask, *want)),
                _ => None,
            }),
            _ => None,
        }
    }

    /// The flags test, when it is the whole query (`UNSEEN`, `FLAGGED UNANSWERED`…): the answer
    /// then comes from the flags column alone (an index for `UNSEEN`).
    /// Whether every message matches (`ALL`): no row needs reading.
    pub fn matches_all(&self) -> bool {
        matches!(self.root, Node::Const(true))
    }

    pub fn flags_only(&self) -> Option<(u8, u8)> {
        match &self.root {
            Node::Flags { mask, want } => Some((*mask, *want)),
            _ => None,
        }
    }

    /// A BODY or TEXT string every match must contain, when the query requires one at the top
    /// level and it is long enough for the store's trigram index (3 characters): the store then
    /// reads only the messages the index names. `exact` says the index answer is the whole query
    /// (the index holds the same folded text the evaluation searches, so no re-check is needed).
    pub fn text_filter(&self) -> Option<TextFilter> {
        let usable = |n: &Node| match n {
            Node::Body(needle) | Node::Text(needle) => {
                let folded = std::str::from_utf8(needle.finder.needle()).ok()?;
                (folded.chars().count() >= 3).then(|| TextFilter {
                    body_only: matches!(n, Node::Body(_)),
                    needle: folded.to_owned(),
                    exact: false,
                })
            }
            _ => None,
        };
        match &self.root {
            Node::And(children) => children.iter().find_map(usable),
            n => usable(n).map(|f| TextFilter { exact: true, ..f }),
        }
    }

    /// True if the query certainly matches nothing, whatever the mailbox (e.g. `NOT ALL`).
    pub fn matches_nothing(&self) -> bool {
        matches!(self.root, Node::Const(false))
    }

    /// The query has a `MODSEQ` key: the SEARCH response ends with `(MODSEQ m)` (RFC 7162 §3.1.5).
    pub fn uses_modseq(&self) -> bool {
        fn has(n: &Node) -> bool {
            match n {
                Node::ModSeq(_) => true,
                Node::Not(n) => has(n),
                Node::Or(a, b) => has(a) || has(b),
                Node::And(v) => v.iter().any(has),
                _ => false,
            }
        }
        has(&self.root)
    }
}

fn string<'s>(s: &'s AString<'_>) -> Result<&'s str, SearchError> {
    std::str::from_utf8(s.as_ref()).map_err(|_| SearchError::InvalidUtf8)
}

fn header_key(name: &str, value: &AString<'_>) -> Result<Node, SearchError> {
    Ok(Node::Header { name: name.into(), needle: Needle::new(string(value)?) })
}

/// FROM / TO / CC / BCC: the field's decoded text, or its parsed addresses (Dovecot compares the
/// latter only; the text keeps `FROM "Smith, John"` and comment words working). An empty string
/// asks whether the field exists, which the text alone answers.
fn address_key(name: &str, field: AddressField, value: &AString<'_>) -> Result<Node, SearchError> {
    let text = header_key(name, value)?;
    let needle = Needle::new(string(value)?);
    Ok(if needle.is_empty() { text } else { Node::or(text, Node::Address { field, needle }) })
}

/// OLDER / YOUNGER n (RFC 5032), against the clock when the query is compiled: OLDER n matches
/// INTERNALDATE <= now - n, YOUNGER n INTERNALDATE >= now - n (Dovecot's bounds).
fn within_key(older: bool, seconds: u32) -> Node {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Node::Within { older, cutoff: now.saturating_sub(i64::from(seconds)) }
}

fn text_key(value: &AString<'_>, body_only: bool) -> Result<Node, SearchError> {
    let needle = Needle::new(string(value)?);
    Ok(if needle.is_empty() {
        Node::Const(true)
    } else if body_only {
        Node::Body(needle)
    } else {
        Node::Text(needle)
    })
}

fn epoch_days(d: &NaiveDate) -> i64 {
    i64::from(d.as_ref().to_epoch_days())
}

fn date_key(sent: bool, cmp: DateCmp, d: &NaiveDate) -> Node {
    Node::Date { sent, cmp, day: epoch_days(d) }
}

fn flag_key(mask: u8, set: bool) -> Node {
    Node::Flags { mask, want: if set { mask } else { 0 } }
}

fn compile(key: &SearchKey<'_>, depth: usize) -> Result<Node, SearchError> {
    if depth > MAX_DEPTH {
        return Err(SearchError::TooDeep);
    }
    let sub = |k: &SearchKey<'_>| compile(k, depth + 1);
    Ok(match key {
        SearchKey::And(keys) => Node::and(keys.as_ref().iter().map(sub).collect::<Result<Vec<_>, _>>()?),
        SearchKey::Or(a, b) => Node::or(sub(a)?, sub(b)?),
        SearchKey::Not(k) => Node::not(sub(k)?),
        SearchKey::All => Node::Const(true),
        SearchKey::SequenceSet(set) => Node::Seq(NumSet::new(set)),
        SearchKey::Uid(set) => Node::Uid(NumSet::new(set)),
        SearchKey::Answered => flag_key(flag::ANSWERED, true),
        SearchKey::Unanswered => flag_key(flag::ANSWERED, false),
        SearchKey::Deleted => flag_key(flag::DELETED, true),
        SearchKey::Undeleted => flag_key(flag::DELETED, false),
        SearchKey::Draft => flag_key(flag::DRAFT, true),
        SearchKey::Undraft => flag_key(flag::DRAFT, false),
        SearchKey::Flagged => flag_key(flag::FLAGGED, true),
        SearchKey::Unflagged => flag_key(flag::FLAGGED, false),
        SearchKey::Seen => flag_key(flag::SEEN, true),
        SearchKey::Unseen => flag_key(flag::SEEN, false),
        SearchKey::Recent => Node::Recent(true),
        SearchKey::Old => Node::Recent(false),
        SearchKey::New => Node::and(vec![Node::Recent(true), flag_key(flag::SEEN, false)]),
        SearchKey::Keyword(k) => Node::Keyword { name: k.inner().into(), set: true },
        SearchKey::Unkeyword(k) => Node::Keyword { name: k.inner().into(), set: false },
        SearchKey::Larger(n) => Node::Larger(*n),
        SearchKey::Smaller(n) => Node::Smaller(*n),
        SearchKey::Before(d) => date_key(false, DateCmp::Before, d),
        SearchKey::On(d) => date_key(false, DateCmp::On, d),
        SearchKey::Since(d) => date_key(false, DateCmp::Since, d),
        SearchKey::SentBefore(d) => date_key(true, DateCmp::Before, d),
        SearchKey::SentOn(d) => date_key(true, DateCmp::On, d),
        SearchKey::SentSince(d) => date_key(true, DateCmp::Since, d),
        SearchKey::From(s) => address_key("from", AddressField::From, s)?,
        SearchKey::To(s) => address_key("to", AddressField::To, s)?,
        SearchKey::Cc(s) => address_key("cc", AddressField::Cc, s)?,
        SearchKey::Bcc(s) => address_key("bcc", AddressField::Bcc, s)?,
        SearchKey::Older(n) => within_key(true, n.get()),
        SearchKey::Younger(n) => within_key(false, n.get()),
        SearchKey::Subject(s) => header_key("subject", s)?,
        SearchKey::Header(name, s) => header_key(string(name)?, s)?,
        SearchKey::Body(s) => text_key(s, true)?,
        SearchKey::Text(s) => text_key(s, false)?,
        // The entry name (`"/flags/\\seen" all`) does not narrow it: one MODSEQ per message.
        SearchKey::ModSequence { modseq, .. } => Node::ModSeq(*modseq),
        // Keys of extensions this server does not enable (WITHIN, CONDSTORE) cannot be parsed
        // with its feature set; should one appear anyway (feature unification) it is refused.
        #[allow(unreachable_patterns)]
        _ => return Err(SearchError::Unsupported),
    })
}

/// The calendar day (days since 1970-01-01) of a timestamp in its own offset.
fn local_day(t: &Timestamp) -> i64 {
    t.unix.saturating_add(i64::from(t.offset_minutes) * 60).div_euclid(86_400)
}

fn eval(n: &Node, c: &Candidate<'_>, ctx: &Context) -> Option<bool> {
    Some(match n {
        Node::Const(b) => *b,
        Node::Flags { mask, want } => c.row.flags & mask == *want,
        Node::Recent(b) => c.recent == *b,
        Node::Keyword { name, set } => c.row.keywords.iter().any(|k| k.eq_ignore_ascii_case(name)) == *set,
        Node::Larger(n) => c.row.size > *n,
        Node::Smaller(n) => c.row.size < *n,
        Node::ModSeq(m) => c.row.modseq >= *m,
        Node::Seq(s) => s.contains(c.seq, ctx.max_seq),
        Node::Uid(s) => s.contains(c.row.uid, ctx.max_uid),
        Node::Date { sent, cmp, day } => {
            let t = if *sent { c.meta?.date.unwrap_or(c.row.internaldate) } else { c.row.internaldate };
            let d = local_day(&t);
            match cmp {
                DateCmp::Before => d < *day,
                DateCmp::On => d == *day,
                DateCmp::Since => d >= *day,
            }
        }
        Node::Header { name, needle } => match (c.header, c.text) {
            (Some(h), _) => raw_header_match(h, name, needle),
            (None, Some(t)) => t.field_values(name).any(|v| needle.is_empty() || needle.find_in(v)),
            (None, None) => return None,
        },
        Node::Address { field, needle } => {
            let e = &c.meta?.envelope;
            let list = match field {
                AddressField::From => &e.from,
                AddressField::To => &e.to,
                AddressField::Cc => &e.cc,
                AddressField::Bcc => &e.bcc,
            };
            !list.is_empty() && needle.find_in(&address_text(list))
        }
        Node::Within { older, cutoff } => {
            let t = c.row.internaldate.unix;
            if *older { t <= *cutoff } else { t >= *cutoff }
        }
        Node::Body(needle) => needle.find_in(c.text?.body()),
        Node::Text(needle) => {
            let t = c.text?;
            needle.find_in(t.headers()) || needle.find_in(t.body())
        }
        Node::Not(n) => !eval(n, c, ctx)?,
        Node::And(v) => {
            let mut unknown = false;
            for n in v {
                match eval(n, c, ctx) {
                    Some(false) => return Some(false),
                    Some(true) => {}
                    None => unknown = true,
                }
            }
            if unknown {
                return None;
            }
            true
        }
        Node::Or(a, b) => match eval(a, c, ctx) {
            Some(true) => true,
            Some(false) => eval(b, c, ctx)?,
            None => {
                if eval(b, c, ctx)? {
                    true
                } else {
                    return None;
                }
            }
        },
    })
}

fn raw_header_match(header: &[u8], name: &str, needle: &Needle) -> bool {
    header::named(header).any(|(n, v)| {
        n.eq_ignore_ascii_case(name.as_bytes()) && {
            if needle.is_empty() {
                return true;
            }
            let mut folded = String::with_capacity(v.len());
            fold_into(&mut folded, &header::decoded(v), true);
            needle.find_in(&folded)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::date::days_from_civil;
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;
    use imap_codec::imap_types::command::CommandBody;

    /// Parse a full command line (literals included) and compile its criteria.
    fn query(line: &[u8]) -> Result<SearchQuery, SearchError> {
        let (rest, cmd) = match CommandCodec::default().decode(line) {
            Ok(ok) => ok,
            Err(e) => panic!("{:?} does not parse: {e:?}", String::from_utf8_lossy(line)),
        };
        assert!(rest.is_empty(), "trailing bytes {rest:?}");
        match cmd.body {
            CommandBody::Search { charset, criteria, .. } => {
                // Both entry points agree; the session wraps a list in `And` and calls `new`.
                let list = SearchQuery::from_criteria(criteria.as_ref(), charset.as_ref());
                let key = if criteria.as_ref().len() == 1 {
                    criteria.as_ref()[0].clone()
                } else {
                    SearchKey::And(criteria.clone())
                };
                let single = SearchQuery::new(&key, charset.as_ref());
                assert_eq!(list.as_ref().err(), single.as_ref().err());
                assert_eq!(list.as_ref().ok().map(SearchQuery::needs), single.as_ref().ok().map(SearchQuery::needs));
                single
            }
            other => panic!("not a SEARCH: {other:?}"),
        }
    }

    fn q(line: &str) -> SearchQuery {
        query(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    /// A SEARCH with one string argument sent as a literal (any bytes).
    fn q_lit(prefix: &str, s: &str) -> SearchQuery {
        let mut line = format!("a SEARCH CHARSET UTF-8 {prefix} {{{}}}\r\n", s.len()).into_bytes();
        line.extend_from_slice(s.as_bytes());
        line.extend_from_slice(b"\r\n");
        query(&line).unwrap_or_else(|e| panic!("{prefix} {s}: {e}"))
    }

    /// A local time with its offset, as a Timestamp.
    fn ts(y: i64, mo: i64, d: i64, h: i64, mi: i64, off: i32) -> Timestamp {
        let local = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60;
        Timestamp { unix: local - i64::from(off) * 60, offset_minutes: off }
    }

    struct Msg {
        row: MessageRow,
        recent: bool,
        raw: Vec<u8>,
        meta: MessageMeta,
        text: SearchText,
    }

    fn msg(uid: u32, flags: u8, keywords: &[&str], recent: bool, internaldate: Timestamp, raw: &[u8]) -> Msg {
        let row = MessageRow {
            uid,
            flags,
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
            modseq: 1,
            internaldate,
            size: raw.len() as u32,
            body_id: i64::from(uid),
        };
        Msg { row, recent, raw: raw.to_vec(), meta: MessageMeta::extract(raw), text: SearchText::from_raw(raw) }
    }

    fn ctx_of(msgs: &[Msg]) -> Context {
        Context { max_seq: msgs.len() as u32, max_uid: msgs.last().map_or(0, |m| m.row.uid) }
    }

    /// Sequence numbers of the matching messages. Also checks that every way of supplying the
    /// data gives the same answer: header block only, search text only, both; and that the
    /// row-only pre-filter never contradicts the full evaluation.
    fn search(msgs: &[Msg], query: &SearchQuery) -> Vec<u32> {
        let ctx = ctx_of(msgs);
        let mut out = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            let seq = i as u32 + 1;
            let header = &m.raw[..m.meta.header_len as usize];
            let full = Candidate {
                seq,
                row: &m.row,
                recent: m.recent,
                meta: Some(&m.meta),
                header: Some(header),
                text: Some(&m.text),
            };
            let r = query.matches(&full, &ctx);
            assert_eq!(query.decide(&full, &ctx), Some(r));
            let needs = query.needs();
            let minimal = Candidate {
                meta: needs.meta.then_some(&m.meta),
                header: needs.headers.then_some(header),
                text: needs.text.then_some(&m.text),
                ..full
            };
            assert_eq!(query.decide(&minimal, &ctx), Some(r), "minimal candidate, seq {seq}");
            let text_only = Candidate { header: None, ..full };
            assert_eq!(query.matches(&text_only, &ctx), r, "text-only candidate, seq {seq}");
            let whole_raw = Candidate { header: Some(&m.raw), ..full };
            assert_eq!(query.matches(&whole_raw, &ctx), r, "whole message as header, seq {seq}");
            if let Some(pre) = query.decide(&Candidate::new(seq, &m.row, m.recent), &ctx) {
                assert_eq!(pre, r, "pre-filter, seq {seq}");
            }
            if r {
                out.push(seq);
            }
        }
        out
    }

    fn mailbox() -> Vec<Msg> {
        use flag::*;
        vec![
            // 1
            msg(
                3,
                FLAGGED,
                &[],
                false,
                ts(1994, 1, 31, 10, 0, 0),
                b"From: \"Smith, John\" <john.smith@example.com>\r\n\
                  To: alice@example.org\r\n\
                  Subject: Meeting tomorrow\r\n\
                  Date: Mon, 31 Jan 1994 10:00:00 +0000\r\n\
                  Message-ID: <m1@example.com>\r\n\
                  \r\n\
                  Let us meet at noon.\r\n",
            ),
            // 2: local date 1 Feb, UTC 2 Feb.
            msg(
                7,
                SEEN | FLAGGED,
                &["$Label1"],
                false,
                ts(1994, 2, 1, 23, 30, -300),
                b"From: Bob <bob@example.com>\r\n\
                  To: alice@example.org\r\n\
                  Cc: carol@sub.example.net\r\n\
                  Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus Berlin\r\n\
                  Date: Tue, 01 Feb 1994 23:30:00 -0500\r\n\
                  MIME-Version: 1.0\r\n\
                  Content-Type: text/plain; charset=utf-8\r\n\
                  Content-Transfer-Encoding: quoted-printable\r\n\
                  \r\n\
                  Sch=C3=B6ne Gr=C3=BC=C3=9Fe\r\n\
                  von Bob\r\n",
            ),
            // 3: local date 2 Feb, UTC 1 Feb; no Date header.
            msg(
                8,
                ANSWERED | DRAFT,
                &[],
                true,
                ts(1994, 2, 2, 0, 30, 60),
                "From: =?ISO-8859-1?B?TfxsbGVy?= <mueller@example.de>\r\n\
                 To: \"Böb\" <bob@example.com>\r\n\
                 Bcc: secret@hidden.example\r\n\
                 X-Mailer: popbridge test\r\n\
                 Subject: Quarterly\r\n\treport\r\n\
                 MIME-Version: 1.0\r\n\
                 Content-Type: multipart/alternative; boundary=b\r\n\
                 \r\n\
                 --b\r\n\
                 Content-Type: text/plain\r\n\
                 Content-Transfer-Encoding: base64\r\n\
                 \r\n\
                 UXVhcnRlcmx5IG51bWJlcnMgYXJlIGF0dGFjaGVkIGJlbG93Lg==\r\n\
                 --b\r\n\
                 Content-Type: text/html\r\n\
                 \r\n\
                 <p>Numbers &amp; more</p>\r\n\
                 --b--\r\n"
                    .as_bytes(),
            ),
            // 4: sent 2 Feb (-1200), arrived 3 Feb.
            msg(
                12,
                DELETED | SEEN,
                &["Junk", "$Forwarded"],
                true,
                ts(1994, 2, 3, 12, 0, 0),
                &[
                    &b"From: smith@smithy.example\r\n\
                       Subject: Invoice\r\n\
                       Date: Wed, 2 Feb 1994 23:59:59 -1200\r\n\
                       Content-Type: text/html; charset=iso-8859-1\r\n\
                       \r\n\
                       <html><body><p><b>Total   due</b></p><p>Geb\xfchr</p>\r\n\
                       Amount:\r\n   10</body></html>\r\n"[..],
                    "<!-- padding -->".repeat(150).as_bytes(),
                ]
                .concat(),
            ),
            // 5: headers only, no Subject, no Date, empty X-Mailer.
            msg(20, 0, &[], true, ts(2024, 6, 1, 0, 0, 0), b"From: nobody@example.com\r\nX-Mailer:\r\n\r\n"),
        ]
    }

    fn check(msgs: &[Msg], line: &str, want: &[u32]) {
        assert_eq!(search(msgs, &q(line)), want, "{line}");
    }

    #[test]
    fn flags_and_session_keys() {
        let m = mailbox();
        for (line, want) in [
            ("ALL", &[1, 2, 3, 4, 5][..]),
            ("ANSWERED", &[3]),
            ("UNANSWERED", &[1, 2, 4, 5]),
            ("DELETED", &[4]),
            ("UNDELETED", &[1, 2, 3, 5]),
            ("DRAFT", &[3]),
            ("UNDRAFT", &[1, 2, 4, 5]),
            ("FLAGGED", &[1, 2]),
            ("UNFLAGGED", &[3, 4, 5]),
            ("SEEN", &[2, 4]),
            ("UNSEEN", &[1, 3, 5]),
            ("RECENT", &[3, 4, 5]),
            ("OLD", &[1, 2]),
            ("NEW", &[3, 5]),
            ("NOT NEW", &[1, 2, 4]),
            ("NOT OLD", &[3, 4, 5]),
            ("RECENT SEEN", &[4]),
            ("SEEN UNSEEN", &[]),
            ("NOT ALL", &[]),
            ("UNSEEN UNDELETED UNFLAGGED", &[3, 5]),
            ("KEYWORD $label1", &[2]),
            ("KEYWORD $LABEL1", &[2]),
            ("UNKEYWORD $Label1", &[1, 3, 4, 5]),
            ("KEYWORD junk", &[4]),
            ("KEYWORD $Forwarded UNKEYWORD Junk", &[]),
            ("KEYWORD Seen", &[]),
            ("UNKEYWORD Seen", &[1, 2, 3, 4, 5]),
        ] {
            check(&m, &format!("a SEARCH {line}\r\n"), want);
            assert!(q(&format!("a SEARCH {line}\r\n")).needs().rows_only(), "{line}");
        }
        assert!(q("a SEARCH NOT ALL\r\n").matches_nothing());
        assert!(q("a SEARCH SEEN UNSEEN\r\n").matches_nothing());
    }

    #[test]
    fn sizes() {
        let m = mailbox();
        let s4 = m[3].row.size;
        assert!(s4 > 2000);
        check(&m, &format!("a SEARCH LARGER {}\r\n", s4 - 1), &[4]);
        check(&m, &format!("a SEARCH LARGER {s4}\r\n"), &[]);
        check(&m, &format!("a SEARCH SMALLER {}\r\n", s4 + 1), &[1, 2, 3, 4, 5]);
        check(&m, &format!("a SEARCH SMALLER {s4}\r\n"), &[1, 2, 3, 5]);
        check(&m, "a SEARCH LARGER 0\r\n", &[1, 2, 3, 4, 5]);
        check(&m, "a SEARCH SMALLER 0\r\n", &[]);
        check(&m, "a SEARCH LARGER 4294967295\r\n", &[]);
    }

    #[test]
    fn sequence_and_uid_sets() {
        let m = mailbox(); // UIDs 3 7 8 12 20
        for (line, want) in [
            ("a SEARCH 2,4:*\r\n", &[2, 4, 5][..]),
            ("a SEARCH *\r\n", &[5]),
            ("a SEARCH 7:*\r\n", &[5]),
            ("a SEARCH *:7\r\n", &[5]),
            ("a SEARCH *:4\r\n", &[4, 5]),
            ("a SEARCH 4:2\r\n", &[2, 3, 4]),
            ("a SEARCH 1,1,2:3,3:1\r\n", &[1, 2, 3]),
            ("a SEARCH *:*\r\n", &[5]),
            ("a SEARCH 9\r\n", &[]),
            ("a SEARCH 6:9\r\n", &[]),
            ("a SEARCH NOT 2:4\r\n", &[1, 5]),
            ("a SEARCH 1:3 UID 7:*\r\n", &[2, 3]),
            ("a UID SEARCH UID 8:*\r\n", &[3, 4, 5]),
            ("a UID SEARCH UID 25:*\r\n", &[5]),
            ("a UID SEARCH UID *\r\n", &[5]),
            ("a UID SEARCH UID 1:7\r\n", &[1, 2]),
            ("a UID SEARCH UID 7:1\r\n", &[1, 2]),
            ("a UID SEARCH UID 4:6\r\n", &[]),
            ("a UID SEARCH UID 3,12,99\r\n", &[1, 4]),
            ("a UID SEARCH 1:2 UID 3:4294967295\r\n", &[1, 2]),
        ] {
            check(&m, line, want);
        }
        // `*` is resolved against the context, not the set: one query, different mailboxes.
        let query = q("a SEARCH 3:*\r\n");
        let row = &m[0].row;
        let cand = |seq| Candidate::new(seq, row, false);
        assert!(query.matches(&cand(2), &Context { max_seq: 2, max_uid: 3 })); // 2:3
        assert!(!query.matches(&cand(1), &Context { max_seq: 2, max_uid: 3 }));
        assert!(query.matches(&cand(3), &Context { max_seq: 10, max_uid: 3 }));
        assert!(query.matches(&cand(10), &Context { max_seq: 10, max_uid: 3 }));
        assert!(!query.matches(&cand(2), &Context { max_seq: 10, max_uid: 3 }));
        // A sequence number beyond the context (inconsistent caller): 3:* with * = 2 is 2:3.
        assert!(query.matches(&cand(3), &Context { max_seq: 2, max_uid: 3 }));
        assert!(!query.matches(&cand(4), &Context { max_seq: 2, max_uid: 3 }));
        assert!(!q("a SEARCH *\r\n").matches(&cand(1), &Context::default()));
    }

    #[test]
    fn internal_dates_in_their_own_offset() {
        let m = mailbox();
        for (line, want) in [
            ("ON 31-Jan-1994", &[1][..]),
            ("ON 1-Feb-1994", &[2]), // 23:30 -0500 on 1 Feb is 04:30 UTC on 2 Feb
            ("ON 2-Feb-1994", &[3]), // 00:30 +0100 on 2 Feb is 23:30 UTC on 1 Feb
            ("ON 3-Feb-1994", &[4]),
            ("ON 4-Feb-1994", &[]),
            ("BEFORE 2-Feb-1994", &[1, 2]),
            ("BEFORE 31-Jan-1994", &[]),
            ("SINCE 2-Feb-1994", &[3, 4, 5]),
            ("SINCE 1-Feb-1994", &[2, 3, 4, 5]),
            ("SINCE 2-Jun-2024", &[]),
            ("SINCE 1-Feb-1994 BEFORE 3-Feb-1994", &[2, 3]),
            ("NOT ON 1-Feb-1994", &[1, 3, 4, 5]),
        ] {
            check(&m, &format!("a SEARCH {line}\r\n"), want);
            assert!(q(&format!("a SEARCH {line}\r\n")).needs().rows_only());
        }
        // Extreme offsets and dates before 1970.
        let d = |t: Timestamp| local_day(&t);
        assert_eq!(d(ts(2024, 3, 1, 23, 59, -12 * 60)), days_from_civil(2024, 3, 1));
        assert_eq!(d(ts(2024, 3, 1, 0, 0, 14 * 60)), days_from_civil(2024, 3, 1));
        assert_eq!(d(ts(1969, 12, 31, 23, 59, 0)), -1);
        assert_eq!(d(Timestamp { unix: i64::MAX, offset_minutes: i32::MAX }), i64::MAX / 86_400);
        assert_eq!(d(Timestamp { unix: i64::MIN, offset_minutes: i32::MIN }), i64::MIN.div_euclid(86_400));
    }

    #[test]
    fn sent_dates_fall_back_to_internaldate() {
        let m = mailbox();
        for (line, want) in [
            ("SENTON 31-Jan-1994", &[1][..]),
            ("SENTON 1-Feb-1994", &[2]),
            ("SENTON 2-Feb-1994", &[3, 4]), // 3: no Date, INTERNALDATE; 4: 23:59:59 -1200
            ("SENTBEFORE 2-Feb-1994", &[1, 2]),
            ("SENTSINCE 3-Feb-1994", &[5]),
            ("SENTSINCE 2-Feb-1994 ON 3-Feb-1994", &[4]),
        ] {
            let query = q(&format!("a SEARCH {line}\r\n"));
            assert_eq!(query.needs(), Needs { meta: true, ..Needs::default() }, "{line}");
            assert_eq!(search(&m, &query), want, "{line}");
        }
        assert_eq!(m[3].meta.date.map(|t| local_day(&t)), Some(days_from_civil(1994, 2, 2)));
    }

    #[test]
    fn rfc3501_examples() {
        let m = mailbox();
        check(&m, "A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n", &[2]);
        check(&m, "A283 SEARCH TEXT \"string not in mailbox\"\r\n", &[]);
        assert_eq!(search(&m, &query(b"A284 SEARCH CHARSET UTF-8 TEXT {6}\r\nGr\xc3\xbc\xc3\x9f\r\n").unwrap()), [2]);
        // §6.4.4 prose: "DELETED FROM "SMITH" SINCE 1-Feb-1994".
        check(&m, "a SEARCH DELETED FROM \"SMITH\" SINCE 1-Feb-1994\r\n", &[4]);
        check(&m, "a SEARCH OR DELETED FLAGGED\r\n", &[1, 2, 4]);
        check(&m, "a UID SEARCH OR FLAGGED (SUBJECT \"x\" LARGER 100)\r\n", &[1, 2]);
        check(&m, "a UID SEARCH OR FLAGGED (SUBJECT \"voice\" LARGER 100)\r\n", &[1, 2, 4]);
        check(&m, "a SEARCH UNSEEN SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n", &[3, 5]);
        check(&m, "a SEARCH (OR (SEEN DELETED) (ANSWERED) NOT (RECENT))\r\n", &[]);
        check(&m, "a SEARCH (OR (SEEN DELETED) (ANSWERED) NOT (OLD))\r\n", &[3, 4]);
        check(&m, "a SEARCH NOT (OR SEEN (NOT RECENT))\r\n", &[3, 5]);
        check(&m, "a SEARCH OR OR ANSWERED DELETED TO \"alice\"\r\n", &[1, 2, 3, 4]);
    }

    #[test]
    fn header_keys() {
        let m = mailbox();
        for (line, want) in [
            ("FROM \"smith\"", &[1, 4][..]),
            ("FROM \"John\"", &[1]),
            ("FROM \"example.com\"", &[1, 2, 5]),
            ("FROM \"bob@example.com\"", &[2]),
            ("FROM \"<bob@EXAMPLE.com>\"", &[2]),
            ("FROM \"\"", &[1, 2, 3, 4, 5]),
            ("TO \"alice@example.org\"", &[1, 2]),
            ("TO \"bob@example.com\"", &[3]),
            ("TO \"\"", &[1, 2, 3]),
            ("CC \"sub.example.net\"", &[2]),
            ("CC \"\"", &[2]),
            ("BCC \"hidden\"", &[3]),
            ("BCC \"\"", &[3]),
            ("SUBJECT \"meeting\"", &[1]),
            ("SUBJECT \"QUARTERLY REPORT\"", &[3]), // folded with CRLF TAB
            ("SUBJECT \"quarterly  report\"", &[3]),
            ("SUBJECT \"aus berlin\"", &[2]),
            ("SUBJECT \"=?UTF-8?Q?\"", &[]), // decoded, not raw
            ("SUBJECT \"\"", &[1, 2, 3, 4]),
            ("HEADER X-Mailer \"\"", &[3, 5]),
            ("HEADER x-MAILER \"POPBRIDGE\"", &[3]),
            ("HEADER X-Mailer \"popbridge test\"", &[3]),
            ("HEADER X-Nope \"\"", &[]),
            ("HEADER Message-ID \"m1@\"", &[1]),
            ("HEADER Content-Transfer-Encoding \"\"", &[2]), // top-level header only
            ("HEADER Date \"-0500\"", &[2]),
            ("HEADER \"Subject\" \"tomorrow\"", &[1]),
            ("NOT FROM \"example.\"", &[4]),
        ] {
            let query = q(&format!("a SEARCH {line}\r\n"));
            // Address keys also look at the parsed envelope (meta).
            let address = ["FROM", "TO", "CC", "BCC", "NOT FROM"].iter().any(|k| line.starts_with(&format!("{k} \"")));
            let meta = address && !line.ends_with("\"\"");
            assert_eq!(query.needs(), Needs { headers: true, meta, ..Needs::default() }, "{line}");
            assert_eq!(search(&m, &query), want, "{line}");
        }
        // Encoded words: RFC 2047 Q (UTF-8), B (ISO-8859-1), raw UTF-8 header.
        assert_eq!(search(&m, &query(b"a SEARCH CHARSET UTF-8 SUBJECT {7}\r\nGr\xc3\xbc\xc3\x9fe\r\n").unwrap()), [2]);
        // (A six-octet literal carries "Grüß": still a substring.)
        assert_eq!(search(&m, &query(b"a SEARCH CHARSET UTF-8 SUBJECT {6}\r\nGr\xc3\xbc\xc3\x9f\r\n").unwrap()), [2]);
        assert_eq!(search(&m, &q_lit("SUBJECT", "GRÜßE AUS")), [2]);
        assert_eq!(search(&m, &q_lit("SUBJECT", "GRÜSSE")), Vec::<u32>::new()); // no full folding
        assert_eq!(search(&m, &q_lit("FROM", "müller")), [3]);
        assert_eq!(search(&m, &q_lit("FROM", "MÜLLER <mueller@")), [3]);
        assert_eq!(search(&m, &q_lit("TO", "böb")), [3]);
        assert_eq!(search(&m, &q_lit("HEADER Subject", "grüße")), [2]);
        // US-ASCII is accepted.
        check(&m, "a SEARCH CHARSET us-ascii FROM \"bob\"\r\n", &[2]);
        check(&m, "a SEARCH CHARSET \"Utf-8\" FROM \"bob\"\r\n", &[2]);
    }

    #[test]
    fn body_and_text() {
        let m = mailbox();
        for (line, want) in [
            ("BODY \"meet at noon\"", &[1][..]),
            ("BODY \"meeting\"", &[]), // only in the subject
            ("TEXT \"meeting\"", &[1]),
            ("TEXT \"subject: meeting\"", &[1]),
            ("TEXT \"x-mailer: popbridge\"", &[3]),
            ("TEXT \"bob@example.com\"", &[2, 3]),
            ("BODY \"bob@example.com\"", &[]),
            ("BODY \"numbers are attached\"", &[3]), // base64 text/plain
            ("BODY \"numbers & more\"", &[3]),       // HTML entity decoded
            ("BODY \"<p>\"", &[]),                   // markup is not text
            ("BODY \"total due\"", &[4]),            // HTML, whitespace collapsed
            ("BODY \"amount: 10\"", &[4]),
            ("BODY \"padding\"", &[]), // HTML comment
            ("BODY \"VON BOB\"", &[2]),
            ("TEXT \"alice\"", &[1, 2]),
            ("NOT TEXT \"alice\"", &[3, 4, 5]),
        ] {
            let query = q(&format!("a SEARCH {line}\r\n"));
            assert_eq!(query.needs(), Needs { text: true, ..Needs::default() }, "{line}");
            assert_eq!(search(&m, &query), want, "{line}");
        }
        assert_eq!(search(&m, &q_lit("BODY", "SCHÖNE GRÜßE")), [2]); // QP UTF-8
        assert_eq!(search(&m, &q_lit("BODY", "GEBÜHR")), [4]); // ISO-8859-1 HTML
        assert_eq!(search(&m, &q_lit("BODY", "grüsse")), Vec::<u32>::new());
        // Empty BODY / TEXT: every message, no text needed.
        for line in ["a SEARCH BODY \"\"\r\n", "a SEARCH TEXT \"\"\r\n", "a SEARCH TEXT {0}\r\n\r\n"] {
            let query = q(line);
            assert!(query.needs().rows_only(), "{line}");
            assert_eq!(search(&m, &query), [1, 2, 3, 4, 5], "{line}");
        }
    }

    #[test]
    fn needs_and_prefilter() {
        let m = mailbox();
        let query = q("a SEARCH UNSEEN BODY \"noon\"\r\n");
        assert_eq!(query.needs(), Needs { text: true, ..Needs::default() });
        let ctx = ctx_of(&m);
        let pre: Vec<_> = m
            .iter()
            .enumerate()
            .map(|(i, x)| query.decide(&Candidate::new(i as u32 + 1, &x.row, x.recent), &ctx))
            .collect();
        assert_eq!(pre, [None, Some(false), None, Some(false), None]);
        // Missing data is unknown: neither the key nor its negation matches.
        let bare = Candidate::new(1, &m[0].row, false);
        assert!(!q("a SEARCH BODY \"noon\"\r\n").matches(&bare, &ctx));
        assert!(!q("a SEARCH NOT BODY \"noon\"\r\n").matches(&bare, &ctx));
        assert!(q("a SEARCH OR FLAGGED BODY \"noon\"\r\n").matches(&bare, &ctx));
        assert_eq!(q("a SEARCH OR UNFLAGGED BODY \"noon\"\r\n").decide(&bare, &ctx), None);
        assert!(!q("a SEARCH SENTON 1-Jan-2000\r\n").matches(&bare, &ctx));
        assert!(!q("a SEARCH NOT FROM \"x\"\r\n").matches(&bare, &ctx));
        assert_eq!(
            q("a SEARCH OR TEXT \"a\" (SENTBEFORE 1-Jan-2000 SUBJECT \"b\")\r\n").needs(),
            Needs { meta: true, headers: true, text: true }
        );
        assert_eq!(q("a SEARCH NOT HEADER X-A \"\"\r\n").needs(), Needs { headers: true, ..Needs::default() });
        assert!(q("a SEARCH 1:* UID 5 SINCE 1-Jan-2000 KEYWORD x LARGER 5\r\n").needs().rows_only());
    }

    #[test]
    fn charset_and_string_errors() {
        assert_eq!(query(b"a SEARCH CHARSET ISO-8859-1 ALL\r\n").unwrap_err(), SearchError::BadCharset);
        assert_eq!(query(b"a SEARCH CHARSET \"KOI8-R\" TEXT \"x\"\r\n").unwrap_err(), SearchError::BadCharset);
        assert_eq!(query(b"a SEARCH CHARSET UTF8 ALL\r\n").unwrap_err(), SearchError::BadCharset);
        assert!(query(b"a SEARCH CHARSET UTF-8 ALL\r\n").is_ok());
        assert!(query(b"a SEARCH CHARSET US-ASCII ALL\r\n").is_ok());
        assert!(query(b"a SEARCH ALL\r\n").is_ok());
        assert_eq!(query(b"a SEARCH CHARSET UTF-8 SUBJECT {2}\r\n\xff\xfe\r\n").unwrap_err(), SearchError::InvalidUtf8);
        assert_eq!(query(b"a SEARCH HEADER {1}\r\n\xe9 \"x\"\r\n").unwrap_err(), SearchError::InvalidUtf8);
        assert_eq!(query(b"a SEARCH OR ALL BODY {1}\r\n\x80\r\n").unwrap_err(), SearchError::InvalidUtf8);
        assert_eq!(SearchError::BadCharset.to_string(), "unsupported charset (use UTF-8 or US-ASCII)");
        assert_eq!(CHARSETS.join(" "), "UTF-8 US-ASCII");
    }

    /// Comments and whitespace inside an address (RFC 5322 CFWS) do not hide it from FROM / TO /
    /// CC / BCC: the parsed address is compared as well as the field's text (Dovecot finds these).
    #[test]
    fn address_keys_see_through_comments() {
        let m = vec![
            msg(
                1,
                0,
                &[],
                false,
                ts(2022, 1, 1, 0, 0, 0),
                b"From: <user-from (comment)@ (comment) domain.org>\r\n\
                  To: user-to (c1) @ (c2) to.example (c3)\r\n\
                  Cc: Group: \"Carl\" <carl (x) @ cc.example>, dora@ (y) cc.example;\r\n\
                  Bcc: =?UTF-8?Q?B=C3=A4r?= <bear (hidden) @bcc.example>\r\n\
                  Subject: comments\r\n\r\nbody\r\n",
            ),
            msg(2, 0, &[], false, ts(2022, 1, 1, 0, 0, 0), b"From: other@domain.org\r\n\r\nbody\r\n"),
        ];
        for (line, want) in [
            ("FROM \"user-from@domain.org\"", &[1][..]),
            ("FROM \"USER-FROM@DOMAIN.ORG\"", &[1]),
            ("FROM \"comment\"", &[1]), // the text still counts
            ("FROM \"@domain.org\"", &[1, 2]),
            ("TO \"user-to@to.example\"", &[1]),
            ("CC \"carl@cc.example\"", &[1]),
            ("CC \"carl <carl@cc.example>\"", &[1]),
            ("CC \"dora@cc.example\"", &[1]),
            ("BCC \"bear@bcc.example\"", &[1]),
            ("NOT FROM \"user-from@domain.org\"", &[2]),
            ("OR FROM \"x@y\" TO \"user-to@to.example\"", &[1]),
            ("TO \"other@domain.org\"", &[]),
        ] {
            assert_eq!(search(&m, &q(&format!("a SEARCH {line}\r\n"))), want, "{line}");
        }
        assert_eq!(search(&m, &q_lit("BCC", "bär <bear@bcc")), [1]); // the decoded name
    }

    #[test]
    fn within_compares_internaldate_with_now() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let at = |ago: i64| Timestamp { unix: now - ago, offset_minutes: 120 };
        let m = vec![
            msg(1, 0, &[], false, at(3 * 86_400), b"Subject: a\r\n\r\n"),
            msg(2, 0, &[], false, at(3600), b"Subject: b\r\n\r\n"),
            msg(3, 0, &[], false, at(10), b"Subject: c\r\n\r\n"),
        ];
        for (line, want) in [
            ("OLDER 86400", &[1][..]),
            ("YOUNGER 86400", &[2, 3]),
            ("YOUNGER 600", &[3]),
            ("OLDER 600", &[1, 2]),
            ("OLDER 600 YOUNGER 7200", &[2]),
            ("NOT YOUNGER 600", &[1, 2]),
            ("OLDER 4294967295", &[]),
            ("YOUNGER 4294967295", &[1, 2, 3]),
        ] {
            let query = q(&format!("a SEARCH {line}\r\n"));
            assert!(query.needs().rows_only(), "{line}");
            assert_eq!(search(&m, &query), want, "{line}");
        }
    }

    #[test]
    fn deep_keys_are_refused_not_overflowed() {
        let mut key = SearchKey::All;
        for _ in 0..200 {
            key = SearchKey::Not(Box::new(key));
        }
        assert_eq!(SearchQuery::new(&key, None).unwrap_err(), SearchError::TooDeep);
        let mut key = SearchKey::All;
        for _ in 0..60 {
            key = SearchKey::Not(Box::new(key));
        }
        assert!(SearchQuery::new(&key, None).unwrap().needs().rows_only());
    }

    #[test]
    fn num_set_merging() {
        let set = |s: &str| NumSet::new(&SequenceSet::try_from(s).unwrap());
        assert_eq!(set("5,1:3,4,10:8,9").ranges, [(1, 5), (8, 10)]);
        assert_eq!(set("4294967295,1").ranges, [(1, 1), (4294967295, 4294967295)]);
        let s = set("10:*,3:*,7");
        assert_eq!(s.star_ranges, Some((3, 10)));
        assert!(s.contains(3, 5) && s.contains(5, 5) && !s.contains(2, 5));
        assert!(s.contains(7, 5) && s.contains(10, 5) && !s.contains(11, 5));
        assert!(!s.contains(0, 0));
    }

    #[test]
    fn folding() {
        let fold = |s: &str, trim| {
            let mut o = String::new();
            fold_into(&mut o, s, trim);
            o
        };
        assert_eq!(fold("  Hello \r\n\t WORLD \u{a0} ", true), "hello world");
        assert_eq!(fold("  Hello  ", false), " hello ");
        assert_eq!(fold("ΟΔΟΣ Straße İ", true), "οδοσ straße i\u{307}");
        assert_eq!(fold("οδος", true), "οδοσ");
        assert_eq!(fold("", false), "");
        assert_eq!(fold("   ", false), " ");
        assert_eq!(fold("   ", true), "");
    }

    /// Arbitrary bytes never panic anywhere.
    #[test]
    fn garbage_does_not_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet =
            b"ab:= ?\r\n\t\0\xff\xc3\x80Q=?utf-8?b?Subject:From:--bContent-Type: multipart/mixed; boundary=b\r\n";
        let queries = [
            q("a SEARCH TEXT \"a\"\r\n"),
            q("a SEARCH OR FROM \"b\" HEADER Subject \"\"\r\n"),
            q("a SEARCH NOT SUBJECT \"q\"\r\n"),
        ];
        let row = mailbox().remove(0).row;
        for _ in 0..2000 {
            let len = (next() % 200) as usize;
            let raw: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            let text = SearchText::from_raw(&raw);
            let c = Candidate { header: Some(&raw), text: Some(&text), ..Candidate::new(1, &row, false) };
            for query in &queries {
                let _ = query.matches(&c, &Context { max_seq: 1, max_uid: 3 });
            }
        }
    }

    fn gen_corpus(count: usize, seed: u32) -> (tempfile::TempDir, Vec<Vec<u8>>) {
        let dir = crate::store::private_tempdir();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gen-mail.py");
        let script = if std::path::Path::new(script).exists() { script } else { "/work/main/tests/data/gen-mail.py" };
        let out = std::process::Command::new("python3")
            .args([script, "--count", &count.to_string(), "--seed", &seed.to_string(), "--eml-dir"])
            .arg(dir.path())
            .output()
            .expect("python3 is required to generate the test corpus");
        assert!(out.status.success(), "gen-mail.py failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut paths: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        let raws: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
        assert_eq!(raws.len(), count);
        (dir, raws)
    }

    /// Words of each message's subject, as mail-parser (an independent decoder) reads it, find that
    /// message with SUBJECT — through the header block and through the search text — and TEXT
    /// finds it too.
    #[test]
    fn corpus_subject_words_find_their_message() {
        let (_dir, raws) = gen_corpus(200, 3);
        let msgs: Vec<Msg> = raws
            .iter()
            .enumerate()
            .map(|(i, raw)| msg(i as u32 + 1, 0, &[], false, ts(2020, 1, 1, 0, 0, 0), raw))
            .collect();
        let ctx = ctx_of(&msgs);
        let parser = mail_parser::MessageParser::default();
        let (mut searched, mut non_ascii, mut full_scans) = (0, 0, 0);
        for (i, m) in msgs.iter().enumerate() {
            let Some(parsed) = parser.parse(&m.raw) else { continue };
            let Some(subject) = parsed.subject() else { continue };
            let words: Vec<&str> = subject.split_whitespace().filter(|w| !w.contains('\u{FFFD}')).take(6).collect();
            for (k, word) in words.iter().enumerate() {
                searched += 1;
                non_ascii += usize::from(!word.is_ascii());
                let query = q_lit("SUBJECT", word);
                let seq = i as u32 + 1;
                let header = &m.raw[..m.meta.header_len as usize];
                let by_header = Candidate { header: Some(header), ..Candidate::new(seq, &m.row, false) };
                let by_text = Candidate { text: Some(&m.text), ..Candidate::new(seq, &m.row, false) };
                assert!(query.matches(&by_header, &ctx), "message {seq}: SUBJECT {word:?} (subject {subject:?})");
                assert!(query.matches(&by_text, &ctx), "message {seq}: SUBJECT {word:?} via text");
                assert!(q_lit("TEXT", word).matches(&by_text, &ctx), "message {seq}: TEXT {word:?}");
                if k == 0 {
                    // Over the whole mailbox both paths agree, and every hit really has the word.
                    full_scans += 1;
                    let hits = search(&msgs, &query);
                    assert!(hits.contains(&seq));
                    let lw = word.to_lowercase();
                    for h in hits {
                        let s =
                            parser.parse(&msgs[h as usize - 1].raw).and_then(|p| p.subject().map(str::to_lowercase));
                        if let Some(s) = s.filter(|s| !s.contains('\u{FFFD}')) {
                            let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
                            assert!(s.contains(&lw), "{h} matched SUBJECT {word:?} but its subject is {s:?}");
                        }
                    }
                }
            }
        }
        assert!(searched > 500, "only {searched} subject words");
        assert!(non_ascii > 10, "only {non_ascii} non-ASCII subject words");
        assert!(full_scans > 150);
    }

    /// Words of single-part text/plain bodies (mail-parser's decoding) are found by BODY.
    #[test]
    fn corpus_body_words_find_their_message() {
        let (_dir, raws) = gen_corpus(200, 3);
        let parser = mail_parser::MessageParser::default();
        let mut checked = 0;
        let row = mailbox().remove(0).row;
        for raw in &raws {
            let meta = MessageMeta::extract(raw);
            if !meta.part.subtype.eq_ignore_ascii_case("plain") || !meta.part.children.is_empty() {
                continue;
            }
            let Some(parsed) = parser.parse(raw) else { continue };
            let Some(body) = parsed.body_text(0) else { continue };
            let text = SearchText::from_raw(raw);
            let c = Candidate { text: Some(&text), ..Candidate::new(1, &row, false) };
            let words: Vec<&str> = body.split_whitespace().filter(|w| !w.contains('\u{FFFD}')).collect();
            for w in words.iter().step_by(7).take(10) {
                checked += 1;
                assert!(q_lit("BODY", w).matches(&c, &Context::default()), "BODY {w:?} in {body:?}");
            }
            if words.len() >= 3 {
                let phrase = words[..3].join(" ");
                assert!(q_lit("BODY", &phrase).matches(&c, &Context::default()), "BODY {phrase:?}");
            }
        }
        assert!(checked > 50, "only {checked} body words");
    }
}
