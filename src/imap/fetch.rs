//! FETCH responses (RFC 3501 §6.4.5, §7.2.4 and §7.4.2), encoded straight into bytes.
//!
//! imap-codec parses the command; [`FetchPlan::new`] analyses its item list once per command, and
//! [`encode`] appends one complete `* n FETCH (...)\r\n` per message to the session's output
//! buffer. Message bytes go from the stored blob to `out` in one copy: no imap-codec values, no
//! literal checks, no per-message allocation except where a section has to be computed
//! (`HEADER.FIELDS`, ENVELOPE/BODYSTRUCTURE strings that need literals).
//!
//! Choices (each compared with a live Dovecot 2.3.19, see the tests for the exact bytes):
//! - **Item order** is the request's, duplicates dropped (`UID UID` → one `UID`; `BODY[]` and
//!   `BODY.PEEK[]` are the same response item). Items the server adds come first: `UID` for UID
//!   FETCH when not requested (RFC 3501 §6.4.8), then `FLAGS` when this FETCH just set `\Seen`
//!   and FLAGS was not requested (§6.4.5). Dovecot adds them at the same place, but also moves
//!   the cheap items (FLAGS, RFC822.SIZE, …) before ENVELOPE / BODYSTRUCTURE / body sections;
//!   RFC 3501 does not require an order and clients do not depend on it.
//! - **Section data is always a literal** (`{n}\r\n…`, synchronizing form), also when empty
//!   (`{0}\r\n`), as Dovecot sends it.
//! - **A section that does not exist** (`BODY[3]` of a two-part message, `BODY[1.HEADER]` of a
//!   part that is not message/rfc822, `BODY[TEXT]` of a message without a body…) is an empty
//!   literal, like Dovecot; a partial whose origin lies beyond the end is empty too. Part numbers
//!   are resolved exactly as Dovecot's `imap_msgpart_find` does (see [`find_part`]): it agrees with
//!   `mime::Part::find` everywhere that one finds a part, and additionally accepts a final `.1`
//!   after a non-multipart part (`BODY[1.1]` of a multipart whose part 1 is text/plain is part
//!   1), which Dovecot allows "because some clients use it".
//! - **MIME** of a message/rfc822 part is that part's MIME header; `1.MIME` of a non-multipart
//!   message is the message header (Dovecot does both).
//! - **HEADER.FIELDS echo**: the response names the section with the field names upper-cased,
//!   in the client's order and form (an atom stays an atom, a quoted string or a literal becomes a
//!   quoted string, or a literal when it cannot be quoted), duplicates kept:
//!   `BODY.PEEK[HEADER.FIELDS (from "Subject")]` → `BODY[HEADER.FIELDS (FROM "SUBJECT")]` — what
//!   Dovecot sends. The selected lines keep the message's order, each with its continuation
//!   lines, then the terminating CRLF (`mime::header_fields`) — except for a header without a
//!   blank line (a message without body), where RFC 3501 §6.4.5 says no blank line is sent
//!   (Dovecot agrees for HEADER.FIELDS.NOT, but adds one for HEADER.FIELDS).
//! - **NUL bytes** cannot go in a literal: each is sent as 0x80, so every size and offset stays
//!   valid (Dovecot does the same). The data is copied once; the replacement runs on the copy
//!   only when `memchr` found a NUL.
//! - **Missing data** (meta or raw needed but `None`: the store lost a body) gives `NIL` for
//!   the items that needed it (`BODY[] NIL`, `ENVELOPE NIL`…) instead of failing the command.
//! - **Line ends** are sent as stored: Dovecot converts bare LF to CRLF (and counts sizes that
//!   way); we cannot without breaking every stored offset and RFC822.SIZE.
//! - **BINARY / BINARY.SIZE** (RFC 3516): see [`binary_pieces`] for what a section holds once
//!   decoded (Dovecot's conversion: `BINARY[]` of a whole message or of a multipart /
//!   message/rfc822 part is that part with every base64 / quoted-printable part inside it decoded
//!   and its `Content-Transfer-Encoding` field rewritten to `binary`). The data is a literal8
//!   (`~{n}`) when the section was decoded or contains NUL, else a plain literal — both exactly
//!   as Dovecot chooses, also for a partial whose own bytes have no NUL; a section that does not
//!   exist is `{0}`. The response names a partial's origin (`BINARY[1]<3>`, RFC 3516 §4.3, as
//!   Dovecot does). An encoding the decoders do not know fails the FETCH with `NO
//!   [UNKNOWN-CTE]` ([`unknown_cte`]: the caller checks before encoding). Large sections are
//!   decoded twice, a chunk at a time, never whole: once to learn the size, once to send.
//! - **FLAGS** lists the system flags in `flag::ALL` order (`\Seen \Answered \Flagged \Deleted
//!   \Draft`; Dovecot: `\Answered \Flagged \Deleted \Seen \Draft`), then the keywords, then
//!   `\Recent`. A stored keyword that is not a valid atom is left out rather than break the
//!   response's syntax.
//! - **INTERNALDATE** is `"dd-Mon-yyyy hh:mm:ss +zzzz"` in the timestamp's own zone, day with a
//!   leading zero (Dovecot: `"05-Jan-2024 01:00:00 +0000"`).

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::ops::Range;

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Section};
use memchr::memchr;

use crate::mime::transfer::Encoding;
use crate::mime::{self, MessageMeta, Part, Timestamp};
use crate::store::message::{MessageRow, flag};

/// A FETCH request, analysed once per command (not per message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPlan {
    items: Vec<Item>,
    /// UID FETCH without `UID` among the items: `UID` goes first.
    uid_implicit: bool,
    wants_flags: bool,
    needs_meta: bool,
    needs_raw: bool,
    sets_seen: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Uid,
    Flags,
    InternalDate,
    Rfc822Size,
    Envelope,
    /// BODY (BODYSTRUCTURE without extension data).
    Body,
    BodyStructure,
    Section(Box<SectionItem>),
    /// CONDSTORE's `MODSEQ (n)` (RFC 7162 §3.1.4.1).
    ModSeq,
    /// `BINARY[path]<partial>` / `BINARY.SIZE[path]`.
    Binary(Box<BinaryItem>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BinaryItem {
    /// What the response calls the item, with the trailing space: `BINARY[1]<0> `, `BINARY.SIZE[2] `.
    name: Vec<u8>,
    path: Vec<u32>,
    partial: Option<(u32, u32)>,
    /// BINARY.SIZE: the decoded size only.
    size_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SectionItem {
    /// What the response calls the item, with the trailing space: `BODY[1.MIME]<0> `, `RFC822 `.
    name: Vec<u8>,
    what: What,
    /// `<origin.count>`.
    partial: Option<(u32, u32)>,
}

/// The bytes a section designates. An empty path is the top-level message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum What {
    /// `BODY[]`, `RFC822`.
    Full,
    /// `[path.]HEADER`, `RFC822.HEADER`: the (encapsulated) message header, blank line included.
    Header(Vec<u32>),
    /// `[path.]TEXT`, `RFC822.TEXT`: the (encapsulated) message body.
    Text(Vec<u32>),
    /// `[path.]HEADER.FIELDS[.NOT] (names)`.
    Fields { path: Vec<u32>, names: Vec<Vec<u8>>, not: bool },
    /// `path` (non-empty): the part's body.
    Part(Vec<u32>),
    /// `path.MIME`: the part's MIME header.
    Mime(Vec<u32>),
}

impl What {
    fn path(&self) -> &[u32] {
        match self {
            What::Full => &[],
            What::Header(p) | What::Text(p) | What::Part(p) | What::Mime(p) | What::Fields { path: p, .. } => p,
        }
    }
}

impl FetchPlan {
    /// From the parsed command. `uid_command`: UID FETCH (then UID is always returned, RFC 3501
    /// §6.4.8). Errors (→ the session answers BAD with this text): an empty list, anything
    /// unsupported.
    pub fn new(items: &MacroOrMessageDataItemNames<'_>, uid_command: bool) -> Result<FetchPlan, String> {
        let expanded;
        let names: &[MessageDataItemName<'_>] = match items {
            MacroOrMessageDataItemNames::Macro(m) => {
                expanded = m.expand();
                &expanded
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
        };
        if names.is_empty() {
            return Err("FETCH needs at least one data item".into());
        }
        let mut plan = FetchPlan {
            items: Vec::with_capacity(names.len()),
            uid_implicit: false,
            wants_flags: false,
            needs_meta: false,
            needs_raw: false,
            sets_seen: false,
        };
        for name in names {
            let (item, seen) = match name {
                MessageDataItemName::Uid => (Item::Uid, false),
                MessageDataItemName::Flags => (Item::Flags, false),
                MessageDataItemName::InternalDate => (Item::InternalDate, false),
                MessageDataItemName::Rfc822Size => (Item::Rfc822Size, false),
                MessageDataItemName::Envelope => (Item::Envelope, false),
                MessageDataItemName::Body => (Item::Body, false),
                MessageDataItemName::BodyStructure => (Item::BodyStructure, false),
                MessageDataItemName::Rfc822 => (section_item(b"RFC822", What::Full, None), true),
                MessageDataItemName::Rfc822Header => {
                    (section_item(b"RFC822.HEADER", What::Header(Vec::new()), None), false)
                }
                MessageDataItemName::Rfc822Text => (section_item(b"RFC822.TEXT", What::Text(Vec::new()), None), true),
                MessageDataItemName::BodyExt { section, partial, peek } => {
                    let (what, spec) = analyse_section(section.as_ref());
                    let mut name = Vec::with_capacity(spec.len() + 20);
                    name.extend_from_slice(b"BODY[");
                    name.extend_from_slice(&spec);
                    name.push(b']');
                    let partial = partial.map(|(origin, count)| (origin, count.get()));
                    if let Some((origin, _)) = partial {
                        name.push(b'<');
                        push_u64(&mut name, u64::from(origin));
                        name.push(b'>');
                    }
                    (section_item(&name, what, partial), !*peek)
                }
                MessageDataItemName::Binary { section, partial, peek } => {
                    let partial = partial.map(|(origin, count)| (origin, count.get()));
                    (binary_item(b"BINARY[", section, partial, false), !*peek)
                }
                MessageDataItemName::BinarySize { section } => {
                    (binary_item(b"BINARY.SIZE[", section, None, true), false)
                }
                MessageDataItemName::ModSeq => (Item::ModSeq, false),
                #[allow(unreachable_patterns)] // variants behind imap-types features
                _ => return Err("unsupported FETCH data item".into()),
            };
            plan.sets_seen |= seen;
            match &item {
                Item::Flags => plan.wants_flags = true,
                Item::Envelope | Item::Body | Item::BodyStructure => plan.needs_meta = true,
                Item::Binary(_) => {
                    plan.needs_raw = true;
                    plan.needs_meta = true;
                }
                Item::Section(s) => {
                    plan.needs_raw = true;
                    // Top-level HEADER / TEXT / HEADER.FIELDS are found in the raw bytes alone.
                    if matches!(s.what, What::Part(_) | What::Mime(_)) || !s.what.path().is_empty() {
                        plan.needs_meta = true;
                    }
                }
                _ => {}
            }
            if !plan.items.contains(&item) {
                plan.items.push(item);
            }
        }
        plan.uid_implicit = uid_command && !plan.items.contains(&Item::Uid);
        Ok(plan)
    }

    /// ENVELOPE, BODY, BODYSTRUCTURE, or a `BODY[section]` other than the whole message or the
    /// top-level HEADER / TEXT / HEADER.FIELDS[.NOT] (those are found in the raw bytes alone).
    pub fn needs_meta(&self) -> bool {
        self.needs_meta
    }

    /// Any `BODY[...]`, RFC822, RFC822.HEADER, RFC822.TEXT.
    pub fn needs_raw(&self) -> bool {
        self.needs_raw
    }

    /// Whether answering sets `\Seen` (`BODY[...]` without .PEEK, RFC822, RFC822.TEXT — not
    /// RFC822.HEADER). The session sets it (unless the mailbox is read-only), updates the row
    /// before encoding, and passes `seen_changed` when the flag was not set before.
    pub fn sets_seen(&self) -> bool {
        self.sets_seen
    }

    /// FLAGS was requested (directly or by a macro).
    pub fn wants_flags(&self) -> bool {
        self.wants_flags
    }

    /// UID is part of every response (requested, or implied by UID FETCH).
    pub fn returns_uid(&self) -> bool {
        self.uid_implicit || self.items.contains(&Item::Uid)
    }

    /// MODSEQ was requested (a CONDSTORE enabling command, RFC 7162 §3.1).
    pub fn wants_modseq(&self) -> bool {
        self.items.contains(&Item::ModSeq)
    }

    /// CHANGEDSINCE implies MODSEQ (RFC 7162 §3.1.4.1): added last when not requested, where
    /// Dovecot puts it.
    pub fn with_modseq(mut self) -> FetchPlan {
        if !self.wants_modseq() {
            self.items.push(Item::ModSeq);
        }
        self
    }
}

fn binary_item(prefix: &[u8], section: &[std::num::NonZeroU32], partial: Option<(u32, u32)>, size_only: bool) -> Item {
    let mut name = prefix.to_vec();
    let path: Vec<u32> = section.iter().map(|n| n.get()).collect();
    for (i, n) in path.iter().enumerate() {
        if i > 0 {
            name.push(b'.');
        }
        push_u64(&mut name, u64::from(*n));
    }
    name.push(b']');
    if let Some((origin, _)) = partial {
        name.push(b'<');
        push_u64(&mut name, u64::from(origin));
        name.push(b'>');
    }
    name.push(b' ');
    Item::Binary(Box::new(BinaryItem { name, path, partial, size_only }))
}

fn section_item(name: &[u8], what: What, partial: Option<(u32, u32)>) -> Item {
    let mut n = Vec::with_capacity(name.len() + 1);
    n.extend_from_slice(name);
    n.push(b' ');
    Item::Section(Box::new(SectionItem { name: n, what, partial }))
}

/// The section as [`What`] plus its spelling inside `BODY[...]` in the response.
fn analyse_section(section: Option<&Section<'_>>) -> (What, Vec<u8>) {
    let mut spec = Vec::new();
    let what = match section {
        None => What::Full,
        Some(Section::Part(p)) => What::Part(part_spec(&mut spec, Some(p), "")),
        Some(Section::Mime(p)) => What::Mime(part_spec(&mut spec, Some(p), "MIME")),
        Some(Section::Header(p)) => What::Header(part_spec(&mut spec, p.as_ref(), "HEADER")),
        Some(Section::Text(p)) => What::Text(part_spec(&mut spec, p.as_ref(), "TEXT")),
        Some(Section::HeaderFields(p, names)) => {
            let path = part_spec(&mut spec, p.as_ref(), "HEADER.FIELDS");
            What::Fields { path, names: field_names(&mut spec, names.as_ref()), not: false }
        }
        Some(Section::HeaderFieldsNot(p, names)) => {
            let path = part_spec(&mut spec, p.as_ref(), "HEADER.FIELDS.NOT");
            What::Fields { path, names: field_names(&mut spec, names.as_ref()), not: true }
        }
    };
    (what, spec)
}

/// Writes `1.2` / `1.2.TEXT` / `TEXT` into `spec`, returns the path.
fn part_spec(spec: &mut Vec<u8>, part: Option<&imap_codec::imap_types::fetch::Part>, text: &str) -> Vec<u32> {
    let path: Vec<u32> = part.map(|p| p.0.as_ref().iter().map(|n| n.get()).collect()).unwrap_or_default();
    for (i, n) in path.iter().enumerate() {
        if i > 0 {
            spec.push(b'.');
        }
        push_u64(spec, u64::from(*n));
    }
    if !text.is_empty() {
        if !path.is_empty() {
            spec.push(b'.');
        }
        spec.extend_from_slice(text.as_bytes());
    }
    path
}

/// Appends ` (NAME "NAME" …)` (Dovecot's echo, see the module docs); returns the names as given.
fn field_names(spec: &mut Vec<u8>, names: &[AString<'_>]) -> Vec<Vec<u8>> {
    spec.extend_from_slice(b" (");
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            spec.push(b' ');
        }
        let bytes: &[u8] = name.as_ref();
        let upper = bytes.to_ascii_uppercase();
        if matches!(name, AString::Atom(_)) {
            spec.extend_from_slice(&upper);
        } else if upper.iter().all(|&c| (0x20..0x7f).contains(&c)) {
            spec.push(b'"');
            for &c in &upper {
                if c == b'"' || c == b'\\' {
                    spec.push(b'\\');
                }
                spec.push(c);
            }
            spec.push(b'"');
        } else {
            write_literal(&upper, spec);
        }
        out.push(bytes.to_vec());
    }
    spec.push(b')');
    out
}

/// One message, as the session has loaded it for the plan.
pub struct FetchInput<'a> {
    pub seq: u32,
    pub row: &'a MessageRow,
    /// The session's `\Recent` for this message.
    pub recent: bool,
    /// Needed when [`FetchPlan::needs_meta`].
    pub meta: Option<&'a MessageMeta>,
    /// Needed when [`FetchPlan::needs_raw`].
    pub raw: Option<&'a [u8]>,
    /// `\Seen` was just set by this FETCH: include FLAGS even if not requested (RFC 3501 §6.4.5).
    /// `row.flags` must already include it.
    pub seen_changed: bool,
}

/// Appends one complete `* seq FETCH (...)\r\n` response to `out`, section data from `m.raw`.
pub fn encode(plan: &FetchPlan, m: &FetchInput<'_>, out: &mut Vec<u8>) {
    encode_with(plan, m, &mut InMemory(m.raw), out)
}

/// A literal whose data the caller sends itself: bytes `range` of the message go at offset `at` of
/// the encoded response (right after the literal's `{n}\r\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    pub at: usize,
    pub range: Range<usize>,
    /// A BINARY section: `range` is the part of its decoded output to send, made from the
    /// message by these pieces ([`BinaryStream`]).
    pub binary: Option<Vec<Piece>>,
}

/// [`encode`] for a message whose raw bytes stay in the store (`m.raw` is ignored): `len` is its
/// size, `read` reads a range of it. Section data longer than `inline_max` is not read: the
/// response gets its `{n}\r\n` and a [`Deferred`] says where the caller must put the bytes
/// (streamed in bounded chunks). Shorter sections, and the headers HEADER.FIELDS is computed
/// from, are read with `read` (which may return fewer bytes at a damaged end: the literal then
/// says so). `m.meta` should be loaded: without it the top-level header is looked for in the
/// first 1 MiB.
pub fn encode_stored(
    plan: &FetchPlan,
    m: &FetchInput<'_>,
    len: usize,
    read: &mut dyn FnMut(Range<usize>) -> Vec<u8>,
    inline_max: usize,
    out: &mut Vec<u8>,
    deferred: &mut Vec<Deferred>,
) {
    encode_with(plan, m, &mut Stored { len, read, inline_max, deferred }, out)
}

/// Where [`encode_with`] finds a message's raw bytes.
trait Source {
    /// The message's length; None when its bytes were not loaded (the items that need them are NIL).
    fn len(&self) -> Option<usize>;
    /// The top-level header's length, blank line included.
    fn header_len(&mut self, meta: Option<&MessageMeta>) -> usize;
    /// The bytes of `r` (within the message), for sections computed from them (HEADER.FIELDS).
    fn bytes(&mut self, r: Range<usize>) -> Cow<'_, [u8]>;
    /// Appends the literal `{n}\r\n` + bytes `r` (each NUL as 0x80), or leaves the data to the caller.
    fn literal(&mut self, r: Range<usize>, out: &mut Vec<u8>);
    /// How many bytes of the message a BINARY section reads at a time.
    fn chunk(&self) -> usize;
    /// Appends `window` of the BINARY section `pieces` make (its `{n}\r\n` / `~{n}\r\n` already
    /// written), or leaves the data to the caller.
    fn binary(&mut self, pieces: Vec<Piece>, window: Range<usize>, out: &mut Vec<u8>) {
        let chunk = self.chunk();
        let mut st = BinaryStream::new(pieces, window);
        run_binary(&mut st, chunk, &mut |r| self.bytes(r).into_owned(), out);
    }
}

struct InMemory<'a>(Option<&'a [u8]>);

impl Source for InMemory<'_> {
    fn len(&self) -> Option<usize> {
        self.0.map(<[u8]>::len)
    }
    fn header_len(&mut self, meta: Option<&MessageMeta>) -> usize {
        let raw = self.0.unwrap_or_default();
        match meta {
            Some(meta) => (meta.header_len as usize).min(raw.len()),
            None => mime::header::split(raw).body_start,
        }
    }
    fn bytes(&mut self, r: Range<usize>) -> Cow<'_, [u8]> {
        Cow::Borrowed(sub(self.0.unwrap_or_default(), r))
    }
    fn literal(&mut self, r: Range<usize>, out: &mut Vec<u8>) {
        write_literal(sub(self.0.unwrap_or_default(), r), out)
    }
    fn chunk(&self) -> usize {
        usize::MAX
    }
}

struct Stored<'a> {
    len: usize,
    read: &'a mut dyn FnMut(Range<usize>) -> Vec<u8>,
    inline_max: usize,
    deferred: &'a mut Vec<Deferred>,
}

/// How much of a message without stored metadata is searched for the end of its header.
const HEADER_PROBE: usize = 1024 * 1024;

impl Source for Stored<'_> {
    fn len(&self) -> Option<usize> {
        Some(self.len)
    }
    fn header_len(&mut self, meta: Option<&MessageMeta>) -> usize {
        match meta {
            Some(meta) => (meta.header_len as usize).min(self.len),
            None => mime::header::split(&(self.read)(0..self.len.min(HEADER_PROBE))).body_start,
        }
    }
    fn bytes(&mut self, r: Range<usize>) -> Cow<'_, [u8]> {
        Cow::Owned((self.read)(r))
    }
    fn literal(&mut self, r: Range<usize>, out: &mut Vec<u8>) {
        if r.len() <= self.inline_max {
            write_literal(&(self.read)(r), out);
            return;
        }
        out.push(b'{');
        push_u64(out, r.len() as u64);
        out.extend_from_slice(b"}\r\n");
        self.deferred.push(Deferred { at: out.len(), range: r, binary: None });
    }
    fn chunk(&self) -> usize {
        BINARY_CHUNK
    }
    fn binary(&mut self, pieces: Vec<Piece>, window: Range<usize>, out: &mut Vec<u8>) {
        if window.len() <= self.inline_max {
            let mut st = BinaryStream::new(pieces, window);
            run_binary(&mut st, BINARY_CHUNK, &mut |r| (self.read)(r), out);
        } else {
            self.deferred.push(Deferred { at: out.len(), range: window, binary: Some(pieces) });
        }
    }
}

/// Bytes of a stored message a BINARY section is decoded from at a time (the decoded chunk is
/// at most as large): bounded memory whatever the part's size.
pub const BINARY_CHUNK: usize = 64 * 1024;

fn encode_with(plan: &FetchPlan, m: &FetchInput<'_>, src: &mut dyn Source, out: &mut Vec<u8>) {
    out.extend_from_slice(b"* ");
    push_u64(out, u64::from(m.seq));
    out.extend_from_slice(b" FETCH (");
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b' ');
        }
    };
    if plan.uid_implicit {
        sep(out);
        write_uid(m.row.uid, out);
    }
    if m.seen_changed && !plan.wants_flags {
        sep(out);
        out.extend_from_slice(b"FLAGS ");
        write_flags(m.row.flags, &m.row.keywords, m.recent, out);
    }
    let mut measured: Vec<(&[u32], (usize, bool))> = Vec::new();
    for item in &plan.items {
        sep(out);
        match item {
            Item::Uid => write_uid(m.row.uid, out),
            Item::Flags => {
                out.extend_from_slice(b"FLAGS ");
                write_flags(m.row.flags, &m.row.keywords, m.recent, out);
            }
            Item::InternalDate => {
                out.extend_from_slice(b"INTERNALDATE ");
                write_internaldate(m.row.internaldate, out);
            }
            Item::Rfc822Size => {
                out.extend_from_slice(b"RFC822.SIZE ");
                push_u64(out, u64::from(m.row.size));
            }
            Item::Envelope => {
                out.extend_from_slice(b"ENVELOPE ");
                match m.meta {
                    Some(meta) => mime::wire::envelope(out, &meta.envelope),
                    None => out.extend_from_slice(b"NIL"),
                }
            }
            Item::Body | Item::BodyStructure => {
                let extended = matches!(item, Item::BodyStructure);
                out.extend_from_slice(if extended { b"BODYSTRUCTURE " } else { b"BODY " });
                match m.meta {
                    Some(meta) => mime::wire::body_structure(out, &meta.part, extended),
                    None => out.extend_from_slice(b"NIL"),
                }
            }
            Item::Section(s) => {
                out.extend_from_slice(&s.name);
                match section_ref(&s.what, src, m.meta) {
                    None => out.extend_from_slice(b"NIL"),
                    Some(SectionRef::Range(r)) => src.literal(partial_range(r, s.partial), out),
                    Some(SectionRef::Fields(header)) => {
                        let (names, not) = match &s.what {
                            What::Fields { names, not, .. } => (&names[..], *not),
                            _ => (&[][..], false),
                        };
                        let data = fields(&src.bytes(header), names, not);
                        write_literal(partial(&data, s.partial), out);
                    }
                }
            }
            Item::ModSeq => {
                out.extend_from_slice(b"MODSEQ (");
                push_u64(out, m.row.modseq);
                out.push(b')');
            }
            Item::Binary(b) => {
                out.extend_from_slice(&b.name);
                let (Some(meta), Some(len)) = (m.meta, src.len()) else {
                    out.extend_from_slice(b"NIL");
                    continue;
                };
                let Ok(pieces) = binary_pieces(&meta.part, &b.path, len, &mut |r| src.bytes(r).into_owned()) else {
                    // The caller checks `unknown_cte` first; should it not, no data rather than wrong data.
                    out.extend_from_slice(b"NIL");
                    continue;
                };
                // BINARY.SIZE[n] and BINARY[n] together: one pass to measure.
                let (size, literal8) = match measured.iter().find(|(p, _)| *p == &b.path[..]) {
                    Some((_, m)) => *m,
                    None => {
                        let m = measure(&pieces, src);
                        measured.push((&b.path, m));
                        m
                    }
                };
                if b.size_only {
                    push_u64(out, size as u64);
                    continue;
                }
                let window = partial_range(0..size, b.partial);
                if literal8 {
                    out.push(b'~');
                }
                out.push(b'{');
                push_u64(out, window.len() as u64);
                out.extend_from_slice(b"}\r\n");
                src.binary(pieces, window, out);
            }
        }
    }
    out.extend_from_slice(b")\r\n");
}

/// `* seq FETCH (UID u FLAGS (...))\r\n` (UID only when given): the unsolicited FETCH and the
/// STORE reply.
pub fn write_flags_fetch(seq: u32, uid: Option<u32>, flags: u8, keywords: &[String], recent: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"* ");
    push_u64(out, u64::from(seq));
    out.extend_from_slice(b" FETCH (");
    if let Some(uid) = uid {
        write_uid(uid, out);
        out.push(b' ');
    }
    out.extend_from_slice(b"FLAGS ");
    write_flags(flags, keywords, recent, out);
    out.extend_from_slice(b")\r\n");
}

fn write_uid(uid: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(b"UID ");
    push_u64(out, u64::from(uid));
}

/// FLAGS list as IMAP writes it, e.g. `(\Seen \Flagged $Junk \Recent)`; also used for
/// unsolicited FETCH and STORE replies. Keywords that are not valid atoms are skipped.
pub fn write_flags(flags: u8, keywords: &[String], recent: bool, out: &mut Vec<u8>) {
    out.push(b'(');
    let start = out.len();
    let sep = |out: &mut Vec<u8>| {
        if out.len() > start {
            out.push(b' ');
        }
    };
    for (bit, name) in flag::ALL {
        if flags & bit != 0 {
            sep(out);
            out.extend_from_slice(name.as_bytes());
        }
    }
    for k in keywords {
        if !k.is_empty() && k.bytes().all(is_atom_char) {
            sep(out);
            out.extend_from_slice(k.as_bytes());
        }
    }
    if recent {
        sep(out);
        out.extend_from_slice(b"\\Recent");
    }
    out.push(b')');
}

/// RFC 3501 ATOM-CHAR.
fn is_atom_char(c: u8) -> bool {
    c > 0x20 && c < 0x7f && !matches!(c, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// INTERNALDATE quoted: `"17-Jul-1996 02:44:25 -0700"`, in the timestamp's own zone. Values
/// outside what the syntax can carry are clamped (years 1–9999, zones within ±23:59).
pub fn write_internaldate(t: Timestamp, out: &mut Vec<u8>) {
    // 0001-01-01T00:00:00 and 9999-12-31T23:59:59, local time.
    const MIN: i64 = -62_135_596_800;
    const MAX: i64 = 253_402_300_799;
    let off = t.offset_minutes.clamp(-(23 * 60 + 59), 23 * 60 + 59);
    let local = t.unix.saturating_add(i64::from(off) * 60).clamp(MIN, MAX);
    let (y, mo, d) = mime::date::civil_from_days(local.div_euclid(86_400));
    let secs = local.rem_euclid(86_400);
    let two = |out: &mut Vec<u8>, v: i64| {
        out.push(b'0' + (v / 10 % 10) as u8);
        out.push(b'0' + (v % 10) as u8);
    };
    out.push(b'"');
    two(out, d);
    out.push(b'-');
    out.extend_from_slice(mime::date::MONTHS[(mo - 1).clamp(0, 11) as usize].as_bytes());
    out.push(b'-');
    two(out, y / 100);
    two(out, y % 100);
    out.push(b' ');
    two(out, secs / 3600);
    out.push(b':');
    two(out, secs / 60 % 60);
    out.push(b':');
    two(out, secs % 60);
    out.push(b' ');
    out.push(if off < 0 { b'-' } else { b'+' });
    let a = i64::from(off.unsigned_abs());
    two(out, a / 60);
    two(out, a % 60);
    out.push(b'"');
}

/// An IMAP literal `{n}\r\n` + `data`, each NUL sent as 0x80 (IMAP literals cannot carry NUL;
/// sizes stay the same). One copy; the replacement pass runs only if there is a NUL.
pub fn write_literal(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len() + 16);
    out.push(b'{');
    push_u64(out, data.len() as u64);
    out.extend_from_slice(b"}\r\n");
    let start = out.len();
    out.extend_from_slice(data);
    if let Some(first) = memchr(0, data) {
        let base = start + first;
        for i in memchr::memchr_iter(0, &data[first..]) {
            out[base + i] = 0x80;
        }
    }
}

/// Decimal digits without allocating.
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `raw[r]`, clamped to `raw` (meta and raw from a damaged store must not panic).
fn sub(raw: &[u8], r: Range<usize>) -> &[u8] {
    let end = r.end.min(raw.len());
    &raw[r.start.min(end)..end]
}

/// The `<origin.count>` substring; empty when the origin is at or beyond the end.
fn partial(data: &[u8], p: Option<(u32, u32)>) -> &[u8] {
    match p {
        None => data,
        Some((origin, count)) => {
            let o = (origin as usize).min(data.len());
            let end = o.saturating_add(count as usize).min(data.len());
            &data[o..end]
        }
    }
}

/// [`partial`] on a range of the message.
fn partial_range(r: Range<usize>, p: Option<(u32, u32)>) -> Range<usize> {
    match p {
        None => r,
        Some((origin, count)) => {
            let n = r.len();
            let o = (origin as usize).min(n);
            let end = o.saturating_add(count as usize).min(n);
            r.start + o..r.start + end
        }
    }
}

/// The part a section number designates, as Dovecot's `imap_msgpart_find` resolves it: in a
/// multipart, `n` is its n-th child; a non-multipart part has only number 1, which is the part
/// itself (so part 1 of a non-multipart message is its body) and must end the path unless the
/// part is message/rfc822; descending further into a message/rfc822 part continues in the
/// encapsulated message. Same result as `Part::find` wherever that finds a part.
pub fn find_part<'a>(top: &'a Part, path: &[u32]) -> Option<&'a Part> {
    let mut part = top;
    for (i, &num) in path.iter().enumerate() {
        let more = i + 1 < path.len();
        if part.is_multipart() && !part.children.is_empty() {
            part = part.children.get((num as usize).checked_sub(1)?)?;
        } else if num != 1 || (more && part.message.is_none()) {
            return None;
        }
        if more && let Some(m) = &part.message {
            part = &m.1;
        }
    }
    Some(part)
}

/// Where a section's bytes are in the message.
enum SectionRef {
    /// These bytes, as they are.
    Range(Range<usize>),
    /// HEADER.FIELDS[.NOT] of the header block at this range.
    Fields(Range<usize>),
}

/// Where the bytes of a section are: None when what it needs was not loaded (→ NIL), an empty
/// range when the section does not exist.
fn section_ref(what: &What, src: &mut dyn Source, meta: Option<&MessageMeta>) -> Option<SectionRef> {
    let len = src.len()?;
    let clamp = |r: Range<usize>| {
        let end = r.end.min(len);
        r.start.min(end)..end
    };
    let path = what.path();
    if path.is_empty() {
        let hdr = src.header_len(meta).min(len);
        return Some(match what {
            What::Header(_) => SectionRef::Range(0..hdr),
            What::Text(_) => SectionRef::Range(hdr..len),
            What::Fields { .. } => SectionRef::Fields(0..hdr),
            // Full; Part and Mime always have a path.
            _ => SectionRef::Range(0..len),
        });
    }
    let part = find_part(&meta?.part, path);
    // HEADER / TEXT / HEADER.FIELDS of a part: only of a message/rfc822 part, its message.
    let message = || part.and_then(|p| p.message.as_ref()).map(|m| &m.1);
    Some(match what {
        What::Part(_) => SectionRef::Range(part.map_or(0..0, |p| clamp(p.body_range()))),
        What::Mime(_) => SectionRef::Range(part.map_or(0..0, |p| clamp(p.header_range()))),
        What::Header(_) => SectionRef::Range(message().map_or(0..0, |m| clamp(m.header_range()))),
        What::Text(_) => SectionRef::Range(message().map_or(0..0, |m| clamp(m.body_range()))),
        What::Fields { .. } => match message() {
            Some(m) => SectionRef::Fields(clamp(m.header_range())),
            None => SectionRef::Range(0..0),
        },
        What::Full => SectionRef::Range(0..len),
    })
}

/// `mime::header_fields` (without allocating the name list for up to 32 names), minus the final
/// CRLF when the header has no blank line: RFC 3501 §6.4.5 includes the blank line "in all
/// header fetches, except in the case of a message which has no body and no blank line".
fn fields(header: &[u8], names: &[Vec<u8>], not: bool) -> Vec<u8> {
    let mut small: [&[u8]; 32] = [&[]; 32];
    let mut out = if names.len() <= small.len() {
        for (slot, n) in small.iter_mut().zip(names) {
            *slot = n;
        }
        mime::header_fields(header, &small[..names.len()], not)
    } else {
        let v: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        mime::header_fields(header, &v, not)
    };
    if !has_blank_line(header) && out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

/// Whether a header block (as `Source::header_len` / `Part::header_range` cut it) ends with its blank line.
fn has_blank_line(h: &[u8]) -> bool {
    h == b"\n" || h == b"\r\n" || h.ends_with(b"\n\n") || h.ends_with(b"\n\r\n")
}

// ----- BINARY (RFC 3516) ------------------------------------------------------------------

/// One piece of a BINARY section's decoded output, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// These bytes of the message, as they are.
    Raw(Range<usize>),
    /// The `Content-Transfer-Encoding` field of a part whose body is decoded, rewritten.
    Cte,
    /// These bytes of the message, decoded.
    Decode(Range<usize>, Encoding),
}

/// What a rewritten `Content-Transfer-Encoding` field says (Dovecot writes exactly this).
const CTE_BINARY: &[u8] = b"Content-Transfer-Encoding: binary\r\n";

/// A part (or a part inside the section) has an encoding no decoder knows: `NO [UNKNOWN-CTE]`
/// (RFC 3516 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownCte;

/// The pieces `BINARY[path]` is made of, as Dovecot 2.3 converts (compared on the wire):
/// - `BINARY[]`: the whole message; a part's body (`BINARY[n]`) when it is a leaf: the body,
///   decoded;
/// - a multipart part (or message): its body with each part inside converted in turn —
///   boundaries, preamble and epilogue as they are, each part's MIME header as it is except
///   that a decoded part's (first) `Content-Transfer-Encoding` field becomes
///   `Content-Transfer-Encoding: binary`;
/// - a message/rfc822 part: the encapsulated message converted, header included.
///
/// An empty list for a section that does not exist. `header` reads a part's header bytes (only
/// those of decoded parts are read); `len` clamps every range to the message.
pub fn binary_pieces(
    top: &Part,
    path: &[u32],
    len: usize,
    header: &mut dyn FnMut(Range<usize>) -> Vec<u8>,
) -> Result<Vec<Piece>, UnknownCte> {
    let mut w = Pieces { out: Vec::new(), len, header };
    if path.is_empty() {
        w.with_header(top)?;
    } else if let Some(part) = find_part(top, path) {
        match &part.message {
            Some(m) if Encoding::parse(&part.encoding) == Some(Encoding::Identity) => {
                w.raw(part.body_start as usize..m.1.header_start as usize);
                w.with_header(&m.1)?;
                w.raw(m.1.end as usize..part.end as usize);
            }
            _ => w.body(part)?,
        }
    }
    Ok(w.out)
}

struct Pieces<'a> {
    out: Vec<Piece>,
    len: usize,
    header: &'a mut dyn FnMut(Range<usize>) -> Vec<u8>,
}

impl Pieces<'_> {
    fn clamp(&self, r: Range<usize>) -> Range<usize> {
        let end = r.end.min(self.len);
        r.start.min(end)..end
    }
    /// Raw bytes, merged with raw bytes right before them.
    fn raw(&mut self, r: Range<usize>) {
        let r = self.clamp(r);
        if r.is_empty() {
            return;
        }
        if let Some(Piece::Raw(last)) = self.out.last_mut()
            && last.end == r.start
        {
            last.end = r.end;
            return;
        }
        self.out.push(Piece::Raw(r));
    }
    /// A part with its MIME header (or a message with its header).
    fn with_header(&mut self, p: &Part) -> Result<(), UnknownCte> {
        let enc = Encoding::parse(&p.encoding).ok_or(UnknownCte)?;
        let h = self.clamp(p.header_range());
        if enc != Encoding::Identity {
            let bytes = (self.header)(h.clone());
            if let Some(f) = mime::header::fields(&bytes).find(|f| f.is(&bytes, "Content-Transfer-Encoding")) {
                self.raw(h.start..h.start + f.lines.start);
                self.out.push(Piece::Cte);
                self.raw(h.start + f.lines.end..h.end);
                return self.body(p);
            }
        }
        self.raw(h);
        self.body(p)
    }
    /// A part's body, converted.
    fn body(&mut self, p: &Part) -> Result<(), UnknownCte> {
        let enc = Encoding::parse(&p.encoding).ok_or(UnknownCte)?;
        let (start, end) = (p.body_start as usize, p.end as usize);
        if enc != Encoding::Identity {
            let r = self.clamp(start..end);
            if !r.is_empty() {
                self.out.push(Piece::Decode(r, enc));
            }
            return Ok(());
        }
        if p.is_multipart() && !p.children.is_empty() {
            let mut pos = start;
            for c in &p.children {
                self.raw(pos..c.header_start as usize);
                self.with_header(c)?;
                pos = pos.max(c.end as usize);
            }
            self.raw(pos..end);
        } else if let Some(m) = &p.message {
            self.raw(start..m.1.header_start as usize);
            self.with_header(&m.1)?;
            self.raw(m.1.end as usize..end);
        } else {
            self.raw(start..end);
        }
        Ok(())
    }
}

/// Whether a BINARY item of `plan` meets an encoding no decoder knows in this message (then the
/// FETCH ends with `NO [UNKNOWN-CTE]` before this message's response).
pub fn unknown_cte(plan: &FetchPlan, meta: Option<&MessageMeta>) -> bool {
    let Some(meta) = meta else { return false };
    plan.items.iter().any(|i| match i {
        Item::Binary(b) => binary_pieces(&meta.part, &b.path, usize::MAX, &mut |_| Vec::new()).is_err(),
        _ => false,
    })
}

/// A BINARY section's decoded bytes, made a chunk at a time (sans I/O): [`BinaryStream::want`]
/// says which bytes of the message to read next, [`BinaryStream::feed`] takes them; only the
/// bytes within `window` (of the whole decoded section) are output.
#[derive(Debug)]
pub struct BinaryStream {
    pieces: Vec<Piece>,
    /// The current piece, and how far into its range it was read.
    next: usize,
    at: Option<usize>,
    asked: usize,
    decoder: Option<mime::transfer::Decoder>,
    scratch: Vec<u8>,
    produced: usize,
    window: Range<usize>,
}

impl BinaryStream {
    pub fn new(pieces: Vec<Piece>, window: Range<usize>) -> BinaryStream {
        BinaryStream { pieces, next: 0, at: None, asked: 0, decoder: None, scratch: Vec::new(), produced: 0, window }
    }

    /// Output bytes made so far (window or not).
    pub fn produced(&self) -> usize {
        self.produced
    }

    fn emit(produced: &mut usize, window: &Range<usize>, bytes: &[u8], out: &mut Vec<u8>) {
        let start = *produced;
        let end = start + bytes.len();
        let (lo, hi) = (window.start.max(start), window.end.min(end));
        if lo < hi {
            out.extend_from_slice(&bytes[lo - start..hi - start]);
        }
        *produced = end;
    }

    /// The next bytes of the message to read (at most `max`), after appending to `out` what needs
    /// no reading; None once the window is complete or the pieces are done.
    pub fn want(&mut self, max: usize, out: &mut Vec<u8>) -> Option<Range<usize>> {
        loop {
            if self.produced >= self.window.end {
                return None;
            }
            let (range, enc) = match self.pieces.get(self.next)? {
                Piece::Cte => {
                    Self::emit(&mut self.produced, &self.window, CTE_BINARY, out);
                    self.next += 1;
                    continue;
                }
                Piece::Raw(r) => (r.clone(), None),
                Piece::Decode(r, e) => (r.clone(), Some(*e)),
            };
            let at = *self.at.get_or_insert(range.start);
            if at >= range.end {
                if let Some(mut d) = self.decoder.take() {
                    self.scratch.clear();
                    d.finish(&mut self.scratch);
                    Self::emit(&mut self.produced, &self.window, &self.scratch, out);
                }
                self.next += 1;
                self.at = None;
                continue;
            }
            if let Some(e) = enc
                && self.decoder.is_none()
            {
                self.decoder = Some(mime::transfer::Decoder::new(e));
            }
            let end = at.saturating_add(max.max(1)).min(range.end);
            self.asked = end - at;
            return Some(at..end);
        }
    }

    /// The bytes of the range [`BinaryStream::want`] returned; fewer (a damaged store) end the piece.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let data = &data[..data.len().min(self.asked)];
        match &mut self.decoder {
            Some(d) => {
                self.scratch.clear();
                d.feed(data, &mut self.scratch);
                Self::emit(&mut self.produced, &self.window, &self.scratch, out);
            }
            None => Self::emit(&mut self.produced, &self.window, data, out),
        }
        if let Some(at) = &mut self.at {
            *at = if data.len() < self.asked { usize::MAX } else { *at + data.len() };
        }
        self.asked = 0;
    }
}

/// Runs `st` to its end with a synchronous reader, appending its output to `out`.
fn run_binary(st: &mut BinaryStream, chunk: usize, read: &mut dyn FnMut(Range<usize>) -> Vec<u8>, out: &mut Vec<u8>) {
    while let Some(r) = st.want(chunk, out) {
        let data = read(r);
        st.feed(&data, out);
    }
}

/// A BINARY section's decoded size, and whether it goes out as a literal8: decoded (a piece was
/// decoded) or NUL in it — Dovecot's choice (RFC 3516 §4.3 only asks for literal8 when there is a NUL).
fn measure(pieces: &[Piece], src: &mut dyn Source) -> (usize, bool) {
    let mut literal8 = pieces.iter().any(|p| matches!(p, Piece::Decode(..)));
    let chunk = src.chunk();
    let mut st = BinaryStream::new(pieces.to_vec(), 0..usize::MAX);
    let mut buf = Vec::new();
    while let Some(r) = st.want(chunk, &mut buf) {
        let data = src.bytes(r);
        st.feed(&data, &mut buf);
        literal8 |= memchr(0, &buf).is_some();
        buf.clear();
    }
    literal8 |= memchr(0, &buf).is_some();
    (st.produced(), literal8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::decode::Decoder;
    use imap_codec::imap_types::command::CommandBody;
    use imap_codec::imap_types::response::{Data, Response};
    use imap_codec::{CommandCodec, ResponseCodec};

    // ----- messages -------------------------------------------------------------------------

    const SIMPLE_HDR: &[u8] = b"Return-Path: <alice@example.com>\r\n\
From: Alice Example <alice@example.com>\r\n\
To: Bob <bob@example.org>\r\n\
Subject: Hello there\r\n\
Date: Wed, 17 Jul 1996 02:44:25 -0700\r\n\
Message-ID: <simple-1@example.com>\r\n\
X-Folded: first part\r\n  continued here\r\n\tand tab-continued\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n";
    const SIMPLE_BODY: &[u8] = b"Hello Bob,\r\nthis is a simple message.\r\n";

    const ALT: &[u8] = b"From: Carol <carol@example.net>\r\n\
To: dave@example.com\r\n\
Subject: Alternative\r\n\
Date: Thu, 1 Feb 2024 10:00:00 +0100\r\n\
Message-ID: <alt-2@example.net>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
\r\n\
This is a preamble.\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Gr\xc3\xbc\xc3\x9fe!\r\n\
--b1\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Hi</p>\r\n\
--b1--\r\n\
epilogue\r\n";

    const MIXED: &[u8] = b"From: Eve <eve@example.org>\r\n\
To: Frank <frank@example.com>, Grace <grace@example.com>\r\n\
Cc: hank@example.com\r\n\
Subject: Report attached\r\n\
Date: Mon, 3 Mar 2025 08:15:00 +0000\r\n\
Message-ID: <mixed-3@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: text/plain\r\n\
\r\n\
See attachment.\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"r.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"r.pdf\"\r\n\
\r\n\
JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K\r\n\
--outer--\r\n";

    const FWD: &[u8] = b"From: Ivan <ivan@example.com>\r\n\
To: judy@example.org\r\n\
Subject: Fwd: Alternative\r\n\
Date: Tue, 4 Mar 2025 09:00:00 -0500\r\n\
Message-ID: <fwd-4@example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"fw\"\r\n\
\r\n\
--fw\r\n\
Content-Type: text/plain\r\n\
\r\n\
Forwarding.\r\n\
--fw\r\n\
Content-Type: message/rfc822\r\n\
Content-Description: forwarded\r\n\
\r\n\
From: Carol <carol@example.net>\r\n\
Subject: Alternative\r\n\
Message-ID: <alt-2@example.net>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain\r\n\
\r\n\
plain\r\n\
--b1\r\n\
Content-Type: text/html\r\n\
\r\n\
<b>html</b>\r\n\
--b1--\r\n\
\r\n\
--fw--\r\n";
    /// FWD part 2's encapsulated message header and body.
    const FWD_INNER_HDR: &[u8] = b"From: Carol <carol@example.net>\r\n\
Subject: Alternative\r\n\
Message-ID: <alt-2@example.net>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
\r\n";
    const FWD_INNER_BODY: &[u8] = b"--b1\r\n\
Content-Type: text/plain\r\n\
\r\n\
plain\r\n\
--b1\r\n\
Content-Type: text/html\r\n\
\r\n\
<b>html</b>\r\n\
--b1--\r\n";

    const HEADERS_ONLY: &[u8] = b"From: kim@example.com\r\n\
Subject: no body\r\n\
Date: Fri, 5 Jan 2024 12:00:00 +0000\r\n";

    const NUL: &[u8] = b"From: leo@example.com\r\n\
Subject: nul inside\r\n\
\r\n\
before\x00after\r\nline2\x00\x00\r\n";

    const EIGHT_BIT: &[u8] = b"From: J\xc3\xbcrgen M\xc3\xbcller <juergen@example.de>\r\n\
To: Ren\xe9 <rene@example.fr>\r\n\
Subject: Gr\xc3\xbc\xc3\x9fe aus Berlin\r\n\
Date: Sat, 6 Jul 2024 18:30:00 +0200\r\n\
\r\n\
Body.\r\n";

    const TOP_RFC822: &[u8] = b"From: mo@example.com\r\n\
Subject: top-level rfc822\r\n\
MIME-Version: 1.0\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@example.com\r\n\
Subject: inner\r\n\
\r\n\
inner body\r\n";

    fn simple() -> Vec<u8> {
        [SIMPLE_HDR, SIMPLE_BODY].concat()
    }

    // ----- helpers --------------------------------------------------------------------------

    const DATE: Timestamp = Timestamp { unix: 837_596_665, offset_minutes: -420 };

    fn row(raw: &[u8]) -> MessageRow {
        MessageRow {
            uid: 42,
            flags: 0,
            keywords: vec![],
            modseq: 1,
            internaldate: DATE,
            size: raw.len() as u32,
            body_id: 1,
        }
    }

    /// Parse a whole command line (as a client sends it) into a plan.
    fn plan(line: &str) -> Result<FetchPlan, String> {
        let (rem, cmd) = CommandCodec::default().decode(line.as_bytes()).expect("command parses");
        assert!(rem.is_empty());
        match cmd.body {
            CommandBody::Fetch { macro_or_item_names, uid, .. } => FetchPlan::new(&macro_or_item_names, uid),
            other => panic!("not a FETCH: {other:?}"),
        }
    }

    /// Check that `out` is exactly one FETCH response imap-codec accepts; returns its item count.
    fn parses(out: &[u8]) -> usize {
        match ResponseCodec::default().decode(out) {
            Ok((rem, Response::Data(Data::Fetch { items, .. }))) => {
                assert!(rem.is_empty(), "trailing bytes after response: {}", rem.escape_ascii());
                items.as_ref().len()
            }
            other => panic!("imap-codec rejects {}: {other:?}", out.escape_ascii()),
        }
    }

    fn encode_with(plan: &FetchPlan, raw: &[u8], row: &MessageRow, seen_changed: bool, recent: bool) -> Vec<u8> {
        let meta = MessageMeta::extract(raw);
        let mut out = Vec::new();
        let m = FetchInput { seq: 3, row, recent, meta: Some(&meta), raw: Some(raw), seen_changed };
        encode(plan, &m, &mut out);
        parses(&out);
        out
    }

    /// `line` (a FETCH command) on `raw` as message 3, UID 42, no flags.
    fn run(line: &str, raw: &[u8]) -> Vec<u8> {
        let p = plan(line).expect("plan");
        encode_with(&p, raw, &row(raw), false, false)
    }

    /// A literal as it must appear.
    fn lit(data: &[u8]) -> Vec<u8> {
        [format!("{{{}}}\r\n", data.len()).as_bytes(), data].concat()
    }

    /// `* 3 FETCH (` + parts + `)\r\n`.
    fn resp(parts: &[&[u8]]) -> Vec<u8> {
        [b"* 3 FETCH (".as_slice(), &parts.concat(), b")\r\n"].concat()
    }

    #[track_caller]
    fn same(got: &[u8], want: &[u8]) {
        assert_eq!(got.escape_ascii().to_string(), want.escape_ascii().to_string());
    }

    // ----- single items ---------------------------------------------------------------------

    #[test]
    fn each_item_alone() {
        let m = simple();
        assert_eq!(m.len(), 363);
        same(&run("a FETCH 3 UID\r\n", &m), b"* 3 FETCH (UID 42)\r\n");
        same(&run("a FETCH 3 FLAGS\r\n", &m), b"* 3 FETCH (FLAGS ())\r\n");
        same(&run("a FETCH 3 INTERNALDATE\r\n", &m), b"* 3 FETCH (INTERNALDATE \"17-Jul-1996 02:44:25 -0700\")\r\n");
        same(&run("a FETCH 3 RFC822.SIZE\r\n", &m), b"* 3 FETCH (RFC822.SIZE 363)\r\n");
        same(
            &run("a FETCH 3 ENVELOPE\r\n", &m),
            b"* 3 FETCH (ENVELOPE (\"Wed, 17 Jul 1996 02:44:25 -0700\" \"Hello there\" \
((\"Alice Example\" NIL \"alice\" \"example.com\")) ((\"Alice Example\" NIL \"alice\" \"example.com\")) \
((\"Alice Example\" NIL \"alice\" \"example.com\")) ((\"Bob\" NIL \"bob\" \"example.org\")) NIL NIL NIL \
\"<simple-1@example.com>\"))\r\n",
        );
        same(
            &run("a FETCH 3 BODY\r\n", &m),
            b"* 3 FETCH (BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 39 2))\r\n",
        );
        same(
            &run("a FETCH 3 BODYSTRUCTURE\r\n", &m),
            b"* 3 FETCH (BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 39 2 NIL NIL NIL NIL))\r\n",
        );
        same(&run("a FETCH 3 BODY[]\r\n", &m), &resp(&[b"BODY[] {363}\r\n", &m]));
        same(&run("a FETCH 3 BODY.PEEK[]\r\n", &m), &resp(&[b"BODY[] {363}\r\n", &m]));
        same(&run("a FETCH 3 RFC822\r\n", &m), &resp(&[b"RFC822 {363}\r\n", &m]));
        same(&run("a FETCH 3 RFC822.HEADER\r\n", &m), &resp(&[b"RFC822.HEADER {324}\r\n", SIMPLE_HDR]));
        same(&run("a FETCH 3 RFC822.TEXT\r\n", &m), &resp(&[b"RFC822.TEXT {39}\r\n", SIMPLE_BODY]));
        same(&run("a FETCH 3 BODY.PEEK[HEADER]\r\n", &m), &resp(&[b"BODY[HEADER] {324}\r\n", SIMPLE_HDR]));
        same(&run("a FETCH 3 BODY.PEEK[TEXT]\r\n", &m), &resp(&[b"BODY[TEXT] {39}\r\n", SIMPLE_BODY]));
        same(&run("a FETCH 3 BODY.PEEK[1]\r\n", &m), &resp(&[b"BODY[1] {39}\r\n", SIMPLE_BODY]));
        // 1.MIME of a non-multipart message is the message header (Dovecot).
        same(&run("a FETCH 3 BODY.PEEK[1.MIME]\r\n", &m), &resp(&[b"BODY[1.MIME] {324}\r\n", SIMPLE_HDR]));
    }

    #[test]
    fn macros() {
        let m = simple();
        let env = b"ENVELOPE (\"Wed, 17 Jul 1996 02:44:25 -0700\" \"Hello there\" \
((\"Alice Example\" NIL \"alice\" \"example.com\")) ((\"Alice Example\" NIL \"alice\" \"example.com\")) \
((\"Alice Example\" NIL \"alice\" \"example.com\")) ((\"Bob\" NIL \"bob\" \"example.org\")) NIL NIL NIL \
\"<simple-1@example.com>\")";
        let fast = b"FLAGS () INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 363";
        same(&run("a FETCH 3 FAST\r\n", &m), &resp(&[fast]));
        same(&run("a FETCH 3 ALL\r\n", &m), &resp(&[fast, b" ", env]));
        same(
            &run("a FETCH 3 FULL\r\n", &m),
            &resp(&[fast, b" ", env, b" BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 39 2)"]),
        );
        let p = plan("a FETCH 1:* ALL\r\n").unwrap();
        assert!(p.wants_flags() && p.needs_meta() && !p.needs_raw() && !p.sets_seen());
        let p = plan("a FETCH 1:* FAST\r\n").unwrap();
        assert!(p.wants_flags() && !p.needs_meta() && !p.needs_raw());
    }

    #[test]
    fn order_and_duplicates() {
        let m = simple();
        // Request order is kept; repeated items are sent once; BODY[] and BODY.PEEK[] are one item.
        same(
            &run("a FETCH 3 (RFC822.SIZE UID FLAGS UID RFC822.SIZE)\r\n", &m),
            b"* 3 FETCH (RFC822.SIZE 363 UID 42 FLAGS ())\r\n",
        );
        let p = plan("a FETCH 3 (BODY.PEEK[] BODY[])\r\n").unwrap();
        assert!(p.sets_seen());
        same(&encode_with(&p, &m, &row(&m), false, false), &resp(&[b"BODY[] {363}\r\n", &m]));
        // Same data under two names: both sent.
        same(
            &run("a FETCH 3 (RFC822.HEADER BODY.PEEK[HEADER])\r\n", &m),
            &resp(&[b"RFC822.HEADER {324}\r\n", SIMPLE_HDR, b" BODY[HEADER] {324}\r\n", SIMPLE_HDR]),
        );
    }

    // ----- partial --------------------------------------------------------------------------

    #[test]
    fn partials() {
        let m = simple();
        same(&run("a FETCH 3 BODY.PEEK[]<0.6>\r\n", &m), b"* 3 FETCH (BODY[]<0> {6}\r\nReturn)\r\n");
        same(&run("a FETCH 3 BODY.PEEK[]<5.10>\r\n", &m), b"* 3 FETCH (BODY[]<5> {10}\r\nn-Path: <a)\r\n");
        // Truncated at the end; origin echoed.
        same(&run("a FETCH 3 BODY.PEEK[TEXT]<30.100>\r\n", &m), b"* 3 FETCH (BODY[TEXT]<30> {9}\r\nessage.\r\n)\r\n");
        // <0.n> larger than the data: still a partial response (RFC 3501: BODY[]<0>).
        same(&run("a FETCH 3 BODY.PEEK[]<0.4096>\r\n", &m), &resp(&[b"BODY[]<0> {363}\r\n", &m]));
        // Origin at or beyond the end: empty string.
        same(&run("a FETCH 3 BODY.PEEK[]<363.5>\r\n", &m), b"* 3 FETCH (BODY[]<363> {0}\r\n)\r\n");
        same(&run("a FETCH 3 BODY.PEEK[]<100000.5>\r\n", &m), b"* 3 FETCH (BODY[]<100000> {0}\r\n)\r\n");
        same(
            &run("a FETCH 3 BODY.PEEK[]<4294967295.4294967295>\r\n", &m),
            b"* 3 FETCH (BODY[]<4294967295> {0}\r\n)\r\n",
        );
        // Partial of HEADER.FIELDS is taken after subsetting.
        same(
            &run("a FETCH 3 BODY.PEEK[HEADER.FIELDS (subject)]<3.7>\r\n", &m),
            b"* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)]<3> {7}\r\nject: H)\r\n",
        );
        same(
            &run("a FETCH 3 BODY.PEEK[1.MIME]<318.10>\r\n", &m),
            b"* 3 FETCH (BODY[1.MIME]<318> {6}\r\nii\r\n\r\n)\r\n",
        );
        // Dovecot answers exactly this for the same request (two partials of one section).
        same(
            &run("a FETCH 3 (BODY.PEEK[TEXT]<3.5> BODY.PEEK[TEXT]<3.6>)\r\n", &m),
            b"* 3 FETCH (BODY[TEXT]<3> {5}\r\nlo Bo BODY[TEXT]<3> {6}\r\nlo Bob)\r\n",
        );
    }

    // ----- sections -------------------------------------------------------------------------

    #[test]
    fn header_fields() {
        let m = simple();
        // Folded header kept with its continuation lines, message order, names upper-cased.
        same(
            &run("a FETCH 3 (BODY.PEEK[HEADER.FIELDS (subject X-FOLDED from)])\r\n", &m),
            b"* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT X-FOLDED FROM)] {125}\r\n\
From: Alice Example <alice@example.com>\r\n\
Subject: Hello there\r\n\
X-Folded: first part\r\n  continued here\r\n\tand tab-continued\r\n\
\r\n)\r\n",
        );
        // .NOT; a quoted name stays quoted (Dovecot's echo).
        same(
            &run("a FETCH 3 (BODY.PEEK[HEADER.FIELDS.NOT (From \"Subject\" x-folded)])\r\n", &m),
            b"* 3 FETCH (BODY[HEADER.FIELDS.NOT (FROM \"SUBJECT\" X-FOLDED)] {201}\r\n\
Return-Path: <alice@example.com>\r\n\
To: Bob <bob@example.org>\r\n\
Date: Wed, 17 Jul 1996 02:44:25 -0700\r\n\
Message-ID: <simple-1@example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n)\r\n",
        );
        // A literal name becomes a quoted one; odd names are quoted with escapes; nothing
        // matching leaves the blank line alone.
        same(
            &run("a FETCH 3 (BODY.PEEK[HEADER.FIELDS ({4+}\r\nfrom \"X y\" \"a\\\"b\" \"\")])\r\n", &m),
            b"* 3 FETCH (BODY[HEADER.FIELDS (\"FROM\" \"X Y\" \"A\\\"B\" \"\")] {43}\r\n\
From: Alice Example <alice@example.com>\r\n\r\n)\r\n",
        );
        // 8-bit in a name: echoed as a literal; `]` is an ASTRING-CHAR and echoed as given.
        same(
            &run("a FETCH 3 (BODY.PEEK[HEADER.FIELDS ({3+}\r\nx\u{e9} a])])\r\n", &m),
            "* 3 FETCH (BODY[HEADER.FIELDS ({3}\r\nX\u{e9} A])] {2}\r\n\r\n)\r\n".as_bytes(),
        );
        same(
            &run("a FETCH 3 (BODY.PEEK[HEADER.FIELDS (X-TUID)])\r\n", &m),
            b"* 3 FETCH (BODY[HEADER.FIELDS (X-TUID)] {2}\r\n\r\n)\r\n",
        );
        // A header-only message has no blank line, and HEADER.FIELDS adds none (RFC 3501
        // §6.4.5; Dovecot does so for .NOT but adds one for HEADER.FIELDS).
        same(
            &run(
                "a FETCH 3 (BODY.PEEK[HEADER.FIELDS (Subject)] BODY.PEEK[HEADER.FIELDS.NOT (Subject)])\r\n",
                HEADERS_ONLY,
            ),
            b"* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: no body\r\n \
BODY[HEADER.FIELDS.NOT (SUBJECT)] {61}\r\nFrom: kim@example.com\r\nDate: Fri, 5 Jan 2024 12:00:00 +0000\r\n)\r\n",
        );
    }

    #[test]
    fn multipart_alternative() {
        let hdr = &ALT[..mime::header::split(ALT).body_start];
        assert_eq!(hdr.len(), 221);
        same(&run("a FETCH 3 BODY.PEEK[HEADER]\r\n", ALT), &resp(&[b"BODY[HEADER] {221}\r\n", hdr]));
        same(&run("a FETCH 3 BODY.PEEK[TEXT]\r\n", ALT), &resp(&[b"BODY[TEXT] ", &lit(&ALT[221..])]));
        same(&run("a FETCH 3 BODY.PEEK[1]\r\n", ALT), b"* 3 FETCH (BODY[1] {8}\r\nGr\xc3\xbc\xc3\x9fe!)\r\n");
        same(&run("a FETCH 3 BODY.PEEK[2]\r\n", ALT), b"* 3 FETCH (BODY[2] {9}\r\n<p>Hi</p>)\r\n");
        same(
            &run("a FETCH 3 BODY.PEEK[1.MIME]\r\n", ALT),
            b"* 3 FETCH (BODY[1.MIME] {76}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n)\r\n",
        );
        same(
            &run("a FETCH 3 BODY.PEEK[2.MIME]\r\n", ALT),
            b"* 3 FETCH (BODY[2.MIME] {42}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n)\r\n",
        );
        // Dovecot's leniency: a final ".1" on a non-multipart part is that part.
        same(&run("a FETCH 3 BODY.PEEK[1.1]\r\n", ALT), b"* 3 FETCH (BODY[1.1] {8}\r\nGr\xc3\xbc\xc3\x9fe!)\r\n");
        // Parts that do not exist: empty.
        same(&run("a FETCH 3 BODY.PEEK[3]\r\n", ALT), b"* 3 FETCH (BODY[3] {0}\r\n)\r\n");
        same(&run("a FETCH 3 BODY.PEEK[1.2]\r\n", ALT), b"* 3 FETCH (BODY[1.2] {0}\r\n)\r\n");
        same(&run("a FETCH 3 BODY.PEEK[1.1.1]\r\n", ALT), b"* 3 FETCH (BODY[1.1.1] {0}\r\n)\r\n");
        same(&run("a FETCH 3 BODY.PEEK[1.HEADER]\r\n", ALT), b"* 3 FETCH (BODY[1.HEADER] {0}\r\n)\r\n");
        same(&run("a FETCH 3 BODY.PEEK[1.TEXT]\r\n", ALT), b"* 3 FETCH (BODY[1.TEXT] {0}\r\n)\r\n");
        same(
            &run("a FETCH 3 BODY.PEEK[1.HEADER.FIELDS (From)]\r\n", ALT),
            b"* 3 FETCH (BODY[1.HEADER.FIELDS (FROM)] {0}\r\n)\r\n",
        );
        same(
            &run("a FETCH 3 BODYSTRUCTURE\r\n", ALT),
            b"* 3 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"8bit\" 8 0 NIL NIL NIL NIL)\
(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 9 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"b1\") NIL NIL NIL))\r\n",
        );
    }

    #[test]
    fn multipart_mixed_attachment() {
        same(&run("a FETCH 3 BODY.PEEK[1]\r\n", MIXED), b"* 3 FETCH (BODY[1] {15}\r\nSee attachment.)\r\n");
        same(
            &run("a FETCH 3 (BODY.PEEK[2] BODY.PEEK[2.MIME])\r\n", MIXED),
            b"* 3 FETCH (BODY[2] {64}\r\nJVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K \
BODY[2.MIME] {133}\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"r.pdf\"\r\n\r\n)\r\n",
        );
        same(
            &run("a FETCH 3 BODY\r\n", MIXED),
            b"* 3 FETCH (BODY ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 15 0)\
(\"application\" \"pdf\" (\"name\" \"r.pdf\") NIL NIL \"base64\" 64) \"mixed\"))\r\n",
        );
    }

    #[test]
    fn forwarded_message() {
        let inner = [FWD_INNER_HDR, FWD_INNER_BODY].concat();
        same(&run("a FETCH 3 BODY.PEEK[1]\r\n", FWD), b"* 3 FETCH (BODY[1] {11}\r\nForwarding.)\r\n");
        // Part 2 is the whole encapsulated message.
        same(&run("a FETCH 3 BODY.PEEK[2]\r\n", FWD), &resp(&[b"BODY[2] {256}\r\n", &inner]));
        same(&run("a FETCH 3 BODY.PEEK[2.HEADER]\r\n", FWD), &resp(&[b"BODY[2.HEADER] {161}\r\n", FWD_INNER_HDR]));
        same(&run("a FETCH 3 BODY.PEEK[2.TEXT]\r\n", FWD), &resp(&[b"BODY[2.TEXT] {95}\r\n", FWD_INNER_BODY]));
        same(
            &run("a FETCH 3 BODY.PEEK[2.MIME]\r\n", FWD),
            b"* 3 FETCH (BODY[2.MIME] {64}\r\nContent-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n)\r\n",
        );
        same(&run("a FETCH 3 BODY.PEEK[2.1]\r\n", FWD), b"* 3 FETCH (BODY[2.1] {5}\r\nplain)\r\n");
        same(&run("a FETCH 3 BODY.PEEK[2.2]\r\n", FWD), b"* 3 FETCH (BODY[2.2] {11}\r\n<b>html</b>)\r\n");
        same(
            &run("a FETCH 3 BODY.PEEK[2.1.MIME]\r\n", FWD),
            b"* 3 FETCH (BODY[2.1.MIME] {28}\r\nContent-Type: text/plain\r\n\r\n)\r\n",
        );
        same(
            &run("a FETCH 3 BODY.PEEK[2.HEADER.FIELDS (subject)]\r\n", FWD),
            b"* 3 FETCH (BODY[2.HEADER.FIELDS (SUBJECT)] {24}\r\nSubject: Alternative\r\n\r\n)\r\n",
        );
        same(
            &run("a FETCH 3 BODY.PEEK[2.HEADER.FIELDS.NOT (subject from message-id)]\r\n", FWD),
            b"* 3 FETCH (BODY[2.HEADER.FIELDS.NOT (SUBJECT FROM MESSAGE-ID)] {73}\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n)\r\n",
        );
        // As Dovecot: 2.1.1 is 2.1 (final .1 on a leaf); these do not exist.
        same(&run("a FETCH 3 BODY.PEEK[2.1.1]\r\n", FWD), b"* 3 FETCH (BODY[2.1.1] {5}\r\nplain)\r\n");
        for s in ["2.1.HEADER", "2.1.TEXT", "3", "2.3", "2.1.1.1", "1.1.1", "1.2"] {
            same(
                &run(&format!("a FETCH 3 BODY.PEEK[{s}]\r\n"), FWD),
                format!("* 3 FETCH (BODY[{s}] {{0}}\r\n)\r\n").as_bytes(),
            );
        }
        same(
            &run("a FETCH 3 BODYSTRUCTURE\r\n", FWD),
            b"* 3 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 0 NIL NIL NIL NIL)\
(\"message\" \"rfc822\" NIL NIL \"forwarded\" \"7bit\" 256 (NIL \"Alternative\" ((\"Carol\" NIL \"carol\" \"example.net\")) \
((\"Carol\" NIL \"carol\" \"example.net\")) ((\"Carol\" NIL \"carol\" \"example.net\")) NIL NIL NIL NIL \"<alt-2@example.net>\") \
((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"us-ascii\") \
NIL NIL \"7bit\" 11 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"b1\") NIL NIL NIL) 15 NIL NIL NIL NIL) \"mixed\" \
(\"boundary\" \"fw\") NIL NIL NIL))\r\n",
        );
    }

    #[test]
    fn top_level_message_rfc822() {
        let inner_hdr = b"From: inner@example.com\r\nSubject: inner\r\n\r\n";
        same(&run("a FETCH 3 BODY.PEEK[1]\r\n", TOP_RFC822), &resp(&[b"BODY[1] ", &lit(&TOP_RFC822[100..])]));
        same(&run("a FETCH 3 BODY.PEEK[1.HEADER]\r\n", TOP_RFC822), &resp(&[b"BODY[1.HEADER] {43}\r\n", inner_hdr]));
        same(
            &run("a FETCH 3 BODY.PEEK[1.TEXT]\r\n", TOP_RFC822),
            b"* 3 FETCH (BODY[1.TEXT] {12}\r\ninner body\r\n)\r\n",
        );
        same(&run("a FETCH 3 BODY.PEEK[1.1]\r\n", TOP_RFC822), b"* 3 FETCH (BODY[1.1] {12}\r\ninner body\r\n)\r\n");
        same(&run("a FETCH 3 BODY.PEEK[1.MIME]\r\n", TOP_RFC822), &resp(&[b"BODY[1.MIME] ", &lit(&TOP_RFC822[..100])]));
        same(&run("a FETCH 3 BODY.PEEK[1.1.MIME]\r\n", TOP_RFC822), &resp(&[b"BODY[1.1.MIME] {43}\r\n", inner_hdr]));
        for s in ["2", "1.2", "1.1.1", "1.1.2"] {
            same(
                &run(&format!("a FETCH 3 BODY.PEEK[{s}]\r\n"), TOP_RFC822),
                format!("* 3 FETCH (BODY[{s}] {{0}}\r\n)\r\n").as_bytes(),
            );
        }
    }

    #[test]
    fn headers_only_message() {
        same(&run("a FETCH 3 BODY.PEEK[HEADER]\r\n", HEADERS_ONLY), &resp(&[b"BODY[HEADER] {79}\r\n", HEADERS_ONLY]));
        same(&run("a FETCH 3 BODY.PEEK[TEXT]\r\n", HEADERS_ONLY), b"* 3 FETCH (BODY[TEXT] {0}\r\n)\r\n");
        same(&run("a FETCH 3 BODY.PEEK[1]\r\n", HEADERS_ONLY), b"* 3 FETCH (BODY[1] {0}\r\n)\r\n");
        same(&run("a FETCH 3 BODY.PEEK[1.MIME]\r\n", HEADERS_ONLY), &resp(&[b"BODY[1.MIME] {79}\r\n", HEADERS_ONLY]));
        same(&run("a FETCH 3 RFC822.TEXT\r\n", HEADERS_ONLY), b"* 3 FETCH (RFC822.TEXT {0}\r\n)\r\n");
    }

    #[test]
    fn nul_bytes_become_0x80() {
        assert_eq!(NUL.len(), 69);
        let want_body = b"before\x80after\r\nline2\x80\x80\r\n";
        let mut want_all = NUL.to_vec();
        want_all[46..].copy_from_slice(want_body);
        same(&run("a FETCH 3 BODY.PEEK[]\r\n", NUL), &resp(&[b"BODY[] {69}\r\n", &want_all]));
        same(&run("a FETCH 3 BODY.PEEK[TEXT]\r\n", NUL), &resp(&[b"BODY[TEXT] {23}\r\n", want_body]));
        same(&run("a FETCH 3 BODY.PEEK[TEXT]<7.9>\r\n", NUL), b"* 3 FETCH (BODY[TEXT]<7> {9}\r\nafter\r\nli)\r\n");
        same(&run("a FETCH 3 BODY.PEEK[TEXT]<19.3>\r\n", NUL), b"* 3 FETCH (BODY[TEXT]<19> {3}\r\n\x80\x80\r)\r\n");
        // In a header too (HEADER.FIELDS output is computed, then sent the same way).
        let m = b"Subject: a\x00b\r\nX: y\r\n\r\nbody\r\n";
        same(
            &run("a FETCH 3 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[HEADER])\r\n", m),
            b"* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {16}\r\nSubject: a\x80b\r\n\r\n BODY[HEADER] {22}\r\nSubject: a\x80b\r\nX: y\r\n\r\n)\r\n",
        );
        let mut out = Vec::new();
        write_literal(b"\x00", &mut out);
        same(&out, b"{1}\r\n\x80");
    }

    #[test]
    fn eight_bit_headers() {
        // Strings that are not printable ASCII go as literals; raw header bytes are sent as
        // they are (the envelope reads the undeclared Latin-1 "Ren\xe9" as UTF-8 "René").
        same(
            &run("a FETCH 3 ENVELOPE\r\n", EIGHT_BIT),
            b"* 3 FETCH (ENVELOPE (\"Sat, 6 Jul 2024 18:30:00 +0200\" {18}\r\nGr\xc3\xbc\xc3\x9fe aus Berlin \
(({15}\r\nJ\xc3\xbcrgen M\xc3\xbcller NIL \"juergen\" \"example.de\")) (({15}\r\nJ\xc3\xbcrgen M\xc3\xbcller NIL \
\"juergen\" \"example.de\")) (({15}\r\nJ\xc3\xbcrgen M\xc3\xbcller NIL \"juergen\" \"example.de\")) \
(({5}\r\nRen\xc3\xa9 NIL \"rene\" \"example.fr\")) NIL NIL NIL NIL))\r\n",
        );
        same(
            &run("a FETCH 3 BODY.PEEK[HEADER.FIELDS (To Subject)]\r\n", EIGHT_BIT),
            b"* 3 FETCH (BODY[HEADER.FIELDS (TO SUBJECT)] {59}\r\nTo: Ren\xe9 <rene@example.fr>\r\n\
Subject: Gr\xc3\xbc\xc3\x9fe aus Berlin\r\n\r\n)\r\n",
        );
    }

    // ----- UID, \Seen, flags ----------------------------------------------------------------

    #[test]
    fn uid_fetch_adds_uid() {
        let m = simple();
        same(&run("a UID FETCH 42 FLAGS\r\n", &m), b"* 3 FETCH (UID 42 FLAGS ())\r\n");
        same(&run("a UID FETCH 42 (FLAGS UID)\r\n", &m), b"* 3 FETCH (FLAGS () UID 42)\r\n");
        same(
            &run("a UID FETCH 42 FAST\r\n", &m),
            b"* 3 FETCH (UID 42 FLAGS () INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 363)\r\n",
        );
        assert!(plan("a UID FETCH 1:* FLAGS\r\n").unwrap().returns_uid());
        assert!(!plan("a FETCH 1:* FLAGS\r\n").unwrap().returns_uid());
        assert!(plan("a FETCH 1:* (FLAGS UID)\r\n").unwrap().returns_uid());
    }

    #[test]
    fn seen_implication() {
        for (line, seen) in [
            ("a FETCH 1 BODY[]\r\n", true),
            ("a FETCH 1 BODY[TEXT]<0.10>\r\n", true),
            ("a FETCH 1 BODY[HEADER.FIELDS (From)]\r\n", true),
            ("a FETCH 1 BODY[1.MIME]\r\n", true),
            ("a FETCH 1 RFC822\r\n", true),
            ("a FETCH 1 RFC822.TEXT\r\n", true),
            ("a FETCH 1 RFC822.HEADER\r\n", false),
            ("a FETCH 1 BODY.PEEK[]\r\n", false),
            ("a FETCH 1 (BODY.PEEK[] BODY[2])\r\n", true),
            ("a FETCH 1 (FLAGS BODY BODYSTRUCTURE ENVELOPE)\r\n", false),
            ("a FETCH 1 FULL\r\n", false),
        ] {
            assert_eq!(plan(line).unwrap().sets_seen(), seen, "{line}");
        }
        let m = simple();
        let mut r = row(&m);
        r.flags = flag::SEEN;
        // FLAGS added after the implicit UID (where Dovecot puts it too) when not requested...
        let p = plan("a UID FETCH 42 BODY[HEADER.FIELDS (Subject)]\r\n").unwrap();
        same(
            &encode_with(&p, &m, &r, true, false),
            b"* 3 FETCH (UID 42 FLAGS (\\Seen) BODY[HEADER.FIELDS (SUBJECT)] {24}\r\nSubject: Hello there\r\n\r\n)\r\n",
        );
        // ... first without UID FETCH (curl: `FETCH 1 BODY[]`) ...
        let p = plan("a FETCH 3 BODY[]<0.3>\r\n").unwrap();
        same(&encode_with(&p, &m, &r, true, false), b"* 3 FETCH (FLAGS (\\Seen) BODY[]<0> {3}\r\nRet)\r\n");
        // ... and only once when requested.
        let p = plan("a FETCH 3 (RFC822.TEXT FLAGS)\r\n").unwrap();
        same(
            &encode_with(&p, &m, &r, true, true),
            &resp(&[b"RFC822.TEXT {39}\r\n", SIMPLE_BODY, b" FLAGS (\\Seen \\Recent)"]),
        );
        // Not changed: not added.
        let p = plan("a FETCH 3 BODY[]<0.3>\r\n").unwrap();
        same(&encode_with(&p, &m, &r, false, false), b"* 3 FETCH (BODY[]<0> {3}\r\nRet)\r\n");
    }

    #[test]
    fn flags_lists() {
        let mut out = Vec::new();
        write_flags(0, &[], false, &mut out);
        same(&out, b"()");
        out.clear();
        write_flags(0, &[], true, &mut out);
        same(&out, b"(\\Recent)");
        out.clear();
        let kw =
            ["$Junk".to_string(), "$label1".into(), "bad kw".into(), String::new(), "a\\b".into(), "NonJunk".into()];
        write_flags(0x1f, &kw, true, &mut out);
        same(&out, b"(\\Seen \\Answered \\Flagged \\Deleted \\Draft $Junk $label1 NonJunk \\Recent)");
        out.clear();
        write_flags(flag::FLAGGED | flag::SEEN, &kw[..1], false, &mut out);
        same(&out, b"(\\Seen \\Flagged $Junk)");
        out.clear();
        write_flags_fetch(7, Some(9), flag::ANSWERED, &[], false, &mut out);
        same(&out, b"* 7 FETCH (UID 9 FLAGS (\\Answered))\r\n");
        parses(&out);
        out.clear();
        write_flags_fetch(4294967295, None, 0x1f, &kw, true, &mut out);
        parses(&out);
        let m = simple();
        let mut r = row(&m);
        r.flags = flag::SEEN | flag::DRAFT;
        r.keywords = vec!["$Forwarded".into()];
        let p = plan("a FETCH 3 FLAGS\r\n").unwrap();
        same(&encode_with(&p, &m, &r, false, true), b"* 3 FETCH (FLAGS (\\Seen \\Draft $Forwarded \\Recent))\r\n");
    }

    #[test]
    fn internaldate() {
        let d = |unix, offset_minutes| {
            let mut out = Vec::new();
            write_internaldate(Timestamp { unix, offset_minutes }, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(d(837_596_665, -420), "\"17-Jul-1996 02:44:25 -0700\"");
        assert_eq!(d(1_704_416_400, 0), "\"05-Jan-2024 01:00:00 +0000\"");
        assert_eq!(d(951_868_799, 0), "\"29-Feb-2000 23:59:59 +0000\"");
        assert_eq!(d(951_868_799, 1), "\"01-Mar-2000 00:00:59 +0001\"");
        assert_eq!(d(0, 330), "\"01-Jan-1970 05:30:00 +0530\"");
        assert_eq!(d(0, -210), "\"31-Dec-1969 20:30:00 -0330\"");
        assert_eq!(d(-1, 0), "\"31-Dec-1969 23:59:59 +0000\"");
        // Out-of-range values are clamped into what the syntax can carry.
        assert_eq!(d(i64::MAX, i32::MAX), "\"31-Dec-9999 23:59:59 +2359\"");
        assert_eq!(d(i64::MIN, i32::MIN), "\"01-Jan-0001 00:00:00 -2359\"");
        // The calendar itself: `mime::date`'s tests.
        // Every produced date parses as an IMAP date-time.
        let m = simple();
        let p = plan("a FETCH 3 INTERNALDATE\r\n").unwrap();
        for unix in [i64::MIN, -62_135_596_800, -1, 0, 1_000_000_000, 253_402_300_799, i64::MAX] {
            for offset_minutes in [i32::MIN, -1439, -60, 0, 59, 840, 1439, i32::MAX] {
                let mut r = row(&m);
                r.internaldate = Timestamp { unix, offset_minutes };
                encode_with(&p, &m, &r, false, false);
            }
        }
    }

    // ----- plans ----------------------------------------------------------------------------

    #[test]
    fn binary_plans() {
        // (line, sets \Seen)
        for (line, seen) in [
            ("a FETCH 1 BINARY[1]\r\n", true),
            ("a FETCH 1 BINARY.PEEK[1]\r\n", false),
            ("a FETCH 1 BINARY.PEEK[]<0.10>\r\n", false),
            ("a FETCH 1 BINARY.SIZE[1]\r\n", false),
            ("a FETCH 1 (UID BINARY[])\r\n", true),
        ] {
            let p = plan(line).unwrap();
            assert_eq!((p.needs_meta(), p.needs_raw(), p.sets_seen()), (true, true, seen), "{line}");
        }
        let none = MacroOrMessageDataItemNames::MessageDataItemNames(vec![]);
        assert!(FetchPlan::new(&none, false).is_err());
    }

    #[test]
    fn what_each_plan_needs() {
        // (line, needs_meta, needs_raw)
        for (line, meta, raw) in [
            ("a FETCH 1 (UID FLAGS RFC822.SIZE INTERNALDATE)\r\n", false, false),
            ("a FETCH 1 ENVELOPE\r\n", true, false),
            ("a FETCH 1 BODY\r\n", true, false),
            ("a FETCH 1 BODYSTRUCTURE\r\n", true, false),
            ("a FETCH 1 BODY.PEEK[]\r\n", false, true),
            ("a FETCH 1 BODY.PEEK[HEADER]\r\n", false, true),
            ("a FETCH 1 BODY.PEEK[TEXT]<0.5>\r\n", false, true),
            ("a FETCH 1 BODY.PEEK[HEADER.FIELDS (From)]\r\n", false, true),
            ("a FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (From)]\r\n", false, true),
            ("a FETCH 1 RFC822\r\n", false, true),
            ("a FETCH 1 RFC822.HEADER\r\n", false, true),
            ("a FETCH 1 RFC822.TEXT\r\n", false, true),
            ("a FETCH 1 BODY.PEEK[1]\r\n", true, true),
            ("a FETCH 1 BODY.PEEK[1.MIME]\r\n", true, true),
            ("a FETCH 1 BODY.PEEK[2.HEADER]\r\n", true, true),
            ("a FETCH 1 BODY.PEEK[2.TEXT]\r\n", true, true),
            ("a FETCH 1 BODY.PEEK[2.HEADER.FIELDS (A)]\r\n", true, true),
        ] {
            let p = plan(line).unwrap();
            assert_eq!((p.needs_meta(), p.needs_raw()), (meta, raw), "{line}");
        }
    }

    #[test]
    fn missing_meta_or_raw_gives_nil() {
        let m = simple();
        let r = row(&m);
        let p = plan("a FETCH 3 (UID ENVELOPE BODY BODYSTRUCTURE BODY.PEEK[] BODY.PEEK[1] RFC822.HEADER)\r\n").unwrap();
        let mut out = Vec::new();
        encode(
            &p,
            &FetchInput { seq: 3, row: &r, recent: false, meta: None, raw: None, seen_changed: false },
            &mut out,
        );
        same(
            &out,
            b"* 3 FETCH (UID 42 ENVELOPE NIL BODY NIL BODYSTRUCTURE NIL BODY[] NIL BODY[1] NIL RFC822.HEADER NIL)\r\n",
        );
        // Raw alone is enough for the top-level sections; a part needs the meta.
        let p =
            plan("a FETCH 3 (BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.5> BODY.PEEK[HEADER.FIELDS (To)] BODY.PEEK[1])\r\n")
                .unwrap();
        out.clear();
        encode(
            &p,
            &FetchInput { seq: 3, row: &r, recent: false, meta: None, raw: Some(&m), seen_changed: false },
            &mut out,
        );
        same(
            &out,
            &resp(&[
                b"BODY[HEADER] {324}\r\n",
                SIMPLE_HDR,
                b" BODY[TEXT]<0> {5}\r\nHello BODY[HEADER.FIELDS (TO)] {29}\r\nTo: Bob <bob@example.org>\r\n\r\n BODY[1] NIL",
            ]),
        );
        // Meta and raw that do not belong together (damaged store) must not panic.
        let other = MessageMeta::extract(FWD);
        let p = plan("a FETCH 3 (BODY.PEEK[2.1] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.MIME] BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[2.HEADER.FIELDS (A)])\r\n").unwrap();
        for raw in [&b""[..], &b"x"[..], HEADERS_ONLY] {
            out.clear();
            encode(
                &p,
                &FetchInput { seq: 3, row: &r, recent: false, meta: Some(&other), raw: Some(raw), seen_changed: false },
                &mut out,
            );
            parses(&out);
        }
    }

    // ----- what clients send ----------------------------------------------------------------

    const TB_HEADERS: &str = "From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups \
In-Reply-To Content-Type Reply-To Received";

    #[test]
    fn thunderbird() {
        let m = simple();
        let line = format!("a5 UID fetch 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS ({TB_HEADERS})])\r\n");
        let p = plan(&line).unwrap();
        assert!(!p.needs_meta() && p.needs_raw() && !p.sets_seen() && p.wants_flags());
        same(
            &encode_with(&p, &m, &row(&m), false, false),
            b"* 3 FETCH (UID 42 RFC822.SIZE 363 FLAGS () BODY[HEADER.FIELDS (FROM TO CC BCC SUBJECT DATE MESSAGE-ID \
PRIORITY X-PRIORITY REFERENCES NEWSGROUPS IN-REPLY-TO CONTENT-TYPE REPLY-TO RECEIVED)] {211}\r\n\
From: Alice Example <alice@example.com>\r\n\
To: Bob <bob@example.org>\r\n\
Subject: Hello there\r\n\
Date: Wed, 17 Jul 1996 02:44:25 -0700\r\n\
Message-ID: <simple-1@example.com>\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n)\r\n",
        );
        same(&run("a3 UID fetch 1:* (FLAGS)\r\n", &m), b"* 3 FETCH (UID 42 FLAGS ())\r\n");
        same(
            &run("a9 UID fetch 1:12 (UID RFC822.SIZE BODY.PEEK[])\r\n", &m),
            &resp(&[b"UID 42 RFC822.SIZE 363 BODY[] {363}\r\n", &m]),
        );
    }

    #[test]
    fn mbsync_curl_imaplib() {
        let m = simple();
        let p = plan("5 UID FETCH 1:* (UID FLAGS RFC822.SIZE)\r\n").unwrap();
        assert!(!p.needs_meta() && !p.needs_raw() && !p.sets_seen());
        same(&encode_with(&p, &m, &row(&m), false, false), b"* 3 FETCH (UID 42 FLAGS () RFC822.SIZE 363)\r\n");
        same(
            &run("6 UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (X-TUID)])\r\n", &m),
            b"* 3 FETCH (UID 42 FLAGS () RFC822.SIZE 363 BODY[HEADER.FIELDS (X-TUID)] {2}\r\n\r\n)\r\n",
        );
        same(&run("7 UID FETCH 42 (BODY.PEEK[])\r\n", &m), &resp(&[b"UID 42 BODY[] {363}\r\n", &m]));
        // curl: FETCH 1 BODY[] (sets \Seen; the session passes seen_changed).
        let p = plan("C1 FETCH 1 BODY[]\r\n").unwrap();
        assert!(p.sets_seen() && p.needs_raw() && !p.needs_meta());
        // imaplib: fetch(1, '(RFC822)')
        same(&run("ABCD3 FETCH 1 (RFC822)\r\n", &m), &resp(&[b"RFC822 {363}\r\n", &m]));
    }

    // ----- sweeps ---------------------------------------------------------------------------

    const SWEEP: &str = "a FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY[] BODY[1] \
BODY[HEADER.FIELDS (Subject)])\r\n";

    /// Every section form, for robustness sweeps.
    const ALL_SECTIONS: &str = "a UID FETCH 1 (BODY BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[2] \
BODY.PEEK[1.MIME] BODY.PEEK[2.MIME] BODY.PEEK[1.1] BODY.PEEK[2.1] BODY.PEEK[2.2.1] BODY.PEEK[1.1.1.1] \
BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[1.HEADER] BODY.PEEK[1.TEXT] BODY.PEEK[2.1.MIME] \
BODY.PEEK[2.HEADER.FIELDS (From Subject)] BODY.PEEK[HEADER.FIELDS.NOT (Received)] BODY.PEEK[3.2.1.MIME] \
BODY.PEEK[]<10.100> BODY.PEEK[1]<0.1> RFC822.HEADER RFC822.TEXT)\r\n";

    /// Every BINARY form (no partial: imap-codec's response parser has no `BINARY[n]<origin>`).
    const ALL_BINARY: &str = "a FETCH 1 (BINARY.PEEK[] BINARY.PEEK[1] BINARY.PEEK[2] BINARY.PEEK[1.1] \
BINARY.PEEK[2.1] BINARY.PEEK[2.2] BINARY.PEEK[3] BINARY.SIZE[] BINARY.SIZE[1] BINARY.SIZE[2] BINARY.SIZE[2.1])\r\n";

    fn check_message(raw: &[u8], plans: &[(FetchPlan, usize)], name: &str) {
        let meta = MessageMeta::extract(raw);
        assert_eq!(mime::header::split(raw).body_start, meta.header_len as usize, "{name}: header end");
        // find_part agrees with Part::find wherever that one finds a part.
        let mut paths: Vec<Vec<u32>> = vec![vec![]];
        for depth in 0..3 {
            let mut next = Vec::new();
            for p in paths.iter().filter(|p| p.len() == depth) {
                for n in 1..=4 {
                    next.push([p.as_slice(), &[n]].concat());
                }
            }
            paths.extend(next);
        }
        for path in &paths {
            if let Some(a) = meta.part.find(path) {
                assert!(find_part(&meta.part, path).is_some_and(|b| std::ptr::eq(a, b)), "{name}: {path:?}");
            }
        }
        let r = row(raw);
        for (p, n_items) in plans {
            let mut out = Vec::new();
            encode(
                p,
                &FetchInput { seq: 1, row: &r, recent: true, meta: Some(&meta), raw: Some(raw), seen_changed: true },
                &mut out,
            );
            let got = parses(&out);
            assert_eq!(got, *n_items, "{name}: items in {}", out.escape_ascii());
            // Streamed from the store, every section deferred (or none): the same bytes.
            for inline_max in [0, usize::MAX] {
                let input =
                    FetchInput { seq: 1, row: &r, recent: true, meta: Some(&meta), raw: None, seen_changed: true };
                assert_eq!(stored(p, &input, raw, inline_max), out, "{name}: streamed (inline up to {inline_max})");
            }
        }
    }

    /// [`encode_stored`] with `raw` as the store, the deferred sections spliced in as the session
    /// streams them (NUL sent as 0x80).
    fn stored(p: &FetchPlan, m: &FetchInput<'_>, raw: &[u8], inline_max: usize) -> Vec<u8> {
        let (mut out, mut deferred) = (Vec::new(), Vec::new());
        let mut read = |r: Range<usize>| raw[r.start.min(raw.len())..r.end.min(raw.len())].to_vec();
        encode_stored(p, m, raw.len(), &mut read, inline_max, &mut out, &mut deferred);
        let mut spliced = Vec::new();
        let mut at = 0;
        for d in deferred {
            spliced.extend_from_slice(&out[at..d.at]);
            match d.binary {
                // As `cmd::fetch::stream_binary` sends it: a step at a time.
                Some(pieces) => {
                    let mut st = BinaryStream::new(pieces, d.range);
                    run_binary(&mut st, 1000, &mut |r| raw[r].to_vec(), &mut spliced);
                }
                None => spliced.extend(raw[d.range].iter().map(|&b| if b == 0 { 0x80 } else { b })),
            }
            at = d.at;
        }
        spliced.extend_from_slice(&out[at..]);
        spliced
    }

    #[test]
    fn large_sections_are_left_to_the_caller_and_small_ones_read_at_once() {
        let m = [SIMPLE_HDR, &b"x".repeat(5000)[..], b"\r\n"].concat();
        let meta = MessageMeta::extract(&m);
        let r = row(&m);
        let p = plan(
            "a FETCH 3 (BODY.PEEK[HEADER] BODY.PEEK[]<0.10> BODY.PEEK[TEXT] BODY.PEEK[HEADER.FIELDS (Subject)])\r\n",
        )
        .unwrap();
        let input = FetchInput { seq: 3, row: &r, recent: false, meta: Some(&meta), raw: None, seen_changed: false };
        let (mut out, mut deferred, mut reads) = (Vec::new(), Vec::new(), Vec::new());
        let mut read = |r: Range<usize>| {
            reads.push(r.clone());
            m[r].to_vec()
        };
        encode_stored(&p, &input, m.len(), &mut read, 1024, &mut out, &mut deferred);
        let hdr = SIMPLE_HDR.len();
        assert_eq!(deferred.len(), 1, "only TEXT is larger than 1024 bytes");
        assert_eq!(deferred[0].range, hdr..m.len());
        assert!(out[..deferred[0].at].ends_with(b"BODY[TEXT] {5002}\r\n"), "{}", out.escape_ascii());
        assert_eq!(reads, [0..hdr, 0..10, 0..hdr], "the header (twice: HEADER, then HEADER.FIELDS) and the partial");
    }

    fn sweep_plans() -> Vec<(FetchPlan, usize)> {
        // (plan, number of items in each response: + FLAGS added for seen_changed where missing)
        vec![(plan(SWEEP).unwrap(), 9), (plan(ALL_SECTIONS).unwrap(), 25), (plan(ALL_BINARY).unwrap(), 12)]
    }

    #[test]
    fn generated_corpus_parses() {
        let dir = std::env::temp_dir().join(format!("popbridge-fetch-corpus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gen-mail.py");
        let st = std::process::Command::new("python3")
            .args([script, "--count", "300", "--seed", "5", "--eml-dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("python3 is required to generate the test corpus");
        assert!(st.success(), "gen-mail.py failed");
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        assert_eq!(files.len(), 300);
        let plans = sweep_plans();
        for f in &files {
            let raw = std::fs::read(f).unwrap();
            check_message(&raw, &plans, &f.display().to_string());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hand_made_and_hostile_messages_parse() {
        let plans = sweep_plans();
        let s = simple();
        for (i, raw) in [&s[..], ALT, MIXED, FWD, HEADERS_ONLY, NUL, EIGHT_BIT, TOP_RFC822].into_iter().enumerate() {
            check_message(raw, &plans, &format!("hand {i}"));
        }
        // Pseudo-random messages made of MIME-ish fragments, NULs, 8-bit bytes and odd line ends.
        const FRAGS: &[&[u8]] = &[
            b"Content-Type: multipart/mixed; boundary=x\r\n",
            b"Content-Type: multipart/alternative; boundary=\"y\"\r\n",
            b"Content-Type: message/rfc822\r\n",
            b"Content-Type: multipart/digest; boundary=x\r\n",
            b"MIME-Version: 1.0\r\n",
            b"Subject: \xff\xfe \x00 \"q\\\"\r\n",
            b"From: \"A\" <a@b>, <@c:d@e>, g: h@i;\r\n",
            b"\r\n",
            b"\n",
            b"\r",
            b"--x\r\n",
            b"--x--\r\n",
            b"--y\r\n",
            b"--y--\r\n",
            b" folded\r\n",
            b"\x00\x00",
            b"text \xc3\xa9 \x80\r\n",
            b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            b"Content-Disposition: attachment; filename*0*=utf-8''%E2; filename*1=x\r\n",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..3000 {
            let n = (next() % 40) as usize;
            let mut raw = Vec::new();
            for _ in 0..n {
                raw.extend_from_slice(FRAGS[(next() % FRAGS.len() as u64) as usize]);
            }
            check_message(&raw, &plans, &format!("random {i}: {}", raw.escape_ascii()));
        }
    }
}
