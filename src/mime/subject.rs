//! The base subject of RFC 5256 §2.1, the one definition SORT SUBJECT, THREAD=ORDEREDSUBJECT and
//! the subject-merging steps of THREAD=REFERENCES use (computed once at insert, `store::sortkeys`).
//!
//! The steps, as numbered in the RFC:
//! 1. RFC 2047 encoded-words decoded to UTF-8, tabs and line breaks become spaces, runs of spaces
//!    become one;
//! 2. trailers removed, repeatedly: `(fwd)` and whitespace (`subj-trailer`);
//! 3. leaders removed: whitespace, and `*subj-blob subj-refwd` — optional `[blob]`s followed by
//!    `re`, `fw` or `fwd`, optional whitespace, an optional `[blob]`, and a colon (`Re:`,
//!    `Re[2]:`, `[list] Fwd:`);
//! 4. a leading `[blob]` removed when something is left after it;
//! 5. 3 and 4 repeated until nothing changes;
//! 6. `[fwd: … ]` around the whole rest removed, and back to 2;
//! 7. what is left is the base subject.
//!
//! The keywords match ASCII case-insensitively (`RE:`, `fWd:`). "The subject is a reply or a
//! forward" (§2.2 step 5, used to choose the parent when subjects merge) when any of `Re:`/`Fwd:`
//! leaders, a `(fwd)` trailer or a `[fwd: …]` wrapper was removed. Comparisons then use
//! [`sort_form`] (i;ascii-casemap, folding non-ASCII case too).

/// The base subject of a `Subject:` field value (raw bytes, folded or not, encoded-words as
/// written) and whether it was a reply or forward.
pub fn base_subject_raw(value: &[u8]) -> (String, bool) {
    base_subject(&super::header::decoded(value))
}

/// The base subject of an already decoded subject (step 1's decoding done by the caller), and
/// whether the subject was a reply or forward.
pub fn base_subject(decoded: &str) -> (String, bool) {
    // Step 1: whitespace (SP, TAB, CR, LF) runs become one space.
    let mut s = String::with_capacity(decoded.len());
    let mut space = false;
    for c in decoded.chars() {
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            space = true;
        } else {
            if space && !s.is_empty() {
                s.push(' ');
            }
            space = false;
            s.push(c);
        }
    }
    let mut reply = false;
    let mut rest: &str = &s;
    loop {
        // Step 2: trailers.
        loop {
            let t = rest.trim_end_matches(' ');
            if t.len() >= 5 && t.is_char_boundary(t.len() - 5) && t[t.len() - 5..].eq_ignore_ascii_case("(fwd)") {
                rest = &t[..t.len() - 5];
                reply = true;
            } else {
                rest = t;
                break;
            }
        }
        // Steps 3–5: leaders and blobs.
        loop {
            let before = rest.len();
            rest = rest.trim_start_matches(' ');
            if let Some(after) = refwd_leader(rest) {
                rest = after;
                reply = true;
            }
            if let Some(after) = blob(rest)
                && !after.trim_start_matches(' ').is_empty()
            {
                rest = after;
            }
            if rest.len() == before {
                break;
            }
        }
        // Step 6: `[fwd: …]`.
        if rest.len() >= 6 && rest.is_char_boundary(5) && rest[..5].eq_ignore_ascii_case("[fwd:") && rest.ends_with(']')
        {
            rest = &rest[5..rest.len() - 1];
            reply = true;
            continue;
        }
        break;
    }
    (rest.to_owned(), reply)
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP` at the start of `s`: what follows it.
fn blob(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find([']', '['])?;
    if inner.as_bytes()[end] != b']' {
        return None;
    }
    Some(inner[end + 1..].trim_start_matches(' '))
}

/// `*subj-blob subj-refwd` at the start of `s` (`subj-refwd = ("re" / ("fw" ["d"])) *WSP
/// [subj-blob] ":"`): what follows it.
fn refwd_leader(s: &str) -> Option<&str> {
    let mut rest = s;
    // Blobs before the keyword belong to the leader only if a keyword follows them.
    while let Some(after) = blob(rest) {
        rest = after;
    }
    let b = rest.as_bytes();
    let n = if b.len() >= 3 && b[..3].eq_ignore_ascii_case(b"fwd") {
        3
    } else if b.len() >= 2 && (b[..2].eq_ignore_ascii_case(b"fw") || b[..2].eq_ignore_ascii_case(b"re")) {
        2
    } else {
        return None;
    };
    let mut rest = rest[n..].trim_start_matches(' ');
    if let Some(after) = blob(rest) {
        rest = after;
    }
    rest.strip_prefix(':')
}

/// The form SORT compares and THREAD groups subjects by: every letter with a one-letter
/// upper-case mapping upper-cased. On ASCII that is exactly i;ascii-casemap (RFC 4790 §9.2,
/// RFC 5256's comparator); beyond ASCII it follows Dovecot, which compares with
/// i;unicode-casemap (RFC 5051), so far as to fold case — `Über` and `über` are one subject, one
/// thread — but without RFC 5051's decomposition: `É` sorts after `Z`, where Dovecot sorts it
/// with `E`. Letters whose upper case is several letters (`ß` → `SS`) are kept, as RFC 5051's
/// simple titlecase mapping keeps them.
pub fn sort_form(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> (String, bool) {
        base_subject_raw(s.as_bytes())
    }

    #[test]
    fn rfc_5256_leaders_trailers_and_blobs() {
        let cases: &[(&str, &str, bool)] = &[
            ("Re: [list] Fwd: subject (fwd)", "subject", true),
            ("Re[2]: x", "x", true),
            ("[fwd: x]", "x", true),
            ("re: Re: RE: x", "x", true),
            ("", "", false),
            ("   \t  ", "", false),
            ("x", "x", false),
            ("  Hello   world  ", "Hello world", false),
            ("Fw: x", "x", true),
            ("FWD : x", "x", true),
            ("Re : [ab] : x", ": x", true),
            ("Re [ab] : x", "x", true),
            ("Re: [ab] : x", ": x", true),
            ("Re [ab]: x", "x", true),
            ("[list] x", "x", false),
            // A blob that would leave nothing is the subject.
            ("[list]", "[list]", false),
            ("Re: [list]", "[list]", true),
            ("[a][b] Re: x", "x", true),
            ("[a] [b] c", "c", false),
            ("x (fwd) (FWD)", "x", true),
            ("(fwd)", "", true),
            ("[Fwd: Re: [list] y (fwd)]", "y", true),
            ("[fwd: x] (fwd)", "x", true),
            ("Rex: y", "Rex: y", false),
            ("Reply", "Reply", false),
            ("Re:", "", true),
            ("Re: Re:", "", true),
            ("Fwd: [fwd: Re: x]", "x", true),
            ("[unclosed x", "[unclosed x", false),
            ("[a[b] x", "[a[b] x", false),
            ("Réunion", "Réunion", false),
            ("Re: Tür (fwd)", "Tür", true),
        ];
        for (subject, base, reply) in cases {
            assert_eq!(b(subject), (base.to_string(), *reply), "{subject:?}");
        }
    }

    #[test]
    fn encoded_words_are_decoded_first_and_folding_is_one_space() {
        assert_eq!(b("=?UTF-8?Q?Re=3A_Gr=C3=BC=C3=9Fe?="), ("Grüße".into(), true));
        assert_eq!(b("Re: =?ISO-8859-1?Q?Caf=E9?= (fwd)"), ("Café".into(), true));
        assert_eq!(b("=?utf-8?B?W2xpc3RdIEZ3ZDogaGk=?="), ("hi".into(), true));
        assert_eq!(b("Re: folded\r\n\tline"), ("folded line".into(), true));
    }

    #[test]
    fn the_sort_form_folds_case_letter_by_letter() {
        assert_eq!(sort_form("Grüße aBc"), "GRÜßE ABC");
        assert_eq!(sort_form("Über"), sort_form("über"));
        assert_eq!(sort_form("[a]_z"), "[A]_Z", "non-letters stay: `_` sorts after `Z`, as in i;ascii-casemap");
    }
    #[test]
    fn any_input_gives_a_stable_base_subject() {
        let pieces =
            ["Re", "re:", "Fwd", ":", "[", "]", "(fwd)", " ", "\t", "[fwd:", "x", "é", "=?UTF-8?Q?R=C3=A9?=", "(", "F"];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..3000 {
            let mut s = String::new();
            for _ in 0..(x % 12) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push_str(pieces[(x % pieces.len() as u64) as usize]);
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (base, _) = base_subject_raw(s.as_bytes());
            // The base subject of a base subject is itself (§2.1 repeats until nothing changes),
            // and it has no leading or trailing space.
            assert_eq!(base_subject(&base).0, base, "{s:?}");
            assert_eq!(base.trim_matches(' '), base, "{s:?}");
        }
    }
}
