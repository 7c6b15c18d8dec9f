//! Prometheus metrics: one recorder per process, histograms with explicit
//! buckets, and the gauges that are read from live state at scrape time
//! (link state, admission, pool) so the hot path does not update them.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::db::Database;
use crate::health::Gate;
use crate::health::link::LinkState;

/// Request and query latencies: 1 ms to 10 s, dense where the deadlines are.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0];

/// The process-wide recorder. Installed once: several services in one
/// process (tests) share it.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_S)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("tillsync_batch_sales".into()),
                        BATCH_SIZE_BUCKETS,
                    )
                })
                .expect("bucket lists are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// Renders the exposition, refreshing the gauges read from live state first.
pub fn render(handle: &PrometheusHandle, gate: &Gate, db: &Database) -> String {
    let link = gate.link();
    for state in [LinkState::Ok, LinkState::Degraded, LinkState::Unavailable] {
        let value = if link.state == state { 1.0 } else { 0.0 };
        metrics::gauge!("tillsync_db_state", "state" => state.as_str()).set(value);
    }
    let load = gate.load();
    metrics::gauge!("tillsync_admission_limit").set(load.limit as f64);
    metrics::gauge!("tillsync_admission_in_flight").set(load.in_flight as f64);
    metrics::gauge!("tillsync_admission_queued").set(load.queued as f64);
    metrics::gauge!("tillsync_db_pool_size").set(db.pool().size() as f64);
    metrics::gauge!("tillsync_db_pool_idle").set(db.pool().num_idle() as f64);
    handle.render()
}
