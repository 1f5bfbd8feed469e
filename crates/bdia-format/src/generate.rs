//! A generator of realistic batch files, for tests and benchmarks: many
//! visitors, non-decreasing timestamps (so every visitor's rows are in time
//! order), a mix of column-style and queryString-style rows, quoted fields
//! (commas, doubled quotes, line breaks, non-ASCII), page views and link
//! hits, a spread of user agents ([`USER_AGENTS`]: desktops, phones,
//! tablets, robots) and referrers (search engines, social networks, other
//! sites, the site itself, none), commerce (purchases of one to three
//! products with per-product events and merchandising eVars, purchase IDs
//! that repeat, product views, cart adds with a serialized event whose IDs
//! repeat, a numeric event), eVars set on some hits only (so that their
//! values persist to the visitor's later hits), and a chosen rate of
//! invalid rows of chosen kinds.
//!
//! The output is deterministic for a given [`GenOptions`] (seeded RNG), and
//! the returned [`GenSummary`] says exactly which rows were made invalid, so
//! tests can hold the engine to it.

use std::collections::BTreeMap;
use std::io::{self, Write};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::error::RowErrorKind;

/// The row problems the generator can inject: every kind but
/// `report_suite_not_allowed`, which depends on the caller's company.
pub const INJECTABLE: &[RowErrorKind] = &[
    RowErrorKind::ColumnCount,
    RowErrorKind::InvalidUtf8,
    RowErrorKind::MissingVisitorId,
    RowErrorKind::NothingToReport,
    RowErrorKind::MissingReportSuite,
    RowErrorKind::InvalidReportSuite,
    RowErrorKind::MissingTimestamp,
    RowErrorKind::InvalidTimestamp,
    RowErrorKind::MissingUserAgent,
    RowErrorKind::InvalidAuthState,
    RowErrorKind::InvalidIsMcSeed,
    RowErrorKind::SeedWithoutId,
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Data rows to write.
    pub rows: u64,
    /// Size of the visitor pool.
    pub visitors: u64,
    /// RNG seed.
    pub seed: u64,
    /// Unix seconds of the first hit.
    pub start: i64,
    /// Mean seconds between consecutive rows of the file.
    pub mean_gap: u32,
    /// Report suites to spread hits over (a few rows name two at once).
    pub report_suites: Vec<String>,
    /// Fraction of rows made invalid, in `0.0..=1.0`.
    pub invalid_rate: f64,
    /// Which problems to inject (evenly); empty means all of [`INJECTABLE`].
    pub invalid_kinds: Vec<RowErrorKind>,
    /// Only rows whose visitor falls in this group (of `groups`), by visitor
    /// index; `None` keeps every visitor.
    pub group: Option<(u64, u64)>,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            rows: 1000,
            visitors: 100,
            seed: 1,
            start: 1_700_000_000,
            mean_gap: 2,
            report_suites: vec!["acme.prod".into()],
            invalid_rate: 0.0,
            invalid_kinds: Vec::new(),
            group: None,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenSummary {
    /// Data rows written.
    pub rows: u64,
    /// Invalid rows written, by kind.
    pub invalid: BTreeMap<RowErrorKind, u64>,
    /// Data row numbers (from 1) of the invalid rows, with their kind.
    pub invalid_rows: Vec<(u64, RowErrorKind)>,
}

impl GenSummary {
    /// Total invalid rows.
    pub fn invalid_total(&self) -> u64 {
        self.invalid.values().sum()
    }
}

/// The header written by [`generate`].
pub const HEADER: &[&str] = &[
    "timestamp",
    "visitorID",
    "marketingCloudVisitorID",
    "IPAddress",
    "customerID.crm.id",
    "customerID.crm.authState",
    "customerID.crm.isMCSeed",
    "reportSuiteID",
    "userAgent",
    "pageName",
    "pageURL",
    "linkType",
    "linkName",
    "linkURL",
    "referrer",
    "channel",
    "campaign",
    "events",
    "products",
    "eVar1",
    "eVar2",
    "eVar10",
    "prop1",
    "prop2",
    "contextData.app.version",
    "language",
    "queryString",
    "purchaseID",
];

/// The user agents of generated rows (one per visitor, by visitor number)
/// with the device type each is known to be: `desktop`, `mobile`,
/// `tablet` or `bot`. One row in 200 has a line break and `(continued)`
/// appended to its user agent.
pub const USER_AGENTS: &[(&str, &str)] = &[
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "desktop"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "desktop"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "mobile"),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0", "desktop"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.71 Mobile Safari/537.36", "mobile"),
    ("AcmeKiosk/2.1 (\"store display\", build 7781)", "desktop"),
    ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "tablet"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.87", "desktop"),
    ("Mozilla/5.0 (Linux; Android 13; SM-X706B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.71 Safari/537.36", "tablet"),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "bot"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1", "mobile"),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bot"),
];

/// The referrer of a generated row, by its page number `n`: `None` (typed
/// or bookmarked), another page of the site (`https://www.example.com/`,
/// the host of every page URL), two search engines with their keyword
/// parameter, two social networks, another site.
pub fn referrer(section: &str, n: u32) -> Option<String> {
    match n % 10 {
        0 => Some("https://www.google.com/search?q=acme+shoes".into()),
        1 => Some("https://www.bing.com/search?q=acme&form=QBLH".into()),
        2 => Some(format!("https://www.facebook.com/acme/posts/{n}")),
        3 => Some("https://t.co/Ab3xYz".into()),
        4 => Some(format!("https://news.example.org/story/{n}")),
        5 | 6 => Some(format!("https://www.example.com/{section}/{}", n + 1)),
        _ => None,
    }
}

const SECTIONS: &[&str] = &[
    "home", "products", "cart", "checkout", "support", "blog", "café",
];
const CATEGORIES: &[&str] = &["Shoes", "Hats", "Bags", ""];
const CHANNELS: &[&str] = &["Home", "Products", "Checkout", "Support", "Blog"];
const LANGUAGES: &[&str] = &["en-US", "de-DE", "fr-FR", "ja-JP"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Identity {
    Vid,
    Mcid,
    Ip,
    Customer,
}

fn identity_of(visitor: u64) -> Identity {
    match visitor % 10 {
        0..=5 => Identity::Vid,
        6 | 7 => Identity::Mcid,
        8 => Identity::Ip,
        _ => Identity::Customer,
    }
}

fn page_name(section: &str, n: u32) -> String {
    match n % 5 {
        0 => format!("{section}: overview"),
        1 => format!("{section} > item {n}"),
        2 => format!("{section}, \"featured\" {n}"),
        3 => format!("{section} – page {n}"),
        _ => format!("{section}/{n}"),
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Writes a plain CSV batch file to `out` (gzip it for upload).
pub fn generate<W: Write>(opts: &GenOptions, out: W) -> io::Result<GenSummary> {
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let mut w = csv::WriterBuilder::new().flexible(true).from_writer(out);
    w.write_record(HEADER)?;
    let kinds: &[RowErrorKind] = if opts.invalid_kinds.is_empty() {
        INJECTABLE
    } else {
        &opts.invalid_kinds
    };
    let suites: Vec<String> = if opts.report_suites.is_empty() {
        vec!["acme.prod".into()]
    } else {
        opts.report_suites.clone()
    };
    let mut summary = GenSummary::default();
    let mut t = opts.start;
    let visitors = opts.visitors.max(1);
    let mut row: Vec<Vec<u8>> = vec![Vec::new(); HEADER.len()];
    while summary.rows < opts.rows {
        t += i64::from(rng.gen_range(0..=opts.mean_gap.saturating_mul(2)));
        let visitor = rng.gen_range(0..visitors);
        if let Some((g, n)) = opts.group {
            if visitor % n.max(1) != g {
                continue;
            }
        }
        for f in row.iter_mut() {
            f.clear();
        }
        let set = |row: &mut Vec<Vec<u8>>, i: usize, v: &str| {
            row[i].clear();
            row[i].extend_from_slice(v.as_bytes());
        };
        // Identity.
        let vkey = visitor.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ opts.seed;
        match identity_of(visitor) {
            Identity::Vid => set(&mut row, 1, &format!("{vkey:016x}")),
            Identity::Mcid => set(
                &mut row,
                2,
                &format!("{:019}{:019}", vkey % 10u64.pow(19), visitor),
            ),
            Identity::Ip => set(
                &mut row,
                3,
                &format!(
                    "10.{}.{}.{}",
                    visitor >> 16 & 255,
                    visitor >> 8 & 255,
                    visitor & 255
                ),
            ),
            Identity::Customer => {
                set(&mut row, 4, &format!("CRM{visitor}"));
                set(
                    &mut row,
                    5,
                    ["1", "AUTHENTICATED", "2"][visitor as usize % 3],
                );
                set(&mut row, 6, if visitor % 2 == 0 { "1" } else { "true" });
            }
        }
        // Time: mostly epoch seconds, some ISO-8601 in UTC or with an offset.
        match rng.gen_range(0..10) {
            0 => set(&mut row, 0, &crate::timestamp::format_utc(t)),
            1 => {
                let local = crate::timestamp::format_utc(t + 3600);
                set(&mut row, 0, &format!("{}+01:00", &local[..19]));
            }
            _ => set(&mut row, 0, &t.to_string()),
        }
        let suite = &suites[(visitor % suites.len() as u64) as usize];
        if suites.len() > 1 && rng.gen_range(0..50) == 0 {
            set(&mut row, 7, &suites.join(","));
        } else {
            set(&mut row, 7, suite);
        }
        let mut ua = USER_AGENTS[(visitor % USER_AGENTS.len() as u64) as usize]
            .0
            .to_string();
        if rng.gen_range(0..200) == 0 {
            ua.push_str("\n(continued)");
        }
        set(&mut row, 8, &ua);
        let section = SECTIONS[rng.gen_range(0..SECTIONS.len())];
        let n: u32 = rng.gen_range(1..400);
        let name = page_name(section, n);
        let url = format!("https://www.example.com/{section}/{n}?ref=list&id={visitor}");
        let link = rng.gen_range(0..100);
        let qs_style = rng.gen_range(0..10) < 3;
        if qs_style {
            let mut qs = format!("AQB=1&ce=UTF-8&g={}", enc(&url));
            if link < 10 {
                let (pe, lname) = match link % 3 {
                    0 => ("lnk_o", format!("cta {n}")),
                    1 => ("lnk_e", "partner site".to_string()),
                    _ => ("lnk_d", format!("brochure-{n}.pdf")),
                };
                qs.push_str(&format!("&pe={pe}&pev2={}", enc(&lname)));
            } else {
                qs.push_str(&format!("&pageName={}", enc(&name)));
            }
            qs.push_str(&format!(
                "&v1={}&c1={}&ch={}",
                enc(section),
                n % 7,
                CHANNELS[n as usize % CHANNELS.len()]
            ));
            if n.is_multiple_of(4) {
                qs.push_str("&c.app.version=3.2.1");
            }
            qs.push_str("&AQE=1");
            set(&mut row, 26, &qs);
        } else {
            set(&mut row, 10, &url);
            if link < 10 {
                match link % 3 {
                    0 => {
                        set(&mut row, 11, "o");
                        set(&mut row, 12, &format!("cta {n}"));
                    }
                    1 => {
                        set(&mut row, 11, "e");
                        set(&mut row, 13, "https://partner.example.org/");
                    }
                    _ => {
                        set(&mut row, 11, "d");
                        set(&mut row, 12, &format!("brochure-{n}.pdf"));
                        set(
                            &mut row,
                            13,
                            &format!("https://www.example.com/files/brochure-{n}.pdf"),
                        );
                    }
                }
            } else {
                set(&mut row, 9, &name);
            }
            set(&mut row, 15, CHANNELS[n as usize % CHANNELS.len()]);
            set(&mut row, 19, section);
            set(&mut row, 22, &(n % 7).to_string());
        }
        if let Some(r) = referrer(section, n) {
            set(&mut row, 14, &r);
        }
        if n.is_multiple_of(11) {
            set(&mut row, 16, &format!("email-{}", n % 5));
        }
        // Commerce, by page number: purchases of one to three products
        // (per-product currency event5, a merchandising eVar), with
        // purchase IDs that repeat (a page reloaded); product views; cart
        // adds with a serialized event3 whose IDs repeat; a numeric event4.
        match n % 17 {
            0 => {
                set(&mut row, 17, "purchase,event1,event2=5,event5");
                let products: Vec<String> = (0..=(n % 3))
                    .map(|i| {
                        let sku = (n + i * 7) % 50;
                        format!(
                            "{};SKU-{sku};{};{}.99;event5={}|event6=1;eVar20=size-{}",
                            CATEGORIES[sku as usize % CATEGORIES.len()],
                            i + 1,
                            (sku % 90 + 9) * (i + 1),
                            sku % 4 + 1,
                            sku % 3
                        )
                    })
                    .collect();
                set(&mut row, 18, &products.join(","));
                // IDs of one visitor: its rows stay in one visitor group.
                set(&mut row, 27, &format!("O{vkey:x}-{}", n % 3));
            }
            1 => {
                set(&mut row, 17, "prodView,event1");
                set(
                    &mut row,
                    18,
                    &format!(
                        "{};SKU-{}",
                        CATEGORIES[n as usize % CATEGORIES.len()],
                        n % 50
                    ),
                );
            }
            2 => set(&mut row, 17, &format!("scAdd,event3:{vkey:x}-{}", n % 5)),
            3 => set(&mut row, 17, &format!("event4={}.5", n % 10)),
            _ => {}
        }
        set(&mut row, 20, &format!("segment-{}", visitor % 13));
        if n.is_multiple_of(5) {
            set(&mut row, 21, "member");
        }
        set(&mut row, 23, &format!("v{}", visitor % 9));
        if n.is_multiple_of(4) && !qs_style {
            set(&mut row, 24, "3.2.1");
        }
        set(
            &mut row,
            25,
            LANGUAGES[(visitor % LANGUAGES.len() as u64) as usize],
        );

        let row_number = summary.rows + 1;
        let mut fields = row.len();
        if opts.invalid_rate > 0.0 && rng.gen_bool(opts.invalid_rate.clamp(0.0, 1.0)) {
            let kind = kinds[rng.gen_range(0..kinds.len())];
            if inject(&mut row, &mut fields, kind) {
                *summary.invalid.entry(kind).or_insert(0) += 1;
                summary.invalid_rows.push((row_number, kind));
            }
        }
        w.write_record(row.iter().take(fields))?;
        summary.rows += 1;
    }
    w.flush()?;
    Ok(summary)
}

/// Makes the row invalid in the given way; returns false for kinds it cannot inject.
fn inject(row: &mut [Vec<u8>], fields: &mut usize, kind: RowErrorKind) -> bool {
    let clear_identity = |row: &mut [Vec<u8>]| {
        for field in row.iter_mut().take(7).skip(1) {
            field.clear();
        }
        // A queryString may carry vid/mid: it carries neither here.
    };
    match kind {
        RowErrorKind::ColumnCount => *fields = row.len() - 2,
        RowErrorKind::InvalidUtf8 => {
            row[9].clear();
            row[9].extend_from_slice(b"Caf\xe9 (latin-1)");
        }
        RowErrorKind::MissingVisitorId => clear_identity(row),
        RowErrorKind::NothingToReport => {
            for i in [9, 10, 11, 12, 13, 26] {
                row[i].clear();
            }
        }
        RowErrorKind::MissingReportSuite => row[7].clear(),
        RowErrorKind::InvalidReportSuite => {
            // A valid suite, then one the rule refuses: the whole row goes.
            row[7].clear();
            row[7].extend_from_slice(b"acme.prod,acme@prod");
        }
        RowErrorKind::MissingTimestamp => row[0].clear(),
        RowErrorKind::InvalidTimestamp => {
            let ts = String::from_utf8_lossy(&row[0]).to_string();
            row[0].clear();
            match ts.parse::<i64>() {
                Ok(secs) => row[0].extend_from_slice(format!("{}123", secs).as_bytes()),
                Err(_) => row[0].extend_from_slice(format!("{}.250Z", &ts[..19]).as_bytes()),
            }
        }
        RowErrorKind::MissingUserAgent => row[8].clear(),
        RowErrorKind::InvalidAuthState => {
            clear_identity(row);
            row[1].extend_from_slice(b"fallback-visitor");
            row[4].extend_from_slice(b"CRM-x");
            row[5].extend_from_slice(b"signed_in");
        }
        RowErrorKind::InvalidIsMcSeed => {
            clear_identity(row);
            row[1].extend_from_slice(b"fallback-visitor");
            row[4].extend_from_slice(b"CRM-x");
            row[6].extend_from_slice(b"yes");
        }
        RowErrorKind::SeedWithoutId => {
            clear_identity(row);
            row[1].extend_from_slice(b"fallback-visitor");
            row[6].extend_from_slice(b"1");
        }
        // They depend on the caller: its report suites, its row size limit.
        RowErrorKind::ReportSuiteNotAllowed | RowErrorKind::RowTooLong => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic() {
        let opts = GenOptions {
            rows: 200,
            invalid_rate: 0.2,
            ..GenOptions::default()
        };
        let mut a = Vec::new();
        let mut b = Vec::new();
        let sa = generate(&opts, &mut a).unwrap();
        let sb = generate(&opts, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert_eq!(sa.rows, 200);
        assert!(sa.invalid_total() > 10);
    }
}
