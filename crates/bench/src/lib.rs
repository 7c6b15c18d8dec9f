//! tillsync's benchmarks, each a program of its own under `benches/` run
//! by `scripts/bench-*` against the release build of the `tillsync` binary
//! (figures and how to read them: `docs/benchmarks.md`):
//!
//! - `ingest`: sales per second over HTTP against raw inserts of the same
//!   rows;
//! - `reports`: report latency on millions of sales;
//! - `recovery` (a folder, one module per scenario): the service behind a
//!   fault proxy under the fleet simulator's load, a stalled link and
//!   overload, with the health layer on and off.
//!
//! What they share with the tests (spawning the binary, provisioning, the
//! fault proxy) is in the test kit; this library holds only what is theirs
//! alone.
#![forbid(unsafe_code)]

/// A benchmark setting from the environment (`BENCH_*`), or its default
/// when unset or not a number.
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
