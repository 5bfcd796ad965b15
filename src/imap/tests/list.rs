//! LIST / LSUB / STATUS transcripts: LIST-EXTENDED (RFC 5258, its §5 examples), LIST-STATUS
//! (RFC 5819), SPECIAL-USE's return option (RFC 6154 §2), STATUS=SIZE (RFC 8438), the LSUB `%`
//! rule of RFC 3501 §6.3.9 and UIDVALIDITY across DELETE + CREATE (RFC 3501 §2.3.1.1).

use super::*;

// ===== the bugs of issue 15 =====

/// Apple Mail (iOS 18) opens with this; it got `BAD syntax error`, so the folder list failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ios_list_with_return_special_use() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    c.expect(
        "a1",
        "LIST \"\" \"*\" RETURN (SPECIAL-USE)",
        &[
            "* LIST (\\HasNoChildren) \"/\" INBOX",
            "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
            "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"",
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"",
            "* LIST (\\HasNoChildren) \"/\" \"Work\"",
            "a1 OK LIST completed",
        ],
    )
    .await;
}

/// RFC 3501 §2.3.1.1: a mailbox deleted and created again is a new mailbox, within one second too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uidvalidity_changes_when_a_mailbox_is_deleted_and_created_again() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    let t0 = std::time::Instant::now();
    let uidvalidity = |r: &[Vec<u8>]| {
        let text = show(r);
        let at = text.find("[UIDVALIDITY ").unwrap_or_else(|| panic!("no UIDVALIDITY: {text}"));
        text[at + 13..].split(']').next().unwrap_or_default().to_string()
    };
    c.expect("a1", "CREATE x", &["a1 OK CREATE completed"]).await;
    let u1 = uidvalidity(&c.cmd("a2", "SELECT x").await);
    c.expect("a3", "UNSELECT", &["a3 OK UNSELECT completed"]).await;
    c.expect("a4", "DELETE x", &["a4 OK DELETE completed"]).await;
    c.expect("a5", "CREATE x", &["a5 OK CREATE completed"]).await;
    let u2 = uidvalidity(&c.cmd("a6", "SELECT x").await);
    assert!(t0.elapsed() < std::time::Duration::from_millis(900), "not within a second: {:?}", t0.elapsed());
    assert_ne!(u1, u2, "the re-created mailbox repeats UIDVALIDITY {u1}");
}

/// RFC 3501 §6.3.9: `a/b/c` subscribed, `a/b` not: `LSUB "" "a/%"` returns `a/b` as `\Noselect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lsub_percent_returns_the_unsubscribed_parent_of_a_subscribed_grandchild() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    c.expect("a1", "CREATE a/b/c", &["a1 OK CREATE completed"]).await;
    c.expect("a2", "UNSUBSCRIBE a/b", &["a2 OK completed"]).await;
    c.expect("a3", "UNSUBSCRIBE a", &["a3 OK completed"]).await;
    c.expect("a4", "LSUB \"\" \"a/%\"", &["* LSUB (\\Noselect) \"/\" \"a/b\"", "a4 OK LSUB completed"]).await;
    c.expect("a5", "LSUB \"\" \"a%\"", &["* LSUB (\\Noselect) \"/\" \"a\"", "a5 OK LSUB completed"]).await;
    c.expect("a6", "LSUB \"a/\" \"%\"", &["* LSUB (\\Noselect) \"/\" \"a/b\"", "a6 OK LSUB completed"]).await;
}
