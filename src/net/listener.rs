//! The accept loop of both local servers (IMAP, SMTP submission) and their connection slots.
//!
//! A connection starts *unauthenticated*: it takes one of a few places ([`Limits::unauthenticated`])
//! and must log in within [`Limits::login_timeout`] of connecting, whatever it sends meanwhile.
//! Logging in moves it to the pool of sessions ([`Limits::authenticated`]), where only the
//! protocol's own idle rules apply (IMAP's 30-minute autologout, SMTP's 5 minutes).
//!
//! When every unauthenticated place is taken, a new connection takes the place of the oldest *idle*
//! one, which is closed. Idle means waiting for its client — to send a command, to read a reply, to
//! finish a TLS handshake — as opposed to having a login checked (the password, and after a wrong
//! one the throttle's delay: [`Slot::login_attempt`]). So clients that connect and say nothing
//! cannot keep the owner out: the owner's connection pushes the oldest of them out. A connection
//! whose login is being checked is never pushed out: a wrong password's delay is served holding its
//! place, and that is what bounds how fast anyone can guess (`net::throttle`) — were those
//! connections pushed out, a guesser would push out its own. When every place is such a one, new
//! connections wait in the kernel's accept backlog and are taken in the order they arrived as those
//! delays end, after at most `throttle::MAX_DELAY` (as Dovecot's login processes do).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot, watch};

use super::ServerIo;

/// How long a TLS handshake on an implicit-TLS listener may take (a slow machine under load needs
/// well under a second; the login timeout bounds it too).
pub const TLS_HANDSHAKE: Duration = Duration::from_secs(30);
/// After a failed accept (EMFILE and friends) wait this long, doubling up to
/// [`ACCEPT_BACKOFF_MAX`], rather than spin (mini-redis does the same).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Pushing connections out is logged as a warning at most this often (a flood would fill the log).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// One server's connection limits (both its listeners share them: plaintext and implicit TLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections that have not logged in yet (at least 1).
    pub unauthenticated: usize,
    /// Logged-in sessions; one more login is refused (temporarily) while they are all taken.
    pub authenticated: usize,
    /// From connecting to logging in, at most.
    pub login_timeout: Duration,
}

impl Limits {
    /// The IMAP listeners' share of `[limits]`.
    pub fn imap(l: &crate::config::limits::Limits) -> Limits {
        Limits {
            unauthenticated: l.imap.unauthenticated,
            authenticated: l.imap.authenticated,
            login_timeout: l.login_timeout,
        }
    }
    /// The SMTP submission listeners' share of `[limits]`.
    pub fn smtp(l: &crate::config::limits::Limits) -> Limits {
        Limits {
            unauthenticated: l.smtp.unauthenticated,
            authenticated: l.smtp.authenticated,
            login_timeout: l.login_timeout,
        }
    }
}

/// Why a connection that had not logged in was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// Its place went to a newer connection (it was the oldest idle one).
    PushedOut,
    /// It did not log in within the login timeout.
    LoginTimeout,
}

/// A login was right, but every session place is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionsFull {
    pub limit: usize,
}

/// The places of one server (IMAP, or SMTP submission).
pub struct Slots {
    /// "imap" or "smtp": for logs, and the config keys they name (`[limits] imap_unauthenticated`).
    what: &'static str,
    inner: Mutex<Inner>,
    /// A place was freed, a connection became idle, or the limits changed.
    changed: Notify,
    /// Open connections (either kind), for shutdown to wait on.
    open: watch::Sender<usize>,
}

struct Inner {
    limits: Limits,
    next: u64,
    /// Unauthenticated connections by id: ids grow, so the first idle one is the oldest.
    waiting: BTreeMap<u64, Entry>,
    sessions: usize,
    pushed_out: u64,
    warned: Option<Instant>,
}

struct Entry {
    /// Its login is being checked: never pushed out, not closed by the login timeout meanwhile.
    busy: bool,
    /// The login timeout passed while it was busy: closed when that attempt ends (unless it logged in).
    expired: bool,
    /// Tells the connection's task to close it; dropped without a word when it logs in.
    close: oneshot::Sender<Closed>,
}

impl Inner {
    fn has_room(&self) -> bool {
        self.waiting.len() < self.limits.unauthenticated || self.waiting.values().any(|e| !e.busy)
    }
}

impl Slots {
    pub fn new(what: &'static str, limits: Limits) -> Arc<Slots> {
        Arc::new(Slots {
            what,
            inner: Mutex::new(Inner {
                limits,
                next: 0,
                waiting: BTreeMap::new(),
                sessions: 0,
                pushed_out: 0,
                warned: None,
            }),
            changed: Notify::new(),
            open: watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// New limits (a reload) apply to the next connections and logins; nobody is closed for them.
    pub fn set_limits(&self, limits: Limits) {
        self.lock().limits = limits;
        self.changed.notify_waiters();
    }

    pub fn limits(&self) -> Limits {
        self.lock().limits
    }

    /// (connections not logged in, logged-in sessions).
    pub fn counts(&self) -> (usize, usize) {
        let m = self.lock();
        (m.waiting.len(), m.sessions)
    }

    /// Waits until a new connection can have a place: a free one, or an idle connection's.
    pub async fn room(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().has_room() {
                return;
            }
            notified.await;
        }
    }

    /// Gives a new connection a place, pushing the oldest idle connection out if they are all
    /// taken (waits while every one is checking a login). The receiver says when to close it.
    pub async fn admit(self: &Arc<Self>) -> (Slot, oneshot::Receiver<Closed>) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(admitted) = self.try_admit() {
                return admitted;
            }
            notified.await;
        }
    }

    fn try_admit(self: &Arc<Self>) -> Option<(Slot, oneshot::Receiver<Closed>)> {
        let mut m = self.lock();
        // `while`: after a reload lowered the limit there may be more than one too many.
        while m.waiting.len() >= m.limits.unauthenticated {
            let oldest_idle = m.waiting.iter().find(|(_, e)| !e.busy).map(|(id, _)| *id)?;
            if let Some(e) = m.waiting.remove(&oldest_idle) {
                // The receiver may be gone already (the connection is closing): nothing to tell.
                let _ = e.close.send(Closed::PushedOut);
            }
            m.pushed_out += 1;
            let now = Instant::now();
            if m.warned.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
                m.warned = Some(now);
                tracing::warn!(
                    "{what}: all {limit} places for connections that have not logged in were taken; the oldest idle \
                     one was closed ({n} so far). Clients that connect and do not log in, or a flood: see \
                     [limits] {what}_unauthenticated",
                    what = self.what,
                    limit = m.limits.unauthenticated,
                    n = m.pushed_out,
                );
            }
        }
        let id = m.next;
        m.next += 1;
        let (close, closed) = oneshot::channel();
        m.waiting.insert(id, Entry { busy: false, expired: false, close });
        drop(m);
        self.open.send_modify(|n| *n += 1);
        Some((Slot { slots: self.clone(), id, authenticated: false }, closed))
    }

    /// The login timeout of connection `id` passed: true if it is to be closed now (it is idle);
    /// a busy one is closed when its attempt ends (unless it logged in), a logged-in one never.
    fn expire(&self, id: u64) -> bool {
        let mut m = self.lock();
        let idle = match m.waiting.get_mut(&id) {
            None => return false,
            Some(e) if e.busy => {
                e.expired = true;
                return false;
            }
            Some(_) => m.waiting.remove(&id).is_some(),
        };
        drop(m);
        self.changed.notify_waiters();
        idle
    }

    /// Waits until every connection has closed (shutdown).
    pub async fn closed(&self) {
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|n| *n == 0).await;
    }
}

/// One connection's place. Dropping it gives the place back.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    authenticated: bool,
}

impl Slot {
    /// Marks a login attempt (the password check, and a wrong one's delay, until the guard is
    /// dropped): meanwhile the connection is not pushed out nor closed by the login timeout.
    pub fn login_attempt(&self) -> Busy {
        if let Some(e) = self.slots.lock().waiting.get_mut(&self.id) {
            e.busy = true;
        }
        Busy { slots: self.slots.clone(), id: self.id }
    }

    /// The connection logged in: it moves to the sessions' pool (no login timeout, never pushed
    /// out), unless that is full; then it stays as it was, and the client is told to try later.
    pub fn authenticated(&mut self) -> Result<(), SessionsFull> {
        if self.authenticated {
            return Ok(());
        }
        let mut m = self.slots.lock();
        if m.sessions >= m.limits.authenticated {
            return Err(SessionsFull { limit: m.limits.authenticated });
        }
        m.sessions += 1;
        // Its entry goes, and with it the sender: the connection's task stops watching.
        m.waiting.remove(&self.id);
        self.authenticated = true;
        drop(m);
        self.slots.changed.notify_waiters();
        Ok(())
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut m = self.slots.lock();
            if self.authenticated {
                m.sessions = m.sessions.saturating_sub(1);
            } else {
                m.waiting.remove(&self.id);
            }
        }
        self.slots.changed.notify_waiters();
        self.slots.open.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A login attempt under way (see [`Slot::login_attempt`]).
pub struct Busy {
    slots: Arc<Slots>,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        {
            let mut m = self.slots.lock();
            let expired = match m.waiting.get_mut(&self.id) {
                Some(e) => {
                    e.busy = false;
                    e.expired
                }
                None => false,
            };
            if expired && let Some(e) = m.waiting.remove(&self.id) {
                let _ = e.close.send(Closed::LoginTimeout);
            }
        }
        self.slots.changed.notify_waiters();
    }
}

/// What a session gets: the connection (TLS already up on an implicit-TLS listener), its place,
/// and the daemon's shutdown signal.
pub struct Accepted {
    pub io: ServerIo,
    pub peer: SocketAddr,
    pub tls: bool,
    pub slot: Slot,
    pub shutdown: watch::Receiver<bool>,
}

/// Accepts connections until `shutdown` turns true, each in a task of its own running `session`.
/// A connection is accepted only when it can have a place (see the module's doc); it is closed
/// when it is pushed out or does not log in in time, wherever its session is waiting.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    implicit_tls: Option<tokio_rustls::TlsAcceptor>,
    slots: Arc<Slots>,
    mut shutdown: watch::Receiver<bool>,
    session: F,
) where
    F: Fn(Accepted) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let session = Arc::new(session);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        // Without a place to give, leave new connections in the kernel's backlog: they are then
        // taken in the order they arrived, and nobody is refused.
        tokio::select! {
            _ = slots.room() => {}
            _ = shutdown.changed() => return,
        }
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    x
                }
                Err(e) => {
                    tracing::warn!("{}: accept failed: {e}", slots.what);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        // The other listener of this server may have taken the place meanwhile: then wait for one.
        let (slot, closed) = tokio::select! {
            s = slots.admit() => s,
            _ = shutdown.changed() => return,
        };
        tokio::spawn(connection(tcp, peer, implicit_tls.clone(), slot, closed, shutdown.clone(), session.clone()));
    }
}

/// One connection: TLS (implicit-TLS listeners), then the session — cut short (dropped, which
/// closes the socket) if it is pushed out or misses the login timeout before logging in.
async fn connection<F, Fut>(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    slot: Slot,
    mut closed: oneshot::Receiver<Closed>,
    shutdown: watch::Receiver<bool>,
    session: Arc<F>,
) where
    F: Fn(Accepted) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = slot.slots.clone();
    let id = slot.id;
    let login_by = tokio::time::Instant::now() + slots.limits().login_timeout;
    let run = async move {
        let io = match tls {
            Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => ServerIo::Tls(Box::new(s)),
                _ => return,
            },
            None => ServerIo::Plain(tcp),
        };
        let tls = matches!(io, ServerIo::Tls(_));
        session(Accepted { io, peer, tls, slot, shutdown }).await;
    };
    tokio::pin!(run);
    let login_timer = tokio::time::sleep_until(login_by);
    tokio::pin!(login_timer);
    let (mut watching, mut timing) = (true, true);
    loop {
        tokio::select! {
            // The session ended by itself (its slot went with it).
            _ = &mut run => return,
            // Pushed out, or late after a failed login; Err: it logged in (the sender is gone).
            r = &mut closed, if watching => match r {
                Ok(why) => {
                    tracing::debug!("{}: closed a connection from {peer} that had not logged in: {why:?}", slots.what);
                    return;
                }
                Err(_) => watching = false,
            },
            // The login timeout: idle now → close; busy → when its attempt fails; logged in → never.
            _ = &mut login_timer, if timing => {
                timing = false;
                if slots.expire(id) {
                    tracing::debug!("{}: closed a connection from {peer} that did not log in in time", slots.what);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(unauthenticated: usize, authenticated: usize) -> Limits {
        Limits { unauthenticated, authenticated, login_timeout: Duration::from_secs(60) }
    }

    fn now_or_never<T>(f: impl Future<Output = T>) -> Option<T> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(t) => Some(t),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn a_full_pool_pushes_out_the_oldest_idle_connection_not_a_busy_one() {
        let slots = Slots::new("imap", limits(3, 10));
        let (a, mut a_closed) = now_or_never(slots.admit()).expect("a place");
        let (b, mut b_closed) = now_or_never(slots.admit()).expect("a place");
        let (_c, mut c_closed) = now_or_never(slots.admit()).expect("a place");
        let busy = a.login_attempt();
        let (_d, _) = now_or_never(slots.admit()).expect("a place: b's");
        assert_eq!(a_closed.try_recv().ok(), None, "a is checking a login: kept");
        assert_eq!(b_closed.try_recv().ok(), Some(Closed::PushedOut), "b is the oldest idle one");
        assert_eq!(c_closed.try_recv().ok(), None);
        drop(b);
        assert_eq!(slots.counts(), (3, 0));
        drop(busy);
        let (_e, _) = now_or_never(slots.admit()).expect("a place: a's, idle again");
        assert_eq!(a_closed.try_recv().ok(), Some(Closed::PushedOut));
        assert_eq!(c_closed.try_recv().ok(), None);
    }

    #[test]
    fn while_every_place_checks_a_login_new_connections_wait() {
        let slots = Slots::new("smtp", limits(2, 10));
        let (a, _) = now_or_never(slots.admit()).expect("a place");
        let (b, _) = now_or_never(slots.admit()).expect("a place");
        let (busy_a, busy_b) = (a.login_attempt(), b.login_attempt());
        assert!(now_or_never(slots.room()).is_none(), "no room");
        assert!(now_or_never(slots.admit()).is_none(), "no place");
        drop(busy_a);
        assert!(now_or_never(slots.room()).is_some(), "a is idle again: room");
        drop(busy_b);
    }

    #[test]
    fn a_login_moves_the_connection_to_the_sessions_pool() {
        let slots = Slots::new("imap", limits(1, 1));
        let (mut a, mut a_closed) = now_or_never(slots.admit()).expect("a place");
        a.authenticated().expect("a session place");
        assert_eq!(slots.counts(), (0, 1));
        assert!(a_closed.try_recv().is_err(), "a logged-in connection is never told to close");
        let (mut b, _) = now_or_never(slots.admit()).expect("the unauthenticated place is free again");
        assert_eq!(b.authenticated(), Err(SessionsFull { limit: 1 }));
        assert_eq!(slots.counts(), (1, 1), "b is still waiting to log in");
        drop(a);
        b.authenticated().expect("a's session place");
        assert_eq!(slots.counts(), (0, 1));
        drop(b);
        assert_eq!(slots.counts(), (0, 0));
        assert!(now_or_never(slots.closed()).is_some(), "everything is closed");
    }

    #[test]
    fn the_login_timeout_closes_an_idle_connection_and_waits_for_a_busy_one() {
        let slots = Slots::new("imap", limits(5, 5));
        let (a, _) = now_or_never(slots.admit()).expect("a place");
        assert!(slots.expire(a.id), "idle: closed now");
        let (b, mut b_closed) = now_or_never(slots.admit()).expect("a place");
        let busy = b.login_attempt();
        assert!(!slots.expire(b.id), "busy: not now");
        assert!(b_closed.try_recv().is_err());
        drop(busy);
        assert_eq!(b_closed.try_recv().ok(), Some(Closed::LoginTimeout), "after its failed attempt");
        let (mut c, _) = now_or_never(slots.admit()).expect("a place");
        let busy = c.login_attempt();
        assert!(!slots.expire(c.id));
        c.authenticated().expect("a session place");
        drop(busy);
        assert_eq!(slots.counts().1, 1, "logged in while busy: it stays");
        assert!(!slots.expire(c.id), "a session has no login timeout");
    }

    #[test]
    fn a_lowered_limit_is_reached_by_pushing_out_idle_connections() {
        let slots = Slots::new("imap", limits(4, 4));
        let held: Vec<_> = (0..4).map(|_| now_or_never(slots.admit()).expect("a place")).collect();
        slots.set_limits(limits(2, 4));
        let (_new, _) = now_or_never(slots.admit()).expect("a place");
        assert_eq!(slots.counts().0, 2);
        let pushed = held.into_iter().filter_map(|(_, mut c)| c.try_recv().ok()).count();
        assert_eq!(pushed, 3);
    }
}
