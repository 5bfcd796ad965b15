//! popbridge's upstream SMTP client (`popbridge::smtp::upstream`: `deliver`, `probe`) against the
//! scripted aiosmtpd upstream (`util::smtp_upstream`, Debian's python3-aiosmtpd), one per test:
//! TLS modes, AUTH, certificates, the server's verdicts and faults, and the exact bytes delivered.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use popbridge::config::{TlsMode, TrustSettings, format_fingerprint};
use popbridge::error::ErrorClass;
use popbridge::secret::Secret;
use popbridge::smtp::upstream::{Failure, Rejection, deliver, probe};

use crate::util::certs::{self, TestCa};
use crate::util::smtp_upstream::{Faults, UpTls, Upstream, UpstreamOpts};
use crate::util::upstream::smtp_server;

const USER: &str = "alice@example.org";
const PASSWORD: &str = "c0rrect-h0rse";

/// An upstream with `tls` that requires AUTH as [`USER`] with [`PASSWORD`].
fn with_auth(tls: UpTls) -> UpstreamOpts {
    UpstreamOpts { tls, user: Some(USER.into()), password: Some(PASSWORD.into()), ..Default::default() }
}

/// An upstream with no TLS, no AUTH and these faults.
fn plain_with(faults: Faults) -> UpstreamOpts {
    UpstreamOpts { faults, ..Default::default() }
}

/// The upstream's CA: what a verifying client trusts.
fn its_ca(up: &Upstream) -> Option<PathBuf> {
    Some(up.ca_pem_path.clone())
}

/// SHA-256 of the upstream's certificate, as `Probe::tls` reports it.
fn fingerprint(up: &Upstream) -> [u8; 32] {
    popbridge::net::tls::sha256(up.cert.cert_der().as_ref())
}

fn pw() -> popbridge::config::Credential {
    popbridge::config::Credential::Password(Secret::new(PASSWORD))
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Dot lines of every kind, a blank line, 8-bit text, and a final CRLF.
const MESSAGE: &[u8] = b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: dots\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
.leading dot\r\n..two dots\r\n.\r\n...\r\nmiddle . dot\r\n\r\n\xc3\xa9t\xc3\xa9 \xe2\x82\xac\r\nlast line\r\n";

fn assert_no_secret(f: &Failure) {
    let dbg = format!("{f:?} {f}");
    let b64 = base64::engine::general_purpose::STANDARD;
    assert!(!dbg.contains(PASSWORD), "password in {dbg}");
    assert!(!dbg.contains(&b64.encode(PASSWORD)), "base64 password in {dbg}");
    assert!(!dbg.contains(&b64.encode(format!("\0{USER}\0{PASSWORD}"))), "AUTH PLAIN blob in {dbg}");
}

#[tokio::test]
async fn implicit_tls_auth_plain_delivers_the_exact_bytes() {
    let up = Upstream::start(with_auth(UpTls::Implicit));
    let server = smtp_server(&up, TlsMode::Implicit, its_ca(&up), Some(USER));
    let to = rcpts(&["bob@example.net", "carol@example.net"]);
    let d = deliver(&server, Some(&pw()), "client.example", USER, &to, MESSAGE).await.unwrap();
    assert_eq!(d.accepted, to);
    assert!(d.rejected.is_empty());
    assert!(d.reply.starts_with("250 2.0.0"), "{}", d.reply);

    // No trailing CRLF: exactly one is added.
    let no_crlf = b"Subject: x\r\n\r\nno final line break";
    deliver(&server, Some(&pw()), "client.example", USER, &to[..1], no_crlf).await.unwrap();
    // Ends with an empty line: kept as it is.
    let blank_end = b"Subject: y\r\n\r\nbody\r\n\r\n";
    deliver(&server, Some(&pw()), "client.example", "", &to[..1], blank_end).await.unwrap();

    let recs = up.received();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0].data, MESSAGE, "the upstream stores exactly the raw message");
    assert_eq!(recs[0].mail_from, USER);
    assert_eq!(recs[0].rcpt_tos, to);
    assert_eq!(recs[0].auth_user.as_deref(), Some(USER));
    assert!(recs[0].tls);
    assert_eq!(recs[0].ehlo, "client.example");
    let opts = &recs[0].mail_options;
    assert!(opts.contains(&format!("SIZE={}", MESSAGE.len())), "{opts:?}");
    assert!(opts.iter().any(|o| o == "BODY=8BITMIME"), "{opts:?}");
    assert_eq!(recs[1].data, [&no_crlf[..], b"\r\n"].concat());
    assert_eq!(recs[2].data, blank_end);
    assert_eq!(recs[2].mail_from, "<>", "null sender (aiosmtpd's spelling)");
    assert!(up.log().contains(&format!("AUTH PLAIN for '{USER}': ok")), "{}", up.log());
}

#[tokio::test]
async fn probe_reports_tls_capabilities_and_login() {
    let up = Upstream::start(with_auth(UpTls::Implicit));
    let server = smtp_server(&up, TlsMode::Implicit, its_ca(&up), Some(USER));
    let p = probe(&server, Some(&pw()), "client.example").await.unwrap();
    assert!(p.greeting.contains("upstream.test"), "{}", p.greeting);
    assert!(p.authenticated);
    assert_eq!(p.max_size, Some(33_554_432));
    assert!(p.capabilities.iter().any(|c| c.starts_with("AUTH") && c.contains("PLAIN")), "{:?}", p.capabilities);
    assert!(p.capabilities.iter().any(|c| c == "PIPELINING"), "{:?}", p.capabilities);
    let (how, fp) = p.tls.unwrap();
    assert!(how.contains("ca_file"), "{how}");
    assert_eq!(fp, Some(fingerprint(&up)));
    assert!(up.received().is_empty() && up.attempts().is_empty(), "a probe sends no mail");

    // Without a user: no AUTH, still a useful probe.
    let p = probe(&smtp_server(&up, TlsMode::Implicit, its_ca(&up), None), None, "client.example").await.unwrap();
    assert!(!p.authenticated);
}

#[tokio::test]
async fn starttls_with_auth_login() {
    // STARTTLS required; AUTH LOGIN offered, PLAIN not.
    let up = Upstream::start(UpstreamOpts { auth_mechanisms: Some(vec!["LOGIN"]), ..with_auth(UpTls::StartTls) });
    let server = smtp_server(&up, TlsMode::StartTls, its_ca(&up), Some(USER));
    let p = probe(&server, Some(&pw()), "client.example").await.unwrap();
    assert!(p.authenticated);
    assert!(p.capabilities.iter().any(|c| c == "AUTH LOGIN"), "only LOGIN offered: {:?}", p.capabilities);
    assert!(!p.capabilities.iter().any(|c| c == "STARTTLS"), "EHLO was repeated after TLS: {:?}", p.capabilities);
    assert_eq!(p.tls.unwrap().1, Some(fingerprint(&up)));

    let d = deliver(&server, Some(&pw()), "client.example", USER, &rcpts(&["bob@example.net"]), MESSAGE).await.unwrap();
    assert_eq!(d.accepted, ["bob@example.net"]);
    let recs = up.received();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].data, MESSAGE);
    assert!(recs[0].tls);
    assert_eq!(recs[0].auth_user.as_deref(), Some(USER));
    assert!(up.log().contains(&format!("AUTH LOGIN for '{USER}': ok")), "{}", up.log());
    assert!(!up.log().contains("AUTH PLAIN"), "{}", up.log());
}

#[tokio::test]
async fn plain_on_loopback_without_auth() {
    let up = Upstream::start(UpstreamOpts::default());
    let server = smtp_server(&up, TlsMode::Plain, None, None);
    let p = probe(&server, None, "client.example").await.unwrap();
    assert_eq!(p.tls, None);
    assert!(!p.authenticated);
    let d = deliver(&server, None, "client.example", USER, &rcpts(&["bob@example.net"]), MESSAGE).await.unwrap();
    assert_eq!(d.accepted.len(), 1);
    let recs = up.received();
    assert_eq!(recs[0].data, MESSAGE);
    assert!(!recs[0].tls);
    assert_eq!(recs[0].auth_user, None);
}

#[tokio::test]
async fn wrong_password_is_authentication_not_permanent() {
    let up = Upstream::start(with_auth(UpTls::Implicit));
    let server = smtp_server(&up, TlsMode::Implicit, its_ca(&up), Some(USER));
    let wrong = popbridge::config::Credential::Password(Secret::new("wr0ng-password"));
    let f = deliver(&server, Some(&wrong), "client.example", USER, &rcpts(&["bob@example.net"]), MESSAGE)
        .await
        .unwrap_err();
    assert_eq!(f.error.class, ErrorClass::Authentication, "{f}");
    assert!(!f.permanent, "the user fixes the password; the queue keeps the message");
    assert_eq!(f.code, Some(535));
    assert!(f.error.message.contains(&up.addr()), "{f}");
    assert!(f.error.message.contains("535 5.7.8"), "{f}");
    let dbg = format!("{f:?}");
    assert!(!dbg.contains("wr0ng-password"), "{dbg}");
    assert!(up.received().is_empty());
    let e = probe(&server, Some(&wrong), "client.example").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Authentication);

    // reject_auth: even the right password gets 535.
    let up2 = Upstream::start(UpstreamOpts {
        faults: Faults { reject_auth: true, ..Default::default() },
        ..with_auth(UpTls::Implicit)
    });
    let f = deliver(
        &smtp_server(&up2, TlsMode::Implicit, its_ca(&up2), Some(USER)),
        Some(&pw()),
        "client.example",
        USER,
        &rcpts(&["bob@example.net"]),
        MESSAGE,
    )
    .await
    .unwrap_err();
    assert_eq!((f.error.class, f.permanent, f.code), (ErrorClass::Authentication, false, Some(535)), "{f}");
    assert_no_secret(&f);
}

#[tokio::test]
async fn no_starttls_offered_is_refused_and_nothing_is_sent() {
    // The server would happily take AUTH and mail in the clear (no TLS + a user: --auth-plaintext).
    let up = Upstream::start(with_auth(UpTls::None));
    let server = smtp_server(&up, TlsMode::StartTls, None, Some(USER));
    let f =
        deliver(&server, Some(&pw()), "client.example", USER, &rcpts(&["bob@example.net"]), MESSAGE).await.unwrap_err();
    assert_eq!(f.error.class, ErrorClass::Certificate, "{f}");
    assert!(!f.permanent);
    assert!(f.error.message.contains("STARTTLS") && f.error.message.contains(&up.addr()), "{f}");
    let e = probe(&server, Some(&pw()), "client.example").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Certificate);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = up.log();
    assert!(log.contains(">> b'EHLO"), "{log}");
    assert!(!log.contains(">> b'AUTH"), "no AUTH in the clear: {log}");
    assert!(!log.contains(">> b'MAIL"), "no MAIL FROM: {log}");
    assert!(up.received().is_empty() && up.attempts().is_empty());
}

#[tokio::test]
async fn untrusted_certificate_names_the_fingerprint_and_pinning_it_works() {
    // The server presents a self-signed certificate (later --cert/--key flags win over the
    // helper's CA-signed ones); the client trusts another CA, which did not sign it.
    let dir = tempfile::tempdir().unwrap();
    let self_signed = certs::self_signed(&["127.0.0.1"]);
    let cert = certs::write(dir.path(), "self-signed.pem", &self_signed.cert_pem);
    let key = certs::write(dir.path(), "self-signed.key", &self_signed.key_pem);
    let other_ca = Some(certs::write(dir.path(), "other-ca.pem", &TestCa::new().ca_pem()));
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let own_cert = ["--cert", cert, "--key", key];
    let server_fp = popbridge::net::tls::sha256(self_signed.cert_der().as_ref());

    let up = Upstream::start_with_args(with_auth(UpTls::Implicit), &own_cert);
    let mut server = smtp_server(&up, TlsMode::Implicit, other_ca.clone(), Some(USER));
    let f =
        deliver(&server, Some(&pw()), "client.example", USER, &rcpts(&["bob@example.net"]), MESSAGE).await.unwrap_err();
    assert_eq!(f.error.class, ErrorClass::Certificate, "{f}");
    assert!(!f.permanent);
    let fp = format_fingerprint(&server_fp);
    assert!(f.error.message.contains(&fp), "{f}");
    assert!(f.error.message.contains(&up.addr()), "{f}");

    // STARTTLS server (offered, not required), same certificate: same verdict.
    let up_st = Upstream::start_with_args(
        UpstreamOpts { tls: UpTls::StartTls, ..Default::default() },
        &[&["--no-require-starttls"][..], &own_cert].concat(),
    );
    let e = probe(&smtp_server(&up_st, TlsMode::StartTls, other_ca, None), None, "c").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Certificate, "{e}");
    assert!(e.message.contains(&fp), "{e}");

    // Pinned: accepted.
    server.trust = TrustSettings { ca_file: None, pin_sha256: Some(server_fp) };
    let p = probe(&server, Some(&pw()), "client.example").await.unwrap();
    assert!(p.tls.unwrap().0.contains("pinned"));
    deliver(&server, Some(&pw()), "client.example", USER, &rcpts(&["bob@example.net"]), MESSAGE).await.unwrap();
    assert_eq!(up.received().len(), 1);
}

#[tokio::test]
async fn implicit_tls_against_a_plaintext_port_says_so() {
    let up = Upstream::start(UpstreamOpts::default());
    let server = smtp_server(&up, TlsMode::Implicit, its_ca(&up), None);
    let e = probe(&server, None, "c").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Certificate, "{e}");
    assert!(e.message.contains("465") && e.message.contains("starttls"), "{e}");
}

#[tokio::test]
async fn some_recipients_refused_the_others_delivered() {
    let up =
        Upstream::start(plain_with(Faults { perm_fail_rcpt: vec!["nobody@example.net".into()], ..Default::default() }));
    let server = smtp_server(&up, TlsMode::Plain, None, None);
    let to = rcpts(&["bob@example.net", "nobody@example.net", "carol@example.net"]);
    let d = deliver(&server, None, "client.example", USER, &to, MESSAGE).await.unwrap();
    assert_eq!(d.accepted, ["bob@example.net", "carol@example.net"]);
    assert_eq!(
        d.rejected,
        [Rejection {
            rcpt: "nobody@example.net".into(),
            code: 550,
            enhanced: Some("5.1.1".into()),
            text: "No such user (fault: perm_fail_rcpt)".into(),
            permanent: true,
        }]
    );
    let recs = up.received();
    assert_eq!(recs[0].rcpt_tos, ["bob@example.net", "carol@example.net"]);
    assert_eq!(recs[0].data, MESSAGE);

    // Every recipient refused: no DATA, a permanent failure.
    let f = deliver(&server, None, "client.example", USER, &rcpts(&["nobody@example.net"]), MESSAGE).await.unwrap_err();
    assert!(f.permanent, "{f}");
    assert_eq!(f.code, Some(550));
    assert!(f.error.message.contains("nobody@example.net") && f.error.message.contains("5.1.1"), "{f}");
    assert!(f.reply.unwrap().contains("No such user"));
    assert_eq!(up.received().len(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(up.log().matches(">> b'DATA'").count(), 1, "DATA only in the first transaction: {}", up.log());
}

#[tokio::test]
async fn temporary_451_at_data_then_success() {
    let up = Upstream::start(plain_with(Faults { temp_fail_data_times: 1, ..Default::default() }));
    let server = smtp_server(&up, TlsMode::Plain, None, None);
    let to = rcpts(&["bob@example.net"]);
    let f = deliver(&server, None, "client.example", USER, &to, MESSAGE).await.unwrap_err();
    assert_eq!((f.error.class, f.permanent, f.code), (ErrorClass::Temporary, false, Some(451)), "{f}");
    assert!(f.reply.as_deref().unwrap().starts_with("451 4.3.0"), "{f:?}");
    assert!(f.error.message.contains(&up.addr()) && f.error.message.contains("end of DATA"), "{f}");
    assert!(up.received().is_empty());
    deliver(&server, None, "client.example", USER, &to, MESSAGE).await.unwrap();
    assert_eq!(up.received()[0].data, MESSAGE);
}

#[tokio::test]
async fn permanent_550_at_data() {
    let up = Upstream::start(plain_with(Faults { perm_fail_data: true, ..Default::default() }));
    let server = smtp_server(&up, TlsMode::Plain, None, None);
    let f = deliver(&server, None, "client.example", USER, &rcpts(&["bob@example.net"]), MESSAGE).await.unwrap_err();
    assert_eq!((f.error.class, f.permanent, f.code), (ErrorClass::Other, true, Some(550)), "{f}");
    assert_eq!(f.reply.as_deref(), Some("550 5.7.1 Message rejected (fault: perm_fail_data)"));
    assert!(f.error.message.contains(&up.addr()), "{f}");
    let att = up.attempts();
    assert_eq!(att[0].data_len, Some(MESSAGE.len() as u64), "the whole message went out: {att:?}");
}

#[tokio::test]
async fn temporary_451_at_mail_from() {
    let up = Upstream::start(plain_with(Faults { temp_fail_mail: true, ..Default::default() }));
    let server = smtp_server(&up, TlsMode::Plain, None, None);
    let f = deliver(&server, None, "client.example", USER, &rcpts(&["bob@example.net"]), MESSAGE).await.unwrap_err();
    assert_eq!((f.error.class, f.permanent, f.code), (ErrorClass::Temporary, false, Some(451)), "{f}");
    assert!(f.error.message.contains("MAIL FROM"), "{f}");
}

#[tokio::test]
async fn disconnect_in_data_is_temporary() {
    let up = Upstream::start(plain_with(Faults { disconnect_in_data: true, ..Default::default() }));
    let server = smtp_server(&up, TlsMode::Plain, None, None);
    let f = deliver(&server, None, "client.example", USER, &rcpts(&["bob@example.net"]), MESSAGE).await.unwrap_err();
    assert_eq!(f.error.class, ErrorClass::Connection, "{f}");
    assert!(!f.permanent);
    assert!(f.error.message.contains(&up.addr()) && f.error.message.contains("DATA"), "{f}");
    assert!(up.received().is_empty());
    assert_eq!(up.attempts()[0].stage, "disconnect");
}

#[tokio::test]
async fn a_stall_times_out_as_a_connection_error() {
    let up = Upstream::start(plain_with(Faults { slow_reply_ms: 4000, ..Default::default() }));
    let mut server = smtp_server(&up, TlsMode::Plain, None, None);
    server.timeout = Duration::from_secs(1);
    let t = Instant::now();
    let f = deliver(&server, None, "client.example", USER, &rcpts(&["bob@example.net"]), MESSAGE).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(f.error.class, ErrorClass::Connection, "{f}");
    assert!(!f.permanent);
    assert!(f.error.message.contains("no reply from") && f.error.message.contains(&up.addr()), "{f}");
}

#[tokio::test]
async fn too_big_for_the_advertised_size_is_permanent_without_mail_from() {
    let up = Upstream::start(UpstreamOpts { max_size: Some(100), ..Default::default() });
    let server = smtp_server(&up, TlsMode::Plain, None, None);
    assert_eq!(probe(&server, None, "c").await.unwrap().max_size, Some(100));
    let f = deliver(&server, None, "client.example", USER, &rcpts(&["bob@example.net"]), MESSAGE).await.unwrap_err();
    assert!(f.permanent, "{f}");
    assert!(f.error.message.contains("at most 100 bytes"), "{f}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!up.log().contains(">> b'MAIL"), "{}", up.log());
}

#[tokio::test]
async fn large_message_in_chunks() {
    let up = Upstream::start(UpstreamOpts::default());
    let server = smtp_server(&up, TlsMode::Plain, None, None);
    let mut raw = b"Subject: big\r\n\r\n".to_vec();
    for i in 0..40_000 {
        raw.extend_from_slice(format!(".line {i} {}\r\n", "x".repeat(60)).as_bytes());
    }
    deliver(&server, None, "client.example", USER, &rcpts(&["bob@example.net"]), &raw).await.unwrap();
    assert_eq!(up.received()[0].data, raw);
}
