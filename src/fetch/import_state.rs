//! `account import-state`: take over another POP client's record of what it already downloaded
//! (mpop, getmail, fetchmail, Thunderbird: [`formats`]), so that popbridge does not download those
//! messages again.
//!
//! Nothing from the file is trusted blindly (DESIGN §4, "never trust an identifier a server may
//! reuse"): each UIDL is matched against the server's current `UIDL` and `LIST` answers, and only
//! those the server still lists are recorded — with the size LIST gives them now, so that a later
//! fetch that sees another size under that UIDL downloads the message after all — and with its
//! header fingerprint (`TOP n 0`), so that where the server's UIDLs come into doubt later (seen
//! reused, a QUIT unanswered) each is recognised by its headers like popbridge's own. They are recorded
//! as known but not held ([`Origin::Imported`]): popbridge never DELEtes them, under any policy. A
//! server whose UIDLs are its message numbers, or that was seen giving a known UIDL to another
//! message, gets no import: there a UIDL in an old file may name another message today.
//!
//! The import holds the account's fetch lock (`lock`) from before it reads the store until it has
//! recorded, so a fetch cannot run in between; while the daemon fetches the account, it refuses.

pub mod formats;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Account;
use crate::error::{Error, ErrorClass, Result};
use crate::net::pop3::Pop3Conn;
use crate::pop3::{Body, Command, Status};
use crate::store::Store;
use crate::store::accounts::{NotHeld, Origin, Tool};

use super::session::{self, Session};
use super::{Report, blocking, keys, listing, lock};

/// What an import found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// UIDLs from the file the server still lists: popbridge will not download them.
    pub matched: usize,
    /// Of `matched`, recorded by this run (the rest were recorded before, or fetched by
    /// popbridge itself).
    pub recorded: usize,
    /// UIDLs from the file the server no longer lists.
    pub gone: usize,
    /// Messages on the server that popbridge neither holds nor has recorded: the next fetch
    /// downloads them.
    pub new: usize,
    /// Of `new`, messages the tool holds only in part (Thunderbird's too-big ones).
    pub partial: usize,
    /// The other mailboxes the file holds state for (ignored).
    pub others: Vec<String>,
    /// Notes for the user (the server's UIDL quirks, a getmail file for another port).
    pub warnings: Vec<String>,
}

/// The state files of `tool` at `path` that concern `account`: the file itself, or for getmail
/// a directory holding `oldmail-*` files (those named for the account's server and user).
fn files(tool: Tool, path: &Path, mb: &formats::Mailbox<'_>) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    if tool != Tool::Getmail {
        let hint = match tool {
            Tool::Mpop => "its uidls file (uidls_file in ~/.mpoprc; `man mpop` names the default)",
            Tool::Fetchmail => "its .fetchids file",
            _ => "the popstate.dat file in the account's Mail/<server>/ folder",
        };
        return Err(Error::config(format!("{} is a directory: give {hint}", path.display())));
    }
    let entries = std::fs::read_dir(path).map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
    let mut ours = Vec::new();
    let mut seen = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("oldmail-") {
            continue;
        }
        if formats::getmail_file_is_for(&name, mb) {
            ours.push(e.path());
        } else {
            seen.push(name);
        }
    }
    ours.sort();
    if ours.is_empty() {
        seen.sort();
        return Err(Error::config(format!(
            "{} holds no getmail state for {} at {} (looked for {}{})",
            path.display(),
            mb.user,
            mb.host,
            formats::getmail_file_name(mb.host, mb.port, mb.user),
            if seen.is_empty() { String::new() } else { format!("; found {}", seen.join(", ")) }
        )));
    }
    Ok(ours)
}

/// Reads and parses the state, before any connection: a broken file is reported at once.
fn read_state(tool: Tool, path: &Path, mb: &formats::Mailbox<'_>) -> Result<(formats::Parsed, Vec<String>)> {
    let mut all = formats::Parsed::default();
    let mut warnings = Vec::new();
    for f in files(tool, path, mb)? {
        let data = std::fs::read(&f).map_err(|e| Error::config(format!("cannot read {}: {e}", f.display())))?;
        let name = f.display().to_string();
        let p = formats::parse(tool, &name, &data, mb).map_err(|e| Error::config(e.to_string()))?;
        if tool == Tool::Getmail
            && p.others.is_empty()
            && f.file_name()
                .is_some_and(|n| n.to_string_lossy() != formats::getmail_file_name(mb.host, mb.port, mb.user))
        {
            warnings
                .push(format!("{name} is getmail's state for another port of {}: taken as the same mailbox", mb.host));
        }
        all.fetched.extend(p.fetched);
        all.partial.extend(p.partial);
        all.others.extend(p.others);
    }
    Ok((all, warnings))
}

/// The header fingerprint (`keys::header_fingerprint` of `TOP n 0`) of each message, pipelined
/// up to `window` commands; empty for one the server refuses.
pub(super) async fn fingerprints(conn: &mut Pop3Conn, numbers: &[u32], window: usize) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(numbers.len());
    let (mut next, mut waiting) = (0usize, 0usize);
    while out.len() < numbers.len() {
        while next < numbers.len() && waiting < window {
            conn.send(&Command::Top(numbers[next], 0));
            next += 1;
            waiting += 1;
        }
        let r = conn.reply().await?;
        waiting -= 1;
        out.push(match (r.status, r.body) {
            (Status::Ok, Body::Data(head)) => keys::header_fingerprint(&head),
            _ => Vec::new(),
        });
    }
    Ok(out)
}

/// Where the state comes from: the tool, its file, and the server and user as the tool named
/// them, when not as the account does (`None`: the account's host and POP user).
#[derive(Debug, Clone)]
pub struct Source {
    pub tool: Tool,
    pub path: PathBuf,
    pub host: Option<String>,
    pub user: Option<String>,
}

/// Runs `account import-state` for `account`: see the module's doc.
pub async fn import(
    secrets: &session::Secrets<'_>,
    store: Arc<Store>,
    lock_dir: &Path,
    account: &Account,
    source: &Source,
) -> Result<Outcome> {
    let label = format!("account \"{}\"", account.name);
    let tool = source.tool;
    let run = async {
        let (tool_dir, src, acct) = (lock_dir.to_path_buf(), source.clone(), account.clone());
        let (state, mut warnings) = blocking(move || {
            let mb = formats::Mailbox {
                host: src.host.as_deref().unwrap_or(&acct.pop.host),
                port: acct.pop.port,
                user: src.user.as_deref().unwrap_or(&acct.pop.user),
            };
            read_state(src.tool, &src.path, &mb)
        })
        .await?;
        let name = account.name.clone();
        let _lock = match blocking(move || lock::AccountLock::acquire(&tool_dir, &name)).await {
            Ok(l) => l,
            // The lock's own error says who holds it; this one says what to do.
            Err(e) if e.class == ErrorClass::Temporary => {
                return Err(Error::new(
                    ErrorClass::Temporary,
                    format!(
                        "{}; nothing was imported — run the import again once that fetch is over (or with the daemon stopped)",
                        e.message
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        let (s, name, key) = (store.clone(), account.name.clone(), account.pop.mailbox_key());
        let server = blocking(move || {
            let ids = s.ensure_account(&name)?;
            s.pop_server(ids.account, &key)
        })
        .await?;
        if server.reused {
            return Err(Error::config(format!(
                "{} was seen giving a UIDL popbridge knew to another message: a UIDL in another tool's state may name a different message today, so nothing was imported (popbridge recognises each message by its headers on this server)",
                account.pop.host
            )));
        }

        let Session { mut conn, caps, .. } = session::login(secrets, account).await?;
        let pipelining = caps.as_ref().is_some_and(|c| c.pipelining);
        let mut report = Report::default();
        let listed = listing(&mut conn, pipelining, &mut report).await?;
        warnings.extend(report.warnings);

        if !listed.is_empty() && listed.iter().all(|l| l.key.is_none()) {
            return Err(Error::config(format!(
                "{} gives no usable UIDLs, so another tool's UIDLs cannot be matched to its messages: nothing was imported",
                account.pop.host
            )));
        }
        if !listed.is_empty() && listed.iter().all(|l| l.key.as_deref() == Some(l.n.to_string().as_str())) {
            return Err(Error::config(format!(
                "{}'s UIDLs are its message numbers, which it gives to other messages as mail comes and goes: a UIDL in another tool's state may name a different message today, so nothing was imported",
                account.pop.host
            )));
        }

        // The server's messages by the UIDL as the tool writes it. Two that the tool would write
        // alike (getmail turns '/' into '-') cannot be told apart: neither is matched.
        let mut by_written: HashMap<String, Option<usize>> = HashMap::new();
        for (i, l) in listed.iter().enumerate() {
            if let Some(k) = &l.key {
                by_written.entry(formats::as_written(tool, k)).and_modify(|v| *v = None).or_insert(Some(i));
            }
        }
        let partial: HashSet<&str> = state.partial.iter().map(String::as_str).collect();
        let mut matched: Vec<usize> = Vec::new();
        let mut gone = 0usize;
        let mut seen: HashSet<&str> = HashSet::new();
        for u in &state.fetched {
            if !seen.insert(u.as_str()) || partial.contains(u.as_str()) {
                continue;
            }
            match by_written.get(u) {
                Some(Some(i)) => matched.push(*i),
                Some(None) => {}
                None => gone += 1,
            }
        }
        // Each matched message's headers, so that it can be recognised where the server's UIDLs
        // come into doubt later (the fetcher compares them with `TOP n 0`, as for its own).
        let top = caps.as_ref().is_some_and(|c| c.top);
        let window = if pipelining { super::WINDOW } else { 1 };
        let numbers: Vec<u32> = matched.iter().map(|&i| listed[i].n).collect();
        let prints = if top { fingerprints(&mut conn, &numbers, window).await? } else { Vec::new() };
        // Nothing is changed on the server: a plain QUIT (its answer does not matter).
        let _ = conn.call(&Command::Quit).await;
        let entries: Vec<NotHeld> = matched
            .iter()
            .enumerate()
            .filter_map(|(j, &i)| {
                let uidl = listed[i].key.clone()?;
                let fingerprint = prints.get(j).cloned().unwrap_or_default();
                Some(NotHeld { uidl, list_size: listed[i].size, fingerprint })
            })
            .collect();
        let s = store.clone();
        let done = blocking(move || s.record_not_held(server.id, Origin::Imported(tool), &entries)).await?;
        let s = store.clone();
        let known = blocking(move || s.known_uidls(server.id)).await?;
        let is_new = |l: &&super::Listed| l.key.as_ref().is_none_or(|k| !known.contains_key(k));
        let new = listed.iter().filter(is_new).count();
        let partial_new = listed
            .iter()
            .filter(is_new)
            .filter(|l| l.key.as_ref().is_some_and(|k| partial.contains(formats::as_written(tool, k).as_str())))
            .count();
        Ok(Outcome {
            matched: matched.len(),
            recorded: done.added,
            gone,
            new,
            partial: partial_new,
            others: state.others,
            warnings,
        })
    };
    run.await.map_err(|e: Error| e.context(&label))
}
