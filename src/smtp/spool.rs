//! A submission too large to hold goes into the outbox as it arrives (issue 13: a 49 MB message
//! once peaked at 206 MB).
//!
//! During DATA the session keeps the message's header block in memory — the From check and the
//! headers added on the way out need it, and it is small (at most [`MAX_HEADER`]) — and writes the
//! body to an outbox row in state 'receiving', one chunk of about [`STEP`](crate::memory::STEP)
//! at a time, each once the previous one is written. At the end of DATA the row is checked like
//! any message and committed as 'queued' *before* the 250 (DESIGN §4: one `synchronous = FULL`
//! commit, which also makes the chunks durable); a refused, aborted or oversized message is
//! removed, and rows a crashed daemon left 'receiving' go at the next start (nobody was told
//! 250). The relay reads the body back chunk by chunk ([`chunks`]). A message smaller than a
//! step never touches the spool: it is committed whole, as before.
//!
//! Memory: one step per receiving session, charged to the daemon's budget for the whole DATA;
//! on the way out, at most two chunks per delivery (one being written, one read ahead), charged too.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::memory::{Charge, STEP};
use crate::store::Store;

/// The most header a spooled message may have before its blank line. RFC 5322 sets no limit;
/// Postfix's default `header_size_limit` is 100 KB. The header is checked and rewritten in memory.
pub const MAX_HEADER: usize = STEP;

/// What DATA delivered: a message held whole, or spooled into the outbox.
pub enum Submitted {
    Whole(Vec<u8>),
    Spooled(Spooled),
}

/// A message whose body is in the outbox's chunks of row `id` (state 'receiving').
pub struct Spooled {
    pub id: i64,
    /// The header block, blank line included.
    pub head: Vec<u8>,
    pub body_len: u64,
    pub body_8bit: bool,
}

impl Submitted {
    /// The bytes the policy checks read: the whole message, or the header block of a spooled one.
    pub fn head(&self) -> &[u8] {
        match self {
            Submitted::Whole(raw) => raw,
            Submitted::Spooled(s) => &s.head,
        }
    }

    pub fn spool_id(&self) -> Option<i64> {
        match self {
            Submitted::Whole(_) => None,
            Submitted::Spooled(s) => Some(s.id),
        }
    }
}

/// Why a message cannot be spooled.
pub enum SpoolError {
    /// No blank line within the first [`MAX_HEADER`] bytes of a message larger than that.
    HeaderTooLarge,
    /// The store refused the write (disk full…).
    Store(String),
}

/// The receiving side of one DATA.
pub struct Spooler {
    store: Arc<Store>,
    account: String,
    from: String,
    rcpts: Vec<String>,
    id: Option<i64>,
    head: Option<Vec<u8>>,
    seq: i64,
    body_len: u64,
    body_8bit: bool,
    _charge: Charge,
}

impl Spooler {
    /// Waits for the step of the memory budget this DATA holds while it runs.
    pub async fn new(store: Arc<Store>, account: &str, from: &str, rcpts: &[String]) -> Spooler {
        let charge = store.budget().take(STEP).await;
        Spooler {
            store,
            account: account.to_string(),
            from: from.to_string(),
            rcpts: rcpts.to_vec(),
            id: None,
            head: None,
            seq: 0,
            body_len: 0,
            body_8bit: false,
            _charge: charge,
        }
    }

    /// Called whenever `buf` (what DATA received since the last call) reaches a step: moves it
    /// into the outbox, keeping the header block back. `buf` is empty afterwards (unless the
    /// header is still incomplete).
    pub async fn spill(&mut self, buf: &mut Vec<u8>) -> Result<(), SpoolError> {
        if self.head.is_none() {
            let Some(end) = crate::mime::header::find_end(buf).map(|s| s.body_start) else {
                return if buf.len() > MAX_HEADER { Err(SpoolError::HeaderTooLarge) } else { Ok(()) };
            };
            let body = buf.split_off(end);
            self.head = Some(std::mem::replace(buf, body));
        }
        if buf.is_empty() {
            return Ok(());
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                let (store, account, from, rcpts) =
                    (self.store.clone(), self.account.clone(), self.from.clone(), self.rcpts.clone());
                let id = crate::blocking(move || store.outbox_spool_start(&account, &from, &rcpts))
                    .await
                    .map_err(|e| SpoolError::Store(e.message))?;
                *self.id.insert(id)
            }
        };
        let data = std::mem::take(buf);
        self.body_len += data.len() as u64;
        self.body_8bit |= !data.is_ascii();
        let (store, seq) = (self.store.clone(), self.seq);
        self.seq += 1;
        crate::blocking(move || store.outbox_spool_chunk(id, seq, &data))
            .await
            .map_err(|e| SpoolError::Store(e.message))
    }

    /// The end of DATA: the message whole when it never reached the spool, else its last chunk
    /// is written and the spooled message returned (still to be checked and committed).
    pub async fn finish(mut self, mut buf: Vec<u8>) -> Result<Submitted, SpoolError> {
        if self.head.is_none() {
            // Never spilled (smaller than a step): held whole, committed as before.
            return Ok(Submitted::Whole(buf));
        }
        self.spill(&mut buf).await?;
        let head = self.head.take().unwrap_or_default();
        match self.id.take() {
            Some(id) => {
                Ok(Submitted::Spooled(Spooled { id, head, body_len: self.body_len, body_8bit: self.body_8bit }))
            }
            // A header that filled the step and then nothing: small after all.
            None => Ok(Submitted::Whole(head)),
        }
    }

    /// DATA will not be accepted (too big, the client left): drop what was spooled.
    pub async fn discard(mut self) {
        if let Some(id) = self.id.take() {
            discard(&self.store, id).await;
        }
    }
}

/// Removes a spooled message that was not accepted.
pub async fn discard(store: &Arc<Store>, id: i64) {
    let store = store.clone();
    if let Err(e) = crate::blocking(move || store.outbox_spool_discard(Some(id))).await {
        tracing::warn!("smtp: could not remove a refused message from the outbox: {}", e.message);
    }
}

/// Commits an accepted submission to the outbox (durably, before the 250) and, with `save_sent`,
/// files the client's own bytes in the account's Sent folder. `prepared` is `msg.head()` as it will
/// be relayed (Bcc removed, headers added).
#[allow(clippy::too_many_arguments)]
pub async fn commit(
    store: &Arc<Store>,
    msg: Submitted,
    account: &str,
    from: &str,
    rcpts: &[String],
    prepared: Vec<u8>,
    message_id: String,
    subject: Option<String>,
    save_sent: bool,
) -> crate::Result<i64> {
    let store = store.clone();
    let (from, rcpts, name) = (from.to_string(), rcpts.to_vec(), account.to_string());
    crate::blocking(move || -> crate::Result<i64> {
        let (id, sent_copy) = match msg {
            Submitted::Whole(submitted) => {
                let id = store.enqueue(&name, &from, &rcpts, &prepared, Some(&message_id), subject.as_deref())?;
                (id, save_sent.then_some(submitted))
            }
            Submitted::Spooled(s) => {
                store.outbox_spool_commit(
                    s.id,
                    &prepared,
                    (s.body_len, s.body_8bit),
                    Some(&message_id),
                    subject.as_deref(),
                )?;
                // The Sent copy needs the whole message (its MIME structure is parsed once, in
                // memory): only when the user asked for copies.
                let copy = if save_sent { Some(whole(&store, s.id, s.head)?) } else { None };
                (s.id, copy)
            }
        };
        if let Some(submitted) = sent_copy {
            // The client's own bytes (Bcc kept), so a client that also files a copy is deduplicated.
            store.deliver_local(&format!("{name}/Sent"), &submitted, crate::store::flag::SEEN)?;
        }
        Ok(id)
    })
    .await
}

/// A spooled message read back whole (`head` + every chunk).
fn whole(store: &Store, id: i64, head: Vec<u8>) -> crate::Result<Vec<u8>> {
    let mut out = head;
    let mut seq = 0;
    while let Some(c) = store.outbox_chunk(id, seq)? {
        out.extend_from_slice(&c);
        seq += 1;
    }
    Ok(out)
}

/// One piece of a spooled body on its way out, with its share of the memory budget.
pub struct Chunk {
    pub data: Vec<u8>,
    _charge: Charge,
}

/// The body chunks of spooled outbox row `id`, read ahead by one: a task reads the next chunk
/// (charged to the budget) while the caller sends the current one. Ends after the last chunk;
/// an `Err` says the store could not be read.
pub fn chunks(store: Arc<Store>, id: i64) -> mpsc::Receiver<Result<Chunk, String>> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut seq = 0;
        loop {
            let charge = store.budget().take(STEP).await;
            let s = store.clone();
            let r = crate::blocking(move || s.outbox_chunk(id, seq)).await;
            let item = match r {
                Ok(Some(data)) => Ok(Chunk { data, _charge: charge }),
                Ok(None) => return,
                Err(e) => Err(e.message),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
            seq += 1;
        }
    });
    rx
}
