//! A message of a mailbox: the `messages` row (no body), and the system flag bits stored in it.
//! The metadata (`crate::mime::MessageMeta`) and the raw bytes are loaded separately, only when a
//! command needs them. The store owns these (the IMAP server, the SMTP spool and SEARCH read them).

/// System flag bits, as stored in `messages.flags` (RFC 3501 §2.3.2). `\Recent` is not stored: it
/// belongs to a session.
pub mod flag {
    pub const SEEN: u8 = 1;
    pub const ANSWERED: u8 = 2;
    pub const FLAGGED: u8 = 4;
    pub const DELETED: u8 = 8;
    pub const DRAFT: u8 = 16;
    /// In the order FETCH FLAGS lists them.
    pub const ALL: [(u8, &str); 5] = [
        (SEEN, "\\Seen"),
        (ANSWERED, "\\Answered"),
        (FLAGGED, "\\Flagged"),
        (DELETED, "\\Deleted"),
        (DRAFT, "\\Draft"),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub uid: u32,
    /// `flag::*` bits.
    pub flags: u8,
    /// Keywords (`$Junk`, Thunderbird's `$label1`, …), as the client wrote them; no duplicates
    /// (compared case-insensitively, RFC 3501 flags are case-insensitive).
    pub keywords: Vec<String>,
    pub modseq: u64,
    pub internaldate: crate::mime::Timestamp,
    /// RFC822.SIZE: octets of the stored message.
    pub size: u32,
    /// Key of the body (raw bytes + metadata) in the store.
    pub body_id: i64,
}
