//! The command-line contract (DESIGN §5): init, config errors, permissions, status JSON, exit codes.

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
        matches!(&c.accounts[0].pop.password, popbridge::config::SecretSource::Command(c) if c == "pass show work")
    );
}

#[test]
fn the_example_config_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/popbridge.example.toml")).unwrap();
    let c = popbridge::config::parse(&text, std::path::Path::new("example.toml"), 0o600).unwrap();
    assert_eq!(c.accounts.len(), 1);
}
