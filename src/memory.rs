//! The daemon's memory budget: how many bytes of message data may be in flight at once, across
//! every IMAP and SMTP session together (`[memory] budget`).
//!
//! Message data is what grows with the clients: FETCH responses on their way to a socket, an SMTP
//! message on its way into the outbox or out to the upstream server. Everything else a session
//! holds is small and fixed (its buffers, its view of the selected mailbox). So a session takes a
//! [`Charge`] from the one [`Budget`] *before* it reads message bytes from the store or the
//! network, keeps it while those bytes are in its buffers, and gives it back once they are on the
//! socket (or in the store). When the budget is spent, the next session waits for a charge
//! (backpressure) instead of allocating; a client that stops reading keeps only what it was charged
//! for, and its session waits on the socket, not on memory.
//!
//! Rules that keep this free of deadlock: a session never waits for a charge while it holds one
//! (take, use, give back, then take again), and no single charge is larger than [`STEP`] — except
//! [`Budget::take`] clamps any request to the whole budget, so even a budget smaller than a step
//! only slows sessions down. Waiting is fair (first come, first served: tokio's semaphore).

#![forbid(unsafe_code)]

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The default budget: message bytes in flight for the whole daemon. With [`STEP`]-sized charges
/// that is 64 sessions moving data at the same moment — more than two cores keep busy — while the
/// rest wait their turn. Measured on 2 cores (issue 13, scripts/bench/imap-sessions.py): 50
/// sessions each fetching a 10,000-message mailbox in full move 600+ MB/s within it.
pub const DEFAULT_BUDGET: usize = 16 * 1024 * 1024;
/// The smallest budget the config accepts: one step for a few sessions.
pub const MIN_BUDGET: usize = 1024 * 1024;
/// What one session takes at a time: the response bytes of one FETCH step, one chunk of a large
/// body streamed from the store, one chunk of an SMTP message on its way to the outbox. Large
/// enough that writing it is a few big system calls (and TLS records of 16 KiB), small enough that
/// a client that never reads holds little.
pub const STEP: usize = 256 * 1024;

/// Bytes of message data the daemon may hold at once. Cheap to clone (shared).
#[derive(Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    total: usize,
}

/// A share of the budget; given back when dropped.
pub struct Charge {
    permit: Option<OwnedSemaphorePermit>,
}

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        // tokio's semaphore counts at most `MAX_PERMITS`; the config never asks for that much.
        let total = bytes.clamp(1, Semaphore::MAX_PERMITS);
        Budget { sem: Arc::new(Semaphore::new(total)), total }
    }

    /// The budget's size in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes charged right now.
    pub fn in_use(&self) -> usize {
        self.total - self.sem.available_permits()
    }

    /// Waits until `bytes` (at most the whole budget) are free, and charges them. Cancel-safe
    /// (a dropped wait takes nothing).
    pub async fn take(&self, bytes: usize) -> Charge {
        let n = bytes.clamp(1, self.total).min(u32::MAX as usize) as u32;
        // The semaphore is never closed, so acquiring cannot fail; should it, run unbudgeted
        // rather than stop serving.
        Charge { permit: self.sem.clone().acquire_many_owned(n).await.ok() }
    }

    /// Charges `bytes` if they are free now, without waiting.
    pub fn try_take(&self, bytes: usize) -> Option<Charge> {
        let n = bytes.clamp(1, self.total).min(u32::MAX as usize) as u32;
        self.sem.clone().try_acquire_many_owned(n).ok().map(|p| Charge { permit: Some(p) })
    }
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::new(DEFAULT_BUDGET)
    }
}

impl Charge {
    /// Bytes this charge holds.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map(|p| p.num_permits()).unwrap_or(0)
    }
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Budget({} of {} bytes in use)", self.in_use(), self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn charges_wait_for_each_other_and_come_back_when_dropped() {
        let b = Budget::new(1000);
        let a = b.take(600).await;
        assert_eq!((a.bytes(), b.in_use()), (600, 600));
        assert!(b.try_take(500).is_none(), "only 400 left");
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.take(500).await.bytes() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "waits while the budget is spent");
        drop(a);
        assert_eq!(waiting.await.unwrap(), 500);
        assert_eq!(b.in_use(), 0, "every charge came back");
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_takes_all_of_it_instead_of_waiting_forever() {
        let b = Budget::new(1000);
        let all = tokio::time::timeout(Duration::from_secs(1), b.take(5000)).await.expect("not stuck");
        assert_eq!(all.bytes(), 1000);
    }
}
