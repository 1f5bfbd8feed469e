//! Where the data lives: a storage URL, and the S3-compatible object store
//! it names.
//!
//! A storage URL is either a local directory (a path, or `file:///dir`) or
//! `s3://bucket/prefix`. Under it bdia keeps `blobs/` (staged uploads and
//! reject reports, [`crate::blob::BlobStore`]) and `lake/` (the hit lake).
//!
//! An S3 store is configured from the standard `AWS_*` environment
//! variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ALLOW_HTTP`, ...: see `object_store`'s `AmazonS3Builder::from_env`),
//! with the bucket from the URL. Conditional puts (`If-None-Match: *`) are
//! always on: the lake's Delta commits need them.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use url::Url;

use crate::{StoreError, StoreResult};

/// A parsed storage URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// A local directory.
    Local(PathBuf),
    /// A bucket of an S3-compatible store, and the prefix (possibly empty)
    /// under which bdia keeps its objects.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, without leading or trailing `/`.
        prefix: String,
    },
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageUrl::Local(dir) => write!(f, "{}", dir.display()),
            StorageUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StorageUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl std::str::FromStr for StorageUrl {
    type Err = StoreError;

    fn from_str(s: &str) -> StoreResult<StorageUrl> {
        StorageUrl::parse(s)
    }
}

fn invalid(text: &str, why: &str) -> StoreError {
    StoreError::Invalid(format!("storage URL '{text}': {why}"))
}

impl StorageUrl {
    /// Parses `s3://bucket[/prefix]`, `file:///dir` or a plain path.
    pub fn parse(text: &str) -> StoreResult<StorageUrl> {
        let t = text.trim();
        if t.is_empty() {
            return Err(invalid(text, "empty"));
        }
        let Some((scheme, _)) = t.split_once("://") else {
            return Ok(StorageUrl::Local(PathBuf::from(t)));
        };
        let url = Url::parse(t).map_err(|e| invalid(text, &e.to_string()))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(text, "no query or fragment allowed"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                text,
                "no credentials in the URL (use the AWS_* environment variables)",
            ));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "file" => url
                .to_file_path()
                .map(StorageUrl::Local)
                .map_err(|()| invalid(text, "not an absolute local path")),
            "s3" => {
                let bucket = url.host_str().unwrap_or_default().to_string();
                if !valid_bucket(&bucket) {
                    return Err(invalid(
                        text,
                        "the bucket must be 3 to 63 characters: lowercase letters, digits, '.' and '-'",
                    ));
                }
                if url.port().is_some() {
                    return Err(invalid(
                        text,
                        "no port in an s3:// URL (set AWS_ENDPOINT_URL for another endpoint)",
                    ));
                }
                // The prefix as written (the parsed URL would resolve `..`).
                let after = &t[scheme.len() + 3..];
                let raw = after.split_once('/').map_or("", |(_, p)| p);
                let prefix = raw.strip_suffix('/').unwrap_or(raw).to_string();
                if !prefix.is_empty() {
                    for seg in prefix.split('/') {
                        if seg.is_empty() || seg == "." || seg == ".." {
                            return Err(invalid(
                                text,
                                "the prefix must not hold empty, '.' or '..' segments",
                            ));
                        }
                    }
                    ObjectPath::parse(&prefix).map_err(|e| invalid(text, &e.to_string()))?;
                }
                Ok(StorageUrl::S3 { bucket, prefix })
            }
            other => Err(invalid(
                text,
                &format!("unsupported scheme '{other}' (use s3:// or a local directory)"),
            )),
        }
    }

    /// The object prefix of `sub` (`blobs`, `lake`) under an S3 URL's
    /// prefix.
    pub fn object_prefix(prefix: &str, sub: &str) -> ObjectPath {
        if prefix.is_empty() {
            ObjectPath::from(sub)
        } else {
            ObjectPath::from(format!("{prefix}/{sub}"))
        }
    }
}

/// S3 bucket naming rules (the ones that matter for a URL host).
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

/// The S3-compatible store of `bucket`, configured from the `AWS_*`
/// environment variables, with conditional puts (`If-None-Match: *`) on.
pub fn s3_store(bucket: &str) -> StoreResult<Arc<dyn ObjectStore>> {
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .build()
        .map_err(|e| StoreError::backend(format!("configuring S3 bucket '{bucket}'"), e))?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_local_and_s3_urls() {
        assert_eq!(
            StorageUrl::parse("/var/lib/bdia").unwrap(),
            StorageUrl::Local("/var/lib/bdia".into())
        );
        assert_eq!(
            StorageUrl::parse("file:///var/lib/bdia").unwrap(),
            StorageUrl::Local("/var/lib/bdia".into())
        );
        assert_eq!(
            StorageUrl::parse("s3://my-bucket").unwrap(),
            StorageUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: String::new()
            }
        );
        let u = StorageUrl::parse("s3://my-bucket/prod/bdia/").unwrap();
        assert_eq!(
            u,
            StorageUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "prod/bdia".into()
            }
        );
        assert_eq!(u.to_string(), "s3://my-bucket/prod/bdia");
        assert_eq!(
            StorageUrl::object_prefix("prod/bdia", "lake").as_ref(),
            "prod/bdia/lake"
        );
        assert_eq!(StorageUrl::object_prefix("", "blobs").as_ref(), "blobs");
    }

    #[test]
    fn refuses_bad_urls_with_the_reason() {
        for (url, why) in [
            ("", "empty"),
            ("gs://b/p", "unsupported scheme 'gs'"),
            ("s3://", "the bucket"),
            ("s3://Upper/p", "the bucket"),
            ("s3://b/p", "the bucket"),
            ("s3://bucket:9000/p", "no port"),
            ("s3://bucket/a//b", "empty, '.' or '..'"),
            ("s3://bucket/a/../b", "empty, '.' or '..'"),
            ("s3://bucket/p?x=1", "no query"),
            ("s3://key:secret@bucket/p", "no credentials"),
            ("file://host/dir", "not an absolute local path"),
        ] {
            let e = StorageUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
