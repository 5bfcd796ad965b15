//! Mailbox names on the wire and in the store.
//!
//! - Modified UTF-7 (RFC 3501 §5.1.3, `crate::mutf7`) is how non-ASCII names travel; the store
//!   keeps UTF-8.
//! - A [`View`] maps a login's names onto the store (DESIGN §3): the combined login `me` sees the
//!   whole tree; the account login `me+Work` sees the `Work` subtree re-rooted, `Work` being its INBOX.
//! - LIST patterns (`*`, `%`) are matched on the client's names.

pub use crate::mutf7::{decode_mutf7, encode_mutf7};
use crate::store::SPECIAL;

pub const DELIMITER: char = '/';

/// How one login sees the store's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// The whole tree, names as stored.
    Combined,
    /// One account's subtree: `root` is INBOX, `root/X` is `X`.
    Account { root: String },
}

impl View {
    /// The store name for a client's (UTF-8, already decoded) name; `None` if the name cannot
    /// exist in this view. `INBOX` is case-insensitive (RFC 3501 §5.1).
    pub fn to_store(&self, client: &str) -> Option<String> {
        let client = client.trim_end_matches(DELIMITER);
        if client.is_empty() {
            return None;
        }
        let is_inbox = |s: &str| s.eq_ignore_ascii_case("INBOX");
        let (first, rest) = match client.split_once(DELIMITER) {
            Some((f, r)) => (f, Some(r)),
            None => (client, None),
        };
        match self {
            View::Combined => Some(match (is_inbox(first), rest) {
                (true, None) => "INBOX".to_string(),
                (true, Some(r)) => format!("INBOX{DELIMITER}{r}"),
                _ => client.to_string(),
            }),
            View::Account { root } => Some(match (is_inbox(first), rest) {
                (true, None) => root.clone(),
                (true, Some(r)) => format!("{root}{DELIMITER}INBOX{DELIMITER}{r}"),
                _ => format!("{root}{DELIMITER}{client}"),
            }),
        }
    }

    /// The client's name for a store name; `None` if this view does not show it.
    pub fn to_client(&self, store: &str) -> Option<String> {
        match self {
            View::Combined => Some(store.to_string()),
            View::Account { root } => {
                if store == root {
                    Some("INBOX".to_string())
                } else {
                    store.strip_prefix(root.as_str())?.strip_prefix(DELIMITER).map(str::to_string)
                }
            }
        }
    }

    /// The SPECIAL-USE attribute a mailbox shows in this view: the local folders' in the combined
    /// view (an account's own `Work/Sent` is a plain folder there), the account's own in an
    /// account view.
    pub fn special_use(&self, client_name: &str) -> Option<&'static str> {
        if client_name.contains(DELIMITER) {
            return None;
        }
        SPECIAL.iter().find(|(n, _)| *n == client_name).map(|(_, a)| *a)
    }

    /// Whether a store mailbox with this special-use name may be created on first use in this view
    /// (an account view's Sent, Drafts…, listed before they exist).
    pub fn virtual_specials(&self) -> Vec<String> {
        match self {
            View::Combined => Vec::new(),
            View::Account { root } => SPECIAL.iter().map(|(n, _)| format!("{root}{DELIMITER}{n}")).collect(),
        }
    }
}

/// LIST pattern matching (RFC 3501 §6.3.8): `*` matches anything, `%` anything but the delimiter.
/// INBOX matches case-insensitively.
pub fn list_match(pattern: &str, name: &str) -> bool {
    fn m(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| m(rest, &n[i..])),
            Some(('%', rest)) => {
                (0..=n.len()).take_while(|&i| i == 0 || n[i - 1] != DELIMITER).any(|i| m(rest, &n[i..]))
            }
            Some((c, rest)) => n.first() == Some(c) && m(rest, &n[1..]),
        }
    }
    let norm = |s: &str| -> Vec<char> {
        match s.get(..5) {
            Some(head) if head.eq_ignore_ascii_case("INBOX") && (s.len() == 5 || s[5..].starts_with(DELIMITER)) => {
                format!("INBOX{}", &s[5..]).chars().collect()
            }
            _ => s.chars().collect(),
        }
    };
    m(&norm(pattern), &norm(name))
}

/// A name a client may create: not empty, no empty level, no control characters, not starting
/// with the delimiter.
pub fn valid_new_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(DELIMITER)
        && !name.split(DELIMITER).any(str::is_empty)
        && !name.chars().any(|c| c.is_control() || c == '*' || c == '%')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_map_names() {
        let c = View::Combined;
        assert_eq!(c.to_store("inbox").as_deref(), Some("INBOX"));
        assert_eq!(c.to_store("Work/Sent").as_deref(), Some("Work/Sent"));
        let a = View::Account { root: "Work".into() };
        assert_eq!(a.to_store("INBOX").as_deref(), Some("Work"));
        assert_eq!(a.to_store("Sent").as_deref(), Some("Work/Sent"));
        assert_eq!(a.to_client("Work").as_deref(), Some("INBOX"));
        assert_eq!(a.to_client("Work/Sent").as_deref(), Some("Sent"));
        assert_eq!(a.to_client("Workshop"), None);
        assert_eq!(a.to_client("INBOX"), None);
        assert_eq!(a.special_use("Sent"), Some("\\Sent"));
        assert_eq!(c.special_use("Work/Sent"), None);
    }

    #[test]
    fn list_patterns() {
        assert!(list_match("*", "Work/Sent"));
        assert!(list_match("%", "Work"));
        assert!(!list_match("%", "Work/Sent"));
        assert!(list_match("Work/%", "Work/Sent"));
        assert!(list_match("inbox", "INBOX"));
        assert!(list_match("W*t", "Work/Sent"));
        assert!(!list_match("Work", "Workshop"));
    }
}
