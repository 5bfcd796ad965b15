//! The untagged mailbox-size and expunge updates (RFC 3501 §7.3.1, §7.3.2, §7.4.1): `* n EXISTS`,
//! `* n RECENT`, `* n EXPUNGE`, built here only, with imap-codec's encoder. The unsolicited
//! `* n FETCH (UID u FLAGS (…))` is the FETCH writer's ([`super::fetch::write_flags_fetch`]);
//! a command's tagged status is `cmd::Status`.

use std::num::NonZeroU32;

use imap_codec::encode::Encoder;
use imap_next::imap_types::response::{Data, Response};

fn data(out: &mut Vec<u8>, d: Data<'_>) {
    out.extend_from_slice(&imap_codec::ResponseCodec::default().encode(&Response::Data(d)).dump());
}

pub fn exists(out: &mut Vec<u8>, n: u32) {
    data(out, Data::Exists(n));
}

pub fn recent(out: &mut Vec<u8>, n: u32) {
    data(out, Data::Recent(n));
}

/// `seq`: the message's sequence number before it goes (0 is not a sequence number: nothing).
pub fn expunge(out: &mut Vec<u8>, seq: u32) {
    if let Some(seq) = NonZeroU32::new(seq) {
        data(out, Data::Expunge(seq));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lines_are_rfc_3501s() {
        let mut out = Vec::new();
        super::exists(&mut out, 23);
        super::recent(&mut out, 0);
        super::expunge(&mut out, 3);
        super::expunge(&mut out, 0);
        assert_eq!(out, b"* 23 EXISTS\r\n* 0 RECENT\r\n* 3 EXPUNGE\r\n");
    }
}
