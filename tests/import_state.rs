//! `account import-state` (issue 17, part 1): real mpop, getmail6 and fetchmail fetch part of a
//! Dovecot mailbox (keeping it on the server), popbridge takes over their state, and its next
//! fetch downloads exactly the messages they had not — checked in the store and in Dovecot's own
//! count of RETRs — while `after-fetch` never DELEtes the ones popbridge does not hold.
//! Thunderbird's popstate.dat is written as its source defines it (comm-central
//! `mailnews/local/src/Pop3Client.sys.mjs`, `_writeUidlState`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::corpus::corpus;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::fake_pop3::{FakeMessage, FakePop3, Script, mail};
use crate::util::{Bridge, Run, as_pop3_sends, sorted};

/// The messages the tool fetches first, and those delivered after it ran.
const BEFORE: usize = 6;
const AFTER: usize = 4;

/// Dovecot's logout line of the last POP3 session ("retr=N/bytes, del=N/M, …").
fn last_pop_logout(d: &Dovecot) -> String {
    d.log().lines().rfind(|l| l.contains("pop3(alice)") && l.contains("Logged out")).unwrap_or_default().to_string()
}

fn run_tool(what: &str, cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write config");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod config");
}

/// mpop, `keep on`, into a maildir: returns its uidls file.
fn mpop(d: &Dovecot, dir: &Path) -> PathBuf {
    let md = dir.join("md");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).expect("maildir");
    }
    let uidls = dir.join("uidls");
    let rc = dir.join("mpoprc");
    write_private(
        &rc,
        &format!(
            "account t\nhost 127.0.0.1\nport {}\ntls on\ntls_starttls off\ntls_trust_file {}\nauth user\nuser alice\npassword alice-pw\ndelivery maildir {}\nuidls_file {}\nkeep on\nreceived_header off\n",
            d.pop3s_port,
            d.ca_pem_path.display(),
            md.display(),
            uidls.display()
        ),
    );
    run_tool("mpop", Command::new("mpop").arg("-q").arg("-C").arg(&rc).arg("t"));
    uidls
}

/// fetchmail `--keep --uidl`: returns its id file (.fetchids).
fn fetchmail(d: &Dovecot, dir: &Path) -> PathBuf {
    let home = dir.join("fm");
    std::fs::create_dir_all(&home).expect("fetchmail home");
    let me = String::from_utf8(Command::new("id").arg("-un").output().expect("id").stdout).expect("user name");
    let rc = dir.join("fetchmailrc");
    // fetchmail checks DNS names only in certificates: connect to 127.0.0.1, verify "localhost".
    write_private(
        &rc,
        &format!(
            "set no syslog\npoll 127.0.0.1 protocol pop3 port {}\n  user \"alice\" there with password \"alice-pw\" is \"{}\" here\n  ssl sslcertck sslcertfile \"{}\" sslcommonname \"localhost\"\n  mda \"cat > /dev/null\"\n",
            d.pop3s_port,
            me.trim(),
            d.ca_pem_path.display()
        ),
    );
    let ids = home.join(".fetchids");
    run_tool(
        "fetchmail",
        Command::new("fetchmail")
            .env("FETCHMAILHOME", &home)
            .args(["--keep", "--uidl", "-s", "-f"])
            .arg(&rc)
            .arg("--idfile")
            .arg(&ids)
            .arg("--pidfile")
            .arg(home.join("pid")),
    );
    ids
}

/// getmail6 with `delete = false` (messages handed to /bin/true): returns its getmail directory.
/// Debian's getmail6 6.18 waits for each delivery child through a SIGCHLD handler installed after
/// the fork, and loses the wakeup when the child is quicker (upstream issues #162, #226, #245;
/// fixed in 6.20): the launcher below waits with waitpid instead — the same fork per message.
fn getmail(d: &Dovecot, dir: &Path) -> PathBuf {
    let gm = dir.join("gm");
    std::fs::create_dir_all(&gm).expect("getmail dir");
    let rc = dir.join("getmailrc");
    write_private(
        &rc,
        &format!(
            "[retriever]\ntype = SimplePOP3SSLRetriever\nserver = 127.0.0.1\nport = {}\nusername = alice\npassword = alice-pw\nca_certs = {}\n\n[destination]\ntype = MDA_external\npath = /bin/true\nallow_root_commands = true\n\n[options]\nverbose = 0\nread_all = false\ndelete = false\ndelivered_to = false\nreceived = false\nmessage_log_syslog = false\n",
            d.pop3s_port,
            d.ca_pem_path.display()
        ),
    );
    let launcher = dir.join("getmail-waitpid.py");
    std::fs::write(
        &launcher,
        r#"import os, runpy, signal, sys
from getmailcore import baseclasses as b
from getmailcore.exceptions import getmailOperationError
def forkchild(self, childfun, with_out=True):
    self.child = child = b.Namespace()
    child.stdout, child.stderr = b.TemporaryFile23(), b.TemporaryFile23()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    child.childpid = os.fork()
    if child.childpid == 0:
        childfun(child.stdout, child.stderr)
    _, status = os.waitpid(child.childpid, 0)
    if os.WIFSIGNALED(status):
        raise getmailOperationError("child killed by signal %d" % os.WTERMSIG(status))
    child.exitcode = os.WEXITSTATUS(status)
    child.stderr.seek(0)
    child.err = child.stderr.read().strip().decode()
    child.stdout.seek(0)
    if with_out:
        child.out = child.stdout.read().strip()
    return child
b.ForkingBase.forkchild = forkchild
sys.argv = ["getmail"] + sys.argv[1:]
runpy.run_path("/usr/bin/getmail", run_name="__main__")
"#,
    )
    .expect("write launcher");
    // getmail's own interpreter (Debian's python3, where getmailcore is installed).
    run_tool(
        "getmail",
        Command::new("/usr/bin/python3")
            .arg(&launcher)
            .arg(format!("--getmaildir={}", gm.display()))
            .arg(format!("--rcfile={}", rc.display())),
    );
    gm
}

fn import(b: &Bridge, tool: &str, path: &Path) -> Run {
    b.run(&["account", "import-state", "Work", "--from", tool, &path.display().to_string()])
}

fn pop_rows(b: &Bridge) -> (i64, i64) {
    let c = rusqlite::Connection::open(b.store_path()).expect("open store");
    c.query_row("SELECT count(*), count(origin) FROM pop_uidls", [], |r| Ok((r.get(0)?, r.get(1)?))).expect("count")
}

/// The whole story for one tool: it fetches the first messages; one of them goes from the server;
/// more arrive; popbridge imports the tool's state (twice: nothing changes) and fetches with
/// after-fetch: exactly the new ones are downloaded (and deleted), the tool's stay on the server.
fn takes_over(tool: &str, run: fn(&Dovecot, &Path) -> PathBuf, seed: u64) {
    let d = Dovecot::start(DovecotOpts::default());
    let c = corpus(BEFORE + AFTER, seed);
    d.deliver("alice", &c.messages[..BEFORE]);
    let work = tempfile::tempdir().expect("temp dir");
    let state = run(&d, work.path());
    // One of the tool's messages leaves the server (deleted from another device).
    let first = d.message_files("alice").into_iter().next().expect("a message file");
    std::fs::remove_file(first).expect("remove a message");
    d.deliver("alice", &c.messages[BEFORE..]);

    let b = Bridge::new();
    b.add_dovecot_alice(&d, &["--delete", "after-fetch"]).expect(0);
    let line = format!(
        "Work: {} matched (will not be downloaded), 1 no longer on the server, {AFTER} new (will be downloaded on the next fetch)",
        BEFORE - 1
    );
    let r = import(&b, tool, &state).expect(0);
    assert!(r.stdout.contains(&line), "{tool}: {}", r.stdout);
    assert!(r.stdout.contains(&format!("recorded now: {}", BEFORE - 1)), "{}", r.stdout);
    let logout = last_pop_logout(&d);
    assert!(logout.contains(&format!("top={}/", BEFORE - 1)) && logout.contains("retr=0/0"), "{logout}");
    assert_eq!(pop_rows(&b), ((BEFORE - 1) as i64, (BEFORE - 1) as i64));
    // Idempotent: the same report, nothing recorded.
    let r = import(&b, tool, &state).expect(0);
    assert!(r.stdout.contains(&line) && r.stdout.contains("recorded now: 0"), "{}", r.stdout);
    assert_eq!(pop_rows(&b), ((BEFORE - 1) as i64, (BEFORE - 1) as i64));

    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains(&format!("{AFTER} new message(s)")), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("{AFTER} deleted")), "{}", r.stdout);
    let logout = last_pop_logout(&d);
    assert!(logout.contains(&format!("retr={AFTER}/")), "Dovecot counted other RETRs: {logout}");
    assert!(logout.contains(&format!("del={AFTER}/")), "{logout}");
    let expected: Vec<Vec<u8>> = c.messages[BEFORE..].iter().map(|m| as_pop3_sends(m)).collect();
    assert_eq!(b.messages("Work"), expected, "{tool}: exactly the messages it had not fetched");
    let kept: Vec<Vec<u8>> = c.messages[1..BEFORE].iter().map(|m| as_pop3_sends(m)).collect();
    let left: Vec<Vec<u8>> = d.messages("alice").iter().map(|m| as_pop3_sends(m)).collect();
    assert_eq!(sorted(left), sorted(kept), "after-fetch never deletes what popbridge does not hold");
    // And never later either.
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains("0 new message(s)") && !r.stdout.contains("deleted"), "{}", r.stdout);
    assert_eq!(d.messages("alice").len(), BEFORE - 1);
    assert!(last_pop_logout(&d).contains("retr=0/0"), "{}", last_pop_logout(&d));
}

#[test]
fn mpop_state_is_taken_over() {
    takes_over("mpop", mpop, 171);
}

#[test]
fn getmail_state_is_taken_over() {
    takes_over("getmail", getmail, 172);
}

#[test]
fn fetchmail_state_is_taken_over() {
    takes_over("fetchmail", fetchmail, 173);
}

/// One `*host user` section of a popstate.dat: host, user, (flag, UIDL) per message.
type Section<'a> = (&'a str, &'a str, &'a [(&'a str, String)]);

/// A popstate.dat as Thunderbird writes it (`_writeUidlState`: two comment lines, a blank line,
/// `*host user`, then `FLAG UIDL TIMESTAMP` per message), with sections of the older C++ code
/// (`net_pop3_write_state` wrote one per host and user) for other mailboxes.
fn popstate(sections: &[Section<'_>]) -> String {
    let mut lines =
        vec!["# POP3 State File".to_string(), "# This is a generated file!  Do not edit.".into(), String::new()];
    for (host, user, entries) in sections {
        lines.push(format!("*{host} {user}"));
        for (i, (flag, uidl)) in entries.iter().enumerate() {
            lines.push(format!("{flag} {uidl} {}", 1_764_500_000 + i));
        }
    }
    lines.join("\n")
}

#[test]
fn thunderbird_popstate_takes_only_this_mailbox_and_whole_messages() {
    let d = Dovecot::start(DovecotOpts::default());
    // Dovecot's UIDLs are UID and UIDVALIDITY in hex (pop3_uidl_format = %08Xu%08Xv).
    d.set_uidvalidity("alice", 0x5eed);
    let uidl = |uid: u32| format!("{uid:08x}{:08x}", 0x5eed);
    let c = corpus(8, 174);
    d.deliver("alice", &c.messages);
    let ours = [("k", uidl(1)), ("k", uidl(2)), ("d", uidl(3)), ("b", uidl(4)), ("k", uidl(99))];
    let other_host = [("k", uidl(5))];
    let other_user = [("k", uidl(6))];
    let text = popstate(&[
        ("127.0.0.1", "alice", &ours[..]),
        ("pop.other.example", "alice", &other_host[..]),
        ("127.0.0.1", "bob", &other_user[..]),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("popstate.dat");
    std::fs::write(&file, text).expect("write popstate.dat");

    let b = Bridge::new();
    b.add_dovecot_alice(&d, &["--delete", "after-fetch"]).expect(0);
    let r = import(&b, "thunderbird", &file).expect(0);
    assert!(
        r.stdout.contains("Work: 3 matched (will not be downloaded), 1 no longer on the server, 5 new (will be downloaded on the next fetch)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("1 were only partly downloaded"), "{}", r.stdout);
    assert!(r.stdout.contains("alice at pop.other.example") && r.stdout.contains("bob at 127.0.0.1"), "{}", r.stdout);
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains("5 new message(s)") && r.stdout.contains("5 deleted"), "{}", r.stdout);
    assert!(last_pop_logout(&d).contains("retr=5/"), "{}", last_pop_logout(&d));
    let expected: Vec<Vec<u8>> = c.messages[3..].iter().map(|m| as_pop3_sends(m)).collect();
    assert_eq!(
        b.messages("Work"),
        expected,
        "the too-big one is downloaded whole; other mailboxes' entries count for nothing"
    );
    assert_eq!(d.messages("alice").len(), 3, "Thunderbird's messages stay on the server");
}

/// A fake server whose messages can change under the same UIDL.
fn fake(messages: Vec<FakeMessage>) -> (FakePop3, Bridge) {
    fake_deleting(messages, "after-fetch")
}

/// The same with the account's delete policy `policy`.
fn fake_deleting(messages: Vec<FakeMessage>, policy: &str) -> (FakePop3, Bridge) {
    let f = FakePop3::start(Script { messages, ..Script::default() });
    let b = Bridge::new();
    let account =
        crate::util::accounts::PopAccount { name: "Work", ..crate::util::accounts::PopAccount::fake(f.port()) };
    b.add_pop_account(&account, &["--delete", policy]).expect(0);
    (f, b)
}

#[test]
fn no_delete_policy_ever_deletes_an_imported_message() {
    for policy in ["after-fetch", "after-days:0", "when-deleted-locally"] {
        let (f, b) = fake_deleting(
            vec![FakeMessage::new("A", mail("a", "one")), FakeMessage::new("B", mail("b", "two"))],
            policy,
        );
        let dir = tempfile::tempdir().expect("temp dir");
        import(&b, "thunderbird", &popstate_file(dir.path(), &["A", "B"])).expect(0);
        // Everything a policy could look at says "due": old, gone from every local folder.
        b.sql("UPDATE pop_uidls SET first_seen = 0, local_deleted = 1;");
        for _ in 0..2 {
            let r = b.run(&["fetch"]).expect(0);
            assert!(r.stdout.contains("0 new message(s)") && !r.stdout.contains("deleted"), "{policy}: {}", r.stdout);
        }
        assert!(f.dele_requested().is_empty(), "{policy}: {:?}", f.commands());
        assert!(!f.commands().iter().any(|c| c.starts_with("RETR")), "{policy}: {:?}", f.commands());
        assert_eq!(f.remaining().len(), 2);
    }
}

#[test]
fn a_tool_that_knew_the_server_by_another_name_is_matched_when_told() {
    let (_f, b) = fake(vec![FakeMessage::new("A", mail("a", "one")), FakeMessage::new("B", mail("b", "two"))]);
    let dir = tempfile::tempdir().expect("temp dir");
    let entries = [("k", "A".to_string())];
    let file = dir.path().join("popstate.dat");
    std::fs::write(&file, popstate(&[("pop.alias.example", "u@alias", &entries[..])])).expect("write");
    let r = import(&b, "thunderbird", &file).expect(0);
    assert!(r.stdout.contains("0 matched") && r.stdout.contains("u@alias at pop.alias.example"), "{}", r.stdout);
    let f = file.display().to_string();
    let args = ["account", "import-state", "Work", "--from", "thunderbird", &f, "--tool-host", "POP.alias.example"];
    let r = b.run(&[&args[..], &["--tool-user", "u@alias"]].concat()).expect(0);
    assert!(r.stdout.contains("1 matched (will not be downloaded), 0 no longer on the server, 1 new"), "{}", r.stdout);
}

#[test]
fn getmail_state_is_found_by_its_file_name() {
    let (f, b) = fake(vec![FakeMessage::new("A/1", mail("a", "one")), FakeMessage::new("B", mail("b", "two"))]);
    let dir = tempfile::tempdir().expect("temp dir");
    // getmail writes '/' in a UIDL as '-'; another mailbox's file lies beside it.
    std::fs::write(dir.path().join("oldmail-127.0.0.1-110-u"), "A-1\x001764500000\n").expect("write");
    std::fs::write(dir.path().join("oldmail-127.0.0.1-110-someone"), "B\x001764500000\n").expect("write");
    let r = import(&b, "getmail", dir.path()).expect(0);
    assert!(r.stdout.contains("1 matched (will not be downloaded), 0 no longer on the server, 1 new"), "{}", r.stdout);
    assert!(r.stderr.contains("another port"), "popbridge reaches it on {}: {}", f.port(), r.stderr);
    // A directory without this mailbox's file names what it found.
    std::fs::remove_file(dir.path().join("oldmail-127.0.0.1-110-u")).expect("remove");
    let r = import(&b, "getmail", dir.path()).expect(2);
    assert!(
        r.stderr.contains(&format!("looked for oldmail-127.0.0.1-{}-u", f.port()))
            && r.stderr.contains("found oldmail-127.0.0.1-110-someone"),
        "{}",
        r.stderr
    );
}

#[test]
fn no_import_from_a_server_seen_reusing_uidls() {
    let (_f, b) = fake(vec![FakeMessage::new("A", mail("a", "one"))]);
    b.run(&["fetch"]).expect(0);
    b.sql("UPDATE pop_servers SET reused = 1;");
    let dir = tempfile::tempdir().expect("temp dir");
    let r = import(&b, "thunderbird", &popstate_file(dir.path(), &["A"])).expect(2);
    assert!(r.stderr.contains("was seen giving a UIDL") && r.stderr.contains("nothing was imported"), "{}", r.stderr);
    assert_eq!(pop_rows(&b).1, 0, "nothing recorded as imported");
}

fn popstate_file(dir: &Path, uidls: &[&str]) -> PathBuf {
    let entries: Vec<(&str, String)> = uidls.iter().map(|u| ("k", u.to_string())).collect();
    let file = dir.join("popstate.dat");
    std::fs::write(&file, popstate(&[("127.0.0.1", "u", &entries[..])])).expect("write popstate.dat");
    file
}

#[test]
fn a_uidl_whose_size_changed_is_not_trusted() {
    let (a, b1, c) = (mail("a", "one"), mail("b", "two"), mail("c", "three"));
    let (f, b) = fake(vec![FakeMessage::new("A", a), FakeMessage::new("B", b1), FakeMessage::new("C", c.clone())]);
    let dir = tempfile::tempdir().expect("temp dir");
    let r = import(&b, "thunderbird", &popstate_file(dir.path(), &["A", "B"])).expect(0);
    assert!(r.stdout.contains("2 matched (will not be downloaded), 0 no longer on the server, 1 new"), "{}", r.stdout);
    // The server now gives UIDL B to a message of another size.
    let b2 = mail("b, rewritten", "another message under the same UIDL, and longer");
    f.remove_where(|m| m.uidl.as_deref() == Some("B"));
    f.add_messages(vec![FakeMessage::new("B", b2.clone())]);
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains("2 new message(s)") && r.stdout.contains("2 deleted"), "{}", r.stdout);
    assert_eq!(sorted(b.messages("Work")), sorted(vec![c, b2]));
    let mut deleted = f.dele_requested();
    deleted.sort();
    assert_eq!(deleted, ["B", "C"], "popbridge holds B now; A it never held");
    assert_eq!(f.remaining().iter().map(|m| m.uidl.clone().unwrap_or_default()).collect::<Vec<_>>(), ["A"]);
    let retr = f.commands().iter().filter(|c| c.starts_with("RETR")).count();
    assert_eq!(retr, 2, "{:?}", f.commands());
}

#[test]
fn where_the_server_comes_into_doubt_imported_identities_are_checked_by_their_headers() {
    let (a, b1, c) = (mail("a", "one"), mail("b", "two"), mail("c", "three"));
    let (f, b) = fake(vec![FakeMessage::new("A", a), FakeMessage::new("B", b1), FakeMessage::new("C", c.clone())]);
    let dir = tempfile::tempdir().expect("temp dir");
    import(&b, "thunderbird", &popstate_file(dir.path(), &["A", "B"])).expect(0);
    // Later the server is seen reusing UIDLs, and gives A to another message of the same size.
    b.sql("UPDATE pop_servers SET reused = 1;");
    let a2 = mail("x", "one");
    f.remove_where(|m| m.uidl.as_deref() == Some("A"));
    f.add_messages(vec![FakeMessage::new("A", a2.clone())]);
    let r = b.run(&["fetch"]).expect(0);
    assert!(r.stdout.contains("2 new message(s)"), "{}{}", r.stdout, r.stderr);
    assert_eq!(sorted(b.messages("Work")), sorted(vec![c, a2]), "B's headers are the imported ones: skipped");
    let mut deleted = f.dele_requested();
    deleted.sort();
    assert_eq!(deleted, ["A", "C"], "B is never deleted");
}

#[test]
fn no_import_from_a_server_whose_uidls_are_message_numbers() {
    let (_f, b) = fake(vec![FakeMessage::new("1", mail("a", "one")), FakeMessage::new("2", mail("b", "two"))]);
    let dir = tempfile::tempdir().expect("temp dir");
    let r = import(&b, "thunderbird", &popstate_file(dir.path(), &["1"])).expect(2);
    assert!(r.stderr.contains("message numbers") && r.stderr.contains("nothing was imported"), "{}", r.stderr);
    assert_eq!(pop_rows(&b), (0, 0));
}

#[test]
fn no_import_while_the_account_is_being_fetched() {
    let (_f, b) = fake(vec![FakeMessage::new("A", mail("a", "one"))]);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = popstate_file(dir.path(), &["A"]);
    let lock = popbridge::fetch::lock::AccountLock::acquire(&b.data.join("locks"), "Work").expect("lock");
    let r = import(&b, "thunderbird", &file).expect(6);
    assert!(r.stderr.contains("already being fetched") && r.stderr.contains("nothing was imported"), "{}", r.stderr);
    drop(lock);
    import(&b, "thunderbird", &file).expect(0);
    assert_eq!(pop_rows(&b), (1, 1));
}

#[test]
fn a_malformed_state_file_is_refused_with_its_line() {
    let (f, b) = fake(vec![FakeMessage::new("A", mail("a", "one"))]);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("uidls");
    std::fs::write(&file, "# mpop\n 2 127.0.0.1 u\nA\n").expect("write");
    let r = import(&b, "mpop", &file).expect(2);
    assert!(
        r.stderr.contains(&format!("{}, line 3: too few UIDs for user u, host 127.0.0.1", file.display())),
        "{}",
        r.stderr
    );
    assert_eq!(f.sessions(), 1, "refused before connecting (the one session is account add's test)");
}
