//! A coarse clock for the engine stamps a request makes.
//!
//! Each request reads the engines' millisecond clock three times (the queue's pick, the session's
//! end, the outcome's record: an engine's last success and its ejection). std's `Instant` reads
//! the TSC through the vDSO, 23 ns a read on the bench VM; the kernel's coarse monotonic clock
//! answers from the last timer tick in 3 ns (`benches/RESULTS.md`), and lags the fine one by at
//! most a tick (1 to 10 ms), finer than ejection periods and health intervals of seconds need.
//! Everything else keeps the fine clocks: durations that are reported (the access log's, the
//! histograms'), tokio's timers, and the wall-clock seconds of tokens and quotas.

/// Milliseconds on the monotonic clock (since boot on Linux), to within a tick.
pub fn monotonic_ms() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let ts = coarse(libc::CLOCK_MONOTONIC_COARSE);
        ts.0 * 1000 + ts.1 / 1_000_000
    }
    #[cfg(not(target_os = "linux"))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX)
    }
}

/// `clock_gettime(clock)` as (seconds, nanoseconds); (0, 0) for a time before the clock's epoch.
#[cfg(target_os = "linux")]
fn coarse(clock: libc::clockid_t) -> (u64, u64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: `ts` is a valid, writable timespec; the coarse clocks exist since Linux 2.6.32, and
    // on failure `ts` stays zero.
    unsafe {
        libc::clock_gettime(clock, &mut ts);
    }
    match (u64::try_from(ts.tv_sec), u64::try_from(ts.tv_nsec)) {
        (Ok(s), Ok(ns)) => (s, ns),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_coarse_clock_keeps_to_the_fine_one_within_a_tick() {
        let (a, started) = (monotonic_ms(), Instant::now());
        // Over a second, so the seconds and the nanoseconds both count.
        std::thread::sleep(Duration::from_millis(1050));
        let (b, slept) = (monotonic_ms(), started.elapsed().as_millis());
        // Each read lags the fine clock by at most a tick, 10 ms with HZ=100.
        let elapsed = u128::from(b - a);
        assert!(elapsed + 10 >= slept, "{elapsed} ms for {slept} ms");
        assert!(elapsed <= slept + 10, "{elapsed} ms for {slept} ms");
        assert!(a > 0, "the monotonic clock reads 0");
    }
}
