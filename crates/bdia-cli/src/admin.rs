//! `bdia admin`: manage companies, report suites and API clients on a data
//! dir (also while the server runs on it), print access tokens, and work
//! on the lake: retract a file's hits, privacy deletions and their audit
//! trail, compaction and vacuum.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use bdia_format::ReportSuiteId;
use bdia_server::auth::TokenIssuer;
use bdia_server::lake_ops::{self, Lake, PrivacyRequest};
use bdia_server::storage::Storage;
use bdia_server::{lake_maintenance, tenancy};
use bdia_store::{CompanySettings, MetadataStore, PageQuery, RateLimitSetting};
use bdia_wire::PrivacyDeletionRequest;
use clap::Subcommand;
use serde_json::json;

/// Arguments of `bdia admin`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data directory [default: ./bdia-data, or BDIA_DATA_DIR, or the
    /// config file's].
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Where staged files and the hit lake live: a local directory or
    /// s3://bucket/prefix [default: the data directory, or
    /// BDIA_STORAGE_URL, or the config file's storage_url].
    #[arg(long, value_name = "URL", global = true)]
    pub storage_url: Option<String>,
    /// TOML configuration file (for its data_dir and token settings).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Shared metadata: a postgres:// URL (the servers' --metadata-url)
    /// [default: the data dir's embedded database, or BDIA_METADATA_URL].
    #[arg(long, value_name = "URL", global = true)]
    pub metadata_url: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Companies (tenants).
    #[command(subcommand)]
    Company(CompanyCommand),
    /// Report suites.
    #[command(subcommand, name = "report-suite")]
    ReportSuite(SuiteCommand),
    /// API clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Restart a visitor group stopped by a failed (ERROR) file: the file
    /// is processed again, then the group's later files (a running server
    /// notices within its poll interval).
    Retry {
        /// The company.
        #[arg(long)]
        company: String,
        /// The visitor group id.
        #[arg(long)]
        vgid: String,
    },
    /// Pause, resume or cancel a visitor group, or show it (the actions
    /// are recorded as made by `admin`; a running server notices within
    /// its poll interval).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Retract a COMPLETE file's hits: every hit of the file leaves the
    /// lake in one commit and its record says when and how many (again: no
    /// change). Visitor state is not rewound.
    Retract {
        /// The file id.
        file_id: String,
    },
    /// Remove every hit and the visitor state of every visitor an
    /// identifier names or appears with, in one company, and record the
    /// request in the audit trail (as made by `admin`).
    #[command(name = "privacy-delete")]
    PrivacyDelete {
        /// The company.
        #[arg(long)]
        company: String,
        /// customer_id, visitor_id, marketing_cloud_visitor_id or ip_address.
        #[arg(long = "type", value_name = "TYPE")]
        identifier_type: String,
        /// The customerIDType (with --type customer_id only).
        #[arg(long, value_name = "TYPE")]
        customer_id_type: Option<String>,
        /// The identifier as it was sent in the hits.
        identifier: String,
    },
    /// List a company's privacy deletions (the audit trail), newest first.
    #[command(name = "privacy-deletions")]
    PrivacyDeletions {
        /// The company.
        #[arg(long)]
        company: String,
    },
    /// Compact the lake: partitions with many small files are rewritten
    /// into larger ones (the rows do not change).
    Compact {
        /// Only this company's table [default: every company's].
        #[arg(long)]
        company: Option<String>,
        /// Compact a partition holding at least this many small files
        /// [default: lake.compaction_min_files].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..))]
        min_files: Option<u64>,
    },
    /// Delete lake files no table version within the retention period
    /// references (what compaction, retraction and privacy deletion left).
    Vacuum {
        /// Only this company's table [default: every company's].
        #[arg(long)]
        company: Option<String>,
        /// Keep files unreferenced for less than this [default:
        /// lake.vacuum_retention_hours]; 0 deletes every unreferenced file
        /// now (a report reading an older snapshot at that moment fails).
        #[arg(long, value_name = "H")]
        retention_hours: Option<u64>,
    },
    /// Print an access token for a client (for scripts).
    Token {
        /// The client id.
        client_id: String,
        /// Lifetime in seconds, at most 30 days [default: the server's
        /// token_ttl_secs].
        #[arg(long, value_parser = clap::value_parser!(u64)
            .range(1..=bdia_server::config::MAX_TOKEN_TTL_SECS))]
        ttl: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// Hold the group: uploads are accepted, none starts processing (a
    /// running file finishes).
    Pause(GroupArgs),
    /// Let a paused group run again.
    Resume(GroupArgs),
    /// The group's waiting (and failed) files become CANCELLED and are
    /// never processed; the group runs again for later uploads.
    Cancel(GroupArgs),
    /// The group's state, waiting files and rows, file in progress, last
    /// error and actions.
    Show(GroupArgs),
}

#[derive(clap::Args, Debug)]
struct GroupArgs {
    /// The company.
    #[arg(long)]
    company: String,
    /// The visitor group id.
    vgid: String,
}

#[derive(clap::Args, Debug, Default)]
struct SettingsArgs {
    /// The one customerIDType whose isMCSeed counts ("" clears it).
    #[arg(long, value_name = "TYPE")]
    seed_type: Option<String>,
    /// Processing throttle in rows per second (0: off).
    #[arg(long, value_name = "N")]
    rows_per_second: Option<u64>,
    /// Upload rate limit: default, off, or PER_SECOND/BURST (e.g. 5/20).
    #[arg(long, value_name = "LIMIT")]
    rate_limit: Option<RateLimitSetting>,
    /// Create unknown report suites on first upload (true/false).
    #[arg(long, value_name = "BOOL")]
    auto_create_report_suites: Option<bool>,
}

impl SettingsArgs {
    fn apply(self, s: &mut CompanySettings) {
        if let Some(t) = self.seed_type {
            s.seed_customer_id_type = Some(t).filter(|t| !t.is_empty());
        }
        if let Some(n) = self.rows_per_second {
            s.rows_per_second = Some(n).filter(|n| *n > 0);
        }
        if let Some(r) = self.rate_limit {
            s.upload_rate_limit = r;
        }
        if let Some(a) = self.auto_create_report_suites {
            s.auto_create_report_suites = a;
        }
    }
}

#[derive(Subcommand, Debug)]
enum CompanyCommand {
    /// Create a company (its seed salt is made now).
    Create {
        /// Company id (also the `iss` of its service-account JWTs).
        id: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// List companies.
    List,
    /// Show or change a company's settings.
    Settings {
        /// Company id.
        id: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

#[derive(Subcommand, Debug)]
enum SuiteCommand {
    /// Create a report suite for a company.
    Create {
        /// Report suite id: 1 to 100 letters, digits, '.', '-' or '_',
        /// starting with a letter or digit.
        rsid: ReportSuiteId,
        /// Owner.
        #[arg(long)]
        company: String,
        /// IANA time zone.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
    },
    /// List report suites.
    List {
        /// Only this company's.
        #[arg(long)]
        company: Option<String>,
    },
    /// Show or change a report suite's settings (prints the suite).
    Settings {
        /// Report suite id.
        rsid: ReportSuiteId,
        /// Owner; may be left out when only one company has this rsid.
        #[arg(long)]
        company: Option<String>,
        /// Take hits from the single-hit Data Insertion API
        /// (`/b/ss/RSID/...`, unauthenticated). At most one company's
        /// suite of an rsid may take them.
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        accept_single_hits: Option<bool>,
        /// Internal URL filters, comma-separated (`""` clears them): a
        /// referrer whose host contains one is internal. Applies to files
        /// processed afterwards.
        #[arg(long, value_name = "LIST")]
        internal_url_filters: Option<String>,
        /// The expiration and allocation of one eVar, repeatable:
        /// `N=EXPIRATION[,ALLOCATION]` with EXPIRATION `hit`, `visit`,
        /// `never`, `day`, `week`, `month`, `quarter`, `year`, `<N>d` or
        /// `event:<name>`, ALLOCATION `most_recent` or `original`;
        /// `N=default` puts eVar N back to the defaults (`visit`,
        /// `most_recent`). Other eVars keep their settings. Applies to
        /// files processed afterwards.
        #[arg(long = "evar", value_name = "N=EXPIRATION[,ALLOCATION]")]
        evars: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ClientCommand {
    /// Create an API client; prints its secret once.
    Create {
        /// Owner.
        #[arg(long)]
        company: String,
        /// Client id [default: random].
        #[arg(long)]
        client_id: Option<String>,
        /// Technical account (`sub` of its service-account JWTs).
        #[arg(long)]
        technical_account: Option<String>,
        /// RSA public key or certificate (PEM file) for the JWT exchange.
        #[arg(long, value_name = "PEM")]
        public_key: Option<PathBuf>,
    },
    /// List API clients (secrets are never shown).
    List {
        /// Only this company's.
        #[arg(long)]
        company: Option<String>,
    },
    /// Give a client a new secret, printed once, and revoke every access
    /// token issued to it before (they get 401). When the data dir's
    /// credentials.json holds this client, the new secret is written there
    /// too.
    RotateSecret {
        /// Client id.
        client_id: String,
    },
    /// Disable a client (its calls get 403; access tokens issued before
    /// stay revoked after an enable).
    Disable {
        /// Client id.
        client_id: String,
    },
    /// Enable a disabled client.
    Enable {
        /// Client id.
        client_id: String,
    },
    /// Register (or replace) a client's public key.
    SetKey {
        /// Client id.
        client_id: String,
        /// RSA public key or certificate (PEM file).
        #[arg(long, value_name = "PEM")]
        public_key: PathBuf,
    },
}

fn print(v: serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

fn read_pem(path: &PathBuf) -> anyhow::Result<String> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes())
        .with_context(|| format!("{}: not an RSA public key or certificate", path.display()))?;
    Ok(pem)
}

fn client_json(c: &bdia_store::ApiClient) -> serde_json::Value {
    json!({
        "client_id": c.client_id,
        "company": c.company_id,
        "technical_account": c.technical_account,
        "public_key": c.public_key_pem.is_some(),
        "disabled": c.disabled,
        "created": c.created,
    })
}

/// The company tables to maintain: the one asked for (which must have a
/// table), or every one.
async fn companies(lake: &Lake, only: Option<String>) -> anyhow::Result<Vec<String>> {
    let all = lake.companies().await?;
    match only {
        None => Ok(all),
        Some(c) if all.contains(&c) => Ok(vec![c]),
        Some(c) => bail!("company '{c}' has no table in the lake"),
    }
}

/// Runs one admin command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config =
        crate::serve::load_config(args.config.as_ref(), args.data_dir, args.storage_url, None)?;
    if let Some(url) = args.metadata_url {
        config.metadata_url = Some(url);
        config.validate()?;
    }
    // Two workers: lake maintenance runs the Delta library's tasks.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let storage = Storage::from_config(&config)?;
        let data = tenancy::open_data_dir(&config, &storage).await?;
        let store: &dyn MetadataStore = &*data.store;
        match args.command {
            AdminCommand::Company(CompanyCommand::Create { id, settings }) => {
                let mut s = CompanySettings::default();
                settings.apply(&mut s);
                let c = tenancy::create_company(store, &id, s).await?;
                print(json!({ "company": c.id, "settings": c.settings }));
            }
            AdminCommand::Company(CompanyCommand::List) => {
                let list: Vec<_> = store
                    .list_companies()
                    .await?
                    .into_iter()
                    .map(|c| json!({ "company": c.id, "settings": c.settings, "created": c.created }))
                    .collect();
                print(json!(list));
            }
            AdminCommand::Company(CompanyCommand::Settings { id, settings }) => {
                let Some(c) = store.get_company(&id).await? else {
                    bail!("no company '{id}'");
                };
                let mut s = c.settings.clone();
                settings.apply(&mut s);
                let c = if s != c.settings {
                    store.update_company_settings(&id, s).await?
                } else {
                    c
                };
                print(json!({ "company": c.id, "settings": c.settings }));
            }
            AdminCommand::ReportSuite(SuiteCommand::Create {
                rsid,
                company,
                time_zone,
            }) => {
                let rs = tenancy::create_report_suite(store, &company, rsid.as_str(), &time_zone).await?;
                print(json!(rs));
            }
            AdminCommand::ReportSuite(SuiteCommand::List { company }) => {
                print(json!(store.list_report_suites(company.as_deref()).await?));
            }
            AdminCommand::ReportSuite(SuiteCommand::Settings {
                rsid,
                company,
                accept_single_hits,
                internal_url_filters,
                evars,
            }) => {
                let rsid = rsid.as_str();
                let mut owners: Vec<_> = store
                    .list_report_suites(company.as_deref())
                    .await?
                    .into_iter()
                    .filter(|s| s.rsid == rsid)
                    .collect();
                let suite = match (owners.len(), &company) {
                    (1, _) => owners.remove(0),
                    (0, Some(c)) => bail!("company '{c}' has no report suite '{rsid}'"),
                    (0, None) => bail!("no company has a report suite '{rsid}'"),
                    _ => bail!(
                        "several companies have a report suite '{rsid}' ({}): name one with --company",
                        owners.iter().map(|s| s.company_id.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                };
                let suite = match accept_single_hits {
                    Some(on) if on != suite.accept_single_hits => {
                        store
                            .set_accept_single_hits(&suite.company_id, rsid, on)
                            .await?
                    }
                    _ => suite,
                };
                let suite = match internal_url_filters {
                    Some(list) => {
                        let filters: Vec<String> = list
                            .split(',')
                            .map(str::trim)
                            .filter(|f| !f.is_empty())
                            .map(str::to_string)
                            .collect();
                        bdia_server::reports::check_internal_url_filters(&filters)
                            .map_err(anyhow::Error::msg)?;
                        store
                            .set_internal_url_filters(&suite.company_id, rsid, &filters)
                            .await?
                    }
                    None => suite,
                };
                let suite = if evars.is_empty() {
                    suite
                } else {
                    let settings = merge_evar_settings(&suite.evar_settings, &evars)?;
                    store
                        .set_evar_settings(&suite.company_id, rsid, &settings)
                        .await?
                };
                print(json!(suite));
            }
            AdminCommand::Client(ClientCommand::Create {
                company,
                client_id,
                technical_account,
                public_key,
            }) => {
                let pem = public_key.as_ref().map(read_pem).transpose()?;
                let (c, secret) = tenancy::create_client(
                    store,
                    &company,
                    client_id.as_deref(),
                    technical_account.as_deref(),
                    pem,
                )
                .await?;
                let mut v = client_json(&c);
                v["client_secret"] = json!(secret);
                print(v);
            }
            AdminCommand::Client(ClientCommand::List { company }) => {
                let list: Vec<_> = store
                    .list_clients(company.as_deref())
                    .await?
                    .iter()
                    .map(client_json)
                    .collect();
                print(json!(list));
            }
            AdminCommand::Client(ClientCommand::RotateSecret { client_id }) => {
                let (c, secret) = tenancy::rotate_client_secret(store, &client_id).await?;
                let file = tenancy::update_credentials_file(&config.data_dir, &client_id, &secret)?;
                let mut v = client_json(&c);
                v["client_secret"] = json!(secret);
                v["tokens_revoked"] = json!(true);
                if let Some(path) = file {
                    v["credentials_file"] = json!(path.display().to_string());
                }
                print(v);
            }
            AdminCommand::Client(ClientCommand::Disable { client_id }) => {
                store.set_client_disabled(&client_id, true).await?;
                print(json!({ "client_id": client_id, "disabled": true }));
            }
            AdminCommand::Client(ClientCommand::Enable { client_id }) => {
                store.set_client_disabled(&client_id, false).await?;
                print(json!({ "client_id": client_id, "disabled": false }));
            }
            AdminCommand::Client(ClientCommand::SetKey {
                client_id,
                public_key,
            }) => {
                let pem = read_pem(&public_key)?;
                store.set_client_public_key(&client_id, Some(&pem)).await?;
                print(json!({ "client_id": client_id, "public_key": true }));
            }
            AdminCommand::Retry { company, vgid } => {
                if store.get_company(&company).await?.is_none() {
                    bail!("no company '{company}'");
                }
                let retried = store
                    .retry_group(&bdia_store::GroupRef {
                        company_id: company.clone(),
                        visitor_group_id: vgid.clone(),
                    })
                    .await?;
                print(json!({ "company": company, "visitor_group_id": vgid, "retried": retried }));
            }
            AdminCommand::Group(cmd) => {
                let (action, args) = match cmd {
                    GroupCommand::Pause(a) => (Some(bdia_store::GroupAction::Pause), a),
                    GroupCommand::Resume(a) => (Some(bdia_store::GroupAction::Resume), a),
                    GroupCommand::Cancel(a) => (Some(bdia_store::GroupAction::Cancel), a),
                    GroupCommand::Show(a) => (None, a),
                };
                if store.get_company(&args.company).await?.is_none() {
                    bail!("no company '{}'", args.company);
                }
                let group = bdia_store::GroupRef {
                    company_id: args.company.clone(),
                    visitor_group_id: args.vgid.clone(),
                };
                if let Some(action) = action {
                    match store
                        .control_group(&group, action, "admin", bdia_server::auth::now())
                        .await
                    {
                        Err(bdia_store::StoreError::NotFound(_)) => {
                            bail!("company '{}' has no visitor group '{}'", args.company, args.vgid)
                        }
                        r => r?,
                    };
                }
                let Some(info) = store.group_info(&group).await? else {
                    bail!("company '{}' has no visitor group '{}'", args.company, args.vgid);
                };
                print(json!(bdia_wire::GroupView::from(&info)));
            }
            AdminCommand::Retract { file_id } => {
                let Some(company) = store.file_company(&file_id).await? else {
                    bail!("no file '{file_id}'");
                };
                let lake = lake_ops::open_lake(&storage)?;
                let before = store.get_file(&company, &file_id).await?;
                let rec = lake_ops::retract(store, &lake, &company, &file_id).await?;
                print(json!({
                    "company": company,
                    "file_id": rec.file_id,
                    "hits_retracted": rec.hits_retracted,
                    "hits_retracted_at": rec.hits_retracted_at,
                    "already_retracted": before.is_some_and(|b| b.hits_retracted_at.is_some()),
                }));
            }
            AdminCommand::PrivacyDelete {
                company,
                identifier_type,
                customer_id_type,
                identifier,
            } => {
                let Some(c) = store.get_company(&company).await? else {
                    bail!("no company '{company}'");
                };
                let req = PrivacyRequest::parse(&PrivacyDeletionRequest {
                    identifier_type,
                    customer_id_type,
                    identifier,
                })?;
                let lake = lake_ops::open_lake(&storage)?;
                let d = lake_ops::privacy_delete(store, &lake, &c, &req, lake_ops::ADMIN).await?;
                let mut v = json!(lake_ops::wire_deletion(&d));
                v["company"] = json!(company);
                print(v);
            }
            AdminCommand::PrivacyDeletions { company } => {
                if store.get_company(&company).await?.is_none() {
                    bail!("no company '{company}'");
                }
                let mut all = Vec::new();
                let mut query = PageQuery {
                    limit: 1000,
                    cursor: None,
                };
                loop {
                    let page = store.list_privacy_deletions(&company, &query).await?;
                    all.extend(page.deletions.iter().map(lake_ops::wire_deletion));
                    match page.next_cursor {
                        Some(c) => query.cursor = Some(c),
                        None => break,
                    }
                }
                print(json!(all));
            }
            AdminCommand::Compact { company, min_files } => {
                let lake = lake_ops::open_lake(&storage)?;
                let min_files = min_files.map_or(config.lake.compaction_min_files, |n| n as usize);
                let mut done = Vec::new();
                for company in companies(&lake, company).await? {
                    let c = lake_maintenance::compact(
                        &lake,
                        &company,
                        min_files,
                        config.lake.compaction_target_bytes,
                    )
                    .await?;
                    done.push(json!({
                        "company": company,
                        "partitions": c.partitions,
                        "files_removed": c.files_removed,
                        "files_added": c.files_added,
                        "table_version": c.table_version,
                    }));
                }
                print(json!(done));
            }
            AdminCommand::Vacuum {
                company,
                retention_hours,
            } => {
                let lake = lake_ops::open_lake(&storage)?;
                let hours = retention_hours.unwrap_or(config.lake.vacuum_retention_hours);
                let retention = std::time::Duration::from_secs(hours.saturating_mul(3600));
                let mut done = Vec::new();
                for company in companies(&lake, company).await? {
                    let v = lake_maintenance::vacuum(&lake, &company, retention).await?;
                    done.push(json!({
                        "company": company,
                        "files_deleted": v.files_deleted,
                        "retention_hours": hours,
                    }));
                }
                print(json!(done));
            }
            AdminCommand::Token { client_id, ttl } => {
                let Some(client) = store.get_client(&client_id).await? else {
                    bail!("no client '{client_id}'");
                };
                if client.disabled {
                    bail!("client '{client_id}' is disabled");
                }
                let issuer = TokenIssuer::new(&data.server_key, config.auth.token_ttl_secs)?;
                let ttl = ttl.unwrap_or(config.auth.token_ttl_secs);
                let t = issuer
                    .issue_at(&client, bdia_server::auth::now(), ttl)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!("{}", t.access_token);
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A suite's eVar settings with `changes` (`N=EXPIRATION[,ALLOCATION]` or
/// `N=default`) applied, checked like the API's.
fn merge_evar_settings(
    current: &[bdia_model::conversion::EvarSetting],
    changes: &[String],
) -> anyhow::Result<Vec<bdia_model::conversion::EvarSetting>> {
    use bdia_model::conversion::EvarSetting;
    let mut by_evar: std::collections::BTreeMap<u16, EvarSetting> =
        current.iter().map(|s| (s.evar, s.clone())).collect();
    for change in changes {
        match change.split_once('=') {
            Some((n, "default")) => {
                let s = EvarSetting::parse(&format!("{n}=visit")).map_err(anyhow::Error::msg)?;
                by_evar.remove(&s.evar);
            }
            _ => {
                let s = EvarSetting::parse(change).map_err(anyhow::Error::msg)?;
                by_evar.insert(s.evar, s);
            }
        }
    }
    let wire: Vec<bdia_wire::EvarSetting> = by_evar
        .into_values()
        .map(|s| bdia_wire::EvarSetting {
            evar: s.evar,
            expiration: s.expiration.to_string(),
            allocation: s.allocation.as_str().to_string(),
        })
        .collect();
    bdia_server::reports::parse_evar_settings(&wire).map_err(anyhow::Error::msg)
}
