//! Conversion variables (eVars): expiration and allocation per report
//! suite, and the persisted (`post_evarN`) value of every eVar on every hit.
//!
//! A visitor's live eVar values are part of its [`crate::VisitState`]
//! ([`PersistedEvar`]). For one hit, in this order:
//!
//! 1. every stored value that has expired by the hit is dropped: `visit`
//!    values when the hit is in a later visit than the one that set them,
//!    `N days` values once `N * 86,400` seconds have passed since they were
//!    set (to the second, as Adobe counts them);
//! 2. every eVar the hit sends is applied: `hit` expiration never stores
//!    (the value is persisted on its own hit only); `original value`
//!    allocation keeps a live stored value and ignores the new one; `most
//!    recent` replaces it and restarts its expiration;
//! 3. the hit's persisted values are every live value;
//! 4. values that expire on an event are dropped after a hit carrying that
//!    event (the hit itself is still credited).
//!
//! Expiration is checked with the suite's settings of the moment against
//! the time the value was set, so a changed setting applies to stored
//! values too, from the next file processed (Adobe does the same).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Seconds in a day.
pub const DAY_SECS: i64 = 86_400;

/// When a persisted eVar value stops receiving credit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Expiration {
    /// Only the hit that sets it (Adobe's "Page View").
    Hit,
    /// The end of the visit that set it (Adobe's default).
    Visit,
    /// This many days after it was set (`day` 1, `week` 7, `month` 31,
    /// `quarter` 93, `year` 365, or any `<N>d`).
    Days(u32),
    /// After the first later hit that carries this event (`purchase`,
    /// `event5`...); never when the event never comes.
    Event(String),
    /// Never.
    Never,
}

impl fmt::Display for Expiration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expiration::Hit => f.write_str("hit"),
            Expiration::Visit => f.write_str("visit"),
            Expiration::Days(n) => write!(f, "{n}d"),
            Expiration::Event(e) => write!(f, "event:{e}"),
            Expiration::Never => f.write_str("never"),
        }
    }
}

impl FromStr for Expiration {
    type Err = String;

    fn from_str(s: &str) -> Result<Expiration, String> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        Ok(match lower.as_str() {
            "hit" | "page_view" | "pageview" => Expiration::Hit,
            "visit" => Expiration::Visit,
            "never" => Expiration::Never,
            "day" => Expiration::Days(1),
            "week" => Expiration::Days(7),
            "month" => Expiration::Days(31),
            "quarter" => Expiration::Days(93),
            "year" => Expiration::Days(365),
            "purchase" => Expiration::Event("purchase".into()),
            _ => {
                if let Some(e) = t.strip_prefix("event:") {
                    let e = e.trim();
                    if e.is_empty()
                        || e.len() > 100
                        || !e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(format!(
                            "'{s}': the event of an expiration is a name such as purchase or event5"
                        ));
                    }
                    Expiration::Event(e.to_string())
                } else if let Some(n) = lower.strip_suffix('d') {
                    match n.parse::<u32>() {
                        Ok(n) if (1..=36_500).contains(&n) => Expiration::Days(n),
                        _ => return Err(format!("'{s}': a number of days is 1d to 36500d")),
                    }
                } else {
                    return Err(format!(
                        "'{s}' is not an expiration: hit, visit, never, day, week, month, quarter, year, <N>d or event:<name>"
                    ));
                }
            }
        })
    }
}

impl TryFrom<String> for Expiration {
    type Error = String;
    fn try_from(s: String) -> Result<Expiration, String> {
        s.parse()
    }
}

impl From<Expiration> for String {
    fn from(e: Expiration) -> String {
        e.to_string()
    }
}

/// Which value gets the credit when an eVar is set again before it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    /// The newest value replaces the stored one (Adobe's default).
    #[default]
    MostRecent,
    /// The first value stays until it expires.
    Original,
}

impl Allocation {
    /// `most_recent` or `original`.
    pub fn as_str(self) -> &'static str {
        match self {
            Allocation::MostRecent => "most_recent",
            Allocation::Original => "original",
        }
    }
}

impl FromStr for Allocation {
    type Err = String;
    fn from_str(s: &str) -> Result<Allocation, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "most_recent" | "most-recent" | "last" | "recent" => Ok(Allocation::MostRecent),
            "original" | "first" | "original_value" => Ok(Allocation::Original),
            _ => Err(format!(
                "'{s}' is not an allocation: most_recent or original"
            )),
        }
    }
}

/// The settings of one eVar of a report suite.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EvarSetting {
    /// The eVar number, 1 to 250.
    pub evar: u16,
    /// When its value expires.
    pub expiration: Expiration,
    /// Which value is credited.
    #[serde(default)]
    pub allocation: Allocation,
}

impl EvarSetting {
    /// Adobe's defaults: visit expiration, most recent allocation.
    pub fn default_for(evar: u16) -> EvarSetting {
        EvarSetting {
            evar,
            expiration: Expiration::Visit,
            allocation: Allocation::MostRecent,
        }
    }

    /// Reads `N=expiration[,allocation]`, for example `3=month,original`
    /// or `7=event:purchase`.
    pub fn parse(s: &str) -> Result<EvarSetting, String> {
        let (n, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("'{s}': an eVar setting is N=expiration[,allocation]"))?;
        let n = n.trim();
        let n = n
            .strip_prefix("eVar")
            .or_else(|| n.strip_prefix("evar"))
            .unwrap_or(n);
        let evar: u16 = n
            .parse()
            .ok()
            .filter(|n| (1..=bdia_format::fields::MAX_EVAR).contains(n))
            .ok_or_else(|| format!("'{s}': the eVar number is 1 to 250"))?;
        let (exp, alloc) = match rest.split_once(',') {
            Some((e, a)) => (e, Some(a)),
            None => (rest, None),
        };
        Ok(EvarSetting {
            evar,
            expiration: exp.parse()?,
            allocation: alloc.map(str::parse).transpose()?.unwrap_or_default(),
        })
    }
}

/// The eVar settings of one report suite: those set, the rest default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvarSettings {
    set: BTreeMap<u16, EvarSetting>,
    /// Events that expire some eVar (to skip the check on other hits).
    expiring_events: Vec<String>,
}

impl EvarSettings {
    /// No eVar set: every eVar has the defaults.
    pub const EMPTY: EvarSettings = EvarSettings {
        set: BTreeMap::new(),
        expiring_events: Vec::new(),
    };

    /// From a suite's list (later entries for the same eVar win).
    pub fn new(list: &[EvarSetting]) -> EvarSettings {
        let set: BTreeMap<u16, EvarSetting> = list.iter().map(|s| (s.evar, s.clone())).collect();
        let mut expiring_events: Vec<String> = set
            .values()
            .filter_map(|s| match &s.expiration {
                Expiration::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        expiring_events.sort();
        expiring_events.dedup();
        EvarSettings {
            set,
            expiring_events,
        }
    }

    /// The setting of eVar `n`.
    pub fn get(&self, n: u16) -> (Expiration, Allocation) {
        match self.set.get(&n) {
            Some(s) => (s.expiration.clone(), s.allocation),
            None => (Expiration::Visit, Allocation::MostRecent),
        }
    }

    fn expiration(&self, n: u16) -> &Expiration {
        const VISIT: Expiration = Expiration::Visit;
        self.set.get(&n).map_or(&VISIT, |s| &s.expiration)
    }

    fn allocation(&self, n: u16) -> Allocation {
        self.set
            .get(&n)
            .map_or(Allocation::MostRecent, |s| s.allocation)
    }
}

/// A visitor's live eVar values in a report suite, sorted by eVar: a few
/// are kept inside the state itself, so reading them costs no cache miss
/// of its own (they are read on every hit).
pub type Evars = smallvec::SmallVec<[PersistedEvar; 3]>;

/// The persisted values of one hit, sorted by eVar: a few are kept inline,
/// so a hit costs no allocation for them.
pub type PostEvars = smallvec::SmallVec<[(u16, EvarValue); 4]>;

/// An eVar value: kept inline up to 23 bytes (most values: codes, names,
/// campaign IDs), so comparing it with the value sent, copying it onto
/// each hit it persists on and dropping it touch no memory of its own; a
/// longer one is shared by reference count. Stored and serialized as a
/// string.
pub type EvarValue = bdia_format::hit::Value;

/// One live eVar value of a visitor in a report suite.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PersistedEvar {
    /// The eVar number.
    #[serde(rename = "n")]
    pub evar: u16,
    /// The value (copied onto, or shared with, the hits it persists on).
    #[serde(rename = "v")]
    pub value: EvarValue,
    /// When it was set (unix seconds).
    #[serde(rename = "t")]
    pub set_at: i64,
    /// The visit that set it.
    #[serde(rename = "visit")]
    pub visit_num: u32,
}

/// Applies one hit to a visitor's live values (`stored`, sorted by eVar)
/// and returns the hit's persisted values, sorted by eVar.
///
/// `sent` are the eVars the hit carries, `counts(name)` whether the event
/// `name` counts on it, `time` and `visit_num` its time and visit. A value is
/// made once, when it changes ([`EvarValue`]).
pub fn persist(
    stored: &mut Evars,
    settings: &EvarSettings,
    sent: &bdia_format::hit::VarMap,
    counts: impl Fn(&str) -> bool,
    time: i64,
    visit_num: u32,
) -> PostEvars {
    if stored.is_empty() && sent.is_empty() {
        return PostEvars::new();
    }
    stored.retain(|p| match settings.expiration(p.evar) {
        Expiration::Hit => false,
        Expiration::Visit => p.visit_num == visit_num,
        Expiration::Days(d) => time - p.set_at < i64::from(*d) * DAY_SECS,
        Expiration::Event(_) | Expiration::Never => true,
    });
    let mut post = PostEvars::new();
    for (&n, v) in sent {
        match settings.expiration(n) {
            Expiration::Hit => post.push((n, v.clone())),
            _ => match stored.binary_search_by_key(&n, |p| p.evar) {
                Ok(i) => {
                    if settings.allocation(n) == Allocation::MostRecent {
                        let p = &mut stored[i];
                        if p.value != *v {
                            p.value = v.clone();
                        }
                        p.set_at = time;
                        p.visit_num = visit_num;
                    }
                }
                Err(i) => stored.insert(
                    i,
                    PersistedEvar {
                        evar: n,
                        value: v.clone(),
                        set_at: time,
                        visit_num,
                    },
                ),
            },
        }
    }
    let hit_only = !post.is_empty();
    post.extend(stored.iter().map(|p| (p.evar, p.value.clone())));
    if hit_only {
        post.sort_by_key(|(n, _)| *n);
    }
    if settings.expiring_events.iter().any(|e| counts(e)) {
        stored.retain(|p| match settings.expiration(p.evar) {
            Expiration::Event(e) => !counts(e),
            _ => true,
        });
    }
    post
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(pairs: &[(u16, &str)]) -> bdia_format::hit::VarMap {
        pairs.iter().map(|(n, v)| (*n, EvarValue::new(v))).collect()
    }

    /// Runs hits `(time, visit, sent eVar1, events)` and returns eVar1's
    /// persisted value on each.
    fn run(
        settings: &[EvarSetting],
        hits: &[(i64, u32, Option<&str>, &[&str])],
    ) -> Vec<Option<String>> {
        let settings = EvarSettings::new(settings);
        let mut stored = Evars::new();
        hits.iter()
            .map(|(t, v, s, ev)| {
                let s = match s {
                    Some(x) => sent(&[(1, x)]),
                    None => Default::default(),
                };
                persist(&mut stored, &settings, &s, |e| ev.contains(&e), *t, *v)
                    .into_iter()
                    .find(|(n, _)| *n == 1)
                    .map(|(_, v)| v.to_string())
            })
            .collect()
    }

    fn one(exp: &str, alloc: &str) -> Vec<EvarSetting> {
        vec![EvarSetting::parse(&format!("1={exp},{alloc}")).unwrap()]
    }

    fn vals(v: &[Option<&str>]) -> Vec<Option<String>> {
        v.iter().map(|x| x.map(str::to_string)).collect()
    }

    #[test]
    fn default_is_visit_expiration_and_most_recent_allocation() {
        let got = run(
            &[],
            &[
                (0, 1, None, &[]),
                (10, 1, Some("cats"), &[]),
                (20, 1, None, &["purchase"]),
                (30, 1, Some("dogs"), &[]),
                (40, 1, None, &[]),
                (5_000, 2, None, &[]),
            ],
        );
        assert_eq!(
            got,
            vals(&[
                None,
                Some("cats"),
                Some("cats"),
                Some("dogs"),
                Some("dogs"),
                None
            ])
        );
    }

    #[test]
    fn hit_expiration_persists_on_its_own_hit_only() {
        let got = run(
            &one("hit", "most_recent"),
            &[(0, 1, Some("a"), &[]), (1, 1, None, &[])],
        );
        assert_eq!(got, vals(&[Some("a"), None]));
    }

    #[test]
    fn original_allocation_keeps_the_first_value_until_it_expires() {
        let got = run(
            &one("visit", "original"),
            &[
                (0, 1, Some("first"), &[]),
                (10, 1, Some("second"), &[]),
                (20, 1, None, &[]),
                (5_000, 2, Some("third"), &[]),
            ],
        );
        assert_eq!(
            got,
            vals(&[Some("first"), Some("first"), Some("first"), Some("third")])
        );
    }

    #[test]
    fn day_expiration_counts_seconds_from_when_the_value_was_set() {
        let got = run(
            &one("day", "most_recent"),
            &[
                (0, 1, Some("a"), &[]),
                (DAY_SECS - 1, 2, None, &[]),
                (DAY_SECS, 3, None, &[]),
            ],
        );
        assert_eq!(got, vals(&[Some("a"), Some("a"), None]));
        // Most recent restarts the clock when set again.
        let got = run(
            &one("1d", "most_recent"),
            &[
                (0, 1, Some("a"), &[]),
                (1_000, 1, Some("a"), &[]),
                (DAY_SECS + 999, 2, None, &[]),
            ],
        );
        assert_eq!(got, vals(&[Some("a"), Some("a"), Some("a")]));
        // Original does not.
        let got = run(
            &one("1d", "original"),
            &[
                (0, 1, Some("a"), &[]),
                (1_000, 1, Some("b"), &[]),
                (DAY_SECS + 999, 2, None, &[]),
            ],
        );
        assert_eq!(got, vals(&[Some("a"), Some("a"), None]));
    }

    #[test]
    fn month_is_31_days() {
        assert_eq!("month".parse::<Expiration>().unwrap(), Expiration::Days(31));
        assert_eq!(
            "quarter".parse::<Expiration>().unwrap(),
            Expiration::Days(93)
        );
        assert_eq!("year".parse::<Expiration>().unwrap(), Expiration::Days(365));
    }

    #[test]
    fn event_expiration_credits_the_event_hit_then_expires() {
        let got = run(
            &one("event:purchase", "most_recent"),
            &[
                (0, 1, Some("promo"), &[]),
                (10, 2, None, &["event1"]),
                (20, 3, None, &["purchase"]),
                (30, 3, None, &[]),
            ],
        );
        assert_eq!(
            got,
            vals(&[Some("promo"), Some("promo"), Some("promo"), None])
        );
    }

    #[test]
    fn never_expires_across_visits_and_years() {
        let got = run(
            &one("never", "most_recent"),
            &[(0, 1, Some("x"), &[]), (400 * DAY_SECS, 9, None, &[])],
        );
        assert_eq!(got, vals(&[Some("x"), Some("x")]));
    }

    #[test]
    fn settings_parse_and_reject_bad_input() {
        let s = EvarSetting::parse("eVar7=event:purchase").unwrap();
        assert_eq!(s.evar, 7);
        assert_eq!(s.expiration, Expiration::Event("purchase".into()));
        assert_eq!(s.allocation, Allocation::MostRecent);
        assert_eq!(
            EvarSetting::parse("3=30d,original").unwrap().expiration,
            Expiration::Days(30)
        );
        for bad in [
            "0=visit",
            "251=visit",
            "3",
            "3=soon",
            "3=visit,linear",
            "3=event:",
            "3=0d",
        ] {
            assert!(EvarSetting::parse(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_string(&EvarSetting::parse("2=week").unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"evar":2,"expiration":"7d","allocation":"most_recent"}"#
        );
        assert!(serde_json::from_str::<EvarSetting>(r#"{"evar":2,"expiration":"soon"}"#).is_err());
    }
}
