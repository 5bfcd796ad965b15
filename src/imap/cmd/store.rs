//! STORE (RFC 3501 §6.4.6).

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
    let op = match kind {
        StoreType::Replace => FlagOp::Replace,
        StoreType::Add => FlagOp::Add,
        StoreType::Remove => FlagOp::Remove,
    };
    let (bits, kw) = flag_bits(flags);
    let uids: Vec<u32> = targets.iter().map(|t| t.1).collect();
    let ranges = uid_ranges(&uids);
    let r = s.store().store_flags(id, ranges, op, bits, kw).await;
    let (rows, changed) = match r {
        Ok(x) => x,
        Err(e) => return db_no(e),
    };
    let State::Selected { mb, .. } = &mut s.state else { return wrong_state() };
    if let Some(m) = rows.iter().map(|r| r.modseq).max() {
        mb.own_modseqs.push(m);
    }
    if matches!(response, StoreResponse::Answer) {
        let out = d.out();
        for r in &rows {
            let Some(seq) = mb.seq_of(r.uid) else { continue };
            let recent = mb.recent.contains(&r.uid);
            crate::imap::fetch::write_flags_fetch(seq, uid.then_some(r.uid), r.flags, &r.keywords, recent, out);
        }
    }
    if changed > 0 {
        s.notify();
    }
    ok(None, "STORE completed")
}
