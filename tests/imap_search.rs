//! SEARCH extensions against the test Dovecot: the same messages APPENDed (with the same
//! INTERNALDATEs and flags) to a fresh mailbox on Dovecot 2.3 and on popbridge, the same ESEARCH
//! (RFC 4731), SEARCHRES (RFC 5182), WITHIN (RFC 5032) and address-with-comments commands sent
//! to both, and the answers compared line by line (untagged responses exactly, the tagged one by
//! its status: the human-readable texts differ).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::util::Bridge;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::imap_clients::{Raw, Reply, Security, Target};

/// The messages: (flags, seconds before now for INTERNALDATE, message).
fn messages() -> Vec<(&'static str, i64, String)> {
    let m = |from: &str, to: &str, subject: &str| {
        format!(
            "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 7 Feb 2022 21:52:25 +0000\r\n\r\nText of {subject}.\r\n"
        )
    };
    vec![
        ("\\Seen", 400 * 86_400, m("Alice <alice@example.org>", "me@example.org", "one")),
        ("", 40 * 86_400, m("<user-from (comment)@ (comment) domain.org>", "me@example.org", "two")),
        // No date sits on a WITHIN limit of the test (300, 3600, 86400, 864000, 1000000 s): the two
        // servers are asked a second apart, and a message exactly 864000 s old is YOUNGER for one only.
        ("\\Flagged", 9 * 86_400, m("Bob <bob@example.net>", "user-to (c) @ (c) to.example", "three")),
        ("\\Seen \\Flagged", 5 * 86_400, m("carol@example.com", "me@example.org", "four")),
        ("", 2 * 86_400, m("Dave (the boss) <dave @ example.com>", "me@example.org", "five")),
        ("\\Seen", 7200, m("eve@example.org", "me@example.org", "six")),
        ("\\Flagged", 600, m("Fred <fred@domain.org>", "me@example.org", "seven")),
        ("", 60, m("gina@example.org", "Cc List: x@y.example;", "eight")),
        ("\\Deleted", 30, m("hal@domain.org", "me@example.org", "nine")),
    ]
}

/// An IMAP date-time `secs_ago` seconds before now.
fn date_time(secs_ago: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
    let t = now - secs_ago;
    let (y, m, d) = popbridge::mime::date::civil_from_days(t.div_euclid(86_400));
    let r = t.rem_euclid(86_400);
    let mon = popbridge::mime::date::MONTHS[(m - 1) as usize];
    format!("{d:02}-{mon}-{y} {:02}:{:02}:{:02} +0000", r / 3600, r % 3600 / 60, r % 60)
}

/// Logged in, mailbox `T` created, the messages appended, `T` selected.
fn prepared(t: &Target) -> Raw {
    let mut r = Raw::connect_login(t);
    assert!(r.cmd("c1", "CREATE T").ok(), "{}", r.log());
    for (i, (flags, ago, msg)) in messages().iter().enumerate() {
        let tag = format!("ap{i}");
        r.send(format!("{tag} APPEND T ({flags}) \"{}\" {{{}+}}\r\n{msg}\r\n", date_time(*ago), msg.len()).as_bytes());
        let rep = r.read_until_tagged(&tag);
        assert!(rep.ok(), "APPEND: {:?}\n{}", rep.lines, r.log());
    }
    assert!(r.cmd("s1", "SELECT T").ok(), "{}", r.log());
    r
}

/// What is compared of a reply: the untagged lines, and the tagged status word. EXPUNGE
/// responses are compared as the set of messages they remove (Dovecot reports them from the
/// highest down, popbridge from the lowest up: both are right), and `* n RECENT` (Dovecot's after
/// an expunge) is left out.
fn comparable(rep: &Reply) -> Vec<String> {
    let untagged = &rep.lines[..rep.lines.len().saturating_sub(1)];
    let mut alive: Vec<u32> = (1..=1000).collect();
    let mut expunged = Vec::new();
    let mut v = Vec::new();
    for l in untagged {
        let n =
            l.strip_prefix("* ").and_then(|r| r.split_once(' ')).and_then(|(n, w)| Some((n.parse::<usize>().ok()?, w)));
        match n {
            Some((n, "EXPUNGE")) if n >= 1 && n <= alive.len() => expunged.push(alive.remove(n - 1)),
            Some((_, "RECENT")) => {}
            _ => v.push(l.clone()),
        }
    }
    if !expunged.is_empty() {
        expunged.sort_unstable();
        v.push(format!("expunged {expunged:?}"));
    }
    v.push(rep.status());
    v
}

struct Both {
    _d: Dovecot,
    _b: Bridge,
    _daemon: crate::util::Daemon,
    dovecot: Raw,
    bridge: Raw,
}

impl Both {
    fn start() -> Both {
        let d = Dovecot::start(DovecotOpts::default());
        let b = Bridge::with_listeners();
        let daemon = b.daemon();
        let dovecot = prepared(&Target::dovecot(&d, "alice", "alice-pw", Security::Plain));
        let bridge = prepared(&b.target(Security::Plain, "me"));
        Both { _d: d, _b: b, _daemon: daemon, dovecot, bridge }
    }

    /// Sends `cmd` to both; asserts the same answer; returns popbridge's.
    #[track_caller]
    fn same(&mut self, tag: &str, cmd: &str) -> Reply {
        let want = self.dovecot.cmd(tag, cmd);
        let got = self.bridge.cmd(tag, cmd);
        assert_eq!(comparable(&got), comparable(&want), "{tag} {cmd}\n--- popbridge ---\n{}", self.bridge.log());
        got
    }
}

impl Both {
    /// Sends `cmd` to both; asserts only that both answer with the same status.
    #[track_caller]
    fn status(&mut self, tag: &str, cmd: &str) -> String {
        let want = self.dovecot.cmd(tag, cmd).status();
        let got = self.bridge.cmd(tag, cmd).status();
        assert_eq!(got, want, "{tag} {cmd}\n--- popbridge ---\n{}", self.bridge.log());
        got
    }

    #[track_caller]
    fn all_same(&mut self, cmds: &[(&str, &str)]) {
        for (tag, cmd) in cmds {
            self.same(tag, cmd);
        }
    }
}

#[test]
fn esearch_within_and_address_comments_answer_as_dovecot() {
    let mut both = Both::start();
    both.all_same(&[
        // ESEARCH (RFC 4731): every option, UID or not, matches and none.
        ("e1", "SEARCH RETURN (MIN MAX COUNT ALL) FLAGGED"),
        ("e2", "UID SEARCH RETURN () ALL"),
        ("e3", "SEARCH RETURN (MIN MAX) DELETED FLAGGED"),
        ("e4", "SEARCH RETURN (COUNT) DELETED FLAGGED"),
        ("e5", "UID SEARCH RETURN (ALL) DELETED FLAGGED"),
        ("e6", "SEARCH RETURN (ALL) 1,2,3,5,7:9"),
        ("e7", "SEARCH RETURN (MIN) CHARSET UTF-8 ALL"),
        ("e8", "uid search return (min max count all) not seen"),
        ("e9", "SEARCH RETURN (COUNT MAX) OR SEEN FLAGGED"),
        ("e10", "SEARCH RETURN (MIN FOO) ALL"),
        ("e11", "SEARCH FLAGGED"),
        // SEARCH FROM / TO on addresses with comments (the bug).
        ("f1", "SEARCH FROM user-from@domain.org"),
        ("f2", "SEARCH TO user-to@to.example"),
        ("f3", "SEARCH FROM dave@example.com"),
        ("f4", "SEARCH FROM \"@domain.org\""),
        ("f5", "SEARCH TEXT user-from@domain.org"),
        ("f6", "UID SEARCH RETURN (ALL) OR FROM user-from@domain.org TO user-to@to.example"),
        ("f7", "SEARCH NOT FROM user-from@domain.org"),
        // WITHIN (RFC 5032), on INTERNALDATE.
        ("w1", "SEARCH OLDER 3600"),
        ("w2", "SEARCH YOUNGER 3600"),
        ("w3", "SEARCH OLDER 86400 YOUNGER 864000"),
        ("w4", "UID SEARCH RETURN (COUNT MIN) YOUNGER 300"),
        ("w5", "SEARCH NOT OLDER 1000000"),
    ]);
}

#[test]
fn searchres_answers_as_dovecot() {
    let mut both = Both::start();
    both.all_same(&[
        // Empty to begin with: no message, not an error.
        ("s1", "FETCH $ (UID)"),
        ("s2", "UID FETCH $ (UID)"),
        ("s3", "SEARCH $"),
        // SAVE alone answers nothing; $ then works in FETCH and in the criteria.
        ("s4", "SEARCH RETURN (SAVE) FLAGGED"),
        ("s5", "FETCH $ (UID)"),
        ("s6", "SEARCH $ NOT SEEN"),
        ("s7", "SEARCH OR $ 9"),
        ("s8", "UID SEARCH RETURN (COUNT) UID $"),
        // SAVE with MIN keeps the minimum only; with COUNT everything.
        ("s9", "SEARCH RETURN (SAVE MIN) ALL"),
        ("s10", "UID FETCH $ (UID)"),
        ("s11", "SEARCH RETURN (SAVE MIN COUNT) SEEN"),
        ("s12", "FETCH $ (UID)"),
        ("s13", "SEARCH RETURN (SAVE MAX MIN) NOT SEEN"),
        ("s14", "SEARCH RETURN (ALL) $"),
        ("s15", "SEARCH RETURN (SAVE SAVE ALL ALL) 1:4"),
        ("s16", "STORE $ +FLAGS.SILENT (\\Answered)"),
        ("s17", "SEARCH ANSWERED"),
        // An expunged message leaves $, and sequence numbers follow the expunge.
        ("s18", "STORE 2:3 +FLAGS.SILENT (\\Deleted)"),
        ("s19", "UID EXPUNGE $"),
        ("s20", "FETCH $ (UID)"),
        ("s21", "SEARCH RETURN (ALL) $"),
        ("s22", "UID SEARCH RETURN (ALL) $"),
        // A search that finds nothing saves nothing.
        ("s23", "SEARCH RETURN (SAVE) NOT ALL"),
        ("s24", "SEARCH RETURN (COUNT) $"),
        ("s25", "FETCH $ (UID)"),
        ("s26", "COPY $ Nope"),
        ("s27", "STORE $ +FLAGS.SILENT (\\Seen)"),
        ("s28", "SEARCH RETURN (SAVE) UID 4:6"),
        ("s29", "SEARCH UID $"),
        ("s30", "MOVE $ Nope"),
    ]);
    both.status("s31", "CREATE Kept");
    both.status("s32", "UID COPY $ Kept");
    // (COPYUID carries each server's UIDVALIDITY: compared by status; what moved shows below.)
    both.status("s33", "UID MOVE $ Kept");
    both.all_same(&[("s34", "FETCH $ (UID)"), ("s35", "SEARCH RETURN (SAVE) 1:2"), ("s36", "FETCH $ (UID)")]);
    // A new selection starts with an empty $.
    both.status("s37", "SELECT T");
    both.all_same(&[("s38", "FETCH $ (UID)"), ("s39", "SEARCH $")]);
    // A SEARCH with SAVE refused as BAD.
    both.all_same(&[
        ("s40", "SEARCH RETURN (SAVE) 1"),
        ("s41", "SEARCH RETURN (SAVE) FROB"),
        ("s42", "FETCH $ (UID)"),
        ("s43", "SEARCH RETURN (SAVE) 1"),
        ("s44", "SEARCH RETURN (SAVE FOO) ALL"),
        ("s45", "FETCH $ (UID)"),
    ]);
}
