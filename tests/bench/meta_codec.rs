//! The store's encoding of `MessageMeta` (the hand-written `mime::codec`) beside postcard (serde,
//! the compact format crate it would be replaced with): bytes per message, encode and decode time
//! per message, over a directory of `.eml` files (the harness corpus:
//! `gen-mail.py --count 2000 --eml-dir DIR`). The figures are quoted in `src/mime/codec.rs`.
//!
//!     cargo run --release --example meta_codec -- DIR

use std::hint::black_box;
use std::time::{Duration, Instant};

use popbridge::mime::MessageMeta;

/// The best of a few runs of `f` over the whole corpus, per message.
fn per_message(n: usize, mut f: impl FnMut()) -> Duration {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
        / n.max(1) as u32
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: meta_codec DIR (a directory of .eml files)");
        std::process::exit(2);
    };
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("read the corpus directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    paths.sort();
    let metas: Vec<MessageMeta> =
        paths.iter().map(|p| MessageMeta::extract(&std::fs::read(p).expect("read a message"))).collect();
    let n = metas.len();
    let ours: Vec<Vec<u8>> = metas.iter().map(|m| m.to_bytes()).collect();
    let theirs: Vec<Vec<u8>> = metas.iter().map(|m| postcard::to_allocvec(m).expect("postcard encodes")).collect();
    for (m, (a, b)) in metas.iter().zip(ours.iter().zip(&theirs)) {
        assert_eq!(MessageMeta::from_bytes(a).as_ref(), Some(m), "mime::codec round trip");
        assert_eq!(postcard::from_bytes::<MessageMeta>(b).ok().as_ref(), Some(m), "postcard round trip");
    }
    let bytes = |v: &[Vec<u8>]| v.iter().map(Vec::len).sum::<usize>() as f64 / n.max(1) as f64;
    let enc_ours = per_message(n, || metas.iter().for_each(|m| drop(black_box(m.to_bytes()))));
    let enc_theirs = per_message(n, || metas.iter().for_each(|m| drop(black_box(postcard::to_allocvec(m)))));
    let dec_ours = per_message(n, || ours.iter().for_each(|b| drop(black_box(MessageMeta::from_bytes(b)))));
    let dec_theirs =
        per_message(n, || theirs.iter().for_each(|b| drop(black_box(postcard::from_bytes::<MessageMeta>(b)))));
    println!("{n} messages");
    println!("{:<12} {:>10} {:>12} {:>12}", "", "bytes/msg", "encode/msg", "decode/msg");
    println!("{:<12} {:>10.1} {:>12.2?} {:>12.2?}", "mime::codec", bytes(&ours), enc_ours, dec_ours);
    println!("{:<12} {:>10.1} {:>12.2?} {:>12.2?}", "postcard", bytes(&theirs), enc_theirs, dec_theirs);
}
