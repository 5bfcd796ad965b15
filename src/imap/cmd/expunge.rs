//! EXPUNGE and UID EXPUNGE (RFC 3501 §6.4.3, RFC 4315).

use super::*;

pub(super) async fn expunge(s: &mut Session, d: &mut Driver, set: Option<&SequenceSet>) -> Reply {
    let State::Selected { mb, .. } = &s.state else { return wrong_state() };
    if mb.read_only {
        return no(Some("READ-ONLY"), "the mailbox is read-only (EXAMINE)");
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
        return ok(None, "EXPUNGE completed");
    }
    let r = s.store().expunge_deleted(id, only).await;
    let gone = match r {
        Ok(g) => g,
        Err(e) => return db_no(e),
    };
    if let State::Selected { mb, .. } = &mut s.state {
        mb.expunged(gone.iter().copied(), d.out());
    }
    if !gone.is_empty() {
        s.notify();
    }
    ok(None, "EXPUNGE completed")
}
