//! Messages the bridge writes itself: delivery failure notices (bounces) and verification codes.

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;

use crate::notice::NOTICE_FROM;

fn build(b: MessageBuilder<'_>) -> Vec<u8> {
    b.write_to_vec().unwrap_or_default()
}

/// The notice written to the local INBOX when a message cannot be delivered (to some or all of its
/// recipients): what, to whom, and what the server said.
pub fn bounce(
    to: &str,
    subject: Option<&str>,
    failures: &[(String, String)],
    original_headers: &[u8],
    account: &str,
) -> Vec<u8> {
    let subject = subject.unwrap_or("(no subject)");
    let mut text =
        format!("popbridge could not deliver your message \"{subject}\", sent from account {account}, to:\n\n");
    for (rcpt, why) in failures {
        text.push_str(&format!("  {rcpt}\n      {why}\n"));
    }
    text.push_str(
        "\nThe message was not delivered to the addresses above. Check the addresses; if the \
         server's reply mentions authentication or policy, check the account's outgoing server \
         settings (popbridge account test) or ask your provider.\n\n--- headers of your message ---\n\n",
    );
    text.push_str(&String::from_utf8_lossy(original_headers));
    build(
        MessageBuilder::new()
            .from(Address::new_address(Some(NOTICE_FROM.0), NOTICE_FROM.1))
            .to(Address::new_address(None::<&str>, to))
            .subject(format!("Undelivered: {subject}"))
            .header("Auto-Submitted", mail_builder::headers::raw::Raw::new("auto-replied"))
            .text_body(text),
    )
}

/// The verification mail: the code for the user to type, and a header that lets popbridge confirm
/// the address by itself when this mail comes back through a POP account (the usual case).
pub fn verification(address: &str, code: &str, account: &str) -> Vec<u8> {
    let text = format!(
        "This message confirms that {address} is yours, so popbridge may use it for account {account}.\n\n\
         Verification code: {code}\n\n\
         If this address is fetched by popbridge, it will confirm it by itself when this message arrives.\n\
         Otherwise run:\n\n    popbridge verify confirm {address} {code}\n\n\
         The code is valid for 24 hours. If you did not ask for this, ignore this message.\n"
    );
    build(
        MessageBuilder::new()
            .from(Address::new_address(Some("popbridge verification"), address))
            .to(Address::new_address(None::<&str>, address))
            .subject("popbridge verification code")
            .header("Auto-Submitted", mail_builder::headers::raw::Raw::new("auto-generated"))
            .header(VERIFY_HEADER, mail_builder::headers::raw::Raw::new(format!("{address} {code}")))
            .text_body(text),
    )
}

/// Header carrying `address code` in verification mails.
pub const VERIFY_HEADER: &str = "X-Popbridge-Verify";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_valid_mail() {
        let b = bounce(
            "me@work.example",
            Some("Report"),
            &[("x@y.example".into(), "550 5.1.1 no such user".into())],
            b"Subject: Report\r\n",
            "Work",
        );
        let m = crate::mime::MessageMeta::extract(&b);
        assert!(m.envelope.subject.as_deref().is_some_and(|s| s.contains("Undelivered")));
        let t = String::from_utf8_lossy(&b);
        assert!(t.contains("x@y.example") && t.contains("550 5.1.1"));
        let v = verification("desk@work.example", "12345678", "Work");
        let t = String::from_utf8_lossy(&v);
        assert!(t.contains("X-Popbridge-Verify: desk@work.example 12345678"), "{t}");
    }
}
