//! How long to keep a function's idle instance, learned from the
//! function's own idle times: the hybrid histogram policy of "Serverless
//! in the Wild" (Shahrad et al., USENIX ATC '20), adapted.
//!
//! Every function keeps a histogram of its idle times (the gap between the
//! end of one call and the start of the next) in one-minute bins over four
//! hours. When the histogram is representative (enough samples, and its
//! bin counts concentrated: coefficient of variation above a threshold),
//! its head and tail decide:
//!
//! - **pre-warm window**, the 5th percentile minus a 10% margin: how long
//!   after a call no instance is kept at all. Zero when calls come back
//!   within the first minute.
//! - **keep-alive window**, the 99th percentile plus a 10% margin, less the
//!   pre-warm window: how long an instance is then kept (started afresh at
//!   the end of the pre-warm window when that is not zero).
//!
//! The keep-alive window never exceeds the fixed keep-alive the server was
//! given: that setting bounds how long one idle instance holds memory in
//! one stretch, whatever the history says.
//!
//! A function called every ten minutes is thus unloaded after each call
//! and loaded again just before the next one, instead of being kept for
//! the fixed keep-alive and then missing every call. A function whose idle
//! times mostly pass the histogram's range (called a few times a day)
//! keeps its instance briefly. Otherwise, the fixed keep-alive applies.

use std::time::{Duration, Instant};

/// Width of one histogram bin (the default; tests use narrower ones).
pub const BIN: Duration = Duration::from_secs(60);
/// Bins in the histogram: four hours.
pub(crate) const BINS: usize = 240;
/// Idle times recorded before the histogram is trusted.
const MIN_SAMPLES: u32 = 10;
/// Bin-count coefficient of variation above which the histogram is
/// representative (a few bins hold most idle times).
const CV_THRESHOLD: f64 = 2.0;
/// Margin taken off the head and added to the tail.
const MARGIN: f64 = 0.10;
/// Share of idle times past the range above which a function counts as
/// rarely called.
const RARE_SHARE: f64 = 0.5;
/// Keep-alive of a rarely called function (or the fixed one if shorter).
const RARE_KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Counts are halved when one reaches this, so old behaviour fades.
const DECAY_AT: u32 = 10_000;

/// What to do after a call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// How long after the call no instance is kept; zero keeps the
    /// instance from the call on.
    pub(crate) prewarm: Duration,
    /// How long an instance is kept after the pre-warm window.
    pub(crate) keep_alive: Duration,
    /// Whether the history decided (rather than the fixed default).
    pub(crate) adaptive: bool,
}

impl Policy {
    pub(crate) fn fixed(keep_alive: Duration) -> Policy {
        Policy {
            prewarm: Duration::ZERO,
            keep_alive,
            adaptive: false,
        }
    }
}

/// A function's idle times and call state.
#[derive(Debug, Clone)]
pub(crate) struct History {
    bin: Duration,
    bins: Vec<u32>,
    out_of_range: u32,
    samples: u32,
    in_flight: u32,
    last_end: Option<Instant>,
}

impl Default for History {
    fn default() -> Self {
        History::new(BIN)
    }
}

impl History {
    pub(crate) fn new(bin: Duration) -> History {
        History {
            bin: bin.max(Duration::from_millis(1)),
            bins: vec![0; BINS],
            out_of_range: 0,
            samples: 0,
            in_flight: 0,
            last_end: None,
        }
    }

    /// A call starts: the time since the last one ended is an idle time,
    /// unless another call is still running.
    pub(crate) fn call_started(&mut self, now: Instant) {
        if self.in_flight == 0
            && let Some(end) = self.last_end
        {
            self.record_idle(now.saturating_duration_since(end));
        }
        self.in_flight += 1;
    }

    /// A call ended.
    pub(crate) fn call_ended(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.last_end = Some(now);
    }

    pub(crate) fn last_end(&self) -> Option<Instant> {
        self.last_end
    }

    fn record_idle(&mut self, idle: Duration) {
        let bin = usize::try_from(idle.as_nanos() / self.bin.as_nanos()).unwrap_or(usize::MAX);
        match self.bins.get_mut(bin) {
            Some(count) => *count += 1,
            None => self.out_of_range += 1,
        }
        self.samples += 1;
        if self.bins.iter().any(|c| *c >= DECAY_AT) || self.out_of_range >= DECAY_AT {
            for count in &mut self.bins {
                *count /= 2;
            }
            self.out_of_range /= 2;
            self.samples = self.bins.iter().sum::<u32>() + self.out_of_range;
        }
    }

    /// The policy the history supports, or the fixed keep-alive.
    pub(crate) fn policy(&self, fixed: Duration) -> Policy {
        if self.samples < MIN_SAMPLES {
            return Policy::fixed(fixed);
        }
        let in_range: u32 = self.bins.iter().sum();
        if f64::from(self.out_of_range) > RARE_SHARE * f64::from(self.samples) {
            return Policy {
                prewarm: Duration::ZERO,
                keep_alive: fixed.min(RARE_KEEP_ALIVE),
                adaptive: true,
            };
        }
        if in_range == 0 || coefficient_of_variation(&self.bins) < CV_THRESHOLD {
            return Policy::fixed(fixed);
        }
        let head = percentile_bin(&self.bins, in_range, 0.05);
        let tail = percentile_bin(&self.bins, in_range, 0.99);
        // The head bin's start, the tail bin's end.
        let head = self.bin * u32::try_from(head).unwrap_or(u32::MAX);
        let tail = self.bin * u32::try_from(tail + 1).unwrap_or(u32::MAX);
        let prewarm = head.mul_f64(1.0 - MARGIN);
        let keep_alive = tail
            .mul_f64(1.0 + MARGIN)
            .saturating_sub(prewarm)
            .min(fixed);
        Policy {
            prewarm,
            keep_alive,
            adaptive: true,
        }
    }
}

/// The index of the bin holding the `q` quantile of `total` counts.
fn percentile_bin(bins: &[u32], total: u32, q: f64) -> usize {
    let rank = (q * f64::from(total)).ceil().max(1.0);
    let mut seen = 0u32;
    for (i, count) in bins.iter().enumerate() {
        seen += count;
        if f64::from(seen) >= rank {
            return i;
        }
    }
    bins.len() - 1
}

fn coefficient_of_variation(bins: &[u32]) -> f64 {
    let n = bins.len() as f64;
    let mean = bins.iter().map(|c| f64::from(*c)).sum::<f64>() / n;
    if mean == 0.0 {
        return 0.0;
    }
    let variance = bins
        .iter()
        .map(|c| (f64::from(*c) - mean).powi(2))
        .sum::<f64>()
        / n;
    variance.sqrt() / mean
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXED: Duration = Duration::from_secs(300);

    /// A history of calls separated by `gaps`.
    fn history(gaps: impl IntoIterator<Item = Duration>) -> History {
        let mut h = History::default();
        let mut now = Instant::now();
        h.call_started(now);
        h.call_ended(now);
        for gap in gaps {
            now += gap;
            h.call_started(now);
            h.call_ended(now);
        }
        h
    }

    fn minutes(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    #[test]
    fn too_few_calls_use_the_fixed_keep_alive() {
        let h = history([minutes(10); 5]);
        assert_eq!(h.policy(FIXED), Policy::fixed(FIXED));
    }

    #[test]
    fn a_function_called_every_ten_minutes_is_unloaded_and_prewarmed() {
        let h = history([minutes(10); 30]);
        let p = h.policy(FIXED);
        assert!(p.adaptive);
        // Head: the 10-minute bin starts at 10 min, less 10%.
        assert_eq!(p.prewarm, minutes(9));
        // Tail: that bin ends at 11 min, plus 10%, less the pre-warm.
        assert_eq!(p.prewarm + p.keep_alive, minutes(11).mul_f64(1.1));
        // Far less memory than keeping it 5 min after each call, and the
        // next call (at 10 min) lands inside the window.
        assert!(p.prewarm < minutes(10) && p.prewarm + p.keep_alive > minutes(10));
    }

    #[test]
    fn a_busy_function_stays_warm_with_no_prewarm_gap() {
        let h = history([Duration::from_millis(200); 500]);
        let p = h.policy(FIXED);
        assert!(p.adaptive);
        assert_eq!(p.prewarm, Duration::ZERO);
        // Every gap sits in the first bin: kept for that bin, plus margin.
        assert_eq!(p.keep_alive, minutes(1).mul_f64(1.1));
    }

    #[test]
    fn the_fixed_keep_alive_bounds_the_window() {
        let h = history([Duration::from_millis(200); 500]);
        let short = Duration::from_millis(300);
        assert_eq!(h.policy(short).keep_alive, short);
    }

    #[test]
    fn a_rarely_called_function_keeps_its_instance_briefly() {
        let h = history([minutes(6 * 60); 12]);
        let p = h.policy(FIXED);
        assert!(p.adaptive);
        assert_eq!(p.prewarm, Duration::ZERO);
        assert_eq!(p.keep_alive, RARE_KEEP_ALIVE);
        // Never longer than the fixed keep-alive the server was given.
        let short = Duration::from_millis(300);
        assert_eq!(h.policy(short).keep_alive, short);
    }

    #[test]
    fn scattered_idle_times_fall_back_to_the_fixed_keep_alive() {
        // One idle time in each of 60 different bins: no pattern.
        let h = history((1..=60).map(minutes));
        assert_eq!(h.policy(FIXED), Policy::fixed(FIXED));
    }

    #[test]
    fn overlapping_calls_do_not_count_as_idle() {
        let mut h = History::default();
        let t = Instant::now();
        h.call_started(t);
        h.call_started(t + minutes(3));
        h.call_ended(t + minutes(4));
        h.call_ended(t + minutes(5));
        assert_eq!(h.samples, 0);
        h.call_started(t + minutes(7));
        assert_eq!(h.samples, 1);
        assert_eq!(h.bins[2], 1, "two minutes idle, from the last end");
    }

    #[test]
    fn counts_decay_so_a_new_pattern_takes_over() {
        let mut h = history([minutes(10); 20]);
        for _ in 0..DECAY_AT {
            h.record_idle(Duration::from_secs(1));
        }
        assert!(h.bins[0] < DECAY_AT && h.bins[0] > 0);
        assert_eq!(h.policy(FIXED).prewarm, Duration::ZERO);
    }
}
