//! APPEND (RFC 3501 §6.3.11) with UIDPLUS's APPENDUID.

use super::*;

pub(super) async fn append(
    s: &mut Session,
    m: &Mailbox<'_>,
    flags: &[Flag<'_>],
    date: Option<&DateTime>,
    data: Vec<u8>,
) -> Reply {
    let info = match resolve_mailbox(s, m, true).await {
        Ok(Some((_, i))) => i,
        Ok(None) => {
            return no(Some("TRYCREATE"), "no such mailbox");
        }
        Err(e) => return db_no(e),
    };
    let (bits, kw) = flag_bits(flags);
    let date = date.map(timestamp);
    let id = info.id;
    let r = s.store().append_message(id, data, bits, kw, date).await;
    match r {
        Ok((uv, uid)) => {
            s.notify();
            ok(Some(&format!("APPENDUID {uv} {uid}")), "APPEND completed")
        }
        Err(e) => db_no(e),
    }
}

/// APPEND of several messages, all or none (RFC 3502).
pub async fn multiappend(_s: &mut Session, _a: crate::imap::syntax::append::MultiAppend) -> Reply {
    bad("MULTIAPPEND is not supported yet")
}
