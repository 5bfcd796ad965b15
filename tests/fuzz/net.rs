//! What the two session targets share: a runtime whose threads are recognisable (so a panic in a
//! server task is noticed: tokio would only print it and drop the connection), a session driver
//! that runs many fuzzed connections at once, each from its own loopback address, and checks that
//! each one ends; and epochs: every so many sessions the target is checked at rest (a fresh
//! well-formed session, the store's invariants) and replaced by a fresh one, so a long run does
//! not pile up thousands of mailboxes.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use super::mutate::Mutator;
use super::props::Rng;
use super::{Budget, escaped, save_failure};

pub type Fut<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Names of the threads that panicked, if they belong to a fuzz runtime (`fuzz-<target>`).
static PANICKED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn thread_name(target: &str) -> String {
    format!("fuzz-{target}")
}

/// The runtime a session target runs on (server and client side): its threads are named after the
/// target, so a panic on one of them is counted against that target.
pub fn runtime(target: &str) -> tokio::runtime::Runtime {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(name) = std::thread::current().name().filter(|n| n.starts_with("fuzz-")) {
                PANICKED.lock().unwrap_or_else(|p| p.into_inner()).push(name.to_string());
            }
            prev(info);
        }));
    });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(thread_name(target))
        .enable_all()
        .build()
        .unwrap()
}

fn panicked(target: &str) -> bool {
    let name = thread_name(target);
    PANICKED.lock().unwrap_or_else(|p| p.into_inner()).contains(&name)
}

/// A fresh loopback source address per connection: the login throttle counts failures per
/// address, so sessions do not slow each other down.
pub fn next_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 0x00fe_0000;
    Ipv4Addr::from(0x7f01_0000 + n)
}

/// The login throttle (`net::throttle`) makes the 2nd, 3rd… login attempt of an address, of a
/// login name, and (beyond a few) of everyone wait 1, 2, 4… 16 s. That is tested elsewhere
/// (tests/security.rs, tests/limits.rs); here it would only make the fuzzer wait, so while
/// sessions run, the target's throttle is told to forget every count every millisecond. Attempts
/// within the same millisecond still wait; session deadlines allow for that.
pub struct InFlight(Mutex<HashSet<IpAddr>>);

impl InFlight {
    pub fn new(forgive: impl Fn(IpAddr) + Send + Sync + 'static) -> Arc<InFlight> {
        let me = Arc::new(InFlight(Mutex::new(HashSet::new())));
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            while let Some(me) = weak.upgrade() {
                let ips: Vec<IpAddr> = me.0.lock().unwrap().iter().copied().collect();
                drop(me);
                for ip in ips {
                    forgive(ip);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        me
    }

    pub fn add(&self, ip: Ipv4Addr) {
        self.0.lock().unwrap().insert(IpAddr::V4(ip));
    }

    pub fn remove(&self, ip: Ipv4Addr) {
        self.0.lock().unwrap().remove(&IpAddr::V4(ip));
    }
}

/// A session target's listener task on a loopback port: its address, its shutdown, and the
/// fuzzed sessions in flight (whose login throttle counts it forgives).
pub struct Served {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    inflight: Arc<InFlight>,
}

impl Served {
    /// Binds 127.0.0.1:0 and spawns `listen(listener, shutdown)`; `forgive` as for [`InFlight::new`].
    pub async fn start<F>(
        listen: impl FnOnce(tokio::net::TcpListener, watch::Receiver<bool>) -> F,
        forgive: impl Fn(IpAddr) + Send + Sync + 'static,
    ) -> Served
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(listen(listener, rx));
        Served { addr, shutdown, task: tokio::sync::Mutex::new(Some(task)), inflight: InFlight::new(forgive) }
    }

    /// One fuzzed connection from `ip` ([`exchange`]), in flight meanwhile.
    pub async fn exchange(&self, ip: Ipv4Addr, input: &[u8]) -> Result<Transcript, String> {
        self.inflight.add(ip);
        let out = exchange(self.addr, ip, input).await;
        self.inflight.remove(ip);
        out
    }

    /// Tells the listener to shut down and waits for it.
    pub async fn stop(&self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.task.lock().await.take() {
            let _ = t.await;
        }
    }
}

/// A TLS acceptor for a fresh local certificate under `dir/tls` (what `popbridge init` makes).
pub fn tls_acceptor(dir: &std::path::Path) -> tokio_rustls::TlsAcceptor {
    let (cert, _) = popbridge::net::tls::ensure_local_cert(&dir.join("tls")).unwrap();
    tokio_rustls::TlsAcceptor::from(cert.server_config().unwrap())
}

/// How long a session may take: generous, plus the throttle's worst case for each word that
/// could be a failed login.
pub fn deadline(input: &[u8]) -> Duration {
    let lower = input.to_ascii_lowercase();
    let logins = lower.windows(4).filter(|w| *w == b"auth" || *w == b"logi").count()
        + lower.windows(3).filter(|w| *w == b"bwu" || *w == b"ag1").count();
    Duration::from_secs(30 + 17 * logins as u64)
}

pub async fn connect(addr: SocketAddr, ip: Ipv4Addr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
    let tcp = sock.connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// What the server sent. `complete` is false when the connection was reset rather than closed:
/// a server that closes with client bytes still unread makes the kernel send RST, which may drop
/// the tail of what it sent (so the last response may be cut short).
pub struct Transcript {
    pub bytes: Vec<u8>,
    pub complete: bool,
}

/// Sends `input` from `ip` in pieces (sizes derived from the input), half-closes, and reads
/// until the server closes. Err: the server did not close within the deadline (a hang).
pub async fn exchange(addr: SocketAddr, ip: Ipv4Addr, input: &[u8]) -> Result<Transcript, String> {
    let tcp = connect(addr, ip).await.map_err(|e| format!("connect: {e}"))?;
    let (mut rd, mut wr) = tcp.into_split();
    let seed = input.iter().fold(input.len() as u64, |h, b| h.rotate_left(5) ^ u64::from(*b));
    let data = input.to_vec();
    let writer = tokio::spawn(async move {
        let mut rng = Rng::new(seed);
        let mut rest = &data[..];
        while !rest.is_empty() {
            // Mostly all at once (pipelined), sometimes in small pieces with pauses.
            let n = if rng.below(3) == 0 { 1 + rng.below(64) } else { rest.len() };
            let n = n.min(rest.len());
            if wr.write_all(&rest[..n]).await.is_err() {
                return; // the server closed early (LOGOUT, QUIT, too many failures): fine
            }
            rest = &rest[n..];
            if rng.below(4) == 0 {
                tokio::task::yield_now().await;
            }
        }
        let _ = wr.shutdown().await;
    });
    let limit = deadline(input);
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return true,
                Err(_) => return false,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    match read {
        Ok(complete) => Ok(Transcript { bytes: out, complete }),
        Err(_) => Err(format!(
            "hang: the server neither closed nor finished within {limit:?}; it sent {} bytes: {}",
            out.len(),
            escaped(&out[out.len().saturating_sub(500)..])
        )),
    }
}

/// A target the session driver runs.
pub trait Target: Send + Sync + 'static {
    /// A fresh server over a fresh store.
    fn start() -> Fut<Arc<Self>>;
    /// One fuzzed connection; Err says which property failed.
    fn session(self: Arc<Self>, ip: Ipv4Addr, input: Vec<u8>) -> Fut<Result<(), String>>;
    /// With no session running: a well-formed session still works and the store is consistent.
    fn check(self: Arc<Self>) -> Fut<Result<(), String>>;
    /// Stops the server.
    fn stop(self: Arc<Self>) -> Fut<()>;
}

/// Sessions per epoch: a fresh target after this many.
const EPOCH: usize = 1500;
/// Connections at once. More hides latency (and throttle waits); the machine has 2 cores.
const CONCURRENCY: usize = 12;

/// Runs the corpus, then mutants until the budget is spent, `CONCURRENCY` at a time.
pub async fn drive<T: Target>(budget: &Budget, dict: &[&[u8]], lines: &[&[u8]]) -> (usize, usize, String) {
    let corpus = super::load_corpus(budget.target);
    let mut m = Mutator::new(budget.seed, dict, lines, 8 * 1024);
    let (mut from_corpus, mut mutated, mut epochs) = (0usize, 0usize, 0usize);
    let mut target = T::start().await;
    let mut in_epoch = 0;
    let mut set = tokio::task::JoinSet::new();
    let mut running: HashMap<tokio::task::Id, Vec<u8>> = HashMap::new();
    loop {
        let more = from_corpus < corpus.len() || !budget.done(mutated);
        while more && set.len() < CONCURRENCY && in_epoch < EPOCH {
            let input = if from_corpus < corpus.len() {
                from_corpus += 1;
                corpus[from_corpus - 1].clone()
            } else {
                mutated += 1;
                m.mutate(&corpus)
            };
            in_epoch += 1;
            let (t, i) = (target.clone(), input.clone());
            let h = set.spawn(async move { t.session(next_ip(), i).await });
            running.insert(h.id(), input);
            if from_corpus == corpus.len() && budget.done(mutated) {
                break;
            }
        }
        let Some(joined) = set.join_next_with_id().await else {
            // Epoch over (or all done): check at rest, then a fresh target.
            epochs += 1;
            if let Err(e) = target.clone().check().await {
                fail(budget, &[], &format!("after epoch {epochs}: {e}"));
            }
            target.clone().stop().await;
            if panicked(budget.target) {
                fail(budget, &[], &format!("a server task panicked at the end of epoch {epochs} (see above)"));
            }
            if from_corpus == corpus.len() && budget.done(mutated) {
                break;
            }
            target = T::start().await;
            in_epoch = 0;
            continue;
        };
        let (id, result) = match joined {
            Ok((id, r)) => (id, r),
            Err(e) => (e.id(), Err(format!("the harness task failed: {e}"))),
        };
        let input = running.remove(&id).unwrap_or_default();
        if let Err(e) = result {
            fail(budget, &[input], &e);
        }
        if panicked(budget.target) {
            // Some running session made a server task panic: every one of them is a suspect.
            let mut suspects = vec![input];
            suspects.extend(running.values().cloned());
            fail(budget, &suspects, "a server task panicked (see the panic message above)");
        }
    }
    (from_corpus, mutated, format!(", {epochs} epochs of at most {EPOCH} sessions"))
}

fn fail(budget: &Budget, inputs: &[Vec<u8>], why: &str) -> ! {
    let saved: Vec<String> =
        inputs.iter().map(|i| format!("  {}\n    {}", save_failure(budget.target, i).display(), escaped(i))).collect();
    panic!("fuzz {}: finding — {why}\ninput(s):\n{}", budget.target, saved.join("\n"));
}

/// A plain client for the well-formed sessions of `check`: raw lines, literals read whole.
pub struct LineClient {
    pub tcp: TcpStream,
    buf: Vec<u8>,
}

impl LineClient {
    pub async fn connect(addr: SocketAddr) -> Result<LineClient, String> {
        let tcp = connect(addr, next_ip()).await.map_err(|e| format!("fresh session: connect: {e}"))?;
        Ok(LineClient { tcp, buf: Vec::new() })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.tcp.write_all(bytes).await.map_err(|e| format!("fresh session: write: {e}"))
    }

    async fn fill(&mut self) -> Result<(), String> {
        let mut tmp = [0u8; 16 * 1024];
        match tokio::time::timeout(Duration::from_secs(20), self.tcp.read(&mut tmp)).await {
            Ok(Ok(0)) => Err(format!("fresh session: closed; pending {}", escaped(&self.buf))),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(())
            }
            Ok(Err(e)) => Err(format!("fresh session: read: {e}")),
            Err(_) => Err(format!("fresh session: no answer in 20 s; pending {}", escaped(&self.buf))),
        }
    }

    /// One line, CRLF included.
    pub async fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(p) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=p).collect();
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            self.fill().await?;
        }
    }

    /// One IMAP response: a line, and when it announces a literal, the literal and the rest.
    pub async fn response(&mut self) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let line = self.line().await?;
            out.push_str(&line);
            match literal_len(line.as_bytes()) {
                Some(n) => {
                    while self.buf.len() < n {
                        self.fill().await?;
                    }
                    let lit: Vec<u8> = self.buf.drain(..n).collect();
                    out.push_str(&String::from_utf8_lossy(&lit));
                }
                None => return Ok(out),
            }
        }
    }
}

/// The length announced by a line ending in `{n}\r\n`.
pub fn literal_len(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}\r\n")?;
    let open = body.iter().rposition(|b| *b == b'{')?;
    let digits = &body[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The store's invariants, read in one transaction on a connection of its own: SQLite's own
/// checks, and the counters every write must keep in step with the rows.
pub fn store_invariants(store: &popbridge::store::Store) -> Result<(), String> {
    let mut conn = store.connection().map_err(|e| e.message)?;
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    let one = |sql: &str| -> Result<String, String> {
        tx.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
            .map(|v| format!("{v:?}"))
            .map_err(|e| format!("{sql}: {e}"))
    };
    let ok = one("PRAGMA integrity_check")?;
    if ok != "Text(\"ok\")" {
        return Err(format!("integrity_check: {ok}"));
    }
    let zero = [
        ("foreign keys broken", "SELECT count(*) FROM pragma_foreign_key_check"),
        (
            "mailboxes whose message count is wrong",
            "SELECT count(*) FROM mailboxes m WHERE messages != (SELECT count(*) FROM messages WHERE mailbox_id = m.id)",
        ),
        (
            "mailboxes whose unseen count is wrong",
            "SELECT count(*) FROM mailboxes m
             WHERE unseen != (SELECT count(*) FROM messages WHERE mailbox_id = m.id AND flags & 1 = 0)",
        ),
        (
            "mailboxes whose UIDNEXT is not above every UID",
            "SELECT count(*) FROM mailboxes m WHERE uidnext <= (SELECT coalesce(max(uid), 0) FROM messages WHERE mailbox_id = m.id)",
        ),
        (
            "mailboxes whose HIGHESTMODSEQ is below a message's",
            "SELECT count(*) FROM mailboxes m
             WHERE highestmodseq < (SELECT coalesce(max(modseq), 0) FROM messages WHERE mailbox_id = m.id)",
        ),
        ("messages in no mailbox", "SELECT count(*) FROM messages WHERE mailbox_id NOT IN (SELECT id FROM mailboxes)"),
        ("messages without a body", "SELECT count(*) FROM messages WHERE body_id NOT IN (SELECT id FROM bodies)"),
        ("bodies no message uses", "SELECT count(*) FROM bodies WHERE id NOT IN (SELECT body_id FROM messages)"),
        (
            "accounts without their mailbox",
            "SELECT count(*) FROM accounts WHERE mailbox_id NOT IN (SELECT id FROM mailboxes)",
        ),
    ];
    for (what, sql) in zero {
        let n = one(sql)?;
        if n != "Integer(0)" {
            return Err(format!("store inconsistent: {what}: {n}"));
        }
    }
    Ok(())
}
