//! One single hit as sent: a query string (`GET`, or `POST` with a form
//! body) or an XML document (`POST` at response type 6), read into the
//! variables of a bulk file row.
//!
//! The row ([`HitRow`]) has the fixed columns of [`COLUMNS`]: the visitor
//! IDs, IP address, user agent and timestamp in columns of their own, every
//! other variable in the `queryString` column under its query-string key,
//! so the same row rules and normalization as an uploaded file apply.
//!
//! Rules (Adobe's Data Insertion API):
//! - Query parameters are case-sensitive: `pageName` is the page name,
//!   `PAGENAME` an unknown parameter (ignored). XML tag names are not.
//! - Aliases: `gn` = `pageName`, `ev` = `events`, `pl` = `products`,
//!   `pi` = `purchaseID`, `sv` = `server`, `gt` = `pageType`.
//! - Visitor, in Adobe's order: `vid`, then `aid` (both in `visitorID`),
//!   then `mid` (`marketingCloudVisitorID`), then `fid` (in `visitorID`
//!   when there is no `mid`); without any, the IP address and user agent.
//! - Context data: `c.` opens a prefix, `.c` closes it, nested prefixes
//!   join with dots (`c.&a.&b=1&.a&.c` is `c.a.b=1`); XML `<contextData>`
//!   children likewise (`<contextData><a><b>1</b></a></contextData>`).
//! - XML: UTF-8; only the five predefined entities and character
//!   references; a DOCTYPE is refused (no DTD, no custom or external
//!   entity is ever read or expanded). Unknown tags are ignored.
//! - Values longer than the variable's limit are cut at a character
//!   boundary (see [`limit`]).

use std::borrow::Cow;

use bdia_format::fields::{Column, Field};
use quick_xml::events::Event;

/// The columns of the rows single hits become, in order.
pub const COLUMNS: [&str; 7] = [
    "timestamp",
    "reportSuiteID",
    "visitorID",
    "marketingCloudVisitorID",
    "IPAddress",
    "userAgent",
    "queryString",
];

/// Why a hit is refused (the `Reason` of the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No report suite, or one that does not take single hits.
    NoAccount,
    /// No page name, page URL or link.
    NoPage,
    /// No visitor ID and no IP address with a user agent.
    NoVisitor,
    /// The request could not be read.
    Syntax,
}

impl Failure {
    /// The reason text, the same wherever it is shown.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::NoAccount => "NO account",
            Failure::NoPage => "NO pagename OR pageurl",
            Failure::NoVisitor => "NO visitorid OR ipaddress",
            Failure::Syntax => "Syntax error",
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Failure::NoAccount => "no_account",
            Failure::NoPage => "no_page",
            Failure::NoVisitor => "no_visitor",
            Failure::Syntax => "syntax_error",
        }
    }
}

/// A hit read from a request, before the report suite is looked up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SingleHit {
    /// `reportSuiteID` (from the path or `<reportSuiteID>`): one or more
    /// rsids, comma-separated.
    pub rsids: String,
    /// `vid`.
    pub visitor_id: Option<String>,
    /// `aid` (the legacy analytics cookie ID).
    pub aid: Option<String>,
    /// `fid` (the fallback cookie ID).
    pub fid: Option<String>,
    /// `mid`.
    pub mcid: Option<String>,
    /// `<ipaddress>`, else the connection's address (query strings).
    pub ip: Option<String>,
    /// `<userAgent>`, else the `User-Agent` header.
    pub user_agent: Option<String>,
    /// `ts` / `<timestamp>`; the arrival time when absent.
    pub timestamp: Option<String>,
    /// Every other variable as `(query-string key, value)`, in order.
    pub vars: Vec<(String, String)>,
}

impl SingleHit {
    /// The row of [`COLUMNS`] (the timestamp defaults to `now`).
    pub fn row(&self, now: i64) -> Vec<String> {
        let qs = self
            .vars
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        vec![
            self.timestamp.clone().unwrap_or_else(|| now.to_string()),
            self.rsids.clone(),
            self.visitor_column().unwrap_or_default(),
            self.mcid.clone().unwrap_or_default(),
            self.ip.clone().unwrap_or_default(),
            self.user_agent.clone().unwrap_or_default(),
            qs,
        ]
    }

    /// The `visitorID` column: `vid`, else `aid`, else `fid` when there is
    /// no `mid` (which outranks `fid`).
    pub fn visitor_column(&self) -> Option<String> {
        self.visitor_id
            .clone()
            .or_else(|| self.aid.clone())
            .or_else(|| self.fid.clone().filter(|_| self.mcid.is_none()))
    }

    /// True when the hit names its visitor (not only by IP address).
    pub fn has_visitor_id(&self) -> bool {
        self.visitor_column().is_some() || self.mcid.is_some()
    }

    fn set(&mut self, key: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        let slot = match key {
            "vid" => &mut self.visitor_id,
            "aid" => &mut self.aid,
            "fid" => &mut self.fid,
            "mid" => &mut self.mcid,
            "ts" => &mut self.timestamp,
            _ => {
                self.vars
                    .push((key.to_string(), cut(key, value).into_owned()));
                return;
            }
        };
        *slot = Some(value.to_string());
    }
}

fn encode(s: &str) -> Cow<'_, str> {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).into()
}

/// The longest value of a variable, bytes: 100 for traffic variables
/// (props, page name, channel, server, page type, link name), 255 for
/// conversion variables and URLs (eVars, campaign, page URL, referrer,
/// link URL, hierarchies, lists), 20 for the purchase ID; no limit for the
/// rest (events, products, context data, IDs).
pub fn limit(key: &str) -> Option<usize> {
    match Column::from_query_key(key)? {
        Column::Prop(_) => Some(100),
        Column::EVar(_) | Column::Hier(_) | Column::List(_) => Some(255),
        Column::Field(f) => match f {
            Field::PageName
            | Field::Channel
            | Field::Server
            | Field::PageType
            | Field::LinkName => Some(100),
            Field::Campaign | Field::PageUrl | Field::Referrer | Field::LinkUrl => Some(255),
            Field::PurchaseId => Some(20),
            _ => None,
        },
        _ => None,
    }
}

fn cut<'a>(key: &str, value: &'a str) -> Cow<'a, str> {
    match limit(key) {
        Some(max) if value.len() > max => {
            let mut end = max;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            Cow::Borrowed(&value[..end])
        }
        _ => Cow::Borrowed(value),
    }
}

/// The query-string key a single-hit parameter stands for, or `None` for
/// a parameter that is ignored. Case-sensitive.
fn query_key(key: &str) -> Option<&str> {
    let alias = match key {
        "gn" => "pageName",
        "ev" => "events",
        "pl" => "products",
        "pi" => "purchaseID",
        "sv" => "server",
        "gt" => "pageType",
        "vid" | "aid" | "fid" | "mid" | "ts" => return Some(key),
        _ => key,
    };
    match Column::from_query_key(alias)? {
        // Named variables only in their documented spelling.
        Column::Field(f) if f.query_key() != Some(alias) => None,
        Column::Field(Field::MarketingCloudVisitorId | Field::VisitorId) => Some(alias),
        Column::QueryString => None,
        _ => Some(alias),
    }
}

/// Reads a URL-encoded query string (`a=1&b=2`). Invalid UTF-8 after
/// decoding is a syntax error.
pub fn parse_query(raw: &str) -> Result<SingleHit, Failure> {
    let pairs = bdia_format::query::decode(raw).map_err(|_| Failure::Syntax)?;
    let mut hit = SingleHit::default();
    let mut context: Vec<String> = Vec::new();
    for (k, v) in pairs {
        if let Some(open) = k
            .strip_suffix('.')
            .filter(|p| !p.is_empty() && !p.starts_with('.'))
        {
            if context.is_empty() && open != "c" {
                continue;
            }
            context.push(open.to_string());
            continue;
        }
        if let Some(close) = k.strip_prefix('.') {
            if context.last().is_some_and(|top| top == close) {
                context.pop();
            }
            continue;
        }
        if !context.is_empty() {
            let key = format!("{}.{}", context.join("."), k);
            hit.set(&key, &v);
            continue;
        }
        if let Some(key) = query_key(&k) {
            hit.set(key, &v);
        }
    }
    Ok(hit)
}

/// The query-string key of an XML tag (lower-cased), or `None` when the
/// tag is not a variable. `reportSuiteID`, `ipaddress` and `userAgent` are
/// handled by the caller.
fn xml_key(tag: &str) -> Option<Cow<'static, str>> {
    let named = match tag {
        "visitorid" => "vid",
        "marketingcloudvisitorid" => "mid",
        "timestamp" => "ts",
        "pagename" => "pageName",
        "pageurl" => "g",
        "referrer" => "r",
        "channel" => "ch",
        "campaign" => "v0",
        "events" => "events",
        "products" => "products",
        "purchaseid" => "purchaseID",
        "server" => "server",
        "pagetype" => "pageType",
        "zip" => "zip",
        "state" => "state",
        "transactionid" => "xact",
        "currencycode" => "cc",
        "linktype" => "pe",
        "linkurl" => "pev1",
        "linkname" => "pev2",
        "browserheight" => "bh",
        "browserwidth" => "bw",
        "colordepth" => "c",
        "connectiontype" => "ct",
        "cookiesenabled" => "k",
        "javaenabled" => "v",
        "javascriptversion" => "j",
        "plugins" => "p",
        "resolution" => "s",
        _ => {
            let numbered = |prefix: &str, q: &str, max: u16| -> Option<String> {
                let n: u16 = tag.strip_prefix(prefix)?.parse().ok()?;
                (1..=max).contains(&n).then(|| format!("{q}{n}"))
            };
            return numbered("evar", "v", bdia_format::fields::MAX_EVAR)
                .or_else(|| numbered("prop", "c", bdia_format::fields::MAX_PROP))
                .or_else(|| numbered("hier", "h", bdia_format::fields::MAX_HIER))
                .or_else(|| numbered("list", "l", bdia_format::fields::MAX_LIST))
                .map(Cow::Owned);
        }
    };
    Some(Cow::Borrowed(named))
}

/// Reads an XML document (`<request>...</request>`).
pub fn parse_xml(body: &[u8]) -> Result<SingleHit, Failure> {
    let text = std::str::from_utf8(body).map_err(|_| Failure::Syntax)?;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut hit = SingleHit::default();
    // Open elements (lower-cased names) and the text of the innermost one.
    let mut stack: Vec<String> = Vec::new();
    let mut text_buf = String::new();
    let mut seen_root = false;
    loop {
        match reader.read_event().map_err(|_| Failure::Syntax)? {
            Event::Start(e) => {
                if stack.is_empty() {
                    if seen_root {
                        return Err(Failure::Syntax);
                    }
                    seen_root = true;
                }
                let name = std::str::from_utf8(e.local_name().as_ref())
                    .map_err(|_| Failure::Syntax)?
                    .to_string();
                stack.push(name);
                text_buf.clear();
                if stack.len() > 16 {
                    return Err(Failure::Syntax);
                }
            }
            Event::Empty(_) => text_buf.clear(),
            Event::Text(t) => {
                let s = t.decode().map_err(|_| Failure::Syntax)?;
                text_buf.push_str(&s);
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|_| Failure::Syntax)?;
                text_buf.push_str(&s);
            }
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().map_err(|_| Failure::Syntax)? {
                    text_buf.push(c);
                } else {
                    let name = r.decode().map_err(|_| Failure::Syntax)?;
                    let v = quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or(Failure::Syntax)?;
                    text_buf.push_str(v);
                }
            }
            Event::End(_) => {
                let Some(_) = stack.last() else {
                    return Err(Failure::Syntax);
                };
                let path: Vec<String> = stack.iter().map(|s| s.to_ascii_lowercase()).collect();
                let value = std::mem::take(&mut text_buf);
                let value = value.trim();
                xml_value(&mut hit, &path, &stack, value);
                stack.pop();
            }
            Event::DocType(_) => return Err(Failure::Syntax),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !seen_root || !stack.is_empty() {
        return Err(Failure::Syntax);
    }
    Ok(hit)
}

/// Files the value of an element closed at `path` (lower-cased; `raw` as
/// written, for context-data keys).
fn xml_value(hit: &mut SingleHit, path: &[String], raw: &[String], value: &str) {
    // path[0] is the root (`request`); variables are its children.
    if path.len() < 2 || value.is_empty() {
        return;
    }
    if path[1] == "contextdata" {
        if path.len() > 2 {
            let key = format!("c.{}", raw[2..].join("."));
            hit.set(&key, value);
        }
        return;
    }
    if path.len() != 2 {
        return;
    }
    match path[1].as_str() {
        "reportsuiteid" => hit.rsids = value.to_string(),
        "ipaddress" => hit.ip = Some(value.to_string()),
        "useragent" => hit.user_agent = Some(value.to_string()),
        "linktype" => {
            // XML: d, e or o; query strings: lnk_d, lnk_e, lnk_o.
            let v = match value {
                "d" | "e" | "o" => format!("lnk_{value}"),
                other => other.to_string(),
            };
            hit.set("pe", &v);
        }
        tag => {
            if let Some(k) = xml_key(tag) {
                hit.set(&k, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(h: &SingleHit) -> Vec<(&str, &str)> {
        h.vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn query_aliases_identity_and_context_data() {
        let h = parse_query(
            "AQB=1&gn=Home&g=http%3A%2F%2Fx.test%2F&vid=v1&aid=a1&mid=m1&ev=event1%2Cevent2\
             &c.&a.&b=1&.a&k=2&.c&v3=e3&c5=p5&PAGENAME=ignored&unknown=x&AQE=1",
        )
        .unwrap();
        assert_eq!(h.visitor_id.as_deref(), Some("v1"));
        assert_eq!(h.mcid.as_deref(), Some("m1"));
        assert_eq!(
            vars(&h),
            [
                ("pageName", "Home"),
                ("g", "http://x.test/"),
                ("events", "event1,event2"),
                ("c.a.b", "1"),
                ("c.k", "2"),
                ("v3", "e3"),
                ("c5", "p5"),
            ]
        );
    }

    #[test]
    fn visitor_ids_rank_vid_aid_mid_fid() {
        let col = |q: &str| parse_query(q).unwrap().visitor_column();
        assert_eq!(col("fid=f&aid=a").as_deref(), Some("a"));
        assert_eq!(col("aid=a&vid=v").as_deref(), Some("v"));
        assert_eq!(col("fid=f&mid=m"), None, "mid outranks fid");
        assert_eq!(col("fid=f").as_deref(), Some("f"));
        assert!(parse_query("mid=m").unwrap().has_visitor_id());
        assert!(!parse_query("pageName=x").unwrap().has_visitor_id());
    }

    #[test]
    fn values_are_cut_to_the_variable_limit_at_a_character_boundary() {
        let long = "é".repeat(80); // 160 bytes
        let h = parse_query(&format!("c1={}&v1={}", encode(&long), encode(&long))).unwrap();
        assert_eq!(h.vars[0].1.len(), 100);
        assert_eq!(h.vars[1].1.len(), 160);
        let h = parse_query(&format!("c1=a{}", encode(&long))).unwrap();
        assert_eq!(h.vars[0].1.len(), 99, "never splits a character");
    }

    #[test]
    fn invalid_utf8_is_a_syntax_error() {
        assert_eq!(parse_query("pageName=%FF"), Err(Failure::Syntax));
    }

    #[test]
    fn xml_tags_are_case_insensitive_and_entities_are_the_predefined_five() {
        let h = parse_xml(
            br#"<?xml version=1.0 encoding=UTF-8?><request><sc_xml_ver>1.0</sc_xml_ver>
            <ReportSuiteID>rs1</ReportSuiteID><VISITORID>v</VISITORID>
            <pageName>News &amp; Sports &lt;local&gt; &#233;</pageName>
            <eVar10>e</eVar10><prop75>p</prop75><linkType>o</linkType>
            <contextData><my><a>red</a></my></contextData><nope>x</nope></request>"#,
        )
        .unwrap();
        assert_eq!(h.rsids, "rs1");
        assert_eq!(h.visitor_id.as_deref(), Some("v"));
        assert_eq!(
            vars(&h),
            [
                ("pageName", "News & Sports <local> é"),
                ("v10", "e"),
                ("c75", "p"),
                ("pe", "lnk_o"),
                ("c.my.a", "red"),
            ]
        );
    }

    #[test]
    fn hostile_xml_is_a_syntax_error() {
        let doctype = br#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><request><pageName>&x;</pageName></request>"#;
        assert_eq!(parse_xml(doctype), Err(Failure::Syntax));
        let custom = br#"<request><pageName>&x;</pageName></request>"#;
        assert_eq!(parse_xml(custom), Err(Failure::Syntax));
        assert_eq!(
            parse_xml(b"<request><a></b></request>"),
            Err(Failure::Syntax)
        );
        assert_eq!(parse_xml(b"<request>"), Err(Failure::Syntax));
        assert_eq!(parse_xml(b""), Err(Failure::Syntax));
        assert_eq!(parse_xml(b"<a/><b/>"), Err(Failure::Syntax));
        assert_eq!(parse_xml(&[0xff, 0xfe]), Err(Failure::Syntax));
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert_eq!(parse_xml(deep.as_bytes()), Err(Failure::Syntax));
    }

    #[test]
    fn rows_carry_variables_in_the_query_string_column() {
        let mut h = parse_query("pageName=a%26b&vid=v").unwrap();
        h.rsids = "rs".into();
        h.ip = Some("10.0.0.1".into());
        h.user_agent = Some("UA".into());
        let row = h.row(1_700_000_000);
        assert_eq!(row[0], "1700000000");
        assert_eq!(row[2], "v");
        assert_eq!(row[6], "pageName=a%26b");
    }
}
