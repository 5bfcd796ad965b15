//! Every command after parsing: which state allows it ([`dispatch`]), what it asks of the store,
//! what it answers — one file per group of commands, the shared pieces (mailbox arguments, flag
//! lists, sequence sets, store errors) here. Mailbox commands (RFC 3501 §6.3) and message
//! commands (§6.4) with UIDPLUS, MOVE, UNSELECT, ID, ENABLE, NAMESPACE; LOGIN / AUTHENTICATE are
//! `imap::auth`, IDLE and STARTTLS `imap::session`.

mod append;
mod copy;
mod expunge;
mod fetch;
mod mailbox;
mod search;
mod select;
mod sort;
mod store;
mod thread;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;

use imap_next::imap_types::{
    command::CommandBody,
    core::Tag,
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
use super::syntax::Extended;
use crate::memory;
use crate::mime::Timestamp;
use crate::mime::text::SearchText;
use crate::net::imap::Driver;
use crate::store::imap::{FlagOp, MailboxInfo};
use crate::store::mailbox::{ErrorKind, Reader, uid_ranges};
use crate::store::message::{MessageRow, flag};

/// Flush the output buffer once this much is queued (a long reply streams instead of piling up).
const FLUSH_AT: usize = 256 * 1024;
pub async fn dispatch(s: &mut Session, d: &mut Driver, tag: Tag<'static>, body: CommandBody<'static>) -> Flow {
    let expunge_ok = expunge_allowed(&body);
    let selected_before = matches!(s.state, State::Selected { .. });
    let reply = match body {
        CommandBody::Capability => {
            let caps = s.capabilities();
            d.out().extend_from_slice(format!("* CAPABILITY {caps}\r\n").as_bytes());
            ok(None, "CAPABILITY completed")
        }
        CommandBody::Noop | CommandBody::Check => {
            // Updates are sent below, as for every command in the selected state.
            s.kick_selected();
            ok(None, "completed")
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
            ok(None, "ID completed")
        }
        CommandBody::StartTLS => {
            // Handled by the session before dispatch when allowed; here it is not.
            bad(if s.tls { "TLS is already active" } else { "STARTTLS is not available now" })
        }
        CommandBody::Login { username, password } => {
            let user = username.as_ref().to_vec();
            let pass = password.declassify().as_ref().to_vec();
            return s.cmd_login(d, &tag, &user, &pass).await;
        }
        CommandBody::Authenticate { .. } | CommandBody::Idle => bad("unexpected"),
        _ if matches!(s.state, State::NotAuthenticated) => no(None, "log in first (LOGIN or AUTHENTICATE)"),
        CommandBody::Enable { capabilities } => select::enable(s, d, capabilities.as_ref()),
        CommandBody::Namespace => {
            d.out().extend_from_slice(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
            ok(None, "NAMESPACE completed")
        }
        CommandBody::Select { mailbox, parameters } => select::select(s, d, &mailbox, false, &parameters).await,
        CommandBody::Examine { mailbox, parameters } => select::select(s, d, &mailbox, true, &parameters).await,
        CommandBody::Create { mailbox } => mailbox::create(s, &mailbox).await,
        CommandBody::Delete { mailbox } => mailbox::delete(s, &mailbox).await,
        CommandBody::Rename { from, to } => mailbox::rename(s, &from, &to).await,
        CommandBody::Subscribe { mailbox } => mailbox::subscribe(s, &mailbox, true).await,
        CommandBody::Unsubscribe { mailbox } => mailbox::subscribe(s, &mailbox, false).await,
        CommandBody::List { reference, mailbox_wildcard } => {
            mailbox::list(s, d, &reference, &mailbox_wildcard, false).await
        }
        CommandBody::Lsub { reference, mailbox_wildcard } => {
            mailbox::list(s, d, &reference, &mailbox_wildcard, true).await
        }
        CommandBody::Status { mailbox, item_names } => mailbox::status(s, d, &mailbox, &item_names).await,
        CommandBody::Append { mailbox, flags, date, message } => {
            let data = match &message {
                imap_next::imap_types::extensions::binary::LiteralOrLiteral8::Literal(l) => l.data().to_vec(),
                imap_next::imap_types::extensions::binary::LiteralOrLiteral8::Literal8(l) => l.data.to_vec(),
            };
            append::append(s, &mailbox, &flags, date.as_ref(), data).await
        }
        _ if !matches!(s.state, State::Selected { .. }) => no(None, "select a mailbox first"),
        CommandBody::Close => select::close(s, true).await,
        CommandBody::Unselect => select::close(s, false).await,
        CommandBody::Expunge => expunge::expunge(s, d, None).await,
        CommandBody::ExpungeUid { sequence_set } => expunge::expunge(s, d, Some(&sequence_set)).await,
        CommandBody::Fetch { sequence_set, macro_or_item_names, uid, modifiers } => {
            fetch::fetch(s, d, &sequence_set, &macro_or_item_names, uid, &modifiers).await
        }
        CommandBody::Store { sequence_set, kind, response, flags, uid, modifiers } => {
            store::store(s, d, &sequence_set, kind, response, &flags, uid, &modifiers).await
        }
        CommandBody::Search { charset, criteria, uid } => {
            let key = if criteria.as_ref().len() == 1 {
                criteria.as_ref()[0].clone()
            } else {
                SearchKey::And(criteria.clone())
            };
            search::search(s, d, charset.as_ref(), &key, uid).await
        }
        CommandBody::Sort { sort_criteria, charset, search_criteria, uid } => {
            sort::sort(s, d, sort_criteria.as_ref(), &charset, &search_criteria, uid).await
        }
        CommandBody::Thread { algorithm, charset, search_criteria, uid } => {
            thread::thread(s, d, &algorithm, &charset, &search_criteria, uid).await
        }
        CommandBody::Copy { sequence_set, mailbox, uid } => copy::copy(s, d, &sequence_set, &mailbox, uid, false).await,
        CommandBody::Move { sequence_set, mailbox, uid } => copy::copy(s, d, &sequence_set, &mailbox, uid, true).await,
        _ => bad("command not supported"),
    };
    finish(s, d, &tag, reply, expunge_ok, selected_before).await
}

/// A command only `imap::syntax` parses (an extension imap-codec has no parser for): run it
/// like any other.
pub async fn dispatch_extended(s: &mut Session, d: &mut Driver, tag: Tag<'static>, ext: Extended) -> Flow {
    let expunge_ok = match &ext {
        Extended::Search(q) => q.uid(),
        Extended::Saved(w) => search::expunge_allowed_with_saved(w),
        _ => true,
    };
    let selected_before = matches!(s.state, State::Selected { .. });
    let reply = match ext {
        _ if matches!(s.state, State::NotAuthenticated) => no(None, "log in first (LOGIN or AUTHENTICATE)"),
        Extended::List(l) => mailbox::list_extended(s, d, l).await,
        Extended::Append(a) => append::multiappend(s, a).await,
        _ if !matches!(s.state, State::Selected { .. }) => no(None, "select a mailbox first"),
        Extended::Search(q) => search::search_extended(s, d, &tag, q).await,
        Extended::Saved(w) => match search::with_saved(s, &w) {
            Some(body) => return dispatch(s, d, tag, body).await,
            None => search::nothing_saved(),
        },
    };
    finish(s, d, &tag, reply, expunge_ok, selected_before).await
}

/// After a command: the untagged updates its state calls for, then its tagged status.
async fn finish(
    s: &mut Session,
    d: &mut Driver,
    tag: &Tag<'static>,
    reply: Reply,
    expunge_ok: bool,
    selected_before: bool,
) -> Flow {
    let Ok(mut status) = reply else { return Flow::Close };
    // Every command in the selected state reports what changed meanwhile (RFC 3501 §7): the
    // untagged updates first, then the tagged status.
    if !matches!(s.state, State::NotAuthenticated) {
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
            && status.kind == Kind::Ok
            && status.code.is_none()
        {
            status.code = Some("EXPUNGEISSUED".into());
        }
    }
    status.write(d, tag);
    if d.pending() > FLUSH_AT && d.flush().await.is_err() {
        return Flow::Close;
    }
    Flow::Continue
}

/// How a command ends: `OK`, `NO` or `BAD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ok,
    No,
    Bad,
}

/// A command's tagged response, without its tag: [`dispatch`] writes it after the untagged
/// updates that must precede it (RFC 3501 §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub kind: Kind,
    /// The response code, without its brackets (`READ-WRITE`, `APPENDUID 1 5`…).
    pub code: Option<String>,
    pub text: String,
}

impl Status {
    fn write(&self, d: &mut Driver, tag: &Tag<'_>) {
        let kind = match self.kind {
            Kind::Ok => "OK",
            Kind::No => "NO",
            Kind::Bad => "BAD",
        };
        crate::imap::session::status(d, tag.as_ref(), kind, self.code.as_deref(), &self.text);
    }
}

/// The connection must close now (the client is gone, or a promised literal cannot be sent):
/// no tagged response.
#[derive(Debug)]
pub struct Close;

/// What a command handler returns.
pub type Reply = Result<Status, Close>;

fn reply(kind: Kind, code: Option<&str>, text: &str) -> Reply {
    Ok(Status { kind, code: code.map(str::to_string), text: text.to_string() })
}
fn ok(code: Option<&str>, text: &str) -> Reply {
    reply(Kind::Ok, code, text)
}
fn no(code: Option<&str>, text: &str) -> Reply {
    reply(Kind::No, code, text)
}
fn bad(text: &str) -> Reply {
    reply(Kind::Bad, None, text)
}
/// A handler reached in a state [`dispatch`] does not send it in.
fn wrong_state() -> Reply {
    bad("command not valid in this state")
}

/// The response code for a failed store operation: a full disk is the client's quota (RFC 5530).
fn store_error_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::DiskFull => "OVERQUOTA",
        _ => "SERVERBUG",
    }
}

fn db_no(e: DbError) -> Reply {
    tracing::warn!("imap: store error: {}", e.message);
    no(Some(store_error_code(e.kind)), &format!("store error: {}", e.message))
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
    crate::imap::syntax::saved::set_text(&uid_ranges(uids))
}

/// The selected mailbox's id, whether it is read-only, and the (seq, UID) pairs a set addresses.
type Targets = (i64, bool, Vec<(u32, u32)>);

fn targets(s: &Session, set: &SequenceSet, uid: bool) -> Result<Targets, SetError> {
    match &s.state {
        State::Selected { mb, .. } => resolve_set(mb, set, uid).map(|t| (mb.id, mb.read_only, t)),
        _ => Ok((0, true, Vec::new())),
    }
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
            saved: Vec::new(),
            ext: Default::default(),
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
