//! The database health layer: the one place every database-bound piece of
//! work goes through, by one call, [`Gate::run`]`(priority, arrived, work)`. It
//! knows the state of the link ([`link`], fed by the probe in [`probe`]
//! and by real work that failed), refuses work at once while the link is
//! down, admits what the database can take ([`slots`] over the adaptive
//! limit in [`limit`]), runs admitted work under its deadline, cuts it short
//! when the link is declared down, learns from how it ended ([`signal`]),
//! after an outage lets the backlog back in from a small limit upwards, and
//! is the one source of every database-related `Retry-After` ([`refusal`]).

pub mod limit;
pub mod link;
mod probe;
mod refusal;
mod signal;
mod slots;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::HealthArgs;
use crate::db::Database;
use limit::Gradient;
use link::{LinkMonitor, LinkSnapshot, LinkState, ProbeResult};
pub use refusal::{Refusal, RetryAfter};
pub use signal::{Judged, Signal};
pub use slots::{Load, Priority};
use slots::{Permit, QueueBounds, Shed, Slots};

/// Refusals within this window count as "shedding" for readiness and status.
const SHEDDING_WINDOW: Duration = Duration::from_secs(1);

/// Default highest admission limit per pooled connection (see [`Gate::new`]).
const ADMITTED_PER_CONNECTION: usize = 16;

/// The share of `--admission-group-wait` a push of this priority may be
/// admitted with. A backlog push (an offline queue replayed) gets half: the
/// group queue is one line for all pushes, and while a backlog drains it
/// stays short enough for the sales being made now to be admitted. (With
/// one bound for both, the probe till's live pushes were refused for 28 s
/// of a stall's drain: docs/benchmarks.md, issue 26.)
fn group_wait_share(priority: Priority) -> f64 {
    match priority {
        Priority::Backlog => 0.5,
        _ => 1.0,
    }
}

/// A slot held for one piece of work, with its deadline (none of either
/// when the layer is off).
struct Admitted {
    permit: Option<Permit>,
    deadline: Option<Instant>,
    /// Changes when the link is declared down.
    outages: Option<watch::Receiver<u64>>,
}

impl Admitted {
    /// Runs the work until it ends, its deadline passes or the link is
    /// declared down. Cutting it short drops its connection mid-query; the
    /// pool's release check then closes it instead of reusing it.
    async fn run<F: Future>(&mut self, work: F) -> Result<F::Output, Refusal> {
        let (Some(deadline), Some(outages)) = (self.deadline, self.outages.as_mut()) else {
            return Ok(work.await);
        };
        tokio::select! {
            done = tokio::time::timeout_at(deadline.into(), work) => {
                done.map_err(|_| Refusal::DeadlineExceeded)
            }
            // A stalled link would hold the work until its deadline for nothing.
            Ok(()) = outages.changed() => Err(Refusal::Unavailable),
        }
    }
}

/// The service's own state for tills' status lights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    Ok,
    Degraded,
    Unavailable,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Ok => "ok",
            ServiceState::Degraded => "degraded",
            ServiceState::Unavailable => "unavailable",
        }
    }
}

#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

struct Inner {
    settings: HealthArgs,
    link: LinkMonitor,
    slots: Arc<Slots>,
    retry_after: RetryAfter,
    probe_wake: Arc<Notify>,
    /// Counts the times the link was declared down; admitted work watches it.
    outages: watch::Sender<u64>,
}

impl Gate {
    pub fn new(settings: HealthArgs, pool_size: u32) -> Self {
        // Sixteen requests per pooled connection unless set: most pushes
        // hold no connection at all (their group's writer does, `ingest`),
        // so far more requests than connections make progress at once, and
        // the more pushes are in flight, the fuller the groups. Measured in
        // the recovery benchmark (docs/benchmarks.md, issue 13): at the pool
        // size (10) the backlog after a 30 s stall took 25 s to be served;
        // at 8x, once nearly every push skipped its read, the layer-off pool
        // delivered 1.2-1.3x what the layer admitted at 2x, 5x and 10x; at
        // 16x the layer delivered more than the layer-off pool at 2x and 5x
        // (admitted p99 201 ms at 2x), 0.80 of it at 10x.
        let max_limit = settings
            .admission_max_limit
            .unwrap_or(pool_size as usize * ADMITTED_PER_CONNECTION);
        // Half the pool unless set: on a busy database, latency rises with
        // concurrency before throughput stops rising, and a limit pushed
        // lower than this leaves Postgres idle between requests.
        let min_limit = settings
            .admission_min_limit
            .unwrap_or((max_limit / 2).max(1));
        let limiter = Gradient::new(max_limit, min_limit, max_limit);
        let inner = Inner {
            link: LinkMonitor::new(settings.db_probe_failures, settings.db_degraded_latency),
            slots: Slots::new(
                limiter,
                QueueBounds {
                    max_wait: settings.admission_queue_wait,
                    max_waiting: settings.admission_queue,
                },
            ),
            retry_after: RetryAfter::new(settings.retry_after_max),
            probe_wake: Arc::new(Notify::new()),
            outages: watch::Sender::new(0),
            settings,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Starts the background probe (only when the layer is on).
    pub fn spawn_probe(
        &self,
        db: &Database,
        stopping: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        if !self.enabled() {
            return None;
        }
        let prober = probe::Prober {
            db: db.clone(),
            interval: self.inner.settings.db_probe_interval,
            timeout: self.inner.settings.db_probe_timeout,
            wake: self.inner.probe_wake.clone(),
        };
        Some(crate::metrics::spawn(prober.run(self.clone(), stopping)))
    }

    pub fn enabled(&self) -> bool {
        self.inner.settings.health_layer.is_on()
    }

    pub fn deadline_for(&self, priority: Priority) -> Duration {
        let s = &self.inner.settings;
        match priority {
            // A token lookup is one indexed read; the shortest deadline is plenty.
            Priority::Group | Priority::Auth | Priority::Ingest | Priority::Backlog => {
                s.ingest_deadline
            }
            Priority::Admin => s.admin_deadline,
            Priority::Report | Priority::Background => s.report_deadline,
        }
    }

    /// Runs database-bound work: admits it at `priority` (or refuses it at
    /// once), runs it under the deadline that counts from `arrived` (so the
    /// steps of one request, token lookup then its own work, share one),
    /// cuts it short if the link is declared down meanwhile, and learns from
    /// how it ended. The work's own result comes back untouched; `Err` only
    /// says why it was not done or not finished.
    pub async fn run<F>(
        &self,
        priority: Priority,
        arrived: Instant,
        work: F,
    ) -> Result<F::Output, Refusal>
    where
        F: Future,
        F::Output: Judged,
    {
        let mut admitted = self.admit(priority, arrived).await?;
        let started = Instant::now();
        let result = admitted.run(work).await;
        // The time the work held a slot: the latency the limit reacts to.
        metrics::histogram!("tillsync_db_query_seconds", "priority" => priority.as_str())
            .record(started.elapsed().as_secs_f64());
        let signal = match &result {
            Ok(output) => output.signal(),
            Err(_) => Signal::LinkFailure,
        };
        self.finish(admitted, priority, signal);
        result
    }

    /// Runs a push, which holds no slot of its own: its database work takes
    /// slots as it goes (its read; its group's write, one slot for every
    /// push of the group). It is admitted by the wait for its group instead
    /// ([`Gate::admit_to_group`]). Admitted, it runs under its deadline and
    /// is cut short if the link is declared down. Nothing is learned from it
    /// as a whole: its read and its group's write teach the limit what they
    /// cost.
    pub async fn run_grouped<F: Future>(
        &self,
        priority: Priority,
        arrived: Instant,
        group_wait: Duration,
        work: F,
    ) -> Result<F::Output, Refusal> {
        if !self.enabled() {
            return Ok(work.await);
        }
        self.admit_to_group(priority, group_wait)?;
        let mut admitted = Admitted {
            permit: None,
            deadline: Some(arrived + self.deadline_for(priority)),
            outages: Some(self.inner.outages.subscribe()),
        };
        admitted.run(work).await
    }

    /// Whether a push may join the queue for a group: not while the link is
    /// down, nor when `group_wait`, how long it would wait for its group at
    /// the pace groups are being written now, is beyond
    /// `--admission-group-wait` (half of it for a backlog). A push is judged
    /// once as it arrives, and a backlog once more when its sales are read
    /// ([`crate::http::middleware::admission`]).
    pub fn admit_to_group(&self, priority: Priority, group_wait: Duration) -> Result<(), Refusal> {
        if !self.enabled() {
            return Ok(());
        }
        if self.inner.link.state() == LinkState::Unavailable {
            count_shed("database_unavailable", priority);
            return Err(Refusal::Unavailable);
        }
        let bound = self.inner.settings.admission_group_wait;
        if group_wait > bound.mul_f64(group_wait_share(priority)) {
            count_shed("overloaded", priority);
            self.inner.slots.note_shed();
            return Err(Refusal::Overloaded);
        }
        Ok(())
    }

    async fn admit(&self, priority: Priority, arrived: Instant) -> Result<Admitted, Refusal> {
        if !self.enabled() {
            return Ok(Admitted {
                permit: None,
                deadline: None,
                outages: None,
            });
        }
        if self.inner.link.state() == LinkState::Unavailable {
            count_shed("database_unavailable", priority);
            return Err(Refusal::Unavailable);
        }
        let deadline = arrived + self.deadline_for(priority);
        let outages = self.inner.outages.subscribe();
        match self.inner.slots.acquire(priority, deadline).await {
            Ok(permit) => Ok(Admitted {
                permit: Some(permit),
                deadline: Some(deadline),
                outages: Some(outages),
            }),
            Err(Shed::QueueFull) => {
                count_shed("overloaded", priority);
                Err(Refusal::Overloaded)
            }
            Err(Shed::Expired) => {
                count_shed("expired_in_queue", priority);
                Err(Refusal::Overloaded)
            }
            Err(Shed::LinkDown) => {
                count_shed("database_unavailable", priority);
                Err(Refusal::Unavailable)
            }
        }
    }

    /// Frees the slot, teaching the limit what the work said; a link
    /// failure also wakes the probe, so an outage is confirmed (or ruled
    /// out) without waiting for it. Work of a priority kept out of learning
    /// teaches neither (its slot is freed all the same).
    fn finish(&self, mut admitted: Admitted, priority: Priority, signal: Signal) {
        let signal = if priority.learned_from() {
            signal
        } else {
            Signal::Silent
        };
        if let Some(permit) = admitted.permit.as_mut() {
            permit.set_signal(signal);
        }
        drop(admitted);
        if signal == Signal::LinkFailure && self.enabled() {
            self.inner.link.record_query_failure();
            self.inner.probe_wake.notify_one();
        }
    }

    /// How long a client refused for this reason should wait, in seconds.
    pub fn retry_after(&self, refusal: Refusal) -> u32 {
        self.inner.retry_after.seconds(refusal, self.down_for())
    }

    /// How long the link has been unavailable; zero while it is not.
    fn down_for(&self) -> Duration {
        let link = self.link();
        match link.state {
            LinkState::Unavailable => (Utc::now() - link.since).to_std().unwrap_or_default(),
            _ => Duration::ZERO,
        }
    }

    fn observe_probe(&self, result: &ProbeResult) {
        if let ProbeResult::Answered(latency) = result {
            metrics::histogram!("tillsync_db_probe_seconds").record(latency.as_secs_f64());
        } else {
            metrics::counter!("tillsync_db_probe_failures_total").increment(1);
        }
        if let Some(change) = self.inner.link.record_probe(result) {
            metrics::counter!("tillsync_db_state_changes_total", "to" => change.to.as_str())
                .increment(1);
            if change.to == LinkState::Unavailable {
                // Nothing waiting or running will get an answer from the
                // database soon: answer it now.
                self.inner.outages.send_modify(|n| *n += 1);
                self.inner.slots.refuse_waiting();
            }
            if probe::is_recovery(change.from, change.to) {
                // The backlog comes back in from the bottom of the limit.
                self.inner.slots.restart();
            }
        }
    }

    pub fn link(&self) -> LinkSnapshot {
        self.inner.link.snapshot()
    }

    pub fn load(&self) -> Load {
        self.inner.slots.load()
    }

    pub fn shedding(&self) -> bool {
        self.inner.slots.shed_within(SHEDDING_WINDOW)
    }

    /// What tills' status lights should show, and since when.
    pub fn service_state(&self) -> (ServiceState, DateTime<Utc>) {
        let link = self.link();
        let state = match link.state {
            LinkState::Unavailable => ServiceState::Unavailable,
            LinkState::Degraded => ServiceState::Degraded,
            LinkState::Ok if self.shedding() => ServiceState::Degraded,
            LinkState::Ok => ServiceState::Ok,
        };
        (state, link.since)
    }

    /// Why the instance should not get traffic now, if it should not.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if !self.enabled() {
            return None;
        }
        match self.inner.link.state() {
            LinkState::Unavailable => Some("database_unavailable"),
            _ if self.shedding() => Some("shedding_load"),
            _ => None,
        }
    }

    /// The wait to advertise while the database is unavailable.
    pub fn retry_after_hint(&self) -> u32 {
        self.retry_after(Refusal::Unavailable)
    }
}

fn count_shed(reason: &'static str, priority: Priority) {
    metrics::counter!("tillsync_requests_shed_total", "reason" => reason, "priority" => priority.as_str())
        .increment(1);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use clap::Parser;

    use super::*;
    use crate::db::DbError;

    #[derive(Parser)]
    struct Settings {
        #[command(flatten)]
        health: HealthArgs,
    }

    /// A gate over a pool of 10, with these health settings on top of the defaults.
    fn gate(flags: &[&str]) -> Gate {
        let argv = std::iter::once("test").chain(flags.iter().copied());
        Gate::new(Settings::parse_from(argv).health, 10)
    }

    fn contended() -> Result<(), DbError> {
        Err(DbError::Contention(sqlx::Error::Protocol(
            "collided".into(),
        )))
    }

    #[tokio::test]
    async fn work_comes_back_untouched_and_its_failures_shrink_the_limit() {
        let gate = gate(&[]);
        let limit = gate.load().limit;
        let answer = gate.run(Priority::Ingest, Instant::now(), async {
            Ok::<_, DbError>(7)
        });
        assert_eq!(answer.await.unwrap().unwrap(), 7);
        let failed = gate.run(Priority::Report, Instant::now(), async { contended() });
        assert!(failed.await.unwrap().is_err());
        assert!(
            gate.load().limit < limit,
            "a contended report teaches the limit"
        );
        assert_eq!(gate.load().in_flight, 0);
    }

    #[tokio::test]
    async fn background_work_teaches_the_limit_and_the_link_nothing() {
        let gate = gate(&[]);
        let limit = gate.load().limit;
        let unavailable =
            || async { Err::<(), _>(DbError::Unavailable(sqlx::Error::PoolTimedOut)) };
        for _ in 0..3 {
            let failed = gate.run(Priority::Background, Instant::now(), unavailable());
            assert!(failed.await.unwrap().is_err());
        }
        assert_eq!(gate.load().limit, limit);
        assert_eq!(gate.link().state, LinkState::Ok);
        // The same failure from a request marks the link degraded.
        let failed = gate.run(Priority::Ingest, Instant::now(), unavailable());
        assert!(failed.await.unwrap().is_err());
        assert_eq!(gate.link().state, LinkState::Degraded);
    }

    #[tokio::test]
    async fn while_the_link_is_down_work_is_refused_without_running() {
        let gate = gate(&["--db-probe-failures", "1"]);
        gate.observe_probe(&ProbeResult::Failed("refused".into()));
        let ran = AtomicBool::new(false);
        let work = async {
            ran.store(true, Ordering::SeqCst);
            Ok::<_, DbError>(())
        };
        let refused = gate.run(Priority::Ingest, Instant::now(), work).await;
        assert_eq!(refused.err(), Some(Refusal::Unavailable));
        assert!(!ran.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn work_past_its_deadline_is_cut_short_and_counted_from_arrival() {
        let gate = gate(&["--ingest-deadline", "200ms"]);
        // Arrived 150 ms ago: 50 ms are left of its deadline.
        let arrived = Instant::now() - Duration::from_millis(150);
        let started = Instant::now();
        let slow = tokio::time::sleep(Duration::from_secs(5));
        let cut = gate
            .run(Priority::Ingest, arrived, async {
                slow.await;
                Ok::<_, DbError>(())
            })
            .await;
        assert_eq!(cut.err(), Some(Refusal::DeadlineExceeded));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(gate.load().in_flight, 0);
    }

    #[tokio::test]
    async fn a_push_is_refused_at_once_when_its_group_would_be_too_long_in_coming() {
        let gate = gate(&["--admission-group-wait", "100ms"]);
        let ran = AtomicBool::new(false);
        let work = async { ran.store(true, Ordering::SeqCst) };
        let refused = gate
            .run_grouped(
                Priority::Ingest,
                Instant::now(),
                Duration::from_millis(101),
                work,
            )
            .await;
        assert_eq!(refused.err(), Some(Refusal::Overloaded));
        assert!(!ran.load(Ordering::SeqCst));
        assert!(gate.shedding(), "a refused push counts as shedding");
        let admitted = gate
            .run_grouped(
                Priority::Ingest,
                Instant::now(),
                Duration::from_millis(100),
                async { 7 },
            )
            .await;
        assert_eq!(admitted, Ok(7));
        assert_eq!(gate.load().in_flight, 0, "a push holds no slot of its own");
    }

    #[tokio::test]
    async fn a_backlog_push_is_admitted_with_half_the_wait_for_its_group() {
        let gate = gate(&["--admission-group-wait", "100ms"]);
        let wait = Duration::from_millis(60);
        let live = gate.run_grouped(Priority::Ingest, Instant::now(), wait, async {});
        assert_eq!(live.await, Ok(()));
        let backlog = gate.run_grouped(Priority::Backlog, Instant::now(), wait, async {});
        assert_eq!(backlog.await.err(), Some(Refusal::Overloaded));
        let shorter = Duration::from_millis(50);
        let backlog = gate.run_grouped(Priority::Backlog, Instant::now(), shorter, async {});
        assert_eq!(backlog.await, Ok(()));
    }

    #[tokio::test]
    async fn a_push_waiting_for_its_group_is_answered_when_the_link_is_declared_down() {
        let gate = gate(&["--db-probe-failures", "1", "--ingest-deadline", "30s"]);
        let waiting = gate.run_grouped(
            Priority::Ingest,
            Instant::now(),
            Duration::ZERO,
            tokio::time::sleep(Duration::from_secs(30)),
        );
        let outage = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            gate.observe_probe(&ProbeResult::Failed("refused".into()));
        };
        let started = Instant::now();
        let (answer, ()) = tokio::join!(waiting, outage);
        assert_eq!(answer.err(), Some(Refusal::Unavailable));
        assert!(started.elapsed() < Duration::from_secs(5));
        // And a push arriving now is refused without waiting.
        let refused = gate
            .run_grouped(Priority::Ingest, Instant::now(), Duration::ZERO, async {})
            .await;
        assert_eq!(refused.err(), Some(Refusal::Unavailable));
    }

    #[tokio::test]
    async fn with_the_layer_off_work_runs_unbounded_and_unjudged() {
        let gate = gate(&["--health-layer", "off", "--ingest-deadline", "10ms"]);
        let limit = gate.load().limit;
        let done = gate
            .run(Priority::Ingest, Instant::now(), async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                contended()
            })
            .await;
        assert!(done.unwrap().is_err());
        assert_eq!(gate.load().limit, limit, "the contention taught nothing");
    }
}
