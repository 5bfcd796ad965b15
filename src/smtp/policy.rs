//! Who may send as whom, and what happens to a message on its way out.
//!
//! A sender address is allowed when it is an account's `email` or an address verified for that
//! account (`popbridge verify`). An account that sends through the shared `[relay]` must have its
//! own address verified too: the relay cannot vouch for it. The account login `me+Work` may only
//! send as Work. Outgoing messages lose their Bcc header, gain a verified Reply-To, and get a Date
//! and Message-ID if the client left them out (RFC 6409 §8).
//!
//! The header is checked as the recipients' programs will read it ([`check_sender_fields`]):
//! exactly one From field and at most one Sender (RFC 5322 §3.6), every address in them one the
//! login may send as. When two accounts share an address, the one that can send wins ([`route`]).

use crate::config::{Account, Config};
use crate::mime::{date, header};

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
///
/// Two accounts may share an address (a POP-only account for one mailbox, another that sends as
/// the same address): the first that can send ([`can_send`]) is chosen, else the first.
pub fn route<'a>(cfg: &'a Config, scope: &Scope, allowed: &[Allowed], sender: &str) -> Result<&'a Account, String> {
    let mut hits = allowed.iter().filter(|a| a.address.eq_ignore_ascii_case(sender)).peekable();
    let first = hits.peek().map(|h| h.account.clone());
    let sending = hits.find_map(|h| cfg.account(&h.account).filter(|a| can_send(cfg, a)));
    if let Some(account) = sending {
        return Ok(account);
    }
    if let Some(name) = first {
        return cfg.account(&name).ok_or_else(|| format!("account {name} is no longer configured"));
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

/// The account has somewhere to send through: its own `[account.smtp]` server, or `relay = true`
/// with a `[relay]` configured.
pub fn can_send(cfg: &Config, account: &Account) -> bool {
    match &account.smtp {
        None => false,
        Some(s) if s.relay => cfg.relay.is_some(),
        Some(_) => true,
    }
}

/// Whether the header block has a field of this name (read as [`remove_header`] reads names).
pub fn has_header(raw: &[u8], name: &str) -> bool {
    header::fields(raw).any(|f| loose_name(&raw[f.lines]).eq_ignore_ascii_case(name.as_bytes()))
}

/// A field's name as Bcc removal reads it, more loosely than [`header::Field::name`]: before the
/// first colon anywhere in its lines, surrounding whitespace (line breaks too) trimmed, so that
/// `Bcc\r\n : x` and, at the top of the header, ` Bcc: x` (which some programs read as a Bcc field)
/// go too. Empty when there is no colon.
fn loose_name(lines: &[u8]) -> &[u8] {
    lines.iter().position(|c| *c == b':').map(|p| lines[..p].trim_ascii()).unwrap_or(&[])
}

/// Drops every field with this name (Bcc must not travel: RFC 5322 §3.6.3).
pub fn remove_header(raw: &[u8], name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut fields = header::fields(raw);
    for f in fields.by_ref() {
        let lines = &raw[f.lines];
        if !loose_name(lines).eq_ignore_ascii_case(name.as_bytes()) {
            out.extend_from_slice(lines);
        }
    }
    // The blank line and the body.
    let header_len = fields.end().map_or(raw.len(), |e| e.header_len);
    out.extend_from_slice(&raw[header_len..]);
    out
}

/// One address of a From or Sender field: `local@domain`, or, when it is no mailbox at all, what
/// it is instead (a group, `<>`, a name without a domain), as the refusal shows it.
type FieldAddress = Result<String, String>;

/// The From and Sender fields as one kind of reader sees them: each field with its addresses.
#[derive(Debug, Default)]
struct SenderView {
    from: Vec<Vec<FieldAddress>>,
    sender: Vec<Vec<FieldAddress>>,
}

/// As popbridge's IMAP server (ENVELOPE) and Dovecot read the header: a line that starts with
/// whitespace continues the field before it, and belongs to nothing at the top of the header or
/// after a line that is not a field.
fn strict_view(header: &[u8]) -> SenderView {
    let mut v = SenderView::default();
    for (name, value) in header::named(header) {
        let list = if name.eq_ignore_ascii_case(b"From") {
            &mut v.from
        } else if name.eq_ignore_ascii_case(b"Sender") {
            &mut v.sender
        } else {
            continue;
        };
        let mut out = Vec::new();
        for a in crate::mime::address_list(value) {
            out.push(match (a.mailbox, a.host) {
                (Some(m), Some(h)) if m.is_empty() && h.is_empty() => Err("<> (the null address)".to_string()),
                (Some(m), Some(h)) if h == "MISSING_DOMAIN" => Err(format!("\"{m}\" (no domain)")),
                (Some(m), Some(h)) if m == "MISSING_MAILBOX" => Err(format!("\"@{h}\" (no local part)")),
                (Some(m), Some(h)) => Ok(format!("{m}@{h}")),
                (Some(group), None) => Err(format!("the group \"{group}\"")),
                // The end of a group: its start was reported.
                (None, _) => continue,
            });
        }
        list.push(out);
    }
    v
}

/// As mail-parser (Stalwart's, and many a webmail's, parser) reads it: it also takes a line that
/// starts with whitespace as a field of its own at the top of the header and after a line that is
/// not a field, and ignores whitespace inside a field name (`Fr om:` is From).
fn lenient_view(header_and_blank_line: &[u8]) -> SenderView {
    use mail_parser::{Address, HeaderName, HeaderValue};
    let mut v = SenderView::default();
    let Some(msg) = mail_parser::MessageParser::default().parse_headers(header_and_blank_line) else { return v };
    for h in msg.headers() {
        let list = match h.name {
            HeaderName::From => &mut v.from,
            HeaderName::Sender => &mut v.sender,
            _ => continue,
        };
        let mut out = Vec::new();
        match &h.value {
            HeaderValue::Address(Address::List(addrs)) => {
                for a in addrs {
                    out.push(match (&a.address, &a.name) {
                        (Some(addr), _) if addr.contains('@') => Ok(addr.to_string()),
                        (Some(addr), _) => Err(format!("\"{addr}\" (no domain)")),
                        (None, Some(name)) => Err(format!("\"{name}\" (no address)")),
                        (None, None) => Err("<> (the null address)".to_string()),
                    });
                }
            }
            HeaderValue::Address(Address::Group(groups)) => {
                for g in groups {
                    out.push(Err(format!("the group \"{}\"", g.name.as_deref().unwrap_or(""))));
                }
            }
            // An empty field, or one mail-parser could not read as addresses.
            _ => {}
        }
        list.push(out);
    }
    v
}

/// RFC 5322 §3.6: a message has exactly one From field and at most one Sender field. Every
/// address in them must be one this login may send as for `account` (the account MAIL FROM
/// chose). `message` is the message, or at least its header and the blank line after it.
/// Returns the enhanced status code and the reply text of the refusal.
///
/// The recipient's program decides which From is shown, so the header is read the way two kinds
/// of programs read it ([`strict_view`], [`lenient_view`]); a message passes only when both find
/// one From and nothing but allowed addresses. A bare CR in the header is refused outright: a
/// server on the way may turn it into a line break, and a hidden `From:` with it into a field.
pub fn check_sender_fields(message: &[u8], allowed: &[Allowed], account: &str) -> Result<(), (&'static str, String)> {
    let split = header::split(message);
    let header = &message[..split.header_len];
    if memchr::memchr_iter(b'\r', header).any(|i| header.get(i + 1) != Some(&b'\n')) {
        return Err((
            "5.7.1",
            "the message header has a CR that does not end a line; servers on the way may read it as a line break, so the sender cannot be checked: end header lines with CRLF".into(),
        ));
    }
    let views = [(strict_view(header), ""), (lenient_view(&message[..split.body_start]), LENIENT_HINT)];
    let own: Vec<&str> = allowed.iter().filter(|a| a.account == account).map(|a| a.address.as_str()).collect();
    let shown = |field: &[FieldAddress]| -> String {
        let list: Vec<String> = field
            .iter()
            .map(|a| match a {
                Ok(a) => format!("<{a}>"),
                Err(what) => what.clone(),
            })
            .collect();
        if list.is_empty() { "no address".into() } else { list.join(", ") }
    };
    for (view, hint) in &views {
        for (name, fields) in [("From", &view.from), ("Sender", &view.sender)] {
            if fields.len() > 1 {
                let each: Vec<String> = fields.iter().map(|f| shown(f)).collect();
                return Err((
                    "5.7.1",
                    format!(
                        "the message has {} {name} header fields ({}){hint}; RFC 5322 §3.6 allows {}, and mail programs would show the recipient either one: keep one {name} field",
                        fields.len(),
                        each.join("; "),
                        if name == "From" { "exactly one" } else { "at most one" }
                    ),
                ));
            }
        }
    }
    for (view, hint) in &views {
        for (name, fields) in [("From", &view.from), ("Sender", &view.sender)] {
            for a in fields.iter().flatten() {
                match a {
                    Ok(a) if own.iter().any(|o| o.eq_ignore_ascii_case(a)) => {}
                    Ok(a) => {
                        return Err((
                            "5.7.1",
                            format!(
                                "the {name} header <{a}>{hint} is not an address of account {account} (allowed: {})",
                                own.join(", ")
                            ),
                        ));
                    }
                    Err(what) => {
                        return Err((
                            "5.7.1",
                            format!(
                                "the {name} header names {what}{hint}, not an address of account {account} (allowed: {})",
                                own.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
    }
    let from_counts: Vec<usize> = views.iter().map(|(v, _)| v.from.len()).collect();
    if from_counts.iter().all(|n| *n == 0) {
        return Err(("5.6.0", "the message has no From header".into()));
    }
    if from_counts.contains(&0) {
        return Err((
            "5.7.1",
            format!(
                "mail programs disagree about the message's From field{LENIENT_HINT}: write it as \"From: address\" at the start of a line"
            ),
        ));
    }
    if views.iter().any(|(v, _)| v.from.iter().any(|f| f.is_empty())) {
        return Err(("5.6.0", "the From header names no address".into()));
    }
    Ok(())
}

/// Where the lenient reader's view differs, the refusal says why.
const LENIENT_HINT: &str = " (as some mail programs read the header: they also count a line that starts with a space or tab at its top or after a line without a colon, and ignore spaces in field names)";

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
        added.push_str(&format!("Date: {}\r\n", date::rfc5322(crate::store::now())));
    }
    let meta = crate::mime::MessageMeta::extract(&body[..header::split(&body).header_len]);
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
        assert_eq!(check_sender_fields(&out, &allowed(&cfg, &Scope::All, &[]), "Work"), Ok(()));
        let (out2, _) = prepare(&out, &cfg.accounts[0], true, "me@work.example");
        assert_eq!(out2, out, "nothing is added twice");
    }

    fn work_and_home() -> Config {
        crate::config::parse(
            "[[account]]\nname = \"Work\"\nemail = \"me@work.example\"\n[account.pop]\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\n\
             [[account]]\nname = \"Home\"\nemail = \"me@home.example\"\n[account.pop]\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\n",
            std::path::Path::new("c.toml"),
            0o600,
        )
        .unwrap()
    }

    /// The verdict on a header (a body line follows the blank line).
    fn verdict(header: &str) -> Result<(), (&'static str, String)> {
        let cfg = work_and_home();
        let msg = format!("{header}\r\nBody: From: ceo@bank.example\r\n");
        check_sender_fields(msg.as_bytes(), &allowed(&cfg, &Scope::All, &[]), "Work")
    }

    #[test]
    fn one_from_with_an_allowed_address_passes() {
        for ok in [
            "From: me@work.example\r\nTo: a@x.example\r\n",
            "from: Me <ME@Work.Example>\r\n",
            "From:\r\n Me\r\n <me@work.example>\r\nSubject: folded\r\n",
            "From : me@work.example (comment)\r\nSender: me@work.example\r\n",
            "Subject: Fwd: a note\r\n from: a continuation is part of the Subject\r\nFrom: me@work.example\r\n",
            "From: me@work.example\nTo: bare LF lines\n",
        ] {
            assert_eq!(verdict(&format!("{ok}\r\n")), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn every_from_and_sender_field_counts_however_it_is_written() {
        let foreign = "evil@other.example";
        for (header, esc, needle) in [
            // Two From fields, in either order and any case.
            ("From: evil@other.example\r\nFrom: me@work.example\r\n", "5.7.1", "2 From header fields"),
            ("From: me@work.example\r\nFrom: evil@other.example\r\n", "5.7.1", "2 From header fields"),
            ("FROM: me@work.example\r\nfrom: evil@other.example\r\n", "5.7.1", "2 From header fields"),
            ("From: me@work.example\r\nFrom: me@work.example\r\n", "5.7.1", "2 From header fields"),
            // Folded: the address on a continuation line.
            ("From:\r\n evil@other.example\r\nFrom: me@work.example\r\n", "5.7.1", "2 From header fields"),
            ("From: me@work.example,\r\n\tevil@other.example\r\n", "5.7.1", "<evil@other.example> is not"),
            // Leading whitespace at the top, after a line that is no field, spaces in the name.
            (" From: evil@other.example\r\nFrom: me@work.example\r\n", "5.7.1", "some mail programs"),
            ("X-junk\r\n From: evil@other.example\r\nFrom: me@work.example\r\n", "5.7.1", "some mail programs"),
            ("Fr om: evil@other.example\r\nFrom: me@work.example\r\n", "5.7.1", "some mail programs"),
            ("\tFROM: evil@other.example\r\nSubject: only one From, seen by some\r\n", "5.7.1", "some mail programs"),
            // A hidden field behind a bare CR.
            ("From: me@work.example\rFrom: evil@other.example\r\n", "5.7.1", "CR"),
            ("Subject: x\rFrom: evil@other.example\r\nFrom: me@work.example\r\n", "5.7.1", "CR"),
            // Sender: one at most, and allowed.
            ("From: me@work.example\r\nSender: evil@other.example\r\n", "5.7.1", "Sender header <evil@other.example>"),
            ("From: me@work.example\r\nSender: me@work.example\r\nsender: me@work.example\r\n", "5.7.1", "2 Sender"),
            // Another account's address, a group, no domain, nothing.
            ("From: me@home.example\r\n", "5.7.1", "<me@home.example> is not an address of account Work"),
            ("From: undisclosed:;\r\n", "5.7.1", "group"),
            ("From: me\r\n", "5.7.1", "no domain"),
            ("From: <>\r\n", "5.7.1", "null address"),
            ("Subject: no From\r\n", "5.6.0", "no From header"),
            ("From:\r\nSubject: empty From\r\n", "5.6.0", "names no address"),
        ] {
            let r = verdict(&format!("{header}\r\n"));
            let Err((got, text)) = r else { panic!("accepted: {header:?}") };
            assert_eq!(got, esc, "{header:?}: {text}");
            assert!(text.contains(needle), "{header:?}: {text}");
            if header.contains(foreign) && needle != "CR" {
                assert!(text.contains(foreign), "the refusal names the foreign address: {text}");
            }
        }
    }

    #[test]
    fn the_account_that_can_send_gets_a_shared_address() {
        let cfg = crate::config::parse(
            "[[account]]\nname = \"Fetch\"\nemail = \"me@work.example\"\n[account.pop]\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\n\
             [[account]]\nname = \"Send\"\nemail = \"me@work.example\"\n[account.pop]\nhost = \"h2\"\nuser = \"u\"\npassword = \"p\"\n\
             [account.smtp]\nhost = \"smtp.example\"\n",
            std::path::Path::new("c.toml"),
            0o600,
        )
        .unwrap();
        let ok = allowed(&cfg, &Scope::All, &[]);
        assert_eq!(route(&cfg, &Scope::All, &ok, "ME@work.example").map(|a| a.name.as_str()), Ok("Send"));
        // The account login still decides: +Fetch routes to Fetch (which then cannot send).
        let scope = Scope::Account("Fetch".into());
        let ok = allowed(&cfg, &scope, &[]);
        assert_eq!(route(&cfg, &scope, &ok, "me@work.example").map(|a| a.name.as_str()), Ok("Fetch"));
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(date::rfc5322(1_751_359_957), "Tue, 01 Jul 2025 08:52:37 +0000");
    }
}
