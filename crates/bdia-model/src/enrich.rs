//! The enrichment of one file: normalized hits in, enriched hits and the new
//! visitor state out.
//!
//! A file's output is a pure function of (its hits, the visitor state before
//! it): [`FileEnricher`] asks a [`VisitorStates`] only for state as it was
//! before the file, keeps every (report suite, visitor) it touched in memory,
//! and hands that back as a [`StateDelta`] at the end. Processing the same
//! file again from the same state therefore gives identical hits and an
//! identical delta; the caller commits the delta together with the file's
//! completion, atomically.
//!
//! Memory grows with the distinct (report suite, visitor) pairs of one file,
//! not with the number of hits; hits stream through [`FileEnricher::enrich`].
//! [`enrich_file`] is the whole-file convenience for tests and small inputs.
//!
//! A row naming several report suites becomes one hit per suite (duplicates
//! in the list are ignored), each with its own visit state.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bdia_format::commerce::{parse_products, Product};
use bdia_format::fields::Field;
use bdia_format::hit::{Hit, HitType, VisitorKind};
use serde::{Deserialize, Serialize};

use crate::commerce::{resolve, Commerce, IdKind, SeenId, SeenSet};
use crate::conversion::{persist, EvarSetting, EvarSettings, PostEvars};
use crate::device::{Device, DeviceCache};
use crate::fingerprints::Fingerprints;
use crate::identity::Identity;
use crate::traffic::{Traffic, TrafficCache};
use crate::visit::{advance_in_place, first_hit, VisitInfo, VisitState};

/// How many out-of-order rows are listed by row number in the processing log.
pub const MAX_OUT_OF_ORDER_EXAMPLES: usize = 10;

/// Where visitor state is read from: state as it was before the file.
pub trait VisitorStates {
    /// Why a lookup failed (a storage error).
    type Error;

    /// The state of `visitor_key` ([`bdia_format::hit::Visitor::key`]) in
    /// `report_suite`, or `None` for a visitor never seen there.
    fn get(
        &mut self,
        report_suite: &str,
        visitor_key: &str,
    ) -> Result<Option<VisitState>, Self::Error>;

    /// Whether `id` of `kind` ([`SeenId`]) was counted in `report_suite`
    /// before the file.
    fn seen(&mut self, report_suite: &str, kind: IdKind<'_>, id: &str)
        -> Result<bool, Self::Error>;
}

impl<S: VisitorStates + ?Sized> VisitorStates for &mut S {
    type Error = S::Error;

    fn get(
        &mut self,
        report_suite: &str,
        visitor_key: &str,
    ) -> Result<Option<VisitState>, Self::Error> {
        (**self).get(report_suite, visitor_key)
    }

    fn seen(
        &mut self,
        report_suite: &str,
        kind: IdKind<'_>,
        id: &str,
    ) -> Result<bool, Self::Error> {
        (**self).seen(report_suite, kind, id)
    }
}

/// Visitor state held in memory: for tests, tools and small deployments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStates {
    suites: HashMap<String, HashMap<String, VisitState>>,
    seen: SeenSet<()>,
}

impl MemoryStates {
    /// Stores every entry of a delta (what a commit does).
    pub fn apply(&mut self, delta: &StateDelta) {
        for e in &delta.entries {
            self.suites
                .entry(e.report_suite.clone())
                .or_default()
                .insert(e.visitor_key.clone(), e.state.clone());
        }
        for id in &delta.seen {
            self.seen.insert_id(id.clone(), ());
        }
    }

    /// The stored state of one visitor in one suite.
    pub fn state(&self, report_suite: &str, visitor_key: &str) -> Option<VisitState> {
        self.suites.get(report_suite)?.get(visitor_key).cloned()
    }

    /// Number of (report suite, visitor) pairs stored.
    pub fn len(&self) -> usize {
        self.suites.values().map(HashMap::len).sum()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl VisitorStates for MemoryStates {
    type Error = Infallible;

    fn get(
        &mut self,
        report_suite: &str,
        visitor_key: &str,
    ) -> Result<Option<VisitState>, Infallible> {
        Ok(self.state(report_suite, visitor_key))
    }

    fn seen(&mut self, report_suite: &str, kind: IdKind<'_>, id: &str) -> Result<bool, Infallible> {
        Ok(self.seen.get(report_suite, kind, id).is_some())
    }
}

/// One output hit: a row as seen by one of its report suites.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichedHit {
    /// The normalized row (lineage: `hit.row`).
    pub hit: Hit,
    /// The report suite of this copy of the row (inline: no allocation).
    pub report_suite: bdia_format::hit::Value,
    /// The seeded visitor ID of a customer ([`crate::Identity::seeded`]);
    /// `None` when the stored ID is the visitor's own, `hit.visitor.id`
    /// (not copied). Read it with [`EnrichedHit::visitor_id`].
    pub seeded_visitor_id: Option<String>,
    /// Which kind of identifier identified the visitor.
    pub visitor_id_type: VisitorKind,
    /// The hit's visit.
    pub visit: VisitInfo,
    /// What the user agent says (`None` without a `userAgent`); shared by
    /// every hit of the file with the same user agent.
    pub device: Option<Arc<Device>>,
    /// The referrer's type in this report suite.
    pub traffic: Traffic,
    /// The persisted value of every eVar live on this hit (`post_evarN`),
    /// sorted by eVar.
    pub post_evars: PostEvars,
    /// The events that count and the purchase, in this report suite.
    pub commerce: Commerce,
}

impl EnrichedHit {
    /// Whether this hit is a page view (link hits are not).
    pub fn is_page_view(&self) -> bool {
        self.hit.hit_type == HitType::PageView
    }

    /// The visitor ID stored in the lake (seeded for customer IDs).
    pub fn visitor_id(&self) -> &str {
        self.seeded_visitor_id
            .as_deref()
            .unwrap_or(&self.hit.visitor.id)
    }
}

/// The new state of one (report suite, visitor) after a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    /// Report suite ID.
    pub report_suite: String,
    /// [`bdia_format::hit::Visitor::key`].
    pub visitor_key: String,
    /// State after the file's last hit of this visitor in this suite.
    pub state: VisitState,
}

/// Every (report suite, visitor) a file touched, with its new state, sorted
/// by (report suite, visitor key) so the same file gives the same bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDelta {
    /// The entries, sorted, one per pair.
    pub entries: Vec<StateEntry>,
    /// The serials and purchase IDs the file counted for the first time, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<SeenId>,
}

/// One row that went back in time for its visitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutOfOrder {
    /// Data row number in the file.
    pub row: u64,
    /// The first report suite in which it was out of order.
    pub report_suite: String,
    /// The visitor ([`bdia_format::hit::Visitor::key`]).
    pub visitor_key: String,
    /// The row's time (unix seconds).
    pub hit_time: i64,
    /// The visitor's latest hit time before it (unix seconds).
    pub last_hit_time: i64,
}

/// Rows of a file that went back in time (spec section 4): a count and the
/// first examples, for the file's processing log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutOfOrderReport {
    /// Rows earlier than their visitor's last processed hit (in at least one suite).
    pub rows: u64,
    /// The first [`MAX_OUT_OF_ORDER_EXAMPLES`] of them, in file order.
    pub examples: Vec<OutOfOrder>,
}

impl OutOfOrderReport {
    /// True when every row was in time order.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Lines for the processing log: one per example, then a summary; empty
    /// when there is nothing to report.
    ///
    /// ```
    /// let r = bdia_model::OutOfOrderReport::default();
    /// assert!(r.log_lines().is_empty());
    /// ```
    pub fn log_lines(&self) -> Vec<String> {
        if self.rows == 0 {
            return Vec::new();
        }
        let mut lines: Vec<String> = self
            .examples
            .iter()
            .map(|e| {
                format!(
                    "On row: {}, the hit ({}) is earlier than the last processed hit ({}) of visitor '{}' in report suite '{}'. It was processed in the visitor's current visit.",
                    e.row, e.hit_time, e.last_hit_time, e.visitor_key, e.report_suite
                )
            })
            .collect();
        let more = self.rows.saturating_sub(self.examples.len() as u64);
        if more > 0 {
            lines.push(format!(
                "{more} more rows were earlier than their visitor's last processed hit."
            ));
        }
        lines.push(format!(
            "Out of order: {} rows were earlier than their visitor's last processed hit.",
            self.rows
        ));
        lines
    }
}

/// A 64-bit hash of a (report suite, visitor key) pair, the same in every
/// process ([`FileEnricher::needs_state`]).
fn fingerprint(report_suite: &str, visitor_key: &str) -> u64 {
    use std::hash::BuildHasher;
    const STATE: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x6264_6961);
    STATE.hash_one((report_suite, visitor_key))
}

/// A visitor key as [`FileEnricher`]'s map holds it: the bytes of the
/// key, inside the map's entry when they fit in 48 bytes (the key of a
/// 38-digit Experience Cloud ID takes 43), on the heap otherwise. A lookup
/// then compares the key where the entry is, rather than in a string of
/// its own elsewhere in memory: one cache miss less per hit.
type VisitorKey = smallvec::SmallVec<[u8; 48]>;

/// What one row gives in one of its report suites (the row itself is
/// added when its hits are built).
#[derive(Debug)]
struct SuitePart {
    /// The suite's index in the row's `report_suites`.
    suite: usize,
    visit: VisitInfo,
    traffic: Traffic,
    post_evars: PostEvars,
    commerce: Commerce,
}

/// The state of one (report suite, visitor) in a [`FileEnricher`].
#[derive(Debug)]
enum Slot {
    /// As it was before the file (`None`: never seen), not touched yet.
    Before(Option<VisitState>),
    /// Touched by the file: as of its last hit so far.
    Touched(VisitState),
}

impl Slot {
    /// Applies one hit: the hit's visit, and the state it leaves (touched
    /// from now on).
    fn advance(&mut self, time: i64, is_page_view: bool) -> (VisitInfo, &mut VisitState) {
        let info = match self {
            Slot::Touched(s) => advance_in_place(s, time, is_page_view),
            Slot::Before(before) => {
                let (s, info) = match before.take() {
                    Some(mut s) => {
                        let info = advance_in_place(&mut s, time, is_page_view);
                        (s, info)
                    }
                    None => first_hit(time, is_page_view),
                };
                *self = Slot::Touched(s);
                info
            }
        };
        match self {
            Slot::Touched(s) => (info, s),
            Slot::Before(_) => unreachable!("touched above"),
        }
    }
}

/// Enriches the hits of one file, one at a time, in file order.
#[derive(Debug)]
pub struct FileEnricher<'a> {
    identity: &'a Identity,
    /// Every (suite, visitor key) the file touched or was given the state
    /// of ([`FileEnricher::preload`]); a file names few suites, so they are
    /// searched linearly. One map serves both, so a hit costs one lookup:
    /// hashed with foldhash, several times faster than the default SipHash
    /// on short keys (the map is sorted before it leaves). Keys are kept
    /// inside the map's entries ([`VisitorKey`]).
    touched: Vec<(String, foldhash::HashMap<VisitorKey, Slot>)>,
    /// [`fingerprint`]s of the pairs in `touched`.
    known: Fingerprints,
    /// The visitor key of the hit being enriched (one buffer for all).
    key: String,
    /// The row being enriched, per report suite (one buffer for all).
    parts: Vec<SuitePart>,
    out_of_order: OutOfOrderReport,
    hits: u64,
    /// Each distinct user agent of the file, parsed once.
    devices: DeviceCache,
    /// The referrer hosts of the file, matched against the traffic tables.
    traffic: TrafficCache,
    /// Internal URL filters by report suite (a suite not listed has none).
    internal_url_filters: Vec<(String, Vec<String>)>,
    /// eVar settings by report suite (a suite not listed has the defaults).
    evar_settings: Vec<(String, EvarSettings)>,
    /// Serials and purchase IDs first counted by this file.
    seen: SeenSet<()>,
    /// Serialized events not counted again.
    duplicate_events: u64,
    /// Purchases not counted again (their purchase ID was counted).
    duplicate_purchases: u64,
    /// The products of every hit without any (shared, not allocated per hit).
    no_products: Arc<Vec<Product>>,
}

impl<'a> FileEnricher<'a> {
    /// A fresh enricher for one file of a company.
    pub fn new(identity: &'a Identity) -> FileEnricher<'a> {
        FileEnricher {
            identity,
            touched: Vec::new(),
            known: Fingerprints::default(),
            key: String::new(),
            parts: Vec::new(),
            out_of_order: OutOfOrderReport::default(),
            hits: 0,
            devices: DeviceCache::default(),
            traffic: TrafficCache::default(),
            internal_url_filters: Vec::new(),
            evar_settings: Vec::new(),
            seen: SeenSet::default(),
            duplicate_events: 0,
            duplicate_purchases: 0,
            no_products: Arc::default(),
        }
    }

    /// Sets the eVar settings of `report_suite` (see [`crate::conversion`]).
    pub fn with_evar_settings(
        mut self,
        report_suite: &str,
        settings: &[EvarSetting],
    ) -> FileEnricher<'a> {
        self.evar_settings.retain(|(s, _)| s != report_suite);
        self.evar_settings
            .push((report_suite.to_string(), EvarSettings::new(settings)));
        self
    }

    /// Processing log lines about events and purchases not counted again.
    pub fn commerce_log_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.duplicate_events > 0 {
            lines.push(format!(
                "Serialized events: {} were not counted, their serial ID was already counted in the report suite.",
                self.duplicate_events
            ));
        }
        if self.duplicate_purchases > 0 {
            lines.push(format!(
                "Duplicate purchases: {} purchases were not counted, their purchase ID was already counted in the report suite.",
                self.duplicate_purchases
            ));
        }
        lines
    }

    /// Sets the internal URL filters of `report_suite` (see
    /// [`crate::traffic::classify`]); without any, a referrer is internal
    /// when its host is the host of the hit's page URL.
    pub fn with_internal_url_filters(
        mut self,
        report_suite: &str,
        filters: Vec<String>,
    ) -> FileEnricher<'a> {
        self.internal_url_filters.retain(|(s, _)| s != report_suite);
        self.internal_url_filters
            .push((report_suite.to_string(), filters));
        self
    }

    /// The internal URL filters of `report_suite` in `all`.
    fn filters<'f>(all: &'f [(String, Vec<String>)], report_suite: &str) -> &'f [String] {
        all.iter()
            .find(|(s, _)| s == report_suite)
            .map_or(&[], |(_, f)| f.as_slice())
    }

    /// Output hits produced so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Whether [`FileEnricher::enrich`] would ask the [`VisitorStates`]
    /// about `visitor_key` in `report_suite`: the file has not touched the
    /// pair and it was not preloaded.
    ///
    /// Asks a filter of 64-bit fingerprints of the pairs ([`Fingerprints`],
    /// 2 bytes a pair, one cache line a lookup) rather than the states (a
    /// cache miss or more per hit). When it answers "known" for a pair it
    /// does not hold (about 1 in 1,000 new pairs), the pair is not
    /// preloaded and [`FileEnricher::enrich`] asks the [`VisitorStates`]
    /// about it on its own, so the answer is the same.
    pub fn needs_state(&self, report_suite: &str, visitor_key: &str) -> bool {
        !self
            .known
            .may_contain(fingerprint(report_suite, visitor_key))
    }

    /// Hands over the state of a pair as it was before the file (`None`:
    /// never seen), looked up ahead of its hits (a batch at a time), so
    /// that [`FileEnricher::enrich`] does not ask the [`VisitorStates`]. A
    /// pair already touched or preloaded keeps what it has.
    pub fn preload(&mut self, report_suite: &str, visitor_key: String, state: Option<VisitState>) {
        let t = self.suite_index(report_suite);
        self.known.insert(fingerprint(report_suite, &visitor_key));
        self.touched[t]
            .1
            .entry(VisitorKey::from_slice(visitor_key.as_bytes()))
            .or_insert(Slot::Before(state));
    }

    /// The index of `report_suite` in `touched`, added if missing.
    fn suite_index(&mut self, report_suite: &str) -> usize {
        match self.touched.iter().position(|(s, _)| s == report_suite) {
            Some(t) => t,
            None => {
                self.touched
                    .push((report_suite.to_string(), foldhash::HashMap::default()));
                self.touched.len() - 1
            }
        }
    }

    /// Enriches one row: one [`EnrichedHit`] per distinct report suite, in
    /// the row's order. `states` is only asked about pairs this file has not
    /// touched yet, so it must answer with state as of before the file.
    pub fn enrich<S: VisitorStates>(
        &mut self,
        hit: Hit,
        states: &mut S,
    ) -> Result<Vec<EnrichedHit>, S::Error> {
        let mut out = Vec::with_capacity(1);
        self.enrich_into(hit, states, &mut out)?;
        Ok(out)
    }

    /// [`FileEnricher::enrich`], appending the row's hits to `out` (a
    /// caller that enriches every row of a file reuses one vector).
    pub fn enrich_into<S: VisitorStates>(
        &mut self,
        hit: Hit,
        states: &mut S,
        out: &mut Vec<EnrichedHit>,
    ) -> Result<(), S::Error> {
        let mut key = std::mem::take(&mut self.key);
        hit.visitor.write_key(&mut key);
        let mut parts = std::mem::take(&mut self.parts);
        let r = self.enrich_keyed(hit, &key, states, &mut parts, out);
        parts.clear();
        self.parts = parts;
        self.key = key;
        r
    }

    fn enrich_keyed<S: VisitorStates>(
        &mut self,
        hit: Hit,
        key: &str,
        states: &mut S,
        parts: &mut Vec<SuitePart>,
        out: &mut Vec<EnrichedHit>,
    ) -> Result<(), S::Error> {
        let is_page_view = hit.hit_type == HitType::PageView;
        let products = match hit.get(Field::Products) {
            Some(p) => Arc::new(parse_products(p)),
            None => self.no_products.clone(),
        };
        let purchase_id = hit.get(Field::PurchaseId);
        let referrer = hit.get(Field::Referrer);
        let page_url = hit.get(Field::PageUrl);
        let mut first_out_of_order: Option<(usize, i64)> = None;
        const NO_SETTINGS: &EvarSettings = &EvarSettings::EMPTY;
        for (i, suite) in hit.report_suites.iter().enumerate() {
            // A suite named twice in the row gets one hit.
            if hit.report_suites[..i].contains(suite) {
                continue;
            }
            let suite = suite.as_str();
            let t = self.suite_index(suite);
            // Commerce first: the events that count may expire eVars.
            let seen = &mut self.seen;
            let commerce = resolve(&hit.events, &products, purchase_id, |kind, id| {
                if seen.get(suite, kind, id).is_some() || states.seen(suite, kind, id)? {
                    return Ok(true);
                }
                seen.insert(suite, kind, id, ());
                Ok(false)
            })?;
            self.duplicate_events += u64::from(commerce.duplicate_events);
            self.duplicate_purchases += u64::from(commerce.duplicate_purchase);
            let slot = match self.touched[t]
                .1
                .entry(VisitorKey::from_slice(key.as_bytes()))
            {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    // Neither touched nor preloaded: asked on its own.
                    let before = states.get(suite, key)?;
                    self.known.insert(fingerprint(suite, key));
                    v.insert(Slot::Before(before))
                }
            };
            let last_before = match slot {
                Slot::Touched(s) => s.last_hit_time,
                Slot::Before(b) => b.as_ref().map_or(0, |s| s.last_hit_time),
            };
            let (visit, state) = slot.advance(hit.timestamp, is_page_view);
            let settings = self
                .evar_settings
                .iter()
                .find(|(s, _)| s == suite)
                .map_or(NO_SETTINGS, |(_, s)| s);
            let post_evars = persist(
                &mut state.evars,
                settings,
                &hit.evars,
                |name| commerce.counts(name),
                hit.timestamp,
                visit.visit_num,
            );
            if visit.out_of_order && first_out_of_order.is_none() {
                first_out_of_order = Some((i, last_before));
            }
            let filters = Self::filters(&self.internal_url_filters, suite);
            parts.push(SuitePart {
                suite: i,
                visit,
                traffic: self.traffic.classify(referrer, page_url, filters),
                post_evars,
                commerce,
            });
        }
        if let Some((i, last)) = first_out_of_order {
            self.out_of_order.rows += 1;
            if self.out_of_order.examples.len() < MAX_OUT_OF_ORDER_EXAMPLES {
                self.out_of_order.examples.push(OutOfOrder {
                    row: hit.row,
                    report_suite: hit.report_suites[i].to_string(),
                    visitor_key: key.to_string(),
                    hit_time: hit.timestamp,
                    last_hit_time: last,
                });
            }
        }
        let mut seeded = self.identity.seeded(&hit.visitor);
        let kind = hit.visitor.kind;
        let device = hit.get(Field::UserAgent).map(|ua| self.devices.get(ua));
        let n = parts.len();
        out.reserve(n);
        let mut hit = Some(hit);
        for (i, p) in parts.drain(..).enumerate() {
            let last = i + 1 == n;
            let report_suite = hit.as_ref().expect("still here").report_suites[p.suite].clone();
            let h = if last {
                hit.take().expect("moved once, at the end")
            } else {
                hit.as_ref().expect("still here").clone()
            };
            out.push(EnrichedHit {
                hit: h,
                report_suite,
                seeded_visitor_id: if last { seeded.take() } else { seeded.clone() },
                visitor_id_type: kind,
                visit: p.visit,
                device: device.clone(),
                traffic: p.traffic,
                post_evars: p.post_evars,
                commerce: p.commerce,
            });
        }
        self.hits += n as u64;
        Ok(())
    }

    /// Ends the file: the new state of every touched pair, and the
    /// out-of-order report.
    pub fn finish(self) -> (StateDelta, OutOfOrderReport) {
        let mut entries: Vec<StateEntry> = self
            .touched
            .into_iter()
            .flat_map(|(suite, m)| {
                m.into_iter()
                    .filter_map(move |(visitor_key, slot)| match slot {
                        Slot::Touched(state) => Some(StateEntry {
                            report_suite: suite.clone(),
                            // The bytes of a `str`: converted as they are.
                            visitor_key: String::from_utf8_lossy(&visitor_key).into_owned(),
                            state,
                        }),
                        // Preloaded for a hit that never came (a stopped file).
                        Slot::Before(_) => None,
                    })
            })
            .collect();
        entries.sort_by(|a, b| {
            (&a.report_suite, &a.visitor_key).cmp(&(&b.report_suite, &b.visitor_key))
        });
        let mut seen: Vec<SeenId> = self.seen.into_ids().map(|(id, ())| id).collect();
        seen.sort();
        (StateDelta { entries, seen }, self.out_of_order)
    }
}

/// The enrichment of a whole file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileEnrichment {
    /// Output hits, in file order; a row with several suites gives several.
    pub hits: Vec<EnrichedHit>,
    /// New state of every touched (report suite, visitor).
    pub delta: StateDelta,
    /// Rows that went back in time.
    pub out_of_order: OutOfOrderReport,
}

/// Enriches all hits of one file against the state before it: a pure
/// function of (`hits`, the state `states` returns).
pub fn enrich_file<S: VisitorStates>(
    hits: impl IntoIterator<Item = Hit>,
    identity: &Identity,
    mut states: S,
) -> Result<FileEnrichment, S::Error> {
    let mut enricher = FileEnricher::new(identity);
    let mut out = Vec::new();
    for hit in hits {
        out.extend(enricher.enrich(hit, &mut states)?);
    }
    let (delta, out_of_order) = enricher.finish();
    Ok(FileEnrichment {
        hits: out,
        delta,
        out_of_order,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversion::EvarSetting;
    use crate::identity::seeded_visitor_id;
    use bdia_format::fields::Field;
    use bdia_format::hit::{LinkType, Visitor};
    use proptest::prelude::*;

    fn hit(row: u64, ts: i64, suites: &[&str], kind: VisitorKind, id: &str, page: bool) -> Hit {
        Hit {
            row,
            timestamp: ts,
            report_suites: suites.iter().map(|s| (*s).into()).collect(),
            visitor: Visitor {
                kind,
                customer_id_type: (kind == VisitorKind::Customer).then(|| "CRM".to_string()),
                id: id.into(),
            },
            hit_type: if page {
                HitType::PageView
            } else {
                HitType::Link(LinkType::Custom)
            },
            vars: vec![None; Field::COUNT],
            evars: Default::default(),
            props: Default::default(),
            hiers: Default::default(),
            lists: Default::default(),
            context_data: Default::default(),
            hints: Default::default(),
            customer_ids: Default::default(),
            events: vec![],
        }
    }

    fn vid(row: u64, ts: i64, id: &str) -> Hit {
        hit(row, ts, &["rs1"], VisitorKind::Vid, id, true)
    }

    fn summary(out: &FileEnrichment) -> Vec<(u64, &str, u32, u32, bool)> {
        out.hits
            .iter()
            .map(|h| {
                (
                    h.hit.row,
                    h.report_suite.as_str(),
                    h.visit.visit_num,
                    h.visit.visit_page_num,
                    h.visit.new_visit,
                )
            })
            .collect()
    }

    fn shop(
        row: u64,
        ts: i64,
        suites: &[&str],
        evar1: Option<&str>,
        events: &str,
        pid: Option<&str>,
    ) -> Hit {
        let mut h = hit(row, ts, suites, VisitorKind::Vid, "a", true);
        if let Some(v) = evar1 {
            h.evars.insert(1, v.into());
        }
        h.events = bdia_format::hit::parse_events(events);
        h.vars[Field::Products as usize] = Some(";Boot;2;100".into());
        h.vars[Field::PurchaseId as usize] = pid.map(Into::into);
        h
    }

    #[test]
    fn evars_persist_and_ids_count_once_across_files_per_suite() {
        let identity = Identity::new(*b"s");
        let mut states = MemoryStates::default();
        let f1 = enrich_file(
            [
                shop(1, 0, &["rs1"], Some("promo"), "event1:S1", None),
                shop(2, 10, &["rs1"], None, "purchase", Some("ORD-1")),
            ],
            &identity,
            &mut states,
        )
        .unwrap();
        assert_eq!(f1.hits[1].post_evars[..], [(1, "promo".into())]);
        assert!(f1.hits[1].commerce.order);
        assert_eq!(f1.hits[1].commerce.revenue, Some(100.0));
        assert_eq!(f1.delta.seen.len(), 2);
        states.apply(&f1.delta);
        // The second file: same visit (20 s later), a repeated serial and
        // purchase ID in rs1, the same IDs are new in rs2.
        let mut enricher = FileEnricher::new(&identity)
            .with_evar_settings("rs2", &[EvarSetting::parse("1=hit").unwrap()]);
        let mut out = Vec::new();
        for h in [
            shop(
                1,
                30,
                &["rs1", "rs2"],
                None,
                "event1:S1,purchase",
                Some("ORD-1"),
            ),
            shop(2, 40, &["rs2"], None, "purchase", Some("ORD-1")),
        ] {
            out.extend(enricher.enrich(h, &mut states).unwrap());
        }
        let lines = enricher.commerce_log_lines();
        let (delta, _) = enricher.finish();
        let rs1 = &out[0];
        assert_eq!(
            rs1.post_evars[..],
            [(1, "promo".into())],
            "persisted from the stored state"
        );
        assert!(rs1.commerce.events.is_empty());
        assert!(rs1.commerce.duplicate_purchase);
        let rs2 = &out[1];
        assert!(rs2.post_evars.is_empty(), "no value was ever sent to rs2");
        assert!(rs2.commerce.order && rs2.commerce.counts("event1"));
        assert!(
            out[2].commerce.duplicate_purchase,
            "counted earlier in the same file"
        );
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("Serialized events: 1 "), "{lines:?}");
        assert!(lines[1].starts_with("Duplicate purchases: 2 "), "{lines:?}");
        assert_eq!(
            delta
                .seen
                .iter()
                .map(|s| (s.report_suite.as_str(), s.kind.as_str()))
                .collect::<Vec<_>>(),
            [("rs2", "event:event1"), ("rs2", "purchase_id")]
        );
    }

    #[test]
    fn two_suites_on_one_row_give_one_hit_each_with_its_own_visits() {
        let identity = Identity::new(*b"s");
        let hits = vec![
            hit(1, 0, &["rs1"], VisitorKind::Vid, "a", true),
            hit(2, 100, &["rs1", "rs2"], VisitorKind::Vid, "a", true),
            hit(3, 200, &["rs2", "rs1", "rs2"], VisitorKind::Vid, "a", false),
        ];
        let out = enrich_file(hits, &identity, MemoryStates::default()).unwrap();
        assert_eq!(
            summary(&out),
            [
                (1, "rs1", 1, 1, true),
                (2, "rs1", 1, 2, false),
                (2, "rs2", 1, 1, true),
                (3, "rs2", 1, 1, false),
                (3, "rs1", 1, 2, false),
            ]
        );
        assert_eq!(out.delta.entries.len(), 2);
        assert_eq!(out.delta.entries[0].report_suite, "rs1");
        assert_eq!(out.delta.entries[1].report_suite, "rs2");
        assert_eq!(out.delta.entries[0].state.last_hit_time, 200);
    }

    #[test]
    fn visitors_continue_across_files() {
        let identity = Identity::new(*b"s");
        let mut states = MemoryStates::default();
        let f1 = enrich_file([vid(1, 0, "a"), vid(2, 600, "a")], &identity, &mut states).unwrap();
        states.apply(&f1.delta);
        // 1,800 s after the last hit of file 1: the same visit, page 3.
        let f2 = enrich_file(
            [vid(1, 2_400, "a"), vid(2, 4_201, "a"), vid(3, 4_300, "b")],
            &identity,
            &mut states,
        )
        .unwrap();
        assert_eq!(
            summary(&f2),
            [
                (1, "rs1", 1, 3, false),
                (2, "rs1", 2, 1, true),
                (3, "rs1", 1, 1, true),
            ]
        );
        states.apply(&f2.delta);
        assert_eq!(
            states.state("rs1", "vid:a"),
            Some(VisitState {
                last_hit_time: 4_201,
                visit_num: 2,
                visit_start_time: 4_201,
                visit_page_num: 1,
                evars: Default::default(),
            })
        );
        assert_eq!(states.len(), 2);
    }

    #[test]
    fn a_rerun_from_the_same_state_is_identical() {
        let identity = Identity::new(*b"s");
        let mut states = MemoryStates::default();
        let f1 = enrich_file([vid(1, 0, "a")], &identity, &mut states).unwrap();
        states.apply(&f1.delta);
        let file2 = vec![vid(1, 100, "a"), vid(2, 50, "a"), vid(3, 9_000, "b")];
        let a = enrich_file(file2.clone(), &identity, &mut states).unwrap();
        let b = enrich_file(file2, &identity, &mut states.clone()).unwrap();
        assert_eq!(a, b);
        // Applying the delta twice changes nothing more.
        states.apply(&a.delta);
        let once = states.clone();
        states.apply(&a.delta);
        assert_eq!(once, states);
    }

    #[test]
    fn out_of_order_rows_are_processed_counted_and_reported() {
        let identity = Identity::new(*b"s");
        let mut states = MemoryStates::default();
        let f1 = enrich_file([vid(1, 1_000, "a")], &identity, &mut states).unwrap();
        states.apply(&f1.delta);
        let mut file = vec![vid(1, 900, "a"), vid(2, 1_100, "a")];
        for i in 0..12 {
            file.push(vid(3 + i, 500 + i as i64, "a"));
        }
        let out = enrich_file(file, &identity, &mut states).unwrap();
        assert_eq!(out.hits.len(), 14, "nothing is dropped");
        assert!(out.hits[0].visit.out_of_order);
        assert_eq!(out.hits[0].visit.visit_num, 1);
        assert!(!out.hits[1].visit.out_of_order);
        assert_eq!(out.out_of_order.rows, 13);
        assert_eq!(out.out_of_order.examples.len(), MAX_OUT_OF_ORDER_EXAMPLES);
        assert_eq!(
            out.out_of_order.examples[0],
            OutOfOrder {
                row: 1,
                report_suite: "rs1".into(),
                visitor_key: "vid:a".into(),
                hit_time: 900,
                last_hit_time: 1_000
            }
        );
        assert_eq!(out.out_of_order.examples[1].last_hit_time, 1_100);
        let lines = out.out_of_order.log_lines();
        assert_eq!(lines.len(), 12);
        assert!(lines[0]
            .starts_with("On row: 1, the hit (900) is earlier than the last processed hit (1000)"));
        assert_eq!(
            lines[10],
            "3 more rows were earlier than their visitor's last processed hit."
        );
        assert_eq!(
            lines[11],
            "Out of order: 13 rows were earlier than their visitor's last processed hit."
        );
        // The state's last hit time did not move backwards.
        states.apply(&out.delta);
        assert_eq!(states.state("rs1", "vid:a").unwrap().last_hit_time, 1_100);
    }

    #[test]
    fn identities_of_different_kinds_never_merge() {
        let identity = Identity::new(*b"salt");
        let hits = vec![
            hit(1, 0, &["rs1"], VisitorKind::Vid, "x", true),
            hit(2, 10, &["rs1"], VisitorKind::Ip, "x", true),
            hit(3, 20, &["rs1"], VisitorKind::Mcid, "x", true),
            hit(4, 30, &["rs1"], VisitorKind::Customer, "x", true),
        ];
        let out = enrich_file(hits, &identity, MemoryStates::default()).unwrap();
        assert!(out
            .hits
            .iter()
            .all(|h| h.visit.new_visit && h.visit.visit_num == 1));
        assert_eq!(out.delta.entries.len(), 4);
        assert_eq!(
            out.hits[3].visitor_id(),
            seeded_visitor_id(b"salt", "CRM", "x")
        );
        assert_eq!(out.hits[3].visitor_id_type, VisitorKind::Customer);
        assert_eq!(out.hits[1].visitor_id(), "x");
        assert_eq!(out.hits[1].visitor_id_type, VisitorKind::Ip);
    }

    #[test]
    fn state_lookups_are_made_only_for_untouched_pairs() {
        struct Counting(MemoryStates, usize);
        impl VisitorStates for Counting {
            type Error = Infallible;
            fn get(&mut self, s: &str, k: &str) -> Result<Option<VisitState>, Infallible> {
                self.1 += 1;
                self.0.get(s, k)
            }
            fn seen(&mut self, s: &str, k: IdKind<'_>, id: &str) -> Result<bool, Infallible> {
                self.0.seen(s, k, id)
            }
        }
        let identity = Identity::new(*b"s");
        let mut c = Counting(MemoryStates::default(), 0);
        enrich_file((1..=100).map(|i| vid(i, i as i64, "a")), &identity, &mut c).unwrap();
        assert_eq!(c.1, 1);
    }

    /// States whose every lookup fails with `error`; the ID lookups too
    /// with `ids_too` (else no ID was seen).
    struct Failing {
        error: &'static str,
        ids_too: bool,
    }

    impl VisitorStates for Failing {
        type Error = &'static str;
        fn get(&mut self, _: &str, _: &str) -> Result<Option<VisitState>, &'static str> {
            Err(self.error)
        }
        fn seen(&mut self, _: &str, _: IdKind<'_>, _: &str) -> Result<bool, &'static str> {
            if self.ids_too {
                Err(self.error)
            } else {
                Ok(false)
            }
        }
    }

    #[test]
    fn preloaded_states_are_used_without_asking_and_only_touched_pairs_leave() {
        let mut refusing = Failing {
            error: "asked about a preloaded pair",
            ids_too: false,
        };
        let identity = Identity::new(*b"s");
        let mut e = FileEnricher::new(&identity);
        let (before, _) = first_hit(100, true);
        assert!(e.needs_state("rs1", "vid:a"));
        e.preload("rs1", "vid:a".into(), Some(before));
        e.preload("rs1", "vid:b".into(), None);
        // Preloaded and never touched (a file stopped before its hits).
        e.preload("rs1", "vid:c".into(), None);
        assert!(!e.needs_state("rs1", "vid:a") && e.needs_state("rs2", "vid:a"));
        let a = e.enrich(vid(1, 200, "a"), &mut refusing).unwrap();
        let b = e.enrich(vid(2, 200, "b"), &mut refusing).unwrap();
        // vid:a continues its visit from the preloaded state; vid:b is new.
        assert_eq!((a[0].visit.visit_num, a[0].visit.visit_page_num), (1, 2));
        assert!(!a[0].visit.new_visit);
        assert!(b[0].visit.new_visit);
        // A second preload of a touched pair changes nothing.
        e.preload("rs1", "vid:a".into(), None);
        let a = e.enrich(vid(3, 300, "a"), &mut refusing).unwrap();
        assert_eq!(a[0].visit.visit_page_num, 3);
        let (delta, _) = e.finish();
        let keys: Vec<&str> = delta
            .entries
            .iter()
            .map(|e| e.visitor_key.as_str())
            .collect();
        assert_eq!(keys, ["vid:a", "vid:b"]);
    }

    #[test]
    fn storage_errors_are_passed_through() {
        let broken = Failing {
            error: "disk on fire",
            ids_too: true,
        };
        let identity = Identity::new(*b"s");
        assert_eq!(
            enrich_file([vid(1, 0, "a")], &identity, broken).unwrap_err(),
            "disk on fire"
        );
    }

    #[test]
    fn devices_and_traffic_sources_are_set_per_hit_and_suite() {
        let identity = Identity::new(*b"s");
        let bot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        let mut hits = Vec::new();
        for (i, (ua, referrer)) in [
            (Some(bot), None),
            (Some(bot), Some("https://blog.example.com/post")),
            (None, Some("https://www.example.com/home")),
        ]
        .into_iter()
        .enumerate()
        {
            let mut h = hit(
                i as u64 + 1,
                i as i64,
                &["rs1", "rs2"],
                VisitorKind::Vid,
                "a",
                true,
            );
            h.vars[Field::UserAgent as usize] = ua.map(Into::into);
            h.vars[Field::Referrer as usize] = referrer.map(Into::into);
            h.vars[Field::PageUrl as usize] = Some("https://www.example.com/cart".into());
            hits.push(h);
        }
        let mut enricher = FileEnricher::new(&identity)
            .with_internal_url_filters("rs2", vec!["example.com".into()]);
        let mut states = MemoryStates::default();
        let mut out = Vec::new();
        for h in hits {
            out.extend(enricher.enrich(h, &mut states).unwrap());
        }
        assert_eq!(enricher.devices.parses(), 1, "one user agent, parsed once");
        assert!(out[0].device.as_ref().unwrap().is_bot());
        assert!(Arc::ptr_eq(
            out[0].device.as_ref().unwrap(),
            out[3].device.as_ref().unwrap()
        ));
        assert_eq!(out[4].device, None);
        let types: Vec<(&str, &str)> = out
            .iter()
            .map(|h| (h.report_suite.as_str(), h.traffic.referrer_type.as_str()))
            .collect();
        assert_eq!(
            types,
            [
                ("rs1", "typed_bookmarked"),
                ("rs2", "typed_bookmarked"),
                // rs1 has no filters: only the page's own host is internal.
                ("rs1", "other_web_site"),
                ("rs2", "internal"),
                ("rs1", "internal"),
                ("rs2", "internal"),
            ]
        );
    }

    proptest! {
        #[test]
        fn splitting_a_group_into_files_changes_nothing(
            gaps in prop::collection::vec((0i64..4_000, 0usize..4, any::<bool>(), 0usize..3), 1..150),
            cut in any::<prop::sample::Index>(),
        ) {
            let identity = Identity::new(*b"s");
            let suites = [&["rs1"][..], &["rs2"][..], &["rs1", "rs2"][..]];
            let mut t = 1_000_000i64;
            let hits: Vec<Hit> = gaps
                .iter()
                .enumerate()
                .map(|(i, &(g, v, page, s))| {
                    t += g;
                    hit(i as u64 + 1, t, suites[s], VisitorKind::Vid, &format!("v{v}"), page)
                })
                .collect();
            let whole = enrich_file(hits.clone(), &identity, MemoryStates::default()).unwrap();
            let cut = cut.index(hits.len() + 1);
            let mut states = MemoryStates::default();
            let a = enrich_file(hits[..cut].to_vec(), &identity, &mut states).unwrap();
            states.apply(&a.delta);
            let b = enrich_file(hits[cut..].to_vec(), &identity, &mut states).unwrap();
            states.apply(&b.delta);
            let mut split = a.hits;
            split.extend(b.hits);
            prop_assert_eq!(&whole.hits, &split);
            let mut all = MemoryStates::default();
            all.apply(&whole.delta);
            prop_assert_eq!(all, states);
            prop_assert_eq!(whole.out_of_order.rows, 0);
        }
    }
}
