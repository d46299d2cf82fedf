//! Quota counts: requests per UTC day and month, uploaded bytes per UTC day.
//!
//! The request path never waits on the store. Each principal's [`QuotaCell`] counts in memory what
//! this replica admitted since the last flush (`pending`) on top of the total the store last
//! reported (`stored`, which includes what other replicas flushed). [`flush`] adds the pending
//! counts to the store (one call per count and principal) and takes the new totals back: every
//! [`CLUSTER_FLUSH_INTERVAL`] for a cluster-scope principal that has counted since the last
//! flush, every [`FLUSH_INTERVAL`] for every principal. So:
//! - a restart loses at most the last interval's counts (the final flush at shutdown sends them);
//! - in cluster scope a replica sees the others' counts at most two short intervals late (theirs,
//!   then its own), so N replicas together may overshoot a quota by at most
//!   N × rate × 2 × [`CLUSTER_FLUSH_INTERVAL`] (rate: the requests per second one replica admits
//!   for the principal, bounded by its `RequestsPerSecond` + `Burst` if it has one);
//! - a store that is down keeps the counts local (logged once, `scangate_quota_store_up` 0) and
//!   they are sent when it is back; requests with valid tokens never fail for it.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use compact_str::CompactString;

use super::sessions::SessionStore;
use crate::config::{LimitScope, Limits};

/// How often every count goes to the store (and the totals come back).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// How often a cluster-scope count that changed goes to the store: the accuracy of cluster scope.
/// One Redis call per count and busy principal and replica this often, never one per request.
pub const CLUSTER_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

const DAY: u64 = 86_400;

/// Every principal's quota cell, weakly: a removed principal's cell goes with its stats, and the
/// next flush drops the entry.
#[derive(Debug, Default)]
pub struct QuotaLedger {
    cells: Mutex<Vec<Weak<QuotaCell>>>,
    /// Whether the last flush reached the store (for the log line on a change).
    store_up: Mutex<Option<bool>>,
    /// One flush at a time (the periodic one, the one at shutdown, a reload's load): two at once
    /// would both send the same pending counts.
    flushing: tokio::sync::Mutex<()>,
}

impl QuotaLedger {
    /// A new cell for `name`, registered for flushing.
    pub fn register(&self, name: &str, scope: LimitScope) -> Arc<QuotaCell> {
        let cell = Arc::new(QuotaCell {
            name: name.into(),
            window: Mutex::new(Window {
                scope,
                ..Window::default()
            }),
        });
        let mut cells = self.cells.lock().expect("quota ledger lock");
        cells.push(Arc::downgrade(&cell));
        cell
    }

    /// The live cells; dead ones are dropped from the ledger.
    pub fn live(&self) -> Vec<Arc<QuotaCell>> {
        let mut cells = self.cells.lock().expect("quota ledger lock");
        cells.retain(|w| w.strong_count() > 0);
        cells.iter().filter_map(Weak::upgrade).collect()
    }
}

/// One count: what the store last reported, and what this replica added since.
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    stored: u64,
    pending: u64,
}

impl Count {
    fn used(self) -> u64 {
        self.stored + self.pending
    }
}

#[derive(Debug, Default)]
struct Window {
    scope: LimitScope,
    /// The UTC day (days since the epoch) the day counts belong to.
    day: u64,
    /// The UTC month (year × 12 + month − 1) the month count belongs to.
    month: u64,
    day_requests: Count,
    day_bytes: Count,
    month_requests: Count,
}

impl Window {
    /// The quota used up at `now` (in windows already rolled to it) and the seconds until it
    /// frees. Of several, the one that frees last answers: a client that came back when an
    /// earlier one reset would only be refused again.
    fn refusal(&self, limits: &Limits, now: u64) -> Option<(&'static str, u64)> {
        let to_day_end = ((self.day + 1) * DAY - now).max(1);
        let to_month_end = month_end(self.month).saturating_sub(now).max(1);
        let used_up = [
            (
                "daily",
                limits.daily_quota.map(|q| self.day_requests.used() >= q),
                to_day_end,
            ),
            (
                "daily-bytes",
                limits.daily_quota_bytes.map(|q| self.day_bytes.used() >= q),
                to_day_end,
            ),
            (
                "monthly",
                limits
                    .monthly_quota
                    .map(|q| self.month_requests.used() >= q),
                to_month_end,
            ),
        ];
        let mut refusal = None;
        for (policy, exhausted, secs) in used_up {
            if exhausted == Some(true) && refusal.is_none_or(|(_, later)| secs > later) {
                refusal = Some((policy, secs));
            }
        }
        refusal
    }

    /// Starts new windows when `now` has left the current ones.
    fn roll(&mut self, now: u64) {
        let day = now / DAY;
        if day != self.day {
            self.day = day;
            self.day_requests = Count::default();
            self.day_bytes = Count::default();
        }
        let month = month_of(day);
        if month != self.month {
            self.month = month;
            self.month_requests = Count::default();
        }
    }
}

/// What is left of each quota, with the seconds until its window ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaUse {
    /// `DailyQuota`: requests left today.
    pub daily: Option<(u64, u64)>,
    /// `MonthlyQuota`: requests left this month.
    pub monthly: Option<(u64, u64)>,
    /// `DailyQuotaBytes`: bytes left today.
    pub daily_bytes: Option<(u64, u64)>,
}

/// One principal's quota counts.
#[derive(Debug)]
pub struct QuotaCell {
    name: CompactString,
    window: Mutex<Window>,
}

impl QuotaCell {
    /// `Err((policy, retry_after_secs))` when a quota is used up at `now`. An early look, so a
    /// request that the quota refuses spends no other limit; [`QuotaCell::take`] decides.
    pub fn peek(&self, limits: &Limits, now: u64) -> Result<(), (&'static str, u64)> {
        let mut w = self.window.lock().expect("quota lock");
        w.scope = limits.scope;
        w.roll(now);
        w.refusal(limits, now).map_or(Ok(()), Err)
    }

    /// Counts one admitted request and says what is left, or refuses it as [`QuotaCell::peek`]
    /// does. The check and the count are one step under the lock: of two requests that both
    /// passed `peek` with one request left, only one is counted.
    pub fn take(&self, limits: &Limits, now: u64) -> Result<QuotaUse, (&'static str, u64)> {
        let mut w = self.window.lock().expect("quota lock");
        w.roll(now);
        if let Some(refusal) = w.refusal(limits, now) {
            return Err(refusal);
        }
        w.day_requests.pending += 1;
        w.month_requests.pending += 1;
        let to_day_end = (w.day + 1) * DAY - now;
        let to_month_end = month_end(w.month).saturating_sub(now);
        let left = |q: u64, c: Count| q.saturating_sub(c.used());
        Ok(QuotaUse {
            daily: (limits.daily_quota).map(|q| (left(q, w.day_requests), to_day_end)),
            monthly: (limits.monthly_quota).map(|q| (left(q, w.month_requests), to_month_end)),
            daily_bytes: (limits.daily_quota_bytes).map(|q| (left(q, w.day_bytes), to_day_end)),
        })
    }

    /// Opens the windows of `now` without counting, so the next flush loads the stored totals
    /// (a restarted replica reads its counts before its first request).
    pub fn prime(&self, limits: &Limits, now: u64) {
        let mut w = self.window.lock().expect("quota lock");
        w.scope = limits.scope;
        w.roll(now);
    }

    /// Counts a finished request's uploaded bytes against today.
    pub fn add_bytes(&self, bytes: u64, now: u64) {
        let mut w = self.window.lock().expect("quota lock");
        w.roll(now);
        w.day_bytes.pending += bytes;
    }

    /// Requests counted today and this month (stored + pending), for metrics and the console.
    pub fn used(&self) -> (u64, u64, u64) {
        let w = self.window.lock().expect("quota lock");
        (
            w.day_requests.used(),
            w.month_requests.used(),
            w.day_bytes.used(),
        )
    }

    /// The principal's Name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The store key of a count. Replica scope adds the replica's name, so replicas sharing a Redis
/// store keep separate counts; cluster scope shares one.
fn key(name: &str, period: &str, scope: LimitScope, replica: &str) -> String {
    match scope {
        LimitScope::Cluster => format!("{period}:{name}"),
        LimitScope::Replica => format!("{period}:{name}@{replica}"),
    }
}

/// Sends the cells' pending counts to `store` and takes the totals back: every cell when `all`,
/// else the cluster-scope cells that counted since the last flush. Returns whether the store took
/// them all. A failed cell keeps its counts for the next flush.
pub async fn flush(
    ledger: &QuotaLedger,
    store: &dyn SessionStore,
    replica: &str,
    all: bool,
) -> bool {
    let _one = ledger.flushing.lock().await;
    let mut ok = true;
    for cell in ledger.live() {
        let (scope, day, month, day_req, day_bytes, month_req) = {
            let w = cell.window.lock().expect("quota lock");
            let busy = w.day_requests.pending + w.day_bytes.pending + w.month_requests.pending > 0;
            if w.day == 0 || !(all || (w.scope == LimitScope::Cluster && busy)) {
                continue;
            }
            (
                w.scope,
                w.day,
                w.month,
                w.day_requests.pending,
                w.day_bytes.pending,
                w.month_requests.pending,
            )
        };
        let day_key = key(&cell.name, &format!("d{day}"), scope, replica);
        let month_key = key(&cell.name, &format!("m{month}"), scope, replica);
        let day_done = store
            .add_usage(&day_key, day_req, day_bytes, (day + 2) * DAY)
            .await;
        let month_done = store
            .add_usage(&month_key, month_req, 0, month_end(month) + DAY)
            .await;
        let mut w = cell.window.lock().expect("quota lock");
        if w.day == day {
            if let Ok((requests, bytes)) = &day_done {
                w.day_requests.pending = w.day_requests.pending.saturating_sub(day_req);
                w.day_bytes.pending = w.day_bytes.pending.saturating_sub(day_bytes);
                w.day_requests.stored = *requests;
                w.day_bytes.stored = *bytes;
            }
        }
        if w.month == month {
            if let Ok((requests, _)) = &month_done {
                w.month_requests.pending = w.month_requests.pending.saturating_sub(month_req);
                w.month_requests.stored = *requests;
            }
        }
        if let Some(e) = day_done.err().or(month_done.err()) {
            tracing::debug!(error = %e, "quota flush failed");
            // The store is down: the other cells keep their counts for the next round rather
            // than each wait out the store's timeout now.
            ok = false;
            break;
        }
    }
    let mut was = ledger.store_up.lock().expect("quota ledger lock");
    if *was != Some(ok) {
        match ok {
            true => tracing::info!("quota counts reach the session store again"),
            false => tracing::warn!(
                "session store unreachable: quotas are counted on this replica alone until it is back"
            ),
        }
        *was = Some(ok);
    }
    ok
}

/// The UTC month of a day since the epoch, as year × 12 + month − 1 (Hinnant's civil_from_days).
fn month_of(day: u64) -> u64 {
    let (y, m) = civil(day);
    y * 12 + m - 1
}

fn civil(day: u64) -> (u64, u64) {
    let z = day + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m)
}

/// Unix seconds at which `month` (year × 12 + month − 1) ends.
fn month_end(month: u64) -> u64 {
    let next = month + 1;
    let (y, m) = (next / 12, next % 12 + 1);
    // Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_their_ends_follow_the_calendar() {
        // 2026-12-02 is day 20_789 (`date -u -d 2026-12-02 +%s` / 86400).
        let day = 20_789;
        assert_eq!(civil(day), (2026, 12));
        assert_eq!(month_end(month_of(day)), 1_798_761_600); // 2027-01-01T00:00:00Z
        assert_eq!(civil(20_878), (2027, 3)); // 2027-03-01
        assert_eq!(civil(20_877), (2027, 2)); // 2027-02-28
        assert_eq!(month_end(month_of(20_877)), 20_878 * DAY); // February ends on 03-01
    }

    #[test]
    fn of_several_used_up_quotas_the_one_that_frees_last_answers() {
        let ledger = QuotaLedger::default();
        let cell = ledger.register("b", LimitScope::Replica);
        let limits = Limits {
            daily_quota: Some(1),
            monthly_quota: Some(2),
            daily_quota_bytes: Some(10),
            ..Limits::default()
        };
        let now = 20_789 * DAY + 3600;
        let to_month_end = month_end(month_of(20_789)) - now;
        assert!(
            to_month_end > DAY - 3600,
            "the test needs the month to end after the day"
        );
        cell.take(&limits, now).unwrap();
        assert_eq!(cell.peek(&limits, now), Err(("daily", DAY - 3600)));
        // Two used up that free together: the first named, requests before bytes.
        cell.add_bytes(10, now);
        assert_eq!(cell.peek(&limits, now), Err(("daily", DAY - 3600)));
        // The next day: the monthly quota (2) still has one left, then it too is used up.
        let tomorrow = now + DAY;
        assert_eq!(cell.peek(&limits, tomorrow), Ok(()));
        cell.take(&limits, tomorrow).unwrap();
        assert_eq!(
            cell.peek(&limits, tomorrow),
            Err(("monthly", to_month_end - DAY))
        );
        // Bytes alone.
        let other = ledger.register("c", LimitScope::Replica);
        let bytes_only = Limits {
            daily_quota_bytes: Some(10),
            ..Limits::default()
        };
        other.add_bytes(10, now);
        assert_eq!(
            other.peek(&bytes_only, now),
            Err(("daily-bytes", DAY - 3600))
        );
    }

    #[test]
    fn a_quota_refuses_once_used_and_resets_with_the_day() {
        let ledger = QuotaLedger::default();
        let cell = ledger.register("a", LimitScope::Replica);
        let limits = Limits {
            daily_quota: Some(2),
            ..Limits::default()
        };
        let now = 20_789 * DAY + 3600;
        assert_eq!(cell.peek(&limits, now), Ok(()));
        assert_eq!(
            cell.take(&limits, now).unwrap().daily,
            Some((1, DAY - 3600))
        );
        assert_eq!(cell.peek(&limits, now), Ok(()));
        assert_eq!(
            cell.take(&limits, now).unwrap().daily,
            Some((0, DAY - 3600))
        );
        assert_eq!(cell.peek(&limits, now), Err(("daily", DAY - 3600)));
        assert_eq!(cell.take(&limits, now), Err(("daily", DAY - 3600)));
        assert_eq!(cell.peek(&limits, now + DAY), Ok(()));
        drop(cell);
        assert!(ledger.live().is_empty());
    }

    /// Two requests that both passed the peek with one left: the take decides, and only one is
    /// counted (before, both were, and the quota was exceeded by one per such race).
    #[test]
    fn of_two_requests_past_the_peek_with_one_left_only_one_is_taken() {
        let ledger = QuotaLedger::default();
        let cell = ledger.register("r", LimitScope::Replica);
        let limits = Limits {
            daily_quota: Some(1),
            monthly_quota: Some(5),
            ..Limits::default()
        };
        let now = 20_789 * DAY + 3600;
        assert_eq!(cell.peek(&limits, now), Ok(()));
        assert_eq!(cell.peek(&limits, now), Ok(()));
        assert_eq!(
            cell.take(&limits, now).unwrap().daily,
            Some((0, DAY - 3600))
        );
        assert_eq!(cell.take(&limits, now), Err(("daily", DAY - 3600)));
        // The refused one is counted nowhere, the month included.
        assert_eq!(cell.used(), (1, 1, 0));
    }

    /// Many threads at once through the whole check: exactly the quota is admitted.
    #[test]
    fn concurrent_requests_never_exceed_the_quota() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let ledger = QuotaLedger::default();
        let cell = ledger.register("t", LimitScope::Replica);
        let limits = Limits {
            daily_quota: Some(100),
            ..Limits::default()
        };
        let now = 20_789 * DAY + 3600;
        let admitted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        if cell.peek(&limits, now).is_ok() && cell.take(&limits, now).is_ok() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 100);
        assert_eq!(cell.used().0, 100);
    }
}
