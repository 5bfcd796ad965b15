//! SORT (RFC 5256 §3) with SORT=DISPLAY (RFC 5957), and the selection THREAD shares: the
//! messages SEARCH's engine selects (`cmd::search::matching`), with the keys parsed at insert
//! (`store::sortkeys`) — no message is decoded here.
//!
//! Keys: ARRIVAL is INTERNALDATE; DATE the Date header in UTC, INTERNALDATE when it has none;
//! FROM / TO / CC the local part of the first address; DISPLAYFROM / DISPLAYTO its display name
//! (else the address); SUBJECT the base subject; SIZE RFC822.SIZE. Strings compare in
//! i;ascii-casemap, non-ASCII case folded too (`mime::subject::sort_form`, the stored form), a
//! missing value as the empty string. REVERSE turns the key after it around; messages equal in
//! every key are in sequence-number order (§3).
//!
//! The store orders the mailbox (`sortkeys::sorted_uids`, only UIDs come back); the sort here
//! ([`order`]) is for a mailbox with bodies lacking a keys row.

use std::cmp::Ordering;

use imap_next::imap_types::core::{Charset, Vec1};
use imap_next::imap_types::extensions::sort::{SortCriterion, SortKey};

use super::*;
use crate::store::sortkeys::{Columns, SortBy, SortRow};

/// A selected message with its keys.
pub(super) struct Selection {
    /// Sequence number.
    pub seq: u32,
    pub row: SortRow,
}

/// The UIDs the search criteria select, ascending (`ALL`, the usual SORT, needs no evaluation:
/// every message of the session's view).
fn hits(c: &Reader<'_>, query: &Query) -> DbResult<Vec<u32>> {
    match &query.search {
        None => Ok(query.uids.to_vec()),
        Some(q) => search::matching(c, q, query.mailbox, &query.uids, &query.recent, true),
    }
}

/// A SORT or THREAD command's selection, ready for the store thread.
struct Query {
    mailbox: i64,
    /// The session's view: sequence number − 1 → UID.
    uids: Arc<Vec<u32>>,
    recent: crate::imap::session::UidSet,
    /// None: `ALL`.
    search: Option<SearchQuery>,
}

fn query(s: &Session, charset: &Charset<'_>, criteria: &Vec1<SearchKey<'_>>) -> Result<Query, Reply> {
    let key =
        if criteria.as_ref().len() == 1 { criteria.as_ref()[0].clone() } else { SearchKey::And(criteria.clone()) };
    let compiled = search::compile(&key, Some(charset))?;
    let State::Selected { mb, .. } = &s.state else { return Err(wrong_state()) };
    Ok(Query {
        mailbox: mb.id,
        uids: Arc::new(mb.uids.clone()),
        recent: mb.recent.clone(),
        search: (!matches!(key, SearchKey::All)).then_some(compiled),
    })
}

/// The messages the search criteria select, ascending, with the `cols` keys; or the command's
/// answer (BADCHARSET, BAD, a store error).
pub(super) async fn select(
    s: &mut Session,
    charset: &Charset<'_>,
    criteria: &Vec1<SearchKey<'_>>,
    cols: Columns,
) -> Result<Vec<Selection>, Reply> {
    let q = query(s, charset, criteria)?;
    let uids = Arc::clone(&q.uids);
    let rows = s.store().read(move |c| c.sort_rows(q.mailbox, &hits(c, &q)?, cols)).await.map_err(db_no)?;
    Ok(with_seqs(&uids, rows))
}

fn with_seqs(uids: &[u32], rows: Vec<SortRow>) -> Vec<Selection> {
    rows.into_iter()
        .filter_map(|row| uids.binary_search(&row.uid).ok().map(|i| Selection { seq: i as u32 + 1, row }))
        .collect()
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
fn order(sel: &mut [Selection], criteria: &[SortCriterion]) {
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

fn sort_by(k: &SortKey) -> SortBy {
    match k {
        SortKey::Arrival => SortBy::Arrival,
        SortKey::Date => SortBy::Date,
        SortKey::Size => SortBy::Size,
        SortKey::From => SortBy::From,
        SortKey::To => SortBy::To,
        SortKey::Cc => SortBy::Cc,
        SortKey::DisplayFrom => SortBy::DisplayFrom,
        SortKey::DisplayTo => SortBy::DisplayTo,
        SortKey::Subject => SortBy::Subject,
    }
}

pub(super) async fn sort(
    s: &mut Session,
    d: &mut Driver,
    criteria: &[SortCriterion],
    charset: &Charset<'_>,
    search: &Vec1<SearchKey<'_>>,
    uid: bool,
) -> Reply {
    let q = match query(s, charset, search) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let criteria = criteria.to_vec();
    let r = s
        .store()
        .read(move |c| -> DbResult<Vec<(u32, u32)>> {
            let hits = hits(c, &q)?;
            let keys: Vec<(SortBy, bool)> = criteria.iter().map(|k| (sort_by(&k.key), k.reverse)).collect();
            // The store sorts; only UIDs come back. Then the session's view (a message that
            // arrived since the last update is not in it) and the search decide what is shown.
            if let Some(order) = c.sorted_uids(q.mailbox, &keys)? {
                let seq = |u: u32| q.uids.binary_search(&u).ok().map(|i| i as u32 + 1);
                return Ok(order
                    .into_iter()
                    .filter(|u| hits.binary_search(u).is_ok())
                    .filter_map(|u| seq(u).map(|s| (s, u)))
                    .collect());
            }
            // Some body has no keys row: sort the rows, their keys extracted where missing.
            let mut sel = with_seqs(&q.uids, c.sort_rows(q.mailbox, &hits, columns(&criteria))?);
            order(&mut sel, &criteria);
            Ok(sel.into_iter().map(|m| (m.seq, m.row.uid)).collect())
        })
        .await;
    let sorted = match r {
        Ok(v) => v,
        Err(e) => return db_no(e),
    };
    let mut line = String::with_capacity(8 + sorted.len() * 7);
    line.push_str("* SORT");
    for (seq, u) in &sorted {
        let _ = write!(line, " {}", if uid { u } else { seq });
    }
    line.push_str("\r\n");
    d.out().extend_from_slice(line.as_bytes());
    ok(None, "SORT completed")
}
