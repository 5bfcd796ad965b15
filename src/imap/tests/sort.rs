//! SORT (RFC 5256 §3, RFC 5957 SORT=DISPLAY) and THREAD (RFC 5256 §2) transcripts: the RFC's own
//! command shapes, every key, REVERSE, several keys, charsets, tricky base subjects.

use super::*;

/// Five messages whose keys all differ, APPENDed (the APPEND path) to mailbox `S` with the given
/// INTERNALDATEs; `expected` orders in the tests are worked out from these headers.
pub(super) const SORT_MSGS: [(&str, &str); 5] = [
    (
        "10-Mar-2022 00:00:00 +0000",
        "Date: Thu, 03 Mar 2022 10:00:00 +0000\nFrom: Zed Zulu <alice@x.example>\nTo: Bob <bob@x.example>\n\
         Cc: dave@x.example\nSubject: Re: [list] Fwd: banana (fwd)\nMessage-ID: <1@x.example>\n\nOne.\n",
    ),
    (
        "08-Mar-2022 00:00:00 +0000",
        "Date: Wed, 02 Mar 2022 23:30:00 -0500\nFrom: \"Adam Ant\" <carol@x.example>\nTo: alice@x.example\n\
         Subject: apple\nMessage-ID: <2@x.example>\n\nTwo, a little longer than one.\n",
    ),
    (
        "01-Jan-2022 00:00:00 +0000",
        "From: =?UTF-8?Q?=C3=89mile?= <BOB@x.example>\nTo: \"Yves\" <zed@x.example>\nCc: alice@x.example\n\
         Subject: =?UTF-8?Q?Re=3A_cherry?=\nMessage-ID: <3@x.example>\nReferences: <2@x.example>\n\n3\n",
    ),
    (
        "09-Mar-2022 00:00:00 +0000",
        "Date: Fri, 04 Mar 2022 08:00:00 +0100\nFrom: dave@x.example\nTo: Zack <carol@x.example>\n\
         Subject: [fwd: Apple]\nMessage-ID: <4@x.example>\nIn-Reply-To: <2@x.example>\n\nFour: the longest body of all five messages.\n",
    ),
    (
        "07-Mar-2022 00:00:00 +0000",
        "Date: Tue, 01 Mar 2022 12:00:00 +0000\nFrom: \"bea\" <erin@x.example>\nTo: \"Xena\" <yan@x.example>\n\
         Subject: Re: Re: RE: date\nMessage-ID: <5@x.example>\nReferences: <2@x.example> <4@x.example>\n\nFive!\n",
    ),
];

/// A logged-in client with `msgs` APPENDed to a new mailbox `name`, selected.
pub(super) async fn mailbox_with(h: &Harness, name: &str, msgs: &[(&str, &str)]) -> Client {
    let mut c = h.login("me").await;
    c.expect("c", &format!("CREATE {name}"), &["c OK CREATE completed"]).await;
    for (i, (date, m)) in msgs.iter().enumerate() {
        let raw = String::from_utf8(crlf(m)).unwrap();
        let tag = format!("ap{i}");
        let r = c.cmd(&tag, &format!("APPEND {name} \"{date}\" {{{}+}}\r\n{raw}", raw.len())).await;
        assert!(s(r.last().unwrap()).starts_with(&format!("{tag} OK")), "{}", show(&r));
    }
    let r = c.cmd("sel", &format!("SELECT {name}")).await;
    assert!(s(r.last().unwrap()).starts_with("sel OK"), "{}", show(&r));
    c
}

async fn sort_is(c: &mut Client, command: &str, want: &str) {
    let r = c.cmd("t", command).await;
    assert_resp(
        &r,
        &[
            format!("* {want}"),
            format!("t OK {} completed", command.split(' ').find(|w| *w == "SORT" || *w == "THREAD").unwrap()),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_by_every_key_of_rfc_5256_and_5957() {
    let h = Harness::start().await;
    let mut c = mailbox_with(&h, "S", &SORT_MSGS).await;
    // DATE in UTC: 2's 23:30 -0500 is 04:30 on 3 March, before 1's 10:00; 3 has no Date and
    // sorts by its INTERNALDATE (1 January).
    sort_is(&mut c, "SORT (DATE) UTF-8 ALL", "SORT 3 5 2 1 4").await;
    sort_is(&mut c, "SORT (ARRIVAL) UTF-8 ALL", "SORT 3 5 2 4 1").await;
    // FROM / TO / CC: the first address's local part, case-insensitively; no Cc sorts first.
    sort_is(&mut c, "SORT (FROM) UTF-8 ALL", "SORT 1 3 2 4 5").await;
    sort_is(&mut c, "SORT (TO) UTF-8 ALL", "SORT 2 1 4 5 3").await;
    sort_is(&mut c, "SORT (CC) UTF-8 ALL", "SORT 2 4 5 3 1").await;
    // SUBJECT: base subjects BANANA APPLE CHERRY APPLE DATE; equal ones in sequence order.
    sort_is(&mut c, "SORT (SUBJECT) UTF-8 ALL", "SORT 2 4 1 3 5").await;
    sort_is(&mut c, "SORT (REVERSE SUBJECT) UTF-8 ALL", "SORT 5 3 1 2 4").await;
    // RFC 5256's A283 shape: SUBJECT, then newest first.
    sort_is(&mut c, "SORT (SUBJECT REVERSE DATE) UTF-8 ALL", "SORT 4 2 1 3 5").await;
    // SIZE: RFC822.SIZE, all different here.
    let mut by_size: Vec<(usize, usize)> =
        SORT_MSGS.iter().enumerate().map(|(i, (_, m))| (crlf(m).len(), i + 1)).collect();
    by_size.sort();
    let order: Vec<String> = by_size.iter().map(|(_, n)| n.to_string()).collect();
    sort_is(&mut c, "SORT (SIZE) UTF-8 ALL", &format!("SORT {}", order.join(" "))).await;
    let reversed: Vec<String> = order.iter().rev().cloned().collect();
    sort_is(&mut c, "SORT (REVERSE SIZE) UTF-8 ALL", &format!("SORT {}", reversed.join(" "))).await;
    // DISPLAYFROM: ZED ZULU, ADAM ANT, Émile (decoded; non-ASCII after ASCII), the address of
    // 4 (no name), BEA. DISPLAYTO: BOB, the address, YVES, ZACK, XENA.
    sort_is(&mut c, "SORT (DISPLAYFROM) UTF-8 ALL", "SORT 2 5 4 1 3").await;
    sort_is(&mut c, "SORT (DISPLAYTO) UTF-8 ALL", "SORT 2 1 5 3 4").await;
    sort_is(&mut c, "SORT (REVERSE DISPLAYTO) UTF-8 ALL", "SORT 4 3 5 1 2").await;
    // Several keys: CC ties (no Cc) broken by REVERSE ARRIVAL.
    sort_is(&mut c, "SORT (CC REVERSE ARRIVAL) UTF-8 ALL", "SORT 4 2 5 3 1").await;
    // UID SORT answers UIDs (the same here: a new mailbox).
    sort_is(&mut c, "UID SORT (DATE) UTF-8 ALL", "SORT 3 5 2 1 4").await;
    c.expect("e", "EXPUNGE", &["e OK EXPUNGE completed"]).await;
    c.expect("f", "STORE 1 +FLAGS.SILENT (\\Deleted)", &["f OK STORE completed"]).await;
    c.expect("g", "EXPUNGE", &["* 1 EXPUNGE", "g OK EXPUNGE completed"]).await;
    sort_is(&mut c, "SORT (DATE) UTF-8 ALL", "SORT 2 4 1 3").await;
    sort_is(&mut c, "UID SORT (DATE) UTF-8 ALL", "SORT 3 5 2 4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_selects_with_search_criteria_and_charsets() {
    let h = Harness::start().await;
    let mut c = mailbox_with(&h, "S", &SORT_MSGS).await;
    // RFC 5256 §3 examples, shaped for this mailbox: A282 with SINCE (INTERNALDATE), A284 empty.
    sort_is(&mut c, "SORT (SUBJECT) UTF-8 SINCE 8-Mar-2022", "SORT 2 4 1").await;
    sort_is(&mut c, "SORT (SUBJECT) US-ASCII TEXT \"not in mailbox\"", "SORT").await;
    sort_is(&mut c, "SORT (DATE) UTF-8 SUBJECT apple", "SORT 2 4").await;
    sort_is(&mut c, "SORT (REVERSE DATE) utf-8 OR FROM dave CC dave", "SORT 4 1").await;
    sort_is(&mut c, "UID SORT (ARRIVAL) US-ASCII NOT SUBJECT apple UID 1:4", "SORT 3 1").await;
    // A UTF-8 literal in the criteria (the decoded display name of 3).
    c.send("u SORT (SUBJECT) UTF-8 FROM {6+}\r\nÉmile\r\n".as_bytes()).await;
    assert_resp(&c.read_until_tagged("u").await, &["* SORT 3", "u OK SORT completed"]);
    // Another charset: BADCHARSET, as SEARCH.
    c.expect(
        "b",
        "SORT (DATE) KOI8-R ALL",
        &["b NO [BADCHARSET (UTF-8 US-ASCII)] supported charsets: UTF-8, US-ASCII"],
    )
    .await;
    // The charset is not optional, the criteria list not empty, the keys known.
    for (tag, bad) in [("x1", "SORT (DATE) ALL"), ("x2", "SORT () UTF-8 ALL"), ("x3", "SORT (FOO) UTF-8 ALL")] {
        let r = c.cmd(tag, bad).await;
        assert!(r.len() == 1 && s(&r[0]).starts_with(&format!("{tag} BAD")), "{bad}: {}", show(&r));
    }
    // Not in the authenticated state.
    c.expect("cl", "CLOSE", &["cl OK CLOSE completed"]).await;
    c.expect("n", "SORT (DATE) UTF-8 ALL", &["n NO select a mailbox first"]).await;
    c.expect("m", "THREAD REFERENCES UTF-8 ALL", &["m NO select a mailbox first"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_references_and_orderedsubject() {
    let h = Harness::start().await;
    let mut c = mailbox_with(&h, "S", &SORT_MSGS).await;
    // 3 and 4 answer 2 (3 by References, 4 by In-Reply-To), 5 answers 4; 1 stands alone.
    // Top level by sent date: 2 (3 Mar 04:30 UTC) before 1 (10:00); 3 (1 Jan) before 4.
    sort_is(&mut c, "THREAD REFERENCES UTF-8 ALL", "THREAD (2 (3)(4 5))(1)").await;
    sort_is(&mut c, "UID THREAD REFERENCES UTF-8 ALL", "THREAD (2 (3)(4 5))(1)").await;
    // Base subjects CHERRY (1 Jan), DATE (1 Mar), APPLE (2 and 4), BANANA.
    sort_is(&mut c, "THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD (3)(5)(2 4)(1)").await;
    // RFC 5256 §4's A284: nothing found.
    sort_is(&mut c, "THREAD ORDEREDSUBJECT US-ASCII TEXT \"gewp\"", "THREAD").await;
    // Only the selected messages are threaded: without 2 and 4, 3 and 5 are replies to a missing
    // 2 (a dummy, kept at the top with its two children) and 4 (a dummy, pruned).
    sort_is(&mut c, "THREAD REFERENCES UTF-8 NOT SUBJECT apple", "THREAD ((3)(5))(1)").await;
    sort_is(&mut c, "THREAD REFERENCES UTF-8 UID 2:5", "THREAD (2 (3)(4 5))").await;
    c.expect("x", "THREAD FOO UTF-8 ALL", &["x BAD threading algorithm not supported"]).await;
    c.expect(
        "b",
        "THREAD REFERENCES KOI8-R ALL",
        &["b NO [BADCHARSET (UTF-8 US-ASCII)] supported charsets: UTF-8, US-ASCII"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tricky_base_subjects_sort_and_thread_together() {
    let h = Harness::start().await;
    let subjects = [
        "Re: [list] Fwd: subject (fwd)",
        "subject",
        "Re[2]: x",
        "[fwd: x]",
        "re: Re: RE: x",
        "",
        "   ",
        "=?UTF-8?Q?Re=3A_=5Blist=5D_subject?=",
        "[list]",
    ];
    let msgs: Vec<(String, String)> = subjects
        .iter()
        .enumerate()
        .map(|(i, subj)| {
            (
                "01-Mar-2022 00:00:00 +0000".to_string(),
                format!(
                    "Date: Tue, 01 Mar 2022 {:02}:00:00 +0000\nFrom: s{i}@x.example\nSubject: {subj}\nMessage-ID: <t{i}@x>\n\nbody\n",
                    10 + i
                ),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = msgs.iter().map(|(d, m)| (d.as_str(), m.as_str())).collect();
    let mut c = mailbox_with(&h, "T", &refs).await;
    // Base subjects: SUBJECT ×2, X ×3, "" ×2, SUBJECT (encoded), [LIST].
    sort_is(&mut c, "SORT (SUBJECT) UTF-8 ALL", "SORT 6 7 1 2 8 3 4 5 9").await;
    // Subjects merge: 2 (the original) takes the replies 1 and 8; the three X replies get a
    // dummy; the empty subjects and [list] stay alone. Threads by sent date (hour 10 + i).
    sort_is(&mut c, "THREAD REFERENCES UTF-8 ALL", "THREAD (2 (1)(8))((3)(4)(5))(6)(7)(9)").await;
    sort_is(&mut c, "THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD (1 (2)(8))(3 (4)(5))(6 7)(9)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_without_stored_keys_sort_and_thread_the_same() {
    let h = Harness::start().await;
    let mut c = mailbox_with(&h, "S", &SORT_MSGS).await;
    let commands = [
        "SORT (DATE) UTF-8 ALL",
        "SORT (REVERSE SUBJECT) UTF-8 ALL",
        "SORT (CC REVERSE ARRIVAL) UTF-8 ALL",
        "SORT (DISPLAYFROM) UTF-8 NOT FROM dave",
        "UID SORT (TO SIZE) UTF-8 ALL",
        "THREAD REFERENCES UTF-8 ALL",
    ];
    let mut before = Vec::new();
    for cmd in commands {
        before.push(show(&c.cmd("t", cmd).await));
    }
    // As if written by a version without the table's rows (or a path that skipped them): the
    // store's ORDER BY cannot be used, the keys are extracted from the messages.
    let gone = h.store.lock().execute("DELETE FROM sort_keys WHERE body_id % 2 = 0", []).unwrap();
    assert!(gone >= 2, "{gone}");
    for (cmd, want) in commands.iter().zip(&before) {
        assert_eq!(&show(&c.cmd("t", cmd).await), want, "{cmd}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_case_is_one_subject() {
    let h = Harness::start().await;
    let msgs = [
        ("01-Mar-2022 00:00:00 +0000", "Date: Tue, 01 Mar 2022 10:00:00 +0000\nSubject: =?UTF-8?Q?=C3=9Cber?=\n\n1\n"),
        ("01-Mar-2022 00:00:00 +0000", "Date: Tue, 01 Mar 2022 11:00:00 +0000\nSubject: zebra\n\n2\n"),
        (
            "01-Mar-2022 00:00:00 +0000",
            "Date: Tue, 01 Mar 2022 12:00:00 +0000\nSubject: Re: =?UTF-8?Q?=C3=BCber?=\n\n3\n",
        ),
        ("01-Mar-2022 00:00:00 +0000", "Date: Tue, 01 Mar 2022 13:00:00 +0000\nSubject: Zebra\n\n4\n"),
    ];
    let mut c = mailbox_with(&h, "U", &msgs).await;
    sort_is(&mut c, "SORT (SUBJECT) UTF-8 ALL", "SORT 2 4 1 3").await;
    sort_is(&mut c, "THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD (1 3)(2 4)").await;
    sort_is(&mut c, "THREAD REFERENCES UTF-8 ALL", "THREAD (1 3)((2)(4))").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_and_thread_by_sequence_number_defer_other_sessions_expunges() {
    let h = Harness::start().await;
    let mut a = mailbox_with(&h, "S", &SORT_MSGS).await;
    let mut b = h.login("me").await;
    b.cmd("b0", "SELECT S").await;
    b.cmd("b1", "STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    b.expect("b2", "EXPUNGE", &["* 2 EXPUNGE", "b2 OK EXPUNGE completed"]).await;
    // RFC 3501 §7.4.1 as for SEARCH: no EXPUNGE while the numbers of A's view are in use; the
    // expunged message is left out and the others keep their numbers (RFC 5530 EXPUNGEISSUED).
    let r = a.cmd("a1", "SORT (DATE) UTF-8 ALL").await;
    assert_resp(&r, &["* SORT 3 5 1 4", "a1 OK [EXPUNGEISSUED] SORT completed"]);
    let r = a.cmd("a2", "THREAD REFERENCES UTF-8 ALL").await;
    assert_resp(&r, &["* THREAD ((3)(4 5))(1)", "a2 OK [EXPUNGEISSUED] THREAD completed"]);
    // UID SORT may tell it (after its answer, in UIDs, which do not shift).
    let r = a.cmd("a3", "UID SORT (DATE) UTF-8 ALL").await;
    assert_resp(&r, &["* SORT 3 5 1 4", "* 2 EXPUNGE", "a3 OK SORT completed"]);
    a.expect("a4", "SORT (DATE) UTF-8 ALL", &["* SORT 2 4 1 3", "a4 OK SORT completed"]).await;
}
