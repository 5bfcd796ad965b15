//! IMAP APPEND delivery (RFC 3501 §6.3.11): log in (a password: AUTHENTICATE PLAIN with SASL-IR
//! when offered, else LOGIN; an OAuth 2 access token: AUTHENTICATE OAUTHBEARER (RFC 7628) when
//! offered, else XOAUTH2), then APPEND each message. With LITERAL+ (RFC 7888) a batch's APPENDs go out in one
//! write and their answers are read afterwards — and with MULTIAPPEND (RFC 3502) as few commands
//! as possible, each saving up to [`MULTI_MAX`] messages in one server transaction; without
//! LITERAL+, each APPEND waits for the server's `+`.
//! UIDPLUS's `[APPENDUID v uid]` (RFC 4315) is the recorded confirmation. `NO [TRYCREATE]`: the
//! mailbox is created once (CREATE) and the APPENDs retried.
//!
//! Recovery (`find`): a delivery whose confirmation was lost is looked for with
//! `UID SEARCH HEADER Message-ID` in the mailbox, and taken as found only with the delivered size
//! (`RFC822.SIZE`).
//!
//! Answer classes (`classify`): `NO` with `[OVERQUOTA]`, `[LIMIT]`, `[UNAVAILABLE]`, `[INUSE]`,
//! `[SERVERBUG]`, or with no code → temporary (the message stays on the POP server); any other
//! `NO` (`[NOPERM]`, `[CANNOT]`, a `[TRYCREATE]` after the CREATE…) and `BAD` → permanent.

use base64::Engine;

use crate::config::{Credential, ImapTarget, TlsMode};
use crate::error::{Error, ErrorClass, Result};
use crate::net::tls::Upstream;
use crate::secret::Secret;

use super::wire::Wire;
use super::{Outcome, Refusal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    No,
    Bad,
}

/// Most messages in one MULTIAPPEND command, and most bytes (a bigger message goes alone).
pub const MULTI_MAX: usize = 64;
pub const MULTI_BYTES: usize = 8 * 1024 * 1024;

/// A tagged answer, and the untagged lines before it.
#[derive(Debug)]
struct Done {
    status: Status,
    /// The response code without brackets ("APPENDUID 38505 3955", "OVERQUOTA").
    code: Option<String>,
    text: String,
    untagged: Vec<String>,
    /// The literals of the untagged lines: (index into `untagged`, bytes).
    literals: Vec<(usize, Vec<u8>)>,
}

impl Done {
    fn describe(&self) -> String {
        let s = match self.status {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
        };
        match &self.code {
            Some(c) => format!("{s} [{c}] {}", self.text),
            None => format!("{s} {}", self.text),
        }
    }
    fn code_is(&self, name: &str) -> bool {
        self.code.as_deref().and_then(|c| c.split(' ').next()).is_some_and(|c| c.eq_ignore_ascii_case(name))
    }
}

/// A refusal's class (see the module docs).
fn classify(peer: &str, doing: &str, d: &Done) -> Refusal {
    let message = format!("{peer} refused {doing}: \"{}\"", d.describe());
    let temporary = d.status == Status::No
        && (d.code.is_none()
            || ["OVERQUOTA", "LIMIT", "UNAVAILABLE", "INUSE", "SERVERBUG"].iter().any(|c| d.code_is(c)));
    if temporary { Refusal::Temporary(message) } else { Refusal::Permanent(message) }
}

/// A quoted string (RFC 3501 §4.3); `None` for what a quoted string cannot hold.
fn quoted(s: &str) -> Option<String> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0 || b >= 0x80) {
        return None;
    }
    Some(format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
}

pub struct Imap {
    w: Wire,
    next_tag: u32,
    caps: Vec<String>,
    mailbox: String,
    /// The quoted mailbox name, as commands carry it.
    mbox: String,
    created: bool,
    selected: bool,
}

impl Imap {
    /// Connects and logs in. A refused login is an authentication error.
    pub fn connect(t: &ImapTarget, cred: &Credential, upstream: Option<&Upstream>) -> Result<Imap> {
        let w = match (t.tls, upstream) {
            (TlsMode::Implicit, Some(u)) => Wire::tls(&t.host, t.port, t.timeout, u)?,
            (TlsMode::StartTls, Some(_)) | (TlsMode::Plain, _) => Wire::tcp(&t.host, t.port, t.timeout)?,
            (_, None) => return Err(Error::other("internal error: TLS without its configuration")),
        };
        // On the wire in modified UTF-7 (RFC 3501 §5.1.3), which every server takes: "Entwürfe" is
        // "Entw&APw-rfe", and an ASCII "&" is "&-".
        let mbox = quoted(&crate::mutf7::encode_mutf7(&t.mailbox))
            .ok_or_else(|| Error::config(format!("the mailbox name \"{}\" cannot be sent as given", t.mailbox)))?;
        let mut c = Imap {
            w,
            next_tag: 1,
            caps: Vec::new(),
            mailbox: t.mailbox.clone(),
            mbox,
            created: false,
            selected: false,
        };
        let greeting = String::from_utf8_lossy(&c.w.line()?).into_owned();
        if !greeting.starts_with("* OK") && !greeting.starts_with("* PREAUTH") {
            return Err(Error::new(
                ErrorClass::Temporary,
                format!("{} did not greet as an IMAP server does: \"{greeting}\"", c.w.peer),
            ));
        }
        c.refresh_caps()?;
        if let (TlsMode::StartTls, Some(u)) = (t.tls, upstream) {
            c.start_tls(t, u, &greeting)?;
        }
        if !greeting.starts_with("* PREAUTH") {
            match cred {
                Credential::Password(pw) => c.login(&t.user, pw)?,
                Credential::Bearer(token) => c.bearer_login(t, token)?,
            }
            c.refresh_caps()?;
        }
        Ok(c)
    }

    /// RFC 3501 §6.2.1 STARTTLS, required: a server that does not offer it, refuses it, or
    /// greets PREAUTH (logged in before any TLS) is an error, never a plain login; then the
    /// capabilities are asked again (those from before TLS are discarded).
    fn start_tls(&mut self, t: &ImapTarget, upstream: &Upstream, greeting: &str) -> Result<()> {
        let peer = self.w.peer.clone();
        let refuse = |why: String| {
            Err(Error::new(
                ErrorClass::Certificate,
                format!(
                    "{peer} {why}, and popbridge never logs in without TLS: use imaps:// (port 993) if the server has it"
                ),
            ))
        };
        if greeting.starts_with("* PREAUTH") {
            return refuse("greeted PREAUTH (a session without TLS)".into());
        }
        if !self.has("STARTTLS") {
            return refuse("does not offer STARTTLS".into());
        }
        let d = self.command("STARTTLS")?;
        if d.status != Status::Ok {
            return refuse(format!("refused STARTTLS (\"{}\")", d.describe()));
        }
        self.w.start_tls(&t.host, t.port, upstream)?;
        self.refresh_caps()
    }

    pub fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }

    /// What the server offered that matters here, for `account test`.
    pub fn features(&self) -> String {
        let f: Vec<&str> = ["LITERAL+", "UIDPLUS", "MULTIAPPEND"].into_iter().filter(|c| self.has(c)).collect();
        if f.is_empty() { "none of LITERAL+, UIDPLUS".into() } else { f.join(" ") }
    }

    fn refresh_caps(&mut self) -> Result<()> {
        let d = self.command("CAPABILITY")?;
        for u in &d.untagged {
            if let Some(rest) = u.strip_prefix("* CAPABILITY ") {
                self.caps = rest.split(' ').map(str::to_string).collect();
            }
        }
        Ok(())
    }

    fn login(&mut self, user: &str, password: &Secret) -> Result<()> {
        let d = if self.has("AUTH=PLAIN") && self.has("SASL-IR") {
            let mut plain = Vec::with_capacity(user.len() + password.expose().len() + 2);
            plain.push(0);
            plain.extend_from_slice(user.as_bytes());
            plain.push(0);
            plain.extend_from_slice(password.expose().as_bytes());
            let b64 = Secret::new(base64::engine::general_purpose::STANDARD.encode(&plain));
            plain.fill(0);
            self.command(&format!("AUTHENTICATE PLAIN {}", b64.expose()))?
        } else {
            if self.has("LOGINDISABLED") {
                return Err(Error::new(
                    ErrorClass::Certificate,
                    format!("{} refuses logins on a connection without TLS: use imaps://", self.w.peer),
                ));
            }
            let (Some(u), Some(p)) = (quoted(user), quoted(password.expose()).map(Secret::new)) else {
                return Err(Error::config(format!(
                    "{} offers no AUTHENTICATE PLAIN, and LOGIN cannot carry this user name or password",
                    self.w.peer
                )));
            };
            self.command(&format!("LOGIN {u} {}", p.expose()))?
        };
        if d.status != Status::Ok {
            return Err(Error::new(
                ErrorClass::Authentication,
                format!("{} refused the login of {user}: \"{}\"", self.w.peer, d.describe()),
            ));
        }
        Ok(())
    }

    /// AUTHENTICATE with an OAuth 2 access token: OAUTHBEARER when offered, else XOAUTH2; the
    /// initial response inline with SASL-IR (RFC 4959), else after the server's `+`. A refusal
    /// comes as a `+` continuation carrying the error as base64 JSON (RFC 7628 §3.2.2), which the
    /// client answers (OAUTHBEARER: `^A`; XOAUTH2: an empty line) before the tagged `NO`.
    fn bearer_login(&mut self, t: &ImapTarget, token: &Secret) -> Result<()> {
        let peer = self.w.peer.clone();
        let bearer = self.has("AUTH=OAUTHBEARER");
        if !bearer && !self.has("AUTH=XOAUTH2") {
            return Err(Error::config(format!(
                "{peer} offers no OAuth 2 login (AUTH=OAUTHBEARER or AUTH=XOAUTH2): log in with a password (auth = \"password\" in [account.deliver])"
            )));
        }
        if !crate::sasl::fits(&t.user) || !crate::sasl::fits(token.expose()) {
            return Err(Error::config("the IMAP user name or access token contains a control character".to_string()));
        }
        let (mech, blob) = if bearer {
            ("OAUTHBEARER", crate::sasl::oauthbearer(&t.user, &t.host, t.port, token.expose()))
        } else {
            ("XOAUTH2", crate::sasl::xoauth2(&t.user, token.expose()))
        };
        let b64 = Secret::new(base64::engine::general_purpose::STANDARD.encode(&blob));
        drop(blob);
        let tag = self.tag();
        let sasl_ir = self.has("SASL-IR");
        if sasl_ir {
            self.w.put(format!("{tag} AUTHENTICATE {mech} {}\r\n", b64.expose()).as_bytes());
        } else {
            self.w.put(format!("{tag} AUTHENTICATE {mech}\r\n").as_bytes());
        }
        // Sent after the server's first (empty) `+` when it could not come inline.
        let mut initial = (!sasl_ir).then_some(b64);
        let mut said = None;
        let done = loop {
            let (line, _) = self.response_line()?;
            if let Some(rest) = line.strip_prefix(&tag).and_then(|r| r.strip_prefix(' ')) {
                break parse_done(rest, Vec::new(), Vec::new()).ok_or_else(|| {
                    Error::new(ErrorClass::Protocol, format!("{peer} sent a broken answer to AUTHENTICATE"))
                })?;
            }
            if let Some(challenge) = line.strip_prefix('+') {
                match initial.take() {
                    // The empty challenge before the initial response (no SASL-IR).
                    Some(b) => self.w.put(format!("{}\r\n", b.expose()).as_bytes()),
                    None => {
                        let json =
                            base64::engine::general_purpose::STANDARD.decode(challenge.trim()).unwrap_or_default();
                        said = crate::sasl::ServerError::parse(&json).and_then(|e| e.status);
                        let end: &[u8] = if bearer { crate::sasl::OAUTHBEARER_ABORT } else { b"" };
                        let end = base64::engine::general_purpose::STANDARD.encode(end);
                        self.w.put(format!("{end}\r\n").as_bytes());
                    }
                }
                continue;
            }
            if line.starts_with('*') && !line.starts_with("* BYE") {
                continue;
            }
            return Err(Error::new(ErrorClass::Protocol, format!("{peer} answered AUTHENTICATE with \"{line}\"")));
        };
        if done.status == Status::Ok {
            return Ok(());
        }
        let detail = said.map(|s| format!(" (server said: status {s})")).unwrap_or_default();
        Err(Error::new(
            ErrorClass::Authentication,
            format!("{peer} refused the OAuth 2 access token of {} ({mech}): \"{}\"{detail}", t.user, done.describe()),
        ))
    }

    fn tag(&mut self) -> String {
        let t = format!("p{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    /// One line of a response, with any literals it carries read into it (the text lossily as
    /// UTF-8; the literals' bytes as they came).
    fn response_line(&mut self) -> Result<(String, Vec<Vec<u8>>)> {
        let mut line = self.w.line()?;
        let mut literals = Vec::new();
        while let Some(n) = literal_len(&line) {
            line.extend_from_slice(b"\r\n");
            let bytes = self.w.bytes(n)?;
            line.extend_from_slice(&bytes);
            literals.push(bytes);
            line.extend_from_slice(&self.w.line()?);
        }
        Ok((String::from_utf8_lossy(&line).into_owned(), literals))
    }

    /// Reads up to the answer tagged `tag`.
    fn wait(&mut self, tag: &str) -> Result<Done> {
        let mut untagged = Vec::new();
        let mut literals = Vec::new();
        loop {
            let (line, lits) = self.response_line()?;
            if line.starts_with("* BYE") {
                return Err(Error::new(
                    ErrorClass::Connection,
                    format!("{} ended the session: \"{line}\"", self.w.peer),
                ));
            }
            if line.starts_with('*') || line.starts_with('+') {
                literals.extend(lits.into_iter().map(|l| (untagged.len(), l)));
                untagged.push(line);
                continue;
            }
            if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
                return parse_done(rest, untagged, literals).ok_or_else(|| {
                    Error::new(ErrorClass::Protocol, format!("{} sent a broken answer: \"{line}\"", self.w.peer))
                });
            }
            return Err(Error::new(
                ErrorClass::Protocol,
                format!("{} answered another command: \"{line}\"", self.w.peer),
            ));
        }
    }

    fn command(&mut self, cmd: &str) -> Result<Done> {
        let tag = self.tag();
        self.w.put(format!("{tag} {cmd}\r\n").as_bytes());
        self.wait(&tag)
    }

    /// `account test`: the mailbox exists and can be opened (EXAMINE), or may be created.
    pub fn check_mailbox(&mut self) -> Result<std::result::Result<String, Refusal>> {
        let d = self.command(&format!("EXAMINE {}", self.mbox))?;
        if d.status == Status::Ok {
            let exists = d.untagged.iter().find_map(|u| u.strip_suffix(" EXISTS").and_then(|s| s.strip_prefix("* ")));
            return Ok(Ok(format!("mailbox {} holds {} message(s)", self.mailbox, exists.unwrap_or("?"))));
        }
        // Dovecot 2.3 answers a missing mailbox with a bare `NO Mailbox doesn't exist`: ask LIST
        // whether it exists before calling the NO a refusal.
        let missing = d.code_is("TRYCREATE") || d.code_is("NONEXISTENT") || {
            let l = self.command(&format!("LIST \"\" {}", self.mbox))?;
            l.status == Status::Ok && !l.untagged.iter().any(|u| u.starts_with("* LIST "))
        };
        if missing {
            return Ok(Ok(format!(
                "mailbox {} does not exist yet; popbridge creates it with the first delivery",
                self.mailbox
            )));
        }
        Ok(Err(classify(&self.w.peer, &format!("EXAMINE {}", self.mailbox), &d)))
    }

    /// APPENDs `batch`; every message gets an outcome unless the connection fails (then the
    /// outcomes so far are what the server confirmed).
    pub fn deliver(&mut self, batch: &[&[u8]]) -> (Vec<Outcome>, Option<Error>) {
        let mut out: Vec<Outcome> = Vec::with_capacity(batch.len());
        loop {
            let start = out.len();
            match self.append_all(&batch[start..], &mut out) {
                Err(e) => return (out, Some(e)),
                Ok(retry_from) => {
                    let Some(i) = retry_from else { return (out, None) };
                    // NO [TRYCREATE]: create the mailbox once, then APPEND again from there.
                    out.truncate(start + i);
                    match self.command(&format!("CREATE {}", self.mbox)) {
                        Err(e) => return (out, Some(e)),
                        Ok(d) if d.status != Status::Ok && !d.code_is("ALREADYEXISTS") => {
                            out.push(Outcome::Refused(classify(&self.w.peer, &format!("CREATE {}", self.mailbox), &d)));
                            return (out, None);
                        }
                        Ok(_) => self.created = true,
                    }
                }
            }
        }
    }

    /// APPENDs each message (pipelined with LITERAL+). Returns the index (into `batch`) of the
    /// first `NO [TRYCREATE]` when the mailbox has not been created yet: the caller creates it
    /// and calls again from there (the outcomes from that index on are dropped).
    fn append_all(&mut self, batch: &[&[u8]], out: &mut Vec<Outcome>) -> Result<Option<usize>> {
        let plus = self.has("LITERAL+");
        if plus && self.has("MULTIAPPEND") && batch.len() > 1 {
            return self.multiappend(batch, out);
        }
        let mut tags = Vec::with_capacity(batch.len());
        let mut retry = None;
        if plus {
            for raw in batch {
                let tag = self.tag();
                self.w.put(format!("{tag} APPEND {} {{{}+}}\r\n", self.mbox, raw.len()).as_bytes());
                self.w.put(raw);
                self.w.put(b"\r\n");
                tags.push(tag);
            }
        }
        for (i, raw) in batch.iter().enumerate() {
            let d = if plus {
                self.wait(&tags[i])?
            } else {
                let tag = self.tag();
                self.w.put(format!("{tag} APPEND {} {{{}}}\r\n", self.mbox, raw.len()).as_bytes());
                let (line, _) = self.response_line()?;
                if line.starts_with('+') {
                    self.w.put(raw);
                    self.w.put(b"\r\n");
                    self.wait(&tag)?
                } else {
                    let rest = line.strip_prefix(tag.as_str()).and_then(|r| r.strip_prefix(' ')).unwrap_or(&line);
                    parse_done(rest, Vec::new(), Vec::new()).ok_or_else(|| {
                        Error::new(ErrorClass::Protocol, format!("{} sent a broken answer: \"{line}\"", self.w.peer))
                    })?
                }
            };
            if d.status == Status::Ok {
                out.push(Outcome::Delivered(d.describe()));
            } else if d.code_is("TRYCREATE") && !self.created {
                retry.get_or_insert(i);
                out.push(Outcome::Refused(classify(&self.w.peer, "APPEND", &d)));
            } else {
                out.push(Outcome::Refused(classify(&self.w.peer, &format!("APPEND to {}", self.mailbox), &d)));
            }
        }
        Ok(retry)
    }

    /// [`Imap::append_all`] with MULTIAPPEND (RFC 3502): one APPEND carries up to [`MULTI_MAX`]
    /// messages ([`MULTI_BYTES`]) — one transaction on the server (Dovecot saves them with one
    /// sync), all of them appended or none. The commands are pipelined with LITERAL+.
    fn multiappend(&mut self, batch: &[&[u8]], out: &mut Vec<Outcome>) -> Result<Option<usize>> {
        let mut chunks = Vec::new();
        let mut i = 0;
        while i < batch.len() {
            let (mut j, mut bytes) = (i, 0usize);
            while j < batch.len() && (j == i || (j - i < MULTI_MAX && bytes + batch[j].len() <= MULTI_BYTES)) {
                bytes += batch[j].len();
                j += 1;
            }
            let tag = self.tag();
            self.w.put(format!("{tag} APPEND {}", self.mbox).as_bytes());
            for raw in &batch[i..j] {
                self.w.put(format!(" {{{}+}}\r\n", raw.len()).as_bytes());
                self.w.put(raw);
            }
            self.w.put(b"\r\n");
            chunks.push((tag, i, j));
            i = j;
        }
        let mut retry = None;
        for (tag, i, j) in chunks {
            let d = self.wait(&tag)?;
            for k in i..j {
                if d.status == Status::Ok {
                    out.push(Outcome::Delivered(d.describe()));
                } else if d.code_is("TRYCREATE") && !self.created {
                    retry.get_or_insert(k);
                    out.push(Outcome::Refused(classify(&self.w.peer, "APPEND", &d)));
                } else {
                    out.push(Outcome::Refused(classify(&self.w.peer, &format!("APPEND to {}", self.mailbox), &d)));
                }
            }
        }
        Ok(retry)
    }

    /// Looks for a message in the mailbox (recovery of a delivery whose confirmation was lost): the
    /// messages whose Message-ID header matches (`UID SEARCH HEADER`) are fetched
    /// (`BODY.PEEK[]`, which leaves `\Seen` alone) and compared with `raw` (line ends as CRLF):
    /// the same bytes — or, with `traced` (an LMTP delivery), the same bytes after the trace
    /// headers the server put in front. Returns the UID found.
    pub fn find(&mut self, message_id: &str, raw: &[u8], traced: bool) -> Result<Option<u64>> {
        if !self.selected {
            let d = self.command(&format!("EXAMINE {}", self.mbox))?;
            if d.status != Status::Ok {
                // No mailbox: nothing was delivered into it.
                return Ok(None);
            }
            self.selected = true;
        }
        let Some(q) = quoted(&format!("<{message_id}>")) else { return Ok(None) };
        let d = self.command(&format!("UID SEARCH HEADER Message-ID {q}"))?;
        if d.status != Status::Ok {
            return Ok(None);
        }
        let uids: Vec<u64> = d
            .untagged
            .iter()
            .filter_map(|u| u.strip_prefix("* SEARCH"))
            .flat_map(|s| s.split(' ').filter_map(|n| n.parse().ok()).collect::<Vec<u64>>())
            .collect();
        if uids.is_empty() {
            return Ok(None);
        }
        let want = crlf(raw);
        let set: Vec<String> = uids.iter().map(|u| u.to_string()).collect();
        let d = self.command(&format!("UID FETCH {} (BODY.PEEK[])", set.join(",")))?;
        for (i, body) in &d.literals {
            let same = if traced {
                body.ends_with(&want) && is_trace(&body[..body.len() - want.len()])
            } else {
                *body == want
            };
            if same {
                return Ok(d.untagged.get(*i).and_then(|u| fetch_item(u, "UID")).or(Some(0)));
            }
        }
        Ok(None)
    }

    pub fn quit(mut self) {
        let _ = self.command("LOGOUT");
    }
}

/// `raw` with every line end as CRLF (as IMAP serves a message).
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Whether `head` is only trace header fields (what an LMTP server puts in front of a message:
/// Return-Path, Delivered-To, Received, and their continuation lines).
fn is_trace(head: &[u8]) -> bool {
    head.split(|b| *b == b'\n').filter(|l| !l.is_empty() && *l != b"\r").all(|l| {
        let name = |n: &[u8]| l.len() >= n.len() && l[..n.len()].eq_ignore_ascii_case(n);
        l[0] == b' ' || l[0] == b'\t' || name(b"Return-Path:") || name(b"Delivered-To:") || name(b"Received:")
    }) && (head.is_empty() || head.ends_with(b"\n"))
}

/// `{n}` or `{n+}` at the end of a line: a literal of n bytes follows.
fn literal_len(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', inner)?;
    let n = &inner[open + 1..];
    let n = n.strip_suffix(b"+").unwrap_or(n);
    std::str::from_utf8(n).ok()?.parse().ok()
}

/// "OK [CODE args] text" → its parts.
fn parse_done(rest: &str, untagged: Vec<String>, literals: Vec<(usize, Vec<u8>)>) -> Option<Done> {
    let (word, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = match word.to_ascii_uppercase().as_str() {
        "OK" => Status::Ok,
        "NO" => Status::No,
        "BAD" => Status::Bad,
        _ => return None,
    };
    let (code, text) = match text.strip_prefix('[').and_then(|t| t.split_once(']')) {
        Some((c, t)) => (Some(c.to_string()), t.trim_start().to_string()),
        None => (None, text.to_string()),
    };
    Some(Done { status, code, text, untagged, literals })
}

/// A number item of a FETCH response ("UID 12" in "* 3 FETCH (UID 12 RFC822.SIZE 345)").
fn fetch_item(line: &str, name: &str) -> Option<u64> {
    let mut words = line.split([' ', '(', ')']);
    while let Some(w) = words.next() {
        if w.eq_ignore_ascii_case(name) {
            return words.next()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_with_their_codes() {
        let d = parse_done("OK [APPENDUID 38505 3955] APPEND completed", Vec::new(), Vec::new()).unwrap();
        assert_eq!(
            (d.status, d.code.as_deref(), d.text.as_str()),
            (Status::Ok, Some("APPENDUID 38505 3955"), "APPEND completed")
        );
        let d = parse_done("NO [OVERQUOTA] Quota exceeded", Vec::new(), Vec::new()).unwrap();
        assert!(matches!(classify("h", "x", &d), Refusal::Temporary(_)));
        let d = parse_done("NO [TRYCREATE] Mailbox doesn't exist", Vec::new(), Vec::new()).unwrap();
        assert!(d.code_is("TRYCREATE"));
        assert!(matches!(classify("h", "x", &d), Refusal::Permanent(_)));
        let d = parse_done("NO Some failure", Vec::new(), Vec::new()).unwrap();
        assert!(matches!(classify("h", "x", &d), Refusal::Temporary(_)));
        assert!(parse_done("MAYBE", Vec::new(), Vec::new()).is_none());
    }

    #[test]
    fn literals_and_fetch_items() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {12}"), Some(12));
        assert_eq!(literal_len(b"a APPEND x {5+}"), Some(5));
        assert_eq!(literal_len(b"* OK fine"), None);
        assert_eq!(fetch_item("* 3 FETCH (UID 12 RFC822.SIZE 345)", "RFC822.SIZE"), Some(345));
        assert_eq!(fetch_item("* 3 FETCH (RFC822.SIZE 345 UID 12)", "UID"), Some(12));
        assert_eq!(quoted("a\"b\\c").as_deref(), Some("\"a\\\"b\\\\c\""));
        assert_eq!(quoted("caf\u{e9}"), None);
        assert_eq!(crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert!(is_trace(b"Return-Path: <a@b>\r\nDelivered-To: bob\r\nReceived: from x\r\n\tby y; date\r\n"));
        assert!(is_trace(b""));
        assert!(!is_trace(b"Subject: hi\r\n"));
    }
}
