//! Events and commerce of one hit in one report suite: which events count,
//! with which values, and the revenue, units and order of a purchase.
//!
//! - A serialized event (`event1:ID`) counts once per ID per report suite:
//!   an ID already counted (in an earlier file or earlier in the file) is
//!   not counted again.
//! - A `purchase` whose `purchaseID` was already counted in the report
//!   suite is a duplicate purchase: the `purchase` event, its revenue,
//!   units and order are not counted (the hit's other events are).
//! - An event's value on a hit: the value in the `events` list when given;
//!   else the sum of the values the `products` entries give it; else none
//!   (it counts 1). A value only in `products` counts only when the event
//!   is in the `events` list too.
//! - A counted `purchase` records one order, the revenue of the products'
//!   prices and the units of their quantities (an absent price or quantity
//!   counts 0).

use std::sync::Arc;

use bdia_format::commerce::Product;
use bdia_format::hit::Event;
use serde::{Deserialize, Serialize};

/// The kind of a [`SeenId`] for purchase IDs.
pub const PURCHASE_ID: &str = "purchase_id";

/// An ID already counted in a report suite: the serial of a serialized
/// event, or a purchase ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeenId {
    /// Report suite ID.
    pub report_suite: String,
    /// `event:<name>` for an event's serials, [`PURCHASE_ID`] for purchase IDs.
    pub kind: String,
    /// The ID.
    pub id: String,
}

impl SeenId {
    /// The kind of the serials of `event`.
    pub fn event_kind(event: &str) -> String {
        IdKind::Event(event).to_string()
    }
}

/// The kind of a [`SeenId`], borrowed: what a lookup is made with, so
/// that no key is built for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind<'a> {
    /// The serials of this event (`event:<name>`).
    Event(&'a str),
    /// Purchase IDs ([`PURCHASE_ID`]).
    PurchaseId,
}

impl IdKind<'_> {
    /// Whether `kind` (as stored in a [`SeenId`]) is this kind.
    pub fn matches(self, kind: &str) -> bool {
        match self {
            IdKind::Event(e) => kind.strip_prefix("event:") == Some(e),
            IdKind::PurchaseId => kind == PURCHASE_ID,
        }
    }
}

impl std::fmt::Display for IdKind<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdKind::Event(e) => write!(f, "event:{e}"),
            IdKind::PurchaseId => f.write_str(PURCHASE_ID),
        }
    }
}

/// IDs by (report suite, kind), each with a value, looked up by borrowed
/// strings (a lookup allocates nothing). A file names few suites and
/// kinds, so those are searched linearly; the IDs of one are hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenSet<V> {
    by: Vec<(String, String, foldhash::HashMap<String, V>)>,
}

impl<V> Default for SeenSet<V> {
    fn default() -> SeenSet<V> {
        SeenSet { by: Vec::new() }
    }
}

impl<V> SeenSet<V> {
    fn ids(&self, report_suite: &str, kind: IdKind<'_>) -> Option<&foldhash::HashMap<String, V>> {
        self.by
            .iter()
            .find(|(s, k, _)| s == report_suite && kind.matches(k))
            .map(|(_, _, m)| m)
    }

    /// The value of an ID, `None` when it is not in the set.
    pub fn get(&self, report_suite: &str, kind: IdKind<'_>, id: &str) -> Option<&V> {
        self.ids(report_suite, kind)?.get(id)
    }

    /// The index of the IDs of (`report_suite`, the kind `is_kind`
    /// accepts), added (kind named by `kind`) when missing.
    fn slot(
        &mut self,
        report_suite: &str,
        is_kind: impl Fn(&str) -> bool,
        kind: impl FnOnce() -> String,
    ) -> usize {
        match self
            .by
            .iter()
            .position(|(s, k, _)| s == report_suite && is_kind(k))
        {
            Some(i) => i,
            None => {
                self.by.push((
                    report_suite.to_string(),
                    kind(),
                    foldhash::HashMap::default(),
                ));
                self.by.len() - 1
            }
        }
    }

    /// Adds an ID (replacing its value when it is there).
    pub fn insert(&mut self, report_suite: &str, kind: IdKind<'_>, id: &str, value: V) {
        let i = self.slot(report_suite, |k| kind.matches(k), || kind.to_string());
        self.by[i].2.insert(id.to_string(), value);
    }

    /// Adds an ID given as a [`SeenId`].
    pub fn insert_id(&mut self, id: SeenId, value: V) {
        let i = self.slot(&id.report_suite, |k| k == id.kind, || id.kind.clone());
        self.by[i].2.insert(id.id, value);
    }

    /// Number of IDs.
    pub fn len(&self) -> usize {
        self.by.iter().map(|(_, _, m)| m.len()).sum()
    }

    /// True when there is no ID.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every ID with its value, in no particular order.
    pub fn into_ids(self) -> impl Iterator<Item = (SeenId, V)> {
        self.by.into_iter().flat_map(|(suite, kind, m)| {
            m.into_iter().map(move |(id, v)| {
                (
                    SeenId {
                        report_suite: suite.clone(),
                        kind: kind.clone(),
                        id,
                    },
                    v,
                )
            })
        })
    }
}

/// What the commerce of one hit in one report suite counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Commerce {
    /// The events that count, each with its resolved value.
    pub events: Vec<Event>,
    /// Serialized events left out because their ID was already counted.
    pub duplicate_events: u32,
    /// The hit's purchase was left out: its purchase ID was already counted.
    pub duplicate_purchase: bool,
    /// The parsed `products` (shared by the hit's report suites).
    pub products: Arc<Vec<Product>>,
    /// A counted purchase: one order.
    pub order: bool,
    /// A counted purchase's revenue.
    pub revenue: Option<f64>,
    /// A counted purchase's units.
    pub units: Option<i64>,
}

impl Commerce {
    /// Whether `name` counts on this hit.
    pub fn counts(&self, name: &str) -> bool {
        self.events.iter().any(|e| e.name == name)
    }
}

/// Decides the commerce of one hit in one suite. `seen(kind, id)` says
/// whether an ID was already counted and records it as counted when not.
pub fn resolve<E>(
    sent: &[Event],
    products: &Arc<Vec<Product>>,
    purchase_id: Option<&str>,
    mut seen: impl FnMut(IdKind<'_>, &str) -> Result<bool, E>,
) -> Result<Commerce, E> {
    let mut c = Commerce {
        products: products.clone(),
        ..Commerce::default()
    };
    if sent.is_empty() {
        return Ok(c);
    }
    for e in sent {
        if let Some(serial) = &e.serial {
            if seen(IdKind::Event(&e.name), serial)? {
                c.duplicate_events += 1;
                continue;
            }
        }
        if e.name == "purchase" {
            if let Some(id) = purchase_id.filter(|id| !id.is_empty()) {
                if c.order || seen(IdKind::PurchaseId, id)? {
                    c.duplicate_purchase = !c.order;
                    continue;
                }
            }
            if c.order {
                // One order per hit, however often `purchase` is listed.
                continue;
            }
            c.order = true;
        }
        let value = e.value.or_else(|| {
            let mut any = false;
            let total: f64 = products
                .iter()
                .flat_map(|p| &p.events)
                .filter(|(n, _)| *n == e.name)
                .map(|(_, v)| {
                    any = true;
                    *v
                })
                .sum();
            any.then_some(total)
        });
        c.events.push(Event {
            name: e.name.clone(),
            value,
            serial: None,
        });
    }
    if c.order {
        c.revenue = Some(products.iter().filter_map(|p| p.price).sum());
        c.units = Some(
            products
                .iter()
                .filter_map(|p| p.quantity)
                .map(|q| q as i64)
                .sum(),
        );
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::convert::Infallible;

    use bdia_format::commerce::{parse_event_list, parse_products};

    use super::*;

    fn run(
        events: &str,
        products: &str,
        purchase_id: Option<&str>,
        seen: &mut HashSet<(String, String)>,
    ) -> Commerce {
        let p = Arc::new(parse_products(products));
        resolve::<Infallible>(&parse_event_list(events), &p, purchase_id, |k, id| {
            Ok(!seen.insert((k.to_string(), id.to_string())))
        })
        .unwrap()
    }

    fn names(c: &Commerce) -> Vec<(String, Option<f64>)> {
        c.events
            .iter()
            .map(|e| (e.name.to_string(), e.value))
            .collect()
    }

    #[test]
    fn a_purchase_counts_revenue_units_and_one_order() {
        let mut seen = HashSet::new();
        let c = run(
            "purchase,prodView",
            "Shoes;Boot;2;120.50,Hats;Cap;1;20,;NoPrice;3",
            None,
            &mut seen,
        );
        assert!(c.order);
        assert_eq!(c.revenue, Some(140.5));
        assert_eq!(c.units, Some(6));
        assert_eq!(c.products.len(), 3);
    }

    #[test]
    fn a_repeated_purchase_id_is_not_counted_again() {
        let mut seen = HashSet::new();
        let first = run("purchase,event1", ";A;1;10", Some("ORD-1"), &mut seen);
        assert!(first.order && !first.duplicate_purchase);
        let again = run("purchase,event1", ";A;1;10", Some("ORD-1"), &mut seen);
        assert!(!again.order && again.duplicate_purchase);
        assert_eq!(again.revenue, None);
        assert_eq!(
            names(&again),
            [("event1".to_string(), None)],
            "other events still count"
        );
        let other = run("purchase", ";A;1;10", Some("ORD-2"), &mut seen);
        assert!(other.order);
    }

    #[test]
    fn a_serialized_event_counts_once_per_id() {
        let mut seen = HashSet::new();
        let a = run("event1:X,event2:X", "", None, &mut seen);
        assert_eq!(
            a.events.len(),
            2,
            "the same ID on another event is another key"
        );
        let b = run("event1:X,event1:Y", "", None, &mut seen);
        assert_eq!(names(&b), [("event1".to_string(), None)]);
        assert_eq!(b.duplicate_events, 1);
    }

    #[test]
    fn product_values_count_only_when_the_event_is_listed() {
        let mut seen = HashSet::new();
        let c = run(
            "event5,event6=7",
            ";A;1;;event5=2.5|event7=4,;B;1;;event5=1.5|event6=100",
            None,
            &mut seen,
        );
        assert_eq!(
            names(&c),
            [
                ("event5".to_string(), Some(4.0)),
                ("event6".to_string(), Some(7.0))
            ],
            "the events list value wins; event7 is not listed"
        );
        assert!(!c.order);
        assert_eq!(c.revenue, None);
    }

    #[test]
    fn a_seen_set_keys_ids_by_suite_and_kind() {
        let mut set = SeenSet::default();
        set.insert("rs1", IdKind::Event("event1"), "X", 1);
        set.insert("rs1", IdKind::PurchaseId, "X", 2);
        set.insert_id(
            SeenId {
                report_suite: "rs2".into(),
                kind: SeenId::event_kind("event1"),
                id: "X".into(),
            },
            3,
        );
        assert_eq!(set.get("rs1", IdKind::Event("event1"), "X"), Some(&1));
        assert_eq!(set.get("rs1", IdKind::PurchaseId, "X"), Some(&2));
        assert_eq!(set.get("rs2", IdKind::Event("event1"), "X"), Some(&3));
        assert_eq!(set.get("rs1", IdKind::Event("event2"), "X"), None);
        assert_eq!(set.get("rs2", IdKind::PurchaseId, "X"), None);
        assert_eq!(set.len(), 3);
        let mut ids: Vec<(SeenId, i32)> = set.into_ids().collect();
        ids.sort();
        assert_eq!(ids[0].0.kind, "event:event1");
        assert_eq!(ids[1].0.kind, PURCHASE_ID);
        assert_eq!(ids[2].0.report_suite, "rs2");
    }

    #[test]
    fn purchase_listed_twice_is_one_order() {
        let mut seen = HashSet::new();
        let c = run("purchase,purchase", ";A;1;5", None, &mut seen);
        assert_eq!(c.events.len(), 1);
        assert_eq!(c.revenue, Some(5.0));
    }
}
