//! FETCH (RFC 3501 §6.4.5): rows a page at a time, responses a budgeted step at a time, large
//! bodies streamed from the store.

use imap_next::imap_types::command::FetchModifier;

use super::*;

/// Message rows (flags, sizes: metadata, no bodies) a FETCH loads per store round trip: a few KB
/// per session.
const FETCH_PAGE: usize = 64;
/// Bodies larger than this are never loaded whole by a FETCH: its sections are read from the store
/// in budget-sized chunks, each once the socket took the one before (smaller ones are read whole,
/// which is faster, and packed into one step with their neighbours).
pub(super) const STREAM_AT: usize = 128 * 1024;

pub(super) async fn fetch(
    s: &mut Session,
    d: &mut Driver,
    set: &SequenceSet,
    items: &MacroOrMessageDataItemNames<'_>,
    uid: bool,
    modifiers: &[FetchModifier],
) -> Reply {
    let plan = match FetchPlan::new(items, uid) {
        Ok(p) => p,
        Err(e) => {
            return bad(&e);
        }
    };
    let (plan, changed_since) = match condstore(s, d, set, plan, uid, modifiers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let plan = Arc::new(plan);
    let (id, read_only, targets) = match &s.state {
        State::Selected { mb, .. } => match resolve_positions(mb, set, uid) {
            Ok(t) => (mb.id, mb.read_only, t),
            Err(SetError::OutOfRange) => {
                return bad("invalid message sequence number");
            }
        },
        _ => (0, true, Vec::new()),
    };
    // The messages, as positions in the session's view: `1:*` is one range, not a list. With
    // CHANGEDSINCE, only the positions of the messages changed since (read through the MODSEQ
    // index): a resync of a large mailbox reads what changed, not every row — and an item that
    // sets `\Seen` (`BODY[]`) sets it only on the messages answered.
    let mut targets: Box<dyn Iterator<Item = usize> + Send> = match changed_since {
        None => Box::new(targets.into_iter().flatten()),
        Some(since) => {
            let changed = match s.store().read(move |c| c.uids_changed_since(id, since)).await {
                Ok(u) => u,
                Err(e) => return db_no(e),
            };
            let State::Selected { mb, .. } = &s.state else { return wrong_state() };
            let mut positions: Vec<usize> = changed
                .iter()
                .filter_map(|u| mb.uids.binary_search(u).ok())
                // `targets` are ascending and disjoint: the one that could hold `p`, by bisection.
                .filter(|p| targets.get(targets.partition_point(|r| r.end <= *p)).is_some_and(|r| r.contains(p)))
                .collect();
            positions.sort_unstable();
            Box::new(positions.into_iter())
        }
    };
    // Rows are loaded a page at a time; responses are made and sent a step at a time, each step
    // charged to the daemon's memory budget before its bytes are read and given back once they
    // are on the socket (see crate::memory): a FETCH of a whole mailbox holds one page of rows
    // and one step of bytes, and waits when the budget is spent or the client does not read.
    let budget = s.shared.store.budget().clone();
    let mut page: VecDeque<Pending> = VecDeque::new();
    loop {
        if page.is_empty() {
            let chunk: Vec<(u32, u32, bool)> = {
                let State::Selected { mb, .. } = &s.state else { break };
                targets
                    .by_ref()
                    .take(FETCH_PAGE)
                    .filter_map(|i| mb.uids.get(i).map(|u| (i as u32 + 1, *u, mb.recent.contains(u))))
                    .collect()
            };
            if chunk.is_empty() {
                break;
            }
            let plan2 = plan.clone();
            match fetch_page(s, id, read_only, &plan2, &chunk).await {
                Ok((mut rows, seen_modseq)) => {
                    if let (Some(m), State::Selected { mb, .. }) = (seen_modseq, &mut s.state) {
                        // With CONDSTORE on, the implicit \Seen's new MODSEQ reaches the client
                        // as an untagged FETCH after this FETCH's own (RFC 7162 §3.1, as Dovecot).
                        if !mb.ext.enabled.condstore {
                            mb.own_modseqs.push(m);
                        }
                        s.notify();
                    }
                    announce_and_filter(s, d, &mut rows, changed_since);
                    page = rows;
                }
                Err(e) => return db_no(e),
            }
            continue;
        }
        let charge = budget.take(memory::STEP).await;
        let (plan2, work) = (plan.clone(), std::mem::take(&mut page));
        let step = match s.store().read(move |r| fetch_step(r, &plan2, work, memory::STEP)).await {
            Ok(step) => step,
            Err(e) => return db_no(e),
        };
        page = step.rest;
        let unknown_cte = step.unknown_cte;
        let mut bytes = step.bytes;
        if let Some(first) = step.deferred.first() {
            // What precedes the first large section goes out now, and its charge is given back
            // before the section's chunks take theirs (never wait for a charge while holding one).
            let rest = bytes.split_off(first.at);
            d.push(bytes);
            if d.flush().await.is_err() {
                return Err(Close);
            }
            drop(charge);
            let mut at = first.at;
            bytes = rest;
            for def in &step.deferred {
                d.push(bytes.drain(..def.at - at).collect());
                at = def.at;
                let sent = match &def.binary {
                    Some(pieces) => stream_binary(s, d, &budget, step.body, pieces.clone(), def.range.clone()).await,
                    None => stream_section(s, d, &budget, step.body, def.range.clone()).await,
                };
                if sent.is_err() {
                    return Err(Close);
                }
            }
            d.push(bytes);
        } else {
            d.push(bytes);
            if d.flush().await.is_err() {
                return Err(Close);
            }
            drop(charge);
        }
        if unknown_cte {
            // RFC 3516 §4.3; the responses before this message's went out, as Dovecot does.
            return no(Some("UNKNOWN-CTE"), "Unknown Content-Transfer-Encoding");
        }
    }
    ok(None, "FETCH completed")
}

/// RFC 7162's part of FETCH: MODSEQ and CHANGEDSINCE are CONDSTORE enabling commands;
/// CHANGEDSINCE adds MODSEQ to the items; VANISHED (UID FETCH with CHANGEDSINCE, QRESYNC on)
/// first reports, as `* VANISHED (EARLIER)`, the UIDs of the set expunged since. Returns the plan
/// and the CHANGEDSINCE value; Err: the command's reply (BAD).
async fn condstore(
    s: &mut Session,
    d: &mut Driver,
    set: &SequenceSet,
    plan: FetchPlan,
    uid: bool,
    modifiers: &[FetchModifier],
) -> Result<(FetchPlan, Option<u64>), Reply> {
    let mut changed_since = None;
    let mut vanished = false;
    for m in modifiers {
        match m {
            FetchModifier::ChangedSince(n) => changed_since = Some(n.get()),
            FetchModifier::Vanished => vanished = true,
        }
    }
    if vanished && !(uid && s.enabled.qresync && changed_since.is_some()) {
        return Err(bad("VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC enabled"));
    }
    if changed_since.is_some() || plan.wants_modseq() {
        super::select::enable_condstore(s, d);
    }
    let Some(since) = changed_since else { return Ok((plan, None)) };
    if vanished && let State::Selected { mb, .. } = &s.state {
        // `*` reaches every UID ever given out: expunged ones above the highest left count too.
        let ranges = super::select::set_ranges(set, u32::MAX);
        match s.store().vanished_since(mb.id, since, ranges).await {
            Ok(gone) => crate::imap::untagged::uids_vanished(d.out(), true, &gone),
            Err(e) => return Err(db_no(e)),
        }
    }
    Ok((plan.with_modseq(), Some(since)))
}

/// A loaded page: keywords the client was not told of are announced first (RFC 3501 §7.2.6);
/// with CHANGEDSINCE, the messages not changed since are left out.
fn announce_and_filter(s: &mut Session, d: &mut Driver, page: &mut VecDeque<Pending>, changed_since: Option<u64>) {
    let State::Selected { mb, .. } = &mut s.state else { return };
    for p in page.iter_mut() {
        if let Some(since) = changed_since
            && p.row.as_ref().is_some_and(|r| r.modseq <= since)
        {
            p.row = None;
        }
        if let Some(r) = &p.row {
            mb.announce(&r.keywords, d.out());
        }
    }
}

/// One message a FETCH still has to answer: its row as loaded (None: expunged meanwhile).
pub(super) struct Pending {
    seq: u32,
    recent: bool,
    row: Option<MessageRow>,
    /// This FETCH set `\Seen` on it.
    seen_changed: bool,
}

/// Loads the rows of a page of targets, and sets `\Seen` on those the plan reads (unless
/// read-only). Returns the page in target order and the MODSEQ of the implicit `\Seen` update.
pub(super) async fn fetch_page(
    s: &Session,
    id: i64,
    read_only: bool,
    plan: &FetchPlan,
    chunk: &[(u32, u32, bool)],
) -> DbResult<(VecDeque<Pending>, Option<u64>)> {
    let uids: Vec<u32> = chunk.iter().map(|x| x.1).collect();
    let got = s.store().fetch_rows(id, uid_ranges(&uids), plan.sets_seen() && !read_only).await?;
    let rows = got.rows;
    let page = chunk
        .iter()
        .map(|&(seq, uid, recent)| Pending {
            seq,
            recent,
            row: rows.binary_search_by_key(&uid, |r| r.uid).ok().map(|i| rows[i].clone()),
            seen_changed: got.newly_seen.binary_search(&uid).is_ok(),
        })
        .collect();
    Ok((page, got.seen_modseq))
}

/// What one FETCH step produced: encoded responses, and — when its last message is large — the
/// sections of that message's body the caller streams itself (`deferred`, in `body`).
pub(super) struct Step {
    bytes: Vec<u8>,
    rest: VecDeque<Pending>,
    body: i64,
    deferred: Vec<Deferred>,
    /// The next message has a BINARY section in an encoding no decoder knows: the FETCH ends
    /// here with `NO [UNKNOWN-CTE]` (`rest` is dropped).
    unknown_cte: bool,
}

/// Encodes the responses of the next messages of `work`, as many as fit in `allowance` bytes (at
/// least one). A message whose body is larger than [`STREAM_AT`] ends the step: its large sections
/// are left for the caller to stream from the store.
pub(super) fn fetch_step(
    c: &Reader<'_>,
    plan: &FetchPlan,
    mut work: VecDeque<Pending>,
    allowance: usize,
) -> DbResult<Step> {
    let mut out = Vec::new();
    while let Some(p) = work.front() {
        let Some(row) = &p.row else {
            work.pop_front();
            continue;
        };
        let stored = plan.needs_raw() && row.size as usize > STREAM_AT;
        // Framing and small items; a body read whole counts in full.
        let estimate = 1024 + if plan.needs_raw() && !stored { row.size as usize } else { 0 };
        if !out.is_empty() && out.len() + estimate > allowance {
            break;
        }
        let Some(Pending { seq, recent, row: Some(row), seen_changed }) = work.pop_front() else { continue };
        let meta = if plan.needs_meta() || stored { c.meta(row.body_id)? } else { None };
        if crate::imap::fetch::unknown_cte(plan, meta.as_ref()) {
            return Ok(Step { bytes: out, rest: VecDeque::new(), body: 0, deferred: Vec::new(), unknown_cte: true });
        }
        if stored {
            let body = row.body_id;
            let input = FetchInput { seq, row: &row, recent, meta: meta.as_ref(), raw: None, seen_changed };
            // One open body for all the reads (headers, small sections, BINARY's chunked passes).
            let mut ranges = c.body_ranges(body);
            let mut read = |r: std::ops::Range<usize>| ranges.read(r);
            let mut deferred = Vec::new();
            crate::imap::fetch::encode_stored(
                plan,
                &input,
                row.size as usize,
                &mut read,
                STREAM_AT,
                &mut out,
                &mut deferred,
            );
            if !deferred.is_empty() {
                return Ok(Step { bytes: out, rest: work, body, deferred, unknown_cte: false });
            }
        } else {
            let raw = if plan.needs_raw() { c.raw(row.body_id)? } else { None };
            let input = FetchInput { seq, row: &row, recent, meta: meta.as_ref(), raw: raw.as_deref(), seen_changed };
            crate::imap::fetch::encode(plan, &input, &mut out);
        }
        if out.len() >= allowance {
            break;
        }
    }
    Ok(Step { bytes: out, rest: work, body: 0, deferred: Vec::new(), unknown_cte: false })
}

/// Sends bytes `range` of a stored body as literal data, one budgeted chunk at a time, each read
/// from the store once the previous one is on the socket. NUL goes out as 0x80 (see
/// `fetch::write_literal`). Err: the connection must close — the literal's length is promised,
/// and the body could not be read (expunged and purged meanwhile) or the client is gone.
pub(super) async fn stream_section(
    s: &mut Session,
    d: &mut Driver,
    budget: &memory::Budget,
    body: i64,
    range: std::ops::Range<usize>,
) -> Result<(), ()> {
    let mut pos = range.start;
    while pos < range.end {
        let n = memory::STEP.min(range.end - pos);
        let charge = budget.take(n).await;
        let r = s.store().body_range(body, pos..pos + n).await;
        let mut chunk = match r {
            Ok(Some(chunk)) if chunk.len() == n => chunk,
            other => {
                tracing::warn!("imap: body {body} could not be read while sending it ({:?}): closing", other.err());
                return Err(());
            }
        };
        if let Some(first) = memchr::memchr(0, &chunk) {
            chunk[first..].iter_mut().filter(|b| **b == 0).for_each(|b| *b = 0x80);
        }
        d.push(chunk);
        d.flush().await.map_err(|_| ())?;
        drop(charge);
        pos += n;
    }
    Ok(())
}

/// Sends `window` of a BINARY section of a stored body (`fetch::BinaryStream` over `pieces`), one
/// budgeted chunk at a time like [`stream_section`]: each chunk of the body is read, decoded and
/// sent before the next is read, so a 50 MB attachment costs one chunk of memory, not 50 MB.
/// Err: the connection must close (the literal's length is promised).
pub(super) async fn stream_binary(
    s: &mut Session,
    d: &mut Driver,
    budget: &memory::Budget,
    body: i64,
    pieces: Vec<crate::imap::fetch::Piece>,
    window: std::ops::Range<usize>,
) -> Result<(), ()> {
    let mut st = crate::imap::fetch::BinaryStream::new(pieces, window.clone());
    let mut sent = 0usize;
    loop {
        let mut out = Vec::new();
        let Some(r) = st.want(memory::STEP, &mut out) else {
            sent += out.len();
            d.push(out);
            break;
        };
        // Decoded data is never larger than what it is decoded from (plus a rewritten field).
        let charge = budget.take(r.len() + out.len()).await;
        let n = r.len();
        let chunk = match s.store().body_range(body, r).await {
            Ok(Some(chunk)) if chunk.len() == n => chunk,
            other => {
                tracing::warn!("imap: body {body} could not be read while sending it ({:?}): closing", other.err());
                return Err(());
            }
        };
        st.feed(&chunk, &mut out);
        drop(chunk);
        sent += out.len();
        d.push(out);
        d.flush().await.map_err(|_| ())?;
        drop(charge);
    }
    if sent != window.len() {
        tracing::warn!("imap: body {body}: BINARY section came out at {sent} bytes, not {}: closing", window.len());
        return Err(());
    }
    Ok(())
}
