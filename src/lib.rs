//! popbridge: bring remote POP3 accounts into any mail client.
//!
//! Background fetchers pull mail from each POP3 account into one durable local store; a local IMAP
//! server serves that store (each account a mailbox); a local SMTP submission listener relays
//! outgoing mail through the right account's server.
//!
//! The map, by layer, lowest first: a module refers only to modules in layers below its own, and
//! the modules of one layer are independent of each other (`tests/layers.rs` checks it).
//!
//! 0. [`error`]: error classes, exit codes and the guidance shown with them (used by everything);
//!    [`sasl`]: the OAuth 2 SASL messages (OAUTHBEARER, XOAUTH2) POP3 and SMTP send.
//! 1. Cores, no policy of their own:
//!    - [`secret`]: a string whose `Debug` never shows it (passwords, tokens);
//!    - [`memory`]: the daemon's one memory budget for message data in flight (FETCH, SMTP DATA);
//!    - [`mime`]: what IMAP needs from a message (envelope, body structure, dates), parsed once at
//!      insert, and its stored encoding;
//!    - [`mutf7`]: IMAP's modified UTF-7 for mailbox names (the local server's and a target's);
//!    - [`pop3`]: the POP3 client protocol, sans-I/O (bytes in → replies out; commands in → bytes out);
//!    - [`files`]: private files and directories (0600/0700) for the config, the store, the keys;
//!    - [`notice`]: the sender every message the bridge writes itself carries.
//! 2. [`config`]: the TOML file → a validated model; secrets and `password_command`; edits that
//!    keep comments.
//! 3. [`store`]: the only SQLite user — mailboxes, messages, POP state, outbox, account status;
//!    [`autoconfig`]: Thunderbird autoconfig XML for the local servers (from the config alone).
//! 4. [`net`]: sockets, TLS (every rustls configuration) and the driver that runs `pop3` on tokio;
//!    the local servers' accept loop, connection slots and login throttle.
//!    [`oauth`]: OAuth 2 sign-in (PKCE with a loopback redirect, device grant), the token files,
//!    refresh ahead of expiry (its token endpoint is reached over `net`'s TLS).
//! 5. The services:
//!    - [`fetch`]: one fetch cycle per account (connect, list, diff, pipelined download into the
//!      store, DELE per policy), the schedule, account health notices;
//!    - [`imap`]: the local IMAP server (sessions on imap-next, FETCH/SEARCH/SORT/THREAD over
//!      the stored metadata);
//!    - [`smtp`]: the local submission server, the relay queue, the upstream client, address
//!      verification, bounce notices.
//! 6. [`control`]: the daemon's control socket (`popbridge fetch` goes through the running daemon).
//! 7. [`app`]: the composition root of `popbridge run` (store, listeners, fetch schedule, reload,
//!    shutdown).
//! 8. [`demo`]: the built-in sample POP3 server and sample mail for `popbridge demo`.
//! 9. [`setup`]: finding an address's servers (a built-in provider table, Thunderbird autoconfig,
//!    DNS SRV) for `account discover` and the wizard; provider quirks explained by `account test`.
//! 10. [`cli`]: the commands (`init`, `account …`, `fetch`, `status`, `run`, `client-config`, `demo`);
//!     `main.rs` parses the command line and turns errors into exit codes.
//!
//! Below them all, this root: [`blocking`] (SQLite and file work off the async workers) and the
//! [`Error`] re-export.
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
pub mod mutf7;
pub mod net;
pub mod notice;
pub mod oauth;
pub mod pop3;
pub mod sasl;
pub mod secret;
pub mod setup;
pub mod smtp;
pub mod store;

pub use error::{Error, ErrorClass, Result};

/// Runs blocking work (SQLite, file I/O) off the async runtime's workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::other(format!("internal error: {e}")))?
}
