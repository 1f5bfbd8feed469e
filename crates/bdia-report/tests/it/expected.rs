//! Generated input rows and an independent computation of every metric
//! from them: its own sessionization and time-zone arithmetic, nothing read
//! from the lake or from the enrichment.

use std::collections::{BTreeMap, HashMap, HashSet};

use bdia_format::fields::Field;
use bdia_format::hit::{Event, Hit, HitType, LinkType, Visitor, VisitorKind};
use jiff::tz::TimeZone;

/// One input row, as a batch file would carry it.
#[derive(Debug, Clone)]
pub struct Input {
    pub kind: VisitorKind,
    pub visitor: String,
    pub ts: i64,
    pub suites: Vec<String>,
    /// None: a page view; Some(d/e/o).
    pub link: Option<char>,
    pub link_name: Option<String>,
    pub page_name: Option<String>,
    pub page_url: Option<String>,
    pub channel: Option<String>,
    pub campaign: Option<String>,
    pub referrer: Option<String>,
    pub evar3: Option<String>,
    pub prop5: Option<String>,
    pub events: Vec<(String, Option<f64>)>,
    /// Index in [`USER_AGENTS`]; `None`: no `userAgent`.
    pub ua: Option<usize>,
    /// `products`: (category, product, quantity, price) entries.
    pub products: Vec<(&'static str, &'static str, i64, f64)>,
    /// `purchaseID`.
    pub purchase_id: Option<String>,
}

/// The products of the generated purchases, by `ts % 3`.
const BASKETS: [&[(&str, &str, i64, f64)]; 3] = [
    &[("Shoes", "Boot", 2, 120.5)],
    &[("Shoes", "Sandal", 1, 30.0), ("Hats", "Cap", 3, 15.0)],
    &[("", "Gift", 1, 10.0)],
];

/// A user agent and what it is known to be: (user agent, browser, browser
/// version, OS, device type).
pub type KnownAgent = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// The user agents of the generated rows, with their known values.
pub const USER_AGENTS: &[KnownAgent] = &[
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        "Chrome", "Chrome 120.0", "Windows", "desktop",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
        "Safari", "Safari 17.1", "Mac OS X", "desktop",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "Mobile Safari", "Mobile Safari 17.1", "iOS", "mobile",
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "Mobile Safari", "Mobile Safari 17.1", "iOS", "tablet",
    ),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Googlebot", "Googlebot 2.1", "Other", "bot",
    ),
];

/// Whether a row is a robot's.
pub fn is_bot(r: &Input) -> bool {
    r.ua.is_some_and(|i| USER_AGENTS[i].4 == "bot")
}

/// Referrers of the generated rows and their known (referrer type, search
/// engine) for pages on `acme.example`.
pub const REFERRERS: &[(&str, &str, Option<&str>)] = &[
    (
        "https://www.Google.com/search?q=x",
        "search_engine",
        Some("Google"),
    ),
    ("http://news.example.org:8080/a/b", "other_web_site", None),
    ("https://user@shop.example.net/", "other_web_site", None),
    ("example.com/path", "typed_bookmarked", None),
    ("https://acme.example/products", "internal", None),
    ("https://m.facebook.com/story", "social", None),
    (
        "https://www.bing.com/search?q=",
        "search_engine",
        Some("Microsoft Bing"),
    ),
];

/// A small xorshift, so the rows do not depend on any crate's RNG.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    pub fn maybe(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub const WEB: &str = "acme.web";
pub const APP: &str = "acme.app";
pub const WEB_TZ: &str = "America/New_York";

/// Rows of `visitors` visitors from `start` (unix seconds), each visitor's
/// rows in time order, all sorted by time. Gaps include exactly 1,800 s,
/// 1,801 s and runs long enough to cross the 12-hour visit limit.
pub fn generate(seed: u64, visitors: usize, start: i64) -> Vec<Input> {
    generate_with(seed, visitors, start, REFERRERS.len())
}

/// [`generate`] with only the first `referrers` of [`REFERRERS`] (the
/// lake fixture was written with the first four).
pub fn generate_with(seed: u64, visitors: usize, start: i64, referrers: usize) -> Vec<Input> {
    let mut rng = Rng(seed | 1);
    let pages = ["Home", "Products", "Cart", "Checkout", "Search", "About"];
    let refs: Vec<&str> = REFERRERS[..referrers].iter().map(|r| r.0).collect();
    let gaps = [5, 30, 600, 1800, 1801, 5000, 20000, 600, 60, 1800];
    let mut out = Vec::new();
    for v in 0..visitors {
        // The same id as a visitorID and as an IP address: two visitors.
        let kind = if v % 5 == 4 {
            VisitorKind::Ip
        } else {
            VisitorKind::Vid
        };
        let visitor = format!("v{}", v % 20);
        // One user agent per visitor id (ids repeat), one in eight without.
        let ua = (v % 20 % 8 != 7).then_some(v % 20 % USER_AGENTS.len());
        let mut ts = start + rng.below(3 * 86_400) as i64;
        let n = if v == 3 {
            90
        } else {
            1 + rng.below(30) as usize
        };
        for _ in 0..n {
            let gap = if v == 3 {
                600
            } else {
                gaps[rng.below(gaps.len() as u64) as usize]
            };
            ts += gap;
            let link = if rng.maybe(25) {
                Some(['d', 'e', 'o'][rng.below(3) as usize])
            } else {
                None
            };
            let mut suites = vec![WEB.to_string()];
            if rng.maybe(30) {
                suites.push(APP.to_string());
            }
            if rng.maybe(5) {
                suites = vec![APP.to_string()];
            }
            let page = rng.pick(&pages).to_string();
            let mut events = Vec::new();
            if rng.maybe(20) {
                events.push(("purchase".to_string(), None));
            }
            if rng.maybe(30) {
                let value = if rng.maybe(50) {
                    Some(rng.below(10) as f64 + 0.5)
                } else {
                    None
                };
                events.push(("event2".to_string(), value));
            }
            out.push(Input {
                kind,
                visitor: visitor.clone(),
                ts,
                suites,
                link,
                link_name: link.map(|_| format!("link {}", rng.below(4))),
                page_name: (!rng.maybe(10)).then(|| page.clone()),
                page_url: Some(format!("https://acme.example/{}", page.to_lowercase())),
                channel: rng
                    .maybe(60)
                    .then(|| rng.pick(&["Search", "Social", "Email"]).to_string()),
                campaign: rng.maybe(30).then(|| format!("cmp{}", rng.below(3))),
                referrer: rng.maybe(50).then(|| rng.pick(&refs).to_string()),
                evar3: rng
                    .maybe(50)
                    .then(|| rng.pick(&["gold", "silver"]).to_string()),
                prop5: rng
                    .maybe(50)
                    .then(|| rng.pick(&["en", "fr", "de"]).to_string()),
                products: if events.iter().any(|(n, _)| n == "purchase") {
                    BASKETS[(ts % 3) as usize].to_vec()
                } else {
                    Vec::new()
                },
                // Purchase IDs repeat within a visitor's purchases (one
                // visitor group, processed in order): some purchases are
                // duplicates.
                purchase_id: (ts % 4 != 0).then(|| format!("ORD-{visitor}-{}", ts % 5)),
                events,
                ua,
            });
        }
    }
    out.sort_by_key(|r| r.ts);
    out
}

/// The normalized hit the format engine would make of a row.
pub fn to_hit(row: u64, r: &Input) -> Hit {
    let mut vars = vec![None; Field::COUNT];
    vars[Field::PageName as usize] = r.page_name.clone();
    vars[Field::PageUrl as usize] = r.page_url.clone();
    vars[Field::LinkName as usize] = r.link_name.clone();
    vars[Field::Channel as usize] = r.channel.clone();
    vars[Field::Campaign as usize] = r.campaign.clone();
    vars[Field::Referrer as usize] = r.referrer.clone();
    vars[Field::UserAgent as usize] = r.ua.map(|i| USER_AGENTS[i].0.to_string());
    if !r.events.is_empty() {
        vars[Field::Events as usize] = Some(
            r.events
                .iter()
                .map(|(n, v)| match v {
                    Some(v) => format!("{n}={v}"),
                    None => n.clone(),
                })
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    if !r.products.is_empty() {
        vars[Field::Products as usize] = Some(
            r.products
                .iter()
                .map(|(c, p, q, price)| format!("{c};{p};{q};{price}"))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    vars[Field::PurchaseId as usize] = r.purchase_id.clone();
    Hit {
        row,
        timestamp: r.ts,
        report_suites: r.suites.iter().map(Into::into).collect(),
        visitor: Visitor {
            kind: r.kind,
            customer_id_type: None,
            id: r.visitor.clone(),
        },
        hit_type: match r.link {
            None => HitType::PageView,
            Some('d') => HitType::Link(LinkType::Download),
            Some('e') => HitType::Link(LinkType::Exit),
            Some(_) => HitType::Link(LinkType::Custom),
        },
        vars: vars.into_iter().map(|v| v.map(Into::into)).collect(),
        evars: r.evar3.iter().map(|v| (3, v.into())).collect(),
        props: r.prop5.iter().map(|v| (5, v.into())).collect(),
        hiers: Default::default(),
        lists: Default::default(),
        context_data: Default::default(),
        hints: Default::default(),
        customer_ids: Default::default(),
        events: r
            .events
            .iter()
            .map(|(n, v)| Event {
                name: n.into(),
                value: *v,
                serial: None,
            })
            .collect(),
    }
}

/// A row of one suite with its visit, computed here.
#[derive(Debug, Clone)]
pub struct Sessionized<'a> {
    pub input: &'a Input,
    /// Position in processing order.
    pub seq: usize,
    pub file_id: String,
    pub visitor: (String, String),
    pub visit: u32,
    pub first: bool,
    pub local_day: String,
    pub local_hour: String,
    /// eVar3's persisted value: the most recent value sent in the visit.
    pub post_evar3: Option<String>,
    /// The row's purchase counts: it has one, and its purchase ID (if any)
    /// was not counted before in the suite.
    pub order: bool,
}

fn kind_name(k: VisitorKind) -> &'static str {
    match k {
        VisitorKind::Customer => "customer",
        VisitorKind::Vid => "vid",
        VisitorKind::Mcid => "mcid",
        VisitorKind::Ip => "ip",
    }
}

/// Visits per (visitor, suite): a new one after more than 1,800 s without a
/// hit or once 43,200 s have passed since the visit began.
pub fn sessionize<'a>(rows: &'a [(String, Input)], suite: &str, tz: &str) -> Vec<Sessionized<'a>> {
    let tz = TimeZone::get(tz).unwrap();
    let mut state: HashMap<(String, String), (u32, i64, i64)> = HashMap::new();
    // eVar3 by visitor: (visit that set it, value).
    let mut evar3: HashMap<(String, String), (u32, String)> = HashMap::new();
    let mut purchase_ids: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for (seq, (file_id, r)) in rows.iter().enumerate() {
        if !r.suites.iter().any(|s| s == suite) {
            continue;
        }
        let key = (kind_name(r.kind).to_string(), r.visitor.clone());
        let (visit, first) = match state.get(&key).copied() {
            Some((n, last, start)) if r.ts - last <= 1800 && r.ts - start < 43_200 => {
                state.insert(key.clone(), (n, r.ts, start));
                (n, false)
            }
            Some((n, _, _)) => {
                state.insert(key.clone(), (n + 1, r.ts, r.ts));
                (n + 1, true)
            }
            None => {
                state.insert(key.clone(), (1, r.ts, r.ts));
                (1, true)
            }
        };
        let local = tz.to_datetime(jiff::Timestamp::from_second(r.ts).unwrap());
        if let Some(v) = &r.evar3 {
            evar3.insert(key.clone(), (visit, v.clone()));
        }
        let post_evar3 = evar3
            .get(&key)
            .filter(|(n, _)| *n == visit)
            .map(|(_, v)| v.clone());
        let order = r.events.iter().any(|(n, _)| n == "purchase")
            && r.purchase_id
                .as_ref()
                .is_none_or(|id| purchase_ids.insert(id.clone()));
        out.push(Sessionized {
            input: r,
            seq,
            file_id: file_id.clone(),
            visitor: key,
            visit,
            first,
            local_day: local.strftime("%Y-%m-%d").to_string(),
            local_hour: local.strftime("%Y-%m-%dT%H:00").to_string(),
            post_evar3,
            order,
        });
    }
    out
}

/// A host, read differently from the engine: drop the scheme, cut at the
/// first of `/?#`, drop user info and port, lower-case.
fn host(r: &str) -> Option<String> {
    let no_scheme = r.split_once("://").map_or(r, |(_, rest)| rest);
    let authority: String = no_scheme
        .chars()
        .take_while(|c| !"/?#".contains(*c))
        .collect();
    let after_user = authority.split('@').next_back().unwrap_or("");
    let h = after_user.split(':').next().unwrap_or("").to_lowercase();
    (!h.is_empty()).then_some(h)
}

/// Visit-level values of the range's hits, computed from them alone.
#[derive(Default)]
pub struct Visits {
    /// Page of each visit's first page view.
    pub entry: HashMap<((String, String), u32), Option<String>>,
    /// Page of each visit's last page view.
    pub exit: HashMap<((String, String), u32), Option<String>>,
    /// Seconds to the next hit of the visit, by `seq`.
    pub spent: HashMap<usize, i64>,
}

fn page(r: &Input) -> Option<String> {
    match r.link {
        None => r.page_name.clone().or(r.page_url.clone()),
        Some(_) => None,
    }
}

/// [`Visits`] of `rows` (in processing order).
pub fn visits(rows: &[&Sessionized<'_>]) -> Visits {
    let mut by_visit: BTreeMap<((String, String), u32), Vec<&Sessionized<'_>>> = BTreeMap::new();
    for s in rows {
        by_visit
            .entry((s.visitor.clone(), s.visit))
            .or_default()
            .push(s);
    }
    let mut out = Visits::default();
    for (key, mut hits) in by_visit {
        hits.sort_by_key(|s| (s.input.ts, s.seq));
        let pages: Vec<&&Sessionized<'_>> =
            hits.iter().filter(|s| s.input.link.is_none()).collect();
        out.entry
            .insert(key.clone(), pages.first().and_then(|s| page(s.input)));
        out.exit
            .insert(key, pages.last().and_then(|s| page(s.input)));
        for w in hits.windows(2) {
            out.spent.insert(w[0].seq, w[1].input.ts - w[0].input.ts);
        }
        if let Some(last) = hits.last() {
            out.spent.insert(last.seq, 0);
        }
    }
    out
}

/// The dimension value of a row.
pub fn dimension(dim: &str, s: &Sessionized<'_>, v: &Visits) -> Option<String> {
    let r = s.input;
    let agent = r.ua.map(|i| USER_AGENTS[i]);
    let referrer = || {
        let r = r.referrer.as_deref();
        match r {
            None => ("typed_bookmarked", None),
            Some(r) => {
                let known = REFERRERS.iter().find(|k| k.0 == r).unwrap();
                (known.1, known.2)
            }
        }
    };
    let key = (s.visitor.clone(), s.visit);
    match dim {
        "browser" => agent.map(|a| a.1.to_string()),
        "browser_version" => agent.map(|a| a.2.to_string()),
        "os" => agent.map(|a| a.3.to_string()),
        "device_type" => agent.map(|a| a.4.to_string()),
        "referrer_type" => Some(referrer().0.to_string()),
        "search_engine" => referrer().1.map(str::to_string),
        "entry_page" => v.entry[&key].clone(),
        "exit_page" => v.exit[&key].clone(),
        "day" => Some(s.local_day.clone()),
        "hour" => Some(s.local_hour.clone()),
        "page" => page(r),
        "page_url" => r.page_url.clone(),
        "link_name" => r.link_name.clone(),
        "link_type" => r.link.map(|c| match c {
            'd' => "download".to_string(),
            'e' => "exit".to_string(),
            _ => "custom".to_string(),
        }),
        "channel" => r.channel.clone(),
        "campaign" => r.campaign.clone(),
        "referrer_host" => r.referrer.as_deref().and_then(host),
        "evar3" => s.post_evar3.clone(),
        "prop5" => r.prop5.clone(),
        "evar7" => None,
        "visitor_id_type" => Some(s.visitor.0.clone()),
        "file_id" => Some(s.file_id.clone()),
        other => panic!("no expected value for dimension {other}"),
    }
}

/// Rows of a report: dimension value -> metric -> value.
pub type Rows = BTreeMap<Option<String>, BTreeMap<String, f64>>;

pub const METRICS: &[&str] = &[
    "pageviews",
    "visits",
    "visitors",
    "link_hits",
    "hits",
    "bounces",
    "events:purchase",
    "events:event2",
    "events:nothing",
    "entries",
    "bounce_rate",
    "total_seconds_spent",
    "time_spent_per_visit",
];

/// The commerce metrics (not in lakes written before they existed).
pub const COMMERCE: &[&str] = &["revenue", "orders", "units", "conversion_rate"];

/// Expected rows (dimension value -> metric -> value) and totals of a
/// report over the rows whose local day is in `from..=to`, robots' rows
/// left out.
pub fn report(
    all: &[Sessionized<'_>],
    dim: &str,
    from: &str,
    to: &str,
) -> (Rows, BTreeMap<String, f64>) {
    report_with(all, dim, from, to, false)
}

/// [`report`], with robots' rows kept when `include_bots`.
pub fn report_with(
    all: &[Sessionized<'_>],
    dim: &str,
    from: &str,
    to: &str,
    include_bots: bool,
) -> (Rows, BTreeMap<String, f64>) {
    let in_range: Vec<&Sessionized<'_>> = all
        .iter()
        .filter(|s| s.local_day.as_str() >= from && s.local_day.as_str() <= to)
        .filter(|s| include_bots || !is_bot(s.input))
        .collect();
    let v = visits(&in_range);
    let time = dim == "day" || dim == "hour";
    // Hits of each visit in the range.
    let mut visit_hits: HashMap<(&(String, String), u32), usize> = HashMap::new();
    for s in &in_range {
        *visit_hits.entry((&s.visitor, s.visit)).or_default() += 1;
    }
    let groups: Vec<(Option<String>, Vec<&Sessionized<'_>>)> = {
        let mut m: BTreeMap<Option<String>, Vec<&Sessionized<'_>>> = BTreeMap::new();
        for s in &in_range {
            m.entry(dimension(dim, s, &v)).or_default().push(s);
        }
        m.into_iter().collect()
    };
    let compute = |rows: &[&Sessionized<'_>]| -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let pv = rows.iter().filter(|s| s.input.link.is_none()).count();
        let visits = if time {
            rows.iter().filter(|s| s.first).count()
        } else {
            rows.iter()
                .map(|s| (&s.visitor, s.visit))
                .collect::<HashSet<_>>()
                .len()
        };
        let visitors = rows
            .iter()
            .map(|s| &s.visitor)
            .collect::<HashSet<_>>()
            .len();
        let bounces = rows
            .iter()
            .filter(|s| s.first && visit_hits[&(&s.visitor, s.visit)] == 1)
            .count();
        let event = |name: &str| -> f64 {
            rows.iter()
                .flat_map(|s| {
                    s.input
                        .events
                        .iter()
                        .filter(move |(n, _)| n != "purchase" || s.order)
                })
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.unwrap_or(1.0))
                .sum()
        };
        let orders: Vec<&&Sessionized<'_>> = rows.iter().filter(|s| s.order).collect();
        let revenue: f64 = orders
            .iter()
            .flat_map(|s| &s.input.products)
            .map(|p| p.3)
            .sum();
        let units: i64 = orders
            .iter()
            .flat_map(|s| &s.input.products)
            .map(|p| p.2)
            .sum();
        out.insert("pageviews".into(), pv as f64);
        out.insert("visits".into(), visits as f64);
        out.insert("visitors".into(), visitors as f64);
        out.insert("link_hits".into(), (rows.len() - pv) as f64);
        out.insert("hits".into(), rows.len() as f64);
        out.insert("bounces".into(), bounces as f64);
        out.insert("events:purchase".into(), event("purchase"));
        out.insert("events:event2".into(), event("event2"));
        out.insert("events:nothing".into(), 0.0);
        out.insert("revenue".into(), revenue);
        out.insert("orders".into(), orders.len() as f64);
        out.insert("units".into(), units as f64);
        let entries = rows.iter().filter(|s| s.first).count() as f64;
        let seconds: i64 = rows.iter().map(|s| v.spent[&s.seq]).sum();
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        out.insert("entries".into(), entries);
        out.insert("bounce_rate".into(), ratio(bounces as f64, entries));
        out.insert("total_seconds_spent".into(), seconds as f64);
        out.insert(
            "time_spent_per_visit".into(),
            ratio(seconds as f64, visits as f64 - bounces as f64),
        );
        out.insert(
            "conversion_rate".into(),
            ratio(orders.len() as f64, visits as f64),
        );
        out
    };
    let mut rows: BTreeMap<Option<String>, BTreeMap<String, f64>> = groups
        .iter()
        .map(|(k, rs)| (k.clone(), compute(rs)))
        .collect();
    if dim == "day" {
        let mut d: jiff::civil::Date = from.parse().unwrap();
        let end: jiff::civil::Date = to.parse().unwrap();
        while d <= end {
            rows.entry(Some(d.to_string()))
                .or_insert_with(|| compute(&[]));
            d = d.tomorrow().unwrap();
        }
    }
    let totals = compute(&in_range);
    (rows, totals)
}

/// Revenue, orders and units by product (`category`: by category) over
/// the rows whose local day is in `from..=to`: a purchase of several
/// products counts one order in each product's row.
pub fn by_product(all: &[Sessionized<'_>], category: bool, from: &str, to: &str) -> Rows {
    let mut rows = Rows::new();
    for s in all
        .iter()
        .filter(|s| s.local_day.as_str() >= from && s.local_day.as_str() <= to)
        .filter(|s| !is_bot(s.input))
    {
        for (c, p, q, price) in &s.input.products {
            let key = if category { *c } else { *p };
            let row = rows.entry(Some(key.to_string())).or_default();
            let (revenue, orders, units) = if s.order {
                (*price, 1.0, *q as f64)
            } else {
                (0.0, 0.0, 0.0)
            };
            *row.entry("revenue".into()).or_default() += revenue;
            *row.entry("orders".into()).or_default() += orders;
            *row.entry("units".into()).or_default() += units;
        }
    }
    rows
}
