//! The readers of other POP clients' state files (`popbridge::fetch::import_state::formats`, for
//! `account import-state`) on any bytes. The first byte picks the tool (mpop, getmail, fetchmail,
//! Thunderbird), the rest is the file. No panic; an error names the file and a line the file has
//! (0 only for a getmail file name); what is taken is one UIDL per entry, never a line end; and
//! reading is deterministic.

use popbridge::fetch::import_state::formats::{self, Mailbox};
use popbridge::store::accounts::Tool;

/// A getmail file name for the mailbox, so its entries are taken.
const FILE: &str = "/fuzz/state dir/oldmail-pop.example.com-995-alice";
const MAILBOX: Mailbox<'static> = Mailbox { host: "pop.example.com", port: 995, user: "alice" };

pub fn check(data: &[u8]) {
    let Some((&pick, file)) = data.split_first() else { return };
    let tool = Tool::ALL[usize::from(pick) % Tool::ALL.len()];
    let lines = file.split(|b| *b == b'\n').count();
    match formats::parse(tool, FILE, file, &MAILBOX) {
        Err(e) => {
            assert_eq!(e.file, FILE);
            assert!(e.line <= lines, "{tool:?}: line {} of a file of {lines} lines: {e}", e.line);
            assert!(e.to_string().starts_with(FILE), "{e}");
        }
        Ok(p) => {
            for u in p.fetched.iter().chain(&p.partial) {
                assert!(!u.contains('\n'), "{tool:?}: {u:?}");
            }
            assert!(p.fetched.len() + p.partial.len() <= lines, "{tool:?}: more entries than lines");
            assert_eq!(formats::parse(tool, FILE, file, &MAILBOX), Ok(p), "{tool:?}: read twice");
        }
    }
}
