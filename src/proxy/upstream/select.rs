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
