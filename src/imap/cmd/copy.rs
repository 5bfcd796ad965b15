//! COPY (RFC 3501 §6.4.7) and MOVE (RFC 6851), with UIDPLUS's COPYUID.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) async fn copy(
    s: &mut Session,
    d: &mut Driver,
    set: &SequenceSet,
    m: &Mailbox<'_>,
    uid: bool,
    mv: bool,
) -> Reply {
    let (src, read_only, targets) = match targets(s, set, uid) {
        Ok(t) => t,
        Err(SetError::OutOfRange) => {
            return bad("invalid message sequence number");
        }
    };
    if mv && read_only {
        return no(Some("READ-ONLY"), "the mailbox is read-only (EXAMINE)");
    }
    let dst = match resolve_mailbox(s, m, true).await {
        Ok(Some((_, i))) => i,
        Ok(None) => {
            return no(Some("TRYCREATE"), "no such mailbox");
        }
        Err(e) => return db_no(e),
    };
    let uids: Vec<u32> = targets.iter().map(|t| t.1).collect();
    let ranges = uid_ranges(&uids);
    let dst_id = dst.id;
    let r = s.store().copy_messages(src, ranges, dst_id, mv).await;
    let (pairs, moved) = match r {
        Ok(x) => x,
        Err(e) => return db_no(e),
    };
    if !pairs.is_empty() {
        s.notify();
    }
    let code = if pairs.is_empty() {
        None
    } else {
        let from: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let to: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        Some(format!("COPYUID {} {} {}", dst.uidvalidity, set_text(&from), set_text(&to)))
    };
    if mv {
        // RFC 6851: COPYUID in an untagged OK before the EXPUNGEs.
        if let Some(c) = &code {
            d.out().extend_from_slice(format!("* OK [{c}] moved\r\n").as_bytes());
        }
        if let State::Selected { mb, .. } = &mut s.state {
            mb.expunged(moved, d.out());
        }
        ok(None, "MOVE completed")
    } else {
        ok(code.as_deref(), "COPY completed")
    }
}
