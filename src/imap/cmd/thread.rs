//! THREAD (RFC 5256): the messages SORT's selection yields (`cmd::sort::select`), threaded by
//! `imap::thread`.

use imap_next::imap_types::core::{Charset, Vec1};
use imap_next::imap_types::extensions::thread::ThreadingAlgorithm;

use super::*;
use crate::imap::thread::{self, Message};
use crate::store::sortkeys::Columns;

pub(super) async fn thread(
    s: &mut Session,
    d: &mut Driver,
    algorithm: &ThreadingAlgorithm<'_>,
    charset: &Charset<'_>,
    search: &Vec1<SearchKey<'_>>,
    uid: bool,
) -> Reply {
    let references = match algorithm {
        ThreadingAlgorithm::References => true,
        ThreadingAlgorithm::OrderedSubject => false,
        ThreadingAlgorithm::Other(_) => return bad("threading algorithm not supported"),
    };
    let cols = Columns { date: true, subject: true, thread: references, ..Columns::default() };
    let sel = match sort::select(s, charset, search, cols).await {
        Ok(sel) => sel,
        Err(r) => return r,
    };
    let msgs: Vec<Message> = sel
        .into_iter()
        .map(|m| Message {
            number: if uid { m.row.uid } else { m.seq },
            seq: m.seq,
            date: m.row.date(),
            subject: m.row.keys.subject,
            reply: m.row.keys.reply,
            message_id: m.row.keys.message_id,
            references: m.row.keys.references,
        })
        .collect();
    let threads = if references { thread::references(&msgs) } else { thread::ordered_subject(&msgs) };
    d.out().extend_from_slice(thread::response(&threads).as_bytes());
    ok(None, "THREAD completed")
}
