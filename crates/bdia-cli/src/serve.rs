//! `bdia serve`: run the ingestion server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bdia_server::{tenancy, Config, Server};

/// Arguments of `bdia serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data directory (database, staged files, keys) [default: ./bdia-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where staged files and the hit lake live: a local directory or
    /// s3://bucket/prefix (AWS_* variables for credentials, region,
    /// endpoint) [default: the data directory].
    #[arg(long, value_name = "URL")]
    pub storage_url: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// TOML configuration file (BDIA_* environment variables override it,
    /// flags override both).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Shared metadata for several nodes: a postgres:// URL [default: the
    /// embedded SQLite database in the data dir].
    #[arg(long, value_name = "URL")]
    pub metadata_url: Option<String>,
    /// This node's id among nodes sharing the metadata [default: the host
    /// name].
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
}

/// Loads the configuration: defaults, file, environment, flags.
pub fn load_config(
    config: Option<&PathBuf>,
    data_dir: Option<PathBuf>,
    storage_url: Option<String>,
    listen: Option<SocketAddr>,
) -> anyhow::Result<Config> {
    let mut c = match config {
        Some(p) => Config::from_toml_file(p)?,
        None => Config::default(),
    };
    c.apply_env()?;
    if let Some(d) = data_dir {
        c.data_dir = d;
    }
    if let Some(u) = storage_url {
        c.storage_url = Some(u);
    }
    if let Some(l) = listen {
        c.listen = l;
    }
    c.validate()?;
    Ok(c)
}

/// Runs the server until SIGTERM or ctrl-c.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = load_config(
        args.config.as_ref(),
        args.data_dir,
        args.storage_url,
        args.listen,
    )?;
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
    }
    if let Some(url) = args.metadata_url {
        config.metadata_url = Some(url);
    }
    if let Some(id) = args.node_id {
        config.node_id = Some(id);
    }
    config.validate()?;
    let _ = tracing_subscriber::fmt()
        .with_timer(NodeTimer(config.node_id()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let data_dir = config.data_dir.clone();
        let server = Server::bind(config).await?;
        let scheme = if server.is_tls() { "https" } else { "http" };
        let base = format!("{scheme}://{}", server.local_addr());
        if let Some(creds) = server.first_start_credentials() {
            // The secret stays in the file: this output ends up in logs.
            let file = data_dir.join("credentials.json");
            let file = std::fs::canonicalize(&file).unwrap_or(file);
            println!(
                "First start: created company '{}' and API client '{}'.\n\
                 Its id and secret are in {} (mode 0600).\n\nTry it:\n\n{}\n",
                creds.company,
                creds.client_id,
                file.display(),
                tenancy::curl_example(&base, &creds.client_id, &file)
            );
        }
        println!("bdia listening on {base} (data dir {})", data_dir.display());
        println!("Web console: {base}/console/ (sign in with an API client's id and secret)");
        server.run(bdia_server::shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Log timestamps followed by the node's id, so every line of every node
/// says which node wrote it.
struct NodeTimer(String);

impl tracing_subscriber::fmt::time::FormatTime for NodeTimer {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        tracing_subscriber::fmt::time::SystemTime.format_time(w)?;
        write!(w, " node={}", self.0)
    }
}
