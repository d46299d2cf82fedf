//! A coarse clock for the engine stamps a request makes.
//!
//! Each request reads the engines' millisecond clock three times (the queue's pick, the session's
//! end, the outcome's record: an engine's last success and its ejection). std's `Instant` reads
//! the TSC through the vDSO, 23 ns a read on the bench VM; the kernel's coarse monotonic clock
//! answers from the last timer tick in 3 ns (`benches/load/clocks.c`), and lags the fine one by at
//! most a tick (1 to 10 ms), finer than ejection periods and health intervals of seconds need.
//! Everything else keeps the fine clocks: durations that are reported (the access log's, the
//! histograms'), tokio's timers, and the wall-clock seconds of tokens and quotas.

use std::sync::OnceLock;

/// Milliseconds since the process's first read of this clock, to within a tick.
pub fn monotonic_ms() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    let now = now_ms();
    now.saturating_sub(*START.get_or_init(|| now))
}

/// The monotonic clock in milliseconds: the coarse one, or, where a kernel refuses it, the fine
/// one, which counts from the same start (so a mix of the two stays in order to within a tick).
#[cfg(target_os = "linux")]
fn now_ms() -> u64 {
    read(libc::CLOCK_MONOTONIC_COARSE)
        .or_else(|| read(libc::CLOCK_MONOTONIC))
        .unwrap_or(0)
}

/// Elsewhere, std's monotonic clock, from the first read.
#[cfg(not(target_os = "linux"))]
fn now_ms() -> u64 {
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    let ms = START.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// `clock_gettime(clock)` in milliseconds; `None` when the kernel refuses the clock.
#[cfg(target_os = "linux")]
fn read(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime writes nothing else.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    (rc == 0).then(|| secs * 1000 + nanos / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_coarse_clock_keeps_to_the_fine_one_within_a_tick() {
        // Each coarse read is bracketed by fine ones, so a preemption between the two clocks'
        // reads widens the bracket instead of failing the test.
        let t0 = Instant::now();
        let a = monotonic_ms();
        let t1 = Instant::now();
        // Over a second, so the seconds and the nanoseconds both count.
        std::thread::sleep(Duration::from_millis(1050));
        let t2 = Instant::now();
        let b = monotonic_ms();
        let t3 = Instant::now();
        let (shortest, longest) = ((t2 - t1).as_millis(), (t3 - t0).as_millis());
        // Each read lags the fine clock by at most a tick, 10 ms with HZ=100.
        let elapsed = u128::from(b - a);
        assert!(
            elapsed + 10 >= shortest,
            "{elapsed} ms, at least {shortest} ms passed"
        );
        assert!(
            elapsed <= longest + 10,
            "{elapsed} ms, at most {longest} ms passed"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_fallback_reads_the_same_clock_and_a_refused_clock_is_none() {
        let before = read(libc::CLOCK_MONOTONIC).expect("the fine clock");
        let coarse = read(libc::CLOCK_MONOTONIC_COARSE).expect("the coarse clock");
        let after = read(libc::CLOCK_MONOTONIC).expect("the fine clock");
        // One clock, one start: the coarse read is never ahead of the fine one read after it,
        // and lags the one read before it by at most a tick (10 ms with HZ=100).
        assert!(coarse <= after, "{coarse} vs {after}");
        assert!(coarse + 10 >= before, "{coarse} vs {before}");
        assert!(
            before > 1000,
            "milliseconds since boot, not seconds: {before}"
        );
        assert_eq!(read(-1), None);
    }
}
