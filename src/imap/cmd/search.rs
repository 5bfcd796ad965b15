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
    match run_query(s, d, charset, key).await {
        Ok(found) => {
            write_search(d, &found, uid);
            ok(None, "SEARCH completed")
        }
        Err(reply) => reply,
    }
}

/// `* SEARCH n…`: UIDs or sequence numbers of the hits, and `(MODSEQ m)` when the query used
/// MODSEQ and something matched (RFC 7162 §3.1.5).
fn write_search(d: &mut Driver, found: &Found, uid: bool) {
    let mut line = String::with_capacity(9 + found.hits.len() * 7);
    line.push_str("* SEARCH");
    for &(seq, u) in &found.hits {
        let _ = write!(line, " {}", if uid { u } else { seq });
    }
    if let Some(top) = found.modseq
        && !found.hits.is_empty()
    {
        let _ = write!(line, " (MODSEQ {top})");
    }
    line.push_str("\r\n");
    d.out().extend_from_slice(line.as_bytes());
}

/// What a search found.
pub(super) struct Found {
    /// (sequence number, UID) of the hits, ascending.
    pub hits: Vec<(u32, u32)>,
    /// When the query used MODSEQ (CONDSTORE): the highest MODSEQ among the hits.
    pub modseq: Option<u64>,
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

/// The messages of the selected mailbox matching `key`. A MODSEQ key enables CONDSTORE (RFC 7162
/// §3.1). `Err`: the reply to send instead (a bad charset or key, a store error).
pub(super) async fn run_query(
    s: &mut Session,
    d: &mut Driver,
    charset: Option<&imap_next::imap_types::core::Charset<'_>>,
    key: &SearchKey<'_>,
) -> Result<Found, Reply> {
    let query = Arc::new(compile(key, charset)?);
    let modseq = query.uses_modseq();
    if modseq {
        super::select::enable_condstore(s, d);
    }
    let State::Selected { mb, .. } = &s.state else { return Err(wrong_state()) };
    let (id, uids, recent) = (mb.id, mb.uids.clone(), mb.recent.clone());
    let r = s.store().read(move |c| evaluate(c, &query, id, &uids, &recent)).await;
    match r {
        Ok((hits, top)) => Ok(Found { hits, modseq: modseq.then_some(top) }),
        Err(e) => Err(db_no(e)),
    }
}

/// The messages of the selected mailbox (`uids`, the session's view) matching `query`, ascending:
/// UIDs if `uid`, else sequence numbers. What SORT and THREAD select with (`cmd::sort`).
pub(super) fn matching(
    c: &Reader<'_>,
    query: &SearchQuery,
    id: i64,
    uids: &[u32],
    recent: &crate::imap::session::UidSet,
    uid: bool,
) -> DbResult<Vec<u32>> {
    let (hits, _) = evaluate(c, query, id, uids, recent)?;
    Ok(hits.into_iter().map(|(seq, u)| if uid { u } else { seq }).collect())
}

/// The search itself: the narrowest read the query allows, then the evaluation. The hits as
/// (sequence number, UID), ascending, and the highest MODSEQ among them.
fn evaluate(
    c: &Reader<'_>,
    query: &SearchQuery,
    id: i64,
    uids: &[u32],
    recent: &crate::imap::session::UidSet,
) -> DbResult<(Vec<(u32, u32)>, u64)> {
    if query.matches_all() {
        // Every message of the session's view (SEARCH ALL, ESEARCH COUNT ALL): nothing to read.
        return Ok(((1..).zip(uids.iter().copied()).collect(), 0));
    }
    if let Some((mask, want)) = query.flags_only() {
        // Decided by the flags alone: UIDs straight from the (indexed) flags column.
        let hits = c.uids_with_flags(id, mask, want)?;
        let hits = hits.into_iter().filter_map(|u| uids.binary_search(&u).ok().map(|i| (i as u32 + 1, u)));
        return Ok((hits.collect(), 0));
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
            hits.push((seq, r.uid));
            top = top.max(r.modseq);
        }
    }
    Ok((hits, top))
}

/// SEARCH with result options (ESEARCH, RFC 4731) and/or the saved result (SEARCHRES, RFC 5182).
pub async fn search_extended(
    s: &mut Session,
    d: &mut Driver,
    tag: &Tag<'_>,
    q: crate::imap::syntax::search::Search,
) -> Reply {
    let State::Selected { mb, .. } = &s.state else { return wrong_state() };
    let save = q.ret.is_some_and(|r| r.save);
    let found = match q.criteria(&mb.saved) {
        Some((charset, key)) => run_query(s, d, charset.as_ref(), &key).await,
        None => Err(bad("syntax error in the search criteria")),
    };
    let found = match found {
        Ok(found) => found,
        Err(reply) => {
            // A failed SEARCH ... RETURN (SAVE) leaves `$` empty (RFC 5182 §2.1).
            if save && let State::Selected { mb, .. } = &mut s.state {
                mb.saved.clear();
            }
            return reply;
        }
    };
    let Some(ret) = q.ret else {
        write_search(d, &found, q.uid());
        return ok(None, "SEARCH completed");
    };
    let hits = &found.hits;
    if ret.answers() {
        let nums: Vec<u32> = hits.iter().map(|&(seq, uid)| if q.uid() { uid } else { seq }).collect();
        let modseq = found.modseq.filter(|_| !nums.is_empty());
        d.out().extend_from_slice(esearch_line(tag.as_ref(), q.uid(), ret, &nums, modseq).as_bytes());
    }
    if ret.save
        && let State::Selected { mb, .. } = &mut s.state
    {
        let uids: Vec<u32> = if ret.saves_extremes_only() {
            let (first, last) = (hits.first().map(|h| h.1), hits.last().map(|h| h.1));
            let mut v: Vec<u32> =
                [ret.min.then_some(first).flatten(), ret.max.then_some(last).flatten()].into_iter().flatten().collect();
            v.dedup();
            v
        } else {
            hits.iter().map(|h| h.1).collect()
        };
        mb.saved = uid_ranges(&uids);
    }
    ok(None, if ret.save { "SEARCH completed, result saved" } else { "SEARCH completed" })
}

/// `* ESEARCH (TAG "a1") [UID] [MIN n] [MAX n] [ALL set] [COUNT n]` (RFC 4731 §3.1): MIN, MAX and
/// ALL are left out when nothing matched, COUNT never; ALL in sequence-set form. Item order as
/// Dovecot sends them; `MODSEQ m` last when the query used MODSEQ (RFC 7162 §3.1.5).
fn esearch_line(
    tag: &str,
    uid: bool,
    ret: crate::imap::syntax::search::Return,
    nums: &[u32],
    modseq: Option<u64>,
) -> String {
    let mut line = format!("* ESEARCH (TAG \"{tag}\")");
    if uid {
        line.push_str(" UID");
    }
    if let (Some(min), Some(max)) = (nums.first(), nums.last()) {
        if ret.min {
            let _ = write!(line, " MIN {min}");
        }
        if ret.max {
            let _ = write!(line, " MAX {max}");
        }
        if ret.all {
            let _ = write!(line, " ALL {}", set_text(nums));
        }
    }
    if ret.count {
        let _ = write!(line, " COUNT {}", nums.len());
    }
    if let Some(m) = modseq {
        let _ = write!(line, " MODSEQ {m}");
    }
    line.push_str("\r\n");
    line
}

/// FETCH / STORE / COPY / MOVE / UID EXPUNGE of `$` as imap-codec decodes it with the saved
/// messages still in the mailbox in place of `$`: their UIDs for the UID forms, their current
/// sequence numbers otherwise. `None`: none of them is left (see [`nothing_saved`]).
pub(super) fn with_saved(s: &Session, w: &crate::imap::syntax::saved::WithSaved) -> Option<CommandBody<'static>> {
    let State::Selected { mb, .. } = &s.state else { return None };
    let saved = SequenceSet::try_from(crate::imap::syntax::saved::set_text(&mb.saved).as_str()).ok()?;
    let positions = resolve_positions(mb, &saved, true).ok()?;
    let numbers: Vec<(u32, u32)> = positions
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| if w.uid { (mb.uids[r.start], mb.uids[r.end - 1]) } else { (r.start as u32 + 1, r.end as u32) })
        .collect();
    if numbers.is_empty() {
        return None;
    }
    w.with_set(&crate::imap::syntax::saved::set_text(&numbers))
}

/// The answer to a command on an empty `$` (or one whose messages are all expunged): no message,
/// nothing done, OK (RFC 5182 §2.1: an empty result is not an error; Dovecot's words).
pub(super) fn nothing_saved() -> Reply {
    ok(None, "No messages found")
}

/// Whether EXPUNGE responses may accompany a command on `$` (not FETCH or STORE by sequence
/// number, RFC 3501 §7.4.1), as `session::expunge_allowed` says for the decoded command.
pub(super) fn expunge_allowed_with_saved(w: &crate::imap::syntax::saved::WithSaved) -> bool {
    use crate::imap::syntax::saved::Verb;
    w.uid || !matches!(w.verb, Verb::Fetch | Verb::Store)
}
