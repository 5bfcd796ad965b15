//! `popbridge import NAME PATH`: the mail another tool kept — an mbox file, a maildir, or a
//! Thunderbird local folder (an mbox whose messages carry `X-Mozilla-Status` and `X-UIDL:`) —
//! into the account's mailbox, with INTERNALDATE and flags where the source records them.
//!
//! Streaming: the mbox is read line by line through a fixed buffer and only one message is held
//! at a time; a message larger than the account's `max_message_size` is counted and skipped
//! without being held (its bytes are read past). Messages are committed in groups
//! ([`COMMIT_EVERY`], [`COMMIT_BYTES`]) through the fetcher's own insert path
//! (`store::Delivery::import`).
//!
//! mbox variant: lines matching `^>+From ` lose one `>` (mboxrd). mboxrd is the variant that can
//! be undone exactly; a file written as mboxo (Thunderbird's own files: it quotes `From ` lines,
//! never `>From `) reads the same except for a body line that itself began with `>From `, which
//! mboxo cannot tell apart anyway. A separator is a `From ` line that carries a date (`From
//! sender Tue Dec  1 17:00:00 2026`, Thunderbird's `From - …`): an unquoted body line "From here"
//! (an mboxo writer's slip) does not split a message. The newline the writer put after each
//! message is removed, so the stored bytes are the message's own.
//!
//! Flags: maildir's `:2,` suffix (S seen, R answered, F flagged, D draft; T "trashed" becomes
//! `\Deleted`: marked for deletion but not yet expunged, as IMAP has it — the user's client
//! expunges it as it would have). Thunderbird's `X-Mozilla-Status` (0x0001 read, 0x0002 replied,
//! 0x0004 marked; 0x0008 expunged: skipped — Thunderbird had deleted it and only not yet
//! compacted the folder). Messages from maildir's `new/` without `S` arrive unread.
//!
//! INTERNALDATE: the date of the mbox `From ` line (asctime, taken as UTC) or the maildir file's
//! mtime, else the Date header as for fetched mail.
//!
//! Resume: each commit holds whole messages, and a message whose exact bytes are already in the
//! account's mailbox is not stored again (counted as "already there"). So an import that was
//! interrupted (even by kill -9) and is run again imports only what is missing; the price is that
//! two byte-identical messages in one source are stored once.
//!
//! UIDLs: a message's `X-UIDL:` that the account's server does not know, or knows only as not held
//! (`account import-state`), is recorded as held by the imported message: the fetcher does not
//! download it again.
//!
//! The import holds the account's fetch lock throughout: while a fetch runs it refuses.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::config::Account;
use crate::error::{Error, ErrorClass, Result};
use crate::mime::Timestamp;
use crate::store::deliver::{Claim, Import, Imported};
use crate::store::{Delivery, Store, flag};

use super::lock;

/// Messages per commit: one fsync for many, and little lost (only redone) when interrupted.
pub const COMMIT_EVERY: usize = 500;
/// Bytes per commit, so a group of large messages does not grow SQLite's page cache.
pub const COMMIT_BYTES: u64 = 32 * 1024 * 1024;
/// How much of one line is read at a time: a longer line is read in pieces of this size (only
/// the start of a line can be a separator or a quoted `From `).
const LINE_PIECE: usize = 64 * 1024;

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub imported: usize,
    /// Of `imported`, messages whose `X-UIDL` is now recorded as fetched.
    pub claimed: usize,
    /// Messages whose bytes were in the mailbox already (an earlier, interrupted run).
    pub already: usize,
    /// Larger than `max_message_size`: not imported.
    pub too_big: usize,
    /// Thunderbird had expunged them (`X-Mozilla-Status` 0x0008): not imported.
    pub expunged: usize,
    /// Maildir files that could not be read (named in `warnings`).
    pub unreadable: usize,
    pub warnings: Vec<String>,
}

/// One message from a source: its bytes, its flags (`store::flag` bits), its date if the source
/// gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub raw: Vec<u8>,
    pub flags: u8,
    pub date: Option<Timestamp>,
    /// Where it starts (mbox: byte offset) — for messages about it.
    pub at: String,
}

/// What a source yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Message(Item),
    /// Larger than the limit: `size` bytes read past, never held.
    TooBig {
        at: String,
        size: u64,
    },
}

/// An mbox read one message at a time.
pub struct MboxReader<R> {
    r: R,
    limit: u64,
    /// The separator line that starts the next message (already read).
    next_from: Option<Vec<u8>>,
    /// Bytes consumed so far.
    pos: u64,
    next_at: u64,
    line: Vec<u8>,
    started: bool,
}

/// The date of an mbox `From ` line (`From sender Tue Dec  1 17:00:00 2026`, asctime, UTC), if it
/// carries one; `None` also for a line that is not a separator.
pub fn from_line_date(line: &[u8]) -> Option<Timestamp> {
    let rest = line.strip_prefix(b"From ")?;
    let text = std::str::from_utf8(rest).ok()?;
    let mut t = text.split_ascii_whitespace();
    t.next()?; // the sender ("-" for Thunderbird)
    let month = t.by_ref().find_map(|w| crate::mime::date::MONTHS.iter().position(|m| m.eq_ignore_ascii_case(w)))?;
    let day: i64 = t.next()?.parse().ok()?;
    let mut hms = t.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi) = (hms.next()??, hms.next()??);
    let s = hms.next().flatten().unwrap_or(0);
    let year: i64 = t.find_map(|w| (w.len() == 4).then(|| w.parse().ok()).flatten())?;
    if !(1..=31).contains(&day) || !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..61).contains(&s) {
        return None;
    }
    let days = crate::mime::date::days_from_civil(year, month as i64 + 1, day);
    let unix = days * 86_400 + h * 3600 + mi * 60 + s;
    (year >= 1970).then_some(Timestamp { unix, offset_minutes: 0 })
}

impl<R: BufRead> MboxReader<R> {
    pub fn new(r: R, limit: u64) -> MboxReader<R> {
        MboxReader { r, limit, next_from: None, pos: 0, next_at: 0, line: Vec::new(), started: false }
    }

    /// Bytes read so far (for the progress bar).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next piece of a line into `self.line`: up to and including '\n', or [`LINE_PIECE`]
    /// bytes; returns whether it ends the line. Empty at the end of the file.
    fn piece(&mut self) -> std::io::Result<bool> {
        self.line.clear();
        loop {
            let buf = self.r.fill_buf()?;
            if buf.is_empty() {
                return Ok(false);
            }
            let room = LINE_PIECE - self.line.len();
            let (take, done) = match memchr::memchr(b'\n', &buf[..buf.len().min(room)]) {
                Some(i) => (i + 1, true),
                None => (buf.len().min(room), false),
            };
            self.line.extend_from_slice(&buf[..take]);
            self.r.consume(take);
            self.pos += take as u64;
            if done || self.line.len() >= LINE_PIECE {
                return Ok(done);
            }
        }
    }

    pub fn next_message(&mut self) -> Result<Option<Next>> {
        let io = |e: std::io::Error| Error::other(format!("cannot read the mbox: {e}"));
        if !self.started {
            self.started = true;
            let complete = self.piece().map_err(io)?;
            if self.line.is_empty() {
                return Ok(None);
            }
            if !complete || from_line_date(self.line.trim_ascii_end()).is_none() {
                return Err(Error::config("not an mbox file: its first line is not a \"From \" line with a date"));
            }
            self.next_from = Some(std::mem::take(&mut self.line));
        }
        let Some(from) = self.next_from.take() else { return Ok(None) };
        let date = from_line_date(from.trim_ascii_end());
        let at = self.next_at;
        let mut raw: Vec<u8> = Vec::new();
        let mut size: u64 = 0;
        let mut too_big = false;
        let mut at_line_start = true;
        loop {
            let start = self.pos;
            let complete = self.piece().map_err(io)?;
            if self.line.is_empty() {
                break;
            }
            let mut piece: &[u8] = &self.line;
            if at_line_start {
                if complete && piece.starts_with(b"From ") && from_line_date(piece.trim_ascii_end()).is_some() {
                    self.next_from = Some(std::mem::take(&mut self.line));
                    self.next_at = start;
                    break;
                }
                // mboxrd: one '>' of ">>From " quoting goes.
                let quotes = piece.iter().take_while(|b| **b == b'>').count();
                if quotes > 0 && piece[quotes..].starts_with(b"From ") {
                    piece = &piece[1..];
                }
            }
            at_line_start = complete;
            size += piece.len() as u64;
            if too_big {
                continue;
            }
            if size > self.limit.saturating_add(1) {
                too_big = true;
                raw = Vec::new();
                continue;
            }
            raw.extend_from_slice(piece);
        }
        // The writer's newline after the message (before the next "From ", or at the end).
        let at = format!("byte {at}");
        if too_big {
            return Ok(Some(Next::TooBig { at, size }));
        }
        if raw.last() == Some(&b'\n') {
            raw.pop();
        }
        if raw.len() as u64 > self.limit {
            return Ok(Some(Next::TooBig { at, size: raw.len() as u64 }));
        }
        Ok(Some(Next::Message(Item { raw, flags: 0, date, at })))
    }
}

/// Thunderbird's fields in a header block: `X-Mozilla-Status` flags, `X-UIDL`, and the bytes of
/// the fields Thunderbird adds (X-UIDL, X-Mozilla-Status, X-Mozilla-Status2, X-Mozilla-Keys).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MozFields {
    pub status: Option<u16>,
    pub uidl: Option<String>,
    pub added_bytes: u64,
}

pub fn moz_fields(raw: &[u8]) -> MozFields {
    let mut out = MozFields::default();
    let mut current: Option<usize> = None; // which field a continuation line belongs to
    const NAMES: [&str; 4] = ["x-uidl", "x-mozilla-status", "x-mozilla-status2", "x-mozilla-keys"];
    for line in raw.split_inclusive(|b| *b == b'\n') {
        if line.trim_ascii().is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if current.is_some() {
                out.added_bytes += line.len() as u64;
            }
            continue;
        }
        let name = line.split(|b| *b == b':').next().unwrap_or_default().trim_ascii();
        current = NAMES.iter().position(|n| name.eq_ignore_ascii_case(n.as_bytes()));
        let Some(i) = current else { continue };
        out.added_bytes += line.len() as u64;
        let value = String::from_utf8_lossy(line[name.len()..].strip_prefix(b":").unwrap_or_default().trim_ascii());
        match i {
            0 if out.uidl.is_none() && !value.is_empty() => out.uidl = Some(value.into_owned()),
            1 if out.status.is_none() => out.status = u16::from_str_radix(&value, 16).ok(),
            _ => {}
        }
    }
    out
}

/// The flags a maildir file name records (`:2,` suffix; a file in `new/` has none yet, so it
/// arrives unread).
pub fn maildir_flags(name: &str) -> u8 {
    let mut f = 0;
    if let Some((_, info)) = name.rsplit_once(":2,") {
        for c in info.chars() {
            f |= match c {
                'S' => flag::SEEN,
                'R' => flag::ANSWERED,
                'F' => flag::FLAGGED,
                'T' => flag::DELETED,
                'D' => flag::DRAFT,
                _ => 0,
            };
        }
    }
    f
}

/// The size the POP server gives a message a tool stored: without the fields the tool added,
/// with CRLF line ends (what POP sends).
fn server_size(raw: &[u8], added: u64) -> u64 {
    let bare_lf = raw.iter().enumerate().filter(|(i, b)| **b == b'\n' && (*i == 0 || raw[i - 1] != b'\r')).count();
    (raw.len() as u64).saturating_sub(added) + bare_lf as u64
}

/// Progress: bytes done and the total.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Runs `popbridge import` for `account` from `path` (see the module's doc).
pub fn import(
    store: &Store,
    lock_dir: &Path,
    account: &Account,
    path: &Path,
    progress: Progress<'_>,
) -> Result<Outcome> {
    let label = format!("account \"{}\"", account.name);
    run(store, lock_dir, account, path, progress).map_err(|e| e.context(&label))
}

fn run(store: &Store, lock_dir: &Path, account: &Account, path: &Path, progress: Progress<'_>) -> Result<Outcome> {
    let meta = std::fs::metadata(path).map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
    let _lock = match lock::AccountLock::acquire(lock_dir, &account.name) {
        Ok(l) => l,
        Err(e) if e.class == ErrorClass::Temporary => {
            return Err(Error::new(
                ErrorClass::Temporary,
                format!("{}; nothing was imported — run the import again once that fetch is over", e.message),
            ));
        }
        Err(e) => return Err(e),
    };
    let ids = store.ensure_account(&account.name)?;
    let server = store.pop_server(ids.account, &account.pop.mailbox_key())?;
    let mut d = Delivery::new(store, ids, server.id)?;
    let limit = account.pop.max_message_size;
    let mut out = Outcome::default();
    let now = crate::store::now();
    if meta.is_dir() {
        let files = maildir_files(path)?;
        let total: u64 = files.iter().map(|f| f.1).sum();
        let mut done = 0u64;
        for (file, len) in files {
            done += len;
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let at = file.display().to_string();
            if len > limit {
                out.too_big += 1;
                out.warnings.push(format!("{at}: {len} bytes, larger than max_message_size: not imported"));
                continue;
            }
            let read = File::open(&file).and_then(|f| {
                let mtime = f.metadata()?.modified()?;
                let mut raw = Vec::with_capacity(len as usize);
                f.take(limit.saturating_add(1)).read_to_end(&mut raw)?;
                Ok((raw, mtime))
            });
            let (raw, mtime) = match read {
                Ok(r) => r,
                Err(e) => {
                    out.unreadable += 1;
                    out.warnings.push(format!("{at}: cannot read it: {e}"));
                    continue;
                }
            };
            if raw.len() as u64 > limit {
                out.too_big += 1;
                out.warnings.push(format!("{at}: larger than max_message_size: not imported"));
                continue;
            }
            let date = mtime
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|t| Timestamp { unix: t.as_secs() as i64, offset_minutes: 0 });
            let item = Item { flags: maildir_flags(&name), raw, date, at };
            add(&mut d, item, now, &mut out)?;
            progress(done, total);
        }
    } else {
        let total = meta.len();
        let f = File::open(path).map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
        let mut r = MboxReader::new(BufReader::with_capacity(256 * 1024, f), limit);
        while let Some(next) = r.next_message().map_err(|e| e.context(path.display().to_string()))? {
            match next {
                Next::TooBig { at, size } => {
                    out.too_big += 1;
                    out.warnings
                        .push(format!("message at {at}: {size} bytes, larger than max_message_size: not imported"));
                }
                Next::Message(item) => add(&mut d, item, now, &mut out)?,
            }
            progress(r.position(), total);
        }
    }
    d.commit()?;
    Ok(out)
}

/// Stores one message (see the module's doc for what is skipped), committing each group.
fn add(d: &mut Delivery, mut item: Item, now: i64, out: &mut Outcome) -> Result<()> {
    let moz = moz_fields(&item.raw);
    if let Some(s) = moz.status {
        if s & 0x0008 != 0 {
            out.expunged += 1;
            return Ok(());
        }
        for (bit, f) in [(0x0001, flag::SEEN), (0x0002, flag::ANSWERED), (0x0004, flag::FLAGGED)] {
            if s & bit != 0 {
                item.flags |= f;
            }
        }
    }
    let claim = moz.uidl.as_ref().map(|u| Claim {
        uidl: u.clone(),
        server_size: server_size(&item.raw, moz.added_bytes),
        fingerprint: super::keys::header_fingerprint(&item.raw),
    });
    let m = Import { raw: &item.raw, flags: item.flags, date: item.date, claim: claim.as_ref() };
    match d.import(&m, now)? {
        Imported::AlreadyThere => out.already += 1,
        Imported::New { claimed, .. } => {
            out.imported += 1;
            out.claimed += usize::from(claimed);
        }
    }
    let (n, bytes) = d.pending();
    if n >= COMMIT_EVERY || bytes >= COMMIT_BYTES {
        d.commit()?;
    }
    Ok(())
}

/// A maildir's message files: `cur/` and `new/`, each sorted by name (maildir names begin with
/// the delivery time), with its length.
fn maildir_files(dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let (cur, new) = (dir.join("cur"), dir.join("new"));
    if !cur.is_dir() && !new.is_dir() {
        return Err(Error::config(format!(
            "{} is a directory but not a maildir (it has neither cur/ nor new/)",
            dir.display()
        )));
    }
    let mut out = Vec::new();
    for sub in [cur, new] {
        let Ok(entries) = std::fs::read_dir(&sub) else { continue };
        let mut v = Vec::new();
        for e in entries {
            let e = e.map_err(|e| Error::config(format!("cannot read {}: {e}", sub.display())))?;
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let m = e.metadata().map_err(|e| Error::config(format!("cannot read {}: {e}", sub.display())))?;
            if m.is_file() {
                v.push((e.path(), m.len()));
            }
        }
        v.sort();
        out.extend(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], limit: u64) -> Vec<Next> {
        let mut r = MboxReader::new(std::io::BufReader::with_capacity(7, data), limit);
        let mut v = Vec::new();
        while let Some(n) = r.next_message().unwrap() {
            v.push(n);
        }
        v
    }

    fn raws(v: &[Next]) -> Vec<Vec<u8>> {
        v.iter()
            .map(|n| match n {
                Next::Message(i) => i.raw.clone(),
                Next::TooBig { size, .. } => format!("too big {size}").into_bytes(),
            })
            .collect()
    }

    #[test]
    fn mboxrd_unquotes_one_level_and_strips_the_separator_newline() {
        let data = b"From a@b Tue Dec  1 17:00:00 2026\nSubject: x\n\n>From here\n>>From there\nFrom me, no date\n\nFrom - Wed Dec 02 08:30:05 2026\r\nA: b\r\n\r\nno final newline\n";
        let v = read_all(data, 1000);
        assert_eq!(
            raws(&v),
            vec![
                b"Subject: x\n\nFrom here\n>From there\nFrom me, no date\n".to_vec(),
                b"A: b\r\n\r\nno final newline".to_vec()
            ]
        );
        let Next::Message(first) = &v[0] else { panic!() };
        // 2026-12-01 is day 20788 of the Unix epoch.
        assert_eq!(first.date.map(|d| d.unix), Some(20_788 * 86_400 + 17 * 3600));
        assert_eq!(from_line_date(b"From - Thu Jan  1 00:00:10 1970").map(|d| d.unix), Some(10));
        assert_eq!(read_all(b"", 10), vec![]);
    }

    #[test]
    fn an_oversized_message_is_skipped_and_the_next_one_read() {
        let data = b"From x Thu Jan  1 00:00:10 1970\nAAAAAAAAAAAAAAAAAAAAAAAAAA\nBBBBBBBBBBBBBBBBBB\n\nFrom x Thu Jan  1 00:00:10 1970\nsmall\n";
        assert_eq!(raws(&read_all(data, 20)), vec![b"too big 47".to_vec(), b"small".to_vec()]);
    }

    #[test]
    fn thunderbird_fields_and_maildir_flags() {
        let raw = b"X-UIDL: 0001abc\r\nX-Mozilla-Status: 0005\r\nX-Mozilla-Status2: 00000000\r\nSubject: s\r\n\r\nX-UIDL: not a header\r\n";
        let m = moz_fields(raw);
        assert_eq!((m.status, m.uidl.as_deref(), m.added_bytes), (Some(5), Some("0001abc"), 17 + 24 + 29));
        assert_eq!(maildir_flags("123.x:2,FRS"), flag::SEEN | flag::ANSWERED | flag::FLAGGED);
        assert_eq!(maildir_flags("123.x:2,DT"), flag::DRAFT | flag::DELETED);
        assert_eq!(maildir_flags("123.x"), 0);
        assert_eq!(server_size(b"a\nb\r\n", 0), 6);
    }
}
