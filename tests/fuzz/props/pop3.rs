//! The POP3 client core (`popbridge::pop3`): the reply parser fed server bytes, the command
//! encoder, and the parsers of what replies carry.
//!
//! An input is one of three things, chosen by its first byte:
//! - a session: commands (read from the input) sent pipelined, then the rest of the input as what
//!   the server sent. It is fed whole, in chunks cut where the input says, and byte by byte: the
//!   replies and the error must be the same every time (chunking must not matter), and after
//!   every `poll` that asks for more input at most one status line is buffered, whatever the input.
//!   Then once more the way the fetcher drives it: a command sent after each reply.
//! - a well-formed exchange: 1–3 `RETR` bodies built from the input (any bytes but CR and LF per
//!   line, CRLF or bare LF line ends), dot-stuffed, with a `NOOP` reply between them, fed in
//!   chunks cut where the input says: each body must come back exactly (or as `Oversized` with its
//!   exact size), whatever the chunking.
//! - bytes for the listing parsers (CAPA, UIDL, LIST, STAT, the APOP timestamp).
//!
//! Everywhere: no panic; no reply text longer than a status line can make; no body over
//! `max_body`, neither in length nor in allocated capacity; a body is CRLF-normalized; a command
//! line never carries a CR, LF or NUL before its CRLF (no command injection).

use popbridge::pop3::{self, Body, Client, Command, Limits, ProtocolError, Reply, Sent, Status};

use super::{Bytes, Rng};

pub fn check(data: &[u8]) {
    let mut input = Bytes::new(data);
    let mode = input.u8();
    let limits = if mode & 0x10 != 0 {
        // Tiny limits reach the over-the-limit paths with tiny inputs.
        Limits { max_line: 1 + usize::from(input.u8()), max_body: u64::from(input.u8()) * 4 }
    } else {
        Limits::default()
    };
    let seed = u64::from(input.u32());
    match mode % 4 {
        0 | 1 => session(limits, seed, input),
        2 => well_formed(limits.max_body, seed, input),
        _ => listings(input.rest()),
    }
}

/// A command with owned arguments (`Command` borrows its strings).
enum Cmd {
    Capa,
    Stls,
    User(String),
    Pass(String),
    Apop(String, String, String),
    AuthPlain(Option<String>, String, String),
    AuthLogin,
    AuthXoauth2(String, String),
    Sasl(Vec<u8>),
    SaslCancel,
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    Top(u32, u32),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Quit,
}

impl Cmd {
    fn read(b: &mut Bytes) -> Cmd {
        let k = b.u8();
        let arg = |b: &mut Bytes| {
            let n = usize::from(b.u8() % 12);
            String::from_utf8_lossy(b.take(n)).into_owned()
        };
        let n = |b: &mut Bytes| u32::from(b.u8());
        let opt = if k & 0x80 != 0 { Some(u32::from(b.u8())) } else { None };
        match (k & 0x7f) % 19 {
            0 => Cmd::Capa,
            1 => Cmd::Stls,
            2 => Cmd::User(arg(b)),
            3 => Cmd::Pass(arg(b)),
            4 => Cmd::Apop(arg(b), arg(b), arg(b)),
            5 => Cmd::AuthPlain(opt.map(|_| arg(b)), arg(b), arg(b)),
            6 => Cmd::AuthLogin,
            7 => Cmd::AuthXoauth2(arg(b), arg(b)),
            8 => Cmd::Sasl(arg(b).into_bytes()),
            9 => Cmd::SaslCancel,
            10 => Cmd::Stat,
            11 => Cmd::List(opt),
            12 => Cmd::Uidl(opt),
            13 => Cmd::Top(n(b), n(b)),
            14 => Cmd::Retr(n(b)),
            15 => Cmd::Dele(n(b)),
            16 => Cmd::Noop,
            17 => Cmd::Rset,
            _ => Cmd::Quit,
        }
    }

    fn command(&self) -> Command<'_> {
        match self {
            Cmd::Capa => Command::Capa,
            Cmd::Stls => Command::Stls,
            Cmd::User(u) => Command::User(u),
            Cmd::Pass(p) => Command::Pass(p),
            Cmd::Apop(user, timestamp, password) => Command::Apop { user, timestamp, password },
            Cmd::AuthPlain(authzid, user, password) => {
                Command::AuthPlain { authzid: authzid.as_deref(), user, password }
            }
            Cmd::AuthLogin => Command::AuthLogin,
            Cmd::AuthXoauth2(user, token) => Command::AuthXoauth2 { user, token },
            Cmd::Sasl(b) => Command::SaslResponse(b),
            Cmd::SaslCancel => Command::SaslCancel,
            Cmd::Stat => Command::Stat,
            Cmd::List(n) => Command::List(*n),
            Cmd::Uidl(n) => Command::Uidl(*n),
            Cmd::Top(n, l) => Command::Top(*n, *l),
            Cmd::Retr(n) => Command::Retr(*n),
            Cmd::Dele(n) => Command::Dele(*n),
            Cmd::Noop => Command::Noop,
            Cmd::Rset => Command::Rset,
            Cmd::Quit => Command::Quit,
        }
    }
}

/// Sends `cmd` with `try_send` and checks what was written: one line, nothing that could start
/// another command; nothing at all for a refused argument.
fn send(c: &mut Client, cmd: &Cmd) -> bool {
    let cmd = cmd.command();
    let mut out = b"prefix".to_vec();
    match c.try_send(&cmd, &mut out) {
        Ok(sent) => {
            assert_eq!(sent, cmd.sent());
            let line = &out[6..];
            assert!(line.ends_with(b"\r\n"), "{cmd:?} encoded without CRLF: {line:?}");
            let body = &line[..line.len() - 2];
            assert!(!body.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)), "{cmd:?} encoded as {line:?}");
            true
        }
        Err(ProtocolError::InvalidArgument { .. }) => {
            assert_eq!(out, b"prefix", "a refused {cmd:?} wrote bytes");
            false
        }
        Err(e) => panic!("try_send({cmd:?}) failed with {e:?}"),
    }
}

/// What a run produced: the replies, then the error that ended it (None: it ended cleanly).
#[derive(Debug, PartialEq)]
struct Outcome {
    replies: Vec<Reply>,
    error: Option<ProtocolError>,
}

/// Polls until more input is needed; false once the client has failed (the error is recorded).
fn drain(c: &mut Client, limits: Limits, out: &mut Outcome) -> bool {
    loop {
        match c.poll() {
            Ok(Some(r)) => {
                check_reply(&r, limits);
                out.replies.push(r);
            }
            Ok(None) => {
                // Memory stays bounded: what waits for more input is at most one status line
                // (plus its CRs), or the 2 undecided bytes of a body line starting with ".".
                assert!(
                    c.buffered() <= limits.max_line.saturating_add(3),
                    "{} bytes buffered with max_line {}",
                    c.buffered(),
                    limits.max_line
                );
                return true;
            }
            Err(e) => {
                // A failed client stays failed, with the same error.
                assert_eq!(c.poll(), Err(e.clone()));
                out.error = Some(e);
                return false;
            }
        }
    }
}

fn check_reply(r: &Reply, limits: Limits) {
    // Lossy UTF-8 turns one bad byte into 3.
    assert!(r.text.len() <= limits.max_line.saturating_mul(3), "reply text of {} bytes", r.text.len());
    assert!(r.status != Status::Continue || r.to.allows_continue(), "continuation for {}", r.to);
    if r.status == Status::Continue {
        assert!(r.code.is_none());
    }
    match &r.body {
        Body::None => assert!(!(r.status == Status::Ok && r.to.multiline()), "{} +OK without its body", r.to),
        Body::Data(d) => {
            assert!(r.status == Status::Ok && r.to.multiline(), "body for {} {:?}", r.to, r.status);
            assert!(d.len() as u64 <= limits.max_body, "body of {} bytes, max {}", d.len(), limits.max_body);
            assert!(d.capacity() as u64 <= limits.max_body.max(d.len() as u64), "capacity {}", d.capacity());
            // Lines end in CRLF (bare LFs normalized), the last one too.
            assert!(d.is_empty() || d.ends_with(b"\r\n"), "body does not end with CRLF: {:?}", tail(d));
            for (i, _) in d.iter().enumerate().filter(|(_, b)| **b == b'\n') {
                assert!(i > 0 && d[i - 1] == b'\r', "bare LF left in the body at {i}");
            }
            listings(d);
        }
        Body::Oversized { bytes_seen } => {
            assert!(r.status == Status::Ok && r.to.multiline());
            assert!(*bytes_seen > limits.max_body, "Oversized with {bytes_seen} <= {}", limits.max_body);
        }
    }
    text_parsers(&r.text);
}

fn tail(d: &[u8]) -> &[u8] {
    &d[d.len().saturating_sub(16)..]
}

/// Runs the pipelined session feeding `wire` cut at the given piece sizes (cycled; 0: all at once).
fn run(limits: Limits, cmds: &[Cmd], wire: &[u8], mut piece: impl FnMut() -> usize) -> Outcome {
    let mut c = Client::new(limits);
    for cmd in cmds {
        send(&mut c, cmd);
    }
    let mut out = Outcome { replies: Vec::new(), error: None };
    let mut rest = wire;
    while !rest.is_empty() {
        let n = match piece() {
            0 => rest.len(),
            n => n.min(rest.len()),
        };
        c.feed(&rest[..n]);
        rest = &rest[n..];
        if !drain(&mut c, limits, &mut out) {
            return out;
        }
    }
    c.feed_eof();
    drain(&mut c, limits, &mut out);
    out
}

fn session(limits: Limits, seed: u64, mut input: Bytes) {
    let ncmds = input.u8() % 16;
    let cmds: Vec<Cmd> = (0..ncmds).map(|_| Cmd::read(&mut input)).collect();
    let wire = input.rest();

    let whole = run(limits, &cmds, wire, || 0);
    let mut rng = Rng::new(seed);
    let max_piece = 1 + (seed as usize >> 8) % 64;
    let chunked = run(limits, &cmds, wire, || 1 + rng.below(max_piece));
    assert_eq!(whole, chunked, "fed whole vs in chunks of at most {max_piece}");
    if wire.len() <= 4096 {
        let bytewise = run(limits, &cmds, wire, || 1);
        assert_eq!(whole, bytewise, "fed whole vs byte by byte");
    }

    // As a driver runs it: send the next command only after a reply, read in chunks.
    let mut c = Client::new(limits);
    let mut rng = Rng::new(seed.rotate_left(17));
    let mut next = cmds.iter();
    let mut out = Outcome { replies: Vec::new(), error: None };
    let mut rest = wire;
    let mut seen = 0;
    while !rest.is_empty() {
        let n = (1 + rng.below(max_piece)).min(rest.len());
        c.feed(&rest[..n]);
        rest = &rest[n..];
        if !drain(&mut c, limits, &mut out) {
            return;
        }
        while seen < out.replies.len() {
            seen += 1;
            if let Some(cmd) = next.next() {
                send(&mut c, cmd);
            }
        }
    }
    c.feed_eof();
    drain(&mut c, limits, &mut out);
}

/// A well-formed exchange: every body must survive the wire exactly, however it is cut.
fn well_formed(max_body: u64, seed: u64, mut input: Bytes) {
    let limits = Limits { max_line: pop3::DEFAULT_MAX_LINE, max_body };
    let nbodies = 1 + usize::from(input.u8() % 3);
    let payload = input.rest();
    let mut rng = Rng::new(seed);
    let mut c = Client::new(limits);
    let mut wire = b"+OK ready\r\n".to_vec();
    let mut expected = Vec::new();
    let per = payload.len().div_ceil(nbodies).max(1);
    for (i, part) in payload.chunks(per).chain(std::iter::repeat_n(&[][..], nbodies)).take(nbodies).enumerate() {
        let mut body = Vec::new();
        wire.extend_from_slice(b"+OK message follows\r\n");
        if !part.is_empty() {
            for line in part.split(|b| *b == b'\n') {
                let line: Vec<u8> = line.iter().copied().filter(|b| *b != b'\r').collect();
                body.extend_from_slice(&line);
                body.extend_from_slice(b"\r\n");
                if line.first() == Some(&b'.') {
                    wire.push(b'.');
                }
                wire.extend_from_slice(&line);
                wire.extend_from_slice(if rng.below(4) == 0 { b"\n" } else { b"\r\n" });
            }
        }
        wire.extend_from_slice(if rng.below(4) == 0 { b".\n" } else { b".\r\n" });
        wire.extend_from_slice(b"+OK noop\r\n");
        assert!(send(&mut c, &Cmd::Retr(i as u32 + 1)));
        assert!(send(&mut c, &Cmd::Noop));
        expected.push(body);
    }
    let max_piece = 1 + rng.below(200);
    let mut out = Outcome { replies: Vec::new(), error: None };
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let n = (1 + rng.below(max_piece)).min(rest.len());
        c.feed(&rest[..n]);
        rest = &rest[n..];
        assert!(drain(&mut c, limits, &mut out), "well-formed input failed: {:?}", out.error);
    }
    c.feed_eof();
    assert!(drain(&mut c, limits, &mut out), "well-formed input failed at EOF: {:?}", out.error);
    assert_eq!(out.replies.len(), 1 + 2 * nbodies, "replies: {:?}", out.replies);
    assert_eq!(out.replies[0].to, Sent::Greeting);
    for (i, body) in expected.iter().enumerate() {
        let r = &out.replies[1 + 2 * i];
        assert_eq!((r.to, r.status, r.text.as_str()), (Sent::Retr(i as u32 + 1), Status::Ok, "message follows"));
        if body.len() as u64 <= max_body {
            match &r.body {
                Body::Data(d) => assert!(d == body, "body {i} changed on the wire (pieces <= {max_piece})"),
                other => panic!("body {i} of {} bytes came back as {other:?}", body.len()),
            }
        } else {
            assert_eq!(r.body, Body::Oversized { bytes_seen: body.len() as u64 });
        }
        let noop = &out.replies[2 + 2 * i];
        assert_eq!((noop.to, noop.status, noop.text.as_str()), (Sent::Noop, Status::Ok, "noop"));
    }
}

/// The listing parsers on any bytes: no panic, and what they accept means what it says.
fn listings(body: &[u8]) {
    let caps = pop3::parse_capa(body);
    assert!(caps.lines.len() <= body.len());
    if let Ok(list) = pop3::parse_uidl(body) {
        for (n, uid) in list {
            assert!(n >= 1);
            if pop3::valid_uidl(&uid) {
                assert_eq!(pop3::parse_uidl_line(&format!("{n} {uid}")), Some((n, uid.clone())));
            }
        }
    }
    if let Ok(list) = pop3::parse_list(body) {
        for (n, size) in list {
            assert!(n >= 1);
            assert_eq!(pop3::parse_list_line(&format!("{n} {size}")), Some((n, size)));
        }
    }
    text_parsers(&String::from_utf8_lossy(body));
}

fn text_parsers(text: &str) {
    if let Some((count, size)) = pop3::parse_stat(text) {
        assert_eq!(pop3::parse_stat(&format!("{count} {size}")), Some((count, size)));
    }
    pop3::parse_uidl_line(text);
    pop3::parse_list_line(text);
    if let Some(ts) = pop3::apop_timestamp(text) {
        assert!(ts.starts_with('<') && ts.ends_with('>') && ts.contains('@'), "{ts:?}");
        assert!(!ts.chars().any(|c| c.is_whitespace() || c.is_control()), "{ts:?}");
        assert!(text.contains(ts));
        // What APOP would send: the timestamp must pass as an argument.
        assert!(pop3::check_arg(ts));
    }
}
