//! The live config: what a running daemon reads when it needs the settings, replaced whole on
//! SIGHUP. The IMAP and SMTP listeners, the outbound queue and the composition root (`app`) share
//! one [`Live`]; each reader takes a snapshot (`Arc<Config>`) and keeps it for what it is doing, so
//! a reload never changes the settings under a half-done command or delivery.

use std::sync::{Arc, RwLock};

use super::Config;
use crate::secret::Secret;

/// The settings that can change under a running daemon (SIGHUP): the config and the local login.
pub struct Live {
    config: RwLock<Arc<Config>>,
    login: RwLock<(String, Secret)>,
}

impl Live {
    /// `password`: the local password, already resolved (`[local] password` may be a command).
    pub fn new(cfg: Config, password: Secret) -> Live {
        let user = cfg.local.user.clone();
        Live { config: RwLock::new(Arc::new(cfg)), login: RwLock::new((user, password)) }
    }

    /// The config now; a later [`set`](Live::set) does not change what was returned.
    pub fn config(&self) -> Arc<Config> {
        // A poisoned lock only means a reader panicked; the value itself is always whole.
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The local user and password now.
    pub fn login(&self) -> (String, Secret) {
        self.login.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A reload: the new config and its resolved local password, in force from the next read.
    pub fn set(&self, cfg: Config, password: Secret) {
        *self.login.write().unwrap_or_else(|p| p.into_inner()) = (cfg.local.user.clone(), password);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(cfg);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(user: &str, account: &str) -> Config {
        let text = format!(
            "[local]\nuser = \"{user}\"\n[[account]]\nname = \"{account}\"\nemail = \"me@example.org\"\n\
             [account.pop]\nhost = \"127.0.0.1\"\ntls = \"plain\"\nuser = \"u\"\npassword = \"p\"\n"
        );
        crate::config::parse(&text, Path::new("config.toml"), 0o600).unwrap()
    }

    #[test]
    fn a_reload_replaces_config_and_login_and_keeps_earlier_snapshots() {
        let live = Live::new(config("me", "Work"), Secret::new("one"));
        let (user, pw) = live.login();
        assert_eq!((user.as_str(), pw.expose()), ("me", "one"));
        let before = live.config();
        assert!(before.account("Work").is_some());

        live.set(config("you", "Home"), Secret::new("two"));
        let (user, pw) = live.login();
        assert_eq!((user.as_str(), pw.expose()), ("you", "two"), "the login follows the new [local] user");
        let after = live.config();
        assert!(after.account("Home").is_some() && after.account("Work").is_none());
        assert!(before.account("Work").is_some(), "a snapshot taken before the reload is unchanged");
    }
}
