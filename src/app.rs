//! The composition root: `popbridge run`. Opens the store, binds the IMAP and SMTP submission
//! listeners with the local certificate, starts one fetch scheduler per account, the outbound
//! queue and the control socket; reloads the config on SIGHUP; and shuts everything down in order
//! on SIGTERM/SIGINT: stop accepting, `* BYE` / `421` to clients, fetchers stop at a safe point
//! (what was received is committed; without QUIT the server deletes nothing), the relay queue lets
//! the deliveries under way finish (`smtp::queue::DRAIN_TIMEOUT`), exit 0.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};

use crate::config::{self, Config, Live, Paths};
use crate::control::{self, Schedulers};
use crate::error::{Error, Result};
use crate::fetch::{self, schedule};
use crate::imap::server::Shared;
use crate::net::listener::{self, Slots};
use crate::net::throttle::Throttle;
use crate::net::tls;
use crate::secret::Secret;
use crate::smtp::server::SmtpShared;
use crate::store::Store;

/// One bound listener, stoppable on its own (so a reload can move it to a new address).
struct Listener {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Imap,
    Imaps,
    Submission,
    Submissions,
}

/// A running daemon: where it listens, and how to reload or stop it.
pub struct Running {
    pub imap: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
    pub submission: Option<SocketAddr>,
    pub submissions: Option<SocketAddr>,
    pub fingerprint: String,
    paths: Paths,
    live: Arc<Live>,
    imap_shared: Arc<Shared>,
    smtp_shared: Arc<SmtpShared>,
    acceptor: tokio_rustls::TlsAcceptor,
    listeners: HashMap<Kind, Listener>,
    schedulers: Schedulers,
    fetch_ctx: fetch::Context,
    alerts: broadcast::Sender<String>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    fetch_schedule: bool,
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

async fn resolve_local_password(cfg: &Config) -> Result<Secret> {
    match &cfg.local.password {
        Some(src) => config::resolve_secret(&cfg.path, cfg.mode, src, "local").await,
        None => Err(Error::config(format!(
            "config file {}: local.password: is missing; mail clients need it to log in (run `popbridge init` for a fresh config)",
            cfg.path.display()
        ))),
    }
}

/// Starts the daemon's parts; `fetch_schedule`: whether accounts are fetched on their schedule.
pub async fn start(paths: &Paths, cfg: &Config, fetch_schedule: bool) -> Result<Running> {
    let password = resolve_local_password(cfg).await?;
    let store_path = paths.store();
    let budget = cfg.memory.budget;
    let store = Arc::new(
        tokio::task::spawn_blocking(move || Store::open(&store_path))
            .await
            .map_err(|e| Error::other(e.to_string()))??
            .with_budget(budget),
    );
    // Submissions a previous run was still receiving when it died: their clients never got a 250.
    let s = store.clone();
    if let Err(e) = crate::blocking(move || s.outbox_spool_discard(None)).await {
        tracing::warn!("outbox: could not remove incomplete submissions: {}", e.message);
    }
    for a in &cfg.accounts {
        let (s, name) = (store.clone(), a.name.clone());
        tokio::task::spawn_blocking(move || s.ensure_account(&name))
            .await
            .map_err(|e| Error::other(e.to_string()))??;
    }
    let (cert, _) = tls::ensure_local_cert(&paths.tls_dir())?;
    let fingerprint = config::format_fingerprint(&cert.fingerprint()?);
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config()?);
    let live = Arc::new(Live::new(cfg.clone(), password));
    let (alerts, _) = broadcast::channel(64);
    let (kick_tx, mut kick_rx) = mpsc::unbounded_channel::<String>();
    // One throttle for both servers: they check the same local password.
    let throttle = Arc::new(Throttle::default());
    let imap_shared = Arc::new(Shared {
        store: store.clone(),
        changes: store.changes(),
        live: live.clone(),
        tls: Some(acceptor.clone()),
        throttle: throttle.clone(),
        slots: Slots::new("imap", listener::Limits::imap(&cfg.limits)),
        alerts: alerts.clone(),
        kick: Some(kick_tx),
    });
    let kick = Arc::new(tokio::sync::Notify::new());
    let smtp_shared = Arc::new(SmtpShared {
        live: live.clone(),
        store: store.clone(),
        tls: Some(acceptor.clone()),
        throttle,
        kick: kick.clone(),
        slots: Slots::new("smtp", listener::Limits::smtp(&cfg.limits)),
        hostname: "localhost".into(),
        max_size: crate::smtp::server::DEFAULT_MAX_SIZE,
    });
    let (shutdown, rx) = watch::channel(false);
    let schedulers: Schedulers = Arc::default();
    let fetch_ctx = fetch::Context {
        config_path: cfg.path.clone(),
        config_mode: cfg.mode,
        store: store.clone(),
        lock_dir: paths.lock_dir(),
        oauth_dir: paths.oauth_dir(),
    };
    let mut running = Running {
        imap: None,
        imaps: None,
        submission: None,
        submissions: None,
        fingerprint,
        paths: paths.clone(),
        live: live.clone(),
        imap_shared,
        smtp_shared,
        acceptor,
        listeners: HashMap::new(),
        schedulers: schedulers.clone(),
        fetch_ctx,
        alerts,
        shutdown,
        tasks: Vec::new(),
        fetch_schedule,
    };
    running.bind_listeners(cfg).await?;
    // The outbound queue resumes whatever a previous run left queued.
    let queue = Arc::new(crate::smtp::queue::Queue {
        store: store.clone(),
        live,
        kick,
        hostname: "localhost".into(),
        oauth_dir: paths.oauth_dir(),
    });
    running.tasks.push(tokio::spawn(crate::smtp::queue::run(queue, rx.clone())));
    running.tasks.push(tokio::spawn(crate::store::search::run_indexer(paths.store(), store.changes(), rx.clone())));
    if fetch_schedule {
        running.sync_schedulers(cfg).await;
        let control = control::bind(&paths.data_dir).await?;
        running.tasks.push(tokio::spawn(control::serve(
            control,
            schedulers.clone(),
            rx.clone(),
            control::socket_path(&paths.data_dir),
        )));
        // A mail client looking at an account's mailbox asks for a fetch (the scheduler rate-limits).
        let (sched, mut stop) = (schedulers.clone(), rx.clone());
        running.tasks.push(tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    n = kick_rx.recv() => match n { Some(n) => n, None => return },
                    _ = stop.changed() => return,
                };
                if let Some(h) = sched.lock().await.get(&name) {
                    let _ = h.kick.try_send(schedule::Kick { force: false, reply: None });
                }
            }
        }));
    }
    Ok(running)
}

impl Running {
    async fn bind_listeners(&mut self, cfg: &Config) -> Result<()> {
        let wanted = [
            (Kind::Imap, cfg.local.imap, "imap"),
            (Kind::Imaps, cfg.local.imaps, "imaps"),
            (Kind::Submission, cfg.local.submission, "submission"),
            (Kind::Submissions, cfg.local.submissions, "submissions"),
        ];
        for (kind, addr, what) in wanted {
            let current = self.listeners.get(&kind).map(|l| l.addr);
            let same = match (current, addr) {
                (Some(c), Some(a)) => a.port() == 0 || c == a,
                (None, None) => true,
                _ => false,
            };
            if same {
                continue;
            }
            if let Some(old) = self.listeners.remove(&kind) {
                let _ = old.stop.send(true);
                let _ = tokio::time::timeout(Duration::from_secs(5), old.task).await;
            }
            let Some(addr) = addr else { continue };
            let l = bind(addr, what).await?;
            let bound = l.local_addr().unwrap_or(addr);
            let (stop, stop_rx) = watch::channel(false);
            // A listener stops for a reload (its own channel) or for shutdown (the daemon's).
            let mut shutdown = self.shutdown.subscribe();
            let mut stop_rx2 = stop_rx.clone();
            let (merged_tx, merged_rx) = watch::channel(false);
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.changed() => {}
                    _ = stop_rx2.changed() => {}
                }
                let _ = merged_tx.send(true);
            });
            let task = match kind {
                Kind::Imap => tokio::spawn(crate::imap::session::listen(l, None, self.imap_shared.clone(), merged_rx)),
                Kind::Imaps => tokio::spawn(crate::imap::session::listen(
                    l,
                    Some(self.acceptor.clone()),
                    self.imap_shared.clone(),
                    merged_rx,
                )),
                Kind::Submission => {
                    tokio::spawn(crate::smtp::session::listen(l, None, self.smtp_shared.clone(), merged_rx))
                }
                Kind::Submissions => tokio::spawn(crate::smtp::session::listen(
                    l,
                    Some(self.acceptor.clone()),
                    self.smtp_shared.clone(),
                    merged_rx,
                )),
            };
            drop(stop_rx);
            match kind {
                Kind::Imap => self.imap = Some(bound),
                Kind::Imaps => self.imaps = Some(bound),
                Kind::Submission => self.submission = Some(bound),
                Kind::Submissions => self.submissions = Some(bound),
            }
            self.listeners.insert(kind, Listener { addr: bound, stop, task });
        }
        Ok(())
    }

    /// Starts schedulers for new accounts, restarts changed ones, stops removed ones.
    async fn sync_schedulers(&self, cfg: &Config) {
        if !self.fetch_schedule {
            return;
        }
        let mut map = self.schedulers.lock().await;
        let names: Vec<String> = map.keys().cloned().collect();
        for n in names {
            let keep = cfg
                .accounts
                .iter()
                .any(|a| a.name == n && Some(a.fingerprint()) == map.get(&n).map(|h| h.fingerprint.clone()));
            if !keep && let Some(h) = map.remove(&n) {
                h.stop().await;
            }
        }
        for a in &cfg.accounts {
            if !map.contains_key(&a.name) {
                let (s, name) = (self.fetch_ctx.store.clone(), a.name.clone());
                let _ = tokio::task::spawn_blocking(move || s.ensure_account(&name)).await;
                let h =
                    schedule::spawn(self.fetch_ctx.clone(), a.clone(), self.alerts.clone(), self.shutdown.subscribe());
                map.insert(a.name.clone(), h);
            }
        }
    }

    /// SIGHUP: read the config again; accounts added, removed or changed take effect now;
    /// listeners move only if their address changed.
    pub async fn reload(&mut self) -> Result<()> {
        let cfg = config::load(&self.paths.config)?;
        let password = resolve_local_password(&cfg).await?;
        self.live.set(cfg.clone(), password);
        self.imap_shared.slots.set_limits(listener::Limits::imap(&cfg.limits));
        self.smtp_shared.slots.set_limits(listener::Limits::smtp(&cfg.limits));
        self.fetch_ctx.config_mode = cfg.mode;
        self.bind_listeners(&cfg).await?;
        self.sync_schedulers(&cfg).await;
        Ok(())
    }

    /// Asks everything to stop and waits (bounded) for it.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let handles: Vec<schedule::Handle> = self.schedulers.lock().await.drain().map(|(_, h)| h).collect();
        for h in handles {
            h.stop().await;
        }
        for (_, l) in self.listeners {
            let _ = tokio::time::timeout(Duration::from_secs(5), l.task).await;
        }
        // The relay queue among them: it returns once its deliveries under way are recorded
        // (bounded by smtp::queue::DRAIN_TIMEOUT, as long as this wait).
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        // Every session holds its place until it has said BYE and closed: wait for all of them.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.imap_shared.slots.closed()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.smtp_shared.slots.closed()).await;
    }
}

/// `popbridge run`: until SIGTERM or SIGINT; SIGHUP reloads the config.
pub async fn run(paths: &Paths) -> Result<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    let cfg = config::load(&paths.config)?;
    let mut running = start(paths, &cfg, true).await?;
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
    eprintln!("popbridge: {} account(s); fetching on schedule", cfg.accounts.len());
    let mut hup = signal(SignalKind::hangup()).map_err(|e| Error::other(format!("signals: {e}")))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::other(format!("signals: {e}")))?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => match running.reload().await {
                Ok(()) => eprintln!("popbridge: configuration reloaded"),
                Err(e) => eprintln!("popbridge: the configuration was not reloaded: {}", e.message),
            },
        }
    }
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
