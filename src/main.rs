//! The `popbridge` binary: parse the command line, set up logging, run the command, and turn its
//! error into a message with guidance and the exit code DESIGN §5 fixes.
#![forbid(unsafe_code)]

use clap::Parser;

/// jemalloc instead of the system allocator, for `popbridge run` however it is started: memory
/// freed after a load goes back to the system within about a second (a background thread purges
/// pages unused for `dirty_decay_ms`, compiled in: .cargo/config.toml), instead of staying in
/// glibc's per-thread arenas — which without `MALLOC_ARENA_MAX` kept most of a peak resident for
/// good (issue 13). SQLite's own allocations (C) stay on the system allocator; they are bounded
/// by the store pool's page caches.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Blocking threads the runtime may start: the store pool's connections, the fetchers' store
/// work, the outbox, the text indexer and password commands, with room to spare; excess work waits.
const MAX_BLOCKING_THREADS: usize = 16;

fn main() {
    let cli = popbridge::cli::Cli::parse();
    let daemon = matches!(cli.command, popbridge::cli::Command::Run);
    init_tracing(cli.log_level.as_deref(), daemon);
    // One crypto provider for the whole process (ring; no aws-lc in the tree).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Blocking threads (SQLite, file I/O) are capped: sessions share the store's few connections
    // (store::pool), so the threads needed do not grow with clients; the cap stops anything else
    // from growing them either (tokio's default allows 512).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("popbridge: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(popbridge::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("popbridge: {}", e.message);
            eprintln!("  what to do: {}", e.guidance());
            e.class.exit_code()
        }
    };
    // Do not wait for stray blocking tasks (a password command being killed, say).
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}

/// Logs go to stderr: plain text, no colour unless stderr is a terminal (journald-friendly).
/// imap-next logs every raw line, passwords included, at TRACE: it is capped whatever the user asks.
///
/// Unless `--log-level` or `RUST_LOG` asks for more, the commands a person runs at a terminal
/// (`account add`, `fetch`, …) log popbridge's own warnings only: a library's log line — such as
/// rustls-platform-verifier's `ERROR … UnknownIssuer` for a certificate popbridge then explains
/// itself — would only be noise above popbridge's own message (issue 16). Ask for it with
/// `--log-level debug` (everything) or e.g. `--log-level rustls=debug`. The daemon keeps "warn"
/// for every target: its log is read later, where a library's warning may be the only trace.
fn init_tracing(level: Option<&str>, daemon: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = if daemon { "warn" } else { "popbridge=warn" };
    let base = match level {
        Some(l) => EnvFilter::try_new(l),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(default)),
    }
    .unwrap_or_else(|_| EnvFilter::new(default));
    let filter = match "imap_next=info".parse() {
        Ok(d) => base.add_directive(d),
        Err(_) => base,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
