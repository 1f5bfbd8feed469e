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

/// Rows of people (robots' rows are left out of reports by default).
fn humans(rows: &[expected::Sessionized<'_>]) -> usize {
    rows.iter().filter(|s| !is_bot(s.input)).count()
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
    check_with(engine, all, dim, from, to, false).await
}

/// [`check`], robots' hits included or not.
async fn check_with(
    engine: &ReportEngine,
    all: &[expected::Sessionized<'_>],
    dim: &str,
    from: &str,
    to: &str,
    include_bots: bool,
) {
    check_metrics(engine, all, dim, from, to, include_bots, METRICS).await
}

/// [`check_with`] of the metrics `asked`.
async fn check_metrics(
    engine: &ReportEngine,
    all: &[expected::Sessionized<'_>],
    dim: &str,
    from: &str,
    to: &str,
    include_bots: bool,
    asked: &[&str],
) {
    let metrics = asked.join(",");
    let req = ReportRequest::parse(
        WEB,
        Some(&metrics),
        Some(dim),
        Some(from),
        Some(to),
        Some("10000"),
    )
    .unwrap()
    .with_include_bots(Some(if include_bots { "true" } else { "false" }))
    .unwrap();
    let report = engine.run(COMPANY, &req, WEB_TZ).await.unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["report_suite"], WEB);
    assert_eq!(json["dimension"], dim);
    assert_eq!(json["from"], from);
    assert_eq!(json["to"], to);
    let (want_rows, want_totals) = expected::report_with(all, dim, from, to, include_bots);
    let mut got_rows: BTreeMap<Option<String>, BTreeMap<String, f64>> = BTreeMap::new();
    for row in json["rows"].as_array().unwrap() {
        let obj = row.as_object().unwrap();
        let key = obj[dim].as_str().map(str::to_string);
        let values = asked
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
        for metric in asked {
            let w = want[*metric];
            let g = got_rows[key][*metric];
            assert!(
                (g - w).abs() < 1e-9,
                "{dim} {from}..{to} row {key:?} {metric}: got {g}, want {w}"
            );
        }
    }
    for metric in asked {
        let w = want_totals[*metric];
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
        let firsts: Vec<f64> = rows.iter().map(|r| as_f64(&r[asked[0]])).collect();
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
    "browser",
    "browser_version",
    "os",
    "device_type",
    "referrer_type",
    "search_engine",
    "entry_page",
    "exit_page",
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
    let every: Vec<&str> = METRICS.iter().chain(COMMERCE).copied().collect();
    for dim in DIMENSIONS {
        check_metrics(
            &engine,
            &all,
            dim,
            "2026-03-05",
            "2026-03-12",
            false,
            &every,
        )
        .await;
    }
    assert!(
        all.iter()
            .any(|s| s.input.events.iter().any(|(n, _)| n == "purchase") && !s.order),
        "some purchases repeat a purchase ID"
    );
    assert!(
        all.iter()
            .any(|s| s.post_evar3.is_some() && s.input.evar3.is_none()),
        "some eVar3 values persist to later hits"
    );
    // Revenue, orders and units by product and by category.
    for (dim, category) in [("product", false), ("category", true)] {
        let want = expected::by_product(&all, category, "2026-03-05", "2026-03-12");
        assert!(want.len() >= 3, "{dim}: {want:?}");
        let got = rows_in(
            &engine,
            "revenue,orders,units",
            dim,
            "2026-03-05",
            "2026-03-12",
        )
        .await;
        let got: expected::Rows = got
            .into_iter()
            .map(|(k, row)| {
                let m = ["revenue", "orders", "units"]
                    .iter()
                    .map(|m| (m.to_string(), as_f64(&row[*m])))
                    .collect();
                (k, m)
            })
            .collect();
        assert_eq!(got, want, "{dim}");
    }
    // A sub-range: visits that began before it are not counted by day, and
    // bounces only see the range's hits.
    for dim in [
        "day",
        "hour",
        "page",
        "visitor_id_type",
        "entry_page",
        "exit_page",
    ] {
        check(&engine, &all, dim, "2026-03-08", "2026-03-09").await;
    }
    // Robots' hits, asked for.
    assert!(
        all.iter().any(|s| is_bot(s.input)),
        "some rows are a robot's"
    );
    for dim in ["device_type", "browser", "day", "exit_page"] {
        check_with(&engine, &all, dim, "2026-03-05", "2026-03-12", true).await;
    }
}

/// One report's rows as `dimension value -> metric -> value`.
async fn rows_of(
    engine: &ReportEngine,
    metrics: &str,
    dim: &str,
) -> BTreeMap<Option<String>, serde_json::Value> {
    rows_in(engine, metrics, dim, "2026-03-01", "2026-03-31").await
}

/// [`rows_of`] over `from..=to`.
async fn rows_in(
    engine: &ReportEngine,
    metrics: &str,
    dim: &str,
    from: &str,
    to: &str,
) -> BTreeMap<Option<String>, serde_json::Value> {
    let req = ReportRequest::parse(
        WEB,
        Some(metrics),
        Some(dim),
        Some(from),
        Some(to),
        Some("10000"),
    )
    .unwrap();
    let r = serde_json::to_value(engine.run(COMPANY, &req, WEB_TZ).await.unwrap()).unwrap();
    r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row[dim].as_str().map(str::to_string), row.clone()))
        .collect()
}

fn page_view(visitor: &str, ts: i64, page: &str) -> Input {
    let mut rows = generate(1, 1, ts);
    let mut r = rows.remove(0);
    r.kind = bdia_format::hit::VisitorKind::Vid;
    r.visitor = visitor.to_string();
    r.ts = ts;
    r.suites = vec![WEB.to_string()];
    r.link = None;
    r.link_name = None;
    r.page_name = Some(page.to_string());
    r.ua = Some(0);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_page_when_a_visit_spans_two_files_and_the_bounce_of_a_single_page_visit() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), LakeConfig::default()).unwrap();
    let t = 1_772_798_400 + 3_600;
    // Visitor a: Home, Cart in the first file, Checkout in the second:
    // one visit of three pages over 300 s. Visitor b: one page, a bounce.
    let rows = vec![
        page_view("a", t, "Home"),
        page_view("b", t + 10, "Landing"),
        page_view("a", t + 60, "Cart"),
        page_view("a", t + 300, "Checkout"),
    ];
    build_lake(&lake, &rows, 2);
    let engine = ReportEngine::new(lake).unwrap();
    let m = "visits,bounces,entries,bounce_rate,total_seconds_spent,time_spent_per_visit";
    let exit = rows_of(&engine, m, "exit_page").await;
    let keys: Vec<_> = exit.keys().cloned().collect();
    assert_eq!(
        keys,
        [Some("Checkout".to_string()), Some("Landing".to_string())]
    );
    let checkout = &exit[&Some("Checkout".to_string())];
    assert_eq!(checkout["visits"], 1);
    assert_eq!(checkout["bounces"], 0);
    assert_eq!(checkout["total_seconds_spent"], 300);
    assert_eq!(checkout["time_spent_per_visit"], 300);
    let entry = rows_of(&engine, m, "entry_page").await;
    assert_eq!(entry[&Some("Home".to_string())]["entries"], 1);
    assert_eq!(entry[&Some("Home".to_string())]["bounce_rate"], 0);
    let landing = &entry[&Some("Landing".to_string())];
    assert_eq!(landing["bounces"], 1);
    assert_eq!(landing["entries"], 1);
    assert_eq!(landing["bounce_rate"], 1);
    assert_eq!(landing["total_seconds_spent"], 0);
    assert_eq!(
        landing["time_spent_per_visit"], 0,
        "no visit with a second hit"
    );
    // Per page: time from each page to the next of its visit.
    let pages = rows_of(&engine, "total_seconds_spent", "page").await;
    assert_eq!(pages[&Some("Home".to_string())]["total_seconds_spent"], 60);
    assert_eq!(pages[&Some("Cart".to_string())]["total_seconds_spent"], 240);
    assert_eq!(
        pages[&Some("Checkout".to_string())]["total_seconds_spent"],
        0
    );
}

/// Copies a directory tree.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_written_before_the_device_columns_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lake-v1");
    copy_tree(&fixture, dir.path());
    let lake = Lake::local(dir.path(), LakeConfig::default()).unwrap();
    // A second writer (another node) that loaded the table before its
    // schema changed.
    let other = Lake::local(dir.path(), LakeConfig::default()).unwrap();
    assert!(!other.files(COMPANY).await.unwrap().is_empty());
    // The rows the fixture was written from (tests/fixtures/README.md),
    // as they were then: no user agent told robots apart.
    let mut rows = generate_with(5, 12, 1_772_798_400, 4);
    for r in &mut rows {
        r.ua = None;
        r.purchase_id = None;
    }
    let processed: Vec<(String, Input)> = rows
        .iter()
        .map(|r| ("acme-file-00".to_string(), r.clone()))
        .collect();
    let all = sessionize(&processed, WEB, WEB_TZ);
    let engine = ReportEngine::with_partitions(lake.clone(), 2).unwrap();
    for dim in [
        "day",
        "page",
        "referrer_host",
        "entry_page",
        "exit_page",
        "file_id",
    ] {
        check(&engine, &all, dim, "2026-03-05", "2026-03-12").await;
    }
    // The new columns read as null in the old rows.
    for dim in ["browser", "device_type", "referrer_type", "search_engine"] {
        let r = rows_of(&engine, "hits", dim).await;
        let keys: Vec<_> = r.keys().collect();
        assert_eq!(keys, [&None], "{dim}");
        assert_eq!(r[&None]["hits"], all.len());
    }

    // A file of today's schema into the same table: the table gets the new
    // columns (one commit), both files are read.
    let newer = [page_view("new-visitor", 1_772_798_400 + 7_200, "Home")];
    let mut zones = SuiteZones::utc();
    zones.insert(WEB, WEB_TZ).unwrap();
    let hits = vec![to_hit(1, &newer[0])];
    let enriched =
        enrich_file(hits, &Identity::new(*b"test-salt"), MemoryStates::default()).unwrap();
    let mut w = lake.begin(COMPANY, "acme-file-01", zones).unwrap();
    for h in &enriched.hits {
        w.push(h).unwrap();
    }
    let txn = bdia_lake::FileTxn {
        app_id: "group-0".into(),
        version: 2,
    };
    lake.publish(w.finish().unwrap(), &txn).await.unwrap();
    let r = rows_of(&engine, "hits", "device_type").await;
    assert_eq!(r[&None]["hits"], all.len());
    assert_eq!(r[&Some("desktop".to_string())]["hits"], 1);
    // The other writer commits on its stale snapshot: it sees the columns
    // are there now and adds its file.
    let mut z = SuiteZones::utc();
    z.insert(WEB, WEB_TZ).unwrap();
    let mut w = other.begin(COMPANY, "acme-file-02", z).unwrap();
    for h in &enriched.hits {
        w.push(h).unwrap();
    }
    let txn = bdia_lake::FileTxn {
        app_id: "group-1".into(),
        version: 1,
    };
    let done = other.publish(w.finish().unwrap(), &txn).await.unwrap();
    assert!(
        matches!(done, bdia_lake::CommitOutcome::Committed { .. }),
        "{done:?}"
    );
    let r = rows_of(&engine, "hits", "device_type").await;
    assert_eq!(r[&Some("desktop".to_string())]["hits"], 2);
    let log = std::fs::read_dir(dir.path().join("hits/company=acme/_delta_log"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<Vec<_>>();
    assert!(
        log.iter()
            .any(|c| c.contains("\"ADD COLUMN\"") && c.contains("device_type")),
        "the table's schema gained the columns in its log"
    );
    // A compaction rewrites old and new rows together and keeps the
    // values of both.
    let c = lake.compact(COMPANY, 2, 1 << 30).await.unwrap();
    assert!(c.files_removed >= 2, "{c:?}");
    let r = rows_of(&engine, "hits", "device_type").await;
    assert_eq!(r[&None]["hits"], all.len());
    assert_eq!(r[&Some("desktop".to_string())]["hits"], 2);
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
    assert_eq!(run(WEB, WEB_TZ).await, humans(&web));
    assert_eq!(run(APP, "UTC").await, humans(&app));

    // Another company's suite of the same ID: its own directory, never read
    // for this company (and this company's never read for it).
    let other = build_company_lake(&lake, "beta", &generate(4, 7, 1_772_798_400), 1);
    let beta_web = sessionize(&other, WEB, WEB_TZ);
    assert!(!beta_web.is_empty() && humans(&beta_web) != humans(&web));
    assert_eq!(run(WEB, WEB_TZ).await, humans(&web));
    assert_eq!(run_for("beta", WEB, WEB_TZ).await, humans(&beta_web));
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
    assert_eq!(run(WEB, WEB_TZ).await, humans(&web));

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
