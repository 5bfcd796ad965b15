//! Sending: real clients (Python smtplib, swaks) submit to popbridge, which relays through a real
//! upstream SMTP server (aiosmtpd, scripted with faults) that records exactly what it received.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::fake_pop3::{FakeMessage, FakePop3, Script};
use crate::util::imap_clients::{Raw, Security};
use crate::util::smtp_upstream::{Faults, PausePoint, UpTls, Upstream, UpstreamOpts};
use crate::util::{Bridge, Daemon, LOCAL_PASSWORD, wait_until};

const SMTP_PW: &str = "smtp-secret";

struct Setup {
    up: Upstream,
    b: Bridge,
    daemon: Option<Daemon>,
    pop: FakePop3,
}

fn upstream(faults: Faults) -> Upstream {
    upstream_with(UpTls::Implicit, faults)
}

/// An upstream with `tls` that requires AUTH as me@work.example with [`SMTP_PW`].
fn upstream_with(tls: UpTls, faults: Faults) -> Upstream {
    Upstream::start(UpstreamOpts {
        tls,
        user: Some("me@work.example".into()),
        password: Some(SMTP_PW.into()),
        faults,
        ..Default::default()
    })
}

/// A bridge with account Work (me@work.example) whose outgoing server is `up`; `extra` is added to
/// the account's TOML (top-level account keys go before its sections, so they are passed apart).
fn setup_with(up: Upstream, account_keys: &str) -> Setup {
    let pop = FakePop3::start(Script::default());
    let b = Bridge::with_listeners();
    b.add_account_sending_through(pop.port(), &up, SMTP_PW);
    if !account_keys.is_empty() {
        let text = std::fs::read_to_string(&b.config).unwrap();
        let text = text.replacen(
            "\nemail = \"me@work.example\"\n",
            &format!("\nemail = \"me@work.example\"\n{account_keys}"),
            1,
        );
        std::fs::write(&b.config, text).unwrap();
    }
    quick_retries(&b);
    let daemon = Some(b.daemon());
    Setup { up, b, daemon, pop }
}

/// Retries after 1 s instead of the default schedule's minutes (`[outbox] retry`).
fn quick_retries(b: &Bridge) {
    b.append_config("\n[outbox]\nretry = [\"1s\"]\n");
}

fn setup(faults: Faults) -> Setup {
    setup_with(upstream(faults), "")
}

fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Me <me@work.example>\r\nTo: Ann <ann@example.org>\r\nSubject: {subject}\r\nDate: Tue, 1 Jul 2025 10:52:37 +0200\r\nMessage-ID: <{subject}@work.example>\r\n\r\n{body}"
    )
    .into_bytes()
}

/// Python smtplib: `mode` plain | starttls | implicit; `mech` PLAIN | LOGIN. Prints "OK <refused>"
/// or "ERR <code> <text>".
fn smtplib(s: &Setup, mode: &str, mech: &str, user: &str, from: &str, to: &[&str], data: &[u8]) -> String {
    let (sub, subs) = s.b.smtp_ports();
    let port = if mode == "implicit" { subs } else { sub };
    let file = s.b.dir.path().join(format!("msg-{}.eml", rand_suffix()));
    std::fs::write(&file, data).unwrap();
    let script = r#"
import smtplib, ssl, sys, json
mode, port, ca, user, pw, mech, frm, to, path = sys.argv[1:10]
ctx = ssl.create_default_context(cafile=ca)
try:
    if mode == "implicit":
        s = smtplib.SMTP_SSL("127.0.0.1", int(port), context=ctx, timeout=30)
    else:
        s = smtplib.SMTP("127.0.0.1", int(port), timeout=30)
    s.ehlo("client.example")
    if mode == "starttls":
        s.starttls(context=ctx); s.ehlo("client.example")
    s.user, s.password = user, pw
    s.auth(mech, getattr(s, "auth_" + mech.lower()), initial_response_ok=(mech == "PLAIN"))
    refused = s.sendmail(frm, json.loads(to), open(path, "rb").read())
    s.quit()
    print("OK", json.dumps(refused))
except smtplib.SMTPResponseException as e:
    print("ERR", e.smtp_code, e.smtp_error.decode(errors="replace"))
except smtplib.SMTPRecipientsRefused as e:
    print("ERR RCPT", json.dumps({k: v[0] for k, v in e.recipients.items()}))
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            mode,
            &port.to_string(),
            &s.b.cert().display().to_string(),
            user,
            LOCAL_PASSWORD,
            mech,
            from,
        ])
        .arg(serde_json::to_string(to).unwrap())
        .arg(&file)
        .output()
        .expect("python3");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if text.starts_with("OK") {
        text
    } else {
        format!("{text}\n--- daemon log ---\n{}", s.daemon.as_ref().map(|d| d.log()).unwrap_or_default())
    }
}

/// Asserts that smtplib's submission was accepted, showing its output otherwise.
fn ok(out: String) {
    assert!(out.starts_with("OK {}"), "submission not accepted: {out}");
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn swaks(s: &Setup, args: &[&str]) -> (bool, String) {
    let (sub, _) = s.b.smtp_ports();
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{sub}"), "--timeout", "60", "--helo", "swaks.client"])
        .args(["--auth-user", "me", "--auth-password", LOCAL_PASSWORD])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("swaks (apt-get install -y swaks)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Messages in a mailbox of the bridge, read over IMAP.
fn mailbox(s: &Setup, name: &str) -> Vec<Vec<u8>> {
    let mut r = Raw::connect_login(&s.b.target(Security::Plain, "me"));
    let sel = r.cmd("a1", &format!("EXAMINE \"{name}\""));
    let n = sel.number("EXISTS").unwrap_or(0);
    if n == 0 {
        return Vec::new();
    }
    let f = r.cmd("a2", "FETCH 1:* (BODY.PEEK[])");
    f.fetches().iter().filter_map(|f| f.get("BODY[]").map(<[u8]>::to_vec)).collect()
}

#[test]
fn smtplib_and_swaks_submissions_are_relayed_byte_exact() {
    let s = setup(Faults::default());
    let plain = message("plain", "Hello over plaintext on loopback.\r\n");
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["ann@example.org"], &plain));
    let tls =
        message("starttls", "Line one.\r\n.A line that starts with a dot.\r\n..two dots\r\n.\r\nafter a lone dot\r\n");
    ok(smtplib(&s, "starttls", "LOGIN", "me+Work", "me@work.example", &["ann@example.org", "bob@example.net"], &tls));
    let eight = message("implicit", "Grüße aus Zürich — 8-bit UTF-8 body.\r\n");
    ok(smtplib(&s, "implicit", "PLAIN", "me@Work", "me@work.example", &["ann@example.org"], &eight));
    let got = s.up.wait_for(3, Duration::from_secs(20));
    let by_subject = |subj: &str| {
        got.iter().find(|r| String::from_utf8_lossy(&r.data).contains(&format!("Subject: {subj}\r\n"))).unwrap()
    };
    assert_eq!(by_subject("plain").data, plain, "relayed bytes equal the submitted ones");
    assert_eq!(by_subject("starttls").data, tls, "dot lines survive stuffing both ways");
    assert_eq!(by_subject("starttls").rcpt_tos, vec!["ann@example.org", "bob@example.net"]);
    assert_eq!(by_subject("implicit").data, eight);
    for r in &got {
        assert_eq!(r.mail_from, "me@work.example");
        assert_eq!(r.auth_user.as_deref(), Some("me@work.example"), "popbridge logs in upstream");
        assert!(r.tls, "upstream over TLS");
    }
    // swaks, pipelined, with a Bcc that must not travel.
    let file = s.b.dir.path().join("swaks.eml");
    let with_bcc = b"From: me@work.example\r\nTo: ann@example.org\r\nBcc: hidden@example.org\r\nSubject: swaks\r\nMessage-ID: <swaks@work.example>\r\nDate: Tue, 1 Jul 2025 10:52:37 +0200\r\n\r\nbody\r\n";
    std::fs::write(&file, with_bcc).unwrap();
    let (ok, out) = swaks(
        &s,
        &[
            "--pipeline",
            "--auth",
            "LOGIN",
            "--from",
            "me@work.example",
            "--to",
            "ann@example.org,hidden@example.org",
            "--data",
            &file.display().to_string(),
        ],
    );
    assert!(ok, "{out}");
    let got = s.up.wait_for(4, Duration::from_secs(20));
    let relayed = got.iter().find(|r| String::from_utf8_lossy(&r.data).contains("Subject: swaks")).unwrap();
    assert!(!String::from_utf8_lossy(&relayed.data).contains("Bcc:"), "Bcc header removed");
    assert!(relayed.rcpt_tos.contains(&"hidden@example.org".to_string()), "the Bcc recipient still gets it");
    // The upstream records a message before its 250 reaches popbridge: the outbox says "sent"
    // a moment later.
    wait_until("the outbox to count 4 sent", Duration::from_secs(10), || s.b.status_json()["outbox"]["sent"] == 4);
    let j = s.b.status_json();
    assert_eq!(j["outbox"]["queued"], 0, "{j}");
}

#[test]
fn a_20_mb_message_is_relayed_intact() {
    let s = setup(Faults::default());
    let mut big = message("big", "");
    let line = format!("{}\r\n", "0123456789abcdef".repeat(4));
    while big.len() < 20 * 1000 * 1000 {
        big.extend_from_slice(line.as_bytes());
    }
    let out = smtplib(&s, "starttls", "PLAIN", "me", "me@work.example", &["ann@example.org"], &big);
    assert!(out.starts_with("OK"), "{out}");
    let got = s.up.wait_for(1, Duration::from_secs(60));
    assert!(got[0].data == big, "20 MB relayed byte-exact ({} vs {} bytes)", got[0].data.len(), big.len());
}

/// Raw SMTP for refusals smtplib would not let us provoke.
fn raw_session(s: &Setup, lines: &[&[u8]]) -> String {
    let (sub, _) = s.b.smtp_ports();
    let mut c = std::net::TcpStream::connect(("127.0.0.1", sub)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut all = String::new();
    let mut buf = [0u8; 65536];
    let mut read_reply = |c: &mut std::net::TcpStream, all: &mut String| loop {
        let n = c.read(&mut buf).unwrap_or(0);
        all.push_str(&String::from_utf8_lossy(&buf[..n]));
        let last = all.trim_end().lines().last().unwrap_or("").to_string();
        if n == 0 || (last.len() >= 4 && last.as_bytes()[3] == b' ') {
            return;
        }
    };
    read_reply(&mut c, &mut all);
    for l in lines {
        c.write_all(l).unwrap();
        read_reply(&mut c, &mut all);
    }
    all
}

#[test]
fn submission_refuses_what_it_must() {
    let s = setup(Faults::default());
    let m = message("refused", "x\r\n");
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["a@example.org"], &m));
    // Wrong password.
    let mut bad = Command::new("python3");
    let _ = &mut bad;
    let out = raw_session(&s, &[b"EHLO c\r\n", b"AUTH PLAIN AG1lAHdyb25n\r\n"]);
    assert!(out.contains("535 5.7.8"), "{out}");
    // No AUTH: never an open relay.
    let out = raw_session(&s, &[b"EHLO c\r\n", b"MAIL FROM:<me@work.example>\r\n"]);
    assert!(out.contains("530 5.7.0"), "{out}");
    let auth = format!("AUTH PLAIN {}\r\n", popbridge_b64(&format!("\0me\0{LOCAL_PASSWORD}")));
    // A sender that is not an account's address.
    let out = raw_session(&s, &[b"EHLO c\r\n", auth.as_bytes(), b"MAIL FROM:<stranger@evil.example>\r\n"]);
    assert!(out.contains("550 5.7.1") && out.contains("me@work.example"), "the reply lists the allowed senders: {out}");
    // A header From that differs from every allowed address.
    let forged = b"From: ceo@bank.example\r\nTo: a@example.org\r\nSubject: x\r\n\r\nx\r\n.\r\n";
    let out = raw_submission(&s, "me", "", "a@example.org", forged);
    assert!(out.contains("550 5.7.1") && out.contains("ceo@bank.example"), "{out}");
    // Too many recipients.
    let mut lines: Vec<Vec<u8>> =
        vec![b"EHLO c\r\n".to_vec(), auth.as_bytes().to_vec(), b"MAIL FROM:<me@work.example>\r\n".to_vec()];
    for i in 0..101 {
        lines.push(format!("RCPT TO:<r{i}@example.org>\r\n").into_bytes());
    }
    let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let out = raw_session(&s, &refs);
    assert_eq!(out.matches("250 2.1.5").count(), 100);
    assert!(out.contains("452 4.5.3"), "{}", out.lines().last().unwrap_or(""));
    // Oversized: declared, and actually sent.
    let out = raw_session(&s, &[b"EHLO c\r\n", auth.as_bytes(), b"MAIL FROM:<me@work.example> SIZE=99999999999\r\n"]);
    assert!(out.contains("552 5.3.4"), "{out}");
    let mut huge = b"From: me@work.example\r\nSubject: huge\r\n\r\n".to_vec();
    huge.resize(51 * 1024 * 1024, b'x');
    huge.extend_from_slice(b"\r\n.\r\n");
    let out = raw_submission(&s, "me", "", "a@example.org", &huge);
    assert!(out.contains("552 5.3.4"), "{}", out.lines().last().unwrap_or(""));
    // Once the legitimate message is sent, nothing is queued: nothing else can leave any more.
    wait_until("the legitimate message sent", Duration::from_secs(20), || outbox(&s) == (0, 1, 0));
    assert_eq!(s.up.received().len(), 1, "only the legitimate message left");
}

/// Issue 13: every From and Sender field counts, however it is written (two From fields in
/// either order and any case, folded, indented at the top of the header or after a line that is
/// not a field): refused with 5.7.1 at the end of DATA, naming the foreign address. Before, only
/// the last From field was read, and a foreign one above it went out to the recipient.
#[test]
fn every_from_and_sender_field_is_checked_however_it_is_written() {
    let s = setup(Faults::default());
    let rest = "To: a@example.org\r\nSubject: forged\r\nDate: Tue, 1 Jul 2025 10:52:37 +0200\r\n\r\nx\r\n.\r\n";
    for (what, from_lines) in [
        ("a foreign From above the own one", "From: evil@other.example\r\nFrom: Me <me@work.example>\r\n"),
        ("a foreign From below the own one", "From: Me <me@work.example>\r\nFrom: evil@other.example\r\n"),
        ("lower and upper case", "from: evil@other.example\r\nFROM: me@work.example\r\n"),
        ("folded", "From:\r\n evil@other.example\r\nFrom: me@work.example\r\n"),
        ("indented at the top", " From: evil@other.example\r\nFrom: me@work.example\r\n"),
        ("indented after a line that is no field", "X-Note\r\n\tFrom: evil@other.example\r\nFrom: me@work.example\r\n"),
        ("a space in the name", "Fr om: evil@other.example\r\nFrom: me@work.example\r\n"),
        ("a foreign Sender", "From: me@work.example\r\nSender: evil@other.example\r\n"),
    ] {
        let data = format!("{from_lines}{rest}");
        let out = raw_submission(&s, "me", "", "a@example.org", data.as_bytes());
        let last = out.trim_end().lines().last().unwrap_or("").to_string();
        assert!(
            last.starts_with("550 5.7.1") && last.contains("evil@other.example"),
            "{what}: refused, naming the foreign address:\n{out}"
        );
    }
    // A normal message still goes out, and it is the only one.
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["a@example.org"], &message("normal", "x\r\n")));
    wait_until("the normal message sent", Duration::from_secs(20), || outbox(&s) == (0, 1, 0));
    let got = s.up.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(!String::from_utf8_lossy(&got[0].data).contains("evil@"), "{got:?}");
}

fn popbridge_b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn a_temporary_failure_is_retried_until_delivered() {
    let s = setup(Faults { temp_fail_data_times: 2, ..Faults::default() });
    let m = message("retry", "x\r\n");
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["a@example.org"], &m));
    let got = s.up.wait_for(1, Duration::from_secs(30));
    assert_eq!(got[0].data, m);
    // The peer logs each attempt before it replies, and popbridge marks the message sent when it
    // reads the 250: once the outbox says sent, the logs are complete and nothing is left to send.
    wait_until("the message marked sent", Duration::from_secs(20), || outbox(&s) == (0, 1, 0));
    let data_replies: Vec<u16> = s.up.attempts().iter().filter(|a| a.stage == "data").map(|a| a.code()).collect();
    assert_eq!(data_replies, vec![451, 451, 250], "two 451s, then delivered once");
    assert_eq!(s.up.received().len(), 1, "exactly once");
}

#[test]
fn a_permanent_failure_becomes_a_notice_in_inbox() {
    let s = setup(Faults { perm_fail_data: true, ..Faults::default() });
    let m = message("doomed", "x\r\n");
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["a@example.org"], &m));
    wait_until("the bounce notice", Duration::from_secs(20), || !mailbox(&s, "INBOX").is_empty());
    let notice = String::from_utf8_lossy(&mailbox(&s, "INBOX")[0]).into_owned();
    assert!(
        notice.contains("Undelivered: doomed") && notice.contains("a@example.org") && notice.contains("550"),
        "{notice}"
    );
    let j = s.b.status_json();
    assert_eq!(j["outbox"]["failed"], 1, "{j}");
}

#[test]
fn recipients_refused_one_by_one_are_reported_and_the_rest_delivered() {
    let s = setup(Faults { perm_fail_rcpt: vec!["nobody@example.org".into()], ..Faults::default() });
    let m = message("partial", "x\r\n");
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["ann@example.org", "nobody@example.org"], &m));
    let got = s.up.wait_for(1, Duration::from_secs(20));
    assert_eq!(got[0].rcpt_tos, vec!["ann@example.org"]);
    wait_until("the notice for the refused recipient", Duration::from_secs(20), || !mailbox(&s, "INBOX").is_empty());
    let notice = String::from_utf8_lossy(&mailbox(&s, "INBOX")[0]).into_owned();
    assert!(notice.contains("nobody@example.org") && !notice.contains("  ann@example.org"), "{notice}");
}

#[test]
fn mail_waits_while_the_upstream_is_down_and_survives_a_restart_exactly_once() {
    let mut s = setup(Faults::default());
    s.up.stop();
    let m = message("patient", "x\r\n");
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["a@example.org"], &m));
    let port = s.up.port.to_string();
    wait_until("a failed attempt, the message kept", Duration::from_secs(20), || {
        let j = s.b.status_json();
        j["outbox"]["queued"] == 1 && j["outbox"]["last_error"].as_str().is_some_and(|e| e.contains(&port))
    });
    // The daemon stops with the message queued; the upstream comes back; the daemon starts again.
    let mut d = s.daemon.take().unwrap();
    assert!(d.terminate().success());
    s.up.restart();
    s.daemon = Some(s.b.daemon());
    let got = s.up.wait_for(1, Duration::from_secs(20));
    assert_eq!(got[0].data, m);
    // Marked sent: nothing is left to send, so the count is final.
    wait_until("the message marked sent", Duration::from_secs(20), || outbox(&s) == (0, 1, 0));
    assert_eq!(s.up.received().len(), 1, "delivered exactly once");
}

/// Issue 14: SIGTERM while the upstream has the message and is about to confirm it. The daemon
/// waits for that delivery to finish (`smtp::queue::DRAIN_TIMEOUT`), records it as sent and then
/// exits; started again, it does not send the message a second time. Before, shutdown did not
/// wait for deliveries under way: the daemon exited at once, the 250 was never read, the row
/// stayed queued and the next start sent the message again.
#[test]
fn shutdown_waits_for_a_delivery_under_way_and_it_goes_out_once() {
    let mut s = setup(Faults { pause_at: vec![PausePoint::Committed], ..Faults::default() });
    let m = message("in-flight", "x\r\n");
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["a@example.org"], &m));
    // The upstream has recorded the message; its 250 is held back.
    s.up.wait_for_pause(PausePoint::Committed, Duration::from_secs(20));
    let mut d = s.daemon.take().unwrap();
    let _ = Command::new("kill").arg("-TERM").arg(d.child.id().to_string()).status();
    std::thread::sleep(Duration::from_secs(1));
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon waits for the delivery under way:\n{}", d.log());
    // The upstream says 250 now: the delivery is recorded and the daemon exits.
    s.up.set_faults(Faults::default());
    assert!(d.terminate().success(), "{}", d.log());
    assert_eq!(outbox(&s), (0, 1, 0), "marked sent before the daemon exited:\n{}", d.log());
    // Started again, with retries after a second: nothing is sent again.
    s.daemon = Some(s.b.daemon());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(outbox(&s), (0, 1, 0));
    assert_eq!(s.up.received().len(), 1, "delivered exactly once: {:?}", s.up.attempts());
}

#[test]
fn a_disconnect_during_data_is_retried() {
    let s = setup(Faults { disconnect_in_data: true, ..Faults::default() });
    let m = message("cut", "x\r\n");
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["a@example.org"], &m));
    wait_until("an interrupted attempt", Duration::from_secs(20), || !s.up.attempts().is_empty());
    s.up.set_faults(Faults::default());
    let got = s.up.wait_for(1, Duration::from_secs(20));
    assert_eq!(got[0].data, m);
}

/// A submission over a raw session (AUTH PLAIN as `me`) with these MAIL FROM parameters; the
/// last reply line (the one to the end of DATA).
fn submit_raw(s: &Setup, mail_params: &str, rcpt: &str, data: &[u8]) -> String {
    let mut data = data.to_vec();
    data.extend_from_slice(b".\r\n");
    let out = raw_submission(s, "me", mail_params, rcpt, &data);
    out.trim_end().lines().last().unwrap_or("").to_string()
}

/// A raw session that logs in as `user` (AUTH PLAIN), then MAIL FROM me@work.example with these
/// parameters, RCPT TO `rcpt`, DATA and `data` (its final "." line included): everything read.
fn raw_submission(s: &Setup, user: &str, mail_params: &str, rcpt: &str, data: &[u8]) -> String {
    let auth = format!("AUTH PLAIN {}\r\n", popbridge_b64(&format!("\0{user}\0{LOCAL_PASSWORD}")));
    let mail = format!("MAIL FROM:<me@work.example>{mail_params}\r\n");
    let rcpt = format!("RCPT TO:<{rcpt}>\r\n");
    raw_session(s, &[b"EHLO c\r\n", auth.as_bytes(), mail.as_bytes(), rcpt.as_bytes(), b"DATA\r\n", data])
}

/// A message whose header is UTF-8 (RFC 6532): a display name and a Subject.
fn utf8_message(subject: &str) -> Vec<u8> {
    format!(
        "From: Jörg Müller <me@work.example>\r\nTo: Ann <ann@example.org>\r\nSubject: {subject}\r\n\
         Date: Tue, 1 Jul 2025 10:52:37 +0200\r\nMessage-ID: <utf8-{}@work.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße, Jörg\r\n",
        rand_suffix()
    )
    .into_bytes()
}

/// Issue 13: a message with a UTF-8 header, submitted with SMTPUTF8, goes out with SMTPUTF8
/// (RFC 6531) to an upstream that offers it, byte for byte. Before, popbridge sent SMTPUTF8 only
/// for non-ASCII addresses, and relayed the raw UTF-8 header without it.
#[test]
fn a_utf8_header_goes_out_with_smtputf8_when_the_upstream_offers_it() {
    let s = setup(Faults::default());
    let m = utf8_message("Grüße aus Zürich");
    let last = submit_raw(&s, " SMTPUTF8 BODY=8BITMIME", "ann@example.org", &m);
    assert!(last.starts_with("250 "), "{last}");
    let got = s.up.wait_for(1, Duration::from_secs(20));
    assert!(got[0].mail_options.iter().any(|o| o == "SMTPUTF8"), "{:?}", got[0].mail_options);
    assert!(got[0].mail_options.iter().any(|o| o == "BODY=8BITMIME"), "{:?}", got[0].mail_options);
    assert_eq!(got[0].data, m, "as submitted");
}

/// Issue 13, the chosen behaviour when the upstream does not offer SMTPUTF8 (RFC 6531 §3.2 does
/// not allow sending the UTF-8 header as it is): the header is rewritten with RFC 2047 encoded
/// words where that changes nothing the recipient reads (the Subject, display names), and the
/// message goes out without SMTPUTF8; a message whose header cannot be (a non-ASCII address) is
/// not sent but bounced with a notice that says why. Before, the raw UTF-8 header went out
/// without SMTPUTF8.
#[test]
fn without_smtputf8_the_header_is_encoded_or_the_message_bounced() {
    let up = Upstream::start_with_args(
        UpstreamOpts {
            tls: UpTls::Implicit,
            user: Some("me@work.example".into()),
            password: Some(SMTP_PW.into()),
            ..Default::default()
        },
        &["--no-smtputf8"],
    );
    let s = setup_with(up, "");
    let subject = "Grüße aus Zürich — 東京で会いましょう";
    let m = utf8_message(subject);
    let last = submit_raw(&s, " SMTPUTF8 BODY=8BITMIME", "ann@example.org", &m);
    assert!(last.starts_with("250 "), "{last}");
    let got = s.up.wait_for(1, Duration::from_secs(20));
    let data = &got[0].data;
    assert!(!got[0].mail_options.iter().any(|o| o == "SMTPUTF8"), "{:?}", got[0].mail_options);
    let end = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(data[..end].is_ascii(), "an ASCII header:\n{}", String::from_utf8_lossy(data));
    assert!(data.ends_with("\r\n\r\nGrüße, Jörg\r\n".as_bytes()), "the body as submitted");
    let parsed = mail_parser::MessageParser::default().parse(data).unwrap();
    assert_eq!(parsed.subject(), Some(subject), "the recipient reads the same Subject");
    let from = parsed.from().and_then(|a| a.first()).unwrap();
    assert_eq!((from.name.as_deref(), from.address.as_deref()), (Some("Jörg Müller"), Some("me@work.example")));

    // An address that has no ASCII form: not sent, bounced with the reason.
    let m = String::from_utf8(utf8_message("to Jörg"))
        .unwrap()
        .replacen("To: Ann <ann@example.org>", "To: Jörg <jörg@example.org>", 1)
        .into_bytes();
    let last = submit_raw(&s, " SMTPUTF8 BODY=8BITMIME", "joerg@example.org", &m);
    assert!(last.starts_with("250 "), "accepted by popbridge (it cannot know the upstream yet): {last}");
    wait_until("the bounce notice", Duration::from_secs(20), || !mailbox(&s, "INBOX").is_empty());
    let notice = String::from_utf8_lossy(&mailbox(&s, "INBOX")[0]).into_owned();
    assert!(notice.contains("SMTPUTF8") && notice.contains("joerg@example.org"), "{notice}");
    // The notice is written before the row is marked failed.
    wait_until("the message marked failed", Duration::from_secs(20), || outbox(&s) == (0, 1, 1));
    assert_eq!(s.up.received().len(), 1, "only the first message went out");
}

/// The code in a verification mail popbridge sent (as the upstream received it).
fn verification_code(data: &[u8]) -> String {
    let mail = String::from_utf8_lossy(data).into_owned();
    let code = mail.lines().find_map(|l| l.strip_prefix("Verification code: ")).map(|c| c.trim().to_string());
    let code = code.unwrap_or_else(|| panic!("no code in the verification mail:\n{mail}"));
    assert!(code.len() >= 6 && code.chars().all(|c| c.is_ascii_digit()), "{code}");
    code
}

/// A message with this From header (the other fields as in [`message`]).
fn message_from(from: &str, subject: &str) -> Vec<u8> {
    let m = message(subject, "x\r\n");
    String::from_utf8(m).unwrap().replacen("From: Me <me@work.example>", &format!("From: {from}"), 1).into_bytes()
}

/// The reply_to address is used (as Reply-To, and as a sender) only once it is verified.
#[test]
fn reply_to_is_verified_by_code_before_it_is_used() {
    let s = setup_with(upstream(Faults::default()), "reply_to = \"desk@work.example\"\n");
    let before = message("before", "x\r\n");
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["a@example.org"], &before));
    let got = s.up.wait_for(1, Duration::from_secs(20));
    assert!(!String::from_utf8_lossy(&got[0].data).contains("Reply-To"), "not before verification");
    // Not a sender either, yet: refused, and the reply says how to verify it.
    let as_desk = message_from("Help Desk <desk@work.example>", "as-desk");
    let out = smtplib(&s, "plain", "PLAIN", "me", "desk@work.example", &["a@example.org"], &as_desk);
    assert!(
        out.starts_with("ERR 550 5.7.1") && out.contains("reply_to") && out.contains("verify send desk@work.example"),
        "an unverified reply_to is not a sender: {out}"
    );
    s.b.run(&["verify", "send", "desk@work.example"]).expect(0);
    let got = s.up.wait_for(2, Duration::from_secs(20));
    assert_eq!(got[1].rcpt_tos, vec!["desk@work.example"]);
    let code = verification_code(&got[1].data);
    let r = s.b.run(&["verify", "confirm", "desk@work.example", "000000"]).expect(2);
    assert!(r.stderr.contains("wrong code"), "{}", r.stderr);
    s.b.run(&["verify", "confirm", "desk@work.example", &code]).expect(0);
    assert_eq!(s.b.status_json()["verifications"][0]["verified"], true);
    let after = message("after", "x\r\n");
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["a@example.org"], &after));
    let got = s.up.wait_for(3, Duration::from_secs(20));
    assert!(
        String::from_utf8_lossy(&got[2].data).starts_with("Reply-To: desk@work.example\r\n"),
        "added once verified"
    );
    // Verified: mail from desk@work.example goes out through Work's server, as submitted.
    ok(smtplib(&s, "plain", "PLAIN", "me", "desk@work.example", &["a@example.org"], &as_desk));
    let got = s.up.wait_for(4, Duration::from_secs(20));
    assert_eq!(got[3].mail_from, "desk@work.example");
    assert_eq!(got[3].auth_user.as_deref(), Some("me@work.example"), "through Work's server");
    let mut want = b"Reply-To: desk@work.example\r\n".to_vec();
    want.extend_from_slice(&as_desk);
    assert_eq!(String::from_utf8_lossy(&got[3].data), String::from_utf8_lossy(&want), "as submitted, plus Reply-To");
}

#[test]
fn a_verification_mail_fetched_back_confirms_itself() {
    let s = setup_with(upstream(Faults::default()), "reply_to = \"desk@work.example\"\n");
    s.b.run(&["verify", "send", "desk@work.example"]).expect(0);
    let got = s.up.wait_for(1, Duration::from_secs(20));
    // The mail arrives in a mailbox popbridge fetches.
    s.pop.add_messages(vec![FakeMessage { uidl: Some("v1".into()), data: got[0].data.clone() }]);
    s.b.run(&["fetch"]).expect(0);
    assert_eq!(s.b.status_json()["verifications"][0]["verified"], true, "confirmed by the fetch");
}

#[test]
fn save_sent_files_one_copy_even_when_the_client_appends_its_own() {
    let s = setup_with(upstream(Faults::default()), "save_sent = true\n");
    let m = message("keep", "x\r\n");
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["a@example.org"], &m));
    assert_eq!(mailbox(&s, "Work/Sent"), vec![m.clone()], "popbridge filed the copy");
    // Thunderbird appends its own copy of the same message to Sent (account login).
    let mut r = Raw::connect_login(&s.b.target(Security::Plain, "me+Work"));
    r.send(format!("a1 APPEND Sent (\\Seen) {{{}+}}\r\n", m.len()).as_bytes());
    r.send(&m);
    r.send(b"\r\n");
    let rep = r.read_until_tagged("a1");
    assert!(rep.ok() && rep.tagged.contains("APPENDUID"), "{:?}", rep.lines);
    assert_eq!(mailbox(&s, "Work/Sent").len(), 1, "one copy");
}

/// Adds account `name` with `account add`: POP from the fake server on `pop_port`, mail sent
/// through `up` with `--smtp-tls tls`, AUTH as me@work.example with [`SMTP_PW`]; `up`'s CA is
/// trusted for it. (The general form of `Bridge::add_account_sending_through`.)
fn add_account_via(b: &Bridge, name: &str, email: &str, pop_port: u16, up: &Upstream, tls: &str) {
    let (up_port, pw) = (up.port.to_string(), format!("echo {SMTP_PW}"));
    let smtp =
        ["--smtp-host", "127.0.0.1", "--smtp-port", &up_port, "--smtp-tls", tls, "--smtp-user", "me@work.example"];
    let smtp = [&smtp[..], &["--smtp-password-command", &pw, "--no-test"]].concat();
    account_add(b, name, email, pop_port, &smtp).expect(0);
    b.append_config(&format!("ca_file = \"{}\"\n", up.ca_pem_path.display()));
}

/// `account add` of account `name` (From `email`) with POP from the fake server on `pop_port`
/// and these SMTP flags; tested before it is saved (incoming, then outgoing) unless they include
/// `--no-test`.
fn account_add(b: &Bridge, name: &str, email: &str, pop_port: u16, smtp: &[&str]) -> crate::util::Run {
    let pop_port = pop_port.to_string();
    let mut args = vec![
        "account",
        "add",
        "--name",
        name,
        "--email",
        email,
        "--pop-host",
        "127.0.0.1",
        "--pop-port",
        &pop_port,
        "--pop-tls",
        "plain",
        "--pop-user",
        "u",
        "--password-command",
        "echo p",
    ];
    args.extend_from_slice(smtp);
    b.run(&args)
}

/// Issue 13: an SMTP server with a private CA, or a certificate pinned by its fingerprint, is
/// added from the command line (`--smtp-ca-file`, `--smtp-pin-sha256`), tested before it is
/// saved, and sends. Without either, the refusal's advice names the SMTP section and flags and
/// the SMTP ports. Before, neither flag existed (only the config could be edited), and the advice
/// named `[account.pop]` and "995 for POP3".
#[test]
fn an_smtp_server_with_a_private_ca_or_a_pin_is_added_from_the_command_line() {
    let up = upstream(Faults::default());
    let pop = FakePop3::start(Script::default());
    let b = Bridge::with_listeners();
    let port = up.port.to_string();
    let pw = format!("echo {SMTP_PW}");
    let ca = up.ca_pem_path.display().to_string();
    let pin = up.cert.sha256_hex();
    // The server and its login; `trust` adds how its certificate is trusted.
    let add = |name: &str, email: &str, trust: &[&str]| {
        let mut flags = vec!["--smtp-host", "127.0.0.1", "--smtp-port", &port, "--smtp-tls", "implicit"];
        flags.extend(["--smtp-user", "me@work.example", "--smtp-password-command", &pw]);
        flags.extend_from_slice(trust);
        account_add(&b, name, email, pop.port(), &flags)
    };

    let r = add("Work", "me@work.example", &[]).expect(4);
    for needle in ["not signed by a trusted authority", "[account.smtp]", "--smtp-pin-sha256", "--smtp-ca-file", "465"]
    {
        assert!(r.stderr.contains(needle), "the refusal says {needle:?}:\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("[account.pop]") && !r.stderr.contains("995"), "no POP advice:\n{}", r.stderr);

    let r = add("Work", "me@work.example", &["--smtp-ca-file", &ca]).expect(0);
    assert!(
        r.stdout.contains("Testing the outgoing server") && r.stdout.contains("accepted the login"),
        "{}",
        r.stdout
    );
    let r = add("Home", "me@home.example", &["--smtp-pin-sha256", &pin]).expect(0);
    assert!(r.stdout.contains("accepted the login"), "{}", r.stdout);
    let c = popbridge::config::load(&b.config).unwrap();
    let trust = |i: usize| c.accounts[i].smtp.as_ref().map(|s| s.trust.clone()).unwrap();
    assert_eq!(trust(0).ca_file.as_deref(), Some(Path::new(&ca)), "saved in [account.smtp]");
    let pinned = trust(1).pin_sha256.map(|p| p.iter().map(|b| format!("{b:02x}")).collect::<String>());
    assert_eq!(pinned, Some(pin.clone()), "saved in [account.smtp]");

    let s = start(up, b, pop);
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["ann@example.org"], &message("via-ca", "x\r\n")));
    ok(smtplib(
        &s,
        "plain",
        "PLAIN",
        "me",
        "me@home.example",
        &["ann@example.org"],
        &message_from("me@home.example", "via-pin"),
    ));
    let got = s.up.wait_for(2, Duration::from_secs(20));
    let mut from: Vec<&str> = got.iter().map(|r| r.mail_from.as_str()).collect();
    from.sort();
    assert_eq!(from, ["me@home.example", "me@work.example"]);
    assert!(got.iter().all(|r| r.tls && r.auth_user.as_deref() == Some("me@work.example")), "{got:?}");
}

/// Issue 13: a refused SMTP connection during `account add` is explained with the SMTP ports.
/// Before, the advice was "the standard POP3 ports are 995 for TLS and 110".
#[test]
fn a_refused_smtp_connection_during_account_add_names_the_smtp_ports() {
    let pop = FakePop3::start(Script::default());
    let b = Bridge::new();
    let refused = crate::util::refused_port();
    let port = refused.port().to_string();
    let r = account_add(
        &b,
        "Work",
        "me@work.example",
        pop.port(),
        &["--smtp-host", "127.0.0.1", "--smtp-port", &port, "--smtp-tls", "implicit", "--smtp-user", "me@work.example"],
    )
    .expect(3);
    assert!(r.stdout.contains("Testing the outgoing server"), "the POP side passed first: {}", r.stdout);
    assert!(r.stderr.contains(&format!("127.0.0.1:{port}")), "{}", r.stderr);
    assert!(r.stderr.contains("SMTP") && r.stderr.contains("465") && r.stderr.contains("587"), "{}", r.stderr);
    assert!(!r.stderr.contains("995") && !r.stderr.contains("POP3"), "no POP advice:\n{}", r.stderr);
    assert!(!b.run(&["account", "list"]).expect(0).stdout.contains("Work"), "not saved");
}

/// Issue 13: an SMTP server that takes mail without a login. With the default SMTP user (the POP
/// one) `account add` says the server offers no login and names `--smtp-no-auth`; with it, the
/// account is tested, saved without an SMTP user or password, and mail goes out without AUTH.
/// Before, `--smtp-user` always defaulted to the POP user and could not be unset.
#[test]
fn an_smtp_server_without_auth_is_added_with_smtp_no_auth_and_relays() {
    let up = Upstream::start(UpstreamOpts { tls: UpTls::Implicit, ..Default::default() });
    let pop = FakePop3::start(Script::default());
    let b = Bridge::with_listeners();
    let (port, ca) = (up.port.to_string(), up.ca_pem_path.display().to_string());
    let smtp = ["--smtp-host", "127.0.0.1", "--smtp-port", &port, "--smtp-tls", "implicit", "--smtp-ca-file", &ca];
    let r = account_add(&b, "Work", "me@work.example", pop.port(), &smtp).expect(5);
    assert!(r.stderr.contains("does not offer a login") && r.stderr.contains("--smtp-no-auth"), "{}", r.stderr);
    let mut no_auth = smtp.to_vec();
    no_auth.push("--smtp-no-auth");
    let r = account_add(&b, "Work", "me@work.example", pop.port(), &no_auth).expect(0);
    assert!(r.stdout.contains("no login"), "{}", r.stdout);
    let c = popbridge::config::load(&b.config).unwrap();
    let server = c.accounts[0].smtp.clone().unwrap();
    assert!(server.user.is_none() && server.password.is_none(), "no SMTP login saved");
    assert!(c.accounts[0].smtp_password(&server).is_none(), "and not the POP password either");
    assert!(b.run(&["account", "list"]).expect(0).stdout.contains("(no login)"));
    let s = start(up, b, pop);
    let m = message("no-auth", "x\r\n");
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["ann@example.org"], &m));
    let got = s.up.wait_for(1, Duration::from_secs(20));
    assert_eq!((got[0].auth_user.as_deref(), got[0].tls), (None, true), "{got:?}");
    assert_eq!(got[0].data, m);
    assert!(!s.up.log().contains(">> b'AUTH"), "no AUTH was tried");
}

/// Issue 13: the wizard (`account add` on a terminal) sets up the same: it names the SMTP
/// ports, takes "-" for "no login", and uses `--smtp-ca-file` given next to it.
#[test]
fn the_wizard_adds_an_smtp_server_without_auth() {
    let up = Upstream::start(UpstreamOpts { tls: UpTls::Implicit, ..Default::default() });
    let pop = FakePop3::start(Script::default());
    let b = Bridge::new();
    let answers = [
        "Work",
        "me@work.example",
        "",
        "127.0.0.1",
        "plain",
        &pop.port().to_string(),
        "u",
        "p",
        "",
        "127.0.0.1",
        "implicit",
        &up.port.to_string(),
        "-",
    ]
    .join("\n")
        + "\n";
    // `script` gives popbridge a terminal (the wizard runs only on one); the answers go through it.
    let cmd = format!("{} account add --smtp-ca-file {}", env!("CARGO_BIN_EXE_popbridge"), up.ca_pem_path.display());
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("POPBRIDGE_CONFIG", &b.config)
        .env("POPBRIDGE_DATA_DIR", &b.data)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    child.stdin.take().unwrap().write_all(answers.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    for needle in ["[account.smtp]", "465", "587", "no login", "Saved account \"Work\""] {
        assert!(said.contains(needle), "the wizard says {needle:?}:\n{said}");
    }
    let c = popbridge::config::load(&b.config).unwrap();
    let server = c.accounts[0].smtp.clone().expect("an SMTP server");
    assert_eq!((server.port, server.user.is_none()), (up.port, true), "{said}");
    assert_eq!(server.trust.ca_file.as_deref(), Some(up.ca_pem_path.as_path()));
}

/// A Setup around a bridge whose accounts are already added: quick retries, then the daemon.
fn start(up: Upstream, b: Bridge, pop: FakePop3) -> Setup {
    quick_retries(&b);
    let daemon = Some(b.daemon());
    Setup { up, b, daemon, pop }
}

/// A bridge whose account Work (me@work.example) sends through `up` with `--smtp-tls tls`; its
/// daemon started.
fn setup_via(up: Upstream, tls: &str) -> Setup {
    let pop = FakePop3::start(Script::default());
    let b = Bridge::with_listeners();
    add_account_via(&b, "Work", "me@work.example", pop.port(), &up, tls);
    start(up, b, pop)
}

/// The outbox counts in `status --json`: (queued, sent, failed).
fn outbox(s: &Setup) -> (i64, i64, i64) {
    let j = s.b.status_json();
    let n = |k: &str| j["outbox"][k].as_i64().unwrap_or(-1);
    (n("queued"), n("sent"), n("failed"))
}

/// An account that sends through the shared [relay] may send as its own address only once that
/// address is verified: the relay cannot vouch for it.
#[test]
fn a_relay_account_sends_only_once_its_address_is_verified() {
    const RELAY_PW: &str = "relay-secret";
    let up = Upstream::start(UpstreamOpts {
        tls: UpTls::Implicit,
        user: Some("relay-user".into()),
        password: Some(RELAY_PW.into()),
        ..Default::default()
    });
    let pop = FakePop3::start(Script::default());
    let b = Bridge::with_listeners();
    account_add(&b, "Work", "me@work.example", pop.port(), &["--smtp-relay", "--no-test"]).expect(0);
    b.append_config(&format!(
        "\n[relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"implicit\"\nuser = \"relay-user\"\n\
         password_command = \"echo {RELAY_PW}\"\nca_file = \"{}\"\n",
        up.port,
        up.ca_pem_path.display()
    ));
    let s = start(up, b, pop);
    let m = message("via-relay", "x\r\n");

    let out = smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["ann@example.org"], &m);
    assert!(out.starts_with("ERR 550 5.7.1"), "refused before verification: {out}");
    for needle in ["account Work", "[relay]", "popbridge verify send me@work.example"] {
        assert!(out.contains(needle), "the refusal says {needle:?}: {out}");
    }
    assert_eq!(outbox(&s), (0, 0, 0), "nothing was queued");

    // The code goes out through the relay; typed back, it verifies the address.
    s.b.run(&["verify", "send", "me@work.example"]).expect(0);
    let got = s.up.wait_for(1, Duration::from_secs(20));
    assert_eq!(
        (got[0].rcpt_tos.clone(), got[0].auth_user.as_deref()),
        (vec!["me@work.example".to_string()], Some("relay-user"))
    );
    let code = verification_code(&got[0].data);
    s.b.run(&["verify", "confirm", "me@work.example", &code]).expect(0);

    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["ann@example.org"], &m));
    let got = s.up.wait_for(2, Duration::from_secs(20));
    assert_eq!(got[1].mail_from, "me@work.example");
    assert_eq!(got[1].auth_user.as_deref(), Some("relay-user"), "through [relay], with its login");
    assert_eq!(got[1].data, m, "as submitted");
}

/// The account login `me+Work` sends only as Work's addresses, in the envelope and in the From
/// header; the combined login `me` may use every account.
#[test]
fn an_account_login_sends_only_as_that_account() {
    let up = upstream(Faults::default());
    let pop = FakePop3::start(Script::default());
    let home_pop = FakePop3::start(Script::default());
    let b = Bridge::with_listeners();
    b.add_account_sending_through(pop.port(), &up, SMTP_PW);
    add_account_via(&b, "Home", "me@home.example", home_pop.port(), &up, "implicit");
    let s = start(up, b, pop);
    let to = ["ann@example.org"];

    // Home's address works (with the combined login): what follows is about the login, not Home.
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@home.example", &to, &message_from("me@home.example", "home-as-me")));
    let out = smtplib(
        &s,
        "plain",
        "PLAIN",
        "me+Work",
        "me@home.example",
        &to,
        &message_from("me@home.example", "home-as-work"),
    );
    assert!(out.starts_with("ERR 550 5.7.1"), "me+Work may not send as Home: {out}");
    assert!(out.contains("account Home") && out.contains("+Work"), "the refusal says why: {out}");
    let out = smtplib(
        &s,
        "plain",
        "PLAIN",
        "me+Home",
        "me@work.example",
        &to,
        &message_from("me@work.example", "work-as-home"),
    );
    assert!(out.starts_with("ERR 550 5.7.1") && out.contains("account Work"), "nor me+Home as Work: {out}");
    // Work's envelope address with Home's From header: refused at the end of DATA.
    let mut data = message_from("me@home.example", "header-as-work");
    data.extend_from_slice(b".\r\n");
    let out = raw_submission(&s, "me+Work", "", "ann@example.org", &data);
    let last = out.trim_end().lines().last().unwrap_or("").to_string();
    assert!(last.starts_with("550 5.7.1") && last.contains("me@home.example"), "{out}");
    // And Work's own address, with the account login: accepted.
    ok(smtplib(
        &s,
        "plain",
        "PLAIN",
        "me+Work",
        "me@work.example",
        &to,
        &message_from("me@work.example", "work-as-work"),
    ));

    // Only the two accepted messages were queued, and both went out.
    wait_until("both accepted messages sent", Duration::from_secs(20), || outbox(&s) == (0, 2, 0));
    let got: Vec<(String, String)> =
        s.up.received()
            .iter()
            .map(|r| {
                let t = String::from_utf8_lossy(&r.data).into_owned();
                let subject = t.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or("").to_string();
                (r.mail_from.clone(), subject)
            })
            .collect();
    assert_eq!(
        got,
        [("me@home.example".to_string(), "home-as-me".to_string()), ("me@work.example".into(), "work-as-work".into())]
    );
}

/// Issue 13: two accounts with the same From address, only the second with an outgoing server
/// (one mailbox fetched by POP, another that sends): mail from that address goes out through the
/// account that can send. Before, the first account was chosen and MAIL FROM was refused with
/// "account Fetch has no outgoing server".
#[test]
fn a_shared_from_address_is_sent_by_the_account_that_can_send() {
    let up = upstream(Faults::default());
    let pop = FakePop3::start(Script::default());
    let send_pop = FakePop3::start(Script::default());
    let b = Bridge::with_listeners();
    account_add(&b, "Fetch", "me@work.example", pop.port(), &["--no-test"]).expect(0);
    add_account_via(&b, "Send", "me@work.example", send_pop.port(), &up, "implicit");
    let s = start(up, b, pop);
    let m = message("shared-from", "x\r\n");
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["ann@example.org"], &m));
    let got = s.up.wait_for(1, Duration::from_secs(20));
    assert_eq!(got[0].mail_from, "me@work.example");
    assert_eq!(got[0].auth_user.as_deref(), Some("me@work.example"), "through Send's server");
    assert_eq!(got[0].data, m);
    // The account login of the POP-only account still may not send: it names the fix.
    let out = smtplib(&s, "plain", "PLAIN", "me+Fetch", "me@work.example", &["ann@example.org"], &m);
    assert!(out.starts_with("ERR 550 5.7.1") && out.contains("no outgoing server"), "{out}");
}

/// The upstream SMTP password (and the local one) never reach the daemon's log, even at TRACE, nor
/// an error message — not even when the upstream quotes the credentials back in its refusal.
#[test]
fn the_upstream_password_is_never_logged_or_shown() {
    use base64::Engine;
    const UP_PW: &str = "Upstream-Pa55word-7c1e";
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let up = Upstream::start(UpstreamOpts {
        tls: UpTls::Implicit,
        user: Some("me@work.example".into()),
        password: Some(UP_PW.into()),
        ..Default::default()
    });
    let pop = FakePop3::start(Script::default());
    let b = Bridge::with_listeners();
    b.add_account_sending_through(pop.port(), &up, UP_PW);
    // The password lives only in a file: no config line or command line holds it.
    let pw_file = b.dir.path().join("smtp-password");
    std::fs::write(&pw_file, format!("{UP_PW}\n")).unwrap();
    let text = std::fs::read_to_string(&b.config).unwrap();
    let echo = format!("echo {UP_PW}");
    assert!(text.contains(&echo), "{text}");
    std::fs::write(&b.config, text.replace(&echo, &format!("cat {}", pw_file.display()))).unwrap();
    quick_retries(&b);
    let daemon = Some(b.daemon_with_env(&[("RUST_LOG", "trace")]));
    let s = Setup { up, b, daemon, pop };

    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["ann@example.org"], &message("fine", "x\r\n")));
    let got = s.up.wait_for(1, Duration::from_secs(20));
    assert_eq!(got[0].auth_user.as_deref(), Some("me@work.example"), "popbridge logged in with the password");

    // Now the upstream refuses every login, quoting the credentials it was given.
    s.up.set_faults(Faults { echo_auth: true, ..Faults::default() });
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["ann@example.org"], &message("refused", "x\r\n")));
    let echoed = || s.up.log().matches("fault: echo_auth").count();
    wait_until("two refused logins, quoted back", Duration::from_secs(30), || echoed() >= 2);
    assert!(s.up.log().contains(&format!("535 5.7.8 cannot accept {}", b64(&format!("\0me@work.example\0{UP_PW}")))));
    let status = s.b.run(&["status", "--json"]).expect(0).stdout;
    assert!(status.contains("rejected the SMTP user name or password"), "the error is shown: {status}");
    assert!(status.contains("<redacted>"), "the quoted credentials were seen, and hidden: {status}");
    let test = s.b.run(&["account", "test", "Work"]);
    let test = format!("{}{}", test.stdout, test.stderr);
    assert!(test.contains("rejected the SMTP user name or password"), "{test}");
    let log = s.daemon.as_ref().unwrap().log();
    assert!(log.contains(" TRACE ") && log.contains("DEBUG popbridge::smtp::upstream"), "logged at TRACE:\n{log}");
    assert!(log.contains("rejected the SMTP user name or password"), "the refusal is in the log:\n{log}");

    let secrets = [
        ("the upstream password", UP_PW.to_string()),
        ("AUTH PLAIN to the upstream", b64(&format!("\0me@work.example\0{UP_PW}"))),
        ("AUTH LOGIN to the upstream", b64(UP_PW)),
        ("the local password", LOCAL_PASSWORD.to_string()),
        ("AUTH PLAIN to popbridge", b64(&format!("\0me\0{LOCAL_PASSWORD}"))),
    ];
    for (what, secret) in &secrets {
        for (place, text) in [("the daemon log", &log), ("status --json", &status), ("account test", &test)] {
            assert!(!text.contains(secret.as_str()), "{what} ({secret}) appears in {place}:\n{text}");
        }
    }
}

/// Relaying through an upstream that requires STARTTLS: TLS (verified with the configured CA)
/// before AUTH and the mail.
#[test]
fn relay_through_an_upstream_that_requires_starttls() {
    let s = setup_via(upstream_with(UpTls::StartTls, Faults::default()), "starttls");
    let m = message("over-starttls", "Sent after STARTTLS.\r\n");
    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["ann@example.org"], &m));
    let got = s.up.wait_for(1, Duration::from_secs(20));
    assert!(got[0].tls, "the transaction ran over TLS: {got:?}");
    assert!(got[0].tls_version.as_deref().is_some_and(|v| v.starts_with("TLSv1.")), "{got:?}");
    assert_eq!(
        got[0].auth_user.as_deref(),
        Some("me@work.example"),
        "AUTH after STARTTLS (the upstream refuses it before)"
    );
    assert_eq!(got[0].data, m);
    let log = s.up.log();
    let (starttls, auth) = (log.find(">> b'STARTTLS'"), log.find(">> b'AUTH"));
    assert!(starttls.is_some() && starttls < auth.or(Some(usize::MAX)), "STARTTLS first:\n{log}");
}

/// `tls = "starttls"` against a server that does not offer STARTTLS: refused with a clear message,
/// retried later, never sent in the clear (no AUTH, no MAIL), and not bounced (the user can fix it).
#[test]
fn an_upstream_without_starttls_is_refused_not_used_in_the_clear() {
    // It would take AUTH and mail in the clear.
    let s = setup_via(upstream_with(UpTls::None, Faults::default()), "starttls");

    let test = s.b.run(&["account", "test", "Work"]);
    let said = format!("{}{}", test.stdout, test.stderr);
    assert_eq!(test.code, 4, "a TLS problem (exit code 4): {said}");
    assert!(
        said.contains(&s.up.addr()) && said.contains("does not offer STARTTLS") && said.contains("refuses"),
        "{said}"
    );

    ok(smtplib(&s, "plain", "PLAIN", "me", "me@work.example", &["ann@example.org"], &message("clear", "x\r\n")));
    // Two attempts by the queue (and one by `account test`): all stop after EHLO.
    wait_until("two relay attempts", Duration::from_secs(30), || s.up.log().matches(">> b'EHLO").count() >= 3);
    let j = s.b.status_json();
    let err = j["outbox"]["last_error"].as_str().unwrap_or("").to_string();
    assert!(err.contains("does not offer STARTTLS") && err.contains("unencrypted"), "{j}");
    assert_eq!(
        (j["outbox"]["queued"].as_i64(), j["outbox"]["failed"].as_i64()),
        (Some(1), Some(0)),
        "kept, not bounced: {j}"
    );
    let log = s.up.log();
    assert!(!log.contains(">> b'AUTH") && !log.contains(">> b'MAIL"), "nothing after EHLO in the clear:\n{log}");
    assert!(s.up.received().is_empty() && s.up.attempts().is_empty());
    assert!(mailbox(&s, "INBOX").is_empty(), "no bounce notice");
}

#[allow(dead_code)]
fn unused(_: &Path) {}
