//! The engine's accumulated statistics (`getstatistics` / `clearstatistics`). Plain atomics: they are
//! bumped on every scan from many connections, and a reader only needs each counter to be right, not
//! a snapshot that is consistent across counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::scan::Verdict;

/// Counters for real scan requests only: a request rejected as bad input was never scanned and is not
/// counted, like a request the engine refuses before queueing it.
#[derive(Debug, Default)]
pub struct Stats {
    total_requests: AtomicU64,
    infected_requests: AtomicU64,
    error_requests: AtomicU64,
    processed_data: AtomicU64,
    infected_data: AtomicU64,
    processed_urls: AtomicU64,
    infected_urls: AtomicU64,
}

/// The `statistics` object, in the engine's format: the one the gateway's per-credential
/// statistics answer with too. `protected_requests` (disinfected or deleted) and `engine_errors`
/// (SERVER_ERROR) stay 0 here: the emulator never produces those verdicts, but clients expect the
/// fields.
pub use crate::audit::StatisticsSnapshot as Snapshot;

impl Stats {
    /// Counts one memory or file scan that read `bytes` bytes.
    pub fn record_object(&self, verdict: Verdict, bytes: u64) {
        self.count(verdict);
        self.processed_data.fetch_add(bytes, Relaxed);
        if let Verdict::Detect(_) = verdict {
            self.infected_data.fetch_add(bytes, Relaxed);
        }
    }

    /// Counts one URL check. A canceled check was never processed.
    pub fn record_url(&self, verdict: Verdict) {
        self.count(verdict);
        if !matches!(verdict, Verdict::NonScanned(_)) {
            self.processed_urls.fetch_add(1, Relaxed);
        }
        if let Verdict::Detect(_) = verdict {
            self.infected_urls.fetch_add(1, Relaxed);
        }
    }

    fn count(&self, verdict: Verdict) {
        self.total_requests.fetch_add(1, Relaxed);
        match verdict {
            Verdict::Clean => {}
            Verdict::Detect(_) => {
                self.infected_requests.fetch_add(1, Relaxed);
            }
            Verdict::NonScanned(_) => {
                self.error_requests.fetch_add(1, Relaxed);
            }
        }
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            total_requests: self.total_requests.load(Relaxed),
            infected_requests: self.infected_requests.load(Relaxed),
            protected_requests: 0,
            error_requests: self.error_requests.load(Relaxed),
            engine_errors: 0,
            processed_data: self.processed_data.load(Relaxed),
            infected_data: self.infected_data.load(Relaxed),
            processed_urls: self.processed_urls.load(Relaxed),
            infected_urls: self.infected_urls.load(Relaxed),
        }
    }

    /// Zeroes every counter. Scans that finish concurrently may land before or after, as with the
    /// engine.
    pub fn clear(&self) {
        for counter in [
            &self.total_requests,
            &self.infected_requests,
            &self.error_requests,
            &self.processed_data,
            &self.infected_data,
            &self.processed_urls,
            &self.infected_urls,
        ] {
            counter.store(0, Relaxed);
        }
    }
}
