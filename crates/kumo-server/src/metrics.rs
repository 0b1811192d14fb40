//! Per-function metrics: counts, statuses, cold starts, duration
//! percentiles, CPU time and peak memory, in one-minute buckets for the
//! last 24 hours (the API's `…/metrics`), and totals since the server
//! started (Prometheus' `/metrics`).
//!
//! Each function's figures sit behind their own lock, reached from the
//! registry's cached entry, so recording a call takes one uncontended
//! lock and no map lookup. Durations go into a sparse log-scale
//! histogram (four bins per doubling, so a percentile is within 19% of
//! the truth) that costs a few bytes per bin actually used.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kumo_types::RunStatus;

/// How long minute buckets are kept.
const WINDOW_MINUTES: i64 = 24 * 60;
/// Bins per doubling of the duration.
const BINS_PER_OCTAVE: f64 = 4.0;
/// The bounds of the Prometheus duration histogram, in seconds.
pub(crate) const PROMETHEUS_BOUNDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// One call, as metrics see it.
pub(crate) struct Sample {
    pub(crate) status: RunStatus,
    pub(crate) cold_start: bool,
    pub(crate) duration: Duration,
    pub(crate) cpu: Option<Duration>,
    pub(crate) peak_memory_bytes: Option<u64>,
    /// Unix milliseconds.
    pub(crate) at_ms: i64,
}

/// A sparse log-scale histogram of durations in microseconds.
#[derive(Debug, Clone, Default)]
struct Histogram {
    /// (bin, count), sorted by bin.
    bins: Vec<(u16, u32)>,
    count: u64,
}

fn bin_of(us: u64) -> u16 {
    let v = (us.max(1) as f64).log2() * BINS_PER_OCTAVE;
    v.floor().clamp(0.0, f64::from(u16::MAX)) as u16
}

/// The upper bound of a bin, in microseconds.
fn bin_upper(bin: u16) -> f64 {
    2f64.powf(f64::from(bin + 1) / BINS_PER_OCTAVE)
}

impl Histogram {
    fn add(&mut self, us: u64) {
        let bin = bin_of(us);
        match self.bins.binary_search_by_key(&bin, |(b, _)| *b) {
            Ok(i) => self.bins[i].1 += 1,
            Err(i) => self.bins.insert(i, (bin, 1)),
        }
        self.count += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (bin, n) in &other.bins {
            match self.bins.binary_search_by_key(bin, |(b, _)| *b) {
                Ok(i) => self.bins[i].1 += n,
                Err(i) => self.bins.insert(i, (*bin, *n)),
            }
        }
        self.count += other.count;
    }

    /// The `q` quantile (0–1) in milliseconds: the upper bound of the bin
    /// that holds it.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (bin, n) in &self.bins {
            seen += u64::from(*n);
            if seen >= rank {
                return Some(bin_upper(*bin) / 1000.0);
            }
        }
        None
    }
}

/// The figures of one minute (or of a whole window).
#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Start of the minute, in Unix minutes.
    minute: i64,
    calls: u64,
    by_status: [u64; 7],
    cold_starts: u64,
    durations: Histogram,
    cpu_us: u64,
    peak_memory: u64,
}

impl Bucket {
    fn add(&mut self, s: &Sample) {
        self.calls += 1;
        self.by_status[s.status.index()] += 1;
        self.cold_starts += u64::from(s.cold_start);
        self.durations
            .add(u64::try_from(s.duration.as_micros()).unwrap_or(u64::MAX));
        self.cpu_us += s
            .cpu
            .map_or(0, |c| u64::try_from(c.as_micros()).unwrap_or(u64::MAX));
        self.peak_memory = self.peak_memory.max(s.peak_memory_bytes.unwrap_or(0));
    }

    fn merge(&mut self, other: &Bucket) {
        self.calls += other.calls;
        for (a, b) in self.by_status.iter_mut().zip(other.by_status) {
            *a += b;
        }
        self.cold_starts += other.cold_starts;
        self.durations.merge(&other.durations);
        self.cpu_us += other.cpu_us;
        self.peak_memory = self.peak_memory.max(other.peak_memory);
    }

    fn view(&self, start_ms: i64) -> kumo_types::MetricsPoint {
        let mut by_status = std::collections::BTreeMap::new();
        for (status, n) in RunStatus::ALL.iter().zip(self.by_status) {
            if n > 0 {
                by_status.insert(status.as_str().to_string(), n);
            }
        }
        kumo_types::MetricsPoint {
            time: start_ms,
            calls: self.calls,
            errors: self.calls - self.by_status[RunStatus::Succeeded.index()],
            by_status,
            cold_starts: self.cold_starts,
            duration_ms: kumo_types::Percentiles {
                p50: self.durations.quantile_ms(0.50),
                p95: self.durations.quantile_ms(0.95),
                p99: self.durations.quantile_ms(0.99),
            },
            cpu_ms: self.cpu_us as f64 / 1000.0,
            peak_memory_bytes: self.peak_memory,
        }
    }
}

/// Totals since the server started, for Prometheus.
#[derive(Debug, Clone, Default)]
pub(crate) struct Totals {
    pub(crate) by_status: [u64; 7],
    pub(crate) cold_starts: u64,
    /// Counts per [`PROMETHEUS_BOUNDS`] bound (not cumulative), then +Inf.
    pub(crate) duration_buckets: [u64; PROMETHEUS_BOUNDS.len() + 1],
    pub(crate) duration_sum_secs: f64,
    pub(crate) cpu_secs: f64,
}

/// One function's figures.
#[derive(Debug, Default)]
pub(crate) struct Series {
    minutes: VecDeque<Bucket>,
    totals: Totals,
}

impl Series {
    fn record(&mut self, s: &Sample) {
        let minute = s.at_ms.div_euclid(60_000);
        match self.minutes.back_mut() {
            Some(last) if last.minute == minute => last.add(s),
            // A sample a little late for its minute joins the newest.
            Some(last) if last.minute > minute => last.add(s),
            _ => {
                let mut bucket = Bucket {
                    minute,
                    ..Bucket::default()
                };
                bucket.add(s);
                self.minutes.push_back(bucket);
            }
        }
        while self
            .minutes
            .front()
            .is_some_and(|b| b.minute <= minute - WINDOW_MINUTES)
        {
            self.minutes.pop_front();
        }
        let t = &mut self.totals;
        t.by_status[s.status.index()] += 1;
        t.cold_starts += u64::from(s.cold_start);
        let secs = s.duration.as_secs_f64();
        let slot = PROMETHEUS_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(PROMETHEUS_BOUNDS.len());
        t.duration_buckets[slot] += 1;
        t.duration_sum_secs += secs;
        t.cpu_secs += s.cpu.map_or(0.0, |c| c.as_secs_f64());
    }
}

/// One function's figures and the names it is reported under.
#[derive(Debug)]
pub(crate) struct FunctionMetrics {
    pub(crate) project: String,
    pub(crate) function: String,
    series: Mutex<Series>,
}

impl FunctionMetrics {
    pub(crate) fn record(&self, sample: &Sample) {
        self.series
            .lock()
            .expect("metrics lock poisoned")
            .record(sample);
    }

    pub(crate) fn totals(&self) -> Totals {
        self.series
            .lock()
            .expect("metrics lock poisoned")
            .totals
            .clone()
    }

    /// The window of `minutes` ending now: its totals and one point per
    /// minute (every minute, with or without calls).
    pub(crate) fn window(&self, minutes: i64, now_ms: i64) -> kumo_types::FunctionMetrics {
        let end = now_ms.div_euclid(60_000);
        let start = end - minutes + 1;
        let series = self.series.lock().expect("metrics lock poisoned");
        let mut total = Bucket::default();
        let mut points = Vec::with_capacity(usize::try_from(minutes).unwrap_or(0));
        let mut stored = series
            .minutes
            .iter()
            .filter(|b| b.minute >= start)
            .peekable();
        for minute in start..=end {
            let bucket = match stored.peek() {
                Some(b) if b.minute == minute => stored.next().cloned().unwrap_or_default(),
                _ => Bucket::default(),
            };
            total.merge(&bucket);
            points.push(bucket.view(minute * 60_000));
        }
        drop(series);
        kumo_types::FunctionMetrics {
            project: self.project.clone(),
            function: self.function.clone(),
            window_secs: u64::try_from(minutes * 60).unwrap_or(0),
            bucket_secs: 60,
            totals: total.view(start * 60_000),
            series: points,
        }
    }
}

/// Every function's figures, by function id.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    functions: Mutex<HashMap<String, Arc<FunctionMetrics>>>,
}

impl Metrics {
    /// The figures of a function (made on first use).
    pub(crate) fn function(&self, id: &str, project: &str, function: &str) -> Arc<FunctionMetrics> {
        let mut functions = self.functions.lock().expect("metrics lock poisoned");
        functions
            .entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(FunctionMetrics {
                    project: project.to_string(),
                    function: function.to_string(),
                    series: Mutex::new(Series::default()),
                })
            })
            .clone()
    }

    /// The figures of a function, if it has any.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<FunctionMetrics>> {
        self.functions
            .lock()
            .expect("metrics lock poisoned")
            .get(id)
            .cloned()
    }

    /// Forgets a deleted function.
    pub(crate) fn remove(&self, id: &str) {
        self.functions
            .lock()
            .expect("metrics lock poisoned")
            .remove(id);
    }

    /// Forgets every function of a deleted project.
    pub(crate) fn remove_project(&self, project: &str) {
        self.functions
            .lock()
            .expect("metrics lock poisoned")
            .retain(|_, f| f.project != project);
    }

    /// Every function's figures, sorted by project and function.
    pub(crate) fn all(&self) -> Vec<Arc<FunctionMetrics>> {
        let mut all: Vec<_> = self
            .functions
            .lock()
            .expect("metrics lock poisoned")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| (&a.project, &a.function).cmp(&(&b.project, &b.function)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, status: RunStatus, at_ms: i64) -> Sample {
        Sample {
            status,
            cold_start: false,
            duration: Duration::from_millis(ms),
            cpu: Some(Duration::from_millis(ms / 2)),
            peak_memory_bytes: Some(ms * 1000),
            at_ms,
        }
    }

    #[test]
    fn percentiles_are_close() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.add(us * 100); // 0.1 ms … 1000 ms, evenly
        }
        for (q, truth) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = h.quantile_ms(q).expect("a value");
            assert!(
                got >= truth && got <= truth * 1.2,
                "q{q}: {got} against {truth}"
            );
        }
        assert!(h.bins.len() < 60, "sparse: {} bins", h.bins.len());
    }

    #[test]
    fn windows_count_what_was_recorded() {
        let m = Metrics::default();
        let f = m.function("id", "p", "f");
        let now = 1_000 * 60_000;
        // Outside a one-hour window:
        f.record(&sample(1, RunStatus::Succeeded, now - 2 * 3_600_000));
        for i in 0..10 {
            f.record(&sample(10, RunStatus::Succeeded, now - 60_000 + i));
        }
        f.record(&sample(200, RunStatus::Failed, now));
        f.record(&sample(30_000, RunStatus::TimedOut, now));
        let w = f.window(60, now);
        assert_eq!(w.series.len(), 60);
        assert_eq!(w.totals.calls, 12);
        assert_eq!(w.totals.errors, 2);
        assert_eq!(w.totals.by_status.get("timed_out"), Some(&1));
        assert_eq!(w.series[58].calls, 10);
        assert_eq!(w.series[59].calls, 2);
        assert_eq!(w.totals.peak_memory_bytes, 30_000_000);
        let p50 = w.totals.duration_ms.p50.expect("p50");
        assert!((10.0..12.0).contains(&p50), "{p50}");
        let totals = f.totals();
        assert_eq!(totals.by_status.iter().sum::<u64>(), 13);
        assert_eq!(totals.duration_buckets[PROMETHEUS_BOUNDS.len()], 0);
        assert_eq!(
            totals.duration_buckets[PROMETHEUS_BOUNDS.len() - 1],
            1,
            "30 s"
        );
    }
}
