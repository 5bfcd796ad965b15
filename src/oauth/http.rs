//! The HTTP client of the token and device endpoints: reqwest on popbridge's own rustls
//! configuration (ring, the platform verifier, `net::tls::upstream` — no second TLS stack, no
//! plaintext fallback), no redirects (RFC 6749 §3.2 endpoints answer directly; following one
//! could carry the code or refresh token elsewhere), a timeout, and a cap on the answer's size.
//!
//! A 5xx or 429 answer becomes [`HttpError::Status`] before oauth2 reads it: "the provider has a
//! problem, try later", kept apart from the provider's OAuth errors (400/401 with a JSON body).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::{HttpRequest, HttpResponse};

use crate::config::TrustSettings;
use crate::error::{Error, Result};
use crate::net::tls;

/// One request to a token endpoint may take this long (connect, TLS, answer).
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// A token endpoint's answer is a small JSON object; anything bigger is not one.
pub const MAX_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The endpoint could not be reached, or the connection broke or timed out.
    #[error("{0}")]
    Network(String),
    /// A 5xx or 429 answer: the provider's trouble, not the grant's.
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("the answer is larger than {MAX_BODY} bytes")]
    TooLarge,
}

pub struct Http {
    client: reqwest::Client,
}

impl Http {
    pub fn new() -> Result<Http> {
        let up = tls::upstream(&TrustSettings { ca_file: None, pin_sha256: None })?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls((*up.config).clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()
            .map_err(|e| Error::other(format!("cannot set up the HTTP client for OAuth: {e}")))?;
        Ok(Http { client })
    }

    async fn send(&self, request: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        let req: reqwest::Request = request.try_into().map_err(|e: reqwest::Error| HttpError::Network(describe(&e)))?;
        let mut resp = self.client.execute(req).await.map_err(|e| HttpError::Network(describe(&e)))?;
        let status = resp.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(HttpError::Status(status.as_u16()));
        }
        let mut builder = oauth2::http::Response::builder().status(status.as_u16());
        for (name, value) in resp.headers() {
            builder = builder.header(name.as_str(), value.as_bytes());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| HttpError::Network(describe(&e)))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        builder.body(body).map_err(|e| HttpError::Network(e.to_string()))
    }
}

/// reqwest's error with its causes (the TLS or connection error inside). The endpoints' URLs
/// carry no secret (codes and tokens travel in the POST body), so naming them is fine.
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

impl<'c> oauth2::AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
