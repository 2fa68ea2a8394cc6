//! A latency histogram of fixed buckets made of atomics: an observation is
//! three relaxed increments and no lock (prometheus-client's own histogram
//! takes a lock per observation). Exported in the Prometheus format and
//! read for the status page's p50/p99.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of the buckets, in microseconds (a last, unbounded bucket
/// follows): fine enough below 10 ms, where a healthy CAS node answers.
const BOUNDS_US: [u64; 21] = [
    250, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 25_000, 50_000,
    75_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

#[derive(Debug, Default)]
struct Inner {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// Cheap to clone: clones share the counts.
#[derive(Clone, Debug, Default)]
pub struct Histogram(Arc<Inner>);

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|&b| b < us);
        if let Some(b) = self.0.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.0.sum_us.fetch_add(us, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    fn counts(&self) -> [u64; BOUNDS_US.len() + 1] {
        std::array::from_fn(|i| self.0.buckets[i].load(Ordering::Relaxed))
    }

    /// The `q` quantile (0..=1), interpolated inside its bucket as
    /// Prometheus' `histogram_quantile` does; `None` before any observation.
    /// In the last, unbounded bucket it answers that bucket's lower bound.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts = self.counts();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0u64;
        for (i, &c) in counts.iter().enumerate() {
            if c > 0 && (seen + c) as f64 >= rank {
                let lower = if i == 0 { 0 } else { BOUNDS_US[i - 1] };
                let Some(&upper) = BOUNDS_US.get(i) else {
                    return Some(Duration::from_micros(lower));
                };
                let within = ((rank - seen as f64) / c as f64).clamp(0.0, 1.0);
                let us = lower as f64 + within * (upper - lower) as f64;
                return Some(Duration::from_micros(us as u64));
            }
            seen += c;
        }
        None
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.counts();
        let buckets: Vec<(f64, u64)> = counts
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                // The encoder writes `le="+Inf"` for an infinite bound only.
                let upper = BOUNDS_US.get(i).map_or(f64::INFINITY, |&b| b as f64 / 1e6);
                (upper, c)
            })
            .collect();
        let sum = self.0.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, self.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for _ in 0..98 {
            h.observe(Duration::from_micros(800)); // (750, 1000]
        }
        h.observe(Duration::from_millis(40)); // (25 ms, 50 ms]
        h.observe(Duration::from_secs(60)); // unbounded
        let p50 = h.quantile(0.5).unwrap_or_default();
        assert!(p50 > Duration::from_micros(750) && p50 <= Duration::from_millis(1));
        let p99 = h.quantile(0.99).unwrap_or_default();
        assert!(p99 > Duration::from_millis(25) && p99 <= Duration::from_millis(50));
        assert_eq!(h.quantile(1.0), Some(Duration::from_secs(10)));
        assert_eq!(h.count(), 100);
    }
}
