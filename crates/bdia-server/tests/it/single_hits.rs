//! The single-hit Data Insertion API over real HTTP: the response types,
//! the failure reasons (POST only), suites that do not take single hits,
//! hostile XML, the suite setting (API, one company per rsid), the rate
//! limit, and hits reaching the lake exactly once through the file
//! pipeline.

use std::time::Duration;

use bdia_server::tenancy::DEFAULT_COMPANY;
use bdia_server::testing::{lake_hits, TestServer};
use serde_json::{json, Value};

use crate::common::*;

async fn start_single(tweak: impl FnOnce(&mut bdia_server::Config)) -> TestServer {
    start_with(|c| {
        c.processing.enabled = true;
        c.processing.poll_interval_ms = 50;
        c.single_hits.flush_ms = 200;
        tweak(c);
    })
    .await
}

/// Creates `rsid` for the default company and turns single hits on for it
/// through the API.
async fn accepting_suite(s: &TestServer, api: &Api, rsid: &str) {
    s.state
        .store
        .create_report_suite(DEFAULT_COMPANY, rsid, "UTC")
        .await
        .unwrap();
    let r = api
        .http
        .patch(format!("{}/api/v1/report-suites/{rsid}", api.base))
        .bearer_auth(&api.token)
        .header("x-api-key", &api.api_key)
        .json(&json!({"accept_single_hits": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"rsid": rsid, "time_zone": "UTC", "accept_single_hits": true, "internal_url_filters": [], "evar_settings": []})
    );
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let r = req.send().await.unwrap();
    Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

async fn get(s: &TestServer, path_and_query: &str) -> Answer {
    send(
        http()
            .get(format!("{}{path_and_query}", s.base_url()))
            .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
    )
    .await
}

async fn post_xml(s: &TestServer, path: &str, xml: &str) -> Answer {
    send(
        http()
            .post(format!("{}{path}", s.base_url()))
            .header("content-type", "text/xml")
            .body(xml.to_string()),
    )
    .await
}

fn xml_hit(rsid: &str, vid: &str, page: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><request><sc_xml_ver>1.0</sc_xml_ver>\
         <reportSuiteID>{rsid}</reportSuiteID><visitorID>{vid}</visitorID>\
         <pageName>{page}</pageName><eVar7>x &amp; y</eVar7><userAgent>UA/1</userAgent></request>"
    )
}

/// A count of `bdia_single_hits_total`. The recorder is per process: each
/// outcome asserted exactly is produced by one test only.
async fn single_hit_metric(s: &TestServer, outcome: &str) -> u64 {
    let text = metrics_text(&s.base_url()).await;
    let needle = format!("bdia_single_hits_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Waits (a generous bound) until the lake holds `n` hits.
async fn wait_lake(s: &TestServer, n: usize) -> Vec<bdia_server::testing::LakeHit> {
    for _ in 0..1_200 {
        let hits = lake_hits(s.data_dir()).unwrap_or_default();
        if hits.len() >= n {
            return hits;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the lake did not reach {n} hits");
}

#[tokio::test]
async fn suites_that_do_not_take_single_hits_are_no_account_and_keep_nothing() {
    let s = start_single(|_| {}).await;
    let api = Api::default_client(&s).await;
    s.state
        .store
        .create_report_suite(DEFAULT_COMPANY, "closed", "UTC")
        .await
        .unwrap();
    let a = post_xml(&s, "/b/ss//6", &xml_hit("closed", "v1", "Home")).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.text(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><status>FAILURE</status><reason>NO account</reason>"
    );
    assert!(a.header("reason").is_none(), "NO account is not mirrored");
    let a = post_xml(&s, "/b/ss//6", &xml_hit("nobody", "v1", "Home")).await;
    assert!(a.text().contains("<reason>NO account</reason>"));
    // GET shows no reason: a GIF as for any hit.
    let a = get(&s, "/b/ss/closed/1/s123?pageName=Home&vid=v1").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("image/gif"));
    assert_eq!(&a.body[..6], b"GIF89a");
    assert!(a.header("status").is_none());
    assert_eq!(single_hit_metric(&s, "no_account").await, 3);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, files) = api.get_json("/aa/collect/v1/events").await;
    assert_eq!(files["files"].as_array().unwrap().len(), 0, "{files}");
    // Another company cannot take an rsid whose single hits are taken.
    accepting_suite(&s, &api, "open").await;
    let other = bdia_server::tenancy::create_company(
        &*s.state.store,
        "other",
        bdia_store::CompanySettings::default(),
    )
    .await
    .unwrap();
    s.state
        .store
        .create_report_suite(&other.id, "open", "UTC")
        .await
        .unwrap();
    match s
        .state
        .store
        .set_accept_single_hits("other", "open", true)
        .await
    {
        Err(bdia_store::StoreError::Conflict(m)) => assert!(m.contains("'open'"), "{m}"),
        other => panic!("{other:?}"),
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn failure_reasons_show_on_post_in_each_response_type() {
    let s = start_single(|_| {}).await;
    let api = Api::default_client(&s).await;
    accepting_suite(&s, &api, "web").await;
    let base = s.base_url();
    // No page: 204 with Status and Reason.
    let a = send(
        http()
            .post(format!("{base}/b/ss/web/2"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("vid=v1&events=event1"),
    )
    .await;
    assert_eq!(a.status, 204);
    assert_eq!(a.header("status"), Some("FAILURE"));
    assert_eq!(a.header("reason"), Some("NO pagename OR pageurl"));
    // No visitor (no ID, no user agent): XML, mirrored to headers.
    let a = post_xml(
        &s,
        "/b/ss/web/6",
        "<request><pageName>Home</pageName><ipaddress>10.0.0.1</ipaddress></request>",
    )
    .await;
    assert!(
        a.text()
            .ends_with("<status>FAILURE</status><reason>NO visitorid OR ipaddress</reason>"),
        "{}",
        a.text()
    );
    assert_eq!(a.header("reason"), Some("NO visitorid OR ipaddress"));
    // Hostile XML: a DOCTYPE with an external entity is a syntax error,
    // and nothing of the file system is read or stored.
    let hostile = "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\
                   <request><reportSuiteID>web</reportSuiteID><visitorID>v</visitorID><pageName>&x;</pageName></request>";
    let a = post_xml(&s, "/b/ss//6", hostile).await;
    assert!(
        a.text().contains("<reason>Syntax error</reason>"),
        "{}",
        a.text()
    );
    let billion = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]>\
                   <request><pageName>&lol2;</pageName></request>";
    let a = post_xml(&s, "/b/ss/web/6", billion).await;
    assert!(a.text().contains("<reason>Syntax error</reason>"));
    // JSON and visitor XML.
    let a = send(
        http()
            .post(format!("{base}/b/ss/web/10"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("pageName=Home"),
    )
    .await;
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        v,
        json!({"status": "FAILURE", "reason": "NO visitorid OR ipaddress"})
    );
    // (A query-string hit always has the connection's IP; without a user
    // agent it is not a visitor.)
    let a = get(&s, "/b/ss/web/10?pageName=Home&vid=abc").await;
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v, json!({"status": "SUCCESS", "id": "abc"}));
    let a = get(&s, "/b/ss/web/11?pageName=Home&mid=m-1").await;
    assert!(
        a.text()
            .ends_with("<visitor><status>SUCCESS</status><id>m-1</id></visitor>"),
        "{}",
        a.text()
    );
    let a = get(&s, "/b/ss/web/3?pageName=Home&vid=o'k").await;
    assert_eq!(a.text(), "var s_vid='o\\x27k';");
    let a = get(&s, "/b/ss/web/0?pageName=Home&vid=v").await;
    assert_eq!((a.status, a.text().as_str()), (200, " "));
    let a = get(&s, "/b/ss/web/5?pageName=Home&vid=v").await;
    assert_eq!(a.header("content-type"), Some("image/vnd.wap.wbmp"));
    // GET never shows a reason, but the hit is refused and counted.
    let a = get(&s, "/b/ss/web/2?vid=v").await;
    assert_eq!((a.status, a.header("status")), (204, Some("SUCCESS")));
    assert_eq!(single_hit_metric(&s, "no_page").await, 2);
    assert_eq!(single_hit_metric(&s, "syntax_error").await, 2);
    assert_eq!(single_hit_metric(&s, "no_visitor").await, 2);
    // A body over the limit is a precise 413.
    let big = "a".repeat(70_000);
    let a = post_xml(&s, "/b/ss/web/6", &big).await;
    assert_eq!(a.status, 413);
    assert!(a.text().contains("at most 65536 bytes"), "{}", a.text());
    s.stop().await.unwrap();
}

#[tokio::test]
async fn accepted_hits_reach_the_lake_once_in_arrival_order_per_visitor() {
    let s = start_single(|_| {}).await;
    let api = Api::default_client(&s).await;
    accepting_suite(&s, &api, "web").await;
    let t0 = 1_700_000_000;
    let mut sent = 0usize;
    // Query strings (GET and form POST), every documented alias, and XML.
    for i in 0..30 {
        let vid = format!("v{}", i % 3);
        let a = get(
            &s,
            &format!(
                "/b/ss/web/1/s{i}?AQB=1&gn=Page%20{i}&g=http%3A%2F%2Fshop.test%2F{i}&vid={vid}\
                 &ts={}&v3=ev{i}&c2=p{i}&ev=event1&c.&app.&version=2&.app&.c&AQE=1",
                t0 + i
            ),
        )
        .await;
        assert_eq!(a.status, 200);
        sent += 1;
    }
    for i in 30..40 {
        let a = send(
            http()
                .post(format!("{}/b/ss/web/2", s.base_url()))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("user-agent", "UA/2")
                .body(format!("pageName=Form%20{i}&vid=v{}&ts={}", i % 3, t0 + i)),
        )
        .await;
        assert_eq!((a.status, a.header("status")), (204, Some("SUCCESS")));
        sent += 1;
    }
    for i in 40..45 {
        let a = post_xml(
            &s,
            "/b/ss//6",
            &xml_hit("web", &format!("v{}", i % 3), &format!("Xml {i}")),
        )
        .await;
        assert!(
            a.text().contains("<status>SUCCESS</status>"),
            "{}",
            a.text()
        );
        sent += 1;
    }
    // (The metrics are per process: other tests add accepted hits too.)
    assert!(single_hit_metric(&s, "accepted").await >= sent as u64);
    let hits = wait_lake(&s, sent).await;
    let (_, files) = api.get_json("/aa/collect/v1/events").await;
    let files = files["files"].as_array().unwrap().clone();
    let rows: Vec<(&str, i64)> = hits
        .iter()
        .map(|h| (h.file_id.as_str(), h.row_number))
        .collect();
    assert_eq!(
        hits.len(),
        sent,
        "every accepted hit once: {files:#?} {rows:?}"
    );
    // The files carry their lineage: the single-hit group and name.
    assert!(!files.is_empty());
    for f in &files {
        assert_eq!(f["visitor_group_id"], "bdia.single-hits", "{f}");
        assert!(
            f["upload_name"]
                .as_str()
                .unwrap()
                .starts_with("single hits (/b/ss)"),
            "{f}"
        );
        assert_eq!(f["invalid_rows"], 0, "{f}");
    }
    let by_page = |page: &str| {
        hits.iter()
            .find(|h| {
                h.all
                    .contains(&format!("page_name=StringArray\n[\n  \"{page}\","))
            })
            .unwrap_or_else(|| panic!("no hit for {page}"))
            .clone()
    };
    let h = by_page("Page 7");
    assert_eq!(h.visitor_id, "v1");
    assert_eq!(h.hit_time, t0 + 7);
    assert!(h.all.contains("ev7"), "{}", h.all);
    assert!(h.all.contains("p7"), "{}", h.all);
    assert!(h.all.contains("app.version"), "{}", h.all);
    let x = by_page("Xml 41");
    assert!(x.all.contains("x & y"), "{}", x.all);
    // Per visitor, visit page numbers follow arrival order (no hit out of order).
    for v in ["v0", "v1", "v2"] {
        let mut mine: Vec<_> = hits.iter().filter(|h| h.visitor_id == v).collect();
        mine.sort_by_key(|h| h.visit_page_num);
        assert!(mine.iter().all(|h| !h.out_of_order), "{v}");
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_single_hit_rate_limit_answers_429() {
    let s = start_single(|c| {
        c.single_hits.per_second = 1;
        c.single_hits.burst = 2;
    })
    .await;
    let api = Api::default_client(&s).await;
    accepting_suite(&s, &api, "web").await;
    let mut codes = Vec::new();
    for i in 0..5 {
        codes.push(
            get(&s, &format!("/b/ss/web/1?pageName=P&vid=v{i}"))
                .await
                .status,
        );
    }
    assert_eq!(&codes[..2], &[200, 200], "{codes:?}");
    assert!(codes[2..].contains(&429), "{codes:?}");
    assert!(single_hit_metric(&s, "rate_limited").await >= 1);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn suite_settings_change_through_the_api_with_precise_errors() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    s.state
        .store
        .create_report_suite(DEFAULT_COMPANY, "shop", "UTC")
        .await
        .unwrap();
    let patch = |body: Value| {
        api.http
            .patch(format!("{}/api/v1/report-suites/shop", api.base))
            .bearer_auth(&api.token)
            .header("x-api-key", &api.api_key)
            .json(&body)
            .send()
    };
    let r = patch(json!({"internal_url_filters": ["shop.example", "pay.example"]}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["internal_url_filters"],
        json!(["shop.example", "pay.example"])
    );
    assert_eq!(v["accept_single_hits"], false, "left out: kept");
    let (st, v) = api.get_json("/api/v1/report-suites/shop").await;
    assert_eq!(
        (st, &v["internal_url_filters"]),
        (200, &json!(["shop.example", "pay.example"]))
    );
    let r = patch(json!({"internal_url_filters": ["has space"]}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "invalid_internal_url_filters", "{v}");
    assert!(v["error"].as_str().unwrap().contains("'has space'"), "{v}");
    let r = patch(json!({"nope": 1})).await.unwrap();
    assert_eq!(r.status(), 400);
    let r = patch(json!({"internal_url_filters": []})).await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["internal_url_filters"], json!([]));
    let (st, _) = api.get_json("/api/v1/report-suites/missing").await;
    assert_eq!(st, 404);
    s.stop().await.unwrap();
}
