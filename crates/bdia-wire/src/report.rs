//! Reports and console data (`/api/v1/...`): the report query and answer,
//! the report suite list and the visitor group overview.
//!
//! A report's rows and totals are JSON objects whose keys depend on the
//! query (the dimension's name, then one key per metric). They are kept as
//! [`JsonObject`]s, which keep their keys in the order written: the
//! dimension first, then the metrics in the order asked.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The query of `GET /api/v1/report-suites/{rsid}/report`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportQuery {
    /// Comma-separated metrics (`pageviews,visits,visitors`, `events:purchase`...).
    pub metrics: String,
    /// The dimension (`day` when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimension: Option<String>,
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day, `YYYY-MM-DD` (included).
    pub to: String,
    /// At most this many rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Count robots' hits (left out by default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_bots: bool,
}

impl ReportQuery {
    /// The query string's pairs, in the order `metrics, from, to,
    /// dimension, limit, include_bots`; absent options (and
    /// `include_bots` when false) are left out.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![
            ("metrics", self.metrics.clone()),
            ("from", self.from.clone()),
            ("to", self.to.clone()),
        ];
        if let Some(d) = &self.dimension {
            q.push(("dimension", d.clone()));
        }
        if let Some(l) = self.limit {
            q.push(("limit", l.to_string()));
        }
        if self.include_bots {
            q.push(("include_bots", "true".to_string()));
        }
        q
    }
}

/// A JSON object that keeps its keys in the order they were written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonObject(pub Vec<(String, Value)>);

impl JsonObject {
    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Appends `key: value` (the caller keeps keys distinct).
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.0.push((key.into(), value.into()));
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

impl Serialize for JsonObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = JsonObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonObject, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(JsonObject(out))
            }
        }

        d.deserialize_map(ObjectVisitor)
    }
}

/// A report: rows of `{"<dimension>": value, "<metric>": number...}` and
/// totals by metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The report suite.
    pub report_suite: String,
    /// The dimension's name.
    pub dimension: String,
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day, `YYYY-MM-DD` (included).
    pub to: String,
    /// The rows: the dimension's value (null when the hits have none) under
    /// the dimension's name, then one number per metric under its name.
    pub rows: Vec<JsonObject>,
    /// Totals over the whole range, one number per metric under its name.
    pub totals: JsonObject,
}

/// A report suite as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSuite {
    /// Report suite id.
    pub rsid: String,
    /// IANA time zone of its days and hours.
    pub time_zone: String,
    /// Whether it takes hits from the single-hit Data Insertion API
    /// (`/b/ss/...`).
    #[serde(default)]
    pub accept_single_hits: bool,
    /// A referrer whose host contains one of these is internal (traffic
    /// sources); empty: only the hit's own page host.
    #[serde(default)]
    pub internal_url_filters: Vec<String>,
    /// The eVars whose expiration or allocation is not the default
    /// (`visit`, `most_recent`), by eVar number.
    #[serde(default)]
    pub evar_settings: Vec<EvarSetting>,
}

/// The expiration and allocation of one eVar of a report suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvarSetting {
    /// The eVar number, 1 to 250.
    pub evar: u16,
    /// `hit`, `visit`, `never`, `day`, `week`, `month` (31 days),
    /// `quarter` (93), `year` (365), `<N>d`, or `event:<name>`
    /// (`event:purchase`); answered as `hit`, `visit`, `never`, `<N>d` or
    /// `event:<name>`.
    pub expiration: String,
    /// `most_recent` (default) or `original`.
    #[serde(default = "most_recent")]
    pub allocation: String,
}

fn most_recent() -> String {
    "most_recent".into()
}

/// The body of `PATCH /api/v1/report-suites/{rsid}`: the settings to
/// change (absent ones are kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteSettings {
    /// Take hits from the single-hit Data Insertion API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_single_hits: Option<bool>,
    /// Replace the internal URL filters (`[]` clears them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_url_filters: Option<Vec<String>>,
    /// Replace the eVar settings (`[]`: every eVar back to the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evar_settings: Option<Vec<EvarSetting>>,
}

/// The answer of `GET /api/v1/report-suites`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSuites {
    /// The caller's company's suites.
    pub report_suites: Vec<ReportSuite>,
}

/// One visitor group of the caller's company (`GET /api/v1/groups`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Visitor group id.
    pub visitor_group_id: String,
    /// Files waiting (`UPLOADED`).
    pub queued: u64,
    /// The file being processed, if any.
    pub in_progress: Option<String>,
    /// Files stopped on `ERROR`.
    pub errors: u64,
    /// The most recently completed file.
    pub last_completed: Option<String>,
    /// When it completed (unix seconds).
    pub last_completed_date: Option<i64>,
    /// Rows per second of that file (valid rows / processing time, at
    /// least one second).
    pub rows_per_second: Option<f64>,
    /// Files known in the group (of the listing's window).
    pub files: u64,
}

/// The answer of `GET /api/v1/groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Groups {
    /// By visitor group id.
    pub groups: Vec<Group>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report answer exactly as the server writes it: keys of rows in
    /// the order dimension, metrics asked.
    const REPORT: &str = concat!(
        r#"{"report_suite":"rs1","dimension":"page","from":"2026-01-01","to":"2026-01-02","#,
        r#""rows":[{"page":"Home","visits":3,"pageviews":1200,"events:purchase":2.5},"#,
        r#"{"page":null,"visits":1,"pageviews":0,"events:purchase":0}],"#,
        r#""totals":{"visits":4,"pageviews":1200,"events:purchase":2.5}}"#
    );

    #[test]
    fn report_keeps_key_order_and_text() {
        let r: Report = serde_json::from_str(REPORT).unwrap();
        assert_eq!(
            r.rows[0].keys().collect::<Vec<_>>(),
            ["page", "visits", "pageviews", "events:purchase"]
        );
        assert_eq!(r.rows[1].get("page"), Some(&Value::Null));
        assert_eq!(r.totals.get("pageviews"), Some(&Value::from(1200)));
        assert_eq!(r.totals.get("bounces"), None);
        assert_eq!(serde_json::to_string(&r).unwrap(), REPORT);
        let again: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn report_needs_its_fields() {
        let mut v: Value = serde_json::from_str(REPORT).unwrap();
        v.as_object_mut().unwrap().remove("totals");
        assert!(serde_json::from_value::<Report>(v).is_err());
        let mut v: Value = serde_json::from_str(REPORT).unwrap();
        v["rows"] = serde_json::json!([1]);
        assert!(serde_json::from_value::<Report>(v).is_err());
    }

    #[test]
    fn report_query_pairs_and_round_trip() {
        let q = ReportQuery {
            metrics: "pageviews,visits".into(),
            dimension: None,
            from: "2026-01-01".into(),
            to: "2026-01-31".into(),
            limit: Some(10),
            include_bots: false,
        };
        assert_eq!(
            q.pairs(),
            [
                ("metrics", "pageviews,visits".to_string()),
                ("from", "2026-01-01".to_string()),
                ("to", "2026-01-31".to_string()),
                ("limit", "10".to_string()),
            ]
        );
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(serde_json::from_str::<ReportQuery>(&json).unwrap(), q);
        let bots = ReportQuery {
            include_bots: true,
            ..q
        };
        assert_eq!(
            bots.pairs().last(),
            Some(&("include_bots", "true".to_string()))
        );
    }

    #[test]
    fn suites_and_groups_round_trip() {
        let s = ReportSuites {
            report_suites: vec![ReportSuite {
                rsid: "rs1".into(),
                time_zone: "Europe/Paris".into(),
                accept_single_hits: false,
                internal_url_filters: vec![],
                evar_settings: vec![],
            }],
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"report_suites":[{"rsid":"rs1","time_zone":"Europe/Paris","accept_single_hits":false,"internal_url_filters":[],"evar_settings":[]}]}"#
        );
        assert_eq!(serde_json::from_str::<ReportSuites>(&json).unwrap(), s);
        let g = Groups {
            groups: vec![
                Group {
                    visitor_group_id: "g1".into(),
                    queued: 2,
                    files: 2,
                    ..Group::default()
                },
                Group {
                    visitor_group_id: "g2".into(),
                    last_completed: Some("f".into()),
                    last_completed_date: Some(1_795_982_466),
                    rows_per_second: Some(1250.5),
                    files: 1,
                    ..Group::default()
                },
            ],
        };
        let json = serde_json::to_string(&g).unwrap();
        assert!(json.starts_with(
            r#"{"groups":[{"visitor_group_id":"g1","queued":2,"in_progress":null,"errors":0,"last_completed":null,"last_completed_date":null,"rows_per_second":null,"files":2}"#
        ));
        assert_eq!(serde_json::from_str::<Groups>(&json).unwrap(), g);
    }
}
