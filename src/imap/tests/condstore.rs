//! CONDSTORE and QRESYNC (RFC 7162) and the keyword announcements (RFC 3501 §7.2.6): transcripts.
//! The six messages of the harness arrive in one delivery: MODSEQ 2 each, HIGHESTMODSEQ 2.

use super::*;

/// Walks responses as a state-tracking client does: `* FLAGS (…)` sets the known flags; a FETCH
/// carrying a keyword not among them is a violation (RFC 3501 §7.2.6, §7.4.2). MODSEQs seen per
/// UID must not go down.
#[derive(Default)]
struct Checker {
    known: Vec<String>,
    modseq: std::collections::HashMap<u32, u64>,
}

impl Checker {
    #[track_caller]
    fn check(&mut self, responses: &[Vec<u8>]) {
        for r in responses {
            let line = s(r);
            if let Some(list) = line.strip_prefix("* FLAGS (") {
                self.known = list.trim_end().trim_end_matches(')').split(' ').map(str::to_ascii_lowercase).collect();
                continue;
            }
            if !line.starts_with("* ") || !line.contains(" FETCH (") {
                continue;
            }
            if let Some(at) = line.find("FLAGS (") {
                let list = &line[at + 7..];
                let list = &list[..list.find(')').unwrap()];
                for f in list.split(' ').filter(|f| !f.is_empty() && !f.starts_with('\\')) {
                    assert!(self.known.contains(&f.to_ascii_lowercase()), "keyword {f} before its FLAGS: {line}");
                }
            }
            if let (Some(u), Some(m)) = (word_after(&line, "UID "), word_after(&line, "MODSEQ (")) {
                let prev = self.modseq.insert(u as u32, m).unwrap_or(0);
                assert!(m >= prev, "MODSEQ of UID {u} went down: {prev} → {m}: {line}");
            }
        }
    }
}

fn word_after(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

const SYSTEM: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

fn flags_lines(keywords: &str) -> [String; 2] {
    [
        format!("* FLAGS ({SYSTEM}{keywords})"),
        format!("* OK [PERMANENTFLAGS ({SYSTEM}{keywords} \\*)] flags and keywords are kept"),
    ]
}

// ===== keywords without FLAGS (the bug) =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_keyword_is_announced_before_any_fetch_carries_it() {
    let h = Harness::start().await;
    let mut c = h.selected().await;
    let mut d = h.selected().await; // selected before the keyword exists
    let [f, p] = flags_lines(" $Label1");
    c.expect(
        "a1",
        "STORE 1 +FLAGS ($Label1)",
        &[&f, &p, "* 1 FETCH (FLAGS ($Label1 \\Recent))", "a1 OK STORE completed"],
    )
    .await;
    // Known now: a second STORE of it announces nothing.
    c.expect("a2", "STORE 2 +FLAGS ($label1)", &["* 2 FETCH (FLAGS ($label1 \\Recent))", "a2 OK STORE completed"])
        .await;
    // The other session: its FETCH reads the keyword from the store before any notification
    // could tell it — FLAGS still comes first.
    let r = d.cmd("b1", "FETCH 1 FLAGS").await;
    assert_eq!(
        &r[..3].iter().map(|l| s(l)).collect::<Vec<_>>(),
        &[format!("{f}\r\n"), format!("{p}\r\n"), "* 1 FETCH (FLAGS ($Label1))\r\n".into()],
        "{}",
        show(&r)
    );
    Checker::default().check(&r);
    // A session that only hears of it through NOOP.
    let mut e = h.login("me").await;
    e.cmd("x", "EXAMINE Work").await;
    c.cmd("a3", "STORE 3 +FLAGS ($Other)").await;
    let r = e.cmd("c1", "NOOP").await;
    assert_eq!(s(&r[0]), format!("* FLAGS ({SYSTEM} $Label1 $Other)\r\n"), "{}", show(&r));
    assert_eq!(s(&r[1]), "* OK [PERMANENTFLAGS ()] read-only\r\n", "{}", show(&r));
    assert_eq!(s(&r[2]), "* 3 FETCH (UID 3 FLAGS ($Other))\r\n", "{}", show(&r));
    // SELECT and EXAMINE list the mailbox's keywords (from its keyword table, not the messages).
    c.cmd("a4", "STORE 3 -FLAGS ($Other)").await;
    let mut g = h.login("me").await;
    let r = g.cmd("d1", "SELECT Work").await;
    let [f, p] = flags_lines(" $Label1 $Other");
    assert_eq!((s(&r[0]), s(&r[1])), (format!("{f}\r\n"), format!("{p}\r\n")), "{}", show(&r));
    let r = g.cmd("d2", "EXAMINE Work").await;
    assert_eq!(
        (s(&r[0]), s(&r[1])),
        (format!("{f}\r\n"), "* OK [PERMANENTFLAGS ()] read-only\r\n".into()),
        "{}",
        show(&r)
    );
    // APPEND and COPY teach the destination its keywords too.
    let m = "Subject: x\r\n\r\nx\r\n";
    g.cmd("d3", &format!("APPEND INBOX ($Appended) {{{}+}}\r\n{m}", m.len())).await;
    g.cmd("d4", "SELECT Work").await;
    g.cmd("d5", "COPY 1 Trash").await;
    let r = g.cmd("d6", "SELECT INBOX").await;
    assert_eq!(s(&r[0]), format!("* FLAGS ({SYSTEM} $Appended)\r\n"), "{}", show(&r));
    let r = g.cmd("d7", "SELECT Trash").await;
    assert_eq!(s(&r[0]), format!("* FLAGS ({SYSTEM} $Label1)\r\n"), "{}", show(&r));
}

/// Ten sessions doing random STORE (system flags and ever new keywords), FETCH and NOOP: no
/// response anywhere carries a keyword its session was not told of, and MODSEQs never go down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sessions_never_see_a_keyword_before_its_flags() {
    let h = Arc::new(Harness::start().await);
    let mut tasks = Vec::new();
    for n in 0..10u64 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = h.login("me").await;
            let mut chk = Checker::default();
            chk.check(&c.cmd("e", "ENABLE CONDSTORE").await);
            chk.check(&c.cmd("s", "SELECT Work").await);
            let mut x = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            for i in 0..40 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let msg = (x >> 33) % 6 + 1;
                let cmd = match (x >> 20) % 5 {
                    0 => format!("STORE {msg} +FLAGS ($k{}-{})", n, i % 7),
                    1 => format!("STORE {msg} -FLAGS ($k{}-{} \\Seen)", (x >> 40) % 10, i % 7),
                    2 => format!("UID STORE {msg} FLAGS (\\Flagged $k{}-{})", (x >> 45) % 10, i % 5),
                    3 => "FETCH 1:* (FLAGS MODSEQ)".to_string(),
                    _ => "NOOP".to_string(),
                };
                let r = c.cmd(&format!("t{i}"), &cmd).await;
                assert!(s(r.last().unwrap()).contains(" OK "), "{cmd}: {}", show(&r));
                chk.check(&r);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The message count and UIDs a client tracks from EXISTS, EXPUNGE, VANISHED and its own
/// `UID SEARCH ALL`, on top of [`Checker`]. While others write, a SEARCH may leave out messages
/// expunged but not reported yet, never add any; with the mailbox quiet (`exact`), it finds
/// exactly the tracked count.
#[derive(Default)]
struct Counts {
    count: usize,
    /// UIDs reported VANISHED: never again, and never in a later SEARCH.
    gone: Vec<u32>,
    exact: bool,
}

impl Counts {
    #[track_caller]
    fn check(&mut self, responses: &[Vec<u8>]) {
        for r in responses {
            let line = s(r);
            let words: Vec<&str> = line.trim_end().split(' ').collect();
            match words.as_slice() {
                ["*", n, "EXISTS"] => {
                    let n: usize = n.parse().unwrap();
                    assert!(n >= self.count, "EXISTS went down: {} → {n}", self.count);
                    self.count = n;
                }
                ["*", n, "EXPUNGE"] => {
                    let n: usize = n.parse().unwrap();
                    assert!(n >= 1 && n <= self.count, "EXPUNGE {n} of {}", self.count);
                    self.count -= 1;
                }
                ["*", "VANISHED", set] => {
                    let mut n = 0;
                    for part in set.split(',') {
                        let (a, b) = part.split_once(':').unwrap_or((part, part));
                        let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
                        for u in a..=b {
                            assert!(!self.gone.contains(&u), "VANISHED {u} twice: {line}");
                            self.gone.push(u);
                            n += 1;
                        }
                    }
                    assert!(n <= self.count, "VANISHED {n} of {}", self.count);
                    self.count -= n;
                }
                ["*", "SEARCH", hits @ ..] => {
                    if self.exact {
                        assert_eq!(hits.len(), self.count, "SEARCH ALL against the tracked count: {line}");
                    }
                    assert!(hits.len() <= self.count, "SEARCH ALL finds more than the tracked {}: {line}", self.count);
                    for h in hits {
                        let h: u32 = h.parse().unwrap();
                        assert!(!self.gone.contains(&h), "UID {h} found after its VANISHED: {line}");
                    }
                }
                _ => {}
            }
        }
    }
}

/// Ten sessions (half of them with QRESYNC) doing random STORE, EXPUNGE, APPEND, FETCH and NOOP:
/// each one's EXISTS / EXPUNGE / VANISHED keep its count equal to what `UID SEARCH ALL` finds
/// (once quiet), a UID vanishes once and is never found again, no keyword comes before its
/// FLAGS, MODSEQs never go down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sessions_with_expunges_and_appends_stay_consistent() {
    let h = Arc::new(Harness::start().await);
    let mut tasks = Vec::new();
    for n in 0..10u64 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = h.login("me").await;
            let (mut chk, mut counts) = (Checker::default(), Counts::default());
            if n % 2 == 0 {
                run(&mut c, &mut chk, &mut counts, "e", "ENABLE QRESYNC").await;
            }
            run(&mut c, &mut chk, &mut counts, "s", "SELECT Work").await;
            run(&mut c, &mut chk, &mut counts, "s0", "UID SEARCH ALL").await;
            let mut x = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            for i in 0..30 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = 1 + (x >> 33) % 12;
                let m = "Subject: more\r\n\r\nx\r\n";
                let cmd = match (x >> 20) % 7 {
                    0 => format!("UID STORE {u} +FLAGS ($k{n}-{})", i % 4),
                    1 => format!("UID STORE {u} +FLAGS.SILENT (\\Deleted)"),
                    2 => "EXPUNGE".to_string(),
                    3 => format!("UID EXPUNGE {u}"),
                    4 => format!("APPEND Work {{{}+}}\r\n{m}", m.len()),
                    5 => "UID FETCH 1:* (FLAGS)".to_string(),
                    _ => "NOOP".to_string(),
                };
                run(&mut c, &mut chk, &mut counts, &format!("t{i}"), &cmd).await;
                run(&mut c, &mut chk, &mut counts, &format!("q{i}"), "UID SEARCH ALL").await;
            }
            (c, chk, counts)
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    // Everyone has stopped: one NOOP brings each session up to date, and SEARCH agrees exactly.
    for (mut c, mut chk, mut counts) in done {
        run(&mut c, &mut chk, &mut counts, "z1", "NOOP").await;
        counts.exact = true;
        run(&mut c, &mut chk, &mut counts, "z2", "UID SEARCH ALL").await;
    }
}

async fn run(c: &mut Client, chk: &mut Checker, counts: &mut Counts, tag: &str, cmd: &str) {
    let r = c.cmd(tag, cmd).await;
    assert!(s(r.last().unwrap()).contains(" OK "), "{cmd}: {}", show(&r));
    chk.check(&r);
    counts.check(&r);
}

// ===== CONDSTORE (RFC 7162 §3.1) =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condstore_transcript() {
    let h = Harness::start().await;
    let uv = h.uidvalidity("Work");
    let mut c = h.login("me").await;
    c.expect("a1", "ENABLE CONDSTORE", &["* ENABLED CONDSTORE", "a1 OK ENABLE completed"]).await;
    // §3.1.2.1: SELECT reports HIGHESTMODSEQ once CONDSTORE is on.
    let mut want = select_lines(6, 6, Some(1), uv, 7);
    want.push("* OK [HIGHESTMODSEQ 2] Highest".into());
    want.push("a2 OK [READ-WRITE] SELECT completed".into());
    c.expect("a2", "SELECT Work", &want).await;
    // §3.1.3: STORE replies carry MODSEQ (UID for UID STORE); .SILENT still reports the MODSEQ.
    let [f, p] = flags_lines(" $Label1");
    c.expect(
        "a3",
        "STORE 1 +FLAGS ($Label1)",
        &[&f, &p, "* 1 FETCH (MODSEQ (3) FLAGS ($Label1 \\Recent))", "a3 OK STORE completed"],
    )
    .await;
    c.expect(
        "a4",
        "UID STORE 2 +FLAGS (\\Seen)",
        &["* 2 FETCH (UID 2 MODSEQ (4) FLAGS (\\Seen \\Recent))", "a4 OK STORE completed"],
    )
    .await;
    c.expect("a5", "STORE 3 +FLAGS.SILENT (\\Seen)", &["* 3 FETCH (MODSEQ (5))", "a5 OK STORE completed"]).await;
    // §3.1.3 example (d105, adapted: there is no message 7 here, and a set naming one is BAD):
    // UNCHANGEDSINCE fails for messages changed since; the others are stored; MODIFIED lists
    // sequence numbers (UIDs for UID STORE).
    c.expect(
        "d105",
        "STORE 7,5,3,1 (UNCHANGEDSINCE 4) +FLAGS.SILENT (\\Deleted)",
        &["d105 BAD invalid message sequence number"],
    )
    .await;
    c.expect(
        "d106",
        "STORE 5,3,1 (UNCHANGEDSINCE 4) +FLAGS.SILENT (\\Deleted)",
        &["* 1 FETCH (MODSEQ (6))", "* 5 FETCH (MODSEQ (6))", "d106 OK [MODIFIED 3] conditional STORE failed"],
    )
    .await;
    c.expect(
        "d107",
        "UID STORE 2:3 (UNCHANGEDSINCE 5) -FLAGS (\\Seen)",
        &[
            "* 2 FETCH (UID 2 MODSEQ (7) FLAGS (\\Recent))",
            "* 3 FETCH (UID 3 MODSEQ (7) FLAGS (\\Recent))",
            "d107 OK STORE completed",
        ],
    )
    .await;
    // §3.1.3: UNCHANGEDSINCE 0 always fails.
    c.expect(
        "d108",
        "UID STORE 4 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)",
        &["d108 OK [MODIFIED 4] conditional STORE failed"],
    )
    .await;
    // §3.1.4: FETCH MODSEQ; CHANGEDSINCE (which adds MODSEQ, last).
    c.expect(
        "f1",
        "FETCH 1,4 (MODSEQ)",
        &["* 1 FETCH (MODSEQ (6))", "* 4 FETCH (MODSEQ (2))", "f1 OK FETCH completed"],
    )
    .await;
    c.expect(
        "s100",
        "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 6)",
        &[
            "* 2 FETCH (UID 2 FLAGS (\\Recent) MODSEQ (7))",
            "* 3 FETCH (UID 3 FLAGS (\\Recent) MODSEQ (7))",
            "s100 OK FETCH completed",
        ],
    )
    .await;
    c.expect("s101", "FETCH 1:* (FLAGS) (CHANGEDSINCE 7)", &["s101 OK FETCH completed"]).await;
    // Only the changed messages inside the set: the changed ones are read through the MODSEQ
    // index, then held against the set (ranges, single numbers, sequence numbers).
    c.expect(
        "s102",
        "UID FETCH 3:4,1 (FLAGS) (CHANGEDSINCE 5)",
        &[
            "* 1 FETCH (UID 1 FLAGS (\\Deleted $Label1 \\Recent) MODSEQ (6))",
            "* 3 FETCH (UID 3 FLAGS (\\Recent) MODSEQ (7))",
            "s102 OK FETCH completed",
        ],
    )
    .await;
    c.expect(
        "s103",
        "FETCH 2 (FLAGS) (CHANGEDSINCE 5)",
        &["* 2 FETCH (FLAGS (\\Recent) MODSEQ (7))", "s103 OK FETCH completed"],
    )
    .await;
    c.expect("s104", "UID FETCH 4:* (FLAGS) (CHANGEDSINCE 6)", &["s104 OK FETCH completed"]).await;
    // §3.1.5: SEARCH MODSEQ, with the highest MODSEQ of the hits; none: no MODSEQ.
    c.expect("a", "SEARCH MODSEQ 6", &["* SEARCH 1 2 3 5 (MODSEQ 7)", "a OK SEARCH completed"]).await;
    c.expect(
        "b",
        "UID SEARCH MODSEQ \"/flags/\\\\draft\" all 7 NOT 3",
        &["* SEARCH 2 (MODSEQ 7)", "b OK SEARCH completed"],
    )
    .await;
    c.expect("c", "SEARCH MODSEQ 8", &["* SEARCH", "c OK SEARCH completed"]).await;
    // §3.1.6: STATUS HIGHESTMODSEQ.
    c.expect(
        "s",
        "STATUS Trash (HIGHESTMODSEQ MESSAGES)",
        &["* STATUS \"Trash\" (HIGHESTMODSEQ 1 MESSAGES 0)", "s OK STATUS completed"],
    )
    .await;
    // Changes by another session arrive with UID and MODSEQ.
    let mut d = h.selected().await;
    d.cmd("x", "STORE 6 +FLAGS (\\Flagged)").await;
    c.expect("n", "NOOP", &["* 6 FETCH (UID 6 MODSEQ (8) FLAGS (\\Flagged \\Recent))", "n OK completed"]).await;
    // A FETCH that sets \Seen: its new MODSEQ follows as an untagged FETCH.
    let r = c.cmd("g", "FETCH 4 (BODY[HEADER.FIELDS (SUBJECT)])").await;
    assert_eq!(s(&r[1]), "* 4 FETCH (UID 4 MODSEQ (9) FLAGS (\\Seen \\Recent))\r\n", "{}", show(&r));
    // CHANGEDSINCE with a body section: only the changed message is answered, and only it is
    // marked \Seen.
    c.expect(
        "h",
        "FETCH 1:* (BODY[HEADER.FIELDS (SUBJECT)]) (CHANGEDSINCE 8)",
        &[
            format!(
                "* 4 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {} MODSEQ (9))",
                lit("Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgQmVybGlu?=\r\n\r\n")
            ),
            "h OK FETCH completed".into(),
        ],
    )
    .await;
    c.expect("i", "FETCH 5 (FLAGS)", &["* 5 FETCH (FLAGS (\\Deleted \\Recent))", "i OK FETCH completed"]).await;
}

/// Without ENABLE: the first CONDSTORE enabling command (FETCH MODSEQ here, RFC 7162 §3.1) turns
/// it on and, a mailbox being selected, reports HIGHESTMODSEQ at once; SELECT (CONDSTORE) too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condstore_enabling_commands() {
    let h = Harness::start().await;
    let uv = h.uidvalidity("Work");
    let mut c = h.selected().await;
    c.expect("a", "STORE 1 +FLAGS (\\Seen)", &["* 1 FETCH (FLAGS (\\Seen \\Recent))", "a OK STORE completed"]).await;
    c.expect(
        "b",
        "FETCH 1 (MODSEQ)",
        &["* OK [HIGHESTMODSEQ 3] Highest", "* 1 FETCH (MODSEQ (3))", "b OK FETCH completed"],
    )
    .await;
    c.expect("c", "STORE 1 -FLAGS (\\Seen)", &["* 1 FETCH (MODSEQ (4) FLAGS (\\Recent))", "c OK STORE completed"])
        .await;
    let mut d = h.login("me").await;
    let mut want = select_lines(6, 0, Some(1), uv, 7);
    want.push("* OK [HIGHESTMODSEQ 4] Highest".into());
    want.push("e OK [READ-ONLY] EXAMINE completed".into());
    want[1] = "* OK [PERMANENTFLAGS ()] read-only".into();
    d.expect("e", "EXAMINE Work (CONDSTORE)", &want).await;
    // QRESYNC parameters need ENABLE QRESYNC first.
    d.expect("f", &format!("SELECT Work (QRESYNC ({uv} 1))"), &["f BAD QRESYNC is not enabled (ENABLE QRESYNC first)"])
        .await;
    d.expect(
        "g",
        "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
        &["g BAD VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC enabled"],
    )
    .await;
}

// ===== QRESYNC (RFC 7162 §3.2) =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qresync_transcript() {
    let h = Harness::start().await;
    let uv = h.uidvalidity("Work");
    let mut c = h.login("me").await;
    c.expect("a1", "ENABLE QRESYNC", &["* ENABLED QRESYNC", "a1 OK ENABLE completed"]).await;
    c.cmd("a2", "SELECT Work").await;
    // Own EXPUNGE and UID EXPUNGE: VANISHED instead of EXPUNGE (§3.2.10).
    c.cmd("a3", "STORE 2,4,5 +FLAGS.SILENT (\\Deleted)").await;
    c.expect("a4", "UID EXPUNGE 5", &["* VANISHED 5", "a4 OK EXPUNGE completed"]).await;
    c.expect("a5", "EXPUNGE", &["* VANISHED 2,4", "a5 OK EXPUNGE completed"]).await;
    // MOVE.
    c.expect(
        "a6",
        "UID MOVE 6 Trash",
        &[
            format!("* OK [COPYUID {} 6 1] moved", h.uidvalidity("Trash")),
            "* VANISHED 6".into(),
            "a6 OK MOVE completed".into(),
        ],
    )
    .await;
    // Expunges from elsewhere, during IDLE-less NOOP.
    let mut d = h.selected().await;
    d.cmd("x1", "UID STORE 3 +FLAGS (\\Deleted \\Seen)").await;
    d.cmd("x2", "EXPUNGE").await;
    c.expect("a7", "NOOP", &["* VANISHED 3", "a7 OK completed"]).await;
    // UID FETCH (CHANGEDSINCE … VANISHED) (§3.2.6): expunged since MODSEQ 2, within the set.
    c.expect(
        "a8",
        "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 2 VANISHED)",
        &["* VANISHED (EARLIER) 2:6", "a8 OK FETCH completed"],
    )
    .await;
    c.expect(
        "a9",
        "UID FETCH 1:4 (FLAGS) (CHANGEDSINCE 4 VANISHED)",
        &["* VANISHED (EARLIER) 2:4", "a9 OK FETCH completed"],
    )
    .await;
    c.cmd("b0", "STORE 1 +FLAGS ($Label1)").await;
    // SELECT (QRESYNC) of another mailbox state (§3.2.5): [CLOSED] first, then the usual, then
    // what vanished among the known UIDs, then what changed since.
    let r = c.cmd("b1", &format!("SELECT Work (QRESYNC ({uv} 2 1:10))")).await;
    let got: Vec<String> = r.iter().map(|l| s(l)).collect();
    assert_eq!(got[0], "* OK [CLOSED] previous mailbox closed\r\n", "{}", show(&r));
    let tail: Vec<&str> = got.iter().rev().take(4).rev().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "* OK [HIGHESTMODSEQ 9] Highest\r\n",
            "* VANISHED (EARLIER) 2:6\r\n",
            "* 1 FETCH (UID 1 MODSEQ (9) FLAGS ($Label1))\r\n",
            "b1 OK [READ-WRITE] SELECT completed\r\n"
        ],
        "{}",
        show(&r)
    );
    // Since MODSEQ 5 (after the EXPUNGE of 2 and 4): MOVE took 6, the other session 3. A stale
    // UIDVALIDITY gets a plain SELECT.
    let r = c.cmd("b2", &format!("EXAMINE Work (QRESYNC ({uv} 5 1:4,6))")).await;
    assert_eq!(s(&r[r.len() - 3]), "* VANISHED (EARLIER) 3,6\r\n", "{}", show(&r));
    let r = c.cmd("b3", &format!("EXAMINE Work (QRESYNC ({} 2))", uv + 1)).await;
    assert_eq!(s(&r[r.len() - 2]), "* OK [HIGHESTMODSEQ 9] Highest\r\n", "{}", show(&r));
    // Up to date: nothing to report.
    let r = c.cmd("b4", &format!("EXAMINE Work (QRESYNC ({uv} 9 1:*))")).await;
    assert_eq!(s(&r[r.len() - 2]), "* OK [HIGHESTMODSEQ 9] Highest\r\n", "{}", show(&r));
    // §3.2.5.2: sequence match data is accepted (the store's history makes it unnecessary).
    let r = c.cmd("b5", &format!("SELECT Work (QRESYNC ({uv} 2 1:6 (1:2 1:2)))")).await;
    assert_eq!(s(&r[r.len() - 3]), "* VANISHED (EARLIER) 2:6\r\n", "{}", show(&r));
    // IDLE: expunges from elsewhere arrive as VANISHED.
    c.cmd("b6", "APPEND Work {3+}\r\nx\r\n").await;
    c.cmd("b7", "NOOP").await;
    c.send(b"i1 IDLE\r\n").await;
    assert_eq!(s(&c.read_line().await), "+ idling\r\n");
    d.cmd("x2", "NOOP").await; // it learns of UID 7
    d.cmd("x3", "UID STORE 7 +FLAGS.SILENT (\\Deleted)").await;
    d.cmd("x4", "UID EXPUNGE 7").await;
    let mut got = Vec::new();
    while !got.iter().any(|l: &String| l.contains("VANISHED")) {
        got.push(s(&c.read_line().await));
    }
    assert_eq!(got.last().map(String::as_str), Some("* VANISHED 7\r\n"), "{got:?}");
    c.send(b"DONE\r\n").await;
    assert_resp(&c.read_until_tagged("i1").await, &["i1 OK IDLE terminated"]);
    c.expect("b8", "CLOSE", &["b8 OK CLOSE completed"]).await;
}

/// RFC 7162 §3.2 (and its §6 example): a VANISHED held back during a FETCH by sequence number
/// (RFC 3501 §7.4.1) while newer MODSEQs go out comes with a HIGHESTMODSEQ below it, so a client
/// resyncing from there still learns of the expunge; the VANISHED follows when allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_back_vanished_lowers_highestmodseq() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    c.cmd("a1", "ENABLE QRESYNC").await;
    c.cmd("a2", "SELECT Work").await;
    let mut d = h.selected().await;
    d.cmd("x1", "STORE 3 +FLAGS (\\Deleted)").await; // MODSEQ 3
    d.cmd("x2", "EXPUNGE").await; // 4
    d.cmd("x3", "STORE 1 +FLAGS (\\Flagged)").await; // 5
    c.expect(
        "a3",
        "FETCH 2 (FLAGS)",
        &[
            "* 2 FETCH (FLAGS (\\Recent))",
            "* 1 FETCH (UID 1 MODSEQ (5) FLAGS (\\Flagged \\Recent))",
            "* OK [HIGHESTMODSEQ 2] Highest",
            "a3 OK [EXPUNGEISSUED] FETCH completed",
        ],
    )
    .await;
    c.expect("a4", "NOOP", &["* VANISHED 3", "a4 OK completed"]).await;
}
