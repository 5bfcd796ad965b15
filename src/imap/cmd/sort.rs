//! SORT (RFC 5256 §3) with SORT=DISPLAY (RFC 5957), and the selection THREAD shares: the
//! messages SEARCH's engine selects (`cmd::search::matching`), with the keys parsed at insert
//! (`store::sortkeys`) — no message is decoded here.
//!
//! Keys: ARRIVAL is INTERNALDATE; DATE the Date header in UTC, INTERNALDATE when it has none;
//! FROM / TO / CC the local part of the first address; DISPLAYFROM / DISPLAYTO its display name
//! (else the address); SUBJECT the base subject; SIZE RFC822.SIZE. Strings compare in
//! i;ascii-casemap (stored in that form), a missing value as the empty string. REVERSE turns the
//! key after it around; messages equal in every key are in sequence-number order (§3).

use std::cmp::Ordering;

use imap_next::imap_types::core::{Charset, Vec1};
use imap_next::imap_types::extensions::sort::{SortCriterion, SortKey};

use super::*;
use crate::store::sortkeys::{Columns, SortRow};

/// A selected message with its keys.
pub(super) struct Selection {
    /// Sequence number.
    pub seq: u32,
    pub row: SortRow,
}

/// The messages the search criteria select, ascending, with the `cols` keys; or the command's
/// answer (BADCHARSET, BAD, a store error).
pub(super) async fn select(
    s: &mut Session,
    charset: &Charset<'_>,
    criteria: &Vec1<SearchKey<'_>>,
    cols: Columns,
) -> Result<Vec<Selection>, Reply> {
    let key =
        if criteria.as_ref().len() == 1 { criteria.as_ref()[0].clone() } else { SearchKey::And(criteria.clone()) };
    let query = search::compile(&key, Some(charset))?;
    let everything = matches!(key, SearchKey::All);
    let State::Selected { mb, .. } = &s.state else { return Err(wrong_state()) };
    let (id, uids, recent) = (mb.id, Arc::new(mb.uids.clone()), mb.recent.clone());
    let all = Arc::clone(&uids);
    let rows = s
        .store()
        .read(move |c| {
            // `ALL` (the usual SORT) needs no evaluation: every message of the session's view.
            let hits = if everything { all.to_vec() } else { search::matching(c, &query, id, &all, &recent, true)? };
            c.sort_rows(id, &hits, cols)
        })
        .await
        .map_err(db_no)?;
    Ok(rows
        .into_iter()
        .filter_map(|row| uids.binary_search(&row.uid).ok().map(|i| Selection { seq: i as u32 + 1, row }))
        .collect())
}

/// The columns a list of sort criteria compares.
fn columns(criteria: &[SortCriterion]) -> Columns {
    let mut c = Columns::default();
    for k in criteria {
        match k.key {
            SortKey::Date => c.date = true,
            SortKey::From => c.from = true,
            SortKey::To => c.to = true,
            SortKey::Cc => c.cc = true,
            SortKey::DisplayFrom => c.display_from = true,
            SortKey::DisplayTo => c.display_to = true,
            SortKey::Subject => c.subject = true,
            SortKey::Arrival | SortKey::Size => {}
        }
    }
    c
}

fn compare(key: &SortKey, a: &SortRow, b: &SortRow) -> Ordering {
    match key {
        SortKey::Arrival => a.internaldate.cmp(&b.internaldate),
        SortKey::Date => a.date().cmp(&b.date()),
        SortKey::Size => a.size.cmp(&b.size),
        SortKey::From => a.keys.from.cmp(&b.keys.from),
        SortKey::To => a.keys.to.cmp(&b.keys.to),
        SortKey::Cc => a.keys.cc.cmp(&b.keys.cc),
        SortKey::DisplayFrom => a.keys.display_from.cmp(&b.keys.display_from),
        SortKey::DisplayTo => a.keys.display_to.cmp(&b.keys.display_to),
        SortKey::Subject => a.keys.subject.cmp(&b.keys.subject),
    }
}

/// Orders a selection by the criteria, then by sequence number.
pub(super) fn order(sel: &mut [Selection], criteria: &[SortCriterion]) {
    sel.sort_by(|a, b| {
        criteria
            .iter()
            .map(|c| {
                let o = compare(&c.key, &a.row, &b.row);
                if c.reverse { o.reverse() } else { o }
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
            .then(a.seq.cmp(&b.seq))
    });
}

pub(super) async fn sort(
    s: &mut Session,
    d: &mut Driver,
    criteria: &[SortCriterion],
    charset: &Charset<'_>,
    search: &Vec1<SearchKey<'_>>,
    uid: bool,
) -> Reply {
    let mut sel = match select(s, charset, search, columns(criteria)).await {
        Ok(sel) => sel,
        Err(r) => return r,
    };
    order(&mut sel, criteria);
    let mut line = String::with_capacity(8 + sel.len() * 7);
    line.push_str("* SORT");
    for m in &sel {
        let _ = write!(line, " {}", if uid { m.row.uid } else { m.seq });
    }
    line.push_str("\r\n");
    d.out().extend_from_slice(line.as_bytes());
    ok(None, "SORT completed")
}
