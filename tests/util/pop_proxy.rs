//! A POP3 proxy in front of a real server (Dovecot's plain POP3 port) that can stop at a named
//! crash point ([`super::crash_points`]): it follows the conversation — which command each
//! answer belongs to, where a multi-line answer ends — and holds one direction at the point
//! while the test kills popbridge. The client must log in with USER/PASS (no SASL
//! continuations to follow) and without STLS: what the proxy reads is plain POP3.
//!
//! [`PopProxy::relay`] instead forwards bytes as they are (TLS passes through), and
//! [`PopProxy::throttled`] does so at a set rate from the server: a loopback fetch then lasts
//! long enough for random instants to fall anywhere in it — between group commits, mid-import —
//! not only before the first commit. Every mode keeps what clients sent ([`PopProxy::sent`]).
//!
//! One thread per direction per connection, on 127.0.0.1:0. Dropping the proxy stops accepting,
//! shuts every connection down and joins all threads.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::crash_points::{Point, Trap};

pub struct PopProxy {
    pub port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: SocketAddr,
    /// Byte forwarding (no crash points), at most this many bytes per second if given.
    raw: Option<Option<u64>>,
    /// Byte forwarding with every byte delivered this much later, in each direction
    /// ([`PopProxy::delayed`]).
    delay: Option<Duration>,
    /// Everything clients sent, every connection, in order of arrival.
    sent: Mutex<Vec<u8>>,
    trap: Trap,
    stop: AtomicBool,
    /// Both sockets of every connection, to end them on drop.
    conns: Mutex<Vec<TcpStream>>,
}

impl PopProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream_port`.
    pub fn start(upstream_port: u16) -> PopProxy {
        Self::spawn(upstream_port, None)
    }

    /// Forwards bytes unchanged (TLS, SASL exchanges: anything), keeping what clients sent.
    pub fn relay(upstream_port: u16) -> PopProxy {
        Self::spawn(upstream_port, Some(None))
    }

    /// Forwards bytes unchanged, the server's at `bytes_per_sec`.
    pub fn throttled(upstream_port: u16, bytes_per_sec: u64) -> PopProxy {
        Self::spawn(upstream_port, Some(Some(bytes_per_sec)))
    }

    /// Forwards bytes unchanged, each delivered `one_way` after it arrived, in both directions,
    /// without serialising round trips (the harness's delay-proxy.py): a remote server, RTT =
    /// 2 × `one_way`. A pipelining client pays the delay once per window, a lock-step one once per
    /// command.
    pub fn delayed(upstream_port: u16, one_way: Duration) -> PopProxy {
        Self::spawn_with(upstream_port, Some(None), Some(one_way))
    }

    fn spawn(upstream_port: u16, raw: Option<Option<u64>>) -> PopProxy {
        Self::spawn_with(upstream_port, raw, None)
    }

    fn spawn_with(upstream_port: u16, raw: Option<Option<u64>>, delay: Option<Duration>) -> PopProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the POP3 proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            raw,
            delay,
            sent: Mutex::default(),
            trap: Trap::default(),
            stop: AtomicBool::new(false),
            conns: Mutex::default(),
        });
        let (sh, st) = (shared.clone(), shared.clone());
        let acceptor = super::accept::spawn(
            format!("pop-proxy-{port}"),
            listener,
            move || st.stop.load(Ordering::SeqCst),
            move |client| {
                connect(&sh, client).unwrap_or_else(|e| {
                    eprintln!("pop proxy: {e}");
                    Vec::new()
                })
            },
        );
        PopProxy { port, shared, acceptor: Some(acceptor) }
    }

    /// The crash-point trap: arm it, and the first session to reach the point stops there.
    pub fn trap(&self) -> &Trap {
        &self.shared.trap
    }

    /// What clients sent so far (every connection, in order of arrival), as text.
    pub fn sent(&self) -> String {
        String::from_utf8_lossy(&self.shared.sent.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Drop for PopProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.trap.release();
        for c in self.shared.conns.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// What an answer from the server belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cmd {
    Greeting,
    /// Its +OK answer is multi-line (CAPA, LIST/UIDL without argument, TOP); RETR separately.
    Multi,
    Retr,
    Dele,
    Quit,
    /// Its +OK ends the AUTHORIZATION state.
    Pass,
    Single,
}

fn classify(line: &[u8]) -> Cmd {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_whitespace();
    let verb = words.next().unwrap_or("").to_ascii_uppercase();
    let has_arg = words.next().is_some();
    match verb.as_str() {
        "RETR" => Cmd::Retr,
        "DELE" => Cmd::Dele,
        "QUIT" => Cmd::Quit,
        "PASS" => Cmd::Pass,
        "CAPA" | "TOP" => Cmd::Multi,
        "LIST" | "UIDL" if !has_arg => Cmd::Multi,
        _ => Cmd::Single,
    }
}

/// The conversation as both directions see it: commands sent, answers not yet complete.
#[derive(Default)]
struct Conversation {
    pending: VecDeque<Cmd>,
    logged_in: bool,
}

fn connect(sh: &Arc<Shared>, client: TcpStream) -> io::Result<Vec<JoinHandle<()>>> {
    let server = TcpStream::connect(sh.upstream)?;
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    {
        let mut conns = sh.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.push(client.try_clone()?);
        conns.push(server.try_clone()?);
    }
    if let Some(delay) = sh.delay {
        let (c_in, s_out) = (client.try_clone()?, server.try_clone()?);
        let sh1 = sh.clone();
        let mut threads = delayed_copy(c_in, s_out, delay, Some(sh1))?;
        threads.extend(delayed_copy(server, client, delay, None)?);
        return Ok(threads);
    }
    if let Some(rate) = sh.raw {
        let (c_in, s_out) = (client.try_clone()?, server.try_clone()?);
        let (sh1, sh2) = (sh.clone(), sh.clone());
        let up = std::thread::spawn(move || {
            let _ = copy(c_in, s_out, None, Some(&sh1.sent));
        });
        let down = std::thread::spawn(move || {
            let _ = copy(server, client, rate, None);
            drop(sh2);
        });
        return Ok(vec![up, down]);
    }
    let conv = Arc::new(Mutex::new(Conversation { pending: VecDeque::from([Cmd::Greeting]), ..Default::default() }));
    let (c_in, s_out) = (client.try_clone()?, server.try_clone()?);
    let (s_in, c_out) = (server, client);
    let (sh1, sh2, conv1, conv2) = (sh.clone(), sh.clone(), conv.clone(), conv);
    let up = std::thread::spawn(move || {
        let _ = client_to_server(&sh1, c_in, s_out, &conv1);
    });
    let down = std::thread::spawn(move || {
        let _ = server_to_client(&sh2, s_in, c_out, &conv2);
    });
    Ok(vec![up, down])
}

/// Copies bytes until either side closes, at most `rate` bytes per second if given, keeping a
/// copy in `keep` if given.
fn copy(mut from: TcpStream, mut to: TcpStream, rate: Option<u64>, keep: Option<&Mutex<Vec<u8>>>) -> io::Result<()> {
    let start = std::time::Instant::now();
    let mut sent = 0u64;
    // Small reads keep the pace even (4 KiB at 1 MB/s is 4 ms).
    let mut chunk = [0u8; 4096];
    loop {
        let n = from.read(&mut chunk)?;
        if n == 0 {
            end(&from, &to);
            return Ok(());
        }
        if let Some(keep) = keep {
            keep.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&chunk[..n]);
        }
        if let Some(rate) = rate {
            sent += n as u64;
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if to.write_all(&chunk[..n]).is_err() {
            end(&from, &to);
            return Ok(());
        }
    }
}

/// Copies bytes until either side closes, each chunk written `delay` after it was read (a reader
/// and a writer thread, so round trips overlap), keeping a copy in `keep`'s `sent` if given.
fn delayed_copy(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: Duration,
    keep: Option<Arc<Shared>>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let (tx, rx) = std::sync::mpsc::channel::<(std::time::Instant, Vec<u8>)>();
    let (from2, to2) = (from.try_clone()?, to.try_clone()?);
    let reader = std::thread::spawn(move || {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut chunk).unwrap_or(0);
            if let Some(sh) = &keep {
                sh.sent.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&chunk[..n]);
            }
            // An empty chunk carries the end of the stream, on time like the bytes before it.
            if tx.send((std::time::Instant::now() + delay, chunk[..n].to_vec())).is_err() || n == 0 {
                return;
            }
        }
    });
    let writer = std::thread::spawn(move || {
        while let Ok((due, bytes)) = rx.recv() {
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
            if bytes.is_empty() || to.write_all(&bytes).is_err() {
                break;
            }
        }
        end(&from2, &to2);
    });
    Ok(vec![reader, writer])
}

fn hold(sh: &Shared, p: Point, detail: String) {
    sh.trap.reached(p, || detail, || sh.stop.load(Ordering::SeqCst));
}

fn end(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

/// Reads what `from` sends next onto `buf`; false at its end (then both sides are closed).
fn read_more(from: &mut TcpStream, to: &TcpStream, chunk: &mut [u8], buf: &mut Vec<u8>) -> io::Result<bool> {
    let n = from.read(chunk)?;
    if n == 0 {
        end(from, to);
        return Ok(false);
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(true)
}

/// Commands, line by line: each is noted before it is forwarded (so its answer is expected);
/// a DELE or QUIT at the armed point is held back — the server never sees it.
fn client_to_server(sh: &Shared, mut from: TcpStream, mut to: TcpStream, conv: &Mutex<Conversation>) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut deles = 0u32;
    while read_more(&mut from, &to, &mut chunk, &mut buf)? {
        let mut out = Vec::new();
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let cmd = classify(&line);
            let logged_in = conv.lock().unwrap_or_else(|e| e.into_inner()).logged_in;
            let point = match cmd {
                Cmd::Dele => {
                    deles += 1;
                    Some(Point::OnDele(deles))
                }
                Cmd::Quit if logged_in => Some(Point::OnQuit),
                _ => None,
            };
            if let Some(p) = point
                && sh.trap.is_armed_for(p)
            {
                to.write_all(&out)?;
                hold(sh, p, String::from_utf8_lossy(&line).trim().to_string());
                end(&from, &to);
                return Ok(());
            }
            conv.lock().unwrap_or_else(|e| e.into_inner()).pending.push_back(cmd);
            sh.sent.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&line);
            out.extend_from_slice(&line);
        }
        to.write_all(&out)?;
    }
    Ok(())
}

/// Answers, line by line, matched to the commands in order; held after the armed answer (or
/// before it, for QUIT-applied and mid-RETR).
fn server_to_client(sh: &Shared, mut from: TcpStream, mut to: TcpStream, conv: &Mutex<Conversation>) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    // Inside a multi-line answer to this command; body bytes forwarded so far.
    let mut body: Option<(Cmd, usize)> = None;
    let (mut retrs, mut dele_answers) = (0u32, 0u32);
    while read_more(&mut from, &to, &mut chunk, &mut buf)? {
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(rel) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + rel + 1];
            start += rel + 1;
            let mut point = None;
            let mut before = false;
            if let Some((cmd, seen)) = &mut body {
                if line == b".\r\n" || line == b".\n" {
                    if *cmd == Cmd::Retr {
                        point = Some(Point::AfterRetr(retrs));
                    }
                    body = None;
                    conv.lock().unwrap_or_else(|e| e.into_inner()).pending.pop_front();
                } else {
                    *seen += line.len();
                    if *cmd == Cmd::Retr && *seen >= 256 && sh.trap.is_armed_for(Point::MidRetr(retrs)) {
                        point = Some(Point::MidRetr(retrs));
                    }
                }
            } else {
                let mut c = conv.lock().unwrap_or_else(|e| e.into_inner());
                let cmd = c.pending.front().copied().unwrap_or(Cmd::Single);
                let ok = line.starts_with(b"+OK");
                match cmd {
                    Cmd::Multi | Cmd::Retr if ok => {
                        if cmd == Cmd::Retr {
                            retrs += 1;
                        }
                        body = Some((cmd, 0));
                    }
                    _ => {
                        c.pending.pop_front();
                        if ok && cmd == Cmd::Pass {
                            c.logged_in = true;
                        }
                        match cmd {
                            Cmd::Dele => {
                                dele_answers += 1;
                                point = Some(Point::AfterDele(dele_answers));
                            }
                            Cmd::Quit if c.logged_in => {
                                point = Some(Point::QuitApplied);
                                before = true;
                            }
                            _ => {}
                        }
                    }
                }
            }
            match point {
                Some(p) if sh.trap.is_armed_for(p) => {
                    if !before {
                        out.extend_from_slice(line);
                    }
                    to.write_all(&out)?;
                    hold(sh, p, String::from_utf8_lossy(line).trim().to_string());
                    end(&from, &to);
                    return Ok(());
                }
                _ => out.extend_from_slice(line),
            }
        }
        buf.drain(..start);
        to.write_all(&out)?;
    }
    Ok(())
}
