use std::io::Write;

use bdia_format::error::RowErrorKind;
use bdia_store::FileStatus;
use reqwest::multipart::{Form, Part};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_with_and_without_filename() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let file = small_file(10, "acme.prod");
    let (st, v) = api.upload(file.clone(), "group1").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status_code"], "UPLOADED");
    assert_eq!(v["status"], "File uploaded successfully");
    assert_eq!(v["rows"], 10);
    assert_eq!(v["invalid_rows"], 0);
    assert_eq!(v["size"], file.len() as u64);
    assert_eq!(v["upload_name"], "ingest_file.gz");
    assert_eq!(v["visitor_group_id"], "group1");
    assert_eq!(v["idempotency_key"], v["file_id"]);
    assert!(v["received_date"].as_i64().unwrap() > 1_600_000_000);
    assert!(v["processing_log"]
        .as_str()
        .unwrap()
        .contains("Processing complete: 10 rows will be submitted."));
    assert!(v["processing_start_date"].is_null());
    let id = v["file_id"].as_str().unwrap();
    let staged = s.data_dir().join(format!("blobs/files/{id}.csv.gz"));
    assert_eq!(
        std::fs::read(staged).unwrap(),
        file,
        "staged bytes are the upload"
    );

    let (st, v) = api.upload_with(file, "group1", None, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["upload_name"], "");
    assert_eq!(v["status_code"], "UPLOADED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_file_part_without_filename_or_content_type_is_accepted() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let body = bare_multipart("XyZbOuNdArY", &small_file(3, "acme.prod"));
    let mut req = format!(
        "POST /aa/collect/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         x-api-key: {}\r\nx-adobe-vgid: g\r\n\
         Content-Type: multipart/form-data; boundary=XyZbOuNdArY\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        api.token,
        api.api_key,
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let resp = raw_exchange(s.addr, &req);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let v: serde_json::Value = serde_json::from_str(raw_body(&resp)).unwrap();
    assert_eq!(v["upload_name"], "");
    assert_eq!(v["rows"], 3);
    assert_eq!(v["status_code"], "UPLOADED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rows_are_counted_and_kept_in_a_reject_report() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let (file, summary) = generated(2000, 0.05, &["acme.prod"]);
    let (st, v) = api.upload(file, "g").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["rows"], 2000);
    assert_eq!(v["invalid_rows"], summary.invalid_total());
    assert!(summary.invalid_total() > 0);
    let id = v["file_id"].as_str().unwrap();
    let rec = s
        .state
        .store
        .get_file(&s.credentials.company, id)
        .await
        .unwrap()
        .unwrap();
    let key = rec.rejects_key.expect("a reject report");
    let text = String::from_utf8(s.state.blobs.get(&key).await.unwrap().to_vec()).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        rdr.headers().unwrap().iter().collect::<Vec<_>>(),
        ["row", "kind", "message", "raw"]
    );
    let rows: Vec<(u64, String)> = rdr
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].parse().unwrap(), r[1].to_string())
        })
        .collect();
    let expected: Vec<(u64, String)> = summary
        .invalid_rows
        .iter()
        .map(|(row, kind)| (*row, kind.code().to_string()))
        .collect();
    assert_eq!(rows, expected, "every invalid row, with its kind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_file_rejections_keep_the_record_not_the_bytes() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let (st, v) = api.upload(b"not gzip at all".to_vec(), "g").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status_code"], "REJECTED");
    assert_eq!(v["error"], "Not in GZIP format");
    assert_eq!(v["rows"], 0);
    assert!(v["processing_log"]
        .as_str()
        .unwrap()
        .contains("Not in GZIP format"));
    let id = v["file_id"].as_str().unwrap().to_string();

    // Truncated gzip.
    let mut file = small_file(500, "acme.prod");
    file.truncate(file.len() / 2);
    let (st, v) = api.upload(file, "g").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status_code"], "REJECTED");
    assert!(v["error"].as_str().unwrap().contains("GZIP"), "{v}");

    // Header problem: no timestamp column.
    let (st, v) = api
        .upload(gz(b"visitorID,reportSuiteID\nv1,acme.prod\n"), "g")
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["status_code"], "REJECTED");
    assert_eq!(v["rows"], 1);
    assert_eq!(v["invalid_rows"], 1);

    assert!(
        blob_files(&s).is_empty(),
        "rejected bytes are not kept: {:?}",
        blob_files(&s)
    );
    let (st, v) = api.get_json(&format!("/aa/collect/v1/events/{id}")).await;
    assert_eq!(st, 200);
    assert_eq!(v["status_code"], "REJECTED");
    let rec = s
        .state
        .store
        .get_file(&s.credentials.company, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, FileStatus::Rejected);
    assert_eq!(rec.group_seq, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_answer_413_and_leave_nothing() {
    let s = start_with(|c| {
        c.limits.max_compressed_bytes = 64 * 1024;
        c.limits.max_uncompressed_bytes = 1024 * 1024;
    })
    .await;
    let api = Api::default_client(&s).await;

    // A gzip bomb: 16 MiB of one repeated row, a few KiB compressed.
    let mut plain = Vec::from(format!("{HEADER}\n"));
    while plain.len() < 16 * 1024 * 1024 {
        plain.extend_from_slice(b"1700000000,v1,acme.prod,Mozilla/5.0,Home\n");
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&plain).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 64 * 1024);
    let (st, v) = api.upload(bomb.clone(), "g").await;
    assert_eq!(st, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("too large"), "{v}");
    let (st, _) = api.validate(bomb).await;
    assert_eq!(st, 413);

    // Compressed size over the limit (incompressible content).
    let mut noise = Vec::with_capacity(300 * 1024);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while noise.len() < 300 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(format!("{x:x}").as_bytes());
    }
    let mut file = Vec::from(format!("{HEADER}\n"));
    file.extend_from_slice(&noise);
    let big = gz(&file);
    assert!(big.len() > 128 * 1024);
    let (st, v) = api.upload(big, "g").await;
    assert_eq!(st, 413, "{v}");

    assert!(blob_files(&s).is_empty(), "{:?}", blob_files(&s));
    let (_, list) = api.get_json("/aa/collect/v1/events").await;
    assert_eq!(list["files"].as_array().unwrap().len(), 0, "no record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_answer_400() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    // Missing x-adobe-vgid.
    let r = api
        .post("/aa/collect/v1/events")
        .multipart(Form::new().part("file", Part::bytes(small_file(1, "a"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("x-adobe-vgid"));
    // No `file` part.
    let r = api
        .post("/aa/collect/v1/events")
        .header("x-adobe-vgid", "g")
        .multipart(Form::new().text("other", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("Missing 'file'"));
    // Two `file` parts: refused, nothing stored.
    let r = api
        .post("/aa/collect/v1/events")
        .header("x-adobe-vgid", "g")
        .multipart(
            Form::new()
                .part("file", Part::bytes(small_file(2, "a")))
                .part("file", Part::bytes(small_file(2, "a"))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("Duplicate"));
    // Not multipart at all.
    let r = api
        .post("/aa/collect/v1/events")
        .header("x-adobe-vgid", "g")
        .body("plain")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let _: serde_json::Value = r.json().await.unwrap();

    assert!(
        wait_until(|| blob_files(&s).is_empty()).await,
        "{:?}",
        blob_files(&s)
    );
    let (_, list) = api.get_json("/aa/collect/v1/events").await;
    assert_eq!(list["files"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_get_distinct_group_sequence_numbers() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.upload(small_file(50 + i, "acme.prod"), "shared").await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let (st, v) = t.await.unwrap();
        assert_eq!(st, 200, "{v}");
        ids.push(v["file_id"].as_str().unwrap().to_string());
    }
    let mut seqs = Vec::new();
    for id in &ids {
        let rec = s
            .state
            .store
            .get_file(&s.credentials.company, id)
            .await
            .unwrap()
            .unwrap();
        seqs.push(rec.group_seq.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=8).collect::<Vec<u64>>());
    let pending = s.state.store.pending_files(100).await.unwrap();
    let order: Vec<u64> = pending.iter().map(|f| f.group_seq.unwrap()).collect();
    assert_eq!(
        order,
        (1..=8).collect::<Vec<u64>>(),
        "pending in acceptance order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_answers_per_spec_and_stores_nothing() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let (st, v) = api.validate(small_file(5, "acme.prod")).await;
    assert_eq!((st, v["success"].clone()), (200, "File is valid".into()));
    assert_eq!(
        (v["rows"].clone(), v["invalid_rows"].clone()),
        (5.into(), 0.into())
    );
    assert_eq!(v["status_code"], "UPLOADED");
    assert!(v["processing_log"]
        .as_str()
        .unwrap()
        .ends_with("Processing complete: 5 rows will be submitted. 0 rows were invalid."));
    let (file, summary) = generated(300, 0.1, &["acme.prod"]);
    let first_bad = summary.invalid_rows[0].0;
    let (st, v) = api.validate(file).await;
    assert_eq!(st, 400);
    assert_eq!(
        v["error"],
        format!(
            "File has {} rows that do not conform to the required CSV format! (Ex: row #{first_bad})",
            summary.invalid_total()
        )
    );
    assert_eq!(v["invalid_rows"], summary.invalid_total());
    assert_eq!(v["rows"], 300);
    let (st, v) = api.validate(b"nope".to_vec()).await;
    assert_eq!(
        (st, v["error"].as_str().unwrap()),
        (400, "Not in GZIP format")
    );
    assert_eq!(v["status_code"], "REJECTED");
    let (st, _) = api
        .validate(gz(b"timestamp,visitorID,timestamp\n1,2,3\n"))
        .await;
    assert_eq!(st, 400);
    assert!(blob_files(&s).is_empty());
    let (_, list) = api.get_json("/aa/collect/v1/events").await;
    assert_eq!(list["files"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    let s = start_with(|c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_second = 1;
        c.rate_limit.burst = 2;
    })
    .await;
    let api = Api::default_client(&s).await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..4 {
        let r = api
            .post("/aa/collect/v1/events")
            .header("x-adobe-vgid", "g")
            .multipart(Form::new().part("file", Part::bytes(small_file(1, "a"))))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let ra: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(ra >= 1);
            let v: serde_json::Value = r.json().await.unwrap();
            limited = Some(v);
        }
    }
    assert_eq!(&statuses[..2], [200, 200]);
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(limited.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("Too many"));

    // Switched off for the company: no 429.
    let mut company = s
        .state
        .store
        .get_company(&s.credentials.company)
        .await
        .unwrap()
        .unwrap();
    company.settings.upload_rate_limit = bdia_store::RateLimitSetting::Off;
    s.state
        .store
        .update_company_settings(&company.id, company.settings)
        .await
        .unwrap();
    for _ in 0..5 {
        let (st, _) = api.upload(small_file(1, "a"), "g").await;
        assert_eq!(st, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_rejected_rows_by_cause() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let mut csv = format!("{HEADER}\n");
    csv.push_str("1700000000,v1,acme.prod,,Home\n");
    api.upload(gz(csv.as_bytes()), "g").await;
    let text = metrics_text(&api.base).await;
    let code = RowErrorKind::MissingUserAgent.code();
    assert!(
        text.lines()
            .any(|l| l.starts_with("bdia_rows_rejected_total") && l.contains(code)),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_errors_answer_500_without_detail_and_leave_nothing() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    // Break the blob root: `files` becomes a plain file.
    let files = s.data_dir().join("blobs/files");
    std::fs::remove_dir_all(&files).unwrap();
    std::fs::File::create(&files)
        .unwrap()
        .write_all(b"x")
        .unwrap();
    let (st, v) = api.upload(small_file(3, "acme.prod"), "g").await;
    assert_eq!(st, 500);
    assert_eq!(v, serde_json::json!({"error": "Internal server error"}));
    let staging = s.data_dir().join("blobs/staging");
    assert!(wait_until(|| std::fs::read_dir(&staging).unwrap().count() == 0).await);
    let (_, list) = api.get_json("/aa/collect/v1/events").await;
    assert_eq!(list["files"].as_array().unwrap().len(), 0);
}

/// Regression: one warning per unknown column, uncapped, made a 2.6 MB
/// upload carry a 75 MB processing log, stored and returned in every view.
/// Warnings are now listed up to ten, then counted, and a long column name
/// is shortened in its warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_column_warnings_are_capped_in_the_processing_log() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let unknown = 9_000; // under the column cap (row::MAX_COLUMNS)
    let long_name = "y".repeat(100_000);
    let csv = wide_file(
        std::iter::once(long_name.clone()).chain((1..unknown).map(|i| format!("extra{i}"))),
    );
    let (st, v) = api.upload(gz(csv.as_bytes()), "g").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["rows"], 1);
    assert_eq!(v["invalid_rows"], 0);
    let log = v["processing_log"].as_str().unwrap();
    assert!(log.len() < 4_096, "{} bytes of log", log.len());
    assert_eq!(
        log.lines().filter(|l| l.starts_with("Warning:")).count(),
        10
    );
    assert!(
        log.contains(&format!("Warning: unknown column '{}...'", "y".repeat(100))),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "... and {} more warnings ({unknown} in all).",
            unknown - 10
        )),
        "{log}"
    );
    assert!(log.ends_with("Processing complete: 1 rows will be submitted. 0 rows were invalid."));
    // The stored record is as short as the answer.
    let (st, rec) = api
        .get_json(&format!(
            "/aa/collect/v1/events/{}",
            v["file_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(st, 200);
    assert_eq!(rec["processing_log"], v["processing_log"]);
}

/// One valid row under `HEADER` plus the `extra` columns (empty cells).
fn wide_file(extra: impl Iterator<Item = String>) -> String {
    let mut csv = String::from(HEADER);
    let mut n = 0;
    for name in extra {
        csv.push(',');
        csv.push_str(&name);
        n += 1;
    }
    csv.push('\n');
    csv.push_str("1700000000,v1,acme.prod,Mozilla/5.0,Home");
    csv.push_str(&",".repeat(n));
    csv.push('\n');
    csv
}

/// Regression: 120,000 `customerID.*` type columns (a 314 KB gzip) cost
/// 13.7 s of CPU in a quadratic header analysis. The analysis is linear,
/// and a header over the column cap is a file rejection with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_over_the_column_cap_is_rejected_with_its_reason() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let types = 120_000;
    let csv = wide_file((0..types).map(|i| format!("customerID.t{i}.id")));
    let (st, v) = api.upload(gz(csv.as_bytes()), "g").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status_code"], "REJECTED", "{v}");
    let log = v["processing_log"].as_str().unwrap();
    assert!(
        log.contains(&format!(
            "File rejected: Too many header columns: {} (at most 10000).",
            types + 5
        )),
        "{log}"
    );
    let (st, v) = api.validate(gz(csv.as_bytes())).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["status_code"], "REJECTED", "{v}");

    // Under the cap, many customer-ID types are analysed and accepted.
    let types = 9_000;
    let csv = wide_file((0..types).map(|i| format!("customerID.t{i}.id")));
    let (st, v) = api.upload(gz(csv.as_bytes()), "g").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status_code"], "UPLOADED", "{v}");
    assert_eq!(v["invalid_rows"], 0, "{v}");
}
