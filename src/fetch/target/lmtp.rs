//! LMTP (RFC 2033) delivery: LHLO, then per message `MAIL FROM`, `RCPT TO` and the content — with
//! `BDAT n LAST` when the server offers CHUNKING (RFC 3030: nothing to escape, and every command of
//! a batch goes out in one write), else `DATA` with dot-stuffing (one round trip per message for
//! the `354`; the end of one message and the next one's commands share a write). With one
//! recipient, the content gets exactly one reply: the recipient's (RFC 2033 §4.2).
//!
//! Reply classes (`classify`): 2xx delivered; 4xx temporary (452 over quota, 421 going down…:
//! the message stays on the POP server, retried with backoff); 5xx permanent (550 unknown
//! recipient…: an account error until the setting is fixed).

use crate::config::{LmtpAddr, LmtpTarget};
use crate::error::{Error, ErrorClass, Result};

use super::wire::Wire;
use super::{Outcome, Refusal};

/// One reply: its code and its text lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    fn describe(&self) -> String {
        format!("{} {}", self.code, self.text)
    }
}

fn read_reply(w: &mut Wire) -> Result<Reply> {
    let mut text = String::new();
    loop {
        let line = w.line()?;
        let code = line
            .get(..3)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| {
                Error::new(
                    ErrorClass::Protocol,
                    format!("{} sent a broken LMTP reply: \"{}\"", w.peer, String::from_utf8_lossy(&line)),
                )
            })?;
        let more = line.get(3) == Some(&b'-');
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(String::from_utf8_lossy(line.get(4..).unwrap_or_default()).trim());
        if !more {
            return Ok(Reply { code, text });
        }
    }
}

/// A refusal's class from its code: 4xx temporary, 5xx permanent.
pub fn classify(peer: &str, doing: &str, r: &Reply) -> Refusal {
    let message = format!("{peer} refused {doing}: \"{}\"", r.describe());
    if r.code >= 500 { Refusal::Permanent(message) } else { Refusal::Temporary(message) }
}

pub struct Lmtp {
    w: Wire,
    recipient: String,
    chunking: bool,
    pipelining: bool,
    eightbit: bool,
}

impl Lmtp {
    /// Connects and says LHLO. A refused greeting or LHLO is a refusal like any other.
    pub fn connect(t: &LmtpTarget) -> Result<std::result::Result<Lmtp, Refusal>> {
        let mut w = match &t.addr {
            LmtpAddr::Tcp { host, port } => Wire::tcp(host, *port, t.timeout)?,
            LmtpAddr::Unix(p) => Wire::unix(p, t.timeout)?,
        };
        let greeting = read_reply(&mut w)?;
        if greeting.code != 220 {
            return Ok(Err(classify(&w.peer, "the connection", &greeting)));
        }
        w.put(b"LHLO popbridge\r\n");
        let lhlo = read_reply(&mut w)?;
        if lhlo.code != 250 {
            return Ok(Err(classify(&w.peer, "LHLO", &lhlo)));
        }
        let has = |k: &str| lhlo.text.split(' ').any(|x| x.eq_ignore_ascii_case(k));
        let (chunking, pipelining, eightbit) = (has("CHUNKING"), has("PIPELINING"), has("8BITMIME"));
        Ok(Ok(Lmtp { w, recipient: t.recipient.clone(), chunking, pipelining, eightbit }))
    }

    /// What the server offered, for `account test`.
    pub fn features(&self) -> String {
        let mut f = Vec::new();
        for (on, name) in [(self.pipelining, "PIPELINING"), (self.chunking, "CHUNKING"), (self.eightbit, "8BITMIME")] {
            if on {
                f.push(name);
            }
        }
        if f.is_empty() { "no extensions".into() } else { f.join(" ") }
    }

    fn envelope(&mut self, raw: &[u8]) {
        let from = return_path(raw).unwrap_or_default();
        let body = if self.eightbit && raw.iter().any(|b| *b >= 0x80) { " BODY=8BITMIME" } else { "" };
        self.w.put(format!("MAIL FROM:<{from}>{body}\r\nRCPT TO:<{}>\r\n", self.recipient).as_bytes());
    }

    /// `account test`: MAIL and RCPT for the recipient, then RSET — nothing is delivered.
    pub fn check_recipient(&mut self) -> Result<std::result::Result<String, Refusal>> {
        self.w.put(b"MAIL FROM:<>\r\n");
        let mail = read_reply(&mut self.w)?;
        self.w.put(format!("RCPT TO:<{}>\r\n", self.recipient).as_bytes());
        let rcpt = read_reply(&mut self.w)?;
        self.w.put(b"RSET\r\n");
        let _ = read_reply(&mut self.w)?;
        if mail.code != 250 {
            return Ok(Err(classify(&self.w.peer, "MAIL FROM", &mail)));
        }
        if !(200..300).contains(&rcpt.code) {
            return Ok(Err(classify(&self.w.peer, &format!("the recipient {}", self.recipient), &rcpt)));
        }
        Ok(Ok(rcpt.describe()))
    }

    /// Delivers `batch` in order. With BDAT every message is sent and gets its outcome; with DATA
    /// the first refusal ends the batch (the rest is not sent). When the connection fails, the
    /// outcomes so far are what the server confirmed.
    pub fn deliver(&mut self, batch: &[&[u8]]) -> (Vec<Outcome>, Option<Error>) {
        let mut out = Vec::with_capacity(batch.len());
        let r = if self.chunking && self.pipelining {
            self.deliver_bdat(batch, &mut out)
        } else {
            self.deliver_data(batch, &mut out)
        };
        (out, r.err())
    }

    fn deliver_bdat(&mut self, batch: &[&[u8]], out: &mut Vec<Outcome>) -> Result<()> {
        for raw in batch {
            self.envelope(raw);
            self.w.put(format!("BDAT {} LAST\r\n", raw.len()).as_bytes());
            self.w.put(raw);
        }
        for _ in batch {
            let mail = read_reply(&mut self.w)?;
            let rcpt = read_reply(&mut self.w)?;
            let data = read_reply(&mut self.w)?;
            let refusal = if mail.code != 250 {
                Some(classify(&self.w.peer, "MAIL FROM", &mail))
            } else if !(200..300).contains(&rcpt.code) {
                Some(classify(&self.w.peer, &format!("the recipient {}", self.recipient), &rcpt))
            } else if data.code != 250 {
                Some(classify(&self.w.peer, "the message", &data))
            } else {
                None
            };
            // Every reply is read: a later message of the batch may be delivered after a refusal.
            out.push(match refusal {
                None => Outcome::Delivered(data.describe()),
                Some(r) => Outcome::Refused(r),
            });
        }
        Ok(())
    }

    fn deliver_data(&mut self, batch: &[&[u8]], out: &mut Vec<Outcome>) -> Result<()> {
        for raw in batch {
            self.envelope(raw);
            if self.pipelining {
                self.w.put(b"DATA\r\n");
            }
            let mail = read_reply(&mut self.w)?;
            let rcpt = read_reply(&mut self.w)?;
            if !self.pipelining && mail.code == 250 && (200..300).contains(&rcpt.code) {
                self.w.put(b"DATA\r\n");
            }
            let go = if self.pipelining || (mail.code == 250 && (200..300).contains(&rcpt.code)) {
                Some(read_reply(&mut self.w)?)
            } else {
                None
            };
            let refusal = if mail.code != 250 {
                Some(classify(&self.w.peer, "MAIL FROM", &mail))
            } else if !(200..300).contains(&rcpt.code) {
                Some(classify(&self.w.peer, &format!("the recipient {}", self.recipient), &rcpt))
            } else {
                match &go {
                    Some(g) if g.code == 354 => None,
                    Some(g) => Some(classify(&self.w.peer, "DATA", g)),
                    None => None,
                }
            };
            if let Some(r) = refusal {
                self.w.put(b"RSET\r\n");
                let _ = read_reply(&mut self.w);
                out.push(Outcome::Refused(r));
                return Ok(());
            }
            put_dot_stuffed(&mut self.w, raw);
            let data = read_reply(&mut self.w)?;
            if data.code != 250 {
                out.push(Outcome::Refused(classify(&self.w.peer, "the message", &data)));
                return Ok(());
            }
            out.push(Outcome::Delivered(data.describe()));
        }
        Ok(())
    }

    pub fn quit(mut self) {
        self.w.put(b"QUIT\r\n");
        let _ = read_reply(&mut self.w);
    }
}

/// The message's content for DATA: each line starting with "." gets another, every line ends with
/// CRLF, and ".\r\n" ends it (RFC 5321 §4.5.2).
fn put_dot_stuffed(w: &mut Wire, raw: &[u8]) {
    let mut start = 0;
    while start < raw.len() {
        let end = memchr::memchr(b'\n', &raw[start..]).map_or(raw.len(), |i| start + i + 1);
        let mut line = &raw[start..end];
        if line.first() == Some(&b'.') {
            w.put(b".");
        }
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        w.put(line);
        w.put(b"\r\n");
        start = end;
    }
    w.put(b".\r\n");
}

/// The address of the message's first `Return-Path:` header, if it is a plain `<addr>` (the
/// envelope sender the message had; else the null sender `<>`).
fn return_path(raw: &[u8]) -> Option<String> {
    let head_end = memchr::memmem::find(raw, b"\r\n\r\n").or_else(|| memchr::memmem::find(raw, b"\n\n"))?;
    let head = &raw[..head_end];
    for line in head.split(|b| *b == b'\n') {
        let Some(name) = line.get(..12) else { continue };
        if name.eq_ignore_ascii_case(b"Return-Path:") {
            let v = std::str::from_utf8(&line[12..]).ok()?.trim();
            let addr = v.strip_prefix('<')?.strip_suffix('>')?;
            let ok = addr.len() < 256
                && addr
                    .chars()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '\\' | '"'));
            return ok.then(|| addr.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_return_path_becomes_the_envelope_sender_when_it_is_plain() {
        assert_eq!(return_path(b"Return-Path: <a@b.example>\r\nFrom: x\r\n\r\nbody").as_deref(), Some("a@b.example"));
        assert_eq!(return_path(b"Return-Path: <>\r\n\r\nbody").as_deref(), Some(""));
        assert_eq!(return_path(b"From: x\r\n\r\nReturn-Path: <a@b.example>\r\n"), None, "only the header counts");
        assert_eq!(return_path(b"Return-Path: <a b@c>\r\n\r\n"), None);
    }

    #[test]
    fn codes_give_the_class() {
        let r = |code| Reply { code, text: "x".into() };
        assert!(matches!(classify("h", "d", &r(452)), Refusal::Temporary(_)));
        assert!(matches!(classify("h", "d", &r(421)), Refusal::Temporary(_)));
        assert!(matches!(classify("h", "d", &r(550)), Refusal::Permanent(_)));
    }
}
