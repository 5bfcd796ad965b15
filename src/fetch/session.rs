//! Opening an authenticated POP3 session: connect (implicit TLS or STLS), CAPA, login. Shared by the
//! fetch cycle and `account test`.

use base64::Engine;

use crate::config::{Account, AuthMethod, Credential, TlsMode};
use crate::error::{Error, ErrorClass, Result};
use crate::net::pop3::{Pop3Conn, refusal};
use crate::net::tls::{self, Upstream};
use crate::pop3::{self, Capabilities, Command, Reply, Status};
use crate::secret::Secret;

pub struct Session {
    pub conn: Pop3Conn,
    /// Capabilities after login (RFC 2449 lets them change), or before login when CAPA is refused then.
    pub caps: Option<Capabilities>,
    /// Capabilities before login (what `account test` shows: STLS, SASL mechanisms, USER).
    pub caps_before: Option<Capabilities>,
    pub greeting: String,
    pub upstream: Option<Upstream>,
    pub auth_used: &'static str,
    /// The server accepted RFC 6856's `UTF8`: it sends 8-bit headers as they are.
    pub utf8: bool,
}

async fn capa(conn: &mut Pop3Conn) -> Result<Option<Capabilities>> {
    let r = conn.call(&Command::Capa).await?;
    Ok(match (r.status, r.body) {
        (Status::Ok, pop3::Body::Data(b)) => Some(pop3::parse_capa(&b)),
        _ => None, // an RFC 1939-only server: no CAPA
    })
}

/// Where an account's login comes from: the config (passwords, `password_command`) and the data
/// directory's token files (`auth = "oauth2"`).
pub struct Secrets<'a> {
    pub config_path: &'a std::path::Path,
    pub config_mode: u32,
    pub oauth_dir: &'a std::path::Path,
}

/// Opens a logged-in session with the account's credential: its password, or its OAuth 2 access
/// token. A token the server refuses is refreshed once and tried again on a new connection (it
/// may have been revoked early, or the clocks disagree); a second refusal is the error. The
/// secret is dropped once the login is done.
pub async fn login(secrets: &Secrets<'_>, account: &Account) -> Result<Session> {
    let (path, mode, dir) = (secrets.config_path, secrets.config_mode, secrets.oauth_dir);
    if account.pop.auth != AuthMethod::OAuth2 {
        let Some(src) = &account.pop.password else {
            return Err(Error::config(format!("account \"{}\": no POP password is configured", account.name)));
        };
        let pw = crate::config::resolve_secret(path, mode, src, "POP").await?;
        return Session::open(account, &Credential::Password(pw)).await;
    }
    let token = crate::oauth::access_token(path, mode, dir, account, None).await?;
    match Session::open_once(account, &Credential::Bearer(token.clone())).await? {
        Ok(s) => Ok(s),
        Err(refused) => {
            tracing::info!("{}: the access token was refused; refreshing it and trying again", refused.message);
            let fresh = crate::oauth::access_token(path, mode, dir, account, Some(&token)).await?;
            Session::open(account, &Credential::Bearer(fresh)).await
        }
    }
}

impl Session {
    /// Connect and log in with `cred`.
    pub async fn open(account: &Account, cred: &Credential) -> Result<Session> {
        Session::open_once(account, cred).await?
    }

    /// [`Session::open`], with an OAuth 2 token the server refused kept apart (the inner `Err`:
    /// a refreshed token may work) from every other failure (the outer one).
    async fn open_once(account: &Account, cred: &Credential) -> Result<Result<Session>> {
        let server = &account.pop;
        let upstream = match server.tls {
            TlsMode::Plain => None,
            _ => Some(tls::upstream(&server.trust)?),
        };
        let (mut conn, greeting) = Pop3Conn::open(server, upstream.as_ref()).await?;
        let mut caps_before = capa(&mut conn).await?;
        if server.tls == TlsMode::StartTls {
            if let Some(c) = &caps_before
                && !c.stls
            {
                return Err(Error::new(
                    ErrorClass::Certificate,
                    format!(
                        "{}:{} does not offer STLS, so the password would travel unencrypted; popbridge never falls back to plaintext (use tls = \"implicit\" on port 995 if the provider offers it)",
                        server.host, server.port
                    ),
                ));
            }
            let Some(up) = upstream.as_ref() else { return Err(Error::other("internal error: no TLS configuration")) };
            conn.starttls(up).await?;
            caps_before = capa(&mut conn).await?;
        }
        let auth_used = match authenticate(&mut conn, account, caps_before.as_ref(), &greeting.text, cred).await? {
            Ok(a) => a,
            Err(refused) => return Ok(Err(refused)),
        };
        // RFC 2449 §5: capabilities may differ after login (PIPELINING, LOGIN-DELAY, EXPIRE per user).
        let mut caps =
            if caps_before.is_some() { capa(&mut conn).await?.or_else(|| caps_before.clone()) } else { None };
        // `pipelining = "off"`: every user of the session (fetch, probe, import-state) sees a
        // server without PIPELINING, and works in lock step.
        if let Some(c) = caps.as_mut().filter(|_| !account.pop.pipelining) {
            c.pipelining = false;
        }
        // RFC 6856: a server offering UTF8 may rewrite a message whose headers are 8-bit for a
        // client that did not send it (Courier sends a "Cannot display Unicode content" notice
        // instead); popbridge stores messages as they are, so it asks for them as they are. A
        // refusal changes nothing else.
        let mut utf8 = false;
        if caps.as_ref().is_some_and(|c| c.utf8) {
            utf8 = conn.call(&Command::Utf8).await?.status == Status::Ok;
        }
        Ok(Ok(Session { conn, caps, caps_before, greeting: greeting.text, upstream, auth_used, utf8 }))
    }
}

fn auth_refusal(host: &str, r: &Reply, caps: Option<&Capabilities>) -> Error {
    if r.code.is_some() {
        return refusal(host, "refused the login:", r);
    }
    // RFC 3206 §4: a server advertising AUTH-RESP-CODE marks credential problems with [AUTH];
    // a bare -ERR from it is about something else (and may go away).
    if caps.is_some_and(|c| c.auth_resp_code) {
        return Error::new(
            ErrorClass::Temporary,
            format!("{host} refused the login, not because of the credentials: \"{}\"", r.text),
        );
    }
    Error::new(ErrorClass::Authentication, format!("{host} rejected the user name or password: \"{}\"", r.text))
}

fn has_sasl(caps: Option<&Capabilities>, mech: &str) -> bool {
    caps.is_some_and(|c| c.sasl.iter().any(|m| m.eq_ignore_ascii_case(mech)))
}

/// Logs in. The inner `Err`: the server refused the OAuth 2 bearer token (worth one refresh).
async fn authenticate(
    conn: &mut Pop3Conn,
    account: &Account,
    caps: Option<&Capabilities>,
    greeting: &str,
    cred: &Credential,
) -> Result<Result<&'static str>> {
    let server = &account.pop;
    let user = server.user.as_str();
    if !pop3::check_arg(user) {
        return Err(Error::config(format!("account \"{}\": the POP user name contains a line break", account.name)));
    }
    let password = match (cred, server.auth) {
        (Credential::Bearer(token), AuthMethod::OAuth2) => {
            return oauth_login(conn, account, caps, token).await;
        }
        (Credential::Password(pw), m) if m != AuthMethod::OAuth2 => pw,
        _ => return Err(Error::other("internal error: the credential does not match the account's auth method")),
    };
    password_login(conn, account, caps, greeting, password).await.map(Ok)
}

/// `auth = "oauth2"`: OAUTHBEARER (RFC 7628) when the server's CAPA lists it, else XOAUTH2 (what
/// Gmail's and Outlook's POP servers offer). A refusal is a token problem worth one refresh when
/// the server says so (RFC 7628 `invalid_token`, XOAUTH2 "401") or rejects the credentials.
async fn oauth_login(
    conn: &mut Pop3Conn,
    account: &Account,
    caps: Option<&Capabilities>,
    token: &Secret,
) -> Result<Result<&'static str>> {
    let server = &account.pop;
    let (host, user, tok) = (server.host.as_str(), server.user.as_str(), token.expose());
    let bearer = has_sasl(caps, "OAUTHBEARER");
    let cmd = if bearer {
        Command::AuthOauthbearer { user, host, port: server.port, token: tok }
    } else {
        Command::AuthXoauth2 { user, token: tok }
    };
    let r = conn.call(&cmd).await?;
    if r.status == Status::Ok {
        return Ok(Ok(if bearer { "SASL OAUTHBEARER" } else { "SASL XOAUTH2" }));
    }
    let mut refused_token = false;
    let err = if r.status == Status::Continue {
        // RFC 7628 §3.2.2: the error is a base64 JSON continuation; the client ends the exchange
        // with ^A (XOAUTH2: an empty line) and the server then sends its -ERR.
        let json = base64::engine::general_purpose::STANDARD.decode(r.text.trim()).unwrap_or_default();
        let detail = crate::sasl::ServerError::parse(&json);
        refused_token = detail.as_ref().is_some_and(|d| d.token_refused());
        let answer: &[u8] = if bearer { crate::sasl::OAUTHBEARER_ABORT } else { b"" };
        let end = conn.call(&Command::SaslResponse(answer)).await;
        let mut e = match end {
            Ok(end) if end.status == Status::Err => auth_refusal(host, &end, caps),
            _ => Error::new(ErrorClass::Authentication, format!("{host} did not accept the login")),
        };
        if let Some(st) = detail.and_then(|d| d.status) {
            e.message.push_str(&format!(" (server said: status {st})"));
        }
        e
    } else {
        auth_refusal(host, &r, caps)
    };
    if refused_token || err.class == ErrorClass::Authentication {
        let mut e = err;
        e.message = format!("{host} refused the OAuth 2 access token: {}", e.message);
        if e.class == ErrorClass::Authentication && account.pop.auth == AuthMethod::OAuth2 {
            e.message.push_str(&format!(
                "; if this persists, sign in again: run `{}`",
                crate::oauth::remedy_command(&account.name)
            ));
        }
        return Ok(Err(e));
    }
    Err(err)
}

async fn password_login(
    conn: &mut Pop3Conn,
    account: &Account,
    caps: Option<&Capabilities>,
    greeting: &str,
    password: &Secret,
) -> Result<&'static str> {
    let server = &account.pop;
    let host = server.host.clone();
    let user = server.user.as_str();
    let timestamp = pop3::apop_timestamp(greeting).map(str::to_string);
    let method = match server.auth {
        AuthMethod::Auto => {
            if has_sasl(caps, "PLAIN") {
                AuthMethod::Plain
            } else if caps.is_none_or(|c| c.user) {
                AuthMethod::User
            } else if has_sasl(caps, "LOGIN") {
                AuthMethod::Login
            } else if timestamp.is_some() {
                AuthMethod::Apop
            } else {
                AuthMethod::User
            }
        }
        m => m,
    };
    let pw = password.expose();
    match method {
        AuthMethod::User | AuthMethod::Auto => {
            let r = conn.call(&Command::User(user)).await?;
            if r.status != Status::Ok {
                return Err(auth_refusal(&host, &r, caps));
            }
            if !pop3::check_arg(pw) {
                return Err(Error::config("the POP password contains a line break"));
            }
            let r = conn.call(&Command::Pass(pw)).await?;
            if r.status != Status::Ok {
                return Err(auth_refusal(&host, &r, caps));
            }
            Ok("USER/PASS")
        }
        AuthMethod::Apop => {
            let Some(ts) = timestamp else {
                return Err(Error::new(
                    ErrorClass::Authentication,
                    format!("{host} does not offer APOP (its greeting has no timestamp); use auth = \"auto\""),
                ));
            };
            let r = conn.call(&Command::Apop { user, timestamp: &ts, password: pw }).await?;
            if r.status != Status::Ok {
                return Err(auth_refusal(&host, &r, caps));
            }
            Ok("APOP")
        }
        AuthMethod::Plain => {
            let mut r = conn.call(&Command::AuthPlain { authzid: None, user, password: pw }).await?;
            if r.status == Status::Continue {
                let ir = format!("\0{user}\0{pw}");
                r = conn.call(&Command::SaslResponse(ir.as_bytes())).await?;
            }
            if r.status != Status::Ok {
                return Err(sasl_failure(conn, &host, r, caps).await);
            }
            Ok("SASL PLAIN")
        }
        AuthMethod::Login => {
            let mut r = conn.call(&Command::AuthLogin).await?;
            for answer in [user, pw] {
                if r.status != Status::Continue {
                    break;
                }
                r = conn.call(&Command::SaslResponse(answer.as_bytes())).await?;
            }
            if r.status != Status::Ok {
                return Err(sasl_failure(conn, &host, r, caps).await);
            }
            Ok("SASL LOGIN")
        }
        AuthMethod::Xoauth2 => {
            let r = conn.call(&Command::AuthXoauth2 { user, token: pw }).await?;
            if r.status != Status::Ok {
                return Err(sasl_failure(conn, &host, r, caps).await);
            }
            Ok("SASL XOAUTH2")
        }
        AuthMethod::OAuth2 => Err(Error::other("internal error: an OAuth 2 login without a token")),
    }
}

/// A SASL exchange that ended without +OK. A continuation at this point carries the server's error
/// details (XOAUTH2 sends base64 JSON); answering it with an empty line ends the exchange (RFC 5034).
async fn sasl_failure(conn: &mut Pop3Conn, host: &str, r: Reply, caps: Option<&Capabilities>) -> Error {
    if r.status == Status::Continue {
        let detail = base64::engine::general_purpose::STANDARD
            .decode(r.text.trim())
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|| r.text.clone());
        let end = conn.call(&Command::SaslResponse(b"")).await;
        let mut e = match end {
            Ok(end) if end.status == Status::Err => auth_refusal(host, &end, caps),
            _ => Error::new(ErrorClass::Authentication, format!("{host} did not accept the login")),
        };
        e.message.push_str(&format!(" (server said: {detail})"));
        return e;
    }
    auth_refusal(host, &r, caps)
}
