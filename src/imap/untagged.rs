//! The untagged mailbox-size and expunge updates (RFC 3501 §7.3.1, §7.3.2, §7.4.1): `* n EXISTS`,
//! `* n RECENT`, `* n EXPUNGE`, built here only, with imap-codec's encoder. The unsolicited
//! `* n FETCH (UID u FLAGS (…))` is the FETCH writer's ([`super::fetch::write_flags_fetch`]);
//! a command's tagged status is `cmd::Status`.

use std::num::NonZeroU32;

use imap_codec::encode::Encoder;
use imap_next::imap_types::response::{Data, Response};

use crate::store::message::MessageRow;

fn data(out: &mut Vec<u8>, d: Data<'_>) {
    out.extend_from_slice(&imap_codec::ResponseCodec::default().encode(&Response::Data(d)).dump());
}

pub fn exists(out: &mut Vec<u8>, n: u32) {
    data(out, Data::Exists(n));
}

pub fn recent(out: &mut Vec<u8>, n: u32) {
    data(out, Data::Recent(n));
}

/// `seq`: the message's sequence number before it goes (0 is not a sequence number: nothing).
pub fn expunge(out: &mut Vec<u8>, seq: u32) {
    if let Some(seq) = NonZeroU32::new(seq) {
        data(out, Data::Expunge(seq));
    }
}

// ----- CONDSTORE / QRESYNC (RFC 7162) and keyword announcements (RFC 3501 §7.2.6) -----

const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/// The keywords a FLAGS list can carry: valid atoms (what `fetch::write_flags` sends).
pub fn listable(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|c| c > 0x20 && c < 0x7f && !b"(){%*\"\\]".contains(&c))
}

/// `* FLAGS (…)` and `* OK [PERMANENTFLAGS (…)]`: the system flags and `keywords`, then `\*`
/// (any keyword can be kept) — or `()` when read-only (EXAMINE), as Dovecot.
pub fn flags(out: &mut Vec<u8>, keywords: &[String], read_only: bool) {
    let mut list = String::from(SYSTEM_FLAGS);
    for k in keywords.iter().filter(|k| listable(k)) {
        list.push(' ');
        list.push_str(k);
    }
    out.extend_from_slice(format!("* FLAGS ({list})\r\n").as_bytes());
    if read_only {
        out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] read-only\r\n");
    } else {
        out.extend_from_slice(format!("* OK [PERMANENTFLAGS ({list} \\*)] flags and keywords are kept\r\n").as_bytes());
    }
}

/// `* VANISHED [(EARLIER) ]uid-set` (RFC 7162 §3.2.10); nothing for no UIDs. Sorts `uids`.
pub fn vanished(out: &mut Vec<u8>, earlier: bool, uids: &mut [u32]) {
    if uids.is_empty() {
        return;
    }
    uids.sort_unstable();
    uids_vanished(out, earlier, &crate::store::mailbox::uid_ranges(uids));
}

/// [`vanished`] of ranges (ascending, disjoint).
pub fn uids_vanished(out: &mut Vec<u8>, earlier: bool, ranges: &[(u32, u32)]) {
    if ranges.is_empty() {
        return;
    }
    let set = ranges
        .iter()
        .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}:{b}") })
        .collect::<Vec<_>>()
        .join(",");
    let e = if earlier { "(EARLIER) " } else { "" };
    out.extend_from_slice(format!("* VANISHED {e}{set}\r\n").as_bytes());
}

/// `* OK [HIGHESTMODSEQ n] Highest` (RFC 7162 §3.1.2.1).
pub fn highestmodseq(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(format!("* OK [HIGHESTMODSEQ {n}] Highest\r\n").as_bytes());
}

/// A flag change as an untagged FETCH: `* seq FETCH (UID u MODSEQ (m) FLAGS (…))`, UID when
/// given, MODSEQ once CONDSTORE is on (RFC 7162 §3.1.4.1), FLAGS unless `silent` (a `.SILENT`
/// STORE with CONDSTORE on still reports the new MODSEQ, RFC 7162 §3.1.3) — Dovecot's order.
pub fn flags_fetch(
    out: &mut Vec<u8>,
    seq: u32,
    uid: Option<u32>,
    row: &MessageRow,
    recent: bool,
    modseq: bool,
    silent: bool,
) {
    if !modseq {
        if !silent {
            super::fetch::write_flags_fetch(seq, uid, row.flags, &row.keywords, recent, out);
        }
        return;
    }
    let mut items = Vec::new();
    if let Some(u) = uid {
        items.extend_from_slice(format!("UID {u} ").as_bytes());
    }
    items.extend_from_slice(format!("MODSEQ ({})", row.modseq).as_bytes());
    if !silent {
        items.extend_from_slice(b" FLAGS ");
        super::fetch::write_flags(row.flags, &row.keywords, recent, &mut items);
    }
    out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
    out.extend_from_slice(&items);
    out.extend_from_slice(b")\r\n");
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lines_are_rfc_3501s() {
        let mut out = Vec::new();
        super::exists(&mut out, 23);
        super::recent(&mut out, 0);
        super::expunge(&mut out, 3);
        super::expunge(&mut out, 0);
        assert_eq!(out, b"* 23 EXISTS\r\n* 0 RECENT\r\n* 3 EXPUNGE\r\n");
    }
}
