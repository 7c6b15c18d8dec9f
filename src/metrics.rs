//! Prometheus metrics. Each application has a recorder of its own
//! ([`Metrics`]), not one installed for the whole process: tests run many
//! applications in one process, and a figure read from one application's
//! `/metrics` must be that application's alone (a test that reads another
//! app's gauge cannot fail when its own feature breaks).
//!
//! The `metrics` macros record into the thread's local recorder when one
//! is set. [`Metrics::scope`] sets it around every poll of a future, and
//! [`spawn`] gives a new task the recorder of the task that spawns it, so
//! everything an application runs records into its own recorder: the
//! server's connection tasks, the committer, the probe, the jobs. Code of
//! this crate spawns only through [`spawn`] (`clippy.toml` refuses
//! `tokio::spawn`); a task spawned otherwise records nothing.
//!
//! Written here because the `metrics` crate offers the local recorder only
//! for a closure on one thread, and a future moves between threads.
//!
//! The metrics themselves are recorded where things happen (request path,
//! health layer, pool, ingest, jobs); their names and meaning are listed
//! in `describe` below, which is what `/metrics` shows as `# HELP`.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio::task::JoinHandle;

/// Request and query latencies: 1 ms to 10 s, dense where the deadlines are.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Refusals: they should take well under 10 ms, so the buckets start at
/// a tenth of a millisecond.
const REFUSAL_BUCKETS_S: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0];
const GROUP_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0];

thread_local! {
    /// The recorder of the future being polled on this thread, for [`spawn`].
    static CURRENT: RefCell<Option<Metrics>> = const { RefCell::new(None) };
}

/// One application's recorder. Clones share it.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A recorder with the service's buckets and the help text of every
    /// metric.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_S)
            .and_then(|b| {
                // A full name is matched before any suffix.
                b.set_buckets_for_metric(
                    Matcher::Full("tillsync_refusal_seconds".into()),
                    REFUSAL_BUCKETS_S,
                )
            })
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
            .build_recorder();
        let metrics = Self {
            recorder: Arc::new(recorder),
        };
        metrics.record(describe);
        metrics
    }

    /// Runs `f` with this recorder as the thread's recorder.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(self.recorder.as_ref(), f)
    }

    /// `future`, recording into this recorder wherever it is polled.
    pub fn scope<F: Future>(&self, future: F) -> Recorded<F> {
        Recorded {
            metrics: Some(self.clone()),
            future,
        }
    }

    /// What `/metrics` shows.
    pub fn handle(&self) -> PrometheusHandle {
        self.recorder.handle()
    }

    /// Folds the histogram samples recorded since the last upkeep (or
    /// scrape) into their buckets. The exporter keeps each sample until
    /// then: a server nobody scrapes grew by about 60 bytes a push, without
    /// end (metrics-rs issue 467). The application runs this every few
    /// seconds.
    pub fn upkeep(&self) {
        self.recorder.handle().run_upkeep();
    }
}

/// The recorder of the future being polled now, if it runs in a scope.
pub fn current() -> Option<Metrics> {
    CURRENT.with(|current| current.borrow().clone())
}

/// `future`, recording into the current recorder (if any) wherever it is
/// polled: for a task handed to a spawner that is not [`spawn`].
pub fn in_current_scope<F: Future>(future: F) -> Recorded<F> {
    Recorded {
        metrics: current(),
        future,
    }
}

/// `tokio::spawn`, with the new task recording into the spawning task's
/// recorder.
#[expect(
    clippy::disallowed_methods,
    reason = "the one place that spawns a task, in the spawner's scope"
)]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(in_current_scope(future))
}

pin_project_lite::pin_project! {
    /// A future that records into a recorder of its own ([`Metrics::scope`]).
    pub struct Recorded<F> {
        metrics: Option<Metrics>,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Recorded<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(metrics) = this.metrics.as_ref() else {
            return this.future.poll(cx);
        };
        let _current = Current::enter(metrics.clone());
        metrics.record(|| this.future.poll(cx))
    }
}

/// Sets [`CURRENT`] for one poll, and puts back what was there (a scope
/// polled inside another) when dropped, even by a panic.
struct Current(Option<Metrics>);

impl Current {
    fn enter(metrics: Metrics) -> Self {
        Self(CURRENT.with(|current| current.replace(Some(metrics))))
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
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
    describe_histogram!(
        "tillsync_refusal_seconds",
        Unit::Seconds,
        "Time from a request's arrival (its body read) to its 503 refusal, by problem code (overloaded, database_unavailable, deadline_exceeded)"
    );
    describe_counter!(
        "tillsync_requests_shed_total",
        "Requests refused before they touched the database, by reason (database_unavailable, overloaded, expired_in_queue, rate_limited, terminal_concurrency) and priority"
    );
    describe_gauge!(
        "tillsync_body_budget_used_bytes",
        Unit::Bytes,
        "Memory reserved by the request bodies being read and handled (at most TILLSYNC_BODY_BUDGET_MIB)"
    );
    describe_counter!(
        "tillsync_body_budget_refusals_total",
        "Requests answered 503 overloaded because the body memory budget had no room for their body"
    );
    describe_gauge!("tillsync_connections_open", "Client connections open");
    describe_counter!(
        "tillsync_connections_refused_total",
        "Client connections answered 503 overloaded and closed because TILLSYNC_MAX_CONNECTIONS were open"
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
        "Steps of a background job (fold, purge, resolve) this replica left to the replica that leads the job now"
    );
    describe_gauge!(
        "tillsync_fold_caught_up_timestamp_seconds",
        Unit::Seconds,
        "Unix time this replica's fold last left no foldable store delta behind (0: not yet; only the replica leading the fold sets it, so alert on the max over replicas)"
    );
    describe_gauge!(
        "tillsync_terminals_silent",
        "Tills of every merchant, neither revoked nor retired, that have pushed before but not for over a day (over=\"1d\") or three days (over=\"3d\"), counted once a minute"
    );
    describe_counter!(
        "tillsync_references_resolved_total",
        "Sales whose voids and refunds the resolver settled (which void counts, what is listed for the back office)"
    );
    describe_gauge!(
        "tillsync_exceptions_open",
        "Open exceptions of every merchant, by kind (GET /v1/exceptions lists them), counted once a minute"
    );
    describe_gauge!(
        "tillsync_exceptions_oldest_open_seconds",
        Unit::Seconds,
        "How long the oldest open exception of any merchant has waited for the back office, counted once a minute"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident memory of this process, in bytes (Linux).
    fn resident_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    /// What recording `samples` histogram samples adds to resident memory,
    /// with the upkeep the application runs every 100 000 of them (about
    /// what a busy server records in its upkeep's 5 s), or none.
    fn growth_of_recording(samples: usize, upkeep: bool) -> u64 {
        const CHUNK: usize = 100_000;
        let metrics = Metrics::new();
        let histogram = metrics.record(|| metrics::histogram!("tillsync_test_seconds"));
        let before = resident_bytes();
        for _ in 0..samples / CHUNK {
            for i in 0..CHUNK {
                histogram.record(i as f64 * 1e-6);
            }
            if upkeep {
                metrics.upkeep();
            }
        }
        resident_bytes().saturating_sub(before)
    }

    /// A long run with nothing scraping: 8 million samples.
    #[test]
    fn samples_take_no_memory_beyond_an_upkeep_however_long_nothing_scrapes() {
        const MB: u64 = 1024 * 1024;
        let kept = growth_of_recording(8_000_000, true);
        let piled = growth_of_recording(8_000_000, false);
        eprintln!(
            "8 million samples: {} MB with upkeep, {} MB without",
            kept / MB,
            piled / MB
        );
        assert!(
            piled > 40 * MB,
            "without upkeep the samples pile up ({} MB): this measures what it should",
            piled / MB
        );
        assert!(kept < 8 * MB, "with upkeep: {} MB", kept / MB);
    }

    fn counted(metrics: &Metrics) -> bool {
        metrics.handle().render().contains("tillsync_test_total 1")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_records_into_its_own_application_and_passes_it_to_what_it_spawns() {
        let (one, other) = (Metrics::new(), Metrics::new());
        one.scope(async {
            spawn(async {
                tokio::task::yield_now().await;
                metrics::counter!("tillsync_test_total").increment(1);
            })
            .await
            .unwrap();
        })
        .await;
        assert!(counted(&one));
        assert!(!counted(&other), "the other application saw nothing");
    }

    #[tokio::test]
    async fn a_scope_inside_another_records_into_its_own_and_gives_the_outer_back() {
        let (outer, inner) = (Metrics::new(), Metrics::new());
        outer
            .scope(async {
                inner.scope(async {}).await;
                metrics::counter!("tillsync_test_total").increment(1);
            })
            .await;
        assert!(counted(&outer));
        assert!(!counted(&inner));
        assert!(current().is_none(), "nothing is left set after the poll");
    }
}
