//! Every Prometheus metric of the server, named and described once.
//!
//! Each metric is a [`Metric`] constant: its name, its type, its labels and
//! its description. Call sites name a metric only through its constant
//! (`metrics::counter!(crate::metrics::UPLOADS.name, "outcome" => ...)`),
//! [`describe_all`] describes every one of [`ALL`] to the installed
//! recorder, and `docs/OPERATIONS.md` lists them (tests check all three).
//!
//! Invariants: names are unique and end in `_total` for counters and
//! `_seconds` for timings; label values come from small fixed sets (causes,
//! outcomes, codes, stages), never a company, group or file id.

/// The Prometheus type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonic count.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of observations (rendered as a summary).
    Histogram,
}

/// One metric: what it is called, what it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The exported name.
    pub name: &'static str,
    /// Its type.
    pub kind: MetricKind,
    /// The label keys it is recorded with (none: recorded without labels).
    pub labels: &'static [&'static str],
    /// The description shown as the metric's `# HELP`.
    pub help: &'static str,
}

/// Rows refused at upload, by cause.
pub const ROWS_REJECTED: Metric = Metric {
    name: "bdia_rows_rejected_total",
    kind: MetricKind::Counter,
    labels: &["cause"],
    help: "Rows refused at upload, by cause (row problem kind or file-level rejection code)",
};

/// Files refused as a whole at upload, by cause.
pub const FILES_REJECTED: Metric = Metric {
    name: "bdia_files_rejected_total",
    kind: MetricKind::Counter,
    labels: &["cause"],
    help: "Files refused as a whole at upload, by cause",
};

/// Upload requests, by outcome.
pub const UPLOADS: Metric = Metric {
    name: "bdia_uploads_total",
    kind: MetricKind::Counter,
    labels: &["outcome"],
    help: "Upload requests by outcome",
};

/// Single hits (`/b/ss/...`), by outcome: `accepted`, or why not.
pub const SINGLE_HITS: Metric = Metric {
    name: "bdia_single_hits_total",
    kind: MetricKind::Counter,
    labels: &["outcome"],
    help: "Single hits by outcome (accepted, no_account, no_page, no_visitor, syntax_error, rate_limited, busy, error, unreadable)",
};

/// Files made of single hits.
pub const SINGLE_HIT_FILES: Metric = Metric {
    name: "bdia_single_hit_files_total",
    kind: MetricKind::Counter,
    labels: &[],
    help: "Files made of gathered single hits",
};

/// Error answers, by error code.
pub const HTTP_ERRORS: Metric = Metric {
    name: "bdia_http_errors_total",
    kind: MetricKind::Counter,
    labels: &["code"],
    help: "Error answers by code",
};

/// Access tokens issued, by flow.
pub const TOKENS_ISSUED: Metric = Metric {
    name: "bdia_tokens_issued_total",
    kind: MetricKind::Counter,
    labels: &["flow"],
    help: "Access tokens issued, by flow (client_credentials, jwt_exchange)",
};

/// Token requests refused because their client id failed too often.
pub const AUTH_THROTTLED: Metric = Metric {
    name: "bdia_auth_throttled_total",
    kind: MetricKind::Counter,
    labels: &["flow"],
    help: "Token requests answered 429 because their client id failed authentication too often, \
           by flow (client_credentials, jwt_exchange)",
};

/// Client ids whose failed authentications are tracked.
pub const AUTH_FAILURE_CLIENTS: Metric = Metric {
    name: "bdia_auth_failure_clients",
    kind: MetricKind::Gauge,
    labels: &[],
    help: "Client ids with failed-authentication state held (at most auth.failure_max_clients)",
};

/// Rows read by the processing stage.
pub const ROWS_PROCESSED: Metric = Metric {
    name: "bdia_rows_processed_total",
    kind: MetricKind::Counter,
    labels: &[],
    help: "Rows read by the processing stage",
};

/// Rows delayed by a company's processing throttle.
pub const ROWS_THROTTLED: Metric = Metric {
    name: "bdia_rows_throttled_total",
    kind: MetricKind::Counter,
    labels: &[],
    help: "Rows the processing throttle held back (delayed, never dropped)",
};

/// Files processed, by outcome.
pub const FILES_PROCESSED: Metric = Metric {
    name: "bdia_files_processed_total",
    kind: MetricKind::Counter,
    labels: &["outcome"],
    help: "Files processed, by outcome (complete, error)",
};

/// Files that failed processing, by failure code.
pub const PROCESSING_ERRORS: Metric = Metric {
    name: "bdia_processing_errors_total",
    kind: MetricKind::Counter,
    labels: &["code"],
    help: "Files that failed processing, by cause (failure code)",
};

/// Visitor groups waiting for a worker.
pub const PROCESSING_GROUPS_WAITING: Metric = Metric {
    name: "bdia_processing_groups_waiting",
    kind: MetricKind::Gauge,
    labels: &[],
    help: "Visitor groups with files waiting for a worker",
};

/// Visitor-group leases this node claimed.
pub const LEASES_CLAIMED: Metric = Metric {
    name: "bdia_leases_claimed_total",
    kind: MetricKind::Counter,
    labels: &[],
    help: "Visitor-group leases this node claimed (each claim moves the group's epoch up)",
};

/// Visitor-group leases this node lost to another node.
pub const LEASES_LOST: Metric = Metric {
    name: "bdia_leases_lost_total",
    kind: MetricKind::Counter,
    labels: &[],
    help: "Visitor-group leases a renewal found taken over by another node",
};

/// Visitor-group leases this node holds.
pub const LEASES_HELD: Metric = Metric {
    name: "bdia_leases_held",
    kind: MetricKind::Gauge,
    labels: &[],
    help: "Visitor-group leases this node holds (waiting or running)",
};

/// Live nodes sharing the metadata store.
pub const NODES_LIVE: Metric = Metric {
    name: "bdia_nodes_live",
    kind: MetricKind::Gauge,
    labels: &[],
    help: "Nodes whose heartbeat is current in the shared metadata store (rate limits are split among them)",
};

/// Files being processed.
pub const PROCESSING_FILES_IN_PROGRESS: Metric = Metric {
    name: "bdia_processing_files_in_progress",
    kind: MetricKind::Gauge,
    labels: &[],
    help: "Files being processed",
};

/// Time of each processing stage of a file.
pub const PROCESSING_STAGE_SECONDS: Metric = Metric {
    name: "bdia_processing_stage_seconds",
    kind: MetricKind::Histogram,
    labels: &["stage"],
    help: "Seconds each processed file spent per stage (encode, publish, commit)",
};

/// Time to answer a report.
pub const REPORT_SECONDS: Metric = Metric {
    name: "bdia_report_seconds",
    kind: MetricKind::Histogram,
    labels: &[],
    help: "Seconds to compute a report",
};

/// Hits removed from the lake on request, by cause.
pub const LAKE_HITS_REMOVED: Metric = Metric {
    name: "bdia_lake_hits_removed_total",
    kind: MetricKind::Counter,
    labels: &["cause"],
    help: "Hits removed from the lake on request, by cause (retraction, privacy_deletion)",
};

/// Compactions run (one per company table and round, including those that
/// found nothing to compact).
pub const LAKE_COMPACTIONS: Metric = Metric {
    name: "bdia_lake_compactions_total",
    kind: MetricKind::Counter,
    labels: &[],
    help: "Compactions of a company's lake table run (including those that found nothing to do)",
};

/// Files a compaction removed from or added to a table.
pub const LAKE_COMPACTION_FILES: Metric = Metric {
    name: "bdia_lake_compaction_files_total",
    kind: MetricKind::Counter,
    labels: &["change"],
    help: "Files compaction took out of a table (removed: the small files) or put in (added: the compacted ones)",
};

/// Vacuums run.
pub const LAKE_VACUUMS: Metric = Metric {
    name: "bdia_lake_vacuums_total",
    kind: MetricKind::Counter,
    labels: &[],
    help: "Vacuums of a company's lake table run",
};

/// Files vacuum deleted.
pub const LAKE_VACUUM_FILES_DELETED: Metric = Metric {
    name: "bdia_lake_vacuum_files_deleted_total",
    kind: MetricKind::Counter,
    labels: &[],
    help: "Files vacuum deleted from the lake (no table version referenced them within the retention period)",
};

/// Lake maintenance runs that failed, by task.
pub const LAKE_MAINTENANCE_ERRORS: Metric = Metric {
    name: "bdia_lake_maintenance_errors_total",
    kind: MetricKind::Counter,
    labels: &["task"],
    help: "Lake maintenance runs that failed, by task (compaction, vacuum, list)",
};

/// Company tables seen by the last maintenance round.
pub const LAKE_TABLES: Metric = Metric {
    name: "bdia_lake_tables",
    kind: MetricKind::Gauge,
    labels: &[],
    help: "Company tables in the lake, as of the last maintenance round",
};

/// Webhook delivery attempts, by outcome.
pub const WEBHOOK_DELIVERIES: Metric = Metric {
    name: "bdia_webhook_deliveries_total",
    kind: MetricKind::Counter,
    labels: &["outcome"],
    help: "Webhook delivery attempts, by outcome (delivered, failed, given_up)",
};

/// Duration of webhook delivery attempts.
pub const WEBHOOK_DELIVERY_SECONDS: Metric = Metric {
    name: "bdia_webhook_delivery_seconds",
    kind: MetricKind::Histogram,
    labels: &[],
    help: "Duration of webhook delivery attempts, seconds",
};

/// Every metric, in the order of `docs/OPERATIONS.md`.
pub const ALL: &[Metric] = &[
    ROWS_REJECTED,
    FILES_REJECTED,
    UPLOADS,
    SINGLE_HITS,
    SINGLE_HIT_FILES,
    HTTP_ERRORS,
    TOKENS_ISSUED,
    AUTH_THROTTLED,
    AUTH_FAILURE_CLIENTS,
    ROWS_PROCESSED,
    ROWS_THROTTLED,
    FILES_PROCESSED,
    PROCESSING_ERRORS,
    PROCESSING_GROUPS_WAITING,
    LEASES_CLAIMED,
    LEASES_LOST,
    LEASES_HELD,
    NODES_LIVE,
    PROCESSING_FILES_IN_PROGRESS,
    PROCESSING_STAGE_SECONDS,
    REPORT_SECONDS,
    LAKE_HITS_REMOVED,
    LAKE_COMPACTIONS,
    LAKE_COMPACTION_FILES,
    LAKE_VACUUMS,
    LAKE_VACUUM_FILES_DELETED,
    LAKE_MAINTENANCE_ERRORS,
    LAKE_TABLES,
    WEBHOOK_DELIVERIES,
    WEBHOOK_DELIVERY_SECONDS,
];

/// Describes every metric of [`ALL`] to the installed recorder (its type
/// and `# HELP` text).
pub fn describe_all() {
    for m in ALL {
        match m.kind {
            MetricKind::Counter => metrics::describe_counter!(m.name, m.help),
            MetricKind::Gauge => metrics::describe_gauge!(m.name, m.help),
            MetricKind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    #[test]
    fn every_constant_is_listed_once() {
        let source = include_str!("metrics.rs");
        let declared = source
            .lines()
            .filter(|l| l.starts_with("pub const ") && l.contains(": Metric = "))
            .count();
        assert_eq!(declared, ALL.len(), "a Metric constant is missing from ALL");
        let mut names = std::collections::HashSet::new();
        for m in ALL {
            assert!(names.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("bdia_"), "{}", m.name);
            assert!(!m.help.is_empty(), "{} has no description", m.name);
            if m.kind == MetricKind::Counter {
                assert!(m.name.ends_with("_total"), "{}", m.name);
            }
        }
    }

    #[test]
    fn every_metric_is_described_with_its_type() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe_all();
            for m in ALL {
                match m.kind {
                    MetricKind::Counter => metrics::counter!(m.name).increment(1),
                    MetricKind::Gauge => metrics::gauge!(m.name).set(1.0),
                    MetricKind::Histogram => metrics::histogram!(m.name).record(1.0),
                }
            }
        });
        let text = handle.render();
        for m in ALL {
            assert!(
                text.contains(&format!("# HELP {} {}\n", m.name, m.help)),
                "{} is not described:\n{text}",
                m.name
            );
            let kind = match m.kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
                MetricKind::Histogram => "summary",
            };
            assert!(
                text.contains(&format!("# TYPE {} {kind}\n", m.name)),
                "{} is not a {kind}:\n{text}",
                m.name
            );
        }
    }

    #[test]
    fn the_operator_guide_lists_every_metric() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/OPERATIONS.md"),
        )
        .expect("docs/OPERATIONS.md");
        for m in ALL {
            let listed = if m.labels.is_empty() {
                format!("`{}`", m.name)
            } else {
                format!("`{}{{{}}}`", m.name, m.labels.join(","))
            };
            assert!(
                doc.contains(&listed),
                "docs/OPERATIONS.md does not list {listed}"
            );
        }
    }

    #[test]
    fn metrics_are_named_only_through_their_constants() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() && e.file_name() != "target" {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        walk(&crates, &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for call in ["counter!(\"", "gauge!(\"", "histogram!(\""] {
                assert!(
                    !text.contains(call),
                    "{} names a metric by a literal ({call}...): use crate::metrics",
                    f.display()
                );
            }
        }
    }
}
