//! The series of per-principal limits: refusals by kind, quota used, and whether quota counts
//! reach the session store. Off the unlimited path: only a limited principal's requests and the
//! flush once a second touch them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::LabelText;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitedLabels {
    token: LabelText,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    token: LabelText,
    period: &'static str,
}

/// Handles for the limit series.
#[derive(Debug, Clone)]
pub struct LimitMetrics {
    limited: Family<LimitedLabels, Counter>,
    used: Family<QuotaLabels, Gauge>,
    /// `scangate_quota_store_up`: 1 while quota counts reach the store, 0 while they are kept on
    /// this replica alone.
    pub store_up: Gauge,
}

/// The `kind` labels, for forgetting a principal's series.
const KINDS: [&str; 3] = ["rate", "concurrency", "quota"];
/// The `period` labels of `scangate_quota_used`.
const PERIODS: [&str; 3] = ["day", "month", "day_bytes"];

impl LimitMetrics {
    pub(crate) fn register(registry: &mut Registry) -> LimitMetrics {
        let limited = Family::default();
        registry.register(
            "rate_limited",
            "Requests refused with 429, by principal Name and kind: rate, concurrency or quota",
            limited.clone(),
        );
        let used = Family::default();
        registry.register(
            "quota_used",
            "Quota used by principal Name and period (day, month: requests; day_bytes: uploaded bytes), as of the last flush",
            used.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "quota_store_up",
            "1 while quota counts reach the session store; 0 while they are counted on this replica alone",
            store_up.clone(),
        );
        LimitMetrics {
            limited,
            used,
            store_up,
        }
    }

    /// Counts a refusal of `name` by `kind` (a `LimitKind` label).
    pub fn limited(&self, name: &str, kind: &'static str) {
        let labels = LimitedLabels {
            token: LabelText(name.into()),
            kind,
        };
        self.limited.get_or_create(&labels).inc();
    }

    /// Sets what `name` has used today, this month and today in bytes.
    pub fn quota_used(&self, name: &str, used: (u64, u64, u64)) {
        let token = LabelText(name.into());
        let (day, month, bytes) = used;
        for (period, value) in PERIODS.into_iter().zip([day, month, bytes]) {
            let labels = QuotaLabels {
                token: token.clone(),
                period,
            };
            self.used
                .get_or_create(&labels)
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    /// Drops the series of a principal that left the config.
    pub fn forget(&self, name: &LabelText) {
        for kind in KINDS {
            self.limited.remove(&LimitedLabels {
                token: name.clone(),
                kind,
            });
        }
        for period in PERIODS {
            self.used.remove(&QuotaLabels {
                token: name.clone(),
                period,
            });
        }
    }
}
