//! What a report asks for: metrics, one dimension, a date range, a limit,
//! parsed from the strings of a query and checked name by name.
//!
//! Nothing here builds SQL: a parsed [`Metric`] or [`Dimension`] is a closed
//! set of values, and only those reach the query builder.

use std::fmt;

use jiff::civil::Date;

use crate::error::ReportError;

/// The longest date range a report covers, in days (both ends included).
pub const MAX_DAYS: i64 = 731;
/// The most metrics one report may ask for.
pub const MAX_METRICS: usize = 20;
/// The largest `limit`.
pub const MAX_LIMIT: usize = 10_000;
/// The `limit` of a report by a non-time dimension when none is given.
pub const DEFAULT_LIMIT: usize = 100;
/// The longest event name accepted in `events:<name>`.
pub const MAX_EVENT_NAME: usize = 100;

/// Highest eVar number.
pub const MAX_EVAR: u16 = 250;
/// Highest prop number.
pub const MAX_PROP: u16 = 75;

/// One metric of a report.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Hits of type `page_view`.
    PageViews,
    /// Visits: by the day (hour) of their first hit for the `day` and `hour`
    /// dimensions; distinct visits with a hit in the row otherwise.
    Visits,
    /// Distinct (`visitor_id_type`, `visitor_id`) in the row.
    Visitors,
    /// Hits that are link hits (download, exit, custom).
    LinkHits,
    /// All hits.
    Hits,
    /// Visits with one hit, counted on the row of that hit.
    Bounces,
    /// Visits whose first hit is in the row.
    Entries,
    /// `bounces / entries` (0 without entries).
    BounceRate,
    /// Seconds from each hit to the next hit of its visit, summed over the
    /// row's hits (a visit's last hit has none).
    TotalSecondsSpent,
    /// `total_seconds_spent / (visits - bounces)` (0 when no visit of the
    /// row had a second hit).
    TimeSpentPerVisit,
    /// An event: each occurrence that counts (a serialized event once per
    /// ID) counts its value, or 1 without one.
    Event(String),
    /// The revenue of counted purchases (the products' prices).
    Revenue,
    /// Counted purchases (a repeated purchase ID is not counted again).
    Orders,
    /// The units of counted purchases (the products' quantities).
    Units,
    /// `orders / visits` (0 without visits).
    ConversionRate,
}

impl Metric {
    /// The name used in the query string and as the key in a row.
    pub fn name(&self) -> String {
        match self {
            Metric::PageViews => "pageviews".into(),
            Metric::Visits => "visits".into(),
            Metric::Visitors => "visitors".into(),
            Metric::LinkHits => "link_hits".into(),
            Metric::Hits => "hits".into(),
            Metric::Bounces => "bounces".into(),
            Metric::Entries => "entries".into(),
            Metric::BounceRate => "bounce_rate".into(),
            Metric::TotalSecondsSpent => "total_seconds_spent".into(),
            Metric::TimeSpentPerVisit => "time_spent_per_visit".into(),
            Metric::Event(name) => format!("events:{name}"),
            Metric::Revenue => "revenue".into(),
            Metric::Orders => "orders".into(),
            Metric::Units => "units".into(),
            Metric::ConversionRate => "conversion_rate".into(),
        }
    }

    /// Parses one metric name.
    pub fn parse(s: &str) -> Result<Metric, ReportError> {
        let s = s.trim();
        Ok(match s {
            "pageviews" => Metric::PageViews,
            "visits" => Metric::Visits,
            "visitors" => Metric::Visitors,
            "link_hits" => Metric::LinkHits,
            "hits" => Metric::Hits,
            "bounces" => Metric::Bounces,
            "entries" => Metric::Entries,
            "bounce_rate" => Metric::BounceRate,
            "total_seconds_spent" => Metric::TotalSecondsSpent,
            "time_spent_per_visit" => Metric::TimeSpentPerVisit,
            "revenue" => Metric::Revenue,
            "orders" => Metric::Orders,
            "units" => Metric::Units,
            "conversion_rate" => Metric::ConversionRate,
            _ => match s.strip_prefix("events:") {
                Some(name) => Metric::Event(check_event_name(name)?.to_string()),
                None => {
                    return Err(ReportError::invalid(
                        "invalid_metric",
                        format!(
                            "Unknown metric '{}': expected pageviews, visits, visitors, link_hits, hits, bounces, entries, bounce_rate, total_seconds_spent, time_spent_per_visit, revenue, orders, units, conversion_rate or events:<name>",
                            shown(s)
                        ),
                    ))
                }
            },
        })
    }

    /// Whether the rows' values add up to the total (false for distinct
    /// counts and ratios).
    pub(crate) fn additive(&self, dimension: &Dimension) -> bool {
        match self {
            Metric::Visitors
            | Metric::BounceRate
            | Metric::TimeSpentPerVisit
            | Metric::ConversionRate => false,
            Metric::Visits => dimension.is_time(),
            _ => true,
        }
    }

    /// The metrics a ratio is computed from (empty for the others).
    pub(crate) fn parts(&self) -> &'static [Metric] {
        match self {
            Metric::BounceRate => &[Metric::Bounces, Metric::Entries],
            Metric::ConversionRate => &[Metric::Orders, Metric::Visits],
            Metric::TimeSpentPerVisit => {
                &[Metric::TotalSecondsSpent, Metric::Visits, Metric::Bounces]
            }
            _ => &[],
        }
    }
}

fn check_event_name(name: &str) -> Result<&str, ReportError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_EVENT_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(name)
    } else {
        Err(ReportError::invalid(
            "invalid_metric",
            format!(
                "Invalid event name '{}' in events:<name>: use 1 to {MAX_EVENT_NAME} letters, digits, '_', '-', '.' or ':'",
                shown(name)
            ),
        ))
    }
}

/// The dimension rows are broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// Calendar day in the suite's time zone (`YYYY-MM-DD`); every day of
    /// the range has a row, zero when it has no hits.
    Day,
    /// Hour in the suite's time zone (`YYYY-MM-DDTHH:00`).
    Hour,
    /// The page of a page view: `page_name`, or `page_url` without one;
    /// null for link hits.
    Page,
    /// `page_url`.
    PageUrl,
    /// `link_name`.
    LinkName,
    /// `download`, `exit` or `custom` for link hits; null for page views.
    LinkType,
    /// `channel`.
    Channel,
    /// `campaign`.
    Campaign,
    /// The lower-cased host of `referrer`.
    ReferrerHost,
    /// `eVarN`, 1..=250.
    Evar(u16),
    /// `propN`, 1..=75.
    Prop(u16),
    /// `customer`, `vid`, `mcid` or `ip`.
    VisitorIdType,
    /// The uploaded file a hit came from.
    FileId,
    /// Browser family from the user agent (`Chrome`, `Mobile Safari`).
    Browser,
    /// Browser family and version (`Chrome 120.0`).
    BrowserVersion,
    /// Operating system family (`Windows`, `iOS`).
    Os,
    /// `desktop`, `mobile`, `tablet` or `bot`.
    DeviceType,
    /// `typed_bookmarked`, `internal`, `search_engine`, `social`,
    /// `other_web_site`, `email` or `hard_drive`.
    ReferrerType,
    /// The search engine of a `search_engine` referrer.
    SearchEngine,
    /// The visit's first page (page name, else page URL), on every hit of
    /// the visit.
    EntryPage,
    /// The visit's last page, on every hit of the visit.
    ExitPage,
    /// A product of the hit's `products` (a hit with several products
    /// counts in each of their rows).
    Product,
    /// The category of a product of the hit's `products`.
    Category,
}

impl Dimension {
    /// Parses a dimension name (`evarN` and `propN` in any letter case).
    pub fn parse(s: &str) -> Result<Dimension, ReportError> {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        let numbered = |prefix: &str, max: u16| -> Option<u16> {
            let digits = lower.strip_prefix(prefix)?;
            if digits.is_empty() || digits.len() > 3 || digits.starts_with('0') {
                return None;
            }
            digits.parse::<u16>().ok().filter(|n| (1..=max).contains(n))
        };
        Ok(match lower.as_str() {
            "day" => Dimension::Day,
            "hour" => Dimension::Hour,
            "page" => Dimension::Page,
            "page_url" => Dimension::PageUrl,
            "link_name" => Dimension::LinkName,
            "link_type" => Dimension::LinkType,
            "channel" => Dimension::Channel,
            "campaign" => Dimension::Campaign,
            "referrer_host" => Dimension::ReferrerHost,
            "visitor_id_type" => Dimension::VisitorIdType,
            "file_id" => Dimension::FileId,
            "browser" => Dimension::Browser,
            "browser_version" => Dimension::BrowserVersion,
            "os" => Dimension::Os,
            "device_type" => Dimension::DeviceType,
            "referrer_type" => Dimension::ReferrerType,
            "search_engine" => Dimension::SearchEngine,
            "entry_page" => Dimension::EntryPage,
            "exit_page" => Dimension::ExitPage,
            "product" => Dimension::Product,
            "category" => Dimension::Category,
            _ => {
                if let Some(n) = numbered("evar", MAX_EVAR) {
                    Dimension::Evar(n)
                } else if let Some(n) = numbered("prop", MAX_PROP) {
                    Dimension::Prop(n)
                } else {
                    return Err(ReportError::invalid(
                        "invalid_dimension",
                        format!(
                            "Unknown dimension '{}': expected day, hour, page, page_url, link_name, link_type, channel, campaign, referrer_host, evar1..evar{MAX_EVAR}, prop1..prop{MAX_PROP}, visitor_id_type, file_id, browser, browser_version, os, device_type, referrer_type, search_engine, entry_page, exit_page, product or category",
                            shown(s)
                        ),
                    ));
                }
            }
        })
    }

    /// Whether rows are one per product of a hit (`product`, `category`).
    pub fn is_product(&self) -> bool {
        matches!(self, Dimension::Product | Dimension::Category)
    }

    /// Whether this is `day` or `hour`.
    pub fn is_time(&self) -> bool {
        matches!(self, Dimension::Day | Dimension::Hour)
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dimension::Day => f.write_str("day"),
            Dimension::Hour => f.write_str("hour"),
            Dimension::Page => f.write_str("page"),
            Dimension::PageUrl => f.write_str("page_url"),
            Dimension::LinkName => f.write_str("link_name"),
            Dimension::LinkType => f.write_str("link_type"),
            Dimension::Channel => f.write_str("channel"),
            Dimension::Campaign => f.write_str("campaign"),
            Dimension::ReferrerHost => f.write_str("referrer_host"),
            Dimension::Evar(n) => write!(f, "evar{n}"),
            Dimension::Prop(n) => write!(f, "prop{n}"),
            Dimension::VisitorIdType => f.write_str("visitor_id_type"),
            Dimension::FileId => f.write_str("file_id"),
            Dimension::Browser => f.write_str("browser"),
            Dimension::BrowserVersion => f.write_str("browser_version"),
            Dimension::Os => f.write_str("os"),
            Dimension::DeviceType => f.write_str("device_type"),
            Dimension::ReferrerType => f.write_str("referrer_type"),
            Dimension::SearchEngine => f.write_str("search_engine"),
            Dimension::EntryPage => f.write_str("entry_page"),
            Dimension::ExitPage => f.write_str("exit_page"),
            Dimension::Product => f.write_str("product"),
            Dimension::Category => f.write_str("category"),
        }
    }
}

/// A checked report request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRequest {
    /// The report suite.
    pub report_suite: String,
    /// Metrics, in the order asked, without duplicates.
    pub metrics: Vec<Metric>,
    /// The dimension.
    pub dimension: Dimension,
    /// First day (suite time zone), included.
    pub from: Date,
    /// Last day, included.
    pub to: Date,
    /// At most this many rows (None: every row).
    pub limit: Option<usize>,
    /// Whether hits of robots (`is_bot`) count; they are left out by default.
    pub include_bots: bool,
}

/// Shows at most 60 characters of a user's value in an error message.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if s.chars().count() > 60 {
        out.push_str("...");
    }
    out
}

fn parse_date(what: &str, s: Option<&str>) -> Result<Date, ReportError> {
    let s = s.map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| {
        ReportError::invalid(
            "invalid_date",
            format!("Missing '{what}': give a date as YYYY-MM-DD"),
        )
    })?;
    let well_formed = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    well_formed
        .then(|| s.parse::<Date>().ok())
        .flatten()
        .ok_or_else(|| {
            ReportError::invalid(
                "invalid_date",
                format!("Invalid '{what}' date '{}': expected YYYY-MM-DD", shown(s)),
            )
        })
}

impl ReportRequest {
    /// Parses the query parameters of a report: `metrics` (comma
    /// separated), `dimension` (default `day`), `from` and `to`
    /// (`YYYY-MM-DD`), `limit` (1..=10000; default 100 for non-time
    /// dimensions, every row for `day` and `hour`).
    pub fn parse(
        report_suite: &str,
        metrics: Option<&str>,
        dimension: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        limit: Option<&str>,
    ) -> Result<ReportRequest, ReportError> {
        let metrics_s = metrics
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ReportError::invalid(
                    "invalid_metric",
                    "Missing 'metrics': give one or more of pageviews, visits, visitors, link_hits, hits, bounces, entries, bounce_rate, total_seconds_spent, time_spent_per_visit, events:<name>, comma separated",
                )
            })?;
        let mut parsed = Vec::new();
        for m in metrics_s.split(',') {
            let metric = Metric::parse(m)?;
            if parsed.contains(&metric) {
                return Err(ReportError::invalid(
                    "invalid_metric",
                    format!("Metric '{}' is given twice", metric.name()),
                ));
            }
            parsed.push(metric);
        }
        if parsed.len() > MAX_METRICS {
            return Err(ReportError::invalid(
                "invalid_metric",
                format!("At most {MAX_METRICS} metrics per report"),
            ));
        }
        let dimension = match dimension.map(str::trim).filter(|s| !s.is_empty()) {
            None => Dimension::Day,
            Some(d) => Dimension::parse(d)?,
        };
        let from = parse_date("from", from)?;
        let to = parse_date("to", to)?;
        if to < from {
            return Err(ReportError::invalid(
                "invalid_range",
                format!("'to' ({to}) is before 'from' ({from})"),
            ));
        }
        let days = from
            .until(to)
            .map(|s| s.get_days() as i64)
            .unwrap_or(i64::MAX)
            + 1;
        if days > MAX_DAYS {
            return Err(ReportError::invalid(
                "invalid_range",
                format!("The range covers {days} days: at most {MAX_DAYS}"),
            ));
        }
        let limit = match limit.map(str::trim).filter(|s| !s.is_empty()) {
            None => (!dimension.is_time()).then_some(DEFAULT_LIMIT),
            Some(l) => Some(
                l.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ReportError::invalid(
                            "invalid_limit",
                            format!("Invalid limit '{}': expected 1..{MAX_LIMIT}", shown(l)),
                        )
                    })?,
            ),
        };
        Ok(ReportRequest {
            report_suite: report_suite.to_string(),
            metrics: parsed,
            dimension,
            from,
            to,
            limit,
            include_bots: false,
        })
    }

    /// Sets [`ReportRequest::include_bots`] from the `include_bots` query
    /// parameter: `true` or `false` (absent or empty: `false`).
    pub fn with_include_bots(mut self, value: Option<&str>) -> Result<ReportRequest, ReportError> {
        self.include_bots = match value.map(str::trim).filter(|s| !s.is_empty()) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ReportError::invalid(
                    "invalid_include_bots",
                    format!(
                        "Invalid include_bots '{}': expected true or false",
                        shown(other)
                    ),
                ))
            }
        };
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        metrics: Option<&str>,
        dimension: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        limit: Option<&str>,
    ) -> Result<ReportRequest, ReportError> {
        ReportRequest::parse("rs", metrics, dimension, from, to, limit)
    }

    fn code(r: Result<ReportRequest, ReportError>) -> &'static str {
        match r {
            Err(ReportError::Invalid { code, .. }) => code,
            other => panic!("expected an invalid request, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_full_request() {
        let r = parse(
            Some("pageviews, visits,visitors,events:purchase,bounces"),
            Some("eVar12"),
            Some("2026-01-01"),
            Some("2026-01-31"),
            Some("5"),
        )
        .unwrap();
        assert_eq!(r.dimension, Dimension::Evar(12));
        assert_eq!(r.dimension.to_string(), "evar12");
        assert_eq!(r.metrics.len(), 5);
        assert_eq!(r.metrics[3], Metric::Event("purchase".into()));
        assert_eq!(r.limit, Some(5));
    }

    #[test]
    fn device_and_traffic_names_and_bots() {
        let d = Some("2026-01-01");
        for name in [
            "browser",
            "browser_version",
            "os",
            "device_type",
            "referrer_type",
            "search_engine",
            "entry_page",
            "exit_page",
        ] {
            let r = parse(
                Some("bounce_rate,time_spent_per_visit"),
                Some(name),
                d,
                d,
                None,
            )
            .unwrap();
            assert_eq!(r.dimension.to_string(), name);
            assert!(!r.include_bots);
        }
        let r = parse(Some("entries,total_seconds_spent"), None, d, d, None).unwrap();
        assert_eq!(r.metrics, [Metric::Entries, Metric::TotalSecondsSpent]);
        assert!(
            r.clone()
                .with_include_bots(Some("true"))
                .unwrap()
                .include_bots
        );
        assert!(
            !r.clone()
                .with_include_bots(Some("false"))
                .unwrap()
                .include_bots
        );
        assert!(!r.clone().with_include_bots(None).unwrap().include_bots);
        assert_eq!(
            code(r.with_include_bots(Some("yes"))),
            "invalid_include_bots"
        );
    }

    #[test]
    fn defaults() {
        let r = parse(
            Some("hits"),
            None,
            Some("2026-01-01"),
            Some("2026-01-01"),
            None,
        )
        .unwrap();
        assert_eq!(r.dimension, Dimension::Day);
        assert_eq!(r.limit, None);
        let r = parse(
            Some("hits"),
            Some("page"),
            Some("2026-01-01"),
            Some("2026-01-01"),
            None,
        )
        .unwrap();
        assert_eq!(r.limit, Some(DEFAULT_LIMIT));
    }

    #[test]
    fn rejects_bad_names_and_values() {
        let d = Some("2026-01-01");
        assert_eq!(code(parse(None, None, d, d, None)), "invalid_metric");
        assert_eq!(
            code(parse(Some("pageview"), None, d, d, None)),
            "invalid_metric"
        );
        assert_eq!(
            code(parse(Some("hits,hits"), None, d, d, None)),
            "invalid_metric"
        );
        assert_eq!(
            code(parse(Some("events:"), None, d, d, None)),
            "invalid_metric"
        );
        assert_eq!(
            code(parse(Some("events:a'b"), None, d, d, None)),
            "invalid_metric"
        );
        assert_eq!(
            code(parse(Some("hits"), Some("evar0"), d, d, None)),
            "invalid_dimension"
        );
        assert_eq!(
            code(parse(Some("hits"), Some("evar251"), d, d, None)),
            "invalid_dimension"
        );
        assert_eq!(
            code(parse(Some("hits"), Some("prop76"), d, d, None)),
            "invalid_dimension"
        );
        assert_eq!(
            code(parse(Some("hits"), Some("evar01"), d, d, None)),
            "invalid_dimension"
        );
        assert_eq!(
            code(parse(Some("hits"), Some("page; drop"), d, d, None)),
            "invalid_dimension"
        );
        assert_eq!(
            code(parse(Some("hits"), None, None, d, None)),
            "invalid_date"
        );
        assert_eq!(
            code(parse(Some("hits"), None, Some("2026-1-01"), d, None)),
            "invalid_date"
        );
        assert_eq!(
            code(parse(Some("hits"), None, Some("2026-02-30"), d, None)),
            "invalid_date"
        );
        assert_eq!(
            code(parse(Some("hits"), None, Some("2026-01-02"), d, None)),
            "invalid_range"
        );
        assert_eq!(
            code(parse(Some("hits"), None, Some("2020-01-01"), d, None)),
            "invalid_range"
        );
        assert_eq!(
            code(parse(Some("hits"), None, d, d, Some("0"))),
            "invalid_limit"
        );
        assert_eq!(
            code(parse(Some("hits"), None, d, d, Some("10001"))),
            "invalid_limit"
        );
        assert_eq!(
            code(parse(Some("hits"), None, d, d, Some("x"))),
            "invalid_limit"
        );
    }
}
