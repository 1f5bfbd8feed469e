//! Which partition a hit lands in: its report suite and its day in that
//! suite's time zone.

use std::collections::HashMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::error::LakeError;

/// The time zone of each report suite (IANA names, bundled tz database);
/// suites not listed use the default (UTC unless set).
#[derive(Debug, Clone)]
pub struct SuiteZones {
    default: TimeZone,
    suites: HashMap<String, TimeZone>,
}

impl Default for SuiteZones {
    fn default() -> Self {
        SuiteZones {
            default: TimeZone::UTC,
            suites: HashMap::new(),
        }
    }
}

impl SuiteZones {
    /// Every suite in UTC.
    pub fn utc() -> SuiteZones {
        SuiteZones::default()
    }

    /// Sets the zone of suites not listed.
    pub fn with_default(mut self, iana: &str) -> Result<SuiteZones, LakeError> {
        self.default = zone(iana)?;
        Ok(self)
    }

    /// Sets one suite's zone, e.g. `America/New_York`.
    pub fn insert(&mut self, report_suite: &str, iana: &str) -> Result<(), LakeError> {
        self.suites.insert(report_suite.to_string(), zone(iana)?);
        Ok(())
    }

    /// The zone of a suite.
    pub fn zone(&self, report_suite: &str) -> &TimeZone {
        self.suites.get(report_suite).unwrap_or(&self.default)
    }
}

fn zone(iana: &str) -> Result<TimeZone, LakeError> {
    TimeZone::get(iana).map_err(|e| LakeError::TimeZone {
        name: iana.to_string(),
        reason: e.to_string(),
    })
}

/// The calendar day of `unix_seconds` in `tz`.
pub fn local_date(tz: &TimeZone, unix_seconds: i64) -> Result<Date, LakeError> {
    let ts = Timestamp::from_second(unix_seconds).map_err(|e| LakeError::Time {
        seconds: unix_seconds,
        reason: e.to_string(),
    })?;
    Ok(tz.to_datetime(ts).date())
}

/// Caches the UTC bounds of the last day seen per suite: files are mostly in
/// time order, so most hits need no time zone arithmetic. A file names a
/// handful of suites: a list searched in order beats hashing the name per hit.
#[derive(Debug, Default)]
pub(crate) struct DayCache {
    /// (suite, start, end, day).
    last: Vec<(String, i64, i64, Date)>,
}

impl DayCache {
    /// The partition day of a hit.
    pub(crate) fn day(
        &mut self,
        zones: &SuiteZones,
        report_suite: &str,
        unix_seconds: i64,
    ) -> Result<Date, LakeError> {
        let i = match self.last.iter().position(|e| e.0 == report_suite) {
            Some(i) => i,
            None => {
                self.last
                    .push((report_suite.to_string(), 0, 0, Date::default()));
                self.last.len() - 1
            }
        };
        let entry = &mut self.last[i];
        if !(entry.1..entry.2).contains(&unix_seconds) {
            let tz = zones.zone(report_suite);
            let date = local_date(tz, unix_seconds)?;
            let (start, end) = match day_bounds(tz, date) {
                Some((start, end)) if (start..end).contains(&unix_seconds) => (start, end),
                // Bounds not computable: cache this second only.
                _ => (unix_seconds, unix_seconds + 1),
            };
            entry.1 = start;
            entry.2 = end;
            entry.3 = date;
        }
        Ok(entry.3)
    }
}

/// `[start, end)` in unix seconds of a civil day in a zone.
fn day_bounds(tz: &TimeZone, date: Date) -> Option<(i64, i64)> {
    let start = date
        .to_zoned_datetime(tz.clone())
        .ok()?
        .start_of_day()
        .ok()?;
    let end = date
        .tomorrow()
        .ok()?
        .to_zoned_datetime(tz.clone())
        .ok()?
        .start_of_day()
        .ok()?;
    Some((start.timestamp().as_second(), end.timestamp().as_second()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_follow_the_suite_time_zone() {
        let mut zones = SuiteZones::utc();
        zones.insert("ny", "America/New_York").unwrap();
        zones.insert("tokyo", "Asia/Tokyo").unwrap();
        let mut cache = DayCache::default();
        // 2024-03-10T03:30:00Z: still March 9th in New York, 10th in UTC/Tokyo.
        let t = 1_710_041_400;
        assert_eq!(
            cache.day(&zones, "utc", t).unwrap().to_string(),
            "2024-03-10"
        );
        assert_eq!(
            cache.day(&zones, "ny", t).unwrap().to_string(),
            "2024-03-09"
        );
        assert_eq!(
            cache.day(&zones, "tokyo", t).unwrap().to_string(),
            "2024-03-10"
        );
        // 2024-03-10T15:30:00Z is 24:30 in Tokyo: the 11th.
        assert_eq!(
            cache
                .day(&zones, "tokyo", t + 12 * 3600)
                .unwrap()
                .to_string(),
            "2024-03-11"
        );
        // The New York DST day (23 hours long) ends at 04:00Z on the 11th.
        assert_eq!(
            cache.day(&zones, "ny", 1_710_129_599).unwrap().to_string(),
            "2024-03-10"
        );
        assert_eq!(
            cache.day(&zones, "ny", 1_710_129_600).unwrap().to_string(),
            "2024-03-11"
        );
        // Going back in time is answered from scratch, not from the cache.
        assert_eq!(
            cache.day(&zones, "ny", t).unwrap().to_string(),
            "2024-03-09"
        );
    }

    #[test]
    fn the_cache_agrees_with_direct_conversion() {
        let mut zones = SuiteZones::utc();
        zones.insert("s", "Australia/Lord_Howe").unwrap(); // 30-minute DST shifts
        let tz = zones.zone("s").clone();
        let mut cache = DayCache::default();
        let mut t = 1_696_000_000; // around the October 2023 DST change
        while t < 1_697_000_000 {
            let direct = local_date(&tz, t).unwrap();
            assert_eq!(cache.day(&zones, "s", t).unwrap(), direct, "at {t}");
            t += 599;
        }
    }

    #[test]
    fn unknown_zones_are_refused() {
        let mut zones = SuiteZones::utc();
        assert!(matches!(
            zones.insert("s", "Mars/Olympus_Mons"),
            Err(LakeError::TimeZone { .. })
        ));
    }
}
