//! The built-in table of the largest mail providers, keyed by the email address's domain: their
//! POP3 and SMTP servers, whether they want OAuth2 (and which preset of `--oauth`), and what a new
//! user trips over (POP switched off by default, app passwords, no POP at all).
//!
//! Where each entry comes from is said beside it. "help" is the provider's own help page as
//! retrieved; "ISPDB" is Thunderbird's curated autoconfig database (github.com/thunderbird/autoconfig,
//! `ispdb/`), which agrees with the help pages where both were found. An entry whose host was found
//! only on third-party pages says so: those are the first to check when a provider moves.

use crate::config::TlsMode;

/// One server of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub host: &'static str,
    pub port: u16,
    pub tls: TlsMode,
}

const fn implicit(host: &'static str, port: u16) -> Endpoint {
    Endpoint { host, port, tls: TlsMode::Implicit }
}

const fn starttls(host: &'static str, port: u16) -> Endpoint {
    Endpoint { host, port, tls: TlsMode::StartTls }
}

/// What the provider wants for a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// The account password (or an app password: see the notes).
    Password,
    /// OAuth2 only: passwords are refused. `preset` names the `--oauth` preset.
    OAuth2Required { preset: &'static str },
    /// OAuth2 (with this `--oauth` preset), or an app password where the account allows one.
    OAuth2OrAppPassword { preset: &'static str },
}

impl Login {
    /// The `--oauth` preset, if OAuth2 is how to sign in.
    pub fn oauth_preset(self) -> Option<&'static str> {
        match self {
            Login::Password => None,
            Login::OAuth2Required { preset } | Login::OAuth2OrAppPassword { preset } => Some(preset),
        }
    }
}

#[derive(Debug)]
pub struct Provider {
    /// Shown to the user.
    pub name: &'static str,
    /// Exact domains; `label.*`: that label followed by any public suffix of one or two labels
    /// (`gmx.*` is gmx.at, gmx.fr, gmx.co.uk …); `*.suffix`: any subdomain of it. Exact entries of
    /// every provider win over patterns.
    pub domains: &'static [&'static str],
    /// Mail exchangers (MX) that show a domain is hosted here: a host equal to one of these or
    /// under it (Google Workspace, Microsoft 365 at the customer's own domain).
    pub mx: &'static [&'static str],
    /// `None`: the provider offers no POP3 at all.
    pub pop: Option<Endpoint>,
    /// The first is proposed; the others are alternatives it documents.
    pub smtp: &'static [Endpoint],
    pub login: Login,
    /// What to do at the provider before popbridge can log in, and other quirks (shown by
    /// `account discover`, the wizard and `account test`).
    pub notes: &'static [&'static str],
    /// The provider lists at most about this many messages per POP session (Gmail): the fetcher
    /// then keeps fetching in further sessions of the same cycle (`fetch::MAX_EXTRA_SESSIONS`).
    pub session_limit: Option<u32>,
}

/// Gmail. Help ("POP / How does POP work in Gmail", support.google.com/a/answer/6089246 as
/// retrieved, and Google's POP settings page): pop.gmail.com 995 SSL, smtp.gmail.com 465 SSL or
/// 587 STARTTLS; "about 250 of the oldest messages that have not yet been downloaded" per session;
/// a message is marked popped once RETR'd in a session that ended with QUIT; `recent:` mode lists
/// the last 30 days; Workspace accounts need OAuth since March 2025. ISPDB googlemail.com.xml
/// agrees (OAuth2 and password-cleartext).
pub const GMAIL: Provider = Provider {
    name: "Gmail",
    domains: &["gmail.com", "googlemail.com"],
    // Google Workspace: aspmx.l.google.com and its alternates, or the newer smtp.google.com
    // (ISPDB lists google.com as an MX domain of this entry).
    mx: &["google.com", "googlemail.com"],
    pop: Some(implicit("pop.gmail.com", 995)),
    smtp: &[implicit("smtp.gmail.com", 465), starttls("smtp.gmail.com", 587)],
    login: Login::OAuth2OrAppPassword { preset: "google" },
    notes: &[
        "Turn POP on first: Gmail → Settings → See all settings → Forwarding and POP/IMAP → POP download → Enable POP; the same page chooses what Gmail does with its own copy once a message is downloaded (keep, mark read, archive, delete).",
        "Sign in with OAuth2 (--oauth google, with your own client ID), or with an app password if the account has 2-Step Verification (Google Account → Security → App passwords); the account password itself is refused. Google Workspace accounts accept OAuth2 only.",
        "Gmail lists at most about 250 messages per POP session and hides each message once it was downloaded: popbridge keeps fetching in further sessions until one lists nothing new.",
    ],
    session_limit: Some(250),
};

/// Outlook.com and the other Microsoft consumer domains. Help ("POP, IMAP, and SMTP settings for
/// Outlook.com", support.microsoft.com, as retrieved): POP outlook.office365.com 995 SSL/TLS, SMTP
/// smtp-mail.outlook.com 587 STARTTLS, "Outlook.com requires the use of Modern Auth / OAuth2", POP
/// "disabled by default" (Settings → Mail → Forwarding and IMAP → Let devices and apps use POP).
/// ISPDB hotmail.com.xml: the same, OAuth2 only, and the country domains below.
pub const OUTLOOK: Provider = Provider {
    name: "Outlook.com (Microsoft)",
    domains: &[
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "windowslive.com",
        "outlook.*",
        "hotmail.*",
        "live.*",
    ],
    // ISPDB: consumer mail at one's own domain, e.g. eur.olc.protection.outlook.com.
    mx: &["olc.protection.outlook.com"],
    pop: Some(implicit("outlook.office365.com", 995)),
    smtp: &[starttls("smtp-mail.outlook.com", 587)],
    login: Login::OAuth2Required { preset: "microsoft" },
    notes: &[
        "Turn POP on first: Outlook.com → Settings → Mail → Forwarding and IMAP → Let devices and apps use POP; the same setting chooses whether POP clients may delete messages from Outlook.",
        "Microsoft accepts only OAuth2 (--oauth microsoft, with your own client ID): passwords and app passwords are refused for POP and SMTP.",
    ],
    session_limit: None,
};

/// Yahoo. Third-party pages quoting Yahoo's help (not Yahoo's own page): pop.mail.yahoo.com 995
/// SSL, smtp.mail.yahoo.com 465 SSL or 587 STARTTLS, app password required for other apps.
pub const YAHOO: Provider = Provider {
    name: "Yahoo Mail",
    domains: &["yahoo.com", "ymail.com", "rocketmail.com", "yahoo.*"],
    mx: &[],
    pop: Some(implicit("pop.mail.yahoo.com", 995)),
    smtp: &[implicit("smtp.mail.yahoo.com", 465), starttls("smtp.mail.yahoo.com", 587)],
    login: Login::Password,
    notes: &[
        "Yahoo refuses the account password in other apps: create an app password (Yahoo Account → Account Security → Generate app password; needs two-step verification) and use that.",
    ],
    session_limit: None,
};

/// AOL. ISPDB aol.com.xml and third-party pages quoting AOL's help: pop.aol.com 995 SSL,
/// smtp.aol.com 465 SSL; app passwords for other apps (AOL shares Yahoo's login system).
pub const AOL: Provider = Provider {
    name: "AOL Mail",
    domains: &["aol.com", "aim.com"],
    mx: &[],
    pop: Some(implicit("pop.aol.com", 995)),
    smtp: &[implicit("smtp.aol.com", 465)],
    login: Login::Password,
    notes: &["AOL wants an app password for other apps: AOL Account → Account Security → Generate app password."],
    session_limit: None,
};

/// GMX (Germany, Austria, Switzerland). ISPDB gmx.net.xml and GMX's help (hilfe.gmx.net):
/// pop.gmx.net 995 SSL, mail.gmx.net 465 SSL / 587 STARTTLS; POP3/IMAP access must be switched on
/// in the web mail settings.
pub const GMX_DE: Provider = Provider {
    name: "GMX",
    domains: &["gmx.net", "gmx.de", "gmx.at", "gmx.ch"],
    mx: &[],
    pop: Some(implicit("pop.gmx.net", 995)),
    smtp: &[implicit("mail.gmx.net", 465), starttls("mail.gmx.net", 587)],
    login: Login::Password,
    notes: &[
        "Turn POP3 on first: GMX web mail → E-Mail-Einstellungen → POP3 & IMAP Abruf → \"POP3 und IMAP Zugriff erlauben\".",
    ],
    session_limit: None,
};

/// GMX international (gmx.com and the other country domains). ISPDB gmx.com.xml and
/// support.gmx.com: pop.gmx.com 995 SSL, mail.gmx.com 587 STARTTLS (465 SSL too).
pub const GMX_COM: Provider = Provider {
    name: "GMX",
    domains: &["gmx.com", "gmx.us", "gmx.*"],
    mx: &[],
    pop: Some(implicit("pop.gmx.com", 995)),
    smtp: &[implicit("mail.gmx.com", 465), starttls("mail.gmx.com", 587)],
    login: Login::Password,
    notes: &["Turn POP3 on first: GMX → Settings → POP3 & IMAP → allow access via POP3 and IMAP."],
    session_limit: None,
};

/// WEB.DE. ISPDB web.de and WEB.DE's help (hilfe.web.de): pop3.web.de 995 SSL, smtp.web.de 587
/// STARTTLS; POP3/IMAP access must be switched on in the settings.
pub const WEB_DE: Provider = Provider {
    name: "WEB.DE",
    domains: &["web.de"],
    mx: &[],
    pop: Some(implicit("pop3.web.de", 995)),
    smtp: &[starttls("smtp.web.de", 587)],
    login: Login::Password,
    notes: &["Turn POP3 on first: WEB.DE → Einstellungen → POP3/IMAP Abruf → \"POP3 und IMAP Zugriff erlauben\"."],
    session_limit: None,
};

/// Zoho Mail. Help (zoho.com/mail/help/pop-access.html): pop.zoho.com 995 SSL, smtp.zoho.com 465
/// SSL or 587 TLS; POP access must be enabled; an application-specific password with two-factor
/// authentication. zoho.eu and zoho.in accounts use the same names under their own domains.
pub const ZOHO: Provider = Provider {
    name: "Zoho Mail",
    domains: &["zoho.com", "zohomail.com"],
    mx: &[],
    pop: Some(implicit("pop.zoho.com", 995)),
    smtp: &[implicit("smtp.zoho.com", 465), starttls("smtp.zoho.com", 587)],
    login: Login::Password,
    notes: &[
        "Turn POP access on first: Zoho Mail → Settings → Mail → Email Forwarding and POP/IMAP → POP Access (not offered on every free plan).",
        "With two-factor authentication, use an application-specific password.",
        "An address at your own domain hosted by Zoho uses poppro.zoho.com instead of pop.zoho.com.",
    ],
    session_limit: None,
};

/// Zoho's EU data centre (zoho.com's help names the region-specific hosts).
pub const ZOHO_EU: Provider = Provider {
    name: "Zoho Mail (EU)",
    domains: &["zoho.eu", "zohomail.eu"],
    mx: &[],
    pop: Some(implicit("pop.zoho.eu", 995)),
    smtp: &[implicit("smtp.zoho.eu", 465), starttls("smtp.zoho.eu", 587)],
    login: Login::Password,
    notes: &[
        "Turn POP access on first: Zoho Mail → Settings → Mail → Email Forwarding and POP/IMAP → POP Access.",
        "With two-factor authentication, use an application-specific password.",
    ],
    session_limit: None,
};

/// Yandex. Yandex's help as quoted on third-party pages (the help itself was not retrieved):
/// pop.yandex.ru 995 SSL, smtp.yandex.ru 465 SSL (the same servers answer as *.yandex.com); mail
/// programs need an app password and POP3 switched on.
pub const YANDEX: Provider = Provider {
    name: "Yandex Mail",
    domains: &["yandex.ru", "yandex.com", "ya.ru", "narod.ru", "yandex.*"],
    mx: &[],
    pop: Some(implicit("pop.yandex.ru", 995)),
    smtp: &[implicit("smtp.yandex.ru", 465)],
    login: Login::Password,
    notes: &[
        "Turn POP3 on first: Yandex Mail → Settings → Email clients → allow access by POP3.",
        "Yandex wants an app password for mail programs: Yandex ID → Security → App passwords → Mail.",
    ],
    session_limit: None,
};

/// Mail.ru. Mail.ru's help as quoted on third-party pages: pop.mail.ru 995 SSL, smtp.mail.ru 465
/// SSL; a "password for external applications" instead of the account password.
pub const MAIL_RU: Provider = Provider {
    name: "Mail.ru",
    domains: &["mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru"],
    mx: &[],
    pop: Some(implicit("pop.mail.ru", 995)),
    smtp: &[implicit("smtp.mail.ru", 465)],
    login: Login::Password,
    notes: &[
        "Mail.ru wants a password for external applications: Settings → Security → Passwords for external applications.",
    ],
    session_limit: None,
};

/// Fastmail. Help ("Server names and ports", fastmail.com/help/technical/servernamesandports.html):
/// pop.fastmail.com 995 SSL/TLS, smtp.fastmail.com 465 SSL/TLS; "You cannot use your regular
/// Fastmail password" (app passwords); `user+folder@…` as the POP user pulls another folder.
pub const FASTMAIL: Provider = Provider {
    name: "Fastmail",
    domains: &["fastmail.com", "fastmail.fm"],
    mx: &[],
    pop: Some(implicit("pop.fastmail.com", 995)),
    smtp: &[implicit("smtp.fastmail.com", 465)],
    login: Login::Password,
    notes: &[
        "Fastmail refuses the account password in other apps: create an app password (Settings → Privacy & Security → Manage app passwords).",
        "POP reads the Inbox; the user name you+folder@fastmail.com reads another folder.",
    ],
    session_limit: None,
};

/// iCloud Mail. Third-party pages and ISPDB me.com.xml (IMAP only): imap.mail.me.com 993,
/// smtp.mail.me.com 587 STARTTLS; iCloud offers no POP3.
pub const ICLOUD: Provider = Provider {
    name: "iCloud Mail",
    domains: &["icloud.com", "me.com", "mac.com"],
    mx: &[],
    pop: None,
    smtp: &[starttls("smtp.mail.me.com", 587)],
    login: Login::Password,
    notes: &[
        "iCloud Mail offers no POP3, only IMAP (imap.mail.me.com, port 993): popbridge cannot fetch it. Use your mail client's IMAP support directly.",
    ],
    session_limit: None,
};

/// Microsoft 365 (Exchange Online) at an organisation's own domain, found by its MX. ISPDB
/// office365.com.xml: POP outlook.office365.com 995 SSL, SMTP smtp.office365.com 587 STARTTLS,
/// OAuth2 only (Microsoft switched basic authentication off for POP in Exchange Online).
pub const MICROSOFT_365: Provider = Provider {
    name: "Microsoft 365",
    domains: &["*.onmicrosoft.com"],
    mx: &["mail.protection.outlook.com"],
    pop: Some(implicit("outlook.office365.com", 995)),
    smtp: &[starttls("smtp.office365.com", 587)],
    login: Login::OAuth2Required { preset: "microsoft" },
    notes: &[
        "Microsoft 365 accepts only OAuth2 (--oauth microsoft, with a client ID registered in your organisation's tenant).",
        "Your organisation's administrator must allow POP (and authenticated SMTP, to send) for your mailbox.",
    ],
    session_limit: None,
};

/// Every entry, in the order they are matched.
pub const ALL: &[&Provider] = &[
    &GMAIL,
    &OUTLOOK,
    &MICROSOFT_365,
    &YAHOO,
    &AOL,
    &GMX_DE,
    &GMX_COM,
    &WEB_DE,
    &ZOHO,
    &ZOHO_EU,
    &YANDEX,
    &MAIL_RU,
    &FASTMAIL,
    &ICLOUD,
];

/// `gmx.*` matches `gmx.` followed by one or two labels; `*.onmicrosoft.com` any subdomain.
fn pattern_matches(pattern: &str, domain: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return under(domain, suffix) && domain != suffix;
    }
    let Some(label) = pattern.strip_suffix(".*") else { return false };
    let Some(rest) = domain.strip_prefix(label).and_then(|r| r.strip_prefix('.')) else { return false };
    let labels = rest.split('.').count();
    !rest.is_empty() && rest.split('.').all(|l| !l.is_empty()) && labels <= 2
}

/// The provider for an email domain (case-insensitive): exact names first, then patterns.
pub fn by_domain(domain: &str) -> Option<&'static Provider> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    ALL.iter()
        .find(|p| p.domains.iter().any(|x| !x.contains('*') && *x == d))
        .or_else(|| ALL.iter().find(|p| p.domains.iter().any(|x| pattern_matches(x, &d))))
        .copied()
}

/// `host` is `domain` or a name under it (case-insensitive, final dots ignored).
fn under(host: &str, domain: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == domain || h.ends_with(&format!(".{domain}"))
}

/// The provider that hosts a domain whose mail exchanger is `mx`.
pub fn by_mx(mx: &str) -> Option<&'static Provider> {
    ALL.iter().find(|p| p.mx.iter().any(|m| under(mx, m))).copied()
}

/// The provider whose POP server this is (case-insensitive): also finds Gmail behind a Google
/// Workspace address at the user's own domain.
pub fn by_pop_host(host: &str) -> Option<&'static Provider> {
    let h = host.trim_end_matches('.');
    ALL.iter().find(|p| p.pop.is_some_and(|e| e.host.eq_ignore_ascii_case(h))).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_domains_then_patterns() {
        assert_eq!(by_domain("gmail.com").map(|p| p.name), Some("Gmail"));
        assert_eq!(by_domain("GoogleMail.COM").map(|p| p.name), Some("Gmail"));
        assert_eq!(by_domain("hotmail.co.uk").map(|p| p.name), Some("Outlook.com (Microsoft)"));
        assert_eq!(by_domain("gmx.de").and_then(|p| p.pop).map(|e| e.host), Some("pop.gmx.net"));
        assert_eq!(by_domain("gmx.fr").and_then(|p| p.pop).map(|e| e.host), Some("pop.gmx.com"));
        assert_eq!(by_domain("gmx.co.uk").and_then(|p| p.pop).map(|e| e.host), Some("pop.gmx.com"));
        assert!(by_domain("gmx.example.co.uk").is_none(), "a pattern stands for a public suffix only");
        assert!(by_domain("notgmail.com").is_none());
        assert!(by_domain("mail.gmail.com").is_none());
        assert!(by_domain("example.com").is_none());
    }

    #[test]
    fn icloud_has_no_pop_and_microsoft_requires_oauth() {
        assert!(by_domain("icloud.com").is_some_and(|p| p.pop.is_none()));
        assert_eq!(by_domain("outlook.com").map(|p| p.login), Some(Login::OAuth2Required { preset: "microsoft" }));
        assert_eq!(by_domain("gmail.com").and_then(|p| p.login.oauth_preset()), Some("google"));
        assert_eq!(by_domain("gmail.com").and_then(|p| p.session_limit), Some(250));
    }

    #[test]
    fn mail_exchangers_name_the_host_of_a_custom_domain() {
        assert_eq!(by_mx("ASPMX.L.GOOGLE.COM.").map(|p| p.name), Some("Gmail"));
        assert_eq!(by_mx("smtp.google.com").map(|p| p.name), Some("Gmail"));
        assert_eq!(by_mx("contoso-com.mail.protection.outlook.com").map(|p| p.name), Some("Microsoft 365"));
        assert_eq!(by_mx("eur.olc.protection.outlook.com").map(|p| p.name), Some("Outlook.com (Microsoft)"));
        assert!(by_mx("mx.notgoogle.com").is_none());
        assert!(by_mx("mail.example.com").is_none());
        assert_eq!(by_domain("contoso.onmicrosoft.com").map(|p| p.name), Some("Microsoft 365"));
        assert!(by_domain("onmicrosoft.com").is_none());
    }

    #[test]
    fn pop_hosts_name_their_provider() {
        assert_eq!(by_pop_host("POP.GMAIL.COM").map(|p| p.name), Some("Gmail"));
        assert_eq!(by_pop_host("outlook.office365.com.").map(|p| p.name), Some("Outlook.com (Microsoft)"));
        assert!(by_pop_host("127.0.0.1").is_none());
    }

    #[test]
    fn every_entry_is_well_formed() {
        for p in ALL {
            assert!(!p.domains.is_empty() && !p.smtp.is_empty(), "{}", p.name);
            for e in p.pop.iter().chain(p.smtp.iter()) {
                assert!(e.port > 0 && e.host.contains('.') && e.tls != TlsMode::Plain, "{}: {e:?}", p.name);
            }
        }
    }
}
