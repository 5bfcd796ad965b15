//! ESEARCH (RFC 4731), SEARCHRES (RFC 5182), WITHIN (RFC 5032) and SEARCH FROM on addresses
//! with comments: transcripts, including the RFCs' own examples adapted to the harness's
//! messages (the six of `super::corpus`, five more from `late_message` where an example needs
//! eleven). What Dovecot answers to the same commands: `tests/imap_search.rs`.

use super::*;

const BAD_SYNTAX: &str = "BAD syntax error, or a command popbridge does not support";

/// A session on Work with eleven messages; 2, 5, 10 and 11 \Flagged (5 is from John Smith).
async fn eleven(h: &Harness) -> Client {
    h.deliver((0..5).map(late_message).collect()).await;
    let mut c = h.selected().await;
    c.expect("f0", "STORE 2,5,10:11 +FLAGS.SILENT (\\Flagged)", &["f0 OK STORE completed"]).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc4731_examples_and_result_options() {
    let h = Harness::start().await;
    let mut c = eleven(&h).await;
    // RFC 4731 §3.1's examples (their mailbox had 2, 10 and 11 flagged since 1-Feb-1994 and
    // not from Smith; so does this one).
    let crit = "FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"";
    c.expect(
        "A282",
        &format!("SEARCH RETURN (MIN COUNT) {crit}"),
        &["* ESEARCH (TAG \"A282\") MIN 2 COUNT 3", "A282 OK SEARCH completed"],
    )
    .await;
    c.expect(
        "A283",
        &format!("SEARCH RETURN () {crit}"),
        &["* ESEARCH (TAG \"A283\") ALL 2,10:11", "A283 OK SEARCH completed"],
    )
    .await;
    // §3.2's ESEARCH responses: MIN alone, UID MIN MAX, COUNT.
    c.expect(
        "A284",
        &format!("SEARCH RETURN (MIN) {crit}"),
        &["* ESEARCH (TAG \"A284\") MIN 2", "A284 OK SEARCH completed"],
    )
    .await;
    c.expect(
        "A285",
        "UID SEARCH RETURN (MIN MAX) 1:5000",
        &["* ESEARCH (TAG \"A285\") UID MIN 1 MAX 11", "A285 OK SEARCH completed"],
    )
    .await;
    c.expect("A286", "SEARCH RETURN (COUNT) 1:*", &["* ESEARCH (TAG \"A286\") COUNT 11", "A286 OK SEARCH completed"])
        .await;
    // All four, in Dovecot's order; the set compressed.
    c.expect(
        "a1",
        "SEARCH RETURN (MIN MAX COUNT ALL) FLAGGED",
        &["* ESEARCH (TAG \"a1\") MIN 2 MAX 11 ALL 2,5,10:11 COUNT 4", "a1 OK SEARCH completed"],
    )
    .await;
    c.expect(
        "a2",
        "uid search return (all count) or 1:3 7:9",
        &["* ESEARCH (TAG \"a2\") UID ALL 1:3,7:9 COUNT 6", "a2 OK SEARCH completed"],
    )
    .await;
    // Nothing found: MIN, MAX and ALL are left out, COUNT is 0 (RFC 4731 §3.1).
    c.expect(
        "a3",
        "SEARCH RETURN (MIN MAX ALL COUNT) DELETED",
        &["* ESEARCH (TAG \"a3\") COUNT 0", "a3 OK SEARCH completed"],
    )
    .await;
    c.expect(
        "a4",
        "UID SEARCH RETURN (MIN MAX ALL) DELETED",
        &["* ESEARCH (TAG \"a4\") UID", "a4 OK SEARCH completed"],
    )
    .await;
    // With CHARSET and a literal; a plain SEARCH is unchanged.
    c.expect(
        "a5",
        "SEARCH RETURN (ALL) CHARSET UTF-8 SUBJECT {6+}\r\nreport",
        &["* ESEARCH (TAG \"a5\") ALL 2", "a5 OK SEARCH completed"],
    )
    .await;
    c.expect("a6", "SEARCH FLAGGED", &["* SEARCH 2 5 10 11", "a6 OK SEARCH completed"]).await;
    // Unknown options and broken syntax are BAD; a bad charset is NO as without RETURN.
    for (t, cmd) in [
        ("b1", "SEARCH RETURN (MIN FOO) ALL"),
        ("b2", "SEARCH RETURN (PARTIAL 1:5) ALL"),
        ("b3", "SEARCH RETURN (MIN)"),
        ("b4", "SEARCH RETURN MIN ALL"),
        ("b5", "UID SEARCH RETURN (COUNT) FROB"),
    ] {
        c.expect(t, cmd, &[format!("{t} {BAD_SYNTAX}")]).await;
    }
    c.expect(
        "b6",
        "SEARCH RETURN (COUNT) CHARSET KOI8-R ALL",
        &["b6 NO [BADCHARSET (UTF-8 US-ASCII)] supported charsets: UTF-8, US-ASCII"],
    )
    .await;
    // Not without a selected mailbox.
    c.expect("c1", "UNSELECT", &["c1 OK UNSELECT completed"]).await;
    c.expect("c2", "SEARCH RETURN (COUNT) ALL", &["c2 NO select a mailbox first"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5182_examples_and_dollar_everywhere() {
    let h = Harness::start().await;
    let mut c = eleven(&h).await;
    // RFC 5182 §2.1's first example: SAVE alone answers no ESEARCH; FETCH and STORE use `$`.
    c.expect(
        "A282",
        "SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"",
        &["A282 OK SEARCH completed, result saved"],
    )
    .await;
    c.expect(
        "A283",
        "FETCH $ (UID)",
        &["* 2 FETCH (UID 2)", "* 10 FETCH (UID 10)", "* 11 FETCH (UID 11)", "A283 OK FETCH completed"],
    )
    .await;
    c.expect("A284", "STORE $ +FLAGS.SILENT (\\Seen)", &["A284 OK STORE completed"]).await;
    c.expect("A285", "SEARCH SEEN", &["* SEARCH 2 10 11", "A285 OK SEARCH completed"]).await;
    // `$` in the criteria, alone and after UID, in OR and NOT; ESEARCH and SAVE together.
    c.expect("a1", "SEARCH OR $ 1", &["* SEARCH 1 2 10 11", "a1 OK SEARCH completed"]).await;
    c.expect(
        "a2",
        "UID SEARCH RETURN (COUNT) NOT UID $",
        &["* ESEARCH (TAG \"a2\") UID COUNT 8", "a2 OK SEARCH completed"],
    )
    .await;
    // SAVE with MIN and MAX only keeps those two (RFC 5182 §2.1), ALL/COUNT keep everything.
    c.expect(
        "a3",
        "SEARCH RETURN (SAVE MIN MAX) FLAGGED",
        &["* ESEARCH (TAG \"a3\") MIN 2 MAX 11", "a3 OK SEARCH completed, result saved"],
    )
    .await;
    c.expect("a4", "UID FETCH $ (UID)", &["* 2 FETCH (UID 2)", "* 11 FETCH (UID 11)", "a4 OK FETCH completed"]).await;
    c.expect(
        "a5",
        "SEARCH RETURN (SAVE MIN COUNT) FLAGGED",
        &["* ESEARCH (TAG \"a5\") MIN 2 COUNT 4", "a5 OK SEARCH completed, result saved"],
    )
    .await;
    c.expect("a6", "SEARCH $", &["* SEARCH 2 5 10 11", "a6 OK SEARCH completed"]).await;
    // COPY, MOVE, UID COPY of `$`.
    c.expect("a7", "CREATE Kept", &["a7 OK CREATE completed"]).await;
    let r = c.cmd("a8", "COPY $ Kept").await;
    assert!(s(&r[0]).starts_with("a8 OK [COPYUID ") && s(&r[0]).contains(" 2,5,10:11 1:4]"), "{}", show(&r));
    // An expunged message leaves `$`; sequence numbers follow the expunge.
    c.expect("a9", "STORE 5 +FLAGS.SILENT (\\Deleted)", &["a9 OK STORE completed"]).await;
    c.expect("a10", "UID EXPUNGE $", &["* 5 EXPUNGE", "a10 OK EXPUNGE completed"]).await;
    c.expect(
        "a11",
        "FETCH $ (UID)",
        &["* 2 FETCH (UID 2)", "* 9 FETCH (UID 10)", "* 10 FETCH (UID 11)", "a11 OK FETCH completed"],
    )
    .await;
    c.expect("a12", "SEARCH RETURN (ALL) $", &["* ESEARCH (TAG \"a12\") ALL 2,9:10", "a12 OK SEARCH completed"]).await;
    c.expect(
        "a13",
        "UID SEARCH RETURN (ALL) $",
        &["* ESEARCH (TAG \"a13\") UID ALL 2,10:11", "a13 OK SEARCH completed"],
    )
    .await;
    let r = c.cmd("a14", "UID MOVE $ Kept").await;
    assert!(s(r.last().unwrap()).starts_with("a14 OK"), "{}", show(&r));
    assert!(r.iter().filter(|l| s(l).ends_with(" EXPUNGE\r\n")).count() == 3, "{}", show(&r));
    // All of them moved away: `$` is now no message at all.
    c.expect("a15", "FETCH $ (UID)", &["a15 OK No messages found"]).await;
    c.expect("a16", "SEARCH $", &["* SEARCH", "a16 OK SEARCH completed"]).await;

    // RFC 5182 §2.1: a SEARCH with SAVE that fails leaves `$` empty (their example uses
    // KOI8-R, which this server refuses too).
    c.expect("b1", "SEARCH RETURN (SAVE) 1:3", &["b1 OK SEARCH completed, result saved"]).await;
    c.expect(
        "b2",
        "UID SEARCH RETURN (SAVE) CHARSET KOI8-R (OR $ 1,3000:3021) TEXT {8+}\r\nxxxxxxxx",
        &["b2 NO [BADCHARSET (UTF-8 US-ASCII)] supported charsets: UTF-8, US-ASCII"],
    )
    .await;
    c.expect("b3", "UID FETCH $ (FLAGS)", &["b3 OK No messages found"]).await;
    c.expect("b4", "COPY $ Nowhere", &["b4 OK No messages found"]).await;
    c.expect("b5", "STORE $ +FLAGS (\\Flagged)", &["b5 OK No messages found"]).await;
    c.expect("b6", "UID EXPUNGE $", &["b6 OK No messages found"]).await;
    c.expect("b7", "SEARCH RETURN (COUNT) $", &["* ESEARCH (TAG \"b7\") COUNT 0", "b7 OK SEARCH completed"]).await;
    // A search that finds nothing saves nothing.
    c.expect("b8", "SEARCH RETURN (SAVE) 1:3", &["b8 OK SEARCH completed, result saved"]).await;
    c.expect("b9", "SEARCH RETURN (SAVE) DELETED", &["b9 OK SEARCH completed, result saved"]).await;
    c.expect("b10", "MOVE $ Kept", &["b10 OK No messages found"]).await;

    // Syntax: `$` is a whole sequence set; `$` as a keyword or string is just that.
    for (t, cmd) in
        [("d1", "FETCH 1,$ (UID)"), ("d2", "FETCH $:3 (UID)"), ("d3", "FETCH $ (FROB)"), ("d4", "EXPUNGE $")]
    {
        c.expect(t, cmd, &[format!("{t} {BAD_SYNTAX}")]).await;
    }
    c.expect("d5", "SEARCH KEYWORD $ SUBJECT $", &["* SEARCH", "d5 OK SEARCH completed"]).await;

    // SELECT, EXAMINE, CLOSE and UNSELECT reset `$`.
    for (t, leave, back) in [
        ("e", "SELECT Work", None),
        ("f", "EXAMINE Work", None),
        ("g", "CLOSE", Some("SELECT Work")),
        ("h", "UNSELECT", Some("SELECT Work")),
    ] {
        c.expect(&format!("{t}1"), "SEARCH RETURN (SAVE) 1", &[format!("{t}1 OK SEARCH completed, result saved")])
            .await;
        let r = c.cmd(&format!("{t}2"), leave).await;
        assert!(s(r.last().unwrap()).starts_with(&format!("{t}2 OK")), "{}", show(&r));
        if let Some(back) = back {
            let r = c.cmd(&format!("{t}3"), back).await;
            assert!(s(r.last().unwrap()).starts_with(&format!("{t}3 OK")), "{}", show(&r));
        }
        c.expect(&format!("{t}4"), "FETCH $ (UID)", &[format!("{t}4 OK No messages found")]).await;
    }
}

/// `"dd-Mon-yyyy hh:mm:ss +0000"` `secs_ago` seconds before now.
fn date_time_ago(secs_ago: i64) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - secs_ago;
    let (y, m, d) = crate::mime::date::civil_from_days(t.div_euclid(86_400));
    let r = t.rem_euclid(86_400);
    let mon = crate::mime::date::MONTHS[(m - 1) as usize];
    format!("{d:02}-{mon}-{y} {:02}:{:02}:{:02} +0000", r / 3600, r % 3600 / 60, r % 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_older_younger_on_internaldate() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    c.expect("a0", "CREATE W", &["a0 OK CREATE completed"]).await;
    for (i, ago) in [30 * 86_400, 7200, 60].iter().enumerate() {
        let r = c.cmd(&format!("p{i}"), &format!("APPEND W \"{}\" {{10+}}\r\nSubject: x", date_time_ago(*ago))).await;
        assert!(s(r.last().unwrap()).starts_with(&format!("p{i} OK")), "{}", show(&r));
    }
    let r = c.cmd("s", "SELECT W").await;
    assert!(s(r.last().unwrap()).starts_with("s OK"), "{}", show(&r));
    for (t, cmd, want) in [
        ("w1", "SEARCH OLDER 86400", "* SEARCH 1"),
        ("w2", "SEARCH YOUNGER 86400", "* SEARCH 2 3"),
        ("w3", "SEARCH YOUNGER 3600", "* SEARCH 3"),
        ("w4", "SEARCH OLDER 3600 YOUNGER 864000", "* SEARCH 2"),
        ("w5", "SEARCH NOT OLDER 600", "* SEARCH 3"),
        ("w6", "SEARCH OR OLDER 86400 YOUNGER 600", "* SEARCH 1 3"),
        ("w7", "SEARCH YOUNGER 4294967295", "* SEARCH 1 2 3"),
    ] {
        c.expect(t, cmd, &[want.to_string(), format!("{t} OK SEARCH completed")]).await;
    }
    c.expect(
        "w8",
        "UID SEARCH RETURN (COUNT MIN) YOUNGER 86400",
        &["* ESEARCH (TAG \"w8\") UID MIN 2 COUNT 2", "w8 OK SEARCH completed"],
    )
    .await;
    // An interval is a positive number (RFC 5032 §4: nz-number).
    c.expect("w9", "SEARCH OLDER 0", &[format!("w9 {BAD_SYNTAX}")]).await;
    c.expect("w10", "SEARCH YOUNGER x", &[format!("w10 {BAD_SYNTAX}")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_finds_an_address_written_with_comments() {
    let h = Harness::start().await;
    h.deliver(vec![
        crlf("From: <user-from (comment)@ (comment) domain.org>\nTo: user-to (c) @ (c) to.example\nSubject: c\n\nx\n"),
        crlf("From: Other <other@domain.org>\nCc: Carl <carl (x) @cc.example>\nSubject: d\n\nx\n"),
    ])
    .await;
    let mut c = h.selected().await;
    c.expect("a1", "SEARCH FROM user-from@domain.org", &["* SEARCH 7", "a1 OK SEARCH completed"]).await;
    c.expect("a2", "SEARCH FROM \"@domain.org\"", &["* SEARCH 7 8", "a2 OK SEARCH completed"]).await;
    c.expect("a3", "SEARCH TO user-to@to.example", &["* SEARCH 7", "a3 OK SEARCH completed"]).await;
    c.expect("a4", "SEARCH CC carl@cc.example", &["* SEARCH 8", "a4 OK SEARCH completed"]).await;
    c.expect(
        "a5",
        "UID SEARCH RETURN (ALL) OR FROM user-from@domain.org CC carl@cc.example",
        &["* ESEARCH (TAG \"a5\") UID ALL 7:8", "a5 OK SEARCH completed"],
    )
    .await;
    // The text of the field still counts.
    c.expect("a6", "SEARCH FROM comment", &["* SEARCH 7", "a6 OK SEARCH completed"]).await;
}
