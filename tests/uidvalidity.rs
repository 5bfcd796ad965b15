//! A mailbox's identity over IMAP (RFC 3501 §2.3.1.1): a mailbox deleted and created again under
//! the same name is a new mailbox, so it gets a new UIDVALIDITY — even within the same second —
//! and a session still holding the old one selected is told it is gone rather than shown the new
//! one's messages under the old UIDs.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::util::Bridge;
use crate::util::imap_clients::{Raw, Reply, Security};

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `APPEND` with a non-synchronising literal (LITERAL+); returns the reply.
fn append(r: &mut Raw, tag: &str, mailbox: &str, message: &[u8]) -> Reply {
    let mut bytes = format!("{tag} APPEND {mailbox} {{{}+}}\r\n", message.len()).into_bytes();
    bytes.extend_from_slice(message);
    bytes.extend_from_slice(b"\r\n");
    r.send(&bytes);
    r.read_until_tagged(tag)
}

/// `[APPENDUID uidvalidity uid]` of an APPEND reply.
fn appenduid(reply: &Reply) -> (u32, u32) {
    let code = reply.code("APPENDUID").unwrap_or_else(|| panic!("no APPENDUID: {:?}", reply.lines));
    let mut it = code.split(' ').map(|v| v.parse::<u32>().unwrap_or_else(|_| panic!("APPENDUID {code}")));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn message(subject: &str) -> Vec<u8> {
    format!("From: a@example.com\r\nTo: b@example.com\r\nSubject: {subject}\r\n\r\n{subject}\r\n").into_bytes()
}

/// The body of UID `uid` in the selected mailbox.
fn body(r: &mut Raw, tag: &str, uid: u32) -> Vec<u8> {
    let f = r.cmd(tag, &format!("UID FETCH {uid} (BODY.PEEK[])"));
    f.assert_ok("uid fetch");
    f.fetches().iter().find_map(|x| x.get("BODY[]").map(<[u8]>::to_vec)).unwrap_or_default()
}

#[test]
fn a_mailbox_deleted_and_created_again_gets_a_new_uidvalidity_even_within_a_second() {
    let b = Bridge::with_listeners();
    let _daemon = b.daemon();
    let mut r = Raw::connect_login(&b.target(Security::Plain, "me"));
    // Several rounds, so that at least one DELETE + CREATE falls within one second (the case a
    // clock-based UIDVALIDITY gets wrong); every round must give a value never seen before.
    let mut seen: Vec<(u32, u32, Vec<u8>)> = Vec::new();
    let mut same_second = 0;
    for round in 0..6 {
        let t0 = unix_secs();
        r.cmd(&format!("c{round}"), "CREATE Projects").assert_ok("create");
        let subject = format!("round {round}");
        let a = append(&mut r, &format!("a{round}"), "Projects", &message(&subject));
        a.assert_ok("append");
        let (validity, uid) = appenduid(&a);
        let sel = r.cmd(&format!("s{round}"), "SELECT Projects");
        sel.assert_ok("select");
        assert_eq!(sel.code("UIDVALIDITY"), Some(validity.to_string()), "SELECT and APPENDUID agree: {:?}", sel.lines);
        assert_eq!(body(&mut r, &format!("f{round}"), uid), message(&subject));
        for (v, u, old) in &seen {
            assert!(
                !(*v == validity && *u == uid),
                "round {round}: UIDVALIDITY {validity} UID {uid} named another message before ({:?}); now {subject:?}",
                String::from_utf8_lossy(old)
            );
            assert_ne!(*v, validity, "round {round}: a re-created mailbox repeats UIDVALIDITY {validity}");
        }
        seen.push((validity, uid, message(&subject)));
        r.cmd(&format!("u{round}"), "UNSELECT").assert_ok("unselect");
        r.cmd(&format!("d{round}"), "DELETE Projects").assert_ok("delete");
        if unix_secs() == t0 {
            same_second += 1;
        }
    }
    assert!(same_second > 0, "no round fell within one second: the same-second case was not exercised");
    // STATUS of the new mailbox says the same as SELECT did.
    r.cmd("c9", "CREATE Projects").assert_ok("create");
    let st = r.cmd("st9", "STATUS Projects (UIDVALIDITY UIDNEXT)");
    st.assert_ok("status");
    let v: u32 = st.lines[0]
        .split("UIDVALIDITY ")
        .nth(1)
        .and_then(|s| s.split([' ', ')']).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{:?}", st.lines));
    assert!(seen.iter().all(|(old, _, _)| *old != v), "STATUS UIDVALIDITY {v} repeats one of {seen:?}");
    r.logout();
}

#[test]
fn a_session_holding_a_mailbox_that_was_deleted_and_created_again_is_told() {
    let b = Bridge::with_listeners();
    let _daemon = b.daemon();
    let mut a = Raw::connect_login(&b.target(Security::Plain, "me"));
    let mut other = Raw::connect_login(&b.target(Security::Plain, "me"));
    a.cmd("c1", "CREATE Projects").assert_ok("create");
    let first = append(&mut a, "a1", "Projects", &message("first"));
    let (v1, uid1) = appenduid(&first);
    other.cmd("o1", "SELECT Projects").assert_ok("select");
    assert_eq!(body(&mut other, "o2", uid1), message("first"));
    // Another client deletes the mailbox and creates one with the same name, with other mail.
    a.cmd("d1", "DELETE Projects").assert_ok("delete");
    a.cmd("c2", "CREATE Projects").assert_ok("create");
    let second = append(&mut a, "a2", "Projects", &message("second"));
    let (v2, uid2) = appenduid(&second);
    assert_ne!(v1, v2, "a new mailbox, a new UIDVALIDITY");
    assert_eq!(uid2, 1);
    // The session that had the old one selected must not be shown the new mailbox's message as its
    // UID 1: the server says the mailbox is gone (BYE, as Dovecot) before anything else.
    other.send(b"o3 UID FETCH 1 (BODY.PEEK[])\r\n");
    let mut lines = Vec::new();
    while let Some(l) = other.try_read_line_bytes() {
        let text = String::from_utf8_lossy(&l).into_owned();
        let tagged = text.starts_with("o3 ");
        lines.push(text);
        if tagged {
            break;
        }
    }
    let joined = lines.join("\n");
    assert!(!joined.contains("Subject: second"), "the old session was served the new mailbox's mail: {joined}");
    assert!(
        lines.first().is_some_and(|l| l.starts_with("* BYE")),
        "the session hears that its mailbox is gone: {joined}"
    );
}
