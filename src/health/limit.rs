//! The adaptive concurrency limit: how many database operations may run at
//! once, following measured latency (Netflix's Gradient2).
//!
//! The limit grows while the recent latency stays close to the long-run
//! latency and shrinks as soon as recent latency rises above it (a queue is
//! building inside Postgres), so admission tracks what the database can
//! take instead of a number picked at deploy time. Written here because no
//! well-kept crate offers it with priorities and slow start; see
//! [`super::slots`] for the queue in front of it.

use std::time::Duration;

/// How much slower than the long-run latency the recent latency may be
/// before the limit shrinks.
const TOLERANCE: f64 = 2.0;
/// Samples the recent latency averages over. A single request's latency is
/// noise on a busy machine (measured: reacting to each one kept the limit
/// far below what the database could do); a short average is the signal.
const SHORT_WINDOW: f64 = 10.0;
/// Weight of a new estimate against the current limit.
const SMOOTHING: f64 = 0.2;
/// Samples the long-run latency averages over.
const LONG_WINDOW: f64 = 600.0;
/// Multiplicative decrease when an operation fails or times out.
const BACKOFF: f64 = 0.9;

#[derive(Debug, Clone)]
pub struct Gradient {
    limit: f64,
    min_limit: f64,
    max_limit: f64,
    long_rtt_ms: Option<f64>,
    short_rtt_ms: Option<f64>,
}

impl Gradient {
    pub fn new(initial: usize, min_limit: usize, max_limit: usize) -> Self {
        let min_limit = min_limit.max(1) as f64;
        let max_limit = (max_limit as f64).max(min_limit);
        Self {
            limit: (initial as f64).clamp(min_limit, max_limit),
            min_limit,
            max_limit,
            long_rtt_ms: None,
            short_rtt_ms: None,
        }
    }

    /// The number of operations that may run at once now.
    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// The lowest the limit goes, and where it restarts after an outage.
    pub fn min_limit(&self) -> usize {
        self.min_limit as usize
    }

    /// How long one operation takes these days (the short average), once
    /// anything has been measured since the start or the last restart.
    pub fn recent_latency(&self) -> Option<Duration> {
        self.short_rtt_ms
            .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0))
    }

    /// Learns from one finished operation. `in_flight` is how many ran at
    /// the time: a limit nobody uses says nothing about capacity, so it only
    /// grows while at least half of it is in use.
    pub fn on_success(&mut self, latency: Duration, in_flight: usize) {
        let sample = latency.as_secs_f64() * 1000.0;
        let rtt = match self.short_rtt_ms {
            None => sample,
            Some(short) => short + (sample - short) / SHORT_WINDOW,
        };
        self.short_rtt_ms = Some(rtt);
        let long = match self.long_rtt_ms {
            None => rtt,
            Some(long) => long + (rtt - long) / LONG_WINDOW,
        };
        // After a burst the long average lags far above today's latency;
        // let it catch up faster so the limit can grow again.
        let long = if long / rtt.max(1e-3) > 2.0 {
            long * 0.95
        } else {
            long
        };
        self.long_rtt_ms = Some(long);

        if (in_flight as f64) < self.limit / 2.0 {
            return;
        }
        let gradient = (TOLERANCE * long / rtt.max(1e-3)).clamp(0.5, 1.0);
        let queue_allowance = self.limit.sqrt();
        let estimate = self.limit * gradient + queue_allowance;
        self.limit = (self.limit * (1.0 - SMOOTHING) + estimate * SMOOTHING)
            .clamp(self.min_limit, self.max_limit);
    }

    /// An operation failed for a reason that speaks of load (timeout, link
    /// trouble): back off at once.
    pub fn on_failure(&mut self) {
        self.limit = (self.limit * BACKOFF).max(self.min_limit);
    }

    /// Starts again from the bottom, as after an outage: the backlog is let
    /// in at the pace the recovering database shows it can take.
    pub fn restart(&mut self) {
        self.limit = self.min_limit;
        self.long_rtt_ms = None;
        self.short_rtt_ms = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn steady_latency_under_full_use_grows_the_limit_to_its_maximum() {
        let mut g = Gradient::new(2, 2, 20);
        for _ in 0..200 {
            let used = g.limit();
            g.on_success(ms(5), used);
        }
        assert_eq!(g.limit(), 20);
    }

    #[test]
    fn an_unused_limit_does_not_grow() {
        let mut g = Gradient::new(4, 2, 20);
        for _ in 0..200 {
            g.on_success(ms(5), 1);
        }
        assert_eq!(g.limit(), 4);
    }

    #[test]
    fn rising_latency_shrinks_the_limit() {
        let mut g = Gradient::new(20, 2, 20);
        for _ in 0..100 {
            g.on_success(ms(5), 20);
        }
        for _ in 0..30 {
            let used = g.limit();
            g.on_success(ms(50), used);
        }
        assert!(g.limit() < 12, "limit {} should have shrunk", g.limit());
    }

    #[test]
    fn failures_back_off_and_restart_goes_to_the_bottom() {
        let mut g = Gradient::new(20, 2, 20);
        g.on_failure();
        assert_eq!(g.limit(), 18);
        g.restart();
        assert_eq!(g.limit(), 2);
    }
}
