//! The single-hit Data Insertion API against a real `bdia serve`: Adobe's
//! public Node.js client (`adobe-analytics-di`, installed by ./test.sh)
//! sends hits that reach the lake and reports; accepted hits survive a
//! SIGKILL and are counted once, also when a journal segment is rolled a
//! second time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// `GET path` over a fresh connection; the whole answer.
fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0 (test)\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Waits (a generous bound) until the lake under `dir` holds `n` hits.
fn wait_lake(dir: &Path, n: usize) -> Vec<bdia_server::testing::LakeHit> {
    let start = Instant::now();
    loop {
        let hits = bdia_server::testing::lake_hits(dir).unwrap_or_default();
        if hits.len() >= n || start.elapsed() > Duration::from_secs(120) {
            return hits;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn page_of(h: &bdia_server::testing::LakeHit) -> String {
    let marker = "page_name=StringArray\n[\n  \"";
    let start = h.all.find(marker).expect("page_name") + marker.len();
    let end = h.all[start..].find('"').unwrap() + start;
    h.all[start..end].to_string()
}

fn open_suite(dir: &Path, rsid: &str) {
    admin(
        dir,
        &["report-suite", "create", rsid, "--company", "default"],
    );
    let v = admin(
        dir,
        &[
            "report-suite",
            "settings",
            rsid,
            "--accept-single-hits",
            "true",
        ],
    );
    assert_eq!(v["accept_single_hits"], true, "{v}");
    assert_eq!(v["company_id"], "default", "{v}");
}

#[test]
fn adobe_analytics_di_node_client_hits_reach_the_lake_and_reports() {
    let modules = std::env::var("BDIA_TEST_DI_CLIENT").unwrap_or_else(|_| {
        panic!("BDIA_TEST_DI_CLIENT is not set: run ./test.sh, which installs adobe-analytics-di with npm")
    });
    let dir = tempfile::tempdir().unwrap();
    let server = BdiaServe::start(dir.path(), &[("BDIA_SINGLE_HITS_FLUSH_MS", "200")]);
    open_suite(dir.path(), "nodeweb");
    // Without the suite's setting the same client is refused: `NO account`.
    admin(
        dir.path(),
        &["report-suite", "create", "closed", "--company", "default"],
    );
    let script = dir.path().join("send.js");
    std::fs::write(
        &script,
        r#"
const di = require('adobe-analytics-di');
const [port, rsid, count] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4])];
di.setTrackingServerUrl('127.0.0.1');
di.setPort(port);
(async () => {
  for (let i = 0; i < count; i++) {
    const call = di.getDataInsertion({
      reportSuiteID: rsid,
      visitorID: 'node-' + (i % 4),
      pageName: 'Node page ' + i,
      channel: 'node',
      eVar10: 'e' + i,
      prop10: 'p' + i,
      events: 'event10',
    });
    const body = await di.sendCallToAdobeAnalytics(call, { info() {}, error() {} });
    console.log(JSON.stringify(body));
  }
})().catch((e) => { console.error(String(e)); process.exit(1); });
"#,
    )
    .unwrap();
    let run = |rsid: &str, count: usize| {
        let out = Command::new("node")
            .arg(&script)
            .arg(server.port().to_string())
            .arg(rsid)
            .arg(count.to_string())
            .env("NODE_PATH", &modules)
            .output()
            .expect("node (./test.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out = admin_output(
        dir.path(),
        &[
            "report-suite",
            "settings",
            "nosuch",
            "--accept-single-hits",
            "true",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no company has a report suite 'nosuch'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = run("closed", 1);
    assert!(refused.contains("<reason>NO account</reason>"), "{refused}");
    let n = 24;
    let answers = run("nodeweb", n);
    assert_eq!(
        answers
            .lines()
            .filter(|l| l.contains("<status>SUCCESS</status>"))
            .count(),
        n,
        "{answers}"
    );
    let hits = wait_lake(dir.path(), n);
    assert_eq!(hits.len(), n, "every hit once");
    let mut pages: Vec<String> = hits.iter().map(page_of).collect();
    pages.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("Node page {i}")).collect();
    want.sort();
    assert_eq!(pages, want);
    for h in &hits {
        assert!(h.visitor_id.starts_with("node-"), "{}", h.visitor_id);
        assert_eq!(h.report_suite, "nodeweb");
    }
    // The same hits in a report, over the API.
    let token = server.access_token();
    let client = server.credentials()["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let day = hits[0].date.clone();
    let out = Command::new("curl")
        .args(["-s", "-H", &format!("Authorization: Bearer {token}")])
        .args(["-H", &format!("x-api-key: {client}")])
        .arg(format!(
            "{}/api/v1/report-suites/nodeweb/report?metrics=pageviews,visitors&dimension=day&from={day}&to={day}",
            server.url()
        ))
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["totals"]["pageviews"], n as u64, "{report}");
    assert_eq!(report["totals"]["visitors"], 4, "{report}");
}

#[test]
fn accepted_single_hits_survive_a_kill_and_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    // A long flush: the hits are only in the journal when the server dies.
    let mut server = BdiaServe::start(dir.path(), &[("BDIA_SINGLE_HITS_FLUSH_MS", "600000")]);
    open_suite(dir.path(), "crashweb");
    let n = 60;
    for i in 0..n {
        let answer = get(
            server.port(),
            &format!("/b/ss/crashweb/2/s{i}?vid=c{}&pageName=Crash%20{i}", i % 5),
        );
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("status: success"),
            "{answer}"
        );
    }
    let journal = dir.path().join("single-hits");
    let open: Vec<_> = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].extension().unwrap(), "open");
    let saved = std::fs::read(&open[0]).unwrap();
    server.kill();
    assert!(bdia_server::testing::lake_hits(dir.path())
        .unwrap_or_default()
        .is_empty());
    // The next start seals the segment and makes a file of it.
    server.restart();
    server.wait_healthy();
    let hits = wait_lake(dir.path(), n);
    assert_eq!(hits.len(), n);
    let mut pages: Vec<String> = hits.iter().map(page_of).collect();
    pages.sort();
    pages.dedup();
    assert_eq!(pages.len(), n, "each hit once");
    assert!(
        std::fs::read_dir(&journal).unwrap().next().is_none(),
        "segment removed"
    );
    // A crash between the file's commit and the segment's removal: the
    // same segment again finds its file by its key and adds nothing.
    server.kill();
    let sealed = open[0].with_extension("jsonl");
    std::fs::write(&sealed, &saved).unwrap();
    server.restart();
    server.wait_healthy();
    let start = Instant::now();
    while sealed.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!sealed.exists(), "the segment was rolled again");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        bdia_server::testing::lake_hits(dir.path()).unwrap().len(),
        n
    );
    let files = admin(dir.path(), &["report-suite", "list"]);
    assert!(files.to_string().contains("crashweb"));
}
