//! Header analysis (spec 3, 3.1) and the row rules (spec 3.2, 3.3): a
//! [`Header`] is built once per file, then [`Header::check`] decides each row
//! and [`ValidRow::to_hit`] normalizes it on demand.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use csv::StringRecord;

use crate::error::{FileError, RowProblem};
use crate::fields::{CidAttr, Column, Field};
use crate::hit::{
    parse_events, parse_is_mc_seed, AuthState, CustomerId, Hit, HitType, LinkType, Value, VarMap,
    Visitor, VisitorKind,
};
use crate::query::{self, Pair};
use crate::suite::ReportSuiteId;
use crate::timestamp;

/// Decides whether the caller may write to a report suite. It is only ever
/// asked about valid report-suite IDs ([`ReportSuiteId::check`] passed).
pub type SuitePolicy = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Per-caller settings of the row rules.
#[derive(Clone, Default)]
pub struct RowRules {
    /// When the company is provisioned with one seed customerIDType, only
    /// that type's isMCSeed counts; other types fall back to the next
    /// identifier. `None`: any type may seed, the first in header order wins.
    pub seed_customer_id_type: Option<String>,
    /// Which report suites the caller may write to; `None` allows every
    /// valid ID.
    pub allow_report_suite: Option<SuitePolicy>,
}

impl std::fmt::Debug for RowRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowRules")
            .field("seed_customer_id_type", &self.seed_customer_id_type)
            .field("allow_report_suite", &self.allow_report_suite.is_some())
            .finish()
    }
}

#[derive(Debug, Clone)]
struct CidColumns {
    id_type: String,
    id: Option<usize>,
    auth_state: Option<usize>,
    is_mc_seed: Option<usize>,
}

/// Most columns a header may have: the contract's variables are a few
/// hundred, so this leaves room for many customer-ID types and unknown
/// columns while bounding the work per row.
pub const MAX_COLUMNS: usize = 10_000;

/// Most bytes the header's column names may take in all (1 MiB).
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// The size limit of the header line when it is read
/// ([`crate::records::RecordReader::read`]): every header within
/// [`MAX_HEADER_BYTES`] of names and [`MAX_COLUMNS`] columns fits.
pub const MAX_HEADER_RECORD_BYTES: usize = MAX_HEADER_BYTES + MAX_COLUMNS;

/// The analysed header of a file.
#[derive(Debug, Clone)]
pub struct Header {
    names: Vec<String>,
    columns: Vec<Option<Column>>,
    simple: [Option<usize>; Field::COUNT],
    query_string: Option<usize>,
    cids: Vec<CidColumns>,
}

impl Header {
    /// Analyses the header fields (a leading UTF-8 BOM is stripped).
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Header, FileError> {
        if names.len() > MAX_COLUMNS {
            return Err(FileError::TooManyColumns {
                found: names.len(),
                max: MAX_COLUMNS,
            });
        }
        let bytes: usize = names.iter().map(|n| n.as_ref().len()).sum();
        if bytes > MAX_HEADER_BYTES {
            return Err(FileError::HeaderTooLong {
                bytes,
                max: MAX_HEADER_BYTES,
            });
        }
        let names: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let n = n.as_ref();
                if i == 0 {
                    n.strip_prefix('\u{feff}').unwrap_or(n).to_string()
                } else {
                    n.to_string()
                }
            })
            .collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut columns = Vec::with_capacity(names.len());
        let mut simple = [None; Field::COUNT];
        let mut query_string = None;
        let mut cids: Vec<CidColumns> = Vec::new();
        // Position in `cids` by customer-ID type: one lookup per column, so
        // the analysis is linear in the number of columns.
        let mut cid_pos: HashMap<String, usize> = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(FileError::EmptyColumnName { column: i + 1 });
            }
            let column = Column::from_header(name);
            let key = match &column {
                Some(c) => c.duplicate_key(name),
                None => name.to_ascii_lowercase(),
            };
            if let Some(first) = seen.insert(key, i) {
                return Err(FileError::DuplicateColumn {
                    name: name.clone(),
                    first: first + 1,
                    second: i + 1,
                });
            }
            match &column {
                Some(Column::Field(f)) => simple[*f as usize] = Some(i),
                Some(Column::QueryString) => query_string = Some(i),
                Some(Column::CustomerId { id_type, attr }) => {
                    let pos = *cid_pos.entry(id_type.clone()).or_insert_with(|| {
                        cids.push(CidColumns {
                            id_type: id_type.clone(),
                            id: None,
                            auth_state: None,
                            is_mc_seed: None,
                        });
                        cids.len() - 1
                    });
                    let slot = match attr {
                        CidAttr::Id => &mut cids[pos].id,
                        CidAttr::AuthState => &mut cids[pos].auth_state,
                        CidAttr::IsMcSeed => &mut cids[pos].is_mc_seed,
                    };
                    *slot = Some(i);
                }
                _ => {}
            }
            columns.push(column);
        }
        if simple[Field::Timestamp as usize].is_none() {
            return Err(FileError::MissingTimestampColumn);
        }
        if !columns
            .iter()
            .any(|c| c.as_ref().is_some_and(Column::is_visitor_id_column))
        {
            return Err(FileError::MissingVisitorIdColumn);
        }
        Ok(Header {
            names,
            columns,
            simple,
            query_string,
            cids,
        })
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always false: a parsed header has at least a timestamp column.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The column names, as written (BOM stripped).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Columns that are not part of the contract: `(1-based position, name)`.
    pub fn unknown_columns(&self) -> Vec<(usize, &str)> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_none())
            .map(|(i, _)| (i + 1, self.names[i].as_str()))
            .collect()
    }

    fn col<'a>(&self, fields: &'a StringRecord, f: Field) -> Option<&'a str> {
        self.simple[f as usize]
            .map(|i| &fields[i])
            .filter(|v| !v.is_empty())
    }

    /// Applies the row rules to one row (already known to be UTF-8).
    pub fn check<'a>(
        &'a self,
        fields: &'a StringRecord,
        rules: &RowRules,
    ) -> Result<ValidRow<'a>, RowProblem> {
        if fields.len() != self.names.len() {
            return Err(RowProblem::ColumnCount {
                expected: self.names.len(),
                found: fields.len(),
            });
        }
        let qs = match self.query_string.map(|i| &fields[i]) {
            Some(raw) if !raw.is_empty() => {
                query::decode(raw).map_err(|bad| RowProblem::InvalidUtf8 {
                    place: format!("queryString '{}'", bad.key),
                })?
            }
            _ => Vec::new(),
        };
        let view = RowView {
            header: self,
            fields,
            qs: &qs,
        };
        let visitor = view.visitor(rules)?;
        let ts_raw = self.col(fields, Field::Timestamp);
        let timestamp = match ts_raw {
            None => return Err(RowProblem::MissingTimestamp),
            Some(raw) => timestamp::parse(raw).map_err(|reason| RowProblem::InvalidTimestamp {
                value: raw.to_string(),
                reason,
            })?,
        };
        let rsids = self
            .col(fields, Field::ReportSuiteId)
            .filter(|r| r.split(',').any(|s| !s.trim().is_empty()))
            .ok_or(RowProblem::MissingReportSuite)?;
        // Every suite of the list must be a valid ID before any caller
        // policy sees it: a bad name is never looked up or created.
        for rsid in split_suites(rsids) {
            ReportSuiteId::check(rsid).map_err(|reason| RowProblem::InvalidReportSuite {
                rsid: rsid.to_string(),
                reason,
            })?;
        }
        if let Some(allow) = &rules.allow_report_suite {
            if let Some(bad) = split_suites(rsids).find(|s| !allow(s)) {
                return Err(RowProblem::ReportSuiteNotAllowed {
                    rsid: bad.to_string(),
                });
            }
        }
        if self.col(fields, Field::UserAgent).is_none() {
            return Err(RowProblem::MissingUserAgent);
        }
        let reportable = view.get(Field::PageUrl).is_some()
            || view.get(Field::PageName).is_some()
            || view.qs_value("pe").is_some()
            || (self.col(fields, Field::LinkType).is_some()
                && (view.get(Field::LinkName).is_some() || view.get(Field::LinkUrl).is_some()));
        if !reportable {
            return Err(RowProblem::NothingToReport);
        }
        Ok(ValidRow {
            header: self,
            fields,
            qs,
            visitor,
            timestamp,
            rsids,
        })
    }
}

fn split_suites(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Where a customer-ID attribute came from, for messages.
#[derive(Clone, Copy)]
enum Src<'a> {
    Column(&'a str),
    Query,
}

struct CidView<'a> {
    id_type: &'a str,
    id: Option<&'a str>,
    auth: Option<(&'a str, Src<'a>)>,
    seed: Option<(&'a str, Src<'a>)>,
}

struct RowView<'h, 'q> {
    header: &'h Header,
    fields: &'h StringRecord,
    qs: &'q [Pair<'h>],
}

impl<'h, 'q> RowView<'h, 'q> {
    fn qs_value(&self, key: &str) -> Option<&'q str> {
        self.qs
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(key) && !v.is_empty())
            .map(|(_, v)| v.as_ref())
    }

    /// Column value when non-empty, else the queryString's.
    fn get(&self, f: Field) -> Option<&'q str>
    where
        'h: 'q,
    {
        self.header
            .col(self.fields, f)
            .or_else(|| f.query_key().and_then(|k| self.qs_value(k)))
    }

    /// The queryString value of `cid.<id_type>.<attr>` (type case-sensitive).
    fn qs_cid(&self, id_type: &str, attr: &str) -> Option<&'q str> {
        self.qs
            .iter()
            .find(|(k, v)| {
                !v.is_empty()
                    && cid_key(k).is_some_and(|(t, a)| t == id_type && a.eq_ignore_ascii_case(attr))
            })
            .map(|(_, v)| v.as_ref())
    }

    /// Judges every customer ID of the row (header types in header order,
    /// then types only the queryString names) and returns the seeded visitor,
    /// if any.
    fn seeded_visitor(&self, rules: &RowRules) -> Result<Option<Visitor>, RowProblem>
    where
        'h: 'q,
    {
        let mut seeded: Option<Visitor> = None;
        for c in &self.header.cids {
            let pick = |i: Option<usize>| i.map(|i| &self.fields[i]).filter(|v| !v.is_empty());
            let column = |i: Option<usize>| {
                pick(i).map(|v| (v, Src::Column(&self.header.names[i.expect("picked")])))
            };
            let view = CidView {
                id_type: &c.id_type,
                id: pick(c.id).or_else(|| self.qs_cid(&c.id_type, "id")),
                auth: column(c.auth_state)
                    .or_else(|| self.qs_cid(&c.id_type, "as").map(|v| (v, Src::Query))),
                seed: column(c.is_mc_seed)
                    .or_else(|| self.qs_cid(&c.id_type, "ismcseed").map(|v| (v, Src::Query))),
            };
            judge(view, rules, &mut seeded)?;
        }
        for (i, (k, _)) in self.qs.iter().enumerate() {
            let Some((id_type, _)) = cid_key(k) else {
                continue;
            };
            let seen_before = self.header.cids.iter().any(|c| c.id_type == id_type)
                || self.qs[..i]
                    .iter()
                    .any(|(k2, _)| cid_key(k2).is_some_and(|(t, _)| t == id_type));
            if seen_before {
                continue;
            }
            let view = CidView {
                id_type,
                id: self.qs_cid(id_type, "id"),
                auth: self.qs_cid(id_type, "as").map(|v| (v, Src::Query)),
                seed: self.qs_cid(id_type, "ismcseed").map(|v| (v, Src::Query)),
            };
            judge(view, rules, &mut seeded)?;
        }
        Ok(seeded)
    }

    fn visitor(&self, rules: &RowRules) -> Result<Visitor, RowProblem>
    where
        'h: 'q,
    {
        if let Some(v) = self.seeded_visitor(rules)? {
            return Ok(v);
        }
        let (kind, id) = if let Some(v) = self.get(Field::VisitorId) {
            (VisitorKind::Vid, v)
        } else if let Some(v) = self.get(Field::MarketingCloudVisitorId) {
            (VisitorKind::Mcid, v)
        } else if let Some(v) = self.get(Field::IpAddress) {
            (VisitorKind::Ip, v)
        } else {
            return Err(RowProblem::MissingVisitorId);
        };
        Ok(Visitor {
            kind,
            customer_id_type: None,
            id: id.to_string(),
        })
    }
}

/// Splits a queryString key `cid.<type>.<attr>` into `(type, attr)`.
fn cid_key(k: &str) -> Option<(&str, &str)> {
    if k.len() < 6 || !k.as_bytes()[..4].eq_ignore_ascii_case(b"cid.") {
        return None;
    }
    let (t, a) = k[4..].rsplit_once('.')?;
    (!t.is_empty()).then_some((t, a))
}

/// Checks one customer ID's values; records it as the visitor when it is the
/// first seed that counts.
fn judge<'a>(
    c: CidView<'a>,
    rules: &RowRules,
    seeded: &mut Option<Visitor>,
) -> Result<(), RowProblem> {
    if let Some((v, src)) = c.auth {
        if AuthState::parse(v).is_err() {
            return Err(RowProblem::InvalidAuthState {
                place: place(src, c.id_type, "as"),
                value: v.to_string(),
            });
        }
    }
    let seed = match c.seed {
        Some((v, src)) => parse_is_mc_seed(v).map_err(|_| RowProblem::InvalidIsMcSeed {
            place: place(src, c.id_type, "ismcseed"),
            value: v.to_string(),
        })?,
        None => false,
    };
    let counts = rules
        .seed_customer_id_type
        .as_deref()
        .is_none_or(|t| t == c.id_type);
    if seed && counts {
        let Some(id) = c.id else {
            return Err(RowProblem::SeedWithoutId {
                id_type: c.id_type.to_string(),
            });
        };
        if seeded.is_none() {
            *seeded = Some(Visitor {
                kind: VisitorKind::Customer,
                customer_id_type: Some(c.id_type.to_string()),
                id: id.to_string(),
            });
        }
    }
    Ok(())
}

fn place(src: Src<'_>, id_type: &str, query_attr: &str) -> String {
    match src {
        Src::Column(name) => format!("'{name}'"),
        Src::Query => format!("queryString 'cid.{id_type}.{query_attr}'"),
    }
}

/// A row that passed every rule; [`ValidRow::to_hit`] normalizes it.
#[derive(Debug)]
pub struct ValidRow<'a> {
    header: &'a Header,
    fields: &'a StringRecord,
    qs: Vec<Pair<'a>>,
    visitor: Visitor,
    timestamp: i64,
    rsids: &'a str,
}

impl ValidRow<'_> {
    /// The row's fields as read, in header order.
    pub fn fields(&self) -> &StringRecord {
        self.fields
    }

    /// The header the row was checked against.
    pub fn header(&self) -> &Header {
        self.header
    }

    /// The visitor chosen by priority.
    pub fn visitor(&self) -> &Visitor {
        &self.visitor
    }

    /// Unix seconds, UTC.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The report suites named by the row, each a valid report-suite ID.
    pub fn report_suites(&self) -> impl Iterator<Item = &str> {
        split_suites(self.rsids)
    }

    /// Builds the normalized hit: columns first, then queryString values for
    /// the variables the columns left empty.
    pub fn to_hit(&self, row: u64) -> Hit {
        let h = self.header;
        let mut hit = Hit {
            row,
            timestamp: self.timestamp,
            report_suites: self.report_suites().map(Value::new).collect(),
            visitor: self.visitor.clone(),
            hit_type: HitType::PageView,
            vars: vec![None; Field::COUNT],
            evars: VarMap::new(),
            props: VarMap::new(),
            hiers: VarMap::new(),
            lists: VarMap::new(),
            context_data: BTreeMap::new(),
            hints: BTreeMap::new(),
            customer_ids: BTreeMap::new(),
            events: Vec::new(),
        };
        // Values are copied only where they are kept (the first value of a
        // variable wins); header columns are matched by reference.
        for (i, c) in h.columns.iter().enumerate() {
            let v = &self.fields[i];
            if let Some(c) = c.as_ref().filter(|_| !v.is_empty()) {
                put(&mut hit, c, v);
            }
        }
        for (k, v) in &self.qs {
            if v.is_empty() {
                continue;
            }
            if let Some(c) = Column::from_query_key(k) {
                put(&mut hit, &c, v);
            }
        }
        let link_type = hit.get(Field::LinkType).and_then(LinkType::normalize);
        hit.hit_type = match (link_type, hit.get(Field::LinkName)) {
            (Some(t), _) => HitType::Link(t),
            (None, Some(_)) => HitType::Link(LinkType::Custom),
            (None, None) => HitType::PageView,
        };
        if let Some(events) = hit.get(Field::Events) {
            hit.events = parse_events(events);
        }
        hit
    }
}

/// Sets one variable of a hit unless it already has a value.
fn put(hit: &mut Hit, column: &Column, value: &str) {
    fn first(map: &mut VarMap, n: u16, value: &str) {
        map.insert_first(n, || Value::new(value));
    }
    match column {
        Column::Field(f) => {
            hit.vars[*f as usize].get_or_insert_with(|| Value::new(value));
        }
        Column::EVar(n) => first(&mut hit.evars, *n, value),
        Column::Prop(n) => first(&mut hit.props, *n, value),
        Column::Hier(n) => first(&mut hit.hiers, *n, value),
        Column::List(n) => first(&mut hit.lists, *n, value),
        Column::ContextData(k) => {
            if !hit.context_data.contains_key(k) {
                hit.context_data.insert(k.clone(), value.to_string());
            }
        }
        Column::Hint(name) => {
            if !hit.hints.contains_key(*name) {
                hit.hints.insert(name.to_string(), value.to_string());
            }
        }
        Column::CustomerId { id_type, attr } => {
            if !hit.customer_ids.contains_key(id_type) {
                hit.customer_ids.insert(
                    id_type.clone(),
                    CustomerId {
                        id: String::new(),
                        auth_state: None,
                        is_mc_seed: false,
                    },
                );
            }
            let c = hit.customer_ids.get_mut(id_type).expect("inserted above");
            match attr {
                CidAttr::Id if c.id.is_empty() => c.id = value.to_string(),
                CidAttr::AuthState if c.auth_state.is_none() => {
                    c.auth_state = AuthState::parse(value).ok().flatten();
                }
                CidAttr::IsMcSeed if !c.is_mc_seed => {
                    c.is_mc_seed = parse_is_mc_seed(value).unwrap_or(false);
                }
                _ => {}
            }
        }
        Column::QueryString => {}
    }
}
