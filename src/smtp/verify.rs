//! Address verification by emailed code (the seed: a Reply-To, or a sender that the outgoing server
//! cannot vouch for, must be confirmed before use). `verify send` mails a random code through the
//! account's outgoing path; `verify confirm` checks it; a verification mail that comes back through
//! a POP fetch confirms itself (its header carries the code: whoever reads that mailbox has proved
//! the address is theirs).

use crate::config::{Account, Config, SmtpServer};
use crate::error::{Error, ErrorClass, Result};
use crate::store::Store;
use crate::store::outbox::CodeCheck;

/// Codes are valid this long.
pub const CODE_LIFETIME: i64 = 24 * 3600;

/// The account an address may be verified for: an account's Reply-To, or the address of an account
/// that sends through the shared relay.
pub fn account_for<'a>(cfg: &'a Config, address: &str) -> Result<&'a Account> {
    cfg.accounts
        .iter()
        .find(|a| a.reply_to.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(address)))
        .or_else(|| {
            cfg.accounts
                .iter()
                .find(|a| a.email.eq_ignore_ascii_case(address) && a.smtp.as_ref().is_some_and(|s| s.relay))
        })
        .ok_or_else(|| {
            Error::config(format!(
                "{address} is neither an account's reply_to nor the address of an account that sends through [relay]; nothing to verify"
            ))
        })
}

/// An 8-digit code from the system's random generator.
pub fn new_code() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| Error::other("the system random generator failed"))?;
    Ok(format!("{:08}", u64::from_le_bytes(b) % 100_000_000))
}

/// The server an account's verification mail goes through.
pub fn outgoing<'a>(cfg: &'a Config, account: &'a Account) -> Result<&'a SmtpServer> {
    match &account.smtp {
        Some(s) if s.relay => cfg
            .relay
            .as_ref()
            .ok_or_else(|| Error::config("account sends through [relay], but [relay] is not configured")),
        Some(s) => Ok(s),
        None => Err(Error::config(format!("account {} has no outgoing server ([account.smtp])", account.name))),
    }
}

/// Starts a verification: stores the code and mails it. The mail is sent directly (not queued) so
/// the user learns at once whether it left.
/// `oauth_dir`: the token files (`Paths::oauth_dir`), for an account whose SMTP login is its grant.
pub async fn send(
    cfg: &Config,
    store: &std::sync::Arc<Store>,
    oauth_dir: &std::path::Path,
    address: &str,
) -> Result<String> {
    let account = account_for(cfg, address)?.clone();
    let server = outgoing(cfg, &account)?.clone();
    let code = new_code()?;
    let msg = super::notice::verification(address, &code, &account.name);
    let login = crate::oauth::smtp_credential(&cfg.path, cfg.mode, oauth_dir, &account, &server).await?;
    {
        let (s, a, n, c) = (store.clone(), address.to_string(), account.name.clone(), code.clone());
        tokio::task::spawn_blocking(move || s.verification_start(&a, &n, &c, crate::store::now() + CODE_LIFETIME))
            .await
            .map_err(|e| Error::other(e.to_string()))??;
    }
    match super::upstream::deliver(&server, login.as_ref(), "localhost", address, &[address.to_string()], &msg).await {
        Ok(d) if d.rejected.is_empty() => Ok(account.name),
        Ok(d) => Err(Error::new(
            ErrorClass::Temporary,
            format!(
                "{}:{} refused {address}: {}",
                server.host,
                server.port,
                d.rejected.iter().map(|r| format!("{} {}", r.code, r.text)).collect::<Vec<_>>().join("; ")
            ),
        )),
        Err(f) => Err(f.error),
    }
}

/// Checks a code typed by the user.
pub fn confirm(store: &Store, address: &str, code: &str) -> Result<()> {
    match store.verification_check(address, code)? {
        CodeCheck::Verified => Ok(()),
        CodeCheck::Wrong { tries_left } => Err(Error::config(format!(
            "wrong code for {address}; {tries_left} tries left (then start again with `popbridge verify send {address}`)"
        ))),
        CodeCheck::Expired => Err(Error::config(format!(
            "the code for {address} has expired: `popbridge verify send {address}` sends a new one"
        ))),
        CodeCheck::TooManyTries => Err(Error::config(format!(
            "too many wrong codes for {address}: `popbridge verify send {address}` sends a new one"
        ))),
        CodeCheck::NotPending => Err(Error::config(format!(
            "no verification is pending for {address}: start one with `popbridge verify send {address}`"
        ))),
    }
}
