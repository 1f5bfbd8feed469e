//! The SQL of a report, built only from parsed [`Metric`]s and
//! [`Dimension`]s, numbers, and the fixed names of lake columns.
//!
//! The main query aggregates in levels so that distinct counts of
//! composite keys are plain group-bys:
//!
//! ```text
//! h:  one row per hit: d (the dimension), t, v (visitor), n (visit), per-hit metric values
//! l1: GROUP BY d [, t, v] [, n]     sums of per-hit values
//! l2: GROUP BY d [, t, v]           count(*) = distinct visits (when n was a key)
//! l3: GROUP BY d                    count(*) = distinct visitors
//! ```
//!
//! Every metric is aliased `m<i>` after its position in the request.
//! Bounces come from their own query (visits with exactly one hit, that hit
//! being the visit's first, counted on that hit's dimension value).

use std::fmt::Write as _;

use crate::request::{Dimension, Metric};

/// Lake column names, quoted (DataFusion folds unquoted names to lower case).
fn col(name: &str) -> String {
    debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    format!("\"{name}\"")
}

/// The dimension expression over the `hits` table. `hour_expr` is the
/// local hour index (hours since 1970-01-01T00:00 local time).
pub(crate) fn dimension_expr(dim: Dimension, hour_expr: &str) -> String {
    match dim {
        Dimension::Day => col("date"),
        Dimension::Hour => hour_expr.to_string(),
        Dimension::Page => page_expr(),
        Dimension::PageUrl => col("page_url"),
        Dimension::LinkName => col("link_name"),
        Dimension::LinkType => format!(
            "CASE {ht} WHEN 'link_download' THEN 'download' WHEN 'link_exit' THEN 'exit' WHEN 'link_custom' THEN 'custom' END",
            ht = col("hit_type")
        ),
        Dimension::Channel => col("channel"),
        Dimension::Campaign => col("campaign"),
        Dimension::ReferrerHost => format!("referrer_host({})", col("referrer")),
        Dimension::Evar(n) => format!(
            "{}({}, {})",
            crate::udf::post_evar_fn(n),
            col("post_evars"),
            col(&format!("eVar{n}"))
        ),
        Dimension::Prop(n) => col(&format!("prop{n}")),
        Dimension::VisitorIdType => col("visitor_id_type"),
        Dimension::FileId => col("file_id"),
        Dimension::Browser => col("browser"),
        Dimension::BrowserVersion => format!(
            "CASE WHEN {b} IS NOT NULL THEN concat_ws(' ', {b}, {v}) END",
            b = col("browser"),
            v = col("browser_version")
        ),
        Dimension::Os => col("os"),
        Dimension::DeviceType => col("device_type"),
        Dimension::ReferrerType => col("referrer_type"),
        Dimension::SearchEngine => col("search_engine"),
        Dimension::EntryPage => col(ENTRY_PAGE),
        Dimension::ExitPage => col(EXIT_PAGE),
        Dimension::Product => format!("get_field({}, 'product')", col(PRODUCT)),
        Dimension::Category => format!("get_field({}, 'category')", col(PRODUCT)),
    }
}

/// The page of a page view: `page_name`, else `page_url`; null for link hits.
fn page_expr() -> String {
    format!(
        "CASE WHEN {ht} = 'page_view' THEN coalesce({pn}, {pu}) END",
        ht = col("hit_type"),
        pn = col("page_name"),
        pu = col("page_url")
    )
}

/// The name of the lake's table in a report's context; reports read the
/// view [`hits_view`] named `hits`.
pub(crate) const LAKE_TABLE: &str = "lake_hits";
/// Columns the view adds, when asked.
const ENTRY_PAGE: &str = "entry_page";
const EXIT_PAGE: &str = "exit_page";
const TIME_SPENT: &str = "time_spent";
/// One product of the hit (rows by product).
const PRODUCT: &str = "product";

/// What the `hits` view of a report holds besides the lake's columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ViewNeeds {
    /// Keep robots' hits.
    pub include_bots: bool,
    /// `entry_page`: the page of the visit's first page view.
    pub entry_page: bool,
    /// `exit_page`: the page of the visit's last page view.
    pub exit_page: bool,
    /// `time_spent`: seconds to the visit's next hit (0 for its last).
    pub time_spent: bool,
    /// One row per product of each hit (`product`), after the visit-level
    /// columns are computed over the hits.
    pub products: bool,
}

/// The `hits` view: the lake's rows of the range, robots left out unless
/// asked, with the visit-level columns the report needs, computed over
/// the range's hits of each visit (`visitor_id_type`, `visitor_id`,
/// `visit_num`): window functions, so a visit's entry page, exit page
/// and times are those of all its hits, whichever file they came from.
pub(crate) fn hits_view(needs: ViewNeeds) -> String {
    let visit = format!(
        "PARTITION BY {}, {}, {}",
        col("visitor_id_type"),
        col("visitor_id"),
        col("visit_num")
    );
    let page_first = format!(
        "CASE WHEN {} = 'page_view' THEN 0 ELSE 1 END",
        col("hit_type")
    );
    let all = "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING";
    // The page of the visit's first page view in `order` (page views
    // first, then by page number and time).
    let page_of_visit = |order: &str, alias: &str| {
        format!(
            "first_value({page}) OVER ({visit} ORDER BY {page_first}, {pn} {order}, {t} {order} {all}) AS {alias}",
            page = page_expr(),
            pn = col("visit_page_num"),
            t = col("hit_time"),
        )
    };
    let mut select = vec!["*".to_string()];
    if needs.entry_page {
        select.push(page_of_visit("ASC", ENTRY_PAGE));
    }
    if needs.exit_page {
        select.push(page_of_visit("DESC", EXIT_PAGE));
    }
    if needs.time_spent {
        let t = format!("CAST({} AS BIGINT)", col("hit_time"));
        select.push(format!(
            "coalesce(lead({t}) OVER ({visit} ORDER BY {t}, {pn}, {f}, {r}) - {t}, 0) / 1000000 AS {TIME_SPENT}",
            pn = col("visit_page_num"),
            f = col("file_id"),
            r = col("row_number"),
        ));
    }
    let mut q = format!("SELECT {} FROM {LAKE_TABLE}", select.join(", "));
    if !needs.include_bots {
        q.push_str(&format!(" WHERE {} IS NOT TRUE", col("is_bot")));
    }
    if needs.products {
        q = format!(
            "SELECT *, unnest({}) AS {PRODUCT} FROM ({q})",
            col("product_list")
        );
    }
    q
}

/// The local hour index of `hit_time`: UTC microseconds plus the zone's
/// offset, by the transitions `(from_us, offset_us)` sorted by time (the
/// first applies before the second's start, and so on).
pub(crate) fn hour_expr(offsets: &[(i64, i64)]) -> String {
    let ts = format!("CAST({} AS BIGINT)", col("hit_time"));
    let offset = match offsets {
        [] => "0".to_string(),
        [(_, only)] => only.to_string(),
        [first, rest @ ..] => {
            let mut s = String::from("CASE");
            let mut prev = first.1;
            for (start, off) in rest {
                let _ = write!(s, " WHEN {ts} < {start} THEN {prev}");
                prev = *off;
            }
            let _ = write!(s, " ELSE {prev} END");
            s
        }
    };
    format!("(({ts} + {offset}) / 3600000000)")
}

/// The name of the event function of the `k`-th event metric.
pub(crate) fn event_fn(k: usize) -> String {
    format!("event_total_{k}")
}

/// Which metrics need which grouping.
pub(crate) struct Plan<'a> {
    /// `(alias index, metric)` of the metrics of the main query.
    pub metrics: Vec<(usize, &'a Metric)>,
    /// Whether `visits` is a distinct count (non-time dimension).
    pub distinct_visits: bool,
    /// Rows are one per product of a hit: revenue, units and events are
    /// each product's share.
    pub products: bool,
}

/// The main query: `d` and `m<i>` for every metric of `plan` (bounces
/// excluded). `dim` is the dimension expression; without one (the totals
/// of a report) there is no `d` and a single row.
///
/// No key is ever a constant: DataFusion treats a constant group key as a
/// sorted one and then emits the groups `batch_size` at a time, shifting
/// every remaining group each time (quadratic in the number of groups).
pub(crate) fn main_query(dim: Option<&str>, plan: &Plan<'_>) -> String {
    let has = |f: &dyn Fn(&Metric) -> bool| plan.metrics.iter().any(|(_, m)| f(m));
    let visitors = has(&|m| *m == Metric::Visitors);
    let need_n = plan.distinct_visits && has(&|m| *m == Metric::Visits);
    let need_tv = visitors || need_n;

    // Per-hit values summed at level 1.
    let mut per_hit: Vec<(String, String)> = Vec::new();
    let mut event_k = 0;
    for (i, m) in &plan.metrics {
        let alias = format!("m{i}");
        let expr = match m {
            Metric::PageViews => format!(
                "CASE WHEN {} = 'page_view' THEN 1 ELSE 0 END",
                col("hit_type")
            ),
            Metric::LinkHits => format!(
                "CASE WHEN {} <> 'page_view' THEN 1 ELSE 0 END",
                col("hit_type")
            ),
            Metric::Hits => "1".to_string(),
            Metric::Visits if !plan.distinct_visits => {
                format!("CASE WHEN {} THEN 1 ELSE 0 END", col("new_visit"))
            }
            Metric::Entries => format!("CASE WHEN {} THEN 1 ELSE 0 END", col("new_visit")),
            Metric::TotalSecondsSpent => col(TIME_SPENT),
            Metric::Event(_) => {
                let e = if plan.products {
                    format!(
                        "{}(get_field({}, 'events'), {}, {})",
                        event_fn(event_k),
                        col(PRODUCT),
                        col("post_events"),
                        col("events")
                    )
                } else {
                    format!(
                        "{}({}, {})",
                        event_fn(event_k),
                        col("post_events"),
                        col("events")
                    )
                };
                event_k += 1;
                e
            }
            Metric::Orders => format!("coalesce({}, 0)", col("orders")),
            Metric::Revenue if plan.products => format!(
                "CASE WHEN {} = 1 THEN coalesce(get_field({}, 'price'), 0) ELSE 0 END",
                col("orders"),
                col(PRODUCT)
            ),
            Metric::Units if plan.products => format!(
                "CASE WHEN {} = 1 THEN coalesce(get_field({}, 'quantity'), 0) ELSE 0 END",
                col("orders"),
                col(PRODUCT)
            ),
            Metric::Revenue => format!("coalesce({}, 0)", col("revenue")),
            Metric::Units => format!("coalesce({}, 0)", col("units")),
            Metric::Visits
            | Metric::Visitors
            | Metric::Bounces
            | Metric::BounceRate
            | Metric::TimeSpentPerVisit
            | Metric::ConversionRate => continue,
        };
        per_hit.push((alias, expr));
    }

    let mut h: Vec<String> = Vec::new();
    if let Some(dim) = dim {
        h.push(format!("{dim} AS d"));
    }
    if need_tv {
        h.push(format!("{} AS t", col("visitor_id_type")));
        h.push(format!("{} AS v", col("visitor_id")));
    }
    if need_n {
        h.push(format!("{} AS n", col("visit_num")));
    }
    for (alias, expr) in &per_hit {
        h.push(format!("{expr} AS {alias}"));
    }
    if h.is_empty() {
        h.push("1 AS one".to_string());
    }
    let h = format!("SELECT {} FROM hits", h.join(", "));

    let d: Vec<String> = dim.iter().map(|_| "d".to_string()).collect();
    // `SELECT keys, sums, extra FROM (inner) [GROUP BY keys]`.
    let level = |keys: &[String], extra: &[String], inner: &str| -> String {
        let mut select: Vec<String> = keys.to_vec();
        select.extend(per_hit.iter().map(|(a, _)| format!("sum({a}) AS {a}")));
        select.extend(extra.iter().cloned());
        if select.is_empty() {
            select.push("count(*) AS c".to_string());
        }
        let mut q = format!("SELECT {} FROM ({inner})", select.join(", "));
        if !keys.is_empty() {
            q.push_str(&format!(" GROUP BY {}", keys.join(", ")));
        }
        q
    };

    let mut keys = d.clone();
    if need_tv {
        keys.push("t".into());
        keys.push("v".into());
    }
    if need_n {
        keys.push("n".into());
    }
    let mut q = level(&keys, &[], &h);

    let visits_alias = plan
        .metrics
        .iter()
        .find(|(_, m)| **m == Metric::Visits)
        .map(|(i, _)| format!("m{i}"));
    let visitors_alias = plan
        .metrics
        .iter()
        .find(|(_, m)| **m == Metric::Visitors)
        .map(|(i, _)| format!("m{i}"));

    if need_n {
        let va = visits_alias.clone().unwrap_or_default();
        let count = [format!("count(*) AS {va}")];
        if visitors {
            let mut tv = d.clone();
            tv.push("t".into());
            tv.push("v".into());
            q = level(&tv, &count, &q);
        } else {
            return level(&d, &count, &q);
        }
    }
    if visitors {
        let mut extra = Vec::new();
        if need_n {
            let va = visits_alias.unwrap_or_default();
            extra.push(format!("sum({va}) AS {va}"));
        }
        extra.push(format!(
            "count(*) AS {}",
            visitors_alias.unwrap_or_default()
        ));
        q = level(&d, &extra, &q);
    }
    q
}

/// The bounces query: `d`, `b`.
pub(crate) fn bounces_query(dim: &str) -> String {
    format!(
        "SELECT d, count(*) AS b FROM (\
           SELECT min(d) AS d FROM (\
             SELECT {dim} AS d, {t} AS t, {v} AS v, {n} AS n, {nv} AS nv FROM hits\
           ) GROUP BY t, v, n HAVING count(*) = 1 AND max(CASE WHEN nv THEN 1 ELSE 0 END) = 1\
         ) GROUP BY d",
        t = col("visitor_id_type"),
        v = col("visitor_id"),
        n = col("visit_num"),
        nv = col("new_visit"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_expression_switches_offsets() {
        assert_eq!(
            hour_expr(&[]),
            "((CAST(\"hit_time\" AS BIGINT) + 0) / 3600000000)"
        );
        let e = hour_expr(&[(0, -5), (100, -4), (200, -5)]);
        assert!(
            e.contains("WHEN CAST(\"hit_time\" AS BIGINT) < 100 THEN -5"),
            "{e}"
        );
        assert!(e.contains("< 200 THEN -4 ELSE -5 END"), "{e}");
    }

    #[test]
    fn daily_report_groups_by_visitor_once() {
        let m = [Metric::PageViews, Metric::Visits, Metric::Visitors];
        let plan = Plan {
            metrics: m.iter().enumerate().collect(),
            distinct_visits: false,
            products: false,
        };
        let q = main_query(Some("\"date\""), &plan);
        assert_eq!(q.matches("GROUP BY").count(), 2, "{q}");
    }

    #[test]
    fn distinct_visits_add_a_level() {
        let m = [Metric::Visits, Metric::Visitors];
        let plan = Plan {
            metrics: m.iter().enumerate().collect(),
            distinct_visits: true,
            products: false,
        };
        let q = main_query(Some("\"page_url\""), &plan);
        assert_eq!(q.matches("GROUP BY").count(), 3, "{q}");
    }
}
