//! RFC 6186 service records for a mail domain: `_pop3s._tcp` (POP3 over TLS, RFC 8314),
//! `_pop3._tcp` (POP3 with STARTTLS), `_submissions._tcp` (submission over TLS, RFC 8314) and
//! `_submission._tcp` (submission with STARTTLS); and its MX records, which show a domain hosted
//! by a large provider (Google Workspace, Microsoft 365), as Thunderbird uses them.
//!
//! The resolver is the system's (`/etc/resolv.conf`); `POPBRIDGE_RESOLVER=IP:PORT` points it at
//! another server (a company resolver, a local one). DNS answers are not authenticated: what SRV
//! proposes is shown to the user, who confirms it (RFC 6186 §6), and a target outside the
//! address's domain is pointed out.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};

/// What a domain's MX lookup answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// Mail exchangers, most preferred first (without the final dot).
    Hosts(Vec<String>),
    None,
    Failed(String),
}

/// The domain's mail exchangers.
pub async fn mx(resolver: &TokioResolver, domain: &str) -> MxAnswer {
    match resolver.lookup(format!("{domain}."), RecordType::MX).await {
        Ok(l) => {
            let mut v: Vec<(u16, String)> = l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(m) => Some((m.preference, m.exchange.to_ascii().trim_end_matches('.').to_string())),
                    _ => None,
                })
                .filter(|(_, h)| super::autoconfig::plausible_host(h))
                .collect();
            v.sort();
            if v.is_empty() { MxAnswer::None } else { MxAnswer::Hosts(v.into_iter().map(|(_, h)| h).collect()) }
        }
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => MxAnswer::None,
        Err(e) => MxAnswer::Failed(e.to_string()),
    }
}

use crate::config::TlsMode;
use crate::error::{Error, Result};

/// The environment variable naming another DNS server.
pub const ENV_RESOLVER: &str = "POPBRIDGE_RESOLVER";
/// One query's wait, and how often it is tried: the wizard should not hang on a dead resolver.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
pub const ATTEMPTS: usize = 2;

/// The services looked up, in the order they are proposed: TLS from the first byte before
/// STARTTLS (RFC 8314 §5.1 prefers implicit TLS).
pub const SERVICES: [(&str, Kind, TlsMode); 4] = [
    ("_pop3s._tcp", Kind::Pop, TlsMode::Implicit),
    ("_pop3._tcp", Kind::Pop, TlsMode::StartTls),
    ("_submissions._tcp", Kind::Smtp, TlsMode::Implicit),
    ("_submission._tcp", Kind::Smtp, TlsMode::StartTls),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pop,
    Smtp,
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Without the final dot; "." when the service is decidedly not offered.
    pub target: String,
}

/// What one name answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// In the order to try them ([`order`]).
    Records(Vec<Record>),
    /// A single record with target "." (RFC 2782, RFC 6186 §3.4): the domain says it does not
    /// offer the service.
    NotOffered,
    /// No such record.
    None,
    /// The lookup failed (no resolver, a timeout): in words.
    Failed(String),
}

/// RFC 2782's order as a proposal can show it: lowest priority first; within a priority the
/// heaviest weight first (RFC 2782 picks at random in proportion to weight, so the heaviest is
/// the likeliest, and a zero weight the least likely); then by name, so the output is stable.
pub fn order(records: &mut [Record]) {
    records.sort_by(|a, b| {
        a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)).then_with(|| a.target.cmp(&b.target))
    });
}

/// The records of one answer, as RFC 6186 reads them.
pub fn interpret(mut records: Vec<Record>) -> Answer {
    if records.is_empty() {
        return Answer::None;
    }
    if records.len() == 1 && records[0].target == "." {
        return Answer::NotOffered;
    }
    // A "." among others is meaningless (RFC 2782 allows it only alone): left out.
    records.retain(|r| r.target != "." && r.port != 0);
    if records.is_empty() {
        return Answer::NotOffered;
    }
    order(&mut records);
    Answer::Records(records)
}

/// `POPBRIDGE_RESOLVER`'s value as a server address.
pub fn parse_resolver(v: &str) -> Result<SocketAddr> {
    v.trim().parse().map_err(|_| {
        Error::config(format!(
            "{ENV_RESOLVER}=\"{v}\" is not an address with a port (e.g. 192.0.2.53:53 or [2001:db8::53]:53)"
        ))
    })
}

/// The resolver: `POPBRIDGE_RESOLVER`'s server (UDP and TCP on its port), else the system's.
pub fn resolver(server: Option<SocketAddr>) -> std::result::Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = match server {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(vec![ns]), provider)
        }
        None => TokioResolver::builder(provider).map_err(|e| {
            format!("cannot read the system's resolver configuration ({e}); set {ENV_RESOLVER}=IP:PORT")
        })?,
    };
    let opts = builder.options_mut();
    opts.timeout = QUERY_TIMEOUT;
    opts.attempts = ATTEMPTS;
    builder.build().map_err(|e| format!("cannot set up the resolver ({e})"))
}

/// Looks up one service name (`_pop3s._tcp.example.com.`).
pub async fn lookup(resolver: &TokioResolver, name: &str) -> Answer {
    match resolver.lookup(name, RecordType::SRV).await {
        Ok(l) => interpret(
            l.answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(s) => Some(Record {
                        priority: s.priority,
                        weight: s.weight,
                        port: s.port,
                        target: {
                            let t = s.target.to_ascii();
                            let t = t.trim_end_matches('.');
                            if t.is_empty() { ".".to_string() } else { t.to_string() }
                        },
                    }),
                    _ => None,
                })
                // Anything else is no host name to propose (or to print).
                .filter(|r| r.target == "." || super::autoconfig::plausible_host(&r.target))
                .collect(),
        ),
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Answer::None,
        Err(e) => Answer::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(priority: u16, weight: u16, port: u16, target: &str) -> Record {
        Record { priority, weight, port, target: target.into() }
    }

    #[test]
    fn priority_then_weight_then_name() {
        let mut v = vec![
            r(20, 0, 995, "backup.example.com"),
            r(10, 10, 995, "b.example.com"),
            r(10, 60, 995, "c.example.com"),
            r(10, 0, 995, "a.example.com"),
            r(10, 10, 995, "a2.example.com"),
        ];
        order(&mut v);
        let names: Vec<&str> = v.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(names, ["c.example.com", "a2.example.com", "b.example.com", "a.example.com", "backup.example.com"]);
    }

    #[test]
    fn a_lone_dot_means_not_offered() {
        assert_eq!(interpret(vec![r(0, 0, 0, ".")]), Answer::NotOffered);
        assert_eq!(interpret(vec![]), Answer::None);
        assert_eq!(
            interpret(vec![r(0, 0, 0, "."), r(5, 1, 995, "pop.example.com")]),
            Answer::Records(vec![r(5, 1, 995, "pop.example.com")])
        );
    }

    #[test]
    fn the_resolver_setting_is_an_address_with_a_port() {
        assert_eq!(parse_resolver("127.0.0.1:5353").unwrap().port(), 5353);
        assert!(parse_resolver("[::1]:53").is_ok());
        assert!(parse_resolver("127.0.0.1").is_err());
        assert!(parse_resolver("dns.example").is_err());
    }
}
