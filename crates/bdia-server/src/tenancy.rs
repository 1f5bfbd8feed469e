//! The data dir, first-start bootstrap, and tenant administration shared by
//! the server and `bdia admin`.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use bdia_format::ReportSuiteId;
use bdia_store::blob::BlobStore;
use bdia_store::sqlite::SqliteStore;
use bdia_store::{ApiClient, Company, CompanySettings, MetadataStore, ReportSuite};
use serde::{Deserialize, Serialize};

use crate::auth::{hash_secret, random_hex};
use crate::storage::Storage;

/// Name of the company made on first start.
pub const DEFAULT_COMPANY: &str = "default";

/// An opened data dir.
pub struct DataDir {
    /// Metadata.
    pub store: Arc<dyn MetadataStore>,
    /// Staged files.
    pub blobs: BlobStore,
    /// HS256 key of access tokens.
    pub server_key: Vec<u8>,
    /// The directory.
    pub root: PathBuf,
}

impl std::fmt::Debug for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDir")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Client credentials as written to `credentials.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Company id.
    pub company: String,
    /// Client id (also the `x-api-key`).
    pub client_id: String,
    /// Client secret (shown once).
    pub client_secret: String,
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Makes the data dir private to the server's user: the directory itself
/// `0700` (so nothing below it can be reached by another local user,
/// whatever mode a library creates its files with), and, since an older
/// release left them `0755`/`0644`, every directory of bdia's below it
/// `0700` and every file `0600`. Returns how many modes were changed.
#[cfg(unix)]
pub fn make_private(root: &Path) -> std::io::Result<usize> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(path: &Path, changed: &mut usize) -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(path)?;
        let want = if meta.is_dir() {
            0o700
        } else if meta.is_file() {
            0o600
        } else {
            return Ok(()); // symlinks and sockets are left alone
        };
        if meta.permissions().mode() & 0o777 != want {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))?;
            *changed += 1;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                walk(&entry?.path(), changed)?;
            }
        }
        Ok(())
    }
    let mut changed = 0;
    let meta = std::fs::metadata(root)?;
    if meta.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
        changed += 1;
    }
    // Only what bdia itself keeps there: a data dir pointed at a directory
    // that holds other things leaves those things alone.
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if DATA_DIR_ENTRIES.contains(&name.as_ref()) || name.starts_with("metadata.sqlite") {
            walk(&entry.path(), &mut changed)?;
        }
    }
    Ok(changed)
}

/// What bdia keeps in a data dir (besides `metadata.sqlite*`).
#[cfg(unix)]
const DATA_DIR_ENTRIES: &[&str] = &[
    "server.key",
    "credentials.json",
    "server.lock",
    "blobs",
    "lake",
    "lake-spool",
];

/// Data dir modes are left as they are where there are no Unix modes.
#[cfg(not(unix))]
pub fn make_private(_root: &Path) -> std::io::Result<usize> {
    Ok(0)
}

/// [`make_private`], logging what it changed.
pub fn ensure_private(root: &Path) -> anyhow::Result<()> {
    let fixed = make_private(root)
        .with_context(|| format!("making {} private to this user", root.display()))?;
    if fixed > 0 {
        tracing::info!(
            fixed,
            "data dir made private (directories 0700, files 0600)"
        );
    }
    Ok(())
}

/// Opens (creating) a data dir and the metadata store: the embedded
/// SQLite database in the data dir, or the shared PostgreSQL database of
/// `config.metadata_url`; the blob store (on `storage`); the token signing key (the data
/// dir's `server.key` with the embedded database, a secret kept in the
/// shared database otherwise, so that every node accepts the tokens any
/// node issued). Then makes the data dir private ([`make_private`]).
pub async fn open_data_dir(config: &crate::Config, storage: &Storage) -> anyhow::Result<DataDir> {
    let root = config.data_dir.as_path();
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let store = open_metadata(root, config.metadata_url.as_deref()).await?;
    let blobs = storage.blobs(root)?;
    let server_key = match &config.metadata_url {
        None => local_key(&root.join("server.key"))?,
        Some(_) => {
            let hex_key = store
                .shared_secret(TOKEN_KEY_SECRET, &random_hex(32))
                .await
                .context("reading the shared token signing key")?;
            hex::decode(hex_key.trim())
                .ok()
                .filter(|k| k.len() >= 32)
                .context("the shared token signing key in the metadata database is not valid")?
        }
    };
    ensure_private(root)?;
    Ok(DataDir {
        store,
        blobs,
        server_key,
        root: root.to_path_buf(),
    })
}

/// Connections of a node to the shared metadata database.
pub const METADATA_POOL_SIZE: usize = 16;

/// The name of the token signing key among the shared secrets.
pub const TOKEN_KEY_SECRET: &str = "token_signing_key";

/// The metadata store: the embedded SQLite database in `root`, or the
/// PostgreSQL database of `url`.
pub async fn open_metadata(
    root: &Path,
    url: Option<&str>,
) -> anyhow::Result<Arc<dyn MetadataStore>> {
    match url {
        None => {
            let store = SqliteStore::open(&root.join("metadata.sqlite"))
                .with_context(|| format!("opening the database in {}", root.display()))?;
            Ok(Arc::new(store))
        }
        Some(url) => {
            let store = bdia_store::postgres::PgStore::connect(url, METADATA_POOL_SIZE)
                .await
                .with_context(|| {
                    format!(
                        "opening the metadata database {}",
                        crate::config::redact_url(url)
                    )
                })?;
            Ok(Arc::new(store))
        }
    }
}

/// The data dir's token signing key (`server.key`), made on first use.
fn local_key(key_path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read_to_string(key_path) {
        Ok(hex_key) => hex::decode(hex_key.trim())
            .ok()
            .filter(|k| k.len() >= 32)
            .with_context(|| format!("{} is not a valid key", key_path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let k = random_hex(32);
            write_private(key_path, k.as_bytes())
                .with_context(|| format!("writing {}", key_path.display()))?;
            Ok(hex::decode(k).expect("hex made here"))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", key_path.display())),
    }
}

/// Takes the data dir's server lock (`DATA_DIR/server.lock`), so that a
/// second server on the same dir refuses to start instead of sweeping the
/// first one's uploads. Released when the returned file is dropped (or the
/// process ends). `bdia admin` does not take it.
#[allow(clippy::incompatible_msrv)] // File::try_lock: the toolchain in use has it
pub fn lock_data_dir(root: &Path) -> anyhow::Result<std::fs::File> {
    let path = root.join("server.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another bdia server is running on {} (lock {} is held)",
            root.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// How old an unreferenced blob on a shared object store must be before
/// the startup sweep removes it: another server sharing the store may have
/// published it a moment ago and be about to commit its record.
pub const SHARED_ORPHAN_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(3_600);

/// Removes blobs that no record references (a crash between publishing a
/// staged file and committing its record) and that are at least `min_age`
/// old. Returns how many.
pub async fn sweep_orphans(
    store: &dyn MetadataStore,
    blobs: &BlobStore,
    min_age: std::time::Duration,
) -> anyhow::Result<usize> {
    let listed = blobs.list_keys_older_than(min_age).await?;
    let keep: HashSet<String> = store.referenced_blob_keys().await?.into_iter().collect();
    let mut n = 0;
    for key in listed {
        if !keep.contains(&key) {
            blobs.delete(&key).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// The startup sweep's minimum age for `blobs`: none on a local directory
/// (the data dir's lock keeps other servers out),
/// [`SHARED_ORPHAN_MIN_AGE`] on an object store.
pub fn orphan_min_age(blobs: &BlobStore) -> std::time::Duration {
    if blobs.is_local() {
        std::time::Duration::ZERO
    } else {
        SHARED_ORPHAN_MIN_AGE
    }
}

/// Checks an id given by an operator for a company or a client. Report
/// suites have their own rule, [`ReportSuiteId`].
pub fn check_id(kind: &str, id: &str) -> anyhow::Result<()> {
    if id.is_empty() || id.len() > 255 {
        bail!("{kind} id must be 1..255 characters");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-@:".contains(c))
    {
        bail!("{kind} id '{id}': use letters, digits and . _ - @ : only");
    }
    Ok(())
}

/// Creates a company with a fresh salt.
pub async fn create_company(
    store: &dyn MetadataStore,
    id: &str,
    settings: CompanySettings,
) -> anyhow::Result<Company> {
    check_id("company", id)?;
    // The id names the company's directory of the hit lake.
    bdia_lake::layout::check_company(id)?;
    Ok(store.create_company(id, &random_hex(16), settings).await?)
}

/// Creates a report suite of `company`; `rsid` must be a valid
/// [`ReportSuiteId`] and `time_zone` a zone of the tz database. Report
/// suite IDs are per company: only `company`'s own suites can conflict.
pub async fn create_report_suite(
    store: &dyn MetadataStore,
    company: &str,
    rsid: &str,
    time_zone: &str,
) -> anyhow::Result<ReportSuite> {
    let rsid = ReportSuiteId::parse(rsid).with_context(|| format!("report suite id '{rsid}'"))?;
    // The check processing applies to every suite of the company.
    let known = bdia_lake::SuiteZones::utc()
        .insert(rsid.as_str(), time_zone)
        .is_ok();
    if time_zone.is_empty() || time_zone.len() > 64 || !known {
        bail!("time zone '{time_zone}' is not a time zone name (IANA, e.g. Europe/Paris)");
    }
    Ok(store
        .create_report_suite(company, rsid.as_str(), time_zone)
        .await?)
}

/// Creates an API client; returns it with its secret (stored hashed only).
pub async fn create_client(
    store: &dyn MetadataStore,
    company: &str,
    client_id: Option<&str>,
    technical_account: Option<&str>,
    public_key_pem: Option<String>,
) -> anyhow::Result<(ApiClient, String)> {
    let client_id = client_id
        .map(str::to_string)
        .unwrap_or_else(|| random_hex(16));
    check_id("client", &client_id)?;
    if let Some(pem) = &public_key_pem {
        jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes())
            .context("the public key must be an RSA public key or certificate in PEM")?;
    }
    let secret = new_secret();
    let client = ApiClient {
        technical_account: technical_account
            .map(str::to_string)
            .unwrap_or_else(|| format!("{client_id}@techacct.bdia")),
        client_id,
        company_id: company.to_string(),
        secret_hash: hash_secret(&secret),
        public_key_pem,
        disabled: false,
        created: crate::auth::now(),
        token_generation: 0,
    };
    let client = store.create_client(client).await?;
    Ok((client, secret))
}

/// A new client secret: 32 random bytes.
fn new_secret() -> String {
    format!("p8e-{}", random_hex(32))
}

/// Gives a client a new secret and revokes every access token issued to it
/// before (its token generation moves up); returns the client and the new
/// secret (stored hashed only).
pub async fn rotate_client_secret(
    store: &dyn MetadataStore,
    client_id: &str,
) -> anyhow::Result<(ApiClient, String)> {
    let secret = new_secret();
    let client = store
        .rotate_client_secret(client_id, &hash_secret(&secret))
        .await
        .map_err(|e| match e {
            bdia_store::StoreError::NotFound(_) => anyhow::anyhow!("no client '{client_id}'"),
            e => e.into(),
        })?;
    Ok((client, secret))
}

/// When `DIR/credentials.json` holds the credentials of `client_id`, writes
/// `secret` into it (0600), so that the file stays usable after a rotation;
/// returns its path when it did.
pub fn update_credentials_file(
    dir: &Path,
    client_id: &str,
    secret: &str,
) -> anyhow::Result<Option<PathBuf>> {
    let path = dir.join("credentials.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let Ok(mut creds) = serde_json::from_slice::<Credentials>(&text) else {
        return Ok(None);
    };
    if creds.client_id != client_id {
        return Ok(None);
    }
    creds.client_secret = secret.to_string();
    write_private(&path, &serde_json::to_vec_pretty(&creds)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}

/// On an empty database: creates the default company and client and writes
/// `DIR/credentials.json` (0600). Returns the credentials when it did.
pub async fn ensure_default_tenant(
    store: &dyn MetadataStore,
    dir: &Path,
) -> anyhow::Result<Option<Credentials>> {
    if !store.list_companies().await?.is_empty() {
        return Ok(None);
    }
    // Nodes sharing one database may start at once: the one whose company
    // insert wins makes the client and the credentials, the others nothing.
    let company = match create_company(store, DEFAULT_COMPANY, CompanySettings::default()).await {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.downcast_ref::<bdia_store::StoreError>(),
                Some(bdia_store::StoreError::Conflict(_))
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let (client, secret) = create_client(store, &company.id, None, None, None).await?;
    let creds = Credentials {
        company: company.id,
        client_id: client.client_id,
        client_secret: secret,
    };
    let json = serde_json::to_vec_pretty(&creds)?;
    write_private(&dir.join("credentials.json"), &json)
        .with_context(|| format!("writing {}", dir.join("credentials.json").display()))?;
    Ok(Some(creds))
}

/// A ready-to-paste shell example: get a token, upload a file, look it up.
/// The client secret is read from `credentials` when the example runs, so
/// it is never printed (a first start's output ends up in logs).
pub fn curl_example(base_url: &str, client_id: &str, credentials: &Path) -> String {
    let file = shell_quote(&credentials.display().to_string());
    format!(
        r#"SECRET=$(sed -n 's/.*"client_secret": *"\([^"]*\)".*/\1/p' {file})
TOKEN=$(curl -s -X POST {base_url}/ims/token/v3 \
  -d grant_type=client_credentials -d client_id={id} -d "client_secret=$SECRET" \
  | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
curl -s -X POST {base_url}/aa/collect/v1/events \
  -H "Authorization: Bearer $TOKEN" -H "x-api-key: {id}" \
  -H "x-adobe-vgid: group1" -F file=@ingest_file.csv.gz
curl -s {base_url}/aa/collect/v1/events?vgid=group1 \
  -H "Authorization: Bearer $TOKEN" -H "x-api-key: {id}""#,
        id = client_id,
    )
}

/// `s` as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
