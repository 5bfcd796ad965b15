//! The control socket: how `popbridge fetch` asks the running daemon to fetch instead of racing
//! it (one POP session per account, not two). A Unix socket in the data directory (0700), itself
//! 0600; one JSON request line, one JSON line per account in reply.
//!
//! Request: `{"fetch": ["Work"]}` (an empty list: every account).
//! Reply lines: `{"account": "Work", "ok": true, "new_messages": 3, …}` or
//! `{"account": "Work", "ok": false, "class": "authentication", "message": "…"}`, one per account
//! as its fetch ends; from the start and until the last of them, `{"alive": true}` every
//! [`KEEPALIVE`] (clients skip lines that are not an outcome).
//!
//! A fetch can take as long as the mail takes (a first import of years of mail, a slow server),
//! so the client bounds *silence*, not the fetch: a daemon that sends nothing for
//! [`SILENCE_LIMIT`] is stopped (SIGSTOP, Ctrl-Z, a frozen unit) or hung, and `popbridge fetch`
//! gives up with what to do instead of waiting forever.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use crate::error::{Error, ErrorClass, Result};
use crate::fetch::schedule::{Handle, Kick};

/// How often the daemon tells a waiting client that it is alive. The line is written by the
/// connection's own task whatever the fetch is doing (waiting on a slow server, committing), so a
/// live daemon is never silent for long.
pub const KEEPALIVE: Duration = Duration::from_secs(1);

/// How long `popbridge fetch` waits for any line from the daemon (the connect and the request
/// included) before it gives up: ten missed keep-alives. A live daemon's runtime (several worker
/// threads) writes one every second even under heavy disk load; ten seconds of nothing means it
/// is not running at all — and is still short enough that a person or a script waiting on the
/// command is told what to do rather than left hanging.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(10);

/// The keep-alive line.
const ALIVE: &[u8] = b"{\"alive\":true}\n";

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub fetch: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub account: String,
    pub ok: bool,
    #[serde(default)]
    pub new_messages: u64,
    #[serde(default)]
    pub new_bytes: u64,
    #[serde(default)]
    pub deleted: u64,
    #[serde(default)]
    pub server_messages: u64,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

pub type Schedulers = Arc<Mutex<HashMap<String, Handle>>>;

/// Binds the socket (replacing a stale one from a crashed daemon; refusing if one answers).
pub async fn bind(data_dir: &Path) -> Result<UnixListener> {
    let path = socket_path(data_dir);
    if path.exists() {
        if UnixStream::connect(&path).await.is_ok() {
            return Err(Error::config(format!(
                "another popbridge daemon is running with this data directory ({}); stop it first",
                data_dir.display()
            )));
        }
        let _ = std::fs::remove_file(&path);
    }
    let l = UnixListener::bind(&path)
        .map_err(|e| Error::other(format!("cannot create the control socket {}: {e}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::other(format!("cannot protect {}: {e}", path.display())))?;
    Ok(l)
}

pub async fn serve(listener: UnixListener, schedulers: Schedulers, mut shutdown: watch::Receiver<bool>, path: PathBuf) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => { tokio::time::sleep(Duration::from_millis(100)).await; continue; }
            },
            _ = shutdown.changed() => break,
        };
        let schedulers = schedulers.clone();
        tokio::spawn(async move {
            let _ = handle(stream, schedulers).await;
        });
    }
    let _ = std::fs::remove_file(path);
}

async fn handle(stream: UnixStream, schedulers: Schedulers) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r.take(64 * 1024)).read_line(&mut line).await?;
    let Ok(req) = serde_json::from_str::<Request>(&line) else {
        w.write_all(b"{\"account\":\"\",\"ok\":false,\"class\":\"config\",\"message\":\"bad request\"}\n").await?;
        return Ok(());
    };
    // The fetches run in a task of their own, so that this one keeps the client informed.
    // Should the client go away, they still run to their end (nothing is cut mid-session).
    let (tx, mut outcomes) = mpsc::unbounded_channel();
    tokio::spawn(fetch_all(req, schedulers, tx));
    let mut alive = tokio::time::interval(KEEPALIVE);
    alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // An account's outcome, as soon as it is known; the end once all are sent.
            o = outcomes.recv() => match o {
                Some(o) => {
                    let mut out = serde_json::to_vec(&o).unwrap_or_default();
                    out.push(b'\n');
                    w.write_all(&out).await?;
                }
                None => break,
            },
            // The first tick is at once: the client knows its request arrived.
            _ = alive.tick() => w.write_all(ALIVE).await?,
        }
    }
    w.shutdown().await
}

/// Kicks each account's scheduler and sends its outcome as it ends, in the order asked.
async fn fetch_all(req: Request, schedulers: Schedulers, tx: mpsc::UnboundedSender<Outcome>) {
    let mut waits = Vec::new();
    {
        let map = schedulers.lock().await;
        let names: Vec<String> = if req.fetch.is_empty() {
            let mut v: Vec<String> = map.keys().cloned().collect();
            v.sort();
            v
        } else {
            req.fetch.clone()
        };
        for n in names {
            let found = map.iter().find(|(k, _)| k.eq_ignore_ascii_case(&n));
            match found {
                Some((k, h)) => {
                    let (tx, rx) = oneshot::channel();
                    let sent = h.kick.send(Kick { force: true, reply: Some(tx) }).await.is_ok();
                    waits.push((k.clone(), sent.then_some(rx)));
                }
                None => waits.push((n, None)),
            }
        }
    }
    for (account, rx) in waits {
        let outcome = match rx {
            None => {
                Outcome::failed(&account, ErrorClass::Config, &format!("the daemon has no account named \"{account}\""))
            }
            Some(rx) => match rx.await {
                Ok(Ok(r)) => Outcome {
                    account: account.clone(),
                    ok: true,
                    new_messages: r.new_messages,
                    new_bytes: r.new_bytes,
                    deleted: r.deleted,
                    server_messages: r.server_messages,
                    warnings: r.warnings,
                    class: None,
                    message: None,
                },
                Ok(Err(e)) => Outcome::failed(&account, e.class, &e.message),
                Err(_) => Outcome::failed(&account, ErrorClass::Temporary, "the daemon is shutting down"),
            },
        };
        // A client gone away: the remaining fetches still run.
        let _ = tx.send(outcome);
    }
}

impl Outcome {
    fn failed(account: &str, class: ErrorClass, message: &str) -> Outcome {
        Outcome {
            account: account.to_string(),
            ok: false,
            new_messages: 0,
            new_bytes: 0,
            deleted: 0,
            server_messages: 0,
            warnings: Vec::new(),
            class: Some(class.as_str().to_string()),
            message: Some(message.to_string()),
        }
    }
}

/// The CLI side: asks a running daemon to fetch. `Ok(None)` when no daemon listens; an error when
/// one listens but stays silent for [`SILENCE_LIMIT`] (stopped or hung), or ends the conversation
/// before it answered for every account (it stopped or crashed meanwhile).
pub async fn request_fetch(data_dir: &Path, accounts: &[String]) -> Result<Option<Vec<Outcome>>> {
    use tokio::time::timeout;
    let path = socket_path(data_dir);
    // Connecting succeeds even to a stopped daemon (the kernel queues the connection).
    let s = match timeout(SILENCE_LIMIT, UnixStream::connect(&path)).await {
        Err(_) => return Err(unresponsive(None)),
        Ok(Err(_)) => return Ok(None),
        Ok(Ok(s)) => s,
    };
    let pid = s.peer_cred().ok().and_then(|c| c.pid());
    let (r, mut w) = s.into_split();
    let mut req = serde_json::to_vec(&Request { fetch: accounts.to_vec() })
        .map_err(|e| Error::other(format!("internal error: {e}")))?;
    req.push(b'\n');
    match timeout(SILENCE_LIMIT, w.write_all(&req)).await {
        Err(_) => return Err(unresponsive(pid)),
        Ok(Err(_)) => return Ok(None),
        Ok(Ok(())) => {}
    }
    let mut lines = BufReader::new(r).lines();
    let mut out = Vec::new();
    loop {
        match timeout(SILENCE_LIMIT, lines.next_line()).await {
            Err(_) => return Err(unresponsive(pid)),
            Ok(Ok(Some(l))) => {
                // Keep-alives (and anything else that is not an outcome) only prove the daemon lives.
                if let Ok(o) = serde_json::from_str::<Outcome>(&l) {
                    out.push(o);
                }
            }
            Ok(Ok(None)) | Ok(Err(_)) => break,
        }
    }
    if out.len() < accounts.len() {
        return Err(Error::other(format!(
            "the popbridge daemon{} ended the conversation before it reported on every account (it stopped or crashed meanwhile): see `popbridge status` for what was stored, and the daemon's log (journalctl --user -u popbridge); run popbridge fetch again",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        )));
    }
    Ok(Some(out))
}

/// A daemon that listens but says nothing: what to do about it.
fn unresponsive(pid: Option<i32>) -> Error {
    let (who, cont) = match pid {
        Some(p) => (format!("the popbridge daemon (pid {p})"), format!("kill -CONT {p}")),
        None => ("the popbridge daemon".to_string(), "kill -CONT PID".to_string()),
    };
    Error::other(format!(
        "{who} has not answered for {} s: it is stopped or hung. If it was stopped (Ctrl-Z, kill -STOP), let it go on: {cont}; otherwise restart it: systemctl --user restart popbridge. This command fetched nothing itself (the daemon may have begun; popbridge status shows what is stored)",
        SILENCE_LIMIT.as_secs()
    ))
}
