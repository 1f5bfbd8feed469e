//! Helpers shared by the tests that run `bdia serve` and the client tools.
//!
//! [`BdiaServe`] is the one way these tests run a server: a `bdia serve`
//! child on a free port of 127.0.0.1, waited for through `GET /healthz`,
//! killed and reaped when dropped (also when a check panics).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `bdia admin --data-dir DIR ARGS...`.
pub fn admin_output(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bdia"))
        .arg("admin")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// The JSON a successful command printed.
pub fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `bdia admin --data-dir DIR ARGS...`, which must succeed: its JSON.
pub fn admin(dir: &Path, args: &[&str]) -> serde_json::Value {
    json(&admin_output(dir, args))
}

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

/// A `bdia serve` process over a data dir, with the upload rate limit off
/// and its output discarded. Killed and reaped when dropped.
pub struct BdiaServe {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
    env: Vec<(String, String)>,
    /// A directory for the server's `stdout.txt` and `stderr.txt`
    /// (appended); `None`: output discarded.
    logs: Option<PathBuf>,
}

impl BdiaServe {
    /// Starts `bdia serve` on a free port over `data_dir`, with `env` set
    /// (`BDIA_*` overrides); does not wait for it to answer.
    pub fn spawn(data_dir: &Path, env: &[(&str, &str)]) -> BdiaServe {
        BdiaServe::spawn_to(data_dir, env, None)
    }

    /// [`BdiaServe::spawn`] with the output kept in `logs` when given.
    fn spawn_to(data_dir: &Path, env: &[(&str, &str)], logs: Option<&Path>) -> BdiaServe {
        let mut server = BdiaServe {
            child: None,
            port: free_port(),
            data_dir: data_dir.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            logs: logs.map(Path::to_path_buf),
        };
        server.restart();
        server
    }

    /// [`BdiaServe::spawn`] with the output appended to `logs/stdout.txt`
    /// and `logs/stderr.txt`; does not wait.
    pub fn spawn_logged(data_dir: &Path, env: &[(&str, &str)], logs: &Path) -> BdiaServe {
        BdiaServe::spawn_to(data_dir, env, Some(logs))
    }

    /// [`BdiaServe::start`] with the server's standard output and error
    /// appended to `logs/stdout.txt` and `logs/stderr.txt`, for tests of
    /// what it prints and logs.
    pub fn start_logged(data_dir: &Path, env: &[(&str, &str)], logs: &Path) -> BdiaServe {
        let mut server = BdiaServe::spawn_to(data_dir, env, Some(logs));
        server.wait_healthy();
        server
    }

    /// [`BdiaServe::spawn`], then waits until it answers `GET /healthz`.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> BdiaServe {
        let mut server = BdiaServe::spawn(data_dir, env);
        server.wait_healthy();
        server
    }

    /// Starts the process again on the same port, data dir and
    /// environment (after [`BdiaServe::kill`]); does not wait.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bdia"));
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", self.port),
            "--data-dir",
        ])
        .arg(&self.data_dir)
        .env("BDIA_RATE_LIMIT_ENABLED", "false")
        .stdout(self.log_file("stdout.txt"))
        .stderr(self.log_file("stderr.txt"));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    /// Where one of the output streams goes.
    fn log_file(&self, name: &str) -> Stdio {
        match &self.logs {
            None => Stdio::null(),
            Some(dir) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(name))
                    .unwrap(),
            ),
        }
    }

    /// Waits until `GET /healthz` answers 200; panics when the process
    /// exits first or after a minute.
    pub fn wait_healthy(&mut self) {
        let child = self.child.as_mut().expect("running");
        let start = Instant::now();
        while !healthy(self.port) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("bdia serve exited: {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit
    /// status, or `None` (killed then) when it was still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        None
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The server's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// `bdia upload DIR --json --parallel 4` with the first-start client;
    /// panics when it fails.
    pub fn upload_dir(&self, dir: &Path) {
        upload(
            &self.url(),
            &self.credentials(),
            &[
                dir.as_os_str(),
                "--json".as_ref(),
                "--parallel".as_ref(),
                "4".as_ref(),
            ],
        );
    }

    /// `bdia ARGS...` against this server as its first-start client.
    pub fn remote(&self, args: &[&str]) -> std::process::Output {
        client_command(&self.url(), &self.credentials())
            .args(args)
            .output()
            .unwrap()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The credentials of the first start (`credentials.json`).
    pub fn credentials(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.data_dir.join("credentials.json")).unwrap())
            .unwrap()
    }

    /// An access token of the first-start client (client credentials,
    /// asked with curl).
    pub fn access_token(&self) -> String {
        let creds = self.credentials();
        let out = Command::new("curl")
            .args(["-s", "-X", "POST", &format!("{}/ims/token/v3", self.url())])
            .args(["-d", "grant_type=client_credentials", "-d"])
            .arg(format!(
                "client_id={}",
                creds["client_id"].as_str().unwrap()
            ))
            .arg("-d")
            .arg(format!(
                "client_secret={}",
                creds["client_secret"].as_str().unwrap()
            ))
            .output()
            .unwrap();
        let token: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        token["access_token"].as_str().unwrap().to_string()
    }
}

impl Drop for BdiaServe {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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

/// `bdia` set up as a client of `url` with `creds` (the environment a
/// user would set; no config file).
pub fn client_command(url: &str, creds: &serde_json::Value) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bdia"));
    cmd.env("BDIA_URL", url)
        .env("BDIA_CLIENT_ID", creds["client_id"].as_str().unwrap())
        .env(
            "BDIA_CLIENT_SECRET",
            creds["client_secret"].as_str().unwrap(),
        )
        .env("BDIA_CLIENT_CONFIG", "/nonexistent");
    cmd
}

/// `bdia upload ARGS...` to the server at `url` as the client of `creds`
/// (`credentials.json`); panics when it fails.
pub fn upload(url: &str, creds: &serde_json::Value, args: &[&std::ffi::OsStr]) {
    let out = client_command(url, creds)
        .arg("upload")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "upload {args:?} to {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file record (by file id) and every visitor state of a store.
pub async fn store_records(
    store: &dyn bdia_store::MetadataStore,
) -> (Vec<bdia_store::FileRecord>, Vec<bdia_store::StoredState>) {
    let mut files = Vec::new();
    let mut states = Vec::new();
    for c in store.list_companies().await.unwrap() {
        let page = store
            .list_files(
                &c.id,
                &bdia_store::FileQuery {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        files.extend(page.files);
        let mut after = None;
        loop {
            let page = store
                .list_visitor_states(&c.id, after.clone(), 1000)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some((last.report_suite.clone(), last.visitor_key.clone()));
            states.extend(page);
        }
    }
    files.sort_by(|a, b| a.file_id.cmp(&b.file_id));
    (files, states)
}

/// A small deterministic generator of kill points (no clock-seeded
/// randomness that could not be replayed: tests print the seed).
pub struct Lcg(pub u64);

impl Lcg {
    /// The next value in `0..below`.
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}
