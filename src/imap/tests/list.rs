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

/// RFC 3501 §6.3.6: the server "MUST NOT unilaterally remove an existing mailbox name from the
/// subscription list even if a mailbox by that name no longer exists" — DELETE used to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_keeps_the_subscription() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    c.expect("a1", "CREATE Old/Sub", &["a1 OK CREATE completed"]).await;
    c.expect("a2", "UNSUBSCRIBE Old", &["a2 OK completed"]).await;
    c.expect("a3", "DELETE Old/Sub", &["a3 OK DELETE completed"]).await;
    c.expect("a4", "DELETE Old", &["a4 OK DELETE completed"]).await;
    c.expect("a5", "LSUB \"\" Old*", &["* LSUB () \"/\" \"Old/Sub\"", "a5 OK LSUB completed"]).await;
    c.expect("a6", "LSUB \"\" %", &{
        let mut v: Vec<String> =
            LOCAL_SUBSCRIBED.iter().map(|l| l.replace("* LIST", "* LSUB").replace(" \\Subscribed", "")).collect();
        v.insert(4, "* LSUB (\\Noselect) \"/\" \"Old\"".into());
        v.push("a6 OK LSUB completed".into());
        v
    })
    .await;
    c.expect("a7", "LIST \"\" Old*", &["a7 OK LIST completed"]).await;
    c.expect("a8", "UNSUBSCRIBE Old/Sub", &["a8 OK completed"]).await;
    c.expect("a9", "LSUB \"\" Old*", &["a9 OK LSUB completed"]).await;
}

/// RFC 5258's form of the LSUB rule: the parent comes with CHILDINFO instead of `\Noselect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursivematch_returns_the_unsubscribed_parent_of_a_subscribed_grandchild() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    c.expect("a1", "CREATE a/b/c", &["a1 OK CREATE completed"]).await;
    c.expect("a2", "UNSUBSCRIBE a/b", &["a2 OK completed"]).await;
    c.expect("a3", "UNSUBSCRIBE a", &["a3 OK completed"]).await;
    c.expect(
        "a4",
        "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"a/%\"",
        &["* LIST (\\HasChildren) \"/\" \"a/b\" (\"CHILDINFO\" (\"SUBSCRIBED\"))", "a4 OK LIST completed"],
    )
    .await;
    c.expect("a5", "LIST (SUBSCRIBED) \"\" \"a/%\"", &["a5 OK LIST completed"]).await;
    c.expect(
        "a6",
        "LIST (SUBSCRIBED) \"\" \"a/*\"",
        &["* LIST (\\HasNoChildren \\Subscribed) \"/\" \"a/b/c\"", "a6 OK LIST completed"],
    )
    .await;
}

// ===== clients =====

const LOCAL_SUBSCRIBED: [&str; 7] = [
    "* LIST (\\HasNoChildren \\Subscribed) \"/\" INBOX",
    "* LIST (\\HasNoChildren \\Archive \\Subscribed) \"/\" \"Archive\"",
    "* LIST (\\HasNoChildren \\Drafts \\Subscribed) \"/\" \"Drafts\"",
    "* LIST (\\HasNoChildren \\Junk \\Subscribed) \"/\" \"Junk\"",
    "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" \"Sent\"",
    "* LIST (\\HasNoChildren \\Trash \\Subscribed) \"/\" \"Trash\"",
    "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Work\"",
];

/// Thunderbird with LIST-EXTENDED offered (../shared/notes/clients.md): subscribed folders with
/// their special use, then INBOX; it shows subscribed folders only, so all of them must be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thunderbird_opening_with_list_extended() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    let mut want = LOCAL_SUBSCRIBED.to_vec();
    want.push("5 OK LIST completed");
    c.expect("5", "list (subscribed) \"\" \"*\" return (special-use)", &want).await;
    c.expect("6", "list \"\" \"INBOX\"", &["* LIST (\\HasNoChildren) \"/\" INBOX", "6 OK LIST completed"]).await;
}

/// The account login sees its subtree re-rooted (DESIGN §3), in the extended LIST too; its
/// special folders are listed before they exist, and LIST-STATUS (like STATUS) creates them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_list_in_an_account_view() {
    let h = Harness::start().await;
    let mut c = h.login("me+Work").await;
    c.expect(
        "a1",
        "LIST (SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN))",
        &[
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" INBOX",
            "* STATUS INBOX (MESSAGES 6 UNSEEN 6)",
            "* LIST (\\HasNoChildren \\Archive \\Subscribed) \"/\" \"Archive\"",
            "* STATUS \"Archive\" (MESSAGES 0 UNSEEN 0)",
            "* LIST (\\HasNoChildren \\Drafts \\Subscribed) \"/\" \"Drafts\"",
            "* STATUS \"Drafts\" (MESSAGES 0 UNSEEN 0)",
            "* LIST (\\HasNoChildren \\Junk \\Subscribed) \"/\" \"Junk\"",
            "* STATUS \"Junk\" (MESSAGES 0 UNSEEN 0)",
            "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" \"Sent\"",
            "* STATUS \"Sent\" (MESSAGES 0 UNSEEN 0)",
            "* LIST (\\HasNoChildren \\Trash \\Subscribed) \"/\" \"Trash\"",
            "* STATUS \"Trash\" (MESSAGES 0 UNSEEN 0)",
            "a1 OK LIST completed",
        ],
    )
    .await;
    c.expect("a2", "CREATE Projects/2025", &["a2 OK CREATE completed"]).await;
    c.expect(
        "a3",
        "LIST \"\" (\"INBOX\" \"Proj*\") RETURN (CHILDREN SUBSCRIBED)",
        &[
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" INBOX",
            "* LIST (\\HasChildren \\Subscribed) \"/\" \"Projects\"",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Projects/2025\"",
            "a3 OK LIST completed",
        ],
    )
    .await;
    // The combined login sees the same mailboxes under Work (its Sent is a plain folder there).
    let mut d = h.login("me").await;
    d.expect(
        "b1",
        "LIST (SPECIAL-USE) \"\" \"*\"",
        &[
            "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
            "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"",
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"",
            "b1 OK LIST completed",
        ],
    )
    .await;
    d.expect(
        "b2",
        "LIST \"Work/\" (\"S*\" \"P%\") RETURN (STATUS (MESSAGES))",
        &[
            "* LIST (\\HasChildren) \"/\" \"Work/Projects\"",
            "* STATUS \"Work/Projects\" (MESSAGES 0)",
            "* LIST (\\HasNoChildren) \"/\" \"Work/Sent\"",
            "* STATUS \"Work/Sent\" (MESSAGES 0)",
            "b2 OK LIST completed",
        ],
    )
    .await;
}

// ===== RFC 5258 §5, adapted =====
//
// Our tree always has the local folders (INBOX, Archive, Drafts, Junk, Sent, Trash) and the
// account folder Work beside the examples' folders, so the listings have them too; the order is
// ours (INBOX first, then by name — the RFC leaves it to the server). A name subscribed without a
// mailbox is one whose mailbox was deleted (SUBSCRIBE wants a mailbox), and CREATE makes every
// superior, so §5.8 A2 and §5.10 are built that way; §5.11-12 (missing superiors of existing
// mailboxes) and remote mailboxes (§5.4-6) cannot be: those lines are left out.

/// Unsubscribes everything the harness starts with (INBOX, the local folders, Work).
async fn unsubscribe_locals(c: &mut Client, keep_inbox: bool) {
    for name in ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash", "Work"] {
        if !(keep_inbox && name == "INBOX") {
            c.expect("u", &format!("UNSUBSCRIBE {name}"), &["u OK completed"]).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5258_examples_5_1_to_5_6() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    for name in ["Fruit/Apple", "Fruit/Banana", "Fruit/Peach", "Tofu", "Vegetable/Broccoli", "Vegetable/Corn"] {
        c.expect("c", &format!("CREATE {name}"), &["c OK CREATE completed"]).await;
    }
    // "Fruit/Peach is subscribed to, but does not actually exist (perhaps it was deleted while
    // still subscribed)".
    c.expect("d", "DELETE Fruit/Peach", &["d OK DELETE completed"]).await;
    unsubscribe_locals(&mut c, true).await;
    for name in ["Fruit", "Fruit/Apple", "Tofu", "Vegetable/Corn"] {
        c.expect("u", &format!("UNSUBSCRIBE {name}"), &["u OK completed"]).await;
    }
    // §5.1: the whole hierarchy.
    let all = [
        ("\\HasNoChildren", "INBOX", true),
        ("\\HasNoChildren \\Archive", "\"Archive\"", false),
        ("\\HasNoChildren \\Drafts", "\"Drafts\"", false),
        ("\\HasChildren", "\"Fruit\"", false),
        ("\\HasNoChildren", "\"Fruit/Apple\"", false),
        ("\\HasNoChildren", "\"Fruit/Banana\"", true),
        ("\\HasNoChildren \\Junk", "\"Junk\"", false),
        ("\\HasNoChildren \\Sent", "\"Sent\"", false),
        ("\\HasNoChildren", "\"Tofu\"", false),
        ("\\HasNoChildren \\Trash", "\"Trash\"", false),
        ("\\HasChildren", "\"Vegetable\"", true),
        ("\\HasNoChildren", "\"Vegetable/Broccoli\"", true),
        ("\\HasNoChildren", "\"Vegetable/Corn\"", false),
        ("\\HasNoChildren", "\"Work\"", false),
    ];
    let lines = |tag: &str, subscribed: bool, only_subscribed: bool, top: bool| -> Vec<String> {
        let mut v: Vec<String> = all
            .iter()
            .filter(|(_, n, sub)| (!only_subscribed || *sub) && (!top || !n.contains('/')))
            .map(|(a, n, sub)| {
                let s = if subscribed && *sub { " \\Subscribed" } else { "" };
                format!("* LIST ({a}{s}) \"/\" {n}")
            })
            .collect();
        v.push(format!("{tag} OK LIST completed"));
        v
    };
    c.expect("A01", "LIST \"\" \"*\"", &lines("A01", false, false, false)).await;
    // §5.2: the subscribed names, Fruit/Peach among them.
    let with_peach = |tag: &str| {
        let mut v = lines(tag, true, true, false);
        v.insert(2, "* LIST (\\NonExistent \\Subscribed) \"/\" \"Fruit/Peach\"".into());
        v
    };
    c.expect("A02", "LIST (SUBSCRIBED) \"\" \"*\"", &with_peach("A02")).await;
    // §5.3: CHILDREN.
    c.expect("A03", "LIST () \"\" \"%\" RETURN (CHILDREN)", &lines("A03", false, false, true)).await;
    // §5.4-5.6: REMOTE, with no remote mailboxes here.
    c.expect("A04", "LIST (REMOTE) \"\" \"%\" RETURN (CHILDREN)", &lines("A04", false, false, true)).await;
    c.expect("A05", "LIST (REMOTE SUBSCRIBED) \"\" \"*\"", &with_peach("A05")).await;
    // "... it doesn't include LIST response for the non-existent Fruit/Peach".
    c.expect("A06", "LIST (REMOTE) \"\" \"*\" RETURN (SUBSCRIBED)", &lines("A06", true, false, false)).await;
    // The kept subscription in LSUB; UNSUBSCRIBE drops it; SUBSCRIBE needs a mailbox again, and
    // a mailbox created under the name is subscribed (as every new one is).
    c.expect(
        "B1",
        "LSUB \"\" Fruit/*",
        &["* LSUB (\\HasNoChildren) \"/\" \"Fruit/Banana\"", "* LSUB () \"/\" \"Fruit/Peach\"", "B1 OK LSUB completed"],
    )
    .await;
    c.expect("B2", "UNSUBSCRIBE Fruit/Peach", &["B2 OK completed"]).await;
    c.expect("B3", "LIST (SUBSCRIBED) \"\" \"*\"", &lines("B3", true, true, false)).await;
    c.expect("B4", "SUBSCRIBE Fruit/Peach", &["B4 NO [NONEXISTENT] no such mailbox"]).await;
    c.expect("B5", "CREATE Fruit/Peach", &["B5 OK CREATE completed"]).await;
    c.expect("B6", "DELETE Fruit/Peach", &["B6 OK DELETE completed"]).await;
    c.expect("B7", "SUBSCRIBE Fruit/Peach", &["B7 OK completed"]).await;
    c.expect("B8", "LIST (SUBSCRIBED) \"\" \"*\"", &with_peach("B8")).await;
    c.expect("B9", "CREATE Fruit/Peach", &["B9 OK CREATE completed"]).await;
    c.expect(
        "C1",
        "LIST (SUBSCRIBED) \"\" Fruit/*",
        &[
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Fruit/Banana\"",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Fruit/Peach\"",
            "C1 OK LIST completed",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5258_example_5_7_several_patterns() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    for name in ["Sent/March2004", "Sent/December2003", "Sent/August2004"] {
        c.expect("c", &format!("CREATE {name}"), &["c OK CREATE completed"]).await;
    }
    c.expect(
        "BBB",
        "LIST \"\" (\"INBOX\" \"Drafts\" \"Sent/%\")",
        &[
            "* LIST (\\HasNoChildren) \"/\" INBOX",
            "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
            "* LIST (\\HasNoChildren) \"/\" \"Sent/August2004\"",
            "* LIST (\\HasNoChildren) \"/\" \"Sent/December2003\"",
            "* LIST (\\HasNoChildren) \"/\" \"Sent/March2004\"",
            "BBB OK LIST completed",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5258_example_5_8_haschildren_and_childinfo() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    for name in ["Foo/Bar", "Foo/Baz", "Moo"] {
        c.expect("c", &format!("CREATE {name}"), &["c OK CREATE completed"]).await;
    }
    unsubscribe_locals(&mut c, false).await;
    for name in ["Foo", "Foo/Bar", "Moo"] {
        c.expect("u", &format!("UNSUBSCRIBE {name}"), &["u OK completed"]).await;
    }
    c.expect(
        "CA3",
        "LIST \"\" (\"Foo\" \"Moo\") RETURN (CHILDREN)",
        &["* LIST (\\HasChildren) \"/\" \"Foo\"", "* LIST (\\HasNoChildren) \"/\" \"Moo\"", "CA3 OK LIST completed"],
    )
    .await;
    // A) Foo/Baz is the only subscribed mailbox.
    c.expect(
        "C02",
        "LIST (SUBSCRIBED) \"\" \"*\"",
        &["* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Foo/Baz\"", "C02 OK LIST completed"],
    )
    .await;
    c.expect("C03", "LIST (SUBSCRIBED) \"\" \"%\"", &["C03 OK LIST completed"]).await;
    c.expect(
        "C04",
        "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"",
        &["* LIST (\\HasChildren) \"/\" \"Foo\" (\"CHILDINFO\" (\"SUBSCRIBED\"))", "C04 OK LIST completed"],
    )
    .await;
    // A1) Foo subscribed too.
    c.expect("s", "SUBSCRIBE Foo", &["s OK completed"]).await;
    c.expect(
        "C04",
        "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"",
        &[
            "* LIST (\\HasChildren \\Subscribed) \"/\" \"Foo\" (\"CHILDINFO\" (\"SUBSCRIBED\"))",
            "C04 OK LIST completed",
        ],
    )
    .await;
    // B) Nothing subscribed: nothing, though Foo has children.
    c.expect("u", "UNSUBSCRIBE Foo", &["u OK completed"]).await;
    c.expect("u", "UNSUBSCRIBE Foo/Baz", &["u OK completed"]).await;
    c.expect("C04", "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"", &["C04 OK LIST completed"]).await;
    // C) Foo and Moo subscribed: Foo has children, none of them subscribed.
    c.expect("s", "SUBSCRIBE Foo", &["s OK completed"]).await;
    c.expect("s", "SUBSCRIBE Moo", &["s OK completed"]).await;
    c.expect(
        "C04",
        "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)",
        &[
            "* LIST (\\HasChildren \\Subscribed) \"/\" \"Foo\"",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Moo\"",
            "C04 OK LIST completed",
        ],
    )
    .await;
    // A2) Foo is no mailbox, Foo/Baz subscribed: here Foo/Baz can only be a kept subscription.
    c.expect("u", "UNSUBSCRIBE Foo", &["u OK completed"]).await;
    c.expect("u", "UNSUBSCRIBE Moo", &["u OK completed"]).await;
    c.expect("s", "SUBSCRIBE Foo/Baz", &["s OK completed"]).await;
    for name in ["Foo/Bar", "Foo/Baz", "Foo"] {
        c.expect("d", &format!("DELETE {name}"), &["d OK DELETE completed"]).await;
    }
    c.expect(
        "C04",
        "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"",
        &["* LIST (\\NonExistent) \"/\" \"Foo\" (\"CHILDINFO\" (\"SUBSCRIBED\"))", "C04 OK LIST completed"],
    )
    .await;
    // RFC 3501 §6.3.9's form of it.
    c.expect("C05", "LSUB \"\" \"%\"", &["* LSUB (\\Noselect) \"/\" \"Foo\"", "C05 OK LSUB completed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5258_examples_5_9_and_5_10_childinfo_and_the_pattern() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    let subscribed =
        ["foo2/bar1", "foo2/bar2", "baz2/bar2", "baz2/bar22", "baz2/bar222", "eps2", "eps2/mamba", "qux2/bar2"];
    for name in subscribed.iter().chain(&["foo/bar"]) {
        c.expect("c", &format!("CREATE {name}"), &["c OK CREATE completed"]).await;
    }
    // §5.10's foo/bar: subscribed, no mailbox.
    c.expect("d", "DELETE foo/bar", &["d OK DELETE completed"]).await;
    unsubscribe_locals(&mut c, false).await;
    // CREATE made foo2, baz2, qux2 and foo as superiors (§5.9's qux2 does not exist).
    for name in ["foo2", "baz2", "qux2", "foo"] {
        c.expect("u", &format!("UNSUBSCRIBE {name}"), &["u OK completed"]).await;
    }
    let mut want: Vec<String> = [
        "baz2/bar2",
        "baz2/bar22",
        "baz2/bar222",
        "eps2",
        "eps2/mamba",
        "foo/bar",
        "foo2/bar1",
        "foo2/bar2",
        "qux2/bar2",
    ]
    .iter()
    .map(|n| {
        let children = match *n {
            "eps2" => "\\HasChildren",
            "foo/bar" => "\\NonExistent",
            _ => "\\HasNoChildren",
        };
        format!("* LIST ({children} \\Subscribed) \"/\" \"{n}\"")
    })
    .collect();
    want.push("D02 OK LIST completed".into());
    c.expect("D02", "LIST (SUBSCRIBED) \"\" \"*\"", &want).await;
    // §5.9: CHILDINFO for foo2 (bar1 does not match "*2") and eps2 (nor does mamba); none for
    // baz2, whose subscribed children all match, and qux2 likewise.
    c.expect(
        "D03",
        "LIST (RECURSIVEMATCH SUBSCRIBED) \"\" \"*2\"",
        &[
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"baz2/bar2\"",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"baz2/bar22\"",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"baz2/bar222\"",
            "* LIST (\\HasChildren \\Subscribed) \"/\" \"eps2\" (\"CHILDINFO\" (\"SUBSCRIBED\"))",
            "* LIST (\\HasChildren) \"/\" \"foo2\" (\"CHILDINFO\" (\"SUBSCRIBED\"))",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"foo2/bar2\"",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"qux2/bar2\"",
            "D03 OK LIST completed",
        ],
    )
    .await;
    // §5.10: several patterns; CHILDINFO does not imply \HasChildren.
    c.expect(
        "a1",
        "LIST \"\" (\"foo\" \"foo/*\")",
        &["* LIST (\\HasNoChildren) \"/\" \"foo\"", "a1 OK LIST completed"],
    )
    .await;
    c.expect(
        "a2",
        "LIST (SUBSCRIBED) \"\" \"foo/*\"",
        &["* LIST (\\NonExistent \\Subscribed) \"/\" \"foo/bar\"", "a2 OK LIST completed"],
    )
    .await;
    c.expect(
        "a3",
        "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" foo RETURN (CHILDREN)",
        &["* LIST (\\HasNoChildren) \"/\" \"foo\" (\"CHILDINFO\" (\"SUBSCRIBED\"))", "a3 OK LIST completed"],
    )
    .await;
}

// ===== LIST-STATUS (RFC 5819), STATUS=SIZE (RFC 8438) =====

/// RFC 5819 §1's example, on our folders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5819_example() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    let mut want = Vec::new();
    for (attrs, name) in [
        ("\\HasNoChildren", "INBOX"),
        ("\\HasNoChildren \\Archive", "\"Archive\""),
        ("\\HasNoChildren \\Drafts", "\"Drafts\""),
        ("\\HasNoChildren \\Junk", "\"Junk\""),
        ("\\HasNoChildren \\Sent", "\"Sent\""),
        ("\\HasNoChildren \\Trash", "\"Trash\""),
        ("\\HasNoChildren", "\"Work\""),
    ] {
        let n = if name == "\"Work\"" { 6 } else { 0 };
        want.push(format!("* LIST ({attrs}) \"/\" {name}"));
        want.push(format!("* STATUS {name} (MESSAGES {n} UNSEEN {n})"));
    }
    want.push("A01 OK LIST completed".into());
    c.expect("A01", "LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))", &want).await;
}

/// The sum of RFC822.SIZE, kept in step by deliveries, APPEND, COPY, EXPUNGE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_size_is_the_sum_of_the_message_sizes() {
    let h = Harness::start().await;
    let mut c = h.login("me").await;
    let corpus: usize = corpus().iter().map(Vec::len).sum();
    c.expect(
        "a1",
        "STATUS Work (MESSAGES SIZE)",
        &[format!("* STATUS \"Work\" (MESSAGES 6 SIZE {corpus})"), "a1 OK STATUS completed".into()],
    )
    .await;
    c.expect("a2", "STATUS Trash (SIZE)", &["* STATUS \"Trash\" (SIZE 0)", "a2 OK STATUS completed"]).await;
    let late = late_message(1);
    h.deliver(vec![late.clone()]).await;
    let r = c.cmd("a3", "APPEND Work {9+}\r\nHi: x\r\n\r\n").await;
    assert!(s(r.last().unwrap()).starts_with("a3 OK [APPENDUID"), "{}", show(&r));
    let total = corpus + late.len() + 9;
    c.expect(
        "a4",
        "STATUS Work (SIZE)",
        &[format!("* STATUS \"Work\" (SIZE {total})"), "a4 OK STATUS completed".into()],
    )
    .await;
    // The same as FETCH says, message by message.
    c.cmd("a5", "SELECT Work").await;
    let r = c.cmd("a6", "FETCH 1:* RFC822.SIZE").await;
    let fetched: usize = r
        .iter()
        .filter_map(|l| {
            s(l).split("RFC822.SIZE ").nth(1).and_then(|x| x.trim_end_matches([')', '\r', '\n']).parse::<usize>().ok())
        })
        .sum();
    assert_eq!(fetched, total, "{}", show(&r));
    let r = c.cmd("a7", "COPY 1:2 Trash").await;
    assert!(s(r.last().unwrap()).starts_with("a7 OK [COPYUID"), "{}", show(&r));
    let (m1, m2) = (crlf(M1).len(), crlf(M2).len());
    let want = format!("* STATUS \"Trash\" (SIZE {})", m1 + m2);
    c.expect("a8", "STATUS Trash (SIZE)", &[want.as_str(), "a8 OK STATUS completed"]).await;
    c.expect("a9", "STORE 1 +FLAGS.SILENT (\\Deleted)", &["a9 OK STORE completed"]).await;
    c.expect("b1", "EXPUNGE", &["* 1 EXPUNGE", "b1 OK EXPUNGE completed"]).await;
    c.expect(
        "b2",
        "LIST \"\" Work RETURN (STATUS (MESSAGES SIZE))",
        &[
            "* LIST (\\HasNoChildren) \"/\" \"Work\"".to_string(),
            format!("* STATUS \"Work\" (MESSAGES 7 SIZE {})", total - m1),
            "b2 OK LIST completed".into(),
        ],
    )
    .await;
}

// ===== syntax =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_syntax_forms_and_errors() {
    let h = Harness::start().await;
    let mut c = h.connect().await;
    c.expect("a0", "LIST \"\" * RETURN (CHILDREN)", &["a0 NO log in first (LOGIN or AUTHENTICATE)"]).await;
    c.expect("a1", "LOGIN me pw", &[format!("a1 OK [CAPABILITY {CAPS_AUTH}] logged in")]).await;
    let bad = |t: &str| format!("{t} BAD syntax error, or a command popbridge does not support");
    // RFC 5258 §3.1: RECURSIVEMATCH needs a base option; unknown options are BAD.
    c.expect("b1", "LIST (RECURSIVEMATCH) \"\" *", &[bad("b1")]).await;
    c.expect("b2", "LIST (REMOTE RECURSIVEMATCH) \"\" *", &[bad("b2")]).await;
    c.expect("b3", "LIST (FROB) \"\" *", &[bad("b3")]).await;
    c.expect("b4", "LIST \"\" * RETURN (FROB)", &[bad("b4")]).await;
    c.expect("b5", "LIST \"\" * RETURN (STATUS (FROB))", &[bad("b5")]).await;
    c.expect("b6", "LIST \"\" ()", &[bad("b6")]).await;
    // Empty option lists are the plain LIST; the empty name still asks for the delimiter.
    c.expect("c1", "LIST () \"\" INBOX RETURN ()", &["* LIST (\\HasNoChildren) \"/\" INBOX", "c1 OK LIST completed"])
        .await;
    c.expect("c2", "LIST \"\" \"\" RETURN (CHILDREN)", &["* LIST (\\Noselect) \"/\" \"\"", "c2 OK LIST completed"])
        .await;
    // Among several patterns an empty one is ignored (RFC 5258 §3); a name matching two is listed once.
    c.expect("c3", "LIST \"\" (\"\" inbox \"I*\")", &["* LIST (\\HasNoChildren) \"/\" INBOX", "c3 OK LIST completed"])
        .await;
    // Literals, modified UTF-7, a reference.
    c.expect("c4", "CREATE Work/Entw&APw-rfe", &["c4 OK CREATE completed"]).await;
    c.expect(
        "c5",
        "LIST {5+}\r\nWork/ ({6+}\r\nEntw&* %) RETURN (SUBSCRIBED)",
        &["* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Work/Entw&APw-rfe\"", "c5 OK LIST completed"],
    )
    .await;
    // LSUB has no extended form.
    c.expect("c6", "LSUB \"\" * RETURN (CHILDREN)", &[bad("c6")]).await;
}
