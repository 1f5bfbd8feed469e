//! Server configuration: a TOML file plus `BDIA_` environment overrides.
//!
//! Precedence, lowest first: [`Config::default`], the TOML file, the
//! environment ([`Config::apply_env`]), command-line flags (applied by the
//! caller). [`Config::validate`] names the offending value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A URL with its password (if any) replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Everything the server can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory holding the database, staged files and keys
    /// (`BDIA_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Where the metadata lives (`BDIA_METADATA_URL`): unset for the
    /// embedded SQLite database in the data dir (one node), or a
    /// `postgres://user@host:port/db` URL shared by every node.
    pub metadata_url: Option<String>,
    /// This node's id among the nodes sharing the metadata
    /// (`BDIA_NODE_ID`; letters, digits and `.-_:`): unset, the host name.
    /// Leases, logs and metrics carry it; a node started again under the
    /// same id takes its groups back at once.
    pub node_id: Option<String>,
    /// Where staged uploads, reject reports and the hit lake live
    /// (`BDIA_STORAGE_URL`): a local directory or `s3://bucket/prefix`
    /// (credentials, region and endpoint from the `AWS_*` environment
    /// variables). Unset: the data dir.
    pub storage_url: Option<String>,
    /// Address to listen on (`BDIA_LISTEN`).
    pub listen: SocketAddr,
    /// Upload size limits.
    pub limits: LimitsConfig,
    /// Default upload rate limit per company.
    pub rate_limit: RateLimitConfig,
    /// Token settings.
    pub auth: AuthConfig,
    /// Seconds to wait for in-flight uploads at shutdown
    /// (`BDIA_SHUTDOWN_GRACE_SECS`).
    pub shutdown_grace_secs: u64,
    /// An upload that sends nothing for this many seconds is dropped, like a
    /// disconnect (`BDIA_UPLOAD_IDLE_TIMEOUT_SECS`).
    pub upload_idle_timeout_secs: u64,
    /// A second address on which `GET /metrics` is served without
    /// authentication, for a scraper on a private network
    /// (`BDIA_METRICS_LISTEN`); unset: no second listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer token that `GET /metrics` on the main listener requires
    /// (`BDIA_METRICS_TOKEN`, 16 to 1024 visible ASCII characters); unset:
    /// `/metrics` is not served on the main listener (404).
    pub metrics_token: Option<MetricsToken>,
    /// A request body (an upload, a validate, a token form...) must be
    /// received whole within this many seconds of its first read, else it
    /// is dropped like a disconnect and answered 408
    /// (`BDIA_UPLOAD_DEADLINE_SECS`; see `crate::pace`).
    pub upload_deadline_secs: u64,
    /// Past the first `upload_rate_grace_secs` of waiting for the client,
    /// a request body must arrive at this many bytes per second on average
    /// (counting only time spent waiting for the client), else it is
    /// dropped and answered 408; 0 turns the check off
    /// (`BDIA_UPLOAD_MIN_BYTES_PER_SEC`).
    pub upload_min_bytes_per_sec: u64,
    /// Seconds of waiting allowed before `upload_min_bytes_per_sec` applies
    /// (`BDIA_UPLOAD_RATE_GRACE_SECS`).
    pub upload_rate_grace_secs: u64,
    /// Seconds a connection has to complete its TLS handshake and to send
    /// a request's headers, and the longest an idle keep-alive connection
    /// is kept (`BDIA_HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout_secs: u64,
    /// Connections served at once (`BDIA_MAX_CONNECTIONS`); further ones
    /// wait in the listen backlog. Unset: derived from the descriptor
    /// limit (`crate::net::connection_budget`, docs/OPERATIONS.md).
    pub max_connections: Option<u32>,
    /// PEM certificate chain: serve HTTPS (`BDIA_TLS_CERT`, with
    /// `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (`BDIA_TLS_KEY`).
    pub tls_key: Option<PathBuf>,
    /// The processing stage.
    pub processing: ProcessingConfig,
    /// Report limits.
    pub reports: ReportsConfig,
    /// Background compaction and vacuum of the lake's tables.
    pub lake: LakeMaintenanceConfig,
    /// Webhook deliveries.
    pub webhooks: WebhooksConfig,
    /// The single-hit Data Insertion API (`/b/ss/...`).
    pub single_hits: SingleHitsConfig,
}

/// The single-hit Data Insertion API ([`crate::single_hit`]): its rate
/// limit and how hits are gathered into files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SingleHitsConfig {
    /// Serve `/b/ss/...` at all (`BDIA_SINGLE_HITS_ENABLED`); a suite must
    /// also be set to accept single hits.
    pub enabled: bool,
    /// Sustained hits per second per company, split among live nodes
    /// (`BDIA_SINGLE_HITS_PER_SECOND`).
    pub per_second: u32,
    /// Hits a company may send at once after a quiet period
    /// (`BDIA_SINGLE_HITS_BURST`).
    pub burst: u32,
    /// Hits are gathered into a file at least this often, milliseconds
    /// (`BDIA_SINGLE_HITS_FLUSH_MS`).
    pub flush_ms: u64,
    /// Hits per file at most (`BDIA_SINGLE_HITS_MAX_FILE_HITS`); a file is
    /// also cut before it would exceed `limits.max_uncompressed_bytes`.
    pub max_file_hits: u64,
    /// Hits waiting to be written to the journal; beyond, 503
    /// (`BDIA_SINGLE_HITS_QUEUE`).
    pub queue: usize,
    /// Largest request body (XML or form), bytes
    /// (`BDIA_SINGLE_HITS_MAX_BODY_BYTES`).
    pub max_body_bytes: u64,
    /// Seconds a report suite's single-hit setting is cached by a node
    /// (`BDIA_SINGLE_HITS_SUITE_CACHE_SECS`).
    pub suite_cache_secs: u64,
}

impl Default for SingleHitsConfig {
    fn default() -> Self {
        SingleHitsConfig {
            enabled: true,
            per_second: 1_000,
            burst: 2_000,
            flush_ms: 1_000,
            max_file_hits: 100_000,
            queue: 16_384,
            max_body_bytes: 65_536,
            suite_cache_secs: 5,
        }
    }
}

/// Background maintenance of the lake's Delta tables
/// ([`crate::lake_maintenance`]): compaction of partitions holding many
/// small files, and vacuum of files no table version references any more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeMaintenanceConfig {
    /// Compact in the background at all (`BDIA_LAKE_COMPACTION_ENABLED`).
    pub compaction_enabled: bool,
    /// Seconds between compaction rounds over every company's table
    /// (`BDIA_LAKE_COMPACTION_INTERVAL_SECS`).
    pub compaction_interval_secs: u64,
    /// A partition is compacted when it holds at least this many files
    /// smaller than `compaction_target_bytes`
    /// (`BDIA_LAKE_COMPACTION_MIN_FILES`, at least 2).
    pub compaction_min_files: usize,
    /// Size compacted files are written up to, bytes
    /// (`BDIA_LAKE_COMPACTION_TARGET_BYTES`).
    pub compaction_target_bytes: u64,
    /// Vacuum in the background at all (`BDIA_LAKE_VACUUM_ENABLED`).
    pub vacuum_enabled: bool,
    /// Seconds between vacuum rounds (`BDIA_LAKE_VACUUM_INTERVAL_SECS`).
    pub vacuum_interval_secs: u64,
    /// A file no longer referenced by the table is deleted once it has
    /// been unreferenced this many hours (`BDIA_LAKE_VACUUM_RETENTION_HOURS`,
    /// at least 1): until then, readers of an older snapshot still find
    /// it, and the bytes of retracted or privacy-deleted hits are still on
    /// disk.
    pub vacuum_retention_hours: u64,
}

impl Default for LakeMaintenanceConfig {
    fn default() -> Self {
        LakeMaintenanceConfig {
            compaction_enabled: true,
            compaction_interval_secs: 300,
            compaction_min_files: 8,
            compaction_target_bytes: 128 * 1024 * 1024,
            vacuum_enabled: true,
            vacuum_interval_secs: 3_600,
            vacuum_retention_hours: 168,
        }
    }
}

/// Webhook deliveries ([`crate::webhooks`]): how many are sent at once,
/// how long one may take, and how long a failing one is retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Send deliveries from this node at all (`BDIA_WEBHOOKS_ENABLED`).
    /// Events are recorded either way; another node may send them.
    pub enabled: bool,
    /// Deliveries in flight at once on this node
    /// (`BDIA_WEBHOOKS_CONCURRENCY`, 1..=256).
    pub concurrency: u32,
    /// Time allowed for one attempt (connect, send, answer), milliseconds
    /// (`BDIA_WEBHOOKS_TIMEOUT_MS`).
    pub timeout_ms: u64,
    /// A delivery is retried until it is this old, then given up, seconds
    /// (`BDIA_WEBHOOKS_MAX_AGE_SECS`).
    pub max_age_secs: u64,
    /// Delay cap of the first retry; each further retry doubles it, with
    /// full jitter, milliseconds (`BDIA_WEBHOOKS_BACKOFF_BASE_MS`).
    pub backoff_base_ms: u64,
    /// Largest delay cap between two attempts, milliseconds
    /// (`BDIA_WEBHOOKS_BACKOFF_MAX_MS`).
    pub backoff_max_ms: u64,
    /// Milliseconds between looks for due deliveries when none was found
    /// (`BDIA_WEBHOOKS_POLL_INTERVAL_MS`).
    pub poll_interval_ms: u64,
    /// Endpoints a company may register (`BDIA_WEBHOOKS_MAX_PER_COMPANY`).
    pub max_per_company: u32,
    /// Delivered and given-up deliveries stay in the log this many days
    /// after their event (`BDIA_WEBHOOKS_LOG_RETENTION_DAYS`).
    pub log_retention_days: u64,
    /// When not empty, an endpoint URL must start with one of these
    /// (`BDIA_WEBHOOKS_ALLOWED_URL_PREFIXES`, comma-separated), e.g.
    /// `["https://hooks.example.com/"]`: keeps deliveries away from
    /// internal addresses (docs/SECURITY.md).
    pub allowed_url_prefixes: Vec<String>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            enabled: true,
            concurrency: 8,
            timeout_ms: 10_000,
            max_age_secs: 86_400,
            backoff_base_ms: 5_000,
            backoff_max_ms: 3_600_000,
            poll_interval_ms: 1_000,
            max_per_company: 20,
            log_retention_days: 30,
            allowed_url_prefixes: Vec::new(),
        }
    }
}

/// Limits on reports (`/api/v1/report-suites/{rsid}/report`): a report
/// scans the lake, so they are bounded in rate, number, time and memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportsConfig {
    /// Sustained reports per second per company
    /// (`BDIA_REPORT_RATE_PER_SECOND`).
    pub per_second: u32,
    /// Reports a company may start at once after being idle
    /// (`BDIA_REPORT_BURST`).
    pub burst: u32,
    /// Reports running at once in the whole server
    /// (`BDIA_REPORT_MAX_CONCURRENT`).
    pub max_concurrent: u32,
    /// Reports running at once per company
    /// (`BDIA_REPORT_MAX_CONCURRENT_PER_COMPANY`).
    pub max_concurrent_per_company: u32,
    /// A report (its wait for a slot included) that takes longer is
    /// stopped and answered 503 (`BDIA_REPORT_TIMEOUT_SECS`).
    pub timeout_secs: u64,
    /// Memory all running reports may hold for sorts, joins and
    /// aggregations, bytes (`BDIA_REPORT_MEMORY_LIMIT_BYTES`); a report
    /// that needs more fails with a clear error instead of growing the
    /// process.
    pub memory_limit_bytes: u64,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            per_second: 5,
            burst: 20,
            max_concurrent: 4,
            max_concurrent_per_company: 2,
            timeout_secs: 60,
            memory_limit_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// The processing stage (uploaded files -> lake).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessingConfig {
    /// Process uploaded files at all (`BDIA_PROCESSING_ENABLED`).
    pub enabled: bool,
    /// Files processed at once, each of a different visitor group
    /// (`BDIA_PROCESSING_WORKERS`).
    pub workers: usize,
    /// How often the scheduler looks for work when nothing woke it, in
    /// milliseconds (`BDIA_PROCESSING_POLL_MS`).
    pub poll_interval_ms: u64,
    /// Keep staged files after their file is `COMPLETE` instead of deleting
    /// them (`BDIA_KEEP_STAGED_FILES`).
    pub keep_staged_files: bool,
    /// How long a node's lease on a visitor group lasts without renewal,
    /// in milliseconds (`BDIA_PROCESSING_LEASE_MS`); renewed every third
    /// of it. After a node dies, its groups wait this long before another
    /// node takes them over.
    pub lease_ms: u64,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            enabled: true,
            workers: 2,
            poll_interval_ms: 1_000,
            keep_staged_files: false,
            lease_ms: 30_000,
        }
    }
}

/// Upload size limits (spec 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Maximum compressed upload size in bytes (`BDIA_MAX_COMPRESSED_BYTES`).
    pub max_compressed_bytes: u64,
    /// Maximum decompressed size in bytes (`BDIA_MAX_UNCOMPRESSED_BYTES`).
    pub max_uncompressed_bytes: u64,
    /// Report suites one upload may create for its company; rows naming
    /// more unknown suites are invalid
    /// (`BDIA_MAX_NEW_REPORT_SUITES_PER_UPLOAD`).
    pub max_new_report_suites_per_upload: u32,
    /// Upload and validate passes (a blocking thread each) running at once
    /// in the whole server (`BDIA_MAX_CONCURRENT_PASSES`); beyond it,
    /// 503 with `Retry-After`.
    pub max_concurrent_passes: u32,
    /// Upload and validate passes running at once per company
    /// (`BDIA_MAX_CONCURRENT_PASSES_PER_COMPANY`); beyond it, 429 with
    /// `Retry-After`.
    pub max_concurrent_passes_per_company: u32,
    /// Largest data row in bytes; a longer row is an invalid row
    /// (`row_too_long`), skipped without being held in memory
    /// (`BDIA_MAX_ROW_BYTES`).
    pub max_row_bytes: u64,
    /// Invalid rows listed in a file's reject report; the rest are counted
    /// by kind at its end (`BDIA_MAX_REJECT_ROWS`).
    pub max_reject_rows: u64,
    /// Longest `raw` column of a reject report line, in bytes; a longer
    /// row is cut and ends in `...` (`BDIA_MAX_REJECT_RAW_BYTES`).
    pub max_reject_raw_bytes: u64,
}

impl LimitsConfig {
    /// The format engine's limits.
    pub fn engine_limits(&self) -> bdia_format::Limits {
        bdia_format::Limits {
            max_compressed: self.max_compressed_bytes,
            max_uncompressed: self.max_uncompressed_bytes,
            max_row_bytes: self.max_row_bytes,
        }
    }
}

/// The server-wide default upload rate limit; each company may override it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Apply a limit at all (`BDIA_RATE_LIMIT_ENABLED`).
    pub enabled: bool,
    /// Sustained uploads per second per company (`BDIA_RATE_LIMIT_PER_SECOND`).
    pub per_second: u32,
    /// Uploads allowed at once (`BDIA_RATE_LIMIT_BURST`).
    pub burst: u32,
}

/// The longest lifetime of an access token, and the largest maximum
/// lifetime of a service-account JWT: 30 days.
pub const MAX_TOKEN_TTL_SECS: u64 = 30 * 86_400;

/// Token settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of access tokens in seconds (`BDIA_TOKEN_TTL_SECS`),
    /// 1 to [`MAX_TOKEN_TTL_SECS`].
    pub token_ttl_secs: u64,
    /// Clock skew tolerated on client-signed JWTs, seconds
    /// (`BDIA_JWT_LEEWAY_SECS`).
    pub jwt_leeway_secs: u64,
    /// Largest lifetime (`exp - iat`) of a service-account JWT, seconds
    /// (`BDIA_JWT_MAX_LIFETIME_SECS`), 1 to [`MAX_TOKEN_TTL_SECS`]. It also
    /// bounds how long an exchanged JWT is remembered against replays.
    pub jwt_max_lifetime_secs: u64,
    /// Failed attempts (wrong secret, unknown client, bad JWT) a client id
    /// may make on the token endpoints before it is answered 429
    /// (`BDIA_AUTH_FAILURE_BURST`).
    pub failure_burst: u32,
    /// After the burst, one more failed attempt is allowed every this many
    /// seconds (`BDIA_AUTH_FAILURE_REFILL_SECS`).
    pub failure_refill_secs: u64,
    /// Client ids whose failures are tracked at most; past that the least
    /// recent are forgotten (`BDIA_AUTH_FAILURE_MAX_CLIENTS`).
    pub failure_max_clients: usize,
}

/// The metrics bearer token; its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MetricsToken(pub String);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

impl MetricsToken {
    /// True when `presented` is the token, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./bdia-data"),
            metadata_url: None,
            node_id: None,
            storage_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            limits: LimitsConfig::default(),
            rate_limit: RateLimitConfig::default(),
            auth: AuthConfig::default(),
            shutdown_grace_secs: 30,
            upload_idle_timeout_secs: 60,
            metrics_listen: None,
            metrics_token: None,
            upload_deadline_secs: 3_600,
            upload_min_bytes_per_sec: 1_024,
            upload_rate_grace_secs: 30,
            header_read_timeout_secs: 20,
            max_connections: None,
            tls_cert: None,
            tls_key: None,
            processing: ProcessingConfig::default(),
            reports: ReportsConfig::default(),
            lake: LakeMaintenanceConfig::default(),
            webhooks: WebhooksConfig::default(),
            single_hits: SingleHitsConfig::default(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_compressed_bytes: 100 * 1024 * 1024,
            max_uncompressed_bytes: 1024 * 1024 * 1024,
            max_new_report_suites_per_upload: 100,
            max_concurrent_passes: 32,
            max_concurrent_passes_per_company: 8,
            max_row_bytes: bdia_format::engine::DEFAULT_MAX_ROW_BYTES,
            max_reject_rows: 1_000,
            max_reject_raw_bytes: 4_096,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            per_second: 1,
            burst: 10,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl_secs: 86_400,
            jwt_leeway_secs: 60,
            jwt_max_lifetime_secs: 86_400,
            failure_burst: 10,
            failure_refill_secs: 6,
            failure_max_clients: 10_000,
        }
    }
}

/// A configuration problem, naming the key and value.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

fn parse_env<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| ConfigError(format!("{key}={value:?} is not a valid value")))
}

impl Config {
    /// This node's id: `node_id`, else the host name (`HOSTNAME`, then
    /// /etc/hostname), else `bdia`.
    pub fn node_id(&self) -> String {
        if let Some(id) = &self.node_id {
            return id.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty());
        host.map(|h| {
            h.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || ".-_:".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .take(128)
                .collect()
        })
        .unwrap_or_else(|| "bdia".to_string())
    }

    /// Reads a TOML file.
    pub fn from_toml_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("reading {}: {e}", path.display())))?;
        Config::from_toml(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// Applies `BDIA_*` overrides from the process environment.
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        self.apply_vars(std::env::vars())
    }

    /// Applies `BDIA_*` overrides from the given variables (testable).
    pub fn apply_vars<I>(&mut self, vars: I) -> Result<(), ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        for (k, v) in vars {
            match k.as_str() {
                "BDIA_DATA_DIR" => self.data_dir = PathBuf::from(v),
                "BDIA_METADATA_URL" => self.metadata_url = Some(v),
                "BDIA_NODE_ID" => self.node_id = Some(v),
                "BDIA_STORAGE_URL" => {
                    self.storage_url = Some(v.trim().to_string()).filter(|v| !v.is_empty())
                }
                "BDIA_LISTEN" => self.listen = parse_env(&k, &v)?,
                "BDIA_MAX_COMPRESSED_BYTES" => {
                    self.limits.max_compressed_bytes = parse_env(&k, &v)?
                }
                "BDIA_MAX_UNCOMPRESSED_BYTES" => {
                    self.limits.max_uncompressed_bytes = parse_env(&k, &v)?
                }
                "BDIA_MAX_NEW_REPORT_SUITES_PER_UPLOAD" => {
                    self.limits.max_new_report_suites_per_upload = parse_env(&k, &v)?
                }
                "BDIA_MAX_CONCURRENT_PASSES" => {
                    self.limits.max_concurrent_passes = parse_env(&k, &v)?
                }
                "BDIA_MAX_CONCURRENT_PASSES_PER_COMPANY" => {
                    self.limits.max_concurrent_passes_per_company = parse_env(&k, &v)?
                }
                "BDIA_REPORT_RATE_PER_SECOND" => self.reports.per_second = parse_env(&k, &v)?,
                "BDIA_REPORT_BURST" => self.reports.burst = parse_env(&k, &v)?,
                "BDIA_REPORT_MAX_CONCURRENT" => self.reports.max_concurrent = parse_env(&k, &v)?,
                "BDIA_REPORT_MAX_CONCURRENT_PER_COMPANY" => {
                    self.reports.max_concurrent_per_company = parse_env(&k, &v)?
                }
                "BDIA_REPORT_TIMEOUT_SECS" => self.reports.timeout_secs = parse_env(&k, &v)?,
                "BDIA_REPORT_MEMORY_LIMIT_BYTES" => {
                    self.reports.memory_limit_bytes = parse_env(&k, &v)?
                }
                "BDIA_MAX_ROW_BYTES" => self.limits.max_row_bytes = parse_env(&k, &v)?,
                "BDIA_MAX_REJECT_ROWS" => self.limits.max_reject_rows = parse_env(&k, &v)?,
                "BDIA_MAX_REJECT_RAW_BYTES" => {
                    self.limits.max_reject_raw_bytes = parse_env(&k, &v)?
                }
                "BDIA_RATE_LIMIT_ENABLED" => self.rate_limit.enabled = parse_env(&k, &v)?,
                "BDIA_RATE_LIMIT_PER_SECOND" => self.rate_limit.per_second = parse_env(&k, &v)?,
                "BDIA_RATE_LIMIT_BURST" => self.rate_limit.burst = parse_env(&k, &v)?,
                "BDIA_TOKEN_TTL_SECS" => self.auth.token_ttl_secs = parse_env(&k, &v)?,
                "BDIA_JWT_LEEWAY_SECS" => self.auth.jwt_leeway_secs = parse_env(&k, &v)?,
                "BDIA_JWT_MAX_LIFETIME_SECS" => {
                    self.auth.jwt_max_lifetime_secs = parse_env(&k, &v)?
                }
                "BDIA_AUTH_FAILURE_BURST" => self.auth.failure_burst = parse_env(&k, &v)?,
                "BDIA_AUTH_FAILURE_REFILL_SECS" => {
                    self.auth.failure_refill_secs = parse_env(&k, &v)?
                }
                "BDIA_AUTH_FAILURE_MAX_CLIENTS" => {
                    self.auth.failure_max_clients = parse_env(&k, &v)?
                }
                "BDIA_METRICS_LISTEN" => {
                    self.metrics_listen = match v.trim() {
                        "" => None,
                        _ => Some(parse_env(&k, &v)?),
                    }
                }
                "BDIA_METRICS_TOKEN" => {
                    self.metrics_token = Some(v.trim())
                        .filter(|v| !v.is_empty())
                        .map(|v| MetricsToken(v.to_string()))
                }
                "BDIA_SHUTDOWN_GRACE_SECS" => self.shutdown_grace_secs = parse_env(&k, &v)?,
                "BDIA_UPLOAD_IDLE_TIMEOUT_SECS" => {
                    self.upload_idle_timeout_secs = parse_env(&k, &v)?
                }
                "BDIA_UPLOAD_DEADLINE_SECS" => self.upload_deadline_secs = parse_env(&k, &v)?,
                "BDIA_UPLOAD_MIN_BYTES_PER_SEC" => {
                    self.upload_min_bytes_per_sec = parse_env(&k, &v)?
                }
                "BDIA_UPLOAD_RATE_GRACE_SECS" => self.upload_rate_grace_secs = parse_env(&k, &v)?,
                "BDIA_HEADER_READ_TIMEOUT_SECS" => {
                    self.header_read_timeout_secs = parse_env(&k, &v)?
                }
                "BDIA_MAX_CONNECTIONS" => self.max_connections = Some(parse_env(&k, &v)?),
                "BDIA_TLS_CERT" => self.tls_cert = Some(PathBuf::from(v)),
                "BDIA_TLS_KEY" => self.tls_key = Some(PathBuf::from(v)),
                "BDIA_PROCESSING_ENABLED" => self.processing.enabled = parse_env(&k, &v)?,
                "BDIA_PROCESSING_WORKERS" => self.processing.workers = parse_env(&k, &v)?,
                "BDIA_PROCESSING_POLL_MS" => self.processing.poll_interval_ms = parse_env(&k, &v)?,
                "BDIA_PROCESSING_LEASE_MS" => self.processing.lease_ms = parse_env(&k, &v)?,
                "BDIA_KEEP_STAGED_FILES" => self.processing.keep_staged_files = parse_env(&k, &v)?,
                "BDIA_SINGLE_HITS_ENABLED" => self.single_hits.enabled = parse_env(&k, &v)?,
                "BDIA_SINGLE_HITS_PER_SECOND" => self.single_hits.per_second = parse_env(&k, &v)?,
                "BDIA_SINGLE_HITS_BURST" => self.single_hits.burst = parse_env(&k, &v)?,
                "BDIA_SINGLE_HITS_FLUSH_MS" => self.single_hits.flush_ms = parse_env(&k, &v)?,
                "BDIA_SINGLE_HITS_MAX_FILE_HITS" => {
                    self.single_hits.max_file_hits = parse_env(&k, &v)?
                }
                "BDIA_SINGLE_HITS_QUEUE" => self.single_hits.queue = parse_env(&k, &v)?,
                "BDIA_SINGLE_HITS_MAX_BODY_BYTES" => {
                    self.single_hits.max_body_bytes = parse_env(&k, &v)?
                }
                "BDIA_SINGLE_HITS_SUITE_CACHE_SECS" => {
                    self.single_hits.suite_cache_secs = parse_env(&k, &v)?
                }
                "BDIA_WEBHOOKS_ENABLED" => self.webhooks.enabled = parse_env(&k, &v)?,
                "BDIA_WEBHOOKS_CONCURRENCY" => self.webhooks.concurrency = parse_env(&k, &v)?,
                "BDIA_WEBHOOKS_TIMEOUT_MS" => self.webhooks.timeout_ms = parse_env(&k, &v)?,
                "BDIA_WEBHOOKS_MAX_AGE_SECS" => self.webhooks.max_age_secs = parse_env(&k, &v)?,
                "BDIA_WEBHOOKS_BACKOFF_BASE_MS" => {
                    self.webhooks.backoff_base_ms = parse_env(&k, &v)?
                }
                "BDIA_WEBHOOKS_BACKOFF_MAX_MS" => self.webhooks.backoff_max_ms = parse_env(&k, &v)?,
                "BDIA_WEBHOOKS_POLL_INTERVAL_MS" => {
                    self.webhooks.poll_interval_ms = parse_env(&k, &v)?
                }
                "BDIA_WEBHOOKS_MAX_PER_COMPANY" => {
                    self.webhooks.max_per_company = parse_env(&k, &v)?
                }
                "BDIA_WEBHOOKS_LOG_RETENTION_DAYS" => {
                    self.webhooks.log_retention_days = parse_env(&k, &v)?
                }
                "BDIA_WEBHOOKS_ALLOWED_URL_PREFIXES" => {
                    self.webhooks.allowed_url_prefixes = v
                        .split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect()
                }
                "BDIA_LAKE_COMPACTION_ENABLED" => self.lake.compaction_enabled = parse_env(&k, &v)?,
                "BDIA_LAKE_COMPACTION_INTERVAL_SECS" => {
                    self.lake.compaction_interval_secs = parse_env(&k, &v)?
                }
                "BDIA_LAKE_COMPACTION_MIN_FILES" => {
                    self.lake.compaction_min_files = parse_env(&k, &v)?
                }
                "BDIA_LAKE_COMPACTION_TARGET_BYTES" => {
                    self.lake.compaction_target_bytes = parse_env(&k, &v)?
                }
                "BDIA_LAKE_VACUUM_ENABLED" => self.lake.vacuum_enabled = parse_env(&k, &v)?,
                "BDIA_LAKE_VACUUM_INTERVAL_SECS" => {
                    self.lake.vacuum_interval_secs = parse_env(&k, &v)?
                }
                "BDIA_LAKE_VACUUM_RETENTION_HOURS" => {
                    self.lake.vacuum_retention_hours = parse_env(&k, &v)?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks the values, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError("data_dir is empty".into()));
        }
        if let Some(url) = &self.storage_url {
            bdia_store::storage::StorageUrl::parse(url)
                .map_err(|e| ConfigError(format!("storage_url: {e}")))?;
        }
        if self.limits.max_compressed_bytes == 0 {
            return Err(ConfigError(
                "limits.max_compressed_bytes = 0: must be > 0".into(),
            ));
        }
        if self.limits.max_uncompressed_bytes == 0 {
            return Err(ConfigError(
                "limits.max_uncompressed_bytes = 0: must be > 0".into(),
            ));
        }
        if self.limits.max_row_bytes == 0 {
            return Err(ConfigError("limits.max_row_bytes = 0: must be > 0".into()));
        }
        if self.limits.max_reject_raw_bytes < 16 {
            return Err(ConfigError(format!(
                "limits.max_reject_raw_bytes = {}: must be >= 16",
                self.limits.max_reject_raw_bytes
            )));
        }
        if self.rate_limit.enabled
            && (self.rate_limit.per_second == 0 || self.rate_limit.burst == 0)
        {
            return Err(ConfigError(format!(
                "rate_limit.per_second = {}, rate_limit.burst = {}: both must be > 0 when enabled",
                self.rate_limit.per_second, self.rate_limit.burst
            )));
        }
        positive(&[
            (
                "limits.max_concurrent_passes",
                self.limits.max_concurrent_passes.into(),
            ),
            (
                "limits.max_concurrent_passes_per_company",
                self.limits.max_concurrent_passes_per_company.into(),
            ),
            ("reports.per_second", self.reports.per_second.into()),
            ("reports.burst", self.reports.burst.into()),
            ("reports.max_concurrent", self.reports.max_concurrent.into()),
            (
                "reports.max_concurrent_per_company",
                self.reports.max_concurrent_per_company.into(),
            ),
            ("reports.timeout_secs", self.reports.timeout_secs),
            (
                "reports.memory_limit_bytes",
                self.reports.memory_limit_bytes,
            ),
            (
                "lake.compaction_interval_secs",
                self.lake.compaction_interval_secs,
            ),
            (
                "lake.compaction_target_bytes",
                self.lake.compaction_target_bytes,
            ),
            ("lake.vacuum_interval_secs", self.lake.vacuum_interval_secs),
            (
                "lake.vacuum_retention_hours",
                self.lake.vacuum_retention_hours,
            ),
        ])?;
        positive(&[
            ("webhooks.concurrency", self.webhooks.concurrency.into()),
            ("webhooks.timeout_ms", self.webhooks.timeout_ms),
            ("webhooks.max_age_secs", self.webhooks.max_age_secs),
            ("webhooks.backoff_base_ms", self.webhooks.backoff_base_ms),
            ("webhooks.poll_interval_ms", self.webhooks.poll_interval_ms),
            (
                "webhooks.max_per_company",
                self.webhooks.max_per_company.into(),
            ),
            (
                "webhooks.log_retention_days",
                self.webhooks.log_retention_days,
            ),
        ])?;
        positive(&[
            ("single_hits.per_second", self.single_hits.per_second.into()),
            ("single_hits.burst", self.single_hits.burst.into()),
            ("single_hits.flush_ms", self.single_hits.flush_ms),
            ("single_hits.max_file_hits", self.single_hits.max_file_hits),
            ("single_hits.queue", self.single_hits.queue as u64),
            (
                "single_hits.max_body_bytes",
                self.single_hits.max_body_bytes,
            ),
        ])?;
        if self.webhooks.concurrency > 256 {
            return Err(ConfigError(format!(
                "webhooks.concurrency = {}: must be 1..=256",
                self.webhooks.concurrency
            )));
        }
        if self.webhooks.backoff_max_ms < self.webhooks.backoff_base_ms {
            return Err(ConfigError(format!(
                "webhooks.backoff_max_ms = {}: must be >= webhooks.backoff_base_ms ({})",
                self.webhooks.backoff_max_ms, self.webhooks.backoff_base_ms
            )));
        }
        for prefix in &self.webhooks.allowed_url_prefixes {
            if !(prefix.starts_with("http://") || prefix.starts_with("https://")) {
                return Err(ConfigError(format!(
                    "webhooks.allowed_url_prefixes: '{prefix}' must start with http:// or https://"
                )));
            }
        }
        if self.lake.compaction_min_files < 2 {
            return Err(ConfigError(format!(
                "lake.compaction_min_files = {}: must be >= 2",
                self.lake.compaction_min_files
            )));
        }
        if self.upload_idle_timeout_secs == 0 {
            return Err(ConfigError(
                "upload_idle_timeout_secs = 0: must be > 0".into(),
            ));
        }
        for (key, value) in [
            ("upload_deadline_secs", self.upload_deadline_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("{key} = 0: must be > 0")));
            }
        }
        if self.max_connections == Some(0) {
            return Err(ConfigError("max_connections = 0: must be > 0".into()));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError(
                "tls_cert and tls_key: give both (HTTPS) or neither (HTTP)".into(),
            ));
        }
        if self.processing.workers == 0 || self.processing.workers > 256 {
            return Err(ConfigError(format!(
                "processing.workers = {}: must be 1..=256",
                self.processing.workers
            )));
        }
        if let Some(url) = &self.metadata_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(ConfigError(format!(
                    "metadata_url '{}': must be a postgres:// URL (unset: the embedded SQLite database in the data dir)",
                    redact_url(url)
                )));
            }
        }
        if let Some(id) = &self.node_id {
            if id.is_empty()
                || id.len() > 128
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
            {
                return Err(ConfigError(format!(
                    "node_id '{id}': 1..128 letters, digits and . - _ : only"
                )));
            }
        }
        if !(300..=3_600_000).contains(&self.processing.lease_ms) {
            return Err(ConfigError(format!(
                "processing.lease_ms = {}: must be 300..=3600000",
                self.processing.lease_ms
            )));
        }
        if self.processing.poll_interval_ms == 0 {
            return Err(ConfigError(
                "processing.poll_interval_ms = 0: must be > 0".into(),
            ));
        }
        if self.auth.token_ttl_secs == 0 {
            return Err(ConfigError("auth.token_ttl_secs = 0: must be > 0".into()));
        }
        if self.auth.token_ttl_secs > MAX_TOKEN_TTL_SECS {
            return Err(ConfigError(format!(
                "auth.token_ttl_secs = {}: at most {MAX_TOKEN_TTL_SECS} (30 days)",
                self.auth.token_ttl_secs
            )));
        }
        if !(1..=MAX_TOKEN_TTL_SECS).contains(&self.auth.jwt_max_lifetime_secs) {
            return Err(ConfigError(format!(
                "auth.jwt_max_lifetime_secs = {}: must be 1..={MAX_TOKEN_TTL_SECS} (30 days)",
                self.auth.jwt_max_lifetime_secs
            )));
        }
        for (key, value) in [
            ("auth.failure_burst", u64::from(self.auth.failure_burst)),
            ("auth.failure_refill_secs", self.auth.failure_refill_secs),
            (
                "auth.failure_max_clients",
                self.auth.failure_max_clients as u64,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("{key} = 0: must be > 0")));
            }
        }
        if self.auth.failure_refill_secs > 86_400 {
            return Err(ConfigError(format!(
                "auth.failure_refill_secs = {}: at most 86400 (a day)",
                self.auth.failure_refill_secs
            )));
        }
        if let Some(MetricsToken(t)) = &self.metrics_token {
            if !(16..=1024).contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError(format!(
                    "metrics_token: {} characters; use 16 to 1024 visible ASCII characters \
                     (no spaces)",
                    t.len()
                )));
            }
        }
        Ok(())
    }
}

/// `Err` naming the first of `values` that is 0.
fn positive(values: &[(&str, u64)]) -> Result<(), ConfigError> {
    match values.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => Err(ConfigError(format!("{key} = 0: must be > 0"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_env_and_validation() {
        let mut c = Config::from_toml(
            "listen = \"127.0.0.1:9000\"\n[rate_limit]\nburst = 3\n[limits]\nmax_compressed_bytes = 10\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.rate_limit.burst, 3);
        assert_eq!(c.rate_limit.per_second, 1);
        c.apply_vars([
            ("BDIA_RATE_LIMIT_ENABLED".to_string(), "false".to_string()),
            ("BDIA_DATA_DIR".to_string(), "/tmp/x".to_string()),
        ])
        .unwrap();
        assert!(!c.rate_limit.enabled);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        c.validate().unwrap();
        assert!(
            Config::from_toml("nope = 1").is_err(),
            "unknown keys refused"
        );
        let err = c
            .apply_vars([("BDIA_LISTEN".to_string(), "x".to_string())])
            .unwrap_err();
        assert!(err.to_string().contains("BDIA_LISTEN"));
        c.apply_vars([
            ("BDIA_MAX_CONNECTIONS".to_string(), "50".to_string()),
            ("BDIA_HEADER_READ_TIMEOUT_SECS".to_string(), "3".to_string()),
            ("BDIA_UPLOAD_DEADLINE_SECS".to_string(), "10".to_string()),
            ("BDIA_UPLOAD_MIN_BYTES_PER_SEC".to_string(), "0".to_string()),
            ("BDIA_UPLOAD_RATE_GRACE_SECS".to_string(), "5".to_string()),
            ("BDIA_TLS_CERT".to_string(), "/c.pem".to_string()),
        ])
        .unwrap();
        assert_eq!(c.max_connections, Some(50));
        assert_eq!(c.header_read_timeout_secs, 3);
        assert_eq!(
            (
                c.upload_deadline_secs,
                c.upload_min_bytes_per_sec,
                c.upload_rate_grace_secs
            ),
            (10, 0, 5)
        );
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("tls_key"), "{e}");
        c.tls_key = Some(PathBuf::from("/k.pem"));
        c.validate().unwrap();
        let t = Config::from_toml(
            "max_connections = 50\nheader_read_timeout_secs = 5\n\
             tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
        )
        .unwrap();
        assert_eq!(t.max_connections, Some(50));
        assert_eq!(t.tls_key, Some(PathBuf::from("k.pem")));
        t.validate().unwrap();
        for bad in [
            "max_connections = 0",
            "header_read_timeout_secs = 0",
            "upload_deadline_secs = 0",
        ] {
            let e = Config::from_toml(bad).unwrap().validate().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        c.apply_vars([
            ("BDIA_MAX_ROW_BYTES".to_string(), "4096".to_string()),
            ("BDIA_MAX_REJECT_ROWS".to_string(), "0".to_string()),
            ("BDIA_MAX_REJECT_RAW_BYTES".to_string(), "100".to_string()),
        ])
        .unwrap();
        assert_eq!(c.limits.engine_limits().max_row_bytes, 4096);
        assert_eq!(
            (c.limits.max_reject_rows, c.limits.max_reject_raw_bytes),
            (0, 100)
        );
        c.validate().unwrap();
        c.limits.max_row_bytes = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_row_bytes"));
        c.limits.max_row_bytes = 1;
        c.limits.max_reject_raw_bytes = 15;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_reject_raw_bytes"));
        c.limits = LimitsConfig::default();
        c.auth.token_ttl_secs = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("token_ttl_secs"));
        c.auth.token_ttl_secs = 60;
        c.apply_vars([("BDIA_REPORT_MAX_CONCURRENT".to_string(), "0".to_string())])
            .unwrap();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "configuration: reports.max_concurrent = 0: must be > 0"
        );
        c.reports.max_concurrent = 4;
        c.auth.token_ttl_secs = MAX_TOKEN_TTL_SECS;
        assert!(c.validate().is_ok());
        for ttl in [MAX_TOKEN_TTL_SECS + 1, i64::MAX as u64, u64::MAX] {
            c.auth.token_ttl_secs = ttl;
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("token_ttl_secs") && e.contains("30 days"), "{e}");
        }
    }

    #[test]
    fn lake_maintenance_settings() {
        let mut c = Config::from_toml(
            "[lake]\ncompaction_interval_secs = 5\ncompaction_min_files = 2\n\
             vacuum_retention_hours = 1\n",
        )
        .unwrap();
        assert_eq!(c.lake.compaction_interval_secs, 5);
        assert_eq!(c.lake.compaction_min_files, 2);
        assert_eq!(c.lake.vacuum_retention_hours, 1);
        assert_eq!(c.lake.compaction_target_bytes, 128 * 1024 * 1024);
        assert!(c.lake.compaction_enabled && c.lake.vacuum_enabled);
        c.validate().unwrap();
        c.apply_vars([
            (
                "BDIA_LAKE_COMPACTION_ENABLED".to_string(),
                "false".to_string(),
            ),
            (
                "BDIA_LAKE_COMPACTION_TARGET_BYTES".to_string(),
                "1048576".to_string(),
            ),
            ("BDIA_LAKE_VACUUM_ENABLED".to_string(), "false".to_string()),
            (
                "BDIA_LAKE_VACUUM_INTERVAL_SECS".to_string(),
                "60".to_string(),
            ),
        ])
        .unwrap();
        assert!(!c.lake.compaction_enabled && !c.lake.vacuum_enabled);
        assert_eq!(
            (c.lake.compaction_target_bytes, c.lake.vacuum_interval_secs),
            (1_048_576, 60)
        );
        c.validate().unwrap();
        assert!(Config::from_toml("[lake]\nvacuum_days = 1\n").is_err());
        for (key, value, named) in [
            (
                "BDIA_LAKE_COMPACTION_INTERVAL_SECS",
                "0",
                "lake.compaction_interval_secs = 0",
            ),
            (
                "BDIA_LAKE_COMPACTION_MIN_FILES",
                "1",
                "lake.compaction_min_files = 1",
            ),
            (
                "BDIA_LAKE_COMPACTION_TARGET_BYTES",
                "0",
                "lake.compaction_target_bytes = 0",
            ),
            (
                "BDIA_LAKE_VACUUM_INTERVAL_SECS",
                "0",
                "lake.vacuum_interval_secs = 0",
            ),
            (
                "BDIA_LAKE_VACUUM_RETENTION_HOURS",
                "0",
                "lake.vacuum_retention_hours = 0",
            ),
        ] {
            let mut bad = c.clone();
            bad.apply_vars([(key.to_string(), value.to_string())])
                .unwrap();
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(named), "{key}={value}: {e}");
        }
        let e = c
            .clone()
            .apply_vars([("BDIA_LAKE_VACUUM_ENABLED".to_string(), "maybe".to_string())])
            .unwrap_err();
        assert!(e.to_string().contains("BDIA_LAKE_VACUUM_ENABLED"), "{e}");
    }

    #[test]
    fn webhook_settings() {
        let mut c = Config::from_toml(
            "[webhooks]\nconcurrency = 2\ntimeout_ms = 500\nmax_age_secs = 172800\n\
             allowed_url_prefixes = [\"https://hooks.example.com/\"]\n",
        )
        .unwrap();
        assert_eq!(c.webhooks.concurrency, 2);
        assert_eq!(c.webhooks.timeout_ms, 500);
        assert_eq!(c.webhooks.max_age_secs, 172_800);
        assert_eq!(
            c.webhooks.allowed_url_prefixes,
            ["https://hooks.example.com/"]
        );
        assert!(c.webhooks.enabled);
        c.validate().unwrap();
        c.apply_vars([
            ("BDIA_WEBHOOKS_ENABLED".to_string(), "false".to_string()),
            (
                "BDIA_WEBHOOKS_BACKOFF_BASE_MS".to_string(),
                "10".to_string(),
            ),
            ("BDIA_WEBHOOKS_BACKOFF_MAX_MS".to_string(), "20".to_string()),
            (
                "BDIA_WEBHOOKS_ALLOWED_URL_PREFIXES".to_string(),
                "https://a.example/, http://10.0.0.5:8080/".to_string(),
            ),
        ])
        .unwrap();
        assert!(!c.webhooks.enabled);
        assert_eq!(
            c.webhooks.allowed_url_prefixes,
            ["https://a.example/", "http://10.0.0.5:8080/"]
        );
        c.validate().unwrap();
        assert!(Config::from_toml("[webhooks]\nretries = 3\n").is_err());
        for (key, value, named) in [
            ("BDIA_WEBHOOKS_CONCURRENCY", "0", "webhooks.concurrency = 0"),
            (
                "BDIA_WEBHOOKS_CONCURRENCY",
                "257",
                "webhooks.concurrency = 257",
            ),
            ("BDIA_WEBHOOKS_TIMEOUT_MS", "0", "webhooks.timeout_ms = 0"),
            (
                "BDIA_WEBHOOKS_MAX_AGE_SECS",
                "0",
                "webhooks.max_age_secs = 0",
            ),
            (
                "BDIA_WEBHOOKS_BACKOFF_MAX_MS",
                "5",
                "webhooks.backoff_max_ms = 5",
            ),
            (
                "BDIA_WEBHOOKS_POLL_INTERVAL_MS",
                "0",
                "webhooks.poll_interval_ms = 0",
            ),
            (
                "BDIA_WEBHOOKS_MAX_PER_COMPANY",
                "0",
                "webhooks.max_per_company = 0",
            ),
            (
                "BDIA_WEBHOOKS_LOG_RETENTION_DAYS",
                "0",
                "webhooks.log_retention_days = 0",
            ),
            (
                "BDIA_WEBHOOKS_ALLOWED_URL_PREFIXES",
                "ftp://x/",
                "webhooks.allowed_url_prefixes",
            ),
        ] {
            let mut bad = c.clone();
            bad.apply_vars([(key.to_string(), value.to_string())])
                .unwrap();
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(named), "{key}={value}: {e}");
        }
    }

    #[test]
    fn auth_and_metrics_settings() {
        let mut c = Config::from_toml(
            "metrics_listen = \"127.0.0.1:9100\"\nmetrics_token = \"0123456789abcdef\"\n\
             [auth]\njwt_max_lifetime_secs = 3600\nfailure_burst = 3\n",
        )
        .unwrap();
        assert_eq!(c.metrics_listen.unwrap().port(), 9100);
        assert!(c
            .metrics_token
            .as_ref()
            .unwrap()
            .matches("0123456789abcdef"));
        assert!(!c
            .metrics_token
            .as_ref()
            .unwrap()
            .matches("0123456789abcdeX"));
        assert!(
            !format!("{c:?}").contains("0123456789abcdef"),
            "token not in Debug"
        );
        assert_eq!(c.auth.jwt_max_lifetime_secs, 3600);
        assert_eq!(c.auth.failure_burst, 3);
        c.validate().unwrap();
        c.apply_vars([
            ("BDIA_METRICS_LISTEN".to_string(), String::new()),
            ("BDIA_AUTH_FAILURE_REFILL_SECS".to_string(), "2".to_string()),
            (
                "BDIA_AUTH_FAILURE_MAX_CLIENTS".to_string(),
                "50".to_string(),
            ),
            ("BDIA_JWT_MAX_LIFETIME_SECS".to_string(), "60".to_string()),
        ])
        .unwrap();
        assert_eq!(c.metrics_listen, None);
        assert_eq!(
            (c.auth.failure_refill_secs, c.auth.failure_max_clients),
            (2, 50)
        );
        for (key, value, named) in [
            ("BDIA_METRICS_TOKEN", "short", "metrics_token"),
            (
                "BDIA_METRICS_TOKEN",
                "with space 0123456789",
                "metrics_token",
            ),
            ("BDIA_JWT_MAX_LIFETIME_SECS", "0", "jwt_max_lifetime_secs"),
            (
                "BDIA_JWT_MAX_LIFETIME_SECS",
                "2592001",
                "jwt_max_lifetime_secs",
            ),
            ("BDIA_AUTH_FAILURE_BURST", "0", "failure_burst"),
            ("BDIA_AUTH_FAILURE_REFILL_SECS", "0", "failure_refill_secs"),
            ("BDIA_AUTH_FAILURE_MAX_CLIENTS", "0", "failure_max_clients"),
        ] {
            let mut bad = c.clone();
            bad.apply_vars([(key.to_string(), value.to_string())])
                .unwrap();
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(named), "{key}={value}: {e}");
        }
    }

    #[test]
    fn storage_url_from_toml_and_env_is_validated() {
        let t = Config::from_toml("storage_url = \"s3://bucket-1/prod/bdia\"\n").unwrap();
        assert_eq!(t.storage_url.as_deref(), Some("s3://bucket-1/prod/bdia"));
        t.validate().unwrap();
        let mut c = Config::default();
        assert_eq!(c.storage_url, None);
        c.apply_vars([("BDIA_STORAGE_URL".to_string(), "/srv/bdia".to_string())])
            .unwrap();
        assert_eq!(c.storage_url.as_deref(), Some("/srv/bdia"));
        c.validate().unwrap();
        c.apply_vars([("BDIA_STORAGE_URL".to_string(), " ".to_string())])
            .unwrap();
        assert_eq!(c.storage_url, None);
        for (bad, why) in [
            ("gs://b/p", "unsupported scheme"),
            ("s3://B/p", "bucket"),
            ("s3://bucket/a//b", "segments"),
        ] {
            c.storage_url = Some(bad.to_string());
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("storage_url") && e.contains(why), "{bad}: {e}");
        }
    }
}
