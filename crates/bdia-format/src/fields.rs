//! The variables of a hit (spec section 3.4): their column names, their
//! queryString keys, and how a header name maps onto them.
//!
//! Header names are matched case-insensitively, except the `[type]` part of
//! `customerID.[type].*`, which is kept exactly as written.

use serde::Serialize;

macro_rules! simple_fields {
    ($( $variant:ident => $column:literal, $query:expr ; )*) => {
        /// A variable that is a single column of its own (not numbered, not a map).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub enum Field {
            $(
                #[doc = concat!("The `", $column, "` column.")]
                $variant,
            )*
        }

        impl Field {
            /// Every simple field, in declaration order; `ALL[f as usize] == f`.
            pub const ALL: &'static [Field] = &[$(Field::$variant),*];
            /// How many simple fields there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The column name as documented (canonical spelling).
            pub const fn column(self) -> &'static str {
                match self { $(Field::$variant => $column),* }
            }

            /// The queryString key carrying the same variable, if any.
            pub const fn query_key(self) -> Option<&'static str> {
                match self { $(Field::$variant => $query),* }
            }
        }
    };
}

simple_fields! {
    Aamlh => "aamlh", Some("aamlh");
    BrowserHeight => "browserHeight", Some("bh");
    BrowserWidth => "browserWidth", Some("bw");
    Campaign => "campaign", Some("v0");
    Channel => "channel", Some("ch");
    ColorDepth => "colorDepth", Some("c");
    ConnectionType => "connectionType", Some("ct");
    CookiesEnabled => "cookiesEnabled", Some("k");
    CurrencyCode => "currencyCode", Some("cc");
    Events => "events", Some("events");
    IpAddress => "IPAddress", None;
    JavaEnabled => "javaEnabled", Some("v");
    JavaScriptVersion => "javaScriptVersion", Some("j");
    Language => "language", None;
    LinkName => "linkName", Some("pev2");
    LinkType => "linkType", Some("pe");
    LinkUrl => "linkURL", Some("pev1");
    MarketingCloudVisitorId => "marketingCloudVisitorID", Some("mid");
    PageName => "pageName", Some("pageName");
    PageType => "pageType", Some("pageType");
    PageUrl => "pageURL", Some("g");
    Plugins => "plugins", Some("p");
    Products => "products", Some("products");
    PurchaseId => "purchaseID", Some("purchaseID");
    Referrer => "referrer", Some("r");
    ReportSuiteId => "reportSuiteID", None;
    Resolution => "resolution", Some("s");
    Server => "server", Some("server");
    State => "state", Some("state");
    Timestamp => "timestamp", None;
    Tnta => "tnta", Some("tnta");
    TrackingServer => "trackingServer", None;
    TransactionId => "transactionID", Some("xact");
    UserAgent => "userAgent", None;
    VisitorId => "visitorID", Some("vid");
    Zip => "zip", Some("zip");
}

/// Highest `eVarN`.
pub const MAX_EVAR: u16 = 250;
/// Highest `propN`.
pub const MAX_PROP: u16 = 75;
/// Highest `hierN`.
pub const MAX_HIER: u16 = 5;
/// Highest `listN`.
pub const MAX_LIST: u16 = 3;

/// The client-hint names accepted after `hints.` (column) or `h.` (queryString).
pub const HINTS: &[&str] = &[
    "architecture",
    "bitness",
    "brands",
    "mobile",
    "model",
    "platform",
    "platformversion",
    "wow64",
];

/// Which attribute of a customer ID a column carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum CidAttr {
    /// `customerID.[type].id` / `cid.[type].id`
    Id,
    /// `customerID.[type].authState` / `cid.[type].as`
    AuthState,
    /// `customerID.[type].isMCSeed` / `cid.[type].ismcseed`
    IsMcSeed,
}

impl CidAttr {
    /// The column suffix as documented.
    pub const fn column_suffix(self) -> &'static str {
        match self {
            CidAttr::Id => "id",
            CidAttr::AuthState => "authState",
            CidAttr::IsMcSeed => "isMCSeed",
        }
    }
}

/// What one header column (or one queryString key) means.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Column {
    /// A simple variable.
    Field(Field),
    /// `eVarN`, 1..=250.
    EVar(u16),
    /// `propN`, 1..=75.
    Prop(u16),
    /// `hierN`, 1..=5.
    Hier(u16),
    /// `listN`, 1..=3.
    List(u16),
    /// `contextData.key` / `c.key`.
    ContextData(String),
    /// `customerID.[type].attr` / `cid.[type].attr`; the type keeps its case.
    CustomerId {
        /// The customer ID type, case-sensitive.
        id_type: String,
        /// Which attribute.
        attr: CidAttr,
    },
    /// `hints.name` / `h.name`; the name is lower-cased.
    Hint(&'static str),
    /// The `queryString` column.
    QueryString,
}

impl Column {
    /// Maps a header name onto its column, or `None` for an unknown column.
    pub fn from_header(name: &str) -> Option<Column> {
        let lower = name.to_ascii_lowercase();
        if let Some(f) = Field::ALL
            .iter()
            .find(|f| f.column().eq_ignore_ascii_case(name))
        {
            return Some(Column::Field(*f));
        }
        if lower == "querystring" {
            return Some(Column::QueryString);
        }
        if let Some(n) = numbered(&lower, "evar", MAX_EVAR) {
            return Some(Column::EVar(n));
        }
        if let Some(n) = numbered(&lower, "prop", MAX_PROP) {
            return Some(Column::Prop(n));
        }
        if let Some(n) = numbered(&lower, "hier", MAX_HIER) {
            return Some(Column::Hier(n));
        }
        if let Some(n) = numbered(&lower, "list", MAX_LIST) {
            return Some(Column::List(n));
        }
        if lower.starts_with("contextdata.") && name.len() > "contextdata.".len() {
            return Some(Column::ContextData(
                name["contextdata.".len()..].to_string(),
            ));
        }
        if let Some(rest) = lower.strip_prefix("hints.") {
            return HINTS.iter().find(|h| **h == rest).map(|h| Column::Hint(h));
        }
        if lower.starts_with("customerid.") {
            return customer_id(&name["customerid.".len()..]);
        }
        None
    }

    /// Maps a queryString key onto its variable, or `None` when the key is
    /// unknown or a marker (`AQB`, `AQE`, `ce`). Only variables that have a
    /// queryString key can be set this way.
    pub fn from_query_key(key: &str) -> Option<Column> {
        /// The variables by lower-cased queryString key (the first in
        /// [`Field::ALL`] order for a key named twice): one lookup per key
        /// of every row's queryString, not a scan of every variable.
        static BY_KEY: std::sync::LazyLock<std::collections::HashMap<String, Field>> =
            std::sync::LazyLock::new(|| {
                let mut by_key = std::collections::HashMap::new();
                for f in Field::ALL {
                    if let Some(k) = f.query_key() {
                        by_key.entry(k.to_ascii_lowercase()).or_insert(*f);
                    }
                }
                by_key
            });
        let lower = key.to_ascii_lowercase();
        if let Some(f) = BY_KEY.get(&lower) {
            return Some(Column::Field(*f));
        }
        if let Some(n) = numbered(&lower, "v", MAX_EVAR) {
            return Some(Column::EVar(n));
        }
        if let Some(n) = numbered(&lower, "c", MAX_PROP) {
            return Some(Column::Prop(n));
        }
        if let Some(n) = numbered(&lower, "h", MAX_HIER) {
            return Some(Column::Hier(n));
        }
        if let Some(n) = numbered(&lower, "l", MAX_LIST) {
            return Some(Column::List(n));
        }
        if lower.starts_with("c.") && key.len() > 2 {
            return Some(Column::ContextData(key[2..].to_string()));
        }
        if let Some(rest) = lower.strip_prefix("h.") {
            return HINTS.iter().find(|h| **h == rest).map(|h| Column::Hint(h));
        }
        if lower.starts_with("cid.") {
            let rest = &key[4..];
            let (id_type, attr) = rest.rsplit_once('.')?;
            let attr = match attr.to_ascii_lowercase().as_str() {
                "id" => CidAttr::Id,
                "as" => CidAttr::AuthState,
                "ismcseed" => CidAttr::IsMcSeed,
                _ => return None,
            };
            if id_type.is_empty() {
                return None;
            }
            return Some(Column::CustomerId {
                id_type: id_type.to_string(),
                attr,
            });
        }
        None
    }

    /// The key used to detect duplicate header columns: case-insensitive,
    /// except the customer ID type.
    pub fn duplicate_key(&self, header: &str) -> String {
        match self {
            Column::CustomerId { id_type, attr } => {
                format!(
                    "customerid.{id_type}.{}",
                    attr.column_suffix().to_ascii_lowercase()
                )
            }
            _ => header.to_ascii_lowercase(),
        }
    }

    /// True for the columns that can identify a visitor at the file level.
    pub fn is_visitor_id_column(&self) -> bool {
        matches!(
            self,
            Column::Field(Field::VisitorId)
                | Column::Field(Field::MarketingCloudVisitorId)
                | Column::Field(Field::IpAddress)
                | Column::CustomerId {
                    attr: CidAttr::Id,
                    ..
                }
        )
    }
}

fn numbered(lower: &str, prefix: &str, max: u16) -> Option<u16> {
    let digits = lower.strip_prefix(prefix)?;
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.starts_with('0') {
        return None;
    }
    let n: u16 = digits.parse().ok()?;
    (1..=max).contains(&n).then_some(n)
}

fn customer_id(rest: &str) -> Option<Column> {
    let (id_type, attr) = rest.rsplit_once('.')?;
    let attr = match attr.to_ascii_lowercase().as_str() {
        "id" => CidAttr::Id,
        "authstate" => CidAttr::AuthState,
        "ismcseed" => CidAttr::IsMcSeed,
        _ => return None,
    };
    if id_type.is_empty() {
        return None;
    }
    Some(Column::CustomerId {
        id_type: id_type.to_string(),
        attr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_case_insensitive() {
        assert_eq!(
            Column::from_header("PAGEname"),
            Some(Column::Field(Field::PageName))
        );
        assert_eq!(
            Column::from_header("ipaddress"),
            Some(Column::Field(Field::IpAddress))
        );
        assert_eq!(Column::from_header("EVAR250"), Some(Column::EVar(250)));
        assert_eq!(Column::from_header("eVar251"), None);
        assert_eq!(Column::from_header("eVar0"), None);
        assert_eq!(Column::from_header("eVar01"), None);
        assert_eq!(Column::from_header("Prop75"), Some(Column::Prop(75)));
        assert_eq!(Column::from_header("hier5"), Some(Column::Hier(5)));
        assert_eq!(Column::from_header("list4"), None);
        assert_eq!(
            Column::from_header("Hints.Platform"),
            Some(Column::Hint("platform"))
        );
        assert_eq!(Column::from_header("bogus"), None);
    }

    #[test]
    fn customer_id_type_keeps_its_case() {
        let a = Column::from_header("customerID.CRM.ID").unwrap();
        let b = Column::from_header("CUSTOMERID.crm.id").unwrap();
        assert_eq!(
            a,
            Column::CustomerId {
                id_type: "CRM".into(),
                attr: CidAttr::Id
            }
        );
        assert_ne!(a, b);
        assert_ne!(
            a.duplicate_key("customerID.CRM.ID"),
            b.duplicate_key("CUSTOMERID.crm.id")
        );
        assert_eq!(
            a.duplicate_key("customerID.CRM.ID"),
            Column::from_header("customerid.CRM.id")
                .unwrap()
                .duplicate_key("customerid.CRM.id")
        );
        // A type may itself contain dots: the attribute is the last part.
        assert_eq!(
            Column::from_header("customerID.a.b.isMCSeed"),
            Some(Column::CustomerId {
                id_type: "a.b".into(),
                attr: CidAttr::IsMcSeed
            })
        );
    }

    #[test]
    fn query_keys_map_to_variables() {
        assert_eq!(
            Column::from_query_key("g"),
            Some(Column::Field(Field::PageUrl))
        );
        assert_eq!(Column::from_query_key("v12"), Some(Column::EVar(12)));
        assert_eq!(Column::from_query_key("c75"), Some(Column::Prop(75)));
        assert_eq!(
            Column::from_query_key("c"),
            Some(Column::Field(Field::ColorDepth))
        );
        assert_eq!(
            Column::from_query_key("v0"),
            Some(Column::Field(Field::Campaign))
        );
        assert_eq!(
            Column::from_query_key("c.app.version"),
            Some(Column::ContextData("app.version".into()))
        );
        assert_eq!(
            Column::from_query_key("cid.CRM.as"),
            Some(Column::CustomerId {
                id_type: "CRM".into(),
                attr: CidAttr::AuthState
            })
        );
        assert_eq!(Column::from_query_key("AQB"), None);
        assert_eq!(Column::from_query_key("ce"), None);
        assert_eq!(Column::from_query_key("ts"), None, "ts is never used");
        assert_eq!(Column::from_query_key("ipaddress"), None);
        // Every variable's key, in any case, maps as a scan of the
        // variables in order would.
        for f in Field::ALL {
            let Some(k) = f.query_key() else { continue };
            for key in [
                k.to_string(),
                k.to_ascii_uppercase(),
                k.to_ascii_lowercase(),
            ] {
                let first = Field::ALL
                    .iter()
                    .find(|g| g.query_key().is_some_and(|q| q.eq_ignore_ascii_case(&key)));
                assert_eq!(
                    Column::from_query_key(&key),
                    first.map(|g| Column::Field(*g)),
                    "{key}"
                );
            }
        }
    }

    #[test]
    fn all_is_indexed_by_discriminant() {
        for (i, f) in Field::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
        }
    }
}
