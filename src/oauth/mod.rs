//! Built-in OAuth 2 (issue 16): signing in, keeping the tokens, refreshing them ahead of expiry.
//!
//! - [`preset`]: the `microsoft` and `google` endpoints and scopes; `custom` takes its own.
//! - [`flow`]: the two ways to sign in — authorization code with PKCE (S256) and a loopback
//!   redirect on 127.0.0.1 (RFC 8252), or the device authorization grant (RFC 8628, `--device`).
//! - [`token`]: the token file, `$DATA_DIR/oauth/<account>.json` (`Paths::oauth_dir`), replaced
//!   atomically, 0600.
//! - [`http`]: the token endpoint's HTTP client, on `net::tls`'s verified rustls configuration.
//!
//! [`access_token`] is what the fetcher, `account test` and the SMTP side call: it hands out the
//! stored access token, or refreshes it first when it is close to expiry (`token::REFRESH_MARGIN`)
//! or a server just refused it, writing the new tokens (a rotated refresh token included) before
//! returning the new access token. Errors are classified as data (`ErrorClass`, `Error::disable`):
//! `invalid_grant` from the token endpoint disables the account at once (reason
//! [`DISABLED_REASON`], remedy `popbridge account auth NAME`); a network error, a 5xx or 429
//! from it is `Temporary` — the tokens are kept and the fetch schedule's backoff retries.

pub mod flow;
pub mod http;
pub mod preset;
pub mod token;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use oauth2::basic::{BasicClient, BasicTokenResponse};
use oauth2::{AuthType, ClientId, ClientSecret, RefreshToken, RequestTokenError, TokenResponse, TokenUrl};

use crate::blocking;
use crate::config::{Account, AuthMethod, Credential, OAuthSettings, SmtpServer, resolve_secret};
use crate::error::{Error, ErrorClass, Result};
use crate::secret::Secret;

pub use token::{REFRESH_MARGIN, Tokens};

/// The account's `disabled_reason` in the store when the provider refused its grant
/// (`invalid_grant`) or it never signed in: the notice and the ALERT say to sign in again.
pub const DISABLED_REASON: &str = "oauth";

/// What the user runs to sign in again (shown in errors, the notice and the ALERT).
pub fn remedy_command(account: &str) -> String {
    let quoted = if account.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        account.to_string()
    } else {
        format!("'{}'", account.replace('\'', "'\\''"))
    };
    format!("popbridge account auth {quoted}")
}

/// An account's OAuth client: its settings with the preset's endpoints filled in, the client
/// secret resolved (from `client_secret_command` if so configured), the HTTP client.
pub struct Client {
    pub endpoints: preset::Endpoints,
    client_id: String,
    secret: Option<Secret>,
    http: http::Http,
    /// The account's name, for messages and the remedy.
    account: String,
}

impl Client {
    pub async fn new(config_path: &Path, mode: u32, account: &Account) -> Result<Client> {
        let s = settings(account)?;
        let secret = match &s.client_secret {
            Some(src) => Some(resolve_secret(config_path, mode, src, "OAuth client").await?),
            None => None,
        };
        Ok(Client {
            endpoints: preset::endpoints(s),
            client_id: s.client_id.clone(),
            secret,
            http: http::Http::new()?,
            account: account.name.clone(),
        })
    }

    /// The oauth2 client with the ID and secret (sent in the request body: RFC 6749 §2.3.1
    /// allows it, Google's and Microsoft's documentation use it, and a public client sends its
    /// ID there anyway).
    fn base(&self) -> BasicClient {
        let mut c = BasicClient::new(ClientId::new(self.client_id.clone())).set_auth_type(AuthType::RequestBody);
        if let Some(s) = &self.secret {
            c = c.set_client_secret(ClientSecret::new(s.expose().to_string()));
        }
        c
    }

    fn token_url(&self) -> Result<TokenUrl> {
        TokenUrl::new(self.endpoints.token_url.clone())
            .map_err(|e| Error::config(format!("account \"{}\": oauth.token_url: {e}", self.account)))
    }

    /// RFC 6749 §6: a refresh. The provider may rotate the refresh token; if it sends none, the
    /// old one stays valid (§6: "the client MUST discard the old refresh token" only when a new
    /// one is issued).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        let c = self.base().set_token_uri(self.token_url()?);
        let rt = RefreshToken::new(refresh_token.to_string());
        let r = c.exchange_refresh_token(&rt).request_async(&self.http).await.map_err(|e| self.token_error(e))?;
        Ok(self.tokens_from(&r, Some(refresh_token)))
    }

    fn tokens_from(&self, r: &BasicTokenResponse, old_refresh: Option<&str>) -> Tokens {
        let now = crate::store::now();
        Tokens {
            access_token: r.access_token().secret().clone(),
            refresh_token: r.refresh_token().map(|t| t.secret().clone()).or(old_refresh.map(str::to_string)),
            expires_at: r.expires_in().map(|d| now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))),
            obtained_at: now,
            scopes: r
                .scopes()
                .map(|s| s.iter().map(|x| x.to_string()).collect())
                .unwrap_or_else(|| self.endpoints.scopes.clone()),
            token_type: "Bearer".into(),
        }
    }

    /// A token endpoint's failure, as an error a user can act on (never its body: it may echo a
    /// token).
    fn token_error<T: oauth2::ErrorResponse + 'static>(&self, e: RequestTokenError<http::HttpError, T>) -> Error {
        let host = host_of(&self.endpoints.token_url);
        classify(&self.account, &host, e)
    }
}

/// The host of an endpoint URL, for messages.
fn host_of(url: &str) -> String {
    oauth2::url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_else(|| url.to_string())
}

/// The OAuth error code and description of a token endpoint's error answer (RFC 6749 §5.2).
fn error_code<T: oauth2::ErrorResponse + 'static>(r: &T) -> (String, Option<String>) {
    // Every oauth2 ErrorResponse is a StandardErrorResponse<…> serialized with `error` and
    // `error_description` (RFC 6749 §5.2); reading them through serde keeps this generic.
    let v = serde_json::to_value(r).unwrap_or_default();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    (s("error").unwrap_or_else(|| "unknown".into()), s("error_description"))
}

pub(crate) fn classify<T: oauth2::ErrorResponse + 'static>(
    account: &str,
    host: &str,
    e: RequestTokenError<http::HttpError, T>,
) -> Error {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let (code, desc) = error_code(&r);
            let said = desc.map(|d| format!(": {}", shorten(&d))).unwrap_or_default();
            match code.as_str() {
                // RFC 6749 §5.2: the grant (refresh token, code) is invalid, expired or revoked.
                "invalid_grant" => revoked(
                    account,
                    format!("{host} no longer accepts the sign-in of account \"{account}\" (invalid_grant{said})"),
                ),
                "invalid_client" | "unauthorized_client" => Error::new(
                    ErrorClass::Authentication,
                    format!(
                        "{host} refused popbridge's client ID ({code}{said}): check client_id and client_secret in the account's [account.oauth] section"
                    ),
                ),
                "temporarily_unavailable" => Error::new(
                    ErrorClass::Temporary,
                    format!("{host} is temporarily unavailable ({code}{said}); the tokens are kept"),
                ),
                _ => Error::new(ErrorClass::Authentication, format!("{host} refused the token request ({code}{said})")),
            }
        }
        RequestTokenError::Request(http::HttpError::Status(s)) => Error::new(
            ErrorClass::Temporary,
            format!("the token endpoint {host} answered HTTP {s}; the tokens are kept and it is tried again later"),
        ),
        RequestTokenError::Request(http::HttpError::Network(m)) => Error::new(
            ErrorClass::Temporary,
            format!("cannot reach the token endpoint {host} ({m}); the tokens are kept and it is tried again later"),
        ),
        RequestTokenError::Request(e @ http::HttpError::TooLarge) => {
            Error::new(ErrorClass::Protocol, format!("the token endpoint {host} sent a broken answer ({e})"))
        }
        RequestTokenError::Parse(e, _) => Error::new(
            ErrorClass::Protocol,
            format!("the token endpoint {host} sent something that is not an OAuth 2 answer (at {})", e.path()),
        ),
        RequestTokenError::Other(m) => {
            Error::new(ErrorClass::Protocol, format!("the token endpoint {host} sent an unusable answer ({m})"))
        }
    }
}

/// At most 200 characters of a provider's error description.
fn shorten(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    if s.chars().count() > 200 { format!("{}…", s.chars().take(200).collect::<String>()) } else { s }
}

/// The grant is gone: the account needs the user to sign in again. Disabled at once.
fn revoked(account: &str, what: String) -> Error {
    let mut e =
        Error::new(ErrorClass::Authentication, format!("{what}; sign in again: run `{}`", remedy_command(account)));
    e.disable = Some(DISABLED_REASON);
    e
}

fn settings(account: &Account) -> Result<&OAuthSettings> {
    match (&account.oauth, account.pop.auth) {
        (Some(s), AuthMethod::OAuth2) => Ok(s),
        _ => Err(Error::config(format!(
            "account \"{}\" does not use built-in OAuth 2 (set auth = \"oauth2\" in [account.pop] and add an [account.oauth] section)",
            account.name
        ))),
    }
}

/// One lock per token file in this process: the fetcher, the SMTP queue and `verify send` may
/// want a fresh token at the same moment, and two refreshes with one rotating refresh token would
/// have the provider revoke the second as a replay. (Another process — `account test` while the
/// daemon runs — is handled by re-reading the file on `invalid_grant`.)
fn lock_for(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: LazyLock<std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
        LazyLock::new(Default::default);
    let mut map = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(path.to_path_buf()).or_default().clone()
}

async fn load(path: &Path) -> Result<Option<Tokens>> {
    let p = path.to_path_buf();
    blocking(move || token::load(&p)).await
}

async fn save(path: &Path, t: &Tokens) -> Result<()> {
    let (p, t) = (path.to_path_buf(), t.clone());
    blocking(move || token::save(&p, &t)).await
}

/// Stores the tokens of a new sign-in.
pub async fn store_tokens(oauth_dir: &Path, account: &str, t: &Tokens) -> Result<()> {
    let path = token::path(oauth_dir, account);
    let lock = lock_for(&path);
    let _held = lock.lock().await;
    save(&path, t).await
}

/// The access token to log in with. `refused`: the token a server just refused as a token
/// (RFC 7628 `invalid_token`): it is refreshed even if it has not expired — unless the file
/// already holds a newer one.
pub async fn access_token(
    config_path: &Path,
    mode: u32,
    oauth_dir: &Path,
    account: &Account,
    refused: Option<&Secret>,
) -> Result<Secret> {
    settings(account)?;
    let path = token::path(oauth_dir, &account.name);
    let lock = lock_for(&path);
    let _held = lock.lock().await;
    let Some(mut t) = load(&path).await? else {
        return Err(revoked(&account.name, format!("account \"{}\" has not signed in with OAuth 2 yet", account.name)));
    };
    let mut client: Option<Client> = None;
    // Twice at most: a second round only when another process rotated the refresh token while
    // this one was using the old one.
    for _ in 0..2 {
        let stale = refused.is_some_and(|r| r.expose() == t.access_token);
        if !stale && !t.needs_refresh(crate::store::now()) {
            return Ok(t.access());
        }
        let Some(rt) = t.refresh_token.clone() else {
            return Err(revoked(
                &account.name,
                format!(
                    "the access token of account \"{}\" expired and the provider gave no refresh token",
                    account.name
                ),
            ));
        };
        if client.is_none() {
            client = Some(Client::new(config_path, mode, account).await?);
        }
        let Some(c) = client.as_ref() else { return Err(Error::other("internal error: no OAuth client")) };
        match c.refresh(&rt).await {
            Ok(new) => {
                // Persisted before it is used: a rotated refresh token must never exist only in memory.
                save(&path, &new).await?;
                tracing::info!("account \"{}\": OAuth tokens refreshed", account.name);
                return Ok(new.access());
            }
            Err(e) if e.disable.is_some() => {
                // Did someone else refresh meanwhile (the file holds another refresh token)?
                match load(&path).await? {
                    Some(cur) if cur.refresh_token.as_deref() != Some(rt.as_str()) => t = cur,
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(revoked(&account.name, format!("the sign-in of account \"{}\" keeps being refused", account.name)))
}

/// The login for an outgoing server of the account: the OAuth 2 access token when the server
/// uses the account's grant ([`Account::smtp_uses_oauth`]), else its password (or the POP one).
pub async fn smtp_credential(
    config_path: &Path,
    mode: u32,
    oauth_dir: &Path,
    account: &Account,
    server: &SmtpServer,
) -> Result<Option<Credential>> {
    if account.smtp_uses_oauth(server) {
        return Ok(Some(Credential::Bearer(access_token(config_path, mode, oauth_dir, account, None).await?)));
    }
    match account.smtp_password(server) {
        Some(src) => Ok(Some(Credential::Password(resolve_secret(config_path, mode, src, "SMTP").await?))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth2::basic::BasicErrorResponse;

    fn from_body(body: &str) -> Error {
        let r: BasicErrorResponse = serde_json::from_str(body).unwrap();
        classify("Work", "login.example", RequestTokenError::<http::HttpError, _>::ServerResponse(r))
    }

    #[test]
    fn invalid_grant_disables_with_the_remedy() {
        let e =
            from_body(r#"{"error":"invalid_grant","error_description":"AADSTS70000: The refresh token was revoked."}"#);
        assert_eq!((e.class, e.disable), (ErrorClass::Authentication, Some(DISABLED_REASON)));
        assert!(e.message.contains("run `popbridge account auth Work`"), "{}", e.message);
        assert!(e.message.contains("AADSTS70000"), "{}", e.message);
    }

    #[test]
    fn other_oauth_errors_do_not_disable_at_once() {
        for (body, class) in [
            (r#"{"error":"invalid_client"}"#, ErrorClass::Authentication),
            (r#"{"error":"unauthorized_client"}"#, ErrorClass::Authentication),
            (r#"{"error":"invalid_scope"}"#, ErrorClass::Authentication),
            (r#"{"error":"temporarily_unavailable"}"#, ErrorClass::Temporary),
        ] {
            let e = from_body(body);
            assert_eq!((e.class, e.disable), (class, None), "{body}: {}", e.message);
        }
        assert!(from_body(r#"{"error":"invalid_client"}"#).message.contains("client_id"));
    }

    #[test]
    fn the_network_and_5xx_are_temporary_and_keep_the_tokens() {
        for err in [
            http::HttpError::Status(503),
            http::HttpError::Status(429),
            http::HttpError::Network("connection refused".into()),
        ] {
            let e = classify::<BasicErrorResponse>("Work", "h", RequestTokenError::Request(err));
            assert_eq!((e.class, e.disable), (ErrorClass::Temporary, None), "{}", e.message);
            assert!(e.message.contains("kept"), "{}", e.message);
        }
    }

    #[test]
    fn a_body_that_is_not_oauth_is_a_protocol_error_and_never_shown() {
        let body = b"<html>SecretTokenEcho</html>".to_vec();
        let parse = serde_path_to_error_like(&body);
        let e = classify::<BasicErrorResponse>("W", "h", RequestTokenError::Parse(parse, body));
        assert_eq!(e.class, ErrorClass::Protocol);
        assert!(!e.message.contains("SecretTokenEcho"), "{}", e.message);
    }

    fn serde_path_to_error_like(body: &[u8]) -> serde_path_to_error::Error<serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize::<_, BasicTokenResponse>(&mut de).unwrap_err()
    }

    /// A token endpoint on loopback that answers each request with the next canned (status, body)
    /// and records the request bodies.
    async fn token_endpoint(answers: Vec<(u16, &'static str)>) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            for (status, body) in answers {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if rest.len() >= len {
                            log.lock().unwrap().push(rest.to_string());
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(reply.as_bytes()).await.unwrap();
                let _ = s.shutdown().await;
            }
        });
        (port, seen)
    }

    fn account(port: u16) -> Account {
        let text = format!(
            "[[account]]\nname = \"Work\"\nemail = \"me@example.com\"\n[account.pop]\nhost = \"pop.example\"\nuser = \"me\"\nauth = \"oauth2\"\n[account.oauth]\nprovider = \"custom\"\nclient_id = \"cid\"\ntoken_url = \"http://127.0.0.1:{port}/token\"\ndevice_authorization_url = \"http://127.0.0.1:{port}/device\"\nscopes = [\"pop\"]\n"
        );
        crate::config::parse(&text, Path::new("/tmp/c.toml"), 0o600).unwrap().accounts.remove(0)
    }

    fn expired(refresh: &str) -> Tokens {
        let now = crate::store::now();
        Tokens {
            access_token: "old-access".into(),
            refresh_token: Some(refresh.into()),
            expires_at: Some(now - 10),
            obtained_at: now - 3610,
            scopes: vec!["pop".into()],
            token_type: "Bearer".into(),
        }
    }

    #[tokio::test]
    async fn a_refresh_persists_the_rotated_token_before_handing_out_the_new_access_token() {
        let (port, seen) = token_endpoint(vec![(
            200,
            r#"{"access_token":"new-access","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-2"}"#,
        )])
        .await;
        let d = crate::files::private_tempdir();
        let dir = d.path().join("oauth");
        token::save(&token::path(&dir, "Work"), &expired("rt-1")).unwrap();
        let a = account(port);
        let t = access_token(Path::new("/tmp/c.toml"), 0o600, &dir, &a, None).await.unwrap();
        assert_eq!(t.expose(), "new-access");
        let file = token::load(&token::path(&dir, "Work")).unwrap().unwrap();
        assert_eq!((file.access_token.as_str(), file.refresh_token.as_deref()), ("new-access", Some("rt-2")));
        assert!(!file.needs_refresh(crate::store::now()));
        let body = seen.lock().unwrap()[0].clone();
        assert!(
            body.contains("grant_type=refresh_token")
                && body.contains("refresh_token=rt-1")
                && body.contains("client_id=cid"),
            "{body}"
        );
        // Fresh now: handed out without asking the endpoint (it would not answer again).
        assert_eq!(access_token(Path::new("/tmp/c.toml"), 0o600, &dir, &a, None).await.unwrap().expose(), "new-access");
    }

    #[tokio::test]
    async fn a_503_keeps_the_tokens_and_invalid_grant_disables() {
        let (port, _) = token_endpoint(vec![
            (503, "<html>busy</html>"),
            (400, r#"{"error":"invalid_grant","error_description":"revoked"}"#),
        ])
        .await;
        let d = crate::files::private_tempdir();
        let dir = d.path().join("oauth");
        let path = token::path(&dir, "Work");
        token::save(&path, &expired("rt-1")).unwrap();
        let a = account(port);
        let e = access_token(Path::new("/tmp/c.toml"), 0o600, &dir, &a, None).await.unwrap_err();
        assert_eq!((e.class, e.disable), (ErrorClass::Temporary, None), "{}", e.message);
        let kept = token::load(&path).unwrap().unwrap();
        assert_eq!((kept.access_token.as_str(), kept.refresh_token.as_deref()), ("old-access", Some("rt-1")), "kept");
        let e = access_token(Path::new("/tmp/c.toml"), 0o600, &dir, &a, None).await.unwrap_err();
        assert_eq!((e.class, e.disable), (ErrorClass::Authentication, Some(DISABLED_REASON)), "{}", e.message);
        assert!(e.message.contains("popbridge account auth Work"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_refused_token_is_refreshed_even_before_it_expires() {
        let (port, _) =
            token_endpoint(vec![(200, r#"{"access_token":"second","token_type":"Bearer","expires_in":3600}"#)]).await;
        let d = crate::files::private_tempdir();
        let dir = d.path().join("oauth");
        let mut fresh = expired("rt-1");
        fresh.expires_at = Some(crate::store::now() + 3000);
        token::save(&token::path(&dir, "Work"), &fresh).unwrap();
        let a = account(port);
        let cfg = Path::new("/tmp/c.toml");
        assert_eq!(access_token(cfg, 0o600, &dir, &a, None).await.unwrap().expose(), "old-access");
        let t = access_token(cfg, 0o600, &dir, &a, Some(&Secret::new("old-access"))).await.unwrap();
        assert_eq!(t.expose(), "second");
        // No new refresh token in the answer: the old one stays (RFC 6749 §6).
        let file = token::load(&token::path(&dir, "Work")).unwrap().unwrap();
        assert_eq!(file.refresh_token.as_deref(), Some("rt-1"));
    }

    #[tokio::test]
    async fn an_account_that_never_signed_in_is_disabled_with_the_remedy() {
        let d = crate::files::private_tempdir();
        let e = access_token(Path::new("/tmp/c.toml"), 0o600, &d.path().join("oauth"), &account(9), None)
            .await
            .unwrap_err();
        assert_eq!(e.disable, Some(DISABLED_REASON));
        assert!(e.message.contains("popbridge account auth Work"), "{}", e.message);
    }

    #[test]
    fn remedy_quotes_names_for_the_shell() {
        assert_eq!(remedy_command("Work"), "popbridge account auth Work");
        assert_eq!(remedy_command("My Mail"), "popbridge account auth 'My Mail'");
    }
}
