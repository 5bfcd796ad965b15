//! Provider-aware setup (issue 16): `account discover` finds the servers from the built-in table
//! (no network), from a Thunderbird autoconfig file served over HTTP, and from SRV records in a
//! real DNS server (dnslib); Gmail's POP — at most N messages listed per session, each hidden
//! once downloaded — is fetched whole in one `popbridge fetch`, nothing twice; `account test`
//! explains LOGIN-DELAY.

use crate::util::accounts::PopAccount;
use crate::util::dns_stub::DnsStub;
use crate::util::fake_pop3::{FakeMessage, FakePop3, Script};
use crate::util::http_stub::HttpStub;
use crate::util::terminal::Terminal;
use crate::util::{Bridge, Run, refused_port};

/// `popbridge ARGS` with these environment variables.
fn run_env(b: &Bridge, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = b.cmd(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run popbridge");
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn known_providers_come_from_the_built_in_table_without_any_lookup() {
    let b = Bridge::new();
    // Both settings point at places that would show a lookup: the HTTP stub records every
    // request, the resolver port refuses.
    let http = HttpStub::start(&[]);
    let dns = refused_port();
    let resolver = format!("127.0.0.1:{}", dns.port());
    let template = http.url("/{domain}.xml");
    let env = [("POPBRIDGE_AUTOCONFIG_URL", template.as_str()), ("POPBRIDGE_RESOLVER", resolver.as_str())];

    let r = run_env(&b, &["account", "discover", "fred@gmail.com"], &env).expect(0);
    assert!(r.stdout.contains("built-in table: Gmail (gmail.com)"), "{}", r.stdout);
    assert!(r.stdout.contains("POP3 pop.gmail.com:995 TLS (implicit), user fred@gmail.com"), "{}", r.stdout);
    assert!(r.stdout.contains("autoconfig and DNS were not looked up"), "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "popbridge account add --name Gmail --email fred@gmail.com --pop-host pop.gmail.com --pop-port 995 --pop-tls implicit --pop-user fred@gmail.com --smtp-host smtp.gmail.com --smtp-port 465 --smtp-tls implicit"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Enable POP"), "what to do at Gmail first: {}", r.stdout);
    assert!(r.stdout.contains("at most about 250 messages per POP session"), "{}", r.stdout);

    let r = run_env(&b, &["account", "discover", "Someone@Hotmail.com"], &env).expect(0);
    assert!(r.stdout.contains("POP3 outlook.office365.com:995 TLS (implicit)"), "{}", r.stdout);
    assert!(r.stdout.contains("SMTP smtp-mail.outlook.com:587 STARTTLS"), "{}", r.stdout);
    assert!(r.stdout.contains("sign-in: OAuth2 only (--oauth microsoft"), "{}", r.stdout);
    assert!(r.stdout.contains("--oauth microsoft --oauth-client-id YOUR_CLIENT_ID"), "{}", r.stdout);
    assert!(r.stdout.contains("Let devices and apps use POP"), "{}", r.stdout);

    let r = run_env(&b, &["account", "discover", "fred@icloud.com"], &env).expect(1);
    assert!(r.stdout.contains("offers no POP3"), "{}", r.stdout);
    assert!(!r.stdout.contains("account add --"), "no command line for a provider without POP: {}", r.stdout);

    assert!(http.requests().is_empty(), "nothing was looked up: {:?}", http.requests());
    let r = run_env(&b, &["account", "discover", "not-an-address"], &env).expect(2);
    assert!(r.stderr.contains("is not an email address"), "{}", r.stderr);
}

const EXAMPLE_ORG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="example.org">
    <domain>example.org</domain>
    <displayName>Example Org Mail</displayName>
    <incomingServer type="imap">
      <hostname>imap.example.org</hostname><port>993</port><socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username><authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>pop.%EMAILDOMAIN%</hostname>
      <port>995</port>
      <socketType>SSL</socketType>
      <username>%EMAILLOCALPART%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.example.org</hostname>
      <port>587</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </outgoingServer>
  </emailProvider>
  <enable visiturl="https://mail.example.org/settings">
    <instruction>Allow POP access in the web mail settings</instruction>
  </enable>
</clientConfig>
"#;

#[test]
fn autoconfig_from_a_local_http_server() {
    let b = Bridge::new();
    let http = HttpStub::start(&[("/example.org/config-v1.1.xml", "text/xml", EXAMPLE_ORG.as_bytes())]);
    // Two places, as the built-in list has: the first answers 404, the second has the file.
    let templates = format!(
        "{} {}",
        http.url("/autoconfig/{domain}/mail/config-v1.1.xml?emailaddress={email}"),
        http.url("/{domain}/config-v1.1.xml?emailaddress={email}")
    );
    let dns = DnsStub::start("");
    let env = [("POPBRIDGE_AUTOCONFIG_URL", templates.as_str()), ("POPBRIDGE_RESOLVER", &dns.addr())];
    let r = run_env(&b, &["account", "discover", "fred@example.org"], &env).expect(0);
    let mut requests = http.requests();
    requests.sort();
    assert_eq!(
        requests,
        [
            "GET /autoconfig/example.org/mail/config-v1.1.xml?emailaddress=fred%40example.org HTTP/1.1",
            "GET /example.org/config-v1.1.xml?emailaddress=fred%40example.org HTTP/1.1",
        ],
        "both places asked, with the address as Thunderbird sends it"
    );
    let first = http.url("/autoconfig/example.org/mail/config-v1.1.xml?emailaddress=fred%40example.org");
    let second = http.url("/example.org/config-v1.1.xml?emailaddress=fred%40example.org");
    assert!(r.stdout.contains(&format!("autoconfig {first}: HTTP 404")), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("autoconfig {second}: found (Example Org Mail)")), "{}", r.stdout);
    assert!(r.stdout.contains("POP3 pop.example.org:995 TLS (implicit), user fred, login: password"), "{}", r.stdout);
    assert!(r.stdout.contains("SMTP smtp.example.org:587 STARTTLS, user fred@example.org"), "{}", r.stdout);
    assert!(r.stdout.contains("DNS SRV _pop3s._tcp.example.org: none"), "the SRV lookups ran too: {}", r.stdout);
    assert!(r.stdout.contains(&format!("From autoconfig {second}:")), "{}", r.stdout);
    assert!(
        r.stdout.contains("Allow POP access in the web mail settings: https://mail.example.org/settings"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "--email fred@example.org --pop-host pop.example.org --pop-port 995 --pop-tls implicit --pop-user fred --smtp-host smtp.example.org --smtp-port 587 --smtp-tls starttls --smtp-user fred@example.org"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn srv_records_from_a_local_dns_server() {
    let b = Bridge::new();
    let dns = DnsStub::start(
        "_pop3s._tcp.example.net. 60 IN SRV 10 20 995 pop.example.net.\n\
         _pop3s._tcp.example.net. 60 IN SRV 5 0 1995 pop-primary.example.net.\n\
         _pop3s._tcp.example.net. 60 IN SRV 10 80 995 pop2.example.net.\n\
         _pop3._tcp.example.net. 60 IN SRV 0 0 0 .\n\
         _submission._tcp.example.net. 60 IN SRV 0 1 587 mail.hoster.example.\n\
         workspace.example. 60 IN MX 10 alt1.aspmx.l.google.com.\n\
         workspace.example. 60 IN MX 5 aspmx.l.google.com.\n\
         contoso.example. 60 IN MX 0 contoso-example.mail.protection.outlook.com.\n",
    );
    let http = HttpStub::start(&[]);
    let template = http.url("/{domain}.xml");
    let env = [("POPBRIDGE_AUTOCONFIG_URL", template.as_str()), ("POPBRIDGE_RESOLVER", &dns.addr())];
    let r = run_env(&b, &["account", "discover", "fred@example.net"], &env).expect(0);
    assert!(r.stdout.contains(&format!("autoconfig {}: HTTP 404", http.url("/example.net.xml"))), "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "DNS SRV _pop3s._tcp.example.net: pop-primary.example.net:1995 (priority 5, weight 0), pop2.example.net:995 (priority 10, weight 80), pop.example.net:995 (priority 10, weight 20)"
        ),
        "lowest priority first, then the heaviest weight: {}",
        r.stdout
    );
    assert!(r.stdout.contains("DNS SRV _pop3._tcp.example.net: not offered"), "{}", r.stdout);
    assert!(r.stdout.contains("DNS SRV _submissions._tcp.example.net: none"), "{}", r.stdout);
    assert!(r.stdout.contains("From DNS SRV records (RFC 6186):"), "{}", r.stdout);
    assert!(r.stdout.contains("mail.hoster.example is outside example.net"), "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "--pop-host pop-primary.example.net --pop-port 1995 --pop-tls implicit --pop-user fred@example.net --smtp-host mail.hoster.example --smtp-port 587 --smtp-tls starttls"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("DNS MX example.net: none"), "{}", r.stdout);
    // A domain whose mail Google hosts (Workspace), and one at Microsoft 365: found by the MX.
    let r = run_env(&b, &["account", "discover", "fred@workspace.example"], &env).expect(0);
    assert!(
        r.stdout.contains("DNS MX workspace.example: aspmx.l.google.com (Gmail), alt1.aspmx.l.google.com (Gmail)"),
        "most preferred first: {}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("From the domain's mail exchanger aspmx.l.google.com: mail at this domain is hosted by Gmail:"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("--pop-host pop.gmail.com --pop-port 995 --pop-tls implicit --pop-user fred@workspace.example"),
        "{}",
        r.stdout
    );
    let r = run_env(&b, &["account", "discover", "fred@contoso.example"], &env).expect(0);
    assert!(r.stdout.contains("hosted by Microsoft 365"), "{}", r.stdout);
    assert!(
        r.stdout.contains("--pop-host outlook.office365.com --pop-port 995 --pop-tls implicit --pop-user fred@contoso.example --smtp-host smtp.office365.com --smtp-port 587 --smtp-tls starttls --oauth microsoft"),
        "{}",
        r.stdout
    );
    // Nothing anywhere: said, exit code 1.
    let r = run_env(&b, &["account", "discover", "fred@nothing.example"], &env).expect(1);
    assert!(r.stdout.contains("DNS SRV _pop3s._tcp.nothing.example: none"), "{}", r.stdout);
    assert!(r.stdout.contains("No POP3 server found for nothing.example"), "{}", r.stdout);
}

fn gmail_like(n: usize) -> Vec<FakeMessage> {
    (1..=n)
        .map(|i| {
            let data = format!(
                "From: sender{i}@example.com\r\nTo: me@gmail.example\r\nSubject: message {i}\r\nMessage-ID: <g{i}@example.com>\r\nDate: Tue, 4 Mar 2025 09:{:02}:00 +0000\r\n\r\nBody {i}.\r\n",
                i % 60
            );
            FakeMessage::new(&format!("GmailId{i:05x}"), data.into_bytes())
        })
        .collect()
}

fn retrs(f: &FakePop3) -> Vec<String> {
    f.commands().into_iter().filter(|c| c.starts_with("RETR ")).collect()
}

#[test]
fn a_server_listing_250_per_session_is_fetched_whole_in_one_fetch_and_nothing_twice() {
    let msgs = gmail_like(600);
    // Gmail's own CAPA lines: it announces a LOGIN-DELAY, and EXPIRE 0 (it hides what was taken).
    let f = FakePop3::start(Script {
        messages: msgs.clone(),
        per_session: Some(250),
        extra_capa: vec!["EXPIRE 0".into(), "LOGIN-DELAY 300".into()],
        ..Script::default()
    });
    let b = Bridge::new();
    b.add_pop_account(&PopAccount::fake(f.port()), &["--no-test"]).expect(0);
    let r = b.run(&["fetch", "Fake"]).expect(0);
    assert!(r.stdout.contains("Fake: 600 new message(s)"), "{}\n{}", r.stdout, r.stderr);
    // 250 + 250 + 100, then a session that lists nothing new.
    assert_eq!(f.sessions(), 4);
    assert_eq!(retrs(&f).len(), 600, "each message downloaded once");
    let want: Vec<Vec<u8>> = msgs.iter().map(|m| m.data.clone()).collect();
    assert_eq!(crate::util::sorted(b.messages("Fake")), crate::util::sorted(want), "all 600, each once");
    assert_eq!(f.remaining().len(), 600, "the server keeps its copies (delete = never)");
    assert!(f.dele_requested().is_empty());

    // Later: only new mail is listed; nothing is fetched twice.
    let r = b.run(&["fetch", "Fake"]).expect(0);
    assert!(r.stdout.contains("Fake: 0 new message(s)"), "{}", r.stdout);
    f.add_messages(gmail_like(603)[600..].to_vec());
    let r = b.run(&["fetch", "Fake"]).expect(0);
    assert!(r.stdout.contains("Fake: 3 new message(s)"), "{}", r.stdout);
    assert_eq!(b.messages("Fake").len(), 603);
    assert_eq!(retrs(&f).len(), 603);
    assert_eq!(f.sessions(), 6, "a short listing is complete: one session per fetch");
}

#[test]
fn recent_mode_lists_everything_again_and_popbridge_stores_each_message_once() {
    let msgs = gmail_like(40);
    // USER/PASS (no SASL), as recent:USER is a user name.
    let f = FakePop3::start(Script { messages: msgs, per_session: Some(250), sasl: vec![], ..Script::default() });
    // Another POP client in normal mode takes everything first (Gmail then hides it from it).
    let other = Bridge::new();
    other.add_pop_account(&PopAccount::fake(f.port()), &["--no-test"]).expect(0);
    other.run(&["fetch", "Fake"]).expect(0);
    assert_eq!(other.messages("Fake").len(), 40);
    let b = Bridge::new();
    b.add_pop_account(&PopAccount { user: "recent:u", ..PopAccount::fake(f.port()) }, &["--no-test"]).expect(0);
    let r = b.run(&["fetch", "Fake"]).expect(0);
    assert!(r.stdout.contains("Fake: 40 new message(s)"), "recent mode shows what the other client took: {}", r.stdout);
    for _ in 0..2 {
        let r = b.run(&["fetch", "Fake"]).expect(0);
        assert!(
            r.stdout.contains("Fake: 0 new message(s)") && r.stdout.contains("the server holds 40 message(s)"),
            "{}",
            r.stdout
        );
    }
    assert_eq!(b.messages("Fake").len(), 40, "listed again every session, stored once");
}

#[test]
fn account_test_explains_login_delay() {
    let f = FakePop3::start(Script {
        messages: gmail_like(2),
        extra_capa: vec!["LOGIN-DELAY 900".into()],
        ..Script::default()
    });
    let b = Bridge::new();
    b.add_pop_account(&PopAccount::fake(f.port()), &["--no-test"]).expect(0);
    let r = b.run(&["account", "test", "Fake"]).expect(0);
    assert!(
        r.stdout.contains("LOGIN-DELAY 900: the server wants at least 15m between logins. popbridge's schedule never fetches this account more often than that (its interval is 5m)"),
        "{}",
        r.stdout
    );
}

/// `account add` on a terminal (in a pseudo-terminal, tests/util/terminal.rs): right
/// after the address, the wizard shows what autoconfig found and, after a yes, uses it — the POP
/// server questions are not asked, the account is tested and saved with the found servers.
#[test]
fn the_wizard_proposes_what_autoconfig_found_and_uses_it_after_yes() {
    let f = FakePop3::start(Script {
        user: "fred".into(),
        pass: "pw".into(),
        messages: gmail_like(3),
        ..Script::default()
    });
    let xml = format!(
        r#"<clientConfig version="1.1"><emailProvider id="corp.example"><displayName>Corp Mail</displayName>
<incomingServer type="pop3"><hostname>127.0.0.1</hostname><port>{}</port><socketType>plain</socketType>
<username>%EMAILLOCALPART%</username><authentication>password-cleartext</authentication></incomingServer>
</emailProvider></clientConfig>"#,
        f.port()
    );
    let http = HttpStub::start(&[("/corp.example.xml", "text/xml", xml.as_bytes())]);
    let dns = DnsStub::start("");
    let b = Bridge::new();
    let env = [("POPBRIDGE_AUTOCONFIG_URL", http.url("/{domain}.xml")), ("POPBRIDGE_RESOLVER", dns.addr())];
    let mut t = Terminal::account_add_with(&b, &[], &env);
    t.answer("Account name", "Corp");
    t.answer("Your email address", "fred@corp.example");
    t.answer("Use these settings? [Y/n]: ", "");
    t.answer("Reply-To address", "");
    t.answer("Password: ", "pw");
    t.answer("Delete policy", "");
    t.answer("SMTP server host name", "");
    let (code, screen) = t.exit_code();
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("Looking up the servers for fred@corp.example"), "{screen}");
    assert!(screen.contains(&format!("From autoconfig {}:", http.url("/corp.example.xml"))), "{screen}");
    assert!(screen.contains(&format!("incoming: POP3 127.0.0.1:{} no encryption, user fred", f.port())), "{screen}");
    assert!(!screen.contains("POP server host name"), "not asked once the proposal was taken: {screen}");
    assert!(screen.contains("Saved account \"Corp\""), "{screen}");
    let cfg = popbridge::config::load(&b.config).expect("config");
    let a = cfg.account("Corp").expect("the account was saved");
    assert_eq!((a.pop.host.as_str(), a.pop.port, a.pop.user.as_str()), ("127.0.0.1", f.port(), "fred"));
    assert_eq!(a.pop.tls, popbridge::config::TlsMode::Plain);
}

/// A server that enforces the LOGIN-DELAY it announces refuses the further session at once
/// (`-ERR [LOGIN-DELAY]`): that fetch keeps what it got and says why, and the rest follows in
/// later cycles — all 600, none twice.
#[test]
fn an_enforced_login_delay_ends_the_cycle_and_the_rest_follows_later() {
    let msgs = gmail_like(600);
    let delay = std::time::Duration::from_secs(2);
    let f = FakePop3::start(Script {
        messages: msgs.clone(),
        per_session: Some(250),
        extra_capa: vec!["LOGIN-DELAY 2".into()],
        enforce_login_delay: Some(delay),
        ..Script::default()
    });
    let b = Bridge::new();
    b.add_pop_account(&PopAccount::fake(f.port()), &["--no-test"]).expect(0);
    for (i, want) in [250, 250, 100].into_iter().enumerate() {
        if i > 0 {
            std::thread::sleep(delay + std::time::Duration::from_millis(300));
        }
        let r = b.run(&["fetch", "Fake"]).expect(0);
        assert!(r.stdout.contains(&format!("Fake: {want} new message(s)")), "fetch {i}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("a further session") && r.stderr.contains("LOGIN-DELAY"),
            "fetch {i} says why it stopped: {}",
            r.stderr
        );
        assert_eq!(f.login_delay_refusals(), i + 1);
    }
    let j = b.status_json();
    assert_eq!(crate::util::account(&j, "Fake")["state"], "active", "a refused further session is no failure: {j}");
    let want: Vec<Vec<u8>> = msgs.iter().map(|m| m.data.clone()).collect();
    assert_eq!(crate::util::sorted(b.messages("Fake")), crate::util::sorted(want));
    assert_eq!(retrs(&f).len(), 600, "nothing downloaded twice");
}
