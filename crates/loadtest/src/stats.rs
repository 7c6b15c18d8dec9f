//! What a run measures. Each till keeps its own [`TillStats`] (no locks on
//! the hot path) and they are merged at the end; a few shared atomic
//! [`LiveCounters`] feed the progress line while the run goes on.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs up to an hour, with
/// three significant digits.
const LATENCY_MAX_US: u64 = 3_600_000_000;
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// Counters the progress line reads while tills and the arrival scheduler
/// update them.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub generated: AtomicU64,
    pub acknowledged: AtomicU64,
    /// Sales generated (or put back for a resend) and not yet acknowledged.
    pub queued: AtomicI64,
    pub in_flight: AtomicI64,
    /// Failed batch pushes: error statuses, timeouts, connection errors.
    pub errors: AtomicU64,
    /// Sale latencies since an observer last took them, for figures by
    /// window over a long run (the soak benchmark); `None`, and nothing
    /// recorded, until an observer asks with [`LiveCounters::watch_sales`].
    sale_window: Mutex<Option<Histogram<u64>>>,
}

impl LiveCounters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn change(counter: &AtomicI64, by: i64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// From now on, sale latencies are also kept for [`Self::take_sales`].
    pub fn watch_sales(&self) {
        *self.window() = Some(latency_histogram());
    }

    /// The sale latencies recorded since the last call (or since
    /// [`Self::watch_sales`]), and a fresh window from now on.
    pub fn take_sales(&self) -> Option<Histogram<u64>> {
        self.window().as_mut().map(|window| {
            let mut taken = latency_histogram();
            std::mem::swap(window, &mut taken);
            taken
        })
    }

    /// Adds the latencies of sales acknowledged together to the window, if
    /// one is watched: one lock per push, not per sale.
    pub fn record_sales(&self, latencies: &[Duration]) {
        if let Some(window) = self.window().as_mut() {
            for latency in latencies {
                window.saturating_record(micros(*latency));
            }
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Option<Histogram<u64>>> {
        // A panic while recording leaves a histogram still fit to read.
        self.sale_window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Marks one request in flight for as long as it lives, so a request
/// abandoned at the drain deadline is not counted forever.
pub struct InFlight<'a>(&'a AtomicI64);

impl<'a> InFlight<'a> {
    pub fn start(counter: &'a AtomicI64) -> Self {
        LiveCounters::change(counter, 1);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        LiveCounters::change(self.0, -1);
    }
}

pub struct TillStats {
    /// Each batch push, from sending to the end of its answer or failure.
    pub request_latency_us: Histogram<u64>,
    /// Each sale, from its arrival at the till to the server's first
    /// acknowledgement: includes queueing behind slow or failed requests.
    pub sale_latency_us: Histogram<u64>,
    /// Pushes the server accepted (200).
    pub accepted_latency_us: Histogram<u64>,
    /// Pushes the server answered with a refusal (429, 503, ...): how fast
    /// load shedding answers.
    pub refused_latency_us: Histogram<u64>,
    /// Batch pushes by status code, plus "timeout", "connection error" and
    /// "invalid response".
    pub status_counts: BTreeMap<String, u64>,
    pub requests: u64,
    /// Pushes of a batch that had failed before (same key, same body).
    pub retries: u64,
    /// Sales put back on the queue because `/v1/sync` reported them missing.
    pub resent: u64,
    /// Sales the server refused for good, by rejection code.
    pub rejected: BTreeMap<String, u64>,
    /// Sales refused for now (`retryable`) and queued again.
    pub retried_later: u64,
    /// Failed `GET /v1/sync` calls, by status (as `status_counts`).
    pub sync_failures: BTreeMap<String, u64>,
}

impl Default for TillStats {
    fn default() -> Self {
        Self {
            request_latency_us: latency_histogram(),
            sale_latency_us: latency_histogram(),
            accepted_latency_us: latency_histogram(),
            refused_latency_us: latency_histogram(),
            status_counts: BTreeMap::new(),
            requests: 0,
            retries: 0,
            resent: 0,
            rejected: BTreeMap::new(),
            retried_later: 0,
            sync_failures: BTreeMap::new(),
        }
    }
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS)
        .expect("constant bounds are valid")
}

impl TillStats {
    pub fn count_status(&mut self, bucket: String) {
        *self.status_counts.entry(bucket).or_default() += 1;
    }

    pub fn count_sync_failure(&mut self, bucket: String) {
        *self.sync_failures.entry(bucket).or_default() += 1;
    }

    pub fn record_request(&mut self, elapsed: Duration) {
        self.request_latency_us.saturating_record(micros(elapsed));
    }

    /// Files a push's latency under accepted or refused; failures without
    /// an answer (timeouts, broken connections) are neither.
    pub fn record_answer(&mut self, elapsed: Duration, bucket: &str) {
        if bucket == "200" {
            self.accepted_latency_us.saturating_record(micros(elapsed));
        } else if bucket.parse::<u16>().is_ok() {
            self.refused_latency_us.saturating_record(micros(elapsed));
        }
    }

    pub fn record_sale(&mut self, elapsed: Duration) {
        self.sale_latency_us.saturating_record(micros(elapsed));
    }

    pub fn merge(&mut self, other: TillStats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.request_latency_us.add(&other.request_latency_us);
        let _ = self.sale_latency_us.add(&other.sale_latency_us);
        let _ = self.accepted_latency_us.add(&other.accepted_latency_us);
        let _ = self.refused_latency_us.add(&other.refused_latency_us);
        for (bucket, n) in other.status_counts {
            *self.status_counts.entry(bucket).or_default() += n;
        }
        for (code, n) in other.rejected {
            *self.rejected.entry(code).or_default() += n;
        }
        self.requests += other.requests;
        self.retries += other.retries;
        self.resent += other.resent;
        for (bucket, n) in other.sync_failures {
            *self.sync_failures.entry(bucket).or_default() += n;
        }
        self.retried_later += other.retried_later;
    }
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A latency distribution as reported, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p99_9_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_stats_add_up_and_keep_the_tail() {
        let mut a = TillStats::default();
        let mut b = TillStats::default();
        for ms in 1..=99 {
            a.record_request(Duration::from_millis(ms));
        }
        b.record_request(Duration::from_secs(3));
        a.count_status("200".into());
        b.count_status("200".into());
        b.count_status("timeout".into());
        a.merge(b);
        let p = Percentiles::of(&a.request_latency_us);
        assert_eq!(p.count, 100);
        assert!((49.0..=51.0).contains(&p.p50_ms), "{p:?}");
        assert!((2990.0..=3010.0).contains(&p.max_ms), "{p:?}");
        assert_eq!(a.status_counts["200"], 2);
        assert_eq!(a.status_counts["timeout"], 1);
    }
}
