//! The scan-engine pool's series: per engine its state, sessions in flight, ejections, active
//! checks and retries; for the shared queue its length and how long requests waited in it.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{LabelText, LatencyHistogram};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EngineLabels {
    upstream: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    upstream: LabelText,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    upstream: LabelText,
    reason: &'static str,
}

/// Why a request went to a second engine (`reason` of `scangate_upstream_retries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// The first engine could not be reached before any byte was sent.
    Connect,
    /// A scan call whose first engine failed before its response head.
    Scan,
}

impl RetryReason {
    const ALL: [RetryReason; 2] = [RetryReason::Connect, RetryReason::Scan];

    fn as_str(self) -> &'static str {
        match self {
            RetryReason::Connect => "connect",
            RetryReason::Scan => "scan",
        }
    }
}

/// One engine's state as `/metrics` shows it.
#[derive(Debug, Clone, Copy)]
pub struct EngineGauges {
    /// Active checks say it is up.
    pub up: bool,
    /// Passive ejection has it out of rotation.
    pub ejected: bool,
    /// Requests in flight to it.
    pub in_flight: usize,
}

/// The pool's metric handles.
#[derive(Debug)]
pub struct EngineMetrics {
    ejected: Family<EngineLabels, Gauge>,
    in_flight: Family<EngineLabels, Gauge>,
    ejections: Family<EngineLabels, Counter>,
    checks: Family<CheckLabels, Counter>,
    retries: Family<RetryLabels, Counter>,
    queue_length: Gauge,
    /// `scangate_upstream_queue_wait_seconds`: only requests that waited are observed.
    pub queue_wait: LatencyHistogram,
}

impl EngineMetrics {
    pub(super) fn register(registry: &mut Registry) -> EngineMetrics {
        let m = EngineMetrics {
            ejected: Family::default(),
            in_flight: Family::default(),
            ejections: Family::default(),
            checks: Family::default(),
            retries: Family::default(),
            queue_length: Gauge::default(),
            queue_wait: LatencyHistogram::new(),
        };
        registry.register(
            "upstream_ejected",
            "1 while passive ejection (consecutive failures) keeps the engine out of rotation",
            m.ejected.clone(),
        );
        registry.register(
            "upstream_in_flight",
            "Requests in flight to the engine, against its MaxSessions",
            m.in_flight.clone(),
        );
        registry.register(
            "upstream_ejections",
            "Times the engine was ejected after consecutive failures",
            m.ejections.clone(),
        );
        registry.register(
            "upstream_health_checks",
            "Active health checks of the engine, by result: pass or fail",
            m.checks.clone(),
        );
        registry.register(
            "upstream_retries",
            "Requests sent to another engine after this one failed, by reason: connect or scan",
            m.retries.clone(),
        );
        registry.register(
            "upstream_queue_length",
            "Requests waiting for a free engine session",
            m.queue_length.clone(),
        );
        registry.register_with_unit(
            "upstream_queue_wait",
            "Time requests waited in the queue for a free engine session (requests that waited)",
            Unit::Seconds,
            m.queue_wait.clone(),
        );
        m
    }

    fn labels(upstream: &Arc<str>) -> EngineLabels {
        EngineLabels {
            upstream: LabelText(Arc::clone(upstream)),
        }
    }

    /// Sets an engine's gauges (done when `/metrics` is read, not per request).
    pub fn engine(&self, upstream: &Arc<str>, g: EngineGauges) {
        let l = Self::labels(upstream);
        self.ejected.get_or_create(&l).set(i64::from(g.ejected));
        let in_flight = i64::try_from(g.in_flight).unwrap_or(i64::MAX);
        self.in_flight.get_or_create(&l).set(in_flight);
    }

    /// Sets the queue's length.
    pub fn queue_length(&self, n: usize) {
        self.queue_length.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts an ejection.
    pub fn ejection(&self, upstream: &Arc<str>) {
        self.ejections.get_or_create(&Self::labels(upstream)).inc();
    }

    /// Counts an active check.
    pub fn check(&self, upstream: &Arc<str>, pass: bool) {
        let labels = CheckLabels {
            upstream: LabelText(Arc::clone(upstream)),
            result: if pass { "pass" } else { "fail" },
        };
        self.checks.get_or_create(&labels).inc();
    }

    /// Counts a retry away from `upstream`.
    pub fn retry(&self, upstream: &Arc<str>, reason: RetryReason) {
        let labels = RetryLabels {
            upstream: LabelText(Arc::clone(upstream)),
            reason: reason.as_str(),
        };
        self.retries.get_or_create(&labels).inc();
    }

    /// Drops the series of an engine that left the config.
    pub(super) fn forget(&self, upstream: &Arc<str>) {
        let l = Self::labels(upstream);
        self.ejected.remove(&l);
        self.in_flight.remove(&l);
        self.ejections.remove(&l);
        for result in ["pass", "fail"] {
            self.checks.remove(&CheckLabels {
                upstream: l.upstream.clone(),
                result,
            });
        }
        for reason in RetryReason::ALL {
            self.retries.remove(&RetryLabels {
                upstream: l.upstream.clone(),
                reason: reason.as_str(),
            });
        }
    }
}
