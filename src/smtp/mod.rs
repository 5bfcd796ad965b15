//! Sending: the local SMTP submission listener, the durable outbound queue, and the upstream client.
//!
//! - `server`: listeners (plain + STARTTLS, implicit TLS) and what sessions share; routing and the
//!   commit to the outbox at the end of DATA.
//! - `session`: one submission connection on smtp-proto's receivers (pipelining, AUTH, DATA).
//! - `policy`: who may send as whom; Bcc removal, Reply-To/Date/Message-ID on the way out.
//! - `queue`: the worker that relays outbox rows, retries, and writes failure notices; `clock`:
//!   its time (the system's, or a test's manual one).
//! - `upstream`: the client for each account's upstream server (mail-send); `downgrade`: a
//!   message with non-ASCII header text for an upstream without SMTPUTF8.
//! - `verify`: address verification by emailed code; `notice`: the messages the bridge writes.
pub mod clock;
pub mod downgrade;
pub mod notice;
pub mod policy;
pub mod queue;
pub mod server;
pub mod session;
pub mod spool;
pub mod upstream;
pub mod verify;
