//! Signing in: the two flows of `account add --oauth` and `account auth`.
//!
//! - Browser (default): authorization code with PKCE S256 (RFC 7636) and a loopback redirect
//!   (RFC 8252 §7.3): popbridge listens on 127.0.0.1 on a port the system picks, prints one line
//!   `open URL in a browser to sign in`, and waits for the browser's redirect to
//!   `http://127.0.0.1:PORT/?code=…&state=…` (for Microsoft `http://localhost:PORT`, the redirect
//!   its app registrations accept for any port). The `state` must match; the code is exchanged
//!   with the verifier.
//! - Device (`--device`, RFC 8628): prints one line `open URL and enter CODE`, then polls the token
//!   endpoint at the interval the provider gives (`slow_down` adds 5 s, RFC 8628 §3.5; a network
//!   error or 5xx doubles it, up to 10 s more) until the user has signed in, declined, or the code
//!   expired.
//!
//! The tokens are stored before the function returns. Nothing else is printed on stdout.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use oauth2::{
    AuthUrl, AuthorizationCode, CsrfToken, DeviceAuthorizationUrl, DeviceCodeErrorResponseType, PkceCodeChallenge,
    RedirectUrl, RequestTokenError, Scope, StandardDeviceAuthorizationResponse,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Client, Tokens, host_of, store_tokens};
use crate::config::{Account, OAuthProvider};
use crate::error::{Error, ErrorClass, Result};
use crate::secret::ct_eq;

/// How long the browser sign-in may take before popbridge gives up waiting for the redirect.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The redirect is one small GET; more than this from the browser is not it.
const MAX_REQUEST: usize = 16 * 1024;
/// One browser connection may take this long to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Signs the account in (browser or device flow) and stores its tokens. `out` gets the one line
/// the user acts on.
pub async fn sign_in(
    config_path: &Path,
    mode: u32,
    oauth_dir: &Path,
    account: &Account,
    device: bool,
    out: &mut (dyn Write + Send),
) -> Result<Tokens> {
    let client = Client::new(config_path, mode, account).await?;
    let tokens = if device { device_flow(&client, out).await? } else { browser_flow(&client, account, out).await? };
    store_tokens(oauth_dir, &account.name, &tokens).await?;
    Ok(tokens)
}

fn print(out: &mut (dyn Write + Send), line: &str) -> Result<()> {
    writeln!(out, "{line}").and_then(|_| out.flush()).map_err(|e| Error::other(format!("cannot write to stdout: {e}")))
}

fn scopes(c: &Client) -> Vec<Scope> {
    c.endpoints.scopes.iter().map(|s| Scope::new(s.clone())).collect()
}

async fn browser_flow(c: &Client, account: &Account, out: &mut (dyn Write + Send)) -> Result<Tokens> {
    let Some(auth_url) = c.endpoints.authorization_url.clone() else {
        return Err(Error::config(format!(
            "account \"{}\": the provider has no authorization_url for the browser sign-in; sign in with --device",
            account.name
        )));
    };
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| Error::other(format!("cannot listen on 127.0.0.1 for the sign-in redirect: {e}")))?;
    let port = listener.local_addr().map_err(|e| Error::other(e.to_string()))?.port();
    // Microsoft's app registrations take the redirect "http://localhost" (the port is ignored for
    // it; MSAL sends it this way, without a path); the others the loopback address itself, which
    // RFC 8252 §8.3 prefers. Either way the browser comes to this listener on 127.0.0.1.
    let redirect = if account.oauth.as_ref().is_some_and(|o| o.provider == OAuthProvider::Microsoft) {
        format!("http://localhost:{port}")
    } else {
        format!("http://127.0.0.1:{port}/")
    };
    let cfg = |e: oauth2::url::ParseError| Error::config(format!("account \"{}\": {e}", account.name));
    let oc = c
        .base()
        .set_auth_uri(AuthUrl::new(auth_url).map_err(cfg)?)
        .set_token_uri(c.token_url()?)
        .set_redirect_uri(RedirectUrl::new(redirect).map_err(cfg)?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) =
        oc.authorize_url(CsrfToken::new_random).add_scopes(scopes(c)).set_pkce_challenge(challenge).url();
    print(out, &format!("open {url} in a browser to sign in"))?;
    let code =
        tokio::time::timeout(BROWSER_TIMEOUT, wait_for_redirect(&listener, state.secret())).await.map_err(|_| {
            Error::new(
                ErrorClass::Authentication,
                format!("no sign-in within {} minutes; run the command again", BROWSER_TIMEOUT.as_secs() / 60),
            )
        })??;
    let r = oc
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&c.http)
        .await
        .map_err(|e| c.token_error(e))?;
    Ok(c.tokens_from(&r, None))
}

/// Serves the loopback redirect until it brings a code with the right state (other requests —
/// a favicon, a stray connection — get a 404 and are ignored).
async fn wait_for_redirect(listener: &TcpListener, state: &str) -> Result<String> {
    loop {
        let (mut sock, _) =
            listener.accept().await.map_err(|e| Error::other(format!("the sign-in redirect listener failed: {e}")))?;
        let target = match tokio::time::timeout(REQUEST_TIMEOUT, read_request_target(&mut sock)).await {
            Ok(Some(t)) => t,
            _ => continue,
        };
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let params: Vec<(String, String)> =
            oauth2::url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let (code, error, got_state) = (get("code"), get("error"), get("state"));
        if code.is_none() && error.is_none() {
            respond(&mut sock, "404 Not Found", "Not the sign-in redirect.").await;
            continue;
        }
        // RFC 6749 §10.12: a redirect without our state is not the answer to our request.
        if !got_state.is_some_and(|s| ct_eq(s.as_bytes(), state.as_bytes())) {
            respond(&mut sock, "400 Bad Request", "This sign-in answer does not belong to popbridge's request.").await;
            continue;
        }
        if let Some(err) = error {
            let desc = get("error_description").map(|d| format!(": {}", super::shorten(&d))).unwrap_or_default();
            respond(&mut sock, "200 OK", "The sign-in did not complete. You can close this window.").await;
            return Err(Error::new(ErrorClass::Authentication, format!("the sign-in was not completed ({err}{desc})")));
        }
        respond(&mut sock, "200 OK", "Signed in to popbridge. You can close this window.").await;
        return code.ok_or_else(|| Error::other("internal error: no code"));
    }
}

/// The request target of an HTTP/1 request (`GET /?code=… HTTP/1.1`): `None` if it is not one.
async fn read_request_target(sock: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    (method == "GET").then(|| target.to_string())
}

async fn respond(sock: &mut TcpStream, status: &str, text: &str) {
    let body = format!("<!doctype html><title>popbridge</title><p>{text}</p>\n");
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(msg.as_bytes()).await;
    let _ = sock.shutdown().await;
}

async fn device_flow(c: &Client, out: &mut (dyn Write + Send)) -> Result<Tokens> {
    let Some(device_url) = c.endpoints.device_authorization_url.clone() else {
        return Err(Error::config(format!(
            "account \"{}\": the provider has no device_authorization_url; sign in without --device",
            c.account
        )));
    };
    let host = host_of(&device_url);
    let oc = c
        .base()
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(device_url)
                .map_err(|e| Error::config(format!("account \"{}\": {e}", c.account)))?,
        )
        .set_token_uri(c.token_url()?);
    let details: StandardDeviceAuthorizationResponse = oc
        .exchange_device_code()
        .add_scopes(scopes(c))
        .request_async(&c.http)
        .await
        .map_err(|e| super::classify(&c.account, &host, e))?;
    print(out, &format!("open {} and enter {}", details.verification_uri().as_str(), details.user_code().secret()))?;
    let r = oc.exchange_device_access_token(&details).request_async(&c.http, tokio::time::sleep, None).await.map_err(
        |e| match &e {
            RequestTokenError::ServerResponse(r) if *r.error() == DeviceCodeErrorResponseType::ExpiredToken => {
                Error::new(
                    ErrorClass::Authentication,
                    "the code expired before the sign-in was completed; run the command again",
                )
            }
            RequestTokenError::ServerResponse(r) if *r.error() == DeviceCodeErrorResponseType::AccessDenied => {
                Error::new(ErrorClass::Authentication, "the sign-in was declined")
            }
            _ => c.token_error(e),
        },
    )?;
    Ok(c.tokens_from(&r, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(port: u16, target: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_redirect_listener_takes_only_the_answer_with_its_state() {
        let l = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let waiting = tokio::spawn(async move { wait_for_redirect(&l, "st-123").await });
        assert!(get(port, "/favicon.ico").await.starts_with("HTTP/1.1 404"));
        let forged = get(port, "/?code=evil&state=other").await;
        assert!(forged.starts_with("HTTP/1.1 400"), "{forged}");
        assert!(!waiting.is_finished(), "a wrong state is not the answer");
        let ok = get(port, "/?code=the%2Fcode&state=st-123").await;
        assert!(ok.starts_with("HTTP/1.1 200") && ok.contains("Signed in to popbridge"), "{ok}");
        assert!(!ok.contains("the/code"), "the page does not echo the code: {ok}");
        assert_eq!(waiting.await.unwrap().unwrap(), "the/code");
    }

    /// Sends what the flow writes to a channel, a line at a time.
    struct Lines(tokio::sync::mpsc::UnboundedSender<String>, Vec<u8>);

    impl Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.1.extend_from_slice(b);
            while let Some(i) = self.1.iter().position(|c| *c == b'\n') {
                let line: Vec<u8> = self.1.drain(..=i).collect();
                let _ = self.0.send(String::from_utf8_lossy(&line).trim_end().to_string());
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The one line the browser flow prints for a preset account, as the URL's query pairs.
    async fn browser_line(provider: &str) -> (oauth2::url::Url, Vec<(String, String)>) {
        let text = format!(
            "[[account]]\nname = \"Mail\"\nemail = \"me@example.com\"\n[account.pop]\nhost = \"pop.example\"\nuser = \"me\"\nauth = \"oauth2\"\n[account.oauth]\nprovider = \"{provider}\"\nclient_id = \"cid-1\"\n"
        );
        let account = crate::config::parse(&text, Path::new("/tmp/c.toml"), 0o600).unwrap().accounts.remove(0);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let flow = tokio::spawn(async move {
            let client = Client::new(Path::new("/tmp/c.toml"), 0o600, &account).await.unwrap();
            let mut out = Lines(tx, Vec::new());
            let _ = browser_flow(&client, &account, &mut out).await;
        });
        let line = rx.recv().await.unwrap();
        flow.abort();
        let url = line.strip_prefix("open ").and_then(|l| l.strip_suffix(" in a browser to sign in")).unwrap();
        let url = oauth2::url::Url::parse(url).unwrap();
        let pairs = url.query_pairs().into_owned().collect();
        (url, pairs)
    }

    #[tokio::test]
    async fn the_browser_line_asks_for_a_pkce_code_for_pop_and_smtp() {
        let (url, q) = browser_line("microsoft").await;
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("");
        assert_eq!(url.as_str().split('?').next(), Some(crate::oauth::preset::MICROSOFT_AUTHORIZE));
        assert_eq!((get("client_id"), get("response_type"), get("code_challenge_method")), ("cid-1", "code", "S256"));
        assert_eq!(get("code_challenge").len(), 43, "base64url of a SHA-256 (RFC 7636 §4.2)");
        assert!(get("state").len() >= 16);
        assert_eq!(
            get("scope"),
            "https://outlook.office.com/POP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access"
        );
        let redirect = get("redirect_uri");
        assert!(redirect.starts_with("http://localhost:") && !redirect.ends_with('/'), "{redirect}");
        let (url, q) = browser_line("google").await;
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("");
        assert_eq!(url.host_str(), Some("accounts.google.com"));
        assert_eq!(get("scope"), "https://mail.google.com/");
        assert!(get("redirect_uri").starts_with("http://127.0.0.1:"), "{}", get("redirect_uri"));
    }

    #[tokio::test]
    async fn a_refused_sign_in_is_reported() {
        let l = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let waiting = tokio::spawn(async move { wait_for_redirect(&l, "s").await });
        get(port, "/?error=access_denied&error_description=The+user+declined&state=s").await;
        let e = waiting.await.unwrap().unwrap_err();
        assert_eq!(e.class, ErrorClass::Authentication);
        assert!(e.message.contains("access_denied") && e.message.contains("The user declined"), "{}", e.message);
    }
}
