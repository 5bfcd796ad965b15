//! Error classes shared by every module: what went wrong, in terms a user can act on.
//!
//! The class decides the exit code (DESIGN §5), whether a retry can help (the fetch schedule's
//! backoff, later), and which guidance the user sees. It is data, never derived by matching strings.

use std::fmt;

/// What kind of failure this is, from the user's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The command line or the config file is wrong.
    Config,
    /// The server could not be reached, or the connection broke or stalled.
    Connection,
    /// TLS failed: an untrusted or mismatched certificate, or the server does not offer TLS.
    Certificate,
    /// The server rejected the credentials (or refuses this account permanently).
    Authentication,
    /// The server asked us to come back later: `[SYS/TEMP]`, `[IN-USE]`, `[LOGIN-DELAY]`,
    /// or another process is fetching this account right now.
    Temporary,
    /// The server broke the protocol.
    Protocol,
    /// The local store lost committed data, is missing or empty where one was, or is not the
    /// store its guard belongs to (`store::guard`): refused, never served or fetched into.
    StoreDamaged,
    /// Anything else: the local store, the disk, a bug.
    Other,
}

impl ErrorClass {
    /// Exit codes, exactly as DESIGN §5 fixes them (scripts rely on them).
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorClass::Config => 2,
            ErrorClass::Connection => 3,
            ErrorClass::Certificate => 4,
            ErrorClass::Authentication => 5,
            ErrorClass::Temporary => 6,
            ErrorClass::Protocol => 7,
            ErrorClass::StoreDamaged => 8,
            ErrorClass::Other => 1,
        }
    }

    /// The stable name used in `status --json` and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Config => "config",
            ErrorClass::Connection => "connection",
            ErrorClass::Certificate => "certificate",
            ErrorClass::Authentication => "authentication",
            ErrorClass::Temporary => "temporary",
            ErrorClass::Protocol => "protocol",
            ErrorClass::StoreDamaged => "store-damaged",
            ErrorClass::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorClass> {
        Some(match s {
            "config" => ErrorClass::Config,
            "connection" => ErrorClass::Connection,
            "certificate" => ErrorClass::Certificate,
            "authentication" => ErrorClass::Authentication,
            "temporary" => ErrorClass::Temporary,
            "protocol" => ErrorClass::Protocol,
            "store-damaged" => ErrorClass::StoreDamaged,
            "other" => ErrorClass::Other,
            _ => return None,
        })
    }

    /// What the user should do about a POP server (the seed's guidance for each setup error).
    pub fn guidance(self) -> &'static str {
        self.guidance_for(Service::Pop)
    }

    /// What the user should do, worded for the kind of server the error is about: its ports,
    /// its config section, its `account add` flags.
    pub fn guidance_for(self, service: Service) -> &'static str {
        if service == Service::Smtp {
            return match self {
                ErrorClass::Connection => {
                    "check the SMTP server's host name and port with your provider (the standard ports are 465 for SMTP over TLS and 587 for STARTTLS), and that this machine can reach it"
                }
                ErrorClass::Certificate => {
                    "a secure (TLS) connection to the SMTP server could not be made as configured: if the certificate was refused, the provider must install one from a recognised authority — or, if you trust this server, pin the SHA-256 fingerprint shown above (pin_sha256 in the account's [account.smtp] section, or --smtp-pin-sha256), or trust its private CA (ca_file there, or --smtp-ca-file); if the server offers no TLS there, use the provider's TLS port (465, or 587 with tls = \"starttls\") — popbridge never sends passwords or mail unencrypted"
                }
                ErrorClass::Authentication => {
                    "check the SMTP user name and password (user and password_command in the account's [account.smtp] section; the SMTP password is the POP one unless set there); some providers want an app password for sending; if the server takes mail without a login, remove user there (or add the account with --smtp-no-auth)"
                }
                ErrorClass::Temporary => {
                    "the SMTP server asked to retry later; nothing was lost, queued mail is sent again later"
                }
                ErrorClass::Protocol => {
                    "the SMTP server sent something that breaks the SMTP protocol; if this repeats, report it to the provider (and to popbridge with `account test` output)"
                }
                other => other.guidance_for(Service::Pop),
            };
        }
        match self {
            ErrorClass::Config => "fix the setting named above and run the command again",
            ErrorClass::Connection => {
                "check the server's host name and port with your provider (the standard POP3 ports are 995 for TLS and 110), and that this machine can reach it"
            }
            ErrorClass::Certificate => {
                "a secure (TLS) connection could not be made as configured: if the certificate was refused, the provider must install one from a recognised authority — or, if you trust this server, pin the SHA-256 fingerprint shown above (pin_sha256 in the account's [account.pop] section, or --pin-sha256); if the server offers no TLS there, use the provider's TLS port (995 for POP3) — popbridge never sends passwords unencrypted"
            }
            ErrorClass::Authentication => {
                "check the user name and password (popbridge account set-password NAME); some providers require enabling POP access in their web settings; contact the provider if you are sure they are right"
            }
            ErrorClass::Temporary => "the server asked to retry later; nothing was lost, the next fetch will continue",
            ErrorClass::Protocol => {
                "the server sent something that breaks the POP3 protocol; nothing was deleted; if this repeats, report it to the provider (and to popbridge with `account test` output)"
            }
            ErrorClass::StoreDamaged => {
                "follow the steps above; the damaged files are left exactly as they were, so that mail can still be recovered from them"
            }
            ErrorClass::Other => "see the message above",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of server an error is about, for its guidance: POP (also the default for errors
/// that concern no server) or SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Service {
    #[default]
    Pop,
    Smtp,
}

/// An error with its class and a message that already names what failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub class: ErrorClass,
    pub message: String,
    /// For `Temporary`: how long the server asked us to wait (LOGIN-DELAY), if it said.
    pub retry_after: Option<std::time::Duration>,
    /// Which server it is about: the guidance names that server's ports and config section.
    pub service: Service,
    /// For a refused certificate: the certificate the server presented (to show, and to pin).
    pub presented: Option<Presented>,
    /// The account cannot work until the user acts (an OAuth grant the provider revoked): it is
    /// disabled at once, with this as its `disabled_reason`, instead of after repeated failures.
    pub disable: Option<&'static str>,
}

impl Error {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Error {
        Error {
            class,
            message: message.into(),
            retry_after: None,
            service: Service::Pop,
            presented: None,
            disable: None,
        }
    }
    /// The certificate whose refusal this error reports.
    pub fn with_presented(mut self, presented: Option<Presented>) -> Error {
        self.presented = presented;
        self
    }
    /// The error is about an SMTP server.
    pub fn smtp(mut self) -> Error {
        self.service = Service::Smtp;
        self
    }
    /// What to do about it ([`ErrorClass::guidance_for`] its service).
    pub fn guidance(&self) -> &'static str {
        self.class.guidance_for(self.service)
    }
    pub fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorClass::Config, message)
    }
    pub fn other(message: impl Into<String>) -> Error {
        Error::new(ErrorClass::Other, message)
    }
    /// Prefix the message with context ("account Work: ...").
    pub fn context(mut self, ctx: impl fmt::Display) -> Error {
        self.message = format!("{ctx}: {}", self.message);
        self
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A certificate a server presented (DER), carried by the TLS handshake error whose cause it is
/// (`net::tls::handshake_error`), so that `account add` can show it and offer to pin it. Its
/// `Debug` shows the SHA-256 fingerprint only.
#[derive(Clone, PartialEq, Eq)]
pub struct Presented(std::sync::Arc<Vec<u8>>);

impl Presented {
    pub fn new(der: Vec<u8>) -> Presented {
        Presented(std::sync::Arc::new(der))
    }
    pub fn der(&self) -> &[u8] {
        &self.0
    }
    /// SHA-256 of the DER: what `pin_sha256` holds.
    pub fn fingerprint(&self) -> [u8; 32] {
        let d = ring::digest::digest(&ring::digest::SHA256, self.der());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: Vec<String> = self.fingerprint().iter().map(|b| format!("{b:02X}")).collect();
        write!(f, "Presented(SHA-256 {})", hex.join(":"))
    }
}
