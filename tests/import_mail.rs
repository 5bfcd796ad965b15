//! `popbridge import NAME PATH` (issue 17, part 2): another tool's mail — an mbox, a maildir, a
//! Thunderbird local folder — into the account's mailbox. A 20,000-message mbox imports in
//! bounded memory (peak RSS of the process, VmHWM, sampled while it runs) and every message is
//! served byte for byte over IMAP; an import killed with SIGKILL and run again stores each
//! message once; maildir flags and X-Mozilla-Status arrive as IMAP flags; a message's X-UIDL
//! keeps the next fetch from downloading it again.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::corpus::corpus;
use crate::util::fake_pop3::{FakeMessage, FakePop3, Script, mail};
use crate::util::imap_clients::{Raw, Security};
use crate::util::{Bridge, accounts::PopAccount, sorted};

/// An account "Work" on a fake POP3 server (that the import never talks to).
fn bridge(f: &FakePop3, listeners: bool) -> Bridge {
    let b = if listeners { Bridge::with_listeners() } else { Bridge::new() };
    b.add_pop_account(&PopAccount { name: "Work", ..PopAccount::fake(f.port()) }, &["--no-test"]).expect(0);
    b
}

/// An mboxrd file of `messages` (lines `>*From ` get one more `>`), each after a dated
/// `From ` line and followed by the newline writers add.
fn mboxrd(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    write_mboxrd(&mut out, messages);
    out
}

fn write_mboxrd(out: &mut impl std::io::Write, messages: &[Vec<u8>]) {
    for m in messages {
        out.write_all(b"From sender@example.com Sat Mar  1 09:15:00 2025\n").expect("write mbox");
        for line in m.split_inclusive(|b| *b == b'\n') {
            let q = line.iter().take_while(|b| **b == b'>').count();
            if line[q..].starts_with(b"From ") {
                out.write_all(b">").expect("write mbox");
            }
            out.write_all(line).expect("write mbox");
        }
        out.write_all(b"\n").expect("write mbox");
    }
}

fn sha256(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, b).as_ref().to_vec()
}

/// Every message of account Work's mailbox over IMAP: (UID, FLAGS, BODY[]).
fn imap_messages(b: &Bridge) -> Vec<(u32, Vec<String>, Vec<u8>)> {
    let mut v = Vec::new();
    imap_each(b, |uid, flags, body| v.push((uid, flags, body.to_vec())));
    v
}

/// Each message of account Work's mailbox over IMAP, in UID order, fetched 500 at a time.
fn imap_each(b: &Bridge, mut each: impl FnMut(u32, Vec<String>, &[u8])) {
    let mut r = Raw::connect_login(&b.target(Security::Plain, "me+Work"));
    let s = r.cmd("s", "SELECT INBOX");
    s.assert_ok("select");
    let exists = s.number("EXISTS").expect("EXISTS");
    let mut seen = 0;
    let mut from = 1;
    while from <= exists {
        let f = r.cmd("f", &format!("FETCH {from}:{} (UID FLAGS BODY.PEEK[])", (from + 499).min(exists)));
        f.assert_ok("fetch");
        let mut got: Vec<_> = f.fetches();
        got.sort_by_key(|x| x.uid());
        for x in &got {
            each(x.uid().expect("UID"), x.flags().expect("FLAGS"), x.get("BODY[]").expect("BODY[]"));
            seen += 1;
        }
        from += 500;
    }
    assert_eq!(seen, exists, "one FETCH response per message");
    r.logout();
}

/// Runs `popbridge import Work PATH`, sampling its peak resident memory (VmHWM) until it ends:
/// (stdout, peak KiB).
fn import_measured(b: &Bridge, path: &Path) -> (String, u64) {
    let out = tempfile::NamedTempFile::new_in(b.dir.path()).expect("stdout file");
    let mut child = b
        .cmd(&["import", "Work", &path.display().to_string()])
        .stdout(out.reopen().expect("stdout"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn popbridge import");
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let t = Instant::now();
    let code = loop {
        if let Ok(s) = std::fs::read_to_string(&status)
            && let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        assert!(t.elapsed() < Duration::from_secs(900), "import did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(out.path()).unwrap_or_default();
    assert_eq!(code, Some(0), "import failed: {stdout}");
    (stdout, peak)
}

#[test]
fn twenty_thousand_messages_import_in_bounded_memory_and_are_served_byte_for_byte() {
    const N: usize = 20_000;
    let f = FakePop3::start(Script::default());
    let b = bridge(&f, true);
    let path = b.dir.path().join("big.mbox");
    // The corpus is large (about 700 MB): written out, then only its digests kept.
    let want: Vec<(Vec<u8>, Vec<String>)> = {
        let c = corpus(N, 17);
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path).expect("create mbox"));
        write_mboxrd(&mut w, &c.messages);
        std::io::Write::flush(&mut w).expect("write mbox");
        c.messages.iter().zip(c.tags).map(|(m, t)| (sha256(m), t)).collect()
    };
    let size = std::fs::metadata(&path).expect("mbox").len();
    let t = Instant::now();
    let (stdout, peak) = import_measured(&b, &path);
    eprintln!("imported {N} messages, {size} bytes of mbox, in {:?}: peak RSS {peak} KiB", t.elapsed());
    assert!(stdout.contains(&format!("Work: {N} imported, 0 already there, 0 skipped")), "{stdout}");
    // A streaming import holds one message (the corpus's largest are a few MiB), the reader's
    // buffer and the store's caches, whatever the file's size: measured about 55 MiB (debug
    // build, 3,000 messages); the whole mbox is more than ten times that.
    assert!(peak < 128 * 1024, "peak RSS {peak} KiB for a {size}-byte mbox");
    assert!(peak * 1024 * 4 < size, "peak RSS {peak} KiB is not well below the mbox's size ({size} bytes)");
    std::fs::remove_file(&path).expect("remove mbox");

    let _d = b.daemon();
    let mut i = 0;
    imap_each(&b, |_, flags, body| {
        assert!(i < N, "more messages than imported");
        assert!(sha256(body) == want[i].0, "message {i} ({:?}) differs over IMAP", want[i].1);
        assert!(!flags.iter().any(|f| f == "\\Seen"), "an mbox records no flags: {flags:?}");
        i += 1;
    });
    assert_eq!(i, N);
}

#[test]
fn an_import_killed_midway_and_run_again_stores_every_message_once() {
    const N: usize = 3000;
    let c = corpus(N, 5);
    let f = FakePop3::start(Script::default());
    let b = bridge(&f, false);
    let path = b.dir.path().join("m.mbox");
    std::fs::write(&path, mboxrd(&c.messages)).expect("write mbox");
    let p = path.display().to_string();
    let mut child = b.cmd(&["import", "Work", &p]).stdout(Stdio::null()).spawn().expect("spawn import");
    let count = || {
        rusqlite::Connection::open(b.store_path())
            .and_then(|c| c.query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0)))
            .unwrap_or(0)
    };
    let t = Instant::now();
    while count() == 0 {
        assert!(child.try_wait().expect("wait").is_none(), "the import ended before it could be interrupted");
        assert!(t.elapsed() < Duration::from_secs(300), "nothing was committed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL the import");
    let _ = child.wait();
    let before = count() as usize;
    assert!(before > 0 && before < N, "{before} of {N} stored when killed");

    let r = b.run(&["import", "Work", &p]).expect(0);
    assert!(
        r.stdout.contains(&format!("Work: {} imported, {before} already there, 0 skipped", N - before)),
        "{}",
        r.stdout
    );
    assert_eq!(sorted(b.messages("Work")), sorted(c.messages.clone()), "each message once, none missing");
    // A third run finds everything there.
    let r = b.run(&["import", "Work", &p]).expect(0);
    assert!(r.stdout.contains(&format!("Work: 0 imported, {N} already there")), "{}", r.stdout);
}

/// A message with its `X-UIDL` and `X-Mozilla-Status` fields first, as Thunderbird writes it
/// (comm-central `nsPop3Sink.cpp`: X-UIDL, then X-Mozilla-Status and X-Mozilla-Status2).
fn thunderbird(uidl: &str, status: u16, m: &[u8]) -> Vec<u8> {
    let mut v =
        format!("X-UIDL: {uidl}\r\nX-Mozilla-Status: {status:04x}\r\nX-Mozilla-Status2: 00000000\r\n").into_bytes();
    v.extend_from_slice(m);
    v
}

#[test]
fn thunderbird_and_maildir_flags_arrive_as_imap_flags_and_from_lines_are_unquoted() {
    let f = FakePop3::start(Script::default());
    let b = bridge(&f, true);
    // Thunderbird's folder: read, replied, marked, expunged (not imported), and a body with
    // "From " lines quoted as mboxrd does.
    let quoted = b"Subject: quoted\r\n\r\nFrom the start\r\n>From once\r\n>>From twice\r\n".to_vec();
    let tb = [
        thunderbird("T1", 0x0001, &mail("read", "r")),
        thunderbird("T2", 0x0002, &mail("replied", "r")),
        thunderbird("T3", 0x0004, &mail("marked", "r")),
        thunderbird("T4", 0x0009, &mail("expunged", "r")),
        quoted.clone(),
    ];
    let path = b.dir.path().join("Inbox");
    std::fs::write(&path, mboxrd(&tb)).expect("write folder");
    let r = b.run(&["import", "Work", &path.display().to_string()]).expect(0);
    assert!(
        r.stdout.contains("Work: 4 imported, 0 already there, 1 skipped (1 deleted in Thunderbird"),
        "{}",
        r.stdout
    );

    let md = b.dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).expect("maildir");
    }
    let files = [
        ("cur/1700000001.a.host:2,S", mail("md seen", "m")),
        ("cur/1700000002.b.host:2,FR", mail("md flagged answered", "m")),
        ("cur/1700000003.c.host:2,DT", mail("md draft trashed", "m")),
        ("new/1700000004.d.host", mail("md new", "m")),
    ];
    for (name, data) in &files {
        std::fs::write(md.join(name), data).expect("write maildir file");
    }
    let r = b.run(&["import", "Work", &md.display().to_string()]).expect(0);
    assert!(r.stdout.contains("Work: 4 imported, 0 already there, 0 skipped"), "{}", r.stdout);

    let _d = b.daemon();
    let got = imap_messages(&b);
    let flags: Vec<Vec<String>> = got.iter().map(|g| sorted_strs(&g.1)).collect();
    let want: Vec<Vec<&str>> = vec![
        vec!["\\Seen"],
        vec!["\\Answered"],
        vec!["\\Flagged"],
        vec![],
        vec!["\\Seen"],
        vec!["\\Answered", "\\Flagged"],
        vec!["\\Deleted", "\\Draft"],
        vec![],
    ];
    assert_eq!(flags, want);
    assert_eq!(got[3].2, quoted, "mboxrd: one '>' less on each quoted From line");
    assert_eq!(got[0].2, tb[0], "Thunderbird's message as it was written, X-UIDL and all");
    assert_eq!(got[5].2, files[1].1);
}

fn sorted_strs(v: &[String]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().filter(|f| *f != "\\Recent").cloned().collect();
    v.sort();
    v
}

#[test]
fn a_message_carrying_x_uidl_is_not_downloaded_again() {
    let (a, bb, c) = (mail("a", "one"), mail("b", "two"), mail("c", "three"));
    let f = FakePop3::start(Script {
        messages: vec![
            FakeMessage::new("U1", a.clone()),
            FakeMessage::new("U2", bb.clone()),
            FakeMessage::new("U3", c.clone()),
        ],
        ..Script::default()
    });
    let b = bridge(&f, false);
    let path = b.dir.path().join("Inbox");
    std::fs::write(&path, mboxrd(&[thunderbird("U1", 1, &a), thunderbird("U2", 0, &bb)])).expect("write folder");
    let r = b.run(&["import", "Work", &path.display().to_string()]).expect(0);
    assert!(r.stdout.contains("2 carried a UIDL"), "{}", r.stdout);
    b.run(&["fetch", "Work"]).expect(0);
    let retr: Vec<String> = f.commands().into_iter().filter(|c| c.starts_with("RETR")).collect();
    assert_eq!(retr, vec!["RETR 3".to_string()], "only the message the folder did not hold");
    let got = b.messages("Work");
    assert_eq!(got.len(), 3);
    assert_eq!(got[2], c);
}

#[test]
fn no_import_while_the_account_is_being_fetched() {
    let f = FakePop3::start(Script::default());
    let b = bridge(&f, false);
    let path = b.dir.path().join("m.mbox");
    std::fs::write(&path, mboxrd(&[mail("a", "one")])).expect("write mbox");
    let p = path.display().to_string();
    let lock = popbridge::fetch::lock::AccountLock::acquire(&b.data.join("locks"), "Work").expect("lock");
    let r = b.run(&["import", "Work", &p]).expect(6);
    assert!(r.stderr.contains("already being fetched") && r.stderr.contains("nothing was imported"), "{}", r.stderr);
    assert!(b.messages("Work").is_empty());
    drop(lock);
    let r = b.run(&["import", "Work", &p]).expect(0);
    assert!(r.stdout.contains("Work: 1 imported"), "{}", r.stdout);
}
