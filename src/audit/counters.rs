//! The engine's `getstatistics` counters (reference §4.5), kept per credential from the verdicts
//! scangate read, so that a tenant can be shown its own numbers in the engine's format.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use super::{ScanOp, ScanResult};

/// One credential's counters. Plain atomics, bumped once per scan.
#[derive(Debug, Default)]
pub struct ScanCounters {
    total_requests: AtomicU64,
    infected_requests: AtomicU64,
    protected_requests: AtomicU64,
    error_requests: AtomicU64,
    engine_errors: AtomicU64,
    processed_data: AtomicU64,
    infected_data: AtomicU64,
    processed_urls: AtomicU64,
    infected_urls: AtomicU64,
}

/// The `statistics` object, with the engine's field names in the engine's order.
#[derive(Debug, Serialize, PartialEq, Eq, Default, Clone, Copy)]
pub struct StatisticsSnapshot {
    /// Scans with a verdict.
    pub total_requests: u64,
    /// DETECT, DISINFECTED or DELETED.
    pub infected_requests: u64,
    /// DISINFECTED or DELETED.
    pub protected_requests: u64,
    /// NON_SCANNED.
    pub error_requests: u64,
    /// SERVER_ERROR.
    pub engine_errors: u64,
    /// Bytes of objects scanned, as far as scangate sees them (see [`ScanCounters::record`]).
    pub processed_data: u64,
    /// Bytes of objects with a detection.
    pub infected_data: u64,
    /// URLs checked.
    pub processed_urls: u64,
    /// URLs with a detection.
    pub infected_urls: u64,
}

impl ScanCounters {
    /// Counts one verdict of `op`. `object_bytes` is the scanned object's size where scangate
    /// knows it (a `scanmemory` body); a `scanfile` object lies on the engine's host and adds 0.
    /// Answers that are not verdicts (`error`, `unparsed`) are not scans the engine counted.
    pub fn record(&self, op: ScanOp, result: ScanResult, object_bytes: u64) {
        use ScanResult::*;
        if matches!(result, Error | Unparsed) {
            return;
        }
        self.total_requests.fetch_add(1, Relaxed);
        let found = result.is_detection();
        if found {
            self.infected_requests.fetch_add(1, Relaxed);
        }
        if matches!(result, Disinfected | Deleted) {
            self.protected_requests.fetch_add(1, Relaxed);
        }
        if result == NonScanned {
            self.error_requests.fetch_add(1, Relaxed);
        }
        if result == ServerError {
            self.engine_errors.fetch_add(1, Relaxed);
        }
        match op {
            ScanOp::CheckUrl => {
                if result != NonScanned {
                    self.processed_urls.fetch_add(1, Relaxed);
                }
                if found {
                    self.infected_urls.fetch_add(1, Relaxed);
                }
            }
            ScanOp::ScanMemory | ScanOp::ScanFile => {
                self.processed_data.fetch_add(object_bytes, Relaxed);
                if found {
                    self.infected_data.fetch_add(object_bytes, Relaxed);
                }
            }
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatisticsSnapshot {
        StatisticsSnapshot {
            total_requests: self.total_requests.load(Relaxed),
            infected_requests: self.infected_requests.load(Relaxed),
            protected_requests: self.protected_requests.load(Relaxed),
            error_requests: self.error_requests.load(Relaxed),
            engine_errors: self.engine_errors.load(Relaxed),
            processed_data: self.processed_data.load(Relaxed),
            infected_data: self.infected_data.load(Relaxed),
            processed_urls: self.processed_urls.load(Relaxed),
            infected_urls: self.infected_urls.load(Relaxed),
        }
    }
}

impl StatisticsSnapshot {
    /// The engine's answer to `GET /api/v3.0/getstatistics`: `{"statistics":{…}}`.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Answer<'a> {
            statistics: &'a StatisticsSnapshot,
        }
        serde_json::to_string(&Answer { statistics: self }).expect("plain data serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_the_engine_and_answers_in_its_format() {
        let c = ScanCounters::default();
        c.record(ScanOp::ScanMemory, ScanResult::Clean, 10);
        c.record(ScanOp::ScanMemory, ScanResult::Detect, 68);
        c.record(ScanOp::ScanFile, ScanResult::Deleted, 0);
        c.record(ScanOp::ScanMemory, ScanResult::NonScanned, 5);
        c.record(ScanOp::ScanMemory, ScanResult::ServerError, 0);
        c.record(ScanOp::CheckUrl, ScanResult::Detect, 0);
        c.record(ScanOp::CheckUrl, ScanResult::NonScanned, 0);
        c.record(ScanOp::ScanMemory, ScanResult::Unparsed, 100);
        c.record(ScanOp::ScanMemory, ScanResult::Error, 100);
        assert_eq!(
            c.snapshot().to_json(),
            concat!(
                r#"{"statistics":{"total_requests":7,"infected_requests":3,"protected_requests":1,"#,
                r#""error_requests":2,"engine_errors":1,"processed_data":83,"infected_data":68,"#,
                r#""processed_urls":1,"infected_urls":1}}"#
            )
        );
    }
}
