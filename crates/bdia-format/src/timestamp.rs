//! The `timestamp` column: unix seconds (up to 10 digits) or ISO-8601
//! `YYYY-MM-DDTHH:MM:SS` with an optional `Z` or `±HH:MM` offset (none means
//! UTC). Milliseconds are refused, whether as a fraction or as a 13-digit
//! epoch.

/// Why a timestamp was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampError {
    /// A 13-digit (or longer) epoch, or a fractional second.
    Milliseconds,
    /// Anything else that is neither form.
    Malformed,
    /// A well-formed date that does not exist (month 13, February 30, ...).
    OutOfRange,
}

impl TimestampError {
    /// A short human explanation.
    pub fn explain(self) -> &'static str {
        match self {
            TimestampError::Milliseconds => {
                "milliseconds are not allowed; use unix seconds or YYYY-MM-DDTHH:MM:SS"
            }
            TimestampError::Malformed => {
                "expected unix seconds or YYYY-MM-DDTHH:MM:SS with an optional Z or ±HH:MM offset"
            }
            TimestampError::OutOfRange => "the date or time does not exist",
        }
    }
}

/// Parses a timestamp to unix seconds (UTC).
pub fn parse(s: &str) -> Result<i64, TimestampError> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(TimestampError::Malformed);
    }
    if b.iter().all(u8::is_ascii_digit) {
        if b.len() > 10 {
            return Err(TimestampError::Milliseconds);
        }
        return Ok(digits(b));
    }
    if b.len() > 10 && b[..10].iter().all(u8::is_ascii_digit) && b[10] == b'.' {
        return Err(TimestampError::Milliseconds);
    }
    parse_iso(b)
}

fn digits(b: &[u8]) -> i64 {
    b.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
}

fn num(b: &[u8], at: usize, len: usize) -> Result<i64, TimestampError> {
    let part = b.get(at..at + len).ok_or(TimestampError::Malformed)?;
    if part.iter().all(u8::is_ascii_digit) {
        Ok(digits(part))
    } else {
        Err(TimestampError::Malformed)
    }
}

fn expect(b: &[u8], at: usize, c: u8) -> Result<(), TimestampError> {
    if b.get(at) == Some(&c) {
        Ok(())
    } else {
        Err(TimestampError::Malformed)
    }
}

fn parse_iso(b: &[u8]) -> Result<i64, TimestampError> {
    let year = num(b, 0, 4)?;
    expect(b, 4, b'-')?;
    let month = num(b, 5, 2)?;
    expect(b, 7, b'-')?;
    let day = num(b, 8, 2)?;
    expect(b, 10, b'T')?;
    let hour = num(b, 11, 2)?;
    expect(b, 13, b':')?;
    let minute = num(b, 14, 2)?;
    expect(b, 16, b':')?;
    let second = num(b, 17, 2)?;
    let rest = &b[19.min(b.len())..];
    let offset = match rest {
        [] | [b'Z'] => 0,
        [b'.' | b',', ..] => return Err(TimestampError::Milliseconds),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hh = num(&[*h1, *h2], 0, 2)?;
            let mm = num(&[*m1, *m2], 0, 2)?;
            if hh > 23 || mm > 59 {
                return Err(TimestampError::OutOfRange);
            }
            let off = hh * 3600 + mm * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return Err(TimestampError::Malformed),
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(TimestampError::OutOfRange);
    }
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of a count of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_utc(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unix_seconds() {
        assert_eq!(parse("1506553535"), Ok(1_506_553_535));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("1506553535000"), Err(TimestampError::Milliseconds));
        assert_eq!(parse("1506553535.5"), Err(TimestampError::Milliseconds));
        assert_eq!(parse("-5"), Err(TimestampError::Malformed));
        assert_eq!(parse(""), Err(TimestampError::Malformed));
        assert_eq!(parse(" 1506553535"), Err(TimestampError::Malformed));
    }

    #[test]
    fn iso_forms() {
        assert_eq!(parse("2017-09-27T22:25:35"), Ok(1_506_551_135));
        assert_eq!(parse("2017-09-27T22:25:35Z"), Ok(1_506_551_135));
        assert_eq!(parse("2017-09-27T23:25:35+01:00"), Ok(1_506_551_135));
        assert_eq!(parse("2017-09-27T17:25:35-05:00"), Ok(1_506_551_135));
        assert_eq!(
            parse("2017-09-27T22:25:35.123Z"),
            Err(TimestampError::Milliseconds)
        );
        assert_eq!(
            parse("2017-09-27T22:25:35.123"),
            Err(TimestampError::Milliseconds)
        );
        assert_eq!(parse("2017-09-27 22:25:35"), Err(TimestampError::Malformed));
        assert_eq!(parse("2017-09-27T22:25"), Err(TimestampError::Malformed));
        assert_eq!(
            parse("2017-09-27T22:25:35+0100"),
            Err(TimestampError::Malformed)
        );
        assert_eq!(
            parse("2017-02-29T00:00:00"),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(parse("2016-02-29T00:00:00Z"), Ok(1_456_704_000));
        assert_eq!(
            parse("2017-13-01T00:00:00"),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(
            parse("2017-01-01T24:00:00"),
            Err(TimestampError::OutOfRange)
        );
    }

    proptest! {
        #[test]
        fn iso_round_trips(ts in 0i64..4_102_444_800) {
            prop_assert_eq!(parse(&format_utc(ts)), Ok(ts));
            let plain = format_utc(ts);
            prop_assert_eq!(parse(plain.trim_end_matches('Z')), Ok(ts));
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse(&s);
        }
    }
}
