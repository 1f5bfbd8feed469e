//! The commerce variables of a hit, as Adobe Analytics writes them:
//! the `events` list with values and serial IDs, and the `products`
//! string.
//!
//! - `events`: comma-separated entries `name[:serial][=value]`, for
//!   example `purchase,event1,event2=4.5,event3:ORDER-17`. A value makes a
//!   numeric or currency event count that amount (a counter event given a
//!   whole number counts that many). A serial ID makes the event count
//!   once per ID per report suite. Adobe takes IDs of up to 20 bytes;
//!   longer ones are cut.
//! - `products`: comma-separated entries
//!   `category;product;quantity;price;events;merchandising eVars`. Every
//!   part after the product name is optional. The price is the total for
//!   the quantity. Per-product events are `eventN=value` separated by `|`,
//!   and merchandising eVars are `eVarN=value` separated by `|`. An entry
//!   without a product name is ignored. An unreadable quantity, price or
//!   event value counts as absent (Adobe drops such values and keeps the
//!   product).
//!
//! The shopping-cart events are `prodView`, `scOpen`, `scAdd`,
//! `scRemove`, `scView`, `scCheckout`; `purchase` records revenue (the
//! products' prices), units (their quantities) and one order.

use serde::Serialize;

/// The longest serial ID kept, bytes.
pub const MAX_SERIAL_BYTES: usize = 20;

/// The shopping-cart and purchase events Adobe defines.
pub const CART_EVENTS: &[&str] = &[
    "purchase",
    "prodView",
    "scOpen",
    "scAdd",
    "scRemove",
    "scView",
    "scCheckout",
];

use crate::hit::Event;

/// Reads an `events` value.
pub fn parse_event_list(s: &str) -> Vec<Event> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let (head, value) = match e.split_once('=') {
                Some((h, v)) => (h.trim(), number(v)),
                None => (e, None),
            };
            let (name, serial) = match head.split_once(':') {
                Some((n, id)) => (n.trim(), Some(cut(id.trim(), MAX_SERIAL_BYTES))),
                None => (head, None),
            };
            (!name.is_empty()).then(|| Event {
                name: name.into(),
                value,
                serial: serial.filter(|s| !s.is_empty()),
            })
        })
        .collect()
}

/// One entry of the `products` string.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Product {
    /// The category (often empty).
    pub category: String,
    /// The product name or SKU.
    pub name: String,
    /// Units, when given.
    pub quantity: Option<f64>,
    /// Total price of the units, when given.
    pub price: Option<f64>,
    /// Per-product numeric or currency events, `(name, value)`.
    pub events: Vec<(String, f64)>,
    /// Merchandising eVars, `(number, value)`.
    pub evars: Vec<(u16, String)>,
}

/// Reads a `products` value.
pub fn parse_products(s: &str) -> Vec<Product> {
    s.split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(';');
            let category = parts.next().unwrap_or("").trim().to_string();
            let name = parts.next().unwrap_or("").trim().to_string();
            if name.is_empty() {
                return None;
            }
            let quantity = parts.next().and_then(number);
            let price = parts.next().and_then(number);
            let events = parts
                .next()
                .map(|p| {
                    p.split('|')
                        .filter_map(|e| {
                            let (n, v) = e.split_once('=')?;
                            Some((n.trim().to_string(), number(v)?))
                        })
                        .filter(|(n, _)| !n.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let evars = parts
                .next()
                .map(|p| {
                    p.split('|')
                        .filter_map(|e| {
                            let (n, v) = e.split_once('=')?;
                            let n = n.trim();
                            let num: u16 = n
                                .get(..4)
                                .filter(|p| p.eq_ignore_ascii_case("evar"))
                                .and_then(|_| n[4..].parse().ok())?;
                            let v = v.trim();
                            ((1..=crate::fields::MAX_EVAR).contains(&num) && !v.is_empty())
                                .then(|| (num, v.to_string()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(Product {
                category,
                name,
                quantity,
                price,
                events,
                evars,
            })
        })
        .collect()
}

fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_with_values_and_serial_ids() {
        let e = parse_event_list(
            " purchase, event1,event2=4.5 ,event3:ORDER-17,event4:X=2,=3,event5=abc,,",
        );
        let got: Vec<(&str, Option<&str>, Option<f64>)> = e
            .iter()
            .map(|e| (e.name.as_str(), e.serial.as_deref(), e.value))
            .collect();
        assert_eq!(
            got,
            [
                ("purchase", None, None),
                ("event1", None, None),
                ("event2", None, Some(4.5)),
                ("event3", Some("ORDER-17"), None),
                ("event4", Some("X"), Some(2.0)),
                ("event5", None, None),
            ]
        );
    }

    #[test]
    fn serial_ids_are_cut_to_20_bytes() {
        let e = parse_event_list("event1:abcdefghijklmnopqrstuvwxyz");
        assert_eq!(e[0].serial.as_deref(), Some("abcdefghijklmnopqrst"));
        let e = parse_event_list("event1:");
        assert_eq!(e[0].serial, None, "an empty ID is no ID");
    }

    #[test]
    fn products_with_every_part() {
        let p = parse_products(
            "Shoes;Runner 2;2;159.90;event5=1.5|event6=2;eVar3=summer|evar4=banner,;Sock;1;4",
        );
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0],
            Product {
                category: "Shoes".into(),
                name: "Runner 2".into(),
                quantity: Some(2.0),
                price: Some(159.9),
                events: vec![("event5".into(), 1.5), ("event6".into(), 2.0)],
                evars: vec![(3, "summer".into()), (4, "banner".into())],
            }
        );
        assert_eq!(
            (
                p[1].category.as_str(),
                p[1].name.as_str(),
                p[1].quantity,
                p[1].price
            ),
            ("", "Sock", Some(1.0), Some(4.0))
        );
    }

    #[test]
    fn products_without_a_name_or_with_bad_numbers() {
        let p = parse_products("Cat;;1;2,;Only name,X;Y;two;;event1=x;eVar999=a|eVar0=b|foo=c");
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["Only name", "Y"]);
        assert_eq!((p[1].quantity, p[1].price), (None, None));
        assert!(p[1].events.is_empty() && p[1].evars.is_empty());
        assert!(parse_products("").is_empty());
    }
}
