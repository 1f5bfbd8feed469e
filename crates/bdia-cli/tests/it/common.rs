//! Helpers shared by the tests that run `bdia serve` and the client tools.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// True when `GET /healthz` on the port answers 200.
pub fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

/// Three generated exports of `rows` rows each (seeds 0, 1, 2: unsorted
/// together), prepared into `dir/prepared`; returns the directory and the
/// `--json` summary of `bdia prepare`.
pub fn prepared_exports(
    dir: &Path,
    rows: u32,
    visitors: u32,
    invalid_rate: f64,
    groups: &str,
    max_rows: &str,
) -> (PathBuf, serde_json::Value) {
    let mut inputs = Vec::new();
    for seed in 0..3 {
        let p = dir.join(format!("export-{seed}.csv"));
        let out = Command::new(env!("CARGO_BIN_EXE_bdia"))
            .args(["generate", "--plain", "--rows", &rows.to_string()])
            .args([
                "--visitors",
                &visitors.to_string(),
                "--seed",
                &seed.to_string(),
            ])
            .args(["--invalid-rate", &invalid_rate.to_string(), "-o"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(out.status.success());
        inputs.push(p);
    }
    let out_dir = dir.join("prepared");
    let out = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .arg("prepare")
        .args(&inputs)
        .args([
            "--groups",
            groups,
            "--max-rows",
            max_rows,
            "--json",
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out_dir, serde_json::from_slice(&out.stdout).unwrap())
}
