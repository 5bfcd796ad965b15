//! Listeners and what every session shares: the store's location and change feed, the local
//! credentials, the TLS acceptor, the login throttle and the connection cap.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::net::imap::ServerIo;
use crate::store::Changes;

/// Most simultaneous IMAP connections. Thunderbird opens up to ~5 per account; a few clients and
/// accounts stay far below this. Further connections wait in the accept backlog (not refused).
pub const MAX_CONNECTIONS: usize = 256;

pub struct Shared {
    /// The store: its connection pool and the daemon's memory budget (issue 13).
    pub store: Arc<crate::store::Store>,
    pub store_path: PathBuf,
    pub changes: Changes,
    /// The local login (and the config), replaced on SIGHUP.
    pub live: Arc<crate::app::Live>,
    /// For STARTTLS on the plaintext port (None: not offered).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub throttle: Throttle,
    pub connections: Arc<Semaphore>,
    /// Account health alerts for connected sessions (`* OK [ALERT] …`).
    pub alerts: tokio::sync::broadcast::Sender<String>,
    /// "A client is looking at this account's mailbox": asks the daemon to fetch it.
    pub kick: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

/// A growing delay after failed logins, per client address: 0 s for the first failure, then 1, 2,
/// 4… up to 16 s. It slows password guessing (all local clients share 127.0.0.1, so it is deliberately
/// mild) and is forgotten after 15 minutes without failures or at the first success.
#[derive(Default)]
pub struct Throttle(Mutex<HashMap<IpAddr, (u32, Instant)>>);

impl Throttle {
    const FORGET: Duration = Duration::from_secs(15 * 60);

    pub fn failed(&self, ip: IpAddr) -> Duration {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        m.retain(|_, (_, t)| now.duration_since(*t) < Self::FORGET);
        let e = m.entry(ip).or_insert((0, now));
        e.0 += 1;
        e.1 = now;
        match e.0 {
            0 | 1 => Duration::ZERO,
            n => Duration::from_secs(1u64 << (n - 2).min(4)),
        }
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&ip);
    }
}

/// Accepts connections until `shutdown` turns true; each connection gets its own task. A permit of
/// the connection cap is taken *before* accepting, so excess clients wait instead of failing.
pub async fn listen(
    listener: TcpListener,
    implicit_tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            p = shared.connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.changed() => return,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => { backoff = Duration::from_millis(10); x }
                Err(e) => {
                    // EMFILE and friends: wait a little rather than spin (mini-redis does the same).
                    tracing::warn!("imap: accept failed: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let tls = implicit_tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let io = match tls {
                Some(acceptor) => match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => ServerIo::Tls(Box::new(s)),
                    _ => return,
                },
                None => ServerIo::Plain(tcp),
            };
            let is_tls = matches!(io, ServerIo::Tls(_));
            super::session::serve(shared, io, peer, is_tls, shutdown).await;
            drop(permit);
        });
    }
}

pub fn local_addr(l: &TcpListener) -> Option<SocketAddr> {
    l.local_addr().ok()
}
