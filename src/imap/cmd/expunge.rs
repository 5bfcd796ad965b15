//! EXPUNGE and UID EXPUNGE (RFC 3501 §6.4.3, RFC 4315).

use super::*;

pub(super) async fn expunge(s: &mut Session, d: &mut Driver, tag: &Tag<'_>, set: Option<&SequenceSet>) -> Flow {
    let State::Selected { mb, .. } = &s.state else { return Flow::Continue };
    if mb.read_only {
        s.no(d, tag, Some("READ-ONLY"), "the mailbox is read-only (EXAMINE)");
        return Flow::Continue;
    }
    let id = mb.id;
    let only = match set {
        Some(set) => match resolve_set(mb, set, true) {
            Ok(t) => Some(uid_ranges(&t.iter().map(|x| x.1).collect::<Vec<_>>())),
            Err(_) => Some(Vec::new()),
        },
        None => None,
    };
    if only.as_ref().is_some_and(|o| o.is_empty()) {
        s.ok(d, tag, None, "EXPUNGE completed");
        return Flow::Continue;
    }
    let r = s.store().expunge_deleted(id, only).await;
    let gone = match r {
        Ok(g) => g,
        Err(e) => return db_no(s, d, tag, e),
    };
    if let State::Selected { mb, .. } = &mut s.state {
        let out = d.out();
        for u in &gone {
            if let Ok(i) = mb.uids.binary_search(u) {
                mb.uids.remove(i);
                mb.recent.remove(u);
                out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
            }
        }
    }
    if !gone.is_empty() {
        s.notify();
    }
    s.ok(d, tag, None, "EXPUNGE completed");
    Flow::Continue
}
