//! The wizard's second chance (issue 16): when `account add` on a terminal tests a server and the
//! test fails, it says what failed (as without a terminal), then offers to change exactly the
//! setting at fault — keeping everything else that was typed, the password included — and tests
//! again. Without a terminal nothing here runs: scripts keep "The account was not saved" and the
//! exit code.
//!
//! The offer is a short menu of the server's settings with their current values; the error's class
//! chooses the entry Enter takes, and one line says why (an authentication error → the password;
//! a connection error → the host; a TLS error without a certificate to show → the security mode; a
//! server's "come back later" → test again unchanged). Where the class says nothing useful there
//! is no default and Enter asks again: nothing is changed, or given up, by a stray Enter.
//!
//! A refused certificate is shown first (subject, issuer, validity, SHA-256: `net::certinfo`)
//! with the offer to pin it; only a typed "yes" pins it (Enter, or anything else, does not).

use std::time::SystemTime;

use super::{AddArgs, parse_tls, prompt, prompt_port, prompt_secret, prompt_tls};
use crate::config::{TlsMode, format_fingerprint};
use crate::error::{Error, ErrorClass};
use crate::net::certinfo::CertSummary;
use crate::net::tls::Presented;
use crate::secret::Secret;

/// What `account add` does after a failed test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A setting was changed (or the user asked to): test again.
    Retry,
    /// Outgoing side only: save the account without an outgoing server (it can be added later).
    SkipSmtp,
    /// Stop; nothing is saved.
    GiveUp,
}

/// The entries of the menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Host,
    Port,
    Security,
    User,
    Password,
    NoLogin,
    Again,
    SkipSmtp,
    GiveUp,
}

impl Field {
    /// The word that chooses it (as well as its number).
    fn word(self) -> &'static str {
        match self {
            Field::Host => "host",
            Field::Port => "port",
            Field::Security => "security",
            Field::User => "user",
            Field::Password => "password",
            Field::NoLogin => "no-login",
            Field::Again => "again",
            Field::SkipSmtp => "skip",
            Field::GiveUp => "quit",
        }
    }
}

/// The incoming server's test failed with `e`: offer to fix it. `password` is the POP password
/// typed (None when it comes from a password_command).
pub fn incoming(a: &mut AddArgs, password: &mut Option<Secret>, e: &Error) -> crate::error::Result<Next> {
    let (host, tls, port) = server(&a.pop_host, &a.pop_tls, a.pop_port, "pop-tls", (995, 110))?;
    if let Some(pin) = pin_if_wanted(e, &host, port)? {
        a.pin_sha256 = Some(pin);
        return Ok(Next::Retry);
    }
    let pw_text = match (&password, &a.password_command) {
        (Some(_), _) => "(as typed)".to_string(),
        (None, Some(c)) => format!("(printed by `{c}`)"),
        (None, None) => "(none)".to_string(),
    };
    // An OAuth 2 account has no password to retype: its sign-in is kept (and redone, if the
    // provider refuses it, with `popbridge account auth NAME` once the account is saved).
    let oauth = a.oauth.is_some();
    let user_text = a.pop_user.as_deref().unwrap_or("");
    let mut items = vec![
        (Field::Host, host.clone()),
        (Field::Port, port.to_string()),
        (Field::Security, tls.as_str().to_string()),
        (Field::User, if oauth { user_text.to_string() } else { format!("{user_text} (and the password)") }),
        (Field::Password, pw_text),
        (Field::Again, "test again as it is".into()),
        (Field::GiveUp, "nothing is saved".into()),
    ];
    if oauth {
        items.retain(|(f, _)| *f != Field::Password);
    }
    let suggested = suggestion(e, false);
    match choose(&items, suggested)? {
        Field::Host => a.pop_host = Some(prompt_host("POP server host name", &host)?),
        Field::Port => a.pop_port = Some(prompt_port("Port", &port.to_string())?),
        Field::Security => {
            let (t, p) = change_security(
                tls,
                port,
                (995, 110),
                "Security: implicit (SSL, port 995), starttls (port 110) or plain",
            )?;
            a.pop_tls = Some(t.as_str().to_string());
            a.pop_port = Some(p);
        }
        Field::User => {
            a.pop_user = Some(prompt("User name", a.pop_user.as_deref())?);
            if !oauth {
                retype_password(password, &mut a.password_command, "Password")?;
            }
        }
        Field::Password => retype_password(password, &mut a.password_command, "Password")?,
        Field::Again => {}
        Field::GiveUp => return Ok(Next::GiveUp),
        Field::NoLogin | Field::SkipSmtp => return Err(Error::other("internal error: not an incoming setting")),
    }
    Ok(Next::Retry)
}

/// The outgoing server's test failed with `e`: offer to fix it. `smtp_password` is an SMTP
/// password typed here (None: the POP password, or `--smtp-password-command`).
pub fn outgoing(a: &mut AddArgs, smtp_password: &mut Option<Secret>, e: &Error) -> crate::error::Result<Next> {
    let (host, tls, port) = server(&a.smtp_host, &a.smtp_tls, a.smtp_port, "smtp-tls", (465, 587))?;
    if let Some(pin) = pin_if_wanted(e, &host, port)? {
        a.smtp_pin_sha256 = Some(pin);
        return Ok(Next::Retry);
    }
    let user_text = if a.smtp_no_auth {
        "(no login)".to_string()
    } else {
        format!("{} (and the password)", a.smtp_user.as_deref().or(a.pop_user.as_deref()).unwrap_or(""))
    };
    let pw_text = match (&smtp_password, &a.smtp_password_command) {
        _ if a.smtp_no_auth => "(no login)".to_string(),
        (Some(_), _) => "(as typed)".to_string(),
        (None, Some(c)) => format!("(printed by `{c}`)"),
        (None, None) => "(the POP password)".to_string(),
    };
    let items = [
        (Field::Host, host.clone()),
        (Field::Port, port.to_string()),
        (Field::Security, tls.as_str().to_string()),
        (Field::User, user_text),
        (Field::Password, pw_text),
        (Field::NoLogin, "the server takes mail without a login".into()),
        (Field::Again, "test again as it is".into()),
        (Field::SkipSmtp, "save the account without an outgoing server (add it later)".into()),
        (Field::GiveUp, "nothing is saved".into()),
    ];
    match choose(&items, suggestion(e, true))? {
        Field::Host => a.smtp_host = Some(prompt_host("SMTP server host name", &host)?),
        Field::Port => a.smtp_port = Some(prompt_port("Port", &port.to_string())?),
        Field::Security => {
            let (t, p) =
                change_security(tls, port, (465, 587), "Security: implicit (SSL, port 465) or starttls (port 587)")?;
            a.smtp_tls = Some(t.as_str().to_string());
            a.smtp_port = Some(p);
        }
        Field::User => {
            let u = prompt("SMTP user name", a.smtp_user.as_deref().or(a.pop_user.as_deref()))?;
            a.smtp_user = Some(u);
            a.smtp_no_auth = false;
            retype_smtp_password(smtp_password, &mut a.smtp_password_command)?;
        }
        Field::Password => {
            a.smtp_no_auth = false;
            retype_smtp_password(smtp_password, &mut a.smtp_password_command)?;
        }
        Field::NoLogin => {
            a.smtp_no_auth = true;
            a.smtp_user = None;
            a.smtp_password_command = None;
            *smtp_password = None;
        }
        Field::Again => {}
        Field::SkipSmtp => {
            a.smtp_host = None;
            a.smtp_port = None;
            a.smtp_tls = None;
            a.smtp_user = None;
            a.smtp_password_command = None;
            a.smtp_no_auth = false;
            a.smtp_ca_file = None;
            a.smtp_pin_sha256 = None;
            *smtp_password = None;
            return Ok(Next::SkipSmtp);
        }
        Field::GiveUp => return Ok(Next::GiveUp),
    }
    Ok(Next::Retry)
}

/// A server's host, TLS mode and port as they stand (the port: the mode's standard one when unset).
fn server(
    host: &Option<String>,
    tls: &Option<String>,
    port: Option<u16>,
    flag: &str,
    (implicit_port, starttls_port): (u16, u16),
) -> crate::error::Result<(String, TlsMode, u16)> {
    let tls = parse_tls(tls.as_deref().unwrap_or("implicit"), flag)?;
    let port = port.unwrap_or(if tls == TlsMode::Implicit { implicit_port } else { starttls_port });
    Ok((host.clone().unwrap_or_default(), tls, port))
}

/// For an error that carries the certificate the verifier refused: shows it and offers to pin
/// it; the pin to save when "yes" was typed.
fn pin_if_wanted(e: &Error, host: &str, port: u16) -> crate::error::Result<Option<String>> {
    let Some(p) = e.presented.as_ref().filter(|_| e.class == ErrorClass::Certificate) else { return Ok(None) };
    if offer_pin(host, port, p)? {
        return Ok(Some(format_fingerprint(&p.fingerprint())));
    }
    println!("  Not pinned.");
    Ok(None)
}

/// The menu entry Enter takes for this error, with the reason shown above the menu; None when
/// the class says nothing about which setting is wrong (the error's guidance is shown then).
fn suggestion(e: &Error, smtp: bool) -> Option<Field> {
    let (field, why) = match e.class {
        ErrorClass::Authentication => {
            (Field::Password, "the server refused the login: most often the password is wrong (or the user name)")
        }
        ErrorClass::Connection => {
            (Field::Host, "the server could not be reached there: check the host name and the port")
        }
        ErrorClass::Certificate if e.presented.is_none() => (
            Field::Security,
            if smtp {
                "no secure connection was made: the security mode probably does not fit this port (implicit TLS is usually 465, STARTTLS 587)"
            } else {
                "no secure connection was made: the security mode probably does not fit this port (implicit TLS is usually 995, STARTTLS 110)"
            },
        ),
        ErrorClass::Temporary => (Field::Again, "the server asked to come back later: testing again may work"),
        ErrorClass::Protocol => (Field::Port, "the server's answers do not fit the protocol: is this the right port?"),
        // The config's own guidance says to run the command again: here the menu is the way.
        ErrorClass::Config => {
            println!("\nWhat to do: change the setting the message names.");
            return None;
        }
        _ => {
            println!("\nWhat to do: {}.", e.guidance());
            return None;
        }
    };
    println!("\nWhy: {why}.");
    Some(field)
}

/// Shows the menu and reads the choice (a number or the entry's word). Enter takes `suggested`;
/// without one, Enter asks again.
fn choose(items: &[(Field, String)], suggested: Option<Field>) -> crate::error::Result<Field> {
    println!("What do you want to change? Everything else stays as it is.");
    for (i, (f, current)) in items.iter().enumerate() {
        println!("  {} {:<9} {current}", i + 1, f.word());
    }
    let default = suggested.and_then(|s| items.iter().position(|(f, _)| *f == s)).map(|i| (i + 1).to_string());
    loop {
        let answer = prompt("Change", default.as_deref())?.to_ascii_lowercase();
        let by_number = answer.parse::<usize>().ok().filter(|n| (1..=items.len()).contains(n)).map(|n| items[n - 1].0);
        if let Some(f) = by_number.or_else(|| items.iter().find(|(f, _)| f.word() == answer).map(|(f, _)| *f)) {
            return Ok(f);
        }
        println!("  Type a number from 1 to {}, or the word next to it.", items.len());
    }
}

fn prompt_host(label: &str, current: &str) -> crate::error::Result<String> {
    loop {
        let h = prompt(label, Some(current))?;
        if !h.chars().any(char::is_whitespace) {
            return Ok(h);
        }
        println!("  A host name has no spaces.");
    }
}

/// A new security mode, and the port for it: the new mode's standard port when the old one was
/// on its own standard port (995 → 110 when implicit becomes starttls), else the port as it was.
fn change_security(
    tls: TlsMode,
    port: u16,
    (implicit_port, starttls_port): (u16, u16),
    label: &str,
) -> crate::error::Result<(TlsMode, u16)> {
    let standard = |t: TlsMode| if t == TlsMode::Implicit { implicit_port } else { starttls_port };
    let new = prompt_tls(label, tls.as_str())?;
    let suggested = if port == standard(tls) { standard(new) } else { port };
    let p = prompt_port("Port", &suggested.to_string())?;
    Ok((new, p))
}

/// Asks the POP password again; Enter keeps the one there was. A typed password replaces a
/// password command.
fn retype_password(
    password: &mut Option<Secret>,
    command: &mut Option<String>,
    label: &str,
) -> crate::error::Result<()> {
    let keep = if password.is_some() || command.is_some() { " (Enter keeps the one there is)" } else { "" };
    let p = prompt_secret(&format!("{label}{keep}"))?;
    if !p.is_empty() {
        *password = Some(p);
        *command = None;
    }
    Ok(())
}

fn retype_smtp_password(password: &mut Option<Secret>, command: &mut Option<String>) -> crate::error::Result<()> {
    let keep = if password.is_some() || command.is_some() {
        " (Enter keeps the one there is)"
    } else {
        " (Enter: the POP password)"
    };
    let p = prompt_secret(&format!("SMTP password{keep}"))?;
    if !p.is_empty() {
        *password = Some(p);
        *command = None;
    }
    Ok(())
}

/// Shows the refused certificate and asks whether to pin it. Only "yes" typed pins it: Enter,
/// "y" or anything else does not (trusting a certificate is never a default).
fn offer_pin(host: &str, port: u16, presented: &Presented) -> crate::error::Result<bool> {
    println!("\nThe certificate that {host}:{port} presented is not trusted by this machine:");
    match CertSummary::from_der(presented.der()) {
        Ok(s) => {
            for l in s.lines(SystemTime::now()) {
                println!("    {l}");
            }
        }
        Err(e) => {
            println!("    ({e})");
            println!("    SHA-256:     {}", format_fingerprint(&presented.fingerprint()));
        }
    }
    println!(
        "Pin it only if you trust this server — best after comparing the SHA-256 fingerprint with the one your provider or the server's administrator gives. A pinned certificate is accepted whatever its issuer, names and dates; if the server's certificate changes, popbridge stops and says so."
    );
    let answer = prompt("Pin this certificate? Type yes to pin it, Enter not to", Some(""))?;
    Ok(answer.eq_ignore_ascii_case("yes"))
}
