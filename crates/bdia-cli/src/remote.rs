//! Commands that talk to a running server: `upload`, `status`, `files`, and
//! `validate --url`.
//!
//! Credentials come from flags, then `BDIA_*` environment variables, then a
//! profile in the client config file (`~/.config/bdia/client.toml`):
//!
//! ```toml
//! [profiles.default]
//! url = "http://127.0.0.1:8080"
//! client_id = "..."
//! client_secret = "..."
//! ca_cert = "/etc/bdia/ca.pem"   # optional: trust this authority for https://
//! ```
//!
//! and, last, `./bdia-data/credentials.json` as written by `bdia serve` on
//! its first start (so the first upload on a fresh machine needs no flags).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use bdia_client::api::{Client, Credentials, FileRecord, FileStatus};
use bdia_client::upload::{self, Event, Plan, UploadOptions};
use bdia_wire::time::rfc3339_utc;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Deserialize;

/// Who is calling (the server's URL is each command's own `--url`).
#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// API client id.
    #[arg(long, env = "BDIA_CLIENT_ID")]
    client_id: Option<String>,
    /// API client secret.
    #[arg(long, env = "BDIA_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Profile of the client config file to use.
    #[arg(long, env = "BDIA_PROFILE", default_value = "default")]
    profile: String,
    /// Client config file (default: ~/.config/bdia/client.toml).
    #[arg(long, env = "BDIA_CLIENT_CONFIG")]
    client_config: Option<PathBuf>,
    /// Seconds before a single request gives up.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// PEM certificate(s) of an authority to trust for https:// URLs, in
    /// addition to the system's (a private CA or a self-signed server).
    #[arg(long, env = "BDIA_CA_CERT", value_name = "PEM")]
    ca_cert: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClientConfig {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Profile {
    url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    ca_cert: Option<PathBuf>,
}

#[derive(Deserialize)]
struct ServerCredentials {
    client_id: String,
    client_secret: String,
}

impl ServerArgs {
    /// The credentials, and the CA certificate to trust (flag, else profile).
    fn credentials(&self, url: Option<&str>) -> anyhow::Result<(Credentials, Option<PathBuf>)> {
        let config_path = self.client_config.clone().or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/bdia/client.toml"))
        });
        let mut profile = Profile::default();
        if let Some(p) = config_path.filter(|p| p.exists()) {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let cfg: ClientConfig =
                toml::from_str(&text).with_context(|| format!("cannot parse {}", p.display()))?;
            if let Some(found) = cfg.profiles.get(&self.profile) {
                profile = found.clone();
            } else if self.profile != "default" {
                bail!("no profile '{}' in {}", self.profile, p.display());
            }
        }
        let mut client_id = self.client_id.clone().or(profile.client_id);
        let mut client_secret = self.client_secret.clone().or(profile.client_secret);
        if client_id.is_none() && client_secret.is_none() {
            let local = Path::new("bdia-data/credentials.json");
            if let Ok(text) = std::fs::read(local) {
                let c: ServerCredentials = serde_json::from_slice(&text)
                    .with_context(|| format!("cannot parse {}", local.display()))?;
                client_id = Some(c.client_id);
                client_secret = Some(c.client_secret);
            }
        }
        let ca_cert = self.ca_cert.clone().or(profile.ca_cert);
        let creds = Credentials {
            url: url
                .map(str::to_string)
                .or(profile.url)
                .unwrap_or_else(|| "http://127.0.0.1:8080".into()),
            client_id: client_id
                .context("no client id: pass --client-id, set BDIA_CLIENT_ID, or add a profile")?,
            client_secret: client_secret.context(
                "no client secret: pass --client-secret, set BDIA_CLIENT_SECRET, or add a profile",
            )?,
        };
        Ok((creds, ca_cert))
    }

    /// A client for the server at `url` (else the profile's, else the default).
    pub fn client(&self, url: Option<&str>) -> anyhow::Result<Client> {
        let (creds, ca_cert) = self.credentials(url)?;
        Ok(Client::with_ca_cert(
            creds,
            Duration::from_secs(self.timeout),
            ca_cert.as_deref(),
        )?)
    }
}

/// The server's URL (flag or `BDIA_URL`) and the caller's credentials.
#[derive(clap::Args, Clone)]
pub struct RemoteArgs {
    /// Base URL of the server.
    #[arg(long, env = "BDIA_URL")]
    url: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

impl RemoteArgs {
    /// A client for the server and credentials these arguments name.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        self.server.client(self.url.as_deref())
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Arguments of `bdia upload`.
#[derive(clap::Args)]
pub struct UploadArgs {
    /// A directory made by `bdia prepare`, or gzip batch files (then --vgid).
    #[arg(required = true)]
    targets: Vec<PathBuf>,
    /// Visitor group of loose files (not needed for a prepared directory).
    #[arg(long)]
    vgid: Option<String>,
    /// Visitor groups uploaded at the same time.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Attempts per file before its group is given up.
    #[arg(long, default_value_t = 12)]
    max_attempts: u32,
    /// After uploading, follow the files until they are COMPLETE.
    #[arg(long)]
    wait: bool,
    /// Print one JSON object per event instead of progress bars.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Runs `bdia upload`.
pub fn upload(args: UploadArgs) -> anyhow::Result<ExitCode> {
    let plan = match (args.targets.as_slice(), &args.vgid) {
        ([dir], None) if dir.is_dir() => Plan::from_dir(dir).map_err(anyhow::Error::msg)?,
        (_, Some(vgid)) => {
            if let Some(d) = args.targets.iter().find(|t| t.is_dir()) {
                bail!(
                    "{} is a directory: pass either one prepared directory or files with --vgid",
                    d.display()
                );
            }
            Plan::from_files(vgid, &args.targets).map_err(anyhow::Error::msg)?
        }
        _ => bail!("pass one directory made by `bdia prepare`, or batch files with --vgid GROUP"),
    };
    let client = Arc::new(args.remote.client()?);
    let plan = Arc::new(plan);
    let opts = UploadOptions {
        parallel: args.parallel,
        max_attempts: args.max_attempts.max(1),
        wait: args.wait,
        ..UploadOptions::default()
    };
    let bars = (!args.json && std::io::stderr().is_terminal())
        .then(|| Arc::new(Bars::new(&plan.manifest())));
    let display: Arc<dyn Fn(Event) + Send + Sync> = match (&bars, args.json) {
        (_, true) => Arc::new(json_events),
        (Some(b), false) => {
            let b = b.clone();
            Arc::new(move |e| b.handle(e))
        }
        (None, false) => Arc::new(log_events),
    };
    let rt = runtime()?;
    let summary = rt.block_on(upload::run(client, plan.clone(), opts, display));
    if let Some(b) = bars {
        b.finish();
    }
    for g in &summary.groups {
        let line = format!(
            "{}: {} uploaded, {} already done{}",
            g.group,
            g.uploaded,
            g.skipped,
            g.stopped
                .as_ref()
                .map(|s| format!(", STOPPED: {s}"))
                .unwrap_or_default()
        );
        if args.json {
            println!(
                "{}",
                serde_json::json!({"event": "group_done", "group": g.group, "uploaded": g.uploaded, "skipped": g.skipped, "stopped": g.stopped})
            );
        } else {
            eprintln!("{line}");
        }
    }
    Ok(if summary.all_done() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn json_events(e: Event) {
    let v = match e {
        Event::GroupStarted {
            group,
            files,
            rows,
            bytes,
        } => {
            serde_json::json!({"event": "group_started", "group": group, "files": files, "rows": rows, "bytes": bytes})
        }
        Event::AlreadyDone { group, path } => {
            serde_json::json!({"event": "already_done", "group": group, "path": path})
        }
        Event::Uploaded {
            group,
            path,
            record,
        } => {
            serde_json::json!({"event": "uploaded", "group": group, "path": path, "record": record})
        }
        Event::Retrying {
            group,
            path,
            error,
            delay,
        } => {
            serde_json::json!({"event": "retrying", "group": group, "path": path, "error": error, "delay_ms": delay.as_millis() as u64})
        }
        Event::GroupStopped { group, reason } => {
            serde_json::json!({"event": "group_stopped", "group": group, "reason": reason})
        }
        Event::Finished {
            group,
            path,
            record,
        } => {
            serde_json::json!({"event": "finished", "group": group, "path": path, "record": record})
        }
    };
    println!("{v}");
}

fn log_events(e: Event) {
    match e {
        Event::GroupStarted {
            group,
            files,
            rows,
            bytes,
        } => {
            eprintln!("{group}: {files} files to send ({rows} rows, {bytes} bytes)")
        }
        Event::AlreadyDone { group, path } => eprintln!("{group}: {path} already uploaded"),
        Event::Uploaded {
            group,
            path,
            record,
        } => eprintln!(
            "{group}: {path} -> {} {} ({} rows, {} invalid)",
            record.file_id, record.status_code, record.rows, record.invalid_rows
        ),
        Event::Retrying {
            group,
            path,
            error,
            delay,
        } => {
            eprintln!(
                "{group}: {path}: {error}; retrying in {:.1}s",
                delay.as_secs_f64()
            )
        }
        Event::GroupStopped { group, reason } => eprintln!("{group}: stopped: {reason}"),
        Event::Finished {
            group,
            path,
            record,
        } => {
            eprintln!("{group}: {path} {} {}", record.file_id, record.status_code)
        }
    }
}

/// Progress bars: one per group (files) and one overall (bytes).
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    groups: Mutex<BTreeMap<String, ProgressBar>>,
    sizes: BTreeMap<String, u64>,
    files_done: std::sync::atomic::AtomicU64,
    rows_done: std::sync::atomic::AtomicU64,
}

impl Bars {
    fn new(m: &bdia_client::prepare::Manifest) -> Bars {
        let multi = MultiProgress::new();
        let total: u64 = m
            .groups
            .iter()
            .flat_map(|g| g.files.iter())
            .filter(|f| f.upload.is_none())
            .map(|f| f.bytes)
            .sum();
        let overall = multi.add(ProgressBar::new(total));
        overall.set_style(
            ProgressStyle::with_template(
                "overall [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        let sizes = m
            .groups
            .iter()
            .flat_map(|g| g.files.iter())
            .map(|f| (f.path.clone(), f.bytes))
            .collect();
        Bars {
            multi,
            overall,
            groups: Mutex::new(BTreeMap::new()),
            sizes,
            files_done: Default::default(),
            rows_done: Default::default(),
        }
    }
}

impl Bars {
    fn group_bar(&self, group: &str, files: usize) -> ProgressBar {
        let mut groups = self.groups.lock().expect("bars lock");
        groups
            .entry(group.to_string())
            .or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new(files as u64));
                b.set_style(
                    ProgressStyle::with_template("{prefix:>12} [{bar:20}] {pos}/{len} files {msg}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                b.set_prefix(group.to_string());
                b
            })
            .clone()
    }

    fn handle(&self, e: Event) {
        match e {
            Event::GroupStarted { group, files, .. } => {
                self.group_bar(&group, files);
            }
            Event::AlreadyDone { .. } => {}
            Event::Uploaded {
                group,
                path,
                record,
            } => {
                let b = self.group_bar(&group, 0);
                b.inc(1);
                b.set_message(format!("{} {}", record.file_id, record.status_code));
                self.overall
                    .inc(self.sizes.get(&path).copied().unwrap_or(0));
                use std::sync::atomic::Ordering::Relaxed;
                let files = self.files_done.fetch_add(1, Relaxed) + 1;
                let rows = self.rows_done.fetch_add(record.rows, Relaxed) + record.rows;
                self.overall
                    .set_message(format!("{files} files, {rows} rows"));
            }
            Event::Retrying {
                group,
                error,
                delay,
                ..
            } => {
                self.group_bar(&group, 0)
                    .set_message(format!("retry in {:.1}s: {error}", delay.as_secs_f64()));
            }
            Event::GroupStopped { group, reason } => {
                self.group_bar(&group, 0)
                    .abandon_with_message(format!("STOPPED: {reason}"));
            }
            Event::Finished { group, record, .. } => {
                self.group_bar(&group, 0)
                    .set_message(format!("{} {}", record.file_id, record.status_code));
            }
        }
    }

    fn finish(&self) {
        for b in self.groups.lock().expect("bars lock").values() {
            if !b.is_finished() {
                b.finish();
            }
        }
        self.overall.finish();
    }
}

/// Arguments of `bdia status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// The file id to show.
    #[arg(required_unless_present_any = ["key", "vgid"])]
    file_id: Option<String>,
    /// Look the file up by idempotency key instead.
    #[arg(long, conflicts_with = "file_id")]
    key: Option<String>,
    /// Show every file of a visitor group instead.
    #[arg(long, conflicts_with_all = ["file_id", "key"])]
    vgid: Option<String>,
    /// Print the file's reject report (CSV) instead of its record.
    #[arg(long)]
    rejects: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

fn print_record(r: &FileRecord) {
    println!("{}  {}", r.file_id, r.status_code);
    println!("  visitor group: {}", r.visitor_group_id);
    println!("  upload name:   {}", r.upload_name);
    println!("  size:          {} bytes", r.size);
    println!("  rows:          {} ({} invalid)", r.rows, r.invalid_rows);
    println!("  received:      {}", rfc3339_utc(r.received_date));
    for (name, v) in [
        ("processing start", r.processing_start_date),
        ("reader complete", r.file_reader_complete_date),
        ("processing end", r.processing_end_date),
    ] {
        if let Some(v) = v {
            println!("  {name}: {}", rfc3339_utc(v));
        }
    }
    println!("  idempotency key: {}", r.idempotency_key);
    if let Some(q) = &r.queue {
        println!(
            "  queue: {}, {} files ({} rows) ahead",
            q.queue_state.as_str(),
            q.files_ahead,
            q.rows_ahead
        );
        if let (Some(start), Some(finish)) = (&q.estimated_start, &q.estimated_finish) {
            println!("  estimated start: {start}, finish: {finish}");
        }
    }
    if let Some(e) = &r.error {
        println!("  error: {e}");
    }
    println!("  processing log:");
    for line in r.processing_log.lines() {
        println!("    {line}");
    }
}

/// Runs `bdia status`.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = args.remote.client()?;
    let rt = runtime()?;
    rt.block_on(async {
        if let Some(vgid) = &args.vgid {
            return list_all(&client, Some(vgid), None, None, args.json).await;
        }
        let record = match (&args.file_id, &args.key) {
            (Some(id), _) => client.by_id(id).await?,
            (None, Some(k)) => client.by_key(k).await?,
            _ => unreachable!("clap requires one"),
        };
        let Some(record) = record else {
            eprintln!("bdia: File not found");
            return Ok(ExitCode::from(1));
        };
        if args.rejects {
            print!("{}", client.rejects(&record.file_id).await?);
        } else if args.json {
            println!("{}", serde_json::to_string(&record)?);
        } else {
            print_record(&record);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Arguments of `bdia group`.
#[derive(clap::Args)]
pub struct GroupArgs {
    /// pause, resume, cancel or show.
    #[arg(value_parser = ["pause", "resume", "cancel", "show"])]
    action: String,
    /// The visitor group id.
    vgid: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Prints a group view for a person.
fn print_group(g: &bdia_client::api::GroupView) {
    println!("{}  {}", g.visitor_group_id, g.state);
    println!(
        "  waiting: {} files, {} rows",
        g.files_waiting, g.rows_waiting
    );
    if let Some(f) = &g.in_progress {
        println!("  in progress: {} ({} rows)", f.file_id, f.rows);
    }
    if let Some(e) = &g.last_error {
        println!(
            "  last error: {}: {}",
            e.file_id,
            e.error.as_deref().unwrap_or("")
        );
    }
    if !g.actions.is_empty() {
        println!("  actions:");
    }
    for a in &g.actions {
        println!(
            "    {}  {:<6} by {} ({} files)",
            rfc3339_utc(a.at),
            a.action,
            a.actor,
            a.files
        );
    }
}

/// Runs `bdia group`.
pub fn group(args: GroupArgs) -> anyhow::Result<ExitCode> {
    let client = args.remote.client()?;
    runtime()?.block_on(async {
        let view = match args.action.parse::<bdia_client::api::GroupAction>() {
            Ok(action) => client.group_action(&args.vgid, action).await?,
            Err(_) => client.group(&args.vgid).await?,
        };
        let Some(view) = view else {
            eprintln!("bdia: Visitor group '{}' not found", args.vgid);
            return Ok(ExitCode::from(1));
        };
        if args.json {
            println!("{}", serde_json::to_string(&view)?);
        } else {
            print_group(&view);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Arguments of `bdia files`.
#[derive(clap::Args)]
pub struct FilesArgs {
    /// Only this visitor group.
    #[arg(long)]
    vgid: Option<String>,
    /// Only this status (UPLOADED, REJECTED, PROCESSING, COMPLETE, ERROR,
    /// CANCELLED).
    #[arg(long)]
    status: Option<String>,
    /// At most this many files (default: all).
    #[arg(long)]
    limit: Option<usize>,
    /// Print JSON Lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Runs `bdia files`.
pub fn files(args: FilesArgs) -> anyhow::Result<ExitCode> {
    let client = args.remote.client()?;
    runtime()?.block_on(list_all(
        &client,
        args.vgid.as_deref(),
        args.status.as_deref(),
        args.limit,
        args.json,
    ))
}

async fn list_all(
    client: &Client,
    vgid: Option<&str>,
    status: Option<&str>,
    limit: Option<usize>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut cursor: Option<String> = None;
    let mut shown = 0usize;
    if !json {
        println!(
            "{:<38} {:<16} {:<10} {:>9} {:>8}  received",
            "file_id", "visitor group", "status", "rows", "invalid"
        );
    }
    loop {
        let page = client
            .list(vgid, status, Some(100), cursor.as_deref())
            .await?;
        for r in &page.files {
            if limit.is_some_and(|l| shown >= l) {
                return Ok(ExitCode::SUCCESS);
            }
            if json {
                println!("{}", serde_json::to_string(r)?);
            } else {
                println!(
                    "{:<38} {:<16} {:<10} {:>9} {:>8}  {}",
                    r.file_id,
                    r.visitor_group_id,
                    r.status_code,
                    r.rows,
                    r.invalid_rows,
                    rfc3339_utc(r.received_date)
                );
            }
            shown += 1;
        }
        match page.next_cursor {
            Some(c) if !page.files.is_empty() => cursor = Some(c),
            _ => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// `bdia validate --url`: the server's validate endpoint, one answer per file.
pub fn validate_remote(
    url: &str,
    server: &ServerArgs,
    files: &[String],
    json: bool,
    preview: bool,
) -> anyhow::Result<ExitCode> {
    let client = server.client(Some(url))?;
    let rt = runtime()?;
    let mut all_valid = true;
    for name in files {
        let bytes = if name == "-" {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
            b
        } else {
            std::fs::read(name).with_context(|| format!("cannot open {name}"))?
        };
        let upload_name = Path::new(name)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let v =
            rt.block_on(client.validate_with(&upload_name, bytes::Bytes::from(bytes), preview))?;
        let fully_valid = v.is_valid();
        all_valid &= fully_valid;
        if json {
            // The local check's fields; the server does not list every
            // invalid row, so `errors` is absent.
            let mut obj = serde_json::json!({
                "upload_name": name,
                "size": v.size,
                "rows": v.rows,
                "invalid_rows": v.invalid_rows,
                "status_code": v.status_code,
                "processing_log": v.processing_log,
            });
            if let Some(e) = &v.error {
                obj["error"] = e.clone().into();
            }
            if let Some(p) = &v.preview {
                obj["preview"] = serde_json::to_value(p)?;
            }
            println!("{obj}");
        } else {
            println!("{name}");
            println!("  size: {} bytes compressed (checked by {url})", v.size);
            println!(
                "  rows: {}, invalid rows: {}, rows to submit: {}",
                v.rows,
                v.invalid_rows,
                v.rows.saturating_sub(v.invalid_rows)
            );
            println!("  processing log:");
            for line in v.processing_log.lines() {
                println!("    {line}");
            }
            let verdict = match (&v.error, v.status_code) {
                (None, _) => "VALID: every row will be submitted".to_string(),
                (Some(reason), FileStatus::Rejected) => format!("REJECTED: {reason}"),
                (Some(_), _) => format!(
                    "UPLOADABLE WITH INVALID ROWS: {} rows will be skipped",
                    v.invalid_rows
                ),
            };
            println!("  verdict: {verdict}");
            if let Some(p) = &v.preview {
                print_preview(p);
            }
        }
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The impact preview, for a person.
fn print_preview(p: &bdia_wire::Preview) {
    println!("  preview (nothing stored):");
    if let (Some(first), Some(last)) = (&p.first_hit_time, &p.last_hit_time) {
        println!("    hits from {first} to {last}");
    }
    for d in &p.rows_by_suite_day {
        println!("    {} {}: {} rows", d.report_suite, d.date, d.rows);
    }
    println!(
        "    visitors: {} ({} new), rows out of order for their visitor: {}",
        p.visitors, p.new_visitors, p.out_of_order_rows
    );
    if let Some(id) = &p.duplicate_of {
        println!("    already uploaded as file {id}: sending it again would count its rows twice");
    }
    match p.estimated_processing_secs {
        Some(s) => println!(
            "    processed in about {s:.0} s ({} rows queued before it; {})",
            p.rows_queued, p.estimate_basis
        ),
        None => println!("    {}", p.estimate_basis),
    }
}
