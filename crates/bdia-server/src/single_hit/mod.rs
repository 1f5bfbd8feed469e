//! The single-hit Data Insertion API: `GET|POST /b/ss/{rsid}/{response
//! type}[/{cache buster}]`, one hit per request, into the same pipeline as
//! uploaded files.
//!
//! ```text
//! request ──▶ read (query string / form / XML)      request.rs
//!         ──▶ report suite: one that accepts single hits (cached), else `NO account`
//!         ──▶ the company's single-hit rate limit (429)
//!         ──▶ the row rules of a bulk file row (visitor, page, timestamp)
//!         ──▶ journal: fsynced before the answer     journal.rs
//!         ──▶ answer in the response type's form
//! roller  ──▶ sealed journal segment ──▶ one file per company in the group
//!             `bdia.single-hits` (same pass, validation, record, lake)
//! ```
//!
//! The endpoint is not authenticated, like Adobe's: a report suite takes
//! single hits only when its company turned that on
//! (`bdia admin report-suite settings RSID --accept-single-hits true`),
//! and then names that company. Hits for any other rsid are answered like
//! an unknown account and stored nowhere. Every refused hit is counted in
//! `bdia_single_hits_total{outcome}`.
//!
//! Failure reasons are shown only to `POST` requests, as Adobe does; a
//! `GET` is always answered as received (its refused hits are still
//! counted and not stored).

pub mod journal;
pub mod request;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bdia_format::row::{Header, RowRules};
use bdia_format::RowProblem;
use bdia_store::{Company, RateLimitSetting};
use csv::StringRecord;

use crate::config::SingleHitsConfig;
use crate::error::ApiError;
use crate::limiter::{CompanyLimiter, NodeShare};
use crate::state::AppState;
use journal::{AppendError, Journal, Sealing};
use request::{Failure, SingleHit, COLUMNS};

/// The visitor group of the files single hits become.
pub const GROUP: &str = "bdia.single-hits";

/// Distinct rsids whose single-hit setting a node keeps cached.
const SUITE_CACHE_ENTRIES: usize = 10_000;

/// The header of the rows single hits become, parsed once.
static HEADER: LazyLock<Header> =
    LazyLock::new(|| Header::parse(&COLUMNS).expect("the single-hit columns are valid"));

/// The single-hit endpoint's state, shared by the handlers and the roller.
#[derive(Clone, Debug)]
pub struct SingleHits {
    inner: Arc<Inner>,
}

struct Inner {
    journal: Journal,
    limiter: CompanyLimiter,
    config: SingleHitsConfig,
    max_row_bytes: u64,
    /// rsid -> (looked up at, the company whose suite takes its single hits).
    suites: Mutex<HashMap<String, (Instant, Option<Company>)>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleHits")
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

impl SingleHits {
    /// Opens the journal under `data_dir/single-hits`.
    pub fn open(
        data_dir: &std::path::Path,
        config: &SingleHitsConfig,
        limits: &crate::config::LimitsConfig,
        share: NodeShare,
    ) -> std::io::Result<SingleHits> {
        let journal = Journal::open(
            &data_dir.join("single-hits"),
            Sealing {
                max_age: Duration::from_millis(config.flush_ms),
                max_hits: config.max_file_hits,
                max_bytes: limits.max_uncompressed_bytes,
                queue: config.queue,
            },
        )?;
        let limiter = CompanyLimiter::new(crate::config::RateLimitConfig {
            enabled: true,
            per_second: config.per_second,
            burst: config.burst,
        })
        .with_share(share);
        Ok(SingleHits {
            inner: Arc::new(Inner {
                journal,
                limiter,
                config: config.clone(),
                max_row_bytes: limits.max_row_bytes,
                suites: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The journal (for the roller).
    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// The company whose suite `rsid` takes single hits, cached for
    /// `suite_cache_secs`.
    async fn company_of(&self, state: &AppState, rsid: &str) -> Result<Option<Company>, ApiError> {
        let ttl = Duration::from_secs(self.inner.config.suite_cache_secs);
        if let Some((at, c)) = self.lock_suites().get(rsid) {
            if at.elapsed() < ttl {
                return Ok(c.clone());
            }
        }
        let company = match state.store.single_hit_suite(rsid).await? {
            Some(suite) => state.store.get_company(&suite.company_id).await?,
            None => None,
        };
        let mut cache = self.lock_suites();
        if cache.len() >= SUITE_CACHE_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= SUITE_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(rsid.to_string(), (Instant::now(), company.clone()));
        Ok(company)
    }

    fn lock_suites(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<Company>)>> {
        self.inner.suites.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What became of one hit.
enum Outcome {
    /// Journaled; the visitor ID to show (response types 3, 10, 11).
    Accepted(String),
    /// Refused for a reason a client is told about (on POST).
    Refused(Failure),
}

/// `GET|POST /b/ss/{*rest}`: `rest` is `{rsid}/{response type}[/...]`;
/// the rsid may be empty (`/b/ss//6`, suite in the XML body).
pub async fn collect(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(single) = state
        .single_hits
        .clone()
        .filter(|_| state.config.single_hits.enabled)
    else {
        return Err(ApiError::NotFound(
            "The single-hit Data Insertion API is turned off on this server".into(),
        ));
    };
    let mut parts = rest.trim_start_matches('/').splitn(3, '/');
    let path_rsid = parts.next().unwrap_or("").to_string();
    let rest_after = rest.trim_start_matches('/');
    // `/b/ss//6`: the leading slash of `rest` was the empty rsid.
    let (path_rsid, response_type) = if rest.starts_with('/') || rest_after.is_empty() {
        ("".to_string(), path_rsid)
    } else {
        (path_rsid, parts.next().unwrap_or("").to_string())
    };
    let response_type = ResponseType::parse(&response_type);
    let is_post = method == Method::POST;
    if !(is_post || method == Method::GET) {
        return Err(ApiError::MethodNotAllowed);
    }
    let body = axum::body::to_bytes(body, state.config.single_hits.max_body_bytes as usize)
        .await
        .map_err(|_| {
            ApiError::PayloadTooLarge(format!(
                "A single-hit request body may be at most {} bytes",
                state.config.single_hits.max_body_bytes
            ))
        })?;
    let outcome = match read_hit(&headers, &uri, peer, &path_rsid, response_type, &body) {
        Ok(hit) => judge(&state, &single, hit).await?,
        Err(f) => Outcome::Refused(f),
    };
    // Accepted hits are counted by the journal once they are on disk.
    if let Outcome::Refused(f) = &outcome {
        metrics::counter!(crate::metrics::SINGLE_HITS.name, "outcome" => f.label()).increment(1);
    }
    Ok(response_type.answer(&outcome, is_post))
}

/// Reads the request into a hit: XML at response type 6 when the body
/// looks like XML, else the query string and a form body.
fn read_hit(
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    peer: SocketAddr,
    path_rsid: &str,
    response_type: ResponseType,
    body: &[u8],
) -> Result<SingleHit, Failure> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let xml_type =
        content_type.starts_with("application/xml") || content_type.starts_with("text/xml");
    let looks_xml = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
    let mut hit = if response_type == ResponseType::Xml && (xml_type || looks_xml) {
        let mut hit = request::parse_xml(body)?;
        if hit.rsids.is_empty() {
            hit.rsids = path_rsid.to_string();
        }
        hit
    } else {
        let query = uri.query().unwrap_or("");
        let form = if body.is_empty() || xml_type {
            ""
        } else {
            std::str::from_utf8(body).map_err(|_| Failure::Syntax)?
        };
        let joined = match (query.is_empty(), form.is_empty()) {
            (false, false) => format!("{query}&{form}"),
            (true, _) => form.to_string(),
            (false, true) => query.to_string(),
        };
        let mut hit = request::parse_query(&joined)?;
        hit.rsids = path_rsid.to_string();
        // The connection's (or the proxy's first) address.
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        hit.ip = Some(forwarded.map_or_else(|| peer.ip().to_string(), str::to_string));
        hit
    };
    if hit.user_agent.is_none() {
        hit.user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.trim().is_empty())
            .map(str::to_string);
    }
    Ok(hit)
}

/// Looks the suite up, applies the rate limit and the row rules, and
/// journals an accepted hit.
async fn judge(
    state: &AppState,
    single: &SingleHits,
    mut hit: SingleHit,
) -> Result<Outcome, ApiError> {
    let rsids: Vec<&str> = hit
        .rsids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if rsids.is_empty() {
        return Ok(Outcome::Refused(Failure::NoAccount));
    }
    // Every suite of the list must take single hits, for one company.
    let mut company: Option<Company> = None;
    for rsid in &rsids {
        match single.company_of(state, rsid).await? {
            Some(c) if company.as_ref().is_none_or(|k| k.id == c.id) => company = Some(c),
            _ => return Ok(Outcome::Refused(Failure::NoAccount)),
        }
    }
    let company = company.expect("at least one suite");
    if !hit.has_visitor_id() && hit.user_agent.is_none() {
        // The IP address identifies a visitor only with a user agent.
        hit.ip = None;
    }
    if hit.user_agent.is_none() {
        hit.user_agent = Some("-".to_string());
    }
    let now = crate::auth::now();
    let row = hit.row(now);
    let record = StringRecord::from(row.iter().map(String::as_str).collect::<Vec<_>>());
    if record.as_slice().len() as u64 > single.inner.max_row_bytes {
        return Ok(Outcome::Refused(Failure::Syntax));
    }
    let rules = RowRules {
        seed_customer_id_type: company.settings.seed_customer_id_type.clone(),
        allow_report_suite: None,
    };
    let visitor = match HEADER.check(&record, &rules) {
        Ok(valid) => valid.visitor().clone(),
        Err(problem) => return Ok(Outcome::Refused(failure_of(&problem))),
    };
    if let Err(wait) = single
        .inner
        .limiter
        .check(&company.id, RateLimitSetting::Default)
    {
        metrics::counter!(crate::metrics::SINGLE_HITS.name, "outcome" => "rate_limited")
            .increment(1);
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        });
    }
    match single.journal().append(&company.id, row).await {
        Ok(()) => {}
        Err(AppendError::Busy) => {
            metrics::counter!(crate::metrics::SINGLE_HITS.name, "outcome" => "busy").increment(1);
            return Err(ApiError::Busy {
                message: "Too many single hits waiting to be written; retry shortly".into(),
                retry_after_secs: 1,
                server_wide: true,
            });
        }
        Err(AppendError::Io(e)) => {
            metrics::counter!(crate::metrics::SINGLE_HITS.name, "outcome" => "error").increment(1);
            if bdia_store::is_storage_full_text(&e.to_string()) {
                return Err(ApiError::InsufficientStorage);
            }
            return Err(ApiError::Internal(format!("single-hit journal: {e}")));
        }
    }
    let id = match visitor.kind {
        bdia_format::hit::VisitorKind::Ip => {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(visitor.key().as_bytes());
            hex::encode(&digest[..8]).to_ascii_uppercase()
        }
        _ => visitor.id.clone(),
    };
    Ok(Outcome::Accepted(id))
}

/// The reason a row problem is answered with.
fn failure_of(p: &RowProblem) -> Failure {
    match p {
        RowProblem::MissingVisitorId | RowProblem::MissingUserAgent => Failure::NoVisitor,
        RowProblem::NothingToReport => Failure::NoPage,
        RowProblem::MissingReportSuite
        | RowProblem::InvalidReportSuite { .. }
        | RowProblem::ReportSuiteNotAllowed { .. } => Failure::NoAccount,
        _ => Failure::Syntax,
    }
}

/// The documented response types; anything else is answered like 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseType {
    /// 0: a space as HTML.
    Html,
    /// 1: a 1x1 transparent GIF.
    Gif,
    /// 2: 204, `Status` header.
    NoContent,
    /// 3: `var s_vid='...'`.
    Js,
    /// 5: a 1x1 WBMP image.
    Wbmp,
    /// 6: the XML status document.
    Xml,
    /// 10: JSON status and visitor ID.
    Json,
    /// 11: XML `<visitor>` status and ID.
    VisitorXml,
}

/// A 1x1 transparent GIF.
const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// A 1x1 WBMP (type 0) image: one white pixel.
const WBMP: &[u8] = &[0x00, 0x00, 0x01, 0x01, 0x80];

const XML_DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

impl ResponseType {
    fn parse(s: &str) -> ResponseType {
        match s {
            "0" => ResponseType::Html,
            "2" => ResponseType::NoContent,
            "3" => ResponseType::Js,
            "5" => ResponseType::Wbmp,
            "6" => ResponseType::Xml,
            "10" => ResponseType::Json,
            "11" => ResponseType::VisitorXml,
            _ => ResponseType::Gif,
        }
    }

    /// The answer to one hit; failures are shown to POST requests only.
    fn answer(self, outcome: &Outcome, is_post: bool) -> Response {
        let failure = match outcome {
            Outcome::Refused(f) if is_post => Some(*f),
            _ => None,
        };
        let id = match outcome {
            Outcome::Accepted(id) => id.as_str(),
            Outcome::Refused(_) => "",
        };
        let status_word = if failure.is_some() {
            "FAILURE"
        } else {
            "SUCCESS"
        };
        let mut headers = HeaderMap::new();
        let mut status_headers = |always: bool, with_reason: bool| {
            if failure.is_some() || always {
                headers.insert("status", HeaderValue::from_static(status_word));
            }
            if let (Some(f), true) = (failure, with_reason) {
                headers.insert("reason", HeaderValue::from_static(f.reason()));
            }
        };
        let (code, content_type, body): (StatusCode, &'static str, Body) = match self {
            ResponseType::Html => {
                status_headers(false, true);
                (StatusCode::OK, "text/html", Body::from(" "))
            }
            ResponseType::Gif => {
                status_headers(false, true);
                (StatusCode::OK, "image/gif", Body::from(GIF))
            }
            ResponseType::NoContent => {
                status_headers(true, true);
                (StatusCode::NO_CONTENT, "", Body::empty())
            }
            ResponseType::Js => (
                StatusCode::OK,
                "application/x-javascript",
                Body::from(format!("var s_vid='{}';", js_escape(id))),
            ),
            ResponseType::Wbmp => (StatusCode::OK, "image/vnd.wap.wbmp", Body::from(WBMP)),
            ResponseType::Xml => {
                // Mirrored to the headers, except `NO account`.
                if failure != Some(Failure::NoAccount) {
                    status_headers(false, true);
                }
                let body = match failure {
                    None => format!("{XML_DECL}<status>SUCCESS</status>"),
                    Some(f) => format!(
                        "{XML_DECL}<status>FAILURE</status><reason>{}</reason>",
                        f.reason()
                    ),
                };
                (StatusCode::OK, "text/xml", Body::from(body))
            }
            ResponseType::Json => {
                let body = match failure {
                    None => serde_json::json!({"status": "SUCCESS", "id": id}),
                    Some(f) => serde_json::json!({"status": "FAILURE", "reason": f.reason()}),
                };
                (
                    StatusCode::OK,
                    "application/json",
                    Body::from(body.to_string()),
                )
            }
            ResponseType::VisitorXml => {
                let body = match failure {
                    None => format!(
                        "{XML_DECL}<visitor><status>SUCCESS</status><id>{}</id></visitor>",
                        quick_xml::escape::escape(id)
                    ),
                    Some(f) => format!(
                        "{XML_DECL}<visitor><status>FAILURE</status><reason>{}</reason></visitor>",
                        f.reason()
                    ),
                };
                (StatusCode::OK, "text/xml", Body::from(body))
            }
        };
        if !content_type.is_empty() {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store, must-revalidate"),
        );
        (code, headers, body).into_response()
    }
}

fn js_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '\'' | '\\' | '<' | '>' => format!("\\x{:02x}", c as u32).chars().collect::<Vec<_>>(),
            c if c.is_control() => format!("\\u{:04x}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect()
}

/// Turns sealed journal segments into files until `cancel`; then seals
/// the open segment and rolls what is left once more.
pub async fn run_roller(
    state: AppState,
    single: SingleHits,
    cancel: tokio_util::sync::CancellationToken,
) {
    let every = Duration::from_millis(single.inner.config.flush_ms);
    loop {
        roll_sealed(&state, &single).await;
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = single.journal().sealed() => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
    single.journal().seal().await;
    roll_sealed(&state, &single).await;
}

/// Rolls every sealed segment, oldest first; stops at the first that
/// fails (it is tried again on the next round).
async fn roll_sealed(state: &AppState, single: &SingleHits) {
    let segments = match single.journal().sealed_segments() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "listing single-hit segments failed");
            return;
        }
    };
    for path in segments {
        if let Err(e) = roll_segment(state, single, &path).await {
            tracing::warn!(
                error = %e,
                segment = %path.display(),
                "single hits not gathered into a file yet; retrying"
            );
            return;
        }
    }
}

/// One sealed segment into files (one or more per company), then removed.
async fn roll_segment(
    state: &AppState,
    single: &SingleHits,
    path: &std::path::Path,
) -> Result<(), ApiError> {
    let hits = journal::read_segment(path).map_err(ApiError::internal)?;
    let segment = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("segment")
        .to_string();
    if hits.unreadable > 0 {
        metrics::counter!(crate::metrics::SINGLE_HITS.name, "outcome" => "unreadable")
            .increment(hits.unreadable);
        tracing::error!(
            lines = hits.unreadable,
            %segment,
            "single-hit journal lines could not be read and were left out"
        );
    }
    let node = state.config.node_id();
    let max_hits = single.inner.config.max_file_hits as usize;
    let max_bytes = state.config.limits.max_uncompressed_bytes;
    for (company_id, rows) in &hits.companies {
        let Some(company) = state.store.get_company(company_id).await? else {
            tracing::error!(company = %company_id, hits = rows.len(), "single hits of a company that no longer exists were left out");
            continue;
        };
        for (part, chunk) in chunks(rows, max_hits, max_bytes).into_iter().enumerate() {
            let gz = csv_gz(chunk).map_err(ApiError::internal)?;
            let key = format!("single-hits:{node}:{segment}:{company_id}:{part}");
            let name =
                format!("single hits (/b/ss) from node {node}, segment {segment} part {part}");
            let rec = crate::upload::ingest_file(
                state,
                &company,
                GROUP.to_string(),
                key,
                name,
                bytes::Bytes::from(gz),
            )
            .await?;
            metrics::counter!(crate::metrics::SINGLE_HIT_FILES.name).increment(1);
            tracing::info!(
                company = %company_id,
                file_id = %rec.file_id,
                rows = rec.rows,
                invalid_rows = rec.invalid_rows,
                status = %rec.status,
                "single hits gathered into a file"
            );
        }
    }
    std::fs::remove_file(path).map_err(ApiError::internal)?;
    Ok(())
}

/// Splits rows into files of at most `max_hits` rows and about
/// `max_bytes` of CSV (a row is never split).
fn chunks(rows: &[Vec<String>], max_hits: usize, max_bytes: u64) -> Vec<&[Vec<String>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0usize, 0u64);
    for (i, r) in rows.iter().enumerate() {
        let len = r.iter().map(|f| f.len() as u64 + 3).sum::<u64>() + 1;
        if i > start && (i - start >= max_hits || bytes + len > max_bytes / 2) {
            out.push(&rows[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// A gzipped CSV file: the header of [`COLUMNS`], then `rows`.
fn csv_gz(rows: &[Vec<String>]) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut w = csv::Writer::from_writer(gz);
    w.write_record(COLUMNS)?;
    for r in rows {
        w.write_record(r)?;
    }
    w.into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cut_by_rows_and_bytes() {
        let rows: Vec<Vec<String>> = (0..10).map(|i| vec![i.to_string(); 2]).collect();
        let sizes: Vec<usize> = chunks(&rows, 4, u64::MAX).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [4, 4, 2]);
        let sizes: Vec<usize> = chunks(&rows, 100, 20).iter().map(|c| c.len()).collect();
        assert!(sizes.iter().all(|s| *s >= 1) && sizes.iter().sum::<usize>() == 10);
        assert!(chunks(&[], 4, 100).is_empty());
    }

    #[test]
    fn response_types_follow_the_contract() {
        let ok = Outcome::Accepted("v1".into());
        let bad = Outcome::Refused(Failure::NoPage);
        let r = ResponseType::NoContent.answer(&bad, true);
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()["status"], "FAILURE");
        assert_eq!(r.headers()["reason"], "NO pagename OR pageurl");
        let r = ResponseType::NoContent.answer(&bad, false);
        assert_eq!(r.headers()["status"], "SUCCESS", "GET shows no reason");
        let r = ResponseType::Gif.answer(&ok, true);
        assert_eq!(r.headers()["content-type"], "image/gif");
        assert!(r.headers().get("status").is_none());
        let r = ResponseType::Xml.answer(&Outcome::Refused(Failure::NoAccount), true);
        assert!(
            r.headers().get("reason").is_none(),
            "NO account is not mirrored"
        );
        assert_eq!(ResponseType::parse("7"), ResponseType::Gif);
        assert_eq!(js_escape("a'b</script>"), "a\\x27b\\x3c/script\\x3e");
    }
}
