//! One phase's measurement, the same for both paths: closed-loop workers
//! (each waits for its answer before sending again), a warm-up, then a
//! window in which every operation that ends is counted and timed, and the
//! CPU split over that window.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tillsync_bench::cpu::{CpuSeconds, Generator};
use tillsync_bench::quantile;
use tokio::task::JoinHandle;

/// When a phase warms up and when it measures.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    from: Instant,
    to: Instant,
}

impl Clock {
    /// Starting now: `warmup`, then `measure`.
    pub fn start(warmup: Duration, measure: Duration) -> Self {
        let from = Instant::now() + warmup;
        Self {
            from,
            to: from + measure,
        }
    }

    /// Whether a worker should start another operation.
    pub fn running(&self) -> bool {
        Instant::now() < self.to
    }
}

/// What one worker timed: the operations that ended inside the window,
/// and how many ended in all (warm-up and the last one included), which
/// the exactly-once verdict checks the database against.
#[derive(Debug, Default)]
pub struct Tally {
    latencies: Vec<Duration>,
    ended: u64,
}

impl Tally {
    /// An operation that began at `began` just ended.
    pub fn record(&mut self, clock: &Clock, began: Instant) {
        self.ended += 1;
        let now = Instant::now();
        if now >= clock.from && now < clock.to {
            self.latencies.push(now - began);
        }
    }
}

/// One phase's figures.
#[derive(Debug, Clone)]
pub struct Measured {
    pub ops_per_s: f64,
    pub rows_per_s: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// Cores used on average over the window.
    pub cpu: CpuSeconds,
    /// CPU seconds used over the window.
    pub cpu_seconds: CpuSeconds,
    /// Operations that ended in all, per worker, in the workers' order.
    pub ended: Vec<u64>,
}

impl Measured {
    pub fn to_json(&self) -> Value {
        json!({
            "ops_per_s": self.ops_per_s,
            "rows_per_s": self.rows_per_s,
            "p50_ms": self.p50.as_secs_f64() * 1e3,
            "p99_ms": self.p99.as_secs_f64() * 1e3,
            "cpu_cores": self.cpu.to_json(),
            "cpu_seconds": self.cpu_seconds.to_json(),
        })
    }
}

/// Waits for the workers (each writing `batch` rows per operation) and
/// reads the CPU split at the window's edges; `service_pid` is the service,
/// if one runs. This whole process is the load generator.
pub async fn measure(
    clock: Clock,
    batch: usize,
    service_pid: Option<u32>,
    workers: Vec<JoinHandle<Tally>>,
) -> Measured {
    tokio::time::sleep_until(clock.from.into()).await;
    let (cpu_from, read_from) = (
        CpuSeconds::now(service_pid, Generator::WholeProcess),
        Instant::now(),
    );
    tokio::time::sleep_until(clock.to.into()).await;
    let (cpu_to, read_to) = (
        CpuSeconds::now(service_pid, Generator::WholeProcess),
        Instant::now(),
    );
    let (mut latencies, mut ended) = (Vec::new(), Vec::new());
    for worker in workers {
        let tally = worker.await.expect("a worker ran");
        latencies.extend(tally.latencies);
        ended.push(tally.ended);
    }
    latencies.sort_unstable();
    let window_s = (clock.to - clock.from).as_secs_f64();
    let ops = latencies.len() as f64;
    Measured {
        ops_per_s: ops / window_s,
        rows_per_s: ops * batch as f64 / window_s,
        p50: quantile(&latencies, 0.50),
        p99: quantile(&latencies, 0.99),
        cpu: cpu_to.cores_since(&cpu_from, read_to - read_from),
        cpu_seconds: cpu_to.since(&cpu_from),
        ended,
    }
}
