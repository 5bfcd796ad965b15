//! The guard: a small record beside the store that lets popbridge notice a store that lost
//! committed transactions — damage SQLite cannot see, because every file it is given is
//! consistent: a deleted write-ahead log (`store.sqlite-wal`) after a crash, a store truncated to
//! nothing or replaced by an empty file, an older copy restored in its place (DESIGN §4).
//! Served as it is, such a store would show mail clients other messages under the UIDVALIDITY
//! and UIDs they already know, and mail that popbridge already DELEted from a server would be
//! gone everywhere without a word.
//!
//! The store carries a random id and a *commit generation* (table `store_guard`); the generation
//! is bumped inside every transaction that allocates UIDs or records POP state (the fetch path's
//! group commit, bridge notices, IMAP APPEND/COPY/MOVE). The guard file `<store>.guard` (0600)
//! holds the id and a generation the store has reached:
//!
//! ```text
//! popbridge-store-guard 1
//! store 6f0c…(32 hex digits)
//! generation 42
//! check 1a2b3c4d5e6f7081          (SHA-256 of the lines above, first 8 bytes)
//! ```
//!
//! — twice: the file is two 512-byte slots, each such a record padded with newlines; the newer
//! valid one counts.
//!
//! It is advanced (never lowered) **after** the commit is durable and **before** anyone acts on
//! it — before the fetcher hears of the messages (so before any DELE), before APPEND answers
//! with the new UID. So the guard never claims more than the store held at some point:
//! `guard ≤ store` always, and a store below its guard lost commits. Created as a new file
//! (fsynced, renamed into place, the directory fsynced); then each advance overwrites the older
//! slot in place and fdatasyncs: one fsync per commit, no new disk space needed (a full disk
//! cannot fail it), and a write torn by a power cut leaves the other slot, one step behind.
//! Writers in several processes take turns on an advisory lock of the directory, so a slower
//! writer never puts back a lower generation. A crash between the commit and the guard write
//! leaves the guard one step behind, which is allowed (the next open catches it up); nothing was
//! reported, so nothing was DELEted.
//!
//! Every open checks it before SQLite writes anything (and before a migration could turn an
//! emptied file into a fresh store): [`precheck`] the files, then [`verify`] the store's id and
//! generation. A store without a guard (created before this existed, or a crash right after its
//! creation) gets one at its next open.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, ErrorClass, Result};

/// The first line of a guard file (format version 1).
const MAGIC: &str = "popbridge-store-guard 1";
/// The guard file holds the record twice, in two slots of this size (a disk sector): each write
/// goes to the older slot, so a write torn by a power cut always leaves a whole record.
const SLOT: usize = 512;
/// More than a guard file ever holds: a bigger file is not one.
const MAX_LEN: u64 = 4096;

/// The store's identity and how far its commits have gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub store_id: String,
    pub generation: i64,
}

/// `<store>.guard`, beside the store (`store.sqlite.guard`).
pub fn path_for(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(".guard");
    PathBuf::from(p)
}

/// Inside a transaction that allocates UIDs or records POP state: the store moves one generation
/// on. The caller advances the guard once the transaction is committed ([`advance`]).
pub(crate) fn bump(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE store_guard SET generation = generation + 1 WHERE id = 1")?.execute([])?;
    Ok(())
}

/// The id and generation recorded in the store; `None` for a store without them (one from
/// before they existed, or an empty one).
pub(crate) fn in_store(conn: &Connection) -> rusqlite::Result<Option<Record>> {
    let has: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'store_guard'", [], |r| {
            r.get(0)
        })?;
    if has == 0 {
        return Ok(None);
    }
    conn.query_row("SELECT store_id, generation FROM store_guard WHERE id = 1", [], |r| {
        Ok(Record { store_id: r.get(0)?, generation: r.get(1)? })
    })
    .optional()
}

fn checksum(body: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, body.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn format(r: &Record) -> String {
    let body = format!("{MAGIC}\nstore {}\ngeneration {}\n", r.store_id, r.generation);
    let check = checksum(&body);
    format!("{body}check {check}\n")
}

fn parse(text: &str) -> Option<Record> {
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let store_id = lines.next()?.strip_prefix("store ")?;
    let generation: i64 = lines.next()?.strip_prefix("generation ")?.parse().ok()?;
    let rec = Record { store_id: store_id.to_string(), generation };
    // Exactly what `format` writes for this record, checksum included: anything else (a torn
    // write, an edit, a bit flip) is not a guard to trust.
    (!store_id.is_empty() && generation >= 0 && format(&rec) == text).then_some(rec)
}

/// The guard's two slots, the newer one first.
struct Slots {
    newest: Record,
    /// Which slot holds it (0 or 1): the next write goes to the other one.
    at: usize,
}

/// Reads the guard; `None` when there is none. A guard that exists but cannot be read or makes
/// no sense is an error: the store is then not opened (its state cannot be checked).
pub(crate) fn read(store: &Path) -> Result<Option<Record>> {
    Ok(read_slots(store)?.map(|s| s.newest))
}

fn read_slots(store: &Path) -> Result<Option<Slots>> {
    let path = path_for(store);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(store, &e.to_string())),
    };
    let mut bytes = Vec::new();
    if let Err(e) = (&mut f).take(MAX_LEN).read_to_end(&mut bytes) {
        return Err(unreadable(store, &e.to_string()));
    }
    let damaged = || unreadable(store, "its content is not a popbridge store guard, or it was damaged");
    if bytes.len() != 2 * SLOT {
        return Err(damaged());
    }
    let slots: Vec<Option<Record>> = bytes.chunks(SLOT).map(parse_slot).collect();
    match (&slots[0], &slots[1]) {
        (Some(a), Some(b)) if a.store_id != b.store_id => Err(damaged()),
        (Some(a), Some(b)) if b.generation > a.generation => Ok(Some(Slots { newest: b.clone(), at: 1 })),
        (Some(a), _) => Ok(Some(Slots { newest: a.clone(), at: 0 })),
        (None, Some(b)) => Ok(Some(Slots { newest: b.clone(), at: 1 })),
        (None, None) => Err(damaged()),
    }
}

/// One slot: the record, padded with newlines.
fn slot(r: &Record) -> Vec<u8> {
    let mut b = format(r).into_bytes();
    b.resize(SLOT, b'\n');
    b
}

fn parse_slot(b: &[u8]) -> Option<Record> {
    let text = std::str::from_utf8(b).ok()?;
    let end = text.trim_end_matches('\n').len();
    parse(text.get(..end + 1)?)
}

/// The directory holding the store, opened to be locked (writers take turns) and fsynced (the
/// guard's creation is durable only once its directory is).
fn lock_dir(store: &Path) -> Result<File> {
    let dir = match store.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let f = File::open(dir).map_err(|e| Error::other(format!("cannot open {}: {e}", dir.display())))?;
    f.lock().map_err(|e| Error::other(format!("cannot lock {}: {e}", dir.display())))?;
    Ok(f)
}

/// Creates the guard durably: both slots in a new file, fsynced, renamed into place, the
/// directory fsynced.
fn create(dir: &File, store: &Path, r: &Record) -> std::io::Result<()> {
    let path = path_for(store);
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let res = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&[slot(r), slot(r)].concat())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        dir.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Moves the guard on: the record over the older slot, in place, then fdatasync. The file keeps
/// its size and blocks, so this needs no space (a full disk cannot stop it once the guard
/// exists), and a write torn by a power cut leaves the other slot: a guard one step behind,
/// which is allowed.
fn update(store: &Path, older: usize, r: &Record) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new().write(true).open(path_for(store))?;
    f.write_all_at(&slot(r), (older * SLOT) as u64)?;
    f.sync_data()
}

/// After a commit on `conn`: brings the guard up to the store's generation (creating it for a
/// store that has none). Returns once the guard on disk covers every commit made so far, so the
/// caller may now act on them (DELE, answer APPEND). Never lowers the guard.
pub(crate) fn advance(store: &Path, conn: &Connection) -> Result<()> {
    let dir = lock_dir(store)?;
    // Read under the lock: a writer after us reads a generation at least as high.
    let db = in_store(conn)
        .map_err(|e| super::db_err(store, e))?
        .ok_or_else(|| Error::other(format!("the store {} has no identity (store_guard table)", store.display())))?;
    let written = match read_slots(store)? {
        Some(g) if g.newest.store_id != db.store_id => {
            return Err(damaged(store, Damage::Replaced { guard: g.newest, store: db }));
        }
        Some(g) if g.newest.generation > db.generation => {
            return Err(damaged(store, Damage::Lost { guard: g.newest, store: db }));
        }
        Some(g) if g.newest.generation == db.generation => return Ok(()),
        Some(g) => update(store, 1 - g.at, &db),
        None => create(&dir, store, &db),
    };
    written.map_err(|e| match e.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Error::other(format!(
                "the disk holding {} is full: free some space; nothing was deleted from any server, the next fetch resumes",
                store.display()
            )),
            _ => Error::other(format!(
                "cannot write {} (the record that lets popbridge notice a damaged store): {e}; nothing was deleted from any server",
                path_for(store).display()
            )),
    })
}

/// [`advance`] for a connection that knows its own file (the IMAP server's connections).
pub fn advance_conn(conn: &Connection) -> Result<()> {
    match conn.path() {
        Some(p) if !p.is_empty() => advance(Path::new(p), conn),
        _ => Ok(()),
    }
}

/// Before SQLite opens the file: with a guard, a store must be there and not empty (SQLite
/// would take an empty file for a new store). Returns the guard to [`verify`] once it is open.
pub(crate) fn precheck(store: &Path) -> Result<Option<Record>> {
    let Some(g) = read(store)? else { return Ok(None) };
    match std::fs::metadata(store) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(damaged(store, Damage::Missing { guard: g })),
        Err(e) => Err(Error::other(format!("cannot read the store {}: {e}", store.display()))),
        Ok(m) if m.len() == 0 => Err(damaged(store, Damage::Empty { guard: g })),
        Ok(_) => Ok(Some(g)),
    }
}

/// With the store open (nothing written yet): does it hold everything its guard vouches for?
pub(crate) fn verify(store: &Path, guard: &Record, conn: &Connection) -> Result<()> {
    let db = in_store(conn).map_err(|e| super::db_err(store, e))?;
    match db {
        None => Err(damaged(store, Damage::NoIdentity { guard: guard.clone() })),
        Some(db) if db.store_id != guard.store_id => {
            Err(damaged(store, Damage::Replaced { guard: guard.clone(), store: db }))
        }
        Some(db) if db.generation < guard.generation => {
            Err(damaged(store, Damage::Lost { guard: guard.clone(), store: db }))
        }
        Some(_) => Ok(()),
    }
}

/// What is wrong with a store, as its guard shows.
enum Damage {
    Missing { guard: Record },
    Empty { guard: Record },
    NoIdentity { guard: Record },
    Replaced { guard: Record, store: Record },
    Lost { guard: Record, store: Record },
}

/// A path for a shell command line: as it is when it is plain, else single-quoted.
fn shell(p: &Path) -> String {
    let s = p.display().to_string();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+@%=:,".contains(c)) {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The steps that get a working popbridge back without losing what can still be recovered (a
/// new store, the damaged files kept).
fn recovery(store: &Path) -> String {
    let dir = store.parent().unwrap_or(Path::new("."));
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(':', "-");
    let keep = shell(&dir.join(format!("damaged-{stamp}")));
    [
        "  1. stop the daemon if it runs:  systemctl --user stop popbridge".to_string(),
        format!("  2. move the store and its guard away:  mkdir -m 700 {keep} && mv {}* {keep}/", shell(store)),
        "  3. set delete = \"never\" in every [account.pop] section of the config, so that nothing is deleted from a server until you have checked the new store".to_string(),
        "  4. fetch again:  popbridge fetch  (or systemctl --user start popbridge): the mail still on the servers is fetched again into a new store; mail clients see new mailboxes and download them again".to_string(),
    ]
    .join("\n")
}

fn damaged(store: &Path, d: Damage) -> Error {
    let (s, g) = (store.display(), path_for(store).display().to_string());
    let what = match d {
        Damage::Missing { guard } => format!(
            "the store {s} is missing, but its guard {g} shows that a store was there (generation {}): it was moved or deleted; if you moved it, put it back",
            guard.generation
        ),
        Damage::Empty { guard } => format!(
            "the store {s} is empty (0 bytes), but its guard {g} shows that it held mail (generation {}): it was truncated or replaced by an empty file",
            guard.generation
        ),
        Damage::NoIdentity { guard } => format!(
            "the store {s} is not the one its guard {g} belongs to (generation {}): it lost everything it committed (its write-ahead log {s}-wal was deleted), or a copy from an older popbridge was put in its place",
            guard.generation
        ),
        Damage::Replaced { guard, store } => format!(
            "the store {s} is not the one its guard {g} belongs to (store id {}, the guard's is {}): another store was put in its place",
            store.store_id, guard.store_id
        ),
        Damage::Lost { guard, store } => format!(
            "the store {s} lost committed data: it is at generation {}, but its guard {g} shows it reached generation {} — its write-ahead log {s}-wal was deleted or lost after a crash, or an older copy of the store was put in its place",
            store.generation, guard.generation
        ),
    };
    Error::new(
        ErrorClass::StoreDamaged,
        format!(
            "{what}.\npopbridge refuses to use this store: mail clients would be shown other messages under the UIDs they already know, and mail already deleted from a server may be missing from it. Nothing was changed, and nothing is deleted from any server.\nTo start again with a new store, keeping the damaged files for recovery:\n{}",
            recovery(store)
        ),
    )
}

fn unreadable(store: &Path, why: &str) -> Error {
    let g = path_for(store);
    Error::new(
        ErrorClass::StoreDamaged,
        [
            format!(
                "cannot read {} ({why}): it records what the store {} must hold, and popbridge opens no store it cannot check; nothing was changed.",
                g.display(),
                store.display()
            ),
            format!("If only its permissions are wrong:  chmod 600 {}", shell(&g)),
            format!(
                "If you are sure the store is intact (no file of it was deleted or restored), remove the guard and popbridge writes a new one:  rm {}",
                shell(&g)
            ),
            format!("Otherwise start again with a new store, keeping the damaged files for recovery:\n{}", recovery(store)),
        ]
        .join("\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_round_trips_and_rejects_damage() {
        let r = Record { store_id: "00112233445566778899aabbccddeeff".into(), generation: 42 };
        let text = format(&r);
        assert_eq!(parse(&text), Some(r.clone()));
        assert!(text.starts_with("popbridge-store-guard 1\nstore 0011"), "{text}");
        assert_eq!(parse(&text.replace("generation 42", "generation 43")), None, "the checksum covers the generation");
        assert_eq!(parse(&text.replace("0011", "0012")), None, "and the id");
        assert_eq!(parse(&text[..text.len() / 2]), None, "a torn file");
        assert_eq!(parse(""), None);
        assert_eq!(parse(&format!("{text}extra\n")), None);
    }

    use crate::store::{Delivery, Store};

    const MSG: &[u8] = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n";

    /// A store with `n` fetched messages, each its own commit; closed (so the file holds all).
    fn store_with(path: &Path, from: usize, n: usize) {
        let store = Store::open(path).unwrap();
        let ids = store.ensure_account("Work").unwrap();
        let server = store.pop_server(ids.account, "pop.example:995/me").unwrap().id;
        let mut d = Delivery::new(&store, ids, server).unwrap();
        for i in from..from + n {
            let raw = [MSG, format!("{i}").as_bytes()].concat();
            d.add(&crate::store::Identity::new(&format!("u{i}"), raw.len() as u64), &raw, 1).unwrap();
            d.commit().unwrap();
        }
    }

    fn refused(path: &Path) -> Error {
        let e = Store::open(path).err().expect("the store is refused");
        assert_eq!(e.class, ErrorClass::StoreDamaged, "{}", e.message);
        assert!(
            e.message.contains("delete = \"never\"") && e.message.contains("mv "),
            "says what to do: {}",
            e.message
        );
        e
    }

    #[test]
    fn every_commit_is_in_the_guard_and_an_older_copy_is_refused() {
        let dir = crate::store::private_tempdir();
        let path = dir.path().join("store.sqlite");
        store_with(&path, 0, 2);
        let g = read(&path).unwrap().expect("a guard");
        assert_eq!(g.generation, 2, "one generation per commit");
        let older = dir.path().join("older.sqlite");
        std::fs::copy(&path, &older).unwrap();
        store_with(&path, 2, 3);
        assert_eq!(read(&path).unwrap().unwrap().generation, 5);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(path_for(&path)).unwrap().permissions().mode() & 0o777, 0o600);
        // The older copy put back: refused, and left as it was.
        std::fs::copy(&older, &path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let e = refused(&path);
        assert!(e.message.contains("lost committed data") && e.message.contains("generation 2"), "{}", e.message);
        assert!(Store::open_existing(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before, "the refused store was not written to");
        assert_eq!(read(&path).unwrap().unwrap().generation, 5, "the guard still says what was lost");
    }

    #[test]
    fn a_missing_empty_foreign_or_blank_store_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::store::private_tempdir();
        let path = dir.path().join("store.sqlite");
        store_with(&path, 0, 1);
        let other = dir.path().join("other/store.sqlite");
        store_with(&other, 0, 1);
        let saved = std::fs::read(&path).unwrap();
        // Another store (its own id) in its place.
        std::fs::copy(&other, &path).unwrap();
        assert!(refused(&path).message.contains("another store was put in its place"));
        // Empty: SQLite would take it for a new store.
        std::fs::write(&path, b"").unwrap();
        assert!(refused(&path).message.contains("empty (0 bytes)"));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "not turned into a new store");
        // A valid but blank SQLite file (all that is left when the WAL held everything).
        std::fs::remove_file(&path).unwrap();
        rusqlite::Connection::open(&path).unwrap().execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(refused(&path).message.contains("lost everything it committed"));
        // Gone: neither created again nor taken for "no store yet".
        std::fs::remove_file(&path).unwrap();
        assert!(refused(&path).message.contains("is missing"));
        let e = Store::open_existing(&path).err().expect("refused, not None");
        assert_eq!(e.class, ErrorClass::StoreDamaged);
        assert!(!path.exists(), "no new store was created");
        // Put back: fine again.
        std::fs::write(&path, &saved).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Store::open(&path).unwrap();
    }

    #[test]
    fn a_guard_that_cannot_be_read_is_refused_with_the_fix() {
        let dir = crate::store::private_tempdir();
        let path = dir.path().join("store.sqlite");
        store_with(&path, 0, 1);
        std::fs::write(path_for(&path), b"popbridge-store-guard 1\nstore x\ngeneration 9\ncheck 00\n").unwrap();
        let e = Store::open(&path).err().unwrap();
        assert_eq!(e.class, ErrorClass::StoreDamaged);
        assert!(e.message.contains("cannot read") && e.message.contains("rm "), "{}", e.message);
        // Removed, as the message says: a new guard is written from the store.
        std::fs::remove_file(path_for(&path)).unwrap();
        Store::open(&path).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().generation, 1);
    }

    #[test]
    fn a_store_without_guard_gets_one_and_a_guard_behind_catches_up() {
        let dir = crate::store::private_tempdir();
        let path = dir.path().join("store.sqlite");
        store_with(&path, 0, 1);
        std::fs::remove_file(path_for(&path)).unwrap();
        Store::open(&path).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().generation, 1, "the upgrade path writes it");
        // A crash after a commit, before its guard write: the store is ahead, which is fine.
        let c = rusqlite::Connection::open(&path).unwrap();
        bump(&c).unwrap();
        drop(c);
        Store::open(&path).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().generation, 2, "caught up at open");
    }

    #[test]
    fn later_connections_are_checked_too() {
        // What a fetch's delivery, an IMAP session and the indexer open: checked like the first.
        let dir = crate::store::private_tempdir();
        let path = dir.path().join("store.sqlite");
        store_with(&path, 0, 1);
        let older = dir.path().join("older.sqlite");
        std::fs::copy(&path, &older).unwrap();
        store_with(&path, 1, 1);
        crate::store::open_connection(&path).unwrap();
        std::fs::rename(&older, &path).unwrap();
        let e = crate::store::open_connection(&path).expect_err("refused");
        assert_eq!(e.class, ErrorClass::StoreDamaged, "{}", e.message);
    }

    #[test]
    fn a_torn_slot_leaves_the_other() {
        let dir = crate::store::private_tempdir();
        let path = dir.path().join("store.sqlite");
        store_with(&path, 0, 3);
        let g = path_for(&path);
        let bytes = std::fs::read(&g).unwrap();
        assert_eq!(bytes.len(), 2 * SLOT);
        let slots: Vec<Option<Record>> = bytes.chunks(SLOT).map(parse_slot).collect();
        let mut gens: Vec<i64> = slots.iter().map(|s| s.as_ref().unwrap().generation).collect();
        gens.sort();
        assert_eq!(gens, vec![2, 3], "each write goes to the older slot");
        // The newer slot torn (a power cut mid-write): the older one counts, one step behind.
        let newer = slots.iter().position(|s| s.as_ref().unwrap().generation == 3).unwrap();
        let mut torn = bytes.clone();
        torn[newer * SLOT + 40] ^= 0x55;
        std::fs::write(&g, &torn).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().generation, 2);
        Store::open(&path).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().generation, 3, "caught up again, over the torn slot");
        // Both slots damaged: unreadable.
        let mut both = std::fs::read(&g).unwrap();
        both[40] ^= 0x55;
        both[SLOT + 40] ^= 0x55;
        std::fs::write(&g, &both).unwrap();
        assert_eq!(Store::open(&path).err().unwrap().class, ErrorClass::StoreDamaged);
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(
            shell(Path::new("/home/me/.local/share/popbridge/store.sqlite")),
            "/home/me/.local/share/popbridge/store.sqlite"
        );
        assert_eq!(shell(Path::new("/x y/it's")), "'/x y/it'\\''s'");
    }
}
