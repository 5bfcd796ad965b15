//! popbridge: bring remote POP3 accounts into any mail client.
//!
//! Background fetchers pull mail from each POP3 account into one durable local store; a local IMAP
//! server serves that store (each account a mailbox); a local SMTP submission listener relays
//! outgoing mail through the right account's server. The map:
//!
//! - [`config`]: the TOML file → a validated model; secrets and `password_command`; edits that keep comments.
//! - [`pop3`]: the POP3 client protocol, sans-I/O (bytes in → replies out; commands in → bytes out).
//! - [`net`]: sockets, TLS (every rustls configuration) and the driver that runs `pop3` on tokio;
//!   the local servers' accept loop, connection slots and login throttle.
//! - [`mime`]: what IMAP needs from a message (envelope, body structure, dates), parsed once at insert.
//! - [`store`]: the only SQLite user — mailboxes, messages, POP state, account status.
//! - [`fetch`]: one fetch cycle per account: list, diff, pipelined download into the store, DELE per policy.
//! - [`imap`]: the local IMAP server (sessions on imap-next, FETCH/SEARCH over the stored metadata).
//! - [`memory`]: the daemon's one memory budget for message data in flight (FETCH, SMTP DATA).
//! - [`app`]: the composition root of `popbridge run` (store, listeners, fetch schedule, shutdown).
//! - [`control`]: the daemon's control socket (`popbridge fetch` goes through the running daemon).
//! - [`cli`]: the commands (`init`, `account …`, `fetch`, `status`, `run`, `client-config`, `demo`).
//! - [`demo`]: the built-in sample POP3 server and sample mail for `popbridge demo`.
//! - [`error`]: error classes, exit codes and the guidance shown with them.
#![forbid(unsafe_code)]

pub mod app;
pub mod autoconfig;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod error;
pub mod fetch;
pub mod files;
pub mod imap;
pub mod memory;
pub mod mime;
pub mod net;
pub mod notice;
pub mod pop3;
pub mod secret;
pub mod smtp;
pub mod store;

pub use error::{Error, ErrorClass, Result};

/// Runs blocking work (SQLite, file I/O) off the async runtime's workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::other(format!("internal error: {e}")))?
}
