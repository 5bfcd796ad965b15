//! The SMTP submission session (`smtp::session::serve`) on arbitrary bytes, over loopback
//! against the real listener over a temp store (no queue worker: nothing leaves the machine).
//!
//! Properties: no server task panics; every session ends (the server answers and closes once the
//! client has sent everything and half-closed); everything the server sends is well-formed reply
//! lines (`ddd` + space or dash, CRLF), starting with the greeting; a message is queued only in a
//! session that authenticated first (never an open relay), and the outbox holds exactly the
//! messages the sessions were told were queued; a fresh well-formed session (EHLO, AUTH, MAIL,
//! RCPT, DATA, QUIT) still works afterwards; the store stays consistent.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use popbridge::config::Live;
use popbridge::net::listener::{Limits, Slots};
use popbridge::net::throttle::Throttle;
use popbridge::secret::Secret;
use popbridge::smtp::server::SmtpShared;
use popbridge::smtp::session::listen;
use popbridge::store::Store;
use tokio::sync::Notify;

use super::Budget;
use super::net::{self, Fut, LineClient, Served, Target};

/// Account Work sends through its own (never contacted) server and files a copy in Sent; Home
/// relays through a [relay] that is not configured, so its sender is refused.
const CONFIG: &str = r#"
[local]
user = "me"
password = "pw"
[[account]]
name = "Work"
email = "me@work.example"
save_sent = true
[account.pop]
host = "127.0.0.1"
tls = "plain"
user = "u"
password = "p"
[account.smtp]
host = "127.0.0.1"
port = 9
tls = "plain"
[[account]]
name = "Home"
email = "me@home.example"
[account.pop]
host = "127.0.0.1"
tls = "plain"
user = "u"
password = "p"
[account.smtp]
relay = true
"#;

/// Small, so that fuzzed DATA reaches the size limit.
const MAX_SIZE: u64 = 4096;

pub struct Smtp {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    served: Served,
    /// "queued as" replies sent so far.
    queued: AtomicI64,
    /// Sessions whose transcript was cut by a reset.
    resets: AtomicI64,
}

/// Over the whole run: sessions that authenticated, messages queued, MAIL refused for want of
/// AUTH (for the report: shows the fuzzer gets past the greeting).
static AUTHED: AtomicI64 = AtomicI64::new(0);
static QUEUED: AtomicI64 = AtomicI64::new(0);
static REFUSED: AtomicI64 = AtomicI64::new(0);

/// Checks a session's transcript; returns how many messages it was told were queued. An
/// incomplete transcript (reset) may end in a cut line.
fn transcript(out: &[u8], complete: bool) -> Result<i64, String> {
    const GREETING: &[u8] = b"220 fuzz.localhost popbridge ESMTP";
    if !complete && GREETING.starts_with(out) {
        return Ok(0);
    }
    if !out.starts_with(GREETING) {
        return Err(format!("no greeting: {}", super::escaped(out)));
    }
    let (mut authed, mut queued) = (false, 0);
    let mut rest = out;
    while !rest.is_empty() {
        let Some(end) = rest.iter().position(|b| *b == b'\n') else {
            if !complete {
                break;
            }
            return Err(format!("a reply without its line end: {}", super::escaped(rest)));
        };
        let line = &rest[..=end];
        rest = &rest[end + 1..];
        let ok = line.len() >= 6
            && line[..3].iter().all(u8::is_ascii_digit)
            && matches!(line[3], b' ' | b'-')
            && line.ends_with(b"\r\n")
            && !line[..line.len() - 2].contains(&b'\r');
        if !ok {
            return Err(format!("malformed reply line {}", super::escaped(line)));
        }
        if line.starts_with(b"235 ") && !authed {
            authed = true;
            AUTHED.fetch_add(1, Ordering::Relaxed);
        }
        if line.starts_with(b"530 5.7.0 ") {
            REFUSED.fetch_add(1, Ordering::Relaxed);
        }
        if line.starts_with(b"250 2.0.0 queued as ") {
            if !authed {
                return Err("a message was queued in a session that did not authenticate".into());
            }
            queued += 1;
            QUEUED.fetch_add(1, Ordering::Relaxed);
        }
        if line.starts_with(b"220 2.0.0 ready to start TLS") {
            break; // what follows is TLS (or nothing)
        }
    }
    Ok(queued)
}

/// Reads one complete reply (continuation lines included); returns its last line.
async fn reply(c: &mut LineClient, want: &str) -> Result<String, String> {
    loop {
        let line = c.line().await?;
        if line.as_bytes().get(3) == Some(&b' ') || line.len() < 4 {
            return if line.starts_with(want) {
                Ok(line)
            } else {
                Err(format!("fresh session: {line:?}, wanted {want}"))
            };
        }
    }
}

impl Target for Smtp {
    fn start() -> Fut<Arc<Self>> {
        Box::pin(async {
            let dir = crate::util::private_tempdir();
            let path = dir.path().join("store.sqlite");
            let store = Arc::new(tokio::task::spawn_blocking(move || Store::open(&path).unwrap()).await.unwrap());
            let acceptor = net::tls_acceptor(dir.path());
            let config = popbridge::config::parse(CONFIG, Path::new("fuzz.toml"), 0o600).unwrap();
            let shared = Arc::new(SmtpShared {
                live: Arc::new(Live::new(config, Secret::new("pw"))),
                store: store.clone(),
                tls: Some(acceptor),
                throttle: Arc::new(Throttle::default()),
                kick: Arc::new(Notify::new()),
                slots: Slots::new("smtp", Limits::smtp(&Default::default())),
                hostname: "fuzz.localhost".into(),
                max_size: MAX_SIZE,
            });
            let listening = shared.clone();
            let served = Served::start(|l, rx| listen(l, None, listening, rx), move |_| shared.throttle.forget()).await;
            Arc::new(Smtp { _dir: dir, store, served, queued: AtomicI64::new(0), resets: AtomicI64::new(0) })
        })
    }

    fn session(self: Arc<Self>, ip: Ipv4Addr, input: Vec<u8>) -> Fut<Result<(), String>> {
        Box::pin(async move {
            let out = self.served.exchange(ip, &input).await?;
            let queued = transcript(&out.bytes, out.complete)?;
            self.queued.fetch_add(queued, Ordering::SeqCst);
            if !out.complete {
                self.resets.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
    }

    fn check(self: Arc<Self>) -> Fut<Result<(), String>> {
        Box::pin(async move {
            let mut c = LineClient::connect(self.served.addr).await?;
            reply(&mut c, "220 ").await?;
            for (cmd, want) in [
                ("EHLO fresh.example\r\n", "250 "),
                ("AUTH PLAIN AG1lAHB3\r\n", "235 "),
                ("MAIL FROM:<me@work.example>\r\n", "250 "),
                ("RCPT TO:<ann@example.org>\r\n", "250 "),
                ("DATA\r\n", "354 "),
                (
                    "From: Me <me@work.example>\r\nTo: ann@example.org\r\nSubject: fresh\r\n\r\nstill works\r\n.\r\n",
                    "250 2.0.0 queued as ",
                ),
                ("QUIT\r\n", "221 "),
            ] {
                c.send(cmd.as_bytes()).await?;
                reply(&mut c, want).await?;
            }
            let queued = self.queued.load(Ordering::SeqCst) + 1;
            // A reset may have cut a "queued as" reply off a transcript: then the outbox may hold more.
            let exact = self.resets.load(Ordering::SeqCst) == 0;
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || {
                let s = store.outbox_summary().map_err(|e| e.message)?;
                let total = s.queued + s.failed + s.sent;
                if total < queued || (exact && total != queued) {
                    return Err(format!("the outbox holds {total} messages, the sessions were told {queued}"));
                }
                net::store_invariants(&store)
            })
            .await
            .map_err(|e| e.to_string())?
        })
    }

    fn stop(self: Arc<Self>) -> Fut<()> {
        Box::pin(async move { self.served.stop().await })
    }
}

pub const DICT: &[&[u8]] = &[
    b"EHLO ",
    b"HELO ",
    b"MAIL FROM:<",
    b"RCPT TO:<",
    b"@work.example>",
    b"me@work.example",
    b"<>",
    b" SIZE=",
    b" BODY=8BITMIME",
    b" SMTPUTF8",
    b"AUTH PLAIN ",
    b"AUTH LOGIN ",
    b"AG1lAHB3",
    b"bWU=",
    b"cHc=",
    b"=",
    b"\r\n.\r\n",
    b"\r\n..",
    b"\r\n",
    b"\n",
    b"DATA\r\n",
    b"BDAT 5 LAST\r\n",
    b"STARTTLS\r\n",
    b"From: ",
    b"Bcc: ",
];

/// Real commands, inserted as whole lines.
pub const LINES: &[&[u8]] = &[
    b"EHLO client.example",
    b"HELO client.example",
    b"LHLO client.example",
    b"STARTTLS",
    b"AUTH PLAIN AG1lAHB3",
    b"AUTH PLAIN",
    b"AG1lAHB3",
    b"AUTH PLAIN cm9vdABtZQBwdw==",
    b"AUTH LOGIN",
    b"AUTH LOGIN bWU=",
    b"bWU=",
    b"cHc=",
    b"*",
    b"AUTH CRAM-MD5",
    b"MAIL FROM:<me@work.example>",
    b"MAIL FROM:<me@work.example> SIZE=100 BODY=8BITMIME",
    b"MAIL FROM:<me@work.example> SIZE=99999999",
    b"MAIL FROM:<>",
    b"MAIL FROM:<me@home.example>",
    b"MAIL FROM:<someone@else.example>",
    b"RCPT TO:<ann@example.org>",
    b"RCPT TO:<ann>",
    b"RCPT TO:<\"odd name\"@example.org> NOTIFY=NEVER",
    b"DATA",
    b"From: Me <me@work.example>",
    b"From: Other <other@else.example>",
    b"To: Ann <ann@example.org>",
    b"Bcc: secret@example.org",
    b"Subject: hi",
    b"",
    b"..a stuffed line",
    b".",
    b"BDAT 10 LAST",
    b"RSET",
    b"NOOP",
    b"VRFY me",
    b"EXPN list",
    b"HELP",
    b"ETRN x",
    b"QUIT",
];

#[test]
fn fuzz_smtp_session() {
    let budget = Budget::from_env("smtp", 3_000);
    let rt = net::runtime("smtp");
    let (corpus, mutated, extra) = rt.block_on(net::drive::<Smtp>(&budget, DICT, LINES));
    let (a, q, r) = (AUTHED.load(Ordering::Relaxed), QUEUED.load(Ordering::Relaxed), REFUSED.load(Ordering::Relaxed));
    budget.report(
        corpus,
        mutated,
        &format!("{extra}; {a} sessions authenticated, {q} messages queued, {r} refused without AUTH"),
    );
}
