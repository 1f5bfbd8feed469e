//! Reports over a real lake in a temp dir, compared metric by metric and
//! dimension by dimension with an independent computation over the same
//! input rows.

mod expected;

use std::collections::BTreeMap;

use bdia_lake::{Lake, LakeConfig, SuiteZones};
use bdia_model::{enrich_file, Identity, MemoryStates};
use bdia_report::{ReportEngine, ReportError, ReportRequest};
use expected::*;

/// The company the reports are run for.
const COMPANY: &str = "acme";

/// Writes the rows as files of [`COMPANY`] (split by time, visitor state
/// carried from one file to the next like the processing stage does) and
/// returns `(file_id, row)` in processing order.
fn build_lake(lake: &Lake, rows: &[Input], files: usize) -> Vec<(String, Input)> {
    build_company_lake(lake, COMPANY, rows, files)
}

/// [`build_lake`] for any company (file ids start with the company's).
fn build_company_lake(
    lake: &Lake,
    company: &str,
    rows: &[Input],
    files: usize,
) -> Vec<(String, Input)> {
    let mut zones = SuiteZones::utc();
    zones.insert(WEB, WEB_TZ).unwrap();
    let identity = Identity::new(*b"test-salt");
    let mut states = MemoryStates::default();
    let mut out = Vec::new();
    let per = rows.len().div_ceil(files);
    for (i, chunk) in rows.chunks(per).enumerate() {
        let file_id = format!("{company}-file-{i:02}");
        let hits: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(n, r)| to_hit(n as u64 + 1, r))
            .collect();
        let enriched = enrich_file(hits, &identity, &mut states).unwrap();
        states.apply(&enriched.delta);
        let mut w = lake.begin(company, &file_id, zones.clone()).unwrap();
        for h in &enriched.hits {
            w.push(h).unwrap();
        }
        let staged = w.finish().unwrap();
        let txn = bdia_lake::FileTxn {
            app_id: "group-0".into(),
            version: i as i64 + 1,
        };
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(lake.publish(staged, &txn))
        })
        .unwrap();
        out.extend(chunk.iter().map(|r| (file_id.clone(), r.clone())));
    }
    out
}

fn as_f64(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Runs one report and compares every row and total with the expectation.
async fn check(
    engine: &ReportEngine,
    all: &[expected::Sessionized<'_>],
    dim: &str,
    from: &str,
    to: &str,
) {
    let metrics = METRICS.join(",");
    let req = ReportRequest::parse(
        WEB,
        Some(&metrics),
        Some(dim),
        Some(from),
        Some(to),
        Some("10000"),
    )
    .unwrap();
    let report = engine.run(COMPANY, &req, WEB_TZ).await.unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["report_suite"], WEB);
    assert_eq!(json["dimension"], dim);
    assert_eq!(json["from"], from);
    assert_eq!(json["to"], to);
    let (want_rows, want_totals) = expected::report(all, dim, from, to);
    let mut got_rows: BTreeMap<Option<String>, BTreeMap<String, f64>> = BTreeMap::new();
    for row in json["rows"].as_array().unwrap() {
        let obj = row.as_object().unwrap();
        let key = obj[dim].as_str().map(str::to_string);
        let values = METRICS
            .iter()
            .map(|m| (m.to_string(), as_f64(&obj[*m])))
            .collect();
        assert!(
            got_rows.insert(key.clone(), values).is_none(),
            "{dim}: row {key:?} twice"
        );
    }
    let got_keys: Vec<_> = got_rows.keys().collect();
    let want_keys: Vec<_> = want_rows.keys().collect();
    assert_eq!(got_keys, want_keys, "{dim} {from}..{to}: row keys");
    for (key, want) in &want_rows {
        for (metric, w) in want {
            let g = got_rows[key][metric];
            assert!(
                (g - w).abs() < 1e-9,
                "{dim} {from}..{to} row {key:?} {metric}: got {g}, want {w}"
            );
        }
    }
    for (metric, w) in &want_totals {
        let g = as_f64(&json["totals"][metric]);
        assert!(
            (g - w).abs() < 1e-9,
            "{dim} {from}..{to} total {metric}: got {g}, want {w}"
        );
    }
    // Row order: time ascending, else the first metric descending.
    let rows = json["rows"].as_array().unwrap();
    if dim == "day" || dim == "hour" {
        let keys: Vec<&str> = rows.iter().map(|r| r[dim].as_str().unwrap()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    } else {
        let firsts: Vec<f64> = rows.iter().map(|r| as_f64(&r[METRICS[0]])).collect();
        assert!(
            firsts.windows(2).all(|w| w[0] >= w[1]),
            "{dim}: order {firsts:?}"
        );
    }
}

const DIMENSIONS: &[&str] = &[
    "day",
    "hour",
    "page",
    "page_url",
    "link_name",
    "link_type",
    "channel",
    "campaign",
    "referrer_host",
    "evar3",
    "prop5",
    "evar7",
    "visitor_id_type",
    "file_id",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_and_dimension_matches_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), LakeConfig::default()).unwrap();
    // 2026-03-06T12:00Z: the range crosses the start of daylight saving
    // time in New York (2026-03-08).
    let rows = generate(7, 120, 1_772_798_400);
    let processed = build_lake(&lake, &rows, 3);
    let all = sessionize(&processed, WEB, WEB_TZ);
    assert!(all.len() > 1000, "{} rows", all.len());
    assert!(
        all.iter().any(|s| s.visit > 1),
        "some visitor has a second visit"
    );
    let engine = ReportEngine::with_partitions(lake, 2).unwrap();
    for dim in DIMENSIONS {
        check(&engine, &all, dim, "2026-03-05", "2026-03-12").await;
    }
    // A sub-range: visits that began before it are not counted by day, and
    // bounces only see the range's hits.
    for dim in ["day", "hour", "page", "visitor_id_type"] {
        check(&engine, &all, dim, "2026-03-08", "2026-03-09").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_keeps_the_top_rows_and_totals_cover_everything() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), LakeConfig::default()).unwrap();
    let rows = generate(11, 40, 1_772_798_400);
    let processed = build_lake(&lake, &rows, 1);
    let all = sessionize(&processed, WEB, WEB_TZ);
    let engine = ReportEngine::new(lake).unwrap();
    let req = ReportRequest::parse(
        WEB,
        Some("pageviews,visitors"),
        Some("page"),
        Some("2026-03-01"),
        Some("2026-03-31"),
        Some("2"),
    )
    .unwrap();
    let report = serde_json::to_value(engine.run(COMPANY, &req, WEB_TZ).await.unwrap()).unwrap();
    let rows_json = report["rows"].as_array().unwrap();
    assert_eq!(rows_json.len(), 2);
    let (want, totals) = expected::report(&all, "page", "2026-03-01", "2026-03-31");
    let mut by_pv: Vec<f64> = want.values().map(|m| m["pageviews"]).collect();
    by_pv.sort_by(|a, b| b.partial_cmp(a).unwrap());
    assert_eq!(as_f64(&rows_json[0]["pageviews"]), by_pv[0]);
    assert_eq!(as_f64(&rows_json[1]["pageviews"]), by_pv[1]);
    assert_eq!(as_f64(&report["totals"]["pageviews"]), totals["pageviews"]);
    assert_eq!(as_f64(&report["totals"]["visitors"]), totals["visitors"]);
    // Keys of a row: the dimension first, then the metrics in order.
    let keys: Vec<&String> = rows_json[0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_suites_and_uncommitted_objects_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), LakeConfig::default()).unwrap();
    let rows = generate(3, 30, 1_772_798_400);
    let processed = build_lake(&lake, &rows, 2);
    let web = sessionize(&processed, WEB, WEB_TZ);
    let app = sessionize(&processed, APP, "UTC");
    let engine = ReportEngine::new(lake.clone()).unwrap();
    let run_for = |company: &'static str, suite: &'static str, tz: &'static str| {
        let engine = engine.clone();
        async move {
            let req = ReportRequest::parse(
                suite,
                Some("hits"),
                Some("day"),
                Some("2026-03-01"),
                Some("2026-03-31"),
                None,
            )
            .unwrap();
            let r = serde_json::to_value(engine.run(company, &req, tz).await.unwrap()).unwrap();
            as_f64(&r["totals"]["hits"]) as usize
        }
    };
    let run = |suite, tz| run_for(COMPANY, suite, tz);
    assert_eq!(run(WEB, WEB_TZ).await, web.len());
    assert_eq!(run(APP, "UTC").await, app.len());

    // Another company's suite of the same ID: its own directory, never read
    // for this company (and this company's never read for it).
    let other = build_company_lake(&lake, "beta", &generate(4, 7, 1_772_798_400), 1);
    let beta_web = sessionize(&other, WEB, WEB_TZ);
    assert!(!beta_web.is_empty() && beta_web.len() != web.len());
    assert_eq!(run(WEB, WEB_TZ).await, web.len());
    assert_eq!(run_for("beta", WEB, WEB_TZ).await, beta_web.len());
    assert_eq!(
        run_for("gamma", WEB, WEB_TZ).await,
        0,
        "a company without data reads nothing"
    );

    // A copy of a committed part under the name of a file that never
    // committed: a reader that globbed the directory would count it twice.
    let parts = lake
        .reader()
        .parts(
            COMPANY,
            WEB,
            "2026-03-01".parse().unwrap(),
            "2026-03-31".parse().unwrap(),
        )
        .await
        .unwrap();
    let first = &parts[0];
    let stray = object_store::path::Path::from(first.path.to_string().replace(
        &format!("part-{}-", first.file_id.as_deref().unwrap()),
        "part-uncommitted-",
    ));
    use object_store::ObjectStoreExt;
    lake.store().copy(&first.path, &stray).await.unwrap();
    assert_eq!(run(WEB, WEB_TZ).await, web.len());

    // A suite with no data: zero rows for every day, zero totals.
    let req = ReportRequest::parse(
        "acme.none",
        Some("pageviews,visits,visitors,bounces,events:purchase"),
        Some("day"),
        Some("2026-03-01"),
        Some("2026-03-03"),
        None,
    )
    .unwrap();
    let r = serde_json::to_value(engine.run(COMPANY, &req, "UTC").await.unwrap()).unwrap();
    assert_eq!(r["rows"].as_array().unwrap().len(), 3);
    assert_eq!(r["totals"]["visitors"], 0);
    assert_eq!(r["rows"][0]["events:purchase"], 0);
}

#[tokio::test]
async fn an_unknown_time_zone_is_an_invalid_request() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), LakeConfig::default()).unwrap();
    let engine = ReportEngine::new(lake).unwrap();
    let req = ReportRequest::parse(
        WEB,
        Some("hits"),
        None,
        Some("2026-03-01"),
        Some("2026-03-01"),
        None,
    )
    .unwrap();
    let err = engine.run(COMPANY, &req, "Mars/Olympus").await.unwrap_err();
    assert!(
        matches!(
            err,
            ReportError::Invalid {
                code: "invalid_time_zone",
                ..
            }
        ),
        "{err:?}"
    );
}
