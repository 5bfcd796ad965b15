//! The config loader (`popbridge::config::parse`) on any text: no panic; an error is a config
//! error whose message names the file; an accepted file is a model whose invariants hold
//! (validated names and addresses, unique account names, non-zero ports), and parsing is
//! deterministic (the same text gives the same accounts, fingerprints included).

use std::path::Path;

use popbridge::ErrorClass;
use popbridge::config::{self, Config};

/// A path with a space and a non-ASCII character, so "names the file" is checked for real.
const PATH: &str = "/fuzz/config dir/popbridge-ü.toml";

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new(PATH);
    let mode = if data.first().is_some_and(|b| b & 1 == 1) { 0o644 } else { 0o600 };
    match config::parse(&text, path, mode) {
        Err(e) => {
            assert_eq!(e.class, ErrorClass::Config, "{}", e.message);
            assert!(e.message.contains(PATH), "the error does not name the file: {}", e.message);
        }
        Ok(c) => {
            assert_eq!(c.path, path);
            assert_eq!(c.mode, mode);
            check_model(&c);
            let again = config::parse(&text, path, mode).expect("the same text parsed twice");
            let fps = |c: &Config| c.accounts.iter().map(|a| (a.name.clone(), a.fingerprint())).collect::<Vec<_>>();
            assert_eq!(fps(&c), fps(&again));
        }
    }
}

fn check_model(c: &Config) {
    assert!(!c.local.user.is_empty());
    assert!(!c.local.user.contains(['+', '@']), "{:?}", c.local.user);
    for a in [c.local.imap, c.local.imaps, c.local.submission, c.local.submissions].into_iter().flatten() {
        assert!(a.ip().is_loopback(), "{a}");
    }
    for (i, a) in c.accounts.iter().enumerate() {
        assert!(config::check_account_name(&a.name).is_ok(), "{:?}", a.name);
        assert!(config::check_email(&a.email).is_ok(), "{:?}", a.email);
        if let Some(r) = &a.reply_to {
            assert!(config::check_email(r).is_ok(), "{r:?}");
        }
        assert!(a.interval >= config::MIN_INTERVAL);
        assert!(a.pop.port != 0);
        if let Some(s) = &a.smtp {
            assert!(s.port != 0);
        }
        assert!(!c.accounts[..i].iter().any(|b| b.name.eq_ignore_ascii_case(&a.name)), "duplicate {:?}", a.name);
        assert_eq!(c.account(&a.name).map(|b| &b.name), Some(&a.name));
    }
    if let Some(r) = &c.relay {
        assert!(r.port != 0);
    }
}
