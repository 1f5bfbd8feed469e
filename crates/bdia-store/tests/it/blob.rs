use std::io::Write;

use bdia_store::blob::{file_key, BlobStore};

#[tokio::test]
async fn staged_files_are_published_or_left_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open_local(dir.path()).unwrap();

    let mut staged = blobs.stage("up1").unwrap();
    staged.write_all(b"hello").unwrap();
    staged.publish(&file_key("f1")).unwrap();
    assert_eq!(&blobs.get(&file_key("f1")).await.unwrap()[..], b"hello");
    assert!(blobs.exists(&file_key("f1")).await.unwrap());
    let mut read = String::new();
    std::io::Read::read_to_string(&mut blobs.open_read(&file_key("f1")).unwrap(), &mut read)
        .unwrap();
    assert_eq!(read, "hello");
    assert!(matches!(
        blobs.open_read("files/none"),
        Err(bdia_store::StoreError::NotFound(_))
    ));

    // Dropped without publish: nothing left in staging.
    let mut staged = blobs.stage("up2").unwrap();
    staged.write_all(b"partial").unwrap();
    drop(staged);
    assert_eq!(
        std::fs::read_dir(dir.path().join("staging"))
            .unwrap()
            .count(),
        0
    );

    assert_eq!(blobs.list_keys().await.unwrap(), [file_key("f1")]);
    blobs.delete(&file_key("f1")).await.unwrap();
    blobs.delete(&file_key("f1")).await.unwrap();
    assert!(!blobs.exists(&file_key("f1")).await.unwrap());
    assert!(blobs.list_keys().await.unwrap().is_empty());
}

#[test]
fn clear_staging_removes_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open_local(dir.path()).unwrap();
    std::fs::write(dir.path().join("staging/old.part"), b"x").unwrap();
    assert_eq!(blobs.clear_staging().unwrap(), 1);
}
