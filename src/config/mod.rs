//! Configuration: the only module that reads or writes the TOML file.
//!
//! `raw` is the file as serde sees it; `model` validates it once into typed values; `edit` changes
//! the file in place (keeping the user's comments) for `init` and `account add/remove/set-password`;
//! [`resolve_secret`] turns a password setting into a [`Secret`], running `password_command` off the
//! async runtime with a timeout. `limits` is the `[limits]` table (connections before and after login);
//! `live` the config a running daemon reads, replaced on SIGHUP.

pub mod edit;
pub mod limits;
pub mod live;
pub mod model;
pub mod raw;
pub mod redact;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use live::Live;
pub use model::*;

use crate::error::{Error, ErrorClass, Result};
use crate::secret::Secret;

/// How long a `password_command` may run before we give up (it may ask a keyring or a GPG agent).
pub const PASSWORD_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the config file and the data directory are.
#[derive(Debug, Clone)]
pub struct Paths {
    pub config: PathBuf,
    pub data_dir: PathBuf,
}

impl Paths {
    /// `--config`/`POPBRIDGE_CONFIG` and `--data-dir`/`POPBRIDGE_DATA_DIR` (clap reads the env),
    /// else the XDG locations `$XDG_CONFIG_HOME/popbridge/config.toml` and `$XDG_DATA_HOME/popbridge/`.
    pub fn resolve(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> Result<Paths> {
        let dirs = || {
            directories::ProjectDirs::from("", "", "popbridge")
                .ok_or_else(|| Error::config("cannot find the home directory: set --config and --data-dir (or HOME)"))
        };
        let config = match config {
            Some(p) => p,
            None => dirs()?.config_dir().join("config.toml"),
        };
        let data_dir = match data_dir {
            Some(p) => p,
            None => dirs()?.data_dir().to_path_buf(),
        };
        Ok(Paths { config, data_dir })
    }
    pub fn store(&self) -> PathBuf {
        self.data_dir.join("store.sqlite")
    }
    pub fn tls_dir(&self) -> PathBuf {
        self.data_dir.join("tls")
    }
    pub fn lock_dir(&self) -> PathBuf {
        self.data_dir.join("locks")
    }
    /// The OAuth 2 token files, one per `auth = "oauth2"` account (`oauth::token`).
    pub fn oauth_dir(&self) -> PathBuf {
        self.data_dir.join("oauth")
    }
}

/// Reads and validates the config file.
pub fn load(path: &Path) -> Result<Config> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::config(format!(
                "no config file at {}: run `popbridge init` first (or pass --config FILE)",
                path.display()
            )));
        }
        Err(e) => return Err(Error::config(format!("cannot read config file {}: {e}", path.display()))),
    };
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0o600);
    parse(&text, path, mode)
}

pub fn parse(text: &str, path: &Path, mode: u32) -> Result<Config> {
    // Never the error's own rendering: it quotes the line, which may hold a password.
    let raw: raw::RawConfig =
        toml::from_str(text).map_err(|e| redact::syntax_error(path, text, e.message(), e.span()))?;
    model::validate(raw, path.to_path_buf(), mode)
}

impl Config {
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts
            .iter()
            .find(|a| a.name == name)
            .or_else(|| self.accounts.iter().find(|a| a.name.eq_ignore_ascii_case(name)))
    }

    /// The accounts named on the command line (all when none are named).
    pub fn select(&self, names: &[String]) -> Result<Vec<Account>> {
        if names.is_empty() {
            return Ok(self.accounts.clone());
        }
        names
            .iter()
            .map(|n| {
                self.account(n).cloned().ok_or_else(|| {
                    let known: Vec<&str> = self.accounts.iter().map(|a| a.name.as_str()).collect();
                    Error::config(format!(
                        "no account named \"{n}\" in {} (accounts: {})",
                        self.path.display(),
                        known.join(", ")
                    ))
                })
            })
            .collect()
    }
}

/// Turns a password setting into the secret itself.
///
/// An inline password is refused when the config file is readable by group or others: the fix is
/// named in the message. A `password_command` runs through `sh -c` on tokio's process driver (never
/// blocking a worker), with stdin closed and a timeout; the first line of its stdout is the secret.
pub async fn resolve_secret(config_path: &Path, mode: u32, src: &SecretSource, what: &str) -> Result<Secret> {
    match src {
        SecretSource::Inline(s) => {
            if mode & 0o077 != 0 {
                return Err(Error::config(format!(
                    "the config file {} holds the {what} password but can be read by other users (mode {:03o}); \
                     run `chmod 600 {}` or use password_command",
                    config_path.display(),
                    mode & 0o777,
                    config_path.display()
                )));
            }
            Ok(s.clone())
        }
        SecretSource::Command(cmd) => run_password_command(cmd, what).await,
    }
}

async fn run_password_command(cmd: &str, what: &str) -> Result<Secret> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::config(format!("cannot run the {what} password_command: {e}")))?;
    let out = match tokio::time::timeout(PASSWORD_COMMAND_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(Error::config(format!("the {what} password_command failed: {e}"))),
        Err(_) => {
            return Err(Error::config(format!(
                "the {what} password_command did not finish within {}s",
                PASSWORD_COMMAND_TIMEOUT.as_secs()
            )));
        }
    };
    if !out.status.success() {
        // Its stderr says why ("Error: work is not in the password store."), but it may also hold
        // the secret (traces, echoed attempts): only a short, redacted excerpt is shown and logged;
        // never the stdout, where the secret goes.
        use std::os::unix::process::ExitStatusExt;
        let status = match (out.status.code(), out.status.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            (None, None) => "failed".to_string(),
        };
        let said = match redact::command_stderr(&out.stderr) {
            Some(e) => format!(
                ": \"{e}\" (the last line of its error output, shortened, without anything that looks like a password; run the command yourself to see all of it)"
            ),
            None => " and printed no error message".to_string(),
        };
        return Err(Error::new(ErrorClass::Config, format!("the {what} password_command {status}{said}")));
    }
    let stdout = String::from_utf8(out.stdout)
        .map_err(|_| Error::config(format!("the {what} password_command printed something that is not UTF-8")))?;
    let first = stdout.lines().next().unwrap_or("");
    if first.is_empty() {
        return Err(Error::config(format!("the {what} password_command printed nothing")));
    }
    Ok(Secret::new(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Config> {
        parse(s, Path::new("/tmp/c.toml"), 0o600)
    }

    const GOOD: &str = r#"
[local]
user = "me"
password = "x"
[[account]]
name = "Work"
email = "me@work.example"
[account.pop]
host = "pop.work.example"
user = "me"
password_command = "echo secret"
delete = "after-days:7"
"#;

    #[test]
    fn first_import_values_parse_and_round_trip() {
        for v in ["since:2026-01-01", "since:2024-02-29", "newest:1000", "from-now-on"] {
            let f = FirstImport::parse(v).unwrap_or_else(|| panic!("{v}"));
            assert_eq!(f.to_config_string(), v);
        }
        assert_eq!(FirstImport::parse("since:2026-01-02"), Some(FirstImport::Since(1_767_312_000)));
        for bad in
            ["since:2026-02-29", "since:2026-13-01", "since:26-01-01", "since:", "newest:-1", "newest:x", "now", ""]
        {
            assert_eq!(FirstImport::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_good_file_validates() {
        let c = parse_str(GOOD).unwrap();
        let a = &c.accounts[0];
        assert_eq!(a.pop.port, 995);
        assert_eq!(a.pop.delete, DeletePolicy::AfterDays(7));
        assert_eq!(c.local.imap.unwrap().port(), 1143);
    }

    #[test]
    fn errors_name_file_and_key() {
        let e = parse_str(&GOOD.replace("delete = \"after-days:7\"", "delete = \"sometimes\"")).unwrap_err();
        assert!(e.message.contains("/tmp/c.toml"), "{}", e.message);
        assert!(e.message.contains("pop.delete"), "{}", e.message);
        let e = parse_str(&GOOD.replace("host =", "hots =")).unwrap_err();
        assert!(e.message.contains("hots"), "{}", e.message);
        let e = parse_str(&GOOD.replace("[local]", "[local]\nimap = \"0.0.0.0:143\"")).unwrap_err();
        assert!(e.message.contains("loopback"), "{}", e.message);
    }

    #[test]
    fn only_tls_listeners_may_leave_loopback_and_only_when_asked() {
        let e = parse_str(&GOOD.replace("[local]", "[local]\nimaps = \"0.0.0.0:1993\"")).unwrap_err();
        assert!(e.message.contains("local.imaps") && e.message.contains("allow_non_loopback"), "{}", e.message);
        let c = parse_str(&GOOD.replace("[local]", "[local]\nimaps = \"0.0.0.0:1993\"\nallow_non_loopback = true"))
            .unwrap();
        assert_eq!(c.local.imaps.unwrap().to_string(), "0.0.0.0:1993");
        for key in ["imap", "submission"] {
            let e = parse_str(
                &GOOD.replace("[local]", &format!("[local]\n{key} = \"0.0.0.0:1143\"\nallow_non_loopback = true")),
            )
            .unwrap_err();
            assert!(e.message.contains(&format!("local.{key}")) && e.message.contains("only the TLS"), "{}", e.message);
        }
    }

    #[test]
    fn plain_tls_needs_loopback_or_opt_in() {
        let e = parse_str(&GOOD.replace("delete =", "tls = \"plain\"\ndelete =")).unwrap_err();
        assert!(e.message.contains("unencrypted"), "{}", e.message);
    }

    #[tokio::test]
    async fn inline_password_in_readable_file_is_refused() {
        let src = SecretSource::Inline(Secret::new("pw"));
        let e = resolve_secret(Path::new("/x/c.toml"), 0o644, &src, "POP").await.unwrap_err();
        assert!(e.message.contains("chmod 600 /x/c.toml"), "{}", e.message);
        assert_eq!(resolve_secret(Path::new("/x"), 0o600, &src, "POP").await.unwrap().expose(), "pw");
    }

    #[tokio::test]
    async fn password_command_runs() {
        let src = SecretSource::Command("printf 'tok en\\nsecond'".into());
        assert_eq!(resolve_secret(Path::new("/x"), 0o644, &src, "POP").await.unwrap().expose(), "tok en");
        let bad = SecretSource::Command("echo nope >&2; exit 3".into());
        let e = resolve_secret(Path::new("/x"), 0o600, &bad, "POP").await.unwrap_err();
        assert!(e.message.contains("nope"), "{}", e.message);
    }
}
