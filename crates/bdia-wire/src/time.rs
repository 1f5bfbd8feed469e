//! Times as a person reads them.
//!
//! The API carries times as unix seconds; tools print them as RFC 3339 in
//! UTC (`2026-11-29T20:01:06Z`).

/// `secs` (unix seconds) as RFC 3339 UTC; the number itself when it is out
/// of the representable range.
pub fn rfc3339_utc(secs: i64) -> String {
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => t.to_string(),
        Err(_) => secs.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_seconds() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_982_466), "2026-11-29T20:01:06Z");
        assert_eq!(rfc3339_utc(i64::MAX), i64::MAX.to_string());
    }
}
