//! Scripted delivery targets for the refusal tests (`tests/deliver.rs`): an LMTP server (RFC 2033,
//! PIPELINING + CHUNKING, so popbridge sends BDAT) and an IMAP server (LITERAL+, UIDPLUS,
//! AUTHENTICATE PLAIN with SASL-IR), on free loopback ports. Each keeps what it accepted, and
//! refuses — or drops the connection at — the message a [`Fail`] names.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What the target does with the `at`-th message it is sent (1-based, counted over the target's
/// life; 0: every message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fail {
    None,
    /// Answer the message (LMTP: its RCPT when `rcpt`, else its content; IMAP: its APPEND) with
    /// this line instead of accepting it.
    Refuse {
        at: usize,
        line: String,
        rcpt: bool,
    },
    /// Close the connection when the message arrives, before answering it.
    Drop {
        at: usize,
    },
    /// IMAP: take the APPEND, answer nothing more on that connection, and save the message `ms`
    /// later — a server still saving what a killed client sent when the client comes back.
    SaveLate {
        at: usize,
        ms: u64,
    },
}

impl Fail {
    fn hits(&self, n: usize) -> bool {
        match self {
            Fail::None => false,
            Fail::Refuse { at, .. } | Fail::Drop { at } | Fail::SaveLate { at, .. } => *at == 0 || *at == n,
        }
    }
}

#[derive(Default)]
struct State {
    fail: Option<Fail>,
    accepted: Vec<Vec<u8>>,
    seen: usize,
    /// Messages taken and not yet saved ([`Fail::SaveLate`]).
    saving: usize,
}

pub struct FakeTarget {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeTarget {
    /// The messages accepted so far, in order.
    pub fn accepted(&self) -> Vec<Vec<u8>> {
        self.state.lock().unwrap().accepted.clone()
    }
    pub fn set_fail(&self, fail: Fail) {
        self.state.lock().unwrap().fail = Some(fail);
    }
    /// Messages taken and not saved yet ([`Fail::SaveLate`]).
    pub fn saving(&self) -> usize {
        self.state.lock().unwrap().saving
    }
}

pub type FakeLmtp = FakeTarget;
pub type FakeImap = FakeTarget;

fn start(fail: Fail, serve: fn(TcpStream, Arc<Mutex<State>>) -> std::io::Result<()>) -> FakeTarget {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let state = Arc::new(Mutex::new(State { fail: Some(fail), ..State::default() }));
    let s = state.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            let s = s.clone();
            std::thread::spawn(move || {
                let _ = serve(c, s);
            });
        }
    });
    FakeTarget { port, state }
}

/// The next message's fate: `None` accept, `Some(Some(line))` refuse, `Some(None)` drop.
fn fate(state: &Mutex<State>) -> Option<Option<String>> {
    let mut st = state.lock().unwrap();
    st.seen += 1;
    let n = st.seen;
    match st.fail.clone() {
        Some(f) if f.hits(n) => match f {
            Fail::Refuse { line, .. } => Some(Some(line)),
            _ => Some(None),
        },
        _ => None,
    }
}

/// [`Fail::SaveLate`] for the next message: its delay (the message counts as seen).
fn save_late(state: &Mutex<State>) -> Option<u64> {
    let mut st = state.lock().unwrap();
    match st.fail.clone() {
        Some(f @ Fail::SaveLate { ms, .. }) if f.hits(st.seen + 1) => {
            st.seen += 1;
            Some(ms)
        }
        _ => None,
    }
}

fn rcpt_refusal(state: &Mutex<State>) -> Option<String> {
    let st = state.lock().unwrap();
    match &st.fail {
        Some(f @ Fail::Refuse { line, rcpt: true, .. }) if f.hits(st.seen + 1) => Some(line.clone()),
        _ => None,
    }
}

impl FakeTarget {
    pub fn lmtp(fail: Fail) -> FakeLmtp {
        start(fail, serve_lmtp)
    }
    pub fn imap(fail: Fail) -> FakeImap {
        start(fail, serve_imap)
    }
}

fn serve_lmtp(c: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut w = c.try_clone()?;
    let mut r = BufReader::new(c);
    w.write_all(b"220 fake LMTP ready\r\n")?;
    let mut rcpt_failed: Option<String> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd.starts_with("LHLO") {
            w.write_all(b"250-fake\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n")?;
        } else if cmd.starts_with("MAIL") {
            rcpt_failed = None;
            w.write_all(b"250 2.1.0 OK\r\n")?;
        } else if cmd.starts_with("RCPT") {
            match rcpt_refusal(&state) {
                Some(l) => {
                    w.write_all(format!("{l}\r\n").as_bytes())?;
                    rcpt_failed = Some(l);
                }
                None => w.write_all(b"250 2.1.5 OK\r\n")?,
            }
        } else if let Some(rest) = cmd.strip_prefix("BDAT ") {
            let n: usize = rest.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let mut body = vec![0u8; n];
            r.read_exact(&mut body)?;
            let f = fate(&state);
            if rcpt_failed.take().is_some() {
                w.write_all(b"554 5.5.1 No valid recipients\r\n")?;
                continue;
            }
            match f {
                None => {
                    state.lock().unwrap().accepted.push(body);
                    w.write_all(b"250 2.0.0 <bob@example.com> Saved\r\n")?;
                }
                Some(Some(l)) => w.write_all(format!("{l}\r\n").as_bytes())?,
                Some(None) => return Ok(()),
            }
        } else if cmd.starts_with("RSET") || cmd.starts_with("NOOP") {
            w.write_all(b"250 OK\r\n")?;
        } else if cmd.starts_with("QUIT") {
            w.write_all(b"221 Bye\r\n")?;
            return Ok(());
        } else {
            w.write_all(b"500 5.5.1 Unknown command\r\n")?;
        }
    }
}

fn serve_imap(c: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut w = c.try_clone()?;
    let mut r = BufReader::new(c);
    w.write_all(b"* OK fake IMAP ready\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let l = line.trim_end().to_string();
        let (tag, rest) = l.split_once(' ').unwrap_or((&l, ""));
        let upper = rest.to_ascii_uppercase();
        if upper.starts_with("CAPABILITY") {
            w.write_all(
                format!("* CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS AUTH=PLAIN SASL-IR\r\n{tag} OK done\r\n").as_bytes(),
            )?;
        } else if upper.starts_with("AUTHENTICATE") || upper.starts_with("LOGIN") {
            w.write_all(format!("{tag} OK logged in\r\n").as_bytes())?;
        } else if upper.starts_with("APPEND") {
            let n: usize =
                rest.rsplit_once('{').and_then(|(_, n)| n.trim_end_matches(['}', '+']).parse().ok()).unwrap_or(0);
            let mut body = vec![0u8; n + 2];
            r.read_exact(&mut body)?;
            body.truncate(n);
            if let Some(ms) = save_late(&state) {
                state.lock().unwrap().saving += 1;
                let st = state.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                    let mut st = st.lock().unwrap();
                    st.accepted.push(body);
                    st.saving -= 1;
                });
                // Nothing more on this connection: the client waits for an answer until it dies.
                let mut rest = Vec::new();
                let _ = r.read_to_end(&mut rest);
                return Ok(());
            }
            match fate(&state) {
                None => {
                    let uid = {
                        let mut st = state.lock().unwrap();
                        st.accepted.push(body);
                        st.accepted.len()
                    };
                    w.write_all(format!("{tag} OK [APPENDUID 7 {uid}] Append completed.\r\n").as_bytes())?;
                }
                Some(Some(reply)) => w.write_all(format!("{tag} {reply}\r\n").as_bytes())?,
                Some(None) => return Ok(()),
            }
        } else if upper.starts_with("EXAMINE") || upper.starts_with("SELECT") {
            let n = state.lock().unwrap().accepted.len();
            w.write_all(format!("* {n} EXISTS\r\n{tag} OK [READ-ONLY] done\r\n").as_bytes())?;
        } else if let Some(id) = upper.strip_prefix("UID SEARCH HEADER MESSAGE-ID ") {
            // The saved messages whose Message-ID header holds the (quoted) value.
            let want = id.trim_matches('"').to_string();
            let uids: Vec<String> = state
                .lock()
                .unwrap()
                .accepted
                .iter()
                .enumerate()
                .filter(|(_, m)| {
                    String::from_utf8_lossy(m).lines().any(|l| {
                        l.to_ascii_uppercase().starts_with("MESSAGE-ID:") && l.to_ascii_uppercase().contains(&want)
                    })
                })
                .map(|(i, _)| (i + 1).to_string())
                .collect();
            w.write_all(format!("* SEARCH {}\r\n{tag} OK done\r\n", uids.join(" ")).trim_end_matches(' ').as_bytes())?;
        } else if let Some(set) = upper.strip_prefix("UID FETCH ") {
            let accepted = state.lock().unwrap().accepted.clone();
            for uid in set.split(' ').next().unwrap_or("").split(',').filter_map(|u| u.parse::<usize>().ok()) {
                if let Some(m) = accepted.get(uid - 1) {
                    w.write_all(format!("* {uid} FETCH (UID {uid} BODY[] {{{}}}\r\n", m.len()).as_bytes())?;
                    w.write_all(m)?;
                    w.write_all(b")\r\n")?;
                }
            }
            w.write_all(format!("{tag} OK done\r\n").as_bytes())?;
        } else if upper.starts_with("UID SEARCH") {
            w.write_all(format!("* SEARCH\r\n{tag} OK done\r\n").as_bytes())?;
        } else if upper.starts_with("LOGOUT") {
            w.write_all(format!("* BYE\r\n{tag} OK bye\r\n").as_bytes())?;
            return Ok(());
        } else {
            w.write_all(format!("{tag} BAD unknown\r\n").as_bytes())?;
        }
    }
}
