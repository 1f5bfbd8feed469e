//! Domain logic of bdia, pure and without I/O.
//!
//! - [`identity`]: which visitor a hit belongs to, namespaced by kind, and the
//!   seeded (Experience-Cloud-style) visitor IDs derived from customer IDs.
//! - [`visit`]: the visit rules (sessionization) for one visitor in one
//!   report suite.
//! - [`device`]: user agents to browser, operating system and device type
//!   (the uap-core rules), bots included.
//! - [`traffic`]: referrers to referrer types and search engines.
//! - [`conversion`]: eVar expiration and allocation (`post_evarN`).
//! - [`commerce`]: events that count, serialization, purchases.
//! - [`enrich`]: the enrichment of one file's hits, as a pure function of the
//!   file and the visitor state before it.
//!
//! ```
//! use bdia_model::enrich::{enrich_file, MemoryStates};
//! use bdia_model::identity::Identity;
//! # use bdia_format::hit::{Hit, HitType, Visitor, VisitorKind};
//! # use bdia_format::fields::Field;
//! # fn page(row: u64, ts: i64) -> Hit {
//! #     Hit { row, timestamp: ts, report_suites: vec!["acme.prod".into()],
//! #         visitor: Visitor { kind: VisitorKind::Vid, customer_id_type: None, id: "v1".into() },
//! #         hit_type: HitType::PageView, vars: vec![None; Field::COUNT],
//! #         evars: Default::default(), props: Default::default(), hiers: Default::default(),
//! #         lists: Default::default(), context_data: Default::default(), hints: Default::default(),
//! #         customer_ids: Default::default(), events: vec![] }
//! # }
//!
//! let identity = Identity::new(b"company-salt".to_vec());
//! let mut states = MemoryStates::default();
//! let out = enrich_file([page(1, 1_000), page(2, 1_000 + 1_801)], &identity, &mut states).unwrap();
//! assert_eq!(out.hits[1].visit.visit_num, 2, "a gap over 1,800 s starts a new visit");
//! states.apply(&out.delta);
//! ```

pub mod commerce;
pub mod conversion;
pub mod device;
pub mod enrich;
pub mod fingerprints;
pub mod identity;
pub mod traffic;
pub mod visit;

pub use enrich::{
    enrich_file, EnrichedHit, FileEnricher, FileEnrichment, MemoryStates, OutOfOrder,
    OutOfOrderReport, StateDelta, VisitorStates,
};
pub use identity::{seeded_visitor_id, Identity};
pub use visit::{advance, VisitInfo, VisitState, MAX_VISIT_SECS, VISIT_TIMEOUT_SECS};
