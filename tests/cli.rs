//! The command-line contract (DESIGN §5): init, config errors, permissions, status JSON, exit codes.

use crate::util::accounts::PopAccount;
use crate::util::{Bridge, LOCAL_PASSWORD, mode};

#[test]
fn init_creates_private_config_store_and_stable_certificate() {
    let b = Bridge::new();
    assert_eq!(mode(&b.config), 0o600, "config holds the local password");
    assert_eq!(mode(&b.data), 0o700);
    assert_eq!(mode(&b.store_path()), 0o600);
    assert_eq!(mode(&b.data.join("tls/key.pem")), 0o600);
    let text = std::fs::read_to_string(&b.config).unwrap();
    assert!(text.contains(LOCAL_PASSWORD), "--password-stdin sets the local password");
    let first = b.run(&["init"]).expect(0);
    assert!(first.stdout.contains("left unchanged"), "{}", first.stdout);
    assert_eq!(std::fs::read_to_string(&b.config).unwrap(), text, "init never rewrites an existing config");
    let fp = |out: &str| out.lines().find(|l| l.contains("fingerprint")).map(str::to_string);
    let again = b.run(&["init"]).expect(0);
    assert!(fp(&first.stdout).is_some());
    assert_eq!(fp(&first.stdout), fp(&again.stdout), "the local certificate is never regenerated");
}

#[test]
fn init_generates_a_password_when_none_is_given() {
    let b = Bridge::uninitialised();
    let r = b.run(&["init"]).expect(0);
    let c = popbridge::config::load(&b.config).unwrap();
    let Some(popbridge::config::SecretSource::Inline(pw)) = c.local.password else { panic!("no password") };
    assert!(pw.expose().len() >= 20);
    assert!(r.stdout.contains(pw.expose()), "the user is told the password: {}", r.stdout);
    assert!(r.stdout.contains("1143") && r.stdout.contains("1993"), "{}", r.stdout);
}

#[test]
fn commands_before_init_say_what_to_do() {
    let b = Bridge::uninitialised();
    let r = b.run(&["status"]).expect(2);
    assert!(r.stderr.contains("popbridge init"), "{}", r.stderr);
}

#[test]
fn config_errors_name_the_file_and_the_key() {
    let b = Bridge::new();
    b.append_config("\n[[account]]\nname = \"Work\"\nemail = \"me@example.com\"\n[account.pop]\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\ndelete = \"sometimes\"\n");
    let r = b.run(&["status"]).expect(2);
    assert!(r.stderr.contains(&b.config.display().to_string()), "{}", r.stderr);
    assert!(r.stderr.contains("pop.delete") && r.stderr.contains("sometimes"), "{}", r.stderr);
}

#[test]
fn a_password_in_a_readable_config_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let b = Bridge::new();
    b.add_account("Work", 1, "implicit", "u", "pop-secret", &["--no-test"]).expect(0);
    std::fs::set_permissions(&b.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = b.run(&["fetch"]).expect(2);
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    assert!(!r.stderr.contains("pop-secret"));
}

#[test]
fn a_data_directory_store_or_key_others_can_read_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let b = Bridge::new();
    b.run(&["status"]).expect(0);
    for (path, loose, fix) in [
        (b.data.clone(), 0o755, "chmod 700"),
        (b.store_path(), 0o644, "chmod 600"),
        (b.data.join("tls/key.pem"), 0o640, "chmod 600"),
    ] {
        let before = std::fs::read(&path).ok();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).unwrap();
        let r = b.run(&["client-config"]);
        let r = if path.ends_with("key.pem") { r } else { b.run(&["status"]) };
        assert_ne!(r.code, 0, "{}: {}", path.display(), r.stdout);
        assert!(r.stderr.contains(fix) && r.stderr.contains(&path.display().to_string()), "{}", r.stderr);
        assert_eq!(mode(&path), loose, "popbridge does not change it behind the user's back");
        assert_eq!(std::fs::read(&path).ok(), before, "nor its content");
        let restore = if path.is_dir() { 0o700 } else { 0o600 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(restore)).unwrap();
        b.run(&["status"]).expect(0);
    }
}

#[test]
fn accounts_are_added_listed_and_removed() {
    let b = Bridge::new();
    b.add_account("Work", 995, "implicit", "me", "pw", &["--no-test", "--delete", "after-days:7"]).expect(0);
    let r = b.add_account("Work", 995, "implicit", "me", "pw", &["--no-test"]).expect(2);
    assert!(r.stderr.contains("exists already"), "{}", r.stderr);
    let r = b.add_account("INBOX", 995, "implicit", "me", "pw", &["--no-test"]).expect(2);
    assert!(r.stderr.contains("local folder"), "{}", r.stderr);
    let r = b.run(&["account", "list"]).expect(0);
    assert!(r.stdout.contains("Work") && r.stdout.contains("after-days:7"), "{}", r.stdout);
    let j = b.status_json();
    let a = &j["accounts"][0];
    assert_eq!(a["name"], "Work");
    assert_eq!(a["state"], "active");
    assert_eq!(a["messages"], 0);
    assert!(a["last_fetch"].is_null() && a["last_error"].is_null(), "{j}");
    b.run(&["account", "remove", "Work"]).expect(0);
    assert!(b.status_json()["accounts"].as_array().unwrap().is_empty());
    let text = std::fs::read_to_string(&b.config).unwrap();
    assert!(text.contains("[local]") && text.contains("# Add POP accounts"), "comments and [local] survive");
}

#[test]
fn set_password_replaces_the_secret() {
    let b = Bridge::new();
    b.add_account("Work", 995, "implicit", "me", "old-pw", &["--no-test"]).expect(0);
    b.run_stdin(&["account", "set-password", "Work", "--password-stdin"], "new-pw\n").expect(0);
    let text = std::fs::read_to_string(&b.config).unwrap();
    assert!(text.contains("new-pw") && !text.contains("old-pw"));
    b.run(&["account", "set-password", "Work", "--password-command", "pass show work"]).expect(0);
    let c = popbridge::config::load(&b.config).unwrap();
    assert!(
        matches!(&c.accounts[0].pop.password, Some(popbridge::config::SecretSource::Command(c)) if c == "pass show work")
    );
}

#[test]
fn the_example_config_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/popbridge.example.toml")).unwrap();
    let c = popbridge::config::parse(&text, std::path::Path::new("example.toml"), 0o600).unwrap();
    assert_eq!(c.accounts.len(), 1);
}

/// Issue 13: a typo on a `password = "…"` line makes the config unreadable; the error names the
/// file, the line and the key, but neither the terminal (`status`, `fetch`, `run`) nor the daemon's
/// log (a SIGHUP reload of the broken file) ever shows the password. Before, the TOML error
/// quoted the line, password included.
#[test]
fn a_typo_on_a_password_line_never_shows_the_password() {
    const SECRET: &str = "Pop-Typo-Secret-5d1c";
    let b = Bridge::with_listeners();
    b.add_account("Work", 1, "implicit", "u", SECRET, &["--no-test"]).expect(0);
    let good = std::fs::read_to_string(&b.config).unwrap();
    let line = format!("password = \"{SECRET}\"");
    assert!(good.contains(&line), "{good}");
    let line_no = good.lines().position(|l| l.trim() == line).unwrap() + 1;
    let broken = [
        good.replace(&line, &format!("password = \"{SECRET}")),
        good.replace(&line, &format!("password = {SECRET}")),
        good.replace(&line, &format!("pasword = \"{SECRET}\"")),
    ];
    for text in &broken {
        std::fs::write(&b.config, text).unwrap();
        for args in [&["status"][..], &["fetch"], &["run"]] {
            let r = b.run(args).expect(2);
            let said = format!("{}{}", r.stdout, r.stderr);
            assert!(!said.contains(SECRET), "`{}` shows the password:\n{said}", args[0]);
            assert!(
                said.contains(&b.config.display().to_string()) && said.contains(&format!("line {line_no}")),
                "`{}` names the file and the line:\n{said}",
                args[0]
            );
            assert!(said.contains("key \"password\"") || said.contains("key \"pasword\""), "and the key:\n{said}");
        }
    }
    // The daemon reads the broken file on SIGHUP, keeps running on the old one, and logs why.
    std::fs::write(&b.config, &good).unwrap();
    let d = b.daemon();
    std::fs::write(&b.config, &broken[0]).unwrap();
    let _ = std::process::Command::new("kill").arg("-HUP").arg(d.child.id().to_string()).status();
    crate::util::wait_until("the failed reload in the log", std::time::Duration::from_secs(10), || {
        d.log().contains("not reloaded")
    });
    let log = d.log();
    assert!(log.contains(&format!("line {line_no}")) && log.contains("key \"password\""), "{log}");
    assert!(!log.contains(SECRET), "the daemon log shows the password:\n{log}");
}

/// Issue 13: a `password_command` that fails and prints its secret on stderr (`set -x` traces, an
/// echo of what it tried): the error names the exit status and a short excerpt of what it said,
/// but the secret appears neither on the terminal (`fetch`, `status`, `run` startup) nor in the
/// daemon's log. Before, the first stderr line was shown and logged as it was.
#[test]
fn a_failing_password_command_never_shows_its_secret() {
    use std::os::unix::fs::PermissionsExt;
    const SECRET: &str = "Vault-Pw-2c9e51";
    let b = Bridge::with_listeners();
    let script = b.dir.path().join("get-password");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -x\npw='{SECRET}'\necho \"vault: unlocking with $pw\" >&2\necho \"vault: token $pw expired\" >&2\nexit 3\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cmd = script.display().to_string();
    let r = b.run(&["account", "add", "--name", "Work", "--email", "me@example.com", "--pop-host", "127.0.0.1"]);
    assert_ne!(r.code, 0, "flags are missing: {}", r.stderr);
    let work =
        PopAccount { name: "Work", email: "me@example.com", password_command: Some(&cmd), ..PopAccount::fake(1) };
    b.add_pop_account(&work, &["--no-test"]).expect(0);
    let check = |what: &str, said: &str| {
        assert!(!said.contains(SECRET), "{what} shows the secret:\n{said}");
        assert!(said.contains("password_command exited with status 3"), "{what} names the exit status:\n{said}");
        assert!(said.contains("expired"), "{what} says what the command said:\n{said}");
    };
    let r = b.run(&["fetch"]).expect(2);
    check("fetch", &format!("{}{}", r.stdout, r.stderr));
    let mut d = b.daemon();
    crate::util::wait_until("the failed fetch in the log", std::time::Duration::from_secs(20), || {
        d.log().contains("password_command exited")
    });
    check("the daemon log", &d.log());
    // (A config error is not recorded as the account's last error: `status` has nothing to show.)
    let r = b.run(&["status"]).expect(0);
    assert!(!format!("{}{}", r.stdout, r.stderr).contains(SECRET), "{}", r.stdout);
    assert!(d.terminate().success());
    // The local password from the same command: `run` stops at once, and says why.
    let text = std::fs::read_to_string(&b.config).unwrap();
    let local = format!("password = \"{LOCAL_PASSWORD}\"");
    assert!(text.contains(&local), "{text}");
    std::fs::write(&b.config, text.replace(&local, &format!("password_command = \"{cmd}\""))).unwrap();
    let r = b.run(&["run"]);
    assert_ne!(r.code, 0);
    check("run", &format!("{}{}", r.stdout, r.stderr));
}
