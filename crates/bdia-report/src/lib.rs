//! Reports over the hit lake: DataFusion SQL over the committed Parquet
//! parts of one company's report suite and date range.
//!
//! ```text
//! ReportRequest::parse(query strings)            checked names, dates, limit
//! ReportEngine::run(company, request, suite time zone)
//!   LakeReader::parts(company, suite, from, to)  the company's committed parts only
//!   PartsTable (exactly those parts, through the lake's object store)
//!   SQL built from the parsed request (sql.rs)   main query [+ totals] [+ bounces]
//!   -> Report { rows, totals }                   sent as bdia_wire::Report
//! ```
//!
//! # Definitions
//!
//! - `pageviews`: hits of type `page_view`; `link_hits`: the other hits;
//!   `hits`: all.
//! - `visits`: for `day` and `hour`, visits whose first hit falls in the row
//!   (hits with `new_visit`); for other dimensions, distinct
//!   (`visitor_id_type`, `visitor_id`, `visit_num`) with a hit in the row.
//! - `visitors`: distinct (`visitor_id_type`, `visitor_id`) in the row.
//! - `bounces`: visits with exactly one hit in the range, that hit being the
//!   visit's first, counted on that hit's row.
//! - `entries`: visits whose first hit is in the row; `bounce_rate`:
//!   `bounces / entries`.
//! - `total_seconds_spent`: per hit, the seconds to the next hit of its
//!   visit (0 for the last), summed; `time_spent_per_visit`:
//!   `total_seconds_spent / (visits - bounces)`.
//! - `entry_page`, `exit_page`: the page of the visit's first and last page
//!   view, on every hit of the visit (window functions over the range's
//!   hits of each visit, in the `hits` view).
//! - Robots' hits (`is_bot`) are left out unless the request includes them.
//! - `events:<name>`: each occurrence of the event adds its value, or 1.
//! - Days and hours are in the suite's time zone; a `day` report has a row
//!   for every day of the range.
//! - `totals` are over every hit of the range (not only the rows returned):
//!   sums for additive metrics, distinct counts over the whole range for
//!   `visitors` (and for `visits` by a non-time dimension).
//! - Rows by `day`/`hour` are in time order; other rows by the first metric,
//!   descending, then by value (null last).

pub mod error;
pub mod request;
mod sql;
pub mod table;
mod udf;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use bdia_lake::{Date, Lake};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type};
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use jiff::tz::TimeZone;
use serde::{Serialize, Serializer};

pub use error::ReportError;
pub use request::{Dimension, Metric, ReportRequest};
pub use udf::referrer_host;

/// The URL the lake's object store is registered under.
const LAKE_URL: &str = "bdia-lake://lake";

/// One value of a metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A count.
    Count(u64),
    /// A sum of event values.
    Sum(f64),
}

impl Value {
    fn as_f64(self) -> f64 {
        match self {
            Value::Count(n) => n as f64,
            Value::Sum(x) => x,
        }
    }

    fn add(self, other: Value) -> Value {
        match (self, other) {
            (Value::Count(a), Value::Count(b)) => Value::Count(a + b),
            (a, b) => Value::Sum(a.as_f64() + b.as_f64()),
        }
    }

    fn zero(metric: &Metric) -> Value {
        match metric {
            Metric::Event(_)
            | Metric::BounceRate
            | Metric::TimeSpentPerVisit
            | Metric::Revenue
            | Metric::ConversionRate => Value::Sum(0.0),
            _ => Value::Count(0),
        }
    }

    /// `a / b`, 0 when `b` is not positive.
    fn ratio(a: Value, b: f64) -> Value {
        Value::Sum(if b > 0.0 { a.as_f64() / b } else { 0.0 })
    }
}

impl From<Value> for serde_json::Value {
    /// Counts as integers; sums as integers when whole (and exact), else as
    /// numbers with a fraction (null when not finite).
    fn from(v: Value) -> Self {
        match v {
            Value::Count(n) => n.into(),
            Value::Sum(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => (x as i64).into(),
            Value::Sum(x) => serde_json::Number::from_f64(x)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
        }
    }
}

/// One row: the dimension's value (null when the hits have none) and one
/// value per metric, in the request's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The dimension value.
    pub key: Option<String>,
    /// Metric values.
    pub values: Vec<Value>,
}

/// A finished report; sent as a [`bdia_wire::Report`]:
/// `{"report_suite","dimension","from","to","rows":[{"<dimension>":..,"<metric>":..}],"totals":{..}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The report suite.
    pub report_suite: String,
    /// The dimension's name.
    pub dimension: String,
    /// First day.
    pub from: Date,
    /// Last day.
    pub to: Date,
    /// Metric names, in order.
    pub metrics: Vec<String>,
    /// The rows.
    pub rows: Vec<Row>,
    /// Totals over the whole range, one per metric.
    pub totals: Vec<Value>,
}

impl From<&Report> for bdia_wire::Report {
    fn from(r: &Report) -> Self {
        let entries = |values: &[Value]| -> Vec<(String, serde_json::Value)> {
            r.metrics
                .iter()
                .zip(values)
                .map(|(name, v)| (name.clone(), (*v).into()))
                .collect()
        };
        bdia_wire::Report {
            report_suite: r.report_suite.clone(),
            dimension: r.dimension.clone(),
            from: r.from.to_string(),
            to: r.to.to_string(),
            rows: r
                .rows
                .iter()
                .map(|row| {
                    let mut obj = vec![(r.dimension.clone(), row.key.clone().into())];
                    obj.extend(entries(&row.values));
                    bdia_wire::JsonObject(obj)
                })
                .collect(),
            totals: bdia_wire::JsonObject(entries(&r.totals)),
        }
    }
}

/// Serializes as its [`bdia_wire::Report`], the one definition of the
/// answer's JSON.
impl Serialize for Report {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        bdia_wire::Report::from(self).serialize(s)
    }
}

/// Runs reports over one lake. Cheap to clone; the Parquet metadata cache
/// is shared by every report.
#[derive(Clone)]
pub struct ReportEngine {
    lake: Lake,
    runtime: Arc<RuntimeEnv>,
    url: ObjectStoreUrl,
    target_partitions: usize,
}

impl std::fmt::Debug for ReportEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportEngine")
            .field("target_partitions", &self.target_partitions)
            .finish_non_exhaustive()
    }
}

/// `(start in UTC microseconds, offset in microseconds)` of every offset
/// period of `tz` that overlaps the days `from..=to` (with a day of margin).
fn offset_periods(tz: &TimeZone, from: Date, to: Date) -> Vec<(i64, i64)> {
    let midnight = |d: Date| {
        jiff::Timestamp::from_second(i64::from(table::date32(d)) * 86_400)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    };
    let start = midnight(from.yesterday().unwrap_or(from));
    let end = midnight(to.tomorrow().and_then(|d| d.tomorrow()).unwrap_or(to));
    let us = |o: jiff::tz::Offset| i64::from(o.seconds()) * 1_000_000;
    let mut out = vec![(i64::MIN, us(tz.to_offset(start)))];
    for t in tz.following(start) {
        if t.timestamp() >= end {
            break;
        }
        out.push((t.timestamp().as_microsecond(), us(t.offset())));
    }
    out
}

fn hour_label(index: i64) -> String {
    match jiff::Timestamp::from_second(index.saturating_mul(3600)) {
        Ok(t) => TimeZone::UTC
            .to_datetime(t)
            .strftime("%Y-%m-%dT%H:00")
            .to_string(),
        Err(_) => index.to_string(),
    }
}

/// Reads the `d` column of a result batch as row keys.
fn keys(batch: &RecordBatch, dim: Dimension) -> Result<Vec<Option<String>>, ReportError> {
    let col = batch.column_by_name("d").ok_or_else(|| missing("d"))?;
    let n = col.len();
    Ok(match dim {
        Dimension::Day => {
            let a = cast(col, &DataType::Date32)?;
            let a = a.as_primitive::<Date32Type>();
            (0..n)
                .map(|i| {
                    a.is_valid(i)
                        .then(|| table::from_date32(a.value(i)).to_string())
                })
                .collect()
        }
        Dimension::Hour => {
            let a = cast(col, &DataType::Int64)?;
            let a = a.as_primitive::<Int64Type>();
            (0..n)
                .map(|i| a.is_valid(i).then(|| hour_label(a.value(i))))
                .collect()
        }
        _ => {
            let a = cast(col, &DataType::Utf8)?;
            let a = a.as_string::<i32>();
            (0..n)
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect()
        }
    })
}

fn missing(name: &str) -> ReportError {
    ReportError::Query(datafusion::error::DataFusionError::Internal(format!(
        "result column {name} missing"
    )))
}

/// Reads a metric column as values.
fn values(batch: &RecordBatch, name: &str, metric: &Metric) -> Result<Vec<Value>, ReportError> {
    let col = batch.column_by_name(name).ok_or_else(|| missing(name))?;
    Ok(match metric {
        Metric::Event(_) | Metric::Revenue => {
            let a = cast(col, &DataType::Float64)?;
            let a = a.as_primitive::<Float64Type>();
            (0..a.len())
                .map(|i| Value::Sum(if a.is_valid(i) { a.value(i) } else { 0.0 }))
                .collect()
        }
        _ => {
            let a = cast(col, &DataType::Int64)?;
            let a = a.as_primitive::<Int64Type>();
            (0..a.len())
                .map(|i| {
                    Value::Count(if a.is_valid(i) {
                        a.value(i).max(0) as u64
                    } else {
                        0
                    })
                })
                .collect()
        }
    })
}

/// The cores a query may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl ReportEngine {
    /// An engine over `lake`, using every core.
    pub fn new(lake: Lake) -> Result<ReportEngine, ReportError> {
        ReportEngine::with_partitions(lake, cores())
    }

    /// An engine running each query on `target_partitions` partitions.
    pub fn with_partitions(
        lake: Lake,
        target_partitions: usize,
    ) -> Result<ReportEngine, ReportError> {
        ReportEngine::build(lake, target_partitions, RuntimeEnvBuilder::new())
    }

    /// An engine over `lake`, using every core, whose running reports
    /// together hold at most `bytes` for sorts, joins and aggregations (a
    /// fair pool: each running report gets its share). A report that needs
    /// more fails with [`ReportError::is_memory_limit`] instead of growing
    /// the process.
    pub fn with_memory_limit(lake: Lake, bytes: usize) -> Result<ReportEngine, ReportError> {
        let pool = Arc::new(datafusion::execution::memory_pool::FairSpillPool::new(
            bytes,
        ));
        ReportEngine::build(
            lake,
            cores(),
            RuntimeEnvBuilder::new().with_memory_pool(pool),
        )
    }

    fn build(
        lake: Lake,
        target_partitions: usize,
        runtime: RuntimeEnvBuilder,
    ) -> Result<ReportEngine, ReportError> {
        let url = ObjectStoreUrl::parse(LAKE_URL)?;
        let runtime = runtime.build_arc()?;
        runtime.register_object_store(url.as_ref(), lake.store().clone());
        Ok(ReportEngine {
            lake,
            runtime,
            url,
            target_partitions: target_partitions.max(1),
        })
    }

    async fn context(
        &self,
        parts: Vec<bdia_lake::PartRef>,
        req: &ReportRequest,
        metrics: &[Metric],
    ) -> Result<SessionContext, ReportError> {
        let config = SessionConfig::new()
            .with_target_partitions(self.target_partitions)
            .with_information_schema(false);
        let ctx = SessionContext::new_with_config_rt(config, self.runtime.clone());
        ctx.register_table(
            sql::LAKE_TABLE,
            Arc::new(table::PartsTable::new(self.url.clone(), parts)),
        )?;
        let needs = sql::ViewNeeds {
            include_bots: req.include_bots,
            entry_page: req.dimension == Dimension::EntryPage,
            exit_page: req.dimension == Dimension::ExitPage,
            time_spent: metrics.contains(&Metric::TotalSecondsSpent),
            products: req.dimension.is_product(),
        };
        let view = ctx.sql(&sql::hits_view(needs)).await?.into_view();
        ctx.register_table("hits", view)?;
        ctx.register_udf(udf::ReferrerHost::udf());
        if let Dimension::Evar(n) = req.dimension {
            ctx.register_udf(udf::PostEvar::udf(n));
        }
        let mut k = 0;
        for m in metrics {
            if let Metric::Event(name) = m {
                ctx.register_udf(udf::EventTotal::udf(sql::event_fn(k), name.clone()));
                k += 1;
            }
        }
        Ok(ctx)
    }

    async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, ReportError> {
        Ok(ctx.sql(sql).await?.collect().await?)
    }

    /// Runs `req` over the committed parts of `company`'s suite; `time_zone`
    /// is the suite's IANA time zone (`UTC` when it has none). Report suite
    /// IDs are per company: another company's suite of the same ID is never
    /// read.
    pub async fn run(
        &self,
        company: &str,
        req: &ReportRequest,
        time_zone: &str,
    ) -> Result<Report, ReportError> {
        let tz = TimeZone::get(time_zone).map_err(|_| {
            ReportError::invalid(
                "invalid_time_zone",
                format!(
                    "Unknown time zone '{time_zone}' of report suite {}",
                    req.report_suite
                ),
            )
        })?;
        let parts = self
            .lake
            .reader()
            .parts(company, &req.report_suite, req.from, req.to)
            .await?;
        // The metrics computed: those asked, then the parts of the ratios
        // among them that were not asked; ratios are computed from their
        // parts at the end.
        let mut metrics: Vec<Metric> = req.metrics.clone();
        for m in &req.metrics {
            for p in m.parts() {
                if !metrics.contains(p) {
                    metrics.push(p.clone());
                }
            }
        }
        let ctx = self.context(parts, req, &metrics).await?;
        let hour = sql::hour_expr(&offset_periods(&tz, req.from, req.to));
        let dim_sql = sql::dimension_expr(req.dimension, &hour);
        let distinct_visits = !req.dimension.is_time();

        let main_metrics: Vec<(usize, &Metric)> = metrics
            .iter()
            .enumerate()
            .filter(|(_, m)| **m != Metric::Bounces && m.parts().is_empty())
            .collect();
        let plan = sql::Plan {
            metrics: main_metrics.clone(),
            distinct_visits,
            products: req.dimension.is_product(),
        };
        let main_sql = sql::main_query(Some(&dim_sql), &plan);
        let non_additive: Vec<(usize, &Metric)> = main_metrics
            .iter()
            .filter(|(_, m)| !m.additive(&req.dimension))
            .copied()
            .collect();
        let totals_sql = (!non_additive.is_empty()).then(|| {
            sql::main_query(
                None,
                &sql::Plan {
                    metrics: non_additive.clone(),
                    distinct_visits,
                    products: req.dimension.is_product(),
                },
            )
        });
        let bounce_index = metrics.iter().position(|m| *m == Metric::Bounces);
        let bounces_sql = bounce_index.map(|_| sql::bounces_query(&dim_sql));

        let (main, totals, bounces) = futures::try_join!(
            Self::query(&ctx, &main_sql),
            async {
                match &totals_sql {
                    Some(q) => Self::query(&ctx, q).await.map(Some),
                    None => Ok(None),
                }
            },
            async {
                match &bounces_sql {
                    Some(q) => Self::query(&ctx, q).await.map(Some),
                    None => Ok(None),
                }
            },
        )?;

        // Rows by key.
        let zero: Vec<Value> = metrics.iter().map(Value::zero).collect();
        let mut by_key: HashMap<Option<String>, Vec<Value>> = HashMap::new();
        for batch in &main {
            let ks = keys(batch, req.dimension)?;
            let mut cols = Vec::new();
            for (i, m) in &main_metrics {
                cols.push((*i, values(batch, &format!("m{i}"), m)?));
            }
            for (r, k) in ks.into_iter().enumerate() {
                let row = by_key.entry(k).or_insert_with(|| zero.clone());
                for (i, col) in &cols {
                    row[*i] = col[r];
                }
            }
        }
        if let (Some(bi), Some(batches)) = (bounce_index, &bounces) {
            for batch in batches {
                let ks = keys(batch, req.dimension)?;
                let bs = values(batch, "b", &Metric::Bounces)?;
                for (k, b) in ks.into_iter().zip(bs) {
                    by_key.entry(k).or_insert_with(|| zero.clone())[bi] = b;
                }
            }
        }
        if req.dimension == Dimension::Day {
            let mut d = req.from;
            while d <= req.to {
                by_key
                    .entry(Some(d.to_string()))
                    .or_insert_with(|| zero.clone());
                match d.tomorrow() {
                    Ok(next) => d = next,
                    Err(_) => break,
                }
            }
        }

        // Totals: sums of every row, then the distinct counts.
        let mut totals_v = zero.clone();
        for row in by_key.values() {
            for (i, v) in row.iter().enumerate() {
                if metrics[i].additive(&req.dimension) {
                    totals_v[i] = totals_v[i].add(*v);
                }
            }
        }
        if let Some(batches) = &totals {
            for batch in batches {
                for (i, m) in &non_additive {
                    if let Some(v) = values(batch, &format!("m{i}"), m)?.first() {
                        totals_v[*i] = *v;
                    }
                }
            }
        }

        // Ratios from their parts, then only the metrics asked, in order.
        let finish = |values: Vec<Value>| -> Vec<Value> {
            let at = |m: &Metric| {
                let i = metrics
                    .iter()
                    .position(|x| x == m)
                    .expect("a part is computed");
                values[i]
            };
            req.metrics
                .iter()
                .enumerate()
                .map(|(i, m)| match m {
                    Metric::BounceRate => {
                        Value::ratio(at(&Metric::Bounces), at(&Metric::Entries).as_f64())
                    }
                    Metric::ConversionRate => {
                        Value::ratio(at(&Metric::Orders), at(&Metric::Visits).as_f64())
                    }
                    Metric::TimeSpentPerVisit => Value::ratio(
                        at(&Metric::TotalSecondsSpent),
                        at(&Metric::Visits).as_f64() - at(&Metric::Bounces).as_f64(),
                    ),
                    _ => values[i],
                })
                .collect()
        };
        let totals_v = finish(totals_v);
        let mut rows: Vec<Row> = by_key
            .into_iter()
            .map(|(key, values)| Row {
                key,
                values: finish(values),
            })
            .collect();
        if req.dimension.is_time() {
            rows.sort_by(|a, b| a.key.cmp(&b.key));
        } else {
            rows.sort_by(|a, b| {
                let (x, y) = (a.values[0].as_f64(), b.values[0].as_f64());
                y.partial_cmp(&x)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| match (&a.key, &b.key) {
                        (Some(p), Some(q)) => p.cmp(q),
                        (Some(_), None) => Ordering::Less,
                        (None, Some(_)) => Ordering::Greater,
                        (None, None) => Ordering::Equal,
                    })
            });
        }
        if let Some(limit) = req.limit {
            rows.truncate(limit);
        }
        Ok(Report {
            report_suite: req.report_suite.clone(),
            dimension: req.dimension.to_string(),
            from: req.from,
            to: req.to,
            metrics: req.metrics.iter().map(Metric::name).collect(),
            rows,
            totals: totals_v,
        })
    }
}

impl From<datafusion::arrow::error::ArrowError> for ReportError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        ReportError::Query(e.into())
    }
}
