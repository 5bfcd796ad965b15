//! The local IMAP server with real clients: Python imaplib, curl, mbsync, and Thunderbird's own
//! command sequence replayed byte for byte — over plaintext, STARTTLS and implicit TLS, with the
//! combined login and an account login. Mail comes from a real Dovecot over POP3.

use std::time::{Duration, Instant};

use crate::util::corpus::corpus;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::imap_clients::{self as ic, Raw, Security};
use crate::util::{Bridge, as_pop3_sends};

/// A Dovecot holding `n` corpus messages for alice, and a bridge that fetched them into "Work".
fn fetched(n: usize, seed: u64) -> (Dovecot, Bridge, Vec<Vec<u8>>) {
    let d = Dovecot::start(DovecotOpts::default());
    let c = corpus(n, seed);
    d.deliver("alice", &c.messages);
    let b = Bridge::with_listeners();
    b.add_dovecot_alice(&d, &[]).expect(0);
    b.run(&["fetch"]).expect(0);
    let served = c.messages.iter().map(|m| as_pop3_sends(m)).collect();
    (d, b, served)
}

#[test]
fn real_clients_read_every_fetched_message_byte_exact() {
    let (_d, b, served) = fetched(40, 9);
    let _daemon = b.daemon();
    for sec in [Security::Plain, Security::StartTls, Security::Implicit] {
        ic::check_raw(&b.target(sec, "me"), "Work", &served);
    }
    // imaplib: everything unread, bodies identical to the POP server's copies.
    ic::check_python(&b.target(Security::Implicit, "me"), "Work", &served);
    // mbsync pulls the whole mailbox and pushes flag changes back.
    ic::check_mbsync(&b.target(Security::Implicit, "me"), "Work", &served);
    // curl fetches single messages by UID (and marks them \Seen, as BODY[] must).
    ic::check_curl(&b.target(Security::Plain, "me"), "Work", &served);
    let flags = ic::server_flags(&b.target(Security::Plain, "me"), "Work");
    assert!(flags[&(served.len() as u32)].iter().any(|f| f == "\\Seen"), "curl's BODY[] set \\Seen: {flags:?}");
}

#[test]
fn thunderbird_sequence_works_with_combined_and_account_logins() {
    let (_d, b, served) = fetched(25, 4);
    let _daemon = b.daemon();
    let tr = ic::check_thunderbird(&b.target(Security::Plain, "me"), "Work", "Sent", &served);
    let list = tr.step(r#"list "" "*""#);
    let sent = list.untagged("* LIST").into_iter().find(|l| l.ends_with("\"Sent\"")).map(str::to_string);
    assert!(sent.is_some_and(|l| l.contains("\\Sent")), "SPECIAL-USE in plain LIST: {:?}", list.lines);
    let lsub = tr.step(r#"lsub "" "*""#);
    assert!(
        lsub.untagged("* LSUB").iter().any(|l| l.ends_with("\"Work\"")),
        "account mailboxes are subscribed: {:?}",
        lsub.lines
    );

    // The account login sees Work as INBOX, with its own Sent (created on first use).
    let acct = b.target(Security::StartTls, "me+Work");
    let tr = ic::check_thunderbird(&acct, "INBOX", "Sent", &served);
    let list = tr.step(r#"list "" "*""#);
    let names: Vec<&str> = list.untagged("* LIST");
    assert!(names.iter().any(|l| l.ends_with(" INBOX")), "{names:?}");
    assert!(
        !names.iter().any(|l| l.contains("\"Work\"") || l.contains("\"Archive\"") && !l.contains("\\Archive")),
        "{names:?}"
    );
    for special in ["\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"] {
        assert!(names.iter().any(|l| l.contains(special)), "{special} offered to the account login: {names:?}");
    }
    // The combined login sees that Sent copy under Work/Sent.
    let mut r = Raw::connect_login(&b.target(Security::Plain, "me"));
    let st = r.cmd("a1", "STATUS \"Work/Sent\" (MESSAGES)");
    assert!(st.ok() && st.lines[0].contains("MESSAGES 1"), "{:?}", st.lines);
    // me@Work is accepted too; an unknown account is not.
    Raw::connect_login(&b.target(Security::Plain, "me@Work")).logout();
    let mut bad = Raw::connect(&b.target(Security::Plain, "me+Nope"));
    assert!(bad.cmd("a1", &format!("LOGIN me+Nope {}", crate::util::LOCAL_PASSWORD)).no());
}

#[test]
fn internaldate_is_the_sent_date_and_fetched_mail_is_unseen() {
    let (_d, b, served) = fetched(30, 17);
    let _daemon = b.daemon();
    let out = ic::python(
        &b.target(Security::Plain, "me"),
        r#"
import email.utils, imaplib
M.select("Work")
typ, data = M.fetch("1:*", "(FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (DATE)])")
checked = 0
for item in data:
    if not isinstance(item, tuple):
        continue
    meta = item[0].decode()
    assert "\\Seen" not in meta, meta
    hdr = item[1].decode("latin-1").strip()
    if not hdr.lower().startswith("date:"):
        continue
    try:
        sent = email.utils.parsedate_to_datetime(hdr[5:].strip())
    except Exception:
        continue
    if sent is None or sent.tzinfo is None or sent.year < 1990:
        continue
    internal = imaplib.Internaldate2tuple(item[0])
    import calendar, time
    assert calendar.timegm(time.gmtime(time.mktime(internal))) == int(sent.timestamp()), (meta, hdr)
    checked += 1
print("CHECKED", checked)
"#,
    );
    let n: usize = out.lines().find_map(|l| l.strip_prefix("CHECKED ")).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(n >= served.len() / 2, "INTERNALDATE compared with Date for {n} messages:\n{out}");
}

#[test]
fn mailboxes_can_be_created_renamed_and_deleted_but_not_account_roots() {
    let (_d, b, served) = fetched(6, 2);
    let _daemon = b.daemon();
    let mut r = Raw::connect_login(&b.target(Security::Plain, "me"));
    assert!(r.cmd("c1", "CREATE \"Projects/2026\"").ok());
    let l = r.cmd("c2", "LIST \"\" \"Projects*\"");
    assert_eq!(l.untagged("* LIST").len(), 2, "parents are created: {:?}", l.lines);
    assert!(l.lines.iter().any(|x| x.contains("\\HasChildren") && x.ends_with("\"Projects\"")), "{:?}", l.lines);
    assert!(r.cmd("c3", "CREATE \"Projects\"").no(), "exists already");
    assert!(r.cmd("c4", "RENAME \"Projects\" \"Archive 2026\"").ok());
    assert_eq!(r.cmd("c5", "LIST \"\" \"Archive 2026/*\"").untagged("* LIST").len(), 1, "children move along");
    assert!(r.cmd("c6", "DELETE \"Archive 2026\"").no(), "it has a subfolder");
    assert!(r.cmd("c7", "DELETE \"Archive 2026/2026\"").ok());
    assert!(r.cmd("c8", "DELETE \"Archive 2026\"").ok());
    let del = r.cmd("c9", "DELETE Work");
    assert!(del.no() && del.tagged.contains("account remove"), "the account's mailbox is protected: {}", del.tagged);
    assert!(r.cmd("c10", "RENAME Work Elsewhere").no());
    // Non-ASCII names travel as modified UTF-7.
    assert!(r.cmd("c11", "CREATE \"Entw&APw-rfe\"").ok());
    let l = r.cmd("c12", "LIST \"\" \"Entw*\"");
    assert!(l.lines.iter().any(|x| x.ends_with("\"Entw&APw-rfe\"")), "{:?}", l.lines);
    // COPY / MOVE with UIDPLUS, then UID EXPUNGE.
    r.cmd("m1", "SELECT Work").assert_ok("select");
    let c = r.cmd("m2", "UID COPY 1:3 \"Entw&APw-rfe\"");
    assert!(c.ok() && c.tagged.contains("COPYUID"), "{}", c.tagged);
    let m = r.cmd("m3", "UID MOVE 4 \"Entw&APw-rfe\"");
    assert!(m.ok() && m.untagged("* OK [COPYUID").len() == 1 && m.untagged("* 4 EXPUNGE").len() == 1, "{:?}", m.lines);
    r.cmd("m4", "UID STORE 5 +FLAGS.SILENT (\\Deleted)").assert_ok("store");
    let e = r.cmd("m5", "UID EXPUNGE 5");
    assert_eq!(e.untagged("* 4 EXPUNGE").len(), 1, "{:?}", e.lines);
    let s = r.cmd("m6", "STATUS \"Entw&APw-rfe\" (MESSAGES UIDNEXT)");
    assert!(s.lines[0].contains("MESSAGES 4") && s.lines[0].contains("UIDNEXT 5"), "{:?}", s.lines);
    let sel = r.cmd("m7", "SELECT Work");
    assert_eq!(sel.number("EXISTS"), Some(served.len() as u32 - 2));
    r.logout();
}

#[test]
fn local_expunges_feed_the_when_deleted_locally_policy() {
    let d = Dovecot::start(DovecotOpts::default());
    d.deliver("alice", &corpus(5, 8).messages);
    let b = Bridge::with_listeners();
    b.add_dovecot_alice(&d, &["--delete", "when-deleted-locally"]).expect(0);
    b.run(&["fetch"]).expect(0);
    let _daemon = b.daemon();
    let mut r = Raw::connect_login(&b.target(Security::Plain, "me+Work"));
    r.cmd("a1", "SELECT INBOX").assert_ok("select");
    r.cmd("a2", "STORE 1,2 +FLAGS (\\Deleted)").assert_ok("store");
    let e = r.cmd("a3", "EXPUNGE");
    assert_eq!(e.untagged("* 1 EXPUNGE").len(), 2, "{:?}", e.lines);
    // Moving a message to another folder is not deleting it.
    r.cmd("a4", "MOVE 1 Archive").assert_ok("move");
    r.logout();
    b.run(&["fetch"]).expect(0);
    assert_eq!(d.messages("alice").len(), 3, "exactly the two expunged messages were deleted on the server");
}

#[test]
fn ten_sessions_stay_in_step_and_idle_sees_changes_at_once() {
    let (_d, b, served) = fetched(12, 5);
    let _daemon = b.daemon();
    let t = b.target(Security::Plain, "me");
    let mut sessions: Vec<Raw> = (0..10).map(|_| Raw::connect_login(&t)).collect();
    for (i, s) in sessions.iter_mut().enumerate() {
        let sel = s.cmd(&format!("s{i}"), "SELECT Work");
        assert_eq!(sel.number("EXISTS"), Some(served.len() as u32));
    }
    // Session 9 idles.
    sessions[9].send(b"i1 IDLE\r\n");
    assert!(sessions[9].read_line().starts_with("+ "));
    // Session 0 flags message 2 and expunges message 3.
    sessions[0].cmd("w1", "STORE 2 +FLAGS (\\Flagged)").assert_ok("store");
    sessions[0].cmd("w2", "STORE 3 +FLAGS.SILENT (\\Deleted)").assert_ok("store");
    let t0 = Instant::now();
    sessions[0].cmd("w3", "EXPUNGE").assert_ok("expunge");
    // The idling session hears about both within a second.
    let mut heard = Vec::new();
    while !heard.iter().any(|l: &String| l.contains("EXPUNGE")) {
        assert!(t0.elapsed() < Duration::from_secs(3), "IDLE did not report the expunge: {heard:?}");
        heard.push(sessions[9].read_line());
    }
    assert!(t0.elapsed() < Duration::from_millis(1500), "IDLE latency {:?}", t0.elapsed());
    assert!(heard.iter().any(|l| l.starts_with("* 3 EXPUNGE")), "{heard:?}");
    sessions[9].send(b"DONE\r\n");
    assert!(sessions[9].read_until_tagged("i1").ok());
    // A FETCH by sequence number must not see the EXPUNGE (RFC 3501 §7.4.1); NOOP then does.
    let f = sessions[1].cmd("f1", "FETCH 1:* (FLAGS)");
    assert!(f.untagged("* 3 EXPUNGE").is_empty(), "no EXPUNGE during FETCH: {:?}", f.lines);
    assert_eq!(f.fetches().len(), served.len(), "the client's view is unchanged until it is told");
    assert!(f.lines.iter().any(|l| l.starts_with("* 2 FETCH") && l.contains("\\Flagged")), "{:?}", f.lines);
    let n = sessions[1].cmd("f2", "NOOP");
    assert_eq!(n.untagged("* 3 EXPUNGE").len(), 1, "{:?}", n.lines);
    for (i, s) in sessions.iter_mut().enumerate().skip(2).take(7) {
        let n = s.cmd(&format!("n{i}"), "NOOP");
        assert_eq!(n.untagged("* 3 EXPUNGE").len(), 1, "session {i}: {:?}", n.lines);
        assert!(n.lines.iter().any(|l| l.contains("FETCH") && l.contains("\\Flagged")), "session {i}: {:?}", n.lines);
        let f = s.cmd(&format!("g{i}"), "UID FETCH 1:* (FLAGS)");
        assert_eq!(f.fetches().len(), served.len() - 1);
    }
}

/// An account-login session idling on INBOX (the Work mailbox), after its SELECT.
fn idling(b: &Bridge) -> Raw {
    let mut s = Raw::connect_login(&b.target(Security::Implicit, "me+Work"));
    s.cmd("a1", "SELECT INBOX").assert_ok("select");
    s.send(b"a2 IDLE\r\n");
    assert!(s.read_line().starts_with("+ "));
    s
}

/// Waits (bounded) for the idling session's next line, which must come within a second of `t0`.
fn next_line_within_a_second(s: &mut Raw, t0: Instant, what: &str) -> String {
    let line = s.read_line();
    assert!(t0.elapsed() < Duration::from_secs(1), "EXISTS came {:?} after {what}", t0.elapsed());
    line
}

/// After DONE: the first new message is \Recent to this session (it saw it first).
fn done_and_recent(s: &mut Raw, first_new: usize) {
    s.send(b"DONE\r\n");
    s.read_until_tagged("a2");
    let f = s.cmd("a3", &format!("FETCH {first_new} (FLAGS)"));
    assert!(
        f.ok() && f.lines[0].contains("\\Recent"),
        "new mail is \\Recent to the session that saw it first: {:?}",
        f.lines
    );
}

#[test]
fn idle_reports_mail_fetched_through_the_daemon_within_a_second() {
    let (d, b, served) = fetched(3, 6);
    let _daemon = b.daemon();
    let mut s = idling(&b);
    d.deliver("alice", &corpus(2, 61).messages);
    // With a daemon running, `popbridge fetch` asks it (the control socket): the daemon's own
    // fetcher stores the mail and wakes the session at once.
    let r = b.run(&["fetch"]).expect(0);
    assert!(
        r.stdout.contains("2 new message(s)") && r.stdout.contains("fetched by the running daemon"),
        "{}",
        r.stdout
    );
    let line = next_line_within_a_second(&mut s, Instant::now(), "the daemon's fetch");
    assert_eq!(line, format!("* {} EXISTS", served.len() + 2));
    done_and_recent(&mut s, served.len() + 1);
}

#[test]
fn idle_reports_mail_fetched_by_another_process_within_a_second() {
    let (d, b, served) = fetched(3, 6);
    let _daemon = b.daemon();
    let mut s = idling(&b);
    d.deliver("alice", &corpus(2, 61).messages);
    // A `popbridge fetch` that cannot reach the daemon (its control socket moved aside) fetches
    // in its own process and commits to the store from there: the daemon learns of it only
    // through SQLite, as with any other writer.
    let sock = b.data.join("control.sock");
    let aside = b.data.join("control.sock.aside");
    std::fs::rename(&sock, &aside).expect("move the control socket aside");
    let r = b.run(&["fetch"]);
    std::fs::rename(&aside, &sock).expect("put the control socket back");
    let r = r.expect(0);
    assert!(
        r.stdout.contains("Work: 2 new message(s)") && !r.stdout.contains("fetched by the running daemon"),
        "the other process fetched the two new messages itself: {}",
        r.stdout
    );
    let line = next_line_within_a_second(&mut s, Instant::now(), "the other process's fetch");
    assert_eq!(line, format!("* {} EXISTS", served.len() + 2));
    done_and_recent(&mut s, served.len() + 1);
    // And a write by yet another process through the store's own API (the test process here).
    let mut s = idling(&b);
    let t0 = Instant::now();
    b.store()
        .deliver_local("Work", b"From: x@example.com\r\nSubject: appended elsewhere\r\n\r\nhi\r\n", 0)
        .expect("deliver from the test process");
    let line = next_line_within_a_second(&mut s, t0, "the test process's write");
    assert_eq!(line, format!("* {} EXISTS", served.len() + 3));
    done_and_recent(&mut s, served.len() + 3);
}

#[test]
fn bad_input_gets_bad_and_the_session_goes_on() {
    let (_d, b, _served) = fetched(2, 7);
    let _daemon = b.daemon();
    let mut s = Raw::connect(&b.target(Security::Plain, "me"));
    assert!(s.cmd("a1", "SELECT Work").no(), "not logged in");
    assert!(s.cmd("a2", "LOGIN me wrong").no());
    s.send(b"this is not imap\r\n");
    assert!(s.read_line().contains("BAD"));
    s.send(b"a3 NOOP\n");
    assert!(s.read_line().starts_with("a3 BAD"), "bare LF is refused with the tag");
    s.login();
    assert!(s.cmd("a4", "FETCH 1 (FLAGS)").no(), "nothing selected");
    s.cmd("a5", "SELECT Work").assert_ok("select");
    assert!(s.cmd("a6", "FETCH 99 (FLAGS)").bad(), "sequence number beyond the mailbox");
    assert!(s.cmd("a7", "UID FETCH 99 (FLAGS)").ok(), "an absent UID is simply not there");
    assert!(s.cmd("a8", "SEARCH CHARSET KOI8-R TEXT x").lines.iter().any(|l| l.contains("BADCHARSET")));
    // An oversized literal is refused before it is sent.
    s.send(b"a9 APPEND Work {999999999}\r\n");
    assert!(s.read_line().starts_with("a9 BAD"));
    assert!(s.cmd("a10", "NOOP").ok(), "the session is still alive");
    s.logout();
}
