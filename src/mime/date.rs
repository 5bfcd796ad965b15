//! Dates, once for popbridge: RFC 5322 `Date:` values read (with mail-parser, which knows the
//! obsolete forms) and written, and the civil-calendar arithmetic the IMAP INTERNALDATE writer
//! (`imap::fetch::write_internaldate`) and SEARCH's day comparisons share.

use super::Timestamp;

/// An RFC 5322 date (RFC 5322 §3.3, obsolete forms included: 2-digit years, named zones,
/// comments; ISO 8601 as a fallback for the odd broken mailer) as a Timestamp, if it is a real
/// calendar date not before 1970.
pub fn parse(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let d = mail_parser::DateTime::parse_rfc822(s)
        .filter(mail_parser::DateTime::is_valid)
        .or_else(|| mail_parser::DateTime::parse_rfc3339(s))?;
    if !d.is_valid() || d.year < 1970 {
        return None;
    }
    let leap = (d.year % 4 == 0 && d.year % 100 != 0) || d.year % 400 == 0;
    let mdays = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if d.day > mdays[usize::from(d.month - 1)] {
        return None;
    }
    let off = i32::from(d.tz_hour) * 60 + i32::from(d.tz_minute);
    let unix = d.to_timestamp();
    (unix >= 0).then_some(Timestamp { unix, offset_minutes: if d.tz_before_gmt { -off } else { off } })
}

/// `Tue, 01 Jul 2025 10:52:37 +0000` (RFC 5322 §3.3): a Unix time, in UTC. (mail-parser's
/// `to_rfc822` writes the day without its leading zero.)
pub fn rfc5322(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let rem = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = MONTHS[(month - 1).clamp(0, 11) as usize];
    format!("{weekday}, {day:02} {mon} {year} {:02}:{:02}:{:02} +0000", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// English month abbreviations (RFC 5322 §3.3, RFC 3501 `date-month`).
pub const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Days since 1970-01-01 → (year, month 1–12, day 1–31), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`). Exact for every day whose year fits in an i64 with room to spare (the
/// callers clamp to years 1–9999 or stay within what a `SystemTime` holds).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month 1–12, day 1–31) → days since 1970-01-01: the inverse of [`civil_from_days`]
/// (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_both_ways_against_a_day_by_day_walk() {
        // 1960..2100 day by day, as the INTERNALDATE writer's test did.
        let mut days = days_from_civil(1960, 1, 1);
        for y in 1960..2100 {
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let mdays = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
            for (mi, &n) in mdays.iter().enumerate() {
                for dd in 1..=n {
                    assert_eq!(civil_from_days(days), (y, mi as i64 + 1, dd));
                    assert_eq!(days_from_civil(y, mi as i64 + 1, dd), days);
                    days += 1;
                }
            }
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn rfc5322_dates_are_written_in_utc_with_two_digit_days() {
        assert_eq!(rfc5322(1_751_359_957), "Tue, 01 Jul 2025 08:52:37 +0000");
        assert_eq!(rfc5322(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322(951_868_799), "Tue, 29 Feb 2000 23:59:59 +0000");
        // What it writes, it reads back.
        for t in [0, 951_868_799, 1_751_359_957, 4_102_444_800] {
            assert_eq!(parse(&rfc5322(t)), Some(Timestamp { unix: t, offset_minutes: 0 }), "{t}");
        }
    }
}
