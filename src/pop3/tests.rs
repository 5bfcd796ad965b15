//! Wire-level tests of the client: bytes in, replies out, in every chunking.

use super::*;

fn client() -> Client {
    Client::new(Limits::default())
}

/// A client that has seen the greeting.
fn ready(limits: Limits) -> Client {
    let mut c = Client::new(limits);
    c.feed(b"+OK ready\r\n");
    let r = c.poll().unwrap().unwrap();
    assert_eq!((r.to, r.status), (Sent::Greeting, Status::Ok));
    c
}

fn send(c: &mut Client, cmd: Command<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    c.send(&cmd, &mut out);
    out
}

/// Feeds `wire` in pieces of `chunk` bytes, polling after each until more input is needed.
fn run(c: &mut Client, wire: &[u8], chunk: usize) -> Vec<Reply> {
    let mut replies = Vec::new();
    for piece in wire.chunks(chunk.max(1)) {
        c.feed(piece);
        while let Some(r) = c.poll().unwrap() {
            replies.push(r);
        }
    }
    replies
}

/// Feeds `wire` split at the given offsets (ascending), polling after each piece.
fn run_split(c: &mut Client, wire: &[u8], cuts: &[usize]) -> Vec<Reply> {
    let mut replies = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain([wire.len()].iter()) {
        c.feed(&wire[start..cut]);
        start = cut;
        while let Some(r) = c.poll().unwrap() {
            replies.push(r);
        }
    }
    replies
}

fn data(r: &Reply) -> &[u8] {
    match &r.body {
        Body::Data(d) => d,
        other => panic!("expected data, got {other:?}"),
    }
}

fn one(c: &mut Client, wire: &[u8]) -> Reply {
    let mut r = run(c, wire, wire.len());
    assert_eq!(r.len(), 1, "{r:?}");
    r.remove(0)
}

#[test]
fn greeting_with_apop_timestamp_then_apop() {
    let mut c = client();
    assert_eq!(c.in_flight(), 1);
    let g = one(&mut c, b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n");
    assert_eq!((g.to, g.status, &g.code), (Sent::Greeting, Status::Ok, &None));
    assert_eq!(g.text, "POP3 server ready <1896.697170952@dbc.mtview.ca.us>");
    assert_eq!(g.body, Body::None);
    assert_eq!(c.in_flight(), 0);
    let ts = apop_timestamp(&g.text).unwrap();
    assert_eq!(ts, "<1896.697170952@dbc.mtview.ca.us>");
    let out = send(&mut c, Command::Apop { user: "mrose", timestamp: ts, password: "tanstaaf" });
    assert_eq!(out, b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n");
    let r = one(&mut c, b"+OK mrose's maildrop has 2 messages (320 octets)\r\n");
    assert_eq!((r.to, r.status), (Sent::Apop, Status::Ok));
}

#[test]
fn greeting_refused_with_code() {
    let mut c = client();
    let g = one(&mut c, b"-ERR [SYS/TEMP] too many connections\r\n");
    assert_eq!(g.status, Status::Err);
    assert_eq!(g.code, Some(RespCode::SysTemp));
    assert_eq!(g.text, "too many connections");
}

#[test]
fn capa_dovecot_on_the_wire() {
    let mut c = ready(Limits::default());
    assert_eq!(send(&mut c, Command::Capa), b"CAPA\r\n");
    let wire = b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN LOGIN CRAM-MD5\r\n.\r\n";
    let r = one(&mut c, wire);
    assert_eq!((r.to, r.status, r.text.as_str()), (Sent::Capa, Status::Ok, ""));
    let caps = parse_capa(data(&r));
    assert!(caps.top && caps.uidl && caps.resp_codes && caps.pipelining);
    assert!(caps.auth_resp_code && caps.stls && caps.user);
    assert_eq!(caps.sasl, ["PLAIN", "LOGIN", "CRAM-MD5"]);
    assert_eq!(caps.lines.len(), 9);

    // Capabilities RFC 2449 adds.
    send(&mut c, Command::Capa);
    let r =
        one(&mut c, b"+OK Capability list follows\r\nLOGIN-DELAY 900\r\nEXPIRE 30 USER\r\nIMPLEMENTATION x\r\n.\r\n");
    let caps = parse_capa(data(&r));
    assert_eq!(caps.login_delay, Some(900));
    assert_eq!(caps.expire, Some(Expire::Days(30)));
    for (line, want) in [(&b"EXPIRE 0"[..], Expire::Days(0)), (b"EXPIRE NEVER", Expire::Never)] {
        send(&mut c, Command::Capa);
        let mut wire = b"+OK\r\n".to_vec();
        wire.extend_from_slice(line);
        wire.extend_from_slice(b"\r\n.\r\n");
        let r = one(&mut c, &wire);
        assert_eq!(parse_capa(data(&r)).expire, Some(want));
    }
    // Servers without CAPA answer -ERR: one line, no body.
    send(&mut c, Command::Capa);
    let r = one(&mut c, b"-ERR unknown command\r\n");
    assert_eq!((r.status, &r.body), (Status::Err, &Body::None));
}

fn pipelined_wire() -> Vec<u8> {
    let mut w = Vec::new();
    w.extend_from_slice(b"+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n3 x\r\n.\r\n");
    w.extend_from_slice(b"+OK 3 messages (1000 octets)\r\n1 120\r\n2 200\r\n3 680\r\n.\r\n");
    w.extend_from_slice(b"+OK 120 octets\r\nSubject: one\r\n\r\nhello\r\n..\r\n.\r\n");
    w.extend_from_slice(b"-ERR [SYS/TEMP] no such message right now\r\n");
    w.extend_from_slice(b"+OK\r\nSubject: three\r\n\r\n...dots\r\n.\r\n");
    w
}

fn pipelined_client() -> Client {
    let mut c = ready(Limits::default());
    let mut out = Vec::new();
    for cmd in [Command::Uidl(None), Command::List(None), Command::Retr(1), Command::Retr(2), Command::Retr(3)] {
        c.send(&cmd, &mut out);
    }
    assert_eq!(out, b"UIDL\r\nLIST\r\nRETR 1\r\nRETR 2\r\nRETR 3\r\n");
    assert_eq!(c.in_flight(), 5);
    c
}

#[test]
fn pipelined_replies_in_one_feed_and_byte_by_byte() {
    let wire = pipelined_wire();
    let mut c = pipelined_client();
    let all = run(&mut c, &wire, wire.len());
    assert_eq!(c.in_flight(), 0);
    assert_eq!(c.buffered(), 0);
    assert_eq!(all.len(), 5);
    let tags: Vec<_> = all.iter().map(|r| r.to).collect();
    assert_eq!(tags, [Sent::Uidl(None), Sent::List(None), Sent::Retr(1), Sent::Retr(2), Sent::Retr(3)]);
    assert_eq!(
        parse_uidl(data(&all[0])).unwrap(),
        [(1, "whqtswO00WBw418f9t5JxYwZ".to_owned()), (2, "QhdPYR:00WBw1Ph7x7".to_owned()), (3, "x".to_owned())]
    );
    assert_eq!(all[1].text, "3 messages (1000 octets)");
    assert_eq!(parse_list(data(&all[1])).unwrap(), [(1, 120), (2, 200), (3, 680)]);
    assert_eq!(data(&all[2]), b"Subject: one\r\n\r\nhello\r\n.\r\n");
    assert_eq!(all[3].status, Status::Err);
    assert_eq!(all[3].code, Some(RespCode::SysTemp));
    assert_eq!(all[3].body, Body::None);
    assert_eq!(data(&all[4]), b"Subject: three\r\n\r\n..dots\r\n");

    for chunk in 1..=wire.len() {
        let mut c = pipelined_client();
        assert_eq!(run(&mut c, &wire, chunk), all, "chunk size {chunk}");
        assert_eq!(c.in_flight(), 0);
    }
}

#[test]
fn dot_stuffing() {
    let mut c = ready(Limits::default());
    send(&mut c, Command::Retr(1));
    // On the wire: "..", "...", "..x", ".x" (unstuffed by a sloppy server: the dot still goes),
    // "x.", "..\r\n" just before the terminator.
    let r = one(&mut c, b"+OK\r\n..\r\n...\r\n..x\r\n.x\r\nx.\r\n. \r\n..\r\n.\r\n");
    assert_eq!(data(&r), b".\r\n..\r\n.x\r\nx\r\nx.\r\n \r\n.\r\n");

    // An empty body.
    send(&mut c, Command::Retr(2));
    let r = one(&mut c, b"+OK 0 octets\r\n.\r\n");
    assert_eq!(r.body, Body::Data(Vec::new()));
    // TOP with 0 lines: headers and the blank line.
    send(&mut c, Command::Top(1, 0));
    let r = one(&mut c, b"+OK\r\nSubject: x\r\n\r\n.\r\n");
    assert_eq!((r.to, data(&r)), (Sent::Top(1, 0), &b"Subject: x\r\n\r\n"[..]));
}

#[test]
fn terminator_split_at_every_position() {
    let body_wire = b"+OK\r\nab\r\n..\r\n.\r\n";
    let mut wire = body_wire.to_vec();
    wire.extend_from_slice(b"+OK done\r\n");
    let mut reference = None;
    for a in 0..=wire.len() {
        for b in a..=wire.len() {
            let mut c = ready(Limits::default());
            send(&mut c, Command::Retr(1));
            send(&mut c, Command::Noop);
            let got = run_split(&mut c, &wire, &[a, b]);
            assert_eq!(got.len(), 2, "cuts {a} {b}");
            assert_eq!(data(&got[0]), b"ab\r\n.\r\n");
            assert_eq!((got[1].to, got[1].text.as_str()), (Sent::Noop, "done"));
            match &reference {
                None => reference = Some(got),
                Some(r) => assert_eq!(&got, r),
            }
        }
    }
}

#[test]
fn bare_lf_server() {
    let mut c = client();
    let g = one(&mut c, b"+OK hello\n");
    assert_eq!(g.text, "hello");
    send(&mut c, Command::Retr(1));
    send(&mut c, Command::Uidl(None));
    send(&mut c, Command::Quit);
    let wire = b"+OK 5\nline1\n..dot\n\nmixed\r\nlast\n.\n+OK\n1 a\n2 b\n.\n+OK bye\n";
    let reference = run(&mut c, wire, wire.len());
    assert_eq!(reference.len(), 3);
    assert_eq!(data(&reference[0]), b"line1\r\n.dot\r\n\r\nmixed\r\nlast\r\n");
    assert_eq!(data(&reference[1]), b"1 a\r\n2 b\r\n");
    assert_eq!(reference[2].text, "bye");
    for chunk in 1..wire.len() {
        let mut c = client();
        run(&mut c, b"+OK hello\n", 3);
        send(&mut c, Command::Retr(1));
        send(&mut c, Command::Uidl(None));
        send(&mut c, Command::Quit);
        assert_eq!(run(&mut c, wire, chunk), reference);
    }
}

#[test]
fn lone_cr_and_nul_are_data() {
    let wire = b"+OK\r\na\rb\r\n\r\r\n\0\0x\0\r\n\r\n.\r\rx\r\n.\r\n";
    let want = b"a\rb\r\n\r\r\n\0\0x\0\r\n\r\n\r\rx\r\n";
    for chunk in 1..=wire.len() {
        let mut c = ready(Limits::default());
        send(&mut c, Command::Retr(1));
        let r = run(&mut c, wire, chunk);
        assert_eq!(data(&r[0]), want, "chunk {chunk}");
    }
    // A CR at the end of one feed and the LF at the start of the next: one CRLF, not two.
    let mut c = ready(Limits::default());
    send(&mut c, Command::Retr(1));
    let r = run_split(&mut c, b"+OK\r\nab\r\ncd\r\n.\r\n", &[7, 8, 11, 12]);
    assert_eq!(data(&r[0]), b"ab\r\ncd\r\n");
    // A CR at the end of a feed followed by more line: kept as data.
    let mut c = ready(Limits::default());
    send(&mut c, Command::Retr(1));
    let r = run_split(&mut c, b"+OK\r\nab\rcd\n.\r\n", &[8]);
    assert_eq!(data(&r[0]), b"ab\rcd\r\n");
    // 8-bit bytes and invalid UTF-8 in the body are kept; in the status text they go lossy.
    let mut c = ready(Limits::default());
    send(&mut c, Command::Retr(1));
    let r = one(&mut c, b"+OK caf\xe9\r\n\xff\xfe\x80\r\n.\r\n");
    assert_eq!(r.text, "caf\u{fffd}");
    assert_eq!(data(&r), b"\xff\xfe\x80\r\n");
}

#[test]
fn response_codes() {
    let mut c = ready(Limits::default());
    send(&mut c, Command::User("bob"));
    send(&mut c, Command::Pass("pw"));
    send(&mut c, Command::Stat);
    send(&mut c, Command::Dele(1));
    send(&mut c, Command::Retr(1));
    let r = run(
        &mut c,
        b"+OK [X-NICE/ONE] hi\r\n-ERR [IN-USE] Do you have another POP session running?\r\n\
          -ERR [LOGIN-DELAY] wait\r\n-err [AUTH]\r\n+OK [SYS/PERM] odd but allowed\r\nbody\r\n.\r\n",
        1000,
    );
    assert_eq!(r.len(), 5);
    assert_eq!((r[0].status, &r[0].code), (Status::Ok, &Some(RespCode::Other("X-NICE/ONE".into()))));
    assert_eq!(r[0].text, "hi");
    assert_eq!((r[1].status, &r[1].code), (Status::Err, &Some(RespCode::InUse)));
    assert_eq!(r[1].text, "Do you have another POP session running?");
    assert_eq!(r[2].code, Some(RespCode::LoginDelay));
    assert_eq!((r[3].status, &r[3].code, r[3].text.as_str()), (Status::Err, &Some(RespCode::Auth), ""));
    assert_eq!((&r[4].code, data(&r[4])), (&Some(RespCode::SysPerm), &b"body\r\n"[..]));

    send(&mut c, Command::Noop);
    let r = one(&mut c, b"-ERR [unterminated code\r\n");
    assert_eq!((&r.code, r.text.as_str()), (&None, "[unterminated code"));
}

#[test]
fn sasl_login_exchange() {
    let mut c = ready(Limits::default());
    assert_eq!(send(&mut c, Command::AuthLogin), b"AUTH LOGIN\r\n");
    let r = one(&mut c, b"+ VXNlcm5hbWU6\r\n");
    assert_eq!((r.to, r.status, r.text.as_str()), (Sent::Auth, Status::Continue, "VXNlcm5hbWU6"));
    assert_eq!(r.code, None);
    assert_eq!(c.in_flight(), 0);
    assert_eq!(send(&mut c, Command::SaslResponse(b"tim")), b"dGlt\r\n");
    let r = one(&mut c, b"+ UGFzc3dvcmQ6\r\n");
    assert_eq!((r.to, r.status, r.text.as_str()), (Sent::SaslResponse, Status::Continue, "UGFzc3dvcmQ6"));
    assert_eq!(send(&mut c, Command::SaslResponse(b"tanstaaftanstaaf")), b"dGFuc3RhYWZ0YW5zdGFhZg==\r\n");
    let r = one(&mut c, b"+OK Logged in.\r\n");
    assert_eq!((r.to, r.status, r.text.as_str()), (Sent::SaslResponse, Status::Ok, "Logged in."));

    // Cancelling: "*" and the server's -ERR.
    send(&mut c, Command::AuthLogin);
    one(&mut c, b"+ VXNlcm5hbWU6\r\n");
    assert_eq!(send(&mut c, Command::SaslCancel), b"*\r\n");
    let r = one(&mut c, b"-ERR Authentication aborted\r\n");
    assert_eq!((r.to, r.status), (Sent::SaslResponse, Status::Err));
}

#[test]
fn sasl_plain_ok() {
    let mut c = ready(Limits::default());
    let out = send(&mut c, Command::AuthPlain { authzid: None, user: "tim", password: "tanstaaftanstaaf" });
    assert_eq!(out, b"AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n");
    let r = one(&mut c, b"+OK Logged in.\r\n");
    assert_eq!((r.to, r.status), (Sent::Auth, Status::Ok));
    // Failure with RFC 3206 code.
    send(&mut c, Command::AuthPlain { authzid: None, user: "tim", password: "x" });
    let r = one(&mut c, b"-ERR [AUTH] Authentication failed.\r\n");
    assert_eq!((r.status, r.code), (Status::Err, Some(RespCode::Auth)));
}

#[test]
fn xoauth2_failure_continuation() {
    let mut c = ready(Limits::default());
    let out = send(&mut c, Command::AuthXoauth2 { user: "someuser@example.com", token: "tok" });
    assert!(out.starts_with(b"AUTH XOAUTH2 dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB0b2sBAQ=="));
    let challenge = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==";
    let r = one(&mut c, format!("+ {challenge}\r\n").as_bytes());
    assert_eq!((r.to, r.status, r.text.as_str()), (Sent::Auth, Status::Continue, challenge));
    // The client answers with an empty line; the server then says -ERR.
    assert_eq!(send(&mut c, Command::SaslResponse(b"")), b"\r\n");
    let r = one(&mut c, b"-ERR [AUTH] Invalid credentials (Failure)\r\n");
    assert_eq!((r.to, r.status, r.code), (Sent::SaslResponse, Status::Err, Some(RespCode::Auth)));
    assert_eq!(r.text, "Invalid credentials (Failure)");
}

#[test]
fn ok_is_not_a_continuation() {
    for (wire, status, text) in [
        (&b"+OK\r\n"[..], Status::Ok, ""),
        (b"+ok fine\r\n", Status::Ok, "fine"),
        (b"+ OK\r\n", Status::Continue, "OK"),
        (b"+\r\n", Status::Continue, ""),
        (b"+\n", Status::Continue, ""),
        (b"+ \r\n", Status::Continue, ""),
        (b"+ VXNlcm5hbWU6 \r\n", Status::Continue, "VXNlcm5hbWU6"),
    ] {
        let mut c = ready(Limits::default());
        send(&mut c, Command::AuthLogin);
        let r = one(&mut c, wire);
        assert_eq!((r.status, r.text.as_str()), (status, text), "{wire:?}");
    }
    // A continuation where none may come is a protocol error.
    for cmd in [Command::Noop, Command::User("u"), Command::Retr(1), Command::Stls] {
        let mut c = ready(Limits::default());
        send(&mut c, cmd);
        c.feed(b"+ x\r\n");
        assert_eq!(c.poll(), Err(ProtocolError::BadStatus { line: "+ x".into() }));
    }
    let mut c = client();
    c.feed(b"+ hello\r\n");
    assert!(matches!(c.poll(), Err(ProtocolError::BadStatus { .. })));
}

#[test]
fn bad_status_is_fatal_and_sticky() {
    let mut c = client();
    c.feed(b"HTTP/1.1 400 Bad Request\r\n");
    let e = c.poll().unwrap_err();
    assert_eq!(e, ProtocolError::BadStatus { line: "HTTP/1.1 400 Bad Request".into() });
    assert!(e.to_string().contains("HTTP/1.1 400"), "{e}");
    // Dead: the same error again, whatever comes next.
    c.feed(b"+OK\r\n");
    assert_eq!(c.poll().unwrap_err(), e);
    // Long garbage is shortened for display.
    let mut c = client();
    let mut long = vec![b'x'; 500];
    long.extend_from_slice(b"\r\n");
    c.feed(&long);
    let ProtocolError::BadStatus { line } = c.poll().unwrap_err() else { panic!() };
    assert_eq!(line.chars().count(), 101);
    assert!(line.ends_with('…'));
}

#[test]
fn overlong_status_line_bounded() {
    let limits = Limits::default();
    let chunk = vec![b'a'; 16 * 1024];
    // Fed in read-sized chunks without polling: memory stays near max_line.
    let mut c = client();
    for _ in 0..64 {
        c.feed(&chunk);
        assert!(c.buffered() <= limits.max_line + 3, "{}", c.buffered());
    }
    assert_eq!(c.poll().unwrap_err(), ProtocolError::LineTooLong { limit: limits.max_line });
    // Polled after each chunk: the error comes as soon as the limit is passed.
    let mut c = client();
    c.feed(&chunk[..8 * 1024]);
    assert_eq!(c.poll().unwrap(), None);
    c.feed(&chunk);
    assert!(matches!(c.poll(), Err(ProtocolError::LineTooLong { .. })));
    // One 1 MB feed.
    let mut c = ready(limits);
    send(&mut c, Command::Noop);
    c.feed(&vec![b'+'; 1 << 20]);
    assert!(c.buffered() <= limits.max_line + 3);
    assert!(matches!(c.poll(), Err(ProtocolError::LineTooLong { .. })));
    // A complete line: exactly max_line is fine, one more is not (line ends not counted).
    let small = Limits { max_line: 20, ..Limits::default() };
    let mut c = Client::new(small);
    let r = one(&mut c, b"+OK 3456789012345678\r\n");
    assert_eq!(r.text, "3456789012345678");
    let mut c = Client::new(small);
    c.feed(b"+OK 34567890123456789\r\n");
    assert_eq!(c.poll().unwrap_err(), ProtocolError::LineTooLong { limit: 20 });
    // Body lines have no line limit.
    let mut c = ready(small);
    send(&mut c, Command::Retr(1));
    let mut wire = b"+OK\r\n".to_vec();
    wire.extend_from_slice(&[b'b'; 1000]);
    wire.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(data(&one(&mut c, &wire)).len(), 1002);
}

#[test]
fn oversized_body_then_next_reply() {
    let mut body = Vec::new();
    for i in 0..100 {
        body.extend_from_slice(format!("line {i:04} of a long message\r\n").as_bytes());
    }
    // The second message is exactly at the limit: 34 whole lines.
    let fits = 34 * 29;
    let limits = Limits { max_line: 100, max_body: fits as u64 };
    let mut wire = b"+OK big\r\n".to_vec();
    wire.extend_from_slice(&body);
    wire.extend_from_slice(b".\r\n+OK fits\r\n");
    wire.extend_from_slice(&body[..fits]);
    wire.extend_from_slice(b".\r\n+OK\r\n");
    for chunk in [1, 7, 64, 1000, wire.len()] {
        let mut c = ready(limits);
        send(&mut c, Command::Retr(1));
        send(&mut c, Command::Retr(2));
        send(&mut c, Command::Noop);
        let r = run(&mut c, &wire, chunk);
        assert_eq!(r.len(), 3, "chunk {chunk}: {r:?}");
        assert_eq!(r[0].body, Body::Oversized { bytes_seen: body.len() as u64 });
        assert_eq!((r[0].to, r[0].text.as_str()), (Sent::Retr(1), "big"));
        assert_eq!(data(&r[1]), &body[..fits]);
        assert_eq!((r[2].to, r[2].status), (Sent::Noop, Status::Ok));
    }
}

#[test]
fn eof_handling() {
    // Mid-body.
    let mut c = ready(Limits::default());
    send(&mut c, Command::Retr(7));
    c.feed(b"+OK\r\nSubject: x\r\n");
    assert_eq!(c.poll().unwrap(), None);
    c.feed_eof();
    let e = c.poll().unwrap_err();
    assert_eq!(e, ProtocolError::Eof { waiting_for: Sent::Retr(7), in_body: true });
    assert_eq!(e.to_string(), "the POP3 server closed the connection in the middle of its answer to RETR 7");
    // Mid-body, stopped on an undecided "." at line start.
    let mut c = ready(Limits::default());
    send(&mut c, Command::Retr(1));
    c.feed(b"+OK\r\nx\r\n.\r");
    c.feed_eof();
    assert_eq!(c.poll().unwrap_err(), ProtocolError::Eof { waiting_for: Sent::Retr(1), in_body: true });
    // Mid-status.
    let mut c = client();
    c.feed(b"+O");
    c.feed_eof();
    let e = c.poll().unwrap_err();
    assert_eq!(e, ProtocolError::Eof { waiting_for: Sent::Greeting, in_body: false });
    assert_eq!(e.to_string(), "the POP3 server closed the connection without answering the greeting");
    // Nothing at all after a command.
    let mut c = ready(Limits::default());
    send(&mut c, Command::Quit);
    c.feed_eof();
    assert_eq!(c.poll().unwrap_err(), ProtocolError::Eof { waiting_for: Sent::Quit, in_body: false });
    // A complete reply before EOF is still delivered; then a clean end.
    let mut c = ready(Limits::default());
    send(&mut c, Command::Quit);
    c.feed(b"+OK bye\r\n");
    c.feed_eof();
    assert_eq!(c.poll().unwrap().unwrap().text, "bye");
    assert_eq!(c.poll().unwrap(), None);
    assert_eq!(c.poll().unwrap(), None);
}

#[test]
fn unsolicited_bytes() {
    // Fed while nothing is expected.
    let mut c = ready(Limits::default());
    c.feed(b"+OK surprise\r\n");
    assert!(c.buffered() > 0);
    // Even if a command is sent before polling, the bytes came unasked.
    send(&mut c, Command::Noop);
    assert_eq!(c.poll().unwrap_err(), ProtocolError::Unsolicited);
    // Extra bytes after the expected reply: the reply first, then the error.
    let mut c = ready(Limits::default());
    send(&mut c, Command::Noop);
    c.feed(b"+OK\r\n+OK extra\r\n");
    assert!(c.poll().unwrap().is_some());
    assert_eq!(c.poll().unwrap_err(), ProtocolError::Unsolicited);
    // Bounded, even when polled never.
    let mut c = ready(Limits::default());
    for _ in 0..100 {
        c.feed(&[b'x'; 4096]);
    }
    assert!(c.buffered() <= Limits::default().max_line);
}

#[test]
fn stls_leftover_plaintext_is_visible() {
    let mut c = ready(Limits::default());
    assert_eq!(send(&mut c, Command::Stls), b"STLS\r\n");
    c.feed(b"+OK Begin TLS negotiation\r\nCAPA\r\n");
    let r = c.poll().unwrap().unwrap();
    assert_eq!((r.to, r.status), (Sent::Stls, Status::Ok));
    assert_eq!(c.buffered(), 6, "injected bytes must be visible to the caller");
    // Clean case.
    let mut c = ready(Limits::default());
    send(&mut c, Command::Stls);
    c.feed(b"+OK Begin TLS negotiation\r\n");
    c.poll().unwrap().unwrap();
    assert_eq!(c.buffered(), 0);
}

#[test]
fn invalid_argument_is_not_sent() {
    let mut c = ready(Limits::default());
    let mut out = b"x".to_vec();
    assert_eq!(
        c.try_send(&Command::User("bob\r\nDELE 1"), &mut out),
        Err(ProtocolError::InvalidArgument { command: "USER" })
    );
    assert_eq!(out, b"x");
    assert_eq!(c.in_flight(), 0);
    assert_eq!(c.try_send(&Command::User("bob"), &mut out), Ok(Sent::User));
    assert_eq!(c.in_flight(), 1);
    // `send` cannot return the error: the client fails instead, and says why.
    let mut c = ready(Limits::default());
    let out = send(&mut c, Command::Pass("a\nb"));
    assert!(out.is_empty());
    let e = c.poll().unwrap_err();
    assert_eq!(e, ProtocolError::InvalidArgument { command: "PASS" });
    assert!(!e.to_string().contains("a\nb"));
}

#[test]
fn single_line_replies_and_many_pipelined() {
    let mut c = ready(Limits::default());
    send(&mut c, Command::Stat);
    send(&mut c, Command::List(Some(2)));
    send(&mut c, Command::Uidl(Some(2)));
    send(&mut c, Command::Retr(9));
    send(&mut c, Command::Top(2, 5));
    let r =
        run(&mut c, b"+OK 2 320\r\n+OK 2 200\r\n+OK 2 QhdPYR:00WBw1Ph7x7\r\n-ERR no such message\r\n-ERR no\r\n", 3);
    assert_eq!(parse_stat(&r[0].text), Some((2, 320)));
    assert_eq!(parse_list_line(&r[1].text), Some((2, 200)));
    assert_eq!(parse_uidl_line(&r[2].text), Some((2, "QhdPYR:00WBw1Ph7x7".into())));
    assert_eq!((r[3].to, r[3].status, &r[3].body), (Sent::Retr(9), Status::Err, &Body::None));
    assert_eq!((r[4].to, r[4].status), (Sent::Top(2, 5), Status::Err));

    // 10 000 DELE replies in one feed.
    let n = 10_000;
    let mut out = Vec::new();
    for i in 1..=n {
        c.send(&Command::Dele(i), &mut out);
    }
    assert_eq!(c.in_flight(), n as usize);
    let wire = b"+OK message deleted\r\n".repeat(n as usize);
    let r = run(&mut c, &wire, 16 * 1024);
    assert_eq!(r.len(), n as usize);
    assert_eq!(r[n as usize - 1].to, Sent::Dele(n));
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn sent_display() {
    assert_eq!(Sent::Retr(4).to_string(), "RETR 4");
    assert_eq!(Sent::Top(4, 0).to_string(), "TOP 4 0");
    assert_eq!(Sent::List(None).to_string(), "LIST");
    assert_eq!(Sent::Uidl(Some(3)).to_string(), "UIDL 3");
    assert_eq!(
        ProtocolError::LineTooLong { limit: 8192 }.to_string(),
        "the POP3 server sent a response line longer than 8192 bytes"
    );
}

/// xorshift64*: deterministic, no dependency; the one the integration tests use.
#[path = "../../tests/util/rng.rs"]
mod rng;
use rng::Rng;

/// What the client must return for a message: a final line end added if missing, and every
/// bare LF made CRLF.
fn normalized(msg: &[u8]) -> Vec<u8> {
    let mut m = msg.to_vec();
    if !m.is_empty() && m.last() != Some(&b'\n') {
        m.extend_from_slice(b"\r\n");
    }
    let mut out = Vec::new();
    for (i, &b) in m.iter().enumerate() {
        if b == b'\n' && (i == 0 || m[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// What a server puts on the wire: the lines as they are (or CRLF-normalized first, like most
/// servers do), dot-stuffed, then the terminator.
fn server_wire(msg: &[u8], normalize_first: bool, bare_lf_terminator: bool) -> Vec<u8> {
    let mut m = if normalize_first { normalized(msg) } else { msg.to_vec() };
    if !m.is_empty() && m.last() != Some(&b'\n') {
        m.extend_from_slice(b"\r\n");
    }
    let mut w = b"+OK message follows\r\n".to_vec();
    for line in m.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            w.push(b'.');
        }
        w.extend_from_slice(line);
    }
    w.extend_from_slice(if bare_lf_terminator { b".\n" } else { b".\r\n" });
    w
}

#[test]
fn random_bodies_in_random_chunks() {
    const ALPHABET: &[u8] = b"..\r\r\n\n\0ax \xff";
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000 {
        let max_body = if round % 5 == 0 { 1 + rng.below(40) as u64 } else { DEFAULT_MAX_BODY };
        let limits = Limits { max_line: 64, max_body };
        let mut c = ready(limits);
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for n in 1..=1 + rng.below(4) as u32 {
            let len = rng.below(80);
            let msg: Vec<u8> = (0..len).map(|_| ALPHABET[rng.below(ALPHABET.len())]).collect();
            c.send(&Command::Retr(n), &mut Vec::new());
            wire.extend_from_slice(&server_wire(&msg, rng.below(2) == 0, rng.below(4) == 0));
            let body = normalized(&msg);
            want.push(if body.len() as u64 > max_body {
                Body::Oversized { bytes_seen: body.len() as u64 }
            } else {
                Body::Data(body)
            });
            if rng.below(3) == 0 {
                c.send(&Command::Noop, &mut Vec::new());
                wire.extend_from_slice(b"+OK\r\n");
                want.push(Body::None);
            }
        }
        let mut cuts: Vec<usize> = (0..rng.below(8)).map(|_| rng.below(wire.len() + 1)).collect();
        if rng.below(4) == 0 {
            cuts = (1..wire.len()).collect(); // byte by byte
        }
        cuts.sort_unstable();
        let got: Vec<Body> = run_split(&mut c, &wire, &cuts).into_iter().map(|r| r.body).collect();
        assert_eq!(got, want, "round {round}, wire {:?}", String::from_utf8_lossy(&wire));
        assert_eq!((c.in_flight(), c.buffered()), (0, 0));
    }
}

#[test]
fn random_long_bodies_in_random_chunks() {
    // Long, mostly ordinary messages: exercises the block-wise skipping of ordinary lines, the
    // scan window and the in-place scan of `feed`, at chunk sizes a socket would produce.
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for round in 0..300 {
        let mut msg = Vec::new();
        let size = rng.below(40_000);
        while msg.len() < size {
            if rng.below(20) == 0 {
                msg.push(b'.');
            }
            for _ in 0..rng.below(120) {
                msg.push(match rng.below(200) {
                    0 => b'\r',
                    1 => b'\0',
                    2 => b'.',
                    _ => b'a' + (rng.below(26) as u8),
                });
            }
            match rng.below(50) {
                0 => msg.push(b'\n'),
                1 => msg.extend_from_slice(b"\r\r\n"),
                _ => msg.extend_from_slice(b"\r\n"),
            }
        }
        let wire = server_wire(&msg, false, false);
        let want = normalized(&msg);
        let mut c = ready(Limits::default());
        c.send(&Command::Retr(1), &mut Vec::new());
        c.send(&Command::Noop, &mut Vec::new());
        let mut full = wire.clone();
        full.extend_from_slice(b"+OK after\r\n");
        let mut cuts = Vec::new();
        let mut at = 0;
        loop {
            at += 1 + rng.below([16, 1500, 16 * 1024, 70_000][round % 4]);
            if at >= full.len() {
                break;
            }
            cuts.push(at);
        }
        let r = run_split(&mut c, &full, &cuts);
        assert_eq!(r.len(), 2, "round {round}");
        assert!(data(&r[0]) == want.as_slice(), "round {round}: body differs");
        assert_eq!(r[1].text, "after");
    }
}

#[test]
fn huge_oversized_body_keeps_memory_bounded() {
    let limits = Limits { max_line: 1024, max_body: 1 << 20 };
    let mut c = ready(limits);
    send(&mut c, Command::Retr(1));
    send(&mut c, Command::Noop);
    // The server even claims the size up front; the reservation is capped by max_body.
    c.feed(b"+OK 60000000 octets\r\n");
    assert_eq!(c.poll().unwrap(), None);
    let mut line = vec![b'x'; 76];
    line.extend_from_slice(b"\r\n..stuffed\r\n");
    let chunk = line.repeat(16 * 1024 / line.len());
    let mut total = 0u64;
    while total < 8 << 20 {
        c.feed(&chunk);
        total += chunk.len() as u64 - 16 * 1024 / line.len() as u64; // one dot per repeat
        assert_eq!(c.poll().unwrap(), None);
        assert!(c.buffered() <= 2, "{}", c.buffered());
    }
    c.feed(b".\r\n+OK\r\n");
    let r = c.poll().unwrap().unwrap();
    assert_eq!(r.body, Body::Oversized { bytes_seen: total });
    assert_eq!(c.poll().unwrap().unwrap().to, Sent::Noop);
}

#[test]
fn garbage_never_panics() {
    const ALPHABET: &[u8] = b"+-OKERRok \r\n\r\n..[]/\0\xff\xc3AUTH";
    let mut rng = Rng(42);
    for _ in 0..3000 {
        let limits = Limits { max_line: 1 + rng.below(40), max_body: rng.below(60) as u64 };
        let mut c = Client::new(limits);
        let cmds = [
            Command::Capa,
            Command::AuthLogin,
            Command::SaslResponse(b"x"),
            Command::Retr(1),
            Command::Top(1, 1),
            Command::Uidl(None),
            Command::Noop,
            Command::Stls,
        ];
        for _ in 0..rng.below(5) {
            c.send(&cmds[rng.below(cmds.len())], &mut Vec::new());
        }
        let bytes: Vec<u8> = (0..rng.below(300)).map(|_| ALPHABET[rng.below(ALPHABET.len())]).collect();
        for piece in bytes.chunks(1 + rng.below(20)) {
            c.feed(piece);
            while let Ok(Some(r)) = c.poll() {
                if let Body::Data(d) = &r.body {
                    let _ = (parse_capa(d), parse_uidl(d), parse_list(d));
                }
                let _ = (parse_stat(&r.text), apop_timestamp(&r.text), valid_uidl(&r.text));
            }
            let _ = c.poll();
        }
        c.feed_eof();
        let _ = (c.poll(), c.poll(), c.in_flight(), c.buffered());
        let text = String::from_utf8_lossy(&bytes);
        let _ = (parse_capa(&bytes), parse_uidl(&bytes), parse_list(&bytes));
        let _ = (parse_stat(&text), apop_timestamp(&text), parse_uidl_line(&text));
    }
}
