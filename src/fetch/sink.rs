//! The sink: a dedicated thread that writes fetched messages into the store while the network side
//! keeps downloading. It groups messages into one transaction until the batch is old enough or big
//! enough, commits (one fsync for the batch), and only then reports the messages as stored — which
//! is what allows the fetcher to DELE them.
//!
//! Parsing metadata and SQLite both block, so they run here, never on a tokio worker. Memory is
//! bounded by the fetcher: each message carries a semaphore permit for its size, released once the
//! message is in the transaction.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use crate::error::Error;
use crate::store::{Added, Delivery, Identity, Stored};

/// Longest a stored message waits for its commit: bounds what a crash can cost (it is fetched
/// again) and how long a DELE waits.
pub const MAX_BATCH_AGE: Duration = Duration::from_millis(250);
/// A batch this big is committed at once, whatever its age.
pub const MAX_BATCH_BYTES: u64 = 32 * 1024 * 1024;

pub enum ToSink {
    Message { n: u32, identity: Identity, raw: Vec<u8>, fetched_at: i64, permit: Option<OwnedSemaphorePermit> },
}

#[derive(Debug)]
pub enum FromSink {
    /// Durable now: (message number on the server, what was stored).
    Committed(Vec<(u32, Stored)>),
    /// The identity was already stored (a content-keyed message seen again): nothing written.
    Known(u32),
    /// The store failed; nothing after the last `Committed` is stored.
    Failed(Error),
}

pub struct Sink {
    pub tx: mpsc::Sender<ToSink>,
    pub rx: tokio::sync::mpsc::UnboundedReceiver<FromSink>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    pub fn spawn(delivery: Delivery) -> Sink {
        let (tx, in_rx) = mpsc::channel::<ToSink>();
        let (out_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let handle =
            std::thread::Builder::new().name("popbridge-sink".into()).spawn(move || run(delivery, in_rx, out_tx)).ok();
        Sink { tx, rx, handle }
    }

    /// A writer of another kind on its own thread (`target`: delivery into another mail server),
    /// speaking the same two channels.
    pub fn spawn_with<F>(name: &str, f: F) -> Sink
    where
        F: FnOnce(mpsc::Receiver<ToSink>, tokio::sync::mpsc::UnboundedSender<FromSink>) + Send + 'static,
    {
        let (tx, in_rx) = mpsc::channel::<ToSink>();
        let (out_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let handle = std::thread::Builder::new().name(name.into()).spawn(move || f(in_rx, out_tx)).ok();
        Sink { tx, rx, handle }
    }

    /// Closes the input; the thread commits what it holds and ends after its last report.
    pub fn finish(&mut self) {
        let (dead, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, dead));
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.finish();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(mut d: Delivery, rx: mpsc::Receiver<ToSink>, out: tokio::sync::mpsc::UnboundedSender<FromSink>) {
    let mut numbers: Vec<u32> = Vec::new();
    let mut batch_start: Option<Instant> = None;
    let commit = |d: &mut Delivery, numbers: &mut Vec<u32>| -> bool {
        match d.commit() {
            Ok(stored) => {
                let pairs: Vec<(u32, Stored)> = numbers.drain(..).zip(stored).collect();
                if !pairs.is_empty() {
                    let _ = out.send(FromSink::Committed(pairs));
                }
                true
            }
            Err(e) => {
                let _ = out.send(FromSink::Failed(e));
                false
            }
        }
    };
    loop {
        let msg = match batch_start {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(t) => rx.recv_timeout(MAX_BATCH_AGE.saturating_sub(t.elapsed())),
        };
        match msg {
            Ok(ToSink::Message { n, identity, raw, fetched_at, permit }) => {
                let res = d.add(&identity, &raw, fetched_at);
                drop(raw);
                drop(permit);
                match res {
                    Ok(Added::New | Added::SameContent) => {
                        numbers.push(n);
                        batch_start.get_or_insert_with(Instant::now);
                    }
                    Ok(Added::Known) => {
                        let _ = out.send(FromSink::Known(n));
                    }
                    Err(e) => {
                        // The transaction was rolled back: nothing of this batch is stored.
                        let _ = out.send(FromSink::Failed(e));
                        return;
                    }
                }
                let (_, bytes) = d.pending();
                let old = batch_start.is_some_and(|t| t.elapsed() >= MAX_BATCH_AGE);
                if bytes >= MAX_BATCH_BYTES || old {
                    if !commit(&mut d, &mut numbers) {
                        return;
                    }
                    batch_start = None;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !commit(&mut d, &mut numbers) {
                    return;
                }
                batch_start = None;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                commit(&mut d, &mut numbers);
                return;
            }
        }
    }
}
