//! SEARCH (RFC 3501 §6.4.4): the narrowest read the query allows, then the evaluation
//! (`imap::search`).

use super::*;

pub(super) async fn search(
    s: &mut Session,
    d: &mut Driver,
    charset: Option<&imap_next::imap_types::core::Charset<'_>>,
    key: &SearchKey<'_>,
    uid: bool,
) -> Reply {
    let query = match compile(key, charset) {
        Ok(q) => Arc::new(q),
        Err(r) => return r,
    };
    let State::Selected { mb, .. } = &s.state else { return wrong_state() };
    let (id, uids, recent) = (mb.id, mb.uids.clone(), mb.recent.clone());
    let r = s.store().read(move |c| matching(c, &query, id, &uids, &recent, uid)).await;
    match r {
        Ok(hits) => {
            let mut line = String::with_capacity(9 + hits.len() * 7);
            line.push_str("* SEARCH");
            for h in hits {
                let _ = write!(line, " {h}");
            }
            line.push_str("\r\n");
            d.out().extend_from_slice(line.as_bytes());
            ok(None, "SEARCH completed")
        }
        Err(e) => db_no(e),
    }
}

/// The compiled search criteria, or the command's answer when they are refused (also for SORT and
/// THREAD, whose criteria are SEARCH's).
pub(super) fn compile(
    key: &SearchKey<'_>,
    charset: Option<&imap_next::imap_types::core::Charset<'_>>,
) -> Result<SearchQuery, Reply> {
    SearchQuery::new(key, charset).map_err(|e| match e {
        crate::imap::search::SearchError::BadCharset => {
            no(Some("BADCHARSET (UTF-8 US-ASCII)"), "supported charsets: UTF-8, US-ASCII")
        }
        crate::imap::search::SearchError::Unsupported => bad("search key not supported"),
        other => bad(&other.to_string()),
    })
}

/// The messages of the selected mailbox (`uids`, the session's view) matching `query`, ascending:
/// UIDs if `uid`, else sequence numbers. Also what SORT and THREAD select with (`cmd::sort`).
pub(super) fn matching(
    c: &Reader<'_>,
    query: &SearchQuery,
    id: i64,
    uids: &[u32],
    recent: &crate::imap::session::UidSet,
    uid: bool,
) -> DbResult<Vec<u32>> {
    if let Some((mask, want)) = query.flags_only() {
        // Decided by the flags alone: UIDs straight from the (indexed) flags column.
        let hits = c.uids_with_flags(id, mask, want)?;
        return Ok(hits
            .into_iter()
            .filter_map(|u| uids.binary_search(&u).ok().map(|i| if uid { u } else { i as u32 + 1 }))
            .collect());
    }
    let needs = query.needs();
    // The narrowest read: a text index lookup, else the unread-index, else the UID range.
    let filter = query.text_filter();
    let (rows, unindexed) = match (&filter, query.required_flags()) {
        (Some(f), _) => c.rows_matching(id, f)?,
        (None, Some((mask, want))) => (c.rows_with_flags(id, mask, want)?, Default::default()),
        (None, None) => (c.rows(id, &uid_ranges(uids))?, Default::default()),
    };
    let exact = filter.is_some_and(|f| f.exact);
    let ctx = SearchContext { max_seq: uids.len() as u32, max_uid: uids.last().copied().unwrap_or(0) };
    let mut hits = Vec::new();
    for r in &rows {
        let Ok(i) = uids.binary_search(&r.uid) else { continue };
        let seq = i as u32 + 1;
        let recent = recent.contains(&r.uid);
        // Flags, sizes, dates and sets decide most searches without touching bodies.
        let decided = if exact && !unindexed.contains(&r.body_id) {
            Some(true)
        } else {
            query.decide(&Candidate::new(seq, r, recent), &ctx)
        };
        let hit = match decided {
            Some(h) => h,
            None => {
                let meta = if needs.meta || needs.headers { c.meta(r.body_id)? } else { None };
                let raw = if needs.text || needs.headers { c.raw(r.body_id)? } else { None };
                let header = match (&raw, &meta) {
                    (Some(raw), Some(m)) => raw.get(..(m.header_len as usize).min(raw.len())),
                    (Some(raw), None) => Some(&raw[..]),
                    _ => None,
                };
                let text = if needs.text { raw.as_deref().map(SearchText::from_raw) } else { None };
                let cand = Candidate { seq, row: r, recent, meta: meta.as_ref(), header, text: text.as_ref() };
                query.matches(&cand, &ctx)
            }
        };
        if hit {
            hits.push(if uid { r.uid } else { seq });
        }
    }
    Ok(hits)
}

/// SEARCH with result options (RFC 4731) or a saved result (RFC 5182).
pub async fn search_extended(_s: &mut Session, _d: &mut Driver, _q: crate::imap::syntax::search::Search) -> Reply {
    bad("ESEARCH is not supported yet")
}
