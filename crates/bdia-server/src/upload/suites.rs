//! Report-suite rules of an upload or validation: which suites a caller's
//! rows may name, and the suites an upload creates for its company.
//!
//! Report suite IDs are per company: a row may name a suite its company
//! has, or one the upload may create for it (auto-creation on, at most
//! `max_new_report_suites_per_upload` new ones per file). Only the caller's
//! company's suites are ever looked at, so no answer (validate, upload,
//! reject report) depends on what other companies have: a name another
//! company uses is answered exactly like a name nobody uses.
//!
//! Invariants: each distinct suite name is looked up at most once per file
//! (cached), at most [`MAX_SUITE_LOOKUPS`] names are looked up, only valid
//! report-suite IDs ([`ReportSuiteId`]) are looked up or created, and at
//! most `max_new_report_suites_per_upload` suites are created per file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bdia_format::row::RowRules;
use bdia_format::ReportSuiteId;
use bdia_store::{Company, SuiteClaim};

use crate::error::ApiError;
use crate::state::AppState;

/// Distinct report suites looked up in the database per file, at most;
/// further unknown ones are refused without a lookup.
pub const MAX_SUITE_LOOKUPS: usize = 10_000;

struct SuiteCache {
    known: HashMap<String, bool>,
    lookups: usize,
    new_suites: u32,
}

/// Row rules for a caller: its seed type and which suites it may write.
/// The caller's own suites are loaded up front; any other name is looked up
/// once per file. With `create`, unknown suites are created for the caller
/// when its company allows it, at most `max_new_report_suites_per_upload`
/// per file (rows naming more are invalid). Called from the blocking thread.
pub(super) async fn row_rules(
    state: &AppState,
    company: &Company,
    create: bool,
) -> Result<RowRules, ApiError> {
    let store = state.store.clone();
    let seed_customer_id_type = company.settings.seed_customer_id_type.clone();
    let auto = company.settings.auto_create_report_suites;
    let company = company.id.clone();
    let max_new = state.config.limits.max_new_report_suites_per_upload;
    let known: HashMap<String, bool> = store
        .list_report_suites(Some(&company))
        .await?
        .into_iter()
        .map(|r| (r.rsid, true))
        .collect();
    let handle = tokio::runtime::Handle::current();
    let cache = Mutex::new(SuiteCache {
        known,
        lookups: 0,
        new_suites: 0,
    });
    let policy = move |rsid: &str| -> bool {
        let Ok(mut c) = cache.lock() else {
            return false;
        };
        if let Some(v) = c.known.get(rsid) {
            return *v;
        }
        if c.lookups >= MAX_SUITE_LOOKUPS {
            return false;
        }
        // The row rules only ask about valid IDs; never look up or create
        // anything else.
        let Ok(rsid) = ReportSuiteId::parse(rsid) else {
            return false;
        };
        c.lookups += 1;
        let may_add = auto && c.new_suites < max_new;
        let claim =
            handle.block_on(store.claim_report_suite(&company, rsid.as_str(), create && may_add));
        let allowed = match claim {
            Ok(SuiteClaim::Owned) => true,
            Ok(SuiteClaim::Created) => {
                c.new_suites += 1;
                true
            }
            // Validation: would be created by an upload.
            Ok(SuiteClaim::Unknown) if !create && may_add => {
                c.new_suites += 1;
                true
            }
            Ok(SuiteClaim::Unknown) => false,
            Err(e) => {
                tracing::error!(error = %e, "report suite lookup failed");
                false
            }
        };
        c.known.insert(rsid.into_string(), allowed);
        allowed
    };
    Ok(RowRules {
        seed_customer_id_type,
        allow_report_suite: Some(Arc::new(policy)),
    })
}
