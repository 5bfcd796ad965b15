//! CONDSTORE and QRESYNC (RFC 7162) and keyword announcements: the same command sequence sent to
//! the test Dovecot and to popbridge's IMAP server (the same messages, fetched over POP3), the
//! replies compared by structure — which UIDs appear in FETCH / VANISHED / MODIFIED / SEARCH, the
//! flags, when FLAGS is announced — with MODSEQ values replaced by their order (each server
//! numbers its own; both must only go up) and UIDVALIDITY by each server's own.

use std::collections::HashMap;

use crate::util::Bridge;
use crate::util::corpus::corpus;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::imap_clients::{Raw, Reply, Security, Target};

/// A reply's lines as compared: FLAGS lists, FETCH (UID, FLAGS without \Recent, whether MODSEQ
/// came), VANISHED, SEARCH (numbers), ENABLED, [CLOSED], and the tagged status with MODIFIED.
fn shape(r: &Reply, modseqs: &mut HashMap<u32, u64>) -> Vec<String> {
    let mut out = Vec::new();
    for l in &r.lines {
        let u = l.to_ascii_uppercase();
        if u.starts_with("* FLAGS") || u.starts_with("* VANISHED") || u.starts_with("* ENABLED") {
            out.push(l.clone());
        } else if u.starts_with("* OK [CLOSED]") {
            out.push("* OK [CLOSED]".into());
        } else if u.starts_with("* SEARCH") {
            out.push(l.split(" (MODSEQ").next().unwrap_or("").to_string());
        }
    }
    for f in r.fetches() {
        let mut flags: Vec<String> =
            f.flags().map(|v| v.into_iter().filter(|x| x != "\\Recent").collect()).unwrap_or_default();
        flags.sort();
        let modseq = f.get("MODSEQ").map(|m| {
            let n: u64 = String::from_utf8_lossy(m).trim_matches(|c| c == '(' || c == ')').parse().unwrap();
            if let Some(u) = f.uid() {
                let prev = modseqs.insert(u, n).unwrap_or(0);
                assert!(n >= prev, "MODSEQ of UID {u} went down: {prev} → {n}");
            }
        });
        out.push(format!(
            "* {} FETCH uid={:?} flags={} modseq={}",
            f.seq,
            f.uid(),
            if f.get("FLAGS").is_some() { flags.join(" ") } else { "-".into() },
            modseq.is_some()
        ));
    }
    let modified = r.code("MODIFIED").map(|m| format!(" [MODIFIED {m}]")).unwrap_or_default();
    out.push(format!("{}{modified}", r.status()));
    out
}

fn highestmodseq(r: &Reply) -> u64 {
    r.code("HIGHESTMODSEQ").and_then(|m| m.parse().ok()).unwrap_or_else(|| panic!("no HIGHESTMODSEQ: {:?}", r.lines))
}

/// The sequence (RFC 7162 §3.1 and §3.2, adapted), run on `mailbox` of the server at `t`.
fn transcript(t: &Target, mailbox: &str) -> Vec<(String, Vec<String>)> {
    let mut raw = Raw::connect_login(t);
    let mut ms = HashMap::new();
    let mut log = Vec::new();
    let mut run = |raw: &mut Raw, tag: &str, cmd: &str, ms: &mut HashMap<u32, u64>| -> Reply {
        let r = raw.cmd(tag, cmd);
        log.push((cmd.to_string(), shape(&r, ms)));
        r
    };
    run(&mut raw, "a1", "ENABLE QRESYNC CONDSTORE", &mut ms);
    let r = raw.cmd("a2", &format!("SELECT {mailbox}"));
    let uv: u32 = r.code("UIDVALIDITY").unwrap().parse().unwrap();
    // The same starting point on both (Dovecot's POP3 RETR set \Seen there).
    raw.cmd("a3", "STORE 1:* FLAGS.SILENT ()").assert_ok("reset");
    let h0 = highestmodseq(&raw.cmd("a4", &format!("SELECT {mailbox}")));
    ms.clear();
    run(&mut raw, "b1", "STORE 1 +FLAGS ($Label1)", &mut ms);
    run(&mut raw, "b2", "UID STORE 2 +FLAGS.SILENT (\\Seen)", &mut ms);
    run(&mut raw, "b3", &format!("STORE 1:3 (UNCHANGEDSINCE {h0}) +FLAGS (\\Flagged)"), &mut ms);
    run(&mut raw, "b4", &format!("UID STORE 1:6 (UNCHANGEDSINCE {h0}) +FLAGS.SILENT (\\Answered)"), &mut ms);
    run(&mut raw, "b5", &format!("FETCH 1:* (FLAGS) (CHANGEDSINCE {h0})"), &mut ms);
    run(&mut raw, "b6", "FETCH 2 (MODSEQ)", &mut ms);
    run(&mut raw, "b7", &format!("SEARCH MODSEQ {}", h0 + 1), &mut ms);
    run(&mut raw, "c1", "STORE 4 +FLAGS.SILENT (\\Deleted)", &mut ms);
    run(&mut raw, "c2", "EXPUNGE", &mut ms);
    run(&mut raw, "c3", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", &mut ms);
    run(&mut raw, "c4", &format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {h0} VANISHED)"), &mut ms);
    run(&mut raw, "c5", &format!("SELECT {mailbox} (QRESYNC ({uv} {h0}))"), &mut ms);
    run(&mut raw, "c6", &format!("EXAMINE {mailbox} (QRESYNC ({uv} {h0} 1:3))"), &mut ms);
    run(&mut raw, "c7", &format!("SELECT {mailbox} (QRESYNC ({} {h0}))", uv.wrapping_add(1)), &mut ms);
    run(&mut raw, "c8", "UID STORE 5 +FLAGS (\\Deleted)", &mut ms);
    run(&mut raw, "c9", "UID EXPUNGE 5", &mut ms);
    run(&mut raw, "d1", "UID MOVE 6 Trash", &mut ms);
    raw.logout();
    log
}

#[test]
fn condstore_and_qresync_answer_as_dovecot_does() {
    let d = Dovecot::start(DovecotOpts::default());
    let c = corpus(6, 15);
    d.deliver("alice", &c.messages);
    let b = Bridge::with_listeners();
    b.add_dovecot_alice(&d, &[]).expect(0);
    b.run(&["fetch"]).expect(0);
    let _daemon = b.daemon();
    // Dovecot's Trash for MOVE.
    Raw::connect_login(&Target::dovecot(&d, "alice", "alice-pw", Security::Plain)).cmd("t", "CREATE Trash");
    let ours = transcript(&b.target(Security::Plain, "me"), "Work");
    let theirs = transcript(&Target::dovecot(&d, "alice", "alice-pw", Security::Plain), "INBOX");
    for ((cmd, o), (_, t)) in ours.iter().zip(&theirs) {
        assert_eq!(o, t, "{cmd}\n--- popbridge ---\n{}\n--- Dovecot ---\n{}", o.join("\n"), t.join("\n"));
    }
    assert_eq!(ours.len(), theirs.len());
}
