//! BINARY (RFC 3516) and MULTIAPPEND (RFC 3502) transcripts. The expected bytes are what the
//! test Dovecot 2.3.19 answers to the same commands on the same messages (tests/imap_binary.rs
//! compares both servers live), except where a comment says otherwise.

use super::*;
use base64::Engine as _;

/// base64 with CRLF line breaks every 76 characters, as mail carries it.
pub(super) fn b64_lines(data: &[u8]) -> Vec<u8> {
    let enc = base64::engine::general_purpose::STANDARD.encode(data);
    enc.as_bytes().chunks(76).flat_map(|l| [l, b"\r\n"].concat()).collect()
}

/// A top-level base64 text/plain message.
pub(super) fn b64_top() -> Vec<u8> {
    [
        &b"From: a@example.com\r\nSubject: b64 top\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"[..],
        &b64_lines(b"Hello, world!\r\nSecond line\r\n"),
    ]
    .concat()
}

/// Every byte value twice: part 2 of [`mixed`], decoded.
pub(super) fn all_bytes() -> Vec<u8> {
    (0..=255u8).cycle().take(512).collect()
}

/// multipart/mixed: 1 quoted-printable, 2 base64 with NULs, 3 8bit, 4 message/rfc822 with a base64
/// body, 5 multipart/alternative with a base64 part, 6 x-uuencode (no decoder: UNKNOWN-CTE).
pub(super) fn mixed() -> Vec<u8> {
    [
        &b"From: a@example.com\r\nSubject: mixed\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n\
--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=C3=A9 soft=\r\nbreak =3D end  \r\nline2=\r\n\r\n\
--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: BASE64\r\n\r\n"[..],
        &b64_lines(&all_bytes()),
        b"\r\n--XX\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe\r\n\
\r\n--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naW5uZXIgdGV4dA==\r\n\
\r\n--XX\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n--YY\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nYWx0\r\n--YY--\r\n\
\r\n--XX\r\nContent-Type: application/x-thing\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\nend\r\n\
\r\n--XX--\r\n",
    ]
    .concat()
}

/// A 7bit message with a NUL in its body (APPENDed as a literal8).
pub(super) const NUL_MSG: &[u8] = b"From: a@example.com\r\nSubject: nul\r\n\r\nA\x00B\r\n";
pub(super) const PLAIN: &[u8] = b"From: a@example.com\r\nSubject: plain\r\n\r\nJust text.\r\n";

/// `APPEND box {n+}` of `msg` (`~{n+}` when `binary`).
pub(super) fn append_cmd(tag: &str, mailbox: &str, msg: &[u8], binary: bool) -> Vec<u8> {
    let tilde = if binary { "~" } else { "" };
    [format!("{tag} APPEND {mailbox} {tilde}{{{}+}}\r\n", msg.len()).as_bytes(), msg, b"\r\n"].concat()
}

/// Logged in, mailbox `Bin` holding b64_top, mixed, PLAIN, NUL_MSG (UIDs 1-4), selected.
async fn bin_mailbox(h: &Harness) -> Client {
    let mut c = h.login("me").await;
    c.expect("c", "CREATE Bin", &["c OK CREATE completed"]).await;
    for (i, (m, binary)) in [(b64_top(), false), (mixed(), false), (PLAIN.to_vec(), false), (NUL_MSG.to_vec(), true)]
        .into_iter()
        .enumerate()
    {
        c.send(&append_cmd("ap", "Bin", &m, binary)).await;
        let r = c.read_until_tagged("ap").await;
        assert!(s(&r[0]).starts_with(&format!("ap OK [APPENDUID {} {}]", h.uidvalidity("Bin"), i + 1)), "{}", show(&r));
    }
    let r = c.cmd("s", "SELECT Bin").await;
    assert!(s(r.last().unwrap()).starts_with("s OK [READ-WRITE]"), "{}", show(&r));
    c
}

/// `tag FETCH what`, the responses as bytes (they may hold NUL and 8-bit data).
async fn fetch(c: &mut Client, tag: &str, what: &str) -> Vec<u8> {
    c.cmd(tag, &format!("FETCH {what}")).await.concat()
}

#[track_caller]
fn same(got: &[u8], want: &[u8]) {
    assert!(got == want, "\n--- got ---\n{}\n--- want ---\n{}", got.escape_ascii(), want.escape_ascii());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_binary_decodes_base64_and_quoted_printable() {
    let h = Harness::start().await;
    let mut c = bin_mailbox(&h).await;
    // The whole message: the body decoded, its Content-Transfer-Encoding rewritten; a literal8,
    // as Dovecot sends every decoded section (no NUL here).
    same(
        &fetch(&mut c, "f1", "1 BINARY.PEEK[]").await,
        b"* 1 FETCH (BINARY[] ~{149}\r\nFrom: a@example.com\r\nSubject: b64 top\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\nHello, world!\r\nSecond line\r\n)\r\nf1 OK FETCH completed\r\n",
    );
    same(
        &fetch(&mut c, "f2", "1 (BINARY.SIZE[] BINARY.SIZE[1] BINARY.PEEK[1])").await,
        b"* 1 FETCH (BINARY.SIZE[] 149 BINARY.SIZE[1] 28 BINARY[1] ~{28}\r\nHello, world!\r\nSecond line\r\n)\r\n\
f2 OK FETCH completed\r\n",
    );
    // Quoted-printable: soft breaks joined, =XX decoded, trailing blanks (padding) deleted.
    same(
        &fetch(&mut c, "f3", "2 BINARY.PEEK[1]").await,
        b"* 2 FETCH (BINARY[1] ~{28}\r\ncaf\xc3\xa9 softbreak = end\r\nline2)\r\nf3 OK FETCH completed\r\n",
    );
    // base64 with every byte value (NUL included), upper-case BASE64.
    let r = fetch(&mut c, "f4", "2 BINARY.PEEK[2]").await;
    same(&r, &[&b"* 2 FETCH (BINARY[2] ~{512}\r\n"[..], &all_bytes(), b")\r\nf4 OK FETCH completed\r\n"].concat());
    // 8bit: as it is, a plain literal.
    same(
        &fetch(&mut c, "f5", "2 BINARY.PEEK[3]").await,
        b"* 2 FETCH (BINARY[3] {7}\r\nGr\xfc\xdfe\r\n)\r\nf5 OK FETCH completed\r\n",
    );
    // message/rfc822: the encapsulated message converted; its part 1 alone.
    same(
        &fetch(&mut c, "f6", "2 (BINARY.PEEK[4] BINARY.PEEK[4.1])").await,
        b"* 2 FETCH (BINARY[4] ~{89}\r\nSubject: inner\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\n\
inner text BINARY[4.1] ~{10}\r\ninner text)\r\nf6 OK FETCH completed\r\n",
    );
    // A multipart part: its body, each part inside converted.
    same(
        &fetch(&mut c, "f7", "2 (BINARY.PEEK[5] BINARY.PEEK[5.1])").await,
        b"* 2 FETCH (BINARY[5] ~{82}\r\n--YY\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\nalt\r\n--YY--\r\n \
BINARY[5.1] ~{3}\r\nalt)\r\nf7 OK FETCH completed\r\n",
    );
    // A part that does not exist: empty; `1.1` of a leaf is the leaf (as for BODY[]).
    same(
        &fetch(&mut c, "f8", "2 (BINARY.PEEK[7] BINARY.SIZE[7] BINARY.PEEK[1.1])").await,
        b"* 2 FETCH (BINARY[7] {0}\r\n BINARY.SIZE[7] 0 BINARY[1.1] ~{28}\r\ncaf\xc3\xa9 softbreak = end\r\nline2)\r\n\
f8 OK FETCH completed\r\n",
    );
    // 7bit without NUL: a plain literal, whole message and body.
    same(
        &fetch(&mut c, "f9", "3 (BINARY.PEEK[] BINARY.PEEK[1] BINARY.SIZE[1])").await,
        b"* 3 FETCH (BINARY[] {51}\r\nFrom: a@example.com\r\nSubject: plain\r\n\r\nJust text.\r\n BINARY[1] {12}\r\nJust text.\r\n \
BINARY.SIZE[1] 12)\r\nf9 OK FETCH completed\r\n",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_partial_ranges_count_decoded_bytes() {
    let h = Harness::start().await;
    let mut c = bin_mailbox(&h).await;
    same(
        &fetch(&mut c, "p1", "1 (BINARY.SIZE[1] BINARY.PEEK[1]<3.5>)").await,
        b"* 1 FETCH (BINARY.SIZE[1] 28 BINARY[1]<3> ~{5}\r\nlo, w)\r\np1 OK FETCH completed\r\n",
    );
    same(
        &fetch(&mut c, "p2", "2 BINARY.PEEK[2]<250.10>").await,
        b"* 2 FETCH (BINARY[2]<250> ~{10}\r\n\xfa\xfb\xfc\xfd\xfe\xff\x00\x01\x02\x03)\r\np2 OK FETCH completed\r\n",
    );
    // An origin beyond the end: empty (still a literal8: the section is decoded).
    same(
        &fetch(&mut c, "p3", "2 BINARY.PEEK[2]<2000.10>").await,
        b"* 2 FETCH (BINARY[2]<2000> ~{0}\r\n)\r\np3 OK FETCH completed\r\n",
    );
    // The NUL is outside the range, but the section has one: literal8 (as Dovecot).
    same(
        &fetch(&mut c, "p4", "4 BINARY.PEEK[1]<2.3>").await,
        b"* 4 FETCH (BINARY[1]<2> ~{3}\r\nB\r\n)\r\np4 OK FETCH completed\r\n",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_transfer_encoding_is_no_unknown_cte() {
    let h = Harness::start().await;
    let mut c = bin_mailbox(&h).await;
    let r = fetch(&mut c, "u1", "2 BINARY.PEEK[6]").await;
    same(&r, b"u1 NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding\r\n");
    // BINARY[] of the message and BINARY.SIZE of that part need the decoder too.
    for (tag, what) in [("u2", "2 BINARY.PEEK[]"), ("u3", "2 BINARY.SIZE[6]")] {
        same(
            &fetch(&mut c, tag, what).await,
            format!("{tag} NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding\r\n").as_bytes(),
        );
    }
    // The messages before it are answered; the FETCH stops there (as Dovecot's does).
    same(
        &fetch(&mut c, "u4", "1:4 BINARY.PEEK[6]").await,
        b"* 1 FETCH (BINARY[6] {0}\r\n)\r\nu4 NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding\r\n",
    );
    // Other parts of the same message are fine.
    same(&fetch(&mut c, "u5", "2 BINARY.SIZE[1]").await, b"* 2 FETCH (BINARY.SIZE[1] 28)\r\nu5 OK FETCH completed\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal8_append_and_nul_data_come_back_byte_exact() {
    let h = Harness::start().await;
    let mut c = bin_mailbox(&h).await;
    // APPEND ~{n} stored the NUL: BINARY[] gives the message byte for byte, as a literal8;
    // BODY[] (no literal8 there) sends the NUL as 0x80.
    same(
        &fetch(&mut c, "n1", "4 (BINARY.PEEK[] BODY.PEEK[] RFC822.SIZE)").await,
        &[
            &b"* 4 FETCH (BINARY[] ~{42}\r\n"[..],
            NUL_MSG,
            b" BODY[] {42}\r\nFrom: a@example.com\r\nSubject: nul\r\n\r\nA\x80B\r\n RFC822.SIZE 42)\r\nn1 OK FETCH completed\r\n",
        ]
        .concat(),
    );
    // A synchronizing literal8, its continuation, then the data.
    let msg = b"Subject: s\r\n\r\n\x00\x01\x02\xff\r\n";
    c.send(format!("a1 APPEND Bin ~{{{}}}\r\n", msg.len()).as_bytes()).await;
    assert_eq!(s(&c.read_line().await), "+ ready for literal data\r\n");
    c.send(msg).await;
    c.send(b"\r\n").await;
    let r = c.read_until_tagged("a1").await;
    assert_resp(
        &r,
        &[
            "* 5 EXISTS".to_string(),
            "* 5 RECENT".into(),
            format!("a1 OK [APPENDUID {} 5] APPEND completed", h.uidvalidity("Bin")),
        ],
    );
    same(
        &fetch(&mut c, "n2", "5 BINARY.PEEK[]").await,
        &[format!("* 5 FETCH (BINARY[] ~{{{}}}\r\n", msg.len()).as_bytes(), msg, b")\r\nn2 OK FETCH completed\r\n"]
            .concat(),
    );
    // A NUL in a plain literal is refused (RFC 3516 §4.4: literal8 is the way).
    c.send(&append_cmd("a2", "Bin", msg, false)).await;
    let r = c.read_until_tagged("a2").await;
    assert!(s(r.last().unwrap()).starts_with("a2 BAD "), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_without_peek_sets_seen_and_size_does_not() {
    let h = Harness::start().await;
    let mut c = bin_mailbox(&h).await;
    same(
        &fetch(&mut c, "s1", "3 (BINARY.SIZE[1] FLAGS)").await,
        b"* 3 FETCH (BINARY.SIZE[1] 12 FLAGS (\\Recent))\r\ns1 OK FETCH completed\r\n",
    );
    same(
        &fetch(&mut c, "s2", "3 BINARY[1]").await,
        b"* 3 FETCH (FLAGS (\\Seen \\Recent) BINARY[1] {12}\r\nJust text.\r\n)\r\ns2 OK FETCH completed\r\n",
    );
    // In a read-only mailbox nothing is set.
    c.cmd("e", "EXAMINE Bin").await;
    same(
        &fetch(&mut c, "s3", "1 (BINARY[1]<0.5> FLAGS)").await,
        b"* 1 FETCH (BINARY[1]<0> ~{5}\r\nHello FLAGS ())\r\ns3 OK FETCH completed\r\n",
    );
}

/// A message with a base64 attachment of `n` bytes (pseudo-random, NULs included).
pub(super) fn big_attachment(n: usize) -> (Vec<u8>, Vec<u8>) {
    let mut x: u32 = 0x1234_5678;
    let data: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    let msg = [
        &b"From: a@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n--b\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"[..],
        &b64_lines(&data),
        b"--b--\r\n",
    ]
    .concat();
    (msg, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_attachment_is_decoded_a_chunk_at_a_time() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    // 3 MB decoded, 4 MB encoded: far above the size up to which a FETCH reads a body whole, so
    // the section is measured and then streamed from the store in chunks.
    let (msg, data) = big_attachment(3 * 1024 * 1024 + 17);
    c.send(&append_cmd("a", "Work", &msg, false)).await;
    c.read_until_tagged("a").await;
    c.cmd("s", "SELECT Work").await;
    let r = fetch(&mut c, "f1", "7 (BINARY.SIZE[2] BINARY.PEEK[2])").await;
    let head = format!("* 7 FETCH (BINARY.SIZE[2] {} BINARY[2] ~{{{}}}\r\n", data.len(), data.len());
    same(&r, &[head.as_bytes(), &data, b")\r\nf1 OK FETCH completed\r\n"].concat());
    let r = fetch(&mut c, "f2", "7 BINARY.PEEK[2]<2000000.300000>").await;
    let want = [
        &b"* 7 FETCH (BINARY[2]<2000000> ~{300000}\r\n"[..],
        &data[2_000_000..2_300_000],
        b")\r\nf2 OK FETCH completed\r\n",
    ];
    same(&r, &want.concat());
    // The whole message converted: header, text part, the attachment decoded.
    let r = fetch(&mut c, "f3", "7 BINARY.PEEK[]").await;
    assert!(r.ends_with(&[&data[data.len() - 100..], b"\r\n--b--\r\n)\r\nf3 OK FETCH completed\r\n"].concat()), "tail");
    assert_eq!(h.store.budget().in_use(), 0, "every charge came back");
}

// ===== MULTIAPPEND (RFC 3502) =====

/// ` (flags) "date" {n+}\r\n` + msg: one more `append-message` of a MULTIAPPEND.
fn more(opts: &str, msg: &[u8]) -> Vec<u8> {
    [format!(" {opts}{}{{{}+}}\r\n", if opts.is_empty() { "" } else { " " }, msg.len()).as_bytes(), msg].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiappend_stores_every_message_with_one_appenduid() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    c.expect("c", "CREATE Bin", &["c OK CREATE completed"]).await;
    let uv = h.uidvalidity("Bin");
    let m = b"Subject: x\r\n\r\nbody\r\n";
    let head =
        [&b"m1 APPEND Bin"[..], &more("(\\Seen)", m), &more("(\\Flagged $Foo) \"05-Jan-2024 01:00:00 +0000\"", PLAIN)]
            .concat();
    // NUL_MSG needs a literal8: a NUL in `{n}` makes the whole command a syntax error, nothing stored.
    c.send(&[&head[..], &more("", NUL_MSG), b"\r\n"].concat()).await;
    let r = c.read_until_tagged("m1").await;
    assert!(s(&r[0]).starts_with("m1 BAD "), "{}", show(&r));
    assert_eq!(h.store.mailbox_messages("Bin").unwrap(), Some(0));
    let cmd = [&head[..], format!(" ~{{{}+}}\r\n", NUL_MSG.len()).as_bytes(), NUL_MSG, b"\r\n"].concat();
    c.send_chunked(&cmd, 5).await;
    assert_resp(&c.read_until_tagged("m1").await, &[format!("m1 OK [APPENDUID {uv} 1:3] APPEND completed")]);
    // Synchronizing literals: a continuation for each (imap-next accepts each literal as it comes).
    c.send(format!("m2 APPEND Bin {{{}}}\r\n", m.len()).as_bytes()).await;
    assert_eq!(s(&c.read_line().await), "+ ready for literal data\r\n");
    c.send(&[&m[..], format!(" (\\Draft) {{{}}}\r\n", m.len()).as_bytes()].concat()).await;
    assert_eq!(s(&c.read_line().await), "+ ready for literal data\r\n");
    c.send(&[&m[..], b"\r\n"].concat()).await;
    assert_resp(&c.read_until_tagged("m2").await, &[format!("m2 OK [APPENDUID {uv} 4:5] APPEND completed")]);
    // Selected: EXISTS and RECENT before the tagged OK.
    c.cmd("s", "SELECT Bin").await;
    c.send(&[&b"m3 APPEND Bin"[..], &more("", m), &more("", m), b"\r\n"].concat()).await;
    assert_resp(
        &c.read_until_tagged("m3").await,
        &["* 7 EXISTS".to_string(), "* 7 RECENT".into(), format!("m3 OK [APPENDUID {uv} 6:7] APPEND completed")],
    );
    let r = c.cmd("f", "FETCH 1:5 (UID FLAGS INTERNALDATE RFC822.SIZE)").await;
    let r: Vec<String> = r.iter().map(|l| s(l)).collect();
    assert!(r[0].starts_with("* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) INTERNALDATE "), "{r:?}");
    assert_eq!(
        r[1],
        format!(
            "* 2 FETCH (UID 2 FLAGS (\\Flagged $Foo \\Recent) INTERNALDATE \"05-Jan-2024 01:00:00 +0000\" RFC822.SIZE {})\r\n",
            PLAIN.len()
        )
    );
    assert!(
        r[2].starts_with("* 3 FETCH (UID 3 FLAGS (\\Recent) INTERNALDATE ") && r[2].ends_with(" RFC822.SIZE 42)\r\n"),
        "{r:?}"
    );
    assert!(r[4].starts_with("* 5 FETCH (UID 5 FLAGS (\\Draft \\Recent) "), "{r:?}");
    same(
        &fetch(&mut c, "b", "3 BINARY.PEEK[]").await,
        &[&b"* 3 FETCH (BINARY[] ~{42}\r\n"[..], NUL_MSG, b")\r\nb OK FETCH completed\r\n"].concat(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc_3502_example() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    c.expect("c", "CREATE saved-messages", &["c OK CREATE completed"]).await;
    let m1 = crlf(M1);
    let m2 = crlf(
        "Date: Mon, 7 Feb 1994 22:43:04 -0800 (PST)
From: Joe Mooch <mooch@OWaTaGu.example.net>
Subject: Re: afternoon meeting
To: foobar@blurdybloop.example.com
Message-Id: <a0434793874930@OWaTaGu.example.net>
MIME-Version: 1.0
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII

3:30 is fine with me.
",
    );
    c.send(format!("A003 APPEND saved-messages (\\Seen) {{{}}}\r\n", m1.len()).as_bytes()).await;
    assert_eq!(s(&c.read_line().await), "+ ready for literal data\r\n");
    c.send(&[&m1[..], format!(" (\\Seen) {{{}}}\r\n", m2.len()).as_bytes()].concat()).await;
    assert_eq!(s(&c.read_line().await), "+ ready for literal data\r\n");
    c.send(&[&m2[..], b"\r\n"].concat()).await;
    let uv = h.uidvalidity("saved-messages");
    assert_resp(&c.read_until_tagged("A003").await, &[format!("A003 OK [APPENDUID {uv} 1:2] APPEND completed")]);
    c.expect(
        "s",
        "STATUS saved-messages (MESSAGES UNSEEN)",
        &["* STATUS \"saved-messages\" (MESSAGES 2 UNSEEN 0)", "s OK STATUS completed"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiappend_is_all_or_nothing() {
    let h = Harness::start().await;
    let mut c = h.selected().await;
    let m = b"Subject: x\r\n\r\nbody\r\n";
    let count = || h.store.mailbox_messages("Work").unwrap();
    // The second message is refused (a bad date, a bad flag, a wrong literal length): BAD, and the
    // first is not stored either.
    for (tag, second) in [
        ("f1", more("\"31-Foo-2024 00:00:00 +0000\"", m)),
        ("f2", more("(\\*)", m)),
        ("f3", [&b" {3+}\r\nab"[..]].concat()),
    ] {
        c.send(&[format!("{tag} APPEND Work").as_bytes(), &more("(\\Seen)", m), &second, b"\r\n"].concat()).await;
        let r = c.read_until_tagged(tag).await;
        assert_eq!(r.len(), 1, "{}", show(&r));
        assert!(s(&r[0]).starts_with(&format!("{tag} BAD ")), "{}", show(&r));
        assert_eq!(count(), Some(6), "{tag}");
    }
    // A mailbox that does not exist.
    c.send(&[&b"f4 APPEND Nope"[..], &more("", m), &more("", m), b"\r\n"].concat()).await;
    assert_resp(&c.read_until_tagged("f4").await, &["f4 NO [TRYCREATE] no such mailbox"]);
    // A full disk while the second message is written (room for 1 MiB: the first fits, the 4 MiB
    // second does not): nothing of the command stays.
    let caps: Vec<_> = (0..crate::store::pool::POOL_SIZE)
        .map(|_| {
            let store = h.store.clone();
            tokio::spawn(async move {
                store
                    .pool()
                    .run(|c| {
                        let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
                        let page: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
                        c.pragma_update(None, "max_page_count", pages + (1 << 20) / page).unwrap();
                        // Held a moment, so that each cap lands on a connection of its own.
                        std::thread::sleep(Duration::from_millis(200));
                    })
                    .await
            })
        })
        .collect();
    for t in caps {
        t.await.unwrap().unwrap();
    }
    let big = [&m[..], &vec![b'x'; 4 << 20]].concat();
    c.send(&[&b"f5 APPEND Work"[..], &more("", m), &more("", &big), b"\r\n"].concat()).await;
    let r = c.read_until_tagged("f5").await;
    assert!(s(r.last().unwrap()).starts_with("f5 NO [OVERQUOTA] "), "{}", show(&r));
    assert_eq!(count(), Some(6));
    // Nothing was announced to the client either; the first message alone does fit.
    c.expect("n", "NOOP", &["n OK completed"]).await;
    let r = c.cmd("f6", &format!("APPEND Work {}", s(&more("", m)[1..]))).await;
    assert!(s(r.last().unwrap()).starts_with("f6 OK [APPENDUID "), "{}", show(&r));
    assert_eq!(count(), Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multiappend_over_the_command_limit_is_bad_and_stores_nothing() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    // Each literal is within MAX_LITERAL (64 MiB), together they are over the command limit
    // (MAX_LITERAL + 64 KiB: imap-next's max_command_size).
    let n = super::super::session::MAX_LITERAL as usize / 2 + 1024 * 1024;
    let data = vec![b'x'; n];
    c.send(b"a1 APPEND Work").await;
    for _ in 0..2 {
        c.send(format!(" {{{n}+}}\r\n").as_bytes()).await;
        for piece in data.chunks(1 << 20) {
            c.send(piece).await;
        }
    }
    c.send(b"\r\na2 NOOP\r\n").await;
    assert_resp(&c.read_until_tagged("a1").await, &["a1 BAD command too long"]);
    assert_resp(&c.read_until_tagged("a2").await, &["a2 OK completed"]);
    assert_eq!(h.store.mailbox_messages("Work").unwrap(), Some(6));
}
