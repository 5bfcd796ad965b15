//! Expected BODYSTRUCTURE / ENVELOPE strings below were checked against Dovecot 2.3.19 on the
//! same messages (structurally: Dovecot may send a literal where we quote); the few deliberate
//! differences are noted where they occur.

use super::*;

fn crlf(s: &str) -> Vec<u8> {
    s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

fn bs(m: &MessageMeta) -> String {
    let mut v = Vec::new();
    wire::body_structure(&mut v, &m.part, true);
    String::from_utf8(v).unwrap()
}

fn body(m: &MessageMeta) -> String {
    let mut v = Vec::new();
    wire::body_structure(&mut v, &m.part, false);
    String::from_utf8(v).unwrap()
}

fn env(e: &Envelope) -> String {
    let mut v = Vec::new();
    wire::envelope(&mut v, e);
    String::from_utf8(v).unwrap()
}

/// Extract and check every structural invariant; returns the meta.
fn ex(raw: &[u8]) -> MessageMeta {
    let m = MessageMeta::extract(raw);
    check(raw, &m);
    m
}

fn check_str(s: &str) {
    assert!(!s.contains(['\r', '\n', '\0']), "control char in {s:?}");
}

fn check_env(e: &Envelope) {
    for s in [&e.date, &e.subject, &e.in_reply_to, &e.message_id].into_iter().flatten() {
        check_str(s);
    }
    for l in [&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc] {
        for a in l {
            for s in [&a.name, &a.adl, &a.mailbox, &a.host].into_iter().flatten() {
                check_str(s);
            }
        }
    }
}

fn check(raw: &[u8], m: &MessageMeta) {
    assert_eq!(m.size as usize, raw.len());
    assert_eq!(m.header_len, m.part.body_start);
    assert_eq!(m.part.header_start, 0);
    assert_eq!(m.part.end as usize, raw.len());
    check_env(&m.envelope);
    m.part.walk(&mut |p| {
        assert!(p.header_start <= p.body_start && p.body_start <= p.end, "{p:?}");
        assert!(p.end as usize <= raw.len());
        assert_eq!(p.size, p.end - p.body_start);
        for s in [&p.media_type, &p.subtype, &p.encoding] {
            check_str(s);
        }
        for (k, v) in p.params.iter().chain(p.disposition.iter().flat_map(|d| d.1.iter())) {
            check_str(k);
            check_str(v);
        }
        if p.is_multipart() {
            assert!(!p.children.is_empty(), "multipart without children");
        }
        let mut prev = p.body_start;
        for c in &p.children {
            assert!(c.header_start >= prev, "children out of order");
            assert!(c.end <= p.end, "child beyond parent");
            prev = c.end;
        }
        if p.media_type.eq_ignore_ascii_case("message") && p.subtype.eq_ignore_ascii_case("rfc822") {
            assert!(p.message.is_some());
        }
        if let Some(inner) = &p.message {
            assert_eq!(inner.1.header_start, p.body_start);
            assert_eq!(inner.1.end, p.end);
            check_env(&inner.0);
        }
        if p.is_text() || p.message.is_some() {
            let n = raw[p.body_range()].iter().filter(|&&c| c == b'\n').count();
            assert_eq!(p.lines as usize, n);
        }
    });
    let b = m.to_bytes();
    assert_eq!(MessageMeta::from_bytes(&b).as_ref(), Some(m), "binary round trip");
    let j = serde_json::to_vec(m).unwrap();
    assert_eq!(&serde_json::from_slice::<MessageMeta>(&j).unwrap(), m, "json round trip");
}

const SIMPLE: &str = "From: Alice Smith <alice@example.com>
To: bob@example.org
Subject: Hello  there
Date: Mon, 7 Jul 2025 10:00:00 +0200
Message-ID: <abc@example.com>

Hi Bob,
line two
";

#[test]
fn simple_text() {
    let raw = crlf(SIMPLE);
    let m = ex(&raw);
    assert_eq!(bs(&m), r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 19 2 NIL NIL NIL NIL)"#);
    assert_eq!(body(&m), r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 19 2)"#);
    assert_eq!(
        env(&m.envelope),
        r#"("Mon, 7 Jul 2025 10:00:00 +0200" "Hello there" (("Alice Smith" NIL "alice" "example.com")) (("Alice Smith" NIL "alice" "example.com")) (("Alice Smith" NIL "alice" "example.com")) ((NIL NIL "bob" "example.org")) NIL NIL NIL "<abc@example.com>")"#
    );
    assert_eq!(m.message_id.as_deref(), Some("abc@example.com"));
    assert_eq!(m.date, Some(Timestamp { unix: 1_751_875_200, offset_minutes: 120 }));
    assert_eq!(&raw[..m.header_len as usize], &raw[..raw.len() - 19]);
    assert!(raw[..m.header_len as usize].ends_with(b"\r\n\r\n"));
    // Part 1 of a non-multipart message is its body.
    let p1 = m.part.find(&[1]).unwrap();
    assert_eq!(&raw[p1.body_range()], b"Hi Bob,\r\nline two\r\n");
    assert!(m.part.find(&[2]).is_none());
    assert!(m.part.find(&[1, 1]).is_none());
    assert!(m.part.find(&[0]).is_none());
}

const ALTERNATIVE: &str = r#"From: "Doe, John" <john@example.com>
To: a@b.c, "Q \"x\" y" <q@b.c>, (comment only) c@d.e (Cmt Name)
Cc: undisclosed-recipients:;
Bcc: Group One: a@x.y, B <b@x.y>;, z@z.z
Subject: =?UTF-8?B?R3LDvMOfZQ==?= and =?iso-8859-1?q?caf=E9?=
Date: 1 Jan 2020 00:00:00 -0000
Message-ID: <alt@example.com>
In-Reply-To: <parent@example.com>
MIME-Version: 1.0
Content-Type: Multipart/Alternative;
 boundary="XYZ"; foo=Bar

preamble
--XYZ
Content-Type: TEXT/Plain; charset="UTF-8"; format=flowed
Content-Transfer-Encoding: Quoted-Printable
Content-ID: <cid1@x>
Content-Description: the text

Hello=20
world
--XYZ
Content-Type: text/html

<p>hi</p>

--XYZ--
epilogue
"#;

#[test]
fn multipart_alternative_groups_and_encoded_words() {
    let raw = crlf(ALTERNATIVE);
    let m = ex(&raw);
    assert_eq!(
        bs(&m),
        r#"(("TEXT" "Plain" ("charset" "UTF-8" "format" "flowed") "<cid1@x>" "the text" "Quoted-Printable" 15 1 NIL NIL NIL NIL)("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 11 1 NIL NIL NIL NIL) "Alternative" ("boundary" "XYZ" "foo" "Bar") NIL NIL NIL)"#
    );
    assert_eq!(
        body(&m),
        r#"(("TEXT" "Plain" ("charset" "UTF-8" "format" "flowed") "<cid1@x>" "the text" "Quoted-Printable" 15 1)("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 11 1) "Alternative")"#
    );
    // Encoded-words stay raw; groups per RFC 3501; a trailing comment names a bare address.
    assert_eq!(
        env(&m.envelope),
        r#"("1 Jan 2020 00:00:00 -0000" "=?UTF-8?B?R3LDvMOfZQ==?= and =?iso-8859-1?q?caf=E9?=" (("Doe, John" NIL "john" "example.com")) (("Doe, John" NIL "john" "example.com")) (("Doe, John" NIL "john" "example.com")) ((NIL NIL "a" "b.c")("Q \"x\" y" NIL "q" "b.c")("Cmt Name" NIL "c" "d.e")) ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) ((NIL NIL "Group One" NIL)(NIL NIL "a" "x.y")("B" NIL "b" "x.y")(NIL NIL NIL NIL)(NIL NIL "z" "z.z")) "<parent@example.com>" "<alt@example.com>")"#
    );
    let p1 = m.part.find(&[1]).unwrap();
    assert_eq!(&raw[p1.body_range()], b"Hello=20\r\nworld");
    assert!(raw[p1.header_range()].starts_with(b"Content-Type: TEXT/Plain"));
    assert!(raw[p1.header_range()].ends_with(b"the text\r\n\r\n"));
    let p2 = m.part.find(&[2]).unwrap();
    assert_eq!(&raw[p2.body_range()], b"<p>hi</p>\r\n");
    assert!(m.part.find(&[3]).is_none());
    // The multipart's body includes preamble and epilogue.
    assert!(raw[m.part.body_range()].starts_with(b"preamble\r\n--XYZ"));
    assert!(raw[m.part.body_range()].ends_with(b"epilogue\r\n"));
}

const MIXED: &str = r#"From: a@example.com
To: b@example.com
Subject: att
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=b1

--b1
Content-Type: text/plain

body
--b1
Content-Type: application/pdf; name="r.pdf"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf; size=123
Content-Language: en, de
Content-Location: http://x.example/r.pdf
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==

AAAA
BBBB
--b1
Content-Type: application/octet-stream;
 name*0="long"; name*1="name.txt";
 title*0*=us-ascii'en'This%20is%20; title*1*=%2A%2A%2Afun%2A%2A%2A; title*2="isn't it"
Content-Disposition: inline

xx
--b1--
"#;

#[test]
fn multipart_mixed_attachment_rfc2231() {
    let raw = crlf(MIXED);
    let m = ex(&raw);
    assert_eq!(
        bs(&m),
        r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 4 0 NIL NIL NIL NIL)("application" "pdf" ("name" "r.pdf") NIL NIL "base64" 10 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("attachment" ("size" "123" "filename*" "UTF-8''r%C3%A9sum%C3%A9.pdf")) ("en" "de") "http://x.example/r.pdf")("application" "octet-stream" ("name" "longname.txt" "title*" "us-ascii'en'This%20is%20%2A%2A%2Afun%2A%2A%2Aisn't it") NIL NIL "7bit" 2 NIL ("inline" NIL) NIL NIL) "mixed" ("boundary" "b1") NIL NIL NIL)"#
    );
    let att = m.part.find(&[2]).unwrap();
    assert_eq!(&raw[att.body_range()], b"AAAA\r\nBBBB");
    assert_eq!(att.disposition.as_ref().unwrap().0, "attachment");
}

const NESTED: &str = r#"From: a@example.com
Subject: nested
Content-Type: multipart/mixed; boundary="m"

--m
Content-Type: multipart/alternative; boundary="a"

--a
Content-Type: text/plain

plain
--a
Content-Type: multipart/related; boundary="r"; type="text/html"

--r
Content-Type: text/html

<img src="cid:i">
--r
Content-Type: image/png
Content-ID: <i>
Content-Transfer-Encoding: base64

iVBO
--r--
--a--
--m
Content-Type: text/plain; name=x.txt
Content-Disposition: attachment

att
--m--
"#;

#[test]
fn nested_mixed_alternative_related() {
    let raw = crlf(NESTED);
    let m = ex(&raw);
    assert_eq!(
        bs(&m),
        r#"((("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL)(("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 17 0 NIL NIL NIL NIL)("image" "png" NIL "<i>" NIL "base64" 4 NIL NIL NIL NIL) "related" ("boundary" "r" "type" "text/html") NIL NIL NIL) "alternative" ("boundary" "a") NIL NIL NIL)("text" "plain" ("name" "x.txt" "charset" "us-ascii") NIL NIL "7bit" 3 0 NIL ("attachment" NIL) NIL NIL) "mixed" ("boundary" "m") NIL NIL NIL)"#
    );
    assert_eq!(&raw[m.part.find(&[1, 2, 2]).unwrap().body_range()], b"iVBO");
    assert_eq!(&raw[m.part.find(&[1, 2, 1]).unwrap().body_range()], b"<img src=\"cid:i\">");
    assert_eq!(&raw[m.part.find(&[2]).unwrap().body_range()], b"att");
    assert!(m.part.find(&[1, 2, 3]).is_none());
    assert!(m.part.find(&[1, 1, 1]).is_none());
    // BODY[1.2] of a multipart part is its body: from the first boundary to its close delimiter.
    let rel = m.part.find(&[1, 2]).unwrap();
    assert!(raw[rel.body_range()].starts_with(b"--r\r\n"));
    // The close delimiter's line break stays in the multipart (the epilogue is empty).
    assert!(raw[rel.body_range()].ends_with(b"--r--\r\n"));
}

const FORWARD: &str = r#"From: fwd@example.com
To: me@example.com
Subject: Fwd: inner
Content-Type: multipart/mixed; boundary="o"

--o
Content-Type: text/plain

see below
--o
Content-Type: message/rfc822
Content-Disposition: attachment; filename="fwd.eml"

From: Inner Person <inner@example.net>
To: x@example.net
Subject: inner subject
Date: Tue, 1 Jul 2025 09:00:00 +0000
Message-ID: <inner@example.net>
Content-Type: multipart/alternative; boundary="in"

--in
Content-Type: text/plain

inner plain
--in
Content-Type: text/html

<b>inner</b>
--in--

--o--
"#;

#[test]
fn forwarded_message_rfc822() {
    let raw = crlf(FORWARD);
    let m = ex(&raw);
    assert_eq!(
        bs(&m),
        r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 9 0 NIL NIL NIL NIL)("message" "rfc822" NIL NIL NIL "7bit" 310 ("Tue, 1 Jul 2025 09:00:00 +0000" "inner subject" (("Inner Person" NIL "inner" "example.net")) (("Inner Person" NIL "inner" "example.net")) (("Inner Person" NIL "inner" "example.net")) ((NIL NIL "x" "example.net")) NIL NIL NIL "<inner@example.net>") (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 11 0 NIL NIL NIL NIL)("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 12 0 NIL NIL NIL NIL) "alternative" ("boundary" "in") NIL NIL NIL) 16 NIL ("attachment" ("filename" "fwd.eml")) NIL NIL) "mixed" ("boundary" "o") NIL NIL NIL)"#
    );
    let p2 = m.part.find(&[2]).unwrap();
    // BODY[2] is the whole encapsulated message; BODY[2.MIME] the part's MIME header.
    assert!(raw[p2.body_range()].starts_with(b"From: Inner Person"));
    assert!(raw[p2.body_range()].ends_with(b"--in--\r\n"));
    assert!(raw[p2.header_range()].starts_with(b"Content-Type: message/rfc822\r\n"));
    // BODY[2.HEADER] / BODY[2.TEXT]: the encapsulated message's header and body.
    let inner = m.part.message_root(&[2]).unwrap();
    assert!(raw[inner.header_range()].starts_with(b"From: Inner Person"));
    assert!(raw[inner.header_range()].ends_with(b"boundary=\"in\"\r\n\r\n"));
    assert!(raw[inner.body_range()].starts_with(b"--in\r\n"));
    assert_eq!(m.part.message_root(&[]).unwrap().header_range(), 0..m.header_len as usize);
    assert!(m.part.message_root(&[1]).is_none());
    // 2.1 and 2.2 descend into the encapsulated multipart.
    assert_eq!(&raw[m.part.find(&[2, 1]).unwrap().body_range()], b"inner plain");
    assert_eq!(&raw[m.part.find(&[2, 2]).unwrap().body_range()], b"<b>inner</b>");
    assert!(m.part.find(&[2, 3]).is_none());
    let (ienv, _) = &**p2.message.as_ref().unwrap();
    assert_eq!(ienv.subject.as_deref(), Some("inner subject"));
    let hf = header_fields(&raw[inner.header_range()], &[b"subject"], false);
    assert_eq!(hf, b"Subject: inner subject\r\n\r\n");
}

#[test]
fn encapsulated_non_multipart_and_digest() {
    // Top-level message/rfc822: part 1 is the encapsulated message, 1.1 its body.
    let raw = crlf(
        "From: a@example.com\nSubject: top rfc822\nContent-Type: message/rfc822\n\nFrom: b@example.com\nSubject: in\n\nbody\n",
    );
    let m = ex(&raw);
    assert_eq!(
        bs(&m),
        r#"("message" "rfc822" NIL NIL NIL "7bit" 42 (NIL "in" ((NIL NIL "b" "example.com")) ((NIL NIL "b" "example.com")) ((NIL NIL "b" "example.com")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL) 4 NIL NIL NIL NIL)"#
    );
    assert!(raw[m.part.find(&[1]).unwrap().body_range()].starts_with(b"From: b@"));
    assert_eq!(&raw[m.part.find(&[1, 1]).unwrap().body_range()], b"body\r\n");
    assert!(m.part.find(&[1, 2]).is_none());

    // multipart/digest: parts without Content-Type are message/rfc822.
    let raw = crlf(
        "From: a@example.com\nSubject: digest\nContent-Type: multipart/digest; boundary=\"d\"\n\n--d\n\nFrom: one@example.com\nSubject: one\n\nfirst\n--d\nContent-Type: text/plain\n\nnot a message\n--d--\n",
    );
    let m = ex(&raw);
    assert_eq!(
        bs(&m),
        r#"(("message" "rfc822" NIL NIL NIL "7bit" 44 (NIL "one" ((NIL NIL "one" "example.com")) ((NIL NIL "one" "example.com")) ((NIL NIL "one" "example.com")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 0 NIL NIL NIL NIL) "digest" ("boundary" "d") NIL NIL NIL)"#
    );
    assert_eq!(&raw[m.part.find(&[1, 1]).unwrap().body_range()], b"first");
}

#[test]
fn headers_only_no_final_newline_bare_lf() {
    let raw = b"From: a@example.com\r\nSubject: headers only\r\nContent-Type: text/plain; charset=us-ascii\r\n";
    let m = ex(raw);
    assert_eq!(m.header_len as usize, raw.len());
    assert_eq!(bs(&m), r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)"#);
    assert_eq!(m.envelope.subject.as_deref(), Some("headers only"));

    // Headers only, and the last header line has no line break.
    let raw = b"From: a@example.com\r\nSubject: cut";
    let m = ex(raw);
    assert_eq!(m.header_len as usize, raw.len());
    assert_eq!(m.envelope.subject.as_deref(), Some("cut"));

    let raw = b"From: a@example.com\r\nSubject: nofinal\r\n\r\nline1\r\nline2";
    let m = ex(raw);
    assert_eq!(bs(&m), r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 12 1 NIL NIL NIL NIL)"#);

    // Bare LF: real byte offsets (Dovecot reports CRLF-normalised sizes here: 8, not 7).
    let raw: &[u8] = b"From: a@example.com\nSubject: bare lf\nContent-Type: multipart/mixed; boundary=z\n\n--z\nContent-Type: text/plain\n\none\ntwo\n--z\n\nno header part\n--z--\n";
    let m = ex(raw);
    assert_eq!(
        bs(&m),
        r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 0 NIL NIL NIL NIL) "mixed" ("boundary" "z") NIL NIL NIL)"#
    );
    assert!(raw[..m.header_len as usize].ends_with(b"boundary=z\n\n"));
    let p1 = m.part.find(&[1]).unwrap();
    assert_eq!(&raw[p1.body_range()], b"one\ntwo");
    assert_eq!(&raw[p1.header_range()], b"Content-Type: text/plain\n\n");
    let p2 = m.part.find(&[2]).unwrap();
    assert_eq!(&raw[p2.header_range()], b"\n");
    assert_eq!(&raw[p2.body_range()], b"no header part");

    // A message that starts with the blank line has an empty header.
    let m = ex(b"\r\nbody without header\r\n");
    assert_eq!(m.header_len, 2);
    assert_eq!(env(&m.envelope), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
}

#[test]
fn broken_multiparts() {
    // Boundary never appears: one synthetic text/plain child over the whole body (Dovecot
    // reports an empty one; we keep the text readable).
    let raw = crlf(
        "From: a@example.com\nContent-Type: multipart/mixed; boundary=\"never\"\n\njust text\nno boundaries here\n",
    );
    let m = ex(&raw);
    assert_eq!(
        bs(&m),
        r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 31 2 NIL NIL NIL NIL) "mixed" ("boundary" "never") NIL NIL NIL)"#
    );
    assert_eq!(&raw[m.part.find(&[1]).unwrap().body_range()], b"just text\r\nno boundaries here\r\n");

    // No boundary parameter at all.
    let m = ex(&crlf("From: a@example.com\nContent-Type: multipart/mixed\n\ntext\n"));
    assert_eq!(
        bs(&m),
        r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL) "mixed" NIL NIL NIL NIL)"#
    );

    // Only a close delimiter: one empty part (as Dovecot).
    let m = ex(b"Content-Type: multipart/mixed; boundary=e\r\n\r\n--e--\r\n");
    assert_eq!(
        bs(&m),
        r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed" ("boundary" "e") NIL NIL NIL)"#
    );

    // A part whose header runs into the boundary, and an empty part (Dovecot: both size 0).
    let m =
        ex(&crlf("Content-Type: multipart/mixed; boundary=\"ab\"\n\n--ab\nContent-Type: text/plain\n--ab\n\n--ab--\n"));
    assert_eq!(
        bs(&m),
        r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed" ("boundary" "ab") NIL NIL NIL)"#
    );

    // A blank line directly followed by the boundary is the boundary's line break: the MIME
    // header excludes it (BODY[1.MIME] is "Content-Type: text/plain\r\n", as in Dovecot).
    let raw = b"Content-Type: multipart/mixed; boundary=e\r\n\r\n--e\r\nContent-Type: text/plain\r\n\r\n--e--\r\n";
    let m = ex(raw);
    assert_eq!(&raw[m.part.find(&[1]).unwrap().header_range()], b"Content-Type: text/plain\r\n");
    let raw = b"Content-Type: multipart/mixed; boundary=e\r\n\r\n--e\r\n\r\n--e\r\n\r\n\r\n--e--\r\n";
    let m = ex(raw);
    assert_eq!(&raw[m.part.find(&[1]).unwrap().header_range()], b"");
    assert_eq!(&raw[m.part.find(&[2]).unwrap().header_range()], b"\r\n");
    assert_eq!(m.part.find(&[2]).unwrap().size, 0);

    // Missing close delimiter: the last part runs to the end, line break included.
    let m =
        ex(&crlf("Content-Type: multipart/mixed; boundary=\"nc\"\n\n--nc\nContent-Type: text/plain\n\nunterminated\n"));
    assert_eq!(
        bs(&m),
        r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 1 NIL NIL NIL NIL) "mixed" ("boundary" "nc") NIL NIL NIL)"#
    );

    // Boundary prefix match and trailing whitespace (Dovecot: "--wjunk" is a delimiter too).
    let m = ex(&crlf(
        "Content-Type: multipart/mixed; boundary=\"w\"\n\n--w  \nContent-Type: text/plain\n\none\n--wjunk\n--w\nContent-Type: text/plain\n\ntwo\n--w--  \n",
    ));
    assert_eq!(m.part.children.len(), 3);
    assert_eq!(m.part.children.iter().map(|c| c.size).collect::<Vec<_>>(), [3, 0, 3]);

    // An outer boundary ends an inner multipart whose close delimiter is missing.
    let raw = crlf(
        "Content-Type: multipart/mixed; boundary=\"outer\"\n\n--outer\nContent-Type: multipart/alternative; boundary=\"inner\"\n\n--inner\n\nA\n--outer\n\nB\n--outer--\n",
    );
    let m = ex(&raw);
    assert_eq!(m.part.children.len(), 2);
    assert_eq!(&raw[m.part.find(&[1, 1]).unwrap().body_range()], b"A");
    assert_eq!(&raw[m.part.find(&[2]).unwrap().body_range()], b"B");

    // Invalid Content-Type: treated as absent (RFC 2045 §5.2); Dovecot sends "" "".
    let m = ex(&crlf("Content-Type: text; charset=\nContent-Transfer-Encoding: 8BIT\n\nx\n"));
    assert_eq!(bs(&m), r#"("text" "plain" ("charset" "us-ascii") NIL NIL "8BIT" 3 1 NIL NIL NIL NIL)"#);

    // Content-* without MIME-Version or Content-Type are ignored (Dovecot).
    let m = ex(&crlf("Content-Disposition: inline\nContent-Language: en\n\nx\n"));
    assert_eq!(bs(&m), r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 1 NIL NIL NIL NIL)"#);
    let m = ex(&crlf("MIME-Version: 1.0\nContent-Disposition: inline\n\nx\n"));
    assert_eq!(bs(&m), r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 1 NIL ("inline" NIL) NIL NIL)"#);
}

#[test]
fn deep_nesting_is_capped() {
    let n = 60;
    let mut s = String::from("Subject: deep\r\nContent-Type: multipart/mixed; boundary=\"x0z\"\r\n\r\n");
    for i in 1..n {
        s += &format!("--x{}z\r\nContent-Type: multipart/mixed; boundary=\"x{i}z\"\r\n\r\n", i - 1);
    }
    s += &format!("--x{}z\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ndeep\r\n", n - 1);
    for i in (0..n).rev() {
        s += &format!("--x{i}z--\r\n");
    }
    let m = ex(s.as_bytes());
    let mut depth = 0;
    let mut p = &m.part;
    while let Some(c) = p.children.first() {
        depth += 1;
        p = c;
    }
    assert_eq!(depth, MAX_DEPTH + 1);
    assert!(p.is_text());

    // Deep message/rfc822 nesting, no boundaries at all.
    let s = "Content-Type: message/rfc822\r\n\r\n".repeat(500) + "x";
    ex(s.as_bytes());
    // Many parts: capped.
    let s = format!("Content-Type: multipart/mixed; boundary=b\r\n\r\n{}", "--b\r\n\r\nx\r\n".repeat(MAX_PARTS + 100));
    let m = ex(s.as_bytes());
    assert!(m.part.children.len() < MAX_PARTS);
}

#[test]
fn envelope_details() {
    // 8-bit headers: UTF-8 kept; Latin-1 converted; last Subject wins; empty Sender → From.
    let raw = b"From: J\xc3\xbcrgen M\xc3\xbcller <j@example.de>\r\nTo: Fran\xe7ois <f@example.fr>, noangle@example.com, <only@angle.com>, broken\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\nSubject: second\r\nSender: \r\nMessage-ID: no-brackets@x\r\n\r\nbody\r\n";
    let m = ex(raw);
    let e = &m.envelope;
    assert_eq!(e.subject.as_deref(), Some("second"));
    assert_eq!(e.from[0].name.as_deref(), Some("Jürgen Müller"));
    assert_eq!(e.sender, e.from);
    assert_eq!(e.to[0].name.as_deref(), Some("François"));
    assert_eq!(
        e.to[3],
        Address { name: None, adl: None, mailbox: Some("broken".into()), host: Some("MISSING_DOMAIN".into()) }
    );
    assert!(e.has_8bit());
    assert_eq!(m.message_id.as_deref(), Some("no-brackets@x"));

    let raw = crlf(
        "From: (lead) \"Name (not comment)\" (c) <a(x)@example.com> (trail)\nTo:\nCc: Team: ;\nSender: Sender Name <sender@example.com>\nReply-To: A <a@x.y>, B <b@x.y>\nBcc: <@r1,@r2:x@y.z>, \"odd name\"@example.com, user@[127.0.0.1]\nSubject:  folded\n  subject   line\t\nMessage-ID:   <  spaced@x >\nIn-Reply-To: <a@b> <c@d>\n\nb\n",
    );
    let m = ex(&raw);
    assert_eq!(
        env(&m.envelope),
        r#"(NIL "folded subject line" (("Name (not comment)" NIL "a" "example.com")) (("Sender Name" NIL "sender" "example.com")) (("A" NIL "a" "x.y")("B" NIL "b" "x.y")) NIL ((NIL NIL "Team" NIL)(NIL NIL NIL NIL)) ((NIL "@r1,@r2" "x" "y.z")(NIL NIL "odd name" "example.com")(NIL NIL "user" "[127.0.0.1]")) "<a@b> <c@d>" "<  spaced@x >")"#
    );
    assert_eq!(m.message_id.as_deref(), Some("spaced@x"));

    // Quoted encoded-word names stay raw; NUL becomes U+FFFD.
    let m = ex(b"From: \"=?utf-8?q?J=C3=BCrgen?=\" <k@x.de>\r\nSubject: nul\x00byte\r\n\r\n");
    assert_eq!(m.envelope.from[0].name.as_deref(), Some("=?utf-8?q?J=C3=BCrgen?="));
    assert_eq!(m.envelope.subject.as_deref(), Some("nul\u{FFFD}byte"));
}

#[test]
fn dates_and_internal_date() {
    let fetched = 1_800_000_000; // 2027-01-15
    let received = "Received: from mx (mx [192.0.2.1]) by mail.example.com with ESMTPS id 1\r\n for <a@example.com>; Tue, 01 Jul 2025 00:07:00 +0000\r\nReceived: from older; Mon, 30 Jun 2025 23:00:00 +0000\r\n";
    let rx = Timestamp { unix: 1_751_328_420, offset_minutes: 0 };

    // Date present and plausible.
    let m = ex(format!("{received}Date: Wed, 2 Jul 2025 10:00:00 -0330\r\n\r\nx").as_bytes());
    let d = Timestamp { unix: 1_751_463_000, offset_minutes: -210 }; // 13:30 UTC
    assert_eq!(m.date, Some(d));
    assert_eq!(m.received, Some(rx));
    assert_eq!(m.internal_date(fetched), d);

    // Missing Date → first Received.
    let m = ex(format!("{received}Subject: x\r\n\r\nx").as_bytes());
    assert_eq!(m.date, None);
    assert_eq!(m.internal_date(fetched), rx);

    // Unparseable, impossible (31 Feb) or pre-1970 dates → Received.
    for bad in [
        "sometime yesterday",
        "Tue, 31 Feb 2015 10:00:00 +0000",
        "Thu, 13 Feb 1969 23:32:54 -0330",
        "32 Foo 2019 25:61:00",
        "",
    ] {
        let m = ex(format!("{received}Date: {bad}\r\n\r\nx").as_bytes());
        assert_eq!(m.date, None, "{bad}");
        assert_eq!(m.internal_date(fetched), rx, "{bad}");
    }
    // A date in the future (more than a day after fetching) → Received.
    let m = ex(format!("{received}Date: Fri, 1 Jan 2100 00:00:00 +0000\r\n\r\nx").as_bytes());
    assert!(m.date.is_some());
    assert_eq!(m.internal_date(fetched), rx);

    // Nothing usable → fetched_at.
    let m = ex(b"Subject: x\r\nReceived: garbage without date\r\n\r\nx");
    assert_eq!(m.received, None);
    assert_eq!(m.internal_date(fetched), Timestamp { unix: fetched, offset_minutes: 0 });
}

#[test]
fn header_fields_selection() {
    let h = b"Subject: a\r\n folded\r\nFrom: x@y\r\nX-Junk\r\nsubject : second\r\nTo: t@u\r\n\tmore\r\n\r\n";
    assert_eq!(header_fields(h, &[b"SUBJECT"], false), b"Subject: a\r\n folded\r\nsubject : second\r\n\r\n");
    assert_eq!(header_fields(h, &[b"to", b"from"], false), b"From: x@y\r\nTo: t@u\r\n\tmore\r\n\r\n");
    assert_eq!(header_fields(h, &[b"subject", b"to"], true), b"From: x@y\r\nX-Junk\r\n\r\n");
    assert_eq!(header_fields(h, &[b"nothing"], false), b"\r\n");
    // Bare LF kept as is; a last line without line break gets one.
    assert_eq!(header_fields(b"A: 1\nB: 2", &[b"b"], false), b"B: 2\r\n\r\n");
    assert_eq!(header_fields(b"", &[b"b"], true), b"\r\n");
}

#[test]
fn params_and_types() {
    let m = ex(&crlf(
        "Content-Type: text/plain; CHARSET=\"iso\\\"8859\" (comment); Name=\"a b.txt\"\nContent-Type: text/html\nContent-Transfer-Encoding: base64 (c)\n\nx\n",
    ));
    assert_eq!(
        bs(&m),
        r#"("text" "plain" ("CHARSET" "iso\"8859" "Name" "a b.txt") NIL NIL "base64" 3 1 NIL NIL NIL NIL)"#
    );
    // Real-world unquoted boundary with '=' in it.
    let m =
        ex(&crlf("Content-Type: multipart/mixed; boundary=----=_Part_1\n\n------=_Part_1\n\na\n------=_Part_1--\n"));
    assert_eq!(m.part.children.len(), 1);
    assert_eq!(m.part.params, [("boundary".to_string(), "----=_Part_1".to_string())]);
    // Broken RFC 2231 sequence passes through piece by piece.
    let m = ex(&crlf("Content-Type: application/x; a*0=x; a*2=z\n\n"));
    assert_eq!(m.part.params, [("a*0".to_string(), "x".to_string()), ("a*2".to_string(), "z".to_string())]);
}

#[test]
fn serialization_is_compact_and_rejects_garbage() {
    let m = ex(&crlf(FORWARD));
    let b = m.to_bytes();
    let j = serde_json::to_vec(&m).unwrap();
    assert!(b.len() * 2 < j.len(), "binary {} vs json {}", b.len(), j.len());
    assert_eq!(MessageMeta::from_bytes(&[]), None);
    assert_eq!(MessageMeta::from_bytes(&b[..b.len() - 1]), None);
    let mut wrong_version = b.clone();
    wrong_version[1] = wrong_version[1].wrapping_add(1);
    assert_eq!(MessageMeta::from_bytes(&wrong_version), None);
    // Every truncation and many corruptions decode to None or to something, never panic.
    for i in 0..b.len() {
        let _ = MessageMeta::from_bytes(&b[..i]);
        let mut c = b.clone();
        c[i] ^= 0x5a;
        let _ = MessageMeta::from_bytes(&c);
    }
}

#[test]
fn search_text_decodes_text_parts_only() {
    let raw = crlf(
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\nFrom: =?utf-8?b?SsO8cmdlbg==?= <j@x.de>\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\ncaf=E9 cr=\n=E8me\n--b\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\nPHA+aMOpbGxvPC9wPg==\n--b\nContent-Type: text/plain\nContent-Disposition: attachment; filename=a.txt\n\nsecret attachment\n--b--\n",
    );
    let (h, t) = search_text(&raw);
    assert!(h.contains("Subject: Grüße"), "{h}");
    assert!(h.contains("From: Jürgen"), "{h}");
    assert!(t.contains("café crème"), "{t}");
    assert!(t.contains("héllo"), "{t}");
    assert!(!t.contains("secret"), "{t}");
}

/// Tiny deterministic PRNG for the mutation sweep (no dev-dependency needed).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    const SNIPPETS: &[&[u8]] = &[
        b"\r\n--b1\r\n",
        b"\r\n--b1--\r\n",
        b"\n--XYZ\n",
        b"\r\n\r\n",
        b"\n",
        b"\r",
        b"\0",
        b"Content-Type: multipart/mixed; boundary=b1\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"--",
        b"\"",
        b"(",
        b"<",
        b":;",
        b"=?utf-8?b?",
        b"\xff\xfe",
        b"*0*=",
        b" \t",
    ];
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 => v.truncate(at),
            1 => {
                let s = SNIPPETS[rng.below(SNIPPETS.len())];
                v.splice(at..at, s.iter().copied());
            }
            2 if at < v.len() => v[at] = rng.next() as u8,
            _ => {
                let end = (at + rng.below(64)).min(v.len());
                v.drain(at..end);
            }
        }
    }
    v
}

#[test]
fn mutation_sweep_never_panics() {
    let bases: Vec<Vec<u8>> = [SIMPLE, ALTERNATIVE, MIXED, NESTED, FORWARD].iter().map(|s| crlf(s)).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..4000 {
        let raw = mutate(&mut rng, &bases[i % bases.len()]);
        let m = ex(&raw);
        let _ = search_text(&raw);
        let mut out = Vec::new();
        wire::body_structure(&mut out, &m.part, true);
        wire::envelope(&mut out, &m.envelope);
        let _ = header_fields(&raw[m.part.header_range()], &[b"subject", b"from"], i % 2 == 0);
    }
}

/// Every message of a gen-mail.py corpus (it includes the malformed kinds) extracts, round-trips
/// and has well-ordered offsets. The generator is vendored in tests/data; python3 is required.
#[test]
fn corpus_sweep() {
    let gen_mail = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gen-mail.py");
    let dir = std::env::temp_dir().join(format!("popbridge-mime-corpus-{}", std::process::id()));
    let status = std::process::Command::new("python3")
        .arg(&gen_mail)
        .args(["--count", "400", "--seed", "7", "--eml-dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("python3 runs");
    assert!(status.success(), "{} failed", gen_mail.display());
    let mut n = 0;
    let mut multipart = 0;
    let mut rfc822 = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let raw = std::fs::read(entry.unwrap().path()).unwrap();
        let m = ex(&raw);
        n += 1;
        multipart += usize::from(m.part.is_multipart());
        m.part.walk(&mut |p| rfc822 += usize::from(p.message.is_some()));
        assert!(m.envelope.from.first().is_some_and(|a| a.host.is_some()));
        assert!(m.internal_date(1_900_000_000).unix > 1_000_000_000);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(n, 400);
    assert!(multipart > 200 && rfc822 > 5, "multipart {multipart}, rfc822 {rfc822}");
}

#[test]
fn date_forms() {
    assert_eq!(
        date::parse("Mon, 2 Jan 06 15:04:05 MST"),
        Some(Timestamp { unix: 1_136_239_445, offset_minutes: -420 })
    );
    for (s, ok) in [
        ("Mon, 2 Jan 06 15:04:05 MST", true),
        ("2021-03-04T05:06:07Z", true),
        ("2021-03-04", false),
        ("Tue, 1 Jul 2025 09:00:00 +0000 (UTC)", true),
        ("1 Jul 2025 09:00:00 GMT", true),
        ("Tue, 01 Jul 2025 09:00:00 EST", true),
    ] {
        assert_eq!(date::parse(s).is_some(), ok, "{s}");
    }
}
