//! The TOML file as written by people: plain serde structs, every field optional where the model has a
//! default. Unknown keys are refused (`deny_unknown_fields`) so that a typo is an error, not a silent
//! default. Validation into the model happens in `model.rs`.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub local: Option<RawLocal>,
    #[serde(default)]
    pub account: Vec<RawAccount>,
    pub relay: Option<RawSmtp>,
    pub outbox: Option<RawOutbox>,
    pub limits: Option<super::limits::RawLimits>,
    pub memory: Option<RawMemory>,
}

/// `[memory]`: how much message data the daemon holds at once.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMemory {
    pub budget: Option<toml::Value>,
}

/// `[outbox]`: how the outbound queue retries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    pub retry: Option<Vec<String>>,
    pub give_up_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocal {
    pub imap: Option<String>,
    pub imaps: Option<String>,
    pub submission: Option<String>,
    pub submissions: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_command: Option<String>,
    /// Lets the TLS-only listeners (imaps, submissions) bind a non-loopback address.
    pub allow_non_loopback: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub name: Option<String>,
    pub email: Option<String>,
    pub reply_to: Option<String>,
    pub interval: Option<String>,
    pub save_sent: Option<bool>,
    pub max_messages_per_cycle: Option<i64>,
    pub max_bytes_per_cycle: Option<toml::Value>,
    pub duplicates: Option<String>,
    pub pop: Option<RawPop>,
    pub smtp: Option<RawSmtp>,
    pub oauth: Option<RawOAuth>,
    pub deliver: Option<RawDeliver>,
}

/// `[account.oauth]`: the OAuth 2 client popbridge signs in as (with `auth = "oauth2"`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub provider: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_command: Option<String>,
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub device_authorization_url: Option<String>,
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPop {
    pub host: Option<String>,
    pub port: Option<i64>,
    pub tls: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_command: Option<String>,
    pub auth: Option<String>,
    pub delete: Option<String>,
    pub ca_file: Option<String>,
    pub pin_sha256: Option<String>,
    pub allow_plain: Option<bool>,
    pub max_message_size: Option<toml::Value>,
    pub timeout: Option<String>,
    pub first_import: Option<String>,
    /// `"auto"` (default) or `"off"`: lock step even when the server offers PIPELINING.
    pub pipelining: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub host: Option<String>,
    pub port: Option<i64>,
    pub tls: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_command: Option<String>,
    pub ca_file: Option<String>,
    pub pin_sha256: Option<String>,
    pub relay: Option<bool>,
    pub allow_plain: Option<bool>,
    pub timeout: Option<String>,
}

/// `[account.deliver]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeliver {
    /// `"127.0.0.1:24"`, `"[::1]:24"`, `"lmtp.example.org:24"` or `"unix:/run/dovecot/lmtp"`.
    pub lmtp: Option<String>,
    /// The LMTP `RCPT TO` address.
    pub recipient: Option<String>,
    /// `"imaps://mail.example.org:993"` (TLS from the first byte, verified as for POP), or
    /// `"imap://127.0.0.1:143"` (plain: loopback only).
    pub imap: Option<String>,
    pub user: Option<String>,
    /// `"starttls"` or `"plain"` for an `imap://` URL (default: STARTTLS, plain to loopback).
    pub tls: Option<String>,
    /// `"password"` (default), `"xoauth2"` (`password_command` prints an access token) or
    /// `"oauth2"` (the account's own grant).
    pub auth: Option<String>,
    pub password: Option<String>,
    pub password_command: Option<String>,
    /// The IMAP mailbox (default INBOX).
    pub mailbox: Option<String>,
    pub ca_file: Option<String>,
    pub pin_sha256: Option<String>,
    pub timeout: Option<String>,
}
