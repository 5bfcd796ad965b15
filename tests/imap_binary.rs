//! BINARY (RFC 3516) and MULTIAPPEND (RFC 3502) against the test Dovecot and against popbridge:
//! the same raw commands to both servers over the same messages, and their answers compared —
//! FETCH responses byte for byte (decoded data, sizes, literal or literal8, partial origins),
//! tagged statuses by kind and response code (the texts differ), APPENDUID sets modulo
//! UIDVALIDITY. Where the servers legitimately differ, the test says so and compares less.

use base64::Engine as _;

use crate::util::Bridge;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::fake_pop3::{FakeMessage, FakePop3, Script};
use crate::util::imap_clients::{Raw, Reply, Security, Target};

fn b64_lines(data: &[u8]) -> Vec<u8> {
    let enc = base64::engine::general_purpose::STANDARD.encode(data);
    enc.as_bytes().chunks(76).flat_map(|l| [l, b"\r\n"].concat()).collect()
}

fn noise(n: usize, mut x: u32) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// The messages both servers get, in order (UIDs 1..): what each BINARY case reads.
fn messages() -> Vec<(Vec<u8>, bool)> {
    let all: Vec<u8> = (0..=255u8).cycle().take(512).collect();
    let b64_top = [
        &b"From: a@example.com\r\nSubject: b64 top\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"[..],
        &b64_lines(b"Hello, world!\r\nSecond line\r\n"),
    ]
    .concat();
    // No part without a decoder here: Dovecot answers BINARY.SIZE of any part of a message that
    // has one anywhere with NO [UNKNOWN-CTE] (popbridge only for the sections that contain it).
    let mixed = [
        &b"From: a@example.com\r\nSubject: mixed\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n\
--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=C3=A9 soft=\r\nbreak =3D end  \r\nline2=\r\n\r\n\
--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: BASE64\r\n\r\n"[..],
        &b64_lines(&all),
        b"\r\n--XX\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe\r\n\
\r\n--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naW5uZXIgdGV4dA==\r\n\
\r\n--XX\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n--YY\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nYWx0\r\n--YY--\r\n\
\r\n--XX\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=00nul=\r\n\
\r\n--XX--\r\n",
    ]
    .concat();
    let unknown = b"From: a@example.com\r\nSubject: unknown\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\nend\r\n".to_vec();
    let plain = b"From: a@example.com\r\nSubject: plain\r\n\r\nJust text.\r\n".to_vec();
    let nul = b"From: a@example.com\r\nSubject: nul\r\n\r\nA\x00B\r\n".to_vec();
    // 1 MB decoded: above the size up to which popbridge reads a body whole (streamed in chunks).
    let big = [
        &b"From: a@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n--b\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"[..],
        &b64_lines(&noise(1_000_003, 7)),
        b"--b--\r\n",
    ]
    .concat();
    vec![(b64_top, false), (mixed, false), (unknown, false), (plain, false), (nul, true), (big, false)]
}

/// The FETCHes both servers must answer identically.
const SAME: &[&str] = &[
    "1 BINARY.PEEK[]",
    "1 (BINARY.SIZE[] BINARY.SIZE[1] BINARY.PEEK[1])",
    "1 BINARY.PEEK[1]<3.5>",
    "2 (BINARY.PEEK[1] BINARY.SIZE[1])",
    "2 (BINARY.PEEK[2] BINARY.SIZE[2])",
    "2 BINARY.PEEK[2]<250.10>",
    "2 BINARY.PEEK[2]<2000.10>",
    "2 BINARY.PEEK[3]",
    "2 (BINARY.PEEK[4] BINARY.PEEK[4.1] BINARY.SIZE[4])",
    "2 (BINARY.PEEK[5] BINARY.PEEK[5.1])",
    "2 (BINARY.PEEK[6] BINARY.SIZE[6])",
    "2 (BINARY.PEEK[] BINARY.SIZE[])",
    "2 (BINARY.PEEK[7] BINARY.SIZE[7] BINARY.PEEK[1.1])",
    "2 BINARY.PEEK[]<100.200>",
    "4 (BINARY.PEEK[] BINARY.PEEK[1] BINARY.SIZE[1])",
    "5 (BINARY.PEEK[] BINARY.PEEK[1])",
    "5 BINARY.PEEK[1]<2.3>",
    "6 (BINARY.SIZE[2] BINARY.SIZE[])",
    "6 BINARY.PEEK[2]",
    "6 BINARY.PEEK[2]<500000.1000>",
    "6 BINARY.PEEK[]",
    "1,4 BINARY.SIZE[1]",
];

/// A raw session on each server: (name, client), logged in.
fn sessions(d: &Dovecot, b: &Bridge) -> Vec<(&'static str, Raw)> {
    let dov = Target::dovecot(d, "alice", "alice-pw", Security::Plain);
    vec![("dovecot", Raw::connect_login(&dov)), ("popbridge", Raw::connect_login(&b.target(Security::Plain, "me")))]
}

fn append_cmd(tag: &str, mailbox: &str, msg: &[u8], binary: bool) -> Vec<u8> {
    let tilde = if binary { "~" } else { "" };
    [format!("{tag} APPEND {mailbox} {tilde}{{{}+}}\r\n", msg.len()).as_bytes(), msg, b"\r\n"].concat()
}

/// The FETCH responses of a reply byte for byte, its status, its UNKNOWN-CTE code.
type Outcome = (Vec<Vec<u8>>, String, Option<String>);

fn outcome(r: &Reply) -> Outcome {
    let fetches =
        r.raw.iter().filter(|l| l.starts_with(b"* ") && l.windows(7).any(|w| w == b" FETCH ")).cloned().collect();
    (fetches, r.status(), r.code("UNKNOWN-CTE"))
}

fn show(lines: &[Vec<u8>]) -> String {
    lines.iter().map(|l| format!("{}\n", l.escape_ascii())).collect()
}

#[test]
fn fetch_binary_answers_as_dovecot_does() {
    let d = Dovecot::start(DovecotOpts::default());
    let b = Bridge::with_listeners();
    let _daemon = b.daemon();
    let msgs = messages();
    let mut got: Vec<Vec<Outcome>> = Vec::new();
    for (name, mut c) in sessions(&d, &b) {
        c.cmd("c", "CREATE Bin").assert_ok(name);
        for (m, binary) in &msgs {
            c.send(&append_cmd("ap", "Bin", m, *binary));
            c.read_until_tagged("ap").assert_ok(name);
        }
        c.cmd("s", "SELECT Bin").assert_ok(name);
        got.push(SAME.iter().map(|f| outcome(&c.cmd("f", &format!("FETCH {f}")))).collect());
        // No decoder for x-uuencode: NO [UNKNOWN-CTE] on both (Dovecot also sends a `* 3 FETCH
        // (UID 3)` first, popbridge no response for that message).
        for f in ["3 BINARY.PEEK[1]", "3 BINARY.PEEK[]", "3 BINARY.SIZE[1]"] {
            let r = c.cmd("u", &format!("FETCH {f}"));
            assert!(r.no() && r.code("UNKNOWN-CTE").is_some(), "{name} {f}: {:?}", r.lines);
        }
        // Without .PEEK, \Seen is set as by BODY[]; BINARY.SIZE leaves it.
        let r = c.cmd("z", "FETCH 4 (BINARY.SIZE[1] FLAGS)");
        assert!(r.ok() && !r.fetches()[0].flags().unwrap().contains(&"\\Seen".to_string()), "{name}: {:?}", r.lines);
        c.cmd("z", "FETCH 4 BINARY[1]").assert_ok(name);
        let r = c.cmd("z", "FETCH 4 FLAGS");
        assert!(r.fetches()[0].flags().unwrap().contains(&"\\Seen".to_string()), "{name}: {:?}", r.lines);
        c.logout();
    }
    for (i, f) in SAME.iter().enumerate() {
        let (dov, pb) = (&got[0][i], &got[1][i]);
        assert!(
            dov == pb,
            "FETCH {f}:\n--- dovecot: {} {:?}\n{}--- popbridge: {} {:?}\n{}",
            dov.1,
            dov.2,
            show(&dov.0),
            pb.1,
            pb.2,
            show(&pb.0)
        );
        assert_eq!(pb.1, "OK", "FETCH {f}");
        assert!(!pb.0.is_empty(), "FETCH {f}: no response");
    }
    // The big attachment came back whole, decoded.
    let big = &got[1][SAME.iter().position(|f| *f == "6 BINARY.PEEK[2]").unwrap()].0[0];
    assert!(big.ends_with(&[&noise(1_000_003, 7)[1_000_003 - 64..], b")"].concat()));
}

/// `tag APPEND box` + the messages (`opts` before each literal, `~` for a literal8), non-synchronizing.
fn multiappend(tag: &str, mailbox: &str, msgs: &[(&str, &[u8], bool)]) -> Vec<u8> {
    let mut out = format!("{tag} APPEND {mailbox}").into_bytes();
    for (opts, m, binary) in msgs {
        let sep = if opts.is_empty() { "" } else { " " };
        let tilde = if *binary { "~" } else { "" };
        out.extend_from_slice(format!(" {opts}{sep}{tilde}{{{}+}}\r\n", m.len()).as_bytes());
        out.extend_from_slice(m);
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn multiappend_is_atomic_on_both_servers() {
    let d = Dovecot::start(DovecotOpts::default());
    let b = Bridge::with_listeners();
    let _daemon = b.daemon();
    let m1 = b"Subject: one\r\n\r\nfirst\r\n".as_slice();
    let m2 = b"Subject: two\r\n\r\nsecond\r\n".as_slice();
    let m3 = b"Subject: three\r\n\r\nA\x00B\r\n".as_slice();
    let date = "\"05-Jan-2024 01:00:00 +0000\"";
    let mut fetched = Vec::new();
    for (name, mut c) in sessions(&d, &b) {
        c.cmd("c", "CREATE Multi").assert_ok(name);
        // Three messages, flags, dates and a literal8: one APPENDUID for all.
        c.send(&multiappend(
            "m1",
            "Multi",
            &[(&format!("(\\Seen) {date}"), m1, false), (&format!("(\\Flagged) {date}"), m2, false), (date, m3, true)],
        ));
        let r = c.read_until_tagged("m1");
        let uids = r.code("APPENDUID").map(|c| c.split(' ').nth(1).unwrap_or("").to_string());
        assert_eq!(uids.as_deref(), Some("1:3"), "{name}: {:?}", r.lines);
        // A missing mailbox: NO [TRYCREATE], nothing stored anywhere.
        c.send(&multiappend("m2", "Nosuch", &[("", m1, false), ("", m2, false)]));
        let r = c.read_until_tagged("m2");
        assert!(r.no() && r.code("TRYCREATE").is_some(), "{name}: {:?}", r.lines);
        // The second message has a bad date: BAD, and the first is not stored either. Its literal
        // is synchronizing: Dovecot refuses at the announcement, popbridge (imap-next takes every
        // literal before parsing) after the data.
        c.send(format!("m3 APPEND Multi (\\Seen) {{{}+}}\r\n", m1.len()).as_bytes());
        c.send(m1);
        c.send(format!(" \"31-Foo-2024 00:00:00 +0000\" {{{}}}\r\n", m2.len()).as_bytes());
        let line = c.read_line();
        let r = if line.starts_with('+') {
            c.send(&[m2, b"\r\n"].concat());
            c.read_until_tagged("m3")
        } else {
            Reply { tagged: line.strip_prefix("m3 ").unwrap_or(&line).to_string(), lines: vec![line], raw: vec![] }
        };
        assert!(r.bad(), "{name}: {:?}", r.lines);
        let st = c.cmd("st", "STATUS Multi (MESSAGES)");
        assert!(st.lines[0].contains("(MESSAGES 3)"), "{name}: {:?}", st.lines);
        c.cmd("s", "SELECT Multi").assert_ok(name);
        let r = c.cmd("f", "FETCH 1:3 (FLAGS INTERNALDATE RFC822.SIZE BINARY.PEEK[])").assert_ok(name).clone();
        fetched.push(
            r.raw
                .iter()
                .filter(|l| l.starts_with(b"* ") && l.windows(7).any(|w| w == b" FETCH "))
                .cloned()
                .collect::<Vec<_>>(),
        );
        c.logout();
    }
    assert!(fetched[0] == fetched[1], "--- dovecot\n{}--- popbridge\n{}", show(&fetched[0]), show(&fetched[1]));
}

/// FETCH BINARY of a 50 MB base64 attachment streams: the daemon's peak memory grows by far less
/// than the attachment (decoded 37.5 MB), bounded like every FETCH by the memory budget (16 MiB)
/// plus room for noise — the decoder holds one chunk, never the part. (Decoding it whole would
/// add the encoded and the decoded copy: 88 MB.)
#[test]
fn binary_of_a_50_mb_attachment_costs_a_chunk_of_memory() {
    let data = noise(37_500_000, 11);
    let msg = [
        &b"From: a@example.com\r\nSubject: huge\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"[..],
        &b64_lines(&data),
    ]
    .concat();
    // Fetched from a POP3 server (an IMAP APPEND of 50 MB outlasts the raw client's timeouts in a
    // debug build).
    let fake = FakePop3::start(Script { messages: vec![FakeMessage::new("huge", msg)], ..Script::default() });
    let b = Bridge::with_listeners();
    b.add_account("Work", fake.port(), "plain", "u", "p", &["--no-test"]).expect(0);
    b.run(&["fetch"]).expect(0);
    let daemon = b.daemon();
    let mut c = Raw::connect_login(&b.target(Security::Plain, "me"));
    c.cmd("s", "EXAMINE Work").assert_ok("EXAMINE");
    // Measured from a daemon at rest: the APPEND and the text index (which reads a new body
    // once, whole) are done.
    crate::memory::wait_for_the_index(&b);
    let pid = daemon.child.id();
    let base = crate::memory::reset_peak(pid);
    let r = c.cmd("f", "FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])").assert_ok("FETCH").clone();
    let f = &r.fetches()[0];
    assert_eq!(f.num("BINARY.SIZE[1]"), Some(data.len() as u32));
    assert!(f.get("BINARY[1]") == Some(&data[..]), "the attachment, decoded, byte for byte");
    let peak = crate::memory::status_kib(pid, "VmHWM");
    eprintln!("FETCH BINARY of a 50 MB attachment: VmHWM {base} KiB -> {peak} KiB");
    let bound = base + 32 * 1024;
    assert!(peak < bound, "VmHWM {base} KiB -> {peak} KiB (bound {bound} KiB)\n{}", daemon.log());
}
