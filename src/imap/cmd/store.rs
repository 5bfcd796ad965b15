//! STORE (RFC 3501 §6.4.6), with CONDSTORE's UNCHANGEDSINCE and MODSEQ (RFC 7162 §3.1.3).

use imap_next::imap_types::command::StoreModifier;

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) async fn store(
    s: &mut Session,
    d: &mut Driver,
    set: &SequenceSet,
    kind: StoreType,
    response: StoreResponse,
    flags: &[Flag<'_>],
    uid: bool,
    modifiers: &[StoreModifier],
) -> Reply {
    let (id, read_only, targets) = match targets(s, set, uid) {
        Ok(t) => t,
        Err(SetError::OutOfRange) => {
            return bad("invalid message sequence number");
        }
    };
    if read_only {
        return no(Some("READ-ONLY"), "the mailbox is read-only (EXAMINE)");
    }
    let unchanged_since = modifiers.iter().map(|StoreModifier::UnchangedSince(m)| *m).next_back();
    if unchanged_since.is_some() {
        // A CONDSTORE enabling command (RFC 7162 §3.1).
        super::select::enable_condstore(s, d);
    }
    let op = match kind {
        StoreType::Replace => FlagOp::Replace,
        StoreType::Add => FlagOp::Add,
        StoreType::Remove => FlagOp::Remove,
    };
    let (bits, kw) = flag_bits(flags);
    let uids: Vec<u32> = targets.iter().map(|t| t.1).collect();
    let ranges = uid_ranges(&uids);
    let r = s.store().store_flags_unchanged_since(id, ranges, op, bits, kw, unchanged_since).await;
    let stored = match r {
        Ok(x) => x,
        Err(e) => return db_no(e),
    };
    let condstore = s.enabled.condstore;
    let State::Selected { mb, .. } = &mut s.state else { return wrong_state() };
    let (rows, changed) = (stored.rows, stored.changed);
    // Only the MODSEQ this STORE's own change took: the addressed rows it left alone carry other
    // sessions' MODSEQs, whose other messages this client must still hear of.
    let own = stored.modseq;
    if let Some(m) = own {
        mb.own_modseqs.push(m);
    }
    let out = d.out();
    for r in &rows {
        mb.announce(&r.keywords, out);
    }
    let silent = matches!(response, StoreResponse::Silent);
    // With CONDSTORE on, even .SILENT reports the new MODSEQ of the messages this STORE changed
    // (RFC 7162 §3.1.3); Dovecot leaves out the unchanged ones there, and so do we.
    for r in &rows {
        let Some(seq) = mb.seq_of(r.uid) else { continue };
        if silent && !(condstore && changed > 0 && own == Some(r.modseq)) {
            continue;
        }
        let recent = mb.recent.contains(&r.uid);
        // With QRESYNC on, every FETCH carries the UID (RFC 7162 §3.2.4; Dovecot does).
        let with_uid = uid || mb.ext.enabled.qresync;
        crate::imap::untagged::flags_fetch(out, seq, with_uid.then_some(r.uid), r, recent, condstore, silent);
    }
    if changed > 0 {
        s.notify();
    }
    if stored.modified.is_empty() {
        return ok(None, "STORE completed");
    }
    // RFC 7162 §3.1.3: MODIFIED lists UIDs for UID STORE, sequence numbers for STORE.
    let State::Selected { mb, .. } = &s.state else { return wrong_state() };
    let listed: Vec<u32> =
        if uid { stored.modified } else { stored.modified.iter().filter_map(|u| mb.seq_of(*u)).collect() };
    ok(Some(&format!("MODIFIED {}", set_text(&listed))), "conditional STORE failed")
}
