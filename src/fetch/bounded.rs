//! A bounded first import (`[account.pop] first_import`, `account add --since / --newest /
//! --from-now-on`): on an account's first fetch of its server (no POP state yet for its mailbox),
//! only part of what is listed is downloaded; the rest is recorded as known but not held
//! ([`Origin::Skipped`](crate::store::accounts::Origin)) — never downloaded while LIST gives it
//! the recorded size, and never DELEted under any policy (`KnownUidl::held`). Later fetches
//! download all new mail as usual.
//!
//! The choice, for messages in the order they arrived (POP numbers are given in arrival order:
//! RFC 1939 §5 numbers the maildrop's messages from 1, and servers append new mail at the end):
//! - `from-now-on`: none of the listed messages;
//! - `newest:N`: the N highest-numbered ones. Their Date headers are not read: Date is what the
//!   sender's clock said (wrong clocks, spam back-dated by years, mail resent from drafts), while
//!   "the newest N" means the last N that arrived in this mailbox — which the numbering gives
//!   without a single command;
//! - `since:DAY`: the messages that arrived on or after DAY (midnight UTC). Their arrival time is
//!   the topmost `Received:` header (the receiving server's own clock, added on delivery; the same
//!   header INTERNALDATE falls back on), else `Date:` when there is no Received. It is read with
//!   `TOP n 0`, pipelined, scanning from the newest message down and stopping at the first one
//!   older than DAY: ceil((K + 1) / WINDOW) round trips for K wanted messages (one for up to 31
//!   with PIPELINING). A binary search needs log2(N) strictly sequential round trips (14 for 10,000
//!   messages) whatever K is, and only wins when more than some 450 messages are wanted — where
//!   downloading those messages costs far more than the scan. A message whose date cannot be read
//!   is downloaded (the safe side: nothing wanted is left behind), and the scan goes on past it.
//!
//! Durability: the skipped identities are committed together with the mailbox's POP state record
//! ([`Store::first_pop_server`](crate::store::Store::first_pop_server)), before anything of the
//! cycle is downloaded. A fetch killed before that commit finds no state next time and chooses
//! again; one killed after it finds the skipped identities recorded and downloads the rest.

use crate::config::FirstImport;
use crate::error::{Error, ErrorClass, Result};
use crate::mime::MessageMeta;
use crate::net::pop3::Pop3Conn;
use crate::pop3::{Body, Command, Status};
use crate::store::accounts::NotHeld;

use super::Listed;

/// What a bounded first import leaves on the server, and what it downloads.
#[derive(Debug, Default)]
pub(super) struct Choice {
    /// Recorded as skipped: never downloaded, never deleted.
    pub(super) skip: Vec<NotHeld>,
    /// Indexes into the listing that are downloaded.
    pub(super) keep: Vec<usize>,
}

impl Choice {
    /// (messages, bytes) the import downloads.
    pub(super) fn download(&self, listed: &[Listed]) -> (u64, u64) {
        (self.keep.len() as u64, self.keep.iter().map(|&i| listed[i].size).sum())
    }
}

/// The arrival time of a message from its header block: the topmost Received's date, else Date.
fn arrival(head: &[u8]) -> Option<i64> {
    let meta = MessageMeta::extract(head);
    meta.received.or(meta.date).map(|t| t.unix)
}

/// Chooses, for `first`, which of `listed` to download. A message without an identity (no UIDL
/// and no TOP) cannot be recorded as skipped, so it is downloaded. `window`: commands in flight.
/// `fingerprints`: take the header fingerprint of every skipped message (a server whose UIDLs
/// are in doubt recognises them by it later).
pub(super) async fn choose(
    conn: &mut Pop3Conn,
    listed: &[Listed],
    first: FirstImport,
    window: usize,
    fingerprints: bool,
) -> Result<Choice> {
    // Newest first.
    let mut order: Vec<usize> = (0..listed.len()).collect();
    order.sort_unstable_by_key(|&i| std::cmp::Reverse(listed[i].n));
    let mut heads: Vec<Option<Vec<u8>>> = vec![None; listed.len()];
    let wanted: usize = match first {
        FirstImport::FromNowOn => 0,
        FirstImport::Newest(n) => (n as usize).min(order.len()),
        FirstImport::Since(day) => {
            // Scan down from the newest, pipelined, until the first message older than `day`.
            let (mut next, mut waiting) = (0usize, std::collections::VecDeque::new());
            let mut boundary: Option<usize> = None;
            loop {
                while boundary.is_none() && next < order.len() && waiting.len() < window {
                    conn.send(&Command::Top(listed[order[next]].n, 0));
                    waiting.push_back(next);
                    next += 1;
                }
                let Some(j) = waiting.pop_front() else { break };
                let r = conn.reply().await?;
                let head = match (r.status, r.body) {
                    (Status::Ok, Body::Data(h)) => h,
                    _ => {
                        return Err(Error::new(
                            ErrorClass::Protocol,
                            format!(
                                "{} refused TOP (\"{}\"), which first_import = \"since:…\" needs to read the messages' dates: nothing was downloaded; use newest:N or from-now-on for this server",
                                conn.host, r.text
                            ),
                        ));
                    }
                };
                if boundary.is_none() && arrival(&head).is_some_and(|t| t < day) {
                    boundary = Some(j);
                }
                heads[order[j]] = Some(head);
            }
            boundary.unwrap_or(order.len())
        }
    };
    let mut choice = Choice::default();
    // (index into `skip`, message number) of those still without a fingerprint.
    let mut need_print: Vec<(usize, u32)> = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        let l = &listed[i];
        match &l.key {
            Some(uidl) if rank >= wanted => {
                let fingerprint = heads[i].as_deref().map(super::keys::header_fingerprint).unwrap_or_default();
                if fingerprints && fingerprint.is_empty() {
                    need_print.push((choice.skip.len(), l.n));
                }
                choice.skip.push(NotHeld { uidl: uidl.clone(), list_size: l.size, fingerprint });
            }
            _ => choice.keep.push(i),
        }
    }
    if !need_print.is_empty() {
        let numbers: Vec<u32> = need_print.iter().map(|&(_, n)| n).collect();
        let prints = super::import_state::fingerprints(conn, &numbers, window).await?;
        for (&(j, _), p) in need_print.iter().zip(prints) {
            choice.skip[j].fingerprint = p;
        }
    }
    choice.keep.sort_unstable();
    Ok(choice)
}
