//! Upstream selection: the least outstanding requests per unit of weight among the engines of a
//! group that are up, not ejected and below their `MaxSessions`; ties go round robin (as Pingora's
//! and Envoy's least-request pickers break them), so a slow engine, whose requests stay in flight
//! longer, gets fewer new ones.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::Upstream;

/// The engines one principal may use: the default group, or a tenant's.
#[derive(Debug)]
pub struct Group {
    engines: Box<[Arc<Upstream>]>,
    /// Where the next pick starts looking: the round-robin tie-break.
    next: AtomicUsize,
}

/// What a pick found.
#[derive(Debug)]
pub enum Pick {
    /// A session on this engine, already counted in its in-flight requests.
    Got(Arc<Upstream>),
    /// Engines are up, but all are at their cap.
    Full,
    /// No engine of the group is up (or the only ones up were excluded).
    NoEngine,
}

impl Group {
    /// A group of `engines`, in config order.
    pub fn new(engines: Vec<Arc<Upstream>>) -> Group {
        Group {
            engines: engines.into_boxed_slice(),
            next: AtomicUsize::new(0),
        }
    }

    /// Its engines.
    pub fn engines(&self) -> &[Arc<Upstream>] {
        &self.engines
    }

    /// Whether any engine but `exclude` may take traffic at `now`, full or not.
    pub fn any_available(&self, now: u64, exclude: Option<&Arc<Upstream>>) -> bool {
        let excluded = |e: &Arc<Upstream>| exclude.is_some_and(|x| Arc::ptr_eq(x, e));
        self.engines
            .iter()
            .any(|e| !excluded(e) && e.health.available(now))
    }

    /// Takes a session on the best engine but `exclude` at `now`.
    pub fn try_pick(&self, now: u64, exclude: Option<&Arc<Upstream>>) -> Pick {
        let n = self.engines.len();
        if n == 0 {
            return Pick::NoEngine;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // Another request may take the chosen session first; then look again.
        for _ in 0..=n {
            let mut best: Option<(&Arc<Upstream>, usize, usize)> = None;
            let mut available = false;
            for k in 0..n {
                let e = &self.engines[(start + k) % n];
                if exclude.is_some_and(|x| Arc::ptr_eq(x, e)) || !e.health.available(now) {
                    continue;
                }
                available = true;
                let in_flight = e.in_flight.load(Ordering::SeqCst);
                if in_flight >= e.max_sessions() {
                    continue;
                }
                let weight = e.weight();
                // a/wa < b/wb  ⇔  a·wb < b·wa; strictly less, so ties keep rotation order.
                let better = best.is_none_or(|(_, bf, bw)| in_flight * bw < bf * weight);
                if better {
                    best = Some((e, in_flight, weight));
                }
            }
            match best {
                None if available => return Pick::Full,
                None => return Pick::NoEngine,
                Some((e, _, _)) => {
                    if e.try_take_session() {
                        return Pick::Got(Arc::clone(e));
                    }
                }
            }
        }
        Pick::Full
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::upstream::health::now_ms;
    use crate::proxy::upstream::test_engine;

    fn got(p: Pick) -> Arc<Upstream> {
        match p {
            Pick::Got(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn least_outstanding_per_weight_with_round_robin_ties() {
        let (a, b) = (test_engine(100, 1), test_engine(100, 2));
        let g = Group::new(vec![Arc::clone(&a), Arc::clone(&b)]);
        for _ in 0..30 {
            got(g.try_pick(now_ms(), None));
        }
        // Weight 2 carries twice the load.
        assert_eq!((a.in_flight(), b.in_flight()), (10, 20));
        // Equal engines, nothing in flight: ties alternate.
        let (c, d) = (test_engine(100, 1), test_engine(100, 1));
        let g = Group::new(vec![Arc::clone(&c), Arc::clone(&d)]);
        let first = got(g.try_pick(now_ms(), None));
        c.in_flight.store(0, Ordering::SeqCst);
        d.in_flight.store(0, Ordering::SeqCst);
        let second = got(g.try_pick(now_ms(), None));
        assert!(!Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn the_cap_health_and_exclusion_decide_what_can_be_picked() {
        let (a, b) = (test_engine(2, 1), test_engine(2, 1));
        let g = Group::new(vec![Arc::clone(&a), Arc::clone(&b)]);
        for _ in 0..4 {
            got(g.try_pick(now_ms(), None));
        }
        assert!(matches!(g.try_pick(now_ms(), None), Pick::Full));
        a.in_flight.store(0, Ordering::SeqCst);
        assert!(Arc::ptr_eq(&got(g.try_pick(now_ms(), None)), &a));
        // Excluding the only engine with room: full, not "no engine".
        assert!(matches!(g.try_pick(now_ms(), Some(&a)), Pick::Full));
        for _ in 0..3 {
            a.health.checked(false);
        }
        assert!(matches!(g.try_pick(now_ms(), Some(&b)), Pick::NoEngine));
        assert!(!g.any_available(now_ms(), Some(&b)) && g.any_available(now_ms(), None));
        // An ejected engine is skipped like a down one.
        b.health.eject(now_ms());
        assert!(matches!(g.try_pick(now_ms(), None), Pick::NoEngine));
    }
}
