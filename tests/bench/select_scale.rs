//! SELECT / EXAMINE of a large mailbox in the store, in process:
//! `cargo run --release --example select_scale -- [N]` (default 100,000 small messages).
//! Prints the first EXAMINE (every UID read) and the best of 15 later EXAMINEs and SELECTs (the
//! UID cache, `store::uid_cache`, reads only what changed).
use std::time::Instant;

use popbridge::store::{Added, Delivery, Identity, Store};

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
    let store = Store::open(&dir.path().join("store.sqlite")).expect("store");
    let ids = store.ensure_account("Big").expect("account");
    let server = store.pop_server(ids.account, "pop.example:995/me").expect("server").id;
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let mut d = Delivery::new(&store, ids, server).expect("delivery");
        for _ in 0..5000.min(n - i) {
            let m = format!(
                "From: a{i}@example.com\r\nSubject: m {i}\r\nDate: Mon, 3 Mar 2025 10:00:00 +0000\r\n\r\nbody {i}\r\n"
            );
            let id = Identity::new(&format!("u{i}"), m.len() as u64);
            assert!(matches!(d.add(&id, m.as_bytes(), 1_700_000_000).expect("add"), Added::New));
            i += 1;
        }
        d.commit().expect("commit");
    }
    eprintln!("stored {n} messages in {:.1} s", t.elapsed().as_secs_f64());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let info = store.mailbox_named("Big".into(), None).await.expect("query").expect("mailbox");
        let t = Instant::now();
        let first = store.select_mailbox(info.id, false).await.expect("select");
        assert_eq!(first.uids.len(), n);
        println!("first EXAMINE of {n} (reads every UID): {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
        for claim in [false, true] {
            let mut best = f64::MAX;
            for _ in 0..15 {
                let t = Instant::now();
                std::hint::black_box(store.select_mailbox(info.id, claim).await.expect("select"));
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
            }
            println!("{} of {n}, later (cached): best {best:.3} ms", if claim { "SELECT " } else { "EXAMINE" });
        }
    });
}
