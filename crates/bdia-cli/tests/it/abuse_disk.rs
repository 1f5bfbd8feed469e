//! A full disk, for real: the data dir on a small tmpfs filled up while
//! the server runs. Uploads are refused with a JSON 507 and nothing is
//! kept half; processing stops without failing files; when space returns
//! the server goes on by itself, and every record's file is there.
//!
//! Mounting a tmpfs needs root (CI runs as root); elsewhere the test says
//! so and fails, rather than passing without checking anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::abuse_core::{get, multipart_post, multipart_post_raw, parse, tenant, Tenant};
use crate::common::BdiaServe;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .expect("mount(8)");
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs for the data dir and needs root \
             (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `at` with one file, leaving about `left` bytes.
fn fill(at: &Path, left: u64) -> PathBuf {
    use std::io::Write;
    let ballast = at.join("ballast");
    let mut f = std::fs::File::create(&ballast).unwrap();
    let chunk = vec![0xa5u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    let _ = f.sync_all();
    f.set_len(written.saturating_sub(left)).unwrap();
    f.sync_all().unwrap();
    ballast
}

fn files(port: u16, t: &Tenant) -> Vec<serde_json::Value> {
    let (status, body) = get(port, "/aa/collect/v1/events?limit=1000", t).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["files"].as_array().unwrap().clone()
}

/// Every record that still needs its staged file has it; nothing is left
/// half-written in staging.
fn records_match_disk(port: u16, t: &Tenant, data: &Path) {
    for f in files(port, t) {
        let status = f["status_code"].as_str().unwrap();
        if status == "UPLOADED" || status == "PROCESSING" {
            let blob = data.join(format!(
                "blobs/files/{}.csv.gz",
                f["file_id"].as_str().unwrap()
            ));
            assert!(blob.is_file(), "{status} record without its file: {f}");
        }
        assert_ne!(status, "ERROR", "a full disk failed a file: {f}");
    }
    let staging: Vec<_> = std::fs::read_dir(data.join("blobs/staging"))
        .unwrap()
        .collect();
    assert!(
        staging.is_empty(),
        "half-written staging files: {staging:?}"
    );
}

#[test]
fn a_full_disk_refuses_uploads_keeps_nothing_half_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = Tmpfs::mount(&dir.path().join("mnt"), "64m");
    let data = mnt.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let acme = tenant(&data, "acme", &["--rate-limit", "off"]);
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let server = BdiaServe::start_logged(&data, &[("BDIA_PROCESSING_POLL_MS", "200")], &logs);
    let port = server.port();
    let file = std::fs::read(crate::abuse_core::generated(
        dir.path(),
        "f.csv.gz",
        20_000,
        "acme.prod",
        1,
    ))
    .unwrap();
    let ballast = fill(&mnt.0, 2 << 20);

    // Full: after at most a couple of files, uploads get a JSON 507.
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..8 {
        let raw = multipart_post_raw(
            port,
            "/aa/collect/v1/events",
            &acme,
            &format!("g{i}"),
            &file,
        );
        let (status, body) = parse(&raw).expect("an answer");
        match status {
            200 => accepted += 1,
            507 => {
                refused += 1;
                let err: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert!(
                    err["error"]
                        .as_str()
                        .unwrap()
                        .contains("nothing was stored"),
                    "{err}"
                );
                let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
                assert!(head.contains("retry-after: 30"), "{head}");
            }
            other => panic!("upload {i} answered {other}: {body}"),
        }
    }
    assert!(refused >= 4, "accepted {accepted}, refused {refused}");
    records_match_disk(port, &acme, &data);
    assert!(crate::common::healthy(port));

    // Space returns: uploads and processing go on without a restart.
    std::fs::remove_file(&ballast).unwrap();
    for i in 0..3 {
        let (status, body) = multipart_post(
            port,
            "/aa/collect/v1/events",
            &acme,
            &format!("h{i}"),
            &file,
        );
        assert_eq!(status, 200, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let all = files(port, &acme);
        let done = all
            .iter()
            .filter(|f| f["status_code"] == "COMPLETE")
            .count();
        assert!(
            all.iter().all(|f| f["status_code"] != "ERROR"),
            "a file failed: {all:?}"
        );
        if done == accepted + 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} files COMPLETE after space returned: {all:?}\n{}",
            accepted + 3,
            std::fs::read_to_string(logs.join("stderr.txt")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    records_match_disk(port, &acme, &data);
    drop(server);
}
