//! The local IMAP server (RFC 3501 + IDLE, UIDPLUS, MOVE, UNSELECT, ENABLE, ID, NAMESPACE,
//! LITERAL+, SASL-IR, CHILDREN, SPECIAL-USE, SORT, SORT=DISPLAY, THREAD=REFERENCES,
//! THREAD=ORDEREDSUBJECT) over the store.
//!
//! - `server`: listeners (on `net::listener`), what sessions share (credentials, TLS, throttle, slots).
//! - `session`: one connection's state machine, its store connection, keeping the client in step.
//! - `auth`: LOGIN / AUTHENTICATE and the per-login views.
//! - `cmd`: every command after parsing, one file per group (mailbox, select, fetch, store, …).
//! - `fetch`: FETCH responses encoded straight from the stored bytes and metadata.
//! - `search`: SEARCH evaluation.
//! - `thread`: THREAD's ORDEREDSUBJECT and REFERENCES algorithms and the `* THREAD` syntax.
//! - `untagged`: EXISTS / RECENT / EXPUNGE updates.
//! - `names`: modified UTF-7, views, LIST patterns.
pub mod auth;
pub mod cmd;
pub mod fetch;
pub mod names;
pub mod search;
pub mod server;
pub mod session;
pub mod syntax;
pub mod thread;
pub mod untagged;

#[cfg(test)]
mod index_tests;
#[cfg(test)]
mod tests;
