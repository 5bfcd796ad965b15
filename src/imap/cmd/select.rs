//! SELECT / EXAMINE, and leaving the selected state: CLOSE (expunging silently) and UNSELECT (RFC
//! 3501 §6.3.1-2, §6.4.2, RFC 3691); ENABLE (RFC 5161) and the SELECT parameters of RFC 7162
//! (CONDSTORE, QRESYNC).

use imap_next::imap_types::command::SelectParameter;
use imap_next::imap_types::extensions::enable::CapabilityEnable;

use super::*;
use crate::imap::session::Enabled;

/// ENABLE: CONDSTORE and QRESYNC (which implies CONDSTORE, RFC 7162 §3.2.3); anything else is
/// ignored, as RFC 5161 §3 says. `* ENABLED` lists the ones this command named, in its order,
/// each once (also when already enabled — as Dovecot).
pub(super) fn enable(s: &mut Session, d: &mut Driver, caps: &[CapabilityEnable<'_>]) -> Reply {
    let mut named: Vec<&str> = Vec::new();
    for c in caps {
        let name = match c {
            CapabilityEnable::CondStore => "CONDSTORE",
            CapabilityEnable::Other(_) if c.to_string().eq_ignore_ascii_case("QRESYNC") => "QRESYNC",
            _ => continue,
        };
        if name == "QRESYNC" {
            s.enabled.qresync = true;
        }
        enable_condstore(s, d);
        if !named.contains(&name) {
            named.push(name);
        }
    }
    let mut line = String::from("* ENABLED");
    for n in named {
        line.push(' ');
        line.push_str(n);
    }
    line.push_str("\r\n");
    d.out().extend_from_slice(line.as_bytes());
    ok(None, "ENABLE completed")
}

/// Turns CONDSTORE on (ENABLE, or a CONDSTORE enabling command, RFC 7162 §3.1). The first time
/// with a mailbox selected, its HIGHESTMODSEQ goes out at once (Dovecot does the same), so the
/// client has a MODSEQ to resync from.
pub(super) fn enable_condstore(s: &mut Session, d: &mut Driver) {
    let first = !s.enabled.condstore;
    s.enabled.condstore = true;
    let enabled = s.enabled;
    if let State::Selected { mb, .. } = &mut s.state {
        mb.ext.enabled = enabled;
        if first {
            crate::imap::untagged::highestmodseq(d.out(), mb.modseq);
        }
    }
}

pub(super) async fn select(
    s: &mut Session,
    d: &mut Driver,
    m: &Mailbox<'_>,
    read_only: bool,
    params: &[SelectParameter],
) -> Reply {
    let view = match &s.state {
        State::Authenticated { view } | State::Selected { view, .. } => view.clone(),
        State::NotAuthenticated => return wrong_state(),
    };
    let mut qresync = None;
    for p in params {
        match p {
            SelectParameter::CondStore => {}
            SelectParameter::QResync { .. } if !s.enabled.qresync => {
                return bad("QRESYNC is not enabled (ENABLE QRESYNC first)");
            }
            SelectParameter::QResync { uid_validity, mod_sequence_value, known_uids, .. } => {
                qresync = Some((uid_validity.get(), mod_sequence_value.get(), known_uids.clone()));
            }
        }
    }
    if s.enabled.qresync && matches!(s.state, State::Selected { .. }) {
        // RFC 7162 §3.2.11: the end of the old mailbox's responses.
        d.out().extend_from_slice(b"* OK [CLOSED] previous mailbox closed\r\n");
    }
    if !params.is_empty() {
        // SELECT (CONDSTORE) is a CONDSTORE enabling command; no mailbox is selected yet, so
        // nothing goes out here: HIGHESTMODSEQ comes with the SELECT's own responses.
        s.enabled.condstore = true;
    }
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
    let crate::store::mailbox::Selection { info, mut uids, first_unseen: unseen, keywords, recent_floor: floor } =
        match loaded {
            Ok(x) => x,
            Err(e) => return db_no(e),
        };
    // Kept for the whole selection, by every session: no slack.
    uids.shrink_to_fit();
    // UIDs ascend: the recent ones are a tail (usually empty), found without walking the list.
    let recent: crate::imap::session::UidSet = uids[uids.partition_point(|u| *u <= floor)..].iter().copied().collect();
    let enabled: Enabled = s.enabled;
    let mut mb = Selected {
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
        ext: Box::new(crate::imap::session::SelectedExt { enabled, keywords, held_since: None }),
    };
    let out = d.out();
    crate::imap::untagged::flags(out, &mb.ext.keywords, read_only);
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
    if enabled.condstore {
        crate::imap::untagged::highestmodseq(out, mb.modseq);
    }
    if let Some((uidvalidity, since, known)) = qresync
        && uidvalidity == mb.uidvalidity
        && let Err(e) = resync(s, d, &mut mb, since, known.as_ref()).await
    {
        return db_no(e);
    }
    s.state = State::Selected { view, mb };
    s.kick_selected();
    if read_only { ok(Some("READ-ONLY"), "EXAMINE completed") } else { ok(Some("READ-WRITE"), "SELECT completed") }
}

/// SELECT (QRESYNC (…)) with the right UIDVALIDITY (RFC 7162 §3.2.5): what vanished since
/// `since` among the client's known UIDs (all UIDs when it gave none), as `* VANISHED
/// (EARLIER)`, then the flags of the messages changed since, as FETCH (UID FLAGS MODSEQ). The
/// sequence-match data is not needed: the store's expunge history answers exactly, or (pruned)
/// by comparison with what the mailbox holds now.
async fn resync(
    s: &Session,
    d: &mut Driver,
    mb: &mut Selected,
    since: u64,
    known: Option<&SequenceSet>,
) -> DbResult<()> {
    let ranges: Vec<(u32, u32)> = match known {
        Some(set) => set_ranges(set, u32::MAX),
        None => vec![(1, u32::MAX)],
    };
    let gone = s.store().vanished_since(mb.id, since, ranges.clone()).await?;
    crate::imap::untagged::uids_vanished(d.out(), true, &gone);
    let in_known = |uid: u32| ranges.iter().any(|(a, b)| *a <= uid && uid <= *b);
    if let Some(ch) = s.store().changes_after(mb.id, since).await? {
        let top = mb.modseq;
        for r in ch.rows.iter().filter(|r| r.modseq <= top && in_known(r.uid)) {
            let Some(seq) = mb.seq_of(r.uid) else { continue };
            let recent = mb.recent.contains(&r.uid);
            let out = d.out();
            mb.announce(&r.keywords, out);
            crate::imap::untagged::flags_fetch(out, seq, Some(r.uid), r, recent, true, false);
        }
    }
    Ok(())
}

/// A UID set as inclusive ranges, `*` being `max`.
pub(super) fn set_ranges(set: &SequenceSet, max: u32) -> Vec<(u32, u32)> {
    set.0
        .as_ref()
        .iter()
        .map(|seq| {
            let v = |x: &SeqOrUid| match x {
                SeqOrUid::Value(v) => v.get(),
                SeqOrUid::Asterisk => max,
            };
            match seq {
                Sequence::Single(x) => (v(x), v(x)),
                Sequence::Range(x, y) => (v(x).min(v(y)), v(x).max(v(y))),
            }
        })
        .collect()
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
