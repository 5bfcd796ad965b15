//! OAuth2 built in (issue 16), against real peers on loopback: an authorization server built with
//! authlib (`util::oauth`, `tests/util/oauth_server.py`) and a Dovecot that validates the tokens
//! with passdb oauth2 (RFC 7662 introspection against that server), POP3 over TLS with the test
//! CA, and Dovecot's SMTP submission relaying to an aiosmtpd sink.
//!
//! What is checked is what a user notices: the one line `account add --oauth …` and `account auth`
//! print (a browser played with curl, a device code entered), mail fetched over XOAUTH2 and over
//! OAUTHBEARER (Dovecot's log says which), mail sent upstream with the token, and the requests
//! the authorization server saw (refreshes before expiry, the rotated refresh token used after a
//! kill -9, a 503 survived, invalid_grant disabling the account with the notice that says what
//! to run). Tokens never appear in what popbridge prints or logs, and their file is 0600.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::accounts::strs;
use crate::util::corpus::corpus;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::imap_clients::{Raw, Security};
use crate::util::oauth::{self, OAuthServer, PASSWORD, USER};
use crate::util::smtp_upstream::{Upstream, UpstreamOpts};
use crate::util::{Bridge, LOCAL_PASSWORD, Run, account, as_pop3_sends, mode, sorted, wait_until};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Dovecot offering `mechanisms` for tokens (PLAIN and LOGIN for passwords), asking `server`, with
/// its submission service relaying to `sink` when given.
fn dovecot(server: &OAuthServer, mechanisms: &[&str], sink: Option<&Upstream>) -> Dovecot {
    Dovecot::start(DovecotOpts {
        oauth2: Some(server.passdb(mechanisms)),
        submission_relay_port: sink.map(|s| s.port),
        ..DovecotOpts::default()
    })
}

/// Dovecot's successful logins with `method` (its login processes log `method=XOAUTH2`).
fn logins(d: &Dovecot, service: &str, method: &str) -> usize {
    let (who, how) = (format!("user=<{USER}>"), format!("method={method}"));
    d.log()
        .lines()
        .filter(|l| l.contains(&format!("{service}-login: Info: Login:")) && l.contains(&who) && l.contains(&how))
        .count()
}

/// A POP3S login and STAT, then SMTP submission of one message, by Python's poplib and smtplib
/// with `mech` (XOAUTH2 or OAUTHBEARER) and `token`: prints one line per step.
fn python_client(d: &Dovecot, mech: &str, token: &str, password: &str) -> String {
    let script = r#"
import base64, poplib, smtplib, ssl, sys
pop3s, subs, ca, user, mech, token, password = sys.argv[1:8]
ctx = ssl.create_default_context(cafile=ca)
if mech == "XOAUTH2":
    blob = f"user={user}\x01auth=Bearer {token}\x01\x01"
else:
    blob = f"n,a={user},\x01host=127.0.0.1\x01port={pop3s}\x01auth=Bearer {token}\x01\x01"
b64 = base64.b64encode(blob.encode()).decode()
p = poplib.POP3_SSL("127.0.0.1", int(pop3s), context=ctx, timeout=30)
print("capa", " ".join(p.capa().get("SASL", [])))
try:
    print("auth", p._shortcmd(f"AUTH {mech} {b64}").decode())
    print("stat", p.stat())
except poplib.error_proto as e:
    print("auth-failed", e)
p.quit()
p = poplib.POP3_SSL("127.0.0.1", int(pop3s), context=ctx, timeout=30)
try:
    print("plain", p._shortcmd("AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()).decode())
except poplib.error_proto as e:
    print("plain-failed", e)
p.quit()
if subs != "0":
    s = smtplib.SMTP_SSL("127.0.0.1", int(subs), context=ctx, timeout=30)
    s.ehlo("client.example")
    print("smtp-auth", s.esmtp_features.get("auth", ""))
    code, text = s.docmd("AUTH", f"{mech} {b64}")
    print("smtp", code, text.decode())
    if code == 235:
        s.sendmail(f"{user}@example.com", ["ann@example.org"], b"Subject: peers\r\n\r\nchecked\r\n")
        print("sent")
    s.quit()
"#;
    let out = Command::new("python3")
        .args(["-c", script, &d.pop3s_port.to_string(), &d.submission_port.to_string()])
        .arg(&d.ca_pem_path)
        .args([USER, mech, token, password])
        .output()
        .expect("python3");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_peers_validate_tokens_over_xoauth2_and_oauthbearer_for_pop_and_submission() {
    let server = OAuthServer::start(3600);
    for mech in ["XOAUTH2", "OAUTHBEARER"] {
        let sink = Upstream::start(UpstreamOpts::default());
        let d = dovecot(&server, &[&mech.to_lowercase()], Some(&sink));
        d.deliver(USER, &corpus(2, 5).messages);
        let t = server.device_token(USER, PASSWORD);
        let out = python_client(&d, mech, &t.access_token, PASSWORD);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.contains(&format!("capa PLAIN LOGIN {mech}").as_str()), "only {mech} for tokens: {out}");
        assert!(out.contains("auth +OK") && out.contains("stat (2,"), "{mech} with a valid token logs in: {out}");
        assert!(out.contains("plain +OK"), "the password still works with PLAIN: {out}");
        assert!(out.contains("smtp 235") && out.contains("sent"), "submission takes the token: {out}\n{}", d.log());
        let got = sink.wait_for(1, Duration::from_secs(30));
        assert!(String::from_utf8_lossy(&got[0].data).contains("Subject: peers"), "{got:?}");
        assert_eq!(logins(&d, "pop3", mech), 1, "{}", d.log());
        let introspected: Vec<_> = server.log().into_iter().filter(|e| e.is_introspection()).collect();
        assert!(introspected.iter().any(|e| e.token == Some(t.n) && e.active == Some(true)), "{introspected:?}");
        // A revoked (inactive) token is refused.
        server.revoke(USER, true);
        let out = python_client(&d, mech, &t.access_token, PASSWORD);
        assert!(out.contains("auth-failed"), "{mech} with a revoked token fails: {out}");
        assert!(!out.contains("smtp 235"), "and submission refuses it: {out}");
    }
}

#[test]
fn held_introspection_waits_until_released() {
    let server = OAuthServer::start(3600);
    let d = dovecot(&server, &["xoauth2"], None);
    let t = server.device_token(USER, PASSWORD);
    server.hold_introspection(true);
    let (pop3s, ca, token) = (d.pop3s_port, d.ca_pem_path.clone(), t.access_token.clone());
    let client = std::thread::spawn(move || {
        let d_ca = ca;
        let script = r#"
import base64, poplib, ssl, sys
port, ca, token = sys.argv[1:4]
p = poplib.POP3_SSL("127.0.0.1", int(port), context=ssl.create_default_context(cafile=ca), timeout=60)
b64 = base64.b64encode(f"user=alice\x01auth=Bearer {token}\x01\x01".encode()).decode()
print(p._shortcmd(f"AUTH XOAUTH2 {b64}").decode())
"#;
        let out = Command::new("python3").args(["-c", script, &pop3s.to_string()]).arg(&d_ca).arg(&token).output();
        String::from_utf8_lossy(&out.expect("python3").stdout).into_owned()
    });
    server.wait_held(1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!client.is_finished(), "the login waits while the introspection is held");
    server.hold_introspection(false);
    let out = client.join().expect("client thread");
    assert!(out.starts_with("+OK"), "released, the login completes: {out}");
    assert!(server.log().iter().any(|e| e.is_introspection() && e.held), "the log says it was held");
}

#[test]
fn the_token_endpoint_fails_as_told_and_rotation_rejects_the_old_refresh_token() {
    let server = OAuthServer::start(3600);
    let t = server.device_token(USER, PASSWORD);
    let old = t.refresh_token.clone().expect("a refresh token");
    server.fail_token(1, 503);
    assert_eq!(server.refresh(&old).0, 503, "the injected failure");
    let (status, fresh) = server.refresh(&old);
    assert_eq!(status, 200, "then the refresh works: {fresh}");
    let new = fresh["refresh_token"].as_str().expect("a new refresh token (rotation)");
    assert_ne!(new, old);
    let (status, answer) = server.refresh(&old);
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_grant")), "the rotated-away one: {answer}");
    assert_eq!(server.refresh(new).0, 200, "the new one works");
    let refreshes: Vec<_> = server.log().into_iter().filter(|e| e.is_refresh()).collect();
    let states: Vec<_> =
        refreshes.iter().map(|e| (e.status, e.refresh_token_state.clone().unwrap_or_default())).collect();
    assert_eq!(
        states,
        [(503, "current".into()), (200, "current".into()), (400, "rotated".into()), (200, "current".into())],
        "{refreshes:?}"
    );
}

/// The browser player (`oauth::play_browser`) completes an authorization code + PKCE sign-in
/// against the server, with a loopback listener standing in for popbridge's; and a request
/// without PKCE is refused.
#[test]
fn the_browser_player_signs_in_with_pkce_through_a_loopback_redirect() {
    use base64::Engine;
    let server = OAuthServer::start(3600);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let redirect_uri = format!("http://127.0.0.1:{}/callback", listener.local_addr().unwrap().port());
    let landing = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("the browser comes back");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut c), &mut line).expect("request line");
        std::io::Write::write_all(
            &mut c,
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nsigned in",
        )
        .expect("answer");
        line
    });
    let verifier = "a-pkce-code-verifier-of-at-least-43-characters-0123456789";
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let challenge = b64.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    let query = |pkce: bool| {
        let mut q = format!(
            "{}?response_type=code&client_id={}&redirect_uri={}&scope=pop+offline_access&state=st4te",
            server.authorization_url(),
            oauth::CLIENT_ID,
            oauth::form_escape(&redirect_uri)
        );
        if pkce {
            q.push_str(&format!("&code_challenge={challenge}&code_challenge_method=S256"));
        }
        q
    };
    let no_pkce = Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &query(false)]).output();
    assert_eq!(String::from_utf8_lossy(&no_pkce.expect("curl").stdout), "400", "PKCE is required");
    let visit = oauth::play_browser(&format!("open {} in a browser to sign in", query(true)), USER, PASSWORD);
    assert_eq!(visit.landing_page, "signed in");
    let request_line = landing.join().expect("listener thread");
    assert!(request_line.starts_with("GET /callback?code=") && request_line.contains("state=st4te"), "{request_line}");
    let code = visit.redirect.split("code=").nth(1).and_then(|c| c.split('&').next()).expect("a code");
    let exchange = |verifier: &str| {
        oauth::http(
            server.port,
            "POST",
            "/token",
            "application/x-www-form-urlencoded",
            &format!(
                "grant_type=authorization_code&code={code}&redirect_uri={}&client_id={}&code_verifier={verifier}",
                oauth::form_escape(&redirect_uri),
                oauth::CLIENT_ID
            ),
        )
    };
    let (status, body) = exchange("a-wrong-code-verifier-of-at-least-43-characters-000000000");
    assert_eq!(status, 400, "a wrong verifier is refused: {body}");
    let (status, body) = exchange(verifier);
    assert_eq!(status, 200, "{body}");
    let t = server.last_issued();
    assert!(body.contains(&t.access_token) && t.user == USER && t.refresh_token.is_some(), "{body}");
}

/// The device-code helper (`oauth::enter_device_code`) approves a device authorization, and the
/// device's next poll gets the tokens.
#[test]
fn the_device_code_helper_approves_a_device_authorization() {
    let server = OAuthServer::start(3600);
    let form = "application/x-www-form-urlencoded";
    let (status, body) =
        oauth::http(server.port, "POST", "/device_authorization", form, &format!("client_id={}", oauth::CLIENT_ID));
    assert_eq!(status, 200, "{body}");
    let d: serde_json::Value = serde_json::from_str(&body).unwrap();
    let poll = || {
        oauth::http(
            server.port,
            "POST",
            "/token",
            form,
            &format!(
                "grant_type={}&device_code={}&client_id={}",
                oauth::form_escape(DEVICE_GRANT),
                d["device_code"].as_str().unwrap(),
                oauth::CLIENT_ID
            ),
        )
    };
    let (status, body) = poll();
    assert!(status == 400 && body.contains("authorization_pending"), "{status} {body}");
    let line =
        format!("open {} and enter {}", d["verification_uri"].as_str().unwrap(), d["user_code"].as_str().unwrap());
    oauth::enter_device_code(&line, USER, PASSWORD);
    let (status, body) = poll();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&server.last_issued().access_token));
}

// ---- popbridge against the peers ---------------------------------------------------------------

/// A bridge with listeners, Dovecot (offering `mechanisms` for tokens, its submission relaying to
/// `sink` when given) and the authorization server with access tokens living `lifetime` seconds.
struct Setup {
    server: OAuthServer,
    d: Dovecot,
    b: Bridge,
    sink: Option<Upstream>,
    /// Everything popbridge printed or logged so far, to look for tokens in.
    said: Vec<String>,
}

impl Setup {
    fn new(lifetime: u64, mechanisms: &[&str], with_sink: bool) -> Setup {
        let server = OAuthServer::start(lifetime);
        let sink = with_sink.then(|| Upstream::start(UpstreamOpts::default()));
        let d = dovecot(&server, mechanisms, sink.as_ref());
        Setup { server, d, b: Bridge::with_listeners(), sink, said: Vec::new() }
    }

    /// `account add` of Work (alice@example.com, Dovecot's alice over POP3S, its CA trusted)
    /// signing in at the server as a custom provider; `extra` flags after.
    fn add_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "account",
            "add",
            "--name",
            "Work",
            "--email",
            "alice@example.com",
            "--pop-host",
            "127.0.0.1",
            "--pop-port",
            &self.d.pop3s_port.to_string(),
            "--pop-tls",
            "implicit",
            "--pop-user",
            USER,
            "--ca-file",
            &self.d.ca_pem_path.display().to_string(),
        ]
        .map(str::to_string)
        .into();
        args.extend(self.server.add_flags());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Runs a command that signs in (`account add …`, `account auth …`); with `device` the device
    /// code is entered, else the browser is played. Panics unless it exits 0.
    fn sign_in(&mut self, args: &[&str], device: bool) -> Run {
        let mut all = vec!["--log-level", "trace"];
        all.extend_from_slice(args);
        let r = oauth::sign_in(&self.b, &all, SIGN_IN_TIMEOUT, |line| {
            if device {
                oauth::enter_device_code(line, USER, PASSWORD);
            } else {
                let visit = oauth::play_browser(line, USER, PASSWORD);
                self_check_landing(&visit);
            }
        });
        self.said.push(format!("{}\n{}", r.stdout, r.stderr));
        r.expect(0)
    }

    /// `account add` of Work through the device flow (`--device`) or the browser.
    fn add(&mut self, device: bool, extra: &[&str]) -> Run {
        let mut flags: Vec<&str> = extra.to_vec();
        if device {
            flags.push("--device");
        }
        let args = self.add_args(&flags);
        let r = self.sign_in(&strs(&args), device);
        let line: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("open ")).collect();
        assert_eq!(line.len(), 1, "exactly one sign-in line on stdout: {}", r.stdout);
        if device {
            assert!(oauth::device_prompt(line[0]).is_some(), "`open URL and enter CODE`: {}", line[0]);
        } else {
            assert!(oauth::browser_url(line[0]).is_some(), "`open URL in a browser to sign in`: {}", line[0]);
        }
        r
    }

    /// A popbridge command at trace level (its output kept to look for tokens in).
    fn run(&mut self, args: &[&str]) -> Run {
        let mut all = vec!["--log-level", "trace"];
        all.extend_from_slice(args);
        let r = self.b.run(&all);
        self.said.push(format!("{}\n{}", r.stdout, r.stderr));
        r
    }

    fn fetch(&mut self) -> Run {
        self.run(&["fetch", "Work"])
    }

    fn token_file(&self) -> std::path::PathBuf {
        self.b.data.join("oauth/Work.json")
    }

    fn token_file_text(&self) -> String {
        std::fs::read_to_string(self.token_file()).unwrap_or_default()
    }

    fn state(&self) -> serde_json::Value {
        account(&self.b.status_json(), "Work").clone()
    }

    /// No token the server ever issued appears in anything popbridge printed or logged, nor in
    /// its config, in clear or inside base64 (a SASL blob); the token file is 0600 in a 0700
    /// directory.
    fn assert_tokens_kept_secret(&self, extra: &[String]) {
        let config = std::fs::read_to_string(&self.b.config).unwrap_or_default();
        let texts: Vec<&String> = self.said.iter().chain(extra).chain(std::iter::once(&config)).collect();
        for t in self.server.tokens() {
            for secret in std::iter::once(&t.access_token).chain(t.refresh_token.as_ref()) {
                let mut forms = base64_forms(secret);
                forms.push(secret.clone());
                for text in &texts {
                    for f in &forms {
                        assert!(!text.contains(f.as_str()), "token {} appears ({f}) in:\n{text}", t.n);
                    }
                }
            }
        }
        assert_eq!(mode(&self.token_file()), 0o600, "the token file is private");
        assert_eq!(mode(&self.b.data.join("oauth")), 0o700, "so is its directory");
    }
}

/// What `secret` looks like inside the base64 of any text that holds it (a SASL XOAUTH2 or
/// OAUTHBEARER blob): for each of the three alignments, the characters that depend on the
/// secret alone.
fn base64_forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    (0..3)
        .map(|k| {
            let mut bytes = vec![0u8; k];
            bytes.extend_from_slice(secret.as_bytes());
            let enc = b64.encode(&bytes);
            let start = if k == 0 { 0 } else { 4 };
            enc[start..enc.len() - 4].to_string()
        })
        .collect()
}

const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(90);

/// What popbridge's loopback listener tells the browser: something, and no token.
fn self_check_landing(visit: &oauth::BrowserVisit) {
    assert!(!visit.landing_page.is_empty(), "the loopback listener answers the browser: {visit:?}");
    assert!(visit.redirect.contains("code="), "the redirect carries the code: {visit:?}");
}

/// The messages Dovecot holds for alice, as POP3 sends them.
fn as_sent(messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    messages.iter().map(|m| as_pop3_sends(m)).collect()
}

/// The POP logins Dovecot logged for alice with any method but `method`.
fn other_logins(d: &Dovecot, method: &str) -> Vec<String> {
    let how = format!("method={method},");
    d.log()
        .lines()
        .filter(|l| {
            l.contains("pop3-login: Info: Login:") && l.contains(&format!("user=<{USER}>")) && !l.contains(&how)
        })
        .map(str::to_string)
        .collect()
}

fn refreshes(server: &OAuthServer) -> Vec<oauth::LogEntry> {
    server.log().into_iter().filter(|e| e.is_refresh()).collect()
}

fn introspections(server: &OAuthServer) -> Vec<oauth::LogEntry> {
    server.log().into_iter().filter(|e| e.is_introspection()).collect()
}

/// Sleeps until the newest access token has expired (by the server's clock, plus a second).
fn until_expired(server: &OAuthServer) {
    let t = server.last_issued();
    let now = unix_now();
    if t.expires_at + 1.0 > now {
        std::thread::sleep(Duration::from_secs_f64(t.expires_at + 1.0 - now));
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn the_device_flow_signs_in_and_mail_is_fetched_over_xoauth2() {
    let mut s = Setup::new(3600, &["xoauth2"], false);
    let c = corpus(5, 161);
    s.d.deliver(USER, &c.messages);
    s.add(true, &[]);
    let config = std::fs::read_to_string(&s.b.config).unwrap();
    assert!(config.contains("auth = \"oauth2\"") && config.contains("[account.oauth]"), "{config}");
    assert!(config.contains("provider = \"custom\"") && config.contains(oauth::CLIENT_ID), "{config}");
    let device = s.server.log().into_iter().filter(|e| e.grant_type.as_deref() == Some(DEVICE_GRANT)).count();
    assert!(device >= 1, "the tokens came from the device grant: {:#?}", s.server.log());
    let issued = s.server.last_issued();
    assert!(
        s.token_file_text().contains(issued.refresh_token.as_deref().unwrap()),
        "the refresh token is stored in the token file"
    );
    let r = s.fetch().expect(0);
    assert!(r.stdout.contains("5 new message(s)"), "{}", r.stdout);
    assert_eq!(s.b.messages("Work"), as_sent(&c.messages), "fetched byte for byte");
    assert!(logins(&s.d, "pop3", "XOAUTH2") >= 1, "{}", s.d.log());
    assert_eq!(other_logins(&s.d, "XOAUTH2"), Vec::<String>::new(), "every login used XOAUTH2");
    assert!(introspections(&s.server).iter().all(|e| e.active == Some(true)), "{:#?}", introspections(&s.server));
    assert_eq!(s.state()["state"], "active");
    s.assert_tokens_kept_secret(&[]);
}

#[test]
fn the_browser_flow_with_pkce_signs_in_mail_is_fetched_over_oauthbearer_and_account_auth_signs_in_again() {
    let mut s = Setup::new(3600, &["oauthbearer"], false);
    let c = corpus(6, 162);
    s.d.deliver(USER, &c.messages[..3]);
    s.add(false, &[]);
    let codes = |s: &Setup| {
        s.server
            .log()
            .into_iter()
            .filter(|e| e.grant_type.as_deref() == Some("authorization_code") && e.status == 200)
            .count()
    };
    assert_eq!(codes(&s), 1, "one code exchanged (with its PKCE verifier): {:#?}", s.server.log());
    let r = s.fetch().expect(0);
    assert!(r.stdout.contains("3 new message(s)"), "{}", r.stdout);
    assert!(logins(&s.d, "pop3", "OAUTHBEARER") >= 1, "{}", s.d.log());
    assert_eq!(other_logins(&s.d, "OAUTHBEARER"), Vec::<String>::new(), "every login used OAUTHBEARER");
    // Signing in again, in the browser and then with a device code: new tokens, used from then on.
    s.sign_in(&["account", "auth", "Work"], false);
    assert_eq!(codes(&s), 2, "a second code exchanged");
    let second = s.server.last_issued();
    assert!(s.token_file_text().contains(second.refresh_token.as_deref().unwrap()), "the new tokens are stored");
    s.d.deliver(USER, &c.messages[3..5]);
    s.fetch().expect(0);
    assert!(introspections(&s.server).last().and_then(|e| e.token) == Some(second.n), "the new access token is used");
    s.sign_in(&["account", "auth", "Work", "--device"], true);
    let third = s.server.last_issued();
    assert!(third.n > second.n, "the device grant gave new tokens");
    s.d.deliver(USER, &c.messages[5..]);
    s.fetch().expect(0);
    assert!(introspections(&s.server).last().and_then(|e| e.token) == Some(third.n), "the newest is used");
    assert_eq!(s.b.messages("Work"), as_sent(&c.messages));
    s.assert_tokens_kept_secret(&[]);
}

#[test]
fn mail_is_sent_upstream_through_dovecot_submission_with_the_token() {
    let mut s = Setup::new(3600, &["xoauth2"], true);
    let smtp = [
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        &s.d.submission_port.to_string(),
        "--smtp-tls",
        "implicit",
        "--smtp-user",
        USER,
        "--smtp-ca-file",
        &s.d.ca_pem_path.display().to_string(),
    ]
    .map(|a| a.to_string());
    s.add(true, &strs(&smtp));
    s.b.append_config("\n[outbox]\nretry = [\"1s\"]\n");
    let daemon = s.b.daemon_with_env(&[("RUST_LOG", "trace")]);
    let message = b"From: Alice <alice@example.com>\r\nTo: Ann <ann@example.org>\r\nSubject: sent with a token\r\nDate: Tue, 1 Jul 2025 10:52:37 +0200\r\nMessage-ID: <oauth-submission@example.com>\r\n\r\nHello over XOAUTH2.\r\n";
    let out = submit(&s.b, "alice@example.com", "ann@example.org", message);
    assert!(out.starts_with("OK"), "popbridge accepts the message: {out}\n{}", daemon.log());
    let sink = s.sink.as_ref().unwrap();
    let got = sink.wait_for(1, Duration::from_secs(60));
    assert_eq!(got[0].rcpt_tos, ["ann@example.org"]);
    let data = String::from_utf8_lossy(&got[0].data).into_owned();
    assert!(data.contains("Subject: sent with a token") && data.contains("Hello over XOAUTH2."), "{data}");
    assert!(logins(&s.d, "submission", "XOAUTH2") >= 1, "Dovecot's submission took the token: {}", s.d.log());
    let log = daemon.log();
    s.assert_tokens_kept_secret(&[log]);
}

/// Submits `data` to the bridge's local submission port (plain, AUTH PLAIN as the local user).
fn submit(b: &Bridge, from: &str, to: &str, data: &[u8]) -> String {
    let (sub, _) = b.smtp_ports();
    let file = b.dir.path().join("submit.eml");
    std::fs::write(&file, data).unwrap();
    let script = r#"
import smtplib, sys
port, user, pw, frm, to, path = sys.argv[1:7]
try:
    s = smtplib.SMTP("127.0.0.1", int(port), timeout=30)
    s.login(user, pw)
    refused = s.sendmail(frm, [to], open(path, "rb").read())
    s.quit()
    print("OK", refused)
except smtplib.SMTPException as e:
    print("ERR", e)
"#;
    let out = Command::new("python3")
        .args(["-c", script, &sub.to_string(), "me", LOCAL_PASSWORD, from, to])
        .arg(&file)
        .output()
        .expect("python3");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_access_token_is_refreshed_before_it_expires() {
    // Tokens live 12 s: used at once, then again 3 s before they expire, then after expiry.
    let mut s = Setup::new(12, &["xoauth2"], false);
    let c = corpus(3, 163);
    s.d.deliver(USER, &c.messages[..1]);
    s.add(true, &[]);
    let first = s.server.last_issued();
    s.fetch().expect(0);
    let wait = first.expires_at - 3.0 - unix_now();
    if wait > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
    s.d.deliver(USER, &c.messages[1..2]);
    s.fetch().expect(0);
    let r = refreshes(&s.server);
    assert!(!r.is_empty(), "a token 3 s from expiry is refreshed before it is used: {:#?}", s.server.log());
    assert_eq!(r[0].refresh_token, Some(first.n));
    assert!(r[0].time < first.expires_at, "before the token expired: {r:#?} ({})", first.expires_at);
    until_expired(&s.server);
    s.d.deliver(USER, &c.messages[2..]);
    s.fetch().expect(0);
    assert_eq!(s.b.messages("Work"), as_sent(&c.messages));
    let r = refreshes(&s.server);
    assert!(r.iter().all(|e| e.status == 200 && e.refresh_token_state.as_deref() == Some("current")), "{r:#?}");
    let used = introspections(&s.server);
    assert!(
        used.iter().all(|e| e.expired == Some(false) && e.active == Some(true)),
        "no expired token was used: {used:#?}"
    );
    let newest = s.server.last_issued();
    assert!(
        s.token_file_text().contains(newest.refresh_token.as_deref().unwrap()),
        "the rotated refresh token is stored"
    );
    s.assert_tokens_kept_secret(&[]);
}

#[test]
fn a_rotated_refresh_token_survives_a_kill_9_between_the_token_response_and_its_use() {
    let mut s = Setup::new(4, &["xoauth2"], false);
    let c = corpus(2, 164);
    s.d.deliver(USER, &c.messages);
    s.add(true, &["--no-test"]);
    let first = s.server.last_issued();
    until_expired(&s.server);
    // The fetch refreshes (token pair 1 → 2), then logs in with the new access token; the login
    // waits on the held introspection, and popbridge is killed right there.
    s.server.hold_introspection(true);
    let mut fetch = s.b.cmd(&["fetch", "Work"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("fetch");
    let held = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.server.wait_held(1, Duration::from_secs(60));
        s.server.held_tokens()
    }));
    fetch.kill().expect("kill -9");
    fetch.wait().expect("reap");
    s.server.hold_introspection(false);
    let held = held.unwrap_or_else(|e| std::panic::resume_unwind(e));
    let r = refreshes(&s.server);
    assert_eq!(r.len(), 1, "one refresh before the login: {r:#?}");
    let second = s.server.last_issued();
    assert_eq!((r[0].refresh_token, r[0].issued, r[0].status), (Some(first.n), Some(second.n), 200));
    assert_eq!(held, [Some(second.n)], "the login was using the new access token when popbridge died");
    let file = s.token_file_text();
    assert!(
        file.contains(second.refresh_token.as_deref().unwrap()),
        "the rotated refresh token was on disk before its use"
    );
    assert!(!file.contains(first.refresh_token.as_deref().unwrap()), "the old one is gone from the file");
    // Next run, after the new access token expired too: the rotated refresh token is used, works.
    until_expired(&s.server);
    let r = s.fetch().expect(0);
    assert!(r.stdout.contains("2 new message(s)"), "{}", r.stdout);
    assert_eq!(s.b.messages("Work"), as_sent(&c.messages));
    let r = refreshes(&s.server);
    assert_eq!(r.len(), 2, "{r:#?}");
    assert_eq!(
        (r[1].refresh_token, r[1].refresh_token_state.as_deref(), r[1].status),
        (Some(second.n), Some("current"), 200)
    );
    // The old one would have been refused.
    let (status, answer) = s.server.refresh(first.refresh_token.as_deref().unwrap());
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_grant")), "{answer}");
    assert_eq!(s.state()["state"], "active");
    s.assert_tokens_kept_secret(&[]);
}

#[test]
fn a_503_from_the_token_endpoint_keeps_the_account_and_its_token_and_a_later_retry_works() {
    let mut s = Setup::new(4, &["xoauth2"], false);
    let c = corpus(2, 165);
    s.d.deliver(USER, &c.messages);
    s.add(true, &["--no-test"]);
    let first = s.server.last_issued();
    until_expired(&s.server);
    s.server.fail_token(1000, 503);
    let r = s.fetch();
    assert_eq!(r.code, 6, "a temporary failure (exit 6): {}{}", r.stdout, r.stderr);
    let failed: Vec<_> = refreshes(&s.server).into_iter().filter(|e| e.injected).collect();
    assert!(!failed.is_empty(), "popbridge asked the token endpoint: {:#?}", s.server.log());
    assert!(failed.iter().all(|e| e.refresh_token == Some(first.n)));
    let st = s.state();
    assert_ne!(st["state"], "disabled", "a 503 never disables the account: {st}");
    assert_eq!(st["last_error"]["class"], "temporary", "{st}");
    assert!(s.token_file_text().contains(first.refresh_token.as_deref().unwrap()), "the token is kept");
    assert_eq!(s.b.messages("Work").len(), 0);
    // The endpoint recovers: the next try refreshes with the same refresh token and fetches.
    s.server.fail_token(0, 503);
    let r = s.fetch().expect(0);
    assert!(r.stdout.contains("2 new message(s)"), "{}", r.stdout);
    let ok: Vec<_> = refreshes(&s.server).into_iter().filter(|e| !e.injected).collect();
    assert_eq!(ok.len(), 1, "{ok:#?}");
    assert_eq!((ok[0].refresh_token, ok[0].status), (Some(first.n), 200));
    assert_eq!(s.state()["state"], "active");
    assert_eq!(s.b.messages("Work"), as_sent(&c.messages));
    s.assert_tokens_kept_secret(&[]);
}

#[test]
fn invalid_grant_disables_the_account_with_the_notice_and_account_auth_enables_it_again() {
    let mut s = Setup::new(4, &["xoauth2"], false);
    let c = corpus(3, 166);
    s.d.deliver(USER, &c.messages[..2]);
    s.add(true, &["--no-test"]);
    let daemon = s.b.daemon_with_env(&[("RUST_LOG", "trace")]);
    wait_until("the first fetch", Duration::from_secs(30), || account(&s.b.status_json(), "Work")["messages"] == 2);
    // A mail client is connected, looking at the local INBOX.
    let mut session = Raw::connect_login(&s.b.target(Security::Plain, "me"));
    session.cmd("s1", "SELECT INBOX").assert_ok("select");
    // The user revokes popbridge's access at the provider.
    assert!(s.server.revoke(USER, false) >= 1);
    until_expired(&s.server);
    let r = s.fetch();
    assert_eq!(r.code, 5, "an authentication error: {}{}", r.stdout, r.stderr);
    let st = s.state();
    assert_eq!(st["state"], "disabled", "invalid_grant disables the account at once: {st}");
    let refused: Vec<_> =
        refreshes(&s.server).into_iter().filter(|e| e.error.as_deref() == Some("invalid_grant")).collect();
    assert_eq!(refused.len(), 1, "asked once, not again and again: {refused:#?}");
    // One notice in INBOX and an ALERT, both saying what to run.
    let n = session.cmd("s2", "NOOP");
    assert!(
        n.lines.iter().any(|l| l.starts_with("* OK [ALERT]") && l.contains("popbridge account auth Work")),
        "{:?}",
        n.lines
    );
    let f = session.cmd("s3", "FETCH 1:* (BODY.PEEK[])");
    let notices: Vec<String> =
        f.fetches().iter().filter_map(|x| x.get("BODY[]")).map(|b| String::from_utf8_lossy(b).into_owned()).collect();
    assert_eq!(notices.len(), 1, "one notice: {notices:?}");
    assert!(notices[0].contains("popbridge account auth Work"), "{}", notices[0]);
    // Signing in again enables it, and mail flows (the daemon may fetch it at once, before the
    // user's fetch asks).
    s.d.deliver(USER, &c.messages[2..]);
    s.sign_in(&["account", "auth", "Work"], false);
    s.fetch().expect(0);
    wait_until("the fetch after signing in again", Duration::from_secs(30), || {
        account(&s.b.status_json(), "Work")["messages"] == 3
    });
    assert_eq!(s.state()["state"], "active");
    wait_until("the works-again ALERT", Duration::from_secs(10), || {
        session.cmd("s4", "NOOP").lines.iter().any(|l| l.contains("[ALERT]") && l.contains("works again"))
    });
    assert_eq!(s.b.messages("Work"), as_sent(&c.messages));
    assert_eq!(
        refreshes(&s.server).into_iter().filter(|e| e.error.as_deref() == Some("invalid_grant")).count(),
        1,
        "the revoked refresh token was never tried again"
    );
    let log = daemon.log();
    s.assert_tokens_kept_secret(&[log]);
}

#[test]
fn a_token_inside_a_base64_sasl_blob_is_recognised() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let token = "4dvCwEecPAAYD72C6hS96jcIK4A5V2P8ye26fYPBj6";
    for prefix in ["user=alice\x01auth=Bearer ", "n,a=alice,\x01host=127.0.0.1\x01port=995\x01auth=Bearer ", "x"] {
        let blob = b64.encode(format!("{prefix}{token}\x01\x01"));
        assert!(base64_forms(token).iter().any(|f| blob.contains(f.as_str())), "{prefix:?}: {blob}");
    }
    assert!(
        !base64_forms(token).iter().any(|f| b64.encode("user=alice\x01auth=Bearer other\x01\x01").contains(f.as_str()))
    );
}

#[test]
fn with_both_mechanisms_offered_oauthbearer_is_used() {
    let mut s = Setup::new(3600, &["xoauth2", "oauthbearer"], false);
    let c = corpus(2, 167);
    s.d.deliver(USER, &c.messages);
    s.add(true, &["--no-test"]);
    s.fetch().expect(0);
    assert_eq!(s.b.messages("Work"), as_sent(&c.messages));
    assert_eq!(logins(&s.d, "pop3", "OAUTHBEARER"), 1, "the standard mechanism (RFC 7628) when offered: {}", s.d.log());
    assert_eq!(other_logins(&s.d, "OAUTHBEARER"), Vec::<String>::new());
    s.assert_tokens_kept_secret(&[]);
}

#[test]
fn a_confidential_client_signs_in_and_refreshes_with_its_secret_from_a_command() {
    let mut s = Setup::new(4, &["xoauth2"], false);
    let c = corpus(2, 168);
    s.d.deliver(USER, &c.messages);
    let secret_file = s.b.dir.path().join("client-secret");
    let wrong_file = s.b.dir.path().join("wrong-secret");
    std::fs::write(&secret_file, format!("{}\n", oauth::SECRET_CLIENT_SECRET)).unwrap();
    std::fs::write(&wrong_file, "not-the-secret\n").unwrap();
    let base = s.add_args(&["--device", "--no-test"]);
    let with_secret = |file: &std::path::Path| {
        let mut args = base.clone();
        let id = args.iter().position(|a| a == "--oauth-client-id").unwrap() + 1;
        args[id] = oauth::SECRET_CLIENT_ID.to_string();
        args.extend(["--oauth-client-secret-command".to_string(), format!("cat {}", file.display())]);
        args
    };
    // A wrong secret: the provider refuses the client, popbridge says so and saves nothing.
    let r = s.b.run_for(&strs(&with_secret(&wrong_file)), SIGN_IN_TIMEOUT);
    assert!(r.code > 0, "a refused client fails the sign-in: {}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("client"), "the error names the client: {}", r.stderr);
    assert!(!r.stdout.contains(" and enter "), "no device code for a refused client: {}", r.stdout);
    assert!(s.b.run(&["account", "list"]).stdout.contains("No accounts"), "nothing was saved");
    s.said.push(format!("{}\n{}", r.stdout, r.stderr));
    // The right one: signed in, and the refresh authenticates with it too.
    s.sign_in(&strs(&with_secret(&secret_file)), true);
    until_expired(&s.server);
    s.fetch().expect(0);
    assert_eq!(s.b.messages("Work"), as_sent(&c.messages));
    let r = refreshes(&s.server);
    assert!(r.iter().any(|e| e.status == 200), "refreshed as the confidential client: {r:#?}");
    assert!(s.server.tokens().iter().all(|t| t.client_id == oauth::SECRET_CLIENT_ID));
    let config = std::fs::read_to_string(&s.b.config).unwrap();
    for text in s.said.iter().chain(std::iter::once(&config)) {
        assert!(!text.contains(oauth::SECRET_CLIENT_SECRET), "the client secret appears in:\n{text}");
    }
    s.assert_tokens_kept_secret(&[]);
}

// ---- delivering into a mail server's IMAP with a token (issue 18) ------------------------------

/// What alice's IMAP folder `folder` holds (Dovecot's maildir, as its IMAP serves it), sorted.
fn delivered(s: &Setup, folder: &str) -> Vec<Vec<u8>> {
    sorted(
        s.d.folder_files(USER, &format!(".{folder}"))
            .iter()
            .map(|p| crate::util::as_pop3_sends(&std::fs::read(p).unwrap()))
            .collect(),
    )
}

/// An `[account.deliver]` section: IMAPS into alice's `mailbox` on the test Dovecot, with `auth`.
fn deliver_section(s: &Setup, auth: &str, mailbox: &str) -> String {
    format!(
        "\n[account.deliver]\nimap = \"imaps://127.0.0.1:{}\"\nuser = \"{USER}\"\nmailbox = \"{mailbox}\"\nca_file = \"{}\"\n{auth}\n",
        s.d.imaps_port,
        s.d.ca_pem_path.display()
    )
}

#[test]
fn an_account_delivers_into_imap_with_its_own_grant() {
    let mut s = Setup::new(3600, &["xoauth2"], false);
    let c = corpus(4, 181);
    s.d.deliver(USER, &c.messages);
    s.add(true, &["--delete", "after-fetch"]);
    s.b.append_config(&deliver_section(&s, "auth = \"oauth2\"", "Delivered"));
    let r = s.run(&["account", "test", "Work"]).expect(0);
    assert!(r.stdout.contains("delivery target OK"), "{}\n{}", r.stdout, r.stderr);
    let r = s.fetch().expect(0);
    assert_eq!(delivered(&s, "Delivered"), sorted(as_sent(&c.messages)), "byte for byte\n{}", r.stderr);
    assert!(s.d.messages(USER).is_empty(), "after-fetch deleted what the target confirmed");
    assert!(s.b.messages("Work").is_empty(), "no body in popbridge's own store");
    // account test and the fetch each logged in to IMAP with the token, over XOAUTH2.
    assert!(logins(&s.d, "imap", "XOAUTH2") >= 2, "{}", s.d.log());
    assert_eq!(other_logins(&s.d, "XOAUTH2"), Vec::<String>::new(), "no login used a password");
    s.assert_tokens_kept_secret(&[]);
}

/// A token the POP server still takes but the target's IMAP refuses (revoked early for one
/// service, clocks that disagree): the grant is refreshed once, the delivery goes through, and
/// the new tokens are kept. The POP side is a scripted server that takes exactly the old token
/// (Dovecot would refuse it at POP too, and popbridge would refresh there first).
#[test]
fn a_token_the_target_refuses_is_refreshed_once_and_the_delivery_goes_through() {
    use crate::util::fake_pop3::{FakeMessage, FakePop3, Script};
    let mut s = Setup::new(3600, &["oauthbearer"], false);
    s.add(true, &["--delete", "after-fetch"]);
    let stale = "revoked-early-at-imap-7f3a";
    let mut t: serde_json::Value = serde_json::from_str(&s.token_file_text()).unwrap();
    let old_refresh = t["refresh_token"].as_str().unwrap().to_string();
    t["access_token"] = serde_json::Value::String(stale.into());
    std::fs::write(s.token_file(), t.to_string()).unwrap();
    let c = corpus(3, 182);
    let fake = FakePop3::start(Script {
        messages: c
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| FakeMessage::new(&format!("u{i}"), crate::util::as_pop3_sends(m)))
            .collect(),
        user: USER.into(),
        pass: stale.into(),
        sasl: vec!["XOAUTH2".into()],
        ..Script::default()
    });
    let config = std::fs::read_to_string(&s.b.config).unwrap();
    let config = config
        .replace(&format!("port = {}", s.d.pop3s_port), &format!("port = {}", fake.port()))
        .replace("tls = \"implicit\"", "tls = \"plain\"");
    std::fs::write(&s.b.config, config).unwrap();
    s.b.append_config(&deliver_section(&s, "auth = \"oauth2\"", "Delivered"));
    let r = s.fetch().expect(0);
    assert_eq!(delivered(&s, "Delivered"), sorted(as_sent(&c.messages)), "delivered after the refresh\n{}", r.stderr);
    assert_eq!(fake.remaining().len(), 0, "and then deleted from the POP server");
    assert_eq!(refreshes(&s.server).len(), 1, "one refresh: {:#?}", s.server.log());
    let kept: serde_json::Value = serde_json::from_str(&s.token_file_text()).unwrap();
    assert!(kept["access_token"] != stale && kept["refresh_token"] != old_refresh.as_str(), "the new tokens are kept");
    assert_eq!(logins(&s.d, "imap", "OAUTHBEARER"), 1, "one IMAP login, with the fresh token: {}", s.d.log());
    s.assert_tokens_kept_secret(&[]);
}

/// `auth = "xoauth2"`: the password_command prints the access token (an external OAuth tool).
/// A token the target refuses is an authentication error naming the target, and nothing is
/// deleted; a good one delivers.
#[test]
fn a_token_from_a_password_command_logs_in_to_the_target() {
    let mut s = Setup::new(3600, &["oauthbearer"], false);
    let c = corpus(3, 183);
    s.d.deliver(USER, &c.messages);
    let r = s.b.add_account(
        "Work",
        s.d.pop3s_port,
        "implicit",
        USER,
        PASSWORD,
        &["--ca-file", &s.d.ca_pem_path.display().to_string(), "--delete", "after-fetch", "--no-test"],
    );
    r.expect(0);
    let file = s.b.dir.path().join("imap-token");
    std::fs::write(&file, "not-a-token\n").unwrap();
    let auth = format!("auth = \"xoauth2\"\npassword_command = \"cat {}\"", file.display());
    s.b.append_config(&deliver_section(&s, &auth, "Delivered"));
    let r = s.fetch();
    assert_ne!(r.code, 0, "a refused token fails the fetch: {}", r.stdout);
    assert!(r.stderr.contains("refused the OAuth 2 access token of alice"), "{}", r.stderr);
    assert!(r.stderr.contains("delivery to IMAP imaps://127.0.0.1"), "names the target: {}", r.stderr);
    assert_eq!(s.d.messages(USER).len(), 3, "nothing deleted that was not delivered");
    let token = s.server.device_token(USER, PASSWORD).access_token;
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let r = s.fetch().expect(0);
    assert_eq!(delivered(&s, "Delivered"), sorted(as_sent(&c.messages)), "{}", r.stderr);
    assert!(s.d.messages(USER).is_empty());
    assert!(logins(&s.d, "imap", "OAUTHBEARER") >= 1, "{}", s.d.log());
    assert!(!r.stderr.contains(&token) && !r.stdout.contains(&token), "the token is not shown");
}
