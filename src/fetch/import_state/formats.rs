//! The state files of other POP clients: which UIDLs each one already downloaded, per server and
//! user. Each parser follows the tool's own reader and writer (cited per function), takes only the
//! entries of the mailbox asked for, and reports the others by name. A line the tool would not
//! have written is an error naming the file and the line — never a panic, never a silent guess.
//!
//! None of these files records a size, and only getmail's records the port: the caller matches
//! every UIDL against the server's current UIDL and LIST answers before anything is trusted.

use std::fmt;

use crate::store::accounts::Tool;

/// The mailbox whose entries are wanted: the account's POP server and user.
#[derive(Debug, Clone, Copy)]
pub struct Mailbox<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
}

/// What a state file says about one mailbox.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// UIDLs, as the tool wrote them, of messages it downloaded from this mailbox.
    pub fetched: Vec<String>,
    /// UIDLs of messages the tool holds only in part (Thunderbird's "too big" and "fetch body"
    /// entries: the first lines only). popbridge downloads them.
    pub partial: Vec<String>,
    /// The other mailboxes the file holds state for ("user at host"), whose entries were ignored.
    pub others: Vec<String>,
}

/// A line the tool would not have written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    pub file: String,
    /// 1-based; 0 for the file as a whole (a getmail file name).
    pub line: usize,
    pub what: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.what),
            n => write!(f, "{}, line {n}: {}", self.file, self.what),
        }
    }
}

/// Parses `data` (the file `file`, named for messages; for getmail its name says whose state it
/// is) as `tool`'s state, keeping the entries of `mailbox`.
pub fn parse(tool: Tool, file: &str, data: &[u8], mailbox: &Mailbox<'_>) -> Result<Parsed, FormatError> {
    match tool {
        Tool::Mpop => mpop(file, data, mailbox),
        Tool::Getmail => getmail(file, data, mailbox),
        Tool::Fetchmail => fetchmail(file, data, mailbox),
        Tool::Thunderbird => thunderbird(file, data, mailbox),
    }
}

/// How `tool` writes the server's UIDL `uidl` in its state file.
pub fn as_written(tool: Tool, uidl: &str) -> String {
    match tool {
        // getmailcore/_retrieverbases.py, POP3RetrieverBase._getmsglist: "Don't allow / in UIDs
        // we store" — msgid.replace('/', '-').
        Tool::Getmail => uidl.replace('/', "-"),
        _ => uidl.to_string(),
    }
}

fn err(file: &str, line: usize, what: impl Into<String>) -> FormatError {
    FormatError { file: file.to_string(), line, what: what.into() }
}

/// Lines as the C tools read them with fgets: split at LF, the LF removed (a CR stays).
fn lf_lines(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    // The LF ending the last line does not start another one.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines.into_iter().enumerate().map(|(i, l)| (i + 1, l))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn same_host(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// mpop's UIDLs file (`uidls_file`; default `~/.mpop_uidls/%U_at_%H`, one file may serve several
/// accounts). mpop-mirror `src/uidls.c`, `uidls_read` and `uidls_write`: comment lines (`#`) only
/// before the first other line; then lists, each a line `" N host user"` (a space, N ≥ 1 UIDs,
/// host, user without spaces) followed by exactly N lines of one UID each. `src/mpop.c`
/// (`mpop_retrmail`) picks the list by `find_uidl(…, acc->host, acc->username)` and, after each
/// session, writes into it the UIDs of every message it took as old (retrieved, or skipped on
/// purpose): those are the messages mpop will not download again.
fn mpop(file: &str, data: &[u8], mb: &Mailbox<'_>) -> Result<Parsed, FormatError> {
    let mut out = Parsed::default();
    // The list being read: (host, user, UIDs still expected, ours).
    let mut list: Option<(String, String, u64, bool)> = None;
    let mut comments = true;
    for (n, line) in lf_lines(data) {
        if comments {
            if line.first() == Some(&b'#') {
                continue;
            }
            comments = false;
        }
        match list.as_mut() {
            None => {
                let Some(rest) = line.strip_prefix(b" ") else {
                    return Err(err(file, n, "a UID outside any list (mpop writes \" N host user\" before each list)"));
                };
                let rest = text(rest);
                let mut words = rest.splitn(3, ' ');
                let count = words.next().and_then(|c| c.parse::<u64>().ok()).filter(|c| *c >= 1);
                let Some(count) = count else {
                    return Err(err(file, n, "invalid number of UIDs (mpop writes \" N host user\")"));
                };
                let host = words.next().filter(|h| !h.is_empty());
                let Some(host) = host else { return Err(err(file, n, "invalid or missing host name")) };
                let user = words.next().filter(|u| !u.is_empty() && !u.contains(' '));
                let Some(user) = user else { return Err(err(file, n, "invalid or missing user name")) };
                let ours = same_host(host, mb.host) && user == mb.user;
                if !ours {
                    out.others.push(format!("{user} at {host}"));
                }
                list = Some((host.to_string(), user.to_string(), count, ours));
            }
            Some((host, user, left, ours)) => {
                if line.first() == Some(&b' ') {
                    return Err(err(file, n, format!("too few UIDs for user {user}, host {host}")));
                }
                if *ours {
                    out.fetched.push(text(line));
                }
                *left -= 1;
                if *left == 0 {
                    list = None;
                }
            }
        }
    }
    if let Some((host, user, _, _)) = list {
        let last = lf_lines(data).count();
        return Err(err(file, last, format!("too few UIDs for user {user}, host {host} (the file ends early)")));
    }
    Ok(out)
}

/// The name getmail gives the state file of a POP mailbox. getmail6
/// `getmailcore/_retrieverbases.py`, `RetrieverSkeleton.initialize`:
/// `re.sub(STRIP_CHAR_RE, '-', 'oldmail-%(server)s-%(port)i-%(username)s')` with
/// `STRIP_CHAR_RE = r'[/\:;<>|]+'` (a run of those characters becomes one `-`); POP has no
/// mailbox suffix (`_oldmail_filename` with `mailbox` None).
pub fn getmail_file_name(host: &str, port: u16, user: &str) -> String {
    strip_chars(&format!("oldmail-{host}-{port}-{user}"))
}

fn strip_chars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if matches!(c, '/' | '\\' | ':' | ';' | '<' | '>' | '|') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out
}

/// Whether `name` is getmail's state file for this host and user on some port (popbridge may
/// reach the server on another port than getmail did: the same mailbox).
pub fn getmail_file_is_for(name: &str, mb: &Mailbox<'_>) -> bool {
    let head = strip_chars(&format!("oldmail-{}-", mb.host));
    let tail = strip_chars(&format!("-{}", mb.user));
    let (Some(rest), true) = (name.get(..head.len()), name.len() > head.len() + tail.len()) else { return false };
    if !rest.eq_ignore_ascii_case(&head) || !name.ends_with(&tail) {
        return false;
    }
    let port = &name[head.len()..name.len() - tail.len()];
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

/// getmail6's `oldmail-SERVER-PORT-USER` file (in the getmail directory, `~/.getmail` or
/// `--getmaildir`). `getmailcore/_retrieverbases.py`, `read_oldmailfile` and `write_oldmailfile`:
/// one line per message, `msgid \0 timestamp` (the second a decimal integer: when getmail first
/// saw it), for every message delivered (or seen with `read_all = false`) — those getmail will
/// not download again; vanished ones stay up to 30 days. The file name says whose state it is
/// ([`getmail_file_name`]): a file named for another mailbox gives nothing.
fn getmail(file: &str, data: &[u8], mb: &Mailbox<'_>) -> Result<Parsed, FormatError> {
    let name = std::path::Path::new(file).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut out = Parsed::default();
    if !name.starts_with("oldmail-") {
        return Err(err(file, 0, "not a getmail state file (getmail names them oldmail-SERVER-PORT-USER)"));
    }
    let ours = getmail_file_is_for(&name, mb);
    if !ours {
        out.others.push(name.clone());
    }
    for (n, line) in lf_lines(data) {
        // Python's str.strip(): whitespace at both ends (the line end included).
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let Some(nul) = memchr::memchr(0, line) else {
            return Err(err(file, n, "no NUL between the message id and its timestamp (getmail writes \"ID\\0TIME\")"));
        };
        let (id, time) = (&line[..nul], text(&line[nul + 1..]));
        let digits = time.trim().strip_prefix(['+', '-']).unwrap_or(time.trim());
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(file, n, format!("the timestamp \"{}\" is not a number", time.escape_debug())));
        }
        // Pre-4.22.0 files put the IMAP mailbox into the id ("uidvalidity/mailbox/uid"); getmail
        // strips it as it reads.
        let mut id = text(id);
        let parts: Vec<&str> = id.split('/').collect();
        if parts.len() == 3 {
            id = format!("{}/{}", parts[0], parts[2]);
        }
        if ours {
            out.fetched.push(id);
        }
    }
    Ok(out)
}

/// fetchmail's `.fetchids` (`~/.fetchids`, `$FETCHMAILHOME/.fetchids` or `--idfile`). fetchmail
/// `uid.c`: `write_saved_lists` writes one line `remotename@queryname UID` per message seen and
/// kept on the server (the UIDs it will not fetch again), `initialize_saved_lists` reads them
/// back: after leading blanks, the user@host part runs to the first space after the first `@`
/// (user names may hold spaces, UIDs may hold `@`), the host is what follows its last `@`, and
/// the UID runs to the next blank; server and user compare without regard to case (strcasecmp).
fn fetchmail(file: &str, data: &[u8], mb: &Mailbox<'_>) -> Result<Parsed, FormatError> {
    let mut out = Parsed::default();
    for (n, line) in lf_lines(data) {
        let line = text(line);
        let line = line.trim_start_matches([' ', '\t']);
        if line.trim().is_empty() {
            continue;
        }
        let parsed = line.find('@').and_then(|at| line[at..].find(' ').map(|sp| at + sp));
        let Some(space) = parsed else {
            return Err(err(file, n, "not \"user@server UID\" (fetchmail writes one such line per message)"));
        };
        let userhost = line[..space].trim_end_matches([' ', '\t']);
        let Some((user, host)) = userhost.rsplit_once('@') else {
            return Err(err(file, n, "not \"user@server UID\""));
        };
        let id = line[space..].trim_start_matches(' ');
        let id = id.split([' ', '\t', '\r']).next().unwrap_or("");
        if id.is_empty() {
            return Err(err(file, n, "no UID after \"user@server\""));
        }
        if same_host(host, mb.host) && user.eq_ignore_ascii_case(mb.user) {
            out.fetched.push(id.to_string());
        } else {
            let other = format!("{user} at {host}");
            if !out.others.contains(&other) {
                out.others.push(other);
            }
        }
    }
    Ok(out)
}

/// Thunderbird's `popstate.dat`, in the POP account's directory (`Mail/<server>/`).
/// comm-central `mailnews/local/src/Pop3Client.sys.mjs`, `_loadUidlState` / `_writeUidlState`
/// (and before it `nsPop3Protocol.cpp`, `net_pop3_load_state` / `net_pop3_write_state`): `#`
/// comment lines, blank lines, a line `*host user` opening each server's entries (user to the
/// end of the line: it may hold spaces, not tabs), then one line per message, `FLAG UIDL
/// TIMESTAMP` (blanks or tabs between; TIMESTAMP, seconds, written since the C++ days). FLAG:
/// `k` downloaded and kept on the server, `d` downloaded and due for deletion there, `b` too big —
/// only its first lines were downloaded —, `f` its full body was asked for and is still to come.
fn thunderbird(file: &str, data: &[u8], mb: &Mailbox<'_>) -> Result<Parsed, FormatError> {
    let mut out = Parsed::default();
    // Entries before any "*host user" line belong to no server: the C++ reader skips them.
    let mut ours: Option<bool> = None;
    for (n, line) in lf_lines(data) {
        let line = text(line.strip_suffix(b"\r").unwrap_or(line));
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('*') {
            let rest = rest.trim_start_matches([' ', '\t']);
            let (host, user) = match rest.find([' ', '\t']) {
                Some(i) => (&rest[..i], rest[i..].trim_start_matches([' ', '\t']).split('\t').next().unwrap_or("")),
                None => (rest, ""),
            };
            if host.is_empty() || user.is_empty() {
                return Err(err(
                    file,
                    n,
                    "a server line without its host and user (Thunderbird writes \"*host user\")",
                ));
            }
            let mine = same_host(host, mb.host) && user == mb.user;
            if !mine {
                out.others.push(format!("{user} at {host}"));
            }
            ours = Some(mine);
            continue;
        }
        let fields: Vec<&str> = line.split([' ', '\t']).filter(|f| !f.is_empty()).collect();
        let (flag, uidl) = match fields.as_slice() {
            [flag, uidl, rest @ ..] if rest.len() <= 1 => (*flag, *uidl),
            _ => {
                return Err(err(file, n, "not \"FLAG UIDL TIMESTAMP\" (Thunderbird writes one such line per message)"));
            }
        };
        if let Some(t) = fields.get(2)
            && !t.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err(file, n, format!("the timestamp \"{}\" is not a number", t.escape_debug())));
        }
        let partial = match flag {
            "k" | "d" => false,
            "b" | "f" => true,
            _ => {
                return Err(err(
                    file,
                    n,
                    format!("unknown flag \"{}\" (Thunderbird writes k, d, b or f)", flag.escape_debug()),
                ));
            }
        };
        match ours {
            None => return Err(err(file, n, "a message line before any \"*host user\" line")),
            Some(false) => {}
            Some(true) if partial => out.partial.push(uidl.to_string()),
            Some(true) => out.fetched.push(uidl.to_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: Mailbox<'static> = Mailbox { host: "pop.example.com", port: 995, user: "alice" };

    fn p(tool: Tool, file: &str, data: &str) -> Result<Parsed, FormatError> {
        parse(tool, file, data.as_bytes(), &MB)
    }

    #[test]
    fn mpop_takes_its_own_list_and_names_the_others() {
        let f = "# This file was generated by mpop version 1.4.18.\n#\n# comment\n 2 pop.example.com alice\nUID-a\nUID-b\n 1 pop.example.com bob\nUID-c\n 1 POP.EXAMPLE.COM alice\n#not-a-comment\n";
        let r = p(Tool::Mpop, "uidls", f).unwrap();
        assert_eq!(r.fetched, ["UID-a", "UID-b", "#not-a-comment"]);
        assert_eq!(r.others, ["bob at pop.example.com"]);
        assert_eq!(p(Tool::Mpop, "uidls", "").unwrap(), Parsed::default());
    }

    #[test]
    fn mpop_errors_name_the_file_and_line() {
        let e = p(Tool::Mpop, "/x/uidls", " 3 pop.example.com alice\na\nb\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/x/uidls, line 3: too few UIDs for user alice, host pop.example.com (the file ends early)"
        );
        let e = p(Tool::Mpop, "u", " 2 h alice\na\n 1 h alice\n").unwrap_err();
        assert_eq!((e.line, e.what.as_str()), (3, "too few UIDs for user alice, host h"));
        assert_eq!(p(Tool::Mpop, "u", "a\n").unwrap_err().line, 1);
        assert_eq!(
            p(Tool::Mpop, "u", " 0 h u\n").unwrap_err().what,
            "invalid number of UIDs (mpop writes \" N host user\")"
        );
        assert!(p(Tool::Mpop, "u", " 1 h\n").unwrap_err().what.contains("user name"));
        assert!(p(Tool::Mpop, "u", " 1 h a b\n").unwrap_err().what.contains("user name"));
    }

    #[test]
    fn getmail_file_names_follow_getmail() {
        assert_eq!(getmail_file_name("pop.example.com", 995, "alice"), "oldmail-pop.example.com-995-alice");
        assert_eq!(getmail_file_name("h", 110, "dom\\us/er:;x"), "oldmail-h-110-dom-us-er-x");
        assert!(getmail_file_is_for("oldmail-pop.example.com-110-alice", &MB), "another port: the same mailbox");
        assert!(!getmail_file_is_for("oldmail-pop.example.com-995-alice2", &MB));
        assert!(!getmail_file_is_for("oldmail-pop.example.com-995-bob-alice", &MB));
        assert!(!getmail_file_is_for("oldmail-pop.example.com--alice", &MB));
        assert!(!getmail_file_is_for("oldmail-", &MB));
    }

    #[test]
    fn getmail_reads_id_nul_timestamp_lines() {
        let f = "000000014a3b\x001764500000\n\n  0000002-x \x001764500001  \nv/INBOX/7\x0012\n";
        let r = p(Tool::Getmail, "/d/oldmail-pop.example.com-995-alice", f).unwrap();
        // As getmail reads it: only the line is stripped, not the id.
        assert_eq!(r.fetched, ["000000014a3b", "0000002-x ", "v/7"]);
        let r = p(Tool::Getmail, "/d/oldmail-other.example-995-alice", f).unwrap();
        assert!(r.fetched.is_empty());
        assert_eq!(r.others, ["oldmail-other.example-995-alice"]);
        let e = p(Tool::Getmail, "/d/oldmail-pop.example.com-995-alice", "a\x0012\nb 12\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("/d/oldmail-pop.example.com-995-alice, line 2: "), "{e}");
        assert_eq!(p(Tool::Getmail, "x/oldmail-h-1-u", "a\x00soon\n").unwrap_err().line, 1);
        assert_eq!(p(Tool::Getmail, "x/getmailrc", "").unwrap_err().line, 0);
        assert_eq!(as_written(Tool::Getmail, "a/b"), "a-b");
    }

    #[test]
    fn fetchmail_splits_user_host_and_uid_as_fetchmail_does() {
        let f = "alice@pop.example.com 0000001a5f3c\n  ALICE@POP.example.com <id@intermail>\nlotus notes user@pop.example.com x1\nbob@pop.example.com 9\nbob@pop.example.com 10\n\nfirst.last@corp@pop.example.com y\n";
        let r = parse(Tool::Fetchmail, ".fetchids", f.as_bytes(), &Mailbox { user: "alice", ..MB }).unwrap();
        assert_eq!(r.fetched, ["0000001a5f3c", "<id@intermail>"]);
        assert_eq!(
            r.others,
            ["lotus notes user at pop.example.com", "bob at pop.example.com", "first.last@corp at pop.example.com"]
        );
        let r = parse(Tool::Fetchmail, ".fetchids", f.as_bytes(), &Mailbox { user: "first.last@corp", ..MB }).unwrap();
        assert_eq!(r.fetched, ["y"]);
        let e = p(Tool::Fetchmail, "/h/.fetchids", "alice@pop.example.com 1\nno-at-sign here\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/h/.fetchids, line 2: not \"user@server UID\" (fetchmail writes one such line per message)"
        );
        assert_eq!(p(Tool::Fetchmail, "f", "alice@host\n").unwrap_err().line, 1);
    }

    #[test]
    fn thunderbird_sections_flags_and_timestamps() {
        let f = "# POP3 State File\r\n# This is a generated file!  Do not edit.\r\n\r\n*pop.example.com alice\r\nk UID1 1764500000\r\nd\tUID2\t1764500001\r\nb UID3 1764500002\r\nf UID4 1764500003\r\nk UID5\r\n*pop.example.com Alice Smith\r\nk UID9 1\r\n";
        let r = p(Tool::Thunderbird, "popstate.dat", f).unwrap();
        assert_eq!(r.fetched, ["UID1", "UID2", "UID5"]);
        assert_eq!(r.partial, ["UID3", "UID4"]);
        assert_eq!(r.others, ["Alice Smith at pop.example.com"]);
        let e = p(Tool::Thunderbird, "Mail/pop/popstate.dat", "*pop.example.com alice\nx UID1 1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Mail/pop/popstate.dat, line 2: unknown flag \"x\" (Thunderbird writes k, d, b or f)"
        );
        assert_eq!(p(Tool::Thunderbird, "p", "k UID1 1\n").unwrap_err().line, 1);
        assert_eq!(p(Tool::Thunderbird, "p", "*h u\nk\n").unwrap_err().line, 2);
        assert_eq!(p(Tool::Thunderbird, "p", "*h u\nk U 1 2\n").unwrap_err().line, 2);
        assert_eq!(p(Tool::Thunderbird, "p", "*h u\nk U soon\n").unwrap_err().line, 2);
        assert_eq!(p(Tool::Thunderbird, "p", "*h\n").unwrap_err().line, 1);
    }

    /// Arbitrary bytes (and arbitrary mutations of valid files) never make a parser panic.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let seeds: [&[u8]; 4] = [
            b" 2 pop.example.com alice\nUID-a\nUID-b\n",
            b"a\x0012\n0000002\x00x\n",
            b"alice@pop.example.com 1\n",
            b"*pop.example.com alice\r\nk UID1 1764500000\r\n",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const ALPHABET: &[u8] = b" \t\r\n\0@*#kdbf-/:;0123456789aZ\xff\xc3";
        for round in 0..4000 {
            let mut data: Vec<u8> = seeds[round % 4].to_vec();
            for _ in 0..(next() % 8) {
                let pick = ALPHABET[(next() % ALPHABET.len() as u64) as usize];
                let random = (next() & 0xff) as u8;
                let b = if next() % 2 == 0 { pick } else { random };
                match next() % 3 {
                    0 if !data.is_empty() => {
                        let i = (next() % data.len() as u64) as usize;
                        data[i] = b;
                    }
                    1 => {
                        let i = (next() % (data.len() as u64 + 1)) as usize;
                        data.insert(i, b);
                    }
                    _ if !data.is_empty() => {
                        let i = (next() % data.len() as u64) as usize;
                        data.remove(i);
                    }
                    _ => {}
                }
            }
            for tool in Tool::ALL {
                let _ = parse(tool, "oldmail-pop.example.com-995-alice", &data, &MB);
            }
        }
    }
}
