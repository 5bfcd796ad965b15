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
    let query = match SearchQuery::new(key, charset) {
        Ok(q) => Arc::new(q),
        Err(e) => match e {
            crate::imap::search::SearchError::BadCharset => {
                return no(Some("BADCHARSET (UTF-8 US-ASCII)"), "supported charsets: UTF-8, US-ASCII");
            }
            crate::imap::search::SearchError::Unsupported => return bad("search key not supported"),
            other => return bad(&other.to_string()),
        },
    };
    let modseq = query.uses_modseq();
    if modseq {
        super::select::enable_condstore(s, d); // RFC 7162 §3.1: an enabling command
    }
    let State::Selected { mb, .. } = &s.state else { return wrong_state() };
    let (id, uids, recent) = (mb.id, mb.uids.clone(), mb.recent.clone());
    let r = s
        .store()
        .read(move |c| {
            if let Some((mask, want)) = query.flags_only() {
                // Decided by the flags alone: UIDs straight from the (indexed) flags column.
                let hits = c.uids_with_flags(id, mask, want)?;
                let hits = hits
                    .into_iter()
                    .filter_map(|u| uids.binary_search(&u).ok().map(|i| if uid { u } else { i as u32 + 1 }))
                    .collect();
                return Ok((hits, 0));
            }
            let needs = query.needs();
            // The narrowest read: a text index lookup, else the unread-index, else the UID range.
            let filter = query.text_filter();
            let (rows, unindexed) = match (&filter, query.required_flags()) {
                (Some(f), _) => c.rows_matching(id, f)?,
                (None, Some((mask, want))) => (c.rows_with_flags(id, mask, want)?, Default::default()),
                (None, None) => (c.rows(id, &uid_ranges(&uids))?, Default::default()),
            };
            let exact = filter.is_some_and(|f| f.exact);
            let ctx = SearchContext { max_seq: uids.len() as u32, max_uid: uids.last().copied().unwrap_or(0) };
            let mut hits = Vec::new();
            let mut top = 0u64; // the highest MODSEQ among the hits
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
                    top = top.max(r.modseq);
                }
            }
            Ok((hits, top))
        })
        .await;
    match r {
        Ok((hits, top)) => {
            let mut line = String::with_capacity(9 + hits.len() * 7);
            line.push_str("* SEARCH");
            let any = !hits.is_empty();
            for h in hits {
                let _ = write!(line, " {h}");
            }
            if modseq && any {
                let _ = write!(line, " (MODSEQ {top})");
            }
            line.push_str("\r\n");
            d.out().extend_from_slice(line.as_bytes());
            ok(None, "SEARCH completed")
        }
        Err(e) => db_no(e),
    }
}

/// SEARCH with result options (RFC 4731) or a saved result (RFC 5182).
pub async fn search_extended(_s: &mut Session, _d: &mut Driver, _q: crate::imap::syntax::search::Search) -> Reply {
    bad("ESEARCH is not supported yet")
}
