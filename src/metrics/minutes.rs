//! Requests per minute over the last hour, kept in memory for the console's charts: one ring of
//! 60 one-minute slots for the gateway and one per token. Prometheus has the long history; this
//! is what an operator looks at without one.
//!
//! A slot is claimed for a new minute by the first request in it, which zeroes its counts; a
//! request racing that claim at a minute boundary may land in the old minute or be zeroed with
//! it. The charts are a view, not an account, so the ring stays lock-free.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many minutes the ring holds.
pub const MINUTES: usize = 60;

/// What a chart stacks, in this order: other statuses, 401, 403, 429.
pub const SERIES: usize = 4;

/// The series a status counts in.
fn series(status: u16) -> usize {
    match status {
        401 => 1,
        403 => 2,
        429 => 3,
        _ => 0,
    }
}

#[derive(Debug, Default)]
struct Slot {
    /// Minutes since the epoch that the counts belong to.
    minute: AtomicU64,
    counts: [AtomicU64; SERIES],
}

/// A ring of one-minute counts; see the module doc.
#[derive(Debug)]
pub struct MinuteSeries {
    slots: [Slot; MINUTES],
}

impl Default for MinuteSeries {
    fn default() -> Self {
        MinuteSeries {
            slots: std::array::from_fn(|_| Slot::default()),
        }
    }
}

impl MinuteSeries {
    /// Counts one finished request with `status` at `now_secs` (unix seconds).
    pub fn record(&self, status: u16, now_secs: u64) {
        let minute = now_secs / 60;
        let slot = &self.slots[(minute % MINUTES as u64) as usize];
        let seen = slot.minute.load(Ordering::Relaxed);
        if seen != minute
            && slot
                .minute
                .compare_exchange(seen, minute, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            for c in &slot.counts {
                c.store(0, Ordering::Relaxed);
            }
        }
        slot.counts[series(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// The last [`MINUTES`] minutes up to and including the one of `now_secs`, oldest first; a
    /// minute nobody was counted in is all zeros.
    pub fn last_hour(&self, now_secs: u64) -> Vec<[u64; SERIES]> {
        let now = now_secs / 60;
        (0..MINUTES as u64)
            .rev()
            .map(|ago| {
                let Some(minute) = now.checked_sub(ago) else {
                    return [0; SERIES];
                };
                let slot = &self.slots[(minute % MINUTES as u64) as usize];
                if slot.minute.load(Ordering::Relaxed) != minute {
                    return [0; SERIES];
                }
                std::array::from_fn(|i| slot.counts[i].load(Ordering::Relaxed))
            })
            .collect()
    }

    /// Totals over the last hour, per series.
    pub fn hour_totals(&self, now_secs: u64) -> [u64; SERIES] {
        let mut total = [0; SERIES];
        for minute in self.last_hour(now_secs) {
            for (t, c) in total.iter_mut().zip(minute) {
                *t += c;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_minute_and_age_out_after_an_hour() {
        let m = MinuteSeries::default();
        let t0 = 30_000_000 * 60;
        m.record(200, t0);
        m.record(401, t0 + 5);
        m.record(403, t0 + 61);
        m.record(429, t0 + 61);
        let hour = m.last_hour(t0 + 61);
        assert_eq!(hour.len(), MINUTES);
        assert_eq!(hour[MINUTES - 2], [1, 1, 0, 0]);
        assert_eq!(hour[MINUTES - 1], [0, 0, 1, 1]);
        assert_eq!(m.hour_totals(t0 + 61), [1, 1, 1, 1]);
        // 60 minutes later the first minute's slot is reused and its counts start over.
        m.record(500, t0 + 3600);
        assert_eq!(m.last_hour(t0 + 3600)[MINUTES - 1], [1, 0, 0, 0]);
        assert_eq!(m.hour_totals(t0 + 3600), [1, 0, 1, 1]);
    }
}
