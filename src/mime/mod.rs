//! MIME metadata extracted once, at insert time.
//!
//! [`MessageMeta::extract`] walks the raw message (the exact bytes received, normally CRLF) a single
//! time and records everything the IMAP server needs to answer FETCH ENVELOPE, BODY, BODYSTRUCTURE
//! and `BODY[section]` without parsing the message again: the envelope (RFC 3501 §7.4.2), the MIME
//! tree with absolute byte offsets, and the message's dates. The result is stored as a BLOB
//! ([`MessageMeta::to_bytes`]); when its shape changes, [`META_VERSION`] is bumped and the store
//! re-extracts old rows.
//!
//! Design choices (each mirrors Dovecot 2.3 unless said otherwise; BODYSTRUCTURE, BODY, ENVELOPE
//! and `BODY[section]` bytes were compared with a live Dovecot 2.3.19 on ~1,050 messages, generated
//! and hand-made, and agree except where noted):
//! - **Strings are what BODYSTRUCTURE sends.** Media types, subtypes, parameter names and
//!   encodings keep the case they were written in (`"TEXT" "Plain"`); defaults are lower case
//!   (`"text" "plain"`, `"7bit"`). A `text/*` part without a `charset` parameter gets
//!   `("charset" "us-ascii")` appended, as Dovecot does.
//! - **RFC 2231** parameters are merged but not decoded, exactly like Dovecot's `rfc2231_parse`:
//!   plain parameters first in their order, then each RFC 2231 parameter (sorted by name), with
//!   continuations `name*0`, `name*1`… joined; if any piece was extended (`*0*`) the key is
//!   `name*` and the value stays `charset'lang'%XX…` (clients decode). Broken sequences
//!   (missing index) are passed through piece by piece.
//! - **First occurrence wins** for `Content-*` headers; **last occurrence wins** for the envelope
//!   headers (Dovecot overwrites). `Content-*` headers of a message (top level or encapsulated)
//!   with neither `MIME-Version` nor `Content-Type` are ignored (RFC 2045 §4, Dovecot).
//! - **Envelope**: date / in-reply-to / message-id are the unfolded raw values, trimmed (Dovecot
//!   keeps trailing whitespace); the
//!   subject and display names are "for humans" (runs of SP/TAB/CR/LF collapsed to one space,
//!   trimmed — Dovecot's `imap_append_string_for_humans`). Encoded-words are never decoded.
//!   Sender and Reply-To are filled from From when absent or empty. A mailbox without a domain
//!   gets host `MISSING_DOMAIN` (a NIL host would read as a group marker), one without a local
//!   part `MISSING_MAILBOX`, as in Dovecot. Empty list elements (`a@b,,c@d`) are skipped and
//!   junk after an address is skipped to the next comma (Dovecot emits `MISSING_MAILBOX` entries
//!   or stops parsing there).
//! - **8-bit header bytes**: valid UTF-8 is kept as is (the IMAP layer must then send the string
//!   as a literal — check `str::is_ascii`); bytes that are not valid UTF-8 are read as
//!   ISO-8859-1, the most common undeclared charset, so they end up as UTF-8 too. NUL becomes
//!   U+FFFD (as Dovecot's header parser does); CR and LF never appear in any string.
//! - **Broken multiparts**: Dovecot's boundary rules are followed (a line starting with
//!   `--boundary` matches by prefix, innermost boundary first; an outer boundary also ends all
//!   inner parts; a header that runs into a boundary ends there; the line break before a
//!   boundary belongs to the boundary — also the blank line ending a header when the boundary
//!   follows it directly, so that MIME header excludes it). A multipart without a boundary parameter, or whose
//!   boundary never appears, or that is nested too deep, gets exactly one synthetic `text/plain`
//!   child covering its preamble (the whole body when no boundary appears): BODYSTRUCTURE needs
//!   at least one part, and unlike Dovecot's empty placeholder this lets the user read the text.
//!   An invalid `Content-Type` (no `/`) is treated as absent (RFC 2045 §5.2) where Dovecot sends
//!   `"" ""`.
//! - **Limits**: nesting deeper than [`MAX_DEPTH`] and parts beyond [`MAX_PARTS`] are not
//!   descended into (see above); nothing here can panic or recurse without bound.
//!
//! Notes for the IMAP layer:
//! - Offsets and sizes are those of the stored bytes. Dovecot normalises bare LF to CRLF when
//!   serving (and reports sizes accordingly); we serve the raw bytes, so sizes here match what is
//!   sent. Converting line ends on output would break every offset.
//! - NUL bytes can occur in bodies; IMAP literals must not carry them. Dovecot replaces each NUL
//!   with 0x80 when sending, which keeps every size and offset valid.
//! - [`wire`] renders ENVELOPE / BODY / BODYSTRUCTURE exactly as the comparison with Dovecot
//!   checked them; `Part::message.is_some()` ⇔ the message/rfc822 form, `Part::is_text()` ⇔ a
//!   line count is sent, `Part::is_multipart()` ⇔ the multipart form (children never empty).
//! - Section lookup: [`Part::find`] for `n[.m…]`, [`Part::message_root`] for `[n.]HEADER`,
//!   `[n.]TEXT`, `[n.]HEADER.FIELDS`, then [`header_fields`] on `raw[root.header_range()]`.

#![forbid(unsafe_code)]

mod codec;
pub mod date;
pub mod header;
mod rfc822;
mod search;
pub mod subject;
pub mod text;
pub mod transfer;
mod tree;
pub mod wire;

use serde::{Deserialize, Serialize};
use std::ops::Range;

pub use search::{search_text, search_text_with};

/// Version of the extracted form; bump whenever extraction or the serialized layout changes.
pub const META_VERSION: u32 = 1;

/// Multipart / message nesting depth beyond which parts are not descended into: bounds the
/// parser's recursion and the tree's depth (Dovecot allows 100; real mail rarely exceeds 5).
pub const MAX_DEPTH: usize = 32;

/// Total MIME parts per message; beyond it further boundaries of a multipart are ignored. Keeps
/// a hostile message of a million empty parts from producing a huge BLOB (Dovecot: 10 000).
pub const MAX_PARTS: usize = 5000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// Octets of the top-level header including the blank line (= offset of the body,
    /// `header::split(raw).body_start`); the whole message if there is no blank line.
    pub header_len: u32,
    /// Octets of the raw message.
    pub size: u32,
    /// Parsed (last) `Date:` header, if present and plausible (a real calendar date, not before 1970).
    pub date: Option<Timestamp>,
    /// The date of the first (topmost) `Received:` header, if parseable and plausible.
    pub received: Option<Timestamp>,
    /// `Message-ID` without angle brackets.
    pub message_id: Option<String>,
    pub envelope: Envelope,
    /// The MIME tree; for a non-multipart message a single leaf. Its header is the message header.
    pub part: Part,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    pub unix: i64,
    /// Offset of the original zone from UTC, in minutes (east positive).
    pub offset_minutes: i32,
}

/// RFC 3501 §7.4.2 ENVELOPE. Every string is what goes on the wire inside an IMAP string: no CR/LF,
/// RFC 2047 encoded-words kept as written. A string may hold non-ASCII UTF-8 (raw 8-bit headers,
/// see the module docs); the IMAP layer sends such strings as literals.
/// Empty address lists are NIL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Vec<Address>,
    /// Filled from `from` when the header is absent or empty.
    pub sender: Vec<Address>,
    /// Filled from `from` when the header is absent or empty.
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub in_reply_to: Option<String>,
    pub message_id: Option<String>,
}

impl Envelope {
    /// True if some string needs a literal (non-ASCII); lets the IMAP layer take a fast path.
    pub fn has_8bit(&self) -> bool {
        let s = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_ascii());
        let a = |l: &Vec<Address>| l.iter().any(|a| s(&a.name) || s(&a.adl) || s(&a.mailbox) || s(&a.host));
        s(&self.date)
            || s(&self.subject)
            || s(&self.in_reply_to)
            || s(&self.message_id)
            || a(&self.from)
            || a(&self.sender)
            || a(&self.reply_to)
            || a(&self.to)
            || a(&self.cc)
            || a(&self.bcc)
    }
}

/// RFC 3501 address `(name adl mailbox host)`. A group is encoded per RFC 3501: start marker
/// `(NIL NIL "group name" NIL)`, end marker `(NIL NIL NIL NIL)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: Option<String>,
    pub adl: Option<String>,
    pub mailbox: Option<String>,
    pub host: Option<String>,
}

/// One MIME part. Offsets are absolute into the raw message:
/// - `header_start..body_start` is the part's MIME header (`BODY[n.MIME]`; for the top-level part
///   and for the root of an encapsulated message, the message header, i.e. `HEADER`), including
///   the blank line when there is one;
/// - `body_start..end` is the body (`BODY[n]`; for a message/rfc822 part that is the whole
///   encapsulated message, whose own header/body are in `message.1`).
///
/// Text fields are what BODYSTRUCTURE sends (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub header_start: u32,
    pub body_start: u32,
    pub end: u32,
    /// As written (`"TEXT"`, `"text"`…); default `"text"`, or `"message"` inside multipart/digest.
    pub media_type: String,
    /// As written; default `"plain"` (`"rfc822"` inside multipart/digest).
    pub subtype: String,
    /// Body parameters in BODYSTRUCTURE order, values unquoted; RFC 2231 merged as Dovecot does;
    /// `charset=us-ascii` appended to `text/*` without a charset.
    pub params: Vec<(String, String)>,
    pub id: Option<String>,
    pub description: Option<String>,
    /// Content-Transfer-Encoding as written; default `"7bit"`.
    pub encoding: String,
    /// Body octets (`end - body_start`).
    pub size: u32,
    /// Body lines (count of LF in the body); meaningful for text/* and message/rfc822 only.
    pub lines: u32,
    pub md5: Option<String>,
    pub disposition: Option<(String, Vec<(String, String)>)>,
    pub language: Vec<String>,
    pub location: Option<String>,
    /// Multipart only; never empty for a multipart.
    pub children: Vec<Part>,
    /// message/rfc822 only (always present for that type): envelope and structure of the
    /// encapsulated message; the inner part's `header_start` is this part's `body_start`.
    pub message: Option<Box<(Envelope, Part)>>,
}

impl Part {
    pub fn is_multipart(&self) -> bool {
        self.media_type.eq_ignore_ascii_case("multipart")
    }

    /// True for the types whose BODYSTRUCTURE carries a line count.
    pub fn is_text(&self) -> bool {
        self.media_type.eq_ignore_ascii_case("text")
    }

    pub fn is_message_rfc822(&self) -> bool {
        self.message.is_some()
    }

    /// The MIME header (`BODY[n.MIME]`; for a message root, the message header).
    pub fn header_range(&self) -> Range<usize> {
        self.header_start as usize..self.body_start as usize
    }

    /// The body (`BODY[n]`).
    pub fn body_range(&self) -> Range<usize> {
        self.body_start as usize..self.end as usize
    }

    /// The whole part, MIME header included.
    pub fn range(&self) -> Range<usize> {
        self.header_start as usize..self.end as usize
    }

    /// The message an `n.HEADER` / `n.TEXT` / `n.HEADER.FIELDS` section refers to: for the
    /// top-level part (section number empty) and message/rfc822 parts, the (encapsulated) message
    /// root, whose `header_range()` is HEADER and `body_range()` is TEXT. None for other parts
    /// (RFC 3501 allows HEADER/TEXT only on message parts).
    pub fn message_root<'a>(&'a self, path: &[u32]) -> Option<&'a Part> {
        if path.is_empty() {
            return Some(self);
        }
        self.find(path)?.message.as_ref().map(|m| &m.1)
    }

    /// The part addressed by an IMAP section number path, e.g. `[2, 1]` for "2.1" (RFC 3501
    /// §6.4.5). Call it on the top-level part. A non-multipart message's part 1 is its body (the
    /// part itself); for message/rfc822 parts numbering descends into the encapsulated message,
    /// whose root is again part 1 when it is not multipart. An empty path returns `self`.
    pub fn find(&self, path: &[u32]) -> Option<&Part> {
        let mut cur = self;
        let mut at_top = true;
        for &n in path {
            let idx = (n as usize).checked_sub(1)?;
            // The message whose numbering applies: the top-level message itself at the first
            // step, later the encapsulated message of a message/rfc822 part.
            let message = if at_top { Some(cur) } else { cur.message.as_ref().map(|m| &m.1) };
            cur = match message {
                Some(m) if m.is_multipart() => m.children.get(idx)?,
                Some(m) if idx == 0 => m,
                Some(_) => return None,
                None if cur.is_multipart() => cur.children.get(idx)?,
                None => return None,
            };
            at_top = false;
        }
        Some(cur)
    }

    /// Visit this part and all descendants (encapsulated messages included), depth first.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Part)) {
        let mut stack = vec![self];
        while let Some(p) = stack.pop() {
            f(p);
            if let Some(m) = &p.message {
                stack.push(&m.1);
            }
            for c in p.children.iter().rev() {
                stack.push(c);
            }
        }
    }
}

impl MessageMeta {
    /// Extract everything from a raw message. Never panics; any input yields a valid tree.
    pub fn extract(raw: &[u8]) -> MessageMeta {
        tree::extract(raw)
    }

    /// Compact binary serialization for the store (versioned; see [`META_VERSION`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Inverse of [`to_bytes`](Self::to_bytes); None for bytes of another version or corrupt.
    pub fn from_bytes(b: &[u8]) -> Option<MessageMeta> {
        codec::decode(b)
    }

    /// INTERNALDATE as the bridge defines it: the `Date:` header if present and plausible (not
    /// before 1970, not more than one day after `fetched_at`), else the first `Received:` date if
    /// plausible, else `fetched_at` (offset 0).
    pub fn internal_date(&self, fetched_at_unix: i64) -> Timestamp {
        let ok = |t: &Timestamp| t.unix >= 0 && t.unix <= fetched_at_unix.saturating_add(86_400);
        self.date
            .filter(ok)
            .or(self.received.filter(ok))
            .unwrap_or(Timestamp { unix: fetched_at_unix, offset_minutes: 0 })
    }
}

/// `BODY[HEADER.FIELDS (..)]` / `HEADER.FIELDS.NOT` on a header block (e.g. `raw[part.header_range()]`):
/// the selected header lines with their continuation lines (original bytes), followed by the
/// final CRLF, as RFC 3501 requires. Names match case-insensitively. Stops at the blank line.
/// A last line lacking its line break gets a CRLF so that the blank line stays a blank line.
pub fn header_fields(header: &[u8], names: &[&[u8]], not: bool) -> Vec<u8> {
    header::select_fields(header, names, not)
}

/// An address-list field value (RFC 5322 §3.4, folded or not) as ENVELOPE reads it: groups as
/// start/end markers, a mailbox without a domain with host `MISSING_DOMAIN` (see [`Envelope`]).
pub fn address_list(value: &[u8]) -> Vec<Address> {
    rfc822::address_list(value)
}

#[cfg(test)]
mod tests;
