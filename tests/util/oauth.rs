//! The OAuth2 side of the tests: a real authorization server (`tests/util/oauth_server.py`,
//! authlib + Flask under the `python3` on PATH) in a child process per test, on a free loopback
//! port; its test controls (token lifetime, injected failures at /token, revoked grants, held
//! introspection requests, the request log, the issued tokens); Dovecot's passdb oauth2 pointed
//! at it; and the user's part of the sign-in flows: playing the browser with curl for the
//! authorization code + PKCE flow (given popbridge's `open URL in a browser to sign in` line) and
//! entering the code for the device flow (given `open URL and enter CODE`).
//!
//! Only the child this value started is ever signalled (killed when dropped).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::dovecot::OAuth2Passdb;
use super::{Bridge, Run};

/// The interpreter with authlib and Flask (scripts/test.sh installs them with pip).
pub const PYTHON: &str = "python3";
pub const INSTALL_HINT: &str = "python3 -m pip install authlib==1.9.10 flask==3.1.3";

/// The public client popbridge signs in as (no secret: PKCE protects the code).
pub const CLIENT_ID: &str = "popbridge-test";
/// A confidential client (its secret given to popbridge with --oauth-client-secret-command).
pub const SECRET_CLIENT_ID: &str = "popbridge-secret";
pub const SECRET_CLIENT_SECRET: &str = "Client-Secret-7c1f";
/// The resource server that may introspect tokens: Dovecot.
pub const INTROSPECTOR_ID: &str = "dovecot";
pub const INTROSPECTOR_SECRET: &str = "dovecot-introspect-secret";
/// The user who signs in (also a Dovecot user with a password, for the control logins).
pub const USER: &str = "alice";
pub const PASSWORD: &str = "alice-pw";

pub fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/util/oauth_server.py")
}

/// Panics unless authlib and Flask import, naming the install command.
fn require_authlib() {
    let out = Command::new(PYTHON).args(["-c", "import authlib, flask"]).stdin(Stdio::null()).output();
    let why = match out {
        Ok(o) if o.status.success() => return,
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => format!("cannot run {PYTHON}: {e}"),
    };
    panic!("the OAuth2 test server needs authlib and Flask for {PYTHON} ({why}): {INSTALL_HINT}");
}

/// One request the server logged (`/control/log`): /token, /introspect, /authorize, /device…
#[derive(Clone, Debug, serde::Deserialize)]
pub struct LogEntry {
    pub endpoint: String,
    pub status: u16,
    #[serde(default)]
    pub grant_type: Option<String>,
    /// /token with a refresh token: which token pair it came from (`Issued::n`), `None` if unknown.
    #[serde(default)]
    pub refresh_token: Option<u64>,
    /// `current`, `rotated` (a refresh replaced it), `revoked`, or `unknown`.
    #[serde(default)]
    pub refresh_token_state: Option<String>,
    /// /token: the token pair this request was given (`Issued::n`).
    #[serde(default)]
    pub issued: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
    /// /token: the failure was injected (`fail_token`).
    #[serde(default)]
    pub injected: bool,
    /// /introspect: which token pair's access token was presented.
    #[serde(default)]
    pub token: Option<u64>,
    /// /introspect: that access token had expired when it arrived.
    #[serde(default)]
    pub expired: Option<bool>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub held: bool,
    pub time: f64,
}

impl LogEntry {
    pub fn is_refresh(&self) -> bool {
        self.endpoint == "token" && self.grant_type.as_deref() == Some("refresh_token")
    }
    pub fn is_introspection(&self) -> bool {
        self.endpoint == "introspect"
    }
}

/// One token pair the server issued, values included (to look for them where they must not be).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Issued {
    pub n: u64,
    pub user: String,
    pub client_id: String,
    pub scope: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub issued_at: f64,
    pub expires_at: f64,
    pub access_revoked: bool,
    /// `None` while the refresh token works; `rotated` or `revoked`.
    pub refresh_gone: Option<String>,
}

/// A running authorization server. Dropping it kills the child.
pub struct OAuthServer {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl OAuthServer {
    /// Starts the server with users alice (and bob), the public and the confidential client, and
    /// access tokens living `access_lifetime` seconds (changeable: `set_lifetime`).
    pub fn start(access_lifetime: u64) -> OAuthServer {
        require_authlib();
        let dir = tempfile::Builder::new().prefix("popbridge-oauth.").tempdir().expect("temp dir");
        let stderr = std::fs::File::create(dir.path().join("server.err")).expect("server.err");
        let mut child = Command::new(PYTHON)
            .arg(script_path())
            .args(["--user", &format!("{USER}:{PASSWORD}"), "--user", "bob:bob-pw"])
            .args(["--client", CLIENT_ID, "--client", &format!("{SECRET_CLIENT_ID}:{SECRET_CLIENT_SECRET}")])
            .args(["--introspector", &format!("{INTROSPECTOR_ID}:{INTROSPECTOR_SECRET}")])
            .args(["--access-lifetime", &access_lifetime.to_string()])
            .arg("--log")
            .arg(dir.path().join("requests.jsonl"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn the OAuth2 test server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let port = serde_json::from_str::<serde_json::Value>(&line).ok().and_then(|v| v["port"].as_u64());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the OAuth2 test server did not start ({line:?}):\n{}",
                std::fs::read_to_string(dir.path().join("server.err")).unwrap_or_default()
            );
        };
        OAuthServer { port: port as u16, child, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    pub fn authorization_url(&self) -> String {
        self.url("/authorize")
    }
    pub fn token_url(&self) -> String {
        self.url("/token")
    }
    pub fn device_url(&self) -> String {
        self.url("/device_authorization")
    }
    pub fn introspection_url(&self) -> String {
        self.url("/introspect")
    }

    /// Dovecot's passdb oauth2 asking this server, offering `mechanisms` (`xoauth2`, `oauthbearer`).
    pub fn passdb(&self, mechanisms: &[&str]) -> OAuth2Passdb {
        OAuth2Passdb {
            introspection_url: self.introspection_url(),
            client_id: INTROSPECTOR_ID.into(),
            client_secret: INTROSPECTOR_SECRET.into(),
            mechanisms: mechanisms.iter().map(|m| m.to_string()).collect(),
        }
    }

    /// The `account add` flags for this server as a custom provider, signing in as the public
    /// client (scopes `pop`, `smtp`, `offline_access`).
    pub fn add_flags(&self) -> Vec<String> {
        [
            "--oauth",
            "custom",
            "--oauth-client-id",
            CLIENT_ID,
            "--oauth-authorization-url",
            &self.authorization_url(),
            "--oauth-token-url",
            &self.token_url(),
            "--oauth-device-url",
            &self.device_url(),
            "--oauth-scope",
            "pop",
            "--oauth-scope",
            "smtp",
            "--oauth-scope",
            "offline_access",
        ]
        .map(str::to_string)
        .into()
    }

    /// A JSON request to the server; (status, body).
    fn request(&self, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
        http(self.port, method, path, content_type, body)
    }

    fn control(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, text) = self.request("POST", path, "application/json", &body.to_string());
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).expect("control answer is JSON")
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let (status, text) = self.request("GET", path, "application/json", "");
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }

    /// Access tokens issued from now on live `secs` seconds.
    pub fn set_lifetime(&self, secs: u64) {
        self.control("/control/lifetime", serde_json::json!({ "seconds": secs }));
    }

    /// The next `count` requests to /token get HTTP `status` (an HTML error page, as a proxy sends).
    pub fn fail_token(&self, count: u32, status: u16) {
        self.control("/control/fail_token", serde_json::json!({ "count": count, "status": status }));
    }

    /// Revokes every refresh token of `user` (the next refresh gets invalid_grant); with `access`,
    /// its access tokens too (introspection says inactive). Returns how many refresh tokens.
    pub fn revoke(&self, user: &str, access: bool) -> u64 {
        self.control("/control/revoke", serde_json::json!({ "user": user, "access": access }))["revoked"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Holds every /introspect request from now on (Dovecot's login waits) until released.
    pub fn hold_introspection(&self, hold: bool) {
        self.control("/control/hold", serde_json::json!({ "hold": hold }));
    }

    /// How many /introspect requests are being held now.
    pub fn held(&self) -> u64 {
        self.held_tokens().len() as u64
    }

    /// The token pair (`Issued::n`) of each /introspect request being held now (`None`: a token
    /// the server never issued).
    pub fn held_tokens(&self) -> Vec<Option<u64>> {
        let v: serde_json::Value = self.get_json("/control/held");
        v["tokens"].as_array().map(|a| a.iter().map(|t| t.as_u64()).collect()).unwrap_or_default()
    }

    /// Every /token, /introspect, /authorize, /device_authorization and /device request so far.
    pub fn log(&self) -> Vec<LogEntry> {
        self.get_json("/control/log")
    }

    /// Every token pair issued so far, in order (`n` = 1, 2, …).
    pub fn tokens(&self) -> Vec<Issued> {
        self.get_json("/control/tokens")
    }

    /// The newest token pair.
    pub fn last_issued(&self) -> Issued {
        self.tokens().pop().expect("no token was issued")
    }

    /// A refresh as the public client would send it: (status, JSON answer).
    pub fn refresh(&self, refresh_token: &str) -> (u16, serde_json::Value) {
        let body =
            format!("grant_type=refresh_token&refresh_token={}&client_id={CLIENT_ID}", form_escape(refresh_token));
        let (status, text) = self.request("POST", "/token", "application/x-www-form-urlencoded", &body);
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    /// A token pair for `user`, obtained the way a device would (RFC 8628, without popbridge): to
    /// check the peers themselves.
    pub fn device_token(&self, user: &str, password: &str) -> Issued {
        let form = "application/x-www-form-urlencoded";
        let (status, text) =
            self.request("POST", "/device_authorization", form, &format!("client_id={CLIENT_ID}&scope=pop+smtp"));
        assert_eq!(status, 200, "{text}");
        let d: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let (user_code, device_code) =
            (d["user_code"].as_str().expect("user_code"), d["device_code"].as_str().unwrap());
        let approve = format!(
            "user_code={}&username={}&password={}",
            form_escape(user_code),
            form_escape(user),
            form_escape(password)
        );
        let (status, page) = self.request("POST", "/device", form, &approve);
        assert!(status == 200 && page.contains("Signed in"), "{status} {page}");
        let poll = format!(
            "grant_type={}&device_code={}&client_id={CLIENT_ID}",
            form_escape("urn:ietf:params:oauth:grant-type:device_code"),
            form_escape(device_code)
        );
        let (status, text) = self.request("POST", "/token", form, &poll);
        assert_eq!(status, 200, "{text}");
        self.last_issued()
    }

    /// Waits until `n` introspection requests are held, or fails after `timeout`.
    pub fn wait_held(&self, n: u64, timeout: Duration) {
        let t = Instant::now();
        while self.held() < n {
            assert!(t.elapsed() < timeout, "no held introspection after {timeout:?}; log: {:#?}", self.log());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// What the server wrote to stderr (werkzeug's request lines, Python errors).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.err")).unwrap_or_default()
    }
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `application/x-www-form-urlencoded` escaping of one value.
pub fn form_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (the connection closed after it): (status, body).
pub fn http(port: u16, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect to :{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send the request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

/// What popbridge prints for the authorization code flow, around the URL.
pub const BROWSER_PREFIX: &str = "open ";
pub const BROWSER_SUFFIX: &str = " in a browser to sign in";
/// … and for the device flow, around the URL and the code.
pub const DEVICE_MIDDLE: &str = " and enter ";

/// The URL of an `open URL in a browser to sign in` line.
pub fn browser_url(line: &str) -> Option<&str> {
    line.trim().strip_prefix(BROWSER_PREFIX)?.strip_suffix(BROWSER_SUFFIX)
}

/// The URL and the code of an `open URL and enter CODE` line.
pub fn device_prompt(line: &str) -> Option<(&str, &str)> {
    let (url, code) = line.trim().strip_prefix(BROWSER_PREFIX)?.split_once(DEVICE_MIDDLE)?;
    (!url.contains(' ') && !code.is_empty()).then_some((url, code))
}

/// Runs curl and returns its stdout; fails the test with curl's stderr if curl fails.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl (apt-get install -y curl)");
    assert!(out.status.success(), "curl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the browser saw in the authorization code flow.
#[derive(Debug)]
pub struct BrowserVisit {
    /// Where the server sent the browser back to (popbridge's loopback listener, code and state).
    pub redirect: String,
    /// What popbridge's listener answered the browser.
    pub landing_page: String,
}

/// Plays the browser for `line` (`open URL in a browser to sign in`): loads the login form,
/// submits `user` and `password`, and follows the redirect to popbridge's loopback listener.
pub fn play_browser(line: &str, user: &str, password: &str) -> BrowserVisit {
    let url = browser_url(line).unwrap_or_else(|| panic!("not a sign-in line: {line:?}"));
    let form = curl(&[url]);
    assert!(form.contains("<form"), "the authorization URL shows a login form: {form}");
    let answer = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "--data-urlencode",
        &format!("username={user}"),
        "--data-urlencode",
        &format!("password={password}"),
        url,
    ]);
    let (code, redirect) = answer.split_once(' ').unwrap_or((&answer, ""));
    assert_eq!(code, "302", "the server redirects after the login: {answer}");
    assert!(redirect.starts_with("http://127.0.0.1:"), "to a loopback redirect URI (RFC 8252): {redirect}");
    let landing_page = curl(&[redirect]);
    BrowserVisit { redirect: redirect.to_string(), landing_page }
}

/// Completes the device flow for `line` (`open URL and enter CODE`): the verification page, the
/// code, the login.
pub fn enter_device_code(line: &str, user: &str, password: &str) {
    let (url, code) = device_prompt(line).unwrap_or_else(|| panic!("not a device line: {line:?}"));
    let form = curl(&[url]);
    assert!(form.contains("<form"), "the verification URL shows a form: {form}");
    let page = curl(&[
        "--data-urlencode",
        &format!("user_code={code}"),
        "--data-urlencode",
        &format!("username={user}"),
        "--data-urlencode",
        &format!("password={password}"),
        url,
    ]);
    assert!(page.contains("Signed in"), "the code was accepted: {page}");
}

/// A popbridge command that prints a sign-in line on stdout and waits for the user: `act` gets
/// the line (the first one starting with `open `) while the command runs; then the command's
/// whole output once it exits (killed after `timeout`, reported with code -1).
pub fn sign_in(b: &Bridge, args: &[&str], timeout: Duration, act: impl FnOnce(&str)) -> Run {
    let err = tempfile::NamedTempFile::new_in(b.dir.path()).expect("stderr file");
    // Killed and reaped however this ends (a failing `act` included).
    let mut child = Reaped(
        b.cmd(args).stdout(Stdio::piped()).stderr(err.reopen().expect("stderr")).spawn().expect("spawn popbridge"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    let mut seen = String::new();
    let mut act = Some(act);
    let mut code = None;
    while code.is_none() {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.trim_start().starts_with(BROWSER_PREFIX)
                    && let Some(act) = act.take()
                {
                    act(&line);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(s) = child.0.try_wait().expect("wait") {
                    code = Some(s.code().unwrap_or(-1));
                } else if t.elapsed() > timeout {
                    code = Some(-1);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let s = child.0.wait().expect("wait");
                code = Some(s.code().unwrap_or(-1));
            }
        }
    }
    drop(child);
    let _ = reader.join();
    while let Ok(line) = rx.try_recv() {
        seen.push_str(&line);
        seen.push('\n');
    }
    let stderr = std::fs::read_to_string(err.path()).unwrap_or_default();
    assert!(act.is_none(), "popbridge {args:?} printed no sign-in line:\nstdout:\n{seen}\nstderr:\n{stderr}");
    Run { code: code.unwrap_or(-1), stdout: seen, stderr }
}

/// A child process killed (if still running) and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

mod tests {
    use super::*;

    #[test]
    fn the_sign_in_lines_are_read_as_the_contract_writes_them() {
        assert_eq!(
            browser_url("open http://127.0.0.1:8080/authorize?a=b&c=d in a browser to sign in"),
            Some("http://127.0.0.1:8080/authorize?a=b&c=d")
        );
        assert_eq!(browser_url("open the pod bay doors"), None);
        assert_eq!(
            device_prompt("open http://127.0.0.1:9/device and enter BCDF-GHJK\n"),
            Some(("http://127.0.0.1:9/device", "BCDF-GHJK"))
        );
        assert_eq!(device_prompt("open http://x in a browser to sign in"), None);
        assert_eq!(form_escape("a b+c/="), "a%20b%2Bc%2F%3D");
    }
}
