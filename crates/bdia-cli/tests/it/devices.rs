//! Devices, traffic sources, visit metrics, eVars and commerce end to end: generated
//! exports prepared into groups of several files, uploaded to a real `bdia
//! serve`, processed, then reported with `bdia report` over HTTP and
//! compared with an independent computation over the prepared files: the
//! generator's known device type of each user agent, the known class of
//! each of its referrers, and a sessionization of its own.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use bdia_format::generate::USER_AGENTS;

use crate::common::{prepared_exports, BdiaServe};

/// One prepared row, as the oracle reads it.
#[derive(Debug, Clone)]
struct Row {
    /// Processing order: group, file, row.
    seq: usize,
    /// Which prepared file.
    file: usize,
    visitor: String,
    ts: i64,
    /// The page of a page view (page name, else URL); `None` for link hits.
    page: Option<String>,
    device_type: &'static str,
    referrer: Option<String>,
    /// `events`, `products`, `purchaseID`, `eVar10` as written.
    events: String,
    products: String,
    purchase_id: Option<String>,
    evar10: Option<String>,
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The referrer class of the generator's referrers (`generate::referrer`),
/// read off their text.
fn referrer_class(r: Option<&str>) -> (&'static str, Option<&'static str>) {
    match r {
        None => ("typed_bookmarked", None),
        Some(r) if r.starts_with("https://www.google.com/search?q=") => {
            ("search_engine", Some("Google"))
        }
        Some(r) if r.starts_with("https://www.bing.com/search?q=") => {
            ("search_engine", Some("Microsoft Bing"))
        }
        Some(r) if r.starts_with("https://www.facebook.com/") || r.starts_with("https://t.co/") => {
            ("social", None)
        }
        Some(r) if r.starts_with("https://www.example.com/") => ("internal", None),
        Some(r) if r.starts_with("https://news.example.org/") => ("other_web_site", None),
        Some(r) => panic!("a referrer the generator does not make: {r}"),
    }
}

/// Unix seconds of an epoch or ISO-8601 (`Z` or `+HH:MM`) timestamp, the
/// forms the generator writes.
fn timestamp(s: &str) -> i64 {
    if let Ok(n) = s.parse() {
        return n;
    }
    let n = |r: std::ops::Range<usize>| -> i64 { s[r].parse().unwrap() };
    let (y, mo, d) = (n(0..4), n(5..7), n(8..10));
    let secs = n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    let offset = match &s[19..] {
        "Z" => 0,
        o => (if o.starts_with('-') { -1 } else { 1 }) * (n(20..22) * 3600 + n(23..25) * 60),
    };
    // Days since 1970-01-01 of a proleptic Gregorian date.
    let (y, mo) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + secs - offset
}

/// Every row of the prepared directory, in processing order (a group's
/// files in sequence, groups one after another: visitors never span
/// groups).
fn read_prepared(dir: &Path) -> Vec<Row> {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    let mut file = 0;
    for g in m["groups"].as_array().unwrap() {
        for f in g["files"].as_array().unwrap() {
            file += 1;
            let path = dir.join(f["path"].as_str().unwrap());
            let mut text = String::new();
            flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
                .read_to_string(&mut text)
                .unwrap();
            let mut r = csv::Reader::from_reader(text.as_bytes());
            let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
            let at = |name: &str| header.iter().position(|h| h == name).unwrap();
            let (ev, pr, pid, e10) = (at("events"), at("products"), at("purchaseID"), at("eVar10"));
            let (ts, ua, pn, pu, lt, rf, qs) = (
                at("timestamp"),
                at("userAgent"),
                at("pageName"),
                at("pageURL"),
                at("linkType"),
                at("referrer"),
                at("queryString"),
            );
            let ids = [
                at("visitorID"),
                at("marketingCloudVisitorID"),
                at("IPAddress"),
                at("customerID.crm.id"),
            ];
            for rec in r.records() {
                let rec = rec.unwrap();
                let get = |i: usize| Some(rec[i].to_string()).filter(|s| !s.is_empty());
                let (kind, id) = ids
                    .iter()
                    .enumerate()
                    .rev()
                    .find_map(|(k, i)| get(*i).map(|v| (k, v)))
                    .unwrap();
                let mut q: HashMap<String, String> = HashMap::new();
                for pair in rec[qs].split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    q.insert(k.to_string(), decode(v));
                }
                let link = get(lt).is_some() || q.contains_key("pe");
                let page = (!link)
                    .then(|| {
                        get(pn)
                            .or_else(|| q.get("pageName").cloned())
                            .or_else(|| get(pu))
                            .or_else(|| q.get("g").cloned())
                    })
                    .flatten();
                let agent = rec[ua].trim_end_matches("\n(continued)");
                let device_type = USER_AGENTS
                    .iter()
                    .find(|(u, _)| *u == agent)
                    .unwrap_or_else(|| panic!("unknown user agent {agent}"))
                    .1;
                out.push(Row {
                    seq: out.len(),
                    file,
                    visitor: format!("{kind}:{id}"),
                    ts: timestamp(&rec[ts]),
                    page,
                    device_type,
                    referrer: get(rf),
                    events: rec[ev].to_string(),
                    products: rec[pr].to_string(),
                    purchase_id: get(pid),
                    evar10: get(e10),
                });
            }
        }
    }
    out
}

/// Per row: its visit `(visitor, visit number)`, whether it opened it; the
/// 1,800 s and 12 h rules.
fn sessionize(rows: &[Row]) -> Vec<((String, u32), bool)> {
    let mut state: HashMap<&str, (u32, i64, i64)> = HashMap::new();
    rows.iter()
        .map(|r| {
            let (n, first) = match state.get(r.visitor.as_str()).copied() {
                Some((n, last, start)) if r.ts - last <= 1800 && r.ts - start < 43_200 => {
                    state.insert(&r.visitor, (n, r.ts, start));
                    (n, false)
                }
                Some((n, _, _)) => {
                    state.insert(&r.visitor, (n + 1, r.ts, r.ts));
                    (n + 1, true)
                }
                None => {
                    state.insert(&r.visitor, (1, r.ts, r.ts));
                    (1, true)
                }
            };
            ((r.visitor.clone(), n), first)
        })
        .collect()
}

/// `dimension value -> metric -> value`.
type Table = BTreeMap<Option<String>, BTreeMap<String, f64>>;

/// The expected report by `entry_page` or `exit_page` (`exit`) of the
/// people's rows, with its totals under the key `Some("(total)")`.
fn expected_visits(rows: &[Row], exit: bool) -> Table {
    let people: Vec<&Row> = rows.iter().filter(|r| r.device_type != "bot").collect();
    let visits_of = sessionize(rows);
    let mut by_visit: BTreeMap<&(String, u32), Vec<(&Row, bool)>> = BTreeMap::new();
    for r in &people {
        let (v, first) = &visits_of[r.seq];
        by_visit.entry(v).or_default().push((r, *first));
    }
    let mut out = Table::new();
    let mut totals: BTreeMap<String, f64> = BTreeMap::new();
    for hits in by_visit.values_mut() {
        hits.sort_by_key(|(r, _)| (r.ts, r.seq));
        let pages: Vec<&(&Row, bool)> = hits.iter().filter(|(r, _)| r.page.is_some()).collect();
        let page = if exit { pages.last() } else { pages.first() };
        let key = page.and_then(|(r, _)| r.page.clone());
        let entries = hits.iter().filter(|(_, first)| *first).count() as f64;
        let bounce = (hits.len() == 1 && hits[0].1) as u8 as f64;
        let seconds = (hits.last().unwrap().0.ts - hits[0].0.ts) as f64;
        for m in [&mut totals, out.entry(key).or_default()] {
            *m.entry("visits".into()).or_default() += 1.0;
            *m.entry("entries".into()).or_default() += entries;
            *m.entry("bounces".into()).or_default() += bounce;
            *m.entry("total_seconds_spent".into()).or_default() += seconds;
        }
    }
    for m in out.values_mut().chain([&mut totals]) {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let rate = ratio(m["bounces"], m["entries"]);
        let per_visit = ratio(m["total_seconds_spent"], m["visits"] - m["bounces"]);
        m.insert("bounce_rate".into(), rate);
        m.insert("time_spent_per_visit".into(), per_visit);
    }
    out.insert(Some("(total)".into()), totals);
    out
}

/// Hits by a per-row key, with the total under `Some("(total)")`.
fn expected_hits(rows: &[Row], key: impl Fn(&Row) -> Option<String>) -> Table {
    let mut out = Table::new();
    for r in rows {
        *out.entry(key(r))
            .or_default()
            .entry("hits".into())
            .or_default() += 1.0;
    }
    out.insert(
        Some("(total)".into()),
        BTreeMap::from([("hits".to_string(), rows.len() as f64)]),
    );
    out
}

/// `bdia report --format json` with `extra` arguments, as a [`Table`].
fn report(server: &BdiaServe, dimension: &str, metrics: &str, extra: &[&str]) -> Table {
    let mut args = vec!["report", "--rsid", "acme.prod", "--metrics", metrics];
    args.extend(["--dimension", dimension, "--from", "2023-11-01"]);
    args.extend(["--to", "2023-11-30", "--limit", "10000", "--format", "json"]);
    args.extend(extra);
    let out = server.remote(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let metrics: Vec<&str> = metrics.split(',').collect();
    let values = |o: &serde_json::Value| -> BTreeMap<String, f64> {
        metrics
            .iter()
            .map(|m| (m.to_string(), o[*m].as_f64().unwrap()))
            .collect()
    };
    let mut t = Table::new();
    for row in v["rows"].as_array().unwrap() {
        let key = row[dimension].as_str().map(str::to_string);
        assert!(t.insert(key, values(row)).is_none(), "a row twice");
    }
    t.insert(Some("(total)".into()), values(&v["totals"]));
    t
}

fn assert_tables(what: &str, got: &Table, want: &Table) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: rows"
    );
    for (k, w) in want {
        for (m, x) in w {
            let g = got[k][m];
            // Sums of prices: equal up to the rounding of their order.
            let close = (g - x).abs() <= 1e-9 * x.abs().max(1.0);
            assert!(close, "{what} {k:?} {m}: got {g}, want {x}");
        }
    }
}

#[test]
fn devices_traffic_sources_and_visits_match_an_independent_computation() {
    let tmp = tempfile::tempdir().unwrap();
    // Two groups of several files each, so that visits run across files.
    let (dir, summary) = prepared_exports(tmp.path(), 900, 600, 0.0, "2", "500");
    assert_eq!(summary["written_rows"], 2700);
    let (server, rows) = serve_prepared(tmp.path(), &dir);
    assert_eq!(rows.len(), 2700);
    for t in ["desktop", "mobile", "tablet", "bot"] {
        assert!(rows.iter().any(|r| r.device_type == t), "no {t} rows");
    }
    let visits = sessionize(&rows);
    let mut files_of: HashMap<&(String, u32), Vec<usize>> = HashMap::new();
    for (r, (v, _)) in rows.iter().zip(&visits) {
        files_of.entry(v).or_default().push(r.file);
    }
    assert!(
        files_of.values().any(|f| f.iter().any(|x| *x != f[0])),
        "some visit runs across two files"
    );
    let people: Vec<Row> = rows
        .iter()
        .filter(|r| r.device_type != "bot")
        .cloned()
        .collect();
    assert!(people.len() < rows.len());

    // Device types: every row with --include-bots, robots left out without.
    let by_type = |r: &Row| Some(r.device_type.to_string());
    assert_tables(
        "device_type with robots",
        &report(&server, "device_type", "hits", &["--include-bots"]),
        &expected_hits(&rows, by_type),
    );
    assert_tables(
        "device_type",
        &report(&server, "device_type", "hits", &[]),
        &expected_hits(&people, by_type),
    );
    // Referrer types and search engines.
    assert_tables(
        "referrer_type",
        &report(&server, "referrer_type", "hits", &[]),
        &expected_hits(&people, |r| {
            Some(referrer_class(r.referrer.as_deref()).0.to_string())
        }),
    );
    assert_tables(
        "search_engine",
        &report(&server, "search_engine", "hits", &[]),
        &expected_hits(&people, |r| {
            referrer_class(r.referrer.as_deref()).1.map(str::to_string)
        }),
    );
    // Entry and exit pages, bounces, time spent.
    let m = "visits,entries,bounces,bounce_rate,total_seconds_spent,time_spent_per_visit";
    let got_entry = report(&server, "entry_page", m, &[]);
    assert_tables("entry_page", &got_entry, &expected_visits(&rows, false));
    assert_tables(
        "exit_page",
        &report(&server, "exit_page", m, &[]),
        &expected_visits(&rows, true),
    );
    let totals = &got_entry[&Some("(total)".to_string())];
    assert!(totals["bounces"] > 0.0 && totals["total_seconds_spent"] > 0.0);
}

/// A real `bdia serve` in `work/data` with the prepared files of `dir`
/// uploaded and processed, and those files' rows as read here.
fn serve_prepared(work: &Path, dir: &Path) -> (BdiaServe, Vec<Row>) {
    let server = BdiaServe::start(&work.join("data"), &[]);
    let creds = server.credentials();
    crate::common::upload(
        &server.url(),
        &creds,
        &[dir.as_os_str(), "--wait".as_ref(), "--json".as_ref()],
    );
    (server, read_prepared(dir))
}

/// One `products` entry, read here: (category, product, quantity, price,
/// per-product events).
type Product = (String, String, f64, f64, Vec<(String, f64)>);

fn products(s: &str) -> Vec<Product> {
    s.split(',')
        .filter(|e| !e.is_empty())
        .map(|e| {
            let p: Vec<&str> = e.split(';').collect();
            let num = |i: usize| p.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            let events = p
                .get(4)
                .map(|x| {
                    x.split('|')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
                        .collect()
                })
                .unwrap_or_default();
            (p[0].to_string(), p[1].to_string(), num(2), num(3), events)
        })
        .collect()
}

/// What counts on each row, by the rules of PROCESSING.md computed here:
/// (eVar10's persisted value, the purchase counts, event totals).
struct Counted {
    evar10: Option<String>,
    order: bool,
    events: BTreeMap<String, f64>,
}

fn count(rows: &[Row]) -> Vec<Counted> {
    let visits = sessionize(rows);
    let mut evar10: HashMap<&str, (u32, String)> = HashMap::new();
    let mut seen: std::collections::HashSet<String> = Default::default();
    rows.iter()
        .zip(&visits)
        .map(|(r, ((_, visit), _))| {
            if let Some(v) = &r.evar10 {
                evar10.insert(&r.visitor, (*visit, v.clone()));
            }
            let persisted = evar10
                .get(r.visitor.as_str())
                .filter(|(n, _)| n == visit)
                .map(|(_, v)| v.clone());
            let prods = products(&r.products);
            let mut order = false;
            let mut events = BTreeMap::new();
            for e in r.events.split(',').filter(|e| !e.is_empty()) {
                let (head, value) = match e.split_once('=') {
                    Some((h, v)) => (h, Some(v.parse::<f64>().unwrap())),
                    None => (e, None),
                };
                let (name, serial) = match head.split_once(':') {
                    Some((n, id)) => (n, Some(id)),
                    None => (head, None),
                };
                if let Some(id) = serial {
                    if !seen.insert(format!("{name}:{id}")) {
                        continue;
                    }
                }
                if name == "purchase" {
                    if let Some(id) = &r.purchase_id {
                        if !seen.insert(format!("purchase:{id}")) {
                            continue;
                        }
                    }
                    order = true;
                }
                let from_products: Vec<f64> = prods
                    .iter()
                    .flat_map(|p| &p.4)
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| *v)
                    .collect();
                let v = value.unwrap_or(if from_products.is_empty() {
                    1.0
                } else {
                    from_products.iter().sum()
                });
                *events.entry(name.to_string()).or_default() += v;
            }
            Counted {
                evar10: persisted,
                order,
                events,
            }
        })
        .collect()
}

#[test]
fn evars_events_and_commerce_of_generated_files_match_an_independent_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = prepared_exports(tmp.path(), 1500, 300, 0.0, "2", "500");
    let (server, rows) = serve_prepared(tmp.path(), &dir);
    let counted = count(&rows);
    let people: Vec<(&Row, &Counted)> = rows
        .iter()
        .zip(&counted)
        .filter(|(r, _)| r.device_type != "bot")
        .collect();
    // The generator's cases occur: repeated purchase IDs and serials,
    // eVar10 persisted to hits that did not send it.
    assert!(rows
        .iter()
        .zip(&counted)
        .any(|(r, c)| r.events.starts_with("purchase") && !c.order));
    assert!(rows.iter().any(|r| r.events.contains("event3:")));
    assert!(people
        .iter()
        .any(|(r, c)| r.evar10.is_none() && c.evar10.is_some()));

    let metrics = [
        "orders",
        "revenue",
        "units",
        "events:event3",
        "events:event4",
        "events:event5",
    ];
    let mut by_evar10 = Table::new();
    let mut by_product = Table::new();
    let mut totals: BTreeMap<String, f64> = BTreeMap::new();
    for (r, c) in &people {
        let prods = products(&r.products);
        let (revenue, units) = if c.order {
            (
                prods.iter().map(|p| p.3).sum(),
                prods.iter().map(|p| p.2).sum(),
            )
        } else {
            (0.0, 0.0)
        };
        let values = [
            f64::from(u8::from(c.order)),
            revenue,
            units,
            c.events.get("event3").copied().unwrap_or(0.0),
            c.events.get("event4").copied().unwrap_or(0.0),
            c.events.get("event5").copied().unwrap_or(0.0),
        ];
        for t in [by_evar10.entry(c.evar10.clone()).or_default(), &mut totals] {
            for (m, v) in metrics.iter().zip(values) {
                *t.entry(m.to_string()).or_default() += v;
            }
        }
        for p in &prods {
            let t = by_product.entry(Some(p.1.clone())).or_default();
            *t.entry("orders".into()).or_default() += f64::from(u8::from(c.order));
            *t.entry("revenue".into()).or_default() += if c.order { p.3 } else { 0.0 };
            *t.entry("units".into()).or_default() += if c.order { p.2 } else { 0.0 };
        }
    }
    by_evar10.insert(Some("(total)".into()), totals.clone());
    assert_tables(
        "evar10",
        &report(&server, "evar10", &metrics.join(","), &[]),
        &by_evar10,
    );
    let product_totals: BTreeMap<String, f64> = ["orders", "revenue", "units"]
        .iter()
        .map(|m| {
            (
                m.to_string(),
                by_product.values().map(|t| t[*m]).sum::<f64>(),
            )
        })
        .collect();
    by_product.insert(Some("(total)".into()), product_totals);
    assert_tables(
        "product",
        &report(&server, "product", "orders,revenue,units", &[]),
        &by_product,
    );
    assert!(totals["orders"] > 0.0 && totals["events:event5"] > 0.0);
}
