//! The latest detections, in memory, for the console: a bounded ring (the audit log is the durable
//! record), and per credential the detections of each of the last 24 hours.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::ScanResult;

/// Hours in the per-credential counts.
pub const DAY_HOURS: usize = 24;

/// One detection, as the console shows it. Never the scanned content and never a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// Unix seconds.
    pub at: u64,
    /// The credential's Name (empty when UseAccessToken is 0).
    pub credential: Arc<str>,
    /// `token` or `connection` (`none` when UseAccessToken is 0).
    pub kind: &'static str,
    /// The credential's tenants.
    pub tenants: Vec<String>,
    /// The client's address; `None` on a unix socket.
    pub client: Option<SocketAddr>,
    /// The engine that answered.
    pub engine: Option<Arc<str>>,
    /// `scanmemory`, `scanfile` or `checkurl`.
    pub call: &'static str,
    /// `v3.0`, `v3.1` or `v1`.
    pub version: &'static str,
    /// What was scanned (see `audit::object`); `None` when unknown or redacted.
    pub object: Option<String>,
    /// DETECT, DISINFECTED, DELETED (or NON_SCANNED, when those are audited too).
    pub result: ScanResult,
    /// The engine's detection name.
    pub detection: Option<String>,
    /// Why a NON_SCANNED object was not scanned.
    pub reason: Option<String>,
}

/// Detections per hour for one credential: `hours[h % 24]` counts hour `h` (unix hours) when
/// `stamps[h % 24] == h`.
#[derive(Debug, Default, Clone)]
struct Day {
    hours: [u64; DAY_HOURS],
    stamps: [u64; DAY_HOURS],
}

impl Day {
    fn add(&mut self, hour: u64) {
        let slot = (hour % DAY_HOURS as u64) as usize;
        if self.stamps[slot] != hour {
            self.stamps[slot] = hour;
            self.hours[slot] = 0;
        }
        self.hours[slot] += 1;
    }

    /// Detections in the 24 hours up to and including `hour`.
    fn total(&self, hour: u64) -> u64 {
        (self.hours.iter().zip(&self.stamps))
            .filter(|(_, &stamp)| stamp + (DAY_HOURS as u64) > hour && stamp <= hour)
            .map(|(n, _)| n)
            .sum()
    }
}

/// The ring and the counts. A mutex: detections are rare next to scans, and only they take it.
#[derive(Debug, Default)]
pub struct Recent {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    ring: VecDeque<Detection>,
    days: HashMap<Arc<str>, Day>,
}

impl Recent {
    /// Adds `d`, keeping the latest `capacity` (0: keep none, count only).
    pub fn push(&self, d: Detection, capacity: usize) {
        let hour = d.at / 3600;
        let mut inner = self.inner.lock().expect("recent lock");
        // Only real detections are counted per credential; NON_SCANNED may be listed.
        if d.result.is_detection() {
            match inner.days.get_mut(&d.credential) {
                Some(day) => day.add(hour),
                None => {
                    // Names whose last detection is over a day old go, so the map stays as small
                    // as the set of credentials that detected something today.
                    inner.days.retain(|_, day| day.total(hour) > 0);
                    let mut day = Day::default();
                    day.add(hour);
                    inner.days.insert(Arc::clone(&d.credential), day);
                }
            }
        }
        while inner.ring.len() >= capacity.max(1) {
            inner.ring.pop_front();
        }
        if capacity > 0 {
            inner.ring.push_back(d);
        }
    }

    /// The latest detections, newest first, that `keep` accepts; at most `limit`.
    pub fn latest(&self, limit: usize, keep: impl Fn(&Detection) -> bool) -> Vec<Detection> {
        let inner = self.inner.lock().expect("recent lock");
        inner
            .ring
            .iter()
            .rev()
            .filter(|d| keep(d))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Detections per credential over the 24 hours up to `now` (unix seconds), most first.
    pub fn per_credential(&self, now: u64) -> Vec<(Arc<str>, u64)> {
        let hour = now / 3600;
        let inner = self.inner.lock().expect("recent lock");
        let mut counts: Vec<_> = (inner.days.iter())
            .map(|(name, day)| (Arc::clone(name), day.total(hour)))
            .filter(|(_, n)| *n > 0)
            .collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(name: &str, at: u64, result: ScanResult) -> Detection {
        Detection {
            at,
            credential: Arc::from(name),
            kind: "token",
            tenants: vec![],
            client: None,
            engine: None,
            call: "scanmemory",
            version: "v3.0",
            object: None,
            result,
            detection: Some("EICAR-Test-File".into()),
            reason: None,
        }
    }

    #[test]
    fn the_ring_keeps_the_latest_newest_first() {
        let r = Recent::default();
        for i in 0..5 {
            r.push(det(&format!("t{i}"), 1000 + i, ScanResult::Detect), 3);
        }
        let names: Vec<_> = (r.latest(10, |_| true).into_iter())
            .map(|d| d.credential.to_string())
            .collect();
        assert_eq!(names, ["t4", "t3", "t2"]);
        assert_eq!(r.latest(1, |d| &*d.credential == "t3").len(), 1);
        assert_eq!(r.latest(10, |d| &*d.credential == "t0").len(), 0);
        // A smaller capacity after a reload trims at the next push.
        r.push(det("t5", 1005, ScanResult::Detect), 1);
        assert_eq!(r.latest(10, |_| true).len(), 1);
        r.push(det("t6", 1006, ScanResult::Detect), 0);
        assert!(r.latest(10, |_| true).is_empty());
    }

    #[test]
    fn counts_cover_the_last_day_per_credential() {
        let r = Recent::default();
        let day = 24 * 3600;
        let t0 = 100 * day;
        r.push(det("a", t0, ScanResult::Detect), 10);
        r.push(det("a", t0 + 3600, ScanResult::Detect), 10);
        r.push(det("b", t0 + 7200, ScanResult::Detect), 10);
        r.push(det("b", t0 + 7200, ScanResult::NonScanned), 10);
        assert_eq!(
            r.per_credential(t0 + 7200),
            vec![(Arc::from("a"), 2), (Arc::from("b"), 1)]
        );
        // 23 h after the first hour, it still counts; 24 h after, it is gone.
        assert_eq!(r.per_credential(t0 + 23 * 3600)[0], (Arc::from("a"), 2));
        assert_eq!(
            r.per_credential(t0 + day),
            vec![(Arc::from("a"), 1), (Arc::from("b"), 1)]
        );
        assert!(r.per_credential(t0 + 2 * day).is_empty());
        // An old name is dropped when a new one arrives.
        r.push(det("c", t0 + 3 * day, ScanResult::Detect), 10);
        assert_eq!(r.inner.lock().unwrap().days.len(), 1);
    }
}
