//! Provider-aware setup: from an email address, find its POP3 and SMTP servers and propose them
//! (`popbridge account discover`, and the `account add` wizard); explain the known quirks of a
//! provider in `account test`.
//!
//! Where it looks, in order: the built-in table of the largest providers ([`providers`]; nothing
//! is looked up on the network for those), then the domain's Thunderbird autoconfig file
//! ([`autoconfig`]), its RFC 6186 SRV records and its MX records ([`srv`]: a mail exchanger of
//! Google or Microsoft 365 shows a domain hosted there), all at once. Each source's answer is
//! shown; the proposal is the first source, in that order, with a POP3 server. Nothing found
//! is ever used without the user's yes (the wizard) or their own command line (`discover` prints
//! the `account add` flags).
//!
//! Settings (documented, not test hooks): `POPBRIDGE_AUTOCONFIG_URL` replaces where autoconfig
//! files are looked for; `POPBRIDGE_RESOLVER=IP:PORT` names the DNS server for SRV.

pub mod autoconfig;
pub mod providers;
pub mod srv;

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;

use crate::config::{Account, TlsMode};
use crate::error::{Error, Result};
use crate::fetch::probe::Probe;

use autoconfig::{Address, Auth, Outcome, Server};
use providers::{Login, Provider};

/// Where to look, from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub autoconfig_templates: Vec<String>,
    pub resolver: Option<SocketAddr>,
}

impl Settings {
    pub fn from_env() -> Result<Settings> {
        let templates = autoconfig::templates(std::env::var(autoconfig::ENV_URL).ok().as_deref());
        let resolver = match std::env::var(srv::ENV_RESOLVER) {
            Ok(v) if !v.trim().is_empty() => Some(srv::parse_resolver(&v)?),
            _ => None,
        };
        Ok(Settings { autoconfig_templates: templates, resolver })
    }
}

/// An email address split for lookups: the domain lower-cased, without a final dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub address: String,
    pub local: String,
    pub domain: String,
}

impl Email {
    pub fn parse(s: &str) -> Result<Email> {
        let s = s.trim();
        let bad = || Error::config(format!("\"{s}\" is not an email address (like you@example.com)"));
        let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
        let domain = domain.trim_end_matches('.').to_lowercase();
        let ok_domain = domain.contains('.')
            && domain.split('.').all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
            && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if local.is_empty() || local.chars().any(|c| c.is_whitespace() || c.is_control()) || !ok_domain {
            return Err(bad());
        }
        Ok(Email { address: format!("{local}@{domain}"), local: local.to_string(), domain })
    }
    fn address(&self) -> Address<'_> {
        Address { email: &self.address, local: &self.local, domain: &self.domain }
    }
}

/// What every source said.
#[derive(Debug)]
pub struct Discovery {
    pub email: Email,
    pub builtin: Option<&'static Provider>,
    /// (URL, answer) for each place looked; empty when the built-in table knew the domain.
    pub autoconfig: Vec<(String, Outcome)>,
    /// (name, answer) for each service; empty when the built-in table knew the domain.
    pub srv: Vec<(String, srv::Answer)>,
    /// The domain's MX records; `None` when not looked up.
    pub mx: Option<srv::MxAnswer>,
    /// The resolver could not be set up (then no SRV name was looked up).
    pub srv_unavailable: Option<String>,
}

/// Where a proposal came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Builtin(&'static str),
    Autoconfig(String),
    Srv,
    /// The domain's mail exchanger is this provider's.
    Mx {
        exchanger: String,
        provider: &'static str,
    },
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Builtin(name) => format!("popbridge's built-in table ({name})"),
            Source::Autoconfig(url) => format!("autoconfig {url}"),
            Source::Srv => "DNS SRV records (RFC 6186)".into(),
            Source::Mx { exchanger, provider } => {
                format!("the domain's mail exchanger {exchanger}: mail at this domain is hosted by {provider}")
            }
        }
    }
}

/// Servers to use, from one source.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub source: Source,
    pub pop: Option<Server>,
    pub smtp: Option<Server>,
    /// The `--oauth` preset to sign in with, and whether passwords are refused.
    pub oauth: Option<(&'static str, bool)>,
    /// OAuth2 endpoints an autoconfig file published (for `--oauth custom`).
    pub custom_oauth: Option<autoconfig::OAuthEndpoints>,
    pub notes: Vec<String>,
}

fn endpoint_server(e: &providers::Endpoint, user: &str, login: Login) -> Server {
    let auth = match login {
        Login::Password => vec![Auth::Password],
        Login::OAuth2Required { .. } => vec![Auth::OAuth2],
        Login::OAuth2OrAppPassword { .. } => vec![Auth::OAuth2, Auth::Password],
    };
    Server { host: e.host.to_string(), port: e.port, tls: e.tls, user: Some(user.to_string()), auth }
}

impl Discovery {
    /// One proposal per source that found something, in the order of preference.
    pub fn proposals(&self) -> Vec<Proposal> {
        let mut out = Vec::new();
        let email = &self.email.address;
        if let Some(p) = self.builtin {
            out.push(Proposal {
                source: Source::Builtin(p.name),
                pop: p.pop.as_ref().map(|e| endpoint_server(e, email, p.login)),
                smtp: p.smtp.first().map(|e| endpoint_server(e, email, p.login)),
                oauth: p.login.oauth_preset().map(|preset| (preset, matches!(p.login, Login::OAuth2Required { .. }))),
                custom_oauth: None,
                notes: p.notes.iter().map(|n| n.to_string()).collect(),
            });
        }
        for (url, outcome) in &self.autoconfig {
            let Outcome::Found(c) = outcome else { continue };
            // The first POP3 server popbridge can use: implicit TLS or STARTTLS first, plain last.
            // Servers that want only what popbridge cannot do (NTLM, GSSAPI, client certificates)
            // are left out; no <authentication> at all means a password.
            let usable = |s: &&Server| s.auth.is_empty() || s.auth.iter().any(|a| !matches!(a, Auth::Other(_)));
            let mut pops: Vec<&Server> = c.pop.iter().filter(usable).collect();
            pops.sort_by_key(|s| s.tls == TlsMode::Plain);
            let mut smtps: Vec<&Server> = c.smtp.iter().filter(usable).collect();
            smtps.sort_by_key(|s| s.tls == TlsMode::Plain);
            let pop = pops.first().map(|s| (*s).clone());
            let oauth_only =
                pop.as_ref().is_some_and(|s| !s.auth.is_empty() && s.auth.iter().all(|a| *a == Auth::OAuth2));
            let mut notes = Vec::new();
            if let Some((url, instruction)) = &c.enable {
                notes.push(if instruction.is_empty() {
                    format!("The provider says to switch access on first: {url}")
                } else {
                    format!("{instruction}: {url}")
                });
            }
            if pop.is_none() && !c.other_incoming.is_empty() {
                notes.push(format!("This provider publishes no POP3 server, only {}.", c.other_incoming.join(", ")));
            }
            let oauth_offered = pop.as_ref().is_some_and(|s| s.auth.contains(&Auth::OAuth2));
            out.push(Proposal {
                source: Source::Autoconfig(url.clone()),
                pop,
                smtp: smtps.first().map(|s| (*s).clone()),
                oauth: oauth_offered.then_some(("custom", oauth_only)),
                custom_oauth: if oauth_offered { c.oauth.clone() } else { None },
                notes,
            });
        }
        let first = |kind: srv::Kind| {
            self.srv.iter().zip(srv::SERVICES.iter()).find_map(|((_, a), (_, k, tls))| match a {
                srv::Answer::Records(r) if *k == kind => r.first().map(|r| Server {
                    host: r.target.clone(),
                    port: r.port,
                    tls: *tls,
                    user: Some(email.clone()),
                    auth: vec![Auth::Password],
                }),
                _ => None,
            })
        };
        let (pop, smtp) = (first(srv::Kind::Pop), first(srv::Kind::Smtp));
        if pop.is_some() || smtp.is_some() {
            let mut notes = Vec::new();
            let outside: Vec<&str> = [&pop, &smtp]
                .into_iter()
                .flatten()
                .map(|s| s.host.as_str())
                .filter(|h| !in_domain(h, &self.email.domain))
                .collect();
            if !outside.is_empty() {
                notes.push(format!(
                    "DNS answers are not authenticated and {} is outside {}: make sure it is your provider's server before you use it (RFC 6186 §6).",
                    outside.join(" and "),
                    self.email.domain
                ));
            }
            out.push(Proposal { source: Source::Srv, pop, smtp, oauth: None, custom_oauth: None, notes });
        }
        if let Some(srv::MxAnswer::Hosts(hosts)) = &self.mx
            && let Some((exchanger, p)) = hosts.iter().find_map(|h| providers::by_mx(h).map(|p| (h, p)))
        {
            out.push(Proposal {
                source: Source::Mx { exchanger: exchanger.clone(), provider: p.name },
                pop: p.pop.as_ref().map(|e| endpoint_server(e, email, p.login)),
                smtp: p.smtp.first().map(|e| endpoint_server(e, email, p.login)),
                oauth: p.login.oauth_preset().map(|preset| (preset, matches!(p.login, Login::OAuth2Required { .. }))),
                custom_oauth: None,
                notes: p.notes.iter().map(|n| n.to_string()).collect(),
            });
        }
        for p in &mut out {
            for (kind, s) in [("POP3", &p.pop), ("SMTP", &p.smtp)] {
                if let Some(s) = s
                    && s.tls == TlsMode::Plain
                    && !crate::config::is_loopback_host(&s.host)
                {
                    p.notes.push(format!(
                        "The {kind} server {} is offered without encryption: popbridge sends no password in plaintext to another machine unless the account allows it (--allow-plain); ask the provider for TLS.",
                        s.host
                    ));
                }
            }
        }
        out
    }

    /// The first proposal with a POP3 server.
    pub fn best(&self) -> Option<Proposal> {
        self.proposals().into_iter().find(|p| p.pop.is_some())
    }
}

fn in_domain(host: &str, domain: &str) -> bool {
    let h = host.to_ascii_lowercase();
    h == domain || h.ends_with(&format!(".{domain}"))
}

/// Looks the address up: the built-in table, else autoconfig, SRV and MX at once.
pub async fn discover(email: &Email, settings: &Settings) -> Result<Discovery> {
    let mut d = Discovery {
        email: email.clone(),
        builtin: providers::by_domain(&email.domain),
        autoconfig: Vec::new(),
        srv: Vec::new(),
        mx: None,
        srv_unavailable: None,
    };
    if d.builtin.is_some() {
        return Ok(d);
    }
    let client = autoconfig::client()?;
    let urls: Vec<String> =
        settings.autoconfig_templates.iter().map(|t| autoconfig::expand(t, &email.address())).collect();
    let ac = async {
        let tasks: Vec<_> = urls
            .iter()
            .map(|u| {
                let (client, url, e) = (client.clone(), u.clone(), email.clone());
                tokio::spawn(async move { autoconfig::lookup(&client, &url, &e.address()).await })
            })
            .collect();
        let mut out = Vec::new();
        for (u, t) in urls.iter().zip(tasks) {
            let o = t.await.unwrap_or_else(|e| Outcome::Nothing(format!("the lookup failed ({e})")));
            out.push((u.clone(), o));
        }
        out
    };
    let names: Vec<String> = srv::SERVICES.iter().map(|(s, _, _)| format!("{s}.{}.", email.domain)).collect();
    let dns = async {
        match srv::resolver(settings.resolver) {
            Err(e) => Err(e),
            Ok(r) => {
                let tasks: Vec<_> = names
                    .iter()
                    .map(|n| {
                        let (r, n) = (r.clone(), n.clone());
                        tokio::spawn(async move { srv::lookup(&r, &n).await })
                    })
                    .collect();
                let mx = {
                    let (r, domain) = (r.clone(), email.domain.clone());
                    tokio::spawn(async move { srv::mx(&r, &domain).await })
                };
                let mut out = Vec::new();
                for (n, t) in names.iter().zip(tasks) {
                    let a = t.await.unwrap_or_else(|e| srv::Answer::Failed(e.to_string()));
                    out.push((n.trim_end_matches('.').to_string(), a));
                }
                let mx = mx.await.unwrap_or_else(|e| srv::MxAnswer::Failed(e.to_string()));
                Ok((out, mx))
            }
        }
    };
    let (ac, dns) = tokio::join!(ac, dns);
    d.autoconfig = ac;
    match dns {
        Ok((v, mx)) => {
            d.srv = v;
            d.mx = Some(mx);
        }
        Err(e) => d.srv_unavailable = Some(e),
    }
    Ok(d)
}

fn tls_words(t: TlsMode) -> &'static str {
    match t {
        TlsMode::Implicit => "TLS (implicit)",
        TlsMode::StartTls => "STARTTLS",
        TlsMode::Plain => "no encryption",
    }
}

fn server_line(kind: &str, s: &Server) -> String {
    let auth: Vec<String> = s.auth.iter().map(Auth::describe).collect();
    format!(
        "{kind} {}:{} {}{}{}",
        s.host,
        s.port,
        tls_words(s.tls),
        s.user.as_deref().map(|u| format!(", user {u}")).unwrap_or_default(),
        if auth.is_empty() { String::new() } else { format!(", login: {}", auth.join(" or ")) }
    )
}

/// What each source said, line by line (for `account discover`).
pub fn source_lines(d: &Discovery) -> Vec<String> {
    let mut out = Vec::new();
    match d.builtin {
        Some(p) => {
            out.push(format!("built-in table: {} ({})", p.name, d.email.domain));
            match &p.pop {
                Some(e) => {
                    out.push(format!("  {}", server_line("POP3", &endpoint_server(e, &d.email.address, p.login))))
                }
                None => out.push("  no POP3 server (this provider offers none)".into()),
            }
            for e in p.smtp {
                out.push(format!("  {}", server_line("SMTP", &endpoint_server(e, &d.email.address, p.login))));
            }
            out.push("  (a known provider: autoconfig and DNS were not looked up)".into());
            return out;
        }
        None => out.push(format!("built-in table: no entry for {}", d.email.domain)),
    }
    for (url, o) in &d.autoconfig {
        match o {
            Outcome::Found(c) => {
                out.push(format!(
                    "autoconfig {url}: found{}",
                    c.display_name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
                ));
                for s in &c.pop {
                    out.push(format!("  {}", server_line("POP3", s)));
                }
                for s in &c.smtp {
                    out.push(format!("  {}", server_line("SMTP", s)));
                }
                if c.pop.is_empty() {
                    out.push(format!(
                        "  no POP3 server{}",
                        if c.other_incoming.is_empty() {
                            String::new()
                        } else {
                            format!(" (only {})", c.other_incoming.join(", "))
                        }
                    ));
                }
                for s in &c.skipped {
                    out.push(format!("  left out: {s}"));
                }
            }
            Outcome::Nothing(why) => out.push(format!("autoconfig {url}: {why}")),
        }
    }
    if let Some(e) = &d.srv_unavailable {
        out.push(format!("DNS SRV: not looked up: {e}"));
    }
    for (name, a) in &d.srv {
        match a {
            srv::Answer::Records(r) => {
                let list: Vec<String> = r
                    .iter()
                    .map(|r| format!("{}:{} (priority {}, weight {})", r.target, r.port, r.priority, r.weight))
                    .collect();
                out.push(format!("DNS SRV {name}: {}", list.join(", ")));
            }
            srv::Answer::NotOffered => out.push(format!("DNS SRV {name}: not offered (\".\")")),
            srv::Answer::None => out.push(format!("DNS SRV {name}: none")),
            srv::Answer::Failed(e) => out.push(format!("DNS SRV {name}: lookup failed ({e})")),
        }
    }
    match &d.mx {
        Some(srv::MxAnswer::Hosts(h)) => {
            let list: Vec<String> = h
                .iter()
                .map(|h| match providers::by_mx(h) {
                    Some(p) => format!("{h} ({})", p.name),
                    None => h.clone(),
                })
                .collect();
            out.push(format!("DNS MX {}: {}", d.email.domain, list.join(", ")));
        }
        Some(srv::MxAnswer::None) => out.push(format!("DNS MX {}: none", d.email.domain)),
        Some(srv::MxAnswer::Failed(e)) => out.push(format!("DNS MX {}: lookup failed ({e})", d.email.domain)),
        None => {}
    }
    out
}

/// A word for the shell as it is typed.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@:/+=%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A name for the account: the provider's, else the domain's first label, capitalised.
fn account_name(p: &Proposal, email: &Email) -> String {
    let base = match &p.source {
        Source::Builtin(name) => name.split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or("Mail").to_string(),
        _ => email.domain.split('.').next().unwrap_or("Mail").to_string(),
    };
    let mut c = base.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => "Mail".into(),
    }
}

/// The `account add` command line for a proposal.
pub fn add_command(p: &Proposal, email: &Email) -> Option<String> {
    let pop = p.pop.as_ref()?;
    let pop_user = pop.user.clone().unwrap_or_else(|| email.address.clone());
    let mut w: Vec<String> = vec!["popbridge".into(), "account".into(), "add".into()];
    let flag = |w: &mut Vec<String>, f: &str, v: &str| {
        w.push(f.to_string());
        w.push(shell_word(v));
    };
    flag(&mut w, "--name", &account_name(p, email));
    flag(&mut w, "--email", &email.address);
    flag(&mut w, "--pop-host", &pop.host);
    flag(&mut w, "--pop-port", &pop.port.to_string());
    flag(&mut w, "--pop-tls", pop.tls.as_str());
    flag(&mut w, "--pop-user", &pop_user);
    if let Some(s) = &p.smtp {
        flag(&mut w, "--smtp-host", &s.host);
        flag(&mut w, "--smtp-port", &s.port.to_string());
        flag(&mut w, "--smtp-tls", s.tls.as_str());
        match &s.user {
            Some(u) if *u != pop_user => flag(&mut w, "--smtp-user", u),
            None if s.auth.contains(&Auth::None) => w.push("--smtp-no-auth".into()),
            _ => {}
        }
    }
    match (&p.oauth, &p.custom_oauth) {
        (Some(("custom", _)), Some(o)) => {
            flag(&mut w, "--oauth", "custom");
            flag(&mut w, "--oauth-client-id", "YOUR_CLIENT_ID");
            if let Some(u) = &o.auth_url {
                flag(&mut w, "--oauth-authorization-url", u);
            }
            if let Some(u) = &o.token_url {
                flag(&mut w, "--oauth-token-url", u);
            }
            for s in &o.scope {
                flag(&mut w, "--oauth-scope", s);
            }
        }
        (Some((preset, true)), _) => {
            flag(&mut w, "--oauth", preset);
            flag(&mut w, "--oauth-client-id", "YOUR_CLIENT_ID");
        }
        _ => w.push("--password-command 'CMD'".into()),
    }
    Some(w.join(" "))
}

/// The proposal in a few lines: the servers and what to do at the provider.
fn proposal_lines(p: &Proposal) -> Vec<String> {
    let mut out = vec![format!("From {}:", p.source.describe())];
    if let Some(s) = &p.pop {
        out.push(format!("  incoming: {}", server_line("POP3", s)));
    }
    if let Some(s) = &p.smtp {
        out.push(format!("  outgoing: {}", server_line("SMTP", s)));
    }
    match p.oauth {
        Some(("custom", true)) => out.push(
            "  sign-in: OAuth2 only (--oauth custom with the provider's endpoints and your own client ID)".into(),
        ),
        Some(("custom", false)) => out.push("  sign-in: a password, or OAuth2 (--oauth custom)".into()),
        Some((preset, true)) => out.push(format!("  sign-in: OAuth2 only (--oauth {preset} with your own client ID)")),
        Some((preset, false)) => out.push(format!("  sign-in: OAuth2 (--oauth {preset}) or an app password")),
        None => {}
    }
    for n in &p.notes {
        out.push(format!("  note: {n}"));
    }
    out
}

/// `popbridge account discover EMAIL`: what each source said, the proposal and its `account add`
/// command line. Exit code 0 when a POP3 server was found, 1 when none was.
pub async fn discover_cmd(email: &str) -> Result<i32> {
    let email = Email::parse(email)?;
    let settings = Settings::from_env()?;
    let d = discover(&email, &settings).await?;
    println!("Looking up the servers for {}:", email.address);
    for l in source_lines(&d) {
        println!("  {l}");
    }
    println!();
    let proposals = d.proposals();
    match proposals.iter().find(|p| p.pop.is_some()) {
        Some(p) => {
            for l in proposal_lines(p) {
                println!("{l}");
            }
            if let Some(cmd) = add_command(p, &email) {
                println!("\nTo add it (put your own values for the name and the password command or client ID):");
                println!("  {cmd}");
            }
            Ok(0)
        }
        None => {
            for p in &proposals {
                for n in &p.notes {
                    println!("{n}");
                }
            }
            println!(
                "No POP3 server found for {}: ask your provider for its POP3 server, port and security, and give them to `popbridge account add`.",
                email.domain
            );
            Ok(1)
        }
    }
}

/// What the wizard's answers hold, as far as discovery fills them. The command line's
/// `AddArgs` implements it (`src/cli.rs`).
pub trait Answers {
    fn email(&self) -> Option<&str>;
    fn fields(&mut self) -> Fields<'_>;
}

/// The settings discovery may fill in; each only while it is still unset.
pub struct Fields<'a> {
    pub pop_host: &'a mut Option<String>,
    pub pop_port: &'a mut Option<u16>,
    pub pop_tls: &'a mut Option<String>,
    pub pop_user: &'a mut Option<String>,
    pub smtp_host: &'a mut Option<String>,
    pub smtp_port: &'a mut Option<u16>,
    pub smtp_tls: &'a mut Option<String>,
    pub smtp_user: &'a mut Option<String>,
    /// The `--oauth` provider, where the command line has one (`None`: it has not).
    pub oauth: Option<&'a mut Option<String>>,
}

fn ask_yes(question: &str) -> Result<bool> {
    loop {
        print!("{question} [Y/n]: ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let n = std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::config(format!("cannot read the answer: {e}")))?;
        if n == 0 {
            return Err(Error::config("input ended; the account was not added"));
        }
        match line.trim().to_ascii_lowercase().as_str() {
            "" | "y" | "yes" => return Ok(true),
            "n" | "no" => return Ok(false),
            _ => println!("  Answer y or n."),
        }
    }
}

/// Runs discovery off the caller's thread, on a runtime of its own: the wizard is synchronous
/// and may be called on a tokio worker, where blocking on a future is not allowed.
fn discover_blocking(email: &Email, settings: &Settings) -> Result<Discovery> {
    let (email, settings) = (email.clone(), settings.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::other(format!("cannot start the lookup: {e}")))?;
        rt.block_on(discover(&email, &settings))
    })
    .join()
    .map_err(|_| Error::other("internal error: the server lookup stopped"))?
}

/// For the `account add` wizard, right after the email address: look its servers up, show the
/// proposal, and on "yes" fill in whatever is still unset. Does nothing when the servers were
/// given already, when stdin is not a terminal, or when nothing is found (the wizard then asks).
pub fn propose(a: &mut impl Answers) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Ok(());
    }
    let Some(raw) = a.email().map(str::to_string) else { return Ok(()) };
    if a.fields().pop_host.is_some() {
        return Ok(());
    }
    let Ok(email) = Email::parse(&raw) else { return Ok(()) };
    let settings = Settings::from_env()?;
    println!("Looking up the servers for {} …", email.address);
    let d = match discover_blocking(&email, &settings) {
        Ok(d) => d,
        Err(e) => {
            println!("  The lookup failed ({}); enter the servers yourself.", e.message);
            return Ok(());
        }
    };
    let proposals = d.proposals();
    let Some(p) = proposals.iter().find(|p| p.pop.is_some()) else {
        for n in proposals.iter().flat_map(|p| p.notes.iter()) {
            println!("  {n}");
        }
        println!(
            "  No POP3 server found for {}: enter the servers yourself (ask your provider if unsure).",
            email.domain
        );
        return Ok(());
    };
    for l in proposal_lines(p) {
        println!("  {l}");
    }
    if !ask_yes("Use these settings?")? {
        return Ok(());
    }
    let f = a.fields();
    let set = |slot: &mut Option<String>, v: &str| {
        if slot.is_none() {
            *slot = Some(v.to_string());
        }
    };
    if let Some(s) = &p.pop {
        set(f.pop_host, &s.host);
        f.pop_port.get_or_insert(s.port);
        set(f.pop_tls, s.tls.as_str());
        set(f.pop_user, s.user.as_deref().unwrap_or(&email.address));
    }
    if let Some(s) = &p.smtp
        && f.smtp_host.is_none()
    {
        set(f.smtp_host, &s.host);
        f.smtp_port.get_or_insert(s.port);
        set(f.smtp_tls, s.tls.as_str());
        set(f.smtp_user, s.user.as_deref().unwrap_or(&email.address));
    }
    if let Some((preset, required)) = p.oauth {
        match f.oauth {
            // A preset is enough to sign in (with the user's client ID, which the wizard asks
            // for); a custom provider's endpoints are given with the flags the advice names.
            Some(slot) if required && slot.is_none() && preset != "custom" => *slot = Some(preset.to_string()),
            Some(slot) if slot.is_some() => {}
            _ => println!(
                "  {}: give `popbridge account add` --oauth {preset} --oauth-client-id YOUR_CLIENT_ID (the README shows how to register one).",
                if required { "This provider accepts only OAuth2" } else { "This provider prefers OAuth2" }
            ),
        }
    }
    Ok(())
}

/// The provider quirks `account test` explains for this account (each a line), from the
/// provider table (by POP host) and what the server said.
pub fn quirk_notes(account: &Account, probe: &Probe) -> Vec<String> {
    let mut out = Vec::new();
    let provider = providers::by_pop_host(&account.pop.host);
    if let Some(p) = provider
        && let Some(limit) = p.session_limit
    {
        out.push(format!(
            "{}: lists at most about {limit} messages per POP session; popbridge keeps fetching in further sessions of the same cycle until one lists nothing new (at most {} more per cycle; the rest follows next cycle).",
            p.name,
            crate::fetch::MAX_EXTRA_SESSIONS
        ));
        if probe.messages >= u64::from(limit) * 9 / 10 {
            out.push(format!(
                "{}: this session listed {} message(s): there are probably more than POP shows at once.",
                p.name, probe.messages
            ));
        }
    }
    if provider.is_some_and(|p| p.name == providers::GMAIL.name) {
        out.push(
            "Gmail: a message downloaded (RETR) in a session that ended properly is hidden from POP afterwards, whatever popbridge's delete policy; what Gmail does with its own copy (keep, mark read, archive, delete) is its setting \"When messages are accessed with POP\" (Settings → Forwarding and POP/IMAP).".to_string(),
        );
        if account.pop.user.to_ascii_lowercase().starts_with("recent:") {
            out.push(format!(
                "Gmail: the user name {} is recent mode: every session lists the last 30 days again, including what was downloaded before (here or by another client). popbridge stores each message once all the same: it knows what it holds by UIDL (and a message listed again under a new UIDL by its content). This holds for an account that used recent: from the start: popbridge keeps POP state per user name, so an account switched from {} to recent: later stores the last 30 days a second time.",
                account.pop.user,
                account.pop.user.get(7..).unwrap_or("")
            ));
        } else {
            out.push(format!(
                "Gmail: with the user name recent:{} (recent mode) every session lists the last 30 days, downloaded or not — for a second device, or to get back what another POP client took. popbridge's duplicate protection (UIDL, then content) keeps it from storing anything twice when recent: is used from the start; popbridge keeps POP state per user name, so switching this account to recent: later would store the last 30 days a second time.",
                account.pop.user
            ));
        }
    }
    if let Some(d) = probe.caps.as_ref().and_then(|c| c.login_delay).filter(|d| *d > 0) {
        out.push(format!(
            "LOGIN-DELAY {d}: the server wants at least {} between logins. popbridge's schedule never fetches this account more often than that (its interval is {}); a `popbridge fetch` sooner than that, or a further session for a partial listing, may be refused by the server ([LOGIN-DELAY]) and is then retried in the next cycle.",
            humantime::format_duration(std::time::Duration::from_secs(d)),
            humantime::format_duration(account.interval)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(host: &str, user: &str) -> Account {
        let text = format!(
            "[local]\nuser = \"me\"\npassword = \"x\"\n\n[[account]]\nname = \"Mail\"\nemail = \"me@gmail.com\"\n[account.pop]\nhost = \"{host}\"\nport = 995\ntls = \"implicit\"\nuser = \"{user}\"\npassword = \"pw\"\n"
        );
        let cfg = crate::config::parse(&text, std::path::Path::new("/nonexistent/config.toml"), 0o600).unwrap();
        cfg.accounts[0].clone()
    }

    fn probe(messages: u64, capa: &[u8]) -> Probe {
        Probe {
            greeting: "+OK ready".into(),
            tls: None,
            caps_before: None,
            caps: Some(crate::pop3::parse_capa(capa)),
            auth_used: "USER/PASS",
            messages,
            bytes: 0,
            uidl: true,
            uidl_missing: 0,
            uidl_duplicates: 0,
            uidl_numbers: false,
            utf8: false,
            first_import: None,
        }
    }

    #[test]
    fn gmail_quirks_are_explained() {
        let notes = quirk_notes(&account("pop.gmail.com", "me@gmail.com"), &probe(250, b"UIDL\r\nUSER\r\n")).join("\n");
        assert!(notes.contains("Gmail: lists at most about 250 messages per POP session"), "{notes}");
        assert!(notes.contains("this session listed 250 message(s)"), "{notes}");
        assert!(notes.contains("hidden from POP afterwards, whatever popbridge's delete policy"), "{notes}");
        assert!(notes.contains("recent:me@gmail.com (recent mode)"), "{notes}");
        assert!(!notes.contains("LOGIN-DELAY"), "{notes}");
        let recent = quirk_notes(&account("POP.GMAIL.COM", "recent:me@gmail.com"), &probe(12, b"UIDL\r\n")).join("\n");
        assert!(recent.contains("the user name recent:me@gmail.com is recent mode"), "{recent}");
        assert!(recent.contains("from the start"), "{recent}");
        assert!(!recent.contains("this session listed"), "{recent}");
    }

    #[test]
    fn login_delay_is_explained_for_any_server() {
        let notes = quirk_notes(&account("pop.example.org", "me"), &probe(3, b"LOGIN-DELAY 900\r\n"));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("LOGIN-DELAY 900: the server wants at least 15m between logins"), "{}", notes[0]);
        assert!(quirk_notes(&account("pop.example.org", "me"), &probe(3, b"LOGIN-DELAY 0\r\n")).is_empty());
    }

    #[test]
    fn servers_popbridge_cannot_log_in_to_are_not_proposed() {
        let email = Email::parse("fred@example.org").unwrap();
        let xml = r#"<clientConfig><emailProvider id="example.org">
<incomingServer type="pop3"><hostname>pop-ntlm.example.org</hostname><port>995</port><socketType>SSL</socketType><authentication>NTLM</authentication></incomingServer>
<incomingServer type="pop3"><hostname>pop.example.org</hostname><port>995</port><socketType>SSL</socketType></incomingServer>
</emailProvider></clientConfig>"#;
        let cfg = autoconfig::parse(xml, &email.address()).unwrap();
        let d = Discovery {
            email,
            builtin: None,
            autoconfig: vec![("https://example.org/x".into(), Outcome::Found(Box::new(cfg)))],
            srv: Vec::new(),
            mx: None,
            srv_unavailable: None,
        };
        let pop = d.best().and_then(|p| p.pop).unwrap();
        assert_eq!(pop.host, "pop.example.org", "no <authentication> is a password; NTLM only is left out");
    }

    #[test]
    fn email_addresses() {
        let e = Email::parse(" Fred@Example.COM. ").unwrap();
        assert_eq!(
            (e.local.as_str(), e.domain.as_str(), e.address.as_str()),
            ("Fred", "example.com", "Fred@example.com")
        );
        for bad in
            ["fred", "@example.com", "fred@", "fred@localhost", "fred@exa mple.com", "fred@-x.com", "a b@example.com"]
        {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    fn builtin(domain: &str) -> Discovery {
        let email = Email::parse(&format!("fred@{domain}")).unwrap();
        Discovery {
            builtin: providers::by_domain(&email.domain),
            email,
            autoconfig: Vec::new(),
            srv: Vec::new(),
            mx: None,
            srv_unavailable: None,
        }
    }

    #[test]
    fn gmail_from_the_table() {
        let d = builtin("gmail.com");
        let p = d.best().unwrap();
        assert_eq!(p.source, Source::Builtin("Gmail"));
        let pop = p.pop.as_ref().unwrap();
        assert_eq!((pop.host.as_str(), pop.port, pop.tls), ("pop.gmail.com", 995, TlsMode::Implicit));
        assert_eq!(pop.user.as_deref(), Some("fred@gmail.com"));
        assert_eq!(p.oauth, Some(("google", false)));
        let cmd = add_command(&p, &d.email).unwrap();
        assert!(
            cmd.contains("--pop-host pop.gmail.com --pop-port 995 --pop-tls implicit --pop-user fred@gmail.com"),
            "{cmd}"
        );
        assert!(cmd.contains("--smtp-host smtp.gmail.com --smtp-port 465 --smtp-tls implicit"), "{cmd}");
    }

    #[test]
    fn outlook_requires_oauth_and_icloud_has_no_pop() {
        let d = builtin("outlook.com");
        let p = d.best().unwrap();
        assert_eq!(p.oauth, Some(("microsoft", true)));
        let cmd = add_command(&p, &d.email).unwrap();
        assert!(cmd.contains("--oauth microsoft --oauth-client-id YOUR_CLIENT_ID"), "{cmd}");
        assert!(cmd.contains("--smtp-host smtp-mail.outlook.com --smtp-port 587 --smtp-tls starttls"), "{cmd}");
        assert!(builtin("icloud.com").best().is_none());
    }

    #[test]
    fn autoconfig_before_srv_and_foreign_srv_targets_are_pointed_out() {
        let email = Email::parse("fred@example.org").unwrap();
        let xml = r#"<clientConfig><emailProvider id="example.org">
<incomingServer type="pop3"><hostname>pop.example.org</hostname><port>110</port><socketType>plain</socketType><username>%EMAILLOCALPART%</username><authentication>password-cleartext</authentication></incomingServer>
<incomingServer type="pop3"><hostname>pop.example.org</hostname><port>995</port><socketType>SSL</socketType><username>%EMAILLOCALPART%</username><authentication>password-cleartext</authentication></incomingServer>
</emailProvider></clientConfig>"#;
        let cfg = autoconfig::parse(xml, &email.address()).unwrap();
        let rec =
            |t: &str, port| srv::Answer::Records(vec![srv::Record { priority: 0, weight: 0, port, target: t.into() }]);
        let d = Discovery {
            email: email.clone(),
            builtin: None,
            autoconfig: vec![
                ("https://autoconfig.example.org/x".into(), Outcome::Nothing("HTTP 404".into())),
                ("https://example.org/y".into(), Outcome::Found(Box::new(cfg))),
            ],
            srv: vec![
                ("_pop3s._tcp.example.org".into(), rec("mail.hoster.example", 995)),
                ("_pop3._tcp.example.org".into(), srv::Answer::None),
                ("_submissions._tcp.example.org".into(), srv::Answer::NotOffered),
                ("_submission._tcp.example.org".into(), rec("smtp.example.org", 587)),
            ],
            mx: Some(srv::MxAnswer::Hosts(vec!["mx.example.org".into()])),
            srv_unavailable: None,
        };
        let ps = d.proposals();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].source, Source::Autoconfig("https://example.org/y".into()));
        let pop = ps[0].pop.as_ref().unwrap();
        assert_eq!(
            (pop.port, pop.tls, pop.user.as_deref()),
            (995, TlsMode::Implicit, Some("fred")),
            "TLS before plain"
        );
        assert_eq!(ps[1].source, Source::Srv);
        assert_eq!(
            ps[1].pop.as_ref().map(|s| (s.host.as_str(), s.tls)),
            Some(("mail.hoster.example", TlsMode::Implicit))
        );
        assert_eq!(ps[1].smtp.as_ref().map(|s| (s.port, s.tls)), Some((587, TlsMode::StartTls)));
        assert!(ps[1].notes[0].contains("mail.hoster.example is outside example.org"), "{:?}", ps[1].notes);
        assert!(ps.iter().all(|p| !p.notes.iter().any(|n| n.contains("without encryption"))), "TLS was chosen");
        let lines = source_lines(&d).join("\n");
        assert!(lines.contains("DNS SRV _submissions._tcp.example.org: not offered"), "{lines}");
        assert!(lines.contains("autoconfig https://autoconfig.example.org/x: HTTP 404"), "{lines}");
    }
}
