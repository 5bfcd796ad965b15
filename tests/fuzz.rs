//! Fuzzing every parser we wrote, the short way: in each `cargo test`, every target replays its
//! committed corpus (`tests/fuzz/corpus/<target>/`) and then a few thousand seeded mutations of it.
//!
//! - `pop3`: the POP3 client core, sans-I/O (`tests/fuzz/props/pop3.rs` says what is checked).
//! - `config`: the config loader (`tests/fuzz/props/config.rs`).
//! - `imap_syntax`: the IMAP extension parsers in front of imap-codec (`props/imap_syntax.rs`).
//! - `smtp`: submission sessions over loopback against an in-process listener (`fuzz/smtp.rs`).
//! - `imap`: IMAP sessions over loopback against an in-process server (`fuzz/imap.rs`).
//! - `state_files`: the readers of other POP clients' state files (`props/state_files.rs`).
//!
//! The long runs are `scripts/fuzz.sh [SECONDS]`: libFuzzer (cargo-fuzz, crate in `tests/fuzz/`)
//! for `pop3`, `config` and `imap_syntax`, and these same tests with a time budget for the two session targets.
//!
//! Knobs (environment): `POPBRIDGE_FUZZ_SECONDS` runs each target for that long instead of a fixed
//! count; `POPBRIDGE_FUZZ_ITERS` sets the count of mutated inputs; `POPBRIDGE_FUZZ_SEED` the
//! mutator's seed (the default is fixed, so CI is reproducible). A failing input is written to
//! `target/tmp/fuzz-failures/<target>/` and printed; once fixed, add it to the corpus.

mod imap;
mod mutate;
mod net;
mod props;
mod smtp;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mutate::Mutator;

/// How long or how much a target runs.
pub struct Budget {
    pub target: &'static str,
    pub iters: Option<usize>,
    pub time: Option<Duration>,
    pub seed: u64,
    pub start: Instant,
}

impl Budget {
    /// From the environment; without it, `default_iters` mutated inputs.
    pub fn from_env(target: &'static str, default_iters: usize) -> Budget {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let time =
            var("POPBRIDGE_FUZZ_SECONDS").map(|s| Duration::from_secs_f64(s.parse().expect("POPBRIDGE_FUZZ_SECONDS")));
        let iters = match var("POPBRIDGE_FUZZ_ITERS") {
            Some(n) => Some(n.parse().expect("POPBRIDGE_FUZZ_ITERS")),
            None if time.is_some() => None,
            None => Some(default_iters),
        };
        // A fixed default per target: CI runs the same inputs every time.
        let seed = var("POPBRIDGE_FUZZ_SEED").map_or_else(
            || target.bytes().fold(0x5eed_u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
            |s| s.parse().expect("POPBRIDGE_FUZZ_SEED"),
        );
        Budget { target, iters, time, seed, start: Instant::now() }
    }

    /// Whether `done` mutated inputs are enough.
    pub fn done(&self, done: usize) -> bool {
        self.iters.is_some_and(|n| done >= n) || self.time.is_some_and(|t| self.start.elapsed() >= t)
    }

    /// The line `scripts/fuzz.sh` collects.
    pub fn report(&self, corpus: usize, mutated: usize, extra: &str) {
        let secs = self.start.elapsed().as_secs_f64();
        let total = corpus + mutated;
        println!(
            "fuzz {}: {total} executions ({corpus} corpus + {mutated} mutated) in {secs:.1}s = {:.0}/s, seed {}{extra}, findings: 0",
            self.target,
            total as f64 / secs.max(1e-9),
            self.seed
        );
    }
}

pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus").join(target)
}

/// The committed seeds of a target, in name order.
pub fn load_corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let corpus: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(corpus.len() >= 5, "{}: the corpus is (nearly) empty", dir.display());
    corpus
}

/// Writes a failing input where it can be picked up; returns the path.
pub fn save_failure(target: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    let path = dir.join(format!("{hash:016x}"));
    std::fs::write(&path, input).unwrap();
    path
}

pub fn escaped(input: &[u8]) -> String {
    let shown = &input[..input.len().min(2000)];
    format!("b\"{}\"{}", shown.escape_ascii(), if input.len() > shown.len() { "…" } else { "" })
}

/// Runs a synchronous target over its corpus, then mutants until the budget is spent.
fn run_sync(target: &'static str, default_iters: usize, dict: &[&[u8]], lines: &[&[u8]], check: fn(&[u8])) {
    let budget = Budget::from_env(target, default_iters);
    let corpus = load_corpus(target);
    let one = |input: &[u8]| {
        if std::panic::catch_unwind(|| check(input)).is_err() {
            let path = save_failure(target, input);
            panic!(
                "fuzz {target}: finding — the input in {} fails (see the panic above): {}",
                path.display(),
                escaped(input)
            );
        }
    };
    for input in &corpus {
        one(input);
    }
    let mut m = Mutator::new(budget.seed, dict, lines, 16 * 1024);
    let mut mutated = 0;
    while !budget.done(mutated) {
        one(&m.mutate(&corpus));
        mutated += 1;
    }
    budget.report(corpus.len(), mutated, "");
}

const POP3_DICT: &[&[u8]] = &[
    b"+OK",
    b"-ERR",
    b"+ ",
    b"+OK\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b".\r\n",
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r\n..",
    b"..\r\n",
    b"[SYS/TEMP]",
    b"[SYS/PERM]",
    b"[AUTH]",
    b"[IN-USE]",
    b"[LOGIN-DELAY]",
    b"[",
    b"]",
    b" octets",
    b"4000000000 octets",
    b"<1896.697170952@dbc.mtview.ca.us>",
    b"<",
    b"@",
    b">",
    b"TOP",
    b"UIDL",
    b"USER",
    b"PIPELINING",
    b"STLS",
    b"RESP-CODES",
    b"AUTH-RESP-CODE",
    b"SASL PLAIN LOGIN XOAUTH2",
    b"LOGIN-DELAY 900",
    b"EXPIRE NEVER",
    b"EXPIRE 0",
    b"IMPLEMENTATION x",
    b"1 whqtswO00WBw418f9t5JxYwZ",
    b"1 120",
    b"2 320",
];

#[test]
fn fuzz_pop3_client() {
    run_sync("pop3", 25_000, POP3_DICT, &[], props::pop3::check);
}

/// Words of the extension syntax `imap::syntax` parses (RFC 5258, 5819, 4731, 5182, 3502).
const IMAP_SYNTAX_DICT: &[&[u8]] = &[
    b"a1 LIST ",
    b"a1 LSUB ",
    b"a1 SEARCH ",
    b"a1 UID SEARCH ",
    b"a1 APPEND INBOX ",
    b"a1 UID FETCH $ (FLAGS)\r\n",
    b" RETURN (",
    b"SPECIAL-USE",
    b"SUBSCRIBED",
    b"REMOTE",
    b"RECURSIVEMATCH",
    b"CHILDREN",
    b"STATUS (MESSAGES UNSEEN UIDNEXT SIZE HIGHESTMODSEQ)",
    b"MIN MAX COUNT ALL",
    b"SAVE",
    b"$",
    b"(\\Seen \\Draft)",
    b"\"7-Feb-1994 21:52:25 -0800\"",
    b"{5}\r\nhello",
    b"{5+}\r\nhello",
    b"~{3}\r\na\x00b",
    b"{4294967296}\r\n",
    b"\"\"",
    b"\"*\"",
    b"\"%\"",
    b"(\"INBOX\" \"Work/*\")",
    b"()",
    b"(",
    b")",
    b"\r\n",
    b" ",
];

#[test]
fn fuzz_imap_syntax() {
    run_sync("imap_syntax", 40_000, IMAP_SYNTAX_DICT, &[], props::imap_syntax::check);
}

const CONFIG_DICT: &[&[u8]] = &[
    b"[local]\n",
    b"[[account]]\n",
    b"[account.pop]\n",
    b"[account.smtp]\n",
    b"[relay]\n",
    b"[account]\n",
    b"imap = \"127.0.0.1:1143\"\n",
    b"imaps = \"off\"\n",
    b"submission = \"[::1]:1587\"\n",
    b"submissions = \"0.0.0.0:1465\"\n",
    b"user = \"me\"\n",
    b"password = \"pw\"\n",
    b"password_command = \"echo pw\"\n",
    b"name = \"Work\"\n",
    b"email = \"me@work.example\"\n",
    b"reply_to = \"desk@work.example\"\n",
    b"interval = \"5m\"\n",
    b"interval = \"59s\"\n",
    b"save_sent = true\n",
    b"max_messages_per_cycle = 500\n",
    b"max_bytes_per_cycle = \"200MB\"\n",
    b"max_message_size = 52428800\n",
    b"host = \"pop.work.example\"\n",
    b"host = \"127.0.0.1\"\n",
    b"port = 995\n",
    b"port = 0\n",
    b"port = 65536\n",
    b"tls = \"implicit\"\n",
    b"tls = \"starttls\"\n",
    b"tls = \"plain\"\n",
    b"auth = \"xoauth2\"\n",
    b"delete = \"after-days:7\"\n",
    b"delete = \"when-deleted-locally\"\n",
    b"ca_file = \"/etc/ssl/ca.pem\"\n",
    b"pin_sha256 = \"AB:CD\"\n",
    b"allow_plain = true\n",
    b"timeout = \"60s\"\n",
    b"relay = true\n",
    b"\"",
    b"'''",
    b"\"\"\"",
    b"=",
    b"[",
    b"]",
    b"{ }",
    b"#",
    b"\\u00e9",
    b"18446744073709551616",
    b"-9223372036854775808",
    b"1e400",
    b"nan",
    b"1979-05-27T07:32:00Z",
    b"\"50MiB\"",
    b"\"1.5GB\"",
    b"\"after-days:99999999999999999999\"",
];

/// What the state files of mpop, getmail, fetchmail and Thunderbird are made of.
const STATE_DICT: &[&[u8]] = &[
    b" 1 pop.example.com alice\n",
    b" 2 ",
    b"#",
    b"\x00",
    b"\x001764500000\n",
    b"alice@pop.example.com ",
    b"@",
    b"*pop.example.com alice\n",
    b"*",
    b"k ",
    b"d ",
    b"b ",
    b"f ",
    b" 1764500000\n",
    b"\r\n",
    b"\n",
    b"\t",
    b"000000016b0ef92d",
];

#[test]
fn fuzz_state_files() {
    run_sync("state_files", 20_000, STATE_DICT, &[], props::state_files::check);
}

#[test]
fn fuzz_config_loader() {
    run_sync("config", 8_000, CONFIG_DICT, CONFIG_LINES, props::config::check);
}

/// Whole lines the config mutator inserts (it is line-based like TOML).
const CONFIG_LINES: &[&[u8]] = &[
    b"[[account]]",
    b"name = \"Home\"",
    b"email = \"me@home.example\"",
    b"[account.pop]",
    b"host = \"pop.home.example\"",
    b"user = \"me\"",
    b"password = \"x\"",
    b"[account.smtp]",
    b"relay = true",
    b"[relay]",
    b"host = \"smtp.relay.example\"",
    b"pin_sha256 = \"0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef\"",
    b"max_message_size = \"-1\"",
    b"max_bytes_per_cycle = 1.5",
    b"interval = \"1000000000000000000000s\"",
];
