//! The UID lists of large mailboxes, kept between SELECTs: a SELECT of a 100,000-message mailbox
//! reads what changed since the list was cached (new UIDs above its highest, expunges after its
//! MODSEQ — both index seeks) instead of every UID (7 ms for 100,000 on this machine, which is
//! most of a SELECT's time).
//!
//! Correctness does not depend on who wrote: the delta is read inside the SELECT's own
//! transaction from the same tables every session's change feed reads (`messages`, `expunged`),
//! so writers in other processes are seen too; and a list whose length disagrees with the
//! mailbox's message counter is thrown away and read in full — which is also what happens when
//! the expunge history was pruned past the list's MODSEQ (`imap::prune_expunged` keeps about
//! 10,000 per mailbox): an expunge the delta cannot see leaves the list too long.

use std::collections::HashMap;

use rusqlite::{Connection, params};

/// Mailboxes smaller than this are read in full each time (a few hundred microseconds at most).
pub const MIN_CACHED: usize = 5_000;
/// At most this many UIDs are kept over all mailboxes (4 bytes each); the least recently
/// selected lists go first.
pub const MAX_CACHED_UIDS: usize = 1 << 20;

#[derive(Debug)]
struct Entry {
    uidvalidity: u32,
    /// The mailbox's HIGHESTMODSEQ when `uids` was exact.
    modseq: u64,
    uids: Vec<u32>,
    last_used: u64,
}

/// The cache: mailbox id → its UID list as of some MODSEQ.
#[derive(Debug, Default)]
pub struct UidCache {
    entries: HashMap<i64, Entry>,
    clock: u64,
    total: usize,
    /// Lists read in full (not from the cache): what the cache saves shows here.
    full_reads: u64,
}

/// What is known of the mailbox being selected (read in the same transaction).
#[derive(Debug, Clone, Copy)]
pub struct Current {
    pub id: i64,
    pub uidvalidity: u32,
    pub highestmodseq: u64,
    pub messages: u32,
}

impl UidCache {
    /// The mailbox's UIDs, ascending, as of `cur` (read on `conn`, inside the caller's transaction).
    pub fn uids(&mut self, conn: &Connection, cur: Current) -> rusqlite::Result<Vec<u32>> {
        self.clock += 1;
        let clock = self.clock;
        if let Some(e) = self.entries.get_mut(&cur.id)
            && e.uidvalidity == cur.uidvalidity
            && e.modseq <= cur.highestmodseq
        {
            if e.modseq < cur.highestmodseq {
                let before = e.uids.len();
                apply_delta(conn, cur.id, e)?;
                e.modseq = cur.highestmodseq;
                self.total = self.total + e.uids.len() - before;
            }
            if e.uids.len() == cur.messages as usize {
                e.last_used = clock;
                return Ok(e.uids.clone());
            }
            tracing::debug!("store: cached UIDs of mailbox {} disagree with its counter: read again", cur.id);
        }
        self.remove(cur.id);
        self.full_reads += 1;
        let uids = super::imap::uids(conn, cur.id)?;
        if uids.len() >= MIN_CACHED && uids.len() <= MAX_CACHED_UIDS {
            self.total += uids.len();
            self.entries.insert(
                cur.id,
                Entry { uidvalidity: cur.uidvalidity, modseq: cur.highestmodseq, uids: uids.clone(), last_used: clock },
            );
            self.evict();
        }
        Ok(uids)
    }

    fn remove(&mut self, id: i64) {
        if let Some(e) = self.entries.remove(&id) {
            self.total -= e.uids.len();
        }
    }

    fn evict(&mut self) {
        while self.total > MAX_CACHED_UIDS {
            let Some(oldest) = self.entries.iter().min_by_key(|(_, e)| e.last_used).map(|(id, _)| *id) else { break };
            self.remove(oldest);
        }
    }

    /// How many SELECTs read a whole list.
    pub fn full_reads(&self) -> u64 {
        self.full_reads
    }

    /// UIDs cached over all mailboxes.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// Brings `e` up to date: expunges after its MODSEQ out, UIDs above its highest in (UIDs only grow).
fn apply_delta(conn: &Connection, mailbox: i64, e: &mut Entry) -> rusqlite::Result<()> {
    let mut st = conn.prepare_cached("SELECT uid FROM expunged WHERE mailbox_id = ?1 AND modseq > ?2")?;
    let gone: Vec<u32> = st
        .query_map(params![mailbox, e.modseq as i64], |r| Ok(r.get::<_, i64>(0)? as u32))?
        .collect::<rusqlite::Result<_>>()?;
    if !gone.is_empty() {
        let mut gone = gone;
        gone.sort_unstable();
        e.uids.retain(|u| gone.binary_search(u).is_err());
    }
    let max = e.uids.last().copied().unwrap_or(0);
    let mut st = conn.prepare_cached("SELECT uid FROM messages WHERE mailbox_id = ?1 AND uid > ?2 ORDER BY uid")?;
    let new = st.query_map(params![mailbox, i64::from(max)], |r| Ok(r.get::<_, i64>(0)? as u32))?;
    for u in new {
        e.uids.push(u?);
    }
    Ok(())
}
