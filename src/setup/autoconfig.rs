//! Thunderbird's autoconfig, client side: fetch a provider's `config-v1.1.xml` and read its POP3
//! and SMTP servers (format: wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat).
//! `crate::autoconfig` is the other direction (it writes such files for popbridge's own servers).
//!
//! Where it looks, as Thunderbird does for a domain's own configuration (with `?emailaddress=`):
//! `https://autoconfig.DOMAIN/mail/config-v1.1.xml`, then
//! `https://DOMAIN/.well-known/autoconfig/mail/config-v1.1.xml`. `POPBRIDGE_AUTOCONFIG_URL`
//! replaces that list (ISPs and companies that publish theirs elsewhere): URL templates separated
//! by spaces, with `{domain}` and `{email}` (URL-encoded) filled in. Only https is used, except
//! http to a loopback address. Thunderbird's plain-http fallback is not: an answer anyone on the
//! path could have written would choose where the password goes.

use std::time::Duration;

use crate::config::TlsMode;

/// The file is small (Thunderbird's ISPDB entries are a few KiB); more is not a config file.
pub const MAX_BYTES: usize = 256 * 1024;
/// A provider that publishes autoconfig answers at once; the wizard should not hang on one that
/// does not.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed (each must again be https, or http to loopback).
pub const MAX_REDIRECTS: usize = 3;

/// The environment variable that replaces the built-in list of places to look.
pub const ENV_URL: &str = "POPBRIDGE_AUTOCONFIG_URL";

/// The built-in places, as templates.
pub const DEFAULT_TEMPLATES: [&str; 2] = [
    "https://autoconfig.{domain}/mail/config-v1.1.xml?emailaddress={email}",
    "https://{domain}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={email}",
];

/// How a server wants the client to log in (`<authentication>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `password-cleartext` (over TLS) or `password-encrypted` (CRAM-MD5, APOP): a password.
    Password,
    OAuth2,
    /// `none` (SMTP without a login), `client-IP-address`.
    None,
    /// What popbridge does not do (NTLM, GSSAPI, TLS-client-cert), as written.
    Other(String),
}

impl Auth {
    fn parse(s: &str) -> Auth {
        match s.trim() {
            "password-cleartext" | "plain" | "password-encrypted" | "secure" => Auth::Password,
            "OAuth2" => Auth::OAuth2,
            "none" | "client-IP-address" => Auth::None,
            other => Auth::Other(other.to_string()),
        }
    }
    pub fn describe(&self) -> String {
        match self {
            Auth::Password => "password".into(),
            Auth::OAuth2 => "OAuth2".into(),
            Auth::None => "no login".into(),
            Auth::Other(s) => s.clone(),
        }
    }
}

/// One server from the file, placeholders filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// `None` when the file gives no user name (the email address is the usual default).
    pub user: Option<String>,
    /// In the file's order of preference.
    pub auth: Vec<Auth>,
}

/// The OAuth2 endpoints a provider publishes (`<oAuth2>`, a Thunderbird extension).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OAuthEndpoints {
    pub issuer: Option<String>,
    pub scope: Vec<String>,
    pub auth_url: Option<String>,
    pub token_url: Option<String>,
}

/// What a `config-v1.1.xml` says about POP3 and SMTP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientConfig {
    pub display_name: Option<String>,
    /// `<incomingServer type="pop3">`, in the file's order (the first is preferred).
    pub pop: Vec<Server>,
    pub smtp: Vec<Server>,
    /// Incoming servers of other types (imap, exchange): said when there is no POP3.
    pub other_incoming: Vec<String>,
    pub oauth: Option<OAuthEndpoints>,
    /// `<enable visiturl>`: where the user switches POP/IMAP on, with its instruction.
    pub enable: Option<(String, String)>,
    /// Servers left out, and why (a bad port, an unknown socketType).
    pub skipped: Vec<String>,
}

/// The address's parts, for the placeholders.
#[derive(Debug, Clone)]
pub struct Address<'a> {
    pub email: &'a str,
    pub local: &'a str,
    pub domain: &'a str,
}

/// Text from the file as it may be shown on a terminal: control characters (escape sequences,
/// line breaks) become U+FFFD — the file is anyone's who answers for the domain.
pub(crate) fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect()
}

fn child_text(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    node.children()
        .find(|c| c.has_tag_name(name))
        .and_then(|c| c.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(clean)
}

/// `%EMAILADDRESS%`, `%EMAILLOCALPART%`, `%EMAILDOMAIN%` filled in; `None` if another placeholder
/// is left (`%REALNAME%` makes no sense in a user name) or the result is empty.
fn fill(template: &str, a: &Address<'_>) -> Option<String> {
    let s = template
        .replace("%EMAILADDRESS%", a.email)
        .replace("%EMAILLOCALPART%", a.local)
        .replace("%EMAILDOMAIN%", a.domain);
    (!s.is_empty() && !s.contains('%')).then_some(s)
}

/// A host name as it may be used: letters, digits, dots, hyphens (an IP address passes too).
pub(crate) fn plausible_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':' || c == '_')
}

fn server(node: roxmltree::Node<'_, '_>, a: &Address<'_>, skipped: &mut Vec<String>) -> Option<Server> {
    let kind = clean(node.attribute("type").unwrap_or("?"));
    let host_raw = child_text(node, "hostname").unwrap_or_default();
    let host = fill(&host_raw, a).unwrap_or_default();
    if !plausible_host(&host) {
        skipped.push(format!("a {kind} server with the host name \"{host_raw}\""));
        return None;
    }
    let port = match child_text(node, "port").map(|p| p.parse::<u16>()) {
        Some(Ok(p)) if p > 0 => p,
        _ => {
            skipped.push(format!("{kind} server {host}: no usable <port>"));
            return None;
        }
    };
    let tls = match child_text(node, "socketType").as_deref() {
        Some("SSL") => TlsMode::Implicit,
        Some("STARTTLS") => TlsMode::StartTls,
        Some("plain") => TlsMode::Plain,
        other => {
            skipped.push(format!("{kind} server {host}:{port}: socketType {}", other.unwrap_or("(none)")));
            return None;
        }
    };
    // A user name with a character a POP command cannot carry is no user name.
    let user = child_text(node, "username").and_then(|u| fill(&u, a)).filter(|u| !u.contains('\u{FFFD}'));
    let auth = node
        .children()
        .filter(|c| c.has_tag_name("authentication"))
        .filter_map(|c| c.text())
        .map(|t| Auth::parse(&clean(t)))
        .collect();
    Some(Server { host, port, tls, user, auth })
}

/// Reads a `config-v1.1.xml`. Errors say what is wrong with the document as a whole; servers the
/// file describes badly are left out and listed in `skipped`.
pub fn parse(xml: &str, a: &Address<'_>) -> Result<ClientConfig, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("not XML: {e}"))?;
    let root = doc.root_element();
    if !root.has_tag_name("clientConfig") {
        return Err(format!("not a Thunderbird autoconfig file (its root element is <{}>)", root.tag_name().name()));
    }
    let mut cfg = ClientConfig::default();
    for provider in root.children().filter(|c| c.has_tag_name("emailProvider")) {
        if cfg.display_name.is_none() {
            cfg.display_name = child_text(provider, "displayName");
        }
        for s in provider.children().filter(|c| c.has_tag_name("incomingServer")) {
            match s.attribute("type") {
                Some("pop3") => cfg.pop.extend(server(s, a, &mut cfg.skipped)),
                Some(t) => cfg.other_incoming.push(clean(t)),
                None => {}
            }
        }
        for s in provider.children().filter(|c| c.has_tag_name("outgoingServer")) {
            if s.attribute("type") == Some("smtp") {
                cfg.smtp.extend(server(s, a, &mut cfg.skipped));
            }
        }
    }
    // <enable> and <oAuth2> sit beside <emailProvider> (ISPDB) or inside it: both are read.
    for node in root.descendants() {
        if node.has_tag_name("oAuth2") && cfg.oauth.is_none() {
            cfg.oauth = Some(OAuthEndpoints {
                issuer: child_text(node, "issuer"),
                scope: child_text(node, "scope")
                    .map(|s| s.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default(),
                auth_url: child_text(node, "authURL"),
                token_url: child_text(node, "tokenURL"),
            });
        }
        if node.has_tag_name("enable")
            && cfg.enable.is_none()
            && let Some(url) = node.attribute("visiturl")
        {
            cfg.enable = Some((clean(url), child_text(node, "instruction").unwrap_or_default()));
        }
    }
    if cfg.pop.is_empty() && cfg.smtp.is_empty() && cfg.other_incoming.is_empty() {
        return Err("it describes no server".into());
    }
    Ok(cfg)
}

/// Percent-encoding for a query value (RFC 3986 unreserved characters stay).
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The templates to try: `POPBRIDGE_AUTOCONFIG_URL`'s (space-separated), else the built-in ones.
pub fn templates(env: Option<&str>) -> Vec<String> {
    match env.map(str::trim).filter(|s| !s.is_empty()) {
        Some(list) => list.split_whitespace().map(str::to_string).collect(),
        None => DEFAULT_TEMPLATES.iter().map(|s| s.to_string()).collect(),
    }
}

/// A template with `{domain}` and `{email}` filled in.
pub fn expand(template: &str, a: &Address<'_>) -> String {
    template.replace("{domain}", a.domain).replace("{email}", &url_encode(a.email))
}

/// https, or http to a loopback address (a local server, tests).
pub fn allowed(url: &reqwest::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => url
            .host_str()
            .is_some_and(|h| crate::config::is_loopback_host(h.trim_start_matches('[').trim_end_matches(']'))),
        _ => false,
    }
}

/// What one place answered.
#[derive(Debug)]
pub enum Outcome {
    Found(Box<ClientConfig>),
    /// Nothing usable there: why, in words (no server, 404, not XML, too big, not allowed).
    Nothing(String),
}

/// The HTTP client for autoconfig lookups: popbridge's own verified rustls configuration (the
/// system's roots, as for every upstream server), short timeouts, few redirects.
pub fn client() -> crate::error::Result<reqwest::Client> {
    let up = crate::net::tls::upstream(&crate::config::TrustSettings { ca_file: None, pin_sha256: None })?;
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if allowed(attempt.url()) {
            attempt.follow()
        } else {
            attempt.error("a redirect to a plaintext (http) address")
        }
    });
    reqwest::Client::builder()
        .use_preconfigured_tls((*up.config).clone())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TIMEOUT)
        .redirect(policy)
        .user_agent(concat!("popbridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::error::Error::other(format!("cannot set up the HTTP client: {}", chain(&e))))
}

/// An error with its causes, for the user (reqwest's own message alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Fetches and reads one place.
pub async fn lookup(client: &reqwest::Client, url: &str, a: &Address<'_>) -> Outcome {
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Outcome::Nothing(format!("not a URL ({e})")),
    };
    if !allowed(&parsed) {
        return Outcome::Nothing("not looked up: only https is used (or http to a loopback address)".into());
    }
    let mut resp = match client.get(parsed).send().await {
        Ok(r) => r,
        // reqwest's own message repeats the URL shown beside it: its causes say what happened.
        Err(e) => {
            let why = std::error::Error::source(&e).map(chain).unwrap_or_else(|| e.to_string());
            return Outcome::Nothing(format!("no answer ({why})"));
        }
    };
    if !resp.status().is_success() {
        return Outcome::Nothing(format!("HTTP {}", resp.status()));
    }
    if resp.content_length().is_some_and(|n| n > MAX_BYTES as u64) {
        return Outcome::Nothing(format!("the answer is larger than {} KiB", MAX_BYTES / 1024));
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if body.len() + c.len() > MAX_BYTES {
                    return Outcome::Nothing(format!("the answer is larger than {} KiB", MAX_BYTES / 1024));
                }
                body.extend_from_slice(&c);
            }
            Ok(None) => break,
            Err(e) => return Outcome::Nothing(format!("the answer broke off ({})", chain(&e))),
        }
    }
    let Ok(text) = String::from_utf8(body) else {
        return Outcome::Nothing("the answer is not UTF-8 text".into());
    };
    match parse(&text, a) {
        Ok(c) => Outcome::Found(Box::new(c)),
        Err(e) => Outcome::Nothing(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRED: Address<'static> = Address { email: "fred@example.com", local: "fred", domain: "example.com" };

    /// The shape of the format's own example (wiki.mozilla.org ConfigFileFormat): several
    /// incoming servers, placeholders, a second SMTP server, documentation and enable elements.
    const EXAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="example.com">
    <domain>example.com</domain>
    <domain>example.net</domain>
    <displayName>Example Mail</displayName>
    <displayShortName>Example</displayShortName>
    <incomingServer type="imap">
      <hostname>imap.example.com</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <username>%EMAILLOCALPART%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>pop.%EMAILDOMAIN%</hostname>
      <port>995</port>
      <socketType>SSL</socketType>
      <username>%EMAILLOCALPART%</username>
      <authentication>password-cleartext</authentication>
      <pop3>
        <leaveMessagesOnServer>true</leaveMessagesOnServer>
        <downloadOnBiff>true</downloadOnBiff>
        <daysToLeaveMessagesOnServer>14</daysToLeaveMessagesOnServer>
      </pop3>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>pop.example.com</hostname>
      <port>110</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-encrypted</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.example.com</hostname>
      <port>587</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
      <addThisServer>true</addThisServer>
      <useGlobalPreferredServer>false</useGlobalPreferredServer>
    </outgoingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.example.com</hostname>
      <port>465</port>
      <socketType>SSL</socketType>
      <authentication>client-IP-address</authentication>
    </outgoingServer>
    <documentation url="https://help.example.com/mail">
      <descr lang="en">Setting up your mail client</descr>
    </documentation>
  </emailProvider>
  <enable visiturl="https://mail.example.com/settings/pop">
    <instruction>Switch POP access on first</instruction>
  </enable>
</clientConfig>"#;

    #[test]
    fn reads_pop3_and_smtp_servers_with_placeholders() {
        let c = parse(EXAMPLE, &FRED).unwrap();
        assert_eq!(c.display_name.as_deref(), Some("Example Mail"));
        assert_eq!(
            c.pop,
            vec![
                Server {
                    host: "pop.example.com".into(),
                    port: 995,
                    tls: TlsMode::Implicit,
                    user: Some("fred".into()),
                    auth: vec![Auth::Password]
                },
                Server {
                    host: "pop.example.com".into(),
                    port: 110,
                    tls: TlsMode::StartTls,
                    user: Some("fred@example.com".into()),
                    auth: vec![Auth::Password]
                },
            ]
        );
        assert_eq!(c.smtp.len(), 2);
        assert_eq!((c.smtp[0].port, c.smtp[0].tls), (587, TlsMode::StartTls));
        assert_eq!(c.smtp[1].user, None);
        assert_eq!(c.smtp[1].auth, vec![Auth::None]);
        assert_eq!(c.other_incoming, vec!["imap".to_string()]);
        assert_eq!(
            c.enable,
            Some(("https://mail.example.com/settings/pop".into(), "Switch POP access on first".into()))
        );
        assert!(c.skipped.is_empty());
    }

    /// The shape of ISPDB's large providers: OAuth2 preferred, a password allowed, and an
    /// `<oAuth2>` element beside the provider.
    #[test]
    fn reads_oauth2_authentication_and_endpoints() {
        let xml = r#"<clientConfig version="1.1">
  <emailProvider id="mail.example">
    <domain>mail.example</domain>
    <incomingServer type="pop3">
      <hostname>pop.mail.example</hostname><port>995</port><socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>OAuth2</authentication>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.mail.example</hostname><port>465</port><socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username><authentication>OAuth2</authentication>
    </outgoingServer>
  </emailProvider>
  <oAuth2>
    <issuer>login.mail.example</issuer>
    <scope>https://mail.example/pop https://mail.example/smtp offline_access</scope>
    <authURL>https://login.mail.example/authorize</authURL>
    <tokenURL>https://login.mail.example/token</tokenURL>
  </oAuth2>
</clientConfig>"#;
        let c = parse(xml, &FRED).unwrap();
        assert_eq!(c.pop[0].auth, vec![Auth::OAuth2, Auth::Password]);
        assert_eq!(c.pop[0].user.as_deref(), Some("fred@example.com"));
        let o = c.oauth.unwrap();
        assert_eq!(o.scope.len(), 3);
        assert_eq!(o.token_url.as_deref(), Some("https://login.mail.example/token"));
    }

    #[test]
    fn bad_servers_are_left_out_and_said() {
        let xml = r#"<clientConfig><emailProvider id="x">
  <incomingServer type="pop3"><hostname>pop.x.example</hostname><port>99999</port><socketType>SSL</socketType></incomingServer>
  <incomingServer type="pop3"><hostname>pop.x.example</hostname><port>995</port><socketType>TLS-ish</socketType></incomingServer>
  <incomingServer type="pop3"><hostname>evil host;rm</hostname><port>995</port><socketType>SSL</socketType></incomingServer>
  <incomingServer type="pop3"><hostname>pop.x.example</hostname><port>995</port><socketType>SSL</socketType><username>%REALNAME%</username></incomingServer>
</emailProvider></clientConfig>"#;
        let c = parse(xml, &FRED).unwrap();
        assert_eq!(c.skipped.len(), 3, "{:?}", c.skipped);
        assert_eq!(c.pop.len(), 1);
        assert_eq!(c.pop[0].user, None, "an unknown placeholder gives no user name");
    }

    #[test]
    fn terminal_control_characters_never_reach_the_screen() {
        let xml = "<clientConfig><emailProvider id=\"x\"><displayName>Evil\u{9b}2J Mail</displayName>\
<incomingServer type=\"pop3\"><hostname>pop.x.example</hostname><port>995</port><socketType>SSL</socketType>\
<username>fred&#10;DELE 1</username></incomingServer></emailProvider>\
<enable visiturl=\"https://x.example/&#13;\u{9d}8;;\"><instruction>Go&#10;now</instruction></enable></clientConfig>";
        let c = parse(xml, &FRED).unwrap();
        // XML 1.0 keeps out C0 controls but ESC's C1 twins (CSI U+009B, OSC U+009D) and line breaks
        // pass.
        assert_eq!(c.display_name.as_deref(), Some("Evil\u{FFFD}2J Mail"));
        assert_eq!(c.pop[0].user, None, "a user name with a line break is dropped");
        let (url, instruction) = c.enable.unwrap();
        assert!(!url.chars().any(char::is_control) && !instruction.chars().any(char::is_control));
    }

    #[test]
    fn not_a_config_file() {
        assert!(parse("<html><body>Not found</body></html>", &FRED).unwrap_err().contains("not a Thunderbird"));
        assert!(parse("{\"json\": true}", &FRED).unwrap_err().contains("not XML"));
        assert!(parse("<clientConfig version=\"1.1\"/>", &FRED).unwrap_err().contains("no server"));
    }

    #[test]
    fn templates_and_urls() {
        assert_eq!(
            expand(DEFAULT_TEMPLATES[0], &FRED),
            "https://autoconfig.example.com/mail/config-v1.1.xml?emailaddress=fred%40example.com"
        );
        assert_eq!(templates(None).len(), 2);
        assert_eq!(templates(Some(" http://127.0.0.1:8080/{domain}.xml  https://x/{email} ")).len(), 2);
        let ok = |u: &str| allowed(&reqwest::Url::parse(u).unwrap());
        assert!(ok("https://autoconfig.example.com/mail/config-v1.1.xml"));
        assert!(ok("http://127.0.0.1:8080/x.xml"));
        assert!(ok("http://[::1]:8080/x.xml"));
        assert!(!ok("http://autoconfig.example.com/mail/config-v1.1.xml"));
        assert!(!ok("ftp://example.com/x"));
        assert_eq!(url_encode("a+b@c d"), "a%2Bb%40c%20d");
    }
}
