//! The composition root: `popbridge run`. Opens the store, binds the IMAP and SMTP submission
//! listeners with the local certificate, runs one fetch task per account and the outbound queue,
//! and shuts everything down in order on
//! SIGTERM/SIGINT: stop accepting, `* BYE` to IMAP clients, let fetchers finish the message being
//! committed (they never delete anything uncommitted), exit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{self, Config, Paths};
use crate::error::{Error, Result};
use crate::fetch;
use crate::imap::server::{MAX_CONNECTIONS, Shared, Throttle, listen};
use crate::net::tls;
use crate::smtp::server::SmtpShared;
use crate::store::Store;

/// A running daemon: where it listens, and how to stop it.
pub struct Running {
    pub imap: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
    pub submission: Option<SocketAddr>,
    pub submissions: Option<SocketAddr>,
    pub fingerprint: String,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    connections: Arc<tokio::sync::Semaphore>,
}

impl Running {
    /// Asks everything to stop and waits (bounded) for it.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        // Every session holds a permit until it has said BYE and closed: wait for all of them.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), self.connections.acquire_many(MAX_CONNECTIONS as u32)).await;
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Error::config(format!(
                "{what} address {addr} is in use (another popbridge running? `popbridge status`); change [local] {what} in the config"
            ))
        } else {
            Error::config(format!("cannot listen on {addr} for {what}: {e}"))
        }
    })
}

/// Starts the daemon's parts; `fetch_schedule`: whether accounts are fetched periodically.
pub async fn start(paths: &Paths, cfg: &Config, fetch_schedule: bool) -> Result<Running> {
    let password = match &cfg.local.password {
        Some(src) => config::resolve_secret(&cfg.path, cfg.mode, src, "local").await?,
        None => {
            return Err(Error::config(format!(
                "config file {}: local.password: is missing; mail clients need it to log in (run `popbridge init` for a fresh config)",
                cfg.path.display()
            )));
        }
    };
    let store_path = paths.store();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || Store::open(&store_path))
            .await
            .map_err(|e| Error::other(e.to_string()))??,
    );
    for a in &cfg.accounts {
        let (s, name) = (store.clone(), a.name.clone());
        tokio::task::spawn_blocking(move || s.ensure_account(&name))
            .await
            .map_err(|e| Error::other(e.to_string()))??;
    }
    let (cert, _) = tls::ensure_local_cert(&paths.tls_dir())?;
    let fingerprint = config::format_fingerprint(&cert.fingerprint()?);
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config()?);
    let shared = Arc::new(Shared {
        store_path: paths.store(),
        changes: store.changes(),
        user: cfg.local.user.clone(),
        password,
        tls: Some(acceptor.clone()),
        throttle: Throttle::default(),
        connections: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
    });
    let kick = Arc::new(tokio::sync::Notify::new());
    let config = Arc::new(cfg.clone());
    let smtp = Arc::new(SmtpShared {
        config: config.clone(),
        store: store.clone(),
        user: cfg.local.user.clone(),
        password: shared.password.clone(),
        tls: Some(acceptor.clone()),
        throttle: Throttle::default(),
        kick: kick.clone(),
        connections: Arc::new(tokio::sync::Semaphore::new(crate::smtp::server::MAX_CONNECTIONS)),
        hostname: "localhost".into(),
        max_size: crate::smtp::server::DEFAULT_MAX_SIZE,
    });
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut imap = None;
    let mut imaps = None;
    if let Some(addr) = cfg.local.imap {
        let l = bind(addr, "imap").await?;
        imap = l.local_addr().ok();
        tasks.push(tokio::spawn(listen(l, None, shared.clone(), rx.clone())));
    }
    if let Some(addr) = cfg.local.imaps {
        let l = bind(addr, "imaps").await?;
        imaps = l.local_addr().ok();
        tasks.push(tokio::spawn(listen(l, Some(acceptor.clone()), shared.clone(), rx.clone())));
    }
    let (mut submission, mut submissions) = (None, None);
    if let Some(addr) = cfg.local.submission {
        let l = bind(addr, "submission").await?;
        submission = l.local_addr().ok();
        tasks.push(tokio::spawn(crate::smtp::server::listen(l, None, smtp.clone(), rx.clone())));
    }
    if let Some(addr) = cfg.local.submissions {
        let l = bind(addr, "submissions").await?;
        submissions = l.local_addr().ok();
        tasks.push(tokio::spawn(crate::smtp::server::listen(l, Some(acceptor), smtp.clone(), rx.clone())));
    }
    // The outbound queue resumes whatever a previous run left queued.
    let queue =
        Arc::new(crate::smtp::queue::Queue { store: store.clone(), config, kick, hostname: "localhost".into() });
    tasks.push(tokio::spawn(crate::smtp::queue::run(queue, rx.clone())));
    if fetch_schedule {
        let ctx = fetch::Context {
            config_path: cfg.path.clone(),
            config_mode: cfg.mode,
            store: store.clone(),
            lock_dir: paths.lock_dir(),
        };
        for a in cfg.accounts.clone() {
            tasks.push(tokio::spawn(fetch_loop(ctx.clone(), a, rx.clone())));
        }
    }
    Ok(Running {
        imap,
        imaps,
        submission,
        submissions,
        fingerprint,
        shutdown,
        tasks,
        connections: shared.connections.clone(),
    })
}

/// Fetches an account now and then every `interval` until shutdown. A fetch in progress is
/// abandoned at shutdown only between messages: the sink commits what it received, and without
/// QUIT the server deletes nothing.
async fn fetch_loop(ctx: fetch::Context, account: config::Account, mut shutdown: watch::Receiver<bool>) {
    loop {
        let state = {
            let (s, n) = (ctx.store.clone(), account.name.clone());
            tokio::task::spawn_blocking(move || s.account_statuses().map(|v| v.into_iter().find(|a| a.name == n)))
                .await
                .ok()
                .and_then(|r| r.ok())
                .flatten()
                .map(|a| a.state)
        };
        if state.as_deref() != Some("disabled") {
            tokio::select! {
                r = fetch::fetch(&ctx, &account, None) => match r {
                    Ok(rep) if rep.new_messages > 0 => tracing::info!("{}: {} new message(s)", account.name, rep.new_messages),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("{}", e.message),
                },
                _ = shutdown.changed() => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(account.interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// `popbridge run`: until SIGTERM or SIGINT.
pub async fn run(paths: &Paths) -> Result<i32> {
    let cfg = config::load(&paths.config)?;
    let running = start(paths, &cfg, true).await?;
    if let Some(a) = running.imap {
        eprintln!("popbridge: IMAP on {a} (STARTTLS available)");
    }
    if let Some(a) = running.imaps {
        eprintln!("popbridge: IMAP over TLS on {a}; certificate SHA-256 {}", running.fingerprint);
    }
    if let Some(a) = running.submission {
        eprintln!("popbridge: SMTP submission on {a} (STARTTLS available)");
    }
    if let Some(a) = running.submissions {
        eprintln!("popbridge: SMTP submission over TLS on {a}");
    }
    wait_for_signal().await;
    eprintln!("popbridge: shutting down");
    running.stop().await;
    Ok(0)
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
