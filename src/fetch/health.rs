//! Account health in the mail client: when an account is disabled, or has failed for over an hour,
//! one notice goes to the local INBOX (what happened, the error class, what to do, and the exact
//! command) and connected IMAP sessions get an `[ALERT]`. When it recovers, one short notice.

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use tokio::sync::broadcast;

use super::{Context, blocking};
use crate::config::Account;
use crate::error::ErrorClass;
use crate::notice::NOTICE_FROM;
use crate::store::accounts::Health;
use crate::store::now;

/// A failing streak this long gets a notice in INBOX.
pub const NOTICE_AFTER: i64 = 3600;

/// What to tell the user, if anything, given the account's health and what was told before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Disabled,
    Failing,
    Recovered,
}

pub fn decide(h: &Health) -> Option<Notice> {
    match (h.state.as_str(), h.notified.as_str()) {
        ("disabled", n) if n != "disabled" => Some(Notice::Disabled),
        ("backoff", "none") if h.failing_since.is_some_and(|t| now() - t >= NOTICE_AFTER) => Some(Notice::Failing),
        ("active", "disabled" | "backoff") => Some(Notice::Recovered),
        _ => None,
    }
}

/// The exact command (or edit) that fixes the account, by error class (and, for a disabled
/// account, why it was disabled).
fn remedy(account: &Account, class: Option<ErrorClass>, disabled_reason: Option<&str>) -> String {
    let n = &account.name;
    let quoted =
        if n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) { n.clone() } else { format!("'{n}'") };
    let oauth = account.pop.auth == crate::config::AuthMethod::OAuth2;
    if disabled_reason == Some(crate::oauth::DISABLED_REASON) || (oauth && class == Some(ErrorClass::Authentication)) {
        return format!(
            "Sign in again with:\n\n    {}\n\n(add --device on a machine without a browser). Then the account is enabled again and fetched at once.",
            crate::oauth::remedy_command(n)
        );
    }
    match class {
        Some(ErrorClass::Authentication) => format!(
            "Update the password with:\n\n    popbridge account set-password {quoted}\n\nThen the account is enabled again and fetched at once."
        ),
        Some(ErrorClass::Certificate) => format!(
            "See the certificate with:\n\n    popbridge account test {quoted}\n\nIf you trust it, add its fingerprint as pin_sha256 (or your CA as ca_file) in the account's [account.pop] section, then reload: systemctl --user reload popbridge"
        ),
        Some(ErrorClass::Connection) => format!(
            "Check the server name and port with your provider; test with:\n\n    popbridge account test {quoted}"
        ),
        _ => format!("Test the account with:\n\n    popbridge account test {quoted}"),
    }
}

pub fn notice_message(account: &Account, h: &Health, what: Notice) -> (String, Vec<u8>) {
    let class = h.error_class.as_deref().and_then(ErrorClass::parse);
    // An OAuth 2 account has no password to check: its credential is the sign-in.
    let oauth = account.pop.auth == crate::config::AuthMethod::OAuth2;
    let guidance = match class {
        Some(ErrorClass::Authentication) if oauth => {
            "sign in again with OAuth 2: the provider revoked or expired the grant (a changed password, a removed app consent, an administrator's policy) or the server refused the access token"
        }
        Some(c) => c.guidance(),
        None => "see the error above",
    };
    let error = h.error_message.clone().unwrap_or_default();
    let (subject, alert, body) = match what {
        Notice::Disabled => {
            let oauth_why = format!(
                "the provider no longer accepts its OAuth 2 sign-in (revoked, expired or never completed); run `{}`",
                crate::oauth::remedy_command(&account.name)
            );
            let why = match h.disabled_reason.as_deref() {
                Some("authentication") if account.pop.auth == crate::config::AuthMethod::OAuth2 => {
                    "the server rejected its OAuth 2 access token three times in a row"
                }
                Some("authentication") => "the server rejected the password three times in a row",
                Some("certificate") => "the server's certificate cannot be trusted",
                Some(r) if r == crate::oauth::DISABLED_REASON => oauth_why.as_str(),
                _ => "it failed in a way that needs you",
            };
            (
                format!("popbridge: account {} is disabled", account.name),
                format!("account {} is disabled: {why}", account.name),
                format!(
                    "popbridge stopped fetching account {} because {why}.\n\nThe error ({}): {error}\n\nWhat to do: {}\n\n{}\n\nNothing was lost: mail already fetched is in the folder \"{}\", and nothing was deleted from the server.\n",
                    account.name,
                    class.map(|c| c.as_str()).unwrap_or("unknown"),
                    guidance,
                    remedy(account, class, h.disabled_reason.as_deref()),
                    account.name
                ),
            )
        }
        Notice::Failing => (
            format!("popbridge: account {} cannot fetch mail", account.name),
            format!("account {} has been failing for over an hour: {error}", account.name),
            format!(
                "popbridge has not been able to fetch account {} for over an hour. It keeps trying (at most an hour apart).\n\nThe error ({}): {error}\n\nWhat to do: {}\n\n{}\n",
                account.name,
                class.map(|c| c.as_str()).unwrap_or("unknown"),
                guidance,
                remedy(account, class, None)
            ),
        ),
        Notice::Recovered => (
            format!("popbridge: account {} works again", account.name),
            format!("account {} works again", account.name),
            format!("Account {} is fetching mail normally again.\n", account.name),
        ),
    };
    let msg = MessageBuilder::new()
        .from(Address::new_address(Some(NOTICE_FROM.0), NOTICE_FROM.1))
        .to(Address::new_address(None::<&str>, account.email.as_str()))
        .subject(subject)
        .header("Auto-Submitted", mail_builder::headers::raw::Raw::new("auto-generated"))
        .text_body(body)
        .write_to_vec()
        .unwrap_or_default();
    (alert, msg)
}

/// After each cycle: write the notice the account's health calls for, once, and alert sessions.
pub async fn after_cycle(ctx: &Context, account: &Account, id: i64, alerts: &broadcast::Sender<String>) {
    let store = ctx.store.clone();
    let Ok(h) = blocking(move || store.health(id)).await else { return };
    let Some(what) = decide(&h) else { return };
    let (alert, msg) = notice_message(account, &h, what);
    let state = match what {
        Notice::Disabled => "disabled",
        Notice::Failing => "backoff",
        Notice::Recovered => "none",
    };
    let store = ctx.store.clone();
    let delivered = blocking(move || {
        store.deliver_local("INBOX", &msg, 0)?;
        store.set_notified(id, state)
    })
    .await;
    if delivered.is_ok() {
        let _ = alerts.send(alert);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(state: &str, notified: &str, failing_for: Option<i64>) -> Health {
        Health {
            state: state.into(),
            last_attempt: Some(now()),
            last_fetch: None,
            consecutive_failures: 3,
            failing_since: failing_for.map(|d| now() - d),
            notified: notified.into(),
            login_delay: None,
            error_class: Some("authentication".into()),
            error_message: Some("pop.example rejected the password".into()),
            disabled_reason: Some("authentication".into()),
        }
    }

    #[test]
    fn notices_are_written_once_per_change() {
        assert_eq!(decide(&health("disabled", "none", Some(10))), Some(Notice::Disabled));
        assert_eq!(decide(&health("disabled", "disabled", Some(10))), None);
        assert_eq!(decide(&health("backoff", "none", Some(10))), None, "not before an hour");
        assert_eq!(decide(&health("backoff", "none", Some(3700))), Some(Notice::Failing));
        assert_eq!(decide(&health("backoff", "backoff", Some(9000))), None);
        assert_eq!(decide(&health("active", "disabled", None)), Some(Notice::Recovered));
        assert_eq!(decide(&health("active", "none", None)), None);
    }

    #[test]
    fn a_revoked_grant_says_to_sign_in_again() {
        let cfg = crate::config::parse(
            "[[account]]\nname = \"Mail\"\nemail = \"me@example.com\"\n[account.pop]\nhost = \"pop.example\"\nuser = \"me\"\nauth = \"oauth2\"\n[account.oauth]\nprovider = \"google\"\nclient_id = \"x.apps.googleusercontent.com\"\n",
            std::path::Path::new("/tmp/c.toml"),
            0o600,
        )
        .unwrap();
        let mut h = health("disabled", "none", Some(10));
        h.disabled_reason = Some(crate::oauth::DISABLED_REASON.into());
        h.error_message = Some("login.example no longer accepts the sign-in (invalid_grant)".into());
        let (alert, msg) = notice_message(&cfg.accounts[0], &h, Notice::Disabled);
        assert!(alert.contains("run `popbridge account auth Mail`"), "{alert}");
        let parsed = mail_parser::MessageParser::default().parse(&msg).unwrap();
        let text = parsed.body_text(0).unwrap().into_owned();
        assert!(text.contains("popbridge account auth Mail") && text.contains("invalid_grant"), "{text}");
        assert!(!text.contains("set-password"), "no password to set: {text}");
    }
}
