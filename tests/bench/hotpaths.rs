//! Micro-benchmarks of the hot paths (`cargo bench`): POP3 response parsing with dot-unstuffing,
//! metadata extraction at insert, FETCH response encoding, and SEARCH evaluation. A plain harness
//! (no extra crates): each case runs for about a second after a warm-up and reports the best of
//! five rounds, per operation and per byte. On this shared machine, compare runs made together.

use std::hint::black_box;
use std::time::{Duration, Instant};

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use popbridge::imap::fetch::{FetchInput, FetchPlan, encode};
use popbridge::imap::search::{Candidate, Context, SearchQuery};
use popbridge::mime::text::SearchText;
use popbridge::mime::{MessageMeta, Timestamp};
use popbridge::pop3::{Client, Command, Limits};
use popbridge::store::{MessageRow, flag};

/// Runs `f` (one operation per call) for ~1 s per round; returns the best ns per operation.
fn bench(name: &str, bytes_per_op: usize, mut f: impl FnMut()) {
    for _ in 0..3 {
        f();
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < Duration::from_millis(200) {
            f();
            n += 1;
        }
        best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
    }
    let rate =
        if bytes_per_op > 0 { format!("  {:8.0} MB/s", bytes_per_op as f64 / best * 1e3) } else { String::new() };
    println!("{name:<52} {:>12.1} ns/op{rate}", best);
}

/// A realistic ~30 KB multipart message with dot-lines (what gen-mail.py produces).
fn message() -> Vec<u8> {
    let mut m = b"Return-Path: <alice@example.com>\r\nReceived: from mx.example.com by mail.example.org; Mon, 3 Mar 2025 10:00:00 +0000\r\nFrom: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.com>\r\nTo: Bob <bob@example.org>, carol@example.net\r\nSubject: =?UTF-8?B?R3LDvMOfZSBhdXMgWsO8cmljaA==?=\r\nDate: Mon, 3 Mar 2025 10:00:00 +0100\r\nMessage-ID: <bench@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
    let mut i = 0;
    while m.len() < 15_000 {
        m.extend_from_slice(
            format!("Line {i} of the plain part, with some words: meeting report budget quarter.\r\n").as_bytes(),
        );
        if i % 37 == 0 {
            m.extend_from_slice(b".a line that starts with a dot\r\n");
        }
        i += 1;
    }
    m.extend_from_slice(
        b"--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
    );
    while m.len() < 30_000 {
        m.extend_from_slice(
            b"<p>Paragraph with <b>bold</b> text and a link <a href=3D\"https://example.com/\">here</a>.</p>\r\n",
        );
    }
    m.extend_from_slice(b"--b1--\r\n");
    m
}

/// The message as a POP3 server sends it: +OK, dot-stuffed, terminated.
fn wire(msg: &[u8]) -> Vec<u8> {
    let mut w = b"+OK message follows\r\n".to_vec();
    for line in msg.split_inclusive(|b| *b == b'\n') {
        if line.first() == Some(&b'.') {
            w.push(b'.');
        }
        w.extend_from_slice(line);
    }
    w.extend_from_slice(b".\r\n");
    w
}

fn plan(line: &str) -> FetchPlan {
    let mut bytes = line.as_bytes().to_vec();
    bytes.extend_from_slice(b"\r\n");
    let Ok((_, cmd)) = CommandCodec::default().decode(&bytes) else { panic!("parse {line}") };
    match cmd.body {
        CommandBody::Fetch { macro_or_item_names, uid, .. } => FetchPlan::new(&macro_or_item_names, uid).unwrap(),
        _ => panic!("not a FETCH"),
    }
}

fn main() {
    let msg = message();
    let w = wire(&msg);

    // POP3: one RETR answer fed in 16 KiB reads (as the driver reads a TLS stream).
    bench("pop3: parse + dot-unstuff a 30 KB RETR answer", w.len(), || {
        let mut c = Client::new(Limits::default());
        let mut out = Vec::new();
        c.feed(b"+OK ready\r\n");
        let _ = c.poll();
        c.send(&Command::Retr(1), &mut out);
        for chunk in w.chunks(16 * 1024) {
            c.feed(chunk);
        }
        black_box(c.poll().ok().flatten());
    });

    // Metadata extracted once per message at insert (envelope, body structure, dates).
    bench("mime: MessageMeta::extract of a 30 KB message", msg.len(), || {
        black_box(MessageMeta::extract(black_box(&msg)));
    });
    let meta = MessageMeta::extract(&msg);
    bench("mime: to_bytes + from_bytes (store round trip)", 0, || {
        black_box(MessageMeta::from_bytes(&meta.to_bytes()));
    });
    bench("mime: search_text (decoded text parts, HTML to text)", msg.len(), || {
        black_box(popbridge::mime::search_text_with(black_box(&msg), &meta));
    });
    // The folded text written to the search index at insert (decoded text parts, headers).
    bench("search: SearchText of a 30 KB message (index input)", msg.len(), || {
        black_box(SearchText::from_raw_with(black_box(&msg), &meta));
    });

    // FETCH encoding: what mbsync and Thunderbird ask for.
    let row = MessageRow {
        uid: 4242,
        flags: flag::SEEN | flag::FLAGGED,
        keywords: vec!["$label1".into()],
        modseq: 7,
        internaldate: Timestamp { unix: 1_741_000_000, offset_minutes: 60 },
        size: msg.len() as u32,
        body_id: 1,
    };
    let input =
        FetchInput { seq: 17, row: &row, recent: false, meta: Some(&meta), raw: Some(&msg), seen_changed: false };
    let mut out = Vec::with_capacity(64 * 1024);
    for (name, line) in [
        ("imap: FETCH (UID FLAGS RFC822.SIZE) [mbsync listing]", "a UID FETCH 1:* (UID FLAGS RFC822.SIZE)"),
        ("imap: FETCH BODY.PEEK[] of 30 KB [mbsync download]", "a UID FETCH 1 (BODY.PEEK[])"),
        (
            "imap: FETCH Thunderbird header fields",
            "a UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To Received)])",
        ),
        ("imap: FETCH (ENVELOPE BODYSTRUCTURE)", "a FETCH 1 (ENVELOPE BODYSTRUCTURE)"),
    ] {
        let p = plan(line);
        let bytes = if name.contains("BODY.PEEK[]") { msg.len() } else { 0 };
        bench(name, bytes, || {
            out.clear();
            encode(&p, &input, &mut out);
            black_box(&out);
        });
    }

    // SEARCH over a 100,000-message mailbox, flags only (no bodies loaded).
    let rows: Vec<MessageRow> = (1..=100_000u32)
        .map(|i| MessageRow {
            uid: i,
            flags: if i % 3 == 0 { 0 } else { flag::SEEN },
            keywords: Vec::new(),
            modseq: 1,
            internaldate: Timestamp { unix: 1_700_000_000 + i64::from(i) * 60, offset_minutes: 0 },
            size: 2000 + i % 5000,
            body_id: i64::from(i),
        })
        .collect();
    let ctx = Context { max_seq: 100_000, max_uid: 100_000 };
    for (name, line) in [
        ("search: UNSEEN over 100k rows", "a SEARCH UNSEEN"),
        (
            "search: UNSEEN UNDELETED SINCE 1-Jan-2024 LARGER 3000 (100k)",
            "a SEARCH UNSEEN UNDELETED SINCE 1-Jan-2024 LARGER 3000",
        ),
    ] {
        let mut bytes = line.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\n");
        let Ok((_, cmd)) = CommandCodec::default().decode(&bytes) else { panic!("parse") };
        let CommandBody::Search { criteria, charset, .. } = cmd.body else { panic!("not SEARCH") };
        let q = SearchQuery::from_criteria(criteria.as_ref(), charset.as_ref()).unwrap();
        bench(name, 0, || {
            let mut hits = 0u32;
            for (i, r) in rows.iter().enumerate() {
                if q.matches(&Candidate::new(i as u32 + 1, r, false), &ctx) {
                    hits += 1;
                }
            }
            black_box(hits);
        });
    }
}
