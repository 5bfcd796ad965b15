//! TEMPORARY STUB (replaced by the real encoder).
use imap_next::imap_types::fetch::MacroOrMessageDataItemNames;

use super::message::MessageRow;
use crate::mime::MessageMeta;

pub struct FetchPlan;
impl FetchPlan {
    pub fn new(_items: &MacroOrMessageDataItemNames<'_>, _uid_command: bool) -> Result<FetchPlan, String> {
        Ok(FetchPlan)
    }
    pub fn needs_meta(&self) -> bool {
        false
    }
    pub fn needs_raw(&self) -> bool {
        false
    }
    pub fn sets_seen(&self) -> bool {
        false
    }
    pub fn wants_flags(&self) -> bool {
        true
    }
}
pub struct FetchInput<'a> {
    pub seq: u32,
    pub row: &'a MessageRow,
    pub recent: bool,
    pub meta: Option<&'a MessageMeta>,
    pub raw: Option<&'a [u8]>,
    pub seen_changed: bool,
}
pub fn encode(_plan: &FetchPlan, m: &FetchInput<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("* {} FETCH (UID {})\r\n", m.seq, m.row.uid).as_bytes());
}
pub fn write_flags(flags: u8, keywords: &[String], recent: bool, out: &mut Vec<u8>) {
    out.push(b'(');
    let mut first = true;
    for (bit, name) in super::message::flag::ALL {
        if flags & bit != 0 {
            if !first {
                out.push(b' ');
            }
            out.extend_from_slice(name.as_bytes());
            first = false;
        }
    }
    for k in keywords {
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(k.as_bytes());
        first = false;
    }
    if recent {
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(b"\\Recent");
    }
    out.push(b')');
}
