//! The emulated engine behind both protocol versions: its fixed identity, its shared state, and the
//! three scan operations, each with the configured delay and its statistics.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::bases::Bases;
use super::scan::{self, Reason, Verdict};
use super::stats::Stats;
use super::EmulatorOptions;

/// What `version` reports: the KAV SDK of Scan Engine 2.1 as in the vendor's examples.
pub const SDK_VERSION: &str = "8.8.2.58";

/// What `licenseinfo` reports as the key file (offline licensing).
pub const LICENSE_NAME: &str = "scangate-emulator.key";

/// What `licenseinfo` reports as the expiry; far enough ahead that no demo ever sees it expire.
pub const LICENSE_EXPIRATION: &str = "31.12.2099";

/// State shared by every connection of one emulator.
#[derive(Debug)]
pub struct Engine {
    /// The canonical scan root; `None` refuses every `scanfile`.
    scan_root: Option<PathBuf>,
    /// Simulated scan time.
    scan_delay: Duration,
    /// The request body cap, in bytes.
    pub max_body_bytes: u64,
    /// Accumulated statistics.
    pub stats: Stats,
    /// The databases and their update.
    pub bases: Bases,
}

impl Engine {
    /// Builds the engine. Fails when the scan root cannot be resolved, so a typo in `--scan-root`
    /// stops the emulator at start instead of denying every scan later.
    pub fn new(opts: EmulatorOptions) -> io::Result<Engine> {
        let scan_root = opts
            .scan_root
            .as_deref()
            .map(std::fs::canonicalize)
            .transpose()?;
        Ok(Engine {
            scan_root,
            scan_delay: opts.scan_delay,
            max_body_bytes: opts.max_body_bytes,
            stats: Stats::default(),
            bases: Bases::new(opts.update_duration),
        })
    }

    /// Scans bytes sent in the request.
    pub async fn scan_memory(&self, bytes: &[u8], timeout: Option<Duration>) -> Verdict {
        let verdict = match self.wait(timeout).await {
            Ok(()) => scan::scan_bytes(bytes),
            Err(reason) => Verdict::NonScanned(reason),
        };
        let scanned = if matches!(verdict, Verdict::NonScanned(_)) {
            0
        } else {
            bytes.len()
        };
        self.stats.record_object(verdict, scanned as u64);
        verdict
    }

    /// Scans a file on the emulator's side, if it lies under the scan root.
    pub async fn scan_path(&self, path: &str, timeout: Option<Duration>) -> Verdict {
        let (verdict, scanned) = match self.wait(timeout).await {
            Err(reason) => (Verdict::NonScanned(reason), 0),
            Ok(()) => scan::scan_under(self.scan_root.as_deref(), path).await,
        };
        self.stats.record_object(verdict, scanned);
        verdict
    }

    /// Checks a URL against the deny lists.
    pub async fn check_url(&self, url: &str, timeout: Option<Duration>) -> Verdict {
        let verdict = match self.wait(timeout).await {
            Ok(()) => scan::check_url(url),
            Err(reason) => Verdict::NonScanned(reason),
        };
        self.stats.record_url(verdict);
        verdict
    }

    /// Sleeps for the simulated scan time. A request timeout shorter than that cancels the scan
    /// after the timeout, as the engine does; a timeout of 0 counts as none (the docs do not say).
    async fn wait(&self, timeout: Option<Duration>) -> Result<(), Reason> {
        match timeout {
            Some(t) if !t.is_zero() && t < self.scan_delay => {
                tokio::time::sleep(t).await;
                Err(Reason::Canceled)
            }
            _ => {
                if !self.scan_delay.is_zero() {
                    tokio::time::sleep(self.scan_delay).await;
                }
                Ok(())
            }
        }
    }
}
