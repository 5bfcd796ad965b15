//! Parsers for what replies carry: CAPA, UIDL, LIST and STAT listings, response codes, the APOP
//! timestamp. All take the [`super::Reply`] text or body; none panics on any input.

use super::{ProtocolError, RespCode, display_line};

/// What a CAPA listing announces (RFC 2449 §6, RFC 2595 §4, RFC 3206 §6, RFC 5034 §3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub top: bool,
    pub uidl: bool,
    pub user: bool,
    pub pipelining: bool,
    pub stls: bool,
    pub resp_codes: bool,
    pub auth_resp_code: bool,
    /// SASL mechanisms, upper-case, in the server's order, without duplicates.
    pub sasl: Vec<String>,
    /// `LOGIN-DELAY n`: seconds the server wants between logins (RFC 2449 §6.5).
    pub login_delay: Option<u64>,
    /// `EXPIRE`: how long the server keeps retrieved mail (RFC 2449 §6.7).
    pub expire: Option<Expire>,
    /// `UTF8` (RFC 6856 §2): the server understands the UTF8 command — and may rewrite messages
    /// with 8-bit headers for clients that do not send it (Courier does).
    pub utf8: bool,
    /// `LANG` (RFC 6856 §3): the server can change its response language; popbridge keeps the
    /// default (it matches on response codes, never on text).
    pub lang: bool,
    /// `IMPLEMENTATION` text, for display.
    pub implementation: Option<String>,
    /// Every capability line as sent (without the line end), for display.
    pub lines: Vec<String>,
}

/// RFC 2449 §6.7 `EXPIRE`: how long the server keeps a retrieved message.
// Clone only, not Copy: `fetch` calls `.clone()` on it, which clippy rejects for Copy types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expire {
    /// `EXPIRE NEVER`: the server keeps mail until the client deletes it.
    Never,
    /// `EXPIRE n`: deleted n days after retrieval; `Days(0)` means on retrieval (at QUIT).
    Days(u64),
}

/// Lines of a multi-line body, without line ends and surrounding blanks; blank lines dropped.
fn body_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'\n').map(<[u8]>::trim_ascii).filter(|l| !l.is_empty())
}

fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(u8::is_ascii_whitespace).filter(|w| !w.is_empty())
}

/// A decimal number of ASCII digits only (no sign, no blanks), or None (also on overflow).
fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() { acc.checked_mul(10)?.checked_add(u64::from(b - b'0')) } else { None }
    })
}

/// A message number: 1 or more (RFC 1939 §5 counts from 1), fitting u32.
fn msg_number(s: &[u8]) -> Option<u32> {
    number(s).and_then(|n| u32::try_from(n).ok()).filter(|&n| n >= 1)
}

/// Parses a CAPA listing. Lenient: lines it does not know (or cannot read) are only kept in
/// `lines`; a malformed `LOGIN-DELAY`/`EXPIRE` argument leaves that field `None`.
pub fn parse_capa(body: &[u8]) -> Capabilities {
    let mut caps = Capabilities::default();
    for line in body_lines(body) {
        caps.lines.push(String::from_utf8_lossy(line).into_owned());
        let mut w = words(line);
        let Some(keyword) = w.next() else { continue };
        let keyword = keyword.to_ascii_uppercase();
        match keyword.as_slice() {
            b"TOP" => caps.top = true,
            b"UIDL" => caps.uidl = true,
            b"USER" => caps.user = true,
            b"PIPELINING" => caps.pipelining = true,
            b"STLS" => caps.stls = true,
            // "UTF8" or "UTF8 USER" (UTF-8 user names and passwords accepted too).
            b"UTF8" => caps.utf8 = true,
            b"LANG" => caps.lang = true,
            b"RESP-CODES" => caps.resp_codes = true,
            b"AUTH-RESP-CODE" => caps.auth_resp_code = true,
            b"SASL" => {
                for mech in w {
                    let mech = String::from_utf8_lossy(mech).to_ascii_uppercase();
                    if !caps.sasl.contains(&mech) {
                        caps.sasl.push(mech);
                    }
                }
            }
            // "LOGIN-DELAY 900" or, before login, "LOGIN-DELAY 900 USER" (may vary per user).
            b"LOGIN-DELAY" => caps.login_delay = w.next().and_then(number),
            b"EXPIRE" => {
                caps.expire = w.next().and_then(|v| {
                    if v.eq_ignore_ascii_case(b"NEVER") { Some(Expire::Never) } else { number(v).map(Expire::Days) }
                })
            }
            b"IMPLEMENTATION" => {
                let rest = line.get(keyword.len()..).unwrap_or_default().trim_ascii();
                caps.implementation = Some(String::from_utf8_lossy(rest).into_owned());
            }
            _ => {}
        }
    }
    caps
}

/// Parses a `UIDL` listing: lines `msg uid` (RFC 1939 §7). A line that is not exactly a message
/// number and one unique-id is an error: guessing which word is the id could merge two messages.
/// The ids are returned as sent (lossy UTF-8); check them with [`valid_uidl`] if you need to.
pub fn parse_uidl(body: &[u8]) -> Result<Vec<(u32, String)>, ProtocolError> {
    body_lines(body)
        .map(|line| uidl_words(line).ok_or_else(|| ProtocolError::Malformed { what: "UIDL", line: display_line(line) }))
        .collect()
}

fn uidl_words(line: &[u8]) -> Option<(u32, String)> {
    let mut w = words(line);
    let n = msg_number(w.next()?)?;
    let uid = w.next()?;
    if w.next().is_some() {
        return None;
    }
    Some((n, String::from_utf8_lossy(uid).into_owned()))
}

/// Parses the text of a `+OK` to `UIDL n` ("n uid").
pub fn parse_uidl_line(text: &str) -> Option<(u32, String)> {
    uidl_words(text.as_bytes())
}

/// Parses a `LIST` listing: lines `msg size` (RFC 1939 §5); fields after the size are allowed
/// (RFC 1939 leaves room for them) and ignored.
pub fn parse_list(body: &[u8]) -> Result<Vec<(u32, u64)>, ProtocolError> {
    body_lines(body)
        .map(|line| list_words(line).ok_or_else(|| ProtocolError::Malformed { what: "LIST", line: display_line(line) }))
        .collect()
}

fn list_words(line: &[u8]) -> Option<(u32, u64)> {
    let mut w = words(line);
    let n = msg_number(w.next()?)?;
    let size = number(w.next()?)?;
    Some((n, size))
}

/// Parses the text of a `+OK` to `LIST n` ("n size ...").
pub fn parse_list_line(text: &str) -> Option<(u32, u64)> {
    list_words(text.as_bytes())
}

/// Parses the text of a `+OK` to `STAT`: "count size", more fields allowed (RFC 1939 §5).
/// The count may be 0.
pub fn parse_stat(text: &str) -> Option<(u32, u64)> {
    let mut w = words(text.as_bytes());
    let count = u32::try_from(number(w.next()?)?).ok()?;
    let size = number(w.next()?)?;
    Some((count, size))
}

/// The APOP timestamp of a greeting's text (RFC 1939 §7): the first `<...@...>`, brackets
/// included, without blanks or controls inside. None if the server does not offer APOP.
pub fn apop_timestamp(greeting_text: &str) -> Option<&str> {
    greeting_text.match_indices('<').find_map(|(start, _)| {
        let rest = &greeting_text[start + 1..];
        let end = rest.find('>')?;
        let inner = &rest[..end];
        let ok =
            inner.contains('@') && !inner.contains('<') && !inner.chars().any(|c| c.is_whitespace() || c.is_control());
        ok.then(|| &greeting_text[start..start + end + 2])
    })
}

/// Whether `uid` is a unique-id as RFC 1939 §7 defines it: 1 to 70 characters in 0x21..=0x7E.
pub fn valid_uidl(uid: &str) -> bool {
    (1..=70).contains(&uid.len()) && uid.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Splits a leading `[CODE]` off a status text (RFC 2449 §8). Only when the text starts with `[`
/// and has a `]`; otherwise the text is returned whole. Codes are hierarchical ("SYS/TEMP/…"):
/// a known prefix is enough, compared case-insensitively.
pub(crate) fn parse_resp_code(text: &str) -> (Option<RespCode>, &str) {
    let Some(rest) = text.strip_prefix('[') else {
        return (None, text);
    };
    let Some(end) = rest.find(']') else {
        return (None, text);
    };
    let inner = &rest[..end];
    let after = rest[end + 1..].trim();
    let mut levels = inner.split('/').map(str::trim);
    let first = levels.next().unwrap_or_default();
    let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let code = if is(first, "AUTH") {
        RespCode::Auth
    } else if is(first, "IN-USE") {
        RespCode::InUse
    } else if is(first, "LOGIN-DELAY") {
        RespCode::LoginDelay
    } else if is(first, "SYS") {
        match levels.next() {
            Some(l) if is(l, "TEMP") => RespCode::SysTemp,
            Some(l) if is(l, "PERM") => RespCode::SysPerm,
            _ => RespCode::Other(inner.to_owned()),
        }
    } else {
        RespCode::Other(inner.to_owned())
    };
    (Some(code), after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capa_dovecot() {
        let body = b"CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN LOGIN CRAM-MD5\r\n";
        let c = parse_capa(body);
        assert!(c.top && c.uidl && c.resp_codes && c.pipelining && c.auth_resp_code);
        assert!(c.stls && c.user);
        assert_eq!(c.sasl, ["PLAIN", "LOGIN", "CRAM-MD5"]);
        assert_eq!(c.login_delay, None);
        assert_eq!(c.expire, None);
        assert_eq!(c.implementation, None);
        assert_eq!(c.lines.len(), 9);
        assert_eq!(c.lines[0], "CAPA");
        assert_eq!(c.lines[8], "SASL PLAIN LOGIN CRAM-MD5");
    }

    #[test]
    fn capa_delay_expire_impl() {
        let c = parse_capa(
            b"LOGIN-DELAY 900\r\nEXPIRE 0\r\nIMPLEMENTATION  Shlemazle-Plotz-v302 \r\nsasl xoauth2 plain PLAIN\r\nX-FOO bar\r\n",
        );
        assert_eq!(c.login_delay, Some(900));
        assert_eq!(c.expire, Some(Expire::Days(0)));
        assert_eq!(c.implementation.as_deref(), Some("Shlemazle-Plotz-v302"));
        assert_eq!(c.sasl, ["XOAUTH2", "PLAIN"]);
        assert!(!c.top && !c.user && !c.stls);
        assert_eq!(c.lines[3], "sasl xoauth2 plain PLAIN");
        assert_eq!(c.lines[4], "X-FOO bar");

        assert_eq!(parse_capa(b"EXPIRE NEVER\n").expire, Some(Expire::Never));
        assert_eq!(parse_capa(b"expire never\n").expire, Some(Expire::Never));
        assert_eq!(parse_capa(b"EXPIRE 30 USER\r\n").expire, Some(Expire::Days(30)));
        assert_eq!(parse_capa(b"LOGIN-DELAY 900 USER\r\n").login_delay, Some(900));
        // Malformed arguments: the line is kept, the field is not guessed.
        let c = parse_capa(b"EXPIRE soon\r\nLOGIN-DELAY\r\nLOGIN-DELAY -5\r\n");
        assert_eq!(c.expire, None);
        assert_eq!(c.login_delay, None);
        assert_eq!(c.lines.len(), 3);
        // Garbage never panics.
        let c = parse_capa(b"\xff\xfe\r\n\r\n \t \r\nIMPLEMENTATION\r\n\0\0");
        assert_eq!(c.implementation.as_deref(), Some(""));
        assert_eq!(parse_capa(b""), Capabilities::default());
    }

    #[test]
    fn uidl_lists() {
        let body = b"1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n";
        assert_eq!(
            parse_uidl(body).unwrap(),
            [(1, "whqtswO00WBw418f9t5JxYwZ".to_owned()), (2, "QhdPYR:00WBw1Ph7x7".to_owned())]
        );
        assert_eq!(parse_uidl(b"").unwrap(), []);
        assert_eq!(parse_uidl(b"3  x \n\n").unwrap(), [(3, "x".to_owned())]);
        for bad in [
            &b"1\r\n"[..],
            b"x abc\r\n",
            b"0 abc\r\n",
            b"-1 abc\r\n",
            b"+1 abc\r\n",
            b"1 abc def\r\n",
            b"99999999999 abc\r\n",
            b"1 ok\r\nwhat\r\n",
        ] {
            let err = parse_uidl(bad).unwrap_err();
            assert!(matches!(err, ProtocolError::Malformed { what: "UIDL", .. }), "{bad:?}");
        }
        assert_eq!(parse_uidl_line("2 QhdPYR:00WBw1Ph7x7"), Some((2, "QhdPYR:00WBw1Ph7x7".into())));
        assert_eq!(parse_uidl_line("2"), None);
    }

    #[test]
    fn list_lists() {
        assert_eq!(
            parse_list(b"1 120\r\n2 200 extra fields here\r\n3 5000000000\n").unwrap(),
            [(1, 120), (2, 200), (3, 5_000_000_000)]
        );
        for bad in [&b"1\r\n"[..], b"1 x\r\n", b"a 1\r\n", b"1 -3\r\n"] {
            assert!(parse_list(bad).is_err(), "{bad:?}");
        }
        let msg = parse_list(b"1 oops").unwrap_err().to_string();
        assert!(msg.contains("LIST") && msg.contains("1 oops"), "{msg}");
        assert_eq!(parse_list_line("2 200"), Some((2, 200)));
        assert_eq!(parse_list_line("2 200 x"), Some((2, 200)));
        assert_eq!(parse_list_line("no"), None);
    }

    #[test]
    fn stat() {
        assert_eq!(parse_stat("2 320"), Some((2, 320)));
        assert_eq!(parse_stat("0 0"), Some((0, 0)));
        assert_eq!(parse_stat("2 320 messages"), Some((2, 320)));
        assert_eq!(parse_stat(" 2  320 "), Some((2, 320)));
        assert_eq!(parse_stat("2"), None);
        assert_eq!(parse_stat("two 320"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn apop_timestamps() {
        assert_eq!(
            apop_timestamp("POP3 server ready <1896.697170952@dbc.mtview.ca.us>"),
            Some("<1896.697170952@dbc.mtview.ca.us>")
        );
        assert_eq!(apop_timestamp("Dovecot ready."), None);
        assert_eq!(apop_timestamp("<no-at-sign> ready"), None);
        assert_eq!(apop_timestamp("ready <a@b"), None);
        assert_eq!(apop_timestamp("x <a b@c> <1.2@h>"), Some("<1.2@h>"));
        assert_eq!(apop_timestamp("<<1.2@h>"), Some("<1.2@h>"));
        assert_eq!(apop_timestamp("é<1@ü>é"), Some("<1@ü>"));
    }

    #[test]
    fn uidl_validity() {
        assert!(valid_uidl("whqtswO00WBw418f9t5JxYwZ"));
        assert!(valid_uidl("!"));
        assert!(valid_uidl(&"~".repeat(70)));
        assert!(!valid_uidl(&"a".repeat(71)));
        assert!(!valid_uidl(""));
        assert!(!valid_uidl("a b"));
        assert!(!valid_uidl("é"));
        assert!(!valid_uidl("a\x7f"));
    }

    #[test]
    fn resp_codes() {
        assert_eq!(parse_resp_code("[SYS/TEMP] try later"), (Some(RespCode::SysTemp), "try later"));
        assert_eq!(parse_resp_code("[sys/perm]x"), (Some(RespCode::SysPerm), "x"));
        assert_eq!(parse_resp_code("[SYS/TEMP/DISK] full"), (Some(RespCode::SysTemp), "full"));
        assert_eq!(parse_resp_code("[AUTH] bad"), (Some(RespCode::Auth), "bad"));
        assert_eq!(parse_resp_code("[IN-USE] locked"), (Some(RespCode::InUse), "locked"));
        assert_eq!(parse_resp_code("[LOGIN-DELAY] wait"), (Some(RespCode::LoginDelay), "wait"));
        assert_eq!(parse_resp_code("[SYS] what"), (Some(RespCode::Other("SYS".into())), "what"));
        assert_eq!(parse_resp_code("[X-FOO/bar]"), (Some(RespCode::Other("X-FOO/bar".into())), ""));
        assert_eq!(parse_resp_code("[unterminated"), (None, "[unterminated"));
        assert_eq!(parse_resp_code("no [AUTH] code"), (None, "no [AUTH] code"));
        assert_eq!(parse_resp_code(""), (None, ""));
        assert!(RespCode::SysTemp.is_temporary() && RespCode::InUse.is_temporary());
        assert!(RespCode::LoginDelay.is_temporary());
        assert!(!RespCode::Auth.is_temporary() && !RespCode::SysPerm.is_temporary());
    }
}
