use std::io::{Read, Write};
use std::time::Duration;

use bdia_server::testing::TestServer;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_records_and_staged_files_consistent() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (st, v) = api.upload(small_file(5 + i, "acme.prod"), "g").await;
        assert_eq!(st, 200);
        ids.push(v["file_id"].as_str().unwrap().to_string());
    }
    api.upload(b"junk".to_vec(), "g").await;
    let creds = s.credentials.clone();
    let data_dir = s.data_dir().to_path_buf();
    let dir = s.stop().await.unwrap();

    let s = TestServer::start_in(dir, &data_dir, |_| {}).await.unwrap();
    assert_eq!(
        s.credentials, creds,
        "first-start credentials are not remade"
    );
    let api = Api::default_client(&s).await;
    for id in &ids {
        let (st, v) = api.get_json(&format!("/aa/collect/v1/events/{id}")).await;
        assert_eq!(st, 200);
        assert_eq!(v["status_code"], "UPLOADED");
    }
    let (_, list) = api.get_json("/aa/collect/v1/events").await;
    assert_eq!(list["files"].as_array().unwrap().len(), 4);
    let mut expect: Vec<String> = ids.iter().map(|id| format!("files/{id}.csv.gz")).collect();
    expect.sort();
    assert_eq!(
        blob_files(&s),
        expect,
        "one staged file per UPLOADED record, nothing else"
    );
    let (_, v) = api.upload(small_file(1, "acme.prod"), "g").await;
    let rec = s
        .state
        .store
        .get_file(&creds.company, v["file_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.group_seq, Some(4), "the group order continues");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let s = start().await;
    let err = TestServer::start_in(None, s.data_dir(), |_| {})
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("another bdia server"), "{err}");
    let (st, _) = Api::default_client(&s)
        .await
        .upload(small_file(1, "acme.prod"), "g")
        .await;
    assert_eq!(st, 200, "the first one is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_writes_private_credentials() {
    let s = start().await;
    let path = s.data_dir().join("credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v["company"], "default");
    let client = s
        .state
        .store
        .get_client(v["client_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !client
            .secret_hash
            .contains(v["client_secret"].as_str().unwrap()),
        "the secret is stored hashed"
    );
}

fn upload_head(api: &Api, len: usize) -> String {
    format!(
        "POST /aa/collect/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         x-api-key: {}\r\nx-adobe-vgid: g\r\n\
         Content-Type: multipart/form-data; boundary=BOUNDARY\r\nContent-Length: {len}\r\n\r\n",
        api.token, api.api_key
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disconnecting_mid_upload_leaves_nothing() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let (file, _) = generated(20_000, 0.0, &["acme.prod"]);
    let body = bare_multipart("BOUNDARY", &file);
    let mut sock = std::net::TcpStream::connect(s.addr).unwrap();
    sock.write_all(upload_head(&api, body.len()).as_bytes())
        .unwrap();
    sock.write_all(&body[..body.len() / 2]).unwrap();
    let staging = s.data_dir().join("blobs/staging");
    assert!(
        wait_until(|| std::fs::read_dir(&staging).unwrap().count() > 0).await,
        "the upload started"
    );
    drop(sock);
    assert!(
        wait_until(|| blob_files(&s).is_empty()).await,
        "{:?}",
        blob_files(&s)
    );
    let (_, list) = api.get_json("/aa/collect/v1/events").await;
    assert!(list["files"].as_array().unwrap().is_empty(), "no record");
    assert!(s.state.tasks.is_empty() || wait_until(|| s.state.tasks.is_empty()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_upload_complete() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let (file, _) = generated(20_000, 0.0, &["acme.prod"]);
    let body = bare_multipart("BOUNDARY", &file);
    let mut sock = std::net::TcpStream::connect(s.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    sock.write_all(upload_head(&api, body.len()).as_bytes())
        .unwrap();
    sock.write_all(&body[..body.len() / 2]).unwrap();
    let staging = s.data_dir().join("blobs/staging");
    assert!(wait_until(|| std::fs::read_dir(&staging).unwrap().count() > 0).await);

    let data_dir = s.data_dir().to_path_buf();
    let stopping = tokio::spawn(s.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rest = body[body.len() / 2..].to_vec();
    let resp = tokio::task::spawn_blocking(move || {
        sock.write_all(&rest).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !response_complete(&got) {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let v: serde_json::Value = serde_json::from_str(raw_body(&resp)).unwrap();
    let dir = stopping.await.unwrap().unwrap();

    let s = TestServer::start_in(dir, &data_dir, |_| {}).await.unwrap();
    let api = Api::default_client(&s).await;
    let (st, rec) = api
        .get_json(&format!(
            "/aa/collect/v1/events/{}",
            v["file_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(st, 200);
    assert_eq!(rec["rows"], 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_dropped_and_leaves_nothing() {
    let s = start_with(|c| c.upload_idle_timeout_secs = 1).await;
    let api = Api::default_client(&s).await;
    let (file, _) = generated(5_000, 0.0, &["acme.prod"]);
    let body = bare_multipart("BOUNDARY", &file);
    let head = upload_head(&api, body.len());
    let half = body[..body.len() / 2].to_vec();
    let addr = s.addr;
    // Send half, then nothing, keeping the connection open.
    let resp = tokio::task::spawn_blocking(move || {
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        sock.write_all(head.as_bytes()).unwrap();
        sock.write_all(&half).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !response_complete(&got) {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(raw_body(&resp).contains("stalled"), "{resp}");
    assert!(
        wait_until(|| blob_files(&s).is_empty()).await,
        "{:?}",
        blob_files(&s)
    );
    let (_, list) = api.get_json("/aa/collect/v1/events").await;
    assert!(list["files"].as_array().unwrap().is_empty());
}
