//! A server on `127.0.0.1:0` in a temporary data dir, for tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{AppState, Config, Credentials, Server};

/// A running test server.
pub struct TestServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// The default client's credentials (read from `credentials.json`).
    pub credentials: Credentials,
    /// The server's state (direct store access for assertions).
    pub state: AppState,
    dir: Option<tempfile::TempDir>,
    data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The `metrics_token` of [`test_config`]: `GET /metrics` with
/// `Authorization: Bearer TEST_METRICS_TOKEN`.
pub const TEST_METRICS_TOKEN: &str = "test-metrics-token-0123456789";

/// The test configuration: port 0, rate limit off, processing off,
/// [`TEST_METRICS_TOKEN`], given data dir.
pub fn test_config(data_dir: &Path) -> Config {
    let mut c = Config {
        data_dir: data_dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    c.rate_limit.enabled = false;
    c.metrics_token = Some(crate::config::MetricsToken(TEST_METRICS_TOKEN.into()));
    c.shutdown_grace_secs = 10;
    // Tests of uploads look at files as accepted; tests of processing turn
    // it on.
    c.processing.enabled = false;
    c
}

impl TestServer {
    /// Starts on a fresh temp dir; `tweak` adjusts the configuration.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> anyhow::Result<TestServer> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().to_path_buf();
        Self::start_in(Some(dir), &path, tweak).await
    }

    /// Starts on an existing data dir (restart tests).
    pub async fn start_in(
        dir: Option<tempfile::TempDir>,
        data_dir: &Path,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<TestServer> {
        let mut config = test_config(data_dir);
        tweak(&mut config);
        let server = Server::bind(config).await?;
        let addr = server.local_addr();
        let state = server.state().clone();
        let creds: Credentials =
            serde_json::from_slice(&std::fs::read(data_dir.join("credentials.json"))?)?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Ok(TestServer {
            addr,
            credentials: creds,
            state,
            dir,
            data_dir: data_dir.to_path_buf(),
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops gracefully; returns the temp dir (kept alive for a restart).
    pub async fn stop(mut self) -> anyhow::Result<Option<tempfile::TempDir>> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(self.dir.take())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// One hit read back from the lake: the columns tests reason about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LakeHit {
    /// `file_id`.
    pub file_id: String,
    /// `row_number`.
    pub row_number: i64,
    /// `report_suite`.
    pub report_suite: String,
    /// The `date=` partition of the part.
    pub date: String,
    /// `hit_time`, unix seconds.
    pub hit_time: i64,
    /// `visitor_id`.
    pub visitor_id: String,
    /// `visitor_id_type`.
    pub visitor_id_type: String,
    /// `visit_num`.
    pub visit_num: i32,
    /// `visit_page_num`.
    pub visit_page_num: i32,
    /// `visit_start_time`, unix seconds.
    pub visit_start_time: i64,
    /// `new_visit`.
    pub new_visit: bool,
    /// `out_of_order`.
    pub out_of_order: bool,
    /// `hit_type`.
    pub hit_type: String,
    /// Every column of the row as `name=value` (Arrow debug text), in
    /// schema order, `file_id` excluded: for whole-row comparisons.
    pub all: String,
}

/// Runs `f` on a runtime of its own, on a thread of its own (callers may
/// be inside a runtime).
fn on_own_runtime<T: Send + 'static>(
    f: impl FnOnce() -> futures::future::BoxFuture<'static, anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    std::thread::spawn(move || -> anyhow::Result<T> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("reading the lake panicked"))?
}

/// The lake at `storage_url` (a local directory holding `lake/`, or
/// `s3://bucket/prefix`), and the files of the current snapshot of every
/// company table with their bytes.
type SnapshotFiles = Vec<(String, bdia_lake::TableFile, Option<bytes::Bytes>)>;

fn snapshot_files(storage_url: &str, with_bytes: bool) -> anyhow::Result<SnapshotFiles> {
    let url = storage_url.to_string();
    on_own_runtime(move || {
        Box::pin(async move {
            let storage = crate::storage::Storage::open(Some(&url), Path::new("."))?;
            let l = storage.lake(bdia_lake::LakeConfig::default())?;
            let mut files = Vec::new();
            for company in l.companies().await? {
                for f in l.files(&company).await? {
                    let bytes = if with_bytes {
                        let rel =
                            format!("{}/{}", bdia_lake::layout::company_dir(&company), f.path);
                        let path = bdia_lake::layout::object_path(l.root(), &rel);
                        Some(
                            object_store::ObjectStoreExt::get(l.store().as_ref(), &path)
                                .await?
                                .bytes()
                                .await?,
                        )
                    } else {
                        None
                    };
                    files.push((company.clone(), f, bytes));
                }
            }
            Ok(files)
        })
    })
}

/// The paths (relative to the lake root) of the files of the current
/// snapshots of the lake under `data_dir/lake`.
pub fn lake_files(data_dir: &Path) -> anyhow::Result<std::collections::BTreeSet<String>> {
    lake_files_at(&data_dir.display().to_string())
}

/// [`lake_files`] of the lake at a storage URL (a local directory holding
/// `lake/`, or `s3://bucket/prefix` with the `AWS_*` variables set).
pub fn lake_files_at(storage_url: &str) -> anyhow::Result<std::collections::BTreeSet<String>> {
    Ok(snapshot_files(storage_url, false)?
        .into_iter()
        .map(|(company, f, _)| format!("{}/{}", bdia_lake::layout::company_dir(&company), f.path))
        .collect())
}

/// Every hit of the current snapshot of every company table of the lake
/// under `data_dir/lake` (the files readers see), sorted. `report_suite`
/// and `date` come from the partition values.
pub fn lake_hits(data_dir: &Path) -> anyhow::Result<Vec<LakeHit>> {
    lake_hits_at(&data_dir.display().to_string())
}

/// [`lake_hits`] of the lake at a storage URL (a local directory holding
/// `lake/`, or `s3://bucket/prefix` with the `AWS_*` variables set).
pub fn lake_hits_at(storage_url: &str) -> anyhow::Result<Vec<LakeHit>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let mut out = Vec::new();
    for (_company, part, bytes) in snapshot_files(storage_url, true)? {
        let bytes = bytes.expect("read with bytes");
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
        for batch in reader {
            // Every column of the hit schema, the part's missing ones null.
            let batch = bdia_lake::schema::conform(&batch?)?;
            let schema = batch.schema();
            let col = |name: &str| {
                batch
                    .column(schema.index_of(name).expect("lake column"))
                    .clone()
            };
            let (fid, vid, vtype, htype) = (
                col("file_id"),
                col("visitor_id"),
                col("visitor_id_type"),
                col("hit_type"),
            );
            let (time, vstart) = (col("hit_time"), col("visit_start_time"));
            let (vnum, vpage, rown) = (col("visit_num"), col("visit_page_num"), col("row_number"));
            let (newv, ooo) = (col("new_visit"), col("out_of_order"));
            for i in 0..batch.num_rows() {
                let mut all = String::new();
                for (c, f) in schema.fields().iter().enumerate() {
                    if matches!(f.name().as_str(), "file_id" | "report_suite") {
                        continue;
                    }
                    let v = batch.column(c).slice(i, 1);
                    all.push_str(&format!("{}={:?};", f.name(), v));
                }
                out.push(LakeHit {
                    file_id: fid.as_string::<i32>().value(i).to_string(),
                    row_number: rown.as_primitive::<Int64Type>().value(i),
                    report_suite: part.report_suite.clone(),
                    date: part.date.to_string(),
                    hit_time: time.as_primitive::<TimestampMicrosecondType>().value(i) / 1_000_000,
                    visitor_id: vid.as_string::<i32>().value(i).to_string(),
                    visitor_id_type: vtype.as_string::<i32>().value(i).to_string(),
                    visit_num: vnum.as_primitive::<Int32Type>().value(i),
                    visit_page_num: vpage.as_primitive::<Int32Type>().value(i),
                    visit_start_time: vstart.as_primitive::<TimestampMicrosecondType>().value(i)
                        / 1_000_000,
                    new_visit: newv.as_boolean().value(i),
                    out_of_order: ooo.as_boolean().value(i),
                    hit_type: htype.as_string::<i32>().value(i).to_string(),
                    all,
                });
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A variable ./test.sh sets for the services it starts (PostgreSQL, the
/// S3 server); panics, saying so, when it is not set.
pub fn service_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run ./test.sh (it starts PostgreSQL and an S3 server)")
    })
}

/// A name unique to this process and moment: `<prefix>_<pid>_<nanos>`.
pub fn unique_name(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{prefix}_{}_{}", std::process::id(), n % 1_000_000_000)
}

/// A fresh database (made with `psql`) on the PostgreSQL server ./test.sh
/// starts; its URL.
pub fn fresh_database(prefix: &str) -> String {
    let server = service_env("BDIA_TEST_POSTGRES_URL");
    let name = unique_name(prefix);
    let out = std::process::Command::new("psql")
        .arg(&server)
        .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = server.rsplit_once('/').expect("URL with a database").0;
    format!("{base}/{name}")
}
