//! `scangate_request_duration_seconds`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Upper bounds of `scangate_request_duration_seconds`, in seconds. A scan takes from well under a
/// millisecond (EICAR in memory) to tens of seconds (a large archive).
pub const DURATION_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// `scangate_request_duration_seconds`: prometheus-client's histogram takes a write lock per
/// observation; this one is a row of atomics, so requests on different cores never wait on each
/// other. The registry encodes it like any histogram.
#[derive(Clone, Debug)]
pub struct LatencyHistogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    /// Non-cumulative counts; the last cell is `+Inf`.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    pub(crate) fn new() -> LatencyHistogram {
        LatencyHistogram(Arc::new(HistogramCells {
            buckets: Default::default(),
            sum_nanos: AtomicU64::new(0),
        }))
    }

    /// Records one request's duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = DURATION_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        let bounds = DURATION_BUCKETS.iter().copied().chain([f64::MAX]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(self.0.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' sum, so `_count` always equals the `+Inf` bucket.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::Metrics;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_matches() {
        let m = Metrics::new();
        m.duration.observe(Duration::from_micros(300));
        m.duration.observe(Duration::from_millis(3));
        m.duration.observe(Duration::from_secs(60));
        let text = m.encode();
        assert!(text.contains(r#"scangate_request_duration_seconds_bucket{le="0.0005"} 1"#));
        assert!(text.contains(r#"scangate_request_duration_seconds_bucket{le="0.005"} 2"#));
        assert!(text.contains(r#"scangate_request_duration_seconds_bucket{le="30.0"} 2"#));
        assert!(text.contains(r#"scangate_request_duration_seconds_bucket{le="+Inf"} 3"#));
        assert!(text.contains("scangate_request_duration_seconds_count 3"));
    }
}
