//! Per-token series: a [`TokenMeter`] hangs off each token's stats, so the request path reaches
//! its counters through the record it already looked up, without hashing a label set.

use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::{LabelText, RequestLabels, ScanLabels, TokenLabels, STATUS_CLASSES};
use crate::audit::ScanResult;

/// The families a [`TokenMeter`] creates its series in (cheap clones of the registered ones).
#[derive(Clone, Debug)]
pub(crate) struct TokenFamilies {
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) request_bytes: Family<TokenLabels, Counter>,
    pub(crate) response_bytes: Family<TokenLabels, Counter>,
    pub(crate) scan_results: Family<ScanLabels, Counter>,
    pub(crate) detections: Family<TokenLabels, Counter>,
}

/// One token's series. Created once per token name and kept across reloads and rotations with the
/// token's stats; removed from the registry when the name leaves the config.
#[derive(Debug)]
pub struct TokenMeter {
    pub(crate) token: LabelText,
    request_bytes: Counter,
    response_bytes: Counter,
    /// One row per upstream this token has been sent to (plus "none"); grown on first use.
    rows: ArcSwap<Vec<Arc<UpstreamRow>>>,
    grow: Mutex<()>,
    families: TokenFamilies,
    /// `scangate_scan_results_total`, one counter per result, created when first counted.
    scan_results: [OnceLock<Counter>; ScanResult::ALL.len()],
    /// `scangate_detections_total`, created with the first detection.
    detections: OnceLock<Counter>,
}

/// `scangate_requests_total` for one (token, upstream): one counter per status class, each created
/// the first time it is needed so that only classes that happened are exported.
#[derive(Debug)]
struct UpstreamRow {
    upstream: Option<Arc<str>>,
    label: LabelText,
    by_class: [OnceLock<Counter>; 5],
}

impl TokenMeter {
    pub(crate) fn new(name: &str, families: &TokenFamilies) -> TokenMeter {
        let token = LabelText(Arc::from(name));
        let labels = TokenLabels {
            token: token.clone(),
        };
        TokenMeter {
            request_bytes: families.request_bytes.get_or_create(&labels).clone(),
            response_bytes: families.response_bytes.get_or_create(&labels).clone(),
            token,
            rows: ArcSwap::from_pointee(Vec::new()),
            grow: Mutex::new(()),
            families: families.clone(),
            scan_results: Default::default(),
            detections: OnceLock::new(),
        }
    }

    /// Counts one scan answer by its result, and a detection when something was found.
    pub fn scan_result(&self, result: ScanResult) {
        self.scan_results[result.index()]
            .get_or_init(|| {
                let labels = ScanLabels {
                    token: self.token.clone(),
                    result: result.as_str(),
                };
                self.families.scan_results.get_or_create(&labels).clone()
            })
            .inc();
        if result.is_detection() {
            self.detections
                .get_or_init(|| {
                    let labels = TokenLabels {
                        token: self.token.clone(),
                    };
                    self.families.detections.get_or_create(&labels).clone()
                })
                .inc();
        }
    }

    /// Removes this token's scan series (when its name leaves the config).
    pub(crate) fn forget_scans(&self) {
        for (i, counter) in self.scan_results.iter().enumerate() {
            if counter.get().is_some() {
                self.families.scan_results.remove(&ScanLabels {
                    token: self.token.clone(),
                    result: ScanResult::ALL[i].as_str(),
                });
            }
        }
        let labels = TokenLabels {
            token: self.token.clone(),
        };
        self.families.detections.remove(&labels);
    }

    /// Counts one finished request: its status on `upstream` (`None` when none was chosen) and its
    /// body bytes in each direction.
    pub fn record(&self, upstream: Option<&Arc<str>>, status: u16, bytes_in: u64, bytes_out: u64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let rows = self.rows.load();
        match rows
            .iter()
            .find(|r| same_upstream(r.upstream.as_ref(), upstream))
        {
            Some(row) => self.count(row, class),
            None => self.count(&self.add_row(upstream), class),
        }
        self.request_bytes.inc_by(bytes_in);
        self.response_bytes.inc_by(bytes_out);
    }

    fn count(&self, row: &UpstreamRow, class: usize) {
        row.by_class[class]
            .get_or_init(|| {
                let labels = RequestLabels {
                    token: self.token.clone(),
                    status_class: STATUS_CLASSES[class],
                    upstream: row.label.clone(),
                };
                self.families.requests.get_or_create(&labels).clone()
            })
            .inc();
    }

    /// The slow path, once per (token, upstream): copy the row list with one more row.
    fn add_row(&self, upstream: Option<&Arc<str>>) -> Arc<UpstreamRow> {
        let _grow = self.grow.lock().expect("meter lock");
        let rows = self.rows.load_full();
        if let Some(row) = rows
            .iter()
            .find(|r| same_upstream(r.upstream.as_ref(), upstream))
        {
            return Arc::clone(row);
        }
        let row = Arc::new(UpstreamRow {
            upstream: upstream.cloned(),
            label: LabelText(upstream.cloned().unwrap_or_else(|| Arc::from(""))),
            by_class: Default::default(),
        });
        let mut next = Vec::with_capacity(rows.len() + 1);
        next.extend(rows.iter().cloned());
        next.push(Arc::clone(&row));
        self.rows.store(Arc::new(next));
        row
    }

    /// Removes the series of rows whose upstream `keep` rejects (all rows when it rejects all).
    pub(crate) fn forget_rows(&self, keep: impl Fn(Option<&Arc<str>>) -> bool) {
        let _grow = self.grow.lock().expect("meter lock");
        let rows = self.rows.load_full();
        let (kept, gone): (Vec<_>, Vec<_>) = rows
            .iter()
            .cloned()
            .partition(|r| keep(r.upstream.as_ref()));
        if gone.is_empty() {
            return;
        }
        for row in gone {
            for (class, counter) in row.by_class.iter().enumerate() {
                if counter.get().is_some() {
                    self.families.requests.remove(&RequestLabels {
                        token: self.token.clone(),
                        status_class: STATUS_CLASSES[class],
                        upstream: row.label.clone(),
                    });
                }
            }
        }
        self.rows.store(Arc::new(kept));
    }
}

pub(crate) fn same_upstream(a: Option<&Arc<str>>, b: Option<&Arc<str>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => false,
    }
}
