//! Logging in: LOGIN, AUTHENTICATE PLAIN (with and without SASL-IR) and AUTHENTICATE LOGIN, against
//! the local user and password. `me` is the combined login (the whole tree); `me+Work` — or
//! `me@Work`, for clients that insist on an address-like user name — is the account login that
//! sees account Work's subtree with Work as its INBOX (DESIGN §3).

use crate::secret::ct_eq;
use std::borrow::Cow;

use base64::Engine;
use imap_next::imap_types::{
    auth::{AuthMechanism, AuthenticateData},
    core::Tag,
    response::{Code, CodeOther, CommandContinuationRequest, Status},
    secret::Secret,
};
use imap_next::server::Server;
use imap_next::types::CommandAuthenticate;

use super::names::View;
use super::session::{Flow, SaslStep, Session, State};
use crate::net::imap::Driver;
use crate::net::listener::SessionsFull;
use crate::net::throttle;

pub enum LoginError {
    Failed,
    Store(String),
    /// Right, but every session place is taken (`[limits] imap_authenticated`).
    Limit(SessionsFull),
}

impl Session {
    /// Checks credentials; on success the session is authenticated with the login's view, on
    /// failure the answer waits the throttle's delay (`net::throttle`).
    pub async fn login(&mut self, user: &[u8], password: &[u8]) -> Result<(), LoginError> {
        let (local, local_pw) = self.shared.live.login();
        let name = throttle::login_name(user, &local);
        // Until the answer, the delay included: this connection keeps its place (never pushed out
        // by newer ones, not cut by the login timeout) — what bounds how fast anyone can guess.
        let _busy = self.slot.login_attempt();
        let user = String::from_utf8_lossy(user).into_owned();
        let pw_ok = ct_eq(password, local_pw.expose().as_bytes());
        let account = if user == local {
            Some(None)
        } else {
            user.strip_prefix(local.as_str())
                .and_then(|rest| rest.strip_prefix('+').or_else(|| rest.strip_prefix('@')))
                .map(|a| Some(a.to_string()))
        };
        let view = match (pw_ok, account) {
            (true, Some(None)) => Some(View::Combined),
            (true, Some(Some(name))) => {
                let root = self.store().account_root(name).await.map_err(|e| LoginError::Store(e.message))?;
                root.map(|root| View::Account { root })
            }
            _ => None,
        };
        match view {
            Some(view) => {
                self.shared.throttle.succeeded(self.peer.ip(), &name);
                self.slot.authenticated().map_err(LoginError::Limit)?;
                self.state = State::Authenticated { view };
                Ok(())
            }
            None => {
                let delay = self.shared.throttle.failed(self.peer.ip(), &name);
                tracing::info!("imap: failed login from {}", self.peer);
                tokio::time::sleep(delay).await;
                Err(LoginError::Failed)
            }
        }
    }

    pub fn capability_code(&self) -> String {
        format!("CAPABILITY {}", self.capabilities())
    }

    /// LOGIN (RFC 3501 §6.2.3).
    pub async fn cmd_login(&mut self, d: &mut Driver, tag: &Tag<'_>, user: &[u8], password: &[u8]) -> Flow {
        if !matches!(self.state, State::NotAuthenticated) {
            self.bad(d, tag, "already logged in");
            return Flow::Continue;
        }
        match self.login(user, password).await {
            Ok(()) => {
                let code = self.capability_code();
                self.ok(d, tag, Some(&code), "logged in");
            }
            Err(LoginError::Failed) => self.no(d, tag, Some("AUTHENTICATIONFAILED"), "wrong user name or password"),
            Err(LoginError::Store(e)) => {
                self.no(d, tag, Some("UNAVAILABLE"), &format!("the store is unavailable: {e}"))
            }
            Err(LoginError::Limit(full)) => self.no(d, tag, Some("LIMIT"), &limit_text(full)),
        }
        Flow::Continue
    }

    fn finish(&mut self, server: &mut Server, status: Status<'static>) -> Flow {
        self.sasl = None;
        match server.authenticate_finish(status) {
            Ok(_) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    fn finish_text(
        &mut self,
        server: &mut Server,
        tag: Tag<'static>,
        ok: bool,
        code: Option<&str>,
        text: &'static str,
    ) -> Flow {
        let code = code.map(|c| Code::Other(CodeOther::unvalidated(Cow::Owned(c.as_bytes().to_vec()))));
        let st = if ok { Status::ok(Some(tag), code, text) } else { Status::no(Some(tag), code, text) };
        match st {
            Ok(st) => self.finish(server, st),
            Err(_) => Flow::Close,
        }
    }

    async fn finish_login(&mut self, server: &mut Server, tag: Tag<'static>, user: &[u8], password: &[u8]) -> Flow {
        match self.login(user, password).await {
            Ok(()) => {
                let code = self.capability_code();
                self.finish_text(server, tag, true, Some(&code), "logged in")
            }
            Err(LoginError::Failed) => {
                self.finish_text(server, tag, false, Some("AUTHENTICATIONFAILED"), "wrong user name or password")
            }
            Err(LoginError::Store(_)) => {
                self.finish_text(server, tag, false, Some("UNAVAILABLE"), "the store is unavailable")
            }
            Err(LoginError::Limit(full)) => {
                let code = Code::Other(CodeOther::unvalidated(Cow::Borrowed(b"LIMIT".as_slice())));
                match Status::no(Some(tag), Some(code), limit_text(full)) {
                    Ok(st) => self.finish(server, st),
                    Err(_) => Flow::Close,
                }
            }
        }
    }

    fn challenge(&mut self, server: &mut Server, data: &[u8]) -> Flow {
        match server.authenticate_continue(CommandContinuationRequest::base64(data.to_vec())) {
            Ok(_) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    /// AUTHENTICATE (RFC 3501 §6.2.2, RFC 4959 SASL-IR).
    pub async fn authenticate_start(&mut self, _d: &mut Driver, server: &mut Server, c: CommandAuthenticate) -> Flow {
        let CommandAuthenticate { tag, mechanism, initial_response } = c;
        if !matches!(self.state, State::NotAuthenticated) {
            let Ok(st) = Status::bad(Some(tag), None, "already logged in") else { return Flow::Close };
            return self.finish(server, st);
        }
        let ir: Option<Vec<u8>> = initial_response.map(|s: Secret<Cow<'static, [u8]>>| s.declassify().to_vec());
        match mechanism {
            AuthMechanism::Plain => match ir {
                Some(data) => self.plain(server, tag, &data).await,
                None => {
                    self.sasl = Some(SaslStep::Plain { tag });
                    self.challenge(server, b"")
                }
            },
            AuthMechanism::Login => match ir {
                Some(user) => {
                    let user = String::from_utf8_lossy(&user).into_owned();
                    self.sasl = Some(SaslStep::LoginPassword { tag, user });
                    self.challenge(server, b"Password:")
                }
                None => {
                    self.sasl = Some(SaslStep::LoginUser { tag });
                    self.challenge(server, b"Username:")
                }
            },
            _ => self.finish_text(server, tag, false, None, "unsupported mechanism: use PLAIN or LOGIN"),
        }
    }

    async fn plain(&mut self, server: &mut Server, tag: Tag<'static>, data: &[u8]) -> Flow {
        // authzid NUL authcid NUL passwd (RFC 4616); an authzid, if given, must be the authcid.
        let parts: Vec<&[u8]> = data.split(|b| *b == 0).collect();
        match parts.as_slice() {
            [authz, user, pass] if authz.is_empty() || authz == user => {
                let (user, pass) = (user.to_vec(), pass.to_vec());
                self.finish_login(server, tag, &user, &pass).await
            }
            // Well-formed, but asks to act as someone else: refused with NO (RFC 3501 §6.2.2).
            [_, _, _] => {
                self.finish_text(server, tag, false, Some("AUTHORIZATIONFAILED"), "you can only log in as yourself")
            }
            _ => {
                let Ok(st) = Status::bad(Some(tag), None, "malformed PLAIN credentials") else { return Flow::Close };
                self.finish(server, st)
            }
        }
    }

    /// A continuation line imap-next could not parse (not base64): the exchange ends with a tagged
    /// BAD (RFC 3501 §6.2.2).
    pub fn authenticate_malformed(&mut self, server: &mut Server) -> Flow {
        let Some(step) = self.sasl.take() else { return Flow::Continue };
        let tag = match step {
            SaslStep::Plain { tag } | SaslStep::LoginUser { tag } | SaslStep::LoginPassword { tag, .. } => tag,
        };
        let Ok(st) = Status::bad(Some(tag), None, "invalid base64 in the authentication exchange") else {
            return Flow::Close;
        };
        self.finish(server, st)
    }

    pub async fn authenticate_data(
        &mut self,
        _d: &mut Driver,
        server: &mut Server,
        data: AuthenticateData<'static>,
    ) -> Flow {
        let Some(step) = self.sasl.take() else { return Flow::Close };
        let tag = match &step {
            SaslStep::Plain { tag } | SaslStep::LoginUser { tag } | SaslStep::LoginPassword { tag, .. } => tag.clone(),
        };
        let bytes = match data {
            AuthenticateData::Continue(s) => s.declassify().to_vec(),
            AuthenticateData::Cancel => {
                let Ok(st) = Status::bad(Some(tag), None, "authentication cancelled") else { return Flow::Close };
                return self.finish(server, st);
            }
        };
        match step {
            SaslStep::Plain { tag } => self.plain(server, tag, &bytes).await,
            SaslStep::LoginUser { tag } => {
                self.sasl = Some(SaslStep::LoginPassword { tag, user: String::from_utf8_lossy(&bytes).into_owned() });
                self.challenge(server, b"Password:")
            }
            SaslStep::LoginPassword { tag, user } => self.finish_login(server, tag, user.as_bytes(), &bytes).await,
        }
    }
}

/// NO [LIMIT] (RFC 5530): every session place is taken; the client may try again later.
fn limit_text(full: SessionsFull) -> String {
    format!(
        "too many sessions: all {} are logged in (log out of some, or raise [limits] imap_authenticated)",
        full.limit
    )
}

/// Base64 helper kept for tests of the SASL exchanges.
pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}
