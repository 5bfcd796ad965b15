//! One copy of each message (issue 17, part 4), against the test Dovecot: a mailing-list post
//! reaches alice and bob (each copy with its own Received header), and one message reaches both
//! byte for byte. Account Work fetches alice, then account Home fetches bob with `duplicates` =
//! keep, mark or hide. Checked on the wire (IMAP through the daemon: which folder serves what,
//! with which flags), in the store (one body for the byte-identical copy) and on the server (each
//! server sees DELE only for what its account holds).

use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::imap_clients::{Raw, Security};
use crate::util::{Bridge, as_pop3_sends, sorted};

/// The post as the list server sent it to `rcpt`: only the trace headers differ between copies.
fn list_post(rcpt: &str) -> Vec<u8> {
    format!(
        "Return-Path: <list-bounces@lists.example.net>\r\n\
         Delivered-To: {rcpt}@example.org\r\n\
         Received: from lists.example.net by mx.example.org with ESMTP id {rcpt}-7; Mon, 30 Nov 2026 08:00:0{} +0000\r\n\
         From: Carol <carol@example.net>\r\nTo: dev@lists.example.net\r\nSubject: [dev] release plan\r\n\
         Message-ID: <plan-42@example.net>\r\nDate: Mon, 30 Nov 2026 07:59:00 +0000\r\nList-Id: <dev.lists.example.net>\r\n\r\n\
         The release is on Friday.\r\n",
        rcpt.len() % 10
    )
    .into_bytes()
}

/// A message both servers hold byte for byte (a CC to both addresses, stored without trace).
fn identical() -> Vec<u8> {
    b"From: dave@example.net\r\nTo: alice@example.org\r\nCc: bob@example.org\r\nSubject: lunch?\r\n\
      Message-ID: <lunch-1@example.net>\r\nDate: Mon, 30 Nov 2026 09:00:00 +0000\r\n\r\nAt noon.\r\n"
        .to_vec()
}

/// A message only bob receives.
fn bobs_own() -> Vec<u8> {
    b"From: erin@example.net\r\nTo: bob@example.org\r\nSubject: for bob\r\nMessage-ID: <bob-1@example.net>\r\n\r\nhi\r\n"
        .to_vec()
}

/// UID FETCH 1:* (FLAGS BODY.PEEK[]) of one account's folder through the daemon:
/// (flags, bytes) in UID order.
fn folder(b: &Bridge, account: &str) -> Vec<(Vec<String>, Vec<u8>)> {
    let mut r = Raw::connect_login(&b.target(Security::Plain, "me"));
    let sel = r.cmd("s1", &format!("SELECT {account}"));
    sel.assert_ok("select");
    let fetched = r.cmd("f1", "UID FETCH 1:* (FLAGS BODY.PEEK[])");
    fetched.assert_ok("fetch");
    let out = fetched
        .fetches()
        .iter()
        .map(|f| (f.flags().unwrap_or_default(), f.get("BODY[]").unwrap_or_default().to_vec()))
        .collect();
    r.logout();
    out
}

fn bodies(b: &Bridge) -> i64 {
    let c = rusqlite::Connection::open(b.store_path()).expect("open store");
    c.query_row("SELECT count(*) FROM bodies", [], |r| r.get(0)).expect("count")
}

/// Work (alice) fetches first, then Home (bob) with `--duplicates policy`; both delete after
/// fetch. Returns the bridge (daemon stopped), Dovecot and Home's fetch output.
fn two_accounts(policy: &str) -> (Bridge, Dovecot, String) {
    let d = Dovecot::start(DovecotOpts::default());
    d.deliver("alice", &[list_post("alice"), identical()]);
    d.deliver("bob", &[list_post("bob"), identical(), bobs_own()]);
    let b = Bridge::with_listeners();
    b.add_dovecot_alice(&d, &["--delete", "after-fetch"]).expect(0);
    let ca = d.ca_pem_path.display().to_string();
    b.add_account(
        "Home",
        d.pop3s_port,
        "implicit",
        "bob",
        "bob-pw",
        &["--ca-file", &ca, "--delete", "after-fetch", "--duplicates", policy],
    )
    .expect(0);
    let r = b.run(&["fetch", "Work"]).expect(0);
    assert!(r.stdout.contains("Work: 2 new message(s)") && !r.stdout.contains("copies"), "{}", r.stdout);
    let r = b.run(&["fetch", "Home"]).expect(0);
    (b, d, r.stdout)
}

#[test]
fn keep_files_the_later_copy_with_its_own_trace_headers_and_stores_identical_bytes_once() {
    let (b, d, out) = two_accounts("keep");
    assert!(out.contains("Home: 3 new message(s)") && out.contains("2 copies of messages already held"), "{out}");
    // Four bodies: alice's post, bob's post (other Received), bob's own, the identical message once.
    assert_eq!(bodies(&b), 4);
    let _daemon = b.daemon();
    let home = folder(&b, "Home");
    let want = [list_post("bob"), identical(), bobs_own()].map(|m| as_pop3_sends(&m));
    assert_eq!(home.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(), want, "IMAP serves what bob's server sent");
    assert!(home.iter().all(|(f, _)| !f.iter().any(|f| f == "$Duplicate")), "{home:?}");
    // Everything fetched is held: both servers are emptied.
    assert!(d.messages("alice").is_empty() && d.messages("bob").is_empty());

    // The shared copy expunged from Work stays in Home, byte for byte.
    let mut r = Raw::connect_login(&b.target(Security::Plain, "me"));
    r.cmd("s1", "SELECT Work").assert_ok("select");
    r.cmd("s2", "UID STORE 2 +FLAGS.SILENT (\\Deleted)").assert_ok("store");
    r.cmd("s3", "UID EXPUNGE 2").assert_ok("expunge");
    r.logout();
    assert_eq!(folder(&b, "Work").len(), 1);
    assert_eq!(folder(&b, "Home")[1].1, as_pop3_sends(&identical()), "the other folder keeps it");
    assert_eq!(bodies(&b), 4, "the body stays while a folder holds it");
    let mut r = Raw::connect_login(&b.target(Security::Plain, "me"));
    r.cmd("s1", "SELECT Home").assert_ok("select");
    r.cmd("s2", "UID STORE 2 +FLAGS.SILENT (\\Deleted)").assert_ok("store");
    r.cmd("s3", "UID EXPUNGE 2").assert_ok("expunge");
    r.logout();
    assert_eq!(bodies(&b), 3, "gone with its last folder");
}

#[test]
fn mark_flags_the_later_copies_duplicate() {
    let (b, d, out) = two_accounts("mark");
    assert!(out.contains("Home: 3 new message(s)") && out.contains("2 copies of messages already held"), "{out}");
    assert_eq!(bodies(&b), 4);
    let _daemon = b.daemon();
    let marked = |f: &Vec<String>| f.iter().any(|f| f == "$Duplicate");
    let work = folder(&b, "Work");
    assert!(work.iter().all(|(f, _)| !marked(f)), "the first copies are not marked: {work:?}");
    let home = folder(&b, "Home");
    assert_eq!(home.iter().map(|(f, _)| marked(f)).collect::<Vec<_>>(), [true, true, false], "{home:?}");
    assert_eq!(home[0].1, as_pop3_sends(&list_post("bob")));
    // SELECT announces the keyword, so clients can filter on it.
    let mut r = Raw::connect_login(&b.target(Security::Plain, "me"));
    let sel = r.cmd("s1", "SELECT Home");
    assert!(sel.untagged("* FLAGS").iter().any(|l| l.contains("$Duplicate")), "{:?}", sel.lines);
    r.logout();
    assert!(d.messages("alice").is_empty() && d.messages("bob").is_empty());
}

#[test]
fn hide_files_a_message_once_and_never_deletes_a_copy_it_did_not_store() {
    let (b, d, out) = two_accounts("hide");
    assert!(
        out.contains("Home: 1 new message(s)")
            && out.contains("2 copies of messages already held (2 not filed: duplicates = \"hide\")"),
        "{out}"
    );
    assert_eq!(bodies(&b), 3, "alice's two and bob's own: nothing stored for the hidden copies");
    let status = b.run(&["status"]).expect(0).stdout;
    assert!(status.contains("2 copies of messages already held, 2 of them not filed"), "{status}");
    {
        let _daemon = b.daemon();
        let home = folder(&b, "Home");
        assert_eq!(home.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(), [as_pop3_sends(&bobs_own())]);
        assert_eq!(folder(&b, "Work").len(), 2, "filed once, in the first account's folder");
    }
    // Bob's server: the byte-identical copy (held by the shared body) and bob's own were
    // deleted; bob's copy of the post, whose bytes popbridge does not hold, stays.
    assert_eq!(sorted(d.messages("bob")), vec![list_post("bob")]);
    // A later fetch downloads nothing again and still leaves it there.
    let r = b.run(&["fetch", "Home"]).expect(0);
    assert!(r.stdout.contains("Home: 0 new message(s)") && !r.stdout.contains("deleted"), "{}", r.stdout);
    assert_eq!(sorted(d.messages("bob")), vec![list_post("bob")]);
}
