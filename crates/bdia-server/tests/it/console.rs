//! The web console in a real headless Chromium, driven over the WebDriver
//! protocol (chromedriver started by the test): first-run page, sign-in,
//! files and their statuses, a file's log, the report page's chart and
//! tables checked against an independent computation. Screenshots go to
//! `target/console-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages
//! (`apt-get install -y chromium chromium-driver`); without them the test
//! fails and says so.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bdia_server::tenancy;
use serde_json::{json, Value};

use crate::common::*;
use crate::reports::{expected, upload_rows, wait_complete};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    for name in names {
        let p = Path::new(name);
        if p.is_absolute() && p.exists() {
            return Some(p.to_path_buf());
        }
        if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                let c = dir.join(name);
                if c.is_file() {
                    return Some(c);
                }
            }
        }
    }
    None
}

/// Chromedriver, stopped when dropped.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
struct Browser {
    driver: Driver,
    session: String,
}

impl Browser {
    async fn start() -> Browser {
        let chromium = find_binary(&["chromium", "chromium-browser", "/usr/bin/chromium"]);
        let chromedriver = find_binary(&["chromedriver", "/usr/bin/chromedriver"]);
        let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
            panic!(
                "the console browser test needs Chromium and chromedriver: install them with \
                 `sudo apt-get update && sudo apt-get install -y chromium chromium-driver` \
                 (Debian/Ubuntu), then run the tests again"
            );
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        };
        let mut ready = false;
        for _ in 0..200 {
            if let Ok(r) = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
            {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        ready = true;
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not become ready");
        let profile = tempfile::tempdir().unwrap().keep();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1400",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        } } });
        let r = driver
            .http
            .post(format!("{}/session", driver.base))
            .json(&caps)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {v}"))
            .to_string();
        Browser { driver, session }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.driver.base, self.session);
        let mut req = self.driver.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if v["value"]["error"].is_string() {
            panic!("webdriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("element {css}: {v}"))
            .to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn js(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Waits until `condition` (a JS expression) is true.
    async fn wait_for(&self, condition: &str, what: &str) {
        for _ in 0..300 {
            if self.js(&format!("return !!({condition});")).await == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let body = self.js("return document.body.innerText;").await;
        panic!("timed out waiting for {what}; page text:\n{body}");
    }

    async fn screenshot(&self, name: &str) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64_decode(v.as_str().unwrap());
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn quit(self) {
        let url = format!("{}/session/{}", self.driver.base, self.session);
        let _ = self.driver.http.delete(&url).send().await;
    }
}

fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots")
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&b| b != b'=').collect();
        let mut n = 0u32;
        for (i, &b) in data.iter().enumerate() {
            n |= val(b) << (18 - 6 * i);
        }
        let take = data.len().saturating_sub(1);
        for i in 0..take {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium() {
    let browser = Browser::start().await;
    let s = start_with(|c| {
        c.processing.enabled = true;
        c.processing.poll_interval_ms = 50;
    })
    .await;
    tenancy::create_report_suite(
        &*s.state.store,
        &s.credentials.company,
        expected::WEB,
        expected::WEB_TZ,
    )
    .await
    .unwrap();
    let base = s.base_url();
    let creds = s.credentials.clone();

    // First run: sign in with nothing uploaded -> how to upload, with the
    // credentials filled in.
    browser.goto(&format!("{base}/")).await;
    browser
        .wait_for(
            "!document.getElementById('page-signin').hidden",
            "the sign-in page",
        )
        .await;
    browser.screenshot("01-sign-in").await;
    browser.type_into("#client-id", &creds.client_id).await;
    browser
        .type_into("#client-secret", &creds.client_secret)
        .await;
    browser.click("#signin-button").await;
    browser
        .wait_for(
            "!document.getElementById('page-start').hidden && document.getElementById('curl-example').textContent.length > 0",
            "the first-run page",
        )
        .await;
    let curl = browser
        .js("return document.getElementById('curl-example').textContent;")
        .await;
    let upload = browser
        .js("return document.getElementById('upload-example').textContent;")
        .await;
    let (curl, upload) = (curl.as_str().unwrap(), upload.as_str().unwrap());
    assert!(
        curl.contains(&creds.client_id) && curl.contains(&creds.client_secret),
        "{curl}"
    );
    assert!(
        curl.contains(&format!("{base}/aa/collect/v1/events")),
        "{curl}"
    );
    assert!(
        upload.contains("bdia upload") && upload.contains(&creds.client_secret),
        "{upload}"
    );
    let token_kept = browser
        .js("return sessionStorage.getItem('bdia.token') !== null && localStorage.length === 0;")
        .await;
    assert_eq!(token_kept, true, "token in sessionStorage only");
    browser.screenshot("02-first-run").await;

    // Upload files over HTTP and let the server process them.
    let api = Api::default_client(&s).await;
    // A webhook endpoint nobody listens on: its log fills with failures.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", dead.local_addr().unwrap());
    drop(dead);
    let r = api
        .post("/api/v1/webhooks")
        .json(&json!({ "url": dead_url, "events": ["file.complete"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let rows = expected::generate(5, 40, 1_772_798_400);
    let processed = upload_rows(&api, &rows).await;
    let mut ids: Vec<String> = processed.iter().map(|(id, _)| id.clone()).collect();
    ids.dedup();
    wait_complete(&s, &ids).await;

    // Files and statuses.
    browser.click("#nav-files").await;
    browser
        .wait_for(
            &format!(
                "document.querySelectorAll('#files-table tbody tr').length === {}",
                ids.len()
            ),
            "the files table",
        )
        .await;
    let shown = browser
        .js("return [...document.querySelectorAll('#files-table tbody tr')].map(r => [r.dataset.fileId, r.querySelector('.status').textContent]);")
        .await;
    let mut shown_ids: Vec<String> = Vec::new();
    for pair in shown.as_array().unwrap() {
        assert_eq!(pair[1], "COMPLETE", "{shown}");
        shown_ids.push(pair[0].as_str().unwrap().to_string());
    }
    shown_ids.sort();
    let mut want_ids = ids.clone();
    want_ids.sort();
    assert_eq!(shown_ids, want_ids);
    browser.screenshot("03-files").await;

    // Filter by group.
    browser.type_into("#files-group", "g-odd").await;
    browser.click("#files-apply").await;
    browser
        .wait_for(
            "[...document.querySelectorAll('#files-table tbody tr')].length === 2",
            "the filtered files",
        )
        .await;

    // A file's log.
    browser
        .click("#files-table tbody tr:first-child .show-log")
        .await;
    browser
        .wait_for(
            "!document.getElementById('file-detail').hidden && document.getElementById('file-log').textContent.includes('Processing complete')",
            "the file's log",
        )
        .await;
    browser.screenshot("04-file-log").await;

    // Visitor groups.
    browser.click("#nav-groups").await;
    browser
        .wait_for(
            "document.querySelectorAll('#groups-table tbody tr').length === 2",
            "the groups table",
        )
        .await;
    browser.screenshot("05-groups").await;
    // One group: pause and resume with the buttons, the actions listed.
    browser.click("#groups-table tbody tr .show-group").await;
    browser
        .wait_for(
            "!document.getElementById('group-detail').hidden && document.getElementById('group-state').textContent === 'active'",
            "the group view",
        )
        .await;
    browser.click("#group-pause").await;
    browser
        .wait_for(
            "document.getElementById('group-state').textContent === 'paused' && document.querySelectorAll('#group-actions tbody tr').length === 1",
            "the paused group",
        )
        .await;
    browser.screenshot("05b-group-paused").await;
    browser.click("#group-resume").await;
    browser
        .wait_for(
            "document.getElementById('group-state').textContent === 'active' && document.querySelectorAll('#group-actions tbody tr').length === 2",
            "the resumed group",
        )
        .await;

    // Webhooks: the endpoint and its delivery log, failures included.
    browser.click("#nav-webhooks").await;
    browser
        .wait_for(
            "document.querySelectorAll('#webhooks-table tbody tr').length === 1",
            "the webhooks table",
        )
        .await;
    browser
        .click("#webhooks-table tbody tr:first-child .show-deliveries")
        .await;
    browser
        .wait_for(
            &format!(
                "!document.getElementById('webhook-detail').hidden && \
                 document.querySelectorAll('#deliveries-table tbody tr').length === {}",
                ids.len()
            ),
            "the delivery log",
        )
        .await;
    let states = browser
        .js("return [...document.querySelectorAll('#deliveries-table tbody tr')].map(r => r.querySelector('.state').textContent);")
        .await;
    for state in states.as_array().unwrap() {
        assert_eq!(state, "pending", "{states}");
    }
    browser.screenshot("05b-webhooks").await;

    // Reports: the chart and the tables against the independent numbers.
    let (from, to) = ("2026-03-06", "2026-03-10");
    browser.click("#nav-reports").await;
    browser
        .wait_for(
            "document.getElementById('report-suite').options.length > 0",
            "the report suites",
        )
        .await;
    browser
        .js(&format!(
            "document.getElementById('report-suite').value = '{}'; \
             document.getElementById('report-from').value = '{from}'; \
             document.getElementById('report-to').value = '{to}'; return true;",
            expected::WEB
        ))
        .await;
    browser.click("#report-run").await;
    browser
        .wait_for(
            "!document.getElementById('report-output').hidden && document.querySelectorAll('#daily-table tbody tr').length > 0",
            "the report",
        )
        .await;
    browser.screenshot("06-report").await;

    let mut ordered = processed.clone();
    ordered.sort_by_key(|(_, r)| r.ts);
    let all = expected::sessionize(&ordered, expected::WEB, expected::WEB_TZ);
    let (days, _) = expected::report(&all, "day", from, to);
    let table = browser
        .js("return [...document.querySelectorAll('#daily-table tbody tr')].map(r => [...r.cells].map(c => c.textContent));")
        .await;
    let table = table.as_array().unwrap();
    assert_eq!(table.len(), days.len(), "{table:?}");
    for (row, (day, m)) in table.iter().zip(&days) {
        let want: Vec<String> = vec![
            day.clone().unwrap(),
            (m["pageviews"] as u64).to_string(),
            (m["visits"] as u64).to_string(),
            (m["visitors"] as u64).to_string(),
        ];
        let got: Vec<String> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "daily table");
    }
    // The chart: one point per day and series, at the expected values.
    for series in ["pageviews", "visits", "visitors"] {
        let points = browser
            .js(&format!(
                "return [...document.querySelectorAll('#report-chart circle[data-series=\"{series}\"]')].map(c => [c.dataset.day, Number(c.dataset.value)]);"
            ))
            .await;
        let points = points.as_array().unwrap();
        assert_eq!(points.len(), days.len(), "{series} points");
        for (p, (day, m)) in points.iter().zip(&days) {
            assert_eq!(p[0].as_str(), day.as_deref(), "{series}");
            assert_eq!(p[1].as_f64().unwrap(), m[series], "{series} on {day:?}");
        }
        let line = browser
            .js(&format!(
                "return document.querySelectorAll('#report-chart polyline[data-series=\"{series}\"]').length;"
            ))
            .await;
        assert_eq!(line, 1, "{series} line");
    }
    // Top pages.
    let (pages, _) = expected::report(&all, "page", from, to);
    let mut top: Vec<(String, f64)> = pages
        .iter()
        .filter_map(|(k, m)| k.clone().map(|k| (k, m["pageviews"])))
        .collect();
    top.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
    let shown = browser
        .js("return [...document.querySelectorAll('#pages-table tbody tr')].map(r => [r.cells[0].textContent, Number(r.cells[1].textContent)]);")
        .await;
    let shown = shown.as_array().unwrap();
    assert_eq!(shown.len(), top.len().min(20), "{shown:?}");
    for (row, (page, pv)) in shown.iter().zip(&top) {
        assert_eq!(row[0].as_str().unwrap(), page);
        assert_eq!(row[1].as_f64().unwrap(), *pv, "{page}");
    }

    // Suite settings: set eVar4 to a month, original value; a bad
    // expiration is refused with the server's message; then reset.
    browser.click("#nav-settings").await;
    browser
        .wait_for(
            "document.getElementById('settings-suite').options.length > 0 && !document.getElementById('settings-empty').hidden",
            "the settings page",
        )
        .await;
    // The suite the reports above are about (the company has others).
    browser
        .js(&format!(
            "const s = document.getElementById('settings-suite'); s.value = '{}'; s.dispatchEvent(new Event('change')); return s.value;",
            expected::WEB
        ))
        .await;
    browser.type_into("#settings-evar", "4").await;
    browser.type_into("#settings-expiration", "month").await;
    browser
        .js("document.getElementById('settings-allocation').value = 'original'; return true;")
        .await;
    browser.click("#settings-save").await;
    browser
        .wait_for(
            "document.querySelectorAll('#settings-table tbody tr').length === 1",
            "the eVar4 row",
        )
        .await;
    let row = browser
        .js("return [...document.querySelectorAll('#settings-table tbody tr td')].slice(0, 3).map(td => td.textContent);")
        .await;
    assert_eq!(row, json!(["eVar4", "31d", "original value"]));
    browser.screenshot("07-suite-settings").await;
    let api = Api::default_client(&s).await;
    let (st, suite) = api
        .get_json(&format!("/api/v1/report-suites/{}", expected::WEB))
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        suite["evar_settings"],
        json!([{"evar": 4, "expiration": "31d", "allocation": "original"}])
    );
    browser
        .js("document.getElementById('settings-expiration').value = ''; return true;")
        .await;
    browser.type_into("#settings-expiration", "soon").await;
    browser.click("#settings-save").await;
    browser
        .wait_for(
            "document.getElementById('settings-error').textContent.includes(\"'soon' is not an expiration\")",
            "the refusal",
        )
        .await;
    browser.click("#settings-table button[data-evar='4']").await;
    browser
        .wait_for(
            "!document.getElementById('settings-empty').hidden",
            "the reset",
        )
        .await;

    // Sign out: back to the sign-in page, token gone.
    browser.click("#signout").await;
    browser
        .wait_for(
            "!document.getElementById('page-signin').hidden && sessionStorage.getItem('bdia.token') === null",
            "signed out",
        )
        .await;
    browser.quit().await;
}
