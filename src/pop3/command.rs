//! Commands and their wire encoding (RFC 1939 §5–7, RFC 2449, RFC 2595, RFC 5034).

use std::fmt;
use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest as _, Md5};

use super::{ProtocolError, Sent};

/// A command to send. Built from borrowed strings so secrets are not copied around.
///
/// No derived `Debug`: the manual one below redacts passwords, tokens and SASL responses (a LOGIN
/// exchange sends the password as a `SaslResponse`), so a command can be logged safely.
pub enum Command<'a> {
    Capa,
    Stls,
    User(&'a str),
    /// The rest of the line is the password, spaces included (RFC 1939 §7).
    Pass(&'a str),
    /// `timestamp` is the `<...>` of the greeting, brackets included ([`super::apop_timestamp`]).
    Apop {
        user: &'a str,
        timestamp: &'a str,
        password: &'a str,
    },
    /// `AUTH PLAIN <initial response>` (RFC 4616, RFC 5034 §4).
    AuthPlain {
        authzid: Option<&'a str>,
        user: &'a str,
        password: &'a str,
    },
    /// `AUTH LOGIN`; the server then asks "Username:" and "Password:" as continuations, answered
    /// with [`Command::SaslResponse`].
    AuthLogin,
    /// `AUTH XOAUTH2 <initial response>` (Google/Microsoft). On failure the server sends a
    /// continuation with a base64 JSON error; answer it with an empty `SaslResponse` to get the -ERR.
    AuthXoauth2 {
        user: &'a str,
        token: &'a str,
    },
    /// `AUTH OAUTHBEARER <initial response>` (RFC 7628): the GS2 header with the user, the server's
    /// host and port, the bearer token. On failure the server sends a continuation with a base64
    /// JSON error; answer it with `SaslResponse(crate::sasl::OAUTHBEARER_ABORT)` to get the -ERR.
    AuthOauthbearer {
        user: &'a str,
        host: &'a str,
        port: u16,
        token: &'a str,
    },
    /// One continuation answer: raw bytes, base64-encoded on the wire (empty → an empty line).
    SaslResponse(&'a [u8]),
    /// `*`: abort the SASL exchange (RFC 5034 §4). Its reply is tagged [`Sent::SaslResponse`].
    SaslCancel,
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    /// `TOP msg lines`
    Top(u32, u32),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Quit,
    /// `UTF8` (RFC 6856 §2): the server may send UTF-8 headers unchanged.
    Utf8,
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Capa => f.write_str("Capa"),
            Command::Stls => f.write_str("Stls"),
            Command::User(u) => f.debug_tuple("User").field(u).finish(),
            Command::Pass(_) => f.debug_tuple("Pass").field(&REDACTED).finish(),
            Command::Apop { user, timestamp, .. } => f
                .debug_struct("Apop")
                .field("user", user)
                .field("timestamp", timestamp)
                .field("password", &REDACTED)
                .finish(),
            Command::AuthPlain { authzid, user, .. } => f
                .debug_struct("AuthPlain")
                .field("authzid", authzid)
                .field("user", user)
                .field("password", &REDACTED)
                .finish(),
            Command::AuthLogin => f.write_str("AuthLogin"),
            Command::AuthXoauth2 { user, .. } => {
                f.debug_struct("AuthXoauth2").field("user", user).field("token", &REDACTED).finish()
            }
            Command::AuthOauthbearer { user, host, port, .. } => f
                .debug_struct("AuthOauthbearer")
                .field("user", user)
                .field("host", host)
                .field("port", port)
                .field("token", &REDACTED)
                .finish(),
            Command::SaslResponse(b) => write!(f, "SaslResponse(<{} bytes redacted>)", b.len()),
            Command::SaslCancel => f.write_str("SaslCancel"),
            Command::Stat => f.write_str("Stat"),
            Command::List(n) => f.debug_tuple("List").field(n).finish(),
            Command::Uidl(n) => f.debug_tuple("Uidl").field(n).finish(),
            Command::Top(n, l) => f.debug_tuple("Top").field(n).field(l).finish(),
            Command::Retr(n) => f.debug_tuple("Retr").field(n).finish(),
            Command::Dele(n) => f.debug_tuple("Dele").field(n).finish(),
            Command::Noop => f.write_str("Noop"),
            Command::Rset => f.write_str("Rset"),
            Command::Quit => f.write_str("Quit"),
            Command::Utf8 => f.write_str("Utf8"),
        }
    }
}

/// Whether `s` can travel as a POP3 command argument: no CR, LF or NUL, which would end the
/// command early (and let the rest be read as another command). The fetcher checks user names
/// with this before use; [`super::Client::send`] refuses such arguments anyway.
pub fn check_arg(s: &str) -> bool {
    !s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// The APOP digest (RFC 1939 §7): lower-case hex MD5 of the greeting's timestamp (brackets
/// included) followed by the password.
pub fn apop_digest(timestamp: &str, password: &str) -> String {
    let mut h = Md5::new();
    h.update(timestamp.as_bytes());
    h.update(password.as_bytes());
    let digest = h.finalize();
    let mut hex = String::with_capacity(32);
    for b in digest {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Command<'_> {
    /// What the reply to this command will be tagged with.
    pub fn sent(&self) -> Sent {
        match *self {
            Command::Capa => Sent::Capa,
            Command::Stls => Sent::Stls,
            Command::User(_) => Sent::User,
            Command::Pass(_) => Sent::Pass,
            Command::Apop { .. } => Sent::Apop,
            Command::AuthPlain { .. }
            | Command::AuthLogin
            | Command::AuthXoauth2 { .. }
            | Command::AuthOauthbearer { .. } => Sent::Auth,
            Command::SaslResponse(_) | Command::SaslCancel => Sent::SaslResponse,
            Command::Stat => Sent::Stat,
            Command::List(n) => Sent::List(n),
            Command::Uidl(n) => Sent::Uidl(n),
            Command::Top(n, l) => Sent::Top(n, l),
            Command::Retr(n) => Sent::Retr(n),
            Command::Dele(n) => Sent::Dele(n),
            Command::Noop => Sent::Noop,
            Command::Rset => Sent::Rset,
            Command::Quit => Sent::Quit,
            Command::Utf8 => Sent::Utf8,
        }
    }

    /// The command's keyword, for error messages (never its arguments: they may be secret).
    fn keyword(&self) -> &'static str {
        match self {
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Apop { .. } => "APOP",
            Command::AuthPlain { .. } => "AUTH PLAIN",
            Command::AuthLogin => "AUTH LOGIN",
            Command::AuthXoauth2 { .. } => "AUTH XOAUTH2",
            Command::AuthOauthbearer { .. } => "AUTH OAUTHBEARER",
            Command::SaslResponse(_) | Command::SaslCancel => "an AUTH response",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Uidl(_) => "UIDL",
            Command::Top(..) => "TOP",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
            Command::Utf8 => "UTF8",
        }
    }

    /// Checks the arguments, then appends the command line to `out`. On error nothing is appended.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<Sent, ProtocolError> {
        self.validate()?;
        // Writing to a Vec cannot fail; the io::Result is discarded.
        let _ = match *self {
            Command::Capa => out.write_all(b"CAPA"),
            Command::Stls => out.write_all(b"STLS"),
            Command::User(u) => write!(out, "USER {u}"),
            Command::Pass(p) => write!(out, "PASS {p}"),
            Command::Apop { user, timestamp, password } => {
                write!(out, "APOP {user} {}", apop_digest(timestamp, password))
            }
            Command::AuthPlain { authzid, user, password } => {
                let mut msg = Vec::with_capacity(user.len() + password.len() + 32);
                msg.extend_from_slice(authzid.unwrap_or("").as_bytes());
                msg.push(0);
                msg.extend_from_slice(user.as_bytes());
                msg.push(0);
                msg.extend_from_slice(password.as_bytes());
                out.extend_from_slice(b"AUTH PLAIN ");
                push_b64(out, &msg);
                Ok(())
            }
            Command::AuthLogin => out.write_all(b"AUTH LOGIN"),
            Command::AuthXoauth2 { user, token } => {
                out.extend_from_slice(b"AUTH XOAUTH2 ");
                push_b64(out, &crate::sasl::xoauth2(user, token));
                Ok(())
            }
            Command::AuthOauthbearer { user, host, port, token } => {
                out.extend_from_slice(b"AUTH OAUTHBEARER ");
                push_b64(out, &crate::sasl::oauthbearer(user, host, port, token));
                Ok(())
            }
            // RFC 5034 §4: a zero-length continuation answer is an empty line (the "=" form is
            // only for an empty *initial* response, which we never send).
            Command::SaslResponse(bytes) => {
                push_b64(out, bytes);
                Ok(())
            }
            Command::SaslCancel => out.write_all(b"*"),
            Command::Stat => out.write_all(b"STAT"),
            Command::List(None) => out.write_all(b"LIST"),
            Command::List(Some(n)) => write!(out, "LIST {n}"),
            Command::Uidl(None) => out.write_all(b"UIDL"),
            Command::Uidl(Some(n)) => write!(out, "UIDL {n}"),
            Command::Top(n, l) => write!(out, "TOP {n} {l}"),
            Command::Retr(n) => write!(out, "RETR {n}"),
            Command::Dele(n) => write!(out, "DELE {n}"),
            Command::Noop => out.write_all(b"NOOP"),
            Command::Rset => out.write_all(b"RSET"),
            Command::Quit => out.write_all(b"QUIT"),
            Command::Utf8 => out.write_all(b"UTF8"),
        };
        out.extend_from_slice(b"\r\n");
        Ok(self.sent())
    }

    fn validate(&self) -> Result<(), ProtocolError> {
        // Base64-encoded arguments cannot break the line, but their inner separators matter:
        // NUL separates PLAIN's fields (RFC 4616 §2), ^A separates XOAUTH2's.
        let no_nul = |s: &str| !s.contains('\0');
        let no_ctl_a = crate::sasl::fits;
        let ok = match *self {
            Command::User(u) => check_arg(u),
            Command::Pass(p) => check_arg(p),
            // The password only enters the digest.
            Command::Apop { user, timestamp, .. } => check_arg(user) && check_arg(timestamp),
            Command::AuthPlain { authzid, user, password } => {
                authzid.is_none_or(no_nul) && no_nul(user) && no_nul(password)
            }
            Command::AuthXoauth2 { user, token } => no_ctl_a(user) && no_ctl_a(token),
            // The host and port follow `host=` and `port=` inside the ^A-separated message.
            Command::AuthOauthbearer { user, host, token, .. } => no_ctl_a(user) && no_ctl_a(host) && no_ctl_a(token),
            _ => true,
        };
        if ok { Ok(()) } else { Err(ProtocolError::InvalidArgument { command: self.keyword() }) }
    }
}

fn push_b64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(B64.encode(bytes).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(cmd: Command<'_>) -> String {
        let mut out = b"prefix:".to_vec();
        cmd.encode(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn simple_commands() {
        assert_eq!(enc(Command::Capa), "prefix:CAPA\r\n");
        assert_eq!(enc(Command::Stls), "prefix:STLS\r\n");
        assert_eq!(enc(Command::User("mrose")), "prefix:USER mrose\r\n");
        assert_eq!(enc(Command::Pass("a b  c ")), "prefix:PASS a b  c \r\n");
        assert_eq!(enc(Command::Stat), "prefix:STAT\r\n");
        assert_eq!(enc(Command::List(None)), "prefix:LIST\r\n");
        assert_eq!(enc(Command::List(Some(2))), "prefix:LIST 2\r\n");
        assert_eq!(enc(Command::Uidl(None)), "prefix:UIDL\r\n");
        assert_eq!(enc(Command::Uidl(Some(17))), "prefix:UIDL 17\r\n");
        assert_eq!(enc(Command::Top(1, 10)), "prefix:TOP 1 10\r\n");
        assert_eq!(enc(Command::Retr(4_000_000_000)), "prefix:RETR 4000000000\r\n");
        assert_eq!(enc(Command::Dele(3)), "prefix:DELE 3\r\n");
        assert_eq!(enc(Command::Noop), "prefix:NOOP\r\n");
        assert_eq!(enc(Command::Utf8), "prefix:UTF8\r\n");
        assert_eq!(enc(Command::Rset), "prefix:RSET\r\n");
        assert_eq!(enc(Command::Quit), "prefix:QUIT\r\n");
        assert_eq!(enc(Command::AuthLogin), "prefix:AUTH LOGIN\r\n");
        assert_eq!(enc(Command::SaslCancel), "prefix:*\r\n");
    }

    #[test]
    fn apop_rfc1939_example() {
        // RFC 1939 §7.
        let ts = "<1896.697170952@dbc.mtview.ca.us>";
        assert_eq!(apop_digest(ts, "tanstaaf"), "c4c9334bac560ecc979e58001b3e22fb");
        assert_eq!(
            enc(Command::Apop { user: "mrose", timestamp: ts, password: "tanstaaf" }),
            "prefix:APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"
        );
    }

    #[test]
    fn sasl_encodings() {
        // RFC 4616 §4 example shape: authzid \0 authcid \0 passwd.
        assert_eq!(
            enc(Command::AuthPlain { authzid: None, user: "tim", password: "tanstaaftanstaaf" }),
            format!("prefix:AUTH PLAIN {}\r\n", B64.encode(b"\0tim\0tanstaaftanstaaf"))
        );
        assert_eq!(
            enc(Command::AuthPlain { authzid: Some("Ursel"), user: "Kurt", password: "xipj3plmq" }),
            "prefix:AUTH PLAIN VXJzZWwAS3VydAB4aXBqM3BsbXE=\r\n"
        );
        // Google's documented example.
        assert_eq!(
            enc(Command::AuthXoauth2 {
                user: "someuser@example.com",
                token: "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
            }),
            "prefix:AUTH XOAUTH2 dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==\r\n"
        );
        // RFC 7628 §4.1's example (an IMAP exchange there; the same initial response in POP3).
        assert_eq!(
            enc(Command::AuthOauthbearer {
                user: "user@example.com",
                host: "server.example.com",
                port: 143,
                token: "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
            }),
            "prefix:AUTH OAUTHBEARER bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB\r\n"
        );
        assert_eq!(enc(Command::SaslResponse(b"tim")), "prefix:dGlt\r\n");
        assert_eq!(enc(Command::SaslResponse(b"")), "prefix:\r\n");
        // RFC 7628 §3.2.3: the answer to an error continuation is a single ^A.
        assert_eq!(enc(Command::SaslResponse(crate::sasl::OAUTHBEARER_ABORT)), "prefix:AQ==\r\n");
    }

    #[test]
    fn injection_refused_and_nothing_written() {
        let bad = [
            Command::User("bob\r\nDELE 1"),
            Command::Pass("pw\nQUIT"),
            Command::Pass("pw\0"),
            Command::Apop { user: "a\rb", timestamp: "<1@x>", password: "p" },
            Command::AuthPlain { authzid: None, user: "a\0b", password: "p" },
            Command::AuthPlain { authzid: Some("z\0"), user: "a", password: "p" },
            Command::AuthXoauth2 { user: "a\x01b", token: "t" },
            Command::AuthOauthbearer { user: "a", host: "h", port: 110, token: "t\x01auth=x" },
            Command::AuthOauthbearer { user: "a", host: "h\x01", port: 110, token: "t" },
        ];
        for cmd in &bad {
            let mut out = Vec::new();
            assert!(matches!(cmd.encode(&mut out), Err(ProtocolError::InvalidArgument { .. })), "{cmd:?}");
            assert!(out.is_empty());
        }
        assert!(check_arg("user name@example.com"));
        assert!(!check_arg("a\rb"));
        assert!(!check_arg("a\nb"));
        assert!(!check_arg("a\0b"));
        // Base64 carries line breaks inside SASL fine.
        let mut out = Vec::new();
        Command::AuthPlain { authzid: None, user: "u", password: "p\r\nw" }.encode(&mut out).unwrap();
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    #[test]
    fn debug_redacts_secrets() {
        let cmds = [
            Command::Pass("hunter2"),
            Command::Apop { user: "u", timestamp: "<1@x>", password: "hunter2" },
            Command::AuthPlain { authzid: None, user: "u", password: "hunter2" },
            Command::AuthXoauth2 { user: "u", token: "hunter2" },
            Command::AuthOauthbearer { user: "u", host: "h", port: 995, token: "hunter2" },
            Command::SaslResponse(b"hunter2"),
        ];
        for c in &cmds {
            let s = format!("{c:?} {c:#?}");
            assert!(!s.contains("hunter2"), "{s}");
            assert!(s.contains("redacted"), "{s}");
        }
        assert_eq!(format!("{:?}", Command::User("bob")), "User(\"bob\")");
        assert_eq!(format!("{:?}", Command::Top(1, 2)), "Top(1, 2)");
    }
}
