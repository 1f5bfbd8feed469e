use serde_json::Value;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_return_the_original_record() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let (st, first) = api
        .upload_with(small_file(5, "acme.prod"), "g", Some("key-1"), Some("a.gz"))
        .await;
    assert_eq!(st, 200);
    assert_eq!(first["idempotency_key"], "key-1");
    let (st, again) = api
        .upload_with(small_file(9, "acme.prod"), "g", Some("key-1"), Some("b.gz"))
        .await;
    assert_eq!(st, 200);
    assert_eq!(again, first, "the original record, unchanged");
    let (st, by_key) = api.get_json("/aa/collect/v1/events/key/key-1").await;
    assert_eq!(st, 200);
    assert_eq!(by_key, first);
    let (_, list) = api.get_json("/aa/collect/v1/events").await;
    assert_eq!(list["files"].as_array().unwrap().len(), 1, "stored once");
    assert_eq!(blob_files(&s).len(), 1);

    let (st, v) = api.get_json("/aa/collect/v1/events/key/unknown").await;
    assert_eq!(
        (st, v),
        (404, serde_json::json!({"error": "File not found"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_uploads_with_one_key_store_one_file() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.upload_with(small_file(20 + i, "acme.prod"), "g", Some("race"), None)
                .await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let (st, v) = t.await.unwrap();
        assert_eq!(st, 200, "{v}");
        ids.push(v["file_id"].as_str().unwrap().to_string());
    }
    ids.dedup();
    assert_eq!(
        ids.len(),
        1,
        "every racer sees the one stored file: {ids:?}"
    );
    let (_, list) = api.get_json("/aa/collect/v1/events").await;
    assert_eq!(list["files"].as_array().unwrap().len(), 1);
    assert!(
        wait_until(|| blob_files(&s) == vec![format!("files/{}.csv.gz", ids[0])]).await,
        "only the winner's bytes stay: {:?}",
        blob_files(&s)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_may_be_sent_again() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let (_, bad) = api
        .upload_with(b"garbage".to_vec(), "g", Some("k"), None)
        .await;
    assert_eq!(bad["status_code"], "REJECTED");
    let (_, v) = api.get_json("/aa/collect/v1/events/key/k").await;
    assert_eq!(v["file_id"], bad["file_id"]);
    let (st, good) = api
        .upload_with(small_file(3, "acme.prod"), "g", Some("k"), None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(good["status_code"], "UPLOADED");
    assert_ne!(good["file_id"], bad["file_id"]);
    let (_, v) = api.get_json("/aa/collect/v1/events/key/k").await;
    assert_eq!(
        v["file_id"], good["file_id"],
        "the key now points to the accepted file"
    );
    let (st, v) = api
        .get_json(&format!(
            "/aa/collect/v1/events/{}",
            bad["file_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(st, 200, "the rejected record stays retrievable");
    assert_eq!(v["status_code"], "REJECTED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_record_and_listing() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let group = if i % 2 == 0 { "even" } else { "odd" };
        let (_, v) = api.upload(small_file(2, "acme.prod"), group).await;
        ids.push(v["file_id"].as_str().unwrap().to_string());
    }
    api.upload(b"junk".to_vec(), "even").await;

    let (st, v) = api
        .get_json(&format!("/aa/collect/v1/events/{}", ids[0]))
        .await;
    assert_eq!(st, 200);
    for k in [
        "processing_start_date",
        "file_reader_complete_date",
        "processing_end_date",
    ] {
        assert!(v.get(k).unwrap().is_null(), "{k} is null until set");
    }
    assert!(v["processing_log"].is_string());
    let (st, v) = api.get_json("/aa/collect/v1/events/%FF%FE").await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = api.get_json("/aa/collect/v1/events/not-a-file").await;
    assert_eq!((st, v["error"].as_str().unwrap()), (404, "File not found"));

    // Newest first, paginated, filtered.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/aa/collect/v1/events?vgid=even&status=UPLOADED&limit=2".to_string(),
            Some(c) => {
                format!("/aa/collect/v1/events?vgid=even&status=UPLOADED&limit=2&cursor={c}")
            }
        };
        let (st, page) = api.get_json(&path).await;
        assert_eq!(st, 200);
        for f in page["files"].as_array().unwrap() {
            seen.push(f["file_id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, [ids[4].clone(), ids[2].clone(), ids[0].clone()]);
    let (_, page) = api.get_json("/aa/collect/v1/events?status=REJECTED").await;
    assert_eq!(page["files"].as_array().unwrap().len(), 1);
    for bad in ["status=DONE", "limit=0", "limit=abc", "cursor=zz"] {
        let (st, v) = api.get_json(&format!("/aa/collect/v1/events?{bad}")).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_docs_and_unknown_paths() {
    let s = start().await;
    let h = http();
    let get = |p: &str| h.get(format!("{}{p}", s.base_url())).send();
    let r = get("/healthz").await.unwrap();
    assert_eq!(r.status(), 200);
    let r = get("/readyz").await.unwrap();
    assert_eq!(r.status(), 200);
    // /metrics needs the metrics token on the main listener.
    let r = get("/metrics").await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("metrics_token"),
        "{v}"
    );
    let r = h
        .get(format!("{}/metrics", s.base_url()))
        .bearer_auth("not-the-metrics-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(metrics_text(&s.base_url())
        .await
        .contains("bdia_http_errors_total"));
    let r = get("/nope").await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "Not found");
    let r = h
        .delete(format!("{}/aa/collect/v1/events", s.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let _: Value = r.json().await.unwrap();

    let doc: Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (method, path) in bdia_server::ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    assert_eq!(
        doc["paths"].as_object().unwrap().len(),
        bdia_server::ROUTES
            .iter()
            .map(|(_, p)| p)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        "no undocumented or stale paths"
    );
}
