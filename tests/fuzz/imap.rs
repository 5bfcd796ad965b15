//! IMAP session dispatch (`imap::session::serve` on imap-next) on arbitrary bytes and on
//! mutations of real command sequences, before and after LOGIN, over loopback against the real
//! listener over a temp store holding account Work with five messages (plain, alternative, mixed
//! with a forwarded message, RFC 2047 and 8-bit, base64 attachment).
//!
//! Properties: no server task panics; every session ends once the client has sent everything and
//! half-closed; everything the server sends parses as IMAP responses (CRLF lines, literals as
//! announced, each response untagged, a continuation or tagged OK/NO/BAD), starting with the
//! greeting; a fresh well-formed session afterwards logs in, selects Work and sees what the store
//! holds (EXISTS, FETCH UIDs ascending, STATUS agreeing); the store stays consistent.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use popbridge::config::Live;
use popbridge::imap::server::Shared;
use popbridge::imap::session::listen;
use popbridge::net::listener::{Limits, Slots};
use popbridge::net::throttle::Throttle;
use popbridge::secret::Secret;
use popbridge::store::{Delivery, Store};

use super::Budget;
use super::net::{self, Fut, LineClient, Served, Target, literal_len};

const MESSAGES: &[&str] = &[
    "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nFrom: Fred Foobar <foobar@Blurdybloop.example>\r\nSubject: afternoon meeting\r\nTo: mooch@owatagu.siam.example\r\nMessage-Id: <B27397-0100000@Blurdybloop.example>\r\nMIME-Version: 1.0\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n",
    "Date: Tue, 1 Feb 2022 09:00:00 +0000\r\nFrom: Bob Jones <bob@example.net>\r\nTo: me@example.org\r\nSubject: Weekly report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nNumbers are up this week.\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Numbers are <b>up</b> this week.</p>\r\n--alt--\r\n",
    "Date: Wed, 2 Mar 2022 10:30:00 +0100\r\nFrom: Carol White <carol@example.com>\r\nTo: me@example.org\r\nSubject: Fwd: Flight booking\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the booking below.\r\n--mix\r\nContent-Type: message/rfc822\r\n\r\nDate: Tue, 1 Mar 2022 08:00:00 +0000\r\nFrom: Airline <noreply@airline.example>\r\nSubject: Your booking XK42\r\n\r\nFlight XK42 departs at 07:15.\r\n--mix--\r\n",
    "Date: Thu, 3 Mar 2022 12:00:00 +0100\r\nFrom: =?UTF-8?Q?Dieter_M=C3=BCller?= <dieter@example.de>\r\nTo: me@example.org\r\nSubject: =?UTF-8?B?R3LDvMOfZSBhdXMgQmVybGlu?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nViele Gr\u{fc}\u{df}e aus Berlin!\r\n",
    "Date: Fri, 4 Mar 2022 08:15:00 -0500\r\nFrom: John Smith <smith@example.com>\r\nTo: me@example.org\r\nSubject: Budget meeting\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcOkw7zDtsOfCg==\r\n--b--\r\n",
];

pub struct Imap {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    served: Served,
}

/// Over the whole run: sessions that logged in, tagged OK/NO/BAD responses (for the report).
static LOGGED_IN: AtomicUsize = AtomicUsize::new(0);
static TAGGED: [AtomicUsize; 3] = [AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)];

/// Checks that a session's transcript is a sequence of well-formed responses. An incomplete
/// transcript (reset) may end in a cut response.
fn transcript(out: &[u8], complete: bool) -> Result<(), String> {
    if out.windows(13).any(|w| w == b"] logged in\r\n") {
        LOGGED_IN.fetch_add(1, Ordering::Relaxed);
    }
    const GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1 ";
    if !complete && GREETING.starts_with(out) {
        return Ok(());
    }
    if !out.starts_with(GREETING) {
        return Err(format!("no greeting: {}", super::escaped(out)));
    }
    let mut rest = out;
    while !rest.is_empty() {
        let start = rest;
        // The first line says what the response is.
        let first_end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let first = &rest[..first_end];
        let kind_ok = first.starts_with(b"* ") || first.starts_with(b"+ ") || first == b"+\r" || {
            let sp = first.iter().position(|b| *b == b' ').unwrap_or(0);
            let (tag, status) = first.split_at(sp);
            !tag.is_empty()
                && tag.iter().all(|b| b.is_ascii_graphic() && !b"(){%*\"\\+".contains(b))
                && [&b" OK "[..], b" NO ", b" BAD "].iter().enumerate().any(|(i, s)| {
                    let yes = status.starts_with(s);
                    if yes {
                        TAGGED[i].fetch_add(1, Ordering::Relaxed);
                    }
                    yes
                })
        };
        if !kind_ok {
            return Err(format!("not an IMAP response: {}", super::escaped(&first[..first.len().min(300)])));
        }
        // Lines, with the literals they announce.
        loop {
            let Some(end) = rest.iter().position(|b| *b == b'\n') else {
                if !complete {
                    return Ok(());
                }
                return Err(format!("a response without its line end: {}", super::escaped(rest)));
            };
            let line = &rest[..=end];
            if end == 0 || rest[end - 1] != b'\r' {
                return Err(format!("a response line ending in a bare LF: {}", super::escaped(line)));
            }
            rest = &rest[end + 1..];
            match literal_len(line) {
                Some(n) if n <= rest.len() => rest = &rest[n..],
                Some(_) if !complete => return Ok(()),
                Some(n) => return Err(format!("a literal of {n} bytes with {} left", rest.len())),
                None => break,
            }
        }
        let response = &start[..start.len() - rest.len()];
        if response.ends_with(b" OK begin TLS negotiation now\r\n") {
            break; // what follows is TLS (or nothing)
        }
    }
    Ok(())
}

/// Sends `tag cmd` and reads to its tagged response, which must start with `want`.
async fn cmd(c: &mut LineClient, tag: &str, command: &str, want: &str) -> Result<Vec<String>, String> {
    c.send(format!("{tag} {command}\r\n").as_bytes()).await?;
    let mut out = Vec::new();
    loop {
        let r = c.response().await?;
        if r.starts_with(&format!("{tag} ")) {
            if !r.starts_with(&format!("{tag} {want}")) {
                return Err(format!("fresh session: {command}: {r:?}, wanted {want}; before: {out:?}"));
            }
            out.push(r);
            return Ok(out);
        }
        out.push(r);
    }
}

impl Target for Imap {
    fn start() -> Fut<Arc<Self>> {
        Box::pin(async {
            let dir = crate::util::private_tempdir();
            let sp = dir.path().join("store.sqlite");
            let store = tokio::task::spawn_blocking(move || {
                let store = Store::open(&sp).unwrap();
                let ids = store.ensure_account("Work").unwrap();
                let server = store.pop_server(ids.account, "pop.example:995/me").unwrap().id;
                let mut d = Delivery::new(&store, ids, server).unwrap();
                for (i, m) in MESSAGES.iter().enumerate() {
                    let id = popbridge::store::Identity::new(&format!("uidl-{i}"), m.len() as u64);
                    d.add(&id, m.as_bytes(), 1_700_000_000).unwrap();
                }
                d.commit().unwrap();
                Arc::new(store)
            })
            .await
            .unwrap();
            let acceptor = net::tls_acceptor(dir.path());
            let config =
                popbridge::config::parse("[local]\nuser = \"me\"\npassword = \"pw\"\n", Path::new("fuzz.toml"), 0o600)
                    .unwrap();
            let shared = Arc::new(Shared {
                store: store.clone(),
                changes: store.changes(),
                live: Arc::new(Live::new(config, Secret::new("pw"))),
                tls: Some(acceptor),
                throttle: Arc::new(Throttle::default()),
                slots: Slots::new("imap", Limits::imap(&Default::default())),
                alerts: tokio::sync::broadcast::channel(16).0,
                kick: None,
            });
            let listening = shared.clone();
            let served = Served::start(|l, rx| listen(l, None, listening, rx), move |_| shared.throttle.forget()).await;
            Arc::new(Imap { _dir: dir, store, served })
        })
    }

    fn session(self: Arc<Self>, ip: Ipv4Addr, input: Vec<u8>) -> Fut<Result<(), String>> {
        Box::pin(async move {
            let out = self.served.exchange(ip, &input).await?;
            transcript(&out.bytes, out.complete)
        })
    }

    fn check(self: Arc<Self>) -> Fut<Result<(), String>> {
        Box::pin(async move {
            let store = self.store.clone();
            let stored = tokio::task::spawn_blocking(move || store.mailbox_messages("Work"))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.message)?
                .ok_or("mailbox Work is gone")?;
            let mut c = LineClient::connect(self.served.addr).await?;
            let greeting = c.response().await?;
            if !greeting.starts_with("* OK ") {
                return Err(format!("fresh session: greeting {greeting:?}"));
            }
            cmd(&mut c, "a", "LOGIN me pw", "OK").await?;
            let r = cmd(&mut c, "b", "SELECT Work", "OK [READ-WRITE]").await?;
            let exists = r
                .iter()
                .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS\r\n")?.parse::<i64>().ok())
                .ok_or_else(|| format!("fresh session: no EXISTS in {r:?}"))?;
            if exists != stored {
                return Err(format!("SELECT Work says {exists} EXISTS, the store holds {stored}"));
            }
            // UID FETCH: a sequence set on an empty mailbox is BAD (as in Dovecot), a UID range is not.
            let r = cmd(&mut c, "c", "UID FETCH 1:* (UID)", "OK").await?;
            let uids: Vec<u32> =
                r.iter().filter_map(|l| l.split_once(" FETCH (UID ")?.1.strip_suffix(")\r\n")?.parse().ok()).collect();
            if uids.len() as i64 != exists || !uids.windows(2).all(|w| w[0] < w[1]) {
                return Err(format!("UID FETCH 1:* (UID) after {exists} EXISTS: {r:?}"));
            }
            let r = cmd(&mut c, "d", "STATUS Work (MESSAGES)", "OK").await?;
            if !r.iter().any(|l| l.ends_with(&format!("(MESSAGES {exists})\r\n"))) {
                return Err(format!("STATUS disagrees with SELECT's {exists} EXISTS: {r:?}"));
            }
            cmd(&mut c, "e", "LIST \"\" *", "OK").await?;
            cmd(&mut c, "f", "LOGOUT", "OK").await?;
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || net::store_invariants(&store)).await.map_err(|e| e.to_string())?
        })
    }

    fn stop(self: Arc<Self>) -> Fut<()> {
        Box::pin(async move { self.served.stop().await })
    }
}

pub const DICT: &[&[u8]] = &[
    b"LOGIN me pw",
    b"me+Work",
    b"AUTHENTICATE PLAIN",
    b"AG1lAHB3",
    b"SELECT Work",
    b"FETCH ",
    b"UID ",
    b"1:*",
    b"*",
    b"2,4:5",
    b"BODY[",
    b"BODY.PEEK[",
    b"HEADER.FIELDS (From Subject)",
    b"]",
    b"<0.10>",
    b"(FLAGS UID)",
    b"(\\Seen \\Deleted)",
    b"+FLAGS.SILENT ",
    b"{5}\r\n",
    b"{5+}\r\n",
    b"{0}\r\n",
    b"{4294967296}\r\n",
    b"\"",
    b"\\",
    b"(",
    b")",
    b"NIL",
    b"&AOk-",
    b"&-",
    b"Work/",
    b"INBOX",
    b"\r\n",
    b"\n",
    b"DONE\r\n",
    b"CHARSET UTF-8 ",
    b"1-Feb-2022",
    b"\"07-Feb-1994 21:52:25 -0800\"",
    // ESEARCH, SEARCHRES, WITHIN
    b"SEARCH RETURN (",
    b"MIN MAX COUNT ALL SAVE",
    b"RETURN () ",
    b" $ ",
    b"UID $",
    b"OLDER 3600",
    b"YOUNGER 1",
    b"BINARY[",
    b"BINARY.PEEK[",
    b"BINARY.SIZE[",
    b"~{5}\r\n",
    b"~{5+}\r\n",
    b"APPEND Work ",
    // LIST-EXTENDED / LIST-STATUS (RFC 5258, 5819)
    b"(SUBSCRIBED RECURSIVEMATCH) ",
    b"(REMOTE) ",
    b"(SPECIAL-USE) ",
    b" RETURN (",
    b"CHILDREN SUBSCRIBED SPECIAL-USE",
    b"STATUS (MESSAGES UNSEEN UIDNEXT SIZE)",
    b"(\"INBOX\" \"Work/*\" %)",
];

/// Real commands (many from `src/imap/tests.rs`), inserted as whole lines.
pub const LINES: &[&[u8]] = &[
    b"a LOGIN me pw",
    b"a LOGIN me+Work pw",
    b"a LOGIN me@Work pw",
    b"a LOGIN me wrong",
    b"a LOGIN {2+}\r\nme {2+}\r\npw",
    b"a AUTHENTICATE PLAIN AG1lAHB3",
    b"a AUTHENTICATE PLAIN",
    b"AG1lAHB3",
    b"a AUTHENTICATE LOGIN",
    b"bWU=",
    b"cHc=",
    b"*",
    b"a CAPABILITY",
    b"a NOOP",
    b"a CHECK",
    b"a ID (\"name\" \"fuzz\" \"version\" \"1\")",
    b"a ID NIL",
    b"a ENABLE UTF8=ACCEPT",
    b"a NAMESPACE",
    b"a STARTTLS",
    b"a SELECT Work",
    b"a SELECT INBOX",
    b"a EXAMINE Work",
    b"a SELECT \"Work\"",
    b"a STATUS Work (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)",
    b"a LIST \"\" *",
    b"a LIST \"\" %",
    b"a LIST \"Work/\" %",
    b"a LSUB \"\" *",
    b"a LIST (SPECIAL-USE) \"\" *",
    b"a LIST \"\" \"*\" RETURN (SPECIAL-USE)",
    b"a LIST (SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE)",
    b"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"Work/%\" RETURN (CHILDREN)",
    b"a LIST (REMOTE) \"\" (\"INBOX\" \"Work/*\") RETURN (SUBSCRIBED STATUS (MESSAGES UNSEEN SIZE))",
    b"a LIST \"\" % RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY RECENT DELETED SIZE))",
    b"a LIST (RECURSIVEMATCH) \"\" *",
    b"a STATUS Work (MESSAGES SIZE)",
    b"a CREATE Projects",
    b"a CREATE Work/Sub/",
    b"a CREATE &AOk-t&AOk-",
    b"a DELETE Projects",
    b"a DELETE Work",
    b"a DELETE INBOX",
    b"a RENAME Projects Plans",
    b"a RENAME INBOX Old",
    b"a RENAME Work Other",
    b"a SUBSCRIBE Work/Sub",
    b"a UNSUBSCRIBE Work",
    b"a FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE)",
    b"a FETCH 1:* (ENVELOPE BODYSTRUCTURE)",
    b"a FETCH 1 BODY[]",
    b"a FETCH 2 (BODY.PEEK[HEADER.FIELDS (From Subject)] BODY[1]<0.10>)",
    b"a FETCH 3 (BODY[2] BODY[2.HEADER] BODY[2.TEXT] BODY[1.MIME])",
    b"a FETCH 5 (BODYSTRUCTURE BODY[2] BODY[TEXT])",
    b"a FETCH * (RFC822 RFC822.HEADER RFC822.TEXT)",
    b"a FETCH 1:3 FAST",
    b"a FETCH 4294967295 ALL",
    b"a UID FETCH 1:* (FLAGS)",
    b"a UID FETCH 2,4:* (BODY[HEADER])",
    b"a STORE 1 +FLAGS (\\Seen)",
    b"a STORE 1:* -FLAGS.SILENT (\\Seen)",
    b"a STORE 2 FLAGS ($Junk \\Flagged)",
    b"a UID STORE 3 +FLAGS (\\Deleted)",
    b"a SEARCH ALL",
    b"a SEARCH UNSEEN",
    b"a SEARCH OR FROM bob SUBJECT meeting",
    b"a SEARCH TEXT berlin",
    b"a SEARCH BODY \"Numbers are\"",
    b"a SEARCH CHARSET UTF-8 SUBJECT {6+}\r\nGr\xc3\xbc\xc3\x9fe",
    b"a SEARCH BEFORE 1-Jan-2030 LARGER 10 NOT DELETED",
    b"a SEARCH HEADER Message-Id B27397 SINCE 1-Feb-1994",
    b"a UID SEARCH 1:* NOT SEEN",
    b"a SEARCH RETURN (MIN MAX COUNT ALL) FLAGGED SINCE 1-Feb-1994",
    b"a UID SEARCH RETURN () CHARSET UTF-8 TEXT {3+}\r\nabc",
    b"a SEARCH RETURN (SAVE) UNSEEN",
    b"a SEARCH RETURN (SAVE MIN) OR $ UID $",
    b"a FETCH $ (UID FLAGS)",
    b"a UID STORE $ +FLAGS.SILENT (\\Seen)",
    b"a COPY $ Archive",
    b"a UID MOVE $ Trash",
    b"a UID EXPUNGE $",
    b"a SEARCH OLDER 3600 YOUNGER 86400",
    b"a COPY 1:2 Archive",
    b"a UID COPY 1:* Projects",
    b"a MOVE 3 Trash",
    b"a UID MOVE 2 INBOX",
    b"a EXPUNGE",
    b"a UID EXPUNGE 1:3",
    b"a CLOSE",
    b"a UNSELECT",
    b"a APPEND Work (\\Seen) {8+}\r\nA: b\r\n\r\n",
    b"a APPEND INBOX {8}\r\nA: b\r\n\r\n",
    b"a APPEND Drafts (\\Draft) \"07-Feb-1994 21:52:25 -0800\" {21+}\r\nSubject: x\r\n\r\nbody\r\n",
    b"a APPEND Work ~{9+}\r\nA: b\r\n\r\n\x00",
    b"a APPEND Work (\\Seen) {8+}\r\nA: b\r\n\r\n (\\Flagged) \"07-Feb-1994 21:52:25 -0800\" ~{8+}\r\nA: c\r\n\r\n",
    b"a APPEND Work {8}\r\nA: b\r\n\r\n {8}\r\nA: c\r\n\r\n",
    b"a FETCH 5 (BINARY[2] BINARY.PEEK[]<0.20> BINARY.SIZE[2] BINARY.SIZE[])",
    b"a UID FETCH 1:* (BINARY.PEEK[1] BINARY.SIZE[1])",
    b"a IDLE",
    b"DONE",
    b"a LOGOUT",
];

#[test]
fn fuzz_imap_session() {
    let budget = Budget::from_env("imap", 3_000);
    let rt = net::runtime("imap");
    let (corpus, mutated, extra) = rt.block_on(net::drive::<Imap>(&budget, DICT, LINES));
    let n = |a: &AtomicUsize| a.load(Ordering::Relaxed);
    let tagged = format!("tagged OK/NO/BAD {}/{}/{}", n(&TAGGED[0]), n(&TAGGED[1]), n(&TAGGED[2]));
    budget.report(corpus, mutated, &format!("{extra}; {} sessions logged in, {tagged}", n(&LOGGED_IN)));
}
