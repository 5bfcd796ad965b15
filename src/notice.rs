//! What every message the bridge writes itself has in common: the sender it claims. Bounces and
//! verification codes (`smtp::notice`) and account-health notices (`fetch::health`) all come from
//! here, so a mail client can filter them by one address.

/// The From of every notice: clearly the bridge, never a real mailbox (`.invalid` is reserved by
/// RFC 2606: no mail can ever be sent back to it).
pub const NOTICE_FROM: (&str, &str) = ("popbridge", "mailer-daemon@popbridge.invalid");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_is_no_real_mailbox() {
        assert!(NOTICE_FROM.1.ends_with(".invalid"));
    }
}
