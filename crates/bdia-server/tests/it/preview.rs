//! The impact preview (`POST /aa/collect/v1/events/validate?preview=true`)
//! over real HTTP, against a company with processed hits: every figure is
//! checked against what the rows must give, and nothing is stored.

use std::time::Duration;

use bdia_store::FileStatus;

use crate::common::*;

const T0: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z
const HEADER: &str = "timestamp,visitorID,reportSuiteID,userAgent,pageName";

fn file(rows: &[(i64, &str, &str)]) -> Vec<u8> {
    let mut s = format!("{HEADER}\n");
    for (t, vid, rs) in rows {
        s.push_str(&format!("{t},{vid},{rs},Mozilla/5.0,Home\n"));
    }
    gz(s.as_bytes())
}

async fn preview(api: &Api, bytes: Vec<u8>, query: &str) -> (u16, serde_json::Value) {
    let r = api
        .post(&format!("/aa/collect/v1/events/validate{query}"))
        .multipart(
            reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes)),
        )
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_counts_what_a_file_would_do_and_stores_nothing() {
    let s = start_with(|c| {
        c.processing.enabled = true;
        c.processing.poll_interval_ms = 50;
    })
    .await;
    let api = Api::default_client(&s).await;
    let company = s.credentials.company.clone();

    // Processed first: v1 and v2 in rs1, last hits at T0 + 1000, and 600
    // rows of other visitors, so that the measured rate stays far above a
    // throttle of 1 row/s however slow the machine.
    let fillers: Vec<(i64, String)> = (0..600).map(|i| (T0 + i % 900, format!("f{i}"))).collect();
    let mut rows: Vec<(i64, &str, &str)> = vec![
        (T0 + 900, "v1", "rs1"),
        (T0 + 1000, "v1", "rs1"),
        (T0 + 1000, "v2", "rs1"),
    ];
    rows.extend(fillers.iter().map(|(t, v)| (*t, v.as_str(), "rs1")));
    let (st, v) = api.upload(file(&rows), "g").await;
    assert_eq!(st, 200, "{v}");
    let id = v["file_id"].as_str().unwrap().to_string();
    let mut done = false;
    for _ in 0..1200 {
        let rec = s
            .state
            .store
            .get_file(&company, &id)
            .await
            .unwrap()
            .unwrap();
        if rec.status == FileStatus::Complete {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "the first file was processed");
    let states_before = s
        .state
        .store
        .list_visitor_states(&company, None, 100)
        .await
        .unwrap();

    // v1 earlier than its last processed hit (out of order), v1 later, v3
    // new in rs1, v2 new in rs2 (state is per suite) on the next day, and
    // one invalid row (not counted).
    let mut plain = format!("{HEADER}\n");
    for (t, vid, rs) in [
        (T0 + 500, "v1", "rs1"),
        (T0 + 2000, "v1", "rs1"),
        (T0 + 100, "v3", "rs1"),
        (T0 + 90_000, "v2", "rs2"),
    ] {
        plain.push_str(&format!("{t},{vid},{rs},Mozilla/5.0,Home\n"));
    }
    plain.push_str("not-a-time,v9,rs1,Mozilla/5.0,Home\n");
    let (st, v) = preview(&api, gz(plain.as_bytes()), "?preview=true").await;
    assert_eq!(
        st, 400,
        "one invalid row: the contract's 400, with the preview: {v}"
    );
    let p = &v["preview"];
    assert_eq!(p["first_hit_time"], "2023-11-14T22:15:00Z", "{p}");
    assert_eq!(p["last_hit_time"], "2023-11-15T23:13:20Z");
    assert_eq!(
        p["rows_by_suite_day"],
        serde_json::json!([
            { "report_suite": "rs1", "date": "2023-11-14", "rows": 3 },
            { "report_suite": "rs2", "date": "2023-11-15", "rows": 1 }
        ])
    );
    assert_eq!(p["visitors"], 3, "rs1:v1, rs1:v3, rs2:v2");
    assert_eq!(p["new_visitors"], 2, "v3 in rs1, v2 in rs2");
    assert_eq!(p["out_of_order_rows"], 1, "v1 at T0 + 500 < T0 + 1000");
    assert_eq!(p["rows_queued"], 0);
    assert!(p["rows_per_second"].as_f64().unwrap() > 0.0, "{p}");
    assert!(
        p["estimate_basis"].as_str().unwrap().contains("measured"),
        "{p}"
    );
    let rate = p["rows_per_second"].as_f64().unwrap();
    let est = p["estimated_processing_secs"].as_f64().unwrap();
    assert!(
        (est - 4.0 / rate).abs() < 1e-9,
        "4 valid rows at {rate} rows/s: {est}"
    );

    // A throttle below the measured rate is what the estimate goes by.
    set_throttle(&s, &company, Some(1)).await;
    let (_, v) = preview(
        &api,
        file(&[(T0 + 3000, "v1", "rs1"), (T0 + 3001, "v1", "rs1")]),
        "?preview=true",
    )
    .await;
    assert_eq!(v["preview"]["rows_per_second"], 1.0, "{v}");
    assert_eq!(v["preview"]["estimated_processing_secs"], 2.0);
    assert!(v["preview"]["estimate_basis"]
        .as_str()
        .unwrap()
        .contains("throttle"));

    // Without the flag: no preview. A bad flag: a precise 400.
    let (st, v) = preview(&api, file(&[(T0, "v1", "rs1")]), "").await;
    assert_eq!(st, 200);
    assert!(v.get("preview").is_none(), "{v}");
    let (st, v) = preview(&api, file(&[(T0, "v1", "rs1")]), "?preview=maybe").await;
    assert_eq!(st, 400);
    assert_eq!(v["error"], "preview must be true or false", "{v}");

    // Nothing stored: one file, the same visitor states, no new suite.
    let page = s
        .state
        .store
        .list_files(
            &company,
            &bdia_store::FileQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.files.len(), 1);
    assert_eq!(
        s.state
            .store
            .list_visitor_states(&company, None, 100)
            .await
            .unwrap(),
        states_before
    );
    assert!(s
        .state
        .store
        .get_report_suite(&company, "rs2")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bytes_under_another_key_are_accepted_with_a_warning() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let bytes = file(&[(T0, "v1", "rs1"), (T0 + 1, "v2", "rs1")]);
    let (st, first) = api.upload_with(bytes.clone(), "g", Some("k1"), None).await;
    assert_eq!(st, 200, "{first}");
    assert!(first.get("duplicate_of").is_none(), "{first}");
    let first_id = first["file_id"].as_str().unwrap();

    // The same key: the idempotent answer, no warning.
    let (st, again) = api.upload_with(bytes.clone(), "g", Some("k1"), None).await;
    assert_eq!(st, 200);
    assert_eq!(again["file_id"], first["file_id"]);
    assert!(again.get("duplicate_of").is_none());

    // Another key: accepted, and flagged in the record and its log.
    let (st, dup) = api.upload_with(bytes.clone(), "g", Some("k2"), None).await;
    assert_eq!(st, 200, "{dup}");
    assert_ne!(dup["file_id"], first["file_id"]);
    assert_eq!(dup["duplicate_of"], first_id);
    let log = dup["processing_log"].as_str().unwrap();
    assert!(
        log.contains(&format!(
            "Warning: the same content as file {first_id} (idempotency key 'k1'"
        )),
        "{log}"
    );
    let (_, looked_up) = api
        .get_json(&format!(
            "/aa/collect/v1/events/{}",
            dup["file_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(looked_up["duplicate_of"], first_id);

    // Other bytes: no warning; the preview names the earlier file.
    let (_, other) = api
        .upload_with(file(&[(T0, "v3", "rs1")]), "g", Some("k3"), None)
        .await;
    assert!(other.get("duplicate_of").is_none(), "{other}");
    let (st, v) = preview(&api, bytes, "?preview=true").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["preview"]["duplicate_of"], first_id);
    let (_, v) = preview(&api, file(&[(T0, "v9", "rs1")]), "?preview=true").await;
    assert!(v["preview"].get("duplicate_of").is_none(), "{v}");
}
