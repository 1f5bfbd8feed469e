//! The visit rules (spec section 6), for one visitor in one report suite.
//!
//! State kept per (report suite, visitor): [`VisitState`]. A hit at time `t`
//! (unix seconds) given the state before it:
//!
//! - no state: visit 1 starts at `t`;
//! - `t - last_hit_time > 1,800` (more than 30 minutes of inactivity, a gap
//!   of exactly 1,800 s continues), or `t - visit_start_time >= 43,200` (the
//!   visit has lasted 12 hours): visit N+1 starts at `t`;
//! - `t < last_hit_time` (the hit goes back in time): it is still processed,
//!   joins the current visit and is flagged out of order; `last_hit_time`
//!   never moves backwards;
//! - otherwise the hit continues the current visit.
//!
//! `visit_page_num` counts the page views of the visit so far, this hit
//! included: a visit's first page view has 1, a link hit does not
//! increment it (a visit opened by a link hit has 0 until its first page view).

use serde::{Deserialize, Serialize};

use crate::conversion::Evars;

/// More than this many seconds since the visitor's previous hit starts a new visit.
pub const VISIT_TIMEOUT_SECS: i64 = 1_800;

/// A visit that has lasted this many seconds ends; the next hit starts a new one.
pub const MAX_VISIT_SECS: i64 = 43_200;

/// What is remembered per (report suite, visitor) between hits and files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VisitState {
    /// Latest hit time seen (unix seconds); never moves backwards.
    pub last_hit_time: i64,
    /// Current visit number, from 1.
    pub visit_num: u32,
    /// When the current visit started (unix seconds).
    pub visit_start_time: i64,
    /// Page views so far in the current visit.
    pub visit_page_num: u32,
    /// The visitor's live eVar values, sorted by eVar
    /// ([`crate::conversion::persist`]).
    #[serde(default, skip_serializing_if = "Evars::is_empty")]
    pub evars: Evars,
}

/// What one hit learns about its visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VisitInfo {
    /// Visit number, from 1, per visitor and report suite.
    pub visit_num: u32,
    /// Page views so far in the visit, this hit included.
    pub visit_page_num: u32,
    /// When the visit started (unix seconds).
    pub visit_start_time: i64,
    /// True on the first hit of a visit.
    pub new_visit: bool,
    /// True when the hit is earlier than the visitor's last processed hit.
    pub out_of_order: bool,
}

/// Applies one hit at `time` to the visitor's state; returns the new state
/// and what the hit learns. Pure: the same inputs give the same outputs.
///
/// ```
/// use bdia_model::visit::advance;
/// let (s, first) = advance(None, 1_000, true);
/// assert_eq!((first.visit_num, first.visit_page_num, first.new_visit), (1, 1, true));
/// let (_, next) = advance(Some(&s), 1_000 + 1_800, true);
/// assert_eq!((next.visit_num, next.visit_page_num, next.new_visit), (1, 2, false));
/// let (_, later) = advance(Some(&s), 1_000 + 1_801, true);
/// assert_eq!((later.visit_num, later.visit_page_num, later.new_visit), (2, 1, true));
/// ```
pub fn advance(
    state: Option<&VisitState>,
    time: i64,
    is_page_view: bool,
) -> (VisitState, VisitInfo) {
    match state {
        None => first_hit(time, is_page_view),
        Some(s) => {
            let mut next = s.clone();
            let info = advance_in_place(&mut next, time, is_page_view);
            (next, info)
        }
    }
}

/// The state of a visitor's first hit at `time`.
pub fn first_hit(time: i64, is_page_view: bool) -> (VisitState, VisitInfo) {
    let s = VisitState {
        last_hit_time: time,
        visit_num: 1,
        visit_start_time: time,
        visit_page_num: u32::from(is_page_view),
        evars: Evars::new(),
    };
    let info = VisitInfo {
        visit_num: 1,
        visit_page_num: s.visit_page_num,
        visit_start_time: time,
        new_visit: true,
        out_of_order: false,
    };
    (s, info)
}

/// [`advance`] on a known visitor, changing its state where it is.
pub fn advance_in_place(s: &mut VisitState, time: i64, is_page_view: bool) -> VisitInfo {
    let page = u32::from(is_page_view);
    let (new_visit, out_of_order) = if time < s.last_hit_time {
        s.visit_page_num = s.visit_page_num.saturating_add(page);
        (false, true)
    } else if time - s.last_hit_time > VISIT_TIMEOUT_SECS
        || time - s.visit_start_time >= MAX_VISIT_SECS
    {
        s.last_hit_time = time;
        s.visit_num = s.visit_num.saturating_add(1);
        s.visit_start_time = time;
        s.visit_page_num = page;
        (true, false)
    } else {
        s.last_hit_time = time;
        s.visit_page_num = s.visit_page_num.saturating_add(page);
        (false, false)
    };
    VisitInfo {
        visit_num: s.visit_num,
        visit_page_num: s.visit_page_num,
        visit_start_time: s.visit_start_time,
        new_visit,
        out_of_order,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs a sequence of (time, is_page_view) from no state.
    fn run(hits: &[(i64, bool)]) -> Vec<VisitInfo> {
        let mut state = None;
        hits.iter()
            .map(|&(t, p)| {
                let (s, info) = advance(state.as_ref(), t, p);
                state = Some(s);
                info
            })
            .collect()
    }

    #[test]
    fn gap_of_exactly_1800_continues_and_1801_starts_a_new_visit() {
        let v = run(&[(0, true), (1_800, true), (3_601, true)]);
        assert_eq!(
            v.iter()
                .map(|i| (i.visit_num, i.visit_page_num, i.new_visit))
                .collect::<Vec<_>>(),
            [(1, 1, true), (1, 2, false), (2, 1, true)]
        );
        assert_eq!(v[2].visit_start_time, 3_601);
        assert_eq!(v[1].visit_start_time, 0);
    }

    #[test]
    fn a_visit_crossing_12_hours_is_cut_at_43200_seconds() {
        // A hit every 1,000 s: never idle, so only the 12 h rule cuts.
        let hits: Vec<(i64, bool)> = (0..=44).map(|i| (i * 1_000, true)).collect();
        let v = run(&hits);
        // 43,000 s after the start continues; 44,000 >= 43,200 starts visit 2.
        assert_eq!(v[43].visit_num, 1);
        assert_eq!(v[43].visit_page_num, 44);
        assert_eq!(v[44].visit_num, 2);
        assert!(v[44].new_visit);
        assert_eq!(v[44].visit_start_time, 44_000);
        // Exactly 43,200 s after the start is already a new visit.
        let mut hits = vec![(0, true)];
        let mut t = 0;
        while t < 43_200 - 1_800 {
            t += 1_800;
            hits.push((t, true));
        }
        hits.push((43_199, false));
        hits.push((43_200, false));
        let v = run(&hits);
        let n = v.len();
        assert_eq!(v[n - 2].visit_num, 1, "43,199 s after the start continues");
        assert_eq!((v[n - 1].visit_num, v[n - 1].new_visit), (2, true));
    }

    #[test]
    fn link_hits_do_not_count_as_pages() {
        let v = run(&[(0, false), (10, true), (20, false), (30, true)]);
        assert_eq!(
            v.iter().map(|i| i.visit_page_num).collect::<Vec<_>>(),
            [0, 1, 1, 2]
        );
        assert!(v[0].new_visit);
    }

    #[test]
    fn out_of_order_hits_join_the_current_visit() {
        let v = run(&[(1_000, true), (5_000, true), (100, true), (5_010, false)]);
        // 5,000 is a new visit (gap 4,000); 100 goes back in time and joins it.
        assert_eq!(v[2].visit_num, 2);
        assert!(v[2].out_of_order);
        assert!(!v[2].new_visit);
        assert_eq!(v[2].visit_page_num, 2);
        assert_eq!(v[2].visit_start_time, 5_000);
        // last_hit_time stayed at 5,000: 5,010 continues the visit.
        assert_eq!((v[3].visit_num, v[3].out_of_order), (2, false));
        // An equal timestamp is not out of order.
        let v = run(&[(7, true), (7, true)]);
        assert!(!v[1].out_of_order);
    }

    fn hits_strategy() -> impl Strategy<Value = Vec<(i64, bool)>> {
        // Time-ordered hits with gaps around the thresholds.
        prop::collection::vec(
            (
                prop_oneof![
                    0i64..=60,
                    1_790i64..=1_810,
                    0i64..=3_000,
                    43_000i64..=43_300
                ],
                any::<bool>(),
            ),
            1..200,
        )
        .prop_map(|gaps| {
            let mut t = 1_500_000_000i64;
            gaps.into_iter()
                .map(|(g, p)| {
                    t += g;
                    (t, p)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn visits_follow_the_rules(hits in hits_strategy()) {
            let v = run(&hits);
            prop_assert_eq!(v[0].visit_num, 1);
            prop_assert!(v[0].new_visit);
            for i in 1..hits.len() {
                let (t, page) = hits[i];
                let (prev_t, _) = hits[i - 1];
                let expect_new = t - prev_t > VISIT_TIMEOUT_SECS
                    || t - v[i - 1].visit_start_time >= MAX_VISIT_SECS;
                prop_assert_eq!(v[i].new_visit, expect_new);
                prop_assert!(!v[i].out_of_order);
                if expect_new {
                    prop_assert_eq!(v[i].visit_num, v[i - 1].visit_num + 1);
                    prop_assert_eq!(v[i].visit_start_time, t);
                    prop_assert_eq!(v[i].visit_page_num, u32::from(page));
                } else {
                    prop_assert_eq!(v[i].visit_num, v[i - 1].visit_num);
                    prop_assert_eq!(v[i].visit_start_time, v[i - 1].visit_start_time);
                    prop_assert_eq!(v[i].visit_page_num, v[i - 1].visit_page_num + u32::from(page));
                }
                // Invariants: visits never exceed 12 h, never start after the hit.
                prop_assert!(t - v[i].visit_start_time < MAX_VISIT_SECS);
                prop_assert!(v[i].visit_start_time <= t);
            }
            // The page count of each visit equals its page views.
            let mut per_visit = std::collections::BTreeMap::<u32, u32>::new();
            for (info, (_, page)) in v.iter().zip(&hits) {
                *per_visit.entry(info.visit_num).or_default() += u32::from(*page);
                prop_assert_eq!(per_visit[&info.visit_num], info.visit_page_num);
            }
        }

        #[test]
        fn splitting_a_sequence_anywhere_gives_the_same_visits(
            hits in hits_strategy(),
            cut in any::<prop::sample::Index>(),
        ) {
            // Processing in two files with the state carried over equals one pass.
            let whole = run(&hits);
            let cut = cut.index(hits.len() + 1);
            let mut state = None;
            let mut parts = Vec::new();
            for chunk in [&hits[..cut], &hits[cut..]] {
                let carried = state;
                let mut s = carried;
                for &(t, p) in chunk {
                    let (n, info) = advance(s.as_ref(), t, p);
                    s = Some(n);
                    parts.push(info);
                }
                state = s;
            }
            prop_assert_eq!(whole, parts);
        }

        #[test]
        fn out_of_order_hits_never_start_a_visit(
            hits in hits_strategy(),
            back in 1i64..100_000,
            page in any::<bool>(),
        ) {
            let mut state = None;
            for &(t, p) in &hits {
                state = Some(advance(state.as_ref(), t, p).0);
            }
            let s = state.unwrap();
            let (n, info) = advance(Some(&s), s.last_hit_time - back, page);
            prop_assert!(info.out_of_order);
            prop_assert!(!info.new_visit);
            prop_assert_eq!(info.visit_num, s.visit_num);
            prop_assert_eq!(n.last_hit_time, s.last_hit_time);
            prop_assert_eq!(n.visit_start_time, s.visit_start_time);
        }
    }
}
