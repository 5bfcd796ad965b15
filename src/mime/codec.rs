//! Compact, dependency-free binary form of `MessageMeta` for the store.
//!
//! Layout: magic `0xB7`, `META_VERSION` (varint), then the fields in declaration order. Integers
//! are LEB128 varints (signed ones zigzag), strings are length-prefixed UTF-8, `Option<String>`
//! is 0 for None or len+1, lists are count-prefixed. Typically 3-4x smaller than JSON. Decoding
//! checks every length and the nesting depth, so corrupt bytes give None, never a panic.
//!
//! Why not serde (`MessageMeta` derives it) with a compact format crate? Measured (issue 14,
//! `tests/bench/meta_codec.rs` (`cargo run --release --example meta_codec -- DIR`), release build, the harness corpus `gen-mail.py --count 2000 --seed
//! 14`, a loaded 2-core machine): this codec 470.5 bytes, 0.68 µs to encode and 1.85 µs to decode
//! per message; postcard 1.2 574.3 bytes (+22%), 1.28 µs (1.9×) and 2.43 µs (1.3×). Every FETCH
//! of envelope or body structure decodes one of these per message, and the store keeps one per
//! message; switching would also need a migration re-encoding every stored meta. So it stays, and
//! the example re-measures it.

use super::{Address, Envelope, META_VERSION, MessageMeta, Part, Timestamp};

const MAGIC: u8 = 0xB7;
/// Deepest nesting the decoder accepts (the extractor never produces more than MAX_DEPTH + 2).
const MAX_DECODE_DEPTH: usize = super::MAX_DEPTH + 8;

pub(crate) fn encode(m: &MessageMeta) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(256));
    w.0.push(MAGIC);
    w.uint(u64::from(META_VERSION));
    w.uint(u64::from(m.header_len));
    w.uint(u64::from(m.size));
    w.ts(&m.date);
    w.ts(&m.received);
    w.ostr(&m.message_id);
    w.envelope(&m.envelope);
    w.part(&m.part);
    w.0
}

pub(crate) fn decode(b: &[u8]) -> Option<MessageMeta> {
    let mut r = R { b, pos: 0 };
    if r.byte()? != MAGIC || r.uint()? != u64::from(META_VERSION) {
        return None;
    }
    let m = MessageMeta {
        header_len: r.u32()?,
        size: r.u32()?,
        date: r.ts()?,
        received: r.ts()?,
        message_id: r.ostr()?,
        envelope: r.envelope()?,
        part: r.part(0)?,
    };
    (r.pos == b.len()).then_some(m)
}

struct W(Vec<u8>);

impl W {
    fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn int(&mut self, v: i64) {
        self.uint(((v << 1) ^ (v >> 63)) as u64);
    }
    fn str(&mut self, s: &str) {
        self.uint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn ostr(&mut self, s: &Option<String>) {
        match s {
            None => self.uint(0),
            Some(s) => {
                self.uint(s.len() as u64 + 1);
                self.0.extend_from_slice(s.as_bytes());
            }
        }
    }
    fn ts(&mut self, t: &Option<Timestamp>) {
        match t {
            None => self.0.push(0),
            Some(t) => {
                self.0.push(1);
                self.int(t.unix);
                self.int(i64::from(t.offset_minutes));
            }
        }
    }
    fn params(&mut self, p: &[(String, String)]) {
        self.uint(p.len() as u64);
        for (k, v) in p {
            self.str(k);
            self.str(v);
        }
    }
    fn addrs(&mut self, l: &[Address]) {
        self.uint(l.len() as u64);
        for a in l {
            self.ostr(&a.name);
            self.ostr(&a.adl);
            self.ostr(&a.mailbox);
            self.ostr(&a.host);
        }
    }
    fn envelope(&mut self, e: &Envelope) {
        self.ostr(&e.date);
        self.ostr(&e.subject);
        // Sender and Reply-To usually equal From: one flag byte saves repeating them.
        let same_sender = e.sender == e.from;
        let same_reply = e.reply_to == e.from;
        self.0.push(u8::from(same_sender) | (u8::from(same_reply) << 1));
        self.addrs(&e.from);
        if !same_sender {
            self.addrs(&e.sender);
        }
        if !same_reply {
            self.addrs(&e.reply_to);
        }
        self.addrs(&e.to);
        self.addrs(&e.cc);
        self.addrs(&e.bcc);
        self.ostr(&e.in_reply_to);
        self.ostr(&e.message_id);
    }
    fn part(&mut self, p: &Part) {
        self.uint(u64::from(p.header_start));
        // Later offsets as deltas: smaller varints.
        self.uint(u64::from(p.body_start.saturating_sub(p.header_start)));
        self.uint(u64::from(p.end.saturating_sub(p.body_start)));
        self.str(&p.media_type);
        self.str(&p.subtype);
        self.params(&p.params);
        self.ostr(&p.id);
        self.ostr(&p.description);
        self.str(&p.encoding);
        self.uint(u64::from(p.lines));
        self.ostr(&p.md5);
        match &p.disposition {
            None => self.0.push(0),
            Some((t, params)) => {
                self.0.push(1);
                self.str(t);
                self.params(params);
            }
        }
        self.uint(p.language.len() as u64);
        for l in &p.language {
            self.str(l);
        }
        self.ostr(&p.location);
        self.uint(p.children.len() as u64);
        for c in &p.children {
            self.part(c);
        }
        match &p.message {
            None => self.0.push(0),
            Some(m) => {
                self.0.push(1);
                self.envelope(&m.0);
                self.part(&m.1);
            }
        }
    }
}

struct R<'a> {
    b: &'a [u8],
    pos: usize,
}

impl R<'_> {
    fn byte(&mut self) -> Option<u8> {
        let c = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(c)
    }
    fn uint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let c = self.byte()?;
            v |= u64::from(c & 0x7f) << shift;
            if c & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.uint()?).ok()
    }
    fn int(&mut self) -> Option<i64> {
        let u = self.uint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    fn len(&mut self) -> Option<usize> {
        let n = usize::try_from(self.uint()?).ok()?;
        // Any element takes at least one byte: bounds allocations on corrupt input.
        (n <= self.b.len() - self.pos).then_some(n)
    }
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn str(&mut self) -> Option<String> {
        let n = self.len()?;
        String::from_utf8(self.bytes(n)?.to_vec()).ok()
    }
    fn ostr(&mut self) -> Option<Option<String>> {
        let n = self.len()?;
        if n == 0 {
            return Some(None);
        }
        String::from_utf8(self.bytes(n - 1)?.to_vec()).ok().map(Some)
    }
    fn ts(&mut self) -> Option<Option<Timestamp>> {
        match self.byte()? {
            0 => Some(None),
            1 => Some(Some(Timestamp { unix: self.int()?, offset_minutes: i32::try_from(self.int()?).ok()? })),
            _ => None,
        }
    }
    fn params(&mut self) -> Option<Vec<(String, String)>> {
        let n = self.len()?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push((self.str()?, self.str()?));
        }
        Some(v)
    }
    fn addrs(&mut self) -> Option<Vec<Address>> {
        let n = self.len()?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(Address { name: self.ostr()?, adl: self.ostr()?, mailbox: self.ostr()?, host: self.ostr()? });
        }
        Some(v)
    }
    fn envelope(&mut self) -> Option<Envelope> {
        let date = self.ostr()?;
        let subject = self.ostr()?;
        let flags = self.byte()?;
        if flags > 3 {
            return None;
        }
        let from = self.addrs()?;
        let sender = if flags & 1 != 0 { from.clone() } else { self.addrs()? };
        let reply_to = if flags & 2 != 0 { from.clone() } else { self.addrs()? };
        Some(Envelope {
            date,
            subject,
            from,
            sender,
            reply_to,
            to: self.addrs()?,
            cc: self.addrs()?,
            bcc: self.addrs()?,
            in_reply_to: self.ostr()?,
            message_id: self.ostr()?,
        })
    }
    fn part(&mut self, depth: usize) -> Option<Part> {
        if depth > MAX_DECODE_DEPTH {
            return None;
        }
        let header_start = self.u32()?;
        let body_start = header_start.checked_add(self.u32()?)?;
        let end = body_start.checked_add(self.u32()?)?;
        let media_type = self.str()?;
        let subtype = self.str()?;
        let params = self.params()?;
        let id = self.ostr()?;
        let description = self.ostr()?;
        let encoding = self.str()?;
        let lines = self.u32()?;
        let md5 = self.ostr()?;
        let disposition = match self.byte()? {
            0 => None,
            1 => Some((self.str()?, self.params()?)),
            _ => return None,
        };
        let n = self.len()?;
        let mut language = Vec::with_capacity(n);
        for _ in 0..n {
            language.push(self.str()?);
        }
        let location = self.ostr()?;
        let n = self.len()?;
        let mut children = Vec::with_capacity(n);
        for _ in 0..n {
            children.push(self.part(depth + 1)?);
        }
        let message = match self.byte()? {
            0 => None,
            1 => Some(Box::new((self.envelope()?, self.part(depth + 1)?))),
            _ => return None,
        };
        Some(Part {
            header_start,
            body_start,
            end,
            media_type,
            subtype,
            params,
            id,
            description,
            encoding,
            size: end - body_start,
            lines,
            md5,
            disposition,
            language,
            location,
            children,
            message,
        })
    }
}
