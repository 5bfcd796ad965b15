//! Who may send as whom, and what happens to a message on its way out.
//!
//! A sender address is allowed when it is an account's `email` or an address verified for that
//! account (`popbridge verify`). An account that sends through the shared `[relay]` must have its
//! own address verified too: the relay cannot vouch for it. The account login `me+Work` may only
//! send as Work. Outgoing messages lose their Bcc header, gain a verified Reply-To, and get a Date
//! and Message-ID if the client left them out (RFC 6409 §8).

use crate::config::{Account, Config};

/// What the login allows: every account (combined login) or one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Account(String),
}

/// An address an account may send as.
#[derive(Debug, Clone)]
pub struct Allowed {
    pub account: String,
    pub address: String,
}

/// Every (account, address) pair the login may use, given the verified addresses.
pub fn allowed(cfg: &Config, scope: &Scope, verified: &[(String, String)]) -> Vec<Allowed> {
    let mut out = Vec::new();
    for a in &cfg.accounts {
        if let Scope::Account(n) = scope
            && !n.eq_ignore_ascii_case(&a.name)
        {
            continue;
        }
        let relay = a.smtp.as_ref().is_some_and(|s| s.relay);
        let own_ok = !relay || verified.iter().any(|(acc, addr)| acc == &a.name && addr.eq_ignore_ascii_case(&a.email));
        if own_ok {
            out.push(Allowed { account: a.name.clone(), address: a.email.clone() });
        }
        for (acc, addr) in verified {
            if acc == &a.name && !addr.eq_ignore_ascii_case(&a.email) {
                out.push(Allowed { account: a.name.clone(), address: addr.clone() });
            }
        }
    }
    out
}

/// The account a sender address belongs to, or the reply text: why this address may not be used
/// (most specific reason first), what to do, and what is allowed.
pub fn route<'a>(cfg: &'a Config, scope: &Scope, allowed: &[Allowed], sender: &str) -> Result<&'a Account, String> {
    if let Some(hit) = allowed.iter().find(|a| a.address.eq_ignore_ascii_case(sender)) {
        return cfg.account(&hit.account).ok_or_else(|| format!("account {} is no longer configured", hit.account));
    }
    let list: Vec<&str> = allowed.iter().map(|a| a.address.as_str()).collect();
    let allowed_list = if list.is_empty() { "none yet".to_string() } else { list.join(", ") };
    let owner = cfg.accounts.iter().find(|a| {
        a.email.eq_ignore_ascii_case(sender) || a.reply_to.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(sender))
    });
    if let (Some(owner), Scope::Account(login)) = (owner, scope)
        && !owner.name.eq_ignore_ascii_case(login)
    {
        return Err(format!(
            "<{sender}> belongs to account {}; this login (+{login}) may send only as account {login} (allowed: {allowed_list}); log in without +{login} to send as any account",
            owner.name
        ));
    }
    if let Some(owner) = owner {
        let why = if owner.email.eq_ignore_ascii_case(sender) {
            format!(
                "<{sender}> is account {}'s address, but {} sends through the shared [relay], which cannot vouch for it",
                owner.name, owner.name
            )
        } else {
            format!("<{sender}> is account {}'s reply_to", owner.name)
        };
        return Err(format!(
            "{why}: verify it first (popbridge verify send {sender}, then popbridge verify confirm {sender} CODE); allowed now: {allowed_list}"
        ));
    }
    Err(if list.is_empty() {
        format!(
            "<{sender}> is not an address of your accounts, and no account may send yet (add an outgoing server to an account, or verify its address)"
        )
    } else {
        format!(
            "<{sender}> is not an address of your accounts; allowed senders: {allowed_list} (verify others with `popbridge verify send ADDRESS`)"
        )
    })
}

/// Where the header block ends (the offset of the body), and the header block itself.
pub fn header_end(raw: &[u8]) -> usize {
    let mut i = 0;
    while i < raw.len() {
        let end = memchr::memchr(b'\n', &raw[i..]).map(|p| i + p + 1).unwrap_or(raw.len());
        let line = &raw[i..end];
        if line == b"\r\n" || line == b"\n" {
            return i;
        }
        i = end;
    }
    raw.len()
}

/// Whether the header block has a field of this name.
pub fn has_header(raw: &[u8], name: &str) -> bool {
    fields(&raw[..header_end(raw)]).any(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
}

/// (name, whole field including continuation lines) of each header field.
fn fields(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= header.len() {
            return None;
        }
        let start = i;
        loop {
            let end = memchr::memchr(b'\n', &header[i..]).map(|p| i + p + 1).unwrap_or(header.len());
            i = end;
            if i >= header.len() || !matches!(header[i], b' ' | b'\t') {
                break;
            }
        }
        let field = &header[start..i];
        let name = field.iter().position(|c| *c == b':').map(|p| field[..p].trim_ascii()).unwrap_or(&[]);
        Some((name, field))
    })
}

/// Drops every field with this name (Bcc must not travel: RFC 5322 §3.6.3).
pub fn remove_header(raw: &[u8], name: &str) -> Vec<u8> {
    let end = header_end(raw);
    let mut out = Vec::with_capacity(raw.len());
    for (n, field) in fields(&raw[..end]) {
        if !n.eq_ignore_ascii_case(name.as_bytes()) {
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(&raw[end..]);
    out
}

/// The addresses of the From field (mailbox@host), as the IMAP envelope parser reads them.
pub fn from_addresses(raw: &[u8]) -> Vec<String> {
    let meta = crate::mime::MessageMeta::extract(&raw[..header_end(raw)]);
    meta.envelope
        .from
        .iter()
        .filter_map(|a| match (&a.mailbox, &a.host) {
            (Some(m), Some(h)) => Some(format!("{m}@{h}")),
            _ => None,
        })
        .collect()
}

/// The changes on the way out: Bcc removed; Reply-To, Date and Message-ID added when missing.
/// Returns the new bytes and the Message-ID.
pub fn prepare(raw: &[u8], account: &Account, reply_to_verified: bool, sender: &str) -> (Vec<u8>, String) {
    let mut body = remove_header(raw, "Bcc");
    let mut added = String::new();
    if reply_to_verified
        && let Some(r) = &account.reply_to
        && !has_header(&body, "Reply-To")
    {
        added.push_str(&format!("Reply-To: {r}\r\n"));
    }
    if !has_header(&body, "Date") {
        let now = std::time::SystemTime::now();
        added.push_str(&format!("Date: {}\r\n", rfc5322_date(now)));
    }
    let meta = crate::mime::MessageMeta::extract(&body[..header_end(&body)]);
    let message_id = match meta.message_id {
        Some(m) => m,
        None => {
            let domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or("popbridge.invalid");
            let id = format!("{}.{}@{domain}", crate::store::now(), random_token());
            added.push_str(&format!("Message-ID: <{id}>\r\n"));
            id
        }
    };
    if !added.is_empty() {
        let mut with = added.into_bytes();
        with.append(&mut body);
        body = with;
    }
    (body, message_id)
}

fn random_token() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `Tue, 01 Jul 2025 10:52:37 +0000` (RFC 5322 §3.3), in UTC.
pub fn rfc5322_date(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][(month - 1) as usize];
    format!("{weekday}, {day:02} {mon} {year} {:02}:{:02}:{:02} +0000", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcc_goes_and_missing_headers_come() {
        let raw = b"From: Me <me@work.example>\r\nTo: a@x.example\r\nBcc: secret@x.example,\r\n  other@x.example\r\nSubject: hi\r\n\r\nBcc: this line is body\r\n";
        let cfg = crate::config::parse(
            "[[account]]\nname = \"Work\"\nemail = \"me@work.example\"\nreply_to = \"desk@work.example\"\n[account.pop]\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\n",
            std::path::Path::new("c.toml"),
            0o600,
        )
        .unwrap();
        let (out, id) = prepare(raw, &cfg.accounts[0], true, "me@work.example");
        let t = String::from_utf8_lossy(&out);
        assert!(!t.contains("secret@") && !t.contains("other@x.example"), "{t}");
        assert!(t.contains("Bcc: this line is body"), "the body is untouched");
        assert!(t.starts_with("Reply-To: desk@work.example\r\nDate: "), "{t}");
        assert!(t.contains(&format!("Message-ID: <{id}>")) && id.ends_with("@work.example"));
        assert_eq!(from_addresses(&out), vec!["me@work.example"]);
        let (out2, _) = prepare(&out, &cfg.accounts[0], true, "me@work.example");
        assert_eq!(out2, out, "nothing is added twice");
    }

    #[test]
    fn dates_are_rfc5322() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_751_359_957);
        assert_eq!(rfc5322_date(t), "Tue, 01 Jul 2025 08:52:37 +0000");
    }
}
