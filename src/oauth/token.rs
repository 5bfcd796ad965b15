//! The token file: one JSON file per account, `$DATA_DIR/oauth/<account name>.json`, mode 0600 in
//! a 0700 directory, replaced atomically (temp file, fsync, rename, directory fsync): after a crash
//! it holds either the old tokens or the new ones, never a mix or nothing. A rotated refresh token
//! is written before the access token that came with it is used (`super::access_token`), so a
//! `kill -9` after a refresh cannot leave popbridge holding a refresh token the provider retired.
//!
//! Fields: `access_token`, `refresh_token` (absent when the provider gave none), `expires_at` and
//! `obtained_at` (unix seconds; `expires_at` absent when the provider did not say), `scopes` (as
//! granted), `token_type`. `Debug` shows none of the tokens.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorClass, Result};
use crate::files;
use crate::secret::Secret;

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    pub obtained_at: i64,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default = "bearer")]
    pub token_type: String,
}

fn bearer() -> String {
    "Bearer".into()
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "<redacted>"))
            .field("expires_at", &self.expires_at)
            .field("obtained_at", &self.obtained_at)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Refresh this long before the access token expires, at most: a login may take a while after
/// the token is handed out (connect, TLS, CAPA), clocks drift, and a token refused at login costs
/// a failed session. Five minutes is what Microsoft's and Google's client libraries use
/// (MSAL refreshes 5 minutes ahead; google-auth's clock skew allowance is 3-5 minutes).
pub const REFRESH_MARGIN: i64 = 300;

impl Tokens {
    pub fn access(&self) -> Secret {
        Secret::new(self.access_token.clone())
    }

    /// Whether the access token should be refreshed before it is used at `now`: within
    /// [`REFRESH_MARGIN`] of its expiry — or, for tokens that live shorter than twice that, in the
    /// second half of their life (a 10-minute token is not refreshed on every use). A token
    /// without an expiry is used until a server refuses it.
    pub fn needs_refresh(&self, now: i64) -> bool {
        match self.expires_at {
            None => false,
            Some(exp) => {
                let lifetime = (exp - self.obtained_at).max(0);
                let margin = REFRESH_MARGIN.min(lifetime / 2);
                now >= exp - margin
            }
        }
    }
}

/// The account's token file in `oauth_dir`. Account names cannot hold `/` (config validation).
pub fn path(oauth_dir: &Path, account: &str) -> PathBuf {
    oauth_dir.join(format!("{account}.json"))
}

/// Reads the tokens; `Ok(None)` when the account has not signed in yet. A file others can read
/// is refused (with the `chmod` that fixes it), like the store.
pub fn load(path: &Path) -> Result<Option<Tokens>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::other(format!("cannot read the token file {}: {e}", path.display()))),
    };
    files::check_private(path)?;
    // Never serde's message: it may quote the file's text, which holds the tokens.
    let t: Tokens = serde_json::from_slice(&text).map_err(|e| {
        Error::new(
            ErrorClass::Authentication,
            format!(
                "the token file {} is damaged (line {}, column {}): sign in again to replace it",
                path.display(),
                e.line(),
                e.column()
            ),
        )
    })?;
    Ok(Some(t))
}

/// Replaces the tokens atomically (see the module docs), creating the 0700 directory if needed.
pub fn save(path: &Path, t: &Tokens) -> Result<()> {
    if let Some(d) = path.parent() {
        files::create_private_dir(d)?;
        files::check_private(d)?;
    }
    let json = serde_json::to_vec_pretty(t).map_err(|e| Error::other(format!("cannot encode the tokens: {e}")))?;
    files::replace_private(path, &json, ErrorClass::Other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tokens(access: &str, refresh: Option<&str>, obtained: i64, expires: Option<i64>) -> Tokens {
        Tokens {
            access_token: access.into(),
            refresh_token: refresh.map(str::to_string),
            expires_at: expires,
            obtained_at: obtained,
            scopes: vec!["https://mail.google.com/".into()],
            token_type: "Bearer".into(),
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn saved_tokens_are_private_and_read_back() {
        let d = crate::files::private_tempdir();
        let dir = d.path().join("oauth");
        let p = path(&dir, "Work");
        assert_eq!(load(&p).unwrap(), None, "not signed in yet");
        let t = tokens("at-1", Some("rt-1"), 1000, Some(4600));
        save(&p, &t).unwrap();
        assert_eq!((mode(&dir), mode(&p)), (0o700, 0o600));
        assert_eq!(load(&p).unwrap(), Some(t.clone()));
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        for field in ["access_token", "refresh_token", "expires_at", "obtained_at", "scopes", "token_type"] {
            assert!(json.get(field).is_some(), "{field} in {json}");
        }
        // Replaced, not appended to; no temporary file left beside it.
        let t2 = tokens("at-2", Some("rt-2"), 2000, None);
        save(&p, &t2).unwrap();
        assert_eq!(load(&p).unwrap(), Some(t2));
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("Work.json")]);
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn a_replacement_never_leaves_a_partial_file() {
        // The replacement is written next to the file and renamed over it: an interrupted write
        // (here: a temporary file left by a crash) never becomes the token file.
        let d = crate::files::private_tempdir();
        let p = path(&d.path().join("oauth"), "W");
        save(&p, &tokens("old", Some("rt-old"), 1, None)).unwrap();
        std::fs::write(p.with_file_name(".W.json.1.tmp"), b"{\"access_tok").unwrap();
        assert_eq!(load(&p).unwrap().unwrap().access_token, "old");
        save(&p, &tokens("new", Some("rt-new"), 2, None)).unwrap();
        assert_eq!(load(&p).unwrap().unwrap().refresh_token.as_deref(), Some("rt-new"));
    }

    #[test]
    fn readable_or_damaged_files_are_refused_without_their_content() {
        let d = crate::files::private_tempdir();
        let p = path(&d.path().join("oauth"), "W");
        save(&p, &tokens("SecretAccess", Some("SecretRefresh"), 1, None)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(&p).unwrap_err().message.contains("chmod 600"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, b"{\"access_token\": \"SecretAccess\", \"refresh_token\": 5}").unwrap();
        let e = load(&p).unwrap_err();
        assert!(!e.message.contains("SecretAccess") && e.message.contains("sign in again"), "{}", e.message);
    }

    #[test]
    fn debug_shows_no_token() {
        let s = format!("{:?}", tokens("SecretAccess", Some("SecretRefresh"), 1, Some(2)));
        assert!(!s.contains("SecretAccess") && !s.contains("SecretRefresh"), "{s}");
    }

    #[test]
    fn refresh_ahead_of_expiry() {
        // An hour-long token (the providers' usual): refreshed in its last five minutes.
        let t = tokens("a", Some("r"), 0, Some(3600));
        assert!(!t.needs_refresh(0));
        assert!(!t.needs_refresh(3600 - REFRESH_MARGIN - 1));
        assert!(t.needs_refresh(3600 - REFRESH_MARGIN));
        assert!(t.needs_refresh(3600));
        assert!(t.needs_refresh(99_999), "expired long ago");
        // A short-lived one: in the second half of its life, not on every use.
        let short = tokens("a", Some("r"), 100, Some(120));
        assert!(!short.needs_refresh(105));
        assert!(short.needs_refresh(110));
        // No expiry given: used until refused.
        assert!(!tokens("a", Some("r"), 0, None).needs_refresh(1 << 40));
    }
}
