use std::sync::Arc;

use bdia_store::{conformance, sqlite::SqliteStore, MetadataStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_in_memory_passes_the_conformance_suite() {
    conformance::run_all(|| async {
        Arc::new(SqliteStore::in_memory().unwrap()) as Arc<dyn MetadataStore>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_on_disk_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let base = dir.path().to_path_buf();
    conformance::run_all(|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = base.join(format!("db{i}.sqlite"));
        async move { Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn MetadataStore> }
    })
    .await;
}

#[tokio::test]
async fn records_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.create_company("acme", "ab", Default::default())
            .await
            .unwrap();
        s.commit_upload(conformance::sample_file("acme", "f1", "g", None))
            .await
            .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let f = s.get_file("acme", "f1").await.unwrap().unwrap();
    assert_eq!(f.group_seq, Some(1));
}
