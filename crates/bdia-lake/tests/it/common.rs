//! Helpers: hits, lakes in temp dirs, snapshots, a store that crashes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bdia_format::fields::Field;
use bdia_format::hit::{
    AuthState, CustomerId, Event, Hit, HitType, LinkType, Visitor, VisitorKind,
};
use bdia_lake::{CommitOutcome, FileTxn, Lake, LakeConfig, SuiteZones};
use bdia_model::{enrich_file, EnrichedHit, Identity, MemoryStates};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// Runs `python` on the script `name` of this crate's `tests/` with `args`
/// and returns its standard output; fails the test, showing both outputs,
/// when the script fails.
pub fn run_python_check(python: &str, name: &str, args: &[&std::ffi::OsStr]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name);
    let out = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `f` to completion on a runtime of its own (Delta Lake needs tokio).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A hit with a bit of everything.
pub fn rich_hit(row: u64, ts: i64, suites: &[&str], visitor: &str) -> Hit {
    let mut vars = vec![None; Field::COUNT];
    vars[Field::PageName as usize] = Some(format!("page {row}"));
    vars[Field::PageUrl as usize] = Some(format!("https://example.com/{row}"));
    vars[Field::UserAgent as usize] = Some("Mozilla/5.0".into());
    vars[Field::VisitorId as usize] = Some(visitor.into());
    vars[Field::BrowserHeight as usize] = Some("768".into());
    vars[Field::Events as usize] = Some("purchase,event2=5".into());
    let mut hit = Hit {
        row,
        timestamp: ts,
        report_suites: suites.iter().map(|s| (*s).into()).collect(),
        visitor: Visitor {
            kind: VisitorKind::Vid,
            customer_id_type: None,
            id: visitor.into(),
        },
        hit_type: HitType::PageView,
        vars: vars.into_iter().map(|v| v.map(Into::into)).collect(),
        evars: [(1, format!("e1-{row}").into()), (250, "last".into())].into(),
        props: [(75, "p75".into())].into(),
        hiers: [(2, "a|b".into())].into(),
        lists: [(3, "x,y".into())].into(),
        context_data: [("app.version".to_string(), "1.2".to_string())].into(),
        hints: [("platform".to_string(), "Linux".to_string())].into(),
        customer_ids: [(
            "CRM".to_string(),
            CustomerId {
                id: "c-1".into(),
                auth_state: Some(AuthState::Authenticated),
                is_mc_seed: false,
            },
        )]
        .into(),
        events: vec![
            Event {
                name: "purchase".into(),
                value: None,
                serial: None,
            },
            Event {
                name: "event2".into(),
                value: Some(5.0),
                serial: None,
            },
        ],
    };
    if row.is_multiple_of(3) {
        hit.hit_type = HitType::Link(LinkType::Download);
        hit.vars[Field::LinkName as usize] = Some("pdf".into());
        hit.vars[Field::LinkUrl as usize] = Some("https://example.com/a.pdf".into());
    }
    hit
}

/// A file of `n` hits over a few visitors, suites and days.
pub fn sample_file(n: u64, start: i64, gap: i64) -> Vec<Hit> {
    (1..=n)
        .map(|row| {
            let suites: &[&str] = match row % 5 {
                0 => &["rs1", "rs2"],
                1 | 2 => &["rs1"],
                _ => &["rs2"],
            };
            rich_hit(
                row,
                start + row as i64 * gap,
                suites,
                &format!("v{}", row % 7),
            )
        })
        .collect()
}

pub fn enrich(hits: Vec<Hit>) -> Vec<EnrichedHit> {
    enrich_file(hits, &Identity::new(*b"salt"), MemoryStates::default())
        .unwrap()
        .hits
}

pub fn zones() -> SuiteZones {
    let mut z = SuiteZones::utc();
    z.insert("rs2", "America/New_York").unwrap();
    z
}

pub fn small_config() -> LakeConfig {
    LakeConfig {
        batch_rows: 7,
        row_group_rows: 20,
        ..LakeConfig::default()
    }
}

/// The company the tests' files belong to.
pub const COMPANY: &str = "acme";

/// Writes and publishes one file of [`COMPANY`].
pub fn write_file(
    lake: &Lake,
    file_id: &str,
    hits: &[EnrichedHit],
    zones: SuiteZones,
) -> CommitOutcome {
    write_company_file(lake, COMPANY, file_id, hits, zones)
}

/// The transaction the tests' files commit with: each file its own group
/// (`g-<file_id>`), sequence 1.
pub fn txn_of(file_id: &str) -> FileTxn {
    FileTxn {
        app_id: format!("g-{file_id}"),
        version: 1,
    }
}

/// Writes and publishes one file of `company`.
pub fn write_company_file(
    lake: &Lake,
    company: &str,
    file_id: &str,
    hits: &[EnrichedHit],
    zones: SuiteZones,
) -> CommitOutcome {
    let mut w = lake.begin(company, file_id, zones).unwrap();
    for h in hits {
        w.push(h).unwrap();
    }
    let staged = w.finish().unwrap();
    block_on(lake.publish(staged, &txn_of(file_id))).unwrap()
}

/// Every data object of a store with its bytes (the Delta logs aside:
/// their commits carry times).
pub fn data_objects(store: &dyn ObjectStore) -> BTreeMap<String, Vec<u8>> {
    let mut all = snapshot(store);
    all.retain(|k, _| !k.contains("/_delta_log/"));
    all
}

/// Every data object under a lake's root with its bytes, by path relative
/// to the root (the Delta logs aside).
pub fn lake_data_objects(lake: &Lake) -> BTreeMap<String, Vec<u8>> {
    let root = lake.root().clone();
    let store = lake.store().clone();
    block_on(async move {
        let metas: Vec<ObjectMeta> = store.list(Some(&root)).try_collect().await.unwrap();
        let mut out = BTreeMap::new();
        for m in metas {
            let rel = m.location.as_ref();
            let rel = rel
                .strip_prefix(root.as_ref())
                .unwrap_or(rel)
                .trim_start_matches('/')
                .to_string();
            if rel.contains("_delta_log/") {
                continue;
            }
            let b = store.get(&m.location).await.unwrap().bytes().await.unwrap();
            out.insert(rel, b.to_vec());
        }
        out
    })
}

/// The files of `company`'s current snapshot: (path, rows).
pub fn table_files(lake: &Lake, company: &str) -> Vec<(String, u64)> {
    block_on(lake.files(company))
        .unwrap()
        .into_iter()
        .map(|f| (f.path, f.rows))
        .collect()
}

/// Every object of a store with its bytes.
pub fn snapshot(store: &dyn ObjectStore) -> BTreeMap<String, Vec<u8>> {
    block_on(async {
        let metas: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
        let mut out = BTreeMap::new();
        for m in metas {
            let b = store.get(&m.location).await.unwrap().bytes().await.unwrap();
            out.insert(m.location.to_string(), b.to_vec());
        }
        out
    })
}

/// The lake of `real` seen through a [`CrashingStore`] that crashes after
/// `budget` writes.
pub fn crashing_lake(real: &Lake, budget: i64) -> (Lake, Arc<CrashingStore>) {
    let store = Arc::new(CrashingStore::new(real.store().clone(), budget));
    let lake = Lake::new(
        store.clone() as Arc<dyn ObjectStore>,
        real.root().clone(),
        real.config().clone(),
    );
    (lake, store)
}

/// A store whose mutating calls fail once a budget is spent, like a
/// process killed at that point.
#[derive(Debug)]
pub struct CrashingStore {
    pub inner: Arc<dyn ObjectStore>,
    pub budget: AtomicI64,
}

impl CrashingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, budget: i64) -> CrashingStore {
        CrashingStore {
            inner,
            budget: AtomicI64::new(budget),
        }
    }

    fn spend(&self) -> object_store::Result<()> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
            Err(object_store::Error::Generic {
                store: "crashing",
                source: "simulated crash".into(),
            })
        } else {
            Ok(())
        }
    }

    pub fn spent_all(&self) -> bool {
        self.budget.load(Ordering::SeqCst) < 0
    }
}

impl fmt::Display for CrashingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CrashingStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for CrashingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.spend()?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.spend()?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        match self.spend() {
            Ok(()) => self.inner.delete_stream(locations),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    /// In path order, as object stores list (and Delta Lake expects);
    /// a local file system does not.
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = self.inner.clone();
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            let mut all: Vec<ObjectMeta> = inner.list(prefix.as_ref()).try_collect().await?;
            all.sort_by(|a, b| a.location.cmp(&b.location));
            Ok::<_, object_store::Error>(futures::stream::iter(all.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.spend()?;
        self.inner.copy_opts(from, to, options).await
    }
}
