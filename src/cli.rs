//! The command line (DESIGN §5): clap definitions and the glue that runs each command.
//! Commands return an exit code or a classified [`Error`]; `main` prints the error with guidance.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::config::edit::{AccountSpec, LocalSettings, OAuthSpec, PasswordSetting, SmtpSpec};
use crate::config::{self, Config, DeletePolicy, Paths, TlsMode};
use crate::demo::DemoArgs;
use crate::error::{Error, ErrorClass, Result};
use crate::fetch::{self, human_bytes};
use crate::net::tls;
use crate::secret::Secret;
use crate::store::Store;

mod deliver;
mod fix;

#[derive(Parser, Debug)]
#[command(
    name = "popbridge",
    version,
    about = "Bring remote POP3 accounts into any mail client, through a local IMAP server."
)]
pub struct Cli {
    /// Config file [default: $XDG_CONFIG_HOME/popbridge/config.toml]
    #[arg(long, global = true, env = "POPBRIDGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory: the store, the local certificate [default: $XDG_DATA_HOME/popbridge]
    #[arg(long, global = true, env = "POPBRIDGE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter, e.g. "info" or "popbridge=debug" [default: $RUST_LOG, else popbridge's own warnings; "warn" for `run`]
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a config with a generated local password, create the store and the local TLS certificate.
    Init(InitArgs),
    /// Add, list, test or remove POP accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Fetch now: one cycle for the named accounts (all when none is named).
    Fetch {
        /// Account names.
        names: Vec<String>,
    },
    /// Import the mail another tool kept (an mbox file, a maildir, a Thunderbird local folder) into the account's mailbox.
    Import {
        name: String,
        /// An mbox file (Thunderbird's local folders are mbox files) or a maildir (with cur/ and new/).
        path: PathBuf,
    },
    /// Show each account's state, stored messages, last fetch and last error.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The daemon: fetch every account on its schedule, serve IMAP and SMTP submission, until SIGTERM/SIGINT.
    Run,
    /// Verify an address (a Reply-To, or a sender behind the shared relay) with a code sent to it.
    #[command(subcommand)]
    Verify(VerifyCommand),
    /// The settings a mail client needs, and the local certificate's fingerprint.
    ClientConfig {
        /// Also write Thunderbird autoconfig files (config-v1.1.xml) into this directory.
        #[arg(long, value_name = "DIR")]
        autoconfig: Option<PathBuf>,
    },
    /// Try popbridge without any account: a built-in sample POP3 server, fetched into a throwaway store and served over IMAP.
    Demo(DemoArgs),
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Local user name for mail clients.
    #[arg(long, default_value = "me")]
    pub user: String,
    /// Read the local password from stdin instead of generating one.
    #[arg(long)]
    pub password_stdin: bool,
    /// Local IMAP address (plaintext, loopback), or "off".
    #[arg(long, default_value = config::DEFAULT_IMAP)]
    pub imap: String,
    /// Local IMAP-over-TLS address, or "off".
    #[arg(long, default_value = config::DEFAULT_IMAPS)]
    pub imaps: String,
    /// Local SMTP submission address, or "off".
    #[arg(long, default_value = config::DEFAULT_SUBMISSION)]
    pub submission: String,
    /// Local SMTP-submission-over-TLS address, or "off".
    #[arg(long, default_value = config::DEFAULT_SUBMISSIONS)]
    pub submissions: String,
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Add a POP account (asks step by step on a terminal; flags for scripts). Tested before it is saved.
    Add(Box<AddArgs>),
    /// List the configured accounts.
    List,
    /// Connect, log in and report what the server offers; changes nothing.
    Test { name: String },
    /// Remove an account from the config. Its stored mail stays in the store (and in its mailbox).
    Remove { name: String },
    /// Sign in again with OAuth 2 (an account with auth = "oauth2"); re-enables the account.
    Auth {
        name: String,
        /// Sign in on another device: print a URL and a code instead of opening a browser here.
        #[arg(long)]
        device: bool,
    },
    /// Find the POP3 and SMTP servers for an email address and print the `account add` flags.
    /// Looks in popbridge's table of large providers, else the domain's Thunderbird autoconfig
    /// file (https://autoconfig.DOMAIN/…, https://DOMAIN/.well-known/autoconfig/…; replace with
    /// POPBRIDGE_AUTOCONFIG_URL, templates with {domain} and {email}) and its DNS SRV records
    /// (RFC 6186; POPBRIDGE_RESOLVER=IP:PORT picks the DNS server).
    Discover { email: String },
    /// Take over another POP client's record of what it downloaded, so popbridge does not download it again.
    ImportState {
        name: String,
        /// The tool whose state PATH is.
        #[arg(long, value_name = "TOOL", value_parser = ["mpop", "getmail", "fetchmail", "thunderbird"])]
        from: String,
        /// mpop: its uidls file; getmail: its directory or an oldmail-* file; fetchmail: .fetchids;
        /// thunderbird: popstate.dat (in the account's Mail/<server>/ folder).
        path: PathBuf,
        /// The server's name as the tool knew it, if not the account's host (e.g. an alias).
        #[arg(long, value_name = "HOST")]
        tool_host: Option<String>,
        /// The user name as the tool knew it, if not the account's POP user.
        #[arg(long, value_name = "USER")]
        tool_user: Option<String>,
    },
    /// Change an account's POP password (re-enables an account disabled by failed logins).
    SetPassword {
        name: String,
        #[arg(long, conflicts_with = "password_command")]
        password_stdin: bool,
        #[arg(long)]
        password_command: Option<String>,
    },
}

#[derive(Args, Debug, Default)]
pub struct AddArgs {
    /// Account name: its mailbox, and the login suffix (me+NAME).
    #[arg(long)]
    pub name: Option<String>,
    /// The From address for this account.
    #[arg(long)]
    pub email: Option<String>,
    #[arg(long)]
    pub reply_to: Option<String>,
    #[arg(long)]
    pub pop_host: Option<String>,
    #[arg(long)]
    pub pop_port: Option<u16>,
    /// implicit (995) | starttls (110) | plain
    #[arg(long)]
    pub pop_tls: Option<String>,
    #[arg(long)]
    pub pop_user: Option<String>,
    /// Read the POP password from stdin.
    #[arg(long, conflicts_with = "password_command")]
    pub password_stdin: bool,
    /// A command that prints the POP password (e.g. "pass show work").
    #[arg(long)]
    pub password_command: Option<String>,
    /// auto | user | plain | login | apop | xoauth2 (a token from --password-command); --oauth sets oauth2
    #[arg(long)]
    pub auth: Option<String>,
    /// Sign in with built-in OAuth 2 instead of a password: microsoft | google | custom.
    #[arg(long, value_name = "PROVIDER", conflicts_with_all = ["password_stdin", "password_command"])]
    pub oauth: Option<String>,
    /// The client ID you registered with the provider (README: "Signing in with OAuth2").
    #[arg(long, value_name = "ID", requires = "oauth")]
    pub oauth_client_id: Option<String>,
    /// A command that prints the client secret (Google's desktop-app clients have one).
    #[arg(long, value_name = "CMD", requires = "oauth")]
    pub oauth_client_secret_command: Option<String>,
    /// custom: the authorization endpoint (browser sign-in).
    #[arg(long, value_name = "URL", requires = "oauth")]
    pub oauth_authorization_url: Option<String>,
    /// custom: the token endpoint.
    #[arg(long, value_name = "URL", requires = "oauth")]
    pub oauth_token_url: Option<String>,
    /// custom: the device authorization endpoint (--device).
    #[arg(long, value_name = "URL", requires = "oauth")]
    pub oauth_device_url: Option<String>,
    /// custom: a scope to ask for (repeat for each).
    #[arg(long = "oauth-scope", value_name = "SCOPE", requires = "oauth")]
    pub oauth_scopes: Vec<String>,
    /// Sign in on another device (URL and code) instead of a browser on this machine.
    #[arg(long, requires = "oauth")]
    pub device: bool,
    /// PEM file of a private CA to trust for this server.
    #[arg(long)]
    pub ca_file: Option<String>,
    /// Trust exactly the certificate with this SHA-256 fingerprint (self-signed servers).
    #[arg(long)]
    pub pin_sha256: Option<String>,
    /// never | after-fetch | after-days:N | when-deleted-locally
    #[arg(long)]
    pub delete: Option<String>,
    /// First fetch: download only mail that arrived on or after this day (YYYY-MM-DD); the rest
    /// is recorded as seen and never deleted by popbridge.
    #[arg(long, value_name = "YYYY-MM-DD", conflicts_with_all = ["newest", "from_now_on"])]
    pub since: Option<String>,
    /// First fetch: download only the N most recent messages; the rest is recorded as seen and
    /// never deleted by popbridge.
    #[arg(long, value_name = "N", conflicts_with = "from_now_on")]
    pub newest: Option<u32>,
    /// First fetch: download nothing that is on the server now, only mail that arrives later;
    /// what is there is recorded as seen and never deleted by popbridge.
    #[arg(long)]
    pub from_now_on: bool,
    /// A message popbridge holds already, fetched again through this account (a list subscribed
    /// from two addresses, a CC to both): keep (the default), mark ($Duplicate) or hide.
    #[arg(long, value_name = "keep|mark|hide")]
    pub duplicates: Option<String>,
    /// Allow tls=plain to a non-loopback server (the password travels unencrypted).
    #[arg(long)]
    pub allow_plain: bool,
    /// The account's own outgoing server (its [account.smtp] section).
    #[arg(long)]
    pub smtp_host: Option<String>,
    /// [default: 465 with --smtp-tls implicit, 587 with starttls]
    #[arg(long)]
    pub smtp_port: Option<u16>,
    /// implicit (465) | starttls (587) | plain (loopback only)
    #[arg(long)]
    pub smtp_tls: Option<String>,
    /// The SMTP login [default: the POP user].
    #[arg(long)]
    pub smtp_user: Option<String>,
    /// A command that prints the SMTP password [default: the POP password].
    #[arg(long)]
    pub smtp_password_command: Option<String>,
    /// The SMTP server takes mail without a login (no AUTH): no SMTP user or password is saved.
    #[arg(long, conflicts_with_all = ["smtp_user", "smtp_password_command"])]
    pub smtp_no_auth: bool,
    /// PEM file of a private CA to trust for the SMTP server.
    #[arg(long)]
    pub smtp_ca_file: Option<String>,
    /// Trust exactly the SMTP server's certificate with this SHA-256 fingerprint (self-signed servers).
    #[arg(long)]
    pub smtp_pin_sha256: Option<String>,
    /// Send through the shared [relay] instead of an own SMTP server.
    #[arg(long)]
    pub smtp_relay: bool,
    /// Save without testing the account first.
    #[arg(long)]
    pub no_test: bool,
}

/// The wizard's answers as `setup::propose` fills them.
impl crate::setup::Answers for AddArgs {
    fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }
    fn fields(&mut self) -> crate::setup::Fields<'_> {
        crate::setup::Fields {
            pop_host: &mut self.pop_host,
            pop_port: &mut self.pop_port,
            pop_tls: &mut self.pop_tls,
            pop_user: &mut self.pop_user,
            smtp_host: &mut self.smtp_host,
            smtp_port: &mut self.smtp_port,
            smtp_tls: &mut self.smtp_tls,
            smtp_user: &mut self.smtp_user,
            oauth: Some(&mut self.oauth),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum VerifyCommand {
    /// Mail a verification code to ADDRESS through its account's outgoing server.
    Send { address: String },
    /// Confirm ADDRESS with the code it received.
    Confirm { address: String, code: String },
}

pub async fn run(cli: Cli) -> Result<i32> {
    let paths = Paths::resolve(cli.config.clone(), cli.data_dir.clone())?;
    match cli.command {
        Command::Init(a) => init(&paths, a).await,
        Command::Account(AccountCommand::Add(a)) => account_add(&paths, *a).await,
        Command::Account(AccountCommand::List) => account_list(&paths),
        Command::Account(AccountCommand::Test { name }) => account_test(&paths, &name).await,
        Command::Account(AccountCommand::Remove { name }) => account_remove(&paths, &name),
        Command::Account(AccountCommand::Auth { name, device }) => account_auth(&paths, &name, device).await,
        Command::Account(AccountCommand::Discover { email }) => crate::setup::discover_cmd(&email).await,
        Command::Account(AccountCommand::SetPassword { name, password_stdin, password_command }) => {
            set_password(&paths, &name, password_stdin, password_command).await
        }
        Command::Account(AccountCommand::ImportState { name, from, path, tool_host, tool_user }) => {
            import_state(&paths, &name, &from, path, tool_host, tool_user).await
        }
        Command::Fetch { names } => fetch_cmd(&paths, &names).await,
        Command::Import { name, path } => import_mail(&paths, &name, path).await,
        Command::Status { json } => status(&paths, json).await,
        Command::Run => crate::app::run(&paths).await,
        Command::Verify(VerifyCommand::Send { address }) => verify_send(&paths, &address).await,
        Command::Verify(VerifyCommand::Confirm { address, code }) => verify_confirm(&paths, &address, &code).await,
        Command::ClientConfig { autoconfig } => client_config(&paths, autoconfig.as_deref()).await,
        Command::Demo(a) => crate::demo::run(a).await,
    }
}

fn read_stdin_secret(what: &str) -> Result<Secret> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| Error::config(format!("cannot read the {what} from stdin: {e}")))?;
    let line = s.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(Error::config(format!("no {what} on stdin")));
    }
    Ok(Secret::new(line))
}

/// A random password for local logins: 24 characters from a 62-letter alphabet (≈143 bits).
fn generate_password() -> Result<String> {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::new();
    while out.len() < 24 {
        let mut b = [0u8; 32];
        rng.fill(&mut b).map_err(|_| Error::other("the system random generator failed"))?;
        // Rejection sampling keeps every letter equally likely.
        out.extend(b.iter().filter(|x| (**x as usize) < 248).map(|x| ALPHABET[*x as usize % 62] as char));
    }
    out.truncate(24);
    Ok(out)
}

use crate::blocking;

async fn open_store(paths: &Paths) -> Result<Arc<Store>> {
    let p = paths.store();
    blocking(move || Store::open(&p)).await.map(Arc::new)
}

async fn init(paths: &Paths, a: InitArgs) -> Result<i32> {
    let exists = paths.config.exists();
    if exists {
        println!("{} exists already; it was left unchanged.", paths.config.display());
    } else {
        let password = if a.password_stdin {
            read_stdin_secret("local password")?.expose().to_string()
        } else {
            generate_password()?
        };
        let text = config::edit::initial_config(&LocalSettings {
            user: a.user.clone(),
            password,
            imap: a.imap.clone(),
            imaps: a.imaps.clone(),
            submission: a.submission.clone(),
            submissions: a.submissions.clone(),
        });
        config::parse(&text, &paths.config, 0o600)?;
        config::edit::create(&paths.config, &text)?;
        println!("Created {} (private, mode 0600).", paths.config.display());
    }
    let cfg = config::load(&paths.config)?;
    crate::files::create_private_dir(&paths.data_dir)?;
    let store_existed = paths.store().exists();
    open_store(paths).await?;
    if !store_existed {
        println!("Created the store {}.", paths.store().display());
    }
    let (lc, created) = tls::ensure_local_cert(&paths.tls_dir())?;
    let fp = config::format_fingerprint(&lc.fingerprint()?);
    if created {
        println!("Created the local TLS certificate {}.", lc.cert.display());
    }
    println!();
    print_client_settings(&cfg, &fp).await?;
    if cfg.accounts.is_empty() {
        println!("\nNext: add a POP account with `popbridge account add`.");
    }
    Ok(0)
}

async fn print_client_settings(cfg: &Config, fingerprint: &str) -> Result<()> {
    let l = &cfg.local;
    println!("Mail client settings (incoming, IMAP):");
    if let Some(a) = l.imap {
        println!("  server {}  port {}  connection security: none (loopback only)", a.ip(), a.port());
    }
    if let Some(a) = l.imaps {
        println!("  server {}  port {}  connection security: SSL/TLS", a.ip(), a.port());
    }
    let pw = match &l.password {
        Some(config::SecretSource::Inline(s)) => s.expose().to_string(),
        Some(config::SecretSource::Command(c)) => format!("(printed by `{c}`)"),
        None => "(not set: add password to [local])".into(),
    };
    println!("  user {}  password {pw}", l.user);
    println!("  per-account login: {}+ACCOUNT (e.g. {}+Work) shows only that account", l.user, l.user);
    println!("  TLS certificate SHA-256 fingerprint: {fingerprint}");
    Ok(())
}

async fn client_config(paths: &Paths, autoconfig: Option<&std::path::Path>) -> Result<i32> {
    let cfg = load_config(paths)?;
    let (lc, _) = tls::ensure_local_cert(&paths.tls_dir())?;
    let fp = config::format_fingerprint(&lc.fingerprint()?);
    print_client_settings(&cfg, &fp).await?;
    let l = &cfg.local;
    if l.submission.is_some() || l.submissions.is_some() {
        println!("\nMail client settings (outgoing, SMTP):");
        if let Some(a) = l.submission {
            println!("  server {}  port {}  connection security: none (or STARTTLS)", a.ip(), a.port());
        }
        if let Some(a) = l.submissions {
            println!("  server {}  port {}  connection security: SSL/TLS", a.ip(), a.port());
        }
        println!("  user {} (same password); each account sends as its own address through its own server", l.user);
    }
    if !cfg.accounts.is_empty() {
        println!("\nOne mail account per POP account (account login):");
        for a in &cfg.accounts {
            println!("  {}  <{}>  IMAP and SMTP user {}+{}", a.name, a.email, l.user, a.name);
        }
    }
    if let Some(dir) = autoconfig {
        crate::files::create_private_dir(dir)?;
        let files = crate::autoconfig::write(dir, &cfg)?;
        println!();
        for f in files {
            println!("Wrote {}", f.display());
        }
    }
    Ok(0)
}

fn load_config(paths: &Paths) -> Result<Config> {
    config::load(&paths.config)
}

fn parse_tls(s: &str, what: &str) -> Result<TlsMode> {
    TlsMode::parse(s).ok_or_else(|| Error::config(format!("--{what} \"{s}\" must be implicit, starttls or plain")))
}

fn prompt(label: &str, default: Option<&str>) -> Result<String> {
    let stdin = std::io::stdin();
    loop {
        match default {
            Some(d) if !d.is_empty() => print!("{label} [{d}]: "),
            _ => print!("{label}: "),
        }
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let n = stdin.lock().read_line(&mut line).map_err(|e| Error::config(format!("cannot read the answer: {e}")))?;
        if n == 0 {
            return Err(Error::config("input ended; the account was not added"));
        }
        let v = line.trim().to_string();
        if !v.is_empty() {
            return Ok(v);
        }
        if let Some(d) = default {
            return Ok(d.to_string());
        }
    }
}

/// A TLS mode, asked until it is one (implicit, starttls or plain).
fn prompt_tls(label: &str, default: &str) -> Result<TlsMode> {
    loop {
        let t = prompt(label, Some(default))?;
        match TlsMode::parse(&t) {
            Some(m) => return Ok(m),
            None => println!("  \"{t}\" is not one of them: type implicit, starttls or plain."),
        }
    }
}

/// A port number, asked until it is one.
fn prompt_port(label: &str, default: &str) -> Result<u16> {
    loop {
        let p = prompt(label, Some(default))?;
        match p.parse::<u16>() {
            Ok(n) if n > 0 => return Ok(n),
            _ => println!("  \"{p}\" is not a port: a number from 1 to 65535."),
        }
    }
}

fn prompt_secret(label: &str) -> Result<Secret> {
    rpassword::prompt_password(format!("{label}: "))
        .map(Secret::new)
        .map_err(|e| Error::config(format!("cannot read the password: {e}")))
}

/// Fills in missing settings by asking, in the seed's order: name, From, Reply-To → POP server,
/// user, password, TLS, delete policy → (test) → outgoing server.
/// Every answer is checked as it is typed (a name in use, a TLS mode, a port, a delete policy) and
/// asked again when it does not fit, so that nothing typed is lost to a typo.
fn wizard(a: &mut AddArgs, password: &mut Option<Secret>, cfg: &Config) -> Result<()> {
    println!("Add a POP account. Incoming mail first; the outgoing (SMTP) server can be added now or later.\n");
    if a.name.is_none() {
        loop {
            let n = prompt("Account name (shown as a folder, e.g. Work)", None)?;
            match config::model::check_account_name(&n) {
                Ok(()) if cfg.account(&n).is_some() => {
                    println!(
                        "  An account named \"{n}\" exists already (see `popbridge account list`): choose another name."
                    )
                }
                Ok(()) => {
                    a.name = Some(n);
                    break;
                }
                Err(e) => println!("  The name {e}."),
            }
        }
    }
    if a.email.is_none() {
        a.email = Some(prompt("Your email address for this account (the From address)", None)?);
    }
    crate::setup::propose(a)?;
    if a.reply_to.is_none() {
        let r = prompt("Reply-To address (Enter for none)", Some(""))?;
        a.reply_to = (!r.is_empty()).then_some(r);
    }
    println!("\nIncoming server (POP3): ask your provider if unsure; 995 with SSL is standard.");
    if a.pop_host.is_none() {
        a.pop_host = Some(prompt("POP server host name", None)?);
    }
    if a.pop_tls.is_none() {
        let t = prompt_tls("Security: implicit (SSL, port 995), starttls (port 110) or plain", "implicit")?;
        a.pop_tls = Some(t.as_str().to_string());
    }
    if a.pop_port.is_none() {
        let tls = parse_tls(a.pop_tls.as_deref().unwrap_or("implicit"), "pop-tls")?;
        let d = if tls == TlsMode::Implicit { "995" } else { "110" };
        a.pop_port = Some(prompt_port("Port", d)?);
    }
    if a.pop_user.is_none() {
        a.pop_user = Some(prompt("User name", a.email.as_deref())?);
    }
    if let Some(provider) = &a.oauth
        && a.oauth_client_id.is_none()
    {
        println!(
            "Signing in with OAuth2 ({provider}) needs your own client ID: the README's \"Signing in with OAuth2\" shows how to register one."
        );
        a.oauth_client_id = Some(prompt("OAuth2 client ID", None)?);
    }
    if password.is_none() && a.password_command.is_none() && a.oauth.is_none() {
        *password = Some(prompt_secret("Password")?);
    }
    if a.delete.is_none() {
        println!(
            "Delete mail from the server after fetching? How this behaves depends on the server: check with your provider."
        );
        println!("  never | after-fetch | after-days:N | when-deleted-locally");
        loop {
            let d = prompt("Delete policy", Some("never"))?;
            if DeletePolicy::parse(&d).is_some() {
                a.delete = Some(d);
                break;
            }
            println!(
                "  \"{d}\" is not one of them: type never, after-fetch, after-days:N (e.g. after-days:30) or when-deleted-locally."
            );
        }
    }
    Ok(())
}

fn wizard_smtp(a: &mut AddArgs) -> Result<()> {
    if a.smtp_host.is_some() || a.smtp_relay {
        return Ok(());
    }
    println!(
        "\nOutgoing server (SMTP) for this address ([account.smtp]): ask your provider if unsure; 465 with SSL is standard, or 587 with STARTTLS. Press Enter to skip and add it later."
    );
    let h = prompt("SMTP server host name", Some(""))?;
    if h.is_empty() {
        return Ok(());
    }
    a.smtp_host = Some(h);
    if a.smtp_tls.is_none() {
        let t = prompt_tls("Security: implicit (SSL, port 465) or starttls (port 587)", "implicit")?;
        a.smtp_tls = Some(t.as_str().to_string());
    }
    let tls = parse_tls(a.smtp_tls.as_deref().unwrap_or("implicit"), "smtp-tls")?;
    if a.smtp_port.is_none() {
        a.smtp_port = Some(prompt_port("Port", if tls == TlsMode::Implicit { "465" } else { "587" })?);
    }
    if a.smtp_user.is_none() && !a.smtp_no_auth {
        println!(
            "  The SMTP password is the POP one (or give --smtp-password-command). Enter - if the server needs no login."
        );
        let u = prompt("SMTP user name", a.pop_user.as_deref())?;
        if u == "-" {
            a.smtp_no_auth = true;
        } else {
            a.smtp_user = Some(u);
        }
    }
    Ok(())
}

/// The flags whose condition holds, in order (for "missing …" and "… without …" errors).
fn flags_where(flags: &[(&'static str, bool)]) -> Vec<&'static str> {
    flags.iter().filter(|(_, on)| *on).map(|(f, _)| *f).collect()
}

fn build_spec(a: &AddArgs, pw: Option<PasswordSetting>) -> Result<AccountSpec> {
    let missing: Vec<&str> = flags_where(&[
        ("--name", a.name.is_none()),
        ("--email", a.email.is_none()),
        ("--pop-host", a.pop_host.is_none()),
        ("--pop-user", a.pop_user.is_none()),
    ]);
    if !missing.is_empty() {
        return Err(Error::config(format!(
            "missing {} (or run `popbridge account add` on a terminal to be asked)",
            missing.join(", ")
        )));
    }
    let pop_tls = parse_tls(a.pop_tls.as_deref().unwrap_or("implicit"), "pop-tls")?;
    let delete = match &a.delete {
        None => DeletePolicy::Never,
        Some(d) => DeletePolicy::parse(d).ok_or_else(|| {
            Error::config(format!("--delete \"{d}\" must be never, after-fetch, after-days:N or when-deleted-locally"))
        })?,
    };
    let smtp = if a.smtp_relay {
        let own: Vec<&str> = flags_where(&[
            ("--smtp-host", a.smtp_host.is_some()),
            ("--smtp-ca-file", a.smtp_ca_file.is_some()),
            ("--smtp-pin-sha256", a.smtp_pin_sha256.is_some()),
        ]);
        if !own.is_empty() {
            return Err(Error::config(format!(
                "{} set the account's own SMTP server, but --smtp-relay sends through [relay] (whose ca_file and pin_sha256 are set in the [relay] section): give one or the other",
                own.join(", ")
            )));
        }
        Some(SmtpSpec {
            host: String::new(),
            port: 0,
            tls: TlsMode::Implicit,
            user: None,
            password: None,
            relay: true,
            ca_file: None,
            pin_sha256: None,
        })
    } else if let Some(h) = &a.smtp_host {
        let tls = parse_tls(a.smtp_tls.as_deref().unwrap_or("implicit"), "smtp-tls")?;
        Some(SmtpSpec {
            host: h.clone(),
            port: a.smtp_port.unwrap_or(if tls == TlsMode::Implicit { 465 } else { 587 }),
            tls,
            // No login at all, or the given one, or the POP user (with the POP password).
            user: if a.smtp_no_auth { None } else { a.smtp_user.clone().or_else(|| a.pop_user.clone()) },
            password: a.smtp_password_command.clone().map(PasswordSetting::Command),
            relay: false,
            ca_file: a.smtp_ca_file.clone(),
            pin_sha256: a.smtp_pin_sha256.clone(),
        })
    } else {
        None
    };
    Ok(AccountSpec {
        name: a.name.clone().unwrap_or_default(),
        email: a.email.clone().unwrap_or_default(),
        reply_to: a.reply_to.clone(),
        pop_host: a.pop_host.clone().unwrap_or_default(),
        pop_port: a.pop_port.unwrap_or(if pop_tls == TlsMode::Implicit { 995 } else { 110 }),
        pop_tls,
        pop_user: a.pop_user.clone().unwrap_or_default(),
        pop_password: pw,
        auth: if a.oauth.is_some() { Some("oauth2".into()) } else { a.auth.clone() },
        ca_file: a.ca_file.clone(),
        pin_sha256: a.pin_sha256.clone(),
        delete,
        first_import: first_import(a)?,
        duplicates: match &a.duplicates {
            None => None,
            Some(d) => Some(
                crate::config::Duplicates::parse(d)
                    .ok_or_else(|| Error::config(format!("--duplicates \"{d}\" must be keep, mark or hide")))?,
            ),
        },
        allow_plain: a.allow_plain,
        smtp,
        oauth: oauth_spec(a)?,
    })
}

/// `first_import` from `--since`, `--newest` or `--from-now-on` (clap lets at most one through).
fn first_import(a: &AddArgs) -> Result<Option<crate::config::FirstImport>> {
    use crate::config::FirstImport;
    if let Some(day) = &a.since {
        let t = crate::config::parse_day(day)
            .ok_or_else(|| Error::config(format!("--since \"{day}\" must be a date written YYYY-MM-DD")))?;
        return Ok(Some(FirstImport::Since(t)));
    }
    Ok(a.newest.map(FirstImport::Newest).or(a.from_now_on.then_some(FirstImport::FromNowOn)))
}

/// `[account.oauth]` from the `--oauth…` flags.
fn oauth_spec(a: &AddArgs) -> Result<Option<OAuthSpec>> {
    let Some(provider) = &a.oauth else { return Ok(None) };
    if a.auth.as_deref().is_some_and(|x| !x.eq_ignore_ascii_case("oauth2")) {
        return Err(Error::config("--oauth signs in with OAuth 2 (auth = \"oauth2\"): leave out --auth"));
    }
    let client_id = a.oauth_client_id.clone().ok_or_else(|| {
        Error::config("--oauth needs --oauth-client-id ID: register popbridge with the provider first (README: \"Signing in with OAuth2\")")
    })?;
    Ok(Some(OAuthSpec {
        provider: provider.clone(),
        client_id,
        client_secret_command: a.oauth_client_secret_command.clone(),
        authorization_url: a.oauth_authorization_url.clone(),
        token_url: a.oauth_token_url.clone(),
        device_authorization_url: a.oauth_device_url.clone(),
        scopes: a.oauth_scopes.clone(),
    }))
}

async fn account_add(paths: &Paths, mut a: AddArgs) -> Result<i32> {
    let cfg = load_config(paths)?;
    let interactive = std::io::stdin().is_terminal();
    let mut password = if a.password_stdin { Some(read_stdin_secret("POP password")?) } else { None };
    if interactive {
        wizard(&mut a, &mut password, &cfg)?;
    }
    let mut pw = match (password.clone(), &a.password_command) {
        _ if a.oauth.is_some() => None,
        (Some(p), _) => Some(PasswordSetting::Inline(p)),
        (None, Some(c)) => Some(PasswordSetting::Command(c.clone())),
        (None, None) => {
            return Err(Error::config(
                "give the POP password with --password-stdin or --password-command CMD (or sign in with --oauth PROVIDER)",
            ));
        }
    };
    let spec = build_spec(&a, pw.clone())?;
    if cfg.account(&spec.name).is_some() {
        return Err(Error::config(format!(
            "an account named \"{}\" exists already (see `popbridge account list`)",
            spec.name
        )));
    }
    // Validate the account as it will be written, then test it before saving (the seed: incoming first).
    let text = std::fs::read_to_string(&paths.config)
        .map_err(|e| Error::config(format!("cannot read {}: {e}", paths.config.display())))?;
    let (_, account) = candidate(paths, &text, &spec)?;
    // OAuth 2: sign in first (the test logs in with the token), and keep the tokens.
    if account.oauth.is_some() {
        crate::oauth::flow::sign_in(
            &paths.config,
            0o600,
            &paths.oauth_dir(),
            &account,
            a.device,
            &mut std::io::stdout(),
        )
        .await?;
        println!("Signed in; the tokens are in {} (private).", paths.oauth_dir().display());
    }
    // On a terminal a failed test is not the end: fix::incoming offers to change the setting at
    // fault, keeping the rest, and the test runs again (issue 16).
    while !a.no_test {
        let spec = build_spec(&a, pw.clone())?;
        let tested = match candidate(paths, &text, &spec) {
            Ok((_, account)) => {
                println!("Testing the incoming server {}:{} …", account.pop.host, account.pop.port);
                fetch::probe::probe(&paths.config, 0o600, &paths.oauth_dir(), &account).await
            }
            // A setting the config refuses (tls = "plain" to a remote host, say) is fixed the same way.
            Err(e) if interactive => Err(e),
            Err(e) => return Err(e),
        };
        match tested {
            Ok(p) => {
                println!(
                    "  OK: logged in with {}; {} message(s), {} on the server.",
                    p.auth_used,
                    p.messages,
                    human_bytes(p.bytes)
                );
                if let Some((how, fp)) = &p.tls {
                    println!(
                        "  TLS certificate {how}{}",
                        fp.map(|f| format!(" (SHA-256 {})", config::format_fingerprint(&f))).unwrap_or_default()
                    );
                }
                if !p.uidl || p.uidl_missing > 0 || p.uidl_duplicates > 0 {
                    println!(
                        "  Warning: the server's UIDLs are not usable for every message; popbridge will recognise those by their headers and never delete them."
                    );
                }
                break;
            }
            Err(e) => {
                eprintln!("popbridge: {}", e.message);
                // On a terminal, fix::incoming says what to do (and offers to do it).
                if !interactive {
                    eprintln!("  what to do: {}", e.guidance());
                }
                if interactive && fix::incoming(&mut a, &mut password, &e)? == fix::Next::Retry {
                    if let Some(p) = &password
                        && pw.is_some()
                    {
                        pw = Some(PasswordSetting::Inline(p.clone()));
                    }
                    continue;
                }
                eprintln!("The account was not saved (use --no-test to save it anyway).");
                return Ok(e.class.exit_code());
            }
        }
    }
    if interactive {
        wizard_smtp(&mut a)?;
    }
    if a.smtp_host.is_none() && !a.smtp_relay {
        let orphans: Vec<&str> = flags_where(&[
            ("--smtp-port", a.smtp_port.is_some()),
            ("--smtp-tls", a.smtp_tls.is_some()),
            ("--smtp-user", a.smtp_user.is_some()),
            ("--smtp-password-command", a.smtp_password_command.is_some()),
            ("--smtp-no-auth", a.smtp_no_auth),
            ("--smtp-ca-file", a.smtp_ca_file.is_some()),
            ("--smtp-pin-sha256", a.smtp_pin_sha256.is_some()),
        ]);
        if !orphans.is_empty() {
            return Err(Error::config(format!(
                "{} describe an outgoing server, but there is none: add --smtp-host HOST (or --smtp-relay)",
                orphans.join(", ")
            )));
        }
    }
    // An SMTP password typed in the wizard (after a refused login): saved in [account.smtp].
    let mut smtp_password: Option<Secret> = None;
    let with_smtp_password = |mut spec: AccountSpec, typed: &Option<Secret>| {
        if let (Some(p), Some(m)) = (typed, spec.smtp.as_mut()) {
            m.password = Some(PasswordSetting::Inline(p.clone()));
        }
        spec
    };
    let mut spec = with_smtp_password(build_spec(&a, pw.clone())?, &smtp_password);
    // Then the outgoing side, as the seed does: connect, TLS, EHLO, AUTH — no mail is sent.
    while !a.no_test && spec.smtp.as_ref().is_some_and(|m| !m.relay) {
        let tested = match candidate(paths, &text, &spec) {
            Ok((candidate, acct)) => match &acct.smtp {
                Some(server) => {
                    println!("Testing the outgoing server {}:{} …", server.host, server.port);
                    test_smtp(&candidate, &paths.oauth_dir(), &acct).await
                }
                None => Ok(()),
            },
            Err(e) if interactive => Err(e.smtp()),
            Err(e) => return Err(e),
        };
        let Err(e) = tested else { break };
        eprintln!("popbridge: {}", e.message);
        if !interactive {
            eprintln!("  what to do: {}", e.guidance());
        }
        let next = if interactive { fix::outgoing(&mut a, &mut smtp_password, &e)? } else { fix::Next::GiveUp };
        if next == fix::Next::GiveUp {
            eprintln!("The account was not saved (use --no-test to save it anyway).");
            return Ok(e.class.exit_code());
        }
        spec = with_smtp_password(build_spec(&a, pw.clone())?, &smtp_password);
        if next == fix::Next::SkipSmtp {
            println!("  The account is saved without an outgoing server: add one later in its [account.smtp] section.");
        }
    }
    config::edit::append_account(&paths.config, &spec)?;
    let store = open_store(paths).await?;
    let name = spec.name.clone();
    blocking(move || store.ensure_account(&name)).await?;
    println!("Saved account \"{}\" in {}.", spec.name, paths.config.display());
    if spec.smtp.as_ref().is_some_and(|m| m.relay) {
        println!(
            "This account sends through [relay]: verify its address first with `popbridge verify send {}`.",
            spec.email
        );
    }
    println!(
        "Fetch now with `popbridge fetch {}`; its mail appears in the folder \"{}\".",
        shell_word(&spec.name),
        spec.name
    );
    Ok(0)
}

/// The config with `spec` appended, parsed as it will be read (so it is valid before it is
/// tested or saved), and the new account in it.
fn candidate(paths: &Paths, text: &str, spec: &AccountSpec) -> Result<(Config, config::Account)> {
    let block = config::edit::account_block(spec);
    let candidate = config::parse(&format!("{text}\n{block}"), &paths.config, 0o600)?;
    let Some(account) = candidate.account(&spec.name).cloned() else {
        return Err(Error::other("internal error: the new account vanished"));
    };
    Ok((candidate, account))
}

fn shell_word(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn account_list(paths: &Paths) -> Result<i32> {
    let cfg = load_config(paths)?;
    if cfg.accounts.is_empty() {
        println!("No accounts yet: add one with `popbridge account add`.");
    }
    for a in &cfg.accounts {
        println!(
            "{}  <{}>  pop {}:{} ({})  user {}  delete {}{}",
            a.name,
            a.email,
            a.pop.host,
            a.pop.port,
            a.pop.tls.as_str(),
            a.pop.user,
            a.pop.delete.to_config_string(),
            match &a.smtp {
                Some(s) if s.relay => "  smtp via [relay]".to_string(),
                Some(s) if s.user.is_none() => format!("  smtp {}:{} (no login)", s.host, s.port),
                Some(s) => format!("  smtp {}:{}", s.host, s.port),
                None => String::new(),
            }
        );
    }
    Ok(0)
}

/// The outgoing side of an account: connect, TLS, EHLO, AUTH (no mail).
async fn test_smtp(cfg: &Config, oauth_dir: &std::path::Path, account: &config::Account) -> Result<()> {
    let Some(server) = &account.smtp else { return Ok(()) };
    let server = if server.relay {
        match &cfg.relay {
            Some(r) => r,
            None => return Err(Error::config("the account sends through [relay], but [relay] is not configured")),
        }
    } else {
        server
    };
    let login = crate::oauth::smtp_credential(&cfg.path, cfg.mode, oauth_dir, account, server).await?;
    let p = crate::smtp::upstream::probe(server, login.as_ref(), "localhost").await?;
    println!(
        "  OK: {}:{} {}{}",
        server.host,
        server.port,
        if p.authenticated { "accepted the login" } else { "answered (no login configured)" },
        p.tls.as_ref().map(|(how, _)| format!("; TLS certificate {how}")).unwrap_or_default()
    );
    let offers_auth = p.capabilities.iter().any(|c| c.len() >= 4 && c[..4].eq_ignore_ascii_case("AUTH"));
    if !p.authenticated && offers_auth {
        println!(
            "  Note: the server offers a login (AUTH); if it refuses mail without one, set user (and password_command) in [account.smtp], or add the account with --smtp-user"
        );
    }
    Ok(())
}

async fn account_test(paths: &Paths, name: &str) -> Result<i32> {
    let cfg = load_config(paths)?;
    let account = cfg.select(&[name.to_string()])?.remove(0);
    let p = fetch::probe::probe(&cfg.path, cfg.mode, &paths.oauth_dir(), &account).await?;
    if let Some(t) = &account.deliver {
        let oauth_dir = paths.oauth_dir();
        let secrets = fetch::session::Secrets { config_path: &cfg.path, config_mode: cfg.mode, oauth_dir: &oauth_dir };
        deliver::test(&secrets, &account, t).await.map_err(|e| e.context(format!("account \"{}\"", account.name)))?;
    }
    println!("Account \"{}\": {}:{} ({})", account.name, account.pop.host, account.pop.port, account.pop.tls.as_str());
    println!("  greeting: {}", p.greeting);
    match &p.tls {
        Some((how, fp)) => {
            println!("  TLS: certificate {how}");
            if let Some(fp) = fp {
                println!("  certificate SHA-256: {}", config::format_fingerprint(fp));
            }
        }
        None => println!("  TLS: none (plaintext)"),
    }
    let show = |label: &str, c: &Option<crate::pop3::Capabilities>| match c {
        Some(c) => println!("  capabilities {label}: {}", c.lines.join(", ")),
        None => println!("  capabilities {label}: (CAPA not supported)"),
    };
    show("before login", &p.caps_before);
    show("after login", &p.caps);
    if let Some(c) = &p.caps {
        let flag = |b: bool| if b { "yes" } else { "no" };
        println!(
            "  UIDL {}  TOP {}  PIPELINING {}  EXPIRE {}  LOGIN-DELAY {}",
            flag(c.uidl),
            flag(c.top),
            flag(c.pipelining),
            match &c.expire {
                Some(crate::pop3::Expire::Never) => "NEVER".to_string(),
                Some(crate::pop3::Expire::Days(d)) => d.to_string(),
                None => "-".into(),
            },
            c.login_delay.map(|d| format!("{d}s")).unwrap_or_else(|| "-".into())
        );
    }
    if let Some(c) = &p.caps_before {
        println!(
            "  STLS {}  SASL {}",
            if c.stls { "yes" } else { "no" },
            if c.sasl.is_empty() { "-".into() } else { c.sasl.join(" ") }
        );
    }
    println!("  login: {}", p.auth_used);
    println!("  mailbox: {} message(s), {}", p.messages, human_bytes(p.bytes));
    if !p.uidl {
        println!(
            "  UIDL: not supported — messages are recognised by Message-ID, Date and size; none is ever deleted by popbridge"
        );
    } else if p.uidl_missing > 0 || p.uidl_duplicates > 0 {
        println!(
            "  UIDL: {} message(s) without a UIDL, {} sharing a UIDL — those are recognised by their headers and never deleted by popbridge",
            p.uidl_missing, p.uidl_duplicates
        );
    } else if p.uidl_numbers {
        println!(
            "  UIDL: the server's UIDLs are its message numbers, which it gives to other messages later — popbridge recognises each stored message by its headers (TOP) before it skips or deletes it"
        );
    } else {
        println!("  UIDL: every message has its own");
    }
    let key = account.pop.mailbox_key();
    let reused = blocking({
        let p = paths.store();
        move || Ok(crate::store::Store::open_existing(&p)?.and_then(|s| s.find_pop_server(&key).ok().flatten()))
    })
    .await?
    .is_some_and(|s| s.reused);
    if reused {
        println!(
            "  UIDL reuse: this server was seen giving a known UIDL to another message — popbridge checks each stored message by its headers before it skips or deletes it"
        );
    }
    if p.caps.as_ref().is_some_and(|c| c.utf8) {
        println!("  UTF8: {}", if p.utf8 { "enabled (8-bit headers arrive as sent)" } else { "refused by the server" });
    }
    if let (Some(f), Some((count, bytes))) = (account.pop.first_import, p.first_import) {
        let (name, key) = (account.name.clone(), account.pop.mailbox_key());
        let first = blocking({
            let p = paths.store();
            move || {
                let Some(s) = crate::store::Store::open_existing(&p)? else { return Ok(true) };
                match s.account_ids(&name)? {
                    Some(ids) => s.is_first_fetch(ids.account, &key),
                    None => Ok(true),
                }
            }
        })
        .await?;
        let left = p.messages.saturating_sub(count);
        if first {
            println!(
                "  first import ({}): would download {count} message(s), {}; the other {left} stay on the server, recorded as seen (never deleted by popbridge)",
                f.to_config_string(),
                human_bytes(bytes)
            );
        } else {
            println!(
                "  first import ({}): done already (popbridge keeps state for this mailbox); every fetch downloads all new mail",
                f.to_config_string()
            );
        }
    }
    for note in crate::setup::quirk_notes(&account, &p) {
        println!("  {note}");
    }
    if account.smtp.is_some() {
        println!("Outgoing:");
        test_smtp(&cfg, &paths.oauth_dir(), &account).await?;
    }
    Ok(0)
}

fn account_remove(paths: &Paths, name: &str) -> Result<i32> {
    let cfg = load_config(paths)?;
    let Some(a) = cfg.account(name) else {
        return Err(Error::config(format!("no account named \"{name}\" in {}", cfg.path.display())));
    };
    config::edit::remove_account(&paths.config, &a.name)?;
    // Its OAuth 2 tokens are a sign-in nobody uses any more: not left lying around.
    let tokens = crate::oauth::token::path(&paths.oauth_dir(), &a.name);
    if tokens.exists() {
        std::fs::remove_file(&tokens)
            .map_err(|e| Error::other(format!("cannot remove the token file {}: {e}", tokens.display())))?;
    }
    println!(
        "Removed account \"{}\" from {}. Its stored mail stays in the folder \"{}\"; adding the account again resumes where it stopped.",
        a.name,
        paths.config.display(),
        a.name
    );
    Ok(0)
}

async fn set_password(paths: &Paths, name: &str, stdin: bool, command: Option<String>) -> Result<i32> {
    let cfg = load_config(paths)?;
    let Some(a) = cfg.account(name) else {
        return Err(Error::config(format!("no account named \"{name}\" in {}", cfg.path.display())));
    };
    let pw = match (stdin, command) {
        (_, Some(c)) => PasswordSetting::Command(c),
        (true, None) => PasswordSetting::Inline(read_stdin_secret("POP password")?),
        (false, None) if std::io::stdin().is_terminal() => PasswordSetting::Inline(prompt_secret("New POP password")?),
        (false, None) => {
            return Err(Error::config("give the new password with --password-stdin or --password-command CMD"));
        }
    };
    config::edit::set_password(&paths.config, &a.name, &pw)?;
    reenable(paths, &a.name).await?;
    println!("Updated the password of \"{}\"; the account is active again.", a.name);
    Ok(0)
}

/// Makes the account active again in the store, if there is one (after a new password or sign-in).
async fn reenable(paths: &Paths, name: &str) -> Result<()> {
    let p = paths.store();
    if let Some(store) = blocking(move || Store::open_existing(&p)).await? {
        let n = name.to_string();
        blocking(move || store.reenable(&n)).await?;
    }
    Ok(())
}

/// `account auth NAME [--device]`: sign in again (the grant was revoked, or the account was added
/// with --no-test before signing in), store the tokens, enable the account again.
async fn account_auth(paths: &Paths, name: &str, device: bool) -> Result<i32> {
    let cfg = load_config(paths)?;
    let account = cfg.select(&[name.to_string()])?.remove(0);
    crate::files::create_private_dir(&paths.data_dir)?;
    crate::oauth::flow::sign_in(&cfg.path, cfg.mode, &paths.oauth_dir(), &account, device, &mut std::io::stdout())
        .await
        .map_err(|e| e.context(format!("account \"{}\"", account.name)))?;
    reenable(paths, &account.name).await?;
    println!(
        "Signed in; account \"{}\" is active again (a running daemon resumes it on its schedule; `popbridge fetch {}` fetches now).",
        account.name,
        shell_word(&account.name)
    );
    Ok(0)
}

async fn import_state(
    paths: &Paths,
    name: &str,
    from: &str,
    path: PathBuf,
    host: Option<String>,
    user: Option<String>,
) -> Result<i32> {
    let cfg = load_config(paths)?;
    let account = cfg.select(&[name.to_string()])?.remove(0);
    let tool = crate::store::accounts::Tool::parse(from)
        .ok_or_else(|| Error::config(format!("--from {from}: must be mpop, getmail, fetchmail or thunderbird")))?;
    let store = open_store(paths).await?;
    let source = fetch::import_state::Source { tool, path, host, user };
    let oauth_dir = paths.oauth_dir();
    let secrets = fetch::session::Secrets { config_path: &cfg.path, config_mode: cfg.mode, oauth_dir: &oauth_dir };
    let o = fetch::import_state::import(&secrets, store, &paths.lock_dir(), &account, &source).await?;
    for w in &o.warnings {
        eprintln!("{}: warning: {w}", account.name);
    }
    if !o.others.is_empty() {
        println!("{}: ignored the state {from} kept for other mailboxes: {}", account.name, o.others.join(", "));
    }
    println!(
        "{}: {} matched (will not be downloaded), {} no longer on the server, {} new (will be downloaded on the next fetch)",
        account.name, o.matched, o.gone, o.new
    );
    if o.partial > 0 {
        println!(
            "  of the new ones, {} were only partly downloaded by {from} (too big): popbridge downloads them whole",
            o.partial
        );
    }
    println!(
        "  recorded now: {}; popbridge never deletes the matched messages from the server (it does not hold them)",
        o.recorded
    );
    Ok(0)
}

async fn import_mail(paths: &Paths, name: &str, path: PathBuf) -> Result<i32> {
    let cfg = load_config(paths)?;
    let account = cfg.select(&[name.to_string()])?.remove(0);
    let store = open_store(paths).await?;
    let lock_dir = paths.lock_dir();
    let bar = progress_bars(std::slice::from_ref(&account.name));
    let acct = account.clone();
    let o = blocking(move || {
        let mut tick = |done: u64, total: u64| {
            if let Some((_, bars)) = &bar {
                bars[0].set_length(total);
                bars[0].set_position(done);
            }
        };
        let o = fetch::import_mail::import(&store, &lock_dir, &acct, &path, &mut tick);
        if let Some((_, bars)) = &bar {
            bars[0].finish_and_clear();
        }
        o
    })
    .await?;
    for w in &o.warnings {
        eprintln!("{}: warning: {w}", account.name);
    }
    let mut skipped = Vec::new();
    if o.too_big > 0 {
        skipped.push(format!("{} larger than max_message_size", o.too_big));
    }
    if o.expunged > 0 {
        skipped.push(format!("{} deleted in Thunderbird (X-Mozilla-Status: expunged)", o.expunged));
    }
    if o.unreadable > 0 {
        skipped.push(format!("{} unreadable", o.unreadable));
    }
    let skipped_n = o.too_big + o.expunged + o.unreadable;
    println!(
        "{}: {} imported, {} already there, {} skipped{}",
        account.name,
        o.imported,
        o.already,
        skipped_n,
        if skipped.is_empty() { String::new() } else { format!(" ({})", skipped.join(", ")) }
    );
    if o.claimed > 0 {
        println!("  {} carried a UIDL (X-UIDL): popbridge will not download those again", o.claimed);
    }
    Ok(0)
}

fn progress_bars(names: &[String]) -> Option<(indicatif::MultiProgress, Vec<indicatif::ProgressBar>)> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let mp = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:.bold} [{bar:30}] {msg} {binary_bytes}/{binary_total_bytes} ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    let bars = names
        .iter()
        .map(|n| {
            let b = mp.add(indicatif::ProgressBar::new(0));
            b.set_style(style.clone());
            b.set_prefix(n.clone());
            b
        })
        .collect();
    Some((mp, bars))
}

async fn fetch_cmd(paths: &Paths, names: &[String]) -> Result<i32> {
    let cfg = load_config(paths)?;
    if cfg.accounts.is_empty() {
        return Err(Error::config(format!(
            "no accounts in {}: add one with `popbridge account add`",
            cfg.path.display()
        )));
    }
    let accounts = cfg.select(names)?;
    // A running daemon does the fetching (one POP session per account, not two racing).
    let wanted: Vec<String> = accounts.iter().map(|a| a.name.clone()).collect();
    if let Some(outcomes) = crate::control::request_fetch(&paths.data_dir, &wanted).await? {
        let mut code = 0;
        for o in outcomes {
            if o.ok {
                let mut line =
                    format!("{}: {} new message(s) ({})", o.account, o.new_messages, human_bytes(o.new_bytes));
                if o.deleted > 0 {
                    line.push_str(&format!(", {} deleted from the server", o.deleted));
                }
                line.push_str(&format!(
                    "; the server holds {} message(s) (fetched by the running daemon)",
                    o.server_messages
                ));
                println!("{line}");
                for w in &o.warnings {
                    eprintln!("{}: warning: {w}", o.account);
                }
            } else {
                let class = o.class.as_deref().and_then(ErrorClass::parse).unwrap_or(ErrorClass::Other);
                eprintln!("popbridge: {}", o.message.unwrap_or_default());
                eprintln!("  what to do: {}", class.guidance());
                if code == 0 {
                    code = class.exit_code();
                }
            }
        }
        return Ok(code);
    }
    let store = open_store(paths).await?;
    let ctx = fetch::Context {
        config_path: cfg.path.clone(),
        config_mode: cfg.mode,
        store,
        lock_dir: paths.lock_dir(),
        oauth_dir: paths.oauth_dir(),
    };
    let bars = progress_bars(&accounts.iter().map(|a| a.name.clone()).collect::<Vec<_>>());
    let mut tasks = Vec::new();
    for (i, account) in accounts.into_iter().enumerate() {
        let ctx = ctx.clone();
        let bar = bars.as_ref().map(|(_, b)| b[i].clone());
        let progress: Option<fetch::ProgressFn> = bar.clone().map(|b| {
            Arc::new(move |p: &fetch::Progress| {
                b.set_length(p.total_bytes);
                b.set_position(p.done_bytes);
                b.set_message(format!("{}/{} msgs", p.done_messages, p.total_messages));
            }) as fetch::ProgressFn
        });
        tasks.push(tokio::spawn(async move {
            let r = fetch::fetch(&ctx, &account, progress).await;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            (account.name, r)
        }));
    }
    let mut code = 0;
    for t in tasks {
        let (name, r) = t.await.map_err(|e| Error::other(format!("internal error: {e}")))?;
        match r {
            Ok(rep) => {
                let mut line = format!("{name}: {} new message(s) ({})", rep.new_messages, human_bytes(rep.new_bytes));
                if rep.duplicates > 0 {
                    line.push_str(&format!("; {} copies of messages already held", rep.duplicates));
                    if rep.duplicates_hidden > 0 {
                        line.push_str(&format!(" ({} not filed: duplicates = \"hide\")", rep.duplicates_hidden));
                    }
                }
                if rep.deleted > 0 {
                    line.push_str(&format!(", {} deleted from the server", rep.deleted));
                }
                line.push_str(&format!("; the server holds {} message(s)", rep.server_messages));
                println!("{line}");
                for w in &rep.warnings {
                    eprintln!("{name}: warning: {w}");
                }
            }
            Err(e) => {
                eprintln!("popbridge: {}", e.message);
                eprintln!("  what to do: {}", e.class.guidance());
                if code == 0 {
                    code = e.class.exit_code();
                }
            }
        }
    }
    Ok(code)
}

#[derive(serde::Serialize)]
struct StatusJson {
    accounts: Vec<serde_json::Value>,
    outbox: crate::store::outbox::OutboxSummary,
    verifications: Vec<crate::store::outbox::Verification>,
}

async fn verify_send(paths: &Paths, address: &str) -> Result<i32> {
    let cfg = load_config(paths)?;
    let store = open_store(paths).await?;
    let account = crate::smtp::verify::send(&cfg, &store, &paths.oauth_dir(), address).await?;
    println!("Sent a verification code to {address} (account {account}).");
    println!("If popbridge fetches that mailbox, it confirms the address by itself at the next fetch;");
    println!("otherwise run: popbridge verify confirm {address} CODE");
    Ok(0)
}

async fn verify_confirm(paths: &Paths, address: &str, code: &str) -> Result<i32> {
    let store = open_store(paths).await?;
    let (a, c) = (address.to_string(), code.to_string());
    blocking(move || crate::smtp::verify::confirm(&store, &a, &c)).await?;
    println!("{address} is verified.");
    Ok(0)
}

async fn status(paths: &Paths, json: bool) -> Result<i32> {
    let cfg = load_config(paths)?;
    let p = paths.store();
    let delivering: Vec<String> = cfg.accounts.iter().filter(|a| a.deliver.is_some()).map(|a| a.name.clone()).collect();
    let (stored, outbox, verifications, journals) = match blocking(move || Store::open_existing(&p)).await? {
        Some(s) => {
            blocking(move || {
                let journals = delivering
                    .iter()
                    .map(|n| Ok((n.clone(), s.journal_summary(n)?)))
                    .collect::<Result<std::collections::HashMap<_, _>>>()?;
                Ok((s.account_statuses()?, s.outbox_summary()?, s.verifications()?, journals))
            })
            .await?
        }
        None => (Vec::new(), Default::default(), Vec::new(), Default::default()),
    };
    let rows: Vec<crate::store::AccountStatus> = cfg
        .accounts
        .iter()
        .map(|a| {
            stored.iter().find(|s| s.name == a.name).cloned().unwrap_or(crate::store::AccountStatus {
                name: a.name.clone(),
                state: "active".into(),
                mailbox: a.name.clone(),
                messages: 0,
                unseen: 0,
                last_fetch: None,
                last_attempt: None,
                next_fetch: None,
                last_error: None,
                server_messages: None,
                server_bytes: None,
                fetched_messages: 0,
                fetched_bytes: 0,
                duplicates_seen: 0,
                duplicates_hidden: 0,
                progress: None,
            })
        })
        .collect();
    if json {
        let accounts = rows
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).map_err(|e| Error::other(format!("internal error: {e}")))?;
                if let (Some(t), Some(o)) = (cfg.account(&r.name).and_then(|a| a.deliver.as_ref()), v.as_object_mut()) {
                    o.insert("deliver".into(), deliver::json(t, journals.get(&r.name)));
                }
                Ok(v)
            })
            .collect::<Result<Vec<_>>>()?;
        let out = serde_json::to_string_pretty(&StatusJson { accounts, outbox, verifications })
            .map_err(|e| Error::other(e.to_string()))?;
        println!("{out}");
        return Ok(0);
    }
    if rows.is_empty() {
        println!("No accounts yet: add one with `popbridge account add`.");
    }
    for r in &rows {
        println!(
            "{}  {}  {} message(s), {} unread  last fetch {}{}",
            r.name,
            r.state,
            r.messages,
            r.unseen,
            r.last_fetch.as_deref().unwrap_or("never"),
            r.next_fetch.as_deref().map(|t| format!("  next {t}")).unwrap_or_default()
        );
        if let Some(t) = cfg.account(&r.name).and_then(|a| a.deliver.as_ref()) {
            deliver::print_status(t, journals.get(&r.name));
        }
        if let Some(p) = &r.progress {
            println!(
                "    importing: {} of {} messages, {} of {}{}",
                p.done,
                p.total,
                human_bytes(p.bytes.max(0) as u64),
                human_bytes(p.total_bytes.max(0) as u64),
                p.eta_seconds
                    .map(|s| format!(
                        ", about {} left",
                        humantime::format_duration(std::time::Duration::from_secs(s.max(0) as u64))
                    ))
                    .unwrap_or_default()
            );
        }
        if r.duplicates_seen > 0 {
            println!(
                "    {} copies of messages already held, {} of them not filed (duplicates = \"hide\")",
                r.duplicates_seen, r.duplicates_hidden
            );
        }
        if let Some(e) = &r.last_error {
            println!("    last error ({}): {}", e.class, e.message);
            if let Some(c) = ErrorClass::parse(&e.class) {
                println!("    what to do: {}", c.guidance());
            }
        }
    }
    if outbox.queued + outbox.failed + outbox.sent > 0 {
        println!(
            "outbox: {} queued{}, {} failed, {} sent",
            outbox.queued,
            outbox.next_attempt.as_deref().map(|t| format!(" (next attempt {t})")).unwrap_or_default(),
            outbox.failed,
            outbox.sent
        );
        if let Some(e) = &outbox.last_error {
            println!("    last error: {e}");
        }
    }
    for v in &verifications {
        println!(
            "address {} (account {}): {}",
            v.address,
            v.account,
            if v.verified { "verified" } else { "verification pending" }
        );
    }
    Ok(0)
}
