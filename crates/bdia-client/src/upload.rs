//! Safe uploads: one file at a time per visitor group, several groups at
//! once, retries that can never ingest a file twice.
//!
//! - Each file is sent with an idempotency key derived from its visitor group
//!   and content hash, so a retried or re-run upload of the same file is
//!   answered with the original record instead of being ingested again.
//! - Network errors, 5xx and 429 are retried with exponential backoff and full
//!   jitter, honouring `Retry-After`. When the outcome of a send is unknown
//!   (no answer, or a 5xx), the key is looked up first: if the server has the
//!   file, that is the answer.
//! - A group waits for each file's 200 before sending the next, and stops at
//!   its first REJECTED file: later files of that group would break its order.
//!   Other groups go on.
//! - Progress is written to the manifest after every file (atomically), so an
//!   interrupted run resumes where it stopped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::api::{Client, ClientError, FileRecord, FileStatus};
use crate::prepare::{FileEntry, GroupEntry, Manifest, UploadRecord};

/// How an upload run behaves.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Groups uploaded at the same time.
    pub parallel: usize,
    /// Attempts per file before giving up on its group.
    pub max_attempts: u32,
    /// First backoff delay.
    pub base_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
    /// After uploading, follow each file until it is COMPLETE (or ERROR).
    pub wait: bool,
    /// Delay between two polls while waiting.
    pub poll_interval: Duration,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            parallel: 4,
            max_attempts: 12,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            wait: false,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// What happens, for progress displays and logs.
#[derive(Debug, Clone)]
pub enum Event {
    /// A group starts: its files still to send, their rows and bytes.
    GroupStarted {
        /// Visitor group.
        group: String,
        /// Files to send in this run.
        files: usize,
        /// Rows of those files.
        rows: u64,
        /// Bytes of those files.
        bytes: u64,
    },
    /// A file was skipped: accepted in an earlier run.
    AlreadyDone {
        /// Visitor group.
        group: String,
        /// File path (relative to the manifest).
        path: String,
    },
    /// A file was accepted (200), maybe after retries.
    Uploaded {
        /// Visitor group.
        group: String,
        /// File path.
        path: String,
        /// The server's record.
        record: FileRecord,
    },
    /// A send failed and will be tried again.
    Retrying {
        /// Visitor group.
        group: String,
        /// File path.
        path: String,
        /// What failed.
        error: String,
        /// Wait before the next attempt.
        delay: Duration,
    },
    /// A group stopped early.
    GroupStopped {
        /// Visitor group.
        group: String,
        /// Why.
        reason: String,
    },
    /// A file reached a final status while waiting.
    Finished {
        /// Visitor group.
        group: String,
        /// File path.
        path: String,
        /// The final record.
        record: FileRecord,
    },
}

/// The outcome of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOutcome {
    /// Visitor group.
    pub group: String,
    /// Files accepted in this run.
    pub uploaded: usize,
    /// Files skipped because an earlier run had them accepted.
    pub skipped: usize,
    /// Why the group stopped early, if it did.
    pub stopped: Option<String>,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSummary {
    /// One per group, in manifest order.
    pub groups: Vec<GroupOutcome>,
}

impl UploadSummary {
    /// True when every group sent all its files.
    pub fn all_done(&self) -> bool {
        self.groups.iter().all(|g| g.stopped.is_none())
    }
}

/// The idempotency key of a file: its group and content, hashed.
pub fn idempotency_key(group: &str, sha256: &str) -> String {
    let mut h = Sha256::new();
    h.update(group.as_bytes());
    h.update(b"\0");
    h.update(sha256.as_bytes());
    format!("bdia-{}", &hex::encode(h.finalize())[..48])
}

/// The work of a run: a manifest on disk (progress saved), or loose files.
pub struct Plan {
    dir: PathBuf,
    manifest: Mutex<Manifest>,
    persist: bool,
}

impl Plan {
    /// A prepared directory (`manifest.json`); progress is saved in it.
    pub fn from_dir(dir: &Path) -> Result<Plan, String> {
        let manifest = Manifest::load(dir).map_err(|e| e.to_string())?;
        Ok(Plan {
            dir: dir.to_path_buf(),
            manifest: Mutex::new(manifest),
            persist: true,
        })
    }

    /// Loose gzip files for one visitor group, sent in the given order.
    pub fn from_files(group: &str, files: &[PathBuf]) -> Result<Plan, String> {
        let mut entries = Vec::new();
        for f in files {
            let bytes =
                std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            entries.push(FileEntry {
                path: f.to_string_lossy().to_string(),
                rows: 0,
                bytes: bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(&bytes)),
                first_timestamp: 0,
                last_timestamp: 0,
                upload: None,
            });
        }
        Ok(Plan {
            dir: PathBuf::from("."),
            manifest: Mutex::new(Manifest {
                version: 1,
                header: Vec::new(),
                input_rows: 0,
                written_rows: 0,
                rejected_rows: 0,
                groups: vec![GroupEntry {
                    id: group.to_string(),
                    files: entries,
                }],
            }),
            persist: false,
        })
    }

    /// A copy of the manifest as it stands.
    pub fn manifest(&self) -> Manifest {
        self.manifest.lock().expect("manifest lock").clone()
    }

    fn record(&self, group: usize, file: usize, record: &FileRecord) -> Result<(), String> {
        let mut m = self.manifest.lock().expect("manifest lock");
        m.groups[group].files[file].upload = Some(UploadRecord {
            file_id: record.file_id.clone(),
            status_code: record.status_code,
        });
        if self.persist {
            m.save(&self.dir).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn path_of(&self, rel: &str) -> PathBuf {
        let p = Path::new(rel);
        if p.is_absolute() || !self.persist {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

fn backoff(opts: &UploadOptions, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = opts
        .base_delay
        .saturating_mul(1u32 << attempt.min(16))
        .min(opts.max_delay);
    // Full jitter: anywhere in [0, exp], but never before Retry-After.
    let jittered = exp.mul_f64(rand::thread_rng().gen_range(0.0..=1.0));
    match retry_after {
        Some(ra) => ra.max(jittered),
        None => jittered.max(Duration::from_millis(10)),
    }
}

/// One file on its way.
struct Outgoing<'a> {
    group: &'a str,
    rel: &'a str,
    name: &'a str,
    key: &'a str,
    body: bytes::Bytes,
}

/// Sends one file until the server has it, or the error is final.
async fn send_file(
    client: &Client,
    opts: &UploadOptions,
    file: Outgoing<'_>,
    on_event: &(dyn Fn(Event) + Send + Sync),
) -> Result<FileRecord, ClientError> {
    let Outgoing {
        group,
        rel,
        name,
        key,
        body,
    } = file;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match client.upload(group, Some(key), name, body.clone()).await {
            Ok(rec) => return Ok(rec),
            Err(e) => e,
        };
        if err.outcome_unknown() {
            // The server may have the file already: ask before sending again.
            if let Ok(Some(rec)) = client.by_key(key).await {
                return Ok(rec);
            }
        }
        if !err.is_retryable() || attempt >= opts.max_attempts {
            return Err(err);
        }
        let retry_after = match &err {
            ClientError::Http { retry_after, .. } => *retry_after,
            _ => None,
        };
        let delay = backoff(opts, attempt - 1, retry_after);
        on_event(Event::Retrying {
            group: group.to_string(),
            path: rel.to_string(),
            error: err.to_string(),
            delay,
        });
        tokio::time::sleep(delay).await;
    }
}

/// Uploads every group of the plan.
pub async fn run(
    client: Arc<Client>,
    plan: Arc<Plan>,
    opts: UploadOptions,
    on_event: Arc<dyn Fn(Event) + Send + Sync>,
) -> UploadSummary {
    let permits = Arc::new(Semaphore::new(opts.parallel.max(1)));
    let groups = plan.manifest().groups;
    let mut tasks = tokio::task::JoinSet::new();
    for (gi, g) in groups.into_iter().enumerate() {
        let (client, plan, opts, on_event, permits) = (
            client.clone(),
            plan.clone(),
            opts.clone(),
            on_event.clone(),
            permits.clone(),
        );
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            let outcome = run_group(&client, &plan, &opts, gi, &g, &*on_event).await;
            (gi, outcome)
        });
    }
    let mut outcomes: Vec<(usize, GroupOutcome)> = Vec::new();
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok(o) => outcomes.push(o),
            Err(e) => outcomes.push((
                usize::MAX,
                GroupOutcome {
                    group: "?".into(),
                    uploaded: 0,
                    skipped: 0,
                    stopped: Some(format!("internal error: {e}")),
                },
            )),
        }
    }
    outcomes.sort_by_key(|(i, _)| *i);
    UploadSummary {
        groups: outcomes.into_iter().map(|(_, o)| o).collect(),
    }
}

async fn run_group(
    client: &Client,
    plan: &Plan,
    opts: &UploadOptions,
    gi: usize,
    g: &GroupEntry,
    on_event: &(dyn Fn(Event) + Send + Sync),
) -> GroupOutcome {
    let mut out = GroupOutcome {
        group: g.id.clone(),
        uploaded: 0,
        skipped: 0,
        stopped: None,
    };
    let todo: Vec<&FileEntry> = g
        .files
        .iter()
        .filter(|f| {
            f.upload
                .as_ref()
                .is_none_or(|u| u.status_code == FileStatus::Rejected)
        })
        .collect();
    on_event(Event::GroupStarted {
        group: g.id.clone(),
        files: todo.len(),
        rows: todo.iter().map(|f| f.rows).sum(),
        bytes: todo.iter().map(|f| f.bytes).sum(),
    });
    let mut accepted: Vec<(usize, String)> = Vec::new();
    for (fi, f) in g.files.iter().enumerate() {
        if let Some(u) = &f.upload {
            if u.status_code == FileStatus::Rejected {
                out.stopped = Some(format!(
                    "{} was rejected in an earlier run (file {}): fix it and prepare again",
                    f.path, u.file_id
                ));
                break;
            }
            out.skipped += 1;
            accepted.push((fi, u.file_id.clone()));
            on_event(Event::AlreadyDone {
                group: g.id.clone(),
                path: f.path.clone(),
            });
            continue;
        }
        let path = plan.path_of(&f.path);
        let body = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) => {
                out.stopped = Some(format!("cannot read {}: {e}", path.display()));
                break;
            }
        };
        if hex::encode(Sha256::digest(&body)) != f.sha256 {
            out.stopped = Some(format!(
                "{} changed since it was prepared (content hash differs)",
                path.display()
            ));
            break;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let key = idempotency_key(&g.id, &f.sha256);
        let outgoing = Outgoing {
            group: &g.id,
            rel: &f.path,
            name: &name,
            key: &key,
            body: bytes::Bytes::from(body),
        };
        let record = match send_file(client, opts, outgoing, on_event).await {
            Ok(r) => r,
            Err(e) => {
                out.stopped = Some(format!("{}: {e}", f.path));
                break;
            }
        };
        if let Err(e) = plan.record(gi, fi, &record) {
            out.stopped = Some(format!("cannot save progress: {e}"));
            break;
        }
        let rejected = record.status_code == FileStatus::Rejected;
        on_event(Event::Uploaded {
            group: g.id.clone(),
            path: f.path.clone(),
            record: record.clone(),
        });
        if rejected {
            out.stopped = Some(format!(
                "{} was REJECTED: {}",
                f.path,
                record
                    .error
                    .clone()
                    .unwrap_or(record.processing_log.clone())
            ));
            break;
        }
        out.uploaded += 1;
        accepted.push((fi, record.file_id));
    }
    if opts.wait {
        for (fi, file_id) in accepted {
            let rel = g.files[fi].path.clone();
            loop {
                match client.by_id(&file_id).await {
                    Ok(Some(rec)) if rec.is_final() => {
                        let _ = plan.record(gi, fi, &rec);
                        on_event(Event::Finished {
                            group: g.id.clone(),
                            path: rel.clone(),
                            record: rec,
                        });
                        break;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        out.stopped
                            .get_or_insert(format!("{rel}: file {file_id} not found"));
                        break;
                    }
                    Err(e) if e.is_retryable() => {}
                    Err(e) => {
                        out.stopped.get_or_insert(format!("{rel}: {e}"));
                        break;
                    }
                }
                tokio::time::sleep(opts.poll_interval).await;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_scoped_by_group() {
        let a = idempotency_key("g1", "abc");
        assert_eq!(a, idempotency_key("g1", "abc"));
        assert_ne!(a, idempotency_key("g2", "abc"));
        assert_ne!(a, idempotency_key("g1", "abd"));
        assert_eq!(a.len(), 5 + 48);
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let opts = UploadOptions::default();
        for attempt in 0..20 {
            let d = backoff(&opts, attempt, None);
            assert!(d <= opts.max_delay);
        }
        let d = backoff(&opts, 0, Some(Duration::from_secs(7)));
        assert!(d >= Duration::from_secs(7));
    }
}
