//! The database health layer: the one place every database-bound request
//! goes through. It knows the state of the link (`link.rs`, fed by the
//! probe in `probe.rs` and by real-query failures), refuses work at once
//! while the link is down, admits what the database can take
//! (`admission.rs` over the adaptive limit in `limit.rs`), gives every
//! admitted request a deadline, and after an outage lets the backlog back in
//! from a small limit upwards.

pub mod admission;
pub mod limit;
pub mod link;
mod probe;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::HealthArgs;
use crate::db::Database;
use admission::{Admission, Load, Outcome, Permit, Priority, QueueBounds, Shed};
use limit::Gradient;
use link::{LinkMonitor, LinkSnapshot, LinkState, ProbeResult};

/// Refusals within this window count as "shedding" for readiness and status.
const SHEDDING_WINDOW: Duration = Duration::from_secs(1);
/// Retry-After for an overloaded service is spread over this many seconds.
/// Short: overload passes in moments, and a till kept waiting longer than
/// that leaves the queue empty (measured: 1-3 s cost a third of the goodput
/// at twice the capacity).
const OVERLOAD_RETRY_SPREAD_S: std::ops::RangeInclusive<u32> = 1..=2;

/// Why a request was refused before it touched the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The link to Postgres is down.
    Unavailable { retry_after_s: u32 },
    /// More work than the database can take right now.
    Overloaded { retry_after_s: u32 },
}

/// An admitted request: its slot and deadline (none when the layer is off).
pub struct Admitted {
    permit: Option<Permit>,
    deadline: Option<Instant>,
    /// Changes when the link is declared down.
    outages: Option<watch::Receiver<u64>>,
}

/// Why admitted work was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// The request's deadline passed.
    DeadlineExceeded,
    /// The link was declared down while it ran: a stalled link would hold
    /// it until its deadline for nothing.
    LinkDown,
}

impl Admitted {
    /// Runs the admitted work until it ends, its deadline passes or the link
    /// is declared down. Cutting it short drops its connection mid-query;
    /// the pool's release check then closes it instead of reusing it, and
    /// the client's retry is safe (batches are idempotent).
    pub async fn run<F: Future>(&mut self, work: F) -> Result<F::Output, Interrupted> {
        let (Some(deadline), Some(outages)) = (self.deadline, self.outages.as_mut()) else {
            return Ok(work.await);
        };
        tokio::select! {
            done = tokio::time::timeout_at(deadline.into(), work) => {
                done.map_err(|_| Interrupted::DeadlineExceeded)
            }
            Ok(()) = outages.changed() => Err(Interrupted::LinkDown),
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
    admission: Arc<Admission>,
    probe_wake: Arc<Notify>,
    /// Counts the times the link was declared down; admitted work watches it.
    outages: watch::Sender<u64>,
}

impl Gate {
    pub fn new(settings: HealthArgs, pool_size: u32) -> Self {
        let max_limit = settings.admission_max_limit.unwrap_or(pool_size as usize);
        // Half the pool unless set: on a busy database, latency rises with
        // concurrency before throughput stops rising, and a limit pushed
        // lower than this leaves Postgres idle between requests.
        let min_limit = settings
            .admission_min_limit
            .unwrap_or((max_limit / 2).max(1));
        let limiter = Gradient::new(max_limit, min_limit, max_limit);
        let inner = Inner {
            link: LinkMonitor::new(settings.db_probe_failures, settings.db_degraded_latency),
            admission: Admission::new(
                limiter,
                QueueBounds {
                    max_wait: settings.admission_queue_wait,
                    max_waiting: settings.admission_queue,
                },
            ),
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
            options: db.connect_options().clone(),
            interval: self.inner.settings.db_probe_interval,
            timeout: self.inner.settings.db_probe_timeout,
            wake: self.inner.probe_wake.clone(),
        };
        Some(tokio::spawn(prober.run(self.clone(), stopping)))
    }

    pub fn enabled(&self) -> bool {
        self.inner.settings.health_layer.is_on()
    }

    pub fn deadline_for(&self, priority: Priority) -> Duration {
        let s = &self.inner.settings;
        match priority {
            // A token lookup is one indexed read; the shortest deadline is plenty.
            Priority::Auth | Priority::Ingest => s.ingest_deadline,
            Priority::Admin => s.admin_deadline,
            Priority::Report => s.report_deadline,
        }
    }

    /// Admits a request of this priority that arrived at `arrived` (its
    /// deadline counts from then, so the steps of one request share it), or
    /// says at once why not.
    pub async fn admit(&self, priority: Priority, arrived: Instant) -> Result<Admitted, Refusal> {
        if !self.enabled() {
            return Ok(Admitted {
                permit: None,
                deadline: None,
                outages: None,
            });
        }
        if self.inner.link.state() == LinkState::Unavailable {
            metrics::counter!("tillsync_requests_shed_total", "reason" => "database_unavailable", "priority" => priority.as_str()).increment(1);
            return Err(Refusal::Unavailable {
                retry_after_s: self.unavailable_retry_after(),
            });
        }
        let deadline = arrived + self.deadline_for(priority);
        let outages = self.inner.outages.subscribe();
        match self.inner.admission.acquire(priority, deadline).await {
            Ok(permit) => Ok(Admitted {
                permit: Some(permit),
                deadline: Some(deadline),
                outages: Some(outages),
            }),
            Err(shed) => {
                let reason = match shed {
                    Shed::QueueFull => "overloaded",
                    Shed::Expired => "expired_in_queue",
                    Shed::LinkDown => "database_unavailable",
                };
                metrics::counter!("tillsync_requests_shed_total", "reason" => reason, "priority" => priority.as_str()).increment(1);
                Err(match shed {
                    Shed::LinkDown => Refusal::Unavailable {
                        retry_after_s: self.unavailable_retry_after(),
                    },
                    Shed::QueueFull | Shed::Expired => Refusal::Overloaded {
                        retry_after_s: rand::rng().random_range(OVERLOAD_RETRY_SPREAD_S),
                    },
                })
            }
        }
    }

    /// Records how an admitted request ended. A link failure also wakes the
    /// probe so an outage is confirmed (or ruled out) without waiting.
    pub fn finish(&self, mut admitted: Admitted, outcome: Outcome, link_failure: bool) {
        if let Some(permit) = admitted.permit.as_mut() {
            permit.set_outcome(outcome);
        }
        drop(admitted);
        if link_failure && self.enabled() {
            self.inner.link.record_query_failure();
            self.inner.probe_wake.notify_one();
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
                self.inner.admission.refuse_waiting();
            }
            if probe::is_recovery(change.from, change.to) {
                // The backlog comes back in from the bottom of the limit.
                self.inner.admission.restart();
            }
        }
    }

    /// Spread over [2 s, retry-after-max] so a fleet told to wait does not
    /// come back in one wave.
    fn unavailable_retry_after(&self) -> u32 {
        let max = self.inner.settings.retry_after_max.as_secs().max(2) as u32;
        rand::rng().random_range(2..=max)
    }

    pub fn link(&self) -> LinkSnapshot {
        self.inner.link.snapshot()
    }

    pub fn load(&self) -> Load {
        self.inner.admission.load()
    }

    pub fn shedding(&self) -> bool {
        self.inner.admission.shed_within(SHEDDING_WINDOW)
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

    pub fn retry_after_hint(&self) -> u32 {
        self.unavailable_retry_after()
    }
}
