//! Reports over HTTP: files uploaded, processed to COMPLETE by the server,
//! then every metric and dimension compared with an independent
//! computation over the same input rows; tenancy; bad parameters; the
//! console's assets.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bdia_server::tenancy;
use bdia_server::testing::TestServer;
use bdia_store::{CompanySettings, FileStatus};
use serde_json::Value;

use crate::common::*;

#[allow(dead_code)]
#[path = "../../../bdia-report/tests/it/expected.rs"]
pub mod expected;

use expected::{Input, COMMERCE, METRICS, WEB, WEB_TZ};

const HEADER: &str = "timestamp,visitorID,IPAddress,reportSuiteID,userAgent,pageName,pageURL,linkType,linkName,channel,campaign,referrer,eVar3,prop5,events,products,purchaseID";

/// The rows as a gzipped batch file.
pub fn batch_file(rows: &[&Input]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(HEADER.split(',')).unwrap();
    for r in rows {
        let (vid, ip) = match r.kind {
            bdia_format::hit::VisitorKind::Ip => ("", r.visitor.as_str()),
            _ => (r.visitor.as_str(), ""),
        };
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let events = r
            .events
            .iter()
            .map(|(n, v)| match v {
                Some(v) => format!("{n}={v}"),
                None => n.clone(),
            })
            .collect::<Vec<_>>()
            .join(",");
        w.write_record([
            r.ts.to_string(),
            vid.to_string(),
            ip.to_string(),
            r.suites.join(","),
            // The row's known user agent (robots among them); the format
            // needs one, so rows without get one that is nobody's robot.
            r.ua.map_or("Mozilla/5.0", |i| expected::USER_AGENTS[i].0)
                .to_string(),
            o(&r.page_name),
            o(&r.page_url),
            r.link.map(String::from).unwrap_or_default(),
            o(&r.link_name),
            o(&r.channel),
            o(&r.campaign),
            o(&r.referrer),
            o(&r.evar3),
            o(&r.prop5),
            events,
            r.products
                .iter()
                .map(|(c, p, q, price)| format!("{c};{p};{q};{price}"))
                .collect::<Vec<_>>()
                .join(","),
            o(&r.purchase_id),
        ])
        .unwrap();
    }
    gz(&w.into_inner().unwrap())
}

pub(crate) async fn start_processing() -> TestServer {
    start_with(|c| {
        c.processing.enabled = true;
        c.processing.poll_interval_ms = 50;
    })
    .await
}

/// Waits until every file is COMPLETE (a generous bound, not a timing
/// assertion).
pub async fn wait_complete(s: &TestServer, ids: &[String]) {
    let company = s.credentials.company.clone();
    for _ in 0..2_400 {
        let mut done = true;
        for id in ids {
            let r = s.state.store.get_file(&company, id).await.unwrap().unwrap();
            assert_ne!(r.status, FileStatus::Error, "{id}: {}", r.processing_log);
            done &= r.status == FileStatus::Complete;
        }
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("files did not complete");
}

/// Uploads the rows as files: visitors split over two visitor groups, each
/// group's rows over two files in time order. Returns `(file_id, row)` in
/// the order each visitor's rows were processed.
pub async fn upload_rows(api: &Api, rows: &[Input]) -> Vec<(String, Input)> {
    let mut groups: BTreeMap<String, Vec<&Input>> = BTreeMap::new();
    for r in rows {
        let g = if r.visitor.len() % 2 == 0 {
            "g-even"
        } else {
            "g-odd"
        };
        groups.entry(g.to_string()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (g, rs) in &groups {
        let half = rs.len() / 2;
        for chunk in [&rs[..half], &rs[half..]] {
            let (st, v) = api.upload(batch_file(chunk), g).await;
            assert_eq!(st, 200, "{v}");
            assert_eq!(v["invalid_rows"], 0, "{v}");
            let id = v["file_id"].as_str().unwrap().to_string();
            out.extend(chunk.iter().map(|r| (id.clone(), (*r).clone())));
        }
    }
    out
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_over_uploaded_files_match_an_independent_computation() {
    let s = start_processing().await;
    tenancy::create_report_suite(&*s.state.store, &s.credentials.company, WEB, WEB_TZ)
        .await
        .unwrap();
    let api = Api::default_client(&s).await;
    let rows = expected::generate(21, 60, 1_772_798_400);
    let processed = upload_rows(&api, &rows).await;
    let ids: Vec<String> = {
        let mut v: Vec<String> = processed.iter().map(|(id, _)| id.clone()).collect();
        v.dedup();
        v
    };
    wait_complete(&s, &ids).await;
    // Each visitor's rows in time order (one group, files in order).
    let mut ordered = processed.clone();
    ordered.sort_by_key(|(_, r)| r.ts);
    let all = expected::sessionize(&ordered, WEB, WEB_TZ);

    let asked: Vec<&str> = METRICS.iter().chain(COMMERCE).copied().collect();
    let metrics = asked.join(",");
    for dim in [
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
        "visitor_id_type",
        "file_id",
        "referrer_type",
        "search_engine",
        "entry_page",
        "exit_page",
    ] {
        let (from, to) = ("2026-03-05", "2026-03-12");
        let (st, v) = api
            .get_json(&format!(
                "/api/v1/report-suites/{WEB}/report?metrics={metrics}&dimension={dim}&from={from}&to={to}&limit=10000"
            ))
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["report_suite"], WEB);
        assert_eq!(v["dimension"], dim);
        let (want, totals) = expected::report(&all, dim, from, to);
        let mut got: BTreeMap<Option<String>, &Value> = BTreeMap::new();
        for row in v["rows"].as_array().unwrap() {
            got.insert(row[dim].as_str().map(str::to_string), row);
        }
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{dim}: row keys"
        );
        for (key, w) in &want {
            for (m, x) in w {
                let g = num(&got[key][m.as_str()]);
                assert!((g - x).abs() < 1e-9, "{dim} {key:?} {m}: got {g}, want {x}");
            }
        }
        for (m, x) in &totals {
            let g = num(&v["totals"][m.as_str()]);
            assert!((g - x).abs() < 1e-9, "{dim} total {m}: got {g}, want {x}");
        }
    }

    // The groups endpoint sees both groups, done.
    let (st, g) = api.get_json("/api/v1/groups").await;
    assert_eq!(st, 200, "{g}");
    let groups = g["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{g}");
    for grp in groups {
        assert_eq!(grp["queued"], 0);
        assert!(grp["in_progress"].is_null());
        assert!(grp["last_completed"].is_string());
        assert!(grp["rows_per_second"].as_f64().unwrap() > 0.0);
    }
    let (st, suites) = api.get_json("/api/v1/report-suites").await;
    assert_eq!(st, 200);
    let names: Vec<&str> = suites["report_suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rsid"].as_str().unwrap())
        .collect();
    assert!(names.contains(&WEB), "{suites}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_companys_suite_is_not_found() {
    let s = start().await;
    let acme = Api::default_client(&s).await;
    tenancy::create_report_suite(&*s.state.store, &s.credentials.company, "acme.web", "UTC")
        .await
        .unwrap();
    tenancy::create_company(&*s.state.store, "beta", CompanySettings::default())
        .await
        .unwrap();
    let (client, secret) = tenancy::create_client(&*s.state.store, "beta", None, None, None)
        .await
        .unwrap();
    let beta = Api::with(&s, &client.client_id, &secret).await;
    let q = "report?metrics=hits&from=2026-01-01&to=2026-01-02";
    let (st, v) = acme
        .get_json(&format!("/api/v1/report-suites/acme.web/{q}"))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["rows"].as_array().unwrap().len(), 2);
    let (st, v) = beta
        .get_json(&format!("/api/v1/report-suites/acme.web/{q}"))
        .await;
    assert_eq!(st, 404, "{v}");
    assert_eq!(v["error"], "Report suite not found");
    let (st, _) = acme
        .get_json(&format!("/api/v1/report-suites/nope/{q}"))
        .await;
    assert_eq!(st, 404);
    let (_, suites) = beta.get_json("/api/v1/report-suites").await;
    assert!(suites["report_suites"].as_array().unwrap().is_empty());
    let (_, groups) = beta.get_json("/api/v1/groups").await;
    assert!(groups["groups"].as_array().unwrap().is_empty());

    // Same authentication as the ingestion API.
    let r = http()
        .get(format!(
            "{}/api/v1/report-suites/acme.web/{q}",
            s.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let _: Value = r.json().await.unwrap();
    let r = http()
        .get(format!(
            "{}/api/v1/report-suites/acme.web/{q}",
            s.base_url()
        ))
        .bearer_auth(&acme.token)
        .header("x-api-key", "someone-else")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_precise_json_400s() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    tenancy::create_report_suite(&*s.state.store, &s.credentials.company, "acme.web", "UTC")
        .await
        .unwrap();
    let cases: &[(&str, &str)] = &[
        ("from=2026-01-01&to=2026-01-02", "Missing 'metrics'"),
        (
            "metrics=pageview&from=2026-01-01&to=2026-01-02",
            "Unknown metric 'pageview'",
        ),
        (
            "metrics=hits,hits&from=2026-01-01&to=2026-01-02",
            "given twice",
        ),
        (
            "metrics=events:a%27b&from=2026-01-01&to=2026-01-02",
            "Invalid event name",
        ),
        (
            "metrics=hits&dimension=evar251&from=2026-01-01&to=2026-01-02",
            "Unknown dimension 'evar251'",
        ),
        (
            "metrics=hits&dimension=page%3Bdrop&from=2026-01-01&to=2026-01-02",
            "Unknown dimension",
        ),
        ("metrics=hits&to=2026-01-02", "Missing 'from'"),
        (
            "metrics=hits&from=2026-13-01&to=2026-01-02",
            "Invalid 'from' date",
        ),
        ("metrics=hits&from=2026-01-03&to=2026-01-02", "is before"),
        ("metrics=hits&from=2020-01-01&to=2026-01-02", "at most 731"),
        (
            "metrics=hits&from=2026-01-01&to=2026-01-02&limit=0",
            "Invalid limit",
        ),
        (
            "metrics=hits&from=2026-01-01&to=2026-01-02&limit=abc",
            "Invalid limit",
        ),
    ];
    for (q, want) in cases {
        let (st, v) = api
            .get_json(&format!("/api/v1/report-suites/acme.web/report?{q}"))
            .await;
        assert_eq!(st, 400, "{q}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(want), "{q}: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_from_the_binary() {
    let s = start().await;
    let base = s.base_url();
    let mut types: HashMap<&str, String> = HashMap::new();
    for path in ["/console/", "/console/app.js", "/console/app.css"] {
        let r = http().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        types.insert(
            path,
            r.headers()["content-type"].to_str().unwrap().to_string(),
        );
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("http://") || path != "/console/",
            "no external links"
        );
        assert!(!body.contains("https://"), "{path}: no external links");
    }
    assert!(types["/console/"].starts_with("text/html"));
    assert!(types["/console/app.js"].starts_with("text/javascript"));
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/");
}

/// A suite's internal URL filters decide which referrers are internal for
/// files processed after they are set; another suite of the same file
/// keeps the default (only the page's own host is internal).
#[tokio::test]
async fn internal_url_filters_of_a_suite_apply_to_its_hits() {
    let s = start_processing().await;
    let api = Api::default_client(&s).await;
    let company = s.credentials.company.clone();
    for rsid in ["filtered", "plain"] {
        s.state
            .store
            .create_report_suite(&company, rsid, "UTC")
            .await
            .unwrap();
    }
    let r = api
        .http
        .patch(format!("{}/api/v1/report-suites/filtered", api.base))
        .bearer_auth(&api.token)
        .header("x-api-key", &api.api_key)
        .json(&serde_json::json!({"internal_url_filters": ["partner.example"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut csv =
        String::from("timestamp,visitorID,reportSuiteID,userAgent,pageName,pageURL,referrer\n");
    for (i, referrer) in [
        "https://blog.partner.example/post",
        "https://pay.partner.example/done",
        "https://www.shop.example/cart",
        "https://elsewhere.example/",
    ]
    .iter()
    .enumerate()
    {
        csv.push_str(&format!(
            "{},v{i},\"filtered,plain\",Mozilla/5.0,P{i},https://www.shop.example/p,{referrer}\n",
            1_767_225_600 + i as i64 * 3_600
        ));
    }
    let (st, v) = api.upload(gz(csv.as_bytes()), "g1").await;
    assert_eq!(st, 200, "{v}");
    wait_complete(&s, &[v["file_id"].as_str().unwrap().to_string()]).await;
    let types = |rsid: &'static str| {
        let api = api.clone();
        async move {
            let (st, v) = api
                .get_json(&format!(
                    "/api/v1/report-suites/{rsid}/report?metrics=hits&dimension=referrer_type&from=2026-01-01&to=2026-01-01"
                ))
                .await;
            assert_eq!(st, 200, "{v}");
            let mut rows: Vec<(String, u64)> = v["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["referrer_type"].as_str().unwrap_or("").to_string(),
                        r["hits"].as_u64().unwrap(),
                    )
                })
                .collect();
            rows.sort();
            rows
        }
    };
    let want = |internal: u64, other: u64| {
        vec![
            ("internal".to_string(), internal),
            ("other_web_site".to_string(), other),
        ]
    };
    // Filtered: the partner's hosts are internal; the shop's own host is
    // not named by the filters (another web site).
    assert_eq!(types("filtered").await, want(2, 2));
    // Plain: only the page's own host is internal.
    assert_eq!(types("plain").await, want(1, 3));
    s.stop().await.unwrap();
}
