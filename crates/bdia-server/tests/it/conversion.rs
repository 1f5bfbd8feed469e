//! eVars, events and commerce over HTTP: a suite's eVar settings set
//! through the API, generated files uploaded and processed by the server,
//! then reports by every eVar, by product and by day compared with an
//! independent computation of the rules over the same rows (its own
//! visits, persistence, serialization and purchase ID deduplication).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Value};

use crate::common::*;
use crate::reports::expected::Rng;
use crate::reports::{start_processing, wait_complete};

const SUITE: &str = "shop";
const OTHER: &str = "shop2";
const START: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const DAY: i64 = 86_400;

/// One generated row.
#[derive(Debug, Clone)]
struct Row {
    ts: i64,
    visitor: String,
    suites: Vec<&'static str>,
    evars: [Option<String>; 5],
    events: Vec<String>,
    products: &'static [(&'static str, &'static str, i64, f64)],
    purchase_id: Option<String>,
}

const BASKETS: [&[(&str, &str, i64, f64)]; 3] = [
    &[("Shoes", "Boot", 2, 120.5)],
    &[("Shoes", "Sandal", 1, 30.0), ("Hats", "Cap", 3, 15.0)],
    &[("Bags", "Tote", 1, 45.25)],
];

/// Rows of `visitors` visitors in time order: gaps that continue a visit,
/// end it (over 30 minutes), cross a day and cross a week; eVars set on
/// some hits only; purchases with repeated purchase IDs; a serialized
/// event with repeated IDs; a numeric event; product views.
fn generate(seed: u64, visitors: usize) -> Vec<Row> {
    let mut rng = Rng(seed | 1);
    let gaps = [10, 120, 600, 1_801, 5_000, DAY - 100, DAY + 100, 3 * DAY];
    let mut rows = Vec::new();
    for v in 0..visitors {
        let mut ts = START + rng.below(3_600) as i64;
        for _ in 0..(20 + rng.below(40)) {
            ts += gaps[rng.below(gaps.len() as u64) as usize];
            let pick = |rng: &mut Rng, p: u64, values: &[&str]| {
                rng.maybe(p)
                    .then(|| values[rng.below(values.len() as u64) as usize].to_string())
            };
            let evars = [
                pick(&mut rng, 20, &["ad-a", "ad-b", "ad-c"]),
                pick(&mut rng, 30, &["search", "browse"]),
                pick(&mut rng, 15, &["promo-1", "promo-2"]),
                pick(&mut rng, 15, &["banner-x", "banner-y"]),
                pick(&mut rng, 25, &["gold", "silver"]),
            ];
            let mut events = Vec::new();
            let mut products: &[(&str, &str, i64, f64)] = &[];
            let mut purchase_id = None;
            if rng.maybe(15) {
                events.push("purchase".to_string());
                products = BASKETS[rng.below(3) as usize];
                if rng.maybe(80) {
                    purchase_id = Some(format!("P{v}-{}", rng.below(4)));
                }
            } else if rng.maybe(10) {
                events.push("prodView".to_string());
                products = BASKETS[rng.below(3) as usize];
            }
            if rng.maybe(20) {
                events.push(format!("event7:S{v}-{}", rng.below(5)));
            }
            if rng.maybe(20) {
                events.push(format!("event8={}", rng.below(9) + 1));
            }
            let suites = if rng.maybe(20) {
                vec![SUITE, OTHER]
            } else {
                vec![SUITE]
            };
            rows.push(Row {
                ts,
                visitor: format!("visitor-{v}"),
                suites,
                evars,
                events,
                products,
                purchase_id,
            });
        }
    }
    rows.sort_by_key(|r| r.ts);
    rows
}

fn batch_file(rows: &[Row]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "timestamp",
        "visitorID",
        "reportSuiteID",
        "userAgent",
        "pageName",
        "eVar1",
        "eVar2",
        "eVar3",
        "eVar4",
        "eVar5",
        "events",
        "products",
        "purchaseID",
    ])
    .unwrap();
    for r in rows {
        let mut rec = vec![
            r.ts.to_string(),
            r.visitor.clone(),
            r.suites.join(","),
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0".into(),
            "Page".into(),
        ];
        rec.extend(r.evars.iter().map(|e| e.clone().unwrap_or_default()));
        rec.push(r.events.join(","));
        rec.push(
            r.products
                .iter()
                .map(|(c, p, q, price)| format!("{c};{p};{q};{price}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        rec.push(r.purchase_id.clone().unwrap_or_default());
        w.write_record(&rec).unwrap();
    }
    gz(&w.into_inner().unwrap())
}

/// How one eVar of the suite is set up (as PATCHed below).
#[derive(Clone, Copy)]
enum Expire {
    Hit,
    Visit,
    Seconds(i64),
    OnPurchase,
    Never,
}

/// eVar1..5: never + original, hit, day, on purchase, the defaults.
const SETTINGS: [(Expire, bool); 5] = [
    (Expire::Never, true),
    (Expire::Hit, false),
    (Expire::Seconds(DAY), false),
    (Expire::OnPurchase, false),
    (Expire::Visit, false),
];

/// One row as counted in a suite.
#[derive(Debug, Default)]
struct Counted {
    day: String,
    post: [Option<String>; 5],
    order: bool,
    event7: f64,
    event8: f64,
}

/// The rules, computed here from the rows (in processing order) for one
/// suite: `settings` per eVar (expiration, original allocation).
fn compute(rows: &[Row], suite: &str, settings: &[(Expire, bool); 5]) -> Vec<(usize, Counted)> {
    // Per visitor: (visit number, visit start, last hit) and per eVar
    // (value, set at, set in visit).
    type Slot = Option<(String, i64, u32)>;
    let mut visits: HashMap<&str, (u32, i64, i64)> = HashMap::new();
    let mut live: HashMap<&str, [Slot; 5]> = HashMap::new();
    let mut serials: HashSet<String> = HashSet::new();
    let mut purchase_ids: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if !r.suites.contains(&suite) {
            continue;
        }
        let v = visits.entry(&r.visitor).or_insert((0, 0, i64::MIN));
        if v.0 == 0 || r.ts - v.2 > 1_800 || r.ts - v.1 >= 43_200 {
            *v = (v.0 + 1, r.ts, r.ts);
        } else {
            v.2 = r.ts;
        }
        let visit = v.0;
        let mut c = Counted {
            day: jiff::Timestamp::from_second(r.ts)
                .unwrap()
                .strftime("%Y-%m-%d")
                .to_string(),
            ..Counted::default()
        };
        for e in &r.events {
            if let Some(id) = e.strip_prefix("event7:") {
                if serials.insert(id.to_string()) {
                    c.event7 += 1.0;
                }
            } else if let Some(n) = e.strip_prefix("event8=") {
                c.event8 += n.parse::<f64>().unwrap();
            } else if e == "purchase" {
                c.order = r
                    .purchase_id
                    .as_ref()
                    .is_none_or(|id| purchase_ids.insert(id.clone()));
            }
        }
        let slots = live.entry(&r.visitor).or_default();
        for (n, slot) in slots.iter_mut().enumerate() {
            let (expire, original) = settings[n];
            // Expired by time or visit?
            if let Some((_, at, in_visit)) = slot {
                let gone = match expire {
                    Expire::Hit => true,
                    Expire::Visit => *in_visit != visit,
                    Expire::Seconds(s) => r.ts - *at >= s,
                    Expire::OnPurchase | Expire::Never => false,
                };
                if gone {
                    *slot = None;
                }
            }
            if let Some(sent) = &r.evars[n] {
                if !(original && slot.is_some()) {
                    *slot = Some((sent.clone(), r.ts, visit));
                }
            }
            c.post[n] = slot.as_ref().map(|(v, _, _)| v.clone());
            if matches!(expire, Expire::Hit) {
                *slot = None;
            }
            if matches!(expire, Expire::OnPurchase) && c.order {
                *slot = None;
            }
        }
        out.push((i, c));
    }
    out
}

type Table = BTreeMap<Option<String>, BTreeMap<&'static str, f64>>;

/// orders, revenue, units, events:event7, events:event8, hits by a key.
fn table<'a>(
    rows: &[Row],
    counted: &'a [(usize, Counted)],
    key: impl Fn(&'a Counted) -> Option<String>,
) -> Table {
    let mut t = Table::new();
    for (i, c) in counted {
        let r = &rows[*i];
        let e = t.entry(key(c)).or_default();
        let (revenue, units) = if c.order {
            (
                r.products.iter().map(|p| p.3).sum::<f64>(),
                r.products.iter().map(|p| p.2 as f64).sum::<f64>(),
            )
        } else {
            (0.0, 0.0)
        };
        *e.entry("orders").or_default() += f64::from(u8::from(c.order));
        *e.entry("revenue").or_default() += revenue;
        *e.entry("units").or_default() += units;
        *e.entry("events:event7").or_default() += c.event7;
        *e.entry("events:event8").or_default() += c.event8;
        *e.entry("hits").or_default() += 1.0;
    }
    t
}

async fn report(api: &Api, suite: &str, metrics: &str, dim: &str) -> (Table, Value) {
    let (st, v) = api
        .get_json(&format!(
            "/api/v1/report-suites/{suite}/report?metrics={metrics}&dimension={dim}&from=2026-01-01&to=2026-03-31&limit=10000"
        ))
        .await;
    assert_eq!(st, 200, "{v}");
    let mut t = Table::new();
    for row in v["rows"].as_array().unwrap() {
        let key = row[dim].as_str().map(str::to_string);
        let values = metrics
            .split(',')
            .map(|m| {
                let m: &'static str = Box::leak(m.to_string().into_boxed_str());
                (m, row[m].as_f64().unwrap())
            })
            .collect();
        t.insert(key, values);
    }
    (t, v)
}

fn assert_tables(got: &Table, want: &Table, what: &str) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: keys"
    );
    for (k, w) in want {
        for (m, x) in w {
            let g = got[k][m];
            assert!((g - x).abs() < 1e-6, "{what} {k:?} {m}: got {g}, want {x}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evars_events_and_commerce_match_an_independent_computation() {
    let s = start_processing().await;
    let api = Api::default_client(&s).await;
    for rsid in [SUITE, OTHER] {
        s.state
            .store
            .create_report_suite(&s.credentials.company, rsid, "UTC")
            .await
            .unwrap();
    }
    let settings = json!({"evar_settings": [
        {"evar": 1, "expiration": "never", "allocation": "original"},
        {"evar": 2, "expiration": "hit"},
        {"evar": 3, "expiration": "day"},
        {"evar": 4, "expiration": "event:purchase", "allocation": "most_recent"},
        {"evar": 5, "expiration": "visit"}
    ]});
    let r = api
        .http
        .patch(format!("{}/api/v1/report-suites/{SUITE}", api.base))
        .bearer_auth(&api.token)
        .header("x-api-key", &api.api_key)
        .json(&settings)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let suite: Value = r.json().await.unwrap();
    // eVar5's settings are the defaults: not listed.
    assert_eq!(
        suite["evar_settings"],
        json!([
            {"evar": 1, "expiration": "never", "allocation": "original"},
            {"evar": 2, "expiration": "hit", "allocation": "most_recent"},
            {"evar": 3, "expiration": "1d", "allocation": "most_recent"},
            {"evar": 4, "expiration": "event:purchase", "allocation": "most_recent"}
        ])
    );

    let rows = generate(11, 12);
    assert!(rows.len() > 300, "{} rows", rows.len());
    // Two files of one visitor group: processed in order, the second
    // with the visitor state and the counted IDs the first left.
    let half = rows.len() / 2;
    let mut ids = Vec::new();
    for chunk in [&rows[..half], &rows[half..]] {
        let (st, v) = api.upload(batch_file(chunk), "g1").await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["invalid_rows"], 0, "{v}");
        ids.push(v["file_id"].as_str().unwrap().to_string());
    }
    wait_complete(&s, &ids).await;

    let counted = compute(&rows, SUITE, &SETTINGS);
    // The cases the rules are about occur in the rows.
    assert!(counted
        .iter()
        .any(|(i, c)| rows[*i].events.contains(&"purchase".into()) && !c.order));
    assert!(counted
        .iter()
        .any(|(i, c)| c.post[0].is_some() && rows[*i].evars[0].is_none()));
    assert!(counted
        .iter()
        .any(|(i, c)| rows[*i].evars[0].is_some() && c.post[0] != rows[*i].evars[0]));
    let metrics = "orders,revenue,units,events:event7,events:event8,hits";
    for n in 0..5 {
        let dim = format!("evar{}", n + 1);
        let (got, _) = report(&api, SUITE, metrics, &dim).await;
        let want = table(&rows, &counted, |c| c.post[n].clone());
        assert_tables(&got, &want, &dim);
    }
    let (got, v) = report(&api, SUITE, metrics, "day").await;
    let mut want = table(&rows, &counted, |c| Some(c.day.clone()));
    // Every day of the range has a row.
    for k in got.keys() {
        want.entry(k.clone())
            .or_insert_with(|| got[k].keys().map(|m| (*m, 0.0)).collect());
    }
    assert_tables(&got, &want, "day");
    let orders: f64 = counted.iter().filter(|(_, c)| c.order).count() as f64;
    assert_eq!(v["totals"]["orders"].as_f64().unwrap(), orders);

    // By product: each product of a counted purchase, its price and
    // quantity; product views count hits.
    let (got, _) = report(&api, SUITE, "orders,revenue,units,hits", "product").await;
    let mut want = Table::new();
    for (i, c) in &counted {
        for (_, p, q, price) in rows[*i].products {
            let e = want.entry(Some(p.to_string())).or_default();
            *e.entry("orders").or_default() += f64::from(u8::from(c.order));
            *e.entry("revenue").or_default() += if c.order { *price } else { 0.0 };
            *e.entry("units").or_default() += if c.order { *q as f64 } else { 0.0 };
            *e.entry("hits").or_default() += 1.0;
        }
    }
    assert_tables(&got, &want, "product");

    // Conversion rate: orders / visits.
    let (st, v) = api
        .get_json(&format!(
            "/api/v1/report-suites/{SUITE}/report?metrics=conversion_rate,orders,visits&dimension=day&from=2026-01-01&to=2026-03-31"
        ))
        .await;
    assert_eq!(st, 200, "{v}");
    let t = &v["totals"];
    let rate = t["orders"].as_f64().unwrap() / t["visits"].as_f64().unwrap();
    assert!(
        (t["conversion_rate"].as_f64().unwrap() - rate).abs() < 1e-9,
        "{t}"
    );

    // The other suite has the default settings and its own serials and
    // purchase IDs: the same IDs count there once more.
    let defaults = [(Expire::Visit, false); 5];
    let other = compute(&rows, OTHER, &defaults);
    assert!(!other.is_empty());
    for n in [0, 1] {
        let dim = format!("evar{}", n + 1);
        let (got, _) = report(&api, OTHER, metrics, &dim).await;
        assert_tables(&got, &table(&rows, &other, |c| c.post[n].clone()), &dim);
    }

    // The processing logs say what was not counted again.
    let mut logs = String::new();
    for id in &ids {
        let (st, f) = api.get_json(&format!("/aa/collect/v1/events/{id}")).await;
        assert_eq!(st, 200, "{f}");
        logs.push_str(f["processing_log"].as_str().unwrap_or_default());
    }
    assert!(logs.contains("Duplicate purchases: "), "{logs}");
    assert!(logs.contains("Serialized events: "), "{logs}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_evar_settings_get_a_precise_error() {
    let s = start_processing().await;
    let api = Api::default_client(&s).await;
    s.state
        .store
        .create_report_suite(&s.credentials.company, SUITE, "UTC")
        .await
        .unwrap();
    for (body, needle) in [
        (json!([{"evar": 0, "expiration": "visit"}]), "1 to 250"),
        (json!([{"evar": 251, "expiration": "visit"}]), "1 to 250"),
        (
            json!([{"evar": 3, "expiration": "soon"}]),
            "'soon' is not an expiration",
        ),
        (
            json!([{"evar": 3, "expiration": "visit", "allocation": "linear"}]),
            "'linear' is not an allocation",
        ),
        (
            json!([{"evar": 3, "expiration": "visit"}, {"evar": 3, "expiration": "hit"}]),
            "set twice",
        ),
        (
            json!([{"evar": 3, "expiration": "event:"}]),
            "event of an expiration",
        ),
    ] {
        let r = api
            .http
            .patch(format!("{}/api/v1/report-suites/{SUITE}", api.base))
            .bearer_auth(&api.token)
            .header("x-api-key", &api.api_key)
            .json(&json!({ "evar_settings": body }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "invalid_evar_settings", "{v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{v}");
    }
    let (st, v) = api
        .get_json(&format!("/api/v1/report-suites/{SUITE}"))
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["evar_settings"], json!([]), "nothing was changed");
    s.stop().await.unwrap();
}
