//! Prometheus metrics: one recorder per process, histograms with explicit
//! buckets, the help text of every metric the service records, and the
//! gauges that are read from live state at scrape time (link state,
//! admission, pool) so the hot path does not update them.
//!
//! The metrics themselves are recorded where things happen (request path,
//! health layer, pool, ingest); their names and meaning are listed in
//! `describe` below, which is what `/metrics` shows as `# HELP`.

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
const GROUP_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0];

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
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("tillsync_ingest_group_size".into()),
                        GROUP_SIZE_BUCKETS,
                    )
                })
                .expect("bucket lists are not empty")
                .install_recorder()
                .inspect(|_| {
                    describe();
                    export_known_series();
                })
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// The help text of every metric. Described once, after the recorder is
/// installed (descriptions given to no recorder are lost).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "tillsync_http_requests_total",
        "HTTP requests answered, by route template, method and status (refusals included)"
    );
    describe_histogram!(
        "tillsync_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by route template and method"
    );
    describe_counter!(
        "tillsync_requests_shed_total",
        "Requests refused before they touched the database, by reason (database_unavailable, overloaded, expired_in_queue, rate_limited, terminal_concurrency) and priority"
    );
    describe_gauge!(
        "tillsync_db_state",
        "State of the link to Postgres: 1 for the current state (ok, degraded, unavailable), 0 for the others"
    );
    describe_counter!(
        "tillsync_db_state_changes_total",
        "Changes of the database link state, by the state changed to"
    );
    describe_histogram!(
        "tillsync_db_probe_seconds",
        Unit::Seconds,
        "Latency of health probes that answered (`select 1` on the probe's own connection, a reconnect included)"
    );
    describe_counter!(
        "tillsync_db_probe_failures_total",
        "Health probes that failed or timed out"
    );
    describe_counter!(
        "tillsync_db_primary_moves_total",
        "Times the pool moved to another server of DATABASE_URL (a failover followed), or dropped its connections to a server that turned read-only"
    );
    describe_gauge!(
        "tillsync_db_pool_size",
        "Connections the pool holds (idle and in use)"
    );
    describe_gauge!("tillsync_db_pool_idle", "Idle connections in the pool");
    describe_gauge!(
        "tillsync_db_server_timeout_seconds",
        "Timeouts a session gets from the server (statement_timeout, lock_timeout, idle_in_transaction_session_timeout), read through the pool every minute; 0 is off"
    );
    describe_gauge!(
        "tillsync_db_pooler_leftover_statements",
        "Prepared statements of other clients on a server connection a transaction pooler lent (TILLSYNC_DB_POOLER=transaction only); above 0, PgBouncer does not deallocate them"
    );
    describe_histogram!(
        "tillsync_db_acquire_seconds",
        Unit::Seconds,
        "Time to get a pooled connection (for a transaction, until BEGIN has answered); failed attempts included"
    );
    describe_histogram!(
        "tillsync_ingest_group_size",
        "Pushes written together in one transaction by the group committer"
    );
    describe_counter!(
        "tillsync_ingest_read_skipped_total",
        "Pushes written without a read first because this replica wrote the till's last push: written, or read_again when another writer had come between"
    );
    describe_counter!(
        "tillsync_db_stray_transactions_total",
        "Pooled connections closed because they came back inside a transaction nobody owned (a cancelled BEGIN)"
    );
    describe_histogram!(
        "tillsync_db_query_seconds",
        Unit::Seconds,
        "Time an admitted request spends on its database work (acquire, queries, commit), by priority"
    );
    describe_gauge!(
        "tillsync_admission_limit",
        "Current adaptive limit on concurrent database-bound requests"
    );
    describe_gauge!(
        "tillsync_admission_min_limit",
        "Lowest the adaptive limit goes (and where it restarts after an outage); the limit held here means the database has been slow or failing"
    );
    describe_gauge!(
        "tillsync_admission_in_flight",
        "Database-bound requests admitted and running"
    );
    describe_gauge!(
        "tillsync_admission_queued",
        "Requests waiting for the database (the pool's waiters: requests queue in admission, in front of the pool, not in the pool itself)"
    );
    describe_counter!(
        "tillsync_sales_total",
        "Sales in committed batches, by result (accepted, duplicate, rejected); replays are not counted again"
    );
    describe_histogram!(
        "tillsync_batch_sales",
        Unit::Count,
        "Sales per committed batch"
    );
    describe_counter!(
        "tillsync_fold_skipped_total",
        "Times the background fold skipped a store whose totals could not take its deltas (the store is logged, and tried again after a wait)"
    );
    describe_counter!(
        "tillsync_background_led_elsewhere_total",
        "Steps of a background job (fold, purge) this replica left to the replica that leads the job now"
    );
    describe_gauge!(
        "tillsync_fold_caught_up_timestamp_seconds",
        Unit::Seconds,
        "Unix time this replica's fold last left no foldable store delta behind (0: not yet; only the replica leading the fold sets it, so alert on the max over replicas)"
    );
    describe_gauge!(
        "tillsync_terminals_silent",
        "Tills of every merchant, not revoked, that have pushed before but not for over a day (over=\"1d\") or three days (over=\"3d\"), counted once a minute"
    );
    metrics::gauge!("tillsync_fold_caught_up_timestamp_seconds").set(0.0);
    for over in ["1d", "3d"] {
        metrics::gauge!("tillsync_terminals_silent", "over" => over).set(0.0);
    }
    // Exported from the start, so an alert on it sees 0 before the first skip.
    metrics::counter!("tillsync_fold_skipped_total").increment(0);
}

/// Puts every counter whose labels are known in advance on the page at 0,
/// so an alert on `rate(...)` or `increase(...)` has a series to read on a
/// healthy service, before the first refusal or failure ever happens.
fn export_known_series() {
    use crate::health::Priority;
    for reason in ["database_unavailable", "overloaded", "expired_in_queue"] {
        for priority in Priority::ALL {
            metrics::counter!("tillsync_requests_shed_total", "reason" => reason, "priority" => priority.as_str())
                .increment(0);
        }
    }
    for reason in ["rate_limited", "terminal_concurrency"] {
        metrics::counter!("tillsync_requests_shed_total", "reason" => reason, "priority" => "ingest")
            .increment(0);
    }
    for state in [LinkState::Ok, LinkState::Degraded, LinkState::Unavailable] {
        metrics::counter!("tillsync_db_state_changes_total", "to" => state.as_str()).increment(0);
    }
    metrics::counter!("tillsync_db_probe_failures_total").increment(0);
    metrics::counter!("tillsync_db_primary_moves_total").increment(0);
    for result in ["accepted", "duplicate", "rejected"] {
        metrics::counter!("tillsync_sales_total", "result" => result).increment(0);
    }
    for job in crate::db::leader::Job::ALL {
        metrics::counter!("tillsync_background_led_elsewhere_total", "job" => job.as_str())
            .increment(0);
    }
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
    metrics::gauge!("tillsync_admission_min_limit").set(load.min_limit as f64);
    metrics::gauge!("tillsync_admission_in_flight").set(load.in_flight as f64);
    metrics::gauge!("tillsync_admission_queued").set(load.queued as f64);
    metrics::gauge!("tillsync_db_pool_size").set(db.pool().size() as f64);
    metrics::gauge!("tillsync_db_pool_idle").set(db.pool().num_idle() as f64);
    handle.render()
}
