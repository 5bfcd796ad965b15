//! The validated configuration: every value parsed, defaulted and checked once, so the rest of the
//! program never sees a string where it needs a port, a duration or a policy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawAccount, RawConfig, RawLocal, RawMemory, RawOAuth, RawOutbox, RawPop, RawSmtp};
use crate::secret::Secret;

/// Default local listener addresses (loopback only, high ports so no privileges are needed).
pub const DEFAULT_IMAP: &str = "127.0.0.1:1143";
pub const DEFAULT_IMAPS: &str = "127.0.0.1:1993";
pub const DEFAULT_SUBMISSION: &str = "127.0.0.1:1587";
pub const DEFAULT_SUBMISSIONS: &str = "127.0.0.1:1465";
/// How often an account is fetched unless it says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Floor for `interval`: more often than this hammers the provider (and many rate-limit POP logins).
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Largest message fetched; bigger ones are left on the server and reported. Generous: providers
/// cap attachments at 25–50 MB, and a message this size still fits comfortably in memory once.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 50 * 1024 * 1024;
/// How long one read or write on an upstream connection may stall before we give up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Names reserved for the local special-use folders (DESIGN §3): an account may not take them.
pub const RESERVED_NAMES: &[&str] = &["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"];

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from (errors and edits name it).
    pub path: PathBuf,
    /// Unix permission bits of the file, to refuse inline passwords in a readable file.
    pub mode: u32,
    pub local: Local,
    pub accounts: Vec<Account>,
    pub relay: Option<SmtpServer>,
    pub outbox: Outbox,
    /// `[limits]`: connections before and after login, and the login timeout.
    pub limits: super::limits::Limits,
    pub memory: Memory,
}

/// `[memory]`: the daemon's memory budget (see `crate::memory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Bytes of message data in flight at once, all sessions together.
    pub budget: usize,
}

impl Default for Memory {
    fn default() -> Memory {
        Memory { budget: crate::memory::DEFAULT_BUDGET }
    }
}

/// The delay before the next attempt after 1, 2, 3 … failed ones: 1, 2, 5, 10, 20, 40 minutes,
/// then 1, 2 and 4 hours, and every 4 hours from then on (the last step repeats). Quick at first,
/// for the usual blip (a greylisting server, a dropped Wi-Fi); then patient, so that three days of
/// an unreachable server cost a few dozen connections, not thousands.
pub const DEFAULT_RETRY: [Duration; 9] = [
    Duration::from_secs(60),
    Duration::from_secs(2 * 60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(20 * 60),
    Duration::from_secs(40 * 60),
    Duration::from_secs(3600),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(4 * 3600),
];
/// How long a message keeps being retried before the user is told it could not be sent: three
/// days, like most MTAs' queue lifetime (RFC 5321 §4.5.4.1 suggests 4–5 days for a relay; a user
/// waiting for a message to leave wants to know sooner).
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(3 * 86_400);

/// `[outbox]`: the outbound queue's retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbox {
    /// `retry[n]` is the delay after the (n+1)-th failed attempt; the last one repeats. Never empty.
    pub retry: Vec<Duration>,
    /// Counted from when the message was accepted: the last attempt is made at that moment, and if
    /// it fails too, a notice goes to the local INBOX and the message is not retried any more.
    pub give_up_after: Duration,
}

impl Default for Outbox {
    fn default() -> Outbox {
        Outbox { retry: DEFAULT_RETRY.to_vec(), give_up_after: DEFAULT_GIVE_UP_AFTER }
    }
}

impl Outbox {
    /// The delay before the next attempt, after `failed` failed attempts (at least one).
    pub fn delay(&self, failed: u32) -> Duration {
        let i = (failed.max(1) as usize - 1).min(self.retry.len().saturating_sub(1));
        self.retry.get(i).copied().unwrap_or(DEFAULT_RETRY[0])
    }
}

#[derive(Debug, Clone)]
pub struct Local {
    pub imap: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
    pub submission: Option<SocketAddr>,
    pub submissions: Option<SocketAddr>,
    pub user: String,
    pub password: Option<SecretSource>,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub email: String,
    pub reply_to: Option<String>,
    pub interval: Duration,
    /// File a copy of each message sent through popbridge in the account's own Sent folder (for
    /// clients that do not save one themselves).
    pub save_sent: bool,
    /// At most this many messages, or bytes, per fetch cycle (the rest waits for the next one).
    pub max_messages_per_cycle: Option<usize>,
    pub max_bytes_per_cycle: Option<u64>,
    pub pop: PopServer,
    pub smtp: Option<SmtpServer>,
    /// `[account.oauth]`: present exactly when `pop.auth` is [`AuthMethod::OAuth2`].
    pub oauth: Option<OAuthSettings>,
    /// What becomes of a message this account fetches that popbridge already holds from a POP
    /// server (`duplicates`; `store::deliver`).
    pub duplicates: Duplicates,
    /// `[account.deliver]`: fetched mail goes into this mail server instead of the local store.
    pub deliver: Option<DeliverTarget>,
}

/// `duplicates = "keep" | "mark" | "hide"`: a message fetched by an account that popbridge holds
/// already — the same Message-ID and the same bytes below the header block, fetched earlier by
/// this account or another (trace headers such as Received differ per server and do not count).
/// Byte-identical copies share one stored body whatever the setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Duplicates {
    /// Filed in the account's folder like any message (the default: nothing changes for a user
    /// who never asked).
    #[default]
    Keep,
    /// Filed, with the keyword `$Duplicate` (clients can filter or hide on it).
    Mark,
    /// Not filed; the account's status counts it. A copy whose bytes differ from the one held
    /// is not stored, so popbridge never DELEtes it (it does not hold those bytes).
    Hide,
}

impl Duplicates {
    pub fn parse(s: &str) -> Option<Duplicates> {
        match s.trim() {
            "keep" => Some(Duplicates::Keep),
            "mark" => Some(Duplicates::Mark),
            "hide" => Some(Duplicates::Hide),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Duplicates::Keep => "keep",
            Duplicates::Mark => "mark",
            Duplicates::Hide => "hide",
        }
    }
}

impl Account {
    /// The password for an outgoing server used by this account: the server's own setting, else —
    /// for the account's own server with a user (not the shared relay) — the POP password
    /// (DESIGN §5: the SMTP password defaults to the POP one).
    pub fn smtp_password<'a>(&'a self, server: &'a SmtpServer) -> Option<&'a SecretSource> {
        let own = self.smtp.as_ref().is_some_and(|s| !s.relay);
        server.password.as_ref().or(if own && server.user.is_some() { self.pop.password.as_ref() } else { None })
    }

    /// Whether the account's own outgoing server logs in with the account's OAuth 2 grant: an
    /// `auth = "oauth2"` account whose `[account.smtp]` has a user and no password of its own (the
    /// presets' scopes cover SMTP, so one sign-in serves both).
    pub fn smtp_uses_oauth(&self, server: &SmtpServer) -> bool {
        let own = self.smtp.as_ref().is_some_and(|s| !s.relay);
        own && !server.relay
            && self.pop.auth == AuthMethod::OAuth2
            && self.oauth.is_some()
            && server.user.is_some()
            && server.password.is_none()
    }

    /// A digest of every setting of the account, secrets included (as a hash: never shown): a change
    /// re-enables an account that was disabled by failed logins or a certificate error, and tells
    /// the daemon's reload which fetchers to restart.
    pub fn fingerprint(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut put = |s: &str| {
            ctx.update(s.as_bytes());
            ctx.update(b"\0");
        };
        let secret = |s: &SecretSource| match s {
            SecretSource::Inline(p) => format!("inline:{}", p.expose()),
            SecretSource::Command(c) => format!("command:{c}"),
        };
        put(&format!("{:?}", (&self.name, &self.email, &self.reply_to, self.interval, self.save_sent)));
        put(&format!("{:?}", (self.max_messages_per_cycle, self.max_bytes_per_cycle, self.duplicates)));
        let p = &self.pop;
        put(&format!(
            "{:?}",
            (
                &p.host,
                p.port,
                p.tls,
                &p.user,
                p.auth,
                p.delete,
                &p.trust.ca_file,
                p.trust.pin_sha256,
                p.max_message_size,
                p.timeout,
                p.first_import
            )
        ));
        if let Some(pw) = &p.password {
            put(&secret(pw));
        }
        // Only when set, so the fingerprints of accounts written before the setting existed stay.
        if !p.pipelining {
            put("pipelining off");
        }
        if let Some(o) = &self.oauth {
            put(&format!(
                "{:?}",
                (o.provider, &o.client_id, &o.authorization_url, &o.token_url, &o.device_authorization_url, &o.scopes)
            ));
            if let Some(cs) = &o.client_secret {
                put(&secret(cs));
            }
        }
        if let Some(s) = &self.smtp {
            put(&format!("{:?}", (&s.host, s.port, s.tls, &s.user, s.relay, &s.trust.ca_file, s.trust.pin_sha256)));
            if let Some(pw) = &s.password {
                put(&secret(pw));
            }
        }
        if let Some(d) = &self.deliver {
            put(&d.fingerprint_text());
        }
        ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte (POP3S, port 995).
    Implicit,
    /// Plain connection upgraded with STLS (RFC 2595); refused if the server does not offer it.
    StartTls,
    /// No TLS at all: only for loopback servers or with `allow_plain = true`.
    Plain,
}

impl TlsMode {
    pub fn parse(s: &str) -> Option<TlsMode> {
        match s {
            "implicit" | "tls" | "ssl" => Some(TlsMode::Implicit),
            "starttls" | "stls" => Some(TlsMode::StartTls),
            "plain" | "none" => Some(TlsMode::Plain),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Implicit => "implicit",
            TlsMode::StartTls => "starttls",
            TlsMode::Plain => "plain",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// SASL PLAIN if offered, else USER/PASS, else SASL LOGIN, else APOP.
    Auto,
    User,
    Plain,
    Login,
    Apop,
    /// SASL XOAUTH2 with a bearer token printed by `password_command` (an external OAuth tool).
    Xoauth2,
    /// Built-in OAuth 2 (`[account.oauth]`): popbridge signs in, keeps and refreshes the tokens,
    /// and logs in with OAUTHBEARER when the server offers it, else XOAUTH2. No password.
    OAuth2,
}

impl AuthMethod {
    pub fn parse(s: &str) -> Option<AuthMethod> {
        Some(match s.to_ascii_lowercase().as_str() {
            "auto" => AuthMethod::Auto,
            "user" | "pass" | "user-pass" => AuthMethod::User,
            "plain" => AuthMethod::Plain,
            "login" => AuthMethod::Login,
            "apop" => AuthMethod::Apop,
            "xoauth2" => AuthMethod::Xoauth2,
            "oauth2" => AuthMethod::OAuth2,
            _ => return None,
        })
    }
}

/// When fetched messages are deleted from the POP server (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletePolicy {
    Never,
    AfterFetch,
    /// Days counted from when popbridge first saw the message on the server.
    AfterDays(u32),
    /// Once the message is gone from every local mailbox (expunged, not merely moved).
    WhenDeletedLocally,
}

impl DeletePolicy {
    pub fn parse(s: &str) -> Option<DeletePolicy> {
        match s {
            "never" => Some(DeletePolicy::Never),
            "after-fetch" => Some(DeletePolicy::AfterFetch),
            "when-deleted-locally" => Some(DeletePolicy::WhenDeletedLocally),
            _ => {
                let days = s.strip_prefix("after-days:")?.trim().parse::<u32>().ok()?;
                Some(DeletePolicy::AfterDays(days))
            }
        }
    }
    pub fn to_config_string(self) -> String {
        match self {
            DeletePolicy::Never => "never".into(),
            DeletePolicy::AfterFetch => "after-fetch".into(),
            DeletePolicy::AfterDays(n) => format!("after-days:{n}"),
            DeletePolicy::WhenDeletedLocally => "when-deleted-locally".into(),
        }
    }
}

/// `[account.pop] first_import`: what the account's first fetch of its server downloads (a
/// bounded first import, `fetch::bounded`). Everything else listed then is recorded as skipped:
/// never downloaded, never DELEted. Later fetches download all new mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstImport {
    /// Messages that arrived on or after this day (UTC midnight, unix seconds): "since:YYYY-MM-DD".
    Since(i64),
    /// The N most recently arrived (the highest-numbered): "newest:N".
    Newest(u32),
    /// None of what is on the server now: "from-now-on".
    FromNowOn,
}

impl FirstImport {
    pub fn parse(s: &str) -> Option<FirstImport> {
        let s = s.trim();
        if s == "from-now-on" {
            return Some(FirstImport::FromNowOn);
        }
        if let Some(n) = s.strip_prefix("newest:") {
            return n.trim().parse::<u32>().ok().map(FirstImport::Newest);
        }
        let day = s.strip_prefix("since:")?.trim();
        parse_day(day).map(FirstImport::Since)
    }

    pub fn to_config_string(self) -> String {
        match self {
            FirstImport::Since(t) => format!("since:{}", format_day(t)),
            FirstImport::Newest(n) => format!("newest:{n}"),
            FirstImport::FromNowOn => "from-now-on".into(),
        }
    }
}

/// "YYYY-MM-DD" as the unix time of that day's midnight UTC.
pub fn parse_day(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d < 1 || d > days_in[(m - 1) as usize] {
        return None;
    }
    Some(crate::mime::date::days_from_civil(y, m, d) * 86_400)
}

fn format_day(t: i64) -> String {
    let (y, m, d) = crate::mime::date::civil_from_days(t.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `[account.oauth]`'s provider: a preset (endpoints and scopes built in, `oauth::preset`) or any
/// RFC 6749 server with its endpoints given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthProvider {
    Microsoft,
    Google,
    Custom,
}

impl OAuthProvider {
    pub fn parse(s: &str) -> Option<OAuthProvider> {
        Some(match s.to_ascii_lowercase().as_str() {
            "microsoft" | "outlook" | "office365" => OAuthProvider::Microsoft,
            "google" | "gmail" => OAuthProvider::Google,
            "custom" => OAuthProvider::Custom,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthProvider::Microsoft => "microsoft",
            OAuthProvider::Google => "google",
            OAuthProvider::Custom => "custom",
        }
    }
}

/// `[account.oauth]`, validated. The endpoints and scopes given here override a preset's; a
/// `custom` provider has at least `token_url`, one of the two sign-in endpoints, and scopes.
/// `Debug` never shows the client secret (a [`SecretSource`]).
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub provider: OAuthProvider,
    pub client_id: String,
    /// Some providers (Google) want the secret of a desktop app's client; Microsoft's public
    /// clients have none.
    pub client_secret: Option<SecretSource>,
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub device_authorization_url: Option<String>,
    pub scopes: Option<Vec<String>>,
}

/// A resolved login secret for a server: a password, or an OAuth 2 access token (sent with
/// OAUTHBEARER or XOAUTH2). `Debug` shows neither.
#[derive(Debug, Clone)]
pub enum Credential {
    Password(Secret),
    Bearer(Secret),
}

/// Where a password (or OAuth token) comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// Written in the config file (which must then be private: 0600).
    Inline(Secret),
    /// Printed on stdout by a command (`pass show work`), run with a timeout, off the async runtime.
    Command(String),
}

#[derive(Debug, Clone)]
pub struct TrustSettings {
    /// PEM file with the CA(s) to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the server's certificate (DER): trusted whatever its issuer or names.
    pub pin_sha256: Option<[u8; 32]>,
}

#[derive(Debug, Clone)]
pub struct PopServer {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub user: String,
    /// `None` exactly when `auth` is [`AuthMethod::OAuth2`] (the tokens are in the data directory).
    pub password: Option<SecretSource>,
    pub auth: AuthMethod,
    pub delete: DeletePolicy,
    pub trust: TrustSettings,
    pub max_message_size: u64,
    pub timeout: Duration,
    /// A bounded first import (`first_import`); `None`: the first fetch downloads everything.
    pub first_import: Option<FirstImport>,
    /// `pipelining = "auto"` (the default): pipeline when the server's CAPA says PIPELINING;
    /// `"off"`: lock step whatever it says (mpop's `pipelining off`), for a server that
    /// advertises it and then mishandles it.
    pub pipelining: bool,
}

impl PopServer {
    /// The upstream mailbox this account fetches: its POP state belongs to this key, never to the
    /// account's name (DESIGN §4). Host names are case-insensitive; user names are not.
    pub fn mailbox_key(&self) -> String {
        format!("{}:{}/{}", self.host.to_ascii_lowercase(), self.port, self.user)
    }
}

#[derive(Debug, Clone)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub user: Option<String>,
    pub password: Option<SecretSource>,
    pub trust: TrustSettings,
    /// Send through the shared `[relay]` instead of this account's own server.
    pub relay: bool,
    pub timeout: Duration,
}

/// Collects the first problem found, with the key path that has it.
struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, key: &str, what: impl std::fmt::Display) -> crate::Error {
        crate::Error::config(format!("config file {}: {key}: {what}", self.file))
    }
}

pub fn validate(raw: RawConfig, path: PathBuf, mode: u32) -> crate::Result<Config> {
    let file = path.display().to_string();
    let cx = Ctx { file: &file };
    let local = validate_local(&cx, raw.local.unwrap_or_default())?;
    let mut accounts: Vec<Account> = Vec::new();
    for (i, a) in raw.account.into_iter().enumerate() {
        let acct = validate_account(&cx, i, a)?;
        if accounts.iter().any(|b| b.name.eq_ignore_ascii_case(&acct.name)) {
            return Err(cx.err(&format!("account[{i}].name"), format!("\"{}\" is used by another account", acct.name)));
        }
        accounts.push(acct);
    }
    let relay = match raw.relay {
        Some(r) => Some(validate_smtp(&cx, "relay", r)?),
        None => None,
    };
    let outbox = validate_outbox(&cx, raw.outbox.unwrap_or_default())?;
    let limits = super::limits::validate(raw.limits.unwrap_or_default(), |key, e| cx.err(key, e))?;
    let memory = validate_memory(&cx, raw.memory.unwrap_or_default())?;
    Ok(Config { path, mode, local, accounts, relay, outbox, limits, memory })
}

fn validate_memory(cx: &Ctx, m: RawMemory) -> crate::Result<Memory> {
    let mut out = Memory::default();
    if let Some(v) = m.budget {
        let b = parse_size(&v).map_err(|e| cx.err("memory.budget", e))?;
        if b < crate::memory::MIN_BUDGET as u64 {
            return Err(cx.err("memory.budget", format!("{v} is too small; the minimum is \"1MiB\"")));
        }
        out.budget = usize::try_from(b).unwrap_or(usize::MAX);
    }
    Ok(out)
}

fn validate_outbox(cx: &Ctx, o: RawOutbox) -> crate::Result<Outbox> {
    let mut out = Outbox::default();
    if let Some(steps) = o.retry {
        if steps.is_empty() {
            return Err(cx.err("outbox.retry", "must list at least one delay, like [\"1m\", \"10m\", \"1h\"]"));
        }
        out.retry = Vec::with_capacity(steps.len());
        for (i, s) in steps.iter().enumerate() {
            let key = format!("outbox.retry[{i}]");
            let d = parse_duration(s).map_err(|e| cx.err(&key, e))?;
            // The queue counts in whole seconds; a zero delay would retry in a tight loop.
            if d < Duration::from_secs(1) {
                return Err(cx.err(&key, format!("\"{s}\" is too short; the minimum is 1s")));
            }
            out.retry.push(d);
        }
    }
    if let Some(s) = o.give_up_after {
        let d = parse_duration(&s).map_err(|e| cx.err("outbox.give_up_after", e))?;
        if d < Duration::from_secs(1) {
            return Err(cx.err("outbox.give_up_after", format!("\"{s}\" is too short; the minimum is 1s")));
        }
        out.give_up_after = d;
    }
    Ok(out)
}

fn validate_local(cx: &Ctx, l: RawLocal) -> crate::Result<Local> {
    let addr = |key: &str, v: Option<String>, default: &str| -> crate::Result<Option<SocketAddr>> {
        let v = v.unwrap_or_else(|| default.to_string());
        if v.is_empty() || v == "off" {
            return Ok(None);
        }
        let a: SocketAddr = v.parse().map_err(|_| {
            cx.err(&format!("local.{key}"), format!("\"{v}\" is not an address like 127.0.0.1:1143 (or \"off\")"))
        })?;
        // Beyond loopback only with TLS from the first byte, and only when the config says so.
        let tls_only = key == "imaps" || key == "submissions";
        let allowed = a.ip().is_loopback() || (tls_only && l.allow_non_loopback == Some(true));
        if !allowed {
            let how = if tls_only {
                "add `allow_non_loopback = true` to [local] to accept other machines (TLS is required on this listener)"
            } else {
                "only the TLS listeners (imaps, submissions) may, with `allow_non_loopback = true` in [local]"
            };
            return Err(cx.err(
                &format!("local.{key}"),
                format!("{a} is not a loopback address; popbridge listens on this machine only by default: {how}"),
            ));
        }
        Ok(Some(a))
    };
    let password = secret_source(cx, "local", l.password, l.password_command, false)?;
    let user = l.user.unwrap_or_else(|| "me".to_string());
    if user.is_empty() || user.contains(['+', '@', ' ', '"', '\\']) || user.chars().any(char::is_control) {
        return Err(
            cx.err("local.user", "must be a plain name without spaces, quotes, '+' or '@' (those select an account)")
        );
    }
    Ok(Local {
        imap: addr("imap", l.imap, DEFAULT_IMAP)?,
        imaps: addr("imaps", l.imaps, DEFAULT_IMAPS)?,
        submission: addr("submission", l.submission, DEFAULT_SUBMISSION)?,
        submissions: addr("submissions", l.submissions, DEFAULT_SUBMISSIONS)?,
        user,
        password,
    })
}

/// Checks an account name: it becomes an IMAP mailbox name and the suffix of a login (`me+Work`).
pub fn check_account_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name != name.trim() {
        return Err("must not start or end with spaces".into());
    }
    if name.chars().count() > 64 {
        return Err("must be at most 64 characters".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || matches!(c, '/' | '+' | '@' | '%' | '*' | '"' | '\\')) {
        return Err(format!("must not contain {c:?} (it has a meaning in IMAP names or logins)"));
    }
    if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(format!("\"{name}\" is the name of a local folder; choose another"));
    }
    Ok(())
}

/// A deliberately loose check: one `@`, something on each side, no spaces or brackets.
pub fn check_email(addr: &str) -> Result<(), String> {
    let ok = match addr.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !addr.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
        }
        None => false,
    };
    if ok { Ok(()) } else { Err(format!("\"{addr}\" is not an email address like me@example.com")) }
}

fn validate_account(cx: &Ctx, i: usize, a: RawAccount) -> crate::Result<Account> {
    let k = |f: &str| format!("account[{i}].{f}");
    let name = a.name.ok_or_else(|| cx.err(&k("name"), "is missing"))?;
    check_account_name(&name).map_err(|e| cx.err(&k("name"), e))?;
    let kn = |f: &str| format!("account \"{name}\": {f}");
    let email = a.email.ok_or_else(|| cx.err(&kn("email"), "is missing"))?;
    check_email(&email).map_err(|e| cx.err(&kn("email"), e))?;
    if let Some(r) = &a.reply_to {
        check_email(r).map_err(|e| cx.err(&kn("reply_to"), e))?;
    }
    let interval = match a.interval {
        Some(s) => {
            let d = parse_duration(&s).map_err(|e| cx.err(&kn("interval"), e))?;
            if d < MIN_INTERVAL {
                return Err(cx.err(&kn("interval"), format!("\"{s}\" is too often; the minimum is 1m")));
            }
            d
        }
        None => DEFAULT_INTERVAL,
    };
    let pop =
        validate_pop(cx, &name, a.pop.ok_or_else(|| cx.err(&kn("pop"), "the [account.pop] section is missing"))?)?;
    let oauth = match (pop.auth, a.oauth) {
        (AuthMethod::OAuth2, Some(o)) => Some(validate_oauth(cx, &name, o)?),
        (AuthMethod::OAuth2, None) => {
            return Err(cx.err(
                &kn("oauth"),
                "auth = \"oauth2\" needs an [account.oauth] section with provider (microsoft, google or custom) and client_id",
            ));
        }
        (_, Some(_)) => {
            return Err(cx.err(
                &kn("oauth"),
                "[account.oauth] is used only with auth = \"oauth2\" in [account.pop]: set that, or remove the section",
            ));
        }
        (_, None) => None,
    };
    let smtp = match a.smtp {
        Some(s) => Some(validate_smtp(cx, &format!("account \"{name}\": smtp"), s)?),
        None => None,
    };
    let max_messages_per_cycle = match a.max_messages_per_cycle {
        None => None,
        Some(n) => Some(
            usize::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| cx.err(&kn("max_messages_per_cycle"), "must be a positive number"))?,
        ),
    };
    let max_bytes_per_cycle = match a.max_bytes_per_cycle {
        None => None,
        Some(v) => Some(parse_size(&v).map_err(|e| cx.err(&kn("max_bytes_per_cycle"), e))?),
    };
    let duplicates = match a.duplicates.as_deref() {
        None => Duplicates::Keep,
        Some(d) => Duplicates::parse(d)
            .ok_or_else(|| cx.err(&kn("duplicates"), format!("\"{d}\" must be keep, mark or hide")))?,
    };
    let deliver = match a.deliver {
        Some(d) => Some(validate_deliver(cx, &name, d, pop.auth == AuthMethod::OAuth2)?),
        None => None,
    };
    if deliver.is_some() && pop.delete == DeletePolicy::WhenDeletedLocally {
        return Err(cx.err(
            &kn("pop.delete"),
            "\"when-deleted-locally\" needs the local store, but this account delivers into [account.deliver]: use after-fetch, after-days or never",
        ));
    }
    Ok(Account {
        deliver,
        name,
        email,
        reply_to: a.reply_to,
        interval,
        save_sent: a.save_sent.unwrap_or(false),
        max_messages_per_cycle,
        max_bytes_per_cycle,
        pop,
        smtp,
        oauth,
        duplicates,
    })
}

fn validate_oauth(cx: &Ctx, name: &str, o: RawOAuth) -> crate::Result<OAuthSettings> {
    let k = |f: &str| format!("account \"{name}\": oauth.{f}");
    let provider = match o.provider.as_deref() {
        None => return Err(cx.err(&k("provider"), "is missing (microsoft, google or custom)")),
        Some(p) => OAuthProvider::parse(p)
            .ok_or_else(|| cx.err(&k("provider"), format!("\"{p}\" must be microsoft, google or custom")))?,
    };
    let client_id = o.client_id.filter(|c| !c.trim().is_empty()).ok_or_else(|| {
        cx.err(
            &k("client_id"),
            "is missing: register popbridge with the provider to get one (README: \"Signing in with OAuth2\")",
        )
    })?;
    if client_id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(cx.err(&k("client_id"), "must not contain spaces or control characters"));
    }
    let client_secret = match (o.client_secret, o.client_secret_command) {
        (Some(_), Some(_)) => {
            return Err(cx.err(&k("client_secret"), "set either client_secret or client_secret_command, not both"));
        }
        (Some(s), None) => Some(SecretSource::Inline(Secret::new(s))),
        (None, Some(c)) if c.trim().is_empty() => return Err(cx.err(&k("client_secret_command"), "is empty")),
        (None, Some(c)) => Some(SecretSource::Command(c)),
        (None, None) => None,
    };
    let url = |key: &str, v: Option<String>| -> crate::Result<Option<String>> {
        match v {
            None => Ok(None),
            Some(u) => check_oauth_url(&u).map(|()| Some(u)).map_err(|e| cx.err(&k(key), e)),
        }
    };
    let authorization_url = url("authorization_url", o.authorization_url)?;
    let token_url = url("token_url", o.token_url)?;
    let device_authorization_url = url("device_authorization_url", o.device_authorization_url)?;
    let scopes = match o.scopes {
        Some(s) if s.is_empty() => return Err(cx.err(&k("scopes"), "must list at least one scope")),
        Some(s) => {
            if let Some(bad) =
                s.iter().find(|x| x.is_empty() || x.chars().any(|c| c.is_whitespace() || c == '"' || c == '\\'))
            {
                return Err(cx.err(&k("scopes"), format!("\"{bad}\" is not a scope (one scope per string, no spaces)")));
            }
            Some(s)
        }
        None => None,
    };
    if provider == OAuthProvider::Custom {
        if token_url.is_none() {
            return Err(cx.err(&k("token_url"), "is missing (a custom provider needs its endpoints)"));
        }
        if authorization_url.is_none() && device_authorization_url.is_none() {
            return Err(cx.err(
                &k("authorization_url"),
                "is missing: a custom provider needs authorization_url (browser sign-in) or device_authorization_url (--device), or both",
            ));
        }
        if scopes.is_none() {
            return Err(cx.err(&k("scopes"), "is missing (a custom provider needs the scopes for POP and SMTP)"));
        }
    }
    Ok(OAuthSettings {
        provider,
        client_id,
        client_secret,
        authorization_url,
        token_url,
        device_authorization_url,
        scopes,
    })
}

/// An OAuth endpoint: https, or http to a loopback address (a provider on this machine, tests).
/// Tokens and codes travel to it, so never plain http over a network.
pub fn check_oauth_url(u: &str) -> Result<(), String> {
    let parsed = oauth2::url::Url::parse(u).map_err(|e| format!("\"{u}\" is not a URL ({e})"))?;
    let host = parsed.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match parsed.scheme() {
        "https" if !host.is_empty() => Ok(()),
        "http" if is_loopback_host(host) => Ok(()),
        "http" => Err(format!("\"{u}\" is plain http: use https (http is allowed only to a loopback address)")),
        _ => Err(format!("\"{u}\" must be an https:// URL")),
    }
}

fn validate_pop(cx: &Ctx, name: &str, p: RawPop) -> crate::Result<PopServer> {
    let k = |f: &str| format!("account \"{name}\": pop.{f}");
    let host = p.host.filter(|h| !h.is_empty()).ok_or_else(|| cx.err(&k("host"), "is missing"))?;
    check_host(&host).map_err(|e| cx.err(&k("host"), e))?;
    let tls = match p.tls.as_deref() {
        None => TlsMode::Implicit,
        Some(s) => TlsMode::parse(s)
            .ok_or_else(|| cx.err(&k("tls"), format!("\"{s}\" must be implicit, starttls or plain")))?,
    };
    let port = port(cx, &k("port"), p.port, if tls == TlsMode::Implicit { 995 } else { 110 })?;
    if tls == TlsMode::Plain && !is_loopback_host(&host) && p.allow_plain != Some(true) {
        return Err(cx.err(
            &k("tls"),
            "\"plain\" would send your password unencrypted; use implicit or starttls (or set allow_plain = true if you really mean it)",
        ));
    }
    let user = p.user.filter(|u| !u.is_empty()).ok_or_else(|| cx.err(&k("user"), "is missing"))?;
    if user.contains(['\r', '\n']) {
        return Err(cx.err(&k("user"), "must not contain line breaks"));
    }
    let auth = match p.auth.as_deref() {
        None => AuthMethod::Auto,
        Some(s) => AuthMethod::parse(s).ok_or_else(|| {
            cx.err(&k("auth"), format!("\"{s}\" must be auto, user, plain, login, apop, xoauth2 or oauth2"))
        })?,
    };
    let password = secret_source(cx, &format!("account \"{name}\": pop"), p.password, p.password_command, true)?;
    let password = match (auth, password) {
        (AuthMethod::OAuth2, None) => None,
        (AuthMethod::OAuth2, Some(_)) => {
            return Err(cx.err(
                &k("password"),
                "auth = \"oauth2\" signs in through [account.oauth] (`popbridge account auth NAME`), so no password is used: remove password/password_command (for a token printed by a command, use auth = \"xoauth2\")",
            ));
        }
        (_, Some(pw)) => Some(pw),
        (_, None) => return Err(cx.err(&k("password"), "set password_command (recommended) or password")),
    };
    let delete = match p.delete.as_deref() {
        None => DeletePolicy::Never,
        Some(s) => DeletePolicy::parse(s).ok_or_else(|| {
            cx.err(&k("delete"), format!("\"{s}\" must be never, after-fetch, after-days:N or when-deleted-locally"))
        })?,
    };
    let trust = trust(cx, &k(""), p.ca_file, p.pin_sha256)?;
    let max_message_size = match p.max_message_size {
        None => DEFAULT_MAX_MESSAGE_SIZE,
        Some(v) => parse_size(&v).map_err(|e| cx.err(&k("max_message_size"), e))?,
    };
    let timeout = match p.timeout {
        None => DEFAULT_TIMEOUT,
        Some(s) => parse_duration(&s).map_err(|e| cx.err(&k("timeout"), e))?,
    };
    let first_import = match p.first_import.as_deref() {
        None => None,
        Some(s) => Some(FirstImport::parse(s).ok_or_else(|| {
            cx.err(&k("first_import"), format!("\"{s}\" must be since:YYYY-MM-DD, newest:N or from-now-on"))
        })?),
    };
    let pipelining = match p.pipelining.as_deref() {
        None | Some("auto") => true,
        Some("off") => false,
        Some(s) => return Err(cx.err(&k("pipelining"), format!("\"{s}\" must be auto or off"))),
    };
    Ok(PopServer {
        host,
        port,
        tls,
        user,
        password,
        auth,
        delete,
        trust,
        max_message_size,
        timeout,
        first_import,
        pipelining,
    })
}

fn validate_smtp(cx: &Ctx, prefix: &str, s: RawSmtp) -> crate::Result<SmtpServer> {
    let k = |f: &str| format!("{prefix}.{f}");
    let relay = s.relay.unwrap_or(false);
    let host = match s.host {
        Some(h) if !h.is_empty() => h,
        _ if relay => String::new(),
        _ => return Err(cx.err(&k("host"), "is missing (or set relay = true to send through [relay])")),
    };
    if !host.is_empty() {
        check_host(&host).map_err(|e| cx.err(&k("host"), e))?;
    }
    let tls = match s.tls.as_deref() {
        None => TlsMode::Implicit,
        Some(v) => TlsMode::parse(v)
            .ok_or_else(|| cx.err(&k("tls"), format!("\"{v}\" must be implicit, starttls or plain")))?,
    };
    let port = port(cx, &k("port"), s.port, if tls == TlsMode::Implicit { 465 } else { 587 })?;
    if tls == TlsMode::Plain && !host.is_empty() && !is_loopback_host(&host) && s.allow_plain != Some(true) {
        return Err(cx.err(
            &k("tls"),
            "\"plain\" would send your password unencrypted; use implicit or starttls (or set allow_plain = true if you really mean it)",
        ));
    }
    let password = secret_source(cx, prefix, s.password, s.password_command, true)?;
    let timeout = match s.timeout {
        None => DEFAULT_TIMEOUT,
        Some(v) => parse_duration(&v).map_err(|e| cx.err(&k("timeout"), e))?,
    };
    Ok(SmtpServer {
        host,
        port,
        tls,
        user: s.user,
        password,
        trust: trust(cx, &k(""), s.ca_file, s.pin_sha256)?,
        relay,
        timeout,
    })
}

/// `[account.deliver]`: exactly one of `lmtp` (with `recipient`) or `imap` (with `user` and a
/// login: a password, a token from a command, or the account's grant — `grant` says whether the
/// account has one); plain IMAP only to a loopback server.
fn validate_deliver(cx: &Ctx, name: &str, d: super::raw::RawDeliver, grant: bool) -> crate::Result<DeliverTarget> {
    let prefix = format!("account \"{name}\": deliver");
    let k = |f: &str| format!("{prefix}.{f}");
    let timeout = match d.timeout {
        None => DEFAULT_TIMEOUT,
        Some(v) => parse_duration(&v).map_err(|e| cx.err(&k("timeout"), e))?,
    };
    let imap = match d.imap {
        None => None,
        Some(url) => {
            let (host, port, implicit) = parse_imap_url(&url).map_err(|e| cx.err(&k("imap"), e))?;
            // imaps:// is TLS from the first byte; imap:// is STARTTLS (required, verified), or
            // plain to a loopback server, as before, unless `tls = "starttls"` asks for it there too.
            let asked = match d.tls.as_deref() {
                None => None,
                Some(s) => Some(
                    TlsMode::parse(s).ok_or_else(|| cx.err(&k("tls"), format!("\"{s}\" must be starttls or plain")))?,
                ),
            };
            let loopback = is_loopback_host(&host);
            let tls = match (implicit, asked) {
                (true, None | Some(TlsMode::Implicit)) => TlsMode::Implicit,
                (true, Some(_)) => {
                    return Err(cx.err(&k("tls"), "imaps:// is TLS from the first byte: remove tls, or use imap://"));
                }
                (false, Some(TlsMode::Implicit)) => {
                    return Err(cx.err(&k("tls"), "TLS from the first byte is imaps://: write the URL so"));
                }
                (false, None | Some(TlsMode::Plain)) if loopback => TlsMode::Plain,
                (false, Some(TlsMode::Plain)) => {
                    return Err(cx.err(
                        &k("tls"),
                        "\"plain\" would send your password unencrypted; it is only for a loopback server",
                    ));
                }
                (false, None | Some(TlsMode::StartTls)) => TlsMode::StartTls,
            };
            let user = d.user.filter(|u| !u.is_empty()).ok_or_else(|| cx.err(&k("user"), "is missing"))?;
            let secret = secret_source(cx, &prefix, d.password, d.password_command, true)?;
            let login = match d.auth.as_deref().unwrap_or("password") {
                "password" => ImapLogin::Password(
                    secret.ok_or_else(|| cx.err(&k("password"), "set password_command (recommended) or password"))?,
                ),
                "xoauth2" => ImapLogin::Token(secret.ok_or_else(|| {
                    cx.err(
                        &k("password_command"),
                        "auth = \"xoauth2\" needs a password_command that prints an access token",
                    )
                })?),
                "oauth2" => {
                    if !grant {
                        return Err(cx.err(
                            &k("auth"),
                            "\"oauth2\" signs in with the account's own grant, but this account does not use auth = \"oauth2\" in [account.pop]: use auth = \"xoauth2\" with a password_command that prints a token, or a password",
                        ));
                    }
                    if secret.is_some() {
                        return Err(cx.err(
                            &k("password"),
                            "auth = \"oauth2\" signs in with the account's grant: remove password and password_command",
                        ));
                    }
                    ImapLogin::Grant
                }
                other => {
                    return Err(cx.err(&k("auth"), format!("\"{other}\" must be password, xoauth2 or oauth2")));
                }
            };
            let mailbox = d.mailbox.filter(|m| !m.is_empty()).unwrap_or_else(|| "INBOX".to_string());
            if mailbox.chars().any(char::is_control) {
                return Err(cx.err(&k("mailbox"), "a mailbox name cannot hold control characters"));
            }
            let trust = trust(cx, &k(""), d.ca_file, d.pin_sha256)?;
            Some(ImapTarget { host, port, tls, user, login, mailbox, trust, timeout })
        }
    };
    match (d.lmtp, imap) {
        (None, None) => Err(cx.err(&k("lmtp"), "set lmtp (with recipient) or imap (with user and password_command)")),
        (Some(addr), check) => {
            let addr = LmtpAddr::parse(&addr).map_err(|e| cx.err(&k("lmtp"), e))?;
            let recipient =
                d.recipient.ok_or_else(|| cx.err(&k("recipient"), "is missing (the address LMTP delivers to)"))?;
            check_email(&recipient).map_err(|e| cx.err(&k("recipient"), e))?;
            // With imap too, LMTP delivers and the server's IMAP is where an interrupted
            // delivery is looked for (so LMTP need not deliver it again).
            Ok(DeliverTarget::Lmtp(LmtpTarget { addr, recipient, timeout, check }))
        }
        (None, Some(t)) => {
            if d.recipient.is_some() {
                return Err(cx.err(&k("recipient"), "is an LMTP setting; IMAP delivers into user's mailbox"));
            }
            Ok(DeliverTarget::Imap(t))
        }
    }
}

fn port(cx: &Ctx, key: &str, v: Option<i64>, default: u16) -> crate::Result<u16> {
    match v {
        None => Ok(default),
        Some(p) => {
            u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| cx.err(key, format!("{p} is not a port (1-65535)")))
        }
    }
}

fn trust(cx: &Ctx, prefix: &str, ca_file: Option<String>, pin: Option<String>) -> crate::Result<TrustSettings> {
    let pin_sha256 = match pin {
        None => None,
        Some(p) => Some(parse_fingerprint(&p).ok_or_else(|| {
            cx.err(&format!("{prefix}pin_sha256"), "must be a SHA-256 fingerprint: 64 hex digits (colons allowed)")
        })?),
    };
    Ok(TrustSettings { ca_file: ca_file.filter(|s| !s.is_empty()).map(PathBuf::from), pin_sha256 })
}

fn secret_source(
    cx: &Ctx,
    prefix: &str,
    password: Option<String>,
    command: Option<String>,
    _required: bool,
) -> crate::Result<Option<SecretSource>> {
    match (password, command) {
        (Some(_), Some(_)) => {
            Err(cx.err(&format!("{prefix}.password"), "set either password or password_command, not both"))
        }
        (Some(p), None) => Ok(Some(SecretSource::Inline(Secret::new(p)))),
        (None, Some(c)) if c.trim().is_empty() => Err(cx.err(&format!("{prefix}.password_command"), "is empty")),
        (None, Some(c)) => Ok(Some(SecretSource::Command(c))),
        (None, None) => Ok(None),
    }
}

fn check_host(h: &str) -> Result<(), String> {
    if h.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
        return Err(format!("\"{h}\" is not a host name"));
    }
    Ok(())
}

pub fn is_loopback_host(h: &str) -> bool {
    h == "localhost" || h.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// "5m", "90s", "1h 30m" (humantime syntax).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|_| format!("\"{s}\" is not a duration like 30s, 5m or 1h"))
}

/// A size in bytes: an integer, or a string like "50MiB", "20 MB", "512k".
pub fn parse_size(v: &toml::Value) -> Result<u64, String> {
    let bad = || format!("{v} is not a size like 52428800, \"50MiB\" or \"20MB\"");
    match v {
        toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| bad()),
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: u64 = num.parse().map_err(|_| bad())?;
            let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" => 1000,
                "kib" => 1024,
                "m" | "mb" => 1000 * 1000,
                "mib" => 1024 * 1024,
                "g" | "gb" => 1000 * 1000 * 1000,
                "gib" => 1024 * 1024 * 1024,
                _ => return Err(bad()),
            };
            n.checked_mul(mult).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// 64 hex digits, colons and case ignored.
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let txt = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(txt, 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex, colon-separated pairs: the form browsers and Thunderbird show.
pub fn format_fingerprint(fp: &[u8]) -> String {
    fp.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

// `[account.deliver]` (issue 18): an account whose mail goes into an existing mail server — over
// LMTP (RFC 2033) or IMAP APPEND — instead of the local store (`fetch::target`, `store::journal`).

/// Where an account's fetched mail goes, when not into the local store.
#[derive(Debug, Clone)]
pub enum DeliverTarget {
    Lmtp(LmtpTarget),
    Imap(ImapTarget),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpAddr {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

#[derive(Debug, Clone)]
pub struct LmtpTarget {
    pub addr: LmtpAddr,
    pub recipient: String,
    pub timeout: Duration,
    /// The same server's IMAP (`imap`, `user`… beside `lmtp`): where a delivery whose
    /// confirmation was lost is looked for before it is delivered again.
    pub check: Option<ImapTarget>,
}

#[derive(Debug, Clone)]
pub struct ImapTarget {
    pub host: String,
    pub port: u16,
    /// `imaps://`: TLS from the first byte; `imap://`: STARTTLS, or plain to a loopback server.
    pub tls: TlsMode,
    pub user: String,
    pub login: ImapLogin,
    pub mailbox: String,
    pub trust: TrustSettings,
    pub timeout: Duration,
}

/// How popbridge logs in to a target's IMAP (`auth` in `[account.deliver]`).
#[derive(Debug, Clone)]
pub enum ImapLogin {
    /// `auth = "password"` (the default): AUTHENTICATE PLAIN, else LOGIN.
    Password(SecretSource),
    /// `auth = "xoauth2"`: the `password_command` prints an OAuth 2 access token (an external
    /// tool keeps it fresh), sent with OAUTHBEARER or XOAUTH2 — as for POP.
    Token(SecretSource),
    /// `auth = "oauth2"`: the account's own built-in grant (`[account.oauth]`), as the SMTP
    /// relay uses it; refreshed as for POP.
    Grant,
}

impl DeliverTarget {
    /// For people and for the journal: "LMTP 127.0.0.1:24 for alice@example.org",
    /// "IMAP imaps://mail.example.org:993 as alice, mailbox INBOX".
    pub fn describe(&self) -> String {
        match self {
            DeliverTarget::Lmtp(t) => match &t.check {
                None => format!("LMTP {} for {}", t.addr.describe(), t.recipient),
                Some(c) => format!("LMTP {} for {} (checked through {})", t.addr.describe(), t.recipient, c.describe()),
            },
            DeliverTarget::Imap(t) => t.describe(),
        }
    }

    /// The IMAP account involved, if any: the APPEND target, or an LMTP target's check.
    pub fn imap(&self) -> Option<&ImapTarget> {
        match self {
            DeliverTarget::Lmtp(t) => t.check.as_ref(),
            DeliverTarget::Imap(t) => Some(t),
        }
    }

    /// Whether a delivery whose confirmation was lost can be looked for in the target (IMAP:
    /// `UID SEARCH HEADER Message-ID`); LMTP cannot, so such a delivery is repeated.
    pub fn can_check(&self) -> bool {
        self.imap().is_some()
    }

    pub fn timeout(&self) -> Duration {
        match self {
            DeliverTarget::Lmtp(t) => t.timeout,
            DeliverTarget::Imap(t) => t.timeout,
        }
    }

    /// What the account fingerprint covers (`Account::fingerprint`): every setting, the secret
    /// as given (the fingerprint is a hash, never shown).
    pub fn fingerprint_text(&self) -> String {
        let imap = |t: &ImapTarget| {
            let source = |s: &SecretSource| match s {
                SecretSource::Inline(p) => format!("inline:{}", p.expose()),
                SecretSource::Command(c) => format!("command:{c}"),
            };
            let pw = match &t.login {
                ImapLogin::Password(s) => source(s),
                ImapLogin::Token(s) => format!("token {}", source(s)),
                ImapLogin::Grant => "grant".to_string(),
            };
            format!(
                "imap {} {} {} {} {} {:?} {:?} {pw}",
                t.host,
                t.port,
                t.tls.as_str(),
                t.user,
                t.mailbox,
                t.trust.ca_file,
                t.trust.pin_sha256
            )
        };
        match self {
            DeliverTarget::Lmtp(t) => format!("lmtp {:?} {} {:?}", t.addr, t.recipient, t.check.as_ref().map(imap)),
            DeliverTarget::Imap(t) => imap(t),
        }
    }
}

impl ImapTarget {
    /// "IMAP imaps://mail.example.org:993 as alice, mailbox INBOX".
    pub fn describe(&self) -> String {
        let scheme = if self.tls == TlsMode::Implicit { "imaps" } else { "imap" };
        let starttls = if self.tls == TlsMode::StartTls { " (STARTTLS)" } else { "" };
        format!("IMAP {scheme}://{}:{}{starttls} as {}, mailbox {}", self.host, self.port, self.user, self.mailbox)
    }
}

impl LmtpAddr {
    pub fn describe(&self) -> String {
        match self {
            LmtpAddr::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            LmtpAddr::Tcp { host, port } => format!("{host}:{port}"),
            LmtpAddr::Unix(p) => format!("unix:{}", p.display()),
        }
    }

    /// `host:port`, `[v6]:port` or `unix:/path`.
    pub fn parse(s: &str) -> Result<LmtpAddr, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("\"{s}\": the socket path must be absolute (unix:/run/dovecot/lmtp)"));
            }
            return Ok(LmtpAddr::Unix(PathBuf::from(path)));
        }
        let (host, port) = split_host_port(s)
            .ok_or_else(|| format!("\"{s}\" is not an LMTP address like 127.0.0.1:24 or unix:/run/dovecot/lmtp"))?;
        Ok(LmtpAddr::Tcp { host, port })
    }
}

/// `host:port` or `[v6]:port`.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        (h, p)
    } else {
        s.rsplit_once(':')?
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
        return None;
    }
    Some((host.to_string(), port))
}

/// `imaps://host[:port]` or `imap://host[:port]` (a trailing `/` allowed).
pub fn parse_imap_url(s: &str) -> Result<(String, u16, bool), String> {
    let bad = || format!("\"{s}\" is not an IMAP server like imaps://mail.example.org:993");
    let (tls, rest) = if let Some(r) = s.strip_prefix("imaps://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("imap://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let default = if tls { 993 } else { 143 };
    match split_host_port(rest) {
        Some((h, p)) => Ok((h, p, tls)),
        None if !rest.is_empty() && !rest.contains([':', '/', '[', ' ']) => Ok((rest.to_string(), default, tls)),
        None => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse() {
        assert_eq!(DeletePolicy::parse("after-days:7"), Some(DeletePolicy::AfterDays(7)));
        assert_eq!(DeletePolicy::parse("after-days:x"), None);
        assert_eq!(DeletePolicy::parse("when-deleted-locally"), Some(DeletePolicy::WhenDeletedLocally));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size(&toml::Value::String("50MiB".into())), Ok(50 * 1024 * 1024));
        assert_eq!(parse_size(&toml::Value::Integer(10)), Ok(10));
        assert!(parse_size(&toml::Value::String("lots".into())).is_err());
    }

    #[test]
    fn fingerprints_round_trip() {
        let fp = [0xABu8; 32];
        assert_eq!(parse_fingerprint(&format_fingerprint(&fp)), Some(fp));
        assert_eq!(parse_fingerprint("abcd"), None);
    }

    fn parse_str(s: &str) -> crate::Result<Config> {
        crate::config::parse(s, std::path::Path::new("/tmp/c.toml"), 0o600)
    }

    #[test]
    fn the_memory_budget_defaults_and_validates() {
        assert_eq!(parse_str("").unwrap().memory.budget, crate::memory::DEFAULT_BUDGET);
        for (text, bytes) in
            [("\"16MiB\"", 16 << 20), ("\"8 MiB\"", 8 << 20), ("\"2MB\"", 2_000_000), ("2097152", 2 << 20)]
        {
            let c = parse_str(&format!("[memory]\nbudget = {text}\n")).unwrap();
            assert_eq!(c.memory.budget, bytes, "{text}");
        }
        for bad in ["lots", "16 parsecs", "512KiB", "-1M"] {
            let e = parse_str(&format!("[memory]\nbudget = \"{bad}\"\n")).unwrap_err();
            assert!(e.message.contains("memory.budget"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn the_outbox_schedule_defaults_and_validates() {
        let c = parse_str("").unwrap();
        let min = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(
            c.outbox.retry,
            [min(1), min(2), min(5), min(10), min(20), min(40), min(60), min(120), min(240)],
            "the documented default schedule"
        );
        assert_eq!(c.outbox.give_up_after, Duration::from_secs(3 * 86_400));
        assert_eq!((c.outbox.delay(1), c.outbox.delay(9), c.outbox.delay(50)), (min(1), min(240), min(240)));
        let c = parse_str("[outbox]\nretry = [\"1s\", \"3s\"]\ngive_up_after = \"1h\"\n").unwrap();
        assert_eq!(c.outbox.retry, [Duration::from_secs(1), Duration::from_secs(3)]);
        assert_eq!(
            (c.outbox.delay(1), c.outbox.delay(2), c.outbox.delay(3)),
            (c.outbox.retry[0], c.outbox.retry[1], c.outbox.retry[1])
        );
        assert_eq!(c.outbox.give_up_after, Duration::from_secs(3600));
        for (bad, key) in [
            ("retry = []", "outbox.retry"),
            ("retry = [\"1m\", \"soon\"]", "outbox.retry[1]"),
            ("retry = [\"0s\"]", "outbox.retry[0]"),
            ("give_up_after = \"forever\"", "outbox.give_up_after"),
            ("give_up_after = \"0s\"", "outbox.give_up_after"),
            ("retries = [\"1m\"]", "retries"),
        ] {
            let e = parse_str(&format!("[outbox]\n{bad}\n")).unwrap_err();
            assert!(e.message.contains(key) && e.message.contains("/tmp/c.toml"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn the_example_config_documents_the_default_schedule() {
        let c = parse_str(include_str!("../../config/popbridge.example.toml")).unwrap();
        assert_eq!(c.outbox, Outbox::default(), "config/popbridge.example.toml [outbox] = the defaults");
        assert_eq!(c.memory, Memory::default(), "config/popbridge.example.toml [memory] = the defaults");
    }

    const OAUTH: &str = "[[account]]\nname = \"Mail\"\nemail = \"me@example.com\"\n[account.pop]\nhost = \"pop.example\"\nuser = \"me\"\nauth = \"oauth2\"\n";

    #[test]
    fn oauth2_accounts_need_no_password_and_an_oauth_section() {
        let c =
            parse_str(&format!("{OAUTH}[account.oauth]\nprovider = \"microsoft\"\nclient_id = \"abc-123\"\n")).unwrap();
        let a = &c.accounts[0];
        assert_eq!(a.pop.auth, AuthMethod::OAuth2);
        assert!(a.pop.password.is_none());
        let o = a.oauth.as_ref().unwrap();
        assert_eq!((o.provider, o.client_id.as_str()), (OAuthProvider::Microsoft, "abc-123"));
        // "xoauth2" keeps its meaning: a token printed by password_command.
        let x = parse_str(
            &OAUTH.replace("oauth2", "xoauth2").replace("auth = ", "password_command = \"get-token\"\nauth = "),
        )
        .unwrap();
        assert_eq!(x.accounts[0].pop.auth, AuthMethod::Xoauth2);
        assert!(x.accounts[0].oauth.is_none());
        let custom = parse_str(&format!(
            "{OAUTH}[account.oauth]\nprovider = \"custom\"\nclient_id = \"c\"\nclient_secret_command = \"pass show c\"\ntoken_url = \"http://127.0.0.1:8080/token\"\ndevice_authorization_url = \"https://id.example/device\"\nscopes = [\"pop\", \"offline_access\"]\n"
        ))
        .unwrap();
        let o = custom.accounts[0].oauth.as_ref().unwrap();
        assert!(matches!(&o.client_secret, Some(SecretSource::Command(c)) if c == "pass show c"));
        assert_eq!(o.scopes.as_deref(), Some(&["pop".to_string(), "offline_access".to_string()][..]));
    }

    #[test]
    fn oauth_settings_errors_are_clear() {
        for (extra, key, says) in [
            ("", "oauth", "[account.oauth]"),
            ("[account.oauth]\nclient_id = \"c\"\n", "oauth.provider", "is missing"),
            (
                "[account.oauth]\nprovider = \"yahoo\"\nclient_id = \"c\"\n",
                "oauth.provider",
                "microsoft, google or custom",
            ),
            ("[account.oauth]\nprovider = \"google\"\n", "oauth.client_id", "register"),
            ("[account.oauth]\nprovider = \"custom\"\nclient_id = \"c\"\n", "oauth.token_url", "is missing"),
            (
                "[account.oauth]\nprovider = \"custom\"\nclient_id = \"c\"\ntoken_url = \"https://x/t\"\nscopes = [\"a\"]\n",
                "oauth.authorization_url",
                "device_authorization_url",
            ),
            (
                "[account.oauth]\nprovider = \"custom\"\nclient_id = \"c\"\ntoken_url = \"http://id.example/t\"\n",
                "oauth.token_url",
                "https",
            ),
            (
                "[account.oauth]\nprovider = \"google\"\nclient_id = \"c\"\nscopes = []\n",
                "oauth.scopes",
                "at least one",
            ),
            (
                "[account.oauth]\nprovider = \"google\"\nclient_id = \"c\"\nclient_secret = \"s\"\nclient_secret_command = \"x\"\n",
                "oauth.client_secret",
                "not both",
            ),
        ] {
            let e = parse_str(&format!("{OAUTH}{extra}")).unwrap_err();
            assert!(e.message.contains(key) && e.message.contains(says), "{extra:?}: {}", e.message);
        }
        let e = parse_str(&format!(
            "{}[account.oauth]\nprovider = \"google\"\nclient_id = \"c\"\n",
            OAUTH.replace("auth = \"oauth2\"\n", "password = \"x\"\n")
        ))
        .unwrap_err();
        assert!(e.message.contains("auth = \"oauth2\""), "{}", e.message);
        let e = parse_str(&format!(
            "{}password = \"x\"\n[account.oauth]\nprovider = \"google\"\nclient_id = \"c\"\n",
            OAUTH
        ))
        .unwrap_err();
        assert!(e.message.contains("pop.password") && e.message.contains("xoauth2"), "{}", e.message);
    }

    #[test]
    fn oauth_urls_are_https_or_loopback_http() {
        assert!(check_oauth_url("https://login.microsoftonline.com/common/oauth2/v2.0/token").is_ok());
        assert!(check_oauth_url("http://127.0.0.1:9000/token").is_ok());
        assert!(check_oauth_url("http://[::1]:9000/token").is_ok());
        assert!(check_oauth_url("http://localhost/token").is_ok());
        assert!(check_oauth_url("http://id.example/token").is_err());
        assert!(check_oauth_url("ftp://id.example/token").is_err());
        assert!(check_oauth_url("not a url").is_err());
    }

    const POP: &str = "[[account]]\nname = \"Mail\"\nemail = \"me@example.com\"\n[account.pop]\nhost = \"pop.example\"\nuser = \"me\"\npassword_command = \"pass pop\"\n";

    #[test]
    fn deliver_sections_parse_into_their_targets() {
        let c = parse_str(&format!(
            "{POP}[account.deliver]\nlmtp = \"unix:/run/dovecot/lmtp\"\nrecipient = \"alice@example.org\"\n"
        ))
        .unwrap();
        let Some(DeliverTarget::Lmtp(t)) = &c.accounts[0].deliver else { panic!("an LMTP target") };
        assert_eq!(t.addr, LmtpAddr::Unix(PathBuf::from("/run/dovecot/lmtp")));
        let c = parse_str(&format!("{POP}[account.deliver]\nlmtp = \"[::1]:24\"\nrecipient = \"alice@example.org\"\n"))
            .unwrap();
        assert_eq!(c.accounts[0].deliver.as_ref().unwrap().describe(), "LMTP [::1]:24 for alice@example.org");
        let c = parse_str(&format!(
            "{POP}[account.deliver]\nimap = \"imaps://mail.example.org\"\nuser = \"alice\"\npassword = \"Sekr1t-Pw\"\n"
        ))
        .unwrap();
        let d = c.accounts[0].deliver.as_ref().unwrap();
        assert_eq!(d.describe(), "IMAP imaps://mail.example.org:993 as alice, mailbox INBOX");
        assert!(!format!("{:?}", c.accounts[0]).contains("Sekr1t"), "the password is not in Debug");
        let plain = parse_str(&format!(
            "{POP}[account.deliver]\nimap = \"imap://127.0.0.1:1143\"\nuser = \"a\"\npassword_command = \"x\"\nmailbox = \"Fetched\"\n"
        ))
        .unwrap();
        assert_eq!(
            plain.accounts[0].deliver.as_ref().unwrap().describe(),
            "IMAP imap://127.0.0.1:1143 as a, mailbox Fetched"
        );
        // imap:// to another host is STARTTLS, required.
        let stls = parse_str(&format!(
            "{POP}[account.deliver]\nimap = \"imap://mail.example.org\"\nuser = \"a\"\npassword_command = \"x\"\n"
        ))
        .unwrap();
        assert_eq!(
            stls.accounts[0].deliver.as_ref().unwrap().describe(),
            "IMAP imap://mail.example.org:143 (STARTTLS) as a, mailbox INBOX"
        );
        let checked = parse_str(&format!(
            "{POP}[account.deliver]\nlmtp = \"127.0.0.1:24\"\nrecipient = \"a@b.example\"\nimap = \"imaps://mail.example.org\"\nuser = \"a\"\npassword_command = \"x\"\n"
        ))
        .unwrap();
        let d = checked.accounts[0].deliver.as_ref().unwrap();
        assert!(d.can_check());
        assert_eq!(
            d.describe(),
            "LMTP 127.0.0.1:24 for a@b.example (checked through IMAP imaps://mail.example.org:993 as a, mailbox INBOX)"
        );
        for (bad, says) in [
            ("lmtp = \"127.0.0.1:24\"\n", "recipient"),
            ("lmtp = \"127.0.0.1\"\nrecipient = \"a@b.example\"\n", "not an LMTP address"),
            ("lmtp = \"unix:run/lmtp\"\nrecipient = \"a@b.example\"\n", "absolute"),
            ("lmtp = \"127.0.0.1:24\"\nrecipient = \"a@b.example\"\nimap = \"imaps://h\"\n", "user"),
            ("recipient = \"a@b.example\"\n", "set lmtp"),
            ("imap = \"imap://mail.example.org\"\ntls = \"plain\"\nuser = \"a\"\npassword = \"p\"\n", "unencrypted"),
            ("imap = \"imaps://mail.example.org\"\ntls = \"starttls\"\nuser = \"a\"\npassword = \"p\"\n", "first byte"),
            ("imap = \"imap://mail.example.org\"\ntls = \"implicit\"\nuser = \"a\"\npassword = \"p\"\n", "imaps://"),
            ("imap = \"imaps://mail.example.org\"\nuser = \"a\"\n", "password"),
            ("imap = \"pop://mail.example.org\"\nuser = \"a\"\npassword = \"p\"\n", "not an IMAP server"),
            ("imap = \"imaps://h\"\nuser = \"a\"\nauth = \"oauth2\"\n", "does not use auth = \"oauth2\""),
            ("imap = \"imaps://h\"\nuser = \"a\"\nauth = \"xoauth2\"\n", "prints an access token"),
            (
                "imap = \"imaps://h\"\nuser = \"a\"\nauth = \"kerberos\"\npassword = \"p\"\n",
                "password, xoauth2 or oauth2",
            ),
        ] {
            let e = parse_str(&format!("{POP}[account.deliver]\n{bad}")).unwrap_err();
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
        let e = parse_str(&format!(
            "{}delete = \"when-deleted-locally\"\n[account.deliver]\nlmtp = \"127.0.0.1:24\"\nrecipient = \"a@b.example\"\n",
            POP
        ))
        .unwrap_err();
        assert!(e.message.contains("when-deleted-locally"), "{}", e.message);
    }

    #[test]
    fn a_delivery_target_logs_in_with_a_password_a_token_command_or_the_account_grant() {
        let target = |c: &Config| match c.accounts[0].deliver.as_ref().and_then(|d| d.imap()) {
            Some(t) => t.login.clone(),
            None => panic!("an IMAP target"),
        };
        let imap = "[account.deliver]\nimap = \"imaps://mail.example.org\"\nuser = \"a\"\n";
        let c = parse_str(&format!("{POP}{imap}password_command = \"pass imap\"\n")).unwrap();
        assert!(matches!(target(&c), ImapLogin::Password(SecretSource::Command(_))));
        let c = parse_str(&format!("{POP}{imap}auth = \"xoauth2\"\npassword_command = \"oama access a\"\n")).unwrap();
        assert!(matches!(target(&c), ImapLogin::Token(SecretSource::Command(_))));
        let grant = format!("{OAUTH}[account.oauth]\nprovider = \"google\"\nclient_id = \"c\"\n");
        let c = parse_str(&format!("{grant}{imap}auth = \"oauth2\"\n")).unwrap();
        assert!(matches!(target(&c), ImapLogin::Grant));
        let e = parse_str(&format!("{grant}{imap}auth = \"oauth2\"\npassword = \"p\"\n")).unwrap_err();
        assert!(e.message.contains("remove password"), "{}", e.message);
        let (a, b) = (
            parse_str(&format!("{POP}{imap}password_command = \"x\"\n")).unwrap(),
            parse_str(&format!("{POP}{imap}auth = \"xoauth2\"\npassword_command = \"x\"\n")).unwrap(),
        );
        assert_ne!(
            a.accounts[0].deliver.as_ref().unwrap().fingerprint_text(),
            b.accounts[0].deliver.as_ref().unwrap().fingerprint_text(),
            "changing auth changes the account's settings fingerprint"
        );
    }

    #[test]
    fn the_client_secret_is_not_in_debug() {
        let c = parse_str(&format!(
            "{OAUTH}[account.oauth]\nprovider = \"google\"\nclient_id = \"c\"\nclient_secret = \"GOCSPX-SuperSecret\"\n"
        ))
        .unwrap();
        assert!(!format!("{:?}", c.accounts[0]).contains("SuperSecret"));
    }

    #[test]
    fn account_names() {
        assert!(check_account_name("Work").is_ok());
        assert!(check_account_name("Büro 2").is_ok());
        assert!(check_account_name("inbox").is_err());
        assert!(check_account_name("a/b").is_err());
        assert!(check_account_name("a+b").is_err());
    }
}
