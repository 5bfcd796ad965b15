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

use std::process::Command;
use std::time::Duration;

use crate::util::corpus::corpus;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::oauth::{OAuthServer, PASSWORD, USER};
use crate::util::smtp_upstream::{Upstream, UpstreamOpts};

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
