//! STORE (RFC 3501 §6.4.6).

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) async fn store(
    s: &mut Session,
    d: &mut Driver,
    tag: &Tag<'_>,
    set: &SequenceSet,
    kind: StoreType,
    response: StoreResponse,
    flags: &[Flag<'_>],
    uid: bool,
) -> Flow {
    let (id, read_only, targets) = match targets(s, set, uid) {
        Ok(t) => t,
        Err(SetError::OutOfRange) => {
            s.bad(d, tag, "invalid message sequence number");
            return Flow::Continue;
        }
    };
    if read_only {
        s.no(d, tag, Some("READ-ONLY"), "the mailbox is read-only (EXAMINE)");
        return Flow::Continue;
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
        Err(e) => return db_no(s, d, tag, e),
    };
    let State::Selected { mb, .. } = &mut s.state else { return Flow::Continue };
    if let Some(m) = rows.iter().map(|r| r.modseq).max() {
        mb.own_modseqs.push(m);
    }
    if matches!(response, StoreResponse::Answer) {
        let out = d.out();
        for r in &rows {
            let Some(seq) = mb.seq_of(r.uid) else { continue };
            let mut line = format!("* {seq} FETCH (").into_bytes();
            if uid {
                line.extend_from_slice(format!("UID {} ", r.uid).as_bytes());
            }
            line.extend_from_slice(b"FLAGS ");
            crate::imap::fetch::write_flags(r.flags, &r.keywords, mb.recent.contains(&r.uid), &mut line);
            line.extend_from_slice(b")\r\n");
            out.extend_from_slice(&line);
        }
    }
    if changed > 0 {
        s.notify();
    }
    s.ok(d, tag, None, "STORE completed");
    Flow::Continue
}
