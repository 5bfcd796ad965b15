//! The team harness's deterministic mail corpus (`tests/data/gen-mail.py`, vendored).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// `count` generated messages (raw bytes, CRLF except the deliberately malformed ones),
/// in index order, with the manifest's tags per message (e.g. `bare-lf`, `dot-lines`,
/// `no-final-newline`, `attachment`; empty for ordinary messages).
#[derive(Clone, Debug)]
pub struct Corpus {
    pub messages: Vec<Vec<u8>>,
    pub tags: Vec<Vec<String>>,
}

impl Corpus {
    /// Indexes (0-based) of the messages carrying `tag`.
    pub fn tagged(&self, tag: &str) -> Vec<usize> {
        (0..self.tags.len()).filter(|&i| self.tags[i].iter().any(|t| t == tag)).collect()
    }
}

/// Path of the vendored generator.
pub fn gen_mail_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gen-mail.py")
}

/// Run `python3 tests/data/gen-mail.py --count N --seed S --eml-dir <tmp> --manifest <tmp>/m.tsv`
/// and read the messages back in index order. Same (count, seed) → same bytes.
pub fn corpus(count: usize, seed: u64) -> Corpus {
    let tmp = tempfile::tempdir().expect("temp dir");
    let eml = tmp.path().join("eml");
    let manifest = tmp.path().join("m.tsv");
    let out = Command::new("python3")
        .arg(gen_mail_script())
        .args(["--count", &count.to_string(), "--seed", &seed.to_string()])
        .arg("--eml-dir")
        .arg(&eml)
        .arg("--manifest")
        .arg(&manifest)
        .output()
        .expect("run python3 (needed for tests/data/gen-mail.py)");
    assert!(out.status.success(), "gen-mail.py failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&manifest).expect("read manifest");
    let mut rows: Vec<(usize, String, Vec<String>)> = Vec::new();
    for line in text.lines().skip(1) {
        // index file size crlf_size message_id sha256 tags
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(cols.len() >= 6, "bad manifest line: {line:?}");
        let index: usize = cols[0].parse().expect("manifest index");
        let tags =
            cols.get(6).map(|t| t.split(',').filter(|s| !s.is_empty()).map(String::from).collect()).unwrap_or_default();
        rows.push((index, cols[1].to_string(), tags));
    }
    rows.sort_by_key(|r| r.0);
    assert_eq!(rows.len(), count, "manifest has {} rows", rows.len());
    let mut messages = Vec::with_capacity(count);
    let mut tags = Vec::with_capacity(count);
    for (_, file, t) in rows {
        messages.push(std::fs::read(eml.join(&file)).expect("read generated message"));
        tags.push(t);
    }
    Corpus { messages, tags }
}
