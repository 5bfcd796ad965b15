//! Each operation of the mailbox API: its effect on the store, and its typed error.

use super::*;

fn msg(subject: &str) -> Vec<u8> {
    format!("From: a@x.example\r\nMessage-ID: <{subject}@x>\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n")
        .into_bytes()
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = crate::store::private_tempdir();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    (dir, store)
}

async fn id(store: &Store, name: &str) -> i64 {
    store.mailbox_named(name.into(), None).await.unwrap().expect("the mailbox").id
}

async fn uids(store: &Store, mailbox: i64) -> Vec<u32> {
    store.read(move |r| r.rows(mailbox, &[(1, u32::MAX)])).await.unwrap().iter().map(|r| r.uid).collect()
}

#[test]
fn sqlite_codes_become_kinds_never_the_text() {
    use rusqlite::ffi;
    let failure = |code: i32, text: &str| rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(text.into()));
    assert_eq!(Error::from(failure(ffi::SQLITE_FULL, "whatever")).kind, ErrorKind::DiskFull);
    assert_eq!(Error::from(failure(ffi::SQLITE_BUSY, "disk is full")).kind, ErrorKind::Busy);
    assert_eq!(Error::from(failure(ffi::SQLITE_LOCKED, "x")).kind, ErrorKind::Busy);
    assert_eq!(Error::from(failure(ffi::SQLITE_CORRUPT, "x")).kind, ErrorKind::Corrupt);
    assert_eq!(Error::from(failure(ffi::SQLITE_NOTADB, "x")).kind, ErrorKind::Corrupt);
    assert_eq!(Error::from(failure(ffi::SQLITE_IOERR, "the disk is full")).kind, ErrorKind::Other);
    assert_eq!(Error::from(rusqlite::Error::QueryReturnedNoRows).kind, ErrorKind::NotFound);
    let damaged = crate::error::Error::new(ErrorClass::StoreDamaged, "lost commits");
    assert_eq!(Error::from(damaged), Error::new(ErrorKind::Corrupt, "lost commits"));
    assert_eq!(Error::from(crate::error::Error::other("full")).kind, ErrorKind::Other);
}

#[tokio::test]
async fn append_select_and_status() {
    let (_d, store) = open();
    let inbox = id(&store, "INBOX").await;
    let (uv, uid) = store.append_message(inbox, msg("one"), flag::SEEN, vec!["$Work".into()], None).await.unwrap();
    assert_eq!(uid, 1);
    let (uv2, uid2) = store.append_message(inbox, msg("two"), flag::DELETED, vec![], None).await.unwrap();
    assert_eq!((uv2, uid2), (uv, 2));

    let sel = store.select_mailbox(inbox, true).await.unwrap();
    assert_eq!(sel.uids, [1, 2]);
    assert_eq!(sel.first_unseen, Some(2));
    assert_eq!(sel.recent_floor, 0, "the first SELECT gets both as \\Recent");
    assert_eq!(sel.info.uidvalidity, uv);
    assert_eq!(store.select_mailbox(inbox, true).await.unwrap().recent_floor, 2, "claimed by the first");
    assert_eq!(store.select_mailbox(inbox, false).await.unwrap().recent_floor, 2, "EXAMINE does not claim");
    assert_eq!(store.status_counts(inbox, true, true).await.unwrap(), (0, 1));
    assert_eq!(store.status_counts(inbox, false, false).await.unwrap(), (0, 0));

    let e = store.select_mailbox(9999, false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    let e = store.append_message(9999, msg("x"), 0, vec![], None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn a_second_copy_in_sent_is_not_stored_twice() {
    let (_d, store) = open();
    let sent = id(&store, "Sent").await;
    let first = store.append_message(sent, msg("s"), 0, vec![], None).await.unwrap();
    assert_eq!(store.append_message(sent, msg("s"), 0, vec![], None).await.unwrap(), first);
    let inbox = id(&store, "INBOX").await;
    store.append_message(inbox, msg("s"), 0, vec![], None).await.unwrap();
    assert_eq!(store.append_message(inbox, msg("s"), 0, vec![], None).await.unwrap().1, 2, "only in \\Sent");
}

#[tokio::test]
async fn flags_fetch_rows_and_changes() {
    let (_d, store) = open();
    let inbox = id(&store, "INBOX").await;
    for s in ["a", "b", "c"] {
        store.append_message(inbox, msg(s), 0, vec![], None).await.unwrap();
    }
    let before = store.changes_after(inbox, 0).await.unwrap().unwrap().highestmodseq;
    let (rows, changed) =
        store.store_flags(inbox, vec![(1, 2)], FlagOp::Add, flag::FLAGGED, vec!["$x".into()]).await.unwrap();
    assert_eq!(changed, 2);
    assert!(rows.iter().all(|r| r.flags == flag::FLAGGED && r.keywords == ["$x"] && r.modseq > before));
    let (_, changed) = store.store_flags(inbox, vec![(1, 2)], FlagOp::Add, flag::FLAGGED, vec![]).await.unwrap();
    assert_eq!(changed, 0, "nothing new: no MODSEQ spent");
    let ch = store.changes_after(inbox, before).await.unwrap().unwrap();
    assert_eq!(ch.rows.iter().map(|r| r.uid).collect::<Vec<_>>(), [1, 2]);
    assert!(ch.expunged.is_empty());

    let got = store.fetch_rows(inbox, vec![(2, 3)], false).await.unwrap();
    assert_eq!((got.rows.len(), got.newly_seen.len(), got.seen_modseq), (2, 0, None));
    let got = store.fetch_rows(inbox, vec![(2, 3)], true).await.unwrap();
    assert_eq!(got.newly_seen, [2, 3]);
    assert!(got.rows.iter().all(|r| r.flags & flag::SEEN != 0 && Some(r.modseq) == got.seen_modseq));
    assert!(store.fetch_rows(inbox, vec![(2, 3)], true).await.unwrap().newly_seen.is_empty());

    assert!(store.changes_after(9999, 0).await.unwrap().is_none(), "a mailbox deleted meanwhile");
    let body = got.rows[0].body_id;
    assert_eq!(store.body_range(body, 0..5).await.unwrap().as_deref(), Some(&b"From:"[..]));
    assert_eq!(store.body_range(999_999, 0..5).await.unwrap(), None);
}

#[tokio::test]
async fn copy_move_and_expunge() {
    let (_d, store) = open();
    let (inbox, trash) = (id(&store, "INBOX").await, id(&store, "Trash").await);
    for s in ["a", "b", "c", "d"] {
        store.append_message(inbox, msg(s), 0, vec![], None).await.unwrap();
    }
    let (pairs, moved) = store.copy_messages(inbox, vec![(1, 2)], trash, false).await.unwrap();
    assert_eq!((pairs, moved), (vec![(1, 1), (2, 2)], vec![]));
    let (pairs, moved) = store.copy_messages(inbox, vec![(3, 3)], trash, true).await.unwrap();
    assert_eq!((pairs, moved), (vec![(3, 3)], vec![3]));
    assert_eq!(uids(&store, inbox).await, [1, 2, 4]);
    assert_eq!(uids(&store, trash).await, [1, 2, 3]);
    let since = store.changes_after(inbox, 0).await.unwrap().unwrap().highestmodseq;

    store.store_flags(inbox, vec![(1, 1), (4, 4)], FlagOp::Add, flag::DELETED, vec![]).await.unwrap();
    assert_eq!(store.expunge_deleted(inbox, Some(vec![(4, 4)])).await.unwrap(), [4], "UID EXPUNGE: only these");
    assert_eq!(store.expunge_deleted(inbox, None).await.unwrap(), [1]);
    assert_eq!(uids(&store, inbox).await, [2]);
    assert_eq!(store.changes_after(inbox, since).await.unwrap().unwrap().expunged, [1, 4]);
    let info = store.mailbox_named("INBOX".into(), None).await.unwrap().unwrap();
    assert_eq!(info.messages, 1);

    let e = store.copy_messages(inbox, vec![(2, 2)], 9999, false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn create_rename_delete_subscribe() {
    let (_d, store) = open();
    assert!(store.create_mailbox_tree("a/b/c".into(), None).await.unwrap());
    assert!(!store.create_mailbox_tree("a/b".into(), None).await.unwrap(), "exists already (created as a parent)");
    let names = |all: Vec<MailboxInfo>| all.into_iter().map(|m| m.name).collect::<Vec<_>>();
    assert!(names(store.list_mailboxes().await.unwrap()).iter().any(|n| n == "a/b"));

    let a = id(&store, "a").await;
    assert!(!store.delete_mailbox_leaf(a, "a".into()).await.unwrap(), "has children");
    assert!(store.rename_mailbox_tree(a, "a".into(), "x/y".into()).await.unwrap());
    let all = names(store.list_mailboxes().await.unwrap());
    assert!(["x", "x/y", "x/y/b", "x/y/b/c"].iter().all(|n| all.iter().any(|m| m == n)), "{all:?}");
    let c = id(&store, "x/y/b/c").await;
    assert!(store.delete_mailbox_leaf(c, "x/y/b/c".into()).await.unwrap());
    assert_eq!(store.mailbox_named("x/y/b/c".into(), None).await.unwrap(), None);

    let inbox = id(&store, "INBOX").await;
    store.append_message(inbox, msg("a"), 0, vec![], None).await.unwrap();
    assert!(store.rename_mailbox_tree(inbox, "INBOX".into(), "Old".into()).await.unwrap());
    assert_eq!(uids(&store, inbox).await, Vec::<u32>::new(), "INBOX stays, empty");
    assert_eq!(uids(&store, id(&store, "Old").await).await, [1]);
    assert!(!store.rename_mailbox_tree(inbox, "INBOX".into(), "Old".into()).await.unwrap());

    assert!(store.set_mailbox_subscribed("Old".into(), false).await.unwrap());
    assert!(!store.mailbox_named("Old".into(), None).await.unwrap().unwrap().subscribed);
    assert!(!store.set_mailbox_subscribed("none".into(), true).await.unwrap());

    let made = store.mailbox_named("Work/Sent".into(), Some("\\Sent".into())).await.unwrap().unwrap();
    assert_eq!(made.special_use.as_deref(), Some("\\Sent"), "a view's special folder, made on first use");
    assert_eq!(store.account_root("nobody".into()).await.unwrap(), None);
    store.ensure_account("Work").unwrap();
    assert_eq!(store.account_root("work".into()).await.unwrap().as_deref(), Some("Work"));
}

/// A full disk (here: the file may not grow) is `DiskFull`, from SQLite's code; SELECT still opens.
#[tokio::test]
async fn a_full_disk_is_disk_full() {
    let (_d, store) = open();
    let inbox = id(&store, "INBOX").await;
    store.append_message(inbox, msg("a"), 0, vec![], None).await.unwrap();
    // Sequential jobs reuse the one pooled connection: cap its file at its current size.
    let limit = store
        .pool()
        .run(|c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
            c.pragma_update(None, "max_page_count", pages).unwrap();
            pages
        })
        .await
        .unwrap();
    assert!(limit > 0);
    let big = [msg("b"), vec![b'x'; 4 << 20]].concat();
    let e = store.append_message(inbox, big, 0, vec![], None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::DiskFull, "{e}");
    assert_eq!(uids(&store, inbox).await, [1], "nothing was written");
}

#[test]
fn the_special_folders_are_the_local_folders_but_inbox() {
    let local: Vec<(&str, &str)> = crate::store::LOCAL_FOLDERS.iter().filter_map(|(n, a)| a.map(|a| (*n, a))).collect();
    assert_eq!(local, crate::store::SPECIAL);
}

/// SELECT of a mailbox large enough for the UID cache (`uid_cache`) gives exactly the UIDs a
/// full read gives, after every kind of change — expunges, appends, moves in and out, flag
/// changes, and appends by another process (another `Store` on the same file).
#[tokio::test(flavor = "multi_thread")]
async fn select_of_a_large_mailbox_tracks_every_change() {
    let (dir, store) = open();
    let path = dir.path().join("s.sqlite");
    let n = crate::store::uid_cache::MIN_CACHED + 100;
    let ids = store.ensure_account("Big").unwrap();
    let store = std::sync::Arc::new(store);
    let s2 = store.clone();
    tokio::task::spawn_blocking(move || {
        let server = s2.pop_server(ids.account, "pop.example:995/me").unwrap().id;
        let mut d = crate::store::Delivery::new(&s2, ids, server).unwrap();
        for i in 0..n {
            let m = msg(&format!("m{i}"));
            d.add(&crate::store::Identity::new(&format!("u{i}"), m.len() as u64), &m, 1_700_000_000).unwrap();
        }
        d.commit().unwrap();
    })
    .await
    .unwrap();
    let (big, inbox) = (id(&store, "Big").await, id(&store, "INBOX").await);
    let other = Store::open(&path).unwrap();
    let mut seed = 7u64;
    let mut next = move |m: u32| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as u32) % m.max(1)
    };
    for round in 0..24 {
        let now = uids(&store, big).await;
        let pick = |k: u32| now[k as usize % now.len()];
        match round % 6 {
            0 => {
                let a = pick(next(now.len() as u32));
                store.store_flags(big, vec![(a, a + 40)], FlagOp::Add, flag::DELETED, vec![]).await.unwrap();
                store.expunge_deleted(big, None).await.unwrap();
            }
            1 => {
                store.append_message(big, msg(&format!("a{round}")), 0, vec![], None).await.unwrap();
            }
            2 => {
                let a = pick(next(now.len() as u32));
                store.copy_messages(big, vec![(a, a + 3)], inbox, true).await.unwrap();
            }
            3 => {
                store.append_message(inbox, msg(&format!("i{round}")), 0, vec![], None).await.unwrap();
                let top = *uids(&store, inbox).await.last().unwrap();
                store.copy_messages(inbox, vec![(1, top)], big, round % 2 == 0).await.unwrap();
            }
            4 => {
                let a = pick(next(now.len() as u32));
                store.store_flags(big, vec![(a, a + 100)], FlagOp::Add, flag::SEEN, vec!["$x".into()]).await.unwrap();
            }
            _ => {
                other.append_message(big, msg(&format!("o{round}")), 0, vec![], None).await.unwrap();
                let a = pick(next(now.len() as u32));
                other.store_flags(big, vec![(a, a)], FlagOp::Add, flag::DELETED, vec![]).await.unwrap();
                other.expunge_deleted(big, None).await.unwrap();
            }
        }
        let want = uids(&store, big).await;
        let sel = store.select_mailbox(big, round % 2 == 0).await.unwrap();
        assert_eq!(sel.uids.len(), want.len(), "round {round}");
        assert!(sel.uids == want, "round {round}: the selected UIDs differ from the mailbox's");
        assert_eq!(sel.info.messages as usize, want.len(), "round {round}");
    }
    let cache = store.uid_cache.lock().unwrap();
    assert!(!cache.is_empty(), "the large mailbox's list is cached");
    assert_eq!(cache.full_reads(), 1, "every SELECT after the first read only what changed");
}

/// STATUS SIZE's counter (schema 11): the migration counts what a store already holds, and the
/// triggers keep it in step with every insert and delete.
#[test]
fn the_size_counter_is_backfilled_and_kept_in_step() {
    let c = Connection::open_in_memory().unwrap();
    let migrations = crate::store::schema::MIGRATIONS;
    // 10 → 11 (the size counter) is MIGRATIONS[10].
    let (before, from_11) = migrations.split_at(10);
    let last = from_11[0];
    assert!(last.contains("ADD COLUMN size"));
    for m in before {
        c.execute_batch(m).unwrap();
    }
    c.execute_batch(
        "INSERT INTO mailboxes (id, name, uidvalidity, created_at) VALUES (1, 'A', 1, 0), (2, 'B', 2, 0);
         INSERT INTO bodies (id, meta_version, meta, raw) VALUES (1, 0, x'', x''), (2, 0, x'', x'');
         INSERT INTO messages (mailbox_id, uid, body_id, modseq, internaldate, internaldate_tz, size)
             VALUES (1, 1, 1, 1, 0, 0, 100), (1, 2, 2, 1, 0, 0, 23), (2, 1, 1, 1, 0, 0, 100);",
    )
    .unwrap();
    c.execute_batch(last).unwrap();
    let size =
        |id: i64| -> i64 { c.query_row("SELECT size FROM mailboxes WHERE id = ?1", [id], |r| r.get(0)).unwrap() };
    assert_eq!((size(1), size(2)), (123, 100));
    c.execute(
        "INSERT INTO messages (mailbox_id, uid, body_id, modseq, internaldate, internaldate_tz, size) VALUES (2, 2, 2, 1, 0, 0, 7)",
        [],
    )
    .unwrap();
    c.execute("DELETE FROM messages WHERE mailbox_id = 1 AND uid = 1", []).unwrap();
    assert_eq!((size(1), size(2)), (23, 107));
}

/// RFC 3501 §6.3.6: DELETE keeps a subscribed name subscribed; CREATE and RENAME to it take it
/// back; UNSUBSCRIBE drops it; an unsubscribed mailbox leaves nothing behind.
#[tokio::test]
async fn subscriptions_outlive_their_mailbox() {
    let (_d, store) = open();
    let kept = || async { store.kept_subscriptions().await.unwrap() };
    for name in ["p", "q", "r"] {
        assert!(store.create_mailbox_tree(name.into(), None).await.unwrap());
    }
    assert!(store.set_mailbox_subscribed("q".into(), false).await.unwrap());
    for name in ["p", "q", "r"] {
        let i = id(&store, name).await;
        assert!(store.delete_mailbox_leaf(i, name.into()).await.unwrap());
    }
    assert_eq!(kept().await, ["p", "r"]);
    assert!(store.kept_subscription("p".into(), true).await.unwrap());
    assert!(!store.kept_subscription("q".into(), true).await.unwrap());
    assert!(store.create_mailbox_tree("p".into(), None).await.unwrap());
    assert_eq!(kept().await, ["r"], "a new mailbox takes the name back");
    let p = id(&store, "p").await;
    assert!(store.rename_mailbox_tree(p, "p".into(), "r".into()).await.unwrap());
    assert_eq!(kept().await, Vec::<String>::new(), "so does a rename");
    let r = id(&store, "r").await;
    assert!(store.delete_mailbox_leaf(r, "r".into()).await.unwrap());
    assert!(store.kept_subscription("r".into(), false).await.unwrap(), "UNSUBSCRIBE drops it");
    assert!(!store.kept_subscription("r".into(), false).await.unwrap());
    assert_eq!(kept().await, Vec::<String>::new());
}
