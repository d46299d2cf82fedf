//! The emulated anti-virus databases: their release date (`basesdate`) and a simulated update
//! (`update/start`, `update/status`). An update only takes time and then moves the release date; it
//! runs no task of its own, and its state advances whenever someone looks at it.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The databases' state, shared by every connection.
#[derive(Debug)]
pub struct Bases {
    /// How long a simulated update runs.
    update_duration: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// What `basesdate` reports: the emulator's start, then the end of each update.
    released: SystemTime,
    /// What `last_update_time` reports; the emulator's start until the first update ends.
    last_update: SystemTime,
    /// The start of the running update, on both clocks: the monotonic one measures progress, the
    /// wall clock dates the result.
    running: Option<(Instant, SystemTime)>,
}

/// What `update/status` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateStatus {
    /// An update runs; `progress` is a percentage below 100.
    InProgress {
        /// Elapsed share of the update's duration.
        progress: u8,
    },
    /// No update runs; the last one succeeded at `last_update`.
    Idle {
        /// When the last update ended.
        last_update: SystemTime,
    },
}

impl Bases {
    /// Databases released now, with updates that take `update_duration`.
    pub fn new(update_duration: Duration) -> Bases {
        let now = SystemTime::now();
        Bases {
            update_duration,
            state: Mutex::new(State {
                released: now,
                last_update: now,
                running: None,
            }),
        }
    }

    /// Starts an update. Returns `false` when one is already running.
    pub fn start(&self) -> bool {
        let mut state = self.settled();
        if state.running.is_some() {
            return false;
        }
        state.running = Some((Instant::now(), SystemTime::now()));
        drop(state);
        // A zero duration finishes at once; settle now so the next status already says so.
        drop(self.settled());
        true
    }

    /// The update's state.
    pub fn status(&self) -> UpdateStatus {
        let state = self.settled();
        match state.running {
            Some((started, _)) => {
                let elapsed = started.elapsed().as_secs_f64();
                let share = elapsed / self.update_duration.as_secs_f64();
                UpdateStatus::InProgress {
                    progress: (share * 100.0).clamp(0.0, 99.0) as u8,
                }
            }
            None => UpdateStatus::Idle {
                last_update: state.last_update,
            },
        }
    }

    /// The databases' release date.
    pub fn released(&self) -> SystemTime {
        self.settled().released
    }

    /// Locks the state after finishing an update whose time is up.
    fn settled(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-written; keep serving.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((started, started_wall)) = state.running {
            if started.elapsed() >= self.update_duration {
                let ended = started_wall + self.update_duration;
                state.released = ended;
                state.last_update = ended;
                state.running = None;
            }
        }
        state
    }
}

/// `basesdate`'s format: `DD.MM.YYYY hh:mm GMT`.
pub fn format_bases_date(t: SystemTime) -> String {
    let c = Civil::from(t);
    format!(
        "{:02}.{:02}.{:04} {:02}:{:02} GMT",
        c.day, c.month, c.year, c.hour, c.minute
    )
}

/// `last_update_time`'s format: `hh:mm:ss DD.MM.YYYY`.
pub fn format_update_time(t: SystemTime) -> String {
    let c = Civil::from(t);
    format!(
        "{:02}:{:02}:{:02} {:02}.{:02}.{:04}",
        c.hour, c.minute, c.second, c.day, c.month, c.year
    )
}

/// A UTC calendar time. Computed here rather than pulling in a date crate for two formats.
struct Civil {
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
}

impl From<SystemTime> for Civil {
    fn from(t: SystemTime) -> Civil {
        let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Howard Hinnant's civil_from_days, for days on or after 1970-01-01.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats_dates_in_utc() {
        assert_eq!(format_bases_date(at(0)), "01.01.1970 00:00 GMT");
        assert_eq!(format_bases_date(at(1_548_873_480)), "30.01.2019 18:38 GMT");
        assert_eq!(format_update_time(at(951_825_599)), "11:59:59 29.02.2000");
        assert_eq!(format_update_time(at(4_102_444_799)), "23:59:59 31.12.2099");
    }

    #[test]
    fn zero_length_update_finishes_at_once() {
        let bases = Bases::new(Duration::ZERO);
        let before = bases.released();
        assert!(bases.start());
        assert!(
            matches!(bases.status(), UpdateStatus::Idle { last_update } if last_update >= before)
        );
        assert!(bases.start(), "a finished update does not block the next");
    }

    #[test]
    fn long_update_reports_progress_and_refuses_a_second_start() {
        let bases = Bases::new(Duration::from_secs(3600));
        assert!(bases.start());
        assert!(!bases.start());
        assert!(matches!(bases.status(), UpdateStatus::InProgress { progress } if progress < 100));
    }
}
