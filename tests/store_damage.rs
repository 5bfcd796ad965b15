//! A store that silently lost committed data is refused, never served (issue 12, item 4).
//!
//! The damage SQLite cannot see, because each file it is given is consistent on its own: after a
//! kill -9 (of the daemon, or of `popbridge fetch`) during an import with `--delete after-fetch`,
//! the write-ahead log deleted, or the store truncated to nothing; or the store replaced by an
//! older copy of itself. Each time the daemon,
//! `fetch` and `status` refuse with exit 8 and the steps to recover, no mail client is served,
//! nothing is deleted from the server (its mail is untouched across every attempt — no POP
//! session is even opened), and the damaged files are left as they were. Following the printed
//! steps gets a working popbridge back with the mail the server still holds, under a new
//! UIDVALIDITY. A kill -9 alone is no damage: everything works afterwards.
//!
//! Each test checks that the damage is real (the write-ahead log held the commits, the store
//! without it lacks messages the server no longer has), so none can pass vacuously.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::util::corpus::corpus;
use crate::util::crash_points::Point;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::pop_proxy::PopProxy;
use crate::util::{Bridge, LOCAL_PASSWORD, as_pop3_sends, sorted, wait_until};

/// What DESIGN §5 says a refused store exits with.
const EXIT_STORE_DAMAGED: i32 = 8;

/// Messages in a store's `Work` mailbox and its UIDVALIDITY, read from a copy of the files given
/// (`with_wal`: the write-ahead log too), so the store itself is not touched. A file without
/// popbridge's tables (all that is left when the log held everything) has none.
fn work_in_copy(store: &Path, with_wal: bool) -> (i64, Option<i64>) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let copy = scratch.path().join("store.sqlite");
    std::fs::copy(store, &copy).expect("copy the store");
    let wal = wal_of(store);
    if with_wal && wal.exists() {
        std::fs::copy(&wal, wal_of(&copy)).expect("copy the WAL");
    }
    let c = rusqlite::Connection::open(&copy).expect("open the copy");
    let has: i64 =
        c.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'mailboxes'", [], |r| r.get(0)).expect("schema");
    if has == 0 {
        return (0, None);
    }
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id WHERE x.name = 'Work'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    let uv: Option<i64> = c.query_row("SELECT uidvalidity FROM mailboxes WHERE name = 'Work'", [], |r| r.get(0)).ok();
    (n, uv)
}

/// The highest UIDVALIDITY a store (with its log) ever handed out.
fn max_uidvalidity(store: &Path) -> i64 {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let copy = scratch.path().join("store.sqlite");
    std::fs::copy(store, &copy).expect("copy the store");
    if wal_of(store).exists() {
        std::fs::copy(wal_of(store), wal_of(&copy)).expect("copy the WAL");
    }
    let c = rusqlite::Connection::open(&copy).expect("open the copy");
    c.query_row("SELECT max(uidvalidity) FROM mailboxes", [], |r| r.get(0)).expect("max uidvalidity")
}

fn wal_of(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// Whether an IMAP client gets logged in on the configured port (nothing may serve the store).
fn imap_login_works(b: &Bridge) -> bool {
    let (imap, _) = b.ports();
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", imap)) else { return false };
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut greeting = String::new();
    if r.read_line(&mut greeting).is_err() || !greeting.starts_with("* OK") {
        return false;
    }
    if s.write_all(format!("a LOGIN me {LOCAL_PASSWORD}\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut line = String::new();
    while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        if line.starts_with("a ") {
            return line.starts_with("a OK");
        }
        line.clear();
    }
    false
}

/// Dovecot's count of POP3 logins of alice (a refused store must not even start a session).
fn pop_logins(d: &Dovecot) -> usize {
    d.log().lines().filter(|l| l.contains("pop3-login") && l.contains("user=<alice>")).count()
}

/// A file's bytes (none when it does not exist).
fn bytes(p: &Path) -> Option<Vec<u8>> {
    std::fs::read(p).ok()
}

/// The guard beside the store (`store::guard`).
fn guard_of(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(".guard");
    PathBuf::from(p)
}

/// The newest generation the guard file records (its two slots' `generation N` lines).
fn guard_generation(store: &Path) -> i64 {
    let text = String::from_utf8_lossy(&bytes(&guard_of(store)).unwrap_or_default()).into_owned();
    text.lines().filter_map(|l| l.strip_prefix("generation ")).filter_map(|n| n.trim().parse().ok()).max().unwrap_or(-1)
}

/// Every way in refuses: the daemon, `fetch` (all accounts, and by name), `status`, an IMAP
/// login; nothing is deleted from the server, no POP session is opened, and the store's files
/// stay as they are. `what` is the part of the message that names this damage.
fn assert_refused_everywhere(b: &Bridge, d: &Dovecot, what: &str) {
    let on_server = sorted(d.messages("alice"));
    let logins = pop_logins(d);
    assert!(logins > 0, "Dovecot logs POP3 logins (the count below can tell)");
    let store = b.store_path();
    let files_before = (bytes(&store), bytes(&guard_of(&store)));
    let run = b.run_for(&["run"], Duration::from_secs(20));
    for (args, r) in [
        (vec!["run"], run),
        (vec!["fetch"], b.run(&["fetch"])),
        (vec!["fetch", "Work"], b.run(&["fetch", "Work"])),
        (vec!["status"], b.run(&["status"])),
        (vec!["status", "--json"], b.run(&["status", "--json"])),
    ] {
        let ctx = format!("popbridge {}", args.join(" "));
        assert_eq!(
            r.code, EXIT_STORE_DAMAGED,
            "{ctx}: refused with exit 8\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        assert!(r.stderr.contains(what), "{ctx}: says what happened ({what:?}):\n{}", r.stderr);
        for step in ["mkdir -m 700", "mv ", "delete = \"never\"", "popbridge fetch", "systemctl --user stop popbridge"]
        {
            assert!(r.stderr.contains(step), "{ctx}: the recovery steps include {step:?}:\n{}", r.stderr);
        }
        assert!(!r.stderr.contains("fetching on schedule"), "{ctx}: the daemon did not start");
        assert!(!imap_login_works(b), "{ctx}: no IMAP client is served from the damaged store");
    }
    assert_eq!(sorted(d.messages("alice")), on_server, "nothing was deleted from the server");
    assert_eq!(pop_logins(d), logins, "no POP session was even started");
    let files_after = (bytes(&store), bytes(&guard_of(&store)));
    assert!(files_after == files_before, "the damaged store and its guard were left as they were");
}

/// Follows the printed recovery steps (the `mkdir … && mv …` line as printed, run by sh; the
/// delete policy set to never; a fetch): the mail the server still holds arrives again into a
/// new store, under a new UIDVALIDITY, and stays on the server.
///
/// UIDVALIDITY is the creation time (in seconds, and above every value the store handed out), so
/// a new store differs from the old one once the clock has passed the old store's values — a few
/// seconds after it was created: a person reading the message always takes longer than this test.
fn recover(b: &Bridge, d: &Dovecot, old_uidvalidity: Option<i64>, old_max_uidvalidity: i64) {
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    assert!(old_max_uidvalidity - now() < 30, "the old store's UIDVALIDITY values are close to the clock");
    while now() <= old_max_uidvalidity {
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = b.run(&["fetch"]);
    let line =
        r.stderr.lines().find(|l| l.contains("mkdir -m 700")).unwrap_or_else(|| panic!("no mkdir line:\n{}", r.stderr));
    let cmd = line.split_once("away:").map(|(_, c)| c.trim()).expect("the command after the colon");
    let st = std::process::Command::new("sh").arg("-c").arg(cmd).status().expect("sh");
    assert!(st.success(), "the printed command works: {cmd}");
    let kept: Vec<_> = std::fs::read_dir(&b.data)
        .expect("data dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("damaged-"))
        .collect();
    assert_eq!(kept.len(), 1, "the damaged files are kept in one place");
    let kept_files: Vec<String> = std::fs::read_dir(kept[0].path())
        .expect("kept dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(kept_files.iter().any(|f| f == "store.sqlite.guard"), "the guard went with the store: {kept_files:?}");
    let text = std::fs::read_to_string(&b.config).expect("config");
    std::fs::write(&b.config, text.replace("delete = \"after-fetch\"", "delete = \"never\"")).expect("config");
    let on_server = d.messages("alice");
    b.run(&["fetch"]).expect(0);
    let want = sorted(on_server.iter().map(|m| as_pop3_sends(m)).collect());
    assert_eq!(sorted(b.messages("Work")), want, "what the server holds is fetched again");
    assert_eq!(d.messages("alice").len(), on_server.len(), "and left there");
    let uv = b.store().uidvalidity("Work").expect("uidvalidity");
    assert!(uv.is_some() && uv != old_uidvalidity, "a new UIDVALIDITY: {uv:?} after {old_uidvalidity:?}");
}

/// What the crash left: the commits of the first batch (already deleted from the server) and
/// part of the second, in the write-ahead log only.
struct Crashed {
    d: Dovecot,
    b: Bridge,
    _proxy: PopProxy,
    uidvalidity: Option<i64>,
    max_uidvalidity: i64,
}

const FIRST: usize = 20;
const SECOND: usize = 30;
/// The RETR of the second batch the POP server stops in the middle of, for the kill.
const KILLED_AT: u32 = 10;

/// Who is killed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Killed {
    /// `popbridge run`, which keeps its connections open: no checkpoint between its fetches,
    /// so the log holds the first batch too — mail already deleted from the server.
    Daemon,
    /// `popbridge fetch` without a daemon (the first, clean one checkpointed on exit).
    Fetch,
}

/// A first batch is imported with `--delete after-fetch` (stored, then deleted from the
/// server); during the import of a second, popbridge is killed -9 after some commits.
fn crash_during_an_import(killed: Killed) -> Crashed {
    let d = Dovecot::start(DovecotOpts::default());
    let proxy = PopProxy::start(d.pop3_port);
    let b = Bridge::with_listeners();
    b.add_account(
        "Work",
        proxy.port,
        "plain",
        "alice",
        "alice-pw",
        &["--auth", "user", "--delete", "after-fetch", "--no-test"],
    )
    .expect(0);
    let mail = corpus(FIRST + SECOND, 1201).messages;
    d.deliver("alice", &mail[..FIRST]);
    let mut daemon = (killed == Killed::Daemon).then(|| b.daemon());
    b.run(&["fetch", "Work"]).expect(0);
    assert!(d.messages("alice").is_empty(), "the first batch was deleted from the server");
    d.deliver("alice", &mail[FIRST..]);
    proxy.trap().arm(Point::MidRetr(KILLED_AT));
    let mut fetch = b.cmd(&["fetch", "Work"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("fetch");
    assert!(proxy.trap().wait_hit(Duration::from_secs(30), || false), "the import reached RETR {KILLED_AT}");
    // The messages before it are committed (a group commit is at most 250 ms old).
    let committed = (FIRST + KILLED_AT as usize - 1) as i64;
    let live = b.store_path();
    wait_until("the commits before the kill", Duration::from_secs(20), || {
        let c = rusqlite::Connection::open_with_flags(&live, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("read the live store");
        c.query_row("SELECT messages FROM mailboxes WHERE name = 'Work'", [], |r| r.get::<_, i64>(0))
            .map(|n| n == committed)
            .unwrap_or(false)
    });
    // …and in the guard: a kill between a commit and its guard write leaves the guard one step
    // behind, which is allowed (nothing was reported, so nothing was DELEted for it) — and then
    // the log's loss would be that of mail the server still has, which cannot be told.
    wait_until("the guard covers the commits", Duration::from_secs(20), || {
        let c = rusqlite::Connection::open_with_flags(&live, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("read the live store");
        let store_gen = c.query_row("SELECT generation FROM store_guard", [], |r| r.get::<_, i64>(0)).unwrap_or(-1);
        guard_generation(&live) >= store_gen
    });
    if let Some(d) = daemon.as_mut() {
        d.child.kill().expect("kill -9 the daemon");
        d.child.wait().expect("wait");
    }
    let _ = fetch.kill();
    let _ = fetch.wait();
    proxy.trap().release();
    assert_eq!(d.messages("alice").len(), SECOND, "the interrupted session deleted nothing");
    // The damage to come is real: the commits are in the write-ahead log only.
    let store = b.store_path();
    let wal = std::fs::metadata(wal_of(&store)).map(|m| m.len()).unwrap_or(0);
    assert!(wal > 0, "the write-ahead log holds the commits");
    let (with_wal, uidvalidity) = work_in_copy(&store, true);
    assert_eq!(with_wal, committed, "the store with its log holds every commit");
    let (without, _) = work_in_copy(&store, false);
    match killed {
        Killed::Daemon => {
            assert!(without < FIRST as i64, "without its log the store lacks mail the server no longer has ({without})")
        }
        Killed::Fetch => assert_eq!(without, FIRST as i64, "without its log the store lacks the last commits"),
    }
    let max_uidvalidity = max_uidvalidity(&store);
    Crashed { d, b, _proxy: proxy, uidvalidity, max_uidvalidity }
}

#[test]
fn a_deleted_wal_after_kill_9_of_the_daemon_is_refused_everywhere_and_nothing_is_deleted() {
    let c = crash_during_an_import(Killed::Daemon);
    std::fs::remove_file(wal_of(&c.b.store_path())).expect("remove the WAL");
    assert_refused_everywhere(&c.b, &c.d, "lost committed data");
    recover(&c.b, &c.d, c.uidvalidity, c.max_uidvalidity);
}

#[test]
fn a_deleted_wal_after_kill_9_of_fetch_is_refused_everywhere_and_nothing_is_deleted() {
    let c = crash_during_an_import(Killed::Fetch);
    std::fs::remove_file(wal_of(&c.b.store_path())).expect("remove the WAL");
    assert_refused_everywhere(&c.b, &c.d, "lost committed data");
    recover(&c.b, &c.d, c.uidvalidity, c.max_uidvalidity);
}

#[test]
fn a_store_truncated_to_0_bytes_after_kill_9_is_refused_everywhere() {
    let c = crash_during_an_import(Killed::Daemon);
    let store = c.b.store_path();
    // What a crash, a full disk or a failed copy can leave: an empty file where the store was
    // (its write-ahead log still beside it).
    std::fs::OpenOptions::new().write(true).open(&store).expect("open").set_len(0).expect("truncate");
    assert_refused_everywhere(&c.b, &c.d, "empty (0 bytes)");
    recover(&c.b, &c.d, c.uidvalidity, c.max_uidvalidity);
}

#[test]
fn a_kill_9_alone_is_no_damage() {
    let c = crash_during_an_import(Killed::Daemon);
    c.b.run(&["status"]).expect(0);
    c.b.run(&["fetch"]).expect(0);
    let mail = corpus(FIRST + SECOND, 1201).messages;
    let want = sorted(mail.iter().map(|m| as_pop3_sends(m)).collect());
    assert_eq!(sorted(c.b.messages("Work")), want, "every message exactly once");
    assert!(c.d.messages("alice").is_empty(), "and deleted from the server");
    assert_eq!(c.b.store().uidvalidity("Work").expect("uidvalidity"), c.uidvalidity, "same UIDVALIDITY");
    let _d = c.b.daemon();
    assert!(imap_login_works(&c.b), "served again");
}

#[test]
fn an_older_copy_of_the_store_put_back_is_refused_everywhere() {
    let d = Dovecot::start(DovecotOpts::default());
    let b = Bridge::with_listeners();
    b.add_dovecot_alice(&d, &["--delete", "after-fetch", "--no-test"]).expect(0);
    let mail = corpus(30, 1202).messages;
    d.deliver("alice", &mail[..10]);
    b.run(&["fetch"]).expect(0);
    let store = b.store_path();
    assert!(!wal_of(&store).exists() || std::fs::metadata(wal_of(&store)).map(|m| m.len()).unwrap_or(0) == 0);
    let backup = b.dir.path().join("backup.sqlite");
    std::fs::copy(&store, &backup).expect("back the store up");
    // Ten more stored (UIDs 11–20) and deleted from the server; ten more arrive.
    d.deliver("alice", &mail[10..20]);
    b.run(&["fetch"]).expect(0);
    assert!(d.messages("alice").is_empty());
    d.deliver("alice", &mail[20..]);
    assert_eq!(work_in_copy(&store, true).0, 20);
    let uidvalidity = b.store().uidvalidity("Work").expect("uidvalidity");
    let max = max_uidvalidity(&store);
    // The backup put back (the store only: its guard stays).
    std::fs::copy(&backup, &store).expect("restore the backup");
    assert_eq!(work_in_copy(&store, true).0, 10, "the restored store lacks ten messages the server no longer has");
    assert_refused_everywhere(&b, &d, "lost committed data");
    recover(&b, &d, uidvalidity, max);
}
