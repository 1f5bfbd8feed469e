//! Webhooks over real HTTP: a receiver on a loopback port that fails,
//! times out and recovers; signatures, order per file, the delivery log,
//! a dead endpoint next to processing, deletion and tenancy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bdia_server::testing::TestServer;
use bdia_store::{CompanySettings, FileStatus};
use hmac::{KeyInit, Mac};
use serde_json::Value;

use crate::common::*;
use crate::tenancy::second_company;

/// Answers 500.
const FAIL: u8 = 0;
/// Answers after 30 s (past any test timeout).
const HANG: u8 = 1;
/// Answers 204.
const OK: u8 = 2;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    mode: u8,
    signature: String,
    delivery_id: String,
    body: String,
}

#[derive(Default)]
struct Receiver {
    mode: AtomicU8,
    got: Mutex<Vec<Received>>,
}

impl Receiver {
    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn count(&self, mode: u8) -> usize {
        self.got().iter().filter(|r| r.mode == mode).count()
    }
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: String) -> StatusCode {
    let mode = r.mode.load(Ordering::SeqCst);
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    r.got.lock().unwrap().push(Received {
        mode,
        signature: header("bdia-signature"),
        delivery_id: header("bdia-delivery-id"),
        body,
    });
    match mode {
        FAIL => StatusCode::INTERNAL_SERVER_ERROR,
        HANG => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::NO_CONTENT
        }
        _ => StatusCode::NO_CONTENT,
    }
}

/// A receiver on 127.0.0.1; its URL.
async fn receiver(mode: u8) -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver::default());
    r.mode.store(mode, Ordering::SeqCst);
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, url)
}

/// Waits (generously) until `done`.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_hooks(tweak: impl FnOnce(&mut bdia_server::Config)) -> TestServer {
    start_with(|c| {
        c.processing.enabled = true;
        c.processing.poll_interval_ms = 50;
        c.webhooks.timeout_ms = 400;
        c.webhooks.backoff_base_ms = 50;
        c.webhooks.backoff_max_ms = 200;
        c.webhooks.poll_interval_ms = 50;
        tweak(c);
    })
    .await
}

async fn register(api: &Api, url: &str, events: Option<&[&str]>) -> (u16, Value) {
    let mut body = serde_json::json!({ "url": url });
    if let Some(e) = events {
        body["events"] = serde_json::json!(e);
    }
    let r = api
        .post("/api/v1/webhooks")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn delete(api: &Api, path: &str) -> u16 {
    api.http
        .delete(format!("{}{path}", api.base))
        .bearer_auth(&api.token)
        .header("x-api-key", &api.api_key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn upload_ok(api: &Api, rows: usize, vgid: &str) -> String {
    let (st, v) = api.upload(small_file(rows, "acme.prod"), vgid).await;
    assert_eq!(st, 200, "{v}");
    v["file_id"].as_str().unwrap().to_string()
}

async fn wait_complete(s: &TestServer, ids: &[String]) -> Duration {
    let start = Instant::now();
    for id in ids {
        loop {
            let r = s
                .state
                .store
                .get_file("default", id)
                .await
                .unwrap()
                .unwrap();
            if r.status == FileStatus::Complete {
                break;
            }
            assert_ne!(r.status, FileStatus::Error, "{}", r.processing_log);
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{id} not complete"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    start.elapsed()
}

/// Checks `t=<t>,v1=<hex>` against HMAC-SHA256(secret, "<t>.<body>").
fn verify(secret: &str, header: &str, body: &str) {
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("malformed signature header '{header}'"));
    let t: i64 = t.parse().unwrap();
    assert!((t - bdia_server::auth::now()).abs() < 600, "t is now-ish");
    let mut mac = hmac::Hmac::<sha2_v011::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap())
        .expect("the signature verifies");
}

async fn deliveries(api: &Api, id: &str) -> Vec<Value> {
    let (st, v) = api
        .get_json(&format!("/api/v1/webhooks/{id}/deliveries?limit=1000"))
        .await;
    assert_eq!(st, 200, "{v}");
    v["deliveries"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_signed_and_in_order_through_failures_and_timeouts() {
    let (rx, url) = receiver(FAIL).await;
    let s = start_hooks(|_| {}).await;
    let api = Api::default_client(&s).await;

    let (st, created) = register(&api, &url, None).await;
    assert_eq!(st, 201, "{created}");
    let hook_id = created["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32);
    assert_eq!(created["url"], url.as_str());
    let (st, listed) = api.get_json("/api/v1/webhooks").await;
    assert_eq!(st, 200);
    assert_eq!(listed["webhooks"][0]["id"], hook_id.as_str());
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once"
    );
    let (st, one) = api.get_json(&format!("/api/v1/webhooks/{hook_id}")).await;
    assert_eq!(st, 200);
    assert!(one.get("secret").is_none());

    // Failing endpoint: files complete anyway.
    let ids = vec![
        upload_ok(&api, 3, "g1").await,
        upload_ok(&api, 4, "g1").await,
        upload_ok(&api, 5, "g2").await,
    ];
    wait_complete(&s, &ids).await;
    let r = api
        .http
        .delete(format!("{}/aa/collect/v1/events/{}/hits", api.base, ids[0]))
        .bearer_auth(&api.token)
        .header("x-api-key", &api.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    eventually("failed attempts", || rx.count(FAIL) >= 6).await;
    // The log shows the failures: status, error and latency.
    let log = deliveries(&api, &hook_id).await;
    let failed = log
        .iter()
        .find(|d| d["last_status"] == 500)
        .unwrap_or_else(|| panic!("no failed attempt in {log:?}"));
    assert_eq!(failed["state"], "pending");
    assert_eq!(failed["last_error"], "HTTP 500 Internal Server Error");
    assert!(failed["last_latency_ms"].is_u64());
    assert!(failed["attempts"].as_u64().unwrap() >= 1);

    // Timing out endpoint.
    rx.mode.store(HANG, Ordering::SeqCst);
    let hung = rx.count(HANG);
    eventually("timed out attempts", || rx.count(HANG) >= hung + 2).await;
    let latency = timed_out_latency(&s, &hook_id).await;
    assert!(latency >= 350, "a timed out attempt took {latency} ms");

    // Recovery: every event arrives.
    rx.mode.store(OK, Ordering::SeqCst);
    let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
    for id in &ids {
        expected.insert((id.clone(), "file.uploaded".into()));
        expected.insert((id.clone(), "file.complete".into()));
    }
    expected.insert((ids[0].clone(), "file.retracted".into()));
    let delivered = |got: &[Received]| -> BTreeSet<(String, String)> {
        got.iter()
            .filter(|r| r.mode == OK)
            .map(|r| {
                let v: Value = serde_json::from_str(&r.body).unwrap();
                (
                    v["file_id"].as_str().unwrap().to_string(),
                    v["type"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    eventually("every event delivered", || delivered(&rx.got()) == expected).await;

    let got = rx.got();
    for r in &got {
        verify(&secret, &r.signature, &r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(r.delivery_id, v["delivery_id"].to_string());
        for key in [
            "type",
            "file_id",
            "visitor_group_id",
            "status_code",
            "occurred_at",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
    }
    // In order per file: uploaded, complete, retracted; never a later event
    // of a file before an earlier one was accepted.
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in got.iter().filter(|r| r.mode == OK) {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        let seq = order
            .entry(v["file_id"].as_str().unwrap().to_string())
            .or_default();
        let t = v["type"].as_str().unwrap().to_string();
        if seq.last() != Some(&t) {
            seq.push(t);
        }
    }
    assert_eq!(
        order[&ids[0]],
        ["file.uploaded", "file.complete", "file.retracted"]
    );
    assert_eq!(order[&ids[1]], ["file.uploaded", "file.complete"]);
    assert_eq!(order[&ids[2]], ["file.uploaded", "file.complete"]);
    let complete: Value = serde_json::from_str(
        &got.iter()
            .rev()
            .find(|r| r.mode == OK && r.body.contains("file.complete"))
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(complete["status_code"], "COMPLETE");

    // The log: every delivery delivered, some after failed attempts.
    let start = Instant::now();
    let log = loop {
        let log = store_log(&s, &hook_id).await;
        if log.len() == expected.len() && log.iter().all(|d| d.delivered_at.is_some()) {
            break log;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(log.iter().any(|d| d.attempts >= 3), "{log:?}");
    let api_log = deliveries(&api, &hook_id).await;
    assert!(api_log.iter().all(|d| d["state"] == "delivered"));
    assert!(api_log.iter().all(|d| d["last_status"] == 204));

    let text = metrics_text(&s.base_url()).await;
    for outcome in ["delivered", "failed"] {
        assert!(
            text.contains(&format!(
                "bdia_webhook_deliveries_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome} missing from metrics"
        );
    }
    s.stop().await.unwrap();
}

/// The latency of a timed-out last attempt in the store's log, once
/// there is one.
async fn timed_out_latency(s: &TestServer, hook_id: &str) -> u64 {
    let start = Instant::now();
    loop {
        let found = store_log(s, hook_id).await.into_iter().find(|d| {
            d.last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("timed out"))
        });
        if let Some(latency) = found.and_then(|d| d.last_latency_ms) {
            return latency;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no timeout logged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The store's log of one endpoint of company `default`.
async fn store_log(s: &TestServer, hook_id: &str) -> Vec<bdia_store::WebhookDelivery> {
    let query = bdia_store::PageQuery {
        limit: 1000,
        cursor: None,
    };
    s.state
        .store
        .list_webhook_deliveries("default", hook_id, &query)
        .await
        .unwrap()
        .deliveries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_does_not_slow_processing_and_deletion_stops_deliveries() {
    let (rx, url) = receiver(HANG).await;
    let s = start_hooks(|c| {
        c.webhooks.timeout_ms = 2_000;
        c.webhooks.concurrency = 2;
    })
    .await;
    let api = Api::default_client(&s).await;
    let beta = second_company(&s, "beta", CompanySettings::default()).await;
    let (st, created) = register(&api, &url, None).await;
    assert_eq!(st, 201);
    let hook_id = created["id"].as_str().unwrap().to_string();

    // Another company sees nothing of it.
    let path = format!("/api/v1/webhooks/{hook_id}");
    assert_eq!(beta.get_json(&path).await.0, 404);
    assert_eq!(beta.get_json(&format!("{path}/deliveries")).await.0, 404);
    let (_, list) = beta.get_json("/api/v1/webhooks").await;
    assert_eq!(list["webhooks"], serde_json::json!([]));
    assert_eq!(delete(&beta, &path).await, 404);

    // Many files against an endpoint that never answers: processing goes on.
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(upload_ok(&api, 3, &format!("g{}", i % 3)).await);
    }
    let took = wait_complete(&s, &ids).await;
    assert!(took < Duration::from_secs(60), "processing took {took:?}");
    let log = deliveries(&api, &hook_id).await;
    assert_eq!(log.len(), 16, "uploaded and complete per file");
    assert!(
        log.iter().filter(|d| d["state"] == "pending").count() >= 10,
        "most deliveries still wait on the dead endpoint: {log:?}"
    );

    // Deleting the endpoint stops its deliveries (attempts in flight end
    // within the timeout).
    assert_eq!(delete(&api, &path).await, 204);
    assert_eq!(api.get_json(&path).await.0, 404);
    assert_eq!(delete(&api, &path).await, 404);
    rx.mode.store(OK, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let before = rx.got().len();
    let more = vec![upload_ok(&api, 2, "g9").await];
    wait_complete(&s, &more).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(rx.got().len(), before, "no delivery after the deletion");
    assert_eq!(rx.count(OK), 0);
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_checked() {
    let s = start_with(|c| {
        c.webhooks.max_per_company = 2;
        c.webhooks.allowed_url_prefixes = vec!["http://127.0.0.1:".into()];
    })
    .await;
    let api = Api::default_client(&s).await;
    for (url, events, status, code) in [
        ("ftp://127.0.0.1:1/x", None, 400, "invalid_webhook_url"),
        ("not a url", None, 400, "invalid_webhook_url"),
        ("http://169.254.169.254/latest", None, 403, ""),
        (
            "http://127.0.0.1:1/x",
            Some(&["file.done"][..]),
            400,
            "unknown_event_type",
        ),
    ] {
        let (st, v) = register(&api, url, events).await;
        assert_eq!(st, status, "{url}: {v}");
        if !code.is_empty() {
            assert_eq!(v["code"], code, "{v}");
        }
    }
    let r = api
        .post("/api/v1/webhooks")
        .header("content-type", "application/json")
        .body("{\"url\": 5}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (st, v) = register(&api, "http://127.0.0.1:1/a", Some(&["file.complete"])).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["events"], serde_json::json!(["file.complete"]));
    assert_eq!(register(&api, "http://127.0.0.1:1/b", None).await.0, 201);
    let (st, v) = register(&api, "http://127.0.0.1:1/c", None).await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(
        api.get_json("/api/v1/webhooks/nope/deliveries").await.0,
        404
    );
    s.stop().await.unwrap();
}

/// Two nodes on one PostgreSQL database both send deliveries: each
/// delivery reaches a healthy endpoint once, a file's events in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgres_send_each_delivery_once_in_order() {
    let url = bdia_server::testing::fresh_database("hooks");
    let (rx, hook_url) = receiver(OK).await;
    let a = start_hooks(|c| c.metadata_url = Some(url.clone())).await;
    // The second node: same database, no processing (its disk does not
    // hold the first node's uploads), sending webhooks.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        a.data_dir().join("credentials.json"),
        dir.path().join("credentials.json"),
    )
    .unwrap();
    let path = dir.path().to_path_buf();
    let b = TestServer::start_in(Some(dir), &path, |c| {
        c.metadata_url = Some(url.clone());
        c.node_id = Some("node-b".into());
        c.webhooks.poll_interval_ms = 10;
    })
    .await
    .unwrap();
    let api = Api::default_client(&a).await;
    let (st, created) = register(&api, &hook_url, None).await;
    assert_eq!(st, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    // Registered on one node, visible on the other.
    let api_b = Api::default_client(&b).await;
    let (_, listed) = api_b.get_json("/api/v1/webhooks").await;
    assert_eq!(listed["webhooks"][0]["id"], created["id"]);

    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(upload_ok(&api, 2, &format!("g{}", i % 4)).await);
    }
    wait_complete(&a, &ids).await;
    eventually("every delivery", || rx.got().len() >= 2 * ids.len()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = rx.got();
    let mut seen = BTreeSet::new();
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &got {
        verify(&secret, &r.signature, &r.body);
        assert!(
            seen.insert(r.delivery_id.clone()),
            "delivery {} arrived twice",
            r.delivery_id
        );
        let v: Value = serde_json::from_str(&r.body).unwrap();
        order
            .entry(v["file_id"].as_str().unwrap().to_string())
            .or_default()
            .push(v["type"].as_str().unwrap().to_string());
    }
    assert_eq!(got.len(), 2 * ids.len());
    for id in &ids {
        assert_eq!(order[id], ["file.uploaded", "file.complete"], "{id}");
    }
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

/// A delivery failing past `webhooks.max_age_secs` is given up after
/// several attempts, and the file's next event goes on (also given up
/// here: the endpoint never recovers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_deliveries_are_given_up_after_the_max_age() {
    let (rx, url) = receiver(FAIL).await;
    let s = start_hooks(|c| c.webhooks.max_age_secs = 2).await;
    let api = Api::default_client(&s).await;
    let (st, created) = register(&api, &url, None).await;
    assert_eq!(st, 201);
    let hook_id = created["id"].as_str().unwrap().to_string();
    let id = upload_ok(&api, 2, "g").await;
    wait_complete(&s, std::slice::from_ref(&id)).await;
    let start = Instant::now();
    let log = loop {
        let log = deliveries(&api, &hook_id).await;
        if log.len() == 2 && log.iter().all(|d| d["state"] == "given_up") {
            break log;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{log:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Newest first: the upload was retried until its max age; the
    // completion waited behind it and got at least its one attempt.
    assert_eq!(log[1]["type"], "file.uploaded");
    assert!(log[1]["attempts"].as_u64().unwrap() >= 2, "{log:?}");
    for d in &log {
        assert!(d["attempts"].as_u64().unwrap() >= 1, "{d}");
        assert_eq!(d["last_status"], 500);
        assert_eq!(d["next_attempt_ms"], Value::Null);
    }
    // Nothing more is sent for them.
    let sent = rx.got().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got().len(), sent);
    let text = metrics_text(&s.base_url()).await;
    assert!(text.contains("bdia_webhook_deliveries_total{outcome=\"given_up\"}"));
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_actions_and_cancelled_files_arrive_signed_and_in_order() {
    let (rx, url) = receiver(OK).await;
    let s = start_hooks(|c| c.processing.enabled = false).await;
    let api = Api::default_client(&s).await;
    let (st, hook) = register(
        &api,
        &url,
        Some(&[
            "group.paused",
            "group.resumed",
            "group.cancelled",
            "file.cancelled",
        ]),
    )
    .await;
    assert_eq!(st, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    let file = upload_ok(&api, 3, "g").await;
    for action in ["pause", "resume", "pause", "cancel"] {
        let r = api
            .post(&format!("/aa/collect/v1/groups/g/{action}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{action}");
    }
    eventually("five deliveries", || rx.count(OK) >= 5).await;
    let got = rx.got();
    let bodies: Vec<Value> = got
        .iter()
        .map(|r| {
            verify(&secret, &r.signature, &r.body);
            serde_json::from_str(&r.body).unwrap()
        })
        .collect();
    let groups: Vec<(&str, &str)> = bodies
        .iter()
        .filter(|b| b["type"].as_str().unwrap().starts_with("group."))
        .map(|b| {
            (
                b["type"].as_str().unwrap(),
                b["status_code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("group.paused", "PAUSED"),
            ("group.resumed", "ACTIVE"),
            ("group.paused", "PAUSED"),
            ("group.cancelled", "ACTIVE"),
        ],
        "one group's events in the order of its actions"
    );
    let cancelled = bodies
        .iter()
        .find(|b| b["type"] == "file.cancelled")
        .expect("the waiting file's cancellation");
    assert_eq!(cancelled["file_id"], file.as_str());
    assert_eq!(cancelled["status_code"], "CANCELLED");
    // Events of different keys (the group, the file) may arrive in any
    // order relative to each other.
    let paused = bodies.iter().find(|b| b["type"] == "group.paused").unwrap();
    assert_eq!(paused["visitor_group_id"], "g");
    assert_eq!(paused["file_id"], Value::Null);
    assert!(paused["actor"].as_str().is_some_and(|a| !a.is_empty()));
    assert_eq!(got.len(), 5, "nothing the filter leaves out: {bodies:?}");
}
