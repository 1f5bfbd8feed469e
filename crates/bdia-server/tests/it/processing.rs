//! The processing stage over the full path: files uploaded over HTTP,
//! processed by the server's scheduler, the lake read back (Parquet) and
//! the metadata checked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bdia_format::engine::{process, Options, RowEvent};
use bdia_format::generate::{generate, GenOptions};
use bdia_format::hit::HitType;
use bdia_server::testing::{lake_hits, LakeHit, TestServer};
use bdia_server::Config;
use bdia_store::{FileRecord, FileStatus};

use crate::common::*;

const T0: i64 = 1_700_000_000;
const HEADER: &str =
    "timestamp,visitorID,reportSuiteID,userAgent,pageName,linkType,linkName,customerID.CRM.id,customerID.CRM.isMCSeed";

fn row(t: i64, vid: &str, rs: &str, page: bool) -> String {
    if page {
        format!("{t},{vid},\"{rs}\",Mozilla/5.0,Home,,,,\n")
    } else {
        format!("{t},{vid},\"{rs}\",Mozilla/5.0,,o,Click,,\n")
    }
}

fn file(rows: &[String]) -> Vec<u8> {
    let mut s = format!("{HEADER}\n");
    for r in rows {
        s.push_str(r);
    }
    gz(s.as_bytes())
}

async fn start_processing(tweak: impl FnOnce(&mut Config)) -> TestServer {
    start_with(|c| {
        c.processing.enabled = true;
        c.processing.poll_interval_ms = 50;
        tweak(c);
    })
    .await
}

async fn record(s: &TestServer, company: &str, id: &str) -> FileRecord {
    s.state.store.get_file(company, id).await.unwrap().unwrap()
}

/// Waits until every file is COMPLETE or ERROR (a generous bound, not a
/// timing assertion).
async fn settled(s: &TestServer, company: &str, ids: &[String]) -> Vec<FileRecord> {
    for _ in 0..2_400 {
        let mut out = Vec::new();
        for id in ids {
            out.push(record(s, company, id).await);
        }
        if out
            .iter()
            .all(|r| matches!(r.status, FileStatus::Complete | FileStatus::Error))
        {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("files did not settle");
}

async fn upload_ok(api: &Api, bytes: Vec<u8>, vgid: &str) -> String {
    let (st, v) = api.upload(bytes, vgid).await;
    assert_eq!(st, 200, "{v}");
    v["file_id"].as_str().unwrap().to_string()
}

fn by_row<'a>(hits: &'a [LakeHit], file_id: &str, row: i64, rs: &str) -> &'a LakeHit {
    hits.iter()
        .find(|h| h.file_id == file_id && h.row_number == row && h.report_suite == rs)
        .unwrap_or_else(|| panic!("no hit for row {row} in {rs}"))
}

fn visit(h: &LakeHit) -> (i32, i32, bool, i64) {
    (
        h.visit_num,
        h.visit_page_num,
        h.new_visit,
        h.visit_start_time,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visit_edges_over_the_full_path() {
    let s = start_processing(|_| {}).await;
    let api = Api::default_client(&s).await;
    let company = s.credentials.company.clone();
    let mut rows1 = vec![
        row(T0, "a", "rs1", true),                 // 1: visit 1 starts
        row(T0 + 1_800, "a", "rs1", true),         // 2: exactly 1,800 s: same visit
        row(T0 + 1_800 + 1_801, "a", "rs1", true), // 3: 1,801 s: visit 2
        row(T0, "b", "rs1,rs2", true),             // 4: two suites, one hit each
        row(T0 + 1_000, "b", "rs2", false),        // 5: a link hit in rs2
    ];
    // 6..: visitor c, a hit every 1,500 s for more than 12 h.
    for i in 0..=30 {
        rows1.push(row(T0 + i * 1_500, "c", "rs1", true));
    }
    let f1 = upload_ok(&api, file(&rows1), "g").await;
    let last_a = T0 + 1_800 + 1_801;
    let rows2 = vec![
        row(last_a + 1_800, "a", "rs1", true), // 1: continues visit 2 across files
        row(last_a + 100, "a", "rs1", true),   // 2: earlier than the last hit
        row(T0 + 31 * 1_500, "c", "rs1", true), // 3: continues c's second visit
    ];
    let f2 = upload_ok(&api, file(&rows2), "g").await;
    let recs = settled(&s, &company, &[f1.clone(), f2.clone()]).await;
    for r in &recs {
        assert_eq!(r.status, FileStatus::Complete, "{:?}", r.error);
        assert!(r.processing_start_date.is_some());
        assert!(r.file_reader_complete_date.is_some());
        assert!(r.processing_end_date.is_some());
        assert_eq!(r.blob_key, None, "staged files are deleted after COMPLETE");
    }
    let hits = lake_hits(s.data_dir()).unwrap();
    assert_eq!(
        hits.len(),
        rows1.len() + 1 + rows2.len(),
        "row 4 gives two hits"
    );

    assert_eq!(visit(by_row(&hits, &f1, 1, "rs1")), (1, 1, true, T0));
    assert_eq!(visit(by_row(&hits, &f1, 2, "rs1")), (1, 2, false, T0));
    assert_eq!(
        visit(by_row(&hits, &f1, 3, "rs1")),
        (2, 1, true, last_a),
        "a gap of 1,801 s starts a visit"
    );
    assert_eq!(visit(by_row(&hits, &f1, 4, "rs1")), (1, 1, true, T0));
    assert_eq!(visit(by_row(&hits, &f1, 4, "rs2")), (1, 1, true, T0));
    let link = by_row(&hits, &f1, 5, "rs2");
    assert_eq!(link.hit_type, "link_custom");
    assert_eq!(visit(link), (1, 1, false, T0), "a link hit is no page view");
    // Visitor c: the hit at 42,000 s continues, the one at 43,500 s (>= 12 h
    // after the visit started) starts visit 2.
    for i in 0..=30i64 {
        let h = by_row(&hits, &f1, 6 + i, "rs1");
        if i * 1_500 < 43_200 {
            assert_eq!(visit(h), (1, (i + 1) as i32, i == 0, T0), "c at {i}");
        } else {
            assert_eq!(h.visit_num, 2, "c at {i}");
            assert_eq!(h.new_visit, i * 1_500 == 43_500);
            assert_eq!(h.visit_start_time, T0 + 43_500);
        }
    }
    // Across files.
    assert_eq!(visit(by_row(&hits, &f2, 1, "rs1")), (2, 2, false, last_a));
    let back = by_row(&hits, &f2, 2, "rs1");
    assert!(back.out_of_order, "earlier than the visitor's last hit");
    assert_eq!(
        visit(back),
        (2, 3, false, last_a),
        "joins the current visit"
    );
    assert_eq!(
        visit(by_row(&hits, &f2, 3, "rs1")),
        (2, 3, false, T0 + 43_500)
    );
    // The out-of-order row is in the second file's log.
    let log = &recs[1].processing_log;
    assert!(
        log.starts_with("Processing complete: 3 rows will be submitted."),
        "{log}"
    );
    assert!(log.contains("On row: 2, the hit"), "{log}");
    assert!(
        log.contains("Out of order: 1 rows were earlier than their visitor's last processed hit."),
        "{log}"
    );
    assert!(!recs[0].processing_log.contains("Out of order"));
    // Visitor state persisted per (suite, visitor).
    let states = s
        .state
        .store
        .list_visitor_states(&company, None, 100)
        .await
        .unwrap();
    let keys: Vec<_> = states
        .iter()
        .map(|e| (e.report_suite.as_str(), e.visitor_key.as_str(), e.visit_num))
        .collect();
    assert_eq!(
        keys,
        [
            ("rs1", "vid:a", 2),
            ("rs1", "vid:b", 1),
            ("rs1", "vid:c", 2),
            ("rs2", "vid:b", 1)
        ]
    );
    assert_eq!(states[0].last_hit_time, last_a + 1_800, "never moves back");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_visitor_ids_are_stable_and_namespaced() {
    let s = start_processing(|_| {}).await;
    let api = Api::default_client(&s).await;
    let company = s
        .state
        .store
        .get_company(&s.credentials.company)
        .await
        .unwrap()
        .unwrap();
    let rows = vec![
        format!("{T0},,rs1,Mozilla/5.0,Home,,,42,1\n"),
        format!("{},,rs1,Mozilla/5.0,Home,,,42,true\n", T0 + 10),
        format!("{},42,rs1,Mozilla/5.0,Home,,,42,0\n", T0 + 20),
    ];
    let id = upload_ok(&api, file(&rows), "g").await;
    let recs = settled(&s, &company.id, std::slice::from_ref(&id)).await;
    assert_eq!(recs[0].status, FileStatus::Complete, "{:?}", recs[0].error);
    let hits = lake_hits(s.data_dir()).unwrap();
    let salt = hex::decode(&company.salt).unwrap();
    let seeded = bdia_model::seeded_visitor_id(&salt, "CRM", "42");
    assert_eq!(seeded.len(), 38);
    let a = by_row(&hits, &id, 1, "rs1");
    let b = by_row(&hits, &id, 2, "rs1");
    let c = by_row(&hits, &id, 3, "rs1");
    assert_eq!(
        (a.visitor_id.as_str(), a.visitor_id_type.as_str()),
        (seeded.as_str(), "customer")
    );
    assert_eq!(b.visitor_id, seeded);
    assert_eq!(b.visit_page_num, 2, "the same visitor");
    // Not seeded: the visitorID, a different visitor even though it reads "42".
    assert_eq!(
        (c.visitor_id.as_str(), c.visitor_id_type.as_str()),
        ("42", "vid")
    );
    assert_eq!(visit(c), (1, 1, true, T0 + 20));
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_run_in_acceptance_order_under_a_throttle() {
    let s = start_processing(|c| c.processing.workers = 3).await;
    let api = Api::default_client(&s).await;
    let company = s.credentials.company.clone();
    // A slow worker: a low throttle (rows per second) for the company.
    set_throttle(&s, &company, Some(4_000)).await;
    let groups = 6;
    let per_group = 5;
    let mut ids: Vec<(String, String)> = Vec::new();
    // One visitor per group whose hits continue across the group's files:
    // any reordering shows as a visit number or an out-of-order flag.
    let mut uploads = Vec::new();
    for f in 0..per_group {
        for g in 0..groups {
            let mut rows = Vec::new();
            for i in 0..300 {
                let t = T0 + (f * 300 + i) * 2_000;
                rows.push(row(t, &format!("v{g}"), "rs1", true));
            }
            uploads.push((format!("g{g}"), file(&rows)));
        }
    }
    let mut tasks = Vec::new();
    for g in 0..groups {
        let api = api.clone();
        let mine: Vec<_> = uploads
            .iter()
            .filter(|(vg, _)| *vg == format!("g{g}"))
            .cloned()
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for (vg, bytes) in mine {
                out.push((vg.clone(), upload_ok(&api, bytes, &vg).await));
            }
            out
        }));
    }
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    let all: Vec<String> = ids.iter().map(|(_, id)| id.clone()).collect();
    let recs = settled(&s, &company, &all).await;
    assert!(recs.iter().all(|r| r.status == FileStatus::Complete));
    // Within a group, files were processed one at a time in acceptance order.
    for g in 0..groups {
        let mut mine: Vec<&FileRecord> = recs
            .iter()
            .filter(|r| r.visitor_group_id == format!("g{g}"))
            .collect();
        mine.sort_by_key(|r| r.group_seq);
        for w in mine.windows(2) {
            assert!(
                w[0].processing_end_date.unwrap() <= w[1].processing_start_date.unwrap(),
                "group g{g}: file {} started before {} ended",
                w[1].group_seq.unwrap(),
                w[0].group_seq.unwrap()
            );
        }
    }
    let hits = lake_hits(s.data_dir()).unwrap();
    assert_eq!(hits.len(), groups as usize * per_group as usize * 300);
    assert!(
        hits.iter().all(|h| !h.out_of_order),
        "no hit went back in time"
    );
    let mut visits: HashMap<&str, BTreeSet<i32>> = HashMap::new();
    for h in &hits {
        visits.entry(&h.visitor_id).or_default().insert(h.visit_num);
    }
    // Every hit is 2,000 s after the previous one: one new visit per hit.
    for (v, nums) in visits {
        assert_eq!(nums.len(), per_group as usize * 300, "{v}");
        assert_eq!(*nums.last().unwrap(), per_group as i32 * 300, "{v}");
    }
    let metrics = metrics_text(&s.base_url()).await;
    assert!(metrics.contains("bdia_files_processed_total"), "{metrics}");
    assert!(metrics.contains("bdia_rows_processed_total"));
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_stops_its_group_until_retried() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let s = TestServer::start_in(Some(dir), &path, |_| {})
        .await
        .unwrap();
    let api = Api::default_client(&s).await;
    let company = s.credentials.company.clone();
    let a1 = upload_ok(&api, file(&[row(T0, "a", "rs1", true)]), "g").await;
    let a2 = upload_ok(&api, file(&[row(T0 + 10, "a", "rs1", true)]), "g").await;
    let o1 = upload_ok(&api, file(&[row(T0, "o", "rs1", true)]), "other").await;
    // Break a1: move its staged file away.
    let key = record(&s, &company, &a1).await.blob_key.unwrap();
    let staged = s.state.blobs.local_path(&key).expect("a local blob store");
    let aside = path.join("aside.gz");
    std::fs::rename(&staged, &aside).unwrap();
    let dir = s.stop().await.unwrap();

    let s = TestServer::start_in(dir, &path, |c| {
        c.processing.enabled = true;
        c.processing.poll_interval_ms = 50;
    })
    .await
    .unwrap();
    let api = Api::default_client(&s).await;
    let recs = settled(&s, &company, &[a1.clone(), o1.clone()]).await;
    assert_eq!(recs[0].status, FileStatus::Error);
    assert_eq!(recs[0].error_code.as_deref(), Some("staged_file_missing"));
    assert!(recs[0].processing_log.contains("Processing failed: "));
    assert!(
        recs[0].processing_log.ends_with(" [staged_file_missing]"),
        "the log line names the failure code: {}",
        recs[0].processing_log
    );
    assert_eq!(recs[1].status, FileStatus::Complete, "other groups go on");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        record(&s, &company, &a2).await.status,
        FileStatus::Uploaded,
        "a stopped group's later files wait"
    );
    // The file's API view shows the error.
    let (_, v) = api.get_json(&format!("/aa/collect/v1/events/{a1}")).await;
    assert_eq!(v["status_code"], "ERROR");

    std::fs::rename(&aside, &staged).unwrap();
    let r = api
        .post("/aa/collect/v1/groups/g/retry")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["retried"], 1);
    let recs = settled(&s, &company, &[a1.clone(), a2.clone()]).await;
    assert!(recs.iter().all(|r| r.status == FileStatus::Complete));
    assert!(!recs[0].processing_log.contains("Processing failed"));
    let hits = lake_hits(s.data_dir()).unwrap();
    let a2hit = hits.iter().find(|h| h.file_id == a2).unwrap();
    assert_eq!(
        (a2hit.visit_num, a2hit.visit_page_num),
        (1, 2),
        "in order after the retry"
    );
    s.stop().await.unwrap();
}

/// A row naming `acme@prod` used to be accepted at upload (the suite was
/// auto-created), then the lake refused the name, the file went to ERROR and
/// its visitor group stopped for good. Now the row is an invalid row of its
/// own kind, everything else of the file is processed, and the group goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_report_suite_id_is_an_invalid_row_and_the_group_goes_on() {
    let s = start_processing(|_| {}).await;
    let api = Api::default_client(&s).await;
    let company = s.credentials.company.clone();
    let rows1 = vec![
        row(T0, "a", "rs1", true),               // 1: valid
        row(T0 + 1, "a", "acme@prod", true),     // 2: invalid suite
        row(T0 + 2, "b", "rs1,acme@prod", true), // 3: one bad suite spoils the row
        row(T0 + 3, "b", "rs1", true),           // 4: valid
    ];
    let (st, v) = api.upload(file(&rows1), "g").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status_code"], "UPLOADED");
    assert_eq!(
        (v["rows"].as_u64(), v["invalid_rows"].as_u64()),
        (Some(4), Some(2))
    );
    let log = v["processing_log"].as_str().unwrap();
    assert!(
        log.contains(
            "On row: 2, invalid 'ReportSuiteID' 'acme@prod': '@' at position 5 is not allowed \
             (only letters, digits, '.', '-' and '_'). This row will not be submitted."
        ),
        "{log}"
    );
    assert!(
        log.contains("On row: 3, invalid 'ReportSuiteID' 'acme@prod'"),
        "{log}"
    );
    let f1 = v["file_id"].as_str().unwrap().to_string();
    // The bad name was never created as a suite.
    let suites = s
        .state
        .store
        .list_report_suites(Some(&company))
        .await
        .unwrap();
    assert!(suites.iter().all(|r| r.rsid != "acme@prod"), "{suites:?}");
    assert!(suites.iter().any(|r| r.rsid == "rs1"));
    // The reject report names the kind.
    let rejects = api
        .get(&format!("/aa/collect/v1/events/{f1}/rejects"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        rejects.matches(",invalid_report_suite,").count(),
        2,
        "{rejects}"
    );

    let f2 = upload_ok(&api, file(&[row(T0 + 10, "a", "rs1", true)]), "g").await;
    let recs = settled(&s, &company, &[f1.clone(), f2.clone()]).await;
    for r in &recs {
        assert_eq!(r.status, FileStatus::Complete, "{:?}", r.error);
    }
    assert!(recs[0]
        .processing_log
        .contains("On row: 2, invalid 'ReportSuiteID' 'acme@prod'"));
    let hits = lake_hits(s.data_dir()).unwrap();
    assert_eq!(
        hits.len(),
        3,
        "rows 1 and 4 of the first file, row 1 of the second"
    );
    assert!(hits.iter().all(|h| h.report_suite == "rs1"));
    by_row(&hits, &f1, 1, "rs1");
    by_row(&hits, &f1, 4, "rs1");
    assert!(hits
        .iter()
        .all(|h| h.file_id != f1 || matches!(h.row_number, 1 | 4)));
    // The next file of the group continues visitor a's visit.
    assert_eq!(visit(by_row(&hits, &f2, 1, "rs1")), (1, 2, false, T0));
    let metrics = metrics_text(&s.base_url()).await;
    assert!(
        metrics.contains("bdia_rows_rejected_total{cause=\"invalid_report_suite\"}"),
        "{metrics}"
    );
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_report_is_downloadable_and_tenant_scoped() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let rows = vec![
        row(T0, "a", "rs1", true),
        "notatime,a,rs1,Mozilla/5.0,Home,,,,\n".to_string(),
    ];
    let id = upload_ok(&api, file(&rows), "g").await;
    let r = api
        .get(&format!("/aa/collect/v1/events/{id}/rejects"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let body = r.text().await.unwrap();
    let mut lines = body.lines();
    assert_eq!(lines.next(), Some("row,kind,message,raw"));
    let reject = lines.next().unwrap();
    assert!(reject.starts_with("2,"), "{body}");
    assert!(reject.contains("notatime"), "{body}");
    // A clean file: the header only.
    let clean = upload_ok(&api, file(&[row(T0, "a", "rs1", true)]), "g").await;
    let body = api
        .get(&format!("/aa/collect/v1/events/{clean}/rejects"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "row,kind,message,raw\n");
    // Another company: not found.
    bdia_server::tenancy::create_company(&*s.state.store, "beta", Default::default())
        .await
        .unwrap();
    let (client, secret) =
        bdia_server::tenancy::create_client(&*s.state.store, "beta", None, None, None)
            .await
            .unwrap();
    let beta = Api::with(&s, &client.client_id, &secret).await;
    let r = beta
        .get(&format!("/aa/collect/v1/events/{id}/rejects"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    s.stop().await.unwrap();
}

/// Per (suite, day): page views, link hits, visits, unique visitors.
type Stats = BTreeMap<(String, String), (u64, u64, u64, u64)>;

fn day(t: i64) -> String {
    let days = t.div_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The expected figures, computed from the input rows alone with the visit
/// rules written out here (not the server's code).
fn expected(files_in_order: &[Vec<u8>]) -> Stats {
    // (suite, visitor) -> (last hit, visit start)
    let mut state: HashMap<(String, String), (i64, i64)> = HashMap::new();
    let mut stats: Stats = BTreeMap::new();
    let mut visitors: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for bytes in files_in_order {
        process(&bytes[..], &Options::default(), |e| {
            if let RowEvent::Valid { row, valid } = e {
                let hit = valid.to_hit(row);
                let key = hit.visitor.key();
                let mut suites: Vec<&bdia_format::hit::Value> = Vec::new();
                for s in &hit.report_suites {
                    if !suites.contains(&s) {
                        suites.push(s);
                    }
                }
                for s in suites {
                    let t = hit.timestamp;
                    let k = (s.to_string(), key.clone());
                    let new_visit = match state.get(&k) {
                        None => true,
                        Some(&(last, start)) => t - last > 1_800 || t - start >= 43_200,
                    };
                    let entry = state.entry(k).or_insert((t, t));
                    if new_visit {
                        *entry = (t, t);
                    } else {
                        entry.0 = entry.0.max(t);
                    }
                    let d = day(t);
                    let st = stats.entry((s.to_string(), d.clone())).or_default();
                    if hit.hit_type == HitType::PageView {
                        st.0 += 1;
                    } else {
                        st.1 += 1;
                    }
                    if new_visit {
                        st.2 += 1;
                    }
                    visitors
                        .entry((s.to_string(), d))
                        .or_default()
                        .insert(key.clone());
                }
            }
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
    }
    for (k, v) in visitors {
        stats.get_mut(&k).unwrap().3 = v.len() as u64;
    }
    stats
}

fn observed(hits: &[LakeHit]) -> Stats {
    let mut stats: Stats = BTreeMap::new();
    let mut visitors: BTreeMap<(String, String), BTreeSet<(String, String)>> = BTreeMap::new();
    for h in hits {
        let k = (h.report_suite.clone(), h.date.clone());
        let st = stats.entry(k.clone()).or_default();
        if h.hit_type == "page_view" {
            st.0 += 1;
        } else {
            st.1 += 1;
        }
        if h.new_visit {
            st.2 += 1;
        }
        visitors
            .entry(k)
            .or_default()
            .insert((h.visitor_id_type.clone(), h.visitor_id.clone()));
    }
    for (k, v) in visitors {
        stats.get_mut(&k).unwrap().3 = v.len() as u64;
    }
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_generated_groups_match_an_independent_count() {
    let s = start_processing(|_| {}).await;
    let api = Api::default_client(&s).await;
    let company = s.credentials.company.clone();
    let groups = 3u64;
    let files_per_group = 3u64;
    let mut expected_all: Stats = BTreeMap::new();
    let mut ids = Vec::new();
    for g in 0..groups {
        let mut files = Vec::new();
        for f in 0..files_per_group {
            let opts = GenOptions {
                rows: 1_500,
                visitors: 400,
                seed: 7,
                // Consecutive files of a group continue in time.
                start: T0 + (f as i64) * 1_500 * 40,
                mean_gap: 40,
                report_suites: vec!["acme.prod".into(), "acme.dev".into()],
                invalid_rate: 0.01,
                group: Some((g, groups)),
                ..GenOptions::default()
            };
            let mut plain = Vec::new();
            generate(&opts, &mut plain).unwrap();
            files.push(gz(&plain));
        }
        for f in &files {
            ids.push(upload_ok(&api, f.clone(), &format!("group-{g}")).await);
        }
        for (k, v) in expected(&files) {
            let e = expected_all.entry(k).or_default();
            e.0 += v.0;
            e.1 += v.1;
            e.2 += v.2;
            e.3 += v.3; // groups never share a visitor
        }
    }
    let recs = settled(&s, &company, &ids).await;
    for r in &recs {
        assert_eq!(r.status, FileStatus::Complete, "{:?}", r.error);
    }
    let hits = lake_hits(s.data_dir()).unwrap();
    assert!(!hits.is_empty());
    assert_eq!(observed(&hits), expected_all);
    s.stop().await.unwrap();
}
