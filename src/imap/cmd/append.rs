//! APPEND (RFC 3501 §6.3.11) and MULTIAPPEND (RFC 3502) with UIDPLUS's APPENDUID: one path, an
//! APPEND is a MULTIAPPEND of one message.

use super::*;
use crate::imap::syntax::append::MultiAppend;
use crate::store::mailbox::NewMessage;

pub(super) async fn append(
    s: &mut Session,
    m: &Mailbox<'_>,
    flags: &[Flag<'_>],
    date: Option<&DateTime>,
    data: Vec<u8>,
) -> Reply {
    append_all(s, m, vec![new_message(flags, date, data)]).await
}

/// APPEND of several messages, all or none (RFC 3502 §3: "If the server is unable to append
/// all of the messages, it MUST NOT append any of them").
pub async fn multiappend(s: &mut Session, a: MultiAppend) -> Reply {
    let messages = a.messages.into_iter().map(|m| new_message(&m.flags, m.date.as_ref(), m.data)).collect();
    append_all(s, &a.mailbox, messages).await
}

fn new_message(flags: &[Flag<'_>], date: Option<&DateTime>, raw: Vec<u8>) -> NewMessage {
    let (flags, keywords) = flag_bits(flags);
    NewMessage { raw, flags, keywords, date: date.map(timestamp) }
}

/// Stores the messages in one transaction; `[APPENDUID uidvalidity uid-set]` names them all
/// (RFC 4315 §3), `[TRYCREATE]` a mailbox that does not exist (RFC 3501 §6.3.11).
async fn append_all(s: &mut Session, m: &Mailbox<'_>, messages: Vec<NewMessage>) -> Reply {
    let info = match resolve_mailbox(s, m, true).await {
        Ok(Some((_, i))) => i,
        Ok(None) => {
            return no(Some("TRYCREATE"), "no such mailbox");
        }
        Err(e) => return db_no(e),
    };
    match s.store().append_messages(info.id, messages).await {
        Ok((uv, uids)) => {
            s.notify();
            ok(Some(&format!("APPENDUID {uv} {}", set_text(&uids))), "APPEND completed")
        }
        Err(e) => db_no(e),
    }
}
