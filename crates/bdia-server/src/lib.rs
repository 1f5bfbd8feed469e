//! The bdia HTTP service (spec section 2).
//!
//! - [`Server::bind`] opens the data dir ([`tenancy::open_data_dir`]),
//!   recovers (clears `staging/`, removes blobs no record references),
//!   creates the default company and client on first start, and binds.
//! - [`Server::run`] serves until the shutdown future resolves, then waits
//!   (up to `shutdown_grace_secs`) for in-flight uploads: each either
//!   commits or leaves nothing. Connections are accepted by [`net`]: a
//!   header-read timeout, a connection limit fitted to the descriptor
//!   limit, and HTTPS when `tls_cert` and `tls_key` are set.
//! - [`router`] builds the axum router over an [`state::AppState`], so more
//!   routes can be merged in.
//! - `testing::TestServer` (with the `testsuite` feature, for tests only)
//!   runs a server on `127.0.0.1:0` in a temp dir.
//!
//! Data dir layout:
//!
//! ```text
//! DIR/metadata.sqlite[-wal,-shm]   companies, clients, suites, file records
//! DIR/server.key                   HS256 key of access tokens (0600)
//! DIR/credentials.json             first-start client credentials (0600)
//! DIR/server.lock                  held (flock) by the one server of this dir
//! DIR/blobs/                       staged files (see bdia_store::blob)
//! DIR/lake/                        the hit lake (see bdia_lake, processing)
//! DIR/lake-spool/                  part files being written
//! ```
//!
//! With `storage_url = "s3://bucket/prefix"` ([`storage`]) the blobs and
//! the lake are on the object store under `prefix/blobs/` and
//! `prefix/lake/`; `DIR/blobs/staging/` still receives uploads.
//!
//! The processing stage ([`processing`]) runs next to the HTTP side: at
//! bind, [`processing::recover`] repairs the lake and requeues files a crash
//! left `PROCESSING`; while serving, the scheduler moves uploaded files
//! through `PROCESSING` to `COMPLETE`/`ERROR`. Next to it,
//! [`lake_maintenance`] compacts and vacuums the lake's tables on its own
//! task, and [`lake_ops`] removes hits on request (retraction, privacy
//! deletion).

pub mod admission;
pub mod auth;
pub mod auth_throttle;
pub mod config;
pub mod console;
pub mod error;
pub mod extract;
pub mod groups;
pub mod handlers;
pub mod lake_maintenance;
pub mod lake_ops;
pub mod limiter;
pub mod metrics;
pub mod metrics_listener;
pub mod net;
pub mod openapi;
pub mod pace;
pub mod processing;
pub mod reports;
pub mod single_hit;
pub mod state;
pub mod storage;
pub mod tenancy;
#[cfg(feature = "testsuite")]
pub mod testing;
pub mod upload;
pub mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use bdia_store::MetadataStore;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use error::ApiError;
pub use state::AppState;
pub use tenancy::Credentials;

/// Every route: (method, path) as served, for docs and the OpenAPI check.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/ims/token/v3"),
    ("post", "/ims/exchange/jwt"),
    ("post", "/aa/collect/v1/events"),
    ("get", "/aa/collect/v1/events"),
    ("post", "/aa/collect/v1/events/validate"),
    ("get", "/aa/collect/v1/events/key/{idempotency_key}"),
    ("get", "/aa/collect/v1/events/{file_id}"),
    ("get", "/aa/collect/v1/events/{file_id}/rejects"),
    ("delete", "/aa/collect/v1/events/{file_id}/hits"),
    ("post", "/aa/collect/v1/groups/{vgid}/retry"),
    ("get", "/aa/collect/v1/groups/{vgid}"),
    ("post", "/aa/collect/v1/groups/{vgid}/pause"),
    ("post", "/aa/collect/v1/groups/{vgid}/resume"),
    ("post", "/aa/collect/v1/groups/{vgid}/cancel"),
    ("get", "/api/v1/report-suites"),
    ("get", "/api/v1/report-suites/{rsid}"),
    ("patch", "/api/v1/report-suites/{rsid}"),
    ("get", "/api/v1/report-suites/{rsid}/report"),
    ("get", "/api/v1/groups"),
    ("post", "/api/v1/privacy/deletions"),
    ("get", "/api/v1/privacy/deletions"),
    ("post", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks/{id}"),
    ("delete", "/api/v1/webhooks/{id}"),
    ("get", "/api/v1/webhooks/{id}/deliveries"),
    ("get", "/b/ss/{rsid}/{response_type}"),
    ("post", "/b/ss/{rsid}/{response_type}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

/// The process-wide Prometheus handle (the recorder is installed once,
/// with every metric of [`metrics::ALL`] described).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if ::metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            metrics::describe_all();
            handle
        })
        .clone()
}

/// The router of the whole API over `state`.
pub fn router(state: AppState) -> Router {
    // Size limits are enforced while streaming (413 from the engine); the
    // body limit here only bounds parts other than `file`.
    let body_limit = state
        .config
        .limits
        .max_compressed_bytes
        .saturating_add(1024 * 1024)
        .min(usize::MAX as u64) as usize;
    Router::new()
        .route(
            "/ims/token/v3",
            post(handlers::token).layer(DefaultBodyLimit::max(handlers::TOKEN_BODY_LIMIT)),
        )
        .route(
            "/ims/exchange/jwt",
            post(handlers::exchange_jwt).layer(DefaultBodyLimit::max(handlers::TOKEN_BODY_LIMIT)),
        )
        .route(
            "/aa/collect/v1/events",
            post(upload::upload).get(handlers::list),
        )
        .route("/aa/collect/v1/events/validate", post(upload::validate))
        .route(
            "/aa/collect/v1/events/key/{idempotency_key}",
            get(handlers::by_key),
        )
        .route("/aa/collect/v1/events/{file_id}", get(handlers::by_id))
        .route(
            "/aa/collect/v1/events/{file_id}/rejects",
            get(processing::api::rejects),
        )
        .route(
            "/aa/collect/v1/events/{file_id}/hits",
            delete(lake_ops::retract_hits),
        )
        .route(
            "/aa/collect/v1/groups/{vgid}/retry",
            post(processing::api::retry_group),
        )
        .route("/aa/collect/v1/groups/{vgid}", get(groups::show))
        .route("/aa/collect/v1/groups/{vgid}/pause", post(groups::pause))
        .route("/aa/collect/v1/groups/{vgid}/resume", post(groups::resume))
        .route("/aa/collect/v1/groups/{vgid}/cancel", post(groups::cancel))
        .route(
            "/b/ss/{*rest}",
            get(single_hit::collect).post(single_hit::collect),
        )
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(handlers::openapi))
        .route("/api/v1/report-suites", get(reports::report_suites))
        .route(
            "/api/v1/report-suites/{rsid}",
            get(reports::report_suite).patch(reports::update_report_suite),
        )
        .route("/api/v1/report-suites/{rsid}/report", get(reports::report))
        .route("/api/v1/groups", get(reports::groups))
        .route(
            "/api/v1/privacy/deletions",
            post(lake_ops::create_privacy_deletion)
                .layer(DefaultBodyLimit::max(lake_ops::PRIVACY_BODY_LIMIT))
                .get(lake_ops::list_privacy_deletions),
        )
        .route(
            "/api/v1/webhooks",
            post(webhooks::create)
                .layer(DefaultBodyLimit::max(webhooks::BODY_LIMIT))
                .get(webhooks::list),
        )
        .route(
            "/api/v1/webhooks/{id}",
            get(webhooks::get).delete(webhooks::delete),
        )
        .route(
            "/api/v1/webhooks/{id}/deliveries",
            get(webhooks::deliveries),
        )
        .route("/", get(console::to_console))
        .route("/console", get(console::to_console))
        .route("/console/", get(console::index))
        .route("/console/app.js", get(console::app_js))
        .route("/console/app.css", get(console::app_css))
        .fallback(handlers::not_found_fallback)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// A bound, ready-to-run server.
pub struct Server {
    state: AppState,
    /// Held while serving: one server per data dir.
    _lock: std::fs::File,
    listening: net::Listening,
    addr: SocketAddr,
    first_start: Option<Credentials>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Validates `config`, opens and recovers the data dir, bootstraps a
    /// first start, and binds `config.listen`.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        config.validate()?;
        let max_connections = net::connection_budget(config.max_connections)?;
        let storage = storage::Storage::from_config(&config)?;
        tracing::info!(storage = %storage.describe(), "storage");
        let data = tenancy::open_data_dir(&config, &storage).await?;
        let lock = tenancy::lock_data_dir(&config.data_dir)?;
        let cleared = data.blobs.clear_staging()?;
        let orphans = tenancy::sweep_orphans(
            &*data.store,
            &data.blobs,
            tenancy::orphan_min_age(&data.blobs),
        )
        .await?;
        if cleared + orphans > 0 {
            tracing::info!(cleared, orphans, "recovered data dir");
        }
        let processing = processing::Processing::open(&config.data_dir, &storage)?;
        // The lake's directories exist now: private like the rest.
        tenancy::ensure_private(&config.data_dir)?;
        processing::recover(
            &*data.store,
            processing.lake(),
            config.metadata_url.is_some(),
            &config.node_id(),
        )
        .await?;
        let reports = bdia_report::ReportEngine::with_memory_limit(
            processing.lake().clone(),
            config.reports.memory_limit_bytes.min(usize::MAX as u64) as usize,
        )
        .context("report engine")?;
        if config.metadata_url.is_some() && config.storage_url.is_none() {
            tracing::warn!(
                "the metadata is shared but the storage is this node's disk: run one node only, \
                 or give every node the same --storage-url s3://..."
            );
        }
        let first_start = tenancy::ensure_default_tenant(&*data.store, &config.data_dir).await?;
        let listening = net::Listening::bind(&config, max_connections).await?;
        let addr = listening.listener.local_addr()?;
        let auth_failures = Arc::new(auth_throttle::FailureThrottle::new(&config.auth));
        let share = limiter::NodeShare::default();
        let single_hits = single_hit::SingleHits::open(
            &config.data_dir,
            &config.single_hits,
            &config.limits,
            share.clone(),
        )
        .context("single-hit journal")?;
        let single_hits = Some(single_hits);
        let state = AppState {
            tokens: auth::TokenIssuer::new(&data.server_key, config.auth.token_ttl_secs)?,
            limiter: Arc::new(
                limiter::CompanyLimiter::new(config.rate_limit.clone()).with_share(share.clone()),
            ),
            validate_limiter: Arc::new(
                limiter::CompanyLimiter::new(config.rate_limit.clone()).with_share(share.clone()),
            ),
            report_limiter: Arc::new(
                limiter::CompanyLimiter::new(config::RateLimitConfig {
                    enabled: true,
                    per_second: config.reports.per_second,
                    burst: config.reports.burst,
                })
                .with_share(share.clone()),
            ),
            nodes: share,
            passes: Arc::new(admission::Slots::new(
                "upload or validate passes",
                config.limits.max_concurrent_passes as usize,
                config.limits.max_concurrent_passes_per_company as usize,
            )),
            report_slots: Arc::new(admission::Slots::new(
                "reports",
                config.reports.max_concurrent as usize,
                config.reports.max_concurrent_per_company as usize,
            )),
            config: Arc::new(config),
            store: data.store,
            blobs: data.blobs,
            metrics: metrics_handle(),
            auth_failures,
            tasks: TaskTracker::new(),
            processing,
            reports,
            lake_locks: Arc::new(lake_ops::CompanyLocks::default()),
            single_hits,
        };
        Ok(Server {
            state,
            _lock: lock,
            listening,
            addr,
            first_start,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// True when serving HTTPS.
    pub fn is_tls(&self) -> bool {
        self.listening.tls.is_some()
    }

    /// The state the router runs over.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Credentials made by this start when the data dir was empty.
    pub fn first_start_credentials(&self) -> Option<&Credentials> {
        self.first_start.as_ref()
    }

    /// Serves until `shutdown` resolves, then lets in-flight uploads finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = router(self.state.clone());
        self.run_with(app, shutdown).await
    }

    /// Like [`Server::run`] with a router built (or extended) by the caller.
    pub async fn run_with(
        self,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let _metrics_listener = metrics_listener::spawn(&self.state).await?;
        let tasks = self.state.tasks.clone();
        let grace = Duration::from_secs(self.state.config.shutdown_grace_secs);
        let stop_processing = tokio_util::sync::CancellationToken::new();
        let scheduler = self.state.config.processing.enabled.then(|| {
            let shared = Arc::new(processing::Shared {
                store: self.state.store.clone(),
                blobs: self.state.blobs.clone(),
                lake: self.state.processing.lake().clone(),
                limits: self.state.config.limits.clone(),
                keep_staged_files: self.state.config.processing.keep_staged_files,
                node_id: self.state.config.node_id(),
                paused_until: std::sync::Mutex::new(None),
                throttles: processing::throttle::Throttles::new(
                    self.state.config.processing.workers,
                    self.state.processing.waker(),
                    self.state.nodes.clone(),
                ),
            });
            tokio::spawn(processing::run_scheduler(
                self.state.processing.clone(),
                shared,
                self.state.config.processing.clone(),
                stop_processing.clone(),
            ))
        });
        let heartbeat = tokio::spawn(node_heartbeat(
            self.state.store.clone(),
            self.state.config.node_id(),
            Duration::from_millis(self.state.config.processing.lease_ms / 3),
            self.state.nodes.clone(),
            stop_processing.clone(),
        ));
        let maintenance = tokio::spawn(lake_maintenance::run(
            self.state.processing.lake().clone(),
            self.state.lake_locks.clone(),
            self.state.config.lake.clone(),
            stop_processing.clone(),
        ));
        let webhooks = self.state.config.webhooks.enabled.then(|| {
            tokio::spawn(webhooks::run(
                self.state.store.clone(),
                self.state.config.webhooks.clone(),
                stop_processing.clone(),
            ))
        });
        let roller = self.state.single_hits.clone().map(|single| {
            tokio::spawn(single_hit::run_roller(
                self.state.clone(),
                single,
                stop_processing.clone(),
            ))
        });
        tracing::info!(addr = %self.addr, tls = self.is_tls(), "serving");
        self.listening
            .serve(app, shutdown)
            .await
            .context("serving")?;
        stop_processing.cancel();
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!("in-flight uploads did not finish within the grace period");
        }
        if let Some(s) = scheduler {
            if tokio::time::timeout(grace, s).await.is_err() {
                tracing::warn!("in-flight files did not stop within the grace period");
            }
        }
        if let Some(r) = roller {
            if tokio::time::timeout(grace, r).await.is_err() {
                tracing::warn!("single hits were not all gathered into files within the grace period; the next start does it");
            }
        }
        let _ = heartbeat.await;
        if tokio::time::timeout(grace, maintenance).await.is_err() {
            tracing::warn!("lake maintenance did not stop within the grace period");
        }
        if let Some(w) = webhooks {
            if tokio::time::timeout(grace, w).await.is_err() {
                tracing::warn!("webhook deliveries did not stop within the grace period");
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Binds and serves `config` until `shutdown` resolves.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Server::bind(config).await?.run(shutdown).await
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

/// Records this node's heartbeat in the metadata store every `every`
/// (alive for three beats) and keeps `share` at the live node count,
/// until `cancel`.
async fn node_heartbeat(
    store: Arc<dyn MetadataStore>,
    node_id: String,
    every: Duration,
    share: limiter::NodeShare,
    cancel: tokio_util::sync::CancellationToken,
) {
    let ttl = (every * 3).as_millis().min(u128::from(u64::MAX)) as u64;
    loop {
        match store.node_heartbeat(&node_id, ttl).await {
            Ok(n) => {
                if n != share.nodes() {
                    tracing::info!(
                        nodes = n,
                        "live nodes changed; rate limits are split among them"
                    );
                }
                share.set_nodes(n);
                ::metrics::gauge!(crate::metrics::NODES_LIVE.name).set(f64::from(n));
            }
            Err(e) => tracing::warn!(error = %e, "node heartbeat failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
