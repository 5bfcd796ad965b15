//! The byte-fed reply parser and the FIFO of expected replies.
//!
//! Hot path: RETR bodies. The body scanner keeps its state between feeds (at line start? was the
//! last byte a CR?), so nothing is ever rescanned, and it consumes partial lines at once: the input
//! buffer never holds more than one read chunk, and no body line has to fit anywhere. Ordinary
//! lines (CRLF, not starting with ".") are skipped 64 bytes at a time by a check the compiler
//! turns into SIMD compares, and copied as one run; a run breaks only where the wire differs from
//! the body: a stuffed dot, a bare LF, the terminator. With nothing buffered, `feed` scans the
//! caller's bytes in place, so a body is copied exactly once, into the `Vec` the reply hands over.

use std::collections::VecDeque;

use memchr::{memchr, memchr_iter};

use super::command::Command;
use super::parse::parse_resp_code;
use super::{Body, Limits, ProtocolError, Reply, RespCode, Sent, Status, display_line};

/// After a large read the input buffer keeps its capacity; past this much it is given back once
/// empty, so one burst does not pin memory for the whole session.
const KEEP_CAPACITY: usize = 256 * 1024;

/// A POP3 client session's wire state. See the module docs of `pop3` for a sketch of use.
pub struct Client {
    limits: Limits,
    /// Commands sent and not yet answered, oldest first; starts with the greeting. With each,
    /// the body size the caller expects (0: unknown), see [`Client::send_with_size_hint`].
    pending: VecDeque<(Sent, u64)>,
    /// Input; `buf[pos..]` is not consumed yet.
    buf: Vec<u8>,
    pos: usize,
    /// While looking for a status line's end: `buf[pos..pos + scanned]` holds no LF.
    scanned: usize,
    /// The multi-line reply being received, once its `+OK` line has arrived.
    body: Option<Partial>,
    /// A reply completed by `feed` (see there), returned by the next `poll`.
    ready: Option<Reply>,
    eof: bool,
    /// Bytes were fed while nothing was expected; reported by the next `poll`.
    unsolicited: bool,
    /// The first status line already exceeds the limit: further input is discarded.
    overflow: bool,
    /// Set by the first error; every later `poll` returns it again.
    failed: Option<ProtocolError>,
}

impl Client {
    /// A client waiting for the server's greeting (the first expected reply, [`Sent::Greeting`]).
    pub fn new(limits: Limits) -> Self {
        Client {
            limits,
            pending: VecDeque::from([(Sent::Greeting, 0)]),
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            body: None,
            ready: None,
            eof: false,
            unsolicited: false,
            overflow: false,
            failed: None,
        }
    }

    /// Encode `cmd` onto `out` (appends; never clears) and remember what its reply looks like.
    ///
    /// An argument that cannot be sent safely (CR/LF/NUL, see [`super::check_arg`]) is not
    /// encoded at all; the client then fails, and the next [`Client::poll`] returns
    /// [`ProtocolError::InvalidArgument`]. Use [`Client::try_send`] to handle that without failing.
    pub fn send(&mut self, cmd: &Command<'_>, out: &mut Vec<u8>) {
        if let Err(e) = self.try_send(cmd, out) {
            self.failed.get_or_insert(e);
        }
    }

    /// Like [`Client::send`], but an invalid argument is returned (nothing appended, nothing
    /// expected, the client still usable).
    pub fn try_send(&mut self, cmd: &Command<'_>, out: &mut Vec<u8>) -> Result<Sent, ProtocolError> {
        self.send_inner(cmd, 0, out)
    }

    /// Like [`Client::send`] for a `Retr` whose size is known from `LIST`: the body buffer is
    /// reserved at that size up front instead of growing by doubling (about 1 µs per 30 KB
    /// message). Used only when the `+OK` line does not state a size itself ("+OK 120 octets");
    /// capped like that one, so a wrong size costs little. Ignored for other commands.
    pub fn send_with_size_hint(&mut self, cmd: &Command<'_>, size: u64, out: &mut Vec<u8>) {
        if let Err(e) = self.send_inner(cmd, size, out) {
            self.failed.get_or_insert(e);
        }
    }

    fn send_inner(&mut self, cmd: &Command<'_>, size: u64, out: &mut Vec<u8>) -> Result<Sent, ProtocolError> {
        let sent = cmd.encode(out)?;
        self.pending.push_back((sent, size));
        Ok(sent)
    }

    /// Replies still expected (commands sent and not yet answered, greeting included).
    pub fn in_flight(&self) -> usize {
        self.pending.len() + usize::from(self.ready.is_some())
    }

    /// Bytes read from the socket, in any chunking.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if bytes.is_empty() || self.failed.is_some() || self.overflow {
            return;
        }
        self.compact();
        if self.pending.is_empty() {
            // Nothing may arrive now (RFC 1939 §3: the server only answers). Keep a bounded
            // amount so `buffered()` shows it; `poll` reports it.
            self.unsolicited = true;
            let room = self.limits.max_line.saturating_sub(self.buffered());
            self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
            return;
        }
        // Fast path for the bulk of a session (RETR bodies): with nothing buffered, scan the
        // caller's bytes where they are instead of copying them into `buf` first. A reply
        // completed here waits in `ready`; the rest of the bytes is buffered as usual.
        if self.ready.is_none()
            && self.pos == self.buf.len()
            && let Some(partial) = &mut self.body
        {
            let (used, done) = partial.scan(bytes, self.limits.max_body);
            bytes = &bytes[used..];
            if done {
                self.pending.pop_front();
                self.ready = self.body.take().map(Partial::into_reply);
            }
            if bytes.is_empty() {
                return;
            }
        }
        self.buf.extend_from_slice(bytes);
        if self.body.is_none() {
            self.guard_status_line();
        }
    }

    /// The socket reached EOF.
    pub fn feed_eof(&mut self) {
        self.eof = true;
    }

    /// Bytes fed but not yet consumed (after STLS the caller checks this is empty: leftover
    /// plaintext after "+OK" to STLS is an injection attempt, CVE-2011-0411 class, and must abort).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete reply, Ok(None) if more input is needed. After an Err the client is dead:
    /// every later call returns the same error.
    pub fn poll(&mut self) -> Result<Option<Reply>, ProtocolError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.poll_inner();
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn poll_inner(&mut self) -> Result<Option<Reply>, ProtocolError> {
        // It arrived before anything still buffered.
        if let Some(reply) = self.ready.take() {
            return Ok(Some(reply));
        }
        if self.unsolicited {
            return Err(ProtocolError::Unsolicited);
        }
        loop {
            if let Some(partial) = &mut self.body {
                let (used, done) = partial.scan(&self.buf[self.pos..], self.limits.max_body);
                self.pos += used;
                if !done {
                    if self.eof {
                        return Err(ProtocolError::Eof { waiting_for: partial.to, in_body: true });
                    }
                    return Ok(None);
                }
                self.pending.pop_front();
                return Ok(self.body.take().map(Partial::into_reply));
            }

            let Some(&(to, expected)) = self.pending.front() else {
                if self.buffered() > 0 {
                    return Err(ProtocolError::Unsolicited);
                }
                return Ok(None);
            };

            let avail = &self.buf[self.pos..];
            let from = self.scanned.min(avail.len());
            let Some(lf) = memchr(b'\n', &avail[from..]).map(|i| from + i) else {
                self.scanned = avail.len();
                if avail.len() > self.line_budget() {
                    return Err(self.too_long());
                }
                if self.eof {
                    return Err(ProtocolError::Eof { waiting_for: to, in_body: false });
                }
                return Ok(None);
            };
            // "Status lines: strip CR/LF": any CRs before the LF go too.
            let mut end = lf;
            while end > 0 && avail[end - 1] == b'\r' {
                end -= 1;
            }
            // The raw line is held to the same budget as one still waiting for its LF, so the
            // verdict does not depend on how the input was chunked (a line within the limit but
            // followed by 3+ CRs used to pass whole and fail when cut before the LF).
            if end > self.limits.max_line || lf > self.line_budget() {
                return Err(self.too_long());
            }
            let (status, code, text) = parse_status(to, &avail[..end])?;
            self.pos += lf + 1;
            self.scanned = 0;

            if status == Status::Ok && to.multiline() {
                let hint = size_hint(to, &text, expected, self.limits.max_body);
                let data = Vec::with_capacity(hint);
                self.body = Some(Partial {
                    to,
                    code,
                    text,
                    data,
                    seen: 0,
                    oversized: false,
                    line_start: true,
                    cr_pending: false,
                });
                continue;
            }
            self.pending.pop_front();
            return Ok(Some(Reply { to, status, code, text, body: Body::None }));
        }
    }

    /// Bytes a status line may occupy before its LF: the limit plus a CR, plus one spare CR.
    fn line_budget(&self) -> usize {
        self.limits.max_line.saturating_add(2)
    }

    fn too_long(&self) -> ProtocolError {
        ProtocolError::LineTooLong { limit: self.limits.max_line }
    }

    /// Called from `feed` while a status line is awaited: if the line has no end within the
    /// limit, stop buffering (a server streaming a line without end cannot grow our memory).
    /// The scan position is kept, so `poll` does not search the same bytes again.
    fn guard_status_line(&mut self) {
        let avail = &self.buf[self.pos..];
        let from = self.scanned.min(avail.len());
        match memchr(b'\n', &avail[from..]) {
            // `scanned` stops at the LF: `poll` finds it at once.
            Some(i) => self.scanned = from + i,
            None => {
                self.scanned = avail.len();
                let budget = self.line_budget();
                if avail.len() > budget {
                    self.overflow = true;
                    self.buf.truncate(self.pos + budget + 1);
                    self.scanned = budget + 1;
                }
            }
        }
    }

    /// Drops consumed input, but only when it is at least as long as what is left: each byte is
    /// then moved at most once on average, and a buffer of many small replies is not shifted
    /// after each one.
    fn compact(&mut self) {
        if self.pos == 0 {
            return;
        }
        let rest = self.buf.len() - self.pos;
        if rest == 0 {
            self.buf.clear();
            self.pos = 0;
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf.shrink_to(KEEP_CAPACITY / 4);
            }
        } else if self.pos >= rest {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// Splits a status line (line end already removed) into status, response code and text.
fn parse_status(to: Sent, line: &[u8]) -> Result<(Status, Option<RespCode>, String), ProtocolError> {
    // Status indicators are upper-case in RFC 1939; accept any case. "+OK" is tested first so it
    // is never taken for a continuation ("+" SP base64, RFC 5034 §4 — and bare "+" seen in the wild).
    let (status, rest) = if starts_with_ignore_case(line, b"+OK") {
        (Status::Ok, &line[3..])
    } else if starts_with_ignore_case(line, b"-ERR") {
        (Status::Err, &line[4..])
    } else if line.first() == Some(&b'+') && to.allows_continue() {
        (Status::Continue, &line[1..])
    } else {
        return Err(ProtocolError::BadStatus { line: display_line(line) });
    };
    let text = String::from_utf8_lossy(rest);
    let text = text.trim();
    if status == Status::Continue {
        return Ok((status, None, text.to_owned()));
    }
    let (code, text) = parse_resp_code(text);
    Ok((status, code, text.to_owned()))
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// Width of the blocks [`find_special_lf`] checks at once: wide enough for the compiler to use
/// vector instructions, narrow enough that a block with something in it is cheap to rescan.
const BLOCK: usize = 64;

/// The first LF in `input[from..limit]` that the body scanner must look at: a bare LF (not after
/// a CR), an LF followed by "." (stuffing or the terminator), or an LF that is the last input
/// byte (what follows is unknown yet). Neighbours are looked up in all of `input`; `cr_before`
/// tells whether the byte before `input[0]` was a CR.
///
/// Ordinary CRLF line ends are skipped a block at a time, without a call per line: with a
/// `memchr` call per LF, a 30 KB message cost about 8 µs; this way, about 3.
fn find_special_lf(input: &[u8], from: usize, limit: usize, cr_before: bool) -> Option<usize> {
    let len = input.len();
    let limit = limit.min(len);
    let special = |k: usize| {
        let bare = match k.checked_sub(1) {
            Some(p) => input[p] != b'\r',
            None => !cr_before,
        };
        bare || input.get(k + 1).is_none_or(|&next| next == b'.')
    };
    let mut s = from;
    if s == 0 {
        // The block check needs a byte before; input[0]'s is `cr_before`.
        match input.first() {
            None => return None,
            Some(b'\n') if special(0) => return Some(0),
            Some(_) => s = 1,
        }
    }
    while s < limit {
        // Whole blocks [s, s + BLOCK) whose neighbours on both sides are inside the input.
        while s + BLOCK <= limit && s + BLOCK < len && !block_has_special_lf(&input[s - 1..s + BLOCK + 1]) {
            s += BLOCK;
        }
        let end = (s + BLOCK).min(limit);
        if let Some(k) = memchr_iter(b'\n', &input[s..end]).map(|off| s + off).find(|&k| special(k)) {
            return Some(k);
        }
        s = end;
    }
    None
}

/// Whether `w[1..=BLOCK]` holds an LF that is bare or followed by "."; `w[0]` and
/// `w[BLOCK + 1]` are the neighbours. Written lane by lane so it compiles to SIMD compares.
fn block_has_special_lf(w: &[u8]) -> bool {
    let Ok(w) = <&[u8; BLOCK + 2]>::try_from(w) else {
        return true; // not reached; "look closer" is always a safe answer
    };
    let mut acc = 0u8;
    for k in 0..BLOCK {
        let lf = u8::from(w[k + 1] == b'\n');
        let bare = u8::from(w[k] != b'\r');
        let dot = u8::from(w[k + 2] == b'.');
        acc |= lf & (bare | dot);
    }
    acc != 0
}

/// Many servers begin a RETR answer with the size ("+OK 120 octets", RFC 1939 §7); the caller
/// may know it from LIST. Reserving it up front saves the copies of growing by doubling. It is
/// only the server's word, so it is capped: a lie costs at most this much, and is given back
/// when the reply completes.
const SIZE_HINT_CAP: u64 = 8 * 1024 * 1024;

/// Bytes to reserve for the body of a `+OK` to `to` with status text `text`; `expected` is the
/// caller's size (0: none).
fn size_hint(to: Sent, text: &str, expected: u64, max_body: u64) -> usize {
    if !matches!(to, Sent::Retr(_)) {
        return 0;
    }
    let stated = text
        .split_ascii_whitespace()
        .next()
        .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse::<u64>().ok());
    let size = stated.unwrap_or(expected);
    usize::try_from(size.min(max_body).min(SIZE_HINT_CAP)).unwrap_or(0)
}

/// How much input the body scanner checks before copying it (see `Partial::scan`).
const SCAN_WINDOW: usize = 8 * 1024;

/// A multi-line reply in progress.
struct Partial {
    to: Sent,
    code: Option<RespCode>,
    text: String,
    data: Vec<u8>,
    /// Body bytes produced so far (unstuffed, CRLF-normalized), counted on past the limit.
    seen: u64,
    oversized: bool,
    /// The next input byte starts a line (so a "." there is stuffing or the terminator).
    line_start: bool,
    /// Mid-line, the last byte consumed was a CR: an LF that starts the next feed ends the line
    /// normally instead of being a bare LF.
    cr_pending: bool,
}

impl Partial {
    /// Consumes body bytes from `input`; returns how many, and whether the terminator was among
    /// them. Leaves at most 2 bytes unconsumed (a "." or ".\r" at line start, undecided).
    fn scan(&mut self, input: &[u8], max: u64) -> (usize, bool) {
        let mut i = 0;
        loop {
            if self.line_start {
                match input.get(i) {
                    None => return (i, false),
                    // RFC 1939 §3: ".CRLF" ends the body; any other line starting with "." had
                    // that dot added by the server. ".LF" counts too (bare-LF servers).
                    Some(b'.') => match input.get(i + 1) {
                        None => return (i, false),
                        Some(b'\n') => return (i + 2, true),
                        Some(b'\r') => match input.get(i + 2) {
                            None => return (i, false),
                            Some(b'\n') => return (i + 3, true),
                            Some(_) => i += 1,
                        },
                        Some(_) => i += 1,
                    },
                    Some(_) => {}
                }
                self.line_start = false;
                self.cr_pending = false;
            }

            // Mid-line at `i`. `run` is where the bytes not yet copied start. Ordinary lines
            // (CRLF, next line not starting with ".") are skipped in bulk and copied as one run.
            let mut run = i;
            let mut at = i;
            loop {
                // A window at a time, so the bytes are still in L1 cache when `emit` copies them.
                let limit = at.saturating_add(SCAN_WINDOW);
                let Some(lf) = find_special_lf(input, at, limit, self.cr_pending) else {
                    if limit < input.len() {
                        self.emit(&input[run..limit], max);
                        run = limit;
                        at = limit;
                        continue;
                    }
                    // No line end needing attention up to the end of the input, and the input
                    // does not end in LF: the tail is a partial line. Copy it now and remember
                    // whether it ended in CR.
                    let rest = &input[run..];
                    if let Some(&last) = rest.last() {
                        self.cr_pending = last == b'\r';
                    }
                    self.emit(rest, max);
                    return (input.len(), false);
                };
                let bare = match lf.checked_sub(1) {
                    Some(p) => input[p] != b'\r',
                    None => !self.cr_pending,
                };
                if bare {
                    self.emit(&input[run..lf], max);
                    self.emit(b"\r\n", max);
                    run = lf + 1;
                }
                match input.get(lf + 1) {
                    None => {
                        self.emit(&input[run..], max);
                        self.line_start = true;
                        return (input.len(), false);
                    }
                    Some(b'.') => {
                        self.emit(&input[run..lf + 1], max);
                        self.line_start = true;
                        i = lf + 1;
                        break;
                    }
                    Some(_) => at = lf + 1,
                }
            }
        }
    }

    /// Appends body bytes, or only counts them once the body is over `max`. The buffer grows by
    /// doubling but never past `max`, so memory stays within the limit.
    fn emit(&mut self, bytes: &[u8], max: u64) {
        if bytes.is_empty() {
            return;
        }
        self.seen = self.seen.saturating_add(bytes.len() as u64);
        if self.oversized {
            return;
        }
        if self.seen > max {
            self.oversized = true;
            self.data = Vec::new();
            return;
        }
        let need = self.data.len() + bytes.len();
        if need > self.data.capacity() {
            let want = need.max(self.data.capacity().saturating_mul(2)).max(8 * 1024);
            // `need <= seen <= max`, so the cap never goes below `need`.
            let cap = usize::try_from(max).map_or(want, |m| want.min(m)).max(need);
            self.data.reserve_exact(cap - self.data.len());
        }
        self.data.extend_from_slice(bytes);
    }

    fn into_reply(mut self) -> Reply {
        // Only a size hint that was a lie leaves this much unused (doubling stays within 2x).
        if self.data.capacity() > self.data.len().saturating_mul(2).max(64 * 1024) {
            self.data.shrink_to_fit();
        }
        Reply {
            to: self.to,
            status: Status::Ok,
            code: self.code,
            text: self.text,
            body: if self.oversized { Body::Oversized { bytes_seen: self.seen } } else { Body::Data(self.data) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious definition `find_special_lf` must agree with.
    fn naive(input: &[u8], from: usize, limit: usize, cr_before: bool) -> Option<usize> {
        (from..limit.min(input.len())).find(|&k| {
            input[k] == b'\n'
                && (if k == 0 { !cr_before } else { input[k - 1] != b'\r' }
                    || k + 1 == input.len()
                    || input[k + 1] == b'.')
        })
    }

    #[test]
    fn find_special_lf_matches_naive() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for _ in 0..20_000 {
            let len = rand(400);
            // Mostly ordinary text with CRLF, sometimes the bytes that matter.
            let input: Vec<u8> = (0..len)
                .map(|_| match rand(40) {
                    0 => b'\n',
                    1 => b'\r',
                    2 => b'.',
                    3..=6 => [b'\r', b'\n'][rand(2)],
                    _ => b'a',
                })
                .collect();
            let input = if rand(2) == 0 {
                input
            } else {
                // CRLF-only text with some dot lines: the fast path's common case.
                let mut v = Vec::new();
                while v.len() < len {
                    if rand(8) == 0 {
                        v.push(b'.');
                    }
                    v.extend(std::iter::repeat_n(b'x', rand(90)));
                    v.extend_from_slice(b"\r\n");
                }
                v
            };
            let from = rand(input.len() + 1);
            let limit = from + rand(input.len() + 2);
            let cr = rand(2) == 0;
            assert_eq!(
                find_special_lf(&input, from, limit, cr),
                naive(&input, from, limit, cr),
                "{input:?} {from} {limit} {cr}"
            );
        }
    }

    fn partial() -> Partial {
        Partial {
            to: Sent::Retr(1),
            code: None,
            text: String::new(),
            data: Vec::new(),
            seen: 0,
            oversized: false,
            line_start: true,
            cr_pending: false,
        }
    }

    #[test]
    fn body_memory_stays_within_max_body() {
        let max = 100_000u64;
        let mut p = partial();
        let line = [b'x'; 999];
        for _ in 0..100 {
            p.emit(&line, max);
            assert!(p.data.capacity() as u64 <= max, "{}", p.data.capacity());
        }
        assert_eq!(p.data.len(), 99_900);
        p.emit(&line, max);
        assert!(p.oversized);
        assert_eq!(p.data.capacity(), 0);
        assert_eq!(p.seen, 100_899);
    }

    #[test]
    fn size_hints() {
        let max = super::super::DEFAULT_MAX_BODY;
        let hint = |to, text, expected| size_hint(to, text, expected, max);
        assert_eq!(hint(Sent::Retr(1), "120 octets", 0), 120);
        assert_eq!(hint(Sent::Retr(1), "120 octets", 999), 120);
        assert_eq!(hint(Sent::Retr(1), "message follows", 0), 0);
        assert_eq!(hint(Sent::Retr(1), "message follows", 999), 999);
        assert_eq!(hint(Sent::Retr(1), "", 0), 0);
        assert_eq!(hint(Sent::Retr(1), "+5 octets", 0), 0);
        assert_eq!(hint(Sent::Retr(1), "99999999999999999999999 octets", 7), 7);
        assert_eq!(hint(Sent::Retr(1), "40000000 octets", 0), SIZE_HINT_CAP as usize);
        assert_eq!(hint(Sent::Retr(1), "", u64::MAX), SIZE_HINT_CAP as usize);
        assert_eq!(size_hint(Sent::Retr(1), "4000 octets", 0, 1000), 1000);
        assert_eq!(hint(Sent::Top(1, 0), "120 octets", 120), 0);
        // A lying hint is given back when the reply completes.
        let mut c = Client::new(Limits::default());
        c.feed(b"+OK\r\n");
        c.poll().unwrap();
        c.send(&Command::Retr(1), &mut Vec::new());
        c.feed(b"+OK 8000000 octets\r\nhi\r\n.\r\n");
        let r = c.poll().unwrap().unwrap();
        let Body::Data(d) = r.body else { panic!() };
        assert_eq!(d, b"hi\r\n");
        assert!(d.capacity() < 64 * 1024);
        // The caller's size (from LIST) when the server states none: reserved exactly.
        let body = b"0123456789abcdefghijklmnopqrstuvwxyz\r\n".repeat(1000);
        c.send_with_size_hint(&Command::Retr(2), body.len() as u64, &mut Vec::new());
        c.feed(b"+OK message follows\r\n");
        c.feed(&body);
        c.feed(b".\r\n");
        let Body::Data(d) = c.poll().unwrap().unwrap().body else { panic!() };
        assert_eq!((d.len(), d.capacity()), (body.len(), body.len()));
        // Invalid arguments fail the client, as with `send`.
        c.send_with_size_hint(&Command::User("a\nb"), 5, &mut Vec::new());
        assert!(matches!(c.poll(), Err(ProtocolError::InvalidArgument { .. })));
    }

    #[test]
    fn fast_path_reply_waits_for_poll() {
        let mut c = Client::new(Limits::default());
        c.feed(b"+OK\r\n");
        c.poll().unwrap();
        c.send(&Command::Retr(1), &mut Vec::new());
        c.send(&Command::Noop, &mut Vec::new());
        c.feed(b"+OK\r\n");
        assert_eq!(c.poll().unwrap(), None);
        // Nothing buffered: the next feed is scanned in place and completes the body.
        c.feed(b"body\r\n.\r\n+OK");
        assert_eq!(c.buffered(), 3);
        assert_eq!(c.in_flight(), 2);
        c.feed(b" noop\r\n");
        let r = c.poll().unwrap().unwrap();
        assert_eq!(r.body, Body::Data(b"body\r\n".to_vec()));
        assert_eq!(c.in_flight(), 1);
        assert_eq!(c.poll().unwrap().unwrap().text, "noop");
        assert_eq!(c.in_flight(), 0);
        // EOF after a reply completed in `feed`: the reply still comes first.
        c.send(&Command::Retr(2), &mut Vec::new());
        c.feed(b"+OK\r\n");
        assert_eq!(c.poll().unwrap(), None);
        c.feed(b"x\r\n.\r\n");
        c.feed_eof();
        assert!(c.poll().unwrap().is_some());
        assert_eq!(c.poll().unwrap(), None);
    }
}
