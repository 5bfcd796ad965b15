//! Messages about the config file and `password_command` that never carry a secret.
//!
//! - [`syntax_error`]: a TOML error names the file, the line, the column and the key, and shows
//!   the line only when its key is one that never holds a secret (host, port, user…). A typo on a
//!   `password = "…` line, an unknown key (`pasword = "…"`) or a line the parser cannot place shows
//!   `key = <redacted>` instead, and the value is cut out of the parser's own words too (serde
//!   quotes it: "invalid type: integer `12345678`").
//! - [`command_stderr`]: what a failed `password_command` said, reduced to a short excerpt that
//!   is safe to print and to log (see its rules).

use std::ops::Range;
use std::path::Path;

use crate::error::Error;

/// Keys whose values are never secret (every key of `raw.rs` but the passwords and commands).
/// A key not listed here — a secret, a typo, a key from a newer version — is redacted.
const PLAIN_KEYS: &[&str] = &[
    "imap",
    "imaps",
    "submission",
    "submissions",
    "user",
    "allow_non_loopback",
    "name",
    "email",
    "reply_to",
    "interval",
    "save_sent",
    "max_messages_per_cycle",
    "max_bytes_per_cycle",
    "duplicates",
    "host",
    "port",
    "tls",
    "auth",
    "delete",
    "ca_file",
    "pin_sha256",
    "allow_plain",
    "max_message_size",
    "first_import",
    "timeout",
    "relay",
    "retry",
    "give_up_after",
    // [account.oauth] (client_secret and client_secret_command are secrets: not listed).
    "provider",
    "client_id",
    "authorization_url",
    "token_url",
    "device_authorization_url",
    "scopes",
    // [account.deliver] (password and password_command are secrets: not listed).
    "lmtp",
    "recipient",
    "mailbox",
];

const REDACTED: &str = "<redacted>";

/// A TOML parse or type error (toml or toml_edit: `message`, `span` into `text`) as a config
/// error: `config file F, line N, column C, key "K": what is wrong`, then the line — or, when the
/// line may hold a secret, `K = <redacted>`.
pub fn syntax_error(path: &Path, text: &str, message: &str, span: Option<Range<usize>>) -> Error {
    let message = message.trim_end();
    let Some(span) = span.filter(|s| s.start <= text.len()) else {
        // No position: the parser's words only (they quote values for type errors, so the
        // values of every line that may hold a secret are cut out).
        let mut m = message.to_string();
        for line in text.lines() {
            if let Some(v) = secret_value(line) {
                m = cut(&m, v);
            }
        }
        return Error::config(format!("config file {}: {m}", path.display()));
    };
    let line_start = text[..span.start].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = text[line_start..].find('\n').map(|i| line_start + i).unwrap_or(text.len());
    let line = text[line_start..line_end].trim_end_matches('\r');
    let line_no = text[..line_start].matches('\n').count() + 1;
    let column = text[line_start..span.start].chars().count() + 1;
    let key = line_key(line);
    let key_part = key.map(|k| format!(", key \"{k}\"")).unwrap_or_default();
    let (shown, message) = match plain_line(line) {
        Some(shown) => (shown, message.to_string()),
        None => {
            let shown = match key {
                Some(k) => format!("{k} = {REDACTED}"),
                None => REDACTED.to_string(),
            };
            let m = match value_of(line) {
                Some(v) => cut(message, v),
                None => message.to_string(),
            };
            (shown, format!("{m} (the line is not shown: it may hold a password)"))
        }
    };
    Error::config(format!(
        "config file {}, line {line_no}, column {column}{key_part}: {message}\n  {line_no:>4} | {shown}",
        path.display()
    ))
}

/// The key of a `key = value` line (or the first word of a line without `=`); `None` for table
/// headers, comments and blank lines.
fn line_key(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if t.is_empty() || t.starts_with('[') || t.starts_with('#') {
        return None;
    }
    let k = match t.find('=') {
        Some(i) => t[..i].trim(),
        None => t.split_whitespace().next().unwrap_or(""),
    };
    // A key is short and has no quotes or spaces that a value would have; anything else is shown
    // as no key at all.
    let ok = !k.is_empty() && k.len() <= 64 && k.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    ok.then_some(k)
}

/// The line as it may be shown, if nothing on it can be a secret: a table header, or a key from
/// [`PLAIN_KEYS`] with its value (a trailing comment dropped: it may say anything).
fn plain_line(line: &str) -> Option<String> {
    let t = line.trim();
    if t.starts_with('[') {
        let close = t.rfind(']')?;
        let rest = t[close + 1..].trim();
        let clean = !t[..close].contains(['=', '"', '\'', '#']) && (rest.is_empty() || rest.starts_with('#'));
        return clean.then(|| t[..=close].to_string());
    }
    let key = line_key(line)?;
    let last = key.rsplit('.').next().unwrap_or(key);
    if !t.contains('=') || !PLAIN_KEYS.iter().any(|k| k.eq_ignore_ascii_case(last)) {
        return None;
    }
    Some(without_comment(t).trim_end().to_string())
}

/// The text of a line up to an unquoted `#`.
fn without_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some('"'), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(q), c) if c == q && !escaped => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => return &line[..i],
            _ => {}
        }
        escaped = false;
    }
    line
}

/// What follows `=` on a line, trimmed; `None` when there is nothing.
fn value_of(line: &str) -> Option<&str> {
    let v = line.split_once('=').map(|(_, v)| v).unwrap_or(line).trim();
    (!v.is_empty()).then_some(v)
}

/// The value of a line that may hold a secret.
fn secret_value(line: &str) -> Option<&str> {
    if plain_line(line).is_some() { None } else { value_of(line) }
}

/// `message` with `value` (as written, and without its quotes) cut out.
fn cut(message: &str, value: &str) -> String {
    let mut m = message.replace(value, REDACTED);
    let inner = value.trim_matches(|c| c == '"' || c == '\'');
    if !inner.is_empty() {
        m = m.replace(inner, REDACTED);
    }
    m
}

/// At most this many characters of a `password_command`'s error output are shown.
pub const STDERR_EXCERPT_CHARS: usize = 120;

/// Words after which the next word is taken for a secret.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pw",
    "pwd",
    "pin",
    "secret",
    "token",
    "key",
    "apikey",
    "api-key",
    "api_key",
    "credential",
    "credentials",
    "auth",
    "authorization",
    "bearer",
    "basic",
];

/// The part of a failed `password_command`'s error output that may be shown and logged: `None`
/// when nothing is left.
///
/// The command's job is to print a secret, and what it prints on failure may hold it (a script
/// that echoes what it tried, `set -x` traces, a URL with credentials). So:
/// - escape sequences and control characters are dropped;
/// - lines that are shell traces (`+ …`, from `set -x`: they show commands and variable values)
///   are dropped, and of the rest only the last line is kept (where the error usually is);
/// - words that look like secrets are replaced with `<redacted>`: the word after "password",
///   "token", "secret" and the like (unless it is a plain lower-case word: "password store"),
///   the value of `key=value`/`key:value` when the key is such a word, the credentials in a URL,
///   and any word of 6 or more characters that mixes letters with digits or has three kinds of
///   characters (lower, upper, digits, symbols), or of 24 or more characters;
/// - the result is cut to [`STDERR_EXCERPT_CHARS`] characters.
///
/// Stdout is never shown: it is where the secret goes.
pub fn command_stderr(stderr: &[u8]) -> Option<String> {
    let text = strip_controls(&String::from_utf8_lossy(stderr));
    let line = text.lines().map(str::trim).rev().find(|l| !l.is_empty() && !l.starts_with('+'))?;
    let mut out: Vec<String> = Vec::new();
    let mut next = Next::Word;
    for word in line.split_whitespace() {
        let (w, n) = redact_word(word, next);
        next = n;
        if w == REDACTED && out.last().is_some_and(|l| l == REDACTED) {
            continue;
        }
        out.push(w);
    }
    let joined = out.join(" ");
    let mut excerpt: String = joined.chars().take(STDERR_EXCERPT_CHARS).collect();
    if excerpt.len() < joined.len() {
        excerpt.push('…');
    }
    Some(excerpt)
}

/// Drops ANSI escape sequences and control characters; CR and TAB become a line end and a space.
fn strip_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ parameters… final byte (@ to ~); other escapes: ESC + one character.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\n' | '\r' => out.push('\n'),
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// What the word before says about the next one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Nothing: a word like any other.
    Word,
    /// It followed "password", "token"…: a secret unless it is a plain word ("password store").
    Maybe,
    /// It followed "password:" or "token=": a secret.
    Secret,
}

/// One word of the excerpt, redacted if it may be a secret; and what it says about the next one.
fn redact_word(word: &str, next: Next) -> (String, Next) {
    let core = word.trim_matches(|c: char| "\"'`()[]{}<>,;!?".contains(c) || c == '.');
    let bare = core.trim_end_matches([':', '=']);
    if SECRET_WORDS.contains(&bare.to_ascii_lowercase().as_str()) {
        return (word.to_string(), if bare.len() < core.len() { Next::Secret } else { Next::Maybe });
    }
    if next == Next::Secret {
        return (REDACTED.to_string(), Next::Word);
    }
    if let Some(i) = core.find("://")
        && let Some(at) = core[i + 3..].find('@')
    {
        return (word.replacen(&core[i + 3..i + 3 + at], REDACTED, 1), Next::Word);
    }
    for sep in ['=', ':'] {
        if let Some((k, v)) = core.split_once(sep)
            && !v.is_empty()
        {
            let k = k.to_ascii_lowercase();
            let k = k.trim_start_matches('-');
            if SECRET_WORDS.iter().any(|s| k == *s || k.ends_with(&format!("_{s}")) || k.ends_with(&format!("-{s}"))) {
                return (format!("{}{sep}{REDACTED}", &core[..core.len() - v.len() - 1]), Next::Word);
            }
        }
    }
    if core.is_empty() {
        return (word.to_string(), Next::Word);
    }
    let plain_word = bare.chars().all(|c| c.is_lowercase() || c == '-' || c == '\'');
    if (next == Next::Maybe && !plain_word) || looks_random(bare) {
        return (REDACTED.to_string(), Next::Word);
    }
    (word.to_string(), Next::Word)
}

/// A word that is more likely a password or a token than a word of an error message.
fn looks_random(w: &str) -> bool {
    if w.starts_with('/') || w.starts_with("~/") {
        return false; // a path: "/home/me/.password-store/work.gpg"
    }
    let n = w.chars().count();
    let lower = w.chars().any(|c| c.is_lowercase());
    let upper = w.chars().any(|c| c.is_uppercase());
    let digit = w.chars().any(|c| c.is_ascii_digit());
    let symbol = w.chars().any(|c| !c.is_alphanumeric());
    let kinds = [lower, upper, digit, symbol].iter().filter(|k| **k).count();
    n >= 24 || (n >= 6 && ((digit && (lower || upper)) || kinds >= 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        let e = crate::config::parse(text, Path::new("/cfg/config.toml"), 0o600).unwrap_err();
        e.message
    }

    const SECRET: &str = "Hunter2-Typo-Secret";

    #[test]
    fn a_parse_error_on_a_secret_line_names_file_line_and_key_but_not_the_value() {
        let head = "[local]\nuser = \"me\"\n[[account]]\nname = \"Work\"\nemail = \"me@work.example\"\n[account.pop]\nhost = \"h\"\nuser = \"u\"\n";
        for (bad, key) in [
            (format!("password = \"{SECRET}\n"), "password"),
            (format!("password = {SECRET}\n"), "password"),
            (format!("password = '{SECRET}\"\n"), "password"),
            (format!("pasword = \"{SECRET}\"\n"), "pasword"),
            (format!("password \"{SECRET}\"\n"), "password"),
            ("password = 12345678\n".to_string(), "password"),
            (format!("password_command = \"pass show {SECRET}\n"), "password_command"),
            (format!("password = \"a\"\npassword = \"{SECRET}\"\n"), "password"),
        ] {
            let m = err(&format!("{head}{bad}"));
            let secret = if bad.contains("12345678") { "12345678" } else { SECRET };
            assert!(!m.contains(secret), "{bad:?} shows the secret: {m}");
            assert!(m.contains("/cfg/config.toml") && m.contains(&format!("key \"{key}\"")), "{bad:?}: {m}");
            assert!(m.contains(", line 9") || m.contains(", line 10"), "{bad:?}: {m}");
            assert!(m.contains("<redacted>"), "{m}");
        }
    }

    #[test]
    fn a_parse_error_on_an_oauth_secret_line_hides_it() {
        let head = "[[account]]\nname = \"W\"\nemail = \"me@w.example\"\n[account.pop]\nhost = \"h\"\nuser = \"u\"\nauth = \"oauth2\"\n[account.oauth]\nprovider = \"google\"\n";
        for bad in [format!("client_secret = \"{SECRET}\n"), format!("client_secret_command = \"echo {SECRET}\n")] {
            let m = err(&format!("{head}{bad}"));
            assert!(!m.contains(SECRET) && m.contains("<redacted>"), "{bad:?}: {m}");
        }
        let m = err(&format!("{head}client_id = 5\n"));
        assert!(m.contains("client_id = 5"), "{m}");
    }

    #[test]
    fn a_parse_error_on_a_plain_line_shows_it() {
        let m = err("[[account]]\nname = 5\n");
        assert!(m.contains("line 2") && m.contains("name = 5"), "{m}");
        let m = err("[local]\nuser = \"me  # an unterminated string\n");
        assert!(m.contains("key \"user\""), "{m}");
        // A comment on a plain line is not shown: people write anything there.
        let m = err("[local]\nimap = 1143 # old password Hunter2\n");
        assert!(m.contains("imap = 1143") && !m.contains("Hunter2"), "{m}");
    }

    #[test]
    fn the_excerpt_keeps_the_error_and_drops_what_looks_secret() {
        let ex = |s: &str| command_stderr(s.as_bytes());
        assert_eq!(
            ex("Error: work is not in the password store.\n").as_deref(),
            Some("Error: work is not in the password store.")
        );
        assert_eq!(
            ex("gpg: encrypted with rsa4096 key\ngpg: decryption failed: No secret key\n").as_deref(),
            Some("gpg: decryption failed: No secret key")
        );
        assert_eq!(ex("").as_deref(), None);
        for (stderr, secret) in [
            ("+ pw=Vault-Pw-2c9e51\n+ false\n", "Vault-Pw-2c9e51"),
            ("+ pw=Vault-Pw-2c9e51\nvault: token Vault-Pw-2c9e51 expired\n+ exit 3\n", "Vault-Pw-2c9e51"),
            ("login failed: password: hunter22\n", "hunter22"),
            ("password: hunter\n", "hunter"),
            ("the passphrase Correct-Horse is wrong", "Correct-Horse"),
            ("rejected token=abcdefXYZ", "abcdefXYZ"),
            ("--password=s3cr3t-value rejected", "s3cr3t-value"),
            ("curl: (22) https://me:Pa55word@vault.example/v1 returned 403", "Pa55word"),
            ("\u{1b}[31mwrong passphrase for S3cretPass9\u{1b}[0m", "S3cretPass9"),
            ("secret=correcthorsebatterystaple", "correcthorsebatterystaple"),
            ("no match for aB3xY9zQ", "aB3xY9zQ"),
        ] {
            let got = ex(stderr).unwrap_or_default();
            assert!(!got.contains(secret), "{stderr:?} → {got:?}");
        }
        let long = format!("error: {}\n", "word ".repeat(100));
        let got = ex(&long).unwrap();
        assert!(got.chars().count() <= STDERR_EXCERPT_CHARS + 1 && got.ends_with('…'), "{got}");
    }
}
