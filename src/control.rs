//! The control socket: how `popbridge fetch` asks the running daemon to fetch instead of racing
//! it (one POP session per account, not two). A Unix socket in the data directory (0700), itself
//! 0600; one JSON request line, one JSON line per account in reply.
//!
//! Request: `{"fetch": ["Work"]}` (an empty list: every account).
//! Reply lines: `{"account": "Work", "ok": true, "new_messages": 3, …}` or
//! `{"account": "Work", "ok": false, "class": "authentication", "message": "…"}`.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, oneshot, watch};

use crate::error::{Error, ErrorClass, Result};
use crate::fetch::schedule::{Handle, Kick};

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
        let mut out = serde_json::to_vec(&outcome).unwrap_or_default();
        out.push(b'\n');
        w.write_all(&out).await?;
    }
    w.shutdown().await
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

/// The CLI side: asks a running daemon to fetch. `None` when no daemon answers.
pub async fn request_fetch(data_dir: &Path, accounts: &[String]) -> Option<Vec<Outcome>> {
    let mut s = UnixStream::connect(socket_path(data_dir)).await.ok()?;
    let mut req = serde_json::to_vec(&Request { fetch: accounts.to_vec() }).ok()?;
    req.push(b'\n');
    s.write_all(&req).await.ok()?;
    let mut lines = BufReader::new(s).lines();
    let mut out = Vec::new();
    while let Ok(Some(l)) = lines.next_line().await {
        if let Ok(o) = serde_json::from_str::<Outcome>(&l) {
            out.push(o);
        }
    }
    Some(out)
}
