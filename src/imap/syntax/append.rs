//! APPEND of several messages in one command (MULTIAPPEND, RFC 3502). Delete when imap-codec
//! parses more than one `append-message`.
//!
//! ```text
//! append         = "APPEND" SP mailbox 1*append-message
//! append-message = [SP flag-list] [SP date-time] SP (literal / literal8)
//! ```
//!
//! Only the command's shape is parsed here: where the mailbox and each message's flags, date and
//! literal lie. Each message then goes back to imap-codec as the one-message APPEND it would be
//! alone (`A APPEND mailbox [flags] [date] literal`), so the flags, the date, the literal's rules
//! (no NUL in a `{n}` literal) and the mailbox name are imap-codec's — one parser. A message it
//! refuses makes the whole command a syntax error: nothing of it is stored.

use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::command::CommandBody;
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_next::imap_types::flag::Flag;
use imap_next::imap_types::mailbox::Mailbox;

use super::MAX_LITERAL;
use super::lex::Cursor;

/// A MULTIAPPEND: where to, and the messages in order.
#[derive(Debug)]
pub struct MultiAppend {
    pub mailbox: Mailbox<'static>,
    pub messages: Vec<Message>,
}

/// One `append-message`.
#[derive(Debug)]
pub struct Message {
    pub flags: Vec<Flag<'static>>,
    pub date: Option<DateTime>,
    pub data: Vec<u8>,
}

/// After `tag APPEND`: the rest of the command, up to its final CRLF. None: not this syntax (the
/// session answers BAD).
pub fn parse(c: &mut Cursor<'_>) -> Option<MultiAppend> {
    c.sp()?;
    let start = c.position();
    c.astring()?;
    let mailbox_bytes = c.since(start);
    let mut mailbox = None;
    let mut messages = Vec::new();
    loop {
        c.sp()?;
        let start = c.position();
        if c.peek() == Some(b'(') {
            c.parenthesised()?;
            c.sp()?;
        }
        if c.peek() == Some(b'"') {
            c.quoted()?;
            c.sp()?;
        }
        let data = c.literal(true)?;
        // imap-next only bounds a non-synchronizing literal by the command's size: the limit a
        // single APPEND has holds for each message here too.
        if data.len() > MAX_LITERAL as usize {
            return None;
        }
        let (mb, message) = one(mailbox_bytes, c.since(start))?;
        mailbox.get_or_insert(mb);
        messages.push(message);
        if c.crlf_end().is_some() {
            break;
        }
    }
    Some(MultiAppend { mailbox: mailbox?, messages })
}

/// One message as imap-codec parses it alone: `A APPEND <mailbox> <message>\r\n`.
fn one(mailbox: &[u8], message: &[u8]) -> Option<(Mailbox<'static>, Message)> {
    use imap_codec::decode::Decoder as _;
    let cmd = [&b"A APPEND "[..], mailbox, b" ", message, b"\r\n"].concat();
    let (rest, cmd) = imap_codec::CommandCodec::default().decode(&cmd).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let CommandBody::Append { mailbox, flags, date, message } = cmd.body else { return None };
    let data = match message {
        LiteralOrLiteral8::Literal(l) => l.data().to_vec(),
        LiteralOrLiteral8::Literal8(l) => l.data.to_vec(),
    };
    let flags = flags.into_iter().map(IntoStatic::into_static).collect();
    Some((mailbox.into_static(), Message { flags, date, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(raw: &[u8]) -> Option<(String, MultiAppend)> {
        let (tag, ext) = super::super::parse(raw)?;
        let super::super::Extended::Append(a) = ext else { panic!("not an APPEND") };
        Some((tag.as_ref().to_string(), a))
    }

    #[test]
    fn rfc_3502_example() {
        // RFC 3502 §6's example, the literals inline as imap-next hands the command over.
        let m1 = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.example.COM>\r\n\
Subject: afternoon meeting\r\nTo: mooch@owatagu.example.net\r\nMessage-Id: <B27397-0100000@Blurdybloop.example.COM>\r\n\
MIME-Version: 1.0\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n";
        let m2 = "Date: Mon, 7 Feb 1994 22:43:04 -0800 (PST)\r\nFrom: Joe Mooch <mooch@OWaTaGu.example.net>\r\n\
Subject: Re: afternoon meeting\r\nTo: foobar@blurdybloop.example.com\r\nMessage-Id: <a0434793874930@OWaTaGu.example.net>\r\n\
MIME-Version: 1.0\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n3:30 is fine with me.\r\n";
        let raw = format!(
            "A003 APPEND saved-messages (\\Seen) {{{}}}\r\n{m1} (\\Seen) {{{}}}\r\n{m2}\r\n",
            m1.len(),
            m2.len()
        );
        let (tag, a) = parse_all(raw.as_bytes()).expect("parses");
        assert_eq!(tag, "A003");
        assert_eq!(a.mailbox, Mailbox::try_from("saved-messages").unwrap());
        assert_eq!(a.messages.len(), 2);
        assert_eq!(a.messages[0].data, m1.as_bytes());
        assert_eq!(a.messages[1].data, m2.as_bytes());
        assert!(a.messages.iter().all(|m| m.flags == [Flag::Seen] && m.date.is_none()));
    }

    #[test]
    fn every_form_of_a_message() {
        let raw = b"t APPEND {5}\r\nINBOX {1}\r\na (\\Flagged $Foo) \"05-Jan-2024 01:00:00 +0000\" {2+}\r\nbc \
\"05-Jan-2024 01:00:00 +0000\" ~{3}\r\nd\0e () {0}\r\n\r\n";
        let (_, a) = parse_all(raw).expect("parses");
        assert_eq!(a.mailbox, Mailbox::Inbox);
        let got: Vec<(usize, bool, &[u8])> =
            a.messages.iter().map(|m| (m.flags.len(), m.date.is_some(), &m.data[..])).collect();
        assert_eq!(got, [(0, false, &b"a"[..]), (2, true, b"bc"), (0, true, b"d\0e"), (0, false, b"")]);
    }

    #[test]
    fn anything_else_is_none() {
        for raw in [
            &b"a APPEND box\r\n"[..],
            b"a APPEND box (\\Seen)\r\n",
            b"a APPEND box {1}\r\nx",
            b"a APPEND box {1}\r\nx \r\n",
            b"a APPEND box {1}\r\nx {1}\r\ny junk\r\n",
            b"a APPEND box {1}\r\nx (\\*) {1}\r\ny\r\n",
            b"a APPEND box {1}\r\nx \"bad date\" {1}\r\ny\r\n",
            b"a APPEND box {1}\r\nx {3}\r\na\0b\r\n",
            b"a APPEND box {1}\r\nx {2}\r\ny\r\n",
            b"a APPEND box {1}\r\nx\r\n\r\n",
            b"a APPEND {1}\r\nx\r\n",
        ] {
            assert!(parse_all(raw).is_none(), "{}", raw.escape_ascii());
        }
    }

    /// Random bytes, truncations and mutations of valid commands never panic (the session runs
    /// this on every APPEND imap-codec refused).
    #[test]
    fn random_and_truncated_input_never_panics() {
        let valid: &[&[u8]] = &[
            b"a APPEND box (\\Seen) {1}\r\nx (\\Flagged) \"05-Jan-2024 01:00:00 +0000\" ~{3+}\r\na\0b {0}\r\n\r\n",
            b"a APPEND \"quoted \\\" box\" {2}\r\nab {1+}\r\nc\r\n",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for v in valid {
            assert!(parse_all(v).is_some(), "{}", v.escape_ascii());
            for cut in 0..v.len() {
                let _ = parse_all(&v[..cut]);
            }
            for _ in 0..2000 {
                let mut m = v.to_vec();
                for _ in 0..1 + next() % 4 {
                    let i = (next() % m.len() as u64) as usize;
                    match next() % 3 {
                        0 => m[i] = next() as u8,
                        1 => {
                            m.remove(i);
                        }
                        _ => m.insert(i, b"{}~()\"\\ \r\n0123456789"[(next() % 19) as usize]),
                    }
                }
                let _ = parse_all(&m);
            }
        }
        for _ in 0..5000 {
            let n = (next() % 64) as usize;
            let tail: Vec<u8> = (0..n).map(|_| b"a {}~()\"\\ \r\n05+"[(next() % 15) as usize]).collect();
            let _ = parse_all(&[&b"a APPEND b "[..], &tail].concat());
        }
    }
}
