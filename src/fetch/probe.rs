//! `account test`: log in, look around, change nothing. Reports what the server offers
//! (capabilities, TLS and how its certificate was trusted) and whether its UIDLs are usable.

use std::collections::HashMap;

use crate::config::{Account, TlsMode};
use crate::error::{Error, ErrorClass, Result};
use crate::pop3::{self, Body, Capabilities, Command, Status};

use super::session::Session;

pub struct Probe {
    pub greeting: String,
    pub tls: Option<(String, Option<[u8; 32]>)>,
    pub caps_before: Option<Capabilities>,
    pub caps: Option<Capabilities>,
    pub auth_used: &'static str,
    pub messages: u64,
    pub bytes: u64,
    pub uidl: bool,
    pub uidl_missing: usize,
    pub uidl_duplicates: usize,
    /// Every UIDL is its message number: the server reuses them (identities are then checked
    /// by their headers before anything is skipped or deleted).
    pub uidl_numbers: bool,
    /// The server accepted RFC 6856's UTF8.
    pub utf8: bool,
    /// With `first_import` set: what a bounded first import would download now (messages, bytes).
    pub first_import: Option<(u64, u64)>,
}

/// `oauth_dir`: the token files (`Paths::oauth_dir`), for an `auth = "oauth2"` account.
pub async fn probe(
    config_path: &std::path::Path,
    config_mode: u32,
    oauth_dir: &std::path::Path,
    account: &Account,
) -> Result<Probe> {
    let label = format!("account \"{}\"", account.name);
    let run = async {
        let secrets = super::session::Secrets { config_path, config_mode, oauth_dir };
        let s = super::session::login(&secrets, account).await?;
        let Session { mut conn, caps, caps_before, greeting, upstream, auth_used, utf8 } = s;
        let tls = match (account.pop.tls, &upstream) {
            (TlsMode::Plain, _) | (_, None) => None,
            (_, Some(up)) => Some((up.trust.describe().to_string(), up.seen.lock().ok().and_then(|s| s.fingerprint))),
        };
        let stat = conn.call(&Command::Stat).await?;
        let (messages, bytes) = match stat.status {
            Status::Ok => pop3::parse_stat(&stat.text).map(|(n, b)| (u64::from(n), b)).unwrap_or((0, 0)),
            _ => {
                return Err(Error::new(ErrorClass::Protocol, format!("{} refused STAT: \"{}\"", conn.host, stat.text)));
            }
        };
        let list = conn.call(&Command::List(None)).await?;
        let listed: Vec<u32> = match (list.status, list.body) {
            (Status::Ok, Body::Data(b)) => pop3::parse_list(&b)
                .map_err(|e| Error::new(ErrorClass::Protocol, format!("{} sent a broken LIST: {e}", conn.host)))?
                .into_iter()
                .map(|(n, _)| n)
                .collect(),
            _ => {
                return Err(Error::new(ErrorClass::Protocol, format!("{} refused LIST: \"{}\"", conn.host, list.text)));
            }
        };
        let u = conn.call(&Command::Uidl(None)).await?;
        let (uidl, uidl_missing, uidl_duplicates, uidl_numbers) = match (u.status, u.body) {
            (Status::Ok, Body::Data(b)) => {
                let ids = pop3::parse_uidl(&b).map_err(|e| {
                    Error::new(ErrorClass::Protocol, format!("{} sent a broken UIDL listing: {e}", conn.host))
                })?;
                let mut count: HashMap<&str, usize> = HashMap::new();
                for (_, id) in &ids {
                    *count.entry(id.as_str()).or_default() += 1;
                }
                let have: std::collections::HashSet<u32> = ids.iter().map(|(n, _)| *n).collect();
                let missing = listed.iter().filter(|n| !have.contains(n)).count();
                let dups = count.values().filter(|c| **c > 1).sum();
                let numbers = !ids.is_empty() && ids.iter().all(|(n, id)| *id == n.to_string());
                (true, missing, dups, numbers)
            }
            _ => (false, listed.len(), 0, false),
        };
        // What a bounded first import would download: the fetcher's own listing and choice (TOP
        // for `since:`), changing nothing.
        let first_import = match account.pop.first_import {
            Some(f) => {
                let pipelining = caps.as_ref().is_some_and(|c| c.pipelining);
                let window = if pipelining { super::WINDOW } else { 1 };
                let listed = super::listing(&mut conn, pipelining, &mut super::Report::default()).await?;
                let choice = super::bounded::choose(&mut conn, &listed, f, window, false).await?;
                Some(choice.download(&listed))
            }
            None => None,
        };
        let _ = conn.call(&Command::Quit).await;
        Ok(Probe {
            first_import,
            greeting,
            tls,
            caps_before,
            caps,
            auth_used,
            messages,
            bytes,
            uidl,
            uidl_missing,
            uidl_duplicates,
            uidl_numbers,
            utf8,
        })
    };
    run.await.map_err(|e: Error| e.context(&label))
}
