//! The IMAP listeners and what every session shares: the store (its pool) and change feed, the
//! local credentials, the TLS acceptor, the login throttle and the connection slots.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::net::listener::Slots;
use crate::net::throttle::Throttle;
use crate::store::Changes;

pub struct Shared {
    /// The store: its connection pool and the daemon's memory budget (issue 13).
    pub store: Arc<crate::store::Store>,
    pub changes: Changes,
    /// The local login (and the config), replaced on SIGHUP.
    pub live: Arc<crate::config::Live>,
    /// For STARTTLS on the plaintext port (None: not offered).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Shared with the SMTP listener: one local password, one count of guesses.
    pub throttle: Arc<Throttle>,
    /// The places of both IMAP listeners (IMAP and IMAPS), before and after login.
    pub slots: Arc<Slots>,
    /// Account health alerts for connected sessions (`* OK [ALERT] …`).
    pub alerts: tokio::sync::broadcast::Sender<String>,
    /// "A client is looking at this account's mailbox": asks the daemon to fetch it.
    pub kick: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

pub fn local_addr(l: &TcpListener) -> Option<SocketAddr> {
    l.local_addr().ok()
}
