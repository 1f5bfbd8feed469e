//! Group control over real HTTP: pause, resume and cancel a visitor group,
//! the group view with its actions, queue places and estimates of waiting
//! files, and tenancy (another company's group is not found).

use std::time::Duration;

use bdia_server::tenancy;
use bdia_server::testing::{lake_hits, TestServer};
use bdia_store::CompanySettings;
use serde_json::Value;

use crate::common::*;

async fn start_processing() -> TestServer {
    start_with(|c| {
        c.processing.enabled = true;
        c.processing.poll_interval_ms = 50;
    })
    .await
}

async fn upload_ok(api: &Api, bytes: Vec<u8>, vgid: &str) -> Value {
    let (st, v) = api.upload(bytes, vgid).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status_code"], "UPLOADED", "{v}");
    v
}

fn id(v: &Value) -> String {
    v["file_id"].as_str().unwrap().to_string()
}

async fn status(api: &Api, file_id: &str) -> Value {
    let (st, v) = api
        .get_json(&format!("/aa/collect/v1/events/{file_id}"))
        .await;
    assert_eq!(st, 200, "{v}");
    v
}

/// Waits (a generous bound, not a timing assertion) until every file has
/// `want` as its status.
async fn wait_status(api: &Api, ids: &[String], want: &str) {
    for _ in 0..2_400 {
        let mut all = true;
        for i in ids {
            let v = status(api, i).await;
            assert_ne!(v["status_code"], "ERROR", "{v}");
            all &= v["status_code"] == want;
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("files did not reach {want}");
}

async fn act(api: &Api, vgid: &str, action: &str) -> (u16, Value) {
    let r = api
        .post(&format!("/aa/collect/v1/groups/{vgid}/{action}"))
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_cancel_a_group() {
    let s = start_processing().await;
    let api = Api::default_client(&s).await;
    let client = s.credentials.client_id.clone();
    let first = id(&upload_ok(&api, small_file(5, "acme.prod"), "g").await);
    wait_status(&api, std::slice::from_ref(&first), "COMPLETE").await;

    let before = bdia_server::auth::now();
    let (st, v) = act(&api, "g", "pause").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "paused");
    // Pausing a paused group answers the same state (and is recorded).
    let (st, v) = act(&api, "g", "pause").await;
    assert_eq!((st, v["state"].as_str()), (200, Some("paused")));

    // Uploads are accepted and wait; another group runs meanwhile.
    let a1 = upload_ok(&api, small_file(4, "acme.prod"), "g").await;
    let a2 = upload_ok(&api, small_file(3, "acme.prod"), "g").await;
    assert_eq!(a2["files_ahead"], 1, "{a2}");
    assert_eq!(a2["rows_ahead"], 4, "{a2}");
    assert_eq!(a2["queue_state"], "paused", "{a2}");
    assert!(
        a2["estimated_start"].is_null() && a2["estimated_finish"].is_null(),
        "{a2}"
    );
    let (a1, a2) = (id(&a1), id(&a2));
    let other = id(&upload_ok(&api, small_file(2, "acme.prod"), "h").await);
    wait_status(&api, std::slice::from_ref(&other), "COMPLETE").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for f in [&a1, &a2] {
        assert_eq!(status(&api, f).await["status_code"], "UPLOADED");
    }
    let (st, view) = api.get_json("/aa/collect/v1/groups/g").await;
    assert_eq!(st, 200, "{view}");
    assert_eq!(view["state"], "paused");
    assert_eq!(
        (
            view["files_waiting"].as_u64(),
            view["rows_waiting"].as_u64()
        ),
        (Some(2), Some(7))
    );
    assert!(
        view["in_progress"].is_null() && view["last_error"].is_null(),
        "{view}"
    );

    // Resume: the waiting files are processed.
    let (st, v) = act(&api, "g", "resume").await;
    assert_eq!((st, v["state"].as_str()), (200, Some("active")));
    wait_status(&api, &[a1.clone(), a2.clone()], "COMPLETE").await;

    // Cancel: the waiting files are CANCELLED with the reason, never processed.
    act(&api, "g", "pause").await;
    let c1 = id(&upload_ok(&api, small_file(2, "acme.prod"), "g").await);
    let c2 = id(&upload_ok(&api, small_file(2, "acme.prod"), "g").await);
    let (st, v) = act(&api, "g", "cancel").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "active", "a cancel lets later uploads run: {v}");
    assert_eq!(v["files_waiting"], 0);
    for f in [&c1, &c2] {
        let r = status(&api, f).await;
        assert_eq!(r["status_code"], "CANCELLED", "{r}");
        assert_eq!(r["status"], "File cancelled");
        let reason = r["error"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!("Group cancelled by {client} at ")),
            "{reason}"
        );
        assert!(
            r["processing_log"].as_str().unwrap().ends_with(reason),
            "{r}"
        );
        assert!(
            r.get("files_ahead").is_none(),
            "no queue place once cancelled: {r}"
        );
    }
    let (_, listed) = api.get_json("/aa/collect/v1/events?status=CANCELLED").await;
    assert_eq!(listed["files"].as_array().unwrap().len(), 2, "{listed}");
    let later = id(&upload_ok(&api, small_file(3, "acme.prod"), "g").await);
    wait_status(&api, std::slice::from_ref(&later), "COMPLETE").await;
    let hits = lake_hits(s.data_dir()).unwrap();
    assert!(
        hits.iter().all(|h| h.file_id != c1 && h.file_id != c2),
        "cancelled files are not in the lake"
    );
    assert_eq!(hits.iter().filter(|h| h.file_id == later).count(), 3);
    for c in [&c1, &c2] {
        assert_eq!(
            status(&api, c).await["status_code"],
            "CANCELLED",
            "still cancelled"
        );
    }

    // Every action, with who and when.
    let (_, view) = api.get_json("/aa/collect/v1/groups/g").await;
    let actions = view["actions"].as_array().unwrap();
    let names: Vec<&str> = actions
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pause", "pause", "resume", "pause", "cancel"]);
    let now = bdia_server::auth::now();
    for a in actions {
        assert_eq!(a["actor"], client.as_str());
        let at = a["at"].as_i64().unwrap();
        assert!((before..=now).contains(&at), "{a}");
    }
    assert_eq!(actions[4]["files"], 2);
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_files_carry_their_queue_place_and_estimate() {
    // Processing off: files wait in an active group.
    let s = start().await;
    let company = s.credentials.company.clone();
    set_throttle(&s, &company, Some(2)).await;
    let api = Api::default_client(&s).await;
    let t0 = bdia_server::auth::now();
    let f1 = upload_ok(&api, small_file(4, "acme.prod"), "g").await;
    assert_eq!(
        (f1["files_ahead"].as_u64(), f1["rows_ahead"].as_u64()),
        (Some(0), Some(0)),
        "{f1}"
    );
    let f2 = upload_ok(&api, small_file(6, "acme.prod"), "g").await;
    let f3 = upload_ok(&api, small_file(2, "acme.prod"), "other").await;
    let (_, v) = api
        .get_json(&format!("/aa/collect/v1/events/{}", id(&f2)))
        .await;
    assert_eq!(
        (v["files_ahead"].as_u64(), v["rows_ahead"].as_u64()),
        (Some(1), Some(4)),
        "{v}"
    );
    assert_eq!(v["queue_state"], "waiting");
    // 2 rows/s (the throttle; nothing measured yet): starts after 4 rows
    // (2 s), finishes after 10 (5 s).
    let secs = |field: &str| {
        let t: jiff::Timestamp = v[field].as_str().unwrap().parse().unwrap();
        t.as_second() - t0
    };
    assert!((2..=2 + 30).contains(&secs("estimated_start")), "{v}");
    assert!((5..=5 + 30).contains(&secs("estimated_finish")), "{v}");
    assert_eq!(secs("estimated_finish") - secs("estimated_start"), 3, "{v}");
    // The listing carries the same fields; each group has its own queue.
    let (_, list) = api.get_json("/aa/collect/v1/events").await;
    for f in list["files"].as_array().unwrap() {
        let want = if f["file_id"] == f2["file_id"] { 1 } else { 0 };
        assert_eq!(f["files_ahead"], want, "{f}");
    }
    assert_eq!(f3["files_ahead"], 0);
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_company_cannot_see_or_control_a_group() {
    let s = start().await;
    let acme = Api::default_client(&s).await;
    upload_ok(&acme, small_file(2, "acme.prod"), "g").await;
    tenancy::create_company(&*s.state.store, "beta", CompanySettings::default())
        .await
        .unwrap();
    let (client, secret) = tenancy::create_client(&*s.state.store, "beta", None, None, None)
        .await
        .unwrap();
    let beta = Api::with(&s, &client.client_id, &secret).await;
    let (st, v) = beta.get_json("/aa/collect/v1/groups/g").await;
    assert_eq!(st, 404, "{v}");
    assert_eq!(
        v,
        serde_json::json!({"error": "Visitor group 'g' not found"})
    );
    for action in ["pause", "resume", "cancel"] {
        let (st, v) = act(&beta, "g", action).await;
        assert_eq!(st, 404, "{action}: {v}");
    }
    let (_, v) = acme.get_json("/aa/collect/v1/groups/g").await;
    assert_eq!(
        (v["state"].as_str(), v["files_waiting"].as_u64()),
        (Some("active"), Some(1))
    );
    assert!(v["actions"].as_array().unwrap().is_empty(), "{v}");
    // Beta's own group of the same id is another group.
    upload_ok(&beta, small_file(2, "beta.prod"), "g").await;
    let (st, v) = act(&beta, "g", "pause").await;
    assert_eq!((st, v["state"].as_str()), (200, Some("paused")));
    let (_, v) = acme.get_json("/aa/collect/v1/groups/g").await;
    assert_eq!(v["state"], "active");
    let (st, _) = acme.get_json("/aa/collect/v1/groups/never-used").await;
    assert_eq!(st, 404);
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_routes_need_a_caller_and_a_well_formed_id() {
    let s = start().await;
    let h = http();
    for (method, path) in [
        (reqwest::Method::GET, "/aa/collect/v1/groups/g"),
        (reqwest::Method::POST, "/aa/collect/v1/groups/g/pause"),
        (reqwest::Method::POST, "/aa/collect/v1/groups/g/resume"),
        (reqwest::Method::POST, "/aa/collect/v1/groups/g/cancel"),
    ] {
        let r = h
            .request(method.clone(), format!("{}{path}", s.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
    }
    let api = Api::default_client(&s).await;
    let (st, v) = api.get_json("/aa/collect/v1/groups/%FF").await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("Malformed visitor group id"))
    );
    let (st, v) = act(&api, "%FF", "cancel").await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("Malformed visitor group id"))
    );
    s.stop().await.unwrap();
}
