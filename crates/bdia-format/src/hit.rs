//! The normalized hit: what one valid row means, with every variable of spec
//! section 3.4 in a typed place, queryString values merged under columns.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fields::Field;

/// Which kind of identifier identifies the visitor (spec 3.2, 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitorKind {
    /// A customer ID with isMCSeed true.
    Customer,
    /// `visitorID` / `vid`.
    Vid,
    /// `marketingCloudVisitorID` / `mid`.
    Mcid,
    /// `IPAddress`.
    Ip,
}

impl VisitorKind {
    /// Stable name, as stored in the lake's `visitor_id_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            VisitorKind::Customer => "customer",
            VisitorKind::Vid => "vid",
            VisitorKind::Mcid => "mcid",
            VisitorKind::Ip => "ip",
        }
    }
}

/// The identifier chosen for a row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Visitor {
    /// Which kind of identifier.
    pub kind: VisitorKind,
    /// For [`VisitorKind::Customer`], the customerIDType (case-sensitive).
    pub customer_id_type: Option<String>,
    /// The raw identifier value.
    pub id: String,
}

impl Visitor {
    /// A key unique across kinds: a visitorID and an equal-looking IP never merge.
    ///
    /// ```
    /// use bdia_format::hit::{Visitor, VisitorKind};
    /// let v = |kind, t: Option<&str>, id: &str| Visitor {
    ///     kind,
    ///     customer_id_type: t.map(str::to_string),
    ///     id: id.to_string(),
    /// };
    /// assert_eq!(v(VisitorKind::Vid, None, "a:b").key(), "vid:a:b");
    /// assert_eq!(v(VisitorKind::Ip, None, "1.2.3.4").key(), "ip:1.2.3.4");
    /// assert_eq!(v(VisitorKind::Customer, Some("crm"), "7").key(), "customer:crm:7");
    /// let mut buf = "left over".to_string();
    /// v(VisitorKind::Mcid, None, "9").write_key(&mut buf);
    /// assert_eq!(buf, "mcid:9");
    /// ```
    pub fn key(&self) -> String {
        let mut k = String::new();
        self.write_key(&mut k);
        k
    }

    /// Writes [`Visitor::key`] into `out` (cleared first): a caller that
    /// keys every row reuses one buffer.
    pub fn write_key(&self, out: &mut String) {
        out.clear();
        let (prefix, t) = match &self.customer_id_type {
            Some(t) => ("customer", t.as_str()),
            None => (self.kind.as_str(), ""),
        };
        out.reserve(prefix.len() + t.len() + self.id.len() + 2);
        out.push_str(prefix);
        out.push(':');
        if self.customer_id_type.is_some() {
            out.push_str(t);
            out.push(':');
        }
        out.push_str(&self.id);
    }
}

/// A value outside the allowed set of its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAllowed;

impl std::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("value outside the allowed set")
    }
}

impl std::error::Error for NotAllowed {}

/// Authentication state of a customer ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthState {
    /// `0` / `UNKNOWN`.
    Unknown,
    /// `1` / `AUTHENTICATED`.
    Authenticated,
    /// `2` / `LOGGED_OUT`.
    LoggedOut,
}

impl AuthState {
    /// Parses an allowed value; `Ok(None)` for empty, `Err` for anything else.
    pub fn parse(s: &str) -> Result<Option<AuthState>, NotAllowed> {
        if s.is_empty() {
            return Ok(None);
        }
        let v = match s {
            "0" => AuthState::Unknown,
            "1" => AuthState::Authenticated,
            "2" => AuthState::LoggedOut,
            _ if s.eq_ignore_ascii_case("unknown") => AuthState::Unknown,
            _ if s.eq_ignore_ascii_case("authenticated") => AuthState::Authenticated,
            _ if s.eq_ignore_ascii_case("logged_out") => AuthState::LoggedOut,
            _ => return Err(NotAllowed),
        };
        Ok(Some(v))
    }
}

/// Parses an isMCSeed value: 0/1/true/false/empty (case-insensitive).
pub fn parse_is_mc_seed(s: &str) -> Result<bool, NotAllowed> {
    match s {
        "" | "0" => Ok(false),
        "1" => Ok(true),
        _ if s.eq_ignore_ascii_case("true") => Ok(true),
        _ if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(NotAllowed),
    }
}

/// One customer ID of a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerId {
    /// The id value (may be empty when only other attributes were given).
    pub id: String,
    /// The authentication state, when given.
    pub auth_state: Option<AuthState>,
    /// Whether this ID seeds the Experience Cloud visitor ID.
    pub is_mc_seed: bool,
}

/// The kind of a link hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkType {
    /// `d` / `lnk_d`.
    Download,
    /// `e` / `lnk_e`.
    Exit,
    /// `o` / `lnk_o`, and an empty or unrecognised type with a link name.
    Custom,
}

impl LinkType {
    /// Normalizes a column (`d`, `e`, `o`) or queryString (`lnk_d`...) value.
    /// Anything else non-empty counts as custom.
    pub fn normalize(s: &str) -> Option<LinkType> {
        let v = s.strip_prefix("lnk_").unwrap_or(s);
        match v {
            "" => None,
            "d" | "D" => Some(LinkType::Download),
            "e" | "E" => Some(LinkType::Exit),
            _ => Some(LinkType::Custom),
        }
    }
}

/// Page view or link hit (spec 3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HitType {
    /// A page view.
    PageView,
    /// A link hit of the given kind; not a page view.
    Link(LinkType),
}

impl HitType {
    /// Stable name, as stored in the lake's `hit_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            HitType::PageView => "page_view",
            HitType::Link(LinkType::Download) => "link_download",
            HitType::Link(LinkType::Exit) => "link_exit",
            HitType::Link(LinkType::Custom) => "link_custom",
        }
    }
}

/// The value of a variable: kept inline up to 23 bytes (most values are
/// short), longer ones shared through a reference count, so that a hit
/// costs few allocations and copying it for a second report suite fewer.
pub type Value = smol_str::SmolStr;

/// The numbered variables of one kind on a hit (`eVar1..=250`,
/// `prop1..=75`...): `(number, value)` pairs sorted by number, at most one
/// per number. A hit has a handful, so a sorted vector is both smaller and
/// faster to fill, read and drop than a tree. Serialized as a map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VarMap(Vec<(u16, Value)>);

impl VarMap {
    /// An empty map (no allocation).
    pub const fn new() -> VarMap {
        VarMap(Vec::new())
    }

    /// The value of variable `n`.
    pub fn get(&self, n: &u16) -> Option<&Value> {
        self.find(*n).ok().map(|i| &self.0[i].1)
    }

    /// Sets variable `n`; the value it had before, if any.
    pub fn insert(&mut self, n: u16, value: Value) -> Option<Value> {
        match self.find(n) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (n, value));
                None
            }
        }
    }

    /// Sets variable `n` unless it has a value already (the first value
    /// of a variable wins); `value` is only called when it is set.
    pub fn insert_first(&mut self, n: u16, value: impl FnOnce() -> Value) {
        if let Err(i) = self.find(n) {
            if self.0.is_empty() {
                self.0.reserve_exact(4);
            }
            self.0.insert(i, (n, value()));
        }
    }

    /// The variables set, by number.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&u16, &Value)> + '_ {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// The values, by variable number.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &Value> + '_ {
        self.0.iter().map(|(_, v)| v)
    }

    /// How many variables are set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, n: u16) -> Result<usize, usize> {
        // Columns usually come in increasing order: look at the end first.
        match self.0.last() {
            None => Err(0),
            Some((last, _)) if *last < n => Err(self.0.len()),
            _ => self.0.binary_search_by_key(&n, |(k, _)| *k),
        }
    }
}

impl<'a> IntoIterator for &'a VarMap {
    type Item = (&'a u16, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (u16, Value)>,
        fn(&'a (u16, Value)) -> (&'a u16, &'a Value),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(n, v)| (n, v))
    }
}

impl FromIterator<(u16, Value)> for VarMap {
    /// The first value of a number wins, as in a row.
    fn from_iter<I: IntoIterator<Item = (u16, Value)>>(iter: I) -> VarMap {
        let mut m = VarMap::new();
        for (n, v) in iter {
            m.insert_first(n, || v);
        }
        m
    }
}

impl<const N: usize> From<[(u16, Value); N]> for VarMap {
    fn from(pairs: [(u16, Value); N]) -> VarMap {
        pairs.into_iter().collect()
    }
}

impl std::ops::Index<&u16> for VarMap {
    type Output = Value;

    fn index(&self, n: &u16) -> &Value {
        self.get(n).expect("no value for this variable")
    }
}

impl Serialize for VarMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// One event of the `events` list: `name[:serial][=value]`
/// (see [`crate::commerce`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `purchase`, `event1`, `prodView`... (inline: no allocation).
    pub name: Value,
    /// The value of `event2=5`, when given and numeric.
    pub value: Option<f64>,
    /// The serial ID of `event3:ORDER-17`, when given (at most
    /// [`crate::commerce::MAX_SERIAL_BYTES`]).
    pub serial: Option<String>,
}

pub use crate::commerce::parse_event_list as parse_events;

/// A valid row, normalized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// Data row number in its file, from 1 (lineage).
    pub row: u64,
    /// Unix seconds, UTC.
    pub timestamp: i64,
    /// The report suites the hit goes to (at least one; from a checked row,
    /// each a valid [`crate::ReportSuiteId`]).
    pub report_suites: Vec<Value>,
    /// The visitor identity chosen by priority.
    pub visitor: Visitor,
    /// Page view or link hit.
    pub hit_type: HitType,
    /// Simple variables, indexed by [`Field`] (`vars[Field::PageName as usize]`);
    /// `None` when absent or empty.
    pub vars: Vec<Option<Value>>,
    /// `eVar1..=250`.
    pub evars: VarMap,
    /// `prop1..=75`.
    pub props: VarMap,
    /// `hier1..=5`.
    pub hiers: VarMap,
    /// `list1..=3`.
    pub lists: VarMap,
    /// `contextData.*` / `c.*`.
    pub context_data: BTreeMap<String, String>,
    /// `hints.*` / `h.*`, by lower-case hint name.
    pub hints: BTreeMap<String, String>,
    /// Customer IDs by (case-sensitive) type.
    pub customer_ids: BTreeMap<String, CustomerId>,
    /// The parsed `events` list.
    pub events: Vec<Event>,
}

impl Hit {
    /// A simple variable's value.
    pub fn get(&self, field: Field) -> Option<&str> {
        self.vars[field as usize].as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_var_map_keeps_numbers_sorted_and_the_first_value_of_each() {
        let mut m = VarMap::new();
        for (n, v) in [
            (10, "a"),
            (2, "b"),
            (250, "c"),
            (2, "late"),
            (1, "d"),
            (10, "x"),
        ] {
            m.insert_first(n, || Value::new(v));
        }
        let pairs: Vec<(u16, &str)> = m.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(pairs, [(1, "d"), (2, "b"), (10, "a"), (250, "c")]);
        assert_eq!(m.get(&2).map(Value::as_str), Some("b"));
        assert_eq!(m.get(&3), None);
        assert_eq!(m.insert(2, "new".into()).as_deref(), Some("b"));
        assert_eq!(m.insert(3, "three".into()), None);
        assert_eq!(&m[&3], "three");
        assert_eq!(m.len(), 5);
        let collected: VarMap = [(5, Value::new("x")), (5, Value::new("y"))].into();
        assert_eq!(collected.values().collect::<Vec<_>>(), ["x"]);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"1":"d","2":"new","3":"three","10":"a","250":"c"}"#
        );
    }

    #[test]
    fn long_values_are_kept_whole() {
        let long = "https://www.example.com/a/rather/long/path?with=a&query=string";
        let v = Value::new(long);
        assert_eq!(v.as_str(), long);
        assert_eq!(v.clone(), long);
    }
}
