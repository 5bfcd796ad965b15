//! One IMAP connection: the state machine (RFC 3501 §3), its store connection, and the rules for
//! when changes made elsewhere (fetchers, other sessions) reach this client.
//!
//! Responses are written by the session itself into the driver's output buffer, in order; imap-next
//! parses commands and handles literals, AUTHENTICATE and IDLE continuations.
//!
//! Changes from elsewhere: the store's change feed says "something changed"; the session then asks
//! the store what changed since the MODSEQ its client knows ([`Session::refresh`]) and reports new
//! messages (EXISTS/RECENT), flag changes (FETCH) and expunges (EXPUNGE). Nothing is queued per
//! session, so a slow client can never hold up a writer — the store itself is the queue. Expunges
//! are held back while a FETCH, STORE or SEARCH (by sequence number) is in progress, and while no
//! command is (RFC 3501 §7.4.1), except in IDLE.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use imap_codec::encode::Encoder;
use imap_next::imap_types::{
    command::{Command, CommandBody},
    core::Tag,
    response::{Greeting, Response},
};
use imap_next::server::{Error as ServerError, Event, Options, Server};
use tokio::sync::watch;

use super::names::View;
use super::server::Shared;
use crate::net::imap::{Driver, ServerIo};
use crate::store::mailbox::ErrorKind;

/// RFC 3501 §5.4: an autologout timer must be at least 30 minutes.
pub const AUTOLOGOUT: Duration = Duration::from_secs(30 * 60);
/// How often an idling session looks for commits by other processes (`PRAGMA data_version`).
/// In-process writers (the daemon's fetchers, other sessions) wake it at once.
pub const IDLE_POLL: Duration = Duration::from_millis(250);
/// A keep-alive during IDLE, so NAT boxes and the client know the connection is alive.
pub const IDLE_KEEPALIVE: Duration = Duration::from_secs(120);
pub use super::syntax::MAX_LITERAL;

pub const CAPS_COMMON: &str = "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE";
pub const CAPS_AUTHENTICATED: &str = "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE ESEARCH SEARCHRES WITHIN BINARY MULTIAPPEND LIST-EXTENDED LIST-STATUS STATUS=SIZE CONDSTORE QRESYNC SORT SORT=DISPLAY THREAD=REFERENCES THREAD=ORDEREDSUBJECT";

pub enum Outcome {
    Close,
    StartTls,
}

/// The selected mailbox as this session's client knows it.
pub struct Selected {
    pub id: i64,
    /// The store name and the name the client used.
    pub name: String,
    pub read_only: bool,
    pub uidvalidity: u32,
    /// Sequence number − 1 → UID, ascending.
    pub uids: Vec<u32>,
    pub recent: UidSet,
    /// The MODSEQ up to which the client has been told everything (except `pending_expunge`).
    pub modseq: u64,
    /// Expunged in the store, not yet reported (an EXPUNGE was not allowed at that moment).
    pub pending_expunge: Vec<u32>,
    /// MODSEQs of this session's own STOREs: already answered, not echoed again.
    pub own_modseqs: Vec<u64>,
    /// The account whose fetched mail arrives here, if this is an account's mailbox.
    pub account: Option<String>,
    /// `$`, the last `SEARCH RETURN (SAVE)` result (SEARCHRES, RFC 5182): UID ranges, empty
    /// until a search saves one; a new selection starts empty.
    pub saved: Vec<(u32, u32)>,
    /// CONDSTORE / QRESYNC state and the keywords the client was told of (`imap::untagged`);
    /// boxed: `State::Selected` stays small.
    pub ext: Box<SelectedExt>,
}

/// What ENABLE (or, for CONDSTORE, any CONDSTORE enabling command, RFC 7162 §3.1) turned on for
/// the session; once on, it stays on until the connection closes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enabled {
    pub condstore: bool,
    pub qresync: bool,
}

/// The selected mailbox's part of RFC 7162 and of the keyword announcements (RFC 3501 §7.2.6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectedExt {
    /// The session's [`Enabled`], mirrored here so the mailbox's responses can follow it.
    pub enabled: Enabled,
    /// The keywords the last `* FLAGS` response listed: a FETCH carrying any other is preceded
    /// by a new `* FLAGS` ([`Selected::announce`]).
    pub keywords: Vec<String>,
    /// While expunges are held back (`pending_expunge`): the MODSEQ the client knew everything
    /// up to when the first was held, below every held one.
    pub held_since: Option<u64>,
}

/// A set of UIDs as a sorted vector: 4 bytes a UID where a `HashSet` takes about 9 — and the
/// `\Recent` of a mailbox nobody selected yet is every UID in it, in every session that looks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UidSet(Vec<u32>);

impl UidSet {
    pub fn contains(&self, uid: &u32) -> bool {
        self.0.binary_search(uid).is_ok()
    }
    /// Adds a UID (new UIDs are the highest: usually an append).
    pub fn insert(&mut self, uid: u32) -> bool {
        match self.0.binary_search(&uid) {
            Ok(_) => false,
            Err(i) => {
                self.0.insert(i, uid);
                true
            }
        }
    }
    pub fn remove(&mut self, uid: &u32) -> bool {
        match self.0.binary_search(uid) {
            Ok(i) => {
                self.0.remove(i);
                true
            }
            Err(_) => false,
        }
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<u32> for UidSet {
    fn from_iter<I: IntoIterator<Item = u32>>(it: I) -> UidSet {
        let mut v: Vec<u32> = it.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        v.shrink_to_fit();
        UidSet(v)
    }
}

impl Selected {
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }
    pub fn max_uid(&self) -> u32 {
        self.uids.last().copied().unwrap_or(0)
    }
    /// Takes expunged messages out of the client's view, each reported as `* n EXPUNGE` (numbers
    /// as they are when it goes); UIDs not in the view are skipped.
    /// With QRESYNC enabled, one `* VANISHED uids` instead (RFC 7162 §3.2.10).
    pub fn expunged(&mut self, uids: impl IntoIterator<Item = u32>, out: &mut Vec<u8>) {
        let mut vanished = Vec::new();
        for uid in uids {
            if let Ok(i) = self.uids.binary_search(&uid) {
                self.uids.remove(i);
                self.recent.remove(&uid);
                if self.ext.enabled.qresync {
                    vanished.push(uid);
                } else {
                    super::untagged::expunge(out, i as u32 + 1);
                }
            }
        }
        super::untagged::vanished(out, false, &mut vanished);
    }
}

impl Selected {
    /// Before a FETCH response carrying `keywords`: when one of them was never announced, a new
    /// `* FLAGS` / `PERMANENTFLAGS` pair listing it (RFC 3501 §7.2.6: the client learns of every
    /// flag before it appears on a message).
    pub fn announce(&mut self, keywords: &[String], out: &mut Vec<u8>) {
        let mut new = false;
        for k in keywords {
            if super::untagged::listable(k) && !self.ext.keywords.iter().any(|a| a.eq_ignore_ascii_case(k)) {
                self.ext.keywords.push(k.clone());
                new = true;
            }
        }
        if new {
            super::untagged::flags(out, &self.ext.keywords, self.read_only);
        }
    }
}

pub enum State {
    NotAuthenticated,
    Authenticated { view: View },
    Selected { view: View, mb: Selected },
}

/// An AUTHENTICATE exchange in progress.
pub enum SaslStep {
    Plain { tag: Tag<'static> },
    LoginUser { tag: Tag<'static> },
    LoginPassword { tag: Tag<'static>, user: String },
}

pub struct Session {
    pub shared: Arc<Shared>,
    pub peer: SocketAddr,
    pub tls: bool,
    pub state: State,
    pub sasl: Option<SaslStep>,
    /// CONDSTORE / QRESYNC (RFC 7162), once enabled.
    pub enabled: Enabled,
    changes: watch::Receiver<u64>,
    data_version: i64,
    alerts: tokio::sync::broadcast::Receiver<String>,
    last_kick: Option<std::time::Instant>,
    /// This connection's place (`net::listener`): a login moves it to the sessions' pool.
    pub slot: crate::net::listener::Slot,
}

pub use crate::store::mailbox::{Error as DbError, Result as DbResult};

pub fn options() -> Options {
    let mut o = Options::default();
    o.max_literal_size = MAX_LITERAL;
    o.max_command_size = MAX_LITERAL + 64 * 1024;
    let _ = o.set_literal_accept_text("ready for literal data".into());
    let _ = o.set_literal_reject_text("literal too large".into());
    o
}

fn greeting_text(caps: &str) -> String {
    format!("[CAPABILITY {caps}] popbridge ready")
}

/// Accepts IMAP connections until `shutdown` turns true (`net::listener`: places, the oldest idle
/// connection pushed out, the login timeout); each connection gets its own task.
pub async fn listen(
    listener: tokio::net::TcpListener,
    implicit_tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let slots = shared.slots.clone();
    crate::net::listener::serve(listener, implicit_tls, slots, shutdown, move |a| {
        serve(shared.clone(), a.io, a.peer, a.tls, a.shutdown, a.slot)
    })
    .await
}

pub async fn serve(
    shared: Arc<Shared>,
    io: ServerIo,
    peer: SocketAddr,
    tls: bool,
    mut shutdown: watch::Receiver<bool>,
    slot: crate::net::listener::Slot,
) {
    let changes = shared.changes.subscribe();
    let alerts = shared.alerts.subscribe();
    let mut session = Session {
        shared,
        peer,
        tls,
        state: State::NotAuthenticated,
        sasl: None,
        enabled: Enabled::default(),
        changes,
        data_version: 0,
        alerts,
        last_kick: None,
        slot,
    };
    let caps = session.capabilities();
    let text = greeting_text(&caps);
    let Ok(greeting) = Greeting::ok(None, &text) else { return };
    let mut driver = Driver::new(io);
    let mut server = Server::new(options(), greeting.into_static_owned());
    loop {
        match session.run(&mut driver, &mut server, &mut shutdown).await {
            Outcome::Close => {
                driver.close().await;
                return;
            }
            Outcome::StartTls => {
                let ServerIo::Plain(tcp) = driver.into_io() else { return };
                let Some(acceptor) = session.shared.tls.clone() else { return };
                let tls = match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    _ => return,
                };
                driver = Driver::new(ServerIo::Tls(Box::new(tls)));
                // A fresh parser: plaintext the client sent after STARTTLS (an injection attempt,
                // CVE-2011-0411 class) died with the old one. Its greeting is discarded unsent.
                let Ok(g) = Greeting::ok(None, "unused") else { return };
                server = Server::new(options(), g.into_static_owned());
                let _ = imap_next::State::next(&mut server);
                let _ = imap_next::State::next(&mut server);
                session.tls = true;
            }
        }
    }
}

/// Makes a greeting `'static` by round-tripping its text (imap-types' `into_static` needs a trait in scope).
trait IntoStaticOwned {
    fn into_static_owned(self) -> Greeting<'static>;
}
impl IntoStaticOwned for Greeting<'_> {
    fn into_static_owned(self) -> Greeting<'static> {
        use imap_next::imap_types::IntoStatic;
        self.into_static()
    }
}

impl Session {
    pub fn capabilities(&self) -> String {
        match self.state {
            State::NotAuthenticated => {
                let mut c = format!("{CAPS_COMMON} AUTH=PLAIN AUTH=LOGIN");
                if !self.tls && self.shared.tls.is_some() {
                    c.push_str(" STARTTLS");
                }
                c
            }
            _ => CAPS_AUTHENTICATED.to_string(),
        }
    }

    /// Runs commands until the connection should close or switch to TLS.
    async fn run(&mut self, d: &mut Driver, server: &mut Server, shutdown: &mut watch::Receiver<bool>) -> Outcome {
        loop {
            d.set_authenticated(!matches!(self.state, State::NotAuthenticated));
            let ev = tokio::select! {
                r = tokio::time::timeout(AUTOLOGOUT, d.next(server)) => r,
                _ = shutdown.changed() => {
                    d.out().extend_from_slice(b"* BYE popbridge is shutting down\r\n");
                    return Outcome::Close;
                }
            };
            let ev = match ev {
                Err(_) => {
                    d.out().extend_from_slice(b"* BYE autologout: idle for 30 minutes\r\n");
                    return Outcome::Close;
                }
                Ok(Err(_io)) => return Outcome::Close,
                Ok(Ok(Err(e))) => {
                    // An AUTHENTICATE continuation that does not parse (not base64) ends the
                    // exchange with a tagged BAD (RFC 3501 §6.2.2); otherwise the client waits forever.
                    if self.sasl.is_some() {
                        if matches!(self.authenticate_malformed(server), Flow::Close) {
                            return Outcome::Close;
                        }
                        continue;
                    }
                    // An extension imap-codec cannot parse yet (`imap::syntax`) runs as a command.
                    if let ServerError::MalformedMessage { discarded_bytes } = &e
                        && let Some((tag, ext)) = super::syntax::parse(discarded_bytes.declassify())
                    {
                        if matches!(super::cmd::dispatch_extended(self, d, tag, ext).await, Flow::Close) {
                            return Outcome::Close;
                        }
                        continue;
                    }
                    self.protocol_error(d, e);
                    continue;
                }
                Ok(Ok(Ok(ev))) => ev,
            };
            let flow = match ev {
                Event::GreetingSent { .. } | Event::ResponseSent { .. } => Flow::Continue,
                Event::CommandReceived { command } => self.command(d, server, command).await,
                Event::CommandAuthenticateReceived { command_authenticate } => {
                    self.authenticate_start(d, server, command_authenticate).await
                }
                Event::AuthenticateDataReceived { authenticate_data } => {
                    self.authenticate_data(d, server, authenticate_data).await
                }
                Event::IdleCommandReceived { tag } => self.idle(d, server, tag, shutdown).await,
                Event::IdleDoneReceived => Flow::Continue,
            };
            match flow {
                Flow::Continue => {}
                Flow::Close => return Outcome::Close,
                Flow::StartTls => {
                    if d.flush().await.is_err() {
                        return Outcome::Close;
                    }
                    return Outcome::StartTls;
                }
            }
        }
    }

    /// A command imap-next could not parse: answer BAD (tagged if a tag can be found) and go on.
    fn protocol_error(&mut self, d: &mut Driver, e: ServerError) {
        let (bytes, what) = match &e {
            ServerError::LiteralTooLong { .. } => return, // imap-next already answered BAD
            ServerError::MalformedMessage { discarded_bytes } => {
                (discarded_bytes, "syntax error, or a command popbridge does not support")
            }
            ServerError::ExpectedCrlfGotLf { discarded_bytes } => (discarded_bytes, "lines must end with CRLF"),
            ServerError::CommandTooLong { discarded_bytes } => (discarded_bytes, "command too long"),
        };
        let raw = bytes.declassify();
        let tag = raw
            .iter()
            .position(|b| *b == b' ')
            .map(|p| &raw[..p])
            .filter(|t| !t.is_empty() && Tag::try_from(*t).is_ok())
            .and_then(|t| std::str::from_utf8(t).ok());
        let line = match tag {
            Some(t) => format!("{t} BAD {what}\r\n"),
            None => format!("* BAD {what}\r\n"),
        };
        d.out().extend_from_slice(line.as_bytes());
    }

    // ----- output helpers -----

    pub fn ok(&self, d: &mut Driver, tag: &Tag<'_>, code: Option<&str>, text: &str) {
        status(d, tag.as_ref(), "OK", code, text);
    }
    pub fn no(&self, d: &mut Driver, tag: &Tag<'_>, code: Option<&str>, text: &str) {
        status(d, tag.as_ref(), "NO", code, text);
    }
    pub fn bad(&self, d: &mut Driver, tag: &Tag<'_>, text: &str) {
        status(d, tag.as_ref(), "BAD", None, text);
    }

    /// Encodes a typed response with imap-codec (LIST, STATUS… — anything with quoted names).
    pub fn typed(&self, d: &mut Driver, r: &Response<'_>) {
        let bytes = imap_codec::ResponseCodec::default().encode(r).dump();
        d.out().extend_from_slice(&bytes);
    }

    /// The store (its mailbox API: `store::mailbox`).
    pub fn store(&self) -> &crate::store::Store {
        &self.shared.store
    }

    /// Account health alerts (`* OK [ALERT] …`, RFC 3501 §7.1) waiting for this session.
    pub fn drain_alerts(&mut self, d: &mut Driver) {
        if matches!(self.state, State::NotAuthenticated) {
            return;
        }
        loop {
            match self.alerts.try_recv() {
                Ok(a) => {
                    write_alert(d, &a);
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
    }

    /// A client looking at an account's mailbox (SELECT, NOOP, IDLE) asks the daemon to fetch that
    /// account — at most once a minute per session; the scheduler skips it if it fetched recently.
    pub fn kick_selected(&mut self) {
        let State::Selected { mb, .. } = &self.state else { return };
        let (Some(account), Some(kick)) = (mb.account.clone(), self.shared.kick.as_ref()) else { return };
        if self.last_kick.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(60)) {
            return;
        }
        self.last_kick = Some(std::time::Instant::now());
        let _ = kick.send(account);
    }

    /// Tells every session (this one included, harmlessly) that the store changed.
    pub fn notify(&self) {
        self.shared.changes.notify();
    }

    // ----- keeping the client in step -----

    /// Reports what changed in the selected mailbox since the client last heard. `expunge_ok`:
    /// whether EXPUNGE responses may be sent now (RFC 3501 §7.4.1).
    pub async fn refresh(&mut self, d: &mut Driver, expunge_ok: bool) -> DbResult<()> {
        let State::Selected { mb, .. } = &self.state else { return Ok(()) };
        // Always ask the store: a command that just read it (FETCH, SEARCH) may have seen a change
        // whose notification has not arrived yet, and the client must hear of it in this reply.
        if self.changes.has_changed().unwrap_or(false) {
            self.changes.borrow_and_update();
        }
        let (id, since, read_only) = (mb.id, mb.modseq, mb.read_only);
        let ch = self.store().changes_after(id, since).await?;
        let Some(ch) = ch else {
            // Deleted by another session: BYE, then the caller closes (RFC 2180 §3.1, as Dovecot).
            d.out().extend_from_slice(b"* BYE the selected mailbox was deleted, have to disconnect\r\n");
            return Err(DbError::new(ErrorKind::NotFound, "the selected mailbox was deleted"));
        };
        let State::Selected { mb, .. } = &mut self.state else { return Ok(()) };
        if ch.highestmodseq <= mb.modseq && (mb.pending_expunge.is_empty() || !expunge_ok) {
            return Ok(());
        }
        let out = d.out();
        if let Some(present) = &ch.present {
            // The store no longer lists expunges that old: whatever the client has that is gone.
            for &uid in &mb.uids {
                if present.binary_search(&uid).is_err() && !mb.pending_expunge.contains(&uid) {
                    mb.pending_expunge.push(uid);
                }
            }
        }
        for uid in ch.expunged {
            if mb.uids.binary_search(&uid).is_ok() && !mb.pending_expunge.contains(&uid) {
                mb.pending_expunge.push(uid);
            }
        }
        if expunge_ok {
            let gone = std::mem::take(&mut mb.pending_expunge);
            mb.expunged(gone, out);
            mb.ext.held_since = None;
        } else if !mb.pending_expunge.is_empty() && mb.ext.held_since.is_none() {
            mb.ext.held_since = Some(mb.modseq);
        }
        let max = mb.max_uid();
        let mut new_uids = Vec::new();
        let mut flag_lines = Vec::new();
        for r in &ch.rows {
            if r.uid > max {
                new_uids.push(r.uid);
            } else if !mb.own_modseqs.contains(&r.modseq)
                && !mb.pending_expunge.contains(&r.uid)
                && let Some(seq) = mb.seq_of(r.uid)
            {
                let mut line = Vec::new();
                let recent = mb.recent.contains(&r.uid);
                mb.announce(&r.keywords, out);
                super::untagged::flags_fetch(&mut line, seq, Some(r.uid), r, recent, mb.ext.enabled.condstore, false);
                flag_lines.push(line);
            }
        }
        for l in flag_lines {
            out.extend_from_slice(&l);
        }
        // RFC 7162 §3.2: MODSEQs went out while a VANISHED waits: a HIGHESTMODSEQ below the
        // held-back expunges, so a client resyncing from here still learns of them.
        if let (Some(floor), true) = (mb.ext.held_since, mb.ext.enabled.qresync && !mb.pending_expunge.is_empty()) {
            super::untagged::highestmodseq(out, floor);
        }
        mb.modseq = ch.highestmodseq;
        mb.own_modseqs.clear();
        if !new_uids.is_empty() {
            mb.uids.extend_from_slice(&new_uids);
            super::untagged::exists(out, mb.uids.len() as u32);
            if !read_only {
                let top = new_uids[new_uids.len() - 1];
                let floor = self.store().claim_recent(id, top).await?;
                let State::Selected { mb, .. } = &mut self.state else { return Ok(()) };
                for u in new_uids.into_iter().filter(|u| *u > floor) {
                    mb.recent.insert(u);
                }
                super::untagged::recent(d.out(), mb.recent.len() as u32);
            }
        }
        Ok(())
    }

    /// Whether anything may have changed since the session last looked: an in-process notification,
    /// or a commit by another process.
    pub async fn changed_elsewhere(&mut self) -> bool {
        let notified = self.changes.has_changed().unwrap_or(false);
        if notified {
            self.changes.borrow_and_update();
        }
        let v = self.shared.store.pool().data_version().await.unwrap_or(self.data_version);
        let other = v != self.data_version;
        self.data_version = v;
        notified || other
    }

    /// IDLE (RFC 2177): report changes as they happen until DONE.
    async fn idle(
        &mut self,
        d: &mut Driver,
        server: &mut Server,
        tag: Tag<'static>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Flow {
        use imap_next::imap_types::response::CommandContinuationRequest;
        if matches!(self.state, State::NotAuthenticated) {
            let Ok(st) = imap_next::imap_types::response::Status::no(Some(tag), None, "log in first") else {
                return Flow::Close;
            };
            let _ = server.idle_reject(st);
            return Flow::Continue;
        }
        let Ok(ccr) = CommandContinuationRequest::basic(None, "idling") else { return Flow::Close };
        if server.idle_accept(ccr).is_err() {
            return Flow::Close;
        }
        // Send the continuation before anything else can be written.
        loop {
            match d.next(server).await {
                Ok(Ok(Event::ResponseSent { .. })) => break,
                Ok(Ok(Event::IdleDoneReceived)) => {
                    self.ok(d, &tag, None, "IDLE terminated");
                    return Flow::Continue;
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => return Flow::Close,
            }
        }
        self.changes.borrow_and_update();
        self.kick_selected();
        self.drain_alerts(d);
        if self.refresh(d, true).await.is_err() {
            return Flow::Close;
        }
        let mut poll = tokio::time::interval(IDLE_POLL);
        let mut keepalive = tokio::time::interval(IDLE_KEEPALIVE);
        keepalive.tick().await;
        loop {
            tokio::select! {
                ev = d.next(server) => match ev {
                    Ok(Ok(Event::IdleDoneReceived)) => break,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => { self.protocol_error(d, e); }
                    Err(_) => return Flow::Close,
                },
                r = self.changes.changed() => {
                    if r.is_err() { return Flow::Close; }
                    self.changes.borrow_and_update();
                    if self.refresh(d, true).await.is_err() { return Flow::Close; }
                }
                _ = poll.tick() => {
                    if self.changed_elsewhere().await && self.refresh(d, true).await.is_err() {
                        return Flow::Close;
                    }
                }
                _ = keepalive.tick() => d.out().extend_from_slice(b"* OK still here\r\n"),
                a = self.alerts.recv() => match a {
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Put it back in order with anything else pending.
                        if let Ok(text) = a {
                            write_alert(d, &text);
                        }
                    }
                    Err(_) => {}
                },
                _ = shutdown.changed() => {
                    d.out().extend_from_slice(b"* BYE popbridge is shutting down\r\n");
                    return Flow::Close;
                }
            }
            if d.pending() > 0 && d.flush().await.is_err() {
                return Flow::Close;
            }
        }
        self.ok(d, &tag, None, "IDLE terminated");
        Flow::Continue
    }

    async fn command(&mut self, d: &mut Driver, server: &mut Server, command: Command<'static>) -> Flow {
        let Command { tag, body } = command;
        if matches!(body, CommandBody::StartTLS)
            && !self.tls
            && self.shared.tls.is_some()
            && matches!(self.state, State::NotAuthenticated)
        {
            self.ok(d, &tag, None, "begin TLS negotiation now");
            if d.flush().await.is_err() {
                return Flow::Close;
            }
            // RFC 3501 §6.2.1: nothing may follow STARTTLS before the handshake. A complete command
            // already received is plaintext injection (CVE-2011-0411 class): close.
            return match imap_next::State::next(server) {
                Err(imap_next::Interrupt::Io(imap_next::Io::NeedMoreInput)) => Flow::StartTls,
                _ => Flow::Close,
            };
        }
        super::cmd::dispatch(self, d, tag, body).await
    }

    pub fn view(&self) -> Option<&View> {
        match &self.state {
            State::NotAuthenticated => None,
            State::Authenticated { view } | State::Selected { view, .. } => Some(view),
        }
    }
}

pub enum Flow {
    Continue,
    Close,
    StartTls,
}

/// Writes `* OK [ALERT] text` (one line, whatever the text holds).
fn write_alert(d: &mut Driver, text: &str) {
    d.out().extend_from_slice(format!("* OK [ALERT] {}\r\n", crate::mime::header::one_line(text)).as_bytes());
}

/// Writes `tag OK [code] text`.
pub fn status(d: &mut Driver, tag: &str, kind: &str, code: Option<&str>, text: &str) {
    let text = crate::mime::header::one_line(text);
    let line = match code {
        Some(c) => format!("{tag} {kind} [{c}] {text}\r\n"),
        None => format!("{tag} {kind} {text}\r\n"),
    };
    d.out().extend_from_slice(line.as_bytes());
}

/// Commands that may not see EXPUNGE responses (RFC 3501 §7.4.1): FETCH, STORE, SEARCH by sequence number.
pub fn expunge_allowed(body: &CommandBody<'_>) -> bool {
    !matches!(
        body,
        CommandBody::Fetch { uid: false, .. }
            | CommandBody::Store { uid: false, .. }
            | CommandBody::Search { uid: false, .. }
            | CommandBody::Sort { uid: false, .. }
            | CommandBody::Thread { uid: false, .. }
    )
}
