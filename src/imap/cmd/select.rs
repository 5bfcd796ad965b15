//! SELECT / EXAMINE, and leaving the selected state: CLOSE (expunging silently) and UNSELECT (RFC
//! 3501 §6.3.1-2, §6.4.2, RFC 3691).

use super::*;

pub(super) async fn select(s: &mut Session, d: &mut Driver, m: &Mailbox<'_>, read_only: bool) -> Reply {
    let view = match &s.state {
        State::Authenticated { view } | State::Selected { view, .. } => view.clone(),
        State::NotAuthenticated => return wrong_state(),
    };
    // A failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1).
    s.state = State::Authenticated { view: view.clone() };
    let info = match resolve_mailbox(s, m, true).await {
        Ok(Some((_, i))) => i,
        Ok(None) => {
            return no(Some("NONEXISTENT"), "no such mailbox");
        }
        Err(e) => return db_no(e),
    };
    let id = info.id;
    let loaded = s.store().select_mailbox(id, !read_only).await;
    let crate::store::mailbox::Selection { info, mut uids, first_unseen: unseen, recent_floor: floor } = match loaded {
        Ok(x) => x,
        Err(e) => return db_no(e),
    };
    // Kept for the whole selection, by every session: no slack.
    uids.shrink_to_fit();
    // UIDs ascend: the recent ones are a tail (usually empty), found without walking the list.
    let recent: crate::imap::session::UidSet = uids[uids.partition_point(|u| *u <= floor)..].iter().copied().collect();
    let mb = Selected {
        id,
        name: info.name.clone(),
        read_only,
        uidvalidity: info.uidvalidity,
        uids,
        recent,
        modseq: info.highestmodseq,
        pending_expunge: Vec::new(),
        own_modseqs: Vec::new(),
        account: info.account.clone(),
        saved: Vec::new(),
    };
    let out = d.out();
    out.extend_from_slice(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n");
    if read_only {
        out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] read-only\r\n");
    } else {
        out.extend_from_slice(
            b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] flags and keywords are kept\r\n",
        );
    }
    crate::imap::untagged::exists(out, mb.uids.len() as u32);
    crate::imap::untagged::recent(out, mb.recent.len() as u32);
    if let Some(seq) = unseen.and_then(|u| mb.seq_of(u)) {
        out.extend_from_slice(format!("* OK [UNSEEN {seq}] first unseen\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "* OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {}] predicted next UID\r\n",
            info.uidvalidity,
            info.uidnext.max(1)
        )
        .as_bytes(),
    );
    s.state = State::Selected { view, mb };
    s.kick_selected();
    if read_only { ok(Some("READ-ONLY"), "EXAMINE completed") } else { ok(Some("READ-WRITE"), "SELECT completed") }
}

pub(super) async fn close(s: &mut Session, expunge: bool) -> Reply {
    let State::Selected { view, mb } = &s.state else { return wrong_state() };
    let (view, id, ro) = (view.clone(), mb.id, mb.read_only);
    s.state = State::Authenticated { view };
    if expunge && !ro {
        // CLOSE expunges silently (RFC 3501 §6.4.2).
        let r = s.store().expunge_deleted(id, None).await.map(|gone| gone.len());
        match r {
            Ok(n) if n > 0 => s.notify(),
            Ok(_) => {}
            Err(e) => return db_no(e),
        }
    }
    ok(None, if expunge { "CLOSE completed" } else { "UNSELECT completed" })
}
