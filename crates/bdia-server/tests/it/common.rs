#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use bdia_format::generate::{generate, GenOptions, GenSummary};
use bdia_server::testing::TestServer;
use bdia_server::Config;
use flate2::write::GzEncoder;
use flate2::Compression;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

pub const HEADER: &str = "timestamp,visitorID,reportSuiteID,userAgent,pageName";

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A small valid file of `rows` rows to report suite `rsid`.
pub fn small_file(rows: usize, rsid: &str) -> Vec<u8> {
    let mut s = String::from(HEADER);
    s.push('\n');
    for i in 0..rows {
        s.push_str(&format!(
            "{},v{},{rsid},Mozilla/5.0,Home\n",
            1_700_000_000 + i,
            i % 7
        ));
    }
    gz(s.as_bytes())
}

/// A generated gzip file.
pub fn generated(rows: u64, invalid_rate: f64, suites: &[&str]) -> (Vec<u8>, GenSummary) {
    let opts = GenOptions {
        rows,
        invalid_rate,
        report_suites: suites.iter().map(|s| s.to_string()).collect(),
        ..GenOptions::default()
    };
    let mut plain = Vec::new();
    let summary = generate(&opts, &mut plain).unwrap();
    (gz(&plain), summary)
}

pub async fn start() -> TestServer {
    TestServer::start(|_| {}).await.unwrap()
}

pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start(f).await.unwrap()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// The text of `GET /metrics`, with the test configuration's metrics token.
pub async fn metrics_text(base: &str) -> String {
    let r = http()
        .get(format!("{base}/metrics"))
        .bearer_auth(bdia_server::testing::TEST_METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// A caller: token + api key.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub api_key: String,
    pub http: reqwest::Client,
}

pub async fn token(base: &str, client_id: &str, secret: &str) -> String {
    let r = http()
        .post(format!("{base}/ims/token/v3"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            (
                "scope",
                "openid,AdobeID,read_organizations,additional_info.projectedProductContext",
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "bearer");
    assert!(v["expires_in"].as_u64().unwrap() > 0);
    v["access_token"].as_str().unwrap().to_string()
}

impl Api {
    pub async fn default_client(s: &TestServer) -> Api {
        let c = &s.credentials;
        Api::with(s, &c.client_id, &c.client_secret).await
    }

    pub async fn with(s: &TestServer, client_id: &str, secret: &str) -> Api {
        Api {
            base: s.base_url(),
            token: token(&s.base_url(), client_id, secret).await,
            api_key: client_id.to_string(),
            http: http(),
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("x-api-key", &self.api_key)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("x-api-key", &self.api_key)
    }

    pub async fn upload_with(
        &self,
        bytes: Vec<u8>,
        vgid: &str,
        key: Option<&str>,
        filename: Option<&str>,
    ) -> (u16, Value) {
        let mut part = Part::bytes(bytes);
        if let Some(f) = filename {
            part = part.file_name(f.to_string());
        }
        let mut req = self
            .post("/aa/collect/v1/events")
            .header("x-adobe-vgid", vgid)
            .multipart(Form::new().part("file", part));
        if let Some(k) = key {
            req = req.header("x-adobe-idempotency-key", k);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub async fn upload(&self, bytes: Vec<u8>, vgid: &str) -> (u16, Value) {
        self.upload_with(bytes, vgid, None, Some("ingest_file.gz"))
            .await
    }

    pub async fn validate(&self, bytes: Vec<u8>) -> (u16, Value) {
        let r = self
            .post("/aa/collect/v1/events/validate")
            .multipart(Form::new().part("file", Part::bytes(bytes)))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }
}

/// Sends raw bytes and reads until the server closes or `timeout`.
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if response_complete(&out) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True once a full response (headers + content-length body) is in `out`.
pub fn response_complete(out: &[u8]) -> bool {
    let text = String::from_utf8_lossy(out);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let head = &text[..end];
    if head.starts_with("HTTP/1.1 100") {
        return false;
    }
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    out.len() >= end + 4 + len
}

/// Body of a raw HTTP response.
pub fn raw_body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// A multipart body with one `file` part, no filename, no part Content-Type.
pub fn bare_multipart(boundary: &str, file: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// Files under the blob root (staging, files, rejects), relative.
pub fn blob_files(s: &TestServer) -> Vec<String> {
    let root = s.data_dir().join("blobs");
    let mut out = Vec::new();
    for sub in ["staging", "files", "rejects"] {
        if let Ok(rd) = std::fs::read_dir(root.join(sub)) {
            for e in rd.flatten() {
                out.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

pub async fn wait_until<F: Fn() -> bool>(f: F) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

/// Sets a company's processing throttle (rows per second; `None`: off).
pub async fn set_throttle(s: &TestServer, company: &str, rows_per_second: Option<u64>) {
    let mut settings = s
        .state
        .store
        .get_company(company)
        .await
        .unwrap()
        .unwrap()
        .settings;
    settings.rows_per_second = rows_per_second;
    s.state
        .store
        .update_company_settings(company, settings)
        .await
        .unwrap();
}
