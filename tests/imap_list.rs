//! LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), STATUS=SIZE (RFC 8438) and LSUB against
//! the reference server: the same folder tree, subscriptions and messages on the test Dovecot and
//! on popbridge (the real binary), the same commands to both, and their answers compared where the
//! RFCs fix them — the names listed, `\Subscribed`, `\Noselect`, CHILDINFO, `\HasChildren` /
//! `\HasNoChildren` when CHILDREN was asked for, the STATUS counters — as sets (the order of
//! LIST responses is the server's). Then Apple Mail's and Thunderbird's LIST-EXTENDED openings
//! through the real binary.
//!
//! The test Dovecot keeps Maildir++ folders, whose hierarchy delimiter is `.`: commands are
//! written with `/` and sent to Dovecot with `.`, and its names are read back with `/`.

use std::collections::{BTreeMap, BTreeSet};

use crate::util::Bridge;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::imap_clients::{Raw, Reply, Security, THUNDERBIRD_HEADER_FIELDS, Target};

/// One `* LIST` / `* LSUB` response: its attributes (lower-cased) and extended data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    attrs: BTreeSet<String>,
    ext: String,
}

/// A quoted string or an atom at the start of `s`; the rest after it.
fn string_at(s: &str) -> Option<(String, &str)> {
    if let Some(rest) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?.1),
                '"' => return Some((out, &rest[i + 1..])),
                c => out.push(c),
            }
        }
        None
    } else {
        let end = s.find(' ').unwrap_or(s.len());
        Some((s[..end].to_string(), &s[end..]))
    }
}

/// `* LIST (attrs) "d" name [ext]` lines of a reply, by name (delimiter `d` read back as `/`).
fn listed(r: &Reply, kind: &str) -> BTreeMap<String, Listed> {
    let mut out = BTreeMap::new();
    for l in r.untagged(&format!("* {kind} (")) {
        let rest = &l[kind.len() + 4..];
        let close = rest.find(')').unwrap_or_else(|| panic!("{l}"));
        let attrs = rest[..close].split(' ').filter(|a| !a.is_empty()).map(str::to_ascii_lowercase).collect();
        let (delim, rest) = string_at(rest[close + 1..].trim_start()).unwrap_or_else(|| panic!("{l}"));
        let (name, rest) = string_at(rest.trim_start()).unwrap_or_else(|| panic!("{l}"));
        let name = if delim.is_empty() { name } else { name.replace(delim.as_str(), "/") };
        let name = if name.eq_ignore_ascii_case("INBOX") { "INBOX".to_string() } else { name };
        // The tag of an extended item is an astring: `"CHILDINFO"` (RFC 5258's examples) and
        // `CHILDINFO` (Dovecot) are the same.
        let ext = rest.trim().to_ascii_uppercase().replace("\"CHILDINFO\"", "CHILDINFO");
        out.insert(name, Listed { attrs, ext });
    }
    out
}

/// `* STATUS name (ITEM n …)` lines, by name.
fn statuses(r: &Reply, delim: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for l in r.untagged("* STATUS ") {
        let (name, rest) = string_at(&l[9..]).unwrap_or_else(|| panic!("{l}"));
        let inner = rest.trim().trim_start_matches('(').trim_end_matches(')');
        let words: Vec<&str> = inner.split(' ').collect();
        let items =
            words.chunks(2).filter_map(|p| Some((p[0].to_ascii_uppercase(), p.get(1)?.parse().ok()?))).collect();
        out.insert(name.replace(delim, "/"), items);
    }
    out
}

/// Keeps only what the RFCs fix of a LIST answer: `\HasChildren` / `\HasNoChildren` only when
/// CHILDREN was asked for (RFC 5258 §4 lets a server add them unasked, and Dovecot and popbridge
/// differ there), no special-use attributes (Dovecot's test tree has none).
fn defined(mut l: BTreeMap<String, Listed>, children: bool) -> BTreeMap<String, Listed> {
    for v in l.values_mut() {
        v.attrs.retain(|a| {
            matches!(a.as_str(), "\\subscribed" | "\\noselect" | "\\nonexistent")
                || (children && matches!(a.as_str(), "\\haschildren" | "\\hasnochildren"))
        });
    }
    l
}

/// One session with its hierarchy delimiter: commands are written with `/`.
struct Session {
    raw: Raw,
    delim: &'static str,
    n: u32,
    name: &'static str,
}

impl Session {
    fn cmd(&mut self, cmd: &str) -> Reply {
        self.n += 1;
        let cmd = cmd.replace('/', self.delim);
        self.raw.cmd(&format!("t{}", self.n), &cmd)
    }
    fn ok(&mut self, cmd: &str) -> Reply {
        let r = self.cmd(cmd);
        assert!(r.ok(), "{}: {cmd}: {}", self.name, r.lines.join("\n"));
        r
    }
    fn append(&mut self, mailbox: &str, flags: &str, message: &[u8]) {
        self.n += 1;
        let tag = format!("t{}", self.n);
        let mut bytes =
            format!("{tag} APPEND {} ({flags}) {{{}+}}\r\n", mailbox.replace('/', self.delim), message.len())
                .into_bytes();
        bytes.extend_from_slice(message);
        bytes.extend_from_slice(b"\r\n");
        self.raw.send(&bytes);
        let r = self.raw.read_until_tagged(&tag);
        assert!(r.ok(), "{}: APPEND {mailbox}: {}", self.name, r.lines.join("\n"));
    }
}

const TREE: &[&str] = &[
    "Tree",
    "Tree/Fruit",
    "Tree/Fruit/Apple",
    "Tree/Fruit/Banana",
    "Tree/Tofu",
    "Tree/Vegetable",
    "Tree/Vegetable/Broccoli",
    "Tree/Vegetable/Corn",
    "Tree/a",
    "Tree/a/b",
    "Tree/a/b/c",
    // RFC 5258 §5.9's tree.
    "Tree/foo2",
    "Tree/foo2/bar1",
    "Tree/foo2/bar2",
    "Tree/baz2",
    "Tree/baz2/bar2",
    "Tree/baz2/bar22",
    "Tree/baz2/bar222",
    "Tree/eps2",
    "Tree/eps2/mamba",
];

const SUBSCRIBED: &[&str] = &[
    "Tree/Fruit/Banana",
    "Tree/Vegetable",
    "Tree/Vegetable/Broccoli",
    "Tree/a/b/c",
    "Tree/foo2/bar1",
    "Tree/foo2/bar2",
    "Tree/baz2/bar2",
    "Tree/baz2/bar22",
    "Tree/baz2/bar222",
    "Tree/eps2",
    "Tree/eps2/mamba",
];

fn message(subject: &str, lines: usize) -> Vec<u8> {
    let mut m = format!("From: a@example.com\r\nTo: b@example.com\r\nSubject: {subject}\r\n\r\n").into_bytes();
    for i in 0..lines {
        m.extend_from_slice(format!("line {i} of {subject}\r\n").as_bytes());
    }
    m
}

/// The same tree, subscriptions and messages on both (created parent first: Dovecot's Maildir++
/// does not create superiors, popbridge does).
fn populate(s: &mut Session) {
    for name in TREE {
        s.ok(&format!("CREATE {name}"));
    }
    for name in TREE {
        s.ok(&format!("UNSUBSCRIBE {name}"));
    }
    for name in SUBSCRIBED {
        s.ok(&format!("SUBSCRIBE {name}"));
    }
    // Subscriptions that outlive their mailbox (RFC 3501 §6.3.6): Tree/Gone, and Tree/Lost/Deep
    // whose superior Tree/Lost is gone too (unsubscribed).
    for name in ["Tree/Gone", "Tree/Lost", "Tree/Lost/Deep"] {
        s.ok(&format!("CREATE {name}"));
    }
    s.ok("UNSUBSCRIBE Tree/Lost");
    for name in ["Tree/Gone", "Tree/Lost/Deep"] {
        s.ok(&format!("SUBSCRIBE {name}"));
    }
    for name in ["Tree/Gone", "Tree/Lost/Deep", "Tree/Lost"] {
        s.ok(&format!("DELETE {name}"));
    }
    s.append("Tree/Fruit/Apple", "\\Seen", &message("one", 3));
    s.append("Tree/Fruit/Apple", "", &message("two", 40));
    s.append("Tree/Tofu", "", &message("three", 7));
}

/// Commands whose answers both servers must agree on, and whether CHILDREN was asked for.
const COMPARED: &[(&str, bool)] = &[
    ("LIST \"\" \"Tree/*\"", false),
    ("LIST (SUBSCRIBED) \"\" \"Tree/*\"", false),
    ("LIST () \"Tree/\" \"%\" RETURN (CHILDREN)", true),
    ("LIST (REMOTE) \"\" \"Tree/%\" RETURN (CHILDREN)", true),
    ("LIST (REMOTE SUBSCRIBED) \"\" \"Tree/*\"", false),
    ("LIST (REMOTE) \"\" \"Tree/*\" RETURN (SUBSCRIBED)", false),
    ("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"Tree/%\"", false),
    ("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"Tree/%\" RETURN (CHILDREN)", true),
    ("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"Tree/a/%\"", false),
    ("LIST (RECURSIVEMATCH SUBSCRIBED) \"\" \"Tree/*2\"", false),
    ("LIST \"\" (\"INBOX\" \"Tree/Fruit/*\" \"Tree/Tofu\")", false),
    ("LIST (SUBSCRIBED) \"\" (\"Tree/Fruit/*\" \"Tree/Vegetable/*\") RETURN (CHILDREN)", true),
    ("LIST \"\" \"Tree/%\" RETURN (SUBSCRIBED CHILDREN)", true),
    ("LIST (SUBSCRIBED) \"\" \"Tree/*\" RETURN (CHILDREN)", true),
    ("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"Tree/L%\"", false),
    ("LIST (SUBSCRIBED) \"\" \"Tree/Gone\"", false),
    ("LIST \"\" \"Tree/Gone\"", false),
];

const LSUBS: &[&str] =
    &["LSUB \"\" \"Tree/a/%\"", "LSUB \"\" \"Tree/%\"", "LSUB \"\" \"Tree/*\"", "LSUB \"Tree/\" \"%\""];

#[test]
fn list_extended_list_status_and_lsub_agree_with_dovecot() {
    let d = Dovecot::start(DovecotOpts::default());
    let b = Bridge::with_listeners();
    let _daemon = b.daemon();
    let mut dove = Session {
        raw: Raw::connect_login(&Target::dovecot(&d, "alice", "alice-pw", Security::Plain)),
        delim: ".",
        n: 0,
        name: "dovecot",
    };
    let mut ours =
        Session { raw: Raw::connect_login(&b.target(Security::Plain, "me")), delim: "/", n: 0, name: "popbridge" };
    for s in [&mut dove, &mut ours] {
        let caps = s.ok("CAPABILITY").lines.join(" ");
        for c in ["LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE"] {
            assert!(caps.split(' ').any(|w| w == c), "{} does not offer {c}: {caps}", s.name);
        }
        populate(s);
    }
    let mut report = String::new();
    for (cmd, children) in COMPARED {
        let a = defined(listed(&dove.ok(cmd), "LIST"), *children);
        let o = defined(listed(&ours.ok(cmd), "LIST"), *children);
        if a != o {
            report.push_str(&format!("{cmd}\n  dovecot:   {a:?}\n  popbridge: {o:?}\n"));
        }
    }
    for cmd in LSUBS {
        // LSUB's attributes other than \Noselect carry no meaning (RFC 3501 §6.3.9).
        let names = |r: &Reply| -> BTreeMap<String, bool> {
            listed(r, "LSUB").into_iter().map(|(n, l)| (n, l.attrs.contains("\\noselect"))).collect()
        };
        let (a, o) = (names(&dove.ok(cmd)), names(&ours.ok(cmd)));
        if a != o {
            report.push_str(&format!("{cmd}\n  dovecot:   {a:?}\n  popbridge: {o:?}\n"));
        }
    }
    // LIST-STATUS: the same mailboxes get a STATUS, with the same counters (UIDVALIDITY differs).
    let cmd = "LIST \"\" \"Tree/*\" RETURN (STATUS (MESSAGES UNSEEN UIDNEXT SIZE))";
    let (a, o) = (statuses(&dove.ok(cmd), "."), statuses(&ours.ok(cmd), "/"));
    assert_eq!(a.len(), TREE.len() - 1, "dovecot: a STATUS for every mailbox below Tree: {a:?}");
    if a != o {
        report.push_str(&format!("{cmd}\n  dovecot:   {a:?}\n  popbridge: {o:?}\n"));
    }
    for name in ["Tree/Fruit/Apple", "Tree/Tofu", "Tree/a/b"] {
        let cmd = format!("STATUS {name} (MESSAGES SIZE)");
        let (a, o) = (statuses(&dove.ok(&cmd), "."), statuses(&ours.ok(&cmd), "/"));
        if a != o {
            report.push_str(&format!("{cmd}\n  dovecot:   {a:?}\n  popbridge: {o:?}\n"));
        }
    }
    // RFC 5258 §3.1: RECURSIVEMATCH alone is BAD; so is an option nobody defined.
    for cmd in
        ["LIST (RECURSIVEMATCH) \"\" \"*\"", "LIST (FROBNICATE) \"\" \"*\"", "LIST \"\" \"*\" RETURN (FROBNICATE)"]
    {
        let (a, o) = (dove.cmd(cmd), ours.cmd(cmd));
        if a.status() != o.status() {
            report.push_str(&format!("{cmd}\n  dovecot:   {}\n  popbridge: {}\n", a.tagged, o.tagged));
        }
    }
    assert!(report.is_empty(), "the servers disagree:\n{report}");
    // And what they agree on is what the RFCs say (so that agreeing is not agreeing on nothing).
    let r = listed(&ours.ok("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"Tree/a/%\""), "LIST");
    assert_eq!(r.keys().collect::<Vec<_>>(), ["Tree/a/b"], "{r:?}");
    assert_eq!(r["Tree/a/b"].ext, "(CHILDINFO (\"SUBSCRIBED\"))");
    let r = listed(&ours.ok("LSUB \"\" \"Tree/a/%\""), "LSUB");
    assert!(r.len() == 1 && r["Tree/a/b"].attrs.contains("\\noselect"), "{r:?}");
    let r = listed(&ours.ok("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"Tree/%\""), "LIST");
    assert!(r["Tree/Gone"].attrs.contains("\\nonexistent") && r["Tree/Gone"].attrs.contains("\\subscribed"), "{r:?}");
    assert!(r["Tree/Lost"].attrs.contains("\\nonexistent") && r["Tree/Lost"].ext.contains("CHILDINFO"), "{r:?}");
    let st = statuses(&ours.ok("STATUS Tree/Fruit/Apple (MESSAGES SIZE)"), "/");
    let size = (message("one", 3).len() + message("two", 40).len()) as u64;
    assert_eq!(st["Tree/Fruit/Apple"], BTreeMap::from([("MESSAGES".to_string(), 2), ("SIZE".to_string(), size)]));
}

/// Apple Mail (iOS 18) lists with `RETURN (SPECIAL-USE)`; Thunderbird, when LIST-EXTENDED is
/// offered, with `list (subscribed) "" "*" return (special-use)` then `list "" "INBOX"`
/// (../shared/notes/clients.md), then its per-folder sequence (select, flags, headers, bodies,
/// the Sent copy, IDLE): through the real binary, both get every folder with its special use,
/// and Thunderbird finds its Trash (else it would create one).
#[test]
fn apple_mail_and_thunderbird_list_extended_openings() {
    let b = Bridge::with_listeners();
    let _daemon = b.daemon();
    let mut r = Raw::connect_login(&b.target(Security::Plain, "me"));
    let ios = r.cmd("A1", "LIST \"\" \"*\" RETURN (SPECIAL-USE)");
    ios.assert_ok("iOS LIST");
    let l = listed(&ios, "LIST");
    for (name, attr) in
        [("Sent", "\\sent"), ("Drafts", "\\drafts"), ("Trash", "\\trash"), ("Junk", "\\junk"), ("Archive", "\\archive")]
    {
        assert!(l.get(name).is_some_and(|x| x.attrs.contains(attr)), "{name} {attr}: {}", ios.lines.join("\n"));
    }
    assert!(l.contains_key("INBOX"), "{}", ios.lines.join("\n"));

    // Thunderbird's whole recorded sequence with LIST-EXTENDED offered, on a folder with mail.
    let messages: Vec<Vec<u8>> = (0..3).map(|i| message(&format!("tb {i}"), 5 + i)).collect();
    for m in &messages {
        let mut bytes = format!("A2 APPEND INBOX {{{}+}}\r\n", m.len()).into_bytes();
        bytes.extend_from_slice(m);
        bytes.extend_from_slice(b"\r\n");
        r.send(&bytes);
        r.read_until_tagged("A2").assert_ok("append");
    }
    let mut tb = Raw::connect_login(&b.target(Security::Plain, "me"));
    let caps = tb.cmd("2", "capability");
    assert!(caps.lines.iter().any(|l| l.contains(" LIST-EXTENDED")), "{:?}", caps.lines);
    tb.cmd("3", "namespace").assert_ok("namespace");
    tb.cmd("4", "ID (\"name\" \"Thunderbird\" \"version\" \"153.8.0\")").assert_ok("ID");
    let all = tb.cmd("5", "list (subscribed) \"\" \"*\" return (special-use)");
    all.assert_ok("list (subscribed)");
    let l = listed(&all, "LIST");
    for name in ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"] {
        assert!(l.get(name).is_some_and(|x| x.attrs.contains("\\subscribed")), "{name}: {}", all.lines.join("\n"));
    }
    assert!(l["Trash"].attrs.contains("\\trash"), "no \\Trash: Thunderbird would create one: {}", all.lines.join("\n"));
    let inbox = tb.cmd("6", "list \"\" \"INBOX\"");
    inbox.assert_ok("list INBOX");
    assert_eq!(inbox.untagged("* LIST").len(), 1, "{}", inbox.lines.join("\n"));
    let sel = tb.cmd("7", "select \"INBOX\"");
    sel.assert_ok("select");
    assert_eq!(sel.number("EXISTS"), Some(3), "{:?}", sel.lines);
    let flags = tb.cmd("8", "UID fetch 1:* (FLAGS)");
    assert_eq!(flags.assert_ok("flags").fetches().len(), 3);
    let headers = tb.cmd(
        "9",
        &format!("UID fetch 1:3 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS ({THUNDERBIRD_HEADER_FIELDS})])"),
    );
    assert_eq!(headers.assert_ok("headers").fetches().len(), 3);
    tb.cmd("10", "noop").assert_ok("noop");
    tb.cmd("11", "UID fetch 4:* (FLAGS)").assert_ok("next");
    let bodies = tb.cmd("12", "UID fetch 1:3 (UID RFC822.SIZE BODY.PEEK[])");
    let got: Vec<Vec<u8>> =
        bodies.assert_ok("bodies").fetches().iter().filter_map(|f| f.get("BODY[]").map(<[u8]>::to_vec)).collect();
    assert_eq!(got, messages, "bodies byte for byte");
    let sent = message("sent by thunderbird", 2);
    let mut bytes = format!("13 append \"Sent\" (\\Seen) {{{}+}}\r\n", sent.len()).into_bytes();
    bytes.extend_from_slice(&sent);
    bytes.extend_from_slice(b"\r\n");
    tb.send(&bytes);
    let append = tb.read_until_tagged("13");
    assert!(append.assert_ok("append Sent").code("APPENDUID").is_some(), "{:?}", append.lines);
    tb.send(b"14 IDLE\r\n");
    assert!(tb.read_line().starts_with("+ "), "IDLE continuation");
    tb.send(b"DONE\r\n");
    tb.read_until_tagged("14").assert_ok("idle");
    // The Sent copy is where the next LIST-STATUS says.
    let st = statuses(tb.cmd("15", "LIST \"\" Sent RETURN (STATUS (MESSAGES SIZE))").assert_ok("list-status"), "/");
    assert_eq!(
        st["Sent"],
        BTreeMap::from([("MESSAGES".to_string(), 1), ("SIZE".to_string(), sent.len() as u64)]),
        "{st:?}"
    );
}
