//! A client-side model of one selected IMAP mailbox, fed with EVERY response line a session
//! receives, that counts what a careful client would call a server bug:
//!
//! - a FETCH carrying a keyword that no earlier `* FLAGS` announced (RFC 3501 §7.2.6: FLAGS lists
//!   the flags and keywords defined in the mailbox; a client builds its keyword list from it);
//! - EXISTS below the number of messages the client already knows (§7.3.1: it never decreases
//!   except through EXPUNGE/VANISHED);
//! - EXPUNGE of sequence number 0 or beyond the count (§7.4.1), a FETCH for a sequence number that
//!   does not exist, and, once QRESYNC is enabled, EXPUNGE at all (RFC 7162 §3.2.10: VANISHED
//!   instead);
//! - a FETCH that gives a live message another UID, or a UID that breaks the ascending order
//!   (§2.3.1.1: UIDs ascend with sequence numbers and never change within a session);
//! - with CONDSTORE on: a message's MODSEQ going down, or its flags changing while its MODSEQ stays
//!   (RFC 7162 §3.1.1: every change gets a higher mod-sequence), HIGHESTMODSEQ going down
//!   (§3.1.2.1). (Not judged: a tagged `OK [HIGHESTMODSEQ n]` below a MODSEQ that an untagged
//!   FETCH reported: Dovecot does that, and RFC 5162 erratum 1810 asks for it while expunges with
//!   lower mod-sequences are still to be reported; a lower value only makes a resync ask for more.)
//! - with QRESYNC on: VANISHED (without EARLIER) naming a UID the model cannot have (§3.2.10: it
//!   reduces the EXISTS count by the number of UIDs, so each must be a message the client knows of);
//! - UIDVALIDITY changing while the mailbox is selected.
//!
//! Messages announced by EXISTS whose UIDs the session has not learned yet are kept as unknown
//! slots; a later FETCH binds them (and must keep the order). A session's own `.SILENT` STORE makes
//! the affected messages' flags unknown (the server need not report them), so only flags the server
//! reported are compared at the end ([`Model::compare`]).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use super::imap_clients::parse_fetch;

/// One message the model knows of (by its sequence number, the index + 1).
#[derive(Clone, Debug, Default)]
pub struct Msg {
    pub uid: Option<u32>,
    /// The flags last reported (without `\Recent`), or None when unknown.
    pub flags: Option<BTreeSet<String>>,
    /// The MODSEQ last reported, and the flags reported with it (if the same FETCH had FLAGS).
    pub modseq: Option<(u64, Option<BTreeSet<String>>)>,
}

/// The kinds of violation, as counted (stable names for reports).
pub const KINDS: &[&str] = &[
    "keyword not announced by FLAGS",
    "EXISTS decreased",
    "EXPUNGE out of range",
    "EXPUNGE after ENABLE QRESYNC",
    "FETCH of a nonexistent message",
    "UID of a live message changed",
    "UID out of order or twice",
    "MODSEQ decreased",
    "flags changed without a new MODSEQ",
    "HIGHESTMODSEQ decreased",
    "VANISHED of a UID the client cannot have",
    "UIDVALIDITY changed",
    "unparsable FETCH",
    "BAD for a valid command",
    "final state differs from a fresh SELECT",
];

/// How many example lines are kept per kind of violation.
const SAMPLES: usize = 5;

#[derive(Debug, Default)]
pub struct Model {
    pub msgs: Vec<Msg>,
    /// Keywords (lower-cased) of the last `* FLAGS` response.
    pub announced: BTreeSet<String>,
    /// The last PERMANENTFLAGS list, as sent.
    pub permanent: Option<String>,
    pub uidvalidity: Option<u32>,
    pub highestmodseq: Option<u64>,
    /// CONDSTORE is on for this session (enabled, or SELECT (CONDSTORE)): MODSEQs are checked.
    pub condstore: bool,
    /// QRESYNC is enabled: VANISHED replaces EXPUNGE.
    pub qresync: bool,
    /// Violation counts by kind.
    pub violations: BTreeMap<&'static str, u64>,
    /// A few offending lines per kind, for the report.
    pub samples: BTreeMap<&'static str, Vec<String>>,
    /// Untagged lines seen, FETCH responses checked (both for the report).
    pub lines: u64,
    pub fetches: u64,
    pub keyword_fetches: u64,
    pub modseq_fetches: u64,
    pub vanished: u64,
}

/// `(a b c)` or `a b c` → the words, parentheses stripped.
fn words(list: &str) -> Vec<String> {
    list.trim().trim_start_matches('(').trim_end_matches(')').split_ascii_whitespace().map(String::from).collect()
}

fn is_keyword(flag: &str) -> bool {
    !flag.starts_with('\\')
}

/// Flags without `\Recent` (session-specific, never part of a comparison).
fn flag_set(flags: &[String]) -> BTreeSet<String> {
    flags.iter().filter(|f| !f.eq_ignore_ascii_case("\\Recent")).map(|f| f.to_ascii_lowercase()).collect()
}

/// A sequence set or UID set of numbers (`1:3,7`, no `*`) as its members.
pub fn parse_set(set: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in set.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                let (lo, hi) = (a.min(b), a.max(b));
                if hi - lo > 1_000_000 {
                    return None;
                }
                out.extend(lo..=hi);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// The argument of `[NAME arg]` in a line, upper-case NAME.
fn code<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let upper = line.to_ascii_uppercase();
    let needle = format!("[{name} ");
    let start = upper.find(&needle)? + needle.len();
    let end = start + line[start..].find(']')?;
    Some(&line[start..end])
}

impl Model {
    pub fn new(condstore: bool, qresync: bool) -> Model {
        Model { condstore, qresync, ..Model::default() }
    }

    pub fn count(&self) -> usize {
        self.msgs.len()
    }

    pub fn total(&self) -> u64 {
        self.violations.values().sum()
    }

    pub fn violation(&mut self, kind: &'static str, detail: String) {
        debug_assert!(KINDS.contains(&kind), "{kind}");
        *self.violations.entry(kind).or_default() += 1;
        let s = self.samples.entry(kind).or_default();
        if s.len() < SAMPLES {
            s.push(detail);
        }
    }

    /// A new SELECT/EXAMINE begins: the message list and the keyword list start over
    /// (HIGHESTMODSEQ and UIDVALIDITY are the mailbox's and stay, to be compared).
    pub fn begin_select(&mut self) {
        self.msgs.clear();
        self.announced.clear();
        self.permanent = None;
    }

    /// The known UIDs, by sequence number (None for a slot not yet learned).
    pub fn uids(&self) -> Vec<Option<u32>> {
        self.msgs.iter().map(|m| m.uid).collect()
    }

    /// The UIDs known, in sequence order.
    pub fn known_uids(&self) -> Vec<u32> {
        self.msgs.iter().filter_map(|m| m.uid).collect()
    }

    /// This session's own STORE .SILENT on these sequence numbers succeeded: their flags are now
    /// unknown (the server need not say what they became).
    pub fn forget_flags(&mut self, seqs: &[u32]) {
        for &s in seqs {
            if let Some(m) = self.msgs.get_mut(s as usize - 1) {
                m.flags = None;
                if let Some((_, f)) = &mut m.modseq {
                    *f = None;
                }
            }
        }
    }

    /// Same, by UID.
    pub fn forget_flags_of_uids(&mut self, uids: &[u32]) {
        for m in &mut self.msgs {
            if m.uid.is_some_and(|u| uids.contains(&u)) {
                m.flags = None;
                if let Some((_, f)) = &mut m.modseq {
                    *f = None;
                }
            }
        }
    }

    /// Feeds every line of a reply (untagged and tagged; continuation lines are ignored).
    pub fn feed_all(&mut self, raw: &[Vec<u8>]) {
        for l in raw {
            self.feed(l);
        }
    }

    /// Feeds one response line (as `Raw` returns it: literals inlined).
    pub fn feed(&mut self, raw: &[u8]) {
        let line = String::from_utf8_lossy(raw).into_owned();
        if line.starts_with('+') {
            return;
        }
        self.lines += 1;
        // Response codes may come in untagged and tagged status lines alike.
        if let Some(v) = code(&line, "UIDVALIDITY").and_then(|v| v.trim().parse::<u32>().ok()) {
            if let Some(old) = self.uidvalidity
                && old != v
            {
                self.violation("UIDVALIDITY changed", format!("{old} → {v}: {line}"));
            }
            self.uidvalidity = Some(v);
        }
        if let Some(v) = code(&line, "HIGHESTMODSEQ").and_then(|v| v.trim().parse::<u64>().ok()) {
            self.highestmodseq_seen(v, &line);
        }
        if let Some(p) = code(&line, "PERMANENTFLAGS") {
            self.permanent = Some(p.to_string());
        }
        let Some(rest) = line.strip_prefix("* ") else { return };
        let mut w = rest.splitn(3, ' ');
        let (first, second) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
        if first.eq_ignore_ascii_case("FLAGS") {
            let list = &rest[first.len()..];
            self.announced =
                words(list).into_iter().filter(|f| is_keyword(f)).map(|f| f.to_ascii_lowercase()).collect();
            return;
        }
        if first.eq_ignore_ascii_case("VANISHED") {
            self.vanished_line(&rest[first.len()..], &line);
            return;
        }
        let Ok(n) = first.parse::<u32>() else { return };
        match second.to_ascii_uppercase().as_str() {
            "EXISTS" => {
                let len = self.count() as u32;
                if n < len {
                    self.violation("EXISTS decreased", format!("{line} (the client knows {len})"));
                    self.msgs.truncate(n as usize);
                } else {
                    self.msgs.resize(n as usize, Msg::default());
                }
            }
            "EXPUNGE" => {
                if self.qresync {
                    self.violation("EXPUNGE after ENABLE QRESYNC", line.clone());
                }
                let len = self.count() as u32;
                if n == 0 || n > len {
                    self.violation("EXPUNGE out of range", format!("{line} (the client knows {len})"));
                } else {
                    self.msgs.remove(n as usize - 1);
                }
            }
            "FETCH" => self.fetch(n, raw, &line),
            _ => {}
        }
    }

    fn highestmodseq_seen(&mut self, v: u64, line: &str) {
        if let Some(old) = self.highestmodseq
            && v < old
        {
            self.violation("HIGHESTMODSEQ decreased", format!("{old} → {v}: {line}"));
        }
        self.highestmodseq = Some(self.highestmodseq.map_or(v, |o| o.max(v)));
    }

    fn vanished_line(&mut self, args: &str, line: &str) {
        self.vanished += 1;
        let args = args.trim();
        let (earlier, set) = match args.strip_prefix("(EARLIER)").or_else(|| args.strip_prefix("(earlier)")) {
            Some(s) => (true, s.trim()),
            None => (false, args),
        };
        let Some(uids) = parse_set(set) else {
            self.violation("VANISHED of a UID the client cannot have", format!("unparsable: {line}"));
            return;
        };
        for uid in uids {
            if let Some(i) = self.msgs.iter().position(|m| m.uid == Some(uid)) {
                self.msgs.remove(i);
                continue;
            }
            if earlier {
                continue; // (EARLIER) may name UIDs the client never knew (RFC 7162 §3.2.10)
            }
            match self.unknown_slot_for(uid) {
                Some(i) => {
                    self.msgs.remove(i);
                }
                None => self.violation(
                    "VANISHED of a UID the client cannot have",
                    format!("UID {uid} (known: {:?}): {line}", self.known_uids()),
                ),
            }
        }
    }

    /// An unknown slot where `uid` could be: after the last known UID below it and before the
    /// first known UID above it. Those slots form one run, so which of them is taken makes no
    /// difference to the model.
    fn unknown_slot_for(&self, uid: u32) -> Option<usize> {
        let mut slot = None;
        for (i, m) in self.msgs.iter().enumerate() {
            match m.uid {
                Some(u) if u < uid => slot = None,
                Some(_) => break,
                None => slot = slot.or(Some(i)),
            }
        }
        slot
    }

    fn fetch(&mut self, n: u32, raw: &[u8], line: &str) {
        self.fetches += 1;
        let len = self.count() as u32;
        if n == 0 || n > len {
            self.violation("FETCH of a nonexistent message", format!("{line} (the client knows {len})"));
            return;
        }
        let Some(f) = parse_fetch(raw) else {
            self.violation("unparsable FETCH", line.to_string());
            return;
        };
        let i = n as usize - 1;
        if let Some(uid) = f.uid() {
            match self.msgs[i].uid {
                Some(old) if old != uid => {
                    self.violation("UID of a live message changed", format!("seq {n} was UID {old}: {line}"));
                    self.msgs[i].uid = Some(uid);
                }
                Some(_) => {}
                None => {
                    let below = self.msgs[..i].iter().rev().find_map(|m| m.uid);
                    let above = self.msgs[i + 1..].iter().find_map(|m| m.uid);
                    if below.is_some_and(|b| b >= uid) || above.is_some_and(|a| a <= uid) {
                        self.violation(
                            "UID out of order or twice",
                            format!("seq {n} UID {uid} between {below:?} and {above:?}: {line}"),
                        );
                    }
                    self.msgs[i].uid = Some(uid);
                }
            }
        }
        let flags = f.flags().map(|v| flag_set(&v));
        if let Some(flags) = &flags {
            self.keyword_fetches += u64::from(flags.iter().any(|f| is_keyword(f)));
            let missing: Vec<&String> =
                flags.iter().filter(|f| is_keyword(f) && !self.announced.contains(*f)).collect();
            if !missing.is_empty() {
                let detail = format!("{missing:?} not in FLAGS {:?}: {line}", self.announced);
                self.violation("keyword not announced by FLAGS", detail);
            }
        }
        let modseq = f.get("MODSEQ").and_then(|v| {
            let v = String::from_utf8_lossy(v);
            v.trim().trim_start_matches('(').trim_end_matches(')').trim().parse::<u64>().ok()
        });
        if let Some(ms) = modseq {
            self.modseq_fetches += 1;
            if self.condstore
                && let Some((old, old_flags)) = &self.msgs[i].modseq
            {
                if ms < *old {
                    self.violation("MODSEQ decreased", format!("seq {n}: {old} → {ms}: {line}"));
                } else if ms == *old
                    && let (Some(a), Some(b)) = (old_flags, &flags)
                    && a != b
                {
                    self.violation("flags changed without a new MODSEQ", format!("seq {n}: {a:?} → {b:?}: {line}"));
                }
            }
            // A FETCH of MODSEQ alone keeps the flags known for that same mod-sequence.
            let same = self.msgs[i].modseq.take().filter(|(old, _)| *old == ms).and_then(|(_, f)| f);
            self.msgs[i].modseq = Some((ms, flags.clone().or(same)));
        } else if flags.is_some()
            && let Some((_, f)) = &mut self.msgs[i].modseq
        {
            // FLAGS without MODSEQ: they belong to a mod-sequence the client does not know.
            *f = None;
        }
        if let Some(flags) = flags {
            self.msgs[i].flags = Some(flags);
        }
    }

    /// Compares the model with a fresh view (UIDs in order, and each message's flags): every
    /// difference is a violation. Returns how many messages had known flags to compare.
    pub fn compare(&mut self, fresh: &[(u32, Vec<String>)]) -> usize {
        let mut compared = 0;
        if fresh.len() != self.count() {
            self.violation(
                "final state differs from a fresh SELECT",
                format!("{} messages, a fresh SELECT has {}", self.count(), fresh.len()),
            );
            return 0;
        }
        let pairs: Vec<(Msg, (u32, Vec<String>))> = self.msgs.iter().cloned().zip(fresh.iter().cloned()).collect();
        for (seq, (m, (uid, flags))) in pairs.into_iter().enumerate() {
            if m.uid.is_some_and(|u| u != uid) {
                self.violation(
                    "final state differs from a fresh SELECT",
                    format!("seq {}: UID {:?}, fresh {uid}", seq + 1, m.uid),
                );
                continue;
            }
            if let Some(known) = &m.flags {
                compared += 1;
                let fresh = flag_set(&flags);
                if *known != fresh {
                    self.violation(
                        "final state differs from a fresh SELECT",
                        format!("UID {uid}: flags {known:?}, fresh {fresh:?}"),
                    );
                }
            }
        }
        compared
    }

    /// Adds another model's counts (for a total over sessions).
    pub fn absorb(&mut self, other: &Model) {
        for (k, v) in &other.violations {
            *self.violations.entry(k).or_default() += v;
        }
        for (k, v) in &other.samples {
            let s = self.samples.entry(k).or_default();
            for x in v {
                if s.len() < SAMPLES {
                    s.push(x.clone());
                }
            }
        }
        self.lines += other.lines;
        self.fetches += other.fetches;
        self.keyword_fetches += other.keyword_fetches;
        self.modseq_fetches += other.modseq_fetches;
        self.vanished += other.vanished;
    }

    /// The counts and examples, one kind a line.
    pub fn report(&self) -> String {
        let mut out = format!(
            "{} violation(s); {} lines, {} FETCH ({} with keywords, {} with MODSEQ), {} VANISHED\n",
            self.total(),
            self.lines,
            self.fetches,
            self.keyword_fetches,
            self.modseq_fetches,
            self.vanished
        );
        for (k, v) in &self.violations {
            out.push_str(&format!("  {v:>7}  {k}\n"));
            for s in self.samples.get(k).into_iter().flatten() {
                let s: String = s.chars().take(300).collect();
                out.push_str(&format!("             e.g. {s}\n"));
            }
        }
        out
    }
}

/// The checker's own promises: each rule fires on a made-up violation, and not on the lawful
/// sequence next to it.
mod checks {
    use super::*;

    fn fed<S: AsRef<str>>(condstore: bool, qresync: bool, lines: &[S]) -> Model {
        let mut m = Model::new(condstore, qresync);
        for l in lines {
            m.feed(l.as_ref().as_bytes());
        }
        m
    }

    fn kinds(m: &Model) -> Vec<&'static str> {
        m.violations.keys().copied().collect()
    }

    const SELECT: &[&str] = &[
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)",
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 \\*)] ok",
        "* 3 EXISTS",
        "* OK [UIDVALIDITY 7] ok",
        "* OK [HIGHESTMODSEQ 10] ok",
        "a1 OK [READ-WRITE] done",
        "* 1 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (3))",
        "* 2 FETCH (UID 6 FLAGS ($label1) MODSEQ (5))",
        "* 3 FETCH (UID 9 FLAGS () MODSEQ (9))",
    ];

    /// The SELECT above, then `extra`.
    fn with(extra: &[&str]) -> Vec<String> {
        SELECT.iter().chain(extra).map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_lawful_session_has_no_violations() {
        let m = fed(
            true,
            false,
            &with(&[
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 $Label2)",
                "* 1 FETCH (FLAGS (\\Seen $Label2) MODSEQ (11))",
                "* 1 FETCH (FLAGS (\\Seen $Label2) MODSEQ (11))",
                "* 2 EXPUNGE",
                "* 3 EXISTS",
                "* 3 FETCH (UID 12 FLAGS (\\Recent))",
                "a2 OK [HIGHESTMODSEQ 12] done",
            ]),
        );
        assert_eq!(m.total(), 0, "{}", m.report());
        assert_eq!(m.known_uids(), vec![4, 9, 12]);
    }

    #[test]
    fn each_rule_fires() {
        let cases: &[(&[&str], &str)] = &[
            (&["* 1 FETCH (FLAGS (\\Seen $Label3))"], "keyword not announced by FLAGS"),
            (&["* 2 EXISTS"], "EXISTS decreased"),
            (&["* 4 EXPUNGE"], "EXPUNGE out of range"),
            (&["* 4 FETCH (FLAGS ())"], "FETCH of a nonexistent message"),
            (&["* 2 FETCH (UID 7)"], "UID of a live message changed"),
            (&["* 4 EXISTS", "* 4 FETCH (UID 8)"], "UID out of order or twice"),
            (&["* 2 FETCH (FLAGS ($Label1) MODSEQ (4))"], "MODSEQ decreased"),
            (&["* 2 FETCH (FLAGS (\\Seen) MODSEQ (5))"], "flags changed without a new MODSEQ"),
            (&["a2 OK [HIGHESTMODSEQ 9] done"], "HIGHESTMODSEQ decreased"),
            (&["* OK [UIDVALIDITY 8] x"], "UIDVALIDITY changed"),
        ];
        for (extra, kind) in cases {
            let m = fed(true, false, &with(extra));
            assert_eq!(kinds(&m), vec![*kind], "{extra:?}: {}", m.report());
        }
        // Without CONDSTORE MODSEQs are not judged.
        let m = fed(false, false, &with(&["* 2 FETCH (FLAGS ($Label1) MODSEQ (4))"]));
        assert_eq!(m.total(), 0, "{}", m.report());
    }

    #[test]
    fn vanished_is_checked_against_known_and_unknown_messages() {
        // Lawful: a known UID, an unknown slot after EXISTS, and (EARLIER) naming anything.
        let m = fed(true, true, &with(&["* 5 EXISTS", "* VANISHED 6,13", "* VANISHED (EARLIER) 1:3,100"]));
        assert_eq!(m.total(), 0, "{}", m.report());
        assert_eq!(m.count(), 3);
        assert_eq!(m.uids(), vec![Some(4), Some(9), None]);
        // UID 5 cannot be anywhere: between the known 4 and 6 there is no slot.
        let m = fed(true, true, &with(&["* VANISHED 5"]));
        assert_eq!(kinds(&m), vec!["VANISHED of a UID the client cannot have"], "{}", m.report());
        // An unknown UID goes to the slots between its known neighbours, not to the first one.
        let m = fed(true, true, &["* 4 EXISTS", "* 3 FETCH (UID 10)", "* VANISHED 12", "* VANISHED 5"]);
        assert_eq!(m.total(), 0, "{}", m.report());
        assert_eq!(m.uids(), vec![None, Some(10)]);
        // EXPUNGE after ENABLE QRESYNC.
        let m = fed(true, true, &with(&["* 1 EXPUNGE"]));
        assert_eq!(kinds(&m), vec!["EXPUNGE after ENABLE QRESYNC"], "{}", m.report());
    }

    #[test]
    fn the_final_comparison_sees_missed_updates() {
        let mut m = fed(true, false, SELECT);
        let fresh = |f: &str| vec![(4, vec!["\\Seen".into()]), (6, vec![f.into()]), (9, vec![])];
        assert_eq!(m.compare(&fresh("$Label1")), 3);
        assert_eq!(m.total(), 0, "{}", m.report());
        m.compare(&fresh("\\Flagged"));
        assert_eq!(kinds(&m), vec!["final state differs from a fresh SELECT"]);
        // Flags forgotten after a silent STORE are not compared.
        let mut m = fed(true, false, SELECT);
        m.forget_flags(&[2]);
        assert_eq!(m.compare(&fresh("\\Flagged")), 2);
        assert_eq!(m.total(), 0, "{}", m.report());
    }

    #[test]
    fn sets_parse() {
        assert_eq!(parse_set("1:3,7,9:8"), Some(vec![1, 2, 3, 7, 8, 9]));
        assert_eq!(parse_set("x"), None);
    }
}
