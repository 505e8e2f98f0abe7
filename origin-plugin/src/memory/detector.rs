//! The leak detector's decision, as a pure function of samples: no allocator, clock or
//! I/O here. The caller feeds one [`Sample`] (requests finished so far, live heap bytes)
//! per window of requests; the detector answers whether growth has been sustained.

use std::collections::VecDeque;

use serde::Serialize;

/// Thresholds of the leak detector. Windows are counted in requests, not seconds, so a
/// quiet process is never flagged for the idle time between two requests.
#[derive(Debug, Clone, PartialEq)]
pub struct LeakConfig {
    /// Requests ignored before the first window (caches, pools and lazy statics fill up).
    /// Default: 10 000.
    pub warmup_requests: u64,
    /// Requests per window: live heap bytes are sampled once per window. Default: 1 000.
    pub window_requests: u64,
    /// Consecutive growing windows needed to report. Default: 5.
    pub windows: usize,
    /// Least average growth over those windows, in bytes per request. Default: 256.
    pub min_bytes_per_request: f64,
    /// Least total growth over those windows, in bytes. Default: 8 MiB.
    pub min_growth_bytes: u64,
}

impl Default for LeakConfig {
    fn default() -> Self {
        Self {
            warmup_requests: 10_000,
            window_requests: 1_000,
            windows: 5,
            min_bytes_per_request: 256.0,
            min_growth_bytes: 8 << 20,
        }
    }
}

/// Live heap bytes after a number of finished requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Requests finished since the process started.
    pub requests: u64,
    /// Bytes the application holds (jemalloc `stats.allocated`).
    pub allocated_bytes: u64,
}

/// What the detector reports when growth has been sustained.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeakReport {
    /// Growth over the windows, in bytes.
    pub growth_bytes: u64,
    /// Requests over the windows.
    pub requests: u64,
    /// `growth_bytes / requests`.
    pub bytes_per_request: f64,
    /// Windows, all growing.
    pub windows: usize,
    /// First and last sample of the span.
    pub from: Sample,
    /// Last sample of the span.
    pub to: Sample,
}

/// Sliding windows of [`Sample`]s and the verdict over them.
#[derive(Debug, Clone)]
pub struct LeakDetector {
    config: LeakConfig,
    samples: VecDeque<Sample>,
}

impl LeakDetector {
    /// A detector with these thresholds (`windows` at least 1).
    pub fn new(mut config: LeakConfig) -> Self {
        config.windows = config.windows.max(1);
        config.window_requests = config.window_requests.max(1);
        Self {
            samples: VecDeque::with_capacity(config.windows + 1),
            config,
        }
    }

    /// The thresholds in force.
    pub fn config(&self) -> &LeakConfig {
        &self.config
    }

    /// Feed the sample taken at the end of a window. Returns a report when the last
    /// `windows` windows all grew and their growth passes both thresholds; the history
    /// then starts over, so a steady leak is reported once per `windows` windows.
    pub fn observe(&mut self, sample: Sample) -> Option<LeakReport> {
        if sample.requests < self.config.warmup_requests {
            return None;
        }
        if let Some(last) = self.samples.back() {
            // A shrinking (or flat) window breaks the run: the heap was given back.
            if sample.allocated_bytes <= last.allocated_bytes || sample.requests <= last.requests {
                self.samples.clear();
            }
        }
        self.samples.push_back(sample);
        while self.samples.len() > self.config.windows + 1 {
            self.samples.pop_front();
        }
        if self.samples.len() < self.config.windows + 1 {
            return None;
        }
        let (from, to) = (*self.samples.front()?, *self.samples.back()?);
        let growth_bytes = to.allocated_bytes - from.allocated_bytes;
        let requests = to.requests - from.requests;
        let bytes_per_request = growth_bytes as f64 / requests as f64;
        if growth_bytes < self.config.min_growth_bytes
            || bytes_per_request < self.config.min_bytes_per_request
        {
            return None;
        }
        self.samples.clear();
        self.samples.push_back(to);
        Some(LeakReport {
            growth_bytes,
            requests,
            bytes_per_request,
            windows: self.config.windows,
            from,
            to,
        })
    }

    /// Windows in the current run of growth.
    pub fn growing_windows(&self) -> usize {
        self.samples.len().saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeakConfig {
        LeakConfig {
            warmup_requests: 100,
            window_requests: 10,
            windows: 3,
            min_bytes_per_request: 100.0,
            min_growth_bytes: 1000,
        }
    }

    fn s(requests: u64, allocated_bytes: u64) -> Sample {
        Sample {
            requests,
            allocated_bytes,
        }
    }

    #[test]
    fn steady_growth_after_warm_up_is_reported_after_the_configured_windows() {
        let mut d = LeakDetector::new(config());
        let verdicts: Vec<bool> = (10..=13)
            .map(|w| d.observe(s(w * 10, w * 10 * 200)).is_some())
            .collect();
        assert_eq!(verdicts, [false, false, false, true]);
        let mut d = LeakDetector::new(config());
        for w in 10..13 {
            assert!(d.observe(s(w * 10, w * 2000)).is_none());
        }
        let r = d.observe(s(130, 26_000)).expect("reported");
        assert_eq!(r.growth_bytes, 6000);
        assert_eq!(r.requests, 30);
        assert_eq!(r.bytes_per_request, 200.0);
    }

    #[test]
    fn growth_during_warm_up_is_ignored() {
        let mut d = LeakDetector::new(config());
        for w in 0..10 {
            assert!(d.observe(s(w * 10, w * 10_000)).is_none());
        }
        assert_eq!(d.growing_windows(), 0);
    }

    #[test]
    fn a_window_that_shrinks_starts_the_run_over() {
        let mut d = LeakDetector::new(config());
        assert!(d.observe(s(100, 10_000)).is_none());
        assert!(d.observe(s(110, 12_000)).is_none());
        assert!(d.observe(s(120, 14_000)).is_none());
        assert!(d.observe(s(130, 13_000)).is_none());
        assert_eq!(d.growing_windows(), 0);
        assert!(d.observe(s(140, 15_000)).is_none());
        assert!(d.observe(s(150, 17_000)).is_none());
        assert!(d.observe(s(160, 19_000)).is_some());
    }

    #[test]
    fn growth_below_either_threshold_is_not_reported() {
        let mut d = LeakDetector::new(config());
        // 50 bytes per request: under min_bytes_per_request.
        for w in 10..20 {
            assert!(d.observe(s(w * 10, w * 500)).is_none());
        }
        let mut d = LeakDetector::new(LeakConfig {
            min_growth_bytes: 1 << 20,
            ..config()
        });
        for w in 10..20 {
            assert!(d.observe(s(w * 10, w * 2000)).is_none());
        }
    }

    #[test]
    fn a_steady_leak_is_reported_once_per_run_of_windows() {
        let mut d = LeakDetector::new(config());
        let reports = (10..=22)
            .filter(|w| d.observe(s(w * 10, w * 2000)).is_some())
            .count();
        // Windows 10..=22: first report on the 4th sample, then every 3 windows.
        assert_eq!(reports, 4);
    }
}
