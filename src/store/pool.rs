//! The connections IMAP sessions (and SMTP spooling) share: a fixed number, each used by one job
//! at a time on a blocking thread. However many sessions there are, the store is read by at most
//! [`POOL_SIZE`] threads with [`POOL_SIZE`] connections and their page caches — sessions wait for a
//! turn rather than each growing a thread and a connection of its own (issue 13: 250 sessions
//! once meant 515 threads).
//!
//! A job must not depend on the connection it ran on before (no open transaction or temporary
//! state across jobs). The one per-connection fact sessions used to rely on, `PRAGMA
//! data_version` ("has another connection committed since I last looked?"), is kept by the pool
//! on a connection of its own: [`Pool::data_version`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// Connections (and so blocking threads) the pool uses at most. SQLite reads in WAL mode run in
/// parallel; more than a few per core only adds page caches.
pub const POOL_SIZE: usize = 4;
/// Page cache per pooled connection, KiB (`PRAGMA cache_size = -N`): 16 pages of 64 KiB. Bodies
/// are read once and sent (the OS page cache keeps the file's hot pages anyway); what matters to
/// keep is the B-tree interior of `messages` and `bodies`.
pub const POOL_CACHE_KIB: i64 = 1024;
/// How long a `data_version` reading is reused: many idle sessions polling share one query.
const DATA_VERSION_TTL: Duration = Duration::from_millis(200);

struct Inner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// The connection that only reads `PRAGMA data_version`, when it last read it, and the value.
type Watch = (Option<Connection>, Option<Instant>, i64);

pub struct Pool {
    inner: Arc<Inner>,
    slots: Arc<Semaphore>,
    watch: Arc<Mutex<Watch>>,
}

impl Pool {
    pub fn new(path: &Path) -> Pool {
        Pool {
            inner: Arc::new(Inner { path: path.to_path_buf(), idle: Mutex::new(Vec::new()) }),
            slots: Arc::new(Semaphore::new(POOL_SIZE)),
            watch: Arc::new(Mutex::new((None, None, 0))),
        }
    }

    /// Runs `f` on one of the pool's connections, on a blocking thread, once a connection is free.
    /// The slot and the connection go back to the pool when `f` returns, also if the caller stopped
    /// waiting meanwhile.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> T + Send + 'static) -> Result<T> {
        let permit = self.slots.clone().acquire_owned().await.map_err(|e| Error::other(format!("store pool: {e}")))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = inner.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => open(&inner.path)?,
            };
            let r = f(&mut conn);
            // Not in a transaction any more (a job that returned early keeps nothing open).
            if conn.is_autocommit() {
                inner.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            }
            Ok(r)
        })
        .await
        .map_err(|e| Error::other(format!("internal error: {e}")))?
    }

    /// `PRAGMA data_version` of a connection that never writes: it changes whenever anyone — another
    /// process, or any connection of this one — commits. Readings younger than 200 ms are shared.
    pub async fn data_version(&self) -> Result<i64> {
        {
            let w = self.watch.lock().unwrap_or_else(|p| p.into_inner());
            if w.1.is_some_and(|t| t.elapsed() < DATA_VERSION_TTL) {
                return Ok(w.2);
            }
        }
        let (watch, path) = (self.watch.clone(), self.inner.path.clone());
        tokio::task::spawn_blocking(move || -> Result<i64> {
            let mut w = watch.lock().unwrap_or_else(|p| p.into_inner());
            if w.1.is_some_and(|t| t.elapsed() < DATA_VERSION_TTL) {
                return Ok(w.2);
            }
            if w.0.is_none() {
                w.0 = Some(open(&path)?);
            }
            let v = match w.0.as_ref() {
                Some(c) => super::imap::data_version(c).map_err(|e| super::db_err(&path, e))?,
                None => 0,
            };
            *w = (w.0.take(), Some(Instant::now()), v);
            Ok(v)
        })
        .await
        .map_err(|e| Error::other(format!("internal error: {e}")))?
    }
}

fn open(path: &Path) -> Result<Connection> {
    let conn = super::open_connection(path)?;
    conn.pragma_update(None, "cache_size", -POOL_CACHE_KIB).map_err(|e| super::db_err(path, e))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_share_a_few_connections_and_see_every_commit() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let dir = crate::store::private_tempdir();
        let path = dir.path().join("store.sqlite");
        let store = crate::store::Store::open(&path).unwrap();
        let pool = Arc::new(Pool::new(&path));
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut jobs = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
            jobs.spawn(async move {
                pool.run(move |c| {
                    most.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    let n: i64 = c.query_row("SELECT count(*) FROM mailboxes", [], |r| r.get(0)).unwrap();
                    running.fetch_sub(1, SeqCst);
                    n
                })
                .await
                .unwrap()
            });
        }
        let counts = jobs.join_all().await;
        assert!(counts.iter().all(|n| *n == counts[0] && *n > 0));
        let most = most.load(SeqCst);
        assert!(most > 1 && most <= POOL_SIZE, "{most} at once, at most {POOL_SIZE}");
        assert!(pool.inner.idle.lock().unwrap().len() <= POOL_SIZE);

        let v1 = pool.data_version().await.unwrap();
        store.ensure_account("Work").unwrap();
        tokio::time::sleep(DATA_VERSION_TTL).await;
        let v2 = pool.data_version().await.unwrap();
        assert_ne!(v1, v2, "a commit on another connection is seen");
    }
}
