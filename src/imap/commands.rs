//! Every command after parsing: which state allows it, what it asks of the store, what it answers.
//! Mailbox commands (RFC 3501 §6.3) and message commands (§6.4) with UIDPLUS, MOVE, UNSELECT,
//! ID, ENABLE, NAMESPACE.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::sync::Arc;

use imap_next::imap_types::{
    command::CommandBody,
    core::{AString, Tag},
    datetime::DateTime,
    fetch::MacroOrMessageDataItemNames,
    flag::{Flag, StoreResponse, StoreType},
    mailbox::{ListMailbox, Mailbox},
    search::SearchKey,
    sequence::{SeqOrUid, Sequence, SequenceSet},
    status::StatusDataItemName,
};

use super::fetch::{Deferred, FetchInput, FetchPlan};
use super::names::{self, DELIMITER, View};
use super::search::{Candidate, Context as SearchContext, SearchQuery};
use super::session::{DbError, DbResult, Flow, Selected, Session, State, expunge_allowed};
use crate::memory;
use crate::mime::Timestamp;
use crate::mime::text::SearchText;
use crate::net::imap::Driver;
use crate::store::imap::{FlagOp, MailboxInfo};
use crate::store::mailbox::{ErrorKind, Reader, uid_ranges};
use crate::store::message::{MessageRow, flag};

/// Flush the output buffer once this much is queued (a long reply streams instead of piling up).
const FLUSH_AT: usize = 256 * 1024;
/// Message rows (flags, sizes: metadata, no bodies) a FETCH loads per store round trip: a few KB
/// per session.
const FETCH_PAGE: usize = 64;
/// Bodies larger than this are never loaded whole by a FETCH: its sections are read from the store
/// in budget-sized chunks, each once the socket took the one before (smaller ones are read whole,
/// which is faster, and packed into one step with their neighbours).
const STREAM_AT: usize = 128 * 1024;

pub async fn dispatch(s: &mut Session, d: &mut Driver, tag: Tag<'static>, body: CommandBody<'static>) -> Flow {
    let expunge_ok = expunge_allowed(&body);
    let selected_before = matches!(s.state, State::Selected { .. });
    let flow = match body {
        CommandBody::Capability => {
            let caps = s.capabilities();
            d.out().extend_from_slice(format!("* CAPABILITY {caps}\r\n").as_bytes());
            s.ok(d, &tag, None, "CAPABILITY completed");
            Flow::Continue
        }
        CommandBody::Noop | CommandBody::Check => {
            // Updates are sent below, as for every command in the selected state.
            s.kick_selected();
            s.ok(d, &tag, None, "completed");
            Flow::Continue
        }
        CommandBody::Logout => {
            d.out().extend_from_slice(b"* BYE logging out\r\n");
            s.ok(d, &tag, None, "LOGOUT completed");
            return Flow::Close;
        }
        CommandBody::Id { .. } => {
            d.out().extend_from_slice(
                format!("* ID (\"name\" \"popbridge\" \"version\" \"{}\")\r\n", env!("CARGO_PKG_VERSION")).as_bytes(),
            );
            s.ok(d, &tag, None, "ID completed");
            Flow::Continue
        }
        CommandBody::StartTLS => {
            // Handled by the session before dispatch when allowed; here it is not.
            s.bad(d, &tag, if s.tls { "TLS is already active" } else { "STARTTLS is not available now" });
            Flow::Continue
        }
        CommandBody::Login { username, password } => {
            let user = username.as_ref().to_vec();
            let pass = password.declassify().as_ref().to_vec();
            return s.cmd_login(d, &tag, &user, &pass).await;
        }
        CommandBody::Authenticate { .. } | CommandBody::Idle => {
            s.bad(d, &tag, "unexpected");
            Flow::Continue
        }
        _ if matches!(s.state, State::NotAuthenticated) => {
            s.no(d, &tag, None, "log in first (LOGIN or AUTHENTICATE)");
            Flow::Continue
        }
        CommandBody::Enable { .. } => {
            // None of the ENABLE-able extensions (CONDSTORE, QRESYNC, UTF8=ACCEPT) is offered.
            d.out().extend_from_slice(b"* ENABLED\r\n");
            s.ok(d, &tag, None, "ENABLE completed");
            Flow::Continue
        }
        CommandBody::Namespace => {
            d.out().extend_from_slice(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
            s.ok(d, &tag, None, "NAMESPACE completed");
            Flow::Continue
        }
        CommandBody::Select { mailbox, .. } => select(s, d, &tag, &mailbox, false).await,
        CommandBody::Examine { mailbox, .. } => select(s, d, &tag, &mailbox, true).await,
        CommandBody::Create { mailbox } => create(s, d, &tag, &mailbox).await,
        CommandBody::Delete { mailbox } => delete(s, d, &tag, &mailbox).await,
        CommandBody::Rename { from, to } => rename(s, d, &tag, &from, &to).await,
        CommandBody::Subscribe { mailbox } => subscribe(s, d, &tag, &mailbox, true).await,
        CommandBody::Unsubscribe { mailbox } => subscribe(s, d, &tag, &mailbox, false).await,
        CommandBody::List { reference, mailbox_wildcard } => {
            list(s, d, &tag, &reference, &mailbox_wildcard, false).await
        }
        CommandBody::Lsub { reference, mailbox_wildcard } => {
            list(s, d, &tag, &reference, &mailbox_wildcard, true).await
        }
        CommandBody::Status { mailbox, item_names } => status(s, d, &tag, &mailbox, &item_names).await,
        CommandBody::Append { mailbox, flags, date, message } => {
            let data = match &message {
                imap_next::imap_types::extensions::binary::LiteralOrLiteral8::Literal(l) => l.data().to_vec(),
                imap_next::imap_types::extensions::binary::LiteralOrLiteral8::Literal8(l) => l.data.to_vec(),
            };
            append(s, d, &tag, &mailbox, &flags, date.as_ref(), data).await
        }
        _ if !matches!(s.state, State::Selected { .. }) => {
            s.no(d, &tag, None, "select a mailbox first");
            Flow::Continue
        }
        CommandBody::Close => close(s, d, &tag, true).await,
        CommandBody::Unselect => close(s, d, &tag, false).await,
        CommandBody::Expunge => expunge(s, d, &tag, None).await,
        CommandBody::ExpungeUid { sequence_set } => expunge(s, d, &tag, Some(&sequence_set)).await,
        CommandBody::Fetch { sequence_set, macro_or_item_names, uid, .. } => {
            fetch(s, d, &tag, &sequence_set, &macro_or_item_names, uid).await
        }
        CommandBody::Store { sequence_set, kind, response, flags, uid, .. } => {
            store(s, d, &tag, &sequence_set, kind, response, &flags, uid).await
        }
        CommandBody::Search { charset, criteria, uid } => {
            let key = if criteria.as_ref().len() == 1 {
                criteria.as_ref()[0].clone()
            } else {
                SearchKey::And(criteria.clone())
            };
            search(s, d, &tag, charset.as_ref(), &key, uid).await
        }
        CommandBody::Copy { sequence_set, mailbox, uid } => copy(s, d, &tag, &sequence_set, &mailbox, uid, false).await,
        CommandBody::Move { sequence_set, mailbox, uid } => copy(s, d, &tag, &sequence_set, &mailbox, uid, true).await,
        _ => {
            s.bad(d, &tag, "command not supported");
            Flow::Continue
        }
    };
    // Every command in the selected state reports what changed meanwhile (RFC 3501 §7). The
    // tagged response is already queued: updates must precede it, so they are spliced in front.
    if matches!(flow, Flow::Continue) && !matches!(s.state, State::NotAuthenticated) {
        let tagged_at = last_line_start(d.out());
        let mut tail = d.out().split_off(tagged_at);
        // Account health alerts go out with the next response (RFC 3501 §7.1.1).
        s.drain_alerts(d);
        if selected_before && matches!(s.state, State::Selected { .. }) && s.refresh(d, expunge_ok).await.is_err() {
            return Flow::Close;
        }
        // FETCH / STORE / SEARCH by sequence number that ran while another session's expunge
        // could not be reported yet (its messages were left out): say so (RFC 5530, as Dovecot).
        if !expunge_ok
            && let State::Selected { mb, .. } = &s.state
            && !mb.pending_expunge.is_empty()
        {
            let ok = format!("{} OK ", tag.as_ref());
            if tail.starts_with(ok.as_bytes()) && tail.get(ok.len()) != Some(&b'[') {
                tail.splice(ok.len()..ok.len(), b"[EXPUNGEISSUED] ".iter().copied());
            }
        }
        d.out().extend_from_slice(&tail);
    }
    if d.pending() > FLUSH_AT && d.flush().await.is_err() {
        return Flow::Close;
    }
    flow
}

/// Start of the last line in the buffer (the tagged response just written).
fn last_line_start(out: &[u8]) -> usize {
    let body = out.strip_suffix(b"\r\n").unwrap_or(out);
    body.iter().rposition(|b| *b == b'\n').map(|p| p + 1).unwrap_or(0)
}

/// The response code for a failed store operation: a full disk is the client's quota (RFC 5530).
fn store_error_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::DiskFull => "OVERQUOTA",
        _ => "SERVERBUG",
    }
}

fn db_no(s: &Session, d: &mut Driver, tag: &Tag<'_>, e: DbError) -> Flow {
    tracing::warn!("imap: store error: {}", e.message);
    s.no(d, tag, Some(store_error_code(e.kind)), &format!("store error: {}", e.message));
    Flow::Continue
}

// ----- names -----

/// The client's name for a mailbox argument, decoded from modified UTF-7 (raw UTF-8 is accepted too).
fn client_name(m: &Mailbox<'_>) -> Option<String> {
    match m {
        Mailbox::Inbox => Some("INBOX".to_string()),
        Mailbox::Other(o) => decode_name(o.inner().as_ref()),
    }
}

fn decode_name(bytes: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(bytes).ok()?;
    if s.is_ascii() { names::decode_mutf7(s) } else { Some(s.to_string()) }
}

/// A name as a quoted IMAP string (modified UTF-7 inside).
fn quoted_name(client: &str) -> String {
    if client == "INBOX" {
        return "INBOX".to_string();
    }
    let enc = names::encode_mutf7(client);
    let mut out = String::with_capacity(enc.len() + 2);
    out.push('"');
    for c in enc.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Resolves a mailbox argument to its store name; creates an account view's special folder on
/// first use (DESIGN §3).
async fn resolve_mailbox(
    s: &mut Session,
    m: &Mailbox<'_>,
    create_special: bool,
) -> DbResult<Option<(String, MailboxInfo)>> {
    let Some(view) = s.view().cloned() else { return Ok(None) };
    let Some(client) = client_name(m) else { return Ok(None) };
    let Some(store_name) = view.to_store(&client) else { return Ok(None) };
    let virt = view.virtual_specials();
    let special =
        (create_special && virt.contains(&store_name)).then(|| view.special_use(&client).map(str::to_string)).flatten();
    let info = s.store().mailbox_named(store_name.clone(), special).await?;
    Ok(info.map(|i| (store_name, i)))
}

// ----- SELECT / EXAMINE -----

async fn select(s: &mut Session, d: &mut Driver, tag: &Tag<'_>, m: &Mailbox<'_>, read_only: bool) -> Flow {
    let view = match &s.state {
        State::Authenticated { view } | State::Selected { view, .. } => view.clone(),
        State::NotAuthenticated => return Flow::Continue,
    };
    // A failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1).
    s.state = State::Authenticated { view: view.clone() };
    let info = match resolve_mailbox(s, m, true).await {
        Ok(Some((_, i))) => i,
        Ok(None) => {
            s.no(d, tag, Some("NONEXISTENT"), "no such mailbox");
            return Flow::Continue;
        }
        Err(e) => return db_no(s, d, tag, e),
    };
    let id = info.id;
    let loaded = s.store().select_mailbox(id, !read_only).await;
    let crate::store::mailbox::Selection { info, mut uids, first_unseen: unseen, recent_floor: floor } = match loaded {
        Ok(x) => x,
        Err(e) => return db_no(s, d, tag, e),
    };
    // Kept for the whole selection, by every session: no slack.
    uids.shrink_to_fit();
    let recent: super::session::UidSet = uids.iter().copied().filter(|u| *u > floor).collect();
    let mb = Selected {
        id,
        name: info.name.clone(),
        read_only,
        uidvalidity: info.uidvalidity,
        uids,
        recent,
        modseq: info.highestmodseq,
        pending_expunge: Vec::new(),
        own_modseqs: Vec::new(),
        account: info.account.clone(),
    };
    let out = d.out();
    out.extend_from_slice(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n");
    if read_only {
        out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] read-only\r\n");
    } else {
        out.extend_from_slice(
            b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] flags and keywords are kept\r\n",
        );
    }
    out.extend_from_slice(format!("* {} EXISTS\r\n* {} RECENT\r\n", mb.uids.len(), mb.recent.len()).as_bytes());
    if let Some(seq) = unseen.and_then(|u| mb.seq_of(u)) {
        out.extend_from_slice(format!("* OK [UNSEEN {seq}] first unseen\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "* OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {}] predicted next UID\r\n",
            info.uidvalidity,
            info.uidnext.max(1)
        )
        .as_bytes(),
    );
    s.state = State::Selected { view, mb };
    s.kick_selected();
    if read_only {
        s.ok(d, tag, Some("READ-ONLY"), "EXAMINE completed");
    } else {
        s.ok(d, tag, Some("READ-WRITE"), "SELECT completed");
    }
    Flow::Continue
}

async fn close(s: &mut Session, d: &mut Driver, tag: &Tag<'_>, expunge: bool) -> Flow {
    let State::Selected { view, mb } = &s.state else { return Flow::Continue };
    let (view, id, ro) = (view.clone(), mb.id, mb.read_only);
    s.state = State::Authenticated { view };
    if expunge && !ro {
        // CLOSE expunges silently (RFC 3501 §6.4.2).
        let r = s.store().expunge_deleted(id, None).await.map(|gone| gone.len());
        match r {
            Ok(n) if n > 0 => s.notify(),
            Ok(_) => {}
            Err(e) => return db_no(s, d, tag, e),
        }
    }
    s.ok(d, tag, None, if expunge { "CLOSE completed" } else { "UNSELECT completed" });
    Flow::Continue
}

// ----- CREATE / DELETE / RENAME / SUBSCRIBE -----

fn protected(info: &MailboxInfo) -> Option<String> {
    info.account.as_ref().map(|a| {
        format!("\"{}\" is where account {a}'s mail arrives; to remove it, remove the account (popbridge account remove {a})", info.name)
    })
}

async fn create(s: &mut Session, d: &mut Driver, tag: &Tag<'_>, m: &Mailbox<'_>) -> Flow {
    let Some(view) = s.view().cloned() else { return Flow::Continue };
    let Some(client) = client_name(m) else {
        s.no(d, tag, Some("CANNOT"), "not a valid mailbox name (modified UTF-7 expected)");
        return Flow::Continue;
    };
    let client = client.trim_end_matches(DELIMITER).to_string();
    if client.eq_ignore_ascii_case("INBOX") {
        s.no(d, tag, Some("ALREADYEXISTS"), "INBOX always exists");
        return Flow::Continue;
    }
    if !names::valid_new_name(&client) {
        s.no(d, tag, Some("CANNOT"), "invalid mailbox name");
        return Flow::Continue;
    }
    let Some(store_name) = view.to_store(&client) else {
        s.no(d, tag, Some("CANNOT"), "invalid mailbox name");
        return Flow::Continue;
    };
    let special =
        view.special_use(&client).filter(|_| view.virtual_specials().contains(&store_name)).map(str::to_string);
    let r = s.store().create_mailbox_tree(store_name, special).await;
    match r {
        Ok(true) => {
            s.notify();
            s.ok(d, tag, None, "CREATE completed");
        }
        Ok(false) => s.no(d, tag, Some("ALREADYEXISTS"), "mailbox already exists"),
        Err(e) => return db_no(s, d, tag, e),
    }
    Flow::Continue
}

async fn delete(s: &mut Session, d: &mut Driver, tag: &Tag<'_>, m: &Mailbox<'_>) -> Flow {
    let info = match resolve_mailbox(s, m, false).await {
        Ok(Some((_, i))) => i,
        Ok(None) => {
            s.no(d, tag, Some("NONEXISTENT"), "no such mailbox");
            return Flow::Continue;
        }
        Err(e) => return db_no(s, d, tag, e),
    };
    if info.name == "INBOX" {
        s.no(d, tag, Some("CANNOT"), "INBOX cannot be deleted");
        return Flow::Continue;
    }
    if let Some(why) = protected(&info) {
        s.no(d, tag, Some("CANNOT"), &why);
        return Flow::Continue;
    }
    let (id, name) = (info.id, info.name.clone());
    let r = s.store().delete_mailbox_leaf(id, name).await;
    match r {
        Ok(true) => {
            if let State::Selected { view, mb } = &s.state
                && mb.id == id
            {
                s.state = State::Authenticated { view: view.clone() };
            }
            s.notify();
            s.ok(d, tag, None, "DELETE completed");
        }
        Ok(false) => s.no(d, tag, Some("INUSE"), "the mailbox has subfolders: delete them first"),
        Err(e) => return db_no(s, d, tag, e),
    }
    Flow::Continue
}

async fn rename(s: &mut Session, d: &mut Driver, tag: &Tag<'_>, from: &Mailbox<'_>, to: &Mailbox<'_>) -> Flow {
    let Some(view) = s.view().cloned() else { return Flow::Continue };
    let info = match resolve_mailbox(s, from, false).await {
        Ok(Some((_, i))) => i,
        Ok(None) => {
            s.no(d, tag, Some("NONEXISTENT"), "no such mailbox");
            return Flow::Continue;
        }
        Err(e) => return db_no(s, d, tag, e),
    };
    if let Some(why) = protected(&info) {
        s.no(d, tag, Some("CANNOT"), &why);
        return Flow::Continue;
    }
    let Some(new_client) = client_name(to).map(|c| c.trim_end_matches(DELIMITER).to_string()) else {
        s.no(d, tag, Some("CANNOT"), "not a valid mailbox name");
        return Flow::Continue;
    };
    let Some(new_name) = view.to_store(&new_client).filter(|_| names::valid_new_name(&new_client)) else {
        s.no(d, tag, Some("CANNOT"), "invalid mailbox name");
        return Flow::Continue;
    };
    if new_name.starts_with(&format!("{}/", info.name)) {
        s.no(d, tag, Some("CANNOT"), "a mailbox cannot be moved below itself");
        return Flow::Continue;
    }
    let (old, id) = (info.name.clone(), info.id);
    let r = s.store().rename_mailbox_tree(id, old, new_name).await;
    match r {
        Ok(true) => {
            s.notify();
            s.ok(d, tag, None, "RENAME completed");
        }
        Ok(false) => s.no(d, tag, Some("ALREADYEXISTS"), "a mailbox with the new name exists"),
        Err(e) => return db_no(s, d, tag, e),
    }
    Flow::Continue
}

async fn subscribe(s: &mut Session, d: &mut Driver, tag: &Tag<'_>, m: &Mailbox<'_>, on: bool) -> Flow {
    match resolve_mailbox(s, m, true).await {
        Ok(Some((name, _))) => match s.store().set_mailbox_subscribed(name, on).await {
            Ok(_) => s.ok(d, tag, None, "completed"),
            Err(e) => return db_no(s, d, tag, e),
        },
        Ok(None) if !on => s.ok(d, tag, None, "completed"),
        Ok(None) => s.no(d, tag, Some("NONEXISTENT"), "no such mailbox"),
        Err(e) => return db_no(s, d, tag, e),
    }
    Flow::Continue
}

// ----- LIST / LSUB / STATUS -----

async fn list(
    s: &mut Session,
    d: &mut Driver,
    tag: &Tag<'_>,
    reference: &Mailbox<'_>,
    pattern: &ListMailbox<'_>,
    lsub: bool,
) -> Flow {
    let Some(view) = s.view().cloned() else { return Flow::Continue };
    let cmd = if lsub { "LSUB" } else { "LIST" };
    let pattern_bytes: &[u8] = match pattern {
        ListMailbox::Token(t) => t.as_ref(),
        ListMailbox::String(st) => st.as_ref(),
    };
    let reference = match reference {
        Mailbox::Inbox => "INBOX".to_string(),
        Mailbox::Other(o) => decode_name(o.inner().as_ref()).unwrap_or_default(),
    };
    let Some(pattern) = decode_name(pattern_bytes) else {
        s.ok(d, tag, None, &format!("{cmd} completed"));
        return Flow::Continue;
    };
    if pattern.is_empty() && !lsub {
        // The hierarchy delimiter and root (RFC 3501 §6.3.8).
        d.out().extend_from_slice(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
        s.ok(d, tag, None, "LIST completed");
        return Flow::Continue;
    }
    let full = format!("{reference}{pattern}");
    let all = match s.store().list_mailboxes().await {
        Ok(a) => a,
        Err(e) => return db_no(s, d, tag, e),
    };
    // (client name, subscribed, special-use from the store)
    let mut shown: Vec<(String, bool, Option<String>)> =
        all.iter().filter_map(|m| view.to_client(&m.name).map(|c| (c, m.subscribed, m.special_use.clone()))).collect();
    for v in view.virtual_specials() {
        if let Some(c) = view.to_client(&v)
            && !shown.iter().any(|(n, _, _)| *n == c)
        {
            shown.push((c, true, None));
        }
    }
    shown.sort_by(|a, b| (a.0 != "INBOX", &a.0).cmp(&(b.0 != "INBOX", &b.0)));
    let names: Vec<String> = shown.iter().map(|x| x.0.clone()).collect();
    let out = d.out();
    for (name, subscribed, special) in &shown {
        if !names::list_match(&full, name) {
            continue;
        }
        if lsub && !subscribed {
            // RFC 3501 §6.3.9: "foo/bar" subscribed, "foo" not, and "%" keeps "foo/bar" from
            // matching: LSUB returns "foo" flagged \Noselect.
            let prefix = format!("{name}{DELIMITER}");
            if full.contains('%')
                && shown.iter().any(|(n, sub, _)| *sub && n.starts_with(&prefix) && !names::list_match(&full, n))
            {
                out.extend_from_slice(format!("* LSUB (\\Noselect) \"/\" {}\r\n", quoted_name(name)).as_bytes());
            }
            continue;
        }
        let has_children = names
            .iter()
            .any(|n| n.len() > name.len() && n.starts_with(name.as_str()) && n[name.len()..].starts_with(DELIMITER));
        let mut attrs = vec![if has_children { "\\HasChildren" } else { "\\HasNoChildren" }.to_string()];
        let su = match view {
            View::Combined => special.clone().filter(|_| !name.contains(DELIMITER)),
            View::Account { .. } => view.special_use(name).map(str::to_string),
        };
        if let Some(su) = su {
            attrs.push(su);
        }
        out.extend_from_slice(format!("* {cmd} ({}) \"/\" {}\r\n", attrs.join(" "), quoted_name(name)).as_bytes());
    }
    s.ok(d, tag, None, &format!("{cmd} completed"));
    Flow::Continue
}

async fn status(s: &mut Session, d: &mut Driver, tag: &Tag<'_>, m: &Mailbox<'_>, items: &[StatusDataItemName]) -> Flow {
    let (client, info) = match resolve_mailbox(s, m, true).await {
        Ok(Some((_, i))) => (client_name(m).unwrap_or_default(), i),
        Ok(None) => {
            s.no(d, tag, Some("NONEXISTENT"), "no such mailbox");
            return Flow::Continue;
        }
        Err(e) => return db_no(s, d, tag, e),
    };
    let id = info.id;
    // Counters come from the mailbox row; only RECENT and DELETED need a query, and only when asked.
    let want_recent = items.contains(&StatusDataItemName::Recent);
    let want_deleted = items.contains(&StatusDataItemName::Deleted);
    let counts = s.store().status_counts(id, want_recent, want_deleted).await;
    let (recent, deleted) = match counts {
        Ok(x) => x,
        Err(e) => return db_no(s, d, tag, e),
    };
    let mut parts = Vec::new();
    for it in items {
        match it {
            StatusDataItemName::Messages => parts.push(format!("MESSAGES {}", info.messages)),
            StatusDataItemName::Recent => parts.push(format!("RECENT {recent}")),
            StatusDataItemName::UidNext => parts.push(format!("UIDNEXT {}", info.uidnext.max(1))),
            StatusDataItemName::UidValidity => parts.push(format!("UIDVALIDITY {}", info.uidvalidity)),
            StatusDataItemName::Unseen => parts.push(format!("UNSEEN {}", info.unseen)),
            StatusDataItemName::Deleted => parts.push(format!("DELETED {deleted}")),
            _ => {}
        }
    }
    let shown = if client.eq_ignore_ascii_case("INBOX") { "INBOX".to_string() } else { client };
    d.out().extend_from_slice(format!("* STATUS {} ({})\r\n", quoted_name(&shown), parts.join(" ")).as_bytes());
    s.ok(d, tag, None, "STATUS completed");
    Flow::Continue
}

// ----- APPEND -----

/// Flags and keywords of a flag list; `\Recent` cannot be stored and is ignored.
fn flag_bits(flags: &[Flag<'_>]) -> (u8, Vec<String>) {
    let mut bits = 0u8;
    let mut kw = Vec::new();
    for f in flags {
        match f {
            Flag::Seen => bits |= flag::SEEN,
            Flag::Answered => bits |= flag::ANSWERED,
            Flag::Flagged => bits |= flag::FLAGGED,
            Flag::Deleted => bits |= flag::DELETED,
            Flag::Draft => bits |= flag::DRAFT,
            Flag::Keyword(a) => kw.push(a.as_ref().to_string()),
            Flag::Extension(_) => {}
        }
    }
    (bits, kw)
}

fn timestamp(dt: &DateTime) -> Timestamp {
    let c = dt.as_ref();
    Timestamp { unix: c.timestamp(), offset_minutes: c.offset().local_minus_utc() / 60 }
}

async fn append(
    s: &mut Session,
    d: &mut Driver,
    tag: &Tag<'_>,
    m: &Mailbox<'_>,
    flags: &[Flag<'_>],
    date: Option<&DateTime>,
    data: Vec<u8>,
) -> Flow {
    let info = match resolve_mailbox(s, m, true).await {
        Ok(Some((_, i))) => i,
        Ok(None) => {
            s.no(d, tag, Some("TRYCREATE"), "no such mailbox");
            return Flow::Continue;
        }
        Err(e) => return db_no(s, d, tag, e),
    };
    let (bits, kw) = flag_bits(flags);
    let date = date.map(timestamp);
    let id = info.id;
    let r = s.store().append_message(id, data, bits, kw, date).await;
    match r {
        Ok((uv, uid)) => {
            s.notify();
            s.ok(d, tag, Some(&format!("APPENDUID {uv} {uid}")), "APPEND completed");
        }
        Err(e) => return db_no(s, d, tag, e),
    }
    Flow::Continue
}

// ----- sequence sets -----

pub enum SetError {
    OutOfRange,
}

/// (sequence number, UID) of the messages a set addresses, ascending. Sequence numbers beyond the
/// mailbox are an error (RFC 3501 §9 seq-number); UIDs not in the mailbox are simply absent, and
/// `n:*` always includes the highest UID (RFC 3501 §6.4.8).
pub fn resolve_set(mb: &Selected, set: &SequenceSet, uid: bool) -> Result<Vec<(u32, u32)>, SetError> {
    let n = mb.uids.len() as u32;
    let mut out = Vec::new();
    if uid {
        let max = mb.max_uid();
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for seq in set.0.as_ref() {
            let v = |x: &SeqOrUid| match x {
                SeqOrUid::Value(v) => v.get(),
                SeqOrUid::Asterisk => max,
            };
            let (a, b) = match seq {
                Sequence::Single(x) => (v(x), v(x)),
                Sequence::Range(x, y) => (v(x).min(v(y)), v(x).max(v(y))),
            };
            ranges.push((a, b));
        }
        // Binary search per range: a client syncing one message at a time (mbsync) must not
        // cost a scan of the whole mailbox per command.
        for (a, b) in &ranges {
            let lo = mb.uids.partition_point(|u| u < a);
            let hi = mb.uids.partition_point(|u| u <= b);
            out.extend((lo..hi).map(|i| (i as u32 + 1, mb.uids[i])));
        }
        if ranges.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        return Ok(out);
    }
    let mut seqs: Vec<u32> = Vec::new();
    for seq in set.0.as_ref() {
        let v = |x: &SeqOrUid| match x {
            SeqOrUid::Value(v) => v.get(),
            SeqOrUid::Asterisk => n,
        };
        let (a, b) = match seq {
            Sequence::Single(x) => (v(x), v(x)),
            Sequence::Range(x, y) => (v(x).min(v(y)), v(x).max(v(y))),
        };
        if a == 0 || b > n {
            return Err(SetError::OutOfRange);
        }
        seqs.extend(a..=b);
    }
    seqs.sort_unstable();
    seqs.dedup();
    for s in seqs {
        out.push((s, mb.uids[s as usize - 1]));
    }
    Ok(out)
}

/// [`resolve_set`] as ranges of positions in `mb.uids` (0-based, ascending, disjoint): what a
/// FETCH walks without holding a list as long as the mailbox.
pub fn resolve_positions(mb: &Selected, set: &SequenceSet, uid: bool) -> Result<Vec<std::ops::Range<usize>>, SetError> {
    let n = mb.uids.len();
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for seq in set.0.as_ref() {
        let v = |x: &SeqOrUid, star: u32| match x {
            SeqOrUid::Value(v) => v.get(),
            SeqOrUid::Asterisk => star,
        };
        let star = if uid { mb.max_uid() } else { n as u32 };
        let (a, b) = match seq {
            Sequence::Single(x) => (v(x, star), v(x, star)),
            Sequence::Range(x, y) => (v(x, star).min(v(y, star)), v(x, star).max(v(y, star))),
        };
        if uid {
            let lo = mb.uids.partition_point(|u| *u < a);
            let hi = mb.uids.partition_point(|u| *u <= b);
            if lo < hi {
                out.push(lo..hi);
            }
        } else {
            if a == 0 || b as usize > n {
                return Err(SetError::OutOfRange);
            }
            out.push(a as usize - 1..b as usize);
        }
    }
    out.sort_by_key(|r| r.start);
    let mut merged: Vec<std::ops::Range<usize>> = Vec::with_capacity(out.len());
    for r in out {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    Ok(merged)
}

/// Ranges in the `1:3,7` form (for COPYUID).
fn set_text(uids: &[u32]) -> String {
    uid_ranges(uids)
        .iter()
        .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}:{b}") })
        .collect::<Vec<_>>()
        .join(",")
}

/// The selected mailbox's id, whether it is read-only, and the (seq, UID) pairs a set addresses.
type Targets = (i64, bool, Vec<(u32, u32)>);

fn targets(s: &Session, set: &SequenceSet, uid: bool) -> Result<Targets, SetError> {
    match &s.state {
        State::Selected { mb, .. } => resolve_set(mb, set, uid).map(|t| (mb.id, mb.read_only, t)),
        _ => Ok((0, true, Vec::new())),
    }
}

// ----- FETCH -----

async fn fetch(
    s: &mut Session,
    d: &mut Driver,
    tag: &Tag<'_>,
    set: &SequenceSet,
    items: &MacroOrMessageDataItemNames<'_>,
    uid: bool,
) -> Flow {
    let plan = match FetchPlan::new(items, uid) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            s.bad(d, tag, &e);
            return Flow::Continue;
        }
    };
    let (id, read_only, targets) = match &s.state {
        State::Selected { mb, .. } => match resolve_positions(mb, set, uid) {
            Ok(t) => (mb.id, mb.read_only, t),
            Err(SetError::OutOfRange) => {
                s.bad(d, tag, "invalid message sequence number");
                return Flow::Continue;
            }
        },
        _ => (0, true, Vec::new()),
    };
    // The messages, as positions in the session's view: `1:*` is one range, not a list.
    let mut targets = targets.into_iter().flatten();
    // Rows are loaded a page at a time; responses are made and sent a step at a time, each step
    // charged to the daemon's memory budget before its bytes are read and given back once they
    // are on the socket (see crate::memory): a FETCH of a whole mailbox holds one page of rows
    // and one step of bytes, and waits when the budget is spent or the client does not read.
    let budget = s.shared.store.budget().clone();
    let mut page: VecDeque<Pending> = VecDeque::new();
    loop {
        if page.is_empty() {
            let chunk: Vec<(u32, u32, bool)> = {
                let State::Selected { mb, .. } = &s.state else { break };
                targets
                    .by_ref()
                    .take(FETCH_PAGE)
                    .filter_map(|i| mb.uids.get(i).map(|u| (i as u32 + 1, *u, mb.recent.contains(u))))
                    .collect()
            };
            if chunk.is_empty() {
                break;
            }
            let plan2 = plan.clone();
            match fetch_page(s, id, read_only, &plan2, &chunk).await {
                Ok((rows, seen_modseq)) => {
                    if let (Some(m), State::Selected { mb, .. }) = (seen_modseq, &mut s.state) {
                        mb.own_modseqs.push(m);
                        s.notify();
                    }
                    page = rows;
                }
                Err(e) => return db_no(s, d, tag, e),
            }
            continue;
        }
        let charge = budget.take(memory::STEP).await;
        let (plan2, work) = (plan.clone(), std::mem::take(&mut page));
        let step = match s.store().read(move |r| fetch_step(r, &plan2, work, memory::STEP)).await {
            Ok(step) => step,
            Err(e) => return db_no(s, d, tag, e),
        };
        page = step.rest;
        let mut bytes = step.bytes;
        if let Some(first) = step.deferred.first() {
            // What precedes the first large section goes out now, and its charge is given back
            // before the section's chunks take theirs (never wait for a charge while holding one).
            let rest = bytes.split_off(first.at);
            d.push(bytes);
            if d.flush().await.is_err() {
                return Flow::Close;
            }
            drop(charge);
            let mut at = first.at;
            bytes = rest;
            for def in &step.deferred {
                d.push(bytes.drain(..def.at - at).collect());
                at = def.at;
                if stream_section(s, d, &budget, step.body, def.range.clone()).await.is_err() {
                    return Flow::Close;
                }
            }
            d.push(bytes);
        } else {
            d.push(bytes);
            if d.flush().await.is_err() {
                return Flow::Close;
            }
            drop(charge);
        }
    }
    s.ok(d, tag, None, "FETCH completed");
    Flow::Continue
}

/// One message a FETCH still has to answer: its row as loaded (None: expunged meanwhile).
struct Pending {
    seq: u32,
    recent: bool,
    row: Option<MessageRow>,
    /// This FETCH set `\Seen` on it.
    seen_changed: bool,
}

/// Loads the rows of a page of targets, and sets `\Seen` on those the plan reads (unless
/// read-only). Returns the page in target order and the MODSEQ of the implicit `\Seen` update.
async fn fetch_page(
    s: &Session,
    id: i64,
    read_only: bool,
    plan: &FetchPlan,
    chunk: &[(u32, u32, bool)],
) -> DbResult<(VecDeque<Pending>, Option<u64>)> {
    let uids: Vec<u32> = chunk.iter().map(|x| x.1).collect();
    let got = s.store().fetch_rows(id, uid_ranges(&uids), plan.sets_seen() && !read_only).await?;
    let rows = got.rows;
    let page = chunk
        .iter()
        .map(|&(seq, uid, recent)| Pending {
            seq,
            recent,
            row: rows.binary_search_by_key(&uid, |r| r.uid).ok().map(|i| rows[i].clone()),
            seen_changed: got.newly_seen.binary_search(&uid).is_ok(),
        })
        .collect();
    Ok((page, got.seen_modseq))
}

/// What one FETCH step produced: encoded responses, and — when its last message is large — the
/// sections of that message's body the caller streams itself (`deferred`, in `body`).
struct Step {
    bytes: Vec<u8>,
    rest: VecDeque<Pending>,
    body: i64,
    deferred: Vec<Deferred>,
}

/// Encodes the responses of the next messages of `work`, as many as fit in `allowance` bytes (at
/// least one). A message whose body is larger than [`STREAM_AT`] ends the step: its large sections
/// are left for the caller to stream from the store.
fn fetch_step(c: &Reader<'_>, plan: &FetchPlan, mut work: VecDeque<Pending>, allowance: usize) -> DbResult<Step> {
    let mut out = Vec::new();
    while let Some(p) = work.front() {
        let Some(row) = &p.row else {
            work.pop_front();
            continue;
        };
        let stored = plan.needs_raw() && row.size as usize > STREAM_AT;
        // Framing and small items; a body read whole counts in full.
        let estimate = 1024 + if plan.needs_raw() && !stored { row.size as usize } else { 0 };
        if !out.is_empty() && out.len() + estimate > allowance {
            break;
        }
        let Some(Pending { seq, recent, row: Some(row), seen_changed }) = work.pop_front() else { continue };
        let meta = if plan.needs_meta() || stored { c.meta(row.body_id)? } else { None };
        if stored {
            let body = row.body_id;
            let input = FetchInput { seq, row: &row, recent, meta: meta.as_ref(), raw: None, seen_changed };
            let mut read = |r: std::ops::Range<usize>| c.raw_range(body, r).ok().flatten().unwrap_or_default();
            let mut deferred = Vec::new();
            super::fetch::encode_stored(plan, &input, row.size as usize, &mut read, STREAM_AT, &mut out, &mut deferred);
            if !deferred.is_empty() {
                return Ok(Step { bytes: out, rest: work, body, deferred });
            }
        } else {
            let raw = if plan.needs_raw() { c.raw(row.body_id)? } else { None };
            let input = FetchInput { seq, row: &row, recent, meta: meta.as_ref(), raw: raw.as_deref(), seen_changed };
            super::fetch::encode(plan, &input, &mut out);
        }
        if out.len() >= allowance {
            break;
        }
    }
    Ok(Step { bytes: out, rest: work, body: 0, deferred: Vec::new() })
}

/// Sends bytes `range` of a stored body as literal data, one budgeted chunk at a time, each read
/// from the store once the previous one is on the socket. NUL goes out as 0x80 (see
/// `fetch::write_literal`). Err: the connection must close — the literal's length is promised,
/// and the body could not be read (expunged and purged meanwhile) or the client is gone.
async fn stream_section(
    s: &mut Session,
    d: &mut Driver,
    budget: &memory::Budget,
    body: i64,
    range: std::ops::Range<usize>,
) -> Result<(), ()> {
    let mut pos = range.start;
    while pos < range.end {
        let n = memory::STEP.min(range.end - pos);
        let charge = budget.take(n).await;
        let r = s.store().body_range(body, pos..pos + n).await;
        let mut chunk = match r {
            Ok(Some(chunk)) if chunk.len() == n => chunk,
            other => {
                tracing::warn!("imap: body {body} could not be read while sending it ({:?}): closing", other.err());
                return Err(());
            }
        };
        if let Some(first) = memchr::memchr(0, &chunk) {
            chunk[first..].iter_mut().filter(|b| **b == 0).for_each(|b| *b = 0x80);
        }
        d.push(chunk);
        d.flush().await.map_err(|_| ())?;
        drop(charge);
        pos += n;
    }
    Ok(())
}

// ----- STORE -----

#[allow(clippy::too_many_arguments)]
async fn store(
    s: &mut Session,
    d: &mut Driver,
    tag: &Tag<'_>,
    set: &SequenceSet,
    kind: StoreType,
    response: StoreResponse,
    flags: &[Flag<'_>],
    uid: bool,
) -> Flow {
    let (id, read_only, targets) = match targets(s, set, uid) {
        Ok(t) => t,
        Err(SetError::OutOfRange) => {
            s.bad(d, tag, "invalid message sequence number");
            return Flow::Continue;
        }
    };
    if read_only {
        s.no(d, tag, Some("READ-ONLY"), "the mailbox is read-only (EXAMINE)");
        return Flow::Continue;
    }
    let op = match kind {
        StoreType::Replace => FlagOp::Replace,
        StoreType::Add => FlagOp::Add,
        StoreType::Remove => FlagOp::Remove,
    };
    let (bits, kw) = flag_bits(flags);
    let uids: Vec<u32> = targets.iter().map(|t| t.1).collect();
    let ranges = uid_ranges(&uids);
    let r = s.store().store_flags(id, ranges, op, bits, kw).await;
    let (rows, changed) = match r {
        Ok(x) => x,
        Err(e) => return db_no(s, d, tag, e),
    };
    let State::Selected { mb, .. } = &mut s.state else { return Flow::Continue };
    if let Some(m) = rows.iter().map(|r| r.modseq).max() {
        mb.own_modseqs.push(m);
    }
    if matches!(response, StoreResponse::Answer) {
        let out = d.out();
        for r in &rows {
            let Some(seq) = mb.seq_of(r.uid) else { continue };
            let mut line = format!("* {seq} FETCH (").into_bytes();
            if uid {
                line.extend_from_slice(format!("UID {} ", r.uid).as_bytes());
            }
            line.extend_from_slice(b"FLAGS ");
            super::fetch::write_flags(r.flags, &r.keywords, mb.recent.contains(&r.uid), &mut line);
            line.extend_from_slice(b")\r\n");
            out.extend_from_slice(&line);
        }
    }
    if changed > 0 {
        s.notify();
    }
    s.ok(d, tag, None, "STORE completed");
    Flow::Continue
}

// ----- COPY / MOVE -----

#[allow(clippy::too_many_arguments)]
async fn copy(
    s: &mut Session,
    d: &mut Driver,
    tag: &Tag<'_>,
    set: &SequenceSet,
    m: &Mailbox<'_>,
    uid: bool,
    mv: bool,
) -> Flow {
    let (src, read_only, targets) = match targets(s, set, uid) {
        Ok(t) => t,
        Err(SetError::OutOfRange) => {
            s.bad(d, tag, "invalid message sequence number");
            return Flow::Continue;
        }
    };
    if mv && read_only {
        s.no(d, tag, Some("READ-ONLY"), "the mailbox is read-only (EXAMINE)");
        return Flow::Continue;
    }
    let dst = match resolve_mailbox(s, m, true).await {
        Ok(Some((_, i))) => i,
        Ok(None) => {
            s.no(d, tag, Some("TRYCREATE"), "no such mailbox");
            return Flow::Continue;
        }
        Err(e) => return db_no(s, d, tag, e),
    };
    let uids: Vec<u32> = targets.iter().map(|t| t.1).collect();
    let ranges = uid_ranges(&uids);
    let dst_id = dst.id;
    let r = s.store().copy_messages(src, ranges, dst_id, mv).await;
    let (pairs, moved) = match r {
        Ok(x) => x,
        Err(e) => return db_no(s, d, tag, e),
    };
    if !pairs.is_empty() {
        s.notify();
    }
    let code = if pairs.is_empty() {
        None
    } else {
        let from: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let to: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        Some(format!("COPYUID {} {} {}", dst.uidvalidity, set_text(&from), set_text(&to)))
    };
    if mv {
        // RFC 6851: COPYUID in an untagged OK before the EXPUNGEs.
        if let Some(c) = &code {
            d.out().extend_from_slice(format!("* OK [{c}] moved\r\n").as_bytes());
        }
        if let State::Selected { mb, .. } = &mut s.state {
            let out = d.out();
            for u in moved {
                if let Ok(i) = mb.uids.binary_search(&u) {
                    mb.uids.remove(i);
                    mb.recent.remove(&u);
                    out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                }
            }
        }
        s.ok(d, tag, None, "MOVE completed");
    } else {
        s.ok(d, tag, code.as_deref(), "COPY completed");
    }
    Flow::Continue
}

// ----- EXPUNGE -----

async fn expunge(s: &mut Session, d: &mut Driver, tag: &Tag<'_>, set: Option<&SequenceSet>) -> Flow {
    let State::Selected { mb, .. } = &s.state else { return Flow::Continue };
    if mb.read_only {
        s.no(d, tag, Some("READ-ONLY"), "the mailbox is read-only (EXAMINE)");
        return Flow::Continue;
    }
    let id = mb.id;
    let only = match set {
        Some(set) => match resolve_set(mb, set, true) {
            Ok(t) => Some(uid_ranges(&t.iter().map(|x| x.1).collect::<Vec<_>>())),
            Err(_) => Some(Vec::new()),
        },
        None => None,
    };
    if only.as_ref().is_some_and(|o| o.is_empty()) {
        s.ok(d, tag, None, "EXPUNGE completed");
        return Flow::Continue;
    }
    let r = s.store().expunge_deleted(id, only).await;
    let gone = match r {
        Ok(g) => g,
        Err(e) => return db_no(s, d, tag, e),
    };
    if let State::Selected { mb, .. } = &mut s.state {
        let out = d.out();
        for u in &gone {
            if let Ok(i) = mb.uids.binary_search(u) {
                mb.uids.remove(i);
                mb.recent.remove(u);
                out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
            }
        }
    }
    if !gone.is_empty() {
        s.notify();
    }
    s.ok(d, tag, None, "EXPUNGE completed");
    Flow::Continue
}

// ----- SEARCH -----

async fn search(
    s: &mut Session,
    d: &mut Driver,
    tag: &Tag<'_>,
    charset: Option<&imap_next::imap_types::core::Charset<'_>>,
    key: &SearchKey<'_>,
    uid: bool,
) -> Flow {
    let query = match SearchQuery::new(key, charset) {
        Ok(q) => Arc::new(q),
        Err(e) => {
            match e {
                super::search::SearchError::BadCharset => {
                    s.no(d, tag, Some("BADCHARSET (UTF-8 US-ASCII)"), "supported charsets: UTF-8, US-ASCII")
                }
                super::search::SearchError::Unsupported => s.bad(d, tag, "search key not supported"),
                other => s.bad(d, tag, &other.to_string()),
            }
            return Flow::Continue;
        }
    };
    let State::Selected { mb, .. } = &s.state else { return Flow::Continue };
    let (id, uids, recent) = (mb.id, mb.uids.clone(), mb.recent.clone());
    let r = s
        .store()
        .read(move |c| {
            if let Some((mask, want)) = query.flags_only() {
                // Decided by the flags alone: UIDs straight from the (indexed) flags column.
                let hits = c.uids_with_flags(id, mask, want)?;
                return Ok(hits
                    .into_iter()
                    .filter_map(|u| uids.binary_search(&u).ok().map(|i| if uid { u } else { i as u32 + 1 }))
                    .collect());
            }
            let needs = query.needs();
            // The narrowest read: a text index lookup, else the unread-index, else the UID range.
            let filter = query.text_filter();
            let (rows, unindexed) = match (&filter, query.required_flags()) {
                (Some(f), _) => c.rows_matching(id, f)?,
                (None, Some((mask, want))) => (c.rows_with_flags(id, mask, want)?, Default::default()),
                (None, None) => (c.rows(id, &uid_ranges(&uids))?, Default::default()),
            };
            let exact = filter.is_some_and(|f| f.exact);
            let ctx = SearchContext { max_seq: uids.len() as u32, max_uid: uids.last().copied().unwrap_or(0) };
            let mut hits = Vec::new();
            for r in &rows {
                let Ok(i) = uids.binary_search(&r.uid) else { continue };
                let seq = i as u32 + 1;
                let recent = recent.contains(&r.uid);
                // Flags, sizes, dates and sets decide most searches without touching bodies.
                let decided = if exact && !unindexed.contains(&r.body_id) {
                    Some(true)
                } else {
                    query.decide(&Candidate::new(seq, r, recent), &ctx)
                };
                let hit = match decided {
                    Some(h) => h,
                    None => {
                        let meta = if needs.meta || needs.headers { c.meta(r.body_id)? } else { None };
                        let raw = if needs.text || needs.headers { c.raw(r.body_id)? } else { None };
                        let header = match (&raw, &meta) {
                            (Some(raw), Some(m)) => raw.get(..(m.header_len as usize).min(raw.len())),
                            (Some(raw), None) => Some(&raw[..]),
                            _ => None,
                        };
                        let text = if needs.text { raw.as_deref().map(SearchText::from_raw) } else { None };
                        let cand = Candidate { seq, row: r, recent, meta: meta.as_ref(), header, text: text.as_ref() };
                        query.matches(&cand, &ctx)
                    }
                };
                if hit {
                    hits.push(if uid { r.uid } else { seq });
                }
            }
            Ok(hits)
        })
        .await;
    match r {
        Ok(hits) => {
            let mut line = String::with_capacity(9 + hits.len() * 7);
            line.push_str("* SEARCH");
            for h in hits {
                let _ = write!(line, " {h}");
            }
            line.push_str("\r\n");
            d.out().extend_from_slice(line.as_bytes());
            s.ok(d, tag, None, "SEARCH completed");
        }
        Err(e) => return db_no(s, d, tag, e),
    }
    Flow::Continue
}

#[allow(dead_code)]
fn nonzero(v: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(v)
}

#[allow(dead_code)]
fn astring_bytes<'a>(a: &'a AString<'_>) -> &'a [u8] {
    a.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_overquota_from_the_kind() {
        assert_eq!(store_error_code(ErrorKind::DiskFull), "OVERQUOTA");
        for k in [ErrorKind::Busy, ErrorKind::NotFound, ErrorKind::Corrupt, ErrorKind::Other] {
            assert_eq!(store_error_code(k), "SERVERBUG", "{k:?}");
        }
    }

    #[test]
    fn positions_walk_the_same_messages_as_the_resolved_set() {
        let mb = Selected {
            id: 1,
            name: "INBOX".into(),
            read_only: true,
            uidvalidity: 1,
            uids: vec![2, 3, 5, 8, 9, 10, 20, 21, 40],
            recent: Default::default(),
            modseq: 0,
            pending_expunge: Vec::new(),
            own_modseqs: Vec::new(),
            account: None,
        };
        for set in ["1:*", "*", "2,4:6,5", "9:1", "3,3,3", "1", "7:*,1:2", "1:100", "40:*", "11:19,41:50", "100"] {
            let set = SequenceSet::try_from(set).expect("a sequence set");
            for uid in [false, true] {
                let want: Option<Vec<usize>> = match resolve_set(&mb, &set, uid) {
                    Ok(t) => Some(t.iter().map(|(seq, _)| *seq as usize - 1).collect()),
                    Err(SetError::OutOfRange) => None,
                };
                let got = resolve_positions(&mb, &set, uid).ok().map(|r| r.into_iter().flatten().collect());
                assert_eq!(got, want, "{set:?} uid={uid}");
            }
        }
    }
}
