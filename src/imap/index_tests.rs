//! The search index (`store::search`) against the evaluation (`imap::search`): an index lookup
//! answers exactly what evaluating the query on every message answers. Here, not in the store,
//! because the evaluation is the IMAP server's (the store does not import upward).

use crate::imap::search::{Candidate, Context, SearchQuery};
use crate::mime::text::SearchText;
use crate::store::Store;
use crate::store::search::index_some;
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::search::SearchKey;

fn msg(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Jürgen <j@x.example>\r\nSubject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// What the evaluation (no index) says: UIDs of INBOX whose text matches.
async fn inbox(store: &Store) -> i64 {
    store.mailbox_named("INBOX".into(), None).await.unwrap().unwrap().id
}

async fn scan(store: &Store, key: &SearchKey<'_>) -> Vec<u32> {
    let q = SearchQuery::new(key, None).unwrap();
    let id = inbox(store).await;
    store
        .read(move |r| {
            let rows = r.rows(id, &[(1, u32::MAX)])?;
            Ok(rows
                .iter()
                .filter(|row| {
                    let raw = r.raw(row.body_id).unwrap().unwrap();
                    let text = SearchText::from_raw(&raw);
                    let c = Candidate { text: Some(&text), ..Candidate::new(1, row, false) };
                    q.matches(&c, &Context { max_seq: 1, max_uid: u32::MAX })
                })
                .map(|row| row.uid)
                .collect())
        })
        .await
        .unwrap()
}

async fn indexed(store: &Store, key: &SearchKey<'_>) -> Vec<u32> {
    let q = SearchQuery::new(key, None).unwrap();
    let f = q.text_filter().expect("a usable filter");
    assert!(f.exact);
    let id = inbox(store).await;
    store.read(move |r| r.rows_matching(id, &f)).await.unwrap().0.iter().map(|r| r.uid).collect()
}

fn text(s: &str) -> AString<'static> {
    AString::try_from(s.to_owned()).unwrap()
}

#[tokio::test]
async fn the_index_answers_exactly_what_the_evaluation_answers() {
    let dir = crate::store::private_tempdir();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let bodies = [
        ("Meeting at noon", "Let's meet at NOON in the\r\n  big   room."),
        ("Grüße aus Köln", "Straße und ΣΊΣΥΦΟΣ, \"quoted\" words"),
        ("invoice 2026", "amount: 12,50 EUR\r\nthanks"),
        ("re: meeting", "no meeting today; noon is off"),
    ];
    for (s, b) in bodies {
        store.deliver_local("INBOX", &msg(s, b), 0).unwrap();
    }
    index_all(&store).await;
    let needles = [
        "noon",
        "NOON in the big",
        "meeting",
        "grüße",
        "GRÜSSE",
        "straße",
        "σίσυφοσ",
        "\"quoted\"",
        "12,50",
        "subject: re",
        "jürgen",
        "j@x.example",
        "amount: 12",
        "nothing like this",
        "in the big room.",
        "eur thanks",
    ];
    for n in needles {
        for key in [SearchKey::Text(text(n)), SearchKey::Body(text(n))] {
            assert_eq!(indexed(&store, &key).await, scan(&store, &key).await, "{key:?}");
        }
    }
    assert_eq!(indexed(&store, &SearchKey::Body(text("noon"))).await, [1, 4]);
    assert_eq!(indexed(&store, &SearchKey::Text(text("meeting"))).await, [1, 4]);
    assert_eq!(indexed(&store, &SearchKey::Body(text("meeting"))).await, [4]);
}

async fn index_all(store: &Store) {
    store.pool().run(|c| while index_some(c, 3).unwrap() > 0 {}).await.unwrap();
}
