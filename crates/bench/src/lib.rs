//! tillsync's benchmarks, each a program of its own under `benches/` run
//! by `scripts/bench-*` (and `scripts/failover-drill`) against the release build of the `tillsync` binary
//! (figures and how to read them: `docs/benchmarks.md`):
//!
//! - `ingest` (a folder): a grid of batch sizes and fleet sizes, sales per
//!   second over HTTP against raw Postgres inserting as many fresh rows per
//!   transaction, with latencies and the CPU split;
//! - `reports`: report latency on millions of sales;
//! - `recovery` (a folder, one module per scenario): the service behind a
//!   fault proxy under the fleet simulator's load, a stalled link and
//!   overload, with the health layer on and off;
//! - `failover` (a folder, run by `scripts/failover-drill`): three replicas
//!   behind a round-robin balancer under the simulator's load, the primary
//!   killed and its standby promoted.
//!
//! What they share with the tests (spawning the binary, provisioning, the
//! fault proxy) is in the test kit; this library holds only what is theirs
//! alone: settings, the CPU split ([`cpu`]) and latency percentiles.
#![forbid(unsafe_code)]

pub mod cpu;

use std::time::Duration;

/// A benchmark setting from the environment (`BENCH_*`), or its default
/// when unset or not a number.
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A list setting from the environment (`BENCH_*`, comma-separated), or
/// `default` when unset. Panics on an entry that is not a number: a grid
/// silently missing a row would be worse.
pub fn list_setting<T: std::str::FromStr + Clone>(name: &str, default: &[T]) -> Vec<T> {
    match std::env::var(name) {
        Ok(list) => list
            .split(',')
            .map(|v| {
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: numbers, comma-separated, not {list:?}"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

/// The `q` quantile (0 to 1) of `sorted` (ascending), nearest rank; zero
/// when there are none.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
