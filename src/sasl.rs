//! The OAuth 2 SASL mechanisms' messages, shared by the POP3 client and the upstream SMTP client:
//! OAUTHBEARER (RFC 7628) and XOAUTH2 (Google's and Microsoft's older mechanism), and the error
//! a server sends instead of a success. No I/O, no base64: callers encode for their protocol.

/// RFC 7628 §3.1: the client's first message. The GS2 header `n,a=USER,` (no channel binding,
/// the authorization identity), then `^A`-separated key/value pairs — `host`, `port` and `auth`
/// — and an empty pair (`^A^A`) to end it. `,` and `=` in the user name are escaped as `=2C` and
/// `=3D` (RFC 5801 §4, saslname).
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &str) -> Vec<u8> {
    let user = user.replace('=', "=3D").replace(',', "=2C");
    format!("n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// XOAUTH2: `user=USER ^A auth=Bearer TOKEN ^A ^A`.
pub fn xoauth2(user: &str, token: &str) -> Vec<u8> {
    format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// RFC 7628 §3.2.3: after an error message the client sends this (a single `^A`) to end the
/// exchange; the server then answers with its failure. XOAUTH2 clients send an empty response.
pub const OAUTHBEARER_ABORT: &[u8] = b"\x01";

/// Whether the arguments can travel in the messages above: `^A` separates their fields and NUL
/// ends strings on some servers.
pub fn fits(s: &str) -> bool {
    !s.contains(['\x01', '\0'])
}

/// What the server's error message (RFC 7628 §3.2.2, the decoded JSON of a continuation) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// `status`: `invalid_token` (RFC 6750 §3.1; expired or revoked), `insufficient_scope`,
    /// `invalid_request`; Google sends "400" or "401", Microsoft sometimes nothing.
    pub status: Option<String>,
    pub scope: Option<String>,
}

impl ServerError {
    /// Parses the decoded continuation (a JSON object); `None` if it is not one.
    pub fn parse(json: &[u8]) -> Option<ServerError> {
        let v: serde_json::Value = serde_json::from_slice(json).ok()?;
        let o = v.as_object()?;
        let s = |k: &str| o.get(k).and_then(|v| v.as_str()).map(str::to_string);
        Some(ServerError { status: s("status"), scope: s("scope") })
    }

    /// The token was refused as a token (expired, revoked, unknown): a fresh one may work.
    /// Google's XOAUTH2 says `"status":"401"` (and "400" for a bad request), RFC 7628 says
    /// `invalid_token`.
    pub fn token_refused(&self) -> bool {
        matches!(self.status.as_deref(), Some("invalid_token" | "401"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn oauthbearer_is_rfc_7628s_own_example() {
        // RFC 7628 §4.1: user@example.com at server.example.com:143, token vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==
        let m =
            oauthbearer("user@example.com", "server.example.com", 143, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==");
        assert_eq!(
            m,
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
        // The base64 the RFC shows on the wire for it.
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(&m),
            "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
        );
    }

    #[test]
    fn oauthbearer_escapes_the_authzid() {
        let m = oauthbearer("a,b=c", "h", 1, "t");
        assert!(m.starts_with(b"n,a=a=2Cb=3Dc,\x01"), "{}", String::from_utf8_lossy(&m));
    }

    #[test]
    fn xoauth2_is_googles_example() {
        // developers.google.com/gmail/imap/xoauth2-protocol: the initial client response.
        let m = xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg");
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(&m),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn server_errors_are_read_from_their_json() {
        // RFC 7628 §4.3's example error.
        let e = ServerError::parse(br#"{"status":"invalid_token","scope":"example_scope","openid-configuration":"https://example.com/.well-known/openid-configuration"}"#).unwrap();
        assert_eq!(e.status.as_deref(), Some("invalid_token"));
        assert_eq!(e.scope.as_deref(), Some("example_scope"));
        assert!(e.token_refused());
        // Google's XOAUTH2 error.
        let g = ServerError::parse(br#"{"status":"401","schemes":"bearer mac","scope":"https://mail.google.com/"}"#)
            .unwrap();
        assert!(g.token_refused());
        let s = ServerError::parse(br#"{"status":"insufficient_scope"}"#).unwrap();
        assert!(!s.token_refused());
        assert_eq!(ServerError::parse(b"not json"), None);
        assert_eq!(ServerError::parse(b"[1]"), None);
    }

    #[test]
    fn separators_do_not_fit() {
        assert!(fits("user@example.com"));
        assert!(!fits("a\x01b"));
        assert!(!fits("a\0b"));
    }
}
