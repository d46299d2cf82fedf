//! The series of API-connection sessions: exchanges by result, and refresh-token reuses by
//! connection. Off the request path (exchanges are rare), so a family lookup per event is fine.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::LabelText;

/// The `result` values of `scangate_session_exchanges_total`, registered at 0 so a dashboard
/// sees every one before it first happens.
pub const EXCHANGE_RESULTS: [&str; 9] = [
    "ok",
    "invalid_request",
    "too_large",
    "malformed",
    "expired",
    "wrong_client",
    "revoked",
    "reused",
    "unavailable",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExchangeLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    connection: LabelText,
}

/// Handles for the session series.
#[derive(Debug, Clone)]
pub(crate) struct SessionMetrics {
    exchanges: Family<ExchangeLabels, Counter>,
    reuses: Family<ConnectionLabels, Counter>,
    pub(crate) store: StoreHealth,
}

/// `scangate_session_store_up` and `scangate_session_store_down`: a handle the session store's
/// follower thread keeps, so it needs no reference to the gateway.
#[derive(Debug, Clone, Default)]
pub struct StoreHealth {
    up: Gauge,
    down: Counter,
}

impl StoreHealth {
    /// Records whether the store is reachable and in sync; a fall to 0 is counted.
    pub fn set(&self, up: bool) {
        let was = self.up.set(i64::from(up));
        if !up && was != 0 {
            self.down.inc();
        }
    }
}

impl SessionMetrics {
    pub(crate) fn register(registry: &mut Registry) -> SessionMetrics {
        let exchanges = Family::<ExchangeLabels, Counter>::default();
        registry.register(
            "session_exchanges",
            "Refresh-token exchanges at session/confirm, by result",
            exchanges.clone(),
        );
        for result in EXCHANGE_RESULTS {
            let _ = exchanges.get_or_create(&ExchangeLabels { result });
        }
        let reuses = Family::default();
        registry.register(
            "refresh_token_reuse",
            "Refresh tokens presented a second time (each kills its token family), by connection Name",
            reuses.clone(),
        );
        let store = StoreHealth::default();
        // 1 until a store says otherwise: a gateway without connections has no store to lose,
        // and a Redis store sets 0 when it opens, until its first sync.
        store.up.set(1);
        registry.register(
            "session_store_up",
            "1 while the session store is reachable and this replica is in sync with it; 0 while exchanges answer 503",
            store.up.clone(),
        );
        registry.register(
            "session_store_down",
            "Times the session store became unreachable or fell out of sync",
            store.down.clone(),
        );
        SessionMetrics {
            exchanges,
            reuses,
            store,
        }
    }

    pub(crate) fn exchange(&self, result: &'static str) {
        debug_assert!(EXCHANGE_RESULTS.contains(&result), "{result}");
        self.exchanges
            .get_or_create(&ExchangeLabels { result })
            .inc();
    }

    pub(crate) fn reused(&self, connection: &str) {
        let labels = ConnectionLabels {
            connection: LabelText(Arc::from(connection)),
        };
        self.reuses.get_or_create(&labels).inc();
    }
}
