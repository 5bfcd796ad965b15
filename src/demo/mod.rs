//! `popbridge demo`: a newcomer's first command. A built-in sample POP3 server (loopback only,
//! sample mail shipped in `samples/`), a throwaway config and store, one account for that server,
//! and a fetch — the real code path, end to end.

pub mod pop3_server;
pub mod samples;
pub mod smtp_sink;

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::config::edit::{AccountSpec, LocalSettings, PasswordSetting};
use crate::config::{self, DeletePolicy, Paths, TlsMode};
use crate::error::{Error, Result};
use crate::fetch;
use crate::secret::Secret;
use crate::store::Store;

/// `popbridge demo`'s options (the command line's `demo` subcommand).
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the throwaway config and store instead of removing them at the end.
    #[arg(long)]
    pub keep: bool,
}

pub const DEMO_USER: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo";

fn throwaway_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let p = base.join(format!("popbridge-demo-{}-{i}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::other(format!("cannot create a directory in {}: {e}", base.display()))),
        }
    }
    Err(Error::other("cannot create a throwaway directory"))
}

pub async fn run(args: DemoArgs) -> Result<i32> {
    let dir = throwaway_dir()?;
    let result = run_in(&dir).await;
    if args.keep {
        println!("\nThe demo's config and store are kept in {}.", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_in(dir: &std::path::Path) -> Result<i32> {
    let paths = Paths { config: dir.join("config.toml"), data_dir: dir.join("data") };
    // The sample server, on a free loopback port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::other(format!("cannot listen on 127.0.0.1: {e}")))?;
    let pop_port = listener.local_addr().map_err(|e| Error::other(e.to_string()))?.port();
    let mailbox = pop3_server::Mailbox::new(samples::samples());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server =
        tokio::spawn(pop3_server::serve(listener, DEMO_USER.into(), DEMO_PASSWORD.into(), mailbox.clone(), async {
            let _ = stop_rx.await;
        }));
    println!("Started a sample POP3 server on 127.0.0.1:{pop_port} with {} messages.", mailbox.len());
    // Its outgoing server drops what you send back into the same mailbox: send yourself a message.
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::other(format!("cannot listen on 127.0.0.1: {e}")))?;
    let sink_port = sink.local_addr().map_err(|e| Error::other(e.to_string()))?.port();
    let (sink_stop_tx, sink_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sink_task = tokio::spawn(smtp_sink::serve(sink, mailbox.clone(), async {
        let _ = sink_stop_rx.await;
    }));

    let text = config::edit::initial_config(&LocalSettings {
        user: DEMO_USER.into(),
        password: DEMO_PASSWORD.into(),
        imap: "127.0.0.1:0".into(),
        imaps: "127.0.0.1:0".into(),
        submission: "127.0.0.1:0".into(),
        submissions: "off".into(),
    });
    config::edit::create(&paths.config, &text)?;
    config::edit::append_account(
        &paths.config,
        &AccountSpec {
            name: "Demo".into(),
            email: "alex.morgan@example.com".into(),
            reply_to: None,
            pop_host: "127.0.0.1".into(),
            pop_port,
            pop_tls: TlsMode::Plain,
            pop_user: DEMO_USER.into(),
            pop_password: Some(PasswordSetting::Inline(Secret::new(DEMO_PASSWORD))),
            auth: None,
            ca_file: None,
            pin_sha256: None,
            delete: DeletePolicy::Never,
            first_import: None,
            duplicates: None,
            allow_plain: false,
            smtp: Some(crate::config::edit::SmtpSpec {
                host: "127.0.0.1".into(),
                port: sink_port,
                tls: TlsMode::Plain,
                user: None,
                password: None,
                relay: false,
                ca_file: None,
                pin_sha256: None,
            }),
            oauth: None,
        },
    )?;
    // Fetch every minute, so a message sent to yourself shows up quickly.
    let text = std::fs::read_to_string(&paths.config).map_err(|e| Error::other(e.to_string()))?;
    std::fs::write(&paths.config, text.replacen("\n[account.pop]", "\ninterval = \"1m\"\n[account.pop]", 1))
        .map_err(|e| Error::other(e.to_string()))?;
    let cfg = config::load(&paths.config)?;
    let store_path = paths.store();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || Store::open(&store_path))
            .await
            .map_err(|e| Error::other(e.to_string()))??,
    );
    crate::net::tls::ensure_local_cert(&paths.tls_dir())?;
    println!("Created a throwaway config and store in {}.", dir.display());

    let ctx = fetch::Context {
        config_path: cfg.path.clone(),
        config_mode: cfg.mode,
        store: store.clone(),
        lock_dir: paths.lock_dir(),
        oauth_dir: paths.oauth_dir(),
    };
    let account = cfg.select(&[])?.remove(0);
    let report = fetch::fetch(&ctx, &account, None).await?;
    println!(
        "Fetched {} message(s) ({}) over POP3 into the store, as the account \"{}\".",
        report.new_messages,
        fetch::human_bytes(report.new_bytes),
        account.name
    );
    drop(store);
    let running = crate::app::start(&paths, &cfg, true).await?;
    println!();
    if let Some(a) = running.imap {
        println!("IMAP  {}:{}  user {DEMO_USER}  password {DEMO_PASSWORD}", a.ip(), a.port());
    }
    if let Some(a) = running.submission {
        println!(
            "SMTP  {}:{}  user {DEMO_USER}  password {DEMO_PASSWORD}  (send as alex.morgan@example.com)",
            a.ip(),
            a.port()
        );
    }
    println!("      (no encryption: loopback only; the account's mail is in the folder \"{}\",", account.name);
    println!("       or log in as {DEMO_USER}+{} to see only that account)", account.name);
    println!(
        "\nTry: curl -u {DEMO_USER}:{DEMO_PASSWORD} 'imap://{}/{};UID=1'",
        running.imap.map(|a| a.to_string()).unwrap_or_default(),
        account.name
    );
    println!("Press Ctrl-C to stop; the throwaway config and store are then removed.");
    crate::app::wait_for_signal().await;
    running.stop().await;
    let _ = stop_tx.send(());
    let _ = server.await;
    let _ = sink_stop_tx.send(());
    let _ = sink_task.await;
    Ok(0)
}
