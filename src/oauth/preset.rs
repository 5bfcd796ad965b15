//! The providers popbridge knows, and the endpoints an account's `[account.oauth]` resolves to.
//!
//! Sources: Microsoft identity platform, "Authenticate an IMAP, POP or SMTP connection using
//! OAuth" (learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth):
//! the v2.0 endpoints of the `common` tenant (personal and work accounts), the scopes
//! `https://outlook.office.com/POP.AccessAsUser.All` and `https://outlook.office.com/SMTP.Send`, and
//! `offline_access` for a refresh token. Google, "OAuth 2.0 for Mobile & Desktop Apps" and "OAuth
//! 2.0 for TV and Limited-Input Device Applications" (developers.google.com/identity/protocols/oauth2):
//! the v2 authorization endpoint, `oauth2.googleapis.com/token` and `/device/code`, and the one
//! scope for IMAP, POP and SMTP, `https://mail.google.com/` (Google returns a refresh token to
//! installed apps without an extra scope). No client ID is built in: each user registers their own.

use crate::config::{OAuthProvider, OAuthSettings};

/// Where to sign in and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The authorization endpoint (browser sign-in, RFC 6749 §3.1); `None`: only the device flow.
    pub authorization_url: Option<String>,
    pub token_url: String,
    /// RFC 8628's device authorization endpoint; `None`: only the browser flow.
    pub device_authorization_url: Option<String>,
    pub scopes: Vec<String>,
}

pub const MICROSOFT_AUTHORIZE: &str = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize";
pub const MICROSOFT_TOKEN: &str = "https://login.microsoftonline.com/common/oauth2/v2.0/token";
pub const MICROSOFT_DEVICE: &str = "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode";
pub const MICROSOFT_SCOPES: &[&str] =
    &["https://outlook.office.com/POP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send", "offline_access"];

pub const GOOGLE_AUTHORIZE: &str = "https://accounts.google.com/o/oauth2/v2/auth";
pub const GOOGLE_TOKEN: &str = "https://oauth2.googleapis.com/token";
pub const GOOGLE_DEVICE: &str = "https://oauth2.googleapis.com/device/code";
pub const GOOGLE_SCOPES: &[&str] = &["https://mail.google.com/"];

/// The preset's endpoints with the account's own settings on top (a Microsoft tenant's own
/// endpoints, say). For `custom`, config validation made sure the required ones are there.
pub fn endpoints(s: &OAuthSettings) -> Endpoints {
    let (auth, token, device, scopes): (&str, &str, &str, &[&str]) = match s.provider {
        OAuthProvider::Microsoft => (MICROSOFT_AUTHORIZE, MICROSOFT_TOKEN, MICROSOFT_DEVICE, MICROSOFT_SCOPES),
        OAuthProvider::Google => (GOOGLE_AUTHORIZE, GOOGLE_TOKEN, GOOGLE_DEVICE, GOOGLE_SCOPES),
        OAuthProvider::Custom => ("", "", "", &[]),
    };
    let or =
        |own: &Option<String>, preset: &str| own.clone().or_else(|| (!preset.is_empty()).then(|| preset.to_string()));
    Endpoints {
        authorization_url: or(&s.authorization_url, auth),
        token_url: or(&s.token_url, token).unwrap_or_default(),
        device_authorization_url: or(&s.device_authorization_url, device),
        scopes: s.scopes.clone().unwrap_or_else(|| scopes.iter().map(|x| x.to_string()).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(provider: OAuthProvider) -> OAuthSettings {
        OAuthSettings {
            provider,
            client_id: "id".into(),
            client_secret: None,
            authorization_url: None,
            token_url: None,
            device_authorization_url: None,
            scopes: None,
        }
    }

    #[test]
    fn presets_fill_in_and_own_settings_win() {
        let m = endpoints(&settings(OAuthProvider::Microsoft));
        assert_eq!(m.token_url, "https://login.microsoftonline.com/common/oauth2/v2.0/token");
        assert!(m.scopes.iter().any(|s| s == "offline_access"), "a refresh token needs offline_access");
        assert!(
            m.scopes.iter().any(|s| s.ends_with("/SMTP.Send"))
                && m.scopes.iter().any(|s| s.ends_with("/POP.AccessAsUser.All"))
        );
        let g = endpoints(&settings(OAuthProvider::Google));
        assert_eq!(g.scopes, ["https://mail.google.com/"]);
        assert_eq!(g.device_authorization_url.as_deref(), Some("https://oauth2.googleapis.com/device/code"));
        let mut tenant = settings(OAuthProvider::Microsoft);
        tenant.token_url = Some("https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token".into());
        assert!(endpoints(&tenant).token_url.contains("contoso"));
        let mut c = settings(OAuthProvider::Custom);
        c.token_url = Some("http://127.0.0.1:9/token".into());
        c.device_authorization_url = Some("http://127.0.0.1:9/device".into());
        c.scopes = Some(vec!["mail".into()]);
        let e = endpoints(&c);
        assert_eq!(
            (e.authorization_url, e.token_url.as_str(), e.scopes),
            (None, "http://127.0.0.1:9/token", vec!["mail".to_string()])
        );
    }
}
